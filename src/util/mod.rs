// SPDX-License-Identifier: GPL-2.0
//! Small helpers the shared core needs and neither home provides in the
//! form the kernel wants (`fs/bcachefs/util.[ch]`).

pub mod le;
pub mod shared;
pub mod sort;
pub mod time_stats;

pub use shared::Shared;
