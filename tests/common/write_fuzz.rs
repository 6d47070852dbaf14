// SPDX-License-Identifier: GPL-2.0
//! Shared by `tests/write_fuzz.rs` and the cargo-fuzz target
//! `fuzz/fuzz_targets/write_path.rs` (included with `#[path]`): a small
//! valid volume built once, corruption aimed at its metadata (superblock,
//! journal buckets, btree nodes), and what the write path then does with
//! it (read-write open, replay, a few operations, fsync, clean shutdown,
//! the GC check of the result).  Errors are fine; a panic is a bug.

use std::sync::OnceLock;

use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::errcode::Errno;
use bcachefs_rs::format::sb_write::{format, FormatOpts};
use bcachefs_rs::fs_common::fs_ops::{create, rename, setattr, symlink, unlink, NewInode, SetAttr};
use bcachefs_rs::fs_common::io_write::{truncate, write_data};
use bcachefs_rs::fs_common::xattr::xattr_set;
use bcachefs_rs::fs_common::{inode_get, readdir, root_subvol, Subvol};
use bcachefs_rs::fs_initialize::{fs_initialize, ROOT_INO, ROOT_SUBVOL};
use bcachefs_rs::fs_rw::{writepoint_hashed, BchFs, BchFsOpen, FsDataAlloc};
use bcachefs_rs::journal::res::JournalSink;
use bcachefs_rs::platform::{BlockDev, MemImage, RecDev, WriteFlags, SECTOR_SIZE};

const SV: Subvol = Subvol { id: ROOT_SUBVOL, snapshot: u32::MAX, root_inum: ROOT_INO };
const T0: i64 = 1_700_000_000_000_000_000;
const FILE: u16 = 0o100644;
const DIR: u16 = 0o040755;

/// A region of metadata: first sector and length in sectors.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// First sector.
    pub sector: u64,
    /// Length, sectors.
    pub sectors: u64,
}

/// A base volume and where its metadata lives.
pub struct Base {
    /// The image.
    pub img: MemImage,
    /// `[primary superblock, journal buckets..., btree nodes...]`.
    pub regions: Vec<Region>,
}

/// C's `bch2_journal_flush()`.
fn fsync<D: BlockDev + Send + Sync>(fs: &BchFs<D>) -> Result<(), Errno> {
    let j = &fs.open.journal;
    j.flush_seq(j.cur_seq())
}

/// Some namespace and data operations, errors ignored but the first
/// returned at the end (so that an error does not stop the exercise).
fn ops<D: BlockDev + Send + Sync>(fs: &BchFs<D>, round: u32) -> Result<(), Errno> {
    let mut t = fs.trans();
    let mut a = FsDataAlloc::new(fs, writepoint_hashed(1));
    let mut first: Result<(), Errno> = Ok(());
    let mut note = |r: Result<(), Errno>| {
        if first.is_ok() {
            first = r;
        }
    };
    let d = format!("d{round}");
    let dir = create(&mut t, &SV, ROOT_INO, d.as_bytes(), &NewInode { mode: DIR, uid: 0, gid: 0, rdev: 0 }).map(|u| u.inum);
    note(dir.map(|_| ()));
    let parent = dir.unwrap_or(ROOT_INO);
    for i in 0..4u32 {
        let name = format!("f{round}-{i}");
        match create(&mut t, &SV, parent, name.as_bytes(), &NewInode { mode: FILE, uid: i, gid: 0, rdev: 0 }) {
            Ok(u) => {
                let data = vec![i as u8 + 1; [100, 5000, 70_000, 200_000][i as usize]];
                note(write_data(&mut t, &mut a, &SV, u.inum, 0, &data));
                note(xattr_set(&mut t, &SV, u.inum, b"user.fuzz", Some(b"value"), 0));
                if i == 2 {
                    note(truncate(&mut t, &mut a, &SV, u.inum, 12_345));
                    note(setattr(&mut t, &mut a, &SV, u.inum, &SetAttr { mode: Some(0o600), ..SetAttr::default() }).map(|_| ()));
                }
            }
            Err(e) => note(Err(e)),
        }
    }
    note(symlink(&mut t, &mut a, &SV, parent, b"link", b"f-target", 0, 0).map(|_| ()));
    note(rename(&mut t, &SV, parent, format!("f{round}-0").as_bytes(), ROOT_INO, format!("moved{round}").as_bytes(), 0));
    note(unlink(&mut t, &SV, parent, format!("f{round}-1").as_bytes(), false));
    drop(t);
    note(fsync(fs));
    note(fs.flush());
    first
}

/// Format + initialize + some operations on a 16 MiB volume with 64 KiB
/// buckets and 16 KiB nodes; `unclean`: the last operations are left in
/// the journal (fsync'd, no shutdown); `csum`: metadata checksums (without
/// them, corruption reaches the parsers instead of the checksum check).
fn build(unclean: bool, csum: bool) -> Base {
    let bytes = 16u64 << 20;
    let mut o = FormatOpts::new([1; 16], [2; 16], [3; 16], T0 as u64);
    o.set("btree_node_size", 16 << 10).unwrap();
    if !csum {
        o.set("metadata_checksum", 0).unwrap();
    }
    o.bucket_size = Some(64 << 10);
    let f = format(bytes, &o).unwrap();
    let dev = RecDev::zeroed("base", bytes / SECTOR_SIZE as u64);
    for (sector, data) in f.writes().unwrap().iter() {
        dev.write_sectors(*sector, data, WriteFlags::default()).unwrap();
    }
    let open = BchFsOpen::open(dev).unwrap();
    let mut nodes = Vec::new();
    open.mount(T0, 1, |fs| {
        fs_initialize(fs)?;
        ops(fs, 0)?;
        if unclean {
            ops(fs, 1)?;
            fsync(fs)?;
        } else {
            fs.shutdown()?;
        }
        nodes = fs.triggers.node_ptr_sectors()?.iter().map(|&(_, s)| s).collect();
        Ok(())
    })
    .unwrap();
    let bucket = u64::from(open.facts.bucket_sectors);
    let node = u64::from(open.info.node_bytes) / SECTOR_SIZE as u64;
    // The primary superblock (the backups only matter once it is bad),
    // each journal bucket, each node.
    let mut regions = vec![Region { sector: 8, sectors: 8 }];
    regions.extend(open.info.journal_buckets.iter().map(|&b| Region { sector: b * bucket, sectors: bucket }));
    nodes.sort_unstable();
    nodes.dedup();
    regions.extend(nodes.iter().map(|&s| Region { sector: s, sectors: node }));
    Base { img: open.dev.image(), regions }
}

/// The four base volumes (clean/unclean, with/without metadata
/// checksums), built once.
pub fn bases() -> &'static [Base; 4] {
    static B: OnceLock<[Base; 4]> = OnceLock::new();
    B.get_or_init(|| [build(false, true), build(true, true), build(false, false), build(true, false)])
}

/// Applies `input` to a copy of a base volume: byte 0 picks the base;
/// then records of `[kind, region, offset (3 bytes LE), len, bytes...]`:
/// kind & 3 = 0 writes the bytes, 1 xors them in, 2 zeroes `len * 8`
/// bytes, 3 sets one bit (`offset * 8 + len % 8`).  Region and offset are
/// taken modulo the metadata regions and their sizes.
pub fn corrupt(input: &[u8]) -> MemImage {
    let bases = bases();
    let Some((&b0, mut rest)) = input.split_first() else { return bases[0].img.clone() };
    let base = &bases[usize::from(b0) % bases.len()];
    let mut img = base.img.clone();
    while rest.len() >= 6 {
        let (kind, reg, off, len) = (rest[0], rest[1], u64::from_le_bytes([rest[2], rest[3], rest[4], 0, 0, 0, 0, 0]), rest[5]);
        rest = &rest[6..];
        let r = base.regions[usize::from(reg) % base.regions.len()];
        let bytes_len = r.sectors * SECTOR_SIZE as u64;
        let at = r.sector * SECTOR_SIZE as u64 + off % bytes_len;
        let patch: Vec<u8> = match kind & 3 {
            0 | 1 => {
                let n = usize::from(len).min(rest.len());
                let p = rest[..n].to_vec();
                rest = &rest[n..];
                p
            }
            2 => vec![0; usize::from(len) * 8],
            _ => vec![1 << (len % 8)],
        };
        apply(&mut img, at, &patch, kind & 3 != 0 && kind & 3 != 2);
    }
    img
}

/// Writes (or xors in) `patch` at byte `at`, within the image.
fn apply(img: &mut MemImage, at: u64, patch: &[u8], xor: bool) {
    let end = (at + patch.len() as u64).min(img.nr_sectors() * SECTOR_SIZE as u64);
    if end <= at {
        return;
    }
    let (s0, s1) = (at / SECTOR_SIZE as u64, end.div_ceil(SECTOR_SIZE as u64));
    let mut buf = vec![0u8; ((s1 - s0) as usize) * SECTOR_SIZE];
    img.read(s0, &mut buf).unwrap();
    let o = (at - s0 * SECTOR_SIZE as u64) as usize;
    for (i, &p) in patch.iter().enumerate().take((end - at) as usize) {
        buf[o + i] = if xor { buf[o + i] ^ p } else { p };
    }
    img.write(s0, &buf).unwrap();
}

/// What the write path does with a (possibly damaged) volume: open it
/// read-write (journal replay), some operations, fsync, node writes, a
/// clean shutdown; then the read-only mount and the GC check of the
/// result, and a directory listing.  Returns the first error.
pub fn exercise(img: MemImage) -> Result<(), String> {
    let open = BchFsOpen::open(RecDev::new("fuzz", img)).map_err(|e| format!("open: {e}"))?;
    let r = open.mount(T0 + 5_000_000_000, 2, |fs| {
        let r = ops(fs, 7);
        fs.shutdown()?;
        r
    });
    let after = open.dev.image();
    drop(open);
    r.map_err(|e| format!("mount: {e}"))?;
    let fs = Fs::open(after, &OpenOpts::default()).map_err(|e| format!("read-only open: {e}"))?;
    bcachefs_rs::gc::check_fs(&fs).map_err(|e| format!("check_fs: {e}"))?;
    let sv = root_subvol(&fs).map_err(|e| format!("root: {e}"))?;
    let root = inode_get(&fs, &sv, sv.root_inum).map_err(|e| format!("root inode: {e}"))?;
    readdir(&fs, &sv, &root, 0, &mut |_| true).map_err(|e| format!("readdir: {e}"))?;
    Ok(())
}
