// SPDX-License-Identifier: GPL-2.0
//! [`Shared`]: a part of the filesystem that is either borrowed (the host
//! tests and the tool, which build the write side on their stack) or owned
//! through an [`Arc`] (a mount, whose write side must outlive every system
//! call and so holds `Shared<'static, _>` parts).
//!
//! C has no counterpart: `struct bch_fs` embeds its parts and everything
//! points into it.  Here the btree write side ([`crate::btree::BtreeFs`]),
//! the triggers and the node allocator name their parts through this type,
//! so that one definition serves both lifetimes.

use core::ops::Deref;

use crate::platform::Arc;

/// A `&'a T` or an `Arc<T>`; derefs to `T` either way.  Covariant in `'a`,
/// so a `'static` (all-owned) value can be lent where a shorter lifetime
/// is expected.
// The explicit `T: 'a` is what makes `Shared<'a, dyn Trait>` mean
// `dyn Trait + 'a` (default object lifetime bounds come from declared
// bounds only), so that borrowed trait objects need not be `'static`.
#[allow(explicit_outlives_requirements)]
pub enum Shared<'a, T: ?Sized + 'a> {
    /// Borrowed for `'a`.
    Borrowed(&'a T),
    /// Owned (shared ownership).
    Owned(Arc<T>),
}

impl<T: ?Sized> Deref for Shared<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Shared::Borrowed(r) => r,
            Shared::Owned(a) => a,
        }
    }
}

impl<T: ?Sized> Clone for Shared<'_, T> {
    fn clone(&self) -> Self {
        match self {
            Shared::Borrowed(r) => Shared::Borrowed(r),
            Shared::Owned(a) => Shared::Owned(a.clone()),
        }
    }
}

impl<'a, T> From<&'a T> for Shared<'a, T> {
    fn from(r: &'a T) -> Self {
        Shared::Borrowed(r)
    }
}

impl<T> From<Arc<T>> for Shared<'_, T> {
    fn from(a: Arc<T>) -> Self {
        Shared::Owned(a)
    }
}
