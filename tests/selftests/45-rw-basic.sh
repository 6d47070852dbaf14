# SPDX-License-Identifier: GPL-2.0
# The read-write mount of bcachefs_rs: our format, a read-write mount by
# our module, then through the VFS: mkdir, create, small and large writes,
# overwrites in the middle, appends, mmap writes, fsync, symlinks, hard
# links, a fifo, rename (plain, over an existing file, RENAME_NOREPLACE,
# RENAME_EXCHANGE), unlink, rmdir, truncate down and up, chmod, chown,
# utimes, xattrs (user., trusted.; replace, remove, XATTR_CREATE),
# O_TMPFILE (linked in, and dropped), fallocate (extend, punch, zero),
# SEEK_DATA/SEEK_HOLE, FIEMAP, O_DIRECT.  What the files hold is recorded
# (type, mode, owner, size, sha256, link target, xattrs); it must read
# back the same after an unmount and
# a read-only mount by us, after a second read-write mount (which adds and
# removes more), and under the C module, whose fsck (-o
# ro,nochanges,fsck,fix_errors=no) must report nothing.  Last, a volume
# formatted without initializing is initialized by our read-write mount
# and checked by C the same way.
# BCH_RW_DAMAGE=1 proves the check can fail: the expected content of one
# file is changed before the last comparison.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
loop= mounted= img=$RO_WORK/rw.img
trap ro_cleanup EXIT
W=$RO_WORK/rw-work
rm -rf "$W"
mkdir -p "$W"
rs_unload
c_unload
rm -f "$img"
truncate -s 256M "$img"
"$TOOL" format --force "$img" >/dev/null || fail "our format of $img failed"
loop=$(loop_attach "$img")
rs_load

# manifest DIR OUT: one line per path, sorted.
manifest() {
	python3 - "$1" "$2" <<'PY'
import hashlib, os, stat, sys
root, out = sys.argv[1], sys.argv[2]
lines = []
for d, dirs, files in os.walk(root):
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root)
        if rel == "lost+found":
            continue
        st = os.lstat(p)
        kind = stat.S_IFMT(st.st_mode)
        extra = ""
        if stat.S_ISREG(kind):
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for b in iter(lambda: f.read(1 << 20), b""):
                    h.update(b)
            extra = h.hexdigest()
        elif stat.S_ISLNK(kind):
            extra = os.readlink(p)
        nlink = st.st_nlink if not stat.S_ISDIR(kind) else 0
        xa = ""
        if not stat.S_ISLNK(kind):
            names = sorted(n for n in os.listxattr(p) if n.startswith(("user.", "trusted.")))
            xa = ",".join(f"{n}={os.getxattr(p, n).hex()}" for n in names)
        lines.append(f"{rel} {oct(st.st_mode)} {st.st_uid}:{st.st_gid} {st.st_size if not stat.S_ISDIR(kind) else 0} {nlink} {int(st.st_mtime)} {extra} [{xa}]")
with open(out, "w") as f:
    f.write("\n".join(sorted(lines)) + "\n")
PY
}
same() { # label expected got
	diff -u "$2" "$3" >&2 || fail "$1: content differs from what was written (diff above)"
}

# c_check LABEL MANIFEST: the C module mounts the volume with every fsck
# pass and no changes (-o ro,nochanges,fsck,fix_errors=no), must report
# nothing and read MANIFEST back; our module is loaded again after.  On a
# failure the image is copied to the scratch disk for a look from the host.
FSCK_OPTS=ro,nochanges,fsck,fix_errors=no,verbose
c_check() {
	local r errs
	rs_unload
	c_load
	dmesg -C
	r=$(vfs_mount "$loop" "$MNT" "$FSCK_OPTS")
	if [ "$r" != OK ]; then
		save_image
		fail "$1: C did not mount the volume with $FSCK_OPTS: $r; $(dmesg_text | tail -n 8)"
	fi
	mounted=1
	errs=$(dmesg_text | grep -Ei 'error|inconsisten|incorrect|wrong|missing|mismatch|not fixing|fix\?|bad |invalid|unexpected' | grep -v 'fix_errors' || true)
	[ -z "$errs" ] || { umount "$MNT"; mounted=; save_image; fail "$1: C's fsck of the volume reports: $(echo "$errs" | head -n 8)"; }
	manifest "$MNT" "$W/c"
	umount "$MNT"
	mounted=
	c_unload
	same "$1: C's mount" "$2" "$W/c"
	note "$1: C's fsck reports nothing, C reads the $(wc -l <"$2") paths as written"
	rs_load
}
save_image() {
	[ -n "${BCH_DISK_SCRATCH:-}" ] || return 0
	dd if="$img" of="$BCH_DISK_SCRATCH" bs=1M conv=fsync status=none &&
		note "image saved to the scratch disk ($BCH_DISK_SCRATCH)"
}

r=$(vfs_mount "$loop" "$MNT" rw)
[ "$r" = OK ] || fail "read-write mount by bcachefs_rs failed: $r; dmesg: $(dmesg_text | tail -n 5)"
mounted=1
grep -q " $MNT bcachefs rw" /proc/mounts || fail "not mounted read-write: $(grep " $MNT " /proc/mounts)"
note "mounted read-write by bcachefs_rs"

# Namespace and data.
mkdir "$MNT/d1" "$MNT/d1/sub" "$MNT/gone-dir" || fail "mkdir failed"
printf 'hello, world\n' >"$MNT/small" || fail "writing small failed"
head -c 4096 /dev/urandom >"$MNT/d1/page"
head -c 300000 /dev/urandom >"$MNT/d1/big"
head -c 2000000 /dev/urandom >"$MNT/d1/sub/bigger"
python3 - "$MNT" <<'PY' || fail "python writes failed"
import mmap, os, sys, ctypes
m = sys.argv[1]
# An overwrite in the middle of a file, across a page boundary.
fd = os.open(f"{m}/d1/big", os.O_RDWR)
os.pwrite(fd, b"X" * 5000, 10000)
os.fsync(fd)
os.close(fd)
# Appends, then fsync.
with open(f"{m}/appended", "ab") as f:
    for i in range(200):
        f.write(f"line {i}\n".encode())
    f.flush()
    os.fsync(f.fileno())
# A sparse file: a hole, then data.
with open(f"{m}/sparse", "wb") as f:
    f.seek(1 << 20)
    f.write(b"after the hole")
# mmap write.
with open(f"{m}/mapped", "wb") as f:
    f.truncate(3 * 4096)
with open(f"{m}/mapped", "r+b") as f:
    mm = mmap.mmap(f.fileno(), 3 * 4096)
    mm[100:110] = b"mmapwrite!"
    mm[5000:5004] = b"MMAP"
    mm.flush()
    mm.close()
# renameat2 flags.
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
def renameat2(a, b, flags):
    r = libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags)
    return 0 if r == 0 else ctypes.get_errno()
open(f"{m}/ex-a", "w").write("content a\n")
open(f"{m}/ex-b", "w").write("content b\n")
assert renameat2(f"{m}/ex-a", f"{m}/ex-b", 1) == 17, "RENAME_NOREPLACE over an existing file"
assert renameat2(f"{m}/ex-a", f"{m}/ex-b", 2) == 0, "RENAME_EXCHANGE"
assert open(f"{m}/ex-a").read() == "content b\n"
assert open(f"{m}/ex-b").read() == "content a\n"
assert renameat2(f"{m}/ex-a", f"{m}/ex-c", 1) == 0, "RENAME_NOREPLACE to a new name"
# Extended attributes: set, replace, remove, the flags, on a file and a
# directory.
import errno
os.setxattr(f"{m}/small", "user.colour", b"blue")
os.setxattr(f"{m}/small", "user.colour", b"green")
os.setxattr(f"{m}/small", "user.gone", b"x" * 300)
os.setxattr(f"{m}/small", "trusted.admin", b"\x00\x01binary")
os.removexattr(f"{m}/small", "user.gone")
os.setxattr(f"{m}/d1", "user.dir", b"")
try:
    os.setxattr(f"{m}/small", "user.colour", b"red", os.XATTR_CREATE)
    raise AssertionError("XATTR_CREATE over an existing attribute")
except OSError as e:
    assert e.errno == errno.EEXIST, e
try:
    os.getxattr(f"{m}/small", "user.gone")
    raise AssertionError("a removed attribute is still there")
except OSError as e:
    assert e.errno == errno.ENODATA, e
assert os.getxattr(f"{m}/small", "user.colour") == b"green"
assert sorted(os.listxattr(f"{m}/small")) == ["trusted.admin", "user.colour"], os.listxattr(f"{m}/small")
# O_TMPFILE: one linked in, one dropped.
fd = os.open(m, os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b"from a tmpfile\n")
AT_SYMLINK_FOLLOW = 0x400
r = libc.linkat(AT_FDCWD, f"/proc/self/fd/{fd}".encode(), AT_FDCWD, f"{m}/from-tmpfile".encode(), AT_SYMLINK_FOLLOW)
assert r == 0, f"linkat of an O_TMPFILE: errno {ctypes.get_errno()}"
os.close(fd)
fd = os.open(m, os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b"never linked\n")
os.close(fd)
# fallocate: extend, punch a hole, zero a range; the content as a model
# says.
model = bytearray(os.urandom(20000))
fd = os.open(f"{m}/falloc", os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, bytes(model))
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
def falloc(mode, off, n):
    if libc.fallocate(fd, mode, off, n) != 0:
        raise OSError(ctypes.get_errno(), f"fallocate mode {mode:#x} {off} {n}")
falloc(0, 0, 100000)
model += bytes(100000 - len(model))
falloc(0x01 | 0x02, 4096, 8192)
model[4096:12288] = bytes(8192)
falloc(0x10, 16384, 100)
model[16384:16484] = bytes(100)
assert os.fstat(fd).st_size == 100000, os.fstat(fd).st_size
assert os.pread(fd, 200000, 0) == bytes(model), "fallocate: content differs from the model"
os.close(fd)
# SEEK_DATA/SEEK_HOLE and FIEMAP on the sparse file (a hole, then data
# at 1 MiB).
import fcntl, struct
fd = os.open(f"{m}/sparse", os.O_RDONLY)
assert os.lseek(fd, 0, os.SEEK_DATA) == 1 << 20, os.lseek(fd, 0, os.SEEK_DATA)
assert os.lseek(fd, 0, os.SEEK_HOLE) == 0
assert os.lseek(fd, 1 << 20, os.SEEK_HOLE) == os.fstat(fd).st_size
FS_IOC_FIEMAP = 0xC020660B
buf = bytearray(struct.pack("=QQIIII", 0, 2**64 - 1, 0, 0, 8, 0) + bytes(56 * 8))
fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
mapped = struct.unpack_from("=I", buf, 20)[0]
assert mapped >= 1, "FIEMAP: no extent"
logical, physical, length = struct.unpack_from("=QQQ", buf, 32)
flags = struct.unpack_from("=I", buf, 32 + 40)[0]
assert logical == 1 << 20 and length > 0, (logical, physical, length, flags)
os.close(fd)
# O_DIRECT: aligned I/O works (through the page cache), misaligned is
# EINVAL.
fd = os.open(f"{m}/direct", os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
wbuf = mmap.mmap(-1, 8192)
wbuf[:] = os.urandom(8192)
assert os.pwrite(fd, wbuf, 4096) == 8192
rbuf = mmap.mmap(-1, 12288)
assert os.preadv(fd, [rbuf], 0) == 12288
assert rbuf[:4096] == bytes(4096) and rbuf[4096:] == wbuf[:], "O_DIRECT read back differs"
try:
    os.pwrite(fd, b"x" * 100, 1)
    raise AssertionError("misaligned O_DIRECT write succeeded")
except OSError as e:
    assert e.errno == errno.EINVAL, e
os.close(fd)
PY
ln -s d1/big "$MNT/link-to-big" || fail "symlink failed"
ln -s "$(printf 'long/%.0s' $(seq 1 100))target" "$MNT/long-link" || fail "long symlink failed"
ln "$MNT/small" "$MNT/d1/hardlink" || fail "link failed"
mkfifo "$MNT/fifo" || fail "mkfifo failed"
echo "to be replaced" >"$MNT/victim"
echo "replacement" >"$MNT/replacer"
mv "$MNT/replacer" "$MNT/victim" || fail "rename over an existing file failed"
mv "$MNT/d1/page" "$MNT/d1/sub/page-moved" || fail "rename across directories failed"
echo "short-lived" >"$MNT/d1/tmp"
rm "$MNT/d1/tmp" || fail "unlink failed"
rmdir "$MNT/gone-dir" || fail "rmdir failed"
rmdir "$MNT/d1" 2>/dev/null && fail "rmdir of a non-empty directory succeeded"
head -c 100000 /dev/urandom >"$MNT/shrunk"
truncate -s 5000 "$MNT/shrunk" || fail "truncate down failed"
truncate -s 70000 "$MNT/shrunk" || fail "truncate up failed"
chmod 640 "$MNT/small" || fail "chmod failed"
chown 1234:5678 "$MNT/d1/big" || fail "chown failed"
touch -d "2001-02-03 04:05:06" "$MNT/d1/sub/bigger" || fail "utimes failed"
# An open file that is unlinked stays readable until closed.
python3 - "$MNT" <<'PY' || fail "open-unlinked file"
import os, sys
m = sys.argv[1]
with open(f"{m}/open-unlinked", "w+b") as f:
    f.write(b"still here")
    f.flush()
    os.unlink(f"{m}/open-unlinked")
    f.seek(0)
    assert f.read() == b"still here"
PY
sync
manifest "$MNT" "$W/written"
note "wrote $(wc -l <"$W/written") paths; $(df -P "$MNT" | tail -n 1 | awk '{print $3}') KiB used"
echo 3 >/proc/sys/vm/drop_caches
manifest "$MNT" "$W/after-drop"
same "after dropping the page cache" "$W/written" "$W/after-drop"
umount "$MNT" || fail "umount of the read-write mount failed"
mounted=

# Our read-only mount sees the same.
r=$(vfs_mount "$loop" "$MNT" ro)
[ "$r" = OK ] || fail "read-only mount after the read-write one failed: $r; $(dmesg_text | tail -n 5)"
mounted=1
manifest "$MNT" "$W/ro"
same "our read-only mount" "$W/written" "$W/ro"
umount "$MNT"
mounted=
note "our read-only mount reads back all $(wc -l <"$W/written") paths"
c_check "after the first read-write mount" "$W/written"

# A second read-write mount: more changes, remount ro and rw.
r=$(vfs_mount "$loop" "$MNT" rw)
[ "$r" = OK ] || fail "second read-write mount failed: $r; $(dmesg_text | tail -n 5)"
mounted=1
manifest "$MNT" "$W/rw2"
same "second read-write mount" "$W/written" "$W/rw2"
echo "second mount" >>"$MNT/appended"
rm "$MNT/d1/hardlink"
mkdir "$MNT/d2"
head -c 50000 /dev/urandom >"$MNT/d2/new"
mount -o remount,ro "$MNT" || fail "remount,ro failed"
grep -q " $MNT bcachefs ro" /proc/mounts || fail "not read-only after remount,ro"
touch "$MNT/nope" 2>/dev/null && fail "created a file on a read-only remount"
manifest "$MNT" "$W/final"
mount -o remount,rw "$MNT" || fail "remount,rw after remount,ro failed"
echo "after remount" >"$MNT/d2/after-remount"
sync
manifest "$MNT" "$W/final"
umount "$MNT" || fail "second umount failed"
mounted=
note "second read-write mount: appended, unlinked, mkdir, remount ro and rw"

# C reads it all back and its fsck finds nothing.
[ "${BCH_RW_DAMAGE:-0}" = 1 ] && sed -i '0,/^small /s/ [0-9a-f]\{64\}$/ 0000000000000000000000000000000000000000000000000000000000000000/' "$W/final"
c_check "after the second read-write mount" "$W/final"

# A volume never initialized: our read-write mount initializes it
# (bch2_fs_initialize: root, lost+found, alloc info), then C checks it.
losetup -d "$loop"
loop=
rm -f "$img"
truncate -s 128M "$img"
"$TOOL" format --force --no_initialize "$img" >/dev/null || fail "our format --no_initialize failed"
loop=$(loop_attach "$img")
r=$(vfs_mount "$loop" "$MNT" rw)
[ "$r" = OK ] || fail "read-write mount of a fresh volume failed: $r; $(dmesg_text | tail -n 5)"
mounted=1
[ -d "$MNT/lost+found" ] || fail "no lost+found on the volume our mount initialized"
mkdir "$MNT/dir"
head -c 200000 /dev/urandom >"$MNT/dir/data"
manifest "$MNT" "$W/fresh"
umount "$MNT" || fail "umount of the fresh volume failed"
mounted=
c_check "a fresh volume initialized by our mount" "$W/fresh"
rs_unload
# Whether lockdep was still checking (it stops at its first report, which
# the runner would show as a failure if it came from this test).
[ -r /proc/lockdep_stats ] && note "lockdep: $(grep -m1 -o 'debug_locks: *[0-9]*' /proc/lockdep_stats)"
exit 0
