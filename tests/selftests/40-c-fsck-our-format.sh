# SPDX-License-Identifier: GPL-2.0
# Our write path, judged by C: `bcachefs format --source` copies a
# generated tree (ro_tree.py's "big" profile: 5,000 files in 50
# directories of sizes 0 to 48 KiB, a 600-entry directory, a 24-level chain,
# 64 MiB and 9 MiB incompressible files, sparse files up to 32 MiB,
# directories with compression=lz4, zstd and gzip, symlinks up to 4095
# bytes, hard links, long and UTF-8 names, a fifo, a socket, device nodes,
# odd modes, owners and times, user xattrs) into a new volume through the
# core's btree transactions, triggers, journal and initialize.  The source
# tree lives on a C bcachefs volume (our format, C's mount), so that its
# per-directory compression (the bcachefs.compression xattr) is carried
# over as bcachefs-tools carries it.  Then the C module mounts our volume
# with every fsck pass and no changes allowed (ro,nochanges,fsck,
# fix_errors=no: what `fsck -n` asks) and must report nothing, and
# everything C reads equals the source tree.  Twice: with the default
# options and with 1 KiB blocks, crc64 checksums and string hash, which
# also shows that two runs of format --source give the same listing.  A
# copy with a damaged btree node must make the same check fail.  Last, C
# writes more files on our volume and our tool lists them.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
srcdev=${BCH_DISK_SCRATCH:?}
loop= mounted= img=$RO_WORK/ours.img
srcmnt=$RO_WORK/src-bch src= srcmounted=
src_cleanup() {
	[ -z "$srcmounted" ] || umount "$srcmnt" 2>/dev/null
}
trap 'ro_cleanup; src_cleanup; rm -f "$RO_WORK/damaged.img" "$RO_WORK"/*.man.nolf "$RO_WORK"/*.man' EXIT
rs_unload
c_unload
"$TOOL" format --force "$srcdev" >/dev/null || fail "our format of the source disk failed"
c_load
mkdir -p "$srcmnt"
mount -t bcachefs "$srcdev" "$srcmnt" || fail "C did not mount the source volume: $(dmesg_text | tail -n 5)"
srcmounted=1
src=$srcmnt/src
mkdir -p "$src"
chmod 755 "$src"
t0=$(date +%s%N)
note "$(python3 "$RO_TREE" generate "$src" big | tr '\n' ' ')"
note "source generated on C bcachefs in $((($(date +%s%N) - t0) / 1000000)) ms: $(du -sm --apparent-size "$src" | cut -f1) MiB"
for d in lz4 zstd gzip; do
	v=$(python3 -c "import os,sys; print(os.getxattr(sys.argv[1], 'bcachefs.compression').decode())" "$src/comp-$d")
	[ "$v" = "$d" ] || fail "source comp-$d has bcachefs.compression '$v'"
done
python3 "$RO_TREE" portable "$src" "$RO_WORK/src.man" >/dev/null || fail "manifest of the source failed"
# Our volume has lost+found (initialize makes it, as C's does), the source
# tree has not: both left out, and the root, whose link count it changes.
nolf() { grep -v -F -e '"path": "lost+found",' -e '"path": ".",' "$1" >"$1.nolf"; }
nolf "$RO_WORK/src.man"

FSCK_OPTS=ro,nochanges,fsck,fix_errors=no,verbose
fsck_errors() { # prints the lines of a C fsck that report a problem
	dmesg_text | grep -Ei 'error|inconsisten|incorrect|wrong|missing|mismatch|not fixing|fix\?|bad |invalid|unexpected' |
		grep -v 'fix_errors' || true
}

# format_and_check LABEL FORMAT-OPTIONS...: our format --source of the
# tree into $img, then C's fsck and C's view of every file.
format_and_check() {
	local label=$1 errs passes
	shift
	rm -f "$img"
	truncate -s 768M "$img"
	t0=$(date +%s%N)
	"$TOOL" format --force "$@" --source "$src" "$img" >/dev/null || fail "$label: our format --source failed"
	note "$label: format --source of $(wc -l <"$RO_WORK/src.man") paths, $(du -sm --apparent-size "$src" | cut -f1) MiB: $((($(date +%s%N) - t0) / 1000000)) ms"
	loop=$(loop_attach "$img")
	dmesg -C
	mount -t bcachefs -o "$FSCK_OPTS" "$loop" "$MNT" || fail "$label: C did not mount our volume with $FSCK_OPTS: $(dmesg_text | tail -n 8)"
	mounted=1
	errs=$(fsck_errors)
	[ -z "$errs" ] || fail "$label: C's fsck of our volume reports: $(echo "$errs" | head -n 8)"
	passes=$(dmesg_text | grep -c 'check_\|going read-write\|recovery' || true)
	note "$label: C fsck (-o $FSCK_OPTS): no error in dmesg ($(dmesg_text | wc -l) lines, $passes naming passes)"
	python3 "$RO_TREE" portable "$MNT" "$RO_WORK/c.man" >/dev/null || fail "$label: manifest under C failed"
	nolf "$RO_WORK/c.man"
	python3 "$RO_TREE" compare "$RO_WORK/src.man.nolf" "$RO_WORK/c.man.nolf" >&2 || fail "$label: C reads something else than the source tree"
	note "$label: C reads the $(wc -l <"$RO_WORK/c.man.nolf") paths (lost+found and the root aside) as the source has them (type, size, mode, nlink, owner, mtime, sha256, targets, rdev, user xattrs)"
	umount "$MNT"
	mounted=
	losetup -d "$loop"
	loop=
}

# The second format first (its image is not kept): 1 KiB blocks, crc64.
format_and_check "1k blocks, crc64" --block_size=1024 --metadata_checksum=crc64 --data_checksum=crc64 --str_hash=crc64
format_and_check "default options"
# The compressed directories are compressed on our volume.
ext=$("$TOOL" list -b extents "$img")
for d in lz4 zstd gzip; do
	n=$(echo "$ext" | grep -c "compress $d" || true)
	[ "$n" -gt 0 ] || fail "no extent of our volume is compressed with $d: $(echo "$ext" | grep -m 2 crc)"
	note "extents compressed with $d on our volume: $n"
done
ext=
cp --sparse=always "$img" "$RO_WORK/damaged.img"

# The same check on a damaged copy must fail: zero the first extents leaf.
sector=$("$TOOL" list --nodes -b extents "$RO_WORK/damaged.img" | awk '$0 ~ /level 0/ { for (i = 1; i <= NF; i++) if ($i == "sector") { print $(i + 1); exit } }')
[ -n "$sector" ] || fail "no extents leaf found in our volume: $("$TOOL" list --nodes -b extents "$RO_WORK/damaged.img" | head -n 3)"
dd if=/dev/zero of="$RO_WORK/damaged.img" bs=512 seek="$sector" count=8 conv=notrunc status=none
loop=$(loop_attach "$RO_WORK/damaged.img")
dmesg -C
r=$(vfs_mount "$loop" "$MNT" "$FSCK_OPTS")
[ "$r" = OK ] && { mounted=1; umount "$MNT"; mounted=; }
errs=$(fsck_errors)
[ -n "$errs" ] || [ "$r" != OK ] || fail "a zeroed extents leaf (sector $sector) went unnoticed by C's fsck"
note "damaged copy (extents leaf at sector $sector zeroed): mount $r, C reports: $(echo "$errs" | head -n 1)"
losetup -d "$loop"
loop=

# C writes on our volume; our tool lists what it wrote.
loop=$(loop_attach "$img")
mount -t bcachefs "$loop" "$MNT" || fail "C did not mount our volume read-write"
mounted=1
mkdir "$MNT/written-by-c"
for i in 1 2 3; do printf 'C was here %d\n' $i >"$MNT/written-by-c/f$i"; done
umount "$MNT"
mounted=
umount "$srcmnt"
srcmounted=
c_unload
out=$("$TOOL" list -b dirents "$loop")
for n in written-by-c f1 f2 f3; do
	echo "$out" | grep -q "$n" || fail "our list does not show $n that C wrote: $(echo "$out" | tail -n 3)"
done
note "C wrote written-by-c/f1..f3 on our volume; our list shows them"
exit 0
