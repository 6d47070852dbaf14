// SPDX-License-Identifier: GPL-2.0
//! VFS-independent filesystem operations over the btrees, read side: the
//! root subvolume, inodes, directory lookup and listing, symlinks, file
//! data and free space.  The kernel's VFS glue (`crate::fs`) and the
//! userspace tool both call these; neither knows about btree keys.
//!
//! Matches, in `fs/bcachefs`: `fs-common.c`, `inode.c`
//! (`bch2_inode_find_by_inum_snapshot`), `dirent.c` (`bch2_dirent_lookup`,
//! `bch2_readdir`), `str_hash.h` (`bch2_hash_lookup_in_snapshot`),
//! `io_read.c` (`__bch2_read`, `__bch2_read_extent`) and `fs.c`
//! (`bch2_statfs`).
//!
//! Everything is generic over [`BtreeRead`], the one thing these
//! operations need from below: iterate the live keys of a btree (the btree
//! with the journal's newer keys overlaid) and read device sectors.  Tests
//! use an in-memory [`BtreeRead`]; the filesystem uses
//! [`crate::bcachefs::Fs`].
//!
//! Single subvolume, single snapshot: every operation reads the snapshot of
//! the subvolume it was handed ([`Subvol`]) and ignores keys of others.
//!
//! Files: `subvolume.rs` (subvolumes), `inode.rs` (inodes and getattr),
//! `dirent.rs` (lookup and readdir), `io_read.rs` (file data and
//! symlinks), `statfs.rs` (free space); `tests.rs` runs them all over an
//! in-memory [`BtreeRead`].
//!
//! The write side runs on a transaction ([`trans::BtreeTransOps`], with
//! [`trans::commit_do`]): `inode_write.rs` (`inode.c`: init, number
//! allocation, link counts, removal), `str_hash_write.rs` (`str_hash.h`:
//! hashed insert and delete with whiteouts), `fs_ops.rs` (`fs-common.c`,
//! `dirent.c`: create, link, unlink, rename, setattr, symlink),
//! `xattr.rs` (`xattr.c`), `io_write.rs` (`io_write.c`: extents, inline
//! data, punch, truncate), `compress_write.rs` (`compress.c`: compression
//! on write); `write_tests.rs` checks them against the read side over an
//! in-memory transaction, and `tests/fs_write_c.rs` against the keys C
//! wrote.
//!
//! The read side's [`ExtentCache`] and [`DevReadAhead`] assume nothing
//! changes: a reader of a file that is being written must drop them after
//! every write or truncate of that file.

use crate::errcode::Errno;
use crate::format::bkey::BtreeId;
#[cfg(test)]
use crate::format::bkey::Bkey;
use crate::format::bpos::Bpos;
use crate::platform::Vec;

/// A key read from a btree: the unpacked key and its value, owned (the
/// core's [`crate::format::bkey::BkeyI`]).
pub use crate::format::bkey::BkeyI as OwnedKey;

/// What the operations of this module need from the btrees and the device.
///
/// Positions are compared as bpos (inode, offset, snapshot).  Errors are
/// `EIO` (a read failed or a node is corrupt: the implementation has
/// already logged which device, btree and position) and `ENOMEM`.
pub trait BtreeRead {
    /// The first key of `btree` (leaf level, journal overlaid) with
    /// `from <= pos <= to`, skipping `deleted` keys and, unless
    /// `whiteouts`, `whiteout` and `hash_whiteout` keys.
    fn peek_upto(&self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<OwnedKey>, Errno>;

    /// Reads `buf.len()` bytes (a multiple of 512) of member device `dev`
    /// from 512-byte sector `sector`.  Errors: `EIO`; `EOPNOTSUPP` for a
    /// device this filesystem does not have open.
    fn read_data(&self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// Does every one of `reads` as [`BtreeRead::read_data`] would, leaving
    /// each outcome in its `result` (so that an error is known per read).
    /// Implementations over a kernel device have them all in flight at
    /// once; the default reads one after the other.
    fn read_data_many(&self, reads: &mut [crate::platform::DevRead<'_>]) {
        for r in reads.iter_mut() {
            r.result = self.read_data(r.dev, r.sector, r.buf);
        }
    }

    /// Name of the filesystem's device, for messages.
    fn dev_name(&self) -> &str;

    /// A data checksum error on member device `dev` (`bch2_io_error()`
    /// with `BCH_MEMBER_ERROR_checksum`): counted where the implementation
    /// counts I/O errors.  Nothing by default.
    fn checksum_error(&self, _dev: u8) {}

    /// Superblock facts (block size, time units, capacity).
    fn facts(&self) -> &FsFacts;
}

/// A subvolume: where its files live (`struct bch_subvolume`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subvol {
    /// Subvolume id (`BCACHEFS_ROOT_SUBVOL` = 1 for the root).
    pub id: u32,
    /// Its snapshot id: the `snapshot` field of its keys.
    pub snapshot: u32,
    /// Its root directory inode (`BCACHEFS_ROOT_INO` = 4096 for the root).
    pub root_inum: u64,
}

/// An inode's attributes as `getattr` reports them (from `bch_inode_v3`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeAttrs {
    /// Inode number.
    pub inum: u64,
    /// `st_mode` (type and permission bits).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Allocated size in 512-byte sectors (`bi_sectors`).
    pub sectors: u64,
    /// Link count as the VFS counts it (`bch2_inode_nlink_get()`:
    /// directories 2 + subdirectories... as C derives it).
    pub nlink: u32,
    /// Device number for character and block devices (`bi_dev`, the
    /// kernel's internal `dev_t` encoding, as C stores `i_rdev`).
    pub rdev: u32,
    /// Generation.
    pub generation: u32,
    /// Times in nanoseconds since the epoch (bcachefs stores them in units
    /// of the superblock's `time_precision`; converted here).
    pub atime_ns: i64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Change time, ns.
    pub ctime_ns: i64,
    /// Birth time, ns.
    pub otime_ns: i64,
    /// `bch_inode` flags (`BCH_INODE_*`, bits 0-19 of `bi_flags`).
    pub flags: u32,
    /// The string hash type and seed of its entries (directories).
    pub hash_type: u8,
    /// Seed of the entries' hash.
    pub hash_seed: u64,
}

/// One directory entry as readdir reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// Name, 1..=512 bytes (`BCH_NAME_MAX`; names over 255 bytes are
    /// rare but 6.12 creates them).
    pub name: &'a [u8],
    /// Target inode number (for a subvolume entry: that subvolume's root).
    pub inum: u64,
    /// `DT_*` type of the target.
    pub d_type: u8,
    /// The position to resume from after this entry (the entry's hash
    /// offset + 1); positions are stable across calls.
    pub next_pos: u64,
}

/// Free-space figures for `statfs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    /// Block size in bytes.
    pub block_bytes: u32,
    /// Total data blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Inodes in use (`files`) and free (`ffree`).
    pub files: u64,
    /// Free inodes (an estimate, as C's).
    pub ffree: u64,
    /// Longest name: `BCH_NAME_MAX`, 512 in 6.12 (what its `statfs`
    /// reports).
    pub namelen: u32,
}

/// Superblock facts the operations need (from `bch_sb` and its options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsFacts {
    /// Block size, bytes.
    pub block_bytes: u32,
    /// `time_base_lo`: added to stored times, in units of
    /// `time_precision` (C's `c->sb.time_base_lo`: the superblock's
    /// nanosecond `time_base_lo` divided by `time_precision`).
    pub time_base_lo: u64,
    /// `time_precision`: nanoseconds per stored time unit.
    pub time_precision_ns: u32,
    /// Usable capacity in 512-byte sectors (buckets after `first_bucket`
    /// times bucket size less the copygc reserve, as
    /// `bch2_recalc_capacity()`: see [`recalc_capacity`]).
    pub capacity_sectors: u64,
    /// Bucket size in 512-byte sectors.
    pub bucket_sectors: u32,
}

/// The newest decoded extent a reader saw: sequential reads through 4 KiB
/// folios decode (read, checksum, decompress) each extent once.  Owned and
/// locked by the caller (one per open inode in the kernel).
#[derive(Default)]
pub struct ExtentCache {
    /// Inode number (0 for an indirect extent of the reflink btree), key
    /// position and version (`bversion.lo`) of the cached extent; `None`
    /// when empty.
    pub tag: Option<(u64, Bpos, u64)>,
    /// Where the cached key starts, in sectors of its btree: the file
    /// sector for the extents btree, the reflink offset for an indirect
    /// extent.
    pub start_sector: u64,
    /// The live data of the key, decoded: `k.size` sectors.  Only
    /// checksummed or compressed extents are cached; plain ones are read
    /// straight into the caller's buffer.
    pub data: Vec<u8>,
    /// Device read-ahead for sequential readers.
    pub ra: DevReadAhead,
}

/// Device read-ahead of one sequential reader: when a read starts where
/// (or shortly after where) the previous one ended, a window of [`RA_WINDOW_BYTES`] is read in one
/// request and the following reads are served from it (a file written
/// sequentially has its extents next to each other on the device).  The
/// data is still checksummed extent by extent.  Not shared between
/// readers; the volume is read-only, so the window cannot go stale.
#[derive(Default)]
pub struct DevReadAhead {
    /// Device of the window and of the last read.
    pub dev: u8,
    /// First 512-byte sector the window holds.
    pub start: u64,
    /// The window (empty when none).
    pub buf: Vec<u8>,
    /// The sector just past the last read: a read starting here is
    /// sequential.
    pub next: u64,
}

/// Size of a read-ahead window, bytes.
pub const RA_WINDOW_BYTES: usize = 512 << 10;

pub mod acl;
pub mod compress_write;
mod dirent;
pub mod fs_ops;
mod inode;
pub mod inode_write;
mod io_read;
pub mod io_misc;
pub mod io_write;
mod statfs;
pub mod str_hash_write;
mod subvolume;
#[cfg(all(test, not(bch_kernel)))]
mod tests;
pub mod trans;
#[cfg(all(test, not(bch_kernel)))]
mod write_tests;
pub mod xattr;

pub use self::dirent::{dir_hash_info, lookup, lookup_entry, readdir, vfs_d_type, DirentTarget, DT_DIR};
pub use self::inode::{
    attrs_from_unpacked, inode_get, inode_unpacked_get, nlink_get, time_to_ns, INODE_FLAGS_MASK,
};
pub use self::io_read::{expensive_extent_end, read_data, read_data_segs, readlink, SYMLINK_MAX};
pub use self::statfs::{
    fs_usage_read, recalc_capacity, statfs, statfs_from_usage, FsUsage, BTREE_NODE_RESERVE, STATFS_COUNTS_NR_INODES,
};
pub use self::subvolume::{root_subvol, subvol_get, BCACHEFS_ROOT_SUBVOL};
