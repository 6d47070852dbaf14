// SPDX-License-Identifier: GPL-2.0
//! A recording block device for crash tests (host only).
//!
//! [`RecDev`] is an in-memory image that implements [`BlockDev`] and logs
//! every write (sector, data, [`WriteFlags`]) and every flush, in the order
//! they completed.  It models a device with a volatile write cache, as
//! `Documentation/block/writeback_cache_control.rst` describes one:
//!
//! * a completed write is *stable* (survives power loss) once a later
//!   flush completes, or at once if it was [`WriteFlags::fua`];
//! * a [`WriteFlags::preflush`] write first makes every write completed
//!   before it stable (the write itself is stable only if also FUA);
//! * a completed write that is not stable yet may or may not have reached
//!   the media, in whole or in part, in any order.
//!
//! [`RecDev::crash_image`] gives what a crash right after a given op could
//! leave on the media: every stable write, and of the writes that were not
//! stable, all of them, none, or a seeded random choice of their 512-byte
//! sectors applied in a seeded random order (torn multi-sector writes, and
//! one unstable write landing over a later one, included).  An unstable
//! write never undoes a stable one: a sector's stable contents can only be
//! replaced by an unstable write issued *after* the stable write there.
//!
//! Faults can be injected ([`Faults`]): fail one write or every write from
//! some point on with `EIO`, or fail flushes.  A failed op is logged (with
//! its error) but changes nothing: its data is not applied and a failed
//! flush makes nothing stable.
//!
//! Images are [`MemImage`]s: copy-on-write chunks behind reference counts,
//! so taking one out of the device (or a crash image) copies no data until
//! one side writes.  A `MemImage` is itself a read-only [`BlockDev`], so a
//! crash image can be opened directly (`bcachefs::Fs::open`).
//!
//! This is a host tool: it uses `std` and panics on misuse (an op index
//! out of range), as indexing does.  Only the `BlockDev` methods return
//! errors, with the codes the trait documents.

extern crate std;

use core::fmt;
use std::collections::{HashMap, HashSet};
use std::string::String;
use std::sync::{Arc, Mutex, MutexGuard};
use std::vec::Vec;

use super::{BlockDev, WriteFlags, SECTOR_SIZE};
use crate::errcode::Errno;

/// Sectors per chunk of a [`MemImage`]: 64 KiB.
const CHUNK_SECTORS: u64 = 128;
const CHUNK_BYTES: usize = CHUNK_SECTORS as usize * SECTOR_SIZE;

/// A disk image in memory, in copy-on-write chunks: cloning it is cheap
/// (one reference count per 64 KiB chunk), and a chunk is copied only when
/// one of the clones writes to it.  Chunks never written read as zeroes
/// and take no memory.
///
/// Implements [`BlockDev`] read-only (writes fail with `EROFS`, the trait's
/// default); [`MemImage::write`] is the inherent way to change it.
#[derive(Clone)]
pub struct MemImage {
    /// `None`: all zeroes.  Every `Some` holds exactly `CHUNK_BYTES`.
    chunks: Vec<Option<Arc<Vec<u8>>>>,
    nr_sectors: u64,
}

impl MemImage {
    /// An image of `nr_sectors` zeroed sectors.
    pub fn zeroed(nr_sectors: u64) -> MemImage {
        let n = usize::try_from(nr_sectors.div_ceil(CHUNK_SECTORS)).expect("image too large for memory");
        MemImage { chunks: std::vec![None; n], nr_sectors }
    }

    /// An image holding `bytes`, its last sector zero-padded if `bytes`
    /// does not end on a sector boundary.
    pub fn from_bytes(bytes: &[u8]) -> MemImage {
        let mut img = MemImage::zeroed(bytes.len().div_ceil(SECTOR_SIZE) as u64);
        for (i, c) in bytes.chunks(CHUNK_BYTES).enumerate() {
            if c.iter().any(|&b| b != 0) {
                let mut v = std::vec![0u8; CHUNK_BYTES];
                v[..c.len()].copy_from_slice(c);
                img.chunks[i] = Some(Arc::new(v));
            }
        }
        img
    }

    /// Size in 512-byte sectors.
    pub fn nr_sectors(&self) -> u64 {
        self.nr_sectors
    }

    /// `EINVAL` for a length that is not whole sectors, `EIO` for a range
    /// past the end.
    fn check(&self, sector: u64, bytes: usize) -> Result<(), Errno> {
        if bytes % SECTOR_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        match sector.checked_add((bytes / SECTOR_SIZE) as u64) {
            Some(end) if end <= self.nr_sectors => Ok(()),
            _ => Err(Errno::EIO),
        }
    }

    /// Calls `f(chunk index, offset in the chunk, range of the buffer)` for
    /// each chunk the byte range `[sector * 512, + bytes)` touches.
    fn for_each_piece(sector: u64, bytes: usize, mut f: impl FnMut(usize, usize, core::ops::Range<usize>)) {
        let mut at = sector as usize * SECTOR_SIZE;
        let mut done = 0;
        while done < bytes {
            let (ci, off) = (at / CHUNK_BYTES, at % CHUNK_BYTES);
            let n = (CHUNK_BYTES - off).min(bytes - done);
            f(ci, off, done..done + n);
            done += n;
            at += n;
        }
    }

    /// Reads `buf.len()` bytes from `sector`.
    ///
    /// Errors: `EINVAL` (not whole sectors), `EIO` (past the end).
    pub fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.check(sector, buf.len())?;
        Self::for_each_piece(sector, buf.len(), |ci, off, r| match &self.chunks[ci] {
            Some(c) => buf[r.clone()].copy_from_slice(&c[off..off + r.len()]),
            None => buf[r].fill(0),
        });
        Ok(())
    }

    /// Writes `data` at `sector`, copying the chunks it touches if they are
    /// shared with another image.
    ///
    /// Errors: `EINVAL` (not whole sectors), `EIO` (past the end).
    pub fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), Errno> {
        self.check(sector, data.len())?;
        let chunks = &mut self.chunks;
        Self::for_each_piece(sector, data.len(), |ci, off, r| {
            let c = chunks[ci].get_or_insert_with(|| Arc::new(std::vec![0u8; CHUNK_BYTES]));
            Arc::make_mut(c)[off..off + r.len()].copy_from_slice(&data[r]);
        });
        Ok(())
    }

    /// The whole image as one vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let len = self.nr_sectors as usize * SECTOR_SIZE;
        let mut v = std::vec![0u8; len];
        for (i, c) in self.chunks.iter().enumerate() {
            if let Some(c) = c {
                let s = i * CHUNK_BYTES;
                let n = CHUNK_BYTES.min(len - s);
                v[s..s + n].copy_from_slice(&c[..n]);
            }
        }
        v
    }
}

impl PartialEq for MemImage {
    fn eq(&self, o: &MemImage) -> bool {
        static ZERO: [u8; CHUNK_BYTES] = [0; CHUNK_BYTES];
        self.nr_sectors == o.nr_sectors
            && self.chunks.iter().zip(&o.chunks).all(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                (Some(c), None) | (None, Some(c)) => c[..] == ZERO[..],
                (None, None) => true,
            })
    }
}

impl Eq for MemImage {}

impl fmt::Debug for MemImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stored = self.chunks.iter().filter(|c| c.is_some()).count();
        write!(f, "MemImage {{ {} sectors, {stored} of {} chunks stored }}", self.nr_sectors, self.chunks.len())
    }
}

impl BlockDev for MemImage {
    fn name(&self) -> &str {
        "memimage"
    }

    fn nr_sectors(&self) -> u64 {
        self.nr_sectors
    }

    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.read(sector, buf)
    }
}

/// One op in a [`RecDev`]'s log, in completion order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecOp {
    /// A write of `data` (whole sectors) at `sector`.
    Write {
        /// First sector written.
        sector: u64,
        /// The bytes written (shared, not copied, when the log is cloned).
        data: Arc<[u8]>,
        /// PREFLUSH / FUA.
        flags: WriteFlags,
        /// What the write returned; an `Err` changed nothing.
        result: Result<(), Errno>,
    },
    /// A cache flush.
    Flush {
        /// What the flush returned; an `Err` made nothing stable.
        result: Result<(), Errno>,
    },
}

impl RecOp {
    /// Whether the op succeeded.
    pub fn ok(&self) -> bool {
        match self {
            RecOp::Write { result, .. } | RecOp::Flush { result } => result.is_ok(),
        }
    }

    /// Whether the op, once completed, made every op before it stable: a
    /// successful flush or a successful PREFLUSH write.
    pub fn is_flush_point(&self) -> bool {
        match self {
            RecOp::Write { flags, result, .. } => flags.preflush && result.is_ok(),
            RecOp::Flush { result } => result.is_ok(),
        }
    }
}

impl fmt::Display for RecOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecOp::Write { sector, data, flags, result } => {
                write!(f, "write sector {sector} sectors {}", data.len() / SECTOR_SIZE)?;
                if flags.preflush {
                    f.write_str(" preflush")?;
                }
                if flags.fua {
                    f.write_str(" fua")?;
                }
                if let Err(e) = result {
                    write!(f, " failed {e}")?;
                }
                Ok(())
            }
            RecOp::Flush { result: Ok(()) } => f.write_str("flush"),
            RecOp::Flush { result: Err(e) } => write!(f, "flush failed {e}"),
        }
    }
}

/// Faults a [`RecDev`] injects.  Writes are counted from 0 over every
/// write the device was asked to do (failed ones included) since it was
/// made; requests with a bad length or range are refused before they
/// count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Fail the write with this number (0: the first) with `EIO`.
    pub fail_write: Option<u64>,
    /// Fail every write from this number on with `EIO` (`Some(0)`: all).
    pub fail_writes_from: Option<u64>,
    /// Fail every flush with `EIO`, and every PREFLUSH write (its flush
    /// fails before the data is written).
    pub fail_flushes: bool,
}

/// What a [`RecDev`] has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecStats {
    /// Successful reads.
    pub reads: u64,
    /// Sectors read.
    pub sectors_read: u64,
    /// Writes asked for (failed ones included).
    pub writes: u64,
    /// Sectors written by successful writes.
    pub sectors_written: u64,
    /// Successful writes with PREFLUSH.
    pub preflush_writes: u64,
    /// Successful writes with FUA.
    pub fua_writes: u64,
    /// Flushes asked for (failed ones included).
    pub flushes: u64,
    /// Writes failed by fault injection.
    pub failed_writes: u64,
    /// Flushes (and PREFLUSH writes) failed by fault injection.
    pub failed_flushes: u64,
}

/// What a crash does to the writes that were completed but not stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPolicy {
    /// They all reached the media, in order: the image is what reads saw
    /// right after the op.
    KeepAll,
    /// None did: only stable writes survive.
    DropAll,
    /// Each of their 512-byte sectors reached the media or not, chosen at
    /// random; those that did landed in a random order.  The same seed
    /// gives the same image.
    Random {
        /// Seed of the choice and of the order.
        seed: u64,
    },
}

struct RecState {
    /// The image before the first logged op (all of it stable).
    base: MemImage,
    /// Every completed write applied: what reads return.
    cur: MemImage,
    ops: Vec<RecOp>,
    faults: Faults,
    stats: RecStats,
}

/// A recording block device (see the module notes): an in-memory image
/// that logs every write and flush and can show what a crash after any op
/// could have left on the media.
///
/// `Sync`: every method takes `&self`, and the state is behind a mutex, so
/// several threads may write and flush concurrently; the log records the
/// order in which their ops completed.
pub struct RecDev {
    name: String,
    nr_sectors: u64,
    st: Mutex<RecState>,
}

/// A small seeded generator (SplitMix64): crash images must be the same
/// for the same seed on every host.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the bias of the modulo is irrelevant here.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One sector of an unstable write: (op index, sector, offset in the data).
type Piece = (usize, u64, usize);

impl RecDev {
    /// A device over `image`, which counts as stable.
    pub fn new(name: &str, image: MemImage) -> RecDev {
        RecDev {
            name: name.into(),
            nr_sectors: image.nr_sectors(),
            st: Mutex::new(RecState {
                base: image.clone(),
                cur: image,
                ops: Vec::new(),
                faults: Faults::default(),
                stats: RecStats::default(),
            }),
        }
    }

    /// A device of `nr_sectors` zeroed sectors.
    pub fn zeroed(name: &str, nr_sectors: u64) -> RecDev {
        RecDev::new(name, MemImage::zeroed(nr_sectors))
    }

    fn lock(&self) -> MutexGuard<'_, RecState> {
        // A panicking test thread leaves consistent state behind: every
        // update below completes before the guard drops.
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the faults to inject from now on (replacing the previous ones).
    pub fn set_faults(&self, f: Faults) {
        self.lock().faults = f;
    }

    /// The faults being injected.
    pub fn faults(&self) -> Faults {
        self.lock().faults
    }

    /// The counters.
    pub fn stats(&self) -> RecStats {
        self.lock().stats
    }

    /// The log: every op, in completion order.  Clones share the written
    /// data with the device.
    pub fn ops(&self) -> Vec<RecOp> {
        self.lock().ops.clone()
    }

    /// Number of ops logged.
    pub fn nr_ops(&self) -> usize {
        self.lock().ops.len()
    }

    /// Indices of the ops that made everything before them stable (see
    /// [`RecOp::is_flush_point`]), in order.
    pub fn flush_points(&self) -> Vec<usize> {
        self.lock().ops.iter().enumerate().filter(|(_, o)| o.is_flush_point()).map(|(i, _)| i).collect()
    }

    /// The image as it was before the first logged op: what a crash
    /// before any op leaves.
    pub fn base_image(&self) -> MemImage {
        self.lock().base.clone()
    }

    /// The image as reads see it now: every completed write applied.
    pub fn image(&self) -> MemImage {
        self.lock().cur.clone()
    }

    /// Makes the current image the new base and empties the log, as if
    /// the device had been flushed and the recording restarted.  The
    /// counters and faults stay.
    pub fn checkpoint(&self) {
        let mut st = self.lock();
        st.base = st.cur.clone();
        st.ops.clear();
    }

    /// Whether write `j` (of `ops`) is stable once op `at_op` completed:
    /// successful, and FUA or followed by a flush point no later than
    /// `at_op`.  `last_flush` is the index of the last flush point at or
    /// before `at_op`.
    fn stable(ops: &[RecOp], j: usize, last_flush: Option<usize>) -> bool {
        match &ops[j] {
            RecOp::Write { flags, result: Ok(()), .. } => flags.fua || last_flush.is_some_and(|f| j < f),
            _ => false,
        }
    }

    /// Indices of the writes completed by `at_op` (included) that are not
    /// stable then: what a crash right after `at_op` may lose.
    ///
    /// # Panics
    ///
    /// If `at_op` is not the index of a logged op.
    pub fn unstable_writes(&self, at_op: usize) -> Vec<usize> {
        let st = self.lock();
        let ops = &st.ops[..=at_op];
        let last_flush = ops.iter().rposition(RecOp::is_flush_point);
        (0..ops.len())
            .filter(|&j| matches!(ops[j], RecOp::Write { result: Ok(()), .. }) && !Self::stable(ops, j, last_flush))
            .collect()
    }

    /// What a crash right after op `at_op` (ops `0..=at_op` completed,
    /// none after) could leave on the media, with `policy` deciding the
    /// fate of the writes that were not stable yet (see the module notes).
    ///
    /// # Panics
    ///
    /// If `at_op` is not the index of a logged op.
    pub fn crash_image(&self, at_op: usize, policy: CrashPolicy) -> MemImage {
        let (mut img, ops) = {
            let st = self.lock();
            (st.base.clone(), st.ops[..=at_op].to_vec())
        };
        let last_flush = ops.iter().rposition(RecOp::is_flush_point);
        // The unstable writes, cut into sectors.
        let mut pieces: Vec<Piece> = Vec::new();
        for (j, op) in ops.iter().enumerate() {
            if let RecOp::Write { sector, data, result: Ok(()), .. } = op {
                if !Self::stable(&ops, j, last_flush) {
                    for s in 0..data.len() / SECTOR_SIZE {
                        pieces.push((j, sector + s as u64, s * SECTOR_SIZE));
                    }
                }
            }
        }
        // The stable writes, in order; for the sectors an unstable write
        // touches, remember the last stable write there.
        let touched: HashSet<u64> = pieces.iter().map(|p| p.1).collect();
        let mut last_stable: HashMap<u64, usize> = HashMap::new();
        for (j, op) in ops.iter().enumerate() {
            if let RecOp::Write { sector, data, .. } = op {
                if Self::stable(&ops, j, last_flush) {
                    img.write(*sector, data).expect("logged writes fit the device");
                    for s in 0..(data.len() / SECTOR_SIZE) as u64 {
                        if touched.contains(&(sector + s)) {
                            last_stable.insert(sector + s, j);
                        }
                    }
                }
            }
        }
        // An unstable write older than the stable one at its sector was
        // overwritten before the stable one became stable.
        pieces.retain(|&(j, s, _)| last_stable.get(&s).map_or(true, |&st| j > st));
        match policy {
            CrashPolicy::KeepAll => {}
            CrashPolicy::DropAll => pieces.clear(),
            CrashPolicy::Random { seed } => {
                let mut rng = SplitMix64(seed);
                pieces.retain(|_| rng.next() & 1 == 1);
                for i in (1..pieces.len()).rev() {
                    pieces.swap(i, rng.below(i + 1));
                }
            }
        }
        for (j, s, off) in pieces {
            if let RecOp::Write { data, .. } = &ops[j] {
                img.write(s, &data[off..off + SECTOR_SIZE]).expect("logged writes fit the device");
            }
        }
        img
    }

    /// Whether write number `n` is to fail, by the faults set.
    fn write_faults(f: &Faults, n: u64, flags: WriteFlags) -> bool {
        f.fail_write == Some(n) || f.fail_writes_from.is_some_and(|m| n >= m) || (flags.preflush && f.fail_flushes)
    }
}

impl fmt::Debug for RecDev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        write!(f, "RecDev {{ {:?}, {} sectors, {} ops, {:?} }}", self.name, self.nr_sectors, st.ops.len(), st.stats)
    }
}

impl BlockDev for RecDev {
    fn name(&self) -> &str {
        &self.name
    }

    fn nr_sectors(&self) -> u64 {
        self.nr_sectors
    }

    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut st = self.lock();
        st.cur.read(sector, buf)?;
        st.stats.reads += 1;
        st.stats.sectors_read += (buf.len() / SECTOR_SIZE) as u64;
        Ok(())
    }

    fn write_sectors(&self, sector: u64, buf: &[u8], flags: WriteFlags) -> Result<(), Errno> {
        let mut st = self.lock();
        st.cur.check(sector, buf.len())?;
        let n = st.stats.writes;
        st.stats.writes += 1;
        let result = if Self::write_faults(&st.faults, n, flags) {
            st.stats.failed_writes += 1;
            if flags.preflush && st.faults.fail_flushes {
                st.stats.failed_flushes += 1;
            }
            Err(Errno::EIO)
        } else {
            st.cur.write(sector, buf)?;
            st.stats.sectors_written += (buf.len() / SECTOR_SIZE) as u64;
            st.stats.preflush_writes += u64::from(flags.preflush);
            st.stats.fua_writes += u64::from(flags.fua);
            Ok(())
        };
        st.ops.push(RecOp::Write { sector, data: Arc::from(buf), flags, result });
        result
    }

    fn flush(&self) -> Result<(), Errno> {
        let mut st = self.lock();
        st.stats.flushes += 1;
        let result = if st.faults.fail_flushes {
            st.stats.failed_flushes += 1;
            Err(Errno::EIO)
        } else {
            Ok(())
        };
        st.ops.push(RecOp::Flush { result });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::format;
    use std::string::ToString;

    const S: usize = SECTOR_SIZE;

    /// `n` sectors of `b`.
    fn fill(b: u8, n: usize) -> Vec<u8> {
        std::vec![b; n * S]
    }

    fn sector_of(img: &MemImage, s: u64) -> Vec<u8> {
        let mut b = fill(0, 1);
        img.read(s, &mut b).unwrap();
        b
    }

    fn byte_at(img: &MemImage, s: u64) -> u8 {
        let b = sector_of(img, s);
        assert!(b.iter().all(|&x| x == b[0]), "sector {s} is not uniform");
        b[0]
    }

    #[test]
    fn mem_image_is_copy_on_write() {
        let mut a = MemImage::zeroed(1000);
        assert_eq!(a.nr_sectors(), 1000);
        a.write(127, &fill(1, 2)).unwrap(); // across the first chunk boundary
        let b = a.clone();
        a.write(128, &fill(2, 1)).unwrap();
        assert_eq!((byte_at(&a, 127), byte_at(&a, 128)), (1, 2));
        assert_eq!((byte_at(&b, 127), byte_at(&b, 128)), (1, 1));
        assert_ne!(a, b);
        assert_eq!(a.read(999, &mut fill(0, 2)), Err(Errno::EIO));
        assert_eq!(a.write(0, &[0; 100]), Err(Errno::EINVAL));
        assert_eq!(a.write(u64::MAX, &fill(0, 1)), Err(Errno::EIO));
        // Round trip through bytes; a stored chunk of zeroes equals none.
        let v = a.to_vec();
        assert_eq!(v.len(), 1000 * S);
        assert_eq!(MemImage::from_bytes(&v), a);
        let mut z = MemImage::zeroed(1000);
        z.write(500, &fill(0, 1)).unwrap();
        assert_eq!(z, MemImage::zeroed(1000));
        // A ragged length is padded to a whole sector.
        let r = MemImage::from_bytes(&[5; 700]);
        assert_eq!(r.nr_sectors(), 2);
        assert_eq!(&sector_of(&r, 1)[..188], &[5; 188][..]);
        assert!(sector_of(&r, 1)[188..].iter().all(|&b| b == 0));
        assert_eq!(format!("{r:?}"), "MemImage { 2 sectors, 1 of 1 chunks stored }");
    }

    #[test]
    fn reads_see_every_completed_write() {
        let d = RecDev::zeroed("rec", 64);
        d.write_sectors(4, &fill(7, 3), WriteFlags::NONE).unwrap();
        let mut b = fill(0, 3);
        d.read_sectors(4, &mut b).unwrap();
        assert_eq!(b, fill(7, 3));
        assert_eq!(d.write_sectors(63, &fill(1, 2), WriteFlags::NONE), Err(Errno::EIO));
        assert_eq!(d.write_sectors(0, &[1; 10], WriteFlags::NONE), Err(Errno::EINVAL));
        // Refused requests are not logged and not counted.
        assert_eq!(d.nr_ops(), 1);
        let st = d.stats();
        assert_eq!((st.writes, st.sectors_written, st.reads, st.sectors_read), (1, 3, 1, 3));
    }

    #[test]
    fn flush_makes_earlier_writes_stable() {
        let d = RecDev::zeroed("rec", 64);
        d.write_sectors(0, &fill(1, 1), WriteFlags::NONE).unwrap(); // 0
        d.write_sectors(1, &fill(2, 1), WriteFlags::NONE).unwrap(); // 1
        d.flush().unwrap(); // 2
        d.write_sectors(2, &fill(3, 1), WriteFlags::NONE).unwrap(); // 3
        assert_eq!(d.flush_points(), [2]);
        assert_eq!(d.unstable_writes(1), [0, 1]);
        assert_eq!(d.unstable_writes(3), [3]);
        let lost = d.crash_image(1, CrashPolicy::DropAll);
        assert_eq!(lost, MemImage::zeroed(64));
        let kept = d.crash_image(3, CrashPolicy::DropAll);
        assert_eq!((byte_at(&kept, 0), byte_at(&kept, 1), byte_at(&kept, 2)), (1, 2, 0));
        let all = d.crash_image(3, CrashPolicy::KeepAll);
        assert_eq!(all, d.image());
        assert_eq!(d.base_image(), MemImage::zeroed(64));
    }

    #[test]
    fn fua_is_stable_at_once_and_preflush_covers_what_came_before() {
        let d = RecDev::zeroed("rec", 64);
        d.write_sectors(0, &fill(1, 1), WriteFlags::NONE).unwrap(); // 0
        d.write_sectors(1, &fill(2, 1), WriteFlags { preflush: false, fua: true }).unwrap(); // 1
        let c = d.crash_image(1, CrashPolicy::DropAll);
        assert_eq!((byte_at(&c, 0), byte_at(&c, 1)), (0, 2));
        // PREFLUSH without FUA: what came before is stable, this write not.
        d.write_sectors(2, &fill(3, 1), WriteFlags { preflush: true, fua: false }).unwrap(); // 2
        let c = d.crash_image(2, CrashPolicy::DropAll);
        assert_eq!((byte_at(&c, 0), byte_at(&c, 1), byte_at(&c, 2)), (1, 2, 0));
        // PREFLUSH | FUA, as a journal flush write: it and all before it.
        d.write_sectors(3, &fill(4, 1), WriteFlags::NONE).unwrap(); // 3
        d.write_sectors(4, &fill(5, 1), WriteFlags::FLUSH_FUA).unwrap(); // 4
        let c = d.crash_image(4, CrashPolicy::DropAll);
        assert_eq!((0..5).map(|s| byte_at(&c, s)).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(d.flush_points(), [2, 4]);
        let st = d.stats();
        assert_eq!((st.preflush_writes, st.fua_writes, st.flushes), (2, 2, 0));
    }

    #[test]
    fn unstable_writes_never_undo_stable_ones() {
        let d = RecDev::zeroed("rec", 8);
        d.write_sectors(0, &fill(1, 2), WriteFlags::NONE).unwrap(); // 0: unstable, then overwritten
        d.write_sectors(0, &fill(2, 1), WriteFlags { preflush: false, fua: true }).unwrap(); // 1: stable
        for seed in 0..64 {
            let c = d.crash_image(1, CrashPolicy::Random { seed });
            // Sector 0 is the FUA write's whatever happens; sector 1 is the
            // unstable write's or still zero.
            assert_eq!(byte_at(&c, 0), 2);
            assert!(matches!(byte_at(&c, 1), 0 | 1));
        }
        // A later unstable write may replace the stable data.
        d.write_sectors(0, &fill(3, 1), WriteFlags::NONE).unwrap(); // 2
        let seen: HashSet<u8> = (0..64).map(|seed| byte_at(&d.crash_image(2, CrashPolicy::Random { seed }), 0)).collect();
        assert_eq!(seen, HashSet::from([2, 3]));
    }

    #[test]
    fn random_crashes_tear_writes_and_repeat_by_seed() {
        let d = RecDev::zeroed("rec", 64);
        d.write_sectors(0, &fill(9, 16), WriteFlags::NONE).unwrap();
        let a = d.crash_image(0, CrashPolicy::Random { seed: 42 });
        assert_eq!(a, d.crash_image(0, CrashPolicy::Random { seed: 42 }));
        let kept = |c: &MemImage| (0..16).filter(|&s| byte_at(c, s) == 9).count();
        // Some seed keeps part of the write (torn), others all or nothing.
        let counts: HashSet<usize> = (0..32).map(|seed| kept(&d.crash_image(0, CrashPolicy::Random { seed }))).collect();
        assert!(counts.iter().any(|&n| n > 0 && n < 16), "{counts:?}");
        assert!(counts.len() > 3, "{counts:?}");
    }

    #[test]
    fn random_order_lets_either_overlapping_write_win() {
        let d = RecDev::zeroed("rec", 8);
        d.write_sectors(0, &fill(1, 1), WriteFlags::NONE).unwrap();
        d.write_sectors(0, &fill(2, 1), WriteFlags::NONE).unwrap();
        let seen: HashSet<u8> = (0..64).map(|seed| byte_at(&d.crash_image(1, CrashPolicy::Random { seed }), 0)).collect();
        assert_eq!(seen, HashSet::from([0, 1, 2]));
        assert_eq!(byte_at(&d.crash_image(1, CrashPolicy::KeepAll), 0), 2);
    }

    #[test]
    fn injected_faults() {
        let d = RecDev::zeroed("rec", 16);
        d.set_faults(Faults { fail_write: Some(1), ..Faults::default() });
        d.write_sectors(0, &fill(1, 1), WriteFlags::NONE).unwrap();
        assert_eq!(d.write_sectors(1, &fill(2, 1), WriteFlags::NONE), Err(Errno::EIO));
        d.write_sectors(2, &fill(3, 1), WriteFlags::NONE).unwrap();
        assert_eq!(byte_at(&d.image(), 1), 0, "a failed write changes nothing");
        assert!(!d.ops()[1].ok());
        assert_eq!(d.ops()[1].to_string(), "write sector 1 sectors 1 failed EIO");
        // Every write from number 4 on.
        d.set_faults(Faults { fail_writes_from: Some(4), ..Faults::default() });
        d.write_sectors(3, &fill(4, 1), WriteFlags::NONE).unwrap();
        for s in 4..8 {
            assert_eq!(d.write_sectors(s, &fill(5, 1), WriteFlags::FLUSH_FUA), Err(Errno::EIO));
        }
        assert!(d.flush_points().is_empty(), "failed PREFLUSH writes are no flush points");
        // Flushes: a failed one makes nothing stable.
        d.set_faults(Faults { fail_flushes: true, ..Faults::default() });
        assert!(d.faults().fail_flushes);
        assert_eq!(d.flush(), Err(Errno::EIO));
        assert_eq!(d.write_sectors(9, &fill(6, 1), WriteFlags::FLUSH_FUA), Err(Errno::EIO));
        d.write_sectors(10, &fill(7, 1), WriteFlags { preflush: false, fua: true }).unwrap();
        let last = d.nr_ops() - 1;
        assert_eq!(d.unstable_writes(last), [0, 2, 3]);
        let c = d.crash_image(last, CrashPolicy::DropAll);
        assert_eq!((byte_at(&c, 0), byte_at(&c, 10)), (0, 7));
        d.set_faults(Faults::default());
        d.flush().unwrap();
        let c = d.crash_image(d.nr_ops() - 1, CrashPolicy::DropAll);
        assert_eq!((0..4).map(|s| byte_at(&c, s)).collect::<Vec<_>>(), [1, 0, 3, 4]);
        let st = d.stats();
        assert_eq!((st.writes, st.failed_writes, st.flushes, st.failed_flushes), (10, 6, 2, 2));
        assert_eq!(d.ops().last().unwrap().to_string(), "flush");
    }

    #[test]
    fn checkpoint_starts_a_new_recording() {
        let d = RecDev::new("rec", MemImage::from_bytes(&fill(1, 4)));
        d.write_sectors(0, &fill(2, 1), WriteFlags::NONE).unwrap();
        d.checkpoint();
        assert_eq!(d.nr_ops(), 0);
        assert_eq!(byte_at(&d.base_image(), 0), 2);
        d.write_sectors(1, &fill(3, 1), WriteFlags::NONE).unwrap();
        let c = d.crash_image(0, CrashPolicy::DropAll);
        assert_eq!((0..4).map(|s| byte_at(&c, s)).collect::<Vec<_>>(), [2, 1, 1, 1]);
        assert_eq!(d.stats().writes, 2);
        assert!(format!("{d:?}").starts_with("RecDev { \"rec\", 4 sectors, 1 ops"));
    }

    #[test]
    fn concurrent_writers_are_all_logged() {
        let d = RecDev::zeroed("rec", 4096);
        fn sync<T: Sync + Send>(_: &T) {}
        sync(&d);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let d = &d;
                s.spawn(move || {
                    for i in 0..100u64 {
                        d.write_sectors(t * 1000 + i, &fill(t as u8 + 1, 1), WriteFlags::NONE).unwrap();
                        if i % 10 == 0 {
                            d.flush().unwrap();
                        }
                    }
                });
            }
        });
        assert_eq!(d.nr_ops(), 440);
        assert_eq!(d.crash_image(439, CrashPolicy::KeepAll), d.image());
        let st = d.stats();
        assert_eq!((st.writes, st.flushes), (400, 40));
    }

    #[test]
    #[should_panic]
    fn crash_after_an_op_that_never_was_panics() {
        RecDev::zeroed("rec", 8).crash_image(0, CrashPolicy::KeepAll);
    }

    /// An op of the generated streams: small writes over 16 sectors.
    #[derive(Clone, Debug)]
    enum Gen {
        Write { sector: u64, sectors: usize, preflush: bool, fua: bool },
        Flush,
    }

    fn gen_op() -> impl Strategy<Value = Gen> {
        prop_oneof![
            4 => (0u64..16, 1usize..5, any::<bool>(), any::<bool>())
                .prop_map(|(sector, sectors, preflush, fua)| Gen::Write { sector: sector.min(16 - sectors as u64), sectors, preflush, fua }),
            1 => Just(Gen::Flush),
        ]
    }

    /// The reference model: for each sector, the op indices of the writes to
    /// it, in order, and whether each was stable after op `at`.
    fn model(ops: &[Gen], at: usize) -> Vec<(Option<usize>, Vec<usize>)> {
        let mut last_flush = None;
        for (i, o) in ops[..=at].iter().enumerate() {
            match o {
                Gen::Flush | Gen::Write { preflush: true, .. } => last_flush = Some(i),
                _ => {}
            }
        }
        (0..16u64)
            .map(|s| {
                let writes: Vec<(usize, bool)> = ops[..=at]
                    .iter()
                    .enumerate()
                    .filter_map(|(i, o)| match *o {
                        Gen::Write { sector, sectors, fua, .. } if sector <= s && s < sector + sectors as u64 => {
                            Some((i, fua || last_flush.is_some_and(|f| i < f)))
                        }
                        _ => None,
                    })
                    .collect();
                let last_stable = writes.iter().rev().find(|w| w.1).map(|w| w.0);
                let newer_unstable = writes.iter().filter(|w| !w.1 && last_stable.map_or(true, |l| w.0 > l)).map(|w| w.0).collect();
                (last_stable, newer_unstable)
            })
            .collect()
    }

    /// Byte written by op `i` (0 means "never written").
    fn tag(i: usize) -> u8 {
        (i % 255) as u8 + 1
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Every crash image, under every policy, agrees with the model:
        /// each sector holds its last stable write (or the base), or one of
        /// the unstable writes issued after that; `DropAll` the former
        /// exactly, `KeepAll` the newest write exactly.
        #[test]
        fn crash_images_follow_the_cache_model(ops in prop::collection::vec(gen_op(), 1..40), seed in any::<u64>()) {
            let d = RecDev::zeroed("rec", 16);
            for (i, o) in ops.iter().enumerate() {
                match *o {
                    Gen::Write { sector, sectors, preflush, fua } => {
                        d.write_sectors(sector, &fill(tag(i), sectors), WriteFlags { preflush, fua }).unwrap()
                    }
                    Gen::Flush => d.flush().unwrap(),
                }
            }
            prop_assert_eq!(d.nr_ops(), ops.len());
            for at in 0..ops.len() {
                let m = model(&ops, at);
                let drop = d.crash_image(at, CrashPolicy::DropAll);
                let keep = d.crash_image(at, CrashPolicy::KeepAll);
                let rnd = d.crash_image(at, CrashPolicy::Random { seed: seed ^ at as u64 });
                for (s, (stable, newer)) in m.iter().enumerate() {
                    let s = s as u64;
                    let base = stable.map_or(0, tag);
                    prop_assert_eq!(byte_at(&drop, s), base, "DropAll, op {}, sector {}", at, s);
                    let newest = newer.last().copied().map_or(base, tag);
                    prop_assert_eq!(byte_at(&keep, s), newest, "KeepAll, op {}, sector {}", at, s);
                    let r = byte_at(&rnd, s);
                    prop_assert!(r == base || newer.iter().any(|&i| tag(i) == r), "Random, op {}, sector {}: {}", at, s, r);
                }
            }
            // Crashing after the last op and keeping everything is what reads see.
            prop_assert_eq!(d.crash_image(ops.len() - 1, CrashPolicy::KeepAll), d.image());
            // At a flush point that is a flush, nothing completed is lost.
            for f in d.flush_points() {
                if matches!(ops[f], Gen::Flush) {
                    prop_assert_eq!(d.crash_image(f, CrashPolicy::DropAll), d.crash_image(f, CrashPolicy::KeepAll));
                }
            }
        }
    }
}
