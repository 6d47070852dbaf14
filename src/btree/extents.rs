// SPDX-License-Identifier: GPL-2.0
//! Extent overwrites: inserting an extent trims or splits the extents it
//! overlaps (`bch2_trans_update_extent()` in `btree_update.c`,
//! `bch2_cut_front()`/`bch2_cut_back()` in `extents.c`).
//!
//! For an existing extent `[ks, ke)` and a new one `[s, e)` of the same
//! inode and snapshot:
//!
//! * `ks < s`: the front `[ks, s)` stays, as a new key at `s`;
//! * `ke > e`: the back `[e, ke)` stays, at its own position `ke` (it
//!   replaces the old key there), its value moved forward by `e - ks`;
//! * otherwise the old key is deleted (unless the new key lands on its
//!   position and replaces it anyway).
//!
//! A front and a back piece together are the middle split.  The existing
//! extents are the btree's with this transaction's earlier updates laid
//! over them, so overlapping updates in one transaction compose.

use crate::errcode::{BchError, Errno};
use crate::format::bkey::{BkeyI, KeyType};
use crate::format::bpos::Bpos;
use crate::format::val::extent::{ExtentEntries, ExtentEntry};
use crate::platform::Vec;

use super::trans::{bkey_i, BtreeTrans};

/// Moves the start of extent `k` forward by `delta` sectors
/// (`bch2_cut_front()`): the size shrinks and the value follows (pointer
/// offsets, reflink index).
///
/// Errors: `EOPNOTSUPP` for values that cannot be moved here (checksummed
/// or compressed extents, inline data); `EINVAL` when `delta` is not
/// inside the extent.
pub fn cut_front(k: &mut BkeyI, delta: u64) -> Result<(), Errno> {
    let delta32 = u32::try_from(delta).map_err(|_| Errno::EINVAL)?;
    if delta32 >= k.k.size {
        return Err(Errno::EINVAL);
    }
    k.k.size -= delta32;
    match KeyType::from_u8(k.k.key_type) {
        Some(KeyType::Extent) => {
            let mut out: Vec<u8> = Vec::with_capacity(k.v.len())?;
            for e in ExtentEntries::new(&k.v) {
                match e {
                    Ok(ExtentEntry::Ptr(mut p)) => {
                        p.offset = p.offset.checked_add(delta).ok_or(Errno::EINVAL)?;
                        out.extend_from_slice(&p.encode().to_le_bytes())?;
                    }
                    _ => return Err(Errno::EOPNOTSUPP),
                }
            }
            k.v = out;
        }
        Some(KeyType::ReflinkP) => {
            // idx: the low 56 bits of the first u64 (REFLINK_P_IDX).
            let b = k.v.get(..8).ok_or(Errno::EINVAL)?;
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            let word = u64::from_le_bytes(w);
            let mask = (1u64 << 56) - 1;
            let idx = (word & mask).checked_add(delta).ok_or(Errno::EINVAL)? & mask;
            k.v[..8].copy_from_slice(&((word & !mask) | idx).to_le_bytes());
        }
        Some(KeyType::Reservation | KeyType::Error | KeyType::Cookie | KeyType::Whiteout | KeyType::Deleted) => {}
        _ => return Err(Errno::EOPNOTSUPP),
    }
    Ok(())
}

/// Ends extent `k` at `end` (`bch2_cut_back()`): position and size move,
/// the value stays.
pub fn cut_back(k: &mut BkeyI, end: u64) -> Result<(), Errno> {
    let start = k.k.start_offset();
    if end <= start || end > k.k.p.offset {
        return Err(Errno::EINVAL);
    }
    k.k.size = u32::try_from(end - start).map_err(|_| Errno::EINVAL)?;
    k.k.p.offset = end;
    Ok(())
}

/// Queues the trims and deletions that inserting `k` (an extent, or a
/// `deleted` key with a size: a range deletion) into `btree` needs
/// (`bch2_trans_update_extent()`).
///
/// Errors: as [`BtreeTrans::update`].
pub(crate) fn overwrite(trans: &mut BtreeTrans<'_>, btree: u8, k: &BkeyI) -> Result<(), BchError> {
    let (inode, snap) = (k.k.p.inode, k.k.p.snapshot);
    let (s, e) = (k.k.start_offset(), k.k.p.offset);
    if s >= e {
        return Ok(());
    }
    // Existing extents of this inode and snapshot overlapping [s, e).
    let mut found: Vec<BkeyI> = Vec::new();
    let id = crate::format::bkey::BtreeId::from_u32(u32::from(btree)).ok_or(Errno::EINVAL)?;
    let it = trans.iter(id, Bpos::new(inode, s.saturating_add(1), 0), false)?;
    while let Some(x) = trans.iter_next(it)? {
        if x.k.p.inode != inode || x.k.p.offset > e.saturating_add(u64::from(u32::MAX)) {
            break;
        }
        if x.k.p.snapshot != snap {
            continue;
        }
        let last = x.k.p.offset >= e;
        if x.k.start_offset() < e && x.k.p.offset > s {
            found.push(x)?;
        }
        if last {
            break;
        }
    }
    // This transaction's earlier updates win over the btree.
    for u in trans.updates.iter() {
        if u.btree != btree || u.level != 0 || u.k.k.p.inode != inode || u.k.k.p.snapshot != snap {
            continue;
        }
        if let Some(i) = found.iter().position(|x| x.k.p == u.k.k.p) {
            found[i..].rotate_left(1);
            let n = found.len();
            found.truncate(n - 1);
        }
        let x = &u.k.k;
        if !x.is_deleted() && x.start_offset() < e && x.p.offset > s {
            found.push(bkey_i(&u.k.k, &u.k.v)?)?;
        }
    }
    crate::util::sort::sort_by_key(&mut found, |x| x.k.p);
    for x in found.iter() {
        let (ks, ke) = (x.k.start_offset(), x.k.p.offset);
        if ks < s {
            let mut front = bkey_i(&x.k, &x.v)?;
            cut_back(&mut front, s)?;
            trans.push_update(btree, 0, front)?;
        }
        if ke > e {
            let mut back = bkey_i(&x.k, &x.v)?;
            cut_front(&mut back, e - ks)?;
            trans.push_update(btree, 0, back)?;
        } else if ke != e {
            let del = bkey_i(&crate::format::bkey::Bkey::new(KeyType::Deleted, x.k.p, 0), &[])?;
            trans.push_update(btree, 0, del)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bkey::Bkey;
    use crate::format::val::extent::ExtentPtr;

    #[test]
    fn cut_front_moves_pointers_and_cut_back_keeps_them() {
        let mut v = Vec::new();
        v.extend_from_slice(&ExtentPtr { offset: 1000, ..Default::default() }.encode().to_le_bytes()).unwrap();
        let mut k = Bkey::new(KeyType::Extent, Bpos::new(1, 100, 1), 1);
        k.size = 64;
        let mut e = BkeyI { k, v };
        cut_front(&mut e, 16).unwrap();
        assert_eq!((e.k.start_offset(), e.k.p.offset, e.k.size), (52, 100, 48));
        let p = match ExtentEntries::new(&e.v).next() {
            Some(Ok(ExtentEntry::Ptr(p))) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(p.offset, 1016);
        cut_back(&mut e, 60).unwrap();
        assert_eq!((e.k.start_offset(), e.k.p.offset, e.k.size), (52, 60, 8));
        assert_eq!(cut_back(&mut e, 52), Err(Errno::EINVAL));
        assert_eq!(cut_front(&mut e, 8), Err(Errno::EINVAL));
        let mut inline = BkeyI { k: Bkey { size: 8, ..Bkey::new(KeyType::InlineData, Bpos::new(1, 8, 1), 1) }, v: Vec::new() };
        assert_eq!(cut_front(&mut inline, 1), Err(Errno::EOPNOTSUPP));
    }
}
