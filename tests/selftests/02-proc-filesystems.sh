# SPDX-License-Identifier: GPL-2.0
# /proc/filesystems lists bcachefs (as a block-device filesystem) only while
# bcachefs_rs is loaded.
. "$(dirname "$0")/lib.sh"
c_unload
rs_unload
grep -qw bcachefs /proc/filesystems && fail "bcachefs listed before loading"
rs_load
line=$(grep -w bcachefs /proc/filesystems) || fail "bcachefs not in /proc/filesystems"
[[ "$line" != nodev* ]] || fail "bcachefs listed as nodev: '$line' (FS_REQUIRES_DEV missing)"
rs_unload
grep -qw bcachefs /proc/filesystems && fail "bcachefs still listed after rmmod"
exit 0
