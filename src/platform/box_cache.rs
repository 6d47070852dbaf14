// SPDX-License-Identifier: GPL-2.0
//! [`BoxCache`]: a few heap objects kept for reuse, taken and put back
//! without a lock, so that a hot path (a btree transaction's buffers) does
//! not allocate and free every time.  The same code in both homes, over
//! the platform's [`Box`].

use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering::{Acquire, Relaxed, Release}};

use super::{box_new, Box};
use crate::errcode::AllocError;

/// Up to `N` boxed `T`s kept for reuse.
///
/// # Invariants
///
/// A non-null slot holds a pointer from `Box::into_raw` that nothing else
/// owns: the slot owns it until a [`take`](Self::take) swaps it out.
pub struct BoxCache<T, const N: usize> {
    slots: [AtomicPtr<T>; N],
    _owns: PhantomData<*mut T>,
}

// SAFETY: the cache only moves owned `T`s in and out (no shared access to
// one), so it may be shared and sent between threads when `T` may be sent.
unsafe impl<T: Send, const N: usize> Sync for BoxCache<T, N> {}
// SAFETY: as above.
unsafe impl<T: Send, const N: usize> Send for BoxCache<T, N> {}

impl<T, const N: usize> BoxCache<T, N> {
    /// An empty cache.
    pub fn new() -> Self {
        BoxCache { slots: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())), _owns: PhantomData }
    }

    /// A kept object, if any.
    pub fn take(&self) -> Option<Box<T>> {
        for s in self.slots.iter() {
            if s.load(Relaxed).is_null() {
                continue;
            }
            let p = s.swap(ptr::null_mut(), Acquire);
            if !p.is_null() {
                // SAFETY: per the type invariant `p` came from
                // `Box::into_raw` and was owned by the slot; the swap made
                // this call its only owner.
                return Some(unsafe { Box::from_raw(p) });
            }
        }
        None
    }

    /// A kept object, or `make()` in a new box.
    ///
    /// Errors: [`AllocError`].
    pub fn take_or(&self, make: impl FnOnce() -> T) -> Result<Box<T>, AllocError> {
        match self.take() {
            Some(b) => Ok(b),
            None => box_new(make()),
        }
    }

    /// Keeps `b` for a later [`take`](Self::take), or frees it when every
    /// slot is full.
    pub fn put(&self, b: Box<T>) {
        let p = Box::into_raw(b);
        for s in self.slots.iter() {
            if s.compare_exchange(ptr::null_mut(), p, Release, Relaxed).is_ok() {
                return;
            }
        }
        // SAFETY: `p` came from `Box::into_raw` just above and no slot
        // took it.
        drop(unsafe { Box::from_raw(p) });
    }
}

impl<T, const N: usize> Default for BoxCache<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Drop for BoxCache<T, N> {
    fn drop(&mut self) {
        while self.take().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_n_and_hands_each_out_once() {
        let c: BoxCache<u32, 2> = BoxCache::new();
        assert!(c.take().is_none());
        for i in 0..3 {
            c.put(box_new(i).unwrap());
        }
        let mut got = [*c.take().unwrap(), *c.take().unwrap()];
        got.sort();
        assert_eq!(got, [0, 1]);
        assert!(c.take().is_none());
        assert_eq!(*c.take_or(|| 7).unwrap(), 7);
    }
}
