// SPDX-License-Identifier: GPL-2.0
//! Benchmarks of the btree write side (not tests): one-key commits into a
//! growing tree, ten-key commits, and writing a dirty node.  In-memory
//! device and journal.  `cargo bench --bench btree_write`.

use std::hint::black_box;

use bcachefs_rs::btree::testing::{BumpAlloc, MemDev, MemJournal};
use bcachefs_rs::btree::trans::{BtreeGeometry, CommitFlags};
use bcachefs_rs::btree::{commit_do, write_dirty_nodes, BtreeCache, BtreeFs};
use bcachefs_rs::checksum::CsumType;
use bcachefs_rs::format::bkey::{Bkey, BkeyI, BtreeId, KeyType};
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::list::FsInfo;
use bcachefs_rs::format::val::DevInfo;
use bcachefs_rs::format::version::VERSION_CURRENT;
use bcachefs_rs::platform::Vec as PVec;
use criterion::{criterion_main, Criterion};

const BUCKET: u32 = 256;
const NBUCKETS: u64 = 4096;

fn info() -> FsInfo {
    let mut devs = PVec::new();
    devs.push(Some(DevInfo { bucket_size: BUCKET, first_bucket: 1, nbuckets: NBUCKETS, durability: 1, failed: false }))
        .unwrap();
    FsInfo {
        uuid: [3; 16],
        block_bytes: 4096,
        node_bytes: 256 * 1024,
        dev_idx: 0,
        devs,
        journal_buckets: PVec::new(),
        blacklist: PVec::new(),
        clean: PVec::new(),
    }
}

fn key(i: u64) -> BkeyI {
    let mut v = PVec::new();
    v.extend_from_slice(&i.to_le_bytes()).unwrap();
    BkeyI { k: Bkey::new(KeyType::Cookie, Bpos::new(1 + i % 1000, i * 8, 1), 1), v }
}

fn btree_write(c: &mut Criterion) {
    let info = info();
    let dev = MemDev::new((NBUCKETS * u64::from(BUCKET)) as usize * 512);
    let cache = BtreeCache::new(256 << 20).unwrap();
    let journal = MemJournal::new();
    let alloc = BumpAlloc::new(u64::from(BUCKET), NBUCKETS * u64::from(BUCKET));
    let geo = BtreeGeometry::from_info(&info, CsumType::Crc32c, VERSION_CURRENT);
    let roots = vec![None; bcachefs_rs::journal::NR_BTREES];
    let fs = BtreeFs::new(&dev, &info, &cache, &journal, &alloc, geo, &roots).unwrap();
    let mut i = 0u64;
    c.bench_function("btree commit, 1 key", |b| {
        b.iter(|| {
            i += 1;
            commit_do(&fs, CommitFlags::default(), |t| t.update(BtreeId::Xattrs, key(i))).unwrap();
        })
    });
    c.bench_function("btree commit, 10 keys", |b| {
        b.iter(|| {
            commit_do(&fs, CommitFlags::default(), |t| {
                for _ in 0..10 {
                    i += 1;
                    t.update(BtreeId::Xattrs, key(i))?;
                }
                Ok(())
            })
            .unwrap();
        })
    });
    c.bench_function("btree node write (one dirty leaf)", |b| {
        b.iter(|| {
            i += 1;
            commit_do(&fs, CommitFlags::default(), |t| t.update(BtreeId::Xattrs, key(i % 5000))).unwrap();
            black_box(write_dirty_nodes(&fs).unwrap());
        })
    });
}

fn benches() {
    let mut c = Criterion::default().configure_from_args().sample_size(20);
    btree_write(&mut c);
}

criterion_main!(benches);
