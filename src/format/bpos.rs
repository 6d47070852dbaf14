// SPDX-License-Identifier: GPL-2.0
//! Key positions and versions: `struct bpos` and `struct bversion` in
//! `fs/bcachefs/bcachefs_format.h`, compared as `bpos_cmp()` and
//! `bversion_cmp()` in `bkey.h` compare them.
//!
//! On disk (little-endian, as x86 writes them) a `bpos` is 20 bytes in
//! struct order `snapshot` (u32), `offset` (u64), `inode` (u64); a
//! `bversion` is 12 bytes, `lo` (u64) then `hi` (u32).  Positions order by
//! inode, then offset, then snapshot, each unsigned.

use core::cmp::Ordering;
use core::fmt;

/// Size of an on-disk `struct bpos`, bytes.
pub const BPOS_BYTES: usize = 20;
/// Size of an on-disk `struct bversion`, bytes.
pub const BVERSION_BYTES: usize = 12;

/// A key position (`struct bpos`).  Field order gives the ordering C uses:
/// inode, then offset, then snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bpos {
    /// Inode number, or the btree-specific major part of the position.
    pub inode: u64,
    /// Offset: for extents the end of the extent, in 512-byte sectors.
    pub offset: u64,
    /// Snapshot id.
    pub snapshot: u32,
}

/// `POS_MIN`: 0:0:0.
pub const POS_MIN: Bpos = Bpos { inode: 0, offset: 0, snapshot: 0 };
/// `POS_MAX`: U64_MAX:U64_MAX:0.
pub const POS_MAX: Bpos = Bpos { inode: u64::MAX, offset: u64::MAX, snapshot: 0 };
/// `SPOS_MAX`: U64_MAX:U64_MAX:U32_MAX.
pub const SPOS_MAX: Bpos = Bpos { inode: u64::MAX, offset: u64::MAX, snapshot: u32::MAX };

impl Bpos {
    /// `SPOS(inode, offset, snapshot)`.
    pub const fn new(inode: u64, offset: u64, snapshot: u32) -> Bpos {
        Bpos { inode, offset, snapshot }
    }

    /// `POS(inode, offset)`: snapshot 0.
    pub const fn pos(inode: u64, offset: u64) -> Bpos {
        Bpos { inode, offset, snapshot: 0 }
    }

    /// Decodes the 20 on-disk bytes.
    pub fn from_bytes(b: &[u8; BPOS_BYTES]) -> Bpos {
        let mut s = [0u8; 4];
        let mut o = [0u8; 8];
        let mut i = [0u8; 8];
        s.copy_from_slice(&b[0..4]);
        o.copy_from_slice(&b[4..12]);
        i.copy_from_slice(&b[12..20]);
        Bpos {
            snapshot: u32::from_le_bytes(s),
            offset: u64::from_le_bytes(o),
            inode: u64::from_le_bytes(i),
        }
    }

    /// Decodes a position at byte `at` of `b`, if the bytes are there.
    pub fn read(b: &[u8], at: usize) -> Option<Bpos> {
        let s: &[u8; BPOS_BYTES] = b.get(at..at.checked_add(BPOS_BYTES)?)?.try_into().ok()?;
        Some(Bpos::from_bytes(s))
    }

    /// Encodes as the 20 on-disk bytes.
    pub fn to_bytes(self) -> [u8; BPOS_BYTES] {
        let mut b = [0u8; BPOS_BYTES];
        b[0..4].copy_from_slice(&self.snapshot.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..20].copy_from_slice(&self.inode.to_le_bytes());
        b
    }

    /// `bpos_successor()`: the next position in full (snapshot-included)
    /// order, or `None` after [`SPOS_MAX`].
    pub fn successor(self) -> Option<Bpos> {
        let mut p = self;
        p.snapshot = p.snapshot.wrapping_add(1);
        if p.snapshot != 0 {
            return Some(p);
        }
        p.offset = p.offset.wrapping_add(1);
        if p.offset != 0 {
            return Some(p);
        }
        p.inode = p.inode.checked_add(1)?;
        Some(p)
    }

    /// `bpos_predecessor()`: the previous position, or `None` before
    /// [`POS_MIN`].
    pub fn predecessor(self) -> Option<Bpos> {
        let mut p = self;
        p.snapshot = p.snapshot.wrapping_sub(1);
        if p.snapshot != u32::MAX {
            return Some(p);
        }
        p.offset = p.offset.wrapping_sub(1);
        if p.offset != u64::MAX {
            return Some(p);
        }
        p.inode = p.inode.checked_sub(1)?;
        Some(p)
    }

    /// `bkey_cmp()`: compares ignoring the snapshot field.
    pub fn cmp_no_snapshot(&self, other: &Bpos) -> Ordering {
        (self.inode, self.offset).cmp(&(other.inode, other.offset))
    }
}

impl fmt::Display for Bpos {
    /// `bch2_bpos_to_text()`: `POS_MIN`, `POS_MAX`, `SPOS_MAX`, or
    /// `inode:offset:snapshot` with `U64_MAX`/`U32_MAX` for all-ones parts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == POS_MIN {
            return f.write_str("POS_MIN");
        }
        if *self == POS_MAX {
            return f.write_str("POS_MAX");
        }
        if *self == SPOS_MAX {
            return f.write_str("SPOS_MAX");
        }
        if self.inode == u64::MAX {
            f.write_str("U64_MAX:")?;
        } else {
            write!(f, "{}:", self.inode)?;
        }
        if self.offset == u64::MAX {
            f.write_str("U64_MAX:")?;
        } else {
            write!(f, "{}:", self.offset)?;
        }
        if self.snapshot == u32::MAX {
            f.write_str("U32_MAX")
        } else {
            write!(f, "{}", self.snapshot)
        }
    }
}

/// A key version (`struct bversion`): 96 bits, compared `hi` first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BVersion {
    /// High 32 bits.
    pub hi: u32,
    /// Low 64 bits; `bch2_bkey_to_text()` prints only these.
    pub lo: u64,
}

impl BVersion {
    /// `ZERO_VERSION`.
    pub const ZERO: BVersion = BVersion { hi: 0, lo: 0 };
    /// `MAX_VERSION`.
    pub const MAX: BVersion = BVersion { hi: u32::MAX, lo: u64::MAX };

    /// `bversion_zero()`.
    pub fn is_zero(self) -> bool {
        self == BVersion::ZERO
    }

    /// Decodes the 12 on-disk bytes.
    pub fn from_bytes(b: &[u8; BVERSION_BYTES]) -> BVersion {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 4];
        lo.copy_from_slice(&b[0..8]);
        hi.copy_from_slice(&b[8..12]);
        BVersion { lo: u64::from_le_bytes(lo), hi: u32::from_le_bytes(hi) }
    }

    /// Encodes as the 12 on-disk bytes.
    pub fn to_bytes(self) -> [u8; BVERSION_BYTES] {
        let mut b = [0u8; BVERSION_BYTES];
        b[0..8].copy_from_slice(&self.lo.to_le_bytes());
        b[8..12].copy_from_slice(&self.hi.to_le_bytes());
        b
    }
}

impl PartialOrd for BVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BVersion {
    /// `bversion_cmp()`: `hi` first, then `lo`.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.hi, self.lo).cmp(&(other.hi, other.lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;

    #[test]
    fn prints_like_c() {
        assert_eq!(POS_MIN.to_string(), "POS_MIN");
        assert_eq!(POS_MAX.to_string(), "POS_MAX");
        assert_eq!(SPOS_MAX.to_string(), "SPOS_MAX");
        assert_eq!(Bpos::new(4096, 0, u32::MAX).to_string(), "4096:0:U32_MAX");
        assert_eq!(Bpos::new(u64::MAX, 7, 1).to_string(), "U64_MAX:7:1");
        assert_eq!(Bpos::new(1, u64::MAX, 1).to_string(), "1:U64_MAX:1");
    }

    #[test]
    fn layout_is_snapshot_offset_inode() {
        let p = Bpos::new(0x0102030405060708, 0x1112131415161718, 0x21222324);
        let b = p.to_bytes();
        assert_eq!(&b[0..4], &[0x24, 0x23, 0x22, 0x21]);
        assert_eq!(b[4], 0x18);
        assert_eq!(b[12], 0x08);
        assert_eq!(Bpos::from_bytes(&b), p);
        assert_eq!(Bpos::read(&b, 0), Some(p));
        assert_eq!(Bpos::read(&b, 1), None);
        assert_eq!(Bpos::read(&b, usize::MAX), None);
    }

    #[test]
    fn successor_and_predecessor_carry() {
        assert_eq!(Bpos::new(1, 2, u32::MAX).successor(), Some(Bpos::new(1, 3, 0)));
        assert_eq!(Bpos::new(1, u64::MAX, u32::MAX).successor(), Some(Bpos::new(2, 0, 0)));
        assert_eq!(SPOS_MAX.successor(), None);
        assert_eq!(POS_MIN.predecessor(), None);
        assert_eq!(Bpos::new(2, 0, 0).predecessor(), Some(Bpos::new(1, u64::MAX, u32::MAX)));
    }

    #[test]
    fn version_orders_hi_first() {
        let a = BVersion { hi: 1, lo: 0 };
        let b = BVersion { hi: 0, lo: u64::MAX };
        assert!(a > b);
        assert_eq!(BVersion::from_bytes(&a.to_bytes()), a);
        assert!(BVersion::ZERO.is_zero());
    }

    proptest! {
        #[test]
        fn order_matches_c_bpos_cmp(a in any::<(u64, u64, u32)>(), b in any::<(u64, u64, u32)>()) {
            let (pa, pb) = (Bpos::new(a.0, a.1, a.2), Bpos::new(b.0, b.1, b.2));
            let c = a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2));
            prop_assert_eq!(pa.cmp(&pb), c);
            prop_assert_eq!(Bpos::from_bytes(&pa.to_bytes()), pa);
        }
    }
}
