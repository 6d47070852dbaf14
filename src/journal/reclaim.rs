// SPDX-License-Identifier: GPL-2.0
//! Journal reclaim: the pins that keep journal entries needed, and the
//! ring of journal buckets whose space comes back as `last_seq` advances.
//!
//! Matches, in `fs/bcachefs`: `journal_reclaim.c`
//! (`bch2_journal_dev_buckets_available()`, `journal_dev_space_available()`,
//! `bch2_journal_space_available()`, `bch2_journal_reclaim_fast()`,
//! `journal_seq_to_flush()`, `__bch2_journal_reclaim()`) and the pin FIFO
//! of `journal_types.h` (`struct journal_entry_pin_list`).
//!
//! # The pin FIFO
//!
//! One [`PinList`] per sequence number from `front` (the oldest entry still
//! needed: `journal_last_seq()`) to `back` (one past the newest opened
//! entry).  An entry's count starts at 1 when it is opened (its own
//! reference, dropped once it is closed and every reservation in it was
//! put) and goes up by one per pin.  The front is popped while its count is
//! 0 and it was written (`front <= seq_ondisk`); then `last_seq` advances
//! and buckets whose newest entry is older become free.
//!
//! # The bucket ring
//!
//! The journal's buckets (superblock `journal_v2`) are used in order as a
//! ring.  [`JournalDevice`] keeps C's indices into it:
//!
//! - `cur_idx`: the bucket being written; `sectors_free` left in it;
//! - `dirty_idx`: the oldest bucket still holding an entry at or after
//!   `last_seq` (in memory);
//! - `dirty_idx_ondisk`: the same for the `last_seq` written to disk
//!   (buckets between it and `dirty_idx` are clean only once a write
//!   carrying the new `last_seq` landed);
//! - `discard_idx`: the oldest bucket not yet discarded (reusable from
//!   `discard_idx` up to `cur_idx`).
//!
//! `bucket_seq[i]` is the newest sequence number written to bucket `i`.

use core::fmt;

use super::res::PinOwner;
use crate::errcode::AllocError;
use crate::platform::Vec;

/// Size of the pin FIFO of a fresh journal, entries (C's `JOURNAL_PIN`
/// is 32768; ours is smaller and grows at start when the replay range
/// needs more).
pub const JOURNAL_PIN_DEFAULT: usize = 1024;

/// The pins on one journal sequence number (`struct
/// journal_entry_pin_list`): the count, and who holds them.
#[derive(Debug)]
pub struct PinList {
    /// References: 1 for the entry itself until it was closed and its
    /// reservations put, plus one per pin.
    pub count: u32,
    /// Pins by owner, with their counts (pins whose owner could not be
    /// recorded, for lack of memory, only count).
    pub owners: Vec<(PinOwner, u32)>,
}

impl Default for PinList {
    fn default() -> Self {
        PinList { count: 0, owners: Vec::new() }
    }
}

/// The pin FIFO (`j->pin`): a ring of [`PinList`]s indexed by sequence
/// number, from `front` (inclusive) to `back` (exclusive).
pub struct PinFifo {
    lists: Vec<PinList>,
    /// Oldest sequence number still pinned (`j->pin.front`):
    /// `journal_last_seq()`.
    pub front: u64,
    /// One past the newest opened entry (`j->pin.back`).
    pub back: u64,
}

impl PinFifo {
    /// An empty FIFO of `size` entries (rounded up to a power of two),
    /// starting at sequence number `seq`.
    ///
    /// Errors: [`AllocError`].
    pub fn new(size: usize, seq: u64) -> Result<PinFifo, AllocError> {
        let size = size.max(2).checked_next_power_of_two().ok_or(AllocError)?;
        let mut lists: Vec<PinList> = Vec::with_capacity(size)?;
        for _ in 0..size {
            lists.push(PinList::default())?;
        }
        Ok(PinFifo { lists, front: seq, back: seq })
    }

    /// Capacity, entries (`j->pin.size`).
    pub fn size(&self) -> u64 {
        self.lists.len() as u64
    }

    /// Entries in use (`fifo_used()`).
    pub fn used(&self) -> u64 {
        self.back - self.front
    }

    /// Free entries (`fifo_free()`).
    pub fn free(&self) -> u64 {
        self.size() - self.used()
    }

    fn idx(&self, seq: u64) -> usize {
        (seq & (self.size() - 1)) as usize
    }

    /// The list of `seq`, if `front <= seq < back` (`journal_seq_pin()`).
    pub fn get(&self, seq: u64) -> Option<&PinList> {
        if seq < self.front || seq >= self.back {
            return None;
        }
        self.lists.get(self.idx(seq))
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut PinList> {
        if seq < self.front || seq >= self.back {
            return None;
        }
        let i = self.idx(seq);
        self.lists.get_mut(i)
    }

    /// Opens the list of `back` with `count` references and advances
    /// `back`; `false` when the FIFO is full.
    pub fn push(&mut self, count: u32) -> bool {
        if self.free() == 0 {
            return false;
        }
        let i = self.idx(self.back);
        if let Some(p) = self.lists.get_mut(i) {
            p.count = count;
            p.owners.clear();
        }
        self.back += 1;
        true
    }

    /// Takes a pin on `seq` (clamped to `front`) for `owner`; `false` when
    /// `seq` is not open (newer than the newest entry).
    pub fn pin_get(&mut self, seq: u64, owner: PinOwner) -> bool {
        let seq = seq.max(self.front);
        let Some(p) = self.get_mut(seq) else { return false };
        p.count = p.count.saturating_add(1);
        if let Some(o) = p.owners.iter_mut().find(|o| o.0 == owner) {
            o.1 = o.1.saturating_add(1);
        } else {
            // Without memory the pin still counts; only its owner is not
            // shown.
            let _ = p.owners.push((owner, 1));
        }
        true
    }

    /// Drops a reference on `seq` (clamped to `front`, as the pin was),
    /// owned by `owner` or by the entry itself (`None`).  Returns whether
    /// the count reached 0; `false` as well when there was nothing to drop.
    pub fn put(&mut self, seq: u64, owner: Option<PinOwner>) -> bool {
        let seq = seq.max(self.front);
        let Some(p) = self.get_mut(seq) else { return false };
        if p.count == 0 {
            return false;
        }
        p.count -= 1;
        if let Some(owner) = owner {
            if let Some(i) = p.owners.iter().position(|o| o.0 == owner) {
                p.owners[i].1 -= 1;
                if p.owners[i].1 == 0 {
                    let last = p.owners.len() - 1;
                    p.owners.swap(i, last);
                    p.owners.pop();
                }
            }
        }
        p.count == 0
    }

    /// Pops unpinned entries from the front while they are no newer than
    /// `seq_ondisk` (`bch2_journal_reclaim_fast()`).  Returns whether any
    /// was popped.
    pub fn reclaim_fast(&mut self, seq_ondisk: u64) -> bool {
        let mut popped = false;
        while self.front < self.back && self.front <= seq_ondisk && self.get(self.front).is_some_and(|p| p.count == 0)
        {
            self.front += 1;
            popped = true;
        }
        popped
    }

    /// Sets the FIFO to `[front, back)` with `count` references on each
    /// (`bch2_fs_journal_start()`), growing it to hold `back - front + 1`.
    ///
    /// Errors: [`AllocError`].
    pub fn reset(&mut self, front: u64, back: u64, count: u32) -> Result<(), AllocError> {
        let nr = back.saturating_sub(front);
        let want = usize::try_from(nr.saturating_add(1)).map_err(|_| AllocError)?;
        if want > self.lists.len() {
            *self = PinFifo::new(want, front)?;
        }
        self.front = front;
        self.back = front;
        for _ in front..back {
            self.push(count);
        }
        Ok(())
    }

    /// Prints every pinned sequence number and its owners
    /// (`bch2_journal_pins_to_text()`).
    pub fn to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        for seq in self.front..self.back {
            let Some(p) = self.get(seq) else { continue };
            writeln!(f, "{seq}: count {}", p.count)?;
            for (o, n) in p.owners.iter() {
                writeln!(f, "  {o}: {n}")?;
            }
        }
        Ok(())
    }
}

/// Which space [`JournalDevice::space`] counts (`enum journal_space_from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceFrom {
    /// Up to `discard_idx`: usable now (`journal_space_discarded`).
    Discarded = 0,
    /// Up to `dirty_idx_ondisk` (`journal_space_clean_ondisk`).
    CleanOndisk = 1,
    /// Up to `dirty_idx` (`journal_space_clean`).
    Clean = 2,
    /// The whole journal (`journal_space_total`).
    Total = 3,
}

/// Names of [`SpaceFrom`], as `bch2_journal_debug_to_text()` prints them.
pub const SPACE_FROM_NAMES: [&str; 4] = ["discarded", "clean ondisk", "clean", "total"];

/// Space in the journal (`struct journal_space`), 512-byte sectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalSpace {
    /// Largest entry that fits next (in the current or the next bucket).
    pub next_entry: u32,
    /// All space, sectors.
    pub total: u64,
}

/// One device's journal bucket ring (`struct journal_device`).
pub struct JournalDevice {
    /// Device buckets of the journal, in ring order (`ja->buckets`).
    pub buckets: Vec<u64>,
    /// Newest sequence number written to each (`ja->bucket_seq`).
    pub bucket_seq: Vec<u64>,
    /// Bucket size, sectors.
    pub bucket_sectors: u32,
    /// Bucket being written.
    pub cur_idx: usize,
    /// Sectors left in `cur_idx`.
    pub sectors_free: u32,
    /// Oldest bucket not yet discarded.
    pub discard_idx: usize,
    /// Oldest bucket dirty with respect to `last_seq_ondisk`.
    pub dirty_idx_ondisk: usize,
    /// Oldest bucket dirty with respect to `last_seq`.
    pub dirty_idx: usize,
}

impl JournalDevice {
    /// A ring over `buckets` of `bucket_sectors` each, empty: the state
    /// of a freshly allocated journal (every index 0, nothing free in the
    /// current bucket, so the first write goes to the next one).
    ///
    /// Errors: [`AllocError`].
    pub fn new(buckets: &[u64], bucket_sectors: u32) -> Result<JournalDevice, AllocError> {
        let mut b: Vec<u64> = Vec::with_capacity(buckets.len())?;
        b.extend_from_slice(buckets)?;
        let mut s: Vec<u64> = Vec::with_capacity(buckets.len())?;
        s.resize(buckets.len(), 0)?;
        Ok(JournalDevice {
            buckets: b,
            bucket_seq: s,
            bucket_sectors,
            cur_idx: 0,
            sectors_free: 0,
            discard_idx: 0,
            dirty_idx_ondisk: 0,
            dirty_idx: 0,
        })
    }

    /// Number of buckets (`ja->nr`).
    pub fn nr(&self) -> usize {
        self.buckets.len()
    }

    /// Device sector where the next `sectors` go in the current bucket.
    pub fn cur_sector(&self) -> Option<u64> {
        let b = *self.buckets.get(self.cur_idx)?;
        let off = self.bucket_sectors.checked_sub(self.sectors_free)?;
        b.checked_mul(u64::from(self.bucket_sectors))?.checked_add(u64::from(off))
    }

    fn space_idx(&self, from: SpaceFrom) -> usize {
        match from {
            SpaceFrom::Discarded => self.discard_idx,
            SpaceFrom::CleanOndisk => self.dirty_idx_ondisk,
            SpaceFrom::Clean | SpaceFrom::Total => self.dirty_idx,
        }
    }

    /// Whole buckets free after the current one
    /// (`bch2_journal_dev_buckets_available()`): the last free bucket is
    /// kept unless writing the new `last_seq` frees another.
    pub fn buckets_available(&self, from: SpaceFrom) -> usize {
        let nr = self.nr();
        if nr == 0 {
            return 0;
        }
        let mut available = (self.space_idx(from) + nr - self.cur_idx - 1) % nr;
        if available > 0 && self.dirty_idx_ondisk == self.dirty_idx {
            available -= 1;
        }
        available
    }

    /// Space left (`journal_dev_space_available()`), counting the
    /// `unwritten` entries (sectors each, in order) that were closed but
    /// not yet given a place.
    pub fn space(&self, from: SpaceFrom, unwritten: &[u32]) -> JournalSpace {
        let bs = self.bucket_sectors;
        if from == SpaceFrom::Total {
            return JournalSpace { next_entry: bs, total: u64::from(bs) * self.nr() as u64 };
        }
        let mut buckets = self.buckets_available(from);
        let mut sectors = self.sectors_free;
        for &u in unwritten {
            if u == 0 || u > bs {
                continue;
            }
            if u >= sectors {
                if buckets == 0 {
                    sectors = 0;
                    break;
                }
                buckets -= 1;
                sectors = bs;
            }
            sectors -= u;
        }
        if sectors < bs && buckets > 0 {
            buckets -= 1;
            sectors = bs;
        }
        JournalSpace { next_entry: sectors, total: u64::from(sectors) + buckets as u64 * u64::from(bs) }
    }

    /// Moves `dirty_idx` past buckets whose entries are all older than
    /// `last_seq`, and `dirty_idx_ondisk` likewise for `last_seq_ondisk`
    /// (the first half of `bch2_journal_space_available()`).
    pub fn advance_dirty(&mut self, last_seq: u64, last_seq_ondisk: u64) {
        let nr = self.nr();
        if nr == 0 {
            return;
        }
        while self.dirty_idx != self.cur_idx && self.bucket_seq.get(self.dirty_idx).is_some_and(|&s| s < last_seq) {
            self.dirty_idx = (self.dirty_idx + 1) % nr;
        }
        while self.dirty_idx_ondisk != self.dirty_idx
            && self.bucket_seq.get(self.dirty_idx_ondisk).is_some_and(|&s| s < last_seq_ondisk)
        {
            self.dirty_idx_ondisk = (self.dirty_idx_ondisk + 1) % nr;
        }
    }

    /// Whether buckets wait to be discarded (`should_discard_bucket()`).
    pub fn can_discard(&self) -> bool {
        self.discard_idx != self.dirty_idx_ondisk
    }

    /// Marks every clean bucket discarded (`bch2_journal_do_discards()`;
    /// the block layer has no discard here, so this only moves the
    /// index).  Returns whether anything changed.
    pub fn do_discards(&mut self) -> bool {
        let nr = self.nr();
        let mut any = false;
        while nr > 0 && self.can_discard() {
            self.discard_idx = (self.discard_idx + 1) % nr;
            any = true;
        }
        any
    }

    /// Places a write of `sectors` with sequence number `seq`
    /// (`journal_write_alloc()`): in the current bucket if it fits, else at
    /// the start of the next bucket if one is free.  Returns the device
    /// sector, `None` when there is no room.
    pub fn write_alloc(&mut self, sectors: u32, seq: u64) -> Option<u64> {
        if sectors > self.sectors_free
            && sectors <= self.bucket_sectors
            && self.buckets_available(SpaceFrom::Discarded) > 0
        {
            self.cur_idx = (self.cur_idx + 1) % self.nr();
            self.sectors_free = self.bucket_sectors;
            *self.bucket_seq.get_mut(self.cur_idx)? = seq;
        }
        if sectors == 0 || sectors > self.sectors_free {
            return None;
        }
        let sector = self.cur_sector()?;
        self.sectors_free -= sectors;
        *self.bucket_seq.get_mut(self.cur_idx)? = seq;
        Some(sector)
    }

    /// The bucket to flush up to so that the journal stays at most half
    /// full (`journal_seq_to_flush()`, per device): the newest sequence
    /// number of the bucket half the ring ahead of `cur_idx`.
    pub fn seq_to_flush(&self) -> u64 {
        let nr = self.nr();
        if nr == 0 {
            return 0;
        }
        self.bucket_seq.get((self.cur_idx + nr / 2) % nr).copied().unwrap_or(0)
    }

    /// Prints the ring as `bch2_journal_debug_to_text()` does per device.
    pub fn to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        let seq = |i: usize| self.bucket_seq.get(i).copied().unwrap_or(0);
        writeln!(f, "  nr\t\t{}", self.nr())?;
        writeln!(f, "  bucket size\t{}", self.bucket_sectors)?;
        writeln!(f, "  available\t{}:{}", self.buckets_available(SpaceFrom::Discarded), self.sectors_free)?;
        writeln!(f, "  discard_idx\t{}", self.discard_idx)?;
        writeln!(f, "  dirty_ondisk\t{} (seq {})", self.dirty_idx_ondisk, seq(self.dirty_idx_ondisk))?;
        writeln!(f, "  dirty_idx\t{} (seq {})", self.dirty_idx, seq(self.dirty_idx))?;
        writeln!(f, "  cur_idx\t{} (seq {})", self.cur_idx, seq(self.cur_idx))
    }
}

/// What journal reclaim asks of the owners of pins: write what the
/// entries up to a sequence number hold so that their pins are dropped
/// (C's per-pin `flush` callbacks, `journal_flush_pins()`).
///
/// Implemented by the btree (dirty nodes, the write buffer).  Called
/// without any journal lock held; the implementation drops its pins with
/// [`super::JournalSink::pin_put`] (and may take journal reservations).
pub trait JournalFlusher: Send + Sync {
    /// Releases every pin on sequence numbers up to and including
    /// `seq_to_flush`, and at least `min_nr` pins (oldest first) even if
    /// newer.  Returns how many pins were released.
    fn flush_pins(&self, seq_to_flush: u64, min_nr: usize) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_fifo_counts_and_pops_in_order() {
        let mut p = PinFifo::new(4, 10).unwrap();
        assert!(p.push(1) && p.push(1) && p.push(1));
        assert!(p.pin_get(10, PinOwner::Other));
        assert!(p.pin_get(5, PinOwner::WriteBuffer), "older seqs pin the front");
        assert!(!p.pin_get(13, PinOwner::Other), "seq 13 not open");
        // Entry refs dropped: 11 and 12 are free but 10 is pinned.
        assert!(!p.put(10, None));
        assert!(p.put(11, None));
        assert!(p.put(12, None));
        assert!(!p.reclaim_fast(12));
        assert_eq!(p.front, 10);
        assert!(!p.put(10, Some(PinOwner::Other)));
        assert!(p.put(3, Some(PinOwner::WriteBuffer)));
        assert!(!p.reclaim_fast(9), "10 not written yet");
        assert_eq!(p.front, 10);
        assert!(p.reclaim_fast(10));
        assert_eq!(p.front, 11, "11 not written yet");
        assert!(p.reclaim_fast(12));
        assert_eq!((p.front, p.back), (13, 13));
        assert!(!p.put(13, None), "nothing to drop");
        let mut s = String::new();
        assert!(p.push(1));
        p.pin_get(13, PinOwner::BtreeNode(0, 0));
        p.to_text(&mut s).unwrap();
        assert_eq!(s, "13: count 2\n  btree node extents level 0: 1\n");
    }

    #[test]
    fn ring_space_and_alloc() {
        let mut ja = JournalDevice::new(&[100, 101, 102, 103], 8).unwrap();
        // Fresh: nothing in bucket 0; 3 free after it, one kept back.
        assert_eq!(ja.buckets_available(SpaceFrom::Discarded), 2);
        assert_eq!(ja.space(SpaceFrom::Discarded, &[]), JournalSpace { next_entry: 8, total: 8 + 8 });
        assert_eq!(ja.write_alloc(3, 1), Some(101 * 8));
        assert_eq!((ja.cur_idx, ja.sectors_free), (1, 5));
        assert_eq!(ja.write_alloc(5, 2), Some(101 * 8 + 3));
        assert_eq!(ja.write_alloc(1, 3), Some(102 * 8));
        // Buckets 2 of 4 used past dirty_idx 0: nothing free any more.
        assert_eq!(ja.write_alloc(8, 4), None);
        ja.advance_dirty(3, 3);
        assert_eq!((ja.dirty_idx, ja.dirty_idx_ondisk), (2, 2));
        assert!(ja.do_discards());
        assert_eq!(ja.discard_idx, 2);
        assert_eq!(ja.write_alloc(8, 4), Some(103 * 8));
        assert_eq!(ja.write_alloc(8, 5), Some(100 * 8), "wraps around");
        assert_eq!(ja.bucket_seq[..], [5, 2, 3, 4]);
        assert_eq!(ja.seq_to_flush(), 3);
    }

    use std::string::String;
}
