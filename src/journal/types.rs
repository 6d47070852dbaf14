// SPDX-License-Identifier: GPL-2.0
//! Types and constants of the journal's write side (`journal_types.h`):
//! the geometry a journal writes with, its options, where it starts, and
//! the reasons an entry cannot be opened.

use core::fmt;

use crate::checksum::CsumType;
use crate::errcode::Errno;
use crate::format::jset::jset_magic;
use crate::format::sb::{FieldType, Sb};
use crate::format::sb_opts::{csum_opt_to_type, sb_opt};
use crate::platform::{Vec, SECTOR_SIZE};
use crate::util::le::le64;

/// In-memory journal buffers, one entry each (`JOURNAL_BUF_NR`): one
/// open, the others closed and waiting for (or in) their write.
pub const JOURNAL_BUF_NR: usize = 4;
/// Smallest journal buffer, bytes (`JOURNAL_ENTRY_SIZE_MIN`).
pub const JOURNAL_ENTRY_SIZE_MIN: usize = 64 << 10;
/// Largest journal buffer and so largest entry, bytes
/// (`JOURNAL_ENTRY_SIZE_MAX`).
pub const JOURNAL_ENTRY_SIZE_MAX: usize = 4 << 20;
/// `struct jset` before its entries, u64s.
pub const JSET_U64S: u32 = 7;
/// Largest btree pointer key, header included (`BKEY_BTREE_PTR_U64s_MAX`:
/// 5 u64s of key, a 40-byte `btree_ptr_v2` and 4 pointers).
pub const BKEY_BTREE_PTR_U64S_MAX: u32 = 14;
/// Space kept in every entry for what the write adds
/// (`c->btree_root_journal_res` and `c->clock_journal_res` of
/// `bch2_fs_alloc()`, plus the datetime and `key_version` usage entries):
/// a root per btree, two clocks, a datetime, a usage entry; u64s.
pub const ENTRY_U64S_RESERVED_BASE: u32 =
    crate::journal::NR_BTREES as u32 * (1 + BKEY_BTREE_PTR_U64S_MAX) + 2 * 3 + 2 + 2;

/// What a journal writes with: the filesystem's magic, sizes, checksum
/// and version, and where its buckets are.
pub struct JournalGeometry {
    /// Journal magic (`jset_magic()`).
    pub magic: u64,
    /// Block size, bytes: entries are padded to it.
    pub block_bytes: u32,
    /// Bucket size of the journal device, 512-byte sectors.
    pub bucket_sectors: u32,
    /// The journal's buckets, in ring order (device bucket numbers).
    pub buckets: Vec<u64>,
    /// Checksum of every entry (`bch2_meta_checksum_type()`); never an
    /// encrypted type.
    pub csum_type: CsumType,
    /// Metadata version written in each entry (`c->sb.version`).
    pub version: u16,
}

impl JournalGeometry {
    /// The geometry of a (validated) superblock: its `journal_v2` (or
    /// `journal`) buckets, the member's bucket size, the block size, the
    /// `metadata_checksum` option and the version.
    ///
    /// Errors: `EINVAL` when the superblock has no journal buckets, no
    /// member entry or an encrypted checksum; `ENOMEM`.
    pub fn from_sb(sb: &Sb<'_>) -> Result<JournalGeometry, Errno> {
        let m = sb.member(sb.dev_idx()).ok_or(Errno::EINVAL)?;
        let mut buckets: Vec<u64> = Vec::new();
        if let Some(f) = sb.field(FieldType::JournalV2) {
            let b = f.body();
            for i in 0..b.len() / 16 {
                let (start, nr) = (le64(b, 16 * i), le64(b, 16 * i + 8));
                if nr > crate::format::list::MAX_JOURNAL_BUCKETS {
                    return Err(Errno::EINVAL);
                }
                for j in 0..nr {
                    buckets.push(start.checked_add(j).ok_or(Errno::EINVAL)?)?;
                }
            }
        } else if let Some(f) = sb.field(FieldType::Journal) {
            let b = f.body();
            for i in 0..b.len() / 8 {
                buckets.push(le64(b, 8 * i))?;
            }
        }
        if buckets.is_empty() {
            return Err(Errno::EINVAL);
        }
        let opt = sb_opt("metadata_checksum").map_or(1, |o| sb.opt(o));
        let csum_type = csum_opt_to_type(opt, false).ok_or(Errno::EINVAL)?;
        if csum_type.is_encryption() {
            return Err(Errno::EOPNOTSUPP);
        }
        Ok(JournalGeometry {
            magic: jset_magic(&sb.uuid()),
            block_bytes: u32::from(sb.block_size()) * SECTOR_SIZE as u32,
            bucket_sectors: u32::from(m.bucket_size),
            buckets,
            csum_type,
            version: sb.version().0,
        })
    }

    /// Checks the sizes: a power-of-two block of at least a sector, a
    /// bucket of at least a block, at least two buckets.
    ///
    /// Errors: `EINVAL`.
    pub fn validate(&self) -> Result<(), Errno> {
        let b = self.block_bytes as usize;
        if b < SECTOR_SIZE
            || !b.is_power_of_two()
            || (self.bucket_sectors as usize * SECTOR_SIZE) < b
            || self.buckets.len() < 2
            || self.csum_type.is_encryption()
        {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

/// Journal options (`c->opts`): times in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalOpts {
    /// `journal_flush_delay`: an open entry is written at most this long
    /// after it was opened, and writes within this long of the last flush
    /// write may skip the flush.  Default 1000.
    pub flush_delay_ms: u32,
    /// `journal_reclaim_delay`: reclaim flushes at least one pin when it
    /// last ran this long ago.  Default 100.
    pub reclaim_delay_ms: u32,
    /// Pin FIFO size, entries (grown as needed at start).
    pub pin_fifo_size: usize,
    /// Largest entry buffer, bytes (at most [`JOURNAL_ENTRY_SIZE_MAX`]).
    pub entry_size_max: usize,
}

impl Default for JournalOpts {
    fn default() -> Self {
        JournalOpts {
            flush_delay_ms: 1000,
            reclaim_delay_ms: 100,
            pin_fifo_size: super::reclaim::JOURNAL_PIN_DEFAULT,
            entry_size_max: JOURNAL_ENTRY_SIZE_MAX,
        }
    }
}

/// Why an entry could not be opened (`enum journal_errors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalErr {
    /// No space in the journal buckets (`journal_full`).
    JournalFull,
    /// The pin FIFO is full (`journal_pin_full`).
    PinFull,
    /// Every buffer is in use (`max_in_flight`).
    MaxInFlight,
    /// The journal hit an error or was stopped (`insufficient_devices`).
    Insufficient,
}

impl JournalErr {
    /// C's name (`bch2_journal_errors[]`).
    pub fn name(self) -> &'static str {
        match self {
            JournalErr::JournalFull => "journal_full",
            JournalErr::PinFull => "journal_pin_full",
            JournalErr::MaxInFlight => "max_in_flight",
            JournalErr::Insufficient => "insufficient_devices",
        }
    }
}

impl fmt::Display for JournalErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a journal starts (the arguments of `bch2_fs_journal_start()`
/// plus the bucket positions `bch2_journal_read()` found).
pub struct JournalStart {
    /// Sequence number of the first entry to write (`cur_seq`).
    pub cur_seq: u64,
    /// Oldest entry still needed (the replay range's `last_seq`):
    /// `[last_seq, cur_seq)` start pinned once each until replay drops
    /// them ([`super::write::Journal::replay_done`]).
    pub last_seq: u64,
    /// Bucket being written and sectors free in it.
    pub cur_idx: usize,
    /// Sectors free in `cur_idx`.
    pub sectors_free: u32,
    /// Newest sequence number in each bucket (empty: all 0).
    pub bucket_seq: Vec<u64>,
    /// Whether every bucket counts as dirty until reclaim proves
    /// otherwise (`discard_idx = dirty_idx = cur_idx + 1` after a read).
    pub after_read: bool,
    /// Sequence numbers to blacklist in the superblock before writing,
    /// `[start, end)`: written but unflushed before an unclean shutdown,
    /// plus the 8 C skips.  `None` after a clean shutdown.
    pub blacklist: Option<(u64, u64)>,
}

impl JournalStart {
    /// A journal just allocated (`bch2_fs_initialize()`: start at 1).
    pub fn fresh() -> JournalStart {
        JournalStart {
            cur_seq: 1,
            last_seq: 1,
            cur_idx: 0,
            sectors_free: 0,
            bucket_seq: Vec::new(),
            after_read: false,
            blacklist: None,
        }
    }
}

impl fmt::Display for JournalStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "start at seq {}, last_seq {}, bucket {} ({} sectors free)",
            self.cur_seq, self.last_seq, self.cur_idx, self.sectors_free
        )?;
        if let Some((a, b)) = self.blacklist {
            write!(f, ", blacklist {a}-{b}")?;
        }
        Ok(())
    }
}
