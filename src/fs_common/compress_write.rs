// SPDX-License-Identifier: GPL-2.0
//! Compression of data on write: `attempt_compress()` and
//! `__bio_compress()` of `fs/bcachefs/compress.c`.
//!
//! LZ4 is compressed here, in both homes ([`lz4_compress`]: a greedy
//! block compressor; C uses the kernel's `LZ4_compress_destSize()`, whose
//! output differs but decodes the same).  On the host, gzip (raw deflate)
//! comes from the `flate2` crate and zstd from the `zstd` crate; in the
//! kernel those two are not wired up yet (C uses the kernel's
//! `zlib_deflate` and `zstd_compress_cctx`): `EOPNOTSUPP` there.
//!
//! zstd output carries C's 4-byte little-endian length in front of the
//! frame, as the decompressor expects ([`crate::compress`]).

use crate::errcode::Errno;

/// `BCH_COMPRESSION_TYPE_*` of a `compression` option type
/// (`__bch2_compression_opt_to_type[]`): lz4 → 3, gzip → 2, zstd → 4.
/// Errors: `EINVAL` for an option type that does not exist.
pub fn opt_to_type(opt: u8) -> Result<u8, Errno> {
    match opt & 15 {
        0 => Ok(0),
        1 => Ok(3),
        2 => Ok(2),
        3 => Ok(4),
        _ => Err(Errno::EINVAL),
    }
}

/// Whether this home can compress with compression type `ty` (0, none,
/// always).
pub fn supported(ty: u8) -> bool {
    ty == 0 || ty == 3 || (cfg!(not(bch_kernel)) && (ty == 2 || ty == 4))
}

/// Shortest match (`MINMATCH`).
const LZ4_MIN_MATCH: usize = 4;
/// The last match starts at least this far before the end (`MFLIMIT`).
const LZ4_MFLIMIT: usize = 12;
/// The last bytes are always literals (`LASTLITERALS`).
const LZ4_LAST_LITERALS: usize = 5;
/// Largest match offset.
const LZ4_MAX_OFFSET: usize = 65535;
/// Hash table size, log2.
const LZ4_HASH_LOG: u32 = 12;

/// Writes an LZ4 length continuation (`255, 255, .., rest`) for `len`
/// (the part past the token's 15).
fn lz4_put_len(dst: &mut [u8], at: &mut usize, mut len: usize) -> Option<()> {
    while len >= 255 {
        *dst.get_mut(*at)? = 255;
        *at += 1;
        len -= 255;
    }
    *dst.get_mut(*at)? = len as u8;
    *at += 1;
    Some(())
}

/// One sequence: `lits`, then (unless the last) a match of `mlen` bytes
/// at `offset` back.
fn lz4_put_seq(dst: &mut [u8], at: &mut usize, lits: &[u8], m: Option<(usize, usize)>) -> Option<()> {
    let ll = lits.len();
    let ml = m.map_or(0, |(_, l)| l - LZ4_MIN_MATCH);
    let token = ((ll.min(15) as u8) << 4) | ml.min(15) as u8;
    *dst.get_mut(*at)? = token;
    *at += 1;
    if ll >= 15 {
        lz4_put_len(dst, at, ll - 15)?;
    }
    dst.get_mut(*at..*at + ll)?.copy_from_slice(lits);
    *at += ll;
    if let Some((off, _)) = m {
        dst.get_mut(*at..*at + 2)?.copy_from_slice(&(off as u16).to_le_bytes());
        *at += 2;
        if ml >= 15 {
            lz4_put_len(dst, at, ml - 15)?;
        }
    }
    Some(())
}

fn lz4_read32(src: &[u8], i: usize) -> u32 {
    match src.get(i..i + 4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// LZ4 block compression of all of `src` into `dst` (greedy, one hash
/// probe per position).  Returns the bytes written, `Ok(None)` when they
/// do not fit.  Errors: `ENOMEM` (the hash table is on the heap).
pub fn lz4_compress(src: &[u8], dst: &mut [u8]) -> Result<Option<usize>, Errno> {
    let n = src.len();
    let mut at = 0usize;
    let mut anchor = 0usize;
    if n > LZ4_MFLIMIT {
        let mut table: crate::platform::Vec<u32> = crate::platform::Vec::new();
        table.resize(1 << LZ4_HASH_LOG, u32::MAX)?;
        let hash = |v: u32| (v.wrapping_mul(2_654_435_761) >> (32 - LZ4_HASH_LOG)) as usize;
        let match_end = n - LZ4_LAST_LITERALS;
        let mut i = 0usize;
        while i + LZ4_MFLIMIT <= n {
            let seq = lz4_read32(src, i);
            let h = hash(seq);
            let cand = table[h];
            table[h] = i as u32;
            let c = cand as usize;
            if cand != u32::MAX && i - c <= LZ4_MAX_OFFSET && lz4_read32(src, c) == seq {
                let mut mlen = LZ4_MIN_MATCH;
                while i + mlen < match_end && src[c + mlen] == src[i + mlen] {
                    mlen += 1;
                }
                if lz4_put_seq(dst, &mut at, &src[anchor..i], Some((i - c, mlen))).is_none() {
                    return Ok(None);
                }
                i += mlen;
                anchor = i;
            } else {
                i += 1;
            }
        }
    }
    if lz4_put_seq(dst, &mut at, &src[anchor..], None).is_none() {
        return Ok(None);
    }
    Ok(Some(at))
}

/// `attempt_compress()`: compresses all of `src` into `dst` with
/// compression type `ty` at option level `level` (0: the default).
/// Returns the bytes of `dst` used, `Ok(None)` when the output does not
/// fit in `dst`.  Errors: `EOPNOTSUPP` for a type without a compressor in
/// this home.
#[cfg(not(bch_kernel))]
pub fn attempt_compress(ty: u8, level: u8, src: &[u8], dst: &mut [u8]) -> Result<Option<usize>, Errno> {
    match ty {
        3 => lz4_compress(src, dst),
        2 => {
            use flate2::{Compress, Compression, FlushCompress, Status};
            // Z_DEFAULT_COMPRESSION (6) for level 0, else 1..=9.
            let lvl = if level == 0 { 6 } else { u32::from(level).clamp(1, 9) };
            let mut z = Compress::new(Compression::new(lvl), false);
            match z.compress(src, dst, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => Ok(usize::try_from(z.total_out()).ok()),
                _ => Ok(None),
            }
        }
        4 => {
            use zstd::zstd_safe;
            // C rescales its levels (max 15) to zstd's (max 22).
            let lvl = (i32::from(level) * 3 / 2).min(zstd_safe::max_c_level());
            // C leaves 7 bytes of slack after the frame.
            if dst.len() < 4 + 7 {
                return Ok(None);
            }
            let end = dst.len() - 7;
            let mut cctx = zstd_safe::CCtx::create();
            match cctx.compress(&mut dst[4..end], src, lvl) {
                Ok(n) => {
                    let len = u32::try_from(n).map_err(|_| Errno::EINVAL)?;
                    dst[..4].copy_from_slice(&len.to_le_bytes());
                    Ok(Some(n + 4))
                }
                Err(_) => Ok(None),
            }
        }
        _ => Err(Errno::EOPNOTSUPP),
    }
}

/// Kernel home: LZ4 only, so far.
#[cfg(bch_kernel)]
pub fn attempt_compress(ty: u8, _level: u8, src: &[u8], dst: &mut [u8]) -> Result<Option<usize>, Errno> {
    match ty {
        3 => lz4_compress(src, dst),
        _ => Err(Errno::EOPNOTSUPP),
    }
}

/// The outcome of [`bio_compress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compressed {
    /// `src_len` bytes of input became `dst_len` bytes (a multiple of the
    /// block size, zero padded) in the output buffer.
    Yes {
        /// Input bytes consumed.
        src_len: usize,
        /// Output bytes, padded to a block.
        dst_len: usize,
    },
    /// Not worth it (`BCH_COMPRESSION_TYPE_incompressible`): store plain.
    Incompressible,
}

/// `__bio_compress()`: compresses a prefix of `src` (at most all of it)
/// into `dst` (its length is the most output allowed), shrinking the
/// input until the output fits, and gives up when the result would not
/// save a block.  `block` is the block size in bytes.
pub fn bio_compress(ty: u8, level: u8, block: usize, src: &[u8], dst: &mut [u8]) -> Result<Compressed, Errno> {
    let block = block.max(512);
    if src.len() <= block {
        return Ok(Compressed::Incompressible);
    }
    let dst_max = dst.len();
    let mut src_len = src.len();
    let out = loop {
        if src_len <= block {
            return Ok(Compressed::Incompressible);
        }
        if let Some(n) = attempt_compress(ty, level, &src[..src_len], dst)? {
            break n;
        }
        if src_len <= dst_max {
            return Ok(Compressed::Incompressible);
        }
        src_len -= (src_len - dst_max) / 2;
        src_len = src_len / block * block;
    };
    let padded = out.div_ceil(block) * block;
    if padded >= src_len || padded > dst_max {
        return Ok(Compressed::Incompressible);
    }
    dst[out..padded].fill(0);
    Ok(Compressed::Yes { src_len, dst_len: padded })
}
