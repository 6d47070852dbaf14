// SPDX-License-Identifier: GPL-2.0
//! A stress workload for six locks and the GC seqcount, shared by the host
//! stress test (below) and the kernel selftest (`selftest.rs`, on kernel
//! threads under lockdep).
//!
//! Threads pick operations at random on a few locks, each guarding a
//! "node" of data words, and check as they go that the lock really
//! excludes what it should: holders of each type are counted next to the
//! lock, writers rewrite every word of their node, and everyone holding
//! read or intent checks that the node and the lock's sequence number
//! stay as they found them.  Relocks must see the data exactly as when
//! the lock was dropped.  One thread moves a GC position forward through
//! a seqcount; the others check they never see it torn or going back.
//!
//! Lock order, so the workload cannot deadlock: blocking acquisitions go
//! to locks in increasing index order; on one lock, a thread never blocks
//! for intent while holding read, nor for write while holding its own
//! read holds (it hides them with `readers_add` first).

use core::fmt;

use super::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use crate::format::bpos::Bpos;
use super::{gc_visited, GcPhase, GcPos, SeqCount, SixLock, SixLockClass, SixLockType, SixWaiter};

/// Locks (and nodes) in the workload.
pub(crate) const NR_LOCKS: usize = 4;
const WORDS: usize = 4;
const GC_MAGIC: u32 = 0x5eed_6c0c;

/// One lock class per node, so lockdep sees the index order.
pub(crate) static CLASSES: [SixLockClass; NR_LOCKS] = [
    SixLockClass::new(c"six_stress_0"),
    SixLockClass::new(c"six_stress_1"),
    SixLockClass::new(c"six_stress_2"),
    SixLockClass::new(c"six_stress_3"),
];

/// The first broken invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Failure {
    ReadWhileWrite = 1,
    TwoIntents,
    WriteWhileRead,
    TwoWriters,
    WriteWithoutIntent,
    TornNode,
    NodeChangedUnderHold,
    SeqChangedUnderHold,
    SeqNotBumpedOnce,
    RelockSawStaleData,
    BadCounts,
    GcPosTorn,
    GcPosBackwards,
    GcNotVisited,
    GcSetRefused,
    LeftLocked,
    LeftWaiters,
    FinalSeq,
}

impl Failure {
    fn from_u32(v: u32) -> Option<Failure> {
        use Failure::*;
        const ALL: [Failure; 18] = [
            ReadWhileWrite,
            TwoIntents,
            WriteWhileRead,
            TwoWriters,
            WriteWithoutIntent,
            TornNode,
            NodeChangedUnderHold,
            SeqChangedUnderHold,
            SeqNotBumpedOnce,
            RelockSawStaleData,
            BadCounts,
            GcPosTorn,
            GcPosBackwards,
            GcNotVisited,
            GcSetRefused,
            LeftLocked,
            LeftWaiters,
            FinalSeq,
        ];
        ALL.into_iter().find(|f| *f as u32 == v)
    }

    /// The KTAP subtest of the kselftest that reports this failure.  An
    /// exhaustive match, so a new failure cannot go unreported.
    pub(crate) fn ktap_group(self) -> &'static str {
        use Failure::*;
        match self {
            ReadWhileWrite | TwoIntents | WriteWhileRead | TwoWriters | WriteWithoutIntent
            | TornNode | NodeChangedUnderHold | SeqChangedUnderHold | SeqNotBumpedOnce
            | RelockSawStaleData | BadCounts => "exclusion_and_sequence_numbers",
            GcPosTorn | GcPosBackwards | GcNotVisited | GcSetRefused => "gc_pos_seqcount",
            LeftLocked | LeftWaiters | FinalSeq => "final_state",
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Failure::ReadWhileWrite => "a reader got in while a writer held the lock",
            Failure::TwoIntents => "two threads held intent at once",
            Failure::WriteWhileRead => "a writer got in while readers held the lock",
            Failure::TwoWriters => "two writers at once",
            Failure::WriteWithoutIntent => "write held without intent",
            Failure::TornNode => "node words differ: a write was seen half done",
            Failure::NodeChangedUnderHold => "node changed while held for read or intent",
            Failure::SeqChangedUnderHold => "sequence number changed while held for read or intent",
            Failure::SeqNotBumpedOnce => "write unlock did not bump the sequence number by one",
            Failure::RelockSawStaleData => "relock succeeded although the node was written",
            Failure::BadCounts => "six_lock_counts disagrees with the holds",
            Failure::GcPosTorn => "seqcount reader saw a torn gc_pos",
            Failure::GcPosBackwards => "gc_pos went backwards",
            Failure::GcNotVisited => "gc_visited false for a position GC had passed",
            Failure::GcSetRefused => "gc_pos_set refused to move forward",
            Failure::LeftLocked => "a lock was left held at the end",
            Failure::LeftWaiters => "a lock was left with waiters at the end",
            Failure::FinalSeq => "sequence number differs from the number of writes",
        }
    }
}

/// One lock and what it guards, plus holder counts kept by the workload.
pub(crate) struct Node {
    pub(crate) lock: SixLock,
    readers: AtomicI32,
    intents: AtomicI32,
    writers: AtomicI32,
    /// Completed write sections: the node's words and the lock's seq.
    writes: AtomicU64,
    data: [AtomicU64; WORDS],
}

/// The state all threads share.
pub(crate) struct Stress {
    pub(crate) nodes: [Node; NR_LOCKS],
    gc: SeqCount<GcPos>,
    stop: AtomicBool,
    failure: AtomicU32,
    fail_lock: AtomicU32,
}

/// What one thread did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    pub(crate) ops: u64,
    pub(crate) read: u64,
    pub(crate) intent: u64,
    pub(crate) write: u64,
    pub(crate) try_fail: u64,
    pub(crate) relock_ok: u64,
    pub(crate) relock_fail: u64,
    pub(crate) upgrade_ok: u64,
    pub(crate) upgrade_fail: u64,
    pub(crate) aborts: u64,
    pub(crate) gc_reads: u64,
    pub(crate) gc_writes: u64,
}

impl Stats {
    pub(crate) fn add(&mut self, o: &Stats) {
        self.ops += o.ops;
        self.read += o.read;
        self.intent += o.intent;
        self.write += o.write;
        self.try_fail += o.try_fail;
        self.relock_ok += o.relock_ok;
        self.relock_fail += o.relock_fail;
        self.upgrade_ok += o.upgrade_ok;
        self.upgrade_fail += o.upgrade_fail;
        self.aborts += o.aborts;
        self.gc_reads += o.gc_reads;
        self.gc_writes += o.gc_writes;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ops={} read={} intent={} write={} try_fail={} relock_ok={} relock_fail={} \
             upgrade_ok={} upgrade_fail={} aborts={} gc_reads={} gc_writes={}",
            self.ops,
            self.read,
            self.intent,
            self.write,
            self.try_fail,
            self.relock_ok,
            self.relock_fail,
            self.upgrade_ok,
            self.upgrade_fail,
            self.aborts,
            self.gc_reads,
            self.gc_writes
        )
    }
}

/// xorshift64*: a small, good-enough generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// What a thread remembers of a lock it dropped, to relock it.
#[derive(Clone, Copy, Default)]
struct Memo {
    valid: bool,
    seq: u32,
    version: u64,
}

fn gc_pos_at(k: u64) -> GcPos {
    GcPos::btree(0, 0, Bpos::new(k, k.wrapping_mul(3).wrapping_add(1), (k as u32) ^ GC_MAGIC))
}

fn gc_pos_consistent(p: &GcPos) -> bool {
    match p.phase {
        GcPhase::Btree => {
            p.btree == 0
                && p.level == 0
                && p.pos.offset == p.pos.inode.wrapping_mul(3).wrapping_add(1)
                && p.pos.snapshot == (p.pos.inode as u32) ^ GC_MAGIC
        }
        GcPhase::Start => *p == GcPos::phase(GcPhase::Start),
        _ => false,
    }
}

impl Stress {
    pub(crate) fn new() -> Self {
        Stress {
            nodes: core::array::from_fn(|i| Node {
                lock: SixLock::new(&CLASSES[i]),
                readers: AtomicI32::new(0),
                intents: AtomicI32::new(0),
                writers: AtomicI32::new(0),
                writes: AtomicU64::new(0),
                data: core::array::from_fn(|_| AtomicU64::new(0)),
            }),
            gc: SeqCount::new(GcPos::phase(GcPhase::Start)),
            stop: AtomicBool::new(false),
            failure: AtomicU32::new(0),
            fail_lock: AtomicU32::new(0),
        }
    }

    /// Tells the workers to finish.
    pub(crate) fn stop(&self) {
        self.stop.store(true, SeqCst);
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// The first failure and the lock it was seen on.
    pub(crate) fn failure(&self) -> Option<(Failure, u32)> {
        Failure::from_u32(self.failure.load(SeqCst)).map(|f| (f, self.fail_lock.load(SeqCst)))
    }

    fn fail(&self, f: Failure, lock: usize) {
        if self.failure.compare_exchange(0, f as u32, SeqCst, SeqCst).is_ok() {
            self.fail_lock.store(lock as u32, SeqCst);
        }
        self.stop();
    }

    fn check(&self, ok: bool, f: Failure, lock: usize) {
        if !ok {
            self.fail(f, lock);
        }
    }

    /// Checks the node's words agree and returns them.
    fn node_version(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        let v = n.data[0].load(SeqCst);
        for w in &n.data[1..] {
            self.check(w.load(SeqCst) == v, Failure::TornNode, i);
        }
        v
    }

    /// Checks what must hold while `i` is held for read or intent, and
    /// returns the node's version.
    fn check_stable(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        let v = self.node_version(i);
        self.check(n.writes.load(SeqCst) == v, Failure::NodeChangedUnderHold, i);
        self.check(n.lock.seq() == v as u32, Failure::SeqChangedUnderHold, i);
        v
    }

    fn got_read(&self, i: usize, st: &mut Stats) -> u64 {
        let n = &self.nodes[i];
        n.readers.fetch_add(1, SeqCst);
        self.check(n.writers.load(SeqCst) == 0, Failure::ReadWhileWrite, i);
        self.check(n.lock.counts()[SixLockType::Read] >= 1, Failure::BadCounts, i);
        st.read += 1;
        self.check_stable(i)
    }

    fn put_read(&self, i: usize, v: u64, memo: &mut [Memo; NR_LOCKS]) {
        let n = &self.nodes[i];
        self.check(self.check_stable(i) == v, Failure::NodeChangedUnderHold, i);
        memo[i] = Memo { valid: true, seq: n.lock.seq(), version: v };
        n.readers.fetch_sub(1, SeqCst);
        n.lock.unlock_read();
    }

    fn got_intent(&self, i: usize, st: &mut Stats) -> u64 {
        let n = &self.nodes[i];
        self.check(n.intents.fetch_add(1, SeqCst) == 0, Failure::TwoIntents, i);
        self.check(n.lock.counts()[SixLockType::Intent] >= 1, Failure::BadCounts, i);
        st.intent += 1;
        self.check_stable(i)
    }

    fn put_intent(&self, i: usize, memo: &mut [Memo; NR_LOCKS]) {
        let n = &self.nodes[i];
        let v = self.check_stable(i);
        memo[i] = Memo { valid: true, seq: n.lock.seq(), version: v };
        n.intents.fetch_sub(1, SeqCst);
        n.lock.unlock_intent();
    }

    /// With intent held and write just taken: rewrite the node, release
    /// write, check the sequence number moved by exactly one.
    fn write_section(&self, i: usize, rng: &mut Rng, st: &mut Stats) {
        let n = &self.nodes[i];
        self.check(n.writers.fetch_add(1, SeqCst) == 0, Failure::TwoWriters, i);
        self.check(n.readers.load(SeqCst) == 0, Failure::WriteWhileRead, i);
        self.check(n.intents.load(SeqCst) == 1, Failure::WriteWithoutIntent, i);
        let c = n.lock.counts();
        self.check(c[SixLockType::Write] == 1 && c[SixLockType::Intent] >= 1, Failure::BadCounts, i);
        let v = self.check_stable(i);
        let seq = n.lock.seq();
        for w in &n.data {
            w.store(v + 1, SeqCst);
            if rng.chance(8) {
                core::hint::spin_loop();
            }
        }
        n.writes.fetch_add(1, SeqCst);
        n.writers.fetch_sub(1, SeqCst);
        n.lock.unlock_write();
        self.check(n.lock.seq() == seq.wrapping_add(1), Failure::SeqNotBumpedOnce, i);
        st.write += 1;
    }

    fn dwell(&self, rng: &mut Rng) {
        if rng.chance(4) {
            for _ in 0..rng.below(64) {
                core::hint::spin_loop();
            }
        }
    }

    fn gc_op(&self, idx: usize, k: &mut u64, last: &mut GcPos, st: &mut Stats) {
        if idx == 0 {
            *k += 1;
            let new = gc_pos_at(*k);
            self.check(self.gc.gc_pos_set(new).is_ok(), Failure::GcSetRefused, 0);
            st.gc_writes += 1;
        } else {
            let p = self.gc.read();
            self.check(gc_pos_consistent(&p), Failure::GcPosTorn, 0);
            self.check(p >= *last, Failure::GcPosBackwards, 0);
            self.check(gc_visited(&self.gc, *last), Failure::GcNotVisited, 0);
            *last = p;
            st.gc_reads += 1;
        }
    }

    /// One worker: runs operations until told to stop, or until
    /// `should_stop` says so; returns what it did.
    pub(crate) fn worker(&self, idx: usize, seed: u64, should_stop: &dyn Fn() -> bool) -> Stats {
        use SixLockType::{Intent, Read, Write};

        let mut rng = Rng(seed | 1);
        let mut st = Stats::default();
        let mut memo = [Memo::default(); NR_LOCKS];
        let mut gc_k = 0u64;
        let mut gc_last = GcPos::phase(GcPhase::Start);

        while !self.stopped() && !should_stop() {
            st.ops += 1;
            let i = rng.below(NR_LOCKS as u64) as usize;
            let n = &self.nodes[i];
            match rng.below(15) {
                // Read, maybe recursively.
                0 => {
                    n.lock.lock_read();
                    let v = self.got_read(i, &mut st);
                    if rng.chance(2) {
                        n.lock.increment(Read);
                        self.check(n.lock.counts()[Read] >= 2, Failure::BadCounts, i);
                        self.dwell(&mut rng);
                        n.lock.unlock_read();
                    }
                    self.dwell(&mut rng);
                    self.put_read(i, v, &mut memo);
                }
                1 => {
                    if n.lock.trylock_read() {
                        let v = self.got_read(i, &mut st);
                        self.put_read(i, v, &mut memo);
                    } else {
                        st.try_fail += 1;
                    }
                }
                // Intent then write, maybe with a recursive intent hold.
                2 | 3 => {
                    n.lock.lock_intent();
                    self.got_intent(i, &mut st);
                    let rec = rng.chance(2);
                    if rec {
                        n.lock.increment(Intent);
                        self.check(n.lock.counts()[Intent] >= 2, Failure::BadCounts, i);
                    }
                    n.lock.lock_write();
                    self.write_section(i, &mut rng, &mut st);
                    if rec {
                        n.lock.unlock_intent();
                    }
                    self.dwell(&mut rng);
                    self.put_intent(i, &mut memo);
                }
                4 => {
                    if n.lock.trylock_intent() {
                        self.got_intent(i, &mut st);
                        if n.lock.trylock_write() {
                            self.write_section(i, &mut rng, &mut st);
                        } else {
                            st.try_fail += 1;
                        }
                        self.put_intent(i, &mut memo);
                    } else {
                        st.try_fail += 1;
                    }
                }
                // Relock what we dropped earlier.
                5 | 6 => {
                    let m = memo[i];
                    if !m.valid {
                        continue;
                    }
                    let ty = if rng.chance(2) { Read } else { Intent };
                    if n.lock.relock(ty, m.seq) {
                        st.relock_ok += 1;
                        let v = if ty == Read { self.got_read(i, &mut st) } else { self.got_intent(i, &mut st) };
                        self.check(v == m.version, Failure::RelockSawStaleData, i);
                        if ty == Read {
                            self.put_read(i, v, &mut memo);
                        } else {
                            if rng.chance(2) {
                                n.lock.lock_write();
                                self.write_section(i, &mut rng, &mut st);
                            }
                            self.put_intent(i, &mut memo);
                        }
                    } else {
                        st.relock_fail += 1;
                    }
                }
                // Read, then try to upgrade to intent (and write).
                7 => {
                    n.lock.lock_read();
                    self.got_read(i, &mut st);
                    if n.lock.tryupgrade() {
                        // Our read hold became the intent hold.
                        n.readers.fetch_sub(1, SeqCst);
                        st.upgrade_ok += 1;
                        self.got_intent(i, &mut st);
                        if rng.chance(2) {
                            n.lock.lock_write();
                            self.write_section(i, &mut rng, &mut st);
                        }
                        self.put_intent(i, &mut memo);
                    } else {
                        st.upgrade_fail += 1;
                        let v = self.check_stable(i);
                        self.put_read(i, v, &mut memo);
                    }
                }
                // Intent, downgraded to read.
                8 => {
                    n.lock.lock_intent();
                    self.got_intent(i, &mut st);
                    n.readers.fetch_add(1, SeqCst);
                    n.intents.fetch_sub(1, SeqCst);
                    n.lock.downgrade();
                    self.check(n.lock.counts()[Read] >= 1, Failure::BadCounts, i);
                    let v = self.check_stable(i);
                    self.dwell(&mut rng);
                    self.put_read(i, v, &mut memo);
                }
                // Blocking lock with a should_sleep that may give up.
                9 | 10 => {
                    let ty = SixLockType::ALL[rng.below(3) as usize];
                    let w = SixWaiter::with_ctx(idx);
                    if ty == Write {
                        n.lock.lock_intent();
                        self.got_intent(i, &mut st);
                    }
                    let mut sleeps = 0u32;
                    let give_up = rng.below(4) as u32;
                    let r = n.lock.lock_with(ty, &w, |_| {
                        sleeps += 1;
                        if sleeps > give_up { Err(()) } else { Ok(()) }
                    });
                    match (r, ty) {
                        (Ok(()), Read) => {
                            let v = self.got_read(i, &mut st);
                            self.put_read(i, v, &mut memo);
                        }
                        (Ok(()), Intent) => {
                            self.got_intent(i, &mut st);
                            self.put_intent(i, &mut memo);
                        }
                        (Ok(()), Write) => {
                            self.write_section(i, &mut rng, &mut st);
                            self.put_intent(i, &mut memo);
                        }
                        (Err(()), _) => {
                            st.aborts += 1;
                            if ty == Write {
                                self.check(n.lock.counts()[Write] == 0, Failure::BadCounts, i);
                                self.put_intent(i, &mut memo);
                            }
                        }
                    }
                }
                // Two locks, in index order.
                11 => {
                    let j = i + 1 + rng.below((NR_LOCKS - i) as u64) as usize;
                    if j >= NR_LOCKS {
                        continue;
                    }
                    let (ti, tj) = (rng.chance(2), rng.chance(2));
                    let vi = if ti {
                        n.lock.lock_intent();
                        self.got_intent(i, &mut st)
                    } else {
                        n.lock.lock_read();
                        self.got_read(i, &mut st)
                    };
                    let m = &self.nodes[j];
                    let vj = if tj {
                        m.lock.lock_intent();
                        self.got_intent(j, &mut st)
                    } else {
                        m.lock.lock_read();
                        self.got_read(j, &mut st)
                    };
                    self.dwell(&mut rng);
                    if tj {
                        self.put_intent(j, &mut memo);
                    } else {
                        self.put_read(j, vj, &mut memo);
                    }
                    if ti {
                        self.put_intent(i, &mut memo);
                    } else {
                        self.put_read(i, vi, &mut memo);
                    }
                }
                // Write over our own read hold, hiding it with readers_add.
                12 => {
                    n.lock.lock_intent();
                    self.got_intent(i, &mut st);
                    n.lock.increment(Read);
                    n.readers.fetch_add(1, SeqCst);
                    if n.lock.trylock_write() {
                        // Our own read hold should have kept write out.
                        self.fail(Failure::WriteWhileRead, i);
                        n.lock.unlock_write();
                        n.readers.fetch_sub(1, SeqCst);
                        n.lock.unlock_read();
                        n.intents.fetch_sub(1, SeqCst);
                        n.lock.unlock_intent();
                        continue;
                    }
                    n.readers.fetch_sub(1, SeqCst);
                    n.lock.readers_add(-1);
                    n.lock.lock_write();
                    self.write_section(i, &mut rng, &mut st);
                    n.lock.readers_add(1);
                    n.readers.fetch_add(1, SeqCst);
                    let v = self.check_stable(i);
                    self.put_read(i, v, &mut memo);
                    self.put_intent(i, &mut memo);
                }
                // Convert back and forth.
                13 => {
                    n.lock.lock_read();
                    self.got_read(i, &mut st);
                    if n.lock.trylock_convert(Read, Intent) {
                        n.readers.fetch_sub(1, SeqCst);
                        st.upgrade_ok += 1;
                        self.got_intent(i, &mut st);
                        n.readers.fetch_add(1, SeqCst);
                        n.intents.fetch_sub(1, SeqCst);
                        self.check(n.lock.trylock_convert(Intent, Read), Failure::BadCounts, i);
                    } else {
                        st.upgrade_fail += 1;
                    }
                    let v = self.check_stable(i);
                    self.put_read(i, v, &mut memo);
                }
                // GC position, and now and then a wakeup of everyone.
                _ => {
                    self.gc_op(idx, &mut gc_k, &mut gc_last, &mut st);
                    if rng.chance(64) {
                        n.lock.wakeup_all();
                    }
                }
            }
        }
        st
    }

    /// Checks the end state once every worker has returned.
    pub(crate) fn check_final(&self) -> Result<(), (Failure, u32)> {
        if let Some(f) = self.failure() {
            return Err(f);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.lock.counts().n != [0, 0, 0]
                || n.readers.load(SeqCst) != 0
                || n.intents.load(SeqCst) != 0
                || n.writers.load(SeqCst) != 0
            {
                return Err((Failure::LeftLocked, i as u32));
            }
            let mut waiters = 0;
            n.lock.for_each_waiter(|_| waiters += 1);
            if waiters != 0 {
                return Err((Failure::LeftWaiters, i as u32));
            }
            let writes = n.writes.load(SeqCst);
            if n.lock.seq() != writes as u32 || self.node_version(i) != writes {
                return Err((Failure::FinalSeq, i as u32));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::time::{Duration, Instant};

    /// Runs `threads` workers for `dur`; returns the summed stats or the
    /// first failure.
    fn run(threads: usize, dur: Duration) -> Result<Stats, (Failure, u32)> {
        let s = Stress::new();
        let seed0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let mut total = Stats::default();
        std::thread::scope(|scope| {
            let hs: std::vec::Vec<_> = (0..threads)
                .map(|t| {
                    let s = &s;
                    scope.spawn(move || s.worker(t, seed0.wrapping_add(t as u64 * 0x1234_5678_9abc), &|| false))
                })
                .collect();
            let end = Instant::now() + dur;
            while Instant::now() < end && !s.stopped() {
                std::thread::sleep(Duration::from_millis(10));
            }
            s.stop();
            for h in hs {
                total.add(&h.join().unwrap());
            }
        });
        s.check_final().map(|()| total)
    }

    fn report(r: Result<Stats, (Failure, u32)>) {
        match r {
            Ok(st) => std::eprintln!("six stress: {st}"),
            Err((f, lock)) => panic!("six stress: {}: lock {lock}: {}", f.ktap_group(), f.describe()),
        }
    }

    /// A short run of the workload, part of the normal test run.
    #[test]
    fn six_stress_short() {
        report(run(4, Duration::from_millis(300)));
    }

    /// The full stress: `BCH_STRESS_SECS` (default 10) seconds,
    /// `BCH_STRESS_THREADS` (default 4) threads.  Run it with
    /// `cargo test --release --lib sync::stress -- --ignored --nocapture`.
    #[test]
    #[ignore = "long: run with --ignored"]
    fn six_stress_long() {
        let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
        let secs = env("BCH_STRESS_SECS", 10);
        let threads = env("BCH_STRESS_THREADS", 4) as usize;
        report(run(threads, Duration::from_secs(secs)));
    }
}
