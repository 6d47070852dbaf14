// SPDX-License-Identifier: GPL-2.0
//! Time statistics of events with a duration (`fs/bcachefs/time_stats.[ch]`,
//! `mean_and_variance.[ch]`, and `bch2_time_stats_to_text()` /
//! `bch2_pr_time_units()` of `util.c`), and the filesystem's set of them
//! (`c->times[]`, `BCH_TIME_STATS()` of `bcachefs.h`), shown as
//! `/sys/fs/bcachefs/<uuid>/time_stats/<name>`.
//!
//! A [`TimeStats`] records, in nanoseconds: the number of events; the
//! minimum, maximum and total duration; the mean and standard deviation
//! of the durations, since the start and exponentially weighted (weight
//! 2^-8, "recent"); and the same for the time between the ends of two
//! events ("frequency").  Everything is integer arithmetic on `u64`/`i64`
//! (no floating point, no 128-bit division: the sum of squares is kept as
//! two `u64` words and divided by long division), as in C.
//!
//! Differences from C, none visible in the output:
//! - no per-CPU buffering of events: each update takes the stat's own
//!   spinlock (a `std` mutex on the host) for a few dozen instructions;
//! - no quantiles: C only keeps them for the per-device `io_latency_*`
//!   files, never for `c->times[]`, whose files print none;
//! - a reset restores the state of a new stat (C's `memset()` to zero
//!   leaves the minima at 0 until the next mount).
//!
//! Updates must come from process context (never from an interrupt): the
//! kernel lock is a plain `spin_lock()`.

use core::fmt;

/// A time unit of `bch2_pick_time_units()` (`struct time_unit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeUnit {
    /// Its name: `ns`, `us`, `ms`, `s`, `m`, `h`, `d`, `w`, `y`, `eon`.
    pub name: &'static str,
    /// Nanoseconds in one of it.
    pub nsecs: u64,
}

const NSEC_PER_SEC: u64 = 1_000_000_000;

/// `time_units[]` of `time_stats.c`, smallest first.  A year is C's
/// constant (365.25 days, as C writes it).
pub const TIME_UNITS: [TimeUnit; 10] = [
    TimeUnit { name: "ns", nsecs: 1 },
    TimeUnit { name: "us", nsecs: 1_000 },
    TimeUnit { name: "ms", nsecs: 1_000_000 },
    TimeUnit { name: "s", nsecs: NSEC_PER_SEC },
    TimeUnit { name: "m", nsecs: NSEC_PER_SEC * 60 },
    TimeUnit { name: "h", nsecs: NSEC_PER_SEC * 3600 },
    TimeUnit { name: "d", nsecs: NSEC_PER_SEC * 3600 * 24 },
    TimeUnit { name: "w", nsecs: NSEC_PER_SEC * 3600 * 24 * 7 },
    TimeUnit { name: "y", nsecs: NSEC_PER_SEC * ((3600 * 24 * 7 * 365) + (3600 * (24 / 4) * 7)) },
    TimeUnit { name: "eon", nsecs: u64::MAX },
];

/// `bch2_pick_time_units()`: the largest unit of which `ns` holds at
/// least two (so 1999 ns is printed in ns, 2000 ns as 2 us).  `u64::MAX`
/// (the minimum of a stat without events) is 1 eon, as in C.
pub fn pick_time_units(ns: u64) -> &'static TimeUnit {
    let mut i = 0;
    while i + 1 < TIME_UNITS.len() && ns >= TIME_UNITS[i + 1].nsecs.wrapping_shl(1) {
        i += 1;
    }
    &TIME_UNITS[i]
}

/// `bch2_pr_time_units()`: `ns` nanoseconds as `"<n> <unit>"`, rounded
/// down in the unit [`pick_time_units`] chooses.
#[derive(Clone, Copy, Debug)]
pub struct PrTimeUnits(pub u64);

impl fmt::Display for PrTimeUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = pick_time_units(self.0);
        write!(f, "{} {}", self.0 / u.nsecs, u.name)
    }
}

/// `int_sqrt64()`: the integer square root of `x`, rounded down.
pub fn int_sqrt64(mut x: u64) -> u32 {
    if x <= 1 {
        return x as u32;
    }
    let mut m: u64 = 1 << ((63 - x.leading_zeros()) & !1);
    let mut y: u64 = 0;
    while m != 0 {
        let b = y + m;
        y >>= 1;
        if x >= b {
            x -= b;
            y += m;
        }
        m >>= 2;
    }
    y as u32
}

/// `(hi, lo)` of `v * v`, with 64-bit multiplies only (C's `u128_square()`
/// without `__int128`).
fn square(v: u64) -> (u64, u64) {
    let (h, l) = (v >> 32, v & 0xffff_ffff);
    let (hh, hl, ll) = (h * h, h * l, l * l);
    // v^2 = hh << 64 + 2 * hl << 32 + ll
    let mut lo = ll;
    let mut hi = hh;
    for _ in 0..2 {
        let add = hl << 32;
        let (s, c) = lo.overflowing_add(add);
        lo = s;
        hi = hi.wrapping_add(hl >> 32).wrapping_add(u64::from(c));
    }
    (hi, lo)
}

/// `(hi, lo) / d`, rounded down (`u128_div()`), by binary long division
/// with 64-bit operations only; `d` must not be 0.
fn div128(hi: u64, lo: u64, d: u64) -> (u64, u64) {
    let q_hi = hi / d;
    let mut r = hi % d;
    let mut q_lo = 0u64;
    for i in (0..64).rev() {
        let carry = r >> 63;
        r = (r << 1) | ((lo >> i) & 1);
        q_lo <<= 1;
        if carry != 0 || r >= d {
            r = r.wrapping_sub(d);
            q_lo |= 1;
        }
    }
    (q_hi, q_lo)
}

/// `struct mean_and_variance`: count, sum and sum of squares, for the
/// plain mean and standard deviation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeanAndVariance {
    /// Samples.
    pub n: u64,
    /// Their sum.
    pub sum: u64,
    /// The sum of their squares, high and low words.
    pub sum_squares: (u64, u64),
}

impl MeanAndVariance {
    /// `mean_and_variance_update()`.
    pub fn update(&mut self, v: u64) {
        self.n += 1;
        self.sum = self.sum.wrapping_add(v);
        let (h, l) = square(v);
        let (lo, c) = self.sum_squares.1.overflowing_add(l);
        self.sum_squares = (self.sum_squares.0.wrapping_add(h).wrapping_add(u64::from(c)), lo);
    }

    /// `mean_and_variance_get_mean()`: 0 without samples.
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.n).unwrap_or(0)
    }

    /// `mean_and_variance_get_variance()`: E(x^2) - E(x)^2, the low 64
    /// bits as C keeps them; 0 without samples.
    pub fn variance(&self) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let (_, s2) = div128(self.sum_squares.0, self.sum_squares.1, self.n);
        let (_, m2) = square(self.mean());
        s2.wrapping_sub(m2)
    }

    /// `mean_and_variance_get_stddev()`.
    pub fn stddev(&self) -> u32 {
        int_sqrt64(self.variance())
    }
}

/// `TIME_STATS_MV_WEIGHT`: the weighted statistics move 1/2^8 of the way
/// to each new sample.
pub const TIME_STATS_MV_WEIGHT: u8 = 8;

/// `struct mean_and_variance_weighted`: an exponentially weighted mean
/// and variance, kept shifted left by the weight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeanAndVarianceWeighted {
    /// The mean, shifted left by the weight.
    pub mean: i64,
    /// The variance, shifted left by the weight.
    pub variance: u64,
}

/// `fast_divpow2()`: `n / 2^d` rounded toward zero.
fn fast_divpow2(n: i64, d: u8) -> i64 {
    n.wrapping_add(if n < 0 { (1i64 << d) - 1 } else { 0 }) >> d
}

impl MeanAndVarianceWeighted {
    /// `mean_and_variance_weighted_update()`: the first sample
    /// (`!initted`) sets the mean and clears the variance.
    pub fn update(&mut self, x: i64, initted: bool, w: u8) {
        let var_w0 = self.variance;
        let x_w = x.wrapping_shl(u32::from(w));
        let diff_w = x_w.wrapping_sub(self.mean);
        let diff = fast_divpow2(diff_w, w);
        let u_w1 = self.mean.wrapping_add(diff);
        if !initted {
            self.mean = x_w;
            self.variance = 0;
        } else {
            self.mean = u_w1;
            let t = (diff_w.wrapping_mul(x_w.wrapping_sub(u_w1)) >> w) as u64;
            self.variance = (var_w0 << w).wrapping_sub(var_w0).wrapping_add(t) >> w;
        }
    }

    /// `mean_and_variance_weighted_get_mean()`.
    pub fn mean(&self, w: u8) -> i64 {
        fast_divpow2(self.mean, w)
    }

    /// `mean_and_variance_weighted_get_stddev()`.
    pub fn stddev(&self, w: u8) -> u32 {
        int_sqrt64(self.variance >> w)
    }
}

/// The numbers of a [`TimeStats`] (the fields of `struct bch2_time_stats`
/// from `min_duration` on), all in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeStatsData {
    /// Shortest duration; `u64::MAX` before the first event.
    pub min_duration: u64,
    /// Longest duration.
    pub max_duration: u64,
    /// Sum of the durations.
    pub total_duration: u64,
    /// Longest time between two events.
    pub max_freq: u64,
    /// Shortest time between two events; `u64::MAX` before the second.
    pub min_freq: u64,
    /// End of the last event; 0 before the first.
    pub last_event: u64,
    /// Start of the state [`TimeStats::track_event_change`] tracks; 0
    /// when not in it.
    pub last_event_start: u64,
    /// Durations (their count is the number of events).
    pub duration_stats: MeanAndVariance,
    /// Times between events.
    pub freq_stats: MeanAndVariance,
    /// Durations, weighted toward the recent.
    pub duration_stats_weighted: MeanAndVarianceWeighted,
    /// Times between events, weighted toward the recent.
    pub freq_stats_weighted: MeanAndVarianceWeighted,
}

impl Default for TimeStatsData {
    /// `bch2_time_stats_init()`.
    fn default() -> Self {
        TimeStatsData {
            min_duration: u64::MAX,
            max_duration: 0,
            total_duration: 0,
            max_freq: 0,
            min_freq: u64::MAX,
            last_event: 0,
            last_event_start: 0,
            duration_stats: MeanAndVariance::default(),
            freq_stats: MeanAndVariance::default(),
            duration_stats_weighted: MeanAndVarianceWeighted::default(),
            freq_stats_weighted: MeanAndVarianceWeighted::default(),
        }
    }
}

/// `time_after64(a, b)`: `a` is later than `b`, on a wrapping clock.
fn time_after64(a: u64, b: u64) -> bool {
    (b.wrapping_sub(a) as i64) < 0
}

impl TimeStatsData {
    /// `time_stats_update_one()`: one event from `start` to `end` (ns on
    /// one monotonic clock).  An event that ends before it starts counts
    /// for the frequency only, as in C.
    pub fn update(&mut self, start: u64, end: u64) {
        let initted = self.last_event != 0;
        let w = TIME_STATS_MV_WEIGHT;
        if time_after64(end, start) {
            let d = end.wrapping_sub(start);
            self.duration_stats.update(d);
            self.duration_stats_weighted.update(d as i64, initted, w);
            self.max_duration = self.max_duration.max(d);
            self.min_duration = self.min_duration.min(d);
            self.total_duration = self.total_duration.wrapping_add(d);
        }
        if self.last_event != 0 && time_after64(end, self.last_event) {
            let f = end.wrapping_sub(self.last_event);
            self.freq_stats.update(f);
            self.freq_stats_weighted.update(f as i64, initted, w);
            self.max_freq = self.max_freq.max(f);
            self.min_freq = self.min_freq.min(f);
        }
        // 0 means "no event yet": a clock reading 0 counts as 1.
        self.last_event = end.max(1);
    }

    /// `bch2_time_stats_to_text()`: the text of a `time_stats/` file,
    /// laid out as C's printbuf lays it out (tab stops at columns 20, 32,
    /// 34 and 46, numbers right-aligned before their unit).  Mean and
    /// standard deviation print 0 until there are two events, as in C.
    pub fn to_text(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let w = TIME_STATS_MV_WEIGHT;
        let (mut f_mean, mut d_mean, mut f_stddev, mut d_stddev) = (0u64, 0u64, 0u64, 0u64);
        if self.freq_stats.n != 0 {
            f_mean = self.freq_stats.mean();
            f_stddev = u64::from(self.freq_stats.stddev());
            d_mean = self.duration_stats.mean();
            d_stddev = u64::from(self.duration_stats.stddev());
        }
        let mut p = Printbuf::new(out);
        const TABSTOP_SIZE: usize = 12;
        p.tabstop_push(TABSTOP_SIZE);
        p.prt(format_args!("count:\t{}\n", self.duration_stats.n))?;
        p.tabstop_pop();
        p.tabstops_reset();

        p.tabstop_push(20);
        p.tabstop_push(TABSTOP_SIZE + 2);
        p.tabstop_push(0);
        p.tabstop_push(TABSTOP_SIZE + 2);
        p.prt(format_args!("\tsince mount\r\trecent\r\n"))?;

        p.tabstops_reset();
        p.tabstop_push(20);
        p.tabstop_push(TABSTOP_SIZE);
        p.tabstop_push(2);
        p.tabstop_push(TABSTOP_SIZE);

        let name_and_units = |p: &mut Printbuf<'_>, name: &str, ns: u64| -> fmt::Result {
            p.prt(format_args!("{name}\t"))?;
            p.time_units_aligned(ns)?;
            p.newline()
        };
        let mean_stddev = |p: &mut Printbuf<'_>, mean: u64, stddev: u64, wt: &MeanAndVarianceWeighted| -> fmt::Result {
            p.prt(format_args!("mean:\t"))?;
            p.time_units_aligned(mean)?;
            p.tab()?;
            p.time_units_aligned(wt.mean(w) as u64)?;
            p.newline()?;
            p.prt(format_args!("stddev:\t"))?;
            p.time_units_aligned(stddev)?;
            p.tab()?;
            p.time_units_aligned(u64::from(wt.stddev(w)))?;
            p.indent_sub(2);
            p.newline()
        };

        p.prt(format_args!("duration of events\n"))?;
        p.indent_add(2);
        name_and_units(&mut p, "min:", self.min_duration)?;
        name_and_units(&mut p, "max:", self.max_duration)?;
        name_and_units(&mut p, "total:", self.total_duration)?;
        mean_stddev(&mut p, d_mean, d_stddev, &self.duration_stats_weighted)?;

        p.prt(format_args!("time between events\n"))?;
        p.indent_add(2);
        name_and_units(&mut p, "min:", self.min_freq)?;
        name_and_units(&mut p, "max:", self.max_freq)?;
        mean_stddev(&mut p, f_mean, f_stddev, &self.freq_stats_weighted)?;
        p.finish()
    }
}

/// The longest line [`Printbuf`] lays out; longer lines are cut.
const LINE_MAX: usize = 128;

/// The part of C's printbuf (`printbuf.c`) that `bch2_time_stats_to_text()`
/// relies on: an indent, tab stops, and the control characters `\t`
/// (pad to the next tab stop, which C's formatted output leaves one column
/// short), `\r` (right-align the text since the last field to the next
/// tab stop) and `\n`.  Lines are laid out in a small buffer and written
/// to `out` whole.
struct Printbuf<'a> {
    out: &'a mut dyn fmt::Write,
    line: [u8; LINE_MAX],
    len: usize,
    indent: usize,
    tabstops: [usize; 4],
    nr_tabstops: usize,
    cur_tabstop: usize,
    last_field: usize,
}

impl<'a> Printbuf<'a> {
    fn new(out: &'a mut dyn fmt::Write) -> Self {
        Printbuf { out, line: [0; LINE_MAX], len: 0, indent: 0, tabstops: [0; 4], nr_tabstops: 0, cur_tabstop: 0, last_field: 0 }
    }

    fn cur_tabstop(&self) -> usize {
        if self.cur_tabstop < self.nr_tabstops {
            self.tabstops[self.cur_tabstop]
        } else {
            0
        }
    }

    fn tabstop_push(&mut self, spaces: usize) {
        if self.nr_tabstops < self.tabstops.len() {
            let prev = if self.nr_tabstops > 0 { self.tabstops[self.nr_tabstops - 1] } else { 0 };
            self.tabstops[self.nr_tabstops] = prev + spaces;
            self.nr_tabstops += 1;
        }
    }

    fn tabstop_pop(&mut self) {
        self.nr_tabstops = self.nr_tabstops.saturating_sub(1);
    }

    fn tabstops_reset(&mut self) {
        self.nr_tabstops = 0;
    }

    fn push(&mut self, c: u8) {
        if self.len < LINE_MAX {
            self.line[self.len] = c;
            self.len += 1;
        }
    }

    fn spaces(&mut self, n: usize) {
        for _ in 0..n {
            self.push(b' ');
        }
    }

    /// Inserts `n` spaces at `at` of the line, moving what follows.
    fn insert_spaces(&mut self, at: usize, n: usize) {
        let at = at.min(self.len);
        let keep = (self.len - at).min(LINE_MAX.saturating_sub(at + n));
        self.line.copy_within(at..at + keep, (at + n).min(LINE_MAX));
        let fill = n.min(LINE_MAX - at);
        self.line[at..at + fill].fill(b' ');
        self.len = (at + n + keep).min(LINE_MAX);
    }

    /// `prt_newline()`: ends the line; the next starts with the indent.
    fn newline(&mut self) -> fmt::Result {
        let line = core::str::from_utf8(&self.line[..self.len]).unwrap_or("");
        self.out.write_str(line)?;
        self.out.write_char('\n')?;
        self.len = 0;
        let indent = self.indent;
        self.spaces(indent);
        self.last_field = self.len;
        self.cur_tabstop = 0;
        Ok(())
    }

    /// `prt_tab()`.
    fn tab(&mut self) -> fmt::Result {
        let t = self.cur_tabstop();
        if t == 0 {
            return Ok(());
        }
        self.spaces(t.saturating_sub(self.len));
        self.last_field = self.len;
        self.cur_tabstop += 1;
        Ok(())
    }

    /// `printbuf_indent_add()`.
    fn indent_add(&mut self, n: usize) {
        self.indent += n;
        self.spaces(n);
    }

    /// `printbuf_indent_sub()`: an empty indented line loses the indent.
    fn indent_sub(&mut self, n: usize) {
        let n = n.min(self.indent);
        if self.len == self.indent {
            self.len -= n;
        }
        self.indent -= n;
    }

    /// `prt_printf()` and its handling of `\t`, `\r` and `\n`.
    fn prt(&mut self, args: fmt::Arguments<'_>) -> fmt::Result {
        struct Sink<'b, 'c>(&'b mut Printbuf<'c>, fmt::Result);
        impl fmt::Write for Sink<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for &c in s.as_bytes() {
                    if self.1.is_ok() {
                        self.1 = self.0.byte(c);
                    }
                }
                Ok(())
            }
        }
        let mut s = Sink(self, Ok(()));
        fmt::write(&mut s, args)?;
        s.1
    }

    fn byte(&mut self, c: u8) -> fmt::Result {
        let t = self.cur_tabstop();
        match c {
            b'\n' => return self.newline(),
            b'\r' if t != 0 => {
                let pad = t.saturating_sub(self.len);
                if pad > 0 {
                    self.insert_spaces(self.last_field, pad);
                }
                self.last_field = self.len;
                self.cur_tabstop += 1;
            }
            b'\t' if t != 0 => {
                // C pads to one column before the tab stop here.
                self.spaces(t.saturating_sub(self.len + 1));
                self.last_field = self.len;
                self.cur_tabstop += 1;
            }
            c => self.push(c),
        }
        Ok(())
    }

    /// `bch2_pr_time_units_aligned()`: `"<n> \r<unit>"`.
    fn time_units_aligned(&mut self, ns: u64) -> fmt::Result {
        let u = pick_time_units(ns);
        self.prt(format_args!("{} \r{}", ns / u.nsecs, u.name))
    }

    /// Writes what is left of the last line.
    fn finish(&mut self) -> fmt::Result {
        if self.len > 0 {
            let line = core::str::from_utf8(&self.line[..self.len]).unwrap_or("");
            self.out.write_str(line)?;
        }
        Ok(())
    }
}

#[cfg(bch_kernel)]
mod lock {
    use crate::sync::cell::UnsafeCell;
    use crate::bindings;

    /// A `spinlock_t` around the stat, with its own lockdep class.
    ///
    /// # Invariants
    ///
    /// `lock` was initialised by `__spin_lock_init()`; `data` is only
    /// accessed with it held.
    pub(super) struct Lock<T> {
        lock: core::cell::UnsafeCell<bindings::spinlock_t>,
        data: UnsafeCell<T>,
    }

    // SAFETY: the spinlock serialises all access to `data`.
    unsafe impl<T: Send> Sync for Lock<T> {}
    // SAFETY: an unheld spinlock is plain data.
    unsafe impl<T: Send> Send for Lock<T> {}

    struct Key(core::cell::UnsafeCell<bindings::lock_class_key>);
    // SAFETY: lockdep does its own locking; we only hand out the address.
    unsafe impl Sync for Key {}
    // SAFETY: all zeroes is a static `lock_class_key`'s state.
    static KEY: Key = Key(core::cell::UnsafeCell::new(unsafe { core::mem::zeroed() }));

    impl<T> Lock<T> {
        pub(super) fn new(v: T) -> Self {
            let l = Lock {
                // SAFETY: all zeroes is what `__spin_lock_init()` initialises.
                lock: core::cell::UnsafeCell::new(unsafe { core::mem::zeroed() }),
                data: UnsafeCell::new(v),
            };
            // SAFETY: static name and key; an unlocked `spinlock_t` holds
            // no pointer to itself, so `l` may move until locked through
            // `&self`.
            unsafe { bindings::__spin_lock_init(l.lock.get(), c"bch2_time_stats->lock".as_ptr().cast(), KEY.0.get()) };
            l
        }

        #[inline]
        pub(super) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            // SAFETY: initialised (invariant); unlocked below.
            unsafe { bindings::spin_lock(self.lock.get()) };
            // SAFETY: the lock is held: this is the only access.
            let r = self.data.with_mut(|p| f(unsafe { &mut *p }));
            // SAFETY: taken above.
            unsafe { bindings::spin_unlock(self.lock.get()) };
            r
        }
    }
}

#[cfg(not(bch_kernel))]
mod lock {
    extern crate std;

    /// A `std` mutex around the stat.
    pub(super) struct Lock<T>(std::sync::Mutex<T>);

    impl<T> Lock<T> {
        pub(super) fn new(v: T) -> Self {
            Lock(std::sync::Mutex::new(v))
        }

        #[inline]
        pub(super) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut g)
        }
    }
}

/// One time statistic (`struct bch2_time_stats`): events recorded with
/// [`update`](Self::update) (or [`update_from`](Self::update_from)) from
/// any thread in process context, printed by [`to_text`](Self::to_text).
pub struct TimeStats(lock::Lock<TimeStatsData>);

impl Default for TimeStats {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TimeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeStats({} events)", self.data().duration_stats.n)
    }
}

impl TimeStats {
    /// A stat without events (`bch2_time_stats_init()`).
    pub fn new() -> Self {
        TimeStats(lock::Lock::new(TimeStatsData::default()))
    }

    /// `__bch2_time_stats_update()`: one event from `start` to `end`, ns
    /// of [`crate::sync::now_ns`].
    pub fn update(&self, start: u64, end: u64) {
        self.0.with(|d| d.update(start, end));
    }

    /// `bch2_time_stats_update()`: one event from `start` (ns of
    /// [`crate::sync::now_ns`]) to now.
    pub fn update_from(&self, start: u64) {
        self.update(start, crate::sync::now_ns());
    }

    /// `track_event_change()`: a state (the journal low on space, say)
    /// became `v`; entering it starts an event that leaving it ends.
    /// Returns whether the state was just entered.
    pub fn track_event_change(&self, v: bool) -> bool {
        self.0.with(|d| {
            if v == (d.last_event_start != 0) {
                return false;
            }
            let now = crate::sync::now_ns();
            if v {
                d.last_event_start = now.max(1);
                true
            } else {
                let start = d.last_event_start;
                d.update(start, now);
                d.last_event_start = 0;
                false
            }
        })
    }

    /// A copy of the numbers.
    pub fn data(&self) -> TimeStatsData {
        self.0.with(|d| *d)
    }

    /// The number of events recorded.
    pub fn count(&self) -> u64 {
        self.0.with(|d| d.duration_stats.n)
    }

    /// `bch2_time_stats_reset()`: back to no events.
    pub fn reset(&self) {
        self.0.with(|d| *d = TimeStatsData::default());
    }

    /// `bch2_time_stats_to_text()`: see [`TimeStatsData::to_text`].
    pub fn to_text(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        self.data().to_text(out)
    }
}

macro_rules! time_stat_ids {
    ($($name:ident),* $(,)?) => {
        /// `enum bch_time_stats`: C's `BCH_TIME_STATS()`, in C's order
        /// and with C's names.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum TimeStatId {
            $(
                #[doc = concat!("`BCH_TIME_", stringify!($name), "`.")]
                $name,
            )*
        }

        impl TimeStatId {
            /// Every id, in C's order.
            pub const ALL: &'static [TimeStatId] = &[$(TimeStatId::$name),*];

            /// The name of its `time_stats/` file.
            pub fn name(self) -> &'static str {
                match self {
                    $(TimeStatId::$name => stringify!($name),)*
                }
            }
        }
    };
}

time_stat_ids!(
    btree_node_mem_alloc,
    btree_node_split,
    btree_node_compact,
    btree_node_merge,
    btree_node_sort,
    btree_node_read,
    btree_node_read_done,
    btree_interior_update_foreground,
    btree_interior_update_total,
    btree_gc,
    data_write,
    data_read,
    data_promote,
    journal_flush_write,
    journal_noflush_write,
    journal_flush_seq,
    blocked_journal_low_on_space,
    blocked_journal_low_on_pin,
    blocked_journal_max_in_flight,
    blocked_key_cache_flush,
    blocked_allocate,
    blocked_allocate_open_bucket,
    blocked_write_buffer_full,
    nocow_lock_contended,
);

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    #[test]
    fn units() {
        let s = |ns| std::format!("{}", PrTimeUnits(ns));
        assert_eq!(s(0), "0 ns");
        assert_eq!(s(1999), "1999 ns");
        assert_eq!(s(2000), "2 us");
        assert_eq!(s(1_999_999), "1999 us");
        assert_eq!(s(2_000_000), "2 ms");
        assert_eq!(s(5 * NSEC_PER_SEC), "5 s");
        assert_eq!(s(120 * NSEC_PER_SEC), "2 m");
        assert_eq!(s(u64::MAX), "1 eon");
    }

    #[test]
    fn sqrt_and_division() {
        for x in [0u64, 1, 2, 3, 4, 15, 16, 17, 1 << 40, u64::MAX, 999_999_999_999] {
            let r = u64::from(int_sqrt64(x));
            assert!(r * r <= x && (r + 1).checked_mul(r + 1).is_none_or(|s| s > x), "{x}");
        }
        for v in [0u64, 1, 0xffff_ffff, 0x1_0000_0000, u64::MAX, 123_456_789_012] {
            let (h, l) = square(v);
            let want = u128::from(v) * u128::from(v);
            assert_eq!(((u128::from(h)) << 64) | u128::from(l), want);
            for d in [1u64, 3, 1000, u64::MAX] {
                let (qh, ql) = div128(h, l, d);
                assert_eq!((u128::from(qh) << 64) | u128::from(ql), want / u128::from(d));
            }
        }
    }

    #[test]
    fn counts_mean_stddev() {
        let mut d = TimeStatsData::default();
        // Durations 1000, 2000, 3000 ns ending 10 us apart.
        for (i, dur) in [1000u64, 2000, 3000].iter().enumerate() {
            let end = 100_000 + 10_000 * i as u64;
            d.update(end - dur, end);
        }
        assert_eq!(d.duration_stats.n, 3);
        assert_eq!(d.min_duration, 1000);
        assert_eq!(d.max_duration, 3000);
        assert_eq!(d.total_duration, 6000);
        assert_eq!(d.duration_stats.mean(), 2000);
        // Population variance of 1000, 2000, 3000: 666666.
        assert_eq!(d.duration_stats.stddev(), 816);
        assert_eq!(d.freq_stats.n, 2);
        assert_eq!(d.min_freq, 10_000);
        assert_eq!(d.freq_stats.mean(), 10_000);
        assert_eq!(d.freq_stats.stddev(), 0);
        // The weighted mean starts at the first sample and moves 1/256.
        assert_eq!(d.duration_stats_weighted.mean(TIME_STATS_MV_WEIGHT), 1011);
        assert_eq!(d.duration_stats_weighted.stddev(TIME_STATS_MV_WEIGHT), 139);
        // An event ending before it starts only counts for the frequency.
        d.update(200_000, 150_000);
        assert_eq!(d.duration_stats.n, 3);
        assert_eq!(d.freq_stats.n, 3);
    }

    #[test]
    fn text_layout() {
        let mut d = TimeStatsData::default();
        let mut s = String::new();
        d.to_text(&mut s).unwrap();
        let want_empty = "\
count:     0
                       since mount        recent
duration of events
  min:                        1 eon
  max:                        0 ns
  total:                      0 ns
  mean:                       0 ns          0 ns
  stddev:                     0 ns          0 ns
time between events
  min:                        1 eon
  max:                        0 ns
  mean:                       0 ns          0 ns
  stddev:                     0 ns          0 ns
";
        assert_eq!(s, want_empty);
        for (i, dur) in [1000u64, 2000, 3000].iter().enumerate() {
            let end = 100_000 + 10_000 * i as u64;
            d.update(end - dur, end);
        }
        s.clear();
        d.to_text(&mut s).unwrap();
        // The weighted time between events starts from 0, not from the
        // first sample, as in C (its `initted` is that of the durations).
        let want = "\
count:     3
                       since mount        recent
duration of events
  min:                     1000 ns
  max:                        3 us
  total:                      6 us
  mean:                       2 us       1011 ns
  stddev:                   816 ns        139 ns
time between events
  min:                       10 us
  max:                       10 us
  mean:                      10 us         77 ns
  stddev:                     0 ns        879 ns
";
        assert_eq!(s, want);
        let t = TimeStats::new();
        t.update(5, 10);
        assert_eq!(t.count(), 1);
        t.reset();
        assert_eq!(t.data(), TimeStatsData::default());
        assert_eq!(TimeStatId::ALL.len(), 24);
        assert_eq!(TimeStatId::journal_flush_seq.name(), "journal_flush_seq");
    }
}
