// SPDX-License-Identifier: GPL-2.0
//! Hashed tables in a btree, write side: the open-addressing rules of
//! `fs/bcachefs/str_hash.h` for directory entries and xattrs.
//!
//! Matches `bch2_hash_lookup_in_snapshot()`, `bch2_hash_hole()`,
//! `bch2_hash_needs_whiteout()`, `bch2_hash_set_or_get_in_snapshot()`,
//! `bch2_hash_set_in_snapshot()`, `bch2_hash_delete_at()` and
//! `bch2_hash_delete()`.
//!
//! An entry lives at `inum:hash(key):snapshot` or, when that slot is
//! taken, at the first slot after it that is not (probing one offset at a
//! time).  Lookups walk from the hash over visible entries and
//! `hash_whiteout`s to the key or a hole.  Deleting an entry leaves a
//! `hash_whiteout` when some entry further along the chain hashes at or
//! before the deleted slot (it would otherwise become unreachable), and a
//! plain deletion otherwise.

use super::trans::BtreeTransOps;
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{BkeyI, BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::str_hash::HashInfo;
use crate::format::val::dirent::{parse_dirent, parse_xattr, DT_SUBVOL};

/// Which table (`struct bch_hash_desc`): `bch2_dirent_hash_desc` or
/// `bch2_xattr_hash_desc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashDesc {
    /// Directory entries, seen from subvolume `subvol`
    /// (`dirent_is_visible()`).
    Dirent {
        /// The subvolume the lookup is made from.
        subvol: u32,
    },
    /// Extended attributes.
    Xattr,
}

/// What a table is searched for: a dirent name, or an xattr type and name
/// (`struct xattr_search_key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKey<'a> {
    /// A directory entry's name.
    Dirent(&'a [u8]),
    /// An xattr's type (`KEY_TYPE_XATTR_INDEX_*`) and name.
    Xattr(u8, &'a [u8]),
}

impl HashDesc {
    /// The btree of the table.
    pub fn btree(self) -> BtreeId {
        match self {
            HashDesc::Dirent { .. } => BtreeId::Dirents,
            HashDesc::Xattr => BtreeId::Xattrs,
        }
    }

    /// The key type of live entries.
    pub fn key_type(self) -> KeyType {
        match self {
            HashDesc::Dirent { .. } => KeyType::Dirent,
            HashDesc::Xattr => KeyType::Xattr,
        }
    }

    /// `is_visible_key()`: a live entry this lookup can see.
    pub fn is_visible(self, k: &BkeyI) -> bool {
        if k.k.key_type != self.key_type() as u8 {
            return false;
        }
        match self {
            HashDesc::Dirent { subvol } => {
                let d = parse_dirent(&k.v);
                d.d_type != DT_SUBVOL || d.parent_subvol == subvol
            }
            HashDesc::Xattr => true,
        }
    }

    /// `hash_bkey()`: the hash of the entry `k` holds.
    pub fn hash_bkey(self, info: &HashInfo, k: &BkeyI) -> u64 {
        match self {
            HashDesc::Dirent { .. } => info.dirent_hash(parse_dirent(&k.v).name),
            HashDesc::Xattr => match parse_xattr(&k.v) {
                Some(x) => info.xattr_hash(x.x_type, x.name),
                None => 0,
            },
        }
    }

    /// Whether entry `k` is the one searched for (`cmp_key() == 0`).
    pub fn matches(self, k: &BkeyI, key: &HashKey<'_>) -> bool {
        match key {
            HashKey::Dirent(name) => parse_dirent(&k.v).name == *name,
            HashKey::Xattr(ty, name) => {
                parse_xattr(&k.v).is_some_and(|x| x.x_type == *ty && usize::from(x.name_len) == name.len() && x.name == *name)
            }
        }
    }
}

/// `hash_key()`: where the search for `key` starts.
pub fn hash_of(info: &HashInfo, key: &HashKey<'_>) -> u64 {
    match key {
        HashKey::Dirent(name) => info.dirent_hash(name),
        HashKey::Xattr(ty, name) => info.xattr_hash(*ty, name),
    }
}

/// `bch2_hash_lookup_in_snapshot()`: the entry for `key` in the table of
/// `inum`, with its position.  Errors: `ENOENT` when absent; restarts,
/// `EIO`, `ENOMEM`.
pub fn hash_lookup<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    desc: HashDesc,
    info: &HashInfo,
    inum: u64,
    snapshot: u32,
    key: &HashKey<'_>,
) -> Result<BkeyI, BchError> {
    let mut off = hash_of(info, key);
    loop {
        let k = t.peek_slot(desc.btree(), Bpos::new(inum, off, snapshot))?;
        match k {
            Some(k) if desc.is_visible(&k) => {
                if desc.matches(&k, key) {
                    return Ok(k);
                }
            }
            Some(k) if k.k.key_type == KeyType::HashWhiteout as u8 => {}
            _ => return Err(Errno::ENOENT.into()),
        }
        off = off.checked_add(1).ok_or(Errno::ENOENT)?;
    }
}

/// `bch2_hash_hole()`: the first slot from `key`'s hash that holds no
/// visible entry.  Errors: `ENOSPC` when the table is full to the end;
/// restarts, `EIO`, `ENOMEM`.
pub fn hash_hole<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    desc: HashDesc,
    info: &HashInfo,
    inum: u64,
    snapshot: u32,
    key: &HashKey<'_>,
) -> Result<Bpos, BchError> {
    let mut off = hash_of(info, key);
    loop {
        let p = Bpos::new(inum, off, snapshot);
        match t.peek_slot(desc.btree(), p)? {
            Some(k) if desc.is_visible(&k) => {}
            _ => return Ok(p),
        }
        off = off.checked_add(1).ok_or(Errno::ENOSPC)?;
    }
}

/// `bch2_hash_needs_whiteout()`: whether deleting the entry at `pos`
/// must leave a `hash_whiteout`: some entry after it in the same chain
/// (before the next hole) hashes at or before `pos`.
pub fn hash_needs_whiteout<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    desc: HashDesc,
    info: &HashInfo,
    pos: Bpos,
) -> Result<bool, BchError> {
    let mut off = pos.offset;
    loop {
        off = match off.checked_add(1) {
            Some(o) => o,
            None => return Ok(false),
        };
        let Some(k) = t.peek_slot(desc.btree(), Bpos::new(pos.inode, off, pos.snapshot))? else {
            return Ok(false);
        };
        if k.k.key_type == desc.key_type() as u8 {
            if desc.hash_bkey(info, &k) <= pos.offset {
                return Ok(true);
            }
        } else if k.k.key_type != KeyType::HashWhiteout as u8 {
            return Ok(false);
        }
    }
}

/// Flags of [`hash_set`] (`STR_HASH_must_create`, `STR_HASH_must_replace`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashSetFlags {
    /// Fail with `EEXIST` when the key is already there.
    pub must_create: bool,
    /// Fail with `ENOENT` when it is not.
    pub must_replace: bool,
}

/// `bch2_hash_set_in_snapshot()`: inserts `insert` (its position's inode
/// and snapshot set by the caller) into the table: over the existing
/// entry with the same key, else into the first free slot (a hole or a
/// `hash_whiteout`) of its chain.  Returns the slot's offset.
///
/// Errors: `EEXIST` (`must_create` and present); `ENOENT`
/// (`must_replace` and absent); `ENOSPC` (no slot up to the end of the
/// table); restarts, `EIO`, `ENOMEM`.
pub fn hash_set<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    desc: HashDesc,
    info: &HashInfo,
    key: &HashKey<'_>,
    mut insert: BkeyI,
    flags: HashSetFlags,
) -> Result<u64, BchError> {
    let inum = insert.k.p.inode;
    let snapshot = insert.k.p.snapshot;
    let mut off = hash_of(info, key);
    let mut slot: Option<u64> = None;
    let (at, found) = loop {
        let p = Bpos::new(inum, off, snapshot);
        match t.peek_slot(desc.btree(), p)? {
            Some(k) if desc.is_visible(&k) => {
                if desc.matches(&k, key) {
                    break (off, true);
                }
            }
            k => {
                if slot.is_none() && !flags.must_replace {
                    slot = Some(off);
                }
                let whiteout = k.is_some_and(|k| k.k.key_type == KeyType::HashWhiteout as u8);
                if !whiteout {
                    break (off, false);
                }
            }
        }
        off = off.checked_add(1).ok_or(Errno::ENOSPC)?;
    };
    if found && flags.must_create {
        return Err(Errno::EEXIST.into());
    }
    if !found && flags.must_replace {
        return Err(Errno::ENOENT.into());
    }
    let at = if found { at } else { slot.unwrap_or(at) };
    insert.k.p = Bpos::new(inum, at, snapshot);
    t.update(desc.btree(), insert)?;
    Ok(at)
}

/// `bch2_hash_delete_at()`: deletes the entry at `pos`, leaving a
/// `hash_whiteout` when the chain needs one.
pub fn hash_delete_at<T: BtreeTransOps + ?Sized>(t: &mut T, desc: HashDesc, info: &HashInfo, pos: Bpos) -> Result<(), BchError> {
    let wh = hash_needs_whiteout(t, desc, info, pos)?;
    t.update(desc.btree(), super::trans::delete_key(pos, wh))
}

/// `bch2_hash_delete()`: looks `key` up and deletes it.  Errors: `ENOENT`
/// when absent; restarts, `EIO`, `ENOMEM`.
pub fn hash_delete<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    desc: HashDesc,
    info: &HashInfo,
    inum: u64,
    snapshot: u32,
    key: &HashKey<'_>,
) -> Result<(), BchError> {
    let k = hash_lookup(t, desc, info, inum, snapshot, key)?;
    hash_delete_at(t, desc, info, k.k.p)
}
