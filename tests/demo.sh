#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Guest half of scripts/demo.  Prints each step and what it showed: our
# tool formats the disk, our module mounts it read-write and files are
# written, df and sysfs are shown (a tunable changed), the volume is
# unmounted; then Linux 6.12's C bcachefs (the oracle) checks it with its
# fsck (no changes allowed) and reads the same files back.
set -uo pipefail
dev=${1:?device}
tool="$BCH_ROOT/target/release/bcachefs"
mnt=/tmp/demo-mnt
mkdir -p "$mnt"
step() { printf '\n$ %s\n' "$*"; "$@"; }

step sh -c "$tool format --force --label demo $dev >/dev/null"
step "$tool" show-super "$dev"

echo
echo "Our module mounts the new volume read-write (its first mount initializes it):"
modprobe -q -d "$BCH_MODROOT" -a libcrc32c crc64 2>/dev/null
step insmod "$BCH_ROOT/bcachefs_rs.ko"
step grep bcachefs /proc/filesystems
step mount -t bcachefs "$dev" "$mnt"
step findmnt "$mnt"
uuid=$(ls /sys/fs/bcachefs | grep -E '^[0-9a-f-]{36}$' | head -n 1)
sys=/sys/fs/bcachefs/$uuid
step cat "$sys/options/compression"
if [ -w "$sys/options/compression" ]; then
	step sh -c "echo lz4 > $sys/options/compression"
	step cat "$sys/options/compression"
fi
step sh -c "mkdir -p $mnt/docs/deep && echo hello from bcachefs-rs > $mnt/hello && seq 1 200000 > $mnt/docs/numbers && ln -s docs/seq $mnt/seq-link && head -c 3M /dev/urandom > $mnt/docs/deep/random && ln $mnt/hello $mnt/docs/hello-again && mv $mnt/docs/numbers $mnt/docs/seq && sync"
step sh -c "echo appended >> $mnt/hello && truncate -s 100000 $mnt/docs/deep/random && rm $mnt/docs/hello-again"
step ls -laR "$mnt"
step cat "$mnt/hello"
step sh -c "cd $mnt && find . -type f | sort | xargs sha256sum | tee /tmp/demo-rs.sha"
step df -h "$mnt"
step ls "$sys" "$sys/dev-0"
for f in btree_cache_size internal/journal_debug options/data_checksum options/compression dev-0/bucket_size dev-0/nbuckets dev-0/io_done; do
	[ -e "$sys/$f" ] && step cat "$sys/$f"
done
step umount "$mnt"
step rmmod bcachefs_rs

echo
echo "The C module (the oracle) runs its fsck on what we wrote, changing nothing:"
step modprobe -d "$BCH_MODROOT" bcachefs
dmesg -C
step mount -t bcachefs -o ro,nochanges,fsck,fix_errors=no "$dev" "$mnt"
errs=$(dmesg | grep -iE 'error|inconsistent|fixing|not fixing|repair' | grep -v 'errors=' || true)
if [ -n "$errs" ]; then
	echo "C's fsck reported:"; echo "$errs"
else
	echo "C's fsck: no errors"
fi
step sh -c "cd $mnt && find . -type f | sort | xargs sha256sum > /tmp/demo-c.sha && diff /tmp/demo-rs.sha /tmp/demo-c.sha && echo 'sha256 of every file under C: identical to what we wrote'"
step cat "$mnt/hello"
step umount "$mnt"
step modprobe -r -d "$BCH_MODROOT" bcachefs
exit 0
