// SPDX-License-Identifier: GPL-2.0
//! The write side of a read-write mount (`fs/bcachefs/fs.c`: `bch2_create`,
//! `bch2_mknod`, `bch2_mkdir`, `bch2_symlink`, `bch2_link`, `bch2_unlink`,
//! `bch2_rmdir`, `bch2_rename2`, `bch2_setattr`, `bch2_vfs_write_inode`,
//! `bch2_evict_inode`, `bch2_sync_fs`, `bch2_put_super`;
//! `fs-io-buffered.c`: `bch2_write_begin`, `bch2_write_end`,
//! `bch2_writepages`; `fs-io.c`: `bch2_fsync`).
//!
//! The filesystem is the write core [`crate::fs_rw::BchFs`], owned by the
//! mount.  Every call into it holds its operation lock (`op_lock`, one
//! sleeping mutex per mount: [`Op`]), reads included ([`super::Reader`]).
//! Lock order: the VFS's locks (`i_rwsem`, folio locks) before the
//! operation lock; nothing holding it waits for a folio, an inode lock or
//! writeback, and user memory is never touched under it.
//!
//! Each operation calls the `fs_common` one and then re-reads the inodes
//! it changed into the VFS inodes.  A regular file's size is led by the
//! page cache: buffered writes only dirty folios; `writepages` writes
//! runs of contiguous dirty folios through
//! `fs_common::io_write::write_data` (synchronously, under the operation
//! lock), with the VFS's `i_size`.  An inode whose last link goes is removed from the btree when
//! the VFS evicts it (`bch2_evict_inode()`), so open unlinked files stay
//! readable.

use core::ptr;
use core::sync::atomic::Ordering;

use kernel::ffi::{c_char, c_int, c_uint, c_void};
use kernel::str::CStr;

use super::inode::{self, BchInode};
use super::{FsInfo, Mounted, NofsScope, Reader, SbId};
use crate::bindings;
use crate::block::SbBdev;
use crate::errcode::Errno;
use crate::fs_common::fs_ops::{self, NewInode, RenameMode, SetAttr};
use crate::fs_common::trans::commit_do;
use crate::fs_common::{self, FsFacts};
use crate::fs_rw::{writepoint_hashed, BchFs, BchFsOpen, FsDataAlloc};
use crate::platform::{BlockDev, MutexGuard};
use crate::{bch_err, bch_info};

/// The write core over the superblock's block device.
pub(crate) type RwFs = BchFs<SbBdev>;

// As the read-only core: every callback shares it by reference.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<RwFs>()
};

use super::inode::{NSEC_PER_SEC, PAGE_SIZE, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};

const PAGE_SHIFT: u32 = 12;
/// `MAX_ERRNO`: pointers from `-MAX_ERRNO` up are encoded errors.
const MAX_ERRNO: usize = 4095;

/// One operation on the write core: holds the mount's operation lock.
/// The time operations stamp is set when it starts.
pub(crate) struct Op<'a> {
    pub(crate) fs: &'a RwFs,
    _g: MutexGuard<'a, ()>,
}

impl Op<'_> {
    /// A reader through the lock this operation holds.
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader { r: self.fs, _g: None }
    }
}

/// The current time, ns since the epoch.
fn now_ns() -> i64 {
    // SAFETY: reads the clock.
    unsafe { bindings::ktime_get_real_ns() as i64 }
}

/// A monotonic clock, ms (the journal's `jiffies`).
fn mono_ms() -> u64 {
    crate::sync::now_ns() / 1_000_000
}

/// The journal's periodic work (`journal_write_work()`): every
/// [`JOURNAL_WORK_MS`] the open entry is closed and written once its flush
/// delay (`journal_flush_delay`) has passed, so that what was committed
/// reaches the disk within about that delay without `sync`; then reclaim.
/// Stopped (waiting for a running call) on drop.
pub(crate) struct JournalTimer(*mut bindings::bch_rs_timer);

// SAFETY: the timer may be stopped from any thread.
unsafe impl Send for JournalTimer {}
// SAFETY: no `&self` methods.
unsafe impl Sync for JournalTimer {}

/// How often the journal's periodic work runs, ms.
const JOURNAL_WORK_MS: u32 = 1000;

impl JournalTimer {
    /// Starts the work for `info`, which must outlive the returned value
    /// (it is a field of it, dropped first).  `None` when out of memory
    /// (the journal is then written only by `sync`, `fsync`, unmount or
    /// when an entry fills).
    pub(crate) fn start(info: &FsInfo) -> Option<Self> {
        // SAFETY: `journal_work` takes the `FsInfo` pointer back; the
        // timer is stopped before the `FsInfo` is freed (type contract).
        let t = unsafe { bindings::bch_rs_timer_start(Some(journal_work), (info as *const FsInfo).cast_mut().cast(), JOURNAL_WORK_MS) };
        (!t.is_null()).then_some(JournalTimer(t))
    }
}

impl Drop for JournalTimer {
    fn drop(&mut self) {
        // SAFETY: started by `start`, stopped once.
        unsafe { bindings::bch_rs_timer_stop(self.0) };
    }
}

/// The periodic work: `journal_do_work()` under the operation lock.
///
/// # Safety
///
/// Called by the timer with the `FsInfo` it was started for, alive.
unsafe extern "C" fn journal_work(data: *mut c_void) {
    let _nofs = NofsScope::new();
    // SAFETY: the timer's contract.
    let info = unsafe { &*data.cast::<FsInfo>() };
    if let Ok(op) = info.op() {
        if let Err(e) = op.fs.do_work(mono_ms()) {
            crate::platform::log::err_ratelimited!("{}: journal reclaim: {e}", op.fs.open.dev.name());
        }
    }
}

impl FsInfo {
    /// Starts an operation on the write core.  Errors: `EROFS` on a
    /// read-only mount or once the write core is shut down.
    pub(crate) fn op(&self) -> Result<Op<'_>, Errno> {
        let Mounted::Rw(fs) = &self.fs else {
            return Err(Errno::EROFS);
        };
        let g = fs.op_lock();
        if self.shut.load(Ordering::Acquire) {
            return Err(Errno::EROFS);
        }
        let now = now_ns();
        fs.set_time(now);
        fs.open.journal.set_time(mono_ms(), u64::try_from(now / NSEC_PER_SEC).unwrap_or(0));
        Ok(Op { fs, _g: g })
    }
}

/// Opens the write core on `bdev` (`bch2_fs_open()` + `bch2_fs_start()`):
/// the superblock probe (one line naming a foreign device), the journal
/// and roots, going read-write (replay after an unclean shutdown), and
/// `bch2_fs_initialize()` for a volume never initialized.  Returns it
/// boxed with the facts [`FsInfo`] keeps.
///
/// # Safety
///
/// `bdev` was opened for writing and stays open until the returned
/// filesystem is dropped.
#[inline(never)]
pub(super) unsafe fn open_rw(
    bdev: *mut bindings::block_device,
    name: &str,
    opts: &crate::opts::MountOpts,
) -> Result<(Mounted, FsFacts, u32, [u8; 16]), Errno> {
    // SAFETY: the caller's contract.
    let dev = unsafe { SbBdev::with_mode(bdev, name, true) }.inspect_err(|_| bch_err!("{name}: out of memory"))?;
    super::read_super(&dev)?;
    let lbs = dev.logical_block_size();
    let open = BchFsOpen::open(dev).inspect_err(|e| bch_err!("{name}: opening read-write: {e}"))?;
    let facts = open.facts;
    if facts.block_bytes as usize > PAGE_SIZE {
        bch_err!("{name}: block size {} is larger than a page: read-write mounts need blocks of at most {PAGE_SIZE} bytes", facts.block_bytes);
        return Err(Errno::EINVAL);
    }
    let uuid = open.sb.lock().sb().map(|s| s.user_uuid()).map_err(|_| Errno::EINVAL)?;
    let fresh = open.fresh;
    // SAFETY: returns random bits.
    let seed = unsafe { bindings::get_random_u64() };
    let fs = start_boxed(open, seed).inspect_err(|e| bch_err!("{name}: going read-write: {e}"))?;
    // Mount options override the superblock's for this mount.
    if let Err(e) = fs.apply_mount_opts(opts) {
        bch_err!("{name}: mount options: {e}");
        let _ = fs.shutdown();
        return Err(e);
    }
    if fresh {
        let _g = fs.op_lock();
        fs.set_time(now_ns());
        if let Err(e) = crate::fs_initialize::fs_initialize(&fs) {
            bch_err!("{name}: initializing the new filesystem: {e}");
            let _ = fs.shutdown();
            return Err(e);
        }
        bch_info!("{name}: initialized a new filesystem");
    }
    Ok((Mounted::Rw(fs), facts, lbs, uuid))
}

/// [`BchFs::start`]: the value built into a box in a frame of its own
/// ([`new_boxed`]: the value is large, and its construction's frame
/// several KiB), then [`BchFs::go_rw`] from the caller's frame, so that
/// recovery's deep calls (btree traversal, node reads, lockdep's stack
/// traces) do not run on top of it: on a 16 KiB kernel stack they did
/// not fit.
fn start_boxed(open: crate::platform::Arc<BchFsOpen<SbBdev>>, seed: u64) -> Result<kernel::alloc::KBox<RwFs>, Errno> {
    let fs = new_boxed(open, seed)?;
    fs.go_rw()?;
    Ok(fs)
}

/// [`BchFs::new`] into a box.
#[inline(never)]
fn new_boxed(open: crate::platform::Arc<BchFsOpen<SbBdev>>, seed: u64) -> Result<kernel::alloc::KBox<RwFs>, Errno> {
    // `new` seeds the node seqs from `seed` (random bits): new nodes'
    // seqs do not repeat those of an earlier mount's.
    let fs = BchFs::new(open, now_ns(), seed)?;
    kernel::alloc::KBox::new(fs, kernel::alloc::flags::GFP_KERNEL).map_err(|_| Errno::ENOMEM)
}

/// Clean shutdown of a read-write mount (`bch2_fs_read_only()` and
/// `bch2_fs_mark_clean()`), once; nothing calls into the write core
/// afterwards.  A failure is logged (the volume is then left as after a
/// crash: the next mount replays the journal).
pub(super) fn shutdown(info: &FsInfo, name: &dyn core::fmt::Display) {
    let Ok(op) = info.op() else { return };
    if op.fs.is_emergency_ro() {
        bch_info!("{name}: unmounted after an emergency read-only: the journal will be replayed at the next mount");
    } else if let Err(e) = op.fs.shutdown() {
        bch_err!("{name}: clean shutdown failed: {e}; the journal will be replayed at the next mount");
    }
    info.shut.store(true, Ordering::Release);
}

/// Everything committed so far made durable: the journal flushed up to
/// its current entry (`bch2_journal_flush()`, what C's `fsync` and
/// `sync_fs` wait for; the btree nodes are written by reclaim, and replay
/// brings back what they lack).  Nothing with `journal_flush_disabled`.
pub(super) fn flush_all(info: &FsInfo) -> Result<(), Errno> {
    let op = match info.op() {
        Ok(op) => op,
        Err(Errno::EROFS) => return Ok(()),
        Err(e) => return Err(e),
    };
    op.fs.journal_flush()
}

/// [`flush_all`] after writing every dirty node and the write buffer
/// (`fs.flush()`): what `remount,ro` leaves (C's `bch2_fs_read_only()`
/// also marks the volume clean; here the next read-write mount replays an
/// empty tail of the journal).
pub(super) fn flush_full(info: &FsInfo) -> Result<(), Errno> {
    match info.op() {
        Ok(op) => op.fs.flush()?,
        Err(Errno::EROFS) => return Ok(()),
        Err(e) => return Err(e),
    }
    flush_all(info)
}

fn to_kernel(r: Result<(), Errno>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_kernel(),
    }
}

fn ts_ns(t: bindings::timespec64) -> i64 {
    t.tv_sec.saturating_mul(NSEC_PER_SEC).saturating_add(t.tv_nsec as i64)
}

/// A dentry's name.
///
/// # Safety
///
/// `d` is valid and its name stable (the VFS holds the parent's lock) for
/// `'a`.
unsafe fn dname<'a>(d: *const bindings::dentry) -> &'a [u8] {
    // SAFETY: the caller's contract; `name` is valid for `len` bytes.
    unsafe {
        let q = &(*d).d_name;
        core::slice::from_raw_parts(q.name, q.__bindgen_anon_1.__bindgen_anon_1.len as usize)
    }
}

/// The times a directory entry operation changes in the directory.
const MC: c_uint = bindings::ATTR_MTIME | bindings::ATTR_CTIME;

/// Re-reads `inode` from the btree into our attributes and the VFS inode
/// (`bch2_inode_update_after_write()`), with the times in `times` (an
/// `ATTR_*` mask: those the operation changed); a regular file's size
/// stays the page cache's.
///
/// # Safety
///
/// `inode` is ours, referenced, and the caller holds the VFS locks that
/// allow changing its attributes.
pub(super) unsafe fn refresh(info: &FsInfo, op: &Op<'_>, inode: *mut bindings::inode, times: c_uint) -> Result<(), Errno> {
    // SAFETY: the caller's contract.
    let (bi, inum, mode) = unsafe { (BchInode::from_vfs(inode), (*inode).i_ino as u64, (*inode).i_mode) };
    let a = fs_common::inode_get(&*op.reader(), &info.sv, inum)?;
    bi.set_attrs(op, a);
    // SAFETY: the caller's contract.
    unsafe { inode::set_vfs_attrs(inode, &a, mode & S_IFMT != S_IFREG, times) };
    Ok(())
}

/// The inode `inum` just made, attached to `dentry`.
///
/// # Safety
///
/// `dentry` is a negative dentry of `sb` the VFS handed to a create
/// operation.
unsafe fn instantiate(sb: *mut bindings::super_block, dentry: *mut bindings::dentry, inum: u64) -> Result<(), Errno> {
    // SAFETY: `sb` is mounted.
    let inode = unsafe { inode::iget(sb, inum) }?;
    // SAFETY: `d_instantiate` takes our reference.
    unsafe { bindings::d_instantiate(dentry, inode) };
    Ok(())
}

// ---- directory operations ---------------------------------------------

/// `create` (`bch2_create`).
///
/// # Safety
///
/// Called by the VFS with a directory of ours (locked) and a negative
/// dentry under it.
unsafe extern "C" fn bch_create(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    mode: bindings::umode_t,
    _excl: bool,
) -> c_int {
    // SAFETY: as this function.
    unsafe { bch_mknod(idmap, dir, dentry, mode, 0) }
}

/// `mkdir` (`bch2_mkdir`).
///
/// # Safety
///
/// As [`bch_create`].
unsafe extern "C" fn bch_mkdir(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    mode: bindings::umode_t,
) -> c_int {
    // SAFETY: as this function.
    unsafe { bch_mknod(idmap, dir, dentry, mode | bindings::S_IFDIR as bindings::umode_t, 0) }
}

/// `mknod` (`bch2_mknod`): any file type.
///
/// # Safety
///
/// As [`bch_create`].
unsafe extern "C" fn bch_mknod(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    mode: bindings::umode_t,
    rdev: bindings::dev_t,
) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: as this function.
    to_kernel(unsafe { mknod(idmap, dir, dentry, mode, rdev) })
}

#[inline(never)]
unsafe fn mknod(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    mode: bindings::umode_t,
    rdev: bindings::dev_t,
) -> Result<(), Errno> {
    let (mut m, mut uid, mut gid) = (mode, 0u32, 0u32);
    // SAFETY: the VFS's arguments are valid (caller); the outputs are
    // locals.
    let (sb, info, name, dinum) = unsafe {
        bindings::bch_rs_new_owner(idmap, dir, &mut m, &mut uid, &mut gid);
        let sb = (*dir).i_sb;
        (sb, FsInfo::of(sb), dname(dentry), (*dir).i_ino as u64)
    };
    // Before the operation lock: this may read the directory's default
    // ACL.
    // SAFETY: `dir` is ours, referenced by the VFS.
    let acls = unsafe { super::acl::Created::new(dir, &mut m) }?;
    let inum = {
        let op = info.op()?;
        let n = NewInode { mode: m, uid, gid, rdev };
        let u = fs_ops::create_acl(&mut op.fs.trans(), &info.sv, dinum, name, &n, &acls.acls)?;
        // SAFETY: the VFS holds the directory's lock.
        unsafe { refresh(info, &op, dir, MC) }?;
        u.inum
    };
    // SAFETY: the VFS's negative dentry, positive after.
    unsafe {
        instantiate(sb, dentry, inum)?;
        acls.cache((*dentry).d_inode);
    }
    Ok(())
}

/// `symlink` (`bch2_symlink`).
///
/// # Safety
///
/// As [`bch_create`]; `target` is a NUL-terminated string.
unsafe extern "C" fn bch_symlink(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    target: *const c_char,
) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: as this function.
    to_kernel(unsafe { symlink(idmap, dir, dentry, target) })
}

#[inline(never)]
unsafe fn symlink(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    target: *const c_char,
) -> Result<(), Errno> {
    let (mut m, mut uid, mut gid) = ((S_IFLNK | 0o777) as bindings::umode_t, 0u32, 0u32);
    // SAFETY: as `mknod`; `target` is a C string the VFS owns.
    let (sb, info, name, dinum, target) = unsafe {
        bindings::bch_rs_new_owner(idmap, dir, &mut m, &mut uid, &mut gid);
        let sb = (*dir).i_sb;
        (sb, FsInfo::of(sb), dname(dentry), (*dir).i_ino as u64, CStr::from_char_ptr(target).as_bytes())
    };
    let inum = {
        let op = info.op()?;
        let mut a = FsDataAlloc::new(op.fs, writepoint_hashed(dinum));
        let u = fs_ops::symlink(&mut op.fs.trans(), &mut a, &info.sv, dinum, name, target, uid, gid)?;
        drop(a);
        // SAFETY: the VFS holds the directory's lock.
        unsafe { refresh(info, &op, dir, MC) }?;
        u.inum
    };
    // SAFETY: the VFS's negative dentry.
    unsafe { instantiate(sb, dentry, inum) }
}

/// `tmpfile` (`bch2_tmpfile`): an unlinked inode (`BCH_INODE_unlinked`,
/// no entry), opened; `linkat()` may give it a name, else it goes when
/// closed.
///
/// # Safety
///
/// Called by the VFS with a directory of ours and a file being opened.
unsafe extern "C" fn bch_tmpfile(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    file: *mut bindings::file,
    mode: bindings::umode_t,
) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: as this function.
    let r = unsafe { tmpfile(idmap, dir, file, mode) };
    // SAFETY: the VFS's file, opened on success.
    unsafe { bindings::finish_open_simple(file, to_kernel(r)) }
}

#[inline(never)]
unsafe fn tmpfile(idmap: *mut bindings::mnt_idmap, dir: *mut bindings::inode, file: *mut bindings::file, mode: bindings::umode_t) -> Result<(), Errno> {
    let (mut m, mut uid, mut gid) = (mode, 0u32, 0u32);
    // SAFETY: as `mknod`.
    let (sb, info, dinum) = unsafe {
        bindings::bch_rs_new_owner(idmap, dir, &mut m, &mut uid, &mut gid);
        let sb = (*dir).i_sb;
        (sb, FsInfo::of(sb), (*dir).i_ino as u64)
    };
    // SAFETY: `dir` is ours, referenced by the VFS.
    let acls = unsafe { super::acl::Created::new(dir, &mut m) }?;
    let inum = {
        let op = info.op()?;
        let mut t = op.fs.trans();
        let new = fs_ops::inode_init_early(&mut t, &NewInode { mode: m, uid, gid, rdev: 0 });
        commit_do(&mut t, |t| fs_ops::create_trans_acl(t, &info.sv, dinum, b"", &new, true, &acls.acls))?.inum
    };
    // SAFETY: `sb` is mounted.
    let inode = unsafe { inode::iget(sb, inum) }?;
    // SAFETY: the new inode is ours and referenced.
    unsafe { acls.cache(inode) };
    // SAFETY: the new inode is ours; `d_tmpfile` drops the one link the
    // VFS expects a new inode to have (it is unlinked on disk already)
    // and takes our reference for the file's dentry.
    unsafe {
        bindings::set_nlink(inode, 1);
        bindings::d_tmpfile(file, inode);
    }
    Ok(())
}

/// `link` (`bch2_link`).
///
/// # Safety
///
/// Called by the VFS with an existing dentry of ours, a directory of ours
/// (locked) and a negative dentry under it; the inode is locked.
unsafe extern "C" fn bch_link(old: *mut bindings::dentry, dir: *mut bindings::inode, dentry: *mut bindings::dentry) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: as this function.
    to_kernel(unsafe { link(old, dir, dentry) })
}

#[inline(never)]
unsafe fn link(old: *mut bindings::dentry, dir: *mut bindings::inode, dentry: *mut bindings::dentry) -> Result<(), Errno> {
    // SAFETY: the VFS's arguments are valid; `old` is positive.
    let (info, inode, name, dinum) = unsafe { (FsInfo::of((*dir).i_sb), (*old).d_inode, dname(dentry), (*dir).i_ino as u64) };
    {
        let op = info.op()?;
        // SAFETY: `inode` is referenced by `old`.
        let inum = unsafe { (*inode).i_ino as u64 };
        // Not `fs_ops::link`, which refuses an unlinked inode: the VFS
        // has checked (a directory, or an unlinked inode that is not an
        // `O_TMPFILE` one, never gets here).
        fs_ops::check_name(name)?;
        commit_do(&mut op.fs.trans(), |t| fs_ops::link_trans(t, &info.sv, dinum, inum, name))?;
        // SAFETY: the VFS holds both inodes' locks.
        unsafe {
            refresh(info, &op, dir, MC)?;
            refresh(info, &op, inode, bindings::ATTR_CTIME)?;
        }
    }
    // SAFETY: a new reference for the new dentry, which takes it.
    unsafe {
        bindings::ihold(inode);
        bindings::d_instantiate(dentry, inode);
    }
    Ok(())
}

/// `unlink` (`bch2_unlink`).
///
/// # Safety
///
/// Called by the VFS with a directory of ours and a positive dentry under
/// it, both locked.
unsafe extern "C" fn bch_unlink(dir: *mut bindings::inode, dentry: *mut bindings::dentry) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: as this function.
    to_kernel(unsafe { unlink(dir, dentry) })
}

/// `rmdir` (`bch2_rmdir`): `unlink` of an empty directory (`ENOTEMPTY`
/// otherwise).
///
/// # Safety
///
/// As [`bch_unlink`].
unsafe extern "C" fn bch_rmdir(dir: *mut bindings::inode, dentry: *mut bindings::dentry) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: as this function.
    to_kernel(unsafe { unlink(dir, dentry) })
}

#[inline(never)]
unsafe fn unlink(dir: *mut bindings::inode, dentry: *mut bindings::dentry) -> Result<(), Errno> {
    // SAFETY: the VFS's arguments are valid; the dentry is positive.
    let (info, inode, name, dinum) = unsafe { (FsInfo::of((*dir).i_sb), (*dentry).d_inode, dname(dentry), (*dir).i_ino as u64) };
    let op = info.op()?;
    // The inode itself goes when the VFS evicts it (it may be open).
    commit_do(&mut op.fs.trans(), |t| fs_ops::unlink_trans(t, &info.sv, dinum, name))?;
    // SAFETY: the VFS holds both inodes' locks.
    unsafe {
        refresh(info, &op, dir, MC)?;
        refresh(info, &op, inode, bindings::ATTR_CTIME)
    }
}

/// `rename` (`bch2_rename2`): `RENAME_NOREPLACE` (the VFS checked the
/// target is absent) and `RENAME_EXCHANGE`; `RENAME_WHITEOUT` is not
/// supported (`EINVAL`).
///
/// # Safety
///
/// Called by the VFS with the directories and dentries of a rename on our
/// filesystem, locked as `vfs_rename()` locks them.
unsafe extern "C" fn bch_rename(
    _idmap: *mut bindings::mnt_idmap,
    src_dir: *mut bindings::inode,
    src: *mut bindings::dentry,
    dst_dir: *mut bindings::inode,
    dst: *mut bindings::dentry,
    flags: c_uint,
) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: as this function.
    to_kernel(unsafe { rename(src_dir, src, dst_dir, dst, flags) })
}

#[inline(never)]
unsafe fn rename(
    src_dir: *mut bindings::inode,
    src: *mut bindings::dentry,
    dst_dir: *mut bindings::inode,
    dst: *mut bindings::dentry,
    flags: c_uint,
) -> Result<(), Errno> {
    if flags & !(bindings::RENAME_NOREPLACE | bindings::RENAME_EXCHANGE | bindings::RENAME_WHITEOUT) != 0 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the VFS's arguments are valid; `src` is positive, `dst`
    // may be negative.
    let (info, src_inode, dst_inode, src_name, dst_name, sdir, ddir) = unsafe {
        (
            FsInfo::of((*src_dir).i_sb),
            (*src).d_inode,
            (*dst).d_inode,
            dname(src),
            dname(dst),
            (*src_dir).i_ino as u64,
            (*dst_dir).i_ino as u64,
        )
    };
    let mode = if flags & bindings::RENAME_EXCHANGE != 0 {
        RenameMode::Exchange
    } else if dst_inode.is_null() {
        RenameMode::Rename
    } else {
        RenameMode::Overwrite
    };
    if mode == RenameMode::Overwrite {
        // Replacing a file by rename: the new one's data first, as C.
        // SAFETY: `src_inode` is alive (the VFS holds its dentry).
        let r = unsafe { bindings::filemap_write_and_wait_range(&mut (*src_inode).i_data, 0, i64::MAX) };
        if r != 0 {
            return Err(Errno(-r));
        }
    }
    let op = info.op()?;
    // `RENAME_WHITEOUT`: a character device 0:0 (`WHITEOUT_DEV`, mode
    // `WHITEOUT_MODE` 0) of the caller's fsuid/fsgid takes the source's
    // name, in the same transaction.
    let whiteout = (flags & bindings::RENAME_WHITEOUT != 0).then(|| {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: the outputs are locals.
        unsafe { bindings::bch_rs_current_fs_ids(&mut uid, &mut gid) };
        fs_ops::inode_init_early(&mut op.fs.trans(), &NewInode { mode: S_IFCHR, uid, gid, rdev: 0 })
    });
    // A replaced inode that lost its last link goes when it is evicted.
    commit_do(&mut op.fs.trans(), |t| {
        fs_ops::rename_trans(t, &info.sv, sdir, src_name, ddir, dst_name, mode)?;
        if let Some(w) = &whiteout {
            fs_ops::create_trans(t, &info.sv, sdir, src_name, w, false)?;
        }
        Ok(())
    })?;
    // SAFETY: the VFS holds the locks of all of them.
    unsafe {
        refresh(info, &op, src_dir, MC)?;
        if dst_dir != src_dir {
            refresh(info, &op, dst_dir, MC)?;
        }
        refresh(info, &op, src_inode, bindings::ATTR_CTIME)?;
        if !dst_inode.is_null() {
            refresh(info, &op, dst_inode, bindings::ATTR_CTIME)?;
        }
    }
    Ok(())
}

/// `setattr` (`bch2_setattr`): owner, mode, times and size.  A size
/// change sets mtime and ctime (`bchfs_truncate()`; `truncate(2)` asks
/// for neither).  Growing writes the page cache back from the old end
/// first (`bch2_extend()`: writeback zeroes what an mmap left past the
/// end in the last folio); the page cache is cut (`truncate_setsize()`)
/// and the btree changed under the mapping's invalidate lock, so that no
/// read or fault fills a folio from the old extents meanwhile.
///
/// # Safety
///
/// Called by the VFS with a positive dentry of ours whose inode is locked
/// and a valid `iattr`.
unsafe extern "C" fn bch_setattr(idmap: *mut bindings::mnt_idmap, dentry: *mut bindings::dentry, attr: *mut bindings::iattr) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: as this function.
    to_kernel(unsafe { setattr(idmap, dentry, attr) })
}

#[inline(never)]
unsafe fn setattr(idmap: *mut bindings::mnt_idmap, dentry: *mut bindings::dentry, attr: *mut bindings::iattr) -> Result<(), Errno> {
    // SAFETY: the VFS's arguments are valid (caller).
    let r = unsafe { bindings::setattr_prepare(idmap, dentry, attr) };
    if r != 0 {
        return Err(Errno(-r));
    }
    // SAFETY: as above; the dentry is positive, its inode locked.
    let (inode, info, old_size) = unsafe {
        let inode = (*dentry).d_inode;
        (inode, FsInfo::of((*inode).i_sb), bindings::i_size_read(inode))
    };
    // SAFETY: as above.
    let valid = unsafe {
        if (*attr).ia_valid & bindings::ATTR_SIZE != 0 && (*attr).ia_size != old_size {
            let now = bindings::current_time(inode);
            if (*attr).ia_valid & bindings::ATTR_MTIME == 0 {
                (*attr).ia_mtime = now;
            }
            if (*attr).ia_valid & bindings::ATTR_CTIME == 0 {
                (*attr).ia_ctime = now;
            }
            (*attr).ia_valid |= bindings::ATTR_MTIME | bindings::ATTR_CTIME;
        }
        (*attr).ia_valid
    };
    // SAFETY: `inode` is valid and locked.
    let (mut uid, mut gid, mut mode) = unsafe { (bindings::bch_rs_i_uid(inode) as u32, bindings::bch_rs_i_gid(inode) as u32, (*inode).i_mode) };
    // SAFETY: as above; the outputs are locals.
    unsafe { bindings::bch_rs_iattr_ids(idmap, inode, attr, &mut uid, &mut gid, &mut mode) };
    let mut sa = SetAttr::default();
    if valid & bindings::ATTR_UID != 0 {
        sa.uid = Some(uid);
    }
    if valid & bindings::ATTR_GID != 0 {
        sa.gid = Some(gid);
    }
    if valid & bindings::ATTR_MODE != 0 {
        sa.mode = Some(mode);
    }
    // SAFETY: `attr` is valid.
    unsafe {
        if valid & bindings::ATTR_ATIME != 0 {
            sa.atime_ns = Some(ts_ns((*attr).ia_atime));
        }
        if valid & bindings::ATTR_MTIME != 0 {
            sa.mtime_ns = Some(ts_ns((*attr).ia_mtime));
        }
        if valid & bindings::ATTR_CTIME != 0 {
            sa.ctime_ns = Some(ts_ns((*attr).ia_ctime));
        }
    }
    if valid & bindings::ATTR_SIZE == 0 {
        return unsafe { setattr_btree(info, inode, &sa, valid) };
    }
    // SAFETY: as above.
    let size = unsafe { (*attr).ia_size };
    sa.size = Some(size as u64);
    // SAFETY: the inode is ours and locked.
    unsafe {
        let mapping = &mut (*inode).i_data as *mut bindings::address_space;
        if size > old_size {
            let r = bindings::filemap_write_and_wait_range(mapping, old_size, i64::MAX);
            if r != 0 {
                return Err(Errno(-r));
            }
        }
        bindings::filemap_invalidate_lock(mapping);
        // This waits for writeback of the folios it drops and zeroes the
        // partial one.
        bindings::truncate_setsize(inode, size);
        let r = setattr_btree(info, inode, &sa, valid);
        bindings::filemap_invalidate_unlock(mapping);
        r
    }
}

/// The btree part of `setattr`: `sa` written, the inode refreshed with
/// the times in `valid`.
///
/// # Safety
///
/// `inode` is ours and locked (`i_rwsem`).
unsafe fn setattr_btree(info: &FsInfo, inode: *mut bindings::inode, sa: &SetAttr, valid: c_uint) -> Result<(), Errno> {
    let op = info.op()?;
    // SAFETY: `inode` is valid.
    let inum = unsafe { (*inode).i_ino as u64 };
    {
        let mut a = FsDataAlloc::new(op.fs, writepoint_hashed(inum));
        fs_ops::setattr(&mut op.fs.trans(), &mut a, &info.sv, inum, sa)?;
    }
    // SAFETY: the inode is locked.
    unsafe { refresh(info, &op, inode, valid & inode::ALL_TIMES) }?;
    if sa.mode.is_some() {
        // SAFETY: the inode is ours and referenced.
        unsafe { super::acl::chmod_done(inode) };
    }
    Ok(())
}

/// `write_inode` (`bch2_vfs_write_inode`): the times the VFS changed
/// (`file_update_time()`, `touch_atime()`) written to the btree.
///
/// # Safety
///
/// Called by writeback with a referenced inode of ours.
pub(super) unsafe extern "C" fn bch_write_inode(inode: *mut bindings::inode, _wbc: *mut bindings::writeback_control) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: `inode` is ours and referenced; its superblock mounted.
    let (info, inum) = unsafe { (FsInfo::of((*inode).i_sb), (*inode).i_ino as u64) };
    let op = match info.op() {
        Ok(op) => op,
        Err(_) => return 0,
    };
    // The times read under the operation lock: an operation that wrote
    // newer ones (`setattr`) refreshed them under it.
    // SAFETY: as above.
    let sa = unsafe {
        SetAttr {
            atime_ns: Some(ts_ns(bindings::inode_get_atime(inode))),
            mtime_ns: Some(ts_ns(bindings::inode_get_mtime(inode))),
            ctime_ns: Some(ts_ns(bindings::inode_get_ctime(inode))),
            ..SetAttr::default()
        }
    };
    let mut a = FsDataAlloc::new(op.fs, writepoint_hashed(inum));
    match fs_ops::setattr(&mut op.fs.trans(), &mut a, &info.sv, inum, &sa) {
        Ok(u) => {
            // SAFETY: `inode` is ours.
            let bi = unsafe { BchInode::from_vfs(inode) };
            bi.set_attrs(&op, fs_common::attrs_from_unpacked(&info.facts, &u));
            0
        }
        // Removed meanwhile.
        Err(Errno::ENOENT) => 0,
        Err(e) => e.to_kernel(),
    }
}

/// `evict_inode` (`bch2_evict_inode`): the page cache goes; an inode with
/// no link left is removed from the btree (`bch2_inode_rm()`).
///
/// # Safety
///
/// Called by the VFS once per inode of ours being evicted.
pub(super) unsafe extern "C" fn bch_evict_inode(inode: *mut bindings::inode) {
    let _nofs = NofsScope::new();
    // SAFETY: the inode is being evicted: ours alone.
    let (info, inum, remove) = unsafe {
        bindings::truncate_inode_pages_final(&mut (*inode).i_data);
        bindings::clear_inode(inode);
        let remove = (*inode).__bindgen_anon_1.i_nlink == 0 && !bindings::is_bad_inode(inode);
        (FsInfo::of((*inode).i_sb), (*inode).i_ino as u64, remove)
    };
    if !remove {
        return;
    }
    let Ok(op) = info.op() else { return };
    if let Err(e) = fs_common::inode_write::inode_rm(&mut op.fs.trans(), &info.sv, inum) {
        bch_err!("{}: removing unlinked inode {inum}: {e}", op.fs.open.dev.name());
    }
}

/// `sync_fs` (`bch2_sync_fs`): with `wait`, everything committed made
/// durable ([`flush_all`]).
///
/// # Safety
///
/// Called by the VFS with a mounted superblock of ours.
pub(super) unsafe extern "C" fn bch_sync_fs(sb: *mut bindings::super_block, wait: c_int) -> c_int {
    if wait == 0 {
        return 0;
    }
    let _nofs = NofsScope::new();
    // SAFETY: mounted: `s_fs_info` is live.
    let info = unsafe { FsInfo::of(sb) };
    to_kernel(flush_all(info))
}

/// `put_super` (`bch2_put_super`): after the inodes are evicted and before
/// the device is released, the clean shutdown of a read-write mount.
///
/// # Safety
///
/// Called by `generic_shutdown_super()` for a superblock of ours.
pub(super) unsafe extern "C" fn bch_put_super(sb: *mut bindings::super_block) {
    let _nofs = NofsScope::new();
    // SAFETY: `s_fs_info` is live until `kill_sb` frees it after this.
    let (info, id) = unsafe { (FsInfo::of(sb), SbId(&(*sb).s_id)) };
    if info.is_rw() {
        shutdown(info, &id);
    }
}

// ---- file data ----------------------------------------------------------

/// `fsync` (`bch2_fsync`): the range written back, the inode's times,
/// then [`flush_all`].
///
/// # Safety
///
/// Called by the VFS with an open file of ours.
pub(super) unsafe extern "C" fn bch_fsync(file: *mut bindings::file, start: bindings::loff_t, end: bindings::loff_t, _datasync: c_int) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: `file` is open; its inode ours.
    let (r, inode) = unsafe { (bindings::file_write_and_wait_range(file, start, end), (*file).f_inode) };
    if r != 0 {
        return r;
    }
    // SAFETY: `inode` is referenced by the open file.
    let r = unsafe { bindings::sync_inode_metadata(inode, 1) };
    if r != 0 {
        return r;
    }
    // SAFETY: as above.
    let info = unsafe { FsInfo::of((*inode).i_sb) };
    to_kernel(flush_all(info))
}

/// Whether `p` is an encoded error (`IS_ERR()`).
pub(super) fn is_err<T>(p: *mut T) -> bool {
    p as usize >= (-(MAX_ERRNO as isize)) as usize
}

/// `write_begin` (`bch2_write_begin`): the folio at `pos`, locked and
/// referenced; unless the write covers all of it, uptodate (read, or
/// zeroed past the end of the file).
///
/// # Safety
///
/// Called by `generic_perform_write()` with the inode locked.
unsafe extern "C" fn bch_write_begin(
    _file: *mut bindings::file,
    mapping: *mut bindings::address_space,
    pos: bindings::loff_t,
    len: c_uint,
    foliop: *mut *mut bindings::folio,
    _fsdata: *mut *mut c_void,
) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: `mapping` is a file mapping of ours.
    let folio = unsafe {
        bindings::__filemap_get_folio(mapping, (pos >> PAGE_SHIFT) as kernel::ffi::c_ulong, bindings::BCH_RS_FGP_WRITEBEGIN, bindings::mapping_gfp_mask(mapping))
    };
    if is_err(folio) {
        return folio as isize as c_int;
    }
    // SAFETY: `folio` is locked and referenced; the mapping's host is ours.
    if let Err(e) = unsafe { folio_reserve(mapping, folio) } {
        // SAFETY: as above.
        unsafe {
            bindings::folio_unlock(folio);
            bindings::folio_put(folio);
        }
        return e.to_kernel();
    }
    // SAFETY: `folio` is locked and referenced: ours to fill.
    unsafe {
        if !bindings::folio_test_uptodate(folio) {
            let fpos = bindings::folio_pos(folio);
            let fsize = bindings::folio_size(folio);
            let whole = pos == fpos && len as usize >= fsize;
            if !whole {
                if fpos >= bindings::i_size_read((*mapping).host) {
                    bindings::folio_zero_segment(folio, 0, fsize);
                    bindings::folio_mark_uptodate(folio);
                } else {
                    match inode::fill_folio(folio) {
                        Ok(()) => bindings::folio_mark_uptodate(folio),
                        Err(e) => {
                            bindings::folio_unlock(folio);
                            bindings::folio_put(folio);
                            return e.to_kernel();
                        }
                    }
                }
            }
        }
        *foliop = folio;
    }
    0
}

/// The write core of a mapping of ours.
///
/// # Safety
///
/// `mapping` is a file mapping of one of our superblocks, alive.
unsafe fn mapping_fs<'a>(mapping: *mut bindings::address_space) -> Option<&'a RwFs> {
    // SAFETY: the caller's contract.
    let info = unsafe { FsInfo::of((*(*mapping).host).i_sb) };
    match &info.fs {
        Mounted::Rw(fs) => Some(fs),
        Mounted::Ro(_) => None,
    }
}

/// `bch2_folio_reservation_get()`: a folio about to be dirtied by a write
/// holds a disk reservation for its sectors (marked by its private
/// pointer), so that a full filesystem fails the `write(2)` with `ENOSPC`
/// rather than its writeback.  Nothing when it holds one already.
///
/// # Safety
///
/// `folio` is locked, of `mapping`, a mapping of ours.
unsafe fn folio_reserve(mapping: *mut bindings::address_space, folio: *mut bindings::folio) -> Result<(), Errno> {
    // SAFETY: the caller's contract.
    let Some(fs) = (unsafe { mapping_fs(mapping) }) else { return Ok(()) };
    // SAFETY: locked.
    if unsafe { bindings::folio_test_private(folio) } {
        return Ok(());
    }
    // SAFETY: as above.
    let sectors = unsafe { bindings::folio_size(folio) } as u64 / 512;
    {
        // The folio lock before the operation lock, as everywhere.
        let _g = fs.op_lock();
        fs.disk_reservation_get(sectors)?;
    }
    // SAFETY: locked; the private pointer only marks the reservation (it
    // takes a folio reference, dropped by `folio_detach_private`).
    unsafe { bindings::folio_attach_private(folio, 1usize as *mut c_void) };
    Ok(())
}

/// Puts back the disk reservation a folio holds, if any (its data is
/// being allocated by writeback, or the folio is going).
///
/// # Safety
///
/// `folio` is locked, of `mapping`, a mapping of ours.
unsafe fn folio_unreserve(mapping: *mut bindings::address_space, folio: *mut bindings::folio) {
    // SAFETY: the caller's contract.
    unsafe {
        if !bindings::folio_test_private(folio) {
            return;
        }
        bindings::folio_detach_private(folio);
        if let Some(fs) = mapping_fs(mapping) {
            fs.disk_reservation_put(bindings::folio_size(folio) as u64 / 512);
        }
    }
}

/// `mmap` (`bch2_mmap`): as `generic_file_mmap`, with our `page_mkwrite`.
///
/// # Safety
///
/// Called by the VFS with an open file of ours and its new mapping.
unsafe extern "C" fn bch_mmap(file: *mut bindings::file, vma: *mut bindings::vm_area_struct) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        bindings::file_accessed(file);
        (*vma).vm_ops = &BCH_VM_OPS;
    }
    0
}

/// `bch_vm_ops`: faults read through the page cache (`filemap_fault`),
/// stores go through [`bch_page_mkwrite`].
static BCH_VM_OPS: bindings::vm_operations_struct = bindings::vm_operations_struct {
    fault: Some(bindings::filemap_fault),
    map_pages: Some(bindings::filemap_map_pages),
    page_mkwrite: Some(bch_page_mkwrite),
    // SAFETY: the other members are optional callbacks; `None` is zero.
    ..unsafe { core::mem::zeroed() }
};

/// `page_mkwrite` (`bch2_page_mkwrite`): the first store through a shared
/// mapping into a clean folio.  The folio takes a disk reservation, as a
/// `write(2)` would (`SIGBUS` when the filesystem is full, rather than a
/// writeback that fails later), and is dirtied; it is returned locked.
/// A folio truncated meanwhile, or past the end, is left alone
/// (`VM_FAULT_NOPAGE`: the fault is retried).
///
/// # Safety
///
/// Called by the fault handler with a fault on a shared mapping of ours.
unsafe extern "C" fn bch_page_mkwrite(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
    let _nofs = NofsScope::new();
    // SAFETY: the caller's contract: the mapping's file is ours and open,
    // the faulting page referenced.
    unsafe {
        let file = (*(*vmf).__bindgen_anon_1.vma).vm_file;
        let inode = (*file).f_inode;
        let mapping = (*inode).i_mapping;
        let folio = bindings::bch_rs_vmf_folio(vmf);
        bindings::sb_start_pagefault((*inode).i_sb);
        // Its error (the time not updated) does not fail the fault.
        let _ = bindings::file_update_time(file);
        // No truncate or hole punch drops the folio meanwhile.
        bindings::filemap_invalidate_lock_shared(mapping);
        bindings::folio_lock(folio);
        let ret = if (*folio).__bindgen_anon_1.__bindgen_anon_1.mapping != mapping
            || bindings::folio_pos(folio) >= bindings::i_size_read(inode)
        {
            bindings::folio_unlock(folio);
            bindings::vm_fault_reason_VM_FAULT_NOPAGE
        } else if folio_reserve(mapping, folio).is_err() {
            bindings::folio_unlock(folio);
            bindings::vm_fault_reason_VM_FAULT_SIGBUS
        } else {
            bindings::folio_mark_dirty(folio);
            bindings::folio_wait_stable(folio);
            bindings::vm_fault_reason_VM_FAULT_LOCKED
        };
        bindings::filemap_invalidate_unlock_shared(mapping);
        bindings::sb_end_pagefault((*inode).i_sb);
        ret
    }
}

/// `invalidate_folio` (`bch2_invalidate_folio`): a folio dropped whole
/// (truncate, hole punch) gives back its reservation.
///
/// # Safety
///
/// Called by the VFS with a locked folio of ours.
unsafe extern "C" fn bch_invalidate_folio(folio: *mut bindings::folio, offset: usize, len: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        if offset == 0 && len == bindings::folio_size(folio) {
            folio_unreserve((*folio).__bindgen_anon_1.__bindgen_anon_1.mapping, folio);
        }
    }
}

/// `release_folio` (`bch2_release_folio`): a clean folio with a
/// reservation (a write that copied nothing) gives it back.
///
/// # Safety
///
/// Called by the VFS with a locked folio of ours.
unsafe extern "C" fn bch_release_folio(folio: *mut bindings::folio, _gfp: bindings::gfp_t) -> bool {
    // SAFETY: the caller's contract.
    unsafe { folio_unreserve((*folio).__bindgen_anon_1.__bindgen_anon_1.mapping, folio) };
    true
}

/// `write_end` (`bch2_write_end`): the folio dirtied, `i_size` grown.  A
/// short copy into a folio that was not uptodate writes nothing (the
/// caller retries).
///
/// # Safety
///
/// Called by `generic_perform_write()` with the folio of `write_begin`.
unsafe extern "C" fn bch_write_end(
    _file: *mut bindings::file,
    mapping: *mut bindings::address_space,
    pos: bindings::loff_t,
    len: c_uint,
    copied: c_uint,
    folio: *mut bindings::folio,
    _fsdata: *mut c_void,
) -> c_int {
    let mut copied = copied;
    // SAFETY: the folio is locked and referenced (from `write_begin`);
    // the inode is locked.
    unsafe {
        if !bindings::folio_test_uptodate(folio) {
            if copied < len {
                copied = 0;
            } else {
                bindings::folio_mark_uptodate(folio);
            }
        }
        if copied > 0 {
            let inode = (*mapping).host;
            let end = pos + bindings::loff_t::from(copied);
            if end > bindings::i_size_read(inode) {
                bindings::i_size_write(inode, end);
            }
            bindings::folio_mark_dirty(folio);
        }
        bindings::folio_unlock(folio);
        bindings::folio_put(folio);
    }
    copied as c_int
}

/// Folios `writepages` gathers into one `write_data_segs` call: 1 MiB,
/// sixteen extents of `encoded_extent_max`'s default (64 KiB) whose data
/// writes are in flight together.
const WRITE_BATCH: usize = 256;

/// Contiguous folios under writeback, not yet written.
struct Batch {
    folios: crate::platform::Vec<*mut bindings::folio>,
    /// File offset of the first, bytes.
    pos: u64,
    /// Bytes to write (the last folio may end at `i_size`).
    len: usize,
}

/// `writepages` (`bch2_writepages`): the dirty folios, up to `i_size`,
/// gathered into runs of up to [`WRITE_BATCH`] contiguous folios, each
/// run written by one `write_data_segs` (its extents' data writes in
/// flight together; the call returns once they are written and their
/// extents committed).
///
/// # Safety
///
/// Called by writeback with a file mapping of ours.
unsafe extern "C" fn bch_writepages(mapping: *mut bindings::address_space, wbc: *mut bindings::writeback_control) -> c_int {
    let _nofs = NofsScope::new();
    let mut b = Batch { folios: crate::platform::Vec::new(), pos: 0, len: 0 };
    // Without room for a whole batch, runs are as long as the room there is.
    let _ = b.folios.reserve(WRITE_BATCH);
    let mut werr: Result<(), Errno> = Ok(());
    let mut folio: *mut bindings::folio = ptr::null_mut();
    let mut err: c_int = 0;
    loop {
        // SAFETY: the iteration protocol of `writeback_iter()`: it takes
        // back the previous folio and the error of its write.
        folio = unsafe { bindings::writeback_iter(mapping, wbc, folio, &mut err) };
        if folio.is_null() {
            break;
        }
        // SAFETY: `folio` is locked, cleared for I/O, of this mapping: its
        // data is allocated by this writeback (or dropped, past the end).
        unsafe { folio_unreserve(mapping, folio) };
        // SAFETY: `folio` is locked, cleared for I/O, of this mapping.
        let (pos, size, isize) =
            unsafe { (bindings::folio_pos(folio), bindings::folio_size(folio), bindings::i_size_read((*mapping).host)) };
        if pos >= isize || size > PAGE_SIZE {
            // Past the end (a truncate raced us; it drops the folio), or a
            // large folio, which this mapping never makes.
            // SAFETY: ours to unlock.
            unsafe { bindings::folio_unlock(folio) };
            err = if size > PAGE_SIZE { Errno::EIO.to_kernel() } else { 0 };
            continue;
        }
        let len = usize::try_from(isize - pos).map_or(size, |n| n.min(size));
        let pos = pos as u64;
        // SAFETY: locked; writeback is set before the lock goes, so
        // truncate and reclaim wait for it.  Its memory may still be
        // written (mmap) until it is copied; `write_data_segs` checksums
        // its own copy.
        unsafe {
            if len < size {
                bindings::folio_zero_segment(folio, len, size);
            }
            bindings::__folio_start_writeback(folio, false);
            bindings::folio_unlock(folio);
        }
        let full = b.folios.len() >= WRITE_BATCH || b.folios.len() == b.folios.capacity();
        if !b.folios.is_empty() && (full || b.pos + b.len as u64 != pos) {
            // SAFETY: the batch's folios are ours, under writeback.
            let r = unsafe { write_batch(mapping, &mut b) };
            werr = werr.and(r);
        }
        if b.folios.is_empty() {
            b.pos = pos;
        }
        if b.folios.push(folio).is_err() {
            // No room at all: this folio alone.
            // SAFETY: ours, under writeback.
            let r = unsafe { write_lone(mapping, folio, pos, len) };
            werr = werr.and(r);
        } else {
            b.len += len;
        }
        err = 0;
    }
    if !b.folios.is_empty() {
        // SAFETY: as above.
        let r = unsafe { write_batch(mapping, &mut b) };
        werr = werr.and(r);
    }
    match werr {
        Err(e) if err == 0 => e.to_kernel(),
        _ => err,
    }
}

/// Writes one folio under writeback (`len` bytes of it from file offset
/// `pos`) and ends its writeback.
///
/// # Safety
///
/// `folio` belongs to `mapping` and is under writeback set by us.
unsafe fn write_lone(mapping: *mut bindings::address_space, folio: *mut bindings::folio, pos: u64, len: usize) -> Result<(), Errno> {
    // SAFETY: the caller's contract.
    unsafe {
        let r = write_mapped((*mapping).host, folio, pos, len);
        if let Err(e) = r {
            bindings::mapping_set_error(mapping, e.to_kernel());
        }
        bindings::folio_end_writeback(folio);
        r
    }
}

/// `write_data` of the first `len` bytes of one-page `folio` (under
/// writeback) at file offset `pos`, through a temporary mapping of it.
///
/// # Safety
///
/// `folio` is a folio of `inode`'s mapping under writeback set by us;
/// `inode` is ours and referenced; `len <= PAGE_SIZE`.
unsafe fn write_mapped(inode: *mut bindings::inode, folio: *mut bindings::folio, pos: u64, len: usize) -> Result<(), Errno> {
    // SAFETY: the caller's contract: one page, mapped for the write and
    // unmapped after it.
    unsafe {
        let p = bindings::kmap_local_folio(folio, 0);
        let r = write_data(inode, pos, &[core::slice::from_raw_parts(p.cast::<u8>(), len)]);
        bindings::kunmap_local(p);
        r
    }
}

/// Writes the folios of `b` (under writeback) and ends their writeback;
/// empties `b`.  The folios' memory goes to one `write_data_segs` call
/// (which copies it into the extents' buffers); a folio without a
/// linear-map address (highmem) sends the run through a mapping of one
/// folio at a time.
///
/// # Safety
///
/// `b`'s folios belong to `mapping`, are under writeback set by us, and
/// are contiguous from `b.pos`.
#[inline(never)]
unsafe fn write_batch(mapping: *mut bindings::address_space, b: &mut Batch) -> Result<(), Errno> {
    // SAFETY: the caller's contract.
    let inode = unsafe { (*mapping).host };
    let mut segs: crate::platform::Vec<&[u8]> = crate::platform::Vec::new();
    let mut linear = segs.reserve(b.folios.len()).is_ok();
    let mut off = 0;
    for &f in b.folios.iter() {
        if !linear {
            break;
        }
        let n = (b.len - off).min(PAGE_SIZE);
        // SAFETY: the folio is under writeback: it stays in the mapping
        // and its memory allocated until its writeback ends below, after
        // the last use of `segs`; only read (mmap may write it meanwhile,
        // which the copy in `write_data_segs` makes harmless).
        linear = unsafe { inode::folio_linear(f) }.is_some_and(|p| {
            // SAFETY: as above; `n` is at most the folio's one page.
            segs.push(unsafe { core::slice::from_raw_parts(p, n) }).is_ok()
        });
        off += n;
    }
    let r = if linear {
        // SAFETY: `inode` is the mapping's host, referenced by writeback.
        unsafe { write_data(inode, b.pos, &segs) }
    } else {
        let mut r = Ok(());
        let mut off = 0;
        for &f in b.folios.iter() {
            let n = (b.len - off).min(PAGE_SIZE);
            // SAFETY: as above.
            let ri = unsafe { write_mapped(inode, f, b.pos + off as u64, n) };
            r = r.and(ri);
            off += n;
        }
        r
    };
    drop(segs);
    for &f in b.folios.iter() {
        // SAFETY: ours, under writeback.
        unsafe {
            if let Err(e) = r {
                bindings::mapping_set_error(mapping, e.to_kernel());
            }
            bindings::folio_end_writeback(f);
        }
    }
    b.folios.clear();
    b.len = 0;
    r
}

/// `write_data_segs` of file `inode` at `pos` (block aligned), under the
/// operation lock.
///
/// # Safety
///
/// `inode` is ours and referenced.
unsafe fn write_data(inode: *mut bindings::inode, pos: u64, segs: &[&[u8]]) -> Result<(), Errno> {
    // SAFETY: the caller's contract.
    let (info, inum) = unsafe { (FsInfo::of((*inode).i_sb), (*inode).i_ino as u64) };
    let op = info.op()?;
    let mut a = FsDataAlloc::new(op.fs, writepoint_hashed(inum));
    fs_common::io_write::write_data_segs(&mut op.fs.trans(), &mut a, &info.sv, inum, pos, segs).inspect_err(|e| {
        // Writeback retries and fills the log otherwise (ENOSPC).
        if crate::platform::log_ratelimit() {
            bch_err!("{}: writing back inode {inum} at {pos}: {e}", op.fs.open.dev.name());
        }
    })?;
    drop(a);
    // `i_blocks` follows the sectors now allocated (C accounts them as
    // folios are dirtied, `bch2_i_sectors_acct()`); a racing `stat` sees
    // the old or the new value.
    let sectors = fs_common::inode_unpacked_get(&*op.reader(), info.sv.snapshot, inum)?.sectors;
    // SAFETY: `inode` is referenced; an aligned u64 store.
    unsafe { ptr::write_volatile(ptr::addr_of_mut!((*inode).i_blocks), sectors) };
    Ok(())
}

/// `direct_IO` (`bch2_direct_IO`'s checks only): `O_DIRECT` reads and
/// writes whose file offset, length and memory are aligned to the block
/// size go through the page cache (0: `generic_file_write_iter` falls back
/// to a buffered write, which it then writes back and drops
/// (`direct_write_fallback`); `generic_file_read_iter` to a buffered read
/// after writing the range back); others fail with `EINVAL`, as C's.
///
/// # Safety
///
/// Called by the VFS with a valid `kiocb` of a file of ours and its
/// iterator.
unsafe extern "C" fn bch_direct_io(iocb: *mut bindings::kiocb, iter: *mut bindings::iov_iter) -> isize {
    // SAFETY: the VFS's arguments; the file's inode is ours.
    let (info, pos, count, align) = unsafe {
        let inode = (*(*iocb).ki_filp).f_inode;
        (FsInfo::of((*inode).i_sb), (*iocb).ki_pos, bindings::iov_iter_count(iter), bindings::iov_iter_alignment(iter))
    };
    let mask = u64::from(info.facts.block_bytes.max(512)) - 1;
    if (pos as u64 | count as u64 | align as u64) & mask != 0 {
        return Errno::EINVAL.to_kernel() as isize;
    }
    0
}

// ---- operation tables ---------------------------------------------------

pub(super) static DIR_IOPS: bindings::inode_operations = bindings::inode_operations {
    lookup: Some(inode::bch_lookup),
    getattr: Some(inode::bch_getattr),
    listxattr: Some(super::xattr::bch_listxattr),
    get_inode_acl: Some(super::acl::bch_get_inode_acl),
    set_acl: Some(super::acl::bch_set_acl),
    create: Some(bch_create),
    mkdir: Some(bch_mkdir),
    mknod: Some(bch_mknod),
    symlink: Some(bch_symlink),
    link: Some(bch_link),
    unlink: Some(bch_unlink),
    rmdir: Some(bch_rmdir),
    rename: Some(bch_rename),
    setattr: Some(bch_setattr),
    tmpfile: Some(bch_tmpfile),
    // SAFETY: the other members are optional callbacks; `None` is zero.
    ..unsafe { core::mem::zeroed() }
};

pub(super) static FILE_IOPS: bindings::inode_operations = bindings::inode_operations {
    getattr: Some(inode::bch_getattr),
    listxattr: Some(super::xattr::bch_listxattr),
    get_inode_acl: Some(super::acl::bch_get_inode_acl),
    set_acl: Some(super::acl::bch_set_acl),
    setattr: Some(bch_setattr),
    fiemap: Some(super::io_misc::bch_fiemap),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
};

pub(super) static SYMLINK_IOPS: bindings::inode_operations = bindings::inode_operations {
    get_link: Some(bindings::simple_get_link),
    getattr: Some(inode::bch_getattr),
    listxattr: Some(super::xattr::bch_listxattr),
    get_inode_acl: Some(super::acl::bch_get_inode_acl),
    set_acl: Some(super::acl::bch_set_acl),
    setattr: Some(bch_setattr),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
};

pub(super) static SPECIAL_IOPS: bindings::inode_operations = bindings::inode_operations {
    getattr: Some(inode::bch_getattr),
    listxattr: Some(super::xattr::bch_listxattr),
    get_inode_acl: Some(super::acl::bch_get_inode_acl),
    set_acl: Some(super::acl::bch_set_acl),
    setattr: Some(bch_setattr),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
};

pub(super) static FILE_FOPS: inode::Fops = inode::Fops(bindings::file_operations {
    open: Some(bindings::generic_file_open),
    llseek: Some(super::io_misc::bch_llseek),
    read_iter: Some(bindings::generic_file_read_iter),
    write_iter: Some(bindings::generic_file_write_iter),
    fallocate: Some(super::io_misc::bch_fallocate),
    unlocked_ioctl: Some(super::ioctl::bch_ioctl),
    mmap: Some(bch_mmap),
    fsync: Some(bch_fsync),
    splice_read: Some(bindings::filemap_splice_read),
    splice_write: Some(bindings::iter_file_splice_write),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
});

pub(super) static AOPS: bindings::address_space_operations = bindings::address_space_operations {
    read_folio: Some(inode::bch_read_folio),
    readahead: Some(inode::bch_readahead),
    write_begin: Some(bch_write_begin),
    write_end: Some(bch_write_end),
    dirty_folio: Some(bindings::filemap_dirty_folio),
    writepages: Some(bch_writepages),
    invalidate_folio: Some(bch_invalidate_folio),
    release_folio: Some(bch_release_folio),
    direct_IO: Some(bch_direct_io),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
};

const _: () = assert!(S_IFDIR != 0 && PAGE_SIZE == 1 << PAGE_SHIFT);
