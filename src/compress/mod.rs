// SPDX-License-Identifier: GPL-2.0
//! Decompression of compressed data extents, as `__bio_uncompress()` in
//! `fs/bcachefs/compress.c` does it.
//!
//! A compressed extent carries a crc entry with a compression type and two
//! sizes in sectors: the data as written (`compressed_size`, the encoded
//! bytes plus zero padding up to the block size) and the data it expands to
//! (`uncompressed_size`).  [`decompress`] takes the whole written range as
//! `src` and a `dst` of exactly `uncompressed_size << 9` bytes, and succeeds
//! only when the algorithm fills `dst` exactly.
//!
//! | type | name | on disk | decoder (kernel / host) |
//! |-----:|------|---------|-------------------------|
//! | 0 | none | plain data | not a decompression: [`DecompressError::NotCompressed`] |
//! | 1 | lz4_old | LZ4 block, zero padded | `LZ4_decompress_safe_partial` / [`lz4`] |
//! | 2 | gzip | raw deflate (no zlib or gzip header), zero padded | `zlib_inflate`, windowBits -15 / `flate2` raw |
//! | 3 | lz4 | LZ4 block, zero padded | as lz4_old |
//! | 4 | zstd | `__le32` frame length, then zstd frame(s), zero padded | `zstd_decompress_dctx` / `zstd` (`ZSTD_decompressDCtx`) |
//! | 5 | incompressible | plain data | not a decompression: [`DecompressError::NotCompressed`] |
//!
//! LZ4: C decodes both LZ4 types with `LZ4_decompress_safe_partial(src,
//! dst, src_len, dst_len, dst_len)`, which stops as soon as `dst` is full
//! and so ignores the sector padding after the block; success is exactly
//! `dst_len` bytes out.  A plain `LZ4_decompress_safe` would reject the
//! padding, so the host decoder ([`lz4`]) is a pure Rust implementation of
//! the same partial decoding (no crate offers it).
//!
//! gzip: `zlib_inflateInit2(-MAX_WBITS)`, one `zlib_inflate(Z_FINISH)`,
//! success is `Z_STREAM_END`; bytes after the end of the deflate stream
//! (the padding) are ignored.  C does not check how many bytes came out;
//! we also require exactly `dst_len` (C's compressor always produces that,
//! and a shorter stream would leave the tail of `dst` undefined in C).
//!
//! zstd: the first four bytes are the little-endian length of the zstd
//! data that follows (zstd needs the exact compressed size, and the extent
//! is padded to sectors); a length beyond the extent is an error, and the
//! decode must return exactly `dst_len`.

use core::fmt;

use crate::errcode::Errno;

pub mod lz4;

#[cfg(bch_kernel)]
mod kernel;
#[cfg(bch_kernel)]
use self::kernel as backend;

#[cfg(not(bch_kernel))]
mod host;
#[cfg(not(bch_kernel))]
use self::host as backend;

/// A compression type (`enum bch_compression_type`), the 4-bit field of a
/// crc entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CompressionType {
    /// Not compressed.
    None = 0,
    /// LZ4 as written by old versions; decoded like [`CompressionType::Lz4`].
    Lz4Old = 1,
    /// Raw deflate (zlib with windowBits -15).
    Gzip = 2,
    /// LZ4 block format.
    Lz4 = 3,
    /// zstd, behind a 4-byte little-endian length.
    Zstd = 4,
    /// Tried and not compressible: stored plain.
    Incompressible = 5,
}

/// Number of compression types (`BCH_COMPRESSION_TYPE_NR`).
pub const COMPRESSION_TYPE_NR: u8 = 6;

/// Every compression type, indexed by its number.
pub const COMPRESSION_TYPES: [CompressionType; COMPRESSION_TYPE_NR as usize] = [
    CompressionType::None,
    CompressionType::Lz4Old,
    CompressionType::Gzip,
    CompressionType::Lz4,
    CompressionType::Zstd,
    CompressionType::Incompressible,
];

impl CompressionType {
    /// The type numbered `v`, if there is one.
    pub fn from_u8(v: u8) -> Option<CompressionType> {
        COMPRESSION_TYPES.get(usize::from(v)).copied()
    }

    /// The name C prints (`bch2_compression_types[]`).
    pub fn name(self) -> &'static str {
        match self {
            CompressionType::None => "none",
            CompressionType::Lz4Old => "lz4_old",
            CompressionType::Gzip => "gzip",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
            CompressionType::Incompressible => "incompressible",
        }
    }

    /// Whether data of this type needs decompressing (`crc_is_compressed()`).
    pub fn is_compressed(self) -> bool {
        !matches!(self, CompressionType::None | CompressionType::Incompressible)
    }
}

/// Why a compressed extent did not decompress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecompressError {
    /// The crc entry names a compression type that does not exist.
    UnknownType(u8),
    /// The type is `none` or `incompressible`: there is nothing to
    /// decompress (C never calls its decompressor for these).
    NotCompressed(CompressionType),
    /// The compressed or uncompressed size is over the limit
    /// (`encoded_extent_max`, or what the kernel decoders take).
    TooBig {
        /// Compressed bytes.
        src: usize,
        /// Uncompressed bytes.
        dst: usize,
    },
    /// The LZ4 block is malformed (reads past its end, or a match reaches
    /// before the start of the output).
    Lz4,
    /// A zstd extent too short for its length prefix, or whose prefix is
    /// more than the bytes after it.
    ZstdLength {
        /// The length stored in the prefix (0 when there was no prefix).
        stored: u32,
        /// Bytes after the prefix.
        available: usize,
    },
    /// zstd failed with this `ZSTD_ErrorCode`.
    Zstd(usize),
    /// Inflate ended with this zlib return code instead of `Z_STREAM_END`
    /// (`Z_OK` 0 or `Z_BUF_ERROR` -5 when the output filled up first or
    /// the input ran out, `Z_DATA_ERROR` -3 for a corrupt stream).
    Inflate(i32),
    /// The data decoded to a different size than the crc entry says.
    SizeMismatch {
        /// `uncompressed_size << 9`.
        expected: usize,
        /// What the decoder produced.
        got: usize,
    },
    /// The decoder's workspace could not be allocated.
    NoMem,
}

impl DecompressError {
    /// The error code C returns for this: `-EIO`, or `-ENOMEM` for a
    /// failed allocation.
    pub fn errno(&self) -> Errno {
        match self {
            DecompressError::NoMem => Errno::ENOMEM,
            _ => Errno::EIO,
        }
    }
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressError::UnknownType(t) => write!(f, "unknown compression type {t}"),
            DecompressError::NotCompressed(t) => write!(f, "compression type {} is not compressed", t.name()),
            DecompressError::TooBig { src, dst } => {
                write!(f, "extent too big: {src} bytes compressed, {dst} uncompressed")
            }
            DecompressError::Lz4 => f.write_str("lz4: malformed block"),
            DecompressError::ZstdLength { stored, available } => {
                write!(f, "zstd: length prefix {stored} but {available} bytes follow it")
            }
            DecompressError::Zstd(code) => write!(f, "zstd: error code {code}"),
            DecompressError::Inflate(ret) => write!(f, "gzip: inflate returned {ret}, not Z_STREAM_END"),
            DecompressError::SizeMismatch { expected, got } => {
                write!(f, "decompressed to {got} bytes, expected {expected}")
            }
            DecompressError::NoMem => f.write_str("out of memory for the decompression workspace"),
        }
    }
}

/// Checks an extent's sizes (in 512-byte sectors) against the
/// filesystem's `encoded_extent_max` (bytes), as `bch2_bio_uncompress()`
/// does before decompressing.
pub fn check_extent_size(
    compressed_sectors: u32,
    uncompressed_sectors: u32,
    encoded_extent_max: u32,
) -> Result<(), DecompressError> {
    let src = (compressed_sectors as usize) << 9;
    let dst = (uncompressed_sectors as usize) << 9;
    if src > encoded_extent_max as usize || dst > encoded_extent_max as usize {
        return Err(DecompressError::TooBig { src, dst });
    }
    Ok(())
}

/// Decompresses `src`, the whole compressed extent as written (padding
/// included), into `dst`, which must be exactly the uncompressed size.
///
/// `ty` is the crc entry's compression type number.  Errors: see
/// [`DecompressError`]; every failure of the data itself is an `EIO` in C.
pub fn decompress(ty: u8, src: &[u8], dst: &mut [u8]) -> Result<(), DecompressError> {
    let ty = CompressionType::from_u8(ty).ok_or(DecompressError::UnknownType(ty))?;
    // The kernel decoders take `int` sizes.
    if src.len() > i32::MAX as usize || dst.len() > i32::MAX as usize {
        return Err(DecompressError::TooBig { src: src.len(), dst: dst.len() });
    }
    let got = match ty {
        CompressionType::None | CompressionType::Incompressible => {
            return Err(DecompressError::NotCompressed(ty));
        }
        CompressionType::Lz4Old | CompressionType::Lz4 => backend::lz4_partial(src, dst)?,
        CompressionType::Gzip => backend::inflate_raw(src, dst)?,
        CompressionType::Zstd => {
            let (prefix, rest) = match src.split_first_chunk::<4>() {
                Some(p) => p,
                None => return Err(DecompressError::ZstdLength { stored: 0, available: 0 }),
            };
            let stored = u32::from_le_bytes(*prefix);
            let frame = rest
                .get(..stored as usize)
                .ok_or(DecompressError::ZstdLength { stored, available: rest.len() })?;
            backend::zstd(frame, dst)?
        }
    };
    if got != dst.len() {
        return Err(DecompressError::SizeMismatch { expected: dst.len(), got });
    }
    Ok(())
}

#[cfg(all(test, not(bch_kernel)))]
mod tests;
