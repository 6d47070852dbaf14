// SPDX-License-Identifier: GPL-2.0
//! Journal entries: `struct jset` and `struct jset_entry`
//! (`fs/bcachefs/bcachefs_format.h`), checked as `jset_validate()` and the
//! `journal_entry_*_validate()` functions of `journal_io.c` do, printed as
//! `bch2_journal_entry_to_text()` prints them, and the rules
//! `bch2_journal_read()` applies to sequence numbers.
//!
//! # Layout
//!
//! A jset (journal write) starts on a block boundary of a journal bucket:
//!
//! | offset | field |
//! |-------:|-------|
//! | 0 | csum (16 bytes): checksum of bytes 16 to the end of the entries |
//! | 16 | magic (u64): the journal magic of the filesystem ([`jset_magic`]) |
//! | 24 | seq (u64): this write's sequence number |
//! | 32 | version (u32): metadata version |
//! | 36 | flags (u32): csum type 0-3, big endian 4, no flush 5 |
//! | 40 | u64s (u32): size of the entries, in u64s |
//! | 44 | _read_clock, _write_clock (u16, unused) |
//! | 48 | last_seq (u64): oldest entry still needed; ignored for no-flush writes |
//! | 56 | entries |
//!
//! Each entry (`struct jset_entry`, 8-byte header): u64s (u16: size after
//! the header, in u64s), btree_id (u8), level (u8), type (u8), pad (3
//! bytes).  Key entries hold unpacked keys with their values.
//!
//! # Sequence rules
//!
//! Replay starts from the newest *flush* write whose checksum is good (a
//! torn last write is skipped once): its `last_seq` is where replay
//! begins, and newer no-flush writes are not replayed.  Between `last_seq`
//! and it, every sequence number must be present unless blacklisted
//! ([`replay_range`]).

use core::fmt;

use super::bkey::{Bkey, BtreeIdName, KeyError, KeyIter, NodeType, BKEY_BYTES, BKEY_U64S};
use super::val::{fmt_data_type, misc::fmt_replicas, validate_val, FsCtx, KeyDisplay, ValidateFlags};
use super::version::Version;
use crate::checksum::{self, Csum, CsumType, CSUM_NR};
use crate::errcode::{AllocError, Errno};
use crate::platform::{Vec, SECTOR_SIZE};
use crate::util::le::{le32, le64};

/// `JSET_MAGIC`, xored with the first 8 bytes of the internal uuid.
pub const JSET_MAGIC: u64 = 0x245235c1a3625032;
/// Size of `struct jset` before its entries, bytes.
pub const JSET_BYTES: usize = 56;
/// Size of `struct jset_entry` before its data, bytes.
pub const JSET_ENTRY_BYTES: usize = 8;
/// `BCH_NONCE_JOURNAL`.
pub const NONCE_JOURNAL: u32 = 3 << 28;

/// `jset_magic()`: the journal magic of a filesystem with internal uuid
/// `uuid`.
pub fn jset_magic(uuid: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&uuid[..8]);
    u64::from_le_bytes(b) ^ JSET_MAGIC
}

macro_rules! entry_types {
    ($($variant:ident = $nr:literal, $name:literal;)*) => {
        /// A journal entry type (`enum bch_jset_entry_type`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum EntryType {
            $(
                #[doc = concat!("`BCH_JSET_ENTRY_", $name, "` = ", stringify!($nr), ".")]
                $variant = $nr,
            )*
        }

        /// Names of the entry types as C prints them, by number.
        pub const ENTRY_TYPE_NAMES: &[&str] = &[$($name,)*];

        impl EntryType {
            /// The entry type numbered `v`.
            pub fn from_u8(v: u8) -> Option<EntryType> {
                match v {
                    $($nr => Some(EntryType::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

entry_types! {
    BtreeKeys = 0, "btree_keys";
    BtreeRoot = 1, "btree_root";
    PrioPtrs = 2, "prio_ptrs";
    Blacklist = 3, "blacklist";
    BlacklistV2 = 4, "blacklist_v2";
    Usage = 5, "usage";
    DataUsage = 6, "data_usage";
    Clock = 7, "clock";
    DevUsage = 8, "dev_usage";
    Log = 9, "log";
    Overwrite = 10, "overwrite";
    WriteBufferKeys = 11, "write_buffer_keys";
    Datetime = 12, "datetime";
}

/// Names of the filesystem usage counters of `usage` entries
/// (`BCH_FS_USAGE_TYPES()`).
pub const FS_USAGE_TYPE_NAMES: [&str; 3] = ["reserved", "inodes", "key_version"];

/// A jset header, in CPU order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsetHeader {
    /// Checksum.
    pub csum: Csum,
    /// Journal magic.
    pub magic: u64,
    /// Sequence number.
    pub seq: u64,
    /// Metadata version.
    pub version: u32,
    /// Flags: csum type 0-3, big endian 4, no flush 5.
    pub flags: u32,
    /// Size of the entries, in u64s.
    pub u64s: u32,
    /// Unused.
    pub read_clock: u16,
    /// Unused.
    pub write_clock: u16,
    /// Oldest sequence number still needed.
    pub last_seq: u64,
}

impl JsetHeader {
    /// Decodes the first 56 bytes of `b`; `None` if shorter.
    pub fn decode(b: &[u8]) -> Option<JsetHeader> {
        let b = b.get(..JSET_BYTES)?;
        let mut c = [0u8; 16];
        c.copy_from_slice(&b[..16]);
        Some(JsetHeader {
            csum: Csum::from_bytes(&c),
            magic: le64(b, 16),
            seq: le64(b, 24),
            version: le32(b, 32),
            flags: le32(b, 36),
            u64s: le32(b, 40),
            read_clock: u16::from_le_bytes([b[44], b[45]]),
            write_clock: u16::from_le_bytes([b[46], b[47]]),
            last_seq: le64(b, 48),
        })
    }

    /// Encodes into the first 56 bytes of `b`.
    pub fn encode(&self, b: &mut [u8]) -> Option<()> {
        let b = b.get_mut(..JSET_BYTES)?;
        b[..16].copy_from_slice(&self.csum.to_bytes());
        b[16..24].copy_from_slice(&self.magic.to_le_bytes());
        b[24..32].copy_from_slice(&self.seq.to_le_bytes());
        b[32..36].copy_from_slice(&self.version.to_le_bytes());
        b[36..40].copy_from_slice(&self.flags.to_le_bytes());
        b[40..44].copy_from_slice(&self.u64s.to_le_bytes());
        b[44..46].copy_from_slice(&self.read_clock.to_le_bytes());
        b[46..48].copy_from_slice(&self.write_clock.to_le_bytes());
        b[48..56].copy_from_slice(&self.last_seq.to_le_bytes());
        Some(())
    }

    /// `JSET_CSUM_TYPE`.
    pub fn csum_type(&self) -> u8 {
        (self.flags & 0xf) as u8
    }

    /// `JSET_BIG_ENDIAN`.
    pub fn big_endian(&self) -> bool {
        self.flags & (1 << 4) != 0
    }

    /// `JSET_NO_FLUSH`: a write that does not make earlier ones durable;
    /// its `last_seq` is meaningless.
    pub fn no_flush(&self) -> bool {
        self.flags & (1 << 5) != 0
    }

    /// Size of the jset, bytes (`vstruct_bytes()`).
    pub fn bytes(&self) -> usize {
        JSET_BYTES.saturating_add((self.u64s as usize).saturating_mul(8))
    }

    /// Sectors the jset occupies with blocks of `block_bytes`
    /// (`vstruct_sectors()`).
    pub fn sectors(&self, block_bytes: usize) -> u32 {
        let b = block_bytes.max(SECTOR_SIZE);
        (self.bytes().div_ceil(b) * b / SECTOR_SIZE) as u32
    }
}

/// `journal_nonce()`: only the encrypted checksum types use it.
pub fn journal_nonce(h: &JsetHeader) -> [u32; 4] {
    [0, h.seq as u32, (h.seq >> 32) as u32, NONCE_JOURNAL]
}

/// What is wrong with one journal entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The entry runs past the end of the jset.
    PastEnd,
    /// Wrong size for the type.
    BadSize {
        /// Bytes of the entry, header included.
        bytes: usize,
        /// Bytes the type needs (minimum or exact).
        want: usize,
    },
    /// A key with `u64s` 0.
    KeyU64sZero,
    /// A key running past the end of the entry.
    KeyPastEnd,
    /// A packed key (journal keys are unpacked).
    KeyBadFormat(u8),
    /// A key failed its checks.
    Key(KeyError),
    /// A btree root entry not holding exactly one key.
    BtreeRootBadSize,
    /// Blacklist range with start after end.
    BlacklistStartPastEnd,
    /// Clock entry with `rw` not 0 or 1.
    ClockBadRw(u8),
    /// dev_usage entry with nonzero pad.
    DevUsageBadPad,
    /// Replicas entry with no devices.
    ReplicasNoDevs,
    /// Replicas entry with bad `nr_required`.
    ReplicasBadNrRequired,
    /// Replicas entry naming a device that does not exist.
    ReplicasBadDevice(u8),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use EntryError as E;
        match *self {
            E::PastEnd => f.write_str("journal entry extends past end of jset"),
            E::BadSize { bytes, want } => write!(f, "bad size ({bytes}, want {want})"),
            E::KeyU64sZero => f.write_str("k->u64s 0"),
            E::KeyPastEnd => f.write_str("extends past end of journal entry"),
            E::KeyBadFormat(v) => write!(f, "bad format {v}"),
            E::Key(e) => write!(f, "{e}"),
            E::BtreeRootBadSize => f.write_str("invalid btree root journal entry: wrong number of keys"),
            E::BlacklistStartPastEnd => f.write_str("invalid journal seq blacklist entry: start > end"),
            E::ClockBadRw(rw) => write!(f, "bad rw {rw}"),
            E::DevUsageBadPad => f.write_str("bad pad"),
            E::ReplicasNoDevs => f.write_str("invalid journal entry usage: no devices in entry"),
            E::ReplicasBadNrRequired => f.write_str("invalid journal entry usage: bad nr_required in entry"),
            E::ReplicasBadDevice(d) => write!(f, "invalid journal entry usage: invalid device {d} in entry"),
        }
    }
}

/// Why a jset was rejected, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsetError {
    /// The buffer ends before the jset does.
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// Not a jset of this filesystem (`JOURNAL_ENTRY_NONE`).
    BadMagic {
        /// Expected.
        want: u64,
        /// Found.
        got: u64,
    },
    /// A version 6.12 cannot read.
    UnsupportedVersion {
        /// Sequence number.
        seq: u64,
        /// Version.
        version: u32,
    },
    /// A big-endian jset: not supported.
    BigEndian {
        /// Sequence number.
        seq: u64,
    },
    /// Unknown checksum type.
    UnknownCsumType {
        /// Sequence number.
        seq: u64,
        /// The type.
        ty: u8,
    },
    /// An encrypted jset: not supported.
    Encrypted {
        /// Sequence number.
        seq: u64,
    },
    /// Checksum mismatch.
    BadCsum {
        /// Sequence number.
        seq: u64,
        /// Type.
        ty: CsumType,
        /// Stored.
        stored: Csum,
        /// Computed.
        computed: Csum,
    },
    /// `last_seq` newer than `seq` in a flush write.
    LastSeqNewerThanSeq {
        /// `last_seq`.
        last_seq: u64,
        /// `seq`.
        seq: u64,
    },
    /// The jset is larger than what is left of the bucket.
    TooBig {
        /// Sequence number.
        seq: u64,
        /// Its size, bytes.
        bytes: usize,
        /// Room left, bytes.
        room: usize,
    },
    /// An entry is invalid.
    Entry {
        /// Sequence number of the jset.
        seq: u64,
        /// Offset of the entry in the jset's entries, u64s.
        offset: usize,
        /// Entry type.
        ty: u8,
        /// What is wrong.
        err: EntryError,
    },
    /// Journal entries but none a flush write with a good checksum.
    NoFlushEntries,
    /// Sequence numbers missing between `last_seq` and the newest flush.
    Missing {
        /// First missing.
        start: u64,
        /// Last missing.
        end: u64,
    },
    /// A flush write with a blacklisted sequence number.
    Blacklisted(u64),
    /// Writing: bad options or sizes.
    BadOpts,
    /// Out of memory.
    NoMem,
}

impl From<AllocError> for JsetError {
    fn from(_: AllocError) -> JsetError {
        JsetError::NoMem
    }
}

impl JsetError {
    /// The error number: `EIO` for checksum errors, `EOPNOTSUPP` for what
    /// is not implemented, `ENOMEM`, `EINVAL` for bad writer arguments,
    /// `EUCLEAN` otherwise.
    pub fn errno(&self) -> Errno {
        match self {
            JsetError::BadCsum { .. } => Errno::EIO,
            JsetError::Encrypted { .. } | JsetError::BigEndian { .. } => Errno::EOPNOTSUPP,
            JsetError::NoMem => Errno::ENOMEM,
            JsetError::BadOpts => Errno::EINVAL,
            _ => Errno::EUCLEAN,
        }
    }
}

impl fmt::Display for JsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use JsetError as E;
        match *self {
            E::Truncated { need, have } => write!(f, "journal entry truncated: {need} bytes, buffer has {have}"),
            E::BadMagic { want, got } => write!(f, "not a journal entry (magic {got:x}, want {want:x})"),
            E::UnsupportedVersion { seq, version } => write!(
                f,
                "seq {seq}: incompatible journal entry version {}.{}",
                version >> 10,
                version & 0x3ff
            ),
            E::BigEndian { seq } => write!(f, "seq {seq}: big-endian journal entries are not supported"),
            E::UnknownCsumType { seq, ty } => write!(f, "seq {seq}: journal entry with unknown csum type {ty}"),
            E::Encrypted { seq } => write!(f, "seq {seq}: encrypted journal entries are not supported"),
            E::BadCsum { seq, ty, stored, computed } => write!(
                f,
                "seq {seq}: journal checksum error, type {}: got {} should be {}",
                ty.name(),
                computed.display(ty),
                stored.display(ty)
            ),
            E::LastSeqNewerThanSeq { last_seq, seq } => {
                write!(f, "invalid journal entry: last_seq > seq ({last_seq} > {seq})")
            }
            E::TooBig { seq, bytes, room } => {
                write!(f, "seq {seq}: journal entry too big ({bytes} bytes, {room} left in bucket)")
            }
            E::Entry { seq, offset, ty, err } => {
                write!(f, "invalid journal entry type=")?;
                fmt_entry_type(f, ty)?;
                write!(f, " seq={seq} offset={offset}: {err}")
            }
            E::NoFlushEntries => {
                f.write_str("journal read done, but no entries found after dropping non-flushes")
            }
            E::Missing { start, end } => write!(f, "journal entries {start}-{end} missing!"),
            E::Blacklisted(s) => write!(f, "found blacklisted journal entry {s}"),
            E::BadOpts => f.write_str("bad journal write options"),
            E::NoMem => f.write_str("out of memory"),
        }
    }
}

/// Writes an entry type name as `bch2_prt_jset_entry_type()` does.
pub fn fmt_entry_type(f: &mut dyn fmt::Write, t: u8) -> fmt::Result {
    match ENTRY_TYPE_NAMES.get(t as usize) {
        Some(n) => f.write_str(n),
        None => write!(f, "(unknown jset_entry_type {t})"),
    }
}

/// One journal entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsetEntry<'a> {
    /// Offset in the jset's entries, u64s.
    pub offset: usize,
    /// Btree id (or counter type for `usage`).
    pub btree_id: u8,
    /// Btree level.
    pub level: u8,
    /// Entry type ([`EntryType`] number).
    pub ty: u8,
    /// The data after the header, `u64s * 8` bytes.
    pub data: &'a [u8],
}

impl<'a> JsetEntry<'a> {
    /// Bytes of the entry, header included (`jset_u64s(u64s) * 8`).
    pub fn bytes(&self) -> usize {
        JSET_ENTRY_BYTES + self.data.len()
    }

    /// Whether the entry holds keys (`jset_entry_is_key()`, plus
    /// `overwrite`, which holds keys too).
    pub fn holds_keys(&self) -> bool {
        matches!(
            EntryType::from_u8(self.ty),
            Some(EntryType::BtreeKeys | EntryType::BtreeRoot | EntryType::Overwrite | EntryType::WriteBufferKeys)
        )
    }

    /// The keys of a key entry (unpacked keys); empty for other types.
    pub fn keys(&self) -> KeyIter<'a> {
        KeyIter::unpacked(if self.holds_keys() { self.data } else { &[] })
    }

    /// The node type keys of this entry belong to: roots are interior
    /// keys.
    pub fn node_type(&self) -> NodeType {
        let level = if self.ty == EntryType::BtreeRoot as u8 { 1 } else { self.level };
        NodeType::new(level, u32::from(self.btree_id))
    }

    fn check_keys(&self, ctx: &FsCtx<'_>, write: bool) -> Result<(), EntryError> {
        let node = self.node_type();
        let mut at = 0;
        while at < self.data.len() {
            let rest = &self.data[at..];
            let u64s = rest[0] as usize;
            if u64s == 0 {
                return Err(EntryError::KeyU64sZero);
            }
            if u64s * 8 > rest.len() {
                return Err(EntryError::KeyPastEnd);
            }
            let format = rest.get(1).map_or(0, |b| b & 0x7f);
            if format != super::bkey::KEY_FORMAT_CURRENT {
                return Err(EntryError::KeyBadFormat(format));
            }
            if u64s < BKEY_U64S {
                return Err(EntryError::Key(KeyError::U64sTooSmall(u64s as u8)));
            }
            let mut kb = [0u8; BKEY_BYTES];
            kb.copy_from_slice(&rest[..BKEY_BYTES]);
            let k = Bkey::from_bytes(&kb);
            k.validate(node, false).map_err(EntryError::Key)?;
            let flags = ValidateFlags { write, commit: false };
            validate_val(&k, &rest[BKEY_BYTES..u64s * 8], ctx, flags).map_err(EntryError::Key)?;
            at += u64s * 8;
        }
        Ok(())
    }

    /// `bch2_journal_entry_validate()`: the type's size rules and, for key
    /// entries, every key (`bch2_bkey_validate()`).  Unknown types pass, as
    /// in C.
    pub fn validate(&self, ctx: &FsCtx<'_>, write: bool) -> Result<(), EntryError> {
        let bytes = self.bytes();
        let size = |want: usize, exact: bool| {
            if (exact && bytes != want) || bytes < want {
                Err(EntryError::BadSize { bytes, want })
            } else {
                Ok(())
            }
        };
        use EntryType as T;
        match EntryType::from_u8(self.ty) {
            Some(T::BtreeKeys | T::Overwrite | T::WriteBufferKeys) => self.check_keys(ctx, write),
            Some(T::BtreeRoot) => {
                if self.data.is_empty() || self.data[0] as usize * 8 != self.data.len() {
                    return Err(EntryError::BtreeRootBadSize);
                }
                self.check_keys(ctx, write)
            }
            Some(T::Blacklist) => size(16, true),
            Some(T::BlacklistV2) => {
                size(24, true)?;
                if le64(self.data, 0) > le64(self.data, 8) {
                    return Err(EntryError::BlacklistStartPastEnd);
                }
                Ok(())
            }
            Some(T::Usage) => size(16, false),
            Some(T::DataUsage) => {
                size(19, false)?;
                let nr_devs = self.data[9] as usize;
                size(19 + nr_devs, false)?;
                let nr_required = self.data[10] as usize;
                if nr_devs == 0 {
                    return Err(EntryError::ReplicasNoDevs);
                }
                if nr_required > 1 && nr_required >= nr_devs {
                    return Err(EntryError::ReplicasBadNrRequired);
                }
                if !ctx.devs.is_empty() {
                    for &d in &self.data[11..11 + nr_devs] {
                        if d != u8::MAX && ctx.dev(d).is_none() {
                            return Err(EntryError::ReplicasBadDevice(d));
                        }
                    }
                }
                Ok(())
            }
            Some(T::Clock) => {
                size(24, true)?;
                if self.data[0] > 1 {
                    return Err(EntryError::ClockBadRw(self.data[0]));
                }
                Ok(())
            }
            Some(T::DevUsage) => {
                size(32, false)?;
                if self.data[4..8] != [0; 4] {
                    return Err(EntryError::DevUsageBadPad);
                }
                Ok(())
            }
            Some(T::Datetime) => size(16, false),
            Some(T::PrioPtrs | T::Log) | None => Ok(()),
        }
    }

    /// `bch2_journal_entry_to_text()`.
    pub fn fmt(&self, f: &mut dyn fmt::Write, ctx: Option<&FsCtx<'_>>) -> fmt::Result {
        fmt_entry_type(f, self.ty)?;
        let Some(t) = EntryType::from_u8(self.ty) else { return Ok(()) };
        f.write_str(": ")?;
        let d = self.data;
        use EntryType as T;
        match t {
            T::BtreeKeys | T::BtreeRoot | T::Overwrite | T::WriteBufferKeys => {
                let mut first = true;
                for k in self.keys() {
                    let Ok(k) = k else { break };
                    if !first {
                        f.write_char('\n')?;
                        fmt_entry_type(f, self.ty)?;
                        f.write_str(": ")?;
                    }
                    let u = k.unpack(&super::bkey::BkeyFormat::CURRENT);
                    write!(f, "btree={} l={} ", BtreeIdName(u32::from(self.btree_id)), self.level)?;
                    let v = k.val(&super::bkey::BkeyFormat::CURRENT);
                    write!(f, "{}", KeyDisplay { k: &u, v, ctx })?;
                    first = false;
                }
                Ok(())
            }
            T::PrioPtrs => Ok(()),
            T::Blacklist => write!(f, "seq={}", le64(d, 0)),
            T::BlacklistV2 => write!(f, "start={} end={}", le64(d, 0), le64(d, 8)),
            T::Usage => {
                f.write_str("type=")?;
                match FS_USAGE_TYPE_NAMES.get(self.btree_id as usize) {
                    Some(n) => f.write_str(n)?,
                    None => write!(f, "(unknown fs_usage_type {})", self.btree_id)?,
                }
                write!(f, " v={}", le64(d, 0))
            }
            T::DataUsage => {
                let dt = d.get(8).copied().unwrap_or(0);
                let nr_devs = d.get(9).copied().unwrap_or(0) as usize;
                let nr_required = d.get(10).copied().unwrap_or(0);
                let devs = d.get(11..).unwrap_or(&[]);
                fmt_replicas(f, dt, nr_required, &devs[..nr_devs.min(devs.len())])?;
                write!(f, "={}", le64(d, 0))
            }
            T::Clock => write!(
                f,
                "{}={}",
                if d.first().copied().unwrap_or(0) != 0 { "write" } else { "read" },
                le64(d, 8)
            ),
            T::DevUsage => {
                if self.bytes() < 32 {
                    return Ok(());
                }
                write!(f, "dev={}", u32::from_le_bytes([d[0], d[1], d[2], d[3]]))?;
                for (i, c) in d[24..].chunks_exact(24).enumerate() {
                    f.write_str("\n  ")?;
                    fmt_data_type(f, i as u8)?;
                    write!(
                        f,
                        ": buckets={} sectors={} fragmented={}",
                        le64(c, 0),
                        le64(c, 8),
                        le64(c, 16)
                    )?;
                }
                Ok(())
            }
            T::Log => super::val::dirent::fmt_bytes(f, d),
            // The kernel's bch2_prt_datetime() prints the seconds.
            T::Datetime => write!(f, "{}", le64(d, 0)),
        }
    }
}

/// A jset in a buffer, with its header decoded and its size checked
/// against the buffer.
#[derive(Clone, Copy, Debug)]
pub struct Jset<'a> {
    /// The header.
    pub header: JsetHeader,
    buf: &'a [u8],
}

impl<'a> Jset<'a> {
    /// Takes the jset at the start of `buf`: magic, version
    /// (`bch2_version_compatible()`), byte order and size, as
    /// `jset_validate_early()` checks them.
    ///
    /// Errors: [`JsetError::BadMagic`] when there is no jset here (the
    /// end of the written part of a bucket), the others when there is a
    /// broken one.
    pub fn parse(buf: &'a [u8], magic: u64) -> Result<Jset<'a>, JsetError> {
        let header = JsetHeader::decode(buf).ok_or(JsetError::Truncated { need: JSET_BYTES, have: buf.len() })?;
        if header.magic != magic {
            return Err(JsetError::BadMagic { want: magic, got: header.magic });
        }
        let v = header.version;
        if v > u32::from(u16::MAX) || !Version(v as u16).is_compatible() {
            return Err(JsetError::UnsupportedVersion { seq: header.seq, version: v });
        }
        if header.big_endian() {
            return Err(JsetError::BigEndian { seq: header.seq });
        }
        let bytes = header.bytes();
        let buf = buf.get(..bytes).ok_or(JsetError::Truncated { need: bytes, have: buf.len() })?;
        Ok(Jset { header, buf })
    }

    /// The jset's bytes, header included.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Checks the checksum (`jset_csum_good()`).
    ///
    /// Errors: [`JsetError::UnknownCsumType`], [`JsetError::Encrypted`],
    /// [`JsetError::BadCsum`].
    pub fn verify_csum(&self) -> Result<(), JsetError> {
        let seq = self.header.seq;
        let t = self.header.csum_type();
        if t >= CSUM_NR {
            return Err(JsetError::UnknownCsumType { seq, ty: t });
        }
        let ty = CsumType::from_u8(t).ok_or(JsetError::UnknownCsumType { seq, ty: t })?;
        let computed = checksum::checksum(ty, &self.buf[16..]).map_err(|_| JsetError::Encrypted { seq })?;
        if computed != self.header.csum {
            return Err(JsetError::BadCsum { seq, ty, stored: self.header.csum, computed });
        }
        Ok(())
    }

    /// The entries, in order; an entry running past the end is an error,
    /// after which iteration stops.
    pub fn entries(&self) -> impl Iterator<Item = Result<JsetEntry<'a>, JsetError>> + 'a {
        iter_entries(&self.buf[JSET_BYTES..], self.header.seq)
    }

    /// `jset_validate()`: checksum type, `last_seq <= seq` for flush
    /// writes, and every entry (`jset_validate_entries()`).  Does not check
    /// the checksum itself ([`verify_csum`](Self::verify_csum)).
    pub fn validate(&self, ctx: &FsCtx<'_>) -> Result<(), JsetError> {
        let h = &self.header;
        if h.csum_type() >= CSUM_NR {
            return Err(JsetError::UnknownCsumType { seq: h.seq, ty: h.csum_type() });
        }
        if !h.no_flush() && h.last_seq > h.seq {
            return Err(JsetError::LastSeqNewerThanSeq { last_seq: h.last_seq, seq: h.seq });
        }
        for e in self.entries() {
            let e = e?;
            e.validate(ctx, false)
                .map_err(|err| JsetError::Entry { seq: h.seq, offset: e.offset, ty: e.ty, err })?;
        }
        Ok(())
    }
}

/// Encodes the 8-byte header of C's `struct jset_entry`
/// (fs/bcachefs/bcachefs_format.h): `u64s` (`__le16`), `btree_id`,
/// `level`, `type`, then three pad bytes (zero).  `u64s` counts the 8-byte
/// words of the payload after the header, not the header itself
/// (`jset_u64s()` adds it).  [`iter_entries`] decodes it.
pub fn jset_entry_header(u64s: u16, ty: u8, btree_id: u8, level: u8) -> [u8; JSET_ENTRY_BYTES] {
    let n = u64s.to_le_bytes();
    [n[0], n[1], btree_id, level, ty, 0, 0, 0]
}

/// The entries of a run of jset entries (a jset's, or the superblock's
/// `clean` section's), in order; `seq` only labels errors.  An entry
/// running past the end is an error, after which iteration stops.
pub fn iter_entries(data: &[u8], seq: u64) -> impl Iterator<Item = Result<JsetEntry<'_>, JsetError>> + '_ {
    let mut at = 0usize;
    let mut done = false;
    core::iter::from_fn(move || {
        if done || at >= data.len() {
            return None;
        }
        let offset = at / 8;
        let Some(h) = data.get(at..at + JSET_ENTRY_BYTES) else {
            done = true;
            return Some(Err(JsetError::Entry { seq, offset, ty: 0, err: EntryError::PastEnd }));
        };
        let u64s = u16::from_le_bytes([h[0], h[1]]) as usize;
        let end = at + JSET_ENTRY_BYTES + u64s * 8;
        let Some(d) = data.get(at + JSET_ENTRY_BYTES..end) else {
            done = true;
            return Some(Err(JsetError::Entry { seq, offset, ty: h[4], err: EntryError::PastEnd }));
        };
        let e = JsetEntry { offset, btree_id: h[2], level: h[3], ty: h[4], data: d };
        at = end;
        Some(Ok(e))
    })
}

/// One jset found in a journal bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundJset {
    /// Offset in the bucket, sectors.
    pub offset_sectors: u32,
    /// Sectors it occupies.
    pub sectors: u32,
    /// Its header.
    pub header: JsetHeader,
    /// Whether its checksum is good.
    pub csum_good: bool,
}

/// Walks the jsets of one journal bucket as `journal_read_bucket()` does:
/// from the start, one jset after the other (each rounded up to whole
/// blocks), stopping where there is no jset (after a bad checksum the next
/// block is tried instead) or where sequence numbers go backwards (older
/// data the bucket still holds).
///
/// Errors: a jset of an incompatible version (C stops reading the
/// journal), one larger than the rest of the bucket, or out of memory.
pub fn scan_bucket(bucket: &[u8], magic: u64, block_bytes: usize) -> Result<Vec<FoundJset>, JsetError> {
    let block = block_bytes.max(SECTOR_SIZE);
    let mut out: Vec<FoundJset> = Vec::new();
    let mut at = 0usize;
    let mut saw_bad = false;
    let mut last_seq_seen = 0u64;
    while at + JSET_BYTES <= bucket.len() {
        let j = match Jset::parse(&bucket[at..], magic) {
            Ok(j) => j,
            Err(JsetError::BadMagic { .. }) => {
                if !saw_bad {
                    break;
                }
                at += block;
                continue;
            }
            Err(JsetError::Truncated { need, .. }) => {
                let seq = JsetHeader::decode(&bucket[at..]).map_or(0, |h| h.seq);
                return Err(JsetError::TooBig { seq, bytes: need, room: bucket.len() - at });
            }
            Err(e) => return Err(e),
        };
        let h = j.header;
        if h.seq < last_seq_seen {
            break;
        }
        last_seq_seen = h.seq;
        let csum_good = j.verify_csum().is_ok();
        saw_bad |= !csum_good;
        let sectors = h.sectors(block);
        out.push(FoundJset { offset_sectors: (at / SECTOR_SIZE) as u32, sectors, header: h, csum_good })?;
        at += sectors as usize * SECTOR_SIZE;
    }
    Ok(out)
}

/// What a journal is replayed from: `bch2_journal_read()`'s results.
pub struct ReplayRange {
    /// First sequence number to replay (the newest flush's `last_seq`).
    pub last_seq: u64,
    /// One past the newest flush write: where new writes and the
    /// blacklist of the unflushed tail start.
    pub blacklist_seq: u64,
    /// One past the newest write found.
    pub start_seq: u64,
    /// Indices (into the input) of the writes to replay, in order.
    pub replay: Vec<usize>,
}

impl fmt::Debug for ReplayRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayRange")
            .field("last_seq", &self.last_seq)
            .field("blacklist_seq", &self.blacklist_seq)
            .field("start_seq", &self.start_seq)
            .field("replay", &&self.replay[..])
            .finish()
    }
}

impl PartialEq for ReplayRange {
    fn eq(&self, o: &Self) -> bool {
        (self.last_seq, self.blacklist_seq, self.start_seq) == (o.last_seq, o.blacklist_seq, o.start_seq)
            && self.replay[..] == o.replay[..]
    }
}

impl Eq for ReplayRange {}

/// Applies the sequence rules of `bch2_journal_read()` to the jsets found
/// (one per sequence number, any order): picks the newest flush write with
/// a good checksum (skipping one torn last write), replays from its
/// `last_seq` up to it, and checks that nothing in between is missing
/// unless blacklisted (`[start, end)` ranges).  Returns `None` when there
/// are no jsets at all.
///
/// Errors: [`JsetError::NoFlushEntries`], [`JsetError::Missing`],
/// [`JsetError::Blacklisted`], [`JsetError::LastSeqNewerThanSeq`],
/// [`JsetError::NoMem`].
pub fn replay_range(found: &[JsetHeaderInfo], blacklist: &[(u64, u64)]) -> Result<Option<ReplayRange>, JsetError> {
    let is_bl = |s: u64| blacklist.iter().any(|&(a, b)| s >= a && s < b);
    let mut order: Vec<usize> = Vec::with_capacity(found.len())?;
    for i in 0..found.len() {
        order.push(i)?;
    }
    // Insertion sort by seq: no allocation, inputs are small.
    for i in 1..order.len() {
        let mut j = i;
        while j > 0 && found[order[j - 1]].seq > found[order[j]].seq {
            order.swap(j - 1, j);
            j -= 1;
        }
    }
    let Some(&newest) = order.last() else { return Ok(None) };
    let start_seq = found[newest].seq.saturating_add(1);
    let mut torn = false;
    let mut pick = None;
    for &i in order.iter().rev() {
        let e = &found[i];
        if e.no_flush {
            continue;
        }
        if !torn && !e.csum_good {
            torn = true;
            continue;
        }
        if e.last_seq > e.seq {
            return Err(JsetError::LastSeqNewerThanSeq { last_seq: e.last_seq, seq: e.seq });
        }
        pick = Some((e.last_seq, e.seq.saturating_add(1)));
        break;
    }
    let Some((last_seq, blacklist_seq)) = pick else { return Err(JsetError::NoFlushEntries) };
    if last_seq == 0 {
        return Err(JsetError::NoFlushEntries);
    }
    let mut replay: Vec<usize> = Vec::new();
    let mut seq = last_seq;
    for &i in order.iter() {
        let e = &found[i];
        if e.seq < last_seq || e.seq >= blacklist_seq {
            continue;
        }
        if is_bl(e.seq) {
            if !e.no_flush {
                return Err(JsetError::Blacklisted(e.seq));
            }
            continue;
        }
        // Blacklisted sequence numbers may be absent; any other is missing.
        // Jump over whole ranges: sequence numbers are 64-bit, so stepping
        // one at a time through a gap could take forever.
        while seq < e.seq {
            match blacklist.iter().find(|&&(a, b)| seq >= a && seq < b) {
                Some(&(_, b)) => seq = b.min(e.seq),
                None => break,
            }
        }
        if seq < e.seq {
            // The missing run ends where the next blacklisted range starts.
            let next_bl = blacklist.iter().filter(|&&(a, b)| a > seq && a < b).map(|&(a, _)| a).min();
            let end = next_bl.map_or(e.seq, |a| a.min(e.seq));
            return Err(JsetError::Missing { start: seq, end: end - 1 });
        }
        replay.push(i)?;
        seq = e.seq.saturating_add(1);
    }
    Ok(Some(ReplayRange { last_seq, blacklist_seq, start_seq, replay }))
}

/// What [`replay_range`] needs of a jset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsetHeaderInfo {
    /// Sequence number.
    pub seq: u64,
    /// `last_seq`.
    pub last_seq: u64,
    /// `JSET_NO_FLUSH`.
    pub no_flush: bool,
    /// Checksum good.
    pub csum_good: bool,
}

impl From<&FoundJset> for JsetHeaderInfo {
    fn from(f: &FoundJset) -> Self {
        JsetHeaderInfo {
            seq: f.header.seq,
            last_seq: f.header.last_seq,
            no_flush: f.header.no_flush(),
            csum_good: f.csum_good,
        }
    }
}

/// Builds a jset: entries appended in order, then [`finish`](Self::finish)
/// sets the size and checksum and pads to a block.
pub struct JsetBuilder {
    header: JsetHeader,
    buf: Vec<u8>,
}

impl JsetBuilder {
    /// A jset with sequence number `seq`, oldest needed `last_seq`,
    /// metadata `version`, for a filesystem with journal magic `magic`.
    pub fn new(seq: u64, last_seq: u64, version: u16, magic: u64) -> Result<Self, JsetError> {
        let mut buf = Vec::new();
        buf.resize(JSET_BYTES, 0)?;
        let header = JsetHeader { seq, last_seq, version: u32::from(version), magic, ..JsetHeader::default() };
        Ok(JsetBuilder { header, buf })
    }

    /// Marks the write no-flush (`JSET_NO_FLUSH`).
    pub fn set_no_flush(&mut self, v: bool) {
        self.header.flags = (self.header.flags & !(1 << 5)) | u32::from(v) << 5;
    }

    /// Appends a raw entry; `data` must be a whole number of u64s.
    pub fn add(&mut self, ty: u8, btree_id: u8, level: u8, data: &[u8]) -> Result<(), JsetError> {
        if data.len() % 8 != 0 || data.len() / 8 > u16::MAX as usize {
            return Err(JsetError::BadOpts);
        }
        let u64s = (data.len() / 8) as u16;
        self.buf.extend_from_slice(&jset_entry_header(u64s, ty, btree_id, level))?;
        self.buf.extend_from_slice(data)?;
        Ok(())
    }

    /// Appends a key entry of type `ty` (btree_keys, btree_root, overwrite
    /// or write_buffer_keys): keys unpacked, each with its value.
    pub fn add_keys(&mut self, ty: EntryType, btree_id: u8, level: u8, keys: &[(Bkey, &[u8])]) -> Result<(), JsetError> {
        let mut data: Vec<u8> = Vec::new();
        for (k, v) in keys {
            if v.len() % 8 != 0 || v.len() / 8 > super::bkey::BKEY_VAL_U64S_MAX {
                return Err(JsetError::BadOpts);
            }
            let mut k = *k;
            k.u64s = (BKEY_U64S + v.len() / 8) as u8;
            data.extend_from_slice(&k.to_bytes())?;
            data.extend_from_slice(v)?;
        }
        self.add(ty as u8, btree_id, level, &data)
    }

    /// Appends a `blacklist_v2` entry for `[start, end]`.
    pub fn add_blacklist_v2(&mut self, start: u64, end: u64) -> Result<(), JsetError> {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&start.to_le_bytes());
        d[8..].copy_from_slice(&end.to_le_bytes());
        self.add(EntryType::BlacklistV2 as u8, 0, 0, &d)
    }

    /// Appends a `usage` entry for counter `ty` (`FS_USAGE_TYPE_NAMES`).
    pub fn add_usage(&mut self, ty: u8, v: u64) -> Result<(), JsetError> {
        self.add(EntryType::Usage as u8, ty, 0, &v.to_le_bytes())
    }

    /// Appends a `clock` entry (`rw` 0 read, 1 write).
    pub fn add_clock(&mut self, rw: u8, time: u64) -> Result<(), JsetError> {
        let mut d = [0u8; 16];
        d[0] = rw;
        d[8..].copy_from_slice(&time.to_le_bytes());
        self.add(EntryType::Clock as u8, 0, 0, &d)
    }

    /// Appends a `datetime` entry (seconds since the epoch).
    pub fn add_datetime(&mut self, secs: u64) -> Result<(), JsetError> {
        self.add(EntryType::Datetime as u8, 0, 0, &secs.to_le_bytes())
    }

    /// Appends a `log` entry; the message is NUL-padded to whole u64s.
    pub fn add_log(&mut self, msg: &[u8]) -> Result<(), JsetError> {
        let mut d: Vec<u8> = Vec::new();
        d.extend_from_slice(msg)?;
        let n = msg.len().div_ceil(8) * 8;
        d.resize(n, 0)?;
        self.add(EntryType::Log as u8, 0, 0, &d)
    }

    /// Appends a `data_usage` entry: `v` sectors of `data_type` replicated
    /// on `devs`.
    pub fn add_data_usage(&mut self, v: u64, data_type: u8, nr_required: u8, devs: &[u8]) -> Result<(), JsetError> {
        let n = u8::try_from(devs.len()).map_err(|_| JsetError::BadOpts)?;
        let mut d: Vec<u8> = Vec::new();
        d.extend_from_slice(&v.to_le_bytes())?;
        d.extend_from_slice(&[data_type, n, nr_required])?;
        d.extend_from_slice(devs)?;
        let len = d.len().div_ceil(8) * 8;
        d.resize(len, 0)?;
        self.add(EntryType::DataUsage as u8, 0, 0, &d)
    }

    /// Appends a `dev_usage` entry: per data type (buckets, sectors,
    /// fragmented).
    pub fn add_dev_usage(&mut self, dev: u32, types: &[(u64, u64, u64)]) -> Result<(), JsetError> {
        let mut d: Vec<u8> = Vec::new();
        d.extend_from_slice(&dev.to_le_bytes())?;
        d.resize(24, 0)?;
        for (b, s, fr) in types {
            d.extend_from_slice(&b.to_le_bytes())?;
            d.extend_from_slice(&s.to_le_bytes())?;
            d.extend_from_slice(&fr.to_le_bytes())?;
        }
        self.add(EntryType::DevUsage as u8, 0, 0, &d)
    }

    /// Sets the size, checksums with `csum_type` and pads with zeroes to a
    /// whole number of `block_bytes` blocks.
    ///
    /// Errors: [`JsetError::BadOpts`] for an encrypted checksum type or a
    /// bad block size; [`JsetError::NoMem`].
    pub fn finish(mut self, csum_type: CsumType, block_bytes: usize) -> Result<Vec<u8>, JsetError> {
        if csum_type.is_encryption() || block_bytes < SECTOR_SIZE || !block_bytes.is_power_of_two() {
            return Err(JsetError::BadOpts);
        }
        let u64s = (self.buf.len() - JSET_BYTES) / 8;
        self.header.u64s = u32::try_from(u64s).map_err(|_| JsetError::BadOpts)?;
        self.header.flags = (self.header.flags & !0xf) | csum_type as u32;
        self.header.encode(&mut self.buf).ok_or(JsetError::BadOpts)?;
        let end = self.buf.len();
        let c = checksum::checksum(csum_type, &self.buf[16..end]).map_err(|_| JsetError::BadOpts)?;
        self.buf[..16].copy_from_slice(&c.to_bytes());
        let padded = end.div_ceil(block_bytes) * block_bytes;
        self.buf.resize(padded, 0)?;
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bkey::KeyType;
    use crate::format::bpos::Bpos;
    use crate::format::val::extent::{BtreePtrV2, ExtentPtr};
    use crate::format::version::VERSION_CURRENT;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec as StdVec;

    const MAGIC: u64 = 0xabcdef;

    fn sample(seq: u64, last_seq: u64) -> StdVec<u8> {
        let mut b = JsetBuilder::new(seq, last_seq, VERSION_CURRENT, MAGIC).unwrap();
        let k = Bkey::new(KeyType::Lru, Bpos::pos(1, 5), 1);
        b.add_keys(EntryType::BtreeKeys, 10, 0, &[(k, &9u64.to_le_bytes()[..]), (k, &10u64.to_le_bytes()[..])]).unwrap();
        let mut root = [0u8; 48];
        BtreePtrV2 { mem_ptr: 0, seq: 0x77, sectors_written: 8, flags: 0, min_key: Bpos::default() }.encode(&mut root).unwrap();
        root[40..48].copy_from_slice(&ExtentPtr { offset: 4096, gen: 0, ..Default::default() }.encode().to_le_bytes());
        let rk = Bkey::new(KeyType::BtreePtrV2, Bpos::new(u64::MAX, u64::MAX, u32::MAX), 6);
        b.add_keys(EntryType::BtreeRoot, 1, 0, &[(rk, &root[..])]).unwrap();
        b.add_blacklist_v2(3, 4).unwrap();
        b.add_usage(1, 42).unwrap();
        b.add_clock(1, 1000).unwrap();
        b.add_datetime(1_700_000_000).unwrap();
        b.add_log(b"hello journal").unwrap();
        b.add_data_usage(512, 4, 1, &[0]).unwrap();
        b.add_dev_usage(0, &[(1, 2, 3), (4, 5, 6)]).unwrap();
        b.finish(CsumType::Crc32c, 4096).unwrap().to_vec()
    }

    #[test]
    fn write_read_round_trip_and_text() {
        let buf = sample(10, 8);
        assert_eq!(buf.len(), 4096);
        let j = Jset::parse(&buf, MAGIC).unwrap();
        assert_eq!((j.header.seq, j.header.last_seq), (10, 8));
        j.verify_csum().unwrap();
        j.validate(&FsCtx::default()).unwrap();
        let mut lines = StdVec::new();
        for e in j.entries() {
            let mut s = String::new();
            e.unwrap().fmt(&mut s, None).unwrap();
            lines.push(s);
        }
        assert_eq!(
            lines[0],
            "btree_keys: btree=lru l=0 u64s 6 type lru 1:5:0 len 0 ver 0: idx 9\nbtree_keys: btree=lru l=0 u64s 6 type lru 1:5:0 len 0 ver 0: idx 10"
        );
        assert!(lines[1].starts_with("btree_root: btree=inodes l=0 u64s 11 type btree_ptr_v2 SPOS_MAX len 0 ver 0: seq 77 written 8 min_key POS_MIN ptr: 0:4096 gen 0"), "{}", lines[1]);
        assert_eq!(lines[2], "blacklist_v2: start=3 end=4");
        assert_eq!(lines[3], "usage: type=inodes v=42");
        assert_eq!(lines[4], "clock: write=1000");
        assert_eq!(lines[5], "datetime: 1700000000");
        assert_eq!(lines[6], "log: hello journal");
        assert_eq!(lines[7], "data_usage: user: 1/1 [0]=512");
        assert_eq!(lines[8], "dev_usage: dev=0\n  free: buckets=1 sectors=2 fragmented=3\n  sb: buckets=4 sectors=5 fragmented=6");
        let found = scan_bucket(&buf, MAGIC, 4096).unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].csum_good);
    }

    #[test]
    fn bad_jsets_are_typed_errors() {
        let buf = sample(10, 8);
        assert!(matches!(Jset::parse(&buf, 1), Err(JsetError::BadMagic { .. })));
        let mut bad = buf.clone();
        bad[100] ^= 1;
        assert!(matches!(Jset::parse(&bad, MAGIC).unwrap().verify_csum(), Err(JsetError::BadCsum { seq: 10, .. })));
        assert!(matches!(Jset::parse(&buf[..60], MAGIC), Err(JsetError::Truncated { .. })));
        let late = sample(10, 11);
        assert_eq!(
            Jset::parse(&late, MAGIC).unwrap().validate(&FsCtx::default()),
            Err(JsetError::LastSeqNewerThanSeq { last_seq: 11, seq: 10 })
        );
        let mut ver = buf.clone();
        ver[32..36].copy_from_slice(&(3u32 << 10).to_le_bytes());
        assert!(matches!(Jset::parse(&ver, MAGIC), Err(JsetError::UnsupportedVersion { .. })));
        // A clock entry with rw 2.
        let mut b = JsetBuilder::new(1, 1, VERSION_CURRENT, MAGIC).unwrap();
        b.add_clock(2, 0).unwrap();
        let j = b.finish(CsumType::None, 512).unwrap();
        assert!(matches!(
            Jset::parse(&j, MAGIC).unwrap().validate(&FsCtx::default()),
            Err(JsetError::Entry { err: EntryError::ClockBadRw(2), .. })
        ));
        // A key entry holding a packed key.
        let mut b = JsetBuilder::new(1, 1, VERSION_CURRENT, MAGIC).unwrap();
        b.add(0, 10, 0, &[1, 0, 25, 0, 0, 0, 0, 0]).unwrap();
        let j = b.finish(CsumType::None, 512).unwrap();
        assert!(matches!(
            Jset::parse(&j, MAGIC).unwrap().validate(&FsCtx::default()),
            Err(JsetError::Entry { err: EntryError::KeyBadFormat(0), .. })
        ));
        // An entry running past the jset.
        let mut b = JsetBuilder::new(1, 1, VERSION_CURRENT, MAGIC).unwrap();
        b.add(9, 0, 0, &[0; 8]).unwrap();
        let mut j = b.finish(CsumType::None, 512).unwrap();
        j[JSET_BYTES] = 5;
        assert!(matches!(
            Jset::parse(&j, MAGIC).unwrap().validate(&FsCtx::default()),
            Err(JsetError::Entry { err: EntryError::PastEnd, .. })
        ));
    }

    /// `jset_entry_header` lays out `struct jset_entry` as
    /// `iter_entries` reads it back.
    #[test]
    fn entry_header_round_trip() {
        let h = jset_entry_header(0x0102, 7, 3, 1);
        assert_eq!(h, [0x02, 0x01, 3, 1, 7, 0, 0, 0]);
        let mut buf: StdVec<u8> = StdVec::new();
        buf.extend_from_slice(&jset_entry_header(1, EntryType::Usage as u8, 2, 0));
        buf.extend_from_slice(&42u64.to_le_bytes());
        buf.extend_from_slice(&jset_entry_header(0, EntryType::Datetime as u8, 0, 5));
        let es: StdVec<_> = iter_entries(&buf, 1).map(Result::unwrap).collect();
        assert_eq!(es.len(), 2);
        assert_eq!((es[0].ty, es[0].btree_id, es[0].level, es[0].data), (EntryType::Usage as u8, 2, 0, &42u64.to_le_bytes()[..]));
        assert_eq!((es[1].offset, es[1].ty, es[1].level, es[1].data.len()), (2, EntryType::Datetime as u8, 5, 0));
    }

    /// Regression (fuzz target `jset`, hang): a jset whose `last_seq` is
    /// far below its `seq` made the search for the end of the missing run
    /// step through 2^63 sequence numbers.
    #[test]
    fn replay_range_huge_gap_returns() {
        let info = [
            JsetHeaderInfo { seq: 1, last_seq: 1, no_flush: false, csum_good: true },
            JsetHeaderInfo { seq: 1 << 63, last_seq: 1, no_flush: false, csum_good: true },
        ];
        assert_eq!(replay_range(&info, &[]), Err(JsetError::Missing { start: 2, end: (1 << 63) - 1 }));
        assert_eq!(replay_range(&info, &[(3, 4)]), Err(JsetError::Missing { start: 2, end: 2 }));
        assert_eq!(replay_range(&info, &[(2, 1 << 62)]), Err(JsetError::Missing { start: 1 << 62, end: (1 << 63) - 1 }));
        assert_eq!(replay_range(&info, &[(2, 1 << 62), (5, 1 << 63)]).unwrap().unwrap().replay.len(), 2);
        assert_eq!(
            replay_range(&info, &[(10, 20), (2, 12), (25, 30)]),
            Err(JsetError::Missing { start: 20, end: 24 })
        );
    }

    /// The range jumps give what stepping one sequence number at a time
    /// gives, on small numbers.
    #[test]
    fn replay_range_gaps_match_stepping() {
        let mut x = 0x1234_5678u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..3000 {
            let top = 5 + rnd(30);
            let mut info: StdVec<JsetHeaderInfo> = StdVec::new();
            for seq in 1..=top {
                if seq == top || seq == 1 || rnd(3) == 0 {
                    info.push(JsetHeaderInfo { seq, last_seq: 1, no_flush: seq != top && rnd(4) == 0, csum_good: true });
                }
            }
            let bl: StdVec<(u64, u64)> = (0..rnd(4)).map(|_| {
                let a = 2 + rnd(top);
                (a, a + rnd(6))
            }).collect();
            let is_bl = |s: u64| bl.iter().any(|&(a, b)| s >= a && s < b);
            // The reference: the first sequence number that is neither
            // present nor blacklisted, and the run of such numbers there.
            let present: StdVec<u64> = info.iter().map(|i| i.seq).collect();
            let want = (1..top).find(|s| !present.contains(s) && !is_bl(*s)).map(|start| {
                let mut end = start;
                while end + 1 < top && !is_bl(end + 1) && !present.contains(&(end + 1)) {
                    end += 1;
                }
                (start, end)
            });
            match replay_range(&info, &bl) {
                Err(JsetError::Missing { start, end }) => assert_eq!(Some((start, end)), want, "{info:?} {bl:?}"),
                Err(JsetError::Blacklisted(_)) => {}
                Ok(_) => assert_eq!(want, None, "{info:?} {bl:?}"),
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn bucket_scan_and_replay_rules() {
        let mut bucket = StdVec::new();
        for seq in 5..9 {
            bucket.extend_from_slice(&sample(seq, 5));
        }
        bucket.resize(64 * 1024, 0);
        let found = scan_bucket(&bucket, MAGIC, 4096).unwrap();
        assert_eq!(found.iter().map(|f| f.header.seq).collect::<StdVec<_>>(), [5, 6, 7, 8]);
        let info: StdVec<JsetHeaderInfo> = found.iter().map(JsetHeaderInfo::from).collect();
        let r = replay_range(&info, &[]).unwrap().unwrap();
        assert_eq!((r.last_seq, r.blacklist_seq, r.start_seq), (5, 9, 9));
        assert_eq!(&r.replay[..], &[0, 1, 2, 3]);
        // A torn last write is skipped once.
        let mut torn = info.clone();
        torn[3].csum_good = false;
        let r = replay_range(&torn, &[]).unwrap().unwrap();
        assert_eq!((r.blacklist_seq, r.start_seq, r.replay.len()), (8, 9, 3));
        // No-flush writes after the last flush are not replayed.
        let mut nf = info.clone();
        nf[3].no_flush = true;
        let r = replay_range(&nf, &[]).unwrap().unwrap();
        assert_eq!(r.blacklist_seq, 8);
        // A gap is an error unless blacklisted.
        let gap: StdVec<_> = info.iter().copied().filter(|i| i.seq != 6).collect();
        assert_eq!(replay_range(&gap, &[]), Err(JsetError::Missing { start: 6, end: 6 }));
        assert_eq!(replay_range(&gap, &[(6, 7)]).unwrap().unwrap().replay.len(), 3);
        // A blacklisted flush write is an error.
        assert_eq!(replay_range(&info, &[(7, 8)]), Err(JsetError::Blacklisted(7)));
        assert_eq!(replay_range(&[], &[]), Ok(None));
        let all_nf: StdVec<_> = info.iter().map(|i| JsetHeaderInfo { no_flush: true, ..*i }).collect();
        assert_eq!(replay_range(&all_nf, &[]), Err(JsetError::NoFlushEntries));
        // Older data after newer in the bucket ends the scan.
        let mut b2 = sample(9, 5);
        b2.extend_from_slice(&sample(3, 1));
        assert_eq!(scan_bucket(&b2, MAGIC, 4096).unwrap().len(), 1);
        // A jset larger than the bucket.
        assert!(matches!(scan_bucket(&b2[..100], MAGIC, 512), Err(JsetError::TooBig { .. })));
        // After a bad checksum the next block is tried.
        let mut b3 = sample(5, 5);
        b3[200] ^= 1;
        b3.extend_from_slice(&[0u8; 4096]);
        b3.extend_from_slice(&sample(6, 5));
        let f = scan_bucket(&b3, MAGIC, 4096).unwrap();
        assert_eq!(f.iter().map(|f| (f.header.seq, f.csum_good)).collect::<StdVec<_>>(), [(5, false), (6, true)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn arbitrary_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..1024), deep in any::<bool>()) {
            if deep && b.len() >= JSET_BYTES {
                b[16..24].copy_from_slice(&MAGIC.to_le_bytes());
                b[32..36].copy_from_slice(&u32::from(VERSION_CURRENT).to_le_bytes());
                b[36] &= 0xe0;
                let u64s = ((b.len() - JSET_BYTES) / 8) as u32;
                b[40..44].copy_from_slice(&u64s.to_le_bytes());
            }
            if let Ok(j) = Jset::parse(&b, MAGIC) {
                let _ = j.verify_csum();
                let _ = j.validate(&FsCtx::default());
                for e in j.entries().flatten() {
                    let mut s = String::new();
                    let _ = e.fmt(&mut s, None);
                    let _ = e.validate(&FsCtx::default(), true);
                }
            }
            let _ = scan_bucket(&b, MAGIC, 512);
        }

        #[test]
        fn replay_never_panics(v in proptest::collection::vec((0u64..40, 0u64..40, any::<bool>(), any::<bool>()), 0..20)) {
            let info: StdVec<JsetHeaderInfo> = v.iter().map(|&(s, l, nf, good)| JsetHeaderInfo { seq: s, last_seq: l, no_flush: nf, csum_good: good }).collect();
            let _ = replay_range(&info, &[(3, 5)]);
        }
    }
}
