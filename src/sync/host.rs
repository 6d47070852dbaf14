// SPDX-License-Identifier: GPL-2.0
//! Host backend of `sync`: `std::sync::Mutex` around the wait list, thread
//! parking for sleeping, no lockdep.  Under `cfg(all(test, loom))` the same
//! code runs on loom's `Mutex`, parking and thread locals, so the model
//! checker controls every interleaving.

extern crate std;

use core::ops::{Deref, DerefMut};

use super::atomic::{AtomicBool, Ordering};

#[cfg(all(test, loom))]
use loom::sync::Mutex;
#[cfg(not(all(test, loom)))]
use std::{sync::Mutex, thread};

/// How long a waiter polls before sleeping, in nanoseconds (as six.c);
/// not at all under loom, where every poll is a scheduling point to
/// explore.
#[cfg(not(all(test, loom)))]
pub(crate) const SPIN_NS: u64 = 10_000;
#[cfg(all(test, loom))]
pub(crate) const SPIN_NS: u64 = 0;

/// Per-class lockdep state: nothing on the host.
#[derive(Debug)]
pub(crate) struct ClassKey;

impl ClassKey {
    pub(crate) const fn new() -> Self {
        ClassKey
    }
}

/// A lock's lockdep map: nothing on the host.
#[derive(Debug)]
pub(crate) struct LockDep;

impl LockDep {
    pub(crate) fn new(_name: &'static core::ffi::CStr, _key: &'static ClassKey) -> Self {
        LockDep
    }
    pub(crate) fn untracked() -> Self {
        LockDep
    }
    #[inline(always)]
    pub(crate) fn acquire(&self, _read: bool, _trylock: bool, _ip: usize) {}
    #[inline(always)]
    pub(crate) fn acquire_recursive(&self, _read: bool, _ip: usize) {}
    #[inline(always)]
    pub(crate) fn release(&self, _ip: usize) {}
}

/// The lock around a six lock's wait list.
#[derive(Debug)]
pub(crate) struct WaitLock<T>(Mutex<T>);

#[cfg(not(all(test, loom)))]
type InnerGuard<'a, T> = std::sync::MutexGuard<'a, T>;
#[cfg(all(test, loom))]
type InnerGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

/// Holds a [`WaitLock`]; unlocks on drop.
pub(crate) struct WaitLockGuard<'a, T>(InnerGuard<'a, T>);

impl<T> WaitLock<T> {
    pub(crate) fn new(v: T) -> Self {
        WaitLock(Mutex::new(v))
    }

    #[inline]
    pub(crate) fn lock(&self) -> WaitLockGuard<'_, T> {
        // A panic while the list was held cannot leave it half-updated
        // (every update is a few pointer stores), so poisoning is ignored.
        WaitLockGuard(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<T> Deref for WaitLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for WaitLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// What a waker needs to wake a sleeping waiter: its thread.
#[cfg(not(all(test, loom)))]
#[derive(Debug, Default)]
pub(crate) struct WakeSlot(Option<thread::Thread>);

/// Under loom: a condition variable of the waiter's own.  (loom's
/// `unpark()` would also wake a thread blocked on a mutex, which the real
/// one does not.)
#[cfg(all(test, loom))]
#[derive(Debug, Default)]
pub(crate) struct WakeSlot(Option<loom::sync::Arc<Parker>>);

/// What the waiting thread sleeps on: nothing (std parks the thread), or
/// under loom the condition variable.
#[cfg(not(all(test, loom)))]
pub(crate) struct Parker;

#[cfg(all(test, loom))]
#[derive(Debug, Default)]
pub(crate) struct Parker {
    woken: Mutex<bool>,
    cv: loom::sync::Condvar,
}

#[cfg(all(test, loom))]
impl Parker {
    fn wake(&self) {
        *self.woken.lock().unwrap() = true;
        self.cv.notify_one();
    }
}

impl WakeSlot {
    pub(crate) const fn new() -> Self {
        WakeSlot(None)
    }

    /// Records the current thread as the one to wake, and returns what it
    /// sleeps on.
    #[cfg(not(all(test, loom)))]
    pub(crate) fn arm(&mut self) -> Parker {
        self.0 = Some(thread::current());
        Parker
    }

    #[cfg(all(test, loom))]
    pub(crate) fn arm(&mut self) -> loom::sync::Arc<Parker> {
        let p = loom::sync::Arc::new(Parker::default());
        self.0 = Some(p.clone());
        p
    }

    /// Takes what [`Waker::wake`] needs, before the waiter is told it
    /// has the lock (after which it may return and free the slot).
    pub(crate) fn take(&mut self, _flag: &AtomicBool) -> Waker {
        Waker(self.0.take())
    }

    /// Wakes the waiter without handing it anything (it re-checks and
    /// sleeps again); the caller makes sure it is still waiting.
    pub(crate) fn poke(&self, _flag: &AtomicBool) {
        if let Some(t) = &self.0 {
            #[cfg(not(all(test, loom)))]
            t.unpark();
            #[cfg(all(test, loom))]
            t.wake();
        }
    }
}

/// Wakes one waiter; see [`WakeSlot::take`].
#[cfg(not(all(test, loom)))]
pub(crate) struct Waker(Option<thread::Thread>);
#[cfg(all(test, loom))]
pub(crate) struct Waker(Option<loom::sync::Arc<Parker>>);

impl Waker {
    pub(crate) fn wake(self) {
        if let Some(t) = self.0 {
            #[cfg(not(all(test, loom)))]
            t.unpark();
            #[cfg(all(test, loom))]
            t.wake();
        }
    }
}

/// Sleeps until `flag` is set, calling `before_sleep` before each sleep;
/// an error from it ends the wait.  Wakeups may be spurious; the flag is
/// what counts.
#[cfg(not(all(test, loom)))]
pub(crate) fn wait<E>(
    _parker: &Parker,
    flag: &AtomicBool,
    mut before_sleep: impl FnMut() -> Result<(), E>,
) -> Result<(), E> {
    loop {
        if flag.load(Ordering::Acquire) {
            return Ok(());
        }
        before_sleep()?;
        if flag.load(Ordering::Acquire) {
            return Ok(());
        }
        // An unpark() between the check above and here makes park()
        // return at once: no wakeup is lost.
        thread::park();
    }
}

#[cfg(all(test, loom))]
pub(crate) fn wait<E>(
    parker: &Parker,
    flag: &AtomicBool,
    mut before_sleep: impl FnMut() -> Result<(), E>,
) -> Result<(), E> {
    loop {
        if flag.load(Ordering::Acquire) {
            return Ok(());
        }
        before_sleep()?;
        let mut woken = parker.woken.lock().unwrap();
        while !*woken {
            if flag.load(Ordering::Acquire) {
                return Ok(());
            }
            woken = parker.cv.wait(woken).unwrap();
        }
        *woken = false;
    }
}

/// A number identifying the calling thread while it lives (the address of
/// a thread-local).
#[inline]
pub(crate) fn current_id() -> usize {
    #[cfg(not(all(test, loom)))]
    std::thread_local!(static ID: u8 = const { 0 });
    #[cfg(all(test, loom))]
    loom::thread_local!(static ID: u8 = 0);
    ID.with(|id| id as *const u8 as usize)
}

/// A monotonic clock in nanoseconds, for wait-list timestamps.
#[cfg(not(all(test, loom)))]
pub(crate) fn now_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Under loom: a constant (timestamps then count up from the last waiter).
#[cfg(all(test, loom))]
pub(crate) fn now_ns() -> u64 {
    0
}

/// One step of a busy-wait loop; `spins` counts the steps so far.
#[inline]
pub(crate) fn relax(spins: u32) {
    #[cfg(all(test, loom))]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(all(test, loom)))]
    {
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            // The other side may be a preempted thread: let it run.
            std::thread::yield_now();
        }
    }
}
