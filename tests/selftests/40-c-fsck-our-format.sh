# SPDX-License-Identifier: GPL-2.0
# Our write path, judged by C: `bcachefs format --source` copies a
# generated tree (1,500 files in 15 directories, a 600-entry directory, a
# 24-level chain, a 3 MiB file, sparse files, symlinks up to 4095 bytes,
# hard links, long and UTF-8 names, a fifo, a socket, device nodes, odd
# modes, owners and times, user xattrs; built on an ext4 image) into a
# new volume through the
# core's btree transactions, triggers, journal and initialize.  Then the C
# module mounts it with every fsck pass and no changes allowed
# (ro,nochanges,fsck,fix_errors=no: what `fsck -n` asks) and must report
# nothing, and everything C reads equals the source tree.  A copy with a
# damaged btree node must make the same check fail.  Last, C writes more
# files on our volume and our tool lists them.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
loop= mounted= img=$RO_WORK/ours.img
# The source tree lives on ext4 (the guest's /tmp is tmpfs, which has no
# user xattrs), so that user xattrs are copied and compared too; 4 KiB
# blocks, as small ext4 volumes default to 1 KiB, too small for the
# 2000- and 4095-byte symlinks.
srcimg=$RO_WORK/src-ext4.img srcmnt=$RO_WORK/src-ext4 srcloop=
src=$srcmnt/src
src_cleanup() {
	umount "$srcmnt" 2>/dev/null
	[ -z "$srcloop" ] || losetup -d "$srcloop" 2>/dev/null
	rm -f "$srcimg"
}
trap 'ro_cleanup; src_cleanup; rm -f "$RO_WORK/damaged.img" "$RO_WORK"/*.man.nolf' EXIT
rs_unload
c_unload
rm -f "$srcimg"
truncate -s 256M "$srcimg"
mkfs.ext4 -q -F -b 4096 "$srcimg" || fail "mkfs.ext4 of the source image failed"
srcloop=$(loop_attach "$srcimg")
mkdir -p "$srcmnt"
mount -t ext4 -o user_xattr "$srcloop" "$srcmnt" || fail "mounting the ext4 source image failed"
mkdir -p "$src"
chmod 755 "$src"
note "$(python3 "$RO_TREE" generate "$src" source | tr '\n' ' ')"
python3 "$RO_TREE" portable "$src" "$RO_WORK/src.man" >/dev/null || fail "manifest of the source failed"
rm -f "$img"
truncate -s 512M "$img"
t0=$(date +%s%N)
"$TOOL" format --force --source "$src" "$img" >/dev/null || fail "our format --source failed"
note "format --source of $(wc -l <"$RO_WORK/src.man") paths: $((($(date +%s%N) - t0) / 1000000)) ms"
cp --sparse=always "$img" "$RO_WORK/damaged.img"

# C's fsck of what we wrote: dmesg must name no error.
FSCK_OPTS=ro,nochanges,fsck,fix_errors=no,verbose
fsck_errors() { # prints the lines of a C fsck that report a problem
	dmesg_text | grep -Ei 'error|inconsisten|incorrect|wrong|missing|mismatch|not fixing|fix\?|bad |invalid|unexpected' |
		grep -v 'fix_errors' || true
}
c_load
loop=$(loop_attach "$img")
dmesg -C
mount -t bcachefs -o "$FSCK_OPTS" "$loop" "$MNT" || fail "C did not mount our volume with $FSCK_OPTS: $(dmesg_text | tail -n 8)"
mounted=1
errs=$(fsck_errors)
[ -z "$errs" ] || fail "C's fsck of our volume reports: $(echo "$errs" | head -n 8)"
passes=$(dmesg_text | grep -c 'check_\|going read-write\|recovery' || true)
note "C fsck (-o $FSCK_OPTS): no error in dmesg ($(dmesg_text | wc -l) lines, $passes naming passes)"
python3 "$RO_TREE" portable "$MNT" "$RO_WORK/c.man" >/dev/null || fail "manifest under C failed"
# Our volume has lost+found (initialize makes it, as C's does), the source
# tree has not: both left out, and the root, whose link count it changes.
nolf() { grep -v -F -e '"path": "lost+found",' -e '"path": ".",' "$1" >"$1.nolf"; }
nolf "$RO_WORK/src.man"
nolf "$RO_WORK/c.man"
python3 "$RO_TREE" compare "$RO_WORK/src.man.nolf" "$RO_WORK/c.man.nolf" >&2 || fail "C reads something else than the source tree"
note "C reads the $(wc -l <"$RO_WORK/c.man.nolf") paths (lost+found and the root aside) as the source has them (type, size, mode, nlink, owner, mtime, sha256, targets, rdev, user xattrs)"
umount "$MNT"
mounted=
losetup -d "$loop"
loop=

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
c_unload
out=$("$TOOL" list -b dirents "$loop")
for n in written-by-c f1 f2 f3; do
	echo "$out" | grep -q "$n" || fail "our list does not show $n that C wrote: $(echo "$out" | tail -n 3)"
done
note "C wrote written-by-c/f1..f3 on our volume; our list shows them"
exit 0
