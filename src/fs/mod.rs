// SPDX-License-Identifier: GPL-2.0
//! The VFS side: the `bcachefs` filesystem type, its `fs_context`, the
//! superblock and its operations (`bch2_fs_type`, `bch2_init_fs_context`,
//! `bch2_fs_parse_param`, `bch2_fs_get_tree`, `bch2_statfs`,
//! `bch2_show_options` and `bch2_kill_sb` in `fs/bcachefs/fs.c`).
//!
//! `get_tree` lets `get_tree_bdev()` open the device exclusively, with
//! the superblock as holder (for writing unless `-o ro`), and calls
//! [`fill_super`].  A read-only mount (`ro`, or `norecovery`/`nochanges`,
//! which force it) runs on the read-only core [`Fs`]; a read-write one on
//! the write core [`crate::fs_rw::BchFs`] (see [`rw`]).  Every mount
//! failure logs one line naming the device and the reason.
//!
//! Remounting: read-write to read-only syncs the filesystem and flushes
//! the journal (the write core stays up, so going read-write again is
//! allowed); a mount that started read-only stays read-only (`EROFS`).
//!
//! Inodes, directories, files and symlinks are in [`inode`], their write
//! side in [`rw`]; the `/sys/fs/bcachefs/<uuid>/` directory in
//! [`crate::sysfs`].

mod acl;
mod inode;
mod ioctl;
mod io_misc;
mod rw;
mod xattr;

use core::cell::UnsafeCell;
use core::fmt;
use core::ptr;
use core::sync::atomic::AtomicBool;

use kernel::alloc::{flags::GFP_KERNEL, KBox};
use kernel::ffi::{c_char, c_int, c_uint, c_ulong};
use kernel::str::CStr;
use kernel::ThisModule;

use crate::bcachefs::{Fs, OpenError};
use crate::bindings;
use crate::block::SbBdev;
use crate::errcode::Errno;
use crate::format::sb;
use crate::fs_common::{self, BtreeRead, Subvol};
use crate::opts::MountOpts;
use crate::platform::{BlockDev, SECTOR_SIZE};
use crate::{bch_err, bch_info, bch_warn};

pub(crate) use inode::InodeCache;
pub(crate) use rw::RwFs;

/// `BCACHEFS_STATFS_MAGIC` (`include/uapi/linux/magic.h`).
const BCACHEFS_STATFS_MAGIC: c_ulong = 0xca451a4e;
/// `SHRINK_STOP` (`include/linux/shrinker.h`): `~0UL - 1`.
const SHRINK_STOP: c_ulong = !0 - 1;
/// `BCH_NAME_MAX` (`dirent_format.h`), what `bch2_statfs` reports.
const BCH_NAME_MAX: i64 = 512;
const NSEC_PER_SEC: i64 = 1_000_000_000;

/// The read-only core over the superblock's block device (`-o ro`,
/// `norecovery`, `nochanges`).
pub(crate) type RoFs = Fs<SbBdev>;

// Every VFS callback may run on any CPU concurrently with the others, all
// sharing one filesystem by reference: it must be `Send + Sync`.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<RoFs>()
};

/// The filesystem of a mount: the read-only core, or the read-write one.
/// Each is boxed on its own (both are large), so that [`FsInfo`] stays
/// small and neither is ever moved through a stack frame.
pub(crate) enum Mounted {
    /// Read-only.
    Ro(KBox<RoFs>),
    /// Read-write.
    Rw(KBox<rw::RwFs>),
}

/// A reader of the mounted filesystem (`&dyn BtreeRead`): on a read-write
/// mount it holds the mount's operation lock, so drop it before calling
/// anything that may take it again (`iget` of a new inode, `dir_emit`
/// copying to user memory that may fault in a page of ours).
pub(crate) struct Reader<'a> {
    r: &'a (dyn BtreeRead + Sync),
    _g: Option<crate::platform::MutexGuard<'a, ()>>,
}

impl<'a> core::ops::Deref for Reader<'a> {
    type Target = dyn BtreeRead + Sync + 'a;
    fn deref(&self) -> &Self::Target {
        self.r
    }
}

/// Per-mount state, owned by `sb->s_fs_info` (a leaked [`KBox`]) from
/// [`fill_super`] until [`bch_kill_sb`].  Fields drop in declaration order:
/// the sysfs directory and the shrinker go (waiting for running callbacks)
/// before the filesystem they look at.
pub(crate) struct FsInfo {
    /// The journal's periodic work (read-write mounts).
    journal_timer: Option<rw::JournalTimer>,
    sysfs: Option<crate::sysfs::FsDir>,
    shrinker: Option<Shrinker>,
    /// The filesystem.
    pub(crate) fs: Mounted,
    /// The subvolume every inode of this mount belongs to.
    pub(crate) sv: Subvol,
    /// The options this mount was given.
    pub(crate) opts: MountOpts,
    /// Options set since through sysfs (`options/`), which win over both
    /// the mount's and the superblock's.
    pub(crate) sysfs_opts: crate::platform::Mutex<MountOpts>,
    /// A read-write mount was shut down cleanly (`put_super`): nothing may
    /// call into the write core any more.
    pub(crate) shut: AtomicBool,
    /// Superblock facts (block size, time units), fixed at mount.
    pub(crate) facts: fs_common::FsFacts,
    /// The filesystem's user-visible uuid.
    pub(crate) uuid: [u8; 16],
    /// POSIX ACLs are on (`acl`, from the mount or the superblock:
    /// `SB_POSIXACL`, and the ACLs listed by `listxattr`).
    pub(crate) posix_acl: bool,
}

impl FsInfo {
    /// The per-mount state of `sb`.
    ///
    /// # Safety
    ///
    /// `sb` is one of our superblocks past [`fill_super`]'s setting of
    /// `s_fs_info` and before [`bch_kill_sb`] frees it; the reference must
    /// not outlive that.
    pub(crate) unsafe fn of<'a>(sb: *const bindings::super_block) -> &'a FsInfo {
        // SAFETY: by the caller's contract `s_fs_info` points to a live
        // `FsInfo` that nobody mutates.
        unsafe { &*(*sb).s_fs_info.cast::<FsInfo>() }
    }

    /// A reader of the filesystem (see [`Reader`]).
    pub(crate) fn read(&self) -> Reader<'_> {
        match &self.fs {
            Mounted::Ro(fs) => Reader { r: &**fs, _g: None },
            Mounted::Rw(fs) => {
                let g = fs.op_lock();
                Reader { r: &**fs, _g: Some(g) }
            }
        }
    }

    /// `r`, after an `EUCLEAN` (an inconsistency a read found: `what`
    /// failed) has gone to `errors=` on a read-write mount
    /// ([`BchFs::inconsistent_error`](crate::fs_rw::BchFs::inconsistent_error);
    /// transactions' own go there from `commit_do`).  A read-only mount
    /// writes nothing anyway: there it is only the reader's error.
    pub(crate) fn inconsistent_on<T>(&self, what: &str, r: Result<T, Errno>) -> Result<T, Errno> {
        if let Err(Errno::EUCLEAN) = r {
            self.inconsistent(format_args!("{what} found an inconsistency"));
        }
        r
    }

    /// An inconsistency (`what`) to `errors=` on a read-write mount
    /// (`bch2_fs_inconsistent()`); nothing on a read-only one.
    pub(crate) fn inconsistent(&self, what: core::fmt::Arguments<'_>) {
        if let Mounted::Rw(fs) = &self.fs {
            fs.inconsistent_error(what);
        }
    }

    /// Whether this is a read-write mount (the write core is up, even if
    /// remounted read-only since).
    pub(crate) fn is_rw(&self) -> bool {
        matches!(self.fs, Mounted::Rw(_))
    }

    /// Runs `f` on the superblock as last written (or as read at mount).
    pub(crate) fn with_sb_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match &self.fs {
            Mounted::Ro(fs) => f(fs.sb_bytes()),
            Mounted::Rw(fs) => f(fs.open.sb.lock().bytes()),
        }
    }

    /// Btree nodes in the cache.
    pub(crate) fn btree_cache_count(&self) -> usize {
        match &self.fs {
            Mounted::Ro(fs) => fs.btree_cache_count(),
            Mounted::Rw(fs) => fs.open.cache.count(),
        }
    }

    /// Bytes of btree nodes in the cache.
    pub(crate) fn btree_cache_bytes(&self) -> usize {
        match &self.fs {
            Mounted::Ro(fs) => fs.btree_cache_bytes(),
            Mounted::Rw(fs) => fs.open.cache.bytes(),
        }
    }

    /// Frees up to `nr` cached btree nodes; how many were freed.  Nothing
    /// on a read-write mount: its cache holds dirty nodes, which the
    /// cache's shrink does not tell apart (it is bounded in size anyway).
    pub(crate) fn btree_cache_shrink(&self, nr: usize) -> usize {
        match &self.fs {
            Mounted::Ro(fs) => fs.btree_cache_shrink(nr),
            Mounted::Rw(_) => 0,
        }
    }

    /// `bch2_journal_debug_to_text()`.
    pub(crate) fn journal_debug_to_text(&self, w: &mut dyn fmt::Write) -> fmt::Result {
        match &self.fs {
            Mounted::Ro(fs) => fs.journal_debug_to_text(w),
            Mounted::Rw(fs) => {
                let _g = fs.op_lock();
                fs.open.journal.debug_to_text(w)
            }
        }
    }

    /// The I/O counters, read and write (`dev-N/io_done`).
    pub(crate) fn io_done(&self) -> [crate::bcachefs::IoDone; 2] {
        match &self.fs {
            Mounted::Ro(fs) => [fs.io_done(), crate::bcachefs::IoDone::default()],
            Mounted::Rw(fs) => fs.io_done(),
        }
    }
}

/// A `memalloc_nofs` scope: while it lives, allocations in this task do not
/// recurse into filesystem reclaim (and so never into our own shrinker
/// while the core holds its locks).  Every call from a VFS callback into
/// the core runs under one.
pub(crate) struct NofsScope(c_uint);

impl NofsScope {
    /// Enters the scope.
    pub(crate) fn new() -> Self {
        // SAFETY: only sets a flag of the current task.
        NofsScope(unsafe { bindings::memalloc_nofs_save() })
    }
}

impl Drop for NofsScope {
    fn drop(&mut self) {
        // SAFETY: restores what `new` saved, on the same task: a scope is
        // only ever a local of the function that entered it.
        unsafe { bindings::memalloc_nofs_restore(self.0) };
    }
}

/// `struct file_system_type` must live in static storage: lockdep needs its
/// embedded lock class keys there, and the VFS links it into a global list.
struct FsTypeCell(UnsafeCell<bindings::file_system_type>);

// SAFETY: the cell is written only by `Registration::register` before
// `register_filesystem()` publishes it, and by nobody after; the VFS
// serialises its own accesses with `file_systems_lock`.
unsafe impl Sync for FsTypeCell {}

// SAFETY: `file_system_type` is plain old data (pointers, integers, lock
// class keys); all-zeroes is its unregistered state.
static BCH_FS_TYPE: FsTypeCell = FsTypeCell(UnsafeCell::new(unsafe { core::mem::zeroed() }));

static BCH_FC_OPS: bindings::fs_context_operations = bindings::fs_context_operations {
    free: Some(bch_fc_free),
    parse_param: Some(bch_parse_param),
    get_tree: Some(bch_get_tree),
    reconfigure: Some(bch_reconfigure),
    // SAFETY: all other members are optional callbacks; `None` is zero.
    ..unsafe { core::mem::zeroed() }
};

static BCH_SUPER_OPS: bindings::super_operations = bindings::super_operations {
    alloc_inode: Some(inode::bch_alloc_inode),
    free_inode: Some(inode::bch_free_inode),
    evict_inode: Some(rw::bch_evict_inode),
    write_inode: Some(rw::bch_write_inode),
    sync_fs: Some(rw::bch_sync_fs),
    put_super: Some(rw::bch_put_super),
    statfs: Some(bch_statfs),
    show_options: Some(bch_show_options),
    // SAFETY: all other members are optional callbacks; `None` is zero.
    ..unsafe { core::mem::zeroed() }
};

/// The registered `bcachefs` filesystem type, and the inode cache it
/// allocates from; unregistered on drop.
pub(crate) struct Registration {
    _cache: InodeCache,
}

impl Registration {
    /// Creates the inode cache and registers the filesystem type
    /// `bcachefs`.
    ///
    /// Errors: `ENOMEM`; `EBUSY` when a filesystem of that name is already
    /// registered (the C bcachefs module is loaded).
    pub(crate) fn register(module: &'static ThisModule) -> Result<Self, Errno> {
        let cache = InodeCache::create()?;
        let t = BCH_FS_TYPE.0.get();
        // SAFETY: not yet registered, so nobody else looks at `*t`; the
        // name and the callbacks are 'static.
        let ret = unsafe {
            (*t).name = c"bcachefs".as_ptr().cast();
            (*t).owner = module.as_ptr();
            (*t).init_fs_context = Some(bch_init_fs_context);
            (*t).kill_sb = Some(bch_kill_sb);
            (*t).fs_flags = (bindings::FS_REQUIRES_DEV | bindings::FS_ALLOW_IDMAP) as c_int;
            bindings::register_filesystem(t)
        };
        if ret != 0 {
            return Err(Errno(-ret));
        }
        Ok(Registration { _cache: cache })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: registered in `register`, unregistered exactly once here.
        // Unregistering fails only for a type that is not registered.
        // The module cannot be unloaded while a superblock exists, so no
        // inode of ours is left but those waiting for an RCU grace period,
        // which `InodeCache`'s drop (after this) waits for.
        unsafe { bindings::unregister_filesystem(BCH_FS_TYPE.0.get()) };
    }
}

/// The device name a mount was given, for messages.
///
/// # Safety
///
/// `fc` is valid; the returned string borrows `fc->source` and must not
/// outlive it.
unsafe fn source_name<'a>(fc: *const bindings::fs_context) -> &'a str {
    // SAFETY: `fc` is valid (caller's contract).
    let source = unsafe { (*fc).source };
    if source.is_null() {
        return "(no device)";
    }
    // SAFETY: a non-null `source` is a NUL-terminated string owned by `fc`.
    let s = unsafe { CStr::from_char_ptr(source) };
    s.to_str().unwrap_or("(non-UTF-8 device name)")
}

/// `init_fs_context`: installs our `fs_context_operations` and an empty
/// [`MountOpts`] as `fs_private`.
///
/// # Safety
///
/// Called by the VFS with a valid, exclusively owned `fs_context`.
unsafe extern "C" fn bch_init_fs_context(fc: *mut kernel::bindings::fs_context) -> c_int {
    let fc = fc.cast::<bindings::fs_context>();
    let Ok(opts) = KBox::<MountOpts>::new_uninit(GFP_KERNEL) else {
        return Errno::ENOMEM.to_kernel();
    };
    let opts = opts.write(MountOpts::new());
    // SAFETY: `fc` is valid and ours for the duration of the call; the box
    // is reclaimed in `bch_fc_free`, which the VFS calls exactly once.
    unsafe {
        (*fc).fs_private = KBox::into_raw(opts).cast();
        (*fc).ops = &BCH_FC_OPS;
    }
    0
}

/// `fs_context_operations.free`: frees the options.
///
/// # Safety
///
/// Called by the VFS once, with a valid `fs_context` it is done with.
unsafe extern "C" fn bch_fc_free(fc: *mut bindings::fs_context) {
    // SAFETY: `fc` is valid; `fs_private` is null or the box leaked by
    // `bch_init_fs_context`, reclaimed only here.
    unsafe {
        let p = (*fc).fs_private.cast::<MountOpts>();
        (*fc).fs_private = ptr::null_mut();
        if !p.is_null() {
            drop(KBox::from_raw(p));
        }
    }
}

/// `parse_param`: one mount option.  `source` goes back to the VFS
/// (`-ENOPARAM`); the generic flags (`ro`, `rw`, ...) never get here.
///
/// # Safety
///
/// Called by the VFS with a valid `fs_context` and parameter.
unsafe extern "C" fn bch_parse_param(fc: *mut bindings::fs_context, param: *mut bindings::fs_parameter) -> c_int {
    // SAFETY: `param` is valid for the call; `key` is a NUL-terminated
    // string it owns.
    let key = unsafe { CStr::from_char_ptr((*param).key) };
    if key.as_bytes() == b"source" {
        return -(bindings::ENOPARAM as c_int);
    }
    // SAFETY: `fc` is valid for the call.
    let dev = unsafe { source_name(fc) };
    let Ok(name) = key.to_str() else {
        bch_err!("{dev}: mount option is not valid UTF-8");
        return Errno::EINVAL.to_kernel();
    };
    // SAFETY: as above; the union member read is the one `type_` names.
    let val = unsafe {
        match (*param).type_() {
            bindings::fs_value_type_fs_value_is_flag => None,
            bindings::fs_value_type_fs_value_is_string => {
                let s = (*param).__bindgen_anon_1.string;
                if s.is_null() {
                    None
                } else {
                    match CStr::from_char_ptr(s).to_str() {
                        Ok(v) => Some(v),
                        Err(_) => {
                            bch_err!("{dev}: value of mount option {name} is not valid UTF-8");
                            return Errno::EINVAL.to_kernel();
                        }
                    }
                }
            }
            _ => {
                bch_err!("{dev}: mount option {name} must be a string");
                return Errno::EINVAL.to_kernel();
            }
        }
    };
    // SAFETY: `fs_private` is the `MountOpts` box of `bch_init_fs_context`;
    // the VFS serialises calls on one context (`uapi_mutex`).
    let opts = unsafe { &mut *(*fc).fs_private.cast::<MountOpts>() };
    match opts.parse_one(name, val) {
        Ok(()) => 0,
        Err(e) => {
            bch_err!("{dev}: {e}");
            e.errno().to_kernel()
        }
    }
}

/// `reconfigure` (remount, `bch2_fs_reconfigure()`): options are checked
/// by `parse_param` and otherwise ignored.  Read-write to read-only syncs
/// the filesystem and flushes the journal; read-only to read-write works
/// only for a mount that started read-write (`EROFS` otherwise).
///
/// # Safety
///
/// Called by the VFS with a valid `fs_context` for reconfiguration.
unsafe extern "C" fn bch_reconfigure(fc: *mut bindings::fs_context) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: `fc` is valid for the call; `fc->root` is set for a
    // reconfiguration, its superblock one of ours, mounted and alive
    // while `fc` holds the root.
    let (flags, mask, sb) = unsafe { ((*fc).sb_flags, (*fc).sb_flags_mask, (*(*fc).root).d_sb) };
    // SAFETY: as above.
    let (info, id, was_ro) = unsafe { (FsInfo::of(sb), SbId(&(*sb).s_id), (*sb).s_flags & bindings::BCH_RS_SB_RDONLY as c_ulong != 0) };
    // SAFETY: `fs_private` is our options box (parsed by `parse_param`).
    let opts = unsafe { &*(*fc).fs_private.cast::<MountOpts>() };
    if let Ok(op) = info.op() {
        if let Err(e) = op.fs.apply_mount_opts(opts) {
            bch_err!("{id}: remount options: {e}");
            return e.to_kernel();
        }
    }
    if mask & bindings::BCH_RS_SB_RDONLY == 0 {
        return 0;
    }
    let want_ro = flags & bindings::BCH_RS_SB_RDONLY != 0;
    if !want_ro && !info.is_rw() {
        bch_err!("{id}: mounted read-only (or norecovery/nochanges); remount read-write is not supported, unmount and mount again");
        return Errno::EROFS.to_kernel();
    }
    if want_ro && !was_ro && info.is_rw() {
        // SAFETY: `sb` is mounted and its `s_umount` is held by the caller.
        let r = unsafe { bindings::sync_filesystem(sb) };
        if r != 0 {
            return r;
        }
        if let Err(e) = rw::flush_full(info) {
            bch_err!("{id}: flushing for remount,ro: {e}");
            return e.to_kernel();
        }
    }
    0
}

/// `get_tree`: mounts through `get_tree_bdev()`, which opens the device
/// (for writing unless `SB_RDONLY`) and calls [`fill_super`].
///
/// # Safety
///
/// Called by the VFS with a valid, exclusively owned `fs_context`.
unsafe extern "C" fn bch_get_tree(fc: *mut bindings::fs_context) -> c_int {
    // SAFETY: `fc` is valid for the duration of the call.
    let source = unsafe { (*fc).source };
    if source.is_null() {
        bch_err!("mount: no device given");
        return Errno::EINVAL.to_kernel();
    }
    // SAFETY: `fc` is valid; `fill_super` has the signature expected.
    unsafe { bindings::get_tree_bdev(fc, Some(fill_super)) }
}

/// Reads the superblock as `Fs::open` would (the primary at sector 8,
/// else the backups the layout lists), so that a device that is not
/// bcachefs fails with `EINVAL` and one line naming the device and the
/// reason, before the write core opens it.
fn read_super<D: BlockDev + ?Sized>(dev: &D) -> Result<(), Errno> {
    let name = dev.name();
    let need = sb::SB_SECTOR + (sb::SB_PROBE_BYTES / SECTOR_SIZE) as u64;
    let have = dev.nr_sectors();
    if have < need {
        bch_err!("{name}: not a bcachefs filesystem: device too small ({have} sectors, a superblock needs {need})");
        return Err(Errno::EINVAL);
    }
    match sb::read_super(dev) {
        Ok(_) => Ok(()),
        Err(e) => {
            bch_err!("{name}: {e}");
            Err(e.errno())
        }
    }
}

/// `fill_super` for `get_tree_bdev()`: the device is open (exclusively,
/// for writing unless the mount is read-only); read the filesystem and set the superblock up.  On failure
/// `get_tree_bdev()` calls [`bch_kill_sb`], which frees whatever
/// `s_fs_info` holds.
///
/// # Safety
///
/// Called by `get_tree_bdev()` with a new, locked superblock whose device
/// is open, and the `fs_context` of the mount.
unsafe extern "C" fn fill_super(sb: *mut bindings::super_block, fc: *mut bindings::fs_context) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: both are valid for the call (caller's contract); `fc`
    // outlives it, `fs_private` is our options box.
    let (name, opts, bdev) = unsafe { (source_name(fc), &*(*fc).fs_private.cast::<MountOpts>(), (*sb).s_bdev) };
    // SAFETY: `sb` and `bdev` are valid; the device stays open until
    // `kill_block_super()`, and the `SbBdev` is dropped before that.
    match unsafe { mount(sb, bdev, name, opts) } {
        Ok(()) => 0,
        Err(e) => e.to_kernel(),
    }
}

/// Opens the filesystem straight into `slot`.  Kept out of line: `Fs` is
/// large and `Fs::open` builds it on the stack, so that frame must not be
/// added to [`mount`]'s (kernel stacks are 16 KiB).
///
/// # Safety
///
/// `slot` is valid for writing a `RoFs`; on `Ok` it is initialised.
#[inline(never)]
unsafe fn open_into(slot: *mut RoFs, dev: SbBdev, oo: &crate::bcachefs::OpenOpts) -> Result<(), OpenError> {
    let fs = Fs::open(dev, oo)?;
    // SAFETY: caller's contract.
    unsafe { slot.write(fs) };
    Ok(())
}

/// The body of [`fill_super`].  Every failure has logged one line naming
/// the device and the reason before it returns.
///
/// # Safety
///
/// As [`fill_super`]: `sb` is a new superblock of ours with `bdev` open.
#[inline(never)]
unsafe fn mount(sb: *mut bindings::super_block, bdev: *mut bindings::block_device, name: &str, opts: &MountOpts) -> Result<(), Errno> {
    let oo = opts.open_opts();
    // SAFETY: `sb` is valid.
    let sb_ro = unsafe { (*sb).s_flags } & bindings::BCH_RS_SB_RDONLY as c_ulong != 0;
    let rw = !sb_ro && !oo.norecovery && !opts.nochanges();
    if oo.verbose {
        bch_info!("{name}: mounting {}{}", if rw { "read-write" } else { "read-only" }, if oo.norecovery { ", norecovery" } else { "" });
    }
    let (fs, facts, lbs, uuid) = if rw {
        // SAFETY: `bdev` stays open while the superblock lives, opened
        // for writing since the superblock is not `SB_RDONLY` (caller).
        unsafe { rw::open_rw(bdev, name, opts) }?
    } else {
        // SAFETY: `bdev` stays open while the superblock lives (caller).
        unsafe { open_ro(bdev, name, &oo) }?
    };
    let info = FsInfo {
        journal_timer: None,
        sysfs: None,
        shrinker: None,
        fs,
        sv: Subvol { id: 0, snapshot: 0, root_inum: 0 },
        opts: *opts,
        sysfs_opts: crate::platform::Mutex::new(MountOpts::new()).map_err(|_| {
            bch_err!("{name}: out of memory");
            Errno::ENOMEM
        })?,
        shut: AtomicBool::new(false),
        facts,
        uuid,
        posix_acl: false,
    };
    let mut info = KBox::new(info, GFP_KERNEL).map_err(|_| {
        bch_err!("{name}: out of memory");
        // Dropping a write core without its shutdown leaves the volume
        // unclean (replayed at the next mount), as a crash would.
        Errno::ENOMEM
    })?;
    // C's `acl` option (`BCH_SB_POSIX_ACL`), which may be overridden at
    // mount.
    info.posix_acl = info.with_sb_bytes(|b| opts.acl(sb::Sb::parse(b).ok().as_ref()));
    // SAFETY: as for this function.
    let r = unsafe { mount_finish(sb, name, opts, info, lbs, rw) };
    if r.is_err() && rw {
        // SAFETY: `s_fs_info` is set once `mount_finish` got that far;
        // else the write core was dropped already (unclean, see above).
        unsafe {
            if !(*sb).s_fs_info.is_null() {
                rw::shutdown(FsInfo::of(sb), &name);
            }
        }
    }
    r
}

/// Opens the read-only core into a box.
///
/// # Safety
///
/// `bdev` stays open until the returned filesystem is dropped.
#[inline(never)]
unsafe fn open_ro(
    bdev: *mut bindings::block_device,
    name: &str,
    oo: &crate::bcachefs::OpenOpts,
) -> Result<(Mounted, fs_common::FsFacts, u32, [u8; 16]), Errno> {
    // SAFETY: the caller's contract.
    let dev = unsafe { SbBdev::new(bdev, name) }.inspect_err(|_| bch_err!("{name}: out of memory"))?;
    // No separate superblock probe: `Fs::open` reads it (with the backup
    // fallback) and its error names a foreign device in one line.
    // The filesystem is allocated first and opened into its box, so that
    // no `Fs` is ever moved through this frame.
    let mut b = KBox::<RoFs>::new_uninit(GFP_KERNEL).map_err(|_| {
        bch_err!("{name}: out of memory");
        Errno::ENOMEM
    })?;
    // SAFETY: the box's memory is valid for writes.
    unsafe { open_into(b.as_mut_ptr(), dev, &oo) }.map_err(|e| {
        bch_err!("{name}: {e}");
        e.errno()
    })?;
    // SAFETY: initialised by `open_into`.
    let fs = unsafe { b.assume_init() };
    let facts = *fs.facts();
    let lbs = fs.dev().logical_block_size();
    let uuid = fs.user_uuid();
    Ok((Mounted::Ro(fs), facts, lbs, uuid))
}

/// The rest of [`mount`] once the filesystem is open: checks, the
/// superblock's fields, the shrinker, sysfs and the root.
///
/// # Safety
///
/// As [`mount`].
#[inline(never)]
unsafe fn mount_finish(sb: *mut bindings::super_block, name: &str, opts: &MountOpts, mut info: KBox<FsInfo>, lbs: u32, rw: bool) -> Result<(), Errno> {
    let facts = info.facts;
    let uuid = info.uuid;
    if facts.block_bytes < lbs || !facts.block_bytes.is_power_of_two() {
        bch_err!("{name}: filesystem block size {} is smaller than the device's logical block size {lbs}", facts.block_bytes);
        return Err(Errno::EINVAL);
    }
    if facts.time_precision_ns == 0 || facts.time_precision_ns as i64 > NSEC_PER_SEC {
        bch_err!("{name}: invalid time precision {} ns", facts.time_precision_ns);
        return Err(Errno::EINVAL);
    }
    let sv = fs_common::root_subvol(&*info.read()).inspect_err(|e| {
        bch_err!("{name}: cannot read the root subvolume: {e}");
    })?;
    info.sv = sv;
    let sv = info.sv;
    let posix_acl = info.posix_acl;
    let info = KBox::into_raw(info);
    // SAFETY: `sb` is new and locked: nobody else looks at it yet.  From
    // here `s_fs_info` owns the box; `bch_kill_sb` frees it, on failure
    // too.
    unsafe {
        (*sb).s_fs_info = info.cast();
        (*sb).s_magic = BCACHEFS_STATFS_MAGIC;
        (*sb).s_maxbytes = bindings::BCH_RS_MAX_LFS_FILESIZE;
        (*sb).s_blocksize = facts.block_bytes as c_ulong;
        (*sb).s_blocksize_bits = facts.block_bytes.trailing_zeros() as u8;
        let units_per_sec = NSEC_PER_SEC / facts.time_precision_ns as i64;
        (*sb).s_time_gran = facts.time_precision_ns;
        (*sb).s_time_min = i64::MIN / units_per_sec + 1;
        (*sb).s_time_max = i64::MAX / units_per_sec;
        (*sb).s_op = &BCH_SUPER_OPS;
        (*sb).s_xattr = xattr::HANDLERS.0.as_ptr().cast();
        if !rw {
            (*sb).s_flags |= bindings::BCH_RS_SB_RDONLY as c_ulong;
        }
        // As C (`bch2_fs_get_tree()` with `CONFIG_BCACHEFS_POSIX_ACL`).
        if posix_acl {
            (*sb).s_flags |= bindings::BCH_RS_SB_POSIXACL as c_ulong;
        }
        (*sb).s_uuid.b = uuid;
        (*sb).s_uuid_len = 16;
        // As C: the superblock's id is the filesystem's name, its uuid
        // (cut to fit).
        let id = UuidStr::new(&uuid);
        let s = id.as_bytes();
        let n = s.len().min((*sb).s_id.len() - 1);
        for (d, c) in (*sb).s_id.iter_mut().zip(&s[..n]) {
            *d = *c;
        }
        (*sb).s_id[n] = 0;
    }
    // SAFETY: `info` is live until `bch_kill_sb`; only this function
    // mutates it, before the superblock is published.
    let info = unsafe { &mut *info };
    info.shrinker = Some(Shrinker::new(info, name, &uuid)?);
    if rw {
        info.journal_timer = rw::JournalTimer::start(info);
    }
    info.sysfs = Some(crate::sysfs::FsDir::create(info, &uuid).inspect_err(|e| {
        if *e == Errno::EBUSY {
            bch_err!("{name}: a filesystem with uuid {} is already mounted", UuidFmt(&uuid));
        } else {
            bch_err!("{name}: cannot create /sys/fs/bcachefs/{}: {e}", UuidFmt(&uuid));
        }
    })?);
    // SAFETY: `sb` is set up enough for inodes: `s_fs_info` and `s_op`.
    let root = unsafe { inode::iget(sb, sv.root_inum) }.inspect_err(|e| {
        bch_err!("{name}: cannot read the root directory (inode {}): {e}", sv.root_inum);
    })?;
    // SAFETY: `root` is a live inode reference, consumed by `d_make_root`
    // (which drops it on failure).
    let dentry = unsafe { bindings::d_make_root(root) };
    if dentry.is_null() {
        bch_err!("{name}: out of memory allocating the root dentry");
        return Err(Errno::ENOMEM);
    }
    // SAFETY: still ours alone.
    unsafe { (*sb).s_root = dentry };
    if opts.fsck() {
        bch_warn!("{name}: fsck is not implemented; option ignored");
    }
    if opts.verbose() {
        bch_info!("{name}: mounted {}, uuid {}", if rw { "read-write" } else { "read-only" }, UuidFmt(&uuid));
    }
    Ok(())
}

/// `kill_sb`: `kill_block_super()` (which evicts every inode and releases
/// the device), then the per-mount state, as `bch2_kill_sb` does.
///
/// # Safety
///
/// Called by the VFS once per superblock of ours, at its end.
unsafe extern "C" fn bch_kill_sb(sb: *mut bindings::super_block) {
    // SAFETY: `sb` is valid; nothing else uses it any more.  The inodes
    // are gone after `generic_shutdown_super()`, so nothing references
    // `info` but its own shrinker and sysfs files, which its drop stops
    // first.  The `SbBdev` inside it does no I/O on drop, so dropping it
    // after the device is released is fine.
    unsafe {
        let info = (*sb).s_fs_info.cast::<FsInfo>();
        bindings::kill_block_super(sb);
        (*sb).s_fs_info = ptr::null_mut();
        if !info.is_null() {
            drop(KBox::from_raw(info));
        }
    }
}

/// `statfs` (`bch2_statfs`).
///
/// # Safety
///
/// Called by the VFS with a dentry of a mounted superblock of ours.
unsafe extern "C" fn bch_statfs(dentry: *mut bindings::dentry, buf: *mut kernel::bindings::kstatfs) -> c_int {
    let _nofs = NofsScope::new();
    let buf = buf.cast::<bindings::kstatfs>();
    // SAFETY: the superblock is mounted, so `s_fs_info` is live.
    let info = unsafe { FsInfo::of((*dentry).d_sb) };
    let facts = info.facts;
    let st = match fs_common::statfs(&*info.read(), &facts) {
        Ok(st) => st,
        Err(e) => return e.to_kernel(),
    };
    let mut uuid = info.uuid;
    // SAFETY: `buf` is valid for writing; `uuid` is 16 bytes.
    unsafe {
        (*buf).f_type = BCACHEFS_STATFS_MAGIC as _;
        (*buf).f_bsize = st.block_bytes as _;
        (*buf).f_blocks = st.blocks;
        (*buf).f_bfree = st.bfree;
        (*buf).f_bavail = st.bavail;
        (*buf).f_files = st.files;
        (*buf).f_ffree = st.ffree;
        (*buf).f_fsid = bindings::uuid_to_fsid(uuid.as_mut_ptr());
        // C reports `BCH_NAME_MAX` (512) here, whatever the VFS allows.
        (*buf).f_namelen = BCH_NAME_MAX as _;
    }
    0
}

/// Writes formatted text to a `seq_file`.
struct SeqWriter(*mut bindings::seq_file);

impl fmt::Write for SeqWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: `self.0` is the valid seq_file of the running
        // `show_options`; `s` is valid for `s.len()` bytes.
        unsafe { bindings::seq_write(self.0, s.as_ptr().cast(), s.len()) };
        Ok(())
    }
}

/// `show_options`: the options in force that differ from their defaults,
/// as `bch2_show_options` prints them (`ro` is the VFS's).
///
/// # Safety
///
/// Called by the VFS with a valid seq_file and the root of a mount of ours.
unsafe extern "C" fn bch_show_options(seq: *mut bindings::seq_file, root: *mut bindings::dentry) -> c_int {
    // SAFETY: the superblock is mounted, so `s_fs_info` is live.
    let info = unsafe { FsInfo::of((*root).d_sb) };
    info.with_sb_bytes(|b| {
        let sbp = sb::Sb::parse(b).ok();
        let _ = info.opts.show_options(sbp.as_ref(), &mut SeqWriter(seq));
    });
    0
}

/// The btree node cache's shrinker (`bch2_fs_btree_cache_init`'s
/// `shrinker_alloc()`); freed on drop, which waits for running callbacks.
///
/// # Invariants
///
/// `0` is a registered shrinker whose `private_data` is the [`FsInfo`]
/// that owns this value.
pub(crate) struct Shrinker(*mut bindings::shrinker);

// SAFETY: a registered shrinker may be freed from any thread.
unsafe impl Send for Shrinker {}
// SAFETY: no `&self` methods.
unsafe impl Sync for Shrinker {}

impl Shrinker {
    /// Registers a shrinker for `info`'s btree node cache.
    fn new(info: &FsInfo, name: &str, uuid: &[u8; 16]) -> Result<Self, Errno> {
        let id = UuidStr::new(uuid);
        // SAFETY: the format takes one string argument, which we pass; it
        // is copied into the shrinker's (debugfs) name.
        let s = unsafe { bindings::shrinker_alloc(0, c"%s-btree_cache".as_ptr().cast(), id.as_ptr()) };
        if s.is_null() {
            bch_err!("{name}: out of memory allocating a shrinker");
            return Err(Errno::ENOMEM);
        }
        // SAFETY: `s` is allocated, not registered: ours to set up.  The
        // `FsInfo` outlives the shrinker (it owns it and drops it first).
        unsafe {
            (*s).count_objects = Some(bch_cache_count);
            (*s).scan_objects = Some(bch_cache_scan);
            (*s).seeks = bindings::DEFAULT_SEEKS as c_int;
            (*s).private_data = (info as *const FsInfo).cast_mut().cast();
            bindings::shrinker_register(s);
        }
        // INVARIANT: registered, `private_data` is the owner.
        Ok(Shrinker(s))
    }
}

impl Drop for Shrinker {
    fn drop(&mut self) {
        // SAFETY: registered by `new`, freed once; `shrinker_free` waits
        // for callbacks in flight.
        unsafe { bindings::shrinker_free(self.0) };
    }
}

/// `count_objects`: btree nodes that could be freed.
///
/// # Safety
///
/// Called by reclaim with a shrinker registered by [`Shrinker::new`].
unsafe extern "C" fn bch_cache_count(s: *mut bindings::shrinker, _sc: *mut bindings::shrink_control) -> c_ulong {
    // SAFETY: `private_data` is the live owner (type invariant).
    let info = unsafe { &*(*s).private_data.cast::<FsInfo>() };
    info.btree_cache_count() as c_ulong
}

/// `scan_objects`: frees up to `nr_to_scan` nodes; stops for allocations
/// that may not recurse into filesystems.
///
/// # Safety
///
/// Called by reclaim with a shrinker registered by [`Shrinker::new`] and a
/// valid `shrink_control`.
unsafe extern "C" fn bch_cache_scan(s: *mut bindings::shrinker, sc: *mut bindings::shrink_control) -> c_ulong {
    // SAFETY: both are valid for the call.
    let (info, gfp, nr) = unsafe { (&*(*s).private_data.cast::<FsInfo>(), (*sc).gfp_mask, (*sc).nr_to_scan) };
    if gfp & bindings::BCH_RS_GFP_FS == 0 {
        return SHRINK_STOP;
    }
    info.btree_cache_shrink(nr as usize) as c_ulong
}

/// Formats a uuid for `{}`.
pub(crate) struct UuidFmt<'a>(pub(crate) &'a [u8; 16]);

impl fmt::Display for UuidFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        sb::fmt_uuid(f, self.0)
    }
}

/// A uuid as 36 ASCII characters and a NUL, for kernel strings.
pub(crate) struct UuidStr(pub(crate) [u8; 37]);

impl UuidStr {
    /// Formats `u`.
    pub(crate) fn new(u: &[u8; 16]) -> Self {
        struct W<'a>(&'a mut [u8; 37], usize);
        impl fmt::Write for W<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for b in s.bytes() {
                    if self.1 < 36 {
                        self.0[self.1] = b;
                        self.1 += 1;
                    }
                }
                Ok(())
            }
        }
        let mut buf = [0u8; 37];
        let _ = sb::fmt_uuid(&mut W(&mut buf, 0), u);
        UuidStr(buf)
    }

    /// The characters, without the NUL.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0[..36]
    }

    /// The NUL-terminated string.
    pub(crate) fn as_ptr(&self) -> *const c_char {
        self.0.as_ptr().cast()
    }
}

/// A superblock's `s_id`, for messages.
struct SbId<'a>(&'a [c_char; 32]);

impl fmt::Display for SbId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &c in self.0.iter().take_while(|&&c| c != 0) {
            fmt::Write::write_char(f, c as char)?;
        }
        Ok(())
    }
}
