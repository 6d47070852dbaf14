// SPDX-License-Identifier: GPL-2.0
//! Initializing a new filesystem (`bch2_fs_initialize()` in `recovery.c`):
//! what C does the first time a formatted volume is mounted, so that
//! `format` leaves a volume with the same derived state C would write.
//!
//! 1. compat bits `extents_above_btree_updates_done` and
//!    `bformat_overflow_done`;
//! 2. every btree starts with a fake root (the write side's default for a
//!    btree without a root) and the journal at sequence number 1;
//! 3. the superblock and journal buckets are marked in the alloc btree
//!    (`bch2_trans_mark_dev_sbs()`);
//! 4. freespace (`bch2_fs_freespace_init()`): one `set` key per run of
//!    buckets without an alloc key;
//! 5. the root snapshot tree, snapshot and subvolume
//!    (`bch2_initialize_subvolumes()`);
//! 6. the root directory (inode 4096, subvolume 1, snapshot `U32_MAX`) and
//!    `lost+found` (`bch2_create_trans()`, mode 0700);
//! 7. a journal flush, the superblock's `INITIALIZED` flag set and `CLEAN`
//!    cleared.
//!
//! The accounting counters, backpointers, alloc keys and lru/freespace
//! entries come from the commit's triggers ([`crate::triggers`]).

use crate::alloc::buckets::{mark_dev_sb, mark_metadata_bucket};
use crate::accounting::DiskAccountingPos;
use crate::alloc::DerivedUpdates;
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{Bkey, BkeyI, BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::sb::{FieldType, Sb};
use crate::format::sb_members::{MemberFlag, MEMBERS_V2_HEADER, MEMBER_BYTES, MEMBER_V1_BYTES};
use crate::format::sb_write::SbBuf;
use crate::format::sb_opts::SbFlag;
use crate::format::val::alloc::{data_type, AllocV4};
use crate::format::val::inode::InodeField;
use crate::fs_common::fs_ops::{create_trans, inode_init_early, NewInode};
use crate::fs_common::inode_write::{current_time, inode_init, inode_write};
use crate::fs_common::trans::commit_do as ops_commit_do;
use crate::fs_common::Subvol;
use crate::fs_rw::BchFs;
use crate::journal::res::JournalSink;
use crate::platform::{BlockDev, Vec};

/// `BCACHEFS_ROOT_INO`.
pub const ROOT_INO: u64 = 4096;
/// `BCACHEFS_ROOT_SUBVOL`.
pub const ROOT_SUBVOL: u32 = 1;
/// `BCH_COMPAT_extents_above_btree_updates_done`.
const COMPAT_EXTENTS_ABOVE_BTREE_UPDATES_DONE: u64 = 1 << 2;
/// `BCH_COMPAT_bformat_overflow_done`.
const COMPAT_BFORMAT_OVERFLOW_DONE: u64 = 1 << 3;
/// `S_IFDIR`.
const S_IFDIR: u16 = 0o040000;
/// Most buckets one freespace key covers (its `size` is 32 bits).
const FREESPACE_RUN_MAX: u64 = u32::MAX as u64;

fn key(ty: KeyType, p: Bpos, v: &[u8]) -> Result<BkeyI, Errno> {
    let mut val = Vec::new();
    val.extend_from_slice(v)?;
    Ok(BkeyI { k: Bkey::new(ty, p, v.len() / 8), v: val })
}

/// `bch2_initialize_subvolumes()`: the root snapshot tree (1), snapshot
/// (`U32_MAX`, subvolume 1, tree 1, `BCH_SNAPSHOT_SUBVOL`) and subvolume
/// (1: snapshot `U32_MAX`, inode 4096), as C lays out their values.
///
/// Errors: those of the commits.
pub fn initialize_subvolumes<D: BlockDev + Send + Sync>(fs: &BchFs<D>) -> Result<(), Errno> {
    // struct bch_snapshot_tree: master_subvol, root_snapshot.
    let mut tree = [0u8; 8];
    tree[..4].copy_from_slice(&1u32.to_le_bytes());
    tree[4..].copy_from_slice(&u32::MAX.to_le_bytes());
    // struct bch_snapshot: flags, parent, children[2], subvol, tree,
    // depth, skip[3], btime (bch_le128, 8-aligned): 56 bytes.
    let mut snap = [0u8; 56];
    snap[..4].copy_from_slice(&2u32.to_le_bytes()); // BCH_SNAPSHOT_SUBVOL
    snap[16..20].copy_from_slice(&ROOT_SUBVOL.to_le_bytes());
    snap[20..24].copy_from_slice(&1u32.to_le_bytes());
    // struct bch_subvolume: flags, snapshot, inode, creation_parent,
    // fs_path_parent, otime (bch_le128): 40 bytes.
    let mut sv = [0u8; 40];
    sv[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    sv[8..16].copy_from_slice(&ROOT_INO.to_le_bytes());
    let inserts = [
        (BtreeId::SnapshotTrees, key(KeyType::SnapshotTree, Bpos::pos(0, 1), &tree)?),
        (BtreeId::Snapshots, key(KeyType::Snapshot, Bpos::pos(0, u64::from(u32::MAX)), &snap)?),
        (BtreeId::Subvolumes, key(KeyType::Subvolume, Bpos::pos(0, u64::from(ROOT_SUBVOL)), &sv)?),
    ];
    for (b, k) in inserts.iter() {
        fs.commit_do(|t| t.update(*b, crate::btree::trans::bkey_i(&k.k, &k.v)?))?;
    }
    Ok(())
}

/// `bch2_dev_usage_init()`: every bucket from `first_bucket` counted free
/// (`dev_data_type` accounting, data type free).
///
/// Errors: `EINVAL` (no member entry), those of the commit.
pub fn dev_usage_init<D: BlockDev + Send + Sync>(fs: &BchFs<D>) -> Result<(), Errno> {
    let info = &fs.open.info;
    let d = info.devs.get(info.dev_idx as usize).copied().flatten().ok_or(Errno::EINVAL)?;
    let n = i64::try_from(d.nbuckets.saturating_sub(d.first_bucket)).map_err(|_| Errno::EINVAL)?;
    let acc = DiskAccountingPos::DevDataType { dev: info.dev_idx, data_type: data_type::FREE };
    fs.commit_do(|t| fs.triggers.accounting_mod(t, &acc, &[n, 0, 0]))
}

/// `bch2_trans_mark_dev_sb()`: the superblock and journal buckets of the
/// device marked in their alloc keys (data type `sb`/`journal`, dirty
/// sectors), one transaction per bucket as C commits them.
///
/// Errors: `EINVAL` (no member entry), those of the commits.
pub fn trans_mark_dev_sb<D: BlockDev + Send + Sync>(fs: &BchFs<D>) -> Result<(), Errno> {
    let info = &fs.open.info;
    let d = info.devs.get(info.dev_idx as usize).copied().flatten().ok_or(Errno::EINVAL)?;
    let mut out = DerivedUpdates::new();
    {
        let sbb = fs.open.sb.lock();
        let sb = sbb.sb().map_err(|_| Errno::EINVAL)?;
        let layout = sb.layout();
        mark_dev_sb(info.dev_idx, &d, layout.offsets(), layout.sb_max_size_bits, &info.journal_buckets, &mut out)?;
    }
    for m in out.meta.iter() {
        fs.commit_do(|t| {
            fs.triggers.alloc_mod(t, m.bucket, |a: &mut AllocV4| {
                mark_metadata_bucket(a, m, d.bucket_size).map_err(|_| BchError::Errno(Errno::EUCLEAN))
            })
        })?;
    }
    Ok(())
}

/// `bch2_dev_freespace_init()`: a freespace `set` key for each run of
/// buckets from `first_bucket` to `nbuckets` that have no alloc key (the
/// free buckets of a new volume; buckets with keys got their entries from
/// the alloc trigger).
///
/// Errors: those of the reads and commits.
pub fn dev_freespace_init<D: BlockDev + Send + Sync>(fs: &BchFs<D>) -> Result<(), Errno> {
    let info = &fs.open.info;
    let dev = info.dev_idx;
    let d = info.devs.get(dev as usize).copied().flatten().ok_or(Errno::EINVAL)?;
    let mut keyed: Vec<u64> = Vec::new();
    crate::btree::lockrestart_do(&fs.btree, |t| {
        keyed.clear();
        let it = t.iter(BtreeId::Alloc, Bpos::pos(u64::from(dev), 0), false)?;
        while let Some(k) = t.iter_next(it)? {
            if k.k.p.inode != u64::from(dev) {
                break;
            }
            keyed.push(k.k.p.offset)?;
        }
        Ok(())
    })?;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut b = d.first_bucket;
    let mut j = 0;
    while b < d.nbuckets {
        while j < keyed.len() && keyed[j] < b {
            j += 1;
        }
        let end = keyed.get(j).copied().unwrap_or(d.nbuckets).min(d.nbuckets).min(b.saturating_add(FREESPACE_RUN_MAX));
        if end > b {
            runs.push((b, end))?;
            b = end;
        } else {
            b += 1;
        }
    }
    for &(s, e) in runs.iter() {
        fs.commit_do(|t| {
            let mut k = Bkey::new(KeyType::Set, Bpos::pos(u64::from(dev), e), 0);
            k.size = u32::try_from(e - s).map_err(|_| Errno::EINVAL)?;
            t.update(BtreeId::Freespace, BkeyI { k, v: Vec::new() })
        })?;
    }
    let mut sb = fs.open.sb.lock();
    member_set_freespace_initialized(&mut sb, dev)?;
    // From here on the allocator takes buckets from the freespace btree,
    // no longer by scanning its bucket table (bch2_bucket_alloc_early()).
    fs.open.alloc.set_freespace_initialized(dev, true)
}

/// Sets `BCH_MEMBER_FREESPACE_INITIALIZED` of member `idx` in both member
/// fields (`members_v2`, and its `members_v1` copy as
/// `bch2_sb_members_cpy_v2_v1()` makes it at the next superblock write).
///
/// Errors: `EINVAL` (no such member or field), `ENOMEM`.
pub fn member_set_freespace_initialized(sb: &mut SbBuf, idx: u8) -> Result<(), Errno> {
    let i = usize::from(idx);
    let (mut v2, v1, m) = {
        let s = sb.sb().map_err(|_| Errno::EINVAL)?;
        let mut m = s.member(idx).ok_or(Errno::EINVAL)?;
        m.set_flag(MemberFlag::FreespaceInitialized, 1);
        let mut v2: Vec<u8> = Vec::new();
        v2.extend_from_slice(s.field(FieldType::MembersV2).ok_or(Errno::EINVAL)?.body())?;
        let mut v1: Vec<u8> = Vec::new();
        if let Some(f) = s.field(FieldType::MembersV1) {
            v1.extend_from_slice(f.body())?;
        }
        (v2, v1, m)
    };
    let enc = m.encode();
    let msize = usize::from(u16::from_le_bytes([*v2.first().ok_or(Errno::EINVAL)?, *v2.get(1).ok_or(Errno::EINVAL)?]));
    let at = MEMBERS_V2_HEADER - 8 + i * msize;
    let n = msize.min(MEMBER_BYTES);
    v2.get_mut(at..at + n).ok_or(Errno::EINVAL)?.copy_from_slice(&enc[..n]);
    sb.set_field(FieldType::MembersV2, &v2)?;
    if !v1.is_empty() {
        let mut v1 = v1;
        let at = i * MEMBER_V1_BYTES;
        if let Some(dst) = v1.get_mut(at..at + MEMBER_V1_BYTES) {
            dst.copy_from_slice(&enc[..MEMBER_V1_BYTES]);
            sb.set_field(FieldType::MembersV1, &v1)?;
        }
    }
    Ok(())
}

/// `bch2_fs_initialize()` (see the module documentation) on a filesystem
/// just opened with [`crate::fs_rw::BchFsOpen::open`] on a volume never
/// initialized.  The caller shuts it down afterwards (the tool's `format`
/// does, as `bch2_fs_stop()` does after C's initialize).
///
/// Errors: `EINVAL` (the volume was initialized already), those of the
/// steps.
pub fn fs_initialize<D: BlockDev + Send + Sync>(fs: &BchFs<D>) -> Result<(), Errno> {
    if !fs.open.fresh {
        return Err(Errno::EINVAL);
    }
    {
        let mut sb = fs.open.sb.lock();
        let c = sb.sb().map(|s: Sb<'_>| s.compat()).map_err(|_| Errno::EINVAL)?;
        sb.set_compat([c[0] | COMPAT_EXTENTS_ABOVE_BTREE_UPDATES_DONE | COMPAT_BFORMAT_OVERFLOW_DONE, c[1]]);
        sb.write_super(&*fs.open.dev)?;
    }
    dev_usage_init(fs)?;
    trans_mark_dev_sb(fs)?;
    dev_freespace_init(fs)?;
    initialize_subvolumes(fs)?;

    // The root directory: bch2_inode_init() + bch2_btree_insert().
    let mut t = fs.trans();
    let mut root = inode_init(&mut t, 0, 0, 0, S_IFDIR | 0o755, 0, None);
    let now = current_time(&t);
    for f in [InodeField::Atime, InodeField::Mtime, InodeField::Ctime, InodeField::Otime] {
        root.set(f, now);
    }
    root.inum = ROOT_INO;
    root.snapshot = u32::MAX;
    root.set(InodeField::Subvol, u64::from(ROOT_SUBVOL));
    ops_commit_do(&mut t, |t| inode_write(t, &root))?;

    // lost+found: bch2_create_trans() in the root directory.
    let sv = Subvol { id: ROOT_SUBVOL, snapshot: u32::MAX, root_inum: ROOT_INO };
    let lf = inode_init_early(&mut t, &NewInode { mode: S_IFDIR | 0o700, uid: 0, gid: 0, rdev: 0 });
    ops_commit_do(&mut t, |t| create_trans(t, &sv, ROOT_INO, b"lost+found", &lf, false))?;
    drop(t);

    // bch2_journal_flush(), then INITIALIZED and not CLEAN.
    fs.flush()?;
    let j = &fs.open.journal;
    j.flush_seq(j.cur_seq())?;
    let mut sb = fs.open.sb.lock();
    sb.set_flag(SbFlag::Initialized, 1);
    sb.set_flag(SbFlag::Clean, 0);
    sb.write_super(&*fs.open.dev)
}
