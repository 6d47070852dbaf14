// SPDX-License-Identifier: GPL-2.0
//! What the superblock records about where data and btree nodes are, as
//! C keeps it up to date while it writes:
//!
//! * the replicas section (`replicas_v0`, or `replicas` when some entry
//!   needs more than one copy to read): every replicas entry the
//!   accounting uses (`bch2_mark_replicas()`,
//!   `bch2_cpu_replicas_to_sb_replicas()`); C's accounting read reports a
//!   counter whose entry is missing there;
//! * each member's `btree_allocated_bitmap`: the regions of the device
//!   that may hold btree nodes (`bch2_dev_btree_bitmap_mark()`); C's fsck
//!   reports a node pointer outside it.

use crate::accounting::{ReplicasEntry, REPLICAS_DEVS_MAX};
use crate::errcode::Errno;
use crate::format::sb::{FieldType, Sb};
use crate::format::sb_members::{Member, MEMBERS_V2_HEADER, MEMBER_BYTES};
use crate::format::sb_write::SbBuf;
use crate::platform::Vec;

/// The replicas entries the superblock lists (`replicas_v0` and
/// `replicas` fields), `bch2_sb_replicas_to_cpu_replicas()`.  An entry
/// that runs past the end of its field ends the walk.
///
/// Errors: `ENOMEM`.
pub fn sb_replicas(sb: &Sb<'_>) -> Result<Vec<ReplicasEntry>, Errno> {
    let mut out = Vec::new();
    for (ty, v0) in [(FieldType::ReplicasV0, true), (FieldType::Replicas, false)] {
        let Some(f) = sb.field(ty) else { continue };
        let b = f.body();
        let hdr = if v0 { 2 } else { 3 };
        let mut at = 0usize;
        // for_each_replicas_entry(): a zero data type ends the list.
        while at + hdr <= b.len() && b[at] != 0 {
            let nr_devs = usize::from(b[at + 1]);
            let end = at + hdr + nr_devs;
            let Some(devs) = b.get(at + hdr..end) else {
                break;
            };
            let mut e = ReplicasEntry::new(b[at], if v0 { 1 } else { b[at + 2] });
            for &d in devs.iter().take(REPLICAS_DEVS_MAX) {
                e.add_dev(d)?;
            }
            out.push(e)?;
            at = end;
        }
    }
    Ok(out)
}

/// Whether `have` lists `e` (`bch2_replicas_marked_locked()`: the same
/// data type, copies required and devices; devices compared sorted).
pub fn replicas_marked(have: &[ReplicasEntry], e: &ReplicasEntry) -> bool {
    let key = sort_key(e);
    have.iter().any(|h| sort_key(h) == key)
}

/// The entry as C compares entries in its in-memory table (`memcmp()` of
/// `struct bch_replicas_entry_v1` padded to the table's entry size):
/// data type, number of devices, copies required, sorted devices.
fn sort_key(e: &ReplicasEntry) -> (u8, u8, u8, [u8; REPLICAS_DEVS_MAX]) {
    let mut devs = [0u8; REPLICAS_DEVS_MAX];
    let n = e.devs().len();
    devs[..n].copy_from_slice(e.devs());
    // At most 16 devices: an insertion sort.
    for i in 1..n {
        let mut j = i;
        while j > 0 && devs[j - 1] > devs[j] {
            devs.swap(j - 1, j);
            j -= 1;
        }
    }
    (e.data_type, n as u8, e.nr_required, devs)
}

/// Adds the entries of `add` the superblock does not list yet to its
/// replicas section and rewrites it as C does (`bch2_mark_replicas()` ->
/// `bch2_cpu_replicas_to_sb_replicas()`): the entries sorted, in the
/// eytzinger order of C's table (`bch2_cpu_replicas_sort()`), as a
/// `replicas_v0` field when every entry needs one copy to read, else as
/// `replicas`; the other field removed.  Returns whether the superblock
/// changed.  Entries with no device or no data type are skipped.
///
/// Errors: `ENOMEM`, `EINVAL` (a superblock that does not parse).
pub fn sb_replicas_mark(sb: &mut SbBuf, add: &[ReplicasEntry]) -> Result<bool, Errno> {
    let mut have = sb_replicas(&sb.sb().map_err(|_| Errno::EINVAL)?)?;
    let mut changed = false;
    for e in add.iter() {
        if e.nr_devs == 0 || e.data_type == 0 || replicas_marked(&have, e) {
            continue;
        }
        have.push(*e)?;
        changed = true;
    }
    if !changed {
        return Ok(false);
    }
    let mut keys: Vec<(u8, u8, u8, [u8; REPLICAS_DEVS_MAX])> = Vec::new();
    for e in have.iter() {
        let k = sort_key(e);
        if !keys.contains(&k) {
            keys.push(k)?;
        }
    }
    // A handful of entries, and no core sort code in the module: an
    // insertion sort.
    for i in 1..keys.len() {
        let mut j = i;
        while j > 0 && keys[j - 1] > keys[j] {
            keys.swap(j - 1, j);
            j -= 1;
        }
    }
    let v0 = keys.iter().all(|k| k.2 == 1);
    let mut body: Vec<u8> = Vec::new();
    for &i in eytzinger0_order(keys.len())?.iter() {
        let (data_type, n, nr_required, devs) = keys[i];
        body.push(data_type)?;
        body.push(n)?;
        if !v0 {
            body.push(nr_required)?;
        }
        body.extend_from_slice(&devs[..usize::from(n)])?;
    }
    let (keep, drop) = if v0 {
        (FieldType::ReplicasV0, FieldType::Replicas)
    } else {
        (FieldType::Replicas, FieldType::ReplicasV0)
    };
    sb.remove_field(drop).map_err(|_| Errno::ENOMEM)?;
    sb.set_field(keep, &body).map_err(|_| Errno::ENOMEM)?;
    Ok(true)
}

/// For each slot of an eytzinger (breadth-first) array of `n` elements,
/// the index of the sorted element it holds (`eytzinger0_sort()`'s
/// result): slot `i` has children `2i+1` and `2i+2`, and an in-order walk
/// of the slots visits the sorted elements in order.
fn eytzinger0_order(n: usize) -> Result<Vec<usize>, Errno> {
    let mut out = Vec::new();
    out.resize(n, 0)?;
    let mut stack: Vec<usize> = Vec::new();
    let mut next = 0usize;
    let mut i = 0usize;
    loop {
        while i < n {
            stack.push(i)?;
            i = 2 * i + 1;
        }
        let Some(s) = stack.pop() else { break };
        out[s] = next;
        next += 1;
        i = 2 * s + 2;
    }
    Ok(out)
}

/// Whether the member's `btree_allocated_bitmap` covers the `sectors` from
/// `start` (`bch2_dev_btree_bitmap_marked_sectors()`).
pub fn btree_bitmap_marked_sectors(m: &Member, start: u64, sectors: u32) -> bool {
    let shift = u32::from(m.btree_bitmap_shift);
    let Some(end) = start.checked_add(u64::from(sectors)) else {
        return false;
    };
    if shift >= 58 || end > 64u64 << shift {
        return false;
    }
    let mut bit = start >> shift;
    while bit << shift < end {
        if m.btree_allocated_bitmap & (1u64 << bit) == 0 {
            return false;
        }
        bit += 1;
    }
    true
}

/// Marks the `sectors` from `start` in the member's
/// `btree_allocated_bitmap`, growing its granularity when the range is
/// past what 64 bits cover (`__bch2_dev_btree_bitmap_mark()`).
///
/// Errors: `EINVAL` when the range is past what the largest granularity
/// covers.
pub fn btree_bitmap_mark_sectors(m: &mut Member, start: u64, sectors: u32) -> Result<(), Errno> {
    let end = start.checked_add(u64::from(sectors)).ok_or(Errno::EINVAL)?;
    let mut bitmap = m.btree_allocated_bitmap;
    // ilog2(roundup_pow_of_two(end)) - (shift + 6)
    let log = if end <= 1 {
        0
    } else {
        64 - (end - 1).leading_zeros()
    };
    let resize = log as i64 - (i64::from(m.btree_bitmap_shift) + 6);
    if resize > 0 {
        let r = resize as u32;
        let mut nb = 0u64;
        for i in 0..64u32 {
            if bitmap & (1u64 << i) != 0 {
                nb |= 1u64 << (i >> r);
            }
        }
        bitmap = nb;
        m.btree_bitmap_shift += r as u8;
    }
    let shift = u32::from(m.btree_bitmap_shift);
    if shift >= 58 || end > 64u64 << shift {
        return Err(Errno::EINVAL);
    }
    let mut bit = start >> shift;
    while bit << shift < end {
        bitmap |= 1u64 << bit;
        bit += 1;
    }
    m.btree_allocated_bitmap = bitmap;
    Ok(())
}

/// Changes member `dev`'s `members_v2` entry in the superblock with `f`,
/// which returns whether it changed anything.  Returns that.
///
/// Errors: `EINVAL` (no such member, a superblock that does not parse),
/// those of `f`.
pub fn sb_member_update(sb: &mut SbBuf, dev: u8, f: impl FnOnce(&mut Member) -> Result<bool, Errno>) -> Result<bool, Errno> {
    let (at, mb, mut m) = {
        let s = sb.sb().map_err(|_| Errno::EINVAL)?;
        let fld = s.field(FieldType::MembersV2).ok_or(Errno::EINVAL)?;
        let mv = s.members_v2().ok_or(Errno::EINVAL)?;
        let m = mv.get(usize::from(dev)).ok_or(Errno::EINVAL)?;
        let field_at = fld.bytes.as_ptr() as usize - s.bytes().as_ptr() as usize;
        (
            field_at + MEMBERS_V2_HEADER + usize::from(dev) * usize::from(mv.member_bytes),
            usize::from(mv.member_bytes),
            m,
        )
    };
    if !f(&mut m)? {
        return Ok(false);
    }
    let raw = m.encode();
    let n = mb.min(MEMBER_BYTES);
    let dst = sb.bytes_mut().get_mut(at..at + n).ok_or(Errno::EINVAL)?;
    dst.copy_from_slice(&raw[..n]);
    Ok(true)
}

/// Marks the node of `sectors` at `start` on member `dev` in the
/// superblock's `members_v2` entry (`bch2_dev_btree_bitmap_mark()`).
/// Returns whether the superblock changed.
///
/// Errors: `EINVAL` (no such member, a superblock that does not parse, a
/// range past the largest granularity).
pub fn sb_btree_bitmap_mark(
    sb: &mut SbBuf,
    dev: u8,
    start: u64,
    sectors: u32,
) -> Result<bool, Errno> {
    sb_member_update(sb, dev, |m| {
        if btree_bitmap_marked_sectors(m, start, sectors) {
            return Ok(false);
        }
        btree_bitmap_mark_sectors(m, start, sectors)?;
        Ok(true)
    })
}

/// Adds to the superblock's replicas section the entries of the
/// in-memory accounting of `trig` and the journal's on `dev`
/// (`bch2_journal_write()` marks it, not the accounting).  Returns
/// whether it changed.
///
/// Errors: `ENOMEM`, `EINVAL`.
fn sb_mark_replicas(sb: &mut SbBuf, trig: &crate::triggers::FsTriggers<'_>, dev: u8) -> Result<bool, Errno> {
    use crate::accounting::DiskAccountingPos;
    let mem = trig.accounting_mem()?;
    let mut reps = Vec::new();
    let mut j = ReplicasEntry::new(crate::format::val::alloc::data_type::JOURNAL, 1);
    j.add_dev(dev)?;
    reps.push(j)?;
    for (pos, _, _) in mem.entries().iter() {
        if let Some(DiskAccountingPos::Replicas(e)) = DiskAccountingPos::from_bpos(*pos) {
            reps.push(e)?;
        }
    }
    sb_replicas_mark(sb, &reps)
}

/// Sets the members' btree bitmap bits over nodes of `node_sectors` at
/// `ptrs` (device, sector).  Returns whether anything changed.
///
/// Errors: `ENOMEM`, `EINVAL`.
fn sb_mark_btree_ptrs(sb: &mut SbBuf, ptrs: &[(u8, u64)], node_sectors: u32) -> Result<bool, Errno> {
    let mut changed = false;
    for &(d, sector) in ptrs.iter() {
        changed |= sb_btree_bitmap_mark(sb, d, sector, node_sectors)?;
    }
    Ok(changed)
}

/// Brings the superblock's marks up to what a mount with triggers `trig`
/// wrote: the replicas entries of its in-memory accounting and the
/// journal's on `dev`, and the btree bitmap over every node pointer `trig`
/// knows (nodes of `node_sectors`).  Returns whether anything changed
/// (the superblock must then be written).
///
/// Errors: `ENOMEM`, `EINVAL`.
pub fn sb_mark_written(sb: &mut SbBuf, trig: &crate::triggers::FsTriggers<'_>, dev: u8, node_sectors: u32) -> Result<bool, Errno> {
    let replicas = sb_mark_replicas(sb, trig, dev)?;
    let bitmap = sb_mark_btree_ptrs(sb, &trig.node_ptr_sectors()?, node_sectors)?;
    Ok(replicas || bitmap)
}

/// What a commit may have added since the last call
/// ([`crate::triggers::FsTriggers::take_sb_marks`]): the replicas entries
/// when `replicas` (a counter was created), and the btree bitmap bits of
/// the new node pointers `ptrs` only.  Returns whether anything changed.
///
/// Errors: `ENOMEM`, `EINVAL`.
pub fn sb_mark_new(
    sb: &mut SbBuf,
    trig: &crate::triggers::FsTriggers<'_>,
    dev: u8,
    node_sectors: u32,
    replicas: bool,
    ptrs: &[(u8, u64)],
) -> Result<bool, Errno> {
    let r = replicas && sb_mark_replicas(sb, trig, dev)?;
    let b = sb_mark_btree_ptrs(sb, ptrs, node_sectors)?;
    Ok(r || b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eytzinger_order_matches_c() {
        // Two entries: the root holds the larger (C's c-fresh lists btree
        // before journal).
        assert_eq!(eytzinger0_order(2).unwrap()[..], [1, 0]);
        assert_eq!(eytzinger0_order(3).unwrap()[..], [1, 0, 2]);
        assert_eq!(eytzinger0_order(6).unwrap()[..], [3, 1, 5, 0, 2, 4]);
    }

    #[test]
    fn btree_bitmap_grows() {
        let mut m = Member {
            btree_bitmap_shift: 9,
            ..Default::default()
        };
        btree_bitmap_mark_sectors(&mut m, 512, 512).unwrap();
        assert_eq!(m.btree_allocated_bitmap, 0b10);
        assert!(btree_bitmap_marked_sectors(&m, 512, 512));
        assert!(!btree_bitmap_marked_sectors(&m, 0, 512));
        // Past 64 << 9 sectors: the granularity doubles, bits merge.
        btree_bitmap_mark_sectors(&mut m, 64 * 512, 512).unwrap();
        assert_eq!(m.btree_bitmap_shift, 10);
        assert_eq!(m.btree_allocated_bitmap, (1 << 0) | (1 << 32));
        assert!(btree_bitmap_marked_sectors(&m, 512, 512));
    }
}
