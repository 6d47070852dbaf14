# SPDX-License-Identifier: GPL-2.0
# Our format core against C bcachefs: our `format` on the scratch disk, the
# C module mounts it (initialising it), writes a generated tree (nested
# dirs, 1,100 files of sizes 0 to 3 MiB, sparse files, symlinks, hard
# links, 255-byte and UTF-8 names, xattrs, special files, a directory with
# compression=lz4) and unmounts cleanly; then our `list` must show every
# inode, dirent, xattr and extent of the tree as C reported it through the
# VFS, and our `show-super` must agree with the kernel's sysfs.  Twice:
# with the default format options and with non-default ones.  The checks
# are in c_compat_check.py.
. "$(dirname "$0")/lib.sh"
dev=${BCH_DISK_SCRATCH:?}
tool="$BCH_ROOT/target/release/bcachefs"
check="$BCH_ROOT/tests/selftests/c_compat_check.py"
label=c-compat
[ -x "$tool" ] || skip "$tool missing: cargo build --release -p bcachefs-tools-rs"
command -v python3 >/dev/null || skip "python3 missing in the guest"

work=
mounted=
cleanup() {
	[ -z "$mounted" ] || umount "$MNT" 2>/dev/null
	[ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT
kept="the disk is left in scripts/selftests' scratch.img (cache dir selftest-images) until the next run"

one_pass() { # format options...
	local t0=$SECONDS t1 t2 b version new from
	work=$(mktemp -d /tmp/c-compat.XXXXXX)
	from=$(dmesg_text | wc -l)
	new() { dmesg_text | tail -n +$((from + 1)); }  # kernel log of this pass
	note "format options: ${*:-(defaults)}"
	rs_unload
	c_unload
	"$tool" format --force --no_initialize --label "$label" "$@" "$dev" >"$work/format.txt" 2>&1 ||
		fail "our format $* failed: $(tail -n 5 "$work/format.txt")"
	c_load
	mount -t bcachefs "$dev" "$MNT" ||
		fail "C bcachefs did not mount our fresh format ($*): $(new | tail -n 5)"
	mounted=1
	new | grep -q "initializing new filesystem" ||
		fail "C did not initialise the new filesystem: $(new | tail -n 5)"
	version=$(new | sed -n 's/.*starting version \([0-9]*\.[0-9]*: [^ ]*\).*/\1/p' | head -n 1)
	[ -n "$version" ] || fail "no 'starting version' line from C in dmesg"

	python3 "$check" generate "$MNT" "$work/plan.json" || fail "generating the tree under C failed"
	sync
	python3 "$check" manifest "$MNT" "$work/plan.json" "$work/manifest.json" ||
		fail "recording the manifest under C failed"
	python3 "$check" sysfs "$version" "$work/sysfs.json" || fail "reading the kernel's sysfs failed"
	t1=$SECONDS
	umount "$MNT" || fail "umount under C failed"
	mounted=
	! new | grep -Eiq "error|inconsisten|fsck|$SPLAT_RE" ||
		fail "C logged errors while writing the tree: $(new | grep -Ei "error|inconsisten|fsck|$SPLAT_RE" | head -n 5)"
	c_unload

	for b in inodes dirents extents xattrs; do
		"$tool" list -b "$b" "$dev" >"$work/$b.txt" 2>"$work/$b.err" ||
			fail "our list -b $b failed ($*): $(head -c 2000 "$work/$b.err"); $kept"
		[ ! -s "$work/$b.err" ] ||
			fail "our list -b $b wrote to stderr ($*): $(head -c 2000 "$work/$b.err"); $kept"
	done
	"$tool" show-super "$dev" >"$work/show-super.txt" 2>"$work/show-super.err" ||
		fail "our show-super failed ($*): $(head -c 2000 "$work/show-super.err"); $kept"
	t2=$SECONDS
	note "list: $(wc -l <"$work/inodes.txt") inode lines, $(wc -l <"$work/dirents.txt") dirents," \
		"$(wc -l <"$work/extents.txt") extents, $(wc -l <"$work/xattrs.txt") xattrs"
	python3 "$check" check "$work/manifest.json" "$work/sysfs.json" "$work" "$label" ||
		fail "our list/show-super disagree with what C wrote (format options: ${*:-defaults}); $kept"
	note "time: C writes and records $((t1 - t0))s, our list $((t2 - t1))s, check $((SECONDS - t2))s"
	rm -rf "$work"
	work=
}

SPLAT_RE='BUG|Oops|WARNING|panic|lockdep'
one_pass
one_pass --block_size 1k --bucket_size 128k --btree_node_size 64k --str_hash crc64 \
	--metadata_checksum xxhash --data_checksum crc64
exit 0
