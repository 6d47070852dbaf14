// SPDX-License-Identifier: GPL-2.0
//! Block devices in the kernel: opening by path and synchronous bio I/O.
//! Implements the core's [`BlockDev`] on top of `struct block_device`.
//!
//! Matches the read half of `fs/bcachefs/super-io.c` (`bch2_read_super`,
//! `read_one_super`): the device is opened with `bdev_file_open_by_path()`
//! and read with `submit_bio_wait()`.  A mounted filesystem reads through
//! [`SbBdev`], the device the VFS opened for its superblock
//! (`get_tree_bdev()`).

use core::ffi::{c_uint, c_ushort};
use core::ptr;

use kernel::str::CStr;

use crate::bindings;
use crate::errcode::Errno;
use crate::platform::{BlockDev, SECTOR_SIZE};

const PAGE_SIZE: usize = 4096;
/// Largest number of segments one bio carries (`BIO_MAX_VECS`).
const BIO_MAX_VECS: usize = 256;

/// An open block device.
///
/// # Invariants
///
/// `file` is a file returned by a successful `bdev_file_open_by_path()`,
/// owned by this value and released in `Drop`; `bdev` is `file_bdev(file)`.
pub(crate) struct Bdev<'a> {
    file: *mut bindings::file,
    bdev: *mut bindings::block_device,
    name: &'a str,
}

impl<'a> Bdev<'a> {
    /// Opens the block device at `path` for reading only.  Nothing can be
    /// written through the returned handle.
    ///
    /// Errors: the `-errno` of `bdev_file_open_by_path()` (`ENOENT`,
    /// `ENOTBLK`, `EACCES`, ...).
    pub(crate) fn open_read(path: &'a CStr) -> Result<Bdev<'a>, Errno> {
        // SAFETY: `path` is a valid NUL-terminated string; a null holder and
        // null holder ops ask for a shared (non-exclusive) open.
        let file = unsafe {
            bindings::bdev_file_open_by_path(
                path.as_char_ptr(),
                bindings::BCH_RS_BLK_OPEN_READ,
                ptr::null_mut(),
                ptr::null(),
            )
        };
        let addr = file as isize;
        if (-4095..0).contains(&addr) {
            return Err(Errno(-(addr as i32)));
        }
        // SAFETY: `file` is a valid block device file (checked above).
        let bdev = unsafe { bindings::file_bdev(file) };
        let name = path.to_str().unwrap_or("(non-UTF-8 path)");
        // INVARIANT: `file` came from a successful open, `bdev` from it.
        Ok(Bdev { file, bdev, name })
    }
}

/// Reads up to `BIO_MAX_VECS` pages' worth of `buf` with one bio.
///
/// # Safety
///
/// `bdev` is a block device that stays open for the duration of the call;
/// `buf` is linear-map memory (checked by [`read_sectors`]).
unsafe fn read_one_bio(bdev: *mut bindings::block_device, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let start = buf.as_mut_ptr();
    let mut segs = 0;
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: `start + off` is inside `buf`.
        let in_page = unsafe { bindings::bch_rs_offset_in_page(start.add(off).cast()) } as usize;
        off += (PAGE_SIZE - in_page).min(buf.len() - off);
        segs += 1;
    }
    // SAFETY: plain allocation; `segs <= BIO_MAX_VECS + 1` by the
    // caller's chunking, which `bio_kmalloc` accepts.
    let bio = unsafe { bindings::bio_kmalloc(segs as c_ushort, bindings::GFP_KERNEL) };
    if bio.is_null() {
        return Err(Errno::ENOMEM);
    }
    // SAFETY: `bio` was just allocated with room for `segs` inline
    // vecs; `bdev` is open by the caller's contract.  Every segment
    // added is linear-map memory inside `buf` (the caller checked
    // `virt_addr_valid`), which stays borrowed until the bio completes
    // in `submit_bio_wait`.  The bio is uninitialised and freed on
    // every path.
    let ret = unsafe {
        bindings::bio_init(
            bio,
            bdev,
            (*bio).bi_inline_vecs.as_mut_ptr(),
            segs as c_ushort,
            bindings::BCH_RS_REQ_OP_READ | bindings::BCH_RS_REQ_META | bindings::BCH_RS_REQ_SYNC,
        );
        (*bio).bi_iter.bi_sector = sector;
        let mut off = 0;
        let mut added = true;
        while off < buf.len() && added {
            let p = start.add(off);
            let in_page = bindings::bch_rs_offset_in_page(p.cast()) as usize;
            let len = (PAGE_SIZE - in_page).min(buf.len() - off);
            let page = bindings::bch_rs_virt_to_page(p.cast());
            added = bindings::bio_add_page(bio, page, len as c_uint, in_page as c_uint) as usize == len;
            off += len;
        }
        let ret = if added { bindings::submit_bio_wait(bio) } else { -(bindings::EIO as i32) };
        bindings::bio_uninit(bio);
        bindings::kfree(bio.cast());
        ret
    };
    if ret != 0 {
        return Err(Errno::EIO);
    }
    Ok(())
}

/// `BlockDev::read_sectors` for an open `bdev`: checks the buffer and the
/// range, then reads in bios of at most `BIO_MAX_VECS` pages.
///
/// # Safety
///
/// `bdev` is a block device that stays open for the duration of the call.
unsafe fn read_sectors(bdev: *mut bindings::block_device, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
    if buf.len() % SECTOR_SIZE != 0 || buf.is_empty() {
        return Err(Errno::EINVAL);
    }
    let first = buf.as_ptr();
    // SAFETY: the predicate only inspects the addresses.
    let valid = unsafe {
        bindings::bch_rs_virt_addr_valid(first.cast())
            && bindings::bch_rs_virt_addr_valid(first.add(buf.len() - 1).cast())
    };
    if !valid {
        // Stack or vmalloc memory has no struct page to put in a bio:
        // read through a kmalloc'd bounce buffer instead.
        let mut bounce: crate::platform::Vec<u8> = crate::platform::Vec::new();
        bounce.resize(buf.len(), 0)?;
        // SAFETY: `bdev` is open (caller's contract); `bounce` is
        // linear-map memory, so this call does not come back here.
        unsafe { read_sectors(bdev, sector, &mut bounce)? };
        buf.copy_from_slice(&bounce);
        return Ok(());
    }
    let sectors = (buf.len() / SECTOR_SIZE) as u64;
    // SAFETY: `bdev` is open (caller's contract).
    let nr = unsafe { bindings::bdev_nr_sectors(bdev) };
    if sector.checked_add(sectors).map_or(true, |end| end > nr) {
        return Err(Errno::EIO);
    }
    let chunk = BIO_MAX_VECS * PAGE_SIZE;
    let mut sector = sector;
    for part in buf.chunks_mut(chunk) {
        // SAFETY: `bdev` is open; `part` is linear-map memory (checked
        // above for the whole of `buf`, which is one allocation).
        unsafe { read_one_bio(bdev, sector, part)? };
        sector += (part.len() / SECTOR_SIZE) as u64;
    }
    Ok(())
}

impl BlockDev for Bdev<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn nr_sectors(&self) -> u64 {
        // SAFETY: `self.bdev` is valid by the type invariant.
        unsafe { bindings::bdev_nr_sectors(self.bdev) }
    }

    /// `buf` is best kmalloc (linear-map) memory, such as a
    /// [`crate::platform::Vec`]: stack and vmalloc memory are read through
    /// a bounce buffer.
    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        // SAFETY: `self.bdev` stays open while `self` lives (invariant).
        unsafe { read_sectors(self.bdev, sector, buf) }
    }

    fn logical_block_size(&self) -> u32 {
        // SAFETY: `self.bdev` is valid by the type invariant.
        unsafe { bindings::bdev_logical_block_size(self.bdev) }
    }
}

impl Drop for Bdev<'_> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own `file`; it is released once.
        unsafe { bindings::fput(self.file) };
    }
}

/// The block device of a mounted superblock (`sb->s_bdev`), opened and
/// closed by the VFS (`get_tree_bdev()` / `kill_block_super()`), with the
/// name the mount was given.
///
/// # Invariants
///
/// `bdev` is `sb->s_bdev` of a superblock whose device stays open for as
/// long as this value lives: the owner drops it in `kill_sb` before
/// `kill_block_super()` releases the device.
pub(crate) struct SbBdev {
    bdev: *mut bindings::block_device,
    name: crate::platform::Vec<u8>,
}

// SAFETY: a `block_device` may be read from any thread; `SbBdev` never
// mutates it, and `name` is owned plain data.
unsafe impl Send for SbBdev {}
// SAFETY: as above: every method takes `&self` and only submits reads.
unsafe impl Sync for SbBdev {}

impl SbBdev {
    /// Wraps `bdev` under `name` (copied).
    ///
    /// # Safety
    ///
    /// `bdev` stays open until the returned value is dropped.
    pub(crate) unsafe fn new(bdev: *mut bindings::block_device, name: &str) -> Result<Self, Errno> {
        let mut n = crate::platform::Vec::new();
        n.extend_from_slice(name.as_bytes())?;
        // INVARIANT: the caller keeps `bdev` open.
        Ok(SbBdev { bdev, name: n })
    }
}

impl BlockDev for SbBdev {
    fn name(&self) -> &str {
        core::str::from_utf8(&self.name).unwrap_or("(non-UTF-8 name)")
    }

    fn nr_sectors(&self) -> u64 {
        // SAFETY: `self.bdev` is open by the type invariant.
        unsafe { bindings::bdev_nr_sectors(self.bdev) }
    }

    /// As [`Bdev`]'s: other than linear-map memory goes through a bounce buffer.
    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        // SAFETY: `self.bdev` is open by the type invariant.
        unsafe { read_sectors(self.bdev, sector, buf) }
    }

    fn logical_block_size(&self) -> u32 {
        // SAFETY: `self.bdev` is open by the type invariant.
        unsafe { bindings::bdev_logical_block_size(self.bdev) }
    }
}
