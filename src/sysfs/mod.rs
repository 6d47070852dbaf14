// SPDX-License-Identifier: GPL-2.0
//! sysfs: the `/sys/fs/bcachefs/` kset that every mounted filesystem's
//! `<uuid>/` directory lives under (`bcachefs_kset` in
//! `fs/bcachefs/super.c`).

use core::ptr::NonNull;

use crate::bindings;
use crate::errcode::Errno;

/// The `/sys/fs/bcachefs` directory; removed on drop.
///
/// # Invariants
///
/// `0` is a kset returned by `kset_create_and_add()`, owned by this value.
pub(crate) struct BcachefsKset(NonNull<bindings::kset>);

// SAFETY: a kset is refcounted and internally locked; we only unregister
// it, once, from `Drop`.
unsafe impl Send for BcachefsKset {}
// SAFETY: as above, there are no `&self` methods that mutate.
unsafe impl Sync for BcachefsKset {}

impl BcachefsKset {
    /// Creates `/sys/fs/bcachefs`.
    ///
    /// Errors: `ENOMEM`, or `EBUSY` if it already exists (the C bcachefs
    /// module is loaded).
    pub(crate) fn create() -> Result<Self, Errno> {
        // SAFETY: the name is a static C string; `fs_kobj` is the kernel's
        // `/sys/fs` kobject, which lives as long as the kernel.
        let k = unsafe {
            bindings::kset_create_and_add(
                c"bcachefs".as_ptr().cast(),
                core::ptr::null(),
                bindings::fs_kobj,
            )
        };
        // INVARIANT: non-null means created and owned by us.
        NonNull::new(k).map(BcachefsKset).ok_or(Errno::EBUSY)
    }
}

impl Drop for BcachefsKset {
    fn drop(&mut self) {
        // SAFETY: owned by the type invariant; unregistered once.
        unsafe { bindings::kset_unregister(self.0.as_ptr()) };
    }
}
