// SPDX-License-Identifier: GPL-2.0
//! Host backend of the checksums: the `crc32c` and `xxhash-rust` crates.

/// Raw CRC-32C from `seed`, no inversion.  The crate inverts on the way in
/// and out (`crc32c_append(c, d)` is `!raw(!c, d)`), so invert around it.
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// xxh64 of `data` with `seed`.
pub fn xxh64(seed: u64, data: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(data, seed)
}
