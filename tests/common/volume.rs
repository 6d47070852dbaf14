// SPDX-License-Identifier: GPL-2.0
//! A volume made as the tool makes one, in memory: our `format` (fixed
//! uuids and time) then `fs_initialize` and a clean shutdown through
//! `BchFsOpen`, for the tests of the read-write filesystem.

use std::sync::Arc;

use bcachefs_rs::btree::testing::MemDev;
use bcachefs_rs::format::sb_write::{format, FormatOpts};
use bcachefs_rs::fs_initialize::fs_initialize;
use bcachefs_rs::fs_rw::{BchFsOpen, SharedDev};
use bcachefs_rs::platform::{BlockDev, WriteFlags};

/// When the volume is formatted, ns since the epoch.
pub const FORMAT_NS: i64 = 1_700_000_000_000_000_000;
/// When it is initialized, ns since the epoch.
pub const INIT_NS: i64 = 1_700_000_001_000_000_000;

/// A device of `bytes` holding a volume formatted with `opts` (name,
/// value) and initialized by a mount with random seed `seed`.
pub fn initialized(bytes: usize, opts: &[(&str, u64)], seed: u64) -> Arc<MemDev> {
    let mut o = FormatOpts::new([1; 16], [2; 16], [3; 16], FORMAT_NS as u64);
    for (name, v) in opts {
        o.set(name, *v).unwrap();
    }
    let f = format(bytes as u64, &o).unwrap();
    let mem = Arc::new(MemDev::new(bytes));
    for (sector, data) in f.writes().unwrap().iter() {
        mem.write_sectors(*sector, data, WriteFlags::default()).unwrap();
    }
    let open = BchFsOpen::open(SharedDev(mem.clone())).unwrap();
    assert!(open.fresh);
    open.mount(INIT_NS, seed, |fs| {
        fs_initialize(fs)?;
        fs.shutdown()
    })
    .unwrap();
    mem
}
