// SPDX-License-Identifier: GPL-2.0
//! On-disk types of bcachefs metadata version 1.13 (Linux 6.12,
//! `fs/bcachefs/bcachefs_format.h`).  Everything here is little-endian and
//! parsed from byte slices with bounds checks: malformed input is an error,
//! never a panic.
//!
//! - [`sb`]: `struct bch_sb`, its fields, checksum, validation and reading
//!   from a device.
//! - [`sb_members`]: member devices (`members_v1`, `members_v2`).
//! - [`sb_opts`]: the superblock flag bit-fields and the options in them.
//! - [`sb_write`]: building superblocks; formatting a new filesystem.
//! - [`version`]: metadata versions.
//! - [`bpos`]: key positions and versions.
//! - [`bkey`]: keys, key formats (pack/unpack), key type and btree tables.
//! - [`val`]: key values: parsing, checks, `list`-style printing.
//! - [`varint`]: the variable-length integers of inode values.
//! - [`str_hash`]: dirent and xattr name hashing (SipHash, crc).
//! - [`btree_node`]: btree nodes: bsets, checksums, merging, writing.
//! - [`jset`]: journal entries: jsets, entry types, checksums, seq rules.
//! - [`list`]: re-exports of what moved to [`crate::journal::read`](mod@crate::journal::read) and
//!   [`crate::bcachefs`] (the journal read, the btree roots, `FsInfo`).

pub mod bkey;
pub mod bpos;
pub mod btree_node;
pub mod jset;
pub mod list;
pub mod str_hash;
pub mod val;
pub mod varint;

pub mod sb;
pub mod sb_members;
pub mod sb_opts;
pub mod sb_write;
pub mod version;
