// SPDX-License-Identifier: GPL-2.0
//! The foreground allocator (`alloc_foreground.c`, `alloc_types.h`,
//! `buckets.h`'s reserve math): buckets taken from the freespace btree into
//! open buckets, and sectors handed out of open buckets through write
//! points.
//!
//! - Per device ([`DevAlloc`]): each bucket's gen, oldest gen and data type,
//!   loaded from the alloc btree and kept current by
//!   [`Allocator::bucket_updated`] (the atomic part of the alloc trigger:
//!   C reads the same through the btree key cache), the bucket counts per
//!   data type (`struct bch_dev_usage`), the number of open and partial
//!   buckets, and the allocation cursor.
//! - Open buckets ([`OpenBucket`]): a table of [`OPEN_BUCKETS_COUNT`]
//!   (index 0 never used, as C), a free list, a hash of (dev, bucket) so
//!   that [`Allocator::bucket_is_open`] is cheap, and a reference count
//!   (`pin`): a write point holds one, every caller that will write a key
//!   pointing into the bucket takes one ([`WpGuard::open_bucket_get`]) and
//!   puts it ([`Allocator::open_buckets_put`]) after the key is committed,
//!   so a bucket stays open (and is never handed out again) until its first
//!   key's trigger has taken it out of `freespace`.
//! - Write points ([`WritePoint`]): [`WRITE_POINT_MAX`] hashed user write
//!   points (`writepoint_hashed()`, the oldest is taken over by a new
//!   hash), and the copygc, rebalance and btree write points.  Sectors are
//!   handed out contiguously from the write point's open buckets; a full
//!   bucket leaves the write point at [`WpGuard::done`].
//! - Watermarks ([`Watermark`]): how many buckets each kind of allocation
//!   must leave (`bch2_dev_buckets_reserved()`), and how many open buckets
//!   (`open_buckets_reserved()`).
//!
//! Locking: one mutex over the whole state (C's `freelist_lock`, the
//! write point mutexes and the device usage).  A [`WpGuard`] holds it from
//! [`Allocator::alloc_sectors_start`] to [`WpGuard::done`], as C holds the
//! write point's mutex from `bch2_alloc_sectors_start_trans()` to
//! `bch2_alloc_sectors_done()`; nothing else may be locked under it but the
//! btree reads of the [`FreespaceSource`] passed in.
//!
//! Not modelled (yet): erasure coding (stripe write points, `ec` open
//! buckets), the btree bitmap preference of btree node allocations
//! (`BTREE_BITMAP_YES`), nocow locks, waiting on closures (every
//! allocation is non-blocking: C's `-BCH_ERR_bucket_alloc_blocked` cases
//! return their `ENOSPC` class instead), targets and disk groups (every rw
//! device is a candidate; devices are tried in index order rather than by
//! `dev_stripe_state`), and the in-flight-discard list (discards are done
//! by one caller at a time under the allocator lock).
//!
//! # Adapters for the write side
//!
//! The btree's `BtreeNodeAlloc` and `fs_common`'s `DataAlloc` are
//! implemented over [`Allocator::alloc_btree_node`] and
//! [`Allocator::alloc_sectors_start`] in [`super::adapters`].

use core::fmt;

use super::background::{alloc_freespace_genbits, data_type_is_empty};
use super::source::{FreespaceSource, FREESPACE_BUCKET_MASK};
use crate::errcode::Errno;
use crate::format::bkey::{Bkey, KeyType};
use crate::format::sb::Sb;
use crate::format::sb_members::MemberFlag;
use crate::format::sb_opts::sb_opt;
use crate::format::val::alloc::{data_type, AllocV4, ALLOC_V4_U64S_V0};
use crate::format::val::fmt_data_type;
use crate::platform::{log, Mutex, MutexGuard, Vec};

/// `OPEN_BUCKETS_COUNT`: size of the open bucket table (index 0 unused).
pub const OPEN_BUCKETS_COUNT: usize = 1024;
/// `WRITE_POINT_MAX`: hashed user write points.
pub const WRITE_POINT_MAX: usize = 32;
/// `OPEN_BUCKET_LIST_MAX`: open buckets one write point can hold.
pub const OPEN_BUCKET_LIST_MAX: usize = 15;
/// `BTREE_NODE_RESERVE`: btree nodes per device kept for the btree
/// watermark (`(BTREE_MAX_DEPTH + BTREE_MAX_DEPTH - 1) * 4`).
pub const BTREE_NODE_RESERVE: u64 = 28;
/// `BCH_JOURNAL_BUCKETS_MIN`.
pub const JOURNAL_BUCKETS_MIN: u64 = 8;
/// Index of the copygc write point in [`Allocator`]'s table.
const WP_COPYGC: usize = WRITE_POINT_MAX;
/// Index of the rebalance write point.
const WP_REBALANCE: usize = WRITE_POINT_MAX + 1;
/// Index of the btree write point.
const WP_BTREE: usize = WRITE_POINT_MAX + 2;
/// Number of data types counted in [`DevAlloc::usage`].
const NR_DATA_TYPES: usize = data_type::NR as usize;
/// [`DevAlloc`] bucket flag: the bucket's state was changed in memory
/// since it was loaded (a freespace entry a static source still shows for
/// it is stale, not corrupt).
const BUCKET_UPDATED: u8 = 1;

macro_rules! watermarks {
    ($($(#[$m:meta])* $v:ident = $n:literal,)*) => {
        /// How important an allocation is (`enum bch_watermark`): each
        /// leaves fewer buckets and open buckets in reserve than the one
        /// before it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Watermark {
            $($(#[$m])* $v,)*
        }
        impl Watermark {
            /// Every watermark, in order (`BCH_WATERMARKS()`).
            pub const ALL: [Watermark; 7] = [$(Watermark::$v,)*];
            /// C's name (`bch2_watermarks[]`).
            pub fn name(self) -> &'static str {
                match self { $(Watermark::$v => $n,)* }
            }
        }
    };
}

watermarks! {
    /// Erasure-coded stripes: the most held back.
    Stripe = "stripe",
    /// Ordinary data and metadata.
    Normal = "normal",
    /// Copygc moving data.
    Copygc = "copygc",
    /// Btree nodes.
    Btree = "btree",
    /// Btree nodes for copygc.
    BtreeCopygc = "btree_copygc",
    /// Journal reclaim.
    Reclaim = "reclaim",
    /// Interior btree updates: nothing held back.
    InteriorUpdates = "interior_updates",
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `open_buckets_reserved()`: free open buckets an allocation at
/// `watermark` must leave.
pub fn open_buckets_reserved(watermark: Watermark) -> usize {
    match watermark {
        Watermark::InteriorUpdates => 0,
        Watermark::Reclaim => OPEN_BUCKETS_COUNT / 6,
        Watermark::Btree | Watermark::BtreeCopygc => OPEN_BUCKETS_COUNT / 4,
        Watermark::Copygc => OPEN_BUCKETS_COUNT / 3,
        Watermark::Stripe | Watermark::Normal => OPEN_BUCKETS_COUNT / 2,
    }
}

/// `ca->nr_btree_reserve` (`bch2_dev_alloc()` in `super.c`): buckets of
/// `bucket_size` sectors holding [`BTREE_NODE_RESERVE`] nodes of
/// `btree_node_sectors`.
pub fn nr_btree_reserve(bucket_size: u32, btree_node_sectors: u32) -> u64 {
    let per_bucket = (bucket_size / btree_node_sectors.max(1)).max(1);
    BTREE_NODE_RESERVE.div_ceil(u64::from(per_bucket))
}

/// `bch2_dev_buckets_reserved()`: buckets of a device of `nbuckets`
/// buckets an allocation at `watermark` must leave free.
pub fn dev_buckets_reserved(nbuckets: u64, nr_btree_reserve: u64, watermark: Watermark) -> u64 {
    let mut r = 0;
    if watermark <= Watermark::Stripe {
        r += nbuckets >> 6;
    }
    if watermark <= Watermark::Normal {
        r += nbuckets >> 6;
    }
    if watermark <= Watermark::Copygc {
        r += nr_btree_reserve;
    }
    if watermark <= Watermark::Btree {
        r += nr_btree_reserve;
    }
    r
}

/// `bch2_journal_buckets_nr` default of `bch2_dev_journal_alloc()`: 1/128
/// of the device, at least [`JOURNAL_BUCKETS_MIN`], at most 8192 buckets
/// or 8 GiB.
pub fn journal_buckets_default(nbuckets: u64, bucket_size: u32) -> u64 {
    let max = (1u64 << 13).min((1u64 << 24) / u64::from(bucket_size.max(1)));
    (nbuckets >> 7).max(JOURNAL_BUCKETS_MIN).min(max.max(JOURNAL_BUCKETS_MIN))
}

/// Why a bucket could not be had (C's error codes of the foreground
/// allocator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketAllocError {
    /// `BCH_ERR_freelist_empty`: the device's free buckets are at the
    /// watermark's reserve.
    FreelistEmpty,
    /// `BCH_ERR_no_buckets_found`: the free buckets counted are all open,
    /// waiting for a journal commit or not in the freespace btree.
    NoBucketsFound,
    /// `BCH_ERR_open_buckets_empty`: no free open bucket above the
    /// watermark's reserve.
    OpenBucketsEmpty,
    /// `BCH_ERR_insufficient_devices`: fewer devices than replicas wanted.
    InsufficientDevices,
    /// Anything else (`EIO` for a corrupt key, `ENOMEM`, `EINVAL`).
    Errno(Errno),
}

impl BucketAllocError {
    /// The errno the VFS sees: `ENOSPC` for the first three (their class in
    /// C's `errcode.h`), `EROFS` for insufficient devices.
    pub fn errno(self) -> Errno {
        match self {
            BucketAllocError::FreelistEmpty | BucketAllocError::NoBucketsFound | BucketAllocError::OpenBucketsEmpty => Errno::ENOSPC,
            BucketAllocError::InsufficientDevices => Errno::EROFS,
            BucketAllocError::Errno(e) => e,
        }
    }

    fn is_freelist_empty(self) -> bool {
        matches!(self, BucketAllocError::FreelistEmpty | BucketAllocError::NoBucketsFound)
    }
}

impl From<Errno> for BucketAllocError {
    fn from(e: Errno) -> Self {
        BucketAllocError::Errno(e)
    }
}

impl From<crate::errcode::AllocError> for BucketAllocError {
    fn from(_: crate::errcode::AllocError) -> Self {
        BucketAllocError::Errno(Errno::ENOMEM)
    }
}

impl fmt::Display for BucketAllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketAllocError::FreelistEmpty => f.write_str("freelist_empty"),
            BucketAllocError::NoBucketsFound => f.write_str("no_buckets_found"),
            BucketAllocError::OpenBucketsEmpty => f.write_str("open_buckets_empty"),
            BucketAllocError::InsufficientDevices => f.write_str("insufficient_devices"),
            BucketAllocError::Errno(e) => write!(f, "{}", e.name()),
        }
    }
}

/// One open bucket (`struct open_bucket`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenBucket {
    /// References (`pin`): the write point's or partial list's, plus one
    /// per caller whose key is not committed yet.
    pub pin: u32,
    /// Next free entry when free (`freelist`), 0 at the end.
    pub freelist: u16,
    /// Next entry in the same hash chain (`hash`), 0 at the end.
    pub hash: u16,
    /// `BCH_DATA_*` the bucket is filled with.
    pub data_type: u8,
    /// In use.
    pub valid: bool,
    /// On the partial list (unused by any write point, partly full).
    pub on_partial_list: bool,
    /// Device.
    pub dev: u8,
    /// The bucket's gen when it was opened (the pointers' gen).
    pub gen: u8,
    /// Sectors not yet handed out.
    pub sectors_free: u32,
    /// Bucket number.
    pub bucket: u64,
}

/// A list of open bucket indices (`struct open_buckets`): a write point's
/// buckets, or the references a caller holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenBuckets {
    nr: u8,
    v: [u16; OPEN_BUCKET_LIST_MAX],
}

impl OpenBuckets {
    /// Empty.
    pub const fn new() -> Self {
        OpenBuckets { nr: 0, v: [0; OPEN_BUCKET_LIST_MAX] }
    }

    /// The indices.
    pub fn as_slice(&self) -> &[u16] {
        &self.v[..usize::from(self.nr).min(OPEN_BUCKET_LIST_MAX)]
    }

    /// Number held.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.nr == 0
    }

    /// `ob_push()`; `false` when full.
    fn push(&mut self, i: u16) -> bool {
        match self.v.get_mut(usize::from(self.nr)) {
            Some(s) => {
                *s = i;
                self.nr += 1;
                true
            }
            None => false,
        }
    }
}

/// Which write point (`struct write_point_specifier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePointSpec {
    /// A hashed user write point (`writepoint_hashed(v)`): writes with the
    /// same `v` (an inode, a task) fill the same buckets.
    Hashed(u64),
    /// `c->copygc_write_point`.
    Copygc,
    /// `c->rebalance_write_point`.
    Rebalance,
    /// `c->btree_write_point`.
    Btree,
}

/// A write point (`struct write_point`).
#[derive(Clone, Copy, Debug)]
pub struct WritePoint {
    /// The hashed value it serves (odd), or its own even id when unused.
    pub write_point: u64,
    /// `BCH_DATA_user` or `BCH_DATA_btree`.
    pub data_type: u8,
    /// Allocator clock of the last use (C: `local_clock()`).
    pub last_used: u64,
    /// Sectors the next [`WpGuard::append_ptrs`] may take: the least of its
    /// buckets' free sectors.
    pub sectors_free: u32,
    /// Its open buckets, one per replica.
    pub ptrs: OpenBuckets,
    /// Sectors handed out so far.
    pub sectors_allocated: u64,
}

impl WritePoint {
    fn new(write_point: u64, data_type: u8) -> Self {
        WritePoint { write_point, data_type, last_used: 0, sectors_free: 0, ptrs: OpenBuckets::new(), sectors_allocated: 0 }
    }
}

/// Counters of one bucket search (`struct bucket_alloc_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketAllocState {
    /// Freespace entries looked at.
    pub buckets_seen: u64,
    /// Skipped: already open.
    pub skipped_open: u64,
    /// Skipped: freed by a key whose journal entry is not on disk yet.
    pub skipped_need_journal_commit: u64,
    /// Skipped: marked not to be used.
    pub skipped_nouse: u64,
    /// Skipped: a stale freespace entry of a bucket used since the
    /// source was read.
    pub skipped_stale: u64,
}

/// Where sectors were handed out: one pointer (`bch2_ob_ptr()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocPtr {
    /// Device.
    pub dev: u8,
    /// First 512-byte sector on the device.
    pub offset: u64,
    /// The bucket's gen.
    pub gen: u8,
    /// Bucket number.
    pub bucket: u64,
    /// A cached pointer (a device of durability 0).
    pub cached: bool,
}

impl fmt::Display for AllocPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ptr: {}:{} gen {}{}", self.dev, self.offset, self.gen, if self.cached { " cached" } else { "" })
    }
}

/// The pointers of one allocation, one per replica.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocPtrs {
    nr: u8,
    v: [AllocPtr; OPEN_BUCKET_LIST_MAX],
}

impl AllocPtrs {
    /// The pointers.
    pub fn as_slice(&self) -> &[AllocPtr] {
        &self.v[..usize::from(self.nr).min(OPEN_BUCKET_LIST_MAX)]
    }

    /// The `i`th.
    pub fn get(&self, i: usize) -> Option<&AllocPtr> {
        self.as_slice().get(i)
    }
}

/// A device's discard, for buckets leaving `need_discard`
/// (`blkdev_issue_discard()`).  The default does nothing.
pub trait DiscardDev {
    /// Discards `nr_sectors` 512-byte sectors from `sector` of `dev`.
    ///
    /// Errors: the device's; a failed discard leaves the bucket in
    /// need_discard.
    fn discard(&self, dev: u8, sector: u64, nr_sectors: u64) -> Result<(), Errno> {
        let _ = (dev, sector, nr_sectors);
        Ok(())
    }
}

/// A [`DiscardDev`] that does nothing.
pub struct NoDiscard;
impl DiscardDev for NoDiscard {}

/// What the allocator keeps of each bucket (C: the alloc key in the key
/// cache and `ca->bucket_gens`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketMem {
    /// Generation.
    pub gen: u8,
    /// Oldest gen of a pointer into it (for the freespace genbits).
    pub oldest_gen: u8,
    /// `BCH_DATA_*`.
    pub data_type: u8,
    /// [`BUCKET_UPDATED`].
    flags: u8,
}

/// Allocator state of one member device (C's allocator fields of
/// `struct bch_dev`).
pub struct DevAlloc {
    /// Device index.
    pub dev: u8,
    /// Bucket size, sectors.
    pub bucket_size: u32,
    /// First bucket the allocator may use.
    pub first_bucket: u64,
    /// Number of buckets.
    pub nbuckets: u64,
    /// Durability (0: a cache device).
    pub durability: u8,
    /// Member state rw: the allocator may use it.
    pub rw: bool,
    /// `BCH_MEMBER_DISCARD`: issue discards.
    pub discard: bool,
    /// `BCH_MEMBER_FREESPACE_INITIALIZED`: allocate from the freespace
    /// btree, not by scanning alloc keys.
    pub freespace_initialized: bool,
    /// `ca->nr_btree_reserve`, buckets.
    pub nr_btree_reserve: u64,
    /// Superblock copies: (first sector, end sector).
    sb_ranges: Vec<(u64, u64)>,
    /// Each bucket's state, by bucket number.
    buckets: Vec<BucketMem>,
    /// Buckets per data type (`bch_dev_usage.d[].buckets`).
    pub usage: [u64; NR_DATA_TYPES],
    /// Open buckets on this device (`ca->nr_open_buckets`).
    pub nr_open_buckets: u64,
    /// Of them, on the partial list (`ca->nr_partial_buckets`).
    pub nr_partial_buckets: u64,
    /// Where the next freespace search starts (`ca->alloc_cursor`), a
    /// freespace offset (genbits included).
    pub alloc_cursor: u64,
    /// Next bucket [`Allocator::bucket_alloc_new_fs`] looks at.
    pub new_fs_bucket_idx: u64,
    /// Buckets emptied by keys whose journal entry is not flushed:
    /// (bucket, journal seq) (`buckets_waiting_for_journal`).
    waiting_for_journal: Vec<(u64, u64)>,
    /// Counters of the last search.
    pub last_search: BucketAllocState,
    /// Buckets handed out.
    pub nr_allocated: u64,
    /// Buckets discarded.
    pub nr_discarded: u64,
}

impl DevAlloc {
    /// `is_superblock_bucket()`: bucket 0, or one overlapping a
    /// superblock copy.
    pub fn is_superblock_bucket(&self, b: u64) -> bool {
        let bs = u64::from(self.bucket_size);
        let (start, end) = (b.saturating_mul(bs), b.saturating_add(1).saturating_mul(bs));
        b == 0 || self.sb_ranges.iter().any(|&(o, e)| !(o >= end || e <= start))
    }

    /// `dev_buckets_free()`: free buckets less open ones less the
    /// watermark's reserve.
    pub fn buckets_free(&self, watermark: Watermark) -> u64 {
        self.usage[0]
            .saturating_sub(self.nr_open_buckets)
            .saturating_sub(dev_buckets_reserved(self.nbuckets, self.nr_btree_reserve, watermark))
    }

    /// `__dev_buckets_available()`: as [`buckets_free`](Self::buckets_free)
    /// but counting cached, need_gc_gens and need_discard buckets, which
    /// can be made free.
    pub fn buckets_available(&self, watermark: Watermark) -> u64 {
        (self.usage[0]
            + self.usage[data_type::CACHED as usize]
            + self.usage[data_type::NEED_GC_GENS as usize]
            + self.usage[data_type::NEED_DISCARD as usize])
            .saturating_sub(self.nr_open_buckets)
            .saturating_sub(dev_buckets_reserved(self.nbuckets, self.nr_btree_reserve, watermark))
    }

    /// The in-memory (gen, data type) of bucket `b`.
    pub fn bucket(&self, b: u64) -> Option<(u8, u8)> {
        self.bucket_mem(b).map(|m| (m.gen, m.data_type))
    }

    /// The in-memory state of bucket `b` (`None` past the device, or
    /// before [`Allocator::load`]).
    pub fn bucket_mem(&self, b: u64) -> Option<BucketMem> {
        self.buckets.get(usize::try_from(b).ok()?).copied()
    }

    fn needs_journal_commit(&self, b: u64, flushed_seq: u64) -> bool {
        self.waiting_for_journal.iter().any(|&(wb, seq)| wb == b && seq > flushed_seq)
    }
}

/// The replicas gathered so far by one `bch2_alloc_sectors_start_trans()`.
struct Replicas {
    ptrs: OpenBuckets,
    /// Devices still allowed (bit per device index).
    devs: u64,
    nr_replicas: u32,
    nr_effective: u32,
    have_cache: bool,
}

/// The whole allocator state, under one lock.
struct Inner {
    devs: Vec<Option<DevAlloc>>,
    obs: Vec<OpenBucket>,
    ob_hash: Vec<u16>,
    freelist: u16,
    nr_free: usize,
    partial: Vec<u16>,
    wps: Vec<WritePoint>,
    write_points_nr: usize,
    clock: u64,
    flushed_seq: u64,
}

/// The foreground allocator of one filesystem (C's allocator fields of
/// `struct bch_fs`).  `Sync`: shared by every writer.
pub struct Allocator {
    inner: Mutex<Inner>,
    /// The newest flushed journal sequence number
    /// [`journal_flushed`](Self::journal_flushed) was told.
    flushed_seen: core::sync::atomic::AtomicU64,
    /// Btree node size, sectors.
    pub btree_node_sectors: u32,
}

/// The hash slot of (dev, bucket) (`open_bucket_hashslot()`; C uses
/// `jhash_3words`, any spread will do).
fn ob_hashslot(dev: u8, bucket: u64) -> usize {
    let h = (bucket ^ (u64::from(dev) << 48)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 54) as usize & (OPEN_BUCKETS_COUNT - 1)
}

/// Checks one alloc key read at load: an `alloc_v4` of a bucket of the
/// device, at least the v0 size, with a known data type.
fn check_alloc_key(d: &DevAlloc, k: &Bkey, v: &[u8]) -> Result<AllocV4, Errno> {
    let bad = |what: &str| {
        log::err!("alloc: dev {} bucket {}: {what}; run fsck", d.dev, k.p.offset);
        Errno::EUCLEAN
    };
    if k.key_type != KeyType::AllocV4 as u8 {
        return Err(bad("not an alloc_v4 key (older alloc versions are not read)"));
    }
    if k.p.offset >= d.nbuckets {
        return Err(bad("alloc key past the end of the device"));
    }
    if (v.len() as u64) < ALLOC_V4_U64S_V0 * 8 {
        return Err(bad("alloc_v4 value too short"));
    }
    let a = AllocV4::decode(v);
    if a.data_type >= data_type::NR {
        return Err(bad("invalid data type"));
    }
    Ok(a)
}

impl Inner {
    fn dev(&self, dev: u8) -> Result<&DevAlloc, BucketAllocError> {
        self.devs.get(usize::from(dev)).and_then(|d| d.as_ref()).ok_or(BucketAllocError::Errno(Errno::EINVAL))
    }

    fn dev_mut(&mut self, dev: u8) -> Result<&mut DevAlloc, BucketAllocError> {
        self.devs.get_mut(usize::from(dev)).and_then(|d| d.as_mut()).ok_or(BucketAllocError::Errno(Errno::EINVAL))
    }

    fn ob(&self, i: u16) -> &OpenBucket {
        // Indices come from this table's own lists; 0 (the sentinel)
        // stands in for anything out of range.
        self.obs.get(usize::from(i)).unwrap_or(&self.obs[0])
    }

    fn ob_mut(&mut self, i: u16) -> Option<&mut OpenBucket> {
        if i == 0 {
            return None;
        }
        self.obs.get_mut(usize::from(i))
    }

    fn bucket_is_open(&self, dev: u8, bucket: u64) -> bool {
        let mut slot = self.ob_hash[ob_hashslot(dev, bucket)];
        let mut n = 0;
        while slot != 0 && n < OPEN_BUCKETS_COUNT {
            let ob = self.ob(slot);
            if ob.dev == dev && ob.bucket == bucket {
                return true;
            }
            slot = ob.hash;
            n += 1;
        }
        false
    }

    fn hash_add(&mut self, i: u16) {
        let ob = *self.ob(i);
        let s = ob_hashslot(ob.dev, ob.bucket);
        let head = self.ob_hash[s];
        if let Some(o) = self.ob_mut(i) {
            o.hash = head;
        }
        self.ob_hash[s] = i;
    }

    fn hash_remove(&mut self, i: u16) {
        let ob = *self.ob(i);
        let s = ob_hashslot(ob.dev, ob.bucket);
        if self.ob_hash[s] == i {
            self.ob_hash[s] = ob.hash;
        } else {
            let mut cur = self.ob_hash[s];
            let mut n = 0;
            while cur != 0 && n < OPEN_BUCKETS_COUNT {
                let next = self.ob(cur).hash;
                if next == i {
                    if let Some(c) = self.ob_mut(cur) {
                        c.hash = ob.hash;
                    }
                    break;
                }
                cur = next;
                n += 1;
            }
        }
        if let Some(o) = self.ob_mut(i) {
            o.hash = 0;
        }
    }

    /// `bch2_open_bucket_put()`.
    fn ob_put(&mut self, i: u16) {
        let Some(ob) = self.ob_mut(i) else { return };
        if ob.pin == 0 {
            log::err!("alloc: open bucket {i} put with no reference");
            return;
        }
        ob.pin -= 1;
        if ob.pin != 0 {
            return;
        }
        let dev = ob.dev;
        self.hash_remove(i);
        let fl = self.freelist;
        if let Some(ob) = self.ob_mut(i) {
            ob.valid = false;
            ob.data_type = 0;
            ob.freelist = fl;
        }
        self.freelist = i;
        self.nr_free += 1;
        if let Ok(d) = self.dev_mut(dev) {
            d.nr_open_buckets = d.nr_open_buckets.saturating_sub(1);
        }
    }

    /// `open_bucket_free_unused()`: onto the partial list, keeping its
    /// reference.
    fn ob_free_unused(&mut self, i: u16) {
        if self.partial.len() >= OPEN_BUCKETS_COUNT || self.partial.push(i).is_err() {
            self.ob_put(i);
            return;
        }
        let Some(ob) = self.ob_mut(i) else { return };
        ob.on_partial_list = true;
        let dev = ob.dev;
        if let Ok(d) = self.dev_mut(dev) {
            d.nr_partial_buckets += 1;
        }
    }

    /// `__try_alloc_bucket()`.
    fn try_open(&mut self, dev: u8, bucket: u64, gen: u8, watermark: Watermark, s: &mut BucketAllocState) -> Result<Option<u16>, BucketAllocError> {
        let flushed = self.flushed_seq;
        if self.bucket_is_open(dev, bucket) {
            s.skipped_open += 1;
            return Ok(None);
        }
        let d = self.dev(dev)?;
        if d.needs_journal_commit(bucket, flushed) {
            s.skipped_need_journal_commit += 1;
            return Ok(None);
        }
        if d.is_superblock_bucket(bucket) && !d.freespace_initialized {
            s.skipped_nouse += 1;
            return Ok(None);
        }
        let bucket_size = d.bucket_size;
        if self.nr_free <= open_buckets_reserved(watermark) || self.freelist == 0 {
            return Err(BucketAllocError::OpenBucketsEmpty);
        }
        let i = self.freelist;
        let next = self.ob(i).freelist;
        self.freelist = next;
        self.nr_free -= 1;
        if let Some(ob) = self.ob_mut(i) {
            *ob = OpenBucket { pin: 1, valid: true, sectors_free: bucket_size, dev, gen, bucket, ..OpenBucket::default() };
        }
        self.hash_add(i);
        let d = self.dev_mut(dev)?;
        d.nr_open_buckets += 1;
        d.nr_allocated += 1;
        Ok(Some(i))
    }

    /// `try_alloc_bucket()`: checks the freespace entry against the
    /// bucket's state, then opens it.
    fn try_alloc_entry(&mut self, dev: u8, entry: u64, watermark: Watermark, s: &mut BucketAllocState) -> Result<Option<u16>, BucketAllocError> {
        let b = entry & FREESPACE_BUCKET_MASK;
        let genbits = entry >> 56;
        let d = self.dev(dev)?;
        if b < d.first_bucket || b >= d.nbuckets {
            log::err!(
                "alloc: freespace btree has bucket outside allowed range {}-{}: {dev}:{entry}; run fsck",
                d.first_bucket,
                d.nbuckets
            );
            return Err(BucketAllocError::Errno(Errno::EIO));
        }
        // Not loaded: nothing is known free.
        let m = d.bucket_mem(b).ok_or(BucketAllocError::Errno(Errno::EINVAL))?;
        let (dt, gen, oldest, fl) = (m.data_type, m.gen, m.oldest_gen, m.flags);
        if dt != data_type::FREE {
            if fl & BUCKET_UPDATED != 0 {
                s.skipped_stale += 1;
                return Ok(None);
            }
            log::err!("alloc: non free bucket in freespace btree: {dev}:{b} has data type {}; run fsck", DataTypeName(dt));
            return Err(BucketAllocError::Errno(Errno::EIO));
        }
        let a = AllocV4 { gen, oldest_gen: oldest, ..AllocV4::default() };
        let want = alloc_freespace_genbits(&a) >> 56;
        if genbits != want && fl & BUCKET_UPDATED == 0 {
            log::err!("alloc: bucket in freespace btree with wrong genbits (got {genbits} should be {want}): {dev}:{b}; run fsck");
            return Err(BucketAllocError::Errno(Errno::EIO));
        }
        self.try_open(dev, b, gen, watermark, s)
    }

    /// `bch2_bucket_alloc_freelist()`.
    fn alloc_freelist(&mut self, src: &dyn FreespaceSource, dev: u8, watermark: Watermark, s: &mut BucketAllocState) -> Result<Option<u16>, BucketAllocError> {
        let d = self.dev(dev)?;
        let first = d.first_bucket;
        let mut start = first.max(d.alloc_cursor);
        let mut cursor = start;
        let found = loop {
            let mut found = None;
            while let Some(e) = src.next_free(dev, cursor)? {
                cursor = e;
                s.buckets_seen += 1;
                if let Some(ob) = self.try_alloc_entry(dev, e, watermark, s)? {
                    found = Some(ob);
                    break;
                }
                match e.checked_add(1) {
                    Some(n) => cursor = n,
                    None => break,
                }
            }
            if found.is_some() || start <= first {
                break found;
            }
            start = first;
            cursor = first;
        };
        self.dev_mut(dev)?.alloc_cursor = cursor;
        Ok(found)
    }

    /// `bch2_bucket_alloc_early()`: before the freespace btree exists,
    /// scan the bucket states.
    fn alloc_early(&mut self, dev: u8, watermark: Watermark, s: &mut BucketAllocState) -> Result<Option<u16>, BucketAllocError> {
        let d = self.dev(dev)?;
        let first = d.first_bucket.max(d.new_fs_bucket_idx);
        let mut start = first.max(d.alloc_cursor);
        let nb = d.nbuckets;
        loop {
            let mut b = start;
            while b < nb {
                let d = self.dev(dev)?;
                let Some(m) = d.bucket_mem(b) else { break };
                if m.data_type == data_type::FREE {
                    s.buckets_seen += 1;
                    let gen = m.gen;
                    if let Some(ob) = self.try_open(dev, b, gen, watermark, s)? {
                        self.dev_mut(dev)?.alloc_cursor = b;
                        return Ok(Some(ob));
                    }
                }
                b += 1;
            }
            if start <= first {
                self.dev_mut(dev)?.alloc_cursor = b;
                return Ok(None);
            }
            start = first;
        }
    }

    /// `bch2_bucket_alloc_trans()`: one bucket of `dev`.
    fn bucket_alloc(&mut self, src: &dyn FreespaceSource, dev: u8, watermark: Watermark, dt: u8) -> Result<u16, BucketAllocError> {
        let mut s = BucketAllocState::default();
        let d = self.dev(dev)?;
        let freespace = d.freespace_initialized;
        let r = if d.buckets_free(watermark) == 0 {
            Err(BucketAllocError::FreelistEmpty)
        } else {
            let r = if freespace { self.alloc_freelist(src, dev, watermark, &mut s) } else { self.alloc_early(dev, watermark, &mut s) };
            match r {
                Ok(Some(ob)) => Ok(ob),
                Ok(None) => Err(BucketAllocError::NoBucketsFound),
                Err(e) => Err(e),
            }
        };
        if let Ok(d) = self.dev_mut(dev) {
            d.last_search = s;
        }
        let ob = r?;
        if let Some(o) = self.ob_mut(ob) {
            o.data_type = dt;
        }
        Ok(ob)
    }

    fn want_bucket(&self, wp: &WritePoint, devs: u64, have_cache: bool, i: u16) -> bool {
        let ob = self.ob(i);
        let Ok(d) = self.dev(ob.dev) else { return false };
        devs & (1u64 << (ob.dev & 63)) != 0
            && ob.data_type == wp.data_type
            && !(d.durability == 0 && (wp.data_type == data_type::BTREE || have_cache))
    }

    /// `add_new_bucket()`: true when enough replicas.
    fn add_new_bucket(&self, r: &mut Replicas, i: u16) -> bool {
        let ob = self.ob(i);
        let dur = self.dev(ob.dev).map_or(0, |d| d.durability);
        r.devs &= !(1u64 << (ob.dev & 63));
        r.nr_effective += u32::from(dur);
        r.have_cache |= dur == 0;
        r.ptrs.push(i);
        r.nr_effective >= r.nr_replicas
    }

    /// `__open_bucket_add_buckets()` without erasure coding.
    fn add_buckets(&mut self, src: &dyn FreespaceSource, wpi: usize, r: &mut Replicas, watermark: Watermark) -> Result<(), BucketAllocError> {
        r.devs = 0;
        for d in self.devs.iter().flatten() {
            if d.rw && d.dev < 64 {
                r.devs |= 1 << d.dev;
            }
        }
        for &i in r.ptrs.as_slice() {
            r.devs &= !(1u64 << (self.ob(i).dev & 63));
        }
        let wp = self.wps[wpi];
        // bucket_alloc_set_writepoint()
        let mut skip = OpenBuckets::new();
        let mut done = false;
        for &i in wp.ptrs.as_slice() {
            if !done && self.want_bucket(&wp, r.devs, r.have_cache, i) {
                done = self.add_new_bucket(r, i);
            } else {
                skip.push(i);
            }
        }
        self.wps[wpi].ptrs = skip;
        if done {
            return Ok(());
        }
        // bucket_alloc_set_partial()
        let mut j = self.partial.len();
        while j > 0 {
            j -= 1;
            let i = self.partial[j];
            if !self.want_bucket(&wp, r.devs, r.have_cache, i) {
                continue;
            }
            let dev = self.ob(i).dev;
            let d = self.dev(dev)?;
            if d.buckets_free(watermark) + d.nr_partial_buckets == 0 {
                continue;
            }
            let last = self.partial.len() - 1;
            self.partial.swap(j, last);
            self.partial.pop();
            if let Some(o) = self.ob_mut(i) {
                o.on_partial_list = false;
            }
            let d = self.dev_mut(dev)?;
            d.nr_partial_buckets = d.nr_partial_buckets.saturating_sub(1);
            if self.add_new_bucket(r, i) {
                return Ok(());
            }
        }
        // bch2_bucket_alloc_set_trans()
        let mut ret = Err(BucketAllocError::InsufficientDevices);
        for dev in 0..64u8 {
            if r.devs & (1 << dev) == 0 {
                continue;
            }
            let Ok(d) = self.dev(dev) else { continue };
            if d.durability == 0 && r.have_cache {
                continue;
            }
            match self.bucket_alloc(src, dev, watermark, wp.data_type) {
                Ok(i) => {
                    if self.add_new_bucket(r, i) {
                        return Ok(());
                    }
                }
                Err(e @ BucketAllocError::Errno(_)) => return Err(e),
                Err(e) => ret = Err(e),
            }
        }
        ret
    }

    /// `writepoint_find()`.
    fn writepoint_find(&mut self, spec: WritePointSpec) -> usize {
        self.clock += 1;
        let i = match spec {
            WritePointSpec::Copygc => WP_COPYGC,
            WritePointSpec::Rebalance => WP_REBALANCE,
            WritePointSpec::Btree => WP_BTREE,
            WritePointSpec::Hashed(v) => {
                let v = v | 1;
                match self.wps[..self.write_points_nr].iter().position(|w| w.write_point == v) {
                    Some(i) => i,
                    None => {
                        // try_increase_writepoints()
                        while self.write_points_nr < WRITE_POINT_MAX && !self.too_many_writepoints(32) {
                            self.write_points_nr += 1;
                        }
                        let mut oldest = 0;
                        for (i, w) in self.wps[..self.write_points_nr].iter().enumerate() {
                            if w.last_used < self.wps[oldest].last_used {
                                oldest = i;
                            }
                        }
                        self.wps[oldest].write_point = v;
                        oldest
                    }
                }
            }
        };
        self.wps[i].last_used = self.clock;
        i
    }

    /// `too_many_writepoints()`: the buckets write points may strand,
    /// times `factor`, exceed the free space (here: the free buckets'
    /// sectors; C uses `bch2_fs_usage_read_short().free`).
    fn too_many_writepoints(&self, factor: u64) -> bool {
        let bucket_max = self.devs.iter().flatten().map(|d| u64::from(d.bucket_size)).max().unwrap_or(0);
        let free: u64 = self.devs.iter().flatten().map(|d| d.usage[0].saturating_mul(u64::from(d.bucket_size))).sum();
        (self.write_points_nr as u64).saturating_mul(bucket_max).saturating_mul(factor) > free
    }

    /// `try_decrease_writepoints()`.
    fn try_decrease_writepoints(&mut self, old_nr: usize) -> bool {
        if self.write_points_nr < old_nr {
            return true;
        }
        if self.write_points_nr <= 1 || !self.too_many_writepoints(8) {
            return false;
        }
        self.write_points_nr -= 1;
        let wp = &mut self.wps[self.write_points_nr];
        let ptrs = wp.ptrs;
        wp.ptrs = OpenBuckets::new();
        wp.write_point = (self.write_points_nr as u64) << 1;
        for &i in ptrs.as_slice() {
            self.ob_free_unused(i);
        }
        true
    }

    /// `bch2_alloc_sectors_done()`: full buckets leave the write point.
    fn sectors_done(&mut self, wpi: usize) {
        let ptrs = self.wps[wpi].ptrs;
        let mut keep = OpenBuckets::new();
        for &i in ptrs.as_slice() {
            if self.ob(i).sectors_free == 0 {
                self.ob_put(i);
            } else {
                keep.push(i);
            }
        }
        self.wps[wpi].ptrs = keep;
    }
}

/// A locked write point with space (`bch2_alloc_sectors_start_trans()`'s
/// result, its mutex held): take sectors with
/// [`append_ptrs`](Self::append_ptrs), then [`done`](Self::done) (also run
/// on drop).
#[must_use = "the write point stays locked until done() or drop"]
pub struct WpGuard<'a> {
    inner: MutexGuard<'a, Inner>,
    wp: usize,
}

impl WpGuard<'_> {
    /// Sectors that can be taken now, contiguous in every replica.
    pub fn sectors_free(&self) -> u32 {
        self.inner.wps[self.wp].sectors_free
    }

    /// The write point.
    pub fn write_point(&self) -> &WritePoint {
        &self.inner.wps[self.wp]
    }

    /// `bch2_open_bucket_get()`: a reference on each of the write point's
    /// open buckets, to put with [`Allocator::open_buckets_put`] once the
    /// key pointing into them is committed.
    pub fn open_bucket_get(&mut self) -> OpenBuckets {
        let wp = self.inner.wps[self.wp];
        let mut r = OpenBuckets::new();
        for &i in wp.ptrs.as_slice() {
            if let Some(ob) = self.inner.ob_mut(i) {
                ob.data_type = wp.data_type;
                ob.pin += 1;
                r.push(i);
            }
        }
        r
    }

    /// `bch2_alloc_sectors_append_ptrs()`: takes `sectors` from every
    /// bucket of the write point and returns where (one pointer per
    /// replica).
    ///
    /// Errors: `EINVAL` for 0 or more than [`sectors_free`](Self::sectors_free).
    pub fn append_ptrs(&mut self, sectors: u32) -> Result<AllocPtrs, Errno> {
        let wp = self.inner.wps[self.wp];
        if sectors == 0 || sectors > wp.sectors_free {
            return Err(Errno::EINVAL);
        }
        let mut out = AllocPtrs::default();
        for &i in wp.ptrs.as_slice() {
            let ob = *self.inner.ob(i);
            let d = self.inner.dev(ob.dev).map_err(BucketAllocError::errno)?;
            if sectors > ob.sectors_free {
                return Err(Errno::EINVAL);
            }
            let bs = u64::from(d.bucket_size);
            // bch2_ob_ptr(); a bucket past u64 sectors cannot be opened
            // from a loaded device, but the geometry came from disk.
            let offset = ob.bucket.checked_add(1).and_then(|e| e.checked_mul(bs)).ok_or(Errno::EINVAL)? - u64::from(ob.sectors_free);
            let p = AllocPtr {
                dev: ob.dev,
                offset,
                gen: ob.gen,
                bucket: ob.bucket,
                cached: d.durability == 0 && wp.data_type == data_type::USER,
            };
            if let Some(s) = out.v.get_mut(usize::from(out.nr)) {
                *s = p;
                out.nr += 1;
            }
            if let Some(o) = self.inner.ob_mut(i) {
                o.sectors_free -= sectors;
            }
        }
        let w = &mut self.inner.wps[self.wp];
        w.sectors_free -= sectors;
        w.sectors_allocated += u64::from(sectors);
        Ok(out)
    }

    /// `bch2_alloc_sectors_done()`: full buckets leave the write point;
    /// unlocks it.
    pub fn done(self) {}
}

impl Drop for WpGuard<'_> {
    fn drop(&mut self) {
        self.inner.sectors_done(self.wp);
    }
}

impl Allocator {
    /// An allocator for the members of `sb` (rw members with geometry),
    /// with no bucket state yet: [`load`](Self::load) it.
    ///
    /// Errors: `EUCLEAN` (no btree node size), `ENOMEM`.
    pub fn new(sb: &Sb<'_>) -> Result<Allocator, Errno> {
        let node_bytes = sb_opt("btree_node_size").map(|o| sb.opt(o)).ok_or(Errno::EUCLEAN)?;
        let btree_node_sectors = u32::try_from(node_bytes >> 9).map_err(|_| Errno::EUCLEAN)?;
        let layout = sb.layout();
        let mut devs: Vec<Option<DevAlloc>> = Vec::new();
        for (i, m) in sb.members() {
            if !m.alive() || i >= 64 {
                continue;
            }
            while devs.len() <= usize::from(i) {
                devs.push(None)?;
            }
            let bucket_size = u32::from(m.bucket_size);
            if bucket_size == 0 || m.nbuckets <= u64::from(m.first_bucket) {
                continue;
            }
            let mut sb_ranges = Vec::new();
            for &o in layout.offsets() {
                sb_ranges.push((o, o.saturating_add(layout.max_sectors())))?;
            }
            devs[usize::from(i)] = Some(DevAlloc {
                dev: i,
                bucket_size,
                first_bucket: u64::from(m.first_bucket),
                nbuckets: m.nbuckets,
                durability: m.durability().min(255) as u8,
                rw: m.flag(MemberFlag::State) == 0,
                discard: m.flag(MemberFlag::Discard) != 0,
                freespace_initialized: m.flag(MemberFlag::FreespaceInitialized) != 0,
                nr_btree_reserve: nr_btree_reserve(bucket_size, btree_node_sectors),
                sb_ranges,
                buckets: Vec::new(),
                usage: [0; NR_DATA_TYPES],
                nr_open_buckets: 0,
                nr_partial_buckets: 0,
                alloc_cursor: 0,
                new_fs_bucket_idx: 0,
                waiting_for_journal: Vec::new(),
                last_search: BucketAllocState::default(),
                nr_allocated: 0,
                nr_discarded: 0,
            });
        }
        let mut obs = Vec::new();
        obs.resize(OPEN_BUCKETS_COUNT, OpenBucket::default())?;
        // bch2_fs_allocator_foreground_init(): entry 0 is the sentinel; the
        // free list runs from the highest index down.
        let mut freelist = 0u16;
        for (i, ob) in obs.iter_mut().enumerate().skip(1) {
            ob.freelist = freelist;
            freelist = i as u16;
        }
        let mut ob_hash = Vec::new();
        ob_hash.resize(OPEN_BUCKETS_COUNT, 0u16)?;
        let mut wps = Vec::new();
        for i in 0..WRITE_POINT_MAX {
            wps.push(WritePoint::new((i as u64) << 1, data_type::USER))?;
        }
        wps.push(WritePoint::new(u64::MAX - 5, data_type::USER))?;
        wps.push(WritePoint::new(u64::MAX - 3, data_type::USER))?;
        wps.push(WritePoint::new(u64::MAX - 1, data_type::BTREE))?;
        Ok(Allocator {
            flushed_seen: core::sync::atomic::AtomicU64::new(0),
            inner: Mutex::new(Inner {
                devs,
                obs,
                ob_hash,
                freelist,
                nr_free: OPEN_BUCKETS_COUNT - 1,
                partial: Vec::new(),
                wps,
                write_points_nr: WRITE_POINT_MAX,
                clock: 0,
                flushed_seq: 0,
            })?,
            btree_node_sectors,
        })
    }

    /// An allocator over the volume `fs` reads, loaded.
    ///
    /// Errors: as [`new`](Self::new) and [`load`](Self::load).
    pub fn open<D: crate::platform::BlockDev>(fs: &crate::bcachefs::Fs<D>) -> Result<Allocator, Errno> {
        let sb = Sb::parse(fs.sb_bytes()).map_err(|_| Errno::EUCLEAN)?;
        let a = Allocator::new(&sb)?;
        a.load(fs)?;
        Ok(a)
    }

    /// Loads every device's bucket states from the alloc btree
    /// (`bch2_alloc_read()`) and counts buckets per data type as C's
    /// `dev_data_type` accounting does: free is `nbuckets - first_bucket`
    /// less every bucket with another data type.
    ///
    /// Errors: `EUCLEAN` for an alloc key that is not `alloc_v4`, past the
    /// device, too short or of an unknown data type (logged); `EIO`,
    /// `ENOMEM`.
    pub fn load(&self, src: &dyn FreespaceSource) -> Result<(), Errno> {
        let mut g = self.inner.lock();
        for d in g.devs.iter_mut().flatten() {
            let nb = usize::try_from(d.nbuckets).map_err(|_| Errno::EUCLEAN)?;
            d.buckets.clear();
            d.buckets.resize(nb, BucketMem::default())?;
            d.usage = [0; NR_DATA_TYPES];
            let dev = d.dev;
            src.for_each_alloc_key(dev, &mut |k, v| {
                let a = check_alloc_key(d, k, v)?;
                let m = usize::try_from(k.p.offset).ok().and_then(|i| d.buckets.get_mut(i)).ok_or(Errno::EUCLEAN)?;
                *m = BucketMem { gen: a.gen, oldest_gen: a.oldest_gen, data_type: a.data_type, flags: 0 };
                if a.data_type != data_type::FREE {
                    d.usage[usize::from(a.data_type)] += 1;
                }
                Ok(())
            })?;
            let used: u64 = d.usage.iter().sum();
            d.usage[0] = (d.nbuckets - d.first_bucket).saturating_sub(used);
            d.alloc_cursor = 0;
        }
        Ok(())
    }

    /// Runs `f` on device `dev`'s state (for printers and tests).
    ///
    /// Errors: `EINVAL` for no such device.
    pub fn with_dev<T>(&self, dev: u8, f: impl FnOnce(&DevAlloc) -> T) -> Result<T, Errno> {
        let g = self.inner.lock();
        g.dev(dev).map(f).map_err(BucketAllocError::errno)
    }

    /// Sets whether `dev` allocates from the freespace btree (the
    /// member's `freespace_initialized`, set once `bch2_dev_freespace_init()`
    /// has built it) or by scanning its bucket states.
    ///
    /// Errors: `EINVAL` for no such device.
    pub fn set_freespace_initialized(&self, dev: u8, v: bool) -> Result<(), Errno> {
        let mut g = self.inner.lock();
        let d = g.dev_mut(dev).map_err(BucketAllocError::errno)?;
        d.freespace_initialized = v;
        d.alloc_cursor = 0;
        Ok(())
    }

    /// The member devices the allocator knows.
    pub fn devs(&self) -> u64 {
        let g = self.inner.lock();
        g.devs.iter().flatten().fold(0, |m, d| m | (1u64 << (d.dev & 63)))
    }

    /// `bch2_bucket_is_open()`.
    pub fn bucket_is_open(&self, dev: u8, bucket: u64) -> bool {
        self.inner.lock().bucket_is_open(dev, bucket)
    }

    /// A copy of open bucket `i`.
    pub fn open_bucket(&self, i: u16) -> Option<OpenBucket> {
        let g = self.inner.lock();
        g.obs.get(usize::from(i)).copied().filter(|o| o.valid)
    }

    /// Free entries of the open bucket table (`open_buckets_nr_free`).
    pub fn open_buckets_nr_free(&self) -> usize {
        self.inner.lock().nr_free
    }

    /// `bch2_bucket_alloc()`: one bucket of `dev` for `data_type`, opened
    /// with one reference (the caller's: put it with
    /// [`open_buckets_put`](Self::open_buckets_put) once the bucket is
    /// marked).  Used for journal buckets and by tests.
    ///
    /// Errors: [`BucketAllocError`]; `ENOSPC` class when the device is at the
    /// watermark, `EIO` for a corrupt freespace entry.
    pub fn bucket_alloc(&self, src: &dyn FreespaceSource, dev: u8, watermark: Watermark, dt: u8) -> Result<(OpenBuckets, OpenBucket), BucketAllocError> {
        let mut g = self.inner.lock();
        let i = g.bucket_alloc(src, dev, watermark, dt)?;
        let mut r = OpenBuckets::new();
        r.push(i);
        Ok((r, *g.ob(i)))
    }

    /// `bch2_bucket_alloc_new_fs()`: the next bucket of `dev` that is not
    /// a superblock bucket, for the journal of a volume being formatted
    /// (no alloc info exists yet).  `None` at the end of the device.
    pub fn bucket_alloc_new_fs(&self, dev: u8) -> Option<u64> {
        let mut g = self.inner.lock();
        let d = g.dev_mut(dev).ok()?;
        while d.new_fs_bucket_idx < d.nbuckets {
            let b = d.new_fs_bucket_idx;
            d.new_fs_bucket_idx += 1;
            if !d.is_superblock_bucket(b) {
                return Some(b);
            }
        }
        None
    }

    /// The journal buckets of a new device (`bch2_dev_journal_alloc(ca,
    /// true)`): [`journal_buckets_default`] buckets from
    /// [`bucket_alloc_new_fs`](Self::bucket_alloc_new_fs).
    ///
    /// Errors: `ENOSPC` when the device has too few buckets, `ENOMEM`.
    pub fn dev_journal_alloc_new_fs(&self, dev: u8) -> Result<Vec<u64>, Errno> {
        let (nb, bs) = self.with_dev(dev, |d| (d.nbuckets, d.bucket_size))?;
        let mut v = Vec::new();
        for _ in 0..journal_buckets_default(nb, bs) {
            v.push(self.bucket_alloc_new_fs(dev).ok_or(Errno::ENOSPC)?)?;
        }
        Ok(v)
    }

    /// `bch2_alloc_sectors_start_trans()`: finds the write point of
    /// `spec`, makes sure it has an open bucket on `nr_replicas` devices'
    /// worth of durability (reusing its own, then partial ones, then new
    /// buckets at `watermark`) and returns it locked.
    ///
    /// Errors: [`BucketAllocError`]: `FreelistEmpty`/`NoBucketsFound` when no
    /// device has a bucket above the watermark (after shrinking the number
    /// of hashed write points, as C), `OpenBucketsEmpty`,
    /// `InsufficientDevices`, `EIO` for a corrupt freespace entry.
    pub fn alloc_sectors_start(&self, src: &dyn FreespaceSource, spec: WritePointSpec, nr_replicas: u32, watermark: Watermark) -> Result<WpGuard<'_>, BucketAllocError> {
        if nr_replicas == 0 || nr_replicas as usize > OPEN_BUCKET_LIST_MAX {
            return Err(BucketAllocError::Errno(Errno::EINVAL));
        }
        let mut g = self.inner.lock();
        loop {
            let old_nr = g.write_points_nr;
            let wpi = g.writepoint_find(spec);
            // Metadata may not go to cache devices.
            let mut rep = Replicas { ptrs: OpenBuckets::new(), devs: 0, nr_replicas, nr_effective: 0, have_cache: g.wps[wpi].data_type != data_type::USER };
            let r = g.add_buckets(src, wpi, &mut rep, watermark);
            let mut ptrs = rep.ptrs;
            match r {
                Ok(()) => {
                    // Buckets of the write point not used this time.
                    let left = g.wps[wpi].ptrs;
                    for &i in left.as_slice() {
                        g.ob_free_unused(i);
                    }
                    let mut sf = u32::MAX;
                    for &i in ptrs.as_slice() {
                        sf = sf.min(g.ob(i).sectors_free);
                    }
                    let w = &mut g.wps[wpi];
                    w.ptrs = ptrs;
                    w.sectors_free = if sf == u32::MAX { 0 } else { sf };
                    return Ok(WpGuard { inner: g, wp: wpi });
                }
                Err(e) => {
                    let left = g.wps[wpi].ptrs;
                    for &i in left.as_slice() {
                        if !ptrs.push(i) {
                            g.ob_free_unused(i);
                        }
                    }
                    g.wps[wpi].ptrs = ptrs;
                    g.wps[wpi].sectors_free = 0;
                    if e.is_freelist_empty() && g.try_decrease_writepoints(old_nr) {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// One allocation of at most `sectors` (start, append, done): the
    /// pointers, the sectors taken (`1..=sectors`, less when the write
    /// point's bucket has less left) and a reference on each bucket to put
    /// after the key is committed.
    ///
    /// Errors: as [`alloc_sectors_start`](Self::alloc_sectors_start);
    /// `EINVAL` for 0 sectors.
    pub fn alloc_sectors(&self, src: &dyn FreespaceSource, spec: WritePointSpec, sectors: u32, watermark: Watermark) -> Result<(AllocPtrs, u32, OpenBuckets), BucketAllocError> {
        if sectors == 0 {
            return Err(BucketAllocError::Errno(Errno::EINVAL));
        }
        let mut g = self.alloc_sectors_start(src, spec, 1, watermark)?;
        let n = sectors.min(g.sectors_free());
        let obs = g.open_bucket_get();
        let p = g.append_ptrs(n)?;
        g.done();
        Ok((p, n, obs))
    }

    /// Space for one btree node of `sectors` from the btree write point
    /// (`__bch2_btree_node_alloc()`): a bucket whose rest is smaller than a
    /// node is closed and a new one taken.
    ///
    /// Errors: as [`alloc_sectors_start`](Self::alloc_sectors_start);
    /// `EINVAL` for a node larger than a bucket.
    pub fn alloc_btree_node(&self, src: &dyn FreespaceSource, sectors: u32, watermark: Watermark) -> Result<(AllocPtr, OpenBuckets), BucketAllocError> {
        if sectors == 0 {
            return Err(BucketAllocError::Errno(Errno::EINVAL));
        }
        for _ in 0..2 {
            let mut g = self.alloc_sectors_start(src, WritePointSpec::Btree, 1, watermark)?;
            if g.sectors_free() < sectors {
                let ptrs = g.write_point().ptrs;
                for &i in ptrs.as_slice() {
                    if let Some(o) = g.inner.ob_mut(i) {
                        if o.sectors_free < sectors {
                            o.sectors_free = 0;
                        }
                    }
                }
                g.done();
                continue;
            }
            let obs = g.open_bucket_get();
            let p = g.append_ptrs(sectors)?;
            g.done();
            return p.get(0).copied().map(|p| (p, obs)).ok_or(BucketAllocError::Errno(Errno::ENOSPC));
        }
        Err(BucketAllocError::Errno(Errno::EINVAL))
    }

    /// Sectors the write point of `spec` can hand out without a new
    /// bucket (`wp->sectors_free`), 0 when it has none.
    pub fn write_point_sectors_free(&self, spec: WritePointSpec) -> u32 {
        let g = self.inner.lock();
        let i = match spec {
            WritePointSpec::Copygc => Some(WP_COPYGC),
            WritePointSpec::Rebalance => Some(WP_REBALANCE),
            WritePointSpec::Btree => Some(WP_BTREE),
            WritePointSpec::Hashed(v) => g.wps[..g.write_points_nr].iter().position(|w| w.write_point == v | 1),
        };
        i.map_or(0, |i| {
            let w = &g.wps[i];
            w.ptrs.as_slice().iter().map(|&o| g.ob(o).sectors_free).min().unwrap_or(0)
        })
    }

    /// `bch2_open_buckets_put()`: drops the references in `obs` (emptied);
    /// a bucket whose last reference goes is closed.
    pub fn open_buckets_put(&self, obs: &mut OpenBuckets) {
        let mut g = self.inner.lock();
        for &i in obs.as_slice() {
            g.ob_put(i);
        }
        *obs = OpenBuckets::new();
    }

    /// `bch2_open_buckets_stop()`: closes the write points' and the partial
    /// list's buckets on `dev` (all devices for `None`), e.g. before a
    /// device goes read-only or at unmount.  References callers hold stay.
    pub fn open_buckets_stop(&self, dev: Option<u8>) {
        let mut g = self.inner.lock();
        let drop = |ob: &OpenBucket| dev.map_or(true, |d| ob.dev == d);
        for w in 0..g.wps.len() {
            let ptrs = g.wps[w].ptrs;
            let mut keep = OpenBuckets::new();
            for &i in ptrs.as_slice() {
                if drop(g.ob(i)) {
                    g.ob_put(i);
                } else {
                    keep.push(i);
                }
            }
            g.wps[w].ptrs = keep;
            g.wps[w].sectors_free = 0;
        }
        let mut j = 0;
        while j < g.partial.len() {
            let i = g.partial[j];
            if drop(g.ob(i)) {
                let last = g.partial.len() - 1;
                g.partial.swap(j, last);
                g.partial.pop();
                let d = g.ob(i).dev;
                if let Some(o) = g.ob_mut(i) {
                    o.on_partial_list = false;
                }
                if let Ok(d) = g.dev_mut(d) {
                    d.nr_partial_buckets = d.nr_partial_buckets.saturating_sub(1);
                }
                g.ob_put(i);
            } else {
                j += 1;
            }
        }
    }

    /// The atomic part of the alloc trigger for the allocator: the alloc
    /// key of `dev:bucket` became `new` (was `old`, `None` for no key) in
    /// the commit of journal sequence number `journal_seq`.  Updates the
    /// bucket's state and the usage counts; a bucket emptied waits for
    /// `journal_seq` to be flushed before it is handed out again
    /// (`bch2_bucket_needs_journal_commit()`).
    ///
    /// Errors: `EINVAL` for no such device or bucket, `ENOMEM`.
    pub fn bucket_updated(&self, dev: u8, bucket: u64, new: &AllocV4, journal_seq: u64) -> Result<(), Errno> {
        let mut g = self.inner.lock();
        let flushed = g.flushed_seq;
        let d = g.dev_mut(dev).map_err(BucketAllocError::errno)?;
        let i = usize::try_from(bucket).ok().filter(|&i| i < d.buckets.len()).ok_or(Errno::EINVAL)?;
        let old = d.buckets[i].data_type;
        let in_range = bucket >= d.first_bucket;
        if new.data_type >= data_type::NR {
            return Err(Errno::EINVAL);
        }
        if old != new.data_type {
            if old != data_type::FREE || in_range {
                d.usage[usize::from(old)] = d.usage[usize::from(old)].saturating_sub(1);
            }
            if new.data_type != data_type::FREE || in_range {
                d.usage[usize::from(new.data_type)] += 1;
            }
        }
        if !data_type_is_empty(old) && data_type_is_empty(new.data_type) && journal_seq > flushed {
            // Drop the buckets whose journal seq is flushed.
            d.waiting_for_journal.retain(|&(_, seq)| seq > flushed);
            d.waiting_for_journal.push((bucket, journal_seq))?;
        }
        d.buckets[i] = BucketMem { gen: new.gen, oldest_gen: new.oldest_gen, data_type: new.data_type, flags: BUCKET_UPDATED };
        Ok(())
    }

    /// The journal is on disk up to `seq` (`journal.flushed_seq_ondisk`):
    /// buckets waiting for it may be allocated.
    pub fn journal_flushed(&self, seq: u64) {
        // Only an advance changes anything: a bucket waits while its
        // sequence number is above the flushed one.
        if self.flushed_seen.fetch_max(seq, core::sync::atomic::Ordering::AcqRel) >= seq {
            return;
        }
        let mut g = self.inner.lock();
        g.flushed_seq = g.flushed_seq.max(seq);
        for d in g.devs.iter_mut().flatten() {
            d.waiting_for_journal.retain(|&(_, s)| s > seq);
        }
    }

    /// `bch2_do_discards_work()` for `dev`: every bucket in need_discard
    /// that is not open and not waiting for a journal flush is discarded
    /// through `hook` when the device has the discard option, and its new
    /// alloc key (`need_discard` cleared, data type free; or, for an empty
    /// bucket waiting for a gen bump, the gen incremented) is returned for
    /// the caller to commit at [`Watermark::Btree`] (then call
    /// [`bucket_updated`](Self::bucket_updated)).
    ///
    /// Errors: `EIO` for a bucket in need_discard that still has data or
    /// another data type (logged); `src`'s errors, the hook's, `ENOMEM`.
    pub fn do_discards(&self, src: &dyn FreespaceSource, dev: u8, hook: &dyn DiscardDev) -> Result<Vec<(u64, AllocV4)>, Errno> {
        let (bs, discard, flushed) = {
            let g = self.inner.lock();
            let d = g.dev(dev).map_err(BucketAllocError::errno)?;
            (d.bucket_size, d.discard, g.flushed_seq)
        };
        let mut out = Vec::new();
        let mut from = 0u64;
        while let Some(b) = src.next_need_discard(dev, from)? {
            from = b.saturating_add(1);
            let skip = {
                let g = self.inner.lock();
                let d = g.dev(dev).map_err(BucketAllocError::errno)?;
                g.bucket_is_open(dev, b) || d.needs_journal_commit(b, flushed)
            };
            if skip {
                if b == u64::MAX {
                    break;
                }
                continue;
            }
            let mut a = src.alloc_key(dev, b)?.unwrap_or_default();
            if super::background::bucket_sectors_total(&a) != 0 {
                log::err!("alloc: attempting to discard bucket {dev}:{b} with dirty data; run fsck");
                return Err(Errno::EIO);
            }
            if a.data_type != data_type::NEED_DISCARD {
                if data_type_is_empty(a.data_type) && a.flags & 2 != 0 {
                    a.gen = a.gen.wrapping_add(1);
                    super::background::set_need_inc_gen(&mut a, false);
                } else {
                    log::err!("alloc: bucket {dev}:{b} incorrectly set in need_discard btree; run fsck");
                    return Err(Errno::EIO);
                }
            } else {
                if a.journal_seq > flushed {
                    log::err!("alloc: clearing need_discard of {dev}:{b} but journal_seq {} > flushed {flushed}", a.journal_seq);
                    return Err(Errno::EIO);
                }
                if discard {
                    hook.discard(dev, b.saturating_mul(u64::from(bs)), u64::from(bs))?;
                }
                super::background::set_need_discard(&mut a, false);
            }
            let t = a.data_type;
            super::background::alloc_data_type_set(&mut a, t);
            out.push((b, a))?;
            if let Ok(d) = self.inner.lock().dev_mut(dev) {
                d.nr_discarded += 1;
            }
            if b == u64::MAX {
                break;
            }
        }
        Ok(out)
    }

    /// `bch2_open_buckets_to_text()`: every open bucket (of `dev` only,
    /// when given), one per line: `idx ref N type dev:bucket gen G
    /// allocated used/size [partial]`.
    pub fn open_buckets_to_text(&self, f: &mut dyn fmt::Write, dev: Option<u8>) -> fmt::Result {
        let g = self.inner.lock();
        for (i, ob) in g.obs.iter().enumerate() {
            if ob.valid && dev.map_or(true, |d| d == ob.dev) {
                ob_to_text(f, &g, i as u16, "")?;
            }
        }
        Ok(())
    }

    /// `bch2_open_buckets_partial_to_text()`: the partial list, one open
    /// bucket per line as [`open_buckets_to_text`](Self::open_buckets_to_text).
    pub fn open_buckets_partial_to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        let g = self.inner.lock();
        for &i in g.partial.iter() {
            ob_to_text(f, &g, i, "")?;
        }
        Ok(())
    }

    /// `bch2_write_points_to_text()`: the hashed write points, then
    /// copygc, rebalance and btree, each with its open buckets indented.
    pub fn write_points_to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        let g = self.inner.lock();
        writeln!(f, "Foreground write points")?;
        for i in 0..g.wps.len() {
            match i {
                WP_COPYGC => writeln!(f, "Copygc write point")?,
                WP_REBALANCE => writeln!(f, "Rebalance write point")?,
                WP_BTREE => writeln!(f, "Btree write point")?,
                _ => {}
            }
            let w = &g.wps[i];
            write!(f, "{}: ", w.write_point)?;
            write!(f, "{}", crate::opts::HumanReadable(w.sectors_allocated << 9))?;
            writeln!(f, " last used {}{}", w.last_used, if i < WRITE_POINT_MAX && i >= g.write_points_nr { " (unused)" } else { "" })?;
            for &o in w.ptrs.as_slice() {
                ob_to_text(f, &g, o, "  ")?;
            }
        }
        Ok(())
    }

    /// `bch2_fs_alloc_debug_to_text()`: the open bucket table.
    pub fn fs_alloc_debug_to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        let g = self.inner.lock();
        let mut nr = [0u32; NR_DATA_TYPES];
        for ob in g.obs.iter().filter(|o| o.valid) {
            if let Some(n) = nr.get_mut(usize::from(ob.data_type)) {
                *n += 1;
            }
        }
        // C prints OPEN_BUCKETS_COUNT - nr_free, counting the unused entry 0.
        writeln!(f, "open buckets allocated  {}", OPEN_BUCKETS_COUNT - 1 - g.nr_free)?;
        writeln!(f, "open buckets total      {OPEN_BUCKETS_COUNT}")?;
        writeln!(f, "open_buckets_partial    {}", g.partial.len())?;
        writeln!(f, "open_buckets_btree      {}", nr[data_type::BTREE as usize])?;
        writeln!(f, "open_buckets_user       {}", nr[data_type::USER as usize])?;
        writeln!(f, "write points            {}", g.write_points_nr)?;
        writeln!(f, "journal flushed seq     {}", g.flushed_seq)
    }

    /// `bch2_dev_alloc_debug_to_text()`: the device's buckets per data
    /// type, the reserve of each watermark and what is free above it,
    /// open and partial buckets, and the last search's counters.
    ///
    /// Errors: `fmt::Error`; a missing device prints as such.
    pub fn dev_alloc_debug_to_text(&self, f: &mut dyn fmt::Write, dev: u8) -> fmt::Result {
        let g = self.inner.lock();
        let Ok(d) = g.dev(dev) else { return writeln!(f, "no device {dev}") };
        writeln!(f, "dev {dev}: {} buckets of {} sectors, first {}", d.nbuckets, d.bucket_size, d.first_bucket)?;
        writeln!(f, "{:<24}buckets", "")?;
        for (t, n) in d.usage.iter().enumerate() {
            writeln!(f, "{:<24}{n}", DataTypeName(t as u8))?;
        }
        writeln!(f)?;
        writeln!(f, "reserves:               reserved  free")?;
        for w in Watermark::ALL {
            writeln!(f, "{:<24}{:<10}{}", w.name(), dev_buckets_reserved(d.nbuckets, d.nr_btree_reserve, w), d.buckets_free(w))?;
        }
        writeln!(f)?;
        writeln!(f, "open buckets            {}", d.nr_open_buckets)?;
        writeln!(f, "partial buckets         {}", d.nr_partial_buckets)?;
        writeln!(f, "freespace initialized   {}", u8::from(d.freespace_initialized))?;
        writeln!(f, "discard                 {}", u8::from(d.discard))?;
        writeln!(f, "alloc cursor            {}", d.alloc_cursor)?;
        writeln!(f, "buckets allocated       {}", d.nr_allocated)?;
        writeln!(f, "buckets discarded       {}", d.nr_discarded)?;
        writeln!(f, "waiting for journal     {}", d.waiting_for_journal.len())?;
        let s = &d.last_search;
        writeln!(
            f,
            "last search: seen {} open {} need journal commit {} nouse {} stale {}",
            s.buckets_seen, s.skipped_open, s.skipped_need_journal_commit, s.skipped_nouse, s.skipped_stale
        )
    }
}

/// A data type's name, padded as a `{:<n}` asks.
struct DataTypeName(u8);

impl fmt::Display for DataTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = crate::platform::Vec::<u8>::new();
        let mut w = ByteWriter(&mut s);
        fmt_data_type(&mut w, self.0)?;
        f.pad(core::str::from_utf8(&s).unwrap_or("?"))
    }
}

/// `fmt::Write` into a byte vector.
struct ByteWriter<'a>(&'a mut crate::platform::Vec<u8>);

impl fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// `bch2_open_bucket_to_text()`.
fn ob_to_text(f: &mut dyn fmt::Write, g: &Inner, i: u16, indent: &str) -> fmt::Result {
    let ob = g.ob(i);
    let bs = g.dev(ob.dev).map_or(0, |d| d.bucket_size);
    write!(f, "{indent}{i} ref {} ", ob.pin)?;
    fmt_data_type(f, ob.data_type)?;
    write!(f, " {}:{} gen {} allocated {}/{}", ob.dev, ob.bucket, ob.gen, bs.saturating_sub(ob.sectors_free), bs)?;
    if ob.on_partial_list {
        f.write_str(" partial")?;
    }
    writeln!(f)
}

/// `Allocator` is shared by every writer: `Send + Sync`.
#[allow(dead_code)]
fn allocator_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Allocator>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_as_c_computes_them() {
        // 256 buckets of 512 sectors, 256 KiB nodes: one node per bucket.
        let r = nr_btree_reserve(512, 512);
        assert_eq!(r, 28);
        let got: std::vec::Vec<u64> = Watermark::ALL.iter().map(|&w| dev_buckets_reserved(256, r, w)).collect();
        assert_eq!(got, [64, 60, 56, 28, 0, 0, 0]);
        // 64 KiB nodes in 256 KiB buckets: 7 buckets.
        assert_eq!(nr_btree_reserve(512, 128), 7);
        assert_eq!(nr_btree_reserve(512, 1024), 28, "a node larger than a bucket counts as one per bucket");
        let names: std::vec::Vec<&str> = Watermark::ALL.iter().map(|w| w.name()).collect();
        assert_eq!(names, ["stripe", "normal", "copygc", "btree", "btree_copygc", "reclaim", "interior_updates"]);
        assert_eq!(
            Watermark::ALL.map(open_buckets_reserved),
            [512, 512, 341, 256, 256, 170, 0]
        );
        assert_eq!(journal_buckets_default(256, 512), 8);
        assert_eq!(journal_buckets_default(1 << 20, 512), 8192);
        assert_eq!(journal_buckets_default(1 << 20, 4096), 4096, "at most 8 GiB");
        assert_eq!(BucketAllocError::NoBucketsFound.errno(), Errno::ENOSPC);
    }

    #[test]
    fn open_bucket_hash_chains() {
        // Many buckets in one table: open, check, close in another order.
        let mut g = Inner {
            devs: Vec::new(),
            obs: Vec::new(),
            ob_hash: Vec::new(),
            freelist: 0,
            nr_free: 0,
            partial: Vec::new(),
            wps: Vec::new(),
            write_points_nr: 0,
            clock: 0,
            flushed_seq: 0,
        };
        g.obs.resize(OPEN_BUCKETS_COUNT, OpenBucket::default()).unwrap();
        g.ob_hash.resize(OPEN_BUCKETS_COUNT, 0).unwrap();
        for i in 1..OPEN_BUCKETS_COUNT {
            let b = (i as u64) * 1_000_003 % 65_536;
            g.obs[i] = OpenBucket { valid: true, pin: 1, dev: (i % 3) as u8, bucket: b, ..OpenBucket::default() };
            g.hash_add(i as u16);
        }
        for i in 1..OPEN_BUCKETS_COUNT {
            assert!(g.bucket_is_open((i % 3) as u8, (i as u64) * 1_000_003 % 65_536));
        }
        for i in (1..OPEN_BUCKETS_COUNT).step_by(2) {
            g.hash_remove(i as u16);
        }
        for i in 1..OPEN_BUCKETS_COUNT {
            assert_eq!(g.bucket_is_open((i % 3) as u8, (i as u64) * 1_000_003 % 65_536), i % 2 == 0, "{i}");
        }
    }
}
