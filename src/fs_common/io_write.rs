// SPDX-License-Identifier: GPL-2.0
//! File data, write side: data written as extents (or inline), extents
//! overwritten, holes punched, files truncated, with `bi_size` and
//! `bi_sectors` kept exact.
//!
//! Matches, in `fs/bcachefs`: `bch2_write()`, `bch2_write_data_inline()`,
//! `bch2_write_extent()`/`init_append_extent()` and `bch2_extent_update()`
//! with `bch2_sum_sector_overwrites()` and
//! `bch2_extent_update_i_size_sectors()` in `io_write.c`;
//! `bch2_trans_update_extent()` in `btree_update.c` (how an inserted
//! extent cuts the ones it overlaps); `bch2_cut_front()`/
//! `bch2_cut_back()` and `bch2_extent_crc_append()` in `extents.c`;
//! `bch2_fpunch_at()` in `io_misc.c`; `bch2_truncate()` with
//! `bch2_truncate_folio()` in `fs-io.c`.
//!
//! A write is a *bio*: `data` at a block-aligned byte offset, its last
//! block zero-filled, as the page cache hands it to `bch2_write()`.  When
//! the part of it inside `i_size` is at most half a block and 1 KiB, and
//! `inline_data` is on, it becomes one `inline_data` key covering the
//! bio's sectors.  Otherwise its sectors are allocated ([`DataAlloc`]) and
//! written, and each piece becomes an `extent` key: a pointer, preceded by
//! a checksum entry when the data checksum type is not `none` (pieces are
//! then at most `encoded_extent_max`).  With compression on, each piece of
//! at most `encoded_extent_max` is compressed first
//! ([`super::compress_write`]); its crc entry then says how many sectors
//! were written for how many of the file (or `incompressible`).  gzip and
//! zstd in the kernel are `EOPNOTSUPP` for now.
//!
//! `bi_sectors` counts the sectors of allocation keys (`extent`,
//! `reservation`, `inline_data`, ... : `bkey_extent_is_allocation()`),
//! `bi_size` grows to the end of what is written (never past the key's
//! end).

use super::inode_write::{current_time, inode_peek, inode_write, S_IFMT, S_IFREG, S_IFLNK};
use super::compress_write::{bio_compress, opt_to_type, supported, Compressed};
use super::read_data;
use super::trans::{clone_key, commit_do, data_csum_type, delete_key, new_key, trans_read, BtreeTransOps, DataAlloc};
use super::{attrs_from_unpacked, ExtentCache, Subvol};
use crate::checksum::{checksum, CsumType};
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{BkeyI, BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::val::extent::{encode_entries, CrcKind, ExtentCrc, ExtentEntries, ExtentEntry, ExtentPtr};
use crate::format::val::inode::{InodeField, InodeUnpacked};
use crate::platform::{DevWrite, Vec, SECTOR_SIZE};

const SECTOR: u64 = SECTOR_SIZE as u64;
/// `BCH_INODE_i_size_dirty`.
const INODE_I_SIZE_DIRTY: u32 = 1 << 5;
/// Largest file size, bytes (`MAX_LFS_FILESIZE` on 64-bit).
pub const MAX_FILE_BYTES: u64 = i64::MAX as u64;
/// Largest extent we make without a checksum, in sectors (a key's size is
/// 32 bits; stay well inside a bucket-sized allocation).
const PLAIN_EXTENT_MAX_SECTORS: u32 = 1 << 16;
/// `CRC32_SIZE_MAX`, `CRC64_SIZE_MAX`, `CRC128_SIZE_MAX` in sectors.
const CRC32_SIZE_MAX: u32 = 1 << 7;
const CRC64_SIZE_MAX: u32 = 1 << 9;
const CRC128_SIZE_MAX: u32 = 1 << 13;
/// `BCH_COMPRESSION_TYPE_incompressible`.
const INCOMPRESSIBLE: u8 = 5;

/// `bkey_extent_is_allocation()`: whether a key's sectors count in
/// `bi_sectors`.
pub fn is_allocation(ty: u8) -> bool {
    matches!(
        KeyType::from_u8(ty),
        Some(
            KeyType::Extent
                | KeyType::Reservation
                | KeyType::ReflinkP
                | KeyType::ReflinkV
                | KeyType::InlineData
                | KeyType::IndirectInlineData
                | KeyType::Error
        )
    )
}

/// `bch2_cut_front()`: drops the sectors of `k` before file sector
/// `at` (`start < at < end`).  Pointers move forward (or, behind a crc
/// entry, the crc's `offset`); inline data loses its first bytes.
/// Errors: `EUCLEAN` for an undecodable value; `ENOMEM`.
pub fn cut_front(k: &mut BkeyI, at: u64) -> Result<(), Errno> {
    let start = k.k.start_offset();
    if at <= start {
        return Ok(());
    }
    let sub = at - start;
    let sub32 = u32::try_from(sub).map_err(|_| Errno::EUCLEAN)?;
    k.k.size = k.k.size.checked_sub(sub32).ok_or(Errno::EUCLEAN)?;
    match KeyType::from_u8(k.k.key_type) {
        Some(KeyType::Extent) => {
            // Re-encoded entry by entry into a new value on the heap.
            let mut v = Vec::new();
            v.reserve(k.v.len())?;
            let mut crc_seen = false;
            for e in ExtentEntries::new(&k.v) {
                let mut e = e.map_err(|_| Errno::EUCLEAN)?;
                match &mut e {
                    ExtentEntry::Crc(c) => {
                        crc_seen = true;
                        c.offset = c.offset.checked_add(sub32).ok_or(Errno::EUCLEAN)?;
                    }
                    ExtentEntry::Ptr(p) if !crc_seen => p.offset += sub,
                    _ => {}
                }
                let mut one = [0u8; 24];
                let n = encode_entries(&[e], &mut one).ok_or(Errno::EUCLEAN)?;
                v.extend_from_slice(&one[..n])?;
            }
            k.k.u64s = u8::try_from(crate::format::bkey::BKEY_U64S + v.len() / 8).map_err(|_| Errno::EUCLEAN)?;
            k.v = v;
        }
        Some(KeyType::InlineData) => {
            let bytes = usize::try_from(sub.saturating_mul(SECTOR)).unwrap_or(usize::MAX).min(k.v.len());
            let mut v = Vec::new();
            v.extend_from_slice(k.v.get(bytes..).unwrap_or(&[]))?;
            k.v = v;
            k.k.u64s = (crate::format::bkey::BKEY_U64S + k.v.len() / 8) as u8;
        }
        _ => {}
    }
    Ok(())
}

/// `bch2_cut_back()`: drops the sectors of `k` from file sector `at`
/// (`start < at < end`); inline data keeps only the bytes of the sectors
/// left.
pub fn cut_back(k: &mut BkeyI, at: u64) -> Result<(), Errno> {
    let start = k.k.start_offset();
    if at >= k.k.p.offset || at <= start {
        return Ok(());
    }
    k.k.size = u32::try_from(at - start).map_err(|_| Errno::EUCLEAN)?;
    k.k.p.offset = at;
    if k.k.key_type == KeyType::InlineData as u8 {
        let keep = (u64::from(k.k.size) * SECTOR).min(k.v.len() as u64) as usize;
        k.v.truncate(keep / 8 * 8);
        k.k.u64s = (crate::format::bkey::BKEY_U64S + k.v.len() / 8) as u8;
    }
    Ok(())
}

/// `bch2_extent_update()` for file `inum` of snapshot `snapshot`: makes
/// sectors `[start, end)` hold `new` (an extent, inline data or
/// reservation key covering exactly that range) or, with `None`, nothing
/// (a hole: `bch2_fpunch_at()`).  The extents it overlaps are cut or
/// deleted (`bch2_trans_update_extent()`); `bi_sectors` moves by the
/// allocated sectors gained and lost; `bi_size` grows to `new_i_size`
/// (capped at `end`) unless `BCH_INODE_i_size_dirty`.  Returns the
/// `bi_sectors` change.
///
/// Errors: `EUCLEAN` (an undecodable key or inode), `ENOENT` (no inode);
/// restarts, `EIO`, `ENOMEM`.
pub fn extent_update<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    inum: u64,
    snapshot: u32,
    start: u64,
    end: u64,
    new: Option<&BkeyI>,
    new_i_size: Option<u64>,
) -> Result<i64, BchError> {
    if start >= end {
        return Ok(0);
    }
    let mut delta: i64 = 0;
    let last = Bpos::new(inum, u64::MAX, u32::MAX);
    let mut from = Bpos::new(inum, start + 1, 0);
    while let Some(old) = t.peek_upto(BtreeId::Extents, from, last, false)? {
        let next = old.k.p.successor();
        if old.k.p.snapshot == snapshot {
            let os = old.k.start_offset();
            let oe = old.k.p.offset;
            if os >= end {
                break;
            }
            let overlap = oe.min(end) - os.max(start);
            if is_allocation(old.k.key_type) {
                delta -= i64::try_from(overlap).map_err(|_| Errno::EUCLEAN)?;
            }
            if os < start {
                // Keep the front: the same key cut back to `start`, at
                // its new end position.
                let mut front = clone_key(&old)?;
                cut_back(&mut front, start)?;
                t.update(BtreeId::Extents, front)?;
            }
            if oe > end {
                // Keep the back: at the old key's position, so it
                // replaces it.
                let mut back = clone_key(&old)?;
                cut_front(&mut back, end)?;
                t.update(BtreeId::Extents, back)?;
            } else {
                t.update(BtreeId::Extents, delete_key(old.k.p, false))?;
            }
        }
        match next {
            Some(n) if n <= last => from = n,
            _ => break,
        }
    }
    if let Some(k) = new {
        if is_allocation(k.k.key_type) {
            delta += i64::from(k.k.size);
        }
        t.update(BtreeId::Extents, clone_key(k)?)?;
    }
    let mut u = inode_peek(t, snapshot, inum)?;
    let mut dirty = false;
    if let Some(sz) = new_i_size {
        let sz = sz.min(end.saturating_mul(SECTOR));
        if u.flags & INODE_I_SIZE_DIRTY == 0 && sz > u.size {
            u.size = sz;
            dirty = true;
        }
    }
    if delta != 0 {
        u.sectors = u.sectors.checked_add_signed(delta).ok_or(Errno::EUCLEAN)?;
        dirty = true;
    }
    if dirty {
        inode_write(t, &u)?;
    }
    Ok(delta)
}

/// The smallest crc entry form that holds a checksum of `csum_bytes` over
/// `sectors` (`bch2_extent_crc_append()`).
fn crc_kind(csum_bytes: usize, sectors: u32) -> Option<CrcKind> {
    if csum_bytes <= 4 && sectors <= CRC32_SIZE_MAX {
        Some(CrcKind::Crc32)
    } else if csum_bytes <= 10 && sectors <= CRC64_SIZE_MAX {
        Some(CrcKind::Crc64)
    } else if csum_bytes <= 16 && sectors <= CRC128_SIZE_MAX {
        Some(CrcKind::Crc128)
    } else {
        None
    }
}

/// The `extent` key for `sectors` (uncompressed) of data ending at file
/// sector `end`, its `crc` entry (if any) describing what was written at
/// `offset` on `dev` (`init_append_extent()`).
#[allow(clippy::too_many_arguments)]
fn extent_key(inum: u64, snapshot: u32, end: u64, sectors: u32, dev: u8, offset: u64, gen: u8, crc: Option<ExtentCrc>) -> Result<BkeyI, Errno> {
    let ptr = ExtentEntry::Ptr(ExtentPtr { cached: false, unwritten: false, offset, dev, gen });
    let mut es = [ptr; 2];
    let n = match crc {
        None => 1,
        Some(c) => {
            es[0] = ExtentEntry::Crc(c);
            es[1] = ptr;
            2
        }
    };
    let mut buf = [0u8; 32];
    let len = encode_entries(&es[..n], &mut buf).ok_or(Errno::EINVAL)?;
    let mut k = new_key(KeyType::Extent, Bpos::new(inum, end, snapshot), &buf[..len])?;
    k.k.size = sectors;
    Ok(k)
}

/// The crc entry of data written as `written` (`compressed_size`
/// sectors) holding `sectors` of file data, compression type `comp`;
/// `None` when there is nothing to say (no checksum, no compression), as
/// `init_append_extent()` decides.
fn make_crc(csum: CsumType, comp: u8, sectors: u32, written: &[u8]) -> Result<Option<ExtentCrc>, Errno> {
    if csum == CsumType::None && comp == 0 {
        return Ok(None);
    }
    let c = checksum(csum, written).map_err(|_| Errno::EOPNOTSUPP)?;
    let kind = crc_kind(csum.bytes(), sectors).ok_or(Errno::EINVAL)?;
    let compressed = u32::try_from(written.len() / SECTOR_SIZE).map_err(|_| Errno::EINVAL)?;
    Ok(Some(ExtentCrc {
        kind,
        compressed_size: compressed,
        uncompressed_size: sectors,
        offset: 0,
        nonce: 0,
        csum_type: csum as u8,
        compression_type: comp,
        csum: c,
    }))
}

/// The inode's I/O options (`bch2_inode_opts_get()`): its own
/// `data_checksum` and `compression` (stored as option + 1) over the
/// filesystem's.  Errors: `EOPNOTSUPP` when background compression or a
/// background target applies (the extents would need a `rebalance`
/// entry, `bch2_bkey_set_needs_rebalance()`) and for `nocow` inodes;
/// `EINVAL` for a checksum
/// option that does not exist.
fn io_opts<T: BtreeTransOps + ?Sized>(t: &T, u: &InodeUnpacked) -> Result<(CsumType, u8), Errno> {
    let o = t.opts();
    let bg_comp = match u.get(InodeField::BackgroundCompression) {
        0 => u64::from(o.background_compression),
        v => v - 1,
    };
    let bg_target = match u.get(InodeField::BackgroundTarget) {
        0 => u64::from(o.background_target),
        v => v - 1,
    };
    // `nocow` files take C's in-place write path (`bch2_nocow_write()`):
    // not done yet.
    if bg_comp != 0 || bg_target != 0 || u.get(InodeField::Nocow) != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let csum_opt = match u.get(InodeField::DataChecksum) {
        0 => o.data_checksum,
        v => (v - 1) as u8,
    };
    let comp = match u.get(InodeField::Compression) {
        0 => o.compression,
        v => (v - 1) as u8,
    };
    Ok((data_csum_type(csum_opt).ok_or(Errno::EINVAL)?, comp))
}

/// Writes `data` to file `inum` at byte `offset` (`bch2_write()` of one
/// bio): `offset` is a multiple of the block size; the tail of the last
/// block is written as zeros; `i_size` grows to `offset + data.len()`.
/// Data goes inline or into checksummed extents as the module doc says.
/// The extents' data writes are in flight together (up to
/// [`WRITE_IN_FLIGHT_BYTES`] at a time); each extent is then its own
/// transaction, in file order, once its data is on the device.
///
/// Errors: `EINVAL` (`offset` not block aligned; not a regular file or
/// symlink), `EISDIR`, `EFBIG` (past [`MAX_FILE_BYTES`]), `EOPNOTSUPP`
/// (gzip or zstd in the kernel; `nocow`; background options), `ENOSPC`, `ENOENT`, `EIO`, `ENOMEM`.
/// On an error the extents before the first piece that failed are
/// committed (the file holds a prefix of the write).
pub fn write_data<T: BtreeTransOps + ?Sized, A: DataAlloc + ?Sized>(
    t: &mut T,
    a: &mut A,
    sv: &Subvol,
    inum: u64,
    offset: u64,
    data: &[u8],
) -> Result<(), Errno> {
    write_data_segs(t, a, sv, inum, offset, &[data])
}

/// Bytes of data [`write_data_segs`] has in flight at most before it
/// commits their extents: 4 MiB, a writeback batch and more.
pub const WRITE_IN_FLIGHT_BYTES: usize = 4 << 20;

/// [`write_data`] of the concatenation of `segs` (the folios of a
/// writeback run, each copied once into the buffer of the extent it goes
/// into, as C bounces checksummed writes).
///
/// Errors: as [`write_data`].
pub fn write_data_segs<T: BtreeTransOps + ?Sized, A: DataAlloc + ?Sized>(
    t: &mut T,
    a: &mut A,
    sv: &Subvol,
    inum: u64,
    offset: u64,
    segs: &[&[u8]],
) -> Result<(), Errno> {
    let block = u64::from(t.facts().block_bytes.max(512));
    if offset % block != 0 {
        return Err(Errno::EINVAL);
    }
    let data_bytes: usize = segs.iter().map(|s| s.len()).sum();
    if data_bytes == 0 {
        return Ok(());
    }
    let end_bytes = offset.checked_add(data_bytes as u64).filter(|&e| e <= MAX_FILE_BYTES).ok_or(Errno::EFBIG)?;
    let u = commit_do(t, |t| inode_peek(t, sv.snapshot, inum))?;
    match u.mode & S_IFMT {
        S_IFREG | S_IFLNK => {}
        m if m == super::inode_write::S_IFDIR => return Err(Errno::EISDIR),
        _ => return Err(Errno::EINVAL),
    }
    let (csum, comp) = io_opts(t, &u)?;
    let bio_bytes = end_bytes.div_ceil(block) * block - offset;
    let first_sector = offset / SECTOR;
    let bio_sectors = bio_bytes / SECTOR;
    let i_size = u.size.max(end_bytes);
    let data_len = bio_bytes.min(i_size - offset);
    let opts = *t.opts();
    if opts.inline_data && data_len <= (block / 2).min(1024) {
        let mut v = Vec::new();
        let n = data_len as usize;
        v.resize(n, 0)?;
        copy_from_segs(segs, 0, &mut v);
        let end = first_sector + bio_sectors;
        let mut k = new_key(KeyType::InlineData, Bpos::new(inum, end, sv.snapshot), &v)?;
        k.k.size = u32::try_from(bio_sectors).map_err(|_| Errno::EFBIG)?;
        commit_do(t, |t| extent_update(t, inum, sv.snapshot, first_sector, end, Some(&k), Some(end_bytes)))?;
        return Ok(());
    }
    let comp_type = opt_to_type(comp)?;
    if !supported(comp_type) {
        return Err(Errno::EOPNOTSUPP);
    }
    let level = comp >> 4;
    let max_piece = if csum == CsumType::None && comp_type == 0 {
        PLAIN_EXTENT_MAX_SECTORS
    } else {
        opts.encoded_extent_max_sectors.clamp(1, CRC128_SIZE_MAX)
    };
    let mut pieces: Vec<Piece> = Vec::new();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut done: u64 = 0;
    while done < bio_sectors {
        // Pieces prepared (data in their buffers, space allocated) until
        // enough is in flight or the bio is all prepared.
        let mut in_flight = 0usize;
        let mut prep_err: Option<Errno> = None;
        let mut next = done;
        while next < bio_sectors && in_flight < WRITE_IN_FLIGHT_BYTES {
            let want = u32::try_from((bio_sectors - next).min(u64::from(max_piece))).map_err(|_| Errno::EFBIG)?;
            buf.clear();
            if let Err(e) = buf.resize(want as usize * SECTOR_SIZE, 0) {
                prep_err = Some(e.into());
                break;
            }
            copy_from_segs(segs, (next * SECTOR) as usize, &mut buf);
            let start = first_sector + next;
            match prepare_piece(a, inum, sv.snapshot, start, csum, comp_type, level, block as usize, &mut buf, &mut out) {
                Ok(p) => {
                    next += u64::from(p.sectors);
                    in_flight += p.data.len();
                    if let Err(e) = pieces.push(p) {
                        prep_err = Some(e.into());
                        break;
                    }
                }
                Err(e) => {
                    prep_err = Some(e);
                    break;
                }
            }
        }
        // Their data to the device, all together.
        let mut writes: Vec<DevWrite<'_>> = Vec::new();
        writes.reserve(pieces.len())?;
        for p in pieces.iter() {
            writes.push(DevWrite { dev: p.dev, sector: p.dev_sector, buf: &p.data, result: Ok(()) })?;
        }
        a.write_many(&mut writes);
        let write_err = writes.iter().find_map(|w| w.result.err());
        let ok_prefix = writes.iter().take_while(|w| w.result.is_ok()).count();
        drop(writes);
        // Then the extents of those written, in file order.
        for p in pieces.iter().take(ok_prefix) {
            let end = p.start + u64::from(p.sectors);
            commit_do(t, |t| extent_update(t, inum, sv.snapshot, p.start, end, Some(&p.key), Some(end_bytes)))?;
            done += u64::from(p.sectors);
        }
        pieces.clear();
        if let Some(e) = write_err.or(prep_err) {
            return Err(e);
        }
    }
    Ok(())
}

/// One extent of a [`write_data_segs`] call, prepared: its data as
/// written (checksummed, maybe compressed), where it goes and its key.
struct Piece {
    /// File sector it starts at, and how many of the file it covers.
    start: u64,
    sectors: u32,
    dev: u8,
    dev_sector: u64,
    data: Vec<u8>,
    key: BkeyI,
}

/// Makes the extent of the bio's sectors from `start` whose data is in
/// `buf` (`encoded_extent_max` or less, zero padded): compresses it into
/// `out` when asked (`bch2_bio_compress()`: the output no bigger than the
/// input nor than the write point has left), allocates its space, and
/// builds its key with its crc entry.  The data to write moves into the
/// piece (`buf` or `out` is left empty).  Fewer sectors than `buf` holds
/// when the write point had less contiguous space.
///
/// Errors: `ENOSPC`, `ENOMEM`, `EFBIG`, `EINVAL`, those of compression.
#[allow(clippy::too_many_arguments)]
fn prepare_piece<A: DataAlloc + ?Sized>(
    a: &mut A,
    inum: u64,
    snapshot: u32,
    start: u64,
    csum: CsumType,
    comp_type: u8,
    level: u8,
    block: usize,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<Piece, Errno> {
    let want = u32::try_from(buf.len() / SECTOR_SIZE).map_err(|_| Errno::EFBIG)?;
    let mut piece_comp = 0;
    if comp_type != 0 {
        let free = (a.sectors_free() as usize).saturating_mul(SECTOR_SIZE);
        out.clear();
        out.resize(buf.len().min(free), 0)?;
        match bio_compress(comp_type, level, block, buf, out)? {
            Compressed::Yes { src_len, dst_len } => {
                let need = u32::try_from(dst_len / SECTOR_SIZE).map_err(|_| Errno::EFBIG)?;
                let sp = a.alloc(need)?;
                if sp.sectors != need {
                    return Err(Errno::ENOSPC);
                }
                out.truncate(dst_len);
                let sectors = u32::try_from(src_len / SECTOR_SIZE).map_err(|_| Errno::EFBIG)?;
                let crc = make_crc(csum, comp_type, sectors, out)?;
                let end = start + u64::from(sectors);
                let key = extent_key(inum, snapshot, end, sectors, sp.dev, sp.offset, sp.gen, crc)?;
                let data = core::mem::take(out);
                return Ok(Piece { start, sectors, dev: sp.dev, dev_sector: sp.offset, data, key });
            }
            Compressed::Incompressible => piece_comp = INCOMPRESSIBLE,
        }
    }
    let sp = a.alloc(want)?;
    let got = sp.sectors.clamp(1, want);
    buf.truncate(got as usize * SECTOR_SIZE);
    let crc = make_crc(csum, piece_comp, got, buf)?;
    let end = start + u64::from(got);
    let key = extent_key(inum, snapshot, end, got, sp.dev, sp.offset, sp.gen, crc)?;
    let data = core::mem::take(buf);
    Ok(Piece { start, sectors: got, dev: sp.dev, dev_sector: sp.offset, data, key })
}

/// Copies the bytes of the concatenation of `segs` from `off` into `dst`
/// (as many as there are; the rest of `dst` is left as it is).
fn copy_from_segs(segs: &[&[u8]], off: usize, dst: &mut [u8]) {
    let mut seg_start = 0usize;
    let mut d = 0usize;
    for s in segs {
        let seg_end = seg_start + s.len();
        if seg_end > off + d && d < dst.len() {
            let from = off + d - seg_start;
            let n = (s.len() - from).min(dst.len() - d);
            if let (Some(dp), Some(sp)) = (dst.get_mut(d..d + n), s.get(from..from + n)) {
                dp.copy_from_slice(sp);
            }
            d += n;
        }
        seg_start = seg_end;
    }
}

/// Punches a hole over file sectors `[start, end)` (`bch2_fpunch()`): the
/// extents there are cut or deleted, `bi_sectors` drops, `i_size` stays.
/// One transaction per overlapping key, as C's loop commits.
///
/// Errors: `EUCLEAN`, `ENOENT`, `EIO`, `ENOMEM`.
pub fn fpunch<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64, start: u64, end: u64) -> Result<(), Errno> {
    commit_do(t, |t| extent_update(t, inum, sv.snapshot, start, end, None, None)).map(|_| ())
}

/// The block of file `u` at byte `bstart` (block aligned), as it reads
/// now.
///
/// Errors: those of [`read_data`].
pub(super) fn read_block<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, u: &InodeUnpacked, bstart: u64) -> Result<Vec<u8>, Errno> {
    let block = t.facts().block_bytes.max(512) as usize;
    let mut blk = Vec::new();
    blk.resize(block, 0)?;
    commit_do(t, |t| {
        let facts = *t.facts();
        let attrs = attrs_from_unpacked(&facts, u);
        trans_read(t, |r| read_data(r, sv, &attrs, bstart, &mut blk, &mut ExtentCache::default()))
    })?;
    Ok(blk)
}

/// Sets the size of file `inum` to `new_size` bytes (`bch2_truncate()`
/// and `bch2_truncate_folio()`): shrinking zeroes the rest of the block
/// `new_size` falls in (rewriting it when it holds data) and punches
/// everything from the next block on (also when the size stays); growing
/// leaves a hole and keeps what lies past the new end.  A changed size
/// sets mtime and ctime to now, as `truncate(2)` does.
///
/// Errors: `EFBIG`, `ENOENT`, `EIO`, `ENOMEM`, those of [`write_data`].
pub fn truncate<T: BtreeTransOps + ?Sized, A: DataAlloc + ?Sized>(
    t: &mut T,
    a: &mut A,
    sv: &Subvol,
    inum: u64,
    new_size: u64,
) -> Result<(), Errno> {
    if new_size > MAX_FILE_BYTES {
        return Err(Errno::EFBIG);
    }
    let block = u64::from(t.facts().block_bytes.max(512));
    let u = commit_do(t, |t| inode_peek(t, sv.snapshot, inum))?;
    if new_size < u.size && new_size % block != 0 {
        // The partial block: its bytes past the new size must read as
        // zeros if the file grows again.
        let bstart = new_size / block * block;
        let blk = read_block(t, sv, &u, bstart)?;
        let keep = (new_size - bstart) as usize;
        if blk.get(keep..).is_some_and(|tail| tail.iter().any(|&b| b != 0)) {
            write_data(t, a, sv, inum, bstart, blk.get(..keep).unwrap_or(&[]))?;
        }
    }
    commit_do(t, |t| {
        let now = current_time(t);
        let mut u = inode_peek(t, sv.snapshot, inum)?;
        if u.size != new_size {
            u.size = new_size;
            u.set(InodeField::Mtime, now);
            u.set(InodeField::Ctime, now);
        }
        inode_write(t, &u)
    })?;
    if new_size > u.size {
        // Growing punches nothing (`bch2_extend()`): space a `KEEP_SIZE`
        // fallocate reserved past the new end stays.
        return Ok(());
    }
    let from = new_size.div_ceil(block) * block / SECTOR;
    fpunch(t, sv, inum, from, u64::MAX)
}
