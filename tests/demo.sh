#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Guest half of scripts/demo.  Prints each step and what it showed: our
# tool formats the disk, Linux 6.12's C bcachefs (the oracle) writes files
# and unmounts, then our module mounts the same volume read-only, reads the
# files back byte for byte and shows its sysfs.
set -uo pipefail
dev=${1:?device}
tool="$BCH_ROOT/target/release/bcachefs"
mnt=/tmp/demo-mnt
mkdir -p "$mnt"
step() { printf '\n$ %s\n' "$*"; "$@"; }

step sh -c "$tool format --force --label demo $dev >/dev/null"
step "$tool" show-super "$dev"

echo
echo "The C module (the oracle) writes a few files and unmounts:"
step modprobe -d "$BCH_MODROOT" bcachefs
step mount -t bcachefs "$dev" "$mnt"
step sh -c "mkdir -p $mnt/docs/deep && echo hello from bcachefs > $mnt/hello && seq 1 200000 > $mnt/docs/numbers && ln -s docs/numbers $mnt/numbers-link && head -c 3M /dev/urandom > $mnt/docs/deep/random && sync"
step sh -c "cd $mnt && find . -type f | sort | xargs sha256sum | tee /tmp/demo-c.sha"
step umount "$mnt"
step modprobe -r -d "$BCH_MODROOT" bcachefs

echo
echo "Our module mounts the same volume read-only:"
modprobe -q -d "$BCH_MODROOT" -a libcrc32c crc64 2>/dev/null
step insmod "$BCH_ROOT/bcachefs_rs.ko"
step grep bcachefs /proc/filesystems
step mount -t bcachefs -o ro "$dev" "$mnt"
step findmnt "$mnt"
step ls -laR "$mnt"
step cat "$mnt/hello"
step readlink "$mnt/numbers-link"
step sh -c "cd $mnt && find . -type f | sort | xargs sha256sum > /tmp/demo-rs.sha && diff /tmp/demo-c.sha /tmp/demo-rs.sha && echo 'sha256 of every file: identical to what C wrote'"
step df -h "$mnt"
uuid=$(ls /sys/fs/bcachefs | grep -E '^[0-9a-f-]{36}$' | head -n 1)
step ls "/sys/fs/bcachefs/$uuid" "/sys/fs/bcachefs/$uuid/dev-0"
for f in btree_cache_size internal/journal_debug options/data_checksum options/compression dev-0/bucket_size dev-0/nbuckets dev-0/io_done; do
	step cat "/sys/fs/bcachefs/$uuid/$f"
done
step sh -c "mount -o remount,rw $mnt; dmesg | grep bcachefs_rs | tail -n 5"
step umount "$mnt"
step rmmod bcachefs_rs
exit 0
