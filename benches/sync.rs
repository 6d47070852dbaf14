// SPDX-License-Identifier: GPL-2.0
//! Six locks against std's and parking_lot's `RwLock`: uncontended
//! lock+unlock, and two threads hammering one lock.
//!
//! `cargo bench --bench sync` (add `-- six` etc. to filter).  Intent is
//! compared with both an exclusive lock and parking_lot's upgradable read,
//! which like intent is shared with readers and exclusive among its kind.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::{Arc, Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use bcachefs_rs::sync::{SixLock, SixLockClass};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

static CLASS: SixLockClass = SixLockClass::new(c"bench");

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    let six = SixLock::new(&CLASS);
    let std_rw = RwLock::new(0u64);
    let pl_rw = parking_lot::RwLock::new(0u64);

    g.bench_function("six_read", |b| {
        b.iter(|| {
            six.lock_read();
            six.unlock_read();
        })
    });
    g.bench_function("std_rwlock_read", |b| b.iter(|| black_box(*std_rw.read().unwrap())));
    g.bench_function("parking_lot_read", |b| b.iter(|| black_box(*pl_rw.read())));

    g.bench_function("six_intent", |b| {
        b.iter(|| {
            six.lock_intent();
            six.unlock_intent();
        })
    });
    g.bench_function("six_intent_write", |b| {
        b.iter(|| {
            six.lock_intent();
            six.lock_write();
            six.unlock_write();
            six.unlock_intent();
        })
    });
    g.bench_function("std_rwlock_write", |b| b.iter(|| black_box(*std_rw.write().unwrap())));
    g.bench_function("parking_lot_write", |b| b.iter(|| black_box(*pl_rw.write())));
    g.bench_function("parking_lot_upgradable", |b| b.iter(|| black_box(*pl_rw.upgradable_read())));
    g.finish();
}

/// Two threads, each doing `iters` operations on a shared lock; returns the
/// wall time, so criterion reports time per operation per thread.
fn two_threads<L: Send + Sync + 'static>(
    lock: &Arc<L>,
    iters: u64,
    ops: [fn(&L); 2],
) -> Duration {
    let barrier = Arc::new(Barrier::new(3));
    let hs: Vec<_> = ops
        .into_iter()
        .map(|op| {
            let (lock, barrier) = (lock.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op(&lock);
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in hs {
        h.join().unwrap();
    }
    start.elapsed()
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended_2_threads");
    let six = Arc::new(SixLock::new(&CLASS));
    let std_rw = Arc::new(RwLock::new(0u64));
    let pl_rw = Arc::new(parking_lot::RwLock::new(0u64));

    fn six_read(l: &SixLock) {
        l.lock_read();
        l.unlock_read();
    }
    fn six_intent(l: &SixLock) {
        l.lock_intent();
        l.unlock_intent();
    }
    fn six_write(l: &SixLock) {
        l.lock_intent();
        l.lock_write();
        l.unlock_write();
        l.unlock_intent();
    }
    fn std_read(l: &RwLock<u64>) {
        black_box(*l.read().unwrap());
    }
    fn std_write(l: &RwLock<u64>) {
        *l.write().unwrap() += 1;
    }
    fn pl_read(l: &parking_lot::RwLock<u64>) {
        black_box(*l.read());
    }
    fn pl_write(l: &parking_lot::RwLock<u64>) {
        *l.write() += 1;
    }
    fn pl_upgradable(l: &parking_lot::RwLock<u64>) {
        black_box(*l.upgradable_read());
    }

    for name in ["read_read", "exclusive", "read_write"] {
        g.bench_function(BenchmarkId::new("six", name), |b| {
            let ops: [fn(&SixLock); 2] = match name {
                "read_read" => [six_read, six_read],
                "exclusive" => [six_intent, six_intent],
                _ => [six_read, six_write],
            };
            b.iter_custom(|iters| two_threads(&six, iters, ops))
        });
        g.bench_function(BenchmarkId::new("std_rwlock", name), |b| {
            let ops: [fn(&RwLock<u64>); 2] = match name {
                "read_read" => [std_read, std_read],
                "exclusive" => [std_write, std_write],
                _ => [std_read, std_write],
            };
            b.iter_custom(|iters| two_threads(&std_rw, iters, ops))
        });
        g.bench_function(BenchmarkId::new("parking_lot", name), |b| {
            let ops: [fn(&parking_lot::RwLock<u64>); 2] = match name {
                "read_read" => [pl_read, pl_read],
                "exclusive" => [pl_write, pl_write],
                _ => [pl_read, pl_write],
            };
            b.iter_custom(|iters| two_threads(&pl_rw, iters, ops))
        });
    }
    g.bench_function(BenchmarkId::new("parking_lot", "upgradable_upgradable"), |b| {
        b.iter_custom(|iters| two_threads(&pl_rw, iters, [pl_upgradable, pl_upgradable]))
    });
    g.bench_function(BenchmarkId::new("six", "intent_write_intent_write"), |b| {
        b.iter_custom(|iters| two_threads(&six, iters, [six_write, six_write]))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = uncontended, contended
}
criterion_main!(benches);
