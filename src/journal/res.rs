// SPDX-License-Identifier: GPL-2.0
//! What the rest of the filesystem asks of the journal's write side:
//! reservations, entries inside them, pins and flushes.
//!
//! Matches, in `fs/bcachefs`: `journal.h` (`bch2_journal_res_get()`,
//! `bch2_journal_add_entry()`, `bch2_journal_res_put()`,
//! `bch2_journal_flush_seq()`) and `journal_reclaim.h`
//! (`bch2_journal_pin_add()`, `bch2_journal_pin_drop()`).
//!
//! A btree commit (`crate::btree`) holds a [`JournalRes`] while it copies
//! its keys into the open journal entry and inserts them into the leaves;
//! each dirty btree node then pins the oldest sequence number whose keys it
//! holds until the node is written.  The journal ([`crate::journal`]'s
//! write side) implements [`JournalSink`]; tests of the btree alone use an
//! in-memory one.  See `Documentation/filesystems/bcachefs-rs/write-path.rst`.

use core::fmt;

use crate::errcode::{BchError, Errno};

/// Space reserved in one journal entry (`struct journal_res`).
///
/// Obtained from [`JournalSink::res_get`], filled with
/// [`JournalSink::res_add_entry`], released with [`JournalSink::res_put`].
/// A reservation keeps its entry open: the entry is not written until
/// every reservation in it was put.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use = "a journal reservation must be released with res_put"]
pub struct JournalRes {
    /// Sequence number of the entry the space is in.
    pub seq: u64,
    /// Where the reserved space starts in that entry's payload, in u64s.
    pub offset_u64s: u32,
    /// Reserved space left, in u64s (entry headers included).
    pub u64s: u32,
    /// Index of the entry's in-memory buffer (C's `res->idx`), for the
    /// implementation.
    pub idx: u32,
}

/// How [`JournalSink::res_get`] may wait (`JOURNAL_RES_GET_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResFlags {
    /// Do not block: return [`crate::errcode::Restart::JournalResGet`]
    /// when the reservation cannot be had at once (the caller holds btree
    /// locks; `JOURNAL_RES_GET_NONBLOCK`).
    pub nonblock: bool,
    /// May use the space kept for journal reclaim
    /// (`BCH_WATERMARK_reclaim`, `BCH_TRANS_COMMIT_journal_reclaim`).
    pub reclaim: bool,
}

/// Who holds a pin, for `journal_pins` and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinOwner {
    /// A dirty btree node: `(btree id, level)`.
    BtreeNode(u8, u8),
    /// The btree write buffer's keys.
    WriteBuffer,
    /// A btree interior update in flight (`struct btree_update`).
    InteriorUpdate,
    /// Anything else (tests).
    Other,
}

impl fmt::Display for PinOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinOwner::BtreeNode(b, l) => {
                write!(f, "btree node {} level {l}", crate::format::bkey::BtreeIdName(u32::from(*b)))
            }
            PinOwner::WriteBuffer => f.write_str("btree write buffer"),
            PinOwner::InteriorUpdate => f.write_str("btree interior update"),
            PinOwner::Other => f.write_str("other"),
        }
    }
}

/// Appends a `jset_entry` of type `ty` for `btree_id`/`level` with
/// payload `data` (whole u64s) to `out`, as
/// [`JournalSink::res_get_with`] takes them: the 8-byte header (`u64s`
/// of the payload, btree id, level, type) then the payload.
///
/// Errors: `EINVAL` (a payload of a partial u64, or too long), `ENOMEM`.
pub fn jset_entry_push(out: &mut crate::platform::Vec<u8>, ty: u8, btree_id: u8, level: u8, data: &[u8]) -> Result<(), Errno> {
    if data.len() % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let u64s = u16::try_from(data.len() / 8).map_err(|_| Errno::EINVAL)?;
    out.extend_from_slice(&crate::format::jset::jset_entry_header(u64s, ty, btree_id, level))?;
    out.extend_from_slice(data)?;
    Ok(())
}

/// [`JournalSink::res_get_with`] through `res_get` and one `res_add_entry`
/// per entry (the trait's default, and a wrapper's way when it must see
/// each entry); the reservation is put back on an error.
///
/// Errors: as [`JournalSink::res_get`]; `EINVAL` for malformed entries.
pub fn res_get_adding<J: JournalSink + ?Sized>(j: &J, u64s: u32, flags: ResFlags, entries: &[u8]) -> Result<JournalRes, BchError> {
    let mut res = j.res_get(u64s, flags)?;
    for e in crate::format::jset::iter_entries(entries, res.seq) {
        let r = e.map_err(|_| Errno::EINVAL).and_then(|e| j.res_add_entry(&mut res, e.ty, e.btree_id, e.level, e.data));
        if let Err(err) = r {
            j.res_put(res);
            return Err(err.into());
        }
    }
    Ok(res)
}

/// The journal as its writers see it.
///
/// Every method may be called from several threads at once.  Errors are
/// `EROFS` once the journal was shut down or hit an I/O error
/// (`journal_error`), `ENOSPC` when the journal is full and reclaim cannot
/// free space, `EIO` for a failed write.
pub trait JournalSink: Sync {
    /// Reserves `u64s` (keys plus their jset entry headers) in the open
    /// journal entry, opening a new one when it is full.
    ///
    /// Errors: as above; [`BchError::Restart`] with `JournalResGet` when
    /// `flags.nonblock` and it would block.
    fn res_get(&self, u64s: u32, flags: ResFlags) -> Result<JournalRes, BchError>;

    /// Appends one jset entry of type `entry_type` (`BCH_JSET_ENTRY_*`)
    /// for `btree_id`/`level` with payload `data` (whole bkeys for
    /// btree_keys entries) into the reservation, consuming `1 +
    /// data.len() / 8` u64s of it.
    ///
    /// Errors: `EINVAL` when the reservation is too small or `data` is not
    /// a multiple of 8 bytes.
    fn res_add_entry(&self, res: &mut JournalRes, entry_type: u8, btree_id: u8, level: u8, data: &[u8])
        -> Result<(), Errno>;

    /// [`res_get`](Self::res_get) of `u64s`, then `entries` (whole
    /// `jset_entry`s, as [`jset_entry_push`] appends them) copied into
    /// the reservation; the journal does both under one lock (C's commit
    /// copies its keys into the reservation without a lock at all).
    ///
    /// Errors: as [`res_get`](Self::res_get); `EINVAL` when `entries` is
    /// malformed or larger than `u64s`.
    fn res_get_with(&self, u64s: u32, flags: ResFlags, entries: &[u8]) -> Result<JournalRes, BchError> {
        res_get_adding(self, u64s, flags, entries)
    }

    /// Releases the reservation; the entry may be written once its last
    /// reservation is put.
    fn res_put(&self, res: JournalRes);

    /// Takes a pin on `seq` for `owner`: journal reclaim will not let
    /// `last_seq` pass `seq` until the pin is dropped
    /// (`bch2_journal_pin_add()`).  A `seq` older than `last_seq` pins
    /// `last_seq`.
    fn pin_get(&self, seq: u64, owner: PinOwner);

    /// Drops a pin taken with [`JournalSink::pin_get`]
    /// (`bch2_journal_pin_drop()`).
    fn pin_put(&self, seq: u64, owner: PinOwner);

    /// Writes (with a device flush) every entry up to and including `seq`
    /// and waits for it (`bch2_journal_flush_seq()`): when it returns,
    /// everything committed at `seq` or before survives a crash.
    fn flush_seq(&self, seq: u64) -> Result<(), Errno>;

    /// Sequence number of the open entry (`journal_cur_seq()`).
    fn cur_seq(&self) -> u64;
}
