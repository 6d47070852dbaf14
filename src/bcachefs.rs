// SPDX-License-Identifier: GPL-2.0
//! The filesystem, opened read-only (`struct bch_fs`; `bch2_fs_open()` in
//! `super.c` and the read half of `bch2_fs_recovery()` in `recovery.c`).
//!
//! SKELETON: signatures agreed between the btree, fs_common and VFS work;
//! bodies to be written.

use core::fmt;

use crate::errcode::Errno;
use crate::format::bkey::BtreeId;
use crate::format::bpos::Bpos;
use crate::fs_common::{BtreeRead, FsFacts, OwnedKey};
use crate::platform::BlockDev;

/// Mount options the read side acts on (parsed by `crate::opts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOpts {
    /// `norecovery`: do not overlay the journal (read the btrees as the
    /// nodes have them).
    pub norecovery: bool,
    /// `verbose`: log each step of the mount.
    pub verbose: bool,
    /// `degraded`: accepted; meaningless on one device.
    pub degraded: bool,
    /// Upper bound of the btree node cache, bytes.
    pub btree_cache_max_bytes: usize,
}

impl Default for OpenOpts {
    fn default() -> Self {
        OpenOpts { norecovery: false, verbose: false, degraded: false, btree_cache_max_bytes: 64 << 20 }
    }
}

/// Why a mount failed.  `Display` names what is wrong (the caller prefixes
/// the device name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not written yet.
    NotYet,
}

impl OpenError {
    /// The errno the mount returns: `EINVAL` (not bcachefs / bad
    /// superblock), `EOPNOTSUPP` (multi-device, encrypted, unsupported
    /// feature), `EIO` (read errors), `EUCLEAN` (corrupt metadata),
    /// `ENOMEM`.
    pub fn errno(&self) -> Errno {
        Errno::EOPNOTSUPP
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not implemented yet")
    }
}

/// Per-device I/O counters (sysfs `dev-0/io_done`), in 512-byte sectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoDone {
    /// Superblock reads.
    pub sb: u64,
    /// Journal reads.
    pub journal: u64,
    /// Btree node reads.
    pub btree: u64,
    /// File data reads.
    pub user: u64,
}

/// An open, read-only filesystem on one device.
pub struct Fs<D: BlockDev> {
    dev: D,
    facts: FsFacts,
}

impl<D: BlockDev> Fs<D> {
    /// Reads and validates the superblock (falling back to a backup), the
    /// journal and the btree roots, and sorts the journal keys for the
    /// overlay.  Nothing is written.
    pub fn open(dev: D, _opts: &OpenOpts) -> Result<Fs<D>, OpenError> {
        let _ = dev;
        Err(OpenError::NotYet)
    }

    /// The device.
    pub fn dev(&self) -> &D {
        &self.dev
    }

    /// External (user-visible) uuid: the sysfs directory name.
    pub fn user_uuid(&self) -> [u8; 16] {
        [0; 16]
    }

    /// The superblock bytes (parse with `format::sb::Sb::parse`).
    pub fn sb_bytes(&self) -> &[u8] {
        &[]
    }

    /// Bytes held by the btree node cache.
    pub fn btree_cache_bytes(&self) -> usize {
        0
    }

    /// Nodes in the btree node cache that [`Fs::btree_cache_shrink`] could free.
    pub fn btree_cache_count(&self) -> usize {
        0
    }

    /// Frees up to `nr` unlocked, least recently used nodes; returns how
    /// many were freed.
    pub fn btree_cache_shrink(&self, _nr: usize) -> usize {
        0
    }

    /// I/O done on the device so far.
    pub fn io_done(&self) -> IoDone {
        IoDone::default()
    }

    /// sysfs `journal_debug`: seq range read, last_seq, blacklist, buckets.
    pub fn journal_debug_to_text(&self, _f: &mut dyn fmt::Write) -> fmt::Result {
        Ok(())
    }
}

impl<D: BlockDev> BtreeRead for Fs<D> {
    fn peek_upto(&self, _btree: BtreeId, _from: Bpos, _to: Bpos, _whiteouts: bool) -> Result<Option<OwnedKey>, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn read_data(&self, _dev: u8, _sector: u64, _buf: &mut [u8]) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn dev_name(&self) -> &str {
        self.dev.name()
    }

    fn facts(&self) -> &FsFacts {
        &self.facts
    }
}
