# SPDX-License-Identifier: GPL-2.0
# Damaged volumes mounted read-only: each outcome must be a clean mount
# error (an errno and a dmesg line) or per-file EIO, never wrong data and
# never a splat (the runner checks dmesg), and the damaged device must not
# be modified.  On copies of the small volume (tests/selftests/lib.sh):
#  a) an extents btree leaf zeroed (found with `list --nodes`): mount
#     succeeds, files strictly inside its key range give EIO, files
#     outside it read back identically;
#  b) bits flipped in the newest jset (found with `list --jsets`): mount
#     fails cleanly, or succeeds (clean volume: the superblock has the
#     roots) and everything reads back identically;
#  c) the primary superblock overwritten (sectors 8-15), backups intact:
#     mount succeeds and everything reads back identically;
#  d) the device truncated to 60% (read-only loop device): mount fails
#     cleanly, or every file reads back identically or gives EIO.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
small_volume
w=$RO_WORK/32
rm -rf "$w"; mkdir -p "$w"
img=$w/damaged.img loop= mounted=
trap ro_cleanup EXIT
t0=$SECONDS

# What the untouched copy says about where things are.
"$TOOL" list --nodes -b extents "$SMALL_IMG" >"$w/nodes.txt" || fail "our list --nodes failed"
"$TOOL" list --jsets "$SMALL_IMG" >"$w/jsets.txt" || fail "our list --jsets failed"
node_sectors=$(( $("$TOOL" show-super "$SMALL_IMG" | sed -n 's/^  btree_node_size: *\([0-9.]*\) KiB$/\1/p' | cut -d. -f1) * 2 ))
[ "$node_sectors" -gt 0 ] || fail "no btree_node_size in show-super"

# A variant: $1 name, $2 losetup flags; the damage is done to $img by the
# caller.  Mounts with the module under test, reads everything, checks the
# outcome with the python policy named $3, checks the device unchanged.
variant() { # name losetup-flags policy [policy args]
	local name=$1 lflags=$2 policy=$3 r before
	shift 3
	loop=$(loop_attach $lflags "$img")
	before=$(dev_sha "$loop")
	ro_load
	dmesg -C
	r=$(vfs_mount "$loop" "$MNT" "$(ro_opts)")
	if [ "$r" = OK ]; then
		mounted=1
		python3 "$RO_TREE" readall "$MNT" "$SMALL_MAN" "$w/$name.json" >"$w/$name.out" ||
			fail "$name: reading the tree failed"
		umount "$MNT" || fail "$name: umount failed"
		mounted=
		python3 - "$w/$name.json" "$policy" "$@" <<'PY' || fail "$name: wrong outcome under $(ro_name)"
import json, sys
res, policy = json.load(open(sys.argv[1])), sys.argv[2]
bad = []
if policy == "identical":
    bad = ["%s: %s, want ok" % (p, v) for p, v in sorted(res.items()) if v != "ok"]
elif policy == "ok-or-eio":
    bad = ["%s: %s, want ok or EIO" % (p, v) for p, v in sorted(res.items()) if v not in ("ok", "EIO")]
elif policy == "leaf":
    # files with inode strictly inside (lo, hi) and data must give EIO;
    # files outside [lo, hi] must read back; lo and hi themselves either.
    lo, hi, man = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    inside = 0
    for line in open(man):
        e = json.loads(line)
        v, ino = res.get(e["path"]), e["ino"]
        if lo < ino < hi and e["type"] == "-" and e["size"] > 0:
            inside += 1
            if v != "EIO":
                bad.append("%s (inode %d, in the zeroed leaf %d..%d): %s, want EIO" % (e["path"], ino, lo, hi, v))
        elif (ino < lo or ino > hi) and v != "ok":
            bad.append("%s (inode %d, outside the zeroed leaf %d..%d): %s, want ok" % (e["path"], ino, lo, hi, v))
        elif v not in ("ok", "EIO"):
            bad.append("%s (inode %d): %s, want ok or EIO" % (e["path"], ino, v))
    if inside == 0:
        bad.append("no file with data strictly inside the zeroed leaf %d..%d: pick another node" % (lo, hi))
    print("%d files with data inside the zeroed leaf" % inside)
for b in bad[:6]:
    print("FAIL: " + b, file=sys.stderr)
if len(bad) > 6:
    print("FAIL: ... %d in all" % len(bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
		note "$name: mounted; $(cat "$w/$name.out")"
	else
		if { [ "$r" = EOPNOTSUPP ] || [ "$r" = ENOTSUP ]; } && [ "$RO_IMPL" = rs ] && [ "${BCH_RO_REQUIRED:-0}" != 1 ]; then
			skip "bcachefs_rs cannot mount yet (EOPNOTSUPP); the damage was prepared ($name)"
		fi
		# a zeroed leaf is not needed to mount; a bad primary superblock
		# has its backups: those must mount
		case $name in zeroed-leaf|bad-primary-sb)
			fail "$name: mount failed ($r), want success: $(dmesg_text | tail -n 3)" ;; esac
		case $r in EINVAL|EIO|EUCLEAN|EBADMSG|ENOSPC|ESTALE|E2BIG|ENXIO|EROFS) ;;
		*) fail "$name: mount failed with $r, want an errno saying the volume is damaged" ;; esac
		[ -n "$(dmesg_text | grep -i bcachefs)" ] || fail "$name: mount failed ($r) without a dmesg line"
		note "$name: mount refused: $r: $(dmesg_text | grep -i bcachefs | tail -n 1 | cut -c1-200)"
	fi
	ro_unload
	dev_unchanged "$name" "$loop" "$before"
	losetup -d "$loop"; loop=
}

# a) a zeroed extents leaf, from the middle of the btree
leaves=$(grep -c '^extents level 0 ' "$w/nodes.txt")
[ "$leaves" -ge 3 ] || fail "extents btree has $leaves leaves, want >= 3 to zero a middle one: $(head -n 3 "$w/nodes.txt")"
leaf=$(grep '^extents level 0 ' "$w/nodes.txt" | sed -n "$((leaves / 2 + 1))p")
sector=$(awk '{print $5}' <<<"$leaf")
lo=$(sed 's/.* min \([0-9]*\):.*/\1/' <<<"$leaf")
hi=$(sed 's/.* max \([0-9]*\):.*/\1/' <<<"$leaf")
note "zeroing the extents leaf at sector $sector ($node_sectors sectors): $leaf"
cp "$SMALL_IMG" "$img"
dd if=/dev/zero of="$img" bs=512 seek="$sector" count="$node_sectors" conv=notrunc status=none
variant zeroed-leaf "" leaf "$lo" "$hi" "$SMALL_MAN"

# b) flipped bits in the newest jset (past its header)
j=$(sort -k3n "$w/jsets.txt" | tail -n 1)
[ -n "$j" ] || fail "list --jsets found no jset"
jsector=$(awk '{print $5}' <<<"$j")
note "flipping bits in $j"
cp "$SMALL_IMG" "$img"
python3 - "$img" $(( jsector * 512 + 300 )) <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = bytearray(f.read(16))
    f.seek(int(sys.argv[2])); f.write(bytes(x ^ 0x5a for x in b))
PY
variant jset-bits "" identical

# c) primary superblock overwritten; the layout (sector 7) and the backups intact
cp "$SMALL_IMG" "$img"
head -c 4096 /dev/urandom | dd of="$img" bs=512 seek=8 conv=notrunc status=none
variant bad-primary-sb "" identical

# d) truncated to 60%, on a read-only loop device
cp "$SMALL_IMG" "$img"
truncate -s $(( $(stat -c %s "$SMALL_IMG") * 6 / 10 / 4096 * 4096 )) "$img"
variant truncated "-r" ok-or-eio
note "total $((SECONDS - t0))s"
exit 0
