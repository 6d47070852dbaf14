// SPDX-License-Identifier: GPL-2.0
//! Model checking of six locks and seqcounts with loom: every
//! interleaving of small scenarios (within loom's preemption bound), with
//! loom's cells flagging any access the locks fail to order, and loom's
//! deadlock detection catching any lost wakeup (a thread parked forever).
//!
//! Run with `make loom` (`RUSTFLAGS="--cfg loom"`, own target directory).

extern crate std;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::SixLockType::{Intent, Read, Write};
use crate::format::bpos::{Bpos, POS_MIN};
use super::{gc_visited, GcPhase, GcPos, SeqCount, SixLock, SixLockClass, SixWaiter};

static CLASS: SixLockClass = SixLockClass::new(c"loom");

/// A six lock and the data it guards.
struct Guarded {
    lock: SixLock,
    data: UnsafeCell<u64>,
}

// SAFETY: `data` is only accessed under `lock` (what the tests check).
unsafe impl Sync for Guarded {}
// SAFETY: as above.
unsafe impl Send for Guarded {}

impl Guarded {
    fn new() -> Arc<Self> {
        Arc::new(Guarded { lock: SixLock::new(&CLASS), data: UnsafeCell::new(0) })
    }

    fn read(&self) -> u64 {
        // SAFETY: the caller holds read or intent; loom checks no writer
        // runs concurrently.
        self.data.with(|p| unsafe { *p })
    }

    fn write(&self, v: u64) {
        // SAFETY: the caller holds write; loom checks exclusivity.
        self.data.with_mut(|p| unsafe { *p = v })
    }

    fn idle(&self) -> bool {
        let mut waiters = 0;
        self.lock.for_each_waiter(|_| waiters += 1);
        self.lock.counts().n == [0, 0, 0] && waiters == 0
    }
}

/// `thread::spawn`, then a yield: loom's exploration misses some orders in
/// which a new thread's first steps run before the spawner's next ones
/// (tokio-rs/loom#392, #166); the yield makes them an explicit choice.
fn spawn<T: 'static, F: FnOnce() -> T + 'static>(f: F) -> thread::JoinHandle<T> {
    let h = thread::spawn(f);
    thread::yield_now();
    h
}

fn writer(g: &Guarded, v: u64) {
    g.lock.lock_intent();
    g.lock.lock_write();
    g.write(v);
    g.lock.unlock_write();
    g.lock.unlock_intent();
}

#[test]
fn intent_is_exclusive_and_handed_off() {
    loom::model(|| {
        let g = Guarded::new();
        let ts: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                spawn(move || {
                    g.lock.lock_intent();
                    // Intent holders exclude each other: loom flags the
                    // mutable access if two could overlap.
                    g.write(g.read() + 1);
                    g.lock.unlock_intent();
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(g.read(), 2);
        assert!(g.idle());
    });
}

#[test]
fn write_excludes_readers_and_readers_block_write() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = g.clone();
        let w = spawn(move || writer(&g2, 7));
        g.lock.lock_read();
        let (v, seq) = (g.read(), g.lock.seq());
        assert!((v, seq) == (0, 0) || (v, seq) == (7, 1), "value and seq agree: {v} {seq}");
        g.lock.unlock_read();
        w.join().unwrap();
        assert_eq!(g.lock.seq(), 1);
        assert!(g.idle());
    });
}

#[test]
fn intent_holder_shares_with_reader() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = g.clone();
        let t = spawn(move || {
            g2.lock.lock_read();
            let v = g2.read();
            g2.lock.unlock_read();
            v
        });
        g.lock.lock_intent();
        let v = g.read();
        g.lock.lock_write();
        g.write(v + 1);
        g.lock.unlock_write();
        g.lock.unlock_intent();
        let seen = t.join().unwrap();
        assert!(seen <= 1);
        assert!(g.idle());
    });
}

#[test]
fn relock_fails_after_a_write() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = g.clone();
        let w = spawn(move || writer(&g2, 1));
        g.lock.lock_read();
        let (seq, v) = (g.lock.seq(), g.read());
        g.lock.unlock_read();
        if g.lock.relock_read(seq) {
            assert_eq!(g.read(), v, "relock succeeded over a write");
            g.lock.unlock_read();
        }
        w.join().unwrap();
        assert!(!g.lock.relock_intent(0), "seq moved on: relock must fail");
        assert!(g.idle());
    });
}

#[test]
fn pending_writer_is_not_starved_by_new_readers() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let g = Guarded::new();
        g.lock.lock_read();
        let g2 = g.clone();
        let w = spawn(move || writer(&g2, 1));
        let g3 = g.clone();
        let r = spawn(move || {
            g3.lock.lock_read();
            let v = g3.read();
            g3.lock.unlock_read();
            v
        });
        g.lock.unlock_read();
        w.join().unwrap();
        r.join().unwrap();
        assert!(g.idle());
    });
}

#[test]
fn three_intent_lockers_all_get_through() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let g = Guarded::new();
        let ts: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                spawn(move || {
                    g.lock.lock_intent();
                    g.write(g.read() + 1);
                    g.lock.unlock_intent();
                })
            })
            .collect();
        g.lock.lock_intent();
        g.write(g.read() + 1);
        g.lock.unlock_intent();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(g.read(), 3);
        assert!(g.idle());
    });
}

#[test]
fn write_unlock_hands_read_to_every_waiter() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let g = Guarded::new();
        g.lock.lock_intent();
        g.lock.lock_write();
        let ts: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                spawn(move || {
                    g.lock.lock_read();
                    let v = g.read();
                    g.lock.unlock_read();
                    v
                })
            })
            .collect();
        g.write(9);
        g.lock.unlock_write();
        g.lock.unlock_intent();
        for t in ts {
            assert_eq!(t.join().unwrap(), 9, "no reader got in before the write unlock");
        }
        assert!(g.idle());
    });
}

#[test]
fn tryupgrade_races_intent() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = g.clone();
        let t = spawn(move || {
            g2.lock.lock_intent();
            g2.write(g2.read() + 1);
            g2.lock.unlock_intent();
        });
        g.lock.lock_read();
        if g.lock.tryupgrade() {
            g.write(g.read() + 1);
            g.lock.downgrade();
        }
        g.lock.unlock_read();
        t.join().unwrap();
        assert!(g.idle());
    });
}

#[test]
fn aborted_wait_leaves_no_trace() {
    loom::model(|| {
        let g = Guarded::new();
        g.lock.lock_intent();
        let g2 = g.clone();
        let t = spawn(move || {
            let w = SixWaiter::new();
            if g2.lock.lock_with(Intent, &w, |_| Err(())).is_ok() {
                g2.write(1);
                g2.lock.unlock_intent();
            }
        });
        g.lock.unlock_intent();
        t.join().unwrap();
        assert!(g.idle());
    });
}

#[test]
fn aborted_write_lets_readers_in() {
    loom::model(|| {
        let g = Guarded::new();
        g.lock.lock_read();
        let g2 = g.clone();
        let t = spawn(move || {
            g2.lock.lock_intent();
            let w = SixWaiter::new();
            let r = g2.lock.lock_with(Write, &w, |_| Err(()));
            if r.is_ok() {
                g2.write(1);
                g2.lock.unlock_write();
            }
            g2.lock.unlock_intent();
        });
        // A reader arriving while the writer claims the lock must not be
        // left waiting when the writer gives up.
        g.lock.lock_read();
        g.lock.unlock_read();
        g.lock.unlock_read();
        t.join().unwrap();
        assert!(g.idle());
    });
}

#[test]
fn read_increment_and_readers_add() {
    loom::model(|| {
        let g = Guarded::new();
        let g2 = g.clone();
        let t = spawn(move || {
            g2.lock.lock_read();
            g2.lock.increment(Read);
            let v = g2.read();
            g2.lock.unlock_read();
            g2.lock.unlock_read();
            v
        });
        g.lock.lock_intent();
        g.lock.increment(Read);
        g.lock.readers_add(-1);
        g.lock.lock_write();
        g.write(5);
        g.lock.unlock_write();
        g.lock.readers_add(1);
        g.lock.unlock_read();
        g.lock.unlock_intent();
        assert!(t.join().unwrap() == 0 || g.lock.seq() == 1);
        assert!(g.idle());
    });
}

#[test]
fn seqcount_readers_never_see_torn_values() {
    loom::model(|| {
        let c = Arc::new(SeqCount::new((0u64, !0u64)));
        let c2 = c.clone();
        let w = spawn(move || {
            c2.write((1, !1));
            c2.write((2, !2));
        });
        let mut last = 0;
        for _ in 0..2 {
            let (a, b) = c.read();
            assert_eq!(a, !b, "torn read");
            assert!(a >= last);
            last = a;
        }
        w.join().unwrap();
        assert_eq!(c.read(), (2, !2));
    });
}

#[test]
fn seqcount_writers_exclude_each_other() {
    loom::model(|| {
        let c = Arc::new(SeqCount::new((0u64, 0u64)));
        let c2 = c.clone();
        let t = spawn(move || {
            c2.update(|(a, b)| Some((a + 1, b + 1)));
        });
        c.update(|(a, b)| Some((a + 1, b + 1)));
        t.join().unwrap();
        assert_eq!(c.read(), (2, 2));
        assert_eq!(c.sequence(), 4);
    });
}

#[test]
fn gc_visited_follows_gc() {
    loom::model(|| {
        let gc = Arc::new(SeqCount::new(GcPos::phase(GcPhase::Start)));
        let a = GcPos::btree(4, 0, Bpos::new(1, 2, 3));
        let b = GcPos::btree(0, 1, POS_MIN);
        let gc2 = gc.clone();
        let t = spawn(move || {
            gc2.gc_pos_set(a).unwrap();
            gc2.gc_pos_set(b).unwrap();
        });
        let seen = gc.read();
        assert!(seen == GcPos::phase(GcPhase::Start) || seen == a || seen == b);
        assert!(gc_visited(&gc, seen));
        if gc_visited(&gc, b) {
            assert!(gc_visited(&gc, a), "alloc comes before level 1 of extents");
        }
        t.join().unwrap();
        assert!(gc_visited(&gc, b));
        assert!(!gc_visited(&gc, GcPos::btree(0, 1, Bpos::new(0, 0, 1))));
    });
}
