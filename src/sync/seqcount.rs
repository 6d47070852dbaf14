// SPDX-License-Identifier: GPL-2.0
//! Sequence counts: a small value published to lock-free readers.
//!
//! The writer makes the count odd, stores the value, and makes it even
//! again; a reader copies the value between two reads of the count and
//! retries if a writer was active (odd) or finished (changed) meanwhile
//! (`seqcount_t`, `read_seqcount_begin()` / `read_seqcount_retry()`).
//!
//! The value is stored as 64-bit atomic words written with release and
//! read with acquire ordering, so a torn copy is never undefined
//! behaviour, only a retry, and loom can check the protocol.  Writers
//! exclude each other through the count itself, where the C version
//! relies on an outer lock.
//!
//! GC publishes its position ([`GcPos`]) this way: an update asks
//! [`gc_visited`] whether GC has already walked past the key it changes.

use core::cmp::Ordering as CmpOrdering;
use core::fmt;
use core::marker::PhantomData;

use super::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use super::backend;
use crate::format::bpos::{Bpos, POS_MIN};

/// How many 64-bit words a [`SeqData`] value may take.
pub const MAX_SEQ_WORDS: usize = 4;

/// A value a [`SeqCount`] can publish: a plain value that converts to and
/// from at most [`MAX_SEQ_WORDS`] 64-bit words.
///
/// `from_words` must accept any words (a reader may build a value from a
/// torn copy before [`SeqCount::read_retry`] tells it to retry); it only
/// has to give the original value back for words `to_words` produced.
pub trait SeqData: Copy {
    /// How many words the value uses (at most [`MAX_SEQ_WORDS`]).
    const WORDS: usize;
    /// The value as words; words past `WORDS` are ignored.
    fn to_words(&self) -> [u64; MAX_SEQ_WORDS];
    /// The value back from words.
    fn from_words(w: &[u64; MAX_SEQ_WORDS]) -> Self;
}

impl SeqData for u64 {
    const WORDS: usize = 1;
    fn to_words(&self) -> [u64; MAX_SEQ_WORDS] {
        [*self, 0, 0, 0]
    }
    fn from_words(w: &[u64; MAX_SEQ_WORDS]) -> Self {
        w[0]
    }
}

impl SeqData for u32 {
    const WORDS: usize = 1;
    fn to_words(&self) -> [u64; MAX_SEQ_WORDS] {
        [*self as u64, 0, 0, 0]
    }
    fn from_words(w: &[u64; MAX_SEQ_WORDS]) -> Self {
        w[0] as u32
    }
}

impl SeqData for (u64, u64) {
    const WORDS: usize = 2;
    fn to_words(&self) -> [u64; MAX_SEQ_WORDS] {
        [self.0, self.1, 0, 0]
    }
    fn from_words(w: &[u64; MAX_SEQ_WORDS]) -> Self {
        (w[0], w[1])
    }
}

/// A value of type `T` published through a sequence count.
pub struct SeqCount<T: SeqData> {
    seq: AtomicU32,
    words: [AtomicU64; MAX_SEQ_WORDS],
    _t: PhantomData<T>,
}

impl<T: SeqData> SeqCount<T> {
    const WORDS_FIT: () = assert!(T::WORDS <= MAX_SEQ_WORDS, "SeqData::WORDS too large");

    /// A count publishing `v`.
    pub fn new(v: T) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::WORDS_FIT;
        let w = v.to_words();
        SeqCount {
            seq: AtomicU32::new(0),
            words: core::array::from_fn(|i| AtomicU64::new(w[i])),
            _t: PhantomData,
        }
    }

    /// Starts a read: waits until no writer is active and returns the
    /// count to pass to [`read_retry`](SeqCount::read_retry).
    #[inline]
    pub fn read_begin(&self) -> u32 {
        let mut spins = 0;
        loop {
            let s = self.seq.load(Acquire);
            if s & 1 == 0 {
                return s;
            }
            backend::relax(spins);
            spins = spins.saturating_add(1);
        }
    }

    /// The value as it is now, possibly torn by a concurrent writer: only
    /// meaningful if [`read_retry`](SeqCount::read_retry) then says no.
    #[inline]
    pub fn peek(&self) -> T {
        let mut w = [0u64; MAX_SEQ_WORDS];
        for (dst, src) in w.iter_mut().zip(&self.words).take(T::WORDS) {
            *dst = src.load(Acquire);
        }
        T::from_words(&w)
    }

    /// Whether a read started with `start` must be retried because a
    /// writer ran meanwhile.
    #[inline]
    pub fn read_retry(&self, start: u32) -> bool {
        // Ordered after the acquire loads of `peek`.
        self.seq.load(Relaxed) != start
    }

    /// A consistent copy of the value.
    #[inline]
    pub fn read(&self) -> T {
        loop {
            let s = self.read_begin();
            let v = self.peek();
            if !self.read_retry(s) {
                return v;
            }
        }
    }

    /// Starts a write, waiting for any other writer to finish; readers
    /// retry until the returned guard is dropped.
    pub fn write_begin(&self) -> SeqWriteGuard<'_, T> {
        let mut spins = 0;
        loop {
            let s = self.seq.load(Relaxed);
            if s & 1 == 0
                && self
                    .seq
                    .compare_exchange_weak(s, s.wrapping_add(1), Acquire, Relaxed)
                    .is_ok()
            {
                return SeqWriteGuard { sc: self, start: s };
            }
            backend::relax(spins);
            spins = spins.saturating_add(1);
        }
    }

    /// Publishes `v`.
    pub fn write(&self, v: T) {
        self.write_begin().set(v);
    }

    /// Publishes `f(current)` if it returns `Some`; returns whether it did.
    /// Runs inside the write section: `f` should be short.
    pub fn update(&self, f: impl FnOnce(T) -> Option<T>) -> bool {
        let mut g = self.write_begin();
        match f(g.get()) {
            Some(v) => {
                g.set(v);
                true
            }
            None => false,
        }
    }

    /// The raw count: even when no write is in progress, and advanced by
    /// two per write.
    pub fn sequence(&self) -> u32 {
        self.seq.load(Relaxed)
    }
}

impl<T: SeqData + Default> Default for SeqCount<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: SeqData + fmt::Debug> fmt::Debug for SeqCount<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeqCount").field("seq", &self.sequence()).field("value", &self.read()).finish()
    }
}

/// An open write section of a [`SeqCount`]; ends on drop.
pub struct SeqWriteGuard<'a, T: SeqData> {
    sc: &'a SeqCount<T>,
    start: u32,
}

impl<T: SeqData> SeqWriteGuard<'_, T> {
    /// The value as last written.
    pub fn get(&self) -> T {
        // We are the only writer: nothing changes under us.
        let mut w = [0u64; MAX_SEQ_WORDS];
        for (dst, src) in w.iter_mut().zip(&self.sc.words).take(T::WORDS) {
            *dst = src.load(Relaxed);
        }
        T::from_words(&w)
    }

    /// Stores `v`; readers see it once the guard is dropped.
    pub fn set(&mut self, v: T) {
        let w = v.to_words();
        for (dst, src) in self.sc.words.iter().zip(w).take(T::WORDS) {
            // Release: a reader that sees this word also sees the odd count.
            dst.store(src, Release);
        }
    }
}

impl<T: SeqData> Drop for SeqWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.sc.seq.store(self.start.wrapping_add(2), Release);
    }
}

/// `BTREE_ID_alloc`.
const BTREE_ID_ALLOC: u8 = 4;
/// `BTREE_ID_stripes`.
const BTREE_ID_STRIPES: u8 = 6;

/// The phases of a GC run, in the order it goes through them
/// (`enum gc_phase`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum GcPhase {
    /// GC is not running.
    #[default]
    NotRunning = 0,
    /// GC started: marks cleared.
    Start = 1,
    /// Superblock and journal buckets.
    Sb = 2,
    /// Walking the btrees.
    Btree = 3,
}

impl GcPhase {
    fn from_u8(v: u8) -> GcPhase {
        match v {
            1 => GcPhase::Start,
            2 => GcPhase::Sb,
            3 => GcPhase::Btree,
            _ => GcPhase::NotRunning,
        }
    }
}

/// How GC orders btrees: alloc first, then stripes, then by ID
/// (`gc_btree_order`).
pub const fn gc_btree_order(btree: u8) -> i32 {
    match btree {
        BTREE_ID_ALLOC => -2,
        BTREE_ID_STRIPES => -1,
        b => b as i32,
    }
}

/// Where GC is (`struct gc_pos`): a total order over everything GC walks,
/// by phase, btree (in [`gc_btree_order`]), level and position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GcPos {
    /// The phase.
    pub phase: GcPhase,
    /// The btree ID (`enum btree_id`), in the btree phase.
    pub btree: u8,
    /// The level within the btree, 0 for leaves.
    pub level: u16,
    /// The position within the level.
    pub pos: Bpos,
}

impl GcPos {
    /// The start of `phase` (`gc_phase()`).
    pub const fn phase(phase: GcPhase) -> GcPos {
        GcPos { phase, btree: 0, level: 0, pos: POS_MIN }
    }

    /// A position in a btree (`gc_pos_btree()`).
    pub const fn btree(btree: u8, level: u16, pos: Bpos) -> GcPos {
        GcPos { phase: GcPhase::Btree, btree, level, pos }
    }
}

impl Ord for GcPos {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // gc_btree_order() is one-to-one, so this agrees with `==`.
        (self.phase, gc_btree_order(self.btree), self.level, self.pos).cmp(&(
            other.phase,
            gc_btree_order(other.btree),
            other.level,
            other.pos,
        ))
    }
}

impl PartialOrd for GcPos {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl SeqData for GcPos {
    const WORDS: usize = 3;
    fn to_words(&self) -> [u64; MAX_SEQ_WORDS] {
        [
            self.phase as u64
                | (self.btree as u64) << 8
                | (self.level as u64) << 16
                | (self.pos.snapshot as u64) << 32,
            self.pos.inode,
            self.pos.offset,
            0,
        ]
    }
    fn from_words(w: &[u64; MAX_SEQ_WORDS]) -> Self {
        GcPos {
            phase: GcPhase::from_u8(w[0] as u8),
            btree: (w[0] >> 8) as u8,
            level: (w[0] >> 16) as u16,
            pos: Bpos::new(w[1], w[2], (w[0] >> 32) as u32),
        }
    }
}

impl SeqCount<GcPos> {
    /// Moves GC forward to `new` (`gc_pos_set()`).  GC only moves
    /// forward: if `new` is not past the current position nothing is
    /// written and the current position is returned as the error (the C
    /// code has a `BUG_ON()` there).
    pub fn gc_pos_set(&self, new: GcPos) -> Result<(), GcPos> {
        let mut cur = None;
        self.update(|old| {
            if new > old {
                Some(new)
            } else {
                cur = Some(old);
                None
            }
        });
        match cur {
            None => Ok(()),
            Some(old) => Err(old),
        }
    }

    /// Sets the position unconditionally, for example back to
    /// [`GcPhase::NotRunning`] at the end of a run (`__gc_pos_set()`).
    pub fn gc_pos_set_unchecked(&self, new: GcPos) {
        self.write(new);
    }
}

/// Whether GC, whose position `gc` publishes, has already visited `pos`
/// (`gc_visited()`): then an update at `pos` must fix up GC's accounting
/// itself.  Lock-free; retries while GC moves.
pub fn gc_visited(gc: &SeqCount<GcPos>, pos: GcPos) -> bool {
    loop {
        let s = gc.read_begin();
        let ret = pos <= gc.peek();
        if !gc.read_retry(s) {
            return ret;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn gc_pos_order_matches_btree_gc() {
        let p = |b, l, i| GcPos::btree(b, l, Bpos::new(i, 0, 0));
        assert!(GcPos::phase(GcPhase::NotRunning) < GcPos::phase(GcPhase::Start));
        assert!(GcPos::phase(GcPhase::Sb) < p(0, 0, 0));
        // alloc (4) sorts before stripes (6), which sorts before extents (0).
        assert!(p(4, 0, 0) < p(6, 0, 0));
        assert!(p(6, 9, 9) < p(0, 0, 0));
        assert!(p(0, 0, 0) < p(1, 0, 0));
        assert!(p(0, 0, 99) < p(0, 1, 0), "level before position");
        assert!(p(0, 0, 1) < p(0, 0, 2));
        assert!(Bpos::new(1, 0, 5) < Bpos::new(1, 1, 0));
        assert!(Bpos::new(1, 1, 0) < Bpos::new(1, 1, 1));
        assert_eq!(gc_btree_order(4), -2);
        assert_eq!(gc_btree_order(6), -1);
        assert_eq!(gc_btree_order(7), 7);
    }

    #[test]
    fn gc_pos_roundtrips_through_words() {
        let p = GcPos::btree(7, 3, Bpos::new(u64::MAX, 42, u32::MAX - 1));
        assert_eq!(GcPos::from_words(&p.to_words()), p);
        let q = GcPos::phase(GcPhase::Sb);
        assert_eq!(GcPos::from_words(&q.to_words()), q);
    }

    #[test]
    fn gc_visited_and_monotonic_set() {
        let gc = SeqCount::new(GcPos::phase(GcPhase::NotRunning));
        let key = GcPos::btree(0, 0, Bpos::new(10, 0, 0));
        assert!(!gc_visited(&gc, key));
        gc.gc_pos_set(GcPos::phase(GcPhase::Start)).unwrap();
        gc.gc_pos_set(GcPos::btree(0, 0, Bpos::new(5, 0, 0))).unwrap();
        assert!(!gc_visited(&gc, key));
        gc.gc_pos_set(key).unwrap();
        assert!(gc_visited(&gc, key), "GC at the key counts as visited");
        assert_eq!(gc.gc_pos_set(GcPos::phase(GcPhase::Sb)), Err(key), "GC never goes back");
        assert_eq!(gc.read(), key);
        gc.gc_pos_set_unchecked(GcPos::phase(GcPhase::NotRunning));
        assert!(!gc_visited(&gc, key));
        assert_eq!(gc.sequence() % 2, 0);
    }

    #[test]
    fn write_guard_and_update() {
        let c = SeqCount::new((1u64, 1u64));
        {
            let mut g = c.write_begin();
            assert_eq!(g.get(), (1, 1));
            assert_eq!(c.sequence() % 2, 1);
            g.set((2, 2));
        }
        assert_eq!(c.read(), (2, 2));
        assert!(!c.update(|_| None));
        assert!(c.update(|(a, b)| Some((a + 1, b + 1))));
        assert_eq!(c.read(), (3, 3));
        assert_eq!(c.sequence(), 6);
    }

    #[test]
    fn readers_never_see_a_torn_value() {
        let c = Arc::new(SeqCount::new((0u64, !0u64)));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let (c, stop) = (c.clone(), stop.clone());
                thread::spawn(move || {
                    let mut last = 0;
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let (a, b) = c.read();
                        assert_eq!(a, !b, "torn read");
                        assert!(a >= last, "went backwards");
                        last = a;
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for i in 1..=20_000u64 {
            c.write((i, !i));
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(c.read(), (20_000, !20_000));
    }
}
