# SPDX-License-Identifier: GPL-2.0
# A fresh volume: our format, one mount and unmount by C (which initializes
# it: root snapshot, subvolume, root inode, lost+found, alloc info) and
# nothing else written.  Most btrees then have no root (C keeps fake empty
# roots in memory and never writes them); a btree without a root is an
# empty btree, so the read-only mount must work and show an empty root
# directory holding lost+found.  Nothing is written to the device.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
loop= mounted= img=$RO_WORK/fresh.img
trap ro_cleanup EXIT
rs_unload
c_unload
rm -f "$img"
truncate -s 128M "$img"
"$TOOL" format --force --no_initialize "$img" >/dev/null || fail "our format of $img failed"
loop=$(loop_attach "$img")
c_load
mount -t bcachefs "$loop" "$MNT" || fail "C did not mount the fresh volume"
umount "$MNT" || fail "umount under C failed"
c_unload
roots=$("$TOOL" show-super "$img" >/dev/null 2>&1; "$TOOL" list --nodes -b extents "$img" 2>&1 | head -n 3)
note "after C's first mount, extents btree nodes: ${roots:-none}"
before=$(dev_sha "$loop")
ro_load
ro_mount "$loop" "$MNT"
mounted=1
got=$(ls -A "$MNT" | tr '\n' ' ')
[ "$got" = "lost+found " ] || fail "root directory of the fresh volume: '$got', want 'lost+found '"
[ -d "$MNT/lost+found" ] || fail "lost+found is not a directory"
[ -z "$(ls -A "$MNT/lost+found")" ] || fail "lost+found not empty"
df -P "$MNT" >/dev/null || fail "statfs of the fresh volume failed"
find "$MNT" -type f | grep -q . && fail "files found on a fresh volume: $(find "$MNT" -type f | head -n 3)"
umount "$MNT"
mounted=
note "$(ro_name) mounts the fresh volume -o ro: root holds lost+found only, statfs works"
ro_unload
dev_unchanged "fresh volume" "$loop" "$before"
exit 0
