// SPDX-License-Identifier: GPL-2.0
//! Allocation information: `struct bch_alloc_v4`
//! (`fs/bcachefs/alloc_background_format.h`), `struct bch_backpointer`
//! (`bcachefs_format.h`) and `struct bch_lru` (`lru_format.h`), checked
//! and printed as `alloc_background.c`, `backpointers.c` and `lru.c` do.
//!
//! `alloc_v4` (key `dev:bucket:0` in the alloc btree):
//!
//! | offset | field |
//! |-------:|-------|
//! | 0 | journal_seq (u64) |
//! | 8 | flags (u32): need_discard 0, need_inc_gen 1, backpointers_start 2-7 (u64s), nr_backpointers 8-13 |
//! | 12 | gen, oldest_gen, data_type, stripe_redundancy (u8 each) |
//! | 16 | dirty_sectors, cached_sectors (u32, 512-byte sectors) |
//! | 24 | io_time\[read\], io_time\[write\] (u64) |
//! | 40 | stripe (u32), nr_external_backpointers (u32) |
//! | 48 | _fragmentation_lru (u64, obsolete) |
//! | 56 | stripe_sectors (u32), pad (u32) |
//!
//! Older values stop at 48 bytes (`BCH_ALLOC_V4_U64s_V0`); fields at or
//! past `backpointers_start` read as zero, as `bch2_alloc_to_v4()` does.
//!
//! `backpointer` (key `dev:(bucket_sector << 10 | offset):0`, 32 bytes):
//! btree_id, level, data_type (u8), bucket_offset (40 bits), bucket_len
//! (u32), pos (bpos).

use core::fmt;

use super::{fmt_data_type, FsCtx, ValError};
use crate::format::bkey::{Bkey, BtreeIdName, BTREE_MAX_DEPTH};
use crate::format::bpos::Bpos;

/// Size of `struct bch_alloc_v4`, bytes.
pub const ALLOC_V4_BYTES: usize = 64;
/// `BCH_ALLOC_V4_U64s_V0`.
pub const ALLOC_V4_U64S_V0: u64 = 6;
/// `BCH_ALLOC_V4_U64s`.
pub const ALLOC_V4_U64S: u64 = 8;
/// Size of `struct bch_backpointer`, bytes.
pub const BACKPOINTER_BYTES: usize = 32;
/// `MAX_EXTENT_COMPRESS_RATIO_SHIFT`.
pub const MAX_EXTENT_COMPRESS_RATIO_SHIFT: u32 = 10;
/// `LRU_TIME_BITS`.
pub const LRU_TIME_BITS: u32 = 48;
/// `LRU_TIME_MAX`.
pub const LRU_TIME_MAX: u64 = (1 << LRU_TIME_BITS) - 1;
/// `BUCKET_GC_GEN_MAX`.
pub const BUCKET_GC_GEN_MAX: u8 = 96;

/// Data types (`enum bch_data_type`).
pub mod data_type {
    /// `BCH_DATA_free`.
    pub const FREE: u8 = 0;
    /// `BCH_DATA_sb`.
    pub const SB: u8 = 1;
    /// `BCH_DATA_journal`.
    pub const JOURNAL: u8 = 2;
    /// `BCH_DATA_btree`.
    pub const BTREE: u8 = 3;
    /// `BCH_DATA_user`.
    pub const USER: u8 = 4;
    /// `BCH_DATA_cached`.
    pub const CACHED: u8 = 5;
    /// `BCH_DATA_parity`.
    pub const PARITY: u8 = 6;
    /// `BCH_DATA_stripe`.
    pub const STRIPE: u8 = 7;
    /// `BCH_DATA_need_gc_gens`.
    pub const NEED_GC_GENS: u8 = 8;
    /// `BCH_DATA_need_discard`.
    pub const NEED_DISCARD: u8 = 9;
    /// `BCH_DATA_unstriped`: only an accounting counter (dirty sectors of
    /// stripe buckets).
    pub const UNSTRIPED: u8 = 10;
    /// `BCH_DATA_NR`.
    pub const NR: u8 = 11;
}

/// An `alloc_v4` value, decoded (`struct bch_alloc_v4`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocV4 {
    /// Journal sequence number of the last update.
    pub journal_seq: u64,
    /// Flags (see the module table).
    pub flags: u32,
    /// Bucket generation.
    pub gen: u8,
    /// Oldest generation pointers may still have.
    pub oldest_gen: u8,
    /// Data type ([`data_type`]).
    pub data_type: u8,
    /// Stripe redundancy.
    pub stripe_redundancy: u8,
    /// Dirty sectors.
    pub dirty_sectors: u32,
    /// Cached sectors.
    pub cached_sectors: u32,
    /// Last read and write times (the IO clocks, in sectors).
    pub io_time: [u64; 2],
    /// Stripe index.
    pub stripe: u32,
    /// Backpointers stored outside the key (obsolete).
    pub nr_external_backpointers: u32,
    /// Obsolete.
    pub fragmentation_lru: u64,
    /// Sectors in a stripe.
    pub stripe_sectors: u32,
}

fn rd(v: &[u8], at: usize, n: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = v.get(at..at + n) {
        b[..n].copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

impl AllocV4 {
    /// `BCH_ALLOC_V4_NEED_DISCARD`.
    pub fn need_discard(&self) -> u32 {
        self.flags & 1
    }

    /// `BCH_ALLOC_V4_NEED_INC_GEN`.
    pub fn need_inc_gen(&self) -> u32 {
        (self.flags >> 1) & 1
    }

    /// `BCH_ALLOC_V4_BACKPOINTERS_START`, in u64s.
    pub fn backpointers_start(&self) -> u32 {
        (self.flags >> 2) & 0x3f
    }

    /// `BCH_ALLOC_V4_NR_BACKPOINTERS`.
    pub fn nr_backpointers(&self) -> u32 {
        (self.flags >> 8) & 0x3f
    }

    /// Decodes a value: bytes past the value, or at or past
    /// `backpointers_start` (6 u64s when 0), read as zero
    /// (`bch2_alloc_to_v4()`; the validator's `bkey_val_copy()` only
    /// zero-fills past the value).
    pub fn decode(v: &[u8]) -> AllocV4 {
        let flags = rd(v, 8, 4) as u32;
        let bp_start = ((flags >> 2) & 0x3f) as usize * 8;
        let end = v.len().min(if bp_start != 0 { bp_start } else { ALLOC_V4_U64S_V0 as usize * 8 });
        let mut a = AllocV4::decode_raw(&v[..end]);
        a.flags = flags;
        a
    }

    /// Decodes a value as `bkey_val_copy()` copies it: bytes past the
    /// value read as zero, nothing else is cut.
    pub fn decode_raw(v: &[u8]) -> AllocV4 {
        let v = &v[..v.len().min(ALLOC_V4_BYTES)];
        AllocV4 {
            journal_seq: rd(v, 0, 8),
            flags: rd(v, 8, 4) as u32,
            gen: rd(v, 12, 1) as u8,
            oldest_gen: rd(v, 13, 1) as u8,
            data_type: rd(v, 14, 1) as u8,
            stripe_redundancy: rd(v, 15, 1) as u8,
            dirty_sectors: rd(v, 16, 4) as u32,
            cached_sectors: rd(v, 20, 4) as u32,
            io_time: [rd(v, 24, 8), rd(v, 32, 8)],
            stripe: rd(v, 40, 4) as u32,
            nr_external_backpointers: rd(v, 44, 4) as u32,
            fragmentation_lru: rd(v, 48, 8),
            stripe_sectors: rd(v, 56, 4) as u32,
        }
    }

    /// Encodes as the 64-byte current form.
    pub fn encode(&self) -> [u8; ALLOC_V4_BYTES] {
        let mut b = [0u8; ALLOC_V4_BYTES];
        b[0..8].copy_from_slice(&self.journal_seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12] = self.gen;
        b[13] = self.oldest_gen;
        b[14] = self.data_type;
        b[15] = self.stripe_redundancy;
        b[16..20].copy_from_slice(&self.dirty_sectors.to_le_bytes());
        b[20..24].copy_from_slice(&self.cached_sectors.to_le_bytes());
        b[24..32].copy_from_slice(&self.io_time[0].to_le_bytes());
        b[32..40].copy_from_slice(&self.io_time[1].to_le_bytes());
        b[40..44].copy_from_slice(&self.stripe.to_le_bytes());
        b[44..48].copy_from_slice(&self.nr_external_backpointers.to_le_bytes());
        b[48..56].copy_from_slice(&self.fragmentation_lru.to_le_bytes());
        b[56..60].copy_from_slice(&self.stripe_sectors.to_le_bytes());
        b
    }

    /// `bch2_bucket_sectors_dirty()`.
    pub fn sectors_dirty(&self) -> u64 {
        u64::from(self.stripe_sectors) + u64::from(self.dirty_sectors)
    }

    /// `alloc_data_type()`: the data type the counters imply.
    pub fn implied_data_type(&self, dt: u8) -> u8 {
        if self.stripe != 0 {
            return if dt == data_type::PARITY { dt } else { data_type::STRIPE };
        }
        if self.sectors_dirty() != 0 {
            return dt;
        }
        if self.cached_sectors != 0 {
            return data_type::CACHED;
        }
        if self.need_discard() != 0 {
            return data_type::NEED_DISCARD;
        }
        if self.gen.wrapping_sub(self.oldest_gen) >= BUCKET_GC_GEN_MAX {
            return data_type::NEED_GC_GENS;
        }
        data_type::FREE
    }

    /// `alloc_lru_idx_fragmentation()` for a device with `bucket_size`
    /// sectors per bucket.
    pub fn fragmentation(&self, bucket_size: u32) -> u64 {
        let bs = u64::from(bucket_size);
        if self.data_type >= data_type::NR || bs == 0 {
            return 0;
        }
        let movable = matches!(self.data_type, data_type::BTREE | data_type::USER | data_type::STRIPE);
        let sectors = if self.data_type == data_type::CACHED {
            u64::from(self.cached_sectors)
        } else {
            self.sectors_dirty()
        };
        if !movable || sectors == 0 || sectors >= bs {
            return 0;
        }
        self.sectors_dirty().min(bs) * (1 << 31) / bs
    }
}

/// `bch2_alloc_v4_validate()`.
pub fn validate_alloc_v4(k: &Bkey, v: &[u8]) -> Result<(), ValError> {
    let a = AllocV4::decode_raw(v);
    let start = if a.backpointers_start() != 0 { u64::from(a.backpointers_start()) } else { ALLOC_V4_U64S_V0 };
    let u64s = start + u64::from(a.nr_backpointers()) * (BACKPOINTER_BYTES as u64 / 8);
    if u64s > k.val_u64s() as u64 {
        return Err(ValError::AllocValSize { want: u64s, have: k.val_u64s() as u64 });
    }
    if a.backpointers_start() == 0 && a.nr_backpointers() != 0 {
        return Err(ValError::AllocBackpointersStart);
    }
    let implied = a.implied_data_type(a.data_type);
    if implied != a.data_type {
        return Err(ValError::AllocDataType { got: a.data_type, want: implied });
    }
    for (i, &t) in a.io_time.iter().enumerate() {
        if t > LRU_TIME_MAX {
            return Err(ValError::AllocIoTime { rw: i as u8, time: t });
        }
    }
    let stripe_sectors = if a.backpointers_start() as usize * 8 > 56 { a.stripe_sectors } else { 0 };
    let empty_has_data = stripe_sectors != 0 || a.dirty_sectors != 0 || a.cached_sectors != 0 || a.stripe != 0;
    let cached_bad = a.cached_sectors == 0 || a.dirty_sectors != 0 || stripe_sectors != 0 || a.stripe != 0;
    match a.data_type {
        data_type::FREE | data_type::NEED_GC_GENS | data_type::NEED_DISCARD if empty_has_data => {
            return Err(ValError::AllocEmptyButHaveData);
        }
        data_type::SB | data_type::JOURNAL | data_type::BTREE | data_type::USER | data_type::PARITY
            if a.dirty_sectors == 0 && stripe_sectors == 0 =>
        {
            return Err(ValError::AllocDirtySectorsZero(a.data_type));
        }
        data_type::CACHED if cached_bad => return Err(ValError::AllocCachedInconsistent),
        _ => {}
    }
    Ok(())
}

/// `bch2_alloc_to_text()` for `alloc_v4`, as it appears after `": "`: a
/// newline, lines indented by two, and a trailing newline.
pub fn fmt_alloc_v4(f: &mut dyn fmt::Write, k: &Bkey, v: &[u8], ctx: Option<&FsCtx<'_>>) -> fmt::Result {
    let a = AllocV4::decode(v);
    write!(f, "\n  gen {} oldest_gen {} data_type ", a.gen, a.oldest_gen)?;
    fmt_data_type(f, a.data_type)?;
    write!(
        f,
        "\n  journal_seq       {}\n  need_discard      {}\n  need_inc_gen      {}\n  dirty_sectors     {}\n  stripe_sectors    {}\n  cached_sectors    {}\n  stripe            {}\n  stripe_redundancy {}\n  io_time[READ]     {}\n  io_time[WRITE]    {}\n",
        a.journal_seq,
        a.need_discard(),
        a.need_inc_gen(),
        a.dirty_sectors,
        a.stripe_sectors,
        a.cached_sectors,
        a.stripe,
        a.stripe_redundancy,
        a.io_time[0],
        a.io_time[1],
    )?;
    let dev = ctx.and_then(|c| c.dev(k.p.inode.try_into().unwrap_or(u8::MAX)));
    if let Some(d) = dev.filter(|d| k.p.offset >= d.first_bucket && k.p.offset < d.nbuckets) {
        writeln!(f, "  fragmentation     {}", a.fragmentation(d.bucket_size))?;
    }
    // C prints the value with backpointers_start normalised to the
    // current size (`bch2_alloc_to_v4()`).
    writeln!(f, "  bp_start          {}", ALLOC_V4_U64S)
}

/// A backpointer value (`struct bch_backpointer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backpointer {
    /// Btree of the key pointing into the bucket.
    pub btree_id: u8,
    /// Level of that key.
    pub level: u8,
    /// Data type.
    pub data_type: u8,
    /// Offset in the bucket, sectors, shifted left by 10 plus a sub-sector
    /// part for compressed data (40 bits).
    pub bucket_offset: u64,
    /// Length on disk, sectors.
    pub bucket_len: u32,
    /// Position of the key.
    pub pos: Bpos,
}

impl Backpointer {
    /// Decodes the 32-byte value; `None` if shorter.
    pub fn decode(v: &[u8]) -> Option<Backpointer> {
        let b = v.get(..BACKPOINTER_BYTES)?;
        Some(Backpointer {
            btree_id: b[0],
            level: b[1],
            data_type: b[2],
            bucket_offset: rd(b, 3, 5),
            bucket_len: rd(b, 8, 4) as u32,
            pos: Bpos::read(b, 12)?,
        })
    }

    /// Encodes as 32 bytes.
    pub fn encode(&self) -> [u8; BACKPOINTER_BYTES] {
        let mut b = [0u8; BACKPOINTER_BYTES];
        b[0] = self.btree_id;
        b[1] = self.level;
        b[2] = self.data_type;
        b[3..8].copy_from_slice(&self.bucket_offset.to_le_bytes()[..5]);
        b[8..12].copy_from_slice(&self.bucket_len.to_le_bytes());
        b[12..32].copy_from_slice(&self.pos.to_bytes());
        b
    }
}

/// `bch2_backpointer_validate()` without the device-dependent position
/// check, which needs the bucket size: done when `ctx` knows the device.
pub fn validate_backpointer(k: &Bkey, v: &[u8], ctx: &FsCtx<'_>) -> Result<(), ValError> {
    let bp = Backpointer::decode(v).ok_or(ValError::WrongType)?;
    if bp.level > BTREE_MAX_DEPTH {
        return Err(ValError::BackpointerLevel(bp.level));
    }
    let Some(dev) = u8::try_from(k.p.inode).ok().and_then(|d| ctx.dev(d)) else {
        return Ok(());
    };
    let bs = u64::from(dev.bucket_size.max(1));
    let bucket = (k.p.offset >> MAX_EXTENT_COMPRESS_RATIO_SHIFT) / bs;
    let expect = (bucket * bs) << MAX_EXTENT_COMPRESS_RATIO_SHIFT;
    if (bp.bucket_offset >> MAX_EXTENT_COMPRESS_RATIO_SHIFT) >= bs
        || expect.checked_add(bp.bucket_offset) != Some(k.p.offset)
    {
        return Err(ValError::BackpointerBucketOffset);
    }
    Ok(())
}

/// `bch2_backpointer_k_to_text()`.
pub fn fmt_backpointer(f: &mut dyn fmt::Write, k: &Bkey, v: &[u8], ctx: Option<&FsCtx<'_>>) -> fmt::Result {
    let Some(bp) = Backpointer::decode(v) else {
        return f.write_str("(value too small)");
    };
    if let Some(d) = ctx.and_then(|c| c.dev(u8::try_from(k.p.inode).unwrap_or(u8::MAX))) {
        let bucket = (k.p.offset >> MAX_EXTENT_COMPRESS_RATIO_SHIFT) / u64::from(d.bucket_size.max(1));
        write!(f, "bucket={} ", Bpos::pos(k.p.inode, bucket))?;
    }
    write!(
        f,
        "btree={} l={} offset={}:{} len={} pos={}",
        BtreeIdName(u32::from(bp.btree_id)),
        bp.level,
        bp.bucket_offset >> MAX_EXTENT_COMPRESS_RATIO_SHIFT,
        bp.bucket_offset & ((1 << MAX_EXTENT_COMPRESS_RATIO_SHIFT) - 1),
        bp.bucket_len,
        bp.pos
    )
}

/// `bch2_lru_validate()`: an lru entry at time 0 is invalid.
pub fn validate_lru(k: &Bkey) -> Result<(), ValError> {
    if k.p.inode & LRU_TIME_MAX == 0 {
        return Err(ValError::LruTimeZero);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bkey::KeyType;
    use proptest::prelude::*;
    use std::string::String;

    #[test]
    fn alloc_round_trip_and_checks() {
        let a = AllocV4 {
            gen: 3,
            data_type: data_type::USER,
            dirty_sectors: 128,
            flags: (ALLOC_V4_U64S as u32) << 2,
            ..AllocV4::default()
        };
        let b = a.encode();
        assert_eq!(AllocV4::decode(&b), a);
        let k = Bkey::new(KeyType::AllocV4, Bpos::new(0, 10, 0), 8);
        validate_alloc_v4(&k, &b).unwrap();
        let mut s = String::new();
        fmt_alloc_v4(&mut s, &k, &b, None).unwrap();
        assert!(s.starts_with("\n  gen 3 oldest_gen 0 data_type user\n  journal_seq       0\n"));
        assert!(s.ends_with("  bp_start          8\n"));
        let mut bad = a;
        bad.dirty_sectors = 0;
        assert_eq!(
            validate_alloc_v4(&k, &bad.encode()),
            Err(ValError::AllocDataType { got: data_type::USER, want: data_type::FREE })
        );
        let mut bad = a;
        bad.io_time[1] = 1 << 50;
        assert_eq!(validate_alloc_v4(&k, &bad.encode()), Err(ValError::AllocIoTime { rw: 1, time: 1 << 50 }));
        let short = Bkey::new(KeyType::AllocV4, Bpos::new(0, 10, 0), 6);
        assert_eq!(
            validate_alloc_v4(&short, &b[..48]),
            Err(ValError::AllocValSize { want: 8, have: 6 })
        );
        // A v0 value: 48 bytes, backpointers_start 0.
        let mut v0 = a;
        v0.flags = 0;
        validate_alloc_v4(&short, &v0.encode()[..48]).unwrap();
    }

    #[test]
    fn backpointer_round_trip_and_text() {
        let bp = Backpointer {
            btree_id: 0,
            level: 0,
            data_type: data_type::USER,
            bucket_offset: 5 << 10,
            bucket_len: 8,
            pos: Bpos::new(4096, 16, u32::MAX),
        };
        let b = bp.encode();
        assert_eq!(Backpointer::decode(&b), Some(bp));
        let k = Bkey::new(KeyType::Backpointer, Bpos::new(0, (1024 * 3 + 5) << 10, 0), 4);
        let mut s = String::new();
        fmt_backpointer(&mut s, &k, &b, None).unwrap();
        assert_eq!(s, "btree=extents l=0 offset=5:0 len=8 pos=4096:16:U32_MAX");
        let devs = [Some(super::super::DevInfo { bucket_size: 1024, first_bucket: 0, nbuckets: 100, durability: 1, failed: false })];
        let ctx = FsCtx { devs: &devs, ..FsCtx::default() };
        validate_backpointer(&k, &b, &ctx).unwrap();
        let mut s = String::new();
        fmt_backpointer(&mut s, &k, &b, Some(&ctx)).unwrap();
        assert!(s.starts_with("bucket=0:3:0 btree=extents"), "{s}");
        let wrong = Bkey::new(KeyType::Backpointer, Bpos::new(0, (1024 * 3 + 6) << 10, 0), 4);
        assert_eq!(validate_backpointer(&wrong, &b, &ctx), Err(ValError::BackpointerBucketOffset));
        let mut deep = bp;
        deep.level = 5;
        assert_eq!(validate_backpointer(&k, &deep.encode(), &ctx), Err(ValError::BackpointerLevel(5)));
    }

    proptest! {
        #[test]
        fn arbitrary_values_never_panic(v in proptest::collection::vec(any::<u8>(), 0..80), p in any::<(u64, u64)>()) {
            let k = Bkey::new(KeyType::AllocV4, Bpos::new(p.0, p.1, 0), v.len() / 8);
            let _ = validate_alloc_v4(&k, &v);
            let mut s = String::new();
            let _ = fmt_alloc_v4(&mut s, &k, &v, None);
            let _ = fmt_backpointer(&mut s, &k, &v, None);
            let devs = [Some(super::super::DevInfo { bucket_size: 0, first_bucket: 0, nbuckets: u64::MAX, durability: 1, failed: false })];
            let ctx = FsCtx { devs: &devs, ..FsCtx::default() };
            let _ = validate_backpointer(&k, &v, &ctx);
            let _ = fmt_alloc_v4(&mut s, &k, &v, Some(&ctx));
        }
    }
}
