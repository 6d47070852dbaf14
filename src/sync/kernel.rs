// SPDX-License-Identifier: GPL-2.0
//! Kernel backend of `sync`: a `spinlock_t` around the wait list, the
//! kernel's hashed variable wait queues (`wait_var_event()` /
//! `wake_up_var()`) for sleeping, and a `lockdep_map` per lock with a
//! static `lock_class_key` per [`SixLockClass`](super::SixLockClass), so
//! lockdep tracks six locks the way it tracks the C ones.

use core::cell::UnsafeCell;
use core::ffi::CStr;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::ptr;
use core::sync::atomic::{fence, AtomicBool, Ordering};

use kernel::ffi::{c_int, c_ulong, c_void};

use crate::bindings;

/// How long a waiter polls before sleeping, in nanoseconds (as six.c).
pub(crate) const SPIN_NS: u64 = 10_000;

/// A lockdep class key (`struct lock_class_key`), to be placed in a
/// `static`: lockdep only accepts keys in static storage.
pub(crate) struct ClassKey(UnsafeCell<bindings::lock_class_key>);

// SAFETY: lockdep does its own locking for the key; we only hand out its
// address.
unsafe impl Sync for ClassKey {}

impl ClassKey {
    pub(crate) const fn new() -> Self {
        // SAFETY: `lock_class_key` is plain data for which all zeroes is
        // the state of a C `static struct lock_class_key` (in .bss).
        ClassKey(UnsafeCell::new(unsafe { core::mem::zeroed() }))
    }

    fn as_ptr(&self) -> *mut bindings::lock_class_key {
        self.0.get()
    }
}

/// A lock's lockdep map (`struct lockdep_map`), as six.c keeps one.
///
/// # Invariants
///
/// With `CONFIG_DEBUG_LOCK_ALLOC`, the map was initialised by
/// `lockdep_init_map_type()` with a static key.  The map holds no pointer
/// to itself, so moving it is fine while it is not held; lockdep records
/// held maps by address, so a lock must not move while held.
pub(crate) struct LockDep {
    /// `None`: not tracked (the class is `new_untracked`).
    #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
    map: Option<UnsafeCell<bindings::lockdep_map>>,
}

// SAFETY: lockdep serialises its own accesses to the map.
unsafe impl Sync for LockDep {}
// SAFETY: the map is plain data tied to no thread.
unsafe impl Send for LockDep {}

impl LockDep {
    pub(crate) fn new(name: &'static CStr, key: &'static ClassKey) -> Self {
        #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
        {
            // SAFETY: an all-zero `lockdep_map` is what
            // `lockdep_init_map_type()` expects to initialise.
            let d = LockDep { map: Some(UnsafeCell::new(unsafe { core::mem::zeroed() })) };
            let Some(map) = &d.map else { return d };
            // SAFETY: `name` and `key` are static, as lockdep requires; the
            // wait types 0 (`LD_WAIT_INV`) and lock type 0
            // (`LD_LOCK_NORMAL`) are what `lockdep_init_map()` passes.
            unsafe {
                bindings::lockdep_init_map_type(
                    map.get(),
                    name.as_ptr().cast(),
                    key.as_ptr(),
                    0,
                    0,
                    0,
                    0,
                )
            };
            // INVARIANT: initialised just above with a static key.
            d
        }
        #[cfg(not(CONFIG_DEBUG_LOCK_ALLOC))]
        {
            let _ = (name, key);
            LockDep {}
        }
    }

    /// A map lockdep never sees: acquires and releases do nothing.
    pub(crate) fn untracked() -> Self {
        LockDep {
            #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
            map: None,
        }
    }

    /// Tells lockdep the current task takes (or tries to take) the lock:
    /// shared for read, exclusive for intent, as in six.c.
    #[inline]
    pub(crate) fn acquire(&self, read: bool, trylock: bool, ip: usize) {
        #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
        if let Some(map) = &self.map {
            // SAFETY: the map is initialised (type invariant).
            unsafe {
                bindings::lock_acquire(map.get(), 0, trylock as c_int, read as c_int, 1, ptr::null_mut(), ip as c_ulong)
            };
        }
        #[cfg(not(CONFIG_DEBUG_LOCK_ALLOC))]
        let _ = (read, trylock, ip);
    }

    /// An extra hold of a lock the task already holds (`increment`):
    /// tracked, so that releases balance, but not checked.  six.c
    /// acquires it checked, which lockdep reports as recursive locking
    /// unless the class is not tracked at all (bcachefs's btree node
    /// locks are not); its dependencies are those of the first hold,
    /// which stays on the task's stack below it.
    #[inline]
    pub(crate) fn acquire_recursive(&self, read: bool, ip: usize) {
        #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
        if let Some(map) = &self.map {
            // SAFETY: the map is initialised (type invariant).
            unsafe { bindings::lock_acquire(map.get(), 0, 0, read as c_int, 0, ptr::null_mut(), ip as c_ulong) };
        }
        #[cfg(not(CONFIG_DEBUG_LOCK_ALLOC))]
        let _ = (read, ip);
    }

    /// Tells lockdep one hold is released.
    #[inline]
    pub(crate) fn release(&self, ip: usize) {
        #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
        if let Some(map) = &self.map {
            // SAFETY: the map is initialised (type invariant).
            unsafe { bindings::lock_release(map.get(), ip as c_ulong) };
        }
        #[cfg(not(CONFIG_DEBUG_LOCK_ALLOC))]
        let _ = ip;
    }
}

/// The one lockdep class of every six lock's wait-list spinlock.
static WAIT_LOCK_KEY: ClassKey = ClassKey::new();

/// A `spinlock_t` and the data it protects: the wait list of a six lock.
///
/// # Invariants
///
/// `lock` was initialised by `__spin_lock_init()`, and `data` is only
/// accessed with `lock` held.
pub(crate) struct WaitLock<T> {
    lock: UnsafeCell<bindings::spinlock_t>,
    data: UnsafeCell<T>,
}

// SAFETY: the spinlock serialises all access to `data` (type invariant).
unsafe impl<T: Send> Sync for WaitLock<T> {}
// SAFETY: a spinlock that is not held is plain data tied to no thread.
unsafe impl<T: Send> Send for WaitLock<T> {}

impl<T> WaitLock<T> {
    pub(crate) fn new(v: T) -> Self {
        let l = WaitLock {
            // SAFETY: all zeroes is what `__spin_lock_init()` initialises.
            lock: UnsafeCell::new(unsafe { core::mem::zeroed() }),
            data: UnsafeCell::new(v),
        };
        // SAFETY: the name and key are static.  An initialised, unlocked
        // `spinlock_t` holds no pointer to itself, so `l` may be moved
        // afterwards; it is only ever locked through `&self`, which pins
        // it for that long.
        unsafe {
            bindings::__spin_lock_init(
                l.lock.get(),
                c"six_lock->wait_lock".as_ptr().cast(),
                WAIT_LOCK_KEY.as_ptr(),
            )
        };
        // INVARIANT: initialised just above.
        l
    }

    #[inline]
    pub(crate) fn lock(&self) -> WaitLockGuard<'_, T> {
        // SAFETY: initialised (type invariant); unlocked by the guard.
        unsafe { bindings::spin_lock(self.lock.get()) };
        WaitLockGuard(self)
    }
}

/// Holds a [`WaitLock`]; unlocks on drop.
pub(crate) struct WaitLockGuard<'a, T>(&'a WaitLock<T>);

impl<T> Deref for WaitLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.0.data.get() }
    }
}

impl<T> DerefMut for WaitLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` makes this the
        // only reference through it.
        unsafe { &mut *self.0.data.get() }
    }
}

impl<T> Drop for WaitLockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: taken in `WaitLock::lock`.
        unsafe { bindings::spin_unlock(self.0.lock.get()) };
    }
}

/// Nothing to record: a waiter sleeps on the hashed wait queue of its
/// `acquired` flag's address.
#[derive(Debug, Default)]
pub(crate) struct WakeSlot;

/// What a waiter sleeps on: nothing of its own (see [`WakeSlot`]).
pub(crate) struct Parker;

impl WakeSlot {
    pub(crate) const fn new() -> Self {
        WakeSlot
    }

    pub(crate) fn arm(&mut self) -> Parker {
        Parker
    }

    /// The address to wake, taken before the waiter may go away.
    pub(crate) fn take(&mut self, flag: &AtomicBool) -> Waker {
        Waker(flag.as_ptr().cast())
    }

    /// Wakes the waiter, which re-checks and sleeps again; the caller makes
    /// sure it still waits.
    pub(crate) fn poke(&self, flag: &AtomicBool) {
        Waker(flag.as_ptr().cast()).wake();
    }
}

/// Wakes the task waiting on an address.  Only the address is used: the
/// waiter may be gone by the time it runs, and a stale wakeup of a later
/// waiter at the same address is only spurious.
pub(crate) struct Waker(*mut c_void);

impl Waker {
    pub(crate) fn wake(self) {
        // `wake_up_var()` checks for sleepers without a barrier: order our
        // store of the flag before that check (the waiter orders its queueing
        // before its check of the flag in `prepare_to_wait_event()`).
        fence(Ordering::SeqCst);
        // SAFETY: `wake_up_var()` only hashes and compares the address.
        unsafe { bindings::wake_up_var(self.0) };
    }
}

/// Sleeps (uninterruptibly) until `flag` is set, calling `before_sleep`
/// before each sleep with the task still running; an error from it ends
/// the wait.
pub(crate) fn wait<E>(
    _parker: &Parker,
    flag: &AtomicBool,
    mut before_sleep: impl FnMut() -> Result<(), E>,
) -> Result<(), E> {
    if flag.load(Ordering::Acquire) {
        return Ok(());
    }
    let key: *mut c_void = flag.as_ptr().cast();
    // SAFETY: `__var_waitqueue()` only hashes the address.
    let wq = unsafe { bindings::__var_waitqueue(key) };
    let mut entry = MaybeUninit::<bindings::wait_bit_queue_entry>::uninit();
    let e = entry.as_mut_ptr();
    // SAFETY: `e` is valid for writes; the entry is initialised here and
    // not moved afterwards (its list head points to itself).
    unsafe { bindings::init_wait_var_entry(e, key, 0) };
    // SAFETY: `e` is initialised.
    let wq_entry = unsafe { ptr::addr_of_mut!((*e).wq_entry) };
    let mut ret = Ok(());
    loop {
        if flag.load(Ordering::Acquire) {
            break;
        }
        if let Err(err) = before_sleep() {
            ret = Err(err);
            break;
        }
        // SAFETY: `wq` is the queue for `key`, `wq_entry` initialised for
        // it; it is taken off the queue by `finish_wait()` below at the
        // latest.
        unsafe {
            bindings::prepare_to_wait_event(wq, wq_entry, bindings::TASK_UNINTERRUPTIBLE as c_int)
        };
        if flag.load(Ordering::Acquire) {
            break;
        }
        // SAFETY: sleeping is allowed here (no spinlock held: the wait
        // lock was dropped before waiting).
        unsafe { bindings::schedule() };
    }
    // SAFETY: as for `prepare_to_wait_event()`; harmless if the entry was
    // never queued or already dequeued by a wakeup.
    unsafe { bindings::finish_wait(wq, wq_entry) };
    ret
}

/// The current task's address.
#[inline]
pub(crate) fn current_id() -> usize {
    // SAFETY: always valid in process context.
    unsafe { bindings::get_current() as usize }
}

/// Monotonic time in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bindings::ktime_get() as u64 }
}

/// One step of a busy-wait loop.
#[inline]
pub(crate) fn relax(_spins: u32) {
    core::hint::spin_loop();
}
