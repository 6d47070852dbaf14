// SPDX-License-Identifier: GPL-2.0
//! Tests of the read operations over an in-memory [`BtreeRead`]: sorted
//! keys per btree built with the format encoders, and a byte vector as the
//! device.  No C file: these check the behaviour of `dirent.c`,
//! `str_hash.h`, `inode.c`, `io_read.c` and `fs.c` (`bch2_statfs`) as the
//! module doc of each part describes it.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::vec;
use std::vec::Vec as StdVec;

use proptest::prelude::*;

use super::*;
use crate::checksum::{checksum, Csum, CsumType};
use crate::compress::CompressionType;
use crate::format::bkey::KeyType;
use crate::format::bpos::BVersion;
use crate::format::str_hash::HashInfo;
use crate::format::val::dirent::{encode_dirent, DT_SUBVOL};
use crate::format::val::extent::{encode_entries, CrcKind, ExtentCrc, ExtentEntry, ExtentPtr};
use crate::format::val::inode::{pack_v3, InodeField, InodeUnpacked, INODE_UNLINKED};
use crate::format::val::misc::Subvolume;

const SNAP: u32 = u32::MAX;
const ROOT: u64 = 4096;
const DT_REG: u8 = 8;
const DEV_SECTORS: usize = 8192;

/// An in-memory filesystem: keys per btree in bpos order, one device.
struct MemFs {
    keys: BTreeMap<(u8, Bpos), (Bkey, StdVec<u8>)>,
    dev: StdVec<u8>,
    facts: FsFacts,
    /// Device reads so far.
    reads: Cell<usize>,
}

impl MemFs {
    fn new() -> MemFs {
        MemFs {
            keys: BTreeMap::new(),
            dev: vec![0xee; DEV_SECTORS * 512],
            facts: FsFacts {
                block_bytes: 4096,
                time_base_lo: 0,
                time_precision_ns: 1,
                capacity_sectors: 1 << 20,
                bucket_sectors: 1024,
            },
            reads: Cell::new(0),
        }
    }

    /// Inserts a key of type `ty` at `p` with value `v` (zero padded to
    /// u64s), extent size `size` and version `ver`.
    fn put(&mut self, btree: BtreeId, ty: KeyType, p: Bpos, size: u32, ver: u64, v: &[u8]) {
        let mut val = v.to_vec();
        val.resize(v.len().div_ceil(8) * 8, 0);
        let mut k = Bkey::new(ty, p, val.len() / 8);
        k.size = size;
        k.version = BVersion { hi: 0, lo: ver };
        self.keys.insert((btree as u8, p), (k, val));
    }

    fn write_dev(&mut self, sector: u64, data: &[u8]) {
        let at = sector as usize * 512;
        self.dev[at..at + data.len()].copy_from_slice(data);
    }
}

impl BtreeRead for MemFs {
    fn peek_upto(&self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<OwnedKey>, Errno> {
        if from > to {
            return Ok(None);
        }
        for ((_, _), (k, v)) in self.keys.range((btree as u8, from)..=(btree as u8, to)) {
            let t = KeyType::from_u8(k.key_type);
            if t == Some(KeyType::Deleted) {
                continue;
            }
            if !whiteouts && matches!(t, Some(KeyType::Whiteout | KeyType::HashWhiteout)) {
                continue;
            }
            let mut val = crate::platform::Vec::new();
            val.extend_from_slice(v)?;
            return Ok(Some(OwnedKey { k: *k, v: val }));
        }
        Ok(None)
    }

    fn read_data(&self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if dev != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if buf.len() % 512 != 0 {
            return Err(Errno::EINVAL);
        }
        let at = sector as usize * 512;
        let src = self.dev.get(at..at + buf.len()).ok_or(Errno::EIO)?;
        buf.copy_from_slice(src);
        self.reads.set(self.reads.get() + 1);
        Ok(())
    }

    fn dev_name(&self) -> &str {
        "memdev"
    }

    fn facts(&self) -> &FsFacts {
        &self.facts
    }
}

fn root_sv() -> Subvol {
    Subvol { id: 1, snapshot: SNAP, root_inum: ROOT }
}

fn put_subvol(fs: &mut MemFs, id: u32, snapshot: u32, root: u64) {
    let s = Subvolume { snapshot, inode: root, ..Default::default() };
    fs.put(BtreeId::Subvolumes, KeyType::Subvolume, Bpos::pos(0, u64::from(id)), 0, 0, &s.encode());
}

fn put_inode(fs: &mut MemFs, u: &InodeUnpacked) {
    let mut buf = [0u8; 272];
    let n = pack_v3(u, &mut buf).unwrap();
    fs.put(BtreeId::Inodes, KeyType::InodeV3, Bpos::new(0, u.inum, u.snapshot), 0, 0, &buf[..n]);
}

fn dir_inode(inum: u64, hash_type: u8, seed: u64) -> InodeUnpacked {
    let mut u = InodeUnpacked { inum, snapshot: SNAP, mode: 0o40755, hash_seed: seed, ..Default::default() };
    u.flags = u32::from(hash_type) << 20;
    u
}

fn file_inode(inum: u64, size: u64) -> InodeUnpacked {
    InodeUnpacked { inum, snapshot: SNAP, mode: 0o100644, size, ..Default::default() }
}

fn put_dirent(fs: &mut MemFs, dir: u64, offset: u64, name: &[u8], inum: u64, d_type: u8) {
    let mut buf = [0u8; 600];
    let n = encode_dirent(&mut buf, inum, d_type, name).unwrap();
    fs.put(BtreeId::Dirents, KeyType::Dirent, Bpos::new(dir, offset, SNAP), 0, 0, &buf[..n]);
}

/// Inserts a dirent at its hash slot, probing past taken slots as
/// `bch2_hash_set_in_snapshot()` does; returns the slot.
fn insert_hashed(fs: &mut MemFs, dir: &InodeAttrs, name: &[u8], inum: u64) -> u64 {
    let info = HashInfo::new(dir.hash_type, dir.hash_seed).unwrap();
    let mut off = info.dirent_hash(name);
    while fs.keys.contains_key(&(BtreeId::Dirents as u8, Bpos::new(dir.inum, off, SNAP))) {
        off += 1;
    }
    put_dirent(fs, dir.inum, off, name, inum, DT_REG);
    off
}

fn collect_dir(fs: &MemFs, dir: &InodeAttrs, pos: u64) -> StdVec<(StdVec<u8>, u64, u8, u64)> {
    let mut out = StdVec::new();
    readdir(fs, &root_sv(), dir, pos, &mut |e| {
        out.push((e.name.to_vec(), e.inum, e.d_type, e.next_pos));
        true
    })
    .unwrap();
    out
}

// ---------------------------------------------------------------------
// Subvolumes and inodes

#[test]
fn root_subvolume() {
    let mut fs = MemFs::new();
    assert_eq!(root_subvol(&fs), Err(Errno::EUCLEAN));
    put_subvol(&mut fs, 1, SNAP, ROOT);
    assert_eq!(root_subvol(&fs), Ok(root_sv()));
    assert_eq!(subvol_get(&fs, 7), Err(Errno::ENOENT));
    put_subvol(&mut fs, 7, 0, 5000);
    assert_eq!(subvol_get(&fs, 7), Err(Errno::EUCLEAN));
}

#[test]
fn getattr_fields_and_times() {
    let mut fs = MemFs::new();
    let mut u = file_inode(5000, 12345);
    u.sectors = 32;
    u.hash_seed = 0xabcdef;
    u.flags = (1 << 4) | (3 << 20); // noatime, siphash
    u.set(InodeField::Uid, 1000);
    u.set(InodeField::Gid, 100);
    u.set(InodeField::Nlink, 1);
    u.set(InodeField::Generation, 77);
    u.set(InodeField::Dev, 0x0800_0001);
    u.set(InodeField::Atime, 1_700_000_000_123_456_789);
    u.set(InodeField::Mtime, 5);
    u.set(InodeField::Ctime, (-1_500_000_000i64) as u64);
    u.set(InodeField::Otime, 0);
    put_inode(&mut fs, &u);
    let a = inode_get(&fs, &root_sv(), 5000).unwrap();
    assert_eq!(
        (a.inum, a.mode, a.uid, a.gid, a.size, a.sectors, a.nlink, a.rdev, a.generation),
        (5000, 0o100644, 1000, 100, 12345, 32, 2, 0x0800_0001, 77)
    );
    assert_eq!((a.flags, a.hash_type, a.hash_seed), (1 << 4, 3, 0xabcdef));
    assert_eq!((a.atime_ns, a.mtime_ns, a.ctime_ns, a.otime_ns), (1_700_000_000_123_456_789, 5, -1_500_000_000, 0));

    // Microsecond precision and a time base (in stored units).
    fs.facts.time_precision_ns = 1000;
    fs.facts.time_base_lo = 10;
    let a = inode_get(&fs, &root_sv(), 5000).unwrap();
    assert_eq!(a.mtime_ns, 15_000);
    assert_eq!(a.ctime_ns, (-1_500_000_000i64 + 10) * 1000);
    // A precision that does not divide a second: C splits on
    // units_per_sec = 1e9 / 3 = 333333333 and scales the remainder.
    fs.facts.time_precision_ns = 3;
    fs.facts.time_base_lo = 0;
    let t = 1_000_000_000u64;
    // 1e9 units = 3 s and 1 unit left over.
    assert_eq!(time_to_ns(&fs.facts, t), 3_000_000_003);
    assert_eq!(time_to_ns(&fs.facts, (-1i64) as u64), -3);
    fs.facts.time_precision_ns = 0;
    assert_eq!(time_to_ns(&fs.facts, 42), 42);
}

#[test]
fn nlink_as_the_vfs_counts_it() {
    let mut fs = MemFs::new();
    let mut d = dir_inode(ROOT, 3, 1);
    d.set(InodeField::Nlink, 3);
    put_inode(&mut fs, &d);
    assert_eq!(inode_get(&fs, &root_sv(), ROOT).unwrap().nlink, 5);
    let mut f = file_inode(5001, 0);
    f.flags = INODE_UNLINKED;
    put_inode(&mut fs, &f);
    assert_eq!(inode_get(&fs, &root_sv(), 5001).unwrap().nlink, 0);
    let f = file_inode(5002, 0);
    put_inode(&mut fs, &f);
    assert_eq!(inode_get(&fs, &root_sv(), 5002).unwrap().nlink, 1);
}

#[test]
fn absent_inodes_are_enoent() {
    let mut fs = MemFs::new();
    assert_eq!(inode_get(&fs, &root_sv(), 5000), Err(Errno::ENOENT));
    // Another snapshot's inode is not ours.
    let mut u = file_inode(5000, 1);
    u.snapshot = 7;
    put_inode(&mut fs, &u);
    assert_eq!(inode_get(&fs, &root_sv(), 5000), Err(Errno::ENOENT));
    // A whiteout at the position.
    fs.put(BtreeId::Inodes, KeyType::Whiteout, Bpos::new(0, 5000, SNAP), 0, 0, &[]);
    assert_eq!(inode_get(&fs, &root_sv(), 5000), Err(Errno::ENOENT));
    // A value that does not unpack.
    let mut bad = [0u8; 56];
    bad[16..24].copy_from_slice(&((1u64 << 24) | (6 << 31)).to_le_bytes());
    bad[48..56].fill(0xff);
    fs.put(BtreeId::Inodes, KeyType::InodeV3, Bpos::new(0, 5003, SNAP), 0, 0, &bad);
    assert_eq!(inode_get(&fs, &root_sv(), 5003), Err(Errno::EUCLEAN));
}

// ---------------------------------------------------------------------
// Lookup and readdir

fn dir_fs(hash_type: u8) -> (MemFs, InodeAttrs) {
    let mut fs = MemFs::new();
    put_subvol(&mut fs, 1, SNAP, ROOT);
    put_inode(&mut fs, &dir_inode(ROOT, hash_type, 0x1234_5678_9abc_def0));
    let dir = inode_get(&fs, &root_sv(), ROOT).unwrap();
    (fs, dir)
}

#[test]
fn lookup_probes_collisions_and_hash_whiteouts() {
    for hash_type in [0u8, 1, 3] {
        let (mut fs, dir) = dir_fs(hash_type);
        let info = dir_hash_info(&dir).unwrap();
        let h = info.dirent_hash(b"target");
        // Forced collisions: other names in the chain starting at the
        // target's hash, a hash_whiteout, then the target.
        put_dirent(&mut fs, ROOT, h, b"other-one", 5001, DT_REG);
        fs.put(BtreeId::Dirents, KeyType::HashWhiteout, Bpos::new(ROOT, h + 1, SNAP), 0, 0, &[]);
        put_dirent(&mut fs, ROOT, h + 2, b"other-two", 5002, 4);
        fs.put(BtreeId::Dirents, KeyType::HashWhiteout, Bpos::new(ROOT, h + 3, SNAP), 0, 0, &[]);
        put_dirent(&mut fs, ROOT, h + 4, b"target", 5003, DT_REG);
        let sv = root_sv();
        assert_eq!(lookup(&fs, &sv, &dir, b"target"), Ok(Some((5003, DT_REG))));
        let t = lookup_entry(&fs, &sv, &dir, b"target").unwrap().unwrap();
        assert_eq!((t.offset, t.subvol), (h + 4, 1));
        // A hole ends the probe: a name hashing to the chain's end is absent.
        let hole = info.dirent_hash(b"absent");
        if !(h..=h + 4).contains(&hole) {
            assert_eq!(lookup(&fs, &sv, &dir, b"absent"), Ok(None));
        }
        // A `whiteout` (snapshot deletion) is a hole to the probe.
        fs.put(BtreeId::Dirents, KeyType::Whiteout, Bpos::new(ROOT, h + 1, SNAP), 0, 0, &[]);
        assert_eq!(lookup(&fs, &sv, &dir, b"target"), Ok(None));
        // An entry of another snapshot in the chain is a hole too.
        fs.keys.remove(&(BtreeId::Dirents as u8, Bpos::new(ROOT, h + 1, SNAP)));
        let mut buf = [0u8; 64];
        let n = encode_dirent(&mut buf, 5009, DT_REG, b"zzz").unwrap();
        fs.put(BtreeId::Dirents, KeyType::Dirent, Bpos::new(ROOT, h + 1, 5), 0, 0, &buf[..n]);
        assert_eq!(lookup(&fs, &sv, &dir, b"target"), Ok(None));
        // Names that are not there.
        assert_eq!(lookup(&fs, &sv, &dir, b"other"), Ok(None));
        assert_eq!(lookup(&fs, &sv, &dir, b""), Ok(None));
    }
}

#[test]
fn lookup_name_lengths_and_utf8() {
    let (mut fs, dir) = dir_fs(3);
    let n255 = vec![b'x'; 255];
    let n512 = vec![b'y'; 512];
    let utf8 = "répertoire-日本語-😀".as_bytes();
    insert_hashed(&mut fs, &dir, &n255, 6000);
    insert_hashed(&mut fs, &dir, &n512, 6001);
    insert_hashed(&mut fs, &dir, utf8, 6002);
    let sv = root_sv();
    assert_eq!(lookup(&fs, &sv, &dir, &n255), Ok(Some((6000, DT_REG))));
    assert_eq!(lookup(&fs, &sv, &dir, &n512), Ok(Some((6001, DT_REG))));
    assert_eq!(lookup(&fs, &sv, &dir, utf8), Ok(Some((6002, DT_REG))));
    assert_eq!(lookup(&fs, &sv, &dir, &n255[..254]), Ok(None));
    assert_eq!(lookup(&fs, &sv, &dir, &vec![b'z'; 513]), Err(Errno::ENAMETOOLONG));
    let names: StdVec<StdVec<u8>> = collect_dir(&fs, &dir, 0).into_iter().map(|e| e.0).collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&n255) && names.contains(&n512) && names.contains(&utf8.to_vec()));
}

#[test]
fn lookup_many_names_at_real_hashes() {
    for hash_type in [0u8, 1, 3] {
        let (mut fs, dir) = dir_fs(hash_type);
        for i in 0..400u64 {
            insert_hashed(&mut fs, &dir, std::format!("file-{i}").as_bytes(), 10_000 + i);
        }
        let sv = root_sv();
        for i in 0..400u64 {
            assert_eq!(lookup(&fs, &sv, &dir, std::format!("file-{i}").as_bytes()), Ok(Some((10_000 + i, DT_REG))));
        }
        assert_eq!(lookup(&fs, &sv, &dir, b"file-400"), Ok(None));
    }
}

#[test]
fn lookup_siphash_old_and_bad_hash_types() {
    let (fs, mut dir) = dir_fs(3);
    dir.hash_type = 2;
    assert_eq!(lookup(&fs, &root_sv(), &dir, b"a"), Err(Errno::EOPNOTSUPP));
    dir.hash_type = 9;
    assert_eq!(lookup(&fs, &root_sv(), &dir, b"a"), Err(Errno::EUCLEAN));
}

#[test]
fn subvolume_entries() {
    let (mut fs, dir) = dir_fs(3);
    put_subvol(&mut fs, 2, 100, 7000);
    let info = dir_hash_info(&dir).unwrap();
    let mut buf = [0u8; 64];
    // d_child_subvol 2, d_parent_subvol 1.
    let n = encode_dirent(&mut buf, (1u64 << 32) | 2, DT_SUBVOL, b"sub").unwrap();
    fs.put(BtreeId::Dirents, KeyType::Dirent, Bpos::new(ROOT, info.dirent_hash(b"sub"), SNAP), 0, 0, &buf[..n]);
    // Made in another subvolume (parent 9): invisible here.
    let n = encode_dirent(&mut buf, (9u64 << 32) | 2, DT_SUBVOL, b"elsewhere").unwrap();
    fs.put(BtreeId::Dirents, KeyType::Dirent, Bpos::new(ROOT, info.dirent_hash(b"elsewhere"), SNAP), 0, 0, &buf[..n]);
    let sv = root_sv();
    assert_eq!(lookup(&fs, &sv, &dir, b"sub"), Ok(Some((7000, DT_DIR))));
    let t = lookup_entry(&fs, &sv, &dir, b"sub").unwrap().unwrap();
    assert_eq!((t.inum, t.subvol, t.d_type), (7000, 2, DT_SUBVOL));
    assert_eq!(lookup(&fs, &sv, &dir, b"elsewhere"), Ok(None));
    let ents = collect_dir(&fs, &dir, 0);
    assert_eq!(ents.len(), 1);
    assert_eq!((&ents[0].0[..], ents[0].1, ents[0].2), (&b"sub"[..], 7000, DT_DIR));
    // A subvolume entry whose subvolume is missing.
    let n = encode_dirent(&mut buf, (1u64 << 32) | 3, DT_SUBVOL, b"gone").unwrap();
    fs.put(BtreeId::Dirents, KeyType::Dirent, Bpos::new(ROOT, info.dirent_hash(b"gone"), SNAP), 0, 0, &buf[..n]);
    assert_eq!(lookup(&fs, &sv, &dir, b"gone"), Err(Errno::EUCLEAN));
}

#[test]
fn readdir_resumes_from_every_position() {
    let (mut fs, dir) = dir_fs(3);
    let mut slots = StdVec::new();
    for i in 0..150u64 {
        slots.push(insert_hashed(&mut fs, &dir, std::format!("entry-{i:03}").as_bytes(), 20_000 + i));
    }
    // Noise the listing must skip: hash whiteouts, another snapshot, the
    // next directory's entries.
    fs.put(BtreeId::Dirents, KeyType::HashWhiteout, Bpos::new(ROOT, 3, SNAP), 0, 0, &[]);
    let mut buf = [0u8; 64];
    let n = encode_dirent(&mut buf, 1, DT_REG, b"other-snap").unwrap();
    fs.put(BtreeId::Dirents, KeyType::Dirent, Bpos::new(ROOT, 5, 9), 0, 0, &buf[..n]);
    put_dirent(&mut fs, ROOT + 1, 10, b"next-dir", 1, DT_REG);

    let all = collect_dir(&fs, &dir, 0);
    assert_eq!(all.len(), 150);
    slots.sort_unstable();
    let offsets: StdVec<u64> = all.iter().map(|e| e.3 - 1).collect();
    assert_eq!(offsets, slots, "hash order");
    assert_eq!(collect_dir(&fs, &dir, 2).len(), 150);
    // Resuming from each entry's next_pos lists exactly the rest.
    for (i, e) in all.iter().enumerate() {
        let rest = collect_dir(&fs, &dir, e.3);
        assert_eq!(rest[..], all[i + 1..]);
    }
    // One entry per call, as a VFS with a tiny buffer would.
    let mut pos = 2;
    let mut seen = StdVec::new();
    loop {
        let mut got = None;
        readdir(&fs, &root_sv(), &dir, pos, &mut |e| {
            if got.is_some() {
                return false;
            }
            got = Some((e.name.to_vec(), e.next_pos));
            true
        })
        .unwrap();
        let Some((name, next)) = got else { break };
        seen.push(name);
        pos = next;
    }
    assert_eq!(seen.len(), 150);
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 150);
}

// ---------------------------------------------------------------------
// File data

/// Recognisable, compressible content: every 512-byte sector names itself.
fn pattern(tag: u8, sectors: usize) -> StdVec<u8> {
    let mut v = StdVec::with_capacity(sectors * 512);
    for s in 0..sectors {
        let line = std::format!("[{tag} sector {s:05}] the quick brown fox jumps over the lazy dog\n");
        let mut sec: StdVec<u8> = line.bytes().cycle().take(512).collect();
        sec[511] = tag ^ s as u8;
        v.extend_from_slice(&sec);
    }
    v
}

fn pad512(mut v: StdVec<u8>) -> StdVec<u8> {
    v.resize(v.len().div_ceil(512).max(1) * 512, 0);
    v
}

fn compress(ty: CompressionType, data: &[u8]) -> StdVec<u8> {
    match ty {
        CompressionType::Lz4 | CompressionType::Lz4Old => pad512(lz4_flex::block::compress(data)),
        CompressionType::Zstd => {
            let z = zstd::bulk::compress(data, 3).unwrap();
            let mut v = (z.len() as u32).to_le_bytes().to_vec();
            v.extend_from_slice(&z);
            pad512(v)
        }
        CompressionType::Gzip => {
            let mut e = flate2::write::DeflateEncoder::new(StdVec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            pad512(e.finish().unwrap())
        }
        _ => data.to_vec(),
    }
}

/// Builds a file extent by extent; `content` is what reads must return.
struct FileBuilder {
    inum: u64,
    content: StdVec<u8>,
    next_dev_sector: u64,
    ver: u64,
}

impl FileBuilder {
    fn new(inum: u64) -> FileBuilder {
        FileBuilder { inum, content: StdVec::new(), next_dev_sector: 64, ver: 1 }
    }

    fn sector(&self) -> u64 {
        (self.content.len() / 512) as u64
    }

    fn put_extent(&mut self, fs: &mut MemFs, size: u32, entries: &[ExtentEntry]) {
        let mut val = [0u8; 256];
        let n = encode_entries(entries, &mut val).unwrap();
        let end = self.sector() + u64::from(size);
        self.ver += 1;
        fs.put(BtreeId::Extents, KeyType::Extent, Bpos::new(self.inum, end, SNAP), size, self.ver, &val[..n]);
    }

    fn alloc(&mut self, sectors: usize) -> u64 {
        let s = self.next_dev_sector;
        self.next_dev_sector += sectors as u64 + 8;
        s
    }

    /// A plain extent of `sectors`.
    fn plain(&mut self, fs: &mut MemFs, sectors: usize, tag: u8) {
        let data = pattern(tag, sectors);
        let at = self.alloc(sectors);
        fs.write_dev(at, &data);
        self.put_extent(fs, sectors as u32, &[ExtentEntry::Ptr(ExtentPtr { offset: at, ..Default::default() })]);
        self.content.extend_from_slice(&data);
    }

    fn hole(&mut self, sectors: usize) {
        self.content.resize(self.content.len() + sectors * 512, 0);
    }

    fn reservation(&mut self, fs: &mut MemFs, sectors: usize) {
        let end = self.sector() + sectors as u64;
        fs.put(BtreeId::Extents, KeyType::Reservation, Bpos::new(self.inum, end, SNAP), sectors as u32, 1, &[0, 0, 0, 0, 1, 0, 0, 0]);
        self.hole(sectors);
    }

    /// An encoded extent: `written` sectors of data compressed with
    /// `comp` and checksummed with `csum`, of which `live` sectors from
    /// `front` are the file's (a front-trimmed extent when `front` > 0).
    #[allow(clippy::too_many_arguments)]
    fn encoded(
        &mut self,
        fs: &mut MemFs,
        kind: CrcKind,
        comp: CompressionType,
        csum: CsumType,
        written: usize,
        front: usize,
        live: usize,
        tag: u8,
    ) {
        let data = pattern(tag, written);
        let disk = compress(comp, &data);
        let at = self.alloc(disk.len() / 512);
        fs.write_dev(at, &disk);
        let crc = ExtentCrc {
            kind,
            compressed_size: (disk.len() / 512) as u32,
            uncompressed_size: written as u32,
            offset: front as u32,
            nonce: 0,
            csum_type: csum as u8,
            compression_type: comp as u8,
            csum: checksum(csum, &disk).unwrap(),
        };
        let ptr = ExtentPtr { offset: at, ..Default::default() };
        self.put_extent(fs, live as u32, &[ExtentEntry::Crc(crc), ExtentEntry::Ptr(ptr)]);
        self.content.extend_from_slice(&data[front * 512..(front + live) * 512]);
    }
}

/// A file of plain, hole, checksummed, compressed and reserved parts; the
/// size ends 100 bytes into its last sector.
fn mixed_file(fs: &mut MemFs) -> (InodeAttrs, StdVec<u8>) {
    let mut b = FileBuilder::new(5000);
    b.plain(fs, 8, 1);
    b.hole(4);
    b.encoded(fs, CrcKind::Crc32, CompressionType::None, CsumType::Crc32c, 12, 2, 8, 2);
    b.encoded(fs, CrcKind::Crc32, CompressionType::Lz4, CsumType::Crc32c, 16, 3, 9, 3);
    b.reservation(fs, 4);
    b.encoded(fs, CrcKind::Crc64, CompressionType::Zstd, CsumType::Xxhash, 24, 5, 11, 4);
    b.encoded(fs, CrcKind::Crc128, CompressionType::Gzip, CsumType::Crc64, 20, 1, 7, 5);
    b.encoded(fs, CrcKind::Crc32, CompressionType::Lz4Old, CsumType::None, 8, 0, 8, 6);
    b.encoded(fs, CrcKind::Crc64, CompressionType::Incompressible, CsumType::Crc32cNonzero, 8, 4, 4, 7);
    b.plain(fs, 3, 8);
    let size = b.content.len() as u64 - 512 + 100;
    put_inode(fs, &file_inode(5000, size));
    let mut content = b.content;
    content.truncate(size as usize);
    (inode_get(fs, &root_sv(), 5000).unwrap(), content)
}

fn read_all(fs: &MemFs, inode: &InodeAttrs, len: usize, chunk: usize) -> StdVec<u8> {
    let mut out = vec![0x55u8; len];
    let mut cache = ExtentCache::default();
    for (i, c) in out.chunks_mut(chunk).enumerate() {
        read_data(fs, &root_sv(), inode, (i * chunk) as u64, c, &mut cache).unwrap();
    }
    out
}

#[test]
fn reads_every_kind_of_extent() {
    let mut fs = MemFs::new();
    let (inode, content) = mixed_file(&mut fs);
    let len = content.len().div_ceil(4096) * 4096 + 8192;
    let mut want = content.clone();
    want.resize(len, 0);
    for chunk in [512, 1024, 4096, 3 * 512, 65536, len] {
        let got = read_all(&fs, &inode, len, chunk.min(len));
        assert!(got == want, "chunk {chunk}: first difference at byte {:?}", got.iter().zip(&want).position(|(a, b)| a != b));
    }
}

/// `read_data_segs` into buffers of uneven sizes (folios of a readahead
/// request) gives what one buffer does, with the reads of a call batched.
#[test]
fn reads_into_segments() {
    let mut fs = MemFs::new();
    let (inode, content) = mixed_file(&mut fs);
    let len = content.len().div_ceil(4096) * 4096 + 8192;
    let mut want = content.clone();
    want.resize(len, 0);
    for seg in [512usize, 4096, 3 * 512, 16384] {
        for start in [0usize, 512, 4096] {
            let mut bufs: StdVec<StdVec<u8>> = StdVec::new();
            let mut left = len - start;
            while left > 0 {
                let n = seg.min(left);
                bufs.push(vec![0x55u8; n]);
                left -= n;
            }
            let mut segs: StdVec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
            let mut cache = ExtentCache::default();
            read_data_segs(&fs, &root_sv(), &inode, start as u64, &mut segs, &mut cache).unwrap();
            let got: StdVec<u8> = bufs.concat();
            assert!(got[..] == want[start..], "seg {seg} start {start}: first difference at byte {:?}", got.iter().zip(&want[start..]).position(|(a, b)| a != b));
        }
    }
}

/// Whole uncompressed checksummed extents a call wants all of are read
/// straight into the output and verified there (types computed piece by
/// piece), or through a buffer (xxhash); a corrupt one is `EIO`.
#[test]
fn whole_checksummed_extents_read_in_place() {
    let mut fs = MemFs::new();
    let mut b = FileBuilder::new(5010);
    b.encoded(&mut fs, CrcKind::Crc32, CompressionType::None, CsumType::Crc32c, 8, 0, 8, 1);
    b.encoded(&mut fs, CrcKind::Crc64, CompressionType::None, CsumType::Crc64Nonzero, 16, 0, 16, 2);
    b.encoded(&mut fs, CrcKind::Crc64, CompressionType::None, CsumType::Xxhash, 8, 0, 8, 3);
    b.encoded(&mut fs, CrcKind::Crc32, CompressionType::None, CsumType::Crc32cNonzero, 8, 0, 8, 4);
    b.plain(&mut fs, 4, 5);
    let content = b.content.clone();
    put_inode(&mut fs, &file_inode(5010, content.len() as u64));
    let inode = inode_get(&fs, &root_sv(), 5010).unwrap();
    let read_segs = |fs: &MemFs, seg: usize| {
        let mut bufs: StdVec<StdVec<u8>> = content.chunks(seg).map(|c| vec![0x55u8; c.len()]).collect();
        let mut segs: StdVec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        let r = read_data_segs(fs, &root_sv(), &inode, 0, &mut segs, &mut ExtentCache::default());
        r.map(|()| bufs.concat())
    };
    for seg in [512usize, 4096, 3 * 512] {
        assert!(read_segs(&fs, seg).unwrap() == content, "seg {seg}");
    }
    // Corrupt the second extent (file sectors 8..24): the call fails.
    let k = fs.keys.get(&(BtreeId::Extents as u8, Bpos::new(5010, 24, SNAP))).unwrap();
    let ptr = match crate::format::val::extent::ExtentEntries::new(&k.1).nth(1) {
        Some(Ok(ExtentEntry::Ptr(p))) => p,
        e => panic!("{e:?}"),
    };
    fs.dev[ptr.offset as usize * 512 + 5000] ^= 1;
    assert_eq!(read_segs(&fs, 4096), Err(Errno::EIO));
    // The other extents still read on their own.
    let mut buf = vec![0u8; 4096];
    read_data(&fs, &root_sv(), &inode, 0, &mut buf, &mut ExtentCache::default()).unwrap();
    assert!(buf[..] == content[..4096]);
    read_data(&fs, &root_sv(), &inode, 24 * 512, &mut buf, &mut ExtentCache::default()).unwrap();
    assert!(buf[..] == content[24 * 512..24 * 512 + 4096]);
}

#[test]
fn reads_at_every_sector_offset() {
    let mut fs = MemFs::new();
    let (inode, content) = mixed_file(&mut fs);
    let sectors = content.len().div_ceil(512);
    let mut want = content.clone();
    want.resize(sectors * 512 + 4096, 0);
    let mut cache = ExtentCache::default();
    for s in 0..sectors {
        for n in [1usize, 2, 5, 8] {
            let mut buf = vec![0x77u8; n * 512];
            read_data(&fs, &root_sv(), &inode, s as u64 * 512, &mut buf, &mut cache).unwrap();
            assert!(buf[..] == want[s * 512..(s + n) * 512], "sector {s} len {n}");
        }
    }
}

#[test]
fn past_eof_is_zero_even_where_the_device_has_data() {
    let mut fs = MemFs::new();
    let mut b = FileBuilder::new(5000);
    b.plain(&mut fs, 8, 1);
    // The extent goes on past the size.
    put_inode(&mut fs, &file_inode(5000, 1000));
    let inode = inode_get(&fs, &root_sv(), 5000).unwrap();
    let got = read_all(&fs, &inode, 8192, 4096);
    assert_eq!(got[..1000], b.content[..1000]);
    assert!(got[1000..].iter().all(|&x| x == 0));
    let mut buf = vec![1u8; 512];
    read_data(&fs, &root_sv(), &inode, 1 << 40, &mut buf, &mut ExtentCache::default()).unwrap();
    assert!(buf.iter().all(|&x| x == 0));
}

#[test]
fn unaligned_reads_are_einval() {
    let mut fs = MemFs::new();
    let (inode, _) = mixed_file(&mut fs);
    let mut c = ExtentCache::default();
    assert_eq!(read_data(&fs, &root_sv(), &inode, 100, &mut [0u8; 512], &mut c), Err(Errno::EINVAL));
    assert_eq!(read_data(&fs, &root_sv(), &inode, 0, &mut [0u8; 100], &mut c), Err(Errno::EINVAL));
}

#[test]
fn inline_data_and_symlinks() {
    let mut fs = MemFs::new();
    let text = b"small file contents\n";
    fs.put(BtreeId::Extents, KeyType::InlineData, Bpos::new(5000, 8, SNAP), 8, 1, text);
    put_inode(&mut fs, &file_inode(5000, text.len() as u64));
    let inode = inode_get(&fs, &root_sv(), 5000).unwrap();
    let got = read_all(&fs, &inode, 4096, 4096);
    assert_eq!(&got[..text.len()], text);
    assert!(got[text.len()..].iter().all(|&x| x == 0));

    // A symlink with a NUL inside i_size (C writes the target alone,
    // i_size = its length; readlink stops at a NUL either way).
    let target = b"../some/where/else";
    let mut data = target.to_vec();
    data.push(0);
    fs.put(BtreeId::Extents, KeyType::InlineData, Bpos::new(5001, 8, SNAP), 8, 1, &data);
    let mut u = file_inode(5001, data.len() as u64);
    u.mode = 0o120777;
    put_inode(&mut fs, &u);
    let link = inode_get(&fs, &root_sv(), 5001).unwrap();
    let mut out = crate::platform::Vec::new();
    readlink(&fs, &root_sv(), &link, &mut out).unwrap();
    assert_eq!(&out[..], target);

    // A long target stored in a checksummed extent.
    let mut fsb = FileBuilder::new(5002);
    let long: StdVec<u8> = (0..3000).map(|i| b'a' + (i % 26) as u8).collect();
    let mut disk = long.clone();
    disk.push(0);
    let disk = pad512(disk);
    let at = fsb.alloc(disk.len() / 512);
    fs.write_dev(at, &disk);
    let crc = ExtentCrc {
        kind: CrcKind::Crc32,
        compressed_size: 6,
        uncompressed_size: 6,
        offset: 0,
        nonce: 0,
        csum_type: CsumType::Crc32c as u8,
        compression_type: 0,
        csum: checksum(CsumType::Crc32c, &disk).unwrap(),
    };
    fsb.put_extent(&mut fs, 6, &[ExtentEntry::Crc(crc), ExtentEntry::Ptr(ExtentPtr { offset: at, ..Default::default() })]);
    put_inode(&mut fs, &file_inode(5002, long.len() as u64 + 1));
    let link = inode_get(&fs, &root_sv(), 5002).unwrap();
    readlink(&fs, &root_sv(), &link, &mut out).unwrap();
    assert_eq!(&out[..], &long[..]);
    // No NUL within the size: cut at the size.
    put_inode(&mut fs, &file_inode(5002, 10));
    let link = inode_get(&fs, &root_sv(), 5002).unwrap();
    readlink(&fs, &root_sv(), &link, &mut out).unwrap();
    assert_eq!(&out[..], &long[..10]);
}

#[test]
fn corrupt_data_is_eio_and_does_not_poison_the_cache() {
    let mut fs = MemFs::new();
    let (inode, content) = mixed_file(&mut fs);
    // The checksummed extent covers file sectors 12..20; its data starts
    // at the device sector of its pointer.
    let k = fs.keys.get(&(BtreeId::Extents as u8, Bpos::new(5000, 20, SNAP))).unwrap();
    let ptr = match crate::format::val::extent::ExtentEntries::new(&k.1).nth(1) {
        Some(Ok(ExtentEntry::Ptr(p))) => p,
        e => panic!("{e:?}"),
    };
    let saved = fs.dev[ptr.offset as usize * 512 + 700];
    fs.dev[ptr.offset as usize * 512 + 700] ^= 0x40;
    let mut cache = ExtentCache::default();
    let mut buf = vec![0u8; 4096];
    assert_eq!(read_data(&fs, &root_sv(), &inode, 12 * 512, &mut buf, &mut cache), Err(Errno::EIO));
    assert_eq!(cache.tag, None);
    // The rest of the file still reads.
    read_data(&fs, &root_sv(), &inode, 0, &mut buf, &mut cache).unwrap();
    assert!(buf[..] == content[..4096]);
    read_data(&fs, &root_sv(), &inode, 20 * 512, &mut buf, &mut cache).unwrap();
    assert!(buf[..] == content[20 * 512..20 * 512 + 4096]);
    // Repaired, it reads again.
    fs.dev[ptr.offset as usize * 512 + 700] = saved;
    read_data(&fs, &root_sv(), &inode, 12 * 512, &mut buf, &mut cache).unwrap();
    assert!(buf[..] == content[12 * 512..20 * 512]);

    // Compressed data that does not decompress, with a matching checksum.
    let mut b = FileBuilder::new(5005);
    let junk = vec![0xffu8; 1024];
    let at = b.alloc(2);
    fs.write_dev(at, &junk);
    let crc = ExtentCrc {
        kind: CrcKind::Crc32,
        compressed_size: 2,
        uncompressed_size: 8,
        offset: 0,
        nonce: 0,
        csum_type: CsumType::Crc32c as u8,
        compression_type: CompressionType::Lz4 as u8,
        csum: checksum(CsumType::Crc32c, &junk).unwrap(),
    };
    b.put_extent(&mut fs, 8, &[ExtentEntry::Crc(crc), ExtentEntry::Ptr(ExtentPtr { offset: at, ..Default::default() })]);
    put_inode(&mut fs, &file_inode(5005, 4096));
    let i5 = inode_get(&fs, &root_sv(), 5005).unwrap();
    assert_eq!(read_data(&fs, &root_sv(), &i5, 0, &mut buf, &mut cache), Err(Errno::EIO));
}

#[test]
fn the_cache_decodes_each_extent_once() {
    let mut fs = MemFs::new();
    let mut b = FileBuilder::new(5000);
    b.encoded(&mut fs, CrcKind::Crc64, CompressionType::Zstd, CsumType::Crc32c, 128, 0, 128, 9);
    put_inode(&mut fs, &file_inode(5000, 128 * 512));
    let inode = inode_get(&fs, &root_sv(), 5000).unwrap();
    let before = fs.reads.get();
    let got = read_all(&fs, &inode, 128 * 512, 4096);
    assert_eq!(got, b.content);
    assert_eq!(fs.reads.get() - before, 1, "one device read for 16 folios");
    // Plain extents are read directly, piece by piece.
    let mut p = FileBuilder::new(5001);
    p.plain(&mut fs, 16, 3);
    put_inode(&mut fs, &file_inode(5001, 16 * 512));
    let inode = inode_get(&fs, &root_sv(), 5001).unwrap();
    let before = fs.reads.get();
    assert_eq!(read_all(&fs, &inode, 16 * 512, 4096), p.content);
    assert_eq!(fs.reads.get() - before, 2);
}

#[test]
fn sequential_reads_go_through_the_read_ahead_window() {
    let mut fs = MemFs::new();
    let mut b = FileBuilder::new(5000);
    for i in 0..32 {
        b.encoded(&mut fs, CrcKind::Crc32, CompressionType::None, CsumType::Crc32c, 16, 0, 16, i);
    }
    let len = b.content.len();
    put_inode(&mut fs, &file_inode(5000, len as u64));
    let inode = inode_get(&fs, &root_sv(), 5000).unwrap();
    let before = fs.reads.get();
    assert_eq!(read_all(&fs, &inode, len, 4096), b.content);
    // 32 extents of 8 KiB, 8 KiB apart: the first alone, the rest from
    // one or two 512 KiB windows.
    let reads = fs.reads.get() - before;
    assert!(reads <= 3, "{reads} device reads for 32 extents");

    // Checksums are still verified extent by extent: a bad byte inside
    // the window is EIO for its extent only.
    let k = fs.keys.get(&(BtreeId::Extents as u8, Bpos::new(5000, 16 * 20, SNAP))).unwrap();
    let ptr = match crate::format::val::extent::ExtentEntries::new(&k.1).nth(1) {
        Some(Ok(ExtentEntry::Ptr(p))) => p,
        e => panic!("{e:?}"),
    };
    fs.dev[ptr.offset as usize * 512 + 100] ^= 1;
    let mut cache = ExtentCache::default();
    let mut buf = vec![0u8; 4096];
    for i in 0..len / 4096 {
        let r = read_data(&fs, &root_sv(), &inode, (i * 4096) as u64, &mut buf, &mut cache);
        if i / 2 == 19 {
            assert_eq!(r, Err(Errno::EIO), "extent 19");
        } else {
            r.unwrap();
            assert!(buf[..] == b.content[i * 4096..(i + 1) * 4096], "chunk {i}");
        }
    }
}

#[test]
fn pointers_unwritten_cached_missing_and_encrypted() {
    let mut fs = MemFs::new();
    let data = pattern(1, 8);
    fs.write_dev(100, &data);
    fs.write_dev(200, &pattern(2, 8));
    let put = |fs: &mut MemFs, inum: u64, entries: &[ExtentEntry]| {
        let mut val = [0u8; 128];
        let n = encode_entries(entries, &mut val).unwrap();
        fs.put(BtreeId::Extents, KeyType::Extent, Bpos::new(inum, 8, SNAP), 8, 1, &val[..n]);
        put_inode(fs, &file_inode(inum, 4096));
    };
    let p = |offset: u64, dev: u8, cached: bool, unwritten: bool| ExtentPtr { offset, dev, cached, unwritten, gen: 0 };
    // A cached copy first, then the dirty one: the dirty one is read.
    put(&mut fs, 5000, &[ExtentEntry::Ptr(p(200, 1, true, false)), ExtentEntry::Ptr(p(100, 0, false, false))]);
    // Unwritten: zeros.
    put(&mut fs, 5001, &[ExtentEntry::Ptr(p(100, 0, false, true))]);
    // Only a pointer to a device we do not have.
    put(&mut fs, 5002, &[ExtentEntry::Ptr(p(100, 3, false, false))]);
    // Encrypted.
    let crc = ExtentCrc {
        kind: CrcKind::Crc128,
        compressed_size: 8,
        uncompressed_size: 8,
        offset: 0,
        nonce: 0,
        csum_type: CsumType::Chacha20Poly1305_128 as u8,
        compression_type: 0,
        csum: Csum::default(),
    };
    put(&mut fs, 5003, &[ExtentEntry::Crc(crc), ExtentEntry::Ptr(p(100, 0, false, false))]);
    // An error key.
    fs.put(BtreeId::Extents, KeyType::Error, Bpos::new(5004, 8, SNAP), 8, 1, &[]);
    put_inode(&mut fs, &file_inode(5004, 4096));
    // A value with a bad entry.
    fs.put(BtreeId::Extents, KeyType::Extent, Bpos::new(5006, 8, SNAP), 8, 1, &[0u8; 8]);
    put_inode(&mut fs, &file_inode(5006, 4096));

    let sv = root_sv();
    let mut c = ExtentCache::default();
    let mut buf = vec![0u8; 4096];
    let rd = |inum: u64, buf: &mut [u8], c: &mut ExtentCache| {
        let inode = inode_get(&fs, &sv, inum).unwrap();
        read_data(&fs, &sv, &inode, 0, buf, c)
    };
    rd(5000, &mut buf, &mut c).unwrap();
    assert_eq!(buf, data);
    rd(5001, &mut buf, &mut c).unwrap();
    assert!(buf.iter().all(|&x| x == 0));
    assert_eq!(rd(5002, &mut buf, &mut c), Err(Errno::EOPNOTSUPP));
    assert_eq!(rd(5003, &mut buf, &mut c), Err(Errno::EOPNOTSUPP));
    assert_eq!(rd(5004, &mut buf, &mut c), Err(Errno::EIO));
    assert_eq!(rd(5006, &mut buf, &mut c), Err(Errno::EIO));
}

#[test]
fn reflinked_data_is_followed() {
    let mut fs = MemFs::new();
    // Indirect extent at reflink offsets 1000..1016: zstd, 4 sectors
    // trimmed at the front.
    let written = pattern(4, 20);
    let disk = compress(CompressionType::Zstd, &written);
    fs.write_dev(300, &disk);
    let crc = ExtentCrc {
        kind: CrcKind::Crc64,
        compressed_size: (disk.len() / 512) as u32,
        uncompressed_size: 20,
        offset: 4,
        nonce: 0,
        csum_type: CsumType::Crc32c as u8,
        compression_type: CompressionType::Zstd as u8,
        csum: checksum(CsumType::Crc32c, &disk).unwrap(),
    };
    let mut val = [0u8; 128];
    val[..8].copy_from_slice(&1u64.to_le_bytes()); // refcount
    let n = encode_entries(&[ExtentEntry::Crc(crc), ExtentEntry::Ptr(ExtentPtr { offset: 300, ..Default::default() })], &mut val[8..]).unwrap();
    fs.put(BtreeId::Reflink, KeyType::ReflinkV, Bpos::new(0, 1016, 0), 16, 3, &val[..8 + n]);
    // An indirect inline extent at 2000..2008.
    let mut iv = 1u64.to_le_bytes().to_vec();
    iv.extend_from_slice(b"indirect inline");
    fs.put(BtreeId::Reflink, KeyType::IndirectInlineData, Bpos::new(0, 2008, 0), 8, 3, &iv);
    // File: sectors 0..8 -> reflink 1004..1012, 8..16 -> 2000..2008,
    // 16..24 -> 1012..1020 (past the indirect extent's end at 1016: only
    // 4 sectors there, then nothing: EIO).
    let rp = |idx: u64| {
        let mut v = idx.to_le_bytes().to_vec();
        v.extend_from_slice(&[0u8; 8]);
        v
    };
    fs.put(BtreeId::Extents, KeyType::ReflinkP, Bpos::new(5000, 8, SNAP), 8, 1, &rp(1004));
    fs.put(BtreeId::Extents, KeyType::ReflinkP, Bpos::new(5000, 16, SNAP), 8, 1, &rp(2000));
    fs.put(BtreeId::Extents, KeyType::ReflinkP, Bpos::new(5000, 24, SNAP), 8, 1, &rp(1012));
    put_inode(&mut fs, &file_inode(5000, 24 * 512));
    let inode = inode_get(&fs, &root_sv(), 5000).unwrap();
    let mut c = ExtentCache::default();
    let mut buf = vec![0u8; 4096];
    read_data(&fs, &root_sv(), &inode, 0, &mut buf, &mut c).unwrap();
    // Reflink 1004 is 4 sectors into the indirect extent, whose live data
    // starts 4 sectors into what was written.
    assert!(buf[..] == written[8 * 512..16 * 512]);
    read_data(&fs, &root_sv(), &inode, 8 * 512, &mut buf, &mut c).unwrap();
    assert_eq!(&buf[..15], b"indirect inline");
    assert!(buf[15..].iter().all(|&x| x == 0));
    let mut two = vec![0u8; 2048];
    read_data(&fs, &root_sv(), &inode, 16 * 512, &mut two, &mut c).unwrap();
    assert_eq!(two[..], written[16 * 512..20 * 512]);
    assert_eq!(read_data(&fs, &root_sv(), &inode, 20 * 512, &mut two, &mut c), Err(Errno::EIO));
}

#[test]
fn other_snapshots_extents_are_ignored() {
    let mut fs = MemFs::new();
    fs.write_dev(100, &pattern(1, 8));
    let mut val = [0u8; 8];
    encode_entries(&[ExtentEntry::Ptr(ExtentPtr { offset: 100, ..Default::default() })], &mut val).unwrap();
    fs.put(BtreeId::Extents, KeyType::Extent, Bpos::new(5000, 8, 5), 8, 1, &val);
    put_inode(&mut fs, &file_inode(5000, 4096));
    let inode = inode_get(&fs, &root_sv(), 5000).unwrap();
    assert!(read_all(&fs, &inode, 4096, 4096).iter().all(|&x| x == 0));
}

// ---------------------------------------------------------------------
// statfs

fn acc_pos(bytes: &[u8]) -> Bpos {
    let mut b = [0u8; 20];
    b[..bytes.len()].copy_from_slice(bytes);
    Bpos::from_bytes(&b)
}

#[test]
fn statfs_from_accounting() {
    let mut fs = MemFs::new();
    fs.facts.capacity_sectors = 1_000_000;
    fs.facts.bucket_sectors = 256;
    let acc = |fs: &mut MemFs, pos: &[u8], v: &[u64]| {
        let val: StdVec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        fs.put(BtreeId::Accounting, KeyType::Accounting, acc_pos(pos), 0, 1, &val);
    };
    acc(&mut fs, &[0], &[42]); // nr_inodes
    acc(&mut fs, &[1, 2], &[100]); // persistent_reserved x2
    acc(&mut fs, &[2, 3, 1, 1, 0], &[3000]); // btree
    acc(&mut fs, &[2, 4, 1, 1, 0], &[50_000]); // user
    acc(&mut fs, &[2, 5, 1, 1, 0], &[7]); // cached: not used
    acc(&mut fs, &[3, 0, 1], &[2, 512, 0]); // sb buckets
    acc(&mut fs, &[3, 0, 2], &[8, 2048, 0]); // journal buckets
    acc(&mut fs, &[3, 0, 4], &[100, 50_000, 0]); // user buckets: not hidden
    acc(&mut fs, &[6, 2, 0, 0, 0], &[9]); // per-btree: not used
    let u = fs_usage_read(&fs, 256).unwrap();
    assert_eq!(u, FsUsage { hidden: 10 * 256, btree: 3000, data: 50_000, cached: 7, reserved: 200, nr_inodes: 42 });
    let s = statfs(&fs, &fs.facts).unwrap();
    let capacity = 1_000_000 - 2560;
    let used = 53_000 + 200 + 4; // reserve_factor(200) = 200 + ceil(200/64)
    let free = capacity - used;
    assert_eq!(s.block_bytes, 4096);
    assert_eq!(s.blocks, capacity >> 3);
    assert_eq!(s.bfree, free >> 3);
    assert_eq!(s.bavail, (free * 64 / 65) >> 3);
    assert_eq!(s.ffree, free << 3);
    assert_eq!(s.files, s.ffree, "6.12 never counts nr_inodes into usage");
    assert_eq!(s.namelen, 512);
    // Full: used is capped at the capacity.
    acc(&mut fs, &[2, 4, 1, 1, 0], &[u64::MAX / 2]);
    let s = statfs(&fs, &fs.facts).unwrap();
    assert_eq!((s.bfree, s.bavail, s.ffree), (0, 0, 0));
    // No accounting at all.
    let empty = MemFs::new();
    let s = statfs(&empty, &empty.facts).unwrap();
    assert_eq!(s.blocks, (1 << 20) >> 3);
    assert_eq!(s.bfree, s.blocks);
}

#[test]
fn capacity_as_recalc_capacity() {
    // 1 GiB, 256 KiB buckets (512 sectors), 256 KiB nodes: 28 reserve
    // buckets; device reserve (56 + 64 + 3) * 512 = 62976, doubled
    // 125952; 8% of 2096640 (buckets 1..4096) is 167731: the larger.
    let raw = (4096 - 1) * 512;
    assert_eq!(recalc_capacity(4096, 1, 512, 512, 8, 0), raw - raw * 8 / 100);
    // gc_reserve_bytes takes precedence; the device reserve wins here.
    assert_eq!(recalc_capacity(4096, 1, 512, 512, 8, 1 << 20), raw - 125_952);
    // Tiny: everything reserved.
    assert_eq!(recalc_capacity(8, 1, 512, 512, 8, 0), 0);
    // Garbage never panics.
    let _ = recalc_capacity(u64::MAX, u64::MAX, u32::MAX, 0, u8::MAX, 0);
}

// ---------------------------------------------------------------------
// Corrupt input never panics

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_keys_never_panic(
        vals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..6),
        tys in proptest::collection::vec(0u8..36, 6),
        sizes in proptest::collection::vec(0u32..40, 6),
        ends in proptest::collection::vec(0u64..48, 6),
        size in 0u64..30_000,
        off in 0u64..60,
    ) {
        let mut fs = MemFs::new();
        for (i, v) in vals.iter().enumerate() {
            let ty = KeyType::from_u8(tys[i]).unwrap_or(KeyType::Extent);
            fs.put(BtreeId::Extents, ty, Bpos::new(5000, ends[i], SNAP), sizes[i], i as u64, v);
            fs.put(BtreeId::Dirents, ty, Bpos::new(ROOT, ends[i], SNAP), 0, 0, v);
            fs.put(BtreeId::Reflink, ty, Bpos::new(0, ends[i], 0), sizes[i], 0, v);
            fs.put(BtreeId::Accounting, KeyType::Accounting, Bpos::new(i as u64, ends[i], 0), 0, 1, v);
        }
        let inode = InodeAttrs { inum: 5000, size, hash_type: 0, ..Default::default() };
        let mut buf = vec![0u8; 4096];
        let mut c = ExtentCache::default();
        let _ = read_data(&fs, &root_sv(), &inode, off * 512, &mut buf, &mut c);
        let _ = read_data(&fs, &root_sv(), &inode, off * 512, &mut buf[..512], &mut c);
        let mut out = crate::platform::Vec::new();
        let _ = readlink(&fs, &root_sv(), &inode, &mut out);
        let dir = InodeAttrs { inum: ROOT, hash_type: 0, ..Default::default() };
        let _ = lookup(&fs, &root_sv(), &dir, b"name");
        let _ = readdir(&fs, &root_sv(), &dir, 0, &mut |_| true);
        let _ = statfs(&fs, &fs.facts);
    }
}
