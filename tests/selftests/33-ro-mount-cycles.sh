# SPDX-License-Identifier: GPL-2.0
# 100 read-only mount/umount cycles of the small volume, each with a
# readdir and a file read checked against the manifest C recorded; then the
# module's refcount is 0 and rmmod succeeds, and unreclaimable slab memory
# has not grown: SUnreclaim (/proc/meminfo) by at most 2 MiB, and no slab
# cache (/proc/slabinfo, when the kernel has it) by 100 objects or more
# while also growing by 256 KiB or more.  Why these limits: a leak of one
# object per cycle shows as >= 100 objects in its cache; a leak of a btree
# node buffer, a superblock copy or a journal buffer per mount (>= 16 KiB)
# adds >= 1.6 MiB; the noise measured with the C module over the same
# loop (caches dropped before each measurement) was -92 and +4 kB of
# SUnreclaim, and at most +90 objects (C's bkey_cached, under 100 KiB) in
# one cache.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
cycles=${BCH_RO_CYCLES:-100}
small_volume
loop= mounted=
trap ro_cleanup EXIT
loop=$(loop_attach "$SMALL_IMG")
before=$(dev_sha "$loop")
want=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["path"] == "files/d003/f00321": print(e["sha256"])' "$SMALL_MAN")
nwant=$(grep -c '"path": "files/d003/f00[0-9]*"' "$SMALL_MAN")
[ -n "$want" ] || fail "files/d003/f00321 not in the manifest"
mod=bcachefs_rs; [ "$RO_IMPL" = c ] && mod=bcachefs

cycle() {
	# mount(8), not vfs_mount: a python start per cycle is seconds under TCG
	mount -t bcachefs -o "$opts" "$loop" "$MNT" 2>"$RO_WORK/33.err" || return 1
	mounted=1
	n=$(ls "$MNT/files/d003" | wc -l)
	got=$(sha256sum "$MNT/files/d003/f00321" | cut -d' ' -f1)
	umount "$MNT" || fail "cycle $i: umount failed"
	mounted=
	[ "$n" = "$nwant" ] || fail "cycle $i: readdir of files/d003 gave $n names, want $nwant"
	[ "$got" = "$want" ] || fail "cycle $i: files/d003/f00321 sha256 $got, want $want"
}

opts=$(ro_opts)
ro_load
# one warm-up cycle: caches the module creates on first use are not leaks
ro_mount "$loop" "$MNT"
umount "$MNT"
slab >"$RO_WORK/33.before"
t0=$SECONDS
for i in $(seq "$cycles"); do
	cycle || fail "cycle $i: mount -o $opts failed: $(cat "$RO_WORK/33.err"); $(dmesg_text | tail -n 2)"
done
t1=$SECONDS
slab >"$RO_WORK/33.after"
ref=$(cat /sys/module/$mod/refcnt)
[ "$ref" = 0 ] || fail "module $mod refcount $ref after $cycles cycles, want 0"
ro_unload
! [ -d /sys/module/$mod ] || fail "$mod still loaded after rmmod"
slab_check "$RO_WORK/33.before" "$RO_WORK/33.after" "$cycles"
dev_unchanged "$cycles mount cycles" "$loop" "$before"
note "$cycles cycles in $((t1 - t0))s under $(ro_name); module refcount 0, rmmod ok"
exit 0
