// SPDX-License-Identifier: GPL-2.0
//! Key triggers (`buckets.c`, `inode.c`'s `bch2_trigger_inode()`): what
//! adding or removing a key with pointers, a reservation or an inode
//! changes in bucket state, backpointers and accounting; and marking the
//! superblock and journal buckets (`bch2_trans_mark_dev_sb()`).
//!
//! Sectors are 512-byte sectors throughout.

use core::fmt;

use super::background::{alloc_data_type_set, bucket_data_type_mismatch, gen_after, ptr_too_stale};
use super::{BpUpdate, BucketRef, DerivedUpdates, MetaMark, ReflinkRef};
use crate::accounting::{DiskAccountingPos, ReplicasEntry};
use crate::backpointers::{bucket_pos_to_bp, extent_ptr_to_bp};
use crate::errcode::Errno;
use crate::format::bkey::{Bkey, BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::val::alloc::{data_type, AllocV4};
use crate::format::val::extent::{ptrs_start, ExtentEntries, ExtentEntry, ExtentPtr};
use crate::format::val::inode::INODE_UNLINKED;
use crate::format::val::DevInfo;

/// `BCH_SB_MEMBER_INVALID`: a pointer to a removed device.
pub const SB_MEMBER_INVALID: u8 = 255;
/// `BCH_SB_SECTOR`: the sector of the first superblock.
pub const SB_SECTOR: u64 = 8;
/// `BCH_COMPRESSION_TYPE_incompressible`.
const COMPRESSION_INCOMPRESSIBLE: u8 = 5;

/// A key and its value.
pub type KeyView<'a> = (&'a Bkey, &'a [u8]);

/// What the key triggers need besides the keys.
#[derive(Clone, Copy)]
pub struct TriggerCtx<'a> {
    /// Member devices by index (bucket size, first bucket, nbuckets).
    pub devs: &'a [Option<DevInfo>],
    /// Btree node size, sectors (`btree_sectors(c)`): the disk sectors of
    /// a btree node pointer.
    pub btree_node_sectors: u32,
    /// The current gen of a bucket (dev, bucket), when known: a cached
    /// pointer whose gen differs is stale and is not accounted
    /// (`bch2_bucket_ref_update()` returning 1).  `None`: nothing is
    /// stale.
    pub bucket_gen: Option<&'a dyn Fn(u8, u64) -> Option<u8>>,
}

impl TriggerCtx<'_> {
    fn dev(&self, d: u8) -> Option<&DevInfo> {
        self.devs.get(d as usize).and_then(|x| x.as_ref())
    }
}

/// `struct extent_ptr_decoded`, as `bkey_for_each_ptr_decode()` yields it.
#[derive(Clone, Copy, Debug)]
struct PtrDecoded {
    ptr: ExtentPtr,
    compression_type: u8,
    compressed_size: u32,
    uncompressed_size: u32,
    crc_offset: u32,
    has_ec: bool,
}

/// The pointers of `k` decoded as `bkey_for_each_ptr_decode()` does: a
/// checksum entry applies to the pointers after it; a stripe entry to the
/// next pointer.  Calls `f` for each; stops at the first malformed entry
/// with `EUCLEAN`.
fn for_each_ptr_decode(k: &Bkey, v: &[u8], mut f: impl FnMut(&PtrDecoded) -> Result<(), Errno>) -> Result<(), Errno> {
    let Some(start) = ptrs_start(k.key_type) else { return Ok(()) };
    let entries = v.get(start..).unwrap_or(&[]);
    let mut p = PtrDecoded {
        ptr: ExtentPtr::default(),
        compression_type: 0,
        compressed_size: k.size,
        uncompressed_size: k.size,
        crc_offset: 0,
        has_ec: false,
    };
    for e in ExtentEntries::new(entries) {
        match e.map_err(|_| Errno::EUCLEAN)? {
            ExtentEntry::Ptr(ptr) => {
                p.ptr = ptr;
                f(&p)?;
                p.has_ec = false;
            }
            ExtentEntry::Crc(c) => {
                p.compression_type = c.compression_type;
                p.compressed_size = c.compressed_size;
                p.uncompressed_size = c.uncompressed_size;
                p.crc_offset = c.offset;
            }
            ExtentEntry::StripePtr(_) => p.has_ec = true,
            ExtentEntry::Rebalance(_) => {}
        }
    }
    Ok(())
}

/// The bytes of `k`'s pointer entries (`bch2_bkey_ptrs_c()`), empty for a
/// key without pointers.
fn ptr_bytes<'a>(k: &Bkey, v: &'a [u8]) -> &'a [u8] {
    match ptrs_start(k.key_type) {
        Some(s) => v.get(s..k.val_bytes().min(v.len())).unwrap_or(&[]),
        None => &[],
    }
}

fn is_btree_ptr(k: &Bkey) -> bool {
    k.key_type == KeyType::BtreePtr as u8 || k.key_type == KeyType::BtreePtrV2 as u8
}

/// `crc_is_compressed()`.
fn crc_is_compressed(t: u8) -> bool {
    t != 0 && t != COMPRESSION_INCOMPRESSIBLE
}

/// `ptr_disk_sectors()`: sectors on disk of `sectors` of live data behind
/// a pointer (rounded up for compressed data).
fn ptr_disk_sectors(sectors: u64, p: &PtrDecoded) -> u64 {
    if crc_is_compressed(p.compression_type) && p.uncompressed_size != 0 {
        (sectors * u64::from(p.compressed_size)).div_ceil(u64::from(p.uncompressed_size))
    } else {
        sectors
    }
}

/// `bch2_compression_opt_to_type[]`: none, lz4, gzip, zstd options to
/// extent compression types.
fn compression_opt_to_type(opt: u8) -> u8 {
    match opt & 0xf {
        1 => 3,
        2 => 2,
        3 => 4,
        _ => 0,
    }
}

/// `bch2_bkey_sectors_need_rebalance()`: sectors of `k` that rebalance
/// would move or recompress under the options in its rebalance entry.
///
/// Errors: `EOPNOTSUPP` for a rebalance target naming a disk group (only
/// device targets are known here); `EUCLEAN` for a malformed value.
pub fn bkey_sectors_need_rebalance(k: &Bkey, v: &[u8], ctx: &TriggerCtx<'_>) -> Result<u64, Errno> {
    let Some(start) = ptrs_start(k.key_type) else { return Ok(0) };
    let entries = v.get(start..).unwrap_or(&[]);
    let r = ExtentEntries::new(entries).find_map(|e| match e {
        Ok(ExtentEntry::Rebalance(r)) => Some(r),
        _ => None,
    });
    let Some(r) = r else { return Ok(0) };
    let mut sectors = 0u64;
    if r.compression != 0 {
        let want = compression_opt_to_type(r.compression);
        let mut incompressible = false;
        for_each_ptr_decode(k, v, |p| {
            if incompressible {
                return Ok(());
            }
            if p.compression_type == COMPRESSION_INCOMPRESSIBLE || p.ptr.unwritten {
                sectors = 0;
                incompressible = true;
                return Ok(());
            }
            if !p.ptr.cached && p.compression_type != want {
                sectors += u64::from(p.compressed_size);
            }
            Ok(())
        })?;
    }
    if r.target != 0 {
        // Targets: 0 none, 1..=256 device (target - 1), above: disk groups.
        let t = u32::from(r.target);
        if t > 256 {
            return Err(Errno::EOPNOTSUPP);
        }
        let tdev = (t - 1) as u8;
        if ctx.dev(tdev).is_some() {
            for_each_ptr_decode(k, v, |p| {
                if !p.ptr.cached && p.ptr.dev != tdev {
                    sectors += u64::from(p.compressed_size);
                }
                Ok(())
            })?;
        }
    }
    Ok(sectors)
}

/// Whether a cached pointer is stale (its bucket's gen moved on), as far
/// as `ctx` knows.
fn ptr_stale(ctx: &TriggerCtx<'_>, ptr: &ExtentPtr, bucket: u64) -> bool {
    let Some(lookup) = ctx.bucket_gen else { return false };
    match lookup(ptr.dev, bucket) {
        Some(g) => g != ptr.gen && !gen_after(ptr.gen, g) && !ptr_too_stale(g, ptr.gen),
        None => false,
    }
}

/// `bch2_trigger_pointer()` + the per-pointer part of `__trigger_extent()`
/// for one key (inserted when `insert`, else overwritten).
fn trigger_extent_one(
    btree: u8,
    level: u8,
    k: &Bkey,
    v: &[u8],
    insert: bool,
    ctx: &TriggerCtx<'_>,
    out: &mut DerivedUpdates,
) -> Result<i64, Errno> {
    let btree_ptr = is_btree_ptr(k);
    let ptr_data_type_base = if btree_ptr { data_type::BTREE } else { data_type::USER };
    let mut replicas = ReplicasEntry::new(ptr_data_type_base, 1);
    let mut replicas_sectors = 0i64;
    let mut compression_ty = 0u8;
    let mut compression_acct = [1i64, 0, 0];
    let neg = |a: [i64; 3]| if insert { a } else { [-a[0], -a[1], -a[2]] };
    let live = if level != 0 { u64::from(ctx.btree_node_sectors) } else { u64::from(k.size) };

    for_each_ptr_decode(k, v, |p| {
        if p.has_ec {
            // Erasure coding (stripes) is not supported yet.
            return Err(Errno::EOPNOTSUPP);
        }
        let abs = ptr_disk_sectors(live, p);
        let abs_i = i64::try_from(abs).map_err(|_| Errno::EUCLEAN)?;
        let disk_sectors = if insert { abs_i } else { -abs_i };
        let mut stale = false;
        match ctx.dev(p.ptr.dev) {
            None => {
                if insert && p.ptr.dev != SB_MEMBER_INVALID {
                    return Err(Errno::EUCLEAN);
                }
            }
            Some(d) => {
                let dt = if btree_ptr { data_type::BTREE } else { data_type::USER };
                let (bucket, bp) = extent_ptr_to_bp(p.ptr.dev, p.ptr.offset, d.bucket_size, btree, level, dt, p.crc_offset, abs, k.p)
                    .ok_or(Errno::EUCLEAN)?;
                out.buckets.push(BucketRef {
                    bucket,
                    ptr_gen: p.ptr.gen,
                    cached: p.ptr.cached,
                    has_ec: p.has_ec,
                    data_type: bp.data_type,
                    sectors: disk_sectors,
                    key_pos: k.p,
                })?;
                if !p.ptr.cached {
                    let pos = bucket_pos_to_bp(bucket, d.bucket_size, bp.bucket_offset);
                    out.backpointers.push(BpUpdate { pos, bp, insert })?;
                }
                stale = p.ptr.cached && ptr_stale(ctx, &p.ptr, bucket.offset);
            }
        }
        if p.ptr.cached && stale {
            return Ok(());
        }
        if p.ptr.cached {
            out.accounting.add(&DiskAccountingPos::Replicas(ReplicasEntry::cached(p.ptr.dev)), &[disk_sectors])?;
        } else {
            replicas_sectors += disk_sectors;
            replicas.add_dev(p.ptr.dev)?;
        }
        if compression_ty != 0 && compression_ty != p.compression_type {
            out.accounting.add(&DiskAccountingPos::Compression { ty: compression_ty }, &neg(compression_acct))?;
            compression_acct = [1, 0, 0];
        }
        compression_ty = p.compression_type;
        if p.compression_type != 0 {
            compression_acct[1] += i64::from(p.uncompressed_size);
            compression_acct[2] += i64::from(p.compressed_size);
        }
        Ok(())
    })?;

    if replicas.nr_devs != 0 {
        out.accounting.add(&DiskAccountingPos::Replicas(replicas), &[replicas_sectors])?;
        if level == 0 && k.p.snapshot != 0 {
            out.accounting.add(&DiskAccountingPos::Snapshot { id: k.p.snapshot }, &[replicas_sectors])?;
        }
    }
    if compression_ty != 0 {
        out.accounting.add(&DiskAccountingPos::Compression { ty: compression_ty }, &neg(compression_acct))?;
    }
    if level != 0 {
        out.accounting.add(&DiskAccountingPos::Btree { id: u32::from(btree) }, &[replicas_sectors])?;
    } else {
        let size = i64::from(k.size);
        let d = if insert { [1, size, replicas_sectors] } else { [-1, -size, replicas_sectors] };
        out.accounting.add(&DiskAccountingPos::Inum { inum: k.p.inode }, &d)?;
    }
    Ok(replicas_sectors)
}

/// `bch2_trigger_extent()` (transactional or GC): for keys with pointers
/// (`extent`, `reflink_v`, `btree_ptr`, `btree_ptr_v2`) in `btree` at
/// `level` (0 for leaf keys; for a node pointer, the level of the node
/// holding it), going from `old` to `new` (`None`: no key).  Nothing
/// happens when the pointer entries are byte-identical.  Adds bucket
/// references, backpointers, the replicas, snapshot, compression, btree
/// and inum accounting, and the rebalance_work bit and counter.
///
/// Errors: `EOPNOTSUPP` for erasure-coded pointers (stripes) and rebalance
/// disk-group targets; `EUCLEAN` for a malformed value or a pointer to a
/// missing device being inserted; `EINVAL` for more than 16 devices;
/// `ENOMEM`.
pub fn trigger_extent(
    btree: u8,
    level: u8,
    old: Option<KeyView<'_>>,
    new: Option<KeyView<'_>>,
    ctx: &TriggerCtx<'_>,
    out: &mut DerivedUpdates,
) -> Result<(), Errno> {
    // A deleted key is no key (C tests `k.k->type`).
    let old = old.filter(|(k, _)| k.key_type != KeyType::Deleted as u8);
    let new = new.filter(|(k, _)| k.key_type != KeyType::Deleted as u8);
    let op = old.map_or(&[][..], |(k, v)| ptr_bytes(k, v));
    let np = new.map_or(&[][..], |(k, v)| ptr_bytes(k, v));
    if op == np {
        return Ok(());
    }
    if let Some((k, v)) = old {
        trigger_extent_one(btree, level, k, v, false, ctx, out)?;
    }
    if let Some((k, v)) = new {
        trigger_extent_one(btree, level, k, v, true, ctx, out)?;
    }
    let old_rb = match old {
        Some((k, v)) => bkey_sectors_need_rebalance(k, v, ctx)?,
        None => 0,
    };
    let new_rb = match new {
        Some((k, v)) => bkey_sectors_need_rebalance(k, v, ctx)?,
        None => 0,
    };
    let delta = i64::from(new_rb != 0) - i64::from(old_rb != 0);
    if delta != 0 {
        // The bit is keyed by the new key's position; with no new key, C
        // passes the deleted key at the old position.
        let pos = new.or(old).map(|(k, _)| k.p).unwrap_or_default();
        out.bit(BtreeId::RebalanceWork, pos, delta > 0)?;
    }
    let sd = i64::try_from(new_rb).unwrap_or(i64::MAX) - i64::try_from(old_rb).unwrap_or(i64::MAX);
    if sd != 0 {
        out.accounting.add(&DiskAccountingPos::RebalanceWork, &[sd])?;
    }
    Ok(())
}

/// `bch2_trigger_reservation()`: `persistent_reserved` accounting by the
/// reservation's `nr_replicas` (value byte 4), old overwritten then new
/// inserted.
///
/// Errors: `ENOMEM`.
pub fn trigger_reservation(old: Option<KeyView<'_>>, new: Option<KeyView<'_>>, out: &mut DerivedUpdates) -> Result<(), Errno> {
    for (kv, sign) in [(old, -1i64), (new, 1i64)] {
        if let Some((k, v)) = kv {
            let nr_replicas = v.get(4).copied().unwrap_or(0);
            out.accounting
                .add(&DiskAccountingPos::PersistentReserved { nr_replicas }, &[sign * i64::from(k.size)])?;
        }
    }
    Ok(())
}

/// `bch2_trigger_reflink_p()`: the old pointer's range loses a
/// reference, the new one's gains one (`trigger_run_overwrite_then_insert`).
/// The range is `[idx - front_pad, idx + size + back_pad)` (value: idx u64
/// @0, front_pad u32 @8, back_pad u32 @12).  For a transactional insert C
/// first zeroes the new key's pads and, while applying, widens them to
/// the indirect extents it hits: the caller does that to the new key
/// (`transactional` here only drops the pads from the new range).
///
/// Errors: `EUCLEAN` for a value shorter than 16 bytes; `ENOMEM`.
pub fn trigger_reflink_p(
    old: Option<KeyView<'_>>,
    new: Option<KeyView<'_>>,
    transactional: bool,
    out: &mut DerivedUpdates,
) -> Result<(), Errno> {
    let le = |v: &[u8], at: usize, n: usize| -> Result<u64, Errno> {
        let b = v.get(at..at + n).ok_or(Errno::EUCLEAN)?;
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    };
    for (kv, delta) in [(old, -1i64), (new, 1i64)] {
        let Some((k, v)) = kv.filter(|(k, _)| k.key_type == KeyType::ReflinkP as u8) else { continue };
        let idx = le(v, 0, 8)?;
        let (front, back) = if transactional && delta > 0 { (0, 0) } else { (le(v, 8, 4)?, le(v, 12, 4)?) };
        out.reflink.push(ReflinkRef {
            start: idx.saturating_sub(front),
            end: idx.saturating_add(u64::from(k.size)).saturating_add(back),
            delta,
            key_pos: k.p,
        })?;
    }
    Ok(())
}

fn is_inode(k: Option<KeyView<'_>>) -> bool {
    k.is_some_and(|(k, _)| matches!(KeyType::from_u8(k.key_type), Some(KeyType::Inode | KeyType::InodeV2 | KeyType::InodeV3)))
}

/// `bkey_is_unlinked_inode()`: an inode with `BCH_INODE_unlinked` set.
/// (C also tests `has_child_snapshot`, but on the flags already masked
/// down to `unlinked`, so that test never fires; mirrored here.)
pub fn is_unlinked_inode(k: Option<KeyView<'_>>) -> bool {
    let Some((k, v)) = k else { return false };
    if !is_inode(Some((k, v))) {
        return false;
    }
    crate::format::val::inode::unpack(k, v).is_ok_and(|u| u.flags & INODE_UNLINKED != 0)
}

/// `bch2_trigger_inode()`, the parts with derived state: `nr_inodes`
/// accounting (+1 for an inode created, -1 for one deleted) and, when
/// `transactional`, the `deleted_inodes` bit for unlinked inodes.
///
/// Errors: `ENOMEM`.
pub fn trigger_inode(old: Option<KeyView<'_>>, new: Option<KeyView<'_>>, transactional: bool, out: &mut DerivedUpdates) -> Result<(), Errno> {
    let nr = i64::from(is_inode(new)) - i64::from(is_inode(old));
    if nr != 0 {
        out.accounting.add(&DiskAccountingPos::NrInodes, &[nr])?;
    }
    if transactional {
        let d = i32::from(is_unlinked_inode(new)) - i32::from(is_unlinked_inode(old));
        if d != 0 {
            let pos = new.or(old).map(|(k, _)| k.p).unwrap_or_default();
            out.bit(BtreeId::DeletedInodes, pos, d > 0)?;
        }
    }
    Ok(())
}

/// `check_indirect_extent_deleting()`: an indirect extent (`reflink_v`,
/// `indirect_inline_data`) inserted with refcount 0 is deleted instead.
/// [`run_triggers`] (transactional) then runs the trigger as if there
/// were no new key; the commit must write a deleted key in its place.
pub fn indirect_extent_deleting(new: KeyView<'_>) -> bool {
    let (k, v) = new;
    matches!(KeyType::from_u8(k.key_type), Some(KeyType::ReflinkV | KeyType::IndirectInlineData))
        && v.get(..8).is_some_and(|r| r.iter().all(|&b| b == 0))
}

/// `subvolume_children_pos()`: where a subvolume is listed in
/// `subvolume_children` (`fs_path_parent:id`), `None` for a key that is
/// not a subvolume or has no parent.
pub fn subvolume_children_pos(k: Option<KeyView<'_>>) -> Option<Bpos> {
    let (k, v) = k?;
    if k.key_type != KeyType::Subvolume as u8 {
        return None;
    }
    let s = crate::format::val::misc::Subvolume::decode(v);
    (s.fs_path_parent != 0).then(|| Bpos::pos(u64::from(s.fs_path_parent), k.p.offset))
}

/// `bch2_subvolume_trigger()` (transactional): moves the subvolume's
/// `subvolume_children` entry when its parent changes.
///
/// Errors: `ENOMEM`.
pub fn trigger_subvolume(old: Option<KeyView<'_>>, new: Option<KeyView<'_>>, out: &mut DerivedUpdates) -> Result<(), Errno> {
    let (o, n) = (subvolume_children_pos(old), subvolume_children_pos(new));
    if o != n {
        if let Some(p) = o {
            out.bit(BtreeId::SubvolumeChildren, p, false)?;
        }
        if let Some(p) = n {
            out.bit(BtreeId::SubvolumeChildren, p, true)?;
        }
    }
    Ok(())
}

/// Which trigger a key type has (`struct bkey_ops.trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerKind {
    /// No trigger.
    None,
    /// `bch2_trigger_extent`.
    Extent,
    /// `bch2_trigger_reflink_v`: the extent trigger, after
    /// `check_indirect_extent_deleting()`.
    ReflinkV,
    /// `bch2_trigger_reservation`.
    Reservation,
    /// `bch2_trigger_inode`.
    Inode,
    /// `bch2_trigger_alloc`: run [`super::background::trigger_alloc`]
    /// directly, since it modifies the new key.
    Alloc,
    /// `bch2_trigger_reflink_p`.
    ReflinkP,
    /// `bch2_subvolume_trigger` (transactional only).
    Subvolume,
    /// A trigger not implemented here (stripe): refused.  (The snapshot
    /// trigger only updates in-memory state.)
    Unsupported,
}

/// The trigger of key type `ty`.
pub fn trigger_kind(ty: u8) -> TriggerKind {
    use KeyType as T;
    match KeyType::from_u8(ty) {
        Some(T::Extent | T::BtreePtr | T::BtreePtrV2) => TriggerKind::Extent,
        Some(T::ReflinkV) => TriggerKind::ReflinkV,
        Some(T::Reservation) => TriggerKind::Reservation,
        Some(T::Inode | T::InodeV2 | T::InodeV3) => TriggerKind::Inode,
        Some(T::Alloc | T::AllocV2 | T::AllocV3 | T::AllocV4) => TriggerKind::Alloc,
        Some(T::ReflinkP) => TriggerKind::ReflinkP,
        Some(T::Subvolume) => TriggerKind::Subvolume,
        Some(T::Stripe) => TriggerKind::Unsupported,
        _ => TriggerKind::None,
    }
}

/// `btree_node_type_has_triggers()`: leaf keys of these btrees, and every
/// interior key, run triggers.
pub fn btree_has_triggers(btree: u8, level: u8) -> bool {
    level > 0
        || matches!(
            BtreeId::from_u32(u32::from(btree)),
            Some(BtreeId::Extents | BtreeId::Alloc | BtreeId::Inodes | BtreeId::Stripes | BtreeId::Reflink | BtreeId::Subvolumes)
        )
}

#[allow(clippy::too_many_arguments)]
fn run_one(kind: TriggerKind, btree: u8, level: u8, old: Option<KeyView<'_>>, new: Option<KeyView<'_>>, transactional: bool, ctx: &TriggerCtx<'_>, out: &mut DerivedUpdates) -> Result<(), Errno> {
    match kind {
        TriggerKind::None => Ok(()),
        TriggerKind::Extent => trigger_extent(btree, level, old, new, ctx, out),
        TriggerKind::ReflinkV => {
            let new = if transactional && new.is_some_and(indirect_extent_deleting) { None } else { new };
            trigger_extent(btree, level, old, new, ctx, out)
        }
        TriggerKind::Reservation => trigger_reservation(old, new, out),
        TriggerKind::Inode => trigger_inode(old, new, transactional, out),
        TriggerKind::ReflinkP => trigger_reflink_p(old, new, transactional, out),
        TriggerKind::Subvolume if transactional => trigger_subvolume(old, new, out),
        TriggerKind::Subvolume => Ok(()),
        TriggerKind::Alloc | TriggerKind::Unsupported => Err(Errno::EOPNOTSUPP),
    }
}

/// `run_one_trans_trigger()`: runs the triggers of a key going from `old`
/// to `new` in `btree` at `level`: one call when both have the same
/// trigger, else the new key's (as an insert) then the old key's (as an
/// overwrite).  `transactional`: also the updates only the transactional
/// trigger makes (deleted_inodes, subvolume_children).
///
/// Errors: `EOPNOTSUPP` for alloc keys (use
/// [`super::background::trigger_alloc`]) and the unsupported triggers
/// (stripes); those of the triggers.
pub fn run_triggers(
    btree: u8,
    level: u8,
    old: Option<KeyView<'_>>,
    new: Option<KeyView<'_>>,
    transactional: bool,
    ctx: &TriggerCtx<'_>,
    out: &mut DerivedUpdates,
) -> Result<(), Errno> {
    if !btree_has_triggers(btree, level) {
        return Ok(());
    }
    let ok = trigger_kind(old.map_or(0, |(k, _)| k.key_type));
    let nk = trigger_kind(new.map_or(0, |(k, _)| k.key_type));
    if ok == nk {
        run_one(nk, btree, level, old, new, transactional, ctx, out)
    } else {
        run_one(nk, btree, level, None, new, transactional, ctx, out)?;
        run_one(ok, btree, level, old, None, transactional, ctx, out)
    }
}

/// Why a pointer could not be marked in its bucket
/// (`bch2_bucket_ref_update()`'s fsck errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkError {
    /// `ptr_gen_newer_than_bucket_gen`.
    PtrGenNewerThanBucketGen,
    /// `ptr_too_stale`.
    PtrTooStale,
    /// `stale_dirty_ptr`.
    StaleDirtyPtr,
    /// `ptr_bucket_data_type_mismatch`.
    DataTypeMismatch,
    /// `bucket_sector_count_overflow`.
    SectorCountOverflow,
    /// `bucket_metadata_type_mismatch`.
    MetadataTypeMismatch,
    /// A reference to a bucket outside the device.
    InvalidBucket,
}

impl fmt::Display for MarkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MarkError::PtrGenNewerThanBucketGen => "ptr gen newer than bucket gen",
            MarkError::PtrTooStale => "ptr gen too stale",
            MarkError::StaleDirtyPtr => "stale dirty ptr",
            MarkError::DataTypeMismatch => "different types of data in same bucket",
            MarkError::SectorCountOverflow => "sector count overflow",
            MarkError::MetadataTypeMismatch => "different types of metadata in same bucket",
            MarkError::InvalidBucket => "reference to invalid bucket",
        })
    }
}

/// `__mark_pointer()` with `bch2_bucket_ref_update()`: applies a pointer
/// reference to its bucket's state.  A cached pointer of another gen is
/// stale and changes nothing.  On an inconsistency the error is returned;
/// for an overwrite (negative sectors) the data type is still
/// recomputed, as C goes on after logging it.
pub fn mark_pointer(a: &mut AllocV4, r: &BucketRef) -> Result<(), MarkError> {
    let inserting = r.sectors > 0;
    let check = if gen_after(r.ptr_gen, a.gen) {
        Err(MarkError::PtrGenNewerThanBucketGen)
    } else if ptr_too_stale(a.gen, r.ptr_gen) {
        Err(MarkError::PtrTooStale)
    } else if a.gen != r.ptr_gen && r.cached {
        return Ok(());
    } else if a.gen != r.ptr_gen {
        Err(MarkError::StaleDirtyPtr)
    } else if bucket_data_type_mismatch(a.data_type, r.data_type) {
        Err(MarkError::DataTypeMismatch)
    } else {
        Ok(())
    };
    if let Err(e) = check {
        if !inserting {
            alloc_data_type_set(a, r.data_type);
        }
        return Err(e);
    }
    let dst = if r.has_ec {
        &mut a.stripe_sectors
    } else if !r.cached {
        &mut a.dirty_sectors
    } else {
        &mut a.cached_sectors
    };
    let sum = i64::from(*dst) + r.sectors;
    let res = if sum > i64::from(u32::MAX) || sum < 0 {
        if inserting {
            return Err(MarkError::SectorCountOverflow);
        }
        *dst = 0;
        Err(MarkError::SectorCountOverflow)
    } else {
        *dst = sum as u32;
        Ok(())
    };
    alloc_data_type_set(a, r.data_type);
    res
}

/// `bch2_mark_metadata_bucket()` (GC): marks `sectors` of superblock or
/// journal in a bucket of `bucket_size` sectors.
pub fn mark_metadata_bucket(a: &mut AllocV4, m: &MetaMark, bucket_size: u32) -> Result<(), MarkError> {
    if a.data_type != 0 && a.data_type != m.data_type {
        return Err(MarkError::MetadataTypeMismatch);
    }
    if u64::from(a.dirty_sectors) + u64::from(m.sectors) > u64::from(bucket_size) {
        return Err(MarkError::SectorCountOverflow);
    }
    a.data_type = m.data_type;
    a.dirty_sectors += m.sectors;
    Ok(())
}

/// `__bch2_trans_mark_dev_sb()`: the superblock buckets (sectors 0 to
/// `BCH_SB_SECTOR` and each copy of `1 << sb_max_size_bits` sectors at
/// `sb_offsets`) and the journal buckets (`bucket_size` sectors each) of
/// device `dev`.  Buckets past `nbuckets` (a backup superblock beyond the
/// usable space) are skipped; `sb_max_size_bits` is capped at
/// `BCH_SB_LAYOUT_SIZE_BITS_MAX` (16), as the superblock checks enforce.
///
/// Errors: `ENOMEM`.
pub fn mark_dev_sb(
    dev: u8,
    d: &DevInfo,
    sb_offsets: &[u64],
    sb_max_size_bits: u8,
    journal_buckets: &[u64],
    out: &mut DerivedUpdates,
) -> Result<(), Errno> {
    let bs = u64::from(d.bucket_size.max(1));
    let mut bucket = 0u64;
    let mut bucket_sectors = 0u32;
    let flush = |b: u64, s: u32, out: &mut DerivedUpdates| -> Result<(), Errno> {
        if b < d.nbuckets {
            out.meta.push(MetaMark { bucket: Bpos::pos(u64::from(dev), b), data_type: data_type::SB, sectors: s })?;
        }
        Ok(())
    };
    let mark_range = |mut start: u64, end: u64, bucket: &mut u64, bucket_sectors: &mut u32, out: &mut DerivedUpdates| -> Result<(), Errno> {
        loop {
            let b = start / bs;
            let sectors = (b.saturating_add(1).saturating_mul(bs)).min(end).saturating_sub(start);
            if b != *bucket && *bucket_sectors != 0 {
                flush(*bucket, *bucket_sectors, out)?;
                *bucket_sectors = 0;
            }
            *bucket = b;
            *bucket_sectors += u32::try_from(sectors).map_err(|_| Errno::EINVAL)?;
            start += sectors;
            if start >= end || sectors == 0 {
                return Ok(());
            }
        }
    };
    for &offset in sb_offsets {
        if offset == SB_SECTOR {
            mark_range(0, SB_SECTOR, &mut bucket, &mut bucket_sectors, out)?;
        }
        let size = 1u64 << sb_max_size_bits.min(crate::format::sb::SB_LAYOUT_SIZE_BITS_MAX);
        mark_range(offset, offset.saturating_add(size), &mut bucket, &mut bucket_sectors, out)?;
    }
    if bucket_sectors != 0 && bucket < d.nbuckets {
        out.meta.push(MetaMark { bucket: Bpos::pos(u64::from(dev), bucket), data_type: data_type::SB, sectors: bucket_sectors })?;
    }
    for &b in journal_buckets {
        if b < d.nbuckets {
            out.meta.push(MetaMark { bucket: Bpos::pos(u64::from(dev), b), data_type: data_type::JOURNAL, sectors: d.bucket_size })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::val::extent::{encode_entries, CrcKind, ExtentCrc};

    fn devs() -> [Option<DevInfo>; 1] {
        [Some(DevInfo { bucket_size: 128, first_bucket: 1, nbuckets: 1000, durability: 1, failed: false })]
    }

    fn extent(p: Bpos, size: u32, entries: &[ExtentEntry]) -> (Bkey, std::vec::Vec<u8>) {
        let mut v = std::vec![0u8; 64];
        let n = encode_entries(entries, &mut v).unwrap();
        v.truncate(n);
        let mut k = Bkey::new(KeyType::Extent, p, n / 8);
        k.size = size;
        (k, v)
    }

    #[test]
    fn compressed_extent_insert_and_overwrite() {
        let devs = devs();
        let ctx = TriggerCtx { devs: &devs, btree_node_sectors: 512, bucket_gen: None };
        let crc = ExtentCrc {
            kind: CrcKind::Crc32,
            compressed_size: 8,
            uncompressed_size: 32,
            offset: 4,
            nonce: 0,
            csum_type: 0,
            compression_type: 3,
            csum: Default::default(),
        };
        let ptr = ExtentPtr { offset: 128 * 5 + 16, dev: 0, gen: 2, ..Default::default() };
        let (k, v) = extent(Bpos::new(4096, 24, u32::MAX), 20, &[ExtentEntry::Crc(crc), ExtentEntry::Ptr(ptr)]);
        let mut out = DerivedUpdates::new();
        trigger_extent(0, 0, None, Some((&k, &v)), &ctx, &mut out).unwrap();
        // 20 live sectors of 32 compressed into 8: ceil(20 * 8 / 32) = 5.
        assert_eq!(out.buckets.len(), 1);
        assert_eq!((out.buckets[0].bucket, out.buckets[0].sectors), (Bpos::pos(0, 5), 5));
        assert_eq!(out.backpointers[0].pos, Bpos::pos(0, ((5 * 128) << 10) + (16 << 10) + 4));
        assert_eq!(out.backpointers[0].bp.bucket_len, 5);
        out.accounting.normalize();
        let mut r = ReplicasEntry::new(data_type::USER, 1);
        r.add_dev(0).unwrap();
        assert_eq!(out.accounting.get(&DiskAccountingPos::Replicas(r))[0], 5);
        assert_eq!(out.accounting.get(&DiskAccountingPos::Snapshot { id: u32::MAX })[0], 5);
        assert_eq!(out.accounting.get(&DiskAccountingPos::Compression { ty: 3 }), [1, 32, 8]);
        assert_eq!(out.accounting.get(&DiskAccountingPos::Inum { inum: 4096 }), [1, 20, 5]);

        // Overwrite with the same key: nothing.  Delete: everything negated.
        let mut same = DerivedUpdates::new();
        trigger_extent(0, 0, Some((&k, &v)), Some((&k, &v)), &ctx, &mut same).unwrap();
        assert!(same.buckets.is_empty() && same.accounting.is_empty());
        trigger_extent(0, 0, Some((&k, &v)), None, &ctx, &mut out).unwrap();
        out.accounting.normalize();
        out.accounting.drop_zero();
        assert!(out.accounting.is_empty(), "{}", out.accounting);
        assert!(!out.backpointers[1].insert);

        let mut a = AllocV4 { gen: 2, ..Default::default() };
        mark_pointer(&mut a, &out.buckets[0]).unwrap();
        assert_eq!((a.dirty_sectors, a.data_type), (5, data_type::USER));
        mark_pointer(&mut a, &out.buckets[1]).unwrap();
        assert_eq!((a.dirty_sectors, a.data_type), (0, data_type::FREE));
        let stale = BucketRef { ptr_gen: 1, ..out.buckets[0] };
        assert_eq!(mark_pointer(&mut a, &stale), Err(MarkError::StaleDirtyPtr));
    }

    #[test]
    fn cached_pointers_stale_or_not() {
        let devs = devs();
        let gen3 = |_d: u8, _b: u64| Some(3u8);
        let ctx = TriggerCtx { devs: &devs, btree_node_sectors: 512, bucket_gen: Some(&gen3) };
        let dirty = ExtentPtr { offset: 128 * 7, dev: 0, gen: 3, ..Default::default() };
        let cached = ExtentPtr { offset: 128 * 9, dev: 0, gen: 3, cached: true, ..Default::default() };
        let (k, v) = extent(Bpos::new(4100, 8, 1), 8, &[ExtentEntry::Ptr(dirty), ExtentEntry::Ptr(cached)]);
        let mut out = DerivedUpdates::new();
        trigger_extent(0, 0, None, Some((&k, &v)), &ctx, &mut out).unwrap();
        out.accounting.normalize();
        // The cached copy counts on its own, has no backpointer.
        assert_eq!(out.accounting.get(&DiskAccountingPos::Replicas(ReplicasEntry::cached(0)))[0], 8);
        assert_eq!(out.backpointers.len(), 1);
        assert_eq!(out.buckets.len(), 2);
        assert!(out.buckets[1].cached);
        // Stale (gen 2 against bucket gen 3): still referenced, not counted.
        let stale = ExtentPtr { gen: 2, ..cached };
        let (k2, v2) = extent(Bpos::new(4100, 8, 1), 8, &[ExtentEntry::Ptr(dirty), ExtentEntry::Ptr(stale)]);
        let mut out2 = DerivedUpdates::new();
        trigger_extent(0, 0, None, Some((&k2, &v2)), &ctx, &mut out2).unwrap();
        out2.accounting.normalize();
        assert_eq!(out2.accounting.get(&DiskAccountingPos::Replicas(ReplicasEntry::cached(0)))[0], 0);
        let mut a = AllocV4 { gen: 3, ..Default::default() };
        mark_pointer(&mut a, &out2.buckets[1]).unwrap();
        assert_eq!(a, AllocV4 { gen: 3, ..Default::default() });
        mark_pointer(&mut a, &out.buckets[1]).unwrap();
        assert_eq!((a.cached_sectors, a.data_type), (8, data_type::CACHED));
    }

    #[test]
    fn btree_node_pointer_counts_the_node_size() {
        let devs = devs();
        let ctx = TriggerCtx { devs: &devs, btree_node_sectors: 512, bucket_gen: None };
        let ptr = ExtentPtr { offset: 128 * 40, dev: 0, gen: 0, ..Default::default() };
        let mut v = std::vec![0u8; 48];
        crate::format::val::extent::BtreePtrV2 { mem_ptr: 0, seq: 1, sectors_written: 8, flags: 0, min_key: Bpos::pos(0, 0) }
            .encode(&mut v)
            .unwrap();
        v[40..48].copy_from_slice(&ptr.encode().to_le_bytes());
        let k = Bkey::new(KeyType::BtreePtrV2, Bpos::new(u64::MAX, u64::MAX, u32::MAX), 6);
        let mut out = DerivedUpdates::new();
        run_triggers(BtreeId::Dirents as u8, 2, None, Some((&k, &v)), true, &ctx, &mut out).unwrap();
        assert_eq!(out.buckets[0].sectors, 512);
        assert_eq!(out.buckets[0].data_type, data_type::BTREE);
        assert_eq!((out.backpointers[0].bp.level, out.backpointers[0].bp.btree_id), (2, BtreeId::Dirents as u8));
        out.accounting.normalize();
        assert_eq!(out.accounting.get(&DiskAccountingPos::Btree { id: BtreeId::Dirents as u32 })[0], 512);
        // No inum or snapshot counters for node pointers.
        assert_eq!(out.accounting.len(), 2, "{}", out.accounting);
        // Leaf keys of a btree without triggers: nothing.
        let mut none = DerivedUpdates::new();
        run_triggers(BtreeId::Dirents as u8, 0, None, Some((&k, &v)), true, &ctx, &mut none).unwrap();
        assert!(none.buckets.is_empty());
    }

    #[test]
    fn reflink_reservation_inode_and_type_changes() {
        let devs = devs();
        let ctx = TriggerCtx { devs: &devs, btree_node_sectors: 512, bucket_gen: None };
        // reflink_v: refcount u64 first, then entries.
        let ptr = ExtentPtr { offset: 128 * 3 + 2, dev: 0, gen: 0, ..Default::default() };
        let mut v = std::vec![0u8; 16];
        v[0] = 1;
        v[8..16].copy_from_slice(&ptr.encode().to_le_bytes());
        let mut k = Bkey::new(KeyType::ReflinkV, Bpos::new(0, 64, 0), 2);
        k.size = 64;
        let mut out = DerivedUpdates::new();
        run_triggers(BtreeId::Reflink as u8, 0, None, Some((&k, &v)), true, &ctx, &mut out).unwrap();
        assert_eq!(out.backpointers[0].bp.btree_id, BtreeId::Reflink as u8);
        // Inserted with refcount 0: deleted instead, nothing marked.
        let mut v0 = v.clone();
        v0[0] = 0;
        let mut none = DerivedUpdates::new();
        run_triggers(BtreeId::Reflink as u8, 0, None, Some((&k, &v0)), true, &ctx, &mut none).unwrap();
        assert!(none.buckets.is_empty() && none.accounting.is_empty());
        out.accounting.normalize();
        assert_eq!(out.accounting.get(&DiskAccountingPos::Inum { inum: 0 }), [1, 64, 64]);
        assert_eq!(out.accounting.get(&DiskAccountingPos::Snapshot { id: 0 })[0], 0);

        // A reservation replaced by an extent: the extent's trigger runs
        // as an insert, then the reservation's as an overwrite.
        let mut r = Bkey::new(KeyType::Reservation, Bpos::new(4096, 64, 1), 1);
        r.size = 64;
        let rv = [0u8, 0, 0, 0, 2, 0, 0, 0];
        let (e, ev) = extent(Bpos::new(4096, 64, 1), 64, &[ExtentEntry::Ptr(ptr)]);
        let mut out = DerivedUpdates::new();
        run_triggers(0, 0, None, Some((&r, &rv)), true, &ctx, &mut out).unwrap();
        run_triggers(0, 0, Some((&r, &rv)), Some((&e, &ev)), true, &ctx, &mut out).unwrap();
        out.accounting.normalize();
        assert_eq!(out.accounting.get(&DiskAccountingPos::PersistentReserved { nr_replicas: 2 })[0], 0);
        assert_eq!(out.accounting.get(&DiskAccountingPos::Snapshot { id: 1 })[0], 64);

        // Inodes.
        let mut ib = std::vec![0u8; 272];
        let u = crate::format::val::inode::InodeUnpacked { inum: 4097, snapshot: 1, flags: INODE_UNLINKED, ..Default::default() };
        let n = crate::format::val::inode::pack_v3(&u, &mut ib).unwrap();
        ib.truncate(n);
        let ik = Bkey::new(KeyType::InodeV3, Bpos::new(0, 4097, 1), n / 8);
        let mut out = DerivedUpdates::new();
        run_triggers(BtreeId::Inodes as u8, 0, None, Some((&ik, &ib)), true, &ctx, &mut out).unwrap();
        out.accounting.normalize();
        assert_eq!(out.accounting.get(&DiskAccountingPos::NrInodes)[0], 1);
        assert_eq!(out.bits[..], [crate::alloc::BitUpdate { btree: BtreeId::DeletedInodes, pos: ik.p, set: true }]);
        // A reflink pointer: its padded range, then (transactional
        // insert) without the pads.
        let mut pk = Bkey::new(KeyType::ReflinkP, Bpos::new(4096, 64, 1), 2);
        pk.size = 32;
        let mut pv = [0u8; 16];
        pv[..8].copy_from_slice(&100u64.to_le_bytes());
        pv[8] = 4;
        pv[12] = 8;
        let mut out = DerivedUpdates::new();
        run_triggers(0, 0, Some((&pk, &pv)), Some((&pk, &pv)), true, &ctx, &mut out).unwrap();
        assert_eq!(
            out.reflink[..],
            [
                ReflinkRef { start: 96, end: 140, delta: -1, key_pos: pk.p },
                ReflinkRef { start: 100, end: 132, delta: 1, key_pos: pk.p }
            ]
        );
        // A subvolume under subvolume 1.
        let sv = crate::format::val::misc::Subvolume { fs_path_parent: 1, snapshot: 5, inode: 4100, ..Default::default() };
        let svk = Bkey::new(KeyType::Subvolume, Bpos::pos(0, 2), 5);
        let mut out = DerivedUpdates::new();
        run_triggers(BtreeId::Subvolumes as u8, 0, None, Some((&svk, &sv.encode())), true, &ctx, &mut out).unwrap();
        assert_eq!(out.bits[..], [crate::alloc::BitUpdate { btree: BtreeId::SubvolumeChildren, pos: Bpos::pos(1, 2), set: true }]);
        // Stripes are refused.
        let sk = Bkey::new(KeyType::Stripe, Bpos::pos(0, 1), 0);
        assert_eq!(run_triggers(BtreeId::Stripes as u8, 0, None, Some((&sk, &[])), true, &ctx, &mut out), Err(Errno::EOPNOTSUPP));
    }

    #[test]
    fn rebalance_work_follows_the_rebalance_entry() {
        let devs = devs();
        let ctx = TriggerCtx { devs: &devs, btree_node_sectors: 512, bucket_gen: None };
        let ptr = ExtentPtr { offset: 128 * 3, dev: 0, gen: 0, ..Default::default() };
        let rb = crate::format::val::extent::Rebalance { compression: 1, target: 0 };
        let (k, v) = extent(Bpos::new(4096, 16, 1), 16, &[ExtentEntry::Ptr(ptr), ExtentEntry::Rebalance(rb)]);
        assert_eq!(bkey_sectors_need_rebalance(&k, &v, &ctx), Ok(16));
        let mut out = DerivedUpdates::new();
        trigger_extent(0, 0, None, Some((&k, &v)), &ctx, &mut out).unwrap();
        assert_eq!(out.bits[..], [crate::alloc::BitUpdate { btree: BtreeId::RebalanceWork, pos: k.p, set: true }]);
        out.accounting.normalize();
        assert_eq!(out.accounting.get(&DiskAccountingPos::RebalanceWork)[0], 16);
        let grp = crate::format::val::extent::Rebalance { compression: 0, target: 300 };
        let (k, v) = extent(Bpos::new(4096, 16, 1), 16, &[ExtentEntry::Ptr(ptr), ExtentEntry::Rebalance(grp)]);
        assert_eq!(bkey_sectors_need_rebalance(&k, &v, &ctx), Err(Errno::EOPNOTSUPP));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_values_never_panic(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96), size in 0u32..4096, ty in 0u8..40, level in 0u8..4) {
            let devs = devs();
            let g = |_d: u8, b: u64| Some((b & 0xff) as u8);
            let ctx = TriggerCtx { devs: &devs, btree_node_sectors: 512, bucket_gen: Some(&g) };
            let mut k = Bkey::new(KeyType::Extent, Bpos::new(1, 100, 1), v.len() / 8);
            k.key_type = ty;
            k.size = size;
            let mut out = DerivedUpdates::new();
            let _ = run_triggers(0, level, None, Some((&k, &v)), true, &ctx, &mut out);
            let _ = run_triggers(0, level, Some((&k, &v)), None, true, &ctx, &mut out);
            let _ = bkey_sectors_need_rebalance(&k, &v, &ctx);
            let mut a = AllocV4::default();
            for r in out.buckets.iter() {
                let _ = mark_pointer(&mut a, r);
            }
            let _ = std::format!("{out}");
        }
    }

    #[test]
    fn superblock_buckets() {
        let d = DevInfo { bucket_size: 256, first_bucket: 0, nbuckets: 100, durability: 1, failed: false };
        let mut out = DerivedUpdates::new();
        mark_dev_sb(0, &d, &[8, 2056], 11, &[10, 11], &mut out).unwrap();
        let m: std::vec::Vec<(u64, u8, u32)> = out.meta.iter().map(|m| (m.bucket.offset, m.data_type, m.sectors)).collect();
        // 0-8 and 8-2056 fill buckets 0-7 and 8 sectors of bucket 8; the
        // copy at 2056 fills the rest of bucket 8 and up to 4104.
        assert_eq!(m[0], (0, data_type::SB, 256));
        assert_eq!(m[8], (8, data_type::SB, 256));
        assert_eq!(m[16], (16, data_type::SB, 8));
        assert_eq!(m[17..], [(10, data_type::JOURNAL, 256), (11, data_type::JOURNAL, 256)]);
    }
}
