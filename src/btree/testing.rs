// SPDX-License-Identifier: GPL-2.0
//! Host-only test doubles for the btree write side (never in the module):
//! an in-memory device, a journal that records its entries and pins, and a
//! bump allocator for node space.  Used by `tests/btree_write.rs` and
//! `benches/btree_write.rs`.

extern crate std;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex as StdMutex;
use std::vec::Vec;

use crate::errcode::{BchError, Errno, Restart};
use crate::journal::res::{JournalRes, JournalSink, PinOwner, ResFlags};
use crate::platform::{BlockDev, WriteFlags, SECTOR_SIZE};

use super::cache::NodeSpace;
use super::trans::BtreeNodeAlloc;

/// An in-memory device of 512-byte sectors.
pub struct MemDev(pub StdMutex<Vec<u8>>);

impl MemDev {
    /// A zeroed device of `bytes`.
    pub fn new(bytes: usize) -> Self {
        MemDev(StdMutex::new(std::vec![0u8; bytes]))
    }
}

impl BlockDev for MemDev {
    fn name(&self) -> &str {
        "mem"
    }
    fn nr_sectors(&self) -> u64 {
        (self.0.lock().unwrap_or_else(|e| e.into_inner()).len() / SECTOR_SIZE) as u64
    }
    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let s = usize::try_from(sector).map_err(|_| Errno::EIO)? * SECTOR_SIZE;
        buf.copy_from_slice(d.get(s..s + buf.len()).ok_or(Errno::EIO)?);
        Ok(())
    }
    fn write_sectors(&self, sector: u64, buf: &[u8], _f: WriteFlags) -> Result<(), Errno> {
        let mut d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let s = usize::try_from(sector).map_err(|_| Errno::EIO)? * SECTOR_SIZE;
        d.get_mut(s..s + buf.len()).ok_or(Errno::EIO)?.copy_from_slice(buf);
        Ok(())
    }
}

/// A recorded journal entry: (seq, type, btree, level, payload).
pub type Entry = (u64, u8, u8, u8, Vec<u8>);

/// A journal that records entries and pins; every reservation gets its
/// own sequence number.
#[derive(Default)]
pub struct MemJournal {
    /// The next sequence number.
    pub seq: AtomicU64,
    /// Every entry added, in order.
    pub entries: StdMutex<Vec<Entry>>,
    /// Pin counts by sequence number.
    pub pins: StdMutex<BTreeMap<u64, i64>>,
    /// Reservations not yet put.
    pub open_res: AtomicU64,
    /// Nonblocking reservations still to refuse with
    /// [`Restart::JournalResGet`].
    pub refuse_nonblock: AtomicU32,
}

impl MemJournal {
    /// A journal whose first entry is sequence number 1.
    pub fn new() -> Self {
        MemJournal { seq: AtomicU64::new(1), ..Default::default() }
    }

    /// Pins held, all sequence numbers together.
    pub fn pins_held(&self) -> i64 {
        self.pins.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }
}

impl JournalSink for MemJournal {
    fn res_get(&self, u64s: u32, flags: ResFlags) -> Result<JournalRes, BchError> {
        if flags.nonblock && self.refuse_nonblock.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)).is_ok() {
            return Err(BchError::Restart(Restart::JournalResGet));
        }
        self.open_res.fetch_add(1, Relaxed);
        let seq = self.seq.fetch_add(1, Relaxed);
        Ok(JournalRes { seq, offset_u64s: 0, u64s, idx: 0 })
    }
    fn res_add_entry(&self, res: &mut JournalRes, ty: u8, btree: u8, level: u8, data: &[u8]) -> Result<(), Errno> {
        let need = 1 + data.len() as u32 / 8;
        if data.len() % 8 != 0 || need > res.u64s {
            return Err(Errno::EINVAL);
        }
        res.u64s -= need;
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).push((res.seq, ty, btree, level, data.to_vec()));
        Ok(())
    }
    fn res_put(&self, _res: JournalRes) {
        self.open_res.fetch_sub(1, Relaxed);
    }
    fn pin_get(&self, seq: u64, _owner: PinOwner) {
        *self.pins.lock().unwrap_or_else(|e| e.into_inner()).entry(seq).or_default() += 1;
    }
    fn pin_put(&self, seq: u64, _owner: PinOwner) {
        let mut p = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        let e = p.entry(seq).or_default();
        *e -= 1;
        assert!(*e >= 0, "pin {seq} put more than taken");
    }
    fn flush_seq(&self, _seq: u64) -> Result<(), Errno> {
        Ok(())
    }
    fn cur_seq(&self) -> u64 {
        self.seq.load(Relaxed)
    }
}

/// A bump allocator of node space that reuses freed nodes at once (no
/// crash safety: tests only).
pub struct BumpAlloc {
    /// Next sector to hand out.
    pub next: AtomicU64,
    /// End of the space, sectors.
    pub end: u64,
    /// Freed nodes, reused first.
    pub free: StdMutex<Vec<u64>>,
    /// Nodes freed so far.
    pub frees: AtomicU64,
}

impl BumpAlloc {
    /// Space from sector `start` to `end`.
    pub fn new(start: u64, end: u64) -> Self {
        BumpAlloc { next: AtomicU64::new(start), end, free: StdMutex::new(Vec::new()), frees: AtomicU64::new(0) }
    }
}

impl BtreeNodeAlloc for BumpAlloc {
    fn alloc(&self, sectors: u32) -> Result<NodeSpace, Errno> {
        if let Some(s) = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(NodeSpace { dev: 0, offset: s, gen: 0 });
        }
        let s = self.next.fetch_add(u64::from(sectors), Relaxed);
        if s + u64::from(sectors) > self.end {
            return Err(Errno::ENOSPC);
        }
        Ok(NodeSpace { dev: 0, offset: s, gen: 0 })
    }
    fn free(&self, space: NodeSpace, _journal_seq: u64) {
        self.frees.fetch_add(1, Relaxed);
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(space.offset);
    }
}
