// SPDX-License-Identifier: GPL-2.0
//! The superblock's journal sequence number blacklist and its `clean`
//! marking, as the journal's start and shutdown update them.
//!
//! Matches, in `fs/bcachefs`: `journal_seq_blacklist.c`
//! (`bch2_journal_seq_blacklist_add()`) and the superblock half of
//! `sb-clean.c` (`bch2_fs_mark_clean()`, `bch2_fs_mark_dirty()`).
//!
//! After an unclean shutdown, entries written but never flushed (and the
//! next 8 sequence numbers, which btree node writes may name) must never
//! be replayed: their range goes into the `journal_seq_blacklist` field
//! (`struct journal_seq_blacklist_entry`: `start`, `end` as u64s, the
//! range `[start, end)`) before the journal writes anything.

use crate::errcode::Errno;
use crate::format::sb::{FieldType, Sb};
use crate::format::sb_opts::SbFlag;
use crate::format::sb_write::SbBuf;
use crate::platform::Vec;
use crate::util::le::le64;

/// The blacklisted ranges of a superblock, `[start, end)`, in field order.
///
/// Errors: `ENOMEM`.
pub fn blacklist_read(sb: &Sb<'_>) -> Result<Vec<(u64, u64)>, Errno> {
    let mut v: Vec<(u64, u64)> = Vec::new();
    if let Some(f) = sb.field(FieldType::JournalSeqBlacklist) {
        let b = f.body();
        for i in 0..b.len() / 16 {
            v.push((le64(b, 16 * i), le64(b, 16 * i + 8)))?;
        }
    }
    Ok(v)
}

/// Adds `[start, end)` to the blacklist of `sb`, merging it with the
/// ranges it overlaps or touches and keeping them sorted
/// (`bch2_journal_seq_blacklist_add()`).  The caller writes the
/// superblock.
///
/// Errors: `EINVAL` when `start >= end` or the superblock does not parse;
/// `ENOMEM`.
pub fn blacklist_add(sb: &mut SbBuf, start: u64, end: u64) -> Result<(), Errno> {
    if start >= end {
        return Err(Errno::EINVAL);
    }
    let old = blacklist_read(&sb.sb().map_err(|_| Errno::EINVAL)?)?;
    let (mut s, mut e) = (start, end);
    let mut keep: Vec<(u64, u64)> = Vec::new();
    for &(a, b) in old.iter() {
        if b >= s && a <= e {
            s = s.min(a);
            e = e.max(b);
        } else {
            keep.push((a, b))?;
        }
    }
    keep.push((s, e))?;
    crate::util::sort::sort_by_key(&mut keep, |r| *r);
    let mut body: Vec<u8> = Vec::with_capacity(keep.len() * 16)?;
    for &(a, b) in keep.iter() {
        body.extend_from_slice(&a.to_le_bytes())?;
        body.extend_from_slice(&b.to_le_bytes())?;
    }
    sb.set_field(FieldType::JournalSeqBlacklist, &body)?;
    Ok(())
}

/// Marks `sb` clean with the `clean` section body `clean` (from
/// [`super::write::Journal::clean_section`]): the section replaced, the
/// `BCH_SB_CLEAN` flag set (`bch2_fs_mark_clean()`).  The caller writes
/// the superblock.
///
/// Errors: `ENOMEM`.
pub fn mark_clean(sb: &mut SbBuf, clean: &[u8]) -> Result<(), Errno> {
    sb.set_field(FieldType::Clean, clean)?;
    sb.set_flag(SbFlag::Clean, 1);
    Ok(())
}

/// Clears the `BCH_SB_CLEAN` flag before the first journal write after
/// mount (`bch2_fs_mark_dirty()`); the stale `clean` section stays, as
/// in C, and is ignored.
pub fn mark_dirty(sb: &mut SbBuf) {
    sb.set_flag(SbFlag::Clean, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::sb_write::{format, FormatOpts};

    #[test]
    fn blacklist_ranges_merge() {
        let f = format(1 << 30, &FormatOpts::new([1; 16], [2; 16], [3; 16], 1)).unwrap();
        let mut sb = f.sb().try_clone().unwrap();
        blacklist_add(&mut sb, 10, 20).unwrap();
        blacklist_add(&mut sb, 40, 50).unwrap();
        blacklist_add(&mut sb, 5, 8).unwrap();
        assert_eq!(blacklist_read(&sb.sb().unwrap()).unwrap()[..], [(5, 8), (10, 20), (40, 50)]);
        blacklist_add(&mut sb, 18, 40).unwrap();
        assert_eq!(blacklist_read(&sb.sb().unwrap()).unwrap()[..], [(5, 8), (10, 50)]);
        assert_eq!(blacklist_add(&mut sb, 3, 3), Err(Errno::EINVAL));
        mark_clean(&mut sb, &[0u8; 16]).unwrap();
        mark_clean(&mut sb, &[1u8; 24]).unwrap();
        let s = sb.sb().unwrap();
        assert_eq!(s.flag(SbFlag::Clean), 1);
        assert_eq!(s.field(FieldType::Clean).unwrap().body(), [1u8; 24]);
        assert_eq!(blacklist_read(&s).unwrap().len(), 2, "other fields kept");
        mark_dirty(&mut sb);
        assert_eq!(sb.sb().unwrap().flag(SbFlag::Clean), 0);
    }
}
