// SPDX-License-Identifier: GPL-2.0
//! The btree node cache: nodes read from the device, keyed by the device
//! sector their pointer names, each holding its keys merged and sorted
//! (unpacked keys with their values), bounded in bytes, least recently
//! used nodes evicted first.
//!
//! Matches, in `fs/bcachefs`: `btree_cache.c` (`bch2_btree_node_get()`,
//! `bch2_btree_node_fill()`, `btree_node_reclaim()`,
//! `bch2_btree_cache_scan()`) and the read half of `btree_io.c`
//! (`bch2_btree_node_read()`, `bch2_btree_node_read_done()`, whose checks
//! are in [`crate::format::btree_node`]).
//!
//! Locking: the index (a vector sorted by sector) is behind a
//! [`Mutex`]; each node carries a [`crate::sync::SixLock`].  A reader takes the node's
//! lock for read while it still holds the index lock (a try-lock that
//! cannot fail: only eviction takes write, and only under the index lock),
//! and keeps it while it uses the node ([`NodeRef`]).  Eviction, under the
//! index lock, try-locks intent then write and skips nodes it cannot lock,
//! as `btree_node_reclaim()` does.  Nodes are shared by reference count,
//! so an evicted node's memory lives until its last user drops it.  The
//! device is never read under the index lock.

use crate::util::time_stats::TimeStats;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::{Acquire, Relaxed, Release}};

use crate::errcode::{AllocError, Errno};
use crate::format::bkey::{Bkey, BtreeIdName, KeyError, KeyType, NodeType};
use crate::format::bpos::Bpos;
use crate::format::btree_node::{bset_magic, BtreeNode, NodeError, NodeExpect, NodeReadOpts};
use crate::format::list::FsInfo;
use crate::format::val::extent::{BtreePtrV2, ExtentEntries, ExtentEntry};
use crate::platform::{arc_new, Arc, BlockDev, Mutex, MutexGuard, Vec, SECTOR_SIZE};
use crate::sync::SixLockType;

pub use super::node::{flags, Node, NodeData, NodeLock, NodeRef, NodeSpace, NodeWrite};


/// Why a node could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeReadError {
    /// The device failed the read.
    Io(Errno),
    /// The node is corrupt (checksum, magic, header, keys).
    Node(NodeError),
    /// The pointer to it is unusable.
    Ptr(KeyError),
    /// A btree pointer without a device pointer.
    NoPtr,
    /// The pointer names another device.
    OtherDevice(u8),
    /// The cached node at that sector belongs to another btree or level.
    WrongNode,
    /// Out of memory.
    NoMem,
}

impl From<AllocError> for NodeReadError {
    fn from(_: AllocError) -> Self {
        NodeReadError::NoMem
    }
}

impl NodeReadError {
    /// The errno a reader gets: `ENOMEM`, else `EIO`.
    pub fn errno(&self) -> Errno {
        match self {
            NodeReadError::NoMem => Errno::ENOMEM,
            _ => Errno::EIO,
        }
    }
}

impl fmt::Display for NodeReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeReadError::Io(e) => write!(f, "read error {e}"),
            NodeReadError::Node(e) => write!(f, "{e}"),
            NodeReadError::Ptr(e) => write!(f, "bad pointer: {e}"),
            NodeReadError::NoPtr => f.write_str("btree pointer without a device pointer"),
            NodeReadError::OtherDevice(d) => write!(f, "pointer to device {d}: multi-device is not supported"),
            NodeReadError::WrongNode => f.write_str("pointer to a node of another btree or level"),
            NodeReadError::NoMem => f.write_str("out of memory"),
        }
    }
}

struct Entry {
    sector: u64,
    last_used: u64,
    /// Bytes counted for it in `Index::bytes` when it was inserted.
    bytes: usize,
    node: Arc<Node>,
}

struct Index {
    /// Sorted by sector.
    entries: Vec<Entry>,
    bytes: usize,
    clock: u64,
}

impl Index {
    fn new() -> Self {
        Index { entries: Vec::new(), bytes: 0, clock: 0 }
    }

    fn find(&self, sector: u64) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&sector, |e| e.sector)
    }

    fn remove(&mut self, i: usize) -> Option<Entry> {
        if i >= self.entries.len() {
            return None;
        }
        self.entries[i..].rotate_left(1);
        self.entries.pop()
    }

    fn insert(&mut self, i: usize, e: Entry) -> Result<(), AllocError> {
        self.entries.push(e)?;
        let n = self.entries.len();
        if i < n {
            self.entries[i..].rotate_right(1);
        }
        Ok(())
    }

    /// Frees unlocked nodes, least recently used first, while `more` says
    /// so and at most `nr`; returns how many were freed.
    fn evict(&mut self, nr: usize, more: impl Fn(&Index) -> bool) -> usize {
        let mut order: Vec<(u64, u64)> = Vec::new();
        if order.reserve(self.entries.len()).is_err() {
            return 0;
        }
        for e in self.entries.iter() {
            // Uses through a `NodeMemo` touch the node, not the entry.
            let used = e.last_used.max(e.node.touched());
            if order.push((used, e.sector)).is_err() {
                return 0;
            }
        }
        crate::util::sort::sort(&mut order);
        let mut freed = 0;
        for &(_, sector) in order.iter() {
            if freed >= nr || !more(self) {
                break;
            }
            let Ok(i) = self.find(sector) else { continue };
            if self.entries[i].node.pinned_in_cache() {
                // Never evict a dirty node, or one being written.
                continue;
            }
            let lock = &self.entries[i].node.lock;
            if !lock.trylock(SixLockType::Intent) {
                continue;
            }
            if !lock.trylock(SixLockType::Write) {
                lock.unlock(SixLockType::Intent);
                continue;
            }
            if self.entries[i].node.pinned_in_cache() {
                // Dirtied between the check and the lock.
                lock.unlock(SixLockType::Write);
                lock.unlock(SixLockType::Intent);
                continue;
            }
            if let Some(e) = self.remove(i) {
                self.bytes = self.bytes.saturating_sub(e.bytes);
                e.node.set_flags(flags::FREED);
                e.node.lock.unlock(SixLockType::Write);
                e.node.lock.unlock(SixLockType::Intent);
                freed += 1;
            }
        }
        freed
    }
}

/// The cache (`struct btree_cache`).
///
/// The shrinker entry points ([`bytes`](Self::bytes),
/// [`count`](Self::count), [`shrink`](Self::shrink)) never wait for the
/// index lock: memory reclaim may call them from a thread that holds it
/// (an allocation under the lock), as `bch2_btree_cache_scan()` only
/// try-locks without `__GFP_FS`.
pub struct BtreeCache {
    index: Mutex<Index>,
    /// The index lock is held (set right after taking it, cleared before
    /// dropping it); [`shrink`](Self::shrink) backs off while it is.
    busy: AtomicBool,
    /// Mirrors of the index's byte and node counts, for lock-free reads.
    nr_bytes: AtomicUsize,
    nr_nodes: AtomicUsize,
    /// Mirror of the index's use clock, for [`NodeMemo`] hits.
    clock: AtomicU64,
    max_bytes: usize,
    /// 512-byte sectors read from the device for nodes.
    pub sectors_read: AtomicU64,
    /// `btree_node_read` time stat: node reads, from the read's start to
    /// the node built (`bch2_btree_node_read()` to `btree_node_read_work()`
    /// of `btree_io.c`).
    pub node_read_time: TimeStats,
    /// `btree_node_read_done` time stat: checking and sorting a node read
    /// (`bch2_btree_node_read_done()`).
    pub node_read_done_time: TimeStats,
}

/// The index, locked; publishes the counts and clears `busy` on drop.
struct IndexGuard<'a> {
    g: MutexGuard<'a, Index>,
    c: &'a BtreeCache,
}

impl Deref for IndexGuard<'_> {
    type Target = Index;
    fn deref(&self) -> &Index {
        &self.g
    }
}

impl DerefMut for IndexGuard<'_> {
    fn deref_mut(&mut self) -> &mut Index {
        &mut self.g
    }
}

impl Drop for IndexGuard<'_> {
    fn drop(&mut self) {
        self.c.nr_bytes.store(self.g.bytes, Relaxed);
        self.c.nr_nodes.store(self.g.entries.len(), Relaxed);
        self.c.clock.store(self.g.clock, Relaxed);
        self.c.busy.store(false, Release);
    }
}

/// The nodes a thread's transactions found last, by sector (a few,
/// direct-mapped), kept with their reused buffers: a traversal that finds
/// the node its pointer names here, not freed, skips the cache's index and
/// its lock ([`BtreeCache::get_node_memo`]).  C finds nodes in an RCU hash
/// table without a lock; this is the lock-free part of that for the nodes
/// a workload keeps coming back to.
#[derive(Default)]
pub struct NodeMemo {
    slots: [Option<Arc<Node>>; NodeMemo::SLOTS],
}

impl NodeMemo {
    const SLOTS: usize = 8;

    fn slot(sector: u64) -> usize {
        (sector.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 61) as usize % Self::SLOTS
    }

    /// Forgets every node.
    pub fn clear(&mut self) {
        self.slots = Default::default();
    }

    /// Forgets the nodes freed since (evicted or replaced), so that their
    /// memory goes.
    pub fn forget_freed(&mut self) {
        for s in self.slots.iter_mut() {
            if s.as_ref().is_some_and(|n| n.has(flags::FREED)) {
                *s = None;
            }
        }
    }
}

/// Where a node is and what its parent says it is.
#[derive(Clone, Copy, Debug)]
pub struct NodePtr<'a> {
    /// Btree id.
    pub btree: u8,
    /// Level of the node.
    pub level: u8,
    /// The pointer key (its position is the node's `max_key`).
    pub key: &'a Bkey,
    /// Its value: `btree_ptr_v2` or `btree_ptr`.
    pub val: &'a [u8],
}

impl NodePtr<'_> {
    /// The decoded `btree_ptr_v2` header, if it is one, and the device
    /// pointer: (v2, device, sector).
    fn decode(&self) -> Result<(Option<BtreePtrV2>, u8, u64, u8), NodeReadError> {
        let (v2, ptrs) = match KeyType::from_u8(self.key.key_type) {
            Some(KeyType::BtreePtrV2) => (BtreePtrV2::decode(self.val), self.val.get(40..).unwrap_or(&[])),
            Some(KeyType::BtreePtr) => (None, self.val),
            _ => {
                return Err(NodeReadError::Ptr(KeyError::InvalidTypeForBtree {
                    ty: self.key.key_type,
                    node: NodeType::new(self.level + 1, u32::from(self.btree)),
                }))
            }
        };
        let p = ExtentEntries::new(ptrs)
            .find_map(|e| match e {
                Ok(ExtentEntry::Ptr(p)) => Some(p),
                _ => None,
            })
            .ok_or(NodeReadError::NoPtr)?;
        Ok((v2, p.dev, p.offset, p.gen))
    }

    /// The device sector of the node, if the pointer decodes.
    pub fn sector(&self) -> Option<u64> {
        self.decode().ok().map(|d| d.2)
    }
}

impl BtreeCache {
    /// An empty cache holding at most `max_bytes` of unused nodes.
    ///
    /// Errors: [`AllocError`].
    pub fn new(max_bytes: usize) -> Result<Self, AllocError> {
        Ok(BtreeCache {
            index: Mutex::new(Index::new())?,
            busy: AtomicBool::new(false),
            nr_bytes: AtomicUsize::new(0),
            nr_nodes: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
            max_bytes,
            sectors_read: AtomicU64::new(0),
            node_read_time: TimeStats::new(),
            node_read_done_time: TimeStats::new(),
        })
    }

    fn lock(&self) -> IndexGuard<'_> {
        let g = self.index.lock();
        self.busy.store(true, Release);
        IndexGuard { g, c: self }
    }

    /// Bytes held by cached nodes (lock-free).
    pub fn bytes(&self) -> usize {
        self.nr_bytes.load(Relaxed)
    }

    /// Nodes cached (lock-free).
    pub fn count(&self) -> usize {
        self.nr_nodes.load(Relaxed)
    }

    /// Frees up to `nr` unlocked nodes, least recently used first
    /// (`bch2_btree_cache_scan()`); returns how many were freed.  Returns
    /// 0 at once while the index lock is held.
    pub fn shrink(&self, nr: usize) -> usize {
        if self.busy.load(Acquire) {
            return 0;
        }
        self.lock().evict(nr, |_| true)
    }

    /// The node `ptr` points to, held for read: from the cache, else read
    /// from `dev`, checked against the pointer and inserted
    /// (`bch2_btree_node_get()`).  `search` is only for the error message.
    ///
    /// Errors: [`NodeReadError`]; every error but `NoMem` is logged
    /// (rate-limited) with the device, btree, level, sector and position.
    pub fn get<D: BlockDev + ?Sized>(
        &self,
        dev: &D,
        fs: &FsInfo,
        ptr: NodePtr<'_>,
        search: Bpos,
    ) -> Result<NodeRef, NodeReadError> {
        let r = self.get_inner(dev, fs, ptr);
        if let Err(e) = r {
            if e != NodeReadError::NoMem {
                crate::platform::log::err_ratelimited!(
                    "{}: btree {} level {} node at sector {} (searching {}): {}",
                    dev.name(),
                    BtreeIdName(u32::from(ptr.btree)),
                    ptr.level,
                    ptr.sector().unwrap_or(0),
                    search,
                    e
                );
            }
        }
        r
    }

    fn get_inner<D: BlockDev + ?Sized>(&self, dev: &D, fs: &FsInfo, ptr: NodePtr<'_>) -> Result<NodeRef, NodeReadError> {
        let (node, locked) = self.get_node_inner(dev, fs, ptr, true)?;
        if locked {
            // SAFETY: taken in get_node_inner under the index lock.
            return Ok(unsafe { NodeLock::from_held(node, SixLockType::Read) });
        }
        Ok(NodeLock::lock(node, SixLockType::Read))
    }

    /// The node `ptr` points to, not locked: from the cache, else read
    /// from `dev`, checked against the pointer and inserted.  The write
    /// side's paths lock it themselves and then check it was not freed
    /// meanwhile ([`flags::FREED`]).
    ///
    /// Errors: as [`get`](Self::get), logged the same way.
    pub fn get_node<D: BlockDev + ?Sized>(
        &self,
        dev: &D,
        fs: &FsInfo,
        ptr: NodePtr<'_>,
        search: Bpos,
    ) -> Result<Arc<Node>, NodeReadError> {
        let r = self.get_node_inner(dev, fs, ptr, false).map(|(n, _)| n);
        if let Err(e) = r {
            if e != NodeReadError::NoMem {
                crate::platform::log::err_ratelimited!(
                    "{}: btree {} level {} node at sector {} (searching {}): {}",
                    dev.name(),
                    BtreeIdName(u32::from(ptr.btree)),
                    ptr.level,
                    ptr.sector().unwrap_or(0),
                    search,
                    e
                );
            }
        }
        r
    }

    /// [`get_node`](Self::get_node) through `memo`: a node found there at
    /// the pointer's sector, of the pointer's btree and level, and not
    /// freed, is the one the index holds (a node leaves the index only
    /// freed: evicted, or replaced at its sector), so it is returned
    /// without the index lock, and touched for the eviction order.
    ///
    /// Errors: as [`get_node`](Self::get_node).
    pub fn get_node_memo<D: BlockDev + ?Sized>(
        &self,
        memo: &mut NodeMemo,
        dev: &D,
        fs: &FsInfo,
        ptr: NodePtr<'_>,
        search: Bpos,
    ) -> Result<Arc<Node>, NodeReadError> {
        let (_, devi, sector, _) = ptr.decode()?;
        let slot = NodeMemo::slot(sector);
        if let Some(n) = memo.slots[slot].as_ref() {
            if devi == fs.dev_idx && n.sector == sector && n.btree == ptr.btree && n.level == ptr.level && !n.has(flags::FREED) {
                n.touch(self.clock.load(Relaxed));
                return Ok(n.clone());
            }
        }
        let n = self.get_node(dev, fs, ptr, search)?;
        memo.slots[slot] = Some(n.clone());
        Ok(n)
    }

    /// Returns the node and whether its read lock was taken (with
    /// `lock_read`, tried under the index lock so that eviction sees it
    /// in use).
    fn get_node_inner<D: BlockDev + ?Sized>(
        &self,
        dev: &D,
        fs: &FsInfo,
        ptr: NodePtr<'_>,
        lock_read: bool,
    ) -> Result<(Arc<Node>, bool), NodeReadError> {
        let (v2, devi, sector, gen) = ptr.decode()?;
        if devi != fs.dev_idx {
            return Err(NodeReadError::OtherDevice(devi));
        }
        if let Some(r) = self.lookup(sector, &ptr, lock_read)? {
            return Ok(r);
        }
        let start = crate::sync::now_ns();
        let (node, node_bytes) = read_node(dev, fs, &ptr, v2, sector, gen, self)?;
        self.node_read_time.update_from(start);
        let mut ix = self.lock();
        ix.clock += 1;
        let clock = ix.clock;
        let node = match ix.find(sector) {
            Ok(i) => {
                // Someone read it meanwhile: use theirs, drop ours.
                let e = &mut ix.entries[i];
                e.last_used = clock;
                e.node.clone()
            }
            Err(i) => {
                let bytes = node_bytes;
                if ix.insert(i, Entry { sector, last_used: clock, bytes, node: node.clone() }).is_ok() {
                    ix.bytes += bytes;
                }
                // Not indexed on ENOMEM: still usable by this reader.
                node
            }
        };
        // Taken under the index lock, so eviction (below, or by another
        // thread) sees the node in use.
        let locked = lock_read && node.lock.trylock(SixLockType::Read);
        let max = self.max_bytes;
        if ix.bytes > max {
            ix.evict(usize::MAX, |ix| ix.bytes > max);
        }
        drop(ix);
        Ok((node, locked))
    }

    fn lookup(&self, sector: u64, ptr: &NodePtr<'_>, lock_read: bool) -> Result<Option<(Arc<Node>, bool)>, NodeReadError> {
        let mut ix = self.lock();
        ix.clock += 1;
        let clock = ix.clock;
        let Ok(i) = ix.find(sector) else { return Ok(None) };
        let e = &mut ix.entries[i];
        if e.node.btree != ptr.btree || e.node.level != ptr.level {
            return Err(NodeReadError::WrongNode);
        }
        e.last_used = clock;
        let node = e.node.clone();
        // Never block under the index lock: a writer may hold the node.
        let locked = lock_read && node.lock.trylock(SixLockType::Read);
        Ok(Some((node, locked)))
    }

    /// Indexes a node the write side built (a new node of an interior
    /// update), replacing whatever was cached at its sector (a node freed
    /// earlier whose space was reused).
    ///
    /// Errors: [`AllocError`].
    pub fn insert_new(&self, node: &Arc<Node>, bytes: usize) -> Result<(), AllocError> {
        let mut ix = self.lock();
        ix.clock += 1;
        let clock = ix.clock;
        let sector = node.sector;
        let e = Entry { sector, last_used: clock, bytes, node: node.clone() };
        match ix.find(sector) {
            Ok(i) => {
                let old = core::mem::replace(&mut ix.entries[i], e);
                old.node.set_flags(flags::FREED);
                ix.bytes = ix.bytes.saturating_sub(old.bytes) + bytes;
            }
            Err(i) => {
                ix.insert(i, e)?;
                ix.bytes += bytes;
            }
        }
        Ok(())
    }

    /// Drops the node at `sector` from the index if it is `node`
    /// (`bch2_btree_node_hash_remove()`), after an interior update freed
    /// it.
    pub fn remove(&self, node: &Arc<Node>) {
        let mut ix = self.lock();
        if let Ok(i) = ix.find(node.sector) {
            if Arc::ptr_eq(&ix.entries[i].node, node) {
                if let Some(e) = ix.remove(i) {
                    ix.bytes = ix.bytes.saturating_sub(e.bytes);
                }
            }
        }
    }

    /// The cached nodes with any of `mask`'s flags set (dirty nodes to
    /// write, for instance).
    ///
    /// Errors: [`AllocError`].
    pub fn nodes_with(&self, mask: u32) -> Result<Vec<Arc<Node>>, AllocError> {
        let ix = self.lock();
        let mut v = Vec::new();
        for e in ix.entries.iter() {
            if e.node.has(mask) {
                v.push(e.node.clone())?;
            }
        }
        Ok(v)
    }
}

/// Reads and checks the node `ptr` points to and builds its key array
/// (`bch2_btree_node_read()` + `bch2_btree_node_read_done()`).  Returns
/// the node and the bytes it holds.  In a frame of its own: a `Node` is
/// large, and [`BtreeCache::get_node`] is on every traversal's stack (a
/// kernel stack is 16 KiB), while reads are rare.
#[inline(never)]
fn read_node<D: BlockDev + ?Sized>(
    dev: &D,
    fs: &FsInfo,
    ptr: &NodePtr<'_>,
    v2: Option<BtreePtrV2>,
    sector: u64,
    gen: u8,
    cache: &BtreeCache,
) -> Result<(Arc<Node>, usize), NodeReadError> {
    let written = v2.map_or(0, |b| b.sectors_written as usize);
    let bytes = if written != 0 { written * SECTOR_SIZE } else { fs.node_bytes as usize };
    let bytes = bytes.min(fs.node_bytes as usize).max(SECTOR_SIZE);
    let mut buf: Vec<u8> = Vec::new();
    buf.resize(bytes.div_ceil(SECTOR_SIZE) * SECTOR_SIZE, 0)?;
    dev.read_sectors(sector, &mut buf).map_err(NodeReadError::Io)?;
    cache.sectors_read.fetch_add((buf.len() / SECTOR_SIZE) as u64, Relaxed);
    let done_start = crate::sync::now_ns();
    let opts = NodeReadOpts {
        bset_magic: bset_magic(&fs.uuid),
        block_bytes: fs.block_bytes,
        node_bytes: fs.node_bytes,
        expect: Some(NodeExpect { btree_id: u32::from(ptr.btree), level: ptr.level, max_key: ptr.key.p, ptr_v2: v2 }),
        journal_blacklist: &fs.blacklist,
        verify_csum: true,
    };
    let bn = BtreeNode::read(&buf, &opts).map_err(NodeReadError::Node)?;
    let sorted = bn.sorted().map_err(NodeReadError::Node)?;
    bn.check_values(&sorted, &fs.ctx()).map_err(NodeReadError::Node)?;
    let f = *bn.format();
    let mut data = NodeData::default();
    data.format = f;
    data.written = bn.written_sectors;
    data.node_seq = bn.header.node_seq();
    data.journal_seq = bn.bsets.iter().filter(|b| !b.blacklisted).map(|b| b.header.journal_seq).max().unwrap_or(0);
    data.reserve(buf.len(), sorted.len())?;
    for k in sorted.iter(&bn) {
        data.push_sorted(&k.unpack(&f), k.val(&f))?;
    }
    let space = NodeSpace { dev: fs.dev_idx, offset: sector, gen };
    let nb = data.bytes();
    let node = Node::new(ptr.btree, ptr.level, space, bn.header.min_key, bn.header.max_key, bn.header.bset.seq, data, 0);
    node.set_ptr_sectors_written(v2.map_or(0, |b| u32::from(b.sectors_written)));
    cache.node_read_done_time.update_from(done_start);
    Ok((arc_new(node)?, nb))
}
