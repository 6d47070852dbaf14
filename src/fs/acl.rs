// SPDX-License-Identifier: GPL-2.0
//! POSIX ACLs of the VFS (`fs/bcachefs/acl.c`: `bch2_get_acl`,
//! `bch2_set_acl`; `fs.c`: the `posix_acl_create()` of `__bch2_create`),
//! through `fs_common::acl`.
//!
//! The VFS routes `system.posix_acl_access`/`_default` to the inode
//! operations `get_inode_acl` and `set_acl` (its own xattr handlers are
//! not in `s_xattr`, as in C) and caches what they return.  A `struct
//! posix_acl` is converted to and from a list of
//! [`AclEntry`] by C helpers (`bch_rs_acl_*` in `src/helpers.c`): its
//! entries keep their ids as `kuid_t`/`kgid_t`.

use core::ptr;

use kernel::ffi::c_int;

use super::xattr::with_trans;
use super::{FsInfo, NofsScope};
use crate::bindings;
use crate::errcode::Errno;
use crate::fs_common::acl::{self as fa, AclEntry, AclType, NewAcls};
use crate::platform::Vec;

/// `ECHILD`: an RCU-walk lookup must retry in ref-walk mode.
const ECHILD: Errno = Errno(10);

/// The ACL type of the VFS's `ACL_TYPE_*`.
fn acl_type(ty: c_int) -> Result<AclType, Errno> {
    if ty == bindings::BCH_RS_ACL_TYPE_ACCESS {
        Ok(AclType::Access)
    } else if ty == bindings::BCH_RS_ACL_TYPE_DEFAULT {
        Ok(AclType::Default)
    } else {
        Err(Errno::EINVAL)
    }
}

/// The entries of `acl` (null: none).
///
/// # Safety
///
/// `acl` is null or a valid `struct posix_acl`.
unsafe fn entries_of(acl: *const bindings::posix_acl) -> Result<Option<Vec<AclEntry>>, Errno> {
    if acl.is_null() {
        return Ok(None);
    }
    let mut v = Vec::new();
    // SAFETY: `acl` is valid (caller); `i` stays below its count.
    unsafe {
        let n = bindings::bch_rs_acl_count(acl);
        v.reserve(n as usize)?;
        for i in 0..n {
            let mut e = bindings::bch_rs_acl_entry { tag: 0, perm: 0, id: 0 };
            bindings::bch_rs_acl_entry_get(acl, i, &mut e);
            v.push(AclEntry { tag: e.tag, perm: e.perm, id: e.id })?;
        }
    }
    Ok(Some(v))
}

/// A new `struct posix_acl` (one reference) holding `entries`.
fn posix_acl_of(entries: &[AclEntry]) -> Result<*mut bindings::posix_acl, Errno> {
    let mut flat = Vec::new();
    flat.reserve(entries.len())?;
    for e in entries {
        flat.push(bindings::bch_rs_acl_entry { tag: e.tag, perm: e.perm, id: e.id })?;
    }
    let n = u32::try_from(flat.len()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `flat` holds `n` entries.
    let acl = unsafe { bindings::bch_rs_acl_new(flat.as_ptr(), n) };
    if acl.is_null() {
        return Err(Errno::ENOMEM);
    }
    Ok(acl)
}

/// `get_inode_acl` (`bch2_get_acl`): the inode's ACL of `ty` from the
/// xattrs btree (null when it has none), on read-write and read-only
/// mounts.  The VFS caches the result.
///
/// # Safety
///
/// Called by the VFS with a referenced inode of ours.
pub(super) unsafe extern "C" fn bch_get_inode_acl(inode: *mut bindings::inode, ty: c_int, rcu: bool) -> *mut bindings::posix_acl {
    if rcu {
        // SAFETY: encodes an error pointer.
        return unsafe { bindings::ERR_PTR(ECHILD.to_kernel() as _).cast() };
    }
    let _nofs = NofsScope::new();
    // SAFETY: the VFS's inode.
    let (info, inum) = unsafe { (FsInfo::of((*inode).i_sb), (*inode).i_ino as u64) };
    let r = acl_type(ty).and_then(|ty| {
        let mut v = Vec::new();
        let some = with_trans(info, |t| fa::acl_get(t, &info.sv, inum, ty, &mut v))?;
        if !some {
            return Ok(ptr::null_mut());
        }
        posix_acl_of(&v)
    });
    match r {
        Ok(p) => p,
        Err(Errno::ENOENT) => ptr::null_mut(),
        // SAFETY: encodes an error pointer.
        Err(e) => unsafe { bindings::ERR_PTR(e.to_kernel() as _).cast() },
    }
}

/// `set_acl` (`bch2_set_acl`): stores or (null `acl`) removes the ACL of
/// `ty`; an access ACL also sets the mode (`posix_acl_update_mode()`:
/// no xattr when the mode says it all).  The VFS checked the ACL
/// (`posix_acl_valid()`) and the caller's right to change it.
///
/// # Safety
///
/// Called by the VFS with a positive dentry of ours, its inode locked,
/// and a valid ACL or null.
pub(super) unsafe extern "C" fn bch_set_acl(
    idmap: *mut bindings::mnt_idmap,
    dentry: *mut bindings::dentry,
    acl: *mut bindings::posix_acl,
    ty: c_int,
) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: as this function.
    match unsafe { set_acl(idmap, dentry, acl, ty) } {
        Ok(()) => 0,
        Err(e) => e.to_kernel(),
    }
}

#[inline(never)]
unsafe fn set_acl(idmap: *mut bindings::mnt_idmap, dentry: *mut bindings::dentry, acl: *mut bindings::posix_acl, ty: c_int) -> Result<(), Errno> {
    let aty = acl_type(ty)?;
    // SAFETY: the dentry is positive, its inode ours and locked (caller).
    let (inode, info, inum, clear_sgid, entries) = unsafe {
        let inode = (*dentry).d_inode;
        (
            inode,
            FsInfo::of((*inode).i_sb),
            (*inode).i_ino as u64,
            bindings::bch_rs_acl_clear_sgid(idmap, inode),
            entries_of(acl)?,
        )
    };
    let stored = {
        let op = info.op()?;
        let (_, stored) = fa::set_acl(&mut op.fs.trans(), &info.sv, inum, aty, entries.as_deref(), clear_sgid)?;
        // SAFETY: the inode is locked (caller).
        unsafe { super::rw::refresh(info, &op, inode, bindings::ATTR_CTIME) }?;
        stored
    };
    // SAFETY: the inode is ours; `set_cached_acl` takes its own
    // reference to `acl`.
    unsafe { bindings::set_cached_acl(inode, ty, if stored { acl } else { ptr::null_mut() }) };
    Ok(())
}

/// What `posix_acl_create()` made for a new inode: its ACLs as VFS
/// objects (for the new inode's cache) and as entries (for the create's
/// transaction).  Dropping releases the VFS objects.
pub(super) struct Created {
    default: *mut bindings::posix_acl,
    access: *mut bindings::posix_acl,
    /// The entries, for `fs_ops::create_acl`.
    pub(super) acls: NewAcls,
}

impl Created {
    /// `posix_acl_create(dir, mode, ...)`: adjusts `mode` (the umask,
    /// or the directory's default ACL) and inherits that ACL.  A mount
    /// without ACLs (`noacl`) returns none and leaves `mode`: the VFS
    /// applied the umask.  Call without the operation lock held: it reads
    /// the directory's default ACL through `get_inode_acl`.
    ///
    /// # Safety
    ///
    /// `dir` is a referenced directory of ours.
    pub(super) unsafe fn new(dir: *mut bindings::inode, mode: &mut bindings::umode_t) -> Result<Created, Errno> {
        let mut c = Created { default: ptr::null_mut(), access: ptr::null_mut(), acls: NewAcls::default() };
        // SAFETY: `dir` is valid (caller); the outputs are ours.
        let r = unsafe { bindings::posix_acl_create(dir, mode, &mut c.default, &mut c.access) };
        if r != 0 {
            return Err(Errno(-r));
        }
        // SAFETY: null or valid ACLs `c` holds a reference to.
        unsafe {
            c.acls.default = entries_of(c.default)?;
            c.acls.access = entries_of(c.access)?;
        }
        Ok(c)
    }

    /// `set_cached_acl()` of both on the new inode (`__bch2_create`).
    ///
    /// # Safety
    ///
    /// `inode` is a referenced inode of ours.
    pub(super) unsafe fn cache(&self, inode: *mut bindings::inode) {
        // SAFETY: the caller's contract; `set_cached_acl` takes its own
        // references.
        unsafe {
            bindings::set_cached_acl(inode, bindings::BCH_RS_ACL_TYPE_ACCESS, self.access);
            bindings::set_cached_acl(inode, bindings::BCH_RS_ACL_TYPE_DEFAULT, self.default);
        }
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        for p in [self.default, self.access] {
            if !p.is_null() {
                // SAFETY: our reference, from `posix_acl_create`.
                unsafe { bindings::bch_rs_acl_release(p) };
            }
        }
    }
}

/// After a mode change: the access ACL was rewritten in the same
/// transaction (`bch2_acl_chmod()`, in `fs_common::fs_ops::setattr`);
/// the VFS's cached copy goes, to be read again.
///
/// # Safety
///
/// `inode` is a referenced inode of ours.
pub(super) unsafe fn chmod_done(inode: *mut bindings::inode) {
    // SAFETY: the caller's contract.
    unsafe { bindings::forget_cached_acl(inode, bindings::BCH_RS_ACL_TYPE_ACCESS) };
}
