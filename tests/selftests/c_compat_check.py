#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Helper of the kselftest 20-c-writes-we-list (stdlib only).

  c_compat_check.py generate MNT PLAN        write the test tree into MNT
  c_compat_check.py manifest MNT PLAN OUT    record what the kernel shows
  c_compat_check.py sysfs VERSION OUT        record /sys/fs/bcachefs/<uuid>
  c_compat_check.py check MANIFEST SYSFS DIR LABEL
        compare our tool's output (DIR/{inodes,dirents,extents,xattrs,
        show-super}.txt) with the manifest and sysfs record

The tree is generated deterministically while C bcachefs has the device
mounted; the manifest is what C reports through the VFS (lstat, readlink,
SEEK_DATA/SEEK_HOLE, xattrs) after sync; `check` then holds our `list`
and `show-super` to it.  Failures name the path and give expected vs got.
"""

import json
import os
import random
import re
import stat
import sys

BLOCK = 4096

# ---------------------------------------------------------------- generate

SMALL_SIZES = [0, 1, 100, 1023, 1024, 1025, 2048, 4095, 4096, 4097, 8191,
               12288, 65535, 65536, 65537]
MIB = 1 << 20


def file_size(i):
    # A few dozen large files; the rest cycle through the small sizes.
    if i % 50 == 7:
        return MIB
    if i % 100 == 13:
        return 3 * MIB
    if i == 500:
        return MIB + 1
    return SMALL_SIZES[i % len(SMALL_SIZES)]


def content(tag, size):
    line = b"%s bcachefs-rs c-compat line\n" % tag.encode()
    return (line * (size // len(line) + 1))[:size]


def write_file(path, data, mode=None):
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)


def generate(mnt, plan_path):
    plan = {"sparse": {}, "compress": [], "incompressible": [],
            "symlinks": {}, "mtimes": {}}
    j = lambda *p: os.path.join(mnt, *p)

    # Nested directories, four levels under tree/: 4 + 12 + 24 + 48 dirs.
    dirs = ["tree"]
    for a in range(4):
        dirs.append("tree/a%d" % a)
        for b in range(3):
            dirs.append("tree/a%d/b%d" % (a, b))
            for c in range(2):
                dirs.append("tree/a%d/b%d/c%d" % (a, b, c))
                for d in range(2):
                    dirs.append("tree/a%d/b%d/c%d/d%d" % (a, b, c, d))
    for d in dirs:
        os.makedirs(j(d), exist_ok=True)
    nfiles = 1100
    for i in range(nfiles):
        d = dirs[i % len(dirs)]
        write_file(j(d, "f%04d" % i), content("f%04d" % i, file_size(i)))

    # Names: 255 bytes (ASCII and 3-byte UTF-8), UTF-8, odd characters.
    os.mkdir(j("names"))
    names = ["n" * 255, "\u65e5" * 85, "x", "na\u00efve caf\u00e9",
             "\U0001f600 emoji", "with space", "a -> b", "tab\there",
             "\u00fc" * 127 + "u", "-dash", ".hidden", "..dots"]
    for k, n in enumerate(names):
        assert len(n.encode()) <= 255, n
        write_file(j("names", n), content("name%d" % k, 10 * k))
    os.mkdir(j("names", "\u65e5\u672c\u8a9e-dir"))
    write_file(j("names", "\u65e5\u672c\u8a9e-dir", "d" * 255), b"deep\n")

    # Sparse files: data at the start and far away; hole at the start;
    # size from truncate only; data ending mid-block far away.
    os.mkdir(j("sparse"))
    sp = {
        "ends": [(0, 4096), (200 * MIB, 4096)],
        "mid": [(0, 5000), (64 * MIB + 1234, 10)],
        "holestart": [(MIB + 100, 100)],
        "truncated": [],
        "tail": [(8192, 8192), (300 * MIB + 7, 1)],
    }
    for n, ranges in sp.items():
        p = j("sparse", n)
        with open(p, "wb") as f:
            for off, ln in ranges:
                f.seek(off)
                f.write(content("sparse-" + n, ln))
            if n == "truncated":
                f.truncate(10 * MIB)
            if n == "tail":
                f.truncate(400 * MIB)
        plan["sparse"]["sparse/" + n] = ranges

    # Symlinks: short and long targets (inline data up to min(block/2, 1024),
    # bytes, a data extent beyond), relative, absolute, dangling.
    os.mkdir(j("links"))
    targets = {
        "short": "t",
        "rel": "../tree/a0/b0/f%04d" % 1,
        "abs": "/etc/passwd",
        "t31": "q" * 31,
        "t100": "/".join(["p" * 9] * 10),
        "t1000": "L" * 1000,
        "t1023": "M" * 1023,
        "t1024": "N" * 1024,
        "t2000": "/".join(["s" * 99] * 20)[:2000],
        "t4095": "X" * 4095,
        "utf8": "\u65e5\u672c/\u00e9",
    }
    for n, t in targets.items():
        os.symlink(t, j("links", n))
        plan["symlinks"]["links/" + n] = t

    # Hard links: nlink 2 and 3, across directories.
    os.mkdir(j("hard"))
    write_file(j("hard", "h2"), content("h2", 65536))
    os.link(j("hard", "h2"), j("tree", "a1", "h2-link"))
    write_file(j("hard", "h3"), content("h3", 17))
    os.link(j("hard", "h3"), j("hard", "h3-b"))
    os.link(j("hard", "h3"), j("tree", "a2", "b1", "h3-c"))

    # A directory with the compression option set: files created in it
    # (and in its subdirectory) inherit it.
    os.mkdir(j("comp"))
    try:
        os.setxattr(j("comp"), "bcachefs.compression", b"lz4")
    except OSError as e:
        print("setting bcachefs.compression=lz4 on comp/: %s" % e, file=sys.stderr)
        sys.exit(1)
    os.mkdir(j("comp", "sub"))
    for n, size in [("txt100", 100), ("txt4096", 4096), ("txt64k", 65536),
                    ("txt200k", 200000), ("txt1m", MIB), ("sub/txt8k", 8192),
                    ("sub/txt300k", 300000)]:
        write_file(j("comp", n), content("comp-" + n, size))
        if size >= 8192:
            plan["compress"].append("comp/" + n)
    write_file(j("comp", "rand256k"), random.Random(20).randbytes(256 * 1024))
    plan["incompressible"].append("comp/rand256k")

    # Special files, modes, owners, times, xattrs.
    os.mkdir(j("misc"))
    os.mkdir(j("misc", "empty-dir"))
    os.mkfifo(j("misc", "fifo"))
    os.mknod(j("misc", "null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(j("misc", "blk"), 0o640 | stat.S_IFBLK, os.makedev(7, 300))
    for k, mode in enumerate([0o600, 0o4755, 0o2711, 0o1777, 0o000, 0o777]):
        p = j("misc", "mode%o" % mode)
        write_file(p, content("mode", 33 * k))
        os.chmod(p, mode)
        os.chown(p, 1000 + k, 100 + k)
    for n, ns in [("t-epoch", 0), ("t-2100", 4102444800 * 10**9 + 123456789),
                  ("t-1950", -631152000 * 10**9 + 5), ("t-odd", 1234567890123456789)]:
        p = j("misc", n)
        write_file(p, b"time\n")
        os.utime(p, ns=(ns, ns))
        plan["mtimes"]["misc/" + n] = ns
    for k in range(6):
        p = j("misc", "xattr%d" % k)
        write_file(p, content("x", 4096 * k))
        for m in range(k + 1):
            os.setxattr(p, "user.attr%d_%s" % (m, "y" * (10 * k)),
                        ("value %d %s" % (m, "v" * (37 * k))).encode())
    os.setxattr(j("misc", "empty-dir"), "user.on_a_dir", b"dir value")
    os.setxattr(j("misc", "xattr0"), "user.empty", b"")

    with open(plan_path, "w") as f:
        json.dump(plan, f)
    print("generated %d files in %d nested dirs, %d names, %d sparse, %d symlinks, "
          "hard links, a compressed dir" % (nfiles, len(dirs), len(names),
                                             len(sp), len(targets)))


# ---------------------------------------------------------------- manifest

def data_ranges(path, size):
    """[start, end) byte ranges of data as the kernel reports them."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        off = 0
        while off < size:
            try:
                s = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            e = os.lseek(fd, s, os.SEEK_HOLE)
            out.append((s, e))
            off = e
    finally:
        os.close(fd)
    return out


def manifest(mnt, plan_path, out_path):
    with open(plan_path) as f:
        plan = json.load(f)
    entries = []
    for root, dnames, fnames, in os.walk(mnt):
        dnames.sort()
        for name in [None] + sorted(dnames) + sorted(fnames):
            path = root if name is None else os.path.join(root, name)
            if name is None and root != mnt:
                continue  # directories are recorded from their parent
            rel = os.path.relpath(path, mnt)
            st = os.lstat(path)
            e = {"path": rel, "ino": st.st_ino, "mode": st.st_mode,
                 "size": st.st_size, "nlink": st.st_nlink, "uid": st.st_uid,
                 "gid": st.st_gid, "blocks": st.st_blocks,
                 "mtime_ns": st.st_mtime_ns}
            if rel != ".":
                e["name"] = os.path.basename(path)
                e["parent"] = os.lstat(os.path.dirname(path)).st_ino
            if stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(path)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e["rdev_major"] = os.major(st.st_rdev)
                e["rdev_minor"] = os.minor(st.st_rdev)
            if stat.S_ISREG(st.st_mode):
                e["ranges"] = data_ranges(path, st.st_size)
                with open(path, "rb") as f:
                    e["head"] = f.read(32).hex()
            if not stat.S_ISLNK(st.st_mode):
                xs = {}
                for x in os.listxattr(path, follow_symlinks=False):
                    if x.startswith("user."):
                        xs[x] = os.getxattr(path, x, follow_symlinks=False).decode()
                if xs:
                    e["xattrs"] = xs
            if stat.S_ISDIR(st.st_mode):
                try:
                    e["compression_opt"] = os.getxattr(path, "bcachefs.compression").decode()
                except OSError:
                    pass
            entries.append(e)
    with open(out_path, "w") as f:
        json.dump({"entries": entries, "plan": plan}, f)
    print("manifest: %d paths" % len(entries))


# ---------------------------------------------------------------- sysfs

def sysfs(version, out_path):
    base = "/sys/fs/bcachefs"
    uuid_re = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    fss = [d for d in os.listdir(base) if uuid_re.match(d)]
    if len(fss) != 1:
        print("want one filesystem in %s, found %s" % (base, fss), file=sys.stderr)
        sys.exit(1)
    fs = os.path.join(base, fss[0])

    def rd(p):
        with open(p) as f:
            return f.read().strip()
    rec = {"uuid": fss[0], "internal_uuid": rd(os.path.join(fs, "internal", "internal_uuid")),
           "version": version, "options": {}, "devs": {}}
    for o in sorted(os.listdir(os.path.join(fs, "options"))):
        try:
            rec["options"][o] = rd(os.path.join(fs, "options", o))
        except OSError:
            pass
    for d in sorted(os.listdir(fs)):
        if d.startswith("dev-"):
            dev = {}
            for a in ["uuid", "bucket_size", "first_bucket", "nbuckets",
                      "durability", "discard", "state", "label"]:
                try:
                    dev[a] = rd(os.path.join(fs, d, a))
                except OSError:
                    pass
            rec["devs"][d[4:]] = dev
    with open(out_path, "w") as f:
        json.dump(rec, f)
    print("kernel: fs %s, %d options, devices %s" % (rec["uuid"], len(rec["options"]),
                                                      ",".join(rec["devs"])))


# ---------------------------------------------------------------- check

KEY_RE = re.compile(r"^u64s (\d+) type (\S+) (\d+):(\d+):(\S+) len (\d+) ver (\d+): ?(.*)$")
U32_MAX = (1 << 32) - 1


class Failures:
    def __init__(self):
        self.msgs = []

    def __call__(self, msg):
        self.msgs.append(msg)


def parse_keys(path, fail):
    """Keys of a `list` output: dicts with type, inode, offset, snapshot,
    len, the rest of the first line (val) and continuation lines."""
    keys = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for ln, line in enumerate(f, 1):
            line = line.rstrip("\n")
            m = KEY_RE.match(line)
            if m:
                snap = m.group(5)
                snap = U32_MAX if snap == "U32_MAX" else int(snap)
                keys.append({"type": m.group(2), "inode": int(m.group(3)),
                             "offset": int(m.group(4)), "snapshot": snap,
                             "len": int(m.group(6)), "val": m.group(8),
                             "fields": {}, "line": ln})
            elif line.startswith("  ") and keys:
                k, _, v = line.strip().partition("=")
                keys[-1]["fields"][k] = v
            elif line:
                fail("%s:%d: unparsable line %r" % (os.path.basename(path), ln, line[:200]))
    return keys


def parse_size(s):
    m = re.match(r"^(\d+(?:\.\d+)?) ?(B|KiB|MiB|GiB|TiB|k|M|G)?$", s.strip())
    if not m:
        return None
    mult = {None: 1, "B": 1, "KiB": 1 << 10, "k": 1 << 10, "MiB": 1 << 20, "M": 1 << 20,
            "GiB": 1 << 30, "G": 1 << 30, "TiB": 1 << 40}[m.group(2)]
    return float(m.group(1)) * mult


def norm_opt(s):
    s = s.strip()
    m = re.search(r"\[([^\]]*)\]", s)
    if m:
        return m.group(1)
    v = parse_size(s)
    return v if v is not None else s


def parse_show_super(path):
    top, opts, devs = {}, {}, {}
    cur = None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            m = re.match(r"^(\s*)([^:]+):\s*(.*)$", line)
            if not m:
                continue
            ind, k, v = len(m.group(1)), m.group(2).strip(), m.group(3)
            if ind == 0 and k == "Device":
                cur = devs.setdefault(v.strip(), {})
            elif ind == 0 and k.startswith("members"):
                cur = None
            elif ind == 0:
                top[k] = v.strip()
                if k == "Options":
                    cur = opts
                else:
                    cur = None
            elif cur is not None:
                cur[k] = v
    return top, opts, devs


D_TYPES = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk",
           stat.S_IFIFO: "fifo", stat.S_IFCHR: "chr", stat.S_IFBLK: "blk",
           stat.S_IFSOCK: "sock"}


def blocks_of(ranges, block):
    """The set of block numbers the byte ranges touch."""
    s = set()
    for a, b in ranges:
        if b > a:
            s.update(range(a // block, (b + block - 1) // block))
    return s


def fmt_blocks(bs):
    bs = sorted(bs)
    out, i = [], 0
    while i < len(bs):
        j = i
        while j + 1 < len(bs) and bs[j + 1] == bs[j] + 1:
            j += 1
        out.append("%d" % bs[i] if i == j else "%d-%d" % (bs[i], bs[j]))
        i = j + 1
        if len(out) > 8:
            out.append("...")
            break
    return "{" + ",".join(out) + "}"


def check(man_path, sys_path, d, label):
    fail = Failures()
    with open(man_path) as f:
        man = json.load(f)
    with open(sys_path) as f:
        ks = json.load(f)
    entries, plan = man["entries"], man["plan"]
    n = {}

    def count(k, by=1):
        n[k] = n.get(k, 0) + by

    # ---- superblock: show-super against the kernel's sysfs
    top, opts, devs = parse_show_super(os.path.join(d, "show-super.txt"))

    def same(what, ours, kernel):
        count("sb fields")
        if ours != kernel:
            fail("show-super %s: ours %r, kernel %r" % (what, ours, kernel))

    same("External UUID", top.get("External UUID"), ks["uuid"])
    same("Internal UUID", top.get("Internal UUID"), ks["internal_uuid"])
    same("Version", top.get("Version"), ks["version"])
    same("Label", top.get("Label"), label)
    same("Clean (after a clean unmount)", top.get("Clean"), "1")
    same("Devices", top.get("Devices"), str(len(ks["devs"])))
    block = None
    str_hash = norm_opt(opts.get("str_hash", ""))
    compared_opts = []
    for o, kv in sorted(ks["options"].items()):
        if o not in opts:
            continue
        compared_opts.append(o)
        same("option %s" % o, norm_opt(opts[o]), norm_opt(kv))
    for o in ["block_size", "btree_node_size", "metadata_checksum", "data_checksum",
              "str_hash", "compression", "encoded_extent_max"]:
        if o not in compared_opts:
            fail("option %s: not in both show-super (%r) and the kernel's options/ (%r)"
                 % (o, opts.get(o), ks["options"].get(o)))
    bs = parse_size(opts.get("block_size", ""))
    if bs:
        block = int(bs)
    else:
        fail("show-super: no block_size")
        block = BLOCK
    for idx, kd in ks["devs"].items():
        od = devs.get(idx)
        if od is None:
            fail("show-super: no Device %s (kernel has dev-%s)" % (idx, idx))
            continue
        same("device %s UUID" % idx, od.get("UUID"), kd.get("uuid"))
        same("device %s Bucket size" % idx, parse_size(od.get("Bucket size", "")),
             float(kd["bucket_size"]))
        same("device %s Buckets" % idx, od.get("Buckets"), kd.get("nbuckets"))
        same("device %s First bucket" % idx, od.get("First bucket"), kd.get("first_bucket"))
        same("device %s Durability" % idx, od.get("Durability"), kd.get("durability"))
        same("device %s Discard" % idx, od.get("Discard"), kd.get("discard"))
        same("device %s State" % idx, od.get("State"), norm_opt(kd.get("state", "")))
        sz = parse_size(od.get("Size", ""))
        want = int(kd["bucket_size"]) * int(kd["nbuckets"])
        count("sb fields")
        if sz is None or abs(sz - want) > want * 0.01:
            fail("show-super device %s Size: ours %r, kernel nbuckets*bucket_size = %d"
                 % (idx, od.get("Size"), want))

    # ---- keys
    inodes = parse_keys(os.path.join(d, "inodes.txt"), fail)
    dirents = parse_keys(os.path.join(d, "dirents.txt"), fail)
    extents = parse_keys(os.path.join(d, "extents.txt"), fail)
    xattrs = parse_keys(os.path.join(d, "xattrs.txt"), fail)
    for name, keys in [("inodes", inodes), ("dirents", dirents),
                       ("extents", extents), ("xattrs", xattrs)]:
        for k in keys:
            if k["snapshot"] != U32_MAX:
                fail("%s line %d: snapshot %d, want U32_MAX (C's root subvolume)"
                     % (name, k["line"], k["snapshot"]))
            if "unpack error" in k["val"] or "invalid" in k["val"]:
                fail("%s line %d: %s" % (name, k["line"], k["val"][:200]))

    by_ino = {}
    for e in entries:
        by_ino.setdefault(e["ino"], []).append(e)
    path_of = {ino: es[0]["path"] for ino, es in by_ino.items()}

    # inodes btree: position 0:inum; exactly the manifest's inodes
    inode_keys = {}
    for k in inodes:
        if not k["type"].startswith("inode") or k["type"] == "inode_generation":
            fail("inodes line %d: unexpected key type %s at %d:%d"
                 % (k["line"], k["type"], k["inode"], k["offset"]))
            continue
        if k["inode"] != 0:
            fail("inodes line %d: inode key at %d:%d, want 0:inum"
                 % (k["line"], k["inode"], k["offset"]))
        if k["offset"] in inode_keys:
            fail("inodes: inode %d listed twice" % k["offset"])
        inode_keys[k["offset"]] = k
    missing = sorted(set(by_ino) - set(inode_keys))
    extra = sorted(set(inode_keys) - set(by_ino))
    for ino in missing[:20]:
        fail("inode %d (%s): no inode key in `list -b inodes`" % (ino, path_of[ino]))
    for ino in extra[:20]:
        fail("inode %d: in `list -b inodes` but not in the tree" % ino)
    if len(missing) > 20 or len(extra) > 20:
        fail("... %d inodes missing, %d extra in all" % (len(missing), len(extra)))

    mtime_off = {}
    for ino, es in sorted(by_ino.items()):
        k = inode_keys.get(ino)
        if k is None:
            continue
        e = es[0]
        p = e["path"]
        fl = k["fields"]

        def field(name):
            v = fl.get(name)
            if v is None:
                fail("%s (inode %d): no %s in the inode key" % (p, ino, name))
                return None
            try:
                return int(v, 8) if name == "mode" else int(v)
            except ValueError:
                fail("%s (inode %d): %s=%r is not a number" % (p, ino, name, v))
                return None

        def want(name, got, exp):
            count("inode fields")
            if got is not None and got != exp:
                fail("%s (inode %d): %s: list says %r, kernel says %r" % (p, ino, name, got, exp))

        count("inodes")
        want("hash_type (show-super str_hash)", fl.get("hash_type"), str_hash)
        count("inodes " + D_TYPES.get(stat.S_IFMT(e["mode"]), "?"))
        want("mode", field("mode"), e["mode"])
        want("bi_size", field("bi_size"), e["size"])
        want("bi_sectors (st_blocks)", field("bi_sectors"), e["blocks"])
        bias = 2 if stat.S_ISDIR(e["mode"]) else 1
        nl = field("bi_nlink")
        want("bi_nlink + %d" % bias, None if nl is None else nl + bias, e["nlink"])
        want("bi_uid", field("bi_uid"), e["uid"])
        want("bi_gid", field("bi_gid"), e["gid"])
        if "rdev_major" in e:
            want("bi_dev", field("bi_dev"), (e["rdev_major"] << 20) | e["rdev_minor"])
        mt = field("bi_mtime")
        if mt is not None:
            # time_precision is 1 ns: st_mtime = time_base_lo + bi_mtime
            # (signed, printed as u64) for every inode.
            mtime_off.setdefault((e["mtime_ns"] - mt) % (1 << 64), []).append(p)
        for x in es[1:]:
            if x["ino"] != ino:
                fail("manifest: %s and %s disagree" % (p, x["path"]))
        in_comp = p == "comp" or p.startswith("comp/")
        comp = field("bi_compression")
        # inode options are stored +1: lz4 (1) is 2
        want("bi_compression (2 = lz4 in comp/, 0 elsewhere)", comp, 2 if in_comp else 0)
        if e.get("compression_opt") is not None:
            want("bcachefs.compression", e["compression_opt"], "lz4")
    count("mtime checks", sum(len(v) for v in mtime_off.values()))
    if len(mtime_off) > 1:
        groups = sorted(mtime_off.items(), key=lambda kv: -len(kv[1]))
        fail("bi_mtime: st_mtime_ns - bi_mtime is not one constant (time_base_lo): "
             "%d inodes give %d, but %s"
             % (len(groups[0][1]), groups[0][0],
                "; ".join("%s gives %d" % (v[0], o) for o, v in groups[1:6])))
    elif mtime_off:
        base = next(iter(mtime_off))
        created = top.get("Created", "")
        count("sb fields")
        import calendar
        import time as _t
        try:
            cs = calendar.timegm(_t.strptime(created.replace(" UTC", ""), "%a %b %d %H:%M:%S %Y"))
            if abs(base - cs * 10**9) > 2 * 10**9:
                fail("time_base_lo from inode times %d ns is not show-super's Created %r"
                     % (base, created))
        except ValueError:
            fail("show-super Created %r unparsable" % created)

    # dirents: (parent inode, name) -> target, as a set
    dre = re.compile(r"^(.*) -> (\d+) type (\S+)$", re.S)
    got_d = {}
    for k in dirents:
        if k["type"] != "dirent":
            fail("dirents line %d: unexpected key type %s" % (k["line"], k["type"]))
            continue
        m = dre.match(k["val"])
        if not m:
            fail("dirents line %d: unparsable value %r" % (k["line"], k["val"][:200]))
            continue
        key = (k["inode"], m.group(1))
        if key in got_d:
            fail("dirents: (%d, %r) listed twice" % key)
        got_d[key] = (int(m.group(2)), m.group(3), k["offset"])
    want_d = {}
    for e in entries:
        if "parent" in e:
            want_d[(e["parent"], e["name"])] = (e["ino"], D_TYPES[stat.S_IFMT(e["mode"])], e["path"])
    for key, (ino, ty, p) in sorted(want_d.items(), key=lambda kv: kv[1][2]):
        g = got_d.get(key)
        count("dirents")
        if g is None:
            fail("%s: no dirent (dir inode %d, name %r) in `list -b dirents`" % (p, key[0], key[1]))
        elif (g[0], g[1]) != (ino, ty):
            fail("%s: dirent -> %d type %s, want -> %d type %s" % (p, g[0], g[1], ino, ty))
    for key in sorted(set(got_d) - set(want_d))[:20]:
        fail("dirent (dir inode %d, name %r) -> %d in `list -b dirents` but not in the tree"
             % (key[0], key[1], got_d[key][0]))
    # link counts from the dirents, and the inode backpointers
    refs, subdirs = {}, {}
    for (parent, name), (tgt, ty, off) in got_d.items():
        refs[tgt] = refs.get(tgt, 0) + 1
        if ty == "dir":
            subdirs[parent] = subdirs.get(parent, 0) + 1
    dirent_at = {(parent, off): tgt for (parent, name), (tgt, ty, off) in got_d.items()}
    for ino, es in sorted(by_ino.items()):
        e = es[0]
        count("link counts")
        if stat.S_ISDIR(e["mode"]):
            w = 2 + subdirs.get(ino, 0)
            if e["nlink"] != w:
                fail("%s: st_nlink %d, but `list` has %d subdirectories (want %d)"
                     % (e["path"], e["nlink"], subdirs.get(ino, 0), e["nlink"] - 2))
        elif refs.get(ino, 0) != e["nlink"]:
            fail("%s: st_nlink %d, but %d dirents point to inode %d"
                 % (e["path"], e["nlink"], refs.get(ino, 0), ino))
        if e["nlink"] > 1 and not stat.S_ISDIR(e["mode"]):
            count("hard-linked inodes")
            count("hard links", e["nlink"])
        k = inode_keys.get(ino)
        if k is None or e["path"] == ".":
            continue
        try:
            bd, bo = int(k["fields"].get("bi_dir", 0)), int(k["fields"].get("bi_dir_offset", 0))
        except ValueError:
            bd, bo = 0, 0
        if bd:
            count("backpointers")
            if dirent_at.get((bd, bo)) != ino:
                fail("%s (inode %d): bi_dir %d bi_dir_offset %d is not a dirent pointing to it "
                     "(that position holds %r)" % (e["path"], ino, bd, bo, dirent_at.get((bd, bo))))
        elif e["nlink"] == 1:
            fail("%s (inode %d): no bi_dir backpointer" % (e["path"], ino))

    # extents: per inode, the sectors covered
    ext_by = {}
    for k in extents:
        ext_by.setdefault(k["inode"], []).append(k)
    for ino in sorted(set(ext_by) - set(by_ino))[:20]:
        fail("extents for inode %d, which is not in the tree" % ino)
    crc_re = re.compile(r"crc: c_size (\d+) size (\d+) offset (\d+) .*? compress (\S+)")
    inline_re = re.compile(r"^datalen (\d+): ([0-9a-f]*)$")
    sparse = plan["sparse"]
    for ino, es in sorted(by_ino.items()):
        e = es[0]
        p, mode = e["path"], e["mode"]
        keys = ext_by.get(ino, [])
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            if keys:
                fail("%s: %d extents for a %s" % (p, len(keys), D_TYPES[stat.S_IFMT(mode)]))
            continue
        count("files with extents checked")
        secs, total, ncomp, nuncomp = set(), 0, 0, 0
        inline_data = None
        for k in keys:
            start = k["offset"] - k["len"]
            if start < 0 or k["len"] == 0:
                fail("%s: extent at %d len %d" % (p, k["offset"], k["len"]))
                continue
            span = set(range(start, k["offset"]))
            if secs & span:
                fail("%s: extents overlap at sectors %s" % (p, fmt_blocks(secs & span)))
            secs |= span
            total += k["len"]
            count("extent keys")
            if k["type"] == "inline_data":
                count("inline_data keys")
                m = inline_re.match(k["val"])
                if not m:
                    fail("%s: inline_data value %r" % (p, k["val"][:100]))
                    continue
                if start == 0:
                    inline_data = (int(m.group(1)), bytes.fromhex(m.group(2)))
            elif k["type"] == "extent":
                m = crc_re.search(k["val"])
                if "ptr: " not in k["val"]:
                    fail("%s: extent without a pointer: %s" % (p, k["val"][:200]))
                if m:
                    c_size, size, off, ct = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
                    if off + k["len"] > size:
                        fail("%s: extent len %d + crc offset %d > uncompressed size %d"
                             % (p, k["len"], off, size))
                    if ct == "lz4":
                        ncomp += 1
                        count("compressed extents")
                        count("compressed sectors (on disk)", c_size)
                        count("compressed sectors (uncompressed)", size)
                        if c_size >= size:
                            fail("%s: lz4 extent with c_size %d >= size %d" % (p, c_size, size))
                    elif ct in ("none", "incompressible"):
                        nuncomp += 1
                        if c_size != size:
                            fail("%s: uncompressed (%s) extent with c_size %d != size %d"
                                 % (p, ct, c_size, size))
                    else:
                        fail("%s: extent compression type %s" % (p, ct))
            else:
                fail("%s: unexpected extent key type %s at %d" % (p, k["type"], k["offset"]))
        sec_per_block = block // 512
        got_blocks = {s // sec_per_block for s in secs}
        if stat.S_ISLNK(mode):
            # C writes the target up to i_size, without its NUL
            tb = e["target"].encode()
            want_blocks = blocks_of([(0, len(tb))], block)
            count("symlinks")
            if e["target"] != plan["symlinks"].get(p, e["target"]):
                fail("%s: readlink %r, generated %r" % (p, e["target"], plan["symlinks"][p]))
            if inline_data is not None:
                count("symlink targets compared")
                dl, head = inline_data
                # the value is padded to u64s with zeroes
                want_dl = (len(tb) + 7) // 8 * 8
                if dl != want_dl or head != tb.ljust(dl, b"\0")[:32]:
                    fail("%s: inline symlink data: datalen %d %s, want datalen %d %s"
                         % (p, dl, head.hex(), want_dl, tb.ljust(want_dl, b"\0")[:32].hex()))
            elif len(tb) <= min(block // 2, 1024):
                fail("%s: symlink target of %d bytes not stored inline" % (p, len(tb)))
            else:
                count("symlinks in data extents")
        else:
            if p in sparse:
                count("sparse files")
                pr = [(off, off + ln) for off, ln in sparse[p]]
                if blocks_of(pr, block) != blocks_of(e["ranges"], block):
                    fail("%s: generated data blocks %s, SEEK_DATA under C says %s"
                         % (p, fmt_blocks(blocks_of(pr, block)), fmt_blocks(blocks_of(e["ranges"], block))))
                want_blocks = blocks_of(pr, block)
            else:
                want_blocks = blocks_of([(0, e["size"])], block)
                if blocks_of(e["ranges"], block) != want_blocks:
                    fail("%s: dense file of %d bytes, but SEEK_DATA under C says %s"
                         % (p, e["size"], fmt_blocks(blocks_of(e["ranges"], block))))
            if inline_data is not None and e["size"] > 0:
                count("inline heads compared")
                head = bytes.fromhex(e["head"])
                dl, ih = inline_data
                want_dl = (e["size"] + 7) // 8 * 8
                if dl != want_dl or ih != head.ljust(dl, b"\0")[:32]:
                    fail("%s: inline data: datalen %d %s, want datalen %d %s"
                         % (p, dl, ih.hex(), want_dl, head.ljust(want_dl, b"\0")[:32].hex()))
            if p in plan["compress"]:
                count("compressible files in comp/")
                if ncomp == 0:
                    fail("%s: %d bytes of text under compression=lz4, no lz4 extent (%d uncompressed)"
                         % (p, e["size"], nuncomp))
        count("sectors in extents", total)
        if got_blocks != want_blocks:
            fail("%s (inode %d, size %d): extents cover blocks %s, want %s"
                 % (p, ino, e["size"], fmt_blocks(got_blocks), fmt_blocks(want_blocks)))
        if total != len(want_blocks) * sec_per_block:
            fail("%s (inode %d, size %d): extent lengths add up to %d sectors, want %d"
                 % (p, ino, e["size"], total, len(want_blocks) * sec_per_block))
        if any(s % sec_per_block for s in [min(secs, default=0), max(secs, default=-1) + 1]):
            fail("%s: extents not block aligned" % p)
        if e["blocks"] != total:
            fail("%s: st_blocks %d, extent lengths %d sectors" % (p, e["blocks"], total))

    # xattrs: (inode, name) -> value, as a set
    xre = re.compile(r"^(user\.[^:]*):(.*)$", re.S)
    got_x = {}
    for k in xattrs:
        m = xre.match(k["val"]) if k["type"] == "xattr" else None
        if not m:
            fail("xattrs line %d: unexpected %s %r" % (k["line"], k["type"], k["val"][:200]))
            continue
        got_x[(k["inode"], m.group(1))] = m.group(2)
    want_x = {}
    for ino, es in by_ino.items():
        for name, v in es[0].get("xattrs", {}).items():
            want_x[(ino, name)] = (v, es[0]["path"])
    for key, (v, p) in sorted(want_x.items()):
        count("xattrs")
        if key not in got_x:
            fail("%s: xattr %s missing from `list -b xattrs`" % (p, key[1]))
        elif got_x[key] != v:
            fail("%s: xattr %s = %r, want %r" % (p, key[1], got_x[key], v))
    for key in sorted(set(got_x) - set(want_x)):
        fail("xattr %s on inode %d in `list -b xattrs` but not in the tree" % (key[1], key[0]))

    summary = ", ".join("%s %d" % kv for kv in sorted(n.items()))
    print("checked: " + summary)
    print("options compared with the kernel's: " + " ".join(compared_opts))
    if fail.msgs:
        for m in fail.msgs[:60]:
            print("FAIL: " + m, file=sys.stderr)
        if len(fail.msgs) > 60:
            print("FAIL: ... %d failures in all" % len(fail.msgs), file=sys.stderr)
        return 1
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "generate":
        generate(argv[2], argv[3])
    elif len(argv) == 5 and argv[1] == "manifest":
        manifest(argv[2], argv[3], argv[4])
    elif len(argv) == 4 and argv[1] == "sysfs":
        sysfs(argv[2], argv[3])
    elif len(argv) == 6 and argv[1] == "check":
        return check(argv[2], argv[3], argv[4], argv[5])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
