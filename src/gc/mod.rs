// SPDX-License-Identifier: GPL-2.0
//! Recomputing the derived state from scratch and checking it against
//! what is stored: GC's mark phase (`btree_gc.c`: `bch2_gc_btrees()`,
//! `bch2_mark_superblocks()`, `bch2_gc_alloc_done()`,
//! `bch2_gc_accounting_done()`) and the allocation checks of fsck
//! (`alloc_background.c`'s `bch2_check_alloc_info()`,
//! `bch2_check_alloc_to_lru_refs()`; `backpointers.c`'s
//! `bch2_check_extents_to_backpointers()`).
//!
//! [`StoredState::read`] collects what a volume holds: `alloc`,
//! `backpointers`, `accounting` (journal deltas folded in, as the read
//! side's overlay does), `freespace`, `need_discard`, `lru`,
//! `bucket_gens`, `rebalance_work`, `deleted_inodes`, `subvolume_children`
//! and the refcounts of indirect extents.
//! [`Recomputed::from_scratch`] walks every key of every btree and every
//! btree node pointer (interior keys and the roots), runs the triggers
//! with no old key, marks the superblock and journal buckets, and derives
//! the bucket-indexed state from the corrected alloc keys, as C's GC then
//! fsck do.  [`check`] lists every difference as a [`Mismatch`].
//!
//! Only the device the volume was opened on is walked (`Fs` is
//! single-device).  Memory: a 64-byte `alloc_v4` per bucket twice (stored
//! and recomputed), plus the backpointers and the bucket-indexed entries.  Host and kernel: no recursion, the walk keeps an
//! explicit stack of at most a few nodes' pointers.

use core::fmt;

use crate::accounting::{accounting_val_decode, AccountingDeltas, DiskAccountingPos, ACCOUNTING_MAX_COUNTERS};
use crate::alloc::background::{
    alloc_data_type_set, alloc_index_updates, AllocBrief, BucketGens,
};
use crate::alloc::buckets::{
    is_unlinked_inode, mark_dev_sb, mark_metadata_bucket, mark_pointer, run_triggers, subvolume_children_pos, trigger_kind, MarkError, TriggerCtx, TriggerKind,
};
use crate::alloc::{BucketRef, DerivedUpdates, MetaMark};
use crate::btree::cache::NodePtr;
use crate::errcode::Errno;
use crate::format::bkey::{Bkey, BtreeId, BtreeIdName, KeyType, BTREE_ID_NR};
use crate::format::bpos::{Bpos, POS_MIN};
use crate::format::sb::Sb;
use crate::format::val::alloc::{AllocV4, Backpointer};
use crate::format::val::DevInfo;
use crate::platform::{BlockDev, Vec};

/// What a volume stores of the derived state.  Public so that tests (and
/// a future repair) can alter it before [`check`].
pub struct StoredState {
    /// The device walked.
    pub dev: u8,
    /// Its geometry.
    pub devinfo: DevInfo,
    /// `alloc_v4` of each bucket, indexed by bucket number (missing keys
    /// read as all zero, as `bch2_alloc_to_v4()` of a deleted key).
    pub alloc: Vec<AllocV4>,
    /// Backpointers, sorted by position.
    pub backpointers: Vec<(Bpos, Backpointer)>,
    /// Accounting counters, by position.
    pub accounting: AccountingDeltas,
    /// Freespace entries: each bucket position (with genbits) covered.
    pub freespace: Vec<Bpos>,
    /// need_discard entries.
    pub need_discard: Vec<Bpos>,
    /// lru entries.
    pub lru: Vec<Bpos>,
    /// bucket_gens entries by bucket number (0 where no key holds one).
    pub gens: Vec<u8>,
    /// Non-zero gens outside the device's buckets: (dev:bucket, gen).
    pub gens_out_of_range: Vec<(Bpos, u8)>,
    /// rebalance_work `set` entries (cookies excluded).
    pub rebalance_work: Vec<Bpos>,
    /// deleted_inodes entries.
    pub deleted_inodes: Vec<Bpos>,
    /// subvolume_children entries.
    pub subvolume_children: Vec<Bpos>,
    /// Indirect extents (`reflink_v`, `indirect_inline_data`), sorted:
    /// (first sector, end sector, stored refcount).
    pub reflink: Vec<(u64, u64, u64)>,
    /// The replicas entries the superblock lists (`replicas_v0`/`replicas`).
    pub sb_replicas: Vec<crate::accounting::ReplicasEntry>,
}

/// Everything recomputed from the keys.
pub struct Recomputed {
    /// Expected `alloc_v4` of each bucket: the stored value with GC's
    /// fields (gen, data_type, dirty/cached/stripe sectors, stripe)
    /// recomputed (`bch2_alloc_write_key()`).
    pub alloc: Vec<AllocV4>,
    /// Backpointers, sorted.
    pub backpointers: Vec<(Bpos, Backpointer)>,
    /// Accounting, normalised.
    pub accounting: AccountingDeltas,
    /// Freespace, need_discard, lru, rebalance_work, deleted_inodes
    /// entries, sorted.
    pub freespace: Vec<Bpos>,
    /// See `freespace`.
    pub need_discard: Vec<Bpos>,
    /// See `freespace`.
    pub lru: Vec<Bpos>,
    /// See `freespace`.
    pub rebalance_work: Vec<Bpos>,
    /// See `freespace`.
    pub deleted_inodes: Vec<Bpos>,
    /// See `freespace`.
    pub subvolume_children: Vec<Bpos>,
    /// Expected refcount of each of [`StoredState::reflink`]'s keys.
    pub reflink_refcounts: Vec<u64>,
    /// Inconsistencies met while marking (C's fsck errors from
    /// `bch2_bucket_ref_update()` and metadata marking).
    pub mark_errors: Vec<Mismatch>,
    /// Keys counted: (leaf keys, node pointers).
    pub nr_keys: (u64, u64),
}

/// One difference between what is stored and what the keys imply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// A bucket's alloc key (`alloc_key_*_wrong`).
    Alloc {
        /// dev:bucket.
        bucket: Bpos,
        /// What the keys imply.
        expected: AllocV4,
        /// What is stored.
        got: AllocV4,
    },
    /// A backpointer missing, extra or different.
    Backpointer {
        /// Position in the backpointers btree.
        pos: Bpos,
        /// What the keys imply.
        expected: Option<Backpointer>,
        /// What is stored.
        got: Option<Backpointer>,
    },
    /// An accounting counter (`accounting_mismatch`).
    Accounting {
        /// Position of the counter.
        pos: Bpos,
        /// What the keys imply.
        expected: [i64; ACCOUNTING_MAX_COUNTERS],
        /// What is stored.
        got: [i64; ACCOUNTING_MAX_COUNTERS],
        /// Counters compared.
        nr: u8,
    },
    /// A `set` entry missing (`expected`) or extra.
    Bit {
        /// Btree.
        btree: BtreeId,
        /// Position.
        pos: Bpos,
        /// Whether the entry should exist.
        expected: bool,
    },
    /// A bucket's generation in bucket_gens (`bucket_gens_key_wrong`).
    BucketGen {
        /// dev:bucket.
        bucket: Bpos,
        /// The alloc key's gen.
        expected: u8,
        /// The bucket_gens entry.
        got: u8,
    },
    /// A pointer or metadata mark the bucket refused.
    Mark {
        /// The reference.
        r: BucketRef,
        /// Why.
        err: MarkError,
    },
    /// A superblock/journal mark the bucket refused.
    MetaMark {
        /// The mark.
        m: MetaMark,
        /// Why.
        err: MarkError,
    },
    /// An indirect extent's refcount (`reflink_v_refcount_wrong`).
    Refcount {
        /// End position of the indirect extent (reflink btree).
        pos: Bpos,
        /// Reflink pointers referencing it.
        expected: u64,
        /// Stored refcount.
        got: u64,
    },
    /// A reflink pointer to a range with no indirect extent
    /// (`reflink_p_to_missing_reflink_v`).
    ReflinkMissing {
        /// The `reflink_p` key.
        key_pos: Bpos,
        /// Missing range, reflink btree sectors.
        start: u64,
        /// End of the missing range.
        end: u64,
    },
    /// A key its trigger refused (`EUCLEAN`: malformed value, pointer to
    /// a missing device; `EINVAL`: too many devices).
    BadKey {
        /// Btree.
        btree: u8,
        /// Level.
        level: u8,
        /// Position.
        pos: Bpos,
        /// The trigger's error.
        err: Errno,
    },
    /// An accounting counter whose replicas entry the superblock does not
    /// list (`accounting_replicas_not_marked`, `bch2_accounting_read()`).
    ReplicasNotMarked {
        /// Position of the counter.
        pos: Bpos,
    },
    /// A node pointer outside its member's `btree_allocated_bitmap`
    /// (`btree_bitmap_not_marked`, `bch2_check_btree_node_key()` in C's
    /// `bch2_gc_mark_key()`).
    BtreeBitmap {
        /// Btree.
        btree: u8,
        /// Level of the key.
        level: u8,
        /// Position of the key.
        pos: Bpos,
        /// Device.
        dev: u8,
        /// Sector of the node.
        sector: u64,
    },
    /// A key whose trigger is not implemented (stripes, reflink pointers).
    Unsupported {
        /// Btree.
        btree: u8,
        /// Position.
        pos: Bpos,
        /// Key type.
        key_type: u8,
    },
}

impl fmt::Display for Mismatch {
    /// In the words of C's fsck messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Alloc { bucket, expected, got } => {
                write!(f, "bucket {bucket} alloc key wrong: got {}, should be {}", AllocBrief(got), AllocBrief(expected))
            }
            Mismatch::Backpointer { pos, expected, got } => {
                let show = |f: &mut fmt::Formatter<'_>, b: &Option<Backpointer>| match b {
                    Some(b) => {
                        let k = Bkey::new(KeyType::Backpointer, *pos, 4);
                        crate::format::val::alloc::fmt_backpointer(f, &k, &b.encode(), None)
                    }
                    None => f.write_str("(none)"),
                };
                write!(f, "backpointer {pos}: got ")?;
                show(f, got)?;
                f.write_str(", should be ")?;
                show(f, expected)
            }
            Mismatch::Accounting { pos, expected, got, nr } => {
                f.write_str("accounting mismatch for ")?;
                crate::format::val::misc::fmt_accounting_pos(f, &crate::format::val::misc::AccountingPos::from_bpos(*pos))?;
                f.write_str(": got")?;
                for c in got.iter().take(*nr as usize) {
                    write!(f, " {c}")?;
                }
                f.write_str(" should be")?;
                for c in expected.iter().take(*nr as usize) {
                    write!(f, " {c}")?;
                }
                Ok(())
            }
            Mismatch::Bit { btree, pos, expected } => {
                write!(f, "{} entry {pos}", BtreeIdName(*btree as u32))?;
                if *btree == BtreeId::Lru {
                    // bch2_lru_pos_to_text()
                    let b = crate::alloc::background::u64_to_bucket(pos.offset);
                    write!(f, " (lru {} time {} bucket {}:{})", pos.inode >> 48, pos.inode & ((1 << 48) - 1), b.inode, b.offset)?;
                }
                f.write_str(if *expected { " missing" } else { " should not exist" })
            }
            Mismatch::BucketGen { bucket, expected, got } => {
                write!(f, "bucket {bucket} gen in bucket_gens wrong: got {got}, should be {expected}")
            }
            Mismatch::Mark { r, err } => write!(f, "{err}: {r}"),
            Mismatch::MetaMark { m, err } => {
                write!(f, "{err}: bucket {} ", m.bucket)?;
                crate::format::val::fmt_data_type(f, m.data_type)?;
                write!(f, " {} sectors", m.sectors)
            }
            Mismatch::Refcount { pos, expected, got } => {
                write!(f, "reflink key {pos} has wrong refcount: got {got}, should be {expected}")
            }
            Mismatch::ReflinkMissing { key_pos, start, end } => {
                write!(f, "pointer to missing indirect extent: reflink_p {key_pos}, missing range {start}-{end}")
            }
            Mismatch::BadKey { btree, level, pos, err } => {
                write!(f, "{} level {level} {pos}: trigger failed: {}", BtreeIdName(u32::from(*btree)), err.name())
            }
            Mismatch::ReplicasNotMarked { pos } => {
                f.write_str("accounting not marked in superblock replicas: ")?;
                crate::format::val::misc::fmt_accounting_pos(f, &crate::format::val::misc::AccountingPos::from_bpos(*pos))
            }
            Mismatch::BtreeBitmap { btree, level, pos, dev, sector } => write!(
                f,
                "btree ptr not marked in member info btree allocated bitmap: {} l={level} {pos} ptr {dev}:{sector}",
                BtreeIdName(u32::from(*btree)),
            ),
            Mismatch::Unsupported { btree, pos, key_type } => write!(
                f,
                "{} {pos}: no trigger for key type {} yet",
                BtreeIdName(u32::from(*btree)),
                KeyType::from_u8(*key_type).map_or("?", |t| t.name())
            ),
        }
    }
}

fn push<T>(v: &mut Vec<T>, x: T) -> Result<(), Errno> {
    v.push(x)?;
    Ok(())
}

fn sorted(mut v: Vec<Bpos>) -> Vec<Bpos> {
    crate::util::sort::sort(&mut v);
    v
}

impl StoredState {
    /// Reads the derived state `fs` stores.
    ///
    /// Errors: `EIO` (unreadable node), `EUCLEAN` (a device without
    /// geometry), `ENOMEM`.
    pub fn read<D: BlockDev>(fs: &crate::bcachefs::Fs<D>) -> Result<StoredState, Errno> {
        let c = fs.btree_ctx();
        let dev = c.info.dev_idx;
        let devinfo = c.info.devs.get(dev as usize).copied().flatten().ok_or(Errno::EUCLEAN)?;
        let nb = usize::try_from(devinfo.nbuckets).map_err(|_| Errno::EUCLEAN)?;
        let mut s = StoredState {
            dev,
            devinfo,
            alloc: Vec::new(),
            backpointers: Vec::new(),
            accounting: AccountingDeltas::new(),
            freespace: Vec::new(),
            need_discard: Vec::new(),
            lru: Vec::new(),
            gens: Vec::new(),
            gens_out_of_range: Vec::new(),
            rebalance_work: Vec::new(),
            deleted_inodes: Vec::new(),
            subvolume_children: Vec::new(),
            reflink: Vec::new(),
            sb_replicas: Vec::new(),
        };
        {
            let sb = Sb::parse(fs.sb_bytes()).map_err(|_| Errno::EUCLEAN)?;
            s.sb_replicas = crate::sb_marks::sb_replicas(&sb)?;
        }
        s.alloc.resize(nb, AllocV4::default())?;
        s.gens.resize(nb, 0)?;
        let in_dev = |p: &Bpos| p.inode == u64::from(dev);
        let mut it = fs.iter(BtreeId::Alloc, POS_MIN, false);
        while let Some(k) = it.next()? {
            if !in_dev(&k.k.p) || k.k.key_type != KeyType::AllocV4 as u8 {
                continue;
            }
            if let Some(slot) = usize::try_from(k.k.p.offset).ok().and_then(|i| s.alloc.get_mut(i)) {
                *slot = AllocV4::decode(&k.v);
            }
        }
        let mut it = fs.iter(BtreeId::Backpointers, POS_MIN, false);
        while let Some(k) = it.next()? {
            if let Some(bp) = Backpointer::decode(&k.v) {
                push(&mut s.backpointers, (k.k.p, bp))?;
            }
        }
        let mut it = fs.iter(BtreeId::Accounting, POS_MIN, false);
        while let Some(k) = it.next()? {
            let (d, n) = accounting_val_decode(&k.v);
            s.accounting.add_raw(k.k.p, d, n as u8)?;
        }
        s.accounting.normalize();
        let mut it = fs.iter(BtreeId::Freespace, POS_MIN, false);
        while let Some(k) = it.next()? {
            if k.k.key_type != KeyType::Set as u8 {
                continue;
            }
            let start = k.k.start_offset();
            // A merged key covers several buckets.  A range past the
            // device's buckets is kept as its first position only (an
            // entry that should not exist), so that a corrupt key cannot
            // make this loop run for 2^64 buckets.
            for o in start..k.k.p.offset {
                push(&mut s.freespace, Bpos::pos(k.k.p.inode, o))?;
                if (o & ((1 << 56) - 1)) >= devinfo.nbuckets {
                    break;
                }
            }
        }
        for (btree, out) in [
            (BtreeId::NeedDiscard, &mut s.need_discard),
            (BtreeId::Lru, &mut s.lru),
            (BtreeId::RebalanceWork, &mut s.rebalance_work),
            (BtreeId::DeletedInodes, &mut s.deleted_inodes),
            (BtreeId::SubvolumeChildren, &mut s.subvolume_children),
        ] {
            let mut it = fs.iter(btree, POS_MIN, false);
            while let Some(k) = it.next()? {
                if k.k.key_type == KeyType::Set as u8 {
                    push(out, k.k.p)?;
                }
            }
        }
        let mut it = fs.iter(BtreeId::Reflink, POS_MIN, false);
        while let Some(k) = it.next()? {
            if matches!(KeyType::from_u8(k.k.key_type), Some(KeyType::ReflinkV | KeyType::IndirectInlineData)) {
                let mut w = [0u8; 8];
                if let Some(r) = k.v.get(..8) {
                    w.copy_from_slice(r);
                }
                push(&mut s.reflink, (k.k.start_offset(), k.k.p.offset, u64::from_le_bytes(w)))?;
            }
        }
        let mut it = fs.iter(BtreeId::BucketGens, POS_MIN, false);
        while let Some(k) = it.next()? {
            if k.k.key_type != KeyType::BucketGens as u8 || !in_dev(&k.k.p) {
                continue;
            }
            let g = BucketGens::decode(&k.v);
            for (i, &gen) in g.gens.iter().enumerate() {
                let b = crate::alloc::background::bucket_gens_pos_to_alloc(k.k.p, i);
                let slot = if b.offset >= devinfo.first_bucket { usize::try_from(b.offset).ok().and_then(|i| s.gens.get_mut(i)) } else { None };
                match slot {
                    Some(slot) => *slot = gen,
                    None if gen != 0 => push(&mut s.gens_out_of_range, (b, gen))?,
                    None => {}
                }
            }
        }
        Ok(s)
    }
}

/// What [`walk_node_ptrs`] calls for each pointer: (level, key, value).
type NodePtrFn<'a> = dyn FnMut(u8, &Bkey, &[u8]) -> Result<(), Errno> + 'a;

/// Walks the interior nodes of `btree` below its root, calling `f(level,
/// key, value)` for every live pointer key (journal keys of that level
/// overlaid, as the read side's iterator does), the root's pointer
/// included at the root's level + 1.
fn walk_node_ptrs<D: BlockDev>(fs: &crate::bcachefs::Fs<D>, btree: u8, f: &mut NodePtrFn<'_>) -> Result<(), Errno> {
    let c = fs.btree_ctx();
    let Some(root) = c.roots.get(btree as usize).copied().flatten() else { return Ok(()) };
    let vlen = root.key.val_bytes().min(root.val.len());
    f(root.level + 1, &root.key, &root.val[..vlen])?;
    if root.level == 0 {
        return Ok(());
    }
    // (level of the node, its pointer key, the pointer's value)
    let mut stack: Vec<(u8, Bkey, Vec<u8>)> = Vec::new();
    let mut v0 = Vec::new();
    v0.extend_from_slice(&root.val[..vlen])?;
    stack.push((root.level, root.key, v0))?;
    let keys = c.keys;
    while let Some((level, key, val)) = stack.pop() {
        let ptr = NodePtr { btree, level, key: &key, val: &val };
        let node = c.cache.get(c.dev, c.info, ptr, key.p).map_err(|e| e.errno())?;
        let (mut i, mut j) = (0usize, keys.lower_bound(btree, level, node.min_key));
        let mut children: Vec<(u8, Bkey, Vec<u8>)> = Vec::new();
        loop {
            let bk = node.key(i);
            let jp = keys.get(j).filter(|k| k.btree == btree && k.level == level && k.pos <= node.max_key).map(|k| k.pos);
            // The next slot: the smaller of the node's and the journal's
            // next positions; a journal key wins at equal positions.
            let take_journal = match (&bk, jp) {
                (None, None) => break,
                (Some((bk, _)), Some(p)) => p <= bk.p,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            let (k, v) = if take_journal {
                if bk.as_ref().is_some_and(|(k, _)| Some(k.p) == jp) {
                    i += 1;
                }
                let end = keys.slot_end(j);
                let newest = keys.key(end.saturating_sub(1)).ok_or(Errno::EIO)?;
                j = end;
                newest
            } else {
                i += 1;
                bk.ok_or(Errno::EIO)?
            };
            if k.is_deleted() || (k.key_type != KeyType::BtreePtrV2 as u8 && k.key_type != KeyType::BtreePtr as u8) {
                continue;
            }
            f(level, &k, v)?;
            if level > 1 {
                let mut vv = Vec::new();
                vv.extend_from_slice(v)?;
                children.push((level - 1, k, vv))?;
            }
        }
        drop(node);
        // Children in reverse so that the walk goes left to right.
        while let Some(ch) = children.pop() {
            stack.push(ch)?;
        }
    }
    Ok(())
}

/// `gc_trigger_reflink_p_segment()` for every inserted reflink pointer
/// range: the references to each indirect extent of `keys` (sorted
/// `(start, end, refcount)`); ranges with no indirect extent are reported
/// in `errors`.
///
/// Errors: `ENOMEM`.
pub fn count_reflink_refs(
    keys: &[(u64, u64, u64)],
    refs: &[crate::alloc::ReflinkRef],
    errors: &mut Vec<Mismatch>,
) -> Result<Vec<u64>, Errno> {
    let mut counts: Vec<u64> = Vec::new();
    counts.resize(keys.len(), 0)?;
    for rr in refs.iter().filter(|rr| rr.delta > 0) {
        let mut idx = rr.start;
        let mut l = keys.partition_point(|e| e.1 <= idx);
        while idx < rr.end {
            let next = keys.get(l).map_or(rr.end, |e| e.0.min(rr.end));
            if idx < next {
                push(errors, Mismatch::ReflinkMissing { key_pos: rr.key_pos, start: idx, end: next })?;
                idx = next;
                continue;
            }
            let (Some(e), Some(c)) = (keys.get(l), counts.get_mut(l)) else { break };
            *c += 1;
            idx = e.1;
            l += 1;
        }
    }
    Ok(counts)
}

fn sub_bits(expected: &[Bpos], got: &[Bpos], btree: BtreeId, out: &mut Vec<Mismatch>) -> Result<(), Errno> {
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < got.len() {
        match (expected.get(i), got.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), b) if b.map_or(true, |b| a < b) => {
                push(out, Mismatch::Bit { btree, pos: *a, expected: true })?;
                i += 1;
            }
            (_, Some(b)) => {
                push(out, Mismatch::Bit { btree, pos: *b, expected: false })?;
                j += 1;
            }
            _ => break,
        }
    }
    Ok(())
}

impl Recomputed {
    /// GC's mark phase and the derivations of fsck's alloc checks, from
    /// the keys of `fs`; bucket gens, flags and IO times come from
    /// `stored` (`bch2_alloc_read()`).
    ///
    /// Errors: `EIO` (unreadable node), `ENOMEM`, `EUCLEAN` (malformed
    /// superblock).  Keys a trigger refuses are reported as
    /// [`Mismatch::Unsupported`] or [`Mismatch::BadKey`].
    pub fn from_scratch<D: BlockDev>(fs: &crate::bcachefs::Fs<D>, stored: &StoredState) -> Result<Recomputed, Errno> {
        let c = fs.btree_ctx();
        let d = stored.devinfo;
        let dev = stored.dev;
        let gen_of = |dv: u8, b: u64| -> Option<u8> {
            if dv != dev {
                return None;
            }
            stored.alloc.get(usize::try_from(b).ok()?).map(|a| a.gen)
        };
        let ctx = TriggerCtx { devs: &c.info.devs, btree_node_sectors: c.info.node_bytes / crate::platform::SECTOR_SIZE as u32, bucket_gen: Some(&gen_of) };
        let mut r = Recomputed {
            alloc: Vec::new(),
            backpointers: Vec::new(),
            accounting: AccountingDeltas::new(),
            freespace: Vec::new(),
            need_discard: Vec::new(),
            lru: Vec::new(),
            rebalance_work: Vec::new(),
            deleted_inodes: Vec::new(),
            subvolume_children: Vec::new(),
            reflink_refcounts: Vec::new(),
            mark_errors: Vec::new(),
            nr_keys: (0, 0),
        };
        // GC's buckets start with only the gen (bch2_gc_alloc_start() and
        // the alloc trigger's gc part).
        let mut gc: Vec<AllocV4> = Vec::new();
        gc.resize(stored.alloc.len(), AllocV4::default())?;
        for (g, a) in gc.iter_mut().zip(stored.alloc.iter()) {
            g.gen = a.gen;
        }

        let mut upd = DerivedUpdates::new();
        // bch2_mark_superblocks()
        let sb = Sb::parse(fs.sb_bytes()).map_err(|_| Errno::EUCLEAN)?;
        let layout = sb.layout();
        mark_dev_sb(dev, &d, layout.offsets(), layout.sb_max_size_bits, &c.info.journal_buckets, &mut upd)?;

        // bch2_gc_btrees(): node pointers, then leaf keys.
        for id in 0..BTREE_ID_NR {
            let btree = id as u8;
            let mut nr_ptrs = 0u64;
            let mut unsupported: Vec<Mismatch> = Vec::new();
            walk_node_ptrs(fs, btree, &mut |level, k, v| {
                nr_ptrs += 1;
                // bch2_dev_btree_bitmap_marked()
                if let Some(start) = crate::format::val::extent::ptrs_start(k.key_type) {
                    for e in crate::format::val::extent::ExtentEntries::new(v.get(start..).unwrap_or(&[])) {
                        let Ok(crate::format::val::extent::ExtentEntry::Ptr(p)) = e else { continue };
                        let Some(m) = sb.member(p.dev) else { continue };
                        if !crate::sb_marks::btree_bitmap_marked_sectors(&m, p.offset, ctx.btree_node_sectors) {
                            push(
                                &mut unsupported,
                                Mismatch::BtreeBitmap { btree, level, pos: k.p, dev: p.dev, sector: p.offset },
                            )?;
                        }
                    }
                }
                match run_triggers(btree, level, None, Some((k, v)), false, &ctx, &mut upd) {
                    Err(err @ (Errno::EUCLEAN | Errno::EINVAL | Errno::EOPNOTSUPP)) => {
                        push(&mut unsupported, Mismatch::BadKey { btree, level, pos: k.p, err })
                    }
                    e => e,
                }
            })?;
            r.nr_keys.1 += nr_ptrs;
            if !crate::alloc::buckets::btree_has_triggers(btree, 0) || c.roots.get(id as usize).copied().flatten().is_none() {
                continue;
            }
            let Some(bid) = BtreeId::from_u32(id) else { continue };
            let mut it = fs.iter(bid, POS_MIN, false);
            while let Some(k) = it.next()? {
                r.nr_keys.0 += 1;
                match trigger_kind(k.k.key_type) {
                    TriggerKind::None | TriggerKind::Alloc => {}
                    TriggerKind::Unsupported => {
                        push(&mut unsupported, Mismatch::Unsupported { btree, pos: k.k.p, key_type: k.k.key_type })?
                    }
                    kind => {
                        // The inode trigger's transactional part keeps
                        // deleted_inodes; fsck (check_inode) expects an
                        // entry for each unlinked inode.
                        if kind == TriggerKind::Inode && is_unlinked_inode(Some((&k.k, &k.v))) {
                            upd.bit(BtreeId::DeletedInodes, k.k.p, true)?;
                        }
                        // check_subvol(): the subvolume_children entry.
                        if let Some(p) = subvolume_children_pos(Some((&k.k, &k.v))) {
                            upd.bit(BtreeId::SubvolumeChildren, p, true)?;
                        }
                        match run_triggers(btree, 0, None, Some((&k.k, &k.v)), false, &ctx, &mut upd) {
                            Err(Errno::EOPNOTSUPP) => push(
                                &mut unsupported,
                                Mismatch::Unsupported { btree, pos: k.k.p, key_type: k.k.key_type },
                            )?,
                            Err(err @ (Errno::EUCLEAN | Errno::EINVAL)) => {
                                push(&mut unsupported, Mismatch::BadKey { btree, level: 0, pos: k.k.p, err })?
                            }
                            e => e?,
                        }
                    }
                }
            }
            for m in unsupported.iter() {
                push(&mut r.mark_errors, *m)?;
            }
        }

        // Apply the marks to GC's buckets.
        for m in upd.meta.iter() {
            let Some(a) = usize::try_from(m.bucket.offset).ok().and_then(|i| gc.get_mut(i)) else {
                push(&mut r.mark_errors, Mismatch::MetaMark { m: *m, err: MarkError::InvalidBucket })?;
                continue;
            };
            if let Err(err) = mark_metadata_bucket(a, m, d.bucket_size) {
                push(&mut r.mark_errors, Mismatch::MetaMark { m: *m, err })?;
            }
        }
        for b in upd.buckets.iter() {
            let a = if b.bucket.inode == u64::from(dev) && b.bucket.offset >= d.first_bucket {
                usize::try_from(b.bucket.offset).ok().and_then(|i| gc.get_mut(i))
            } else {
                None
            };
            let Some(a) = a else {
                push(&mut r.mark_errors, Mismatch::Mark { r: *b, err: MarkError::InvalidBucket })?;
                continue;
            };
            if let Err(err) = mark_pointer(a, b) {
                push(&mut r.mark_errors, Mismatch::Mark { r: *b, err })?;
            }
        }
        for bp in upd.backpointers.iter() {
            if bp.insert {
                push(&mut r.backpointers, (bp.pos, bp.bp))?;
            }
        }
        crate::util::sort::sort_by_key(&mut r.backpointers, |e| e.0);
        for b in upd.bits.iter() {
            let list = match b.btree {
                BtreeId::RebalanceWork => &mut r.rebalance_work,
                BtreeId::DeletedInodes => &mut r.deleted_inodes,
                BtreeId::SubvolumeChildren => &mut r.subvolume_children,
                _ => continue,
            };
            if b.set {
                push(list, b.pos)?;
            }
        }
        r.accounting = core::mem::take(&mut upd.accounting);
        // bch2_gc_reflink_start()/_done(): count the references to each
        // indirect extent.
        r.reflink_refcounts = count_reflink_refs(&stored.reflink, &upd.reflink, &mut r.mark_errors)?;

        // bch2_alloc_write_key(): the stored key with GC's fields, and
        // then what is derived from it (dev_data_type accounting,
        // freespace, need_discard, lru, bucket_gens).
        r.alloc.resize(stored.alloc.len(), AllocV4::default())?;
        let mut idx = DerivedUpdates::new();
        for (b, (old, g)) in stored.alloc.iter().zip(gc.iter()).enumerate() {
            let mut n = *old;
            n.gen = g.gen;
            n.data_type = g.data_type;
            n.dirty_sectors = g.dirty_sectors;
            n.cached_sectors = g.cached_sectors;
            n.stripe_sectors = g.stripe_sectors;
            n.stripe = g.stripe;
            let t = n.data_type;
            alloc_data_type_set(&mut n, t);
            r.alloc[b] = n;
            if (b as u64) < d.first_bucket {
                continue;
            }
            alloc_index_updates(Bpos::pos(u64::from(dev), b as u64), d.bucket_size, None, &n, &mut idx)?;
            // Gens are compared from the alloc keys directly.
            idx.bucket_gens.clear();
        }
        r.accounting.merge(&idx.accounting)?;
        r.accounting.normalize();
        for b in idx.bits.iter() {
            let list = match b.btree {
                BtreeId::Freespace => &mut r.freespace,
                BtreeId::NeedDiscard => &mut r.need_discard,
                BtreeId::Lru => &mut r.lru,
                _ => continue,
            };
            if b.set {
                push(list, b.pos)?;
            }
        }
        for l in [&mut r.freespace, &mut r.need_discard, &mut r.lru, &mut r.rebalance_work, &mut r.deleted_inodes, &mut r.subvolume_children] {
            crate::util::sort::sort(l);
        }
        Ok(r)
    }
}

/// Compares `stored` with `recomputed`: every difference, in the order
/// alloc, backpointers, accounting, freespace, need_discard, lru,
/// bucket_gens, reflink refcounts, rebalance_work, deleted_inodes,
/// subvolume_children;
/// marking errors first.
///
/// Errors: `ENOMEM`.
pub fn check(stored: &StoredState, rc: &Recomputed) -> Result<Vec<Mismatch>, Errno> {
    let mut out: Vec<Mismatch> = Vec::new();
    for m in rc.mark_errors.iter() {
        push(&mut out, *m)?;
    }
    let dev = u64::from(stored.dev);
    for (b, (got, exp)) in stored.alloc.iter().zip(rc.alloc.iter()).enumerate() {
        if (b as u64) < stored.devinfo.first_bucket {
            continue;
        }
        let differs = got.gen != exp.gen
            || got.data_type != exp.data_type
            || got.dirty_sectors != exp.dirty_sectors
            || got.cached_sectors != exp.cached_sectors
            || got.stripe_sectors != exp.stripe_sectors
            || got.stripe != exp.stripe
            || got.stripe_redundancy != exp.stripe_redundancy;
        if differs {
            push(&mut out, Mismatch::Alloc { bucket: Bpos::pos(dev, b as u64), expected: *exp, got: *got })?;
        }
    }
    // Backpointers.
    let (e, g) = (&rc.backpointers, &stored.backpointers);
    let (mut i, mut j) = (0, 0);
    while i < e.len() || j < g.len() {
        match (e.get(i), g.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                if a.1 != b.1 {
                    push(&mut out, Mismatch::Backpointer { pos: a.0, expected: Some(a.1), got: Some(b.1) })?;
                }
                i += 1;
                j += 1;
            }
            (Some(a), b) if b.map_or(true, |b| a.0 < b.0) => {
                push(&mut out, Mismatch::Backpointer { pos: a.0, expected: Some(a.1), got: None })?;
                i += 1;
            }
            (_, Some(b)) => {
                push(&mut out, Mismatch::Backpointer { pos: b.0, expected: None, got: Some(b.1) })?;
                j += 1;
            }
            _ => break,
        }
    }
    // Accounting: missing counters are zero.
    let (e, g) = (rc.accounting.entries(), stored.accounting.entries());
    let (mut i, mut j) = (0, 0);
    let zero = [0i64; ACCOUNTING_MAX_COUNTERS];
    while i < e.len() || j < g.len() {
        let (pos, ev, gv, nr) = match (e.get(i), g.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                i += 1;
                j += 1;
                (a.0, a.1, b.1, a.2.max(b.2))
            }
            (Some(a), b) if b.map_or(true, |b| a.0 < b.0) => {
                i += 1;
                (a.0, a.1, zero, a.2)
            }
            (_, Some(b)) => {
                j += 1;
                (b.0, zero, b.1, b.2)
            }
            _ => break,
        };
        let Some(acc) = DiskAccountingPos::from_bpos(pos) else { continue };
        // bch2_accounting_read(): a stored replicas counter needs its
        // entry in the superblock.
        if let DiskAccountingPos::Replicas(r) = acc {
            if gv != zero && !crate::sb_marks::replicas_marked(&stored.sb_replicas, &r) {
                push(&mut out, Mismatch::ReplicasNotMarked { pos })?;
            }
        }
        if ev != gv {
            push(&mut out, Mismatch::Accounting { pos, expected: ev, got: gv, nr: nr.max(1) })?;
        }
    }
    sub_bits(&rc.freespace, &sorted_copy(&stored.freespace)?, BtreeId::Freespace, &mut out)?;
    sub_bits(&rc.need_discard, &sorted_copy(&stored.need_discard)?, BtreeId::NeedDiscard, &mut out)?;
    sub_bits(&rc.lru, &sorted_copy(&stored.lru)?, BtreeId::Lru, &mut out)?;
    for (b, (&got, exp)) in stored.gens.iter().zip(rc.alloc.iter()).enumerate() {
        if (b as u64) < stored.devinfo.first_bucket {
            continue;
        }
        if got != exp.gen {
            push(&mut out, Mismatch::BucketGen { bucket: Bpos::pos(dev, b as u64), expected: exp.gen, got })?;
        }
    }
    for &(bucket, got) in stored.gens_out_of_range.iter() {
        push(&mut out, Mismatch::BucketGen { bucket, expected: 0, got })?;
    }
    for (e, &want) in stored.reflink.iter().zip(rc.reflink_refcounts.iter()) {
        if e.2 != want {
            push(&mut out, Mismatch::Refcount { pos: Bpos::pos(0, e.1), expected: want, got: e.2 })?;
        }
    }
    sub_bits(&rc.rebalance_work, &sorted_copy(&stored.rebalance_work)?, BtreeId::RebalanceWork, &mut out)?;
    sub_bits(&rc.deleted_inodes, &sorted_copy(&stored.deleted_inodes)?, BtreeId::DeletedInodes, &mut out)?;
    sub_bits(&rc.subvolume_children, &sorted_copy(&stored.subvolume_children)?, BtreeId::SubvolumeChildren, &mut out)?;
    Ok(out)
}

fn sorted_copy(v: &[Bpos]) -> Result<Vec<Bpos>, Errno> {
    let mut c = Vec::new();
    c.extend_from_slice(v)?;
    Ok(sorted(c))
}

/// Reads, recomputes and compares: [`StoredState::read`],
/// [`Recomputed::from_scratch`], [`check`].
///
/// Errors: theirs.
pub fn check_fs<D: BlockDev>(fs: &crate::bcachefs::Fs<D>) -> Result<Vec<Mismatch>, Errno> {
    let stored = StoredState::read(fs)?;
    let rc = Recomputed::from_scratch(fs, &stored)?;
    check(&stored, &rc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::ReflinkRef;
    use std::string::ToString;

    #[test]
    fn reflink_references_are_counted_per_indirect_extent() {
        let keys = [(0, 64, 1), (64, 128, 2), (200, 264, 1)];
        let p = Bpos::new(4096, 0, 1);
        let refs = [
            ReflinkRef { start: 0, end: 128, delta: 1, key_pos: p },
            ReflinkRef { start: 100, end: 110, delta: 1, key_pos: p },
            ReflinkRef { start: 120, end: 210, delta: 1, key_pos: p },
            ReflinkRef { start: 0, end: 10, delta: -1, key_pos: p },
        ];
        let mut errors = Vec::new();
        let c = count_reflink_refs(&keys, &refs, &mut errors).unwrap();
        assert_eq!(c[..], [1, 3, 1]);
        assert_eq!(errors[..], [Mismatch::ReflinkMissing { key_pos: p, start: 128, end: 200 }]);
        assert_eq!(
            errors[0].to_string(),
            "pointer to missing indirect extent: reflink_p 4096:0:1, missing range 128-200"
        );
    }
}
