// SPDX-License-Identifier: GPL-2.0
//! The btree write buffer in the read-write mount
//! (`src/btree/write_buffer.rs`, C's `btree_write_buffer.c`): backpointer
//! updates are journalled (as `btree_keys` on disk) and reach the leaves
//! only when the write buffer is flushed; the write buffer's journal pin
//! holds `last_seq`; a clean shutdown flushes it; an unclean one replays
//! the keys from the journal; journal reclaim flushes it mid-run.

use std::sync::Arc;

use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::btree::testing::MemDev as WMemDev;
use bcachefs_rs::fs_rw::SharedDev;
use bcachefs_rs::btree::{lockrestart_do, write_dirty_nodes};
use bcachefs_rs::format::bkey::{BtreeId, KeyType};
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::jset::{jset_magic, EntryType, Jset};
use bcachefs_rs::fs_common::fs_ops::{create, unlink, NewInode};
use bcachefs_rs::fs_common::io_write::write_data;
use bcachefs_rs::fs_common::Subvol;
use bcachefs_rs::fs_rw::{writepoint_hashed, BchFs, BchFsOpen, FsDataAlloc};
use bcachefs_rs::gc::check_fs;
use bcachefs_rs::journal::res::JournalSink;
use bcachefs_rs::platform::{BlockDev, WriteFlags};

#[allow(dead_code)]
mod common;
#[path = "common/volume.rs"]
mod volume;

/// A volume made by our `format` and initialized.
fn fresh() -> Arc<WMemDev> {
    volume::initialized(BYTES, &[], 1)
}

/// The shared in-memory device (`fs_rw::SharedDev`).
type Dev = SharedDev<WMemDev>;

const NOW: i64 = 1_700_000_001_000_000_000;
const ROOT: u64 = 4096;
const SV: Subvol = Subvol { id: 1, snapshot: u32::MAX, root_inum: ROOT };
const BYTES: usize = 64 << 20;

/// A device holding `img`.
fn dev_of(img: &[u8]) -> Arc<WMemDev> {
    let mem = Arc::new(WMemDev::new(img.len()));
    mem.write_sectors(0, img, WriteFlags::default()).unwrap();
    mem
}


/// `gc::check_fs` of `img` through the read-only mount (journal keys
/// overlaid): nothing.
fn assert_clean(img: Vec<u8>) {
    let fs = Fs::open(common::MemDev(img), &OpenOpts::default()).unwrap();
    let m = check_fs(&fs).unwrap();
    let ms: Vec<String> = m.iter().map(|m| m.to_string()).collect();
    assert!(m.is_empty(), "{} mismatches:\n{}", m.len(), ms.join("\n"));
}

fn image(mem: &Arc<WMemDev>) -> Vec<u8> {
    mem.0.lock().unwrap().clone()
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

/// Creates `n` files `{prefix}{i}` of 8 KiB of data each.
fn write_files(fs: &BchFs<Dev>, prefix: &str, n: usize) {
    let mut t = fs.trans();
    let mut a = FsDataAlloc::new(fs, writepoint_hashed(5));
    for i in 0..n {
        let name = format!("{prefix}{i}");
        let u = create(&mut t, &SV, ROOT, name.as_bytes(), &NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0 }).unwrap();
        write_data(&mut t, &mut a, &SV, u.inum, 0, &data(u.inum, 8192)).unwrap();
    }
}

/// Backpointers in the btree's leaves that point at extents (user data).
fn extent_bps_in_btree(fs: &BchFs<Dev>) -> usize {
    let mut n = 0;
    lockrestart_do(&fs.btree, |t| {
        n = 0;
        let it = t.iter(BtreeId::Backpointers, Bpos::new(0, 0, 0), false)?;
        while let Some(k) = t.iter_next(it)? {
            // Value: btree id, level, ...: extents' keys, not their nodes.
            if k.k.key_type == KeyType::Backpointer as u8 && k.v.get(..2) == Some(&[BtreeId::Extents as u8, 0][..]) {
                n += 1;
            }
        }
        Ok(())
    })
    .unwrap();
    n
}

/// Journal entries on the device: (btree_keys keys for the backpointers
/// btree, write_buffer_keys entries of any btree).
fn journal_bp_keys(mem: &Arc<WMemDev>) -> (usize, usize) {
    let open = BchFsOpen::open(SharedDev(dev_of(&image(mem)))).unwrap();
    let jr = bcachefs_rs::journal::read(&*open.dev, &open.info).unwrap();
    let magic = jset_magic(&open.info.uuid);
    let (mut bp, mut wb) = (0, 0);
    for j in jr.journal.jsets.iter() {
        let js = Jset::parse(j, magic).unwrap();
        for e in js.entries() {
            let e = e.unwrap();
            if e.ty == EntryType::WriteBufferKeys as u8 {
                wb += 1;
            }
            if e.ty == EntryType::BtreeKeys as u8 && e.btree_id == BtreeId::Backpointers as u8 && e.level == 0 {
                // Backpointer keys are 40 + 32 bytes.
                bp += e.data.len() / 72;
            }
        }
    }
    (bp, wb)
}

#[test]
fn backpointers_reach_the_leaves_only_through_a_flush() {
    let mem = fresh();
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    open.mount(NOW, 2, |fs| {
        assert_eq!(extent_bps_in_btree(fs), 0);
        write_files(fs, "f", 20);
        // Committed, journalled, not in the leaves.
        assert_eq!(extent_bps_in_btree(fs), 0, "backpointers inserted at commit: {:?}", fs.open.write_buffer.stats());
        let j = &fs.open.journal;
        j.entry_close();
        let st = fs.open.write_buffer.stats();
        assert!(st.nr_keys >= 20, "{st:?}");
        assert!(st.oldest_seq > 0);
        JournalSink::flush_seq(&**j, j.cur_seq())?;
        let (bp, wb) = journal_bp_keys(&mem);
        assert!(bp >= 20, "{bp} backpointer keys in the journal");
        assert_eq!(wb, 0, "write_buffer_keys entries are written as btree_keys");
        let mut text = String::new();
        fs.to_text(&mut text).unwrap();
        assert!(text.contains("btree_write_buffer:\nnr keys: "), "{text}");
        assert!(text.contains("btree write buffer"), "journal_pins names the write buffer's pin:\n{text}");
        // The flush inserts them (newest per position) and empties the buffer.
        let n = fs.write_buffer_flush()?;
        assert!(n >= 20, "{n}");
        assert_eq!(extent_bps_in_btree(fs), 20);
        let st = fs.open.write_buffer.stats();
        assert_eq!((st.nr_keys, st.oldest_seq), (0, 0));
        fs.shutdown()
    })
    .unwrap();
    assert_clean(image(&mem));
}

#[test]
fn the_write_buffer_pin_holds_last_seq() {
    let mem = fresh();
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    open.mount(NOW, 3, |fs| {
        let j = &fs.open.journal;
        write_files(fs, "p", 4);
        j.entry_close();
        let pinned = fs.open.write_buffer.stats().oldest_seq;
        assert!(pinned > 0);
        // More entries, every dirty node written: only the write buffer
        // holds `pinned`.
        for round in 0..6 {
            write_files(fs, &format!("q{round}-"), 1);
            j.entry_close();
            write_dirty_nodes(&fs.btree)?;
            j.journal_do_work(0);
        }
        assert!(j.cur_seq() > pinned + 3);
        assert!(j.last_seq() <= pinned, "last_seq {} passed the write buffer's seq {pinned}", j.last_seq());
        JournalSink::flush_seq(&**j, j.cur_seq())?;
        assert!(j.last_seq() <= pinned);
        // Flushed: the pin goes with the nodes written.
        fs.flush()?;
        JournalSink::flush_seq(&**j, j.cur_seq())?;
        j.journal_do_work(0);
        assert!(j.last_seq() > pinned, "last_seq {} still at {pinned}", j.last_seq());
        fs.shutdown()
    })
    .unwrap();
    assert_clean(image(&mem));
}

#[test]
fn unclean_shutdown_with_buffered_keys_replays_clean() {
    let mem = fresh();
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    let crashed = open
        .mount(NOW, 4, |fs| {
            write_files(fs, "c", 30);
            let j = &fs.open.journal;
            j.entry_close();
            JournalSink::flush_seq(&**j, j.cur_seq())?;
            assert!(fs.open.write_buffer.stats().nr_keys >= 30);
            // Crash: the journal is on disk, the write buffer is not.
            Ok(image(&mem))
        })
        .unwrap();
    drop(open);
    // The read-only mount overlays the journal's keys.
    assert_clean(crashed.clone());
    // Replay, then a clean shutdown.
    let mem2 = dev_of(&crashed);
    let open = BchFsOpen::open(SharedDev(mem2.clone())).unwrap();
    open.mount(NOW, 5, |fs| {
        assert_eq!(extent_bps_in_btree(fs), 30, "replay inserted the journal's backpointers");
        write_files(fs, "d", 5);
        fs.shutdown()
    })
    .unwrap();
    drop(open);
    assert_clean(image(&mem2));
}

#[test]
fn journal_reclaim_flushes_the_buffer_mid_run() {
    let mem = fresh();
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    open.mount(NOW, 6, |fs| {
        for round in 0..40 {
            write_files(fs, &format!("r{round}-"), 10);
            // Each round in its own journal entries.
            fs.open.journal.entry_close();
            fs.after_commit()?;
        }
        let st = fs.open.write_buffer.stats();
        assert!(st.nr_flushes > 0 && st.nr_flushed >= 100, "no flush by reclaim: {st:?}");
        fs.shutdown()
    })
    .unwrap();
    assert_clean(image(&mem));
}

#[test]
fn the_newest_key_per_position_wins() {
    let mem = fresh();
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    open.mount(NOW, 7, |fs| {
        write_files(fs, "u", 12);
        // Inserted then deleted before any flush: both in the buffer, the
        // deletion newer.
        let mut t = fs.trans();
        for i in (0..12).step_by(2) {
            unlink(&mut t, &SV, ROOT, format!("u{i}").as_bytes(), false)?;
        }
        drop(t);
        fs.open.journal.entry_close();
        let held = fs.open.write_buffer.stats().nr_keys;
        assert!(held >= 18, "{held} keys");
        fs.write_buffer_flush()?;
        assert_eq!(extent_bps_in_btree(fs), 6);
        fs.shutdown()
    })
    .unwrap();
    assert_clean(image(&mem));
}
