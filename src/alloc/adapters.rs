// SPDX-License-Identifier: GPL-2.0
//! The foreground allocator behind the write side's two space traits:
//! [`BtreeNodeReserve`] is the btree's [`BtreeNodeAlloc`] (C's btree
//! reserve, `bch2_btree_reserve_get()` taking nodes from
//! `c->btree_write_point`), [`WpDataAlloc`] is `fs_common`'s [`DataAlloc`]
//! (`bch2_alloc_sectors_start_trans()` for a data write, through a hashed
//! write point).
//!
//! Both hold the open bucket references of the space they handed out
//! (`bch2_open_bucket_get()`); [`release`](BtreeNodeReserve::release) puts
//! them and must be called only after the commit that makes the space
//! reachable (the commit's alloc trigger has then reported the bucket with
//! [`Allocator::bucket_updated`]).  Dropping an adapter releases too: space
//! of an abandoned transaction goes back to being free, as C's.

use super::foreground::{Allocator, OpenBuckets, Watermark, WritePointSpec};
use super::source::FreespaceSource;
use crate::util::Shared;
use crate::btree::node::NodeSpace;
use crate::btree::BtreeNodeAlloc;
use crate::errcode::Errno;
use crate::fs_common::trans::{DataAlloc, DataSpace};
use crate::platform::{BlockDev, Mutex, Vec, WriteFlags};

/// Space for btree nodes from the btree write point.
pub struct BtreeNodeReserve<'a> {
    /// The allocator.
    pub alloc: Shared<'a, Allocator>,
    /// The btrees it reads for [`BtreeNodeAlloc::alloc`]; `None`: only
    /// [`BtreeNodeAlloc::alloc_for`], which reads through the btree the
    /// node is for (a mount's node allocator cannot hold a reference to
    /// the btree that holds it).
    pub src: Option<&'a (dyn FreespaceSource + Sync)>,
    /// [`Watermark::Btree`] normally; `InteriorUpdates` for a split that
    /// must not fail.
    pub watermark: Watermark,
    held: Mutex<Vec<OpenBuckets>>,
    /// Set once `held` gets an entry, cleared by [`release`](Self::release)
    /// before it empties it: a release with nothing held takes no lock.
    any_held: core::sync::atomic::AtomicBool,
}

impl<'a> BtreeNodeReserve<'a> {
    /// A reserve over `alloc`.
    ///
    /// Errors: `ENOMEM`.
    pub fn new(alloc: impl Into<Shared<'a, Allocator>>, src: Option<&'a (dyn FreespaceSource + Sync)>, watermark: Watermark) -> Result<Self, Errno> {
        Ok(BtreeNodeReserve { alloc: alloc.into(), src, watermark, held: Mutex::new(Vec::new())?, any_held: core::sync::atomic::AtomicBool::new(false) })
    }

    /// Puts the references on the buckets of the nodes handed out so far;
    /// call once their pointers are committed.
    pub fn release(&self) {
        if !self.any_held.swap(false, core::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let mut h = self.held.lock();
        while let Some(mut o) = h.pop() {
            self.alloc.open_buckets_put(&mut o);
        }
    }

    /// Nodes handed out and not released.
    pub fn nr_held(&self) -> usize {
        self.held.lock().len()
    }
}

impl BtreeNodeReserve<'_> {
    /// A node from the btree write point, free space read from `src`; its
    /// open bucket references are held.
    fn take(&self, src: &(dyn FreespaceSource + Sync), sectors: u32) -> Result<NodeSpace, Errno> {
        let (p, mut obs) = self.alloc.alloc_btree_node(src, sectors, self.watermark).map_err(|e| e.errno())?;
        if self.held.lock().push(obs).is_err() {
            self.alloc.open_buckets_put(&mut obs);
            return Err(Errno::ENOMEM);
        }
        self.any_held.store(true, core::sync::atomic::Ordering::Release);
        Ok(NodeSpace { dev: p.dev, offset: p.offset, gen: p.gen })
    }
}

impl BtreeNodeAlloc for BtreeNodeReserve<'_> {
    /// Errors: `EINVAL` without a source of its own (see [`Self::src`]).
    fn alloc(&self, sectors: u32) -> Result<NodeSpace, Errno> {
        self.take(self.src.ok_or(Errno::EINVAL)?, sectors)
    }

    fn alloc_for(&self, c: &crate::btree::BtreeFs<'_>, sectors: u32) -> Result<NodeSpace, Errno> {
        match self.src {
            Some(src) => self.take(src, sectors),
            None => self.take(c, sectors),
        }
    }

    fn free(&self, space: NodeSpace, journal_seq: u64) {
        // The node's sectors are given back by the trigger of its
        // pointer's deletion (dirty sectors drop, the bucket empties); the
        // commit reports the emptied bucket with bucket_updated(..,
        // journal_seq), which keeps it from reuse until that seq is on
        // disk.  Nothing to do here.
        let _ = (space, journal_seq);
    }
}

impl Drop for BtreeNodeReserve<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Space for user data through one write point, written to `dev`.
pub struct WpDataAlloc<'a> {
    /// The allocator.
    pub alloc: &'a Allocator,
    /// The btrees it reads.
    pub src: &'a dyn FreespaceSource,
    /// The write point (`writepoint_hashed()` of the inode, say).
    pub wp: WritePointSpec,
    /// `Normal` for data.
    pub watermark: Watermark,
    /// The device of index `dev_idx`.
    pub dev: &'a dyn BlockDev,
    /// Its index.
    pub dev_idx: u8,
    held: Vec<OpenBuckets>,
}

impl<'a> WpDataAlloc<'a> {
    /// An allocator of data space on `dev` (index `dev_idx`) through
    /// write point `wp`.
    pub fn new(alloc: &'a Allocator, src: &'a dyn FreespaceSource, wp: WritePointSpec, dev: &'a dyn BlockDev, dev_idx: u8) -> Self {
        WpDataAlloc { alloc, src, wp, watermark: Watermark::Normal, dev, dev_idx, held: Vec::new() }
    }

    /// Puts the references on the buckets of the space handed out; call
    /// once the extents are committed.
    pub fn release(&mut self) {
        while let Some(mut o) = self.held.pop() {
            self.alloc.open_buckets_put(&mut o);
        }
    }
}

impl DataAlloc for WpDataAlloc<'_> {
    fn alloc(&mut self, sectors: u32) -> Result<DataSpace, Errno> {
        if sectors == 0 {
            return Err(Errno::EINVAL);
        }
        self.held.reserve(1)?;
        let mut g = self.alloc.alloc_sectors_start(self.src, self.wp, 1, self.watermark).map_err(|e| e.errno())?;
        let n = sectors.min(g.sectors_free());
        let obs = g.open_bucket_get();
        // Reserved above: cannot fail.
        let _ = self.held.push(obs);
        let p = g.append_ptrs(n)?;
        g.done();
        let p = p.get(0).ok_or(Errno::ENOSPC)?;
        Ok(DataSpace { dev: p.dev, offset: p.offset, gen: p.gen, sectors: n })
    }

    fn sectors_free(&self) -> u32 {
        match self.alloc.write_point_sectors_free(self.wp) {
            // The next alloc opens a new bucket.
            0 => self.alloc.with_dev(self.dev_idx, |d| d.bucket_size).unwrap_or(0),
            n => n,
        }
    }

    fn write(&mut self, dev: u8, sector: u64, data: &[u8]) -> Result<(), Errno> {
        if dev != self.dev_idx {
            return Err(Errno::EINVAL);
        }
        self.dev.write_sectors(sector, data, WriteFlags::NONE)
    }

    /// All through [`BlockDev::write_sectors_many`].
    fn write_many(&mut self, writes: &mut [crate::platform::DevWrite<'_>]) {
        for w in writes.iter_mut() {
            w.result = if w.dev == self.dev_idx { Ok(()) } else { Err(Errno::EINVAL) };
        }
        if writes.iter().all(|w| w.result.is_ok()) {
            self.dev.write_sectors_many(writes);
        }
    }
}

impl Drop for WpDataAlloc<'_> {
    fn drop(&mut self) {
        self.release();
    }
}
