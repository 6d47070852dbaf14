#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Guest half of scripts/demo.  Prints each step and what it showed.
set -uo pipefail
dev=${1:?device}
tool="$BCH_ROOT/target/release/bcachefs"
mnt=/tmp/demo-mnt
mkdir -p "$mnt"
step() { printf '\n$ %s\n' "$*"; "$@"; }

step sh -c "$tool format --force --label demo $dev >/dev/null"
step "$tool" show-super "$dev"
modprobe -q -d "$BCH_MODROOT" -a libcrc32c crc64 2>/dev/null
step insmod "$BCH_ROOT/bcachefs_rs.ko"
step grep bcachefs /proc/filesystems
step ls -la /sys/fs/bcachefs/
step mount -t bcachefs "$dev" "$mnt"
step sh -c "dmesg | grep bcachefs_rs"
step rmmod bcachefs_rs

echo
echo "The same disk under the C module (the oracle):"
step modprobe -d "$BCH_MODROOT" bcachefs
step mount -t bcachefs "$dev" "$mnt"
step sh -c "echo hello from bcachefs > $mnt/hello && sync && cat $mnt/hello"
step df -h "$mnt"
uuid=$(ls /sys/fs/bcachefs | grep -E '^[0-9a-f-]{36}$' | head -n 1)
step ls "/sys/fs/bcachefs/$uuid"
step cat "/sys/fs/bcachefs/$uuid/btree_cache_size"
step umount "$mnt"
step modprobe -r -d "$BCH_MODROOT" bcachefs

echo
echo "What C wrote, read back by our tool (the root directory's dirents and the file's inline data extent):"
step "$tool" list -b dirents "$dev"
step "$tool" list -b extents "$dev"
exit 0
