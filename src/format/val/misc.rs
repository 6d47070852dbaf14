// SPDX-License-Identifier: GPL-2.0
//! The smaller value types: subvolumes and snapshots
//! (`subvolume_format.h`, `snapshot_format.h`), disk accounting
//! (`disk_accounting_format.h`), logged operations (`logged_ops_format.h`)
//! and a few fixed-size values (cookie, reservation, inode_generation,
//! reflink_p, lru, inline data, bucket_gens), checked and printed as their
//! C files (`subvolume.c`, `snapshot.c`, `disk_accounting.c`,
//! `io_misc.c`, ...) do.
//!
//! All fields are little-endian.  Values shorter than their struct read
//! as zero past their end (C reads only what `min_val_size` guarantees
//! unless it checks the value size first, as for the newer subvolume and
//! snapshot fields).

use core::fmt;

use super::{fmt_data_type, ValError};
use crate::format::bkey::{Bkey, BtreeIdName};
use crate::format::bpos::Bpos;
use crate::format::val::extent::fmt_compression_type;

fn rd(v: &[u8], at: usize, n: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = v.get(at..at + n) {
        b[..n].copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

fn rd32(v: &[u8], at: usize) -> u32 {
    rd(v, at, 4) as u32
}

/// A subvolume (`struct bch_subvolume`, 40 bytes; key `0:id:0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subvolume {
    /// Flags: ro 0, snap 1, unlinked 2.
    pub flags: u32,
    /// Snapshot id of the subvolume's head.
    pub snapshot: u32,
    /// Root inode.
    pub inode: u64,
    /// Subvolume this one is a snapshot of.
    pub creation_parent: u32,
    /// Subvolume of the directory this one lives in.
    pub fs_path_parent: u32,
    /// Creation time (128 bits: lo, hi).
    pub otime: (u64, u64),
}

impl Subvolume {
    /// Size of the struct, bytes.
    pub const BYTES: usize = 40;

    /// Decodes (short values read as zero past their end).
    pub fn decode(v: &[u8]) -> Subvolume {
        Subvolume {
            flags: rd32(v, 0),
            snapshot: rd32(v, 4),
            inode: rd(v, 8, 8),
            creation_parent: rd32(v, 16),
            fs_path_parent: rd32(v, 20),
            otime: (rd(v, 24, 8), rd(v, 32, 8)),
        }
    }

    /// Encodes as 40 bytes.
    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        b[0..4].copy_from_slice(&self.flags.to_le_bytes());
        b[4..8].copy_from_slice(&self.snapshot.to_le_bytes());
        b[8..16].copy_from_slice(&self.inode.to_le_bytes());
        b[16..20].copy_from_slice(&self.creation_parent.to_le_bytes());
        b[20..24].copy_from_slice(&self.fs_path_parent.to_le_bytes());
        b[24..32].copy_from_slice(&self.otime.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.otime.1.to_le_bytes());
        b
    }
}

/// `bch2_subvolume_validate()`.
pub fn validate_subvolume(k: &Bkey, v: &[u8]) -> Result<(), ValError> {
    if k.p.cmp_no_snapshot(&Bpos::pos(0, 1)).is_lt() || k.p.cmp_no_snapshot(&Bpos::pos(0, i32::MAX as u64)).is_gt() {
        return Err(ValError::BadPos);
    }
    let s = Subvolume::decode(v);
    if s.snapshot == 0 {
        return Err(ValError::SubvolSnapshotZero);
    }
    if s.inode == 0 {
        return Err(ValError::SubvolInodeZero);
    }
    Ok(())
}

/// `bch2_subvolume_to_text()`.
pub fn fmt_subvolume(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    let s = Subvolume::decode(v);
    write!(f, "root {} snapshot id {}", s.inode, s.snapshot)?;
    if v.len() > 16 {
        write!(f, " creation_parent {} fs_parent {}", s.creation_parent, s.fs_path_parent)?;
    }
    Ok(())
}

/// A snapshot node (`struct bch_snapshot`, 56 bytes; key `0:id:0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Flags: deleted 0, subvol 1.
    pub flags: u32,
    /// Parent id, 0 for a root.
    pub parent: u32,
    /// Child ids, larger first.
    pub children: [u32; 2],
    /// Subvolume pointing here, if any.
    pub subvol: u32,
    /// Snapshot tree id.
    pub tree: u32,
    /// Depth.
    pub depth: u32,
    /// Skiplist of ancestors.
    pub skip: [u32; 3],
    /// Creation time (128 bits: lo, hi).
    pub btime: (u64, u64),
}

impl Snapshot {
    /// Size of the struct, bytes.
    pub const BYTES: usize = 56;

    /// Decodes (short values read as zero past their end).
    pub fn decode(v: &[u8]) -> Snapshot {
        Snapshot {
            flags: rd32(v, 0),
            parent: rd32(v, 4),
            children: [rd32(v, 8), rd32(v, 12)],
            subvol: rd32(v, 16),
            tree: rd32(v, 20),
            depth: rd32(v, 24),
            skip: [rd32(v, 28), rd32(v, 32), rd32(v, 36)],
            btime: (rd(v, 40, 8), rd(v, 48, 8)),
        }
    }

    /// Encodes as 56 bytes.
    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        let words = [
            self.flags,
            self.parent,
            self.children[0],
            self.children[1],
            self.subvol,
            self.tree,
            self.depth,
            self.skip[0],
            self.skip[1],
            self.skip[2],
        ];
        for (i, w) in words.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        b[40..48].copy_from_slice(&self.btime.0.to_le_bytes());
        b[48..56].copy_from_slice(&self.btime.1.to_le_bytes());
        b
    }
}

fn check_pos_u32(k: &Bkey) -> Result<(), ValError> {
    if k.p.cmp_no_snapshot(&Bpos::pos(0, u64::from(u32::MAX))).is_gt() || k.p.cmp_no_snapshot(&Bpos::pos(0, 1)).is_lt() {
        return Err(ValError::BadPos);
    }
    Ok(())
}

/// `bch2_snapshot_validate()`.
pub fn validate_snapshot(k: &Bkey, v: &[u8]) -> Result<(), ValError> {
    check_pos_u32(k)?;
    let s = Snapshot::decode(v);
    let id = k.p.offset;
    if s.parent != 0 && u64::from(s.parent) <= id {
        return Err(ValError::SnapshotParentBad(s.parent));
    }
    if s.children[0] < s.children[1] {
        return Err(ValError::SnapshotChildrenNotNormalized);
    }
    if s.children[0] != 0 && s.children[0] == s.children[1] {
        return Err(ValError::SnapshotChildDuplicate);
    }
    for c in s.children {
        if u64::from(c) >= id {
            return Err(ValError::SnapshotChildBad(c));
        }
    }
    if v.len() > 28 {
        if s.skip[0] > s.skip[1] || s.skip[1] > s.skip[2] {
            return Err(ValError::SnapshotSkiplistNotNormalized);
        }
        for sk in s.skip {
            if sk != 0 && sk < s.parent {
                return Err(ValError::SnapshotSkiplistBad(sk));
            }
        }
    }
    Ok(())
}

/// `bch2_snapshot_to_text()`.
pub fn fmt_snapshot(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    let s = Snapshot::decode(v);
    write!(
        f,
        "is_subvol {} deleted {} parent {:>10} children {:>10} {:>10} subvol {} tree {}",
        (s.flags >> 1) & 1,
        s.flags & 1,
        s.parent,
        s.children[0],
        s.children[1],
        s.subvol,
        s.tree
    )?;
    if v.len() > 24 {
        write!(f, " depth {} skiplist {} {} {}", s.depth, s.skip[0], s.skip[1], s.skip[2])?;
    }
    Ok(())
}

/// `bch2_snapshot_tree_validate()`.
pub fn validate_snapshot_tree(k: &Bkey) -> Result<(), ValError> {
    check_pos_u32(k)
}

/// `bch2_snapshot_tree_to_text()`: master subvolume and root snapshot.
pub fn fmt_snapshot_tree(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    write!(f, "subvol {} root snapshot {}", rd32(v, 0), rd32(v, 4))
}

/// Disk accounting counter types (`BCH_DISK_ACCOUNTING_TYPES()`).
pub const ACCOUNTING_TYPE_NAMES: [&str; 9] = [
    "nr_inodes",
    "persistent_reserved",
    "replicas",
    "dev_data_type",
    "compression",
    "snapshot",
    "btree",
    "rebalance_work",
    "inum",
];

/// The counter an accounting key names (`struct disk_accounting_pos`):
/// the 20 bytes of its position in on-disk order, interpreted by type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountingPos(pub [u8; 20]);

impl AccountingPos {
    /// `bpos_to_disk_accounting_pos()`.
    pub fn from_bpos(p: Bpos) -> AccountingPos {
        AccountingPos(p.to_bytes())
    }

    /// `disk_accounting_pos_to_bpos()`.
    pub fn to_bpos(&self) -> Bpos {
        Bpos::from_bytes(&self.0)
    }

    /// The counter type.
    pub fn ty(&self) -> u8 {
        self.0[0]
    }

    /// Bytes the type uses, header included; `None` when a replicas
    /// entry claims more devices than fit.
    fn used(&self) -> Option<usize> {
        Some(match self.ty() {
            0 => 1,
            1 => 2,
            2 => {
                let n = 1 + 3 + self.0[2] as usize;
                if n > 20 {
                    return None;
                }
                n
            }
            3 => 3,
            4 => 2,
            5 | 6 => 5,
            7 => 1,
            _ => 20,
        })
    }
}

/// `bch2_accounting_validate()`.
pub fn validate_accounting(k: &Bkey) -> Result<(), ValError> {
    if k.version.is_zero() {
        return Err(ValError::AccountingVersionZero);
    }
    let a = AccountingPos::from_bpos(k.p);
    if a.ty() == 2 {
        let (nr_devs, nr_required) = (a.0[2], a.0[3]);
        if nr_devs == 0 {
            return Err(ValError::AccountingReplicasNrDevs0);
        }
        if nr_required > nr_devs || (nr_required > 1 && nr_required == nr_devs) {
            return Err(ValError::AccountingReplicasNrRequired);
        }
        let devs = a.0.get(4..4 + nr_devs as usize).ok_or(ValError::AccountingJunkAtEnd)?;
        if devs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ValError::AccountingReplicasUnsorted);
        }
    }
    let used = a.used().ok_or(ValError::AccountingJunkAtEnd)?;
    if a.0[used..].iter().any(|&b| b != 0) {
        return Err(ValError::AccountingJunkAtEnd);
    }
    Ok(())
}

/// `bch2_replicas_entry_to_text()` for an entry of `data_type`,
/// `nr_required` and `devs`.
pub fn fmt_replicas(f: &mut dyn fmt::Write, data_type: u8, nr_required: u8, devs: &[u8]) -> fmt::Result {
    fmt_data_type(f, data_type)?;
    write!(f, ": {}/{} [", nr_required, devs.len())?;
    for (i, d) in devs.iter().enumerate() {
        if i > 0 {
            f.write_char(' ')?;
        }
        write!(f, "{d}")?;
    }
    f.write_char(']')
}

/// `bch2_accounting_key_to_text()`.
pub fn fmt_accounting_pos(f: &mut dyn fmt::Write, a: &AccountingPos) -> fmt::Result {
    let b = &a.0;
    let Some(name) = ACCOUNTING_TYPE_NAMES.get(a.ty() as usize) else {
        return write!(f, "unknown type {}", a.ty());
    };
    write!(f, "{name} ")?;
    match a.ty() {
        1 => write!(f, "replicas={}", b[1]),
        2 => {
            let n = (b[2] as usize).min(16);
            fmt_replicas(f, b[1], b[3], &b[4..4 + n])
        }
        3 => {
            write!(f, "dev={} data_type=", b[1])?;
            fmt_data_type(f, b[2])
        }
        4 => fmt_compression_type(f, b[1]),
        5 => write!(f, "id={}", u32::from_le_bytes([b[1], b[2], b[3], b[4]])),
        6 => write!(f, "btree={}", BtreeIdName(u32::from_le_bytes([b[1], b[2], b[3], b[4]]))),
        _ => Ok(()),
    }
}

/// `bch2_accounting_to_text()`: the counter, then each counter value as a
/// signed number.
pub fn fmt_accounting(f: &mut dyn fmt::Write, k: &Bkey, v: &[u8]) -> fmt::Result {
    fmt_accounting_pos(f, &AccountingPos::from_bpos(k.p))?;
    for c in v.chunks_exact(8) {
        write!(f, " {}", rd(c, 0, 8) as i64)?;
    }
    Ok(())
}

/// `bch2_logged_op_truncate_to_text()`: subvol (u32) @0, inum @8,
/// new_i_size @16.
pub fn fmt_logged_op_truncate(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    write!(f, "subvol={} inum={} new_i_size={}", rd32(v, 0), rd(v, 8, 8), rd(v, 16, 8))
}

/// `bch2_logged_op_finsert_to_text()`: state (u8) @0, subvol (u32) @4,
/// inum @8, dst_offset (signed) @16, src_offset @24, pos @32.
pub fn fmt_logged_op_finsert(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    write!(
        f,
        "subvol={} inum={} dst_offset={} src_offset={}",
        rd32(v, 4),
        rd(v, 8, 8),
        rd(v, 16, 8) as i64,
        rd(v, 24, 8)
    )
}

/// `key_type_cookie_to_text()`.
pub fn fmt_cookie(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    write!(f, "{}", rd(v, 0, 8))
}

/// `bch2_reservation_to_text()`: generation (u32) @0, nr_replicas (u8) @4.
pub fn fmt_reservation(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    write!(f, "generation {} replicas {}", rd32(v, 0), rd(v, 4, 1))
}

/// `bch2_reservation_validate()`.
pub fn validate_reservation(v: &[u8]) -> Result<(), ValError> {
    let r = rd(v, 4, 1) as u8;
    if r == 0 || r as usize > super::extent::REPLICAS_MAX {
        return Err(ValError::ReservationReplicas(r));
    }
    Ok(())
}

/// `bch2_inode_generation_to_text()`.
pub fn fmt_inode_generation(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    write!(f, "generation: {}", rd32(v, 0))
}

/// `bch2_reflink_p_to_text()`: idx @0, front_pad (u32) @8, back_pad @12.
pub fn fmt_reflink_p(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    write!(f, "idx {} front_pad {} back_pad {}", rd(v, 0, 8), rd32(v, 8), rd32(v, 12))
}

/// `bch2_lru_to_text()`.
pub fn fmt_lru(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    write!(f, "idx {}", rd(v, 0, 8))
}

/// `key_type_inline_data_to_text()`: the length and up to 32 bytes in hex.
pub fn fmt_inline_data(f: &mut dyn fmt::Write, data: &[u8]) -> fmt::Result {
    write!(f, "datalen {}: ", data.len())?;
    for b in data.iter().take(32) {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// `bch2_bucket_gens_to_text()`: 256 generations.
pub fn fmt_bucket_gens(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    for (i, g) in v.iter().take(256).enumerate() {
        if i > 0 {
            f.write_char(' ')?;
        }
        write!(f, "{g}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bkey::KeyType;
    use crate::format::bpos::BVersion;
    use proptest::prelude::*;
    use std::string::String;

    #[test]
    fn subvolume_and_snapshot() {
        let s = Subvolume { snapshot: u32::MAX, inode: 4096, ..Default::default() };
        let k = Bkey::new(KeyType::Subvolume, Bpos::pos(0, 1), 5);
        validate_subvolume(&k, &s.encode()).unwrap();
        let mut t = String::new();
        fmt_subvolume(&mut t, &s.encode()).unwrap();
        assert_eq!(t, "root 4096 snapshot id 4294967295 creation_parent 0 fs_parent 0");
        assert_eq!(validate_subvolume(&Bkey::new(KeyType::Subvolume, Bpos::pos(0, 0), 5), &s.encode()), Err(ValError::BadPos));
        let sn = Snapshot { flags: 2, subvol: 1, tree: 1, ..Default::default() };
        let k = Bkey::new(KeyType::Snapshot, Bpos::pos(0, u64::from(u32::MAX)), 7);
        validate_snapshot(&k, &sn.encode()).unwrap();
        assert_eq!(Snapshot::decode(&sn.encode()), sn);
        let mut t = String::new();
        fmt_snapshot(&mut t, &sn.encode()).unwrap();
        assert_eq!(
            t,
            "is_subvol 1 deleted 0 parent          0 children          0          0 subvol 1 tree 1 depth 0 skiplist 0 0 0"
        );
        let bad = Snapshot { children: [1, 2], ..sn };
        assert_eq!(validate_snapshot(&k, &bad.encode()), Err(ValError::SnapshotChildrenNotNormalized));
        let bad = Snapshot { parent: 5, ..sn };
        assert_eq!(validate_snapshot(&k, &bad.encode()), Err(ValError::SnapshotParentBad(5)));
    }

    #[test]
    fn accounting_keys() {
        // replicas: type 2, data_type user, nr_devs 1, nr_required 1, dev 0.
        let mut b = [0u8; 20];
        b[..5].copy_from_slice(&[2, 4, 1, 1, 0]);
        let mut k = Bkey::new(KeyType::Accounting, Bpos::from_bytes(&b), 1);
        assert_eq!(validate_accounting(&k), Err(ValError::AccountingVersionZero));
        k.version = BVersion { hi: 0, lo: 1 };
        validate_accounting(&k).unwrap();
        let mut t = String::new();
        fmt_accounting(&mut t, &k, &(-5i64).to_le_bytes()).unwrap();
        assert_eq!(t, "replicas user: 1/1 [0] -5");
        b[10] = 1;
        k.p = Bpos::from_bytes(&b);
        assert_eq!(validate_accounting(&k), Err(ValError::AccountingJunkAtEnd));
        let mut n = [0u8; 20];
        n[0] = 6;
        n[1] = 2;
        let k = Bkey { version: BVersion { hi: 0, lo: 1 }, ..Bkey::new(KeyType::Accounting, Bpos::from_bytes(&n), 1) };
        let mut t = String::new();
        fmt_accounting(&mut t, &k, &7u64.to_le_bytes()).unwrap();
        assert_eq!(t, "btree btree=dirents 7");
    }

    proptest! {
        #[test]
        fn arbitrary_never_panics(v in proptest::collection::vec(any::<u8>(), 0..64), p in any::<(u64, u64, u32)>()) {
            let k = Bkey { version: BVersion { hi: 0, lo: 1 }, ..Bkey::new(KeyType::Accounting, Bpos::new(p.0, p.1, p.2), v.len() / 8) };
            let _ = validate_accounting(&k);
            let mut t = String::new();
            let _ = fmt_accounting(&mut t, &k, &v);
            let _ = validate_snapshot(&k, &v);
            let _ = fmt_snapshot(&mut t, &v);
            let _ = validate_subvolume(&k, &v);
            let _ = fmt_subvolume(&mut t, &v);
            let _ = fmt_logged_op_finsert(&mut t, &v);
            let _ = fmt_inline_data(&mut t, &v);
        }
    }
}
