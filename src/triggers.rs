// SPDX-License-Identifier: GPL-2.0
//! The btree commit's triggers ([`BtreeTriggers`]) over the pure trigger
//! functions of [`crate::alloc`]: what C's `bch2_trans_commit_run_triggers()`
//! (transactional part of `bch2_trigger_extent()`, `bch2_trigger_inode()`,
//! `bch2_trigger_alloc()`, `bch2_trigger_subvolume()`) and the atomic
//! triggers of `bch2_trans_commit_write_locked()` do.
//!
//! A leaf update of a btree with triggers runs [`run_triggers`] on (old,
//! new) and applies the [`DerivedUpdates`] through the same transaction:
//!
//! * each pointer's bucket: read-modify-write of its `alloc_v4` key (seeing
//!   this transaction's earlier updates), [`mark_pointer`]; the alloc
//!   update then runs the alloc trigger ([`trigger_alloc`]), which may
//!   change the key (data type, IO times, gen): the changed key is queued
//!   again and triggers again (it is a fixed point the second time), and
//!   only the final key's index updates (freespace, need_discard, lru,
//!   `bucket_gens`) are queued;
//! * backpointers inserted and deleted, and lru entries, through the
//!   btree write buffer ([`BtreeTrans::update_buffered`],
//!   `bch2_bucket_backpointer_mod()`, `bch2_lru_change()`): in the btree
//!   after a write buffer flush;
//! * accounting deltas: read-modify-write of the accounting key, written
//!   with the sum and a new, larger `bversion`; the atomic trigger adds
//!   `new - old` of every accounting key to the in-memory counters
//!   (`bch2_accounting_mem_mod_locked()`).
//!
//! Btree node pointers changed by interior updates (splits, merges, new
//! roots: `bch2_btree_update_nodes_written()` running the triggers of the
//! pointers it inserts and deletes) do not reach [`BtreeTriggers`]: the
//! interior update journals them as `btree_keys` entries at level > 0 and
//! `btree_root` entries.  [`NodePtrTap`] wraps the journal, records those,
//! and [`FsTriggers::node_ptrs_catch_up`] runs their triggers in a
//! following transaction (see the notes in `write-path.rst`).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::{AcqRel, Acquire, Relaxed, Release}};

use crate::accounting::{accounting_key_encode, accounting_val_decode, AccountingDeltas, DiskAccountingPos, ACCOUNTING_MAX_COUNTERS};
use crate::alloc::background::{alloc_gens_pos, data_type_is_empty, trigger_alloc, AllocTriggerCtx, BucketGens};
use crate::alloc::buckets::{mark_pointer, run_triggers, TriggerCtx};
use crate::alloc::{alloc_v4_key, bucket_gens_key, DerivedUpdates};
use crate::btree::trans::bkey_i;
use crate::btree::{BtreeFs, BtreeTrans, BtreeTriggers, CommitFlags};
use crate::util::Shared;
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{Bkey, BkeyI, BtreeId, KeyType};
use crate::format::bpos::{BVersion, Bpos};
use crate::format::jset::EntryType;
use crate::format::list::FsInfo;
use crate::format::val::alloc::AllocV4;
use crate::journal::res::{JournalRes, JournalSink, PinOwner, ResFlags};
use crate::platform::{log, Mutex, Vec};

/// Buckets whose alloc updates one transaction commits when many change
/// at once (the discards, `BchFs::do_discards`; the gen bumps of
/// [`FsTriggers::after_commit`]): each brings its trigger updates
/// (need_discard, freespace, lru, bucket_gens), a few dozen u64s of
/// journal in all, so a batch stays far below the smallest journal entry,
/// which the buckets of a whole volume do not (C commits one bucket per
/// transaction).
pub const ALLOC_COMMIT_BUCKETS: usize = 64;

/// What the triggers ask of and tell the foreground allocator
/// ([`crate::alloc::foreground::Allocator`] implements it): which buckets
/// are open (being written: the alloc trigger does not bump their gen when
/// they go empty, `bch2_bucket_is_open_safe()`), and every alloc key a
/// commit writes (the allocator's share of the atomic alloc trigger,
/// `bch2_trigger_alloc()` with `BTREE_TRIGGER_atomic`).
pub trait OpenBuckets: Sync {
    /// Whether `bucket` (dev:bucket) is open.
    fn is_open(&self, bucket: Bpos) -> bool;

    /// The alloc key of `bucket` (dev:bucket) became `new` in the commit
    /// of journal sequence number `journal_seq` (a deleted key is passed
    /// as the all-zero value).  The default does nothing.
    fn bucket_updated(&self, bucket: Bpos, new: &AllocV4, journal_seq: u64) {
        let _ = (bucket, new, journal_seq);
    }
}

impl OpenBuckets for crate::alloc::foreground::Allocator {
    fn is_open(&self, bucket: Bpos) -> bool {
        u8::try_from(bucket.inode).is_ok_and(|d| self.bucket_is_open(d, bucket.offset))
    }

    fn bucket_updated(&self, bucket: Bpos, new: &AllocV4, journal_seq: u64) {
        let Ok(dev) = u8::try_from(bucket.inode) else {
            return;
        };
        if let Err(e) = crate::alloc::foreground::Allocator::bucket_updated(self, dev, bucket.offset, new, journal_seq) {
            log::err_ratelimited!("allocator: alloc key of {}:{} not taken in: {e}", bucket.inode, bucket.offset);
        }
    }
}

/// The triggers of a read-write filesystem (the trigger part of `struct
/// bch_fs`): member geometry, the IO clocks, the accounting version
/// counter and the in-memory accounting counters.
pub struct FsTriggers<'a> {
    info: Shared<'a, FsInfo>,
    /// Btree node size, 512-byte sectors.
    node_sectors: u32,
    /// IO clocks (read, write), `bch2_current_io_time()`.
    pub io_clock: [AtomicU64; 2],
    /// The last accounting `bversion` handed out (low 64 bits).
    acct_version: AtomicU64,
    /// The accounting counters in memory (`c->accounting`), as the atomic
    /// trigger keeps them.
    mem: Mutex<AccountingDeltas>,
    /// Node pointer changes recorded by [`NodePtrTap`], for
    /// [`node_ptrs_catch_up`](Self::node_ptrs_catch_up).
    node_ptrs: Mutex<NodePtrs>,
    /// Set once a change is queued in `node_ptrs.pending`, cleared by the
    /// catch-up before it takes them: commits with nothing to catch up on
    /// take no lock.
    node_ptrs_queued: AtomicBool,
    /// The allocator's open buckets.
    pub open_buckets: Option<Shared<'a, dyn OpenBuckets + Send>>,
    /// Buckets a transaction left empty with `need_inc_gen`: their gen is
    /// bumped by [`after_commit`](Self::after_commit).
    gen_bumps: Mutex<Vec<Bpos>>,
    /// Set once a bucket is queued in `gen_bumps`.
    gen_bumps_queued: AtomicBool,
    /// A replicas accounting counter was created: the superblock's
    /// replicas section may need an entry ([`take_sb_marks`](Self::take_sb_marks)).
    sb_replicas_pending: AtomicBool,
    /// Device pointers (device, sector) of nodes pointed to since the last
    /// [`take_sb_marks`](Self::take_sb_marks): the members' btree bitmaps
    /// may need their bits.
    sb_new_node_ptrs: Mutex<Vec<(u8, u64)>>,
    /// Set once a pointer is queued in `sb_new_node_ptrs`.
    sb_new_node_ptrs_queued: AtomicBool,
    /// Off: the hooks do nothing ([`set_enabled`](Self::set_enabled)).
    enabled: AtomicBool,
}

/// What the node pointer bookkeeping keeps: every interior key and root
/// pointer (to know the old key of a change) and the changes not yet
/// triggered.
struct NodePtrs {
    /// Interior keys by (btree, level of the key, position), sorted.
    known: Vec<((u8, u8, Bpos), BkeyI)>,
    /// Root pointer per btree: (level of the key = root level + 1, key).
    roots: Vec<Option<(u8, BkeyI)>>,
    /// (btree, key level, old, new) not triggered yet.
    pending: Vec<(u8, u8, Option<BkeyI>, Option<BkeyI>)>,
}

/// Whether `a` and `b` are the same key (position and value).
fn same_key(a: Option<&BkeyI>, b: Option<&BkeyI>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a.k.p == b.k.p && a.v[..] == b.v[..])
}

fn clone_key(k: &BkeyI) -> Result<BkeyI, Errno> {
    bkey_i(&k.k, &k.v).map_err(|_| Errno::ENOMEM)
}

/// The device pointers (device, sector) of node pointer `k`.
fn key_ptrs(k: &BkeyI) -> impl Iterator<Item = (u8, u64)> + '_ {
    use crate::format::val::extent::{ptrs_start, ExtentEntries, ExtentEntry};
    let v = ptrs_start(k.k.key_type).and_then(|start| k.v.get(start..)).unwrap_or(&[]);
    ExtentEntries::new(v).filter_map(|e| match e {
        Ok(ExtentEntry::Ptr(p)) => Some((p.dev, p.offset)),
        _ => None,
    })
}

/// The first device pointer (device, sector) of node pointer `k`.
fn first_ptr(k: &BkeyI) -> Option<(u8, u64)> {
    key_ptrs(k).next()
}

fn view(k: &BkeyI) -> (&Bkey, &[u8]) {
    (&k.k, &k.v)
}

/// The key at exactly `pos` as this transaction sees it: its own newest
/// update there, else the btree's (`BTREE_ITER_with_updates` on a slot).
///
/// Errors: those of [`BtreeTrans::get`].
pub fn peek_slot_with_updates(trans: &mut BtreeTrans<'_>, btree: BtreeId, pos: Bpos) -> Result<Option<BkeyI>, BchError> {
    if let Some(u) = trans.pending_at(btree as u8, pos) {
        if u.k.k.is_deleted() {
            return Ok(None);
        }
        return Ok(Some(clone_key(&u.k)?));
    }
    Ok(trans.get(btree, pos)?.filter(|k| !k.k.is_deleted()))
}

impl<'a> FsTriggers<'a> {
    /// Triggers for the filesystem `info` describes; the accounting
    /// versions handed out start above `acct_version` (the newest
    /// `bversion` of the accounting keys on disk, or the journal sequence
    /// number shifted as C's `journal_pos_to_bversion()`).
    ///
    /// Errors: `ENOMEM`.
    pub fn new(info: impl Into<Shared<'a, FsInfo>>, acct_version: u64) -> Result<Self, Errno> {
        let info: Shared<'a, FsInfo> = info.into();
        let node_sectors = info.node_bytes / 512;
        let mut roots = Vec::new();
        for _ in 0..crate::journal::NR_BTREES {
            roots.push(None)?;
        }
        Ok(FsTriggers {
            info,
            node_sectors,
            io_clock: [AtomicU64::new(0), AtomicU64::new(0)],
            acct_version: AtomicU64::new(acct_version),
            mem: Mutex::new(AccountingDeltas::new())?,
            node_ptrs: Mutex::new(NodePtrs { known: Vec::new(), roots, pending: Vec::new() })?,
            node_ptrs_queued: AtomicBool::new(false),
            open_buckets: None,
            gen_bumps: Mutex::new(Vec::new())?,
            gen_bumps_queued: AtomicBool::new(false),
            sb_replicas_pending: AtomicBool::new(false),
            sb_new_node_ptrs: Mutex::new(Vec::new())?,
            sb_new_node_ptrs_queued: AtomicBool::new(false),
            enabled: AtomicBool::new(true),
        })
    }

    /// What the superblock's marks may lack since the last call: whether a
    /// replicas counter was created, and the device pointers (device,
    /// sector) of nodes pointed to ([`crate::sb_marks::sb_mark_new`] marks
    /// them).  C marks at the same points: `bch2_accounting_update_sb_one()`
    /// when a counter is created, `bch2_dev_btree_bitmap_mark()` when a
    /// node is allocated.
    pub fn take_sb_marks(&self) -> (bool, Vec<(u8, u64)>) {
        let ptrs = match self.sb_new_node_ptrs_queued.swap(false, AcqRel) {
            true => core::mem::take(&mut *self.sb_new_node_ptrs.lock()),
            false => Vec::new(),
        };
        (self.sb_replicas_pending.swap(false, Relaxed), ptrs)
    }

    /// Records the device pointers of node pointer `k` for
    /// [`take_sb_marks`](Self::take_sb_marks).
    fn sb_note_node_ptr(&self, k: &BkeyI) -> Result<(), Errno> {
        let mut v = self.sb_new_node_ptrs.lock();
        for p in key_ptrs(k) {
            v.push(p)?;
            self.sb_new_node_ptrs_queued.store(true, Release);
        }
        Ok(())
    }

    /// Turns the [`BtreeTriggers`] hooks on or off (on when made): off,
    /// commits run no trigger (`BTREE_TRIGGER_norun`, journal replay).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Relaxed);
    }

    /// The accounting counters in memory, normalized (a copy).
    ///
    /// Errors: `ENOMEM`.
    pub fn accounting_mem(&self) -> Result<AccountingDeltas, Errno> {
        let mut out = AccountingDeltas::new();
        out.merge(&self.mem.lock())?;
        out.normalize();
        Ok(out)
    }

    /// Seeds the in-memory counters with what the accounting btree holds at
    /// mount (`bch2_accounting_read()`).
    ///
    /// Errors: `ENOMEM`.
    pub fn accounting_mem_add(&self, pos: Bpos, d: [i64; ACCOUNTING_MAX_COUNTERS], nr: u8) -> Result<(), Errno> {
        let mut m = self.mem.lock();
        m.add_raw_bounded(pos, d, nr)
    }

    fn ctx(&self) -> TriggerCtx<'_> {
        TriggerCtx { devs: &self.info.devs, btree_node_sectors: self.node_sectors, bucket_gen: None }
    }

    fn bucket_size(&self, dev: u64) -> u32 {
        usize::try_from(dev)
            .ok()
            .and_then(|d| self.info.devs.get(d).copied().flatten())
            .map_or(0, |d| d.bucket_size)
    }

    /// Applies `out` (from a key trigger or the alloc trigger) through
    /// `trans`.
    fn apply(&self, trans: &mut BtreeTrans<'_>, out: &mut DerivedUpdates) -> Result<(), BchError> {
        if !out.reflink.is_empty() {
            // Indirect extents' refcounts (`__trigger_reflink_p()`): not yet.
            return Err(Errno::EOPNOTSUPP.into());
        }
        for r in out.buckets.iter() {
            self.alloc_mod(trans, r.bucket, |a| match mark_pointer(a, r) {
                Err(e) => {
                    log::err!("{} for {}:{} from key at {}", e, r.bucket.inode, r.bucket.offset, r.key_pos);
                    if r.sectors > 0 {
                        Err(Errno::EUCLEAN.into())
                    } else {
                        Ok(())
                    }
                }
                Ok(()) => Ok(()),
            })?;
        }
        // C runs every overwrite trigger of a transaction before the
        // insert triggers (`run_btree_triggers()`): a deletion never wins
        // over an insert at the same position queued in the same
        // transaction (a key cut at its back keeps its pointer, so its new
        // piece's backpointer is where the old one was).
        for bp in out.backpointers.iter() {
            if !bp.insert && pending_live(trans, BtreeId::Backpointers, bp.pos) {
                continue;
            }
            trans.update_buffered(BtreeId::Backpointers, bp.to_key()?)?;
        }
        for b in out.bits.iter() {
            if b.btree == BtreeId::Freespace {
                freespace_mod(trans, b.pos, b.set)?;
            } else if crate::btree::write_buffer::btree_uses_write_buffer(b.btree as u8) {
                trans.update_buffered(b.btree, b.to_key()?)?;
            } else {
                trans.update(b.btree, b.to_key()?)?;
            }
        }
        for &(bucket, gen) in out.bucket_gens.iter() {
            let (pos, off) = alloc_gens_pos(bucket);
            let mut g = match peek_slot_with_updates(trans, BtreeId::BucketGens, pos)? {
                Some(k) if k.k.key_type == KeyType::BucketGens as u8 => BucketGens::decode(&k.v),
                _ => BucketGens::decode(&[]),
            };
            if let Some(x) = g.gens.get_mut(off) {
                *x = gen;
            }
            trans.update(BtreeId::BucketGens, bucket_gens_key(pos, &g)?)?;
        }
        out.accounting.normalize();
        for &(pos, d, nr) in out.accounting.entries().iter() {
            let acc = DiskAccountingPos::from_bpos(pos).ok_or(Errno::EINVAL)?;
            let mut sum = d;
            let mut n = usize::from(nr).max(acc.nr_counters());
            if let Some(k) = peek_slot_with_updates(trans, BtreeId::Accounting, pos)? {
                let (cur, cn) = accounting_val_decode(&k.v);
                for (s, c) in sum.iter_mut().zip(cur.iter()) {
                    *s = s.wrapping_add(*c);
                }
                n = n.max(cn);
            }
            let n = n.clamp(1, ACCOUNTING_MAX_COUNTERS);
            let lo = self.acct_version.fetch_add(1, Relaxed) + 1;
            let (k, v) = accounting_key_encode(&acc, &sum[..n], BVersion { hi: 0, lo })?;
            // A sum of zero stays as a key (C keeps zeroed counters too):
            // its journal copy is a delta with this version, which a
            // deletion could not carry.
            trans.update(BtreeId::Accounting, BkeyI { k, v })?;
        }
        Ok(())
    }

    /// Changes the alloc key of `bucket` in `trans` by `f` and runs the
    /// alloc trigger on the change at once (`bch2_trans_start_alloc_update()`
    /// then `bch2_trigger_alloc()`): the trigger edits the new value (data
    /// type, IO times, `need_inc_gen`/`need_discard`, gen bump) and its
    /// index updates (freespace, need_discard, lru, `bucket_gens`) and
    /// `dev_data_type` counters are queued.  The old value is what the
    /// transaction sees now (its own earlier update of the bucket, else the
    /// btree's), so several changes of one bucket in one transaction
    /// compose (C runs the alloc triggers once, last, on the final value:
    /// the result is the same except for a bucket filled and emptied in the
    /// same transaction, whose gen this bumps).
    ///
    /// Alloc keys must be changed through here: the alloc btree's own
    /// [`BtreeTriggers::trans_trigger`] does nothing.
    ///
    /// Errors: `EOPNOTSUPP` for an alloc key older than `alloc_v4`, those of
    /// the lookups and updates.
    pub fn alloc_mod(
        &self,
        trans: &mut BtreeTrans<'_>,
        bucket: Bpos,
        f: impl FnOnce(&mut AllocV4) -> Result<(), BchError>,
    ) -> Result<(), BchError> {
        self.alloc_mod_inner(trans, bucket, false, f)
    }

    fn alloc_mod_inner(
        &self,
        trans: &mut BtreeTrans<'_>,
        bucket: Bpos,
        bump: bool,
        f: impl FnOnce(&mut AllocV4) -> Result<(), BchError>,
    ) -> Result<(), BchError> {
        let old = match peek_slot_with_updates(trans, BtreeId::Alloc, bucket)? {
            Some(k) if k.k.key_type == KeyType::AllocV4 as u8 => AllocV4::decode(&k.v),
            Some(_) => return Err(Errno::EOPNOTSUPP.into()),
            None => AllocV4::default(),
        };
        let mut new = old;
        f(&mut new)?;
        let actx = AllocTriggerCtx {
            bucket_size: self.bucket_size(bucket.inode),
            io_time_now: [self.io_clock[0].load(Relaxed), self.io_clock[1].load(Relaxed)],
            // A bucket emptied here may be refilled later in the same
            // transaction (a piece of a cut extent inserted after the
            // deletion of the whole): C runs the alloc trigger once on the
            // final value.  Here the gen bump waits for after_commit().
            bucket_is_open: !bump || self.open_buckets.as_deref().is_some_and(|o| o.is_open(bucket)),
            invalidate: false,
        };
        let mut out = DerivedUpdates::new();
        trigger_alloc(bucket, &old, &mut new, &actx, &mut out)?;
        if !bump && data_type_is_empty(new.data_type) && new.need_inc_gen() != 0 {
            let mut g = self.gen_bumps.lock();
            if !g.contains(&bucket) {
                g.push(bucket)?;
                self.gen_bumps_queued.store(true, Release);
            }
        }
        trans.update(BtreeId::Alloc, alloc_v4_key(bucket, &new)?)?;
        self.apply(trans, &mut out)
    }

    /// Adds `d` to the accounting counter `acc` in `trans`
    /// (`bch2_disk_accounting_mod()` outside a trigger).
    ///
    /// Errors: `EINVAL` (more counters than the kind has), those of the
    /// lookup and update.
    pub fn accounting_mod(&self, trans: &mut BtreeTrans<'_>, acc: &DiskAccountingPos, d: &[i64]) -> Result<(), BchError> {
        let mut out = DerivedUpdates::new();
        out.accounting.add(acc, d)?;
        self.apply(trans, &mut out)
    }

    /// Records the node pointers a volume has at mount (every interior key
    /// and every root), so that later changes know their old key.
    ///
    /// Errors: `EIO` (a node could not be read), `ENOMEM`.
    pub fn node_ptrs_load(&self, fs: &BtreeFs<'_>) -> Result<(), Errno> {
        use crate::btree::cache::{NodeLock, NodePtr};
        use crate::sync::SixLockType;
        let mut np = self.node_ptrs.lock();
        let mut stack: Vec<(u8, u8, BkeyI)> = Vec::new();
        for b in 0..crate::journal::NR_BTREES {
            let Some(r) = fs.root(b as u8) else { continue };
            let vlen = r.key.val_bytes().min(r.val.len());
            let k = bkey_i(&r.key, &r.val[..vlen])?;
            if let Some(slot) = np.roots.get_mut(b) {
                *slot = Some((r.level + 1, clone_key(&k)?));
            }
            stack.push((b as u8, r.level, k))?;
        }
        // (btree, level of the node, pointer to it): read interior nodes.
        while let Some((b, level, k)) = stack.pop() {
            if level == 0 {
                continue;
            }
            let p = NodePtr { btree: b, level, key: &k.k, val: &k.v };
            let n = fs.cache.get_node(&*fs.dev, &fs.info, p, k.k.p).map_err(|e| e.errno())?;
            let g = NodeLock::lock(n, SixLockType::Read);
            for i in 0..g.len() {
                let Some((ck, cv)) = g.key(i) else { continue };
                if ck.is_deleted() {
                    continue;
                }
                let ck = bkey_i(&ck, cv)?;
                insert_known(&mut np.known, (b, level, ck.k.p), clone_key(&ck)?)?;
                stack.push((b, level - 1, ck))?;
            }
        }
        Ok(())
    }

    /// Records a node pointer journal replay put into its node directly
    /// (`fs_rw::journal_replay_interior`; no trigger, the derived keys are
    /// in the journal): later changes of it know it as their old key.
    /// `level` is the level of the node holding it; a deleted key forgets
    /// the position.
    ///
    /// Errors: `ENOMEM`.
    pub fn node_ptr_replayed(&self, btree: u8, level: u8, k: &BkeyI) -> Result<(), Errno> {
        let mut np = self.node_ptrs.lock();
        let at = (btree, level, k.k.p);
        if let Ok(i) = np.known.binary_search_by(|e| e.0.cmp(&at)) {
            np.known[i..].rotate_left(1);
            np.known.pop();
        }
        if !k.k.is_deleted() {
            insert_known(&mut np.known, at, clone_key(k)?)?;
        }
        Ok(())
    }

    fn node_ptr_event(&self, entry_type: u8, btree: u8, level: u8, data: &[u8]) -> Result<(), Errno> {
        let kb: &[u8; crate::format::bkey::BKEY_BYTES] =
            data.get(..crate::format::bkey::BKEY_BYTES).and_then(|b| b.try_into().ok()).ok_or(Errno::EINVAL)?;
        let k = Bkey::from_bytes(kb);
        let vlen = k.val_bytes().min(data.len().saturating_sub(40));
        let new = bkey_i(&k, data.get(40..40 + vlen).ok_or(Errno::EINVAL)?)?;
        let mut np = self.node_ptrs.lock();
        if entry_type == EntryType::BtreeRoot as u8 {
            let key_level = level + 1;
            let slot = np.roots.get_mut(btree as usize).ok_or(Errno::EINVAL)?;
            let old = slot.take();
            *slot = Some((key_level, clone_key(&new)?));
            let old = old.map(|(_, k)| k);
            if old.as_ref().map_or(true, |o| first_ptr(o) != first_ptr(&new)) {
                self.sb_note_node_ptr(&new)?;
            }
            if old.as_ref().is_some_and(|o| only_sectors_written_differs(o, &new)) {
                // The root written again (see below).
                return Ok(());
            }
            np.pending.push((btree, key_level, old, Some(new)))?;
            self.node_ptrs_queued.store(true, Release);
            // Pointers a root change moves from one level to another are
            // paired by level: the old root's pointer at its level.
            return Ok(());
        }
        let at = (btree, level, new.k.p);
        let i = np.known.binary_search_by(|e| e.0.cmp(&at));
        let old = match i {
            Ok(i) => {
                np.known[i..].rotate_left(1);
                np.known.pop().map(|e| e.1)
            }
            Err(_) => None,
        };
        if !new.k.is_deleted() {
            insert_known(&mut np.known, at, clone_key(&new)?)?;
        }
        let new = if new.k.is_deleted() { None } else { Some(new) };
        if let Some(n) = new.as_ref() {
            if old.as_ref().map_or(true, |o| first_ptr(o) != first_ptr(n)) {
                self.sb_note_node_ptr(n)?;
            }
        }
        if let (Some(o), Some(n)) = (&old, &new) {
            if only_sectors_written_differs(o, n) {
                // A reachable node written again: C updates the parent
                // pointer without triggers (`bch2_btree_node_update_key()`
                // with `skip_triggers`).  Nothing derived depends on
                // `sectors_written`, and re-marking would dirty the last
                // leaves of alloc, backpointers, lru... at every node
                // write, which then never settles.
                return Ok(());
            }
        }
        if old.is_some() || new.is_some() {
            np.pending.push((btree, level, old, new))?;
            self.node_ptrs_queued.store(true, Release);
        }
        Ok(())
    }

    /// What follows each commit of a filesystem with these triggers:
    /// [`node_ptrs_catch_up`](Self::node_ptrs_catch_up), and the gen bump
    /// of buckets the commits left empty (`bch2_trigger_alloc()`'s
    /// `need_inc_gen` handling, delayed to when the transaction's final
    /// value is known), in transactions of their own.
    ///
    /// Errors: those of the commits.
    pub fn after_commit(&self, fs: &BtreeFs<'_>) -> Result<(), Errno> {
        for _ in 0..64 {
            self.node_ptrs_catch_up(fs)?;
            if !self.gen_bumps_queued.swap(false, AcqRel) {
                return Ok(());
            }
            let bumps = core::mem::take(&mut *self.gen_bumps.lock());
            if bumps.is_empty() {
                return Ok(());
            }
            // In batches, as the discards commit.
            for batch in bumps.chunks(ALLOC_COMMIT_BUCKETS) {
                crate::btree::commit_do(fs, CommitFlags { no_merge: true, ..Default::default() }, |t| {
                    for &b in batch.iter() {
                        self.alloc_mod_inner(t, b, true, |_| Ok(()))?;
                    }
                    Ok(())
                })?;
            }
        }
        Err(Errno::EIO)
    }

    /// Prints the triggers' state: the next accounting version, the node
    /// pointers known and waiting, the gen bumps waiting, and the
    /// in-memory accounting counters.
    pub fn to_text(&self, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
        writeln!(f, "accounting version next: {}", self.acct_version.load(Relaxed) + 1)?;
        {
            let np = self.node_ptrs.lock();
            let roots = np.roots.iter().filter(|r| r.is_some()).count();
            writeln!(f, "node pointers: {} interior keys, {} roots, {} changes waiting", np.known.len(), roots, np.pending.len())?;
            for (b, level, old, new) in np.pending.iter() {
                let show = |k: &Option<BkeyI>| k.as_ref().map_or(Bpos::pos(0, 0), |k| k.k.p);
                writeln!(f, "  btree {} level {}: {} -> {}", crate::format::bkey::BtreeIdName(u32::from(*b)), level, show(old), show(new))?;
            }
        }
        {
            let g = self.gen_bumps.lock();
            writeln!(f, "gen bumps waiting: {}", g.len())?;
        }
        let m = self.mem.lock();
        writeln!(f, "accounting in memory: {} counters", m.len())?;
        for (p, d, n) in m.entries().iter() {
            f.write_str("  ")?;
            crate::format::val::misc::fmt_accounting_pos(f, &crate::format::val::misc::AccountingPos::from_bpos(*p))?;
            writeln!(f, " {:?}", &d[..usize::from(*n).min(ACCOUNTING_MAX_COUNTERS)])?;
        }
        Ok(())
    }

    /// The device pointers (device, sector) of every btree node the
    /// bookkeeping knows (interior keys and roots): what the members'
    /// `btree_allocated_bitmap` must cover.
    ///
    /// Errors: `ENOMEM`.
    pub fn node_ptr_sectors(&self) -> Result<Vec<(u8, u64)>, Errno> {
        let np = self.node_ptrs.lock();
        let mut out = Vec::new();
        let keys = np.known.iter().map(|e| &e.1).chain(np.roots.iter().filter_map(|r| r.as_ref().map(|r| &r.1)));
        for k in keys {
            for p in key_ptrs(k) {
                out.push(p)?;
            }
        }
        Ok(out)
    }

    /// Whether node pointer changes wait for
    /// [`node_ptrs_catch_up`](Self::node_ptrs_catch_up).
    pub fn node_ptrs_pending(&self) -> bool {
        self.node_ptrs_queued.load(Acquire)
    }

    /// Runs the triggers of the node pointers interior updates inserted,
    /// replaced or deleted since the last call (alloc, backpointers and
    /// accounting of btree nodes: what `bch2_btree_update_nodes_written()`
    /// does through `bch2_trans_mark_new_node()`/`_old_node()` in C), in
    /// transactions of their own, until none is left (those transactions
    /// may split nodes in turn).
    ///
    /// Errors: those of the commits.
    pub fn node_ptrs_catch_up(&self, fs: &BtreeFs<'_>) -> Result<(), Errno> {
        for _ in 0..64 {
            if !self.node_ptrs_queued.swap(false, AcqRel) {
                return Ok(());
            }
            let pending = core::mem::take(&mut self.node_ptrs.lock().pending);
            if pending.is_empty() {
                return Ok(());
            }
            // A node made and freed again since the last catch-up: its
            // pointer's insert and deletion go in separate transactions,
            // in order (in one, the insert would win, see `apply`).
            let mut start = 0;
            while start < pending.len() {
                let mut end = start + 1;
                while end < pending.len() && !pending[start..end].iter().any(|e| same_key(e.3.as_ref(), pending[end].2.as_ref())) {
                    end += 1;
                }
                let group = &pending[start..end];
                crate::btree::commit_do(fs, CommitFlags { no_merge: true, ..Default::default() }, |t| {
                    // Not through the btree write buffer (C buffers
                    // these too): a node's backpointer inserted only at
                    // the next flush lands in a leaf already written, and
                    // with small nodes the writes, compactions and
                    // pointer changes fed each other without end.
                    t.write_buffer_bypass = true;
                    let mut out = DerivedUpdates::new();
                    for (b, level, old, new) in group.iter() {
                        run_triggers(*b, *level, old.as_ref().map(view), new.as_ref().map(view), true, &self.ctx(), &mut out)?;
                    }
                    self.apply(t, &mut out)
                })?;
                start = end;
            }
        }
        Err(Errno::EIO)
    }
}

/// Sets or clears the freespace entry of the bucket at `pos` (the start of
/// its size-1 range), `bch2_btree_bit_mod()` on the freespace btree.  C's
/// freespace keys may cover runs of buckets (`bch2_dev_freespace_init()`
/// writes one key per run): clearing one bucket cuts the key covering it
/// into the parts before and after.  Done here rather than through
/// [`BtreeTrans::update`]'s extent overwrite, which cannot cut `set` keys
/// yet.
///
/// Errors: those of the lookups, `ENOMEM`, `EINVAL` at the end of the range.
fn freespace_mod(trans: &mut BtreeTrans<'_>, pos: Bpos, set: bool) -> Result<(), BchError> {
    let start = pos.offset;
    let end = start.checked_add(1).ok_or(Errno::EINVAL)?;
    let it = trans.iter(BtreeId::Freespace, Bpos::new(pos.inode, end, 0), false)?;
    trans.iter_with_updates(it, true);
    let cover = trans
        .iter_peek(it)?
        .filter(|x| x.k.p.inode == pos.inode && x.k.key_type == KeyType::Set as u8 && x.k.start_offset() <= start);
    let fs = BtreeId::Freespace as u8;
    let set_key = |s: u64, e: u64| -> Result<BkeyI, BchError> {
        let mut k = Bkey::new(KeyType::Set, Bpos::new(pos.inode, e, 0), 0);
        k.size = u32::try_from(e - s).map_err(|_| Errno::EINVAL)?;
        Ok(BkeyI { k, v: Vec::new() })
    };
    match (cover, set) {
        (Some(_), true) | (None, false) => Ok(()),
        (None, true) => trans.push_update(fs, 0, set_key(start, end)?),
        (Some(x), false) => {
            let (xs, xe) = (x.k.start_offset(), x.k.p.offset);
            if xs < start {
                trans.push_update(fs, 0, set_key(xs, start)?)?;
            }
            if end < xe {
                trans.push_update(fs, 0, set_key(end, xe)?)
            } else {
                trans.push_update(fs, 0, BkeyI { k: Bkey::new(KeyType::Deleted, x.k.p, 0), v: Vec::new() })
            }
        }
    }
}

/// Whether a later update of this transaction at `new`'s position
/// replaces it: only the update that lands runs its trigger (C replaces
/// the queued update in place before the triggers run,
/// `bch2_trans_update_by_path()`), else the old key would be counted out
/// twice.
fn superseded(trans: &BtreeTrans<'_>, btree: u8, new: &BkeyI) -> bool {
    trans
        .pending_at(btree, new.k.p)
        .is_some_and(|u| u.k.k.key_type != new.k.key_type || u.k.k.size != new.k.size || u.k.v[..] != new.v[..])
}

/// Whether this transaction has queued a live key at `pos`.
fn pending_live(trans: &BtreeTrans<'_>, btree: BtreeId, pos: Bpos) -> bool {
    trans.pending_at(btree as u8, pos).is_some_and(|u| !u.k.k.is_deleted())
}

/// Whether two `btree_ptr_v2` keys differ in nothing but
/// `sectors_written` (bytes 16..18 of the value).
fn only_sectors_written_differs(a: &BkeyI, b: &BkeyI) -> bool {
    a.k == b.k
        && a.k.key_type == KeyType::BtreePtrV2 as u8
        && a.v.len() == b.v.len()
        && a.v.len() >= crate::format::val::extent::BTREE_PTR_V2_BYTES
        && a.v[..16] == b.v[..16]
        && a.v[18..] == b.v[18..]
}

fn insert_known(v: &mut Vec<((u8, u8, Bpos), BkeyI)>, at: (u8, u8, Bpos), k: BkeyI) -> Result<(), Errno> {
    match v.binary_search_by(|e| e.0.cmp(&at)) {
        Ok(i) => v[i].1 = k,
        Err(i) => {
            v.push((at, k))?;
            v[i..].rotate_right(1);
        }
    }
    Ok(())
}

impl BtreeTriggers for FsTriggers<'_> {
    fn trans_trigger(
        &self,
        trans: &mut BtreeTrans<'_>,
        btree: u8,
        level: u8,
        old: Option<&BkeyI>,
        new: &BkeyI,
    ) -> Result<(), BchError> {
        if !self.enabled.load(Relaxed) {
            return Ok(());
        }
        if level == 0 && superseded(trans, btree, new) {
            return Ok(());
        }
        if level == 0 && btree == BtreeId::Alloc as u8 {
            // Alloc keys change through alloc_mod(), which runs the alloc
            // trigger itself.
            return Ok(());
        }
        if !crate::alloc::buckets::btree_has_triggers(btree, level) {
            return Ok(());
        }
        let new_v = if new.k.is_deleted() { None } else { Some(view(new)) };
        let old_v = old.filter(|k| !k.k.is_deleted()).map(view);
        let mut out = DerivedUpdates::new();
        run_triggers(btree, level, old_v, new_v, true, &self.ctx(), &mut out)?;
        self.apply(trans, &mut out)
    }

    fn has_trans_trigger(&self, btree: u8, level: u8) -> bool {
        // Alloc keys change through alloc_mod(), which runs the alloc
        // trigger itself.
        self.enabled.load(Relaxed) && (level > 0 || btree != BtreeId::Alloc as u8) && crate::alloc::buckets::btree_has_triggers(btree, level)
    }

    fn has_atomic_trigger(&self, btree: u8, _level: u8) -> bool {
        btree == BtreeId::Alloc as u8 || btree == BtreeId::Accounting as u8
    }

    fn atomic_trigger(&self, btree: u8, _level: u8, old: Option<(Bkey, &[u8])>, new: (Bkey, &[u8]), journal_seq: u64) {
        if !self.enabled.load(Relaxed) {
            return;
        }
        if btree == BtreeId::Alloc as u8 {
            // The allocator's bucket table follows every alloc key written
            // (C: the key cache and `buckets_waiting_for_journal`).
            if let Some(ob) = self.open_buckets.as_deref() {
                let a = if new.0.key_type == KeyType::AllocV4 as u8 { AllocV4::decode(new.1) } else { AllocV4::default() };
                ob.bucket_updated(new.0.p, &a, journal_seq);
            }
            return;
        }
        if btree != BtreeId::Accounting as u8 {
            return;
        }
        // bch2_accounting_mem_mod_locked(): the counters move by new - old.
        let (mut d, n) = if new.0.key_type == KeyType::Accounting as u8 { accounting_val_decode(new.1) } else { ([0; ACCOUNTING_MAX_COUNTERS], 0) };
        let mut nr = n;
        if let Some((ok, ov)) = old.filter(|(k, _)| k.key_type == KeyType::Accounting as u8) {
            let (o, on) = accounting_val_decode(ov);
            for (x, y) in d.iter_mut().zip(o.iter()) {
                *x = x.wrapping_sub(*y);
            }
            nr = nr.max(on);
            let _ = ok;
        }
        if nr == 0 {
            return;
        }
        let created = !old.is_some_and(|(k, _)| k.key_type == KeyType::Accounting as u8);
        if created && matches!(DiskAccountingPos::from_bpos(new.0.p), Some(DiskAccountingPos::Replicas(_))) {
            self.sb_replicas_pending.store(true, Relaxed);
        }
        let mut m = self.mem.lock();
        if m.add_raw_bounded(new.0.p, d, nr as u8).is_err() {
            log::err_ratelimited!("accounting: out of memory for the in-memory counters");
        }
    }
}

/// A [`JournalSink`] in front of the journal that records the node
/// pointer changes interior updates journal (`btree_keys` entries above
/// level 0, `btree_root` entries) for [`FsTriggers::node_ptrs_catch_up`],
/// and passes everything on.
pub struct NodePtrTap<'a> {
    /// The journal.
    pub inner: Shared<'a, dyn JournalSink + Send>,
    /// Where the changes are recorded.
    pub triggers: Shared<'a, FsTriggers<'a>>,
}

impl NodePtrTap<'_> {
    /// Whether an entry changes a node pointer: `btree_keys` above the
    /// leaves, or `btree_root`.
    fn is_ptr_change(entry_type: u8, level: u8) -> bool {
        (entry_type == EntryType::BtreeKeys as u8 && level > 0) || entry_type == EntryType::BtreeRoot as u8
    }
}

impl JournalSink for NodePtrTap<'_> {
    fn res_get(&self, u64s: u32, flags: ResFlags) -> Result<JournalRes, BchError> {
        self.inner.res_get(u64s, flags)
    }

    fn res_get_with(&self, u64s: u32, flags: ResFlags, entries: &[u8]) -> Result<JournalRes, BchError> {
        // Node pointer changes come through res_add_entry (interior
        // updates); entries given here (commits of leaf keys) pass, unless
        // one is a pointer change after all: then entry by entry.
        let ptr_change = crate::format::jset::iter_entries(entries, 0)
            .any(|e| e.map_or(true, |e| Self::is_ptr_change(e.ty, e.level)));
        match ptr_change {
            true => crate::journal::res::res_get_adding(self, u64s, flags, entries),
            false => self.inner.res_get_with(u64s, flags, entries),
        }
    }

    fn res_add_entry(&self, res: &mut JournalRes, entry_type: u8, btree_id: u8, level: u8, data: &[u8]) -> Result<(), Errno> {
        self.inner.res_add_entry(res, entry_type, btree_id, level, data)?;
        if Self::is_ptr_change(entry_type, level) {
            if let Err(e) = self.triggers.node_ptr_event(entry_type, btree_id, level, data) {
                log::err_ratelimited!("node pointer trigger bookkeeping: {e}");
            }
        }
        Ok(())
    }

    fn res_put(&self, res: JournalRes) {
        self.inner.res_put(res)
    }

    fn pin_get(&self, seq: u64, owner: PinOwner) {
        self.inner.pin_get(seq, owner)
    }

    fn pin_put(&self, seq: u64, owner: PinOwner) {
        self.inner.pin_put(seq, owner)
    }

    fn flush_seq(&self, seq: u64) -> Result<(), Errno> {
        self.inner.flush_seq(seq)
    }

    fn cur_seq(&self) -> u64 {
        self.inner.cur_seq()
    }
}
