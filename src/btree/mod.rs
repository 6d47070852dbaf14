// SPDX-License-Identifier: GPL-2.0
//! Btrees: the node cache ([`cache`]) and in-memory nodes ([`node`]),
//! read-only iterators over the leaves with the journal keys overlaid
//! ([`iter`]), and the write side: node writes ([`io`]), transactions with
//! paths, iterators and commits ([`trans`], [`commit`]) and interior
//! updates ([`interior`]).
//!
//! Matches, in `fs/bcachefs`: `btree_cache.c`, `btree_io.c`,
//! `btree_iter.c`, `btree_journal_iter.c`, `btree_locking.c`,
//! `btree_trans_commit.c`, `btree_update.c` and `btree_update_interior.c`.

pub mod cache;
pub mod iter;
pub mod node;

pub use cache::{BtreeCache, Node, NodePtr, NodeReadError, NodeRef};
pub use iter::{BtreeCtx, BtreeIter};
pub mod commit;
pub mod extents;
pub mod interior;
pub mod io;
pub mod trans;
pub mod write_buffer;
#[cfg(not(bch_kernel))]
pub mod testing;

pub use io::{node_write, write_dirty_nodes};
pub use trans::{
    commit_do, lockrestart_do, BtreeFs, BtreeGeometry, BtreeNodeAlloc, BtreePath, BtreeTrans, BtreeTriggers,
    CommitFlags, IterId,
};
