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

use crate::errcode::Errno;
use crate::format::bkey::{Bkey, BtreeId};
use crate::format::bpos::Bpos;
use crate::platform::Vec;

/// A key read from a btree: the unpacked key and its value, owned.
#[derive(Debug)]
pub struct OwnedKey {
    /// The key (position, size, type, version).
    pub k: Bkey,
    /// The value, `k.val_bytes()` long.
    pub v: Vec<u8>,
}

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

    /// Name of the filesystem's device, for messages.
    fn dev_name(&self) -> &str;

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
    /// Device number for character and block devices.
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
    /// `bch_inode` flags (`BCH_INODE_*`).
    pub flags: u32,
    /// The string hash type and seed of its entries (directories).
    pub hash_type: u8,
    /// Seed of the entries' hash.
    pub hash_seed: u64,
}

/// One directory entry as readdir reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// Name, 1..=255 bytes.
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
    /// Longest name, 255 (`BCH_NAME_MAX`).
    pub namelen: u32,
}

/// Superblock facts the operations need (from `bch_sb` and its options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsFacts {
    /// Block size, bytes.
    pub block_bytes: u32,
    /// `time_base_lo`: added to stored times (units of `time_precision`).
    pub time_base_lo: u64,
    /// `time_precision`: nanoseconds per stored time unit.
    pub time_precision_ns: u32,
    /// Usable capacity in 512-byte sectors (buckets after `first_bucket`
    /// times bucket size, as `bch2_recalc_capacity()`).
    pub capacity_sectors: u64,
    /// Bucket size in 512-byte sectors.
    pub bucket_sectors: u32,
}

/// The newest decoded extent a reader saw: sequential reads through 4 KiB
/// folios decode (read, checksum, decompress) each extent once.  Owned and
/// locked by the caller (one per open inode in the kernel).
#[derive(Default)]
pub struct ExtentCache {
    /// Inode number, key position and version of the cached extent; `None`
    /// when empty.
    pub tag: Option<(u64, Bpos, u64)>,
    /// The extent's data as the file sees it: `k.size` sectors, starting at
    /// file sector `start_sector`.
    pub start_sector: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// The root subvolume (`BCACHEFS_ROOT_SUBVOL`) from the subvolumes btree.
///
/// Errors: `EUCLEAN` when it is missing; `EIO`, `ENOMEM`.
pub fn root_subvol<T: BtreeRead + ?Sized>(_fs: &T) -> Result<Subvol, Errno> {
    Err(Errno::EOPNOTSUPP)
}

/// Inode `inum` of subvolume `sv` (`bch2_inode_find_by_inum_snapshot`).
///
/// Errors: `ENOENT` when there is none; `EUCLEAN` when it does not unpack;
/// `EIO`, `ENOMEM`.
pub fn inode_get<T: BtreeRead + ?Sized>(_fs: &T, _sv: &Subvol, _inum: u64) -> Result<InodeAttrs, Errno> {
    Err(Errno::EOPNOTSUPP)
}

/// Looks `name` up in directory `dir` (`bch2_dirent_lookup`): hash the
/// name with the directory's hash type and seed, then probe from that
/// offset over collisions and `hash_whiteout`s until the name or a hole.
/// Returns the target inode number and `DT_*` type, `None` when absent.
///
/// Errors: `ENAMETOOLONG` (> 255 bytes); `EIO`, `ENOMEM`.
pub fn lookup<T: BtreeRead + ?Sized>(_fs: &T, _sv: &Subvol, _dir: &InodeAttrs, _name: &[u8]) -> Result<Option<(u64, u8)>, Errno> {
    Err(Errno::EOPNOTSUPP)
}

/// Lists directory `dir` from position `pos` (0: the start; `.` and `..`
/// are the VFS's), calling `emit` for each entry in hash order until it
/// returns `false` (`bch2_readdir`).
///
/// Errors: `EIO`, `ENOMEM`.
pub fn readdir<T: BtreeRead + ?Sized>(
    _fs: &T,
    _sv: &Subvol,
    _dir: &InodeAttrs,
    _pos: u64,
    _emit: &mut dyn FnMut(DirEntry<'_>) -> bool,
) -> Result<(), Errno> {
    Err(Errno::EOPNOTSUPP)
}

/// The target of symlink `inode` (its data, up to the first NUL or
/// `size`), replacing the contents of `out`.
///
/// Errors: `EIO` (including a checksum error), `EUCLEAN`, `ENOMEM`.
pub fn readlink<T: BtreeRead + ?Sized>(_fs: &T, _sv: &Subvol, _inode: &InodeAttrs, _out: &mut Vec<u8>) -> Result<(), Errno> {
    Err(Errno::EOPNOTSUPP)
}

/// Fills `buf` with the file's bytes from `offset` (bytes; `buf.len()` and
/// `offset` multiples of 512): extents read from the device, checksums
/// verified, compressed extents decompressed, inline data copied, holes,
/// reservations and anything past `size` as zeros (`__bch2_read`).
///
/// Errors: `EIO` on a read error, checksum mismatch or undecodable extent,
/// after a rate-limited message naming the device, inode and offset;
/// `ENOMEM`.
pub fn read_data<T: BtreeRead + ?Sized>(
    _fs: &T,
    _sv: &Subvol,
    _inode: &InodeAttrs,
    _offset: u64,
    _buf: &mut [u8],
    _cache: &mut ExtentCache,
) -> Result<(), Errno> {
    Err(Errno::EOPNOTSUPP)
}

/// `statfs` figures (`bch2_statfs`): capacity and usage from the
/// accounting btree.
///
/// Errors: `EIO`, `ENOMEM`.
pub fn statfs<T: BtreeRead + ?Sized>(_fs: &T, _facts: &FsFacts) -> Result<StatFs, Errno> {
    Err(Errno::EOPNOTSUPP)
}

/// Silences "unused" until the operations are written.
#[allow(dead_code)]
fn _unused(_: BtreeId) {}
