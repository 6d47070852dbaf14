// SPDX-License-Identifier: GPL-2.0
//! `fs_initialize` (C's `bch2_fs_initialize()`) on a volume our `format`
//! made, then a clean shutdown: the read-only mount opens it, the root
//! directory holds `lost+found`, `gc::check_fs` finds the derived state
//! exact, and the btrees hold the keys C's initialize wrote on the same
//! geometry (`tests/fixtures/c-fresh.bchimg`), up to times, uuids, hash
//! seeds, accounting versions and where btree nodes were put.

use std::collections::BTreeMap;
use std::sync::Arc;

use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::btree::testing::MemDev as WMemDev;
use bcachefs_rs::fs_rw::SharedDev;
use bcachefs_rs::format::bkey::{BtreeId, BtreeIdName, KeyType};
use bcachefs_rs::format::bpos::POS_MIN;
use bcachefs_rs::format::sb::read_super;
use bcachefs_rs::format::sb_opts::SbFlag;
use bcachefs_rs::format::sb_write::{format, FormatOpts};
use bcachefs_rs::format::val::alloc::{data_type, AllocV4};
use bcachefs_rs::fs_common::{inode_get, lookup, root_subvol};
use bcachefs_rs::fs_initialize::fs_initialize;
use bcachefs_rs::fs_rw::BchFsOpen;
use bcachefs_rs::gc::check_fs;
use bcachefs_rs::platform::{BlockDev, WriteFlags};

mod common;
#[path = "common/volume.rs"]
mod volume;

/// Formats an image of `bytes` with default options and initializes it.
fn make(bytes: usize) -> Vec<u8> {
    let img = volume::initialized(bytes, &[], 42).0.lock().unwrap().clone();
    img
}


/// Keys by btree: (position or a stand-in, type) for comparison with C.
fn shape(fs: &Fs<common::MemDev>) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for b in 0..bcachefs_rs::journal::NR_BTREES as u32 {
        let Some(id) = BtreeId::from_u32(b) else { continue };
        let mut it = fs.iter(id, POS_MIN, true);
        let mut v = Vec::new();
        while let Some(k) = it.next().unwrap() {
            let s = match id {
                // Where nodes went and what was freed differs: compare the
                // buckets of the superblock and journal, and counts.
                BtreeId::Alloc => {
                    let a = AllocV4::decode(&k.v);
                    if a.data_type == data_type::BTREE || a.data_type == data_type::FREE || a.data_type == data_type::NEED_DISCARD {
                        continue;
                    }
                    format!("{} {} dirty {}", k.k.p, a.data_type, a.dirty_sectors)
                }
                BtreeId::Backpointers | BtreeId::Freespace => continue,
                // The dirent's position hashes the name with the
                // directory's random seed.
                BtreeId::Dirents => format!("{} {}", k.k.p.inode, k.k.key_type),
                // lost+found's number depends on the CPU C ran on (the
                // inode number shards): 1 << 30 from CPU 1 of 2 there, 4097
                // here (CPU 0, as C on one CPU).
                BtreeId::Inodes if k.k.p.offset != 4096 => format!("(lost+found) type {}", k.k.key_type),
                BtreeId::Accounting => {
                    let p = bcachefs_rs::format::val::misc::AccountingPos::from_bpos(k.k.p);
                    let mut s = String::new();
                    bcachefs_rs::format::val::misc::fmt_accounting_pos(&mut s, &p).unwrap();
                    let s: String = s;
                    // btree usage counts nodes: where C put them differs.
                    if s.starts_with("btree") || s.contains("data_type=btree") {
                        format!("{s} (btree: not compared)")
                    } else {
                        format!("{s} = {:?}", bcachefs_rs::accounting::accounting_val_decode(&k.v))
                    }
                }
                // Times and hash seeds differ.
                BtreeId::Inodes => format!("{} type {}", k.k.p, k.k.key_type),
                _ => format!("{} type {} {:02x?}", k.k.p, k.k.key_type, &k.v[..]),
            };
            v.push(s);
        }
        out.insert(BtreeIdName(b).to_string(), v);
    }
    out
}

#[test]
fn format_then_initialize_makes_what_c_makes() {
    let c = common::unpack_image("c-fresh.bchimg");
    let img = make(c.len());
    {
        let sbr = read_super(&common::MemDev(img.clone())).unwrap();
        let sb = sbr.sb();
        assert_eq!(sb.flag(SbFlag::Initialized), 1);
        assert_eq!(sb.flag(SbFlag::Clean), 1, "clean shutdown");
        let m = sb.member(0).unwrap();
        assert_eq!(m.flag(bcachefs_rs::format::sb_members::MemberFlag::FreespaceInitialized), 1);
        assert_eq!(sb.compat()[0] & 0xf, 0xf, "compat bits as C sets them");
    }
    let fs = Fs::open(common::MemDev(img), &OpenOpts::default()).unwrap();
    let sv = root_subvol(&fs).unwrap();
    assert_eq!(sv.root_inum, 4096);
    let root = inode_get(&fs, &sv, 4096).unwrap();
    let lf = lookup(&fs, &sv, &root, b"lost+found").unwrap();
    assert!(lf.is_some(), "lost+found in the root directory");

    let m = check_fs(&fs).unwrap();
    let ms: Vec<String> = m.iter().map(|m| m.to_string()).collect();
    assert!(m.is_empty(), "{} mismatches:\n{}", m.len(), ms.join("\n"));

    let cfs = Fs::open(common::MemDev(c), &OpenOpts::default()).unwrap();
    let (ours, theirs) = (shape(&fs), shape(&cfs));
    for (name, c_keys) in theirs.iter() {
        assert_eq!(ours.get(name), Some(c_keys), "btree {name}: ours (left) vs C (right)");
    }
    // Inodes: the root and lost+found, as C.
    let mut it = fs.iter(BtreeId::Inodes, POS_MIN, false);
    let mut n = 0;
    while let Some(k) = it.next().unwrap() {
        assert_eq!(k.k.key_type, KeyType::InodeV3 as u8);
        n += 1;
    }
    assert_eq!(n, 2);
}

/// Every key of every btree as the read-only mount sees it (journal
/// overlaid), with values; accounting by position and value only.
fn all_keys(fs: &Fs<common::MemDev>) -> BTreeMap<u32, Vec<(String, Vec<u8>)>> {
    let mut out = BTreeMap::new();
    for b in 0..bcachefs_rs::journal::NR_BTREES as u32 {
        let Some(id) = BtreeId::from_u32(b) else { continue };
        let mut it = fs.iter(id, POS_MIN, true);
        let mut v = Vec::new();
        while let Some(k) = it.next().unwrap() {
            let mut kk = k.k;
            if id == BtreeId::Accounting {
                kk.version = Default::default();
            }
            v.push((format!("{kk}"), k.v.to_vec()));
        }
        out.insert(b, v);
    }
    out
}

/// A volume C left unclean (keys only in the journal): the read-write
/// mount replays the journal into the btrees and shuts down cleanly; the
/// read-only mount then finds the same keys without a journal to overlay,
/// and the derived state exact.
#[test]
fn unclean_c_volume_is_replayed_and_left_clean() {
    let img = common::unpack_image("c-unclean-crc64-lz4.bchimg");
    let before = all_keys(&Fs::open(common::MemDev(img.clone()), &OpenOpts::default()).unwrap());
    let mem = Arc::new(WMemDev(std::sync::Mutex::new(img)));
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    assert!(!open.fresh);
    let nr_inodes = open
        .mount(1_700_000_001_000_000_000, 42, |fs| {
            let n = fs.triggers.accounting_mem()?.get(&bcachefs_rs::accounting::DiskAccountingPos::NrInodes)[0];
            fs.shutdown()?;
            Ok(n)
        })
        .unwrap();
    drop(open);
    let img = mem.0.lock().unwrap().clone();
    {
        let sbr = read_super(&common::MemDev(img.clone())).unwrap();
        assert_eq!(sbr.sb().flag(SbFlag::Clean), 1);
    }
    let fs = Fs::open(common::MemDev(img), &OpenOpts::default()).unwrap();
    let m = check_fs(&fs).unwrap();
    let ms: Vec<String> = m.iter().map(|m| m.to_string()).collect();
    assert!(m.is_empty(), "{} mismatches:\n{}", m.len(), ms.join("\n"));
    // Everything is in the btree nodes now: read without the journal.
    let nr = Fs::open(common::MemDev(mem.0.lock().unwrap().clone()), &OpenOpts { norecovery: true, ..OpenOpts::default() }).unwrap();
    let after = all_keys(&nr);
    for (b, keys) in before.iter() {
        // Node buckets, their backpointers and btree accounting follow
        // where replay put new nodes; the rest is the same.
        let id = BtreeId::from_u32(*b).unwrap();
        if matches!(id, BtreeId::Alloc | BtreeId::Backpointers | BtreeId::Freespace | BtreeId::Accounting | BtreeId::Lru | BtreeId::NeedDiscard | BtreeId::BucketGens) {
            continue;
        }
        let got = after.get(b).unwrap();
        assert!(got == keys, "btree {}: {} keys after replay, {} before", BtreeIdName(*b), got.len(), keys.len());
    }
    assert!(before[&(BtreeId::Extents as u32)].len() > 10);
    let inodes = before[&(BtreeId::Inodes as u32)].iter().filter(|k| !k.0.contains("inode_generation")).count();
    assert_eq!(nr_inodes, inodes as i64, "in-memory nr_inodes after replay (accounting read)");
}

/// Namespace and data operations through `FsTrans` on a volume we
/// initialized: files written, overwritten in the middle (extents cut by
/// `extent_update`, not again by the btree), truncated, unlinked; after a
/// clean shutdown the derived state is exact.
#[test]
fn operations_on_our_volume_keep_derived_state_exact() {
    use bcachefs_rs::fs_common::fs_ops::{create, setattr, unlink, NewInode, SetAttr};
    use bcachefs_rs::fs_common::io_write::write_data;
    use bcachefs_rs::fs_common::Subvol;
    use bcachefs_rs::fs_rw::{writepoint_hashed, FsDataAlloc};

    let bytes = 64usize << 20;
    let o = FormatOpts::new([1; 16], [2; 16], [3; 16], 1_700_000_000_000_000_000);
    let f = format(bytes as u64, &o).unwrap();
    let mem = Arc::new(WMemDev::new(bytes));
    for (sector, data) in f.writes().unwrap().iter() {
        mem.write_sectors(*sector, data, WriteFlags::default()).unwrap();
    }
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    open.mount(1_700_000_001_000_000_000, 9, |fs| {
        fs_initialize(fs)?;
        let sv = Subvol { id: 1, snapshot: u32::MAX, root_inum: 4096 };
        let mut t = fs.trans();
        let mut a = FsDataAlloc::new(fs, writepoint_hashed(1));
        let mut files = Vec::new();
        for i in 0..6u32 {
            let name = format!("f{i}");
            let u = create(&mut t, &sv, 4096, name.as_bytes(), &NewInode { mode: 0o100644, uid: i, gid: 0, rdev: 0 })?;
            let data = vec![b'a' + i as u8; 200_000 + 4096 * i as usize];
            write_data(&mut t, &mut a, &sv, u.inum, 0, &data)?;
            // Overwrite the middle: the old extents are cut.
            write_data(&mut t, &mut a, &sv, u.inum, 65536, &vec![b'X'; 69_632])?;
            files.push((name, u.inum));
        }
        setattr(&mut t, &mut a, &sv, files[1].1, &SetAttr { size: Some(10_000), ..SetAttr::default() })?;
        unlink(&mut t, &sv, 4096, files[2].0.as_bytes(), false)?;
        drop(t);
        drop(a);
        // The in-memory counters follow the btree's.
        let mem = fs.triggers.accounting_mem()?;
        let nr_inodes = mem.get(&bcachefs_rs::accounting::DiskAccountingPos::NrInodes);
        assert_eq!(nr_inodes[0], 2 + 6 - 1, "root, lost+found, six files less one unlinked");
        let mut text = String::new();
        fs.to_text(&mut text).unwrap();
        assert!(
            text.contains("dev-0/alloc_debug:") && text.contains("open_buckets_user") && text.contains("accounting in memory"),
            "{text}"
        );
        fs.shutdown()
    })
    .unwrap();
    drop(open);
    let img = mem.0.lock().unwrap().clone();
    let fs = Fs::open(common::MemDev(img), &OpenOpts::default()).unwrap();
    let m = check_fs(&fs).unwrap();
    let ms: Vec<String> = m.iter().map(|m| m.to_string()).collect();
    assert!(m.is_empty(), "{} mismatches:\n{}", m.len(), ms.join("\n"));
    let sv = root_subvol(&fs).unwrap();
    let root = inode_get(&fs, &sv, 4096).unwrap();
    assert!(lookup(&fs, &sv, &root, b"f2").unwrap().is_none());
    let (inum, _) = lookup(&fs, &sv, &root, b"f3").unwrap().unwrap();
    let a3 = inode_get(&fs, &sv, inum).unwrap();
    let mut buf = vec![0u8; (a3.size as usize).div_ceil(4096) * 4096];
    bcachefs_rs::fs_common::read_data(&fs, &sv, &a3, 0, &mut buf, &mut Default::default()).unwrap();
    assert!(buf[..65536].iter().all(|&b| b == b'd'));
    assert!(buf[65536..65536 + 69_632].iter().all(|&b| b == b'X'));
    assert!(buf[65536 + 69_632..a3.size as usize].iter().all(|&b| b == b'd'));
    assert_eq!(inode_get(&fs, &sv, lookup(&fs, &sv, &root, b"f1").unwrap().unwrap().0).unwrap().size, 10_000);
}

/// An unclean shutdown of our own volume after accounting changed: the
/// journal holds the changes (flushed), the btree nodes do not.  The
/// journal must carry accounting as deltas (C's write buffer keys): the
/// read-only overlay and replay add each delta newer than the btree's key
/// once, so the derived state is exact both before and after replay.
/// Journalled absolute values would be added to the btree's and counted
/// twice.
#[test]
fn unclean_shutdown_of_our_volume_replays_accounting_once() {
    use bcachefs_rs::fs_common::fs_ops::{create, unlink, NewInode};
    use bcachefs_rs::fs_common::io_write::write_data;
    use bcachefs_rs::fs_common::Subvol;
    use bcachefs_rs::fs_rw::{writepoint_hashed, FsDataAlloc};
    use bcachefs_rs::journal::res::JournalSink as _;

    let mem = Arc::new(WMemDev(std::sync::Mutex::new(make(64 << 20))));
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    let crashed = open
        .mount(1_700_000_002_000_000_000, 5, |fs| {
            let sv = Subvol { id: 1, snapshot: u32::MAX, root_inum: 4096 };
            let mut t = fs.trans();
            let mut a = FsDataAlloc::new(fs, writepoint_hashed(2));
            for i in 0..5u32 {
                let name = format!("g{i}");
                let u = create(&mut t, &sv, 4096, name.as_bytes(), &NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 })?;
                write_data(&mut t, &mut a, &sv, u.inum, 0, &vec![b'g'; 100_000])?;
            }
            unlink(&mut t, &sv, 4096, b"g3", false)?;
            drop(t);
            // Durable in the journal; no node written: then the power goes.
            let seq = fs.open.journal.cur_seq();
            fs.open.journal.flush_seq(seq)?;
            Ok(mem.0.lock().unwrap().clone())
        })
        .unwrap();
    drop(open);
    let mismatches = |img: Vec<u8>| -> Vec<String> {
        let fs = Fs::open(common::MemDev(img), &OpenOpts::default()).unwrap();
        check_fs(&fs).unwrap().iter().map(|m| m.to_string()).collect()
    };
    let m = mismatches(crashed.clone());
    assert!(m.is_empty(), "read-only overlay of the crashed volume: {} mismatches:\n{}", m.len(), m.join("\n"));
    let mem = Arc::new(WMemDev(std::sync::Mutex::new(crashed)));
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    let nr_inodes = open
        .mount(1_700_000_003_000_000_000, 6, |fs| {
            let n = fs.triggers.accounting_mem()?.get(&bcachefs_rs::accounting::DiskAccountingPos::NrInodes)[0];
            fs.shutdown()?;
            Ok(n)
        })
        .unwrap();
    drop(open);
    assert_eq!(nr_inodes, 2 + 5 - 1, "nr_inodes after replay: root, lost+found, five files less one");
    let m = mismatches(mem.0.lock().unwrap().clone());
    assert!(m.is_empty(), "after replay and a clean shutdown: {} mismatches:\n{}", m.len(), m.join("\n"));
}
