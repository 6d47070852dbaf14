// SPDX-License-Identifier: GPL-2.0
//! Interior updates (`btree_update_interior.c`): split, compaction
//! (rewrite), new root, and merge of underfull siblings.
//!
//! Each is one `btree_update`: the path from the root down to the node is
//! locked for intent (which serializes interior updates of a btree), the
//! journal reservation is taken first, the new nodes are built, allocated
//! ([`super::BtreeNodeAlloc`]) and written whole before anything points to them,
//! and then their pointers go into the parent (as `btree_keys` journal
//! entries at the parent's level, the parent dirty and pinning the
//! journal) or become the new root (a `btree_root` journal entry).  The
//! old nodes are marked freed (paths holding them restart), dropped from
//! the cache, their journal pins released (their keys are in the written
//! new nodes) and their space handed back to the allocator with the
//! journal sequence number after which it may be reused.
//!
//! A parent without room for the new pointers is split first (the update
//! returns "parent full" and the caller works upward), so no update ever
//! needs more than one parent change.

use core::sync::atomic::Ordering::Relaxed;

use crate::errcode::{BchError, Errno, Restart};
use crate::format::bkey::{Bkey, BkeyI, KeyType};
use crate::format::bpos::{Bpos, POS_MIN, SPOS_MAX};
use crate::format::jset::EntryType;
use crate::journal::res::{JournalRes, PinOwner, ResFlags};
use crate::platform::{arc_new, Arc, Vec};
use crate::sync::SixLockType;

use super::cache::{flags, Node, NodeData, NodeLock, NodePtr};
use super::commit::key_bytes;
use super::io::write_new_node;
use super::trans::{bkey_i, BtreeFs, BtreeTrans, BTREE_PTR_U64S, MAX_DEPTH};

/// What an interior update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// The parent has no room for the new pointers: split it first.
    ParentFull,
    /// Nothing to do (a merge whose conditions no longer hold).
    Skipped,
}

/// How to replace a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Split in two if it holds more than the split threshold, else
    /// compact (`btree_split()`).
    Auto,
    /// Rewrite to one new node (`bch2_btree_node_rewrite()`).
    Rewrite,
}

/// Describes one interior update for messages (`bch2_btree_update_to_text()`).
#[derive(Clone, Copy, Debug)]
pub struct BtreeUpdate {
    /// Btree id.
    pub btree: u8,
    /// Level of the nodes replaced.
    pub level: u8,
    /// What was done.
    pub kind: &'static str,
    /// Nodes freed (sectors; 0: none, or the fake root).
    pub old: [u64; 2],
    /// Nodes made (sectors; 0: none); a new root last.
    pub new: [u64; 3],
    /// Journal sequence number of the update.
    pub journal_seq: u64,
}

impl core::fmt::Display for BtreeUpdate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "btree_update: {} btree={} l={} old {:?} new {:?} journal seq {}",
            self.kind,
            crate::format::bkey::BtreeIdName(u32::from(self.btree)),
            self.level,
            self.old,
            self.new,
            self.journal_seq
        )
    }
}

/// Journal space an interior update needs: up to three entries of one
/// pointer each.
const UPDATE_JOURNAL_U64S: u32 = 3 * (1 + BTREE_PTR_U64S as u32);

/// A new node with `keys` and `BTREE_NODE_SEQ` `node_seq`, allocated and
/// written; not yet reachable.
#[allow(clippy::too_many_arguments)]
fn new_node(
    c: &BtreeFs<'_>,
    btree: u8,
    level: u8,
    min: Bpos,
    max: Bpos,
    keys: &[BkeyI],
    journal_seq: u64,
    node_seq: u32,
) -> Result<Arc<Node>, Errno> {
    let space = c.alloc.alloc_for(c, c.geo.node_sectors())?;
    let mut data = NodeData::default();
    let r = (|| -> Result<Node, Errno> {
        let bytes: usize = keys.iter().map(|k| 40 + k.v.len()).sum();
        data.reserve_for(keys.len(), bytes)?;
        for k in keys {
            data.push_sorted(&k.k, &k.v)?;
        }
        data.journal_seq = journal_seq;
        data.node_seq = node_seq;
        let mut n = Node::new(btree, level, space, min, max, c.new_seq(), data, flags::WILL_MAKE_REACHABLE);
        write_new_node(c, &mut n)?;
        Ok(n)
    })();
    let n = match r {
        Ok(n) => n,
        Err(e) => {
            c.alloc.free(space, 0);
            return Err(e);
        }
    };
    let bytes = n.bytes();
    let n = arc_new(n)?;
    c.cache.insert_new(&n, bytes)?;
    Ok(n)
}

/// Copies the keys of a locked node.
fn keys_of(g: &NodeLock) -> Result<Vec<BkeyI>, Errno> {
    let d = g.data();
    let mut v = Vec::with_capacity(d.len())?;
    for i in 0..d.len() {
        if let Some((k, val)) = d.key(i) {
            v.push(bkey_i(&k, val)?)?;
        }
    }
    Ok(v)
}

/// Marks `g`'s node freed (under its write lock), drops it from the cache,
/// releases its journal pin and hands its space back.
fn free_node(c: &BtreeFs<'_>, g: &mut NodeLock, journal_seq: u64) -> Result<(), Errno> {
    let node = g.node().clone();
    let mut w = g.write().ok_or(Errno::EINVAL)?;
    node.set_flags(flags::FREED);
    node.clear_flags(flags::DIRTY | flags::NEED_WRITE | flags::ROOT);
    let pin = core::mem::take(&mut w.journal_pin);
    drop(w);
    if pin != 0 {
        c.journal.pin_put(pin, PinOwner::BtreeNode(node.btree, node.level));
    }
    if !node.has(flags::FAKE) {
        c.cache.remove(&node);
        c.alloc.free(node.space, journal_seq);
    }
    Ok(())
}

impl BtreeTrans<'_> {
    /// A journal reservation for an interior update, without blocking
    /// while locks are held.
    fn update_res(&mut self) -> Result<JournalRes, BchError> {
        let rf = ResFlags { nonblock: true, reclaim: true };
        match self.c.journal.res_get(UPDATE_JOURNAL_U64S, rf) {
            Ok(r) => Ok(r),
            Err(BchError::Restart(_)) => {
                self.paths.clear();
                let r = self.c.journal.res_get(UPDATE_JOURNAL_U64S, ResFlags { nonblock: false, ..rf })?;
                self.c.journal.res_put(r);
                Err(BchError::Restart(Restart::JournalResGet))
            }
            Err(e) => Err(e),
        }
    }

    /// Makes room for `u64s` more in the node at `level` covering `pos`
    /// of `btree` (`bch2_btree_split_leaf()`): splits it, or compacts it
    /// into new space, or makes the fake root real; splits parents first
    /// as needed, up to a new root.  Drops every lock of the transaction.
    ///
    /// Errors: restarts, `ENOSPC` (allocator; or the tree would pass
    /// `BTREE_MAX_DEPTH`), `EIO`, `ENOMEM`.
    pub fn split_node(&mut self, btree: u8, level: u8, pos: Bpos, u64s: usize) -> Result<(), BchError> {
        self.replace_upward(btree, level, pos, u64s, Mode::Auto)
    }

    /// Rewrites the node at `level` covering `pos` to new space, whole and
    /// compacted (`bch2_btree_node_rewrite()`).
    ///
    /// Errors: as [`split_node`](Self::split_node).
    pub fn node_rewrite(&mut self, btree: u8, level: u8, pos: Bpos) -> Result<(), BchError> {
        self.replace_upward(btree, level, pos, 0, Mode::Rewrite)
    }

    fn replace_upward(&mut self, btree: u8, level: u8, pos: Bpos, u64s: usize, mode: Mode) -> Result<(), BchError> {
        let mut target = level;
        for _ in 0..4 * MAX_DEPTH {
            self.paths.clear();
            let (extra, m) = if target == level { (u64s, mode) } else { (2 * BTREE_PTR_U64S, Mode::Auto) };
            let r = self.replace_node(btree, target, pos, extra, m);
            self.paths.clear();
            match r? {
                Outcome::Done | Outcome::Skipped if target == level => return Ok(()),
                Outcome::Done | Outcome::Skipped => target = level,
                Outcome::ParentFull => target += 1,
            }
        }
        Err(Errno::EIO.into())
    }

    /// One split/compaction/rewrite of the node at `level` covering `pos`.
    fn replace_node(&mut self, btree: u8, level: u8, pos: Bpos, extra_u64s: usize, mode: Mode) -> Result<Outcome, BchError> {
        let c = self.c;
        let geo = c.geo;
        let (block, nb) = (geo.block_bytes as usize, geo.node_bytes as usize);
        let pi = self.path_new(btree, level, pos, MAX_DEPTH as u8)?;
        self.traverse(pi)?;
        let l = level as usize;
        let (is_root, split, keys, jseq) = {
            let n = self.paths[pi].l[l].lock.as_ref().ok_or(Errno::EINVAL)?;
            let is_root = n.has(flags::ROOT);
            let keys = keys_of(n)?;
            let live = n.data().live_u64s();
            let split =
                mode == Mode::Auto && !n.has(flags::FAKE) && keys.len() >= 2 && live + extra_u64s > geo.split_threshold();
            if !is_root {
                let p = self.paths[pi].l.get(l + 1).and_then(|x| x.lock.as_ref()).ok_or(Errno::EIO)?;
                let need = if split { 2 * BTREE_PTR_U64S } else { BTREE_PTR_U64S };
                if !p.appendable() || !p.data().fits(need, block, nb) {
                    return Ok(Outcome::ParentFull);
                }
            } else if split && l + 1 >= MAX_DEPTH {
                return Err(Errno::ENOSPC.into());
            }
            (is_root, split, keys, n.data().journal_seq)
        };
        let live: usize = keys.iter().map(|k| k.k.u64s as usize).sum();
        // The reservation first: waiting for it drops the path's locks.
        // The update starts with it (`bch2_btree_update_start()`).
        let start = crate::sync::now_ns();
        let mut res = self.update_res()?;
        let seq = res.seq;
        let mut n = self.paths[pi].l[l].lock.take().ok_or(Errno::EINVAL)?;
        let mut parent_lock = if is_root { None } else { self.paths[pi].l[l + 1].lock.take() };
        if !is_root && parent_lock.is_none() {
            c.journal.res_put(res);
            return Err(Errno::EIO.into());
        }

        // New nodes, written before anything points to them.
        let nseq = n.data().node_seq.wrapping_add(1);
        let mut made: Vec<Arc<Node>> = Vec::new();
        let r = (|| -> Result<(), Errno> {
            if split {
                let half = live / 2;
                let mut acc = 0;
                let mut k = 0;
                while k < keys.len() - 1 {
                    acc += keys[k].k.u64s as usize;
                    k += 1;
                    if acc >= half {
                        break;
                    }
                }
                let pivot = keys[k - 1].k.p;
                let right_min = pivot.successor().ok_or(Errno::EIO)?;
                made.push(new_node(c, btree, level, n.min_key, pivot, &keys[..k], jseq, nseq)?)?;
                made.push(new_node(c, btree, level, right_min, n.max_key, &keys[k..], jseq, nseq)?)?;
            } else {
                made.push(new_node(c, btree, level, n.min_key, n.max_key, &keys, jseq, nseq)?)?;
            }
            if is_root && split {
                let mut ptrs = Vec::new();
                for m in made.iter() {
                    ptrs.push(BtreeFs::node_ptr(m))?;
                }
                made.push(new_node(c, btree, level + 1, POS_MIN, SPOS_MAX, &ptrs, seq, 0)?)?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            for m in made.iter() {
                m.set_flags(flags::FREED);
                c.cache.remove(m);
                c.alloc.free(m.space, 0);
            }
            c.journal.res_put(res);
            return Err(e.into());
        }

        // Make them reachable.
        let nr_children = if split { 2 } else { 1 };
        if let Some(p) = parent_lock.as_mut() {
            let mut w = p.write().ok_or(Errno::EINVAL)?;
            for m in made.iter().take(nr_children) {
                let ptr = BtreeFs::node_ptr(m);
                let kb = key_bytes(&ptr.k, &ptr.v)?;
                c.journal.res_add_entry(&mut res, EntryType::BtreeKeys as u8, btree, level + 1, &kb)?;
                w.reserve_for(1, kb.len())?;
                w.insert(&ptr.k, &ptr.v)?;
            }
            let pn = w.node().clone();
            pn.set_flags(flags::DIRTY);
            if w.journal_pin == 0 {
                c.journal.pin_get(seq, PinOwner::BtreeNode(pn.btree, pn.level));
                w.journal_pin = seq;
            }
            w.journal_seq = w.journal_seq.max(seq);
        } else {
            let Some(root) = made.last().cloned() else { return Err(Errno::EIO.into()) };
            if split {
                // The new root's keys are its children's pointers: journaled
                // at its level as any insert into an interior node
                // (`btree_split_insert_keys()` into the new root goes
                // through `bch2_insert_fixup_btree_ptr()`), so that whoever
                // follows the journal (the node pointer triggers, replay)
                // sees them.
                for m in made.iter().take(nr_children) {
                    let ptr = BtreeFs::node_ptr(m);
                    let kb = key_bytes(&ptr.k, &ptr.v)?;
                    c.journal.res_add_entry(&mut res, EntryType::BtreeKeys as u8, btree, level + 1, &kb)?;
                }
            }
            let r = BtreeFs::root_of(&root);
            let vlen = r.key.val_bytes();
            let kb = key_bytes(&r.key, &r.val[..vlen])?;
            c.journal.res_add_entry(&mut res, EntryType::BtreeRoot as u8, btree, root.level, &kb)?;
            root.set_flags(flags::ROOT);
            let mut roots = c.roots.lock();
            if let Some(slot) = roots.get_mut(btree as usize) {
                // A node is flagged root only while its slot holds it (the
                // traversal checks the flag rather than the slot).
                if let Some(old) = slot.node.as_ref().filter(|o| !crate::platform::Arc::ptr_eq(o, &root)) {
                    old.clear_flags(flags::ROOT);
                }
                slot.node = Some(root.clone());
                slot.ptr = Some(r);
            }
            drop(roots);
            if split {
                c.stats.new_roots.fetch_add(1, Relaxed);
            }
        }
        for m in made.iter() {
            m.clear_flags(flags::WILL_MAKE_REACHABLE);
        }
        let mut upd = BtreeUpdate {
            btree,
            level,
            kind: if split { "split" } else if n.has(flags::FAKE) { "fake root made real" } else { "rewrite" },
            old: [n.sector, 0],
            new: [0; 3],
            journal_seq: seq,
        };
        for (i, m) in made.iter().take(3).enumerate() {
            upd.new[i] = m.sector;
        }
        *c.last_update.lock() = Some(upd);
        free_node(c, &mut n, seq)?;
        if split {
            c.stats.splits.fetch_add(1, Relaxed);
        } else {
            c.stats.compacts.fetch_add(1, Relaxed);
        }
        drop(n);
        drop(parent_lock);
        c.journal.res_put(res);
        // btree_split(): a split, or a node compacted to make room (not a
        // rewrite, which C does not time); bch2_btree_update_done().
        let end = crate::sync::now_ns();
        if split {
            c.stats.split_time.update(start, end);
        } else if mode == Mode::Auto {
            c.stats.compact_time.update(start, end);
        }
        c.stats.interior_update_foreground_time.update(start, end);
        Ok(Outcome::Done)
    }

    /// Merges the node at `level` covering `pos` with a sibling under the
    /// same parent when both together fit under the merge hysteresis
    /// (`bch2_foreground_maybe_merge()`).
    ///
    /// Errors: restarts, `ENOSPC`, `EIO`, `ENOMEM`.
    pub fn maybe_merge(&mut self, btree: u8, level: u8, pos: Bpos) -> Result<Outcome, BchError> {
        let r = self.maybe_merge_one_level(btree, level, pos)?;
        if r == Outcome::Done {
            // The parent lost a pointer: it may be underfull in turn
            // (`bch2_foreground_maybe_merge()` at the levels above).
            for l in level + 1..MAX_DEPTH as u8 - 1 {
                match self.maybe_merge_one_level(btree, l, pos) {
                    Ok(Outcome::Done) => {}
                    // Above the root, or nothing to merge: done.
                    _ => break,
                }
            }
        }
        Ok(r)
    }

    fn maybe_merge_one_level(&mut self, btree: u8, level: u8, pos: Bpos) -> Result<Outcome, BchError> {
        // The previous sibling, then the next (`btree_prev_sib`,
        // `btree_next_sib`).
        for next in [false, true] {
            let mut tries = 0;
            loop {
                self.paths.clear();
                let r = self.merge_one(btree, level, pos, next);
                self.paths.clear();
                match r? {
                    Outcome::ParentFull if tries < MAX_DEPTH => {
                        // Make room in the parent, then try again.
                        self.split_node(btree, level + 1, pos, 2 * BTREE_PTR_U64S)?;
                        tries += 1;
                    }
                    Outcome::Done => return Ok(Outcome::Done),
                    _ => break,
                }
            }
        }
        Ok(Outcome::Skipped)
    }

    fn merge_one(&mut self, btree: u8, level: u8, pos: Bpos, next: bool) -> Result<Outcome, BchError> {
        let c = self.c;
        let geo = c.geo;
        let (block, nb) = (geo.block_bytes as usize, geo.node_bytes as usize);
        let pi = self.path_new(btree, level, pos, MAX_DEPTH as u8)?;
        self.traverse(pi)?;
        let l = level as usize;
        let threshold = geo.merge_threshold();
        {
            let g = self.paths[pi].l[l].lock.as_ref().ok_or(Errno::EINVAL)?;
            if g.has(flags::ROOT) || g.data().live_u64s() >= threshold {
                return Ok(Outcome::Skipped);
            }
        }
        // The sibling: the previous or next pointer in the parent.
        let (sib_key, sib_val, sib_is_next) = {
            let n = self.paths[pi].l[l].lock.as_ref().ok_or(Errno::EINVAL)?;
            let p = self.paths[pi].l.get(l + 1).and_then(|x| x.lock.as_ref()).ok_or(Errno::EIO)?;
            let i = p.data().find(n.max_key).ok_or(Errno::EIO)?;
            let (j, next) = match next {
                true if i + 1 < p.len() => (i + 1, true),
                false if i > 0 => (i - 1, false),
                _ => {
                    n.set_sib_live(next, super::node::NO_SIBLING);
                    return Ok(Outcome::Skipped);
                }
            };
            let (k, v) = p.key(j).ok_or(Errno::EIO)?;
            let mut vb = Vec::new();
            vb.extend_from_slice(v)?;
            (k, vb, next)
        };
        {
            let p = self.paths[pi].l[l + 1].lock.as_ref().ok_or(Errno::EIO)?;
            if !p.appendable() || !p.data().fits(2 * BTREE_PTR_U64S, block, nb) {
                return Ok(Outcome::ParentFull);
            }
        }
        let np = NodePtr { btree, level, key: &sib_key, val: &sib_val };
        let sib = c.cache.get_node(&*c.dev, &c.info, np, pos).map_err(|e| e.errno())?;
        let sg = self.lock_node(&sib, SixLockType::Intent)?;
        if sib.has(flags::FREED) || sib.level != level {
            drop(sg);
            return Err(BchError::Restart(Restart::NodeChanged));
        }
        let n_live = self.paths[pi].l[l].lock.as_ref().map_or(0, |g| g.data().live_u64s());
        let sib_live = sg.data().live_u64s();
        if let Some(g) = self.paths[pi].l[l].lock.as_ref() {
            g.set_sib_live(sib_is_next, u32::try_from(sib_live).unwrap_or(super::node::NO_SIBLING - 1));
        }
        let combined = n_live + sib_live;
        if combined > threshold + threshold / 4 {
            return Ok(Outcome::Skipped);
        }
        // Hold the sibling in a path of its own, so that waiting for the
        // reservation drops it too.
        let si = self.path_new(btree, level, sib.min_key, level + 1)?;
        self.paths[si].l[l].node = Some(sib.clone());
        self.paths[si].l[l].lock = Some(sg);
        let start = crate::sync::now_ns();
        let mut res = self.update_res()?;
        let seq = res.seq;
        let (Some(mut n), Some(mut parent), Some(mut sg)) =
            (self.paths[pi].l[l].lock.take(), self.paths[pi].l[l + 1].lock.take(), self.paths[si].l[l].lock.take())
        else {
            c.journal.res_put(res);
            return Err(Errno::EINVAL.into());
        };
        let (left, right) = if sib_is_next { (&n, &sg) } else { (&sg, &n) };
        let mut keys = keys_of(left)?;
        for k in keys_of(right)?.iter() {
            keys.push(bkey_i(&k.k, &k.v)?)?;
        }
        let jseq = left.data().journal_seq.max(right.data().journal_seq);
        let (min, max, old_left_max) = (left.min_key, right.max_key, left.max_key);
        let nseq = left.data().node_seq.max(right.data().node_seq).wrapping_add(1);
        let m = match new_node(c, btree, level, min, max, &keys, jseq, nseq) {
            Ok(m) => m,
            Err(e) => {
                c.journal.res_put(res);
                return Err(e.into());
            }
        };
        {
            let mut w = parent.write().ok_or(Errno::EINVAL)?;
            let del = Bkey::new(KeyType::Deleted, old_left_max, 0);
            let kb = key_bytes(&del, &[])?;
            c.journal.res_add_entry(&mut res, EntryType::BtreeKeys as u8, btree, level + 1, &kb)?;
            let ptr = BtreeFs::node_ptr(&m);
            let kb2 = key_bytes(&ptr.k, &ptr.v)?;
            c.journal.res_add_entry(&mut res, EntryType::BtreeKeys as u8, btree, level + 1, &kb2)?;
            w.reserve_for(2, kb.len() + kb2.len())?;
            w.insert(&del, &[])?;
            w.insert(&ptr.k, &ptr.v)?;
            let pn = w.node().clone();
            pn.set_flags(flags::DIRTY);
            if w.journal_pin == 0 {
                c.journal.pin_get(seq, PinOwner::BtreeNode(pn.btree, pn.level));
                w.journal_pin = seq;
            }
            w.journal_seq = w.journal_seq.max(seq);
        }
        m.clear_flags(flags::WILL_MAKE_REACHABLE);
        *c.last_update.lock() =
            Some(BtreeUpdate { btree, level, kind: "merge", old: [n.sector, sg.sector], new: [m.sector, 0, 0], journal_seq: seq });
        free_node(c, &mut n, seq)?;
        free_node(c, &mut sg, seq)?;
        c.stats.merges.fetch_add(1, Relaxed);
        if level > 0 {
            c.stats.interior_merges.fetch_add(1, Relaxed);
        }
        drop(n);
        drop(sg);
        drop(parent);
        c.journal.res_put(res);
        let end = crate::sync::now_ns();
        c.stats.merge_time.update(start, end);
        c.stats.interior_update_foreground_time.update(start, end);
        Ok(Outcome::Done)
    }
}

impl BtreeTrans<'_> {
    /// Brings the pointer to `node` up to the sectors it has written
    /// (`bch2_btree_node_update_key()` after a write, as
    /// `btree_node_write_work()` does): the parent's key is replaced (a
    /// `btree_keys` entry at the parent's level; the parent becomes dirty
    /// and pins the journal), or the root's pointer (a `btree_root`
    /// entry).  Nothing when the node was freed or replaced meanwhile.
    ///
    /// Errors: restarts, journal errors, `EIO`, `ENOMEM`.
    pub fn update_ptr_written(&mut self, node: &Arc<Node>) -> Result<(), BchError> {
        self.paths.clear();
        let c = self.c;
        if node.has(flags::FREED | flags::FAKE) {
            return Ok(());
        }
        let (btree, level) = (node.btree, node.level);
        let l = level as usize;
        if node.has(flags::ROOT) {
            // The node itself, for intent (serializing with its writes).
            let pi = self.path_new(btree, level, node.max_key, level + 1)?;
            let g = self.lock_node(node, SixLockType::Intent)?;
            let written = g.data().written;
            self.paths[pi].l[l].node = Some(node.clone());
            self.paths[pi].l[l].lock = Some(g);
            if !c.is_root(node) || node.ptr_sectors_written() == written {
                return Ok(());
            }
            let mut res = self.update_res()?;
            node.set_ptr_sectors_written(written);
            let r = BtreeFs::root_of(node);
            let kb = key_bytes(&r.key, &r.val[..r.key.val_bytes()])?;
            let added = c.journal.res_add_entry(&mut res, EntryType::BtreeRoot as u8, btree, level, &kb);
            if added.is_ok() {
                let mut roots = c.roots.lock();
                if let Some(slot) = roots.get_mut(btree as usize) {
                    if slot.node.as_ref().is_some_and(|n| Arc::ptr_eq(n, node)) {
                        slot.ptr = Some(r);
                    }
                }
            }
            c.journal.res_put(res);
            return added.map_err(Into::into);
        }
        let pi = self.path_new(btree, level + 1, node.max_key, level + 2)?;
        self.traverse(pi)?;
        // The parent must still point to this node.
        let current = {
            let p = self.paths[pi].l.get(l + 1).and_then(|x| x.lock.as_ref()).ok_or(Errno::EIO)?;
            p.data().find(node.max_key).and_then(|i| p.key(i)).is_some_and(|(k, v)| {
                let np = NodePtr { btree, level, key: &k, val: v };
                np.sector() == Some(node.sector)
                    && crate::format::val::extent::BtreePtrV2::decode(v).is_some_and(|b| b.seq == node.seq)
            })
        };
        if !current {
            return Ok(());
        }
        let room = {
            let p = self.paths[pi].l.get(l + 1).and_then(|x| x.lock.as_ref()).ok_or(Errno::EIO)?;
            p.appendable() && p.data().fits(BTREE_PTR_U64S, c.geo.block_bytes as usize, c.geo.node_bytes as usize)
        };
        if !room {
            self.paths.clear();
            self.split_node(btree, level + 1, node.max_key, BTREE_PTR_U64S)?;
            return Err(BchError::Restart(Restart::NodeChanged));
        }
        let g = self.lock_node(node, SixLockType::Intent)?;
        let written = g.data().written;
        let freed = node.has(flags::FREED);
        self.paths[pi].l[l].node = Some(node.clone());
        self.paths[pi].l[l].lock = Some(g);
        if freed || node.ptr_sectors_written() == written {
            return Ok(());
        }
        let mut res = self.update_res()?;
        let seq = res.seq;
        let mut parent = self.paths[pi].l[l + 1].lock.take().ok_or(Errno::EIO)?;
        let r = (|| -> Result<(), Errno> {
            let old = node.ptr_sectors_written();
            node.set_ptr_sectors_written(written);
            let ptr = BtreeFs::node_ptr(node);
            let kb = key_bytes(&ptr.k, &ptr.v)?;
            if let Err(e) = c.journal.res_add_entry(&mut res, EntryType::BtreeKeys as u8, btree, level + 1, &kb) {
                node.set_ptr_sectors_written(old);
                return Err(e);
            }
            let mut w = parent.write().ok_or(Errno::EINVAL)?;
            w.reserve_for(1, kb.len())?;
            w.insert(&ptr.k, &ptr.v)?;
            let pn = w.node().clone();
            pn.set_flags(flags::DIRTY);
            if w.journal_pin == 0 {
                c.journal.pin_get(seq, PinOwner::BtreeNode(pn.btree, pn.level));
                w.journal_pin = seq;
            }
            w.journal_seq = w.journal_seq.max(seq);
            Ok(())
        })();
        drop(parent);
        c.journal.res_put(res);
        r.map_err(Into::into)
    }
}
