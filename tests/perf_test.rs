// SPDX-License-Identifier: GPL-2.0
//! C's btree perf tests (`perf_test`, `fs/bcachefs/tests.c`) on our
//! btree: each leaves the xattrs btree as C's does, with one and two
//! threads, the volume clean after `seq_delete` and a clean shutdown, and
//! the result printed as C prints it.

#[path = "common/volume.rs"]
mod volume;

use std::sync::Arc;

use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::btree::lockrestart_do;
use bcachefs_rs::format::bkey::BtreeId;
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::fs_rw::{BchFs, BchFsOpen, SharedDev};
use bcachefs_rs::gc::check_fs;
use bcachefs_rs::perf_test::{perf_test_run, PerfTest, PerfTestResult, PERF_TESTS};
use bcachefs_rs::platform::BlockDev;

/// The offsets of every key of inode 0 in the xattrs btree.
fn inode0_keys<D: BlockDev + Send + Sync + 'static>(fs: &BchFs<D>) -> Vec<u64> {
    lockrestart_do(&fs.btree, |t| {
        let mut v = Vec::new();
        let it = t.iter(BtreeId::Xattrs, Bpos::new(0, 0, 0), false)?;
        while let Some(k) = t.iter_peek(it)? {
            if k.k.p.inode != 0 {
                break;
            }
            assert_eq!(k.k.p.snapshot, u32::MAX);
            v.push(k.k.p.offset);
            t.iter_next(it)?;
        }
        Ok(v)
    })
    .unwrap()
}

fn run(fs: &Arc<BchFs<SharedDev<bcachefs_rs::btree::testing::MemDev>>>, name: &str, nr: u64, threads: u64) {
    let test = PerfTest::from_name(name).unwrap();
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            let fs = fs.clone();
            std::thread::spawn(move || perf_test_run(&*fs, test, nr / threads, 1000 * i + nr).unwrap())
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn perf_tests_do_what_cs_do() {
    let mem = volume::initialized(64 << 20, &[], 3);
    let fs = Arc::new(BchFs::start(BchFsOpen::open(SharedDev(mem.clone())).unwrap(), volume::INIT_NS + 1, 5).unwrap());
    for threads in [1, 2] {
        run(&fs, "seq_insert", 2000, threads);
        assert_eq!(inode0_keys(&fs), (0..2000 / threads).collect::<Vec<_>>(), "seq_insert, {threads} threads");
        run(&fs, "seq_lookup", 2000, threads);
        run(&fs, "seq_overwrite", 2000, threads);
        assert_eq!(inode0_keys(&fs).len() as u64, 2000 / threads);
        run(&fs, "rand_insert", 3000, threads);
        run(&fs, "rand_insert_multi", 800, threads);
        let n = inode0_keys(&fs).len() as u64;
        assert_eq!(n, 2000 / threads + 3000 + 800, "random inserts, {threads} threads");
        run(&fs, "rand_lookup", 1000, threads);
        run(&fs, "rand_mixed", 1000, threads);
        assert_eq!(inode0_keys(&fs).len() as u64, n, "rand_mixed only overwrites");
        run(&fs, "rand_delete", 1000, threads);
        assert_eq!(inode0_keys(&fs).len() as u64, n - 1000, "rand_delete deletes one key each");
        run(&fs, "seq_delete", 1, threads);
        assert!(inode0_keys(&fs).is_empty(), "seq_delete leaves no key");
    }
    fs.shutdown().unwrap();
    drop(fs);
    let ro = Fs::open(SharedDev(mem), &OpenOpts::default()).unwrap();
    let m = check_fs(&ro).unwrap();
    assert!(m.is_empty(), "{} mismatches after the perf tests", m.len());
}

#[test]
fn names_and_result_lines_are_cs() {
    assert_eq!(PERF_TESTS.len(), 9);
    for (name, t) in PERF_TESTS {
        assert_eq!(PerfTest::from_name(name), Some(t));
        assert_eq!(t.name(), name);
    }
    assert_eq!(PerfTest::from_name("test_delete"), None);
    // C: "%-12s %s with %u threads in %5llu sec, %5llu nsec per iter, %5s per sec"
    let r = PerfTestResult { test: PerfTest::RandInsert, nr: 100_000, threads: 1, ns: 2_500_000_000 };
    assert_eq!(r.to_string(), "rand_insert: 97.7 KiB with 1 threads in     2 sec, 25000 nsec per iter, 39.1 KiB per sec");
    let r = PerfTest::RandInsertMulti;
    let r = PerfTestResult { test: r, nr: 1_000_000, threads: 2, ns: 1_000_000_000 };
    assert_eq!(r.to_string(), "rand_insert_multi: 977 KiB with 2 threads in     1 sec,  2000 nsec per iter, 977 KiB per sec");
}
