// SPDX-License-Identifier: GPL-2.0
//! Module entry: registers the filesystem type and creates
//! `/sys/fs/bcachefs/`; unloading removes both (`bcachefs_init` and
//! `bcachefs_exit` in `fs/bcachefs/super.c`).

use kernel::prelude::*;

use crate::fs::Registration;
use crate::sysfs::BcachefsKset;

/// The loaded module.  Fields drop in declaration order: the filesystem
/// type is unregistered before the kset is removed.
pub(crate) struct BcachefsModule {
    /// `/sys/module/bcachefs_rs/six_lock_test` (see `sync::selftest`);
    /// removed first, waiting for a running test.
    _six_lock_test: Option<crate::sync::selftest::Trigger>,
    _fs_type: Registration,
    _kset: BcachefsKset,
}

impl kernel::Module for BcachefsModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        // The filesystem type first: if the C module owns the name, this
        // fails cleanly with EBUSY, where a duplicate kset would make
        // sysfs complain loudly.
        let fs_type = Registration::register(module).map_err(|e| {
            pr_err!("cannot register filesystem type bcachefs ({e}): is the C bcachefs module loaded?\n");
            Error::from_errno(e.to_kernel())
        })?;
        let kset = BcachefsKset::create().map_err(|e| {
            pr_err!("cannot create /sys/fs/bcachefs ({e})\n");
            Error::from_errno(e.to_kernel())
        })?;
        // A test hook only: the module works without it.
        let six_lock_test = crate::sync::selftest::Trigger::register(module)
            .inspect_err(|e| pr_notice!("no six_lock_test file ({e:?})\n"))
            .ok();
        pr_info!("loaded: filesystem type bcachefs, metadata version {}\n",
                 crate::format::version::Version(crate::format::version::VERSION_CURRENT));
        Ok(BcachefsModule { _six_lock_test: six_lock_test, _fs_type: fs_type, _kset: kset })
    }
}
