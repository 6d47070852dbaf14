// SPDX-License-Identifier: GPL-2.0
//! Member devices: `struct bch_member` and the `members_v1`/`members_v2`
//! superblock fields (`fs/bcachefs/sb-members_format.h`,
//! `fs/bcachefs/sb-members.c`).
//!
//! Layout of `struct bch_member` (little-endian, 144 bytes in 6.12):
//!
//! | offset | field |
//! |-------:|-------|
//! | 0 | uuid |
//! | 16 | nbuckets (u64) |
//! | 24 | first_bucket (u16), 26 bucket_size (u16, sectors) |
//! | 28 | btree_bitmap_shift (u8), 29 pad\[3\] |
//! | 32 | last_mount (u64, seconds) |
//! | 40 | flags (u64: `BCH_MEMBER_*` bit-fields) |
//! | 48 | iops\[4\] (u32) |
//! | 64 | errors\[3\], 88 errors_at_reset\[3\] (u64) |
//! | 112 | errors_reset_time, 120 seq, 128 btree_allocated_bitmap (u64) |
//! | 136 | last_journal_bucket, 140 last_journal_bucket_offset (u32) |
//!
//! `members_v1` stores the first 56 bytes of each member back to back after
//! the 8-byte field header.  `members_v2` has a 16-byte header (field
//! header, `member_bytes` u16, 6 bytes pad) and entries of `member_bytes`
//! each, so older and newer `struct bch_member`s can be read: a short entry
//! reads as zeroes past its end, a long one is cut (`members_v2_get()`).

use crate::util::le::{le16, le32, le64};

/// Size of `struct bch_member` in 6.12.
pub const MEMBER_BYTES: usize = 144;
/// Bytes of a member in `members_v1` (`BCH_MEMBER_V1_BYTES`).
pub const MEMBER_V1_BYTES: usize = 56;
/// Header of `struct bch_sb_field_members_v2` before the entries.
pub const MEMBERS_V2_HEADER: usize = 16;
/// Header of `struct bch_sb_field_members_v1` before the entries.
pub const MEMBERS_V1_HEADER: usize = 8;

/// Most devices a filesystem can have (`BCH_SB_MEMBERS_MAX`).
pub const SB_MEMBERS_MAX: u8 = 64;
/// Fewest usable buckets a member may have (`BCH_MIN_NR_NBUCKETS`).
pub const MIN_NR_NBUCKETS: u64 = 1 << 6;
/// Most buckets a member may have (`BCH_MEMBER_NBUCKETS_MAX`).
pub const MEMBER_NBUCKETS_MAX: u64 = i32::MAX as u64 - 64;
/// `btree_bitmap_shift` must be below this (`BCH_MI_BTREE_BITMAP_SHIFT_MAX`).
pub const MI_BTREE_BITMAP_SHIFT_MAX: u8 = 58;

/// One `LE64_BITMASK(BCH_MEMBER_*, struct bch_member, flags, lo, hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberFlag {
    /// `BCH_MEMBER_STATE`: rw, ro, failed, spare.
    State,
    /// `BCH_MEMBER_DISCARD`.
    Discard,
    /// `BCH_MEMBER_DATA_ALLOWED`: bitmask of data types.
    DataAllowed,
    /// `BCH_MEMBER_GROUP`: disk group + 1, 0 for none.
    Group,
    /// `BCH_MEMBER_DURABILITY`: durability + 1, 0 meaning the default 1.
    Durability,
    /// `BCH_MEMBER_FREESPACE_INITIALIZED`.
    FreespaceInitialized,
}

impl MemberFlag {
    /// Bits `lo..hi` of `flags` holding the field.
    pub const fn bits(self) -> (u32, u32) {
        match self {
            MemberFlag::State => (0, 4),
            MemberFlag::Discard => (14, 15),
            MemberFlag::DataAllowed => (15, 20),
            MemberFlag::Group => (20, 28),
            MemberFlag::Durability => (28, 30),
            MemberFlag::FreespaceInitialized => (30, 31),
        }
    }

    /// Reads the field from a member's `flags`.
    pub fn get(self, flags: u64) -> u64 {
        let (lo, hi) = self.bits();
        (flags >> lo) & ((1 << (hi - lo)) - 1)
    }

    /// Writes `v`, truncated to the field's width, into `flags`.
    pub fn set(self, flags: &mut u64, v: u64) {
        let (lo, hi) = self.bits();
        let m = ((1u64 << (hi - lo)) - 1) << lo;
        *flags = (*flags & !m) | ((v << lo) & m);
    }
}

/// A member device, decoded (CPU byte order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Device uuid; all zeroes for an empty slot.
    pub uuid: [u8; 16],
    /// Device size in buckets.
    pub nbuckets: u64,
    /// First bucket the allocator may use.
    pub first_bucket: u16,
    /// Bucket size in sectors.
    pub bucket_size: u16,
    /// Granularity (log2 sectors) of `btree_allocated_bitmap`.
    pub btree_bitmap_shift: u8,
    /// Last mount time, seconds since the epoch.
    pub last_mount: u64,
    /// `BCH_MEMBER_*` bit-fields, see [`MemberFlag`].
    pub flags: u64,
    /// Measured iops: seqread, seqwrite, randread, randwrite.
    pub iops: [u32; 4],
    /// Error counts: read, write, checksum.
    pub errors: [u64; 3],
    /// Error counts at the last reset.
    pub errors_at_reset: [u64; 3],
    /// Time of the last error reset.
    pub errors_reset_time: u64,
    /// Superblock sequence number last written to this device.
    pub seq: u64,
    /// Which regions of the device may hold btree nodes.
    pub btree_allocated_bitmap: u64,
    /// Journal bucket last written.
    pub last_journal_bucket: u32,
    /// Offset in it.
    pub last_journal_bucket_offset: u32,
}

impl Member {
    /// Decodes a member from `raw`, which may be shorter (older layouts:
    /// the rest reads as zero) or longer (newer: the rest is ignored) than
    /// [`MEMBER_BYTES`].
    pub fn decode(raw: &[u8]) -> Member {
        let mut b = [0u8; MEMBER_BYTES];
        let n = raw.len().min(MEMBER_BYTES);
        b[..n].copy_from_slice(&raw[..n]);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[..16]);
        let mut iops = [0u32; 4];
        for (i, x) in iops.iter_mut().enumerate() {
            *x = le32(&b, 48 + 4 * i);
        }
        let mut errors = [0u64; 3];
        let mut errors_at_reset = [0u64; 3];
        for i in 0..3 {
            errors[i] = le64(&b, 64 + 8 * i);
            errors_at_reset[i] = le64(&b, 88 + 8 * i);
        }
        Member {
            uuid,
            nbuckets: le64(&b, 16),
            first_bucket: le16(&b, 24),
            bucket_size: le16(&b, 26),
            btree_bitmap_shift: b[28],
            last_mount: le64(&b, 32),
            flags: le64(&b, 40),
            iops,
            errors,
            errors_at_reset,
            errors_reset_time: le64(&b, 112),
            seq: le64(&b, 120),
            btree_allocated_bitmap: le64(&b, 128),
            last_journal_bucket: le32(&b, 136),
            last_journal_bucket_offset: le32(&b, 140),
        }
    }

    /// Encodes the member in the 6.12 layout.
    pub fn encode(&self) -> [u8; MEMBER_BYTES] {
        let mut b = [0u8; MEMBER_BYTES];
        b[..16].copy_from_slice(&self.uuid);
        b[16..24].copy_from_slice(&self.nbuckets.to_le_bytes());
        b[24..26].copy_from_slice(&self.first_bucket.to_le_bytes());
        b[26..28].copy_from_slice(&self.bucket_size.to_le_bytes());
        b[28] = self.btree_bitmap_shift;
        b[32..40].copy_from_slice(&self.last_mount.to_le_bytes());
        b[40..48].copy_from_slice(&self.flags.to_le_bytes());
        for (i, x) in self.iops.iter().enumerate() {
            b[48 + 4 * i..52 + 4 * i].copy_from_slice(&x.to_le_bytes());
        }
        for i in 0..3 {
            b[64 + 8 * i..72 + 8 * i].copy_from_slice(&self.errors[i].to_le_bytes());
            b[88 + 8 * i..96 + 8 * i].copy_from_slice(&self.errors_at_reset[i].to_le_bytes());
        }
        b[112..120].copy_from_slice(&self.errors_reset_time.to_le_bytes());
        b[120..128].copy_from_slice(&self.seq.to_le_bytes());
        b[128..136].copy_from_slice(&self.btree_allocated_bitmap.to_le_bytes());
        b[136..140].copy_from_slice(&self.last_journal_bucket.to_le_bytes());
        b[140..144].copy_from_slice(&self.last_journal_bucket_offset.to_le_bytes());
        b
    }

    /// Whether the slot holds a device (`bch2_member_alive()`: nonzero uuid).
    pub fn alive(&self) -> bool {
        self.uuid != [0; 16]
    }

    /// A `BCH_MEMBER_*` bit-field.
    pub fn flag(&self, f: MemberFlag) -> u64 {
        f.get(self.flags)
    }

    /// Sets a `BCH_MEMBER_*` bit-field.
    pub fn set_flag(&mut self, f: MemberFlag, v: u64) {
        f.set(&mut self.flags, v)
    }

    /// Effective durability (`bch2_mi_to_cpu()`: stored value minus one,
    /// with 0 meaning 1).
    pub fn durability(&self) -> u64 {
        match self.flag(MemberFlag::Durability) {
            0 => 1,
            d => d - 1,
        }
    }

    /// Device size covered by buckets, in sectors.
    pub fn sectors(&self) -> u64 {
        self.nbuckets.saturating_mul(u64::from(self.bucket_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut m = Member {
            uuid: [1; 16],
            nbuckets: 4096,
            first_bucket: 3,
            bucket_size: 512,
            btree_bitmap_shift: 9,
            last_mount: 77,
            iops: [1, 2, 3, 4],
            errors: [5, 6, 7],
            errors_at_reset: [8, 9, 10],
            errors_reset_time: 11,
            seq: 12,
            btree_allocated_bitmap: 13,
            last_journal_bucket: 14,
            last_journal_bucket_offset: 15,
            ..Member::default()
        };
        m.set_flag(MemberFlag::DataAllowed, 0x1c);
        m.set_flag(MemberFlag::Durability, 2);
        m.set_flag(MemberFlag::Discard, 1);
        let b = m.encode();
        assert_eq!(Member::decode(&b), m);
        assert_eq!(m.flags, 0x1c << 15 | 2 << 28 | 1 << 14);
        assert_eq!(m.durability(), 1);
        assert!(m.alive());
        // A v1 entry: fields past byte 56 read as zero.
        let short = Member::decode(&b[..MEMBER_V1_BYTES]);
        assert_eq!(short.flags, m.flags);
        assert_eq!(short.seq, 0);
        assert_eq!(short.iops, [1, 2, 0, 0]);
        assert_eq!(Member::decode(&[]), Member::default());
        assert!(!Member::default().alive());
        assert_eq!(Member::default().durability(), 1);
    }

    #[test]
    fn member_flags_truncate() {
        let mut f = 0;
        MemberFlag::State.set(&mut f, 0x13);
        assert_eq!(MemberFlag::State.get(f), 3);
        assert_eq!(MemberFlag::Discard.get(f), 0);
    }
}
