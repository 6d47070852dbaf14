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
    /// With `readahead` (the iterator walked off the end of a leaf), the
    /// leaf after the one found is hinted to the device for read-ahead.
    fn leaf_for(&mut self, pos: Bpos, readahead: bool) -> Result<bool, Errno> {
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
            if readahead && level == 1 {
                if let Some((nk, nv)) = node.key(i + 1) {
                    let next = NodePtr { btree: self.btree, level: 0, key: &nk, val: nv };
                    if let Some(sector) = next.sector() {
                        self.c.dev.readahead(sector, self.c.info.node_bytes as usize);
                    }
                }
            }
            let Some(k) = self.child_ptr(&node, level, pos)? else { return Ok(false) };
            key = k;
            level -= 1;
        }
    }

    /// The pointer to the child of interior node `node` (at `level`)
    /// covering `pos`, copied into `self.ptr_buf`: the node's keys with the
    /// journal keys of that level overlaid (pointers to nodes written after
    /// their parent, `bch2_btree_and_journal_iter` at interior levels).
    fn child_ptr(&mut self, node: &NodeRef, level: u8, pos: Bpos) -> Result<Option<Bkey>, Errno> {
        let keys = self.c.keys;
        let mut p = pos;
        loop {
            let i = node.lower_bound(p);
            let bk = node.key(i);
            let ji = keys.lower_bound(self.btree, level, p);
            let jpos = keys
                .get(ji)
                .filter(|k| k.btree == self.btree && k.level == level && k.pos <= node.max_key)
                .map(|k| k.pos);
            let q = match (bk.map(|(k, _)| k.p), jpos) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return Ok(None),
            };
            let chosen = if jpos == Some(q) {
                // The newest journal key of the slot.
                keys.key(keys.slot_end(ji).saturating_sub(1))
            } else {
                bk
            };
            if let Some((k, v)) = chosen.filter(|(k, _)| !k.is_deleted()) {
                self.ptr_buf.clear();
                self.ptr_buf.extend_from_slice(v)?;
                return Ok(Some(k));
            }
            match q.successor() {
                Some(n) => p = n,
                None => return Ok(None),
            }
        }
    }

    /// Index in the current leaf of the first btree key at or after `pos`.
    fn bt_peek(&mut self, mut pos: Bpos) -> Result<Option<usize>, Errno> {
        let mut readahead = false;
        loop {
            if !self.leaf_for(pos, readahead)? {
                return Ok(None);
            }
            let Some(leaf) = self.leaf.as_ref() else { return Ok(None) };
            let i = leaf.lower_bound(pos);
            if i < leaf.len() {
                return Ok(Some(i));
            }
            match leaf.max_key.successor() {
                Some(p) if p > pos => {
                    pos = p;
                    readahead = true;
                }
                Some(_) => return Err(Errno::EIO),
                None => return Ok(None),
            }
        }
    }

    /// Index in the current leaf of the last btree key at or before `pos`.
    fn bt_peek_prev(&mut self, mut pos: Bpos) -> Result<Option<usize>, Errno> {
        loop {
            if !self.leaf_for(pos, false)? {
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
        // The btree's next key stays the answer while `pos` has not passed
        // it: no walk back into an earlier leaf for journal-only keys.
        let mut bt: Option<(Option<usize>, Option<Bpos>)> = None;
        loop {
            let (bi, bpos) = match bt {
                Some((bi, bpos)) if bpos.map_or(true, |b| pos <= b) => (bi, bpos),
                _ => {
                    let bi = self.bt_peek(pos)?;
                    let bpos = match (bi, self.leaf.as_ref()) {
                        (Some(i), Some(l)) => Some(l.pos(i)),
                        _ => None,
                    };
                    (bi, bpos)
                }
            };
            bt = Some((bi, bpos));
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
        let mut bt: Option<(Option<usize>, Option<Bpos>)> = None;
        loop {
            let (bi, bpos) = match bt {
                Some((bi, bpos)) if bpos.map_or(true, |b| pos >= b) => (bi, bpos),
                _ => {
                    let bi = self.bt_peek_prev(pos)?;
                    let bpos = match (bi, self.leaf.as_ref()) {
                        (Some(i), Some(l)) => Some(l.pos(i)),
                        _ => None,
                    };
                    (bi, bpos)
                }
            };
            bt = Some((bi, bpos));
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

#[cfg(test)]
mod tests {
    //! A two-level btree in memory with journal keys over it.
    extern crate std;

    use super::*;
    use crate::checksum::CsumType;
    use crate::format::bpos::{POS_MIN, SPOS_MAX};
    use crate::format::btree_node::{bset_magic, write_node, NodeWriteOpts};
    use crate::format::jset::{jset_magic, EntryType, JsetBuilder};
    use crate::format::list::Journal;
    use crate::format::val::dirent::encode_dirent;
    use crate::format::val::extent::{BtreePtrV2, ExtentPtr};
    use crate::format::val::DevInfo;
    use crate::format::version::VERSION_CURRENT;
    use crate::platform::SECTOR_SIZE;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::vec::Vec as StdVec;

    struct MemDev(RefCell<StdVec<u8>>, RefCell<StdVec<u64>>);

    impl BlockDev for MemDev {
        fn name(&self) -> &str {
            "mem"
        }
        fn nr_sectors(&self) -> u64 {
            (self.0.borrow().len() / SECTOR_SIZE) as u64
        }
        fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
            let d = self.0.borrow();
            let s = sector as usize * SECTOR_SIZE;
            buf.copy_from_slice(d.get(s..s + buf.len()).ok_or(Errno::EIO)?);
            Ok(())
        }
        fn readahead(&self, sector: u64, _bytes: usize) {
            self.1.borrow_mut().push(sector);
        }
    }

    const UUID: [u8; 16] = [9; 16];
    const BUCKET: u64 = 256;
    const DIR: u64 = 4096;

    fn info() -> FsInfo {
        let mut devs = Vec::new();
        devs.push(Some(DevInfo { bucket_size: BUCKET as u32, first_bucket: 1, nbuckets: 64, durability: 1, failed: false }))
            .unwrap();
        FsInfo {
            uuid: UUID,
            block_bytes: 4096,
            node_bytes: 64 * 1024,
            dev_idx: 0,
            devs,
            journal_buckets: Vec::new(),
            blacklist: Vec::new(),
            clean: Vec::new(),
        }
    }

    fn dirent(off: u64, name: &str, target: u64) -> (Bkey, StdVec<u8>) {
        let mut v = [0u8; 64];
        let n = encode_dirent(&mut v, target, 8, name.as_bytes()).unwrap();
        (Bkey::new(KeyType::Dirent, Bpos::new(DIR, off, u32::MAX), n / 8), v[..n].to_vec())
    }

    fn opts(level: u8, seq: u64, min: Bpos, max: Bpos) -> NodeWriteOpts {
        NodeWriteOpts {
            btree_id: BtreeId::Dirents as u32,
            level,
            seq,
            node_seq: 0,
            min_key: min,
            max_key: max,
            format: None,
            csum_type: CsumType::Crc32c,
            version: VERSION_CURRENT,
            journal_seq: 1,
            block_bytes: 4096,
            node_bytes: 64 * 1024,
            bset_magic: bset_magic(&UUID),
        }
    }

    fn ptr(seq: u64, written: usize, min: Bpos, max: Bpos, sector: u64) -> (Bkey, StdVec<u8>) {
        let mut v = [0u8; 48];
        BtreePtrV2 { mem_ptr: 0, seq, sectors_written: (written / 512) as u16, flags: 0, min_key: min }
            .encode(&mut v)
            .unwrap();
        v[40..].copy_from_slice(&ExtentPtr { offset: sector, ..Default::default() }.encode().to_le_bytes());
        (Bkey::new(KeyType::BtreePtrV2, max, 6), v.to_vec())
    }

    /// Three leaves under a root; journal: a new key between leaves, the
    /// first key deleted, one key replaced, a hash whiteout.
    type Model = BTreeMap<Bpos, (Bkey, StdVec<u8>)>;

    fn setup() -> (MemDev, FsInfo, Root, JournalKeys, Model) {
        setup_with(false)
    }

    /// With `new_leaf2`, the middle leaf was rewritten after its parent:
    /// the pointer to the new node is only in the journal (level 1).
    fn setup_with(new_leaf2: bool) -> (MemDev, FsInfo, Root, JournalKeys, Model) {
        let dev = MemDev(RefCell::new(std::vec![0u8; 64 * BUCKET as usize * SECTOR_SIZE]), RefCell::new(StdVec::new()));
        let mut model = BTreeMap::new();
        let bounds = [(POS_MIN, Bpos::new(DIR, 150, u32::MAX)), (Bpos::new(DIR, 151, 0), Bpos::new(DIR, 250, u32::MAX)), (Bpos::new(DIR, 251, 0), SPOS_MAX)];
        let mut ptrs = StdVec::new();
        for (li, (min, max)) in bounds.iter().enumerate() {
            let keys: StdVec<_> = (0..10).map(|i| dirent(100 * (li as u64 + 1) + i, &std::format!("n{li}{i}"), 5000 + i)).collect();
            for (k, v) in &keys {
                model.insert(k.p, (*k, v.clone()));
            }
            let kr: StdVec<(Bkey, &[u8])> = keys.iter().map(|(k, v)| (*k, &v[..])).collect();
            let n = write_node(&opts(0, 20 + li as u64, *min, *max), &kr).unwrap();
            let sector = (10 + li as u64) * BUCKET;
            let s = sector as usize * SECTOR_SIZE;
            dev.0.borrow_mut()[s..s + n.len()].copy_from_slice(&n);
            ptrs.push(ptr(20 + li as u64, n.len(), *min, *max, sector));
        }
        let pr: StdVec<(Bkey, &[u8])> = ptrs.iter().map(|(k, v)| (*k, &v[..])).collect();
        let root = write_node(&opts(1, 30, POS_MIN, SPOS_MAX), &pr).unwrap();
        let rs = 20 * BUCKET;
        dev.0.borrow_mut()[rs as usize * SECTOR_SIZE..][..root.len()].copy_from_slice(&root);
        let (rk, rv) = ptr(30, root.len(), POS_MIN, SPOS_MAX, rs);
        let mut val = [0u8; 72];
        val[..rv.len()].copy_from_slice(&rv);
        let root = Root { btree_id: BtreeId::Dirents as u32, level: 1, key: rk, val };

        let magic = jset_magic(&UUID);
        let d = BtreeId::Dirents as u8;
        let mut j1 = JsetBuilder::new(1, 1, VERSION_CURRENT, magic).unwrap();
        let (nk, nv) = dirent(260, "new", 7000);
        let (rk2, rv2) = dirent(205, "replaced", 7001);
        j1.add_keys(EntryType::BtreeKeys, d, 0, &[(nk, &nv[..]), (rk2, &rv2[..])]).unwrap();
        let j1 = j1.finish(CsumType::Crc32c, 4096).unwrap();
        let mut j2 = JsetBuilder::new(2, 1, VERSION_CURRENT, magic).unwrap();
        let first = model[&Bpos::new(DIR, 100, u32::MAX)].0;
        let del = Bkey { key_type: KeyType::Deleted as u8, u64s: 5, ..first };
        let hw = Bkey::new(KeyType::HashWhiteout, Bpos::new(DIR, 120, u32::MAX), 0);
        j2.add_keys(EntryType::BtreeKeys, d, 0, &[(del, &[][..]), (hw, &[][..])]).unwrap();
        if new_leaf2 {
            let (min, max) = bounds[1];
            let keys: StdVec<_> = (0..4).map(|i| dirent(220 + i, &std::format!("re{i}"), 8000 + i)).collect();
            model.retain(|p, _| !(p.offset >= 200 && p.offset < 250));
            for (k, v) in &keys {
                model.insert(k.p, (*k, v.clone()));
            }
            let kr: StdVec<(Bkey, &[u8])> = keys.iter().map(|(k, v)| (*k, &v[..])).collect();
            let n = write_node(&opts(0, 40, min, max), &kr).unwrap();
            let sector = 13 * BUCKET;
            dev.0.borrow_mut()[sector as usize * SECTOR_SIZE..][..n.len()].copy_from_slice(&n);
            let (pk, pv) = ptr(40, n.len(), min, max, sector);
            j2.add_keys(EntryType::BtreeKeys, d, 1, &[(pk, &pv[..])]).unwrap();
        }
        let j2 = j2.finish(CsumType::Crc32c, 4096).unwrap();
        let mut jsets = Vec::new();
        let mut a = Vec::new();
        a.extend_from_slice(&j1).unwrap();
        let mut b = Vec::new();
        b.extend_from_slice(&j2).unwrap();
        jsets.push(a).unwrap();
        jsets.push(b).unwrap();
        let info = info();
        let keys = JournalKeys::build(&info, &Journal { jsets, last_seq: 1, blacklist_seq: 3 }).unwrap();
        model.insert(nk.p, (nk, nv));
        model.insert(rk2.p, (rk2, rv2));
        model.remove(&first.p);
        (dev, info, root, keys, model)
    }

    #[test]
    fn two_level_btree_with_overlay() {
        let (dev, info, root, keys, model) = setup();
        for bound in [1usize, 64 << 20] {
            let cache = BtreeCache::new(bound).unwrap();
            let mut roots = [None; crate::journal::NR_BTREES];
            roots[BtreeId::Dirents as usize] = Some(root);
            let roots = &roots[..];
            let c = BtreeCtx { dev: &dev, info: &info, cache: &cache, roots, keys: &keys };
            dev.1.borrow_mut().clear();
            let mut it = BtreeIter::new(c, BtreeId::Dirents, POS_MIN, false);
            let mut got = StdVec::new();
            while let Some(k) = it.next().unwrap() {
                got.push((k.k.p, k.v.to_vec()));
                // Only the leaf in use stays under a tiny bound.
                assert!(bound > 1 || cache.count() == 1);
            }
            let want: StdVec<_> = model.values().map(|(k, v)| (k.p, v.clone())).collect();
            assert_eq!(got, want);
            // Walking off leaf 1 hinted leaf 3 (the one after leaf 2).
            assert_eq!(dev.1.borrow_mut().drain(..).collect::<StdVec<_>>(), [12 * BUCKET]);
            // Backwards.
            let mut back = StdVec::new();
            while let Some(k) = it.prev().unwrap() {
                back.push(k.k.p);
            }
            back.reverse();
            assert_eq!(back, model.keys().copied().collect::<StdVec<_>>());
            // From every position around the keys.
            for off in 95..320 {
                let pos = Bpos::new(DIR, off, 7);
                let mut it = BtreeIter::new(c, BtreeId::Dirents, pos, false);
                assert_eq!(it.peek().unwrap().map(|k| k.k.p), model.range(pos..).next().map(|(p, _)| *p), "{pos}");
                assert_eq!(it.prev().unwrap().map(|k| k.k.p), model.range(..pos).next_back().map(|(p, _)| *p), "{pos}");
            }
            // Whiteouts on request.
            let mut it = BtreeIter::new(c, BtreeId::Dirents, Bpos::new(DIR, 115, 0), true);
            let k = it.peek().unwrap().unwrap();
            assert_eq!((k.k.p.offset, k.k.key_type), (120, KeyType::HashWhiteout as u8));
            // A btree without a root is empty.
            let mut it = BtreeIter::new(c, BtreeId::Xattrs, POS_MIN, false);
            assert!(it.peek().unwrap().is_none() && it.prev().unwrap().is_none());
            if bound > 1 {
                assert_eq!(cache.count(), 4);
            }
        }
    }

    #[test]
    fn interior_journal_keys_point_to_newer_nodes() {
        let (dev, info, root, keys, model) = setup_with(true);
        let cache = BtreeCache::new(1 << 20).unwrap();
        let mut roots = [None; crate::journal::NR_BTREES];
        roots[BtreeId::Dirents as usize] = Some(root);
        let roots = &roots[..];
        let c = BtreeCtx { dev: &dev, info: &info, cache: &cache, roots, keys: &keys };
        let mut it = BtreeIter::new(c, BtreeId::Dirents, POS_MIN, false);
        let mut got = StdVec::new();
        while let Some(k) = it.next().unwrap() {
            got.push((k.k.p, k.v.to_vec()));
        }
        let want: StdVec<_> = model.values().map(|(k, v)| (k.p, v.clone())).collect();
        assert_eq!(got, want);
        assert!(got.iter().any(|(p, _)| p.offset == 221));
    }

    #[test]
    fn bad_leaf_is_eio_and_other_leaves_read() {
        let (dev, info, root, keys, _) = setup();
        // Corrupt the middle leaf.
        dev.0.borrow_mut()[(11 * BUCKET) as usize * SECTOR_SIZE + 200] ^= 1;
        let cache = BtreeCache::new(1 << 20).unwrap();
        let mut roots = [None; crate::journal::NR_BTREES];
        roots[BtreeId::Dirents as usize] = Some(root);
        let roots = &roots[..];
        let c = BtreeCtx { dev: &dev, info: &info, cache: &cache, roots, keys: &keys };
        let mut it = BtreeIter::new(c, BtreeId::Dirents, POS_MIN, false);
        let mut n = 0;
        let e = loop {
            match it.next() {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert_eq!((e, n), (Errno::EIO, 9));
        let mut it = BtreeIter::new(c, BtreeId::Dirents, Bpos::new(DIR, 300, 0), false);
        assert_eq!(it.peek().unwrap().unwrap().k.p.offset, 300);
    }
}
