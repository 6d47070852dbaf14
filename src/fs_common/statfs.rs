// SPDX-License-Identifier: GPL-2.0
//! Free space and inode counts for `statfs`, from the accounting btree.
//!
//! Matches `bch2_statfs()` in `fs/bcachefs/fs.c`,
//! `__bch2_fs_usage_read_short()` and `reserve_factor()` in `buckets.c`,
//! `avail_factor()` in `buckets.h`, and the summing of accounting keys
//! into `struct bch_fs_usage_base` by `bch2_accounting_read()` in
//! `disk_accounting.c`.
//!
//! 6.12 keeps usage in `BTREE_ID_accounting`: each key's position is a
//! `struct disk_accounting_pos` (type byte, then type-specific bytes) and
//! its value a list of counters.  What statfs uses:
//!
//! | type | position bytes | counter 0 | goes to |
//! |------|----------------|-----------|---------|
//! | 1 `persistent_reserved` | `nr_replicas` | sectors | `reserved += nr_replicas * v0` |
//! | 2 `replicas` | `data_type`, `nr_devs`, `nr_required`, devs | sectors | `btree` (data type btree), `data` (user, parity), `cached` |
//! | 3 `dev_data_type` | `dev`, `data_type` | buckets | `hidden += v0 * bucket_size` for sb and journal |
//!
//! `nr_inodes` keys exist too, but 6.12's in-memory usage never adds them
//! (`bch2_accounting_read()` and the commit path skip that type), so its
//! `statfs` reports `f_files == f_ffree`; [`STATFS_COUNTS_NR_INODES`]
//! reproduces that.

use super::{BtreeRead, FsFacts, StatFs};
use crate::errcode::Errno;
use crate::format::bkey::{BtreeId, KeyType};
use crate::format::bpos::{POS_MIN, SPOS_MAX};
use crate::format::val::dirent::BCH_NAME_MAX;
use crate::format::val::misc::AccountingPos;

/// Whether `files` includes the `nr_inodes` accounting counter.  `false`:
/// as 6.12, whose `c->usage->nr_inodes` stays 0.
pub const STATFS_COUNTS_NR_INODES: bool = false;

/// `RESERVE_FACTOR`.
const RESERVE_FACTOR: u32 = 6;

/// Accounting types (`BCH_DISK_ACCOUNTING_*`).
const ACC_NR_INODES: u8 = 0;
const ACC_PERSISTENT_RESERVED: u8 = 1;
const ACC_REPLICAS: u8 = 2;
const ACC_DEV_DATA_TYPE: u8 = 3;

/// Data types (`BCH_DATA_*`).
const DATA_SB: u8 = 1;
const DATA_JOURNAL: u8 = 2;
const DATA_BTREE: u8 = 3;
const DATA_USER: u8 = 4;
const DATA_CACHED: u8 = 5;
const DATA_PARITY: u8 = 6;

/// Filesystem usage summed from the accounting btree (`struct
/// bch_fs_usage_base`), 512-byte sectors except `nr_inodes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// Superblock and journal buckets, sectors (not part of capacity).
    pub hidden: u64,
    /// Btree nodes.
    pub btree: u64,
    /// User data and parity.
    pub data: u64,
    /// Cached data.
    pub cached: u64,
    /// Persistent reservations times their replicas.
    pub reserved: u64,
    /// The `nr_inodes` counter.
    pub nr_inodes: u64,
}

fn counter(v: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = v.get(i * 8..i * 8 + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// Sums the accounting btree into [`FsUsage`] as `bch2_accounting_read()`
/// does (counters add with wrap-around, as C's u64s do with signed
/// deltas).  `bucket_sectors` sizes the `hidden` buckets.
///
/// Errors: `EIO`, `ENOMEM` from the btree.
pub fn fs_usage_read<T: BtreeRead + ?Sized>(fs: &T, bucket_sectors: u32) -> Result<FsUsage, Errno> {
    let mut u = FsUsage::default();
    let mut from = POS_MIN;
    while let Some(k) = fs.peek_upto(BtreeId::Accounting, from, SPOS_MAX, false)? {
        if k.k.key_type == KeyType::Accounting as u8 {
            let a = AccountingPos::from_bpos(k.k.p);
            let b = &a.0;
            let v0 = counter(&k.v, 0);
            match a.ty() {
                ACC_NR_INODES => u.nr_inodes = u.nr_inodes.wrapping_add(v0),
                ACC_PERSISTENT_RESERVED => {
                    u.reserved = u.reserved.wrapping_add(v0.wrapping_mul(u64::from(b[1])));
                }
                ACC_REPLICAS => match b[1] {
                    DATA_BTREE => u.btree = u.btree.wrapping_add(v0),
                    DATA_USER | DATA_PARITY => u.data = u.data.wrapping_add(v0),
                    DATA_CACHED => u.cached = u.cached.wrapping_add(v0),
                    _ => {}
                },
                ACC_DEV_DATA_TYPE if b[2] == DATA_SB || b[2] == DATA_JOURNAL => {
                    u.hidden = u.hidden.wrapping_add(v0.wrapping_mul(u64::from(bucket_sectors)));
                }
                _ => {}
            }
        }
        match k.k.p.successor() {
            Some(n) => from = n,
            None => break,
        }
    }
    Ok(u)
}

/// `BTREE_NODE_RESERVE`: btree nodes kept in reserve per device,
/// `(BTREE_MAX_DEPTH + BTREE_MAX_DEPTH - 1) * 4`.
pub const BTREE_NODE_RESERVE: u64 = (4 + 3) * 4;

/// `c->capacity` as `bch2_recalc_capacity()` computes it at mount (it
/// runs in `bch2_fs_start()` for read-only mounts too), for one device in
/// state rw: the sectors of buckets `first_bucket..nbuckets`, less the
/// copygc reserve, which is the larger of `gc_reserve_bytes` (when
/// nonzero, else `gc_reserve_percent` of the capacity) and twice the
/// device reserve (`2 * nr_btree_reserve + nbuckets / 64 + 3` buckets,
/// doubled), capped at the capacity.  `btree_node_sectors` is the btree
/// node size (`btree_sectors(c)`); sizes in 512-byte sectors, except
/// `gc_reserve_bytes`.  Meant for [`FsFacts::capacity_sectors`].
pub fn recalc_capacity(
    nbuckets: u64,
    first_bucket: u64,
    bucket_sectors: u32,
    btree_node_sectors: u32,
    gc_reserve_percent: u8,
    gc_reserve_bytes: u64,
) -> u64 {
    let bs = u64::from(bucket_sectors);
    let nodes_per_bucket = (bs / u64::from(btree_node_sectors.max(1))).max(1);
    let nr_btree_reserve = BTREE_NODE_RESERVE.div_ceil(nodes_per_bucket);
    let dev_reserve = (nr_btree_reserve * 2 + (nbuckets >> 6) + 3).saturating_mul(bs);
    let capacity = nbuckets.saturating_sub(first_bucket).saturating_mul(bs);
    let gc_reserve = if gc_reserve_bytes != 0 {
        gc_reserve_bytes >> 9
    } else {
        // capacity * percent / 100 without a 128-bit division (the
        // kernel has no __udivti3): exact, as capacity = 100q + r.
        let pct = u64::from(gc_reserve_percent);
        capacity / 100 * pct + capacity % 100 * pct / 100
    };
    let reserved = gc_reserve.max(dev_reserve.saturating_mul(2)).min(capacity);
    capacity - reserved
}

/// `reserve_factor()`: reservations plus 1/64 of them, rounded up.
fn reserve_factor(r: u64) -> u64 {
    let unit = 1u64 << RESERVE_FACTOR;
    r.saturating_add(r.div_ceil(unit))
}

/// `avail_factor()`: `r * 64 / 65`.
fn avail_factor(r: u64) -> u64 {
    // r * 64 / 65 without overflow or a 128-bit division: r = 65q + s.
    let d = (1u64 << RESERVE_FACTOR) + 1;
    ((r / d) << RESERVE_FACTOR) + ((r % d) << RESERVE_FACTOR) / d
}

/// The `statfs` figures of usage `u` on a filesystem with `facts`, as
/// `bch2_statfs()` computes them: capacity less hidden sectors, used =
/// data + btree + reservations (with `reserve_factor`), blocks shifted by
/// the block size, `bavail` with `avail_factor`, and an inode estimate of
/// 8 per free sector (64 bytes each).
pub fn statfs_from_usage(facts: &FsFacts, u: &FsUsage) -> StatFs {
    let capacity = facts.capacity_sectors.saturating_sub(u.hidden);
    let data = u.data.wrapping_add(u.btree);
    let used = capacity.min(data.saturating_add(reserve_factor(u.reserved)));
    let free = capacity - used;
    let block_bytes = facts.block_bytes.max(512);
    let shift = (31 - block_bytes.leading_zeros()).saturating_sub(9);
    let avail_inodes = free.checked_shl(3).filter(|_| free >> 61 == 0).unwrap_or(u64::MAX);
    let nr_inodes = if STATFS_COUNTS_NR_INODES { u.nr_inodes } else { 0 };
    StatFs {
        block_bytes,
        blocks: capacity >> shift,
        bfree: free >> shift,
        bavail: avail_factor(free) >> shift,
        files: nr_inodes.saturating_add(avail_inodes),
        ffree: avail_inodes,
        namelen: BCH_NAME_MAX as u32,
    }
}

/// `statfs` figures (`bch2_statfs`): capacity (`facts.capacity_sectors`)
/// and usage from the accounting btree.  `namelen` is `BCH_NAME_MAX`,
/// 512, as 6.12 reports it.
///
/// Errors: `EIO`, `ENOMEM`.
pub fn statfs<T: BtreeRead + ?Sized>(fs: &T, facts: &FsFacts) -> Result<StatFs, Errno> {
    let u = fs_usage_read(fs, facts.bucket_sectors)?;
    Ok(statfs_from_usage(facts, &u))
}
