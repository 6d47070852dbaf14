# SPDX-License-Identifier: GPL-2.0
# BCH_RW_CYCLES (default 100) read-write mount / write / umount cycles on
# our format: each cycle first checks what the previous mounts left (the
# number of files, the previous cycle's file by sha256, the last line of a
# file every cycle appends to), then writes a new file (64 KiB plus 100
# bytes per cycle) and appends a line.  Then the module's refcount is 0,
# rmmod works, and unreclaimable slab memory has not grown, with the
# limits of 33-ro-mount-cycles (SUnreclaim by at most 2 MiB; no slab cache
# by 100 objects or more while also growing by 256 KiB or more).  Last,
# C's fsck is clean and C reads every file as written.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
dev=${BCH_DISK_SCRATCH:?}
cycles=${BCH_RW_CYCLES:-100}
w=$RW_WORK/53
rm -rf "$w"; mkdir -p "$w"
mounted=
trap '[ -z "$mounted" ] || umount "$MNT" 2>/dev/null' EXIT
mod=$(rw_mod)

content() { yes "cycle $1 of the rw mount cycles" | head -c $((65536 + 100 * $1)); }
# cycle I: mount(8) rather than a python mount(2) per cycle (seconds
# under TCG each); the checks of what the previous cycles wrote, the
# writes, the unmount.
cycle() {
	local i=$1 n last got
	mount -t bcachefs -o rw "$dev" "$MNT" 2>"$w/mount.err" ||
		fail "cycle $i: mount -o rw failed: $(cat "$w/mount.err"); $(dmesg_text | tail -n 2)"
	mounted=1
	n=$(find "$MNT/cycles" -type f | wc -l)
	[ "$n" = $((i - 1)) ] || fail "cycle $i: $n files in cycles/, want $((i - 1))"
	if [ "$i" -gt 1 ]; then
		got=$(sha256sum "$MNT/cycles/c$((i - 1))" | cut -d' ' -f1)
		[ "$got" = "${want[$((i - 1))]}" ] ||
			fail "cycle $i: cycles/c$((i - 1)) has sha256 $got, want ${want[$((i - 1))]}"
		last=$(tail -n 1 "$MNT/appended")
		[ "$last" = "cycle $((i - 1))" ] || fail "cycle $i: the last line of appended is '$last', want 'cycle $((i - 1))'"
	fi
	content "$i" >"$MNT/cycles/c$i" || fail "cycle $i: writing cycles/c$i failed"
	echo "cycle $i" >>"$MNT/appended" || fail "cycle $i: appending failed"
	umount "$MNT" || fail "cycle $i: umount failed"
	mounted=
}

t0=$SECONDS
rw_format_load "$dev"
# a warm-up mount (caches a module creates on first use are not leaks)
rw_mount "$dev" "$MNT"
mounted=1
mkdir "$MNT/cycles"
: >"$MNT/appended"
umount "$MNT" || fail "umount of the warm-up mount failed"
mounted=
declare -a want
for i in $(seq "$cycles"); do
	want[$i]=$(content "$i" | sha256sum | cut -d' ' -f1)
done
slab >"$w/before"
t1=$SECONDS
for i in $(seq "$cycles"); do
	cycle "$i"
done
t2=$SECONDS
slab >"$w/after"
ref=$(cat /sys/module/$mod/refcnt)
[ "$ref" = 0 ] || fail "module $mod refcount $ref after $cycles cycles, want 0"
rw_unload
! [ -d /sys/module/$mod ] || fail "$mod still loaded after rmmod"
slab_check "$w/before" "$w/after" "$cycles"
sb_clean "after $cycles cycles" "$dev"
c_fsck "after $cycles cycles" "$dev" "$w/c.full"
bad=$(python3 - "$w/c.full" "$cycles" "${want[@]}" <<'PY'
import json, sys
man = {e["path"]: e for e in map(json.loads, open(sys.argv[1]))}
n = int(sys.argv[2])
bad = [i for i in range(1, n + 1)
       if man.get("cycles/c%d" % i, {}).get("sha256") != sys.argv[2 + i]]
lines = man.get("appended", {}).get("size")
want = sum(len("cycle %d\n" % i) for i in range(1, n + 1))
if lines != want:
    bad.append("appended: size %s, want %d" % (lines, want))
print(" ".join(map(str, bad)))
PY
)
[ -z "$bad" ] || fail "C reads other contents for cycles/c<N>, N in: $bad"
c_unload
note "$cycles rw cycles in $((t2 - t1))s under $(rw_name); module refcount 0, rmmod ok; C reads all $cycles files as written; total $((SECONDS - t0))s"
exit 0
