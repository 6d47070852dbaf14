// SPDX-License-Identifier: GPL-2.0
//! File ioctls (`fs/bcachefs/fs-ioctl.c`, `bch2_fs_file_ioctl()`):
//! `FS_IOC_GETFLAGS`, `FS_IOC_SETFLAGS` and `FS_IOC_GOINGDOWN`.  Others
//! give `ENOTTY`, as C's default does.

use kernel::ffi::{c_long, c_uint, c_ulong};
use kernel::uaccess::UserSlice;

use super::rw::refresh;
use super::{FsInfo, NofsScope};
use crate::bindings;
use crate::errcode::Errno;
use crate::platform::BlockDev;
use crate::fs_common::fs_ops::{inode_flags_to_uflags, set_flags};
use crate::{bch_err, bch_info};

/// `FS_IOC_GETFLAGS`: `_IOR('f', 1, long)`.
const FS_IOC_GETFLAGS: c_uint = 0x8008_6601;
/// `FS_IOC_SETFLAGS`: `_IOW('f', 2, long)`.
const FS_IOC_SETFLAGS: c_uint = 0x4008_6602;
/// `FS_IOC_GOINGDOWN`: `_IOR('X', 125, __u32)`.
const FS_IOC_GOINGDOWN: c_uint = 0x8004_587d;
/// `FSOP_GOING_FLAGS_DEFAULT`: sync the filesystem, then shut down.
const GOING_DEFAULT: u32 = 0;
/// `FSOP_GOING_FLAGS_LOGFLUSH`: flush the journal, then shut down.
const GOING_LOGFLUSH: u32 = 1;
/// `FSOP_GOING_FLAGS_NOLOGFLUSH`: shut down at once.
const GOING_NOLOGFLUSH: u32 = 2;
/// `CAP_LINUX_IMMUTABLE`, `CAP_SYS_ADMIN`.
const CAP_LINUX_IMMUTABLE: i32 = 9;
const CAP_SYS_ADMIN: i32 = 21;
/// `ENOTTY`, `EFAULT`, `EACCES`.
const ENOTTY: Errno = Errno(25);
const EFAULT: Errno = Errno(14);
const EACCES: Errno = Errno(13);

/// `unlocked_ioctl` of our regular files and directories.
///
/// # Safety
///
/// Called by the VFS with an open file of ours.
pub(super) unsafe extern "C" fn bch_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    let _nofs = NofsScope::new();
    // SAFETY: the caller's contract.
    let r = unsafe {
        match cmd {
            FS_IOC_GETFLAGS => getflags(file, arg),
            FS_IOC_SETFLAGS => setflags(file, arg),
            FS_IOC_GOINGDOWN => goingdown(file, arg),
            _ => Err(ENOTTY),
        }
    };
    match r {
        Ok(()) => 0,
        Err(e) => e.to_kernel() as c_long,
    }
}

/// The 32-bit flags word at user address `arg`.
fn get_u32(arg: c_ulong) -> Result<u32, Errno> {
    let mut r = UserSlice::new(arg as usize, 4).reader();
    let mut b = [0u8; 4];
    r.read_slice(&mut b).map_err(|_| EFAULT)?;
    Ok(u32::from_ne_bytes(b))
}

/// `bch2_ioc_getflags()`.
///
/// # Safety
///
/// `file` is an open file of ours.
unsafe fn getflags(file: *mut bindings::file, arg: c_ulong) -> Result<(), Errno> {
    // SAFETY: the caller's contract.
    let inode = unsafe { (*file).f_inode };
    // SAFETY: the inode is alive while the file is open.
    let info = unsafe { FsInfo::of((*inode).i_sb) };
    // SAFETY: as above.
    let inum = unsafe { (*inode).i_ino } as u64;
    let flags = {
        let r = info.read();
        crate::fs_common::inode_get(&*r, &info.sv, inum)?.flags
    };
    let v = inode_flags_to_uflags(flags);
    let mut w = UserSlice::new(arg as usize, 4).writer();
    w.write_slice(&v.to_ne_bytes()).map_err(|_| EFAULT)
}

/// `bch2_ioc_setflags()`: under the inode lock, owner or capable.
///
/// # Safety
///
/// `file` is an open file of ours.
unsafe fn setflags(file: *mut bindings::file, arg: c_ulong) -> Result<(), Errno> {
    let uflags = get_u32(arg)?;
    // SAFETY: the caller's contract.
    let inode = unsafe { (*file).f_inode };
    // SAFETY: the inode is alive while the file is open.
    let info = unsafe { FsInfo::of((*inode).i_sb) };
    // SAFETY: `file` is open.
    let r = unsafe { bindings::mnt_want_write_file(file) };
    if r != 0 {
        return Err(Errno(-r));
    }
    // SAFETY: `inode` is alive; the lock is released below on every path.
    unsafe { bindings::inode_lock(inode) };
    let res = (|| {
        // SAFETY: `file` and `inode` are alive.
        if !unsafe { bindings::inode_owner_or_capable(bindings::file_mnt_idmap(file), inode) } {
            return Err(EACCES);
        }
        // SAFETY: no preconditions.
        let cap = unsafe { bindings::capable(CAP_LINUX_IMMUTABLE) };
        let op = info.op()?;
        // SAFETY: as above.
        let inum = unsafe { (*inode).i_ino } as u64;
        set_flags(&mut op.fs.trans(), &info.sv, inum, uflags, cap)?;
        // SAFETY: `inode` is ours and alive; the operation lock is held.
        unsafe { refresh(info, &op, inode, bindings::ATTR_CTIME) }
    })();
    // SAFETY: locked above.
    unsafe {
        bindings::inode_unlock(inode);
        bindings::mnt_drop_write_file(file);
    }
    res
}

/// `bch2_ioc_goingdown()`: `CAP_SYS_ADMIN` only; the filesystem goes
/// emergency read-only (`BchFs::emergency_read_only`) after a sync
/// (`DEFAULT`), after a journal flush (`LOGFLUSH`) or at once
/// (`NOLOGFLUSH`), as if the power was cut there: the next mount replays
/// the journal.
///
/// # Safety
///
/// `file` is an open file of ours.
unsafe fn goingdown(file: *mut bindings::file, arg: c_ulong) -> Result<(), Errno> {
    // SAFETY: no preconditions.
    if !unsafe { bindings::capable(CAP_SYS_ADMIN) } {
        return Err(Errno::EPERM);
    }
    let flags = get_u32(arg)?;
    // SAFETY: the caller's contract.
    let sb = unsafe { (*(*file).f_inode).i_sb };
    // SAFETY: `sb` is mounted while the file is open.
    let info = unsafe { FsInfo::of(sb) };
    let flush = match flags {
        GOING_DEFAULT => {
            // SAFETY: `sb` is mounted.  (C freezes the device around
            // this; a sync gets the same data to the journal.)
            let r = unsafe { bindings::sync_filesystem(sb) };
            if r != 0 {
                return Err(Errno(-r));
            }
            true
        }
        GOING_LOGFLUSH => true,
        GOING_NOLOGFLUSH => false,
        _ => return Err(Errno::EINVAL),
    };
    let op = info.op()?;
    op.fs.emergency_read_only(flush);
    bch_info!("{}: shutdown by ioctl type {flags}", op.fs.open.dev.name());
    if !op.fs.is_emergency_ro() {
        bch_err!("{}: shutdown did not take", op.fs.open.dev.name());
    }
    Ok(())
}
