// SPDX-License-Identifier: GPL-2.0
//! Benchmarks of the on-disk format code (not tests): packing and
//! unpacking keys with a node's key format, and reading and searching a
//! 64 KiB btree node.  `cargo bench --bench format`.

use std::hint::black_box;

use bcachefs_rs::checksum::CsumType;
use bcachefs_rs::format::bkey::{Bkey, BkeyFormat, BkeyFormatBuilder, KeyRef, KeyType};
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::btree_node::{write_node, BtreeNode, NodeReadOpts, NodeWriteOpts};
use bcachefs_rs::format::version::VERSION_CURRENT;
use criterion::{criterion_main, Criterion, Throughput};

const N: usize = 1024;

/// Extent keys spread over many inodes and offsets, with versions: a
/// format for them needs two words per key.
fn keys() -> Vec<Bkey> {
    (0..N as u64)
        .map(|i| {
            let mut k = Bkey::new(KeyType::Extent, Bpos::new(4096 + i * 7919, (i * 2048 + 128) % (1 << 30), u32::MAX), 2);
            k.size = 128;
            k.version.lo = i;
            k
        })
        .collect()
}

fn format_for(keys: &[Bkey]) -> BkeyFormat {
    let mut b = BkeyFormatBuilder::new();
    keys.iter().for_each(|k| b.add_key(k));
    b.build()
}

fn bkey(c: &mut Criterion) {
    let keys = keys();
    let f = format_for(&keys);
    let kb = f.key_u64s as usize * 8;
    let mut packed = vec![0u8; N * kb];
    for (i, k) in keys.iter().enumerate() {
        f.pack_key(k, &mut packed[i * kb..(i + 1) * kb]).unwrap();
    }
    let mut g = c.benchmark_group("bkey");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(format!("unpack ({} u64s packed)", f.key_u64s), |b| {
        b.iter(|| {
            for i in 0..N {
                black_box(f.unpack_key(black_box(&packed[i * kb..(i + 1) * kb])).unwrap());
            }
        })
    });
    g.bench_function("unpack_pos", |b| {
        b.iter(|| {
            for i in 0..N {
                black_box(f.unpack_pos(black_box(&packed[i * kb..(i + 1) * kb])).unwrap());
            }
        })
    });
    let mut out = vec![0u8; kb];
    g.bench_function("pack", |b| {
        b.iter(|| {
            for k in &keys {
                black_box(f.pack_key(black_box(k), &mut out).unwrap());
            }
        })
    });
    let unpacked: Vec<[u8; 40]> = keys.iter().map(|k| Bkey { u64s: 5, ..*k }.to_bytes()).collect();
    g.bench_function("parse unpacked (format 1)", |b| {
        b.iter(|| {
            for u in &unpacked {
                let k = KeyRef::parse(black_box(&u[..]), &BkeyFormat::CURRENT).unwrap();
                black_box(k.unpack(&BkeyFormat::CURRENT));
            }
        })
    });
    g.finish();
}

fn node(c: &mut Criterion) {
    // As many value-less keys (as in the lru and freespace btrees) as fit
    // a 64 KiB node, spread over a few inodes.
    let opts = |n| NodeWriteOpts {
        btree_id: 10,
        level: 0,
        seq: 1,
        node_seq: 0,
        min_key: Bpos::default(),
        max_key: Bpos::new(u64::MAX, u64::MAX, u32::MAX),
        format: None,
        csum_type: CsumType::Crc32c,
        version: VERSION_CURRENT,
        journal_seq: 1,
        block_bytes: 4096,
        node_bytes: n,
        bset_magic: 0x1234,
    };
    let all: Vec<(Bkey, &[u8])> = (0..20_000u64)
        .map(|i| (Bkey::new(KeyType::Set, Bpos::new(1 + i / 4096, i * 3, 0), 0), &[][..]))
        .collect();
    let (mut lo, mut hi) = (1usize, all.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if write_node(&opts(64 << 10), &all[..mid]).is_ok() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let keys = &all[..lo];
    let buf = write_node(&opts(64 << 10), keys).unwrap();
    let ropts = NodeReadOpts {
        bset_magic: 0x1234,
        block_bytes: 4096,
        node_bytes: 64 << 10,
        expect: None,
        journal_blacklist: &[],
        verify_csum: true,
    };
    let node = BtreeNode::read(&buf, &ropts).unwrap();
    let sorted = node.sorted().unwrap();
    let n = sorted.len();
    let probes: Vec<Bpos> = (0..1024u64).map(|j| keys[(j * 7919 % n as u64) as usize].0.p).collect();
    let mut g = c.benchmark_group(format!("node 64KiB ({n} keys, {} u64s each)", node.format().key_u64s));
    g.throughput(Throughput::Elements(probes.len() as u64));
    g.bench_function("search (binary, unpacking positions)", |b| {
        b.iter(|| {
            for p in &probes {
                black_box(sorted.lower_bound(&buf, black_box(*p)));
            }
        })
    });
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("read + checksum + sort", |b| {
        b.iter(|| {
            let node = BtreeNode::read(black_box(&buf), &ropts).unwrap();
            black_box(node.sorted().unwrap().len())
        })
    });
    g.finish();
}

#[allow(missing_docs)]
mod group {
    use super::{bkey, node};
    criterion::criterion_group!(benches, bkey, node);
}
criterion_main!(group::benches);
