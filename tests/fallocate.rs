// SPDX-License-Identifier: GPL-2.0
//! `fallocate(2)` modes and `SEEK_DATA`/`SEEK_HOLE` on the write core
//! (`fs_common::io_misc`), against a byte model of the file with Linux's
//! semantics: random writes and fallocate calls on several files, the
//! file read back after each step, `check_fs` clean at the end (so
//! `bi_sectors`, `persistent_reserved` accounting and backpointers of
//! moved extents are exact), and the volume read the same after a clean
//! shutdown.

#[path = "common/volume.rs"]
mod volume;

use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::errcode::Errno;
use bcachefs_rs::fs_common::fs_ops::{create, NewInode};
use bcachefs_rs::fs_common::io_misc::*;
use bcachefs_rs::fs_common::io_write::write_data;
use bcachefs_rs::fs_common::{inode_get, read_data, root_subvol, BtreeRead, ExtentCache, Subvol};
use bcachefs_rs::fs_rw::{writepoint_hashed, BchFs, BchFsOpen, FsDataAlloc, SharedDev};
use bcachefs_rs::gc::check_fs;
use bcachefs_rs::platform::BlockDev;

const BLOCK: u64 = 4096;

fn read_all(r: &(impl BtreeRead + ?Sized), sv: &Subvol, inum: u64) -> Vec<u8> {
    let ino = inode_get(r, sv, inum).unwrap();
    let mut buf = vec![0u8; (ino.size as usize).next_multiple_of(512)];
    read_data(r, sv, &ino, 0, &mut buf, &mut ExtentCache::default()).unwrap();
    buf.truncate(ino.size as usize);
    buf
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 17
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Linux's result of `fallocate(mode, offset, len)` on `m`.
fn model(m: &mut Vec<u8>, mode: u32, offset: u64, len: u64) -> Result<(), Errno> {
    let (o, e) = (offset as usize, (offset + len) as usize);
    let size = m.len();
    match mode {
        0 | FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE | 0x11 => {
            if mode & FALLOC_FL_ZERO_RANGE != 0 {
                for b in m.iter_mut().take(e).skip(o) {
                    *b = 0;
                }
            }
            if mode & FALLOC_FL_KEEP_SIZE == 0 && e > size {
                m.resize(e, 0);
            }
        }
        0x03 => {
            for b in m.iter_mut().take(e).skip(o) {
                *b = 0;
            }
        }
        FALLOC_FL_COLLAPSE_RANGE => {
            if (offset | len) % BLOCK != 0 || e >= size {
                return Err(Errno::EINVAL);
            }
            m.drain(o..e);
        }
        FALLOC_FL_INSERT_RANGE => {
            if (offset | len) % BLOCK != 0 || o >= size {
                return Err(Errno::EINVAL);
            }
            m.splice(o..o, std::iter::repeat(0).take(len as usize));
        }
        _ => return Err(Errno::EOPNOTSUPP),
    }
    Ok(())
}

fn run<D: BlockDev + Send + Sync + 'static>(fs: &BchFs<D>, seed: u64, steps: usize) -> Vec<(u64, Vec<u8>)> {
    let sv = root_subvol(fs).unwrap();
    let mut rng = Rng(seed);
    let mut files = Vec::new();
    for i in 0..4 {
        let mut t = fs.trans();
        let n = NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 };
        let u = create(&mut t, &sv, sv.root_inum, format!("f{i}").as_bytes(), &n).unwrap();
        files.push((u.inum, Vec::new()));
    }
    let modes = [0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE, 0x11, 0x03, FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, 0x40];
    for step in 0..steps {
        let f = rng.below(files.len() as u64) as usize;
        let (inum, m) = &mut files[f];
        let mut t = fs.trans();
        let mut a = FsDataAlloc::new(fs, writepoint_hashed(*inum));
        let what = rng.below(10);
        let ctx = format!("seed {seed} step {step} file {inum}");
        if what < 3 {
            // A block-aligned write, as the page cache issues them.
            let off = rng.below(48) * BLOCK;
            let len = 1 + rng.below(5 * BLOCK) as usize;
            let data: Vec<u8> = (0..len).map(|j| (rng.0 as usize + j * 31) as u8 | 1).collect();
            if std::env::var("FALLOC_DEBUG").is_ok() {
                eprintln!("{ctx}: write {off} +{len} (size {})", m.len());
            }
            write_data(&mut t, &mut a, &sv, *inum, off, &data).unwrap();
            let o = off as usize;
            if m.len() < o + len {
                m.resize(o + len, 0);
            }
            m[o..o + len].copy_from_slice(&data);
            // write_data writes whole blocks: the rest of the last one is
            // zeros (the page cache hands it whole).
            let bend = ((o + len) as u64).next_multiple_of(BLOCK).min(m.len() as u64) as usize;
            m[o + len..bend].fill(0);
        } else {
            let mode = modes[rng.below(modes.len() as u64) as usize];
            let aligned = rng.below(2) == 0;
            let (off, len) = if aligned {
                (rng.below(40) * BLOCK, (1 + rng.below(12)) * BLOCK)
            } else {
                (rng.below(160_000), 1 + rng.below(40_000))
            };
            if std::env::var("FALLOC_DEBUG").is_ok() {
                eprintln!("{ctx}: fallocate({mode:#x}, {off}, {len}) (size {})", m.len());
            }
            let want = model(m, mode, off, len);
            let got = fallocate(&mut t, &mut a, &sv, *inum, mode, off, len);
            match (want, got) {
                (Ok(()), Ok(size)) => assert_eq!(size, m.len() as u64, "{ctx}: size after fallocate({mode:#x}, {off}, {len})"),
                (Err(w), Err(g)) => assert_eq!(w, g, "{ctx}: fallocate({mode:#x}, {off}, {len})"),
                (w, g) => panic!("{ctx}: fallocate({mode:#x}, {off}, {len}): want {w:?}, got {g:?}"),
            }
        }
        drop(t);
        drop(a);
        let got = read_all(fs, &sv, *inum);
        assert_eq!(got.len(), m.len(), "{ctx}: size");
        if let Some(i) = got.iter().zip(m.iter()).position(|(a, b)| a != b) {
            panic!("{ctx}: byte {i} is {} where the model has {}", got[i], m[i]);
        }
        // SEEK_DATA / SEEK_HOLE agree with the bytes: no nonzero byte is
        // skipped by SEEK_DATA, and the hole SEEK_HOLE finds reads as zero.
        if !m.is_empty() {
            let off = rng.below(m.len() as u64);
            let h = seek_hole(fs, &sv, *inum, off, m.len() as u64).unwrap();
            assert!(h >= off && h <= m.len() as u64, "{ctx}: SEEK_HOLE from {off} = {h}");
            if h < m.len() as u64 {
                assert_eq!(m[h as usize], 0, "{ctx}: SEEK_HOLE from {off} = {h}, a nonzero byte");
            }
            match seek_data(fs, &sv, *inum, off, m.len() as u64) {
                Ok(d) => {
                    assert!(d >= off && d < m.len() as u64, "{ctx}: SEEK_DATA from {off} = {d}");
                    assert!(m[off as usize..d as usize].iter().all(|&b| b == 0), "{ctx}: SEEK_DATA from {off} = {d} skips data");
                }
                Err(e) => {
                    assert_eq!(e, Errno::ENXIO);
                    assert!(m[off as usize..].iter().all(|&b| b == 0), "{ctx}: SEEK_DATA from {off}: ENXIO before data");
                }
            }
            assert_eq!(seek_data(fs, &sv, *inum, m.len() as u64, m.len() as u64), Err(Errno::ENXIO));
            assert_eq!(seek_hole(fs, &sv, *inum, m.len() as u64, m.len() as u64), Err(Errno::ENXIO));
        }
    }
    files
}

#[test]
fn fallocate_modes_match_linux_semantics() {
    for seed in 1..=4u64 {
        let mem = volume::initialized(64 << 20, &[], seed);
        let fs = BchFs::start(BchFsOpen::open(SharedDev(mem.clone())).unwrap(), volume::INIT_NS + 1, seed).unwrap();
        let files = run(&fs, seed, 150);
        fs.shutdown().unwrap();
        drop(fs);
        let ro = Fs::open(SharedDev(mem), &OpenOpts::default()).unwrap();
        let sv = root_subvol(&ro).unwrap();
        for (inum, m) in &files {
            assert_eq!(&read_all(&ro, &sv, *inum), m, "seed {seed}: file {inum} after the clean shutdown");
        }
        let mm = check_fs(&ro).unwrap();
        assert!(mm.is_empty(), "seed {seed}: {} mismatches: {:?}", mm.len(), mm.iter().take(5).collect::<Vec<_>>());
    }
}

#[test]
fn seek_data_and_hole_find_extents() {
    let mem = volume::initialized(64 << 20, &[], 11);
    let fs = BchFs::start(BchFsOpen::open(SharedDev(mem)).unwrap(), volume::INIT_NS + 1, 11).unwrap();
    let sv = root_subvol(&fs).unwrap();
    let mut t = fs.trans();
    let mut a = FsDataAlloc::new(&fs, writepoint_hashed(1));
    let n = NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 };
    let u = create(&mut t, &sv, sv.root_inum, b"sparse", &n).unwrap();
    // Data at [64K, 72K) and [128K, 132K); size 200K; a reservation at [8K, 16K).
    write_data(&mut t, &mut a, &sv, u.inum, 64 << 10, &[7u8; 8192]).unwrap();
    write_data(&mut t, &mut a, &sv, u.inum, 128 << 10, &[7u8; 4096]).unwrap();
    fallocate(&mut t, &mut a, &sv, u.inum, FALLOC_FL_KEEP_SIZE, 8 << 10, 8 << 10).unwrap();
    let size = fallocate(&mut t, &mut a, &sv, u.inum, 0, 196 << 10, 4 << 10).unwrap();
    assert_eq!(size, 200 << 10);
    drop(t);
    drop(a);
    let sd = |o: u64| seek_data(&fs, &sv, u.inum, o, size);
    let sh = |o: u64| seek_hole(&fs, &sv, u.inum, o, size);
    assert_eq!(sd(0), Ok(64 << 10), "the reservation is not data");
    assert_eq!(sd(66 << 10), Ok(66 << 10));
    assert_eq!(sd(72 << 10), Ok(128 << 10));
    assert_eq!(sd(132 << 10), Err(Errno::ENXIO));
    assert_eq!(sh(0), Ok(0));
    assert_eq!(sh(64 << 10), Ok(72 << 10));
    assert_eq!(sh(129 << 10), Ok(132 << 10));
    assert_eq!(sh(199 << 10), Ok(199 << 10));
    assert_eq!(sh(200 << 10), Err(Errno::ENXIO));
    // FIEMAP: the two reservations and the two data extents, the last one
    // flagged.
    let mut got = Vec::new();
    fiemap(&fs, &sv, u.inum, 0, u64::MAX, &mut |e| {
        got.push(e);
        true
    })
    .unwrap();
    let shape: Vec<(u64, u64, u32)> = got.iter().map(|e| (e.logical, e.length, e.flags)).collect();
    let res = FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_UNWRITTEN;
    assert_eq!(shape, vec![(8 << 10, 8 << 10, res), (64 << 10, 8 << 10, 0), (128 << 10, 4 << 10, 0), (196 << 10, 4 << 10, res | FIEMAP_EXTENT_LAST)]);
    assert!(got[1].physical != 0 && got[1].physical % 4096 == 0 && got[2].physical != got[1].physical);
    // A window: only what overlaps it, and not flagged last.
    let mut got = Vec::new();
    fiemap(&fs, &sv, u.inum, 60 << 10, 10 << 10, &mut |e| {
        got.push(e);
        true
    })
    .unwrap();
    assert_eq!(got.iter().map(|e| (e.logical, e.flags)).collect::<Vec<_>>(), vec![(64 << 10, 0)]);
    fs.shutdown().unwrap();
}
