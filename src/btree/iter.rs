// SPDX-License-Identifier: GPL-2.0
//! Iterators over the leaves of a btree with the journal keys overlaid.
//!
//! Matches, in `fs/bcachefs`: `btree_iter.c` (`bch2_btree_iter_peek()`,
//! `_next()`, `_prev()`, `_peek_slot()`, `_set_pos()`; the path walk of
//! `bch2_btree_path_traverse()`) and `btree_journal_iter.c`
//! (`bch2_btree_and_journal_iter`: a journal key wins over the btree key at
//! its position, a `deleted` journal key hides it).
//!
//! The iterator is a cursor between keys: [`BtreeIter::next`] returns the
//! first live key at or after the position and moves past it;
//! [`BtreeIter::prev`] returns the last live key before the position and
//! moves onto it; so `next` then `prev` return the same key.  It holds at
//! most one node (the current leaf) locked for read, and walks down from
//! the root again when it leaves that leaf.

use crate::errcode::Errno;
use crate::format::bkey::{btree_flags, Bkey, BtreeId, KeyType, BTREE_IDS};
use crate::format::bpos::Bpos;
use crate::format::list::{FsInfo, ListError, Root};
use crate::fs_common::OwnedKey;
use crate::platform::{BlockDev, Vec};
use crate::recovery::journal_keys::{owned, JournalKeys};

use super::cache::{BtreeCache, NodePtr, NodeReadError, NodeRef};

/// Everything an iterator reads from: the device, the filesystem facts,
/// the node cache, the roots and the journal keys.
pub struct BtreeCtx<'a, D: BlockDev + ?Sized> {
    /// The device.
    pub dev: &'a D,
    /// Superblock facts.
    pub info: &'a FsInfo,
    /// The node cache.
    pub cache: &'a BtreeCache,
    /// Root of each btree, by id.
    pub roots: &'a [Option<Root>],
    /// The journal keys to overlay (empty for `norecovery`).
    pub keys: &'a JournalKeys,
}

impl<D: BlockDev + ?Sized> Clone for BtreeCtx<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D: BlockDev + ?Sized> Copy for BtreeCtx<'_, D> {}

fn errno(e: NodeReadError) -> Errno {
    e.errno()
}

fn list_errno(e: ListError) -> Errno {
    match e {
        ListError::NoMem => Errno::ENOMEM,
        _ => Errno::EIO,
    }
}

/// An iterator over the live keys of one btree's leaves (`struct
/// btree_iter` on a `btree_and_journal_iter`).
pub struct BtreeIter<'a, D: BlockDev + ?Sized> {
    c: BtreeCtx<'a, D>,
    btree: u8,
    pos: Bpos,
    whiteouts: bool,
    leaf: Option<NodeRef>,
    ptr_buf: Vec<u8>,
    /// Past a key at `SPOS_MAX`: nothing follows.
    past_end: bool,
}

/// Whether the overlay shows `k`: never `deleted` keys; whiteouts only when
/// asked for.
fn live(k: &Bkey, whiteouts: bool) -> bool {
    if k.is_deleted() {
        return false;
    }
    whiteouts || (k.key_type != KeyType::Whiteout as u8 && k.key_type != KeyType::HashWhiteout as u8)
}

impl<'a, D: BlockDev + ?Sized> BtreeIter<'a, D> {
    /// An iterator over `btree` positioned at `pos`; `whiteouts`: return
    /// `whiteout` and `hash_whiteout` keys too (`BTREE_ITER_all_snapshots`
    /// style callers that need them).
    pub fn new(c: BtreeCtx<'a, D>, btree: BtreeId, pos: Bpos, whiteouts: bool) -> Self {
        BtreeIter { c, btree: btree as u8, pos, whiteouts, leaf: None, ptr_buf: Vec::new(), past_end: false }
    }

    /// The current position.
    pub fn pos(&self) -> Bpos {
        self.pos
    }

    /// Moves to `pos` (`bch2_btree_iter_set_pos()`).  The current leaf is
    /// kept if it covers `pos`.
    pub fn set_pos(&mut self, pos: Bpos) {
        self.pos = pos;
        self.past_end = false;
    }

    /// The leaf covering `pos`, read-locked in `self.leaf`: the current one
    /// if it covers `pos`, else found by walking down from the root.
    /// `Ok(false)` when the btree has no root or nothing covers `pos`.
    fn leaf_for(&mut self, pos: Bpos) -> Result<bool, Errno> {
        if self.leaf.as_ref().is_some_and(|l| l.min_key <= pos && pos <= l.max_key) {
            return Ok(true);
        }
        self.leaf = None;
        let Some(root) = self.c.roots.get(self.btree as usize).copied().flatten() else {
            return Ok(false);
        };
        let vlen = root.key.val_bytes().min(root.val.len());
        self.ptr_buf.clear();
        self.ptr_buf.extend_from_slice(&root.val[..vlen])?;
        let mut key = root.key;
        let mut level = root.level;
        loop {
            let ptr = NodePtr { btree: self.btree, level, key: &key, val: &self.ptr_buf };
            let node = self.c.cache.get(self.c.dev, self.c.info, ptr, pos).map_err(errno)?;
            if level == 0 {
                self.leaf = Some(node);
                return Ok(true);
            }
            let i = node.lower_bound(pos);
            let Some((k, v)) = node.key(i) else { return Ok(false) };
            key = k;
            self.ptr_buf.clear();
            self.ptr_buf.extend_from_slice(v)?;
            level -= 1;
        }
    }

    /// Index in the current leaf of the first btree key at or after `pos`.
    fn bt_peek(&mut self, mut pos: Bpos) -> Result<Option<usize>, Errno> {
        loop {
            if !self.leaf_for(pos)? {
                return Ok(None);
            }
            let Some(leaf) = self.leaf.as_ref() else { return Ok(None) };
            let i = leaf.lower_bound(pos);
            if i < leaf.len() {
                return Ok(Some(i));
            }
            match leaf.max_key.successor() {
                Some(p) if p > pos => pos = p,
                Some(_) => return Err(Errno::EIO),
                None => return Ok(None),
            }
        }
    }

    /// Index in the current leaf of the last btree key at or before `pos`.
    fn bt_peek_prev(&mut self, mut pos: Bpos) -> Result<Option<usize>, Errno> {
        loop {
            if !self.leaf_for(pos)? {
                return Ok(None);
            }
            let Some(leaf) = self.leaf.as_ref() else { return Ok(None) };
            let i = leaf.upper_bound(pos);
            if i > 0 {
                return Ok(Some(i - 1));
            }
            match leaf.min_key.predecessor() {
                Some(p) if p < pos => pos = p,
                Some(_) => return Err(Errno::EIO),
                None => return Ok(None),
            }
        }
    }

    /// The overlay's key at `p`, given the btree key index `bi` (if the
    /// btree has a key at `p`) and whether the journal has keys there.
    fn key_at(&self, p: Bpos, bi: Option<usize>, jslot: Option<(usize, usize)>) -> Result<Option<OwnedKey>, Errno> {
        let bkey = match (bi, self.leaf.as_ref()) {
            (Some(i), Some(l)) => l.key(i).filter(|(k, _)| k.p == p),
            _ => None,
        };
        match jslot {
            Some((s, e)) => self.c.keys.resolve(s, e, bkey).map_err(list_errno),
            None => match bkey {
                Some((k, v)) => owned(&k, v).map(Some).map_err(list_errno),
                None => Ok(None),
            },
        }
    }

    /// The first live key at or after `pos`, leaving the position on it
    /// (`bch2_btree_iter_peek()`).  `Ok(None)` at the end.
    ///
    /// Errors: `EIO` (a node could not be read; logged), `ENOMEM`.
    pub fn peek(&mut self) -> Result<Option<OwnedKey>, Errno> {
        if self.past_end {
            return Ok(None);
        }
        let mut pos = self.pos;
        loop {
            let bi = self.bt_peek(pos)?;
            let bpos = match (bi, self.leaf.as_ref()) {
                (Some(i), Some(l)) => Some(l.pos(i)),
                _ => None,
            };
            let keys = self.c.keys;
            let ji = keys.lower_bound(self.btree, 0, pos);
            let jpos = keys.get(ji).filter(|k| k.btree == self.btree && k.level == 0).map(|k| k.pos);
            let p = match (bpos, jpos) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return Ok(None),
            };
            let jslot = (jpos == Some(p)).then(|| (ji, keys.slot_end(ji)));
            if let Some(k) = self.key_at(p, bi, jslot)? {
                if live(&k.k, self.whiteouts) {
                    self.pos = p;
                    return Ok(Some(k));
                }
            }
            match p.successor() {
                Some(n) => pos = n,
                None => return Ok(None),
            }
        }
    }

    /// The last live key at or before `pos`, leaving the position on it
    /// (`bch2_btree_iter_peek_prev()`).  `Ok(None)` at the start.
    ///
    /// Errors: as [`peek`](Self::peek).
    pub fn peek_prev(&mut self) -> Result<Option<OwnedKey>, Errno> {
        let mut pos = self.pos;
        loop {
            let bi = self.bt_peek_prev(pos)?;
            let bpos = match (bi, self.leaf.as_ref()) {
                (Some(i), Some(l)) => Some(l.pos(i)),
                _ => None,
            };
            let keys = self.c.keys;
            let ju = keys.upper_bound(self.btree, 0, pos);
            let jpos = ju
                .checked_sub(1)
                .and_then(|j| keys.get(j))
                .filter(|k| k.btree == self.btree && k.level == 0)
                .map(|k| k.pos);
            let p = match (bpos, jpos) {
                (Some(a), Some(b)) => a.max(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return Ok(None),
            };
            let jslot = (jpos == Some(p)).then(|| (keys.lower_bound(self.btree, 0, p), ju));
            if let Some(k) = self.key_at(p, bi, jslot)? {
                if live(&k.k, self.whiteouts) {
                    self.pos = p;
                    return Ok(Some(k));
                }
            }
            match p.predecessor() {
                Some(n) => pos = n,
                None => return Ok(None),
            }
        }
    }

    /// Returns the first live key at or after the position and moves the
    /// position just past it (`for_each_btree_key`'s peek + advance).
    ///
    /// Errors: as [`peek`](Self::peek).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<OwnedKey>, Errno> {
        let k = self.peek()?;
        if let Some(k) = &k {
            match k.k.p.successor() {
                Some(n) => self.pos = n,
                // Nothing can follow SPOS_MAX: park after it.
                None => self.past_end = true,
            }
        }
        Ok(k)
    }

    /// Returns the last live key before the position and moves the
    /// position onto it (`bch2_btree_iter_prev()`).
    ///
    /// Errors: as [`peek`](Self::peek).
    pub fn prev(&mut self) -> Result<Option<OwnedKey>, Errno> {
        if self.past_end {
            self.past_end = false;
            return self.peek_prev();
        }
        let Some(p) = self.pos.predecessor() else { return Ok(None) };
        let saved = self.pos;
        self.pos = p;
        let k = self.peek_prev()?;
        if k.is_none() {
            self.pos = saved;
        }
        Ok(k)
    }

    /// The key at exactly the position, or a `deleted` key there when it is
    /// a hole (`bch2_btree_iter_peek_slot()`).  In extent btrees, the
    /// extent covering the sector at the position (`start <= pos.offset <
    /// end`), or a hole reaching to the next extent of the inode.  The
    /// position does not move.
    ///
    /// Errors: as [`peek`](Self::peek).
    pub fn peek_slot(&mut self) -> Result<OwnedKey, Errno> {
        let pos = self.pos;
        let extents = BTREE_IDS.get(self.btree as usize).is_some_and(|b| b.1 & btree_flags::EXTENTS != 0);
        let hole = |size: u32| OwnedKey { k: Bkey { size, ..Bkey::new(KeyType::Deleted, pos, 0) }, v: Vec::new() };
        if !extents {
            let saved = self.whiteouts;
            self.whiteouts = true;
            let r = self.peek();
            self.whiteouts = saved;
            self.pos = pos;
            return Ok(match r? {
                Some(k) if k.k.p == pos => k,
                _ => hole(0),
            });
        }
        let Some(after) = pos.successor() else { return Ok(hole(0)) };
        self.pos = after;
        let r = self.peek();
        self.pos = pos;
        Ok(match r? {
            Some(k) if k.k.p.inode == pos.inode && k.k.p.snapshot == pos.snapshot => {
                if k.k.start_offset() <= pos.offset {
                    k
                } else {
                    hole(u32::try_from(k.k.start_offset() - pos.offset).unwrap_or(u32::MAX))
                }
            }
            _ => hole(0),
        })
    }

    /// The first live key with `pos <= k.p <= end`, from the current
    /// position (`bch2_btree_iter_peek_max()`); the position moves onto
    /// it.
    ///
    /// Errors: as [`peek`](Self::peek).
    pub fn peek_max(&mut self, end: Bpos) -> Result<Option<OwnedKey>, Errno> {
        if self.pos > end {
            return Ok(None);
        }
        Ok(self.peek()?.filter(|k| k.k.p <= end))
    }
}
