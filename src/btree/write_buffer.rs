// SPDX-License-Identifier: GPL-2.0
//! The btree write buffer (`btree_write_buffer.c`, `btree_write_buffer.h`,
//! `btree_write_buffer_types.h`).
//!
//! Updates to the write-buffered btrees ([`btree_uses_write_buffer`]:
//! backpointers and lru here) are queued with
//! [`BtreeTrans::update_buffered`](super::BtreeTrans::update_buffered)
//! (`bch2_trans_update_buffered()`).  The commit copies them into the
//! journal as `write_buffer_keys` entries and does not touch the leaves
//! (no leaf lock, no insert, no trigger).  When the journal writes the
//! entry it hands those keys to the write buffer (the
//! [`JsetEntryHook::write_buffer_keys`] of [`BtreeWriteBuffer`]:
//! `bch2_journal_keys_to_write_buffer()`), writes them as plain
//! `btree_keys`, and takes one journal pin ([`PinOwner::WriteBuffer`]) on
//! the entry's sequence number for the write buffer: `last_seq` cannot
//! pass an entry whose buffered keys are not in the btree yet.
//!
//! A flush ([`BtreeWriteBuffer::flush`], `bch2_btree_write_buffer_flush_locked()`)
//! sorts the buffered keys by (btree, position), keeps the newest at each
//! position (journal order: a later key wins), and inserts them into the
//! leaves through the btree commit with
//! [`CommitFlags::no_journal_res`] (`BCH_TRANS_COMMIT_no_journal_res`):
//! the keys are not journalled again, each leaf is pinned at the oldest
//! journal sequence number of the keys it got.  Splits and compactions
//! happen as in any commit.  Then the write buffer's pins are dropped.
//!
//! Who flushes: the mount before reading or shutting down
//! (`crate::fs_rw::BchFs::flush`, `bch2_btree_write_buffer_flush_sync()`)
//! and journal reclaim when the journal fills (the write buffer's pin is
//! then the oldest, `btree_write_buffer_journal_flush()`).  After an
//! unclean shutdown the keys are replayed from the journal as any
//! `btree_keys` are.
//!
//! Not here (C has them): the buffer is one locked vector (C's per-CPU
//! `inc`/`flushing` pair and the journal-side `journal_keys_to_wb`
//! fast path); accounting keys still go through the leaves (the trigger
//! writes the sum, the commit journals the delta: see
//! `super::commit::accounting_delta_bytes`); rebalance_work and
//! deleted_inodes, which C also buffers, are ordinary updates; the node
//! pointers' triggers (`crate::triggers::FsTriggers::node_ptrs_catch_up`)
//! bypass the buffer (`BtreeTrans::write_buffer_bypass`), see
//! `write-path.rst`.

use core::fmt;

use crate::errcode::{BchError, Errno};
use crate::format::bkey::{Bkey, BkeyI, BtreeId, BKEY_BYTES};
use crate::format::bpos::Bpos;
use crate::journal::res::PinOwner;
use crate::journal::write::{EntryWriter, JsetEntryHook};
use crate::platform::{Mutex, Vec};

use super::trans::{bkey_i, BtreeFs, BtreeTrans, CommitFlags};

/// Keys inserted per flush commit.
const FLUSH_BATCH: usize = 64;

/// Whether updates to `btree` go through the btree write buffer: the
/// btrees 6.12 updates with `bch2_trans_update_buffered()` that this
/// crate buffers (backpointers, lru).
pub fn btree_uses_write_buffer(btree: u8) -> bool {
    btree == BtreeId::Backpointers as u8 || btree == BtreeId::Lru as u8
}

/// One buffered key (`struct btree_write_buffered_key`): the btree, the
/// journal sequence number of the entry that holds it, and the key.
#[derive(Debug)]
pub struct WbKey {
    /// Btree id.
    pub btree: u8,
    /// Sequence number of the journal entry the key was written in.
    pub journal_seq: u64,
    /// The key (a `deleted` key deletes).
    pub k: BkeyI,
}

/// What the buffer holds (C's `wb->inc` and the pins it has).
struct Inner {
    /// Keys in journal order.
    keys: Vec<WbKey>,
    /// Sequence numbers the write buffer holds a journal pin on,
    /// ascending.
    pinned: Vec<u64>,
    /// Flushes done.
    nr_flushes: u64,
    /// Keys inserted by flushes (after dedupe).
    nr_flushed: u64,
    /// Keys dropped by dedupe (an older key at the same position).
    nr_deduped: u64,
}

/// The btree write buffer (`struct btree_write_buffer`).  Shared with the
/// journal, which hands it keys as its [`JsetEntryHook`].
pub struct BtreeWriteBuffer {
    inner: Mutex<Inner>,
    /// Serialises flushes (`wb->flushing.lock`).
    flush_lock: Mutex<()>,
}

/// `btree_write_buffer_to_text`-style numbers: keys held, the oldest
/// journal sequence number pinned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WbStats {
    /// Keys in the buffer.
    pub nr_keys: usize,
    /// Oldest journal sequence number the buffer pins (0: none).
    pub oldest_seq: u64,
    /// Flushes so far.
    pub nr_flushes: u64,
    /// Keys inserted by flushes.
    pub nr_flushed: u64,
}

impl BtreeWriteBuffer {
    /// An empty write buffer (`bch2_fs_btree_write_buffer_init()`).
    ///
    /// Errors: `ENOMEM`.
    pub fn new() -> Result<Self, Errno> {
        Ok(BtreeWriteBuffer {
            inner: Mutex::new(Inner { keys: Vec::new(), pinned: Vec::new(), nr_flushes: 0, nr_flushed: 0, nr_deduped: 0 })?,
            flush_lock: Mutex::new(())?,
        })
    }

    /// Keys held and the oldest pinned sequence number.
    pub fn stats(&self) -> WbStats {
        let i = self.inner.lock();
        WbStats {
            nr_keys: i.keys.len(),
            oldest_seq: i.pinned.first().copied().unwrap_or(0),
            nr_flushes: i.nr_flushes,
            nr_flushed: i.nr_flushed,
        }
    }

    /// Whether the buffer holds no key.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().keys.is_empty()
    }

    /// Adds the keys of one `write_buffer_keys` entry (`keys`: unpacked
    /// bkeys with their values) of journal entry `seq`
    /// (`bch2_journal_key_to_wb()`).
    ///
    /// Errors: `EINVAL` (a malformed key), `ENOMEM`.
    fn add_keys(&self, seq: u64, btree: u8, keys: &[u8]) -> Result<(), Errno> {
        let mut i = self.inner.lock();
        let mut at = 0;
        while at < keys.len() {
            let hdr: &[u8; BKEY_BYTES] = keys
                .get(at..at + BKEY_BYTES)
                .and_then(|b| b.try_into().ok())
                .ok_or(Errno::EINVAL)?;
            let k = Bkey::from_bytes(hdr);
            let len = usize::from(k.u64s) * 8;
            if len < BKEY_BYTES || at + len > keys.len() {
                return Err(Errno::EINVAL);
            }
            let k = bkey_i(&k, &keys[at + BKEY_BYTES..at + len])?;
            i.keys.push(WbKey { btree, journal_seq: seq, k })?;
            at += len;
        }
        if i.pinned.last().map_or(true, |&s| s < seq) {
            i.pinned.push(seq)?;
        }
        Ok(())
    }

    /// Flushes every buffered key into the btree
    /// (`bch2_btree_write_buffer_flush_locked()`): sorted by (btree,
    /// position), the newest at each position kept, inserted in batches
    /// (up to 64 keys, halved while a leaf cannot take its share even
    /// after a split) by commits with [`CommitFlags::no_journal_res`];
    /// then the write
    /// buffer's journal pins are dropped.  Keys the journal has not
    /// written yet are not here: the caller writes the open journal entry
    /// first when it needs every update (`bch2_btree_write_buffer_flush_sync()`).
    /// Returns how many keys were inserted.
    ///
    /// On an error every key taken stays buffered (re-inserting the ones
    /// already committed is harmless) and the pins are kept.
    ///
    /// Errors: those of the commits (`EIO`, `ENOSPC`, `ENOMEM`).
    pub fn flush(&self, c: &BtreeFs<'_>) -> Result<usize, Errno> {
        let _fl = self.flush_lock.lock();
        let (keys, pinned) = {
            let mut i = self.inner.lock();
            (core::mem::replace(&mut i.keys, Vec::new()), core::mem::replace(&mut i.pinned, Vec::new()))
        };
        if keys.is_empty() && pinned.is_empty() {
            return Ok(0);
        }
        match Self::insert_sorted(c, &keys) {
            Ok(n) => {
                for &seq in pinned.iter() {
                    c.journal.pin_put(seq, PinOwner::WriteBuffer);
                }
                let mut i = self.inner.lock();
                i.nr_flushes += 1;
                i.nr_flushed += n as u64;
                i.nr_deduped += (keys.len() - n) as u64;
                Ok(n)
            }
            Err(e) => {
                // Put everything back in front of what came meanwhile
                // (journal order is kept; a failed allocation here loses
                // keys, which are still in the journal).
                let mut i = self.inner.lock();
                let mut newer = core::mem::replace(&mut i.keys, keys);
                let mut rev: Vec<WbKey> = Vec::new();
                while let Some(k) = newer.pop() {
                    if rev.push(k).is_err() {
                        break;
                    }
                }
                while let Some(k) = rev.pop() {
                    let _ = i.keys.push(k);
                }
                let newer_pins = core::mem::replace(&mut i.pinned, pinned);
                let _ = i.pinned.extend_from_slice(&newer_pins);
                Err(e)
            }
        }
    }

    /// Sorts `keys` by (btree, position, journal order), keeps the last at
    /// each position and commits them.  Returns how many were inserted.
    fn insert_sorted(c: &BtreeFs<'_>, keys: &[WbKey]) -> Result<usize, Errno> {
        let mut ord: Vec<(u8, Bpos, usize)> = Vec::with_capacity(keys.len())?;
        for (idx, k) in keys.iter().enumerate() {
            ord.push((k.btree, k.k.k.p, idx))?;
        }
        crate::util::sort::sort(&mut ord);
        let mut keep: Vec<usize> = Vec::with_capacity(ord.len())?;
        for j in 0..ord.len() {
            let last = ord.get(j + 1).map_or(true, |nx| (nx.0, nx.1) != (ord[j].0, ord[j].1));
            if last {
                keep.push(ord[j].2)?;
            }
        }
        let flags = CommitFlags { no_journal_res: true, journal_reclaim: true, no_merge: true, ..Default::default() };
        // C inserts key by key; here a batch per commit, halved while a
        // leaf cannot take its share even after a split (small nodes).
        let mut trans = BtreeTrans::new(c);
        let (mut at, mut batch, mut restarts) = (0, FLUSH_BATCH, 0u32);
        while at < keep.len() {
            let end = (at + batch).min(keep.len());
            trans.begin();
            let r = (|| -> Result<(), BchError> {
                for &idx in keep[at..end].iter() {
                    let wk = &keys[idx];
                    let mut k = bkey_i(&wk.k.k, &wk.k.v)?;
                    if k.k.is_deleted() {
                        k.k.size = 0;
                        k.v.clear();
                    }
                    trans.push_update_journalled(wk.btree, k, wk.journal_seq)?;
                }
                trans.commit(flags)
            })();
            match r {
                Ok(()) => {
                    at = end;
                    restarts = 0;
                }
                Err(BchError::Restart(_)) => {
                    trans.restart_count += 1;
                    c.stats.restarts.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                    restarts += 1;
                    if restarts >= 4 && batch > 1 {
                        batch /= 2;
                        restarts = 0;
                    }
                }
                Err(BchError::Errno(e)) => return Err(e),
            }
        }
        Ok(keep.len())
    }

    /// Prints the buffer (C's `btree_write_buffer` debug output): keys
    /// held, oldest pinned sequence number, pins, flush counters.
    pub fn to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        let i = self.inner.lock();
        writeln!(f, "nr keys: {}", i.keys.len())?;
        writeln!(f, "oldest seq: {}", i.pinned.first().copied().unwrap_or(0))?;
        write!(f, "pinned seqs:")?;
        for s in i.pinned.iter() {
            write!(f, " {s}")?;
        }
        writeln!(f)?;
        writeln!(f, "flushes: {}", i.nr_flushes)?;
        writeln!(f, "keys flushed: {}", i.nr_flushed)?;
        writeln!(f, "keys deduped: {}", i.nr_deduped)
    }
}

impl JsetEntryHook for BtreeWriteBuffer {
    fn u64s_max(&self) -> u32 {
        0
    }

    fn add_entries(&self, _seq: u64, _w: &mut EntryWriter<'_>) -> Result<(), Errno> {
        Ok(())
    }

    fn write_buffer_keys(&self, seq: u64, btree_id: u8, keys: &[u8]) -> Result<(), Errno> {
        self.add_keys(seq, btree_id, keys)
    }

    fn pins_write_buffer_keys(&self) -> bool {
        true
    }
}
