// SPDX-License-Identifier: GPL-2.0
//! Seeded corruption of the write path's input: small volumes (clean and
//! unclean, with and without metadata checksums) damaged in their
//! superblocks, journal buckets and btree nodes (`tests/common/
//! write_fuzz.rs`, shared with the cargo-fuzz target `write_path`), then
//! opened read-write, replayed, written, shut down and checked.  Errors
//! are expected; a panic fails the test with its seed.
//!
//! `BCH_WRITE_FUZZ_SEEDS` sets the number of seeds (default 300).

use std::panic::{catch_unwind, AssertUnwindSafe};

#[path = "common/write_fuzz.rs"]
mod harness;

/// SplitMix64.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The corruption of seed `seed`, in `harness::corrupt`'s input format:
/// 1 to 4 patches, mostly in the first 4 KiB of a region (headers), of
/// every kind; a quarter in the superblock, a quarter in the first two
/// journal buckets, half in the btree nodes.
fn input(seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut next = || {
        s = mix(s);
        s
    };
    let base = (seed % 4) as u8;
    let regions = harness::bases()[usize::from(base)].regions.len() as u64;
    // Regions: the superblock (0), the journal buckets (1..=8, the
    // entries in the first ones), the nodes (9..).
    let journal = 8u64.min(regions - 1);
    let mut v = vec![base];
    for _ in 0..1 + next() % 4 {
        let kind = (next() % 4) as u8;
        let region = match next() % 4 {
            0 => 0,
            1 => 1 + next() % 2.min(journal),
            _ if regions > journal + 1 => 1 + journal + next() % (regions - journal - 1),
            _ => next() % regions,
        } as u8;
        let off = if next() % 4 == 0 { next() % (1 << 24) } else { next() % 4096 };
        let len = 1 + (next() % 16) as u8;
        v.extend_from_slice(&[kind, region]);
        v.extend_from_slice(&off.to_le_bytes()[..3]);
        v.push(len);
        if kind < 2 {
            v.extend((0..len).map(|_| next() as u8));
        }
    }
    v
}

#[test]
fn the_base_volumes_pass() {
    for (i, b) in harness::bases().iter().enumerate() {
        assert!(b.regions.len() > 10, "base {i}: {} regions", b.regions.len());
        harness::exercise(b.img.clone()).unwrap_or_else(|e| panic!("base {i}: {e}"));
    }
}

#[test]
fn seeded_corruptions_never_panic() {
    let n: u64 = std::env::var("BCH_WRITE_FUZZ_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let t = std::time::Instant::now();
    harness::bases();
    let (mut ok, mut err, mut panics) = (0, 0, Vec::new());
    for seed in 0..n {
        let inp = input(seed);
        match catch_unwind(AssertUnwindSafe(|| harness::exercise(harness::corrupt(&inp)))) {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => err += 1,
            Err(_) => panics.push(seed),
        }
    }
    println!("write fuzz: {n} seeds, {ok} exercised without error, {err} with an error, {} panics, {:.1} s", panics.len(), t.elapsed().as_secs_f64());
    assert!(panics.is_empty(), "panics with seeds {panics:?} (inputs: {:02x?})", panics.iter().take(3).map(|&s| input(s)).collect::<Vec<_>>());
}
