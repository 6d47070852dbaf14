// SPDX-License-Identifier: GPL-2.0
//! Disk accounting: the counters of the accounting btree
//! (`disk_accounting.c`, `disk_accounting.h`,
//! `disk_accounting_format.h`), as triggers produce them.
//!
//! A counter is named by a [`DiskAccountingPos`] (C's `struct
//! disk_accounting_pos`): one type byte and a type-specific body, stored as
//! the 20 bytes of a `bpos` in memory order (little-endian: snapshot,
//! offset, inode).  Its value is 1 to 3 signed 64-bit counters
//! ([`DiskAccountingPos::nr_counters`]).  Triggers emit deltas, collected in
//! [`AccountingDeltas`], a map from position to counter deltas kept sorted
//! by position as C's accounting btree is.

use core::fmt;

use crate::errcode::Errno;
use crate::format::bkey::{Bkey, KeyType};
use crate::format::bpos::{Bpos, BPOS_BYTES};
use crate::format::val::misc::{fmt_accounting_pos, AccountingPos};
use crate::platform::Vec;

/// `BCH_ACCOUNTING_MAX_COUNTERS`.
pub const ACCOUNTING_MAX_COUNTERS: usize = 3;
/// Most devices in a replicas entry that fit in a position (20 bytes less
/// the type, data_type, nr_devs and nr_required bytes).
pub const REPLICAS_DEVS_MAX: usize = BPOS_BYTES - 4;

/// `enum disk_accounting_type` numbers.
pub mod acct_type {
    /// `BCH_DISK_ACCOUNTING_nr_inodes`.
    pub const NR_INODES: u8 = 0;
    /// `BCH_DISK_ACCOUNTING_persistent_reserved`.
    pub const PERSISTENT_RESERVED: u8 = 1;
    /// `BCH_DISK_ACCOUNTING_replicas`.
    pub const REPLICAS: u8 = 2;
    /// `BCH_DISK_ACCOUNTING_dev_data_type`.
    pub const DEV_DATA_TYPE: u8 = 3;
    /// `BCH_DISK_ACCOUNTING_compression`.
    pub const COMPRESSION: u8 = 4;
    /// `BCH_DISK_ACCOUNTING_snapshot`.
    pub const SNAPSHOT: u8 = 5;
    /// `BCH_DISK_ACCOUNTING_btree`.
    pub const BTREE: u8 = 6;
    /// `BCH_DISK_ACCOUNTING_rebalance_work`.
    pub const REBALANCE_WORK: u8 = 7;
    /// `BCH_DISK_ACCOUNTING_inum`.
    pub const INUM: u8 = 8;
}

/// A replicas entry (`struct bch_replicas_entry_v1`): the devices holding
/// one copy each of some data, sorted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicasEntry {
    /// Data type (`enum bch_data_type`).
    pub data_type: u8,
    /// Copies needed to read the data.
    pub nr_required: u8,
    /// Number of devices used in `devs`.
    pub nr_devs: u8,
    /// Device indices; the first `nr_devs` are used.
    pub devs: [u8; REPLICAS_DEVS_MAX],
}

impl ReplicasEntry {
    /// An entry with no devices yet.
    pub fn new(data_type: u8, nr_required: u8) -> Self {
        ReplicasEntry { data_type, nr_required, nr_devs: 0, devs: [0; REPLICAS_DEVS_MAX] }
    }

    /// `bch2_replicas_entry_cached()`: one cached copy on `dev`.
    pub fn cached(dev: u8) -> Self {
        let mut e = ReplicasEntry::new(crate::format::val::alloc::data_type::CACHED, 1);
        e.nr_devs = 1;
        e.devs[0] = dev;
        e
    }

    /// `replicas_entry_add_dev()`: appends `dev` (sorted later, as
    /// `bch2_disk_accounting_mod()` does).
    ///
    /// Errors: `EINVAL` when the entry is full.
    pub fn add_dev(&mut self, dev: u8) -> Result<(), Errno> {
        let slot = self.devs.get_mut(self.nr_devs as usize).ok_or(Errno::EINVAL)?;
        *slot = dev;
        self.nr_devs += 1;
        Ok(())
    }

    /// The devices in use.
    pub fn devs(&self) -> &[u8] {
        &self.devs[..(self.nr_devs as usize).min(REPLICAS_DEVS_MAX)]
    }

    /// Sorts the devices (at most 16: an insertion sort, no core sort
    /// code in the module).
    fn sort(&mut self) {
        let n = (self.nr_devs as usize).min(REPLICAS_DEVS_MAX);
        let d = &mut self.devs[..n];
        for i in 1..d.len() {
            let mut j = i;
            while j > 0 && d[j - 1] > d[j] {
                d.swap(j - 1, j);
                j -= 1;
            }
        }
    }
}

/// The name of a counter (`struct disk_accounting_pos`), by type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskAccountingPos {
    /// Number of inodes (1 counter).
    NrInodes,
    /// Sectors reserved by `reservation` keys with `nr_replicas` (1 counter).
    PersistentReserved {
        /// Replicas of the reservation.
        nr_replicas: u8,
    },
    /// Sectors of data on a set of devices (1 counter).
    Replicas(ReplicasEntry),
    /// Buckets, sectors and fragmented sectors of one data type on one
    /// device (3 counters).
    DevDataType {
        /// Device index.
        dev: u8,
        /// Data type.
        data_type: u8,
    },
    /// Extents, uncompressed and compressed sectors of one compression
    /// type (3 counters).
    Compression {
        /// `BCH_COMPRESSION_TYPE_*`.
        ty: u8,
    },
    /// Sectors of user data in a snapshot (1 counter).
    Snapshot {
        /// Snapshot id.
        id: u32,
    },
    /// Sectors of a btree's nodes (1 counter).
    Btree {
        /// Btree id.
        id: u32,
    },
    /// Sectors waiting for rebalance (1 counter).
    RebalanceWork,
    /// Extents, sectors and disk sectors of one inode number (3 counters).
    Inum {
        /// Inode number.
        inum: u64,
    },
}

impl DiskAccountingPos {
    /// The type number (`enum disk_accounting_type`).
    pub fn ty(&self) -> u8 {
        use acct_type::*;
        match self {
            DiskAccountingPos::NrInodes => NR_INODES,
            DiskAccountingPos::PersistentReserved { .. } => PERSISTENT_RESERVED,
            DiskAccountingPos::Replicas(_) => REPLICAS,
            DiskAccountingPos::DevDataType { .. } => DEV_DATA_TYPE,
            DiskAccountingPos::Compression { .. } => COMPRESSION,
            DiskAccountingPos::Snapshot { .. } => SNAPSHOT,
            DiskAccountingPos::Btree { .. } => BTREE,
            DiskAccountingPos::RebalanceWork => REBALANCE_WORK,
            DiskAccountingPos::Inum { .. } => INUM,
        }
    }

    /// How many counters C keeps for this type (the `nr` its callers of
    /// `bch2_disk_accounting_mod()` pass).
    pub fn nr_counters(&self) -> usize {
        match self {
            DiskAccountingPos::DevDataType { .. }
            | DiskAccountingPos::Compression { .. }
            | DiskAccountingPos::Inum { .. } => 3,
            _ => 1,
        }
    }

    /// The 20 position bytes in C's memory order (little-endian host).
    /// Replicas devices are sorted first, as `bch2_disk_accounting_mod()`
    /// normalises them.
    pub fn to_bytes(&self) -> [u8; BPOS_BYTES] {
        let mut b = [0u8; BPOS_BYTES];
        b[0] = self.ty();
        match *self {
            DiskAccountingPos::NrInodes | DiskAccountingPos::RebalanceWork => {}
            DiskAccountingPos::PersistentReserved { nr_replicas } => b[1] = nr_replicas,
            DiskAccountingPos::Replicas(mut r) => {
                r.sort();
                b[1] = r.data_type;
                b[2] = r.nr_devs;
                b[3] = r.nr_required;
                let d = r.devs();
                b[4..4 + d.len()].copy_from_slice(d);
            }
            DiskAccountingPos::DevDataType { dev, data_type } => {
                b[1] = dev;
                b[2] = data_type;
            }
            DiskAccountingPos::Compression { ty } => b[1] = ty,
            DiskAccountingPos::Snapshot { id } | DiskAccountingPos::Btree { id } => {
                b[1..5].copy_from_slice(&id.to_le_bytes())
            }
            DiskAccountingPos::Inum { inum } => b[1..9].copy_from_slice(&inum.to_le_bytes()),
        }
        b
    }

    /// `disk_accounting_pos_to_bpos()`.
    pub fn to_bpos(&self) -> Bpos {
        Bpos::from_bytes(&self.to_bytes())
    }

    /// `bpos_to_disk_accounting_pos()`: `None` for an unknown type or a
    /// replicas entry with more devices than fit.
    pub fn from_bpos(p: Bpos) -> Option<DiskAccountingPos> {
        let b = p.to_bytes();
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        Some(match b[0] {
            acct_type::NR_INODES => DiskAccountingPos::NrInodes,
            acct_type::PERSISTENT_RESERVED => DiskAccountingPos::PersistentReserved { nr_replicas: b[1] },
            acct_type::REPLICAS => {
                let n = b[2] as usize;
                if n > REPLICAS_DEVS_MAX {
                    return None;
                }
                let mut r = ReplicasEntry::new(b[1], b[3]);
                r.nr_devs = b[2];
                r.devs[..n].copy_from_slice(&b[4..4 + n]);
                DiskAccountingPos::Replicas(r)
            }
            acct_type::DEV_DATA_TYPE => DiskAccountingPos::DevDataType { dev: b[1], data_type: b[2] },
            acct_type::COMPRESSION => DiskAccountingPos::Compression { ty: b[1] },
            acct_type::SNAPSHOT => DiskAccountingPos::Snapshot { id: u32_at(1) },
            acct_type::BTREE => DiskAccountingPos::Btree { id: u32_at(1) },
            acct_type::REBALANCE_WORK => DiskAccountingPos::RebalanceWork,
            acct_type::INUM => {
                let mut w = [0u8; 8];
                w.copy_from_slice(&b[1..9]);
                DiskAccountingPos::Inum { inum: u64::from_le_bytes(w) }
            }
            _ => return None,
        })
    }
}

impl fmt::Display for DiskAccountingPos {
    /// `bch2_accounting_key_to_text()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_accounting_pos(f, &AccountingPos(self.to_bytes()))
    }
}

/// Encodes an accounting key (`accounting_key_init()`): the key at the
/// position of `acc` with version `version` (the journal sequence number
/// in its high part, as the write buffer sets it) and the value: the
/// counters as little-endian u64s (two's complement for negative deltas).
///
/// Errors: `EINVAL` if `d` is empty or longer than
/// [`ACCOUNTING_MAX_COUNTERS`]; `ENOMEM`.
pub fn accounting_key_encode(acc: &DiskAccountingPos, d: &[i64], version: crate::format::bpos::BVersion) -> Result<(Bkey, Vec<u8>), Errno> {
    if d.is_empty() || d.len() > ACCOUNTING_MAX_COUNTERS {
        return Err(Errno::EINVAL);
    }
    let mut k = Bkey::new(KeyType::Accounting, acc.to_bpos(), d.len());
    k.version = version;
    let mut v = Vec::with_capacity(d.len() * 8)?;
    for c in d {
        v.extend_from_slice(&c.to_le_bytes())?;
    }
    Ok((k, v))
}

/// Decodes an accounting value: up to [`ACCOUNTING_MAX_COUNTERS`] counters
/// (`struct bch_accounting`), and how many there were.
pub fn accounting_val_decode(v: &[u8]) -> ([i64; ACCOUNTING_MAX_COUNTERS], usize) {
    let mut d = [0i64; ACCOUNTING_MAX_COUNTERS];
    let mut n = 0;
    for (i, c) in v.chunks_exact(8).take(ACCOUNTING_MAX_COUNTERS).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        d[i] = i64::from_le_bytes(w);
        n = i + 1;
    }
    (d, n)
}

/// Counter deltas by accounting position: what triggers add
/// (`bch2_disk_accounting_mod()` calls) before they go to the btree write
/// buffer (or, for GC, to the in-memory copy).  Appending is cheap; call
/// [`AccountingDeltas::normalize`] to sort by position and sum duplicates.
#[derive(Default)]
pub struct AccountingDeltas {
    /// (position as `bpos`, counters, number of counters used).
    entries: Vec<(Bpos, [i64; ACCOUNTING_MAX_COUNTERS], u8)>,
    sorted: bool,
    /// Entry count at which [`add_raw_bounded`](Self::add_raw_bounded)
    /// normalizes next.
    compact_at: usize,
}

impl AccountingDeltas {
    /// An empty map.
    pub fn new() -> Self {
        AccountingDeltas { entries: Vec::new(), sorted: true, compact_at: 0 }
    }

    /// [`add_raw`](Self::add_raw) for a map that lives as long as the
    /// mount (the in-memory counters, `c->accounting`): it is normalized
    /// in place whenever its entries doubled since the last time, so that
    /// it holds at most about twice as many entries as there are distinct
    /// positions (64 at the least), however many deltas went in.
    ///
    /// Errors: `ENOMEM`.
    pub fn add_raw_bounded(&mut self, p: Bpos, d: [i64; ACCOUNTING_MAX_COUNTERS], nr: u8) -> Result<(), Errno> {
        self.add_raw(p, d, nr)?;
        if self.entries.len() >= self.compact_at {
            self.normalize();
            self.compact_at = self.entries.len().saturating_mul(2).max(64);
        }
        Ok(())
    }

    /// `bch2_disk_accounting_mod()`: adds `d` to the counters of `acc`.
    ///
    /// Errors: `EINVAL` when `d` has more than 3 counters; `ENOMEM`.
    pub fn add(&mut self, acc: &DiskAccountingPos, d: &[i64]) -> Result<(), Errno> {
        if d.len() > ACCOUNTING_MAX_COUNTERS {
            return Err(Errno::EINVAL);
        }
        let mut c = [0i64; ACCOUNTING_MAX_COUNTERS];
        c[..d.len()].copy_from_slice(d);
        self.add_raw(acc.to_bpos(), c, d.len() as u8)
    }

    /// Adds counters at a raw position (e.g. read from an accounting key).
    ///
    /// Errors: `ENOMEM`.
    pub fn add_raw(&mut self, p: Bpos, d: [i64; ACCOUNTING_MAX_COUNTERS], nr: u8) -> Result<(), Errno> {
        if self.sorted {
            if let Some(last) = self.entries.last_mut() {
                if last.0 == p {
                    for (a, b) in last.1.iter_mut().zip(d.iter()) {
                        *a = a.wrapping_add(*b);
                    }
                    last.2 = last.2.max(nr);
                    return Ok(());
                }
                if last.0 > p {
                    self.sorted = false;
                }
            }
        }
        self.entries.push((p, d, nr))?;
        Ok(())
    }

    /// Adds every entry of `other`.
    ///
    /// Errors: `ENOMEM`.
    pub fn merge(&mut self, other: &AccountingDeltas) -> Result<(), Errno> {
        for e in other.entries.iter() {
            self.add_raw(e.0, e.1, e.2)?;
        }
        Ok(())
    }

    /// Sorts by position and sums entries at the same position.
    pub fn normalize(&mut self) {
        if !self.sorted {
            crate::util::sort::sort_by_key(&mut self.entries, |e| e.0);
            self.sorted = true;
        }
        let n = self.entries.len();
        let mut w = 0usize;
        for r in 0..n {
            let e = self.entries[r];
            if w > 0 && self.entries[w - 1].0 == e.0 {
                let last = &mut self.entries[w - 1];
                for (a, b) in last.1.iter_mut().zip(e.1.iter()) {
                    *a = a.wrapping_add(*b);
                }
                last.2 = last.2.max(e.2);
            } else {
                self.entries[w] = e;
                w += 1;
            }
        }
        self.entries.truncate(w);
    }

    /// Drops entries whose counters are all zero (C deletes such keys).
    pub fn drop_zero(&mut self) {
        self.entries.retain(|e| e.1.iter().any(|&c| c != 0));
    }

    /// The entries: (position, counters, number of counters); sorted and
    /// unique after [`AccountingDeltas::normalize`].
    pub fn entries(&self) -> &[(Bpos, [i64; ACCOUNTING_MAX_COUNTERS], u8)] {
        &self.entries
    }

    /// The counters at `acc` (zero when absent); needs
    /// [`AccountingDeltas::normalize`] first.
    pub fn get(&self, acc: &DiskAccountingPos) -> [i64; ACCOUNTING_MAX_COUNTERS] {
        let p = acc.to_bpos();
        match self.entries.binary_search_by(|e| e.0.cmp(&p)) {
            Ok(i) => self.entries[i].1,
            Err(_) => [0; ACCOUNTING_MAX_COUNTERS],
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Display for AccountingDeltas {
    /// One line per counter: its name and the deltas.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (p, d, n) in self.entries.iter() {
            fmt_accounting_pos(f, &AccountingPos::from_bpos(*p))?;
            write!(f, ":")?;
            for c in d.iter().take((*n as usize).max(1)) {
                write!(f, " {c}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bpos::BVersion;
    use std::string::{String, ToString};

    /// The mount's in-memory counters take a delta per commit for as long
    /// as the mount lives: they must stay bounded by the positions, not
    /// grow with the deltas (they grew until `krealloc` failed once).
    #[test]
    fn long_lived_counters_stay_bounded() {
        let mut m = AccountingDeltas::new();
        let mut want = std::collections::BTreeMap::new();
        for i in 0..200_000u64 {
            let pos = DiskAccountingPos::Inum { inum: 4096 + (i * 7919) % 100 }.to_bpos();
            let d = [1, (i % 5) as i64, 0];
            m.add_raw_bounded(pos, d, 2).unwrap();
            let e = want.entry(pos).or_insert([0i64; 3]);
            e[0] += d[0];
            e[1] += d[1];
            assert!(m.len() <= 2 * 100 + 64, "{} entries after {i} deltas", m.len());
        }
        m.normalize();
        assert_eq!(m.len(), want.len());
        for (p, d, n) in m.entries() {
            assert_eq!((&d[..2], *n), (&want[p][..2], 2));
        }
    }

    #[test]
    fn positions_round_trip_and_print_as_c() {
        let mut r = ReplicasEntry::new(4, 1);
        r.add_dev(3).unwrap();
        r.add_dev(0).unwrap();
        let all = [
            DiskAccountingPos::NrInodes,
            DiskAccountingPos::PersistentReserved { nr_replicas: 2 },
            DiskAccountingPos::Replicas(r),
            DiskAccountingPos::DevDataType { dev: 0, data_type: 3 },
            DiskAccountingPos::Compression { ty: 3 },
            DiskAccountingPos::Snapshot { id: u32::MAX },
            DiskAccountingPos::Btree { id: 2 },
            DiskAccountingPos::RebalanceWork,
            DiskAccountingPos::Inum { inum: 4096 },
        ];
        let text: std::vec::Vec<String> = all.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            text,
            [
                "nr_inodes ",
                "persistent_reserved replicas=2",
                "replicas user: 1/2 [0 3]",
                "dev_data_type dev=0 data_type=btree",
                "compression lz4",
                "snapshot id=4294967295",
                "btree btree=dirents",
                "rebalance_work ",
                "inum ",
            ]
        );
        for a in all {
            let back = DiskAccountingPos::from_bpos(a.to_bpos()).unwrap();
            assert_eq!(back.to_bytes(), a.to_bytes());
        }
        // The type byte is the low byte of the snapshot field.
        assert_eq!(DiskAccountingPos::Btree { id: 1 }.to_bpos(), Bpos::new(0, 0, (1 << 8) | 6));
        let (k, v) = accounting_key_encode(&all[3], &[1, -8, 0], BVersion::default()).unwrap();
        assert_eq!(k.val_u64s(), 3);
        assert_eq!(accounting_val_decode(&v), ([1, -8, 0], 3));
        let mut s = String::new();
        crate::format::val::misc::fmt_accounting(&mut s, &k, &v).unwrap();
        assert_eq!(s, "dev_data_type dev=0 data_type=btree 1 -8 0");
    }

    #[test]
    fn deltas_sum_and_sort() {
        let mut d = AccountingDeltas::new();
        d.add(&DiskAccountingPos::Inum { inum: 5 }, &[1, 8, 8]).unwrap();
        d.add(&DiskAccountingPos::NrInodes, &[1]).unwrap();
        d.add(&DiskAccountingPos::Inum { inum: 5 }, &[-1, -8, -8]).unwrap();
        d.add(&DiskAccountingPos::NrInodes, &[2]).unwrap();
        d.normalize();
        assert_eq!(d.len(), 2);
        assert_eq!(d.get(&DiskAccountingPos::NrInodes)[0], 3);
        d.drop_zero();
        assert_eq!(d.len(), 1);
        assert_eq!(d.to_string(), "nr_inodes : 3\n");
    }
}
