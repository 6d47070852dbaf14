// SPDX-License-Identifier: GPL-2.0
//! The thin layer between the shared core and its two homes.
//!
//! The core (format, btree, journal, allocator, GC, recovery, fsck) is
//! `no_std` in both homes and reaches the outside world only through this
//! module: fallible allocation ([`Vec`]), block I/O ([`BlockDev`]) and
//! logging ([`log`]).  `host.rs` implements it with `std`; `kernel.rs` with
//! the `kernel` crate (`KVec`, `pr_*`).  Which one is compiled is chosen by
//! `--cfg bch_kernel`, which only the Kbuild build passes.
//!
//! Host only: [`recdev`], a recording in-memory device for crash tests
//! ([`RecDev`], [`MemImage`]).  The kernel's devices are in `src/block/`.

use crate::errcode::Errno;

#[cfg(bch_kernel)]
mod kernel;
#[cfg(bch_kernel)]
pub use self::kernel::*;

#[cfg(not(bch_kernel))]
mod host;
#[cfg(not(bch_kernel))]
pub use self::host::*;

mod box_cache;
pub use self::box_cache::BoxCache;

#[cfg(not(bch_kernel))]
pub mod recdev;
#[cfg(not(bch_kernel))]
pub use self::recdev::{CrashPolicy, Faults, MemImage, RecDev, RecOp, RecStats};

/// Size of a sector, the unit of every on-disk offset: 512 bytes.
pub const SECTOR_SIZE: usize = 512;

/// How a write reaches stable storage (`REQ_PREFLUSH` and `REQ_FUA` of a
/// bio; see `Documentation/block/writeback_cache_control.rst`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteFlags {
    /// Flush the device's volatile cache before this write: every write
    /// completed before it is stable once it completes.
    pub preflush: bool,
    /// Force unit access: this write is stable when it completes.
    pub fua: bool,
}

impl WriteFlags {
    /// A plain write: stable only after a later flush.
    pub const NONE: WriteFlags = WriteFlags { preflush: false, fua: false };
    /// `REQ_PREFLUSH | REQ_FUA`: what a journal flush write asks for.
    pub const FLUSH_FUA: WriteFlags = WriteFlags { preflush: true, fua: true };
}

/// One read of a batch ([`BlockDev::read_sectors_many`],
/// [`crate::fs_common::BtreeRead::read_data_many`]): `buf.len()` bytes (a
/// multiple of 512) of member device `dev` from 512-byte sector `sector`;
/// `result` is set by the read.
pub struct DevRead<'a> {
    /// Member device index (ignored by a [`BlockDev`], which is one device).
    pub dev: u8,
    /// First 512-byte sector.
    pub sector: u64,
    /// Where the data goes.
    pub buf: &'a mut [u8],
    /// The outcome, as [`BlockDev::read_sectors`] returns it.
    pub result: Result<(), Errno>,
}

/// One write of a batch ([`BlockDev::write_sectors_many`],
/// [`crate::fs_common::trans::DataAlloc::write_many`]): `buf` (a multiple
/// of 512 bytes) to member device `dev` at 512-byte sector `sector`, as a
/// plain write ([`WriteFlags::NONE`]); `result` is set by the write.
pub struct DevWrite<'a> {
    /// Member device index (ignored by a [`BlockDev`], which is one device).
    pub dev: u8,
    /// First 512-byte sector.
    pub sector: u64,
    /// The data.
    pub buf: &'a [u8],
    /// The outcome, as [`BlockDev::write_sectors`] returns it.
    pub result: Result<(), Errno>,
}

/// A block device (or an image file) the core reads from and writes to.
///
/// Offsets are in 512-byte sectors, lengths in bytes (a multiple of 512).
/// Implemented by the kernel glue on top of bios and by the host on top of
/// files.  Writes are synchronous: when `write_sectors` returns, the
/// device has the data (in its volatile cache unless `flags` or a later
/// [`BlockDev::flush`] made it stable).
pub trait BlockDev {
    /// A name for messages: the device path as the user gave it.
    fn name(&self) -> &str;

    /// Capacity in 512-byte sectors.
    fn nr_sectors(&self) -> u64;

    /// Reads `buf.len()` bytes starting at `sector`.
    ///
    /// Errors: `EIO` when the device fails the read or the range ends past
    /// the end of the device; `EINVAL` when `buf.len()` is not a multiple of
    /// [`SECTOR_SIZE`].
    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// Reads every one of `reads` (their `dev` is ignored), each as
    /// [`BlockDev::read_sectors`] would, leaving its outcome in its
    /// `result`.  The kernel's devices submit them all before waiting for
    /// any, so that the device works on several at once; the default reads
    /// them one after the other.
    fn read_sectors_many(&self, reads: &mut [DevRead<'_>]) {
        for r in reads.iter_mut() {
            r.result = self.read_sectors(r.sector, r.buf);
        }
    }

    /// The device's logical block size in bytes (`bdev_logical_block_size()`):
    /// the smallest unit it can read; a filesystem block size below it
    /// cannot be mounted.  512 unless the device says otherwise.
    fn logical_block_size(&self) -> u32 {
        SECTOR_SIZE as u32
    }

    /// A hint that `bytes` from `sector` will be read soon (btree node
    /// read-ahead).  The default does nothing.
    fn readahead(&self, _sector: u64, _bytes: usize) {}

    /// Writes `buf` (a multiple of 512 bytes) at `sector`, with `flags`
    /// deciding what is stable when it returns.
    ///
    /// Errors: `EIO` when the device fails the write or the range ends past
    /// the end of the device; `EINVAL` for a length that is not a multiple
    /// of [`SECTOR_SIZE`]; `EROFS` for a device opened read-only (the
    /// default).
    fn write_sectors(&self, _sector: u64, _buf: &[u8], _flags: WriteFlags) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }

    /// Writes every one of `writes` (their `dev` is ignored) as
    /// [`BlockDev::write_sectors`] with [`WriteFlags::NONE`] would, leaving
    /// its outcome in its `result`.  The kernel's devices submit them all
    /// before waiting for any; the default writes them one after the
    /// other, in order.
    fn write_sectors_many(&self, writes: &mut [DevWrite<'_>]) {
        for w in writes.iter_mut() {
            w.result = self.write_sectors(w.sector, w.buf, WriteFlags::NONE);
        }
    }

    /// Makes every completed write stable (an empty `REQ_PREFLUSH` bio,
    /// `blkdev_issue_flush()`).  Errors: `EIO`.  The default (a read-only
    /// device) has nothing to flush.
    fn flush(&self) -> Result<(), Errno> {
        Ok(())
    }

    /// Tells the device that `nr_sectors` 512-byte sectors from `sector`
    /// hold nothing worth keeping (`blkdev_issue_discard()`, what C's
    /// discard of a bucket leaving `need_discard` issues when the member's
    /// `discard` option is set).  Reads of the range may return anything
    /// afterwards.
    ///
    /// Errors: `EIO`.  The default does nothing and succeeds (a device
    /// without discard; the host's `FileDev` and the kernel's `Bdev` keep
    /// it for now).
    fn discard(&self, sector: u64, nr_sectors: u64) -> Result<(), Errno> {
        let _ = (sector, nr_sectors);
        Ok(())
    }
}

/// The in-place pass behind both homes' `Vec::retain` and `Vec::dedup`:
/// visits the elements of `s` in order, asking `keep(last, x)` of each
/// (`last` the last element kept so far), moves the kept ones to the front
/// by swaps, their order unchanged, and returns how many were kept; the
/// rest are left after them in some order, for the caller to truncate.
/// No allocation, and no indexing that could panic.
fn compact_front<T>(s: &mut [T], mut keep: impl FnMut(Option<&T>, &T) -> bool) -> usize {
    let mut kept = 0usize;
    for i in 0..s.len() {
        let Some(x) = s.get(i) else { break };
        let last = kept.checked_sub(1).and_then(|l| s.get(l));
        if keep(last, x) {
            // Elements `kept..i` are dropped ones: swap `i` with the first.
            if let Some([first, .., x]) = s.get_mut(kept..=i) {
                core::mem::swap(first, x);
            }
            // `kept <= i < s.len()`: never wraps (and no overflow check).
            kept = kept.wrapping_add(1);
        }
    }
    kept
}

/// Logging, routed to `printk` in the kernel and to stderr on the host.
pub mod log {
    pub use super::log_impl::{err, err_ratelimited, info, warn};
}
