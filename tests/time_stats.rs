// SPDX-License-Identifier: GPL-2.0
//! The time stats of a read-write mount (`time_stats/` in sysfs) count
//! the operations the mount does: data writes and reads, node splits
//! and reads, journal writes and flushes; their text is C's layout.

#[path = "common/volume.rs"]
mod volume;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bcachefs_rs::btree::testing::MemDev;
use bcachefs_rs::fs_common::fs_ops::{create, NewInode};
use bcachefs_rs::fs_common::io_write::write_data;
use bcachefs_rs::fs_common::{inode_get, lookup, read_data, root_subvol, ExtentCache};
use bcachefs_rs::fs_rw::{writepoint_hashed, BchFs, BchFsOpen, FsDataAlloc, SharedDev, RECORDED_TIME_STATS};
use bcachefs_rs::util::time_stats::TimeStatId as T;

fn write_file(fs: &BchFs<SharedDev<MemDev>>, i: u64, len: usize) {
    let _g = fs.op_lock();
    let sv = root_subvol(fs).unwrap();
    let mut t = fs.trans();
    let n = NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 };
    let u = create(&mut t, &sv, sv.root_inum, format!("file-{i}").as_bytes(), &n).unwrap();
    let mut a = FsDataAlloc::new(fs, writepoint_hashed(i));
    write_data(&mut t, &mut a, &sv, u.inum, 0, &vec![i as u8; len]).unwrap();
}

fn read_file(fs: &BchFs<SharedDev<MemDev>>, i: u64) -> Vec<u8> {
    let _g = fs.op_lock();
    let sv = root_subvol(fs).unwrap();
    let root = inode_get(fs, &sv, sv.root_inum).unwrap();
    let (inum, _) = lookup(fs, &sv, &root, format!("file-{i}").as_bytes()).unwrap().unwrap();
    let ino = inode_get(fs, &sv, inum).unwrap();
    let mut buf = vec![0u8; (ino.size as usize).next_multiple_of(512)];
    read_data(fs, &sv, &ino, 0, &mut buf, &mut ExtentCache::default()).unwrap();
    buf
}

fn count(fs: &BchFs<SharedDev<MemDev>>, id: T) -> u64 {
    fs.time_stats(id).expect("recorded").count()
}

#[test]
fn a_mount_times_its_operations() {
    // Small nodes, so that a few hundred files split leaves.
    let mem: Arc<MemDev> = volume::initialized(64 << 20, &[("btree_node_size", 32 << 10)], 3);
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    let fs = BchFs::start(open, volume::INIT_NS + 1, 5).unwrap();
    for id in RECORDED_TIME_STATS {
        assert!(fs.time_stats(id).is_some(), "{}", id.name());
    }
    assert!(fs.time_stats(T::btree_gc).is_none());
    let writes = count(&fs, T::data_write);
    const N: u64 = 300;
    for i in 0..N {
        write_file(&fs, i, 4096);
    }
    assert_eq!(count(&fs, T::data_write) - writes, N, "one data_write per write operation");
    let reads = count(&fs, T::data_read);
    for i in 0..N {
        assert_eq!(read_file(&fs, i), vec![i as u8; 4096]);
    }
    assert!(count(&fs, T::data_read) - reads >= N, "a device read per file at least");

    let s = &fs.btree.stats;
    assert!(s.splits.load(Relaxed) > 0, "the test should split nodes");
    assert_eq!(count(&fs, T::btree_node_split), s.splits.load(Relaxed));
    assert!(count(&fs, T::btree_interior_update_foreground) >= s.splits.load(Relaxed));
    let d = fs.time_stats(T::btree_node_split).unwrap().data();
    assert!(d.min_duration <= d.max_duration && d.max_duration <= d.total_duration);

    let flushes = count(&fs, T::journal_flush_seq);
    let flush_writes = count(&fs, T::journal_flush_write);
    fs.journal_flush().unwrap();
    assert!(count(&fs, T::journal_flush_write) > flush_writes, "a flush write");
    assert_eq!(count(&fs, T::journal_flush_seq), flushes + 1, "one wait for a flush");
    // Already flushed: not timed.
    fs.journal_flush().unwrap();
    assert_eq!(count(&fs, T::journal_flush_seq), flushes + 1);

    // The text: C's layout, the count first.
    let mut text = String::new();
    fs.time_stats_to_text(T::data_write, &mut text).unwrap();
    assert!(text.starts_with(&format!("count:     {}\n", N + writes)), "{text}");
    assert!(text.contains("                       since mount        recent\n"), "{text}");
    assert!(text.contains("duration of events\n  min:"), "{text}");
    assert!(text.contains("time between events\n"), "{text}");
    assert_eq!(text.lines().count(), 13, "{text}");

    // Writing resets.
    fs.time_stats(T::data_write).unwrap().reset();
    assert_eq!(count(&fs, T::data_write), 0);

    fs.shutdown().unwrap();
    drop(fs);

    // A new mount reads nodes from disk: btree_node_read counts them.
    let open = BchFsOpen::open(SharedDev(mem)).unwrap();
    let fs = BchFs::start(open, volume::INIT_NS + 2, 6).unwrap();
    for i in 0..N {
        assert_eq!(read_file(&fs, i), vec![i as u8; 4096]);
    }
    let nr = count(&fs, T::btree_node_read);
    assert!(nr > 0, "nodes were read");
    assert_eq!(count(&fs, T::btree_node_read_done), nr);
    fs.shutdown().unwrap();
}
