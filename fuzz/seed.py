#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Seeds the fuzz corpora from the C-written fixture images.

    fuzz/seed.py            (from the repository root)

Unpacks tests/fixtures/*.bchimg with pack.py's decoder and writes, under
fuzz/corpus/<target>/:
  sb          the superblock region (4 KiB at sector 8, 8 KiB)
  node, jset  every nonzero 64 KiB-aligned chunk, trailing zeros trimmed
  key         for each chunk: its bkey_format (bytes 80..136 of a btree
              node), one node-type byte, then the first bset's keys
  decompress  deflate (Python's zlib), zstd and lz4 (the `zstd` and `lz4`
              commands, if installed) encodings of the fixture text, and
              round-trip inputs, in the target's input format; the lz4
              extents C wrote come from
              `BCH_DUMP_EXTENTS=$PWD/fuzz/corpus/decompress cargo test --test c_compressed`
Existing files are kept, so the corpora only grow.
"""
import hashlib
import os
import struct
import subprocess
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
import pack  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CHUNK = 64 << 10


def unpack_image(path):
    with open(path, "rb") as f:
        p = pack.decompress(f.read())
    assert p[:8] == b"BCHIMG1\0"
    size, block, nr = struct.unpack_from("<QII", p, 8)
    img = bytearray(size)
    at = 24 + 4 * nr
    for j in range(nr):
        (i,) = struct.unpack_from("<I", p, 24 + 4 * j)
        img[i * block:(i + 1) * block] = p[at:at + block]
        at += block
    return bytes(img)


def put(target, data):
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    fixdir = os.path.join(ROOT, "tests", "fixtures")
    for fn in sorted(os.listdir(fixdir)):
        if not fn.endswith(".bchimg"):
            continue
        img = unpack_image(os.path.join(fixdir, fn))
        put("sb", img[4096:4096 + 8192])
        for off in range(0, len(img), CHUNK):
            c = img[off:off + CHUNK].rstrip(b"\0")
            if not c:
                continue
            put("node", c)
            put("jset", c)
            if len(c) > 160:
                u64s = struct.unpack_from("<H", c, 158)[0]
                flags = struct.unpack_from("<Q", c, 24)[0]
                ty = ((flags & 0xf) << 1) | ((flags >> 4) & 1)
                put("key", c[80:136] + bytes([ty & 0xff]) + c[160:160 + 8 * u64s])
    seed_decompress()
    return 0


def pad(b):
    return b + bytes(-len(b) % 512 or (512 if not b else 0))


def dec_seed(ty, n, src):
    put("decompress", bytes([ty]) + n.to_bytes(3, "little") + src)


def seed_decompress():
    line = b"bcachefs fixture line\n"
    for n in (512, 4096, 65536):
        data = (line * (n // len(line) + 1))[:n]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        dec_seed(2, n, pad(c.compress(data) + c.flush()))
        z = run(["zstd", "-q", "-c", "-3"], data)
        if z:
            dec_seed(4, n, pad(len(z).to_bytes(4, "little") + z))
        f = run(["lz4", "-q", "-c", "--no-frame-crc", "-BD"], data)
        if f and len(f) > 11:
            # The frame's first block (7-byte header, 4-byte size).
            size = int.from_bytes(f[7:11], "little")
            if not size & 0x80000000:
                dec_seed(3, n, pad(f[11:11 + size]))
        for ty in (1, 2, 3, 4):
            dec_seed(0x10 | ty, 0, data[:4096])


def run(cmd, data):
    try:
        return subprocess.run(cmd, input=data, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
