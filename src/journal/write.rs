// SPDX-License-Identifier: GPL-2.0
//! The journal's write side: entries opened, filled through reservations,
//! closed and written to the journal bucket ring, with the pins and
//! reclaim of [`super::reclaim`].
//!
//! Matches, in `fs/bcachefs`: `journal.c` (`journal_entry_open()`,
//! `__journal_entry_close()`, `__journal_res_get()`,
//! `bch2_journal_flush_seq_async()`, `bch2_fs_journal_start()`,
//! `bch2_fs_journal_stop()`, `bch2_journal_debug_to_text()`), the write
//! half of `journal_io.c` (`bch2_journal_write()`,
//! `bch2_journal_write_pick_flush()`, `bch2_journal_write_prep()`,
//! `journal_write_alloc()`, `journal_write_done()`) and
//! `bch2_journal_super_entries_add_common()` of `sb-clean.c`.
//!
//! # Shape
//!
//! C keeps the reservation state in one atomic word and writes through
//! closures on a workqueue.  Here one [`Mutex`] guards the state
//! (`JournalState`), and writes are synchronous: whoever finds a closed
//! entry with no reservations left ([`JournalSink::res_put`] of the last
//! one, [`JournalSink::flush_seq`], [`Journal::journal_do_work`], a
//! blocking [`JournalSink::res_get`]) writes it, in sequence order, under
//! a second lock (`io`) taken before the state lock and released
//! around nothing but the write itself.  The device write happens with
//! only `io` held, so reservations go on while an entry is written.
//!
//! There is no thread: [`Journal::journal_do_work`] is the step the
//! kernel's delayed work (or a host thread, or a test) calls with the
//! current time; it closes the open entry once `journal_flush_delay` has
//! passed, writes what is ready and runs reclaim.  All times are
//! milliseconds from the caller's clock ([`Journal::set_time`]).
//!
//! # Lock order
//!
//! `io`, then `state`; `extras` (btree roots and the entry hook) is never
//! taken with `state` held.  The [`JournalFlusher`] is called with no
//! journal lock held.
//!
//! # What each written entry holds (6.12)
//!
//! The reservations' entries with empty ones dropped, then a `btree_root`
//! entry for every live root the entry did not already carry
//! (`bch2_btree_roots_to_journal_entries()`), a `datetime` entry, a
//! `usage` entry for `key_version`, two `clock` entries (read, write)
//! (`bch2_journal_super_entries_add_common()`), and whatever the
//! registered [`JsetEntryHook`] adds (accounting); `write_buffer_keys`
//! entries are handed to the hook and written as `btree_keys`, as C does.
//! Each jset is checked as the read side checks it (`jset_validate()`
//! with `WRITE`) before it goes out; a bad one stops the journal instead
//! of reaching the disk.  The header carries
//! `last_seq` (0 for a no-flush write), the metadata version and the
//! checksum of the superblock's `metadata_checksum` type; the entry is
//! zero-padded to a block and placed inside one bucket.

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::{Acquire, Relaxed, Release}};

use super::reclaim::{JournalDevice, JournalFlusher, JournalSpace, PinFifo, SpaceFrom, SPACE_FROM_NAMES};
use super::res::{JournalRes, JournalSink, PinOwner, ResFlags};
use super::types::{
    JournalErr, JournalGeometry, JournalOpts, JournalStart, ENTRY_U64S_RESERVED_BASE, JOURNAL_BUF_NR,
    JOURNAL_ENTRY_SIZE_MAX, JOURNAL_ENTRY_SIZE_MIN, JSET_U64S,
};
use super::NR_BTREES;
use crate::checksum;
use crate::errcode::{BchError, Errno, Restart};
use crate::format::bkey::{Bkey, BtreeIdName, BKEY_BYTES};
use crate::format::jset::{
    jset_entry_header, scan_bucket, EntryType, Jset, JsetHeader, FS_USAGE_TYPE_NAMES, JSET_BYTES, JSET_ENTRY_BYTES,
};
use crate::format::val::FsCtx;
use crate::platform::{log, Arc, BlockDev, Mutex, Vec, WriteFlags, SECTOR_SIZE};
use crate::util::time_stats::TimeStats;

/// `BCH_FS_USAGE_key_version`: the usage entry every jset carries.
const FS_USAGE_KEY_VERSION: u8 = 2;
const _: () = assert!(FS_USAGE_TYPE_NAMES.len() == 3);

/// Adds per-entry jset entries at write time (accounting will register
/// one): C's additions to `bch2_journal_write_prep()`.
pub trait JsetEntryHook: Send + Sync {
    /// Most u64s (entry headers included) [`JsetEntryHook::add_entries`]
    /// ever adds: kept free in every entry
    /// (`bch2_journal_entry_res_resize()`).
    fn u64s_max(&self) -> u32;

    /// Appends this hook's entries to the entry with sequence number
    /// `seq`.
    ///
    /// Errors: as [`EntryWriter::add`]; an error fails the write (the
    /// journal goes read-only).
    fn add_entries(&self, seq: u64, w: &mut EntryWriter<'_>) -> Result<(), Errno>;

    /// Hands the keys of a `write_buffer_keys` entry of entry `seq` to the
    /// btree write buffer before the entry is written, where they become
    /// `btree_keys` (`bch2_journal_keys_to_write_buffer_start()`,
    /// `bch2_journal_key_to_wb()`).  `keys` is the entry's payload
    /// (unpacked keys with their values).  The default keeps nothing: the
    /// keys still reach the btree through replay.
    ///
    /// Errors: an error fails the write (the journal goes read-only).
    fn write_buffer_keys(&self, _seq: u64, _btree_id: u8, _keys: &[u8]) -> Result<(), Errno> {
        Ok(())
    }

    /// Whether the hook keeps the keys [`JsetEntryHook::write_buffer_keys`]
    /// hands it until they are in the btree (the btree write buffer): the
    /// journal then takes one [`PinOwner::WriteBuffer`] pin on each entry
    /// whose `write_buffer_keys` it handed over, before the entry is
    /// written, which the hook's owner drops with
    /// [`JournalSink::pin_put`] once the keys are in the btree
    /// (`bch2_journal_keys_to_write_buffer_start()` pinning the entry).
    /// The default: no pin.
    fn pins_write_buffer_keys(&self) -> bool {
        false
    }
}

/// Appends jset entries into a bounded buffer.
pub struct EntryWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
    end: usize,
}

impl EntryWriter<'_> {
    /// Appends an entry of type `ty` (`BCH_JSET_ENTRY_*`) with `data` (a
    /// whole number of u64s).
    ///
    /// Errors: `EINVAL` when `data` is not whole u64s or too long for an
    /// entry; `ENOSPC` when the space kept for it is exhausted.
    pub fn add(&mut self, ty: u8, btree_id: u8, level: u8, data: &[u8]) -> Result<(), Errno> {
        if data.len() % 8 != 0 {
            return Err(Errno::EINVAL);
        }
        let u64s = u16::try_from(data.len() / 8).map_err(|_| Errno::EINVAL)?;
        let len = JSET_ENTRY_BYTES + data.len();
        let stop = self.at.checked_add(len).filter(|&e| e <= self.end).ok_or(Errno::ENOSPC)?;
        let dst = self.buf.get_mut(self.at..stop).ok_or(Errno::ENOSPC)?;
        dst[..JSET_ENTRY_BYTES].copy_from_slice(&jset_entry_header(u64s, ty, btree_id, level));
        dst[JSET_ENTRY_BYTES..].copy_from_slice(data);
        self.at = stop;
        Ok(())
    }

    /// Bytes written so far, from the start of the buffer.
    pub fn offset(&self) -> usize {
        self.at
    }
}

/// One btree root as the journal writes it: level and the whole key
/// (`bkey_i`: unpacked key then value).
struct RootKey {
    level: u8,
    key: Vec<u8>,
}

/// What a write copies in besides the reservations' entries (the `extras`
/// lock).
struct Extras {
    roots: Vec<Option<RootKey>>,
    hook: Option<Arc<dyn JsetEntryHook>>,
    key_version: u64,
    io_clock: [u64; 2],
}

/// One in-memory journal entry (`struct journal_buf`).
#[derive(Default)]
struct JournalBuf {
    /// The jset: header, then entries.  Taken out while being written.
    data: Vec<u8>,
    seq: u64,
    /// Reservations not yet put.
    refs: u32,
    /// Entries' size when closed, u64s.
    u64s: u32,
    /// Sectors the entry may take on disk until its write is placed
    /// (`buf->sectors`; 0 once placed).
    sectors: u32,
    /// Sectors available on disk when it was opened (`disk_sectors`).
    disk_sectors: u32,
    u64s_reserved: u32,
    last_seq: u64,
    expires_ms: u64,
    noflush: bool,
    must_flush: bool,
    write_started: bool,
    write_allocated: bool,
    write_done: bool,
    /// Device sector of the write, once placed.
    sector: u64,
}

/// Everything under the state lock (`struct journal`).
struct JournalState {
    /// Newest opened sequence number (`journal_cur_seq()`).
    seq: u64,
    seq_ondisk: u64,
    flushed_seq_ondisk: u64,
    last_seq_ondisk: u64,
    /// Whether entry `seq` is open for reservations.
    open: bool,
    /// Used u64s of the open entry (`cur_entry_offset`).
    cur_entry_offset: u32,
    /// Usable u64s of the open entry (`cur_entry_u64s`).
    cur_entry_u64s: u32,
    cur_entry_sectors: u32,
    cur_entry_error: Option<JournalErr>,
    entry_u64s_reserved: u32,
    buf_size_want: usize,
    /// Largest buffer: the bucket or [`JOURNAL_ENTRY_SIZE_MAX`], bytes.
    buf_size_max: usize,
    bufs: Vec<JournalBuf>,
    pin: PinFifo,
    ja: JournalDevice,
    space: [JournalSpace; 4],
    can_discard: bool,
    may_skip_flush: bool,
    low_on_space: bool,
    need_flush_write: bool,
    /// The journal's time stats (shared with [`Journal::times`]).
    times: Arc<JournalTimes>,
    /// First error (`EIO` for a failed write; `EROFS` once stopped).
    err: Option<Errno>,
    /// Oldest sequence number lost to an error (`err_seq`).
    err_seq: u64,
    stopped: bool,
    now_ms: u64,
    real_secs: u64,
    last_flush_write_ms: u64,
    last_reclaim_ms: u64,
    nr_flush_writes: u64,
    nr_noflush_writes: u64,
    entry_bytes_written: u64,
    nr_reclaim: u64,
    replay_seq: u64,
    replay_seq_end: u64,
    last_empty_seq: u64,
}

impl JournalState {
    fn buf(&self, seq: u64) -> &JournalBuf {
        &self.bufs[(seq % JOURNAL_BUF_NR as u64) as usize]
    }

    fn buf_mut(&mut self, seq: u64) -> &mut JournalBuf {
        &mut self.bufs[(seq % JOURNAL_BUF_NR as u64) as usize]
    }

    fn nr_unwritten(&self) -> u64 {
        self.seq - self.seq_ondisk
    }

    fn watermark_low(&self) -> bool {
        self.low_on_space || self.pin.free() < self.pin.size() / 4
    }

    /// `bch2_journal_space_available()`.
    fn space_available(&mut self) {
        self.ja.advance_dirty(self.pin.front, self.last_seq_ondisk);
        self.can_discard = self.ja.can_discard();
        let mut unwritten = [0u32; JOURNAL_BUF_NR];
        let mut n = 0;
        for s in self.seq_ondisk + 1..=self.seq {
            let b = self.buf(s);
            if !b.write_allocated && n < unwritten.len() {
                unwritten[n] = b.sectors;
                n += 1;
            }
        }
        for (i, from) in [SpaceFrom::Discarded, SpaceFrom::CleanOndisk, SpaceFrom::Clean, SpaceFrom::Total]
            .into_iter()
            .enumerate()
        {
            self.space[i] = self.ja.space(from, &unwritten[..n]);
        }
        let [discarded, clean_ondisk, clean, total] = self.space;
        self.may_skip_flush = u64::from(clean_ondisk.next_entry) < clean_ondisk.total
            && clean.total - clean_ondisk.total.min(clean.total) <= total.total / 8
            && clean_ondisk.total * 2 > clean.total;
        self.low_on_space = clean.total * 4 <= total.total;
        // journal_set_watermark(): how long the journal stays low on
        // space, and on pins (a quarter of the pin fifo free or less).
        self.times.blocked_journal_low_on_space.track_event_change(self.low_on_space);
        self.times.blocked_journal_low_on_pin.track_event_change(self.pin.free() < self.pin.size() / 4);
        if self.err.is_some() || self.stopped {
            self.cur_entry_error = Some(JournalErr::Insufficient);
            self.cur_entry_sectors = 0;
        } else if discarded.next_entry == 0 {
            self.cur_entry_error = Some(JournalErr::JournalFull);
            self.cur_entry_sectors = 0;
        } else {
            self.cur_entry_error = None;
            self.cur_entry_sectors = discarded.next_entry;
        }
    }

    fn reclaim_fast(&mut self) {
        if self.pin.reclaim_fast(self.seq_ondisk) {
            self.space_available();
        }
    }

    /// The entry's own reference is dropped once it is closed and its
    /// reservations are all put (`bch2_journal_buf_put_final()`).
    fn buf_put_final(&mut self, seq: u64) {
        if self.pin.put(seq, None) {
            self.reclaim_fast();
        }
    }

    /// `__journal_entry_close()`.
    fn entry_close(&mut self, block_bytes: u32) {
        if !self.open {
            return;
        }
        self.open = false;
        let seq = self.seq;
        let last_seq = self.pin.front;
        let used = self.cur_entry_offset;
        let b = self.buf_mut(seq);
        b.u64s = used;
        let bytes = JSET_BYTES as u64 + (u64::from(used) + u64::from(b.u64s_reserved)) * 8;
        let block = u64::from(block_bytes);
        let sectors = (bytes.div_ceil(block) * block / SECTOR_SIZE as u64) as u32;
        b.sectors = sectors.min(b.sectors);
        b.last_seq = last_seq;
        let refs = b.refs;
        self.space_available();
        if refs == 0 {
            self.buf_put_final(seq);
        }
    }

    /// `journal_entry_open()`.
    fn entry_open(&mut self, opts: &JournalOpts) -> Result<(), JournalErr> {
        if self.err.is_some() || self.stopped {
            return Err(JournalErr::Insufficient);
        }
        if let Some(e) = self.cur_entry_error {
            return Err(e);
        }
        if self.pin.free() == 0 {
            return Err(JournalErr::PinFull);
        }
        if self.nr_unwritten() >= JOURNAL_BUF_NR as u64 {
            return Err(JournalErr::MaxInFlight);
        }
        let seq = self.seq + 1;
        let expires_ms = if self.seq == self.flushed_seq_ondisk { self.now_ms } else { self.last_flush_write_ms }
            .saturating_add(u64::from(opts.flush_delay_ms));
        let (disk_sectors, reserved, want) = (self.cur_entry_sectors, self.entry_u64s_reserved, self.buf_size_want);
        let b = self.buf_mut(seq);
        if b.data.len() < want {
            // A failed grow keeps the old buffer (`journal_buf_realloc()`).
            let _ = b.data.resize(want, 0);
        }
        let sectors = disk_sectors.min((b.data.len() / SECTOR_SIZE) as u32);
        let u64s = (sectors as i64 * (SECTOR_SIZE / 8) as i64 - i64::from(JSET_U64S) - i64::from(reserved))
            .clamp(0, i64::from(u32::MAX)) as u32;
        if u64s == 0 {
            return Err(JournalErr::JournalFull);
        }
        if !self.pin.push(1) {
            return Err(JournalErr::PinFull);
        }
        let b = self.buf_mut(seq);
        b.seq = seq;
        b.refs = 0;
        b.u64s = 0;
        b.sectors = sectors;
        b.disk_sectors = disk_sectors;
        b.u64s_reserved = reserved;
        b.last_seq = 0;
        b.expires_ms = expires_ms;
        b.noflush = false;
        b.must_flush = false;
        b.write_started = false;
        b.write_allocated = false;
        b.write_done = false;
        b.sector = 0;
        self.seq = seq;
        self.open = true;
        self.cur_entry_offset = 0;
        self.cur_entry_u64s = u64s;
        Ok(())
    }

    /// Reserves `u64s` in the open entry (`journal_res_get_fast()`).
    fn res_get_fast(&mut self, u64s: u32) -> Option<JournalRes> {
        if !self.open || self.err.is_some() {
            return None;
        }
        let end = self.cur_entry_offset.checked_add(u64s)?;
        if end > self.cur_entry_u64s {
            return None;
        }
        let res = JournalRes {
            seq: self.seq,
            offset_u64s: self.cur_entry_offset,
            u64s,
            idx: (self.seq % JOURNAL_BUF_NR as u64) as u32,
        };
        self.cur_entry_offset = end;
        let seq = self.seq;
        self.buf_mut(seq).refs += 1;
        Some(res)
    }

    /// Whether the next write waits for a reservation another thread
    /// holds, or is being written by another thread.
    fn waiting_on_others(&self) -> bool {
        let seq = self.seq_ondisk + 1;
        seq <= self.seq && (self.buf(seq).refs > 0 || self.buf(seq).write_started)
    }

    /// What tells whether a blocked caller made progress.
    fn progress(&self) -> (u64, u64, u64, usize, usize, u64) {
        (self.seq, self.seq_ondisk, self.pin.front, self.ja.discard_idx, self.ja.dirty_idx, self.flushed_seq_ondisk)
    }

    /// A write is ready: the oldest unwritten entry is closed and has no
    /// reservations (`bch2_journal_do_writes()`).
    fn write_ready(&self) -> bool {
        let seq = self.seq_ondisk + 1;
        if seq > self.seq || (self.open && seq == self.seq) {
            return false;
        }
        let b = self.buf(seq);
        b.refs == 0 && !b.write_started
    }
}

/// The journal (`struct journal`): implements [`JournalSink`].
///
/// `D` is the journal device.  Single-device filesystems only.
pub struct Journal<D: BlockDev + Send + Sync> {
    times: Arc<JournalTimes>,
    dev: D,
    geo: JournalGeometry,
    opts: JournalOpts,
    /// `journal_flush_delay`, ms: changeable at runtime
    /// ([`set_flush_delay_ms`](Self::set_flush_delay_ms)).
    flush_delay_ms: AtomicU32,
    /// Entry writes the device failed.
    write_errors: AtomicU64,
    io: Mutex<()>,
    state: Mutex<JournalState>,
    /// Sequence numbers of `state` as of its last unlock, for readers that
    /// need no more than that ([`lock_state`](Self::lock_state)).
    published: PublishedSeqs,
    extras: Mutex<Extras>,
    flusher: Mutex<Option<Arc<dyn JournalFlusher>>>,
}

/// The sequence numbers of the journal's state as of its last unlock:
/// the current one, the oldest still pinned and the newest written and
/// written-and-flushed.  Readers of just those (the commit path's reclaim
/// check, the allocator's "flushed" point) take no lock.
#[derive(Debug, Default)]
struct PublishedSeqs {
    seq: AtomicU64,
    last_seq: AtomicU64,
    seq_ondisk: AtomicU64,
    flushed_seq_ondisk: AtomicU64,
}

impl PublishedSeqs {
    fn of(s: &JournalState) -> Self {
        let p = PublishedSeqs::default();
        p.publish(s);
        p
    }

    fn publish(&self, s: &JournalState) {
        self.seq.store(s.seq, Release);
        self.last_seq.store(s.pin.front, Release);
        self.seq_ondisk.store(s.seq_ondisk, Release);
        self.flushed_seq_ondisk.store(s.flushed_seq_ondisk, Release);
    }
}

/// The journal's state held locked; its sequence numbers are published
/// when it is dropped.
struct StateGuard<'a> {
    g: crate::platform::MutexGuard<'a, JournalState>,
    published: &'a PublishedSeqs,
}

impl core::ops::Deref for StateGuard<'_> {
    type Target = JournalState;
    fn deref(&self) -> &JournalState {
        &self.g
    }
}

impl core::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut JournalState {
        &mut self.g
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        self.published.publish(&self.g);
    }
}

/// The journal's time stats (`c->times[]` entries of `journal.c`,
/// `journal_io.c` and `journal_reclaim.c`), all in nanoseconds.
#[derive(Debug, Default)]
pub struct JournalTimes {
    /// `journal_flush_write`: flush writes (`REQ_PREFLUSH|REQ_FUA`), from
    /// the write's start (`bch2_journal_write()`) to its completion
    /// (`journal_write_done()`).
    pub journal_flush_write: TimeStats,
    /// `journal_noflush_write`: the same for no-flush writes.
    pub journal_noflush_write: TimeStats,
    /// `journal_flush_seq`: waits for a sequence number to be flushed
    /// (`bch2_journal_flush_seq()`; not counted when it already was).
    pub journal_flush_seq: TimeStats,
    /// `blocked_journal_low_on_space`: how long the journal stays with a
    /// quarter of its space clean or less (`journal_set_watermark()`).
    pub blocked_journal_low_on_space: TimeStats,
    /// `blocked_journal_low_on_pin`: how long the pin fifo stays three
    /// quarters full or more (`journal_set_watermark()`).
    pub blocked_journal_low_on_pin: TimeStats,
}

/// What a write carries between its steps.
struct WriteJob {
    seq: u64,
    data: Vec<u8>,
    u64s: u32,
    limit_sectors: u32,
    noflush: bool,
    last_seq: u64,
    real_secs: u64,
}

impl<D: BlockDev + Send + Sync> Journal<D> {
    /// A journal writing to `dev` with geometry `geo`, starting as
    /// `start` says (`bch2_fs_journal_init()` + `bch2_fs_journal_start()`).
    ///
    /// Errors: `EINVAL` for a bad geometry or a start position that does
    /// not match it; `ENOMEM`.
    pub fn new(dev: D, geo: JournalGeometry, opts: JournalOpts, start: JournalStart) -> Result<Self, Errno> {
        geo.validate()?;
        if start.cur_seq == 0 || start.last_seq > start.cur_seq {
            return Err(Errno::EINVAL);
        }
        let nr = geo.buckets.len();
        let mut ja = JournalDevice::new(&geo.buckets, geo.bucket_sectors)?;
        if !start.bucket_seq.is_empty() {
            if start.bucket_seq.len() != nr || start.cur_idx >= nr || start.sectors_free > geo.bucket_sectors {
                return Err(Errno::EINVAL);
            }
            ja.bucket_seq.copy_from_slice(&start.bucket_seq);
            ja.cur_idx = start.cur_idx;
            ja.sectors_free = start.sectors_free;
        }
        if start.after_read {
            let i = (ja.cur_idx + 1) % nr;
            ja.discard_idx = i;
            ja.dirty_idx_ondisk = i;
            ja.dirty_idx = i;
        }
        let bucket_bytes = geo.bucket_sectors as usize * SECTOR_SIZE;
        let max = opts.entry_size_max.clamp(geo.block_bytes as usize, JOURNAL_ENTRY_SIZE_MAX).min(bucket_bytes);
        let first = JOURNAL_ENTRY_SIZE_MIN.min(max);
        let mut bufs: Vec<JournalBuf> = Vec::with_capacity(JOURNAL_BUF_NR)?;
        for _ in 0..JOURNAL_BUF_NR {
            let mut b = JournalBuf { write_done: true, ..JournalBuf::default() };
            b.data.resize(first, 0)?;
            bufs.push(b)?;
        }
        let mut pin = PinFifo::new(opts.pin_fifo_size, start.last_seq)?;
        pin.reset(start.last_seq, start.cur_seq, 1)?;
        let mut roots: Vec<Option<RootKey>> = Vec::with_capacity(NR_BTREES)?;
        for _ in 0..NR_BTREES {
            roots.push(None)?;
        }
        let cur = start.cur_seq - 1;
        let times = crate::platform::arc_new(JournalTimes::default())?;
        let mut st = JournalState {
            seq: cur,
            seq_ondisk: cur,
            flushed_seq_ondisk: cur,
            last_seq_ondisk: start.last_seq,
            open: false,
            cur_entry_offset: 0,
            cur_entry_u64s: 0,
            cur_entry_sectors: 0,
            cur_entry_error: None,
            entry_u64s_reserved: ENTRY_U64S_RESERVED_BASE,
            buf_size_want: first,
            buf_size_max: max,
            bufs,
            pin,
            ja,
            space: [JournalSpace::default(); 4],
            can_discard: false,
            may_skip_flush: false,
            low_on_space: false,
            need_flush_write: true,
            times: times.clone(),
            err: None,
            err_seq: 0,
            stopped: false,
            now_ms: 0,
            real_secs: 0,
            last_flush_write_ms: 0,
            last_reclaim_ms: 0,
            nr_flush_writes: 0,
            nr_noflush_writes: 0,
            entry_bytes_written: 0,
            nr_reclaim: 0,
            replay_seq: start.last_seq,
            replay_seq_end: start.cur_seq,
            last_empty_seq: cur,
        };
        st.space_available();
        Ok(Journal {
            times,
            dev,
            geo,
            opts,
            flush_delay_ms: AtomicU32::new(opts.flush_delay_ms.max(1)),
            write_errors: AtomicU64::new(0),
            io: Mutex::new(())?,
            published: PublishedSeqs::of(&st),
            state: Mutex::new(st)?,
            extras: Mutex::new(Extras { roots, hook: None, key_version: 0, io_clock: [0; 2] })?,
            flusher: Mutex::new(None)?,
        })
    }

    /// The state, locked; its sequence numbers are published at unlock.
    fn lock_state(&self) -> StateGuard<'_> {
        StateGuard { g: self.state.lock(), published: &self.published }
    }

    /// The device.
    pub fn dev(&self) -> &D {
        &self.dev
    }

    /// The geometry.
    pub fn geometry(&self) -> &JournalGeometry {
        &self.geo
    }

    /// Registers who reclaim asks to release pins.  The journal holds it
    /// until [`Journal::stop`] (break the cycle if the flusher holds the
    /// journal).
    pub fn set_flusher(&self, f: Arc<dyn JournalFlusher>) {
        *self.flusher.lock() = Some(f);
    }

    /// Registers the hook adding per-entry entries, keeping
    /// `hook.u64s_max()` free in every entry opened from now on.
    pub fn set_entry_hook(&self, hook: Arc<dyn JsetEntryHook>) {
        let extra = hook.u64s_max();
        self.extras.lock().hook = Some(hook);
        let mut s = self.lock_state();
        s.entry_u64s_reserved = ENTRY_U64S_RESERVED_BASE.saturating_add(extra);
        s.space_available();
    }

    /// Sets the root of `btree_id` at `level`: `key` is the whole pointer
    /// key (unpacked `bkey` then its value, `key.len()` a multiple of 8 and
    /// matching the key's `u64s`).  Every entry written from now on
    /// carries it.  `None` removes the root.
    ///
    /// Errors: `EINVAL` for a bad btree id or key; `ENOMEM`.
    pub fn set_btree_root(&self, btree_id: u8, level: u8, key: Option<&[u8]>) -> Result<(), Errno> {
        let mut x = self.extras.lock();
        let slot = x.roots.get_mut(btree_id as usize).ok_or(Errno::EINVAL)?;
        *slot = match key {
            None => None,
            Some(k) => {
                if k.len() < BKEY_BYTES
                    || k.len() % 8 != 0
                    || k.len() / 8 > (1 + super::types::BKEY_BTREE_PTR_U64S_MAX) as usize
                    || usize::from(k[0]) * 8 != k.len()
                {
                    return Err(Errno::EINVAL);
                }
                let mut v: Vec<u8> = Vec::new();
                v.extend_from_slice(k)?;
                Some(RootKey { level, key: v })
            }
        };
        Ok(())
    }

    /// [`Journal::set_btree_root`] from a key and its value.
    ///
    /// Errors: as there.
    pub fn set_btree_root_key(&self, btree_id: u8, level: u8, k: &Bkey, val: &[u8]) -> Result<(), Errno> {
        let mut b: Vec<u8> = Vec::new();
        let mut k = *k;
        k.u64s = u8::try_from(crate::format::bkey::BKEY_U64S + val.len() / 8).map_err(|_| Errno::EINVAL)?;
        b.extend_from_slice(&k.to_bytes())?;
        b.extend_from_slice(val)?;
        self.set_btree_root(btree_id, level, Some(&b))
    }

    /// The root of `btree_id` the journal writes: its level and key bytes.
    pub fn btree_root(&self, btree_id: u8) -> Option<(u8, Vec<u8>)> {
        let x = self.extras.lock();
        let r = x.roots.get(btree_id as usize)?.as_ref()?;
        let mut v: Vec<u8> = Vec::new();
        v.extend_from_slice(&r.key).ok()?;
        Some((r.level, v))
    }

    /// Sets the clocks the journal writes: `key_version` and the read and
    /// write IO clocks (`c->key_version`, `c->io_clock[]`).
    pub fn set_clocks(&self, key_version: u64, io_clock: [u64; 2]) {
        let mut x = self.extras.lock();
        x.key_version = key_version;
        x.io_clock = io_clock;
    }

    /// Tells the journal the time: `now_ms` from a monotonic clock
    /// (`jiffies`), `real_secs` since the epoch (`datetime` entries).
    pub fn set_time(&self, now_ms: u64, real_secs: u64) {
        let mut s = self.lock_state();
        s.now_ms = s.now_ms.max(now_ms);
        s.real_secs = real_secs;
    }

    /// Replay has applied the keys of every entry before `seq`: drops
    /// their start pins (`replay_now_at()`).
    pub fn replay_now_at(&self, seq: u64) {
        let mut s = self.lock_state();
        let end = seq.min(s.replay_seq_end);
        while s.replay_seq < end {
            let r = s.replay_seq;
            s.pin.put(r, None);
            s.replay_seq += 1;
        }
        s.reclaim_fast();
    }

    /// Replay is done: drops every remaining start pin
    /// (`bch2_journal_set_replay_done()` with the end of
    /// `bch2_journal_replay()`).
    pub fn replay_done(&self) {
        let end = self.lock_state().replay_seq_end;
        self.replay_now_at(end);
    }

    /// `journal_last_seq()`: oldest sequence number still pinned.
    pub fn last_seq(&self) -> u64 {
        self.published.last_seq.load(Acquire)
    }

    /// Newest sequence number written and flushed.
    pub fn flushed_seq_ondisk(&self) -> u64 {
        self.published.flushed_seq_ondisk.load(Acquire)
    }

    /// Newest sequence number written.
    pub fn seq_ondisk(&self) -> u64 {
        self.published.seq_ondisk.load(Acquire)
    }

    /// Entry writes the device failed so far.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Relaxed)
    }

    /// The journal's error, if it hit one.
    pub fn error(&self) -> Option<Errno> {
        self.lock_state().err
    }

    /// Closes the open entry now (`bch2_journal_entry_close()`) and writes
    /// what is ready.
    pub fn entry_close(&self) {
        self.lock_state().entry_close(self.geo.block_bytes);
        self.do_writes();
    }

    /// `bch2_journal_halt()` for an emergency read-only: nothing more is
    /// written (entries not yet on disk are lost, as in a power cut), and
    /// reservations fail with `EROFS`.  Entries already on disk stay
    /// valid; the next mount replays them.
    pub fn emergency_halt(&self) {
        let mut s = self.lock_state();
        let seq = s.seq;
        if s.err.is_none() {
            log::info!("{}: journal halted at seq {seq} (emergency read-only)", self.dev.name());
            s.err = Some(Errno::EROFS);
        }
        self.halt(&mut s, Errno::EROFS, seq);
    }

    /// The options, with the current flush delay.
    fn cur_opts(&self) -> JournalOpts {
        JournalOpts { flush_delay_ms: self.flush_delay_ms.load(Relaxed), ..self.opts }
    }

    /// Bytes of journal entries written so far.
    pub fn bytes_written(&self) -> u64 {
        self.lock_state().entry_bytes_written
    }

    /// Sets `journal_flush_delay` (ms, at least 1) for the entries opened
    /// from now on.
    pub fn set_flush_delay_ms(&self, ms: u32) {
        self.flush_delay_ms.store(ms.max(1), Relaxed);
    }

    fn halt(&self, s: &mut JournalState, e: Errno, seq: u64) {
        if s.err.is_none() {
            log::err!("{}: journal error at seq {seq}: {e}", self.dev.name());
            s.err = Some(e);
        }
        if s.err_seq == 0 || seq < s.err_seq {
            s.err_seq = seq;
        }
        s.entry_close(self.geo.block_bytes);
        s.space_available();
    }

    /// Writes every closed entry with no reservations left, oldest first
    /// (`bch2_journal_do_writes()` and `bch2_journal_write()`).
    pub fn do_writes(&self) {
        if !self.lock_state().write_ready() {
            return;
        }
        let _io = self.io.lock();
        while let Some(job) = self.write_claim() {
            self.write_one(job);
        }
    }

    /// Picks the next entry to write and whether it flushes
    /// (`bch2_journal_write_pick_flush()`); takes its buffer out.
    fn write_claim(&self) -> Option<WriteJob> {
        let mut s = self.lock_state();
        if !s.write_ready() {
            return None;
        }
        let seq = s.seq_ondisk + 1;
        let (now, delay) = (s.now_ms, u64::from(self.flush_delay_ms.load(Relaxed)));
        let skip = s.may_skip_flush && !s.watermark_low() && now < s.last_flush_write_ms.saturating_add(delay);
        let errored = s.err.is_some();
        let b = s.buf(seq);
        let noflush = errored || b.noflush || (!b.must_flush && !s.need_flush_write && skip);
        let (u64s, limit_sectors, last_seq) = (b.u64s, b.sectors, if noflush { 0 } else { b.last_seq });
        if noflush {
            s.nr_noflush_writes += 1;
        } else {
            s.last_flush_write_ms = now;
            s.nr_flush_writes += 1;
            s.need_flush_write = false;
        }
        let real_secs = s.real_secs;
        let b = s.buf_mut(seq);
        b.noflush = noflush;
        b.must_flush = !noflush;
        b.write_started = true;
        let data = core::mem::take(&mut b.data);
        Some(WriteJob { seq, data, u64s, limit_sectors, noflush, last_seq, real_secs })
    }

    /// Prepares, places, writes and completes one entry.
    fn write_one(&self, mut job: WriteJob) {
        let start = crate::sync::now_ns();
        let seq = job.seq;
        let prep = self.write_prep(&mut job);
        let mut s = self.lock_state();
        let res = match prep {
            Err(e) => Err(e),
            Ok(_) if s.err.is_some() => Err(Errno::EROFS),
            Ok(sectors) => {
                s.entry_bytes_written += (sectors as u64) * SECTOR_SIZE as u64;
                let mut at = s.ja.write_alloc(sectors, seq);
                if at.is_none() && s.ja.do_discards() {
                    at = s.ja.write_alloc(sectors, seq);
                }
                match at {
                    None => Err(Errno::EROFS),
                    Some(sector) => {
                        let b = s.buf_mut(seq);
                        b.sectors = 0;
                        b.write_allocated = true;
                        b.sector = sector;
                        s.space_available();
                        Ok((sector, sectors))
                    }
                }
            }
        };
        drop(s);
        let res = res.and_then(|(sector, sectors)| {
            let bytes = sectors as usize * SECTOR_SIZE;
            let buf = job.data.get(..bytes).ok_or(Errno::EINVAL)?;
            let flags = if job.noflush { WriteFlags::NONE } else { WriteFlags::FLUSH_FUA };
            self.dev.write_sectors(sector, buf, flags).inspect_err(|_| {
                self.write_errors.fetch_add(1, Relaxed);
            })
        });
        let t = if job.noflush { &self.times.journal_noflush_write } else { &self.times.journal_flush_write };
        t.update_from(start);
        let mut s = self.lock_state();
        let b = s.buf_mut(seq);
        b.data = job.data;
        b.write_done = true;
        b.write_allocated = true;
        b.sectors = 0;
        match res {
            Err(e) => self.halt(&mut s, e, seq),
            Ok(()) => {
                if !job.noflush && s.err.is_none() {
                    s.flushed_seq_ondisk = seq;
                    s.last_seq_ondisk = job.last_seq;
                }
                if job.u64s == 0 && !job.noflush {
                    s.last_empty_seq = seq;
                }
            }
        }
        s.seq_ondisk = seq;
        s.reclaim_fast();
        s.space_available();
    }

    /// `bch2_journal_write_prep()`: drops empty entries, takes new roots
    /// from `btree_root` entries, adds the roots, datetime, usage, clocks
    /// and the hook's entries, sets the header, checksums and pads.
    /// Returns the sectors to write.
    fn write_prep(&self, job: &mut WriteJob) -> Result<u32, Errno> {
        let block = self.geo.block_bytes as usize;
        let limit = (job.limit_sectors as usize * SECTOR_SIZE).min(job.data.len());
        let end = JSET_BYTES + job.u64s as usize * 8;
        if end > limit {
            return Err(Errno::EINVAL);
        }
        let mut have = [false; NR_BTREES];
        // Callbacks run without the extras lock (they may set roots).
        let hook = self.extras.lock().hook.clone();
        let mut wb_pinned = false;
        // Compaction: entries move towards the start, never past where
        // they are read from.
        let (mut r, mut w) = (JSET_BYTES, JSET_BYTES);
        while r < end {
            let h = job.data.get(r..r + JSET_ENTRY_BYTES).ok_or(Errno::EINVAL)?;
            let u64s = usize::from(u16::from_le_bytes([h[0], h[1]]));
            let (btree_id, level, ty) = (h[2], h[3], h[4]);
            let len = JSET_ENTRY_BYTES + u64s * 8;
            if r + len > end {
                return Err(Errno::EINVAL);
            }
            if u64s != 0 {
                if ty == EntryType::WriteBufferKeys as u8 {
                    // On disk they are plain btree_keys, as C writes them.
                    if let Some(hook) = hook.as_ref() {
                        if !wb_pinned && hook.pins_write_buffer_keys() {
                            // The entry is not on disk yet: its pin list
                            // is still in the FIFO.
                            self.lock_state().pin.pin_get(job.seq, PinOwner::WriteBuffer);
                            wb_pinned = true;
                        }
                        hook.write_buffer_keys(job.seq, btree_id, &job.data[r + JSET_ENTRY_BYTES..r + len])?;
                    }
                    job.data[r + 4] = EntryType::BtreeKeys as u8;
                }
                if ty == EntryType::BtreeRoot as u8 {
                    let mut x = self.extras.lock();
                    if let Some(slot) = x.roots.get_mut(btree_id as usize) {
                        let mut k: Vec<u8> = Vec::new();
                        k.extend_from_slice(&job.data[r + JSET_ENTRY_BYTES..r + len])?;
                        *slot = Some(RootKey { level, key: k });
                        have[btree_id as usize] = true;
                    }
                }
                job.data.copy_within(r..r + len, w);
                w += len;
            }
            r += len;
        }
        job.data[w..end].iter_mut().for_each(|b| *b = 0);
        let x = self.extras.lock();
        let mut ew = EntryWriter { buf: &mut job.data[..limit], at: w, end: limit };
        for (i, root) in x.roots.iter().enumerate() {
            if let (Some(root), false) = (root, have[i]) {
                ew.add(EntryType::BtreeRoot as u8, i as u8, root.level, &root.key)?;
            }
        }
        ew.add(EntryType::Datetime as u8, 0, 0, &job.real_secs.to_le_bytes())?;
        ew.add(EntryType::Usage as u8, FS_USAGE_KEY_VERSION, 0, &x.key_version.to_le_bytes())?;
        for rw in 0..2u8 {
            let mut c = [0u8; 16];
            c[0] = rw;
            c[8..].copy_from_slice(&x.io_clock[rw as usize].to_le_bytes());
            ew.add(EntryType::Clock as u8, 0, 0, &c)?;
        }
        drop(x);
        if let Some(hook) = hook {
            hook.add_entries(job.seq, &mut ew)?;
        }
        let end = ew.offset();
        let u64s = u32::try_from((end - JSET_BYTES) / 8).map_err(|_| Errno::EINVAL)?;
        let mut flags = self.geo.csum_type as u32;
        if job.noflush {
            flags |= 1 << 5;
        }
        let h = JsetHeader {
            magic: self.geo.magic,
            seq: job.seq,
            version: u32::from(self.geo.version),
            flags,
            u64s,
            last_seq: job.last_seq,
            ..JsetHeader::default()
        };
        h.encode(&mut job.data).ok_or(Errno::EINVAL)?;
        let c = checksum::checksum(self.geo.csum_type, &job.data[16..end]).map_err(|_| Errno::EINVAL)?;
        job.data[..16].copy_from_slice(&c.to_bytes());
        let padded = end.div_ceil(block) * block;
        if padded > limit {
            return Err(Errno::EINVAL);
        }
        // As C's jset_validate(..., WRITE): never write an entry the read
        // side would reject.
        let js = Jset::parse(&job.data[..end], self.geo.magic).map_err(|e| e.errno())?;
        if let Err(e) = js.validate(&FsCtx::default()) {
            log::err!("{}: journal entry {} invalid, not written: {e}", self.dev.name(), job.seq);
            return Err(Errno::EUCLEAN);
        }
        job.data[end..padded].iter_mut().for_each(|b| *b = 0);
        u32::try_from(padded / SECTOR_SIZE).map_err(|_| Errno::EINVAL)
    }

    /// Journal reclaim (`__bch2_journal_reclaim()`): discards clean
    /// buckets, then asks the flusher to release the pins up to the
    /// sequence number that keeps the journal at most half full (and at
    /// least one pin when space is low or reclaim last ran more than
    /// `journal_reclaim_delay` ago).  Returns the pins released.
    pub fn reclaim(&self) -> usize {
        let (seq_to_flush, min_nr) = {
            let mut s = self.lock_state();
            if s.ja.do_discards() {
                s.space_available();
            }
            let by_pin = s.seq.saturating_sub(s.pin.size() / 2);
            let seq_to_flush = s.ja.seq_to_flush().max(by_pin);
            let late = s.now_ms >= s.last_reclaim_ms.saturating_add(u64::from(self.opts.reclaim_delay_ms));
            let min_nr = usize::from(late || s.watermark_low() || s.cur_entry_error.is_some());
            s.last_reclaim_ms = s.now_ms;
            (seq_to_flush, min_nr)
        };
        let f = self.flusher.lock().clone();
        let n = match f {
            Some(f) if seq_to_flush > 0 || min_nr > 0 => f.flush_pins(seq_to_flush, min_nr),
            _ => 0,
        };
        let mut s = self.lock_state();
        s.nr_reclaim += n as u64;
        s.reclaim_fast();
        if s.ja.do_discards() {
            s.space_available();
        }
        n
    }

    /// The journal's periodic step (`journal_write_work()` and the
    /// reclaim thread's loop): sets the time, closes the open entry when
    /// its flush delay expired, writes what is ready and runs reclaim.
    /// Returns when to call again (ms, the open entry's expiry), if ever.
    pub fn journal_do_work(&self, now_ms: u64) -> Option<u64> {
        {
            let mut s = self.lock_state();
            s.now_ms = s.now_ms.max(now_ms);
            let seq = s.seq;
            if s.open && s.buf(seq).expires_ms <= s.now_ms {
                s.entry_close(self.geo.block_bytes);
            }
        }
        self.do_writes();
        self.reclaim();
        self.do_writes();
        let s = self.lock_state();
        let seq = s.seq;
        s.open.then(|| s.buf(seq).expires_ms)
    }

    /// Makes progress for a blocked caller: writes, discards, reclaim.
    /// Returns whether anything changed.
    fn unblock(&self) -> bool {
        let before = self.lock_state().progress();
        self.do_writes();
        self.reclaim();
        self.do_writes();
        let mut s = self.lock_state();
        if s.ja.do_discards() {
            s.space_available();
        }
        s.progress() != before
    }

    /// `bch2_journal_meta()`: opens an entry if none is open, so that
    /// there is one to write; returns its sequence number.
    fn meta(&self) -> Result<u64, Errno> {
        let res = self.res_get(0, ResFlags { nonblock: false, reclaim: true }).map_err(|e| e.errno())?;
        let seq = res.seq;
        self.res_put(res);
        Ok(seq)
    }

    /// Clean shutdown (`bch2_fs_journal_stop()`): asks the flusher to
    /// release every pin, writes a last (flush) entry carrying the roots
    /// and clocks, and refuses reservations from then on.  Returns the
    /// sequence number of that entry: the `journal_seq` of the superblock's
    /// `clean` section.
    ///
    /// Errors: the journal's error; `EBUSY` when pins remain (the
    /// filesystem cannot be marked clean).
    pub fn stop(&self) -> Result<u64, Errno> {
        if let Some(f) = self.flusher.lock().clone() {
            f.flush_pins(u64::MAX, usize::MAX);
        }
        let seq = self.meta()?;
        self.flush_seq(seq)?;
        let mut s = self.lock_state();
        s.stopped = true;
        s.space_available();
        let pinned = s.pin.used() > 0 && s.pin.get(s.pin.front).is_some_and(|p| p.count > 0);
        drop(s);
        *self.flusher.lock() = None;
        if pinned {
            return Err(Errno::EBUSY);
        }
        Ok(seq)
    }

    /// The body of the superblock's `clean` section for a shutdown at
    /// `journal_seq` (`bch2_fs_mark_clean()`): flags (0), the two unused
    /// clocks, `journal_seq`, then the `usage` and `clock` entries and a
    /// `btree_root` entry per root (`bch2_journal_super_entries_add_common()`
    /// then `bch2_btree_roots_to_journal_entries()`), padded to whole
    /// u64s.
    ///
    /// Errors: `ENOMEM`.
    pub fn clean_section(&self, journal_seq: u64) -> Result<Vec<u8>, Errno> {
        let x = self.extras.lock();
        let mut n = 16 + 16 + 2 * 24;
        for r in x.roots.iter().flatten() {
            n += JSET_ENTRY_BYTES + r.key.len();
        }
        let mut out: Vec<u8> = Vec::new();
        out.resize(n, 0)?;
        out[8..16].copy_from_slice(&journal_seq.to_le_bytes());
        let mut ew = EntryWriter { buf: &mut out, at: 16, end: n };
        ew.add(EntryType::Usage as u8, FS_USAGE_KEY_VERSION, 0, &x.key_version.to_le_bytes())?;
        for rw in 0..2u8 {
            let mut c = [0u8; 16];
            c[0] = rw;
            c[8..].copy_from_slice(&x.io_clock[rw as usize].to_le_bytes());
            ew.add(EntryType::Clock as u8, 0, 0, &c)?;
        }
        for (i, r) in x.roots.iter().enumerate() {
            if let Some(r) = r {
                ew.add(EntryType::BtreeRoot as u8, i as u8, r.level, &r.key)?;
            }
        }
        Ok(out)
    }

    /// Prints the journal's state as `bch2_journal_debug_to_text()` does.
    pub fn debug_to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        let s = self.lock_state();
        writeln!(f, "dirty journal entries:\t{}/{}", s.pin.used(), s.pin.size())?;
        writeln!(f, "seq:\t\t\t{}", s.seq)?;
        writeln!(f, "seq_ondisk:\t\t{}", s.seq_ondisk)?;
        writeln!(f, "last_seq:\t\t{}", s.pin.front)?;
        writeln!(f, "last_seq_ondisk:\t{}", s.last_seq_ondisk)?;
        writeln!(f, "flushed_seq_ondisk:\t{}", s.flushed_seq_ondisk)?;
        writeln!(f, "watermark:\t\t{}", if s.watermark_low() { "reclaim" } else { "stripe" })?;
        writeln!(f, "each entry reserved:\t{}", s.entry_u64s_reserved)?;
        writeln!(f, "nr flush writes:\t{}", s.nr_flush_writes)?;
        writeln!(f, "nr noflush writes:\t{}", s.nr_noflush_writes)?;
        let nr = s.nr_flush_writes + s.nr_noflush_writes;
        writeln!(f, "average write size:\t{}", s.entry_bytes_written.checked_div(nr).unwrap_or(0))?;
        writeln!(f, "nr reclaimed pins:\t{}", s.nr_reclaim)?;
        writeln!(f, "current entry sectors:\t{}", s.cur_entry_sectors)?;
        writeln!(f, "current entry error:\t{}", s.cur_entry_error.map_or("(none)", |e| e.name()))?;
        if s.open {
            writeln!(f, "current entry:\t\t{}/{}", s.cur_entry_offset, s.cur_entry_u64s)?;
        } else if s.err.is_some() {
            writeln!(f, "current entry:\t\terror")?;
        } else {
            writeln!(f, "current entry:\t\tclosed")?;
        }
        if let Some(e) = s.err {
            writeln!(f, "error:\t\t\t{e} at seq {}", s.err_seq)?;
        }
        writeln!(f, "unwritten entries:")?;
        for seq in s.seq_ondisk + 1..=s.seq {
            let b = s.buf(seq);
            writeln!(
                f,
                "  seq {seq}: refs {} u64s {} sectors {} expires {} ms{}{}{}",
                b.refs,
                if s.open && seq == s.seq { s.cur_entry_offset } else { b.u64s },
                b.sectors,
                b.expires_ms,
                if b.must_flush { " must_flush" } else { "" },
                if b.noflush { " noflush" } else { "" },
                if b.write_started { " write_started" } else { "" },
            )?;
        }
        writeln!(f, "space:")?;
        for (i, sp) in s.space.iter().enumerate() {
            writeln!(f, "  {}\t{}:{}", SPACE_FROM_NAMES[i], sp.next_entry, sp.total)?;
        }
        writeln!(f, "dev 0:")?;
        s.ja.to_text(f)
    }

    /// Prints the pins (`bch2_journal_pins_to_text()`).
    pub fn pins_to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        self.lock_state().pin.to_text(f)
    }

    /// Prints the roots the journal writes.
    pub fn roots_to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        let x = self.extras.lock();
        for (i, r) in x.roots.iter().enumerate() {
            if let Some(r) = r {
                writeln!(f, "{}: level {}, {} u64s", BtreeIdName(i as u32), r.level, r.key.len() / 8)?;
            }
        }
        Ok(())
    }
}

impl<D: BlockDev + Send + Sync> JournalSink for Journal<D> {
    fn res_get(&self, u64s: u32, flags: ResFlags) -> Result<JournalRes, BchError> {
        self.res_get_with(u64s, flags, &[])
    }

    fn res_get_with(&self, u64s: u32, flags: ResFlags, entries: &[u8]) -> Result<JournalRes, BchError> {
        if entries.len() % 8 != 0 || entries.len() / 8 > u64s as usize {
            return Err(Errno::EINVAL.into());
        }
        let (mut stuck, mut waited) = (0, 0u32);
        loop {
            let mut s = self.lock_state();
            if let Some(mut res) = s.res_get_fast(u64s) {
                if !entries.is_empty() {
                    // Whole entries, checked by the caller's builder
                    // (`jset_entry_push`): copied as they are.
                    let at = JSET_BYTES + res.offset_u64s as usize * 8;
                    let b = s.buf_mut(res.seq);
                    let Some(dst) = b.data.get_mut(at..at + entries.len()) else {
                        drop(s);
                        self.res_put(res);
                        return Err(Errno::EINVAL.into());
                    };
                    dst.copy_from_slice(entries);
                    let n = (entries.len() / 8) as u32;
                    res.offset_u64s += n;
                    res.u64s -= n;
                }
                return Ok(res);
            }
            if s.stopped || s.err.is_some() {
                return Err(Errno::EROFS.into());
            }
            // An entry of the largest size could never hold it.
            let max = (s.buf_size_max / 8) as u64;
            if u64::from(u64s) + u64::from(JSET_U64S) + u64::from(s.entry_u64s_reserved) > max {
                return Err(Errno::EINVAL.into());
            }
            // The open entry filled its buffer while the disk had room:
            // later buffers get bigger (`buf_size_want`).
            let seq = s.seq;
            if s.open {
                let b = s.buf(seq);
                let (have, disk) = (b.data.len(), b.disk_sectors as usize * SECTOR_SIZE);
                if have < disk && have < s.buf_size_max {
                    s.buf_size_want = s.buf_size_want.max(have.saturating_mul(2)).min(s.buf_size_max);
                }
            }
            s.entry_close(self.geo.block_bytes);
            let err = if !flags.reclaim && s.watermark_low() && s.cur_entry_error.is_none() {
                // Below the reclaim watermark only reclaim opens entries;
                // the others wait for it.
                Some(JournalErr::JournalFull)
            } else {
                s.entry_open(&self.cur_opts()).err()
            };
            let others = s.waiting_on_others();
            drop(s);
            let Some(err) = err else { continue };
            if flags.nonblock {
                return Err(BchError::Restart(Restart::JournalResGet));
            }
            if err == JournalErr::Insufficient {
                return Err(Errno::EROFS.into());
            }
            if self.unblock() {
                stuck = 0;
                continue;
            }
            if others && waited < WAIT_MAX {
                // Another thread holds a reservation in the entry to be
                // written next: its res_put writes it.
                waited += 1;
                relax();
                continue;
            }
            stuck += 1;
            if stuck > 3 {
                // Nothing left to write or reclaim: the journal is stuck
                // (`journal_error_check_stuck()`).
                // Only a reclaim-watermark caller finding it so is fatal,
                // as in C; the others get ENOSPC and may come back.
                let mut s = self.lock_state();
                let seq = s.seq;
                if flags.reclaim && matches!(err, JournalErr::JournalFull | JournalErr::PinFull) {
                    log::err!("{}: journal stuck ({err}) at seq {seq}", self.dev.name());
                    self.halt(&mut s, Errno::ENOSPC, seq);
                }
                return Err(Errno::ENOSPC.into());
            }
        }
    }

    fn res_add_entry(&self, res: &mut JournalRes, entry_type: u8, btree_id: u8, level: u8, data: &[u8])
        -> Result<(), Errno> {
        if data.len() % 8 != 0 {
            return Err(Errno::EINVAL);
        }
        let u64s = u32::try_from(1 + data.len() / 8).map_err(|_| Errno::EINVAL)?;
        if u64s > res.u64s {
            return Err(Errno::EINVAL);
        }
        let mut s = self.lock_state();
        let b = s.bufs.get_mut(res.idx as usize).ok_or(Errno::EINVAL)?;
        if b.seq != res.seq || b.write_started {
            return Err(Errno::EINVAL);
        }
        let at = JSET_BYTES + res.offset_u64s as usize * 8;
        let end = b.data.len();
        let mut ew = EntryWriter { buf: &mut b.data, at, end };
        ew.add(entry_type, btree_id, level, data)?;
        res.offset_u64s += u64s;
        res.u64s -= u64s;
        Ok(())
    }

    fn res_put(&self, res: JournalRes) {
        let ready = {
            let mut s = self.lock_state();
            let (open, cur) = (s.open, s.seq);
            let Some(b) = s.bufs.get_mut(res.idx as usize) else { return };
            if b.seq != res.seq || b.refs == 0 {
                log::err!("journal: res_put of unknown reservation at seq {}", res.seq);
                return;
            }
            // The unused rest of the reservation becomes empty entries
            // (zeroes), dropped when the entry is written.
            let at = JSET_BYTES + res.offset_u64s as usize * 8;
            let end = at.saturating_add(res.u64s as usize * 8).min(b.data.len());
            if let Some(rest) = b.data.get_mut(at..end) {
                rest.iter_mut().for_each(|x| *x = 0);
            }
            b.refs -= 1;
            if b.refs == 0 && !(open && res.seq == cur) {
                s.buf_put_final(res.seq);
            }
            s.write_ready()
        };
        if ready {
            self.do_writes();
        }
    }

    fn pin_get(&self, seq: u64, owner: PinOwner) {
        let mut s = self.lock_state();
        if !s.pin.pin_get(seq, owner) {
            log::err!("journal: pin on seq {seq} past the newest entry {}", s.seq);
        }
    }

    fn pin_put(&self, seq: u64, owner: PinOwner) {
        let mut s = self.lock_state();
        if s.pin.put(seq, Some(owner)) {
            s.reclaim_fast();
        }
    }

    fn flush_seq(&self, seq: u64) -> Result<(), Errno> {
        // Not timed when already flushed, as bch2_journal_flush_seq().
        if seq <= self.lock_state().flushed_seq_ondisk {
            return Ok(());
        }
        let start = crate::sync::now_ns();
        let r = self.flush_seq_wait(seq);
        if r.is_ok() {
            self.times.journal_flush_seq.update_from(start);
        }
        r
    }

    fn cur_seq(&self) -> u64 {
        self.published.seq.load(Acquire)
    }
}

impl<D: BlockDev + Send + Sync> Journal<D> {
    /// The journal's time stats.
    pub fn times(&self) -> &JournalTimes {
        &self.times
    }

    /// `bch2_journal_flush_seq()`'s wait: until `seq` is on disk in a flush
    /// entry.
    fn flush_seq_wait(&self, seq: u64) -> Result<(), Errno> {
        let (mut stuck, mut waited) = (0, 0u32);
        loop {
            {
                let mut s = self.lock_state();
                if seq <= s.flushed_seq_ondisk {
                    return Ok(());
                }
                if s.err_seq != 0 && seq >= s.err_seq {
                    return Err(Errno::EIO);
                }
                if seq > s.seq {
                    return Err(Errno::EINVAL);
                }
                if let Some(e) = s.err {
                    return Err(e);
                }
                // A written no-flush entry cannot become one: flush a newer one.
                let mut t = seq.max(s.seq_ondisk + 1);
                while t <= s.seq && s.buf(t).noflush {
                    t += 1;
                }
                if t <= s.seq {
                    s.buf_mut(t).must_flush = true;
                    if s.open && t == s.seq {
                        s.entry_close(self.geo.block_bytes);
                    }
                } else {
                    if s.stopped {
                        return Err(Errno::EROFS);
                    }
                    drop(s);
                    let m = self.meta()?;
                    let mut s = self.lock_state();
                    if m > s.seq_ondisk {
                        s.buf_mut(m).must_flush = true;
                    }
                    if s.open && s.seq == m {
                        s.entry_close(self.geo.block_bytes);
                    }
                }
            }
            if self.unblock() {
                stuck = 0;
                continue;
            }
            if self.lock_state().waiting_on_others() && waited < WAIT_MAX {
                waited += 1;
                relax();
                continue;
            }
            stuck += 1;
            if stuck > 3 {
                return Err(Errno::EIO);
            }
        }
    }
}

/// How many times a caller lets others run while it waits for their
/// reservations before it calls the journal stuck (a thread waiting on a
/// reservation it holds itself would otherwise hang).
const WAIT_MAX: u32 = 1 << 20;

/// Lets another thread run while waiting for it.
fn relax() {
    #[cfg(not(bch_kernel))]
    std::thread::yield_now();
    #[cfg(bch_kernel)]
    core::hint::spin_loop();
}

/// Where writing resumes after a journal read: the newest sequence number
/// in each bucket, the bucket with the newest entry and the sectors free
/// after it (what `journal_read_bucket()` records in `ja`).
///
/// Errors: `EIO` for a failed read, `EUCLEAN` for a bucket the scan
/// rejects, `ENOMEM`.
pub fn scan_ring<D: BlockDev + ?Sized>(dev: &D, geo: &JournalGeometry) -> Result<(JournalStart, u64), Errno> {
    let nr = geo.buckets.len();
    let bucket_bytes = geo.bucket_sectors as usize * SECTOR_SIZE;
    let mut buf: Vec<u8> = Vec::new();
    buf.resize(bucket_bytes, 0)?;
    let mut start = JournalStart::fresh();
    start.bucket_seq.resize(nr, 0)?;
    let mut highest = 0u64;
    for (i, &b) in geo.buckets.iter().enumerate() {
        let sector = b.checked_mul(u64::from(geo.bucket_sectors)).ok_or(Errno::EINVAL)?;
        dev.read_sectors(sector, &mut buf)?;
        let found = scan_bucket(&buf, geo.magic, geo.block_bytes as usize).map_err(|e| e.errno())?;
        for f in found.iter() {
            let seq = f.header.seq;
            if seq > highest {
                highest = seq;
                start.cur_idx = i;
                let used = f.offset_sectors.saturating_add(f.sectors);
                start.sectors_free = geo.bucket_sectors.saturating_sub(used);
            }
            if seq < start.bucket_seq[i] {
                break;
            }
            start.bucket_seq[i] = seq;
        }
    }
    start.after_read = highest > 0;
    Ok((start, highest))
}

/// Where to start after a journal read (the journal part of
/// `bch2_fs_recovery()`): the next entry after the newest one found (8
/// further after an unclean shutdown, those being blacklisted with the
/// written-but-unflushed entries, `[blacklist_seq, cur_seq)`), the replay
/// range's `last_seq` pinned, and the bucket positions from
/// [`scan_ring`].  An empty journal starts fresh.
///
/// Errors: as [`scan_ring`].
pub fn start_after_read<D: BlockDev + ?Sized>(
    dev: &D,
    geo: &JournalGeometry,
    read: &super::JournalRead,
    unclean: bool,
) -> Result<JournalStart, Errno> {
    let (mut start, highest) = scan_ring(dev, geo)?;
    if highest == 0 {
        return Ok(JournalStart::fresh());
    }
    let mut cur_seq = highest.checked_add(1).ok_or(Errno::EINVAL)?;
    if unclean {
        cur_seq = cur_seq.checked_add(8).ok_or(Errno::EINVAL)?;
    }
    let last_seq = if read.journal.last_seq != 0 { read.journal.last_seq } else { highest };
    let blacklist_seq = if read.journal.blacklist_seq != 0 { read.journal.blacklist_seq } else { highest + 1 };
    start.cur_seq = cur_seq;
    start.last_seq = last_seq.min(cur_seq);
    start.blacklist = (blacklist_seq < cur_seq).then_some((blacklist_seq, cur_seq));
    Ok(start)
}
