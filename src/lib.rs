// SPDX-License-Identifier: GPL-2.0
//! bcachefs, in Rust.
//!
//! One crate, two homes.  Built by Kbuild with `--cfg bch_kernel` it is the
//! `bcachefs_rs.ko` module: the shared core below plus the kernel glue
//! (`module`, VFS, block I/O, sysfs).  Built by Cargo it is the host library
//! behind the userspace tool and `cargo test`: the same shared core on the
//! host backend of [`platform`].
//!
//! The shared core is `no_std` in both homes and touches the outside world
//! only through [`platform`].

#![cfg_attr(not(bch_kernel), no_std)]

#[cfg(not(bch_kernel))]
extern crate std;

pub mod accounting;
pub mod alloc;
pub mod backpointers;
pub mod bcachefs;
pub mod btree;
pub mod checksum;
pub mod compress;
pub mod errcode;
pub mod format;
pub mod fs_common;
pub mod fs_initialize;
pub mod fs_rw;
pub mod gc;
pub mod journal;
pub mod opts;
pub mod perf_test;
pub mod platform;
pub mod recovery;
pub mod sb_marks;
pub mod sync;
pub mod triggers;
pub mod util;

// Kernel glue: only in the module.
#[cfg(bch_kernel)]
mod bindings;
#[cfg(bch_kernel)]
mod block;
#[cfg(bch_kernel)]
mod fs;
#[cfg(bch_kernel)]
mod kthread;
#[cfg(bch_kernel)]
mod module;
#[cfg(bch_kernel)]
mod sysfs;

#[cfg(bch_kernel)]
use module::BcachefsModule;

#[cfg(bch_kernel)]
kernel::prelude::module! {
    type: BcachefsModule,
    name: "bcachefs_rs",
    author: "bcachefs-rs developers",
    description: "bcachefs filesystem, in Rust (on-disk format of Linux 6.12, metadata version 1.13)",
    license: "GPL",
}
