// SPDX-License-Identifier: GPL-2.0
//! The foreground allocator in the read-write mount (`src/fs_rw.rs` over
//! `src/alloc/foreground.rs`): a small volume written until `ENOSPC`,
//! emptied, and written again (the freed buckets come back through the
//! journal flush and the discards, as C's `bch2_do_discards()`), with
//! `gc::check_fs` clean after every mount; data and btree nodes never in
//! one bucket; and a bucket freed by a commit not handed out before that
//! commit's journal entry is flushed (`bch2_bucket_needs_journal_commit()`).

use std::collections::BTreeSet;
use std::sync::Arc;

use bcachefs_rs::accounting::DiskAccountingPos;
use bcachefs_rs::alloc::foreground::{dev_buckets_reserved, Watermark};
use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::btree::testing::MemDev as WMemDev;
use bcachefs_rs::fs_rw::SharedDev;
use bcachefs_rs::btree::lockrestart_do;
use bcachefs_rs::errcode::Errno;
use bcachefs_rs::format::bkey::{BtreeId, KeyType};
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::val::alloc::{data_type, AllocV4};
use bcachefs_rs::format::val::extent::{ptrs_start, ExtentEntries, ExtentEntry};
use bcachefs_rs::fs_common::fs_ops::{create, setattr, unlink, NewInode, SetAttr};
use bcachefs_rs::fs_common::io_write::write_data;
use bcachefs_rs::fs_common::Subvol;
use bcachefs_rs::fs_rw::{writepoint_hashed, BchFs, BchFsOpen, FsDataAlloc};
use bcachefs_rs::gc::check_fs;
use bcachefs_rs::journal::res::JournalSink;

#[allow(dead_code)]
mod common;
#[path = "common/volume.rs"]
mod volume;

/// A volume of `bytes` made by our `format` with `opts` and initialized.
fn fresh(bytes: usize, opts: &[(&str, u64)]) -> Arc<WMemDev> {
    volume::initialized(bytes, opts, 1)
}

/// The shared in-memory device (`fs_rw::SharedDev`).
type Dev = SharedDev<WMemDev>;

const NOW: i64 = 1_700_000_001_000_000_000;
const ROOT: u64 = 4096;
const SV: Subvol = Subvol { id: 1, snapshot: u32::MAX, root_inum: ROOT };


/// Mounts `mem`, runs `f`, shuts down cleanly.
fn with_fs<R>(mem: &Arc<WMemDev>, seed: u64, f: impl FnOnce(&BchFs<Dev>) -> Result<R, Errno>) -> R {
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    assert!(!open.fresh);
    open.mount(NOW, seed, |fs| {
        let r = f(fs)?;
        fs.shutdown()?;
        Ok(r)
    })
    .unwrap()
}

/// `gc::check_fs` of the image through the read-only mount: nothing.
fn assert_clean(mem: &Arc<WMemDev>) -> Fs<common::MemDev> {
    let img = mem.0.lock().unwrap().clone();
    let fs = Fs::open(common::MemDev(img), &OpenOpts::default()).unwrap();
    let m = check_fs(&fs).unwrap();
    let ms: Vec<String> = m.iter().map(|m| m.to_string()).collect();
    assert!(m.is_empty(), "{} mismatches:\n{}", m.len(), ms.join("\n"));
    fs
}

/// File contents that do not compress and differ per file.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes files of `size` bytes named `{prefix}{i}` until the allocator
/// says `ENOSPC` (or `max` files); returns the files written whole, their
/// bytes and the error that stopped it.  The file being written when it
/// stopped is removed.
fn fill(fs: &BchFs<Dev>, prefix: &str, size: usize, max: usize) -> (Vec<(String, u64)>, u64, Option<Errno>) {
    let mut files = Vec::new();
    let mut bytes = 0u64;
    for i in 0..max {
        let name = format!("{prefix}{i}");
        let mut t = fs.trans();
        let mut a = FsDataAlloc::new(fs, writepoint_hashed(7));
        let u = match create(&mut t, &SV, ROOT, name.as_bytes(), &NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 }) {
            Ok(u) => u,
            Err(e) => return (files, bytes, Some(e)),
        };
        if let Err(e) = write_data(&mut t, &mut a, &SV, u.inum, 0, &data(u.inum, size)) {
            unlink(&mut t, &SV, ROOT, name.as_bytes(), false).unwrap();
            return (files, bytes, Some(e));
        }
        files.push((name, u.inum));
        bytes += size as u64;
    }
    (files, bytes, None)
}

/// The user data sectors the in-memory accounting counts on device 0
/// (`dev_data_type` user: buckets, sectors, fragmented).
fn user_usage(fs: &BchFs<Dev>) -> [i64; 3] {
    let m = fs.triggers.accounting_mem().unwrap();
    let v = m.get(&DiskAccountingPos::DevDataType { dev: 0, data_type: data_type::USER });
    [v[0], v[1], v[2]]
}

/// Buckets (dev 0) holding extents' data, and buckets holding btree nodes.
fn data_and_node_buckets(fs: &BchFs<Dev>) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let bs = u64::from(fs.open.facts.bucket_sectors);
    let mut data = BTreeSet::new();
    lockrestart_do(&fs.btree, |t| {
        data.clear();
        let it = t.iter(BtreeId::Extents, Bpos::new(0, 0, 0), false)?;
        while let Some(k) = t.iter_next(it)? {
            let Some(start) = ptrs_start(k.k.key_type) else { continue };
            for e in ExtentEntries::new(k.v.get(start..).unwrap_or(&[])) {
                if let Ok(ExtentEntry::Ptr(p)) = e {
                    data.insert(p.offset / bs);
                }
            }
        }
        Ok(())
    })
    .unwrap();
    let nodes = fs.triggers.node_ptr_sectors().unwrap().iter().map(|&(_, s)| s / bs).collect();
    (data, nodes)
}

#[test]
fn enospc_then_freed_buckets_are_reused() {
    let bytes = 32usize << 20;
    let mem = fresh(bytes, &[]);
    let file = 256usize << 10;
    // Geometry and C's reserve for data (the normal watermark).
    let (bucket_sectors, nbuckets, first, reserved, free0) = with_fs(&mem, 2, |fs| {
        let a = &fs.open.alloc;
        a.with_dev(0, |d| {
            (d.bucket_size, d.nbuckets, d.first_bucket, dev_buckets_reserved(d.nbuckets, d.nr_btree_reserve, Watermark::Normal), d.usage[0])
        })
    });
    let bucket_bytes = u64::from(bucket_sectors) << 9;

    // 1. Fill: the error is ENOSPC.
    let (files1, written1, err, text) = with_fs(&mem, 3, |fs| {
        let (files, written, err) = fill(fs, "a", file, 10_000);
        let mut text = String::new();
        fs.to_text(&mut text).unwrap();
        let (u, b, f) = fs.open.alloc.with_dev(0, |d| (d.usage[data_type::USER as usize], d.usage[data_type::BTREE as usize], d.usage[0]))?;
        eprintln!("first fill: {u} user buckets, {b} btree buckets, {f} free buckets at ENOSPC");
        Ok((files, written, err, text))
    });
    assert_eq!(err, Some(Errno::ENOSPC), "{text}");
    let usable = (free0 - reserved) * bucket_bytes;
    eprintln!(
        "volume {bytes} bytes, {nbuckets} buckets of {bucket_bytes} bytes (first {first}), {free0} free after initialize, \
         normal watermark reserve {reserved} buckets: {usable} bytes usable for data; \
         written before ENOSPC: {written1} bytes in {} whole files",
        files1.len()
    );
    assert!(written1 > 0 && written1 <= usable, "{written1} > {usable}");
    // Within the reserve plus the buckets btree nodes and partly filled
    // buckets took.
    assert!(written1 + 8 * bucket_bytes + (file as u64) >= usable / 2, "{written1} of {usable}");
    assert_clean(&mem);

    // 2. Delete everything.
    with_fs(&mem, 4, |fs| {
        let mut t = fs.trans();
        for (name, _) in files1.iter() {
            unlink(&mut t, &SV, ROOT, name.as_bytes(), false)?;
        }
        drop(t);
        let u = user_usage(fs);
        assert_eq!(u, [0, 0, 0], "user data left after deleting every file");
        Ok(())
    });
    assert_clean(&mem);

    // 3. Write as much again: the freed buckets are reused.
    let (_files2, written2) = with_fs(&mem, 5, |fs| {
        let n = files1.len();
        let (files, written, err) = fill(fs, "b", file, n);
        let mut text = String::new();
        fs.to_text(&mut text).unwrap();
        assert!(err.is_none() || err == Some(Errno::ENOSPC), "{err:?}");
        assert!(written + 8 * bucket_bytes >= written1, "second fill stopped after {written} bytes:\n{text}");
        let discarded = fs.open.alloc.with_dev(0, |d| d.nr_discarded)?;
        assert!(discarded * bucket_bytes >= written1 / 2, "{discarded} buckets discarded");
        // What the accounting and the allocator say is what was written.
        let u = user_usage(fs);
        assert_eq!(u[1] as u64, written >> 9, "user sectors");
        let (dt_user, dt_free, dt_btree) =
            fs.open.alloc.with_dev(0, |d| (d.usage[data_type::USER as usize], d.usage[0], d.usage[data_type::BTREE as usize]))?;
        assert_eq!(dt_user as i64, u[0], "user buckets: allocator vs accounting");
        assert!(dt_user * bucket_bytes >= written && (dt_user - 2) * bucket_bytes < written, "{dt_user} buckets for {written} bytes");
        eprintln!(
            "second fill: {written} bytes in {} files ({err:?}), {dt_user} user buckets, {dt_btree} btree buckets, {dt_free} free buckets left, {discarded} discarded",
            files.len()
        );
        Ok((files, written))
    });
    // The btree may hold a few more buckets than at the first fill (nodes
    // rewritten since, their old buckets on their way back): the space
    // written again is the first fill's less at most a few buckets.
    assert!(written2 + 8 * bucket_bytes >= written1, "second fill {written2} bytes, first {written1}");
    let ro = assert_clean(&mem);
    // The read-only mount's accounting agrees.
    let pos = DiskAccountingPos::DevDataType { dev: 0, data_type: data_type::USER }.to_bpos();
    let mut it = ro.iter(BtreeId::Accounting, pos, false);
    let k = it.next().unwrap().unwrap();
    assert_eq!(k.k.p, pos);
    let (v, _) = bcachefs_rs::accounting::accounting_val_decode(&k.v);
    assert_eq!(v[1] as u64, written2 >> 9, "user sectors on disk");
}

/// 600 files of 4 to 20 KiB with long names: the inodes, dirents and
/// extents btrees split, data allocations in between.
fn many_small_files(fs: &BchFs<Dev>) -> Result<(), Errno> {
    let mut t = fs.trans();
    let mut a = FsDataAlloc::new(fs, writepoint_hashed(3));
    for i in 0..600u32 {
        let name = format!("file-with-a-longish-name-{i:05}");
        let u = create(&mut t, &SV, ROOT, name.as_bytes(), &NewInode { mode: 0o100644, uid: i, gid: 0, rdev: 0 })?;
        write_data(&mut t, &mut a, &SV, u.inum, 0, &data(u.inum, 4096 * (1 + i as usize % 5)))?;
    }
    Ok(())
}

#[test]
fn data_and_btree_nodes_never_share_a_bucket() {
    let mem = fresh(64 << 20, &[("btree_node_size", 32 << 10)]);
    with_fs(&mem, 2, |fs| {
        // Many small files (inodes, dirents and extents btrees split) with
        // data in between.
        many_small_files(fs)?;
        fs.flush()?;
        let (d, n) = data_and_node_buckets(fs);
        assert!(d.len() > 4 && n.len() > 4, "{} data buckets, {} node buckets", d.len(), n.len());
        let both: Vec<_> = d.intersection(&n).collect();
        assert!(both.is_empty(), "buckets with data and btree nodes: {both:?}");
        assert!(fs.btree.stats.splits.load(std::sync::atomic::Ordering::Relaxed) > 0, "no split");
        Ok(())
    });
    assert_clean(&mem);
}

/// KNOWN BUG, not fixed (asserted: when it is fixed this test fails;
/// then drop `should_panic` and keep it).  On 8 KiB nodes (4 KiB blocks)
/// a node takes two writes before an insert must rewrite it, and the
/// rewrites' alloc updates keep re-dirtying the alloc btree's last leaves:
/// `BchFs::flush`, which writes until nothing is dirty, gives up with
/// `EIO`.  C flushes by journal pins, not to a fixed point.
#[test]
#[ignore = "asserts a known bug (flush never settles on 8 KiB nodes)"]
#[should_panic(expected = "EIO")]
fn known_bug_flush_never_settles_on_8k_nodes() {
    let mem = fresh(64 << 20, &[("btree_node_size", 8 << 10)]);
    with_fs(&mem, 2, |fs| {
        many_small_files(fs)?;
        fs.flush()
    });
}

#[test]
fn freed_bucket_waits_for_the_journal_flush() {
    let mem = fresh(32 << 20, &[]);
    with_fs(&mem, 2, |fs| {
        let j = &fs.open.journal;
        let (files, _, err) = fill(fs, "x", 512 << 10, 1);
        assert_eq!(err, None);
        let (before, _) = data_and_node_buckets(fs);
        assert!(!before.is_empty());
        fs.flush()?;
        JournalSink::flush_seq(&**j, j.cur_seq())?;
        // Truncate the file: its buckets empty in this commit.
        let mut t = fs.trans();
        let mut a = FsDataAlloc::new(fs, writepoint_hashed(7));
        setattr(&mut t, &mut a, &SV, files[0].1, &SetAttr { size: Some(0), ..SetAttr::default() })?;
        drop(t);
        drop(a);
        let seq = j.cur_seq();
        assert!(j.flushed_seq_ondisk() < seq, "the journal was flushed by itself: nothing to show");
        let waiting = fs.open.alloc.with_dev(0, |d| d.usage[data_type::NEED_DISCARD as usize])?;
        assert!(waiting >= before.len() as u64 - 1, "{waiting} need_discard buckets");
        // Not flushed: no discard, and new data goes elsewhere.
        assert_eq!(fs.do_discards()?, 0);
        let mut t = fs.trans();
        let mut a = FsDataAlloc::new(fs, writepoint_hashed(9));
        let u = create(&mut t, &SV, ROOT, b"y", &NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 })?;
        write_data(&mut t, &mut a, &SV, u.inum, 0, &data(5, 512 << 10))?;
        drop(t);
        drop(a);
        let (after, _) = data_and_node_buckets(fs);
        let reused: Vec<_> = before.intersection(&after).collect();
        assert!(j.flushed_seq_ondisk() < seq || reused.is_empty());
        assert!(reused.is_empty(), "buckets reused before the journal flush of their free: {reused:?}");
        // Flushed: the discards take them back to the freespace btree.
        JournalSink::flush_seq(&**j, seq)?;
        let n = fs.do_discards()?;
        assert!(n >= before.len() - 1, "{n} discarded of {}", before.len());
        let free = lockrestart_do(&fs.btree, |t| {
            let mut n = 0;
            for &b in before.iter() {
                let k = t.get(BtreeId::Alloc, Bpos::new(0, b, 0))?;
                let a = k.filter(|k| k.k.key_type == KeyType::AllocV4 as u8).map(|k| AllocV4::decode(&k.v));
                if a.map_or(true, |a| a.data_type == data_type::FREE) {
                    n += 1;
                }
            }
            Ok(n)
        })?;
        assert!(free + 1 >= before.len(), "{free} of {} buckets free again", before.len());
        Ok(())
    });
    assert_clean(&mem);
}

#[test]
fn freed_space_is_reused_in_the_same_mount() {
    let mem = fresh(32 << 20, &[]);
    let file = 256usize << 10;
    with_fs(&mem, 2, |fs| {
        let (files, written1, err) = fill(fs, "a", file, 10_000);
        assert_eq!(err, Some(Errno::ENOSPC));
        let mut t = fs.trans();
        for (name, _) in files.iter() {
            unlink(&mut t, &SV, ROOT, name.as_bytes(), false)?;
        }
        drop(t);
        // No remount: the allocation that finds nothing flushes the
        // journal and runs the discards itself.
        let (files2, written2, err2) = fill(fs, "b", file, files.len());
        let discarded = fs.open.alloc.with_dev(0, |d| d.nr_discarded)?;
        eprintln!("same mount: {written1} bytes, deleted, {written2} bytes again ({err2:?}), {discarded} buckets discarded");
        assert!(written2 + 8 * (file as u64) >= written1, "{written2} of {written1}");
        assert!(files2.len() + 8 >= files.len());
        Ok(())
    });
    assert_clean(&mem);
}

/// Emptying most of a volume at once leaves more buckets in need_discard
/// than one journal entry can hold the alloc updates of: the discards
/// commit them in batches (one transaction for all of them asked for a
/// journal reservation larger than an entry, `EINVAL`, and every later
/// operation that ran the discards failed with it).
#[test]
fn discards_of_most_of_the_volume_fit_the_journal() {
    let mem = fresh(512 << 20, &[]);
    with_fs(&mem, 2, |fs| {
        let j = &fs.open.journal;
        let (files, _, err) = fill(fs, "big", 8 << 20, 50);
        assert_eq!(err, None);
        let (before, _) = data_and_node_buckets(fs);
        fs.flush()?;
        for (_, inum) in files.iter() {
            let mut t = fs.trans();
            let mut a = FsDataAlloc::new(fs, writepoint_hashed(7));
            setattr(&mut t, &mut a, &SV, *inum, &SetAttr { size: Some(0), ..SetAttr::default() })?;
        }
        JournalSink::flush_seq(&**j, j.cur_seq())?;
        let n = fs.do_discards()?;
        assert!(n + 2 >= before.len() && n > 300, "{n} discarded of {}", before.len());
        // And the filesystem goes on.
        let (more, _, err) = fill(fs, "again", 8 << 20, 2);
        assert_eq!((more.len(), err), (2, None));
        Ok(())
    });
    assert_clean(&mem);
}

/// Mounts `mem` with `errors=` set to `action` (an index of
/// `ERROR_ACTIONS`), creates a file, removes its inode twice (the second
/// `inode_rm` finds no inode: `EUCLEAN`, an inconsistency), and returns
/// whether the filesystem went emergency read-only, and whether a later
/// commit still succeeds.  No clean shutdown: an emergency read-only
/// mount cannot write one.
fn after_inconsistency(mem: &Arc<WMemDev>, action: u64) -> (bool, bool) {
    use bcachefs_rs::fs_common::inode_write::inode_rm;
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    open.mount(NOW, 3, |fs| {
        fs.opt_set("errors", action, false)?;
        let mut t = fs.trans();
        let u = create(&mut t, &SV, ROOT, b"f", &NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 })?;
        inode_rm(&mut t, &SV, u.inum)?;
        assert_eq!(inode_rm(&mut t, &SV, u.inum), Err(Errno::EUCLEAN));
        let ro = fs.is_emergency_ro();
        let later = create(&mut t, &SV, ROOT, b"g", &NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 });
        Ok((ro, later.is_ok()))
    })
    .unwrap()
}

/// `errors=` acts on an inconsistency a transaction finds
/// (`bch2_inconsistent_error()`): `continue` goes on writing; `ro` and
/// `fix_safe` (the default) go emergency read-only, and commits then fail.
#[test]
fn errors_option_acts_on_an_inconsistency() {
    assert_eq!(after_inconsistency(&fresh(64 << 20, &[]), 0), (false, true), "errors=continue");
    assert_eq!(after_inconsistency(&fresh(64 << 20, &[]), 1), (true, false), "errors=fix_safe");
    assert_eq!(after_inconsistency(&fresh(64 << 20, &[]), 3), (true, false), "errors=ro");
    // The superblock's option is the default: a volume formatted with
    // errors=continue goes on.
    let mem = fresh(64 << 20, &[("errors", 0)]);
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    let ro = open.mount(NOW, 4, |fs| {
        let mut t = fs.trans();
        let u = create(&mut t, &SV, ROOT, b"f", &NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 })?;
        bcachefs_rs::fs_common::inode_write::inode_rm(&mut t, &SV, u.inum)?;
        let _ = bcachefs_rs::fs_common::inode_write::inode_rm(&mut t, &SV, u.inum);
        Ok(fs.is_emergency_ro())
    });
    assert_eq!(ro, Ok(false));
}

/// `errors=panic` panics on an inconsistency.
#[test]
#[should_panic(expected = "errors=panic")]
fn errors_panic_panics() {
    after_inconsistency(&fresh(64 << 20, &[]), 2);
}
