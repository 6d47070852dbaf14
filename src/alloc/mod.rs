// SPDX-License-Identifier: GPL-2.0
//! The allocator's on-disk side: bucket state (`alloc_v4`) and what is
//! derived from it, and the triggers that keep it in step with the keys
//! pointing into buckets.
//!
//! - [`background`]: `alloc_background.c`: freespace, need_discard, lru,
//!   bucket_gens, `dev_data_type` accounting, the alloc trigger;
//! - [`buckets`]: `buckets.c`: the extent, btree pointer, reservation and
//!   inode triggers and superblock/journal bucket marking.
//!
//! Every trigger is a pure function of (old key, new key) and a small
//! context, adding what C's trigger would update to a [`DerivedUpdates`].
//! The btree commit applies them; GC and fsck (`crate::gc`) call the same
//! functions with no old key to recompute everything from scratch.

pub mod background;
pub mod buckets;

use core::fmt;

use crate::accounting::AccountingDeltas;
use crate::errcode::Errno;
use crate::format::bkey::{BtreeId, BtreeIdName};
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
        write!(f, "{}", self.accounting)
    }
}
