// SPDX-License-Identifier: GPL-2.0
//! Six locks: shared / intent / exclusive.
//!
//! The semantics of `fs/bcachefs/six.c` (Linux 6.12):
//!
//! - read is shared; intent is shared with readers but exclusive among
//!   intent holders; write is taken by the intent holder and excludes
//!   readers.  Intent lets a thread that will modify a node hold it
//!   against other modifiers while readers carry on, and take write only
//!   for the modification itself.
//! - A sequence number, bumped when a write lock is released, lets a
//!   caller drop a lock and [`SixLock::relock`] it later only if nothing
//!   was written meanwhile.
//! - Holds can be counted up with [`SixLock::increment`] (the lock has no
//!   idea which thread holds it; the btree layer tracks that), converted
//!   with [`SixLock::downgrade`] and [`SixLock::tryupgrade`], and inspected
//!   with [`SixLock::counts`] for deadlock-cycle detection.
//! - Waiters queue in FIFO order on the lock; unlock hands the lock to the
//!   waiter(s) it wakes.  A blocked writer sets the write bit before
//!   waiting for readers, so new readers queue behind it and writers are
//!   not starved.
//!
//! Where this differs from six.c is documented in
//! `Documentation/filesystems/bcachefs-rs/locking.rst`.

use core::convert::Infallible;
use core::ffi::CStr;
use core::fmt;
use core::marker::PhantomData;
use core::ops::Index;
use core::ptr;

use super::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release, SeqCst},
};
use super::backend::{self, ClassKey, LockDep, WaitLock, WakeSlot};
use super::cell::UnsafeCell;
use super::this_ip;

// The state word, as in six.c: the reader count in the low 26 bits, then
// intent held, write held, one "waiting" bit per lock type, and "don't
// spin" (set by a spinner that gave up; cleared by intent/write unlock).
const HELD_READ: u32 = (1 << 26) - 1;
const HELD_INTENT: u32 = 1 << 26;
const HELD_WRITE: u32 = 1 << 27;
const WAITING_SHIFT: u32 = 28;
const NOSPIN: u32 = 1 << 31;

/// The three ways a six lock can be held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SixLockType {
    /// Shared with readers and with the intent holder.
    Read = 0,
    /// Shared with readers, exclusive among intent holders.
    Intent = 1,
    /// Exclusive; only the intent holder may take it.
    Write = 2,
}

impl SixLockType {
    /// Every type, in index order.
    pub const ALL: [SixLockType; 3] = [SixLockType::Read, SixLockType::Intent, SixLockType::Write];

    /// What taking the lock adds to the state.
    #[inline(always)]
    const fn lock_val(self) -> u32 {
        match self {
            SixLockType::Read => 1,
            SixLockType::Intent => HELD_INTENT,
            SixLockType::Write => HELD_WRITE,
        }
    }

    /// State bits that make taking the lock fail.
    #[inline(always)]
    const fn lock_fail(self) -> u32 {
        match self {
            SixLockType::Read => HELD_WRITE,
            SixLockType::Intent => HELD_INTENT,
            SixLockType::Write => HELD_READ,
        }
    }

    /// State bits that say the lock is held this way.
    #[inline(always)]
    const fn held_mask(self) -> u32 {
        match self {
            SixLockType::Read => HELD_READ,
            SixLockType::Intent => HELD_INTENT,
            SixLockType::Write => HELD_WRITE,
        }
    }

    /// The waiters an unlock of this type may let in.
    #[inline(always)]
    const fn unlock_wakeup(self) -> SixLockType {
        match self {
            SixLockType::Read => SixLockType::Write,
            SixLockType::Intent => SixLockType::Intent,
            SixLockType::Write => SixLockType::Read,
        }
    }

    /// The state bit saying someone waits for this type.
    #[inline(always)]
    const fn waiting(self) -> u32 {
        1 << (WAITING_SHIFT + self as u32)
    }

    fn from_u8(v: u8) -> SixLockType {
        match v {
            0 => SixLockType::Read,
            1 => SixLockType::Intent,
            _ => SixLockType::Write,
        }
    }
}

/// How many times a lock is held, per type (`struct six_lock_count`).
///
/// The read count includes holds added with [`SixLock::increment`] and
/// [`SixLock::readers_add`]; the intent count includes recursive holds;
/// the write count is 1 from the moment a writer has claimed the lock,
/// even while it still waits for readers to leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SixLockCount {
    /// Indexed by `SixLockType as usize`.
    pub n: [u32; 3],
}

impl Index<SixLockType> for SixLockCount {
    type Output = u32;
    fn index(&self, ty: SixLockType) -> &u32 {
        &self.n[ty as usize]
    }
}

/// A lock class: the name lockdep reports and the key it tells classes
/// apart by.  Every lock needs one, and it must be a `static`.
///
/// ```
/// use bcachefs_rs::sync::{SixLock, SixLockClass};
/// static NODE_LOCK: SixLockClass = SixLockClass::new(c"btree_node");
/// let lock = SixLock::new(&NODE_LOCK);
/// ```
pub struct SixLockClass {
    name: &'static CStr,
    key: ClassKey,
    /// Whether lockdep tracks locks of this class.
    track: bool,
}

impl SixLockClass {
    /// A class named `name`.
    pub const fn new(name: &'static CStr) -> Self {
        SixLockClass { name, key: ClassKey::new(), track: true }
    }

    /// A class lockdep does not track (`lockdep_set_notrack_class()`, as
    /// C's `bch2_btree_lock_init()` does for btree node locks: a
    /// transaction holds many of them, the same node's several times
    /// through its paths, past lockdep's depth of 48, and their order is
    /// the transaction's own deadlock avoidance, not lockdep's).
    pub const fn new_untracked(name: &'static CStr) -> Self {
        SixLockClass { name, key: ClassKey::new(), track: false }
    }

    /// The class's name.
    pub fn name(&self) -> &'static CStr {
        self.name
    }
}

impl fmt::Debug for SixLockClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SixLockClass").field(&self.name).finish()
    }
}

#[derive(Clone, Copy)]
struct Links {
    prev: *const SixWaiter,
    next: *const SixWaiter,
}

/// An entry on a lock's wait list (`struct six_lock_waiter`).
///
/// [`SixLock::lock`] uses one of its own; [`SixLock::lock_with`] takes one
/// from the caller, so that the caller can embed it in an object a
/// deadlock-cycle detector reaches through [`SixLock::for_each_waiter`].
/// Waiters on one lock have strictly increasing [`start_time`]s, which a
/// graph walk can use as a cursor.
///
/// [`start_time`]: SixWaiter::start_time
pub struct SixWaiter {
    /// Wait-list links: only touched under the wait lock of the lock this
    /// waiter is queued on.
    links: UnsafeCell<Links>,
    /// How to wake the waiting thread: written by it under the wait lock
    /// before it is queued, taken by the waker under the wait lock.
    wake: UnsafeCell<WakeSlot>,
    /// Set (release) by the waker once it took the lock for us and
    /// unlinked us; after that the waker does not touch this waiter.
    acquired: AtomicBool,
    /// Set while a lock call uses this waiter.
    in_use: AtomicBool,
    want: AtomicU8,
    start_time: AtomicU64,
    /// The waiting thread, for debug owner tracking of intent hand-offs.
    owner: AtomicUsize,
    ctx: usize,
}

// SAFETY: `links` and `wake` are only accessed by the one lock call using
// the waiter (`in_use` makes sure there is one) while the waiter is not
// queued, or under the wait lock while it is; everything else is atomic.
unsafe impl Send for SixWaiter {}
// SAFETY: as above.
unsafe impl Sync for SixWaiter {}

impl SixWaiter {
    /// A waiter with context 0.
    pub fn new() -> Self {
        Self::with_ctx(0)
    }

    /// A waiter carrying `ctx`, for example the address of the btree
    /// transaction it belongs to.
    pub fn with_ctx(ctx: usize) -> Self {
        SixWaiter {
            links: UnsafeCell::new(Links { prev: ptr::null(), next: ptr::null() }),
            wake: UnsafeCell::new(WakeSlot::new()),
            acquired: AtomicBool::new(false),
            in_use: AtomicBool::new(false),
            want: AtomicU8::new(0),
            start_time: AtomicU64::new(0),
            owner: AtomicUsize::new(0),
            ctx,
        }
    }

    /// The context given to [`SixWaiter::with_ctx`].
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    /// The type the waiter waits for (or last waited for).
    pub fn lock_want(&self) -> SixLockType {
        SixLockType::from_u8(self.want.load(Relaxed))
    }

    /// When the waiter was queued, in nanoseconds of a monotonic clock,
    /// made strictly greater than the previous waiter's; 0 if the last
    /// lock call took the lock without waiting.
    pub fn start_time(&self) -> u64 {
        self.start_time.load(Relaxed)
    }
}

impl Default for SixWaiter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SixWaiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SixWaiter")
            .field("want", &self.lock_want())
            .field("start_time", &self.start_time())
            .field("ctx", &self.ctx)
            .finish()
    }
}

/// A lock's FIFO of waiters: an intrusive list through the waiters, which
/// live on the stacks of the threads waiting.
///
/// # Invariants
///
/// Every waiter on the list is valid: the lock call that queued it does
/// not return before it is unlinked (by a waker or by the call itself).
/// The list is only read or changed under the lock's wait lock.
pub(crate) struct WaitList {
    head: *const SixWaiter,
    tail: *const SixWaiter,
}

// SAFETY: the pointers are only followed under the wait lock (type
// invariant), by whichever thread holds it.
unsafe impl Send for WaitList {}

impl WaitList {
    fn new() -> Self {
        WaitList { head: ptr::null(), tail: ptr::null() }
    }

    fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Appends `w`.
    ///
    /// # Safety
    ///
    /// `w` is on no list, and stays valid until it has been removed.
    unsafe fn push_back(&mut self, w: &SixWaiter) {
        let wp: *const SixWaiter = w;
        let prev = self.tail;
        // SAFETY: `w` is ours until it is linked (caller), and we hold the
        // wait lock (we have `&mut self`).
        w.links.with_mut(|l| unsafe { *l = Links { prev, next: ptr::null() } });
        if prev.is_null() {
            self.head = wp;
        } else {
            // SAFETY: listed waiters are valid (type invariant).
            unsafe { (*prev).links.with_mut(|l| (*l).next = wp) };
        }
        self.tail = wp;
    }

    /// Unlinks `w`.
    ///
    /// # Safety
    ///
    /// `w` is on this list.
    unsafe fn remove(&mut self, w: &SixWaiter) {
        // SAFETY: `w` is listed (caller) and we hold the wait lock.
        let Links { prev, next } = w.links.with(|l| unsafe { *l });
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: listed waiters are valid (type invariant).
            unsafe { (*prev).links.with_mut(|l| (*l).next = next) };
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: as above.
            unsafe { (*next).links.with_mut(|l| (*l).prev = prev) };
        }
    }

    /// The waiter after `w`, or null.
    ///
    /// # Safety
    ///
    /// `w` is on this list.
    unsafe fn next_of(&self, w: &SixWaiter) -> *const SixWaiter {
        // SAFETY: `w` is listed (caller) and we hold the wait lock.
        w.links.with(|l| unsafe { (*l).next })
    }
}

/// A six lock (`struct six_lock`).
///
/// All operations take `&self`: like the C lock, it protects nothing by
/// itself and does not know which thread holds it; the caller keeps track
/// (the btree layer does, per transaction).  Unlocking a type the caller
/// does not hold corrupts the lock's state (not memory) and is caught by
/// debug assertions where cheap.
///
/// In the kernel a lock carries a lockdep map: it must not be moved while
/// held.
pub struct SixLock {
    state: AtomicU32,
    seq: AtomicU32,
    /// Recursive intent holds beyond the first; only changed by the intent
    /// holder.
    intent_recurse: AtomicU32,
    /// The intent holder's thread id, for debug assertions.
    #[cfg(debug_assertions)]
    owner: AtomicUsize,
    wait: WaitLock<WaitList>,
    dep: LockDep,
    class: &'static SixLockClass,
}

#[inline(always)]
fn owner_id() -> usize {
    if cfg!(debug_assertions) {
        backend::current_id()
    } else {
        0
    }
}

impl SixLock {
    /// An unlocked lock of class `class`, with sequence number 0.
    pub fn new(class: &'static SixLockClass) -> Self {
        SixLock {
            state: AtomicU32::new(0),
            seq: AtomicU32::new(0),
            intent_recurse: AtomicU32::new(0),
            #[cfg(debug_assertions)]
            owner: AtomicUsize::new(0),
            wait: WaitLock::new(WaitList::new()),
            dep: if class.track { LockDep::new(class.name, &class.key) } else { LockDep::untracked() },
            class,
        }
    }

    /// The lock's class.
    pub fn class(&self) -> &'static SixLockClass {
        self.class
    }

    /// The sequence number (`six_lock_seq`): bumped each time a write lock
    /// is released.  Meaningful to a caller holding read or intent; save it
    /// before unlocking to [`relock`](SixLock::relock) later.
    #[inline]
    pub fn seq(&self) -> u32 {
        self.seq.load(Relaxed)
    }

    #[inline(always)]
    fn set_owner(&self, _id: usize) {
        #[cfg(debug_assertions)]
        self.owner.store(_id, Relaxed);
    }

    #[inline(always)]
    fn debug_assert_owner(&self) {
        #[cfg(debug_assertions)]
        debug_assert_eq!(
            self.owner.load(Relaxed),
            backend::current_id(),
            "six lock: intent/write used by a thread not holding intent"
        );
    }

    fn set_bits(&self, mask: u32) {
        if self.state.load(Relaxed) & mask != mask {
            self.state.fetch_or(mask, SeqCst);
        }
    }

    fn clear_bits(&self, mask: u32) {
        if self.state.load(Relaxed) & mask != 0 {
            self.state.fetch_and(!mask, SeqCst);
        }
    }

    /// Takes the lock if it is free for `ty`.  With `try_ == false` and
    /// `ty == Write`, the caller has already set the write bit and only
    /// waits for readers to leave.
    #[inline(always)]
    fn try_acquire(&self, ty: SixLockType, owner: usize, try_: bool) -> bool {
        let ok = if ty == SixLockType::Write && !try_ {
            self.state.load(Acquire) & HELD_READ == 0
        } else {
            let mut old = self.state.load(Relaxed);
            loop {
                if old & ty.lock_fail() != 0 {
                    break false;
                }
                match self.state.compare_exchange_weak(
                    old,
                    old.wrapping_add(ty.lock_val()),
                    Acquire,
                    Relaxed,
                ) {
                    Ok(_) => break true,
                    Err(cur) => old = cur,
                }
            }
        };
        if ok && ty == SixLockType::Intent {
            self.set_owner(owner);
        }
        ok
    }

    /// Tries to take the lock without blocking (`six_trylock_type`).
    /// Write requires intent held by the caller.
    #[inline]
    pub fn trylock(&self, ty: SixLockType) -> bool {
        if ty == SixLockType::Write {
            self.debug_assert_owner();
        }
        if !self.try_acquire(ty, owner_id(), true) {
            return false;
        }
        if ty != SixLockType::Write {
            self.dep.acquire(ty == SixLockType::Read, true, this_ip!());
        }
        true
    }

    /// Takes the lock, sleeping as long as needed (`six_lock_type`).
    /// Write requires intent held by the caller.
    #[inline]
    pub fn lock(&self, ty: SixLockType) {
        if ty != SixLockType::Write {
            self.dep.acquire(ty == SixLockType::Read, false, this_ip!());
        } else {
            self.debug_assert_owner();
        }
        if !self.try_acquire(ty, owner_id(), true) {
            self.lock_contended(ty);
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self, ty: SixLockType) {
        let w = SixWaiter::new();
        let r: Result<(), Infallible> = self.lock_slowpath(ty, &w, &mut |_| Ok(()));
        match r {
            Ok(()) => {}
            Err(e) => match e {},
        }
    }

    /// Takes the lock with a caller-provided wait-list entry
    /// (`six_lock_ip_waiter`).
    ///
    /// If the lock is not free, `w` is queued, and `should_sleep` runs
    /// before each sleep; if it returns an error, the wait is abandoned
    /// and the error returned, without the lock held (even if it was
    /// handed to us meanwhile: `should_sleep` may have acted on its
    /// decision already, for example restarted a transaction).
    ///
    /// # Panics
    ///
    /// If `w` is in use by another lock call at the same time.
    pub fn lock_with<E, F>(&self, ty: SixLockType, w: &SixWaiter, mut should_sleep: F) -> Result<(), E>
    where
        F: FnMut(&SixLock) -> Result<(), E>,
    {
        let ip = this_ip!();
        w.start_time.store(0, Relaxed);
        if ty != SixLockType::Write {
            self.dep.acquire(ty == SixLockType::Read, false, ip);
        } else {
            self.debug_assert_owner();
        }
        let ret = if self.try_acquire(ty, owner_id(), true) {
            Ok(())
        } else {
            self.lock_slowpath(ty, w, &mut should_sleep)
        };
        if ret.is_err() && ty != SixLockType::Write {
            self.dep.release(ip);
        }
        ret
    }

    #[inline(never)]
    fn lock_slowpath<E>(
        &self,
        ty: SixLockType,
        w: &SixWaiter,
        should_sleep: &mut dyn FnMut(&SixLock) -> Result<(), E>,
    ) -> Result<(), E> {
        assert!(
            !w.in_use.swap(true, Acquire),
            "six lock: one SixWaiter used by two lock calls at once"
        );
        // From here on, an early return (or unwinding) goes through the
        // abort path in `Slowpath::drop`.
        let mut slow = Slowpath { lock: self, w, ty, queued: false, done: false };
        let me = backend::current_id();

        if ty == SixLockType::Write {
            debug_assert!(self.state.load(Relaxed) & HELD_WRITE == 0);
            // Claim the lock now: readers arriving from here on fail their
            // trylock and queue behind us, so readers cannot starve us.
            self.state.fetch_add(HELD_WRITE, SeqCst);
            // The readers still in are on their way out (read sections
            // are short, and no new ones start): wait a little for them
            // before paying for a sleep and a wakeup.
            if self.spin_until(|| self.state.load(Acquire) & HELD_READ == 0) {
                slow.done = true;
                return Ok(());
            }
        }

        w.want.store(ty as u8, Relaxed);
        w.acquired.store(false, Relaxed);
        w.owner.store(me, Relaxed);

        let first;
        let parker;
        {
            let mut list = self.wait.lock();
            self.set_bits(ty.waiting());
            // Retry with our waiting bit set: an unlock that ran before it
            // was set did not see it and will not wake us.
            if self.try_acquire(ty, me, false) {
                slow.done = true;
                return Ok(());
            }
            let mut t = backend::now_ns();
            // SAFETY: listed waiters are valid (WaitList invariant) and we
            // hold the wait lock.
            if let Some(last) = unsafe { list.tail.as_ref() } {
                let lt = last.start_time.load(Relaxed);
                if t <= lt {
                    t = lt.wrapping_add(1);
                }
            }
            w.start_time.store(t, Relaxed);
            // SAFETY: `w` is not queued yet and `in_use` makes this call its
            // only user.
            parker = w.wake.with_mut(|s| unsafe { (*s).arm() });
            first = list.is_empty();
            // SAFETY: `w` is on no list; `slow` unlinks it before this call
            // returns, if no waker did.
            unsafe { list.push_back(w) };
            slow.queued = true;
        }

        if !self.optimistic_spin(w, ty, first) {
            backend::wait(&parker, &w.acquired, || should_sleep(self))?;
        }
        slow.done = true;
        Ok(())
    }

    /// Polls `cond` for up to [`backend::SPIN_NS`] nanoseconds.
    fn spin_until(&self, mut cond: impl FnMut() -> bool) -> bool {
        if backend::SPIN_NS == 0 {
            return false;
        }
        let end = backend::now_ns().saturating_add(backend::SPIN_NS);
        loop {
            for _ in 0..16 {
                if cond() {
                    return true;
                }
                core::hint::spin_loop();
            }
            if backend::now_ns() > end {
                return false;
            }
        }
    }

    /// Polls for a hand-off for a short while before sleeping, when that
    /// is likely to pay: we are first in line for read or intent, which
    /// are held for short sections.
    fn optimistic_spin(&self, w: &SixWaiter, ty: SixLockType, first: bool) -> bool {
        if ty == SixLockType::Write || !first || self.state.load(Relaxed) & NOSPIN != 0 {
            return false;
        }
        if self.spin_until(|| w.acquired.load(Acquire)) {
            return true;
        }
        // Spinning did not pay off this time: stop others from trying
        // until the next intent/write unlock.
        if backend::SPIN_NS != 0 {
            self.set_bits(NOSPIN);
        }
        false
    }

    /// Hands the lock to waiters of type `ty` (`__six_lock_wakeup`): every
    /// read waiter, or the first intent or write waiter.
    #[cold]
    #[inline(never)]
    fn wakeup(&self, ty: SixLockType) {
        let mut list = self.wait.lock();
        let mut saw_one = false;
        let mut cur = list.head;
        // SAFETY: listed waiters are valid while we hold the wait lock
        // (WaitList invariant).
        while let Some(w) = unsafe { cur.as_ref() } {
            // SAFETY: `w` is listed.
            let next = unsafe { list.next_of(w) };
            if w.lock_want() != ty {
                cur = next;
                continue;
            }
            if saw_one && ty != SixLockType::Read {
                return;
            }
            saw_one = true;
            if !self.try_acquire(ty, w.owner.load(Relaxed), false) {
                return;
            }
            // SAFETY: `w` is listed and we hold the wait lock.
            let waker = w.wake.with_mut(|s| unsafe { (*s).take(&w.acquired) });
            // SAFETY: `w` is listed.
            unsafe { list.remove(w) };
            w.acquired.store(true, Release);
            // `w` may be gone from here on: the waiter returns as soon as it
            // sees `acquired`.  `waker` does not point into it.
            waker.wake();
            cur = next;
        }
        self.clear_bits(ty.waiting());
    }

    #[inline(always)]
    fn lock_wakeup(&self, state: u32, ty: SixLockType) {
        if ty == SixLockType::Write && state & HELD_READ != 0 {
            return;
        }
        if state & ty.waiting() == 0 {
            return;
        }
        self.wakeup(ty);
    }

    #[inline(always)]
    fn do_unlock(&self, ty: SixLockType) {
        if ty == SixLockType::Intent {
            self.set_owner(0);
        }
        let mut v = ty.lock_val();
        if ty != SixLockType::Read && backend::SPIN_NS != 0 {
            // Clear "don't spin" (only set by spinners).
            v += self.state.load(Relaxed) & NOSPIN;
        }
        let old = self.state.fetch_sub(v, Release);
        debug_assert!(old & ty.held_mask() != 0, "six lock: unlock of a type not held");
        self.lock_wakeup(old.wrapping_sub(v), ty.unlock_wakeup());
    }

    /// Releases one hold of type `ty` (`six_unlock_type`).  Releasing
    /// write bumps the sequence number.
    #[inline]
    pub fn unlock(&self, ty: SixLockType) {
        match ty {
            SixLockType::Write => {
                self.debug_assert_owner();
                debug_assert!(self.state.load(Relaxed) & HELD_INTENT != 0);
                // Ordered before the release of the write bit below.
                self.seq.store(self.seq.load(Relaxed).wrapping_add(1), Relaxed);
            }
            SixLockType::Intent => {
                self.debug_assert_owner();
                self.dep.release(this_ip!());
                let r = self.intent_recurse.load(Relaxed);
                if r != 0 {
                    self.intent_recurse.store(r - 1, Relaxed);
                    return;
                }
            }
            SixLockType::Read => self.dep.release(this_ip!()),
        }
        self.do_unlock(ty);
    }

    /// Takes the lock again if its sequence number is still `seq`, that is
    /// if no write lock was released since `seq` was read
    /// (`six_relock_type`).  On success it is as if the lock had never
    /// been dropped.
    #[inline]
    pub fn relock(&self, ty: SixLockType, seq: u32) -> bool {
        if self.seq() != seq || !self.trylock(ty) {
            return false;
        }
        if self.seq() != seq {
            self.unlock(ty);
            return false;
        }
        true
    }

    /// Adds a hold of type `ty` to a lock the caller already holds with a
    /// type at least as strong (`six_lock_increment`): read on read or
    /// intent, intent on intent.  Each needs its own unlock.
    ///
    /// # Panics
    ///
    /// For `Write`: a write lock is held once (six.c's `BUG()`).
    pub fn increment(&self, ty: SixLockType) {
        self.dep.acquire_recursive(ty == SixLockType::Read, this_ip!());
        match ty {
            SixLockType::Read => {
                debug_assert!(self.state.load(Relaxed) & (HELD_READ | HELD_INTENT) != 0);
                self.state.fetch_add(1, Relaxed);
            }
            SixLockType::Intent => {
                debug_assert!(self.state.load(Relaxed) & HELD_INTENT != 0);
                self.debug_assert_owner();
                self.intent_recurse.fetch_add(1, Relaxed);
            }
            SixLockType::Write => panic!("six lock: write cannot be held recursively"),
        }
    }

    /// Turns an intent hold into a read hold (`six_lock_downgrade`).
    pub fn downgrade(&self) {
        self.increment(SixLockType::Read);
        self.unlock(SixLockType::Intent);
    }

    /// Turns a read hold into an intent hold, if no one holds intent
    /// (`six_lock_tryupgrade`).
    pub fn tryupgrade(&self) -> bool {
        let mut old = self.state.load(Relaxed);
        loop {
            if old & HELD_INTENT != 0 {
                return false;
            }
            debug_assert!(old & HELD_READ != 0, "six lock: upgrade without a read hold");
            let new = old.wrapping_sub(SixLockType::Read.lock_val()) | HELD_INTENT;
            match self.state.compare_exchange_weak(old, new, Acquire, Relaxed) {
                Ok(_) => break,
                Err(cur) => old = cur,
            }
        }
        self.set_owner(owner_id());
        true
    }

    /// Converts a read or intent hold to read or intent
    /// (`six_trylock_convert`): downgrading always succeeds, upgrading may
    /// not.
    pub fn trylock_convert(&self, from: SixLockType, to: SixLockType) -> bool {
        debug_assert!(from != SixLockType::Write && to != SixLockType::Write);
        if from == to {
            true
        } else if to == SixLockType::Read {
            self.downgrade();
            true
        } else {
            self.tryupgrade()
        }
    }

    /// Wakes every waiter (`six_lock_wakeup_all`): those that can have the
    /// lock get it, the others re-run their `should_sleep`.  Only useful
    /// for debugging a cycle detector.
    pub fn wakeup_all(&self) {
        let state = self.state.load(Relaxed);
        for ty in SixLockType::ALL {
            self.lock_wakeup(state, ty);
        }
        let list = self.wait.lock();
        let mut cur = list.head;
        // SAFETY: listed waiters are valid while we hold the wait lock.
        while let Some(w) = unsafe { cur.as_ref() } {
            // SAFETY: `w` is listed and we hold the wait lock.
            w.wake.with(|s| unsafe { (*s).poke(&w.acquired) });
            // SAFETY: `w` is listed.
            cur = unsafe { list.next_of(w) };
        }
    }

    /// How many times the lock is held, per type (`six_lock_counts`).
    pub fn counts(&self) -> SixLockCount {
        let s = self.state.load(Relaxed);
        SixLockCount {
            n: [
                s & HELD_READ,
                (s & HELD_INTENT != 0) as u32 + self.intent_recurse.load(Relaxed),
                (s & HELD_WRITE != 0) as u32,
            ],
        }
    }

    /// Adds `nr` (possibly negative) to the reader count
    /// (`six_lock_readers_add`).  A caller holding intent and some read
    /// holds of its own can hide those to take write without deadlocking
    /// on itself, and add them back after.
    pub fn readers_add(&self, nr: i32) {
        debug_assert!((self.state.load(Relaxed) & HELD_READ) as i64 + nr as i64 >= 0);
        self.state.fetch_add(nr as u32, SeqCst);
    }

    /// Calls `f` on every queued waiter, in queue order, under the wait
    /// lock (a spinlock in the kernel: `f` must not sleep).
    pub fn for_each_waiter(&self, mut f: impl FnMut(&SixWaiter)) {
        let list = self.wait.lock();
        let mut cur = list.head;
        // SAFETY: listed waiters are valid while we hold the wait lock.
        while let Some(w) = unsafe { cur.as_ref() } {
            f(w);
            // SAFETY: `w` is listed.
            cur = unsafe { list.next_of(w) };
        }
    }

    /// Takes the lock and returns a guard that releases it.
    pub fn guard(&self, ty: SixLockType) -> SixGuard<'_> {
        self.lock(ty);
        SixGuard { lock: self, ty, _not_send: PhantomData }
    }

    /// Like [`guard`](SixLock::guard) but without blocking.
    pub fn try_guard(&self, ty: SixLockType) -> Option<SixGuard<'_>> {
        self.trylock(ty).then(|| SixGuard { lock: self, ty, _not_send: PhantomData })
    }
}

macro_rules! six_lock_type_fns {
    ($ty:ident, $lock:ident, $trylock:ident, $relock:ident, $unlock:ident) => {
        impl SixLock {
            #[doc = concat!("[`lock`](SixLock::lock) for `", stringify!($ty), "`.")]
            #[inline]
            pub fn $lock(&self) {
                self.lock(SixLockType::$ty)
            }
            #[doc = concat!("[`trylock`](SixLock::trylock) for `", stringify!($ty), "`.")]
            #[inline]
            pub fn $trylock(&self) -> bool {
                self.trylock(SixLockType::$ty)
            }
            #[doc = concat!("[`relock`](SixLock::relock) for `", stringify!($ty), "`.")]
            #[inline]
            pub fn $relock(&self, seq: u32) -> bool {
                self.relock(SixLockType::$ty, seq)
            }
            #[doc = concat!("[`unlock`](SixLock::unlock) for `", stringify!($ty), "`.")]
            #[inline]
            pub fn $unlock(&self) {
                self.unlock(SixLockType::$ty)
            }
        }
    };
}
six_lock_type_fns!(Read, lock_read, trylock_read, relock_read, unlock_read);
six_lock_type_fns!(Intent, lock_intent, trylock_intent, relock_intent, unlock_intent);
six_lock_type_fns!(Write, lock_write, trylock_write, relock_write, unlock_write);

impl fmt::Debug for SixLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SixLock")
            .field("class", &self.class.name)
            .field("seq", &self.seq())
            .field("counts", &self.counts().n)
            .finish()
    }
}

/// The abort path of a blocking lock call, run on drop unless the lock
/// was taken: unlink the waiter, or give back a lock handed to it
/// meanwhile; a writer also drops its claim on the write bit.
struct Slowpath<'a> {
    lock: &'a SixLock,
    w: &'a SixWaiter,
    ty: SixLockType,
    queued: bool,
    done: bool,
}

impl Drop for Slowpath<'_> {
    fn drop(&mut self) {
        let (lock, ty) = (self.lock, self.ty);
        if !self.done {
            let mut acquired = false;
            if self.queued {
                let mut list = lock.wait.lock();
                acquired = self.w.acquired.load(Acquire);
                if !acquired {
                    // SAFETY: not handed the lock, so no waker unlinked us.
                    unsafe { list.remove(self.w) };
                }
            }
            if acquired {
                lock.do_unlock(ty);
            }
            if ty == SixLockType::Write {
                lock.clear_bits(HELD_WRITE);
                lock.lock_wakeup(lock.state.load(Relaxed), SixLockType::Read);
            }
        }
        self.w.in_use.store(false, Release);
    }
}

/// A held six lock, released on drop.  See [`SixLock::guard`].
#[must_use = "dropping the guard unlocks at once"]
pub struct SixGuard<'a> {
    lock: &'a SixLock,
    ty: SixLockType,
    /// Released by the thread that took it (lockdep tracks holds per task).
    _not_send: PhantomData<*const ()>,
}

impl SixGuard<'_> {
    /// The type held.
    pub fn lock_type(&self) -> SixLockType {
        self.ty
    }

    /// The lock.
    pub fn lock(&self) -> &SixLock {
        self.lock
    }
}

impl Drop for SixGuard<'_> {
    fn drop(&mut self) {
        self.lock.unlock(self.ty);
    }
}

impl fmt::Debug for SixGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SixGuard").field("type", &self.ty).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::SixLockType::{Intent, Read, Write};
    use super::*;
    use std::sync::atomic::{AtomicU32 as StdAtomicU32, Ordering};
    use std::sync::{Arc, Barrier};
    use std::thread;
    use std::time::Duration;

    static CLASS: SixLockClass = SixLockClass::new(c"test");

    fn new() -> SixLock {
        SixLock::new(&CLASS)
    }

    #[test]
    fn read_intent_write_exclusion() {
        let l = new();
        assert!(l.trylock_read());
        assert!(l.trylock_read());
        assert!(l.trylock_intent(), "intent is shared with readers");
        assert!(!l.trylock_intent(), "intent is exclusive among intent holders");
        assert!(!l.trylock_write(), "write waits for readers");
        assert_eq!(l.counts().n, [2, 1, 0]);
        l.unlock_read();
        l.unlock_read();
        assert!(l.trylock_write());
        assert!(!l.trylock_read(), "write excludes readers");
        assert_eq!(l.counts().n, [0, 1, 1]);
        l.unlock_write();
        assert!(l.trylock_read());
        l.unlock_read();
        l.unlock_intent();
        assert_eq!(l.counts().n, [0, 0, 0]);
    }

    #[test]
    fn seq_bumps_once_per_write_and_relock_checks_it() {
        let l = new();
        l.lock_read();
        let seq = l.seq();
        l.unlock_read();
        assert!(l.relock_read(seq), "nothing written: relock succeeds");
        l.unlock_read();

        l.lock_intent();
        assert_eq!(l.seq(), seq, "intent alone does not change seq");
        l.lock_write();
        assert_eq!(l.seq(), seq, "seq changes on write unlock, as in 6.12");
        l.unlock_write();
        assert_eq!(l.seq(), seq.wrapping_add(1));
        l.unlock_intent();

        assert!(!l.relock_read(seq), "written since: relock fails");
        assert!(!l.relock_intent(seq));
        assert!(l.relock_intent(seq.wrapping_add(1)));
        l.unlock_intent();
        assert_eq!(l.counts().n, [0, 0, 0]);
    }

    #[test]
    fn increment_downgrade_upgrade_convert() {
        let l = new();
        l.lock_intent();
        l.increment(Intent);
        l.increment(Read);
        assert_eq!(l.counts().n, [1, 2, 0]);
        l.unlock_intent();
        assert_eq!(l.counts().n, [1, 1, 0]);
        assert!(!l.trylock_intent(), "still held for intent once");
        l.unlock_intent();
        assert_eq!(l.counts().n, [1, 0, 0]);
        assert!(l.tryupgrade());
        assert_eq!(l.counts().n, [0, 1, 0]);
        l.downgrade();
        assert_eq!(l.counts().n, [1, 0, 0]);
        assert!(l.trylock_intent());
        assert!(!l.tryupgrade(), "someone else holds intent");
        l.unlock_intent();
        assert!(l.trylock_convert(Read, Intent));
        assert!(l.trylock_convert(Intent, Read));
        assert!(l.trylock_convert(Read, Read));
        l.unlock_read();
        assert_eq!(l.counts().n, [0, 0, 0]);
    }

    #[test]
    fn readers_add_lets_the_intent_holder_write_over_its_own_reads() {
        let l = new();
        l.lock_intent();
        l.increment(Read);
        assert!(!l.trylock_write());
        l.readers_add(-1);
        assert!(l.trylock_write());
        l.unlock_write();
        l.readers_add(1);
        assert_eq!(l.counts().n, [1, 1, 0]);
        l.unlock_read();
        l.unlock_intent();
    }

    #[test]
    #[should_panic(expected = "write cannot be held recursively")]
    fn increment_write_panics() {
        let l = new();
        l.lock_intent();
        l.lock_write();
        l.increment(Write);
    }

    #[test]
    fn guards_unlock() {
        let l = new();
        {
            let _i = l.guard(Intent);
            let _r = l.guard(Read);
            assert!(l.try_guard(Intent).is_none());
            let w = l.try_guard(Read).unwrap();
            assert_eq!(w.lock_type(), Read);
        }
        assert_eq!(l.counts().n, [0, 0, 0]);
    }

    /// Waits until `l` has a queued waiter.
    fn wait_for_waiter(l: &SixLock) {
        loop {
            let mut n = 0;
            l.for_each_waiter(|_| n += 1);
            if n > 0 {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn blocked_intent_is_handed_the_lock() {
        let l = Arc::new(new());
        l.lock_intent();
        let l2 = l.clone();
        let t = thread::spawn(move || {
            l2.lock_intent();
            l2.unlock_intent();
        });
        wait_for_waiter(&l);
        l.unlock_intent();
        t.join().unwrap();
        assert_eq!(l.counts().n, [0, 0, 0]);
    }

    #[test]
    fn pending_writer_blocks_new_readers_and_is_not_starved() {
        let l = Arc::new(new());
        l.lock_read();
        let l2 = l.clone();
        let writer = thread::spawn(move || {
            l2.lock_intent();
            l2.lock_write();
            l2.unlock_write();
            l2.unlock_intent();
        });
        // The writer claims the write bit while it waits for our read.
        while l.counts()[Write] == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        assert!(!l.trylock_read(), "new readers queue behind a waiting writer");
        let l3 = l.clone();
        let reader = thread::spawn(move || {
            l3.lock_read();
            let c = l3.counts();
            l3.unlock_read();
            c
        });
        l.unlock_read();
        writer.join().unwrap();
        let c = reader.join().unwrap();
        assert_eq!(c[Write], 0);
        assert_eq!(l.seq(), 1);
        assert_eq!(l.counts().n, [0, 0, 0]);
    }

    #[test]
    fn waiters_are_queued_fifo_with_increasing_start_times() {
        let l = Arc::new(new());
        l.lock_intent();
        let order = Arc::new(StdAtomicU32::new(0));
        let mut threads = std::vec::Vec::new();
        for i in 0..3u32 {
            let (l2, order2) = (l.clone(), order.clone());
            threads.push(thread::spawn(move || {
                let w = SixWaiter::with_ctx(i as usize);
                l2.lock_with(Intent, &w, |_| Ok::<(), ()>(())).unwrap();
                let pos = order2.fetch_add(1, Ordering::SeqCst);
                l2.unlock_intent();
                (i, pos)
            }));
            // Queue them one at a time.
            loop {
                let mut n = 0;
                l.for_each_waiter(|_| n += 1);
                if n == i + 1 {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        let mut last = 0;
        let mut ctxs = std::vec::Vec::new();
        l.for_each_waiter(|w| {
            assert!(w.start_time() > last);
            last = w.start_time();
            assert_eq!(w.lock_want(), Intent);
            ctxs.push(w.ctx());
        });
        assert_eq!(ctxs, [0, 1, 2]);
        l.unlock_intent();
        for t in threads {
            let (i, pos) = t.join().unwrap();
            assert_eq!(i, pos, "intent is handed off in queue order");
        }
    }

    #[test]
    fn should_sleep_error_aborts_without_holding() {
        let l = Arc::new(new());
        l.lock_intent();
        l.lock_read();
        let l2 = l.clone();
        let barrier = Arc::new(Barrier::new(2));
        let b2 = barrier.clone();
        let t = thread::spawn(move || {
            let w = SixWaiter::new();
            let mut calls = 0;
            let r = l2.lock_with(Intent, &w, |_| {
                calls += 1;
                if calls == 2 {
                    Err(-11)
                } else {
                    Ok(())
                }
            });
            b2.wait();
            r
        });
        wait_for_waiter(&l);
        l.wakeup_all();
        barrier.wait();
        assert_eq!(t.join().unwrap(), Err(-11));
        let mut n = 0;
        l.for_each_waiter(|_| n += 1);
        assert_eq!(n, 0, "aborted waiter unlinked");
        assert_eq!(l.counts().n, [1, 1, 0]);

        // A writer that gives up drops its claim, letting readers in.
        let l3 = l.clone();
        l.unlock_intent();
        let t = thread::spawn(move || {
            l3.lock_intent();
            let w = SixWaiter::new();
            let r = l3.lock_with(Write, &w, |_| Err(-4));
            let c = l3.counts();
            l3.unlock_intent();
            (r, c)
        });
        let (r, c) = t.join().unwrap();
        assert_eq!(r, Err(-4));
        assert_eq!(c.n, [1, 1, 0]);
        assert!(l.trylock_read());
        l.unlock_read();
        l.unlock_read();
        assert_eq!(l.counts().n, [0, 0, 0]);
    }

    #[test]
    fn read_waiters_all_get_the_lock_when_write_unlocks() {
        let l = Arc::new(new());
        l.lock_intent();
        l.lock_write();
        let mut ts = std::vec::Vec::new();
        for _ in 0..3 {
            let l2 = l.clone();
            ts.push(thread::spawn(move || {
                l2.lock_read();
                let s = l2.seq();
                l2.unlock_read();
                s
            }));
        }
        loop {
            let mut n = 0;
            l.for_each_waiter(|_| n += 1);
            if n == 3 {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        l.unlock_write();
        for t in ts {
            assert_eq!(t.join().unwrap(), 1);
        }
        l.unlock_intent();
        assert_eq!(l.counts().n, [0, 0, 0]);
    }
}
