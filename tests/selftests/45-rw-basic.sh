# SPDX-License-Identifier: GPL-2.0
# The read-write mount of bcachefs_rs: our format, a read-write mount by
# our module, then through the VFS: mkdir, create, small and large writes,
# overwrites in the middle, appends, mmap writes, fsync, symlinks, hard
# links, a fifo, rename (plain, over an existing file, RENAME_NOREPLACE,
# RENAME_EXCHANGE), unlink, rmdir, truncate down and up, chmod, chown,
# utimes, xattrs (user., trusted.; replace, remove, XATTR_CREATE), POSIX
# ACLs (access with named entries, chmod, default inherited on create;
# and C's ACLs read by us),
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
import errno, hashlib, os, stat, sys
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
            # POSIX ACLs in the VFS's xattr form (posix_acl_xattr_header
            # version 2, then {tag, perm, id} entries), as hex.
            for an in ("system.posix_acl_access", "system.posix_acl_default"):
                try:
                    v = os.getxattr(p, an)
                except OSError as e:
                    if e.errno in (errno.ENODATA, errno.EOPNOTSUPP):
                        continue
                    raise
                xa += f" {an[len('system.posix_'):]}={v.hex()}"
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
# POSIX ACLs through the VFS's xattr form (no setfacl in the VM): an
# access ACL with named user and group entries, chmod changing its mask,
# an ACL equivalent to a mode (no xattr, the mode changes), a default ACL
# on a directory inherited by a file and a subdirectory made in it.
python3 - "$MNT" <<'PY' || fail "POSIX ACLs"
import errno, os, stat, struct, sys
m = sys.argv[1]
U = 0xFFFFFFFF
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 1, 2, 4, 8, 0x10, 0x20
def enc(entries):
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
def dec(b):
    assert struct.unpack_from("<I", b)[0] == 2, b
    return [struct.unpack_from("<HHI", b, o) for o in range(4, len(b), 8)]
def get(p, t="access"):
    try:
        return dec(os.getxattr(p, "system.posix_acl_" + t))
    except OSError as e:
        assert e.errno == errno.ENODATA, e
        return None
def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)
f = f"{m}/acl-file"
open(f, "w").write("with an acl\n")
acl = [(USER_OBJ, 6, U), (USER, 4, 1000), (GROUP_OBJ, 4, U), (GROUP, 6, 50), (MASK, 6, U), (OTHER, 4, U)]
os.setxattr(f, "system.posix_acl_access", enc(acl))
assert get(f) == acl, get(f)
assert mode(f) == 0o664, oct(mode(f))
assert "system.posix_acl_access" in os.listxattr(f), os.listxattr(f)
# chmod: the mask (not the owning group) takes the group bits.
os.chmod(f, 0o750)
want = [(USER_OBJ, 7, U), (USER, 4, 1000), (GROUP_OBJ, 4, U), (GROUP, 6, 50), (MASK, 5, U), (OTHER, 0, U)]
assert get(f) == want, get(f)
# An ACL a mode can say: the mode changes, no xattr stays.
g = f"{m}/acl-plain"
open(g, "w").write("plain\n")
os.setxattr(g, "system.posix_acl_access", enc([(USER_OBJ, 7, U), (GROUP_OBJ, 5, U), (OTHER, 0, U)]))
assert mode(g) == 0o750 and get(g) is None, (oct(mode(g)), get(g))
# A default ACL, and what is created under it.
d = f"{m}/acl-dir"
os.mkdir(d, 0o755)
dflt = [(USER_OBJ, 7, U), (USER, 7, 1000), (GROUP_OBJ, 5, U), (MASK, 7, U), (OTHER, 5, U)]
os.setxattr(d, "system.posix_acl_default", enc(dflt))
assert get(d, "default") == dflt and get(d) is None
fd = os.open(f"{d}/f", os.O_CREAT | os.O_WRONLY, 0o666)
os.write(fd, b"inherits\n")
os.close(fd)
assert get(f"{d}/f") == [(USER_OBJ, 6, U), (USER, 7, 1000), (GROUP_OBJ, 5, U), (MASK, 6, U), (OTHER, 4, U)], get(f"{d}/f")
assert get(f"{d}/f", "default") is None
assert mode(f"{d}/f") == 0o664, oct(mode(f"{d}/f"))
os.mkdir(f"{d}/sub", 0o777)
assert get(f"{d}/sub", "default") == dflt
assert get(f"{d}/sub") == [(USER_OBJ, 7, U), (USER, 7, 1000), (GROUP_OBJ, 5, U), (MASK, 7, U), (OTHER, 5, U)], get(f"{d}/sub")
assert mode(f"{d}/sub") == 0o775, oct(mode(f"{d}/sub"))
# A default ACL on a file is refused; removal works.
try:
    os.setxattr(f, "system.posix_acl_default", enc(dflt))
    raise AssertionError("a default ACL on a file")
except OSError as e:
    assert e.errno == errno.EACCES, e
os.setxattr(g, "system.posix_acl_access", enc(acl))
os.removexattr(g, "system.posix_acl_access")
assert get(g) is None
PY
note "POSIX ACLs: access ACL with named entries, chmod of its mask, a default ACL inherited by a file and a directory"
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
# Durable without sync: the journal's periodic work writes what was
# committed within about a second.  A copy of the device taken then (as
# a power cut would leave it) must show the file after journal replay.
echo "durable without sync" >"$MNT/nosync"
# Written back (sync_file_range: writepages, no fsync, so no journal
# flush), as the VFS's periodic writeback would after 30 s.
python3 - "$MNT/nosync" <<'PY' || fail "sync_file_range failed"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
fd = os.open(sys.argv[1], os.O_RDONLY)
assert libc.sync_file_range(fd, 0, 0, 7) == 0, ctypes.get_errno()
os.close(fd)
PY
sleep 4
dd if="$loop" of="$RO_WORK/crash.img" bs=1M iflag=direct status=none || fail "copying the mounted device failed"
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

# The copy taken while mounted: our read-only mount replays its journal.
cloop=$(loop_attach "$RO_WORK/crash.img")
r=$(vfs_mount "$cloop" "$MNT" ro)
[ "$r" = OK ] || { losetup -d "$cloop"; fail "read-only mount of the copy taken while mounted: $r; $(dmesg_text | tail -n 5)"; }
got=$(cat "$MNT/nosync" 2>&1)
umount "$MNT"
losetup -d "$cloop"
rm -f "$RO_WORK/crash.img"
[ "$got" = "durable without sync" ] || fail "a file written 4 s before a copy of the device (no sync) is not in the copy: '$got'"
note "a copy of the mounted device taken 4 s after a write (no sync) has it after journal replay"

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

# The other way: C writes ACLs (an access ACL, a default ACL and a file
# inheriting it), we read them back, chmod one, and C reads that.
rs_unload
c_load
r=$(vfs_mount "$loop" "$MNT" rw)
[ "$r" = OK ] || fail "C's read-write mount of the fresh volume failed: $r; $(dmesg_text | tail -n 5)"
mounted=1
python3 - "$MNT" <<'PY' || fail "C: POSIX ACLs"
import os, struct, sys
m = sys.argv[1]
U = 0xFFFFFFFF
def enc(entries):
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
os.setxattr(f"{m}/dir/data", "system.posix_acl_access", enc([(1, 6, U), (2, 6, 4321), (4, 4, U), (8, 5, 77), (0x10, 7, U), (0x20, 0, U)]))
os.mkdir(f"{m}/cdir", 0o750)
os.setxattr(f"{m}/cdir", "system.posix_acl_default", enc([(1, 7, U), (4, 0, U), (8, 7, 99), (0x10, 7, U), (0x20, 0, U)]))
open(f"{m}/cdir/file", "w").write("C made me\n")
os.mkdir(f"{m}/cdir/csub")
PY
manifest "$MNT" "$W/c-acl"
umount "$MNT" || fail "C's umount failed"
mounted=
c_unload
grep -q 'acl_access=' "$W/c-acl" || fail "C wrote no ACL (its module without CONFIG_BCACHEFS_POSIX_ACL?)"
rs_load
r=$(vfs_mount "$loop" "$MNT" rw)
[ "$r" = OK ] || fail "our read-write mount of the volume C wrote ACLs to failed: $r; $(dmesg_text | tail -n 5)"
mounted=1
manifest "$MNT" "$W/rs-acl"
same "our mount of the ACLs C wrote" "$W/c-acl" "$W/rs-acl"
chmod 0604 "$MNT/dir/data" || fail "chmod of C's file with an ACL failed"
manifest "$MNT" "$W/rs-acl"
umount "$MNT" || fail "umount failed"
mounted=
note "we read the ACLs C wrote ($(grep -c 'acl_' "$W/c-acl") paths with ACLs)"
c_check "after our chmod of C's ACL" "$W/rs-acl"
rs_unload
# Whether lockdep was still checking (it stops at its first report, which
# the runner would show as a failure if it came from this test).
[ -r /proc/lockdep_stats ] && note "lockdep: $(grep -m1 -o 'debug_locks: *[0-9]*' /proc/lockdep_stats)"
exit 0
