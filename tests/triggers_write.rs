// SPDX-License-Identifier: GPL-2.0
//! The commit's triggers (`src/triggers.rs`) keep the derived state in
//! step: random extent commits (inserts, overwrites, range deletions) on
//! a volume C initialized, with the btrees growing (the empty extents
//! btree's fake root made real, splits with enough keys), written out
//! through the real journal and node writes, then read back by the
//! read-only mount: `gc::check_fs` recomputes alloc, backpointers,
//! accounting, freespace, lru and bucket_gens from the keys and must find
//! every stored value right.

use bcachefs_rs::util::Shared;
use std::sync::Arc;

use bcachefs_rs::alloc::foreground::{Allocator, Watermark, WritePointSpec};
use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::btree::testing::MemDev as WMemDev;
use bcachefs_rs::fs_rw::SharedDev;
use bcachefs_rs::btree::{commit_do, write_dirty_nodes, BtreeCache, BtreeFs, BtreeGeometry, CommitFlags};
use bcachefs_rs::format::bkey::{Bkey, BkeyI, BtreeId, KeyType};
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::list::FsInfo;
use bcachefs_rs::format::sb::read_super;
use bcachefs_rs::format::val::extent::ExtentPtr;
use bcachefs_rs::alloc::adapters::BtreeNodeReserve;
use bcachefs_rs::gc::check_fs;
use bcachefs_rs::journal;
use bcachefs_rs::journal::types::{JournalGeometry, JournalOpts};
use bcachefs_rs::journal::write::{start_after_read, Journal};
use bcachefs_rs::platform::Vec as PVec;
use bcachefs_rs::triggers::{FsTriggers, NodePtrTap};

mod common;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn extent(inode: u64, start: u64, sectors: u32, dev_sector: u64, gen: u8) -> BkeyI {
    let mut k = Bkey::new(KeyType::Extent, Bpos::new(inode, start + u64::from(sectors), u32::MAX), 1);
    k.size = sectors;
    let p = ExtentPtr { offset: dev_sector, dev: 0, gen, ..Default::default() };
    let mut v = PVec::new();
    v.extend_from_slice(&p.encode().to_le_bytes()).unwrap();
    BkeyI { k, v }
}

fn punch(inode: u64, start: u64, end: u64) -> BkeyI {
    let mut k = Bkey::new(KeyType::Deleted, Bpos::new(inode, end, u32::MAX), 0);
    k.size = (end - start) as u32;
    BkeyI { k, v: PVec::new() }
}

/// Runs `ops` random transactions of extent inserts and punches on the
/// C-initialized fixture, writes everything, and returns the image.
/// `expect_splits`: the run must have split nodes.
fn run(ops: usize, seed: u64, expect_splits: bool) -> Vec<u8> {
    let img = common::unpack_image("c-fresh.bchimg");
    let wdev = Arc::new(WMemDev(std::sync::Mutex::new(img)));
    let dev = SharedDev(wdev.clone());
    let sbr = read_super(&dev).unwrap();
    let sb = sbr.sb();
    let info = FsInfo::from_sb(&sb).unwrap();
    let jgeo = JournalGeometry::from_sb(&sb).unwrap();
    let (csum, version) = (jgeo.csum_type, jgeo.version);
    let jr = journal::read(&dev, &info).unwrap();
    let roots = journal::btree_roots(&info, &jr.journal).unwrap();
    let start = start_after_read(&dev, &jgeo, &jr, false).unwrap();
    let cur_seq = start.cur_seq;
    let j = Journal::new(SharedDev(wdev.clone()), jgeo, JournalOpts::default(), start).unwrap();
    for r in roots.iter().flatten() {
        let vlen = r.key.val_bytes().min(r.val.len());
        j.set_btree_root_key(r.btree_id as u8, r.level, &r.key, &r.val[..vlen]).unwrap();
    }
    j.replay_done();
    let alloc = Allocator::new(&sb).unwrap();
    let mut trig = FsTriggers::new(&info, cur_seq << 32).unwrap();
    trig.open_buckets = Some(Shared::Borrowed(&alloc));
    let tap = NodePtrTap { inner: Shared::Borrowed(&j), triggers: Shared::Borrowed(&trig) };
    let cache = BtreeCache::new(64 << 20).unwrap();
    let geo = BtreeGeometry::from_info(&info, csum, version);
    let nodes = BtreeNodeReserve::new(&alloc, None, bcachefs_rs::alloc::foreground::Watermark::Btree).unwrap();
    let mut fs = BtreeFs::new(&dev, &info, &cache, &tap, &nodes, geo, &roots).unwrap();
    fs.triggers = Some(Shared::Borrowed(&trig));
    alloc.load(&fs).unwrap();
    trig.node_ptrs_load(&fs).unwrap();
    let free0 = alloc.with_dev(info.dev_idx, |d| d.buckets_free(Watermark::Normal)).unwrap();
    assert!(free0 > 100, "{free0} free buckets");

    let flush_all = || {
        for _ in 0..8 {
            write_dirty_nodes(&fs).unwrap();
            trig.after_commit(&fs).unwrap();
            if !trig.node_ptrs_pending() && cache.nodes_with(bcachefs_rs::btree::node::flags::DIRTY).unwrap().is_empty() {
                break;
            }
        }
        j.reclaim();
    };
    let mut rng = Lcg(seed);
    for i in 0..ops {
        if i % 50 == 49 {
            // No journal flusher can borrow the btree yet: reclaim by hand.
            flush_all();
        }
        let nr = 1 + rng.below(4);
        let mut keys = Vec::new();
        let mut held = Vec::new();
        for _ in 0..nr {
            let inode = 4096 + rng.below(3);
            let start = rng.below(if expect_splits { 1 << 30 } else { 4000 });
            if rng.below(5) == 0 {
                keys.push(punch(inode, start, start + 1 + rng.below(200)));
            } else {
                let (p, n, obs) = alloc.alloc_sectors(&fs, WritePointSpec::Hashed(1), 1 + rng.below(16) as u32, Watermark::Normal).unwrap();
                let p = p.get(0).unwrap();
                held.push(obs);
                keys.push(extent(inode, start, n, p.offset, p.gen));
            }
        }
        commit_do(&fs, CommitFlags::default(), |t| {
            for k in keys.iter() {
                let k = BkeyI { k: k.k, v: { let mut v = PVec::new(); v.extend_from_slice(&k.v)?; v } };
                t.update(BtreeId::Extents, k)?;
            }
            Ok(())
        })
        .unwrap();
        trig.after_commit(&fs).unwrap();
        // The extents are in: their buckets' references go (the write
        // point keeps its own), and the nodes' once their pointers are
        // marked.
        for mut o in held {
            alloc.open_buckets_put(&mut o);
        }
        if !trig.node_ptrs_pending() {
            nodes.release();
        }
    }
    flush_all();
    nodes.release();
    let mut text = String::new();
    trig.to_text(&mut text).unwrap();
    alloc.open_buckets_to_text(&mut text, None).unwrap();
    alloc.dev_alloc_debug_to_text(&mut text, info.dev_idx).unwrap();
    assert!(text.contains("changes waiting") && text.contains("reserves:"), "{text}");
    if expect_splits {
        assert!(fs.stats.splits.load(std::sync::atomic::Ordering::Relaxed) > 0, "no split");
    }
    j.stop().unwrap();
    // What a clean shutdown writes into the superblock (BchFs::shutdown).
    let mut sbuf = bcachefs_rs::format::sb_write::SbBuf::from_sb(&sb).unwrap();
    bcachefs_rs::sb_marks::sb_mark_written(&mut sbuf, &trig, info.dev_idx, info.node_bytes / 512).unwrap();
    sbuf.write_super(&dev).unwrap();
    let img = wdev.0.lock().unwrap().clone();
    img
}

fn check(img: Vec<u8>) -> Vec<String> {
    let fs = Fs::open(common::MemDev(img), &OpenOpts::default()).unwrap();
    check_fs(&fs).unwrap().iter().map(|m| m.to_string()).collect()
}

#[test]
fn random_extent_commits_keep_derived_state_exact() {
    let m = check(run(60, 1, false));
    assert!(m.is_empty(), "{} mismatches:\n{}", m.len(), m.join("\n"));
}

#[test]
#[ignore = "slow: thousands of commits, splits"]
fn many_extent_commits_with_splits_keep_derived_state_exact() {
    let m = check(run(4000, 7, true));
    assert!(m.is_empty(), "{} mismatches:\n{}", m.len(), m.join("\n"));
}
