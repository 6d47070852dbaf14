// SPDX-License-Identifier: GPL-2.0
//! The in-memory btree node (`struct btree` of `btree_types.h`): its
//! header fields, its keys as one sorted array of unpacked keys, the write
//! bookkeeping (sectors written, positions changed since, journal pin) and
//! its flags, behind a six lock.
//!
//! # Access
//!
//! The mutable part ([`NodeData`]) is reached only through guards over the
//! node's [`SixLock`]: a [`NodeLock`] (read or intent) gives `&NodeData`,
//! and [`NodeLock::write`] (intent held) gives a [`NodeWrite`] with
//! `&mut NodeData` for the moment of modification, as `rust/kernel/sync/
//! lock.rs`'s `Guard` does.  The fields outside [`NodeData`] (btree,
//! level, sector, range, seq) never change once the node is published.
//!
//! # Invariants
//!
//! * `NodeData` is only read while the node's lock is held for read,
//!   intent or write, and only written while it is held for write (which
//!   implies intent, held by the same thread).
//! * `offs` is sorted by the position of the key it addresses, one key per
//!   position; `deleted` keys are never in it.  Bit 31 of an entry
//!   ([`CHANGED`]) marks a key inserted since the node's last write.
//! * A position deleted since the last write is in `whiteouts` (unsorted,
//!   possibly more than once, possibly with a changed key there again);
//!   `dirty_u64s` is at least the size of the next bset's keys.

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::{AcqRel, Acquire}};

use crate::errcode::AllocError;
use crate::format::bkey::{Bkey, BkeyFormat, BtreeIdName, KeyType, UnpackedKeys, BKEY_U64S};
use crate::format::bpos::Bpos;
use crate::format::btree_node::{BTREE_NODE_BYTES, BTREE_NODE_ENTRY_BYTES};
use crate::platform::{Arc, Vec, SECTOR_SIZE};
use crate::sync::{SixLock, SixLockClass, SixLockType};

/// Lock class of every btree node lock (`bch2_btree_node_lock_key`).
pub(crate) static NODE_LOCK: SixLockClass = SixLockClass::new_untracked(c"bcachefs_rs_btree_node");

/// Node flags (`enum btree_flags` of `btree_types.h`), bits of
/// [`Node::flags`].
pub mod flags {
    /// Keys were inserted or deleted since the last write
    /// (`BTREE_NODE_dirty`).
    pub const DIRTY: u32 = 1 << 0;
    /// A write was asked for (`BTREE_NODE_need_write`).
    pub const NEED_WRITE: u32 = 1 << 1;
    /// A write is being done (`BTREE_NODE_write_in_flight`).
    pub const WRITE_IN_FLIGHT: u32 = 1 << 2;
    /// The empty root of a btree that has none on disk, never written
    /// (`BTREE_NODE_fake`).
    pub const FAKE: u32 = 1 << 3;
    /// No longer part of the tree (split, merged, rewritten or evicted):
    /// a path that finds it after locking must look again
    /// (`b->hash_val` changed in C).
    pub const FREED: u32 = 1 << 4;
    /// Allocated by an interior update that has not made it reachable
    /// yet (`BTREE_NODE_will_make_reachable`).
    pub const WILL_MAKE_REACHABLE: u32 = 1 << 5;
    /// The root of its btree (kept in memory, never evicted).
    pub const ROOT: u32 = 1 << 6;

    /// Names, by bit.
    pub const NAMES: [&str; 7] = ["dirty", "need_write", "write_in_flight", "fake", "freed", "will_make_reachable", "root"];
}

/// Where a node lives on disk: the device pointer of its btree pointer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeSpace {
    /// Device index.
    pub dev: u8,
    /// First 512-byte sector.
    pub offset: u64,
    /// Bucket generation.
    pub gen: u8,
}

/// A btree node in memory (`struct btree`).
pub struct Node {
    /// The node's lock: read to use it, intent to modify it (then write
    /// for the moment of modification); eviction takes intent + write.
    pub lock: SixLock,
    /// Btree id.
    pub btree: u8,
    /// Level (0: leaf).
    pub level: u8,
    /// Device sector of the node: its identity in the cache (0 for a fake
    /// root).
    pub sector: u64,
    /// Device and generation of its pointer.
    pub space: NodeSpace,
    /// First position the node covers.
    pub min_key: Bpos,
    /// Last position the node covers.
    pub max_key: Bpos,
    /// The `seq` of its bsets (random, nonzero; also in its pointer).
    pub seq: u64,
    /// `sectors_written` of the pointer to it (0: a `btree_ptr`, or not
    /// known): readers read that much.  Brought up to `written` after each
    /// write by [`crate::btree::trans::BtreeTrans::update_ptr_written`].
    ptr_written: AtomicU32,
    flags: AtomicU32,
    /// What the last merge attempt found in the previous (0) and next (1)
    /// sibling: its live u64s, [`NO_SIBLING`] when there is none, 0 when
    /// not looked at yet (`b->sib_u64s[]`, which C keeps as the combined
    /// size).  Commits skip the merge attempt while neither sibling
    /// could take this node's keys.
    sib_live: [AtomicU32; 2],
    /// The cache's use clock when a `NodeMemo` last returned the node
    /// (its index entry keeps the time of index lookups).
    touched: AtomicU64,
    data: UnsafeCell<NodeData>,
}

/// [`Node::sib_live`] of a side without a sibling.
pub const NO_SIBLING: u32 = u32::MAX;

// SAFETY: `data` is only reached through `NodeLock`/`NodeWrite`, which hold
// the six lock: shared access under read/intent, exclusive under write (see
// the module's invariants).  Everything else is immutable or atomic.
unsafe impl Sync for Node {}

/// Bit of an `offs` entry: the key was inserted since the last write.
const CHANGED: u32 = 1 << 31;

/// The mutable part of a node, reached through its lock's guards.
#[derive(Debug)]
pub struct NodeData {
    keys: UnpackedKeys,
    /// Offsets in `keys` of the live keys, by position, from index
    /// `head` on; [`CHANGED`] marks those inserted since the last write.
    /// The entries before `head` are free: an insert or delete in the
    /// first half of the keys shifts the entries before it rather than
    /// those after it (a walk deleting from the front moves nothing).
    offs: Vec<u32>,
    head: usize,
    /// Bytes of `keys` no longer addressed by `offs`.
    dead_bytes: usize,
    /// Sum of the live keys' sizes, u64s (unpacked).
    live_u64s: usize,
    /// Format of the node's packed keys on disk (chosen at its first
    /// write, or read from it).
    pub format: BkeyFormat,
    /// 512-byte sectors of the node already written (`b->written`).
    pub written: u32,
    /// Positions deleted since the last write, in no order and possibly
    /// repeated: the next bset has a whiteout at each that holds no key.
    whiteouts: Vec<Bpos>,
    /// Number of keys marked [`CHANGED`].
    changed_keys: usize,
    /// Size the next bset's keys take at most, u64s: the changed keys,
    /// plus a whiteout for each entry of `whiteouts` (an over-count when
    /// a position repeats or holds a key again, until
    /// [`recount_changes`](Self::recount_changes)).
    dirty_u64s: usize,
    /// Oldest journal sequence number the node's unwritten keys came
    /// from, pinned in the journal (0: none).
    pub journal_pin: u64,
    /// Newest journal sequence number of the node's keys (the next bset's
    /// `journal_seq`).
    pub journal_seq: u64,
    /// `BTREE_NODE_SEQ()`: how many times the node's range was rewritten
    /// into a new node (the replacement of a node, the halves of a split
    /// get its count plus one, a merge the larger count plus one; a new
    /// root starts at 0).  Topology repair and node scan prefer the higher
    /// count where nodes overlap.
    pub node_seq: u32,
}

impl Default for NodeData {
    fn default() -> Self {
        NodeData {
            keys: UnpackedKeys::new(),
            offs: Vec::new(),
            head: 0,
            dead_bytes: 0,
            live_u64s: 0,
            format: BkeyFormat::CURRENT,
            written: 0,
            whiteouts: Vec::new(),
            changed_keys: 0,
            dirty_u64s: 0,
            journal_pin: 0,
            journal_seq: 0,
            node_seq: 0,
        }
    }
}

impl NodeData {
    /// The live entries of `offs`.
    fn live(&self) -> &[u32] {
        self.offs.get(self.head..).unwrap_or(&[])
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.offs.len() - self.head
    }

    /// Whether the node has no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes this node holds in memory.
    pub fn bytes(&self) -> usize {
        self.keys.len_bytes() + self.offs.len() * 4 + self.whiteouts.len() * 20 + core::mem::size_of::<Node>()
    }

    /// Key `i` and its value; `None` past the end.
    pub fn key(&self, i: usize) -> Option<(Bkey, &[u8])> {
        self.keys.get(*self.live().get(i)? & !CHANGED)
    }

    /// Position of key `i` (`Bpos::default()` past the end).
    pub fn pos(&self, i: usize) -> Bpos {
        self.live().get(i).and_then(|&at| self.keys.pos(at & !CHANGED)).unwrap_or_default()
    }

    /// Index of the first key at or after `pos`: O(log n).
    pub fn lower_bound(&self, pos: Bpos) -> usize {
        let offs = self.live();
        let (mut lo, mut hi) = (0usize, offs.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.keys.cmp_pos(offs[mid] & !CHANGED, &pos).is_lt() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// [`lower_bound`](Self::lower_bound), trying `hint` and the index
    /// after it first: O(1) for a walk that peeks key after key.
    pub fn lower_bound_from(&self, pos: Bpos, hint: usize) -> usize {
        let offs = self.live();
        let lt = |i: usize| self.keys.cmp_pos(offs[i] & !CHANGED, &pos).is_lt();
        let n = self.len();
        for h in [hint, hint + 1] {
            if h <= n && (h == n || !lt(h)) && (h == 0 || lt(h - 1)) {
                return h;
            }
        }
        self.lower_bound(pos)
    }

    /// Index one past the last key at or before `pos`: O(log n).
    pub fn upper_bound(&self, pos: Bpos) -> usize {
        let offs = self.live();
        let (mut lo, mut hi) = (0usize, offs.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.keys.cmp_pos(offs[mid] & !CHANGED, &pos).is_le() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Index of the key at exactly `pos`.
    pub fn find(&self, pos: Bpos) -> Option<usize> {
        let i = self.lower_bound(pos);
        (i < self.len() && self.pos(i) == pos).then_some(i)
    }

    /// Live keys' size, u64s (unpacked, as a compacted node holds them at
    /// most).
    pub fn live_u64s(&self) -> usize {
        self.live_u64s
    }

    /// Number of changes since the last write (keys inserted, positions
    /// deleted; an upper bound of the next bset's keys): 0 when nothing
    /// changed.
    pub fn nr_dirty(&self) -> usize {
        self.changed_keys + self.whiteouts.len()
    }

    /// What the next bset holds: the keys inserted since the last write
    /// and a `deleted` key at each position deleted since that holds no
    /// key now, sorted by position (`bch2_btree_node_write()`'s unwritten
    /// keys and whiteouts).
    ///
    /// Errors: [`AllocError`].
    pub fn changes(&self) -> Result<Vec<(Bkey, &[u8])>, AllocError> {
        use crate::format::bkey::KeyType;
        let mut wh: Vec<Bpos> = Vec::with_capacity(self.whiteouts.len())?;
        wh.extend_from_slice(&self.whiteouts)?;
        crate::util::sort::sort(&mut wh);
        wh.dedup();
        let mut out: Vec<(Bkey, &[u8])> = Vec::with_capacity(self.changed_keys + wh.len())?;
        let mut w = wh.iter().peekable();
        for &o in self.live().iter().filter(|&&o| o & CHANGED != 0) {
            let Some((k, v)) = self.keys.get(o & !CHANGED) else { continue };
            while let Some(&&p) = w.peek() {
                if p > k.p {
                    break;
                }
                if p < k.p && self.find(p).is_none() {
                    out.push((Bkey::new(KeyType::Deleted, p, 0), &[][..]))?;
                }
                w.next();
            }
            out.push((k, v))?;
        }
        for &p in w {
            // Past the last changed key: a key there now is unchanged only
            // if it was never deleted, so none is.
            if self.find(p).is_none() {
                out.push((Bkey::new(KeyType::Deleted, p, 0), &[][..]))?;
            }
        }
        Ok(out)
    }

    /// Makes the change accounting exact: repeated whiteouts and those
    /// under a key again are dropped and `dirty_u64s` recounted.  For a
    /// commit whose room check failed on the over-count.
    pub fn recount_changes(&mut self) {
        crate::util::sort::sort(&mut self.whiteouts);
        self.whiteouts.dedup();
        // Keep the whiteouts where no key is now (`find` does not look at
        // them, so they can be taken out for the pass).
        let mut wh = core::mem::take(&mut self.whiteouts);
        wh.retain(|&p| self.find(p).is_none());
        self.whiteouts = wh;
        let mut u64s = self.whiteouts.len() * BKEY_U64S;
        for &o in self.live().iter().filter(|&&o| o & CHANGED != 0) {
            if let Some((_, v)) = self.keys.get(o & !CHANGED) {
                u64s += BKEY_U64S + v.len() / 8;
            }
        }
        self.dirty_u64s = u64s;
    }

    /// Appends a key read from disk (keys must come in order).
    pub(crate) fn push_sorted(&mut self, k: &Bkey, v: &[u8]) -> Result<(), AllocError> {
        let at = self.keys.push(k, v)?;
        self.offs.push(at)?;
        self.live_u64s += BKEY_U64S + v.len() / 8;
        Ok(())
    }

    /// Reserves room for `nr` more keys of `bytes` in all, so that as many
    /// [`insert`](Self::insert)s cannot fail.
    ///
    /// Errors: [`AllocError`].
    pub fn reserve_for(&mut self, nr: usize, bytes: usize) -> Result<(), AllocError> {
        self.keys.reserve(bytes)?;
        self.offs.reserve(nr)?;
        self.whiteouts.reserve(nr)
    }

    /// Reserves room for `bytes` of keys.
    pub(crate) fn reserve(&mut self, bytes: usize, nr: usize) -> Result<(), AllocError> {
        self.keys.reserve(bytes)?;
        self.offs.reserve(nr)
    }

    /// Inserts `k` (value `v`) into the sorted keys
    /// (`bch2_btree_bset_insert_key()`): replaces the key at its position;
    /// a `deleted` key removes it.  The position is remembered for the
    /// next write (a whiteout when nothing is left there).  Returns whether
    /// a key was at the position before.
    ///
    /// Errors: [`AllocError`].
    pub fn insert(&mut self, k: &Bkey, v: &[u8]) -> Result<bool, AllocError> {
        // Room first, so that a failure leaves the node unchanged.
        self.whiteouts.reserve(1)?;
        self.offs.reserve(1)?;
        self.keys.reserve(crate::format::bkey::BKEY_BYTES + v.len())?;
        let i = self.lower_bound(k.p);
        let existed = i < self.len() && self.pos(i) == k.p;
        let (h, n) = (self.head, self.len());
        if existed {
            let o = self.offs[h + i];
            let old_u64s = self.keys.get(o & !CHANGED).map_or(BKEY_U64S, |(_, ov)| BKEY_U64S + ov.len() / 8);
            self.dead_bytes += old_u64s * 8;
            self.live_u64s -= old_u64s;
            if o & CHANGED != 0 {
                self.changed_keys -= 1;
                self.dirty_u64s -= old_u64s;
            }
        }
        if k.is_deleted() {
            if existed && i < n / 2 {
                // Shift the entries before it up over it.
                self.offs[h..=h + i].rotate_right(1);
                self.head += 1;
            } else if existed {
                self.offs[h + i..].rotate_left(1);
                self.offs.truncate(h + n - 1);
            }
            self.whiteouts.push(k.p)?;
            self.dirty_u64s += BKEY_U64S;
        } else {
            let new_u64s = BKEY_U64S + v.len() / 8;
            let at = self.keys.push(k, v)? | CHANGED;
            if existed {
                self.offs[h + i] = at;
            } else if h > 0 && i < n / 2 {
                // A free entry before the keys: shift those before it
                // down into it.
                self.head -= 1;
                self.offs[h - 1] = at;
                self.offs[h - 1..h + i].rotate_left(1);
            } else {
                self.offs.push(at)?;
                self.offs[h + i..].rotate_right(1);
            }
            self.live_u64s += new_u64s;
            self.changed_keys += 1;
            self.dirty_u64s += new_u64s;
        }
        if self.dead_bytes > 4096 && self.dead_bytes > self.keys.len_bytes() / 2 {
            // Best effort: without memory the dead bytes just stay.
            let _ = self.compact_mem();
        }
        Ok(existed)
    }

    /// Rebuilds the key buffer without dead bytes.
    fn compact_mem(&mut self) -> Result<(), AllocError> {
        let mut keys = UnpackedKeys::new();
        keys.reserve(self.keys.len_bytes() - self.dead_bytes)?;
        let mut offs: Vec<u32> = Vec::with_capacity(self.len())?;
        for &o in self.live().iter() {
            let (k, v) = self.keys.get(o & !CHANGED).ok_or(AllocError)?;
            offs.push(keys.push(&k, v)? | (o & CHANGED))?;
        }
        self.keys = keys;
        self.offs = offs;
        self.head = 0;
        self.dead_bytes = 0;
        Ok(())
    }

    /// Bytes the next write of this node takes on disk at most: the whole
    /// node (header and every key) for its first write, else a
    /// `btree_node_entry` with the changed keys and whiteouts; rounded up
    /// to `block_bytes`.  Keys are counted unpacked, an upper bound.
    pub fn next_write_bytes(&self, block_bytes: usize, extra_u64s: usize) -> usize {
        let raw = if self.written == 0 {
            BTREE_NODE_BYTES + (self.live_u64s + extra_u64s) * 8
        } else {
            BTREE_NODE_ENTRY_BYTES + (self.dirty_u64s + extra_u64s) * 8
        };
        raw.div_ceil(block_bytes) * block_bytes
    }

    /// Whether `u64s` more of keys fit the node without a split or
    /// compaction (`bch2_btree_node_insert_fits()`): its written sectors
    /// plus its next write stay within `node_bytes`.
    pub fn fits(&self, u64s: usize, block_bytes: usize, node_bytes: usize) -> bool {
        self.written as usize * SECTOR_SIZE + self.next_write_bytes(block_bytes, u64s) <= node_bytes
    }

    /// Forgets the changed positions after a write.
    pub(crate) fn clear_dirty(&mut self) {
        if self.changed_keys != 0 {
            let h = self.head;
            for o in self.offs[h..].iter_mut() {
                *o &= !CHANGED;
            }
        }
        self.whiteouts.clear();
        self.changed_keys = 0;
        self.dirty_u64s = 0;
    }
}

impl Node {
    /// A node with no keys.  `flags` are [`flags`] bits.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        btree: u8,
        level: u8,
        space: NodeSpace,
        min_key: Bpos,
        max_key: Bpos,
        seq: u64,
        data: NodeData,
        flags: u32,
    ) -> Node {
        Node {
            lock: SixLock::new(&NODE_LOCK),
            btree,
            level,
            sector: space.offset,
            space,
            min_key,
            max_key,
            seq,
            ptr_written: AtomicU32::new(0),
            flags: AtomicU32::new(flags),
            sib_live: [AtomicU32::new(0), AtomicU32::new(0)],
            touched: AtomicU64::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// The flags ([`flags`] bits).
    pub fn flags(&self) -> u32 {
        self.flags.load(Acquire)
    }

    /// Whether flag `f` is set.
    pub fn has(&self, f: u32) -> bool {
        self.flags() & f != 0
    }

    /// Sets flags; returns the old value.
    pub fn set_flags(&self, f: u32) -> u32 {
        self.flags.fetch_or(f, AcqRel)
    }

    /// Clears flags; returns the old value.
    pub fn clear_flags(&self, f: u32) -> u32 {
        self.flags.fetch_and(!f, AcqRel)
    }

    /// Whether the node is dirty or being written: the cache must keep it.
    pub fn pinned_in_cache(&self) -> bool {
        self.has(flags::DIRTY | flags::WRITE_IN_FLIGHT | flags::FAKE | flags::WILL_MAKE_REACHABLE | flags::ROOT)
    }

    /// Whether keys may be added to the node in place: not the fake root.
    pub fn appendable(&self) -> bool {
        !self.has(flags::FAKE)
    }

    /// `sectors_written` of the pointer to the node.
    pub fn ptr_sectors_written(&self) -> u32 {
        self.ptr_written.load(Acquire)
    }

    /// Records the `sectors_written` the pointer to the node now has.
    pub fn set_ptr_sectors_written(&self, s: u32) {
        self.ptr_written.store(s, core::sync::atomic::Ordering::Release);
    }

    /// Records a use at cache clock `clock` (for the eviction order).
    pub fn touch(&self, clock: u64) {
        if self.touched.load(core::sync::atomic::Ordering::Relaxed) < clock {
            self.touched.store(clock, core::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The cache clock of the last [`touch`](Self::touch).
    pub fn touched(&self) -> u64 {
        self.touched.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Records what a merge attempt found on one side (`next`: the next
    /// sibling): its live u64s, or [`NO_SIBLING`].
    pub fn set_sib_live(&self, next: bool, u64s: u32) {
        self.sib_live[usize::from(next)].store(u64s, core::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a merge attempt could succeed as far as the last attempt's
    /// findings tell (`bch2_foreground_maybe_merge()`'s `sib_u64s` check):
    /// a side not looked at yet, or whose sibling plus `live_u64s` stays
    /// within `max_u64s`.
    pub fn may_merge(&self, live_u64s: usize, max_u64s: usize) -> bool {
        self.sib_live.iter().any(|s| match s.load(core::sync::atomic::Ordering::Relaxed) {
            NO_SIBLING => false,
            n => live_u64s + n as usize <= max_u64s,
        })
    }

    /// Whether `pos` is within the node's range.
    pub fn covers(&self, pos: Bpos) -> bool {
        self.min_key <= pos && pos <= self.max_key
    }

    /// The data, for a caller that owns the node exclusively (not yet
    /// published) or holds its lock as the `NodeLock` guards do.
    ///
    /// # Safety
    ///
    /// The caller holds the node's lock for read, intent or write, or no
    /// other thread can reach the node.
    unsafe fn data(&self) -> &NodeData {
        // SAFETY: per this function's contract no writer runs concurrently.
        unsafe { &*self.data.get() }
    }

    /// Exclusive access to a node no other thread can reach yet (it was
    /// just built and is not in the cache or a parent).
    pub fn data_unpublished(this: &mut Node) -> &mut NodeData {
        this.data.get_mut()
    }

    /// Bytes the node holds; takes the read lock unless it cannot at once
    /// (then the size of the node header).
    pub fn bytes(&self) -> usize {
        if !self.lock.trylock(SixLockType::Read) {
            return core::mem::size_of::<Node>();
        }
        // SAFETY: read lock held.
        let b = unsafe { self.data() }.bytes();
        self.lock.unlock(SixLockType::Read);
        b
    }

    /// `bch2_btree_node_to_text()`-like summary; `data` when the caller
    /// holds the lock.
    pub fn to_text(&self, f: &mut dyn fmt::Write, data: Option<&NodeData>) -> fmt::Result {
        write!(
            f,
            "btree {} level {} sector {} seq {:x} {}..{} flags",
            BtreeIdName(u32::from(self.btree)),
            self.level,
            self.sector,
            self.seq,
            self.min_key,
            self.max_key
        )?;
        let fl = self.flags();
        let mut any = false;
        for (i, n) in flags::NAMES.iter().enumerate() {
            if fl & (1 << i) != 0 {
                write!(f, "{}{n}", if any { "," } else { " " })?;
                any = true;
            }
        }
        if !any {
            f.write_str(" none")?;
        }
        if let Some(d) = data {
            write!(
                f,
                "\n  keys {} live_u64s {} written {} sectors, {} changed since ({} u64s), journal pin {} seq {}",
                d.len(),
                d.live_u64s,
                d.written,
                d.nr_dirty(),
                d.dirty_u64s,
                d.journal_pin,
                d.journal_seq
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Node {
    /// The header and flags (no lock taken: not the keys).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_text(f, None)
    }
}

/// A node held for read or intent; the lock is dropped with it.  Not
/// `Send`: a six lock is released by the thread that took it.
#[must_use = "dropping the guard unlocks the node"]
pub struct NodeLock {
    node: Arc<Node>,
    ty: SixLockType,
    /// The write lock is held too, taken by [`lock_write`](Self::lock_write)
    /// (intent holders only) and released by
    /// [`unlock_write`](Self::unlock_write) or the drop.
    write_held: bool,
    _not_send: PhantomData<*const ()>,
}

/// The read side's name for a read-held node.
pub type NodeRef = NodeLock;

impl NodeLock {
    /// Wraps a lock of type `ty` (read or intent) the caller holds on
    /// `node`.
    ///
    /// # Safety
    ///
    /// The caller holds `node.lock` for `ty` and hands that hold over.
    pub(crate) unsafe fn from_held(node: Arc<Node>, ty: SixLockType) -> NodeLock {
        debug_assert!(ty != SixLockType::Write);
        NodeLock { node, ty, write_held: false, _not_send: PhantomData }
    }

    /// Takes `ty` (read or intent) on `node`, waiting for it.
    pub fn lock(node: Arc<Node>, ty: SixLockType) -> NodeLock {
        node.lock.lock(ty);
        // SAFETY: just taken.
        unsafe { NodeLock::from_held(node, ty) }
    }

    /// Takes `ty` (read or intent) on `node` if it is free.
    pub fn trylock(node: Arc<Node>, ty: SixLockType) -> Option<NodeLock> {
        if !node.lock.trylock(ty) {
            return None;
        }
        // SAFETY: just taken.
        Some(unsafe { NodeLock::from_held(node, ty) })
    }

    /// Takes `ty` on `node` if its lock sequence number is still `seq`
    /// (`six_relock_type()`): nobody wrote it since.
    pub fn relock(node: Arc<Node>, ty: SixLockType, seq: u32) -> Option<NodeLock> {
        if !node.lock.relock(ty, seq) {
            return None;
        }
        // SAFETY: just taken.
        Some(unsafe { NodeLock::from_held(node, ty) })
    }

    /// The node's keys and bookkeeping.
    pub fn data(&self) -> &NodeData {
        // SAFETY: we hold read or intent (type invariant of NodeLock); a
        // writer needs intent, so the only possible writer is this guard's
        // holder, through a NodeWrite or `data_mut`, both of which borrow
        // `self` mutably.
        unsafe { self.node.data() }
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The type held.
    pub fn lock_type(&self) -> SixLockType {
        self.ty
    }

    /// The lock's sequence number (to [`relock`](Self::relock) later).
    pub fn seq(&self) -> u32 {
        self.node.lock.seq()
    }

    /// Takes the write lock for the moment of modification (waits for
    /// readers to leave).  Requires intent.
    ///
    /// Errors: `None` when this guard holds only read, or holds write
    /// already ([`lock_write`](Self::lock_write)).
    pub fn write(&mut self) -> Option<NodeWrite<'_>> {
        if self.ty != SixLockType::Intent || self.write_held {
            return None;
        }
        self.node.lock.lock(SixLockType::Write);
        Some(NodeWrite { g: self })
    }

    /// Takes the write lock and keeps it in this guard, for a caller that
    /// holds several nodes write-locked at once (the commit's leaves) and
    /// reaches their data with [`data_mut`](Self::data_mut).  Requires
    /// intent; returns whether write is held.
    pub fn lock_write(&mut self) -> bool {
        if self.ty != SixLockType::Intent {
            return false;
        }
        if !self.write_held {
            self.node.lock.lock(SixLockType::Write);
            self.write_held = true;
        }
        true
    }

    /// Releases the write lock [`lock_write`](Self::lock_write) took (the
    /// lock's sequence number moves on); intent stays.
    pub fn unlock_write(&mut self) {
        if self.write_held {
            self.write_held = false;
            self.node.lock.unlock(SixLockType::Write);
        }
    }

    /// The data for modification, while [`lock_write`](Self::lock_write)'s
    /// write lock is held; `None` otherwise.
    pub fn data_mut(&mut self) -> Option<&mut NodeData> {
        if !self.write_held {
            return None;
        }
        // SAFETY: this guard holds intent and write (`write_held`), so no
        // other thread holds any lock on the node, and the `&mut self`
        // borrow rules out other references from this guard.
        Some(unsafe { &mut *self.node.data.get() })
    }

    /// Turns a read hold into intent if nobody holds intent
    /// (`six_lock_tryupgrade()`).
    pub fn try_upgrade(&mut self) -> bool {
        match self.ty {
            SixLockType::Intent => true,
            _ if self.node.lock.tryupgrade() => {
                self.ty = SixLockType::Intent;
                true
            }
            _ => false,
        }
    }

    /// Node `i`'s key: see [`NodeData::key`].
    pub fn key(&self, i: usize) -> Option<(Bkey, &[u8])> {
        self.data().key(i)
    }

    /// See [`NodeData::len`].
    pub fn len(&self) -> usize {
        self.data().len()
    }

    /// See [`NodeData::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.data().is_empty()
    }

    /// See [`NodeData::pos`].
    pub fn pos(&self, i: usize) -> Bpos {
        self.data().pos(i)
    }

    /// See [`NodeData::lower_bound`].
    pub fn lower_bound(&self, pos: Bpos) -> usize {
        self.data().lower_bound(pos)
    }

    /// See [`NodeData::upper_bound`].
    pub fn upper_bound(&self, pos: Bpos) -> usize {
        self.data().upper_bound(pos)
    }
}

impl Deref for NodeLock {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        self.unlock_write();
        self.node.lock.unlock(self.ty);
    }
}

impl fmt::Display for NodeLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.node.to_text(f, Some(self.data()))
    }
}

/// A node held for write (intent held underneath); dropping it releases
/// the write lock and keeps intent.
#[must_use = "dropping the guard releases the write lock"]
pub struct NodeWrite<'a> {
    g: &'a mut NodeLock,
}

impl NodeWrite<'_> {
    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.g.node
    }
}

impl Deref for NodeWrite<'_> {
    type Target = NodeData;
    fn deref(&self) -> &NodeData {
        self.g.data()
    }
}

impl DerefMut for NodeWrite<'_> {
    fn deref_mut(&mut self) -> &mut NodeData {
        // SAFETY: the write lock is held (taken in `NodeLock::write`) and
        // this guard borrows the intent guard mutably: no other reference
        // to the data exists in this thread, and no other thread can hold
        // read, intent or write.
        unsafe { &mut *self.g.node.data.get() }
    }
}

impl Drop for NodeWrite<'_> {
    fn drop(&mut self) {
        self.g.node.lock.unlock(SixLockType::Write);
    }
}

/// Whether a key type is a whiteout the next bset must carry (`deleted`
/// keys are never stored; `whiteout` keys are ordinary keys).
pub fn is_deletion(k: &Bkey) -> bool {
    k.key_type == KeyType::Deleted as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bkey::KeyType;

    fn k(off: u64) -> Bkey {
        Bkey::new(KeyType::Cookie, Bpos::new(1, off, 1), 1)
    }

    #[test]
    fn insert_replace_delete_keep_order_and_accounting() {
        let mut d = NodeData::default();
        for off in [5u64, 1, 9, 3] {
            assert!(!d.insert(&k(off), &off.to_le_bytes()).unwrap());
        }
        assert_eq!((0..d.len()).map(|i| d.pos(i).offset).collect::<std::vec::Vec<_>>(), [1, 3, 5, 9]);
        assert_eq!(d.live_u64s(), 4 * 6);
        // Replace, with a bigger value.
        assert!(d.insert(&k(3), &[7u8; 16]).unwrap());
        assert_eq!(d.key(1).unwrap().1, &[7u8; 16]);
        assert_eq!(d.live_u64s(), 3 * 6 + 7);
        // Delete: gone, and its position stays changed (a whiteout).
        let mut del = k(5);
        del.key_type = KeyType::Deleted as u8;
        assert!(d.insert(&del, &[]).unwrap());
        assert_eq!(d.find(Bpos::new(1, 5, 1)), None);
        assert_eq!(d.changes().unwrap().iter().map(|(k, _)| (k.p.offset, k.is_deleted())).collect::<std::vec::Vec<_>>(), [(1, false), (3, false), (5, true), (9, false)]);
        assert_eq!(d.dirty_u64s, 6 + 7 + 5 + 6);
        // First write takes everything: 160 + 19 u64s.
        assert_eq!(d.next_write_bytes(512, 0), 512);
        assert!(d.fits(40, 512, 1024) && !d.fits(120, 512, 1024));
        // After a write, only the changes count.
        d.written = 1;
        d.clear_dirty();
        assert_eq!(d.next_write_bytes(512, 0), 512);
        assert!(d.fits(50, 512, 1024));
        assert!(!d.fits(60, 512, 1024));
        // Many replacements leave dead bytes behind, compacted away.
        for i in 0..2000u64 {
            d.insert(&k(1), &i.to_le_bytes()).unwrap();
        }
        assert!(d.keys.len_bytes() < 8192, "{}", d.keys.len_bytes());
        assert_eq!(d.key(0).unwrap().1, &1999u64.to_le_bytes());
        assert_eq!(d.dirty_u64s, 6);
    }

    #[test]
    fn random_inserts_and_deletes_match_a_sorted_map() {
        // Deletes and inserts all over the node (front, middle, back),
        // checked against a map after each step, writes in between.
        let mut d = NodeData::default();
        let mut m = std::collections::BTreeMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..6000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = match step % 3 {
                0 => x % 64,
                1 => m.keys().next().copied().unwrap_or(0),
                _ => x % 512,
            };
            if x % 5 < 2 {
                let mut del = k(off);
                del.key_type = KeyType::Deleted as u8;
                assert_eq!(d.insert(&del, &[]).unwrap(), m.remove(&off).is_some());
            } else {
                assert_eq!(d.insert(&k(off), &step.to_le_bytes()).unwrap(), m.insert(off, step).is_some());
            }
            if step % 500 == 499 {
                d.written += 1;
                d.clear_dirty();
            }
            assert_eq!(d.len(), m.len());
            if step % 97 == 0 {
                let got: std::vec::Vec<_> = (0..d.len()).map(|i| {
                    let (k, v) = d.key(i).unwrap();
                    (k.p.offset, u64::from_le_bytes(v.try_into().unwrap()))
                }).collect();
                assert_eq!(got, m.iter().map(|(&a, &b)| (a, b)).collect::<std::vec::Vec<_>>(), "step {step}");
                for (&o, _) in m.iter() {
                    assert!(d.find(Bpos::new(1, o, 1)).is_some());
                }
            }
        }
        assert_eq!(d.live_u64s(), m.len() * 6);
    }

    #[test]
    fn lower_bound_from_any_hint_equals_lower_bound() {
        let mut d = NodeData::default();
        for off in (2..=40u64).step_by(2) {
            d.insert(&k(off), &off.to_le_bytes()).unwrap();
        }
        for off in 0..=42u64 {
            let p = Bpos::new(1, off, 1);
            for hint in 0..=d.len() + 2 {
                assert_eq!(d.lower_bound_from(p, hint), d.lower_bound(p), "pos {off} hint {hint}");
            }
        }
    }

    #[test]
    fn whiteouts_repeat_until_recounted_and_lose_to_a_key_again() {
        let mut d = NodeData::default();
        for off in 1..=4u64 {
            d.insert(&k(off), &off.to_le_bytes()).unwrap();
        }
        d.written = 1;
        d.clear_dirty();
        assert_eq!(d.nr_dirty(), 0);
        let del = |off| {
            let mut x = k(off);
            x.key_type = KeyType::Deleted as u8;
            x
        };
        // Delete 2 three times over, with a key there in between; delete 3
        // once; put 4 back changed.
        d.insert(&del(2), &[]).unwrap();
        d.insert(&k(2), &[9u8; 8]).unwrap();
        d.insert(&del(2), &[]).unwrap();
        d.insert(&del(2), &[]).unwrap();
        d.insert(&del(3), &[]).unwrap();
        d.insert(&k(4), &[8u8; 8]).unwrap();
        let ch = |d: &NodeData| d.changes().unwrap().iter().map(|(k, _)| (k.p.offset, k.is_deleted())).collect::<std::vec::Vec<_>>();
        assert_eq!(ch(&d), [(2, true), (3, true), (4, false)]);
        // Four whiteouts and one key counted; exact: two whiteouts.
        assert_eq!(d.dirty_u64s, 4 * 5 + 6);
        d.recount_changes();
        assert_eq!(d.dirty_u64s, 2 * 5 + 6);
        assert_eq!(ch(&d), [(2, true), (3, true), (4, false)]);
        // 3 comes back: its whiteout goes at the recount.
        d.insert(&k(3), &[7u8; 8]).unwrap();
        assert_eq!(ch(&d), [(2, true), (3, false), (4, false)]);
        d.recount_changes();
        assert_eq!(d.dirty_u64s, 5 + 2 * 6);
        d.clear_dirty();
        assert_eq!((d.nr_dirty(), d.dirty_u64s, ch(&d).len()), (0, 0, 0));
        assert_eq!(d.len(), 3);
    }
}
