// SPDX-License-Identifier: GPL-2.0
//! A read-write filesystem on one device: the superblock, the journal's
//! write side, the btree write side with the commit's triggers, the
//! foreground allocator, clean shutdown, and the `fs_common` operations
//! over real transactions.
//!
//! Matches, in `fs/bcachefs`: `super.c` (`bch2_fs_open()`,
//! `bch2_fs_read_write()`, `bch2_fs_read_only()`/`__bch2_fs_stop()`),
//! `sb-clean.c` (`bch2_fs_mark_clean()`), `recovery.c` (the journal start
//! of `bch2_fs_recovery()`), `journal.c` (`bch2_dev_journal_alloc()` for
//! a new volume), `alloc_background.c` (`bch2_do_discards()`).
//!
//! # Shape
//!
//! [`BchFsOpen::open`] reads what lives as long as the mount (device,
//! superblock, journal, node cache, the foreground allocator
//! [`Allocator`]) into an `Arc`; [`BchFs::start`] goes read-write on it and
//! returns the [`BchFs`], which owns its layers (triggers, the journal
//! tap, the node allocator [`BtreeNodeReserve`], the btree write side
//! [`BtreeFs`]) as `Shared::Owned` parts, so that a mount keeps it for as
//! long as it lives (`sb->s_fs_info`).  [`BchFsOpen::mount`] runs a closure
//! on one, for the tool and the tests.  Reclaim is still driven from here
//! ([`BchFs::maybe_reclaim`] after each commit, [`BchFs::flush`]), not by
//! a journal-owned flusher.
//!
//! The btree write buffer ([`BtreeWriteBuffer`], owned here as an `Arc`
//! since it is the journal's entry hook) takes the backpointer and lru
//! updates of the triggers; [`BchFs::flush`] (so [`BchFs::shutdown`]) and
//! [`BchFs::maybe_reclaim`] flush it, [`BchFs::write_buffer_flush`] on
//! demand.
//!
//! # Space
//!
//! Every bucket comes from the [`Allocator`] (`alloc_foreground.c`):
//! btree nodes through the btree write point at [`Watermark::Btree`]
//! ([`NodeReserve`], `__bch2_btree_node_alloc()`), user data through a
//! hashed write point at [`Watermark::Normal`] ([`FsDataAlloc`],
//! `bch2_alloc_sectors_start_trans()`), so data and nodes never share a
//! bucket; the journal's buckets are marked and never free.  The
//! allocator reads the freespace btree through [`BtreeFs`] (before
//! `freespace_initialized`, its own bucket table, as
//! `bch2_bucket_alloc_early()`), and learns every alloc key a commit
//! writes from the atomic trigger ([`FsTriggers`]).  A bucket emptied by a
//! commit becomes `need_discard`; it is allocatable again only after the
//! journal entry of that commit is flushed and [`BchFs::do_discards`]
//! (`bch2_do_discards()`: the device's discard when the member's `discard`
//! option is set) has moved it back to the freespace btree.  When a data
//! allocation finds nothing above its watermark, the journal is flushed
//! and discards run once before `ENOSPC` is returned (C waits on
//! `c->freelist_wait` for the same two).
//!
//! After an unclean shutdown the journal's leaf keys are replayed
//! ([`journal_replay`]) before the triggers are enabled; the allocator
//! starts from the alloc btree with the journal's alloc keys laid over it
//! (`bch2_alloc_read()` reads through the journal keys).  Not done yet:
//! several devices.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::alloc::adapters::BtreeNodeReserve;
use crate::alloc::foreground::{Allocator, DiscardDev, OpenBuckets as ObRefs, Watermark, WritePointSpec};
use crate::btree::write_buffer::BtreeWriteBuffer;
use crate::btree::trans::is_extents;
use crate::btree::{commit_do, write_dirty_nodes, BtreeCache, BtreeFs, BtreeGeometry, BtreeTrans, CommitFlags};
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{BkeyI, BtreeId, NodeType, BKEY_U64S};
use crate::format::bpos::Bpos;
use crate::format::list::{FsInfo, Root};
use crate::format::sb::{read_super, Sb};
use crate::format::sb_opts::{sb_opt, SbFlag};
use crate::format::sb_write::SbBuf;
use crate::format::val::alloc::AllocV4;
use crate::fs_common::trans::{BtreeTransOps, WriteOpts};
use crate::fs_common::FsFacts;
use crate::journal::seq_blacklist::{blacklist_add, mark_clean, mark_dirty};
use crate::recovery::JournalKeys;
use crate::journal::res::JournalSink;
use crate::journal::types::{JournalGeometry, JournalOpts, JournalStart};
use crate::journal::write::{start_after_read, Journal};
use crate::platform::{arc_new, Arc, BlockDev, Mutex, Vec, WriteFlags};
use crate::util::time_stats::{TimeStatId, TimeStats};
use crate::util::Shared;
use crate::triggers::{FsTriggers, NodePtrTap};

/// What an I/O error was (`enum bch_member_error_type`): the index into
/// the member's `errors` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoErrorKind {
    /// A read the device failed (`BCH_MEMBER_ERROR_read`).
    Read = 0,
    /// A write the device failed (`BCH_MEMBER_ERROR_write`).
    Write = 1,
    /// Data that read back with the wrong checksum
    /// (`BCH_MEMBER_ERROR_checksum`).
    Checksum = 2,
}

/// `bch2_member_error_strs[]`.
pub const IO_ERROR_NAMES: [&str; 3] = ["read", "write", "checksum"];

/// `bch2_dev_io_errors_to_text()`'s text for the counts `n` (read, write,
/// checksum) of member `m` (its `errors_at_reset` and
/// `errors_reset_time`), `now_secs` the wall clock in seconds.
pub fn io_errors_text(out: &mut dyn fmt::Write, n: &[u64; 3], m: &crate::format::sb_members::Member, now_secs: u64) -> fmt::Result {
    // C's layout: two-space indent, the count at a tab stop at 12.
    let line = |out: &mut dyn fmt::Write, name: &str, v: u64| writeln!(out, "  {name}:{:w$}{v}", "", w = 12usize.saturating_sub(3 + name.len()).max(1));
    writeln!(out, "IO errors since filesystem creation")?;
    for (i, name) in IO_ERROR_NAMES.iter().enumerate() {
        line(out, name, n[i])?;
    }
    let ago = now_secs.saturating_sub(m.errors_reset_time);
    writeln!(out, "IO errors since {} ago", crate::util::time_stats::PrTimeUnits(ago.saturating_mul(1_000_000_000)))?;
    for (i, name) in IO_ERROR_NAMES.iter().enumerate() {
        line(out, name, n[i].saturating_sub(m.errors_at_reset[i]))?;
    }
    Ok(())
}

/// A device shared by the journal (which owns its device) and the btree.
pub struct SharedDev<D>(pub Arc<D>);

impl<D: BlockDev> BlockDev for SharedDev<D> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn nr_sectors(&self) -> u64 {
        self.0.nr_sectors()
    }
    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.0.read_sectors(sector, buf)
    }
    fn read_sectors_many(&self, reads: &mut [crate::platform::DevRead<'_>]) {
        self.0.read_sectors_many(reads)
    }
    fn logical_block_size(&self) -> u32 {
        self.0.logical_block_size()
    }
    fn write_sectors(&self, sector: u64, buf: &[u8], flags: WriteFlags) -> Result<(), Errno> {
        self.0.write_sectors(sector, buf, flags)
    }
    fn write_sectors_many(&self, writes: &mut [crate::platform::DevWrite<'_>]) {
        self.0.write_sectors_many(writes)
    }
    fn flush(&self) -> Result<(), Errno> {
        self.0.flush()
    }
    fn discard(&self, sector: u64, nr_sectors: u64) -> Result<(), Errno> {
        self.0.discard(sector, nr_sectors)
    }
}

/// The write options of a superblock (`c->opts` from the superblock's
/// options, `bch2_opts_from_sb()`): string hash, data checksum,
/// compression, inline data, `encoded_extent_max`, inode number options.
pub fn write_opts_from_sb(sb: &Sb<'_>) -> WriteOpts {
    let d = WriteOpts::default();
    let get = |name: &str, dflt: u64| sb_opt(name).map_or(dflt, |o| sb.opt(o));
    // bch2_str_hash_opt_to_type(): siphash is the "new" siphash type 3.
    let str_hash = match get("str_hash", 2) {
        0 => 0,
        1 => 1,
        _ => 3,
    };
    WriteOpts {
        str_hash,
        data_checksum: u8::try_from(get("data_checksum", u64::from(d.data_checksum))).unwrap_or(d.data_checksum),
        compression: u8::try_from(get("compression", 0)).unwrap_or(0),
        background_compression: u8::try_from(get("background_compression", 0)).unwrap_or(0),
        background_target: u16::try_from(get("background_target", 0)).unwrap_or(0),
        inline_data: get("inline_data", 1) != 0,
        encoded_extent_max_sectors: u32::try_from(get("encoded_extent_max", 64 << 10) >> 9)
            .unwrap_or(d.encoded_extent_max_sectors)
            .max(1),
        inodes_32bit: get("inodes_32bit", 0) != 0,
        shard_inode_numbers: get("shard_inode_numbers", 1) != 0,
        inode_shard_bits: 0,
    }
}

/// `BCH_COMPAT_alloc_info`.
const COMPAT_ALLOC_INFO: u64 = 1 << 0;
/// `BCH_COMPAT_alloc_metadata`.
const COMPAT_ALLOC_METADATA: u64 = 1 << 1;

/// `bch2_dev_journal_alloc(ca, true)` for a new volume: the journal
/// buckets [`Allocator::dev_journal_alloc_new_fs`] chooses (1/128th of the
/// buckets, at least 8 and at most 8192 or 8 GiB, from `first_bucket`
/// upwards skipping the superblock buckets: `bch2_bucket_alloc_new_fs()`,
/// which also moves the allocator's `new_fs_bucket_idx` past them),
/// recorded in `sbuf` as a `journal_v2` field of ranges
/// (`bch2_journal_buckets_to_sb()`).  `alloc` must be the allocator of
/// the volume `sbuf` describes, before anything was allocated.
///
/// Errors: `EINVAL` (superblock unusable), `ENOSPC` (too few buckets),
/// `ENOMEM`.
pub fn dev_journal_alloc(sbuf: &mut SbBuf, alloc: &Allocator) -> Result<(), Errno> {
    let dev = sbuf.sb().map_err(|_| Errno::EINVAL)?.dev_idx();
    let buckets = alloc.dev_journal_alloc_new_fs(dev)?;
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &b in buckets.iter() {
        match ranges.last_mut() {
            Some(r) if r.0 + r.1 == b => r.1 += 1,
            _ => ranges.push((b, 1))?,
        }
    }
    let mut body: Vec<u8> = Vec::new();
    for &(start, n) in ranges.iter() {
        body.extend_from_slice(&start.to_le_bytes())?;
        body.extend_from_slice(&n.to_le_bytes())?;
    }
    sbuf.set_field(crate::format::sb::FieldType::JournalV2, &body)?;
    Ok(())
}

/// The time stats a read-write mount records ([`BchFs::time_stats`]), in
/// C's order (`BCH_TIME_STATS()`): the files of its `time_stats/`
/// directory.  C's others (`btree_node_mem_alloc`, `btree_node_sort`,
/// `btree_interior_update_total`, `btree_gc`, `data_promote`,
/// `blocked_journal_max_in_flight`, `blocked_key_cache_flush`,
/// `blocked_allocate*`, `blocked_write_buffer_full`,
/// `nocow_lock_contended`) time operations or waits we do not have in
/// that form.
pub const RECORDED_TIME_STATS: [TimeStatId; 13] = [
    TimeStatId::btree_node_split,
    TimeStatId::btree_node_compact,
    TimeStatId::btree_node_merge,
    TimeStatId::btree_node_read,
    TimeStatId::btree_node_read_done,
    TimeStatId::btree_interior_update_foreground,
    TimeStatId::data_write,
    TimeStatId::data_read,
    TimeStatId::journal_flush_write,
    TimeStatId::journal_noflush_write,
    TimeStatId::journal_flush_seq,
    TimeStatId::blocked_journal_low_on_space,
    TimeStatId::blocked_journal_low_on_pin,
];

/// What a mount owns (the long-lived part of `struct bch_fs`).
pub struct BchFsOpen<D: BlockDev + Send + Sync> {
    /// The device.
    pub dev: Arc<D>,
    /// The superblock as it will be written back.
    pub sb: Mutex<SbBuf>,
    /// Superblock facts for the btree and journal.
    pub info: Arc<FsInfo>,
    /// Filesystem facts for the operations.
    pub facts: FsFacts,
    /// Write options.
    pub opts: WriteOpts,
    /// The journal.
    pub journal: Arc<Journal<SharedDev<D>>>,
    /// The btree node cache.
    pub cache: Arc<BtreeCache>,
    /// The foreground allocator (`alloc_foreground.c`): every bucket of
    /// the mount comes from it.
    pub alloc: Arc<Allocator>,
    /// The btree write buffer (`c->btree_write_buffer`): the journal's
    /// entry hook, so shared with it.
    pub write_buffer: Arc<BtreeWriteBuffer>,
    roots: Vec<Option<Root>>,
    geo: BtreeGeometry,
    acct_version: u64,
    /// The volume has never been initialized (`bch2_fs_initialize()` must
    /// run).
    pub fresh: bool,
    /// The journal keys to replay (unclean shutdown).
    replay: Option<JournalKeys>,
    /// Journal sequence numbers to blacklist before writing, `[start, end)`.
    blacklist: Option<(u64, u64)>,
}

impl<D: BlockDev + Send + Sync> BchFsOpen<D> {
    /// This device's member entry as the superblock holds it now.
    ///
    /// Errors: `EINVAL` (the superblock does not parse or lacks it).
    pub fn member(&self) -> Result<crate::format::sb_members::Member, Errno> {
        let sb = self.sb.lock();
        let s = sb.sb().map_err(|_| Errno::EINVAL)?;
        s.member(self.info.dev_idx).ok_or(Errno::EINVAL)
    }
}

/// Node cache size of a read-write mount, bytes.
const CACHE_BYTES: usize = 64 << 20;

impl<D: BlockDev + Send + Sync + 'static> BchFsOpen<D> {
    /// Opens `dev` for writing (`bch2_fs_open()` up to going read-write):
    /// reads the superblock, the journal (unless the volume was never
    /// initialized) and the roots, and starts the journal after the newest
    /// entry (a fresh journal at sequence number 1 for a new volume).
    ///
    /// Errors: `EINVAL` (superblock unusable), `EOPNOTSUPP` (several
    /// devices, encryption), `EIO`, `ENOMEM`.
    pub fn open(dev: D) -> Result<Arc<Self>, Errno> {
        let dev = crate::platform::arc_new(dev)?;
        let sbr = read_super(&*dev).map_err(|_| Errno::EINVAL)?;
        let sb = sbr.sb();
        if sb.nr_devices() > 1 {
            return Err(Errno::EOPNOTSUPP);
        }
        let fresh = sb.flag(SbFlag::Initialized) == 0;
        let alloc = Allocator::new(&sb)?;
        let mut sbuf = SbBuf::from_sb(&sb)?;
        drop(sbr);
        if fresh {
            dev_journal_alloc(&mut sbuf, &alloc)?;
        }
        let sb = sbuf.sb().map_err(|_| Errno::EINVAL)?;
        let info = FsInfo::from_sb(&sb).map_err(|_| Errno::EINVAL)?;
        let d = info.devs.get(info.dev_idx as usize).copied().flatten().ok_or(Errno::EINVAL)?;
        let jgeo = JournalGeometry::from_sb(&sb)?;
        let (csum, version) = (jgeo.csum_type, jgeo.version);
        let facts = crate::bcachefs::fs_facts(&sb, &info, &d);
        let opts = write_opts_from_sb(&sb);
        let mut replay = None;
        let (roots, start) = if fresh {
            let mut roots = Vec::new();
            for _ in 0..crate::journal::NR_BTREES {
                roots.push(None)?;
            }
            (roots, JournalStart::fresh())
        } else {
            let jr = crate::journal::read(&*dev, &info).map_err(|e| e.errno())?;
            let roots = crate::journal::btree_roots(&info, &jr.journal).map_err(|e| e.errno())?;
            let unclean = sb.flag(SbFlag::Clean) == 0;
            if unclean && !jr.journal.jsets.is_empty() {
                replay = Some(JournalKeys::build(&info, &jr.journal).map_err(|e| e.errno())?);
            }
            (roots, start_after_read(&*dev, &jgeo, &jr, unclean)?)
        };
        let acct_version = start.cur_seq << 32;
        let blacklist = start.blacklist;
        let journal = arc_new(Journal::new(SharedDev(dev.clone()), jgeo, JournalOpts::default(), start)?)?;
        for r in roots.iter().flatten() {
            let vlen = r.key.val_bytes().min(r.val.len());
            journal.set_btree_root_key(r.btree_id as u8, r.level, &r.key, &r.val[..vlen])?;
        }
        if replay.is_none() {
            journal.replay_done();
        }
        let geo = BtreeGeometry::from_info(&info, csum, version);
        let write_buffer = crate::platform::arc_new(BtreeWriteBuffer::new()?)?;
        journal.set_entry_hook(write_buffer.clone());
        Ok(arc_new(BchFsOpen {
            dev,
            sb: Mutex::new(sbuf)?,
            info: arc_new(info)?,
            facts,
            opts,
            journal,
            cache: arc_new(BtreeCache::new(CACHE_BYTES)?)?,
            alloc: arc_new(alloc)?,
            write_buffer,
            roots,
            geo,
            acct_version,
            fresh,
            replay,
            blacklist,
        })?)
    }

    /// Goes read-write ([`BchFs::start`]) and runs `f` on the filesystem.
    /// Nothing is shut down afterwards: call [`BchFs::shutdown`] in `f` for
    /// a clean unmount.  The tool's and the host tests' way in; a mount
    /// keeps the [`BchFs`] instead.
    ///
    /// Errors: those of [`BchFs::start`] and of `f`.
    pub fn mount<R>(self: &Arc<Self>, now_ns: i64, seed: u64, f: impl FnOnce(&BchFs<D>) -> Result<R, Errno>) -> Result<R, Errno> {
        let fs = BchFs::start(self.clone(), now_ns, seed)?;
        f(&fs)
    }
}

/// The device's discard for [`Allocator::do_discards`].
struct DevDiscard<'a>(&'a dyn BlockDev);

impl DiscardDev for DevDiscard<'_> {
    fn discard(&self, _dev: u8, sector: u64, nr_sectors: u64) -> Result<(), Errno> {
        self.0.discard(sector, nr_sectors)
    }
}

/// `bch2_accounting_read()`: the in-memory accounting counters start from
/// what the accounting btree holds (after replay).
///
/// Errors: those of the reads, `ENOMEM`.
pub fn accounting_read(btree: &BtreeFs<'_>, trig: &FsTriggers<'_>) -> Result<(), Errno> {
    let mut keys: Vec<(Bpos, [i64; crate::accounting::ACCOUNTING_MAX_COUNTERS], u8)> = Vec::new();
    crate::btree::lockrestart_do(btree, |t| {
        keys.clear();
        let it = t.iter(BtreeId::Accounting, crate::format::bpos::POS_MIN, false)?;
        while let Some(k) = t.iter_next(it)? {
            if k.k.key_type != crate::format::bkey::KeyType::Accounting as u8 {
                continue;
            }
            let (d, n) = crate::accounting::accounting_val_decode(&k.v);
            keys.push((k.k.p, d, u8::try_from(n).unwrap_or(0)))?;
        }
        Ok(())
    })?;
    for &(p, d, n) in keys.iter() {
        trig.accounting_mem_add(p, d, n)?;
    }
    Ok(())
}

/// The interior part of `bch2_journal_replay()`: the journal's interior
/// keys (level > 0: node pointers changed by splits, rewrites, merges and
/// `sectors_written` updates whose parent was not written before the
/// crash), the newest per slot, put into the nodes of their level, top
/// level first, as the read side overlays them; those nodes become dirty
/// and are written before replay is done.  Without this, the leaf keys
/// (alloc, backpointers...) describe the new nodes while the btree still
/// reaches the old ones.  No triggers (the derived keys are in the
/// journal): `trig` only learns the pointers.  A node without room is
/// split or compacted first (an interior update of its own, triggered
/// later through the tap).
///
/// Errors: `EUCLEAN` (still no room), those of the lookups and interior
/// updates, `ENOMEM`.
pub fn journal_replay_interior(btree: &BtreeFs<'_>, trig: &FsTriggers<'_>, keys: &JournalKeys) -> Result<(), Errno> {
    let mut items: Vec<(u8, u8, BkeyI)> = Vec::new();
    let mut i = 0;
    while i < keys.len() {
        let end = keys.slot_end(i).max(i + 1);
        if let Some(jk) = keys.get(i).filter(|k| k.level > 0) {
            let (b, l) = (jk.btree, jk.level);
            if let Some(k) = keys.resolve(i, end, None).map_err(|e| e.errno())? {
                items.push((b, l, crate::btree::trans::bkey_i(&k.k, &k.v)?))?;
            }
        }
        i = end;
    }
    // Top level first, so that a lower level is reached through the
    // replayed pointers.
    crate::util::sort::sort_by(&mut items, |a, b| (a.0, b.1, a.2.k.p).cmp(&(b.0, a.1, b.2.k.p)));
    let geo = btree.geo;
    let u64s_room = |k: &BkeyI| BKEY_U64S + k.v.len() / 8;
    'keys: for (b, level, k) in items.iter() {
        for _ in 0..8 {
            let mut t = BtreeTrans::new(btree);
            let pi = t.path_new(*b, *level, k.k.p, level + 1).map_err(|e| e.errno())?;
            match t.traverse(pi) {
                Ok(()) => {}
                // The btree is not that deep any more (a newer root).
                Err(BchError::Errno(Errno::EINVAL)) => continue 'keys,
                Err(BchError::Restart(_)) => continue,
                Err(e) => return Err(e.errno()),
            }
            let g = t.paths[pi].l.get_mut(usize::from(*level)).and_then(|l| l.lock.as_mut()).ok_or(Errno::EINVAL)?;
            if !g.node().covers(k.k.p) {
                continue 'keys;
            }
            if g.data().fits(u64s_room(k), geo.block_bytes as usize, geo.node_bytes as usize) {
                let mut w = g.write().ok_or(Errno::EINVAL)?;
                w.insert(&k.k, &k.v)?;
                drop(w);
                g.node().set_flags(crate::btree::node::flags::DIRTY);
                trig.node_ptr_replayed(*b, *level, k)?;
                continue 'keys;
            }
            drop(t);
            let mut t = BtreeTrans::new(btree);
            match t.split_node(*b, *level, k.k.p, u64s_room(k)) {
                Ok(()) | Err(BchError::Restart(_)) => {}
                Err(e) => return Err(e.errno()),
            }
        }
        return Err(Errno::EUCLEAN);
    }
    Ok(())
}

/// Journal keys replayed per transaction.
const REPLAY_BATCH: usize = 64;


/// `bch2_journal_replay()`: the leaf keys of the journal written into the
/// btrees through transactions, accounting keys first
/// (`bch2_journal_replay_accounting_key()`: the btree's counter plus the
/// deltas newer than it, by `bversion`), then the others in key order,
/// each slot's newest key replacing the btree's exactly
/// (`BTREE_ITER_not_extents`).  Interior keys (level > 0) are put into
/// their nodes before, by [`journal_replay_interior`].
///
/// Errors: those of the lookups and commits.
pub fn journal_replay(btree: &BtreeFs<'_>, keys: &JournalKeys) -> Result<(), Errno> {
    let acc = BtreeId::Accounting as u8;
    let mut slots: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < keys.len() {
        let end = keys.slot_end(i).max(i + 1);
        if keys.get(i).is_some_and(|k| k.level == 0) {
            slots.push((i, end))?;
        }
        i = end;
    }
    for pass in 0..2 {
        let mut batch: Vec<(usize, usize)> = Vec::new();
        for &(s, e) in slots.iter() {
            let is_acc = keys.get(s).is_some_and(|k| k.btree == acc);
            if is_acc != (pass == 0) {
                continue;
            }
            batch.push((s, e))?;
            if batch.len() == REPLAY_BATCH {
                replay_batch(btree, keys, &batch)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            replay_batch(btree, keys, &batch)?;
        }
    }
    Ok(())
}

fn replay_batch(btree: &BtreeFs<'_>, keys: &JournalKeys, batch: &[(usize, usize)]) -> Result<(), Errno> {
    let mut tries = 0;
    loop {
        let r = commit_do(btree, CommitFlags { journal_reclaim: true, ..Default::default() }, |t| {
            for &(s, e) in batch.iter() {
                let Some(jk) = keys.get(s) else { continue };
                let (b, pos) = (jk.btree, jk.pos);
                let id = BtreeId::from_u32(u32::from(b)).ok_or(Errno::EINVAL)?;
                let cur = t.get(id, pos)?;
                let resolved = keys
                    .resolve(s, e, cur.as_ref().map(|k| (k.k, &k.v[..])))
                    .map_err(|e| e.errno())?;
                let Some(k) = resolved else { continue };
                let mut k = crate::btree::trans::bkey_i(&k.k, &k.v)?;
                if k.k.is_deleted() {
                    k.k.size = 0;
                    k.v.clear();
                }
                t.push_update(b, 0, k)?;
            }
            Ok(())
        });
        match r {
            Err(Errno::ENOSPC) if tries < 2 => {
                tries += 1;
                write_dirty_nodes(btree)?;
            }
            r => return r,
        }
    }
}

/// A mounted read-write filesystem (the write half of C's `struct
/// bch_fs`; see the module documentation).  Owns its parts, so it lives as
/// long as the mount does (`sb->s_fs_info` in the kernel): `Send + Sync`.
pub struct BchFs<D: BlockDev + Send + Sync + 'static> {
    /// What the mount owns.
    pub open: Arc<BchFsOpen<D>>,
    /// The btree write side.
    pub btree: BtreeFs<'static>,
    /// The triggers.
    pub triggers: Arc<FsTriggers<'static>>,
    /// The btree's node allocator: `__bch2_btree_node_alloc()` through the
    /// btree write point of the [`Allocator`], at [`Watermark::Btree`]
    /// (interior updates may dig into the buckets data may not take, down
    /// to the btree reserve, as C's `bch2_btree_update_start()` raises the
    /// watermark to `btree`).  It reads the freespace btree through the
    /// [`BtreeFs`] the node is for
    /// ([`crate::btree::BtreeNodeAlloc::alloc_for`]), and keeps a reference
    /// on the open bucket of every node it hands out
    /// (`bch2_open_bucket_get()` into the update's reserve) until
    /// [`BtreeNodeReserve::release`], which [`BchFs::after_commit`] calls
    /// once the node pointers' triggers have marked the buckets in the
    /// alloc btree: until then the bucket is open and never handed out
    /// again.  The sectors of a freed node come back through the trigger
    /// of its pointer's deletion (the bucket empties, waits for that
    /// journal seq to be flushed and for its discard).
    pub nodes: Arc<BtreeNodeReserve<'static>>,
    /// Serializes the operations of a mount ([`op_lock`](Self::op_lock)).
    op_lock: Mutex<()>,
    /// [`do_discards`](Self::do_discards) runs (its commit must not start
    /// another from [`maybe_reclaim`](Self::maybe_reclaim)).
    discarding: AtomicBool,
    /// [`emergency_read_only`](Self::emergency_read_only) ran.
    emergency_ro: AtomicBool,
    /// I/O errors of the device this mount saw ([`IoErrorKind`] order:
    /// read, write, checksum), besides the node and journal write errors
    /// the btree and the journal count.
    io_errors: [AtomicU64; 3],
    /// The member's counts when the mount started (`bch_member.errors`).
    io_errors_base: [u64; 3],
    /// Node and journal write errors already handled as fatal by
    /// [`check_fatal_errors`](Self::check_fatal_errors).
    fatal_seen: AtomicU64,
    /// The options writes follow now ([`opt_set`](Self::opt_set)).
    opts: Mutex<WriteOpts>,
    /// `journal_flush_disabled`: fsync does not flush the journal.
    journal_flush_disabled: AtomicBool,
    /// `errors=`: what an inconsistency does
    /// ([`inconsistent_error`](Self::inconsistent_error)), an index of
    /// [`ERROR_ACTIONS`](crate::format::sb_opts::ERROR_ACTIONS).
    errors: AtomicU8,
    /// File data read and written, 512-byte sectors (`io_done`).
    user_sectors: [AtomicU64; 2],
    /// `data_write` time stat: write operations ([`FsDataAlloc`]'s life,
    /// when it wrote), as `bch2_write()` to `bch2_write_done()`.
    data_write_time: TimeStats,
    /// `data_read` time stat: device reads of file data (one per extent
    /// read, as C's per read bio `bch2_rbio_done()`).
    data_read_time: TimeStats,
    /// Sectors promised to writes not yet allocated
    /// ([`disk_reservation_get`](Self::disk_reservation_get)).
    reserved_sectors: AtomicU64,
    /// Sectors `statfs` called available when last read.
    avail_sectors: AtomicU64,
    /// `user_sectors[1]` then.
    avail_written_base: AtomicU64,
    now_ns: AtomicI64,
    rng: AtomicU64,
    hints: Mutex<Vec<u64>>,
}

impl<D: BlockDev + Send + Sync + 'static> Drop for BchFs<D> {
    fn drop(&mut self) {
        self.nodes.release();
    }
}

impl<D: BlockDev + Send + Sync + 'static> BchFs<D> {
    /// Goes read-write (`bch2_fs_read_write()`): the superblock is marked
    /// dirty and written, the allocator loads the bucket states
    /// (`bch2_alloc_read()`, with the journal's alloc keys over the
    /// btree's when there is replay), the triggers learn the btree node
    /// pointers, the journal is replayed after an unclean shutdown, and
    /// the discards waiting from the last mount run (`bch2_do_discards()`).
    /// A volume never initialized is not initialized here: that is
    /// [`crate::fs_initialize::fs_initialize`] on the result (when
    /// `open.fresh`).
    ///
    /// Errors: those of the superblock write, the loads, replay and the
    /// discards; `ENOMEM`.
    pub fn start(open: Arc<BchFsOpen<D>>, now_ns: i64, seed: u64) -> Result<Self, Errno> {
        let fs = Self::new(open, now_ns, seed)?;
        fs.go_rw()?;
        Ok(fs)
    }

    /// The first half of [`start`](Self::start): the superblock marked
    /// dirty and written, the write side built (btree, triggers, node
    /// reserve), no btree read yet; then
    /// [`go_rw`](Self::go_rw), once the value is where it stays (the
    /// kernel boxes it in between, so that the deep calls of recovery do
    /// not run on top of the frame that built it).
    ///
    /// Errors: `ENOMEM`, `EINVAL` (a superblock that no longer parses).
    pub fn new(open: Arc<BchFsOpen<D>>, now_ns: i64, seed: u64) -> Result<Self, Errno> {
        {
            let mut sb = open.sb.lock();
            if !open.fresh {
                if let Some((a, b)) = open.blacklist {
                    blacklist_add(&mut sb, a, b)?;
                }
                mark_dirty(&mut sb);
                sb.write_super(&*open.dev)?;
            }
        }
        let mut trig = FsTriggers::new(open.info.clone(), open.acct_version)?;
        trig.open_buckets = Some(Shared::Owned(open.alloc.clone()));
        // Replay runs without triggers (BTREE_TRIGGER_norun): they are
        // hooked in now, enabled after it.
        trig.set_enabled(false);
        let trig = arc_new(trig)?;
        let tap = arc_new(NodePtrTap { inner: Shared::Owned(open.journal.clone()), triggers: Shared::Owned(trig.clone()) })?;
        let nodes = arc_new(BtreeNodeReserve::new(open.alloc.clone(), None, Watermark::Btree)?)?;
        let dev: Arc<D> = open.dev.clone();
        let mut btree = BtreeFs::new_shared(
            Shared::Owned(dev),
            Shared::Owned(open.info.clone()),
            Shared::Owned(open.cache.clone()),
            Shared::Owned(tap),
            Shared::Owned(nodes.clone()),
            open.geo,
            &open.roots,
        )?;
        btree.triggers = Some(Shared::Owned(trig.clone()));
        btree.write_buffer = true;
        // New nodes' seqs must not repeat those of an earlier mount.
        btree.seed_node_seq(seed.rotate_left(17) ^ 0x6e6f_6465_7365_7173);
        let mut hints = Vec::new();
        hints.push(0u64)?;
        let opts = open.opts;
        let io_errors_base = open.member()?.errors;
        let errors = {
            let sb = open.sb.lock();
            let o = crate::format::sb_opts::sb_opt("errors").ok_or(Errno::EINVAL)?;
            sb.sb().map(|s| s.opt(o) as u8).map_err(|_| Errno::EINVAL)?
        };
        let fs = BchFs {
            open,
            btree,
            triggers: trig,
            nodes,
            op_lock: Mutex::new(())?,
            discarding: AtomicBool::new(false),
            emergency_ro: AtomicBool::new(false),
            io_errors: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            io_errors_base,
            fatal_seen: AtomicU64::new(0),
            opts: Mutex::new(opts)?,
            journal_flush_disabled: AtomicBool::new(false),
            errors: AtomicU8::new(errors),
            user_sectors: [AtomicU64::new(0), AtomicU64::new(0)],
            data_write_time: TimeStats::new(),
            data_read_time: TimeStats::new(),
            reserved_sectors: AtomicU64::new(0),
            avail_sectors: AtomicU64::new(0),
            avail_written_base: AtomicU64::new(0),
            now_ns: AtomicI64::new(now_ns),
            rng: AtomicU64::new(seed),
            hints: Mutex::new(hints)?,
        };
        Ok(fs)
    }

    /// The second half of [`start`](Self::start) (`bch2_fs_read_write()`
    /// proper): node pointers, the allocator, replay and accounting, then
    /// the discards waiting from the last mount.
    ///
    /// Errors: as [`start`](Self::start).
    pub fn go_rw(&self) -> Result<(), Errno> {
        self.recover()?;
        if !self.open.fresh {
            self.do_discards()?;
        }
        Ok(())
    }

    /// The part of [`start`](Self::start) after the write side is built:
    /// the node pointers, the allocator, replay and accounting.
    fn recover(&self) -> Result<(), Errno> {
        let (open, btree, trig) = (&*self.open, &self.btree, &*self.triggers);
        // The node pointers before anything changes: interior updates made
        // from here on (replay's included) are triggered with their old
        // keys known.
        trig.node_ptrs_load(btree)?;
        open.alloc.load(btree)?;
        open.alloc.journal_flushed(open.journal.flushed_seq_ondisk());
        if let Some(keys) = &open.replay {
            // bch2_alloc_read() reads through the journal keys: buckets
            // whose alloc keys are still in the journal are known as the
            // journal has them, so replay's node allocations stay off them.
            let mut i = 0;
            while i < keys.len() {
                let end = keys.slot_end(i).max(i + 1);
                let slot = i;
                i = end;
                let Some(jk) = keys.get(slot).filter(|k| k.btree == BtreeId::Alloc as u8 && k.level == 0) else {
                    continue;
                };
                // The slot's newest key.
                let Some((k, v)) = keys.key(end - 1) else {
                    continue;
                };
                let a = if k.key_type == crate::format::bkey::KeyType::AllocV4 as u8 { AllocV4::decode(v) } else { AllocV4::default() };
                if let Ok(dev) = u8::try_from(jk.pos.inode) {
                    open.alloc.bucket_updated(dev, jk.pos.offset, &a, 0)?;
                }
            }
            journal_replay_interior(btree, trig, keys)?;
            // Replayed keys carry their derived updates with them: no
            // triggers (BTREE_TRIGGER_norun), as C replays.
            journal_replay(btree, keys)?;
            // The nodes replay split or made have no alloc keys,
            // backpointers or accounting yet.
            trig.after_commit(btree)?;
            for _ in 0..16 {
                write_dirty_nodes(btree)?;
                trig.after_commit(btree)?;
                if open.cache.nodes_with(crate::btree::node::flags::DIRTY)?.is_empty() {
                    break;
                }
            }
            open.journal.replay_done();
            // The allocator sees what replay put in the alloc btree.
            open.alloc.load(btree)?;
        }
        accounting_read(btree, trig)?;
        trig.set_enabled(true);
        Ok(())
    }

    /// The mount-wide operation lock: the kernel glue holds it around every
    /// call into the core (reads and writes), so operations run one at a
    /// time.  The transactions themselves lock nodes (six locks) and are
    /// safe to run concurrently, but the lock order of several writers
    /// with the follow-ups of [`after_commit`](Self::after_commit) is not
    /// settled yet (`write-path.rst`); C has no such lock.
    pub fn op_lock(&self) -> crate::platform::MutexGuard<'_, ()> {
        self.op_lock.lock()
    }

    /// Sets the time operations stamp, ns since the epoch.
    pub fn set_time(&self, ns: i64) {
        self.now_ns.store(ns, Relaxed);
    }

    /// The time operations stamp, ns since the epoch.
    pub fn now_ns(&self) -> i64 {
        self.now_ns.load(Relaxed)
    }

    /// 64 pseudo-random bits (splitmix64 over the mount's seed).
    pub fn random_u64(&self) -> u64 {
        let n = self.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Relaxed);
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// What follows every commit: the triggers' follow-ups, and journal
    /// reclaim when the journal fills.
    ///
    /// Errors: those of the follow-up commits and node writes.
    pub fn after_commit(&self) -> Result<(), Errno> {
        self.triggers.after_commit(&self.btree)?;
        self.sb_marks_update()?;
        self.nodes_marked();
        self.maybe_reclaim()
    }

    /// Writes the superblock when a commit created a replicas accounting
    /// counter or moved a node outside the member's btree bitmap, so that
    /// a volume left unclean lists what its keys use (C writes the
    /// superblock from `bch2_mark_replicas()` and
    /// `bch2_dev_btree_bitmap_mark()` at the same points).
    ///
    /// Errors: `EIO` from the superblock write, `ENOMEM`, `EINVAL`.
    fn sb_marks_update(&self) -> Result<(), Errno> {
        let (replicas, ptrs) = self.triggers.take_sb_marks();
        if !replicas && ptrs.is_empty() {
            return Ok(());
        }
        let info = &self.open.info;
        let mut sb = self.open.sb.lock();
        if crate::sb_marks::sb_mark_new(&mut sb, &self.triggers, info.dev_idx, info.node_bytes / 512, replicas, &ptrs)? {
            sb.write_super(&*self.open.dev)?;
        }
        Ok(())
    }

    /// Once no node pointer waits for its triggers, the nodes handed out
    /// are marked in the alloc btree: their open bucket references go
    /// (`bch2_btree_update_free()` putting the update's open buckets), and
    /// the allocator learns how far the journal is flushed
    /// (`journal.flushed_seq_ondisk`).
    fn nodes_marked(&self) {
        if !self.triggers.node_ptrs_pending() {
            self.nodes.release();
        }
        self.open.alloc.journal_flushed(self.open.journal.flushed_seq_ondisk());
    }

    /// `bch2_do_discards()` on the device: every `need_discard` bucket
    /// whose emptying is flushed in the journal and that is not open is
    /// discarded (the device's discard when the member's `discard` option
    /// is set: [`BlockDev::discard`]) and moved back to the freespace
    /// btree in one transaction.  Returns how many.
    ///
    /// Errors: `EIO` (a need_discard bucket holding data), those of the
    /// reads, the discard and the commit.
    pub fn do_discards(&self) -> Result<usize, Errno> {
        let dev = self.open.info.dev_idx;
        self.nodes_marked();
        let keys = self.open.alloc.do_discards(&self.btree, dev, &DevDiscard(&*self.open.dev))?;
        if keys.is_empty() {
            return Ok(0);
        }
        // A transaction per batch: the alloc updates of every bucket of
        // a volume with their triggers' keys do not fit one journal entry
        // (C commits one bucket per transaction).
        for batch in keys.chunks(crate::triggers::ALLOC_COMMIT_BUCKETS) {
            self.commit_do(|t| {
                for &(b, a) in batch.iter() {
                    self.triggers.alloc_mod(t, Bpos::new(u64::from(dev), b, 0), |x| {
                        *x = a;
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(keys.len())
    }

    /// What a data allocation that found no bucket above its watermark
    /// waits for in C (`c->freelist_wait`): the journal flushed (buckets
    /// emptied by earlier commits may then be reused) and the discards
    /// that follow.  Returns how many buckets came back.
    ///
    /// Errors: those of [`flush`](Self::flush), the journal flush and
    /// [`do_discards`](Self::do_discards).
    pub fn alloc_make_room(&self) -> Result<usize, Errno> {
        self.flush()?;
        let j = &self.open.journal;
        if j.cur_seq() > j.flushed_seq_ondisk() {
            JournalSink::flush_seq(&**j, j.cur_seq())?;
        }
        self.do_discards()
    }

    /// [`commit_do`] on the btree, then [`after_commit`](Self::after_commit).
    ///
    /// Errors: those of `f` and the commit, as an errno.
    /// A commit that finds the journal full (`ENOSPC`: no flusher can
    /// free it from inside) writes the dirty nodes and runs again, twice
    /// at most.
    ///
    /// Errors: those of `f` and the commit, as an errno.
    pub fn commit_do<T>(&self, mut f: impl FnMut(&mut BtreeTrans<'_>) -> Result<T, BchError>) -> Result<T, Errno> {
        let mut tries = 0;
        let r = loop {
            match commit_do(&self.btree, CommitFlags::default(), &mut f) {
                Err(Errno::ENOSPC) if tries < 2 => {
                    tries += 1;
                    self.flush()?;
                }
                r => break r?,
            }
        };
        self.after_commit()?;
        Ok(r)
    }

    /// Writes the dirty nodes when the journal holds more than a few dozen
    /// unreclaimed entries (what the journal's flusher would ask for);
    /// then, when buckets wait in `need_discard`, the discards (C queues
    /// its discard work when the journal flush makes such buckets
    /// eligible).
    ///
    /// Errors: those of [`flush`](Self::flush) and
    /// [`do_discards`](Self::do_discards).
    pub fn maybe_reclaim(&self) -> Result<(), Errno> {
        if self.is_emergency_ro() {
            return Ok(());
        }
        let j = &self.open.journal;
        if j.cur_seq().saturating_sub(j.last_seq()) > 32 {
            self.flush()?;
            let dev = self.open.info.dev_idx;
            let waiting = self.open.alloc.with_dev(dev, |d| d.usage[crate::format::val::alloc::data_type::NEED_DISCARD as usize])?;
            if waiting != 0 && !self.discarding.swap(true, Relaxed) {
                let r = self.do_discards();
                self.discarding.store(false, Relaxed);
                r?;
            }
        }
        Ok(())
    }

    /// `bch2_disk_reservation_get()` for one replica: promises `sectors`
    /// (512-byte) of space to a write that will allocate later (a folio
    /// dirtied in the page cache), so that the writer gets `ENOSPC` rather
    /// than its writeback.  As C's, the space is what `statfs` calls
    /// available (capacity less what the accounting says is used, after
    /// `avail_factor`), less what is promised already.  The figure is
    /// read from the accounting btree when the last one read does not
    /// cover the request (and at least once a second, by
    /// [`do_work`](Self::do_work)); put the space back with
    /// [`disk_reservation_put`](Self::disk_reservation_put) once the data
    /// is allocated or dropped.  The caller holds
    /// [`op_lock`](Self::op_lock).
    ///
    /// Errors: `ENOSPC`; those of reading the accounting.
    pub fn disk_reservation_get(&self, sectors: u64) -> Result<(), Errno> {
        let take = |avail: u64| {
            self.reserved_sectors
                .fetch_update(Relaxed, Relaxed, |r| r.checked_add(sectors).filter(|&n| n <= avail))
                .map(|_| ())
        };
        // Data written since the figure was read has taken its share.
        let (avail, base) = (self.avail_sectors.load(Relaxed), self.avail_written_base.load(Relaxed));
        let since = self.user_sectors[1].load(Relaxed).saturating_sub(base);
        if take(avail.saturating_sub(since)).is_ok() {
            return Ok(());
        }
        take(self.avail_sectors_refresh()?).map_err(|_| Errno::ENOSPC)
    }

    /// Reads what `statfs` calls available, in sectors, for
    /// [`disk_reservation_get`](Self::disk_reservation_get).
    fn avail_sectors_refresh(&self) -> Result<u64, Errno> {
        let facts = self.open.facts;
        let written = self.user_sectors[1].load(Relaxed);
        let st = crate::fs_common::statfs(self, &facts)?;
        self.avail_written_base.store(written, Relaxed);
        let avail = st.bavail.saturating_mul(u64::from(st.block_bytes) / crate::platform::SECTOR_SIZE as u64);
        self.avail_sectors.store(avail, Relaxed);
        Ok(avail)
    }

    /// Puts back `sectors` of [`disk_reservation_get`](Self::disk_reservation_get).
    pub fn disk_reservation_put(&self, sectors: u64) {
        let _ = self.reserved_sectors.fetch_update(Relaxed, Relaxed, |r| Some(r.saturating_sub(sectors)));
    }

    /// The options writes follow now (`c->opts`).
    pub fn opts(&self) -> WriteOpts {
        *self.opts.lock()
    }

    /// Sets filesystem option `name` to `v` (its stored value, as
    /// `bch2_opt_parse()` gives it) for what happens from now on (C's
    /// sysfs `options/` store and `-o remount`): the options writes follow
    /// (`data_checksum`, `compression`, `inline_data`, `str_hash`,
    /// `encoded_extent_max`; a transaction takes them when it is made),
    /// `journal_flush_delay` and `journal_flush_disabled`; and, with
    /// `persist`, the superblock's copy (`bch2_opt_set_sb()`, written at
    /// once).  Returns whether the option has a runtime effect here; one
    /// without is only persisted.
    ///
    /// Errors: `EINVAL` (neither a runtime nor a superblock option, or a
    /// value the option does not take), `EOPNOTSUPP` (nonzero
    /// `background_compression` or `background_target`: rebalance is not
    /// done yet, and every write would fail), `EIO` from the superblock
    /// write.
    pub fn opt_set(&self, name: &str, v: u64, persist: bool) -> Result<bool, Errno> {
        let o = sb_opt(name);
        let runtime = {
            let mut w = self.opts.lock();
            let u8v = || u8::try_from(v).map_err(|_| Errno::EINVAL);
            match name {
                "data_checksum" => w.data_checksum = u8v()?,
                "compression" => w.compression = u8v()?,
                "inline_data" => w.inline_data = v != 0,
                "str_hash" => {
                    // bch2_str_hash_opt_to_type(): siphash is type 3.
                    w.str_hash = match v {
                        0 | 1 => v as u8,
                        2 => 3,
                        _ => return Err(Errno::EINVAL),
                    }
                }
                "encoded_extent_max" => w.encoded_extent_max_sectors = u32::try_from(v >> 9).map_err(|_| Errno::EINVAL)?.max(1),
                "journal_flush_delay" => self.open.journal.set_flush_delay_ms(u32::try_from(v).map_err(|_| Errno::EINVAL)?),
                "journal_flush_disabled" => self.journal_flush_disabled.store(v != 0, Relaxed),
                "errors" if (v as usize) < crate::format::sb_opts::ERROR_ACTIONS.len() => self.errors.store(v as u8, Relaxed),
                "background_compression" | "background_target" if v != 0 => return Err(Errno::EOPNOTSUPP),
                _ if o.is_none() => return Err(Errno::EINVAL),
                _ => return self.opt_persist(o, v, persist).map(|()| false),
            }
            true
        };
        self.opt_persist(o, v, persist)?;
        Ok(runtime)
    }

    fn opt_persist(&self, o: Option<&crate::format::sb_opts::SbOpt>, v: u64, persist: bool) -> Result<(), Errno> {
        if let (true, Some(o)) = (persist, o) {
            let mut sb = self.open.sb.lock();
            sb.set_opt(o, v);
            sb.write_super(&*self.open.dev)?;
        }
        Ok(())
    }

    /// Applies the options a mount (or remount) was given that have a
    /// runtime effect ([`opt_set`](Self::opt_set) without persisting, as
    /// C's mount options override the superblock's for the mount only).
    /// Options without one (`verbose`, `fsck`, `errors`, ...) are the
    /// caller's.
    ///
    /// Errors: those of [`opt_set`](Self::opt_set) other than `EINVAL`.
    pub fn apply_mount_opts(&self, m: &crate::opts::MountOpts) -> Result<(), Errno> {
        for (id, o) in crate::opts::OPTS.iter().enumerate() {
            if let Some(v) = m.get(id) {
                match self.opt_set(o.name, v, false) {
                    Ok(_) | Err(Errno::EINVAL) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// `bch2_fs_emergency_read_only()` (what `FS_IOC_GOINGDOWN` and
    /// `errors=ro` do): with `flush_journal`, every commit made so far is
    /// flushed to the journal first (`FSOP_GOING_FLAGS_LOGFLUSH`); then
    /// the journal halts (`bch2_journal_halt()`), so that nothing more
    /// reaches the disk: commits fail with `EROFS`, dirty nodes are never
    /// written, [`flush`](Self::flush) and [`shutdown`](Self::shutdown)
    /// fail with `EROFS` (the volume stays unclean, and the next mount
    /// replays the journal as after a power cut).
    pub fn emergency_read_only(&self, flush_journal: bool) {
        if flush_journal && !self.is_emergency_ro() {
            let j = &*self.open.journal;
            if let Err(e) = JournalSink::flush_seq(j, j.cur_seq()) {
                crate::platform::log::err!("{}: journal flush before going read-only: {e}", self.open.dev.name());
            }
        }
        if !self.emergency_ro.swap(true, Relaxed) {
            self.open.journal.emergency_halt();
        }
    }

    /// `bch2_inconsistent_error()`: an inconsistency was found (`what`,
    /// for the message, which names the device), and `errors=` decides:
    /// `continue` logs it (rate limited) and goes on; `fix_safe` and `ro`
    /// log it and go [emergency read-only](Self::emergency_read_only) (the
    /// journal halts: nothing more is written, the next mount replays);
    /// `panic` logs it and panics (in the kernel, `panic()`: the user
    /// asked for it).  Returns whether the filesystem is now read-only.
    pub fn inconsistent_error(&self, what: fmt::Arguments<'_>) -> bool {
        let dev = self.open.dev.name();
        match crate::format::sb_opts::ERROR_ACTIONS.get(self.errors.load(Relaxed) as usize).copied() {
            Some("continue") => {
                if crate::platform::log_ratelimit() {
                    crate::platform::log::err!("{dev}: {what}; continuing (errors=continue)");
                }
                false
            }
            Some("panic") => crate::platform::fatal_panic(format_args!("{dev}: {what}; panic (errors=panic)")),
            _ => {
                if !self.is_emergency_ro() {
                    let seq = self.open.journal.cur_seq();
                    crate::platform::log::err!("{dev}: {what}; inconsistency detected - emergency read only at journal seq {seq}");
                }
                self.emergency_read_only(false);
                true
            }
        }
    }

    /// Whether [`emergency_read_only`](Self::emergency_read_only) ran.
    pub fn is_emergency_ro(&self) -> bool {
        self.emergency_ro.load(Relaxed)
    }

    /// `bch2_journal_flush_seq()`: returns once the journal entry `seq`
    /// (and all before it) is on disk in a flush entry (`REQ_PREFLUSH |
    /// REQ_FUA`): what `fsync` waits for, with `seq` the last commit that
    /// changed the file (`FsTrans::t.journal_seq`).  `seq` 0 or already
    /// flushed: nothing to do.
    ///
    /// Errors: `EIO` (the journal failed a write at or before `seq`: the
    /// caller's data may not be durable), `EINVAL` (`seq` not yet opened).
    /// With `journal_flush_disabled` set, nothing is flushed (C's
    /// `bch2_flush_inode()` and `bch2_sync_fs()` return at once).
    pub fn journal_flush_seq(&self, seq: u64) -> Result<(), Errno> {
        let j = &*self.open.journal;
        if seq == 0 || seq <= j.flushed_seq_ondisk() || self.journal_flush_disabled.load(Relaxed) {
            return Ok(());
        }
        JournalSink::flush_seq(j, seq)
    }

    /// `bch2_journal_flush()`: every commit made so far is on disk
    /// (`sync_fs`, `syncfs(2)`).
    ///
    /// Errors: as [`journal_flush_seq`](Self::journal_flush_seq).
    pub fn journal_flush(&self) -> Result<(), Errno> {
        self.journal_flush_seq(self.open.journal.cur_seq())
    }

    /// The mount's periodic work, for the platform's timer: the journal's
    /// step (`journal_write_work()`: the open entry is written once its
    /// `journal_flush_delay` has passed; then reclaim), and the btree side
    /// of reclaim when the journal fills ([`maybe_reclaim`](Self::maybe_reclaim):
    /// dirty nodes written, discards).  `now_ms` is a monotonic clock in
    /// ms (`jiffies`).  Returns in how many ms to call again while an
    /// entry is open (`None`: when the next commit opens one, or at the
    /// platform's own pace).  The caller holds [`op_lock`](Self::op_lock).
    ///
    /// Errors: those of reclaim's node writes and commits.
    pub fn do_work(&self, now_ms: u64) -> Result<Option<u64>, Errno> {
        if self.check_fatal_errors() {
            return Ok(None);
        }
        let next = self.open.journal.journal_do_work(now_ms);
        let r = self.maybe_reclaim();
        if self.check_fatal_errors() {
            return Ok(None);
        }
        r?;
        self.avail_sectors_refresh()?;
        Ok(next.map(|at| at.saturating_sub(now_ms)))
    }

    /// `bch2_fs_fatal_error()`: the filesystem cannot go on after `what`
    /// failed with `e` (a btree node or journal write): one message
    /// naming the device, then [`emergency_read_only`](Self::emergency_read_only)
    /// (what C does whatever `errors=` says: that option is for
    /// inconsistencies).  Commits fail with `EROFS` from now on; what is
    /// on disk stays as a power cut would leave it, and the next mount
    /// replays the journal.
    pub fn fatal_error(&self, what: fmt::Arguments<'_>, e: Errno) {
        if !self.is_emergency_ro() {
            crate::platform::log::err!("{}: fatal error: {what}: {e}; emergency read only", self.open.dev.name());
        }
        self.emergency_read_only(false);
    }

    /// Turns btree node and journal write errors (counted by the btree and
    /// the journal where they happen) into [`fatal_error`](Self::fatal_error);
    /// returns whether the filesystem is emergency read-only.  Called by
    /// [`do_work`](Self::do_work) (so within a second of the error) and
    /// before [`flush`](Self::flush) and [`shutdown`](Self::shutdown)
    /// write anything.
    pub fn check_fatal_errors(&self) -> bool {
        let nodes = self.btree.stats.node_write_errors.load(Relaxed);
        let journal = self.open.journal.write_errors();
        let seen = self.fatal_seen.load(Relaxed);
        if nodes + journal > seen {
            self.fatal_seen.store(nodes + journal, Relaxed);
            let what = if journal > 0 { "journal write" } else { "btree node write" };
            self.fatal_error(format_args!("{what} ({nodes} node, {journal} journal write errors)"), Errno::EIO);
        }
        self.is_emergency_ro()
    }

    /// Counts an I/O error of the device (`bch2_io_error()`: `ca->errors`).
    pub fn io_error(&self, kind: IoErrorKind) {
        self.io_errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// The device's I/O error counts since the filesystem was created
    /// (read, write, checksum): the member's counts at mount plus this
    /// mount's, node and journal write errors included.
    pub fn io_errors(&self) -> [u64; 3] {
        let mut n = [0u64; 3];
        for (i, x) in n.iter_mut().enumerate() {
            *x = self.io_errors_base[i] + self.io_errors[i].load(Relaxed);
        }
        n[1] += self.btree.stats.node_write_errors.load(Relaxed) + self.open.journal.write_errors();
        n
    }

    /// `bch2_dev_io_errors_to_text()` (sysfs `dev-N/io_errors`): the counts
    /// since creation, then since the member's last reset
    /// (`errors_at_reset`, `errors_reset_time`), `now_secs` being the
    /// wall clock in seconds.
    ///
    /// Errors: `EINVAL` (the superblock does not parse), `ENOMEM`.
    pub fn io_errors_to_text(&self, out: &mut dyn fmt::Write, now_secs: u64) -> Result<(), Errno> {
        let m = self.open.member()?;
        let _ = io_errors_text(out, &self.io_errors(), &m, now_secs);
        Ok(())
    }

    /// `bch2_btree_write_buffer_flush_sync()`: writes the open journal
    /// entry (so that its `write_buffer_keys` reach the write buffer), then
    /// flushes the write buffer into the btree.  Afterwards the
    /// write-buffered btrees (backpointers, lru) hold every update
    /// committed before the call.  Returns the keys inserted.
    ///
    /// Errors: those of the flush's commits.
    pub fn write_buffer_flush(&self) -> Result<usize, Errno> {
        self.open.journal.entry_close();
        self.open.write_buffer.flush(&self.btree)
    }

    /// Flushes the write buffer and runs the triggers of the node pointers
    /// its inserts changed, until a flush finds nothing: the keys the
    /// triggers buffer land in nodes not written yet (a written node
    /// taking more keys may have to be compacted, which changes its
    /// pointer again).
    ///
    /// Errors: those of the flushes and the trigger commits.
    fn write_buffer_drain(&self) -> Result<(), Errno> {
        for _ in 0..16 {
            let n = self.write_buffer_flush()?;
            self.triggers.after_commit(&self.btree)?;
            if n == 0 && !self.triggers.node_ptrs_pending() {
                break;
            }
        }
        Ok(())
    }

    /// Flushes the btree write buffer, writes every dirty node (and the
    /// pointer updates that follows), runs the triggers of the node
    /// pointers that changed, until nothing is dirty or buffered; then
    /// journal reclaim.  Journal reclaim's flush of the write buffer's pin
    /// (`btree_write_buffer_journal_flush()`) is this too
    /// ([`maybe_reclaim`](Self::maybe_reclaim)).
    ///
    /// Errors: `EIO` from the writes, those of the trigger commits.
    pub fn flush(&self) -> Result<(), Errno> {
        if self.check_fatal_errors() {
            return Err(Errno::EROFS);
        }
        for _ in 0..16 {
            self.write_buffer_drain()?;
            write_dirty_nodes(&self.btree)?;
            self.triggers.after_commit(&self.btree)?;
            let dirty = self.open.cache.nodes_with(crate::btree::node::flags::DIRTY)?;
            if dirty.is_empty() && !self.triggers.node_ptrs_pending() {
                // The node pointers' triggers may have buffered more.
                if self.write_buffer_flush()? != 0 {
                    continue;
                }
                self.open.journal.journal_do_work(0);
                self.open.journal.reclaim();
                self.nodes_marked();
                return Ok(());
            }
        }
        Err(Errno::EIO)
    }

    /// Clean shutdown (`bch2_fs_read_only()` + `bch2_fs_mark_clean()`):
    /// every dirty node written, the write points' open buckets closed
    /// (`bch2_open_buckets_stop()`), the journal stopped with a last flush
    /// entry, the superblock's `clean` section (roots, clocks) and clean
    /// flag written.
    ///
    /// Errors: `EBUSY` (journal pins left), `EIO`, `ENOMEM`.
    pub fn shutdown(&self) -> Result<(), Errno> {
        self.flush()?;
        // bch2_dev_allocator_remove(): the write points give up their
        // buckets (partly written ones stay as their keys made them).
        self.open.alloc.open_buckets_stop(None);
        let seq = self.open.journal.stop()?;
        let clean = self.open.journal.clean_section(seq)?;
        let mut sb = self.open.sb.lock();
        // bch2_fs_mark_clean(): the alloc info is complete.
        let c = sb.sb().map(|s| s.compat()).map_err(|_| Errno::EINVAL)?;
        sb.set_compat([c[0] | COMPAT_ALLOC_INFO | COMPAT_ALLOC_METADATA, c[1]]);
        let _ = self.mark_sb(&mut sb)?;
        self.sb_io_errors_update(&mut sb)?;
        mark_clean(&mut sb, &clean)?;
        sb.write_super(&*self.open.dev)
    }

    /// Writes the device's I/O error counts into its member entry
    /// (`bch_member.errors`, as C's `bch2_sb_members_from_cpu()` on every
    /// superblock write): read, write and checksum errors since the
    /// filesystem was created.  Returns whether they changed.
    ///
    /// Errors: `EINVAL` (the superblock does not parse).
    fn sb_io_errors_update(&self, sb: &mut SbBuf) -> Result<bool, Errno> {
        let n = self.io_errors();
        crate::sb_marks::sb_member_update(sb, self.open.info.dev_idx, |m| {
            let changed = m.errors != n;
            m.errors = n;
            Ok(changed)
        })
    }

    /// Brings the superblock's records of what is where up to date: the
    /// replicas entries of every accounting counter (`bch2_mark_replicas()`,
    /// which C runs when a counter first uses an entry) and the journal's,
    /// and each member's btree bitmap over every node pointer
    /// (`bch2_dev_btree_bitmap_mark()`, which C runs when it allocates a
    /// node).  Here both are done when the superblock is written at
    /// shutdown.
    ///
    /// Errors: `ENOMEM`, `EINVAL`.
    fn mark_sb(&self, sb: &mut crate::format::sb_write::SbBuf) -> Result<bool, Errno> {
        crate::sb_marks::sb_mark_written(sb, &self.triggers, self.open.info.dev_idx, self.open.info.node_bytes / 512)
    }

    /// I/O done on the device since the mount, read and write, in 512-byte
    /// sectors by data type (sysfs `dev-N/io_done`,
    /// `dev_io_done_to_text()`): btree node reads and writes, journal
    /// writes, file data.  Superblock I/O is not counted.
    pub fn io_done(&self) -> [crate::bcachefs::IoDone; 2] {
        let o = &self.open;
        [
            crate::bcachefs::IoDone {
                sb: 0,
                journal: 0,
                btree: o.cache.sectors_read.load(Relaxed),
                user: self.user_sectors[0].load(Relaxed),
            },
            crate::bcachefs::IoDone {
                sb: 0,
                journal: o.journal.bytes_written() / crate::platform::SECTOR_SIZE as u64,
                btree: self.btree.stats.node_write_bytes.load(Relaxed) / crate::platform::SECTOR_SIZE as u64,
                user: self.user_sectors[1].load(Relaxed),
            },
        ]
    }

    /// The time stat `id` of the mount, where it is recorded (see
    /// [`RECORDED_TIME_STATS`]); `None` for those C has and we do not
    /// record yet.
    pub fn time_stats(&self, id: TimeStatId) -> Option<&TimeStats> {
        use TimeStatId as T;
        let j = self.open.journal.times();
        let b = &self.btree.stats;
        Some(match id {
            T::btree_node_split => &b.split_time,
            T::btree_node_compact => &b.compact_time,
            T::btree_node_merge => &b.merge_time,
            T::btree_node_read => &self.open.cache.node_read_time,
            T::btree_node_read_done => &self.open.cache.node_read_done_time,
            T::btree_interior_update_foreground => &b.interior_update_foreground_time,
            T::data_write => &self.data_write_time,
            T::data_read => &self.data_read_time,
            T::journal_flush_write => &j.journal_flush_write,
            T::journal_noflush_write => &j.journal_noflush_write,
            T::journal_flush_seq => &j.journal_flush_seq,
            T::blocked_journal_low_on_space => &j.blocked_journal_low_on_space,
            T::blocked_journal_low_on_pin => &j.blocked_journal_low_on_pin,
            _ => return None,
        })
    }

    /// `bch2_time_stats_to_text()` of time stat `id`
    /// (`/sys/fs/bcachefs/<uuid>/time_stats/<name>`); nothing for one not
    /// recorded.
    pub fn time_stats_to_text(&self, id: TimeStatId, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
        match self.time_stats(id) {
            Some(t) => t.to_text(f),
            None => Ok(()),
        }
    }

    /// sysfs `btree_write_stats` (`bch2_btree_write_stats_to_text()`):
    /// node writes by type, count and average size.  Ours are `initial`
    /// (a node's first write) and `journal_reclaim` (every later one:
    /// they all come from flushes).
    pub fn btree_write_stats_to_text(&self, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let st = &self.btree.stats;
        let (n, b) = (st.node_writes.load(Relaxed), st.node_write_bytes.load(Relaxed));
        let (ni, bi) = (st.node_writes_initial.load(Relaxed), st.node_write_bytes_initial.load(Relaxed));
        let rows = [("initial", ni, bi), ("init_next", 0, 0), ("cache_reclaim", 0, 0), ("journal_reclaim", n - ni, b - bi), ("interior", 0, 0)];
        writeln!(f, "{:<20}{:<10}size", "", "nr")?;
        for (name, nr, bytes) in rows {
            let avg = bytes.checked_div(nr).unwrap_or(0);
            // `{:<20}` of "name:" without an allocation.
            write!(f, "{name}:{:w$}", "", w = 19usize.saturating_sub(name.len()))?;
            writeln!(f, "{nr:<10}{}", crate::opts::HumanReadable(avg))?;
        }
        Ok(())
    }

    /// sysfs `dirty_btree_nodes` (`bch2_dirty_btree_nodes_to_text()`):
    /// every dirty node, its btree, level and position.
    pub fn dirty_btree_nodes_to_text(&self, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
        match self.open.cache.nodes_with(crate::btree::node::flags::DIRTY) {
            Ok(dirty) => {
                for n in dirty.iter() {
                    writeln!(f, "{n}")?;
                }
                Ok(())
            }
            Err(_) => writeln!(f, "(out of memory)"),
        }
    }

    /// Prints the mount's state, each part under a heading named as C's
    /// sysfs/debugfs file that prints it: `journal_debug`
    /// (`bch2_journal_debug_to_text()`), `journal_pins`
    /// (`bch2_journal_pins_to_text()`), `alloc_debug`
    /// (`bch2_fs_alloc_debug_to_text()`), `dev-N/alloc_debug`
    /// (`bch2_dev_alloc_debug_to_text()`), `open_buckets`
    /// (`bch2_open_buckets_to_text()`), `write_points`
    /// (`bch2_write_points_to_text()`), `btree_updates` (the last interior
    /// update, `bch2_btree_updates_to_text()`, and the dirty nodes),
    /// `btree_write_buffer` (keys held, oldest pinned seq, flushes), and
    /// `triggers` (ours: accounting version, node pointer bookkeeping, the
    /// in-memory accounting counters).
    pub fn to_text(&self, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
        writeln!(f, "journal_debug:")?;
        self.open.journal.debug_to_text(f)?;
        writeln!(f, "\njournal_pins:")?;
        self.open.journal.pins_to_text(f)?;
        writeln!(f, "\nalloc_debug:")?;
        self.open.alloc.fs_alloc_debug_to_text(f)?;
        let dev = self.open.info.dev_idx;
        writeln!(f, "\ndev-{dev}/alloc_debug:")?;
        self.open.alloc.dev_alloc_debug_to_text(f, dev)?;
        writeln!(f, "\nopen_buckets:")?;
        self.open.alloc.open_buckets_to_text(f, None)?;
        writeln!(f, "\nopen_buckets_partial:")?;
        self.open.alloc.open_buckets_partial_to_text(f)?;
        writeln!(f, "\nwrite_points:")?;
        self.open.alloc.write_points_to_text(f)?;
        writeln!(f, "\nbtree_updates:")?;
        match *self.btree.last_update.lock() {
            Some(u) => writeln!(f, "last: {u}")?,
            None => writeln!(f, "last: none")?,
        }
        writeln!(f, "node reserve: {} nodes held", self.nodes.nr_held())?;
        match self.open.cache.nodes_with(crate::btree::node::flags::DIRTY) {
            Ok(dirty) => {
                writeln!(f, "dirty nodes: {}", dirty.len())?;
                for n in dirty.iter() {
                    writeln!(f, "  {n}")?;
                }
            }
            Err(_) => writeln!(f, "dirty nodes: (out of memory)")?,
        }
        writeln!(f, "\nbtree_write_buffer:")?;
        self.open.write_buffer.to_text(f)?;
        writeln!(f, "\ntriggers:")?;
        self.triggers.to_text(f)
    }

    /// A transaction for the `fs_common` operations.
    pub fn trans(&self) -> FsTrans<'_, D> {
        FsTrans { fs: self, t: BtreeTrans::new(&self.btree), enospc_retries: 0, opts: *self.opts.lock() }
    }
}

/// [`BtreeTransOps`] over a real [`BtreeTrans`]: reads see the
/// transaction's updates, updates replace exactly the key at their
/// position (the operations cut extents themselves), a commit is followed
/// by [`BchFs::after_commit`].
pub struct FsTrans<'a, D: BlockDev + Send + Sync + 'static> {
    fs: &'a BchFs<D>,
    /// The transaction.
    pub t: BtreeTrans<'a>,
    enospc_retries: u32,
    /// The mount's options when the transaction was made.
    opts: WriteOpts,
}

impl<D: BlockDev + Send + Sync + 'static> BtreeTransOps for FsTrans<'_, D> {
    fn peek_upto(&mut self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<BkeyI>, BchError> {
        let it = self.t.iter(btree, from, false)?;
        self.t.iter_with_updates(it, true);
        self.t.iter_whiteouts(it, whiteouts);
        Ok(self.t.iter_peek(it)?.filter(|k| k.k.p <= to))
    }

    fn update(&mut self, btree: BtreeId, mut k: BkeyI) -> Result<(), BchError> {
        let b = btree as u8;
        k.k.u64s = u8::try_from(BKEY_U64S + k.v.len() / 8).map_err(|_| Errno::EINVAL)?;
        if k.v.len() % 8 != 0 || k.k.val_bytes() != k.v.len() {
            return Err(Errno::EINVAL.into());
        }
        if !(is_extents(b) && k.k.is_deleted()) {
            k.k.validate(NodeType::Leaf(u32::from(b)), true).map_err(|_| Errno::EINVAL)?;
        }
        if k.k.is_deleted() {
            k.k.size = 0;
        }
        // Not BtreeTrans::update(): that would cut extents a second time.
        self.t.push_update(b, 0, k)
    }

    fn begin(&mut self) {
        self.t.begin();
    }

    fn commit(&mut self) -> Result<(), BchError> {
        match self.t.commit(CommitFlags::default()) {
            Err(BchError::Errno(Errno::ENOSPC)) if self.enospc_retries < 2 => {
                // The journal is full and no flusher can reach the btree
                // from inside: write the nodes, then run the operation
                // again.
                self.enospc_retries += 1;
                self.t.begin();
                self.fs.flush()?;
                return Err(BchError::Restart(crate::errcode::Restart::JournalResGet));
            }
            r => r?,
        }
        self.enospc_retries = 0;
        self.fs.after_commit()?;
        Ok(())
    }

    fn read_data(&mut self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if dev != self.fs.open.info.dev_idx {
            return Err(Errno::EIO);
        }
        self.fs.user_sectors[0].fetch_add((buf.len() / crate::platform::SECTOR_SIZE) as u64, Relaxed);
        let start = crate::sync::now_ns();
        let r = self.fs.open.dev.read_sectors(sector, buf).inspect_err(|_| self.fs.io_error(IoErrorKind::Read));
        self.fs.data_read_time.update_from(start);
        r
    }

    fn dev_name(&self) -> &str {
        self.fs.open.dev.name()
    }

    fn checksum_error(&self, _dev: u8) {
        self.fs.io_error(IoErrorKind::Checksum);
    }

    fn inconsistent(&self) {
        self.fs.inconsistent_error(format_args!("a transaction found an inconsistency"));
    }

    fn facts(&self) -> &FsFacts {
        &self.fs.open.facts
    }

    fn opts(&self) -> &WriteOpts {
        &self.opts
    }

    fn now_ns(&self) -> i64 {
        self.fs.now_ns()
    }

    fn random_u64(&mut self) -> u64 {
        self.fs.random_u64()
    }

    fn unused_inode_hint(&self, cpu: u64) -> u64 {
        let h = self.fs.hints.lock();
        usize::try_from(cpu).ok().and_then(|c| h.get(c).copied()).unwrap_or(0)
    }

    fn set_unused_inode_hint(&mut self, cpu: u64, v: u64) {
        let mut h = self.fs.hints.lock();
        if let Some(x) = usize::try_from(cpu).ok().and_then(|c| h.get_mut(c)) {
            *x = v;
        }
    }
}

/// Reads through the write side: every key a commit made is seen, dirty
/// nodes included (what the read-only [`crate::bcachefs::Fs`] offers a
/// read-only mount).  Each call is its own transaction, retried on
/// restarts; for a consistent view of several reads, use a transaction
/// ([`BchFs::trans`] under [`crate::fs_common::trans::trans_read`]).
impl<D: BlockDev + Send + Sync + 'static> crate::fs_common::BtreeRead for BchFs<D> {
    fn peek_upto(&self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<BkeyI>, Errno> {
        crate::btree::lockrestart_do(&self.btree, |t| {
            let it = t.iter(btree, from, false)?;
            t.iter_whiteouts(it, whiteouts);
            Ok(t.iter_peek(it)?.filter(|k| k.k.p <= to))
        })
    }

    fn read_data(&self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if dev != self.open.info.dev_idx {
            return Err(Errno::EOPNOTSUPP);
        }
        self.user_sectors[0].fetch_add((buf.len() / crate::platform::SECTOR_SIZE) as u64, Relaxed);
        let start = crate::sync::now_ns();
        let r = self.open.dev.read_sectors(sector, buf).inspect_err(|_| self.io_error(IoErrorKind::Read));
        self.data_read_time.update_from(start);
        r
    }

    /// All of `reads` in flight at once (one device read each as
    /// [`Self::read_data`] counts them: sectors read, an I/O error per
    /// failed read; one time sample for the batch).
    fn read_data_many(&self, reads: &mut [crate::platform::DevRead<'_>]) {
        let dev = self.open.info.dev_idx;
        let mut sectors = 0u64;
        for r in reads.iter_mut() {
            r.result = if r.dev == dev { Ok(()) } else { Err(Errno::EOPNOTSUPP) };
            sectors += (r.buf.len() / crate::platform::SECTOR_SIZE) as u64;
        }
        if reads.iter().any(|r| r.result.is_err()) {
            // Another member: not ours to read (as `read_data`); the rest
            // one by one.
            for r in reads.iter_mut() {
                r.result = self.read_data(r.dev, r.sector, r.buf);
            }
            return;
        }
        self.user_sectors[0].fetch_add(sectors, Relaxed);
        let start = crate::sync::now_ns();
        self.open.dev.read_sectors_many(reads);
        for r in reads.iter() {
            if r.result.is_err() {
                self.io_error(IoErrorKind::Read);
            }
        }
        self.data_read_time.update_from(start);
    }

    fn dev_name(&self) -> &str {
        self.open.dev.name()
    }

    fn checksum_error(&self, _dev: u8) {
        self.io_error(IoErrorKind::Checksum);
    }

    fn facts(&self) -> &FsFacts {
        &self.open.facts
    }
}

/// `writepoint_hashed()` of a writer: C hashes the task that dirtied the
/// pages (`inode->ei_last_dirtied`, or `current` for direct IO), so one
/// writing process fills one write point; callers pass what stands for
/// it (the tool its process id).
pub fn writepoint_hashed(v: u64) -> WritePointSpec {
    WritePointSpec::Hashed(v)
}

/// `fs_common`'s [`DataAlloc`](crate::fs_common::trans::DataAlloc) of a
/// mount: user data through a hashed write point of the [`Allocator`] at
/// [`Watermark::Normal`] (`bch2_alloc_sectors_start_trans()`,
/// `bch2_alloc_sectors_append_ptrs()`, `bch2_alloc_sectors_done()`), written
/// to the device.
///
/// It keeps a reference on the open bucket of everything it handed out
/// (`bch2_open_bucket_get()`, the write op's `open_buckets`) until it is
/// dropped: use one per write operation (a file's data), dropped after
/// the extents are committed (C puts them in `bch2_write_done()`).  When
/// no bucket is left above the watermark it flushes the journal and runs
/// the discards once ([`BchFs::alloc_make_room`]) before giving `ENOSPC`.
pub struct FsDataAlloc<'a, D: BlockDev + Send + Sync + 'static> {
    fs: &'a BchFs<D>,
    /// The write point.
    pub wp: WritePointSpec,
    /// `Normal` for user data.
    pub watermark: Watermark,
    held: Vec<ObRefs>,
    /// When the operation started (`op->start_time`), ns.
    start: u64,
    /// Data was written since: the operation is timed at its end.
    wrote: bool,
}

impl<'a, D: BlockDev + Send + Sync + 'static> FsDataAlloc<'a, D> {
    /// Data space for the writer hashed as `wp` ([`writepoint_hashed`]).
    pub fn new(fs: &'a BchFs<D>, wp: WritePointSpec) -> Self {
        FsDataAlloc { fs, wp, watermark: Watermark::Normal, held: Vec::new(), start: crate::sync::now_ns(), wrote: false }
    }

    fn try_alloc(&mut self, sectors: u32) -> Result<crate::fs_common::trans::DataSpace, Errno> {
        let alloc = &self.fs.open.alloc;
        self.held.reserve(1)?;
        let mut g = alloc.alloc_sectors_start(&self.fs.btree, self.wp, 1, self.watermark).map_err(|e| e.errno())?;
        let n = sectors.min(g.sectors_free());
        let obs = g.open_bucket_get();
        // Reserved above: cannot fail.
        let _ = self.held.push(obs);
        let p = g.append_ptrs(n)?;
        g.done();
        let p = p.get(0).ok_or(Errno::ENOSPC)?;
        Ok(crate::fs_common::trans::DataSpace { dev: p.dev, offset: p.offset, gen: p.gen, sectors: n })
    }

    /// Puts the references on the buckets handed out (also done on drop),
    /// and ends the write operation: the `data_write` time stat counts it
    /// if it wrote (`bch2_write_done()`).
    pub fn release(&mut self) {
        if self.wrote {
            self.wrote = false;
            self.fs.data_write_time.update_from(self.start);
        }
        while let Some(mut o) = self.held.pop() {
            self.fs.open.alloc.open_buckets_put(&mut o);
        }
    }
}

impl<D: BlockDev + Send + Sync + 'static> Drop for FsDataAlloc<'_, D> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<D: BlockDev + Send + Sync + 'static> crate::fs_common::trans::DataAlloc for FsDataAlloc<'_, D> {
    fn alloc(&mut self, sectors: u32) -> Result<crate::fs_common::trans::DataSpace, Errno> {
        if sectors == 0 {
            return Err(Errno::EINVAL);
        }
        match self.try_alloc(sectors) {
            Err(Errno::ENOSPC) => {
                self.fs.alloc_make_room()?;
                self.try_alloc(sectors)
            }
            r => r,
        }
    }

    fn sectors_free(&self) -> u32 {
        match self.fs.open.alloc.write_point_sectors_free(self.wp) {
            // The next alloc opens a new bucket.
            0 => self.fs.open.facts.bucket_sectors,
            n => n,
        }
    }

    fn write(&mut self, dev: u8, sector: u64, data: &[u8]) -> Result<(), Errno> {
        if dev != self.fs.open.info.dev_idx {
            return Err(Errno::EIO);
        }
        self.fs.user_sectors[1].fetch_add((data.len() / crate::platform::SECTOR_SIZE) as u64, Relaxed);
        self.wrote = true;
        // A failed data write is the writer's EIO (and counted); the
        // filesystem goes on, as C's (`bch2_write_endio()`).
        self.fs.open.dev.write_sectors(sector, data, WriteFlags::default()).inspect_err(|_| self.fs.io_error(IoErrorKind::Write))
    }

    /// All in flight together ([`BlockDev::write_sectors_many`]); each
    /// failure counted as [`DataAlloc::write`](crate::fs_common::trans::DataAlloc::write)'s.
    fn write_many(&mut self, writes: &mut [crate::platform::DevWrite<'_>]) {
        let dev_idx = self.fs.open.info.dev_idx;
        let mut sectors = 0u64;
        for w in writes.iter_mut() {
            w.result = if w.dev == dev_idx { Ok(()) } else { Err(Errno::EIO) };
            sectors += (w.buf.len() / crate::platform::SECTOR_SIZE) as u64;
        }
        if writes.iter().any(|w| w.result.is_err()) {
            return;
        }
        self.fs.user_sectors[1].fetch_add(sectors, Relaxed);
        self.wrote = true;
        self.fs.open.dev.write_sectors_many(writes);
        for w in writes.iter() {
            if w.result.is_err() {
                self.fs.io_error(IoErrorKind::Write);
            }
        }
    }
}
