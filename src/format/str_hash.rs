// SPDX-License-Identifier: GPL-2.0
//! String hashes of directory entries and xattrs: `fs/bcachefs/str_hash.h`
//! with the SipHash of `fs/bcachefs/siphash.c`.
//!
//! A directory's (or file's, for xattrs) inode selects the hash type
//! (`INODE_STR_HASH`, [`StrHashType`]) and its `bi_hash_seed` keys it.  The
//! hash of a name is the key's offset in the dirents or xattrs btree:
//!
//! - crc32c: raw CRC-32C of the 8 seed bytes from `!0`, continued over
//!   the data; no final inversion.
//! - crc64: `crc64_be()` likewise from `!0`, result shifted right by one.
//! - siphash: SipHash-2-4 keyed with `k0 = seed`, `k1 = 0`, shifted right
//!   by one.  (`siphash_old`, keyed with the SHA-256 of the seed, is only
//!   found on very old filesystems and is not supported.)
//!
//! Dirents hash the name and never use 0 or 1 (kept for `.` and `..`);
//! xattrs hash the type byte, then the name.
//!
//! The SipHash here reproduces the C one exactly, including what its
//! `SipHash_Update()` does with a second call that starts mid-block (it
//! stores the tail at the old fill offset), which the xattr hash relies
//! on: on-disk offsets must match what C computed.

use crate::checksum::{crc32c_raw, crc64_be};

/// A string hash type (`enum bch_str_hash_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum StrHashType {
    /// `BCH_STR_HASH_crc32c`.
    Crc32c = 0,
    /// `BCH_STR_HASH_crc64`.
    Crc64 = 1,
    /// `BCH_STR_HASH_siphash_old`: unsupported.
    SiphashOld = 2,
    /// `BCH_STR_HASH_siphash`.
    Siphash = 3,
}

impl StrHashType {
    /// The type numbered `v`.
    pub fn from_u8(v: u8) -> Option<StrHashType> {
        Some(match v {
            0 => StrHashType::Crc32c,
            1 => StrHashType::Crc64,
            2 => StrHashType::SiphashOld,
            3 => StrHashType::Siphash,
            _ => return None,
        })
    }
}

/// Why a hash could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrHashError {
    /// The inode names a hash type that does not exist.
    UnknownType(u8),
    /// `siphash_old` needs SHA-256 of the seed: not supported.
    SiphashOld,
}

impl core::fmt::Display for StrHashError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StrHashError::UnknownType(t) => write!(f, "unknown str hash type {t}"),
            StrHashError::SiphashOld => f.write_str("str hash type siphash_old is not supported"),
        }
    }
}

/// The hash parameters of a directory or file (`struct bch_hash_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashInfo {
    /// Hash type.
    pub ty: StrHashType,
    /// SipHash key word 0: the inode's `bi_hash_seed`; also the crc seed.
    pub k0: u64,
    /// SipHash key word 1: 0.
    pub k1: u64,
}

impl HashInfo {
    /// `bch2_hash_info_init()` for an inode with str hash type `ty` (its
    /// `INODE_STR_HASH`) and `bi_hash_seed` `seed`.
    ///
    /// Errors: [`StrHashError`] for unknown types and `siphash_old`.
    pub fn new(ty: u8, seed: u64) -> Result<HashInfo, StrHashError> {
        let ty = StrHashType::from_u8(ty).ok_or(StrHashError::UnknownType(ty))?;
        if ty == StrHashType::SiphashOld {
            return Err(StrHashError::SiphashOld);
        }
        Ok(HashInfo { ty, k0: seed, k1: 0 })
    }

    /// Hash of the concatenation of `parts`, each fed as a separate update
    /// (`bch2_str_hash_init/update/end()`).
    pub fn hash(&self, parts: &[&[u8]]) -> u64 {
        match self.ty {
            StrHashType::Crc32c => {
                let mut c = crc32c_raw(!0, &self.k0.to_le_bytes());
                for p in parts {
                    c = crc32c_raw(c, p);
                }
                u64::from(c)
            }
            StrHashType::Crc64 => {
                let mut c = crc64_be(!0, &self.k0.to_le_bytes());
                for p in parts {
                    c = crc64_be(c, p);
                }
                c >> 1
            }
            StrHashType::SiphashOld | StrHashType::Siphash => {
                let mut s = SipHash24::new(self.k0, self.k1);
                for p in parts {
                    s.update(p);
                }
                s.finish() >> 1
            }
        }
    }

    /// `bch2_dirent_hash()`: the offset of a dirent named `name`, at
    /// least 2.
    pub fn dirent_hash(&self, name: &[u8]) -> u64 {
        self.hash(&[name]).max(2)
    }

    /// `bch2_xattr_hash()`: the offset of an xattr of type `ty` named
    /// `name`.
    pub fn xattr_hash(&self, ty: u8, name: &[u8]) -> u64 {
        self.hash(&[&[ty], name])
    }
}

/// SipHash-2-4 with the state layout and update behaviour of
/// `fs/bcachefs/siphash.c`.
#[derive(Clone, Debug)]
pub struct SipHash24 {
    v: [u64; 4],
    /// `buf[8]`, then the little-endian `bytes` counter and padding, as
    /// they sit in `SIPHASH_CTX`: an update that overruns `buf` lands in
    /// them exactly as in C.
    tail: [u8; 16],
}

impl SipHash24 {
    /// `SipHash_Init()` with key `(k0, k1)`.
    pub fn new(k0: u64, k1: u64) -> Self {
        SipHash24 {
            v: [
                0x736f6d6570736575 ^ k0,
                0x646f72616e646f6d ^ k1,
                0x6c7967656e657261 ^ k0,
                0x7465646279746573 ^ k1,
            ],
            tail: [0; 16],
        }
    }

    fn bytes(&self) -> u32 {
        u32::from_le_bytes([self.tail[8], self.tail[9], self.tail[10], self.tail[11]])
    }

    fn set_bytes(&mut self, n: u32) {
        self.tail[8..12].copy_from_slice(&n.to_le_bytes());
    }

    fn rounds(&mut self, n: usize) {
        let v = &mut self.v;
        for _ in 0..n {
            v[0] = v[0].wrapping_add(v[1]);
            v[2] = v[2].wrapping_add(v[3]);
            v[1] = v[1].rotate_left(13);
            v[3] = v[3].rotate_left(16);
            v[1] ^= v[0];
            v[3] ^= v[2];
            v[0] = v[0].rotate_left(32);
            v[2] = v[2].wrapping_add(v[1]);
            v[0] = v[0].wrapping_add(v[3]);
            v[1] = v[1].rotate_left(17);
            v[3] = v[3].rotate_left(21);
            v[1] ^= v[2];
            v[3] ^= v[0];
            v[2] = v[2].rotate_left(32);
        }
    }

    fn compress(&mut self, block: [u8; 8]) {
        let m = u64::from_le_bytes(block);
        self.v[3] ^= m;
        self.rounds(2);
        self.v[0] ^= m;
    }

    fn buf(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.tail[..8]);
        b
    }

    /// Copies `src` to `tail[at..]`, as `memcpy(&ctx->buf[at], ...)` does;
    /// bytes past the struct (which C would never reach for the inputs it
    /// hashes) are dropped.
    fn put(&mut self, at: usize, src: &[u8]) {
        for (i, &b) in src.iter().enumerate() {
            if let Some(d) = self.tail.get_mut(at + i) {
                *d = b;
            }
        }
    }

    /// `SipHash_Update()` with 2 compression rounds.
    pub fn update(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let used = (self.bytes() % 8) as usize;
        self.set_bytes(self.bytes().wrapping_add(data.len() as u32));
        let mut p = data;
        if used > 0 {
            let left = 8 - used;
            if p.len() >= left {
                self.put(used, &p[..left]);
                self.compress(self.buf());
                p = &p[left..];
            } else {
                self.put(used, p);
                return;
            }
        }
        while p.len() >= 8 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[..8]);
            self.compress(b);
            p = &p[8..];
        }
        if !p.is_empty() {
            // C copies the tail to &buf[used], not &buf[0].
            self.put(used, p);
        }
    }

    /// `SipHash_End()` with 4 finalisation rounds.
    pub fn finish(mut self) -> u64 {
        let bytes = self.bytes();
        let used = (bytes % 8) as usize;
        let left = 8 - used;
        for b in &mut self.tail[used..used + left - 1] {
            *b = 0;
        }
        self.tail[7] = bytes as u8;
        self.compress(self.buf());
        self.v[2] ^= 0xff;
        self.rounds(4);
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }
}

/// One-shot SipHash-2-4 of `data` with key `(k0, k1)`.
pub fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut s = SipHash24::new(k0, k1);
    s.update(data);
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn key_00_0f() -> (u64, u64) {
        let k: Vec<u8> = (0u8..16).collect();
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&k[..8]);
        b.copy_from_slice(&k[8..]);
        (u64::from_le_bytes(a), u64::from_le_bytes(b))
    }

    #[test]
    fn siphash_reference_vectors() {
        // The SipHash paper's test vectors: key 00..0f, message 00..(n-1).
        let (k0, k1) = key_00_0f();
        let msg: Vec<u8> = (0u8..64).collect();
        assert_eq!(siphash24(k0, k1, &msg[..0]), 0x726fdb47dd0e0e31);
        assert_eq!(siphash24(k0, k1, &msg[..1]), 0x74f839c593dc67fd);
        assert_eq!(siphash24(k0, k1, &msg[..8]), 0x93f5f5799a932462);
        assert_eq!(siphash24(k0, k1, &msg[..15]), 0xa129ca6149be45e5);
        assert_eq!(siphash24(k0, k1, &msg[..63]), 0x958a324ceb064572);
    }

    #[test]
    fn split_updates_follow_c() {
        let (k0, k1) = key_00_0f();
        // Updates that end on block boundaries are equivalent to one.
        let mut s = SipHash24::new(k0, k1);
        s.update(&[0, 1, 2, 3, 4, 5, 6, 7]);
        s.update(&[8, 9, 10, 11, 12, 13, 14]);
        assert_eq!(s.finish(), 0xa129ca6149be45e5);
        // A short first update followed by one that fills the block is
        // also standard...
        let mut s = SipHash24::new(k0, k1);
        s.update(&[0]);
        s.update(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(s.finish(), 0x93f5f5799a932462);
        // ...but a tail after a mid-block start lands at the old offset, as
        // in C: this differs from the standard hash of the same bytes.
        let mut s = SipHash24::new(k0, k1);
        s.update(&[0]);
        s.update(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let c_like = s.finish();
        assert_ne!(c_like, siphash24(k0, k1, &(0u8..10).collect::<Vec<u8>>()));
        // Reproduce it by hand: block 1 is 00..07; the final block holds
        // buf[0] = 0 (stale), buf[1..3] = 8, 9, then zeroes from `used`
        // (10 % 8 = 2), and the length.
        let mut s = SipHash24::new(k0, k1);
        s.compress([0, 1, 2, 3, 4, 5, 6, 7]);
        s.compress([0, 8, 0, 0, 0, 0, 0, 10]);
        s.v[2] ^= 0xff;
        s.rounds(4);
        assert_eq!(c_like, s.v[0] ^ s.v[1] ^ s.v[2] ^ s.v[3]);
    }

    #[test]
    fn str_hash_types() {
        let info = HashInfo::new(3, 0x0123456789abcdef).unwrap();
        assert_eq!(info.hash(&[b"foo"]), siphash24(0x0123456789abcdef, 0, b"foo") >> 1);
        assert!(info.dirent_hash(b"") >= 2);
        let crc = HashInfo::new(0, 7).unwrap();
        assert_eq!(crc.hash(&[b"ab"]), u64::from(crc32c_raw(crc32c_raw(!0, &7u64.to_le_bytes()), b"ab")));
        let c64 = HashInfo::new(1, 7).unwrap();
        assert_eq!(c64.hash(&[b"a", b"b"]), c64.hash(&[b"ab"]));
        assert_eq!(HashInfo::new(2, 0), Err(StrHashError::SiphashOld));
        assert_eq!(HashInfo::new(9, 0), Err(StrHashError::UnknownType(9)));
        // xattr: type byte then name, as two updates.
        assert_eq!(info.xattr_hash(0, b"abc"), info.hash(&[&[0], b"abc"]));
    }

    proptest! {
        #[test]
        fn one_shot_matches_block_aligned_splits(data in proptest::collection::vec(any::<u8>(), 0..80), k in any::<(u64, u64)>()) {
            let whole = siphash24(k.0, k.1, &data);
            let cut = data.len() / 8 * 8;
            let mut s = SipHash24::new(k.0, k.1);
            s.update(&data[..cut]);
            s.update(&data[cut..]);
            prop_assert_eq!(s.finish(), whole);
        }

        #[test]
        fn any_split_never_panics(a in proptest::collection::vec(any::<u8>(), 0..20), b in proptest::collection::vec(any::<u8>(), 0..20), c in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut s = SipHash24::new(1, 2);
            s.update(&a);
            s.update(&b);
            s.update(&c);
            let _ = s.finish();
        }
    }
}
