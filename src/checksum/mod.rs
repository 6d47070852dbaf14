// SPDX-License-Identifier: GPL-2.0
//! Checksums of metadata and data: `bch2_checksum()` in
//! `fs/bcachefs/checksum.c`, for the non-cryptographic types.
//!
//! A checksum is stored as a 128-bit `struct bch_csum { lo, hi }`; the
//! CRC and hash types fill `lo` (zero-extended) and leave `hi` zero.  The
//! types and how each is computed (seed, final xor):
//!
//! | type | name | computation |
//! |-----:|------|-------------|
//! | 0 | none | always 0 |
//! | 1 | crc32c_nonzero | crc32c seeded with `!0`, result xored with `!0` (the usual CRC-32C) |
//! | 2 | crc64_nonzero | ECMA-182 crc64, MSB first, seeded with `!0`, result xored with `!0` |
//! | 3, 4 | chacha20_poly1305_{80,128} | a MAC keyed by the filesystem key: not supported here |
//! | 5 | crc32c | crc32c seeded with 0, no final xor |
//! | 6 | crc64 | ECMA-182 crc64 seeded with 0, no final xor (kernel `crc64_be(0, ..)`) |
//! | 7 | xxhash | xxh64 with seed 0 |
//!
//! "crc32c" above is the raw kernel `crc32c(seed, p, len)` (lib/libcrc32c.c),
//! which does no inversion of its own.  The crc64 is the kernel's
//! `crc64_be()` (lib/crc64.c); it is small enough to live here in pure Rust
//! for both homes.  crc32c and xxh64 come from a backend: the `crc32c` and
//! `xxhash-rust` crates on the host, the kernel's exported `crc32c()` and
//! `xxh64()` in the module (`kernel.rs`).

use core::fmt;

#[cfg(bch_kernel)]
mod kernel;
#[cfg(bch_kernel)]
use self::kernel as backend;

#[cfg(not(bch_kernel))]
mod host;
#[cfg(not(bch_kernel))]
use self::host as backend;

/// A checksum type (`enum bch_csum_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CsumType {
    /// No checksum.
    None = 0,
    /// crc32c with `!0` seed and final xor.
    Crc32cNonzero = 1,
    /// crc64 with `!0` seed and final xor.
    Crc64Nonzero = 2,
    /// ChaCha20/Poly1305 MAC truncated to 80 bits (encrypted filesystems).
    Chacha20Poly1305_80 = 3,
    /// ChaCha20/Poly1305 MAC, full 128 bits (encrypted filesystems).
    Chacha20Poly1305_128 = 4,
    /// crc32c with zero seed, no final xor.
    Crc32c = 5,
    /// crc64 with zero seed, no final xor.
    Crc64 = 6,
    /// xxh64 with zero seed.
    Xxhash = 7,
}

/// Number of checksum types (`BCH_CSUM_NR`).
pub const CSUM_NR: u8 = 8;

/// Names of the checksum types, indexed by type, as C prints them.
pub const CSUM_TYPE_NAMES: [&str; CSUM_NR as usize] = [
    "none",
    "crc32c_nonzero",
    "crc64_nonzero",
    "chacha20_poly1305_80",
    "chacha20_poly1305_128",
    "crc32c",
    "crc64",
    "xxhash",
];

impl CsumType {
    /// The type numbered `v`, if there is one.
    pub fn from_u8(v: u8) -> Option<CsumType> {
        Some(match v {
            0 => CsumType::None,
            1 => CsumType::Crc32cNonzero,
            2 => CsumType::Crc64Nonzero,
            3 => CsumType::Chacha20Poly1305_80,
            4 => CsumType::Chacha20Poly1305_128,
            5 => CsumType::Crc32c,
            6 => CsumType::Crc64,
            7 => CsumType::Xxhash,
            _ => return None,
        })
    }

    /// The name C prints (`bch2_prt_csum_type()`).
    pub fn name(self) -> &'static str {
        CSUM_TYPE_NAMES[self as usize]
    }

    /// Bytes of the checksum that are significant (`bch_crc_bytes[]`).
    pub fn bytes(self) -> usize {
        match self {
            CsumType::None => 0,
            CsumType::Crc32cNonzero | CsumType::Crc32c => 4,
            CsumType::Crc64Nonzero | CsumType::Crc64 | CsumType::Xxhash => 8,
            CsumType::Chacha20Poly1305_80 => 10,
            CsumType::Chacha20Poly1305_128 => 16,
        }
    }

    /// Whether the type is a MAC that needs the filesystem key
    /// (`bch2_csum_type_is_encryption()`).
    pub fn is_encryption(self) -> bool {
        matches!(self, CsumType::Chacha20Poly1305_80 | CsumType::Chacha20Poly1305_128)
    }
}

/// A 128-bit checksum as stored on disk (`struct bch_csum`), in CPU order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Csum {
    /// Low 64 bits (the whole value for CRCs and xxhash).
    pub lo: u64,
    /// High 64 bits (MACs only).
    pub hi: u64,
}

impl Csum {
    /// Decodes the 16 on-disk bytes (two little-endian u64s).
    pub fn from_bytes(b: &[u8; 16]) -> Csum {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        hi.copy_from_slice(&b[8..]);
        Csum { lo: u64::from_le_bytes(lo), hi: u64::from_le_bytes(hi) }
    }

    /// Encodes as the 16 on-disk bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.lo.to_le_bytes());
        b[8..].copy_from_slice(&self.hi.to_le_bytes());
        b
    }

    /// Prints the significant bytes of a checksum of type `ty` in hex, in
    /// on-disk byte order, as `bch2_csum_to_text()` does.
    pub fn display(self, ty: CsumType) -> CsumDisplay {
        CsumDisplay { csum: self, bytes: ty.bytes() }
    }
}

/// Hex form of a [`Csum`], from [`Csum::display`].
pub struct CsumDisplay {
    csum: Csum,
    bytes: usize,
}

impl fmt::Display for CsumDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.csum.to_bytes()[..self.bytes] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a checksum could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumError {
    /// The type is a MAC (ChaCha20/Poly1305): needs the filesystem key,
    /// which we do not support.
    NeedsKey(CsumType),
}

impl fmt::Display for CsumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsumError::NeedsKey(t) => write!(f, "checksum type {} needs the encryption key", t.name()),
        }
    }
}

/// The raw kernel crc32c: CRC-32C (Castagnoli, reflected) of `data`
/// starting from `seed`, without the customary pre/post inversion.
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    backend::crc32c_raw(seed, data)
}

/// xxh64 of `data` with `seed`.
pub fn xxh64(seed: u64, data: &[u8]) -> u64 {
    backend::xxh64(seed, data)
}

/// ECMA-182 polynomial of the kernel's `crc64_be()`.
const CRC64_ECMA182_POLY: u64 = 0x42F0_E1EB_A9EA_3693;

/// Byte-at-a-time table for [`crc64_be`], built at compile time.
static CRC64_TABLE: [u64; 256] = crc64_table();

const fn crc64_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u64) << 56;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & (1 << 63) != 0 { (crc << 1) ^ CRC64_ECMA182_POLY } else { crc << 1 };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
}

/// The kernel's `crc64_be()`: ECMA-182 crc64, most significant bit first,
/// continuing from `crc`, no inversion.
pub fn crc64_be(mut crc: u64, data: &[u8]) -> u64 {
    for &b in data {
        let t = ((crc >> 56) as u8 ^ b) as usize;
        crc = CRC64_TABLE[t] ^ (crc << 8);
    }
    crc
}

/// Checksum of `data` with type `ty`, as `bch2_checksum()` computes it for
/// the non-MAC types (the nonce plays no part in those).
///
/// Errors: [`CsumError::NeedsKey`] for the ChaCha20/Poly1305 types.
pub fn checksum(ty: CsumType, data: &[u8]) -> Result<Csum, CsumError> {
    let lo = match ty {
        CsumType::None => 0,
        CsumType::Crc32cNonzero => u64::from(crc32c_raw(!0, data) ^ !0),
        CsumType::Crc32c => u64::from(crc32c_raw(0, data)),
        CsumType::Crc64Nonzero => crc64_be(!0, data) ^ !0,
        CsumType::Crc64 => crc64_be(0, data),
        CsumType::Xxhash => xxh64(0, data),
        CsumType::Chacha20Poly1305_80 | CsumType::Chacha20Poly1305_128 => {
            return Err(CsumError::NeedsKey(ty))
        }
    };
    Ok(Csum { lo, hi: 0 })
}

/// [`checksum`] of data that comes in pieces (the folios a read went
/// straight into), for the types that can be computed piece by piece: the
/// CRCs and `none`.  Feeding the pieces in order gives what [`checksum`]
/// of their concatenation gives.
#[derive(Clone, Copy, Debug)]
pub struct Incremental {
    ty: CsumType,
    state: u64,
}

impl Incremental {
    /// A checksum of type `ty` over no data yet; `None` for the types that
    /// need all the data at once (xxhash) or a key.
    pub fn new(ty: CsumType) -> Option<Incremental> {
        let state = match ty {
            CsumType::None | CsumType::Crc32c | CsumType::Crc64 => 0,
            CsumType::Crc32cNonzero => u64::from(u32::MAX),
            CsumType::Crc64Nonzero => u64::MAX,
            CsumType::Xxhash | CsumType::Chacha20Poly1305_80 | CsumType::Chacha20Poly1305_128 => return None,
        };
        Some(Incremental { ty, state })
    }

    /// Adds the next piece.
    pub fn update(&mut self, data: &[u8]) {
        self.state = match self.ty {
            CsumType::Crc32c | CsumType::Crc32cNonzero => u64::from(crc32c_raw(self.state as u32, data)),
            CsumType::Crc64 | CsumType::Crc64Nonzero => crc64_be(self.state, data),
            _ => self.state,
        };
    }

    /// The checksum of everything added.
    pub fn finish(self) -> Csum {
        let lo = match self.ty {
            CsumType::Crc32cNonzero => u64::from(self.state as u32 ^ u32::MAX),
            CsumType::Crc64Nonzero => self.state ^ u64::MAX,
            _ => self.state,
        };
        Csum { lo, hi: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    const CHECK: &[u8] = b"123456789";

    #[test]
    fn incremental_matches_one_shot() {
        let data: std::vec::Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for ty in [CsumType::None, CsumType::Crc32c, CsumType::Crc32cNonzero, CsumType::Crc64, CsumType::Crc64Nonzero] {
            for cut in [0usize, 1, 512, 4096, 4999, 5000] {
                let mut inc = Incremental::new(ty).unwrap();
                inc.update(&data[..cut]);
                inc.update(&data[cut..]);
                assert_eq!(inc.finish(), checksum(ty, &data).unwrap(), "{ty:?} cut {cut}");
            }
        }
        assert!(Incremental::new(CsumType::Xxhash).is_none());
    }

    #[test]
    fn crc32c_known_answers() {
        // CRC-32C check value.
        assert_eq!(checksum(CsumType::Crc32cNonzero, CHECK).unwrap().lo, 0xE306_9283);
        // Raw form: no inversion, so zero data from a zero seed stays zero.
        assert_eq!(crc32c_raw(0, &[0u8; 32]), 0);
        assert_eq!(crc32c_raw(!0, CHECK) ^ !0, 0xE306_9283);
        // The zero-seeded variant is the raw value.
        let raw = checksum(CsumType::Crc32c, CHECK).unwrap();
        assert_eq!(raw.lo, u64::from(crc32c_raw(0, CHECK)));
        assert_eq!(raw.hi, 0);
        // Incremental use continues a raw CRC.
        assert_eq!(crc32c_raw(crc32c_raw(7, b"1234"), b"56789"), crc32c_raw(7, CHECK));
    }

    #[test]
    fn crc64_known_answers() {
        // CRC-64/ECMA-182 (init 0, no xorout): the kernel's crc64_be(0, ..).
        assert_eq!(checksum(CsumType::Crc64, CHECK).unwrap().lo, 0x6C40_DF5F_0B49_7347);
        // CRC-64/WE (init and xorout all ones).
        assert_eq!(checksum(CsumType::Crc64Nonzero, CHECK).unwrap().lo, 0x62EC_59E3_F1A4_F00A);
        assert_eq!(CRC64_TABLE[1], CRC64_ECMA182_POLY);
        assert_eq!(crc64_be(0, b""), 0);
    }

    #[test]
    fn xxhash_known_answers() {
        assert_eq!(xxh64(0, b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(checksum(CsumType::Xxhash, b"a").unwrap().lo, 0xD24E_C4F1_A98C_6E5B);
    }

    #[test]
    fn none_and_macs() {
        assert_eq!(checksum(CsumType::None, CHECK), Ok(Csum::default()));
        assert_eq!(
            checksum(CsumType::Chacha20Poly1305_128, CHECK),
            Err(CsumError::NeedsKey(CsumType::Chacha20Poly1305_128))
        );
    }

    #[test]
    fn types_round_trip_and_print() {
        for v in 0..CSUM_NR {
            assert_eq!(CsumType::from_u8(v).unwrap() as u8, v);
        }
        assert_eq!(CsumType::from_u8(CSUM_NR), None);
        let c = Csum { lo: 0x1122_3344, hi: 0 };
        assert_eq!(Csum::from_bytes(&c.to_bytes()), c);
        assert_eq!(c.display(CsumType::Crc32c).to_string(), "44332211");
        assert_eq!(CsumType::Xxhash.name(), "xxhash");
    }
}
