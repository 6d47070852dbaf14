// SPDX-License-Identifier: GPL-2.0
//! The allocator's on-disk side: bucket state (`alloc_v4`) and what is
//! derived from it, and the triggers that keep it in step with the keys
//! pointing into buckets.
//!
//! - [`background`]: `alloc_background.c`: freespace, need_discard, lru,
//!   bucket_gens, `dev_data_type` accounting, the alloc trigger;
//! - [`buckets`]: `buckets.c`: the extent, btree pointer, reservation and
//!   inode triggers and superblock/journal bucket marking;
//! - [`foreground`]: `alloc_foreground.c`: open buckets, write points,
//!   watermarks and reserves, discards;
//! - [`source`]: what the foreground allocator reads of the btrees
//!   ([`source::FreespaceSource`]);
//! - [`adapters`]: the allocator as the btree's `BtreeNodeAlloc` and
//!   `fs_common`'s `DataAlloc`.
//!
//! Every trigger is a pure function of (old key, new key) and a small
//! context, adding what C's trigger would update to a [`DerivedUpdates`].
//! The btree commit applies them; GC and fsck (`crate::gc`) call the same
//! functions with no old key to recompute everything from scratch.

pub mod adapters;
pub mod background;
pub mod buckets;
pub mod foreground;
pub mod source;

use core::fmt;

use crate::accounting::AccountingDeltas;
use crate::errcode::Errno;
use crate::format::bkey::{Bkey, BkeyI, BtreeId, BtreeIdName, KeyType};
use crate::format::bpos::Bpos;
use crate::format::val::alloc::Backpointer;
use crate::platform::Vec;

/// A `KEY_TYPE_set` key to add or delete (`bch2_btree_bit_mod()`): lru,
/// need_discard, rebalance_work and deleted_inodes entries at `pos`; for
/// `freespace` (an extents btree) `pos` is the start of the size-1 key,
/// which therefore ends at `pos.offset + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitUpdate {
    /// Btree.
    pub btree: BtreeId,
    /// Position (start, for freespace).
    pub pos: Bpos,
    /// Set (insert a `set` key) or clear (delete it).
    pub set: bool,
}

/// A pointer's reference to a bucket, added or dropped
/// (`bch2_trigger_pointer()` on the bucket's `alloc_v4`): apply it with
/// [`buckets::mark_pointer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketRef {
    /// dev:bucket.
    pub bucket: Bpos,
    /// The pointer's gen.
    pub ptr_gen: u8,
    /// A cached pointer: counts in `cached_sectors`.
    pub cached: bool,
    /// An erasure-coded pointer: counts in `stripe_sectors`.
    pub has_ec: bool,
    /// `bch2_bkey_ptr_data_type()`.
    pub data_type: u8,
    /// Disk sectors, positive when the pointer is inserted.
    pub sectors: i64,
    /// Position of the pointing key, for error messages.
    pub key_pos: Bpos,
}

/// A superblock or journal bucket's marking (`bch2_mark_metadata_bucket()`):
/// `data_type` sb or journal, `sectors` of it in the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaMark {
    /// dev:bucket.
    pub bucket: Bpos,
    /// `BCH_DATA_sb` or `BCH_DATA_journal`.
    pub data_type: u8,
    /// Sectors.
    pub sectors: u32,
}

/// A backpointer to insert or delete, at `pos` (`bucket_pos_to_bp()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpUpdate {
    /// Position in the backpointers btree.
    pub pos: Bpos,
    /// The value.
    pub bp: Backpointer,
    /// Insert (or delete).
    pub insert: bool,
}

/// A reflink pointer's reference to the indirect extents covering
/// `[start, end)` of the reflink btree (`__trigger_reflink_p()`): each
/// `reflink_v` or `indirect_inline_data` key overlapping the range gets
/// `delta` (+1 inserted, -1 overwritten) added to its refcount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReflinkRef {
    /// First indirect sector referenced (`idx - front_pad`).
    pub start: u64,
    /// One past the last (`idx + size + back_pad`).
    pub end: u64,
    /// +1 or -1.
    pub delta: i64,
    /// Position of the `reflink_p` key.
    pub key_pos: Bpos,
}

/// Everything triggers derive from key changes, in the order C's triggers
/// issue it.  Accounting is summed per counter; the rest are lists.
pub struct DerivedUpdates {
    /// Pointer references to apply to buckets' `alloc_v4`.
    pub buckets: Vec<BucketRef>,
    /// Superblock and journal bucket marks.
    pub meta: Vec<MetaMark>,
    /// Backpointer inserts and deletes.
    pub backpointers: Vec<BpUpdate>,
    /// Accounting counter deltas.
    pub accounting: AccountingDeltas,
    /// `set` keys to add or delete (freespace, need_discard, lru,
    /// rebalance_work).
    pub bits: Vec<BitUpdate>,
    /// New bucket generations: (dev:bucket, gen), for `bucket_gens`.
    pub bucket_gens: Vec<(Bpos, u8)>,
    /// Refcount changes of indirect extents.
    pub reflink: Vec<ReflinkRef>,
}

impl DerivedUpdates {
    /// Nothing yet.
    pub fn new() -> Self {
        DerivedUpdates {
            buckets: Vec::new(),
            meta: Vec::new(),
            backpointers: Vec::new(),
            accounting: AccountingDeltas::new(),
            bits: Vec::new(),
            bucket_gens: Vec::new(),
            reflink: Vec::new(),
        }
    }

    /// Adds a [`BitUpdate`].
    ///
    /// Errors: `ENOMEM`.
    pub fn bit(&mut self, btree: BtreeId, pos: Bpos, set: bool) -> Result<(), Errno> {
        self.bits.push(BitUpdate { btree, pos, set })?;
        Ok(())
    }
}

impl BitUpdate {
    /// The key to insert (`bch2_btree_bit_mod()`): a `set` key, or a
    /// deleted key to remove it; in `freespace` (extents) both have size 1
    /// and end one past `pos`.
    ///
    /// Errors: `EINVAL` for a freespace position at the end of the range.
    pub fn to_key(&self) -> Result<BkeyI, Errno> {
        let ty = if self.set { KeyType::Set } else { KeyType::Deleted };
        let mut k = Bkey::new(ty, self.pos, 0);
        if self.btree == BtreeId::Freespace {
            k.p.offset = self.pos.offset.checked_add(1).ok_or(Errno::EINVAL)?;
            k.size = 1;
        }
        Ok(BkeyI { k, v: Vec::new() })
    }
}

impl BpUpdate {
    /// The backpointers btree key (`bch2_bucket_backpointer_mod()`): the
    /// 32-byte `backpointer` value, or a deleted key for a delete.
    ///
    /// Errors: `ENOMEM`.
    pub fn to_key(&self) -> Result<BkeyI, Errno> {
        if !self.insert {
            return Ok(BkeyI { k: Bkey::new(KeyType::Deleted, self.pos, 0), v: Vec::new() });
        }
        let mut v = Vec::new();
        v.extend_from_slice(&self.bp.encode())?;
        Ok(BkeyI { k: Bkey::new(KeyType::Backpointer, self.pos, v.len() / 8), v })
    }
}

/// The `alloc_v4` key of `bucket` as C 6.12 writes it (64-byte value,
/// `backpointers_start` 8; [`background::alloc_v4_encode_c`]).
///
/// Errors: `ENOMEM`.
pub fn alloc_v4_key(bucket: Bpos, a: &crate::format::val::alloc::AllocV4) -> Result<BkeyI, Errno> {
    let mut v = Vec::new();
    v.extend_from_slice(&background::alloc_v4_encode_c(a))?;
    Ok(BkeyI { k: Bkey::new(KeyType::AllocV4, bucket, v.len() / 8), v })
}

/// The `bucket_gens` key at `pos` (dev:(bucket >> 8)).
///
/// Errors: `ENOMEM`.
pub fn bucket_gens_key(pos: Bpos, g: &background::BucketGens) -> Result<BkeyI, Errno> {
    let mut v = Vec::new();
    v.extend_from_slice(&g.encode())?;
    Ok(BkeyI { k: Bkey::new(KeyType::BucketGens, pos, v.len() / 8), v })
}

impl Default for DerivedUpdates {
    fn default() -> Self {
        DerivedUpdates::new()
    }
}

impl fmt::Display for BitUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", if self.set { "set" } else { "clear" }, BtreeIdName(self.btree as u32), self.pos)
    }
}

impl fmt::Display for BucketRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bucket {} ptr gen {} ", self.bucket, self.ptr_gen)?;
        crate::format::val::fmt_data_type(f, self.data_type)?;
        write!(
            f,
            "{}{} {:+} sectors (key {})",
            if self.cached { " cached" } else { "" },
            if self.has_ec { " ec" } else { "" },
            self.sectors,
            self.key_pos
        )
    }
}

impl fmt::Display for DerivedUpdates {
    /// Every update, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.buckets.iter() {
            writeln!(f, "{b}")?;
        }
        for m in self.meta.iter() {
            write!(f, "bucket {} ", m.bucket)?;
            crate::format::val::fmt_data_type(f, m.data_type)?;
            writeln!(f, " {} sectors", m.sectors)?;
        }
        for b in self.backpointers.iter() {
            write!(f, "{} backpointer {} ", if b.insert { "insert" } else { "delete" }, b.pos)?;
            let v = b.bp.encode();
            let k = crate::format::bkey::Bkey::new(crate::format::bkey::KeyType::Backpointer, b.pos, 4);
            crate::format::val::alloc::fmt_backpointer(f, &k, &v, None)?;
            writeln!(f)?;
        }
        for b in self.bits.iter() {
            writeln!(f, "{b}")?;
        }
        for (b, g) in self.bucket_gens.iter() {
            writeln!(f, "bucket {b} gen {g}")?;
        }
        for r in self.reflink.iter() {
            writeln!(f, "reflink {}-{} refcount {:+} (reflink_p {})", r.start, r.end, r.delta, r.key_pos)?;
        }
        write!(f, "{}", self.accounting)
    }
}

#[cfg(test)]
mod tests {
    use super::background::{lru_pos, BucketGens, LRU_FRAGMENTATION_START};
    use super::*;

    #[test]
    fn keys_as_c_writes_them() {
        let f = BitUpdate { btree: BtreeId::Freespace, pos: Bpos::pos(0, 5 | (1 << 56)), set: true }.to_key().unwrap();
        assert_eq!((f.k.key_type, f.k.p, f.k.size, f.k.start_offset()), (KeyType::Set as u8, Bpos::pos(0, 6 | (1 << 56)), 1, 5 | (1 << 56)));
        let l = BitUpdate { btree: BtreeId::Lru, pos: lru_pos(LRU_FRAGMENTATION_START, 7, 99), set: false }.to_key().unwrap();
        assert_eq!((l.k.key_type, l.k.p), (KeyType::Deleted as u8, Bpos::pos((0xffff << 48) | 99, 7)));
        let mut g = BucketGens::default();
        g.gens[3] = 9;
        let k = bucket_gens_key(Bpos::pos(0, 1), &g).unwrap();
        assert_eq!((k.k.val_u64s(), k.v[3]), (32, 9));
        assert_eq!(BucketGens::decode(&k.v), g);
        let a = alloc_v4_key(Bpos::pos(0, 9), &Default::default()).unwrap();
        assert_eq!((a.k.val_u64s(), a.v[8]), (8, 8 << 2));
        let mut s = std::string::String::new();
        use core::fmt::Write;
        write!(s, "{}", BitUpdate { btree: BtreeId::NeedDiscard, pos: Bpos::pos(0, 3), set: true }).unwrap();
        assert_eq!(s, "set need_discard 0:3:0");
    }
}
