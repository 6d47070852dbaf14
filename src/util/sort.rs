// SPDX-License-Identifier: GPL-2.0
//! An in-place heapsort: no recursion, no allocation, constant stack.
//!
//! `core`'s `sort_unstable` recurses (pdqsort) and its monomorphised frames
//! are kilobytes deep in the kernel build, enough to overflow a 16 KiB
//! kernel stack on a large journal (`JournalKeys::build` did).  The kernel
//! itself sorts with a heapsort (`lib/sort.c`, which C bcachefs uses);
//! this is the same algorithm.  Not stable.

use core::cmp::Ordering;

/// Sorts `v` in place by `cmp`, in O(n log n) time and O(1) stack.
pub fn sort_by<T, F: FnMut(&T, &T) -> Ordering>(v: &mut [T], mut cmp: F) {
    let n = v.len();
    // Build a max-heap, then move the maximum to the end n - 1 times.
    for start in (0..n / 2).rev() {
        sift_down(v, start, n, &mut cmp);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end, &mut cmp);
    }
}

/// Sorts `v` in place by the key `f` extracts.
pub fn sort_by_key<T, K: Ord, F: FnMut(&T) -> K>(v: &mut [T], mut f: F) {
    sort_by(v, |a, b| f(a).cmp(&f(b)));
}

/// Sorts `v` in place in ascending order.
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, |a, b| a.cmp(b));
}

/// Restores the heap property below `root` within `v[..end]`.
fn sift_down<T, F: FnMut(&T, &T) -> Ordering>(v: &mut [T], mut root: usize, end: usize, cmp: &mut F) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && cmp(&v[child], &v[child + 1]) == Ordering::Less {
            child += 1;
        }
        if cmp(&v[root], &v[child]) != Ordering::Less {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_like_std(mut v in proptest::collection::vec(any::<u16>(), 0..300)) {
            let mut want = v.clone();
            want.sort();
            super::sort(&mut v);
            prop_assert_eq!(v, want);
        }

        #[test]
        fn sorts_by_key(mut v in proptest::collection::vec((any::<u8>(), any::<u8>()), 0..300)) {
            super::sort_by_key(&mut v, |p| p.0);
            prop_assert!(v.windows(2).all(|w| w[0].0 <= w[1].0));
            let _: Vec<u8> = v.iter().map(|p| p.1).collect();
        }
    }
}
