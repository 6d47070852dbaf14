// SPDX-License-Identifier: GPL-2.0
//! Inodes, write side: initialise, allocate a number, write, link counts,
//! and removal.
//!
//! Matches, in `fs/bcachefs/inode.c`: `bch2_inode_init_early()`,
//! `bch2_inode_init_late()`, `bch2_inode_create()`, `bch2_inode_peek()`,
//! `bch2_inode_write()`, `bch2_inode_nlink_inc()`,
//! `bch2_inode_nlink_dec()`, `bch2_inode_rm()` and
//! `bch2_inode_delete_keys()`; `timespec_to_bch2_time()` in `bcachefs.h`.
//!
//! Link counts follow C: `bi_nlink` holds the links beyond the first for
//! files and the subdirectories for directories (the VFS count adds 1 or
//! 2, [`super::nlink_get`]); the last unlink sets `BCH_INODE_unlinked`
//! instead of going below 0.

use super::trans::{commit_do, delete_key, new_key, BtreeTransOps};
use super::{FsFacts, Subvol};
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::str_hash::{HashInfo, StrHashError};
use crate::format::val::inode::{self as val_inode, InodeField, InodeUnpacked, BLOCKDEV_INODE_MAX, INODE_UNLINKED};

const NSEC_PER_SEC: i64 = 1_000_000_000;
/// `S_IFMT`, `S_IFDIR`, `S_ISGID`.
pub(crate) const S_IFMT: u16 = 0o170000;
pub(crate) const S_IFDIR: u16 = 0o040000;
pub(crate) const S_IFREG: u16 = 0o100000;
pub(crate) const S_IFLNK: u16 = 0o120000;
pub(crate) const S_ISGID: u16 = 0o002000;

/// The inode options (`BCH_INODE_OPTS()`), inherited from the parent
/// directory on create and by `bch2_reinherit_attrs()`.
pub const INODE_OPTS: [InodeField; 10] = [
    InodeField::DataChecksum,
    InodeField::Compression,
    InodeField::Project,
    InodeField::BackgroundCompression,
    InodeField::DataReplicas,
    InodeField::PromoteTarget,
    InodeField::ForegroundTarget,
    InodeField::BackgroundTarget,
    InodeField::ErasureCode,
    InodeField::Nocow,
];

/// `timespec_to_bch2_time()`: nanoseconds since the epoch to the stored
/// time (units of `time_precision`, less `time_base_lo`).  The inverse of
/// [`super::time_to_ns`] for times that are whole units.
pub fn time_from_ns(facts: &FsFacts, ns: i64) -> u64 {
    let prec = i64::from(facts.time_precision_ns.max(1));
    let units_per_sec = (NSEC_PER_SEC / prec).max(1);
    let sec = ns.div_euclid(NSEC_PER_SEC);
    let nsec = ns.rem_euclid(NSEC_PER_SEC);
    sec.wrapping_mul(units_per_sec).wrapping_add(nsec / prec).wrapping_sub(facts.time_base_lo as i64) as u64
}

/// `bch2_current_time()`: now, as a stored time.
pub fn current_time<T: BtreeTransOps + ?Sized>(t: &T) -> u64 {
    time_from_ns(t.facts(), t.now_ns())
}

/// `mode_to_type()`: the `DT_*` type of a mode.
pub fn mode_to_type(mode: u16) -> u8 {
    ((mode >> 12) & 15) as u8
}

/// `bch2_hash_info_init()` for inode `u`.  Errors: `EUCLEAN` for an
/// unknown hash type, `EOPNOTSUPP` for `siphash_old`.
pub fn hash_info(u: &InodeUnpacked) -> Result<HashInfo, Errno> {
    HashInfo::new(u.str_hash_type(), u.hash_seed).map_err(|e| match e {
        StrHashError::SiphashOld => Errno::EOPNOTSUPP,
        StrHashError::UnknownType(_) => Errno::EUCLEAN,
    })
}

/// `bch2_inode_init_early()` + `bch2_inode_init_late()`: a new inode of
/// `mode` (type and permissions) owned by `uid`/`gid`, device number
/// `rdev` (character and block devices), all four times `now` (stored
/// units), a random hash seed and the filesystem's string hash type.
/// With a `parent`: the inode options are inherited, and a set-group-ID
/// parent passes on its group (and, to directories, the bit).
pub fn inode_init<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    now: u64,
    uid: u32,
    gid: u32,
    mode: u16,
    rdev: u32,
    parent: Option<&InodeUnpacked>,
) -> InodeUnpacked {
    let mut u = InodeUnpacked { flags: u32::from(t.opts().str_hash & 0xf) << 20, ..InodeUnpacked::default() };
    u.hash_seed = t.random_u64();
    u.mode = mode;
    u.set(InodeField::Uid, u64::from(uid));
    u.set(InodeField::Gid, u64::from(gid));
    u.set(InodeField::Dev, u64::from(rdev));
    for f in [InodeField::Atime, InodeField::Mtime, InodeField::Ctime, InodeField::Otime] {
        u.set(f, now);
    }
    if let Some(p) = parent {
        if p.mode & S_ISGID != 0 {
            u.set(InodeField::Gid, p.get(InodeField::Gid));
            if mode & S_IFMT == S_IFDIR {
                u.mode |= S_ISGID;
            }
        }
        for f in INODE_OPTS {
            u.set(f, p.get(f));
        }
    }
    u
}

/// `bch2_inode_peek()`: inode `inum` in snapshot `snapshot`, pending
/// updates included.  Errors: `ENOENT` when there is none (a hole, a
/// whiteout, an `inode_generation` key); `EUCLEAN` when it does not
/// unpack; restarts, `EIO`, `ENOMEM`.
pub fn inode_peek<T: BtreeTransOps + ?Sized>(t: &mut T, snapshot: u32, inum: u64) -> Result<InodeUnpacked, BchError> {
    let Some(k) = t.peek_slot(BtreeId::Inodes, Bpos::new(0, inum, snapshot))? else {
        return Err(Errno::ENOENT.into());
    };
    match KeyType::from_u8(k.k.key_type) {
        Some(KeyType::Inode | KeyType::InodeV2 | KeyType::InodeV3) => {}
        _ => return Err(Errno::ENOENT.into()),
    }
    val_inode::unpack(&k.k, &k.v).map_err(|_| Errno::EUCLEAN.into())
}

/// `bch2_inode_write()`: packs `u` as `inode_v3` (`bch2_inode_pack()`)
/// and queues it at `0:u.inum:u.snapshot`.  Errors: restarts, `ENOMEM`.
pub fn inode_write<T: BtreeTransOps + ?Sized>(t: &mut T, u: &InodeUnpacked) -> Result<(), BchError> {
    let mut buf = [0u8; 272];
    let n = val_inode::pack_v3(u, &mut buf).ok_or(Errno::EUCLEAN)?;
    let k = new_key(KeyType::InodeV3, Bpos::new(0, u.inum, u.snapshot), &buf[..n])?;
    t.update(BtreeId::Inodes, k)
}

/// `bch2_inode_create()`: finds a free inode number and sets `u.inum`,
/// `u.snapshot` and `u.generation` (from an `inode_generation` key left
/// by a removed inode there).  The search starts at the CPU's hint and
/// wraps once: a number is free when no key of any snapshot has it.  With
/// `shard_inode_numbers` each CPU searches its own range (`cpu <<
/// (bits - shard_bits)`).
///
/// Errors: `ENOSPC` when the range is full; restarts, `EIO`, `ENOMEM`.
pub fn inode_create<T: BtreeTransOps + ?Sized>(t: &mut T, u: &mut InodeUnpacked, snapshot: u32) -> Result<(), BchError> {
    let opts = *t.opts();
    let mut bits: u32 = if opts.inodes_32bit { 31 } else { 63 };
    let cpu = t.cpu();
    let (min, max) = if opts.shard_inode_numbers {
        bits = bits.saturating_sub(opts.inode_shard_bits);
        let lo = cpu.checked_shl(bits).unwrap_or(0);
        let hi = lo | !(u64::MAX << bits);
        (lo.max(BLOCKDEV_INODE_MAX), hi)
    } else {
        (BLOCKDEV_INODE_MAX, !(u64::MAX << bits))
    };
    let mut start = t.unused_inode_hint(cpu);
    if start >= max || start < min {
        start = min;
    }
    let mut pos = start;
    loop {
        // Walk the keys of every snapshot from `pos`; the first gap is
        // free.
        let mut found = false;
        while pos < max {
            let k = t.peek_upto(BtreeId::Inodes, Bpos::new(0, pos, 0), Bpos::new(0, max - 1, u32::MAX), true)?;
            match k {
                Some(k) if k.k.p.offset == pos => pos += 1,
                _ => {
                    found = true;
                    break;
                }
            }
        }
        if found {
            break;
        }
        if start == min {
            return Err(Errno::ENOSPC.into());
        }
        start = min;
        pos = min;
    }
    let slot = t.peek_slot(BtreeId::Inodes, Bpos::new(0, pos, snapshot))?;
    let generation = match slot {
        Some(k) if k.k.key_type == KeyType::InodeGeneration as u8 => {
            u64::from(u32::from_le_bytes([k.v.first().copied().unwrap_or(0), k.v.get(1).copied().unwrap_or(0), k.v.get(2).copied().unwrap_or(0), k.v.get(3).copied().unwrap_or(0)]))
        }
        _ => 0,
    };
    t.set_unused_inode_hint(cpu, pos);
    u.inum = pos;
    u.snapshot = snapshot;
    u.set(InodeField::Generation, generation);
    Ok(())
}

/// `bch2_inode_nlink_inc()`: one more link (or no longer unlinked).
/// Errors: `EMLINK` at the largest count (C returns `EINVAL`; the VFS
/// checks `s_max_links` first and returns `EMLINK`).
pub fn nlink_inc(u: &mut InodeUnpacked) -> Result<(), Errno> {
    if u.flags & INODE_UNLINKED != 0 {
        u.flags &= !INODE_UNLINKED;
        return Ok(());
    }
    let n = u.get(InodeField::Nlink);
    if n >= u64::from(u32::MAX) {
        return Err(Errno::EMLINK);
    }
    u.set(InodeField::Nlink, n + 1);
    Ok(())
}

/// `bch2_inode_nlink_dec()`: one link fewer; the last one sets
/// `BCH_INODE_unlinked`.  Errors: `EUCLEAN` when the inode is already
/// unlinked (C reports a transaction inconsistency).
pub fn nlink_dec(u: &mut InodeUnpacked) -> Result<(), Errno> {
    if u.flags & INODE_UNLINKED != 0 {
        return Err(Errno::EUCLEAN);
    }
    let n = u.get(InodeField::Nlink);
    if n > 0 {
        u.set(InodeField::Nlink, n - 1);
    } else {
        u.flags |= INODE_UNLINKED;
    }
    Ok(())
}

/// `bch2_inode_delete_keys()`: deletes every key of `inum` in `btree`
/// (snapshot `snapshot`), one transaction per key.
fn delete_keys<T: BtreeTransOps + ?Sized>(t: &mut T, btree: BtreeId, inum: u64, snapshot: u32) -> Result<(), Errno> {
    let mut from = Bpos::new(inum, 0, 0);
    let end = Bpos::new(inum, u64::MAX, u32::MAX);
    loop {
        let next = commit_do(t, |t| {
            let mut at = from;
            loop {
                let Some(k) = t.peek_upto(btree, at, end, true)? else { return Ok(None) };
                if k.k.p.snapshot != snapshot {
                    match k.k.p.successor() {
                        Some(n) => {
                            at = n;
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                t.update(btree, delete_key(k.k.p, false))?;
                return Ok(k.k.p.successor());
            }
        })?;
        match next {
            Some(n) if n <= end => from = n,
            _ => return Ok(()),
        }
    }
}

/// `bch2_inode_rm()`: removes inode `inum` of subvolume `sv` and
/// everything it owns: its extents, xattrs and (for a directory, whose
/// entries are gone already) dirent whiteouts, then replaces the inode
/// with an `inode_generation` key holding the next generation.  Each step
/// is its own transaction, as in C.
///
/// Errors: `EUCLEAN` when the inode is not there; `EIO`, `ENOMEM`.
pub fn inode_rm<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64) -> Result<(), Errno> {
    for btree in [BtreeId::Extents, BtreeId::Xattrs, BtreeId::Dirents] {
        delete_keys(t, btree, inum, sv.snapshot)?;
    }
    commit_do(t, |t| {
        let u = match inode_peek(t, sv.snapshot, inum) {
            Err(BchError::Errno(Errno::ENOENT)) => return Err(Errno::EUCLEAN.into()),
            r => r?,
        };
        let gen = (u.get(InodeField::Generation) as u32).wrapping_add(1);
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&gen.to_le_bytes());
        let k = new_key(KeyType::InodeGeneration, Bpos::new(0, inum, sv.snapshot), &v)?;
        t.update(BtreeId::Inodes, k)
    })
}
