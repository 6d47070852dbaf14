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
//! (`written`, changed positions, the dirty flag, the journal pin) is
//! updated under the write lock.

use core::sync::atomic::Ordering::Relaxed;

use crate::errcode::Errno;
use crate::format::bkey::{Bkey, KeyType};
use crate::format::btree_node::{calc_format, write_bset, write_node, NodeWriteOpts};
use crate::journal::res::PinOwner;
use crate::platform::{Vec, WriteFlags, SECTOR_SIZE};
use crate::sync::SixLockType;

use super::cache::{flags, Node, NodeData, NodeLock};
use super::trans::BtreeFs;

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
    let o = NodeWriteOpts { journal_seq: d.journal_seq, ..o };
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
    let mut keys: Vec<(Bkey, &[u8])> = Vec::with_capacity(d.nr_dirty())?;
    for &p in d.dirty_positions() {
        match d.find(p).and_then(|i| d.key(i)) {
            Some(kv) => keys.push(kv)?,
            None => keys.push((Bkey::new(KeyType::Deleted, p, 0), &[][..]))?,
        }
    }
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
    c.dev.write_sectors(node.sector, &buf, WriteFlags::NONE)?;
    c.stats.node_writes.fetch_add(1, Relaxed);
    let d = Node::data_unpublished(node);
    if let Some(f) = f {
        d.format = f;
    }
    d.written = u32::try_from(buf.len() / SECTOR_SIZE).map_err(|_| Errno::EIO)?;
    Ok(())
}

/// Writes what `g` (held for intent) has not written yet
/// (`bch2_btree_node_write()`): the whole node the first time, else a new
/// bset; then clears its dirty state and drops its journal pin.  Returns
/// whether anything was written.
///
/// Errors: `EIO` (device, or no room in the node), `ENOMEM`.
pub fn node_write(c: &BtreeFs<'_>, g: &mut NodeLock) -> Result<bool, Errno> {
    let node = g.node().clone();
    if g.lock_type() != SixLockType::Intent || node.has(flags::FAKE | flags::FREED) || !node.has(flags::DIRTY) {
        return Ok(false);
    }
    if g.data().nr_dirty() == 0 && g.data().written != 0 {
        // Dirty with nothing changed (all changes were rewritten).
        let mut w = g.write().ok_or(Errno::EINVAL)?;
        let pin = core::mem::take(&mut w.journal_pin);
        node.clear_flags(flags::DIRTY | flags::NEED_WRITE);
        drop(w);
        if pin != 0 {
            c.journal.pin_put(pin, PinOwner::BtreeNode(node.btree, node.level));
        }
        return Ok(false);
    }
    let (buf, f) = build(opts(c, &node), g.data())?;
    let at = node.sector + u64::from(g.data().written);
    node.set_flags(flags::WRITE_IN_FLIGHT);
    let r = c.dev.write_sectors(at, &buf, WriteFlags::NONE);
    if let Err(e) = r {
        node.clear_flags(flags::WRITE_IN_FLIGHT);
        return Err(e);
    }
    c.stats.node_writes.fetch_add(1, Relaxed);
    let sectors = u32::try_from(buf.len() / SECTOR_SIZE).map_err(|_| Errno::EIO)?;
    let mut w = g.write().ok_or(Errno::EINVAL)?;
    if let Some(f) = f {
        w.format = f;
    }
    w.written += sectors;
    w.clear_dirty();
    let pin = core::mem::take(&mut w.journal_pin);
    node.clear_flags(flags::DIRTY | flags::NEED_WRITE | flags::WRITE_IN_FLIGHT);
    drop(w);
    if pin != 0 {
        c.journal.pin_put(pin, PinOwner::BtreeNode(node.btree, node.level));
    }
    Ok(true)
}

/// Writes every dirty node in the cache (`bch2_btree_flush_all_writes()`,
/// and what journal reclaim asks of the btree); returns how many were
/// written.  Takes each node's intent lock, waiting for it: call it with
/// no btree locks held.
///
/// Errors: the first write error (the other nodes are still tried).
pub fn write_dirty_nodes(c: &BtreeFs<'_>) -> Result<usize, Errno> {
    let nodes = c.cache.nodes_with(flags::DIRTY)?;
    let mut n = 0;
    let mut err = None;
    for node in nodes.iter() {
        let mut g = NodeLock::lock(node.clone(), SixLockType::Intent);
        match node_write(c, &mut g) {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(n),
    }
}
