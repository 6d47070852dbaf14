// SPDX-License-Identifier: GPL-2.0
//! Subvolumes, read side: where a subvolume's files live (its snapshot id
//! and root inode), from the subvolumes btree.
//!
//! Matches `bch2_subvolume_get()` and `bch2_subvolume_get_snapshot()` in
//! `fs/bcachefs/subvolume.c`; the value is `struct bch_subvolume`
//! (`subvolume_format.h`, decoded by [`crate::format::val::misc::Subvolume`]).
//! A subvolume's key sits at `0:id:0`.

use super::{BtreeRead, Subvol};
use crate::errcode::Errno;
use crate::format::bkey::{BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::val::misc::Subvolume;

/// `BCACHEFS_ROOT_SUBVOL`: the subvolume every filesystem starts with.
pub const BCACHEFS_ROOT_SUBVOL: u32 = 1;

/// Subvolume `id` from the subvolumes btree (`bch2_subvolume_get()`).
///
/// Errors: `ENOENT` when there is no such subvolume; `EUCLEAN` when its
/// value names snapshot 0 or inode 0; `EIO`, `ENOMEM` from the btree.
pub fn subvol_get<T: BtreeRead + ?Sized>(fs: &T, id: u32) -> Result<Subvol, Errno> {
    let pos = Bpos::pos(0, u64::from(id));
    let Some(k) = fs.peek_upto(BtreeId::Subvolumes, pos, pos, false)? else {
        return Err(Errno::ENOENT);
    };
    if k.k.key_type != KeyType::Subvolume as u8 {
        return Err(Errno::ENOENT);
    }
    let s = Subvolume::decode(&k.v);
    if s.snapshot == 0 || s.inode == 0 {
        return Err(Errno::EUCLEAN);
    }
    Ok(Subvol { id, snapshot: s.snapshot, root_inum: s.inode })
}

/// The root subvolume (`BCACHEFS_ROOT_SUBVOL`) from the subvolumes btree.
///
/// Errors: `EUCLEAN` when it is missing or its value is bad; `EIO`,
/// `ENOMEM`.
pub fn root_subvol<T: BtreeRead + ?Sized>(fs: &T) -> Result<Subvol, Errno> {
    match subvol_get(fs, BCACHEFS_ROOT_SUBVOL) {
        Err(Errno::ENOENT) => Err(Errno::EUCLEAN),
        r => r,
    }
}
