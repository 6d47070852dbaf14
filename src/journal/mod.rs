// SPDX-License-Identifier: GPL-2.0
//! The journal.
//!
//! - [`read`](mod@read): the read side: find every jset in the journal buckets the
//!   superblock names, keep the replay range, take the btree roots from it
//!   (`journal_io.c`'s `bch2_journal_read()`, `recovery.c`'s
//!   `read_btree_roots()`).
//! - [`res`]: what the rest of the core sees of the write side:
//!   reservations, pins and flushes ([`JournalSink`]).
//!
//! The on-disk format (jsets, entries, the sequence rules) is in
//! [`crate::format::jset`].

pub mod read;
pub mod reclaim;
pub mod res;
pub mod seq_blacklist;
pub mod types;
pub mod write;

pub use read::{
    btree_roots, find_root, read, read_journal, Journal, JournalRead, JournalReadError, Root, MAX_JOURNAL_BUCKETS,
    NR_BTREES,
};
pub use res::{JournalRes, JournalSink, PinOwner, ResFlags};
