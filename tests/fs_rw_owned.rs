// SPDX-License-Identifier: GPL-2.0
//! The read-write filesystem as a mount keeps it (`BchFs::start`): an
//! owned, `'static`, `Send + Sync` value, not a closure's borrow.  It is
//! moved to other threads, read through its `BtreeRead` (what the kernel's
//! lookup, readdir and read_folio use on a read-write mount), shut down,
//! and the volume then reads the same through the read-only `Fs` with
//! `check_fs` clean.

#[path = "common/volume.rs"]
mod volume;

use std::sync::Arc;

use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::btree::testing::MemDev;
use bcachefs_rs::fs_common::fs_ops::{create, NewInode};
use bcachefs_rs::fs_common::io_write::write_data;
use bcachefs_rs::fs_common::{inode_get, lookup, read_data, root_subvol, BtreeRead, ExtentCache};
use bcachefs_rs::fs_rw::{writepoint_hashed, BchFs, BchFsOpen, FsDataAlloc, SharedDev};
use bcachefs_rs::gc::check_fs;

fn content(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 131 + j * 7) as u8).collect()
}

/// Creates `f<i>` in the root with `len` bytes, through `fs`.
fn write_file<D: bcachefs_rs::platform::BlockDev + Send + Sync + 'static>(fs: &BchFs<D>, i: u64, len: usize) {
    let _g = fs.op_lock();
    let sv = root_subvol(fs).unwrap();
    let mut t = fs.trans();
    let name = format!("f{i}");
    let n = NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 };
    let u = create(&mut t, &sv, sv.root_inum, name.as_bytes(), &n).unwrap();
    let mut a = FsDataAlloc::new(fs, writepoint_hashed(i));
    write_data(&mut t, &mut a, &sv, u.inum, 0, &content(i, len)).unwrap();
}

/// Reads `f<i>` back through any `BtreeRead`.
fn read_file(r: &(impl BtreeRead + ?Sized), i: u64) -> Vec<u8> {
    let sv = root_subvol(r).unwrap();
    let root = inode_get(r, &sv, sv.root_inum).unwrap();
    let (inum, _) = lookup(r, &sv, &root, format!("f{i}").as_bytes()).unwrap().expect("file missing");
    let ino = inode_get(r, &sv, inum).unwrap();
    let mut buf = vec![0u8; (ino.size as usize).next_multiple_of(512)];
    read_data(r, &sv, &ino, 0, &mut buf, &mut ExtentCache::default()).unwrap();
    buf.truncate(ino.size as usize);
    buf
}

#[test]
fn an_owned_mount_moves_between_threads_and_reads_its_own_writes() {
    let mem: Arc<MemDev> = volume::initialized(64 << 20, &[], 7);
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    let fs = Arc::new(BchFs::start(open, volume::INIT_NS + 1, 9).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|w| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for i in 0..8 {
                    let n = w * 100 + i;
                    write_file(&*fs, n, 1000 + 3000 * i as usize);
                    let _g = fs.op_lock();
                    assert_eq!(read_file(&*fs, n), content(n, 1000 + 3000 * i as usize), "file {n} read back through the write side");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    fs.shutdown().unwrap();
    drop(fs);
    let ro = Fs::open(SharedDev(mem), &OpenOpts::default()).unwrap();
    for w in 0..4u64 {
        for i in 0..8 {
            let n = w * 100 + i;
            assert_eq!(read_file(&ro, n), content(n, 1000 + 3000 * i as usize), "file {n} after the clean shutdown");
        }
    }
    let m = check_fs(&ro).unwrap();
    assert!(m.is_empty(), "derived state after the owned mount: {} mismatches", m.len());
}

#[test]
fn fsync_and_the_periodic_work_write_the_journal() {
    let mem: Arc<MemDev> = volume::initialized(64 << 20, &[], 8);
    let fs = BchFs::start(BchFsOpen::open(SharedDev(mem.clone())).unwrap(), volume::INIT_NS + 1, 9).unwrap();
    let j = &fs.open.journal;
    let sv = root_subvol(&fs).unwrap();
    let commit = |name: &str| {
        let mut t = fs.trans();
        let n = NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 };
        create(&mut t, &sv, sv.root_inum, name.as_bytes(), &n).unwrap();
        t.t.journal_seq
    };
    // fsync: the commit's entry reaches the disk as a flush entry.
    let seq = commit("a");
    assert!(seq > j.flushed_seq_ondisk(), "the commit's entry is still open");
    fs.journal_flush_seq(seq).unwrap();
    assert!(j.flushed_seq_ondisk() >= seq, "journal_flush_seq({seq}) left flushed_seq_ondisk at {}", j.flushed_seq_ondisk());
    fs.journal_flush_seq(seq).unwrap();
    fs.journal_flush_seq(0).unwrap();
    // The timer: nothing written before the flush delay, written after.
    let seq = commit("b");
    let _ = fs.do_work(1).unwrap();
    let before = j.seq_ondisk();
    assert!(before < seq, "the open entry was written before its delay");
    let _ = fs.do_work(60_000).unwrap();
    assert!(j.seq_ondisk() >= seq, "do_work after the delay left seq_ondisk at {} (was {before}), commit at {seq}", j.seq_ondisk());
    // syncfs.
    let seq = commit("c");
    fs.journal_flush().unwrap();
    assert!(j.flushed_seq_ondisk() >= seq);
    fs.shutdown().unwrap();
}

/// Names in the root directory, through any reader.
fn root_names(r: &(impl BtreeRead + ?Sized)) -> Vec<String> {
    let sv = root_subvol(r).unwrap();
    let root = inode_get(r, &sv, sv.root_inum).unwrap();
    let mut names = Vec::new();
    bcachefs_rs::fs_common::readdir(r, &sv, &root, 0, &mut |e| {
        names.push(String::from_utf8_lossy(e.name).into_owned());
        true
    })
    .unwrap();
    names.sort();
    names
}

#[test]
fn emergency_read_only_keeps_what_was_flushed_and_nothing_after() {
    for flush_journal in [false, true] {
        let mem: Arc<MemDev> = volume::initialized(64 << 20, &[], 12);
        let fs = BchFs::start(BchFsOpen::open(SharedDev(mem.clone())).unwrap(), volume::INIT_NS + 1, 13).unwrap();
        let sv = root_subvol(&fs).unwrap();
        let n = NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 };
        let seq = {
            let mut t = fs.trans();
            create(&mut t, &sv, sv.root_inum, b"synced", &n).unwrap();
            t.t.journal_seq
        };
        fs.journal_flush_seq(seq).unwrap();
        create(&mut fs.trans(), &sv, sv.root_inum, b"unsynced", &n).unwrap();
        fs.emergency_read_only(flush_journal);
        assert!(fs.is_emergency_ro());
        assert_eq!(create(&mut fs.trans(), &sv, sv.root_inum, b"after", &n).unwrap_err(), bcachefs_rs::errcode::Errno::EROFS);
        assert_eq!(fs.shutdown().unwrap_err(), bcachefs_rs::errcode::Errno::EROFS);
        drop(fs);
        // The next mount replays what reached the journal.
        let fs = BchFs::start(BchFsOpen::open(SharedDev(mem.clone())).unwrap(), volume::INIT_NS + 2, 14).unwrap();
        let want: Vec<String> = if flush_journal { vec!["lost+found".into(), "synced".into(), "unsynced".into()] } else { vec!["lost+found".into(), "synced".into()] };
        assert_eq!(root_names(&fs), want, "after the emergency read-only (journal flushed first: {flush_journal})");
        fs.shutdown().unwrap();
        drop(fs);
        let ro = Fs::open(SharedDev(mem), &OpenOpts::default()).unwrap();
        let m = check_fs(&ro).unwrap();
        assert!(m.is_empty(), "{} mismatches after replaying an emergency read-only", m.len());
    }
}

#[test]
fn options_set_at_runtime_apply_to_new_writes_and_persist() {
    let mem: Arc<MemDev> = volume::initialized(64 << 20, &[], 21);
    let fs = BchFs::start(BchFsOpen::open(SharedDev(mem.clone())).unwrap(), volume::INIT_NS + 1, 22).unwrap();
    assert_eq!(fs.opts().compression, 0);
    assert_eq!(fs.opt_set("nonsense", 1, true), Err(bcachefs_rs::errcode::Errno::EINVAL));
    assert_eq!(fs.opt_set("background_compression", 1, true), Err(bcachefs_rs::errcode::Errno::EOPNOTSUPP));
    fs.opt_set("compression", 1, true).unwrap();
    assert_eq!(fs.opts().compression, 1);
    // A compressible file written now is stored compressed: fewer sectors.
    let sv = root_subvol(&fs).unwrap();
    let mut t = fs.trans();
    let n = NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 };
    let u = create(&mut t, &sv, sv.root_inum, b"zeros-ish", &n).unwrap();
    let mut a = FsDataAlloc::new(&fs, writepoint_hashed(1));
    write_data(&mut t, &mut a, &sv, u.inum, 0, &vec![b'x'; 256 << 10]).unwrap();
    drop(t);
    drop(a);
    // Every extent of the file is compressed with lz4
    // (`BCH_COMPRESSION_TYPE_lz4` is 3).
    let (mut n, mut lz4) = (0, 0);
    let mut from = bcachefs_rs::format::bpos::Bpos::new(u.inum, 0, 0);
    let end = bcachefs_rs::format::bpos::Bpos::new(u.inum, u64::MAX, u32::MAX);
    while let Some(k) = fs.peek_upto(bcachefs_rs::format::bkey::BtreeId::Extents, from, end, false).unwrap() {
        let start = bcachefs_rs::format::val::extent::ptrs_start(k.k.key_type).unwrap();
        for e in bcachefs_rs::format::val::extent::ExtentEntries::new(&k.v[start..]) {
            if let Ok(bcachefs_rs::format::val::extent::ExtentEntry::Crc(c)) = e {
                lz4 += usize::from(c.compression_type == 3 && c.compressed_size < c.uncompressed_size);
            }
        }
        n += 1;
        from = k.k.p.successor().unwrap();
    }
    assert!(n > 0 && lz4 == n, "{lz4} of {n} extents compressed with lz4");
    fs.shutdown().unwrap();
    drop(fs);
    let open = BchFsOpen::open(SharedDev(mem)).unwrap();
    assert_eq!(open.opts.compression, 1, "compression persisted in the superblock");
}

#[test]
fn mount_options_apply_for_the_mount_only() {
    let mem: Arc<MemDev> = volume::initialized(64 << 20, &[], 31);
    let fs = BchFs::start(BchFsOpen::open(SharedDev(mem.clone())).unwrap(), volume::INIT_NS + 1, 32).unwrap();
    let mut m = bcachefs_rs::opts::MountOpts::new();
    m.parse("compression=lz4,journal_flush_disabled,journal_flush_delay=50,verbose").unwrap();
    fs.apply_mount_opts(&m).unwrap();
    assert_eq!(fs.opts().compression, 1);
    // journal_flush_disabled: fsync's journal flush does nothing.
    let sv = root_subvol(&fs).unwrap();
    let seq = {
        let mut t = fs.trans();
        create(&mut t, &sv, sv.root_inum, b"a", &NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 }).unwrap();
        t.t.journal_seq
    };
    fs.journal_flush_seq(seq).unwrap();
    assert!(fs.open.journal.flushed_seq_ondisk() < seq, "journal_flush_disabled, yet fsync flushed the journal");
    // journal_flush_delay=50: the entry is written 50 ms after it opened.
    let _ = fs.do_work(1).unwrap();
    assert!(fs.open.journal.seq_ondisk() < seq);
    let _ = fs.do_work(100).unwrap();
    assert!(fs.open.journal.seq_ondisk() >= seq, "the entry was not written 50 ms after it opened");
    let mut bad = bcachefs_rs::opts::MountOpts::new();
    bad.parse("background_compression=lz4").unwrap();
    assert_eq!(fs.apply_mount_opts(&bad), Err(bcachefs_rs::errcode::Errno::EOPNOTSUPP));
    fs.shutdown().unwrap();
    drop(fs);
    // Not persisted.
    let open = BchFsOpen::open(SharedDev(mem)).unwrap();
    assert_eq!(open.opts.compression, 0, "a mount option reached the superblock");
}

#[test]
fn io_done_and_write_stats_count_what_was_written() {
    let mem: Arc<MemDev> = volume::initialized(64 << 20, &[], 41);
    let fs = BchFs::start(BchFsOpen::open(SharedDev(mem)).unwrap(), volume::INIT_NS + 1, 42).unwrap();
    write_file(&fs, 1, 100 << 10);
    fs.flush().unwrap();
    fs.journal_flush().unwrap();
    let _ = read_file(&fs, 1);
    let [r, w] = fs.io_done();
    assert!(w.user >= (100 << 10) / 512, "user sectors written: {}", w.user);
    assert!(r.user >= (100 << 10) / 512, "user sectors read: {}", r.user);
    assert!(w.journal > 0 && w.btree > 0, "journal {} btree {}", w.journal, w.btree);
    let mut t = String::new();
    fs.btree_write_stats_to_text(&mut t).unwrap();
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 6, "{t}");
    assert!(lines[0].trim_start().starts_with("nr") && lines[1].starts_with("initial:") && lines[4].starts_with("journal_reclaim:"), "{t}");
    let initial: u64 = lines[1].split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(initial > 0, "{t}");
    fs.shutdown().unwrap();
}

#[test]
fn statfs_follows_writes_and_deletes() {
    let mem: Arc<MemDev> = volume::initialized(64 << 20, &[], 51);
    let fs = BchFs::start(BchFsOpen::open(SharedDev(mem)).unwrap(), volume::INIT_NS + 1, 52).unwrap();
    let facts = *fs.facts();
    let before = bcachefs_rs::fs_common::statfs(&fs, &facts).unwrap();
    write_file(&fs, 7, 8 << 20);
    let after = bcachefs_rs::fs_common::statfs(&fs, &facts).unwrap();
    let used = (before.bfree - after.bfree) * u64::from(after.block_bytes);
    assert!((8 << 20..(8 << 20) + (1 << 20)).contains(&used), "8 MiB written, statfs says {used} bytes more used");
    let sv = root_subvol(&fs).unwrap();
    bcachefs_rs::fs_common::fs_ops::unlink(&mut fs.trans(), &sv, sv.root_inum, b"f7", false).unwrap();
    let gone = bcachefs_rs::fs_common::statfs(&fs, &facts).unwrap();
    // The data is free again; btree nodes the writes and the deletion
    // added (256 KiB each) stay.
    let freed = (gone.bfree - after.bfree) * u64::from(gone.block_bytes);
    assert!(freed >= 7 << 20, "the unlink freed {freed} bytes of an 8 MiB file");
    assert!(gone.bfree + 512 >= before.bfree, "after the unlink: {} free blocks, {} before the write", gone.bfree, before.bfree);
    fs.shutdown().unwrap();
}

#[test]
fn inode_flags_set_and_read_as_c_maps_them() {
    use bcachefs_rs::errcode::Errno;
    use bcachefs_rs::fs_common::fs_ops::{inode_flags_to_uflags, set_flags};
    let mem: Arc<MemDev> = volume::initialized(64 << 20, &[], 61);
    let fs = BchFs::start(BchFsOpen::open(SharedDev(mem.clone())).unwrap(), volume::INIT_NS + 1, 62).unwrap();
    let sv = root_subvol(&fs).unwrap();
    let reg = create(&mut fs.trans(), &sv, sv.root_inum, b"f", &NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 }).unwrap();
    let lnk = create(&mut fs.trans(), &sv, sv.root_inum, b"fifo", &NewInode { mode: 0o010644, uid: 0, gid: 0, rdev: 0 }).unwrap();
    // FS_IMMUTABLE_FL | FS_NODUMP_FL | FS_NOATIME_FL
    let u = set_flags(&mut fs.trans(), &sv, reg.inum, 0x10 | 0x40 | 0x80, true).unwrap();
    assert_eq!(u.flags & 0x1f, (1 << 1) | (1 << 3) | (1 << 4));
    assert_eq!(inode_flags_to_uflags(u.flags), 0x10 | 0x40 | 0x80);
    assert_eq!(set_flags(&mut fs.trans(), &sv, reg.inum, 0, false).unwrap_err(), Errno::EPERM, "clearing immutable needs the capability");
    assert_eq!(set_flags(&mut fs.trans(), &sv, reg.inum, 0x10 | 0x40, false).unwrap().flags & 0x1f, (1 << 1) | (1 << 3), "noatime cleared, immutable kept");
    assert_eq!(set_flags(&mut fs.trans(), &sv, reg.inum, 0x4000, true).unwrap_err(), Errno::EOPNOTSUPP);
    assert_eq!(set_flags(&mut fs.trans(), &sv, lnk.inum, 0x20, true).unwrap_err(), Errno::EINVAL, "append on a fifo");
    assert_eq!(set_flags(&mut fs.trans(), &sv, lnk.inum, 0x40, true).unwrap().flags & 0x1f, 1 << 3);
    fs.shutdown().unwrap();
    drop(fs);
    let ro = Fs::open(SharedDev(mem), &OpenOpts::default()).unwrap();
    let a = inode_get(&ro, &sv, reg.inum).unwrap();
    assert_eq!(inode_flags_to_uflags(a.flags), 0x10 | 0x40);
}

#[test]
fn disk_reservations_stop_at_what_statfs_calls_available() {
    let mem: Arc<MemDev> = volume::initialized(64 << 20, &[], 71);
    let fs = BchFs::start(BchFsOpen::open(SharedDev(mem)).unwrap(), volume::INIT_NS + 1, 72).unwrap();
    let facts = *fs.facts();
    let st = bcachefs_rs::fs_common::statfs(&fs, &facts).unwrap();
    let avail = st.bavail * u64::from(st.block_bytes) / 512;
    assert!(avail > 1024);
    fs.disk_reservation_get(avail - 8).unwrap();
    assert_eq!(fs.disk_reservation_get(16), Err(bcachefs_rs::errcode::Errno::ENOSPC));
    fs.disk_reservation_get(8).unwrap();
    fs.disk_reservation_put(avail);
    fs.disk_reservation_get(16).unwrap();
    fs.disk_reservation_put(16);
    // Data written takes from what is available.
    write_file(&fs, 3, 4 << 20);
    assert_eq!(fs.disk_reservation_get(avail), Err(bcachefs_rs::errcode::Errno::ENOSPC));
    fs.disk_reservation_get(avail - (5 << 20) / 512).unwrap();
    fs.shutdown().unwrap();
}

/// A device whose writes fail with `EIO` while `failing` is set (what
/// the media does to a write it cannot take); reads work.
struct FailingDev {
    inner: Arc<MemDev>,
    failing: std::sync::atomic::AtomicBool,
}

impl bcachefs_rs::platform::BlockDev for FailingDev {
    fn name(&self) -> &str {
        "failing"
    }
    fn nr_sectors(&self) -> u64 {
        self.inner.nr_sectors()
    }
    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), bcachefs_rs::errcode::Errno> {
        self.inner.read_sectors(sector, buf)
    }
    fn write_sectors(&self, sector: u64, buf: &[u8], flags: bcachefs_rs::platform::WriteFlags) -> Result<(), bcachefs_rs::errcode::Errno> {
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(bcachefs_rs::errcode::Errno::EIO);
        }
        self.inner.write_sectors(sector, buf, flags)
    }
    fn flush(&self) -> Result<(), bcachefs_rs::errcode::Errno> {
        self.inner.flush()
    }
}

#[test]
fn write_errors_fail_the_writer_then_make_the_filesystem_read_only() {
    use bcachefs_rs::errcode::Errno;
    use bcachefs_rs::platform::BlockDev;
    use std::sync::atomic::Ordering::Relaxed;
    let mem: Arc<MemDev> = volume::initialized(64 << 20, &[], 31);
    let dev = Arc::new(FailingDev { inner: mem.clone(), failing: false.into() });
    let fs = BchFs::start(BchFsOpen::open(SharedDev(dev.clone())).unwrap(), volume::INIT_NS + 1, 32).unwrap();
    let sv = root_subvol(&fs).unwrap();
    let n = NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 };
    // f1: written and fsync'd before the device fails.
    let seq = {
        let mut t = fs.trans();
        let u = create(&mut t, &sv, sv.root_inum, b"f1", &n).unwrap();
        let mut a = FsDataAlloc::new(&fs, writepoint_hashed(1));
        write_data(&mut t, &mut a, &sv, u.inum, 0, &content(1, 20_000)).unwrap();
        t.t.journal_seq
    };
    fs.journal_flush_seq(seq).unwrap();
    assert_eq!(fs.io_errors(), [0, 0, 0]);
    dev.failing.store(true, Relaxed);
    // A data write: the writer's EIO, counted; the filesystem goes on.
    {
        let mut t = fs.trans();
        let u = create(&mut t, &sv, sv.root_inum, b"f2", &n).unwrap();
        let mut a = FsDataAlloc::new(&fs, writepoint_hashed(2));
        assert_eq!(write_data(&mut t, &mut a, &sv, u.inum, 0, &content(2, 20_000)), Err(Errno::EIO));
    }
    assert_eq!(fs.io_errors(), [0, 1, 0]);
    assert!(!fs.is_emergency_ro(), "a data write error is not fatal");
    // The journal's write fails (fsync, then the periodic work): fatal.
    let seq = {
        let mut t = fs.trans();
        create(&mut t, &sv, sv.root_inum, b"f3", &n).unwrap();
        t.t.journal_seq
    };
    assert_eq!(fs.journal_flush_seq(seq), Err(Errno::EIO));
    let _ = fs.do_work(60_000);
    assert!(fs.is_emergency_ro(), "a journal write error leaves the filesystem read-write");
    assert!(fs.io_errors()[1] >= 2, "write errors counted: {:?}", fs.io_errors());
    assert_eq!(create(&mut fs.trans(), &sv, sv.root_inum, b"f4", &n).unwrap_err(), Errno::EROFS);
    assert_eq!(fs.shutdown().unwrap_err(), Errno::EROFS);
    let mut text = String::new();
    fs.io_errors_to_text(&mut text, 1_700_000_100).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "IO errors since filesystem creation");
    assert_eq!(lines[1], "  read:     0");
    assert!(lines[2].starts_with("  write:    ") && lines[2] != "  write:    0", "{text}");
    assert_eq!(lines[3], "  checksum: 0");
    assert!(lines[4].starts_with("IO errors since ") && lines[4].ends_with(" ago"), "{text}");
    drop(fs);
    // The device heals: the next mount replays what was flushed; f1 is
    // whole, and the volume is consistent.
    dev.failing.store(false, Relaxed);
    let fs = BchFs::start(BchFsOpen::open(SharedDev(dev.clone())).unwrap(), volume::INIT_NS + 2, 33).unwrap();
    assert_eq!(read_file(&fs, 1), content(1, 20_000));
    fs.shutdown().unwrap();
    drop(fs);
    let ro = Fs::open(SharedDev(mem), &OpenOpts::default()).unwrap();
    let m = check_fs(&ro).unwrap();
    assert!(m.is_empty(), "{} mismatches after the write errors", m.len());
    let _ = dev.nr_sectors();
}
