// SPDX-License-Identifier: GPL-2.0
//! Superblock flag bit-fields and the filesystem options stored in them.
//!
//! `struct bch_sb` has seven little-endian u64 `flags` words carved into
//! bit-fields by `LE64_BITMASK(BCH_SB_*, struct bch_sb, flags[w], lo, hi)`
//! in `fs/bcachefs/bcachefs_format.h`.  [`SB_FLAGS`] is that list as one
//! table, indexed by [`SbFlag`]; nothing else in the crate hard-codes a bit
//! position.
//!
//! Most fields hold a filesystem option (`BCH_OPTS()` in
//! `fs/bcachefs/opts.h`).  [`SB_OPTS`] lists, in `BCH_OPTS()` order, every
//! option that has a superblock field, with the range `bch2_opt_validate()`
//! enforces, the unit conversion `bch2_opt_from_sb()` applies, and the
//! default `bch2_opts_default` (or bcachefs-tools, where noted) uses.  Both
//! superblock validation and the format writer work from this table.

use core::fmt;

/// One `LE64_BITMASK()` of `struct bch_sb`: bits `lo..hi` of `flags[word]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbFlagDesc {
    /// The C name without the `BCH_SB_` prefix.
    pub name: &'static str,
    /// Index into `flags[7]`.
    pub word: usize,
    /// First bit.
    pub lo: u32,
    /// One past the last bit.
    pub hi: u32,
}

impl SbFlagDesc {
    /// Mask of the field's bits, not shifted.
    pub const fn mask(&self) -> u64 {
        if self.hi - self.lo >= 64 {
            !0
        } else {
            (1u64 << (self.hi - self.lo)) - 1
        }
    }

    /// Largest value the field can hold.
    pub const fn max(&self) -> u64 {
        self.mask()
    }
}

macro_rules! sb_flags {
    ($( $(#[$doc:meta])* $id:ident = ($name:literal, $word:literal, $lo:literal, $hi:literal), )*) => {
        /// A superblock flag bit-field; [`SbFlag::desc`] gives its position.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum SbFlag {
            $( $(#[$doc])* $id, )*
        }

        /// Every superblock flag bit-field, in `bcachefs_format.h` order,
        /// indexed by [`SbFlag`].
        pub const SB_FLAGS: &[SbFlagDesc] = &[
            $( SbFlagDesc { name: $name, word: $word, lo: $lo, hi: $hi }, )*
        ];
    };
}

sb_flags! {
    /// Set by the first mount once `bch2_fs_initialize()` has finished.
    Initialized = ("INITIALIZED", 0, 0, 1),
    /// Clean shutdown hint.
    Clean = ("CLEAN", 0, 1, 2),
    /// Checksum type of the superblock itself (`enum bch_csum_type`).
    CsumType = ("CSUM_TYPE", 0, 2, 8),
    /// `errors=` option.
    ErrorAction = ("ERROR_ACTION", 0, 8, 12),
    /// Btree node size, in sectors.
    BtreeNodeSize = ("BTREE_NODE_SIZE", 0, 12, 28),
    /// `gc_reserve_percent`.
    GcReserve = ("GC_RESERVE", 0, 28, 33),
    /// `root_reserve_percent`.
    RootReserve = ("ROOT_RESERVE", 0, 33, 40),
    /// `metadata_checksum` (`enum bch_csum_opts`).
    MetaCsumType = ("META_CSUM_TYPE", 0, 40, 44),
    /// `data_checksum` (`enum bch_csum_opts`).
    DataCsumType = ("DATA_CSUM_TYPE", 0, 44, 48),
    /// `metadata_replicas`.
    MetaReplicasWant = ("META_REPLICAS_WANT", 0, 48, 52),
    /// `data_replicas`.
    DataReplicasWant = ("DATA_REPLICAS_WANT", 0, 52, 56),
    /// `acl`.
    PosixAcl = ("POSIX_ACL", 0, 56, 57),
    /// `usrquota`.
    UsrQuota = ("USRQUOTA", 0, 57, 58),
    /// `grpquota`.
    GrpQuota = ("GRPQUOTA", 0, 58, 59),
    /// `prjquota`.
    PrjQuota = ("PRJQUOTA", 0, 59, 60),
    /// The filesystem has seen errors.
    HasErrors = ("HAS_ERRORS", 0, 60, 61),
    /// The filesystem has seen btree topology errors.
    HasTopologyErrors = ("HAS_TOPOLOGY_ERRORS", 0, 61, 62),
    /// Written by a big-endian machine.
    BigEndian = ("BIG_ENDIAN", 0, 62, 63),
    /// `promote_whole_extents`.
    PromoteWholeExtents = ("PROMOTE_WHOLE_EXTENTS", 0, 63, 64),
    /// `str_hash` (`enum bch_str_hash_opts`).
    StrHashType = ("STR_HASH_TYPE", 1, 0, 4),
    /// `compression`, low nibble.
    CompressionTypeLo = ("COMPRESSION_TYPE_LO", 1, 4, 8),
    /// `inodes_32bit`.
    Inode32bit = ("INODE_32BIT", 1, 8, 9),
    /// `wide_macs`.
    Macs128Bit = ("128_BIT_MACS", 1, 9, 10),
    /// Encryption type; nonzero means encrypted.
    EncryptionType = ("ENCRYPTION_TYPE", 1, 10, 14),
    /// `encoded_extent_max`, as log2 of sectors.
    EncodedExtentMaxBits = ("ENCODED_EXTENT_MAX_BITS", 1, 14, 20),
    /// `metadata_replicas_required`.
    MetaReplicasReq = ("META_REPLICAS_REQ", 1, 20, 24),
    /// `data_replicas_required`.
    DataReplicasReq = ("DATA_REPLICAS_REQ", 1, 24, 28),
    /// `promote_target`.
    PromoteTarget = ("PROMOTE_TARGET", 1, 28, 40),
    /// `foreground_target`.
    ForegroundTarget = ("FOREGROUND_TARGET", 1, 40, 52),
    /// `background_target`.
    BackgroundTarget = ("BACKGROUND_TARGET", 1, 52, 64),
    /// `background_compression`, low nibble.
    BackgroundCompressionTypeLo = ("BACKGROUND_COMPRESSION_TYPE_LO", 2, 0, 4),
    /// `gc_reserve_bytes`, in sectors.
    GcReserveBytes = ("GC_RESERVE_BYTES", 2, 4, 64),
    /// `erasure_code`.
    ErasureCode = ("ERASURE_CODE", 3, 0, 16),
    /// `metadata_target`.
    MetadataTarget = ("METADATA_TARGET", 3, 16, 28),
    /// `shard_inode_numbers`.
    ShardInums = ("SHARD_INUMS", 3, 28, 29),
    /// `inodes_use_key_cache`.
    InodesUseKeyCache = ("INODES_USE_KEY_CACHE", 3, 29, 30),
    /// `journal_flush_delay`, milliseconds.
    JournalFlushDelay = ("JOURNAL_FLUSH_DELAY", 3, 30, 62),
    /// `journal_flush_disabled`.
    JournalFlushDisabled = ("JOURNAL_FLUSH_DISABLED", 3, 62, 63),
    /// `journal_reclaim_delay`, milliseconds.
    JournalReclaimDelay = ("JOURNAL_RECLAIM_DELAY", 4, 0, 32),
    /// `journal_transaction_names`.
    JournalTransactionNames = ("JOURNAL_TRANSACTION_NAMES", 4, 32, 33),
    /// `nocow`.
    Nocow = ("NOCOW", 4, 33, 34),
    /// Btree write buffer size (no option in 6.12).
    WriteBufferSize = ("WRITE_BUFFER_SIZE", 4, 34, 54),
    /// `version_upgrade` (`enum bch_version_upgrade_opts`).
    VersionUpgrade = ("VERSION_UPGRADE", 4, 54, 56),
    /// `compression`, high nibble (the level).
    CompressionTypeHi = ("COMPRESSION_TYPE_HI", 4, 56, 60),
    /// `background_compression`, high nibble.
    BackgroundCompressionTypeHi = ("BACKGROUND_COMPRESSION_TYPE_HI", 4, 60, 64),
    /// Metadata version the last upgrade completed to.
    VersionUpgradeComplete = ("VERSION_UPGRADE_COMPLETE", 5, 0, 16),
    /// `allocator_stuck_timeout`, seconds.
    AllocatorStuckTimeout = ("ALLOCATOR_STUCK_TIMEOUT", 5, 16, 32),
}

impl SbFlag {
    /// Position of the field.
    pub fn desc(self) -> &'static SbFlagDesc {
        &SB_FLAGS[self as usize]
    }

    /// Reads the field from the `flags` words.
    pub fn get(self, flags: &[u64; 7]) -> u64 {
        let d = self.desc();
        (flags[d.word] >> d.lo) & d.mask()
    }

    /// Writes `v` (truncated to the field's width, as `SET_BCH_SB_*()`
    /// does) into the `flags` words.
    pub fn set(self, flags: &mut [u64; 7], v: u64) {
        let d = self.desc();
        let m = d.mask() << d.lo;
        flags[d.word] = (flags[d.word] & !m) | ((v << d.lo) & m);
    }
}

/// Where an option lives in the superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptField {
    /// The `block_size` u16 of the fixed part (`BCH_SB_BLOCK_SIZE`).
    BlockSize,
    /// One flag bit-field.
    Flag(SbFlag),
    /// Two nibbles: `lo | hi << 4` (`BCH_SB_COMPRESSION_TYPE()` and the
    /// background variant).
    Split(SbFlag, SbFlag),
}

/// What values an option takes, for validation, parsing and printing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptKind {
    /// `OPT_BOOL()`: 0 or 1.
    Bool,
    /// `OPT_UINT(min, max)`: `min <= v` and, if `max` is nonzero, `v < max`.
    Uint {
        /// Smallest valid value.
        min: u64,
        /// First invalid value (0: unbounded).
        max: u64,
    },
    /// `OPT_STR(choices)`: an index into the list.
    Str(&'static [&'static str]),
    /// `OPT_FN(bch2_opt_compression)`: `type | level << 4`.
    Compression,
    /// `OPT_FN(bch2_opt_target)`: a device or disk-group target; not
    /// validated by C.
    Target,
}

/// A filesystem option with a superblock field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbOpt {
    /// Option name, as mount options, sysfs and bcachefs-tools spell it.
    pub name: &'static str,
    /// Where it is stored.
    pub field: OptField,
    /// Its values.
    pub kind: OptKind,
    /// `OPT_SB_FIELD_SECTORS`: stored `>> 9`.
    pub sectors: bool,
    /// `OPT_SB_FIELD_ILOG2`: stored as log2.
    pub ilog2: bool,
    /// `OPT_MUST_BE_POW_2`.
    pub pow2: bool,
    /// `OPT_HUMAN_READABLE`: a size, printed with units.
    pub human: bool,
    /// `OPT_FORMAT`: may be given at format time.
    pub format: bool,
    /// Default value, in option units (bytes for sizes).
    pub default: u64,
}

/// `bch2_error_actions[]`.
pub const ERROR_ACTIONS: &[&str] = &["continue", "fix_safe", "panic", "ro"];
/// `bch2_csum_opts[]`.
pub const CSUM_OPTS: &[&str] = &["none", "crc32c", "crc64", "xxhash"];
/// `bch2_compression_opts[]`.
pub const COMPRESSION_OPTS: &[&str] = &["none", "lz4", "gzip", "zstd"];
/// `bch2_str_hash_opts[]`.
pub const STR_HASH_OPTS: &[&str] = &["crc32c", "crc64", "siphash"];
/// `bch2_version_upgrade_opts[]`.
pub const VERSION_UPGRADE_OPTS: &[&str] = &["compatible", "incompatible", "none"];

const fn opt(name: &'static str, field: OptField, kind: OptKind, default: u64) -> SbOpt {
    SbOpt {
        name,
        field,
        kind,
        sectors: false,
        ilog2: false,
        pow2: false,
        human: false,
        format: true,
        default,
    }
}

const fn flag(name: &'static str, f: SbFlag, kind: OptKind, default: u64) -> SbOpt {
    opt(name, OptField::Flag(f), kind, default)
}

const fn uint(min: u64, max: u64) -> OptKind {
    OptKind::Uint { min, max }
}

/// A size option: `OPT_HUMAN_READABLE|OPT_MUST_BE_POW_2|OPT_SB_FIELD_SECTORS`.
const fn size(mut o: SbOpt) -> SbOpt {
    o.sectors = true;
    o.pow2 = true;
    o.human = true;
    o
}

/// An option that may not be given at format time (no `OPT_FORMAT`).
const fn no_format(mut o: SbOpt) -> SbOpt {
    o.format = false;
    o
}

/// Index of the `block_size` option in [`SB_OPTS`].
pub const OPT_BLOCK_SIZE: usize = 0;

/// Every option stored in the superblock, in `BCH_OPTS()` order (which is
/// the order `bch2_sb_validate()` checks them in).
pub const SB_OPTS: &[SbOpt] = &[
    // Chosen per device by bcachefs-tools (the device's block size); the
    // kernel's table default is meaningless for it.
    size(opt("block_size", OptField::BlockSize, uint(512, 1 << 16), 4096)),
    // 6.12's table says 512 here; bcachefs-tools' copy says 256k, and the
    // help text says "default 256k".  The format writer clamps it to the
    // bucket size as bcachefs-tools does.
    size(flag("btree_node_size", SbFlag::BtreeNodeSize, uint(512, 1 << 20), 256 << 10)),
    flag("errors", SbFlag::ErrorAction, OptKind::Str(ERROR_ACTIONS), 1),
    flag("metadata_replicas", SbFlag::MetaReplicasWant, uint(1, 4), 1),
    flag("data_replicas", SbFlag::DataReplicasWant, uint(1, 4), 1),
    flag("metadata_replicas_required", SbFlag::MetaReplicasReq, uint(1, 4), 1),
    flag("data_replicas_required", SbFlag::DataReplicasReq, uint(1, 4), 1),
    {
        let mut o = size(flag(
            "encoded_extent_max",
            SbFlag::EncodedExtentMaxBits,
            uint(4096, 2 << 20),
            64 << 10,
        ));
        o.ilog2 = true;
        o
    },
    flag("metadata_checksum", SbFlag::MetaCsumType, OptKind::Str(CSUM_OPTS), 1),
    flag("data_checksum", SbFlag::DataCsumType, OptKind::Str(CSUM_OPTS), 1),
    opt(
        "compression",
        OptField::Split(SbFlag::CompressionTypeLo, SbFlag::CompressionTypeHi),
        OptKind::Compression,
        0,
    ),
    opt(
        "background_compression",
        OptField::Split(SbFlag::BackgroundCompressionTypeLo, SbFlag::BackgroundCompressionTypeHi),
        OptKind::Compression,
        0,
    ),
    flag("str_hash", SbFlag::StrHashType, OptKind::Str(STR_HASH_OPTS), 2),
    flag("metadata_target", SbFlag::MetadataTarget, OptKind::Target, 0),
    flag("foreground_target", SbFlag::ForegroundTarget, OptKind::Target, 0),
    flag("background_target", SbFlag::BackgroundTarget, OptKind::Target, 0),
    flag("promote_target", SbFlag::PromoteTarget, OptKind::Target, 0),
    flag("erasure_code", SbFlag::ErasureCode, OptKind::Bool, 0),
    flag("inodes_32bit", SbFlag::Inode32bit, OptKind::Bool, 1),
    flag("shard_inode_numbers", SbFlag::ShardInums, OptKind::Bool, 1),
    flag("inodes_use_key_cache", SbFlag::InodesUseKeyCache, OptKind::Bool, 1),
    flag("gc_reserve_percent", SbFlag::GcReserve, uint(5, 21), 8),
    {
        let mut o = flag("gc_reserve_bytes", SbFlag::GcReserveBytes, uint(0, u64::MAX), 0);
        o.sectors = true;
        o.human = true;
        o
    },
    flag("root_reserve_percent", SbFlag::RootReserve, uint(0, 100), 0),
    flag("wide_macs", SbFlag::Macs128Bit, OptKind::Bool, 0),
    no_format(flag("promote_whole_extents", SbFlag::PromoteWholeExtents, OptKind::Bool, 1)),
    flag("acl", SbFlag::PosixAcl, OptKind::Bool, 1),
    flag("usrquota", SbFlag::UsrQuota, OptKind::Bool, 0),
    flag("grpquota", SbFlag::GrpQuota, OptKind::Bool, 0),
    flag("prjquota", SbFlag::PrjQuota, OptKind::Bool, 0),
    no_format(flag("journal_flush_delay", SbFlag::JournalFlushDelay, uint(1, u32::MAX as u64), 1000)),
    no_format(flag("journal_flush_disabled", SbFlag::JournalFlushDisabled, OptKind::Bool, 0)),
    no_format(flag("journal_reclaim_delay", SbFlag::JournalReclaimDelay, uint(0, u32::MAX as u64), 100)),
    flag("journal_transaction_names", SbFlag::JournalTransactionNames, OptKind::Bool, 1),
    flag("allocator_stuck_timeout", SbFlag::AllocatorStuckTimeout, uint(0, u16::MAX as u64), 30),
    no_format(flag("version_upgrade", SbFlag::VersionUpgrade, OptKind::Str(VERSION_UPGRADE_OPTS), 0)),
    flag("nocow", SbFlag::Nocow, OptKind::Bool, 0),
];

/// Looks an option up by name.
pub fn sb_opt(name: &str) -> Option<&'static SbOpt> {
    SB_OPTS.iter().find(|o| o.name == name)
}

/// Why an option value is invalid (`bch2_opt_validate()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptError {
    /// Below the minimum.
    TooSmall {
        /// The minimum.
        min: u64,
    },
    /// At or above the (exclusive) maximum.
    TooBig {
        /// The first invalid value.
        max: u64,
    },
    /// A sector-stored size that is not a multiple of 512.
    NotSectorMultiple,
    /// Must be a power of two and is not.
    NotPow2,
    /// Not a valid `type | level << 4` compression value.
    BadCompression(u64),
    /// A string the option does not accept (parsing only).
    BadValue,
}

impl fmt::Display for OptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OptError::TooSmall { min } => write!(f, "too small (min {min})"),
            OptError::TooBig { max } => write!(f, "too big (max {max})"),
            OptError::NotSectorMultiple => f.write_str("not a multiple of 512"),
            OptError::NotPow2 => f.write_str("must be a power of two"),
            OptError::BadCompression(v) => write!(f, "invalid compression opt {v}"),
            OptError::BadValue => f.write_str("invalid value"),
        }
    }
}

/// Whether `v` is a valid compression option: the type (low nibble) names
/// one of [`COMPRESSION_OPTS`] and `none` has no level
/// (`bch2_compression_opt_valid()`).
pub fn compression_opt_valid(v: u64) -> bool {
    let ty = v & 15;
    let level = (v >> 4) & 15;
    // Only 8 bits are ever stored; anything wider is invalid too.
    v >> 8 == 0 && (ty as usize) < COMPRESSION_OPTS.len() && !(ty == 0 && level != 0)
}

impl SbOpt {
    /// Range of values for `OPT_BOOL`/`OPT_UINT`/`OPT_STR`, as
    /// `(min, max)` with `max` exclusive and 0 meaning unbounded.
    fn range(&self) -> (u64, u64) {
        match self.kind {
            OptKind::Bool => (0, 2),
            OptKind::Uint { min, max } => (min, max),
            OptKind::Str(choices) => (0, choices.len() as u64),
            OptKind::Compression | OptKind::Target => (0, 0),
        }
    }

    /// Checks a value in option units, as `bch2_opt_validate()` does.
    pub fn validate(&self, v: u64) -> Result<(), OptError> {
        let (min, max) = self.range();
        if v < min {
            return Err(OptError::TooSmall { min });
        }
        if max != 0 && v >= max {
            return Err(OptError::TooBig { max });
        }
        if self.sectors && v & 511 != 0 {
            return Err(OptError::NotSectorMultiple);
        }
        if self.pow2 && !v.is_power_of_two() {
            return Err(OptError::NotPow2);
        }
        if self.kind == OptKind::Compression && !compression_opt_valid(v) {
            return Err(OptError::BadCompression(v));
        }
        Ok(())
    }

    /// Converts the raw superblock field to option units, as
    /// `bch2_opt_from_sb()` does (with C's u64 wrap-around on overflow).
    pub fn from_raw(&self, raw: u64) -> u64 {
        let mut v = raw;
        if self.ilog2 {
            // The field is at most 6 bits wide, so the shift is defined.
            v = if v < 64 { 1u64 << v } else { 0 };
        }
        if self.sectors {
            v <<= 9;
        }
        v
    }

    /// Converts an option value to the raw superblock field, as
    /// `__bch2_opt_set_sb()` does.
    pub fn to_raw(&self, v: u64) -> u64 {
        let mut v = v;
        if self.sectors {
            v >>= 9;
        }
        if self.ilog2 {
            v = if v == 0 { 0 } else { u64::from(63 - v.leading_zeros()) };
        }
        v
    }

    /// Parses a value as the command line gives it: a choice name for
    /// string options, `type[:level]` for compression, `0/1/yes/no/true/false`
    /// for booleans, and a number with an optional `k`/`M`/`G`/`T` suffix
    /// (powers of 1024) for the rest.  The result is validated.
    pub fn parse(&self, s: &str) -> Result<u64, OptError> {
        let v = match self.kind {
            OptKind::Str(choices) => choices.iter().position(|&c| c == s).ok_or(OptError::BadValue)? as u64,
            OptKind::Bool => match s {
                "1" | "yes" | "true" | "on" | "" => 1,
                "0" | "no" | "false" | "off" => 0,
                _ => return Err(OptError::BadValue),
            },
            OptKind::Compression => {
                let (ty, level) = match s.split_once(':') {
                    Some((t, l)) => (t, Some(l)),
                    None => (s, None),
                };
                let ty = COMPRESSION_OPTS.iter().position(|&c| c == ty).ok_or(OptError::BadValue)? as u64;
                let level = match level {
                    Some(l) => l.parse::<u64>().map_err(|_| OptError::BadValue)?,
                    None => 0,
                };
                if level > 15 || (ty == 0 && level != 0) {
                    return Err(OptError::BadValue);
                }
                ty | level << 4
            }
            OptKind::Target => match s {
                "" | "none" | "0" => 0,
                _ => return Err(OptError::BadValue),
            },
            OptKind::Uint { .. } => parse_size(s).ok_or(OptError::BadValue)?,
        };
        self.validate(v)?;
        Ok(v)
    }
}

/// Parses a decimal number with an optional binary unit suffix
/// (`k`/`K`, `M`, `G`, `T`, optionally followed by `i`/`iB`/`B`).
pub fn parse_size(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (num, suffix) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let shift = match suffix {
        "" | "b" | "B" => 0,
        "k" | "K" | "KiB" | "kiB" | "KB" | "kB" | "Ki" | "ki" => 10,
        "M" | "m" | "MiB" | "MB" | "Mi" => 20,
        "G" | "g" | "GiB" | "GB" | "Gi" => 30,
        "T" | "t" | "TiB" | "TB" | "Ti" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Names of the incompatible feature bits (`BCH_SB_FEATURES()`).
pub const FEATURE_NAMES: &[&str] = &[
    "lz4",
    "gzip",
    "zstd",
    "atomic_nlink",
    "ec",
    "journal_seq_blacklist_v3",
    "reflink",
    "new_siphash",
    "inline_data",
    "new_extent_overwrite",
    "incompressible",
    "btree_ptr_v2",
    "extents_above_btree_updates",
    "btree_updates_journalled",
    "reflink_inline_data",
    "new_varint",
    "journal_no_flush",
    "alloc_v2",
    "extents_across_btree_nodes",
];

/// `BCH_FEATURE_NR`: feature bits at or above this make a superblock
/// unreadable.
pub const FEATURE_NR: u32 = FEATURE_NAMES.len() as u32;

/// Mask of feature (or compat) bit `i`.
pub const fn feature_bit(i: u32) -> u64 {
    1u64 << i
}

/// `BCH_SB_FEATURES_ALWAYS`.
pub const FEATURES_ALWAYS: u64 = feature_bit(9) // new_extent_overwrite
    | feature_bit(12) // extents_above_btree_updates
    | feature_bit(13) // btree_updates_journalled
    | feature_bit(17) // alloc_v2
    | feature_bit(18); // extents_across_btree_nodes

/// `BCH_SB_FEATURES_ALL`: what a fresh filesystem of the current version
/// has (`bch2_sb_upgrade()`, bcachefs-tools `bch2_format()`).
pub const FEATURES_ALL: u64 = FEATURES_ALWAYS
    | feature_bit(7) // new_siphash
    | feature_bit(11) // btree_ptr_v2
    | feature_bit(15) // new_varint
    | feature_bit(16); // journal_no_flush

/// Names of the compat bits (`BCH_SB_COMPAT()`).
pub const COMPAT_NAMES: &[&str] = &[
    "alloc_info",
    "alloc_metadata",
    "extents_above_btree_updates_done",
    "bformat_overflow_done",
];

/// Names of the data types (`BCH_DATA_TYPES()`), for `data_allowed` and
/// bucket usage.
pub const DATA_TYPE_NAMES: &[&str] = &[
    "free",
    "sb",
    "journal",
    "btree",
    "user",
    "cached",
    "parity",
    "stripe",
    "need_gc_gens",
    "need_discard",
    "unstriped",
];

/// `BCH_DATA_journal`.
pub const DATA_JOURNAL: u32 = 2;
/// `BCH_DATA_btree`.
pub const DATA_BTREE: u32 = 3;
/// `BCH_DATA_user`.
pub const DATA_USER: u32 = 4;

/// Names of the member states (`BCH_MEMBER_STATES()`).
pub const MEMBER_STATE_NAMES: &[&str] = &["rw", "ro", "failed", "spare"];

/// The `BCH_CSUM_OPT_*` a `metadata_checksum`/`data_checksum` option value
/// maps to, as `bch2_csum_opt_to_type()` maps it: metadata uses the
/// `_nonzero` CRC variants, data the zero-seeded ones.
pub fn csum_opt_to_type(opt: u64, data: bool) -> Option<crate::checksum::CsumType> {
    use crate::checksum::CsumType;
    Some(match opt {
        0 => CsumType::None,
        1 if data => CsumType::Crc32c,
        1 => CsumType::Crc32cNonzero,
        2 if data => CsumType::Crc64,
        2 => CsumType::Crc64Nonzero,
        3 => CsumType::Xxhash,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_table_is_consistent() {
        for (i, d) in SB_FLAGS.iter().enumerate() {
            assert!(d.word < 7 && d.lo < d.hi && d.hi <= 64, "{}", d.name);
            // No two fields overlap.
            for e in &SB_FLAGS[i + 1..] {
                assert!(d.word != e.word || d.hi <= e.lo || e.hi <= d.lo, "{} {}", d.name, e.name);
            }
        }
        assert_eq!(SbFlag::AllocatorStuckTimeout.desc().name, "ALLOCATOR_STUCK_TIMEOUT");
        assert_eq!(SbFlag::GcReserveBytes.desc().mask(), (1 << 60) - 1);
        assert_eq!(SbFlag::PromoteWholeExtents.desc().lo, 63);
    }

    #[test]
    fn flags_get_and_set() {
        let mut f = [0u64; 7];
        SbFlag::BtreeNodeSize.set(&mut f, 512);
        SbFlag::CsumType.set(&mut f, 1);
        SbFlag::BackgroundTarget.set(&mut f, 0xfff);
        assert_eq!(f[0], 512 << 12 | 1 << 2);
        assert_eq!(f[1], 0xfff << 52);
        assert_eq!(SbFlag::BtreeNodeSize.get(&f), 512);
        // Values wider than the field are truncated, as SET_BCH_SB_*() does.
        SbFlag::CsumType.set(&mut f, 0x1ff);
        assert_eq!(SbFlag::CsumType.get(&f), 0x3f);
        assert_eq!(SbFlag::BtreeNodeSize.get(&f), 512);
    }

    #[test]
    fn option_validation_matches_c() {
        let bs = &SB_OPTS[OPT_BLOCK_SIZE];
        assert_eq!(bs.name, "block_size");
        assert_eq!(bs.validate(4096), Ok(()));
        assert_eq!(bs.validate(256), Err(OptError::TooSmall { min: 512 }));
        assert_eq!(bs.validate(1 << 16), Err(OptError::TooBig { max: 1 << 16 }));
        assert_eq!(bs.validate(1536), Err(OptError::NotPow2));
        let eem = sb_opt("encoded_extent_max").unwrap();
        assert_eq!(eem.from_raw(7), 64 << 10);
        assert_eq!(eem.to_raw(64 << 10), 7);
        assert_eq!(eem.validate(eem.from_raw(0)), Err(OptError::TooSmall { min: 4096 }));
        assert_eq!(eem.from_raw(63), 0, "C's shift wraps to zero");
        let c = sb_opt("compression").unwrap();
        assert_eq!(c.validate(0x31), Ok(()));
        assert_eq!(c.validate(0x10), Err(OptError::BadCompression(0x10)));
        assert_eq!(c.validate(4), Err(OptError::BadCompression(4)));
        let gcr = sb_opt("gc_reserve_bytes").unwrap();
        assert_eq!(gcr.validate(gcr.from_raw(SbFlag::GcReserveBytes.desc().max())), Ok(()));
        for o in SB_OPTS {
            assert_eq!(o.validate(o.default), Ok(()), "{}", o.name);
            assert_eq!(o.from_raw(o.to_raw(o.default)), o.default, "{}", o.name);
        }
    }

    #[test]
    fn option_parsing() {
        assert_eq!(sb_opt("metadata_checksum").unwrap().parse("xxhash"), Ok(3));
        assert_eq!(sb_opt("metadata_checksum").unwrap().parse("sha1"), Err(OptError::BadValue));
        assert_eq!(sb_opt("compression").unwrap().parse("zstd:3"), Ok(0x33));
        assert_eq!(sb_opt("compression").unwrap().parse("none:3"), Err(OptError::BadValue));
        assert_eq!(sb_opt("block_size").unwrap().parse("4k"), Ok(4096));
        assert_eq!(sb_opt("block_size").unwrap().parse("3k"), Err(OptError::NotPow2));
        assert_eq!(sb_opt("acl").unwrap().parse("no"), Ok(0));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999999999999T"), None);
    }

    #[test]
    fn features() {
        assert_eq!(FEATURE_NR, 19);
        assert_eq!(FEATURES_ALL, 0x7ba80);
        assert_eq!(FEATURE_NAMES[16], "journal_no_flush");
    }
}
