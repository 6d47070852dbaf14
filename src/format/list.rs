// SPDX-License-Identifier: GPL-2.0
//! The old home of the journal read and the btree roots, kept as
//! re-exports so that code written against these paths still builds.
//!
//! The mount-critical code that lived here moved out of `format/` (which
//! is on-disk types only):
//!
//! - the journal read ([`read_journal`], [`Journal`]), the btree roots
//!   ([`find_root`], [`Root`]) and their error ([`ListError`], now
//!   [`crate::journal::JournalReadError`]) to [`crate::journal::read`](mod@crate::journal::read);
//! - [`FsInfo`], the superblock facts the read side needs, to
//!   [`crate::bcachefs`], beside the filesystem it describes.
//!
//! The second btree reader that lived here (the tool's own node walk and
//! journal overlay) is gone: `bcachefs list` reads through the core's
//! [`crate::bcachefs::Fs`] and [`crate::btree::BtreeIter`].  New code
//! should use the new paths.

pub use crate::bcachefs::FsInfo;
pub use crate::journal::read::{
    find_root, read_journal, Journal, JournalReadError as ListError, Root, MAX_JOURNAL_BUCKETS,
};
