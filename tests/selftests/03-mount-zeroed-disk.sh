# SPDX-License-Identifier: GPL-2.0
# Mounting a zeroed disk fails with EINVAL and exactly one dmesg line that
# names the device and the reason; the disk is not written.
. "$(dirname "$0")/lib.sh"
dev=${BCH_DISK_ZERO:?}
c_unload
rs_unload
rs_load
before=$(dev_sha "$dev")
dmesg -C
r=$(sys_mount "$dev" "$MNT" bcachefs)
[ "$r" = EINVAL ] || fail "mount of a zeroed disk returned $r, want EINVAL"
lines=$(dmesg_text | grep -c "$dev")
[ "$lines" = 1 ] || { dmesg_text >&2; fail "want 1 dmesg line naming $dev, got $lines"; }
dmesg_text | grep "$dev" | grep -q "not a bcachefs superblock" ||
	fail "dmesg line does not give the reason: $(dmesg_text | grep "$dev")"
note "$(dmesg_text | grep "$dev")"
sync
echo 3 > /proc/sys/vm/drop_caches
[ "$(dev_sha "$dev")" = "$before" ] || fail "$dev changed by a failed mount"
grep -q " $MNT " /proc/mounts && fail "something got mounted on $MNT"
rs_unload
