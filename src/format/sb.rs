// SPDX-License-Identifier: GPL-2.0
//! The superblock, `struct bch_sb` in `fs/bcachefs/bcachefs_format.h`.
//!
//! Layout of the fixed part (little-endian, 8-byte aligned, 752 bytes
//! before the variable-length fields):
//!
//! | offset | field |
//! |-------:|-------|
//! | 0 | csum (`bch_csum`, 16 bytes) |
//! | 16 | version, version_min (u16 each), pad (4 bytes) |
//! | 24 | magic (uuid) |
//! | 40 | uuid, 56 user_uuid |
//! | 72 | label (32 bytes) |
//! | 104 | offset (sectors), 112 seq |
//! | 120 | block_size (u16, sectors), 122 dev_idx, 123 nr_devices |
//! | 124 | u64s (u32: size of the variable part in u64s) |
//! | 128 | time_base_lo (u64), 136 time_base_hi (u32), 140 time_precision (u32) |
//! | 144 | flags\[7\] (u64), 200 write_time, 208 features\[2\], 224 compat\[2\] |
//! | 240 | layout (`bch_sb_layout`, 512 bytes) |
//! | 752 | variable-length fields (`bch_sb_field`) |
//!
//! The superblock is `752 + 8 * u64s` bytes (`vstruct_bytes()`).  Each
//! variable-length field starts with an 8-byte header, `u64s` (u32, the
//! field's whole size in u64s, header included) and `type` (u32), and the
//! next field follows at `8 * u64s` bytes.
//!
//! The layout (`struct bch_sb_layout`, 512 bytes): magic (16), layout_type
//! (u8), sb_max_size_bits (u8, log2 of the size of each superblock slot in
//! sectors), nr_superblocks (u8), 5 bytes pad, sb_offset\[61\] (u64,
//! sectors).  A copy also sits alone in sector 7, where C looks for the
//! backups when the primary is unreadable.
//!
//! [`probe`] does the first checks of `read_one_super()`; [`Sb::parse`]
//! gives typed access to a whole superblock, [`Sb::verify_csum`] checks
//! its checksum as `read_one_super()` does and [`Sb::validate`] runs
//! `bch2_sb_validate()`.  Nothing here panics on hostile bytes.

use core::fmt;

use super::sb_members::{
    Member, MEMBERS_V1_HEADER, MEMBERS_V2_HEADER, MEMBER_NBUCKETS_MAX, MEMBER_V1_BYTES,
    MIN_NR_NBUCKETS, MI_BTREE_BITMAP_SHIFT_MAX, SB_MEMBERS_MAX,
};
use super::sb_opts::{OptError, OptField, SbFlag, SbOpt, FEATURE_NR, SB_OPTS};
use super::version::{Version, VERSION_CURRENT, VERSION_MIN};
use crate::checksum::{self, Csum, CsumType, CSUM_NR};
use crate::errcode::{AllocError, Errno};
use crate::platform::{BlockDev, Vec, SECTOR_SIZE};
use crate::util::le::{le16, le32, le64};

/// Sector of the primary superblock (`BCH_SB_SECTOR`).
pub const SB_SECTOR: u64 = 8;
/// Sector of the superblock layout copy (`BCH_SB_LAYOUT_SECTOR`).
pub const SB_LAYOUT_SECTOR: u64 = 7;
/// Bytes the first read of a superblock takes; enough for the fixed part
/// and the usual fields.  A larger superblock is re-read at its full size.
pub const SB_PROBE_BYTES: usize = 4096;
/// Largest `sb_max_size_bits` honoured (`BCH_SB_LAYOUT_SIZE_BITS_MAX`):
/// superblocks are at most 512 << 16 bytes (32 MiB).
pub const SB_LAYOUT_SIZE_BITS_MAX: u8 = 16;
/// Size of `struct bch_sb_layout`.
pub const LAYOUT_BYTES: usize = 512;
/// Slots in `bch_sb_layout.sb_offset[]`.
pub const LAYOUT_MAX_SUPERBLOCKS: usize = 61;
/// Length of the label (`BCH_SB_LABEL_SIZE`).
pub const LABEL_BYTES: usize = 32;
/// `PAGE_SECTORS` of the kernels we target (4 KiB pages, x86-64):
/// `bch2_sb_validate()` rejects blocks larger than a page.
pub const PAGE_SECTORS: u16 = 8;
/// Nanoseconds per second, the ceiling of `time_precision`.
pub const NSEC_PER_SEC: u32 = 1_000_000_000;

/// Magic of a bcachefs superblock (`BCHFS_MAGIC`), as stored on disk.
pub const BCHFS_MAGIC: [u8; 16] = [
    0xc6, 0x85, 0x73, 0xf6, 0x66, 0xce, 0x90, 0xa9, 0xd9, 0x6a, 0x60, 0xcf, 0x80, 0x3d, 0xf7, 0xef,
];
/// Magic of old superblocks, still accepted (`BCACHE_MAGIC`).
pub const BCACHE_MAGIC: [u8; 16] = [
    0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba, 0x6d, 0x81,
];

/// Size of the fixed part of `struct bch_sb`, in bytes.
pub const SB_FIXED_BYTES: usize = 752;

/// Byte offsets of the fields of `struct bch_sb` and `struct bch_sb_layout`.
pub mod off {
    /// `csum` (16 bytes).
    pub const CSUM: usize = 0;
    /// `version` (u16); the checksum covers everything from here on.
    pub const VERSION: usize = 16;
    /// `version_min` (u16).
    pub const VERSION_MIN: usize = 18;
    /// `magic` (16 bytes).
    pub const MAGIC: usize = 24;
    /// `uuid`, the internal uuid.
    pub const UUID: usize = 40;
    /// `user_uuid`, the external uuid.
    pub const USER_UUID: usize = 56;
    /// `label` (32 bytes).
    pub const LABEL: usize = 72;
    /// `offset` (u64): the sector this copy was written at.
    pub const OFFSET: usize = 104;
    /// `seq` (u64).
    pub const SEQ: usize = 112;
    /// `block_size` (u16, sectors).
    pub const BLOCK_SIZE: usize = 120;
    /// `dev_idx` (u8).
    pub const DEV_IDX: usize = 122;
    /// `nr_devices` (u8).
    pub const NR_DEVICES: usize = 123;
    /// `u64s` (u32).
    pub const U64S: usize = 124;
    /// `time_base_lo` (u64, nanoseconds).
    pub const TIME_BASE_LO: usize = 128;
    /// `time_base_hi` (u32).
    pub const TIME_BASE_HI: usize = 136;
    /// `time_precision` (u32, nanoseconds).
    pub const TIME_PRECISION: usize = 140;
    /// `flags[7]` (u64).
    pub const FLAGS: usize = 144;
    /// `write_time` (u64, seconds).
    pub const WRITE_TIME: usize = 200;
    /// `features[2]` (u64).
    pub const FEATURES: usize = 208;
    /// `compat[2]` (u64).
    pub const COMPAT: usize = 224;
    /// `layout` (512 bytes).
    pub const LAYOUT: usize = 240;
    /// `layout.sb_max_size_bits`, read by the probe.
    pub const LAYOUT_SB_MAX_SIZE_BITS: usize = LAYOUT + layout::SB_MAX_SIZE_BITS;
    /// The first variable-length field.
    pub const FIELDS: usize = 752;

    /// Offsets inside `struct bch_sb_layout`.
    pub mod layout {
        /// `magic` (16 bytes).
        pub const MAGIC: usize = 0;
        /// `layout_type` (u8).
        pub const LAYOUT_TYPE: usize = 16;
        /// `sb_max_size_bits` (u8).
        pub const SB_MAX_SIZE_BITS: usize = 17;
        /// `nr_superblocks` (u8).
        pub const NR_SUPERBLOCKS: usize = 18;
        /// `sb_offset[61]` (u64).
        pub const SB_OFFSET: usize = 24;
    }
}

/// Variable-length superblock field types (`BCH_SB_FIELDS()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum FieldType {
    Journal = 0,
    MembersV1 = 1,
    Crypt = 2,
    ReplicasV0 = 3,
    Quota = 4,
    DiskGroups = 5,
    Clean = 6,
    Replicas = 7,
    JournalSeqBlacklist = 8,
    JournalV2 = 9,
    Counters = 10,
    MembersV2 = 11,
    Errors = 12,
    Ext = 13,
    Downgrade = 14,
}

/// Names of the field types, indexed by type (`bch2_sb_fields[]`).
pub const FIELD_NAMES: &[&str] = &[
    "journal",
    "members_v1",
    "crypt",
    "replicas_v0",
    "quota",
    "disk_groups",
    "clean",
    "replicas",
    "journal_seq_blacklist",
    "journal_v2",
    "counters",
    "members_v2",
    "errors",
    "ext",
    "downgrade",
];

/// Size of `struct bch_sb_field_ext` in 6.12.
pub const FIELD_EXT_BYTES: usize = 96;
/// Smallest `ext` field `bch2_sb_ext_validate()` accepts.
pub const FIELD_EXT_MIN_BYTES: usize = 88;
/// Size of `struct bch_sb_field_crypt`.
pub const FIELD_CRYPT_BYTES: usize = 64;

/// Name of field type `ty`, if it is one 6.12 knows.
pub fn field_name(ty: u32) -> Option<&'static str> {
    FIELD_NAMES.get(ty as usize).copied()
}

/// Why a variable-length field failed its validator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldError {
    /// `members_v1` is too short for `nr_devices` entries.
    MembersV1TooManyDevices,
    /// `members_v2` is too short for `nr_devices` entries.
    MembersV2TooSmall {
        /// Bytes needed.
        need: u64,
        /// Bytes the field has.
        have: u64,
    },
    /// A member's `nbuckets` is above `BCH_MEMBER_NBUCKETS_MAX`.
    MemberTooManyBuckets {
        /// Device index.
        dev: u8,
        /// Its `nbuckets`.
        nbuckets: u64,
    },
    /// A member has fewer than `BCH_MIN_NR_NBUCKETS` buckets past
    /// `first_bucket`.
    MemberNotEnoughBuckets {
        /// Device index.
        dev: u8,
        /// Its `nbuckets`.
        nbuckets: u64,
    },
    /// A member's bucket is smaller than a block.
    MemberBucketBelowBlock {
        /// Device index.
        dev: u8,
        /// Bucket size, sectors.
        bucket_size: u16,
        /// Block size, sectors.
        block_size: u16,
    },
    /// A member's bucket is smaller than a btree node.
    MemberBucketBelowBtreeNode {
        /// Device index.
        dev: u8,
        /// Bucket size, sectors.
        bucket_size: u16,
        /// Btree node size, sectors.
        btree_node_size: u64,
    },
    /// A member's `btree_bitmap_shift` is too large.
    MemberBadBitmapShift {
        /// Device index.
        dev: u8,
        /// The shift.
        shift: u8,
    },
    /// `ext` is shorter than 88 bytes.
    ExtTooSmall {
        /// Its size.
        bytes: u64,
    },
    /// `crypt` is shorter than `struct bch_sb_field_crypt`.
    CryptWrongSize {
        /// Its size.
        bytes: u64,
    },
    /// `crypt` names a key derivation function we do not know.
    CryptBadKdf(u64),
    /// A journal bucket at bucket 0.
    JournalBucketZero,
    /// A journal bucket below the member's `first_bucket`.
    JournalBucketBeforeFirst {
        /// The bucket.
        bucket: u64,
        /// `first_bucket`.
        first: u16,
    },
    /// A journal bucket past the end of the device.
    JournalBucketPastEnd {
        /// The bucket.
        bucket: u64,
        /// `nbuckets`.
        nbuckets: u64,
    },
    /// A journal bucket listed twice.
    JournalBucketDuplicate(u64),
    /// A `journal_v2` range with `nr` 0 or wrapping around.
    JournalV2BadNr {
        /// Range start.
        start: u64,
        /// Range length.
        nr: u64,
    },
    /// Two `journal_v2` ranges overlap.
    JournalV2Overlap {
        /// First range start.
        start: u64,
        /// First range end.
        end: u64,
        /// Second range start.
        next_start: u64,
        /// Second range end.
        next_end: u64,
    },
    /// `journal_v2` lists more than `UINT_MAX` buckets.
    JournalV2TooMany(u64),
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FieldError::MembersV1TooManyDevices => f.write_str("too many devices for section size"),
            FieldError::MembersV2TooSmall { need, have } => {
                write!(f, "section too small ({need} > {have})")
            }
            FieldError::MemberTooManyBuckets { dev, nbuckets } => write!(
                f,
                "device {dev}: too many buckets (got {nbuckets}, max {MEMBER_NBUCKETS_MAX})"
            ),
            FieldError::MemberNotEnoughBuckets { dev, nbuckets } => write!(
                f,
                "device {dev}: not enough buckets (got {nbuckets}, min {MIN_NR_NBUCKETS})"
            ),
            FieldError::MemberBucketBelowBlock { dev, bucket_size, block_size } => write!(
                f,
                "device {dev}: bucket size {bucket_size} smaller than block size {block_size}"
            ),
            FieldError::MemberBucketBelowBtreeNode { dev, bucket_size, btree_node_size } => write!(
                f,
                "device {dev}: bucket size {bucket_size} smaller than btree node size {btree_node_size}"
            ),
            FieldError::MemberBadBitmapShift { dev, shift } => {
                write!(f, "device {dev}: invalid btree_bitmap_shift {shift}")
            }
            FieldError::ExtTooSmall { bytes } => {
                write!(f, "field too small ({bytes} < {FIELD_EXT_MIN_BYTES})")
            }
            FieldError::CryptWrongSize { bytes } => {
                write!(f, "wrong size (got {bytes} should be {FIELD_CRYPT_BYTES})")
            }
            FieldError::CryptBadKdf(t) => write!(f, "bad kdf type {t}"),
            FieldError::JournalBucketZero => f.write_str("journal bucket at sector 0"),
            FieldError::JournalBucketBeforeFirst { bucket, first } => {
                write!(f, "journal bucket {bucket} before first bucket {first}")
            }
            FieldError::JournalBucketPastEnd { bucket, nbuckets } => {
                write!(f, "journal bucket {bucket} past end of device (nbuckets {nbuckets})")
            }
            FieldError::JournalBucketDuplicate(b) => write!(f, "duplicate journal buckets {b}"),
            FieldError::JournalV2BadNr { start, nr } => {
                write!(f, "journal buckets entry with bad nr: {start}+{nr}")
            }
            FieldError::JournalV2Overlap { start, end, next_start, next_end } => write!(
                f,
                "duplicate journal buckets in ranges {start}-{end}, {next_start}-{next_end}"
            ),
            FieldError::JournalV2TooMany(n) => {
                write!(f, "too many journal buckets: {n} > {}", u32::MAX)
            }
        }
    }
}

/// Why a superblock was rejected; each variant names the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbError {
    /// The buffer is shorter than the fixed part (`have` bytes).
    Truncated {
        /// Bytes available.
        have: usize,
    },
    /// The magic is neither `BCHFS_MAGIC` nor `BCACHE_MAGIC`.
    BadMagic {
        /// The 16 bytes found at offset 24.
        got: [u8; 16],
    },
    /// `version` is one a 6.12 kernel cannot read.
    UnsupportedVersion(u16),
    /// `version_min` is one a 6.12 kernel cannot read.
    UnsupportedVersionMin(u16),
    /// `version_min` is newer than `version`.
    VersionMinAboveVersion {
        /// `version_min`.
        min: u16,
        /// `version`.
        version: u16,
    },
    /// `u64s` makes the superblock larger than the layout allows.
    TooBig {
        /// Size the superblock claims, in bytes.
        bytes: u64,
        /// Maximum from `layout.sb_max_size_bits`, in bytes.
        max: u64,
    },
    /// The buffer holds the fixed part but not all of the superblock: read
    /// `need` bytes and parse again.
    Incomplete {
        /// Bytes available.
        have: usize,
        /// Size of the superblock.
        need: u64,
    },
    /// `BCH_SB_CSUM_TYPE` is not a checksum type.
    UnknownCsumType(u64),
    /// The superblock is checksummed with a MAC, which needs the key.
    CsumNeedsKey(CsumType),
    /// The checksum does not match the contents.
    BadCsum {
        /// `BCH_SB_CSUM_TYPE`.
        ty: CsumType,
        /// Checksum stored in the superblock.
        stored: Csum,
        /// Checksum of the contents.
        computed: Csum,
    },
    /// `features` has bits 6.12 does not know.
    IncompatibleFeatures {
        /// `features[0]`.
        features0: u64,
        /// `features[1]`.
        features1: u64,
    },
    /// `block_size` is larger than a page.
    BlockSizeTooBig {
        /// `block_size`, sectors.
        got: u16,
    },
    /// `user_uuid` is all zeroes.
    ZeroUserUuid,
    /// `uuid` is all zeroes.
    ZeroUuid,
    /// `nr_devices` is 0 or above `BCH_SB_MEMBERS_MAX`.
    BadNrDevices(u8),
    /// `dev_idx` is not below `nr_devices`.
    BadDevIdx {
        /// `dev_idx`.
        dev_idx: u8,
        /// `nr_devices`.
        nr_devices: u8,
    },
    /// `time_precision` is 0 or more than a second.
    BadTimePrecision(u32),
    /// An option stored in the superblock is out of range.
    BadOption {
        /// The option's name.
        opt: &'static str,
        /// What is wrong with it.
        err: OptError,
    },
    /// `layout.magic` is not a bcachefs magic.
    LayoutBadMagic,
    /// `layout.layout_type` is not 0.
    LayoutBadType(u8),
    /// `layout.nr_superblocks` is 0.
    LayoutNoSuperblocks,
    /// `layout.nr_superblocks` is above 61.
    LayoutTooManySuperblocks(u8),
    /// `layout.sb_max_size_bits` is above 16.
    LayoutMaxSizeBitsTooHigh(u8),
    /// Two superblock slots of the layout overlap.
    LayoutOverlap {
        /// Index of the earlier superblock.
        sb: u8,
        /// Sector it ends at.
        ends: u64,
        /// Sector the next one starts at.
        next: u64,
    },
    /// A field has `u64s == 0`.
    FieldZeroSize {
        /// Its type.
        ty: u32,
    },
    /// A field runs past the end of the superblock.
    FieldPastEnd {
        /// Its type.
        ty: u32,
    },
    /// There is no `members_v1` field.
    MembersMissing,
    /// A field failed its own validator.
    Field {
        /// The field's type.
        ty: u32,
        /// What is wrong.
        err: FieldError,
    },
    /// Before a write: this device's member `seq` differs from `seq`.
    MemberSeqMismatch {
        /// The member's `seq`.
        member_seq: u64,
        /// The superblock's `seq`.
        sb_seq: u64,
    },
    /// Out of memory while validating.
    NoMem,
    /// The device failed a read.
    Io(Errno),
}

impl From<AllocError> for SbError {
    fn from(_: AllocError) -> SbError {
        SbError::NoMem
    }
}

impl SbError {
    /// The error number C bcachefs returns for the same problem: a missing
    /// magic is `EINVAL` (not a bcachefs device), the rest `EINVAL` as
    /// `-BCH_ERR_invalid_sb_*` collapses to for the VFS.
    pub fn errno(&self) -> Errno {
        match self {
            SbError::NoMem => Errno::ENOMEM,
            SbError::Io(e) => *e,
            _ => Errno::EINVAL,
        }
    }
}

struct FieldName(u32);

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match field_name(self.0) {
            Some(n) => f.write_str(n),
            None => write!(f, "(unknown field {})", self.0),
        }
    }
}

impl fmt::Display for SbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SbError::Truncated { have } => write!(
                f,
                "superblock truncated: {have} bytes, need at least {SB_FIXED_BYTES}"
            ),
            SbError::BadMagic { got } => {
                f.write_str("not a bcachefs superblock (got magic ")?;
                fmt_uuid(f, &got)?;
                write!(f, " at sector {SB_SECTOR})")
            }
            SbError::UnsupportedVersion(v) => write!(
                f,
                "unsupported superblock version {} (min {}, max {})",
                Version(v),
                Version(VERSION_MIN),
                Version(VERSION_CURRENT)
            ),
            SbError::UnsupportedVersionMin(v) => write!(
                f,
                "unsupported superblock version_min {} (min {}, max {})",
                Version(v),
                Version(VERSION_MIN),
                Version(VERSION_CURRENT)
            ),
            SbError::VersionMinAboveVersion { min, version } => write!(
                f,
                "bad minimum version {}, greater than version field {}",
                Version(min),
                Version(version)
            ),
            SbError::TooBig { bytes, max } => write!(
                f,
                "superblock too big: {bytes} bytes, layout max {max}"
            ),
            SbError::Incomplete { have, need } => {
                write!(f, "superblock incomplete: have {have} bytes of {need}")
            }
            SbError::UnknownCsumType(t) => write!(f, "unknown checksum type {t}"),
            SbError::CsumNeedsKey(t) => {
                write!(f, "superblock checksum type {} needs the encryption key", t.name())
            }
            SbError::BadCsum { ty, stored, computed } => write!(
                f,
                "checksum error, type {}: got {} should be {}",
                ty.name(),
                computed.display(ty),
                stored.display(ty)
            ),
            SbError::IncompatibleFeatures { features0, features1 } => write!(
                f,
                "filesystem has incompatible features ({features0:#x}, {features1:#x})"
            ),
            SbError::BlockSizeTooBig { got } => {
                write!(f, "block size too big (got {got}, max {PAGE_SECTORS})")
            }
            SbError::ZeroUserUuid => f.write_str("bad user UUID (got zeroes)"),
            SbError::ZeroUuid => f.write_str("bad internal UUID (got zeroes)"),
            SbError::BadNrDevices(n) => {
                write!(f, "bad number of member devices {n} (max {SB_MEMBERS_MAX})")
            }
            SbError::BadDevIdx { dev_idx, nr_devices } => {
                write!(f, "bad dev_idx (got {dev_idx}, nr_devices {nr_devices})")
            }
            SbError::BadTimePrecision(p) => {
                write!(f, "invalid time precision: {p} (min 1, max {NSEC_PER_SEC})")
            }
            SbError::BadOption { opt, err } => write!(f, "invalid option {opt}: {err}"),
            SbError::LayoutBadMagic => f.write_str("not a bcachefs superblock layout"),
            SbError::LayoutBadType(t) => write!(f, "invalid superblock layout type {t}"),
            SbError::LayoutNoSuperblocks => {
                f.write_str("invalid superblock layout: no superblocks")
            }
            SbError::LayoutTooManySuperblocks(n) => {
                write!(f, "invalid superblock layout: too many superblocks ({n})")
            }
            SbError::LayoutMaxSizeBitsTooHigh(b) => {
                write!(f, "invalid superblock layout: max_size_bits too high ({b})")
            }
            SbError::LayoutOverlap { sb, ends, next } => write!(
                f,
                "invalid superblock layout: superblocks overlap (sb {sb} ends at {ends} next starts at {next})"
            ),
            SbError::FieldZeroSize { ty } => write!(
                f,
                "invalid superblock: optional field with size 0 (type {ty})"
            ),
            SbError::FieldPastEnd { ty } => write!(
                f,
                "invalid superblock: optional field extends past end of superblock (type {ty})"
            ),
            SbError::MembersMissing => f.write_str("invalid superblock: member info area missing"),
            SbError::Field { ty, err } => {
                write!(f, "invalid superblock section {}: {err}", FieldName(ty))
            }
            SbError::MemberSeqMismatch { member_seq, sb_seq } => write!(
                f,
                "invalid superblock: member seq {member_seq} != sb seq {sb_seq}"
            ),
            SbError::NoMem => f.write_str("out of memory validating the superblock"),
            SbError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// Writes a uuid in its canonical 8-4-4-4-12 form.
pub fn fmt_uuid(f: &mut dyn fmt::Write, u: &[u8; 16]) -> fmt::Result {
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            f.write_char('-')?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

// Little-endian readers.  Callers guarantee `at + N <= b.len()`.

fn uuid_at(b: &[u8], at: usize) -> [u8; 16] {
    let mut u = [0u8; 16];
    u.copy_from_slice(&b[at..at + 16]);
    u
}

/// What a successful probe learned from the fixed part of a superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbProbe {
    /// Metadata version of the superblock.
    pub version: Version,
    /// Oldest metadata version on the volume.
    pub version_min: Version,
    /// Internal uuid (`uuid`): names `/sys/fs/bcachefs/<uuid>/`.
    pub uuid: [u8; 16],
    /// Label, NUL-padded.
    pub label: [u8; 32],
    /// Total size of the superblock (fixed part plus fields), in bytes.
    pub bytes: u64,
}

/// Checks that `buf` (read at [`SB_SECTOR`]) starts with a bcachefs
/// superblock a 6.12 kernel accepts: the magic, the version range and the
/// size, in the order `read_one_super()` in `fs/bcachefs/super-io.c`
/// checks them.  The checksum and the fields are checked by full
/// validation once the whole superblock has been read.
///
/// Errors: [`SbError`], each naming the field at fault.
pub fn probe(buf: &[u8]) -> Result<SbProbe, SbError> {
    if buf.len() < SB_FIXED_BYTES {
        return Err(SbError::Truncated { have: buf.len() });
    }
    let magic = uuid_at(buf, off::MAGIC);
    if magic != BCHFS_MAGIC && magic != BCACHE_MAGIC {
        return Err(SbError::BadMagic { got: magic });
    }
    check_versions(buf)?;
    let version = Version(le16(buf, off::VERSION));
    let version_min = Version(le16(buf, off::VERSION_MIN));
    let bytes = SB_FIXED_BYTES as u64 + 8 * u64::from(le32(buf, off::U64S));
    let bits = buf[off::LAYOUT_SB_MAX_SIZE_BITS].min(SB_LAYOUT_SIZE_BITS_MAX);
    let max = 512u64 << bits;
    if bytes > max {
        return Err(SbError::TooBig { bytes, max });
    }
    let mut label = [0u8; 32];
    label.copy_from_slice(&buf[off::LABEL..off::LABEL + 32]);
    Ok(SbProbe { version, version_min, uuid: uuid_at(buf, off::UUID), label, bytes })
}

/// `bch2_sb_compatible()`: both versions readable, `version_min` not
/// above `version`.  `buf` holds at least the fixed part.
fn check_versions(buf: &[u8]) -> Result<(), SbError> {
    let version = Version(le16(buf, off::VERSION));
    let version_min = Version(le16(buf, off::VERSION_MIN));
    if !version.is_compatible() {
        return Err(SbError::UnsupportedVersion(version.0));
    }
    if !version_min.is_compatible() {
        return Err(SbError::UnsupportedVersionMin(version_min.0));
    }
    if version_min > version {
        return Err(SbError::VersionMinAboveVersion { min: version_min.0, version: version.0 });
    }
    Ok(())
}

/// `struct bch_sb_layout`: where the copies of the superblock live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `BCHFS_MAGIC` (or the old `BCACHE_MAGIC`).
    pub magic: [u8; 16],
    /// Always 0.
    pub layout_type: u8,
    /// log2 of the sectors reserved for each copy.
    pub sb_max_size_bits: u8,
    /// Number of copies.
    pub nr_superblocks: u8,
    /// Sector of each copy.
    pub sb_offset: [u64; LAYOUT_MAX_SUPERBLOCKS],
}

impl Layout {
    /// Decodes a layout from its 512 on-disk bytes.
    pub fn decode(b: &[u8; LAYOUT_BYTES]) -> Layout {
        let mut sb_offset = [0u64; LAYOUT_MAX_SUPERBLOCKS];
        for (i, o) in sb_offset.iter_mut().enumerate() {
            *o = le64(b, off::layout::SB_OFFSET + 8 * i);
        }
        Layout {
            magic: uuid_at(b, off::layout::MAGIC),
            layout_type: b[off::layout::LAYOUT_TYPE],
            sb_max_size_bits: b[off::layout::SB_MAX_SIZE_BITS],
            nr_superblocks: b[off::layout::NR_SUPERBLOCKS],
            sb_offset,
        }
    }

    /// Encodes the layout as its 512 on-disk bytes.
    pub fn encode(&self) -> [u8; LAYOUT_BYTES] {
        let mut b = [0u8; LAYOUT_BYTES];
        b[..16].copy_from_slice(&self.magic);
        b[off::layout::LAYOUT_TYPE] = self.layout_type;
        b[off::layout::SB_MAX_SIZE_BITS] = self.sb_max_size_bits;
        b[off::layout::NR_SUPERBLOCKS] = self.nr_superblocks;
        for (i, o) in self.sb_offset.iter().enumerate() {
            let at = off::layout::SB_OFFSET + 8 * i;
            b[at..at + 8].copy_from_slice(&o.to_le_bytes());
        }
        b
    }

    /// The sectors of the copies in use (at most 61).
    pub fn offsets(&self) -> &[u64] {
        &self.sb_offset[..usize::from(self.nr_superblocks).min(LAYOUT_MAX_SUPERBLOCKS)]
    }

    /// Sectors reserved for each copy, `1 << sb_max_size_bits` (capped at
    /// the largest valid size).
    pub fn max_sectors(&self) -> u64 {
        1u64 << self.sb_max_size_bits.min(SB_LAYOUT_SIZE_BITS_MAX)
    }

    /// `validate_sb_layout()` in `super-io.c`: magic, type 0, between 1
    /// and 61 copies, slots of at most 32 MiB, each copy starting after
    /// the previous one's slot ends.
    pub fn validate(&self) -> Result<(), SbError> {
        if self.magic != BCHFS_MAGIC && self.magic != BCACHE_MAGIC {
            return Err(SbError::LayoutBadMagic);
        }
        if self.layout_type != 0 {
            return Err(SbError::LayoutBadType(self.layout_type));
        }
        if self.nr_superblocks == 0 {
            return Err(SbError::LayoutNoSuperblocks);
        }
        if usize::from(self.nr_superblocks) > LAYOUT_MAX_SUPERBLOCKS {
            return Err(SbError::LayoutTooManySuperblocks(self.nr_superblocks));
        }
        if self.sb_max_size_bits > SB_LAYOUT_SIZE_BITS_MAX {
            return Err(SbError::LayoutMaxSizeBitsTooHigh(self.sb_max_size_bits));
        }
        let max = self.max_sectors();
        for (i, w) in self.offsets().windows(2).enumerate() {
            let ends = w[0].wrapping_add(max);
            if w[1] < ends {
                return Err(SbError::LayoutOverlap { sb: i as u8, ends, next: w[1] });
            }
        }
        Ok(())
    }
}

/// One variable-length field: its type and its bytes, header included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbField<'a> {
    /// `type`; see [`FieldType`].
    pub ty: u32,
    /// The whole field, `8 * u64s` bytes starting with the header.
    pub bytes: &'a [u8],
}

impl<'a> SbField<'a> {
    /// The field after its 8-byte header.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[8..]
    }

    /// The field's name, if 6.12 knows its type.
    pub fn name(&self) -> Option<&'static str> {
        field_name(self.ty)
    }
}

/// Iterator over the fields of a superblock, in order
/// (`vstruct_for_each()`); yields an error and stops at the first field
/// with `u64s == 0` or that runs past the end.
#[derive(Clone)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<SbField<'a>, SbError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 8 {
            return None;
        }
        let u64s = le32(self.rest, 0);
        let ty = le32(self.rest, 4);
        if u64s == 0 {
            self.rest = &[];
            return Some(Err(SbError::FieldZeroSize { ty }));
        }
        let bytes = 8 * u64::from(u64s);
        if bytes > self.rest.len() as u64 {
            self.rest = &[];
            return Some(Err(SbError::FieldPastEnd { ty }));
        }
        let (f, rest) = self.rest.split_at(bytes as usize);
        self.rest = rest;
        Some(Ok(SbField { ty, bytes: f }))
    }
}

/// `members_v2`: entries of `member_bytes` bytes each.
#[derive(Clone, Copy, Debug)]
pub struct MembersV2<'a> {
    /// Size of each entry.
    pub member_bytes: u16,
    entries: &'a [u8],
}

impl MembersV2<'_> {
    /// Member `i`, zero-filled past `member_bytes` (`members_v2_get()`);
    /// `None` if the entry is not inside the field.
    pub fn get(&self, i: usize) -> Option<Member> {
        let mb = usize::from(self.member_bytes);
        let start = i.checked_mul(mb)?;
        let end = start.checked_add(mb.min(super::sb_members::MEMBER_BYTES))?;
        self.entries.get(start..end).map(Member::decode)
    }
}

/// `members_v1`: entries of 56 bytes.
#[derive(Clone, Copy, Debug)]
pub struct MembersV1<'a> {
    entries: &'a [u8],
}

impl MembersV1<'_> {
    /// Member `i`, zero-filled past byte 56 (`members_v1_get()`); `None` if
    /// the entry is not inside the field.
    pub fn get(&self, i: usize) -> Option<Member> {
        let start = i.checked_mul(MEMBER_V1_BYTES)?;
        self.entries.get(start..start + MEMBER_V1_BYTES).map(Member::decode)
    }
}

/// How strictly to validate (`enum bch_validate_flags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidateMode {
    /// After reading (flags 0): C first repairs a zero
    /// `journal_flush_delay`, so a zero there is accepted.
    Read,
    /// Before writing (`BCH_VALIDATE_write`): also this device's member
    /// `seq` must equal the superblock's.
    Write,
}

/// A whole superblock in a byte buffer, with typed, bounds-checked access.
///
/// Built by [`Sb::parse`], which guarantees the fixed part is present, the
/// magic and versions are readable and the buffer holds all
/// `752 + 8 * u64s` bytes; the fields are only checked by
/// [`Sb::validate`].
#[derive(Clone, Copy)]
pub struct Sb<'a> {
    b: &'a [u8],
}

impl fmt::Debug for Sb<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sb")
            .field("version", &self.version())
            .field("seq", &self.seq())
            .field("bytes", &self.b.len())
            .finish()
    }
}

impl<'a> Sb<'a> {
    /// Parses the superblock at the start of `buf`: [`probe`]'s checks,
    /// then that `buf` holds the whole superblock.  Does not check the
    /// checksum ([`Sb::verify_csum`]) or the contents ([`Sb::validate`]).
    ///
    /// Errors: [`probe`]'s, and [`SbError::Incomplete`] when `buf` is
    /// shorter than the superblock (read more and parse again).
    pub fn parse(buf: &'a [u8]) -> Result<Sb<'a>, SbError> {
        let p = probe(buf)?;
        if (buf.len() as u64) < p.bytes {
            return Err(SbError::Incomplete { have: buf.len(), need: p.bytes });
        }
        Ok(Sb { b: &buf[..p.bytes as usize] })
    }

    /// [`Sb::parse`] followed by [`Sb::verify_csum`]: what
    /// `read_one_super()` accepts.
    pub fn parse_verified(buf: &'a [u8]) -> Result<Sb<'a>, SbError> {
        let sb = Sb::parse(buf)?;
        sb.verify_csum()?;
        Ok(sb)
    }

    /// The superblock's bytes (exactly `752 + 8 * u64s`).
    pub fn bytes(&self) -> &'a [u8] {
        self.b
    }

    /// Stored checksum.
    pub fn csum(&self) -> Csum {
        let mut c = [0u8; 16];
        c.copy_from_slice(&self.b[off::CSUM..off::CSUM + 16]);
        Csum::from_bytes(&c)
    }

    /// Metadata version.
    pub fn version(&self) -> Version {
        Version(le16(self.b, off::VERSION))
    }

    /// Oldest metadata version on the filesystem.
    pub fn version_min(&self) -> Version {
        Version(le16(self.b, off::VERSION_MIN))
    }

    /// Magic.
    pub fn magic(&self) -> [u8; 16] {
        uuid_at(self.b, off::MAGIC)
    }

    /// Internal uuid.
    pub fn uuid(&self) -> [u8; 16] {
        uuid_at(self.b, off::UUID)
    }

    /// External (user-visible) uuid.
    pub fn user_uuid(&self) -> [u8; 16] {
        uuid_at(self.b, off::USER_UUID)
    }

    /// Label, NUL-padded.
    pub fn label(&self) -> [u8; LABEL_BYTES] {
        let mut l = [0u8; LABEL_BYTES];
        l.copy_from_slice(&self.b[off::LABEL..off::LABEL + LABEL_BYTES]);
        l
    }

    /// Label up to its first NUL.
    pub fn label_bytes(&self) -> &'a [u8] {
        let l = &self.b[off::LABEL..off::LABEL + LABEL_BYTES];
        let n = l.iter().position(|&c| c == 0).unwrap_or(LABEL_BYTES);
        &l[..n]
    }

    /// Sector this copy was written at.
    pub fn offset(&self) -> u64 {
        le64(self.b, off::OFFSET)
    }

    /// Sequence number, incremented by every write.
    pub fn seq(&self) -> u64 {
        le64(self.b, off::SEQ)
    }

    /// Block size in sectors.
    pub fn block_size(&self) -> u16 {
        le16(self.b, off::BLOCK_SIZE)
    }

    /// Index of the device this copy belongs to.
    pub fn dev_idx(&self) -> u8 {
        self.b[off::DEV_IDX]
    }

    /// Number of member slots.
    pub fn nr_devices(&self) -> u8 {
        self.b[off::NR_DEVICES]
    }

    /// Size of the variable part in u64s.
    pub fn u64s(&self) -> u32 {
        le32(self.b, off::U64S)
    }

    /// Creation time, nanoseconds since the epoch (low 64 bits).
    pub fn time_base_lo(&self) -> u64 {
        le64(self.b, off::TIME_BASE_LO)
    }

    /// High bits of the time base.
    pub fn time_base_hi(&self) -> u32 {
        le32(self.b, off::TIME_BASE_HI)
    }

    /// Timestamp granularity, nanoseconds.
    pub fn time_precision(&self) -> u32 {
        le32(self.b, off::TIME_PRECISION)
    }

    /// The seven flag words.
    pub fn flags(&self) -> [u64; 7] {
        let mut f = [0u64; 7];
        for (i, w) in f.iter_mut().enumerate() {
            *w = le64(self.b, off::FLAGS + 8 * i);
        }
        f
    }

    /// One flag bit-field.
    pub fn flag(&self, f: SbFlag) -> u64 {
        let d = f.desc();
        (le64(self.b, off::FLAGS + 8 * d.word) >> d.lo) & d.mask()
    }

    /// Time of the last write, seconds since the epoch.
    pub fn write_time(&self) -> u64 {
        le64(self.b, off::WRITE_TIME)
    }

    /// Incompatible feature bits.
    pub fn features(&self) -> [u64; 2] {
        [le64(self.b, off::FEATURES), le64(self.b, off::FEATURES + 8)]
    }

    /// Compatible feature bits.
    pub fn compat(&self) -> [u64; 2] {
        [le64(self.b, off::COMPAT), le64(self.b, off::COMPAT + 8)]
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        let mut l = [0u8; LAYOUT_BYTES];
        l.copy_from_slice(&self.b[off::LAYOUT..off::LAYOUT + LAYOUT_BYTES]);
        Layout::decode(&l)
    }

    /// Value of a superblock option, in option units
    /// (`bch2_opt_from_sb()`).
    pub fn opt(&self, o: &SbOpt) -> u64 {
        let raw = match o.field {
            OptField::BlockSize => u64::from(self.block_size()),
            OptField::Flag(f) => self.flag(f),
            OptField::Split(lo, hi) => self.flag(lo) | self.flag(hi) << 4,
        };
        o.from_raw(raw)
    }

    /// The variable-length fields, in order.
    pub fn fields(&self) -> Fields<'a> {
        Fields { rest: &self.b[off::FIELDS..] }
    }

    /// The first well-formed field of type `ty` (`bch2_sb_field_get_id()`).
    pub fn field(&self, ty: FieldType) -> Option<SbField<'a>> {
        self.fields().map_while(Result::ok).find(|f| f.ty == ty as u32)
    }

    /// The `members_v2` field, if present.
    pub fn members_v2(&self) -> Option<MembersV2<'a>> {
        let f = self.field(FieldType::MembersV2)?;
        let body = f.body();
        let member_bytes = if body.len() >= 2 { le16(body, 0) } else { 0 };
        let entries = f.bytes.get(MEMBERS_V2_HEADER..).unwrap_or(&[]);
        Some(MembersV2 { member_bytes, entries })
    }

    /// The `members_v1` field, if present.
    pub fn members_v1(&self) -> Option<MembersV1<'a>> {
        let f = self.field(FieldType::MembersV1)?;
        Some(MembersV1 { entries: &f.bytes[MEMBERS_V1_HEADER..] })
    }

    /// Member `i`, from `members_v2` if present, else `members_v1`
    /// (`bch2_sb_member_get()`).  `None` if neither field holds it.
    pub fn member(&self, i: u8) -> Option<Member> {
        match self.members_v2() {
            Some(m) => m.get(usize::from(i)),
            None => self.members_v1()?.get(usize::from(i)),
        }
    }

    /// Members `0..nr_devices` that exist, with their index.
    pub fn members(&self) -> impl Iterator<Item = (u8, Member)> + 'a {
        let sb = *self;
        (0..self.nr_devices()).filter_map(move |i| sb.member(i).map(|m| (i, m)))
    }

    /// Number of members with a nonzero uuid (`bch2_sb_nr_devices()`).
    pub fn nr_alive_devices(&self) -> usize {
        self.members().filter(|(_, m)| m.alive()).count()
    }

    /// Checksum type of the superblock (`BCH_SB_CSUM_TYPE`).
    ///
    /// Errors: [`SbError::UnknownCsumType`] for values of 8 and up.
    pub fn csum_type(&self) -> Result<CsumType, SbError> {
        let t = self.flag(SbFlag::CsumType);
        if t >= u64::from(CSUM_NR) {
            return Err(SbError::UnknownCsumType(t));
        }
        CsumType::from_u8(t as u8).ok_or(SbError::UnknownCsumType(t))
    }

    /// Checksum of the contents: everything from `version` to the end
    /// (`csum_vstruct()` with a null nonce, which no non-MAC type uses).
    ///
    /// Errors: [`SbError::UnknownCsumType`]; [`SbError::CsumNeedsKey`] for
    /// ChaCha20/Poly1305 (C itself cannot check those at read time).
    pub fn compute_csum(&self) -> Result<Csum, SbError> {
        let ty = self.csum_type()?;
        checksum::checksum(ty, &self.b[off::VERSION..]).map_err(|_| SbError::CsumNeedsKey(ty))
    }

    /// Checks the stored checksum as `read_one_super()` does: all 128 bits
    /// must match (`bch2_crc_cmp()`).
    pub fn verify_csum(&self) -> Result<(), SbError> {
        let ty = self.csum_type()?;
        let computed = self.compute_csum()?;
        let stored = self.csum();
        if computed != stored {
            return Err(SbError::BadCsum { ty, stored, computed });
        }
        Ok(())
    }

    /// `bch2_sb_validate()` in `super-io.c`, in its order: versions,
    /// features, block size, uuids, device count and index, time
    /// precision, every superblock option (`bch2_opt_validate()`), the
    /// layout (`validate_sb_layout()`), field framing, `members_v1` (which
    /// must exist) and then every other field through its validator, and
    /// in [`ValidateMode::Write`] the member sequence number.
    ///
    /// Field validators implemented: `members_v1` and `members_v2`
    /// (`sb-members.c`), `journal` and `journal_v2` (`journal_sb.c`),
    /// `crypt` (`checksum.c`) and `ext` (`super-io.c`).  Other field types
    /// are accepted unchecked for now.
    pub fn validate(&self, mode: ValidateMode) -> Result<(), SbError> {
        check_versions(self.b)?;

        let [features0, features1] = self.features();
        if features1 != 0 || features0 >> FEATURE_NR != 0 {
            return Err(SbError::IncompatibleFeatures { features0, features1 });
        }
        if self.block_size() > PAGE_SECTORS {
            return Err(SbError::BlockSizeTooBig { got: self.block_size() });
        }
        if self.user_uuid() == [0; 16] {
            return Err(SbError::ZeroUserUuid);
        }
        if self.uuid() == [0; 16] {
            return Err(SbError::ZeroUuid);
        }
        let nr = self.nr_devices();
        if nr == 0 || nr > SB_MEMBERS_MAX {
            return Err(SbError::BadNrDevices(nr));
        }
        if self.dev_idx() >= nr {
            return Err(SbError::BadDevIdx { dev_idx: self.dev_idx(), nr_devices: nr });
        }
        let tp = self.time_precision();
        if tp == 0 || tp > NSEC_PER_SEC {
            return Err(SbError::BadTimePrecision(tp));
        }

        for o in SB_OPTS {
            let mut v = self.opt(o);
            // On read C sets a zero journal_flush_delay to 1000 before
            // checking the options.
            if mode == ValidateMode::Read
                && o.field == OptField::Flag(SbFlag::JournalFlushDelay)
                && v == 0
            {
                v = 1000;
            }
            o.validate(v).map_err(|err| SbError::BadOption { opt: o.name, err })?;
        }

        self.layout().validate()?;

        for f in self.fields() {
            f?;
        }

        let v1 = self.field(FieldType::MembersV1).ok_or(SbError::MembersMissing)?;
        self.validate_field(&v1)?;
        for f in self.fields().map_while(Result::ok) {
            if f.ty != FieldType::MembersV1 as u32 {
                self.validate_field(&f)?;
            }
        }

        if mode == ValidateMode::Write {
            let member_seq = self.member(self.dev_idx()).unwrap_or_default().seq;
            if member_seq != self.seq() {
                return Err(SbError::MemberSeqMismatch { member_seq, sb_seq: self.seq() });
            }
        }
        Ok(())
    }

    /// `bch2_sb_field_validate()`: runs the validator of one field.
    fn validate_field(&self, f: &SbField<'_>) -> Result<(), SbError> {
        let r = match f.ty {
            t if t == FieldType::MembersV1 as u32 => self.validate_members_v1(f),
            t if t == FieldType::MembersV2 as u32 => self.validate_members_v2(f),
            t if t == FieldType::Ext as u32 => {
                let bytes = f.bytes.len() as u64;
                if bytes < FIELD_EXT_MIN_BYTES as u64 {
                    Err(FieldError::ExtTooSmall { bytes })
                } else {
                    Ok(())
                }
            }
            t if t == FieldType::Crypt as u32 => {
                let bytes = f.bytes.len() as u64;
                if bytes < FIELD_CRYPT_BYTES as u64 {
                    Err(FieldError::CryptWrongSize { bytes })
                } else {
                    // BCH_CRYPT_KDF_TYPE: bits 0..4 of `flags`, right
                    // after the header.
                    match le64(f.bytes, 8) & 15 {
                        0 => Ok(()),
                        k => Err(FieldError::CryptBadKdf(k)),
                    }
                }
            }
            t if t == FieldType::Journal as u32 => self.validate_journal(f)?,
            t if t == FieldType::JournalV2 as u32 => self.validate_journal_v2(f)?,
            _ => Ok(()),
        };
        r.map_err(|err| SbError::Field { ty: f.ty, err })
    }

    /// `bch2_sb_members_v1_validate()`.
    fn validate_members_v1(&self, f: &SbField<'_>) -> Result<(), FieldError> {
        let need = MEMBERS_V1_HEADER + usize::from(self.nr_devices()) * MEMBER_V1_BYTES;
        if need > f.bytes.len() {
            return Err(FieldError::MembersV1TooManyDevices);
        }
        let mi = MembersV1 { entries: &f.bytes[MEMBERS_V1_HEADER..] };
        for i in 0..self.nr_devices() {
            self.validate_member(&mi.get(usize::from(i)).unwrap_or_default(), i)?;
        }
        Ok(())
    }

    /// `bch2_sb_members_v2_validate()`.
    fn validate_members_v2(&self, f: &SbField<'_>) -> Result<(), FieldError> {
        let body = f.body();
        let member_bytes = if body.len() >= 2 { le16(body, 0) } else { 0 };
        let need = MEMBERS_V2_HEADER as u64 + u64::from(self.nr_devices()) * u64::from(member_bytes);
        let have = f.bytes.len() as u64;
        // A field too short for its own header fails here too (C would
        // read past it).
        if need > have || have < MEMBERS_V2_HEADER as u64 {
            return Err(FieldError::MembersV2TooSmall { need, have });
        }
        let mi = MembersV2 { member_bytes, entries: &f.bytes[MEMBERS_V2_HEADER..] };
        for i in 0..self.nr_devices() {
            self.validate_member(&mi.get(usize::from(i)).unwrap_or_default(), i)?;
        }
        Ok(())
    }

    /// `validate_member()` in `sb-members.c`.
    fn validate_member(&self, m: &Member, dev: u8) -> Result<(), FieldError> {
        if m.nbuckets > MEMBER_NBUCKETS_MAX {
            return Err(FieldError::MemberTooManyBuckets { dev, nbuckets: m.nbuckets });
        }
        // u64 arithmetic as in C: a first_bucket past nbuckets wraps and
        // passes.
        if m.nbuckets.wrapping_sub(u64::from(m.first_bucket)) < MIN_NR_NBUCKETS {
            return Err(FieldError::MemberNotEnoughBuckets { dev, nbuckets: m.nbuckets });
        }
        if m.bucket_size < self.block_size() {
            return Err(FieldError::MemberBucketBelowBlock {
                dev,
                bucket_size: m.bucket_size,
                block_size: self.block_size(),
            });
        }
        let btree_node_size = self.flag(SbFlag::BtreeNodeSize);
        if u64::from(m.bucket_size) < btree_node_size {
            return Err(FieldError::MemberBucketBelowBtreeNode {
                dev,
                bucket_size: m.bucket_size,
                btree_node_size,
            });
        }
        if m.btree_bitmap_shift >= MI_BTREE_BITMAP_SHIFT_MAX {
            return Err(FieldError::MemberBadBitmapShift { dev, shift: m.btree_bitmap_shift });
        }
        Ok(())
    }

    /// `bch2_sb_journal_validate()`: journal buckets of this device,
    /// sorted, must be nonzero, at or past `first_bucket`, below
    /// `nbuckets` and distinct.
    fn validate_journal(&self, f: &SbField<'_>) -> Result<Result<(), FieldError>, SbError> {
        let body = f.body();
        let nr = body.len() / 8;
        if nr == 0 {
            return Ok(Ok(()));
        }
        let m = self.member(self.dev_idx()).unwrap_or_default();
        let mut b: Vec<u64> = Vec::with_capacity(nr)?;
        for i in 0..nr {
            b.push(le64(body, 8 * i))?;
        }
        crate::util::sort::sort(&mut b);
        Ok(check_journal_buckets(&b, &m))
    }

    /// `bch2_sb_journal_v2_validate()`: as [`Self::validate_journal`],
    /// for `(start, nr)` ranges, which must not be empty or overlap.
    fn validate_journal_v2(&self, f: &SbField<'_>) -> Result<Result<(), FieldError>, SbError> {
        let body = f.body();
        let nr = body.len() / 16;
        if nr == 0 {
            return Ok(Ok(()));
        }
        let m = self.member(self.dev_idx()).unwrap_or_default();
        let mut r: Vec<(u64, u64)> = Vec::with_capacity(nr)?;
        let mut sum = 0u64;
        for i in 0..nr {
            let start = le64(body, 16 * i);
            let n = le64(body, 16 * i + 8);
            let end = start.wrapping_add(n);
            if end <= start {
                return Ok(Err(FieldError::JournalV2BadNr { start, nr: n }));
            }
            sum = sum.wrapping_add(n);
            r.push((start, end))?;
        }
        crate::util::sort::sort_by_key(&mut r, |&(s, _)| s);
        Ok(check_journal_ranges(&r, &m, sum))
    }
}

/// A superblock read from a device by [`read_super`].
pub struct SbRead {
    buf: Vec<u8>,
    len: usize,
    /// Sector it was read from: [`SB_SECTOR`], or a backup's.
    pub sector: u64,
}

impl fmt::Debug for SbRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SbRead").field("sector", &self.sector).field("bytes", &self.len).finish()
    }
}

impl SbRead {
    /// The superblock.
    pub fn sb(&self) -> Sb<'_> {
        Sb { b: &self.buf[..self.len] }
    }
}

/// `read_one_super()`: reads the superblock at `sector` (4 KiB first, then
/// again at its full size if it is larger), probes it and checks its
/// checksum.
pub fn read_one_super<D: BlockDev + ?Sized>(dev: &D, sector: u64) -> Result<SbRead, SbError> {
    let avail = dev.nr_sectors().saturating_sub(sector).saturating_mul(SECTOR_SIZE as u64);
    let mut want = SB_PROBE_BYTES as u64;
    loop {
        let len = want.min(avail) as usize;
        if len < SB_FIXED_BYTES {
            return Err(SbError::Truncated { have: len });
        }
        let mut buf = Vec::with_capacity(len)?;
        buf.resize(len, 0)?;
        dev.read_sectors(sector, &mut buf).map_err(SbError::Io)?;
        match Sb::parse(&buf) {
            Err(SbError::Incomplete { need, .. }) if need > want && need <= avail => {
                want = need.next_multiple_of(SECTOR_SIZE as u64);
            }
            Err(e) => return Err(e),
            Ok(sb) => {
                sb.verify_csum()?;
                let len = sb.bytes().len();
                return Ok(SbRead { buf, len, sector });
            }
        }
    }
}

/// `__bch2_read_super()`: the primary superblock at sector 8; if that
/// fails, the layout copy in sector 7 and each backup it lists; then
/// [`Sb::validate`] (read mode) on whichever copy was read.
///
/// Errors: the primary's error when no copy could be read (so a device
/// without bcachefs reports [`SbError::BadMagic`]), else the validation
/// error.
pub fn read_super<D: BlockDev + ?Sized>(dev: &D) -> Result<SbRead, SbError> {
    let r = match read_one_super(dev, SB_SECTOR) {
        Ok(r) => r,
        Err(primary) => read_backup(dev).ok_or(primary)?,
    };
    r.sb().validate(ValidateMode::Read)?;
    Ok(r)
}

/// The backup path of `__bch2_read_super()`.
fn read_backup<D: BlockDev + ?Sized>(dev: &D) -> Option<SbRead> {
    // Heap, not stack: the kernel's BlockDev reads into the buffer with a
    // bio, which needs memory with a struct page (stacks are vmalloc'd).
    let mut sector: Vec<u8> = Vec::new();
    sector.resize(SECTOR_SIZE, 0).ok()?;
    dev.read_sectors(SB_LAYOUT_SECTOR, &mut sector).ok()?;
    let mut l = [0u8; LAYOUT_BYTES];
    l.copy_from_slice(&sector[..LAYOUT_BYTES]);
    let layout = Layout::decode(&l);
    layout.validate().ok()?;
    layout
        .offsets()
        .iter()
        .filter(|&&o| o != SB_SECTOR)
        .find_map(|&o| read_one_super(dev, o).ok())
}

/// The checks of `bch2_sb_journal_validate()` on sorted bucket numbers.
fn check_journal_buckets(b: &[u64], m: &Member) -> Result<(), FieldError> {
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return Ok(());
    };
    if first == 0 {
        return Err(FieldError::JournalBucketZero);
    }
    if first < u64::from(m.first_bucket) {
        return Err(FieldError::JournalBucketBeforeFirst { bucket: first, first: m.first_bucket });
    }
    if last >= m.nbuckets {
        return Err(FieldError::JournalBucketPastEnd { bucket: last, nbuckets: m.nbuckets });
    }
    match b.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(FieldError::JournalBucketDuplicate(w[0])),
        None => Ok(()),
    }
}

/// The checks of `bch2_sb_journal_v2_validate()` on ranges sorted by start.
fn check_journal_ranges(r: &[(u64, u64)], m: &Member, sum: u64) -> Result<(), FieldError> {
    let (Some(&(first, _)), Some(&(_, last_end))) = (r.first(), r.last()) else {
        return Ok(());
    };
    if first == 0 {
        return Err(FieldError::JournalBucketZero);
    }
    if first < u64::from(m.first_bucket) {
        return Err(FieldError::JournalBucketBeforeFirst { bucket: first, first: m.first_bucket });
    }
    if last_end > m.nbuckets {
        return Err(FieldError::JournalBucketPastEnd { bucket: last_end - 1, nbuckets: m.nbuckets });
    }
    if let Some(w) = r.windows(2).find(|w| w[0].1 > w[1].0) {
        return Err(FieldError::JournalV2Overlap {
            start: w[0].0,
            end: w[0].1,
            next_start: w[1].0,
            next_end: w[1].1,
        });
    }
    if sum > u64::from(u32::MAX) {
        return Err(FieldError::JournalV2TooMany(sum));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::version::bch_version;
    use std::string::ToString;

    fn good() -> std::vec::Vec<u8> {
        let mut b = std::vec![0u8; SB_PROBE_BYTES];
        b[off::MAGIC..off::MAGIC + 16].copy_from_slice(&BCHFS_MAGIC);
        b[off::VERSION..off::VERSION + 2].copy_from_slice(&VERSION_CURRENT.to_le_bytes());
        b[off::VERSION_MIN..off::VERSION_MIN + 2].copy_from_slice(&VERSION_CURRENT.to_le_bytes());
        b[off::UUID] = 0xab;
        b[off::U64S..off::U64S + 4].copy_from_slice(&10u32.to_le_bytes());
        b[off::LAYOUT_SB_MAX_SIZE_BITS] = 7;
        b
    }

    #[test]
    fn accepts_a_good_superblock() {
        let p = probe(&good()).unwrap();
        assert_eq!(p.version.0, VERSION_CURRENT);
        assert_eq!(p.uuid[0], 0xab);
        assert_eq!(p.bytes, 752 + 80);
    }

    #[test]
    fn zeroes_are_not_bcachefs() {
        let e = probe(&[0u8; 4096]).unwrap_err();
        assert_eq!(e, SbError::BadMagic { got: [0; 16] });
        assert_eq!(
            e.to_string(),
            "not a bcachefs superblock (got magic 00000000-0000-0000-0000-000000000000 at sector 8)"
        );
        assert_eq!(e.errno(), Errno::EINVAL);
    }

    #[test]
    fn accepts_old_magic() {
        let mut b = good();
        b[off::MAGIC..off::MAGIC + 16].copy_from_slice(&BCACHE_MAGIC);
        assert!(probe(&b).is_ok());
    }

    #[test]
    fn rejects_each_bad_field() {
        assert_eq!(probe(&good()[..100]), Err(SbError::Truncated { have: 100 }));

        let mut b = good();
        b[off::VERSION..off::VERSION + 2].copy_from_slice(&bch_version(2, 0).to_le_bytes());
        assert_eq!(probe(&b), Err(SbError::UnsupportedVersion(bch_version(2, 0))));

        let mut b = good();
        b[off::VERSION_MIN..off::VERSION_MIN + 2].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(probe(&b), Err(SbError::UnsupportedVersionMin(3)));

        let mut b = good();
        b[off::VERSION..off::VERSION + 2].copy_from_slice(&bch_version(1, 0).to_le_bytes());
        assert!(matches!(probe(&b), Err(SbError::VersionMinAboveVersion { .. })));

        let mut b = good();
        b[off::U64S..off::U64S + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(probe(&b), Err(SbError::TooBig { .. })));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)) {
            let _ = probe(&bytes);
        }
    }
}

/// Tests of the full model: checksums, every validation error, and
/// parsing hostile bytes.  Superblocks come from the format writer and are
/// then damaged field by field.
#[cfg(test)]
mod model_tests {
    use super::*;
    use crate::format::sb_members::{MemberFlag, MEMBER_BYTES};
    use crate::format::sb_opts::sb_opt;
    use crate::format::sb_write::{format, FormatOpts, SbBuf};
    use std::string::ToString;

    const GIB: u64 = 1 << 30;

    fn opts() -> FormatOpts<'static> {
        FormatOpts::new([1; 16], [2; 16], [3; 16], 1_700_000_000_000_000_000)
    }

    /// A valid primary superblock of a 1 GiB filesystem.
    fn fresh() -> SbBuf {
        let f = format(GIB, &opts()).unwrap();
        let mut s = f.sb().try_clone().unwrap();
        s.set_offset(SB_SECTOR);
        s.update_csum().unwrap();
        s
    }

    /// Applies `edit`, re-checksums and validates in `mode`.
    fn check(mode: ValidateMode, edit: impl FnOnce(&mut SbBuf)) -> Result<(), SbError> {
        let mut s = fresh();
        edit(&mut s);
        s.update_csum().unwrap();
        let sb = Sb::parse_verified(s.bytes())?;
        sb.validate(mode)
    }

    fn err(edit: impl FnOnce(&mut SbBuf)) -> SbError {
        check(ValidateMode::Read, edit).unwrap_err()
    }

    /// Byte offset of the first field of type `ty`.
    fn field_at(s: &SbBuf, ty: FieldType) -> usize {
        let sb = s.sb().unwrap();
        let f = sb.field(ty).unwrap();
        f.bytes.as_ptr() as usize - s.bytes().as_ptr() as usize
    }

    /// Rewrites member 0 in both member fields.
    fn edit_member(s: &mut SbBuf, edit: impl Fn(&mut Member)) {
        let mut m = s.sb().unwrap().member(0).unwrap();
        edit(&mut m);
        let raw = m.encode();
        let v2 = field_at(s, FieldType::MembersV2) + MEMBERS_V2_HEADER;
        s.bytes_mut()[v2..v2 + MEMBER_BYTES].copy_from_slice(&raw);
        let v1 = field_at(s, FieldType::MembersV1) + MEMBERS_V1_HEADER;
        s.bytes_mut()[v1..v1 + MEMBER_V1_BYTES].copy_from_slice(&raw[..MEMBER_V1_BYTES]);
    }

    fn put(s: &mut SbBuf, at: usize, v: &[u8]) {
        s.bytes_mut()[at..at + v.len()].copy_from_slice(v);
    }

    fn set_layout(s: &mut SbBuf, edit: impl FnOnce(&mut Layout)) {
        let mut l = s.sb().unwrap().layout();
        edit(&mut l);
        s.set_layout(&l);
    }

    fn field_err(e: FieldError) -> impl Fn(SbError) -> bool {
        move |got| matches!(got, SbError::Field { err, .. } if err == e)
    }

    #[test]
    fn fresh_superblock_is_valid_in_both_modes() {
        assert_eq!(check(ValidateMode::Read, |_| {}), Ok(()));
        assert_eq!(check(ValidateMode::Write, |_| {}), Ok(()));
    }

    #[test]
    fn checksum_each_type_and_bit_flip() {
        for (ty, bytes) in [(0u64, 0usize), (1, 4), (2, 8), (5, 4), (6, 8), (7, 8)] {
            let mut s = fresh();
            s.set_flag(SbFlag::CsumType, ty);
            s.update_csum().unwrap();
            let sb = Sb::parse(s.bytes()).unwrap();
            assert_eq!(sb.verify_csum(), Ok(()));
            assert_eq!(sb.csum_type().unwrap().bytes(), bytes);
            let c = sb.csum();
            if ty == 0 {
                assert_eq!(c, Csum::default());
            } else {
                assert_ne!(c.lo, 0);
                assert_eq!(c.hi, 0);
                if bytes == 4 {
                    assert_eq!(c.lo >> 32, 0);
                }
            }

            // Flip one bit of the label: covered by the checksum.
            let mut bad = s.try_clone().unwrap();
            bad.bytes_mut()[off::LABEL] ^= 1;
            let sb = Sb::parse(bad.bytes()).unwrap();
            if ty == 0 {
                assert_eq!(sb.verify_csum(), Ok(()));
            } else {
                let e = sb.verify_csum().unwrap_err();
                assert!(matches!(e, SbError::BadCsum { stored, .. } if stored == c), "{e:?}");
                assert!(e.to_string().starts_with("checksum error, type "), "{e}");
            }
            // The checksum field itself is outside what is summed.
            let mut bad = s.try_clone().unwrap();
            bad.bytes_mut()[off::CSUM + 15] ^= 0x80;
            let sb = Sb::parse(bad.bytes()).unwrap();
            if ty != 0 {
                assert!(matches!(sb.verify_csum(), Err(SbError::BadCsum { .. })));
            }
        }
    }

    #[test]
    fn crc32c_superblock_checksum_known_answer() {
        // The default metadata checksum is crc32c_nonzero: the standard
        // CRC-32C of bytes 16.. of the superblock.
        let s = fresh();
        let sb = Sb::parse(s.bytes()).unwrap();
        assert_eq!(sb.csum_type(), Ok(CsumType::Crc32cNonzero));
        let want = crc32c::crc32c(&s.bytes()[16..]);
        assert_eq!(sb.csum(), Csum { lo: u64::from(want), hi: 0 });
        assert_eq!(&s.bytes()[..4], &want.to_le_bytes());
    }

    #[test]
    fn checksum_type_errors() {
        let mut s = fresh();
        s.set_flag(SbFlag::CsumType, 8);
        let sb = Sb::parse(s.bytes()).unwrap();
        assert_eq!(sb.verify_csum(), Err(SbError::UnknownCsumType(8)));
        assert_eq!(s.update_csum(), Err(SbError::UnknownCsumType(8)));
        s.set_flag(SbFlag::CsumType, 4);
        let sb = Sb::parse(s.bytes()).unwrap();
        assert_eq!(sb.verify_csum(), Err(SbError::CsumNeedsKey(CsumType::Chacha20Poly1305_128)));
    }

    #[test]
    fn incomplete_buffer() {
        let s = fresh();
        let n = s.bytes().len();
        assert_eq!(
            Sb::parse(&s.bytes()[..n - 8]).unwrap_err(),
            SbError::Incomplete { have: n - 8, need: n as u64 }
        );
        // Extra bytes after the superblock are not part of it.
        let mut v = s.bytes().to_vec();
        v.extend_from_slice(&[0xff; 100]);
        assert_eq!(Sb::parse(&v).unwrap().bytes().len(), n);
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            err(|s| s.set_features([1 << 19, 0])),
            SbError::IncompatibleFeatures { features0: 1 << 19, features1: 0 }
        );
        assert!(matches!(err(|s| s.set_features([0, 1])), SbError::IncompatibleFeatures { .. }));
        assert_eq!(err(|s| s.set_block_size(16)), SbError::BlockSizeTooBig { got: 16 });
        assert_eq!(err(|s| s.set_user_uuid(&[0; 16])), SbError::ZeroUserUuid);
        assert_eq!(err(|s| s.set_uuid(&[0; 16])), SbError::ZeroUuid);
        assert_eq!(err(|s| s.set_nr_devices(0)), SbError::BadNrDevices(0));
        assert_eq!(err(|s| s.set_nr_devices(65)), SbError::BadNrDevices(65));
        assert_eq!(err(|s| s.set_dev_idx(1)), SbError::BadDevIdx { dev_idx: 1, nr_devices: 1 });
        assert_eq!(err(|s| s.set_time(1, 0, 0)), SbError::BadTimePrecision(0));
        assert_eq!(
            err(|s| s.set_time(1, 0, NSEC_PER_SEC + 1)),
            SbError::BadTimePrecision(NSEC_PER_SEC + 1)
        );
        assert_eq!(check(ValidateMode::Read, |s| s.set_time(1, 0, NSEC_PER_SEC)), Ok(()));
        // Versions are checked by validate too (a caller may skip probe).
        let mut s = fresh();
        s.set_version_min(VERSION_CURRENT + 1);
        s.set_version(VERSION_CURRENT + 1);
        assert_eq!(Sb { b: s.bytes() }.validate(ValidateMode::Read), Ok(()));
        s.set_version(VERSION_MIN - 1);
        assert_eq!(
            Sb { b: s.bytes() }.validate(ValidateMode::Read),
            Err(SbError::UnsupportedVersion(VERSION_MIN - 1))
        );
    }

    #[test]
    fn option_errors() {
        let bad = |name: &'static str, raw: u64| {
            err(|s| match sb_opt(name).unwrap().field {
                OptField::Flag(f) => s.set_flag(f, raw),
                OptField::BlockSize => s.set_block_size(raw as u16),
                OptField::Split(lo, hi) => {
                    s.set_flag(lo, raw & 15);
                    s.set_flag(hi, raw >> 4);
                }
            })
        };
        let opt_err = |opt, err| SbError::BadOption { opt, err };
        assert_eq!(bad("metadata_replicas", 0), opt_err("metadata_replicas", OptError::TooSmall { min: 1 }));
        assert_eq!(bad("data_replicas_required", 4), opt_err("data_replicas_required", OptError::TooBig { max: 4 }));
        assert_eq!(bad("gc_reserve_percent", 30), opt_err("gc_reserve_percent", OptError::TooBig { max: 21 }));
        assert_eq!(bad("block_size", 3), opt_err("block_size", OptError::NotPow2));
        assert_eq!(bad("btree_node_size", 0), opt_err("btree_node_size", OptError::TooSmall { min: 512 }));
        assert_eq!(bad("btree_node_size", 2048), opt_err("btree_node_size", OptError::TooBig { max: 1 << 20 }));
        assert_eq!(bad("encoded_extent_max", 2), opt_err("encoded_extent_max", OptError::TooSmall { min: 4096 }));
        assert_eq!(bad("errors", 4), opt_err("errors", OptError::TooBig { max: 4 }));
        assert_eq!(bad("str_hash", 3), opt_err("str_hash", OptError::TooBig { max: 3 }));
        assert_eq!(bad("compression", 0x10), opt_err("compression", OptError::BadCompression(0x10)));
        assert_eq!(bad("background_compression", 7), opt_err("background_compression", OptError::BadCompression(7)));
        assert_eq!(bad("erasure_code", 2), opt_err("erasure_code", OptError::TooBig { max: 2 }));
        assert_eq!(bad("version_upgrade", 3), opt_err("version_upgrade", OptError::TooBig { max: 3 }));
        assert_eq!(bad("allocator_stuck_timeout", 0xffff), opt_err("allocator_stuck_timeout", OptError::TooBig { max: 0xffff }));
        // A zero journal_flush_delay is repaired by C on read, refused on write.
        let zero_delay = |s: &mut SbBuf| s.set_flag(SbFlag::JournalFlushDelay, 0);
        assert_eq!(check(ValidateMode::Read, zero_delay), Ok(()));
        assert_eq!(
            check(ValidateMode::Write, zero_delay),
            Err(opt_err("journal_flush_delay", OptError::TooSmall { min: 1 }))
        );
        assert_eq!(
            bad("journal_flush_delay", u64::from(u32::MAX)),
            opt_err("journal_flush_delay", OptError::TooBig { max: u64::from(u32::MAX) })
        );
        assert_eq!(
            bad("metadata_replicas", 0).to_string(),
            "invalid option metadata_replicas: too small (min 1)"
        );
    }

    #[test]
    fn layout_errors() {
        assert_eq!(err(|s| set_layout(s, |l| l.magic = [0; 16])), SbError::LayoutBadMagic);
        assert_eq!(check(ValidateMode::Read, |s| set_layout(s, |l| l.magic = BCACHE_MAGIC)), Ok(()));
        assert_eq!(err(|s| set_layout(s, |l| l.layout_type = 1)), SbError::LayoutBadType(1));
        assert_eq!(err(|s| set_layout(s, |l| l.nr_superblocks = 0)), SbError::LayoutNoSuperblocks);
        assert_eq!(err(|s| set_layout(s, |l| l.nr_superblocks = 62)), SbError::LayoutTooManySuperblocks(62));
        // Size bits above 16 are caught by the probe's size check first
        // only when they shrink the limit; 17 raises it, so validate sees it.
        assert_eq!(err(|s| set_layout(s, |l| l.sb_max_size_bits = 17)), SbError::LayoutMaxSizeBitsTooHigh(17));
        assert_eq!(
            err(|s| set_layout(s, |l| l.sb_offset[1] = 8 + 2047)),
            SbError::LayoutOverlap { sb: 0, ends: 8 + 2048, next: 8 + 2047 }
        );
        assert!(matches!(err(|s| set_layout(s, |l| l.sb_offset[2] = 100)), SbError::LayoutOverlap { sb: 1, .. }));
        // Only the first nr_superblocks slots matter.
        assert_eq!(check(ValidateMode::Read, |s| set_layout(s, |l| l.sb_offset[3] = 1)), Ok(()));
        // A superblock bigger than its slot is refused by the probe.
        let mut s = fresh();
        set_layout(&mut s, |l| l.sb_max_size_bits = 0);
        assert!(matches!(Sb::parse(s.bytes()), Err(SbError::TooBig { max: 512, .. })));
    }

    #[test]
    fn field_framing_errors() {
        let e = err(|s| {
            let at = field_at(s, FieldType::MembersV2);
            put(s, at, &0u32.to_le_bytes());
        });
        assert_eq!(e, SbError::FieldZeroSize { ty: FieldType::MembersV2 as u32 });
        let e = err(|s| {
            let at = field_at(s, FieldType::MembersV1);
            put(s, at, &100u32.to_le_bytes());
        });
        assert_eq!(e, SbError::FieldPastEnd { ty: FieldType::MembersV1 as u32 });
        // The iterator stops after reporting.
        let mut s = fresh();
        let at = field_at(&s, FieldType::Ext);
        put(&mut s, at, &0u32.to_le_bytes());
        let sb = Sb::parse(s.bytes()).unwrap();
        assert_eq!(sb.fields().count(), 1);
        assert!(sb.members_v2().is_none());
        assert!(sb.member(0).is_none());
    }

    #[test]
    fn members_errors() {
        let e = err(|s| {
            let at = field_at(s, FieldType::MembersV1);
            put(s, at + 4, &99u32.to_le_bytes());
        });
        assert_eq!(e, SbError::MembersMissing);

        // Two devices: members_v1 is checked first and is too short.
        assert_eq!(
            err(|s| s.set_nr_devices(2)),
            SbError::Field { ty: 1, err: FieldError::MembersV1TooManyDevices }
        );
        // member_bytes too large for the members_v2 field.
        let e = err(|s| {
            let at = field_at(s, FieldType::MembersV2);
            put(s, at + 8, &200u16.to_le_bytes());
        });
        assert_eq!(e, SbError::Field { ty: 11, err: FieldError::MembersV2TooSmall { need: 216, have: 160 } });
        // A shorter member_bytes reads the rest as zeroes: a v1-sized
        // entry still validates.
        assert_eq!(
            check(ValidateMode::Read, |s| {
                let at = field_at(s, FieldType::MembersV2);
                put(s, at + 8, &(MEMBER_V1_BYTES as u16).to_le_bytes());
            }),
            Ok(())
        );

        let e = err(|s| edit_member(s, |m| m.nbuckets = MEMBER_NBUCKETS_MAX + 1));
        assert!(field_err(FieldError::MemberTooManyBuckets { dev: 0, nbuckets: MEMBER_NBUCKETS_MAX + 1 })(e));
        let e = err(|s| edit_member(s, |m| m.nbuckets = 63));
        assert!(field_err(FieldError::MemberNotEnoughBuckets { dev: 0, nbuckets: 63 })(e));
        let e = err(|s| edit_member(s, |m| m.first_bucket = 4096 - 63));
        assert!(field_err(FieldError::MemberNotEnoughBuckets { dev: 0, nbuckets: 4096 })(e));
        let e = err(|s| {
            s.set_flag(SbFlag::BtreeNodeSize, 4);
            edit_member(s, |m| m.bucket_size = 4)
        });
        assert!(field_err(FieldError::MemberBucketBelowBlock { dev: 0, bucket_size: 4, block_size: 8 })(e), "{e:?}");
        let e = err(|s| edit_member(s, |m| m.bucket_size = 256));
        assert!(field_err(FieldError::MemberBucketBelowBtreeNode { dev: 0, bucket_size: 256, btree_node_size: 512 })(e));
        let e = err(|s| edit_member(s, |m| m.btree_bitmap_shift = 58));
        assert!(field_err(FieldError::MemberBadBitmapShift { dev: 0, shift: 58 })(e));
        assert_eq!(
            e.to_string(),
            "invalid superblock section members_v1: device 0: invalid btree_bitmap_shift 58"
        );
        // Only members_v2 damaged: caught when it is reached.
        let e = err(|s| {
            let at = field_at(s, FieldType::MembersV2) + MEMBERS_V2_HEADER + 28;
            put(s, at, &[60]);
        });
        assert_eq!(e, SbError::Field { ty: 11, err: FieldError::MemberBadBitmapShift { dev: 0, shift: 60 } });
    }

    #[test]
    fn member_seq_is_checked_before_writes() {
        assert_eq!(check(ValidateMode::Read, |s| s.set_seq(5)), Ok(()));
        assert_eq!(
            check(ValidateMode::Write, |s| s.set_seq(5)),
            Err(SbError::MemberSeqMismatch { member_seq: 0, sb_seq: 5 })
        );
        assert_eq!(
            check(ValidateMode::Write, |s| {
                s.set_seq(5);
                edit_member(s, |m| m.seq = 5);
            }),
            Ok(())
        );
    }

    #[test]
    fn ext_and_crypt_errors() {
        let e = err(|s| s.add_field(FieldType::Ext, &[0; 8]).unwrap());
        assert_eq!(e, SbError::Field { ty: 13, err: FieldError::ExtTooSmall { bytes: 16 } });
        assert_eq!(check(ValidateMode::Read, |s| s.add_field(FieldType::Ext, &[0; 80]).unwrap()), Ok(()));
        let e = err(|s| s.add_field(FieldType::Crypt, &[0; 8]).unwrap());
        assert_eq!(e, SbError::Field { ty: 2, err: FieldError::CryptWrongSize { bytes: 16 } });
        let mut body = [0u8; 56];
        body[0] = 1;
        let e = err(|s| s.add_field(FieldType::Crypt, &body).unwrap());
        assert_eq!(e, SbError::Field { ty: 2, err: FieldError::CryptBadKdf(1) });
        body[0] = 0;
        assert_eq!(check(ValidateMode::Read, |s| s.add_field(FieldType::Crypt, &body).unwrap()), Ok(()));
        // Unknown field types are skipped.
        let mut s = fresh();
        let mut body = [0u8; 16];
        body[0] = 0xee;
        s.add_field(FieldType::Crypt, &body).unwrap();
        let at = s.bytes().len() - 24;
        put(&mut s, at + 4, &77u32.to_le_bytes());
        s.update_csum().unwrap();
        assert_eq!(Sb::parse(s.bytes()).unwrap().validate(ValidateMode::Read), Ok(()));
    }

    fn journal(buckets: &[u64]) -> SbError {
        let mut body = std::vec::Vec::new();
        for b in buckets {
            body.extend_from_slice(&b.to_le_bytes());
        }
        err(|s| s.add_field(FieldType::Journal, &body).unwrap())
    }

    fn journal_v2(ranges: &[(u64, u64)]) -> SbError {
        let mut body = std::vec::Vec::new();
        for (s, n) in ranges {
            body.extend_from_slice(&s.to_le_bytes());
            body.extend_from_slice(&n.to_le_bytes());
        }
        err(|s| s.add_field(FieldType::JournalV2, &body).unwrap())
    }

    #[test]
    fn journal_errors() {
        let je = |err| SbError::Field { ty: 0, err };
        assert_eq!(journal(&[7, 0, 3]), je(FieldError::JournalBucketZero));
        assert_eq!(journal(&[9, 4096]), je(FieldError::JournalBucketPastEnd { bucket: 4096, nbuckets: 4096 }));
        assert_eq!(journal(&[9, 3, 9]), je(FieldError::JournalBucketDuplicate(9)));
        let e = err(|s| {
            edit_member(s, |m| m.first_bucket = 10);
            s.add_field(FieldType::Journal, &5u64.to_le_bytes()).unwrap();
        });
        assert_eq!(e, je(FieldError::JournalBucketBeforeFirst { bucket: 5, first: 10 }));
        let ok = |s: &mut SbBuf| {
            let mut body = std::vec::Vec::new();
            for b in [5u64, 4095, 6] {
                body.extend_from_slice(&b.to_le_bytes());
            }
            s.add_field(FieldType::Journal, &body).unwrap()
        };
        assert_eq!(check(ValidateMode::Read, ok), Ok(()));
        assert_eq!(check(ValidateMode::Read, |s| s.add_field(FieldType::Journal, &[]).unwrap()), Ok(()));
    }

    #[test]
    fn journal_v2_errors() {
        let je = |err| SbError::Field { ty: 9, err };
        assert_eq!(journal_v2(&[(5, 0)]), je(FieldError::JournalV2BadNr { start: 5, nr: 0 }));
        assert_eq!(journal_v2(&[(5, u64::MAX)]), je(FieldError::JournalV2BadNr { start: 5, nr: u64::MAX }));
        assert_eq!(journal_v2(&[(9, 2), (0, 2)]), je(FieldError::JournalBucketZero));
        assert_eq!(
            journal_v2(&[(4090, 7)]),
            je(FieldError::JournalBucketPastEnd { bucket: 4096, nbuckets: 4096 })
        );
        assert_eq!(
            journal_v2(&[(10, 4), (1, 4), (3, 2)]),
            je(FieldError::JournalV2Overlap { start: 1, end: 5, next_start: 3, next_end: 5 })
        );
        let e = err(|s| {
            edit_member(s, |m| m.first_bucket = 10);
            let mut body = 5u64.to_le_bytes().to_vec();
            body.extend_from_slice(&1u64.to_le_bytes());
            s.add_field(FieldType::JournalV2, &body).unwrap();
        });
        assert_eq!(e, je(FieldError::JournalBucketBeforeFirst { bucket: 5, first: 10 }));
        // Unreachable behind member validation (nbuckets < 2^31), so
        // checked directly.
        let m = Member { nbuckets: u64::MAX, ..Member::default() };
        assert_eq!(
            check_journal_ranges(&[(1, 1 << 32), (1 << 32, 1 << 33)], &m, (1 << 33) - 1),
            Err(FieldError::JournalV2TooMany((1 << 33) - 1))
        );
        let mut body = 1u64.to_le_bytes().to_vec();
        body.extend_from_slice(&4095u64.to_le_bytes());
        assert_eq!(check(ValidateMode::Read, |s| s.add_field(FieldType::JournalV2, &body).unwrap()), Ok(()));
    }

    #[test]
    fn typed_access() {
        let s = fresh();
        let sb = Sb::parse(s.bytes()).unwrap();
        assert_eq!(sb.user_uuid(), [1; 16]);
        assert_eq!(sb.uuid(), [2; 16]);
        assert_eq!(sb.magic(), BCHFS_MAGIC);
        assert_eq!(sb.offset(), SB_SECTOR);
        assert_eq!(sb.nr_alive_devices(), 1);
        let m = sb.member(0).unwrap();
        assert_eq!(m.uuid, [3; 16]);
        assert_eq!(m.flag(MemberFlag::DataAllowed), 0x1c);
        assert_eq!(sb.members_v1().unwrap().get(0).unwrap().nbuckets, m.nbuckets);
        assert!(sb.members_v1().unwrap().get(1).is_none());
        assert!(sb.members_v2().unwrap().get(1).is_none());
        assert_eq!(sb.members_v2().unwrap().member_bytes, MEMBER_BYTES as u16);
        assert!(sb.member(1).is_none());
        let names: std::vec::Vec<_> = sb.fields().map(|f| f.unwrap().name().unwrap()).collect();
        assert_eq!(names, ["ext", "members_v2", "members_v1"]);
        assert_eq!(sb.opt(sb_opt("btree_node_size").unwrap()), 256 << 10);
        assert_eq!(sb.opt(sb_opt("str_hash").unwrap()), 2);
        assert!(!std::format!("{sb:?}").is_empty());
        assert_eq!(field_name(14), Some("downgrade"));
        assert_eq!(field_name(15), None);
    }

    #[test]
    fn every_error_prints() {
        let samples = [
            SbError::Incomplete { have: 1, need: 2 },
            SbError::UnknownCsumType(9),
            SbError::CsumNeedsKey(CsumType::Chacha20Poly1305_80),
            SbError::LayoutOverlap { sb: 0, ends: 1, next: 0 },
            SbError::Field { ty: 99, err: FieldError::JournalBucketZero },
            SbError::NoMem,
        ];
        for e in samples {
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(SbError::NoMem.errno(), Errno::ENOMEM);
        assert!(SbError::Field { ty: 99, err: FieldError::JournalBucketZero }
            .to_string()
            .contains("(unknown field 99)"));
    }

    /// An in-memory device.
    struct MemDev(std::vec::Vec<u8>);

    impl BlockDev for MemDev {
        fn name(&self) -> &str {
            "mem"
        }
        fn nr_sectors(&self) -> u64 {
            (self.0.len() / SECTOR_SIZE) as u64
        }
        fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
            let at = sector as usize * SECTOR_SIZE;
            let src = self.0.get(at..at + buf.len()).ok_or(Errno::EIO)?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    /// A 16 MiB device as the format writer lays it out.
    fn formatted_dev() -> MemDev {
        let size = 16 << 20;
        let f = format(size, &opts()).unwrap();
        let mut d = MemDev(std::vec![0u8; size as usize]);
        for (sector, bytes) in f.writes().unwrap().iter() {
            let at = *sector as usize * SECTOR_SIZE;
            d.0[at..at + bytes.len()].copy_from_slice(bytes);
        }
        d
    }

    #[test]
    fn read_super_primary_and_backups() {
        let mut d = formatted_dev();
        let r = read_super(&d).unwrap();
        assert_eq!(r.sector, SB_SECTOR);
        assert_eq!(r.sb().offset(), SB_SECTOR);
        let backups = r.sb().layout();
        assert_eq!(backups.offsets()[1], 2056);

        // Primary checksum broken: the first backup is used.
        d.0[SB_SECTOR as usize * SECTOR_SIZE + off::LABEL] ^= 1;
        let r = read_super(&d).unwrap();
        assert_eq!((r.sector, r.sb().offset()), (2056, 2056));

        // First backup gone too: the one at the end of the device.
        d.0[2056 * SECTOR_SIZE + off::MAGIC] ^= 1;
        let r = read_super(&d).unwrap();
        assert_eq!(r.sector, backups.offsets()[2]);

        // And without the layout sector, only the primary's error is left.
        d.0[7 * SECTOR_SIZE] ^= 1;
        assert!(matches!(read_super(&d), Err(SbError::BadCsum { .. })));

        // Not bcachefs at all.
        let blank = MemDev(std::vec![0u8; 1 << 20]);
        assert_eq!(read_super(&blank).unwrap_err(), SbError::BadMagic { got: [0; 16] });
        // Too small to hold a superblock.
        let tiny = MemDev(std::vec![0u8; 4096 + 512]);
        assert_eq!(read_super(&tiny).unwrap_err(), SbError::Truncated { have: 512 });
    }

    #[test]
    fn read_super_rereads_large_superblocks_and_validates() {
        let mut d = formatted_dev();
        let mut s = SbBuf::from_sb(&Sb::parse(&d.0[4096..]).unwrap()).unwrap();
        // Grow it past the 4 KiB first read.
        s.add_field(FieldType::Counters, &[7u8; 5000]).unwrap();
        s.update_csum().unwrap();
        let len = s.bytes().len();
        d.0[4096..4096 + len].copy_from_slice(s.bytes());
        let r = read_super(&d).unwrap();
        assert_eq!(r.sb().bytes().len(), len);

        // Read but invalid: the validation error, no fallback.
        s.set_time(1, 0, 0);
        s.update_csum().unwrap();
        d.0[4096..4096 + len].copy_from_slice(s.bytes());
        assert_eq!(read_super(&d).unwrap_err(), SbError::BadTimePrecision(0));
        assert_eq!(read_one_super(&d, SB_SECTOR).map(|r| r.sector), Ok(SB_SECTOR));

        // A superblock claiming more bytes than the device has.
        let end = MemDev(d.0[..(4096 + 4608)].to_vec());
        assert!(matches!(read_one_super(&end, SB_SECTOR), Err(SbError::Incomplete { .. })));
        assert_eq!(SbError::Io(Errno::EIO).errno(), Errno::EIO);
    }

    /// Runs every accessor and check on `bytes`; must never panic.
    fn exercise(bytes: &[u8]) {
        if let Ok(sb) = Sb::parse(bytes) {
            let _ = sb.verify_csum();
            let _ = sb.validate(ValidateMode::Read);
            let _ = sb.validate(ValidateMode::Write);
            let _ = sb.layout().validate();
            for f in sb.fields() {
                let _ = f.map(|f| f.name());
            }
            let _ = sb.members().count();
            for o in crate::format::sb_opts::SB_OPTS {
                let _ = sb.opt(o);
            }
            let _ = sb.member(255);
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)
        ) {
            exercise(&bytes);
        }

        #[test]
        fn damaged_superblocks_never_panic(
            edits in proptest::collection::vec((0usize..1200, proptest::num::u8::ANY), 1..12),
            fix_csum in proptest::bool::ANY,
        ) {
            let mut s = fresh();
            // Room for fields to claim more than they have.
            s.add_field(FieldType::Journal, &[0; 256]).unwrap();
            let len = s.bytes().len();
            for (at, v) in edits {
                s.bytes_mut()[at % len] = v;
            }
            if fix_csum {
                let _ = s.update_csum();
            }
            exercise(s.bytes());
        }
    }
}
