// SPDX-License-Identifier: GPL-2.0
//! `fallocate(2)` and `lseek(2)`'s `SEEK_DATA`/`SEEK_HOLE` on the btrees,
//! without a page cache: the kernel glue writes back and drops the page
//! cache of the range first (as C's `bch2_fallocate_dispatch()` does with
//! `bch2_truncate_folios()` and `truncate_pagecache_range()`), then calls
//! these.
//!
//! Matches, in `fs/bcachefs`: `bchfs_fallocate()`, `__bchfs_fallocate()`,
//! `bchfs_fpunch()`, `bchfs_fcollapse_finsert()` and
//! `bch2_fallocate_dispatch()` in `fs-io.c`; `bch2_extent_fallocate()`,
//! `bch2_fcollapse_finsert()` and `__bch2_resume_logged_op_finsert()` in
//! `io_misc.c`; `bch2_seek_data()`/`bch2_seek_hole()` in `fs-io.c`.
//!
//! Not done yet: disk reservations (a reservation key here takes no
//! space from the allocator, so `fallocate` beyond the free space
//! succeeds where C returns `ENOSPC`), and the logged op that makes
//! collapse/insert resumable after a crash (`logged_op_finsert`, a
//! recovery pass of issue 11): a crash in the middle leaves the extents
//! moved so far moved.

use crate::errcode::{BchError, Errno};
use crate::format::bkey::{BkeyI, BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::val::inode::InodeField;
use crate::platform::SECTOR_SIZE;

use super::inode_write::{current_time, inode_peek, inode_write};
use super::io_write::{cut_back, cut_front, extent_update, fpunch, read_block, write_data, MAX_FILE_BYTES};
use super::trans::{clone_key, commit_do, delete_key, new_key, BtreeTransOps, DataAlloc};
use super::{BtreeRead, Subvol};

const SECTOR: u64 = SECTOR_SIZE as u64;

/// `FALLOC_FL_KEEP_SIZE`: `i_size` stays.
pub const FALLOC_FL_KEEP_SIZE: u32 = 0x01;
/// `FALLOC_FL_PUNCH_HOLE` (with `KEEP_SIZE`).
pub const FALLOC_FL_PUNCH_HOLE: u32 = 0x02;
/// `FALLOC_FL_COLLAPSE_RANGE`.
pub const FALLOC_FL_COLLAPSE_RANGE: u32 = 0x08;
/// `FALLOC_FL_ZERO_RANGE`.
pub const FALLOC_FL_ZERO_RANGE: u32 = 0x10;
/// `FALLOC_FL_INSERT_RANGE`.
pub const FALLOC_FL_INSERT_RANGE: u32 = 0x20;

/// Largest reservation key we make, sectors (a key's size is 32 bits).
const RESERVATION_MAX_SECTORS: u64 = 1 << 24;

/// `bkey_extent_is_data()`: keys whose sectors hold data (not holes or
/// reservations).
fn is_data(ty: u8) -> bool {
    ty == KeyType::Extent as u8 || ty == KeyType::ReflinkP as u8 || ty == KeyType::InlineData as u8 || ty == KeyType::ReflinkV as u8
}

/// A `reservation` key over sectors `[end - sectors, end)` of `inum`
/// (`bkey_reservation_init()`, `nr_replicas` as the volume's
/// `data_replicas`: 1 on the single-device volumes we open).
fn reservation(inum: u64, snapshot: u32, end: u64, sectors: u64) -> Result<BkeyI, Errno> {
    // struct bch_reservation: generation (le32), nr_replicas (u8), pad.
    let mut val = [0u8; 8];
    val[4] = 1;
    let mut k = new_key(KeyType::Reservation, Bpos::new(inum, end, snapshot), &val)?;
    k.k.size = u32::try_from(sectors).map_err(|_| Errno::EINVAL)?;
    Ok(k)
}

/// The first extents key of `inum` ending after sector `at`, if it starts
/// before `end`.
fn extent_after<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64, at: u64, end: u64) -> Result<Option<BkeyI>, BchError> {
    let last = Bpos::new(inum, u64::MAX, u32::MAX);
    let mut from = Bpos::new(inum, at + 1, 0);
    while let Some(k) = t.peek_upto(BtreeId::Extents, from, last, false)? {
        if k.k.p.snapshot == sv.snapshot {
            return Ok((k.k.start_offset() < end).then_some(k));
        }
        match k.k.p.successor() {
            Some(n) => from = n,
            None => break,
        }
    }
    Ok(None)
}

/// `__bchfs_fallocate()` over sectors `[start, end)`: every hole becomes a
/// reservation (`bch2_extent_fallocate()`), and with `zero` every data
/// extent too (`FALLOC_FL_ZERO_RANGE`); existing reservations stay.  One
/// transaction per key made.
fn fallocate_range<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64, start: u64, end: u64, zero: bool) -> Result<(), Errno> {
    let mut at = start;
    while at < end {
        let next = commit_do(t, |t| {
            let k = extent_after(t, sv, inum, at, end)?;
            let (hole_end, replace) = match &k {
                None => (end, true),
                Some(k) if k.k.start_offset() > at => (k.k.start_offset(), true),
                Some(k) => {
                    let ty = k.k.key_type;
                    let kend = k.k.p.offset.min(end);
                    (kend, zero && is_data(ty))
                }
            };
            let hole_end = hole_end.min(at + RESERVATION_MAX_SECTORS);
            if replace {
                let r = reservation(inum, sv.snapshot, hole_end, hole_end - at)?;
                extent_update(t, inum, sv.snapshot, at, hole_end, Some(&r), None)?;
            }
            Ok(hole_end)
        })?;
        at = next;
    }
    Ok(())
}

/// Zeroes bytes `[from, to)` of file `inum` that lie in one block, as
/// `bch2_truncate_folios()` zeroes a partial block in the page cache: the
/// block is read, the bytes zeroed, and the block written back (up to
/// `i_size` only) when it held anything.
fn zero_partial_block<T: BtreeTransOps + ?Sized, A: DataAlloc + ?Sized>(
    t: &mut T,
    a: &mut A,
    sv: &Subvol,
    inum: u64,
    from: u64,
    to: u64,
) -> Result<(), Errno> {
    if from >= to {
        return Ok(());
    }
    let block = u64::from(t.facts().block_bytes.max(512));
    let bstart = from / block * block;
    let u = commit_do(t, |t| inode_peek(t, sv.snapshot, inum))?;
    if bstart >= u.size {
        return Ok(());
    }
    let mut blk = read_block(t, sv, &u, bstart)?;
    let (lo, hi) = ((from - bstart) as usize, (to - bstart).min(block) as usize);
    let Some(part) = blk.get_mut(lo..hi) else { return Err(Errno::EINVAL) };
    if part.iter().all(|&b| b == 0) {
        return Ok(());
    }
    part.fill(0);
    let keep = (u.size - bstart).min(block) as usize;
    write_data(t, a, sv, inum, bstart, blk.get(..keep).unwrap_or(&[]))
}

/// Sets `i_size` (and, with `times`, mtime and ctime) of `inum`
/// (`bch2_write_inode_size()`).
fn set_size<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64, size: Option<u64>, times: bool) -> Result<u64, Errno> {
    commit_do(t, |t| {
        let now = current_time(t);
        let mut u = inode_peek(t, sv.snapshot, inum)?;
        if let Some(s) = size {
            u.size = s;
        }
        if times {
            u.set(InodeField::Mtime, now);
            u.set(InodeField::Ctime, now);
        }
        inode_write(t, &u)?;
        Ok(u.size)
    })
}

/// The arguments of a `fallocate(2)` checked before anything changes (the
/// checks of `bch2_fallocate_dispatch()` and `bchfs_fcollapse_finsert()`):
/// `size` is the file's `i_size` and `block` the block size, in bytes.
///
/// Errors: `EINVAL` (`len` 0; collapse or insert not block aligned, or
/// not inside the file), `EFBIG` (past the largest file), `EOPNOTSUPP`
/// (a mode `fallocate` does not have).
pub fn fallocate_check(mode: u32, offset: u64, len: u64, size: u64, block: u64) -> Result<(), Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let end = offset.checked_add(len).filter(|&e| e <= MAX_FILE_BYTES).ok_or(Errno::EFBIG)?;
    if mode & !(FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE) == 0 || mode == FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE {
        return Ok(());
    }
    let insert = match mode {
        FALLOC_FL_INSERT_RANGE => true,
        FALLOC_FL_COLLAPSE_RANGE => false,
        _ => return Err(Errno::EOPNOTSUPP),
    };
    if (offset | len) % block != 0 {
        return Err(Errno::EINVAL);
    }
    if insert && offset >= size {
        return Err(Errno::EINVAL);
    }
    if insert && MAX_FILE_BYTES - size < len {
        return Err(Errno::EFBIG);
    }
    if !insert && end >= size {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// `fallocate(2)` on file `inum` (`bch2_fallocate_dispatch()` without
/// the page cache part): `mode` is 0 or `KEEP_SIZE` (holes in the range
/// become reservations; `i_size` grows to the end unless `KEEP_SIZE`),
/// with `ZERO_RANGE` (data in the range too: partial blocks zeroed, whole
/// blocks replaced by a reservation), `PUNCH_HOLE | KEEP_SIZE` (partial
/// blocks zeroed, whole blocks punched; mtime and ctime set),
/// `COLLAPSE_RANGE` and `INSERT_RANGE` (extents after the range moved by
/// `len`, block-aligned only).  `offset` and `len` are bytes.  Returns
/// the file's `i_size` afterwards.
///
/// Errors: `EOPNOTSUPP` (another mode), `EINVAL` (`len` 0; collapse or
/// insert not block aligned or not inside the file), `EFBIG`, `ENOENT`,
/// `ENOSPC`, `EIO`, `ENOMEM`.
#[allow(clippy::too_many_arguments)]
pub fn fallocate<T: BtreeTransOps + ?Sized, A: DataAlloc + ?Sized>(
    t: &mut T,
    a: &mut A,
    sv: &Subvol,
    inum: u64,
    mode: u32,
    offset: u64,
    len: u64,
) -> Result<u64, Errno> {
    let block = u64::from(t.facts().block_bytes.max(512));
    let size = commit_do(t, |t| inode_peek(t, sv.snapshot, inum))?.size;
    fallocate_check(mode, offset, len, size, block)?;
    let end = offset + len;
    if mode & !(FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE) == 0 {
        let zero = mode & FALLOC_FL_ZERO_RANGE != 0;
        let (bs, be) = if zero {
            // Partial blocks at the ends: zeroed in place.
            let head_end = end.min(offset.div_ceil(block) * block);
            zero_partial_block(t, a, sv, inum, offset, head_end)?;
            let tail_start = (end / block * block).max(head_end);
            zero_partial_block(t, a, sv, inum, tail_start, end)?;
            (offset.div_ceil(block) * block, end / block * block)
        } else {
            (offset / block * block, end.div_ceil(block) * block)
        };
        if bs < be {
            fallocate_range(t, sv, inum, bs / SECTOR, be / SECTOR, zero)?;
        }
        let size = commit_do(t, |t| inode_peek(t, sv.snapshot, inum))?.size;
        let new_end = if mode & FALLOC_FL_KEEP_SIZE != 0 { end.min(size) } else { end };
        if new_end >= size && (zero || mode & FALLOC_FL_KEEP_SIZE == 0) {
            return set_size(t, sv, inum, Some(new_end), false);
        }
        return Ok(size);
    }
    if mode == FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE {
        let (bs, be) = (offset.div_ceil(block) * block, end / block * block);
        let head_end = end.min(bs);
        zero_partial_block(t, a, sv, inum, offset, head_end)?;
        zero_partial_block(t, a, sv, inum, be.max(head_end), end)?;
        if bs < be {
            fpunch(t, sv, inum, bs / SECTOR, be / SECTOR)?;
        }
        return set_size(t, sv, inum, None, true);
    }
    if mode == FALLOC_FL_INSERT_RANGE || mode == FALLOC_FL_COLLAPSE_RANGE {
        let insert = mode == FALLOC_FL_INSERT_RANGE;
        return fcollapse_finsert(t, sv, inum, offset / SECTOR, len / SECTOR, insert);
    }
    Err(Errno::EOPNOTSUPP)
}

/// `bch2_fcollapse_finsert()` in sectors: inserting grows `i_size` by
/// `len` first, then moves every extent ending after `offset` up by `len`,
/// last first (an extent across `offset` is split there); collapsing
/// punches `[offset, offset + len)`, moves every extent after it down by
/// `len`, first first, then shrinks `i_size`.  One transaction per extent
/// moved; mtime and ctime set.  Returns the new `i_size`.
fn fcollapse_finsert<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64, offset: u64, len: u64, insert: bool) -> Result<u64, Errno> {
    let bytes = len * SECTOR;
    if insert {
        commit_do(t, |t| {
            let now = current_time(t);
            let mut u = inode_peek(t, sv.snapshot, inum)?;
            u.size += bytes;
            u.set(InodeField::Mtime, now);
            u.set(InodeField::Ctime, now);
            inode_write(t, &u)
        })?;
    } else {
        fpunch(t, sv, inum, offset, offset + len)?;
    }
    // Collapse walks up from `offset`; insert walks down from the end.
    let mut pos = if insert { u64::MAX } else { offset };
    loop {
        let moved = commit_do(t, |t| {
            let k = if insert { last_extent_before(t, sv, inum, pos)? } else { extent_after(t, sv, inum, pos, u64::MAX)? };
            let Some(k) = k.filter(|k| k.k.p.offset > offset) else { return Ok(None) };
            let mut copy = clone_key(&k)?;
            let next = if insert && k.k.start_offset() < offset {
                // Split: the front stays, the back moves.
                let mut front = clone_key(&k)?;
                cut_back(&mut front, offset)?;
                cut_front(&mut copy, offset)?;
                t.update(BtreeId::Extents, delete_key(k.k.p, false))?;
                t.update(BtreeId::Extents, front)?;
                offset
            } else {
                t.update(BtreeId::Extents, delete_key(k.k.p, false))?;
                if insert {
                    k.k.start_offset()
                } else {
                    k.k.p.offset
                }
            };
            copy.k.p.offset = if insert { copy.k.p.offset + len } else { copy.k.p.offset - len };
            t.update(BtreeId::Extents, copy)?;
            Ok(Some(next))
        })?;
        match moved {
            Some(p) => pos = p,
            None => break,
        }
    }
    commit_do(t, |t| {
        let now = current_time(t);
        let mut u = inode_peek(t, sv.snapshot, inum)?;
        if !insert {
            u.size = u.size.saturating_sub(bytes);
        }
        u.set(InodeField::Mtime, now);
        u.set(InodeField::Ctime, now);
        inode_write(t, &u)?;
        Ok(u.size)
    })
}

/// The last extents key of `inum` (of `sv`'s snapshot) ending at or
/// before sector `at`.
fn last_extent_before<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64, at: u64) -> Result<Option<BkeyI>, BchError> {
    // No peek_prev in BtreeTransOps: walk forward, keep the last one.
    let mut last = None;
    let mut from = 0;
    while let Some(k) = extent_after(t, sv, inum, from, u64::MAX)? {
        if k.k.p.offset > at {
            break;
        }
        from = k.k.p.offset;
        last = Some(k);
    }
    Ok(last)
}

/// `bch2_seek_data()` on the btree: the first byte at or after `offset`
/// that lies in a data extent (not a hole or reservation), below `size`.
///
/// Errors: `ENXIO` (none: `offset` at or past `size`, or only holes
/// after it), `EIO`.
pub fn seek_data<R: BtreeRead + ?Sized>(r: &R, sv: &Subvol, inum: u64, offset: u64, size: u64) -> Result<u64, Errno> {
    if offset >= size {
        return Err(Errno::ENXIO);
    }
    let last = Bpos::new(inum, u64::MAX, u32::MAX);
    let mut from = Bpos::new(inum, offset / SECTOR + 1, 0);
    while let Some(k) = r.peek_upto(BtreeId::Extents, from, last, false)? {
        if k.k.p.snapshot == sv.snapshot && is_data(k.k.key_type) {
            let at = offset.max(k.k.start_offset() * SECTOR);
            return if at < size { Ok(at) } else { Err(Errno::ENXIO) };
        }
        if k.k.start_offset() * SECTOR >= size {
            break;
        }
        match k.k.p.successor() {
            Some(n) => from = n,
            None => break,
        }
    }
    Err(Errno::ENXIO)
}

/// `bch2_seek_hole()` on the btree: the first byte at or after `offset`
/// that is not in a data extent, or `size` (the end of the file is a
/// hole).
///
/// Errors: `ENXIO` (`offset` at or past `size`), `EIO`.
pub fn seek_hole<R: BtreeRead + ?Sized>(r: &R, sv: &Subvol, inum: u64, offset: u64, size: u64) -> Result<u64, Errno> {
    if offset >= size {
        return Err(Errno::ENXIO);
    }
    let last = Bpos::new(inum, u64::MAX, u32::MAX);
    let mut at = offset / SECTOR;
    let mut from = Bpos::new(inum, at + 1, 0);
    while let Some(k) = r.peek_upto(BtreeId::Extents, from, last, false)? {
        if k.k.p.snapshot == sv.snapshot && is_data(k.k.key_type) {
            if k.k.start_offset() > at {
                break;
            }
            at = at.max(k.k.p.offset);
        }
        match k.k.p.successor() {
            Some(n) => from = n,
            None => break,
        }
    }
    Ok((at * SECTOR).max(offset).min(size))
}

/// `FIEMAP_EXTENT_LAST`: the last extent of the file.
pub const FIEMAP_EXTENT_LAST: u32 = 0x0000_0001;
/// `FIEMAP_EXTENT_DELALLOC`: space reserved, location unknown.
pub const FIEMAP_EXTENT_DELALLOC: u32 = 0x0000_0004;
/// `FIEMAP_EXTENT_ENCODED`: compressed (the physical range holds the
/// encoded form).
pub const FIEMAP_EXTENT_ENCODED: u32 = 0x0000_0008;
/// `FIEMAP_EXTENT_NOT_ALIGNED`: not block aligned.
pub const FIEMAP_EXTENT_NOT_ALIGNED: u32 = 0x0000_0100;
/// `FIEMAP_EXTENT_DATA_INLINE`: the data is in the metadata.
pub const FIEMAP_EXTENT_DATA_INLINE: u32 = 0x0000_0200;
/// `FIEMAP_EXTENT_UNWRITTEN`: allocated, reads as zeros.
pub const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x0000_0800;
/// `FIEMAP_EXTENT_SHARED`: shared with another file (reflink).
pub const FIEMAP_EXTENT_SHARED: u32 = 0x0000_2000;

/// One `struct fiemap_extent` (bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FiemapExtent {
    /// Offset in the file.
    pub logical: u64,
    /// Offset on the device (0 for inline data and reservations).
    pub physical: u64,
    /// Length.
    pub length: u64,
    /// `FIEMAP_EXTENT_*`.
    pub flags: u32,
}

/// `bch2_fiemap()` over the btree: the extents of file `inum` overlapping
/// bytes `[start, start + len)`, one entry per device pointer
/// (`bch2_fill_extent()`: compressed data `ENCODED` at the start of the
/// encoded extent, otherwise at the live data; inline data `DATA_INLINE`;
/// reservations `DELALLOC | UNWRITTEN`; reflinked data (`reflink_p`) is
/// reported as one `SHARED` extent without a location), passed to `emit`
/// in file order until it returns `false`.  The last entry of the file
/// (if reached) carries `FIEMAP_EXTENT_LAST`.
///
/// Errors: `EIO`, `ENOMEM`.
pub fn fiemap<R: BtreeRead + ?Sized>(
    r: &R,
    sv: &Subvol,
    inum: u64,
    start: u64,
    len: u64,
    emit: &mut dyn FnMut(FiemapExtent) -> bool,
) -> Result<(), Errno> {
    use crate::format::val::extent::{ptrs_start, ExtentEntries, ExtentEntry};
    let end_sector = start.saturating_add(len).div_ceil(SECTOR);
    let block_sectors = u64::from(r.facts().block_bytes.max(512)) / SECTOR;
    let last = Bpos::new(inum, u64::MAX, u32::MAX);
    let mut from = Bpos::new(inum, start / SECTOR + 1, 0);
    // Held back one so that the last can be flagged.
    let mut pending: Option<FiemapExtent> = None;
    let mut out = |e: FiemapExtent, pending: &mut Option<FiemapExtent>| -> bool {
        match pending.replace(e) {
            Some(p) => emit(p),
            None => true,
        }
    };
    let mut reached_end = true;
    while let Some(k) = r.peek_upto(BtreeId::Extents, from, last, false)? {
        let next = k.k.p.successor();
        if k.k.p.snapshot == sv.snapshot {
            if k.k.start_offset() >= end_sector {
                reached_end = false;
                break;
            }
            let logical = k.k.start_offset() * SECTOR;
            let length = u64::from(k.k.size) * SECTOR;
            let ty = k.k.key_type;
            let mut go = true;
            if ty == KeyType::Extent as u8 {
                let mut crc = None;
                let es = ptrs_start(ty).and_then(|s| k.v.get(s..)).unwrap_or(&[]);
                for e in ExtentEntries::new(es) {
                    match e {
                        Ok(ExtentEntry::Crc(c)) => crc = Some(c),
                        Ok(ExtentEntry::Ptr(p)) => {
                            let mut flags = 0;
                            let mut offset = p.offset;
                            if p.unwritten {
                                flags |= FIEMAP_EXTENT_UNWRITTEN;
                            }
                            match crc {
                                Some(c) if c.compression_type != 0 => flags |= FIEMAP_EXTENT_ENCODED,
                                Some(c) => offset += u64::from(c.offset),
                                None => {}
                            }
                            if offset % block_sectors != 0 || u64::from(k.k.size) % block_sectors != 0 {
                                flags |= FIEMAP_EXTENT_NOT_ALIGNED;
                            }
                            go = out(FiemapExtent { logical, physical: offset * SECTOR, length, flags }, &mut pending);
                        }
                        Ok(_) => {}
                        Err(_) => return Err(Errno::EIO),
                    }
                    if !go {
                        break;
                    }
                }
            } else if ty == KeyType::InlineData as u8 {
                go = out(FiemapExtent { logical, physical: 0, length, flags: FIEMAP_EXTENT_DATA_INLINE }, &mut pending);
            } else if ty == KeyType::Reservation as u8 {
                go = out(FiemapExtent { logical, physical: 0, length, flags: FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_UNWRITTEN }, &mut pending);
            } else if ty == KeyType::ReflinkP as u8 {
                go = out(FiemapExtent { logical, physical: 0, length, flags: FIEMAP_EXTENT_SHARED | FIEMAP_EXTENT_UNKNOWN }, &mut pending);
            }
            if !go {
                return Ok(());
            }
        }
        match next {
            Some(n) => from = n,
            None => break,
        }
    }
    if let Some(mut p) = pending {
        if reached_end {
            p.flags |= FIEMAP_EXTENT_LAST;
        }
        emit(p);
    }
    Ok(())
}

/// `FIEMAP_EXTENT_UNKNOWN`: the location is not known.
pub const FIEMAP_EXTENT_UNKNOWN: u32 = 0x0000_0002;
