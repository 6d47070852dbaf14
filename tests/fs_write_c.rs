// SPDX-License-Identifier: GPL-2.0
//! The write side against C: the keys C bcachefs wrote into the fixture
//! images (tests/fixtures, see its README) are re-made by our encoders and
//! write operations and compared byte for byte: inodes repacked, dirents
//! and xattrs hashed in by `dirent_create`/`xattr_set_trans`, and every
//! file's data written again by `write_data` (with an allocator that hands
//! out the sectors C's pointers name) must give C's inline data and
//! extent keys exactly: sizes, positions, crc entries and checksums.  Data
//! C compressed with lz4 is compared by shape (our LZ4 output differs).

use std::collections::BTreeMap;

use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::errcode::{BchError, Errno};
use bcachefs_rs::format::bkey::{Bkey, BkeyI, BtreeId, KeyType};
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::val::dirent::{parse_dirent, parse_xattr};
use bcachefs_rs::format::val::extent::{ExtentEntries, ExtentEntry};
use bcachefs_rs::format::val::inode::{self as val_inode, InodeField, InodeUnpacked};
use bcachefs_rs::fs_common::fs_ops::{create_trans, dirent_create, inode_init_early, NewInode};
use bcachefs_rs::fs_common::inode_write::{hash_info, mode_to_type};
use bcachefs_rs::fs_common::io_write::write_data;
use bcachefs_rs::fs_common::trans::{commit_do, BtreeTransOps, DataAlloc, DataSpace, WriteOpts};
use bcachefs_rs::fs_common::xattr::xattr_set_trans;
use bcachefs_rs::fs_common::{self, BtreeRead, ExtentCache, FsFacts, OwnedKey};
use bcachefs_rs::platform::Vec as KVec;

mod common;
use common::{unpack_image, MemDev};

const SNAP: u32 = u32::MAX;

fn open(name: &str) -> Fs<MemDev> {
    Fs::open(MemDev(unpack_image(&format!("{name}.bchimg"))), &OpenOpts::default()).unwrap()
}

/// Every live key of `btree`.
fn all_keys(fs: &Fs<MemDev>, btree: BtreeId) -> Vec<OwnedKey> {
    let mut out = Vec::new();
    let mut from = Bpos::new(0, 0, 0);
    let end = Bpos::new(u64::MAX, u64::MAX, u32::MAX);
    while let Some(k) = fs.peek_upto(btree, from, end, false).unwrap() {
        let next = k.k.p.successor();
        out.push(k);
        match next {
            Some(n) => from = n,
            None => break,
        }
    }
    out
}

fn owned(k: &Bkey, v: &[u8]) -> BkeyI {
    let mut val = KVec::new();
    val.extend_from_slice(v).unwrap();
    BkeyI { k: *k, v: val }
}

/// `v` with the `_unused` bit of crc32 entries cleared: C's
/// `bch2_extent_crc_pack()` never sets it, so it holds whatever the key
/// buffer held before (C's keys have it set at random); ours is 0.
fn without_unused_bits(k: &Bkey, v: &[u8]) -> Vec<u8> {
    let mut v = v.to_vec();
    if k.key_type != KeyType::Extent as u8 {
        return v;
    }
    let mut at = 0;
    while at + 8 <= v.len() {
        let w = u64::from_le_bytes(v[at..at + 8].try_into().unwrap());
        let ty = w.trailing_zeros();
        if ty == 1 {
            v[at + 2] &= 0x7f;
        }
        at += match ty {
            2 => 16,
            3 => 24,
            _ => 8,
        };
    }
    v
}

/// A plain in-memory transaction: keys per btree, pending updates
/// applied on commit.
struct Trans {
    keys: BTreeMap<(u8, Bpos), (Bkey, Vec<u8>)>,
    pending: BTreeMap<(u8, Bpos), (Bkey, Vec<u8>)>,
    facts: FsFacts,
    opts: WriteOpts,
}

impl Trans {
    fn new(facts: FsFacts) -> Trans {
        Trans { keys: BTreeMap::new(), pending: BTreeMap::new(), facts, opts: WriteOpts::default() }
    }

    fn put(&mut self, b: BtreeId, k: &OwnedKey) {
        self.keys.insert((b as u8, k.k.p), (k.k, k.v.to_vec()));
    }

    fn of(&self, b: BtreeId, inum: u64) -> Vec<(Bkey, Vec<u8>)> {
        let b = b as u8;
        self.keys.range((b, Bpos::new(inum, 0, 0))..=(b, Bpos::new(inum, u64::MAX, u32::MAX))).map(|(_, kv)| kv.clone()).collect()
    }
}

impl BtreeTransOps for Trans {
    fn peek_upto(&mut self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<BkeyI>, BchError> {
        let b = btree as u8;
        let mut merged: BTreeMap<Bpos, &(Bkey, Vec<u8>)> = BTreeMap::new();
        for (kp, kv) in self.keys.range((b, from)..=(b, to)) {
            merged.insert(kp.1, kv);
        }
        for (kp, kv) in self.pending.range((b, from)..=(b, to)) {
            merged.insert(kp.1, kv);
        }
        for (_, (k, v)) in merged {
            let t = KeyType::from_u8(k.key_type);
            if t == Some(KeyType::Deleted) || (!whiteouts && matches!(t, Some(KeyType::Whiteout | KeyType::HashWhiteout))) {
                continue;
            }
            return Ok(Some(owned(k, v)));
        }
        Ok(None)
    }
    fn update(&mut self, btree: BtreeId, k: BkeyI) -> Result<(), BchError> {
        self.pending.insert((btree as u8, k.k.p), (k.k, k.v.to_vec()));
        Ok(())
    }
    fn begin(&mut self) {
        self.pending.clear();
    }
    fn commit(&mut self) -> Result<(), BchError> {
        for (kp, kv) in std::mem::take(&mut self.pending) {
            if kv.0.key_type == KeyType::Deleted as u8 {
                self.keys.remove(&kp);
            } else {
                self.keys.insert(kp, kv);
            }
        }
        Ok(())
    }
    fn read_data(&mut self, _dev: u8, _sector: u64, _buf: &mut [u8]) -> Result<(), Errno> {
        Err(Errno::EIO)
    }
    fn dev_name(&self) -> &str {
        "replay"
    }
    fn facts(&self) -> &FsFacts {
        &self.facts
    }
    fn opts(&self) -> &WriteOpts {
        &self.opts
    }
    fn now_ns(&self) -> i64 {
        0
    }
    fn random_u64(&mut self) -> u64 {
        4
    }
    fn unused_inode_hint(&self, _cpu: u64) -> u64 {
        0
    }
    fn set_unused_inode_hint(&mut self, _cpu: u64, _v: u64) {}
}

/// Hands out exactly the sectors C's pointers name, in order, each piece
/// no longer than C's extent; records what was written there.
struct ReplayAlloc {
    pieces: Vec<(u8, u64, u8, u32)>,
    next: usize,
    written: BTreeMap<u64, Vec<u8>>,
}

impl DataAlloc for ReplayAlloc {
    fn alloc(&mut self, sectors: u32) -> Result<DataSpace, Errno> {
        let &(dev, offset, gen, size) = self.pieces.get(self.next).ok_or(Errno::ENOSPC)?;
        self.next += 1;
        Ok(DataSpace { dev, offset, gen, sectors: sectors.min(size) })
    }
    fn write(&mut self, _dev: u8, sector: u64, data: &[u8]) -> Result<(), Errno> {
        self.written.insert(sector, data.to_vec());
        Ok(())
    }
}

/// How to compare data keys: byte for byte, or (for data C compressed
/// with lz4, whose output our compressor does not reproduce) by shape.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Data {
    None,
    Exact,
    Lz4Shape,
}

/// A key's shape: position, size, type, and per crc entry everything
/// but the compressed size and checksum.
type Shape = (Bpos, u32, u8, Vec<(u32, u32, u8, u8)>);

fn shape(k: &Bkey, v: &[u8]) -> Shape {
    let v = if k.key_type == KeyType::Extent as u8 { v } else { &[] };
    let crcs = ExtentEntries::new(v)
        .filter_map(|e| match e {
            Ok(ExtentEntry::Crc(c)) => Some((c.uncompressed_size, c.offset, c.csum_type, c.compression_type)),
            _ => None,
        })
        .collect();
    (k.p, k.size, k.key_type, crcs)
}

fn check_fixture(name: &str, mode: Data) {
    let fs = open(name);
    let facts = *fs.facts();
    let sv = fs_common::root_subvol(&fs).unwrap();

    // Inodes: unpack and repack gives C's bytes.
    let inodes = all_keys(&fs, BtreeId::Inodes);
    let mut by_inum: BTreeMap<u64, (OwnedKey, InodeUnpacked)> = BTreeMap::new();
    for k in inodes {
        if k.k.key_type != KeyType::InodeV3 as u8 {
            continue;
        }
        let u = val_inode::unpack(&k.k, &k.v).unwrap();
        let mut buf = [0u8; 272];
        let n = val_inode::pack_v3(&u, &mut buf).unwrap();
        assert_eq!(&buf[..n], &k.v[..], "{name}: inode {} repacks differently", u.inum);
        by_inum.insert(u.inum, (k, u));
    }
    assert!(by_inum.len() > 40, "{name}: {} inodes", by_inum.len());

    // Dirents: hashed in by dirent_create over a directory holding C's
    // other entries, at C's offset with C's bytes.
    let dirents = all_keys(&fs, BtreeId::Dirents);
    for d in &dirents {
        let de = parse_dirent(&d.v);
        let (dk, du) = &by_inum[&d.k.p.inode];
        let mut t = Trans::new(facts);
        t.put(BtreeId::Inodes, dk);
        for o in dirents.iter().filter(|o| o.k.p.inode == d.k.p.inode && o.k.p != d.k.p) {
            t.put(BtreeId::Dirents, o);
        }
        let info = hash_info(du).unwrap();
        let target_mode = by_inum[&de.inum].1.mode;
        assert_eq!(mode_to_type(target_mode), de.d_type);
        let off = commit_do(&mut t, |t| dirent_create(t, &sv, d.k.p.inode, &info, de.d_type, de.name, de.inum)).unwrap();
        assert_eq!(off, d.k.p.offset, "{name}: dirent {:?}", std::str::from_utf8(de.name));
        let mine = t.of(BtreeId::Dirents, d.k.p.inode).into_iter().find(|(k, _)| k.p == d.k.p).unwrap();
        assert_eq!((mine.0, &mine.1[..]), (d.k, &d.v[..]), "{name}: dirent {:?}", std::str::from_utf8(de.name));
    }

    // Xattrs: likewise through xattr_set_trans.
    let xattrs = all_keys(&fs, BtreeId::Xattrs);
    assert!(!xattrs.is_empty());
    for x in &xattrs {
        let xa = parse_xattr(&x.v).unwrap();
        let (ik, _) = &by_inum[&x.k.p.inode];
        let mut t = Trans::new(facts);
        t.put(BtreeId::Inodes, ik);
        commit_do(&mut t, |t| xattr_set_trans(t, &sv, x.k.p.inode, xa.x_type, xa.name, Some(xa.value), 0)).unwrap();
        let mine = t.of(BtreeId::Xattrs, x.k.p.inode);
        assert_eq!(mine.len(), 1);
        assert_eq!((mine[0].0, &mine[0].1[..]), (x.k, &x.v[..]), "{name}: xattr {:?}", std::str::from_utf8(xa.name));
    }

    // Creates: each inode C made, made again by create_trans in its
    // parent, has C's fields but for the number, seed, times, journal
    // sequence number, size and sectors, and (directories) link count.
    for d in &dirents {
        let de = parse_dirent(&d.v);
        let (_, cu) = &by_inum[&de.inum];
        if !cu.is_dir() && cu.get(InodeField::Nlink) != 0 {
            continue; // hard links: bi_dir names the newest link
        }
        let mut t = Trans::new(facts);
        t.opts.str_hash = cu.str_hash_type();
        t.put(BtreeId::Inodes, &by_inum[&d.k.p.inode].0);
        for o in dirents.iter().filter(|o| o.k.p.inode == d.k.p.inode && o.k.p != d.k.p) {
            t.put(BtreeId::Dirents, o);
        }
        let n = NewInode {
            mode: cu.mode,
            uid: cu.get(InodeField::Uid) as u32,
            gid: cu.get(InodeField::Gid) as u32,
            rdev: cu.get(InodeField::Dev) as u32,
        };
        let new = inode_init_early(&mut t, &n);
        let mut mine = commit_do(&mut t, |t| create_trans(t, &sv, d.k.p.inode, de.name, &new, false)).unwrap();
        let mut theirs = *cu;
        for u in [&mut mine, &mut theirs] {
            u.inum = 0;
            u.hash_seed = 0;
            u.journal_seq = 0;
            u.size = 0;
            u.sectors = 0;
            u.flags &= (1 << 24) - 1;
            for f in [InodeField::Atime, InodeField::Mtime, InodeField::Ctime, InodeField::Otime] {
                u.set(f, 0);
            }
            if u.is_dir() {
                u.set(InodeField::Nlink, 0);
            }
        }
        assert_eq!(mine, theirs, "{name}: create of {:?}", std::str::from_utf8(de.name));
    }

    if mode == Data::None {
        return;
    }
    // Data: each file written again as C's page cache wrote it (one bio
    // per run of keys) gives C's keys.
    let extents = all_keys(&fs, BtreeId::Extents);
    let mut files = 0;
    let mut lz4_keys = 0;
    for (&inum, (ik, u)) in &by_inum {
        let c_keys: Vec<&OwnedKey> = extents.iter().filter(|k| k.k.p.inode == inum).collect();
        if c_keys.is_empty() {
            continue;
        }
        files += 1;
        // The file's bytes, through the read side.
        let attrs = fs_common::inode_get(&fs, &sv, inum).unwrap();
        let mut data = KVec::new();
        data.resize((u.size.div_ceil(512) * 512) as usize, 0u8).unwrap();
        fs_common::read_data(&fs, &sv, &attrs, 0, &mut data, &mut ExtentCache::default()).unwrap();
        let mut pieces = Vec::new();
        for k in &c_keys {
            if k.k.key_type == KeyType::Extent as u8 {
                for e in ExtentEntries::new(&k.v) {
                    if let Ok(ExtentEntry::Ptr(p)) = e {
                        pieces.push((p.dev, p.offset, p.gen, k.k.size));
                    }
                }
            }
        }
        let mut t = Trans::new(facts);
        // The fixture's data checksum and compression, from its keys.
        let crc_of = |k: &&OwnedKey| {
            if k.k.key_type != KeyType::Extent as u8 {
                return None;
            }
            ExtentEntries::new(&k.v).find_map(|e| match e {
                Ok(ExtentEntry::Crc(c)) => Some(c),
                _ => None,
            })
        };
        if let Some(c) = c_keys.iter().find_map(crc_of) {
            t.opts.data_checksum = match c.csum_type {
                0 => 0,
                5 => 1,
                6 => 2,
                7 => 3,
                x => panic!("csum type {x}"),
            };
        }
        if mode == Data::Lz4Shape {
            t.opts.compression = 1;
        }
        // C's file inode as it was before the data: no size, no sectors.
        let mut bare = *u;
        bare.size = 0;
        bare.sectors = 0;
        let mut buf = [0u8; 272];
        let n = val_inode::pack_v3(&bare, &mut buf).unwrap();
        let mut ik2 = owned(&ik.k, &buf[..n]);
        ik2.k.u64s = (5 + n / 8) as u8;
        t.put(BtreeId::Inodes, &ik2);
        let mut a = ReplayAlloc { pieces, next: 0, written: BTreeMap::new() };
        // Runs of contiguous keys.
        let mut i = 0;
        while i < c_keys.len() {
            let start = c_keys[i].k.start_offset();
            let mut end = c_keys[i].k.p.offset;
            let mut j = i + 1;
            while j < c_keys.len() && c_keys[j].k.start_offset() == end {
                end = c_keys[j].k.p.offset;
                j += 1;
            }
            let from = (start * 512) as usize;
            let to = ((end * 512) as usize).min(u.size as usize);
            write_data(&mut t, &mut a, &sv, inum, from as u64, &data[from..to]).unwrap();
            i = j;
        }
        let mine = t.of(BtreeId::Extents, inum);
        if mode == Data::Lz4Shape {
            let mine: Vec<_> = mine.iter().map(|(k, v)| shape(k, v)).collect();
            let theirs: Vec<_> = c_keys.iter().map(|k| shape(&k.k, &k.v)).collect();
            assert_eq!(mine, theirs, "{name}: inode {inum} data keys");
            lz4_keys += theirs.iter().filter(|s| s.3.iter().any(|c| c.3 == 3)).count();
            let ours = t.of(BtreeId::Inodes, 0).into_iter().find(|(k, _)| k.p.offset == inum).unwrap();
            let ou = val_inode::unpack(&ours.0, &ours.1).unwrap();
            assert_eq!((ou.size, ou.sectors), (u.size, u.sectors), "{name}: inode {inum}");
            continue;
        }
        let theirs: Vec<(Bkey, Vec<u8>)> = c_keys.iter().map(|k| (k.k, without_unused_bits(&k.k, &k.v))).collect();
        assert_eq!(mine, theirs, "{name}: inode {inum} data keys");
        // The inode's size and sectors came out as C's.
        let ours = t.of(BtreeId::Inodes, 0).into_iter().find(|(k, _)| k.p.offset == inum).unwrap();
        let ou = val_inode::unpack(&ours.0, &ours.1).unwrap();
        assert_eq!((ou.size, ou.sectors), (u.size, u.sectors), "{name}: inode {inum}");
        // What was written to the device is what C's extents hold.
        for (sector, bytes) in &a.written {
            let mut dev = vec![0u8; bytes.len()];
            fs.read_data(0, *sector, &mut dev).unwrap();
            assert_eq!(&dev, bytes, "{name}: inode {inum} sector {sector}");
        }
    }
    assert!(files > 40, "{name}: {files} files");
    if mode == Data::Lz4Shape {
        assert!(lz4_keys >= 8, "{name}: {lz4_keys} lz4 extents compared");
    }
    let _ = SNAP;
}

#[test]
fn clean_fixture_keys_are_remade_byte_identical() {
    check_fixture("c-clean-siphash", Data::Exact);
}

/// crc64 string hashes; the data is lz4-compressed, and our LZ4
/// compressor's output is not C's, so data keys are compared by shape
/// (where extents start and end, what is compressed or incompressible).
#[test]
fn unclean_fixture_keys_are_remade() {
    check_fixture("c-unclean-crc64-lz4", Data::Lz4Shape);
}
