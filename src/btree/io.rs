// SPDX-License-Identifier: GPL-2.0
//! Node writes (the write half of `btree_io.c`: `__bch2_btree_node_write()`,
//! `bch2_btree_node_write()`, `btree_node_write_done()`).
//!
//! A node's first write is the whole node: `struct btree_node` with the
//! first bset holding every key, its key format computed from them
//! (`bch2_btree_calc_format()`).  Later writes append a `btree_node_entry`
//! at `written` holding the keys changed since, with a `deleted` key
//! (whiteout) at each position whose key was removed; readers merge the
//! bsets, newest first.  Each bset is checksummed with the metadata
//! checksum type and carries the newest journal sequence number of its
//! keys.  When the node has no room left for another bset, the commit
//! compacts it into new space instead (`interior.rs`).
//!
//! The write is synchronous here: the caller holds the node for intent
//! (commits wait), the bytes are built and written, and the bookkeeping
//! (`written`, changed positions, the dirty flag) is updated under the
//! write lock.  Then, with no lock held, the pointer to the node is moved
//! on to the new `sectors_written` (readers read no further than it says)
//! and only then is the node's journal pin dropped.

use core::sync::atomic::Ordering::Relaxed;

use crate::errcode::Errno;
use crate::format::bkey::Bkey;
use crate::format::btree_node::{calc_format, write_bset, write_node, NodeWriteOpts};
use crate::journal::res::PinOwner;
use crate::platform::{Arc, Vec, WriteFlags, SECTOR_SIZE};
use crate::sync::SixLockType;

use super::cache::{flags, Node, NodeData, NodeLock};
use super::trans::{lockrestart_do, BtreeFs};

fn opts(c: &BtreeFs<'_>, n: &Node) -> NodeWriteOpts {
    NodeWriteOpts {
        btree_id: u32::from(n.btree),
        level: n.level,
        seq: n.seq,
        node_seq: 0,
        min_key: n.min_key,
        max_key: n.max_key,
        format: None,
        csum_type: c.geo.csum_type,
        version: c.geo.version,
        journal_seq: 0,
        block_bytes: c.geo.block_bytes,
        node_bytes: c.geo.node_bytes,
        bset_magic: c.geo.bset_magic,
    }
}

/// The bytes of the next write of `n` (`__bch2_btree_node_write()`'s
/// buffer) and, for a first write, the key format chosen.
///
/// Errors: `EIO` when the keys do not fit the node's remaining space (a
/// commit's room check failed to catch it), `ENOMEM`.
fn build(o: NodeWriteOpts, d: &NodeData) -> Result<(Vec<u8>, Option<crate::format::bkey::BkeyFormat>), Errno> {
    let o = NodeWriteOpts { journal_seq: d.journal_seq, node_seq: d.node_seq, ..o };
    if d.written == 0 {
        let mut keys: Vec<(Bkey, &[u8])> = Vec::with_capacity(d.len())?;
        for i in 0..d.len() {
            if let Some(kv) = d.key(i) {
                keys.push(kv)?;
            }
        }
        let f = calc_format(o.min_key, o.max_key, &keys);
        let buf = write_node(&NodeWriteOpts { format: Some(f), ..o }, &keys).map_err(|e| {
            crate::platform::log::err!("btree node write: {e}");
            Errno::EIO
        })?;
        return Ok((buf, Some(f)));
    }
    let keys = d.changes()?;
    let buf = write_bset(&d.format, o.seq, d.written, &o, &keys).map_err(|e| {
        crate::platform::log::err!("btree node write: {e}");
        Errno::EIO
    })?;
    Ok((buf, None))
}

/// Writes a node an interior update just built, before anything points to
/// it (`bch2_btree_node_write()` of a new node): the whole node.
///
/// Errors: `EIO` (device), `ENOMEM`.
pub(crate) fn write_new_node(c: &BtreeFs<'_>, node: &mut Node) -> Result<(), Errno> {
    let o = opts(c, node);
    let (buf, f) = {
        let d = Node::data_unpublished(node);
        d.written = 0;
        d.clear_dirty();
        build(o, d)?
    };
    c.dev.write_sectors(node.sector, &buf, WriteFlags::NONE).inspect_err(|_| {
        c.stats.node_write_errors.fetch_add(1, Relaxed);
    })?;
    c.stats.node_writes.fetch_add(1, Relaxed);
    c.stats.node_write_bytes.fetch_add(buf.len() as u64, Relaxed);
    c.stats.node_writes_initial.fetch_add(1, Relaxed);
    c.stats.node_write_bytes_initial.fetch_add(buf.len() as u64, Relaxed);
    let written = u32::try_from(buf.len() / SECTOR_SIZE).map_err(|_| Errno::EIO)?;
    let d = Node::data_unpublished(node);
    if let Some(f) = f {
        d.format = f;
    }
    d.written = written;
    // The pointer about to be made says what was written.
    node.set_ptr_sectors_written(written);
    Ok(())
}

/// What [`node_write_locked`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// A bset (or the whole node) was written: the pointer to the node
    /// must be brought up to date.
    pub(crate) wrote: bool,
    /// The journal pin the node held (0: none): to drop once the pointer
    /// is updated (the new bset is only read once the pointer says so).
    pub(crate) pin: u64,
}

/// Writes what `g` (held for intent) has not written yet: the whole node
/// the first time, else a new bset; then clears its dirty state.
///
/// Errors: `EIO` (device, or no room in the node), `ENOMEM`.
pub(crate) fn node_write_locked(c: &BtreeFs<'_>, g: &mut NodeLock) -> Result<Written, Errno> {
    let node = g.node().clone();
    if g.lock_type() != SixLockType::Intent || node.has(flags::FAKE | flags::FREED) || !node.has(flags::DIRTY) {
        return Ok(Written::default());
    }
    if g.data().nr_dirty() == 0 && g.data().written != 0 {
        // Dirty with nothing changed since the last write.
        let mut w = g.write().ok_or(Errno::EINVAL)?;
        let pin = core::mem::take(&mut w.journal_pin);
        node.clear_flags(flags::DIRTY | flags::NEED_WRITE);
        return Ok(Written { wrote: false, pin });
    }
    let (buf, f) = build(opts(c, &node), g.data())?;
    let at = node.sector + u64::from(g.data().written);
    node.set_flags(flags::WRITE_IN_FLIGHT);
    let r = c.dev.write_sectors(at, &buf, WriteFlags::NONE);
    if let Err(e) = r {
        node.clear_flags(flags::WRITE_IN_FLIGHT);
        c.stats.node_write_errors.fetch_add(1, Relaxed);
        return Err(e);
    }
    c.stats.node_writes.fetch_add(1, Relaxed);
    c.stats.node_write_bytes.fetch_add(buf.len() as u64, Relaxed);
    if g.data().written == 0 {
        c.stats.node_writes_initial.fetch_add(1, Relaxed);
        c.stats.node_write_bytes_initial.fetch_add(buf.len() as u64, Relaxed);
    }
    let sectors = u32::try_from(buf.len() / SECTOR_SIZE).map_err(|_| Errno::EIO)?;
    let mut w = g.write().ok_or(Errno::EINVAL)?;
    if let Some(f) = f {
        w.format = f;
    }
    w.written += sectors;
    w.clear_dirty();
    let pin = core::mem::take(&mut w.journal_pin);
    node.clear_flags(flags::DIRTY | flags::NEED_WRITE | flags::WRITE_IN_FLIGHT);
    Ok(Written { wrote: true, pin })
}

/// Writes what `node` has not written yet (`bch2_btree_node_write()`),
/// then points its parent's key (or the root) at the new written size
/// (`btree_node_write_work()` -> `bch2_btree_node_update_key()`: a
/// `btree_keys` entry at the parent's level, or a `btree_root` entry),
/// then drops the node's journal pin.  Returns whether anything was
/// written.  Call with no btree locks held.
///
/// Errors: `EIO` (device), errors of the pointer update, `ENOMEM`.
pub fn node_write(c: &BtreeFs<'_>, node: &Arc<Node>) -> Result<bool, Errno> {
    let mut g = NodeLock::lock(node.clone(), SixLockType::Intent);
    let w = node_write_locked(c, &mut g)?;
    drop(g);
    let r = if w.wrote { lockrestart_do(c, |t| t.update_ptr_written(node)) } else { Ok(()) };
    if w.pin != 0 {
        c.journal.pin_put(w.pin, PinOwner::BtreeNode(node.btree, node.level));
    }
    r.map(|_| w.wrote)
}

/// Writes every dirty node in the cache (`bch2_btree_flush_all_writes()`,
/// and what journal reclaim asks of the btree); returns how many were
/// written.  Takes each node's intent lock, waiting for it: call it with
/// no btree locks held.
///
/// Errors: the first write error (the other nodes are still tried).
pub fn write_dirty_nodes(c: &BtreeFs<'_>) -> Result<usize, Errno> {
    let mut n = 0;
    let mut err = None;
    // Each write dirties the parent (its pointer's written size): the
    // leaves first, then the levels above, up to the root.
    for _ in 0..2 * super::trans::MAX_DEPTH + 2 {
        let nodes = c.cache.nodes_with(flags::DIRTY)?;
        if nodes.is_empty() {
            break;
        }
        for node in nodes.iter() {
            match node_write(c, node) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
        }
        if err.is_some() {
            break;
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(n),
    }
}
