// SPDX-License-Identifier: GPL-2.0
//! Kernel backend of the platform layer: `KVec` allocation with
//! `GFP_KERNEL`, `printk` logging.  Block devices are implemented by the
//! kernel glue in `src/block/`.

use core::ops::{Deref, DerefMut};
use core::pin::Pin;
use core::ptr;

use kernel::alloc::{flags::GFP_KERNEL, KBox, KVec};
use kernel::init::InPlaceInit;

use crate::errcode::AllocError;

/// A growable array whose every allocating method is fallible.  In the
/// kernel it wraps `KVec` and allocates with `GFP_KERNEL`; filesystem paths
/// that must not recurse into reclaim set a `memalloc_nofs` scope around
/// themselves instead of passing flags down here.
pub struct Vec<T>(KVec<T>);

impl<T> Vec<T> {
    /// An empty vector; does not allocate.
    pub const fn new() -> Self {
        Vec(KVec::new())
    }

    /// An empty vector with room for `n` elements.
    pub fn with_capacity(n: usize) -> Result<Self, AllocError> {
        KVec::with_capacity(n, GFP_KERNEL).map(Vec).map_err(|_| AllocError)
    }

    /// Appends `x`, growing the allocation if needed.
    pub fn push(&mut self, x: T) -> Result<(), AllocError> {
        self.0.push(x, GFP_KERNEL).map_err(|_| AllocError)
    }

    /// Makes room for at least `n` more elements.
    pub fn reserve(&mut self, n: usize) -> Result<(), AllocError> {
        self.0.reserve(n, GFP_KERNEL).map_err(|_| AllocError)
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<T> {
        let len = self.0.len();
        if len == 0 {
            return None;
        }
        // SAFETY: `len - 1 < len`, so the element is initialised; shrinking
        // the length first hands its ownership to `ptr::read` exactly once.
        unsafe {
            self.0.set_len(len - 1);
            Some(ptr::read(self.0.as_ptr().add(len - 1)))
        }
    }

    /// Shortens the vector to `len` elements, dropping the rest.
    pub fn truncate(&mut self, len: usize) {
        let old = self.0.len();
        if len >= old {
            return;
        }
        // SAFETY: elements `len..old` are initialised.  The length is
        // lowered before dropping them, so a panicking destructor cannot
        // lead to a double drop.
        unsafe {
            self.0.set_len(len);
            let tail = ptr::slice_from_raw_parts_mut(self.0.as_mut_ptr().add(len), old - len);
            ptr::drop_in_place(tail);
        }
    }

    /// Elements the allocation has room for.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Removes every element, keeping the allocation.
    pub fn clear(&mut self) {
        self.truncate(0)
    }

    /// Keeps only the elements for which `f` holds, in their order,
    /// calling `f` once on each element front to back; the others are
    /// dropped after the pass.  Does not allocate.
    pub fn retain(&mut self, mut f: impl FnMut(&T) -> bool) {
        let kept = super::compact_front(&mut self.0, |_, x| f(x));
        self.truncate(kept);
    }

    /// Removes consecutive repeated elements, keeping the first of each
    /// run (an element is dropped when it equals the last one kept), so a
    /// sorted vector ends up without duplicates.  Order is kept; does not
    /// allocate.
    pub fn dedup(&mut self)
    where
        T: PartialEq,
    {
        let kept = super::compact_front(&mut self.0, |last, x| last != Some(x));
        self.truncate(kept);
    }
}

impl<T: Clone> Vec<T> {
    /// Appends a copy of every element of `s`.
    pub fn extend_from_slice(&mut self, s: &[T]) -> Result<(), AllocError> {
        self.0.extend_from_slice(s, GFP_KERNEL).map_err(|_| AllocError)
    }

    /// Grows or shrinks to `len` elements, filling with `x`.
    pub fn resize(&mut self, len: usize, x: T) -> Result<(), AllocError> {
        let old = self.0.len();
        if len <= old {
            self.truncate(len);
            return Ok(());
        }
        self.0.extend_with(len - old, x, GFP_KERNEL).map_err(|_| AllocError)
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for Vec<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl<T> Default for Vec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Deref for Vec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> DerefMut for Vec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

/// A heap allocation with one owner (`KBox`).  Make one with [`box_new`].
pub type Box<T> = KBox<T>;

/// A new [`Box`] holding `x`, allocated with `GFP_KERNEL`.
///
/// Errors: [`AllocError`].
pub fn box_new<T>(x: T) -> Result<Box<T>, AllocError> {
    KBox::new(x, GFP_KERNEL).map_err(|_| AllocError)
}

/// Shared ownership with an atomic reference count (`kernel::sync::Arc`).
/// Make one with [`arc_new`].
pub type Arc<T> = kernel::sync::Arc<T>;

/// A new [`Arc`] holding `x`, allocated with `GFP_KERNEL`.
///
/// Errors: [`AllocError`].
pub fn arc_new<T>(x: T) -> Result<Arc<T>, AllocError> {
    kernel::sync::Arc::new(x, GFP_KERNEL).map_err(|_| AllocError)
}

/// A sleeping mutual-exclusion lock around a `T`: a `kernel::sync::Mutex`
/// (`struct mutex`) allocated pinned in a `KBox`, so the wrapper itself
/// may move.  Not for use in atomic context.
pub struct Mutex<T>(Pin<KBox<kernel::sync::Mutex<T>>>);

/// What [`Mutex::lock`] returns: derefs to the `T`; unlocks on drop.
pub type MutexGuard<'a, T> = kernel::sync::lock::Guard<'a, T, kernel::sync::lock::mutex::MutexBackend>;

/// Lockdep classes for [`Mutex`]es: each call site of [`Mutex::new`] gets
/// its own, as C's `mutex_init()` gives each call site its own static key.
/// With one class for all of them, every nesting of two mutexes (the node
/// pointers' lock around the btree roots' lock, a mount's operation lock
/// around anything) was reported as recursive locking; with classes picked
/// by a hash of the site, two sites that collided were (the write buffer's
/// flush lock around the journal's state lock).  Sites are given slots
/// first come, first served ([`LOCK_SITES`]); past 512 sites they share.
static LOCK_CLASSES: [kernel::sync::LockClassKey; 512] =
    // SAFETY: lockdep expects uninitialized memory for statically
    // allocated `lock_class_key`s (as `static_lock_class!()` makes them).
    unsafe { core::mem::MaybeUninit::uninit().assume_init() };

/// The call site each slot of [`LOCK_CLASSES`] belongs to (null: free).
static LOCK_SITES: [core::sync::atomic::AtomicPtr<core::panic::Location<'static>>; 512] = {
    const FREE: core::sync::atomic::AtomicPtr<core::panic::Location<'static>> = core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());
    [FREE; 512]
};

/// Whether `a` (a slot's site) is the site `b`.
fn same_site(a: *mut core::panic::Location<'static>, b: &core::panic::Location<'static>) -> bool {
    // SAFETY: slots only ever hold `&'static Location`s.
    let a = unsafe { &*a };
    a.line() == b.line() && a.column() == b.column() && a.file() == b.file()
}

/// The lock class of the [`Mutex::new`] call at `loc`.
fn lock_class(loc: &'static core::panic::Location<'static>) -> &'static kernel::sync::LockClassKey {
    use core::sync::atomic::Ordering::{AcqRel, Acquire};
    // FNV-1a over file, line and column: where the search starts.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = loc.file().bytes().chain(loc.line().to_le_bytes()).chain(loc.column().to_le_bytes());
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let n = LOCK_CLASSES.len();
    let start = (h % n as u64) as usize;
    let want = (loc as *const core::panic::Location<'static>).cast_mut();
    for probe in 0..n {
        let i = (start + probe) % n;
        let Some(slot) = LOCK_SITES.get(i) else { break };
        let cur = match slot.compare_exchange(core::ptr::null_mut(), want, AcqRel, Acquire) {
            Ok(_) => want,
            Err(cur) => cur,
        };
        if same_site(cur, loc) {
            return LOCK_CLASSES.get(i).unwrap_or(&LOCK_CLASSES[0]);
        }
    }
    LOCK_CLASSES.get(start).unwrap_or(&LOCK_CLASSES[0])
}

impl<T> Mutex<T> {
    /// A mutex holding `x`, of the lock class of the caller's location.
    ///
    /// Errors: [`AllocError`].
    #[track_caller]
    pub fn new(x: T) -> Result<Self, AllocError> {
        let key = lock_class(core::panic::Location::caller());
        KBox::pin_init(kernel::sync::Mutex::new(x, kernel::c_str!("bcachefs_rs_mutex"), key), GFP_KERNEL)
            .map(Mutex)
            .map_err(|_| AllocError)
    }

    /// Waits for and takes the lock.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock()
    }
}

/// Whether a rate-limited message may be printed now
/// (`printk_ratelimit()`: a burst of 10 per 5 s by default).
pub fn log_ratelimit() -> bool {
    // SAFETY: `__printk_ratelimit` only reads the NUL-terminated name it is
    // given (for its "callbacks suppressed" message); the literal lives
    // for the whole program.
    unsafe { kernel::bindings::__printk_ratelimit(c"bcachefs_rs".as_ptr().cast()) != 0 }
}

/// Stops the machine after `msg` (`errors=panic`, C's `panic()` in
/// `bch2_inconsistent_error()`): the message is logged at `KERN_EMERG`,
/// then the kernel panics.
pub fn fatal_panic(msg: core::fmt::Arguments<'_>) -> ! {
    ::kernel::pr_emerg!("{}\n", msg);
    // SAFETY: `bch_rs_panic` only reads the NUL-terminated literal, which
    // lives for the whole program; it does not return.
    unsafe { crate::bindings::bch_rs_panic(c"bcachefs_rs: panic after an inconsistency (errors=panic)".as_ptr().cast()) }
}

#[doc(hidden)]
pub mod log_impl {
    /// Logs an error line.
    #[macro_export]
    macro_rules! bch_err { ($($a:tt)*) => { ::kernel::pr_err!("{}\n", ::core::format_args!($($a)*)) } }
    /// Logs a warning line.
    #[macro_export]
    macro_rules! bch_warn { ($($a:tt)*) => { ::kernel::pr_warn!("{}\n", ::core::format_args!($($a)*)) } }
    /// Logs an informational line.
    #[macro_export]
    macro_rules! bch_info { ($($a:tt)*) => { ::kernel::pr_info!("{}\n", ::core::format_args!($($a)*)) } }
    /// Logs an error line unless too many were logged recently
    /// (`bch_err_ratelimited()`).
    #[macro_export]
    macro_rules! bch_err_ratelimited { ($($a:tt)*) => { if $crate::platform::log_ratelimit() { ::kernel::pr_err!("{}\n", ::core::format_args!($($a)*)) } } }
    pub use bch_err as err;
    pub use bch_err_ratelimited as err_ratelimited;
    pub use bch_info as info;
    pub use bch_warn as warn;
}
