// SPDX-License-Identifier: GPL-2.0
//! Transaction commit (`btree_trans_commit.c`: `bch2_trans_commit()`,
//! `bch2_trans_commit_write_locked()`, `bch2_btree_insert_key_leaf()`).
//!
//! 1. transactional triggers ([`super::BtreeTriggers::trans_trigger`]) until
//!    none queues more;
//! 2. updates sorted by (btree, level, position); a later update at a
//!    position replaces an earlier one;
//! 3. every path lock dropped; the leaves of the updates locked for intent
//!    in that order; a leaf the transaction read must not have been
//!    written since ([`Restart::Relock`]);
//! 4. a leaf without room (or the fake root of an empty btree) is split,
//!    compacted or made real by an interior update, then the
//!    transaction restarts ([`Restart::NodeChanged`]);
//! 5. write locks; the other leaves read are relocked by sequence number;
//! 6. each key's `btree_keys` entry built, then the journal reservation
//!    taken and the entries copied in at once, without blocking
//!    ([`Restart::JournalResGet`] after waiting for one unlocked);
//! 7. each key inserted into its leaf, with the atomic trigger; the leaf
//!    is marked dirty and pins the journal sequence number;
//! 8. unlock, `res_put`; leaves left underfull are offered to the
//!    foreground merge.
//!
//! Updates queued with [`BtreeTrans::update_buffered`] skip steps 1, 3,
//! 4, 5 and the insert of 7: they are journalled as `write_buffer_keys`
//! and reach the leaves through the btree write buffer
//! ([`super::write_buffer`]).  A [`CommitFlags::no_journal_res`] commit
//! (the write buffer's flush) skips step 1, the reservation and the
//! journal copy: its keys are in the journal already.

use core::sync::atomic::Ordering::Relaxed;

use crate::errcode::{BchError, Errno, Restart};
use crate::format::bkey::{Bkey, BtreeId, BKEY_U64S};
use crate::format::jset::EntryType;
use crate::journal::res::{jset_entry_push, JournalRes, PinOwner, ResFlags};
use crate::platform::Vec;
use crate::sync::SixLockType;

use super::cache::{flags, NodeLock};
use super::trans::{bkey_i, BtreeTrans, CommitFlags};

/// A key as a journal `btree_keys` entry carries it: the 40-byte unpacked
/// `struct bkey` then the value.
pub fn key_bytes(k: &Bkey, v: &[u8]) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    key_bytes_into(&mut out, k, v)?;
    Ok(out)
}

/// [`key_bytes`] into `out` (emptied first, its allocation reused).
///
/// Errors: `ENOMEM`.
pub fn key_bytes_into(out: &mut Vec<u8>, k: &Bkey, v: &[u8]) -> Result<(), Errno> {
    let mut k = *k;
    k.u64s = (BKEY_U64S + v.len() / 8) as u8;
    out.clear();
    out.reserve(k.u64s as usize * 8)?;
    out.extend_from_slice(&k.to_bytes())?;
    out.extend_from_slice(v)?;
    Ok(())
}

/// The journal copy of an update of the accounting btree: the leaf gets
/// the counters' new sum, the journal the difference from the key the
/// leaf holds (`old`), with the new key's position and `bversion`, as an
/// accounting key (also when the sum is deleted: then the delta is minus
/// the old counters).  Recovery adds journal accounting keys newer than
/// the btree's to it (`bch2_journal_replay_accounting_key()`): C journals
/// deltas (`bch2_accounting_accumulate()`), so a journaled sum would be
/// counted twice.
///
/// Errors: `ENOMEM`.
pub fn accounting_delta_bytes(k: &Bkey, v: &[u8], old: Option<(Bkey, &[u8])>) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    accounting_delta_bytes_into(&mut out, k, v, old)?;
    Ok(out)
}

/// [`accounting_delta_bytes`] into `out` (emptied first).
///
/// Errors: `ENOMEM`.
pub fn accounting_delta_bytes_into(out: &mut Vec<u8>, k: &Bkey, v: &[u8], old: Option<(Bkey, &[u8])>) -> Result<(), Errno> {
    use crate::format::bkey::KeyType;
    let old_v = old.filter(|(ok, _)| ok.key_type == KeyType::Accounting as u8).map_or(&[][..], |(_, ov)| ov);
    let live = k.key_type == KeyType::Accounting as u8;
    let new_v = if live { v } else { &[][..] };
    let n = new_v.len().max(old_v.len()) / 8;
    let word = |b: &[u8], i: usize| {
        b.get(i * 8..i * 8 + 8).map_or(0u64, |w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
    };
    let mut d = Vec::with_capacity(n * 8)?;
    for i in 0..n {
        d.extend_from_slice(&word(new_v, i).wrapping_sub(word(old_v, i)).to_le_bytes())?;
    }
    let mut dk = *k;
    if !live {
        dk.key_type = KeyType::Accounting as u8;
        dk.size = 0;
    }
    key_bytes_into(out, &dk, &d)
}

/// The commit's scratch arrays, kept with the transaction's buffers
/// ([`super::trans::TransBufs`]) so that a commit allocates nothing once
/// they have grown.
#[derive(Default)]
pub(crate) struct CommitScratch {
    /// Per update: its leaf, an index in `leaf_paths` (`usize::MAX`: a
    /// buffered update, no leaf).
    leaf_path: Vec<usize>,
    /// The paths of the leaves, in update order.
    leaf_paths: Vec<usize>,
    /// Per leaf: the oldest and newest journal sequence number of its keys.
    leaf_seqs: Vec<(u64, u64)>,
    /// A key's journal copy.
    jbuf: Vec<u8>,
    /// The commit's journal entries, for `res_get_with`.
    jentries: Vec<u8>,
    /// The leaves, intent-locked, in update order (write-locked for the
    /// insert).
    leaves: Vec<NodeLock>,
    /// The other leaves the transaction read, relocked for the insert.
    relocked: Vec<NodeLock>,
    /// [`BtreeTrans::sort_updates`]'s arrays.
    sort_ord: Vec<(u8, u8, crate::format::bpos::Bpos, usize)>,
    sort_keep: Vec<usize>,
    sort_pos_of: Vec<usize>,
    sort_at: Vec<usize>,
}

impl CommitScratch {
    /// Empties every array, keeping the allocations.
    pub(crate) fn clear(&mut self) {
        self.leaf_path.clear();
        self.leaf_paths.clear();
        self.leaf_seqs.clear();
        self.jbuf.clear();
        self.jentries.clear();
        self.relocked.clear();
        self.leaves.clear();
        self.sort_ord.clear();
        self.sort_keep.clear();
        self.sort_pos_of.clear();
        self.sort_at.clear();
    }

    /// Whether every array has room for `max` elements at most.
    pub(crate) fn small(&self, max: usize) -> bool {
        self.leaf_path.capacity() <= max
            && self.leaf_paths.capacity() <= max
            && self.leaf_seqs.capacity() <= max
            && self.jbuf.capacity() <= 64 * max
            && self.jentries.capacity() <= 64 * max
            && self.leaves.capacity() <= max
            && self.relocked.capacity() <= max
            && self.sort_ord.capacity() <= max
            && self.sort_keep.capacity() <= max
            && self.sort_pos_of.capacity() <= max
            && self.sort_at.capacity() <= max
    }
}

impl BtreeTrans<'_> {
    /// Runs the transactional triggers of updates that have not run them
    /// (`bch2_trans_commit_run_triggers()`); a trigger may queue more.
    fn run_trans_triggers(&mut self) -> Result<(), BchError> {
        let Some(t) = self.c.triggers.as_deref() else { return Ok(()) };
        let mut i = 0;
        while i < self.updates.len() {
            if !self.updates[i].triggered {
                self.updates[i].triggered = true;
                let (b, l, pos) = (self.updates[i].btree, self.updates[i].level, self.updates[i].k.k.p);
                if !t.has_trans_trigger(b, l) {
                    i += 1;
                    continue;
                }
                let old = match (l, BtreeId::from_u32(u32::from(b))) {
                    (0, Some(id)) => self.get(id, pos)?,
                    _ => None,
                };
                let new = bkey_i(&self.updates[i].k.k, &self.updates[i].k.v)?;
                t.trans_trigger(self, b, l, old.as_ref(), &new)?;
            }
            i += 1;
        }
        Ok(())
    }

    /// An iterator's path (one that wants intent) whose leaf covers `pos`
    /// in `btree`, relocked for intent without waiting if nothing was
    /// written to the leaf since the path locked it: the commit need not
    /// walk down from the root again (C's commit uses the update's path).
    fn relock_leaf_path(&mut self, btree: u8, pos: crate::format::bpos::Bpos) -> Option<usize> {
        for (pi, p) in self.paths.iter_mut().enumerate() {
            if p.btree_id != btree || p.level != 0 || p.locks_want == 0 {
                continue;
            }
            let Some(n) = p.l[0].node.as_ref() else { continue };
            if !n.covers(pos) || n.has(flags::FREED) || p.l[0].lock.is_some() {
                continue;
            }
            let Some(g) = NodeLock::relock(n.clone(), SixLockType::Intent, p.l[0].lock_seq) else { continue };
            if g.has(flags::FREED) {
                continue;
            }
            p.l[0].lock = Some(g);
            return Some(pi);
        }
        None
    }

    /// Sorts the updates by (btree, level, position), keeping the last one
    /// queued at each position.
    fn sort_updates(&mut self, sc: &mut CommitScratch) {
        let n = self.updates.len();
        if n < 2 {
            return;
        }
        // Sort indices (the sort is not stable), then move the survivors.
        let ord = &mut sc.sort_ord;
        ord.clear();
        if ord.reserve(n).is_err() {
            return;
        }
        for (i, u) in self.updates.iter().enumerate() {
            let _ = ord.push((u.btree, u.level, u.k.k.p, i));
        }
        crate::util::sort::sort(ord);
        // Position j of the result takes update ord[j].3; drop all but the
        // last of a run.
        let keep = &mut sc.sort_keep;
        keep.clear();
        if keep.reserve(n).is_err() {
            return;
        }
        for j in 0..ord.len() {
            let last = ord.get(j + 1).map_or(true, |nx| (nx.0, nx.1, nx.2) != (ord[j].0, ord[j].1, ord[j].2));
            if last {
                let _ = keep.push(ord[j].3);
            }
        }
        // Permute in place: build the order as a list of swaps over a
        // position map.
        let (pos_of, at) = (&mut sc.sort_pos_of, &mut sc.sort_at);
        pos_of.clear();
        at.clear();
        if pos_of.reserve(n).is_err() || at.reserve(n).is_err() {
            return;
        }
        for i in 0..n {
            let _ = pos_of.push(i); // where original update i now is
            let _ = at.push(i); // which original update is at slot i
        }
        for (j, &orig) in keep.iter().enumerate() {
            let cur = pos_of[orig];
            if cur != j {
                self.updates.swap(j, cur);
                let other = at[j];
                at[j] = orig;
                at[cur] = other;
                pos_of[orig] = j;
                pos_of[other] = cur;
            }
        }
        self.updates.truncate(keep.len());
    }

    /// Commits the queued updates (`bch2_trans_commit()`); see the module
    /// documentation for the steps.  On success the updates are gone and
    /// [`journal_seq`](Self::journal_seq) is the commit's journal sequence
    /// number.
    ///
    /// Errors: restarts (the caller's [`super::trans::commit_do`] loop
    /// retries), `EROFS`/`ENOSPC`/`EIO` from the journal or allocator,
    /// `EIO` (a node could not be read), `ENOMEM`.
    pub fn commit(&mut self, cflags: CommitFlags) -> Result<(), BchError> {
        let mut sc = self.bufs.as_deref_mut().map(|b| core::mem::take(&mut b.commit)).unwrap_or_default();
        let r = self.commit_inner(cflags, &mut sc);
        if let Some(b) = self.bufs.as_deref_mut() {
            sc.clear();
            b.commit = sc;
        }
        r
    }

    fn commit_inner(&mut self, cflags: CommitFlags, sc: &mut CommitScratch) -> Result<(), BchError> {
        if self.updates.is_empty() {
            self.unlock();
            self.read_set.clear();
            return Ok(());
        }
        if !cflags.no_journal_res {
            self.run_trans_triggers()?;
        }
        self.sort_updates(sc);
        if self.c.take_injected_restart() {
            self.unlock();
            return Err(BchError::Restart(Restart::FaultInject));
        }
        self.unlock();
        let geo = self.c.geo;
        let (block, node_bytes) = (geo.block_bytes as usize, geo.node_bytes as usize);

        // 3. Intent locks on the leaves, in update order.
        let (leaf_path, leaf_paths) = (&mut sc.leaf_path, &mut sc.leaf_paths);
        leaf_path.clear();
        leaf_paths.clear();
        leaf_path.reserve(self.updates.len())?;
        for i in 0..self.updates.len() {
            let (b, pos) = (self.updates[i].btree, self.updates[i].k.k.p);
            if self.updates[i].level != 0 {
                return Err(Errno::EINVAL.into());
            }
            if self.updates[i].buffered {
                // Journal only: no leaf.
                leaf_path.push(usize::MAX)?;
                continue;
            }
            let reuse = leaf_paths.last().copied().filter(|&pi| {
                let p = &self.paths[pi];
                p.btree_id == b && p.l[0].lock.as_ref().is_some_and(|g| g.covers(pos))
            });
            let pi = match reuse {
                Some(pi) => pi,
                None => {
                    let pi = match self.relock_leaf_path(b, pos) {
                        Some(pi) => pi,
                        None => {
                            let pi = self.path_new(b, 0, pos, 1)?;
                            self.traverse(pi)?;
                            pi
                        }
                    };
                    leaf_paths.push(pi)?;
                    pi
                }
            };
            leaf_path.push(leaf_paths.len() - 1)?;
            let _ = pi;
        }
        // Leaves read earlier must be unchanged.
        for &pi in leaf_paths.iter() {
            let g = self.paths[pi].l[0].lock.as_ref().ok_or(Errno::EINVAL)?;
            if let Some((_, seq)) = self.read_set.iter().find(|(n, _)| crate::platform::Arc::ptr_eq(n, g.node())) {
                if *seq != g.seq() {
                    self.unlock();
                    return Err(BchError::Restart(Restart::Relock));
                }
            }
        }
        // 4. Room in each leaf.
        for (li, &pi) in leaf_paths.iter().enumerate() {
            let mut u64s = 0;
            let mut first = None;
            for (i, u) in self.updates.iter().enumerate() {
                if leaf_path[i] == li {
                    u64s += BKEY_U64S + u.k.v.len() / 8;
                    first.get_or_insert(u.k.k.p);
                }
            }
            let g = self.paths[pi].l[0].lock.as_mut().ok_or(Errno::EINVAL)?;
            if g.appendable() && !g.data().fits(u64s, block, node_bytes) {
                // The change count may be over: make it exact first.
                if let Some(mut w) = g.write() {
                    w.recount_changes();
                }
            }
            if !g.appendable() || !g.data().fits(u64s, block, node_bytes) {
                let b = g.btree;
                let pos = first.unwrap_or(g.min_key);
                self.unlock();
                self.split_node(b, 0, pos, u64s)?;
                return Err(BchError::Restart(Restart::NodeChanged));
            }
        }
        let (leaves, relocked) = (&mut sc.leaves, &mut sc.relocked);
        leaves.clear();
        relocked.clear();
        leaves.reserve(leaf_paths.len())?;
        for &pi in leaf_paths.iter() {
            let g = self.paths[pi].l[0].lock.take().ok_or(Errno::EINVAL)?;
            leaves.push(g)?;
        }
        self.unlock();
        // Room for the keys in memory, so that inserting cannot fail.
        for (li, g) in leaves.iter_mut().enumerate() {
            let (mut nr, mut bytes) = (0, 0);
            for (i, u) in self.updates.iter().enumerate() {
                if leaf_path[i] == li {
                    nr += 1;
                    bytes += 40 + u.k.v.len();
                }
            }
            let mut w = g.write().ok_or(Errno::EINVAL)?;
            w.reserve_for(nr, bytes)?;
        }

        // 5. Write locks (waiting only for readers, who never wait while
        // holding a lock), then the other leaves read, relocked by sequence
        // number without waiting.
        let mut ok = true;
        for g in leaves.iter_mut() {
            ok &= g.lock_write();
        }
        for (n, s) in self.read_set.iter() {
            if !ok {
                break;
            }
            if leaves.iter().any(|l| crate::platform::Arc::ptr_eq(l.node(), n)) {
                continue;
            }
            match NodeLock::relock(n.clone(), SixLockType::Read, *s) {
                Some(g) if !n.has(flags::FREED) => {
                    if relocked.push(g).is_err() {
                        ok = false;
                        break;
                    }
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            relocked.clear();
            leaves.clear();
            return Err(BchError::Restart(Restart::Relock));
        }

        // 6. The journal: every key's entry built, then reserved and
        // copied in at once, without blocking (C takes its reservation
        // write-locked too: `bch2_trans_commit_write_locked()`).
        let mut u64s = 0u32;
        for u in self.updates.iter() {
            u64s += 1 + (BKEY_U64S + u.k.v.len() / 8) as u32;
            if u.btree == BtreeId::Accounting as u8 {
                // Its journal copy is a delta, as long as the old key.
                u64s += crate::accounting::ACCOUNTING_MAX_COUNTERS as u32;
            }
        }
        let rf = ResFlags { nonblock: true, reclaim: cflags.journal_reclaim };
        let mut res: Option<JournalRes> = None;
        if !cflags.no_journal_res {
            let (kb, entries) = (&mut sc.jbuf, &mut sc.jentries);
            entries.clear();
            for (i, u) in self.updates.iter().enumerate() {
                if u.btree == BtreeId::Accounting as u8 && !u.buffered {
                    let old = leaves.get(leaf_path[i]).map(|w| w.data()).and_then(|d| d.find(u.k.k.p).and_then(|j| d.key(j)));
                    accounting_delta_bytes_into(kb, &u.k.k, &u.k.v, old)?
                } else {
                    key_bytes_into(kb, &u.k.k, &u.k.v)?
                };
                let ty = if u.buffered { EntryType::WriteBufferKeys } else { EntryType::BtreeKeys };
                jset_entry_push(entries, ty as u8, u.btree, 0, kb)?;
            }
            res = Some(match self.c.journal.res_get_with(u64s, rf, entries) {
                Ok(r) => r,
                Err(BchError::Restart(_)) => {
                    relocked.clear();
                    leaves.clear();
                    let r = self.c.journal.res_get(u64s, ResFlags { nonblock: false, ..rf })?;
                    self.c.journal.res_put(r);
                    return Err(BchError::Restart(Restart::JournalResGet));
                }
                Err(e) => {
                    relocked.clear();
                    leaves.clear();
                    return Err(e);
                }
            });
        }
        // The journal sequence number of the keys: the reservation's, or
        // for keys journalled already the newest of theirs.
        let seq = match res.as_ref() {
            Some(r) => r.seq,
            None => self.updates.iter().map(|u| u.journal_seq).max().unwrap_or(0),
        };

        // 7. Insert, triggers.
        // The oldest and newest sequence numbers of each leaf's keys.
        let leaf_seqs = &mut sc.leaf_seqs;
        leaf_seqs.clear();
        leaf_seqs.reserve(leaves.len())?;
        for _ in 0..leaves.len() {
            leaf_seqs.push((seq, seq))?;
        }
        for (i, u) in self.updates.iter().enumerate() {
            let li = leaf_path[i];
            let Some(w) = leaves.get_mut(li).and_then(|g| g.data_mut()) else { continue };
            if cflags.no_journal_res {
                if let Some(s) = leaf_seqs.get_mut(li) {
                    s.0 = s.0.min(u.journal_seq);
                }
            } else if let Some(t) = self.c.triggers.as_deref().filter(|t| t.has_atomic_trigger(u.btree, 0)) {
                let old = w.find(u.k.k.p).and_then(|j| w.key(j));
                t.atomic_trigger(u.btree, 0, old, (u.k.k, &u.k.v), seq);
            }
            // Cannot fail: room was reserved.
            let _ = w.insert(&u.k.k, &u.k.v);
        }
        for (li, g) in leaves.iter_mut().enumerate() {
            let n = g.node().clone();
            let Some(w) = g.data_mut() else { continue };
            n.set_flags(flags::DIRTY);
            let (oldest, newest) = leaf_seqs.get(li).copied().unwrap_or((seq, seq));
            if w.journal_pin == 0 {
                self.c.journal.pin_get(oldest, PinOwner::BtreeNode(n.btree, n.level));
                w.journal_pin = oldest;
            } else if oldest < w.journal_pin {
                // Keys older than the node's pin (the write buffer's):
                // the pin moves back (`bch2_journal_pin_add()` keeping
                // the older).
                self.c.journal.pin_get(oldest, PinOwner::BtreeNode(n.btree, n.level));
                self.c.journal.pin_put(w.journal_pin, PinOwner::BtreeNode(n.btree, n.level));
                w.journal_pin = oldest;
            }
            w.journal_seq = w.journal_seq.max(newest);
        }
        for g in leaves.iter_mut() {
            g.unlock_write();
        }
        relocked.clear();

        // 8. Unlock; underfull leaves are merge candidates.
        self.merge_candidates.clear();
        let threshold = geo.merge_threshold();
        for g in leaves.iter() {
            let live = g.data().live_u64s();
            if live < threshold && !g.is_root_node() && g.may_merge(live, threshold + threshold / 4) {
                let _ = self.merge_candidates.push((g.btree, g.max_key));
            }
        }
        leaves.clear();
        if let Some(res) = res {
            self.c.journal.res_put(res);
        }
        self.journal_seq = seq;
        self.updates.clear();
        self.read_set.clear();
        self.paths.clear();
        self.c.stats.commits.fetch_add(1, Relaxed);
        if !cflags.no_merge {
            let mut cands = core::mem::take(&mut self.merge_candidates);
            for &(b, pos) in cands.iter() {
                // Best effort: the commit is done whatever happens here.
                if let Err(BchError::Errno(e)) = self.maybe_merge(b, 0, pos) {
                    crate::platform::log::err_ratelimited!("btree merge after commit: {e}");
                }
                self.paths.clear();
            }
            cands.clear();
            self.merge_candidates = cands;
        }
        Ok(())
    }
}

impl NodeLock {
    /// Whether the node is its btree's root (kept by the [`flags::ROOT`]
    /// flag).
    pub fn is_root_node(&self) -> bool {
        self.has(flags::ROOT)
    }
}
