#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Helper of the read-write kselftests (50-53): a seeded random-operation
workload, manifests of what a kernel shows, and fill-to-ENOSPC (stdlib
only; runs in the Debian 12 guest).

  rw_workload.py run [--seed N] [--ops M] [--procs P] DIR LOG
        P processes (default 4), each in its own subtree DIR/pI, do M
        (default 150) seeded operations each; every operation's result
        (return value or errno name, and the data it read back) goes to
        LOG (the processes' logs concatenated in order).  The same seed
        gives the same LOG on any filesystem that behaves like Linux's
        reference filesystems.
  rw_workload.py manifest [--full] DIR OUT
        one JSON line per path under DIR (sorted, symlinks not followed):
        type, mode, nlink, size (not of directories), sha256 of a regular
        file, target of a symlink, user xattrs, the first path of the
        same inode for hard links, mtime only where it is deterministic
        (set by utime to before 2001).  --full, for the same volume under
        two modules: also inode number, uid, gid, st_blocks, directory
        size, mtime and ctime in ns (not atime).
  rw_workload.py compare WANT GOT
        compare two logs or manifests; prints the first differences and
        exits 1 if they differ
  rw_workload.py fill DIR SIZE-KIB [MAX-MIB]
        write files of SIZE-KIB (incompressible, seeded) until a write
        fails (or MAX-MIB, default 4096, are written: error "none");
        prints JSON: bytes written, files, the errno that ended it, and
        the sha256 of every file as written
  rw_workload.py verify DIR FILL.json
        read back every file of a fill and compare with its sha256
  rw_workload.py cut [--seed N] [--files F] MNT SYNCED
        one cut point of the power cut test: 2 processes of the random
        workload (in MNT/noise-N) run while F files (default 6,
        MNT/synced/N-I) are written; the first of every three is
        fsync'd, the second fdatasync'd (then their directory fsync'd),
        the third not synced; none is touched again; then, with the
        noise still running, a seeded pause and
        FS_IOC_GOINGDOWN(NOLOGFLUSH) on MNT: the filesystem stops writing
        at once, and the noise is killed.  Appends "path sha256 size"
        of each synced file to SYNCED.
  rw_workload.py cuts FIRST LAST FILES DEV MNT SYNCED
        cut points FIRST..LAST (seeds) in one process: each a cut with
        FILES files, umount, mount -o rw of DEV and check-synced
        --recent; after LAST only the umount.  Prints the ms per phase.
  rw_workload.py check-synced [--recent N] MNT SYNCED
        every file listed in SYNCED reads back with its sha256 (with
        --recent, the last N and a sample of 8 of the others)

The operations: create, write/overwrite at random offsets, append,
truncate up and down, fallocate (mode 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE,
ZERO_RANGE (with and without KEEP_SIZE), COLLAPSE_RANGE, INSERT_RANGE),
mmap write, O_DIRECT write and read (page-aligned buffers from mmap,
4 KiB-aligned offsets and lengths), read, stat, readdir, rename (plain,
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT), link, unlink, mkdir, rmdir, symlink,
setxattr/getxattr/removexattr/listxattr user.*, chmod, utime,
fsync/fdatasync of files and directories.  Names come from a small pool,
so that operations also hit missing, existing and wrong-type paths and
fail with errors the VFS decides (ENOENT, EEXIST, EISDIR, ENOTDIR,
ENOTEMPTY, ELOOP, ENODATA, EINVAL): those go to the log like successes.
Symlink targets are sibling names only, so that no operation leaves its
process's subtree.

Where Linux filesystems legitimately differ, the workload normalizes:
after a failed fallocate it sets the file's mtime itself (C bcachefs
calls file_modified() before checking the arguments of COLLAPSE/INSERT,
ext4 after), and at the end each process sets the times of a seeded half
of its paths, so that the manifest's mtimes (those before 2001) are the
same everywhere.
"""

import ctypes
import errno
import hashlib
import json
import mmap
import os
import random
import stat
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
FL_KEEP_SIZE, FL_PUNCH_HOLE, FL_COLLAPSE_RANGE = 0x01, 0x02, 0x08
FL_ZERO_RANGE, FL_INSERT_RANGE = 0x10, 0x20
FALLOC_MODES = [
    ("alloc", 0), ("keep", FL_KEEP_SIZE), ("punch", FL_PUNCH_HOLE | FL_KEEP_SIZE),
    ("zero", FL_ZERO_RANGE), ("zero_keep", FL_ZERO_RANGE | FL_KEEP_SIZE),
    ("collapse", FL_COLLAPSE_RANGE), ("insert", FL_INSERT_RANGE),
]
KIB = 1024
MAX_OFF = 384 * KIB          # writes, truncates and fallocates stay below
MAX_INSERT_SIZE = 768 * KIB  # no insert into a file larger than this
Y2001_NS = 978307200 * 10**9


def ename(e):
    return errno.errorcode.get(e, str(e))


def sha(b):
    return hashlib.sha256(b).hexdigest()[:16]


def fallocate(fd, mode, off, ln):
    if libc.fallocate(fd, mode, off, ln) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class Proc:
    """One process's workload in its own subtree."""
    DIRS = ["", "d0", "d1", "d0/d2", "d1/d3"]
    FILES = ["f%d" % i for i in range(4)]
    NAMES = FILES + ["d0", "d1", "d2", "d3"]
    XNAMES = ["user.a%d" % i for i in range(5)]

    def __init__(self, root, seed, idx):
        self.root = root
        self.rng = random.Random("%s-%d" % (seed, idx))
        self.idx = idx
        self.out = []

    # -- paths
    def p(self, rel):
        return os.path.join(self.root, rel)

    def rpath(self, files=True):
        d = self.rng.choice(self.DIRS)
        if files or self.rng.random() < 0.8:
            n = self.rng.choice(self.FILES)
        else:
            n = self.rng.choice(self.NAMES[len(self.FILES):])
        return os.path.join(d, n) if d else n

    def rdir(self):
        d = self.rng.choice(self.DIRS[1:])
        return d

    def old_time(self):
        # 1980-2000, ns precision: deterministic mtimes
        return self.rng.randrange(315532800, 978307200) * 10**9 + self.rng.randrange(10**9)

    def off(self, align=1, limit=MAX_OFF):
        return self.rng.randrange(0, limit // align) * align

    # -- the operations: each draws all its arguments first and returns
    # them (the text logged) and a function doing the system calls, which
    # returns the result logged after "->" or raises OSError (its errno
    # name is logged).  Draws after a system call (fallocate and mmap
    # write choose from the file's size) depend on what the filesystem
    # showed, so they are the same wherever the results are.
    def op_create(self):
        rel = self.rpath()

        def f():
            os.close(os.open(self.p(rel), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return "OK"
        return rel, f

    def op_write(self):
        rel = self.rpath()
        off = self.off(self.rng.choice([1, 512, 4096]))
        data = self.rng.randbytes(self.rng.randrange(1, 64 * KIB))

        def f():
            fd = os.open(self.p(rel), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                return "%d" % os.pwrite(fd, data, off)
            finally:
                os.close(fd)
        return "%s off=%d len=%d" % (rel, off, len(data)), f

    def op_append(self):
        rel = self.rpath()
        data = self.rng.randbytes(self.rng.randrange(1, 16 * KIB))

        def f():
            fd = os.open(self.p(rel), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                n = os.write(fd, data)
                return "%d size=%d" % (n, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        return "%s len=%d" % (rel, len(data)), f

    def op_truncate(self):
        rel = self.rpath()
        size = self.rng.choice([0, self.off(), self.off(4096), self.off(limit=8 * KIB)])

        def f():
            os.truncate(self.p(rel), size)
            return "OK"
        return "%s %d" % (rel, size), f

    def op_fallocate(self):
        rel = self.rpath()
        name, mode = self.rng.choice(FALLOC_MODES)
        off = self.off(self.rng.choice([1, 4096]))
        ln = self.rng.randrange(1, 128 * KIB)
        t = self.old_time()

        def f():
            nonlocal off, ln
            fd = os.open(self.p(rel), os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                if mode in (FL_COLLAPSE_RANGE, FL_INSERT_RANGE):
                    # block-aligned and inside the file (else EINVAL), and
                    # sometimes 100 bytes off (EINVAL everywhere)
                    blocks = size // 4096
                    if mode == FL_INSERT_RANGE and size > MAX_INSERT_SIZE:
                        blocks = 0
                    if blocks >= 2:
                        off = self.rng.randrange(0, blocks - 1) * 4096
                        ln = self.rng.randrange(1, blocks - off // 4096) * 4096
                        if mode == FL_INSERT_RANGE:
                            ln = self.rng.randrange(1, 17) * 4096
                    else:
                        off, ln = 0, 4096
                    if self.rng.random() < 0.1:
                        off += 100
                pre = "size=%d off=%d len=%d: " % (size, off, ln)
                try:
                    fallocate(fd, mode, off, ln)
                    res = "OK"
                except OSError as e:
                    res = ename(e.errno)
                    # C bcachefs updates mtime before checking the
                    # arguments, ext4 and tmpfs only on success
                    os.utime(fd, ns=(t, t))
                return pre + "%s size=%d" % (res, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        return "%s %s" % (rel, name), f

    def op_mmap_write(self):
        rel = self.rpath()
        flush = self.rng.random() < 0.5

        def f():
            fd = os.open(self.p(rel), os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                if size == 0:
                    return "empty"
                off = self.rng.randrange(size)
                data = self.rng.randbytes(min(size - off, self.rng.randrange(1, 32 * KIB)))
                m = mmap.mmap(fd, size)
                try:
                    m[off:off + len(data)] = data
                    if flush:
                        m.flush()
                finally:
                    m.close()
                return "off=%d len=%d OK" % (off, len(data))
            finally:
                os.close(fd)
        return rel, f

    def op_odirect_write(self):
        rel = self.rpath()
        off = self.off(4096)
        ln = self.rng.randrange(1, 17) * 4096
        data = self.rng.randbytes(ln)

        def f():
            buf = mmap.mmap(-1, ln)  # page-aligned
            buf[:] = data
            try:
                fd = os.open(self.p(rel), os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
                try:
                    return "%d" % os.pwritev(fd, [buf], off)
                finally:
                    os.close(fd)
            finally:
                buf.close()
        return "%s off=%d len=%d" % (rel, off, ln), f

    def op_odirect_read(self):
        rel = self.rpath()
        off = self.off(4096)
        ln = self.rng.randrange(1, 17) * 4096

        def f():
            buf = mmap.mmap(-1, ln)
            try:
                fd = os.open(self.p(rel), os.O_RDONLY | os.O_DIRECT)
                try:
                    n = os.preadv(fd, [buf], off)
                    return "%d %s" % (n, sha(buf[:n]))
                finally:
                    os.close(fd)
            finally:
                buf.close()
        return "%s off=%d len=%d" % (rel, off, ln), f

    def op_read(self):
        rel = self.rpath()
        off = self.off()
        ln = self.rng.randrange(1, 128 * KIB)

        def f():
            fd = os.open(self.p(rel), os.O_RDONLY)
            try:
                d = os.pread(fd, ln, off)
            finally:
                os.close(fd)
            return "%d %s" % (len(d), sha(d))
        return "%s off=%d len=%d" % (rel, off, ln), f

    def op_readall(self):
        rel = self.rpath()

        def f():
            with open(self.p(rel), "rb") as fh:
                d = fh.read()
            return "%d %s" % (len(d), sha(d))
        return rel, f

    def op_stat(self):
        rel = self.rpath(False)

        def f():
            st = os.lstat(self.p(rel))
            size = "" if stat.S_ISDIR(st.st_mode) else " size=%d" % st.st_size
            return "mode=%o nlink=%d%s" % (st.st_mode, st.st_nlink, size)
        return rel, f

    def op_readdir(self):
        rel = self.rng.choice(self.DIRS)
        return rel or ".", lambda: " ".join(sorted(os.listdir(self.p(rel))))

    def op_rename(self):
        a, b = self.rpath(False), self.rpath(False)
        kind = self.rng.choice(["plain", "plain", "noreplace", "exchange", "whiteout"])

        def f():
            if kind == "plain":
                os.rename(self.p(a), self.p(b))
            else:
                renameat2(self.p(a), self.p(b), {"noreplace": RENAME_NOREPLACE,
                                                 "exchange": RENAME_EXCHANGE,
                                                 "whiteout": RENAME_WHITEOUT}[kind])
            return "OK"
        return "%s %s %s" % (kind, a, b), f

    def op_link(self):
        a, b = self.rpath(), self.rpath()

        def f():
            os.link(self.p(a), self.p(b))
            return "OK"
        return "%s %s" % (a, b), f

    def op_unlink(self):
        rel = self.rpath(False)

        def f():
            os.unlink(self.p(rel))
            return "OK"
        return rel, f

    def op_mkdir(self):
        rel = self.rng.choice(self.DIRS[1:] + [self.rpath(False)])
        mode = self.rng.choice([0o755, 0o700, 0o1777])

        def f():
            os.mkdir(self.p(rel), mode)
            return "OK"
        return "%s %o" % (rel, mode), f

    def op_rmdir(self):
        rel = self.rng.choice(self.DIRS[1:] + [self.rpath(False)])

        def f():
            os.rmdir(self.p(rel))
            return "OK"
        return rel, f

    def op_symlink(self):
        rel = self.rpath()
        target = self.rng.choice(self.NAMES + ["missing", "x" * self.rng.randrange(1, 300)])

        def f():
            os.symlink(target, self.p(rel))
            return "OK"
        return "%s -> %s" % (rel, target[:40]), f

    def op_setxattr(self):
        rel = self.rpath(False)
        name = self.rng.choice(self.XNAMES)
        val = self.rng.randbytes(self.rng.randrange(0, 64)).hex().encode()
        flags = self.rng.choice([0, 0, os.XATTR_CREATE, os.XATTR_REPLACE])

        def f():
            os.setxattr(self.p(rel), name, val, flags)
            return "OK"
        return "%s %s %d %s" % (rel, name, flags, sha(val)), f

    def op_getxattr(self):
        rel = self.rpath(False)
        name = self.rng.choice(self.XNAMES)

        def f():
            v = os.getxattr(self.p(rel), name)
            return "%d %s" % (len(v), sha(v))
        return "%s %s" % (rel, name), f

    def op_listxattr(self):
        rel = self.rpath(False)
        return rel, lambda: " ".join(sorted(x for x in os.listxattr(self.p(rel))
                                            if x.startswith("user.")))

    def op_removexattr(self):
        rel = self.rpath(False)
        name = self.rng.choice(self.XNAMES)

        def f():
            os.removexattr(self.p(rel), name)
            return "OK"
        return "%s %s" % (rel, name), f

    def op_chmod(self):
        rel = self.rpath(False)
        mode = self.rng.choice([0o600, 0o644, 0o755, 0o400, 0o4755, 0o2750, 0o1777, 0o000])

        def f():
            os.chmod(self.p(rel), mode)
            return "OK"
        return "%s %o" % (rel, mode), f

    def op_utime(self):
        rel = self.rpath(False)
        a, m = self.old_time(), self.old_time()

        def f():
            os.utime(self.p(rel), ns=(a, m), follow_symlinks=False)
            return "OK"
        return "%s %d" % (rel, m), f

    def op_fsync(self):
        rel = self.rng.choice([self.rpath(), self.rpath(), self.rng.choice(self.DIRS)])
        data = self.rng.random() < 0.5

        def f():
            fd = os.open(self.p(rel), os.O_RDONLY)
            try:
                (os.fdatasync if data else os.fsync)(fd)
            finally:
                os.close(fd)
            return "OK"
        return "%s %s" % ("fdatasync" if data else "fsync", rel or "."), f

    OPS = [  # (weight, op)
        (6, "create"), (14, "write"), (5, "append"), (5, "truncate"), (9, "fallocate"),
        (4, "mmap_write"), (4, "odirect_write"), (3, "odirect_read"), (6, "read"),
        (3, "readall"), (4, "stat"), (2, "readdir"), (6, "rename"), (3, "link"),
        (4, "unlink"), (3, "mkdir"), (1, "rmdir"), (3, "symlink"), (4, "setxattr"),
        (3, "getxattr"), (1, "listxattr"), (2, "removexattr"), (2, "chmod"),
        (2, "utime"), (3, "fsync"),
    ]

    def run(self, nops):
        ops = [o for w, o in self.OPS for _ in range(w)]
        for d in self.DIRS[1:]:
            os.mkdir(self.p(d))
        for i in range(nops):
            op = self.rng.choice(ops)
            args, fn = getattr(self, "op_" + op)()
            try:
                res = fn()
            except OSError as e:
                res = ename(e.errno)
            self.out.append("p%d %04d %s %s -> %s" % (self.idx, i, op, args, res))
        self.finish()

    def finish(self):
        """Deterministic times on a seeded half of the paths (in sorted
        order, so the same half everywhere)."""
        paths = []
        for root, dirs, files in os.walk(self.root):
            dirs.sort()
            for n in sorted(dirs + files):
                paths.append(os.path.join(root, n))
        paths.append(self.root)
        for pth in paths:
            if self.rng.random() < 0.5:
                t = self.old_time()
                os.utime(pth, ns=(t, t), follow_symlinks=False)


def run(a):
    seed, nops, nprocs = "1", 150, 4
    while a and a[0].startswith("--"):
        k, v = a[0], a[1]
        a = a[2:]
        if k == "--seed":
            seed = v
        elif k == "--ops":
            nops = int(v)
        elif k == "--procs":
            nprocs = int(v)
        else:
            raise SystemExit("unknown option " + k)
    top, log = a
    os.makedirs(top, exist_ok=True)
    pids = []
    for i in range(nprocs):
        root = os.path.join(top, "p%d" % i)
        os.mkdir(root)
        pid = os.fork()
        if pid == 0:
            rc = 0
            try:
                p = Proc(root, seed, i)
                p.run(nops)
                with open("%s.p%d" % (log, i), "w") as f:
                    f.write("\n".join(p.out) + "\n")
            except BaseException:
                import traceback
                traceback.print_exc()
                rc = 1
            os._exit(rc)
        pids.append(pid)
    bad = 0
    for pid in pids:
        _, st = os.waitpid(pid, 0)
        bad |= st != 0
    if bad:
        print("a workload process failed", file=sys.stderr)
        return 1
    with open(log, "w") as f:
        for i in range(nprocs):
            with open("%s.p%d" % (log, i)) as g:
                f.write(g.read())
            os.unlink("%s.p%d" % (log, i))
    return 0


# ------------------------------------------------------------- manifest

def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def manifest(a):
    full = a[0] == "--full"
    if full:
        a = a[1:]
    top, out = a
    paths = ["."]
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for n in sorted(dirs + files):
            paths.append(os.path.relpath(os.path.join(root, n), top))
    paths.sort()
    first = {}
    lines = []
    for rel in paths:
        pth = os.path.join(top, rel)
        st = os.lstat(pth)
        t = stat.S_IFMT(st.st_mode)
        e = {"path": rel, "mode": "%o" % st.st_mode, "nlink": st.st_nlink}
        if t != stat.S_IFDIR:
            e["size"] = st.st_size
        if t == stat.S_IFREG:
            e["sha256"] = file_sha(pth)
            if st.st_nlink > 1:
                e["inode_of"] = first.setdefault(st.st_ino, rel)
        elif t == stat.S_IFLNK:
            e["target"] = os.readlink(pth)
        elif t in (stat.S_IFCHR, stat.S_IFBLK):
            e["rdev"] = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        if t != stat.S_IFLNK:
            xs = {}
            for x in sorted(os.listxattr(pth, follow_symlinks=False)):
                if x.startswith("user."):
                    xs[x] = os.getxattr(pth, x, follow_symlinks=False).hex()
            if xs:
                e["xattrs"] = xs
        if full:
            e.update(ino=st.st_ino, uid=st.st_uid, gid=st.st_gid, blocks=st.st_blocks,
                     size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)
        elif st.st_mtime_ns < Y2001_NS:
            e["mtime_ns"] = st.st_mtime_ns
        lines.append(json.dumps(e, sort_keys=True))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("manifest: %d paths" % len(lines))
    return 0


def compare(a):
    want, got = (open(p).read().split("\n") for p in a)
    if want == got:
        print("identical: %d lines" % (len(want) - 1))
        return 0
    import difflib
    d = list(difflib.unified_diff(want, got, a[0], a[1], n=1, lineterm=""))
    print("%s and %s differ (%d vs %d lines); first differences:" % (a[0], a[1], len(want) - 1,
                                                                    len(got) - 1), file=sys.stderr)
    for l in d[:30]:
        print("  " + l[:300], file=sys.stderr)
    return 1


# ------------------------------------------------------------- fill

def fill(a):
    top, kib = a[0], int(a[1])
    limit = int(a[2] if len(a) > 2 else 4096) << 20
    os.makedirs(top, exist_ok=True)
    rng = random.Random("fill-%s" % top)
    chunk = 64 * KIB
    total, files, err, shas = 0, 0, None, {}
    while err is None:
        if total >= limit:
            err = "none"
            break
        name = "f%05d" % files
        files += 1
        h = hashlib.sha256()
        try:
            fd = os.open(os.path.join(top, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            err = ename(e.errno)
            files -= 1
            break
        try:
            left = kib * KIB
            while left > 0:
                d = rng.randbytes(min(chunk, left))
                try:
                    n = os.write(fd, d)
                except OSError as e:
                    err = ename(e.errno)
                    break
                if n == 0:
                    err = "write returned 0"
                    break
                h.update(d[:n])
                total += n
                left -= n
                # after a short write, the next one says why
        finally:
            try:
                os.close(fd)
            except OSError as e:
                err = err or "close " + ename(e.errno)
        shas[name] = h.hexdigest()
    print(json.dumps({"bytes": total, "files": files, "error": err, "sha256": shas}))
    return 0


def verify(a):
    top, fj = a
    want = json.load(open(fj))["sha256"]
    bad = [n for n, h in sorted(want.items()) if file_sha(os.path.join(top, n)) != h]
    if bad:
        print("%d of %d files read back different: %s" % (len(bad), len(want), " ".join(bad[:10])),
              file=sys.stderr)
        return 1
    print("%d files read back as written" % len(want))
    return 0


# ------------------------------------------------------------- power cut

def goingdown(mnt, flags):
    import fcntl
    import struct
    FS_IOC_GOINGDOWN = 0x8004587D  # _IOR('X', 125, __u32)
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_GOINGDOWN, struct.pack("<I", flags))
    finally:
        os.close(fd)


def cut(a):
    import time
    seed, nfiles = "1", 6
    while a and a[0].startswith("--"):
        if a[0] == "--seed":
            seed = a[1]
        elif a[0] == "--files":
            nfiles = int(a[1])
        a = a[2:]
    mnt, synced = a
    rng = random.Random("cut-%s" % seed)
    noise = os.path.join(mnt, "noise-%s" % seed)
    os.makedirs(noise)
    pids = []
    for i in range(2):
        root = os.path.join(noise, "p%d" % i)
        os.mkdir(root)
        pid = os.fork()
        if pid == 0:
            # errors (EROFS, EIO after the cut) are the results here
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 2)
            try:
                Proc(root, "noise-%s" % seed, i).run(10**6)  # until killed
            except BaseException:
                pass
            os._exit(0)
        pids.append(pid)
    d = os.path.join(mnt, "synced")
    os.makedirs(d, exist_ok=True)
    out = []
    for i in range(nfiles):
        p = os.path.join(d, "%s-%d" % (seed, i))
        data = rng.randbytes(rng.randrange(1, 200 * KIB))
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        # in a few pieces, the last ones first
        cuts = sorted(rng.randrange(len(data)) for _ in range(3))
        for lo, hi in reversed(list(zip([0] + cuts, cuts + [len(data)]))):
            os.pwrite(fd, data[lo:hi], lo)
        how = ["fsync", "fdatasync", "none"][i % 3]
        if how != "none":
            (os.fsync if how == "fsync" else os.fdatasync)(fd)
            dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dfd)
            os.close(dfd)
            out.append("%s %s %d" % (os.path.relpath(p, mnt), hashlib.sha256(data).hexdigest(),
                                     len(data)))
        os.close(fd)
    time.sleep(rng.random() * 0.5)
    goingdown(mnt, 2)  # FSOP_GOING_FLAGS_NOLOGFLUSH
    # the noise has nothing more to do: stopped, and it must end (a
    # process stuck in the filesystem after the cut would hang the umount)
    import signal
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    t = time.time()
    while pids and time.time() < t + 60:
        pids = [p for p in pids if os.waitpid(p, os.WNOHANG)[0] == 0]
        if pids:
            time.sleep(0.2)
    if pids:
        print("cut %s: noise processes %s did not end within 60 s of SIGKILL after the cut"
              % (seed, pids), file=sys.stderr)
        return 1
    with open(synced, "a") as f:
        f.write("".join(l + "\n" for l in out))
    print("cut %s: %d files synced" % (seed, len(out)))
    return 0


def check_synced(a):
    """All files of SYNCED, or with --recent N the last N lines and a
    seeded sample of 8 of the others (reading them all at every cut
    point is slow under TCG; the test reads all every 10 cuts)."""
    recent = None
    if a[0] == "--recent":
        recent, a = int(a[1]), a[2:]
    mnt, synced = a
    lines = open(synced).read().split("\n")[:-1]
    if recent is not None and len(lines) > recent + 8:
        old = lines[:-recent]
        lines = random.Random(len(lines)).sample(old, 8) + lines[-recent:]
    bad, n = [], 0
    for line in lines:
        rel, h, size = line.split()
        n += 1
        try:
            got = file_sha(os.path.join(mnt, rel))
        except OSError as e:
            got = ename(e.errno)
        if got != h:
            bad.append("%s (%s)" % (rel, got[:16]))
    if bad:
        print("%d of %d synced files lost or changed: %s" % (len(bad), n, " ".join(bad[:10])),
              file=sys.stderr)
        return 1
    print("%d synced files intact" % n)
    return 0


def cuts(a):
    """Cut points FIRST..LAST in one process (a python start is seconds
    under TCG): each a `cut`, umount, mount -o rw of DEV (the journal
    replay) and `check-synced --recent`; after LAST, only the umount.
    Prints the milliseconds spent in each phase as JSON."""
    import subprocess
    import time
    fstype = "bcachefs"
    if a[0] == "--fstype":  # to try it on another filesystem
        fstype, a = a[1], a[2:]
    first, last, nfiles = int(a[0]), int(a[1]), int(a[2])
    dev, mnt, synced = a[3:6]
    ms = {"cut": 0, "umount": 0, "mount": 0, "check": 0}
    t = time.monotonic()

    def tick(k):
        nonlocal t
        now = time.monotonic()
        ms[k] += int((now - t) * 1000)
        t = now

    def sh(what, *cmd):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode:
            print("cut %d: %s failed: %s" % (k, what, r.stdout.strip()), file=sys.stderr)
            sys.exit(1)

    for k in range(first, last + 1):
        sys.stdout.flush()
        if cut(["--seed", str(k), "--files", str(nfiles), mnt, synced]):
            print("cut %d: the workload failed before the cut" % k, file=sys.stderr)
            return 1
        tick("cut")
        sh("umount after FS_IOC_GOINGDOWN", "umount", mnt)
        tick("umount")
        if k == last:
            break
        sh("mount -o rw after the cut", "mount", "-t", fstype, "-o", "rw", dev, mnt)
        tick("mount")
        if check_synced(["--recent", str(nfiles), mnt, synced]):
            print("cut %d: fsync'd files lost or changed after the remount" % k, file=sys.stderr)
            return 1
        tick("check")
    print(json.dumps(ms))
    return 0


def main(a):
    cmds = {"run": run, "manifest": manifest, "compare": compare, "fill": fill, "verify": verify,
            "cut": cut, "cuts": cuts, "check-synced": check_synced}
    if len(a) < 2 or a[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[a[1]](a[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
