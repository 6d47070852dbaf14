// SPDX-License-Identifier: GPL-2.0
//! Block devices in the kernel: opening by path, synchronous bio I/O and
//! batches of reads or writes in flight together.
//! Implements the core's [`BlockDev`] on top of `struct block_device`.
//!
//! Matches `fs/bcachefs/super-io.c` (`bch2_read_super`, `read_one_super`)
//! for reads: the device is opened with `bdev_file_open_by_path()` and
//! read with `submit_bio_wait()`.  Writes are synchronous bios too
//! (`REQ_OP_WRITE | REQ_SYNC`, with `REQ_PREFLUSH` and `REQ_FUA` as the
//! [`WriteFlags`] ask, as `journal_io.c` and `btree_io.c` set them), and a
//! flush is `blkdev_issue_flush()` (an empty `REQ_PREFLUSH` bio).  A
//! mounted filesystem does its I/O through [`SbBdev`], the device the VFS
//! opened for its superblock (`get_tree_bdev()`).
//!
//! A device opened for reading only refuses writes with `EROFS` before any
//! bio is built: the block layer itself only warns about a write to a
//! read-only device (`bio_check_ro()`).  A read-write mount's device
//! ([`SbBdev`] opened for writing) takes the journal's, the btree's and
//! the data's writes.

use core::cell::UnsafeCell;
use core::ffi::{c_uint, c_ushort, c_void};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kernel::str::CStr;

use crate::bindings;
use crate::errcode::Errno;
use crate::platform::{BlockDev, DevRead, DevWrite, WriteFlags, SECTOR_SIZE};

const PAGE_SIZE: usize = 4096;
/// Largest number of segments one bio carries (`BIO_MAX_VECS`).
const BIO_MAX_VECS: usize = 256;

/// An open block device.
///
/// # Invariants
///
/// `file` is a file returned by a successful `bdev_file_open_by_path()`,
/// owned by this value and released in `Drop`; `bdev` is `file_bdev(file)`;
/// `writable` is true only if the open asked for `BLK_OPEN_WRITE`.
///
/// Unused since mounts go through `get_tree_bdev()` only (the read-write
/// refusal probed the device with it); kept for opening a device by path.
#[allow(dead_code)]
pub(crate) struct Bdev<'a> {
    file: *mut bindings::file,
    bdev: *mut bindings::block_device,
    name: &'a str,
    writable: bool,
}

#[allow(dead_code)]
impl<'a> Bdev<'a> {
    /// Opens the block device at `path` for reading only.  Nothing can be
    /// written through the returned handle.
    ///
    /// Errors: as [`Bdev::open`].
    pub(crate) fn open_read(path: &'a CStr) -> Result<Bdev<'a>, Errno> {
        Self::open(path, false)
    }

    /// Opens the block device at `path`, shared (no holder), for reading
    /// and, with `writable`, writing (`BLK_OPEN_WRITE`).
    ///
    /// Errors: the `-errno` of `bdev_file_open_by_path()` (`ENOENT`,
    /// `ENOTBLK`, `EACCES` (a read-only device opened for writing), ...).
    pub(crate) fn open(path: &'a CStr, writable: bool) -> Result<Bdev<'a>, Errno> {
        let mode = bindings::BCH_RS_BLK_OPEN_READ | if writable { bindings::BCH_RS_BLK_OPEN_WRITE } else { 0 };
        // SAFETY: `path` is a valid NUL-terminated string; a null holder and
        // null holder ops ask for a shared (non-exclusive) open.
        let file = unsafe { bindings::bdev_file_open_by_path(path.as_char_ptr(), mode, ptr::null_mut(), ptr::null()) };
        let addr = file as isize;
        if (-4095..0).contains(&addr) {
            return Err(Errno(-(addr as i32)));
        }
        // SAFETY: `file` is a valid block device file (checked above).
        let bdev = unsafe { bindings::file_bdev(file) };
        let name = path.to_str().unwrap_or("(non-UTF-8 path)");
        // INVARIANT: `file` came from a successful open, `bdev` from it,
        // `writable` from the mode it was opened with.
        Ok(Bdev { file, bdev, name, writable })
    }
}

/// How many bio segments `len` bytes from `start` take: one per page
/// they touch (`bio_add_page()` of each page's part).
///
/// # Safety
///
/// `start..start + len` is one buffer (the pointer arithmetic stays in
/// it).
unsafe fn page_segments(start: *mut u8, len: usize) -> usize {
    let mut segs = 0;
    let mut off = 0;
    while off < len {
        // SAFETY: `start + off` is inside the buffer (`off < len`).
        let in_page = unsafe { bindings::bch_rs_offset_in_page(start.add(off).cast()) } as usize;
        off += (PAGE_SIZE - in_page).min(len - off);
        segs += 1;
    }
    segs
}

/// A `bio_kmalloc`ed bio of `opf` over the `len` bytes at `start` (at
/// most `BIO_MAX_VECS` pages' worth) from `sector`, every page of the
/// buffer added.  The caller submits it, and frees it (`bio_uninit`,
/// `kfree`) once it completed, or lets its `bi_end_io` do so.
///
/// Errors: `ENOMEM` (no bio); `EIO` if a page would not go in (the bio
/// is freed).
///
/// # Safety
///
/// As [`submit_one_bio`] for `bdev`, `start` and `len`, until the bio
/// completes.
unsafe fn bio_build(
    bdev: *mut bindings::block_device,
    sector: u64,
    start: *mut u8,
    len: usize,
    opf: bindings::blk_opf_t,
) -> Result<*mut bindings::bio, Errno> {
    // SAFETY: the caller's contract: `start..start + len` is one buffer.
    let segs = unsafe { page_segments(start, len) };
    // SAFETY: plain allocation; `segs <= BIO_MAX_VECS + 1` by the
    // caller's chunking, which `bio_kmalloc` accepts (readahead and
    // writeback run in a NOFS scope).
    let bio = unsafe { bindings::bio_kmalloc(segs as c_ushort, bindings::GFP_KERNEL) };
    if bio.is_null() {
        return Err(Errno::ENOMEM);
    }
    // SAFETY: `bio` was just allocated with room for `segs` inline vecs;
    // `bdev` is open by the caller's contract.  Every segment added is
    // linear-map memory inside the buffer (caller's contract).  On failure
    // the bio is uninitialised and freed here.
    unsafe {
        bindings::bio_init(bio, bdev, (*bio).bi_inline_vecs.as_mut_ptr(), segs as c_ushort, opf);
        (*bio).bi_iter.bi_sector = sector;
        let mut off = 0;
        while off < len {
            let p = start.add(off);
            let in_page = bindings::bch_rs_offset_in_page(p.cast()) as usize;
            let n = (PAGE_SIZE - in_page).min(len - off);
            let page = bindings::bch_rs_virt_to_page(p.cast());
            if bindings::bio_add_page(bio, page, n as c_uint, in_page as c_uint) as usize != n {
                bindings::bio_uninit(bio);
                bindings::kfree(bio.cast());
                return Err(Errno::EIO);
            }
            off += n;
        }
    }
    Ok(bio)
}

/// Submits one synchronous bio of `opf` over `len` bytes at `start` (at
/// most `BIO_MAX_VECS` pages' worth) and waits for it.
///
/// # Safety
///
/// `bdev` is a block device that stays open for the duration of the call;
/// `start..start + len` is linear-map memory (it has `struct page`s) that
/// stays valid for the call: written to by the device for a read (so
/// borrowed mutably by the caller), only read for a write.
unsafe fn submit_one_bio(
    bdev: *mut bindings::block_device,
    sector: u64,
    start: *mut u8,
    len: usize,
    opf: bindings::blk_opf_t,
) -> Result<(), Errno> {
    // SAFETY: the caller's contract.
    let bio = unsafe { bio_build(bdev, sector, start, len, opf)? };
    // SAFETY: a built bio over memory that stays borrowed until it
    // completes in `submit_bio_wait`; then it is ours to free.
    let ret = unsafe {
        let ret = bindings::submit_bio_wait(bio);
        bindings::bio_uninit(bio);
        bindings::kfree(bio.cast());
        ret
    };
    if ret != 0 {
        return Err(Errno::EIO);
    }
    Ok(())
}

/// Whether all of `buf` is linear-map memory, which a bio can carry.
/// Stack and vmalloc memory (kernel stacks are vmalloc'd) is not.
fn is_linear(buf: &[u8]) -> bool {
    let first = buf.as_ptr();
    // SAFETY: the predicate only inspects the addresses; `buf` is not
    // empty (callers check), so its last byte is at `len - 1`.
    unsafe {
        bindings::bch_rs_virt_addr_valid(first.cast())
            && bindings::bch_rs_virt_addr_valid(first.add(buf.len() - 1).cast())
    }
}

/// `EINVAL` for an empty buffer or one that is not whole sectors; `EIO`
/// for a range that ends past the end of the device.
///
/// # Safety
///
/// `bdev` is a block device that stays open for the duration of the call.
unsafe fn check_range(bdev: *mut bindings::block_device, sector: u64, bytes: usize) -> Result<(), Errno> {
    if bytes % SECTOR_SIZE != 0 || bytes == 0 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `bdev` is open (caller's contract).
    let nr = unsafe { bindings::bdev_nr_sectors(bdev) };
    match sector.checked_add((bytes / SECTOR_SIZE) as u64) {
        Some(end) if end <= nr => Ok(()),
        _ => Err(Errno::EIO),
    }
}

/// `BlockDev::read_sectors` for an open `bdev`: checks the buffer and the
/// range, then reads in bios of at most `BIO_MAX_VECS` pages.
///
/// # Safety
///
/// `bdev` is a block device that stays open for the duration of the call.
unsafe fn read_sectors(bdev: *mut bindings::block_device, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: `bdev` is open (caller's contract).
    unsafe { check_range(bdev, sector, buf.len())? };
    if !is_linear(buf) {
        // Read through a kmalloc'd bounce buffer instead.
        let mut bounce: crate::platform::Vec<u8> = crate::platform::Vec::new();
        bounce.resize(buf.len(), 0)?;
        // SAFETY: `bdev` is open (caller's contract); `bounce` is
        // linear-map memory, so this call does not come back here.
        unsafe { read_sectors(bdev, sector, &mut bounce)? };
        // Same lengths; a copy without `copy_from_slice`'s panic path,
        // which objtool (6.12) does not know as `noreturn`.
        for (d, s) in buf.iter_mut().zip(bounce.iter()) {
            *d = *s;
        }
        return Ok(());
    }
    let opf = bindings::BCH_RS_REQ_OP_READ | bindings::BCH_RS_REQ_META | bindings::BCH_RS_REQ_SYNC;
    let mut sector = sector;
    for part in buf.chunks_mut(BIO_MAX_VECS * PAGE_SIZE) {
        // SAFETY: `bdev` is open; `part` is linear-map memory (checked
        // above for the whole of `buf`, which is one allocation), borrowed
        // mutably for the call.
        unsafe { submit_one_bio(bdev, sector, part.as_mut_ptr(), part.len(), opf)? };
        sector += (part.len() / SECTOR_SIZE) as u64;
    }
    Ok(())
}

/// What the bios of one [`io_many`] batch share: the count of bios not
/// yet completed (plus one held by the submitter until all are out) and
/// the completion the last one to finish signals.
struct Batch {
    pending: AtomicUsize,
    done: UnsafeCell<bindings::completion>,
}

/// One I/O of a batch as its bios see it (`bi_private`): the batch, and
/// whether a bio of the I/O failed.
struct IoSlot {
    batch: *const Batch,
    failed: AtomicBool,
}

/// `bi_end_io` of a batch's bio: notes a failure in its I/O's slot, frees
/// the bio and, if it is the last of the batch, wakes the submitter.
///
/// # Safety
///
/// `bio` was built by [`io_many`] with `bi_private` pointing at an
/// [`IoSlot`] of a batch still waited for.
unsafe extern "C" fn io_many_endio(bio: *mut bindings::bio) {
    // SAFETY: by the contract the slot and its batch outlive the bio: the
    // submitter waits until `pending` reaches zero, which this bio's
    // decrement below is part of, and touches nothing of it afterwards.
    // The bio was `bio_kmalloc`ed and nobody else holds it any more.
    unsafe {
        let slot = (*bio).bi_private as *const IoSlot;
        if (*bio).bi_status != 0 {
            (*slot).failed.store(true, Ordering::Relaxed);
        }
        let batch = (*slot).batch;
        bindings::bio_uninit(bio);
        bindings::kfree(bio.cast());
        if (*batch).pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            bindings::complete((*batch).done.get());
        }
    }
}

/// [`bio_build`] of a batch's bio, completing into `slot`
/// ([`io_many_endio`]).  `None` when it cannot be built.
///
/// # Safety
///
/// As [`bio_build`]; `slot` outlives the bio.
unsafe fn build_batch_bio(
    bdev: *mut bindings::block_device,
    sector: u64,
    start: *mut u8,
    len: usize,
    opf: bindings::blk_opf_t,
    slot: *const IoSlot,
) -> Option<*mut bindings::bio> {
    // SAFETY: the caller's contract.
    let bio = unsafe { bio_build(bdev, sector, start, len, opf) }.ok()?;
    // SAFETY: a built bio, not yet submitted: ours to set up.
    unsafe {
        (*bio).bi_private = slot.cast_mut().cast::<c_void>();
        (*bio).bi_end_io = Some(io_many_endio);
    }
    Some(bio)
}

/// One I/O of an [`io_many`] batch: `len` bytes at `start` from `sector`.
struct BatchIo {
    sector: u64,
    start: *mut u8,
    len: usize,
}

/// Runs the I/Os of `ios` with `opf`, every one in linear-map memory
/// submitted (bios of at most `BIO_MAX_VECS` pages, under one plug so that
/// adjacent ones merge) before waiting once for all of them; the others
/// (stack or vmalloc memory, bad ranges), and those a bio could not be
/// allocated for, are done one by one by `alone(i)` after the batch.
/// Returns each I/O's outcome through `result(i, r)`.
///
/// # Safety
///
/// `bdev` is a block device that stays open for the duration of the call
/// (opened for writing if `opf` writes); each `ios[i]` is a buffer valid
/// for the call: written to by the device for a read (so borrowed mutably
/// by the caller), only read for a write.
unsafe fn io_many(
    bdev: *mut bindings::block_device,
    ios: &[BatchIo],
    opf: bindings::blk_opf_t,
    mut alone: impl FnMut(usize) -> Result<(), Errno>,
    mut result: impl FnMut(usize, Result<(), Errno>),
) {
    let mut slots: crate::platform::Vec<IoSlot> = crate::platform::Vec::new();
    let batch = Batch { pending: AtomicUsize::new(1), done: UnsafeCell::new(Default::default()) };
    // SAFETY: `done` is ours and not yet shared.
    unsafe { bindings::init_completion(batch.done.get()) };
    // One slot per I/O, allocated before any bio points at one (the
    // vector does not move afterwards).
    let batched = slots.reserve(ios.len()).is_ok()
        && ios.iter().all(|_| slots.push(IoSlot { batch: &batch, failed: AtomicBool::new(false) }).is_ok());
    if !batched {
        for i in 0..ios.len() {
            result(i, alone(i));
        }
        return;
    }
    // Which I/Os are done one by one after the batch.
    let mut single: crate::platform::Vec<bool> = crate::platform::Vec::new();
    let _ = single.resize(ios.len(), false);
    // Under readahead the page cache's own plug (`read_pages()`) is the
    // outer one and this one does nothing: the bios then go out when the
    // wait below sleeps (`schedule()` flushes a sleeping task's plug).
    let mut plug = bindings::blk_plug::default();
    // SAFETY: `plug` lives on this stack frame until `blk_finish_plug`.
    unsafe { bindings::blk_start_plug(&mut plug) };
    for (i, io) in ios.iter().enumerate() {
        let Some(slot) = slots.get(i) else { break };
        // SAFETY: `bdev` is open (caller's contract); the buffer is valid
        // (caller's contract).
        let ok = io.len != 0
            && unsafe { check_range(bdev, io.sector, io.len) }.is_ok()
            && is_linear(unsafe { core::slice::from_raw_parts(io.start, io.len) });
        if !ok {
            match single.get_mut(i) {
                Some(a) => *a = true,
                None => slot.failed.store(true, Ordering::Relaxed),
            }
            continue;
        }
        let mut sector = io.sector;
        let mut off = 0;
        while off < io.len {
            let n = (io.len - off).min(BIO_MAX_VECS * PAGE_SIZE);
            // SAFETY: `bdev` is open; `off..off + n` is inside the buffer,
            // linear-map memory (checked above for the whole buffer, one
            // allocation), valid until this function returns, which is
            // after the bio completes (the wait below); `slot` lives as
            // long.
            match unsafe { build_batch_bio(bdev, sector, io.start.add(off), n, opf, slot) } {
                Some(bio) => {
                    batch.pending.fetch_add(1, Ordering::Relaxed);
                    // SAFETY: a fully built bio; from here its end_io owns it.
                    unsafe { bindings::submit_bio(bio) };
                }
                None => {
                    // No memory for the bio: this I/O again on its own
                    // (its bios already submitted just did part of it twice).
                    match single.get_mut(i) {
                        Some(a) => *a = true,
                        None => slot.failed.store(true, Ordering::Relaxed),
                    }
                    break;
                }
            }
            sector += (n / SECTOR_SIZE) as u64;
            off += n;
        }
    }
    // SAFETY: the plug started above; this submits what it holds.
    unsafe { bindings::blk_finish_plug(&mut plug) };
    if batch.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
        // SAFETY: `done` was initialised; the last bio's end_io completes
        // it, after which no bio touches `batch` or `slots`.
        unsafe { bindings::wait_for_completion_io(batch.done.get()) };
    }
    for i in 0..ios.len() {
        let failed = slots.get(i).map_or(true, |s| s.failed.load(Ordering::Relaxed));
        let r = if single.get(i).copied().unwrap_or(false) {
            alone(i)
        } else if failed {
            Err(Errno::EIO)
        } else {
            Ok(())
        };
        result(i, r);
    }
}

/// `BlockDev::read_sectors_many` for an open `bdev`: every read in flight
/// together ([`io_many`]); those that cannot be are read one by one with
/// [`read_sectors`].
///
/// # Safety
///
/// `bdev` is a block device that stays open for the duration of the call.
unsafe fn read_many(bdev: *mut bindings::block_device, reads: &mut [DevRead<'_>]) {
    let mut ios: crate::platform::Vec<BatchIo> = crate::platform::Vec::new();
    let listed = ios.reserve(reads.len()).is_ok()
        && reads.iter_mut().all(|r| ios.push(BatchIo { sector: r.sector, start: r.buf.as_mut_ptr(), len: r.buf.len() }).is_ok());
    if !listed {
        for r in reads.iter_mut() {
            // SAFETY: `bdev` is open (caller's contract).
            r.result = unsafe { read_sectors(bdev, r.sector, r.buf) };
        }
        return;
    }
    let reads_ptr = reads.as_mut_ptr();
    let n = reads.len();
    let opf = bindings::BCH_RS_REQ_OP_READ;
    // SAFETY: `bdev` is open (caller's contract); each buffer is borrowed
    // mutably by `reads` for the call.  The closures reach `reads[i]`
    // through a raw pointer (`i < n`): `alone(i)` runs only once no bio of
    // I/O `i` is in flight, and neither closure keeps the reference.
    unsafe {
        io_many(
            bdev,
            &ios,
            opf,
            |i| {
                let r = &mut *reads_ptr.add(i.min(n - 1));
                read_sectors(bdev, r.sector, r.buf)
            },
            |i, res| {
                if i < n {
                    (*reads_ptr.add(i)).result = res;
                }
            },
        )
    };
}

/// `BlockDev::write_sectors_many` for `bdev` opened for writing: every
/// write in flight together ([`io_many`], `REQ_OP_WRITE | REQ_SYNC`, as
/// the submitter waits); those that cannot be are written one by one with
/// [`write_sectors`].
///
/// # Safety
///
/// `bdev` is a block device opened for writing that stays open for the
/// duration of the call.
unsafe fn write_many(bdev: *mut bindings::block_device, writes: &mut [DevWrite<'_>]) {
    let mut ios: crate::platform::Vec<BatchIo> = crate::platform::Vec::new();
    let listed = ios.reserve(writes.len()).is_ok()
        && writes.iter().all(|w| ios.push(BatchIo { sector: w.sector, start: w.buf.as_ptr().cast_mut(), len: w.buf.len() }).is_ok());
    if !listed {
        for w in writes.iter_mut() {
            // SAFETY: `bdev` is open for writing (caller's contract).
            w.result = unsafe { write_sectors(bdev, w.sector, w.buf, WriteFlags::NONE) };
        }
        return;
    }
    let writes_ptr = writes.as_mut_ptr();
    let n = writes.len();
    let opf = bindings::BCH_RS_REQ_OP_WRITE | bindings::BCH_RS_REQ_SYNC;
    // SAFETY: `bdev` is open for writing (caller's contract); each buffer
    // is borrowed (shared) by `writes` for the call and only read by the
    // device.  The closures reach `writes[i]` through a raw pointer
    // (`i < n`) and keep no reference.
    unsafe {
        io_many(
            bdev,
            &ios,
            opf,
            |i| {
                let w = &*writes_ptr.add(i.min(n - 1));
                write_sectors(bdev, w.sector, w.buf, WriteFlags::NONE)
            },
            |i, res| {
                if i < n {
                    (*writes_ptr.add(i)).result = res;
                }
            },
        )
    };
}

/// `BlockDev::write_sectors` for `bdev` opened for writing: checks the
/// buffer and the range, then writes in bios of at most `BIO_MAX_VECS`
/// pages, `REQ_OP_WRITE | REQ_SYNC`.  With `flags.preflush` the first bio
/// carries `REQ_PREFLUSH` (everything completed before the call becomes
/// stable before any of `buf` is written); with `flags.fua` every bio
/// carries `REQ_FUA`, so all of `buf` is stable when the call returns.
///
/// # Safety
///
/// `bdev` is a block device opened for writing that stays open for the
/// duration of the call.
unsafe fn write_sectors(bdev: *mut bindings::block_device, sector: u64, buf: &[u8], flags: WriteFlags) -> Result<(), Errno> {
    // SAFETY: `bdev` is open (caller's contract).
    unsafe { check_range(bdev, sector, buf.len())? };
    if !is_linear(buf) {
        let mut bounce: crate::platform::Vec<u8> = crate::platform::Vec::new();
        bounce.extend_from_slice(buf)?;
        // SAFETY: `bdev` is open for writing (caller's contract); `bounce`
        // is linear-map memory, so this call does not come back here.
        return unsafe { write_sectors(bdev, sector, &bounce, flags) };
    }
    let fua = if flags.fua { bindings::BCH_RS_REQ_FUA } else { 0 };
    let mut preflush = if flags.preflush { bindings::BCH_RS_REQ_PREFLUSH } else { 0 };
    let mut sector = sector;
    for part in buf.chunks(BIO_MAX_VECS * PAGE_SIZE) {
        let opf = bindings::BCH_RS_REQ_OP_WRITE | bindings::BCH_RS_REQ_SYNC | preflush | fua;
        // SAFETY: `bdev` is open for writing; `part` is linear-map memory
        // (checked above for the whole of `buf`, one allocation) that the
        // device only reads, and `buf`'s shared borrow keeps it valid and
        // unchanged for the call.
        unsafe { submit_one_bio(bdev, sector, part.as_ptr().cast_mut(), part.len(), opf)? };
        preflush = 0;
        sector += (part.len() / SECTOR_SIZE) as u64;
    }
    Ok(())
}

/// `BlockDev::flush`: `blkdev_issue_flush()`, an empty `REQ_PREFLUSH` bio
/// (completed at once by a device without a volatile cache).
///
/// # Safety
///
/// `bdev` is a block device opened for writing that stays open for the
/// duration of the call.
unsafe fn flush(bdev: *mut bindings::block_device) -> Result<(), Errno> {
    // SAFETY: `bdev` is open (caller's contract).
    match unsafe { bindings::blkdev_issue_flush(bdev) } {
        0 => Ok(()),
        _ => Err(Errno::EIO),
    }
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

    /// All in flight at once ([`read_many`]).
    fn read_sectors_many(&self, reads: &mut [DevRead<'_>]) {
        // SAFETY: `self.bdev` stays open while `self` lives (invariant).
        unsafe { read_many(self.bdev, reads) }
    }

    fn logical_block_size(&self) -> u32 {
        // SAFETY: `self.bdev` is valid by the type invariant.
        unsafe { bindings::bdev_logical_block_size(self.bdev) }
    }

    /// `EROFS` unless opened with `writable`; as reads, other than
    /// linear-map memory goes through a bounce buffer.
    fn write_sectors(&self, sector: u64, buf: &[u8], flags: WriteFlags) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        // SAFETY: `self.bdev` stays open while `self` lives and was opened
        // for writing (type invariant, checked just above).
        unsafe { write_sectors(self.bdev, sector, buf, flags) }
    }

    /// All in flight at once ([`write_many`]); `EROFS` for each unless
    /// opened with `writable`.
    fn write_sectors_many(&self, writes: &mut [DevWrite<'_>]) {
        if !self.writable {
            writes.iter_mut().for_each(|w| w.result = Err(Errno::EROFS));
            return;
        }
        // SAFETY: as in `write_sectors`.
        unsafe { write_many(self.bdev, writes) }
    }

    /// Nothing to flush on a device opened for reading only.
    fn flush(&self) -> Result<(), Errno> {
        if !self.writable {
            return Ok(());
        }
        // SAFETY: as in `write_sectors`.
        unsafe { flush(self.bdev) }
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
/// `kill_block_super()` releases the device.  `writable` is true only if
/// the VFS opened it for writing (a mount without `SB_RDONLY`,
/// `sb_open_mode()`).
pub(crate) struct SbBdev {
    bdev: *mut bindings::block_device,
    name: crate::platform::Vec<u8>,
    writable: bool,
}

// SAFETY: a `block_device` may be used from any thread: bios can be
// submitted and flushes issued concurrently from several; `SbBdev` never
// mutates it itself, and `name` is owned plain data.
unsafe impl Send for SbBdev {}
// SAFETY: as above: every method takes `&self`, and concurrent bio
// submission to one `block_device` is what the block layer is for.
unsafe impl Sync for SbBdev {}

impl SbBdev {
    /// Wraps `bdev`, opened read-only, under `name` (copied): writes fail
    /// with `EROFS`.
    ///
    /// # Safety
    ///
    /// `bdev` stays open until the returned value is dropped.
    pub(crate) unsafe fn new(bdev: *mut bindings::block_device, name: &str) -> Result<Self, Errno> {
        // SAFETY: the caller's contract.
        unsafe { Self::with_mode(bdev, name, false) }
    }

    /// Wraps `bdev` under `name` (copied); `writable`: the VFS opened it
    /// for writing, and writes and flushes go to the device.
    ///
    /// # Safety
    ///
    /// `bdev` stays open until the returned value is dropped, and was
    /// opened with `BLK_OPEN_WRITE` if `writable`.
    pub(crate) unsafe fn with_mode(bdev: *mut bindings::block_device, name: &str, writable: bool) -> Result<Self, Errno> {
        let mut n = crate::platform::Vec::new();
        n.extend_from_slice(name.as_bytes())?;
        // INVARIANT: the caller keeps `bdev` open, opened for writing if
        // `writable`.
        Ok(SbBdev { bdev, name: n, writable })
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

    /// All in flight at once ([`read_many`]).
    fn read_sectors_many(&self, reads: &mut [DevRead<'_>]) {
        // SAFETY: `self.bdev` is open by the type invariant.
        unsafe { read_many(self.bdev, reads) }
    }

    fn logical_block_size(&self) -> u32 {
        // SAFETY: `self.bdev` is open by the type invariant.
        unsafe { bindings::bdev_logical_block_size(self.bdev) }
    }

    /// As [`Bdev`]'s: `EROFS` on a read-only mount's device.
    fn write_sectors(&self, sector: u64, buf: &[u8], flags: WriteFlags) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        // SAFETY: `self.bdev` is open, and opened for writing (type
        // invariant, checked just above).
        unsafe { write_sectors(self.bdev, sector, buf, flags) }
    }

    /// All in flight at once ([`write_many`]); `EROFS` for each on a
    /// read-only mount's device.
    fn write_sectors_many(&self, writes: &mut [DevWrite<'_>]) {
        if !self.writable {
            writes.iter_mut().for_each(|w| w.result = Err(Errno::EROFS));
            return;
        }
        // SAFETY: as in `write_sectors`.
        unsafe { write_many(self.bdev, writes) }
    }

    /// Nothing to flush on a read-only mount's device.
    fn flush(&self) -> Result<(), Errno> {
        if !self.writable {
            return Ok(());
        }
        // SAFETY: as in `write_sectors`.
        unsafe { flush(self.bdev) }
    }
}
