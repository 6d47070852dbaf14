#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Helper of the read-only mount kselftests (30-34) and the benchmark:
writes a deterministic tree while C bcachefs has the volume mounted, and
records/compares what a kernel shows of it through the VFS (stdlib only).

  ro_tree.py generate MNT PROFILE     write the tree (profile: full, small,
                                      bench; source: small without the
                                      bcachefs.compression xattrs, with
                                      user xattrs, for any filesystem;
                                      big: 5,000 files and full's large
                                      and sparse files, with user xattrs,
                                      compressed directories where the
                                      filesystem takes bcachefs.compression)
  ro_tree.py manifest MNT OUT         one JSON line per path (see below)
  ro_tree.py compare WANT GOT         diff two manifests; first differences
  ro_tree.py portable MNT OUT         a manifest of what survives a copy
                                      to another filesystem: no inode
                                      number, ctime, st_blocks or
                                      directory size; with user xattrs
  ro_tree.py readdir DIR NAMESFILE    getdents64 with a 512-byte buffer,
                                      and resuming at every 97th d_off:
                                      each name exactly once
  ro_tree.py statfs MNT [WANT.json]   statvfs sanity (and the same f_bsize,
                                      f_blocks, f_namemax as WANT)
  ro_tree.py readall MNT MANIFEST OUT read every regular file and symlink;
                                      OUT: per path "ok", "EIO" or
                                      "mismatch"
  ro_tree.py fsync-write MNT N        (unclean test) write N files, fsync
                                      each and the directory, print their
                                      sha256 as JSON
  ro_tree.py goingdown MNT FLAGS      FS_IOC_GOINGDOWN

The manifest is what the checks compare between C and our module: for
every path under MNT (sorted, not following symlinks): type, size, mode,
nlink, uid, gid, inode number, st_blocks, mtime and ctime in ns, and the
sha256 of a regular file, the target of a symlink or the rdev of a device.
"""

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import stat
import struct
import sys

MIB = 1 << 20


def content(tag, size):
    """Deterministic, compressible but not trivially so."""
    h = hashlib.sha256(tag.encode()).hexdigest()
    line = ("%s %s bcachefs-rs ro-mount\n" % (tag, h[:16])).encode()
    return (line * (size // len(line) + 1))[:size]


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def big_file(path, size, seed):
    """size bytes of pseudo-random data (not compressible), 1 MiB at a time."""
    with open(path, "wb") as f:
        block = hashlib.sha256(seed.encode()).digest() * (MIB // 32)
        for i in range(size // MIB):
            # vary each MiB cheaply
            f.write(struct.pack("<Q", i) + block[8:])
        f.write(block[: size % MIB])


SIZES = [0, 1, 17, 100, 511, 512, 1000, 2048, 4095, 4096, 4097, 8192, 12000, 16384]


def generate(mnt, profile):
    j = lambda *p: os.path.join(mnt, *p)
    nfiles = {"full": 10000, "small": 1500, "bench": 10000, "source": 1500, "big": 5000}[profile]
    large = profile in ("full", "big")
    # Many files: 100 per directory, two levels (files/dNN/fNNNNN).
    os.mkdir(j("files"))
    for i in range(nfiles):
        d = j("files", "d%03d" % (i // 100))
        if i % 100 == 0:
            os.mkdir(d)
        write_file(os.path.join(d, "f%05d" % i), content("f%05d" % i, SIZES[i % len(SIZES)] * (1 + i % 3)))
    if profile == "bench":
        print("generated %d files" % nfiles)
        return
    # A wide directory for the readdir check.
    wide = 2000 if profile == "full" else 600
    os.mkdir(j("wide"))
    for i in range(wide):
        write_file(j("wide", "entry-%05d-%s" % (i, "w" * (i % 40))), b"")
    # Deep: 24 levels, a file at each.
    p = j("deep")
    os.mkdir(p)
    for lvl in range(24):
        p = os.path.join(p, "level%02d" % lvl)
        os.mkdir(p)
        write_file(os.path.join(p, "file"), content("deep%d" % lvl, 100 * lvl))
    # Large files: pseudo-random (incompressible).
    os.mkdir(j("large"))
    if large:
        big_file(j("large", "64m"), 64 * MIB, "big64")
        big_file(j("large", "9m-plus-3"), 9 * MIB + 3, "big9")
    else:
        big_file(j("large", "3m-plus-3"), 3 * MIB + 3, "big3")
    # Sparse files.
    os.mkdir(j("sparse"))
    scale = 1 if large else 4
    for n, ranges, trunc in [("ends", [(0, 4096), (32 * MIB // scale, 4096)], None),
                             ("holestart", [(MIB + 100, 100)], None),
                             ("truncated", [], 10 * MIB // scale),
                             ("tail", [(8192, 8192), (20 * MIB // scale + 7, 1)], 24 * MIB // scale)]:
        with open(j("sparse", n), "wb") as f:
            for off, ln in ranges:
                f.seek(off)
                f.write(content("sparse-" + n, ln))
            if trunc:
                f.truncate(trunc)
    # Compressed directories (inherited by files created inside).
    for algo in ["lz4", "zstd", "gzip"]:
        d = j("comp-" + algo)
        os.mkdir(d)
        if profile == "big":
            try:
                os.setxattr(d, "bcachefs.compression", algo.encode())
            except OSError as ex:
                print("%s: no bcachefs.compression here: %s" % (d, ex))
        elif profile != "source":
            os.setxattr(d, "bcachefs.compression", algo.encode())
        os.mkdir(os.path.join(d, "sub"))
        for n, size in [("t100", 100), ("t4k", 4096), ("t64k", 65536), ("t300k", 300000),
                        ("sub/t1m", MIB if large else 200000)]:
            write_file(os.path.join(d, n), content("comp-%s-%s" % (algo, n), size))
    # Symlinks, short and long.
    os.mkdir(j("links"))
    for n, t in {"short": "t", "rel": "../files/d000/f00001", "abs": "/etc/passwd",
                 "dangling": "nowhere/at/all", "t100": "/".join(["p" * 9] * 10),
                 "t1023": "M" * 1023, "t2000": "/".join(["s" * 99] * 20)[:2000],
                 "t4095": "X" * 4095, "utf8": "\u65e5\u672c/\u00e9"}.items():
        os.symlink(t, j("links", n))
    # Hard links.
    os.mkdir(j("hard"))
    write_file(j("hard", "h2"), content("h2", 65536))
    os.link(j("hard", "h2"), j("files", "d000", "h2-link"))
    write_file(j("hard", "h3"), content("h3", 17))
    os.link(j("hard", "h3"), j("hard", "h3-b"))
    os.link(j("hard", "h3"), j("deep", "level00", "h3-c"))
    # Names.
    os.mkdir(j("names"))
    for k, n in enumerate(["n" * 255, "\u65e5" * 85, "\u00fc" * 127 + "u", "na\u00efve caf\u00e9",
                           "\U0001f600 emoji", "with space", "tab\there", "new\nline",
                           "-dash", ".hidden", "..dots"]):
        assert len(n.encode()) <= 255
        write_file(j("names", n), content("name%d" % k, 10 * k))
    os.mkdir(j("names", "\u65e5\u672c\u8a9e-dir"))
    write_file(j("names", "\u65e5\u672c\u8a9e-dir", "d" * 255), b"deep\n")
    # Empty things, special files, modes, owners, times.
    os.mkdir(j("misc"))
    os.mkdir(j("misc", "empty-dir"))
    write_file(j("misc", "empty-file"), b"")
    os.mkfifo(j("misc", "fifo"))
    os.mknod(j("misc", "null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(j("misc", "blk"), 0o640 | stat.S_IFBLK, os.makedev(7, 300))
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(j("misc", "socket"))
    s.close()
    for k, mode in enumerate([0o600, 0o4755, 0o2711, 0o1777, 0o000]):
        p = j("misc", "mode%o" % mode)
        write_file(p, content("mode", 33 * k))
        os.chmod(p, mode)
        os.chown(p, 1000 + k, 100 + k)
    for n, ns in [("t-epoch", 0), ("t-2100", 4102444800 * 10**9 + 123456789),
                  ("t-1950", -631152000 * 10**9 + 5)]:
        p = j("misc", n)
        write_file(p, b"time\n")
        os.utime(p, ns=(ns, ns))
    if profile in ("source", "big"):
        try:
            os.setxattr(j("hard", "h2"), "user.color", b"blue")
            os.setxattr(j("misc"), "user.a_longer_attribute_name", b"some value")
            for i in range(40):
                os.setxattr(j("misc", "empty-file"), "user.x%02d" % i, b"v" * i)
            print("user xattrs set")
        except OSError as ex:
            print("no user xattrs here: %s" % ex)
    print("generated %d files in files/, %d in wide/, deep/ 24 levels, large, sparse, "
          "comp-{lz4,zstd,gzip}, links, hard, names, misc" % (nfiles, wide))


# ---------------------------------------------------------------- manifest

def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(MIB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def walk(mnt):
    """Every path under mnt, relative, sorted, not following symlinks."""
    out = ["."]
    for root, dirs, files in os.walk(mnt):
        rel = os.path.relpath(root, mnt)
        for n in dirs + files:
            out.append(os.path.normpath(os.path.join(rel, n)))
    return sorted(out)


def entry(mnt, rel, data=True):
    p = os.path.join(mnt, rel)
    st = os.lstat(p)
    m = st.st_mode
    e = {"path": rel, "type": stat.filemode(m)[0], "size": st.st_size,
         "mode": "%o" % stat.S_IMODE(m), "nlink": st.st_nlink, "uid": st.st_uid,
         "gid": st.st_gid, "ino": st.st_ino, "blocks": st.st_blocks,
         "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}
    if stat.S_ISREG(m) and data:
        try:
            e["sha256"] = sha(p)
        except OSError as ex:  # recorded, so the diff shows it
            e["sha256"] = "read error " + errno.errorcode.get(ex.errno, str(ex.errno))
    elif stat.S_ISLNK(m):
        e["target"] = os.readlink(p)
    elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
        e["rdev"] = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
    return e


def manifest(mnt, out):
    n = 0
    with open(out, "w") as f:
        for rel in walk(mnt):
            f.write(json.dumps(entry(mnt, rel), ensure_ascii=True, sort_keys=True) + "\n")
            n += 1
    print("manifest: %d paths" % n)


def portable(mnt, out):
    n = 0
    with open(out, "w") as f:
        for rel in walk(mnt):
            e = entry(mnt, rel)
            for k in ("ino", "ctime_ns", "blocks"):
                del e[k]
            if e["type"] == "d":
                del e["size"]
            p = os.path.join(mnt, rel)
            try:
                names = sorted(x for x in os.listxattr(p, follow_symlinks=False) if x.startswith("user."))
                if names:
                    e["xattrs"] = {x: os.getxattr(p, x, follow_symlinks=False).hex() for x in names}
            except OSError:
                pass
            f.write(json.dumps(e, ensure_ascii=True, sort_keys=True) + "\n")
            n += 1
    print("portable manifest: %d paths" % n)


def compare(want, got):
    with open(want) as f:
        a = f.read().splitlines()
    with open(got) as f:
        b = f.read().splitlines()
    if a == b:
        print("manifests identical: %d paths" % len(a))
        return 0
    import difflib
    d = list(difflib.unified_diff(a, b, "C", "ours", n=0, lineterm=""))
    print("manifests differ (%d paths under C, %d under ours); first differing lines:"
          % (len(a), len(b)), file=sys.stderr)
    for line in d[:14]:
        print("  " + line[:400], file=sys.stderr)
    if len(d) > 14:
        print("  ... %d diff lines in all" % len(d), file=sys.stderr)
    return 1


# ---------------------------------------------------------------- readdir

libc = ctypes.CDLL(None, use_errno=True)
SYS_getdents64 = 217  # x86_64


def getdents(fd, bufsize):
    buf = ctypes.create_string_buffer(bufsize)
    n = libc.syscall(SYS_getdents64, fd, buf, bufsize)
    if n < 0:
        e = ctypes.get_errno()
        raise OSError(e, "getdents64: " + os.strerror(e))
    out, off = [], 0
    raw = buf.raw[:n]
    while off < n:
        ino, d_off, reclen, dtype = struct.unpack_from("<QqHB", raw, off)
        name = raw[off + 19: off + reclen].split(b"\0", 1)[0]
        out.append((name, d_off, ino, dtype))
        off += reclen
    return out


def readdir(d, names_file):
    with open(names_file, "rb") as f:
        want = set(f.read().split(b"\0")[:-1]) | {b".", b".."}
    fails = []
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        seen, calls, offs = [], 0, []
        while True:
            ents = getdents(fd, 512)
            calls += 1
            if not ents:
                break
            seen += [e[0] for e in ents]
            offs += [e[1] for e in ents]
        got = {}
        for n in seen:
            got[n] = got.get(n, 0) + 1
        dup = sorted(n for n, c in got.items() if c > 1)
        missing = sorted(want - set(got))
        extra = sorted(set(got) - want)
        if dup:
            fails.append("%d names returned more than once, e.g. %r" % (len(dup), dup[:3]))
        if missing:
            fails.append("%d names missing, e.g. %r" % (len(missing), missing[:3]))
        if extra:
            fails.append("%d unexpected names, e.g. %r" % (len(extra), extra[:3]))
        # Resume at the d_off of every 97th entry: the rest of the directory
        # from there must be exactly what followed it the first time.
        resumed = 0
        for i in range(0, len(seen) - 1, 97):
            os.lseek(fd, offs[i], os.SEEK_SET)
            rest = []
            while True:
                ents = getdents(fd, 512)
                if not ents:
                    break
                rest += [e[0] for e in ents]
            resumed += 1
            if rest != seen[i + 1:]:
                fails.append("after seeking to d_off %d (entry %d, %r): %d names, want %d "
                             "(first got %r, want %r)" % (offs[i], i, seen[i], len(rest),
                                                          len(seen) - i - 1, rest[:2], seen[i + 1:i + 3]))
                break
    finally:
        os.close(fd)
    if fails:
        for m in fails:
            print("FAIL: readdir %s: %s" % (d, m), file=sys.stderr)
        return 1
    print("readdir %s: %d names, each once, in %d getdents64 calls of 512 bytes; "
          "%d resumptions at d_off agree" % (d, len(seen), calls, resumed))
    return 0


def statfs(mnt, want=None):
    s = os.statvfs(mnt)
    got = {"f_bsize": s.f_bsize, "f_frsize": s.f_frsize, "f_blocks": s.f_blocks,
           "f_bfree": s.f_bfree, "f_bavail": s.f_bavail, "f_namemax": s.f_namemax}
    fails = []
    if s.f_bsize <= 0 or s.f_bsize & (s.f_bsize - 1):
        fails.append("f_bsize %d is not a power of two" % s.f_bsize)
    if s.f_blocks <= 0:
        fails.append("f_blocks %d" % s.f_blocks)
    if not 0 <= s.f_bavail <= s.f_bfree <= s.f_blocks:
        fails.append("not 0 <= f_bavail %d <= f_bfree %d <= f_blocks %d"
                     % (s.f_bavail, s.f_bfree, s.f_blocks))
    if s.f_namemax < 255:  # C bcachefs says 512 (BCH_NAME_MAX)
        fails.append("f_namemax %d, want >= 255" % s.f_namemax)
    if want:
        with open(want) as f:
            w = json.load(f)
        for k in ["f_bsize", "f_frsize", "f_namemax"]:
            if w[k] != got[k]:
                fails.append("%s %d, C said %d" % (k, got[k], w[k]))
        # Total size: within 5% of what C reports (reserved space may be
        # counted differently).
        if abs(got["f_blocks"] * got["f_frsize"] - w["f_blocks"] * w["f_frsize"]) > \
                0.05 * w["f_blocks"] * w["f_frsize"]:
            fails.append("f_blocks*f_frsize %d, C said %d" % (got["f_blocks"] * got["f_frsize"],
                                                             w["f_blocks"] * w["f_frsize"]))
    for m in fails:
        print("FAIL: statfs %s: %s" % (mnt, m), file=sys.stderr)
    print(json.dumps(got))
    return 1 if fails else 0


def readall(mnt, man, out):
    """Reads every file the manifest lists; per path: ok, EIO or mismatch
    (anything else is reported as the errno name)."""
    res = {}
    with open(man) as f:
        for line in f:
            e = json.loads(line)
            p = os.path.join(mnt, e["path"])
            try:
                if "sha256" in e:
                    res[e["path"]] = "ok" if sha(p) == e["sha256"] else "mismatch"
                elif "target" in e:
                    res[e["path"]] = "ok" if os.readlink(p) == e["target"] else "mismatch"
                elif e["type"] == "d":
                    os.listdir(p)
                    res[e["path"]] = "ok"
                else:
                    os.lstat(p)
                    res[e["path"]] = "ok"
            except OSError as ex:
                res[e["path"]] = errno.errorcode.get(ex.errno, str(ex.errno))
    with open(out, "w") as f:
        json.dump(res, f)
    counts = {}
    for v in res.values():
        counts[v] = counts.get(v, 0) + 1
    print("read %d paths: %s" % (len(res), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))


# ---------------------------------------------------------------- unclean

def fsync_write(mnt, n):
    d = os.path.join(mnt, "synced")
    os.mkdir(d)
    shas = {}
    for i in range(n):
        rel = "synced/s%04d" % i
        data = content(rel, [100, 4096, 70000, 300000][i % 4] + i)
        fd = os.open(os.path.join(mnt, rel), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        shas[rel] = hashlib.sha256(data).hexdigest()
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)
    json.dump(shas, sys.stdout)


def goingdown(mnt, flags):
    FS_IOC_GOINGDOWN = 0x8004587D  # _IOR('X', 125, __u32)
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_GOINGDOWN, struct.pack("<I", int(flags)))
    finally:
        os.close(fd)


def main(a):
    if len(a) == 4 and a[1] == "generate":
        generate(a[2], a[3])
    elif len(a) == 4 and a[1] == "manifest":
        manifest(a[2], a[3])
    elif len(a) == 4 and a[1] == "portable":
        portable(a[2], a[3])
    elif len(a) == 4 and a[1] == "compare":
        return compare(a[2], a[3])
    elif len(a) == 4 and a[1] == "readdir":
        return readdir(a[2], a[3])
    elif len(a) in (3, 4) and a[1] == "statfs":
        return statfs(a[2], a[3] if len(a) == 4 else None)
    elif len(a) == 5 and a[1] == "readall":
        readall(a[2], a[3], a[4])
    elif len(a) == 4 and a[1] == "fsync-write":
        fsync_write(a[2], int(a[3]))
    elif len(a) == 4 and a[1] == "goingdown":
        goingdown(a[2], a[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
