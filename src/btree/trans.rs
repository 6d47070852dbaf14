// SPDX-License-Identifier: GPL-2.0
//! Btree transactions: the btree write side's view of the filesystem
//! ([`BtreeFs`]), paths ([`BtreePath`]), iterators, queued updates and
//! the retry loops ([`commit_do`], [`lockrestart_do`]).
//!
//! Matches, in `fs/bcachefs`: `btree_types.h` (`struct btree_trans`,
//! `struct btree_path`, `struct btree_insert_entry`), `btree_iter.c`
//! (path traversal, peek/next/prev), `btree_locking.c` (lock ordering,
//! relock) and `btree_update.c` (`bch2_trans_update()`,
//! `bch2_trans_update_extent()`).
//!
//! # Locking
//!
//! A transaction never blocks on a node lock while it holds another one:
//! it tries the lock, and when that fails it drops every lock it holds,
//! waits for the one it wanted, and restarts
//! ([`Restart::WouldDeadlock`]).  The only wait under locks is for the
//! write lock of a node the transaction holds intent on, which waits for
//! readers only, and readers never wait while holding a lock.  This is
//! deadlock-free without C's cycle detector, at the cost of more restarts
//! under contention.
//!
//! Paths keep their nodes locked between calls (read, or intent below
//! `locks_want`).  Every leaf a key was read from is remembered with its
//! lock sequence number; the commit drops the paths' locks, locks the
//! leaves it writes, and restarts ([`Restart::Relock`]) when any leaf the
//! transaction read was written since (`bch2_trans_relock()` semantics).

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::errcode::{AllocError, BchError, Errno, Restart};
use crate::format::bkey::{btree_flags, Bkey, BkeyI, BtreeId, BtreeIdName, KeyType, NodeType, BKEY_U64S, BTREE_IDS};
use crate::format::bpos::{Bpos, POS_MIN, SPOS_MAX};
use crate::format::btree_node::bset_magic;
use crate::format::list::{FsInfo, Root};
use crate::format::val::extent::{BtreePtrV2, ExtentPtr};
use crate::journal::res::JournalSink;
use crate::journal::NR_BTREES;
use crate::platform::{arc_new, Arc, BlockDev, Box, BoxCache, Mutex, Vec};
use crate::sync::SixLockType;
use crate::util::time_stats::TimeStats;
use crate::util::Shared;
use crate::checksum::CsumType;

use super::cache::{flags, BtreeCache, Node, NodeData, NodeLock, NodePtr, NodeSpace};

/// Levels a path can hold (`BTREE_MAX_DEPTH`).
pub const MAX_DEPTH: usize = 4;

/// Size of a `btree_ptr_v2` key with one pointer, u64s (key + 40-byte
/// header + one `bch_extent_ptr`).
pub const BTREE_PTR_U64S: usize = BKEY_U64S + 6;

/// Where btree nodes get their space (the btree reserve of open buckets
/// in C, `bch2_btree_reserve_get()`); the allocator implements it, tests
/// use a bump allocator.
pub trait BtreeNodeAlloc: Sync {
    /// Space for one node of `sectors` 512-byte sectors on one device.
    ///
    /// Errors: `ENOSPC`.
    fn alloc(&self, sectors: u32) -> Result<NodeSpace, Errno>;

    /// [`alloc`](Self::alloc) for a node of `c` (what interior updates
    /// call): an allocator that reads the btrees (the freespace btree, as
    /// C's `bch2_btree_node_alloc()` does through the update's
    /// transaction) reads them through `c`.  The default ignores `c`.
    ///
    /// Errors: `ENOSPC`.
    fn alloc_for(&self, c: &BtreeFs<'_>, sectors: u32) -> Result<NodeSpace, Errno> {
        let _ = c;
        self.alloc(sectors)
    }

    /// The node at `space` is no longer referenced once journal sequence
    /// number `journal_seq` is on disk; its space may be reused after that
    /// (C frees it through the bucket's `journal_seq` in its alloc key).
    fn free(&self, space: NodeSpace, journal_seq: u64);
}

/// The hooks where triggers run (`bch2_trans_commit_run_triggers()` and
/// the atomic triggers of `bch2_trans_commit_write_locked()`).  Written
/// elsewhere (alloc, backpointers, accounting) as functions of the old and
/// the new key.
pub trait BtreeTriggers: Sync {
    /// Transactional trigger: runs before the commit takes its locks, may
    /// queue more updates in `trans`.  `old` is the key at the position
    /// now (`None`: none).
    ///
    /// Errors: any; a restart restarts the transaction.
    fn trans_trigger(
        &self,
        trans: &mut BtreeTrans<'_>,
        btree: u8,
        level: u8,
        old: Option<&BkeyI>,
        new: &BkeyI,
    ) -> Result<(), BchError>;

    /// Whether [`trans_trigger`](Self::trans_trigger) can do anything for
    /// keys of `btree` at `level`: when it cannot, the commit neither
    /// looks up the old key nor calls it (`btree_node_type_has_trans_triggers()`).
    /// The default says it can.
    fn has_trans_trigger(&self, _btree: u8, _level: u8) -> bool {
        true
    }

    /// Whether [`atomic_trigger`](Self::atomic_trigger) can do anything
    /// for keys of `btree` at `level`: when it cannot, the commit does not
    /// look up the old key for it.  The default says it can.
    fn has_atomic_trigger(&self, _btree: u8, _level: u8) -> bool {
        true
    }

    /// Atomic trigger: runs under the leaf's write lock while the key is
    /// inserted, with the journal sequence number of the commit.
    fn atomic_trigger(&self, btree: u8, level: u8, old: Option<(Bkey, &[u8])>, new: (Bkey, &[u8]), journal_seq: u64);
}

/// How nodes are written: geometry and checksum.
#[derive(Clone, Copy, Debug)]
pub struct BtreeGeometry {
    /// Block size, bytes.
    pub block_bytes: u32,
    /// Node size, bytes (`btree_node_size`).
    pub node_bytes: u32,
    /// Checksum type of bsets (`metadata_checksum`).
    pub csum_type: CsumType,
    /// Metadata version stamped on bsets.
    pub version: u16,
    /// The bset magic.
    pub bset_magic: u64,
    /// Device index of the nodes.
    pub dev_idx: u8,
}

impl BtreeGeometry {
    /// From the superblock facts, with `csum_type` and `version`.
    pub fn from_info(info: &FsInfo, csum_type: CsumType, version: u16) -> Self {
        BtreeGeometry {
            block_bytes: info.block_bytes,
            node_bytes: info.node_bytes,
            csum_type,
            version,
            bset_magic: bset_magic(&info.uuid),
            dev_idx: info.dev_idx,
        }
    }

    /// `btree_sectors()`.
    pub fn node_sectors(&self) -> u32 {
        self.node_bytes / 512
    }

    /// u64s a node holds (`btree_max_u64s()`), header excluded.
    pub fn max_u64s(&self) -> usize {
        (self.node_bytes as usize - crate::format::btree_node::BTREE_NODE_BYTES) / 8
    }

    /// `BTREE_FOREGROUND_MERGE_THRESHOLD()`: a node with fewer live u64s
    /// is merged with a sibling.
    pub fn merge_threshold(&self) -> usize {
        self.max_u64s() / 3
    }

    /// `BTREE_SPLIT_THRESHOLD()`: a full node with more live u64s is split
    /// rather than compacted.
    pub fn split_threshold(&self) -> usize {
        self.max_u64s() * 2 / 3
    }
}

/// Counters of the write side, for tests and sysfs.
#[derive(Debug, Default)]
pub struct BtreeStats {
    /// Nodes split in two.
    pub splits: AtomicU64,
    /// Nodes compacted (rewritten whole to new space).
    pub compacts: AtomicU64,
    /// Sibling merges.
    pub merges: AtomicU64,
    /// Of those, merges of interior nodes.
    pub interior_merges: AtomicU64,
    /// New roots (the tree grew).
    pub new_roots: AtomicU64,
    /// Node writes (whole or appended bsets).
    pub node_writes: AtomicU64,
    /// Bytes those wrote.
    pub node_write_bytes: AtomicU64,
    /// Of the node writes, first writes of a node (C's
    /// `BTREE_WRITE_initial`).
    pub node_writes_initial: AtomicU64,
    /// Bytes those wrote.
    pub node_write_bytes_initial: AtomicU64,
    /// Transaction restarts.
    pub restarts: AtomicU64,
    /// Commits.
    pub commits: AtomicU64,
    /// Node writes the device failed (a fatal error for the filesystem,
    /// as C's `btree_node_write_endio()` error path).
    pub node_write_errors: AtomicU64,
    /// `btree_node_split` time stat: splits, from the interior update's
    /// start (`btree_split()` of `btree_update_interior.c`).
    pub split_time: TimeStats,
    /// `btree_node_compact` time stat: nodes rewritten whole to make room
    /// (`btree_split()` without a second node).
    pub compact_time: TimeStats,
    /// `btree_node_merge` time stat (`bch2_foreground_maybe_merge()`).
    pub merge_time: TimeStats,
    /// `btree_interior_update_foreground` time stat: splits, compactions,
    /// rewrites and merges from their start to the update done, new
    /// nodes written (`bch2_btree_update_done()`).
    pub interior_update_foreground_time: TimeStats,
}

/// One btree's root (`struct btree_root`).
pub(crate) struct RootSlot {
    /// The root node, once loaded (or the fake root).
    pub(crate) node: Option<Arc<Node>>,
    /// The pointer to it (none for a btree without a root on disk).
    pub(crate) ptr: Option<Root>,
}

/// The btree write side's view of the filesystem (the btree part of
/// `struct bch_fs`): device, node cache, roots, journal, node allocator
/// and trigger hooks.
pub struct BtreeFs<'a> {
    /// The device.
    pub dev: Shared<'a, dyn BlockDev + Send + Sync>,
    /// Superblock facts (for reading nodes).
    pub info: Shared<'a, FsInfo>,
    /// The node cache, shared with the read side.
    pub cache: Shared<'a, BtreeCache>,
    /// The journal.
    pub journal: Shared<'a, dyn JournalSink + Send>,
    /// Where new nodes get their space.
    pub alloc: Shared<'a, dyn BtreeNodeAlloc + Send>,
    /// Trigger hooks (none: no triggers run).
    pub triggers: Option<Shared<'a, dyn BtreeTriggers + Send>>,
    /// A btree write buffer takes the journal's `write_buffer_keys`
    /// ([`super::write_buffer::BtreeWriteBuffer`] registered as the
    /// journal's entry hook): [`BtreeTrans::update_buffered`] goes through
    /// it.  Without one, buffered updates are ordinary updates.
    pub write_buffer: bool,
    /// Node geometry and checksum.
    pub geo: BtreeGeometry,
    pub(crate) roots: Mutex<Vec<RootSlot>>,
    seq_next: AtomicU64,
    /// Restarts still to inject ([`inject_restarts`](Self::inject_restarts)).
    fault_inject: AtomicU32,
    /// Counters.
    pub stats: BtreeStats,
    /// The last interior update done, for messages and debugging.
    pub last_update: Mutex<Option<super::interior::BtreeUpdate>>,
    /// Buffers of finished transactions, for the next ones (C keeps its
    /// `btree_trans` objects and their arrays for reuse the same way:
    /// `bch2_trans_get()`'s per-cpu `btree_trans_bufs`).
    pub(crate) trans_bufs: BoxCache<TransBufs, 4>,
}

/// The reusable buffers of a [`BtreeTrans`]: its updates, read set and
/// the commit's scratch arrays, kept (emptied) in
/// [`BtreeFs::trans_bufs`] between transactions.
pub(crate) struct TransBufs {
    pub(crate) paths: Vec<BtreePath>,
    pub(crate) updates: Vec<InsertEntry>,
    pub(crate) read_set: Vec<(Arc<Node>, u32)>,
    pub(crate) merge_candidates: Vec<(u8, Bpos)>,
    pub(crate) commit: super::commit::CommitScratch,
    /// Nodes the last traversals found ([`super::cache::NodeMemo`]).
    pub(crate) memo: super::cache::NodeMemo,
    /// The root each btree had at the last traversal (checked by its
    /// flags once locked, as any root is).
    pub(crate) roots: [Option<Arc<Node>>; NR_BTREES],
}

impl Default for TransBufs {
    fn default() -> Self {
        TransBufs {
            paths: Vec::new(),
            updates: Vec::new(),
            read_set: Vec::new(),
            merge_candidates: Vec::new(),
            commit: Default::default(),
            memo: Default::default(),
            roots: Default::default(),
        }
    }
}

// SAFETY: what keeps `TransBufs` from being `Send` is the `NodeLock`s its
// vectors can hold (`paths`, the commit's leaves): a six lock is released
// by the thread that took it.  A `TransBufs` only crosses threads through
// `BtreeFs::trans_bufs`, and `BtreeTrans::drop` empties every vector
// before it puts one there (`TransBufs::stow`), so none then holds a lock.
unsafe impl Send for TransBufs {}

impl TransBufs {
    /// Empties every vector (dropping the locks their paths and leaves
    /// hold) and keeps the buffers in `c` for the next transaction, unless
    /// they grew large.
    fn stow(mut self: Box<Self>, c: &BtreeFs<'_>) {
        self.paths.clear();
        self.updates.clear();
        self.read_set.clear();
        self.merge_candidates.clear();
        self.commit.clear();
        self.memo.forget_freed();
        for r in self.roots.iter_mut() {
            if r.as_ref().is_some_and(|n| n.has(flags::FREED) || !n.has(flags::ROOT)) {
                *r = None;
            }
        }
        if self.small() {
            c.trans_bufs.put(self);
        }
    }

    /// Elements above which a buffer is not kept (a transaction with many
    /// updates, such as an fsck pass's, gives its memory back).
    const KEEP_MAX: usize = 64;

    fn small(&self) -> bool {
        self.paths.capacity() <= Self::KEEP_MAX && self.updates.capacity() <= Self::KEEP_MAX && self.read_set.capacity() <= Self::KEEP_MAX && self.commit.small(Self::KEEP_MAX)
    }
}

impl<'a> BtreeFs<'a> {
    /// The write side over `roots` (indexed by btree id; `None`: the btree
    /// is empty and gets a fake root), its parts borrowed for `'a`
    /// ([`BtreeFs::new_shared`] takes them owned or borrowed).
    ///
    /// Errors: `ENOMEM`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dev: &'a (dyn BlockDev + Send + Sync),
        info: &'a FsInfo,
        cache: &'a BtreeCache,
        journal: &'a (dyn JournalSink + Send),
        alloc: &'a (dyn BtreeNodeAlloc + Send),
        geo: BtreeGeometry,
        roots: &[Option<Root>],
    ) -> Result<Self, Errno> {
        let (dev, info, cache) = (Shared::Borrowed(dev), Shared::Borrowed(info), Shared::Borrowed(cache));
        Self::new_shared(dev, info, cache, Shared::Borrowed(journal), Shared::Borrowed(alloc), geo, roots)
    }

    /// [`BtreeFs::new`] over parts each borrowed or owned: a mount's write
    /// side owns them all (`BtreeFs<'static>`).
    ///
    /// Errors: `ENOMEM`.
    #[allow(clippy::too_many_arguments)]
    pub fn new_shared(
        dev: Shared<'a, dyn BlockDev + Send + Sync>,
        info: Shared<'a, FsInfo>,
        cache: Shared<'a, BtreeCache>,
        journal: Shared<'a, dyn JournalSink + Send>,
        alloc: Shared<'a, dyn BtreeNodeAlloc + Send>,
        geo: BtreeGeometry,
        roots: &[Option<Root>],
    ) -> Result<Self, Errno> {
        let mut slots = Vec::with_capacity(NR_BTREES)?;
        for i in 0..NR_BTREES {
            slots.push(RootSlot { node: None, ptr: roots.get(i).copied().flatten() })?;
        }
        Ok(BtreeFs {
            dev,
            info,
            cache,
            journal,
            alloc,
            triggers: None,
            write_buffer: false,
            geo,
            roots: Mutex::new(slots)?,
            seq_next: AtomicU64::new(0x5eed),
            fault_inject: AtomicU32::new(0),
            stats: BtreeStats::default(),
            last_update: Mutex::new(None)?,
            trans_bufs: BoxCache::new(),
        })
    }

    /// Makes the next `n` commits restart once each with
    /// [`Restart::FaultInject`] (`bch2_trans_restart_injected` tests).
    pub fn inject_restarts(&self, n: u32) {
        self.fault_inject.store(n, Relaxed);
    }

    pub(crate) fn take_injected_restart(&self) -> bool {
        self.fault_inject
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Seeds the sequence [`new_seq`](Self::new_seq) draws from.  The
    /// nodes' `seq`s must differ across mounts: C hashes its node cache by
    /// the `seq` of a `btree_ptr_v2` (`btree_ptr_hash_val()`), and two
    /// roots with the same one make its `__bch2_btree_root_read()` BUG.
    /// Every mount starting from the same value gave the nodes a mount
    /// writes the `seq`s of nodes still reachable from an earlier mount.
    pub fn seed_node_seq(&self, seed: u64) {
        self.seq_next.store(seed, Relaxed);
    }

    /// A new nonzero bset `seq` for a node (C uses a random number).
    pub(crate) fn new_seq(&self) -> u64 {
        let n = self.seq_next.fetch_add(1, Relaxed);
        // splitmix64: distinct, well spread, never 0 in practice.
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) | 1
    }

    /// The root pointer of `btree` (`None`: empty btree, or its root is
    /// still the fake one), as the journal writes it in `btree_root`
    /// entries and the superblock's `clean` section.
    pub fn root(&self, btree: u8) -> Option<Root> {
        self.roots.lock().get(btree as usize).and_then(|s| s.ptr)
    }

    /// Every btree's root (by id), for the journal and for reopening.
    ///
    /// Errors: `ENOMEM`.
    pub fn roots(&self) -> Result<Vec<Option<Root>>, Errno> {
        let r = self.roots.lock();
        let mut v = Vec::with_capacity(r.len())?;
        for s in r.iter() {
            v.push(s.ptr)?;
        }
        Ok(v)
    }

    /// The root node of `btree`, not locked: loaded through the cache, or
    /// the fake empty root (`bch2_btree_root_alloc_fake()`) when the btree
    /// has none.
    pub(crate) fn root_node(&self, btree: u8) -> Result<Arc<Node>, BchError> {
        let ptr = {
            let mut r = self.roots.lock();
            let slot = r.get_mut(btree as usize).ok_or(Errno::EINVAL)?;
            if let Some(n) = &slot.node {
                return Ok(n.clone());
            }
            match slot.ptr {
                Some(p) => p,
                None => {
                    let n = arc_new(fake_root(btree))?;
                    slot.node = Some(n.clone());
                    return Ok(n);
                }
            }
        };
        let vlen = ptr.key.val_bytes().min(ptr.val.len());
        let np = NodePtr { btree, level: ptr.level, key: &ptr.key, val: &ptr.val[..vlen] };
        let n = self.cache.get_node(&*self.dev, &self.info, np, POS_MIN).map_err(|e| e.errno())?;
        let mut r = self.roots.lock();
        let slot = r.get_mut(btree as usize).ok_or(Errno::EINVAL)?;
        if slot.node.is_none() && slot.ptr.is_some_and(|p| p.key == ptr.key) {
            // Flagged root only once the slot holds it (see `traverse`).
            n.set_flags(flags::ROOT);
            slot.node = Some(n.clone());
        }
        Ok(slot.node.clone().unwrap_or(n))
    }

    /// Whether `n` is the current root of its btree.
    pub(crate) fn is_root(&self, n: &Arc<Node>) -> bool {
        self.roots
            .lock()
            .get(n.btree as usize)
            .and_then(|s| s.node.as_ref())
            .is_some_and(|r| Arc::ptr_eq(r, n))
    }

    /// `btree_ptr_v2` key pointing to `n` (`bch2_btree_node_alloc()`'s
    /// key): position `max_key`, `seq`, `sectors_written` (what readers
    /// read: [`Node::ptr_sectors_written`]), `min_key`, one device
    /// pointer.
    pub fn node_ptr(n: &Node) -> BkeyI {
        let mut v = [0u8; 48];
        let sectors_written = u16::try_from(n.ptr_sectors_written()).unwrap_or(0);
        let _ = BtreePtrV2 { mem_ptr: 0, seq: n.seq, sectors_written, flags: 0, min_key: n.min_key }.encode(&mut v);
        let p = ExtentPtr { offset: n.space.offset, dev: n.space.dev, gen: n.space.gen, ..Default::default() };
        v[40..].copy_from_slice(&p.encode().to_le_bytes());
        let mut val = Vec::new();
        let _ = val.extend_from_slice(&v);
        BkeyI { k: Bkey::new(KeyType::BtreePtrV2, n.max_key, 6), v: val }
    }

    /// Root slot contents as a journal `Root`.
    pub(crate) fn root_of(n: &Node) -> Root {
        let p = Self::node_ptr(n);
        let mut val = [0u8; 72];
        val[..p.v.len()].copy_from_slice(&p.v);
        Root { btree_id: u32::from(n.btree), level: n.level, key: p.k, val }
    }
}

/// The fake root of an empty btree: a leaf covering everything, never
/// written (`bch2_btree_root_alloc_fake()`).
pub(crate) fn fake_root(btree: u8) -> Node {
    Node::new(btree, 0, NodeSpace::default(), POS_MIN, SPOS_MAX, 0, NodeData::default(), flags::FAKE | flags::ROOT)
}

/// Whether `btree` keeps extents (`btree_node_type_is_extents()`).
pub fn is_extents(btree: u8) -> bool {
    BTREE_IDS.get(btree as usize).is_some_and(|b| b.1 & btree_flags::EXTENTS != 0)
}

/// One level of a path (`struct btree_path_level`).
#[derive(Default)]
pub struct PathLevel {
    /// The lock held on the node, if any.
    pub lock: Option<NodeLock>,
    /// The node, kept after its lock is dropped (to relock).
    pub node: Option<Arc<Node>>,
    /// The node's lock sequence number when it was locked.
    pub lock_seq: u32,
    /// Index in the node of the key a peek last returned: where the next
    /// search tries first ([`NodeData::lower_bound_from`]).
    pub hint: u32,
}

/// A path from a btree's root to a position at some level (`struct
/// btree_path`).
pub struct BtreePath {
    /// Btree id.
    pub btree_id: u8,
    /// Level of the node the path is for (0: leaf).
    pub level: u8,
    /// Position.
    pub pos: Bpos,
    /// Levels below this one are locked for intent; above, read locks are
    /// dropped on the way down.
    pub locks_want: u8,
    /// The nodes, by level.
    pub l: [PathLevel; MAX_DEPTH],
    /// Return whiteouts (`whiteout`, `hash_whiteout` keys) from peeks.
    pub whiteouts: bool,
    /// Show this transaction's queued updates over the btree
    /// (`BTREE_ITER_with_updates`).
    pub with_updates: bool,
    /// Past a key at `SPOS_MAX`: nothing follows.
    past_end: bool,
}

impl BtreePath {
    fn new(btree_id: u8, level: u8, pos: Bpos, locks_want: u8) -> Self {
        BtreePath {
            btree_id,
            level,
            pos,
            locks_want,
            l: Default::default(),
            whiteouts: false,
            with_updates: false,
            past_end: false,
        }
    }

    /// Drops every lock (keeps the nodes and sequence numbers).
    pub fn unlock(&mut self) {
        for l in self.l.iter_mut() {
            l.lock = None;
        }
    }

    fn nr_locked(&self) -> usize {
        self.l.iter().filter(|l| l.lock.is_some()).count()
    }

    /// The locked node at `level` covering the path's position, if any.
    fn locked_at(&self, level: usize) -> Option<&NodeLock> {
        self.l.get(level)?.lock.as_ref().filter(|g| g.covers(self.pos) && !g.has(flags::FREED))
    }
}

impl fmt::Display for BtreePath {
    /// `bch2_btree_path_to_text()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "path: btree={} l={} pos {} locks_want {}",
            BtreeIdName(u32::from(self.btree_id)),
            self.level,
            self.pos,
            self.locks_want
        )?;
        for (i, l) in self.l.iter().enumerate() {
            if let Some(n) = &l.node {
                let held = match l.lock.as_ref().map(|g| g.lock_type()) {
                    Some(SixLockType::Read) => "read",
                    Some(SixLockType::Intent) => "intent",
                    Some(SixLockType::Write) => "write",
                    None => "unlocked",
                };
                write!(f, "\n  l={i} {held} seq {} node {}..{} sector {}", l.lock_seq, n.min_key, n.max_key, n.sector)?;
            }
        }
        Ok(())
    }
}

/// An update queued in a transaction (`struct btree_insert_entry`).
#[derive(Debug)]
pub struct InsertEntry {
    /// Btree id.
    pub btree: u8,
    /// Level (0 for leaf updates).
    pub level: u8,
    /// The new key (`deleted` to delete).
    pub k: BkeyI,
    /// Its transactional trigger ran.
    pub triggered: bool,
    /// Queued by [`BtreeTrans::update_buffered`]: the commit journals it
    /// as a `write_buffer_keys` entry and does not insert it.
    pub buffered: bool,
    /// For a [`CommitFlags::no_journal_res`] commit (the write buffer's
    /// flush): the journal sequence number the key is already in.  0
    /// otherwise.
    pub journal_seq: u64,
}

impl fmt::Display for InsertEntry {
    /// `bch2_trans_updates_to_text()`, one update.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "update: btree={} l={} {}", BtreeIdName(u32::from(self.btree)), self.level, self.k.k)
    }
}

/// Which path an iterator uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IterId(pub usize);

/// Commit flags (`BCH_TRANS_COMMIT_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitFlags {
    /// `BCH_TRANS_COMMIT_no_enospc`.
    pub no_enospc: bool,
    /// `BCH_TRANS_COMMIT_journal_reclaim`: may use the journal's reclaim
    /// reserve.
    pub journal_reclaim: bool,
    /// `BCH_TRANS_COMMIT_no_merge`-like: skip the foreground merge after
    /// the commit.
    pub no_merge: bool,
    /// `BCH_TRANS_COMMIT_no_journal_res`: the keys are in the journal
    /// already (the btree write buffer's flush, each update carrying its
    /// [`InsertEntry::journal_seq`]): no reservation, no journal copy, no
    /// triggers; each leaf is pinned at the oldest sequence number of the
    /// keys it gets.
    pub no_journal_res: bool,
}

/// A btree transaction (`struct btree_trans`).
pub struct BtreeTrans<'a> {
    /// The filesystem.
    pub c: &'a BtreeFs<'a>,
    pub(crate) paths: Vec<BtreePath>,
    pub(crate) updates: Vec<InsertEntry>,
    /// Leaves keys were read from, with their lock sequence numbers then.
    pub(crate) read_set: Vec<(Arc<Node>, u32)>,
    /// Restarts of this transaction so far.
    pub restart_count: u32,
    /// Journal sequence number of the last commit.
    pub journal_seq: u64,
    /// Leaves the last commit left under the merge threshold: (btree,
    /// position).
    pub(crate) merge_candidates: Vec<(u8, Bpos)>,
    /// [`update_buffered`](Self::update_buffered) inserts into the leaves
    /// as [`update`](Self::update) does (the node pointer triggers'
    /// updates: see `crate::triggers::FsTriggers::node_ptrs_catch_up`).
    pub write_buffer_bypass: bool,
    /// The buffers taken from [`BtreeFs::trans_bufs`] (their vectors moved
    /// into the fields above, the commit's scratch used in place), put
    /// back at drop; `None` when there was no memory for them.
    pub(crate) bufs: Option<Box<TransBufs>>,
}

fn restart(r: Restart) -> BchError {
    BchError::Restart(r)
}

/// Copies a key and its value.
pub fn bkey_i(k: &Bkey, v: &[u8]) -> Result<BkeyI, AllocError> {
    let mut val = Vec::new();
    val.extend_from_slice(v)?;
    let mut k = *k;
    k.u64s = (BKEY_U64S + v.len() / 8) as u8;
    Ok(BkeyI { k, v: val })
}

impl<'a> BtreeTrans<'a> {
    /// A transaction on `c` (`bch2_trans_get()`).
    pub fn new(c: &'a BtreeFs<'a>) -> Self {
        let mut bufs = c.trans_bufs.take_or(TransBufs::default).ok();
        let mut t = BtreeTrans {
            c,
            paths: Vec::new(),
            updates: Vec::new(),
            read_set: Vec::new(),
            restart_count: 0,
            journal_seq: 0,
            merge_candidates: Vec::new(),
            write_buffer_bypass: false,
            bufs: None,
        };
        if let Some(b) = bufs.as_deref_mut() {
            t.paths = core::mem::take(&mut b.paths);
            t.updates = core::mem::take(&mut b.updates);
            t.read_set = core::mem::take(&mut b.read_set);
            t.merge_candidates = core::mem::take(&mut b.merge_candidates);
        }
        t.bufs = bufs;
        t
    }

    /// Starts over (`bch2_trans_begin()`): drops every path, lock and
    /// queued update.
    pub fn begin(&mut self) {
        self.paths.clear();
        self.updates.clear();
        self.read_set.clear();
    }

    /// Drops every lock the transaction holds (`bch2_trans_unlock()`);
    /// paths keep their nodes and sequence numbers.
    pub fn unlock(&mut self) {
        for p in self.paths.iter_mut() {
            p.unlock();
        }
    }

    /// Locks held by the transaction's paths.
    pub fn nr_locked(&self) -> usize {
        self.paths.iter().map(|p| p.nr_locked()).sum()
    }

    /// The queued updates.
    pub fn updates(&self) -> &[InsertEntry] {
        &self.updates
    }

    /// Takes `ty` on `node` under the transaction's lock rule: without
    /// waiting while other locks are held (`btree_node_lock()` with
    /// `six_lock_ip_waiter()`'s deadlock check replaced by: drop all, wait,
    /// restart).
    ///
    /// Errors: [`Restart::WouldDeadlock`] after dropping every lock and
    /// waiting for this one to be free.
    pub(crate) fn lock_node(&mut self, node: &Arc<Node>, ty: SixLockType) -> Result<NodeLock, BchError> {
        if let Some(g) = NodeLock::trylock(node.clone(), ty) {
            return Ok(g);
        }
        if self.nr_locked() == 0 {
            return Ok(NodeLock::lock(node.clone(), ty));
        }
        self.unlock();
        drop(NodeLock::lock(node.clone(), ty));
        Err(restart(Restart::WouldDeadlock))
    }

    /// A new path (`bch2_path_get()`); not traversed.
    pub(crate) fn path_new(&mut self, btree: u8, level: u8, pos: Bpos, locks_want: u8) -> Result<usize, BchError> {
        self.paths.push(BtreePath::new(btree, level, pos, locks_want))?;
        Ok(self.paths.len() - 1)
    }

    /// Walks path `idx` from the root down to its level, locking each node
    /// (`bch2_btree_path_traverse()`): intent below `locks_want`, else read
    /// (dropped once the child is locked).
    ///
    /// Errors: a restart (lock rule, node freed meanwhile), `EIO` (a node
    /// could not be read or points nowhere), `ENOMEM`, `EINVAL` (a level
    /// above the root).
    pub(crate) fn traverse(&mut self, idx: usize) -> Result<(), BchError> {
        let (btree, level, pos, want) = {
            let p = self.paths.get_mut(idx).ok_or(Errno::EINVAL)?;
            p.unlock();
            for l in p.l.iter_mut() {
                l.node = None;
            }
            (p.btree_id, p.level, p.pos, p.locks_want)
        };
        let ty = |l: u8| if l < want { SixLockType::Intent } else { SixLockType::Read };
        let mut tries = 0u32;
        let mut cur = loop {
            let remembered = match self.bufs.as_deref().and_then(|b| b.roots.get(btree as usize)) {
                Some(Some(r)) if tries == 0 && r.has(flags::ROOT) && !r.has(flags::FREED) => Some(r.clone()),
                _ => None,
            };
            let r = match remembered {
                Some(r) => r,
                None => {
                    let r = self.c.root_node(btree)?;
                    if let Some(slot) = self.bufs.as_deref_mut().and_then(|b| b.roots.get_mut(btree as usize)) {
                        *slot = Some(r.clone());
                    }
                    r
                }
            };
            if r.level as usize >= MAX_DEPTH {
                // A root pointer from disk claiming more levels than exist.
                return Err(Errno::EUCLEAN.into());
            }
            if r.level < level {
                return Err(Errno::EINVAL.into());
            }
            let g = self.lock_node(&r, ty(r.level))?;
            // Still the root: a replaced root loses the flag before its
            // slot changes (`is_root()` without the roots lock).
            if r.has(flags::ROOT) && !r.has(flags::FREED) {
                let lvl = r.level as usize;
                let pl = &mut self.paths[idx].l[lvl];
                pl.lock_seq = g.seq();
                pl.node = Some(r);
                pl.lock = Some(g);
                break lvl;
            }
            drop(g);
            tries += 1;
            if tries > 1000 {
                return Err(Errno::EIO.into());
            }
        };
        // The child pointer's value, copied out of the parent (a node
        // pointer's value is far smaller: 72 bytes at most for 4 replicas).
        let mut vbuf = [0u8; 256];
        while cur > level as usize {
            let (key, child_level, vlen) = {
                let g = self.paths[idx].l[cur].lock.as_ref().ok_or(Errno::EINVAL)?;
                let i = g.lower_bound(pos);
                let (k, v) = g.key(i).ok_or(Errno::EIO)?;
                vbuf.get_mut(..v.len()).ok_or(Errno::EIO)?.copy_from_slice(v);
                (k, (cur - 1) as u8, v.len())
            };
            let np = NodePtr { btree, level: child_level, key: &key, val: &vbuf[..vlen] };
            let child = match self.bufs.as_deref_mut() {
                Some(b) => self.c.cache.get_node_memo(&mut b.memo, &*self.c.dev, &self.c.info, np, pos),
                None => self.c.cache.get_node(&*self.c.dev, &self.c.info, np, pos),
            }
            .map_err(|e| e.errno())?;
            let g = self.lock_node(&child, ty(child_level))?;
            if child.has(flags::FREED) || !child.covers(pos) {
                drop(g);
                self.unlock();
                return Err(restart(Restart::NodeChanged));
            }
            let p = &mut self.paths[idx];
            let cl = child_level as usize;
            p.l[cl].lock_seq = g.seq();
            p.l[cl].node = Some(child);
            p.l[cl].lock = Some(g);
            if (cur as u8) >= want {
                p.l[cur].lock = None;
            }
            cur = cl;
        }
        Ok(())
    }

    /// The leaf of path `idx` covering its position, locked (traversing
    /// when it is not), remembered in the read set.
    fn leaf(&mut self, idx: usize) -> Result<(), BchError> {
        if self.paths.get(idx).ok_or(Errno::EINVAL)?.locked_at(0).is_none() {
            self.traverse(idx)?;
        }
        let p = &self.paths[idx];
        let g = p.l[0].lock.as_ref().ok_or(Errno::EINVAL)?;
        let node = g.node().clone();
        let seq = p.l[0].lock_seq;
        if !self.read_set.iter().any(|(n, _)| Arc::ptr_eq(n, &node)) {
            self.read_set.push((node, seq))?;
        }
        Ok(())
    }

    /// An iterator over `btree` at `pos` (`bch2_trans_iter_init()`);
    /// `intent`: lock leaves for intent (the caller will update what it
    /// reads).
    ///
    /// Errors: `ENOMEM`.
    pub fn iter(&mut self, btree: BtreeId, pos: Bpos, intent: bool) -> Result<IterId, BchError> {
        let i = self.path_new(btree as u8, 0, pos, u8::from(intent))?;
        Ok(IterId(i))
    }

    /// Also return `whiteout` and `hash_whiteout` keys.
    pub fn iter_whiteouts(&mut self, it: IterId, on: bool) {
        if let Some(p) = self.paths.get_mut(it.0) {
            p.whiteouts = on;
        }
    }

    /// Also show this transaction's queued updates, over the btree's keys
    /// (`BTREE_ITER_with_updates`): a queued key wins over the btree's at
    /// its position, a queued deletion hides it.
    pub fn iter_with_updates(&mut self, it: IterId, on: bool) {
        if let Some(p) = self.paths.get_mut(it.0) {
            p.with_updates = on;
        }
    }

    /// The queued update of `btree` (leaf level) nearest `pos`: the first
    /// at or after it (`after`), else the last at or before it.
    fn pending_near(&self, btree: u8, pos: Bpos, after: bool) -> Option<&InsertEntry> {
        let mut best: Option<&InsertEntry> = None;
        // Later updates at one position replace earlier ones: keep the
        // newest of equal positions.
        for u in self.updates.iter().filter(|u| u.btree == btree && u.level == 0) {
            let p = u.k.k.p;
            let ok = if after { p >= pos } else { p <= pos };
            let better = match best {
                None => true,
                Some(b) if after => p <= b.k.k.p,
                Some(b) => p >= b.k.k.p,
            };
            if ok && better {
                best = Some(u);
            }
        }
        best
    }

    /// The iterator's position.
    pub fn iter_pos(&self, it: IterId) -> Bpos {
        self.paths.get(it.0).map_or(POS_MIN, |p| p.pos)
    }

    /// Moves the iterator (`bch2_btree_iter_set_pos()`).
    pub fn iter_set_pos(&mut self, it: IterId, pos: Bpos) {
        if let Some(p) = self.paths.get_mut(it.0) {
            p.pos = pos;
            p.past_end = false;
        }
    }

    fn live(k: &Bkey, whiteouts: bool) -> bool {
        !k.is_deleted()
            && (whiteouts || (k.key_type != KeyType::Whiteout as u8 && k.key_type != KeyType::HashWhiteout as u8))
    }

    /// The first live key at or after the position, leaving the position
    /// on it (`bch2_btree_iter_peek()`); `None` at the end.  With
    /// [`iter_with_updates`](Self::iter_with_updates), the transaction's
    /// queued updates are laid over the btree.
    ///
    /// Errors: restarts, `EIO`, `ENOMEM`.
    pub fn iter_peek(&mut self, it: IterId) -> Result<Option<BkeyI>, BchError> {
        loop {
            let p = self.paths.get(it.0).ok_or(Errno::EINVAL)?;
            if p.past_end {
                return Ok(None);
            }
            let (start, btree, with_updates, whiteouts) = (p.pos, p.btree_id, p.with_updates, p.whiteouts);
            let b = self.peek_btree(it)?;
            if !with_updates {
                return Ok(b);
            }
            let Some(u) = self.pending_near(btree, start, true) else { return Ok(b) };
            if b.as_ref().is_some_and(|b| b.k.p < u.k.k.p) {
                return Ok(b);
            }
            let up = u.k.k.p;
            if Self::live(&u.k.k, whiteouts) {
                let k = bkey_i(&u.k.k, &u.k.v)?;
                self.paths[it.0].pos = up;
                return Ok(Some(k));
            }
            match up.successor() {
                Some(n) => self.paths[it.0].pos = n,
                None => return Ok(None),
            }
        }
    }

    fn peek_btree(&mut self, it: IterId) -> Result<Option<BkeyI>, BchError> {
        loop {
            self.leaf(it.0)?;
            let p = &mut self.paths[it.0];
            let g = p.l[0].lock.as_ref().ok_or(Errno::EINVAL)?;
            let mut i = g.data().lower_bound_from(p.pos, p.l[0].hint as usize);
            while let Some((k, v)) = g.key(i) {
                if Self::live(&k, p.whiteouts) {
                    p.pos = k.p;
                    p.l[0].hint = i as u32;
                    return Ok(Some(bkey_i(&k, v)?));
                }
                i += 1;
            }
            match g.max_key.successor() {
                Some(n) => p.pos = n,
                None => return Ok(None),
            }
        }
    }

    /// The last live key at or before the position, leaving the position
    /// on it (`bch2_btree_iter_peek_prev()`); queued updates as for
    /// [`iter_peek`](Self::iter_peek).
    ///
    /// Errors: as [`iter_peek`](Self::iter_peek).
    pub fn iter_peek_prev(&mut self, it: IterId) -> Result<Option<BkeyI>, BchError> {
        loop {
            let p = self.paths.get(it.0).ok_or(Errno::EINVAL)?;
            let (start, btree, with_updates, whiteouts) = (p.pos, p.btree_id, p.with_updates, p.whiteouts);
            let b = self.peek_prev_btree(it)?;
            if !with_updates {
                return Ok(b);
            }
            let Some(u) = self.pending_near(btree, start, false) else { return Ok(b) };
            if b.as_ref().is_some_and(|b| b.k.p > u.k.k.p) {
                return Ok(b);
            }
            let up = u.k.k.p;
            if Self::live(&u.k.k, whiteouts) {
                let k = bkey_i(&u.k.k, &u.k.v)?;
                let p = &mut self.paths[it.0];
                p.pos = up;
                p.past_end = false;
                return Ok(Some(k));
            }
            match up.predecessor() {
                Some(n) => self.paths[it.0].pos = n,
                None => return Ok(None),
            }
        }
    }

    fn peek_prev_btree(&mut self, it: IterId) -> Result<Option<BkeyI>, BchError> {
        loop {
            self.leaf(it.0)?;
            let p = &mut self.paths[it.0];
            let g = p.l[0].lock.as_ref().ok_or(Errno::EINVAL)?;
            let mut i = g.upper_bound(p.pos);
            while i > 0 {
                i -= 1;
                if let Some((k, v)) = g.key(i) {
                    if Self::live(&k, p.whiteouts) {
                        p.pos = k.p;
                        p.past_end = false;
                        return Ok(Some(bkey_i(&k, v)?));
                    }
                }
            }
            match g.min_key.predecessor() {
                Some(n) => p.pos = n,
                None => return Ok(None),
            }
        }
    }

    /// Moves the iterator just past its position
    /// (`bch2_btree_iter_advance()`), after a peek returned the key there.
    pub fn iter_advance(&mut self, it: IterId) {
        if let Some(p) = self.paths.get_mut(it.0) {
            match p.pos.successor() {
                Some(n) => p.pos = n,
                None => p.past_end = true,
            }
        }
    }

    /// Returns the first live key at or after the position and moves past
    /// it.
    ///
    /// Errors: as [`iter_peek`](Self::iter_peek).
    pub fn iter_next(&mut self, it: IterId) -> Result<Option<BkeyI>, BchError> {
        let k = self.iter_peek(it)?;
        if k.is_some() {
            // The peek left the position on the key.
            self.iter_advance(it);
        }
        Ok(k)
    }

    /// Returns the last live key before the position and moves onto it
    /// (`bch2_btree_iter_prev()`).
    ///
    /// Errors: as [`iter_peek`](Self::iter_peek).
    pub fn iter_prev(&mut self, it: IterId) -> Result<Option<BkeyI>, BchError> {
        let p = self.paths.get_mut(it.0).ok_or(Errno::EINVAL)?;
        if p.past_end {
            p.past_end = false;
            return self.iter_peek_prev(it);
        }
        let Some(pp) = p.pos.predecessor() else { return Ok(None) };
        let saved = p.pos;
        p.pos = pp;
        let k = self.iter_peek_prev(it)?;
        if k.is_none() {
            self.paths[it.0].pos = saved;
        }
        Ok(k)
    }

    /// The key at exactly `pos` in `btree`, whiteouts included
    /// (`bch2_bkey_get_iter()` on a slot).
    ///
    /// Errors: as [`iter_peek`](Self::iter_peek).
    pub fn get(&mut self, btree: BtreeId, pos: Bpos) -> Result<Option<BkeyI>, BchError> {
        let it = self.iter(btree, pos, false)?;
        self.iter_whiteouts(it, true);
        let k = self.iter_peek(it)?;
        Ok(k.filter(|k| k.k.p == pos))
    }

    /// Queues `k` for `btree` (`bch2_trans_update()`): the commit inserts
    /// it (a `deleted` key deletes; in extent btrees a `deleted` key with
    /// a size deletes that range).  In extent btrees the existing extents
    /// it overlaps are trimmed or split as `bch2_trans_update_extent()`
    /// does, as more updates.  A later update at the same position
    /// replaces an earlier one.
    ///
    /// Errors: `EINVAL` (the key is not valid for the btree), restarts and
    /// errors of the lookups, `ENOMEM`, `EOPNOTSUPP` (a value type that
    /// cannot be trimmed).
    pub fn update(&mut self, btree: BtreeId, mut k: BkeyI) -> Result<(), BchError> {
        let b = btree as u8;
        k.k.u64s = (BKEY_U64S + k.v.len() / 8) as u8;
        let extents = is_extents(b);
        if !(extents && k.k.is_deleted()) {
            k.k.validate(NodeType::Leaf(u32::from(b)), true).map_err(|_| Errno::EINVAL)?;
        }
        if k.v.len() % 8 != 0 || k.k.val_bytes() != k.v.len() {
            return Err(Errno::EINVAL.into());
        }
        if extents {
            super::extents::overwrite(self, b, &k)?;
            if k.k.is_deleted() {
                // The range is cleared; what is left is a plain deletion at
                // the end position.
                k.k.size = 0;
            }
        }
        self.push_update(b, 0, k)
    }

    /// Deletes the key at `pos` (`bch2_btree_delete()`).
    ///
    /// Errors: as [`update`](Self::update).
    pub fn delete(&mut self, btree: BtreeId, pos: Bpos) -> Result<(), BchError> {
        self.push_update(btree as u8, 0, BkeyI { k: Bkey::new(KeyType::Deleted, pos, 0), v: Vec::new() })
    }

    pub(crate) fn push_update(&mut self, btree: u8, level: u8, k: BkeyI) -> Result<(), BchError> {
        self.updates.push(InsertEntry { btree, level, k, triggered: false, buffered: false, journal_seq: 0 })?;
        Ok(())
    }

    /// Queues `k` for the write-buffered `btree`
    /// (`bch2_trans_update_buffered()`): with a btree write buffer
    /// ([`BtreeFs::write_buffer`]) the commit journals it as a
    /// `write_buffer_keys` entry and the leaf gets it when the write
    /// buffer is flushed; no trigger runs.  Without one (or for a btree
    /// that is not write-buffered,
    /// [`super::write_buffer::btree_uses_write_buffer`]) it is
    /// [`update`](Self::update).  Readers of the btree see it only after
    /// a flush; [`pending_at`](Self::pending_at) sees it.
    ///
    /// Errors: `EINVAL` (the key is not valid for the btree), `ENOMEM`.
    pub fn update_buffered(&mut self, btree: BtreeId, mut k: BkeyI) -> Result<(), BchError> {
        let b = btree as u8;
        if !self.c.write_buffer || self.write_buffer_bypass || !super::write_buffer::btree_uses_write_buffer(b) {
            return self.update(btree, k);
        }
        k.k.u64s = (BKEY_U64S + k.v.len() / 8) as u8;
        k.k.validate(NodeType::Leaf(u32::from(b)), true).map_err(|_| Errno::EINVAL)?;
        if k.v.len() % 8 != 0 || k.k.val_bytes() != k.v.len() {
            return Err(Errno::EINVAL.into());
        }
        self.updates.push(InsertEntry { btree: b, level: 0, k, triggered: true, buffered: true, journal_seq: 0 })?;
        Ok(())
    }

    /// Queues a leaf key already in the journal at `journal_seq`, for a
    /// [`CommitFlags::no_journal_res`] commit (the write buffer's flush).
    pub(crate) fn push_update_journalled(&mut self, btree: u8, k: BkeyI, journal_seq: u64) -> Result<(), BchError> {
        self.updates.push(InsertEntry { btree, level: 0, k, triggered: true, buffered: false, journal_seq })?;
        Ok(())
    }

    /// The pending update of this transaction at `pos`, if any (newest).
    pub fn pending_at(&self, btree: u8, pos: Bpos) -> Option<&InsertEntry> {
        self.updates.iter().rev().find(|u| u.btree == btree && u.level == 0 && u.k.k.p == pos)
    }

    /// `bch2_trans_updates_to_text()`.
    pub fn updates_to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        writeln!(f, "transaction updates ({}), restarts {}:", self.updates.len(), self.restart_count)?;
        for u in self.updates.iter() {
            writeln!(f, "  {u}")?;
        }
        Ok(())
    }

    /// `bch2_trans_paths_to_text()`.
    pub fn paths_to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        for (i, p) in self.paths.iter().enumerate() {
            writeln!(f, "{i}: {p}")?;
        }
        Ok(())
    }
}

impl Drop for BtreeTrans<'_> {
    fn drop(&mut self) {
        self.unlock();
        if let Some(mut b) = self.bufs.take() {
            b.paths = core::mem::take(&mut self.paths);
            b.updates = core::mem::take(&mut self.updates);
            b.read_set = core::mem::take(&mut self.read_set);
            b.merge_candidates = core::mem::take(&mut self.merge_candidates);
            b.stow(self.c);
        }
    }
}

/// Runs `f` then commits, again and again while either restarts
/// (`commit_do()`): every other error is returned, and a restart never
/// is.  `f` is called after [`BtreeTrans::begin`] each time.
///
/// Errors: the first error that is not a restart, as an errno.
pub fn commit_do<T>(
    c: &BtreeFs<'_>,
    flags: CommitFlags,
    mut f: impl FnMut(&mut BtreeTrans<'_>) -> Result<T, BchError>,
) -> Result<T, Errno> {
    let mut trans = BtreeTrans::new(c);
    loop {
        trans.begin();
        let r = f(&mut trans).and_then(|v| trans.commit(flags).map(|_| v));
        match r {
            Ok(v) => return Ok(v),
            Err(BchError::Restart(_)) => {
                trans.restart_count += 1;
                c.stats.restarts.fetch_add(1, Relaxed);
            }
            Err(BchError::Errno(e)) => return Err(e),
        }
    }
}

/// Runs `f` again and again while it restarts (`lockrestart_do()`),
/// without committing.
///
/// Errors: the first error that is not a restart.
pub fn lockrestart_do<T>(
    c: &BtreeFs<'_>,
    mut f: impl FnMut(&mut BtreeTrans<'_>) -> Result<T, BchError>,
) -> Result<T, Errno> {
    let mut trans = BtreeTrans::new(c);
    loop {
        trans.begin();
        match f(&mut trans) {
            Ok(v) => return Ok(v),
            Err(BchError::Restart(_)) => {
                trans.restart_count += 1;
                c.stats.restarts.fetch_add(1, Relaxed);
            }
            Err(BchError::Errno(e)) => return Err(e),
        }
    }
}
