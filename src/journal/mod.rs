// SPDX-License-Identifier: GPL-2.0
//! The journal, read side: find every jset in the journal buckets the
//! superblock names, keep the replay range (`last_seq` to the newest flush
//! write, blacklisted sequence numbers dropped) and take the btree roots
//! from it.
//!
//! Matches, in `fs/bcachefs`: `journal_io.c` (`bch2_journal_read()`,
//! `journal_read_bucket()`, `jset_validate()`) and the root handling of
//! `recovery.c` (`journal_replay_entry_early()`, `read_btree_roots()`).
//! The bucket scan, the per-jset checks and the replay rules themselves
//! live in [`crate::format::jset`] and [`crate::format::list`], which the
//! userspace tool shares; this module gathers what an open filesystem keeps.

pub mod reclaim;
pub mod res;
pub mod seq_blacklist;
pub mod types;
pub mod write;

pub use res::{JournalRes, JournalSink, PinOwner, ResFlags};

use core::fmt;

use crate::format::bkey::BTREE_ID_NR;
use crate::format::jset::{jset_magic, Jset};
use crate::format::list::{find_root, read_journal, FsInfo, Journal, ListError, Root};
use crate::platform::{BlockDev, Vec};

/// Number of btrees of 6.12 (`BTREE_ID_NR`), as an array length.
pub const NR_BTREES: usize = BTREE_ID_NR as usize;

/// The journal as read at mount.
pub struct JournalRead {
    /// The jsets of the replay range, in sequence order.
    pub journal: Journal,
    /// Sequence number of the oldest jset kept (0 when empty).
    pub seq_first: u64,
    /// Sequence number of the newest jset kept (0 when empty).
    pub seq_last: u64,
    /// Journal buckets scanned.
    pub buckets: usize,
    /// 512-byte sectors read while scanning.
    pub sectors_read: u64,
    /// Blacklisted sequence ranges from the superblock, `[start, end)`.
    pub blacklist: Vec<(u64, u64)>,
    /// Jsets in the replay range (kept when `journal.jsets` is dropped).
    pub nr_jsets: usize,
}

/// Reads the journal of the device (`bch2_journal_read()`): every bucket
/// listed in the superblock, each jset checked (magic, checksum, version,
/// entries), the replay range chosen.
///
/// Errors: [`ListError::Io`] when a bucket cannot be read,
/// [`ListError::Jset`] when a jset of the replay range is corrupt,
/// [`ListError::NoMem`].
pub fn read<D: BlockDev + ?Sized>(dev: &D, fs: &FsInfo) -> Result<JournalRead, ListError> {
    let journal = read_journal(dev, fs)?;
    let magic = jset_magic(&fs.uuid);
    let (mut seq_first, mut seq_last) = (0u64, 0u64);
    for j in journal.jsets.iter() {
        let js = Jset::parse(j, magic).map_err(ListError::Jset)?;
        let s = js.header.seq;
        if seq_first == 0 || s < seq_first {
            seq_first = s;
        }
        seq_last = seq_last.max(s);
    }
    let bucket_sectors = fs
        .devs
        .get(fs.dev_idx as usize)
        .and_then(|d| d.as_ref())
        .map_or(0, |d| u64::from(d.bucket_size));
    let mut blacklist: Vec<(u64, u64)> = Vec::new();
    blacklist.extend_from_slice(&fs.blacklist)?;
    Ok(JournalRead {
        seq_first,
        seq_last,
        buckets: fs.journal_buckets.len(),
        sectors_read: bucket_sectors.saturating_mul(fs.journal_buckets.len() as u64),
        blacklist,
        nr_jsets: journal.jsets.len(),
        journal,
    })
}

/// The newest root of every btree, indexed by btree id: from the
/// journal's `btree_root` entries (the last one wins), else from the
/// superblock's `clean` section (`read_btree_roots()`).  `None` for a
/// btree without one.  On the heap: kernel stacks are small.
///
/// Errors: [`ListError::Jset`], [`ListError::Key`] for a malformed entry;
/// [`ListError::NoMem`].
pub fn btree_roots(fs: &FsInfo, j: &Journal) -> Result<Vec<Option<Root>>, ListError> {
    let mut roots: Vec<Option<Root>> = Vec::with_capacity(NR_BTREES)?;
    for i in 0..NR_BTREES {
        roots.push(find_root(fs, j, i as u32)?)?;
    }
    Ok(roots)
}

impl JournalRead {
    /// Prints what sysfs `journal_debug` shows: the sequence range read,
    /// `last_seq`, the blacklist and the buckets.
    pub fn to_text(&self, f: &mut dyn fmt::Write, nr_keys: usize) -> fmt::Result {
        writeln!(f, "seq range:\t{}-{}", self.seq_first, self.seq_last)?;
        writeln!(f, "last_seq:\t{}", self.journal.last_seq)?;
        writeln!(f, "blacklist_seq:\t{}", self.journal.blacklist_seq)?;
        writeln!(f, "jsets:\t\t{}", self.nr_jsets)?;
        writeln!(f, "journal keys:\t{nr_keys}")?;
        writeln!(f, "buckets:\t{}", self.buckets)?;
        f.write_str("blacklist:")?;
        if self.blacklist.is_empty() {
            f.write_str("\t(none)")?;
        }
        for &(s, e) in self.blacklist.iter() {
            write!(f, " {s}-{e}")?;
        }
        writeln!(f)
    }
}
