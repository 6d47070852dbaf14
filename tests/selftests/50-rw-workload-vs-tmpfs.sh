# SPDX-License-Identifier: GPL-2.0
# Read-write mount, judged by a reference filesystem and by C, in both
# directions.  Our `format` on the scratch disk; the module under test
# mounts it rw and runs rw_workload.py (4 processes, each in its own
# subtree, seeded random create, write, append, truncate, every fallocate
# mode, mmap and O_DIRECT writes, O_DIRECT reads, renames with
# NOREPLACE/EXCHANGE/WHITEOUT, links, symlinks, mkdir/rmdir, user xattrs, chmod,
# utime, fsync); the same seed on the reference filesystem must give the
# identical log (every result, errno and data read back) and manifest
# (type, mode, nlink, size, sha256, symlink target, user xattrs, hard
# links, deterministic mtimes).  The reference is ext4, not tmpfs: the
# guest kernel's tmpfs has no user xattrs (CONFIG_TMPFS_XATTR=n) and no
# ZERO_RANGE, COLLAPSE_RANGE or INSERT_RANGE (EOPNOTSUPP), which C
# bcachefs all supports.  After the unmount (the superblock must say
# clean) the C module's fsck (ro,nochanges,fsck,fix_errors=no,verbose)
# must report nothing and C's full manifest (adding inode numbers,
# st_blocks, directory sizes, mtime and ctime in ns) must equal the one
# the module under test showed.  Then C runs its own workload (another
# seed) rw and unmounts; the module under test mounts rw, shows C's full
# manifest, runs a third seed (its log again equal to the reference's),
# unmounts, and C's fsck is clean and C's manifest equal again.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
dev=${BCH_DISK_SCRATCH:?}
ops=${BCH_RW_OPS:-200}
w=$RW_WORK/50
rm -rf "$w"; mkdir -p "$w"
REF=$w/ref
mounted=
trap '[ -z "$mounted" ] || umount "$MNT" 2>/dev/null; ref_umount "$REF"' EXIT

# workload SEED DIR NAME: the run on the volume mounted at $MNT (DIR under
# it), its manifest; the same on the reference (mounted at $REF); equal.
workload() {
	local seed=$1 sub=$2 name=$3 t0=$SECONDS t1
	python3 "$RW_WL" run --seed "$seed" --ops "$ops" "$MNT/$sub" "$w/$name.log" ||
		fail "$name: the workload failed under $(rw_name)"
	t1=$SECONDS
	python3 "$RW_WL" manifest "$MNT/$sub" "$w/$name.man" >/dev/null || fail "$name: manifest failed"
	python3 "$RW_WL" run --seed "$seed" --ops "$ops" "$REF/$sub" "$w/$name.ref.log" ||
		fail "$name: the workload failed on the reference (ext4)"
	python3 "$RW_WL" manifest "$REF/$sub" "$w/$name.ref.man" >/dev/null || fail "$name: manifest of the reference failed"
	python3 "$RW_WL" compare "$w/$name.ref.log" "$w/$name.log" >&2 ||
		fail "$name: the workload's results (seed $seed) under $(rw_name) differ from ext4's"
	python3 "$RW_WL" compare "$w/$name.ref.man" "$w/$name.man" >&2 ||
		fail "$name: the tree the workload left (seed $seed) under $(rw_name) differs from ext4's"
	note "$name: seed $seed, $(wc -l <"$w/$name.log") operations ($(grep -c -e '-> OK' -e '-> [0-9]' "$w/$name.log") succeeded) in $((t1 - t0))s under $(rw_name); log and manifest ($(wc -l <"$w/$name.man") paths) equal ext4's"
}

t0=$SECONDS
rw_format_load "$dev"
rw_mount "$dev" "$MNT"
mounted=1
ref_mount "$REF"

# 1. The module under test writes; equal to the reference.
workload 1 w1 first
sync
python3 "$RW_WL" manifest --full "$MNT" "$w/mut1.full" >/dev/null || fail "full manifest under $(rw_name) failed"
umount "$MNT" || fail "umount under $(rw_name) failed"
mounted=
sb_clean "after $(rw_name)'s unmount" "$dev"

# 2. C's fsck, and C reads what the module under test showed.
c_fsck "after $(rw_name) wrote" "$dev" "$w/c1.full"
python3 "$RW_WL" compare "$w/mut1.full" "$w/c1.full" >&2 ||
	fail "C reads something else than $(rw_name) showed before its unmount"
note "C reads the $(wc -l <"$w/c1.full") paths as $(rw_name) showed them (with inode numbers, blocks, times)"

# 3. C writes (another seed) and unmounts.
c_only
mount -t bcachefs "$dev" "$MNT" || fail "C did not mount the volume rw: $(dmesg_text | tail -n 5)"
mounted=1
python3 "$RW_WL" run --seed 2 --ops "$ops" "$MNT/w2" "$w/c2.log" || fail "the workload under C failed"
sync
python3 "$RW_WL" manifest --full "$MNT" "$w/c2.full" >/dev/null || fail "full manifest under C failed"
umount "$MNT" || fail "umount under C failed"
mounted=
sb_clean "after C's unmount" "$dev"

# 4. The module under test reads what C wrote and writes more.
rw_load
rw_mount "$dev" "$MNT"
mounted=1
python3 "$RW_WL" manifest --full "$MNT" "$w/mut2.full" >/dev/null || fail "full manifest under $(rw_name) failed"
python3 "$RW_WL" compare "$w/c2.full" "$w/mut2.full" >&2 ||
	fail "$(rw_name) shows something else than C wrote"
note "$(rw_name) mounted rw shows the $(wc -l <"$w/mut2.full") paths as C left them"
workload 3 w3 third
sync
python3 "$RW_WL" manifest --full "$MNT" "$w/mut3.full" >/dev/null || fail "full manifest under $(rw_name) failed"
umount "$MNT" || fail "umount under $(rw_name) failed"
mounted=
sb_clean "after $(rw_name)'s second unmount" "$dev"

# 5. C's fsck again, and C reads the same.
c_fsck "after $(rw_name) wrote on C's volume" "$dev" "$w/c3.full"
python3 "$RW_WL" compare "$w/mut3.full" "$w/c3.full" >&2 ||
	fail "C reads something else than $(rw_name) showed before its second unmount"
c_unload
note "total $((SECONDS - t0))s"
exit 0
