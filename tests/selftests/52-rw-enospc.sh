# SPDX-License-Identifier: GPL-2.0
# Filling a small volume: our `format` of a 64 MiB image, the module under
# test mounts it rw, 1 MiB files of incompressible data are written until
# a write fails, which must be with ENOSPC (not EIO, EROFS or anything
# else, and no splat); statfs must account for what was written (used
# grew by the bytes written, within the tolerance below, and little is
# left available); every file reads back as written (the last one as far
# as its writes succeeded).  Then everything is deleted, `sync`, and
# statfs shows the space free again, a second fill gets about as much,
# stores through mmap into the holes of a sparse file then get SIGBUS
# (no space to reserve), and after the unmount C's fsck is clean.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
size=${BCH_RW_ENOSPC_MIB:-64}
w=$RW_WORK/52
rm -rf "$w"; mkdir -p "$w"
img=$w/enospc.img loop= mounted=
trap '[ -z "$mounted" ] || umount "$MNT" 2>/dev/null; [ -z "$loop" ] || losetup -d "$loop"; rm -f "$img"' EXIT

statfs() { # prints "used-bytes avail-bytes total-bytes"
	python3 -c 'import os,sys; s = os.statvfs(sys.argv[1])
print((s.f_blocks - s.f_bfree) * s.f_frsize, s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize)' "$MNT"
}
mib() { echo $((($1 + 524288) / 1048576)); }

t0=$SECONDS
truncate -s "${size}M" "$img"
rw_format_load "$img"
loop=$(loop_attach "$img")
rw_mount "$loop" "$MNT"
mounted=1

# fill N: fills $MNT/fillN, checks the error and statfs, reads back.
fill() {
	local n=$1 out used0 avail0 total used1 avail1 bytes err grew
	read -r used0 avail0 total < <(statfs)
	out=$(python3 "$RW_WL" fill "$MNT/fill$n" 1024 $((size * 4))) || fail "fill $n: the fill failed: $out"
	echo "$out" >"$w/fill$n.json"
	bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes"])' "$w/fill$n.json")
	err=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"])' "$w/fill$n.json")
	[ "$err" = ENOSPC ] || fail "fill $n: the fill ended with $err after $(mib "$bytes") MiB, want ENOSPC"
	sync
	read -r used1 avail1 total < <(statfs)
	grew=$((used1 - used0))
	note "fill $n: ENOSPC after $bytes bytes ($(mib "$bytes") MiB); statfs: $(mib "$total") MiB total, used $(mib "$used0") -> $(mib "$used1") MiB (+$(mib "$grew")), available $(mib "$avail0") -> $(mib "$avail1") MiB"
	# used must have grown by the data written, give or take 4 MiB and
	# 10% (metadata, reserves, rounding); available must be nearly 0
	[ $((grew - bytes)) -le $((4194304 + bytes / 10)) ] && [ $((bytes - grew)) -le $((4194304 + bytes / 10)) ] ||
		fail "fill $n: statfs used grew by $grew bytes for $bytes bytes written"
	[ "$avail1" -le $((total / 10 + 2097152)) ] ||
		fail "fill $n: statfs shows $avail1 bytes available after ENOSPC (of $total)"
	python3 "$RW_WL" verify "$MNT/fill$n" "$w/fill$n.json" >/dev/null ||
		fail "fill $n: files do not read back as written"
	[ "$n" = 1 ] && { used_empty=$used0; bytes1=$bytes; }
	[ "$n" = 2 ] && bytes2=$bytes
	return 0
}

fill 1
rm -rf "$MNT/fill1"
sync
read -r used avail total < <(statfs)
note "all deleted, sync: used $(mib "$used") MiB, available $(mib "$avail") MiB"
[ $((used - used_empty)) -le 4194304 ] ||
	fail "after deleting everything and sync, statfs used is $used bytes, was $used_empty before the fill"
truncate -s 16M "$MNT/sparse" || fail "truncate of a sparse file failed"
fill 2
[ $((bytes2 * 10)) -ge $((bytes1 * 9)) ] ||
	fail "the second fill got $bytes2 bytes, the first $bytes1: space not given back"
# Stores through a shared mapping into the sparse file's holes, the volume
# full: the fault that finds no space is a SIGBUS (page_mkwrite's
# reservation), not a writeback that fails later and loses the data.
python3 -c 'import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 16 << 20)
for off in range(0, 16 << 20, 4096):
    m[off:off + 4096] = b"x" * 4096
m.flush()
' "$MNT/sparse" 2>/dev/null
rc=$?
[ "$rc" = 135 ] || fail "stores through mmap into holes of a full volume: exit $rc, want SIGBUS (135)"
note "stores through mmap into holes of the full volume: SIGBUS"
umount "$MNT" || fail "umount under $(rw_name) failed"
mounted=
sb_clean "after the fills" "$loop"
c_fsck "after the fills" "$loop"
c_unload
note "total $((SECONDS - t0))s"
exit 0
