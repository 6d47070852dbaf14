// SPDX-License-Identifier: GPL-2.0
//! POSIX ACLs: the on-disk value, get and set in a transaction, `chmod`,
//! and the inheritance of a directory's default ACL on create.
//!
//! Matches, in `fs/bcachefs/acl.c`: `bch2_acl_from_disk()`,
//! `bch2_acl_to_xattr()`, `bch2_get_acl()`, `bch2_set_acl_trans()`,
//! `bch2_set_acl()` and `bch2_acl_chmod()`; and, for callers without a
//! VFS (host tests, the tool), the rules of `fs/posix_acl.c` they rely on:
//! `posix_acl_valid()`, `posix_acl_equiv_mode()`,
//! `posix_acl_create_masq()`, `__posix_acl_chmod()` and
//! `posix_acl_create()`.
//!
//! An ACL is stored as an xattr of type
//! [`XATTR_INDEX_POSIX_ACL_ACCESS`] or [`XATTR_INDEX_POSIX_ACL_DEFAULT`]
//! with an empty name, in the xattrs btree at `inum:hash(type, ""):snapshot`
//! ([`super::str_hash_write`]).  Its value (`acl.h`): a header
//! (`bch_acl_header`: `a_version` = [`BCH_ACL_VERSION`], `__le32`), then
//! one entry per ACL entry, in the ACL's order: `bch_acl_entry_short`
//! (`e_tag`, `e_perm`, `__le16` each; 4 bytes) for [`ACL_USER_OBJ`],
//! [`ACL_GROUP_OBJ`], [`ACL_MASK`] and [`ACL_OTHER`]; `bch_acl_entry`
//! (the same plus `e_id`, `__le32`, a uid or gid of the initial user
//! namespace; 8 bytes) for [`ACL_USER`] and [`ACL_GROUP`].

use super::inode_write::{current_time, hash_info, inode_peek, inode_write, S_IFDIR, S_IFLNK, S_IFMT};
use super::str_hash_write::{hash_delete, hash_lookup, hash_set, HashDesc, HashKey, HashSetFlags};
use super::trans::{commit_do, new_key, BtreeTransOps};
use super::Subvol;
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{KeyType, BKEY_U64S};
use crate::format::bpos::Bpos;
use crate::format::val::dirent::{acl_disk_entries, acl_tag_is_long as is_long, encode_xattr, parse_xattr, xattr_val_u64s};
pub use crate::format::val::dirent::{
    ACL_ENTRY_BYTES, ACL_ENTRY_SHORT_BYTES, ACL_GROUP, ACL_GROUP_OBJ, ACL_HEADER_BYTES, ACL_MASK, ACL_OTHER, ACL_UNDEFINED_ID, ACL_USER,
    ACL_USER_OBJ, BCH_ACL_VERSION,
};
use crate::format::val::inode::{InodeField, InodeUnpacked};
use crate::platform::Vec;

/// `KEY_TYPE_XATTR_INDEX_POSIX_ACL_ACCESS`.
pub const XATTR_INDEX_POSIX_ACL_ACCESS: u8 = 1;
/// `KEY_TYPE_XATTR_INDEX_POSIX_ACL_DEFAULT`.
pub const XATTR_INDEX_POSIX_ACL_DEFAULT: u8 = 2;
/// `EACCES`: a default ACL on something that is not a directory.
pub const EACCES: Errno = Errno(13);
/// `E2BIG`: an ACL too big for one key.
pub const E2BIG: Errno = Errno(7);

const S_IRWXU: u16 = 0o700;
const S_IRWXG: u16 = 0o070;
const S_IRWXO: u16 = 0o007;
const S_IRWXUGO: u16 = 0o777;
/// `S_ISGID`.
pub const S_ISGID: u16 = 0o2000;

/// Which of an inode's two ACLs (`ACL_TYPE_ACCESS`, `ACL_TYPE_DEFAULT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclType {
    /// The access ACL: who may do what to the inode.
    Access,
    /// A directory's default ACL: what inodes created in it inherit.
    Default,
}

impl AclType {
    /// `acl_to_xattr_type()`: the xattr type the ACL is stored under.
    pub fn xattr_type(self) -> u8 {
        match self {
            AclType::Access => XATTR_INDEX_POSIX_ACL_ACCESS,
            AclType::Default => XATTR_INDEX_POSIX_ACL_DEFAULT,
        }
    }
}

/// One ACL entry (`struct posix_acl_entry`): tag (`ACL_*`), permission
/// bits (`rwx` = 4, 2, 1) and, for [`ACL_USER`]/[`ACL_GROUP`], the uid or
/// gid in the initial user namespace ([`ACL_UNDEFINED_ID`] for others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclEntry {
    /// `e_tag`.
    pub tag: u16,
    /// `e_perm`.
    pub perm: u16,
    /// `e_uid`/`e_gid`.
    pub id: u32,
}

impl AclEntry {
    /// An entry without an id (owner, owning group, mask, other).
    pub const fn short(tag: u16, perm: u16) -> AclEntry {
        AclEntry { tag, perm, id: ACL_UNDEFINED_ID }
    }
}

/// `bch2_acl_size()` over `acl`: the on-disk value's length, bytes.
/// Errors: `EINVAL` (an unknown tag).
pub fn acl_disk_size(acl: &[AclEntry]) -> Result<usize, Errno> {
    let mut n = ACL_HEADER_BYTES;
    for e in acl {
        n += if is_long(e.tag).ok_or(Errno::EINVAL)? { ACL_ENTRY_BYTES } else { ACL_ENTRY_SHORT_BYTES };
    }
    Ok(n)
}

/// The value half of `bch2_acl_to_xattr()`: `acl` in the on-disk format,
/// replacing the contents of `out`.  Errors: `EINVAL` (an unknown tag),
/// `E2BIG` (too big for one key: `BKEY_U64s` + the value over 255 u64s),
/// `ENOMEM`.
pub fn acl_to_disk(acl: &[AclEntry], out: &mut Vec<u8>) -> Result<(), Errno> {
    let len = acl_disk_size(acl)?;
    if BKEY_U64S + xattr_val_u64s(0, len) > usize::from(u8::MAX) {
        return Err(E2BIG);
    }
    out.clear();
    out.reserve(len)?;
    out.extend_from_slice(&BCH_ACL_VERSION.to_le_bytes())?;
    for e in acl {
        out.extend_from_slice(&e.tag.to_le_bytes())?;
        out.extend_from_slice(&e.perm.to_le_bytes())?;
        if is_long(e.tag) == Some(true) {
            out.extend_from_slice(&e.id.to_le_bytes())?;
        }
    }
    Ok(())
}

/// `bch2_acl_from_disk()`: decodes an on-disk value into `out` (replacing
/// its contents).  A value with a header and no entries decodes to an
/// empty list, which means "no ACL" (C returns `NULL`).  Ids of short
/// entries are [`ACL_UNDEFINED_ID`].
///
/// Errors: `EINVAL` (shorter than the header, another version, an
/// unknown tag, an entry cut by the end), as C's `invalid` path;
/// `ENOMEM`.
pub fn acl_from_disk(v: &[u8], out: &mut Vec<AclEntry>) -> Result<(), Errno> {
    out.clear();
    for e in acl_disk_entries(v).ok_or(Errno::EINVAL)? {
        let (tag, perm, id) = e.map_err(|()| Errno::EINVAL)?;
        out.push(AclEntry { tag, perm, id })?;
    }
    Ok(())
}

/// `posix_acl_valid()` (initial user namespace, where every id maps):
/// entries in the order owner, named users, owning group, named groups,
/// mask, other, with exactly one owner, owning group and other entry; a
/// mask required when there are named entries; permissions within `rwx`.
/// Errors: `EINVAL`.
pub fn acl_valid(acl: &[AclEntry]) -> Result<(), Errno> {
    let mut state = ACL_USER_OBJ;
    let mut needs_mask = false;
    for e in acl {
        if e.perm & !7 != 0 {
            return Err(Errno::EINVAL);
        }
        state = match e.tag {
            ACL_USER_OBJ if state == ACL_USER_OBJ => ACL_USER,
            ACL_USER if state == ACL_USER => {
                needs_mask = true;
                state
            }
            ACL_GROUP_OBJ if state == ACL_USER => ACL_GROUP,
            ACL_GROUP if state == ACL_GROUP => {
                needs_mask = true;
                state
            }
            ACL_MASK if state == ACL_GROUP => ACL_OTHER,
            ACL_OTHER if state == ACL_OTHER || (state == ACL_GROUP && !needs_mask) => 0,
            _ => return Err(Errno::EINVAL),
        };
    }
    if state == 0 {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// `posix_acl_equiv_mode()`: whether `acl` says no more than permission
/// bits can (no named entries, no mask), with `mode`'s permission bits
/// replaced by the ACL's (the group bits are the mask's when there is
/// one).  Returns `true` when equivalent.  Errors: `EINVAL` (an unknown
/// tag).
pub fn acl_equiv_mode(acl: &[AclEntry], mode: &mut u16) -> Result<bool, Errno> {
    let mut m: u16 = 0;
    let mut equiv = true;
    for e in acl {
        match e.tag {
            ACL_USER_OBJ => m |= (e.perm & 7) << 6,
            ACL_GROUP_OBJ => m |= (e.perm & 7) << 3,
            ACL_OTHER => m |= e.perm & 7,
            ACL_MASK => {
                m = (m & !S_IRWXG) | ((e.perm & 7) << 3);
                equiv = false;
            }
            ACL_USER | ACL_GROUP => equiv = false,
            _ => return Err(Errno::EINVAL),
        }
    }
    *mode = (*mode & !S_IRWXUGO) | m;
    Ok(equiv)
}

/// `__posix_acl_chmod()`'s `__posix_acl_chmod_masq()`: the owner, other
/// and mask (or, without a mask, owning group) entries take `mode`'s
/// permission bits.  Errors: `EIO` (an unknown tag, or neither mask nor
/// owning group), as the kernel.
pub fn acl_chmod_masq(acl: &mut [AclEntry], mode: u16) -> Result<(), Errno> {
    let (mut group, mut mask) = (None, None);
    for (i, e) in acl.iter_mut().enumerate() {
        match e.tag {
            ACL_USER_OBJ => e.perm = (mode & S_IRWXU) >> 6,
            ACL_USER | ACL_GROUP => {}
            ACL_GROUP_OBJ => group = Some(i),
            ACL_MASK => mask = Some(i),
            ACL_OTHER => e.perm = mode & S_IRWXO,
            _ => return Err(Errno::EIO),
        }
    }
    let i = mask.or(group).ok_or(Errno::EIO)?;
    acl[i].perm = (mode & S_IRWXG) >> 3;
    Ok(())
}

/// `posix_acl_create_masq()`: applies a create's `mode` to `acl` (the
/// directory's default ACL, copied) and `mode` to it: each of owner,
/// other and mask (or owning group) keeps only what both allow.  Returns
/// `true` when the result says more than `mode` (named entries or a
/// mask): then it is the new inode's access ACL.  Errors: `EIO` as
/// [`acl_chmod_masq`].
pub fn acl_create_masq(acl: &mut [AclEntry], mode: &mut u16) -> Result<bool, Errno> {
    let mut m = *mode;
    let mut not_equiv = false;
    let (mut group, mut mask) = (None, None);
    for (i, e) in acl.iter_mut().enumerate() {
        match e.tag {
            ACL_USER_OBJ => {
                e.perm &= (m >> 6) | !S_IRWXO;
                m &= (e.perm << 6) | !S_IRWXU;
            }
            ACL_USER | ACL_GROUP => not_equiv = true,
            ACL_GROUP_OBJ => group = Some(i),
            ACL_OTHER => {
                e.perm &= m | !S_IRWXO;
                m &= e.perm | !S_IRWXO;
            }
            ACL_MASK => {
                mask = Some(i);
                not_equiv = true;
            }
            _ => return Err(Errno::EIO),
        }
    }
    let i = mask.or(group).ok_or(Errno::EIO)?;
    let e = &mut acl[i];
    e.perm &= (m >> 3) | !S_IRWXO;
    m &= (e.perm << 3) | !S_IRWXG;
    *mode = (*mode & !S_IRWXUGO) | (m & S_IRWXUGO);
    Ok(not_equiv)
}

/// The ACLs a new inode is created with (`bch2_create_trans()`'s
/// `default_acl` and `acl`); `None`: none.
#[derive(Debug, Default)]
pub struct NewAcls {
    /// The new directory's default ACL (the parent's, inherited).
    pub default: Option<Vec<AclEntry>>,
    /// The new inode's access ACL.
    pub access: Option<Vec<AclEntry>>,
}

/// `posix_acl_create()` for callers without a VFS: from the parent
/// directory's default ACL `dir_default` (`None`: none), the new inode's
/// ACLs, and its `mode` adjusted (`umask` applies only when the directory
/// has no default ACL).  Symlinks get none, and keep `mode`.  Errors:
/// `EIO` (a default ACL without owning group or mask), `ENOMEM`.
pub fn acl_create(dir_default: Option<&[AclEntry]>, mode: &mut u16, umask: u16) -> Result<NewAcls, Errno> {
    let mut r = NewAcls::default();
    if *mode & S_IFMT == S_IFLNK {
        return Ok(r);
    }
    let Some(p) = dir_default.filter(|p| !p.is_empty()) else {
        *mode &= !umask;
        return Ok(r);
    };
    let mut clone = Vec::new();
    clone.extend_from_slice(p)?;
    if acl_create_masq(&mut clone, mode)? {
        r.access = Some(clone);
    }
    if *mode & S_IFMT == S_IFDIR {
        let mut d = Vec::new();
        d.extend_from_slice(p)?;
        r.default = Some(d);
    }
    Ok(r)
}

/// The empty-name search key of an ACL (`X_SEARCH(type, "", 0)`).
fn search_key(ty: AclType) -> HashKey<'static> {
    HashKey::Xattr(ty.xattr_type(), b"")
}

/// The lookup of `bch2_get_acl()` as a transaction body: inode `u`'s ACL
/// of type `ty` into `out`.  Returns `false` when it has none (no xattr,
/// or one with no entries).  Errors: `EINVAL` (invalid on disk, see
/// [`acl_from_disk`]); restarts, `EIO`, `ENOMEM`.
pub fn acl_get_trans<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    u: &InodeUnpacked,
    ty: AclType,
    out: &mut Vec<AclEntry>,
) -> Result<bool, BchError> {
    out.clear();
    let info = hash_info(u)?;
    let k = match hash_lookup(t, HashDesc::Xattr, &info, u.inum, sv.snapshot, &search_key(ty)) {
        Ok(k) => k,
        Err(BchError::Errno(Errno::ENOENT)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let x = parse_xattr(&k.v).ok_or(Errno::EINVAL)?;
    acl_from_disk(x.value, out)?;
    Ok(!out.is_empty())
}

/// `bch2_get_acl()`: file `inum`'s ACL of type `ty` into `out`; `false`
/// when it has none.  Errors: `ENOENT` (no inode), `EINVAL` (invalid on
/// disk), `EIO`, `ENOMEM`.
pub fn acl_get<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64, ty: AclType, out: &mut Vec<AclEntry>) -> Result<bool, Errno> {
    commit_do(t, |t| {
        let u = inode_peek(t, sv.snapshot, inum)?;
        acl_get_trans(t, sv, &u, ty, out)
    })
}

/// `bch2_set_acl_trans()`: stores (`Some`, over any existing one) or
/// removes (`None`; nothing to remove is fine) inode `u`'s ACL of type
/// `ty`.  The inode itself is not written.  Errors: `EACCES` (a default
/// ACL on a non-directory; removing one is fine), `EINVAL` (an unknown
/// tag), `E2BIG`; restarts, `EIO`, `ENOMEM`.
pub fn set_acl_trans<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    u: &InodeUnpacked,
    acl: Option<&[AclEntry]>,
    ty: AclType,
) -> Result<(), BchError> {
    if ty == AclType::Default && !u.is_dir() {
        return if acl.is_some() { Err(EACCES.into()) } else { Ok(()) };
    }
    let info = hash_info(u)?;
    let r = match acl {
        Some(acl) => {
            let mut val = Vec::new();
            acl_to_disk(acl, &mut val)?;
            let mut buf = Vec::new();
            buf.resize(xattr_val_u64s(0, val.len()) * 8, 0u8)?;
            let n = encode_xattr(&mut buf, ty.xattr_type(), b"", &val).ok_or(E2BIG)?;
            let k = new_key(KeyType::Xattr, Bpos::new(u.inum, 0, sv.snapshot), buf.get(..n).unwrap_or(&[]))?;
            hash_set(t, HashDesc::Xattr, &info, &search_key(ty), k, HashSetFlags::default()).map(|_| ())
        }
        None => hash_delete(t, HashDesc::Xattr, &info, u.inum, sv.snapshot, &search_key(ty)),
    };
    match r {
        Err(BchError::Errno(Errno::ENOENT)) => Ok(()),
        r => r,
    }
}

/// `bch2_set_acl()` (the `set_acl` inode operation) on file `inum`: for
/// an access ACL, `posix_acl_update_mode()` first: the mode's permission
/// bits become the ACL's and, when the ACL says no more than they do, no
/// xattr is stored (an existing one is removed); `clear_sgid` (the caller
/// is neither in the file's group nor has `CAP_FSETID`) drops `S_ISGID`.
/// Then [`set_acl_trans`], ctime set and the mode written, in one
/// transaction.  `acl` `None` removes.  Returns the inode as written and
/// whether an ACL is stored (what the VFS caches).
///
/// Errors: `EINVAL` (invalid ACL: [`acl_valid`]), `EACCES`, `E2BIG`,
/// `ENOENT` (no inode), `EIO`, `ENOMEM`.
pub fn set_acl<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    inum: u64,
    ty: AclType,
    acl: Option<&[AclEntry]>,
    clear_sgid: bool,
) -> Result<(InodeUnpacked, bool), Errno> {
    if let Some(a) = acl {
        acl_valid(a)?;
    }
    commit_do(t, |t| {
        let mut u = inode_peek(t, sv.snapshot, inum)?;
        let mut acl = acl.filter(|a| !a.is_empty());
        let mut mode = u.mode;
        if ty == AclType::Access {
            if let Some(a) = acl {
                if acl_equiv_mode(a, &mut mode)? {
                    acl = None;
                }
            }
            if clear_sgid {
                mode &= !S_ISGID;
            }
        }
        set_acl_trans(t, sv, &u, acl, ty)?;
        let now = current_time(t);
        u.set(InodeField::Ctime, now);
        u.mode = mode;
        inode_write(t, &u)?;
        Ok((u, acl.is_some()))
    })
}

/// `bch2_acl_chmod()`: after a mode change to `mode` of inode `u` (in
/// the same transaction as the inode's update), its access ACL, if it has
/// one, takes the new permission bits ([`acl_chmod_masq`]) and is written
/// back in place; the result is left in `new` for the VFS's cache.
/// Returns `false` when the inode has no access ACL.  Errors: `EINVAL`
/// (invalid on disk), `EIO` (no owning group or mask), `E2BIG`;
/// restarts, `ENOMEM`.
pub fn acl_chmod<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    u: &InodeUnpacked,
    mode: u16,
    new: &mut Vec<AclEntry>,
) -> Result<bool, BchError> {
    let info = hash_info(u)?;
    let k = match hash_lookup(t, HashDesc::Xattr, &info, u.inum, sv.snapshot, &search_key(AclType::Access)) {
        Ok(k) => k,
        Err(BchError::Errno(Errno::ENOENT)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let x = parse_xattr(&k.v).ok_or(Errno::EINVAL)?;
    acl_from_disk(x.value, new)?;
    if new.is_empty() {
        // C's `__posix_acl_chmod()` leaves no ACL alone.
        return Ok(false);
    }
    acl_chmod_masq(new, mode)?;
    let mut val = Vec::new();
    acl_to_disk(new, &mut val)?;
    let mut buf = Vec::new();
    buf.resize(xattr_val_u64s(0, val.len()) * 8, 0u8)?;
    let n = encode_xattr(&mut buf, XATTR_INDEX_POSIX_ACL_ACCESS, b"", &val).ok_or(E2BIG)?;
    let nk = new_key(KeyType::Xattr, k.k.p, buf.get(..n).unwrap_or(&[]))?;
    t.update(HashDesc::Xattr.btree(), nk)?;
    Ok(true)
}
