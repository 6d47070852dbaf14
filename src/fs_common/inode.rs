// SPDX-License-Identifier: GPL-2.0
//! Inodes, read side: find an inode in a subvolume's snapshot and turn it
//! into the attributes `getattr` reports.
//!
//! Matches `bch2_inode_find_by_inum_snapshot()` / `bch2_inode_peek()` in
//! `fs/bcachefs/inode.c`, `bch2_inode_nlink_get()` in `inode.h`,
//! `bch2_inode_update_after_write()` and `bch2_vfs_inode_init()` in
//! `fs.c`, and `bch2_time_to_timespec()` in `bcachefs.h`.
//!
//! An inode's key sits at `0:inum:snapshot` in the inodes btree; its value
//! is `inode`, `inode_v2` or `inode_v3`
//! ([`crate::format::val::inode::unpack`]).

use super::{BtreeRead, FsFacts, InodeAttrs, Subvol};
use crate::errcode::Errno;
use crate::format::bkey::{BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::val::inode::{self as val_inode, InodeField, InodeUnpacked, INODE_UNLINKED};

/// Mask of the `BCH_INODE_*` flag bits of `bi_flags` (bits 0-19; above
/// them sit the string hash type and packing fields).
pub const INODE_FLAGS_MASK: u32 = (1 << 20) - 1;

const NSEC_PER_SEC: i64 = 1_000_000_000;

/// `S_IFMT` and `S_IFDIR`.
const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;

/// Converts a stored time to nanoseconds since the epoch, as
/// `bch2_time_to_timespec()` does: add `time_base_lo` (already in stored
/// units), split into seconds with `time_units_per_sec = 1e9 /
/// time_precision` (truncating, as `div_s64_rem()`), and scale the
/// remainder by `time_precision`.  A `time_precision` of 0 (an invalid
/// superblock) is taken as 1.  Saturates at the ends of `i64`.
pub fn time_to_ns(facts: &FsFacts, stored: u64) -> i64 {
    // 64-bit arithmetic only: the kernel has no 128-bit division.
    let prec = i64::from(facts.time_precision_ns.max(1));
    let units_per_sec = (NSEC_PER_SEC / prec).max(1);
    // The unpacked field is a u64 C uses as an s64; the base is added
    // with wrap-around as C's s64 addition would on real machines.
    let t = (stored as i64).wrapping_add(facts.time_base_lo as i64);
    let sec = t / units_per_sec;
    let rem = t % units_per_sec;
    sec.saturating_mul(NSEC_PER_SEC).saturating_add(rem.saturating_mul(prec))
}

/// `bch2_inode_nlink_get()`: the link count the VFS sees: 0 for an
/// unlinked inode, else `bi_nlink` plus 2 for directories and 1 for
/// anything else (saturating).
pub fn nlink_get(u: &InodeUnpacked) -> u32 {
    if u.flags & INODE_UNLINKED != 0 {
        return 0;
    }
    let bias = if u.mode & S_IFMT == S_IFDIR { 2 } else { 1 };
    (u.get(InodeField::Nlink) as u32).saturating_add(bias)
}

/// The attributes of an unpacked inode, as `bch2_vfs_inode_init()` sets
/// them on the VFS inode.
pub fn attrs_from_unpacked(facts: &FsFacts, u: &InodeUnpacked) -> InodeAttrs {
    InodeAttrs {
        inum: u.inum,
        mode: u.mode,
        uid: u.get(InodeField::Uid) as u32,
        gid: u.get(InodeField::Gid) as u32,
        size: u.size,
        sectors: u.sectors,
        nlink: nlink_get(u),
        rdev: u.get(InodeField::Dev) as u32,
        generation: u.get(InodeField::Generation) as u32,
        atime_ns: time_to_ns(facts, u.get(InodeField::Atime)),
        mtime_ns: time_to_ns(facts, u.get(InodeField::Mtime)),
        ctime_ns: time_to_ns(facts, u.get(InodeField::Ctime)),
        otime_ns: time_to_ns(facts, u.get(InodeField::Otime)),
        flags: u.flags & INODE_FLAGS_MASK,
        hash_type: u.str_hash_type(),
        hash_seed: u.hash_seed,
    }
}

/// Reads and unpacks inode `inum` in snapshot `snapshot`.
///
/// Errors: `ENOENT` when there is no inode key there (a hole, a whiteout
/// or another key type); `EUCLEAN` when the value does not unpack; `EIO`,
/// `ENOMEM` from the btree.
pub fn inode_unpacked_get<T: BtreeRead + ?Sized>(fs: &T, snapshot: u32, inum: u64) -> Result<InodeUnpacked, Errno> {
    let pos = Bpos::new(0, inum, snapshot);
    let Some(k) = fs.peek_upto(BtreeId::Inodes, pos, pos, false)? else {
        return Err(Errno::ENOENT);
    };
    match KeyType::from_u8(k.k.key_type) {
        Some(KeyType::Inode | KeyType::InodeV2 | KeyType::InodeV3) => {}
        _ => return Err(Errno::ENOENT),
    }
    val_inode::unpack(&k.k, &k.v).map_err(|_| Errno::EUCLEAN)
}

/// Inode `inum` of subvolume `sv` (`bch2_inode_find_by_inum_snapshot`).
///
/// Errors: `ENOENT` when there is none; `EUCLEAN` when it does not unpack;
/// `EIO`, `ENOMEM`.
pub fn inode_get<T: BtreeRead + ?Sized>(fs: &T, sv: &Subvol, inum: u64) -> Result<InodeAttrs, Errno> {
    let u = inode_unpacked_get(fs, sv.snapshot, inum)?;
    Ok(attrs_from_unpacked(fs.facts(), &u))
}
