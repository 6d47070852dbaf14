// SPDX-License-Identifier: GPL-2.0
//! Host backend of the decompressors: LZ4 in pure Rust ([`super::lz4`]),
//! zstd through the `zstd` crate's `ZSTD_decompressDCtx` (the function the
//! kernel's `zstd_decompress_dctx()` wraps), raw deflate through `flate2`.

use super::{lz4, DecompressError};

/// `LZ4_decompress_safe_partial(src, dst, src_len, dst_len, dst_len)`:
/// the bytes written.
pub(super) fn lz4_partial(src: &[u8], dst: &mut [u8]) -> Result<usize, DecompressError> {
    lz4::decompress_partial(src, dst).map_err(|_| DecompressError::Lz4)
}

/// One-shot zstd decode of exactly `src` (one or more frames) into `dst`.
pub(super) fn zstd(src: &[u8], dst: &mut [u8]) -> Result<usize, DecompressError> {
    use zstd::zstd_safe;

    let mut dctx = zstd_safe::DCtx::create();
    // zstd error results are `(size_t)-code`.
    dctx.decompress(dst, src).map_err(|e| DecompressError::Zstd(e.wrapping_neg()))
}

/// Raw inflate (windowBits -15) with `Z_FINISH`: the bytes written, once
/// the stream has ended.
pub(super) fn inflate_raw(src: &[u8], dst: &mut [u8]) -> Result<usize, DecompressError> {
    use flate2::{Decompress, FlushDecompress, Status};

    const Z_OK: i32 = 0;
    const Z_DATA_ERROR: i32 = -3;
    const Z_BUF_ERROR: i32 = -5;

    let mut z = Decompress::new(false);
    match z.decompress(src, dst, FlushDecompress::Finish) {
        Ok(Status::StreamEnd) => Ok(z.total_out() as usize),
        Ok(Status::Ok) => Err(DecompressError::Inflate(Z_OK)),
        Ok(Status::BufError) => Err(DecompressError::Inflate(Z_BUF_ERROR)),
        Err(_) => Err(DecompressError::Inflate(Z_DATA_ERROR)),
    }
}
