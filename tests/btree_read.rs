// SPDX-License-Identifier: GPL-2.0
//! The read side behind `Fs` (src/bcachefs.rs, src/btree/, src/journal/,
//! src/recovery/) on the images C bcachefs wrote (tests/fixtures/): every
//! btree iterated through `Fs` equals what the test oracle
//! (`tests/common/oracle.rs`, an independent walk of the nodes) finds; `norecovery` misses the journal's keys; next
//! and prev agree; holes; the node cache's bound and shrinker; corrupt
//! nodes give `EIO`, not a panic; a bad primary superblock falls back to a
//! backup; random corruption never panics.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bcachefs_rs::bcachefs::{Fs, FsInfo, OpenError, OpenOpts};
use bcachefs_rs::errcode::Errno;
use bcachefs_rs::format::bkey::{Bkey, BtreeId, KeyType, BTREE_ID_NR};
use bcachefs_rs::format::bpos::{Bpos, POS_MIN, SPOS_MAX};
use bcachefs_rs::format::sb::read_super;
use bcachefs_rs::format::val::extent::{ExtentEntries, ExtentEntry};
use bcachefs_rs::fs_common::{BtreeRead, OwnedKey};
use bcachefs_rs::journal::{find_root, read_journal};
use bcachefs_rs::platform::{BlockDev, SECTOR_SIZE};
use proptest::prelude::*;

#[allow(dead_code)]
mod common;
use common::unpack_image;
#[path = "common/oracle.rs"]
mod oracle;

const CLEAN: &str = "c-clean-siphash.bchimg";
const UNCLEAN: &str = "c-unclean-crc64-lz4.bchimg";

/// A fixture image with some bytes changed.
struct Img {
    base: Arc<Vec<u8>>,
    patches: BTreeMap<usize, u8>,
}

impl BlockDev for Img {
    fn name(&self) -> &str {
        "fixture"
    }

    fn nr_sectors(&self) -> u64 {
        (self.base.len() / SECTOR_SIZE) as u64
    }

    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let s = usize::try_from(sector).map_err(|_| Errno::EIO)?.checked_mul(SECTOR_SIZE).ok_or(Errno::EIO)?;
        let e = s.checked_add(buf.len()).ok_or(Errno::EIO)?;
        buf.copy_from_slice(self.base.get(s..e).ok_or(Errno::EIO)?);
        for (&at, &b) in self.patches.range(s..e) {
            buf[at - s] = b;
        }
        Ok(())
    }
}

fn image(name: &str) -> Arc<Vec<u8>> {
    type Pair = (Arc<Vec<u8>>, Arc<Vec<u8>>);
    static IMGS: OnceLock<Pair> = OnceLock::new();
    let (c, u) = IMGS.get_or_init(|| (Arc::new(unpack_image(CLEAN)), Arc::new(unpack_image(UNCLEAN))));
    if name == CLEAN {
        c.clone()
    } else {
        u.clone()
    }
}

fn img(name: &str) -> Img {
    Img { base: image(name), patches: BTreeMap::new() }
}

fn open(dev: Img, opts: OpenOpts) -> Fs<Img> {
    Fs::open(dev, &opts).unwrap_or_else(|e| panic!("open: {e}"))
}

fn all_btrees() -> impl Iterator<Item = BtreeId> {
    (0..BTREE_ID_NR).filter_map(BtreeId::from_u32)
}

/// Every live key of `btree`, forwards.
fn iterate<D: BlockDev>(fs: &Fs<D>, btree: BtreeId) -> Result<Vec<OwnedKey>, Errno> {
    let mut it = fs.iter(btree, POS_MIN, false);
    let mut out = Vec::new();
    while let Some(k) = it.next()? {
        out.push(k);
    }
    Ok(out)
}

/// What the oracle finds: (key, value) of each live key.
fn oracle(name: &str, btree: BtreeId) -> Vec<(Bkey, Vec<u8>)> {
    let dev = img(name);
    let sbr = read_super(&dev).unwrap();
    let fsi = FsInfo::from_sb(&sbr.sb()).unwrap();
    let j = read_journal(&dev, &fsi).unwrap();
    oracle::collect(&dev, &fsi, &j, btree, 0)
        .into_iter()
        .filter(|(k, _)| k.key_type != KeyType::Whiteout as u8 && k.key_type != KeyType::HashWhiteout as u8)
        .collect()
}

fn same(a: &[OwnedKey], b: &[(Bkey, Vec<u8>)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, (k, v))| x.k.p == k.p && x.k.key_type == k.key_type && x.k.size == k.size && x.k.version == k.version && x.v[..] == v[..])
}

#[test]
fn every_btree_equals_the_oracle() {
    for name in [CLEAN, UNCLEAN] {
        let fs = open(img(name), OpenOpts::default());
        let mut total = 0;
        for b in all_btrees() {
            let got = iterate(&fs, b).unwrap();
            let want = oracle(name, b);
            assert!(same(&got, &want), "{name}: btree {b:?}: {} keys, oracle {}", got.len(), want.len());
            total += got.len();
        }
        assert!(total > 100, "{name}: {total} keys");
        let io = fs.io_done();
        assert!(io.sb > 0 && io.journal > 0 && io.btree > 0, "{io:?}");
        let mut s = String::new();
        fs.journal_debug_to_text(&mut s).unwrap();
        assert!(s.contains("last_seq") && s.contains("journal keys"), "{s}");
        assert_ne!(fs.user_uuid(), [0; 16]);
        assert!(fs.sb_bytes().len() >= 1024);
        let f = fs.facts();
        assert!(f.block_bytes >= 512 && f.capacity_sectors > 0 && f.bucket_sectors > 0 && f.time_precision_ns > 0);
    }
}

#[test]
fn norecovery_misses_the_journal_keys() {
    let fs = open(img(UNCLEAN), OpenOpts::default());
    assert!(fs.nr_journal_keys() > 50);
    let nr = open(img(UNCLEAN), OpenOpts { norecovery: true, ..OpenOpts::default() });
    assert_eq!(nr.nr_journal_keys(), 0);
    let count = |fs: &Fs<Img>| all_btrees().map(|b| iterate(fs, b).unwrap().len()).sum::<usize>();
    let (with, without) = (count(&fs), count(&nr));
    assert!(without < with, "norecovery {without} keys, recovery {with}");
    // The dirents written after the last btree node write are only in the journal.
    let d = iterate(&fs, BtreeId::Dirents).unwrap().len();
    let dn = iterate(&nr, BtreeId::Dirents).unwrap().len();
    assert!(dn < d, "{dn} vs {d}");
}

#[test]
fn peek_upto_and_read_data() {
    let fs = open(img(CLEAN), OpenOpts::default());
    let inodes = iterate(&fs, BtreeId::Inodes).unwrap();
    let k = &inodes[inodes.len() / 2];
    let got = fs.peek_upto(BtreeId::Inodes, k.k.p, k.k.p, false).unwrap().unwrap();
    assert_eq!((got.k.p, &got.v[..]), (k.k.p, &k.v[..]));
    let after = inodes.last().unwrap().k.p.successor().unwrap();
    assert!(fs.peek_upto(BtreeId::Inodes, after, SPOS_MAX, false).unwrap().is_none());
    assert!(fs.peek_upto(BtreeId::Inodes, SPOS_MAX, POS_MIN, false).unwrap().is_none());
    // File data: the first extent's first pointer.
    let ext = iterate(&fs, BtreeId::Extents).unwrap();
    let ptr = ext
        .iter()
        .filter(|k| k.k.key_type == KeyType::Extent as u8)
        .find_map(|k| {
            ExtentEntries::new(&k.v).find_map(|e| match e {
                Ok(ExtentEntry::Ptr(p)) => Some(p),
                _ => None,
            })
        })
        .unwrap();
    let before = fs.io_done().user;
    let mut buf = vec![0u8; 4096];
    fs.read_data(ptr.dev, ptr.offset, &mut buf).unwrap();
    assert_eq!(fs.io_done().user, before + 8);
    assert_eq!(fs.read_data(7, 0, &mut buf), Err(Errno::EOPNOTSUPP));
}

#[test]
fn prev_walks_back_what_next_walked() {
    for name in [CLEAN, UNCLEAN] {
        let fs = open(img(name), OpenOpts::default());
        for b in [BtreeId::Extents, BtreeId::Inodes, BtreeId::Dirents, BtreeId::Accounting, BtreeId::Alloc] {
            let fwd = iterate(&fs, b).unwrap();
            let mut it = fs.iter(b, SPOS_MAX, false);
            let mut back = Vec::new();
            // SPOS_MAX itself is never a key here.
            while let Some(k) = it.prev().unwrap() {
                back.push(k.k.p);
            }
            back.reverse();
            let f: Vec<Bpos> = fwd.iter().map(|k| k.k.p).collect();
            assert_eq!(f, back, "{name}: {b:?}");
        }
    }
}

fn dirent_positions() -> &'static (Vec<Bpos>, Fs<Img>) {
    static F: OnceLock<(Vec<Bpos>, Fs<Img>)> = OnceLock::new();
    F.get_or_init(|| {
        let fs = open(img(UNCLEAN), OpenOpts::default());
        let p = iterate(&fs, BtreeId::Dirents).unwrap().iter().map(|k| k.k.p).collect();
        (p, fs)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// From any position, next then prev return the same key, and prev
    /// returns the last key before the position.
    #[test]
    fn next_prev_symmetric(inode in 4090u64..4200, offset in any::<u64>(), snap in prop_oneof![Just(u32::MAX), any::<u32>()]) {
        let (keys, fs) = dirent_positions();
        let pos = Bpos::new(inode, offset, snap);
        let mut it = fs.iter(BtreeId::Dirents, pos, false);
        let n = it.next().unwrap().map(|k| k.k.p);
        prop_assert_eq!(n, keys.iter().copied().find(|&p| p >= pos));
        if let Some(n) = n {
            prop_assert_eq!(it.prev().unwrap().map(|k| k.k.p), Some(n));
        }
        let mut it = fs.iter(BtreeId::Dirents, pos, false);
        prop_assert_eq!(it.prev().unwrap().map(|k| k.k.p), keys.iter().copied().rev().find(|&p| p < pos));
    }
}

#[test]
fn peek_slot_gives_keys_and_holes() {
    let fs = open(img(UNCLEAN), OpenOpts::default());
    let inodes = iterate(&fs, BtreeId::Inodes).unwrap();
    let k = &inodes[0];
    let mut it = fs.iter(BtreeId::Inodes, k.k.p, false);
    let s = it.peek_slot().unwrap();
    assert_eq!((s.k.p, s.k.key_type), (k.k.p, k.k.key_type));
    // Another snapshot of that inode, which has no key: a hole at exactly that position.
    let hole = Bpos::new(k.k.p.inode, k.k.p.offset, k.k.p.snapshot - 1);
    assert!(inodes.iter().all(|x| x.k.p != hole));
    it.set_pos(hole);
    let s = it.peek_slot().unwrap();
    assert_eq!((s.k.p, s.k.key_type), (hole, KeyType::Deleted as u8));
    assert_eq!(it.pos(), hole);
    // Extents: inside an extent gives it; past the file's end a hole.
    let ext = iterate(&fs, BtreeId::Extents).unwrap();
    let e = ext.iter().find(|e| e.k.size > 1).unwrap();
    let inside = Bpos::new(e.k.p.inode, e.k.p.offset - 1, e.k.p.snapshot);
    let mut it = fs.iter(BtreeId::Extents, inside, false);
    assert_eq!(it.peek_slot().unwrap().k.p, e.k.p);
    let mut it = fs.iter(BtreeId::Extents, Bpos::new(e.k.p.inode, u64::MAX - 1, e.k.p.snapshot), false);
    assert_eq!(it.peek_slot().unwrap().k.key_type, KeyType::Deleted as u8);
}

#[test]
fn cache_bound_and_shrinker() {
    // A bound below one node: only the node in use stays.
    let fs = open(img(UNCLEAN), OpenOpts { btree_cache_max_bytes: 1, ..OpenOpts::default() });
    for b in all_btrees() {
        let mut it = fs.iter(b, POS_MIN, false);
        let mut got = Vec::new();
        while let Some(k) = it.next().unwrap() {
            assert!(fs.btree_cache_count() <= 1, "{} nodes", fs.btree_cache_count());
            got.push(k);
        }
        assert!(same(&got, &oracle(UNCLEAN, b)), "{b:?}");
    }
    // Unbounded: everything stays until shrunk; a node in use is not freed.
    let fs = open(img(UNCLEAN), OpenOpts::default());
    for b in all_btrees() {
        iterate(&fs, b).unwrap();
    }
    let n = fs.btree_cache_count();
    assert!(n >= 5 && fs.btree_cache_bytes() > 0, "{n}");
    let mut it = fs.iter(BtreeId::Dirents, POS_MIN, false);
    it.peek().unwrap().unwrap();
    assert_eq!(fs.btree_cache_shrink(2), 2);
    let freed = fs.btree_cache_shrink(usize::MAX);
    assert_eq!(freed, n - 3);
    assert_eq!(fs.btree_cache_count(), 1);
    drop(it);
    assert_eq!(fs.btree_cache_shrink(usize::MAX), 1);
    assert_eq!((fs.btree_cache_count(), fs.btree_cache_bytes()), (0, 0));
    // Still reads after shrinking.
    assert!(same(&iterate(&fs, BtreeId::Dirents).unwrap(), &oracle(UNCLEAN, BtreeId::Dirents)));
}

/// Device sector of the root node of `btree` and its level.
fn root_sector(name: &str, btree: BtreeId) -> (u64, u8) {
    let dev = img(name);
    let sbr = read_super(&dev).unwrap();
    let fsi = FsInfo::from_sb(&sbr.sb()).unwrap();
    let j = read_journal(&dev, &fsi).unwrap();
    let r = find_root(&fsi, &j, btree as u32).unwrap().unwrap();
    let v = &r.val[40..r.key.val_bytes()];
    let p = ExtentEntries::new(v)
        .find_map(|e| match e {
            Ok(ExtentEntry::Ptr(p)) => Some(p),
            _ => None,
        })
        .unwrap();
    (p.offset, r.level)
}

#[test]
fn corrupt_nodes_give_eio_and_the_rest_reads() {
    // Zeroed xattrs root, bit-flipped inodes root.
    let (xs, _) = root_sector(CLEAN, BtreeId::Xattrs);
    let (is, _) = root_sector(CLEAN, BtreeId::Inodes);
    let mut dev = img(CLEAN);
    for i in 0..4096 {
        dev.patches.insert(xs as usize * SECTOR_SIZE + i, 0);
    }
    let at = is as usize * SECTOR_SIZE + 140;
    dev.patches.insert(at, dev.base[at] ^ 0x10);
    let fs = open(dev, OpenOpts::default());
    assert_eq!(iterate(&fs, BtreeId::Xattrs).map(|v| v.len()), Err(Errno::EIO));
    assert_eq!(iterate(&fs, BtreeId::Inodes).map(|v| v.len()), Err(Errno::EIO));
    assert_eq!(fs.peek_upto(BtreeId::Inodes, POS_MIN, SPOS_MAX, false).map(|k| k.is_some()), Err(Errno::EIO));
    assert!(same(&iterate(&fs, BtreeId::Dirents).unwrap(), &oracle(CLEAN, BtreeId::Dirents)));
    // Again: not cached as good, still EIO.
    assert_eq!(iterate(&fs, BtreeId::Xattrs).map(|v| v.len()), Err(Errno::EIO));
}

#[test]
fn bad_primary_superblock_falls_back_to_a_backup() {
    let mut dev = img(CLEAN);
    for i in 0..SECTOR_SIZE * 8 {
        dev.patches.insert(8 * SECTOR_SIZE + i, 0xa5);
    }
    let fs = open(dev, OpenOpts::default());
    assert!(same(&iterate(&fs, BtreeId::Dirents).unwrap(), &oracle(CLEAN, BtreeId::Dirents)));
}

#[test]
fn refusals_are_typed() {
    let mut dev = img(CLEAN);
    for i in 0..1 << 20 {
        dev.patches.insert(i, 0);
    }
    let e = Fs::open(dev, &OpenOpts::default()).err().unwrap();
    assert!(matches!(e, OpenError::Sb(_)), "{e}");
    assert_eq!(e.errno(), Errno::EINVAL);

    struct BigBlocks(Img);
    impl BlockDev for BigBlocks {
        fn name(&self) -> &str {
            "big"
        }
        fn nr_sectors(&self) -> u64 {
            self.0.nr_sectors()
        }
        fn read_sectors(&self, s: u64, b: &mut [u8]) -> Result<(), Errno> {
            self.0.read_sectors(s, b)
        }
        fn logical_block_size(&self) -> u32 {
            64 << 10
        }
    }
    let e = Fs::open(BigBlocks(img(CLEAN)), &OpenOpts::default()).err().unwrap();
    assert!(matches!(e, OpenError::BlockSize { .. }), "{e}");
    assert_eq!(e.errno(), Errno::EINVAL);
    assert!(e.to_string().contains("logical block size"));

    // A truncated copy: the superblock's buckets run past the device end.
    struct Truncated(Img);
    impl BlockDev for Truncated {
        fn name(&self) -> &str {
            "truncated"
        }
        fn nr_sectors(&self) -> u64 {
            self.0.nr_sectors() * 6 / 10
        }
        fn read_sectors(&self, s: u64, b: &mut [u8]) -> Result<(), Errno> {
            self.0.read_sectors(s, b)
        }
    }
    let e = Fs::open(Truncated(img(CLEAN)), &OpenOpts::default()).err().unwrap();
    assert!(matches!(e, OpenError::DeviceTooSmall { .. }), "{e}");
    assert_eq!(e.errno(), Errno::EINVAL);
}

#[test]
fn fs_is_sync() {
    fn sync<T: Sync + Send>() {}
    sync::<Fs<Img>>();
}

/// Metadata areas worth corrupting: nonzero 4 KiB blocks of the image.
fn nonzero_blocks(name: &str) -> &'static [usize] {
    static B: OnceLock<(Vec<usize>, Vec<usize>)> = OnceLock::new();
    let (c, u) = B.get_or_init(|| {
        let f = |n| image(n).chunks(4096).enumerate().filter(|(_, b)| b.iter().any(|&x| x != 0)).map(|(i, _)| i).collect();
        (f(CLEAN), f(UNCLEAN))
    });
    if name == CLEAN {
        c
    } else {
        u
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random byte corruption never panics open or a full iteration.
    #[test]
    fn corruption_never_panics(
        unclean in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4096, any::<u8>()), 1..24),
    ) {
        let name = if unclean { UNCLEAN } else { CLEAN };
        let blocks = nonzero_blocks(name);
        let mut dev = img(name);
        for (bi, off, b) in edits {
            dev.patches.insert(blocks[bi.index(blocks.len())] * 4096 + off, b);
        }
        if let Ok(fs) = Fs::open(dev, &OpenOpts { btree_cache_max_bytes: 256 << 10, ..OpenOpts::default() }) {
            for b in all_btrees() {
                let _ = iterate(&fs, b);
                let mut it = fs.iter(b, SPOS_MAX, true);
                for _ in 0..50 {
                    match it.prev() {
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
            }
        }
    }
}

#[test]
fn concurrent_readers_and_shrinker() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let fs = open(img(UNCLEAN), OpenOpts { btree_cache_max_bytes: 128 << 10, ..OpenOpts::default() });
    let want: Vec<Vec<(Bkey, Vec<u8>)>> = all_btrees().map(|b| oracle(UNCLEAN, b)).collect();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..3)
            .map(|t| {
                let (fs, want) = (&fs, &want);
                s.spawn(move || {
                    for round in 0..3 {
                        for (i, b) in all_btrees().enumerate() {
                            let b = if (t + round) % 2 == 0 { b } else { BtreeId::from_u32(BTREE_ID_NR - 1 - i as u32).unwrap() };
                            let w = &want[b as usize];
                            assert!(same(&iterate(fs, b).unwrap(), w), "{b:?}");
                        }
                    }
                })
            })
            .collect();
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                fs.btree_cache_shrink(1);
                std::thread::yield_now();
            }
        });
        for r in readers {
            r.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
}
