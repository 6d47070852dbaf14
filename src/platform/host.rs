// SPDX-License-Identifier: GPL-2.0
//! Host backend of the platform layer: `std` allocation, files as block
//! devices, stderr for logging.

extern crate std;

use core::ops::{Deref, DerefMut};
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{BlockDev, WriteFlags, SECTOR_SIZE};
use crate::errcode::{AllocError, Errno};

/// A growable array whose every allocating method is fallible, so the core
/// reads the same in both homes.  On the host it wraps `std::vec::Vec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vec<T>(std::vec::Vec<T>);

impl<T> Default for Vec<T> {
    fn default() -> Self {
        Vec(std::vec::Vec::new())
    }
}

impl<T> Vec<T> {
    /// An empty vector; does not allocate.
    pub const fn new() -> Self {
        Vec(std::vec::Vec::new())
    }

    /// An empty vector with room for `n` elements.
    pub fn with_capacity(n: usize) -> Result<Self, AllocError> {
        let mut v = std::vec::Vec::new();
        v.try_reserve(n).map_err(|_| AllocError)?;
        Ok(Vec(v))
    }

    /// Appends `x`, growing the allocation if needed.
    pub fn push(&mut self, x: T) -> Result<(), AllocError> {
        self.0.try_reserve(1).map_err(|_| AllocError)?;
        self.0.push(x);
        Ok(())
    }

    /// Makes room for at least `n` more elements.
    pub fn reserve(&mut self, n: usize) -> Result<(), AllocError> {
        self.0.try_reserve(n).map_err(|_| AllocError)
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }

    /// Shortens the vector to `len` elements, dropping the rest.
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len)
    }

    /// Elements the allocation has room for.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Removes every element, keeping the allocation.
    pub fn clear(&mut self) {
        self.0.clear()
    }

    /// Keeps only the elements for which `f` holds, in their order,
    /// calling `f` once on each element front to back; the others are
    /// dropped after the pass.  Does not allocate.
    pub fn retain(&mut self, mut f: impl FnMut(&T) -> bool) {
        let kept = super::compact_front(&mut self.0, |_, x| f(x));
        self.truncate(kept);
    }

    /// Removes consecutive repeated elements, keeping the first of each
    /// run (an element is dropped when it equals the last one kept), so a
    /// sorted vector ends up without duplicates.  Order is kept; does not
    /// allocate.
    pub fn dedup(&mut self)
    where
        T: PartialEq,
    {
        let kept = super::compact_front(&mut self.0, |last, x| last != Some(x));
        self.truncate(kept);
    }
}

impl<T: Clone> Vec<T> {
    /// Appends a copy of every element of `s`.
    pub fn extend_from_slice(&mut self, s: &[T]) -> Result<(), AllocError> {
        self.0.try_reserve(s.len()).map_err(|_| AllocError)?;
        self.0.extend_from_slice(s);
        Ok(())
    }

    /// Grows or shrinks to `len` elements, filling with `x`.
    pub fn resize(&mut self, len: usize, x: T) -> Result<(), AllocError> {
        self.0
            .try_reserve(len.saturating_sub(self.0.len()))
            .map_err(|_| AllocError)?;
        self.0.resize(len, x);
        Ok(())
    }
}

impl<T> Deref for Vec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> DerefMut for Vec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

/// A file or host block device used as a [`BlockDev`].
///
/// Writes are `pwrite`s: on a regular file they land in the page cache, on
/// a block device in the device's queue.  [`BlockDev::flush`] is
/// `fdatasync()` (which on a block device also flushes its volatile write
/// cache); a write with [`WriteFlags::preflush`] does one before it, a
/// write with [`WriteFlags::fua`] one after it, so the `WriteFlags`
/// guarantees hold (a file cannot sync a single range, so FUA syncs more
/// than the one write).
///
/// # Invariants
///
/// `writable` is true only when `file` was opened for writing.
pub struct FileDev {
    file: File,
    name: std::string::String,
    nr_sectors: u64,
    writable: bool,
}

impl FileDev {
    /// Opens `path` read-only: writes fail with `EROFS`.
    pub fn open(path: &str) -> std::io::Result<FileDev> {
        Self::from_file(File::open(path)?, path, false)
    }

    /// Opens `path` for reading and writing.
    pub fn open_rw(path: &str) -> std::io::Result<FileDev> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        Self::from_file(file, path, true)
    }

    fn from_file(file: File, path: &str, writable: bool) -> std::io::Result<FileDev> {
        use std::io::{Seek, SeekFrom};
        // Works for block devices too, where metadata().len() is 0.
        let bytes = (&file).seek(SeekFrom::End(0))?;
        // INVARIANT: the callers pass `writable` as they opened `file`.
        Ok(FileDev {
            file,
            name: path.into(),
            nr_sectors: bytes / SECTOR_SIZE as u64,
            writable,
        })
    }

    /// `EINVAL` for a length that is not whole sectors, `EIO` for a range
    /// that does not fit the device.
    fn check_range(&self, sector: u64, bytes: usize) -> Result<u64, Errno> {
        if bytes % SECTOR_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let end = sector.checked_add((bytes / SECTOR_SIZE) as u64);
        if end.map_or(true, |e| e > self.nr_sectors) {
            return Err(Errno::EIO);
        }
        Ok(sector * SECTOR_SIZE as u64)
    }
}

impl BlockDev for FileDev {
    fn name(&self) -> &str {
        &self.name
    }

    fn nr_sectors(&self) -> u64 {
        self.nr_sectors
    }

    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let at = self.check_range(sector, buf.len())?;
        self.file.read_exact_at(buf, at).map_err(|_| Errno::EIO)
    }

    fn write_sectors(&self, sector: u64, buf: &[u8], flags: WriteFlags) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let at = self.check_range(sector, buf.len())?;
        if flags.preflush {
            self.flush()?;
        }
        self.file.write_all_at(buf, at).map_err(|_| Errno::EIO)?;
        if flags.fua {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), Errno> {
        if !self.writable {
            return Ok(());
        }
        self.file.sync_data().map_err(|_| Errno::EIO)
    }
}

/// A heap allocation with one owner (`std::boxed::Box` on the host,
/// `KBox` in the kernel).  Make one with [`box_new`].
pub type Box<T> = std::boxed::Box<T>;

/// A new [`Box`] holding `x`.
///
/// Errors: [`AllocError`] (only in the kernel).
pub fn box_new<T>(x: T) -> Result<Box<T>, AllocError> {
    Ok(std::boxed::Box::new(x))
}

/// Shared ownership with an atomic reference count (`std::sync::Arc` on
/// the host, `kernel::sync::Arc` in the kernel).  Make one with
/// [`arc_new`], which is fallible in both homes.
pub type Arc<T> = std::sync::Arc<T>;

/// A new [`Arc`] holding `x`.
///
/// Errors: [`AllocError`] (only in the kernel).
pub fn arc_new<T>(x: T) -> Result<Arc<T>, AllocError> {
    Ok(std::sync::Arc::new(x))
}

/// A sleeping mutual-exclusion lock around a `T` (`std::sync::Mutex` on
/// the host; a pinned `kernel::sync::Mutex` in the kernel).  Not for use
/// in atomic context.
#[derive(Debug, Default)]
pub struct Mutex<T>(std::sync::Mutex<T>);

/// What [`Mutex::lock`] returns: derefs to the `T`; unlocks on drop.
pub type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// A mutex holding `x`.
    ///
    /// Errors: [`AllocError`] (only in the kernel, where the lock is
    /// allocated pinned).
    pub fn new(x: T) -> Result<Self, AllocError> {
        Ok(Mutex(std::sync::Mutex::new(x)))
    }

    /// Waits for and takes the lock.  A panic of an earlier holder (host
    /// tests only) does not poison it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a rate-limited message may be printed now.  The host prints
/// every message.
pub fn log_ratelimit() -> bool {
    true
}

/// Stops after `msg` (`errors=panic`): the host panics.
pub fn fatal_panic(msg: core::fmt::Arguments<'_>) -> ! {
    panic!("bcachefs: {msg}")
}

#[doc(hidden)]
pub mod log_impl {
    /// Logs an error line.
    #[macro_export]
    macro_rules! bch_err { ($($a:tt)*) => { ::std::eprintln!("bcachefs: {}", ::core::format_args!($($a)*)) } }
    /// Logs a warning line.
    #[macro_export]
    macro_rules! bch_warn { ($($a:tt)*) => { ::std::eprintln!("bcachefs: {}", ::core::format_args!($($a)*)) } }
    /// Logs an informational line.
    #[macro_export]
    macro_rules! bch_info { ($($a:tt)*) => { ::std::eprintln!("bcachefs: {}", ::core::format_args!($($a)*)) } }
    /// Logs an error line unless too many were logged recently
    /// (`bch_err_ratelimited()`).
    #[macro_export]
    macro_rules! bch_err_ratelimited { ($($a:tt)*) => { if $crate::platform::log_ratelimit() { ::std::eprintln!("bcachefs: {}", ::core::format_args!($($a)*)) } } }
    pub use bch_err as err;
    pub use bch_err_ratelimited as err_ratelimited;
    pub use bch_info as info;
    pub use bch_warn as warn;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_is_fallible_and_derefs_to_slice() {
        let mut v: Vec<u32> = Vec::with_capacity(2).unwrap();
        v.push(1).unwrap();
        v.extend_from_slice(&[2, 3]).unwrap();
        assert_eq!(&v[..], &[1, 2, 3]);
        assert_eq!(v.pop(), Some(3));
        v.resize(4, 9).unwrap();
        assert_eq!(&v[..], &[1, 2, 9, 9]);
        assert!(v.reserve(usize::MAX).is_err());
    }

    #[test]
    fn vec_retain_keeps_order() {
        let mut v: Vec<u32> = Vec::new();
        v.extend_from_slice(&[5, 1, 8, 2, 7, 3, 6]).unwrap();
        let mut seen = std::vec::Vec::new();
        v.retain(|&x| {
            seen.push(x);
            x % 2 == 1 || x == 8
        });
        assert_eq!(&v[..], &[5, 1, 8, 7, 3]);
        assert_eq!(seen, [5, 1, 8, 2, 7, 3, 6], "f sees each element once, in order");
        v.retain(|_| true);
        assert_eq!(&v[..], &[5, 1, 8, 7, 3]);
        v.retain(|_| false);
        assert!(v.is_empty());
        v.retain(|_| unreachable!());
        // Elements that own memory: the kept ones move, the rest are dropped.
        let mut s: Vec<std::string::String> = Vec::new();
        for w in ["a", "bb", "c", "dd", "ee"] {
            s.push(w.into()).unwrap();
        }
        s.retain(|w| w.len() == 2);
        assert_eq!(&s[..], &["bb", "dd", "ee"]);
    }

    #[test]
    fn vec_dedup_removes_consecutive_repeats_only() {
        let mut v: Vec<u32> = Vec::new();
        v.extend_from_slice(&[1, 1, 2, 1, 3, 3, 3, 2, 2]).unwrap();
        v.dedup();
        assert_eq!(&v[..], &[1, 2, 1, 3, 2]);
        v.dedup();
        assert_eq!(&v[..], &[1, 2, 1, 3, 2]);
        let mut e: Vec<u32> = Vec::new();
        e.dedup();
        assert!(e.is_empty());
        e.extend_from_slice(&[4, 4, 4]).unwrap();
        e.dedup();
        assert_eq!(&e[..], &[4]);
        // The same as std's on every short vector over a small alphabet.
        for n in 0..7u32 {
            for code in 0..3u32.pow(n) {
                // `code`'s base-3 digits.
                let xs: std::vec::Vec<u32> = (0..n).map(|k| code / 3u32.pow(k) % 3).collect();
                let mut v: Vec<u32> = Vec::new();
                v.extend_from_slice(&xs).unwrap();
                let mut want = xs.clone();
                want.dedup();
                v.dedup();
                assert_eq!(&v[..], &want[..], "{xs:?}");
                let mut v: Vec<u32> = Vec::new();
                v.extend_from_slice(&xs).unwrap();
                let mut want = xs.clone();
                want.retain(|&x| x != 1);
                v.retain(|&x| x != 1);
                assert_eq!(&v[..], &want[..], "{xs:?}");
            }
        }
    }

    #[test]
    fn file_dev_reads_whole_sectors_in_range() {
        let dir = std::env::temp_dir().join(std::format!("bch-filedev-{}", std::process::id()));
        std::fs::write(&dir, [7u8; 4096]).unwrap();
        let dev = FileDev::open(dir.to_str().unwrap()).unwrap();
        assert_eq!(dev.nr_sectors(), 8);
        let mut buf = [0u8; 1024];
        dev.read_sectors(6, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 7));
        assert_eq!(dev.read_sectors(7, &mut buf), Err(Errno::EIO));
        assert_eq!(dev.read_sectors(0, &mut buf[..100]), Err(Errno::EINVAL));
        // Opened read-only: writes are refused, flushes have nothing to do.
        assert_eq!(dev.write_sectors(0, &[0; 512], WriteFlags::NONE), Err(Errno::EROFS));
        assert_eq!(dev.flush(), Ok(()));
        std::fs::remove_file(dir).unwrap();
    }

    #[test]
    fn file_dev_writes_and_flushes() {
        let path = std::env::temp_dir().join(std::format!("bch-filedev-rw-{}", std::process::id()));
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let dev = FileDev::open_rw(path.to_str().unwrap()).unwrap();
        for (i, flags) in [WriteFlags::NONE, WriteFlags::FLUSH_FUA, WriteFlags { preflush: true, fua: false }, WriteFlags { preflush: false, fua: true }]
            .into_iter()
            .enumerate()
        {
            dev.write_sectors(i as u64 * 2, &[i as u8 + 1; 1024], flags).unwrap();
        }
        dev.flush().unwrap();
        let mut buf = [0u8; 4096];
        dev.read_sectors(0, &mut buf).unwrap();
        for i in 0..4 {
            assert!(buf[i * 1024..][..1024].iter().all(|&b| b == i as u8 + 1), "write {i}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), buf);
        // Past the end, ragged lengths.
        assert_eq!(dev.write_sectors(7, &[0; 1024], WriteFlags::NONE), Err(Errno::EIO));
        assert_eq!(dev.write_sectors(u64::MAX, &[0; 512], WriteFlags::NONE), Err(Errno::EIO));
        assert_eq!(dev.write_sectors(0, &[0; 100], WriteFlags::NONE), Err(Errno::EINVAL));
        // The file did not grow.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
        std::fs::remove_file(path).unwrap();
    }
}
