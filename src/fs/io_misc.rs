// SPDX-License-Identifier: GPL-2.0
//! `fallocate(2)`, `lseek(2)`'s `SEEK_DATA`/`SEEK_HOLE` and `FIEMAP` on
//! read-write mounts (`fs/bcachefs/fs-io.c`: `bch2_fallocate_dispatch`,
//! `bch2_llseek`; `fs.c`: `bch2_fiemap`), through
//! `fs_common::io_misc`, which works on the btree only: the page cache of
//! the range is written back (and, for `fallocate` modes that change
//! data, dropped) first.

use kernel::ffi::{c_int, c_long};

use super::inode::PAGE_SIZE;
use super::rw::refresh;
use super::{FsInfo, NofsScope};
use crate::bindings;
use crate::errcode::Errno;
use crate::fs_common::io_misc as fm;
use crate::fs_rw::{writepoint_hashed, FsDataAlloc};
use crate::platform::Vec;

/// `LLONG_MAX`: "to the end" for the page cache's ranges.
const LLONG_MAX: i64 = i64::MAX;
/// Extents gathered per hold of the operation lock in `fiemap`.
const FIEMAP_BATCH: usize = 64;

fn to_kernel(r: Result<(), Errno>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_kernel(),
    }
}

/// Writes back `[start, end]` of `inode`'s page cache.
///
/// # Safety
///
/// `inode` is ours and referenced.
unsafe fn write_back(inode: *mut bindings::inode, start: i64, end: i64) -> Result<(), Errno> {
    // SAFETY: the caller's contract.
    let r = unsafe { bindings::filemap_write_and_wait_range(&mut (*inode).i_data, start, end) };
    if r != 0 {
        return Err(Errno(-r));
    }
    Ok(())
}

/// `fallocate` (`bch2_fallocate_dispatch`): the modes of
/// `fs_common::io_misc::fallocate`.
///
/// # Safety
///
/// Called by the VFS with a file of ours open for writing.
pub(super) unsafe extern "C" fn bch_fallocate(file: *mut bindings::file, mode: c_int, offset: bindings::loff_t, len: bindings::loff_t) -> c_long {
    let _nofs = NofsScope::new();
    // SAFETY: the open file's inode is ours.
    let inode = unsafe { (*file).f_inode };
    // SAFETY: `inode_lock` is `i_rwsem`, as the VFS's writers take it.
    unsafe { bindings::inode_lock(inode) };
    // SAFETY: as above, locked.
    let r = unsafe { fallocate(file, inode, mode as u32, offset, len) };
    // SAFETY: taken above.
    unsafe { bindings::inode_unlock(inode) };
    to_kernel(r) as c_long
}

#[inline(never)]
unsafe fn fallocate(file: *mut bindings::file, inode: *mut bindings::inode, mode: u32, offset: i64, len: i64) -> Result<(), Errno> {
    if offset < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
    // SAFETY: `file` is open for writing; `inode` locked.
    let r = unsafe { bindings::file_modified(file) };
    if r != 0 {
        return Err(Errno(-r));
    }
    // SAFETY: as above.
    let (info, isize) = unsafe { (FsInfo::of((*inode).i_sb), bindings::i_size_read(inode)) };
    // Nothing changes (the page cache included) for arguments that fail.
    fm::fallocate_check(mode, offset as u64, len as u64, isize as u64, u64::from(info.facts.block_bytes.max(512)))?;
    let shifts = mode & (fm::FALLOC_FL_COLLAPSE_RANGE | fm::FALLOC_FL_INSERT_RANGE) != 0;
    let grows = !shifts && mode & fm::FALLOC_FL_KEEP_SIZE == 0 && end > isize;
    // SAFETY: `inode` is ours, locked.
    let mapping = unsafe { &mut (*inode).i_data as *mut bindings::address_space };
    // A growing file: what an mmap left past the end in the last folio
    // is zeroed by its writeback first (as `setattr`).
    if grows {
        // SAFETY: as above.
        unsafe { write_back(inode, isize, LLONG_MAX) }?;
    }
    // The page cache dropped and the btree changed under the mapping's
    // invalidate lock: no read or fault fills a folio from the old extents
    // meanwhile.
    // SAFETY: as above.
    unsafe { bindings::filemap_invalidate_lock(mapping) };
    // SAFETY: as above, and the invalidate lock is held.
    let r = unsafe { fallocate_locked(info, inode, mode, offset, len, isize) };
    // SAFETY: taken above.
    unsafe { bindings::filemap_invalidate_unlock(mapping) };
    r
}

/// The part of `fallocate` under the invalidate lock, after the checks.
///
/// # Safety
///
/// `inode` is ours, locked (`i_rwsem` and `invalidate_lock`); `isize` its
/// size.
unsafe fn fallocate_locked(info: &FsInfo, inode: *mut bindings::inode, mode: u32, offset: i64, len: i64, isize: i64) -> Result<(), Errno> {
    let end = offset + len;
    let shifts = mode & (fm::FALLOC_FL_COLLAPSE_RANGE | fm::FALLOC_FL_INSERT_RANGE) != 0;
    let drops = mode & (fm::FALLOC_FL_PUNCH_HOLE | fm::FALLOC_FL_ZERO_RANGE) != 0;
    // The btree operation sees the data: the range written back (for
    // collapse and insert everything from the folio of `offset` on).
    // Collapse and insert drop those folios, which are read again
    // afterwards; punch and zero drop the folios inside the range and
    // zero the parts of the partial ones inside it, as the operation does
    // on disk.  Allocating changes no data: the page cache stays.
    // SAFETY: the caller's contract.
    unsafe {
        if shifts {
            let start = offset & !(PAGE_SIZE as i64 - 1);
            write_back(inode, start, LLONG_MAX)?;
            bindings::truncate_pagecache_range(inode, start, LLONG_MAX);
        } else {
            write_back(inode, offset, end - 1)?;
            if drops {
                bindings::truncate_pagecache_range(inode, offset, end - 1);
            }
        }
    }
    // SAFETY: as above.
    let inum = unsafe { (*inode).i_ino as u64 };
    let op = info.op()?;
    let size = {
        let mut a = FsDataAlloc::new(op.fs, writepoint_hashed(inum));
        fm::fallocate(&mut op.fs.trans(), &mut a, &info.sv, inum, mode, offset as u64, len as u64)?
    };
    let new_size = if shifts {
        size as i64
    } else if mode & fm::FALLOC_FL_KEEP_SIZE == 0 {
        isize.max(end)
    } else {
        isize
    };
    // SAFETY: the inode is locked.
    unsafe {
        if new_size != isize {
            if new_size < isize {
                bindings::truncate_setsize(inode, new_size);
            } else {
                bindings::i_size_write(inode, new_size);
            }
        }
        // The times stay the VFS's: `file_modified()` set them above and
        // `write_inode` writes them.
        refresh(info, &op, inode, 0)
    }
}

/// `llseek` (`bch2_llseek`): `SEEK_DATA` and `SEEK_HOLE` from the btree
/// after writing the file back; the others as `generic_file_llseek`.
///
/// # Safety
///
/// Called by the VFS with an open file of ours.
pub(super) unsafe extern "C" fn bch_llseek(file: *mut bindings::file, offset: bindings::loff_t, whence: c_int) -> bindings::loff_t {
    let w = whence as u32;
    if w != bindings::SEEK_DATA && w != bindings::SEEK_HOLE {
        // SAFETY: the VFS's arguments.
        return unsafe { bindings::generic_file_llseek(file, offset, whence) };
    }
    let _nofs = NofsScope::new();
    // SAFETY: as above.
    let r = unsafe { seek(file, offset, w) };
    match r {
        // SAFETY: `file` is the VFS's; `vfs_setpos` checks the bound.
        Ok(pos) => unsafe { bindings::vfs_setpos(file, pos, (*(*(*file).f_inode).i_sb).s_maxbytes) },
        Err(e) => bindings::loff_t::from(e.to_kernel()),
    }
}

#[inline(never)]
unsafe fn seek(file: *mut bindings::file, offset: i64, whence: u32) -> Result<i64, Errno> {
    // SAFETY: the open file's inode is ours.
    let inode = unsafe { (*file).f_inode };
    if offset < 0 {
        return Err(Errno::ENXIO);
    }
    // SAFETY: as above.
    unsafe { write_back(inode, 0, LLONG_MAX) }?;
    // SAFETY: as above.
    let (info, inum, size) = unsafe { (FsInfo::of((*inode).i_sb), (*inode).i_ino as u64, bindings::i_size_read(inode) as u64) };
    let r = info.read();
    let pos = if whence == bindings::SEEK_DATA {
        fm::seek_data(&*r, &info.sv, inum, offset as u64, size)?
    } else {
        fm::seek_hole(&*r, &info.sv, inum, offset as u64, size)?
    };
    i64::try_from(pos).map_err(|_| Errno::ENXIO)
}

/// `fiemap` (`bch2_fiemap`): the file written back, then its extents a
/// batch at a time (copied to the user with no lock held).
///
/// # Safety
///
/// Called by the VFS with an inode of ours and a valid `fiemap_extent_info`.
pub(super) unsafe extern "C" fn bch_fiemap(inode: *mut bindings::inode, fi: *mut bindings::fiemap_extent_info, start: u64, len: u64) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: as this function.
    to_kernel(unsafe { fiemap(inode, fi, start, len) })
}

#[inline(never)]
unsafe fn fiemap(inode: *mut bindings::inode, fi: *mut bindings::fiemap_extent_info, start: u64, len: u64) -> Result<(), Errno> {
    let mut len = len;
    // SAFETY: the VFS's arguments; no flags of our own supported.
    let r = unsafe { bindings::fiemap_prep(inode, fi, start, &mut len, 0) };
    if r != 0 {
        return Err(Errno(-r));
    }
    // SAFETY: as above.
    unsafe { write_back(inode, 0, LLONG_MAX) }?;
    // SAFETY: as above.
    let (info, inum) = unsafe { (FsInfo::of((*inode).i_sb), (*inode).i_ino as u64) };
    let end = start.saturating_add(len);
    let mut from = start;
    let mut batch: Vec<fm::FiemapExtent> = Vec::new();
    loop {
        batch.clear();
        let mut oom = false;
        {
            let r = info.read();
            fm::fiemap(&*r, &info.sv, inum, from, end.saturating_sub(from), &mut |e| {
                if batch.push(e).is_err() {
                    oom = true;
                    return false;
                }
                batch.len() < FIEMAP_BATCH
            })?;
        }
        if oom && batch.is_empty() {
            return Err(Errno::ENOMEM);
        }
        let full = batch.len() >= FIEMAP_BATCH || oom;
        let mut next = from;
        for e in batch.iter() {
            // A later batch starts after the last extent sent; the last of
            // a full batch is sent again with the next one if it carried
            // `LAST` (it cannot: `fm::fiemap` holds the last one back).
            // SAFETY: `fi` is the VFS's; this copies to user memory with
            // no lock of ours held.
            let r = unsafe { bindings::fiemap_fill_next_extent(fi, e.logical, e.physical, e.length, e.flags) };
            if r < 0 {
                return Err(Errno(-r));
            }
            if r == 1 {
                return Ok(());
            }
            next = next.max(e.logical.saturating_add(e.length));
        }
        if !full || next <= from || next >= end {
            return Ok(());
        }
        from = next;
    }
}
