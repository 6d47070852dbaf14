// SPDX-License-Identifier: GPL-2.0
//! Synchronisation primitives of bcachefs: six locks and seqcounts.
//!
//! - [`SixLock`]: the shared/intent/exclusive lock every btree node carries
//!   (`fs/bcachefs/six.c`), with its sequence number for drop-and-relock,
//!   recursive holds, per-type hold counts and a FIFO wait list with lock
//!   hand-off.
//! - [`SeqCount`]: a sequence-count-published value that readers copy
//!   without taking a lock, retrying if a writer was active; [`GcPos`] and
//!   [`gc_visited`] are GC's position published that way.
//!
//! The algorithms are shared code.  What blocks and wakes a thread, the
//! spinlock around the wait list and lockdep come from a backend:
//! `host.rs` (std: `Mutex`, thread parking; or loom's versions of those
//! under `cfg(loom)` tests) and `kernel.rs` (`spinlock_t`, the hashed
//! `wake_up_var()` wait queues, `lockdep_map`).  See
//! `Documentation/filesystems/bcachefs-rs/locking.rst`.

#[cfg(bch_kernel)]
mod kernel;
#[cfg(bch_kernel)]
use self::kernel as backend;
/// Monotonic time in nanoseconds (`ktime_get()`), for the kernel glue too.
#[cfg(bch_kernel)]
pub(crate) use self::kernel::now_ns;

#[cfg(not(bch_kernel))]
mod host;
#[cfg(not(bch_kernel))]
use self::host as backend;
/// Monotonic time in nanoseconds (`Instant` since first use).
#[cfg(not(bch_kernel))]
pub(crate) use self::host::now_ns;

mod seqcount;
mod six;

#[cfg(any(all(test, not(loom)), bch_kernel))]
pub(crate) mod stress;

#[cfg(bch_kernel)]
pub(crate) mod selftest;

#[cfg(all(test, loom))]
mod loom_tests;

pub use self::seqcount::{
    gc_btree_order, gc_visited, GcPhase, GcPos, SeqCount, SeqData, SeqWriteGuard,
    MAX_SEQ_WORDS,
};
pub use self::six::{SixGuard, SixLock, SixLockClass, SixLockCount, SixLockType, SixWaiter};

/// Atomics: core's, or loom's when model checking.
#[cfg(not(all(test, loom)))]
pub(crate) use core::sync::atomic;
#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic;

/// A cell whose every access happens under a lock the code documents.
///
/// The same `with`/`with_mut` interface as `loom::cell::UnsafeCell`, so the
/// model checker sees (and checks) every access when the tests run under
/// loom; otherwise a plain [`core::cell::UnsafeCell`].
pub(crate) mod cell {
    #[cfg(all(test, loom))]
    pub(crate) use loom::cell::UnsafeCell;

    #[cfg(not(all(test, loom)))]
    #[derive(Debug, Default)]
    pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

    #[cfg(not(all(test, loom)))]
    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(v: T) -> Self {
            UnsafeCell(core::cell::UnsafeCell::new(v))
        }

        /// Calls `f` with a pointer for reading.
        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Calls `f` with a pointer for writing.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

/// The address of the code calling it, for lockdep's "acquired at"
/// reports: a function item nested in the caller, whose symbol names the
/// caller.
macro_rules! this_ip {
    () => {{
        fn ip() {}
        ip as fn() as usize
    }};
}
pub(crate) use this_ip;
