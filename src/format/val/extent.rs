// SPDX-License-Identifier: GPL-2.0
//! Extent values and btree pointers: `fs/bcachefs/extents_format.h`,
//! checked as `bch2_bkey_ptrs_validate()` and printed as
//! `bch2_bkey_ptrs_to_text()` in `extents.c` do.
//!
//! A value is a run of entries, each a whole number of u64s
//! (little-endian bit-fields, bit 0 first).  The entry type is the index
//! of the lowest set bit of the first u64:
//!
//! | type | bytes | fields (bits) |
//! |------|------:|---------------|
//! | 0 ptr | 8 | cached 1, unused 2, unwritten 3, offset 4-47 (sectors), dev 48-55, gen 56-63 |
//! | 1 crc32 | 8 | compressed_size-1 2-8, uncompressed_size-1 9-15, offset 16-22, csum_type 24-27, compression 28-31, csum 32-63 |
//! | 2 crc64 | 16 | compressed_size-1 3-11, uncompressed_size-1 12-20, offset 21-29, nonce 30-39, csum_type 40-43, compression 44-47, csum_hi 48-63; then csum_lo |
//! | 3 crc128 | 24 | compressed_size-1 4-16, uncompressed_size-1 17-29, offset 30-42, nonce 43-55, csum_type 56-59, compression 60-63; then csum (lo, hi) |
//! | 4 stripe_ptr | 8 | block 5-12, redundancy 13-16, idx 17-63 |
//! | 5 rebalance | 8 | compression 40-47, target 48-63 |
//!
//! A crc entry describes the pointers after it; a stripe_ptr entry the
//! pointer after it.  Sizes and offsets are in 512-byte sectors.

use core::fmt;

use super::{FsCtx, ValError, COMPRESSION_TYPE_NAMES};
use crate::checksum::{Csum, CsumType, CSUM_NR, CSUM_TYPE_NAMES};
use crate::format::bkey::Bkey;
use crate::format::bpos::Bpos;
use crate::format::sb_opts::COMPRESSION_OPTS;

/// Number of extent entry types (`BCH_EXTENT_ENTRY_MAX`).
pub const EXTENT_ENTRY_MAX: u32 = 6;
/// Most pointers in one key (`BCH_BKEY_PTRS_MAX`).
pub const BKEY_PTRS_MAX: usize = 16;
/// Most replicas (`BCH_REPLICAS_MAX`).
pub const REPLICAS_MAX: usize = 4;
/// Size of the fixed part of a `btree_ptr_v2` value, bytes.
pub const BTREE_PTR_V2_BYTES: usize = 40;
/// Largest `btree_ptr_v2` value, in u64s (`BKEY_BTREE_PTR_VAL_U64s_MAX`).
pub const BTREE_PTR_V2_VAL_U64S_MAX: usize = (BTREE_PTR_V2_BYTES + 8 * REPLICAS_MAX) / 8;
/// Names of the extent entry types.
pub const EXTENT_ENTRY_NAMES: [&str; 6] = ["ptr", "crc32", "crc64", "crc128", "stripe_ptr", "rebalance"];

fn bits(w: u64, lo: u32, n: u32) -> u64 {
    (w >> lo) & ((1u64 << n) - 1)
}

/// A pointer to data on a device (`struct bch_extent_ptr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtentPtr {
    /// The data is a cached copy.
    pub cached: bool,
    /// Space allocated, not yet written.
    pub unwritten: bool,
    /// Start on the device, 512-byte sectors (44 bits).
    pub offset: u64,
    /// Device index.
    pub dev: u8,
    /// Bucket generation the pointer was made for.
    pub gen: u8,
}

impl ExtentPtr {
    /// Decodes the 8-byte entry `w` (type bit 0 set).
    pub fn decode(w: u64) -> ExtentPtr {
        ExtentPtr {
            cached: bits(w, 1, 1) != 0,
            unwritten: bits(w, 3, 1) != 0,
            offset: bits(w, 4, 44),
            dev: bits(w, 48, 8) as u8,
            gen: bits(w, 56, 8) as u8,
        }
    }

    /// Encodes as an 8-byte entry; `offset` keeps its low 44 bits.
    pub fn encode(&self) -> u64 {
        1 | u64::from(self.cached) << 1
            | u64::from(self.unwritten) << 3
            | (self.offset & ((1 << 44) - 1)) << 4
            | u64::from(self.dev) << 48
            | u64::from(self.gen) << 56
    }
}

/// Which on-disk form a checksum/compression entry had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrcKind {
    /// `bch_extent_crc32`.
    Crc32,
    /// `bch_extent_crc64`.
    Crc64,
    /// `bch_extent_crc128`.
    Crc128,
}

/// A checksum/compression entry, unpacked (`struct
/// bch_extent_crc_unpacked`).  Sizes and offset in 512-byte sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtentCrc {
    /// On-disk form.
    pub kind: CrcKind,
    /// Size of the data as written.
    pub compressed_size: u32,
    /// Size of the data uncompressed.
    pub uncompressed_size: u32,
    /// Offset of the live data in the uncompressed data.
    pub offset: u32,
    /// Nonce (encryption only; 0 for crc32).
    pub nonce: u32,
    /// Checksum type ([`CsumType`] number).
    pub csum_type: u8,
    /// Compression type ([`COMPRESSION_TYPE_NAMES`] index).
    pub compression_type: u8,
    /// Checksum of the data as written.
    pub csum: Csum,
}

impl ExtentCrc {
    /// Whether the data is compressed or otherwise encoded
    /// (`crc_is_encoded()`: compressed, or encrypted).
    pub fn is_encoded(&self) -> bool {
        let compressed = self.compression_type != 0 && self.compression_type != 5;
        let encrypted = CsumType::from_u8(self.csum_type).is_some_and(|t| t.is_encryption());
        compressed || encrypted
    }

    /// Encodes into `out` (8, 16 or 24 bytes by kind), returning the bytes
    /// used, or `None` when `out` is short or a field does not fit.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let cs = u64::from(self.compressed_size.checked_sub(1)?);
        let us = u64::from(self.uncompressed_size.checked_sub(1)?);
        let off = u64::from(self.offset);
        let nonce = u64::from(self.nonce);
        let ct = u64::from(self.csum_type);
        let comp = u64::from(self.compression_type);
        let fits = |v: u64, n: u32| v < (1u64 << n);
        if !fits(ct, 4) || !fits(comp, 4) {
            return None;
        }
        match self.kind {
            CrcKind::Crc32 => {
                if !(fits(cs, 7) && fits(us, 7) && fits(off, 7) && nonce == 0 && self.csum.lo >> 32 == 0 && self.csum.hi == 0) {
                    return None;
                }
                let w = 0b10 | cs << 2 | us << 9 | off << 16 | ct << 24 | comp << 28 | self.csum.lo << 32;
                out.get_mut(..8)?.copy_from_slice(&w.to_le_bytes());
                Some(8)
            }
            CrcKind::Crc64 => {
                if !(fits(cs, 9) && fits(us, 9) && fits(off, 9) && fits(nonce, 10) && self.csum.hi >> 16 == 0) {
                    return None;
                }
                let w = 0b100 | cs << 3 | us << 12 | off << 21 | nonce << 30 | ct << 40 | comp << 44 | self.csum.hi << 48;
                let o = out.get_mut(..16)?;
                o[..8].copy_from_slice(&w.to_le_bytes());
                o[8..].copy_from_slice(&self.csum.lo.to_le_bytes());
                Some(16)
            }
            CrcKind::Crc128 => {
                if !(fits(cs, 13) && fits(us, 13) && fits(off, 13) && fits(nonce, 13)) {
                    return None;
                }
                let w = 0b1000 | cs << 4 | us << 17 | off << 30 | nonce << 43 | ct << 56 | comp << 60;
                let o = out.get_mut(..24)?;
                o[..8].copy_from_slice(&w.to_le_bytes());
                o[8..].copy_from_slice(&self.csum.to_bytes());
                Some(24)
            }
        }
    }
}

/// Erasure-coding pointer (`struct bch_extent_stripe_ptr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripePtr {
    /// Block within the stripe.
    pub block: u8,
    /// Redundancy of the stripe.
    pub redundancy: u8,
    /// Stripe index (47 bits).
    pub idx: u64,
}

/// Rebalance options of an extent (`struct bch_extent_rebalance`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebalance {
    /// Compression option (`type | level << 4`).
    pub compression: u8,
    /// Target.
    pub target: u16,
}

/// One entry of an extent value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentEntry {
    /// A pointer.
    Ptr(ExtentPtr),
    /// Checksum and compression of the following pointers.
    Crc(ExtentCrc),
    /// Erasure-coding of the following pointer.
    StripePtr(StripePtr),
    /// Rebalance options.
    Rebalance(Rebalance),
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Some(u64::from_le_bytes(w))
}

/// Iterates over the entries of an extent value.  An entry of unknown type
/// or running past the end is an error, after which iteration stops.
#[derive(Clone)]
pub struct ExtentEntries<'a> {
    data: &'a [u8],
    off: usize,
    done: bool,
}

impl<'a> ExtentEntries<'a> {
    /// Entries of `data` (the part of the value holding entries).
    pub fn new(data: &'a [u8]) -> Self {
        ExtentEntries { data, off: 0, done: false }
    }

    /// Byte offset of the next entry.
    pub fn offset(&self) -> usize {
        self.off
    }
}

impl Iterator for ExtentEntries<'_> {
    type Item = Result<ExtentEntry, ValError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.off >= self.data.len() {
            return None;
        }
        self.done = true;
        let d = self.data;
        let at = self.off;
        let Some(w) = le64(d, at) else {
            return Some(Err(ValError::ExtentEntryPastEnd { offset: at }));
        };
        let ty = if w == 0 { EXTENT_ENTRY_MAX } else { w.trailing_zeros() };
        let (entry, len) = match ty {
            0 => (ExtentEntry::Ptr(ExtentPtr::decode(w)), 8),
            1 => {
                let crc = ExtentCrc {
                    kind: CrcKind::Crc32,
                    compressed_size: bits(w, 2, 7) as u32 + 1,
                    uncompressed_size: bits(w, 9, 7) as u32 + 1,
                    offset: bits(w, 16, 7) as u32,
                    nonce: 0,
                    csum_type: bits(w, 24, 4) as u8,
                    compression_type: bits(w, 28, 4) as u8,
                    csum: Csum { lo: w >> 32, hi: 0 },
                };
                (ExtentEntry::Crc(crc), 8)
            }
            2 => {
                let Some(lo) = le64(d, at + 8) else {
                    return Some(Err(ValError::ExtentEntryPastEnd { offset: at }));
                };
                let crc = ExtentCrc {
                    kind: CrcKind::Crc64,
                    compressed_size: bits(w, 3, 9) as u32 + 1,
                    uncompressed_size: bits(w, 12, 9) as u32 + 1,
                    offset: bits(w, 21, 9) as u32,
                    nonce: bits(w, 30, 10) as u32,
                    csum_type: bits(w, 40, 4) as u8,
                    compression_type: bits(w, 44, 4) as u8,
                    csum: Csum { lo, hi: w >> 48 },
                };
                (ExtentEntry::Crc(crc), 16)
            }
            3 => {
                let (Some(lo), Some(hi)) = (le64(d, at + 8), le64(d, at + 16)) else {
                    return Some(Err(ValError::ExtentEntryPastEnd { offset: at }));
                };
                let crc = ExtentCrc {
                    kind: CrcKind::Crc128,
                    compressed_size: bits(w, 4, 13) as u32 + 1,
                    uncompressed_size: bits(w, 17, 13) as u32 + 1,
                    offset: bits(w, 30, 13) as u32,
                    nonce: bits(w, 43, 13) as u32,
                    csum_type: bits(w, 56, 4) as u8,
                    compression_type: bits(w, 60, 4) as u8,
                    csum: Csum { lo, hi },
                };
                (ExtentEntry::Crc(crc), 24)
            }
            4 => {
                let s = StripePtr {
                    block: bits(w, 5, 8) as u8,
                    redundancy: bits(w, 13, 4) as u8,
                    idx: bits(w, 17, 47),
                };
                (ExtentEntry::StripePtr(s), 8)
            }
            5 => {
                let r = Rebalance { compression: bits(w, 40, 8) as u8, target: bits(w, 48, 16) as u16 };
                (ExtentEntry::Rebalance(r), 8)
            }
            t => return Some(Err(ValError::ExtentEntryBadType { ty: t, raw: w })),
        };
        self.off = at + len;
        self.done = false;
        Some(Ok(entry))
    }
}

/// Encodes a [`StripePtr`] entry.
pub fn encode_stripe_ptr(s: &StripePtr) -> u64 {
    0b10000 | u64::from(s.block) << 5 | u64::from(s.redundancy & 0xf) << 13 | (s.idx & ((1 << 47) - 1)) << 17
}

/// Encodes a [`Rebalance`] entry.
pub fn encode_rebalance(r: &Rebalance) -> u64 {
    0b100000 | u64::from(r.compression) << 40 | u64::from(r.target) << 48
}

/// Encodes entries into a value buffer, returning its length in bytes.
pub fn encode_entries(entries: &[ExtentEntry], out: &mut [u8]) -> Option<usize> {
    let mut at = 0;
    for e in entries {
        let n = match e {
            ExtentEntry::Ptr(p) => {
                out.get_mut(at..at + 8)?.copy_from_slice(&p.encode().to_le_bytes());
                8
            }
            ExtentEntry::Crc(c) => c.encode(out.get_mut(at..)?)?,
            ExtentEntry::StripePtr(s) => {
                out.get_mut(at..at + 8)?.copy_from_slice(&encode_stripe_ptr(s).to_le_bytes());
                8
            }
            ExtentEntry::Rebalance(r) => {
                out.get_mut(at..at + 8)?.copy_from_slice(&encode_rebalance(r).to_le_bytes());
                8
            }
        };
        at += n;
    }
    Some(at)
}

/// The fixed part of a `btree_ptr_v2` value (`struct bch_btree_ptr_v2`,
/// 40 bytes: mem_ptr u64, seq u64, sectors_written u16, flags u16, min_key
/// bpos), followed by pointers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtreePtrV2 {
    /// In-memory pointer; meaningless on disk.
    pub mem_ptr: u64,
    /// `seq` of the node's first bset, identifying the node.
    pub seq: u64,
    /// Sectors of the node written so far.
    pub sectors_written: u16,
    /// Flags: bit 0 `BTREE_PTR_RANGE_UPDATED`.
    pub flags: u16,
    /// First position the node covers.
    pub min_key: Bpos,
}

impl BtreePtrV2 {
    /// Decodes the fixed part; `None` if `v` is shorter than 40 bytes.
    pub fn decode(v: &[u8]) -> Option<BtreePtrV2> {
        let w16 = |at: usize| v.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
        Some(BtreePtrV2 {
            mem_ptr: le64(v, 0)?,
            seq: le64(v, 8)?,
            sectors_written: w16(16)?,
            flags: w16(18)?,
            min_key: Bpos::read(v, 20)?,
        })
    }

    /// Encodes the fixed part into the first 40 bytes of `out`.
    pub fn encode(&self, out: &mut [u8]) -> Option<()> {
        let o = out.get_mut(..BTREE_PTR_V2_BYTES)?;
        o[0..8].copy_from_slice(&self.mem_ptr.to_le_bytes());
        o[8..16].copy_from_slice(&self.seq.to_le_bytes());
        o[16..18].copy_from_slice(&self.sectors_written.to_le_bytes());
        o[18..20].copy_from_slice(&self.flags.to_le_bytes());
        o[20..40].copy_from_slice(&self.min_key.to_bytes());
        Some(())
    }

    /// `BTREE_PTR_RANGE_UPDATED`.
    pub fn range_updated(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// Where the entries of a key with pointers start in its value
/// (`bch2_bkey_ptrs_c()`), or `None` for types without pointers.
pub fn ptrs_start(key_type: u8) -> Option<usize> {
    use crate::format::bkey::KeyType as T;
    match crate::format::bkey::KeyType::from_u8(key_type)? {
        T::BtreePtr | T::Extent => Some(0),
        T::BtreePtrV2 => Some(BTREE_PTR_V2_BYTES),
        T::ReflinkV => Some(8),
        _ => None,
    }
}

/// `bch2_bkey_ptrs_validate()`, with the device checks of
/// `extent_ptr_validate()` when `ctx` knows the device.  `entries` is the
/// entry part of the value.
pub fn validate_ptrs(k: &Bkey, entries: &[u8], ctx: &FsCtx<'_>, write: bool) -> Result<(), ValError> {
    use crate::format::bkey::KeyType as T;
    let is_btree_ptr = k.key_type == T::BtreePtr as u8 || k.key_type == T::BtreePtrV2 as u8;
    let mut size_ondisk = if is_btree_ptr { ctx.btree_node_sectors } else { k.size };
    let mut nonce: Option<u32> = None;
    let mut nr_ptrs = 0usize;
    let (mut have_written, mut have_unwritten, mut have_ec, mut crc_since_last_ptr) =
        (false, false, false, false);
    let mut devs_seen = 0u64;
    let mut devs_seen_hi = [0u64; 3];
    for e in ExtentEntries::new(entries) {
        let e = e?;
        if is_btree_ptr && !matches!(e, ExtentEntry::Ptr(_)) {
            return Err(ValError::BtreePtrHasNonPtr);
        }
        match e {
            ExtentEntry::Ptr(p) => {
                // Duplicate devices, whatever ctx knows.
                let d = p.dev as usize;
                let (word, bit) = if d < 64 { (&mut devs_seen, d) } else { (&mut devs_seen_hi[d / 64 - 1], d % 64) };
                if *word & (1 << bit) != 0 {
                    return Err(ValError::PtrDuplicateDevice(p.dev));
                }
                *word |= 1 << bit;
                if let Some(dev) = ctx.dev(p.dev) {
                    let bs = u64::from(dev.bucket_size.max(1));
                    let bucket = p.offset / bs;
                    let boff = p.offset % bs;
                    if bucket >= dev.nbuckets {
                        return Err(ValError::PtrPastLastBucket { bucket, nbuckets: dev.nbuckets });
                    }
                    if bucket < dev.first_bucket {
                        return Err(ValError::PtrBeforeFirstBucket { bucket, first: dev.first_bucket });
                    }
                    if boff + u64::from(size_ondisk) > bs {
                        return Err(ValError::PtrSpansBuckets {
                            offset: boff as u32,
                            size: size_ondisk,
                            bucket_size: bs as u32,
                        });
                    }
                }
                if p.cached && have_ec {
                    return Err(ValError::PtrCachedAndErasureCoded);
                }
                if p.unwritten {
                    have_unwritten = true;
                } else {
                    have_written = true;
                }
                have_ec = false;
                crc_since_last_ptr = false;
                nr_ptrs += 1;
            }
            ExtentEntry::Crc(c) => {
                if u64::from(c.offset) + u64::from(k.size) > u64::from(c.uncompressed_size) {
                    return Err(ValError::CrcUncompressedTooSmall);
                }
                if c.csum_type >= CSUM_NR {
                    return Err(ValError::CrcCsumTypeUnknown(c.csum_type));
                }
                if c.compression_type as usize >= COMPRESSION_TYPE_NAMES.len() {
                    return Err(ValError::CrcCompressionTypeUnknown(c.compression_type));
                }
                if CsumType::from_u8(c.csum_type).is_some_and(|t| t.is_encryption()) {
                    let n = c.offset + c.nonce;
                    match nonce {
                        None => nonce = Some(n),
                        Some(prev) if prev != n => return Err(ValError::CrcNonceMismatch),
                        Some(_) => {}
                    }
                }
                if crc_since_last_ptr {
                    return Err(ValError::RedundantCrc);
                }
                crc_since_last_ptr = true;
                if c.is_encoded() && write && c.uncompressed_size > ctx.encoded_extent_max_sectors {
                    return Err(ValError::CrcUncompressedTooBig(c.uncompressed_size));
                }
                size_ondisk = c.compressed_size;
            }
            ExtentEntry::StripePtr(_) => {
                if have_ec {
                    return Err(ValError::RedundantStripe);
                }
                have_ec = true;
            }
            ExtentEntry::Rebalance(_) => {}
        }
    }
    if nr_ptrs == 0 {
        return Err(ValError::NoPtrs);
    }
    if nr_ptrs > BKEY_PTRS_MAX {
        return Err(ValError::TooManyPtrs(nr_ptrs));
    }
    if have_written && have_unwritten {
        return Err(ValError::WrittenAndUnwritten);
    }
    if k.key_type != T::Extent as u8 && have_unwritten {
        return Err(ValError::UnwrittenPtrs);
    }
    if crc_since_last_ptr {
        return Err(ValError::RedundantCrc);
    }
    if have_ec {
        return Err(ValError::RedundantStripe);
    }
    Ok(())
}

/// Durability of a key's pointers as `bch2_bkey_durability_safe()` counts
/// it: per non-cached pointer to a known, not failed device, the device's
/// durability, or the stripe redundancy plus one when erasure coded.
pub fn durability(entries: &[u8], ctx: &FsCtx<'_>) -> u32 {
    let mut total = 0u32;
    let mut ec: Option<StripePtr> = None;
    for e in ExtentEntries::new(entries) {
        match e {
            Ok(ExtentEntry::Ptr(p)) => {
                if let Some(dev) = ctx.dev(p.dev) {
                    if !dev.failed && !p.cached {
                        total += match ec {
                            Some(s) => u32::from(s.redundancy) + 1,
                            None => u32::from(dev.durability),
                        };
                    }
                }
                ec = None;
            }
            Ok(ExtentEntry::StripePtr(s)) => ec = Some(s),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    total
}

/// Writes a checksum type name as `bch2_prt_csum_type()` does.
pub fn fmt_csum_type(f: &mut dyn fmt::Write, t: u8) -> fmt::Result {
    match CSUM_TYPE_NAMES.get(t as usize) {
        Some(n) => f.write_str(n),
        None => write!(f, "(unknown csum_type {t})"),
    }
}

/// Writes a compression type name as `bch2_prt_compression_type()` does.
pub fn fmt_compression_type(f: &mut dyn fmt::Write, t: u8) -> fmt::Result {
    match COMPRESSION_TYPE_NAMES.get(t as usize) {
        Some(n) => f.write_str(n),
        None => write!(f, "(unknown compression_type {t})"),
    }
}

/// Writes a compression option as `bch2_compression_opt_to_text()` does:
/// `type[:level]`.
pub fn fmt_compression_opt(f: &mut dyn fmt::Write, v: u8) -> fmt::Result {
    let (ty, level) = (v & 0xf, v >> 4);
    match COMPRESSION_OPTS.get(ty as usize) {
        Some(n) => f.write_str(n)?,
        None => write!(f, "(unknown compression opt {ty})")?,
    }
    if level != 0 {
        write!(f, ":{level}")?;
    }
    Ok(())
}

/// `bch2_extent_ptr_to_text()`.
pub fn fmt_ptr(f: &mut dyn fmt::Write, p: &ExtentPtr, ctx: Option<&FsCtx<'_>>) -> fmt::Result {
    match ctx.and_then(|c| c.dev(p.dev)) {
        None => write!(
            f,
            "ptr: {}:{} gen {}{}",
            p.dev,
            p.offset,
            p.gen,
            if p.cached { " cached" } else { "" }
        ),
        Some(dev) => {
            let bs = u64::from(dev.bucket_size.max(1));
            write!(f, "ptr: {}:{}:{} gen {}", p.dev, p.offset / bs, p.offset % bs, p.gen)?;
            if dev.durability != 1 {
                write!(f, " d={}", dev.durability)?;
            }
            if p.cached {
                f.write_str(" cached")?;
            }
            if p.unwritten {
                f.write_str(" unwritten")?;
            }
            Ok(())
        }
    }
}

/// `bch2_extent_crc_unpacked_to_text()`.
pub fn fmt_crc(f: &mut dyn fmt::Write, c: &ExtentCrc) -> fmt::Result {
    write!(
        f,
        "crc: c_size {} size {} offset {} nonce {} csum ",
        c.compressed_size, c.uncompressed_size, c.offset, c.nonce
    )?;
    fmt_csum_type(f, c.csum_type)?;
    write!(f, " {:x}:{:x} ", c.csum.hi, c.csum.lo)?;
    f.write_str(" compress ")?;
    fmt_compression_type(f, c.compression_type)
}

/// `bch2_bkey_ptrs_to_text()`: `durability: N ` (with a filesystem) and
/// the entries separated by spaces.
pub fn fmt_ptrs(f: &mut dyn fmt::Write, entries: &[u8], ctx: Option<&FsCtx<'_>>) -> fmt::Result {
    if let Some(c) = ctx {
        write!(f, "durability: {} ", durability(entries, c))?;
    }
    let mut first = true;
    let mut it = ExtentEntries::new(entries);
    loop {
        let at = it.offset();
        let Some(e) = it.next() else { break };
        if !first {
            f.write_char(' ')?;
        }
        match e {
            Ok(ExtentEntry::Ptr(p)) => fmt_ptr(f, &p, ctx)?,
            Ok(ExtentEntry::Crc(c)) => fmt_crc(f, &c)?,
            Ok(ExtentEntry::StripePtr(s)) => write!(f, "ec: idx {} block {}", s.idx, s.block)?,
            Ok(ExtentEntry::Rebalance(r)) => {
                write!(f, "rebalance: target {} compression ", r.target)?;
                fmt_compression_opt(f, r.compression)?;
            }
            Err(_) => {
                let w = le64(entries, at).unwrap_or(0);
                return write!(f, "(invalid extent entry {w:016x})");
            }
        }
        first = false;
    }
    Ok(())
}

/// `bch2_btree_ptr_v2_to_text()`.
pub fn fmt_btree_ptr_v2(f: &mut dyn fmt::Write, v: &[u8], ctx: Option<&FsCtx<'_>>) -> fmt::Result {
    let Some(bp) = BtreePtrV2::decode(v) else {
        return f.write_str("(value too small)");
    };
    write!(
        f,
        "seq {:x} written {} min_key {}{} ",
        bp.seq,
        bp.sectors_written,
        if bp.range_updated() { "R " } else { "" },
        bp.min_key
    )?;
    fmt_ptrs(f, v.get(BTREE_PTR_V2_BYTES..).unwrap_or(&[]), ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bkey::KeyType;
    use crate::format::val::DevInfo;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    fn text(entries: &[u8], ctx: Option<&FsCtx<'_>>) -> String {
        let mut s = String::new();
        fmt_ptrs(&mut s, entries, ctx).unwrap();
        s
    }

    #[test]
    fn ptr_round_trip_and_text() {
        let p = ExtentPtr { cached: false, unwritten: false, offset: 123456, dev: 0, gen: 3 };
        assert_eq!(ExtentPtr::decode(p.encode()), p);
        let b = p.encode().to_le_bytes();
        assert_eq!(text(&b, None), "ptr: 0:123456 gen 3");
        let devs = [Some(DevInfo { bucket_size: 1024, first_bucket: 1, nbuckets: 1000, durability: 1, failed: false })];
        let ctx = FsCtx { devs: &devs, ..FsCtx::default() };
        assert_eq!(text(&b, Some(&ctx)), "durability: 1 ptr: 0:120:576 gen 3");
    }

    #[test]
    fn crc_entries_round_trip_and_print() {
        for kind in [CrcKind::Crc32, CrcKind::Crc64, CrcKind::Crc128] {
            let c = ExtentCrc {
                kind,
                compressed_size: 8,
                uncompressed_size: 16,
                offset: 0,
                nonce: 0,
                csum_type: 5,
                compression_type: 4,
                csum: Csum { lo: 0xdeadbeef, hi: 0 },
            };
            let mut buf = [0u8; 32];
            let n = c.encode(&mut buf).unwrap();
            let p = ExtentPtr { offset: 64, gen: 1, ..ExtentPtr::default() };
            buf[n..n + 8].copy_from_slice(&p.encode().to_le_bytes());
            let es: Vec<_> = ExtentEntries::new(&buf[..n + 8]).collect::<Result<_, _>>().unwrap();
            assert_eq!(es, vec![ExtentEntry::Crc(c), ExtentEntry::Ptr(p)]);
            assert_eq!(
                text(&buf[..n + 8], None),
                "crc: c_size 8 size 16 offset 0 nonce 0 csum crc32c 0:deadbeef  compress zstd ptr: 0:64 gen 1"
            );
            let k = Bkey { size: 16, p: Bpos::new(4096, 16, u32::MAX), ..Bkey::new(KeyType::Extent, Bpos::default(), 4) };
            validate_ptrs(&k, &buf[..n + 8], &FsCtx::default(), false).unwrap();
            // The crc alone is redundant; no pointer.
            assert_eq!(validate_ptrs(&k, &buf[..n], &FsCtx::default(), false), Err(ValError::NoPtrs));
        }
    }

    #[test]
    fn bad_entries_are_typed_errors() {
        let zero = [0u8; 8];
        assert_eq!(
            ExtentEntries::new(&zero).next(),
            Some(Err(ValError::ExtentEntryBadType { ty: 6, raw: 0 }))
        );
        // crc128 needs 24 bytes.
        let w = 0b1000u64.to_le_bytes();
        assert_eq!(
            ExtentEntries::new(&w).next(),
            Some(Err(ValError::ExtentEntryPastEnd { offset: 0 }))
        );
        assert!(text(&zero, None).starts_with("(invalid extent entry 0000000000000000"));
        let k = Bkey { size: 8, ..Bkey::new(KeyType::Extent, Bpos::new(1, 8, 1), 2) };
        let p = ExtentPtr { offset: 8, ..ExtentPtr::default() }.encode().to_le_bytes();
        let two = [p, p].concat();
        assert_eq!(validate_ptrs(&k, &two, &FsCtx::default(), false), Err(ValError::PtrDuplicateDevice(0)));
        let s = encode_stripe_ptr(&StripePtr { block: 1, redundancy: 1, idx: 5 }).to_le_bytes();
        assert_eq!(validate_ptrs(&k, &[p, s].concat(), &FsCtx::default(), false), Err(ValError::RedundantStripe));
        let bp = Bkey::new(KeyType::BtreePtr, Bpos::new(1, 8, 0), 2);
        assert_eq!(validate_ptrs(&bp, &[s, p].concat(), &FsCtx::default(), false), Err(ValError::BtreePtrHasNonPtr));
    }

    proptest! {
        #[test]
        fn arbitrary_entries_never_panic(v in proptest::collection::vec(any::<u64>(), 0..8)) {
            let b: Vec<u8> = v.iter().flat_map(|w| w.to_le_bytes()).collect();
            for e in ExtentEntries::new(&b) { let _ = e; }
            let _ = text(&b, None);
            let k = Bkey { size: 8, ..Bkey::new(KeyType::Extent, Bpos::new(1, 8, 1), v.len()) };
            let _ = validate_ptrs(&k, &b, &FsCtx::default(), true);
            let mut s = String::new();
            let _ = fmt_btree_ptr_v2(&mut s, &b, None);
        }
    }
}
