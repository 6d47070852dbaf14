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
        pr_info!("loaded: filesystem type bcachefs, metadata version {}\n",
                 crate::format::version::Version(crate::format::version::VERSION_CURRENT));
        Ok(BcachefsModule { _fs_type: fs_type, _kset: kset })
    }
}
