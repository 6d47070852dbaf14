# SPDX-License-Identifier: GPL-2.0
# Mounting an ext4 disk as bcachefs fails with EINVAL and one dmesg line;
# the ext4 filesystem is untouched and still mounts as ext4 afterwards.
. "$(dirname "$0")/lib.sh"
dev=${BCH_DISK_EXT4:?}
c_unload
rs_unload
rs_load
before=$(dev_sha "$dev")
dmesg -C
r=$(sys_mount "$dev" "$MNT" bcachefs)
[ "$r" = EINVAL ] || fail "mount of an ext4 disk returned $r, want EINVAL"
lines=$(dmesg_text | grep -c "$dev")
[ "$lines" = 1 ] || { dmesg_text >&2; fail "want 1 dmesg line naming $dev, got $lines"; }
dmesg_text | grep "$dev" | grep -q "not a bcachefs superblock" ||
	fail "dmesg line does not give the reason: $(dmesg_text | grep "$dev")"
note "$(dmesg_text | grep "$dev")"
[ "$(dev_sha "$dev")" = "$before" ] || fail "$dev changed by a failed mount"
mount -t ext4 -o ro "$dev" "$MNT" || fail "ext4 no longer mounts"
[ "$(cat "$MNT/marker")" = "bcachefs-rs ext4 fixture" ] || fail "ext4 content changed"
umount "$MNT"
rs_unload
