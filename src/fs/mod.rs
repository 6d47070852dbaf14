// SPDX-License-Identifier: GPL-2.0
//! The VFS side: the `bcachefs` filesystem type and its `fs_context`
//! (`bch2_fs_type`, `bch2_init_fs_context` and `bch2_fs_get_tree` in
//! `fs/bcachefs/fs.c`).
//!
//! Mounting does not go further than reading and checking the superblock
//! yet: a device that is not bcachefs fails with `EINVAL` and one dmesg line
//! naming the device and the reason; a bcachefs device fails with
//! `EOPNOTSUPP` until the read path exists.  The device is opened read-only,
//! so nothing is ever written to it.

use core::cell::UnsafeCell;
use core::ffi::c_int;

use kernel::str::CStr;
use kernel::ThisModule;

use crate::bindings;
use crate::block::Bdev;
use crate::errcode::Errno;
use crate::format::sb;
use crate::platform::{BlockDev, Vec, SECTOR_SIZE};
use crate::{bch_err, bch_info};

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
    get_tree: Some(bch_get_tree),
    // SAFETY: all other members are optional callbacks; `None` is zero.
    ..unsafe { core::mem::zeroed() }
};

/// The registered `bcachefs` filesystem type; unregistered on drop.
pub(crate) struct Registration(());

impl Registration {
    /// Registers the filesystem type `bcachefs`.
    ///
    /// Errors: `EBUSY` when a filesystem of that name is already registered
    /// (the C bcachefs module is loaded).
    pub(crate) fn register(module: &'static ThisModule) -> Result<Self, Errno> {
        let t = BCH_FS_TYPE.0.get();
        // SAFETY: not yet registered, so nobody else looks at `*t`; the
        // name and the callbacks are 'static.
        let ret = unsafe {
            (*t).name = c"bcachefs".as_ptr().cast();
            (*t).owner = module.as_ptr();
            (*t).init_fs_context = Some(bch_init_fs_context);
            (*t).kill_sb = Some(bindings::kill_anon_super);
            (*t).fs_flags = (bindings::FS_REQUIRES_DEV | bindings::FS_ALLOW_IDMAP) as c_int;
            bindings::register_filesystem(t)
        };
        if ret != 0 {
            return Err(Errno(-ret));
        }
        Ok(Registration(()))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: registered in `register`, unregistered exactly once here.
        unsafe { bindings::unregister_filesystem(BCH_FS_TYPE.0.get()) };
    }
}

/// `init_fs_context`: installs our `fs_context_operations`.  Parameters are
/// left to the VFS defaults for now (`source` and the generic sb flags such
/// as `ro`; anything else is an unknown parameter, `EINVAL`).
///
/// # Safety
///
/// Called by the VFS with a valid, exclusively owned `fs_context`.
unsafe extern "C" fn bch_init_fs_context(fc: *mut kernel::bindings::fs_context) -> c_int {
    let fc = fc.cast::<bindings::fs_context>();
    // SAFETY: `fc` is valid and ours for the duration of the call.
    unsafe { (*fc).ops = &BCH_FC_OPS };
    0
}

/// `get_tree`: opens the device named by `source` and checks its superblock.
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
    // SAFETY: `source` is a NUL-terminated string owned by `fc`, which
    // outlives this call and every borrow made from it below.
    let path = unsafe { CStr::from_char_ptr(source) };
    match mount(path) {
        Ok(()) => 0,
        Err(e) => e.to_kernel(),
    }
}

/// The mount path as far as it goes today.  Every failure has logged one
/// line naming the device and the reason before it returns.
fn mount(path: &CStr) -> Result<(), Errno> {
    let name = path.to_str().unwrap_or("(non-UTF-8 path)");
    let dev = Bdev::open_read(path).inspect_err(|e| {
        bch_err!("{name}: cannot open device: {e}");
    })?;
    let probe = read_super(&dev)?;
    bch_info!(
        "{name}: bcachefs superblock, version {}, uuid {}",
        probe.version,
        UuidFmt(&probe.uuid)
    );
    bch_err!("{name}: mounting is not implemented yet");
    Err(Errno::EOPNOTSUPP)
}

/// Reads the primary superblock at sector 8 and probes it.
fn read_super(dev: &Bdev<'_>) -> Result<sb::SbProbe, Errno> {
    let name = dev.name();
    let need = sb::SB_SECTOR + (sb::SB_PROBE_BYTES / SECTOR_SIZE) as u64;
    let have = dev.nr_sectors();
    if have < need {
        bch_err!("{name}: not a bcachefs filesystem: device too small ({have} sectors, a superblock needs {need})");
        return Err(Errno::EINVAL);
    }
    let mut buf: Vec<u8> = Vec::new();
    buf.resize(sb::SB_PROBE_BYTES, 0)?;
    dev.read_sectors(sb::SB_SECTOR, &mut buf).inspect_err(|e| {
        bch_err!("{name}: error reading superblock at sector {}: {e}", sb::SB_SECTOR);
    })?;
    sb::probe(&buf).map_err(|e| {
        bch_err!("{name}: {e}");
        e.errno()
    })
}

/// Formats a uuid for `{}`.
struct UuidFmt<'a>(&'a [u8; 16]);

impl core::fmt::Display for UuidFmt<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        sb::fmt_uuid(f, self.0)
    }
}
