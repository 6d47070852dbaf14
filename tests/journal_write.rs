// SPDX-License-Identifier: GPL-2.0
//! The journal's write side (`src/journal/write.rs`) against the read side
//! (`bcachefs_rs::journal::read`, `JournalKeys`): entries written through
//! reservations read back with every key, sequence number, `last_seq` and
//! root; flush and no-flush writes; the bucket ring wrapping under pins
//! and reclaim; crashes at every write; a C-written journal continued.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex as StdMutex;

use bcachefs_rs::checksum::CsumType;
use bcachefs_rs::errcode::{BchError, Errno, Restart};
use bcachefs_rs::format::bkey::{Bkey, KeyType};
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::jset::{jset_magic, EntryType, Jset};
use bcachefs_rs::format::list::FsInfo;
use bcachefs_rs::format::sb::read_super;
use bcachefs_rs::format::val::extent::{BtreePtrV2, ExtentPtr};
use bcachefs_rs::format::val::DevInfo;
use bcachefs_rs::format::version::VERSION_CURRENT;
use bcachefs_rs::journal::reclaim::JournalFlusher;
use bcachefs_rs::journal::types::{JournalGeometry, JournalOpts, JournalStart};
use bcachefs_rs::journal::write::{start_after_read, Journal};
use bcachefs_rs::journal::{self, JournalSink, PinOwner, ResFlags};
use bcachefs_rs::platform::{BlockDev, Vec as PVec, WriteFlags, SECTOR_SIZE};
use bcachefs_rs::recovery::JournalKeys;

const UUID: [u8; 16] = [7; 16];
const BUCKET_SECTORS: u32 = 16;
const NBUCKETS: u64 = 256;
const LRU: u8 = 10;

/// One device operation, as the recording device saw it.
#[derive(Clone)]
enum Op {
    Write { sector: u64, data: Vec<u8>, flags: WriteFlags },
}

/// An in-memory device that records every write in order.
struct RecDev {
    img: StdMutex<Vec<u8>>,
    log: StdMutex<Vec<Op>>,
    fail_writes_from: AtomicU64,
}

impl RecDev {
    fn new(bytes: usize) -> RecDev {
        RecDev { img: StdMutex::new(vec![0; bytes]), log: StdMutex::new(Vec::new()), fail_writes_from: AtomicU64::new(u64::MAX) }
    }

    fn from_image(img: Vec<u8>) -> RecDev {
        RecDev { img: StdMutex::new(img), log: StdMutex::new(Vec::new()), fail_writes_from: AtomicU64::new(u64::MAX) }
    }

    fn nr_writes(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn image(&self) -> Vec<u8> {
        self.img.lock().unwrap().clone()
    }

    fn writes(&self) -> Vec<Op> {
        self.log.lock().unwrap().clone()
    }
}

impl BlockDev for RecDev {
    fn name(&self) -> &str {
        "recdev"
    }

    fn nr_sectors(&self) -> u64 {
        (self.img.lock().unwrap().len() / SECTOR_SIZE) as u64
    }

    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let img = self.img.lock().unwrap();
        let s = sector as usize * SECTOR_SIZE;
        buf.copy_from_slice(img.get(s..s + buf.len()).ok_or(Errno::EIO)?);
        Ok(())
    }

    fn write_sectors(&self, sector: u64, buf: &[u8], flags: WriteFlags) -> Result<(), Errno> {
        if buf.len() % SECTOR_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let mut log = self.log.lock().unwrap();
        if log.len() as u64 >= self.fail_writes_from.load(Ordering::Relaxed) {
            return Err(Errno::EIO);
        }
        let mut img = self.img.lock().unwrap();
        let s = sector as usize * SECTOR_SIZE;
        img.get_mut(s..s + buf.len()).ok_or(Errno::EIO)?.copy_from_slice(buf);
        log.push(Op::Write { sector, data: buf.to_vec(), flags });
        Ok(())
    }
}

fn buckets(first: u64, nr: u64) -> Vec<u64> {
    (first..first + nr).collect()
}

fn geometry(journal_buckets: &[u64]) -> JournalGeometry {
    let mut b = PVec::new();
    b.extend_from_slice(journal_buckets).unwrap();
    JournalGeometry {
        magic: jset_magic(&UUID),
        block_bytes: 4096,
        bucket_sectors: BUCKET_SECTORS,
        buckets: b,
        csum_type: CsumType::Crc32cNonzero,
        version: VERSION_CURRENT,
    }
}

fn fs_info(journal_buckets: &[u64], blacklist: &[(u64, u64)]) -> FsInfo {
    let mut devs = PVec::new();
    devs.push(Some(DevInfo { bucket_size: BUCKET_SECTORS, first_bucket: 0, nbuckets: NBUCKETS, durability: 1, failed: false }))
        .unwrap();
    let mut jb = PVec::new();
    jb.extend_from_slice(journal_buckets).unwrap();
    let mut bl = PVec::new();
    bl.extend_from_slice(blacklist).unwrap();
    FsInfo {
        uuid: UUID,
        block_bytes: 4096,
        node_bytes: BUCKET_SECTORS * SECTOR_SIZE as u32,
        dev_idx: 0,
        devs,
        journal_buckets: jb,
        blacklist: bl,
        clean: PVec::new(),
    }
}

fn opts(flush_delay_ms: u32) -> JournalOpts {
    JournalOpts { flush_delay_ms, ..JournalOpts::default() }
}

/// An lru key at (1, n) with value v, as a whole bkey_i.
fn key(n: u64, v: u64) -> Vec<u8> {
    let k = Bkey::new(KeyType::Lru, Bpos::pos(1, n), 1);
    let mut b = k.to_bytes().to_vec();
    b.extend_from_slice(&v.to_le_bytes());
    b
}

/// A btree_ptr_v2 root key pointing at sector `sector`.
fn root_key(seq: u64, sector: u64) -> Vec<u8> {
    let mut v = [0u8; 48];
    BtreePtrV2 { mem_ptr: 0, seq, sectors_written: 8, flags: 0, min_key: Bpos::default() }.encode(&mut v).unwrap();
    v[40..48].copy_from_slice(&ExtentPtr { offset: sector, gen: 0, ..Default::default() }.encode().to_le_bytes());
    let k = Bkey::new(KeyType::BtreePtrV2, Bpos::new(u64::MAX, u64::MAX, u32::MAX), 6);
    let mut b = k.to_bytes().to_vec();
    b.extend_from_slice(&v);
    b
}

/// Commits one key as a btree commit does: reserve, copy, put.  Returns
/// the sequence number it went to.
fn commit<D: BlockDev + Send + Sync>(j: &Journal<D>, n: u64, v: u64) -> u64 {
    let k = key(n, v);
    let mut res = j.res_get(1 + k.len() as u32 / 8, ResFlags::default()).unwrap();
    j.res_add_entry(&mut res, EntryType::BtreeKeys as u8, LRU, 0, &k).unwrap();
    let seq = res.seq;
    j.res_put(res);
    seq
}

/// [`commit`], and pins the entry as the btree would until its node is
/// written (here: forever).
fn commit_pinned<D: BlockDev + Send + Sync>(j: &Journal<D>, n: u64, v: u64) -> u64 {
    let seq = commit(j, n, v);
    j.pin_get(seq, PinOwner::Other);
    seq
}

/// What the read side makes of an image: the replay range and, per lru
/// key offset, its value and seq.
struct ReadBack {
    last_seq: u64,
    seq_last: u64,
    keys: BTreeMap<u64, (u64, u64)>,
    roots: Vec<Option<(u8, u64)>>,
}

fn read_back(img: Vec<u8>, journal_buckets: &[u64], blacklist: &[(u64, u64)]) -> Result<ReadBack, String> {
    let dev = RecDev::from_image(img);
    let fs = fs_info(journal_buckets, blacklist);
    let r = journal::read(&dev, &fs).map_err(|e| e.to_string())?;
    let keys = JournalKeys::build(&fs, &r.journal).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for i in 0..keys.len() {
        let jk = keys.get(i).unwrap();
        let (k, v) = keys.key(i).unwrap();
        assert_eq!(jk.btree, LRU);
        out.insert(k.p.offset, (u64::from_le_bytes(v.try_into().unwrap()), jk.seq));
    }
    let roots = journal::btree_roots(&fs, &r.journal)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.map(|r| (r.level, BtreePtrV2::decode(&r.val).unwrap().seq)))
        .collect();
    Ok(ReadBack { last_seq: r.journal.last_seq, seq_last: r.seq_last, keys: out, roots })
}

#[test]
fn entries_read_back_with_keys_seqs_roots_and_extras() {
    let jb = buckets(10, 8);
    let dev = RecDev::new((NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE);
    let j = Journal::new(dev, geometry(&jb), opts(0), JournalStart::fresh()).unwrap();
    j.set_time(5, 1_700_000_000);
    j.set_clocks(3, [11, 22]);
    j.set_btree_root(LRU, 0, Some(&root_key(0x55, 2048))).unwrap();
    let mut seqs = Vec::new();
    for n in 0..20 {
        seqs.push(commit_pinned(&j, n, n * 100));
        if n % 5 == 4 {
            j.flush_seq(j.cur_seq()).unwrap();
        }
    }
    assert_eq!(seqs[0], 1, "a fresh journal starts at seq 1");
    assert_eq!(*seqs.last().unwrap(), 4);
    assert_eq!(j.flushed_seq_ondisk(), 4);
    // The first write went to the second bucket, as C's fresh journal does.
    let w = j.dev().writes();
    assert_eq!(w.len(), 4);
    let Op::Write { sector, flags, ref data } = w[0];
    assert_eq!(sector, 11 * u64::from(BUCKET_SECTORS));
    assert_eq!(flags, WriteFlags::FLUSH_FUA);
    assert_eq!(data.len(), 4096);

    let rb = read_back(j.dev().image(), &jb, &[]).unwrap();
    assert_eq!((rb.last_seq, rb.seq_last), (1, 4));
    assert_eq!(rb.keys.len(), 20);
    for n in 0..20u64 {
        assert_eq!(rb.keys[&n], (n * 100, seqs[n as usize]), "key {n}");
    }
    assert_eq!(rb.roots[LRU as usize], Some((0, 0x55)));
    assert!(rb.roots.iter().enumerate().all(|(i, r)| r.is_none() || i == LRU as usize));

    // Every entry carries the root, datetime, usage and both clocks, after
    // the keys; empty entries were dropped.
    let Op::Write { ref data, .. } = w[1];
    let js = Jset::parse(data, jset_magic(&UUID)).unwrap();
    js.verify_csum().unwrap();
    assert_eq!(js.header.csum_type(), CsumType::Crc32cNonzero as u8);
    let types: Vec<u8> = js.entries().map(|e| e.unwrap().ty).collect();
    let t = |e: EntryType| e as u8;
    assert_eq!(
        types,
        [
            vec![t(EntryType::BtreeKeys); 5],
            vec![t(EntryType::BtreeRoot), t(EntryType::Datetime), t(EntryType::Usage), t(EntryType::Clock), t(EntryType::Clock)]
        ]
        .concat()
    );
    let e: Vec<_> = js.entries().map(|e| e.unwrap()).collect();
    assert_eq!(e[6].data, 1_700_000_000u64.to_le_bytes());
    assert_eq!((e[7].btree_id, e[7].data), (2, &3u64.to_le_bytes()[..]));
    assert_eq!(&e[9].data[8..], 22u64.to_le_bytes());

    let mut p = String::new();
    j.pins_to_text(&mut p).unwrap();
    assert_eq!(p, (1..=4).map(|s| format!("{s}: count 5\n  other: 5\n")).collect::<String>());
    let mut s = String::new();
    j.debug_to_text(&mut s).unwrap();
    assert!(s.contains("seq:\t\t\t4\n") && s.contains("flushed_seq_ondisk:\t4\n"), "{s}");
    assert!(s.contains("dirty journal entries:\t4/1024\n") && s.contains("last_seq:\t\t1\n"), "{s}");
    assert!(s.contains("cur_idx\t2 (seq 4)"), "{s}");
    assert!(s.contains("nr flush writes:\t4\n"), "{s}");
}

#[test]
fn noflush_writes_after_the_last_flush_are_not_replayed() {
    let jb = buckets(10, 8);
    let dev = RecDev::new((NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE);
    let j = Journal::new(dev, geometry(&jb), opts(1000), JournalStart::fresh()).unwrap();
    j.set_time(100, 0);
    let s1 = commit_pinned(&j, 1, 1);
    j.flush_seq(s1).unwrap();
    // Within the flush delay: entries closed now are written without a flush.
    let s2 = commit_pinned(&j, 2, 2);
    j.entry_close();
    let s3 = commit_pinned(&j, 3, 3);
    j.entry_close();
    assert_eq!((s1, s2, s3), (1, 2, 3));
    assert_eq!(j.seq_ondisk(), 3);
    assert_eq!(j.flushed_seq_ondisk(), 1);
    let w = j.dev().writes();
    let flags: Vec<_> = w.iter().map(|Op::Write { flags, .. }| *flags).collect();
    assert_eq!(flags, [WriteFlags::FLUSH_FUA, WriteFlags::NONE, WriteFlags::NONE]);
    let Op::Write { ref data, .. } = w[1];
    let h = Jset::parse(data, jset_magic(&UUID)).unwrap().header;
    assert!(h.no_flush());
    assert_eq!(h.last_seq, 0, "no-flush writes carry no last_seq");

    let rb = read_back(j.dev().image(), &jb, &[]).unwrap();
    assert_eq!(rb.keys.keys().copied().collect::<Vec<_>>(), [1], "no-flush entries are not replayed");

    // Flushing seq 2, already written without a flush, flushes a newer one.
    j.flush_seq(s2).unwrap();
    assert_eq!(j.flushed_seq_ondisk(), 4);
    let rb = read_back(j.dev().image(), &jb, &[]).unwrap();
    assert_eq!(rb.keys.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(rb.seq_last, 4);

    // Past the delay the timer closes the entry and writes it with a flush.
    let s5 = commit_pinned(&j, 5, 5);
    assert_eq!(j.journal_do_work(150), Some(1100), "open entry expires one delay after the last flush");
    assert_eq!(j.seq_ondisk(), 4);
    assert_eq!(j.journal_do_work(1100), None);
    assert_eq!(j.flushed_seq_ondisk(), s5);
    assert_eq!(read_back(j.dev().image(), &jb, &[]).unwrap().keys.len(), 4);
}

/// A flusher standing in for the btree: pins one seq per key committed
/// and releases them (oldest first) when asked.
struct TestFlusher {
    j: StdMutex<Option<std::sync::Weak<Journal<RecDev>>>>,
    pinned: StdMutex<std::collections::VecDeque<u64>>,
    calls: AtomicU64,
}

impl JournalFlusher for TestFlusher {
    fn flush_pins(&self, seq_to_flush: u64, min_nr: usize) -> usize {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let Some(j) = self.j.lock().unwrap().as_ref().and_then(|w| w.upgrade()) else { return 0 };
        let mut n = 0;
        loop {
            let seq = {
                let mut p = self.pinned.lock().unwrap();
                match p.front() {
                    Some(&s) if s <= seq_to_flush || n < min_nr => p.pop_front().unwrap(),
                    _ => break,
                }
            };
            j.pin_put(seq, PinOwner::BtreeNode(LRU, 0));
            n += 1;
        }
        n
    }
}

#[test]
fn ring_wraps_around_with_pins_and_reclaim() {
    let jb = buckets(20, 6);
    let dev = RecDev::new((NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE);
    let j = std::sync::Arc::new(Journal::new(dev, geometry(&jb), opts(0), JournalStart::fresh()).unwrap());
    let fl = std::sync::Arc::new(TestFlusher {
        j: StdMutex::new(Some(std::sync::Arc::downgrade(&j))),
        pinned: StdMutex::new(Default::default()),
        calls: AtomicU64::new(0),
    });
    j.set_flusher(fl.clone());
    let mut latest = BTreeMap::new();
    for n in 0..600u64 {
        let seq = commit(&j, n % 50, n);
        j.pin_get(seq, PinOwner::BtreeNode(LRU, 0));
        fl.pinned.lock().unwrap().push_back(seq);
        latest.insert(n % 50, (n, seq));
        if n % 7 == 0 {
            // A big entry (two blocks) now and then: it must not straddle
            // the end of a bucket.
            for m in 0..80u64 {
                let s = commit(&j, 1000 + m, n);
                j.pin_get(s, PinOwner::BtreeNode(LRU, 0));
                fl.pinned.lock().unwrap().push_back(s);
                latest.insert(1000 + m, (n, s));
            }
        }
        if n % 3 == 2 {
            j.flush_seq(seq).unwrap();
        }
    }
    let last = j.cur_seq();
    j.flush_seq(last).unwrap();
    assert!(last > 150, "every flush_seq wrote its own entry: {last}");
    assert!(fl.calls.load(Ordering::Relaxed) > 0, "reclaim ran");
    // 6 buckets of 2 entries: the ring went round many times.
    let w = j.dev().writes();
    let bucket_of = |Op::Write { sector, .. }: &Op| sector / u64::from(BUCKET_SECTORS);
    let order: Vec<u64> = w.iter().map(bucket_of).collect();
    assert!(order.windows(2).filter(|p| p[1] < p[0]).count() > 10, "wrapped: {order:?}");
    assert!(order.iter().all(|b| jb.contains(b)));
    let bs = u64::from(BUCKET_SECTORS);
    let sizes: Vec<u64> = w.iter().map(|Op::Write { data, .. }| (data.len() / SECTOR_SIZE) as u64).collect();
    assert!(sizes.contains(&16) && sizes.contains(&8), "{sizes:?}");
    for Op::Write { sector, data, .. } in &w {
        assert!(sector % bs + (data.len() / SECTOR_SIZE) as u64 <= bs, "write at {sector} straddles a bucket");
    }

    let rb = read_back(j.dev().image(), &jb, &[]).unwrap();
    assert_eq!(rb.seq_last, last);
    assert!(rb.last_seq > last - 20, "pins released, last_seq advanced: {}", rb.last_seq);
    // Every key whose entry is in the replay range reads back.
    for (n, (v, seq)) in &latest {
        if *seq >= rb.last_seq {
            assert_eq!(rb.keys.get(n), Some(&(*v, *seq)), "key {n}");
        }
    }
    let mut p = String::new();
    j.pins_to_text(&mut p).unwrap();
    assert!(p.is_empty() || p.contains("count"), "{p}");
    // Nothing pinned at all: the journal can be stopped clean.
    fl.pinned.lock().unwrap().iter().for_each(|&s| j.pin_put(s, PinOwner::BtreeNode(LRU, 0)));
    fl.pinned.lock().unwrap().clear();
    let seq = j.stop().unwrap();
    assert_eq!(seq, last + 1);
    assert_eq!(j.res_get(1, ResFlags::default()).unwrap_err(), BchError::Errno(Errno::EROFS));
}

#[test]
fn full_journal_without_reclaim_fails_cleanly() {
    let jb = buckets(20, 4);
    let dev = RecDev::new((NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE);
    let j = Journal::new(dev, geometry(&jb), opts(0), JournalStart::fresh()).unwrap();
    let mut err = None;
    for n in 0..100u64 {
        let k = key(n, n);
        match j.res_get(1 + k.len() as u32 / 8, ResFlags { nonblock: true, reclaim: false }) {
            Ok(mut res) => {
                j.pin_get(res.seq, PinOwner::Other);
                j.res_add_entry(&mut res, EntryType::BtreeKeys as u8, LRU, 0, &k).unwrap();
                let seq = res.seq;
                j.res_put(res);
                j.flush_seq(seq).unwrap();
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err, Some(BchError::Restart(Restart::JournalResGet)), "nonblock restarts");
    // Blocking, with no flusher to release the pins: ENOSPC, not a hang;
    // the journal stays usable once space comes back.
    assert_eq!(j.res_get(1, ResFlags::default()).unwrap_err(), BchError::Errno(Errno::ENOSPC));
    assert_eq!(j.error(), None);
    // Reclaim itself stuck is fatal (`journal_error_check_stuck()`).
    // Reclaim may use what the watermark keeps back; once that is gone too
    // the journal is stuck, which is fatal (`journal_error_check_stuck()`).
    let reclaim = ResFlags { nonblock: false, reclaim: true };
    let mut n = 0;
    let err = loop {
        match j.res_get(1, reclaim) {
            Ok(res) => {
                j.pin_get(res.seq, PinOwner::Other);
                let seq = res.seq;
                j.res_put(res);
                j.flush_seq(seq).unwrap();
                n += 1;
                assert!(n < 10);
            }
            Err(e) => break e,
        }
    };
    assert!(n > 0, "reclaim got the space kept for it");
    assert_eq!(err, BchError::Errno(Errno::ENOSPC));
    assert_eq!(j.error(), Some(Errno::ENOSPC));
    let mut s = String::new();
    j.debug_to_text(&mut s).unwrap();
    assert!(s.contains("error:"), "{s}");
}

/// Runs a workload on `dev`, returning for each flush_seq that returned
/// the number of device writes done by then and the keys it covered.
fn crash_workload(j: &Journal<RecDev>) -> Vec<(usize, BTreeMap<u64, u64>)> {
    let mut done = Vec::new();
    let mut keys = BTreeMap::new();
    let mut now = 0;
    for n in 0..40u64 {
        commit_pinned(j, n % 13, n);
        keys.insert(n % 13, n);
        now += 150;
        if n % 4 == 3 {
            j.flush_seq(j.cur_seq()).unwrap();
            done.push((j.dev().nr_writes(), keys.clone()));
        } else if n % 4 == 1 {
            // As if the entry had filled up.
            j.entry_close();
        } else {
            j.journal_do_work(now);
        }
    }
    done
}

#[test]
fn crash_at_every_write_reads_back_every_flushed_entry() {
    let jb = buckets(30, 40);
    let size = (NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE;
    let j = Journal::new(RecDev::new(size), geometry(&jb), opts(500), JournalStart::fresh()).unwrap();
    let done = crash_workload(&j);
    let w = j.dev().writes();
    assert!(w.iter().any(|Op::Write { flags, .. }| *flags == WriteFlags::NONE), "some no-flush writes");
    for cut in 0..=w.len() {
        // The writes up to the cut, and also with the unflushed ones after
        // the last flush lost.
        let last_flush = w[..cut].iter().rposition(|Op::Write { flags, .. }| flags.preflush).map_or(0, |i| i + 1);
        // Each variant: the writes up to `keep`, less one unflushed write
        // after the last flush (`usize::MAX`: none).
        let mut variants = vec![(cut, usize::MAX), (last_flush, usize::MAX)];
        variants.extend((last_flush..cut).map(|lost| (cut, lost)));
        for (keep, lost) in variants {
            let mut img = vec![0u8; size];
            for (i, Op::Write { sector, data, .. }) in w[..keep].iter().enumerate() {
                if i == lost {
                    continue;
                }
                let s = *sector as usize * SECTOR_SIZE;
                img[s..s + data.len()].copy_from_slice(data);
            }
            let rb = read_back(img, &jb, &[]).unwrap_or_else(|e| panic!("cut {cut} keep {keep}: {e}"));
            if let Some((_, keys)) = done.iter().rev().find(|(nw, _)| *nw <= keep) {
                for (n, v) in keys {
                    let got = rb.keys.get(n).map(|x| x.0);
                    assert!(got.is_some_and(|g| g >= *v), "cut {cut}: key {n} = {got:?}, flushed {v}");
                }
            }
        }
    }
}

#[test]
fn a_failed_write_stops_the_journal() {
    let jb = buckets(30, 5);
    let size = (NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE;
    let j = Journal::new(RecDev::new(size), geometry(&jb), opts(0), JournalStart::fresh()).unwrap();
    let s1 = commit(&j, 1, 1);
    j.flush_seq(s1).unwrap();
    j.dev().fail_writes_from.store(1, Ordering::Relaxed);
    let s2 = commit(&j, 2, 2);
    assert_eq!(j.flush_seq(s2), Err(Errno::EIO));
    assert_eq!(j.error(), Some(Errno::EIO));
    assert_eq!(j.res_get(1, ResFlags::default()).unwrap_err(), BchError::Errno(Errno::EROFS));
    assert_eq!(j.flush_seq(s1), Ok(()), "already on disk");
    let rb = read_back(j.dev().image(), &jb, &[]).unwrap();
    assert_eq!(rb.keys.keys().copied().collect::<Vec<_>>(), [1]);
}

#[test]
fn restart_after_an_unclean_shutdown_continues_the_journal() {
    let jb = buckets(40, 16);
    let size = (NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE;
    let j = Journal::new(RecDev::new(size), geometry(&jb), opts(1000), JournalStart::fresh()).unwrap();
    j.set_btree_root(LRU, 1, Some(&root_key(0x77, 1024))).unwrap();
    for n in 0..6 {
        commit_pinned(&j, n, n);
        j.flush_seq(j.cur_seq()).unwrap();
    }
    // Two no-flush entries after the last flush, then the crash.
    commit_pinned(&j, 100, 100);
    j.entry_close();
    commit_pinned(&j, 101, 101);
    j.entry_close();
    assert_eq!((j.flushed_seq_ondisk(), j.seq_ondisk()), (6, 8));
    let last_write = match j.dev().writes().last() {
        Some(Op::Write { sector, data, .. }) => sector + (data.len() / SECTOR_SIZE) as u64,
        None => unreachable!(),
    };
    let img = j.dev().image();
    drop(j);

    let dev = RecDev::from_image(img);
    let fs = fs_info(&jb, &[]);
    let r = journal::read(&dev, &fs).unwrap();
    let geo = geometry(&jb);
    let start = start_after_read(&dev, &geo, &r, true).unwrap();
    assert_eq!((start.cur_seq, start.last_seq), (8 + 1 + 8, 1));
    assert_eq!(start.blacklist, Some((7, 17)), "{start}");
    let j = Journal::new(dev, geo, opts(1000), start).unwrap();
    j.set_btree_root(LRU, 1, Some(&root_key(0x78, 1024))).unwrap();
    j.replay_done();
    let s = commit(&j, 200, 200);
    assert_eq!(s, 17);
    j.flush_seq(s).unwrap();
    // Written right after the newest entry, in the same bucket.
    let Some(Op::Write { sector, .. }) = j.dev().writes().first().cloned() else { unreachable!() };
    assert_eq!(sector, last_write);

    let rb = read_back(j.dev().image(), &jb, &[(7, 17)]).unwrap();
    assert_eq!(rb.seq_last, 17);
    assert_eq!(rb.last_seq, 17, "replay pins dropped: nothing older needed");
    assert_eq!(rb.keys.keys().copied().collect::<Vec<_>>(), [200]);
    assert_eq!(rb.roots[LRU as usize], Some((1, 0x78)));
}

#[test]
fn a_c_written_journal_is_continued() {
    let img = common::unpack_image("c-unclean-crc64-lz4.bchimg");
    let dev = RecDev::from_image(img);
    let sbr = read_super(&dev).unwrap();
    let sb = sbr.sb();
    let mut fs = FsInfo::from_sb(&sb).unwrap();
    let geo = JournalGeometry::from_sb(&sb).unwrap();
    let r = journal::read(&dev, &fs).unwrap();
    let before = JournalKeys::build(&fs, &r.journal).unwrap();
    let roots_before = journal::btree_roots(&fs, &r.journal).unwrap();
    let start = start_after_read(&dev, &geo, &r, true).unwrap();
    assert_eq!(start.cur_seq, r.seq_last.max(start.cur_seq - 9) + 9);
    let bl = start.blacklist.unwrap();
    let jb: Vec<u64> = fs.journal_buckets.iter().copied().collect();
    let j = Journal::new(dev, geo, JournalOpts::default(), start).unwrap();
    for (i, root) in roots_before.iter().enumerate() {
        if let Some(root) = root {
            let vlen = (usize::from(root.key.u64s) - 5) * 8;
            j.set_btree_root_key(i as u8, root.level, &root.key, &root.val[..vlen]).unwrap();
        }
    }
    j.replay_done();
    let s = commit(&j, 77, 7777);
    j.flush_seq(s).unwrap();

    fs.blacklist.push(bl).unwrap();
    let r2 = journal::read(j.dev(), &fs).unwrap();
    assert_eq!(r2.seq_last, s);
    let after = JournalKeys::build(&fs, &r2.journal).unwrap();
    assert_eq!(after.len(), 1, "replay pins dropped: only the new entry is needed");
    let (k, v) = after.key(0).unwrap();
    assert_eq!((k.p, v), (Bpos::pos(1, 77), &7777u64.to_le_bytes()[..]));
    assert!(!before.is_empty());
    // Every root C had is carried over.
    let roots_after = journal::btree_roots(&fs, &r2.journal).unwrap();
    for (a, b) in roots_before.iter().zip(roots_after.iter()) {
        assert_eq!(a.map(|r| (r.level, r.key.p)), b.map(|r| (r.level, r.key.p)));
    }
    let _ = jb;
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let jb = buckets(10, 4);
    let size = (NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE;
    // Bad geometry and start positions.
    let mut g = geometry(&jb);
    g.block_bytes = 1000;
    assert_eq!(Journal::new(RecDev::new(size), g, opts(0), JournalStart::fresh()).err(), Some(Errno::EINVAL));
    let g = geometry(&[5]);
    assert_eq!(Journal::new(RecDev::new(size), g, opts(0), JournalStart::fresh()).err(), Some(Errno::EINVAL));
    let mut st = JournalStart::fresh();
    st.bucket_seq.resize(4, 0).unwrap();
    st.cur_idx = 9;
    assert_eq!(Journal::new(RecDev::new(size), geometry(&jb), opts(0), st).err(), Some(Errno::EINVAL));
    let mut st = JournalStart::fresh();
    st.cur_seq = 0;
    assert_eq!(Journal::new(RecDev::new(size), geometry(&jb), opts(0), st).err(), Some(Errno::EINVAL));

    let j = Journal::new(RecDev::new(size), geometry(&jb), opts(0), JournalStart::fresh()).unwrap();
    assert_eq!(j.res_get(1 << 20, ResFlags::default()).unwrap_err(), BchError::Errno(Errno::EINVAL));
    let mut res = j.res_get(4, ResFlags::default()).unwrap();
    assert_eq!(j.res_add_entry(&mut res, 0, LRU, 0, &[0u8; 7]), Err(Errno::EINVAL));
    assert_eq!(j.res_add_entry(&mut res, 0, LRU, 0, &[0u8; 32]), Err(Errno::EINVAL), "too big for the reservation");
    let mut forged = bcachefs_rs::journal::JournalRes { seq: 99, offset_u64s: 0, u64s: 10, idx: 7 };
    assert_eq!(j.res_add_entry(&mut forged, 0, LRU, 0, &[0u8; 8]), Err(Errno::EINVAL));
    j.res_put(forged);
    j.res_put(res);
    j.pin_put(12345, PinOwner::Other);
    j.pin_get(12345, PinOwner::Other);
    assert_eq!(j.flush_seq(1000), Err(Errno::EINVAL));
    assert_eq!(j.set_btree_root(200, 0, Some(&root_key(1, 8))), Err(Errno::EINVAL));
    assert_eq!(j.set_btree_root(1, 0, Some(&[1u8; 12])), Err(Errno::EINVAL));
    assert_eq!(j.set_btree_root(1, 0, Some(&[0u8; 40])), Err(Errno::EINVAL));
    j.flush_seq(j.cur_seq()).unwrap();
    assert_eq!(read_back(j.dev().image(), &jb, &[]).unwrap().seq_last, 1);

    // Garbage in the journal buckets: the scan fails or finds nothing,
    // never panics.
    let mut x = 0x1234_5678_9abc_def0u64;
    for round in 0..20 {
        let mut img = vec![0u8; size];
        for b in img[10 * 8192..14 * 8192].iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        if round % 2 == 1 {
            // A real header at the start of a bucket, then garbage.
            let w = j.dev().writes();
            let Op::Write { data, .. } = &w[0];
            img[11 * 8192..11 * 8192 + 512].copy_from_slice(&data[..512]);
        }
        let dev = common::MemDev(img);
        let geo = geometry(&jb);
        let _ = bcachefs_rs::journal::write::scan_ring(&dev, &geo);
    }
}

#[test]
fn random_operations_keep_the_journal_consistent() {
    let jb = buckets(50, 8);
    let size = (NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE;
    let j = Journal::new(RecDev::new(size), geometry(&jb), opts(200), JournalStart::fresh()).unwrap();
    let mut x = 42u64;
    let mut rnd = |n: u64| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let mut held = Vec::new();
    let mut pins = Vec::new();
    let mut commits: Vec<(u64, u64, u64)> = Vec::new();
    let mut now = 0;
    for i in 0..3000u64 {
        match rnd(10) {
            0..=3 => {
                let n = rnd(64);
                let k = key(n, i);
                if let Ok(mut res) = j.res_get(1 + k.len() as u32 / 8 + rnd(3) as u32, ResFlags { nonblock: !held.is_empty() || rnd(4) == 0, reclaim: false }) {
                    j.res_add_entry(&mut res, EntryType::BtreeKeys as u8, LRU, 0, &k).unwrap();
                    commits.push((n, i, res.seq));
                    held.push(res);
                }
            }
            4 | 5 => {
                if !held.is_empty() {
                    let r = held.swap_remove(rnd(held.len() as u64) as usize);
                    j.res_put(r);
                }
            }
            6 => {
                // As the btree does: pin the entry of a reservation held.
                if let Some(r) = held.first() {
                    if pins.len() < 2 {
                        j.pin_get(r.seq, PinOwner::Other);
                        pins.push(r.seq);
                    }
                }
            }
            7 => {
                if let Some(s) = pins.pop() {
                    j.pin_put(s, PinOwner::Other);
                }
            }
            8 => {
                now += rnd(400);
                j.journal_do_work(now);
            }
            _ => {
                for r in held.drain(..) {
                    j.res_put(r);
                }
                j.flush_seq(j.cur_seq()).unwrap();
            }
        }
    }
    for r in held.drain(..) {
        j.res_put(r);
    }
    j.flush_seq(j.cur_seq()).unwrap();
    let rb = read_back(j.dev().image(), &jb, &[]).unwrap();
    assert_eq!(rb.seq_last, j.flushed_seq_ondisk());
    // Each key reads back as its newest commit within the replay range.
    let mut want = BTreeMap::new();
    for &(n, v, seq) in &commits {
        if seq >= rb.last_seq && seq <= rb.seq_last {
            want.insert(n, (v, seq));
        }
    }
    assert!(!want.is_empty());
    assert_eq!(rb.keys, want);
    let mut s = String::new();
    j.debug_to_text(&mut s).unwrap();
    assert!(j.error().is_none(), "{s}");
    assert!(s.contains("nr noflush writes"), "{s}");
}

/// A formatted image (our `format`) with `nr` journal buckets from bucket
/// 100 in its superblock, on a recording device.
fn formatted(nr: u64) -> RecDev {
    use bcachefs_rs::format::sb::FieldType;
    use bcachefs_rs::format::sb_write::{format, FormatOpts};
    let bytes = 64u64 << 20;
    let mut o = FormatOpts::new([1; 16], [2; 16], [3; 16], 1_700_000_000_000_000_000);
    o.bucket_size = Some(u64::from(BUCKET_SECTORS) * SECTOR_SIZE as u64 * 4);
    let f = format(bytes, &o).unwrap();
    let mut sb = f.sb().try_clone().unwrap();
    let mut body = 100u64.to_le_bytes().to_vec();
    body.extend_from_slice(&nr.to_le_bytes());
    sb.add_field(FieldType::JournalV2, &body).unwrap();
    let dev = RecDev::new(bytes as usize);
    dev.write_sectors(0, &f.head().unwrap(), WriteFlags::NONE).unwrap();
    sb.write_super(&dev).unwrap();
    dev.log.lock().unwrap().clear();
    dev
}

#[test]
fn clean_shutdown_writes_the_clean_section() {
    use bcachefs_rs::format::jset::iter_entries;
    use bcachefs_rs::format::sb::FieldType;
    use bcachefs_rs::format::sb_opts::SbFlag;
    use bcachefs_rs::format::sb_write::SbBuf;
    use bcachefs_rs::journal::seq_blacklist::mark_clean;

    let dev = formatted(8);
    let sbr = read_super(&dev).unwrap();
    let geo = JournalGeometry::from_sb(&sbr.sb()).unwrap();
    assert_eq!((geo.buckets.len(), geo.bucket_sectors, geo.block_bytes), (8, 4 * BUCKET_SECTORS, 4096));
    let mut sb = SbBuf::from_sb(&sbr.sb()).unwrap();
    let j = Journal::new(dev, geo, JournalOpts::default(), JournalStart::fresh()).unwrap();
    j.set_btree_root(LRU, 0, Some(&root_key(0x99, 8192))).unwrap();
    j.set_clocks(5, [100, 200]);
    for n in 0..10 {
        let s = commit(&j, n, n);
        j.flush_seq(s).unwrap();
    }
    let seq = j.stop().unwrap();
    assert_eq!(seq, j.cur_seq());
    let clean = j.clean_section(seq).unwrap();
    mark_clean(&mut sb, &clean).unwrap();
    sb.write_super(j.dev()).unwrap();

    let sbr = read_super(j.dev()).unwrap();
    let s = sbr.sb();
    s.validate(bcachefs_rs::format::sb::ValidateMode::Read).unwrap();
    assert_eq!(s.flag(SbFlag::Clean), 1);
    assert_eq!(s.seq(), 2, "format wrote seq 1, shutdown seq 2");
    let body = s.field(FieldType::Clean).unwrap().body();
    assert_eq!(u64::from_le_bytes(body[8..16].try_into().unwrap()), seq);
    let e: Vec<_> = iter_entries(&body[16..], 0).map(|e| e.unwrap()).collect();
    let ty: Vec<u8> = e.iter().map(|e| e.ty).collect();
    assert_eq!(ty, [EntryType::Usage as u8, EntryType::Clock as u8, EntryType::Clock as u8, EntryType::BtreeRoot as u8]);
    assert_eq!(&e[2].data[8..], 200u64.to_le_bytes());
    // The read side takes the root from the clean section too.
    let fs = FsInfo::from_sb(&s).unwrap();
    let empty = bcachefs_rs::format::list::Journal { jsets: PVec::new(), last_seq: 0, blacklist_seq: 0 };
    let roots = journal::btree_roots(&fs, &empty).unwrap();
    assert_eq!(roots[LRU as usize].map(|r| BtreePtrV2::decode(&r.val).unwrap().seq), Some(0x99));
    // And the journal ends with the (flushed) shutdown entry.
    let r = journal::read(j.dev(), &fs).unwrap();
    assert_eq!((r.seq_last, r.journal.last_seq), (seq, seq));
}

#[test]
fn unclean_restart_blacklists_in_the_superblock() {
    use bcachefs_rs::format::sb_write::SbBuf;
    use bcachefs_rs::journal::seq_blacklist::{blacklist_add, blacklist_read};

    let dev = formatted(6);
    let geo = JournalGeometry::from_sb(&read_super(&dev).unwrap().sb()).unwrap();
    let j = Journal::new(dev, geo, opts(1000), JournalStart::fresh()).unwrap();
    for n in 0..4 {
        let s = commit_pinned(&j, n, n);
        j.flush_seq(s).unwrap();
    }
    commit_pinned(&j, 50, 50);
    j.entry_close();
    let (flushed, written) = (j.flushed_seq_ondisk(), j.seq_ondisk());
    assert!(written > flushed, "a no-flush tail: {flushed} {written}");
    let dev = RecDev::from_image(j.dev().image());
    drop(j);

    let sbr = read_super(&dev).unwrap();
    let fs = FsInfo::from_sb(&sbr.sb()).unwrap();
    let geo = JournalGeometry::from_sb(&sbr.sb()).unwrap();
    let r = journal::read(&dev, &fs).unwrap();
    let start = start_after_read(&dev, &geo, &r, true).unwrap();
    let (a, b) = start.blacklist.unwrap();
    assert_eq!((a, b), (flushed + 1, written + 9));
    let mut sb = SbBuf::from_sb(&sbr.sb()).unwrap();
    blacklist_add(&mut sb, a, b).unwrap();
    sb.write_super(&dev).unwrap();
    let j = Journal::new(dev, geo, opts(1000), start).unwrap();
    j.replay_done();
    let s = commit(&j, 60, 60);
    j.flush_seq(s).unwrap();

    // Opened with nothing but what is on disk: the blacklist covers the gap.
    let sbr = read_super(j.dev()).unwrap();
    assert_eq!(blacklist_read(&sbr.sb()).unwrap()[..], [(a, b)]);
    let fs = FsInfo::from_sb(&sbr.sb()).unwrap();
    let r = journal::read(j.dev(), &fs).unwrap();
    assert_eq!(r.seq_last, s);
    let keys = JournalKeys::build(&fs, &r.journal).unwrap();
    assert_eq!(keys.len(), 1);
}

#[test]
fn threads_commit_and_flush_concurrently() {
    let jb = buckets(60, 40);
    let size = (NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE;
    let j = std::sync::Arc::new(Journal::new(RecDev::new(size), geometry(&jb), opts(5), JournalStart::fresh()).unwrap());
    let fl = std::sync::Arc::new(TestFlusher {
        j: StdMutex::new(Some(std::sync::Arc::downgrade(&j))),
        pinned: StdMutex::new(Default::default()),
        calls: AtomicU64::new(0),
    });
    j.set_flusher(fl.clone());
    let commits = StdMutex::new(Vec::new());
    let clock = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let (j, fl, commits, clock) = (&j, &fl, &commits, &clock);
            sc.spawn(move || {
                for i in 0..300u64 {
                    let n = t * 1000 + i % 37;
                    let k = key(n, i);
                    let mut res = j.res_get(1 + k.len() as u32 / 8, ResFlags::default()).unwrap();
                    j.res_add_entry(&mut res, EntryType::BtreeKeys as u8, LRU, 0, &k).unwrap();
                    j.pin_get(res.seq, PinOwner::BtreeNode(LRU, 0));
                    fl.pinned.lock().unwrap().push_back(res.seq);
                    commits.lock().unwrap().push((n, i, res.seq));
                    let seq = res.seq;
                    j.res_put(res);
                    match i % 10 {
                        0 => j.flush_seq(seq).unwrap(),
                        5 => {
                            j.journal_do_work(clock.fetch_add(3, Ordering::Relaxed));
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    j.flush_seq(j.cur_seq()).unwrap();
    assert!(j.error().is_none());
    let rb = read_back(j.dev().image(), &jb, &[]).unwrap();
    assert_eq!(rb.seq_last, j.flushed_seq_ondisk());
    // Commits of one key are ordered by their thread: the newest one in
    // the replay range is what reads back.
    let mut want = BTreeMap::new();
    for &(n, v, seq) in commits.lock().unwrap().iter() {
        if seq >= rb.last_seq && seq <= rb.seq_last && want.get(&n).is_none_or(|&(w, _)| w < v) {
            want.insert(n, (v, seq));
        }
    }
    assert!(want.len() > 10);
    assert_eq!(rb.keys, want);
}

/// An entry hook as accounting will be: adds a `log` entry to every jset
/// and takes write buffer keys.
struct TestHook {
    wb: StdMutex<Vec<(u64, u8, usize)>>,
}

impl bcachefs_rs::journal::write::JsetEntryHook for TestHook {
    fn u64s_max(&self) -> u32 {
        3
    }

    fn add_entries(&self, seq: u64, w: &mut bcachefs_rs::journal::write::EntryWriter<'_>) -> Result<(), Errno> {
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(b"hook seq");
        msg[8..].copy_from_slice(&seq.to_le_bytes());
        w.add(EntryType::Log as u8, 0, 0, &msg)
    }

    fn write_buffer_keys(&self, seq: u64, btree_id: u8, keys: &[u8]) -> Result<(), Errno> {
        self.wb.lock().unwrap().push((seq, btree_id, keys.len()));
        Ok(())
    }
}

#[test]
fn entry_hook_and_write_buffer_keys() {
    let jb = buckets(10, 8);
    let size = (NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE;
    let j = Journal::new(RecDev::new(size), geometry(&jb), opts(0), JournalStart::fresh()).unwrap();
    let hook = std::sync::Arc::new(TestHook { wb: StdMutex::new(Vec::new()) });
    j.set_entry_hook(hook.clone());
    let k = key(9, 99);
    let mut res = j.res_get(1 + k.len() as u32 / 8, ResFlags::default()).unwrap();
    j.pin_get(res.seq, PinOwner::WriteBuffer);
    j.res_add_entry(&mut res, EntryType::WriteBufferKeys as u8, LRU, 0, &k).unwrap();
    let seq = res.seq;
    j.res_put(res);
    j.flush_seq(seq).unwrap();
    assert_eq!(hook.wb.lock().unwrap()[..], [(seq, LRU, k.len())]);
    let w = j.dev().writes();
    let Op::Write { ref data, .. } = w[0];
    let js = Jset::parse(data, jset_magic(&UUID)).unwrap();
    let e: Vec<_> = js.entries().map(|e| e.unwrap()).collect();
    assert_eq!(e[0].ty, EntryType::BtreeKeys as u8, "write buffer keys are written as btree_keys");
    let log = e.last().unwrap();
    assert_eq!((log.ty, &log.data[..8]), (EntryType::Log as u8, &b"hook seq"[..]));
    assert_eq!(read_back(j.dev().image(), &jb, &[]).unwrap().keys[&9], (99, seq));
}

#[test]
fn an_invalid_key_is_never_written() {
    let jb = buckets(10, 8);
    let size = (NBUCKETS * u64::from(BUCKET_SECTORS)) as usize * SECTOR_SIZE;
    let j = Journal::new(RecDev::new(size), geometry(&jb), opts(0), JournalStart::fresh()).unwrap();
    let s = commit(&j, 1, 1);
    j.flush_seq(s).unwrap();
    // An inode key in the lru btree: the read side would reject the jset.
    let mut k = key(2, 2);
    k[2] = KeyType::InodeV3 as u8;
    let mut res = j.res_get(1 + k.len() as u32 / 8, ResFlags::default()).unwrap();
    j.res_add_entry(&mut res, EntryType::BtreeKeys as u8, LRU, 0, &k).unwrap();
    let seq = res.seq;
    j.res_put(res);
    assert_eq!(j.flush_seq(seq), Err(Errno::EIO));
    assert_eq!(j.error(), Some(Errno::EUCLEAN));
    assert_eq!(j.dev().nr_writes(), 1, "nothing written after the first entry");
    assert_eq!(read_back(j.dev().image(), &jb, &[]).unwrap().keys.len(), 1);
}
