// SPDX-License-Identifier: GPL-2.0
//! Keys: `struct bkey`, `struct bkey_packed`, `struct bkey_format` and the
//! key type and btree id tables of `fs/bcachefs/bcachefs_format.h`, with
//! pack and unpack as `bkey.c` does them.
//!
//! # The unpacked key (`struct bkey`, 40 bytes, 5 u64s)
//!
//! | byte | field |
//! |-----:|-------|
//! | 0 | `u64s`: key plus value, in u64s |
//! | 1 | `format` (bits 0-6; 1 = unpacked), `needs_whiteout` (bit 7) |
//! | 2 | `type` ([`KeyType`]) |
//! | 3 | pad |
//! | 4 | `bversion` (`lo` u64, `hi` u32) |
//! | 16 | `size` (u32, 512-byte sectors, extents only) |
//! | 20 | `p` ([`Bpos`], 20 bytes) |
//!
//! The value follows at byte 40.
//!
//! # Packed keys (`struct bkey_packed`, format 0)
//!
//! Keys inside a btree node are usually packed with the node's
//! [`BkeyFormat`]: the same 3-byte header, then `key_u64s` words holding
//! the six fields inode, offset, snapshot, size, version hi and version lo,
//! each stored minus the format's `field_offset` in `bits_per_field` bits.
//! The key words form one big integer whose most significant bit is the
//! top bit of the last word (little-endian machines, which is all C writes
//! in practice): fields are laid down from there towards bit 24 of the
//! first word, below which sits the header.  The unpacked key is that same
//! layout with the format [`BkeyFormat::CURRENT`], which is why both kinds
//! of key can share a bset.

use core::fmt;

use super::bpos::{BVersion, Bpos, POS_MAX};
use super::val::ValError;
use crate::errcode::{AllocError, Errno};

/// Size of `struct bkey` in u64s (`BKEY_U64s`).
pub const BKEY_U64S: usize = 5;
/// Size of `struct bkey` in bytes.
pub const BKEY_BYTES: usize = BKEY_U64S * 8;
/// Largest `u64s` of any key (`BKEY_U64s_MAX`).
pub const BKEY_U64S_MAX: usize = u8::MAX as usize;
/// Largest value, in u64s (`BKEY_VAL_U64s_MAX`).
pub const BKEY_VAL_U64S_MAX: usize = BKEY_U64S_MAX - BKEY_U64S;
/// Bits of the packed header below the key fields (`KEY_PACKED_BITS_START`).
pub const KEY_PACKED_BITS_START: u32 = 24;
/// `format` of a key packed with the node's format.
pub const KEY_FORMAT_LOCAL_BTREE: u8 = 0;
/// `format` of an unpacked key.
pub const KEY_FORMAT_CURRENT: u8 = 1;
/// Number of packed fields (`BKEY_NR_FIELDS`).
pub const BKEY_NR_FIELDS: usize = 6;
/// Size of an on-disk `struct bkey_format`, bytes.
pub const BKEY_FORMAT_BYTES: usize = 56;
/// Deepest btree (`BTREE_MAX_DEPTH`).
pub const BTREE_MAX_DEPTH: u8 = 4;

macro_rules! key_types {
    ($($variant:ident = $nr:literal, $name:literal;)*) => {
        /// A key type (`enum bch_bkey_type`, `KEY_TYPE_*`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum KeyType {
            $(
                #[doc = concat!("`KEY_TYPE_", $name, "` = ", stringify!($nr), ".")]
                $variant = $nr,
            )*
        }

        /// Names of the key types as C prints them (`bch2_bkey_types[]`),
        /// indexed by number.
        pub const KEY_TYPE_NAMES: &[&str] = &[$($name,)*];

        impl KeyType {
            /// The key type numbered `v`, if 6.12 has one.
            pub fn from_u8(v: u8) -> Option<KeyType> {
                match v {
                    $($nr => Some(KeyType::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

key_types! {
    Deleted = 0, "deleted";
    Whiteout = 1, "whiteout";
    Error = 2, "error";
    Cookie = 3, "cookie";
    HashWhiteout = 4, "hash_whiteout";
    BtreePtr = 5, "btree_ptr";
    Extent = 6, "extent";
    Reservation = 7, "reservation";
    Inode = 8, "inode";
    InodeGeneration = 9, "inode_generation";
    Dirent = 10, "dirent";
    Xattr = 11, "xattr";
    Alloc = 12, "alloc";
    Quota = 13, "quota";
    Stripe = 14, "stripe";
    ReflinkP = 15, "reflink_p";
    ReflinkV = 16, "reflink_v";
    InlineData = 17, "inline_data";
    BtreePtrV2 = 18, "btree_ptr_v2";
    IndirectInlineData = 19, "indirect_inline_data";
    AllocV2 = 20, "alloc_v2";
    Subvolume = 21, "subvolume";
    Snapshot = 22, "snapshot";
    InodeV2 = 23, "inode_v2";
    AllocV3 = 24, "alloc_v3";
    Set = 25, "set";
    Lru = 26, "lru";
    AllocV4 = 27, "alloc_v4";
    Backpointer = 28, "backpointer";
    InodeV3 = 29, "inode_v3";
    BucketGens = 30, "bucket_gens";
    SnapshotTree = 31, "snapshot_tree";
    LoggedOpTruncate = 32, "logged_op_truncate";
    LoggedOpFinsert = 33, "logged_op_finsert";
    Accounting = 34, "accounting";
}

/// `KEY_TYPE_MAX`: one past the last key type.
pub const KEY_TYPE_MAX: u8 = KEY_TYPE_NAMES.len() as u8;

impl KeyType {
    /// The name C prints.
    pub fn name(self) -> &'static str {
        KEY_TYPE_NAMES[self as usize]
    }

    /// The bit of this type in an allowed-types mask.
    pub const fn bit(self) -> u64 {
        1 << self as u8
    }
}

/// Prints a key type number as `bch2_bkey_to_text()` does: the name, or the
/// number for types 6.12 does not know.
pub struct KeyTypeName(pub u8);

impl fmt::Display for KeyTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match KeyType::from_u8(self.0) {
            Some(t) => f.write_str(t.name()),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Flags of a btree (`enum btree_id_flags`).
pub mod btree_flags {
    /// `BTREE_ID_EXTENTS`: keys are extents, positioned at their end.
    pub const EXTENTS: u8 = 1 << 0;
    /// `BTREE_ID_SNAPSHOTS`: keys carry a nonzero snapshot id.
    pub const SNAPSHOTS: u8 = 1 << 1;
    /// `BTREE_ID_SNAPSHOT_FIELD`: the snapshot field is used but may be 0.
    pub const SNAPSHOT_FIELD: u8 = 1 << 2;
    /// `BTREE_ID_DATA`: keys point to user data.
    pub const DATA: u8 = 1 << 3;
}

macro_rules! btree_ids {
    ($($variant:ident = $nr:literal, $name:literal, $flags:expr, [$($kt:ident),*];)*) => {
        /// A btree (`enum btree_id`, `BCH_BTREE_IDS()`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum BtreeId {
            $(
                #[doc = concat!("`BTREE_ID_", $name, "` = ", stringify!($nr), ".")]
                $variant = $nr,
            )*
        }

        /// The btree table: name as C names it, flags
        /// ([`btree_flags`]) and the key types allowed in its leaves
        /// besides `deleted`.
        pub const BTREE_IDS: &[(&str, u8, u64)] = &[
            $(($name, $flags, 0 $(| KeyType::$kt.bit())*),)*
        ];

        impl BtreeId {
            /// The btree numbered `v`, if 6.12 has one.
            pub fn from_u32(v: u32) -> Option<BtreeId> {
                match v {
                    $($nr => Some(BtreeId::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

use btree_flags::{DATA, EXTENTS, SNAPSHOTS, SNAPSHOT_FIELD};

btree_ids! {
    Extents = 0, "extents", EXTENTS | SNAPSHOTS | DATA,
        [Whiteout, Error, Cookie, Extent, Reservation, ReflinkP, InlineData];
    Inodes = 1, "inodes", SNAPSHOTS, [Whiteout, Inode, InodeV2, InodeV3, InodeGeneration];
    Dirents = 2, "dirents", SNAPSHOTS, [Whiteout, HashWhiteout, Dirent];
    Xattrs = 3, "xattrs", SNAPSHOTS, [Whiteout, Cookie, HashWhiteout, Xattr];
    Alloc = 4, "alloc", 0, [Alloc, AllocV2, AllocV3, AllocV4];
    Quotas = 5, "quotas", 0, [Quota];
    Stripes = 6, "stripes", 0, [Stripe];
    Reflink = 7, "reflink", EXTENTS | DATA, [ReflinkV, IndirectInlineData, Error];
    Subvolumes = 8, "subvolumes", 0, [Subvolume];
    Snapshots = 9, "snapshots", 0, [Snapshot];
    Lru = 10, "lru", 0, [Set];
    Freespace = 11, "freespace", EXTENTS, [Set];
    NeedDiscard = 12, "need_discard", 0, [Set];
    Backpointers = 13, "backpointers", 0, [Backpointer];
    BucketGens = 14, "bucket_gens", 0, [BucketGens];
    SnapshotTrees = 15, "snapshot_trees", 0, [SnapshotTree];
    DeletedInodes = 16, "deleted_inodes", SNAPSHOT_FIELD, [Set];
    LoggedOps = 17, "logged_ops", 0, [LoggedOpTruncate, LoggedOpFinsert];
    RebalanceWork = 18, "rebalance_work", SNAPSHOT_FIELD, [Set, Cookie];
    SubvolumeChildren = 19, "subvolume_children", 0, [Set];
    Accounting = 20, "accounting", SNAPSHOT_FIELD, [Accounting];
}

/// `BTREE_ID_NR`.
pub const BTREE_ID_NR: u32 = BTREE_IDS.len() as u32;

/// Key types allowed in interior nodes besides `deleted`.
pub const INTERIOR_KEY_TYPES: u64 = KeyType::BtreePtr.bit() | KeyType::BtreePtrV2.bit();

impl BtreeId {
    /// The name C prints (`bch2_btree_id_str()`).
    pub fn name(self) -> &'static str {
        BTREE_IDS[self as usize].0
    }

    /// The [`btree_flags`] of this btree.
    pub fn flags(self) -> u8 {
        BTREE_IDS[self as usize].1
    }

    /// The btree named `name` (as `-b` takes it), if any.
    pub fn from_name(name: &str) -> Option<BtreeId> {
        let i = BTREE_IDS.iter().position(|b| b.0 == name)?;
        BtreeId::from_u32(i as u32)
    }
}

/// Prints a btree id number as `bch2_btree_id_str()` does.
pub struct BtreeIdName(pub u32);

impl fmt::Display for BtreeIdName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match BtreeId::from_u32(self.0) {
            Some(b) => f.write_str(b.name()),
            None => f.write_str("(unknown)"),
        }
    }
}

/// What kind of node a key lives in (`enum btree_node_type`): interior
/// nodes hold btree pointers whatever the btree; leaves hold the btree's
/// own key types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    /// `BKEY_TYPE_btree`: an interior node (level > 0).
    Interior,
    /// A leaf of the btree with this id (which may be one 6.12 lacks).
    Leaf(u32),
}

impl NodeType {
    /// `__btree_node_type(level, btree_id)`.
    pub fn new(level: u8, btree_id: u32) -> NodeType {
        if level > 0 {
            NodeType::Interior
        } else {
            NodeType::Leaf(btree_id)
        }
    }

    /// `btree_node_type_is_extents()`.
    pub fn is_extents(self) -> bool {
        match self {
            NodeType::Interior => false,
            NodeType::Leaf(id) => BtreeId::from_u32(id).is_some_and(|b| b.flags() & EXTENTS != 0),
        }
    }
}

/// Why a key, its format or its value was rejected.  Messages follow the
/// C ones (`bkey_methods.c`, `btree_io.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Fewer bytes than the key header or the key itself needs.
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// `u64s` is 0.
    U64sZero,
    /// `format` is neither 0 (packed) nor 1 (unpacked).
    BadFormat(u8),
    /// `u64s` is smaller than the key part or leaves more than
    /// `BKEY_VAL_U64s_MAX` for the value (`bkeyp_u64s_valid()`).
    BadU64s {
        /// `u64s`.
        u64s: u8,
        /// Key part, in u64s.
        key_u64s: u8,
    },
    /// The unpacked key is shorter than `struct bkey`.
    U64sTooSmall(u8),
    /// A field does not fit the format it is being packed with.
    Unpackable {
        /// Index of the field ([`BkeyField`] order).
        field: u8,
    },
    /// The output buffer is too small.
    NoRoom,
    /// The key format is invalid.
    Format(FormatError),
    /// The key type may not appear in this btree or node.
    InvalidTypeForBtree {
        /// Key type.
        ty: u8,
        /// Node type.
        node: NodeType,
    },
    /// An extent of size 0.
    ExtentSizeZero,
    /// An extent larger than its end offset.
    SizeGreaterThanOffset {
        /// `size`.
        size: u32,
        /// `p.offset`.
        offset: u64,
    },
    /// A non-extent key with nonzero size.
    SizeNonzero,
    /// Snapshot 0 in a btree with snapshots.
    SnapshotZero,
    /// Nonzero snapshot in a btree without snapshots.
    SnapshotNonzero,
    /// A leaf key at `POS_MAX`.
    AtPosMax,
    /// A key before the node's `min_key`.
    BeforeNode,
    /// A key after the node's `max_key`.
    AfterNode,
    /// The value is smaller than the type's minimum (`min_val_size`).
    ValTooSmall {
        /// Key type.
        ty: u8,
        /// Value bytes.
        bytes: usize,
        /// Minimum bytes.
        min: usize,
    },
    /// The value failed its type's checks.
    Val {
        /// Key type.
        ty: u8,
        /// What is wrong.
        err: ValError,
    },
    /// Out of memory.
    NoMem,
}

impl From<AllocError> for KeyError {
    fn from(_: AllocError) -> KeyError {
        KeyError::NoMem
    }
}

impl From<FormatError> for KeyError {
    fn from(e: FormatError) -> KeyError {
        KeyError::Format(e)
    }
}

impl KeyError {
    /// The error number for the VFS: `ENOMEM`, else `EUCLEAN` (on-disk
    /// metadata is inconsistent).
    pub fn errno(&self) -> Errno {
        match self {
            KeyError::NoMem => Errno::ENOMEM,
            _ => Errno::EUCLEAN,
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KeyError::Truncated { need, have } => {
                write!(f, "key truncated: need {need} bytes, have {have}")
            }
            KeyError::U64sZero => f.write_str("k->u64s 0"),
            KeyError::BadFormat(v) => write!(f, "invalid bkey format {v}"),
            KeyError::BadU64s { u64s, key_u64s } => write!(
                f,
                "bad k->u64s {u64s} (min {key_u64s} max {})",
                BKEY_VAL_U64S_MAX + key_u64s as usize
            ),
            KeyError::U64sTooSmall(u) => write!(f, "u64s too small ({u} < {BKEY_U64S})"),
            KeyError::Unpackable { field } => {
                write!(f, "field {} does not fit the key format", BkeyField::name(field))
            }
            KeyError::NoRoom => f.write_str("no room for the key"),
            KeyError::Format(e) => write!(f, "invalid bkey format: {e}"),
            KeyError::InvalidTypeForBtree { ty, node } => {
                f.write_str("invalid key type for btree ")?;
                match node {
                    NodeType::Interior => f.write_str("internal btree node")?,
                    NodeType::Leaf(id) => write!(f, "{}", BtreeIdName(id))?,
                }
                match KeyType::from_u8(ty) {
                    Some(t) => write!(f, " ({})", t.name()),
                    None => f.write_str(" ((unknown))"),
                }
            }
            KeyError::ExtentSizeZero => f.write_str("size == 0"),
            KeyError::SizeGreaterThanOffset { size, offset } => {
                write!(f, "size greater than offset ({size} > {offset})")
            }
            KeyError::SizeNonzero => f.write_str("size != 0"),
            KeyError::SnapshotZero => f.write_str("snapshot == 0"),
            KeyError::SnapshotNonzero => f.write_str("nonzero snapshot"),
            KeyError::AtPosMax => f.write_str("key at POS_MAX"),
            KeyError::BeforeNode => f.write_str("key before start of btree node"),
            KeyError::AfterNode => f.write_str("key past end of btree node"),
            KeyError::ValTooSmall { ty, bytes, min } => {
                write!(f, "{}: bad val size ({bytes} < {min})", KeyTypeName(ty))
            }
            KeyError::Val { ty, err } => write!(f, "{}: {err}", KeyTypeName(ty)),
            KeyError::NoMem => f.write_str("out of memory"),
        }
    }
}

/// The packed fields, in packing order (`enum bch_bkey_fields`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BkeyField {
    /// `p.inode`.
    Inode = 0,
    /// `p.offset`.
    Offset = 1,
    /// `p.snapshot`.
    Snapshot = 2,
    /// `size`.
    Size = 3,
    /// `bversion.hi`.
    VersionHi = 4,
    /// `bversion.lo`.
    VersionLo = 5,
}

impl BkeyField {
    /// Width of each field unpacked, in bits, in field order.
    pub const UNPACKED_BITS: [u8; BKEY_NR_FIELDS] = [64, 64, 32, 32, 32, 64];

    /// Name of field `i`, for messages.
    pub fn name(i: u8) -> &'static str {
        match i {
            0 => "inode",
            1 => "offset",
            2 => "snapshot",
            3 => "size",
            4 => "version_hi",
            5 => "version_lo",
            _ => "(unknown field)",
        }
    }
}

/// An owned key and its value (C's `struct bkey_i`, unpacked): what a
/// transaction queues, the journal copies and a node holds in memory.
#[derive(Debug)]
pub struct BkeyI {
    /// The key (position, size, type, version).
    pub k: Bkey,
    /// The value, `k.val_bytes()` long.
    pub v: crate::platform::Vec<u8>,
}

/// An unpacked key (`struct bkey`), in CPU order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bkey {
    /// Size of key plus value, in u64s: the key part is [`BKEY_U64S`].
    pub u64s: u8,
    /// In-memory hint kept on disk: a whiteout is needed when this key is
    /// deleted.  Writers clear it.
    pub needs_whiteout: bool,
    /// Key type (a [`KeyType`] number).
    pub key_type: u8,
    /// Version.
    pub version: BVersion,
    /// Extent size, in 512-byte sectors; 0 for non-extents.
    pub size: u32,
    /// Position.
    pub p: Bpos,
}

impl Bkey {
    /// A key of type `ty` at `p` with a value of `val_u64s` u64s.
    pub fn new(ty: KeyType, p: Bpos, val_u64s: usize) -> Bkey {
        Bkey {
            u64s: (BKEY_U64S + val_u64s.min(BKEY_VAL_U64S_MAX)) as u8,
            key_type: ty as u8,
            p,
            ..Bkey::default()
        }
    }

    /// Size of the value, in u64s (`bkey_val_u64s()`); 0 if `u64s` is
    /// smaller than the key.
    pub fn val_u64s(&self) -> usize {
        (self.u64s as usize).saturating_sub(BKEY_U64S)
    }

    /// Size of the value, in bytes.
    pub fn val_bytes(&self) -> usize {
        self.val_u64s() * 8
    }

    /// `bkey_deleted()`: type `deleted`.
    pub fn is_deleted(&self) -> bool {
        self.key_type == KeyType::Deleted as u8
    }

    /// `bkey_whiteout()`: type `deleted` or `whiteout`.
    pub fn is_whiteout(&self) -> bool {
        self.key_type == KeyType::Deleted as u8 || self.key_type == KeyType::Whiteout as u8
    }

    /// `bkey_start_offset()`: for extents, where the extent starts.
    pub fn start_offset(&self) -> u64 {
        self.p.offset.saturating_sub(u64::from(self.size))
    }

    /// Decodes an unpacked key from its 40 bytes.  `format` is not
    /// checked; [`KeyRef::parse`] does that.
    pub fn from_bytes(b: &[u8; BKEY_BYTES]) -> Bkey {
        let mut v = [0u8; 12];
        v.copy_from_slice(&b[4..16]);
        let mut p = [0u8; 20];
        p.copy_from_slice(&b[20..40]);
        Bkey {
            u64s: b[0],
            needs_whiteout: b[1] & 0x80 != 0,
            key_type: b[2],
            version: BVersion::from_bytes(&v),
            size: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
            p: Bpos::from_bytes(&p),
        }
    }

    /// Encodes as the 40 bytes of an unpacked key (format 1).
    pub fn to_bytes(&self) -> [u8; BKEY_BYTES] {
        let mut b = [0u8; BKEY_BYTES];
        b[0] = self.u64s;
        b[1] = KEY_FORMAT_CURRENT | if self.needs_whiteout { 0x80 } else { 0 };
        b[2] = self.key_type;
        b[4..16].copy_from_slice(&self.version.to_bytes());
        b[16..20].copy_from_slice(&self.size.to_le_bytes());
        b[20..40].copy_from_slice(&self.p.to_bytes());
        b
    }

    /// The value of field `i` ([`BkeyField`] order).
    pub fn field(&self, i: usize) -> u64 {
        match i {
            0 => self.p.inode,
            1 => self.p.offset,
            2 => u64::from(self.p.snapshot),
            3 => u64::from(self.size),
            4 => u64::from(self.version.hi),
            _ => self.version.lo,
        }
    }

    fn set_field(&mut self, i: usize, v: u64) {
        // Fields narrower than 64 bits keep their low bits, as the C
        // assignment to a u32 does.
        match i {
            0 => self.p.inode = v,
            1 => self.p.offset = v,
            2 => self.p.snapshot = v as u32,
            3 => self.size = v as u32,
            4 => self.version.hi = v as u32,
            _ => self.version.lo = v,
        }
    }

    /// `__bch2_bkey_validate()`: checks that do not depend on the value:
    /// size, allowed type for the node, extent size rules, snapshot field
    /// rules and `POS_MAX`.  `commit` adds the type check C makes for
    /// updates (`BCH_VALIDATE_commit`) to leaf keys.
    pub fn validate(&self, node: NodeType, commit: bool) -> Result<(), KeyError> {
        if (self.u64s as usize) < BKEY_U64S {
            return Err(KeyError::U64sTooSmall(self.u64s));
        }
        let allowed = match node {
            NodeType::Interior => Some(INTERIOR_KEY_TYPES),
            NodeType::Leaf(id) => BtreeId::from_u32(id).map(|b| BTREE_IDS[b as usize].2),
        };
        let Some(allowed) = allowed else {
            // A btree 6.12 does not know: only the size check applies.
            return Ok(());
        };
        let allowed = allowed | KeyType::Deleted.bit();
        if self.key_type < KEY_TYPE_MAX
            && (node == NodeType::Interior || commit)
            && allowed & (1u64 << self.key_type) == 0
        {
            return Err(KeyError::InvalidTypeForBtree { ty: self.key_type, node });
        }
        if node.is_extents() && !self.is_whiteout() {
            if self.size == 0 {
                return Err(KeyError::ExtentSizeZero);
            }
            if u64::from(self.size) > self.p.offset {
                return Err(KeyError::SizeGreaterThanOffset { size: self.size, offset: self.p.offset });
            }
        } else if self.size != 0 {
            return Err(KeyError::SizeNonzero);
        }
        if let NodeType::Leaf(id) = node {
            // `allowed` above exists, so the btree is known.
            let flags = BtreeId::from_u32(id).map_or(0, |b| b.flags());
            if flags & SNAPSHOTS != 0 {
                if self.p.snapshot == 0 {
                    return Err(KeyError::SnapshotZero);
                }
            } else if flags & SNAPSHOT_FIELD == 0 && self.p.snapshot != 0 {
                return Err(KeyError::SnapshotNonzero);
            }
            if self.p.cmp_no_snapshot(&POS_MAX).is_eq() {
                return Err(KeyError::AtPosMax);
            }
        }
        Ok(())
    }
}

/// Unpacked keys with their values, one after the other in one buffer:
/// 40 bytes of `struct bkey` (its `u64s` covering the value), then the
/// value.  Each key is addressed by the byte offset [`UnpackedKeys::push`]
/// returned.  The btree node cache, the journal keys and the tool's
/// listing keep their keys this way.
#[derive(Debug, Default)]
pub struct UnpackedKeys {
    data: crate::platform::Vec<u8>,
}

impl UnpackedKeys {
    /// No keys.
    pub fn new() -> Self {
        UnpackedKeys { data: crate::platform::Vec::new() }
    }

    /// Appends `k` with value `v` (`k.u64s` is set from `v.len()`) and
    /// returns its offset.  Errors: `AllocError` when memory is short or
    /// the buffer would pass 4 GiB.
    pub fn push(&mut self, k: &Bkey, v: &[u8]) -> Result<u32, AllocError> {
        let at = u32::try_from(self.data.len()).map_err(|_| AllocError)?;
        let mut k = *k;
        k.u64s = (BKEY_U64S + v.len() / 8).min(BKEY_U64S_MAX) as u8;
        self.data.extend_from_slice(&k.to_bytes())?;
        self.data.extend_from_slice(v)?;
        Ok(at)
    }

    /// The key at offset `at` and its value; `None` if `at` is not inside.
    pub fn get(&self, at: u32) -> Option<(Bkey, &[u8])> {
        let at = at as usize;
        let kb = self.data.get(at..at.checked_add(BKEY_BYTES)?)?;
        let mut b = [0u8; BKEY_BYTES];
        b.copy_from_slice(kb);
        let k = Bkey::from_bytes(&b);
        let v = self.data.get(at + BKEY_BYTES..at + BKEY_BYTES + k.val_bytes())?;
        Some((k, v))
    }

    /// How the position of the key at offset `at` compares with `pos`
    /// (a key past the buffer's end compares as `Bpos::default()`): reads
    /// the inode first and the rest only on a tie, for binary searches.
    #[inline]
    pub fn cmp_pos(&self, at: u32, pos: &Bpos) -> core::cmp::Ordering {
        let at = at as usize + 20;
        let Some(b) = self.data.get(at..at + 20) else { return Bpos::default().cmp(pos) };
        let word = |r: core::ops::Range<usize>| {
            let mut w = [0u8; 8];
            w[..r.len()].copy_from_slice(&b[r]);
            u64::from_le_bytes(w)
        };
        word(12..20)
            .cmp(&pos.inode)
            .then_with(|| word(4..12).cmp(&pos.offset))
            .then_with(|| word(0..4).cmp(&u64::from(pos.snapshot)))
    }

    /// Just the position of the key at offset `at`.
    pub fn pos(&self, at: u32) -> Option<Bpos> {
        Bpos::read(&self.data, (at as usize).checked_add(20)?)
    }

    /// Bytes held.
    pub fn len_bytes(&self) -> usize {
        self.data.len()
    }

    /// Reserves room for `n` more bytes.  Errors: `AllocError`.
    pub fn reserve(&mut self, n: usize) -> Result<(), AllocError> {
        self.data.reserve(n)
    }
}

impl fmt::Display for Bkey {
    /// `bch2_bkey_to_text()`: `u64s N type T inode:offset:snapshot len L
    /// ver V`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "u64s {} type {} {} len {} ver {}",
            self.u64s,
            KeyTypeName(self.key_type),
            self.p,
            self.size,
            self.version.lo
        )
    }
}

/// Why a key format was rejected (`bch2_bkey_format_invalid()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// `nr_fields` is not 6.
    NrFields(u8),
    /// A field can hold values larger than its unpacked width.
    FieldTooLarge {
        /// Field index.
        field: u8,
        /// Bits of the field.
        bits: u8,
        /// Its offset.
        offset: u64,
    },
    /// `key_u64s` does not match the field widths.
    KeyU64s {
        /// `key_u64s` in the format.
        got: u8,
        /// What the widths add up to.
        want: u8,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FormatError::NrFields(n) => {
                write!(f, "incorrect number of fields: got {n}, should be {BKEY_NR_FIELDS}")
            }
            FormatError::FieldTooLarge { field, bits, offset } => {
                let unpacked = BkeyField::UNPACKED_BITS[field as usize % BKEY_NR_FIELDS];
                write!(
                    f,
                    "field {field} too large: {} + {offset} > {}",
                    low_mask(bits.min(64) as u32),
                    low_mask(unpacked as u32)
                )
            }
            FormatError::KeyU64s { got, want } => {
                write!(f, "incorrect key_u64s: got {got}, should be {want}")
            }
        }
    }
}

/// `n` low bits set, for `n` in 0..=64.
fn low_mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// `fls64()`: index of the highest set bit plus one, 0 for 0.
fn fls64(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// A key format (`struct bkey_format`): for each of the six fields, its
/// width in bits and the offset subtracted before packing.
///
/// On disk (56 bytes): `key_u64s` (u8: the key part of a packed key, in
/// u64s, header included), `nr_fields` (u8, always 6), `bits_per_field[6]`
/// (u8), `field_offset[6]` (u64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BkeyFormat {
    /// Key part of a packed key, in u64s (header included).
    pub key_u64s: u8,
    /// Number of fields: 6.
    pub nr_fields: u8,
    /// Width of each field, bits.
    pub bits_per_field: [u8; BKEY_NR_FIELDS],
    /// Offset of each field.
    pub field_offset: [u64; BKEY_NR_FIELDS],
}

impl BkeyFormat {
    /// `BKEY_FORMAT_CURRENT`: the format of unpacked keys.
    pub const CURRENT: BkeyFormat = BkeyFormat {
        key_u64s: BKEY_U64S as u8,
        nr_fields: BKEY_NR_FIELDS as u8,
        bits_per_field: BkeyField::UNPACKED_BITS,
        field_offset: [0; BKEY_NR_FIELDS],
    };

    /// Decodes the 56 on-disk bytes.  The result is not validated.
    pub fn from_bytes(b: &[u8; BKEY_FORMAT_BYTES]) -> BkeyFormat {
        let mut bits = [0u8; BKEY_NR_FIELDS];
        bits.copy_from_slice(&b[2..8]);
        let mut off = [0u64; BKEY_NR_FIELDS];
        for (i, o) in off.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[8 + 8 * i..16 + 8 * i]);
            *o = u64::from_le_bytes(w);
        }
        BkeyFormat { key_u64s: b[0], nr_fields: b[1], bits_per_field: bits, field_offset: off }
    }

    /// Encodes as the 56 on-disk bytes.
    pub fn to_bytes(&self) -> [u8; BKEY_FORMAT_BYTES] {
        let mut b = [0u8; BKEY_FORMAT_BYTES];
        b[0] = self.key_u64s;
        b[1] = self.nr_fields;
        b[2..8].copy_from_slice(&self.bits_per_field);
        for (i, o) in self.field_offset.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&o.to_le_bytes());
        }
        b
    }

    /// `bch2_bkey_format_field_overflows()`: whether field `i` can hold a
    /// value wider than its unpacked width.
    pub fn field_overflows(&self, i: usize) -> bool {
        let bits = self.bits_per_field[i] as u32;
        let unpacked = BkeyField::UNPACKED_BITS[i] as u32;
        let offset = self.field_offset[i];
        if bits > unpacked || (bits == unpacked && offset != 0) {
            return true;
        }
        let umask = low_mask(unpacked);
        (offset.wrapping_add(low_mask(bits)) & umask) < offset
    }

    /// `bch2_bkey_format_invalid()`: six fields, none able to overflow its
    /// unpacked width, and `key_u64s` matching the widths.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.nr_fields as usize != BKEY_NR_FIELDS {
            return Err(FormatError::NrFields(self.nr_fields));
        }
        let mut bits = KEY_PACKED_BITS_START;
        for i in 0..BKEY_NR_FIELDS {
            if self.field_overflows(i) {
                return Err(FormatError::FieldTooLarge {
                    field: i as u8,
                    bits: self.bits_per_field[i],
                    offset: self.field_offset[i],
                });
            }
            bits += self.bits_per_field[i] as u32;
        }
        let want = bits.div_ceil(64) as u8;
        if self.key_u64s != want {
            return Err(FormatError::KeyU64s { got: self.key_u64s, want });
        }
        Ok(())
    }

    /// Bits of the position fields (`bkey_format_key_bits()`).
    pub fn key_bits(&self) -> u32 {
        self.bits_per_field[..3].iter().map(|&b| b as u32).sum()
    }

    /// `bkey_field_max()`: the largest value field `i` can hold.
    pub fn field_max(&self, i: usize) -> u64 {
        let bits = self.bits_per_field[i] as u32;
        if bits < 64 {
            self.field_offset[i].wrapping_add(low_mask(bits))
        } else {
            u64::MAX
        }
    }

    /// Unpacks the key part of a packed key (`__bch2_bkey_unpack_key()`).
    ///
    /// `k` is the packed key from its first byte; it must hold at least
    /// `key_u64s * 8` bytes.  The format should have passed
    /// [`validate`](Self::validate): an invalid one gives a meaningless key
    /// but never a panic.  The result has `format` 1 semantics: `u64s` is
    /// that of the unpacked key.
    ///
    /// Errors: [`KeyError::Truncated`] when `k` is too short.
    #[inline]
    pub fn unpack_key(&self, k: &[u8]) -> Result<Bkey, KeyError> {
        let need = self.key_u64s as usize * 8;
        if k.len() < need.max(3) {
            return Err(KeyError::Truncated { need: need.max(3), have: k.len() });
        }
        let mut r = BitReader::new(k, self.key_u64s as usize);
        let mut out = Bkey {
            u64s: (BKEY_U64S + k[0] as usize).saturating_sub(self.key_u64s as usize).min(255) as u8,
            needs_whiteout: k[1] & 0x80 != 0,
            key_type: k[2],
            ..Bkey::default()
        };
        for i in 0..BKEY_NR_FIELDS {
            let v = r.get(self.bits_per_field[i] as u32).wrapping_add(self.field_offset[i]);
            out.set_field(i, v);
        }
        Ok(out)
    }

    /// Unpacks only the position of a packed key (`__bkey_unpack_pos()`).
    #[inline]
    pub fn unpack_pos(&self, k: &[u8]) -> Result<Bpos, KeyError> {
        let need = self.key_u64s as usize * 8;
        if k.len() < need {
            return Err(KeyError::Truncated { need, have: k.len() });
        }
        let mut r = BitReader::new(k, self.key_u64s as usize);
        let inode = r.get(self.bits_per_field[0] as u32).wrapping_add(self.field_offset[0]);
        let offset = r.get(self.bits_per_field[1] as u32).wrapping_add(self.field_offset[1]);
        let snapshot = r.get(self.bits_per_field[2] as u32).wrapping_add(self.field_offset[2]);
        Ok(Bpos { inode, offset, snapshot: snapshot as u32 })
    }

    /// Packs the key part of `k` (`bch2_bkey_pack_key()`) into the start of
    /// `out`, which must hold `key_u64s * 8` bytes; writes the header
    /// (`u64s` adjusted for the packed key part, format 0) and returns the
    /// number of bytes written.  The value is not copied.
    ///
    /// Errors: [`KeyError::Unpackable`] when a field is below its offset or
    /// too wide; [`KeyError::NoRoom`] when `out` is too small.
    #[inline]
    pub fn pack_key(&self, k: &Bkey, out: &mut [u8]) -> Result<usize, KeyError> {
        let n = self.key_u64s as usize;
        let bytes = n * 8;
        let dst = out.get_mut(..bytes.max(8)).ok_or(KeyError::NoRoom)?;
        let packed_u64s = (k.u64s as usize + n)
            .checked_sub(BKEY_U64S)
            .filter(|&u| u <= BKEY_U64S_MAX)
            .ok_or(KeyError::BadU64s { u64s: k.u64s, key_u64s: BKEY_U64S as u8 })?;
        let mut w = BitWriter::new(dst, n);
        for i in 0..BKEY_NR_FIELDS {
            let bits = self.bits_per_field[i] as u32;
            let v = k
                .field(i)
                .checked_sub(self.field_offset[i])
                .filter(|&v| fls64(v) <= bits)
                .ok_or(KeyError::Unpackable { field: i as u8 })?;
            w.put(v, bits);
        }
        w.finish();
        dst[0] = packed_u64s as u8;
        dst[1] = KEY_FORMAT_LOCAL_BTREE | if k.needs_whiteout { 0x80 } else { 0 };
        dst[2] = k.key_type;
        Ok(bytes)
    }

    /// Whether every field of `k` fits this format.
    pub fn can_pack(&self, k: &Bkey) -> bool {
        (0..BKEY_NR_FIELDS).all(|i| {
            k.field(i)
                .checked_sub(self.field_offset[i])
                .is_some_and(|v| fls64(v) <= self.bits_per_field[i] as u32)
        })
    }
}

impl fmt::Display for BkeyFormat {
    /// `bch2_bkey_format_to_text()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "u64s {} fields ", self.key_u64s)?;
        for i in 0..BKEY_NR_FIELDS {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}:{}", self.bits_per_field[i], self.field_offset[i])?;
        }
        Ok(())
    }
}

/// Reads packed fields from the most significant end of the key words.
struct BitReader<'a> {
    k: &'a [u8],
    /// Index of the word `w` came from.
    idx: usize,
    /// Current word, consumed bits shifted out at the top.
    w: u64,
    /// Unconsumed bits left in `w`.
    bits: u32,
}

#[inline]
fn word_at(k: &[u8], idx: usize) -> u64 {
    match k.get(idx * 8..idx * 8 + 8) {
        Some(s) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(s);
            u64::from_le_bytes(b)
        }
        None => 0,
    }
}

/// The top `n` bits of `w`, for `n` in 0..=64.
#[inline]
fn top_bits(w: u64, n: u32) -> u64 {
    if n == 0 {
        0
    } else {
        w >> (64 - n)
    }
}

impl<'a> BitReader<'a> {
    #[inline]
    fn new(k: &'a [u8], key_u64s: usize) -> Self {
        let idx = key_u64s.saturating_sub(1);
        BitReader { k, idx, w: word_at(k, idx), bits: 64 }
    }

    /// The next `n` bits (n <= 64 for valid formats; wider fields read as
    /// their low 64 bits).
    #[inline]
    fn get(&mut self, n: u32) -> u64 {
        let mut n = n.min(64);
        let mut v = 0u64;
        if n >= self.bits {
            v = top_bits(self.w, self.bits);
            n -= self.bits;
            // Past the first word there is nothing: a format that claims
            // more bits than key_u64s holds reads zeroes.
            self.w = match self.idx.checked_sub(1) {
                Some(i) => {
                    self.idx = i;
                    word_at(self.k, i)
                }
                None => 0,
            };
            self.bits = 64;
            v = if n == 64 { 0 } else { v << n };
        }
        v |= top_bits(self.w, n);
        self.w = if n >= 64 { 0 } else { self.w << n };
        self.bits -= n;
        v
    }
}

/// Writes packed fields from the most significant end of the key words.
struct BitWriter<'a> {
    out: &'a mut [u8],
    idx: Option<usize>,
    w: u64,
    bits: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut [u8], key_u64s: usize) -> Self {
        out.iter_mut().for_each(|b| *b = 0);
        BitWriter { out, idx: key_u64s.checked_sub(1), w: 0, bits: 64 }
    }

    fn store(&mut self) {
        if let Some(i) = self.idx {
            if let Some(s) = self.out.get_mut(i * 8..i * 8 + 8) {
                s.copy_from_slice(&self.w.to_le_bytes());
            }
        }
    }

    /// Appends the low `n` bits of `v` (`v < 2^n`).
    fn put(&mut self, v: u64, n: u32) {
        let mut n = n.min(64);
        if n == 0 {
            return;
        }
        if n > self.bits {
            let over = n - self.bits;
            self.w |= if over >= 64 { 0 } else { v >> over };
            self.store();
            self.idx = self.idx.and_then(|i| i.checked_sub(1));
            self.w = 0;
            self.bits = 64;
            n = over;
        }
        self.bits -= n;
        self.w |= if self.bits >= 64 { 0 } else { v << self.bits };
    }

    fn finish(&mut self) {
        self.store();
    }
}

/// Collects field ranges to build a format that packs a set of keys as
/// tightly as C does (`struct bkey_format_state`).
#[derive(Clone, Copy, Debug)]
pub struct BkeyFormatBuilder {
    min: [u64; BKEY_NR_FIELDS],
    max: [u64; BKEY_NR_FIELDS],
}

impl Default for BkeyFormatBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BkeyFormatBuilder {
    /// `bch2_bkey_format_init()`: empty ranges, and room for size 0.
    pub fn new() -> Self {
        let mut min = [u64::MAX; BKEY_NR_FIELDS];
        min[BkeyField::Size as usize] = 0;
        BkeyFormatBuilder { min, max: [0; BKEY_NR_FIELDS] }
    }

    fn add(&mut self, i: usize, v: u64) {
        self.min[i] = self.min[i].min(v);
        self.max[i] = self.max[i].max(v);
    }

    /// `bch2_bkey_format_add_key()`.
    pub fn add_key(&mut self, k: &Bkey) {
        for i in 0..BKEY_NR_FIELDS {
            self.add(i, k.field(i));
        }
    }

    /// `bch2_bkey_format_add_pos()`.
    pub fn add_pos(&mut self, p: Bpos) {
        self.add(0, p.inode);
        self.add(1, p.offset);
        self.add(2, u64::from(p.snapshot));
    }

    fn set_field(f: &mut BkeyFormat, i: usize, bits: u32, offset: u64) {
        let unpacked = BkeyField::UNPACKED_BITS[i] as u32;
        let bits = bits.min(unpacked);
        let offset = if bits == unpacked {
            0
        } else {
            offset.min(low_mask(unpacked) - low_mask(bits))
        };
        f.bits_per_field[i] = bits as u8;
        f.field_offset[i] = offset;
    }

    /// `bch2_bkey_format_done()`: the tightest format for what was added,
    /// with 4 spare bits of size for extent merging and fields rounded up
    /// to whole bytes where the last word has room.
    pub fn build(&self) -> BkeyFormat {
        let mut f = BkeyFormat {
            key_u64s: 0,
            nr_fields: BKEY_NR_FIELDS as u8,
            bits_per_field: [0; BKEY_NR_FIELDS],
            field_offset: [0; BKEY_NR_FIELDS],
        };
        let mut bits = KEY_PACKED_BITS_START;
        for i in 0..BKEY_NR_FIELDS {
            let min = self.min[i].min(self.max[i]);
            Self::set_field(&mut f, i, fls64(self.max[i] - min), min);
            bits += f.bits_per_field[i] as u32;
        }
        let size = BkeyField::Size as usize;
        if f.bits_per_field[size] != 0 {
            let b = 4u32.min(32 - f.bits_per_field[size] as u32);
            f.bits_per_field[size] += b as u8;
            bits += b;
        }
        f.key_u64s = bits.div_ceil(64) as u8;
        let mut spare = f.key_u64s as u32 * 64 - bits;
        for i in 0..BKEY_NR_FIELDS {
            let cur = f.bits_per_field[i] as u32;
            let r = cur.div_ceil(8) * 8 - cur;
            if r <= spare {
                let off = f.field_offset[i];
                Self::set_field(&mut f, i, cur + r, off);
                spare -= r;
            }
        }
        f
    }
}

/// A key as stored in a bset or journal entry: packed (format 0) or
/// unpacked (format 1), followed by its value.  Holds exactly `u64s * 8`
/// bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef<'a> {
    bytes: &'a [u8],
}

impl<'a> KeyRef<'a> {
    /// Takes the key at the start of `buf`, checking what
    /// `validate_bset_keys()` checks before unpacking: `u64s` nonzero and
    /// within `buf`, `format` 0 or 1, and `u64s` leaving a key part and at
    /// most `BKEY_VAL_U64s_MAX` of value (`bkeyp_u64s_valid()`).
    ///
    /// Errors: [`KeyError::Truncated`], [`KeyError::U64sZero`],
    /// [`KeyError::BadFormat`], [`KeyError::BadU64s`].
    #[inline]
    pub fn parse(buf: &'a [u8], f: &BkeyFormat) -> Result<KeyRef<'a>, KeyError> {
        let hdr = buf.get(..3).ok_or(KeyError::Truncated { need: 3, have: buf.len() })?;
        let u64s = hdr[0];
        if u64s == 0 {
            return Err(KeyError::U64sZero);
        }
        let bytes = buf
            .get(..u64s as usize * 8)
            .ok_or(KeyError::Truncated { need: u64s as usize * 8, have: buf.len() })?;
        let format = hdr[1] & 0x7f;
        if format > KEY_FORMAT_CURRENT {
            return Err(KeyError::BadFormat(format));
        }
        let key_u64s = if format == KEY_FORMAT_CURRENT { BKEY_U64S as u8 } else { f.key_u64s };
        if u64s < key_u64s || (u64s - key_u64s) as usize > BKEY_VAL_U64S_MAX {
            return Err(KeyError::BadU64s { u64s, key_u64s });
        }
        Ok(KeyRef { bytes })
    }

    /// Takes the key at the start of `buf`, which must be unpacked (as in
    /// journal entries).
    pub fn parse_unpacked(buf: &'a [u8]) -> Result<KeyRef<'a>, KeyError> {
        let k = KeyRef::parse(buf, &BkeyFormat::CURRENT)?;
        if k.is_packed() {
            return Err(KeyError::BadFormat(k.format()));
        }
        Ok(k)
    }

    /// All bytes of the key, value included.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// `u64s` as stored.
    pub fn u64s(&self) -> u8 {
        self.bytes[0]
    }

    /// `format`: 0 packed, 1 unpacked.
    pub fn format(&self) -> u8 {
        self.bytes[1] & 0x7f
    }

    /// `needs_whiteout`.
    pub fn needs_whiteout(&self) -> bool {
        self.bytes[1] & 0x80 != 0
    }

    /// Key type number.
    pub fn key_type(&self) -> u8 {
        self.bytes[2]
    }

    /// `bkey_deleted()`.
    pub fn is_deleted(&self) -> bool {
        self.key_type() == KeyType::Deleted as u8
    }

    /// Whether the key is packed (`bkey_packed()`).
    pub fn is_packed(&self) -> bool {
        self.format() != KEY_FORMAT_CURRENT
    }

    fn key_u64s(&self, f: &BkeyFormat) -> usize {
        if self.is_packed() {
            f.key_u64s as usize
        } else {
            BKEY_U64S
        }
    }

    /// The key, unpacked (`bkey_unpack_key()`).
    #[inline]
    pub fn unpack(&self, f: &BkeyFormat) -> Bkey {
        if self.is_packed() {
            // parse() checked that the key part is there.
            f.unpack_key(self.bytes).unwrap_or_default()
        } else {
            let mut b = [0u8; BKEY_BYTES];
            b.copy_from_slice(&self.bytes[..BKEY_BYTES]);
            Bkey::from_bytes(&b)
        }
    }

    /// The position only (`bkey_unpack_pos()`).
    #[inline]
    pub fn pos(&self, f: &BkeyFormat) -> Bpos {
        if self.is_packed() {
            f.unpack_pos(self.bytes).unwrap_or_default()
        } else {
            Bpos::read(self.bytes, 20).unwrap_or_default()
        }
    }

    /// The value (`bkeyp_val()`), `(u64s - key part) * 8` bytes.
    pub fn val(&self, f: &BkeyFormat) -> &'a [u8] {
        self.bytes.get(self.key_u64s(f) * 8..).unwrap_or(&[])
    }
}

/// Iterates over the keys of a run of u64s (a bset's or a journal entry's
/// keys): each item is the next key or the error that stops the walk.
pub struct KeyIter<'a> {
    buf: &'a [u8],
    off: usize,
    format: BkeyFormat,
    unpacked_only: bool,
    done: bool,
}

impl<'a> KeyIter<'a> {
    /// Keys of `buf` (a multiple of 8 bytes), packed with `format` or
    /// unpacked.
    pub fn new(buf: &'a [u8], format: BkeyFormat) -> Self {
        KeyIter { buf, off: 0, format, unpacked_only: false, done: false }
    }

    /// Keys of `buf` that must all be unpacked (journal entries).
    pub fn unpacked(buf: &'a [u8]) -> Self {
        KeyIter { buf, off: 0, format: BkeyFormat::CURRENT, unpacked_only: true, done: false }
    }

    /// Byte offset of the next key inside the buffer.
    pub fn offset(&self) -> usize {
        self.off
    }
}

impl<'a> Iterator for KeyIter<'a> {
    type Item = Result<KeyRef<'a>, KeyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.off >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.off..];
        let r = if self.unpacked_only {
            KeyRef::parse_unpacked(rest)
        } else {
            KeyRef::parse(rest, &self.format)
        };
        match r {
            Ok(k) => {
                self.off += k.bytes.len();
                Some(Ok(k))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    fn arb_bkey() -> impl Strategy<Value = Bkey> {
        (any::<(u64, u64, u32, u32)>(), any::<(u32, u64, u8, bool)>()).prop_map(
            |((inode, offset, snapshot, size), (hi, lo, ty, nw))| Bkey {
                u64s: BKEY_U64S as u8,
                needs_whiteout: nw,
                key_type: ty,
                version: BVersion { hi, lo },
                size,
                p: Bpos { inode, offset, snapshot },
            },
        )
    }

    /// Packs by the definition: a big integer with the fields from the top
    /// down, independent of the word-at-a-time code.
    fn reference_pack(f: &BkeyFormat, k: &Bkey) -> Vec<u8> {
        let n = f.key_u64s as usize;
        let mut bits: Vec<bool> = Vec::new(); // most significant first
        for i in 0..BKEY_NR_FIELDS {
            let v = k.field(i) - f.field_offset[i];
            for b in (0..f.bits_per_field[i] as u32).rev() {
                bits.push(v >> b & 1 == 1);
            }
        }
        let mut out = vec![0u8; n * 8];
        for (j, &bit) in bits.iter().enumerate() {
            if bit {
                let pos = n * 64 - 1 - j; // bit index from the bottom
                out[pos / 8] |= 1 << (pos % 8);
            }
        }
        out
    }

    #[test]
    fn key_type_and_btree_tables() {
        for (i, n) in KEY_TYPE_NAMES.iter().enumerate() {
            assert_eq!(KeyType::from_u8(i as u8).unwrap().name(), *n);
        }
        assert_eq!(KEY_TYPE_MAX, 35);
        assert_eq!(KeyType::InodeV3 as u8, 29);
        assert_eq!(KeyTypeName(200).to_string(), "200");
        assert_eq!(BTREE_ID_NR, 21);
        for i in 0..BTREE_ID_NR {
            let b = BtreeId::from_u32(i).unwrap();
            assert_eq!(b as u32, i);
            assert_eq!(BtreeId::from_name(b.name()), Some(b));
        }
        assert_eq!(BtreeId::Accounting.name(), "accounting");
        assert_eq!(BtreeIdName(99).to_string(), "(unknown)");
        assert!(NodeType::Leaf(0).is_extents());
        assert!(!NodeType::Interior.is_extents());
    }

    #[test]
    fn unpacked_key_layout() {
        let k = Bkey {
            u64s: 7,
            needs_whiteout: true,
            key_type: KeyType::InodeV3 as u8,
            version: BVersion { hi: 3, lo: 4 },
            size: 9,
            p: Bpos::new(1, 2, 3),
        };
        let b = k.to_bytes();
        assert_eq!(b[0], 7);
        assert_eq!(b[1], 0x81);
        assert_eq!(b[4], 4);
        assert_eq!(b[12], 3);
        assert_eq!(b[16], 9);
        assert_eq!(b[20], 3);
        assert_eq!(Bkey::from_bytes(&b), k);
        // The current format unpacks the same bytes to the same key.
        let mut k2 = BkeyFormat::CURRENT.unpack_key(&b).unwrap();
        assert_eq!(k2.u64s, 7);
        k2.u64s = k.u64s;
        assert_eq!(k2, k);
        assert_eq!(
            k.to_string(),
            "u64s 7 type inode_v3 1:2:3 len 9 ver 4"
        );
    }

    #[test]
    fn current_format_is_valid_and_matches_c() {
        BkeyFormat::CURRENT.validate().unwrap();
        assert_eq!(BkeyFormat::CURRENT.to_string(), "u64s 5 fields 64:0, 64:0, 32:0, 32:0, 32:0, 64:0");
        let b = BkeyFormat::CURRENT.to_bytes();
        assert_eq!(BkeyFormat::from_bytes(&b), BkeyFormat::CURRENT);
    }

    #[test]
    fn invalid_formats_are_typed_errors() {
        let mut f = BkeyFormat::CURRENT;
        f.nr_fields = 5;
        assert_eq!(f.validate(), Err(FormatError::NrFields(5)));
        let mut f = BkeyFormat::CURRENT;
        f.field_offset[0] = 1;
        assert!(matches!(f.validate(), Err(FormatError::FieldTooLarge { field: 0, .. })));
        let mut f = BkeyFormat::CURRENT;
        f.bits_per_field[2] = 33;
        assert!(matches!(f.validate(), Err(FormatError::FieldTooLarge { field: 2, .. })));
        let mut f = BkeyFormat::CURRENT;
        f.bits_per_field[2] = 31;
        f.field_offset[2] = (1 << 31) + 1;
        assert!(matches!(f.validate(), Err(FormatError::FieldTooLarge { field: 2, .. })));
        let mut f = BkeyFormat::CURRENT;
        f.key_u64s = 4;
        assert_eq!(f.validate(), Err(FormatError::KeyU64s { got: 4, want: 5 }));
        assert!(FormatError::KeyU64s { got: 4, want: 5 }.to_string().contains("incorrect key_u64s"));
    }

    #[test]
    fn built_format_packs_small_keys_into_one_word() {
        let mut b = BkeyFormatBuilder::new();
        let keys: Vec<Bkey> = (0..10u64)
            .map(|i| Bkey { u64s: 5, p: Bpos::new(4096, i * 8, u32::MAX), size: 8, ..Bkey::default() })
            .collect();
        keys.iter().for_each(|k| b.add_key(k));
        let f = b.build();
        f.validate().unwrap();
        assert_eq!(f.key_u64s, 1);
        for k in &keys {
            let mut out = [0u8; 8];
            assert_eq!(f.pack_key(k, &mut out), Ok(8));
            assert_eq!(out[0], 1);
            let u = f.unpack_key(&out).unwrap();
            assert_eq!(u, *k);
        }
        // Out of range: below the offset, or above the width.
        let low = Bkey { p: Bpos::new(4095, 0, u32::MAX), ..keys[0] };
        assert_eq!(f.pack_key(&low, &mut [0u8; 8]), Err(KeyError::Unpackable { field: 0 }));
        assert!(!f.can_pack(&low));
        assert_eq!(f.pack_key(&keys[0], &mut [0u8; 4]), Err(KeyError::NoRoom));
    }

    #[test]
    fn keyref_checks_header() {
        let f = BkeyFormat::CURRENT;
        assert_eq!(KeyRef::parse(&[], &f), Err(KeyError::Truncated { need: 3, have: 0 }));
        assert_eq!(KeyRef::parse(&[0, 1, 0, 0, 0, 0, 0, 0], &f), Err(KeyError::U64sZero));
        assert_eq!(KeyRef::parse(&[2, 1, 0, 0, 0, 0, 0, 0], &f), Err(KeyError::Truncated { need: 16, have: 8 }));
        assert_eq!(KeyRef::parse(&[1, 5, 0, 0, 0, 0, 0, 0], &f), Err(KeyError::BadFormat(5)));
        assert_eq!(
            KeyRef::parse(&[1, 1, 0, 0, 0, 0, 0, 0], &f),
            Err(KeyError::BadU64s { u64s: 1, key_u64s: 5 })
        );
        let k = Bkey::new(KeyType::Set, Bpos::new(1, 2, 0), 1);
        let mut buf = k.to_bytes().to_vec();
        buf.extend_from_slice(&[7u8; 8]);
        let r = KeyRef::parse(&buf, &f).unwrap();
        assert_eq!(r.unpack(&f), k);
        assert_eq!(r.val(&f), &[7u8; 8]);
        assert_eq!(r.pos(&f), k.p);
        let mut it = KeyIter::unpacked(&buf);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().is_none());
    }

    #[test]
    fn common_key_validation() {
        let mut k = Bkey::new(KeyType::Extent, Bpos::new(4096, 8, 1), 1);
        assert_eq!(k.validate(NodeType::Leaf(0), false), Err(KeyError::ExtentSizeZero));
        k.size = 9;
        assert_eq!(
            k.validate(NodeType::Leaf(0), false),
            Err(KeyError::SizeGreaterThanOffset { size: 9, offset: 8 })
        );
        k.size = 8;
        k.validate(NodeType::Leaf(0), false).unwrap();
        k.p.snapshot = 0;
        assert_eq!(k.validate(NodeType::Leaf(0), false), Err(KeyError::SnapshotZero));
        assert_eq!(
            k.validate(NodeType::Interior, false),
            Err(KeyError::InvalidTypeForBtree { ty: 6, node: NodeType::Interior })
        );
        let mut a = Bkey::new(KeyType::AllocV4, Bpos::new(0, 1, 0), 6);
        a.validate(NodeType::Leaf(4), true).unwrap();
        a.p.snapshot = 1;
        assert_eq!(a.validate(NodeType::Leaf(4), false), Err(KeyError::SnapshotNonzero));
        a.p = POS_MAX;
        assert_eq!(a.validate(NodeType::Leaf(4), false), Err(KeyError::AtPosMax));
        a.p = Bpos::new(0, 1, 0);
        a.key_type = KeyType::Dirent as u8;
        a.validate(NodeType::Leaf(4), false).unwrap();
        assert!(a.validate(NodeType::Leaf(4), true).is_err());
        a.u64s = 4;
        assert_eq!(a.validate(NodeType::Leaf(4), false), Err(KeyError::U64sTooSmall(4)));
    }

    fn arb_format() -> impl Strategy<Value = BkeyFormat> {
        // Any valid format: per-field width and an offset that cannot
        // overflow the unpacked width.
        proptest::array::uniform6((0u32..=64, any::<u64>())).prop_map(|fields| {
            let mut f = BkeyFormat::CURRENT;
            let mut bits = KEY_PACKED_BITS_START;
            for (i, (b, off)) in fields.iter().enumerate() {
                let unpacked = BkeyField::UNPACKED_BITS[i] as u32;
                let b = (*b).min(unpacked);
                f.bits_per_field[i] = b as u8;
                let room = low_mask(unpacked) - low_mask(b);
                f.field_offset[i] = if b == unpacked {
                    0
                } else {
                    room.checked_add(1).map_or(*off, |r| off % r)
                };
                bits += b;
            }
            f.key_u64s = bits.div_ceil(64) as u8;
            f
        })
    }

    proptest! {
        #[test]
        fn pack_unpack_round_trip(f in arb_format(), k in arb_bkey(), val_u64s in 0usize..4) {
            prop_assert_eq!(f.validate(), Ok(()));
            let mut k = k;
            k.u64s = (BKEY_U64S + val_u64s) as u8;
            // Clamp every field into the format's range so it packs.
            for i in 0..BKEY_NR_FIELDS {
                let lo = f.field_offset[i];
                let hi = f.field_max(i);
                let v = k.field(i);
                let span = hi - lo;
                let v = if span == u64::MAX { v } else { lo + v % (span + 1) };
                k.set_field(i, v);
            }
            let mut out = vec![0u8; f.key_u64s as usize * 8];
            prop_assert_eq!(f.pack_key(&k, &mut out), Ok(out.len()));
            // Compare the key bits against the bit-by-bit reference.
            let mut reference = reference_pack(&f, &k);
            reference[0] = out[0];
            reference[1] = out[1];
            reference[2] = out[2];
            prop_assert_eq!(&out, &reference);
            prop_assert_eq!(out[0] as usize, f.key_u64s as usize + val_u64s);
            let u = f.unpack_key(&out).unwrap();
            prop_assert_eq!(u, k);
            prop_assert_eq!(f.unpack_pos(&out).unwrap(), k.p);
        }

        #[test]
        fn built_format_packs_every_added_key(keys in proptest::collection::vec(arb_bkey(), 1..20)) {
            let mut b = BkeyFormatBuilder::new();
            keys.iter().for_each(|k| b.add_key(k));
            let f = b.build();
            prop_assert_eq!(f.validate(), Ok(()));
            for k in &keys {
                let mut out = [0u8; 40];
                prop_assert!(f.pack_key(k, &mut out).is_ok());
                prop_assert_eq!(f.unpack_key(&out).unwrap(), *k);
            }
        }

        #[test]
        fn arbitrary_format_and_key_never_panic(fb in proptest::array::uniform32(any::<u8>()),
                                                 rest in proptest::array::uniform24(any::<u8>()),
                                                 kb in proptest::collection::vec(any::<u8>(), 0..48)) {
            let mut b = [0u8; BKEY_FORMAT_BYTES];
            b[..32].copy_from_slice(&fb);
            b[32..].copy_from_slice(&rest);
            let f = BkeyFormat::from_bytes(&b);
            let _ = f.validate();
            let _ = f.unpack_key(&kb);
            let _ = f.unpack_pos(&kb);
            let _ = f.to_string();
            if let Ok(k) = KeyRef::parse(&kb, &f) {
                let u = k.unpack(&f);
                let _ = k.val(&f);
                let _ = u.validate(NodeType::Leaf(1), true);
                let mut out = [0u8; 64];
                let _ = f.pack_key(&u, &mut out);
            }
            for k in KeyIter::new(&kb, f) {
                let _ = k;
            }
        }
    }
}
