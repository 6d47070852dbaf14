// SPDX-License-Identifier: GPL-2.0
//! The journal keys: every key of the `btree_keys` and `write_buffer_keys`
//! entries of the jsets in the replay range, sorted by (btree, level,
//! position, journal seq, offset in the jset) and deduplicated newest
//! first, and how one position's keys combine with the btree's key there.
//!
//! Matches `btree_journal_iter.c` (`bch2_journal_keys_sort()`,
//! `journal_sort_key_cmp()`, `bch2_journal_keys_peek_max()`) and the
//! accounting part of `recovery.c` (`bch2_journal_replay_accounting_key()`,
//! `bch2_accounting_accumulate()`).
//!
//! Accounting keys are deltas: all of them are kept (as C keeps them for
//! replay), and the value the overlay shows at a position is the btree's
//! value with every journal delta of a newer version added, in journal
//! order ([`JournalKeys::resolve`]).

use crate::format::bkey::{Bkey, BkeyFormat, BtreeId, KeyType, UnpackedKeys};
use crate::format::bpos::Bpos;
use crate::format::jset::{jset_magic, EntryType, Jset, JSET_BYTES};
use crate::format::list::{FsInfo, Journal, ListError};
use crate::fs_common::OwnedKey;
use crate::platform::Vec;
use crate::util::le::le64;

/// One journal key (`struct journal_key`): where it goes and where it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalKey {
    /// Btree id.
    pub btree: u8,
    /// Level the key belongs to (0: leaves).
    pub level: u8,
    /// Position of the key.
    pub pos: Bpos,
    /// Sequence number of the jset holding it.
    pub seq: u64,
    /// Offset of the key in the jset, in u64s from the start of its
    /// entries (`journal_offset`).
    pub offset: u32,
    /// Where its unpacked key and value start in the key storage.
    at: u32,
}

impl JournalKey {
    fn sort_key(&self) -> (u8, u8, Bpos, u64, u32) {
        (self.btree, self.level, self.pos, self.seq, self.offset)
    }

    fn same_slot(&self, o: &JournalKey) -> bool {
        (self.btree, self.level, self.pos) == (o.btree, o.level, o.pos)
    }
}

/// The sorted journal keys of a filesystem (`struct journal_keys`).
pub struct JournalKeys {
    /// Unpacked keys (40 bytes of `struct bkey`) each followed by its value.
    data: UnpackedKeys,
    /// The keys, sorted; for each (btree, level, pos) only the newest,
    /// except in the accounting btree, where all are kept in journal order.
    keys: Vec<JournalKey>,
    /// Keys read before deduplication.
    pub nr_read: usize,
}

impl JournalKeys {
    /// No keys: what `norecovery` overlays.
    pub fn empty() -> Self {
        JournalKeys { data: UnpackedKeys::new(), keys: Vec::new(), nr_read: 0 }
    }

    /// Collects, sorts and deduplicates the keys of `journal`'s jsets
    /// (`bch2_journal_keys_sort()`).
    ///
    /// Errors: [`ListError::Jset`], [`ListError::Key`] for malformed
    /// entries (already validated by the journal read, so unexpected);
    /// [`ListError::NoMem`].
    pub fn build(fs: &FsInfo, journal: &Journal) -> Result<JournalKeys, ListError> {
        let magic = jset_magic(&fs.uuid);
        let mut out = JournalKeys::empty();
        for j in journal.jsets.iter() {
            let js = Jset::parse(j, magic).map_err(ListError::Jset)?;
            let seq = js.header.seq;
            let base = js.bytes().as_ptr() as usize + JSET_BYTES;
            for e in js.entries() {
                let e = e.map_err(ListError::Jset)?;
                if !matches!(EntryType::from_u8(e.ty), Some(EntryType::BtreeKeys | EntryType::WriteBufferKeys)) {
                    continue;
                }
                for k in e.keys() {
                    let k = k.map_err(ListError::Key)?;
                    let key = k.unpack(&BkeyFormat::CURRENT);
                    let val = k.val(&BkeyFormat::CURRENT);
                    // Offset of the key within the jset's entries, u64s.
                    let offset = (k.bytes().as_ptr() as usize).saturating_sub(base) / 8;
                    out.push(e.btree_id, e.level, seq, offset as u32, &key, val)?;
                }
            }
        }
        out.nr_read = out.keys.len();
        crate::util::sort::sort_by_key(&mut out.keys, |k| k.sort_key());
        out.dedup();
        Ok(out)
    }

    fn push(&mut self, btree: u8, level: u8, seq: u64, offset: u32, k: &Bkey, v: &[u8]) -> Result<(), ListError> {
        let at = self.data.push(k, v)?;
        self.keys.push(JournalKey { btree, level, pos: k.p, seq, offset, at })?;
        Ok(())
    }

    /// Drops, for each slot, all but the newest key, except accounting
    /// keys (`__journal_keys_sort()`).
    fn dedup(&mut self) {
        let n = self.keys.len();
        let mut w = 0;
        for r in 0..n {
            let k = self.keys[r];
            let superseded = k.btree != BtreeId::Accounting as u8
                && self.keys.get(r + 1).is_some_and(|n| n.same_slot(&k));
            if !superseded {
                self.keys[w] = k;
                w += 1;
            }
        }
        self.keys.truncate(w);
    }

    /// Number of keys kept.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `i`th key's bookkeeping.
    pub fn get(&self, i: usize) -> Option<&JournalKey> {
        self.keys.get(i)
    }

    /// The `i`th key and its value (`None` past the end).
    pub fn key(&self, i: usize) -> Option<(Bkey, &[u8])> {
        self.data.get(self.keys.get(i)?.at)
    }

    /// Index of the first key of (`btree`, `level`) at or after `pos`
    /// (binary search); may point at a key of another btree or level, or
    /// at [`len`](Self::len).
    pub fn lower_bound(&self, btree: u8, level: u8, pos: Bpos) -> usize {
        self.keys.partition_point(|k| (k.btree, k.level, k.pos) < (btree, level, pos))
    }

    /// Index one past the last key of (`btree`, `level`) at or before `pos`.
    pub fn upper_bound(&self, btree: u8, level: u8, pos: Bpos) -> usize {
        self.keys.partition_point(|k| (k.btree, k.level, k.pos) <= (btree, level, pos))
    }

    /// The keys at slot `i`'s position: `i..end`.
    pub fn slot_end(&self, i: usize) -> usize {
        let Some(first) = self.keys.get(i) else { return i };
        let mut e = i + 1;
        while self.keys.get(e).is_some_and(|k| k.same_slot(first)) {
            e += 1;
        }
        e
    }

    /// The key the overlay shows for the slot `i..end` (one position, as
    /// [`slot_end`](Self::slot_end) finds it) given the btree's key there:
    /// the newest journal key, or for accounting keys the btree's value
    /// with each newer-versioned delta added in journal order
    /// (`bch2_journal_replay_accounting_key()`).  `None` if the slot is
    /// empty.
    ///
    /// Errors: [`crate::errcode::AllocError`] as [`ListError::NoMem`].
    pub fn resolve(&self, i: usize, end: usize, btree: Option<(Bkey, &[u8])>) -> Result<Option<OwnedKey>, ListError> {
        let mut cur: Option<OwnedKey> = match btree {
            Some((k, v)) => Some(owned(&k, v)?),
            None => None,
        };
        let mut any = false;
        for j in i..end {
            let Some((jk, jv)) = self.key(j) else { continue };
            any = true;
            if jk.key_type != KeyType::Accounting as u8 {
                cur = Some(owned(&jk, jv)?);
                continue;
            }
            if cur.as_ref().is_some_and(|c| c.k.version >= jk.version) {
                continue;
            }
            let mut n = owned(&jk, jv)?;
            if let Some(c) = cur.as_ref().filter(|c| c.k.key_type == KeyType::Accounting as u8) {
                for (at, o) in n.v.chunks_exact_mut(8).enumerate() {
                    let s = le64(o, 0).wrapping_add(le64(&c.v, 8 * at));
                    o.copy_from_slice(&s.to_le_bytes());
                }
            }
            cur = Some(n);
        }
        Ok(if any { cur } else { None })
    }
}

/// An owned copy of a key and its value.
///
/// Errors: [`ListError::NoMem`].
pub fn owned(k: &Bkey, v: &[u8]) -> Result<OwnedKey, ListError> {
    let mut val: Vec<u8> = Vec::new();
    val.extend_from_slice(v)?;
    Ok(OwnedKey { k: *k, v: val })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bpos::BVersion;

    fn acct(p: Bpos, ver: u64, v: &[u64]) -> (Bkey, [u8; 16]) {
        let mut k = Bkey::new(KeyType::Accounting, p, v.len());
        k.version = BVersion { hi: 0, lo: ver };
        let mut b = [0u8; 16];
        for (i, x) in v.iter().enumerate() {
            b[8 * i..8 * i + 8].copy_from_slice(&x.to_le_bytes());
        }
        (k, b)
    }

    #[test]
    fn accounting_deltas_newer_than_the_btree_are_added() {
        let p = Bpos::new(0, 7, 0);
        let acc = BtreeId::Accounting as u8;
        let mut jk = JournalKeys::empty();
        let (k1, v1) = acct(p, 5, &[1, 2]);
        let (k2, v2) = acct(p, 7, &[10, u64::MAX]);
        let (k3, v3) = acct(p, 8, &[100, 0]);
        jk.push(acc, 0, 3, 0, &k1, &v1).unwrap();
        jk.push(acc, 0, 4, 0, &k2, &v2).unwrap();
        jk.push(acc, 0, 5, 0, &k3, &v3).unwrap();
        // A dirent key twice at one position: only the newest stays.
        let d = Bkey::new(KeyType::Dirent, p, 0);
        jk.push(BtreeId::Dirents as u8, 0, 3, 1, &d, &[]).unwrap();
        jk.push(BtreeId::Dirents as u8, 0, 4, 1, &Bkey { size: 9, ..d }, &[]).unwrap();
        crate::util::sort::sort_by_key(&mut jk.keys, |k| k.sort_key());
        jk.dedup();
        assert_eq!(jk.len(), 4);
        let i = jk.lower_bound(acc, 0, p);
        let e = jk.slot_end(i);
        assert_eq!(e - i, 3);
        // Btree value at version 6: the version-5 delta is already in it.
        let (bk, bv) = acct(p, 6, &[1000, 5]);
        let r = jk.resolve(i, e, Some((bk, &bv))).unwrap().unwrap();
        assert_eq!(r.k.version.lo, 8);
        assert_eq!(&r.v[..], &acct(p, 0, &[1110, 4]).1);
        // No btree key: the deltas alone.
        let r = jk.resolve(i, e, None).unwrap().unwrap();
        assert_eq!(&r.v[..], &acct(p, 0, &[111, 1]).1);
        let di = jk.lower_bound(BtreeId::Dirents as u8, 0, p);
        let r = jk.resolve(di, jk.slot_end(di), None).unwrap().unwrap();
        assert_eq!(r.k.size, 9);
    }
}
