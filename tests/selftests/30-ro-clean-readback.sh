# SPDX-License-Identifier: GPL-2.0
# Read-only mount of a clean volume written by C: our `format` on the
# scratch disk, the C module writes the full tree of ro_tree.py (10,000
# files, 24-level deep directories, a 64 MiB and a 9 MiB file, sparse
# files, lz4/zstd/gzip directories, symlinks up to 4095 bytes, hard links,
# 255-byte and UTF-8 names, empty files and directories, fifo, socket and
# device nodes) and records a manifest (every path's type, size, mode,
# nlink, owner, inode, blocks, mtime/ctime in ns, sha256 or link target or
# rdev) and statfs; after a clean unmount the module under test mounts it
# -o ro and must show the identical manifest, list the 2,000-entry
# directory with 512-byte getdents64 buffers giving each name once (also
# when resuming at a d_off), report a sane statfs that agrees with C's,
# and leave the device unchanged.
. "$(dirname "$0")/lib.sh"
dev=${BCH_DISK_SCRATCH:?}
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
w=$RO_WORK/30
rm -rf "$w"; mkdir -p "$w"
mounted=
trap '[ -z "$mounted" ] || umount "$MNT" 2>/dev/null' EXIT

t0=$SECONDS
rs_unload
c_unload
"$TOOL" format --force --no_initialize "$dev" >/dev/null || fail "our format of $dev failed"
c_load
mount -t bcachefs "$dev" "$MNT" || fail "C did not mount our format"
mounted=1
python3 "$RO_TREE" generate "$MNT" full || fail "generating the tree under C failed"
sync
t1=$SECONDS
python3 "$RO_TREE" manifest "$MNT" "$w/c.manifest" || fail "manifest under C failed"
python3 "$RO_TREE" statfs "$MNT" >"$w/c.statfs" || fail "statfs under C is not sane: $(cat "$w/c.statfs")"
find "$MNT/wide" -mindepth 1 -maxdepth 1 -printf '%f\0' >"$w/wide.names"
umount "$MNT" || fail "umount under C failed"
mounted=
c_unload
t2=$SECONDS
note "C: wrote the tree in $((t1 - t0))s, recorded $(wc -l <"$w/c.manifest") paths in $((t2 - t1))s"
"$TOOL" show-super "$dev" | grep -Eq '^Clean: +1' || fail "show-super: the volume is not clean after C's umount"

before=$(dev_sha "$dev")
ro_load
ro_mount "$dev" "$MNT"
mounted=1
t3=$SECONDS
python3 "$RO_TREE" manifest "$MNT" "$w/ours.manifest" || fail "manifest under $(ro_name) failed"
t4=$SECONDS
python3 "$RO_TREE" compare "$w/c.manifest" "$w/ours.manifest" ||
	fail "$(ro_name) shows a different tree than C wrote"
python3 "$RO_TREE" readdir "$MNT/wide" "$w/wide.names" || fail "readdir of wide/ under $(ro_name)"
python3 "$RO_TREE" statfs "$MNT" "$w/c.statfs" >"$w/ours.statfs" ||
	fail "statfs under $(ro_name): $(cat "$w/ours.statfs")"
grep -q " $MNT bcachefs ro[ ,]" /proc/mounts || fail "not mounted read-only: $(grep " $MNT " /proc/mounts)"
umount "$MNT" || fail "umount under $(ro_name) failed"
mounted=
ro_unload
dev_unchanged "mount, read everything, umount" "$dev" "$before"
note "$(ro_name): mounted in $((t3 - t2))s (with hashing the device), manifest in $((t4 - t3))s; total $((SECONDS - t0))s"
exit 0
