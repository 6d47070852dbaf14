// SPDX-License-Identifier: GPL-2.0
//! The triggers recompute, from the keys alone, the derived state C 6.12
//! wrote: alloc keys, backpointers, accounting, freespace, need_discard,
//! lru, bucket_gens, rebalance_work and deleted_inodes of the fixtures
//! (`src/gc`); and damage to any of it is reported exactly.

use bcachefs_rs::accounting::DiskAccountingPos;
use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::format::bkey::BtreeId;
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::val::alloc::data_type;
use bcachefs_rs::gc::{check, check_fs, Mismatch, Recomputed, StoredState};

mod common;
use common::{unpack_image, MemDev};

const FIXTURES: [&str; 2] = ["c-clean-siphash.bchimg", "c-unclean-crc64-lz4.bchimg"];

fn open(name: &str) -> Fs<MemDev> {
    Fs::open(MemDev(unpack_image(name)), &OpenOpts::default()).unwrap_or_else(|e| panic!("{name}: open: {e}"))
}

fn show(m: &[Mismatch]) -> String {
    m.iter().map(|m| format!("  {m}\n")).collect()
}

fn state(name: &str) -> (StoredState, Recomputed) {
    let fs = open(name);
    let stored = StoredState::read(&fs).unwrap();
    let rc = Recomputed::from_scratch(&fs, &stored).unwrap();
    (stored, rc)
}

#[test]
fn recomputed_state_equals_what_c_wrote() {
    for name in FIXTURES {
        let fs = open(name);
        let m = check_fs(&fs).unwrap();
        assert!(m.is_empty(), "{name}: {} mismatches:\n{}", m.len(), show(&m));
        // Not vacuous: every kind of derived state is there and compared.
        let (s, rc) = state(name);
        let used = s.alloc.iter().filter(|a| a.data_type != data_type::FREE).count();
        assert!(used >= 30, "{name}: {used} buckets in use");
        for t in [data_type::SB, data_type::JOURNAL, data_type::BTREE, data_type::USER] {
            assert!(s.alloc.iter().any(|a| a.data_type == t), "{name}: no bucket of type {t}");
        }
        assert!(s.backpointers.len() >= 30 && s.backpointers.len() == rc.backpointers.len());
        assert!(s.backpointers.iter().any(|b| b.1.level > 0), "{name}: no btree node backpointer");
        assert!(s.accounting.len() >= 25, "{name}: {} accounting counters", s.accounting.len());
        assert!(s.freespace.len() >= 200 && !s.lru.is_empty());
        assert!(rc.nr_keys.0 > 100 && rc.nr_keys.1 >= 12, "{name}: {:?}", rc.nr_keys);
    }
    // The lz4 fixture has compressed extents: their disk sectors, the
    // compression counters and the backpointers' sub-sector offsets
    // matched above.
    let (s, _) = state("c-unclean-crc64-lz4.bchimg");
    let lz4 = s.accounting.get(&DiskAccountingPos::Compression { ty: 3 });
    assert!(lz4[0] > 0 && lz4[1] > lz4[2], "{lz4:?}");
}

/// The fresh volume (C initialized it and wrote nothing else): btree,
/// superblock and journal buckets only, no extents root, and still
/// everything adds up.
#[test]
fn recomputed_state_of_a_fresh_volume_equals_what_c_wrote() {
    let fs = open("c-fresh.bchimg");
    let m = check_fs(&fs).unwrap();
    assert!(m.is_empty(), "c-fresh: {} mismatches:\n{}", m.len(), show(&m));
    let (s, rc) = state("c-fresh.bchimg");
    assert!(!s.alloc.iter().any(|a| a.data_type == data_type::USER), "no user data on a fresh volume");
    for t in [data_type::SB, data_type::JOURNAL, data_type::BTREE] {
        assert!(s.alloc.iter().any(|a| a.data_type == t), "c-fresh: no bucket of type {t}");
    }
    assert_eq!(s.backpointers.len(), rc.backpointers.len());
    assert!(!s.accounting.is_empty());
}

#[test]
fn a_damaged_alloc_key_is_reported_alone() {
    for name in FIXTURES {
        let (mut s, rc) = state(name);
        let b = s.alloc.iter().position(|a| a.data_type == data_type::USER).unwrap();
        s.alloc[b].dirty_sectors += 8;
        let m = check(&s, &rc).unwrap();
        assert_eq!(m.len(), 1, "{name}:\n{}", show(&m));
        let Mismatch::Alloc { bucket, expected, got } = m[0] else { panic!("{}", m[0]) };
        assert_eq!(bucket, Bpos::pos(0, b as u64));
        assert_eq!(got.dirty_sectors, expected.dirty_sectors + 8);
        let text = m[0].to_string();
        assert!(text.starts_with(&format!("bucket 0:{b}:0 alloc key wrong: got gen")), "{text}");

        // A free bucket claimed as btree.
        let (mut s, rc) = state(name);
        let f = s.alloc.iter().position(|a| a.data_type == data_type::FREE).unwrap();
        s.alloc[f].data_type = data_type::BTREE;
        let m = check(&s, &rc).unwrap();
        assert_eq!(m.len(), 1, "{name}:\n{}", show(&m));
        assert!(matches!(m[0], Mismatch::Alloc { bucket, expected, .. } if bucket.offset == f as u64 && expected.data_type == data_type::FREE));
    }
}

#[test]
fn a_missing_backpointer_is_reported_alone() {
    for name in FIXTURES {
        let (mut s, rc) = state(name);
        let i = s.backpointers.len() / 2;
        let (pos, bp) = s.backpointers[i];
        let mut kept = bcachefs_rs::platform::Vec::new();
        for (j, e) in s.backpointers.iter().enumerate() {
            if j != i {
                kept.push(*e).unwrap();
            }
        }
        s.backpointers = kept;
        let m = check(&s, &rc).unwrap();
        assert_eq!(m[..], [Mismatch::Backpointer { pos, expected: Some(bp), got: None }], "{name}:\n{}", show(&m));
        assert!(m[0].to_string().contains("got (none), should be btree="), "{}", m[0]);

        // A wrong length.
        let (mut s, rc) = state(name);
        s.backpointers[0].1.bucket_len += 1;
        let m = check(&s, &rc).unwrap();
        assert_eq!(m.len(), 1, "{name}:\n{}", show(&m));
    }
}

#[test]
fn an_altered_accounting_counter_is_reported_alone() {
    for name in FIXTURES {
        let (mut s, rc) = state(name);
        let acc = DiskAccountingPos::DevDataType { dev: 0, data_type: data_type::USER };
        let before = s.accounting.get(&acc);
        s.accounting.add(&acc, &[0, 1, 0]).unwrap();
        s.accounting.normalize();
        let m = check(&s, &rc).unwrap();
        assert_eq!(
            m[..],
            [Mismatch::Accounting {
                pos: acc.to_bpos(),
                expected: before,
                got: [before[0], before[1] + 1, before[2]],
                nr: 3
            }],
            "{name}:\n{}",
            show(&m)
        );
        assert_eq!(
            m[0].to_string(),
            format!(
                "accounting mismatch for dev_data_type dev=0 data_type=user: got {} {} {} should be {} {} {}",
                before[0],
                before[1] + 1,
                before[2],
                before[0],
                before[1],
                before[2]
            )
        );
        // A counter C never wrote.
        let (mut s, rc) = state(name);
        s.accounting.add(&DiskAccountingPos::Snapshot { id: 7 }, &[3]).unwrap();
        s.accounting.normalize();
        let m = check(&s, &rc).unwrap();
        assert_eq!(m.len(), 1, "{name}:\n{}", show(&m));
    }
}

#[test]
fn missing_lru_freespace_and_wrong_gens_are_reported() {
    for name in FIXTURES {
        let (mut s, rc) = state(name);
        let lru = s.lru.pop().unwrap();
        let free = s.freespace.remove_first();
        s.gens[200] = 5;
        let m = check(&s, &rc).unwrap();
        assert_eq!(
            m[..],
            [
                Mismatch::Bit { btree: BtreeId::Freespace, pos: free, expected: true },
                Mismatch::Bit { btree: BtreeId::Lru, pos: lru, expected: true },
                Mismatch::BucketGen { bucket: Bpos::pos(0, 200), expected: 0, got: 5 },
            ],
            "{name}:\n{}",
            show(&m)
        );
    }
}

trait RemoveFirst<T> {
    fn remove_first(&mut self) -> T;
}

impl<T: Copy> RemoveFirst<T> for bcachefs_rs::platform::Vec<T> {
    fn remove_first(&mut self) -> T {
        let first = self[0];
        let mut rest = bcachefs_rs::platform::Vec::new();
        rest.extend_from_slice(&self[1..]).unwrap();
        *self = rest;
        first
    }
}

#[test]
fn encoders_reproduce_the_values_c_wrote() {
    use bcachefs_rs::alloc::background::BucketGens;
    use bcachefs_rs::alloc::{alloc_v4_key, bucket_gens_key, BitUpdate, BpUpdate};
    use bcachefs_rs::format::bkey::KeyType;
    use bcachefs_rs::format::bpos::POS_MIN;
    use bcachefs_rs::format::val::alloc::AllocV4;
    for name in FIXTURES {
        let fs = open(name);
        let (_, rc) = state(name);
        let mut n = [0usize; 4];
        let mut it = fs.iter(BtreeId::Alloc, POS_MIN, false);
        while let Some(k) = it.next().unwrap() {
            let a = alloc_v4_key(k.k.p, &AllocV4::decode(&k.v)).unwrap();
            assert_eq!((a.k.key_type, a.k.p, &a.v[..]), (k.k.key_type, k.k.p, &k.v[..]), "{name}");
            n[0] += 1;
        }
        let mut it = fs.iter(BtreeId::Backpointers, POS_MIN, false);
        let mut i = 0;
        while let Some(k) = it.next().unwrap() {
            let (pos, bp) = rc.backpointers[i];
            let e = BpUpdate { pos, bp, insert: true }.to_key().unwrap();
            assert_eq!((e.k.key_type, e.k.p, &e.v[..]), (k.k.key_type, k.k.p, &k.v[..]), "{name}");
            i += 1;
            n[1] += 1;
        }
        // C merges adjacent freespace keys (`key_type_set_merge()`): each
        // of our size-1 keys lies inside one of C's.
        let mut it = fs.iter(BtreeId::Freespace, POS_MIN, false);
        let mut f = 0;
        while let Some(k) = it.next().unwrap() {
            assert_eq!(k.k.key_type, KeyType::Set as u8);
            for _ in 0..k.k.size {
                let e = BitUpdate { btree: BtreeId::Freespace, pos: rc.freespace[f], set: true }.to_key().unwrap();
                assert!(e.k.size == 1 && e.k.p.offset > k.k.start_offset() && e.k.p.offset <= k.k.p.offset, "{name}");
                f += 1;
            }
            n[2] += 1;
        }
        assert_eq!(f, rc.freespace.len());
        let mut it = fs.iter(BtreeId::BucketGens, POS_MIN, false);
        while let Some(k) = it.next().unwrap() {
            assert_eq!(k.k.key_type, KeyType::BucketGens as u8);
            let e = bucket_gens_key(k.k.p, &BucketGens::decode(&k.v)).unwrap();
            assert_eq!(&e.v[..], &k.v[..]);
            n[3] += 1;
        }
        // No bucket_gens keys: every gen is still 0, which a missing key
        // means.
        assert!(n[0] > 30 && n[1] >= 30 && n[2] > 0 && n[3] == 0, "{name}: {n:?}");
    }
}

#[test]
fn without_the_journal_the_unclean_fixture_does_not_add_up() {
    // The unclean image's newest keys and accounting deltas are only in
    // the journal: read without them (norecovery), the btrees disagree.
    let opts = OpenOpts { norecovery: true, ..OpenOpts::default() };
    let fs = Fs::open(MemDev(unpack_image("c-unclean-crc64-lz4.bchimg")), &opts).unwrap();
    let m = check_fs(&fs).unwrap();
    // Node pointers the journal's interior updates made: their buckets
    // are in use and have backpointers at level 1 only in the journal.
    assert!(m.iter().any(|m| matches!(m, Mismatch::Alloc { expected, got, .. }
        if expected.data_type == data_type::BTREE && got.data_type == data_type::FREE)), "{}", show(&m));
    assert!(m.iter().any(|m| matches!(m, Mismatch::Backpointer { expected: Some(bp), got: None, .. } if bp.level == 1)));
    assert!(m.iter().any(|m| matches!(m, Mismatch::Accounting { .. })));
}
