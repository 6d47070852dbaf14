// SPDX-License-Identifier: GPL-2.0
//! Extended attributes of the `user.`, `trusted.` and `security.`
//! namespaces (`fs/bcachefs/xattr.c`: `bch2_xattr_handlers`,
//! `bch2_xattr_get_handler`, `bch2_xattr_set_handler`, `bch2_xattr_list`),
//! through `fs_common::xattr` on both kinds of mount: a read-write mount
//! runs them in a transaction of the write core under the operation lock;
//! a read-only one in [`RoTrans`], a transaction over the read-only core
//! that can read and commit nothing.

use core::ptr;

use kernel::ffi::{c_char, c_int, c_void};
use kernel::str::CStr;

use super::inode::BchInode;
use super::{FsInfo, NofsScope};
use crate::bindings;
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{BkeyI, BtreeId};
use crate::format::bpos::Bpos;
use crate::fs_common::trans::{BtreeTransOps, WriteOpts};
use crate::fs_common::xattr as fx;
use crate::fs_common::{self, BtreeRead, FsFacts};
use crate::platform::Vec;

/// `CAP_SYS_ADMIN`: needed to list `trusted.` attributes.
const CAP_SYS_ADMIN: c_int = 21;

/// [`BtreeTransOps`] over a reader: reads go to it, a commit with nothing
/// to commit succeeds, an update fails with `EROFS`.
struct RoTrans<'a> {
    r: &'a (dyn BtreeRead + Sync + 'a),
    opts: WriteOpts,
}

impl BtreeTransOps for RoTrans<'_> {
    fn peek_upto(&mut self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<BkeyI>, BchError> {
        Ok(self.r.peek_upto(btree, from, to, whiteouts)?)
    }

    fn update(&mut self, _btree: BtreeId, _k: BkeyI) -> Result<(), BchError> {
        Err(Errno::EROFS.into())
    }

    fn begin(&mut self) {}

    fn commit(&mut self) -> Result<(), BchError> {
        Ok(())
    }

    fn read_data(&mut self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.r.read_data(dev, sector, buf)
    }

    fn dev_name(&self) -> &str {
        self.r.dev_name()
    }

    fn facts(&self) -> &FsFacts {
        self.r.facts()
    }

    fn opts(&self) -> &WriteOpts {
        &self.opts
    }

    fn now_ns(&self) -> i64 {
        0
    }

    fn random_u64(&mut self) -> u64 {
        0
    }

    fn unused_inode_hint(&self, _cpu: u64) -> u64 {
        0
    }

    fn set_unused_inode_hint(&mut self, _cpu: u64, _v: u64) {}
}

/// Runs a read-only `fs_common::xattr` operation on `info`'s filesystem.
pub(super) fn with_trans<R>(info: &FsInfo, f: impl FnOnce(&mut dyn BtreeTransOps) -> Result<R, Errno>) -> Result<R, Errno> {
    match info.op() {
        Ok(op) => f(&mut op.fs.trans()),
        Err(Errno::EROFS) if !info.is_rw() => {
            let r = info.read();
            f(&mut RoTrans { r: &*r, opts: WriteOpts::default() })
        }
        Err(e) => Err(e),
    }
}

/// Copies `v` to the VFS's buffer of `size` bytes: the length when
/// `size` is 0, `ERANGE` when it does not fit.
///
/// # Safety
///
/// `buf` is valid for `size` bytes of writing.
unsafe fn copy_out(v: &[u8], buf: *mut c_void, size: usize) -> isize {
    if size == 0 {
        return v.len() as isize;
    }
    if v.len() > size {
        return Errno::ERANGE.to_kernel() as isize;
    }
    // SAFETY: the caller's contract; `v` does not overlap VFS memory.
    unsafe { ptr::copy_nonoverlapping(v.as_ptr(), buf.cast::<u8>(), v.len()) };
    v.len() as isize
}

/// The full name of attribute `name` of `handler`'s namespace.
///
/// # Safety
///
/// `handler` is one of ours and `name` a C string.
unsafe fn full_name(handler: *const bindings::xattr_handler, name: *const c_char) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    // SAFETY: our handlers' prefixes are static C strings; `name` is the
    // VFS's.
    unsafe {
        v.extend_from_slice(CStr::from_char_ptr((*handler).prefix).as_bytes())?;
        v.extend_from_slice(CStr::from_char_ptr(name).as_bytes())?;
    }
    Ok(v)
}

/// `xattr_handler.get` (`bch2_xattr_get_handler`).
///
/// # Safety
///
/// Called by the VFS with an inode of ours and a buffer of `size` bytes.
unsafe extern "C" fn bch_xattr_get(
    handler: *const bindings::xattr_handler,
    _dentry: *mut bindings::dentry,
    inode: *mut bindings::inode,
    name: *const c_char,
    buf: *mut c_void,
    size: usize,
) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: the VFS's arguments.
    let (info, inum, full) = unsafe { (FsInfo::of((*inode).i_sb), (*inode).i_ino as u64, full_name(handler, name)) };
    let full = match full {
        Ok(f) => f,
        Err(e) => return e.to_kernel(),
    };
    let mut out = Vec::new();
    match with_trans(info, |t| fx::xattr_get(t, &info.sv, inum, &full, &mut out)) {
        // SAFETY: the VFS's buffer.
        Ok(()) => unsafe { copy_out(&out, buf, size) as c_int },
        Err(e) => e.to_kernel(),
    }
}

/// `xattr_handler.set` (`bch2_xattr_set_handler`): sets, or removes when
/// `value` is null.
///
/// # Safety
///
/// Called by the VFS with an inode of ours, locked, and a value of `size`
/// bytes (or null).
unsafe extern "C" fn bch_xattr_set(
    handler: *const bindings::xattr_handler,
    _idmap: *mut bindings::mnt_idmap,
    _dentry: *mut bindings::dentry,
    inode: *mut bindings::inode,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: c_int,
) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: the VFS's arguments.
    let (info, inum, full) = unsafe { (FsInfo::of((*inode).i_sb), (*inode).i_ino as u64, full_name(handler, name)) };
    let full = match full {
        Ok(f) => f,
        Err(e) => return e.to_kernel(),
    };
    // SAFETY: a non-null `value` is valid for `size` bytes.
    let v = (!value.is_null()).then(|| unsafe { core::slice::from_raw_parts(value.cast::<u8>(), size) });
    let op = match info.op() {
        Ok(op) => op,
        Err(e) => return e.to_kernel(),
    };
    let r = fx::xattr_set(&mut op.fs.trans(), &info.sv, inum, &full, v, flags as u32).and_then(|()| {
        // The ctime changed.
        let a = fs_common::inode_get(&*op.reader(), &info.sv, inum)?;
        // SAFETY: the inode is ours and locked by the VFS.
        unsafe {
            BchInode::from_vfs(inode).set_attrs(&op, a);
            bindings::inode_set_ctime_to_ts(inode, super::inode::timespec(a.ctime_ns));
        }
        Ok(())
    });
    match r {
        Ok(()) => 0,
        Err(e) => e.to_kernel(),
    }
}

/// `listxattr` (`bch2_xattr_list`): the names, NUL-terminated; `trusted.`
/// ones only for `CAP_SYS_ADMIN`.
///
/// # Safety
///
/// Called by the VFS with a positive dentry of ours and a buffer of
/// `size` bytes.
pub(super) unsafe extern "C" fn bch_listxattr(dentry: *mut bindings::dentry, buf: *mut c_char, size: usize) -> isize {
    let _nofs = NofsScope::new();
    // SAFETY: the dentry is positive.
    let (info, inum) = unsafe {
        let inode = (*dentry).d_inode;
        (FsInfo::of((*inode).i_sb), (*inode).i_ino as u64)
    };
    let mut all = Vec::new();
    if let Err(e) = with_trans(info, |t| fx::xattr_list(t, &info.sv, inum, info.posix_acl, &mut all)) {
        return e.to_kernel() as isize;
    }
    // SAFETY: checks the current task's capability.
    let admin = unsafe { bindings::capable(CAP_SYS_ADMIN) };
    let mut out = Vec::new();
    for n in all.split(|&c| c == 0).filter(|n| !n.is_empty()) {
        if !admin && n.starts_with(b"trusted.") {
            continue;
        }
        if out.extend_from_slice(n).is_err() || out.push(0).is_err() {
            return Errno::ENOMEM.to_kernel() as isize;
        }
    }
    // SAFETY: the VFS's buffer.
    unsafe { copy_out(&out, buf.cast(), size) }
}

/// A static table of handler pointers (`sb->s_xattr`).
pub(super) struct Handlers(pub(super) [*const bindings::xattr_handler; 4]);
// SAFETY: pointers to immutable statics, only read.
unsafe impl Sync for Handlers {}

/// A handler (holds C string pointers, so not `Sync` by itself).
struct Handler(bindings::xattr_handler);
// SAFETY: immutable, pointing to static strings and functions.
unsafe impl Sync for Handler {}

const fn handler(prefix: &'static CStr) -> Handler {
    Handler(bindings::xattr_handler {
        name: ptr::null(),
        prefix: prefix.as_char_ptr(),
        flags: 0,
        list: None,
        get: Some(bch_xattr_get),
        set: Some(bch_xattr_set),
    })
}

static USER: Handler = handler(kernel::c_str!("user."));
static TRUSTED: Handler = handler(kernel::c_str!("trusted."));
static SECURITY: Handler = handler(kernel::c_str!("security."));

/// `bch2_xattr_handlers`.
pub(super) static HANDLERS: Handlers = Handlers([&USER.0, &TRUSTED.0, &SECURITY.0, ptr::null()]);
