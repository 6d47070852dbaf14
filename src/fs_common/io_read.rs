// SPDX-License-Identifier: GPL-2.0
//! File data, read side: walk the extents btree over a byte range and
//! fill a buffer from the device, verifying checksums and decompressing;
//! symlink targets are read the same way.
//!
//! Matches, in `fs/bcachefs`: `__bch2_read()`, `__bch2_read_extent()`,
//! `__bch2_read_indirect_extent()` and the decode half of
//! `__bch2_read_endio()` in `io_read.c`; `bch2_bkey_pick_read_device()`
//! in `extents.c`; `bch2_checksum()` in `checksum.c`;
//! `bch2_bio_uncompress()` in `compress.c`; and, for symlinks,
//! `page_get_link()` as `bch2_symlink_inode_operations` uses it.
//!
//! An extent's key sits at its END: `inum:end_sector:snapshot`, covering
//! `[end - size, end)` in 512-byte file sectors.  Its value is a list of
//! entries ([`crate::format::val::extent`]): pointers to device sectors,
//! each preceded by the checksum/compression entry describing the data it
//! points to.  With no crc entry the pointer addresses the live data
//! itself; with one it addresses the start of the data *as written*
//! (`compressed_size` sectors, checksummed as a whole), of which the live
//! part begins `crc.offset` sectors into the uncompressed data — cutting
//! the front of such an extent moves `crc.offset`, not the pointer.

use core::fmt;

use super::{BtreeRead, DevReadAhead, ExtentCache, InodeAttrs, OwnedKey, Subvol, RA_WINDOW_BYTES};
use crate::checksum::{self, Csum, CsumType};
use crate::compress::{self, CompressionType};
use crate::errcode::Errno;
use crate::format::bkey::{BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::val::extent::{CrcKind, ExtentCrc, ExtentEntries, ExtentEntry, ExtentPtr};
use crate::platform::{DevRead, Vec, SECTOR_SIZE};

/// Longest symlink target `page_get_link()` returns: one 4 KiB page less
/// the terminating NUL (`nd_terminate_link(.., PAGE_SIZE - 1)`).
pub const SYMLINK_MAX: usize = 4096 - 1;

const SECTOR: u64 = SECTOR_SIZE as u64;

/// Logs one read error: device, inode, byte offset in the file and what
/// went wrong.  The single place read errors are reported, so that it can
/// be rate limited in one spot (C: `bch_err_inum_offset_ratelimited()`).
fn read_err(dev: &str, inum: u64, offset: u64, what: fmt::Arguments<'_>) {
    crate::platform::log::err_ratelimited!("{dev}: inode {inum} offset {offset}: {what}");
}

/// What the read of one piece concerns, for messages.
struct Ctx<'a> {
    dev: &'a str,
    inum: u64,
    /// File sector being read (for the byte offset in messages).
    sector: u64,
}

impl Ctx<'_> {
    fn err(&self, e: Errno, what: fmt::Arguments<'_>) -> Errno {
        read_err(self.dev, self.inum, self.sector.saturating_mul(SECTOR), what);
        e
    }
}

/// Fills `buf` with the file's bytes from `offset` (bytes; `buf.len()` and
/// `offset` multiples of 512): extents read from the device, checksums
/// verified, compressed extents decompressed, inline data copied, holes,
/// reservations, unwritten extents and anything past `size` as zeros
/// (`__bch2_read`).  Reflinked data (`reflink_p`) is followed into the
/// reflink btree.  Only extents of `sv.snapshot` are seen.
///
/// `cache` keeps the last checksummed or compressed extent decoded, so
/// consecutive reads inside one such extent read and decode it once.
///
/// Errors: `EINVAL` when `offset` or `buf.len()` is not a multiple of 512;
/// `EIO` on a read error, checksum mismatch, undecodable extent, `error`
/// key or missing indirect extent; `EOPNOTSUPP` for encrypted extents;
/// each after one message naming the device, inode and offset; `ENOMEM`.
pub fn read_data<T: BtreeRead + ?Sized>(
    fs: &T,
    sv: &Subvol,
    inode: &InodeAttrs,
    offset: u64,
    buf: &mut [u8],
    cache: &mut ExtentCache,
) -> Result<(), Errno> {
    read_data_segs(fs, sv, inode, offset, &mut [buf], cache)
}

/// [`read_data`] into the concatenation of `segs` (each a multiple of 512
/// bytes long: the folios of a readahead request).
///
/// The read has three steps: the extents over the range are looked up and
/// what needs no device (holes, inline data, the cached extent) is filled
/// in; then every device read the range needs is issued in one batch
/// ([`BtreeRead::read_data_many`]: plain extents straight into `segs`,
/// checksummed or compressed ones whole into a buffer of their own); then,
/// once all completed, the encoded extents are verified, decompressed and
/// their wanted part copied into place.  The last one decoded stays in
/// `cache`.
///
/// Errors: as [`read_data`].  On an error the contents of `segs` are
/// unspecified.
pub fn read_data_segs<T: BtreeRead + ?Sized>(
    fs: &T,
    sv: &Subvol,
    inode: &InodeAttrs,
    offset: u64,
    segs: &mut [&mut [u8]],
    cache: &mut ExtentCache,
) -> Result<(), Errno> {
    if offset % SECTOR != 0 || segs.iter().any(|s| s.len() % SECTOR_SIZE != 0) {
        return Err(Errno::EINVAL);
    }
    let mut out = Out { segs };
    let total = out.len();
    let size = inode.size;
    let eof_sector = size.div_ceil(SECTOR);
    let mut plan = Plan { reads: Vec::new() };
    let mut done = 0usize;
    while done < total {
        let Some(byte) = offset.checked_add(done as u64) else { break };
        let sector = byte / SECTOR;
        if sector >= eof_sector {
            break;
        }
        let want = ((total - done) / SECTOR_SIZE) as u64;
        let span = want.min(eof_sector - sector) as usize * SECTOR_SIZE;
        let ctx = Ctx { dev: fs.dev_name(), inum: inode.inum, sector };
        let n = read_piece(fs, sv.snapshot, &ctx, &mut out, done, span, cache, &mut plan)?;
        done += n.max(SECTOR_SIZE);
    }
    run_plan(fs, inode.inum, &mut out, &mut plan, cache)?;
    // Past EOF, including the tail of the last sector: zeros.
    let valid = size.saturating_sub(offset).min(total as u64) as usize;
    out.fill(valid, total - valid);
    Ok(())
}

/// The output of a read: the concatenation of some buffers.
struct Out<'s, 'b> {
    segs: &'s mut [&'b mut [u8]],
}

impl Out<'_, '_> {
    fn len(&self) -> usize {
        self.segs.iter().map(|s| s.len()).sum()
    }

    /// Calls `f` with each part of `[off, off + len)` in turn, with the
    /// offset of the part from `off`.
    fn for_range(&mut self, off: usize, len: usize, mut f: impl FnMut(usize, &mut [u8])) {
        let end = off.saturating_add(len);
        let mut start = 0usize;
        for s in self.segs.iter_mut() {
            let s_end = start + s.len();
            if s_end > off && start < end {
                let from = off.max(start);
                let to = end.min(s_end);
                if let Some(part) = s.get_mut(from - start..to - start) {
                    f(from - off, part);
                }
            }
            if s_end >= end {
                break;
            }
            start = s_end;
        }
    }

    /// Zeros `[off, off + len)`.
    fn fill(&mut self, off: usize, len: usize) {
        self.for_range(off, len, |_, p| p.fill(0));
    }

    /// Copies `src` to `off`.
    fn write(&mut self, off: usize, src: &[u8]) {
        self.for_range(off, src.len(), |o, p| {
            if let Some(s) = src.get(o..o + p.len()) {
                p.copy_from_slice(s);
            }
        });
    }
}

/// Hands out disjoint, increasing ranges of an [`Out`] as slices, split at
/// the buffers' boundaries.
struct Carver<'s, 'b> {
    rest: core::slice::IterMut<'s, &'b mut [u8]>,
    cur: &'s mut [u8],
    /// Offset in the output of `cur[0]`.
    cur_start: usize,
}

impl<'s, 'b> Carver<'s, 'b> {
    fn new(segs: &'s mut [&'b mut [u8]]) -> Self {
        Carver { rest: segs.iter_mut(), cur: &mut [], cur_start: 0 }
    }

    /// The next part of `[off, off + len)`: at most `len` bytes from `off`
    /// (not below the end of the previous part), or `None` past the end.
    fn next(&mut self, off: usize, len: usize) -> Option<&'s mut [u8]> {
        while self.cur_start + self.cur.len() <= off {
            let skipped = self.cur.len();
            self.cur = &mut **self.rest.next()?;
            self.cur_start += skipped;
        }
        let skip = off.checked_sub(self.cur_start)?;
        let cur = core::mem::take(&mut self.cur);
        let (_, tail) = cur.split_at_mut(skip);
        let n = len.min(tail.len());
        let (part, rest) = tail.split_at_mut(n);
        self.cur = rest;
        self.cur_start = off + n;
        Some(part)
    }
}

/// A device read found by the lookup half of [`read_data_segs`].
struct Pending {
    /// File sector the read is for (for messages).
    file_sector: u64,
    /// Device and first sector.
    dev: u8,
    dev_sector: u64,
    /// Where the wanted bytes go in the output, and how many.
    off: usize,
    len: usize,
    /// `None`: plain data, read straight into the output.
    enc: Option<Encoded>,
}

/// An extent whose whole written data is read, verified and decoded.
struct Encoded {
    k: crate::format::bkey::Bkey,
    crc: ExtentCrc,
    csum_type: CsumType,
    comp: CompressionType,
    /// The cache tag of the decoded extent.
    tag: (u64, Bpos, u64),
    /// Sectors into the live data where the wanted part starts.
    offset_into: u64,
    /// The encoded data (`crc.compressed_size` sectors).  Empty when read
    /// in place.
    raw: Vec<u8>,
    /// Uncompressed, all of it live and all of it wanted, with a
    /// checksum that can be computed piece by piece: read straight into
    /// the output like plain data, and verified there.
    in_place: bool,
}

/// The device reads of one [`read_data_segs`] call.
struct Plan {
    reads: Vec<Pending>,
}

/// Issues the reads of `plan` as one batch, then decodes the encoded
/// extents into place.
fn run_plan<T: BtreeRead + ?Sized>(
    fs: &T,
    inum: u64,
    out: &mut Out<'_, '_>,
    plan: &mut Plan,
    cache: &mut ExtentCache,
) -> Result<(), Errno> {
    if plan.reads.is_empty() {
        return Ok(());
    }
    // The lookup is done with the cache: its buffer is reused for the
    // first extent read through a buffer (a random reader decodes one
    // extent per call and so allocates nothing).
    let mut spare = true;
    for p in plan.reads.iter_mut() {
        if let Some(e) = p.enc.as_mut().filter(|e| !e.in_place) {
            if spare {
                spare = false;
                cache.tag = None;
                e.raw = core::mem::take(&mut cache.data);
                e.raw.clear();
            }
            e.raw.resize(e.crc.compressed_size as usize * SECTOR_SIZE, 0)?;
        }
    }
    issue_reads(fs, inum, out, plan, &mut cache.ra)?;
    for p in plan.reads.iter_mut() {
        let Some(e) = p.enc.as_mut() else { continue };
        let ctx = Ctx { dev: fs.dev_name(), inum, sector: p.file_sector };
        if e.in_place {
            if let Some(mut inc) = checksum::Incremental::new(e.csum_type) {
                out.for_range(p.off, p.len, |_, part| inc.update(part));
                let got = inc.finish();
                if got != e.crc.csum {
                    return Err(csum_mismatch(fs, &ctx, p.dev, p.dev_sector, &e.crc, e.csum_type, got));
                }
                continue;
            }
        }
        let raw = core::mem::take(&mut e.raw);
        cache.tag = None;
        cache.data = decode_extent(fs, &ctx, &e.k, p.dev, p.dev_sector, &e.crc, e.csum_type, e.comp, raw)?;
        cache.start_sector = e.k.start_offset();
        cache.tag = Some(e.tag);
        let from = usize::try_from(e.offset_into).unwrap_or(usize::MAX).saturating_mul(SECTOR_SIZE);
        match cache.data.get(from..).and_then(|s| s.get(..p.len)) {
            Some(s) => out.write(p.off, s),
            None => return Err(ctx.err(Errno::EIO, format_args!("extent {}: decoded data too short", e.k.p))),
        }
    }
    Ok(())
}

/// Reads what `plan` asks for from the device: plain data into `out`,
/// encoded data into each extent's `raw`.  What the reader's read-ahead
/// window holds is copied from it; a single read left goes through the
/// window ([`dev_read`]), several are issued together
/// ([`BtreeRead::read_data_many`]).
///
/// Errors: the first failed read's, after a message naming it.
fn issue_reads<T: BtreeRead + ?Sized>(
    fs: &T,
    inum: u64,
    out: &mut Out<'_, '_>,
    plan: &mut Plan,
    ra: &mut DevReadAhead,
) -> Result<(), Errno> {
    let mut carver = Carver::new(&mut *out.segs);
    let mut reads: Vec<DevRead<'_>> = Vec::new();
    // Which entry of `plan.reads` each read is for.
    let mut owner: Vec<usize> = Vec::new();
    for (i, p) in plan.reads.iter_mut().enumerate() {
        let dev = p.dev;
        match p.enc.as_mut().filter(|e| !e.in_place) {
            Some(e) => push_read(ra, &mut reads, &mut owner, i, dev, p.dev_sector, &mut e.raw)?,
            None => {
                let (mut at, end, mut sector) = (p.off, p.off + p.len, p.dev_sector);
                while at < end {
                    let part = match carver.next(at, end - at) {
                        Some(part) if !part.is_empty() => part,
                        _ => return Err(Errno::EIO),
                    };
                    let n = part.len();
                    push_read(ra, &mut reads, &mut owner, i, dev, sector, part)?;
                    at += n;
                    sector += (n / SECTOR_SIZE) as u64;
                }
            }
        }
    }
    match &mut reads[..] {
        [] => {}
        [r] => r.result = dev_read(fs, ra, r.dev, r.sector, r.buf),
        all => {
            fs.read_data_many(all);
            if let Some(r) = all.last() {
                if ra.dev != r.dev {
                    ra.buf.clear();
                }
                ra.dev = r.dev;
                ra.next = r.sector.saturating_add((r.buf.len() / SECTOR_SIZE) as u64);
            }
        }
    }
    let failed = reads.iter().zip(owner.iter()).find_map(|(r, &i)| r.result.err().map(|e| (i, r.sector, e)));
    drop(reads);
    match failed {
        None => Ok(()),
        Some((i, sector, e)) => {
            let (file_sector, dev) = plan.reads.get(i).map_or((0, 0), |p| (p.file_sector, p.dev));
            let ctx = Ctx { dev: fs.dev_name(), inum, sector: file_sector };
            Err(ctx.err(e, format_args!("read error {e} from device {dev} sector {sector}")))
        }
    }
}

/// Adds the read of `buf` from `sector` of `dev` for plan entry `i`, or
/// fills `buf` from the read-ahead window if it holds that.
fn push_read<'a>(
    ra: &DevReadAhead,
    reads: &mut Vec<DevRead<'a>>,
    owner: &mut Vec<usize>,
    i: usize,
    dev: u8,
    sector: u64,
    buf: &'a mut [u8],
) -> Result<(), Errno> {
    if let Some(s) = window_slice(ra, dev, sector, buf.len()) {
        copy_same_len(buf, s);
        return Ok(());
    }
    reads.push(DevRead { dev, sector, buf, result: Ok(()) })?;
    owner.push(i)?;
    Ok(())
}

/// The extents-btree key of snapshot `snapshot` covering or following
/// file sector `sector` of `inum`: the first key whose end is past
/// `sector`.
fn extent_at<T: BtreeRead + ?Sized>(fs: &T, inum: u64, snapshot: u32, sector: u64) -> Result<Option<OwnedKey>, Errno> {
    let Some(first) = sector.checked_add(1) else { return Ok(None) };
    let end = Bpos::new(inum, u64::MAX, u32::MAX);
    let mut from = Bpos::new(inum, first, 0);
    loop {
        let Some(k) = fs.peek_upto(BtreeId::Extents, from, end, false)? else {
            return Ok(None);
        };
        if k.k.p.snapshot == snapshot {
            return Ok(Some(k));
        }
        match k.k.p.successor() {
            Some(n) if n <= end => from = n,
            _ => return Ok(None),
        }
    }
}

/// The end (file sector, exclusive) of the extent of file `inum` over
/// file sector `sector` when reading part of it means reading all of it:
/// its data is checksummed or compressed
/// (`extent_partial_reads_expensive()`).  `None` for a hole, plain data,
/// inline data, reservations and reflink pointers.  A reader of a few
/// blocks then reads to this end into the page cache, as C's
/// `readpage_bio_extend()` does, rather than read the whole extent again
/// for its next blocks.
///
/// Errors: those of the btree lookup (`EIO`, `ENOMEM`).
pub fn expensive_extent_end<T: BtreeRead + ?Sized>(fs: &T, sv: &Subvol, inum: u64, sector: u64) -> Result<Option<u64>, Errno> {
    let Some(k) = extent_at(fs, inum, sv.snapshot, sector)? else { return Ok(None) };
    if k.k.start_offset() > sector || k.k.key_type != KeyType::Extent as u8 {
        return Ok(None);
    }
    let expensive = ExtentEntries::new(&k.v)
        .any(|e| matches!(e, Ok(ExtentEntry::Crc(c)) if c.csum_type != 0 || c.compression_type != 0));
    Ok(expensive.then_some(k.k.p.offset))
}

/// Handles file sector `ctx.sector` onwards for a prefix of the `len`
/// bytes at `off` of `out`: up to the end of the extent (or hole) there,
/// filled at once or added to `plan`.  Returns the bytes handled, at
/// least 512 unless `len` is 0.
#[allow(clippy::too_many_arguments)]
fn read_piece<T: BtreeRead + ?Sized>(
    fs: &T,
    snapshot: u32,
    ctx: &Ctx<'_>,
    out: &mut Out<'_, '_>,
    off: usize,
    len: usize,
    cache: &mut ExtentCache,
    plan: &mut Plan,
) -> Result<usize, Errno> {
    let sector = ctx.sector;
    // The decoded extent of the previous read often covers this one too:
    // the volume is read-only, so it is still the file's data there and
    // the btree need not be searched again.
    if let Some(n) = cached_piece(cache, ctx.inum, sector, out, off, len) {
        return Ok(n);
    }
    let Some(k) = extent_at(fs, ctx.inum, snapshot, sector)? else {
        out.fill(off, len);
        return Ok(len);
    };
    let start = k.k.start_offset();
    if start > sector {
        let hole = ((start - sector).min(len as u64 / SECTOR) as usize) * SECTOR_SIZE;
        out.fill(off, hole);
        return Ok(hole);
    }
    let offset_into = sector - start;
    let avail = u64::from(k.k.size).saturating_sub(offset_into);
    let n = (avail.min(len as u64 / SECTOR) as usize) * SECTOR_SIZE;
    if n == 0 {
        // A key whose end is past `sector` but whose size says otherwise
        // (start saturated at 0): corrupt.
        return Err(ctx.err(Errno::EIO, format_args!("extent {} has size {} (corrupt)", k.k.p, k.k.size)));
    }
    match KeyType::from_u8(k.k.key_type) {
        Some(KeyType::Reservation) => {
            out.fill(off, n);
            Ok(n)
        }
        Some(KeyType::InlineData) => {
            copy_inline(&k.v, offset_into, out, off, n);
            Ok(n)
        }
        Some(KeyType::Extent) => {
            plan_extent(ctx, ctx.inum, &k, &k.v, offset_into, out, off, n, cache, plan)?;
            Ok(n)
        }
        Some(KeyType::ReflinkP) => read_indirect(fs, ctx, &k, offset_into, out, off, n, cache, plan),
        Some(KeyType::Error) => Err(ctx.err(Errno::EIO, format_args!("extent {} is an error key (data lost)", k.k.p))),
        _ => Err(ctx.err(
            Errno::EIO,
            format_args!("unexpected key type {} at {} in the extents btree", k.k.key_type, k.k.p),
        )),
    }
}

/// Fills a prefix of the `len` bytes at `off` of `out` from the cached
/// extent if it is `inum`'s and covers file sector `sector`; returns the
/// bytes filled.
fn cached_piece(cache: &ExtentCache, inum: u64, sector: u64, out: &mut Out<'_, '_>, off: usize, len: usize) -> Option<usize> {
    let (tag_inum, _, _) = cache.tag?;
    if tag_inum != inum || sector < cache.start_sector {
        return None;
    }
    let from = usize::try_from(sector - cache.start_sector).ok()?.checked_mul(SECTOR_SIZE)?;
    let avail = cache.data.get(from..)?;
    let n = avail.len().min(len) / SECTOR_SIZE * SECTOR_SIZE;
    if n == 0 {
        return None;
    }
    out.write(off, &avail[..n]);
    Some(n)
}

/// Copies inline data from `offset_into` sectors into the value to the
/// `len` bytes at `off` of `out`, zero filling what the value does not
/// hold.
fn copy_inline(data: &[u8], offset_into: u64, out: &mut Out<'_, '_>, off: usize, len: usize) {
    let skip = usize::try_from(offset_into.saturating_mul(SECTOR)).unwrap_or(usize::MAX);
    let src = data.get(skip..).unwrap_or(&[]);
    let m = src.len().min(len);
    out.write(off, &src[..m]);
    out.fill(off + m, len - m);
}

/// `reflink_p`: reads the part of the indirect extent the pointer's
/// `idx + offset_into` lands in (`__bch2_read_indirect_extent()`).
/// Returns the bytes handled (the smaller of the two extents' remainders).
#[allow(clippy::too_many_arguments)]
fn read_indirect<T: BtreeRead + ?Sized>(
    fs: &T,
    ctx: &Ctx<'_>,
    k: &OwnedKey,
    offset_into: u64,
    out: &mut Out<'_, '_>,
    off: usize,
    len: usize,
    cache: &mut ExtentCache,
    plan: &mut Plan,
) -> Result<usize, Errno> {
    let idx = k.v.get(..8).map_or(0, |s| {
        let mut b = [0u8; 8];
        b.copy_from_slice(s);
        u64::from_le_bytes(b)
    });
    let missing = |what: &str| {
        ctx.err(
            Errno::EIO,
            format_args!("reflink pointer {} len {} points to {what} indirect extent {}", k.k.p, k.k.size, idx.wrapping_add(offset_into)),
        )
    };
    let Some(roff) = idx.checked_add(offset_into) else { return Err(missing("an impossible")) };
    let Some(first) = roff.checked_add(1) else { return Err(missing("an impossible")) };
    let r = fs.peek_upto(BtreeId::Reflink, Bpos::new(0, first, 0), Bpos::new(0, u64::MAX, u32::MAX), false)?;
    let Some(r) = r else { return Err(missing("a nonexistent")) };
    let rstart = r.k.start_offset();
    let is_indirect = r.k.key_type == KeyType::ReflinkV as u8 || r.k.key_type == KeyType::IndirectInlineData as u8;
    if rstart > roff || !is_indirect {
        return Err(missing("a nonexistent"));
    }
    let roff_into = roff - rstart;
    let avail = u64::from(r.k.size).saturating_sub(roff_into);
    let n = (avail.min(len as u64 / SECTOR) as usize) * SECTOR_SIZE;
    if n == 0 {
        return Err(missing("a corrupt"));
    }
    // Both indirect types start with a refcount (u64).
    let body = r.v.get(8..).unwrap_or(&[]);
    if r.k.key_type == KeyType::IndirectInlineData as u8 {
        copy_inline(body, roff_into, out, off, n);
    } else {
        plan_extent(ctx, 0, &r, body, roff_into, out, off, n, cache, plan)?;
    }
    Ok(n)
}

/// The pointer to read and the crc entry describing its data
/// (`bch2_bkey_pick_read_device()` for one device): the first dirty
/// pointer, else the first cached one.  `Ok(None)`: unwritten, read as
/// zeros.
fn pick_ptr(ctx: &Ctx<'_>, k: &OwnedKey, entries: &[u8]) -> Result<Option<(ExtentPtr, Option<ExtentCrc>)>, Errno> {
    let mut crc: Option<ExtentCrc> = None;
    let mut dirty = None;
    let mut cached = None;
    for e in ExtentEntries::new(entries) {
        match e {
            Ok(ExtentEntry::Crc(c)) => crc = Some(c),
            Ok(ExtentEntry::Ptr(p)) => {
                if p.unwritten {
                    return Ok(None);
                }
                if !p.cached && dirty.is_none() {
                    dirty = Some((p, crc));
                } else if p.cached && cached.is_none() {
                    cached = Some((p, crc));
                }
            }
            Ok(ExtentEntry::StripePtr(_) | ExtentEntry::Rebalance(_)) => {}
            Err(err) => {
                return Err(ctx.err(Errno::EIO, format_args!("extent {}: bad entry: {err:?}", k.k.p)));
            }
        }
    }
    match dirty.or(cached) {
        Some(p) => Ok(Some(p)),
        None => Err(ctx.err(Errno::EIO, format_args!("extent {}: no device to read from (no pointers)", k.k.p))),
    }
}

/// The `len` bytes of extent `k` (value entries `entries`) from
/// `offset_into` sectors, for `off` of `out`: zeros if unwritten, from the
/// cache if it holds the extent decoded, else a device read added to
/// `plan` (of just those bytes for plain data, of the whole extent for
/// checksummed or compressed data).  `tag_inum` goes into the cache tag
/// (the inode, or 0 for an indirect extent of the reflink btree).
#[allow(clippy::too_many_arguments)]
fn plan_extent(
    ctx: &Ctx<'_>,
    tag_inum: u64,
    k: &OwnedKey,
    entries: &[u8],
    offset_into: u64,
    out: &mut Out<'_, '_>,
    off: usize,
    len: usize,
    cache: &mut ExtentCache,
    plan: &mut Plan,
) -> Result<(), Errno> {
    let Some((ptr, crc)) = pick_ptr(ctx, k, entries)? else {
        out.fill(off, len);
        return Ok(());
    };
    let size = k.k.size;
    let crc = crc.unwrap_or(ExtentCrc {
        kind: CrcKind::Crc32,
        compressed_size: size,
        uncompressed_size: size,
        offset: 0,
        nonce: 0,
        csum_type: CsumType::None as u8,
        compression_type: CompressionType::None as u8,
        csum: Csum::default(),
    });
    let Some(csum_type) = CsumType::from_u8(crc.csum_type) else {
        return Err(ctx.err(Errno::EIO, format_args!("extent {}: unknown checksum type {}", k.k.p, crc.csum_type)));
    };
    if csum_type.is_encryption() {
        return Err(ctx.err(
            Errno::EOPNOTSUPP,
            format_args!("extent {}: encrypted ({}), not supported", k.k.p, csum_type.name()),
        ));
    }
    let Some(comp) = CompressionType::from_u8(crc.compression_type) else {
        return Err(ctx.err(
            Errno::EIO,
            format_args!("extent {}: unknown compression type {}", k.k.p, crc.compression_type),
        ));
    };
    if u64::from(crc.offset) + u64::from(size) > u64::from(crc.uncompressed_size) {
        return Err(ctx.err(
            Errno::EIO,
            format_args!(
                "extent {}: live data {}+{} past the {} sectors written (corrupt crc entry)",
                k.k.p, crc.offset, size, crc.uncompressed_size
            ),
        ));
    }

    let file_sector = ctx.sector;
    if csum_type == CsumType::None && !comp.is_compressed() {
        // Plain data: read just what is wanted, straight into place.
        let dev_sector = ptr.offset + u64::from(crc.offset) + offset_into;
        plan.reads.push(Pending { file_sector, dev: ptr.dev, dev_sector, off, len, enc: None })?;
        return Ok(());
    }

    let tag = (tag_inum, k.k.p, k.k.version.lo);
    let from = usize::try_from(offset_into).unwrap_or(usize::MAX).saturating_mul(SECTOR_SIZE);
    if cache.tag == Some(tag) {
        return match cache.data.get(from..).and_then(|s| s.get(..len)) {
            Some(s) => {
                out.write(off, s);
                Ok(())
            }
            None => Err(ctx.err(Errno::EIO, format_args!("extent {}: decoded data too short", k.k.p))),
        };
    }
    let in_place = !comp.is_compressed()
        && checksum::Incremental::new(csum_type).is_some()
        && crc.offset == 0
        && crc.compressed_size == crc.uncompressed_size
        && crc.uncompressed_size == size
        && offset_into == 0
        && len as u64 == u64::from(size) * SECTOR;
    let enc = Encoded { k: k.k, crc, csum_type, comp, tag, offset_into, raw: Vec::new(), in_place };
    plan.reads.push(Pending { file_sector, dev: ptr.dev, dev_sector: ptr.offset, off, len, enc: Some(enc) })?;
    Ok(())
}

/// A data checksum mismatch of the extent read from `sector` of `dev`:
/// counted ([`BtreeRead::checksum_error`]) and logged; `EIO`.
fn csum_mismatch<T: BtreeRead + ?Sized>(
    fs: &T,
    ctx: &Ctx<'_>,
    dev: u8,
    sector: u64,
    crc: &ExtentCrc,
    csum_type: CsumType,
    got: Csum,
) -> Errno {
    fs.checksum_error(dev);
    ctx.err(
        Errno::EIO,
        format_args!(
            "data checksum error on device {} sector {} ({} sectors), type {}: expected {:x}:{:x} got {:x}:{:x}",
            dev,
            sector,
            crc.compressed_size,
            csum_type.name(),
            crc.csum.hi,
            crc.csum.lo,
            got.hi,
            got.lo
        ),
    )
}

/// Verifies the checksum of `raw`, the whole encoded data of extent `k`
/// read from `sector` of `dev`, decompresses it and returns the live part
/// (`k.size` sectors from `crc.offset`).
#[allow(clippy::too_many_arguments)]
fn decode_extent<T: BtreeRead + ?Sized>(
    fs: &T,
    ctx: &Ctx<'_>,
    k: &crate::format::bkey::Bkey,
    dev: u8,
    sector: u64,
    crc: &ExtentCrc,
    csum_type: CsumType,
    comp: CompressionType,
    raw: Vec<u8>,
) -> Result<Vec<u8>, Errno> {
    // Non-MAC checksum types take no nonce (`bch2_checksum()`).
    let got = checksum::checksum(csum_type, &raw).map_err(|_| Errno::EOPNOTSUPP)?;
    if got != crc.csum {
        return Err(csum_mismatch(fs, ctx, dev, sector, crc, csum_type, got));
    }
    let mut data = if comp.is_compressed() {
        let mut data = Vec::new();
        data.resize(crc.uncompressed_size as usize * SECTOR_SIZE, 0)?;
        compress::decompress(comp as u8, &raw, &mut data).map_err(|e| {
            ctx.err(
                e.errno(),
                format_args!("extent {}: decompression error ({}): {e}", k.p, comp.name()),
            )
        })?;
        data
    } else {
        // Uncompressed data is decoded in place.
        raw
    };
    // Keep the live part only.
    let live_from = crc.offset as usize * SECTOR_SIZE;
    let live_len = k.size as usize * SECTOR_SIZE;
    if live_from.checked_add(live_len).map_or(true, |e| e > data.len()) {
        return Err(ctx.err(Errno::EIO, format_args!("extent {}: live data past the decoded data", k.p)));
    }
    data.copy_within(live_from..live_from + live_len, 0);
    data.truncate(live_len);
    Ok(data)
}

/// Largest gap, in 512-byte sectors, between the end of one read and the
/// start of the next for the second to count as sequential (64 KiB).
const RA_MAX_GAP_SECTORS: u64 = 128;

/// Reads `buf.len()` bytes of device `dev` from `sector`, through the
/// reader's read-ahead window: served from the window when it holds them;
/// a read that continues the previous one (at most
/// [`RA_MAX_GAP_SECTORS`] past its end) fills a new window of
/// [`RA_WINDOW_BYTES`] first (if that fails, say at the end of the device,
/// or memory is short, the read is done alone).
fn dev_read<T: BtreeRead + ?Sized>(fs: &T, ra: &mut DevReadAhead, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let sectors = (buf.len() / SECTOR_SIZE) as u64;
    // Sequential: forward from where the last read ended, with at most a
    // small gap (extents written one after the other may sit a few
    // sectors apart, past btree node writes or other files' data).
    let gap = sector.wrapping_sub(ra.next);
    let sequential = ra.dev == dev && ra.next != 0 && sector >= ra.next && gap < RA_MAX_GAP_SECTORS;
    ra.next = sector.saturating_add(sectors);
    if let Some(s) = window_slice(ra, dev, sector, buf.len()) {
        copy_same_len(buf, s);
        return Ok(());
    }
    // From here on the window (if any) is of no use: it is replaced or
    // dropped, and `dev` is the device of both the window and `next`.
    ra.buf.clear();
    ra.dev = dev;
    if sequential && buf.len() < RA_WINDOW_BYTES {
        if ra.buf.resize(RA_WINDOW_BYTES, 0).is_ok() && fs.read_data(dev, sector, &mut ra.buf).is_ok() {
            ra.start = sector;
            if let Some(s) = window_slice(ra, dev, sector, buf.len()) {
                copy_same_len(buf, s);
                return Ok(());
            }
        }
        ra.buf.clear();
    }
    fs.read_data(dev, sector, buf)
}

/// Copies `src` into `dst`, which [`window_slice`] made the same length:
/// the copy is cut to both lengths so that no length-mismatch panic path
/// is compiled in (objtool also flagged the one `copy_from_slice()` left,
/// whose panic function it does not know as noreturn).
fn copy_same_len(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
}

/// The bytes of `[sector, sector + len)` of `dev` if the window holds
/// all of them.
fn window_slice(ra: &DevReadAhead, dev: u8, sector: u64, len: usize) -> Option<&[u8]> {
    if ra.buf.is_empty() || ra.dev != dev || sector < ra.start {
        return None;
    }
    let from = usize::try_from(sector - ra.start).ok()?.checked_mul(SECTOR_SIZE)?;
    ra.buf.get(from..from.checked_add(len)?)
}

/// The target of symlink `inode` (its data, up to the first NUL or
/// `size`, at most [`SYMLINK_MAX`] bytes as `page_get_link()` returns),
/// replacing the contents of `out`.
///
/// Errors: those of [`read_data`]: `EIO` (including a checksum error),
/// `EOPNOTSUPP`, `ENOMEM`.
pub fn readlink<T: BtreeRead + ?Sized>(fs: &T, sv: &Subvol, inode: &InodeAttrs, out: &mut Vec<u8>) -> Result<(), Errno> {
    out.clear();
    let len = inode.size.min(SYMLINK_MAX as u64) as usize;
    if len == 0 {
        return Ok(());
    }
    out.resize(len.div_ceil(SECTOR_SIZE) * SECTOR_SIZE, 0)?;
    let mut cache = ExtentCache::default();
    read_data(fs, sv, inode, 0, out, &mut cache)?;
    let cut = out.get(..len).unwrap_or(&[]).iter().position(|&b| b == 0).unwrap_or(len);
    out.truncate(cut);
    Ok(())
}
