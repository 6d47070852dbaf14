// SPDX-License-Identifier: GPL-2.0
//! The foreground allocator (`src/alloc/foreground.rs`) on the volumes C
//! wrote: what it hands out is free in the alloc btree, never metadata and
//! never twice; sectors come contiguously out of one bucket at a time;
//! ENOSPC comes at the count the reserve formula gives for each watermark;
//! two threads never get the same space; corrupt keys are errors.

use std::collections::{BTreeMap, BTreeSet};

use bcachefs_rs::alloc::foreground::*;
use bcachefs_rs::alloc::source::{AllocKeyFn, FreespaceSource};
use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::errcode::Errno;
use bcachefs_rs::format::bkey::{Bkey, BtreeId, KeyType};
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::sb::Sb;
use bcachefs_rs::format::val::alloc::{data_type, AllocV4};

mod common;
use common::{unpack_image, MemDev};

const FIXTURES: [&str; 3] = ["c-fresh.bchimg", "c-clean-siphash.bchimg", "c-unclean-crc64-lz4.bchimg"];

fn open(name: &str) -> Fs<MemDev> {
    Fs::open(MemDev(unpack_image(name)), &OpenOpts::default()).unwrap_or_else(|e| panic!("{name}: open: {e}"))
}

/// What the volume says of each bucket, read independently of the
/// allocator: (data type, gen) from the alloc btree, journal buckets
/// from the superblock, superblock buckets from the layout.
struct Truth {
    alloc: BTreeMap<u64, (u8, u8)>,
    journal: BTreeSet<u64>,
    sb: BTreeSet<u64>,
    nbuckets: u64,
    first_bucket: u64,
    bucket_size: u32,
    btree_node_sectors: u32,
}

impl Truth {
    fn read(fs: &Fs<MemDev>) -> Truth {
        let mut alloc = BTreeMap::new();
        let mut it = fs.iter(BtreeId::Alloc, Bpos::pos(0, 0), false);
        while let Some(k) = it.next().unwrap() {
            let a = AllocV4::decode(&k.v);
            alloc.insert(k.k.p.offset, (a.data_type, a.gen));
        }
        let c = fs.btree_ctx();
        let d = c.info.devs[0].unwrap();
        let sb = Sb::parse(fs.sb_bytes()).unwrap();
        let l = sb.layout();
        let mut sbb = BTreeSet::from([0u64]);
        for &o in l.offsets() {
            for s in o..o + l.max_sectors() {
                sbb.insert(s / u64::from(d.bucket_size));
            }
        }
        Truth {
            alloc,
            journal: c.info.journal_buckets.iter().copied().collect(),
            sb: sbb,
            nbuckets: d.nbuckets,
            first_bucket: d.first_bucket,
            bucket_size: d.bucket_size,
            btree_node_sectors: c.info.node_bytes / 512,
        }
    }

    fn is_free(&self, b: u64) -> bool {
        self.alloc.get(&b).map_or(true, |&(t, _)| t == data_type::FREE)
    }

    fn free_buckets(&self) -> u64 {
        (self.first_bucket..self.nbuckets).filter(|&b| self.is_free(b)).count() as u64
    }

    fn reserved(&self, w: Watermark) -> u64 {
        // bch2_dev_buckets_reserved() written out from alloc_types.h and
        // buckets.h, independently of the allocator's own function.
        let btree = 28u64.div_ceil(u64::from(self.bucket_size / self.btree_node_sectors));
        let q = self.nbuckets >> 6;
        match w {
            Watermark::Stripe => 2 * q + 2 * btree,
            Watermark::Normal => q + 2 * btree,
            Watermark::Copygc => 2 * btree,
            Watermark::Btree => btree,
            _ => 0,
        }
    }
}

/// What the bucket's first key's trigger does: the bucket now holds
/// `dt` (its sectors full).
fn mark(a: &Allocator, b: &OpenBucket, dt: u8) {
    let v = AllocV4 { gen: b.gen, data_type: dt, dirty_sectors: 512, ..AllocV4::default() };
    a.bucket_updated(b.dev, b.bucket, &v, 0).unwrap();
}

#[test]
fn enospc_at_each_watermark_and_only_free_buckets() {
    for name in FIXTURES {
        let fs = open(name);
        let t = Truth::read(&fs);
        let free = t.free_buckets();
        assert!(free > 200, "{name}: {free} free buckets");
        for w in Watermark::ALL {
            let a = Allocator::open(&fs).unwrap();
            let mut seen = BTreeSet::new();
            let err = loop {
                match a.bucket_alloc(&fs, 0, w, data_type::USER) {
                    Ok((mut obs, ob)) => {
                        assert!(t.is_free(ob.bucket), "{name} {w}: bucket {} is in use: {:?}", ob.bucket, t.alloc.get(&ob.bucket));
                        assert!(!t.journal.contains(&ob.bucket) && !t.sb.contains(&ob.bucket), "{name} {w}: metadata bucket {}", ob.bucket);
                        assert!(ob.bucket >= t.first_bucket && ob.bucket < t.nbuckets);
                        assert!(seen.insert(ob.bucket), "{name} {w}: bucket {} twice", ob.bucket);
                        assert_eq!(ob.gen, t.alloc.get(&ob.bucket).map_or(0, |x| x.1), "{name}: gen of {}", ob.bucket);
                        assert_eq!((ob.data_type, ob.sectors_free, ob.pin), (data_type::USER, t.bucket_size, 1));
                        assert!(a.bucket_is_open(0, ob.bucket));
                        mark(&a, &ob, data_type::USER);
                        a.open_buckets_put(&mut obs);
                        assert!(!a.bucket_is_open(0, ob.bucket));
                    }
                    Err(e) => break e,
                }
            };
            let want = free.saturating_sub(t.reserved(w));
            assert_eq!(seen.len() as u64, want, "{name} {w}: {err} after {} buckets, want {want}", seen.len());
            assert_eq!(err, BucketAllocError::FreelistEmpty, "{name} {w}");
            assert_eq!(err.errno(), Errno::ENOSPC);
            // A more important allocation still gets a bucket, as long as
            // any is left above its own reserve.
            if w < Watermark::Btree {
                let (mut obs, ob) = a.bucket_alloc(&fs, 0, Watermark::Btree, data_type::BTREE).unwrap();
                assert!(t.is_free(ob.bucket) && !seen.contains(&ob.bucket));
                a.open_buckets_put(&mut obs);
            }
            a.with_dev(0, |d| assert_eq!(d.usage[0], free - want)).unwrap();
        }
    }
}

#[test]
fn open_buckets_count_against_free() {
    // Buckets held open (not yet marked by a trigger) count as taken:
    // dev_buckets_free() subtracts nr_open_buckets.
    let fs = open("c-fresh.bchimg");
    let t = Truth::read(&fs);
    let a = Allocator::open(&fs).unwrap();
    let mut held = Vec::new();
    let mut set = BTreeSet::new();
    while let Ok((obs, ob)) = a.bucket_alloc(&fs, 0, Watermark::Normal, data_type::USER) {
        assert!(set.insert(ob.bucket), "bucket {} handed out while open", ob.bucket);
        held.push(obs);
    }
    assert_eq!(held.len() as u64, t.free_buckets() - t.reserved(Watermark::Normal));
    a.with_dev(0, |d| assert_eq!(d.nr_open_buckets, held.len() as u64)).unwrap();
    assert_eq!(a.open_buckets_nr_free(), OPEN_BUCKETS_COUNT - 1 - held.len());
    for mut o in held {
        a.open_buckets_put(&mut o);
    }
    assert_eq!(a.open_buckets_nr_free(), OPEN_BUCKETS_COUNT - 1);
}

#[test]
fn sectors_contiguous_then_next_bucket() {
    let fs = open("c-clean-siphash.bchimg");
    let t = Truth::read(&fs);
    let a = Allocator::open(&fs).unwrap();
    let bs = u64::from(t.bucket_size);
    let wp = WritePointSpec::Hashed(42);
    let mut refs = Vec::new();
    let (p, n, obs) = a.alloc_sectors(&fs, wp, 24, Watermark::Normal).unwrap();
    refs.push(obs);
    let first = *p.get(0).unwrap();
    assert_eq!(n, 24);
    assert_eq!(first.offset, first.bucket * bs, "a new bucket is filled from its start");
    assert!(t.is_free(first.bucket));
    let mut next = first.offset + 24;
    // Fill the bucket: 8 sectors at a time, then ask more than is left.
    while next + 8 < (first.bucket + 1) * bs {
        assert_eq!(a.write_point_sectors_free(wp) as u64, (first.bucket + 1) * bs - next);
        let (p, n, obs) = a.alloc_sectors(&fs, wp, 8, Watermark::Normal).unwrap();
        refs.push(obs);
        assert_eq!((p.get(0).unwrap().offset, p.get(0).unwrap().bucket, n), (next, first.bucket, 8));
        next += 8;
    }
    let left = ((first.bucket + 1) * bs - next) as u32;
    let (p, n, obs) = a.alloc_sectors(&fs, wp, 100, Watermark::Normal).unwrap();
    refs.push(obs);
    assert_eq!((p.get(0).unwrap().offset, n), (next, left), "the rest of the bucket, not more");
    // Full: it left the write point, but our references keep it open.
    assert_eq!(a.write_point_sectors_free(wp), 0);
    assert!(a.bucket_is_open(0, first.bucket));
    let ob = a.with_dev(0, |_| ()).map(|_| OpenBucket { dev: 0, bucket: first.bucket, gen: first.gen, ..Default::default() }).unwrap();
    mark(&a, &ob, data_type::USER);
    for mut r in refs.drain(..) {
        a.open_buckets_put(&mut r);
    }
    assert!(!a.bucket_is_open(0, first.bucket));
    // The next allocation takes a new bucket, never the full one.
    let (p, _, obs) = a.alloc_sectors(&fs, wp, 8, Watermark::Normal).unwrap();
    let second = *p.get(0).unwrap();
    assert_ne!(second.bucket, first.bucket);
    assert!(t.is_free(second.bucket));
    assert_eq!(second.offset, second.bucket * bs);
    refs.push(obs);
    // A different write point gets a different bucket.
    // (43 would be the same write point: writepoint_hashed() sets bit 0.)
    let (p, _, obs) = a.alloc_sectors(&fs, WritePointSpec::Hashed(44), 8, Watermark::Normal).unwrap();
    assert_ne!(p.get(0).unwrap().bucket, second.bucket);
    refs.push(obs);
    assert_eq!(a.alloc_sectors(&fs, wp, 0, Watermark::Normal).unwrap_err(), BucketAllocError::Errno(Errno::EINVAL));
}

#[test]
fn many_write_points_never_share_a_bucket() {
    let fs = open("c-fresh.bchimg");
    let t = Truth::read(&fs);
    let a = Allocator::open(&fs).unwrap();
    // More hashes than write points: the oldest write point is taken
    // over, with its bucket.
    let mut by_bucket: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut refs = Vec::new();
    for h in 0..(WRITE_POINT_MAX as u64 + 8) {
        let (p, _, obs) = a.alloc_sectors(&fs, WritePointSpec::Hashed(h * 2), 16, Watermark::Normal).unwrap();
        let p = *p.get(0).unwrap();
        assert!(t.is_free(p.bucket));
        by_bucket.entry(p.bucket).or_default().push(p.offset);
        refs.push(obs);
    }
    // 32 buckets: the 8 extra hashes reused the oldest write points'
    // buckets, after their sectors.
    assert_eq!(by_bucket.len(), WRITE_POINT_MAX);
    for (b, offs) in &by_bucket {
        let want: Vec<u64> = (0..offs.len() as u64).map(|i| b * u64::from(t.bucket_size) + 16 * i).collect();
        assert_eq!(offs, &want, "bucket {b}");
    }
    let mut s = String::new();
    a.open_buckets_to_text(&mut s, None).unwrap();
    assert_eq!(s.lines().count(), WRITE_POINT_MAX, "{s}");
    for mut r in refs {
        a.open_buckets_put(&mut r);
    }
    // Still held by the write points.
    assert_eq!(a.open_buckets_nr_free(), OPEN_BUCKETS_COUNT - 1 - WRITE_POINT_MAX);
    a.open_buckets_stop(None);
    assert_eq!(a.open_buckets_nr_free(), OPEN_BUCKETS_COUNT - 1);
}

#[test]
fn two_threads_never_get_the_same_space() {
    let fs = open("c-fresh.bchimg");
    let t = Truth::read(&fs);
    let a = Allocator::open(&fs).unwrap();
    let bs = u64::from(t.bucket_size);
    let barrier = std::sync::Barrier::new(2);
    // Phase 1: 600 allocations each, started together; phase 2: both
    // until ENOSPC.
    let run = |h: u64| {
        let mut got = Vec::new();
        let mut i = 0u64;
        barrier.wait();
        loop {
            if i == 600 {
                barrier.wait();
            }
            let want = 8 + ((i * 7 + h) % 57) as u32;
            i += 1;
            match a.alloc_sectors(&fs, WritePointSpec::Hashed(h), want, Watermark::Normal) {
                Ok((p, n, mut obs)) => {
                    let p = *p.get(0).unwrap();
                    if p.offset + u64::from(n) == (p.bucket + 1) * bs {
                        // The bucket is full: its keys' trigger marks it.
                        let v = AllocV4 { gen: p.gen, data_type: data_type::USER, dirty_sectors: bs as u32, ..AllocV4::default() };
                        a.bucket_updated(p.dev, p.bucket, &v, 0).unwrap();
                    }
                    got.push((p.offset, n));
                    a.open_buckets_put(&mut obs);
                }
                Err(e) => {
                    assert!(i > 600, "thread {h}: {e} at allocation {i}");
                    assert_eq!(e.errno(), Errno::ENOSPC);
                    return got;
                }
            }
        }
    };
    let (x, y) = std::thread::scope(|s| {
        let x = s.spawn(|| run(1));
        let y = s.spawn(|| run(3));
        (x.join().unwrap(), y.join().unwrap())
    });
    assert!(x.len() > 600 && y.len() > 600, "{} {}", x.len(), y.len());
    let mut all: Vec<(u64, u32)> = x.iter().chain(y.iter()).copied().collect();
    all.sort();
    for w in all.windows(2) {
        assert!(w[0].0 + u64::from(w[0].1) <= w[1].0, "overlap: {:?} and {:?}", w[0], w[1]);
    }
    for &(o, n) in &all {
        let b = o / bs;
        assert_eq!((o + u64::from(n) - 1) / bs, b, "allocation crosses a bucket");
        assert!(t.is_free(b) && !t.journal.contains(&b) && !t.sb.contains(&b));
    }
    // Everything above the normal reserve was used, less the two write
    // points' last buckets (their rest is still free sectors).
    let buckets: BTreeSet<u64> = all.iter().map(|&(o, _)| o / bs).collect();
    assert_eq!(buckets.len() as u64, t.free_buckets() - t.reserved(Watermark::Normal));
}

#[test]
fn btree_nodes_from_the_btree_write_point() {
    for name in ["c-fresh.bchimg", "c-clean-siphash.bchimg"] {
        let fs = open(name);
        let t = Truth::read(&fs);
        let a = Allocator::open(&fs).unwrap();
        let ns = t.btree_node_sectors;
        let per_bucket = t.bucket_size / ns;
        let mut refs = Vec::new();
        let mut got = Vec::new();
        for _ in 0..(per_bucket * 3) {
            let (p, obs) = a.alloc_btree_node(&fs, ns, Watermark::Btree).unwrap();
            assert!(t.is_free(p.bucket));
            assert_eq!(a.open_bucket(obs.as_slice()[0]).unwrap().data_type, data_type::BTREE);
            got.push(p);
            refs.push(obs);
        }
        for (i, p) in got.iter().enumerate() {
            let first = got[i - i % per_bucket as usize];
            assert_eq!(p.bucket, first.bucket, "{name}: node {i}");
            assert_eq!(p.offset, first.offset + u64::from(ns) * (i as u64 % u64::from(per_bucket)), "{name}: node {i}");
        }
        let buckets: BTreeSet<u64> = got.iter().map(|p| p.bucket).collect();
        assert_eq!(buckets.len(), 3, "{name}");
        // A node that does not fit the bucket's rest takes a new bucket.
        if per_bucket > 1 {
            let (p, _) = a.alloc_btree_node(&fs, ns / 2, Watermark::Btree).unwrap();
            let (q, _) = a.alloc_btree_node(&fs, ns, Watermark::Btree).unwrap();
            assert_eq!(q.bucket, p.bucket);
            let (r, _) = a.alloc_btree_node(&fs, ns, Watermark::Btree).unwrap();
            assert_eq!(r.bucket, p.bucket);
            let (s, _) = a.alloc_btree_node(&fs, ns, Watermark::Btree).unwrap();
            assert_eq!(s.bucket, p.bucket);
            let (u, _) = a.alloc_btree_node(&fs, ns, Watermark::Btree).unwrap();
            assert_ne!(u.bucket, p.bucket, "{name}: half a node left, a new bucket");
            assert_eq!(u.offset, u.bucket * u64::from(t.bucket_size));
        }
        let mut s = String::new();
        a.write_points_to_text(&mut s).unwrap();
        let after = s.split("Btree write point\n").nth(1).unwrap();
        if per_bucket > 1 {
            // The last bucket, a quarter used, is still the write point's.
            assert!(after.lines().nth(1).unwrap().starts_with("  "), "{s}");
            assert!(after.contains(" btree 0:") && after.contains(&format!("allocated {ns}/{}", t.bucket_size)), "{s}");
        } else {
            // Node-sized buckets: each leaves the write point full.
            assert_eq!(after.lines().count(), 1, "{s}");
        }
    }
}

#[test]
fn journal_buckets_of_a_new_volume_as_c_chose_them() {
    // C formatted these volumes with bch2_bucket_alloc_new_fs(): the same
    // walk gives the superblock's journal buckets.
    for name in FIXTURES {
        let fs = open(name);
        let t = Truth::read(&fs);
        let a = Allocator::open(&fs).unwrap();
        let got = a.dev_journal_alloc_new_fs(0).unwrap();
        let want: Vec<u64> = fs.btree_ctx().info.journal_buckets.iter().copied().collect();
        assert_eq!(&got[..], &want[..], "{name}");
        assert_eq!(journal_buckets_default(t.nbuckets, t.bucket_size), want.len() as u64);
    }
}

#[test]
fn printers_show_real_state() {
    let fs = open("c-fresh.bchimg");
    let t = Truth::read(&fs);
    let a = Allocator::open(&fs).unwrap();
    let (p, _, _obs) = a.alloc_sectors(&fs, WritePointSpec::Hashed(5), 8, Watermark::Normal).unwrap();
    let p = *p.get(0).unwrap();
    let mut s = String::new();
    a.open_buckets_to_text(&mut s, Some(0)).unwrap();
    assert_eq!(s, format!("{} ref 2 user 0:{} gen {} allocated 8/{}\n", OPEN_BUCKETS_COUNT - 1, p.bucket, p.gen, t.bucket_size));
    let mut s = String::new();
    a.write_points_to_text(&mut s).unwrap();
    assert!(s.starts_with("Foreground write points\n"), "{s}");
    assert!(s.contains(&format!("5: 4.00 KiB last used 1\n  {} ref 2 user 0:{}", OPEN_BUCKETS_COUNT - 1, p.bucket)), "{s}");
    let mut s = String::new();
    a.dev_alloc_debug_to_text(&mut s, 0).unwrap();
    let free = t.free_buckets();
    assert!(s.contains(&format!("free                    {free}\n")), "{s}");
    assert!(s.contains(&format!("normal                  {:<10}{}\n", t.reserved(Watermark::Normal), free - 1 - t.reserved(Watermark::Normal))), "{s}");
    assert!(s.contains("open buckets            1\n"), "{s}");
    assert!(s.contains("journal                 8\n"), "{s}");
    let mut s = String::new();
    a.fs_alloc_debug_to_text(&mut s).unwrap();
    assert!(s.contains("open buckets allocated  1\n") && s.contains("open_buckets_user       1\n"), "{s}");
}

/// A source that lies: wraps the volume and replaces what is asked.
struct Bad<'a> {
    fs: &'a Fs<MemDev>,
    free: Option<Vec<u64>>,
    alloc: Option<(Bkey, Vec<u8>)>,
    need_discard: Vec<u64>,
    keys: BTreeMap<u64, AllocV4>,
}

impl<'a> Bad<'a> {
    fn new(fs: &'a Fs<MemDev>) -> Self {
        Bad { fs, free: None, alloc: None, need_discard: Vec::new(), keys: BTreeMap::new() }
    }
}

impl FreespaceSource for Bad<'_> {
    fn next_free(&self, dev: u8, from: u64) -> Result<Option<u64>, Errno> {
        match &self.free {
            Some(v) => Ok(v.iter().copied().filter(|&e| e >= from).min()),
            None => self.fs.next_free(dev, from),
        }
    }

    fn next_need_discard(&self, _dev: u8, from: u64) -> Result<Option<u64>, Errno> {
        Ok(self.need_discard.iter().copied().filter(|&e| e >= from).min())
    }

    fn for_each_alloc_key(&self, dev: u8, f: &mut AllocKeyFn<'_>) -> Result<(), Errno> {
        self.fs.for_each_alloc_key(dev, f)?;
        match &self.alloc {
            Some((k, v)) => f(k, v),
            None => Ok(()),
        }
    }

    fn alloc_key(&self, dev: u8, bucket: u64) -> Result<Option<AllocV4>, Errno> {
        match self.keys.get(&bucket) {
            Some(a) => Ok(Some(*a)),
            None => self.fs.alloc_key(dev, bucket),
        }
    }
}

#[test]
fn corrupt_keys_are_errors() {
    let fs = open("c-clean-siphash.bchimg");
    let t = Truth::read(&fs);
    let sb = Sb::parse(fs.sb_bytes()).unwrap();
    let used = *t.alloc.iter().find(|(_, &(dt, _))| dt == data_type::USER).unwrap().0;
    let free = (t.first_bucket..t.nbuckets).find(|&b| t.is_free(b) && !t.alloc.contains_key(&b) || t.alloc.get(&b) == Some(&(0, 0))).unwrap();
    // Freespace entries: past the device, of a bucket holding data, of the
    // journal, with wrong genbits.
    for (e, what) in [(t.nbuckets + 3, "past the end"), (used, "in use"), (t.journal.iter().next().copied().unwrap(), "journal"), (free | (3 << 56), "genbits")] {
        let a = Allocator::open(&fs).unwrap();
        let mut src = Bad::new(&fs);
        src.free = Some(vec![e]);
        let r = a.bucket_alloc(&src, 0, Watermark::Normal, data_type::USER);
        assert_eq!(r.map(|x| x.1.bucket), Err(BucketAllocError::Errno(Errno::EIO)), "{what}");
    }
    // Any garbage in the freespace btree: an error or a free bucket, never
    // a panic or a bucket in use.
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = Allocator::open(&fs).unwrap();
        let mut src = Bad::new(&fs);
        src.free = Some(vec![x % (t.nbuckets * 2), x]);
        if let Ok((_, ob)) = a.bucket_alloc(&src, 0, Watermark::Normal, data_type::USER) {
            assert!(t.is_free(ob.bucket));
        }
    }
    // Alloc keys: another type, too short, past the device, bad data type.
    let good = AllocV4 { data_type: data_type::USER, dirty_sectors: 8, ..AllocV4::default() }.encode().to_vec();
    let key = |ty: KeyType, b: u64, v: &[u8]| (Bkey::new(ty, Bpos::pos(0, b), v.len() / 8), v.to_vec());
    let mut bad_dt = good.clone();
    bad_dt[14] = 200;
    for (k, what) in [
        (key(KeyType::AllocV3, free, &good), "alloc_v3"),
        (key(KeyType::AllocV4, free, &good[..16]), "short"),
        (key(KeyType::AllocV4, t.nbuckets, &good), "past the end"),
        (key(KeyType::AllocV4, free, &bad_dt), "data type"),
    ] {
        let a = Allocator::new(&sb).unwrap();
        let mut src = Bad::new(&fs);
        src.alloc = Some(k);
        assert_eq!(a.load(&src), Err(Errno::EUCLEAN), "{what}");
    }
    // The same key, valid, loads.
    let a = Allocator::new(&sb).unwrap();
    let mut src = Bad::new(&fs);
    src.alloc = Some(key(KeyType::AllocV4, free, &good));
    a.load(&src).unwrap();
    assert_eq!(a.with_dev(0, |d| d.bucket(free)).unwrap(), Some((0, data_type::USER)));
}

#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(u8, u64, u64)>>);
impl DiscardDev for Recorder {
    fn discard(&self, dev: u8, sector: u64, nr: u64) -> Result<(), Errno> {
        self.0.lock().unwrap().push((dev, sector, nr));
        Ok(())
    }
}

#[test]
fn need_discard_buckets_wait_for_their_discard() {
    let fs = open("c-fresh.bchimg");
    let t = Truth::read(&fs);
    let bs = u64::from(t.bucket_size);
    let a = Allocator::open(&fs).unwrap();
    // Use a bucket, then free it: its key says need_discard (as the alloc
    // trigger leaves it), committed at journal seq 10.
    let (mut obs, ob) = a.bucket_alloc(&fs, 0, Watermark::Normal, data_type::USER).unwrap();
    mark(&a, &ob, data_type::USER);
    a.open_buckets_put(&mut obs);
    let mut nd = AllocV4 { gen: ob.gen, data_type: data_type::NEED_DISCARD, journal_seq: 10, ..AllocV4::default() };
    bcachefs_rs::alloc::background::set_need_discard(&mut nd, true);
    a.bucket_updated(0, ob.bucket, &nd, 10).unwrap();
    let mut src = Bad::new(&fs);
    src.need_discard = vec![ob.bucket];
    src.keys.insert(ob.bucket, nd);
    // Never allocated while it needs a discard (the static freespace
    // btree still lists it).
    let mut held = Vec::new();
    while let Ok((obs, o)) = a.bucket_alloc(&src, 0, Watermark::InteriorUpdates, data_type::USER) {
        assert_ne!(o.bucket, ob.bucket);
        held.push(obs);
    }
    for mut o in held {
        a.open_buckets_put(&mut o);
    }
    // Journal not flushed yet: not discarded.
    let rec = Recorder::default();
    assert!(a.do_discards(&src, 0, &rec).unwrap().is_empty());
    assert!(rec.0.lock().unwrap().is_empty());
    a.journal_flushed(10);
    let keys = a.do_discards(&src, 0, &rec).unwrap();
    assert_eq!(rec.0.lock().unwrap().as_slice(), &[(0, ob.bucket * bs, bs)]);
    assert_eq!(keys.len(), 1);
    let (b, k) = keys[0];
    assert_eq!((b, k.data_type, k.need_discard(), k.gen), (ob.bucket, data_type::FREE, 0, ob.gen));
    a.bucket_updated(0, b, &k, 11).unwrap();
    // Free again: it can be handed out.
    let mut got = false;
    while let Ok((_, o)) = a.bucket_alloc(&src, 0, Watermark::InteriorUpdates, data_type::USER) {
        got |= o.bucket == ob.bucket;
    }
    assert!(got);
    // A bucket in need_discard that still holds data is an error.
    let mut src = Bad::new(&fs);
    let used = *t.alloc.iter().find(|(_, &(dt, _))| dt == data_type::BTREE).unwrap().0;
    src.need_discard = vec![used];
    assert_eq!(a.do_discards(&src, 0, &rec).unwrap_err(), Errno::EIO);
}

#[test]
fn emptied_buckets_wait_for_the_journal() {
    let fs = open("c-fresh.bchimg");
    let a = Allocator::open(&fs).unwrap();
    let (mut obs, ob) = a.bucket_alloc(&fs, 0, Watermark::Normal, data_type::BTREE).unwrap();
    mark(&a, &ob, data_type::BTREE);
    a.open_buckets_put(&mut obs);
    // The node is freed by a key in journal entry 7: free again in memory,
    // but not to be reused before entry 7 is on disk.
    a.bucket_updated(0, ob.bucket, &AllocV4 { gen: ob.gen, ..AllocV4::default() }, 7).unwrap();
    let mut held = Vec::new();
    while let Ok((obs, o)) = a.bucket_alloc(&fs, 0, Watermark::InteriorUpdates, data_type::USER) {
        assert_ne!(o.bucket, ob.bucket);
        held.push(obs);
    }
    a.with_dev(0, |d| assert_eq!(d.last_search.skipped_need_journal_commit, 1)).unwrap();
    a.journal_flushed(7);
    let (_, o) = a.bucket_alloc(&fs, 0, Watermark::InteriorUpdates, data_type::USER).unwrap();
    assert_eq!(o.bucket, ob.bucket);
}

#[test]
fn usage_equals_the_accounting_c_wrote() {
    use bcachefs_rs::accounting::DiskAccountingPos;
    for name in FIXTURES {
        let fs = open(name);
        let st = bcachefs_rs::gc::StoredState::read(&fs).unwrap();
        let a = Allocator::open(&fs).unwrap();
        for t in 0..data_type::NR {
            let acct = st.accounting.get(&DiskAccountingPos::DevDataType { dev: 0, data_type: t })[0];
            a.with_dev(0, |d| assert_eq!(d.usage[usize::from(t)] as i64, acct, "{name}: data type {t}")).unwrap();
        }
    }
}

#[test]
fn early_path_without_freespace_btree() {
    // Before bch2_dev_freespace_init() the buckets are found by scanning
    // their states: the same rules, the same ENOSPC count.
    for name in FIXTURES {
        let fs = open(name);
        let t = Truth::read(&fs);
        let a = Allocator::open(&fs).unwrap();
        a.set_freespace_initialized(0, false).unwrap();
        let mut src = Bad::new(&fs);
        src.free = Some(Vec::new()); // an empty freespace btree
        let mut seen = BTreeSet::new();
        let err = loop {
            match a.bucket_alloc(&src, 0, Watermark::Btree, data_type::BTREE) {
                Ok((mut obs, ob)) => {
                    assert!(t.is_free(ob.bucket) && !t.sb.contains(&ob.bucket) && !t.journal.contains(&ob.bucket), "{name}: {}", ob.bucket);
                    assert!(seen.insert(ob.bucket));
                    mark(&a, &ob, data_type::BTREE);
                    a.open_buckets_put(&mut obs);
                }
                Err(e) => break e,
            }
        };
        assert_eq!((err, seen.len() as u64), (BucketAllocError::FreelistEmpty, t.free_buckets() - t.reserved(Watermark::Btree)), "{name}");
        // In bucket order.
        let v: Vec<u64> = seen.iter().copied().collect();
        let want: Vec<u64> = (t.first_bucket..t.nbuckets).filter(|&b| t.is_free(b)).take(v.len()).collect();
        assert_eq!(v, want, "{name}");
    }
}

#[test]
fn more_replicas_than_devices() {
    let fs = open("c-fresh.bchimg");
    let a = Allocator::open(&fs).unwrap();
    let e = a.alloc_sectors_start(&fs, WritePointSpec::Hashed(9), 2, Watermark::Normal).err().unwrap();
    assert_eq!((e, e.errno()), (BucketAllocError::InsufficientDevices, Errno::EROFS));
    // The bucket it got for the first replica is kept, not leaked.
    let g = a.alloc_sectors_start(&fs, WritePointSpec::Hashed(9), 1, Watermark::Normal).unwrap();
    assert_eq!(g.write_point().ptrs.len(), 1);
    g.done();
    assert_eq!(a.open_buckets_nr_free(), OPEN_BUCKETS_COUNT - 2);
}

#[test]
fn at_enospc_write_points_give_up_their_buckets() {
    // 32 write points each hold a bucket with 8 sectors used.  A writer
    // running out of buckets shrinks the write points (their buckets go
    // to the partial list, try_decrease_writepoints()) and takes those.
    let fs = open("c-fresh.bchimg");
    let t = Truth::read(&fs);
    let bs = u64::from(t.bucket_size);
    let a = Allocator::open(&fs).unwrap();
    let mut held = BTreeSet::new();
    for h in 0..WRITE_POINT_MAX as u64 {
        let (p, _, mut obs) = a.alloc_sectors(&fs, WritePointSpec::Hashed(h * 2), 8, Watermark::Normal).unwrap();
        held.insert(p.get(0).unwrap().bucket);
        a.open_buckets_put(&mut obs);
    }
    let mut from_partial = BTreeSet::new();
    let mut all = Vec::new();
    loop {
        match a.alloc_sectors(&fs, WritePointSpec::Hashed(1001), bs as u32, Watermark::Normal) {
            Ok((p, n, mut obs)) => {
                let p = *p.get(0).unwrap();
                if held.contains(&p.bucket) {
                    assert_eq!((p.offset % bs, u64::from(n)), (8, bs - 8), "the rest of a partial bucket");
                    from_partial.insert(p.bucket);
                }
                if p.offset + u64::from(n) == (p.bucket + 1) * bs {
                    mark(&a, &OpenBucket { dev: 0, bucket: p.bucket, gen: p.gen, ..Default::default() }, data_type::USER);
                }
                all.push((p.offset, n));
                a.open_buckets_put(&mut obs);
            }
            Err(e) => {
                assert_eq!(e.errno(), Errno::ENOSPC);
                break;
            }
        }
    }
    assert!(!from_partial.is_empty(), "no partial bucket was reused");
    // No bucket stranded: each of the 32 was either reused or is still
    // held (8 sectors used) by a write point that survived; none is left
    // on the partial list.
    let mut s = String::new();
    a.open_buckets_to_text(&mut s, None).unwrap();
    let still: BTreeSet<u64> = s.lines().map(|l| l.split(' ').nth(4).unwrap().split(':').nth(1).unwrap().parse().unwrap()).collect();
    assert!(still.is_subset(&held), "{s}");
    assert!(s.lines().all(|l| l.ends_with(&format!("allocated 8/{bs}"))), "{s}");
    assert_eq!(from_partial.len() + still.len(), WRITE_POINT_MAX, "{s}");
    let mut s = String::new();
    a.open_buckets_partial_to_text(&mut s).unwrap();
    assert_eq!(s, "");
    let mut s = String::new();
    a.fs_alloc_debug_to_text(&mut s).unwrap();
    assert!(!s.contains("write points            32\n"), "{s}");
    all.sort();
    for w in all.windows(2) {
        assert!(w[0].0 + u64::from(w[0].1) <= w[1].0);
    }
}

#[test]
fn btree_node_alloc_trait() {
    use bcachefs_rs::alloc::adapters::BtreeNodeReserve;
    use bcachefs_rs::btree::BtreeNodeAlloc;
    let fs = open("c-clean-siphash.bchimg");
    let t = Truth::read(&fs);
    let a = Allocator::open(&fs).unwrap();
    let r = BtreeNodeReserve::new(&a, Some(&fs), Watermark::Btree).unwrap();
    let na: &dyn BtreeNodeAlloc = &r;
    let ns = t.btree_node_sectors;
    let mut spaces = Vec::new();
    for _ in 0..10 {
        let s = na.alloc(ns).unwrap();
        let b = s.offset / u64::from(t.bucket_size);
        assert!(t.is_free(b) && a.bucket_is_open(0, b));
        assert_eq!(s.gen, t.alloc.get(&b).map_or(0, |x| x.1));
        spaces.push(s.offset);
    }
    let want: Vec<u64> = (0..10).map(|i| spaces[0] + u64::from(ns) * i).collect();
    assert_eq!(spaces, want, "4 nodes per bucket, buckets in order");
    assert_eq!(r.nr_held(), 10);
    na.free(Default::default(), 1);
    r.release();
    assert_eq!(r.nr_held(), 0);
    // Only the btree write point's current bucket is still open.
    assert_eq!(a.open_buckets_nr_free(), OPEN_BUCKETS_COUNT - 2);
}

#[derive(Default)]
struct RecDev(std::sync::Mutex<Vec<(u64, usize)>>);
impl bcachefs_rs::platform::BlockDev for RecDev {
    fn name(&self) -> &str {
        "rec"
    }
    fn nr_sectors(&self) -> u64 {
        1 << 20
    }
    fn read_sectors(&self, _: u64, _: &mut [u8]) -> Result<(), Errno> {
        Err(Errno::EIO)
    }
    fn write_sectors(&self, sector: u64, buf: &[u8], _: bcachefs_rs::platform::WriteFlags) -> Result<(), Errno> {
        self.0.lock().unwrap().push((sector, buf.len()));
        Ok(())
    }
}

#[test]
fn data_alloc_trait() {
    use bcachefs_rs::alloc::adapters::WpDataAlloc;
    use bcachefs_rs::fs_common::trans::DataAlloc;
    let fs = open("c-fresh.bchimg");
    let t = Truth::read(&fs);
    let bs = t.bucket_size;
    let a = Allocator::open(&fs).unwrap();
    let dev = RecDev::default();
    let s1_off;
    {
        let mut d = WpDataAlloc::new(&a, &fs, WritePointSpec::Hashed(77), &dev, 0);
        assert_eq!(d.sectors_free(), bs, "a new bucket next");
        let s1 = d.alloc(100).unwrap();
        assert_eq!((s1.offset % u64::from(bs), s1.sectors, s1.dev), (0, 100, 0));
        assert!(t.is_free(s1.offset / u64::from(bs)));
        assert_eq!(d.sectors_free(), bs - 100);
        let s2 = d.alloc(bs).unwrap();
        assert_eq!((s2.offset, s2.sectors), (s1.offset + 100, bs - 100), "the rest of the bucket");
        let s3 = d.alloc(8).unwrap();
        assert_ne!(s3.offset / u64::from(bs), s1.offset / u64::from(bs));
        d.write(0, s1.offset, &[0u8; 1024]).unwrap();
        assert_eq!(d.write(1, s1.offset, &[0u8; 512]), Err(Errno::EINVAL));
        assert_eq!(d.alloc(0), Err(Errno::EINVAL));
        assert!(a.bucket_is_open(0, s1.offset / u64::from(bs)), "held until the commit");
        s1_off = s1.offset;
    }
    // Dropped (the transaction is over): the full bucket is closed, the
    // write point keeps its current one.
    assert_eq!(dev.0.lock().unwrap().as_slice(), &[(s1_off, 1024)]);
    assert_eq!(a.open_buckets_nr_free(), OPEN_BUCKETS_COUNT - 2);
}
