// SPDX-License-Identifier: GPL-2.0
//! Recovery, read side: the keys of the journal that are newer than the
//! btree nodes, sorted for the btree + journal overlay.  Nothing is
//! replayed into the btrees (the filesystem is read-only); iterators
//! ([`crate::btree::iter`]) overlay these keys instead.
//!
//! Matches, in `fs/bcachefs`: `recovery.c` (`bch2_fs_recovery()` up to
//! journal replay) and `btree_journal_iter.c`.

pub mod journal_keys;

pub use journal_keys::{JournalKey, JournalKeys};
