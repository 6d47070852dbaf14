// SPDX-License-Identifier: GPL-2.0
//! The btree write side on the host: transactions against a model
//! (ordered map), tiny nodes so that splits, compactions, new roots and
//! merges happen all the time, every tree re-read from the device with the
//! read-only reader, extents against a model of sectors, restarts,
//! concurrency, corrupt nodes.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use bcachefs_rs::btree::testing::{BumpAlloc, MemDev, MemJournal};
use bcachefs_rs::btree::trans::{BtreeGeometry, CommitFlags};
use bcachefs_rs::btree::{commit_do, lockrestart_do, write_dirty_nodes, BtreeCache, BtreeCtx, BtreeFs, BtreeIter};
use bcachefs_rs::checksum::CsumType;
use bcachefs_rs::errcode::{BchError, Errno};
use bcachefs_rs::format::bkey::{Bkey, BkeyI, BtreeId, KeyType};
use bcachefs_rs::format::bpos::{Bpos, POS_MIN};
use bcachefs_rs::format::btree_node::{bset_magic, BtreeNode, NodeReadOpts};
use bcachefs_rs::format::jset::EntryType;
use bcachefs_rs::format::list::FsInfo;
use bcachefs_rs::format::val::DevInfo;
use bcachefs_rs::format::version::VERSION_CURRENT;
use bcachefs_rs::platform::{BlockDev, Vec as PVec, SECTOR_SIZE};
use bcachefs_rs::recovery::JournalKeys;
use proptest::prelude::*;

const BUCKET: u32 = 256;
const NBUCKETS: u64 = 512;
const UUID: [u8; 16] = [7; 16];

struct Harness {
    dev: MemDev,
    info: FsInfo,
    cache: BtreeCache,
    journal: MemJournal,
    alloc: BumpAlloc,
}

impl Harness {
    fn new(node_bytes: u32, block_bytes: u32) -> Self {
        let mut devs = PVec::new();
        devs.push(Some(DevInfo { bucket_size: BUCKET, first_bucket: 1, nbuckets: NBUCKETS, durability: 1, failed: false }))
            .unwrap();
        let info = FsInfo {
            uuid: UUID,
            block_bytes,
            node_bytes,
            dev_idx: 0,
            devs,
            journal_buckets: PVec::new(),
            blacklist: PVec::new(),
            clean: PVec::new(),
        };
        let size = (NBUCKETS * u64::from(BUCKET)) as usize * SECTOR_SIZE;
        Harness {
            dev: MemDev::new(size),
            info,
            cache: BtreeCache::new(64 << 20).unwrap(),
            journal: MemJournal::new(),
            alloc: BumpAlloc::new(u64::from(BUCKET), NBUCKETS * u64::from(BUCKET)),
        }
    }

    fn fs(&self) -> BtreeFs<'_> {
        let geo = BtreeGeometry::from_info(&self.info, CsumType::Crc32c, VERSION_CURRENT);
        let roots: Vec<Option<bcachefs_rs::format::list::Root>> = vec![None; bcachefs_rs::journal::NR_BTREES];
        BtreeFs::new(&self.dev, &self.info, &self.cache, &self.journal, &self.alloc, geo, &roots).unwrap()
    }
}

/// Every key of `btree`, read back from the device by the read-only
/// reader (fresh cache) after writing every dirty node.
fn reread(h: &Harness, fs: &BtreeFs<'_>, btree: BtreeId) -> Vec<(Bpos, u8, u32, Vec<u8>)> {
    write_dirty_nodes(fs).unwrap();
    let roots = fs.roots().unwrap();
    let cache = BtreeCache::new(1 << 20).unwrap();
    let keys = JournalKeys::empty();
    let c = BtreeCtx { dev: &h.dev, info: &h.info, cache: &cache, roots: &roots, keys: &keys };
    let mut it = BtreeIter::new(c, btree, POS_MIN, false);
    let mut out = Vec::new();
    while let Some(k) = it.next().unwrap() {
        out.push((k.k.p, k.k.key_type, k.k.size, k.v.to_vec()));
    }
    out
}

/// Every key of `btree` through a transaction's iterator.
fn scan(fs: &BtreeFs<'_>, btree: BtreeId) -> Vec<(Bpos, Vec<u8>)> {
    lockrestart_do(fs, |t| {
        let it = t.iter(btree, POS_MIN, false)?;
        let mut v = Vec::new();
        while let Some(k) = t.iter_next(it)? {
            v.push((k.k.p, k.v.to_vec()));
        }
        Ok(v)
    })
    .unwrap()
}

fn cookie(pos: Bpos, tag: u64, extra_u64s: usize) -> BkeyI {
    let mut v = PVec::new();
    v.extend_from_slice(&tag.to_le_bytes()).unwrap();
    for i in 0..extra_u64s {
        v.extend_from_slice(&(tag ^ i as u64).to_le_bytes()).unwrap();
    }
    BkeyI { k: Bkey::new(KeyType::Cookie, pos, 1 + extra_u64s), v }
}

fn xpos(i: u64) -> Bpos {
    Bpos::new(1 + i / 100, (i % 100) * 7, 1)
}

type Model = BTreeMap<Bpos, Vec<u8>>;

fn check_against_model(h: &Harness, fs: &BtreeFs<'_>, model: &Model) {
    let got = scan(fs, BtreeId::Xattrs);
    let want: Vec<(Bpos, Vec<u8>)> = model.iter().map(|(p, v)| (*p, v.clone())).collect();
    assert_eq!(got, want, "transaction iterator disagrees with the model");
    let disk: Vec<(Bpos, Vec<u8>)> = reread(h, fs, BtreeId::Xattrs).into_iter().map(|(p, _, _, v)| (p, v)).collect();
    assert_eq!(disk, want, "tree re-read from the device disagrees with the model");
    assert_eq!(h.journal.pins_held(), 0, "every pin is released once the nodes are written");
}

#[derive(Clone, Debug)]
enum Op {
    Set(u64, u64, usize),
    Del(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..600, any::<u64>(), 0usize..4).prop_map(|(i, t, x)| Op::Set(i, t, x)),
        2 => (0u64..600).prop_map(Op::Del),
    ]
}

fn run_ops(h: &Harness, fs: &BtreeFs<'_>, txs: &[Vec<Op>], model: &mut Model, check_every: usize) {
    for (n, tx) in txs.iter().enumerate() {
        commit_do(fs, CommitFlags::default(), |t| {
            for o in tx {
                match *o {
                    Op::Set(i, tag, x) => t.update(BtreeId::Xattrs, cookie(xpos(i), tag, x))?,
                    Op::Del(i) => t.delete(BtreeId::Xattrs, xpos(i))?,
                }
            }
            Ok(())
        })
        .unwrap();
        for o in tx {
            match *o {
                Op::Set(i, tag, x) => {
                    model.insert(xpos(i), cookie(xpos(i), tag, x).v.to_vec());
                }
                Op::Del(i) => {
                    model.remove(&xpos(i));
                }
            }
        }
        if check_every != 0 && n % check_every == check_every - 1 {
            check_against_model(h, fs, model);
        }
    }
    check_against_model(h, fs, model);
}

#[test]
fn first_insert_makes_the_fake_root_real() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    assert!(fs.root(BtreeId::Xattrs as u8).is_none());
    assert!(scan(&fs, BtreeId::Xattrs).is_empty());
    commit_do(&fs, CommitFlags::default(), |t| t.update(BtreeId::Xattrs, cookie(xpos(3), 33, 0))).unwrap();
    let root = fs.root(BtreeId::Xattrs as u8).expect("a real root after the first insert");
    assert_eq!(root.level, 0);
    let e = h.journal.entries.lock().unwrap();
    assert!(e.iter().any(|x| x.1 == EntryType::BtreeRoot as u8 && x.2 == BtreeId::Xattrs as u8));
    assert!(e.iter().any(|x| x.1 == EntryType::BtreeKeys as u8 && x.3 == 0));
    drop(e);
    let mut model = Model::new();
    model.insert(xpos(3), cookie(xpos(3), 33, 0).v.to_vec());
    check_against_model(&h, &fs, &model);
}

#[test]
fn sequential_inserts_split_grow_new_roots_and_reread() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let mut model = Model::new();
    let txs: Vec<Vec<Op>> = (0..3000).map(|i| vec![Op::Set(i, i * 3, (i % 3) as usize)]).collect();
    run_ops(&h, &fs, &txs, &mut model, 397);
    let s = &fs.stats;
    assert!(s.splits.load(Relaxed) > 10, "splits {}", s.splits.load(Relaxed));
    assert!(s.new_roots.load(Relaxed) >= 2, "the tree grew at least two levels");
    assert!(fs.root(BtreeId::Xattrs as u8).unwrap().level >= 2);
    // Delete most: merges.
    let dels: Vec<Vec<Op>> = (0..3000).filter(|i| i % 10 != 0).map(|i| vec![Op::Del(i)]).collect();
    run_ops(&h, &fs, &dels, &mut model, 531);
    assert!(s.merges.load(Relaxed) > 5, "merges {}", s.merges.load(Relaxed));
    assert!(s.interior_merges.load(Relaxed) > 0, "interior merges {}", s.interior_merges.load(Relaxed));
    assert_eq!(h.journal.open_res.load(Relaxed), 0);
}

#[test]
fn node_with_several_bsets_reads_back_merged() {
    let h = Harness::new(64 * 1024, 512);
    let fs = h.fs();
    let mut model = Model::new();
    let txs: Vec<Vec<Op>> = (0..20).map(|i| vec![Op::Set(i, i, 0)]).collect();
    run_ops(&h, &fs, &txs, &mut model, 0);
    // Later writes append bsets: replace, delete, insert.
    let more = [vec![Op::Set(3, 999, 2), Op::Del(5), Op::Set(50, 5, 1)], vec![Op::Del(0), Op::Set(60, 6, 0)]];
    run_ops(&h, &fs, &more[..1], &mut model, 0);
    run_ops(&h, &fs, &more[1..], &mut model, 0);
    let root = fs.root(BtreeId::Xattrs as u8).unwrap();
    assert_eq!(root.level, 0, "one leaf");
    let sector = bcachefs_rs::format::val::extent::ExtentPtr::decode(u64::from_le_bytes(root.val[40..48].try_into().unwrap())).offset;
    let mut buf = vec![0u8; 64 * 1024];
    h.dev.read_sectors(sector, &mut buf).unwrap();
    let o = NodeReadOpts {
        bset_magic: bset_magic(&UUID),
        block_bytes: 512,
        node_bytes: 64 * 1024,
        expect: None,
        journal_blacklist: &[],
        verify_csum: true,
    };
    let n = BtreeNode::read(&buf, &o).unwrap();
    // The root pointer says how much was written: exactly the bsets.
    let bp = bcachefs_rs::format::val::extent::BtreePtrV2::decode(&root.val).unwrap();
    assert_eq!(u32::from(bp.sectors_written), n.written_sectors);
    // The fake root became an empty written node, then three appends.
    assert_eq!(n.bsets.len(), 4, "first write, then three appended bsets");
    assert!(n.bsets[1].header.offset() > 0);
    let f = *n.format();
    let got: Vec<Bpos> = n.sorted().unwrap().iter(&n).map(|k| k.unpack(&f).p).collect();
    assert_eq!(got, model.keys().copied().collect::<Vec<_>>());
    // The whiteouts are in the last two bsets, one each.
    for b in [2, 3] {
        assert_eq!(n.bset_keys(b).filter(|k| k.is_deleted()).count(), 1);
    }
    assert_eq!(n.bset_keys(1).count(), 20);
}

#[test]
fn iterators_walk_both_ways() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let mut model = Model::new();
    let txs: Vec<Vec<Op>> = (0..300).map(|i| vec![Op::Set((i * 37) % 600, i, 0)]).collect();
    run_ops(&h, &fs, &txs, &mut model, 0);
    for probe in (0..650).step_by(13) {
        let pos = xpos(probe);
        let (next, prev) = lockrestart_do(&fs, |t| {
            let it = t.iter(BtreeId::Xattrs, pos, false)?;
            let n = t.iter_peek(it)?.map(|k| k.k.p);
            t.iter_set_pos(it, pos);
            let p = t.iter_prev(it)?.map(|k| k.k.p);
            Ok((n, p))
        })
        .unwrap();
        assert_eq!(next, model.range(pos..).next().map(|(p, _)| *p));
        assert_eq!(prev, model.range(..pos).next_back().map(|(p, _)| *p));
    }
    // Backwards over everything.
    let back = lockrestart_do(&fs, |t| {
        let it = t.iter(BtreeId::Xattrs, Bpos::new(u64::MAX, 0, 0), false)?;
        let mut v = Vec::new();
        while let Some(k) = t.iter_prev(it)? {
            v.push(k.k.p);
        }
        Ok(v)
    })
    .unwrap();
    assert_eq!(back, model.keys().rev().copied().collect::<Vec<_>>());
}

#[test]
fn injected_restarts_are_retried() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let mut model = Model::new();
    fs.inject_restarts(50);
    h.journal.refuse_nonblock.store(30, Relaxed);
    let txs: Vec<Vec<Op>> = (0..120).map(|i| vec![Op::Set(i, i, 1), Op::Del(i / 2)]).collect();
    let mut calls = 0;
    for tx in &txs {
        commit_do(&fs, CommitFlags::default(), |t| {
            calls += 1;
            for o in tx {
                match *o {
                    Op::Set(i, tag, x) => t.update(BtreeId::Xattrs, cookie(xpos(i), tag, x))?,
                    Op::Del(i) => t.delete(BtreeId::Xattrs, xpos(i))?,
                }
            }
            Ok(())
        })
        .unwrap();
        for o in tx {
            match *o {
                Op::Set(i, tag, x) => {
                    model.insert(xpos(i), cookie(xpos(i), tag, x).v.to_vec());
                }
                Op::Del(i) => {
                    model.remove(&xpos(i));
                }
            }
        }
    }
    assert!(calls >= 120 + 50 + 30, "every injected restart ran the body again ({calls})");
    assert!(fs.stats.restarts.load(Relaxed) >= 80);
    check_against_model(&h, &fs, &model);
    // An errno is returned, not retried.
    let r = commit_do(&fs, CommitFlags::default(), |_| Err::<(), _>(BchError::Errno(Errno::EEXIST)));
    assert_eq!(r, Err(Errno::EEXIST));
}

#[test]
fn two_threads_increment_counters_without_lost_updates() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    const N: u64 = 600;
    std::thread::scope(|s| {
        for th in 0..2u64 {
            let fs = &fs;
            s.spawn(move || {
                for i in 0..N {
                    // A shared counter (read-modify-write) and a private key.
                    let ctr = xpos(i % 3);
                    commit_do(fs, CommitFlags::default(), |t| {
                        let old = t.get(BtreeId::Xattrs, ctr)?.map_or(0, |k| u64::from_le_bytes(k.v[..8].try_into().unwrap()));
                        // Widen the window between the read and the commit.
                        std::thread::yield_now();
                        t.update(BtreeId::Xattrs, cookie(ctr, old + 1, 0))?;
                        t.update(BtreeId::Xattrs, cookie(xpos(100 + th * 1000 + i), i, (i % 3) as usize))?;
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
    });
    let all = scan(&fs, BtreeId::Xattrs);
    let total: u64 = (0..3).map(|c| all.iter().find(|(p, _)| *p == xpos(c)).map_or(0, |(_, v)| u64::from_le_bytes(v[..8].try_into().unwrap()))).sum();
    eprintln!("restarts {} commits {}", fs.stats.restarts.load(Relaxed), fs.stats.commits.load(Relaxed));
    assert_eq!(total, 2 * N, "no increment lost");
    assert_eq!(all.len() as u64, 3 + 2 * N);
    let disk = reread(&h, &fs, BtreeId::Xattrs);
    assert_eq!(disk.len(), all.len());
    assert_eq!(h.journal.pins_held(), 0);
}

#[test]
fn node_rewrite_moves_a_node_and_keeps_its_keys() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let mut model = Model::new();
    let txs: Vec<Vec<Op>> = (0..100).map(|i| vec![Op::Set(i, i, 0)]).collect();
    run_ops(&h, &fs, &txs, &mut model, 0);
    let before = fs.stats.compacts.load(Relaxed);
    let frees = h.alloc.frees.load(Relaxed);
    lockrestart_do(&fs, |t| t.node_rewrite(BtreeId::Xattrs as u8, 0, xpos(50))).unwrap();
    assert_eq!(fs.stats.compacts.load(Relaxed), before + 1);
    assert_eq!(h.alloc.frees.load(Relaxed), frees + 1);
    check_against_model(&h, &fs, &model);
    // The interior change went through the journal at level 1.
    assert!(h.journal.entries.lock().unwrap().iter().any(|e| e.1 == EntryType::BtreeKeys as u8 && e.3 == 1));
}

/// `BTREE_NODE_SEQ` of the root of `btree` as written on the device.
fn root_node_seq(h: &Harness, fs: &BtreeFs<'_>, btree: BtreeId) -> u32 {
    use bcachefs_rs::format::val::extent::{ptrs_start, ExtentEntries, ExtentEntry};
    write_dirty_nodes(fs).unwrap();
    let r = fs.root(btree as u8).expect("a root");
    let vlen = r.key.val_bytes().min(r.val.len());
    let v = &r.val[..vlen];
    let sector = ExtentEntries::new(&v[ptrs_start(r.key.key_type).unwrap()..])
        .find_map(|e| match e {
            Ok(ExtentEntry::Ptr(p)) => Some(p.offset),
            _ => None,
        })
        .unwrap();
    let mut buf = vec![0u8; h.info.node_bytes as usize];
    h.dev.read_sectors(sector, &mut buf).unwrap();
    let o = NodeReadOpts {
        bset_magic: bset_magic(&UUID),
        block_bytes: h.info.block_bytes,
        node_bytes: h.info.node_bytes,
        expect: None,
        journal_blacklist: &[],
        verify_csum: true,
    };
    BtreeNode::read(&buf, &o).unwrap().header.node_seq()
}

/// C's `BTREE_NODE_SEQ`: a rewritten node (and each half of a split) counts
/// one more than the node it replaces, a new root starts at 0.
#[test]
fn node_seq_counts_rewrites() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let mut model = Model::new();
    let txs: Vec<Vec<Op>> = (0..10).map(|i| vec![Op::Set(i, i, 0)]).collect();
    run_ops(&h, &fs, &txs, &mut model, 0);
    let s0 = root_node_seq(&h, &fs, BtreeId::Xattrs);
    for i in 1..=3 {
        lockrestart_do(&fs, |t| t.node_rewrite(BtreeId::Xattrs as u8, 0, xpos(5))).unwrap();
        assert_eq!(root_node_seq(&h, &fs, BtreeId::Xattrs), s0 + i, "after {i} rewrites");
    }
    // Enough keys for the root to split: the new root starts again at 0.
    let txs: Vec<Vec<Op>> = (10..400).map(|i| vec![Op::Set(i, i, 0)]).collect();
    run_ops(&h, &fs, &txs, &mut model, 0);
    assert!(fs.root(BtreeId::Xattrs as u8).unwrap().level > 0);
    assert_eq!(root_node_seq(&h, &fs, BtreeId::Xattrs), 0);
    check_against_model(&h, &fs, &model);
}

#[test]
fn printers_show_state() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    commit_do(&fs, CommitFlags::default(), |t| t.update(BtreeId::Xattrs, cookie(xpos(1), 1, 0))).unwrap();
    let mut t = bcachefs_rs::btree::BtreeTrans::new(&fs);
    t.update(BtreeId::Xattrs, cookie(xpos(2), 2, 0)).unwrap();
    let mut s = String::new();
    t.updates_to_text(&mut s).unwrap();
    assert!(s.contains("update: btree=xattrs l=0 u64s 6 type cookie 1:14:1"), "{s}");
    let it = t.iter(BtreeId::Xattrs, xpos(1), true).unwrap();
    t.iter_peek(it).unwrap();
    let mut p = String::new();
    t.paths_to_text(&mut p).unwrap();
    assert!(p.contains("btree=xattrs l=0 pos 1:7:1 locks_want 1") && p.contains("l=0 intent"), "{p}");
    let u = format!("{}", fs.last_update.lock().unwrap());
    assert!(u.starts_with("btree_update: fake root made real btree=xattrs l=0 old [0, 0] new ["), "{u}");
    let nodes = h.cache.nodes_with(bcachefs_rs::btree::cache::flags::DIRTY).unwrap();
    let n = format!("{}", nodes[0]);
    assert!(n.contains("btree xattrs level 0") && n.contains("dirty,root"), "{n}");
}

#[test]
fn bad_node_bytes_are_errors_not_panics() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let mut model = Model::new();
    let txs: Vec<Vec<Op>> = (0..200).map(|i| vec![Op::Set(i, i, 1)]).collect();
    run_ops(&h, &fs, &txs, &mut model, 0);
    let roots = fs.roots().unwrap();
    // Flip bytes all over the written nodes; a fresh write side must
    // return errors (or the right keys), never panic.
    let mut seed = 0x1234_5678u64;
    for round in 0..40 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let at = (u64::from(BUCKET) * SECTOR_SIZE as u64 + (seed >> 20) % (64 * 4096)) as usize;
        let saved = h.dev.0.lock().unwrap()[at];
        h.dev.0.lock().unwrap()[at] ^= 1 << (round % 8);
        let cache = BtreeCache::new(1 << 20).unwrap();
        let geo = BtreeGeometry::from_info(&h.info, CsumType::Crc32c, VERSION_CURRENT);
        let fs2 = BtreeFs::new(&h.dev, &h.info, &cache, &h.journal, &h.alloc, geo, &roots).unwrap();
        let r = lockrestart_do(&fs2, |t| {
            let it = t.iter(BtreeId::Xattrs, POS_MIN, false)?;
            let mut n = 0;
            while t.iter_next(it)?.is_some() {
                n += 1;
            }
            Ok(n)
        });
        match r {
            Ok(n) => assert_eq!(n, model.len()),
            Err(e) => assert!(e == Errno::EIO || e == Errno::EUCLEAN, "{e}"),
        }
        h.dev.0.lock().unwrap()[at] = saved;
    }
}

/// Extents: a model of which tag covers each sector of a few inodes.
fn resv(inode: u64, start: u64, end: u64, tag: u32) -> BkeyI {
    let mut v = PVec::new();
    v.extend_from_slice(&tag.to_le_bytes()).unwrap();
    v.extend_from_slice(&[1, 0, 0, 0]).unwrap();
    let mut k = Bkey::new(KeyType::Reservation, Bpos::new(inode, end, u32::MAX), 1);
    k.size = (end - start) as u32;
    BkeyI { k, v }
}

fn extent_model_check(h: &Harness, fs: &BtreeFs<'_>, model: &BTreeMap<(u64, u64), u32>) {
    let disk = reread(h, fs, BtreeId::Extents);
    let mut got = BTreeMap::new();
    let mut last_end: BTreeMap<u64, u64> = BTreeMap::new();
    for (p, ty, size, v) in disk {
        assert_eq!(ty, KeyType::Reservation as u8);
        let start = p.offset - u64::from(size);
        let le = last_end.entry(p.inode).or_insert(0);
        assert!(start >= *le, "extents overlap at {p}");
        *le = p.offset;
        let tag = u32::from_le_bytes(v[..4].try_into().unwrap());
        for s in start..p.offset {
            got.insert((p.inode, s), tag);
        }
    }
    assert_eq!(&got, model);
}

#[test]
fn extent_overwrite_cases() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let mut model = BTreeMap::new();
    let put = |s: u64, e: u64, tag: u32, model: &mut BTreeMap<(u64, u64), u32>| {
        commit_do(&fs, CommitFlags::default(), |t| t.update(BtreeId::Extents, resv(5, s, e, tag))).unwrap();
        for x in s..e {
            model.insert((5, x), tag);
        }
    };
    put(0, 100, 1, &mut model);
    put(50, 150, 2, &mut model); // back of 1 overwritten
    put(20, 30, 3, &mut model); // middle of 1: split
    put(140, 200, 4, &mut model); // front of 2... back of 2 trimmed
    put(0, 25, 5, &mut model); // front of 1 and 3
    put(0, 300, 6, &mut model); // everything
    put(10, 11, 7, &mut model);
    extent_model_check(&h, &fs, &model);
    // Range deletion.
    let mut del = resv(5, 5, 50, 0);
    del.k.key_type = KeyType::Deleted as u8;
    del.v = PVec::new();
    del.k.u64s = 5;
    commit_do(&fs, CommitFlags::default(), |t| t.update(BtreeId::Extents, BkeyI { k: del.k, v: PVec::new() })).unwrap();
    for x in 5..50 {
        model.remove(&(5, x));
    }
    extent_model_check(&h, &fs, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn random_transactions_match_model(txs in proptest::collection::vec(proptest::collection::vec(op(), 1..6), 1..250)) {
        let h = Harness::new(4096, 512);
        let fs = h.fs();
        let mut model = Model::new();
        run_ops(&h, &fs, &txs, &mut model, 40);
        prop_assert_eq!(h.journal.open_res.load(Relaxed), 0);
    }

    #[test]
    fn random_extents_match_model(ops in proptest::collection::vec((0u64..3, 0u64..400, 1u64..120, any::<bool>()), 1..120)) {
        let h = Harness::new(4096, 512);
        let fs = h.fs();
        let mut model = BTreeMap::new();
        for (n, &(inode, s, len, del)) in ops.iter().enumerate() {
            let e = s + len;
            let tag = n as u32 + 1;
            commit_do(&fs, CommitFlags::default(), |t| {
                if del {
                    let mut k = Bkey::new(KeyType::Deleted, Bpos::new(inode, e, u32::MAX), 0);
                    k.size = len as u32;
                    t.update(BtreeId::Extents, BkeyI { k, v: PVec::new() })
                } else {
                    t.update(BtreeId::Extents, resv(inode, s, e, tag))
                }
            }).unwrap();
            for x in s..e {
                if del { model.remove(&(inode, x)); } else { model.insert((inode, x), tag); }
            }
            if n % 30 == 29 {
                extent_model_check(&h, &fs, &model);
            }
        }
        extent_model_check(&h, &fs, &model);
    }
}

#[test]
fn mixed_workload_exercises_every_interior_update() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let mut model = Model::new();
    let mut seed = 0x9e37_79b9u64;
    let mut rnd = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..3000u64 {
        // Grow for a while, then shrink, then grow again.
        let del_weight = if (round / 1000) % 2 == 1 { 8 } else { 3 };
        let tx: Vec<Op> = (0..1 + rnd(5))
            .map(|_| if rnd(10) < del_weight { Op::Del(rnd(1500)) } else { Op::Set(rnd(1500), rnd(1 << 40), rnd(4) as usize) })
            .collect();
        run_ops_quiet(&fs, &tx, &mut model);
        if round % 7 == 6 {
            write_dirty_nodes(&fs).unwrap();
        }
        if round % 250 == 249 {
            check_against_model(&h, &fs, &model);
        }
    }
    check_against_model(&h, &fs, &model);
    let s = &fs.stats;
    let (sp, co, me, nr) =
        (s.splits.load(Relaxed), s.compacts.load(Relaxed), s.merges.load(Relaxed), s.new_roots.load(Relaxed));
    eprintln!("splits {sp} compacts {co} merges {me} new roots {nr} writes {}", s.node_writes.load(Relaxed));
    assert!(sp > 20 && co > 20 && me > 10 && nr >= 1, "splits {sp} compacts {co} merges {me} new roots {nr}");
    assert!(s.node_writes.load(Relaxed) > 500);
}

fn run_ops_quiet(fs: &BtreeFs<'_>, tx: &[Op], model: &mut Model) {
    commit_do(fs, CommitFlags::default(), |t| {
        for o in tx {
            match *o {
                Op::Set(i, tag, x) => t.update(BtreeId::Xattrs, cookie(xpos(i), tag, x))?,
                Op::Del(i) => t.delete(BtreeId::Xattrs, xpos(i))?,
            }
        }
        Ok(())
    })
    .unwrap();
    for o in tx {
        match *o {
            Op::Set(i, tag, x) => {
                model.insert(xpos(i), cookie(xpos(i), tag, x).v.to_vec());
            }
            Op::Del(i) => {
                model.remove(&xpos(i));
            }
        }
    }
}

/// Triggers: each xattr key mirrored as a `set` key in rebalance_work
/// (transactional), and every insert counted (atomic).
struct Mirror {
    atomic: std::sync::atomic::AtomicU64,
    atomic_deletes: std::sync::atomic::AtomicU64,
}

impl bcachefs_rs::btree::BtreeTriggers for Mirror {
    fn trans_trigger(
        &self,
        trans: &mut bcachefs_rs::btree::BtreeTrans<'_>,
        btree: u8,
        _level: u8,
        _old: Option<&BkeyI>,
        new: &BkeyI,
    ) -> Result<(), BchError> {
        if btree != BtreeId::Xattrs as u8 {
            return Ok(());
        }
        let p = Bpos::new(new.k.p.inode, new.k.p.offset, 0);
        if new.k.is_deleted() {
            trans.delete(BtreeId::RebalanceWork, p)
        } else {
            trans.update(BtreeId::RebalanceWork, BkeyI { k: Bkey::new(KeyType::Set, p, 0), v: PVec::new() })
        }
    }
    fn atomic_trigger(&self, _btree: u8, _level: u8, old: Option<(Bkey, &[u8])>, new: (Bkey, &[u8]), _seq: u64) {
        self.atomic.fetch_add(1, Relaxed);
        if old.is_some() && new.0.is_deleted() {
            self.atomic_deletes.fetch_add(1, Relaxed);
        }
    }
}

#[test]
fn triggers_run_and_queue_more_updates() {
    let m = Mirror { atomic: Default::default(), atomic_deletes: Default::default() };
    let h = Harness::new(4096, 512);
    let mut fs = h.fs();
    fs.triggers = Some(bcachefs_rs::util::Shared::Borrowed(&m));
    let mut model = Model::new();
    let txs: Vec<Vec<Op>> = (0..200).map(|i| vec![Op::Set(i, i, 0), Op::Del(i / 3)]).collect();
    run_ops(&h, &fs, &txs, &mut model, 50);
    let mirrored: Vec<Bpos> = reread(&h, &fs, BtreeId::RebalanceWork).into_iter().map(|k| k.0).collect();
    let want: Vec<Bpos> = model.keys().map(|p| Bpos::new(p.inode, p.offset, 0)).collect();
    assert_eq!(mirrored, want);
    // Two updates per transaction in each btree, four atomic triggers;
    // but the first transaction sets and deletes the same key: the later
    // update replaces the earlier one, in both btrees.
    assert_eq!(m.atomic.load(Relaxed), 200 * 4 - 2);
    assert!(m.atomic_deletes.load(Relaxed) > 0);
}

#[test]
fn readers_see_sorted_trees_while_two_writers_split_and_merge() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut models: Vec<Model> = Vec::new();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut scans = 0;
            while !done.load(Relaxed) {
                let keys = scan(&fs, BtreeId::Xattrs);
                assert!(keys.windows(2).all(|w| w[0].0 < w[1].0), "a scan saw keys out of order");
                scans += 1;
            }
            scans
        });
        let writers: Vec<_> = (0..2u64)
            .map(|th| {
                let fs = &fs;
                s.spawn(move || {
                    let mut model = Model::new();
                    let mut seed = 77 + th;
                    for round in 0..800u64 {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let i = th * 5000 + (seed >> 33) % 700;
                        // Grow, then delete most keys in order: merges.
                        let tx = if round >= 500 {
                            let d = th * 5000 + (round - 500) * 2;
                            vec![Op::Del(d), Op::Del(d + 1)]
                        } else {
                            vec![Op::Set(i, round, (seed % 3) as usize)]
                        };
                        run_ops_quiet(fs, &tx, &mut model);
                        if round % 50 == 0 {
                            write_dirty_nodes(fs).unwrap();
                        }
                    }
                    model
                })
            })
            .collect();
        let joined: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        // Stop the reader before looking at how the writers did, so that
        // a failed writer fails the test instead of hanging it.
        done.store(true, Relaxed);
        for j in joined {
            models.push(j.unwrap());
        }
        assert!(reader.join().unwrap() > 0);
    });
    let mut model = models.pop().unwrap();
    model.extend(models.pop().unwrap());
    check_against_model(&h, &fs, &model);
    assert!(fs.stats.splits.load(Relaxed) > 0 && fs.stats.merges.load(Relaxed) > 0);
}

#[allow(dead_code)]
mod common;

/// A volume C wrote (clean unmount): its btrees take new keys, and what
/// the read-only reader finds afterwards is C's keys plus ours.  C's nodes
/// carry `sectors_written` in their pointers, which readers stop at: each
/// appended bset must move the pointer on.
#[test]
fn c_written_volume_takes_inserts_and_reads_back() {
    use bcachefs_rs::format::list::{find_root, read_journal, Root};
    use bcachefs_rs::format::sb::{read_super, ValidateMode};

    let img = common::unpack_image("c-clean-siphash.bchimg");
    let dev = MemDev(std::sync::Mutex::new(img));
    let sbr = read_super(&dev).unwrap();
    let sb = sbr.sb();
    sb.validate(ValidateMode::Read).unwrap();
    let info = FsInfo::from_sb(&sb).unwrap();
    let journal = read_journal(&dev, &info).unwrap();
    let roots: Vec<Option<Root>> =
        (0..bcachefs_rs::journal::NR_BTREES).map(|b| find_root(&info, &journal, b as u32).unwrap()).collect();
    let read_all = |roots: &[Option<Root>], b: BtreeId| {
        let cache = BtreeCache::new(1 << 20).unwrap();
        let keys = JournalKeys::empty();
        let c = BtreeCtx { dev: &dev, info: &info, cache: &cache, roots, keys: &keys };
        let mut it = BtreeIter::new(c, b, POS_MIN, true);
        let mut v = Vec::new();
        while let Some(k) = it.next().unwrap() {
            v.push((k.k.p, k.k.key_type, k.v.to_vec()));
        }
        v
    };
    let before_dirents = read_all(&roots, BtreeId::Dirents);
    let before_xattrs = read_all(&roots, BtreeId::Xattrs);
    assert!(!before_dirents.is_empty());

    // Node space: the last buckets that are all zeroes.
    let d = info.devs[0].unwrap();
    let bucket_bytes = d.bucket_size as usize * SECTOR_SIZE;
    let (mut lo, hi) = (d.nbuckets, d.nbuckets);
    {
        let img = dev.0.lock().unwrap();
        while lo > d.first_bucket + 1 && lo > hi - 16 {
            let b = (lo - 1) as usize;
            if !img[b * bucket_bytes..(b + 1) * bucket_bytes].iter().all(|&x| x == 0) {
                break;
            }
            lo -= 1;
        }
    }
    assert!(hi - lo >= 2, "no free buckets at the end of the image");
    let alloc = BumpAlloc::new(lo * u64::from(d.bucket_size), hi * u64::from(d.bucket_size));
    let cache = BtreeCache::new(8 << 20).unwrap();
    let mj = MemJournal::new();
    let geo = BtreeGeometry::from_info(&info, CsumType::Crc32c, VERSION_CURRENT);
    let fs = BtreeFs::new(&dev, &info, &cache, &mj, &alloc, geo, &roots).unwrap();
    // Before anything changes, the write side reads what C wrote.
    let scanned: Vec<Bpos> = scan(&fs, BtreeId::Dirents).into_iter().map(|(p, _)| p).collect();
    assert_eq!(scanned, before_dirents.iter().map(|k| k.0).collect::<Vec<_>>());
    let mut want = before_xattrs.clone();
    for i in 0..40u64 {
        let k = cookie(Bpos::new(1 << 40, i, u32::MAX), i, 0);
        want.push((k.k.p, k.k.key_type, k.v.to_vec()));
        commit_do(&fs, CommitFlags::default(), |t| t.update(BtreeId::Xattrs, cookie(Bpos::new(1 << 40, i, u32::MAX), i, 0))).unwrap();
    }
    want.sort_by_key(|k| k.0);
    write_dirty_nodes(&fs).unwrap();
    let new_roots = fs.roots().unwrap();
    assert_eq!(read_all(&new_roots, BtreeId::Xattrs), want, "C's keys and ours, read back");
    assert_eq!(read_all(&new_roots, BtreeId::Dirents), before_dirents, "other btrees untouched");
    // The root's pointer changed (new space, or more sectors written).
    assert_ne!(new_roots[BtreeId::Xattrs as usize].unwrap().val, roots[BtreeId::Xattrs as usize].unwrap().val);
    assert_eq!(mj.pins_held(), 0);
}

#[test]
fn a_root_pointer_claiming_too_many_levels_is_an_error() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    commit_do(&fs, CommitFlags::default(), |t| t.update(BtreeId::Xattrs, cookie(xpos(1), 1, 0))).unwrap();
    write_dirty_nodes(&fs).unwrap();
    let mut roots = fs.roots().unwrap();
    roots[BtreeId::Xattrs as usize].as_mut().unwrap().level = 9;
    let cache = BtreeCache::new(1 << 20).unwrap();
    let geo = BtreeGeometry::from_info(&h.info, CsumType::Crc32c, VERSION_CURRENT);
    let fs2 = BtreeFs::new(&h.dev, &h.info, &cache, &h.journal, &h.alloc, geo, &roots).unwrap();
    let r = lockrestart_do(&fs2, |t| t.get(BtreeId::Xattrs, xpos(1)));
    assert!(matches!(r, Err(Errno::EUCLEAN) | Err(Errno::EIO)), "{r:?}");
    let r = commit_do(&fs2, CommitFlags::default(), |t| t.update(BtreeId::Xattrs, cookie(xpos(2), 2, 0)));
    assert!(r.is_err());
}

#[test]
fn every_committed_key_is_journalled_byte_exact() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    for i in 0..300u64 {
        commit_do(&fs, CommitFlags::default(), |t| t.update(BtreeId::Xattrs, cookie(xpos(i), i, (i % 3) as usize))).unwrap();
    }
    let e = h.journal.entries.lock().unwrap();
    for i in 0..300u64 {
        let k = cookie(xpos(i), i, (i % 3) as usize);
        let mut want = k.k;
        want.u64s = (5 + k.v.len() / 8) as u8;
        let mut bytes = want.to_bytes().to_vec();
        bytes.extend_from_slice(&k.v);
        let n = e.iter().filter(|x| x.1 == EntryType::BtreeKeys as u8 && x.2 == BtreeId::Xattrs as u8 && x.3 == 0 && x.4 == bytes).count();
        assert_eq!(n, 1, "key {i} journalled once");
    }
    // Interior updates journalled their parent keys at level 1 and the
    // roots as btree_root entries, each a btree_ptr_v2 key.
    let interior: Vec<_> = e.iter().filter(|x| x.3 >= 1 || x.1 == EntryType::BtreeRoot as u8).collect();
    assert!(interior.len() > 3);
    for x in interior {
        let kb: [u8; 40] = x.4[..40].try_into().unwrap();
        let k = Bkey::from_bytes(&kb);
        assert!(k.key_type == KeyType::BtreePtrV2 as u8 || k.key_type == KeyType::Deleted as u8, "{k}");
    }
    // No reservation leaked.
    assert_eq!(h.journal.open_res.load(Relaxed), 0);
}

#[test]
fn iterators_with_updates_see_the_transactions_own_changes() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let mut model = Model::new();
    let txs: Vec<Vec<Op>> = (0..400).map(|i| vec![Op::Set(i * 3 % 1200, i, 0)]).collect();
    run_ops(&h, &fs, &txs, &mut model, 0);
    let mut seed = 5u64;
    for _round in 0..20 {
        let mut pending = model.clone();
        let mut ops = Vec::new();
        for _ in 0..30 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let i = (seed >> 33) % 1300;
            if (seed >> 20) % 3 == 0 {
                ops.push(Op::Del(i));
                pending.remove(&xpos(i));
            } else {
                ops.push(Op::Set(i, seed, 1));
                pending.insert(xpos(i), cookie(xpos(i), seed, 1).v.to_vec());
            }
        }
        let (fwd, back) = lockrestart_do(&fs, |t| {
            for o in &ops {
                match *o {
                    Op::Set(i, tag, x) => t.update(BtreeId::Xattrs, cookie(xpos(i), tag, x))?,
                    Op::Del(i) => t.delete(BtreeId::Xattrs, xpos(i))?,
                }
            }
            let it = t.iter(BtreeId::Xattrs, POS_MIN, false)?;
            t.iter_with_updates(it, true);
            let mut fwd = Vec::new();
            while let Some(k) = t.iter_next(it)? {
                fwd.push((k.k.p, k.v.to_vec()));
            }
            let mut back = Vec::new();
            while let Some(k) = t.iter_prev(it)? {
                back.push(k.k.p);
            }
            Ok((fwd, back))
        })
        .unwrap();
        assert_eq!(fwd, pending.iter().map(|(p, v)| (*p, v.clone())).collect::<Vec<_>>());
        assert_eq!(back, pending.keys().rev().copied().collect::<Vec<_>>());
        // Commit half the rounds.
        if seed % 2 == 0 {
            run_ops_quiet(&fs, &ops, &mut model);
            assert_eq!(model, pending);
        }
    }
    check_against_model(&h, &fs, &model);
}

/// What recovery would see after a crash now: the device as written, the
/// journal from the oldest pinned sequence number on (what reclaim could
/// not drop), the current roots (each jset carries them), and the journal
/// keys laid over the nodes by the read-only reader.
fn recover(h: &Harness, fs: &BtreeFs<'_>, btree: BtreeId) -> Vec<(Bpos, Vec<u8>)> {
    use bcachefs_rs::format::jset::{jset_magic, JsetBuilder};
    use bcachefs_rs::format::list::Journal;
    use bcachefs_rs::journal::res::JournalSink;

    let last_seq = {
        let pins = h.journal.pins.lock().unwrap();
        pins.iter().filter(|(_, &n)| n > 0).map(|(&s, _)| s).min().unwrap_or_else(|| h.journal.cur_seq())
    };
    let mut by_seq: BTreeMap<u64, Vec<bcachefs_rs::btree::testing::Entry>> = BTreeMap::new();
    for e in h.journal.entries.lock().unwrap().iter().filter(|e| e.0 >= last_seq) {
        by_seq.entry(e.0).or_default().push(e.clone());
    }
    let mut jsets = PVec::new();
    let mut newest = last_seq;
    for (seq, es) in by_seq.iter() {
        let mut b = JsetBuilder::new(*seq, last_seq, VERSION_CURRENT, jset_magic(&UUID)).unwrap();
        for (_, ty, bt, l, d) in es {
            b.add(*ty, *bt, *l, d).unwrap();
        }
        let j = b.finish(CsumType::Crc32c, 512).unwrap();
        let mut v = PVec::new();
        v.extend_from_slice(&j).unwrap();
        jsets.push(v).unwrap();
        newest = *seq;
    }
    let journal = Journal { jsets, last_seq, blacklist_seq: newest + 1 };
    let keys = JournalKeys::build(&h.info, &journal).unwrap();
    let roots = fs.roots().unwrap();
    let cache = BtreeCache::new(1 << 20).unwrap();
    let c = BtreeCtx { dev: &h.dev, info: &h.info, cache: &cache, roots: &roots, keys: &keys };
    let mut it = BtreeIter::new(c, btree, POS_MIN, false);
    let mut out = Vec::new();
    while let Some(k) = it.next().unwrap() {
        out.push((k.k.p, k.v.to_vec()));
    }
    out
}

/// At any moment, written nodes plus the journal entries still pinned
/// hold exactly the committed state: nodes are written before anything
/// points to them, and no pin is dropped before its keys are reachable
/// on disk.
#[test]
fn written_nodes_and_pinned_journal_recover_the_model_at_any_point() {
    let h = Harness::new(4096, 512);
    let fs = h.fs();
    let mut model = Model::new();
    let mut seed = 0xdead_beefu64;
    let mut rnd = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..1500u64 {
        let del = if (round / 500) % 2 == 1 { 7 } else { 3 };
        let tx: Vec<Op> = (0..1 + rnd(4))
            .map(|_| if rnd(10) < del { Op::Del(rnd(900)) } else { Op::Set(rnd(900), rnd(1 << 30), rnd(3) as usize) })
            .collect();
        run_ops_quiet(&fs, &tx, &mut model);
        // Write a random few of the dirty nodes (the journal reclaim and
        // the node flushes of a running filesystem, in no useful order).
        if rnd(3) == 0 {
            let dirty = h.cache.nodes_with(bcachefs_rs::btree::cache::flags::DIRTY).unwrap();
            for n in dirty.iter() {
                if rnd(2) == 0 {
                    bcachefs_rs::btree::node_write(&fs, n).unwrap();
                }
            }
        }
        if round % 50 == 49 {
            let want: Vec<(Bpos, Vec<u8>)> = model.iter().map(|(p, v)| (*p, v.clone())).collect();
            assert_eq!(recover(&h, &fs, BtreeId::Xattrs), want, "recovery after round {round}");
        }
    }
    check_against_model(&h, &fs, &model);
    let want: Vec<(Bpos, Vec<u8>)> = model.iter().map(|(p, v)| (*p, v.clone())).collect();
    assert_eq!(recover(&h, &fs, BtreeId::Xattrs), want);
}

/// The btree write buffer over the btree alone: buffered lru updates are
/// journalled as `write_buffer_keys` and not inserted; handed to the
/// write buffer (with the pin the journal's write would take) and
/// flushed, they reach the leaves without a journal copy, through splits
/// of tiny nodes, the newest per position winning; the write buffer's
/// pins go, the nodes' pins go with their writes.
#[test]
fn write_buffer_flush_inserts_without_journalling() {
    use bcachefs_rs::btree::write_buffer::BtreeWriteBuffer;
    use bcachefs_rs::journal::res::{JournalSink, PinOwner};
    use bcachefs_rs::journal::write::JsetEntryHook;
    let h = Harness::new(2048, 512);
    let mut fs = h.fs();
    fs.write_buffer = true;
    let fs = fs;
    let set = |i: u64| BkeyI { k: Bkey::new(KeyType::Set, Bpos::pos(1, i), 0), v: PVec::new() };
    let del = |i: u64| BkeyI { k: Bkey::new(KeyType::Deleted, Bpos::pos(1, i), 0), v: PVec::new() };
    for r in 0..10u64 {
        commit_do(&fs, CommitFlags::default(), |t| {
            for i in 0..50 {
                t.update_buffered(BtreeId::Lru, set(r * 50 + i))?;
            }
            if r > 0 {
                // Deletes a key an earlier commit set.
                t.update_buffered(BtreeId::Lru, del((r - 1) * 50))?;
            }
            Ok(())
        })
        .unwrap();
    }
    assert!(scan(&fs, BtreeId::Lru).is_empty(), "buffered keys inserted at commit");
    let entries = h.journal.entries.lock().unwrap().clone();
    assert_eq!(entries.len(), 500 + 9);
    assert!(entries.iter().all(|e| e.1 == EntryType::WriteBufferKeys as u8 && e.2 == BtreeId::Lru as u8));
    let wb = BtreeWriteBuffer::new().unwrap();
    let mut last = 0;
    for (seq, _, btree, _, data) in entries.iter() {
        if *seq != last {
            h.journal.pin_get(*seq, PinOwner::WriteBuffer);
            last = *seq;
        }
        wb.write_buffer_keys(*seq, *btree, data).unwrap();
    }
    assert_eq!(wb.stats().nr_keys, 509);
    let splits = fs.stats.splits.load(Relaxed);
    assert_eq!(wb.flush(&fs).unwrap(), 500, "one key per position");
    assert!(fs.stats.splits.load(Relaxed) > splits, "no split");
    let after = h.journal.entries.lock().unwrap();
    assert!(
        after[509..].iter().all(|e| e.3 > 0 || e.1 != EntryType::BtreeKeys as u8),
        "the flush journalled leaf keys again"
    );
    drop(after);
    let want: Vec<Bpos> = (0..500u64).filter(|i| i % 50 != 0 || *i == 450).map(|i| Bpos::pos(1, i)).collect();
    let got: Vec<Bpos> = scan(&fs, BtreeId::Lru).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, want);
    assert_eq!(wb.stats().nr_keys, 0);
    write_dirty_nodes(&fs).unwrap();
    assert_eq!(h.journal.pins_held(), 0, "pins left: {:?}", h.journal.pins.lock().unwrap());
    let disk: Vec<Bpos> = reread(&h, &fs, BtreeId::Lru).into_iter().map(|(p, ..)| p).collect();
    assert_eq!(disk, want);
}
