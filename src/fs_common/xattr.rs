// SPDX-License-Identifier: GPL-2.0
//! Extended attributes: set, remove, get and list, for the `user.`,
//! `trusted.` and `security.` namespaces.
//!
//! Matches, in `fs/bcachefs/xattr.c`: `bch2_xattr_set()`,
//! `bch2_xattr_get_trans()`, `bch2_xattr_list()` and the handler table
//! (`bch_xattr_handler_map`); and the checks of `fs/xattr.c` (name and
//! value sizes).  POSIX ACLs (types 1 and 2) are read and written by
//! [`super::acl`]; here they are only listed (`system.posix_acl_access`,
//! `system.posix_acl_default`, as the VFS's `nop_posix_acl_*` handlers
//! name them).
//!
//! An xattr lives in the xattrs btree at `inum:hash(type, name):snapshot`
//! (the hash keyed by the file's `bi_hash_seed` and type), with the same
//! probing and `hash_whiteout` rules as directory entries
//! ([`super::str_hash_write`]).

use super::acl::{XATTR_INDEX_POSIX_ACL_ACCESS, XATTR_INDEX_POSIX_ACL_DEFAULT};
use super::inode_write::{current_time, hash_info, inode_peek, inode_write};
use super::str_hash_write::{hash_delete, hash_lookup, hash_set, HashDesc, HashKey, HashSetFlags};
use super::trans::{commit_do, new_key, BtreeTransOps};
use super::Subvol;
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::val::dirent::{encode_xattr, parse_xattr, xattr_val_u64s, XATTR_PREFIXES};
use crate::format::val::inode::InodeField;
use crate::platform::Vec;

/// `XATTR_CREATE`: fail if the attribute exists.
pub const XATTR_CREATE: u32 = 1;
/// `XATTR_REPLACE`: fail if it does not.
pub const XATTR_REPLACE: u32 = 2;
/// `XATTR_NAME_MAX`: longest full name (prefix included), bytes.
pub const XATTR_NAME_MAX: usize = 255;
/// `XATTR_SIZE_MAX`: largest value the VFS passes, bytes.
pub const XATTR_SIZE_MAX: usize = 65536;
/// `E2BIG`: a value over [`XATTR_SIZE_MAX`].
pub const E2BIG: Errno = Errno(7);

/// `KEY_TYPE_XATTR_INDEX_USER`, `_TRUSTED`, `_SECURITY`.
pub const XATTR_INDEX_USER: u8 = 0;
/// `KEY_TYPE_XATTR_INDEX_TRUSTED`.
pub const XATTR_INDEX_TRUSTED: u8 = 3;
/// `KEY_TYPE_XATTR_INDEX_SECURITY`.
pub const XATTR_INDEX_SECURITY: u8 = 4;

/// Splits a full name (`user.foo`) into its type and the stored name
/// (`xattr_resolve_name()`).  Errors: `ERANGE` (empty or over
/// [`XATTR_NAME_MAX`]), `EOPNOTSUPP` (no handler for the prefix),
/// `EINVAL` (nothing after the prefix, or a NUL).
pub fn xattr_resolve(full: &[u8]) -> Result<(u8, &[u8]), Errno> {
    if full.is_empty() || full.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE);
    }
    if full.contains(&0) {
        return Err(Errno::EINVAL);
    }
    for ty in [XATTR_INDEX_USER, XATTR_INDEX_TRUSTED, XATTR_INDEX_SECURITY] {
        let Some(Some(p)) = XATTR_PREFIXES.get(ty as usize) else { continue };
        if let Some(rest) = full.strip_prefix(p.as_bytes()) {
            if rest.is_empty() {
                return Err(Errno::EINVAL);
            }
            return Ok((ty, rest));
        }
    }
    Err(Errno::EOPNOTSUPP)
}

/// `bch2_xattr_set()` as a transaction body: sets the file's ctime, then
/// hashes in the attribute `ty`/`name` = `value` (honouring
/// [`XATTR_CREATE`]/[`XATTR_REPLACE`]) or, with `value` `None`, removes
/// it.
///
/// Errors: `EEXIST` (`XATTR_CREATE`, present), `ENODATA`
/// (`XATTR_REPLACE`, absent), `ERANGE` (too big for a key), `ENOENT` (no
/// inode), `ENOSPC`; restarts, `EIO`, `ENOMEM`.
pub fn xattr_set_trans<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    inum: u64,
    ty: u8,
    name: &[u8],
    value: Option<&[u8]>,
    flags: u32,
) -> Result<(), BchError> {
    let mut u = inode_peek(t, sv.snapshot, inum)?;
    let info = hash_info(&u)?;
    let now = current_time(t);
    u.set(InodeField::Ctime, now);
    inode_write(t, &u)?;
    let key = HashKey::Xattr(ty, name);
    let r = match value {
        Some(v) => {
            if crate::format::bkey::BKEY_U64S + xattr_val_u64s(name.len(), v.len()) > usize::from(u8::MAX) {
                return Err(Errno::ERANGE.into());
            }
            let mut buf = Vec::new();
            buf.resize(xattr_val_u64s(name.len(), v.len()) * 8, 0u8)?;
            let n = encode_xattr(&mut buf, ty, name, v).ok_or(Errno::ERANGE)?;
            let k = new_key(KeyType::Xattr, Bpos::new(inum, 0, sv.snapshot), buf.get(..n).unwrap_or(&[]))?;
            let f = HashSetFlags { must_create: flags & XATTR_CREATE != 0, must_replace: flags & XATTR_REPLACE != 0 };
            hash_set(t, HashDesc::Xattr, &info, &key, k, f).map(|_| ())
        }
        None => hash_delete(t, HashDesc::Xattr, &info, inum, sv.snapshot, &key),
    };
    match r {
        Err(BchError::Errno(Errno::ENOENT)) => {
            if flags & XATTR_REPLACE != 0 {
                Err(Errno::ENODATA.into())
            } else {
                Ok(())
            }
        }
        r => r,
    }
}

/// `setxattr(2)`/`removexattr(2)` on file `inum`: the VFS's name and size
/// checks, then [`xattr_set_trans`].  `full_name` carries its namespace
/// prefix.
///
/// Errors: `E2BIG` (value over [`XATTR_SIZE_MAX`]), `EINVAL` (unknown
/// flags), those of [`xattr_resolve`] and [`xattr_set_trans`].
pub fn xattr_set<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    inum: u64,
    full_name: &[u8],
    value: Option<&[u8]>,
    flags: u32,
) -> Result<(), Errno> {
    if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
        return Err(Errno::EINVAL);
    }
    if value.is_some_and(|v| v.len() > XATTR_SIZE_MAX) {
        return Err(E2BIG);
    }
    let (ty, name) = xattr_resolve(full_name)?;
    commit_do(t, |t| xattr_set_trans(t, sv, inum, ty, name, value, flags))
}

/// `bch2_xattr_get_trans()`: the value of `full_name` on file `inum`,
/// replacing the contents of `out`.  Errors: `ENODATA` (absent), those of
/// [`xattr_resolve`], `ENOENT` (no inode), `EIO`, `ENOMEM`.
pub fn xattr_get<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64, full_name: &[u8], out: &mut Vec<u8>) -> Result<(), Errno> {
    let (ty, name) = xattr_resolve(full_name)?;
    out.clear();
    let r = commit_do(t, |t| {
        let u = inode_peek(t, sv.snapshot, inum)?;
        let info = hash_info(&u)?;
        let k = hash_lookup(t, HashDesc::Xattr, &info, inum, sv.snapshot, &HashKey::Xattr(ty, name))?;
        let x = parse_xattr(&k.v).ok_or(Errno::EUCLEAN)?;
        out.clear();
        out.extend_from_slice(x.value)?;
        Ok(())
    });
    match r {
        Err(Errno::ENOENT) => {
            // Tell a missing file from a missing attribute.
            commit_do(t, |t| inode_peek(t, sv.snapshot, inum))?;
            Err(Errno::ENODATA)
        }
        r => r,
    }
}

/// `XATTR_NAME_POSIX_ACL_ACCESS`: the name an access ACL is listed as.
pub const XATTR_NAME_POSIX_ACL_ACCESS: &str = "system.posix_acl_access";
/// `XATTR_NAME_POSIX_ACL_DEFAULT`: the name a default ACL is listed as.
pub const XATTR_NAME_POSIX_ACL_DEFAULT: &str = "system.posix_acl_default";

/// `bch2_xattr_list()`: the full names of file `inum`'s attributes of the
/// namespaces handled here and, with `posix_acl` (the mount has ACLs on:
/// `posix_acl_xattr_list()`'s `IS_POSIXACL()`), its ACLs, in btree (hash)
/// order, each followed by a NUL (the `listxattr(2)` buffer), replacing
/// the contents of `out`.  Errors: `EIO`, `ENOMEM`.
pub fn xattr_list<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64, posix_acl: bool, out: &mut Vec<u8>) -> Result<(), Errno> {
    commit_do(t, |t| {
        out.clear();
        let end = Bpos::new(inum, u64::MAX, u32::MAX);
        let mut from = Bpos::new(inum, 0, 0);
        while let Some(k) = t.peek_upto(BtreeId::Xattrs, from, end, false)? {
            if k.k.p.snapshot == sv.snapshot && k.k.key_type == KeyType::Xattr as u8 {
                if let Some(x) = parse_xattr(&k.v) {
                    let acl_name = match x.x_type {
                        XATTR_INDEX_POSIX_ACL_ACCESS => Some(XATTR_NAME_POSIX_ACL_ACCESS),
                        XATTR_INDEX_POSIX_ACL_DEFAULT => Some(XATTR_NAME_POSIX_ACL_DEFAULT),
                        _ => None,
                    };
                    if let Some(n) = acl_name {
                        if posix_acl {
                            out.extend_from_slice(n.as_bytes())?;
                            out.extend_from_slice(x.name)?;
                            out.push(0)?;
                        }
                    } else if let Some(Some(p)) = XATTR_PREFIXES.get(x.x_type as usize) {
                        if !p.is_empty() {
                            out.extend_from_slice(p.as_bytes())?;
                            out.extend_from_slice(x.name)?;
                            out.push(0)?;
                        }
                    }
                }
            }
            match k.k.p.successor() {
                Some(n) if n <= end => from = n,
                _ => break,
            }
        }
        Ok(())
    })
}
