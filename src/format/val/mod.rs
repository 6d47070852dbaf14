// SPDX-License-Identifier: GPL-2.0
//! Key values: checking them (`bch2_bkey_val_validate()` and the
//! per-type `*_validate()` of `fs/bcachefs/bkey_methods.c` and friends)
//! and printing them as `bch2_bkey_val_to_text()` does, which is what
//! bcachefs-tools' `list` shows: `u64s N type T inode:offset:snapshot len
//! L ver V: value`.
//!
//! - [`extent`]: extents and btree pointers.
//! - [`inode`]: inodes (v1, v2, v3) and their varint fields.
//! - [`dirent`]: directory entries and xattrs.
//! - [`alloc`]: alloc_v4, backpointers, lru.
//! - [`misc`]: subvolumes, snapshots, snapshot trees, accounting, logged
//!   ops and small fixed values.
//!
//! Device-dependent checks and output (buckets, durability) need an
//! [`FsCtx`]; without one the output is what C prints with no filesystem
//! at hand.

pub mod alloc;
pub mod dirent;
pub mod extent;
pub mod inode;
pub mod misc;

use core::fmt;

use super::bkey::{Bkey, KeyError, KeyType};
use super::sb_opts::DATA_TYPE_NAMES;

/// Names of the compression types stored in extents
/// (`BCH_COMPRESSION_TYPES()`).
pub const COMPRESSION_TYPE_NAMES: [&str; 6] = ["none", "lz4_old", "gzip", "lz4", "zstd", "incompressible"];

/// What a device contributes to checking and printing pointers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevInfo {
    /// Bucket size, 512-byte sectors.
    pub bucket_size: u32,
    /// First bucket the allocator uses.
    pub first_bucket: u64,
    /// Number of buckets.
    pub nbuckets: u64,
    /// Durability of data on the device.
    pub durability: u8,
    /// The device is in state `failed`.
    pub failed: bool,
}

/// The filesystem facts value checks and printing can use.
#[derive(Clone, Copy, Debug)]
pub struct FsCtx<'a> {
    /// Member devices by index; `None` for empty slots.
    pub devs: &'a [Option<DevInfo>],
    /// Btree node size, 512-byte sectors (`btree_sectors(c)`).
    pub btree_node_sectors: u32,
    /// `encoded_extent_max`, 512-byte sectors.
    pub encoded_extent_max_sectors: u32,
}

impl Default for FsCtx<'_> {
    fn default() -> Self {
        // The format defaults: 256 KiB nodes, 64 KiB encoded extents.
        FsCtx { devs: &[], btree_node_sectors: 512, encoded_extent_max_sectors: 128 }
    }
}

impl FsCtx<'_> {
    /// Device `i`, if it exists.
    pub fn dev(&self, i: u8) -> Option<&DevInfo> {
        self.devs.get(i as usize).and_then(|d| d.as_ref())
    }
}

/// Why a value failed its type's checks.  Messages follow C's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValError {
    /// The value does not match what the key type expects.
    WrongType,
    /// A value that must be empty is not.
    SizeNonzero(usize),
    /// Value larger than the type allows.
    TooBig {
        /// Value u64s.
        u64s: usize,
        /// Maximum.
        max: usize,
    },
    /// The key position is outside the type's range.
    BadPos,
    /// An extent entry of unknown type.
    ExtentEntryBadType {
        /// Index of the lowest set bit (6 when none is).
        ty: u32,
        /// The entry's first u64.
        raw: u64,
    },
    /// An extent entry running past the end of the value.
    ExtentEntryPastEnd {
        /// Byte offset of the entry.
        offset: usize,
    },
    /// A btree pointer with an entry that is not a pointer.
    BtreePtrHasNonPtr,
    /// Two pointers to one device.
    PtrDuplicateDevice(u8),
    /// A pointer past the device's last bucket.
    PtrPastLastBucket {
        /// Bucket.
        bucket: u64,
        /// Buckets on the device.
        nbuckets: u64,
    },
    /// A pointer before the device's first bucket.
    PtrBeforeFirstBucket {
        /// Bucket.
        bucket: u64,
        /// First bucket.
        first: u64,
    },
    /// A pointer whose data crosses a bucket boundary.
    PtrSpansBuckets {
        /// Offset in the bucket.
        offset: u32,
        /// Size on disk.
        size: u32,
        /// Bucket size.
        bucket_size: u32,
    },
    /// A cached pointer that is erasure coded.
    PtrCachedAndErasureCoded,
    /// crc offset plus key size beyond the uncompressed size.
    CrcUncompressedTooSmall,
    /// Unknown checksum type in a crc entry.
    CrcCsumTypeUnknown(u8),
    /// Unknown compression type in a crc entry.
    CrcCompressionTypeUnknown(u8),
    /// Encrypted crc entries disagree on the nonce.
    CrcNonceMismatch,
    /// An encoded extent larger than `encoded_extent_max`.
    CrcUncompressedTooBig(u32),
    /// A crc entry not followed by a pointer.
    RedundantCrc,
    /// A stripe entry not followed by a pointer.
    RedundantStripe,
    /// No pointers.
    NoPtrs,
    /// More than 16 pointers.
    TooManyPtrs(usize),
    /// Written and unwritten pointers together.
    WrittenAndUnwritten,
    /// Unwritten pointers outside an extent.
    UnwrittenPtrs,
    /// `btree_ptr_v2` with `min_key` not below the key.
    BtreePtrMinKey,
    /// `btree_ptr_v2` with `sectors_written` 0 (checked on write).
    BtreePtrWritten0,
    /// Inode key with nonzero `p.inode`.
    InodePosInodeNonzero,
    /// Inode number in the block device range.
    InodeBlockdevRange,
    /// A variable-length field is truncated or too wide.
    InodeUnpack {
        /// Field index.
        field: u8,
    },
    /// `fields_start` out of range.
    InodeFieldsStart {
        /// The value.
        got: u64,
        /// Value u64s.
        max: u64,
    },
    /// Unknown string hash type.
    InodeStrHash(u8),
    /// Invalid data checksum option.
    InodeChecksumType(u8),
    /// Invalid compression option.
    InodeCompression(u8),
    /// Unlinked with a nonzero link count.
    InodeUnlinkedNlink,
    /// Subvolume root that is not a directory.
    InodeSubvolNotDir,
    /// Dirent with an empty name.
    DirentEmptyName,
    /// Dirent value longer than its name needs.
    DirentValTooBig {
        /// Value u64s.
        u64s: usize,
        /// What the name needs.
        max: usize,
    },
    /// Dirent name longer than `BCH_NAME_MAX`.
    DirentNameTooLong(usize),
    /// NUL inside a dirent name.
    DirentEmbeddedNul,
    /// Dirent named `.` or `..`.
    DirentDotOrDotdot,
    /// Dirent name with `/`.
    DirentSlash,
    /// Dirent pointing to its own directory.
    DirentToItself,
    /// Xattr value shorter than its lengths say.
    XattrValTooSmall {
        /// Value u64s.
        u64s: usize,
        /// Minimum.
        min: usize,
    },
    /// Xattr value longer than its lengths allow.
    XattrValTooBig {
        /// Value u64s.
        u64s: usize,
        /// Maximum.
        max: usize,
    },
    /// Xattr of unknown type.
    XattrInvalidType(u8),
    /// NUL inside an xattr name.
    XattrNameNul,
    /// alloc_v4 value shorter than its backpointers need.
    AllocValSize {
        /// u64s needed.
        want: u64,
        /// u64s present.
        have: u64,
    },
    /// alloc_v4 with backpointers but no `backpointers_start`.
    AllocBackpointersStart,
    /// alloc_v4 data type disagreeing with its counters.
    AllocDataType {
        /// Stored.
        got: u8,
        /// Implied.
        want: u8,
    },
    /// alloc_v4 io time past `LRU_TIME_MAX`.
    AllocIoTime {
        /// 0 read, 1 write.
        rw: u8,
        /// The time.
        time: u64,
    },
    /// Empty bucket type with sectors.
    AllocEmptyButHaveData,
    /// Data bucket with no dirty sectors.
    AllocDirtySectorsZero(u8),
    /// Cached bucket counters inconsistent.
    AllocCachedInconsistent,
    /// Backpointer level above `BTREE_MAX_DEPTH`.
    BackpointerLevel(u8),
    /// Backpointer position disagrees with its bucket offset.
    BackpointerBucketOffset,
    /// lru entry at time 0.
    LruTimeZero,
    /// Subvolume with snapshot 0.
    SubvolSnapshotZero,
    /// Subvolume with inode 0.
    SubvolInodeZero,
    /// Snapshot parent not above the node.
    SnapshotParentBad(u32),
    /// Snapshot children not in descending order.
    SnapshotChildrenNotNormalized,
    /// Snapshot with the same child twice.
    SnapshotChildDuplicate,
    /// Snapshot child not below the node.
    SnapshotChildBad(u32),
    /// Snapshot skiplist not ascending.
    SnapshotSkiplistNotNormalized,
    /// Snapshot skiplist entry below the parent.
    SnapshotSkiplistBad(u32),
    /// Accounting key with version 0.
    AccountingVersionZero,
    /// Accounting replicas entry with no devices.
    AccountingReplicasNrDevs0,
    /// Accounting replicas entry with bad `nr_required`.
    AccountingReplicasNrRequired,
    /// Accounting replicas devices not sorted.
    AccountingReplicasUnsorted,
    /// Accounting position with junk after its fields.
    AccountingJunkAtEnd,
    /// Reservation with a bad replica count.
    ReservationReplicas(u8),
}

impl fmt::Display for ValError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ValError as E;
        match *self {
            E::WrongType => f.write_str("value does not match key type"),
            E::SizeNonzero(n) => write!(f, "incorrect value size ({n} != 0)"),
            E::TooBig { u64s, max } => write!(f, "value too big ({u64s} > {max})"),
            E::BadPos => f.write_str("invalid pos"),
            E::ExtentEntryBadType { ty, raw } => {
                write!(f, "invalid extent entry type (got {ty}, max {}) {raw:016x}", extent::EXTENT_ENTRY_MAX)
            }
            E::ExtentEntryPastEnd { offset } => write!(f, "extent entry at byte {offset} extends past end of value"),
            E::BtreePtrHasNonPtr => f.write_str("has non ptr field"),
            E::PtrDuplicateDevice(d) => write!(f, "multiple pointers to same device ({d})"),
            E::PtrPastLastBucket { bucket, nbuckets } => {
                write!(f, "pointer past last bucket ({bucket} > {nbuckets})")
            }
            E::PtrBeforeFirstBucket { bucket, first } => {
                write!(f, "pointer before first bucket ({bucket} < {first})")
            }
            E::PtrSpansBuckets { offset, size, bucket_size } => {
                write!(f, "pointer spans multiple buckets ({offset} + {size} > {bucket_size})")
            }
            E::PtrCachedAndErasureCoded => f.write_str("cached, erasure coded ptr"),
            E::CrcUncompressedTooSmall => f.write_str("checksum offset + key size > uncompressed size"),
            E::CrcCsumTypeUnknown(t) => write!(f, "invalid checksum type {t}"),
            E::CrcCompressionTypeUnknown(t) => write!(f, "invalid compression type {t}"),
            E::CrcNonceMismatch => f.write_str("incorrect nonce"),
            E::CrcUncompressedTooBig(s) => write!(f, "too large encoded extent ({s} sectors)"),
            E::RedundantCrc => f.write_str("redundant crc entry"),
            E::RedundantStripe => f.write_str("redundant stripe entry"),
            E::NoPtrs => f.write_str("no ptrs"),
            E::TooManyPtrs(n) => write!(f, "too many ptrs: {n} > {}", extent::BKEY_PTRS_MAX),
            E::WrittenAndUnwritten => f.write_str("extent with unwritten and written ptrs"),
            E::UnwrittenPtrs => f.write_str("has unwritten ptrs"),
            E::BtreePtrMinKey => f.write_str("min_key > key"),
            E::BtreePtrWritten0 => f.write_str("sectors_written == 0"),
            E::InodePosInodeNonzero => f.write_str("nonzero k.p.inode"),
            E::InodeBlockdevRange => f.write_str("fs inode in blockdev range"),
            E::InodeUnpack { field } => {
                let name = inode::INODE_FIELDS_V3.get(field as usize).map_or("?", |f| f.0);
                write!(f, "invalid variable length fields (field {field}, {name} in v3 order)")
            }
            E::InodeFieldsStart { got, max } => {
                write!(f, "invalid fields_start (got {got}, min {} max {max})", inode::INODE_V3_FIELDS_START)
            }
            E::InodeStrHash(t) => write!(f, "invalid str hash type ({t} >= {})", inode::STR_HASH_NR),
            E::InodeChecksumType(t) => write!(f, "invalid data checksum type ({t} >= 5)"),
            E::InodeCompression(t) => write!(f, "invalid compression opt {t}"),
            E::InodeUnlinkedNlink => f.write_str("flagged as unlinked but bi_nlink != 0"),
            E::InodeSubvolNotDir => f.write_str("subvolume root but not a directory"),
            E::DirentEmptyName => f.write_str("empty name"),
            E::DirentValTooBig { u64s, max } => write!(f, "value too big ({u64s} > {max})"),
            E::DirentNameTooLong(n) => write!(f, "dirent name too big ({n} > {})", dirent::BCH_NAME_MAX),
            E::DirentEmbeddedNul => f.write_str("dirent has stray data after name's NUL"),
            E::DirentDotOrDotdot => f.write_str("invalid name"),
            E::DirentSlash => f.write_str("name with /"),
            E::DirentToItself => f.write_str("dirent points to own directory"),
            E::XattrValTooSmall { u64s, min } => write!(f, "value too small ({u64s} < {min})"),
            E::XattrValTooBig { u64s, max } => write!(f, "value too big ({u64s} > {max})"),
            E::XattrInvalidType(t) => write!(f, "invalid type ({t})"),
            E::XattrNameNul => f.write_str("xattr name has invalid characters"),
            E::AllocValSize { want, have } => write!(f, "bad val size ({want} > {have})"),
            E::AllocBackpointersStart => f.write_str("invalid backpointers_start"),
            E::AllocDataType { got, want } => {
                write!(f, "invalid data type (got {got} should be {want})")
            }
            E::AllocIoTime { rw, time } => write!(
                f,
                "invalid io_time[{}]: {time}, max {}",
                if rw == 0 { "read" } else { "write" },
                alloc::LRU_TIME_MAX
            ),
            E::AllocEmptyButHaveData => f.write_str("empty data type free but have data"),
            E::AllocDirtySectorsZero(t) => {
                f.write_str("data_type ")?;
                fmt_data_type(f, t)?;
                f.write_str(" but dirty_sectors==0")
            }
            E::AllocCachedInconsistent => f.write_str("data type inconsistency"),
            E::BackpointerLevel(l) => {
                write!(f, "backpointer level bad: {l} >= {}", super::bkey::BTREE_MAX_DEPTH)
            }
            E::BackpointerBucketOffset => f.write_str("backpointer bucket_offset wrong"),
            E::LruTimeZero => f.write_str("lru entry at time=0"),
            E::SubvolSnapshotZero => f.write_str("invalid snapshot"),
            E::SubvolInodeZero => f.write_str("invalid inode"),
            E::SnapshotParentBad(p) => write!(f, "bad parent node ({p})"),
            E::SnapshotChildrenNotNormalized => f.write_str("children not normalized"),
            E::SnapshotChildDuplicate => f.write_str("duplicate child nodes"),
            E::SnapshotChildBad(c) => write!(f, "bad child node ({c})"),
            E::SnapshotSkiplistNotNormalized => f.write_str("skiplist not normalized"),
            E::SnapshotSkiplistBad(s) => write!(f, "bad skiplist node {s}"),
            E::AccountingVersionZero => f.write_str("accounting key with version=0"),
            E::AccountingReplicasNrDevs0 => f.write_str("accounting key replicas entry with nr_devs=0"),
            E::AccountingReplicasNrRequired => {
                f.write_str("accounting key replicas entry with bad nr_required")
            }
            E::AccountingReplicasUnsorted => f.write_str("accounting key replicas entry with unsorted devs"),
            E::AccountingJunkAtEnd => f.write_str("junk at end of accounting key"),
            E::ReservationReplicas(r) => write!(f, "invalid nr_replicas ({r})"),
        }
    }
}

/// Writes a data type name as `bch2_prt_data_type()` does.
pub fn fmt_data_type(f: &mut dyn fmt::Write, t: u8) -> fmt::Result {
    match DATA_TYPE_NAMES.get(t as usize) {
        Some(n) => f.write_str(n),
        None => write!(f, "(unknown data_type {t})"),
    }
}

/// `min_val_size` of each key type (`struct bkey_ops`), bytes.
pub fn min_val_size(ty: u8) -> usize {
    use KeyType as T;
    match KeyType::from_u8(ty) {
        Some(T::Cookie | T::Alloc | T::AllocV2 | T::Stripe | T::ReflinkV | T::IndirectInlineData) => 8,
        Some(T::Reservation | T::InodeGeneration | T::Xattr | T::Lru | T::SnapshotTree | T::Accounting) => 8,
        Some(T::AllocV3 | T::Inode | T::Dirent | T::Subvolume | T::ReflinkP) => 16,
        Some(T::Snapshot | T::LoggedOpTruncate | T::LoggedOpFinsert) => 24,
        Some(T::InodeV2 | T::Backpointer | T::Quota) => 32,
        Some(T::BtreePtrV2) => 40,
        Some(T::AllocV4 | T::InodeV3) => 48,
        _ => 0,
    }
}

/// Whether values of this type carry no data at all
/// (`empty_val_key_validate()`).
fn must_be_empty(ty: u8) -> bool {
    matches!(KeyType::from_u8(ty), Some(KeyType::Error | KeyType::HashWhiteout | KeyType::Set))
}

/// What kind of check to run: `write` and `commit` add the checks C makes
/// only before writing (`BCH_VALIDATE_write`) or committing
/// (`BCH_VALIDATE_commit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValidateFlags {
    /// `BCH_VALIDATE_write`.
    pub write: bool,
    /// `BCH_VALIDATE_commit`.
    pub commit: bool,
}

/// `bch2_bkey_val_validate()`: the value's size against the type's minimum,
/// then the type's own checks, for the types implemented here (others pass
/// after the size check, as types without validators do in C).  `v` is the
/// value, `k.val_bytes()` long.
pub fn validate_val(k: &Bkey, v: &[u8], ctx: &FsCtx<'_>, flags: ValidateFlags) -> Result<(), KeyError> {
    let ty = k.key_type;
    let min = min_val_size(ty);
    if v.len() < min {
        return Err(KeyError::ValTooSmall { ty, bytes: v.len(), min });
    }
    let e = |err| KeyError::Val { ty, err };
    if must_be_empty(ty) && !v.is_empty() {
        return Err(e(ValError::SizeNonzero(v.len())));
    }
    use KeyType as T;
    let r = match KeyType::from_u8(ty) {
        Some(T::BtreePtr) => {
            if k.val_u64s() > extent::REPLICAS_MAX {
                Err(ValError::TooBig { u64s: k.val_u64s(), max: extent::REPLICAS_MAX })
            } else {
                extent::validate_ptrs(k, v, ctx, flags.write)
            }
        }
        Some(T::BtreePtrV2) => {
            let bp = extent::BtreePtrV2::decode(v).ok_or(ValError::WrongType);
            match bp {
                Err(er) => Err(er),
                Ok(_) if k.val_u64s() > extent::BTREE_PTR_V2_VAL_U64S_MAX => {
                    Err(ValError::TooBig { u64s: k.val_u64s(), max: extent::BTREE_PTR_V2_VAL_U64S_MAX })
                }
                Ok(bp) if bp.min_key >= k.p => Err(ValError::BtreePtrMinKey),
                Ok(bp) if flags.write && bp.sectors_written == 0 => Err(ValError::BtreePtrWritten0),
                Ok(_) => extent::validate_ptrs(k, &v[extent::BTREE_PTR_V2_BYTES..], ctx, flags.write),
            }
        }
        Some(T::Extent) => extent::validate_ptrs(k, v, ctx, flags.write),
        Some(T::ReflinkV) => extent::validate_ptrs(k, &v[8..], ctx, flags.write),
        Some(T::Reservation) => misc::validate_reservation(v),
        Some(T::Inode | T::InodeV2 | T::InodeV3) => inode::validate(k, v),
        Some(T::Dirent) => dirent::validate_dirent(k, v, flags.commit),
        Some(T::Xattr) => dirent::validate_xattr(k, v),
        Some(T::AllocV4) => alloc::validate_alloc_v4(k, v),
        Some(T::Backpointer) => alloc::validate_backpointer(k, v, ctx),
        Some(T::Lru) => alloc::validate_lru(k),
        Some(T::Subvolume) => misc::validate_subvolume(k, v),
        Some(T::Snapshot) => misc::validate_snapshot(k, v),
        Some(T::SnapshotTree) => misc::validate_snapshot_tree(k),
        Some(T::Accounting) => misc::validate_accounting(k),
        _ => Ok(()),
    };
    r.map_err(e)
}

/// `bch2_val_to_text()`: the value alone, for the types implemented here;
/// other types print nothing beyond their name, as types without
/// `val_to_text` do in C.
pub fn fmt_val(f: &mut dyn fmt::Write, k: &Bkey, v: &[u8], ctx: Option<&FsCtx<'_>>) -> fmt::Result {
    use KeyType as T;
    match KeyType::from_u8(k.key_type) {
        Some(T::Cookie) => misc::fmt_cookie(f, v),
        Some(T::BtreePtr | T::Extent) => extent::fmt_ptrs(f, v, ctx),
        Some(T::BtreePtrV2) => extent::fmt_btree_ptr_v2(f, v, ctx),
        Some(T::ReflinkV) => {
            let refcount = v.get(..8).map_or(0, |s| {
                let mut b = [0u8; 8];
                b.copy_from_slice(s);
                u64::from_le_bytes(b)
            });
            write!(f, "refcount: {refcount} ")?;
            extent::fmt_ptrs(f, v.get(8..).unwrap_or(&[]), ctx)
        }
        Some(T::Reservation) => misc::fmt_reservation(f, v),
        Some(T::Inode | T::InodeV2 | T::InodeV3) => inode::fmt_inode(f, k, v),
        Some(T::InodeGeneration) => misc::fmt_inode_generation(f, v),
        Some(T::Dirent) => dirent::fmt_dirent(f, v),
        Some(T::Xattr) => dirent::fmt_xattr(f, v),
        Some(T::ReflinkP) => misc::fmt_reflink_p(f, v),
        Some(T::InlineData) => misc::fmt_inline_data(f, v),
        Some(T::IndirectInlineData) => {
            let refcount = v.get(..8).map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])));
            // C counts the whole value as data (bkey_inline_data_bytes())
            // but prints from after the refcount.
            write!(f, "refcount {refcount} datalen {}: ", v.len())?;
            for b in v.get(8..).unwrap_or(&[]).iter().take(32) {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
        Some(T::Subvolume) => misc::fmt_subvolume(f, v),
        Some(T::Snapshot) => misc::fmt_snapshot(f, v),
        Some(T::SnapshotTree) => misc::fmt_snapshot_tree(f, v),
        Some(T::Lru) => misc::fmt_lru(f, v),
        Some(T::AllocV4) => alloc::fmt_alloc_v4(f, k, v, ctx),
        Some(T::Backpointer) => alloc::fmt_backpointer(f, k, v, ctx),
        Some(T::BucketGens) => misc::fmt_bucket_gens(f, v),
        Some(T::LoggedOpTruncate) => misc::fmt_logged_op_truncate(f, v),
        Some(T::LoggedOpFinsert) => misc::fmt_logged_op_finsert(f, v),
        Some(T::Accounting) => misc::fmt_accounting(f, k, v),
        _ => Ok(()),
    }
}

/// A key and its value, printed as `bch2_bkey_val_to_text()` prints them:
/// the key, then `": "` and the value when there is one.
pub struct KeyDisplay<'a> {
    /// The key.
    pub k: &'a Bkey,
    /// Its value.
    pub v: &'a [u8],
    /// Filesystem facts, if any.
    pub ctx: Option<&'a FsCtx<'a>>,
}

impl fmt::Display for KeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.k)?;
        if self.k.val_bytes() > 0 {
            f.write_str(": ")?;
            fmt_val(f, self.k, self.v, self.ctx)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bpos::Bpos;
    use proptest::prelude::*;
    use std::string::{String, ToString};

    #[test]
    fn min_sizes_and_empty_types() {
        assert_eq!(min_val_size(KeyType::InodeV3 as u8), 48);
        assert_eq!(min_val_size(KeyType::BtreePtrV2 as u8), 40);
        assert_eq!(min_val_size(200), 0);
        let k = Bkey::new(KeyType::Set, Bpos::pos(1, 1), 1);
        assert_eq!(
            validate_val(&k, &[0; 8], &FsCtx::default(), ValidateFlags::default()),
            Err(KeyError::Val { ty: 25, err: ValError::SizeNonzero(8) })
        );
        let k = Bkey::new(KeyType::InodeV3, Bpos::new(0, 4096, 1), 1);
        assert_eq!(
            validate_val(&k, &[0; 8], &FsCtx::default(), ValidateFlags::default()),
            Err(KeyError::ValTooSmall { ty: 29, bytes: 8, min: 48 })
        );
    }

    #[test]
    fn key_lines_look_like_list() {
        let k = Bkey::new(KeyType::Set, Bpos::pos(0, 5), 0);
        assert_eq!(KeyDisplay { k: &k, v: &[], ctx: None }.to_string(), "u64s 5 type set 0:5:0 len 0 ver 0");
        let k = Bkey::new(KeyType::Lru, Bpos::pos(1, 5), 1);
        assert_eq!(
            KeyDisplay { k: &k, v: &9u64.to_le_bytes(), ctx: None }.to_string(),
            "u64s 6 type lru 1:5:0 len 0 ver 0: idx 9"
        );
        let mut s = String::new();
        fmt_data_type(&mut s, 99).unwrap();
        assert_eq!(s, "(unknown data_type 99)");
    }

    fn line(ty: KeyType, p: Bpos, v: &[u8]) -> String {
        let k = Bkey::new(ty, p, v.len() / 8);
        KeyDisplay { k: &k, v, ctx: None }.to_string()
    }

    #[test]
    fn small_types_print_like_c() {
        let p = Bpos::new(1, 2, 3);
        assert_eq!(line(KeyType::Cookie, p, &7u64.to_le_bytes()), "u64s 6 type cookie 1:2:3 len 0 ver 0: 7");
        let mut r = [0u8; 8];
        r[..4].copy_from_slice(&5u32.to_le_bytes());
        r[4] = 2;
        assert!(line(KeyType::Reservation, p, &r).ends_with(": generation 5 replicas 2"));
        assert!(line(KeyType::InodeGeneration, p, &r).ends_with(": generation: 5"));
        let mut rp = [0u8; 16];
        rp[..8].copy_from_slice(&9u64.to_le_bytes());
        rp[8] = 1;
        rp[12] = 2;
        assert!(line(KeyType::ReflinkP, p, &rp).ends_with(": idx 9 front_pad 1 back_pad 2"));
        let mut t = [0u8; 24];
        t[..4].copy_from_slice(&1u32.to_le_bytes());
        t[8..16].copy_from_slice(&4096u64.to_le_bytes());
        t[16..24].copy_from_slice(&100u64.to_le_bytes());
        assert!(line(KeyType::LoggedOpTruncate, p, &t).ends_with(": subvol=1 inum=4096 new_i_size=100"));
        let mut fi = [0u8; 40];
        fi[4..8].copy_from_slice(&1u32.to_le_bytes());
        fi[8..16].copy_from_slice(&4096u64.to_le_bytes());
        fi[16..24].copy_from_slice(&(-8i64).to_le_bytes());
        fi[24..32].copy_from_slice(&16u64.to_le_bytes());
        assert!(line(KeyType::LoggedOpFinsert, p, &fi).ends_with(": subvol=1 inum=4096 dst_offset=-8 src_offset=16"));
        assert!(line(KeyType::SnapshotTree, p, &[1, 0, 0, 0, 2, 0, 0, 0]).ends_with(": subvol 1 root snapshot 2"));
        assert!(line(KeyType::InlineData, p, b"abc\0\0\0\0\0").ends_with(": datalen 8: 6162630000000000"));
        let mut ind = [0u8; 16];
        ind[0] = 3;
        ind[8] = 0xab;
        assert!(line(KeyType::IndirectInlineData, p, &ind).ends_with(": refcount 3 datalen 16: ab00000000000000"));
        // Types without a printer stop after the key.
        assert_eq!(line(KeyType::Whiteout, p, &[]), "u64s 5 type whiteout 1:2:3 len 0 ver 0");
        let mut k = Bkey::new(KeyType::Deleted, p, 0);
        k.key_type = 99;
        assert_eq!(KeyDisplay { k: &k, v: &[], ctx: None }.to_string(), "u64s 5 type 99 1:2:3 len 0 ver 0");
    }

    proptest! {
        #[test]
        fn any_type_any_value_never_panics(ty in 0u8..40, v in proptest::collection::vec(any::<u8>(), 0..96),
                                           p in any::<(u64, u64, u32)>(), size in any::<u32>()) {
            let mut k = Bkey::new(KeyType::Deleted, Bpos::new(p.0, p.1, p.2), v.len() / 8);
            k.key_type = ty;
            k.size = size;
            let v = &v[..v.len() / 8 * 8];
            let devs = [Some(DevInfo { bucket_size: 128, first_bucket: 1, nbuckets: 1000, durability: 2, failed: false })];
            for ctx in [FsCtx::default(), FsCtx { devs: &devs, ..FsCtx::default() }] {
                let _ = validate_val(&k, v, &ctx, ValidateFlags { write: true, commit: true });
                let _ = KeyDisplay { k: &k, v, ctx: Some(&ctx) }.to_string();
            }
            let _ = KeyDisplay { k: &k, v, ctx: None }.to_string();
        }
    }
}
