// SPDX-License-Identifier: GPL-2.0
//! Compression of data on write: `attempt_compress()` and
//! `__bio_compress()` of `fs/bcachefs/compress.c`.
//!
//! On the host, gzip (raw deflate) comes from the `flate2` crate and zstd
//! from the `zstd` crate; LZ4 has no compressor here yet.  In the kernel
//! none is wired up yet (the kernel's `zlib_deflate` and `zstd_compress_cctx`
//! are what C uses): every type is `EOPNOTSUPP` there.
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
    ty == 0 || (cfg!(not(bch_kernel)) && (ty == 2 || ty == 4))
}

/// `attempt_compress()`: compresses all of `src` into `dst` with
/// compression type `ty` at option level `level` (0: the default).
/// Returns the bytes of `dst` used, `Ok(None)` when the output does not
/// fit in `dst`.  Errors: `EOPNOTSUPP` for a type without a compressor in
/// this home.
#[cfg(not(bch_kernel))]
pub fn attempt_compress(ty: u8, level: u8, src: &[u8], dst: &mut [u8]) -> Result<Option<usize>, Errno> {
    match ty {
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

/// Kernel home: no compressor is wired up yet.
#[cfg(bch_kernel)]
pub fn attempt_compress(_ty: u8, _level: u8, _src: &[u8], _dst: &mut [u8]) -> Result<Option<usize>, Errno> {
    Err(Errno::EOPNOTSUPP)
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
