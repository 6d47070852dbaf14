// SPDX-License-Identifier: GPL-2.0
//! Directories, read side: name lookup by string hash and listing in hash
//! order.
//!
//! Matches, in `fs/bcachefs`: `bch2_dirent_lookup()`,
//! `bch2_dirent_lookup_trans()`, `bch2_dirent_read_target()` and
//! `bch2_readdir()` in `dirent.c`, `bch2_hash_lookup_in_snapshot()` and
//! `is_visible_key()` in `str_hash.h`, `vfs_d_type()` in `dirent.h`.
//!
//! A directory's entries sit at `dir:hash(name):snapshot` in the dirents
//! btree, the hash keyed by the directory's `bi_hash_seed` and type
//! ([`HashInfo::dirent_hash`], never below 2: offsets 0 and 1 are `.` and
//! `..`).  Names that hash alike take the next free offsets after the hash
//! (open addressing); a deleted entry whose slot is inside such a chain is
//! left as a `hash_whiteout` so lookups keep probing past it.  A lookup
//! therefore walks consecutive offsets from the hash: the name → found; a
//! `hash_whiteout` or another (visible) entry → keep going; anything else,
//! a hole included → not there.

use super::subvolume::subvol_get;
use super::{BtreeRead, DirEntry, InodeAttrs, Subvol};
use crate::errcode::Errno;
use crate::format::bkey::{BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::str_hash::{HashInfo, StrHashError};
use crate::format::val::dirent::{parse_dirent, Dirent, BCH_NAME_MAX, DT_SUBVOL};

/// `DT_DIR`: what a subvolume entry looks like to the VFS.
pub const DT_DIR: u8 = 4;

/// `vfs_d_type()`: `DT_SUBVOL` entries are directories to the VFS.
pub fn vfs_d_type(t: u8) -> u8 {
    if t == DT_SUBVOL {
        DT_DIR
    } else {
        t
    }
}

/// Where a directory entry leads (`bch2_dirent_read_target()`), with the
/// entry's own type and position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirentTarget {
    /// Target inode number (for a subvolume entry: that subvolume's root
    /// inode).
    pub inum: u64,
    /// Subvolume the target lives in: the directory's, or for a
    /// `DT_SUBVOL` entry the child subvolume.
    pub subvol: u32,
    /// The entry's `d_type` as stored (`DT_SUBVOL` included); the VFS
    /// wants [`vfs_d_type`] of it.
    pub d_type: u8,
    /// The entry's offset in the directory (its hash slot).
    pub offset: u64,
}

/// The hash parameters of directory `dir` (`bch2_hash_info_init()`).
///
/// Errors: `EUCLEAN` for an unknown hash type; `EOPNOTSUPP` for
/// `siphash_old`.
pub fn dir_hash_info(dir: &InodeAttrs) -> Result<HashInfo, Errno> {
    HashInfo::new(dir.hash_type, dir.hash_seed).map_err(|e| match e {
        StrHashError::SiphashOld => Errno::EOPNOTSUPP,
        StrHashError::UnknownType(_) => Errno::EUCLEAN,
    })
}

/// `dirent_is_visible()`: a subvolume entry is visible only from the
/// subvolume it was made in.
fn dirent_visible(sv: &Subvol, d: &Dirent<'_>) -> bool {
    d.d_type != DT_SUBVOL || d.parent_subvol == sv.id
}

/// `bch2_dirent_read_target()` for a visible entry at `offset`.
///
/// Errors (subvolume entries): those of [`subvol_get`], with a missing
/// child subvolume reported as `EUCLEAN` (C treats it as an
/// inconsistency).
fn read_target<T: BtreeRead + ?Sized>(fs: &T, sv: &Subvol, d: &Dirent<'_>, offset: u64) -> Result<DirentTarget, Errno> {
    if d.d_type != DT_SUBVOL {
        return Ok(DirentTarget { inum: d.inum, subvol: sv.id, d_type: d.d_type, offset });
    }
    let child = match subvol_get(fs, d.child_subvol) {
        Err(Errno::ENOENT) => return Err(Errno::EUCLEAN),
        r => r?,
    };
    Ok(DirentTarget { inum: child.root_inum, subvol: child.id, d_type: DT_SUBVOL, offset })
}

/// Looks `name` up in directory `dir` and returns where the entry leads
/// (`bch2_dirent_lookup_trans()`), `None` when there is no such entry.
///
/// Only keys of `sv.snapshot` are considered.  Errors: `ENAMETOOLONG` for
/// names longer than `BCH_NAME_MAX` (512: no entry can have one);
/// `EUCLEAN`/`EOPNOTSUPP` for a directory hash type we cannot compute or a
/// subvolume entry whose subvolume is missing; `EIO`, `ENOMEM`.
pub fn lookup_entry<T: BtreeRead + ?Sized>(
    fs: &T,
    sv: &Subvol,
    dir: &InodeAttrs,
    name: &[u8],
) -> Result<Option<DirentTarget>, Errno> {
    if name.len() > BCH_NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() {
        return Ok(None);
    }
    let info = dir_hash_info(dir)?;
    let mut offset = info.dirent_hash(name);
    loop {
        let pos = Bpos::new(dir.inum, offset, sv.snapshot);
        let Some(k) = fs.peek_upto(BtreeId::Dirents, pos, pos, true)? else {
            return Ok(None);
        };
        match KeyType::from_u8(k.k.key_type) {
            Some(KeyType::Dirent) => {
                let d = parse_dirent(&k.v);
                if !dirent_visible(sv, &d) {
                    // C's probe stops at an entry it cannot see.
                    return Ok(None);
                }
                if d.name == name {
                    return read_target(fs, sv, &d, offset).map(Some);
                }
            }
            Some(KeyType::HashWhiteout) => {}
            _ => return Ok(None),
        }
        offset = match offset.checked_add(1) {
            Some(o) => o,
            None => return Ok(None),
        };
    }
}

/// Looks `name` up in directory `dir` (`bch2_dirent_lookup`): hash the
/// name with the directory's hash type and seed, then probe from that
/// offset over collisions and `hash_whiteout`s until the name or a hole.
/// Returns the target inode number and `DT_*` type as the VFS sees it
/// ([`vfs_d_type`]: a subvolume entry is `DT_DIR`, its inode the child
/// subvolume's root; see [`lookup_entry`] for the subvolume), `None` when
/// absent.
///
/// Errors: `ENAMETOOLONG` (> `BCH_NAME_MAX`, 512 bytes, as 6.12 allows
/// names up to that); `EUCLEAN`, `EOPNOTSUPP` (hash type); `EIO`, `ENOMEM`.
pub fn lookup<T: BtreeRead + ?Sized>(fs: &T, sv: &Subvol, dir: &InodeAttrs, name: &[u8]) -> Result<Option<(u64, u8)>, Errno> {
    Ok(lookup_entry(fs, sv, dir, name)?.map(|t| (t.inum, vfs_d_type(t.d_type))))
}

/// Lists directory `dir` from position `pos` (0: the start; `.` and `..`
/// are the VFS's), calling `emit` for each entry in hash order until it
/// returns `false` (`bch2_readdir`).
///
/// Entries of other snapshots, subvolume entries made in other
/// subvolumes and entries with an empty name are skipped.  `d_type` is
/// [`vfs_d_type`] of the stored type.
///
/// Errors: `EUCLEAN` (a subvolume entry whose subvolume is missing); `EIO`,
/// `ENOMEM`.
pub fn readdir<T: BtreeRead + ?Sized>(
    fs: &T,
    sv: &Subvol,
    dir: &InodeAttrs,
    pos: u64,
    emit: &mut dyn FnMut(DirEntry<'_>) -> bool,
) -> Result<(), Errno> {
    let end = Bpos::new(dir.inum, u64::MAX, u32::MAX);
    let mut from = Bpos::new(dir.inum, pos, 0);
    loop {
        let Some(k) = fs.peek_upto(BtreeId::Dirents, from, end, false)? else {
            return Ok(());
        };
        let p = k.k.p;
        // The next search starts after this key whatever it is.
        let next = p.successor();
        if p.snapshot == sv.snapshot && k.k.key_type == KeyType::Dirent as u8 {
            let d = parse_dirent(&k.v);
            if dirent_visible(sv, &d) && !d.name.is_empty() {
                let t = read_target(fs, sv, &d, p.offset)?;
                let e = DirEntry {
                    name: d.name,
                    inum: t.inum,
                    d_type: vfs_d_type(d.d_type),
                    next_pos: p.offset.saturating_add(1),
                };
                if !emit(e) {
                    return Ok(());
                }
            }
        }
        match next {
            Some(n) if n <= end => from = n,
            _ => return Ok(()),
        }
    }
}
