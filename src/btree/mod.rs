// SPDX-License-Identifier: GPL-2.0
//! Btrees, read side: the node cache ([`cache`]) and iterators over the
//! leaves with the journal keys overlaid ([`iter`]).
//!
//! Matches, in `fs/bcachefs`: `btree_cache.c`, `btree_io.c` (read half),
//! `btree_iter.c` and `btree_journal_iter.c`.

pub mod cache;
pub mod iter;

pub use cache::{BtreeCache, Node, NodePtr, NodeReadError, NodeRef};
pub use iter::{BtreeCtx, BtreeIter};
