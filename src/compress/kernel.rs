// SPDX-License-Identifier: GPL-2.0
//! Kernel backend of the decompressors: the kernel's own lib/lz4,
//! lib/zstd and lib/zlib_inflate, as C bcachefs calls them.  Their
//! workspaces are allocated per call with kvmalloc (`KVVec`): they are
//! scratch memory for the CPU only, never bio buffers.  The module needs
//! `CONFIG_LZ4_DECOMPRESS`, `CONFIG_ZSTD_DECOMPRESS` and
//! `CONFIG_ZLIB_INFLATE` (see Kconfig).

use kernel::alloc::{flags::GFP_KERNEL, KVVec};

use super::DecompressError;
use crate::bindings;

/// A zeroed workspace of at least `bytes` bytes, 8-byte aligned (zstd
/// requires that of its static context).
fn workspace(bytes: usize) -> Result<KVVec<u64>, DecompressError> {
    KVVec::from_elem(0u64, bytes.div_ceil(8), GFP_KERNEL).map_err(|_| DecompressError::NoMem)
}

/// `LZ4_decompress_safe_partial(src, dst, src_len, dst_len, dst_len)`:
/// the bytes written.
pub(super) fn lz4_partial(src: &[u8], dst: &mut [u8]) -> Result<usize, DecompressError> {
    // Both lengths were checked against i32::MAX by the caller.
    let (slen, dlen) = (src.len() as i32, dst.len() as i32);
    // SAFETY: `src` is readable for `slen` bytes and `dst` writable for
    // `dlen` bytes; the safe partial decoder stays inside both bounds
    // (it is the variant meant for untrusted input) and keeps no pointer.
    let ret = unsafe {
        bindings::LZ4_decompress_safe_partial(src.as_ptr().cast(), dst.as_mut_ptr().cast(), slen, dlen, dlen)
    };
    usize::try_from(ret).map_err(|_| DecompressError::Lz4)
}

/// One-shot zstd decode of exactly `src` into `dst`.
pub(super) fn zstd(src: &[u8], dst: &mut [u8]) -> Result<usize, DecompressError> {
    // SAFETY: takes no arguments, only computes a size.
    let bytes = unsafe { bindings::zstd_dctx_workspace_bound() };
    let mut ws = workspace(bytes)?;
    // SAFETY: `ws` is an 8-byte aligned allocation of at least `bytes`
    // bytes, which is what zstd_init_dctx() asks for; it lives until the
    // end of this function, past the last use of the context built in it.
    let dctx = unsafe { bindings::zstd_init_dctx(ws.as_mut_ptr().cast(), bytes) };
    if dctx.is_null() {
        return Err(DecompressError::NoMem);
    }
    // SAFETY: `dctx` was initialised above in `ws`; `dst` is writable for
    // `dst.len()` bytes and `src` readable for `src.len()` bytes, and
    // zstd_decompress_dctx() stays inside both and keeps no pointer.
    let ret = unsafe {
        bindings::zstd_decompress_dctx(dctx, dst.as_mut_ptr().cast(), dst.len(), src.as_ptr().cast(), src.len())
    };
    // SAFETY: only inspects the value.
    if unsafe { bindings::zstd_is_error(ret) } != 0 {
        // zstd error results are `(size_t)-code`.
        return Err(DecompressError::Zstd(ret.wrapping_neg()));
    }
    drop(ws);
    Ok(ret)
}

/// Raw inflate (windowBits -15) with `Z_FINISH`: the bytes written, once
/// the stream has ended.
pub(super) fn inflate_raw(src: &[u8], dst: &mut [u8]) -> Result<usize, DecompressError> {
    // SAFETY: takes no arguments, only computes a size.
    let bytes = unsafe { bindings::zlib_inflate_workspacesize() };
    let mut ws = workspace(usize::try_from(bytes).map_err(|_| DecompressError::NoMem)?)?;
    let mut strm = bindings::z_stream {
        next_in: src.as_ptr(),
        avail_in: src.len() as _,
        next_out: dst.as_mut_ptr(),
        avail_out: dst.len() as _,
        workspace: ws.as_mut_ptr().cast(),
        ..Default::default()
    };
    // SAFETY: `strm` is a zeroed stream whose workspace points at
    // zlib_inflate_workspacesize() bytes that outlive it; inflateInit2
    // only sets up the state inside that workspace.
    let ret = unsafe { bindings::zlib_inflateInit2(&mut strm, -bindings::BCH_RS_MAX_WBITS) };
    if ret != bindings::BCH_RS_Z_OK {
        return Err(DecompressError::Inflate(ret));
    }
    // SAFETY: `strm` was initialised above; its input and output pointers
    // cover `src` and `dst` with the lengths given, both live and not
    // otherwise accessed until this returns.
    let ret = unsafe { bindings::zlib_inflate(&mut strm, bindings::BCH_RS_Z_FINISH) };
    // SAFETY: `strm` was initialised above; inflateEnd only releases state
    // kept in the workspace, which we free ourselves afterwards.
    unsafe { bindings::zlib_inflateEnd(&mut strm) };
    let out = strm.total_out as usize;
    drop(ws);
    if ret != bindings::BCH_RS_Z_STREAM_END {
        return Err(DecompressError::Inflate(ret));
    }
    Ok(out)
}
