// SPDX-License-Identifier: GPL-2.0
//! Kernel backend of the checksums: the kernel's own exported `crc32c()`
//! (lib/libcrc32c.c, `EXPORT_SYMBOL`) and `xxh64()` (lib/xxhash.c,
//! `EXPORT_SYMBOL`).  The module needs `CONFIG_LIBCRC32C` and
//! `CONFIG_XXHASH`, which C bcachefs selects too.

use core::ffi::c_uint;

mod ffi {
    use core::ffi::{c_uint, c_void};

    extern "C" {
        /// `u32 crc32c(u32 crc, const void *address, unsigned int length)`:
        /// raw CRC-32C, no inversion.
        pub(super) fn crc32c(crc: u32, address: *const c_void, length: c_uint) -> u32;

        /// `u64 xxh64(const void *input, size_t length, u64 seed)`.
        pub(super) fn xxh64(input: *const c_void, length: usize, seed: u64) -> u64;
    }
}

/// Raw CRC-32C from `seed`, no inversion.
pub(super) fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    let mut crc = seed;
    // `length` is an unsigned int: feed slices longer than that in pieces,
    // which a CRC allows.
    for chunk in data.chunks(c_uint::MAX as usize) {
        // SAFETY: `chunk` is a live, initialised slice of `chunk.len()`
        // bytes, which fits in `c_uint`; crc32c() only reads that range and
        // keeps no pointer to it.
        crc = unsafe { ffi::crc32c(crc, chunk.as_ptr().cast(), chunk.len() as c_uint) };
    }
    crc
}

/// xxh64 of `data` with `seed`.
pub(super) fn xxh64(seed: u64, data: &[u8]) -> u64 {
    // SAFETY: `data` is a live, initialised slice of `data.len()` bytes;
    // xxh64() only reads that range and keeps no pointer to it.
    unsafe { ffi::xxh64(data.as_ptr().cast(), data.len(), seed) }
}
