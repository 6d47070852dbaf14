// SPDX-License-Identifier: GPL-2.0
//! Building superblocks: [`SbBuf`], an owned superblock with setters, and
//! [`format`], which lays out a fresh single-device filesystem the way
//! bcachefs-tools' `bch2_format()` does.
//!
//! # What a fresh superblock needs, and why
//!
//! The filesystem is left uninitialised (`BCH_SB_INITIALIZED` clear): on
//! its first mount `bch2_fs_start()` sees that and runs
//! `bch2_fs_initialize()` (`recovery.c`), which allocates the journal,
//! creates the btree roots, the root directory and `lost+found`, marks the
//! superblock buckets and finally sets `BCH_SB_INITIALIZED`.  Before that,
//! the superblock must get through `bch2_read_super()`, `bch2_fs_alloc()`
//! and `bch2_dev_attach_bdev()` (`super.c`).  Field by field:
//!
//! - `magic`, `layout.magic`: `BCHFS_MAGIC` (`read_one_super()`,
//!   `validate_sb_layout()`).
//! - `version` = `version_min` = 1.13, the newest 6.12 knows
//!   (`bch2_sb_compatible()`; bcachefs-tools formats at the running
//!   kernel's version).  `BCH_SB_VERSION_UPGRADE_COMPLETE` = `version`:
//!   what `bch2_sb_validate()` fills in when it reads a zero there.
//! - `features[0]` = `BCH_SB_FEATURES_ALL` (bcachefs-tools for a current
//!   version; `bch2_fs_initialize()` → `bch2_sb_upgrade()` would add them
//!   anyway); `features[1]` = 0 and no bits past `BCH_FEATURE_NR`
//!   (`bch2_sb_validate()`).  `compat` = 0: `bch2_fs_initialize()` sets
//!   the `*_done` bits itself.
//! - `uuid`, `user_uuid`: random, nonzero (`bch2_sb_validate()`).  The
//!   caller supplies them (the host tool reads `/dev/urandom`).
//! - `label`: up to 31 bytes, NUL-padded (bcachefs-tools insists on a
//!   terminating NUL).
//! - `block_size`: a power of two from 512 bytes to a page
//!   (`bch2_opt_validate()` and the `PAGE_SECTORS` check in
//!   `bch2_sb_validate()`); bcachefs-tools takes the device's block size,
//!   we default to 4096.
//! - `dev_idx` = 0, `nr_devices` = 1 (`bch2_sb_validate()`).
//! - `time_base_lo` = now in nanoseconds, `time_precision` = 1
//!   (`bch2_sb_validate()`: between 1 and `NSEC_PER_SEC`; bcachefs-tools
//!   uses 1).  `write_time` = now in seconds.  `seq` = 0.
//! - Every option with a superblock field ([`SB_OPTS`]) at its default or
//!   the caller's value, as bcachefs-tools' `bch2_opt_set_sb_all()` does.
//!   Several defaults are not optional: `bch2_sb_validate()` runs
//!   `bch2_opt_validate()` on all of them, so zero replicas,
//!   `gc_reserve_percent` < 5, `encoded_extent_max` < 4k or a zero btree
//!   node size are rejected.  The btree node size is 256k or the bucket
//!   size if smaller (bcachefs-tools).
//! - `BCH_SB_CSUM_TYPE` = `bch2_csum_opt_to_type(metadata_checksum,
//!   false)`, as `write_one_super()` sets it; the checksum covers
//!   `version` to the end (`csum_vstruct()`).
//! - Fields: `members_v2` with one `struct bch_member` (uuid, `nbuckets`,
//!   `first_bucket` = 0, `bucket_size`, and the device options
//!   bcachefs-tools sets: `discard`, `durability` = 1 stored as 2
//!   (`OPT_SB_FIELD_ONE_BIAS`), `data_allowed` = journal|btree|user —
//!   without those the device could hold no metadata); `members_v1`, a
//!   56-byte copy, because `bch2_sb_validate()` insists on it
//!   (`bch2_sb_members_cpy_v2_v1()`); and an empty `ext`, which
//!   `bch2_fs_start()` would otherwise add.  No journal field: the journal
//!   is allocated by `bch2_fs_initialize()`.  No replicas, disk groups,
//!   clean, errors, counters or downgrade fields: all optional.
//! - `first_bucket` = 0, as bcachefs-tools writes it: the buckets holding
//!   sectors 0-7, the superblock copies and the layout are excluded by the
//!   kernel itself (`is_superblock_bucket()` while allocating the journal
//!   of a new filesystem, `bch2_trans_mark_dev_sb()` marking them
//!   `BCH_DATA_sb`).  The member must have at least 64 buckets past
//!   `first_bucket`, a bucket no smaller than a block or a btree node
//!   (`validate_member()`), and the device must hold `nbuckets *
//!   bucket_size` sectors (`__bch2_dev_attach_bdev()`).
//! - Layout (`bch2_sb_layout_init()` in bcachefs-tools): 1 MiB slots
//!   (`sb_max_size_bits` = 11), the primary at sector 8, the first backup
//!   right after its slot (sector 2056, rounded up to a block), and a
//!   second backup in the last slot of the device rounded down to a
//!   bucket.  `validate_sb_layout()` requires the slots not to overlap.
//!   The layout is also written alone to sector 7 (`BCH_SB_LAYOUT_SECTOR`),
//!   where `__bch2_read_super()` looks for the backups when the primary is
//!   bad, and sectors 0-6 are zeroed.

use core::fmt;

use super::sb::{
    off, FieldType, Layout, Sb, SbError, ValidateMode, BCHFS_MAGIC, FIELD_EXT_BYTES,
    LABEL_BYTES, LAYOUT_BYTES, LAYOUT_MAX_SUPERBLOCKS, PAGE_SECTORS, SB_FIXED_BYTES, SB_SECTOR,
};
use super::sb_members::{
    Member, MemberFlag, MEMBERS_V1_HEADER, MEMBERS_V2_HEADER, MEMBER_BYTES, MEMBER_NBUCKETS_MAX,
    MEMBER_V1_BYTES, MIN_NR_NBUCKETS,
};
use super::sb_opts::{
    csum_opt_to_type, sb_opt, OptError, OptField, SbFlag, SbOpt, DATA_BTREE, DATA_JOURNAL,
    DATA_USER, FEATURES_ALL, SB_OPTS,
};
use super::version::VERSION_CURRENT;
use crate::checksum;
use crate::errcode::AllocError;
use crate::platform::{Vec, SECTOR_SIZE};

/// An owned superblock under construction: the fixed part plus fields,
/// always exactly `752 + 8 * u64s` bytes.
///
/// Not `Clone`: the kernel's `Vec` only copies fallibly, see
/// [`SbBuf::try_clone`].
pub struct SbBuf {
    b: Vec<u8>,
}

impl fmt::Debug for SbBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SbBuf").field("bytes", &self.b.len()).finish()
    }
}

impl SbBuf {
    /// A zeroed fixed part and no fields.
    pub fn new() -> Result<SbBuf, AllocError> {
        let mut b = Vec::with_capacity(4096)?;
        b.resize(SB_FIXED_BYTES, 0)?;
        Ok(SbBuf { b })
    }

    /// A copy of a parsed superblock.
    pub fn from_sb(sb: &Sb<'_>) -> Result<SbBuf, AllocError> {
        let mut b = Vec::with_capacity(sb.bytes().len())?;
        b.extend_from_slice(sb.bytes())?;
        Ok(SbBuf { b })
    }

    /// A copy.
    pub fn try_clone(&self) -> Result<SbBuf, AllocError> {
        let mut b = Vec::with_capacity(self.b.len())?;
        b.extend_from_slice(&self.b)?;
        Ok(SbBuf { b })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.b
    }

    /// The bytes, for tests and repair tools that poke at them; keep
    /// `u64s` consistent with the length.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.b
    }

    /// Typed read access ([`Sb::parse`]).
    pub fn sb(&self) -> Result<Sb<'_>, SbError> {
        Sb::parse(&self.b)
    }

    fn put(&mut self, at: usize, v: &[u8]) {
        self.b[at..at + v.len()].copy_from_slice(v);
    }

    /// Sets `version`.
    pub fn set_version(&mut self, v: u16) {
        self.put(off::VERSION, &v.to_le_bytes());
    }

    /// Sets `version_min`.
    pub fn set_version_min(&mut self, v: u16) {
        self.put(off::VERSION_MIN, &v.to_le_bytes());
    }

    /// Sets `magic`.
    pub fn set_magic(&mut self, m: &[u8; 16]) {
        self.put(off::MAGIC, m);
    }

    /// Sets the internal uuid.
    pub fn set_uuid(&mut self, u: &[u8; 16]) {
        self.put(off::UUID, u);
    }

    /// Sets the external uuid.
    pub fn set_user_uuid(&mut self, u: &[u8; 16]) {
        self.put(off::USER_UUID, u);
    }

    /// Sets the label (NUL-padded).
    ///
    /// Errors: `Err(len)` if `label` is longer than 32 bytes.
    pub fn set_label(&mut self, label: &[u8]) -> Result<(), usize> {
        if label.len() > LABEL_BYTES {
            return Err(label.len());
        }
        let mut l = [0u8; LABEL_BYTES];
        l[..label.len()].copy_from_slice(label);
        self.put(off::LABEL, &l);
        Ok(())
    }

    /// Sets `offset`, the sector this copy is written at.
    pub fn set_offset(&mut self, v: u64) {
        self.put(off::OFFSET, &v.to_le_bytes());
    }

    /// Sets `seq`.
    pub fn set_seq(&mut self, v: u64) {
        self.put(off::SEQ, &v.to_le_bytes());
    }

    /// Sets `block_size`, in sectors.
    pub fn set_block_size(&mut self, sectors: u16) {
        self.put(off::BLOCK_SIZE, &sectors.to_le_bytes());
    }

    /// Sets `dev_idx`.
    pub fn set_dev_idx(&mut self, v: u8) {
        self.b[off::DEV_IDX] = v;
    }

    /// Sets `nr_devices`.
    pub fn set_nr_devices(&mut self, v: u8) {
        self.b[off::NR_DEVICES] = v;
    }

    /// Sets `time_base_lo` (nanoseconds), `time_base_hi` and
    /// `time_precision` (nanoseconds).
    pub fn set_time(&mut self, base_lo: u64, base_hi: u32, precision: u32) {
        self.put(off::TIME_BASE_LO, &base_lo.to_le_bytes());
        self.put(off::TIME_BASE_HI, &base_hi.to_le_bytes());
        self.put(off::TIME_PRECISION, &precision.to_le_bytes());
    }

    /// Sets `write_time` (seconds).
    pub fn set_write_time(&mut self, v: u64) {
        self.put(off::WRITE_TIME, &v.to_le_bytes());
    }

    /// Sets `features`.
    pub fn set_features(&mut self, f: [u64; 2]) {
        self.put(off::FEATURES, &f[0].to_le_bytes());
        self.put(off::FEATURES + 8, &f[1].to_le_bytes());
    }

    /// Sets `compat`.
    pub fn set_compat(&mut self, f: [u64; 2]) {
        self.put(off::COMPAT, &f[0].to_le_bytes());
        self.put(off::COMPAT + 8, &f[1].to_le_bytes());
    }

    /// Sets the layout.
    pub fn set_layout(&mut self, l: &Layout) {
        self.put(off::LAYOUT, &l.encode());
    }

    fn flags(&self) -> [u64; 7] {
        let mut f = [0u64; 7];
        for (i, w) in f.iter_mut().enumerate() {
            let mut x = [0u8; 8];
            x.copy_from_slice(&self.b[off::FLAGS + 8 * i..off::FLAGS + 8 * i + 8]);
            *w = u64::from_le_bytes(x);
        }
        f
    }

    /// Sets a flag bit-field (`SET_BCH_SB_*()`), truncating `v` to its width.
    pub fn set_flag(&mut self, flag: SbFlag, v: u64) {
        let mut f = self.flags();
        flag.set(&mut f, v);
        let w = flag.desc().word;
        self.put(off::FLAGS + 8 * w, &f[w].to_le_bytes());
    }

    /// Stores an option value given in option units (`__bch2_opt_set_sb()`).
    pub fn set_opt(&mut self, o: &SbOpt, v: u64) {
        let raw = o.to_raw(v);
        match o.field {
            OptField::BlockSize => self.set_block_size(raw as u16),
            OptField::Flag(f) => self.set_flag(f, raw),
            OptField::Split(lo, hi) => {
                self.set_flag(lo, raw & 15);
                self.set_flag(hi, raw >> 4);
            }
        }
    }

    /// Appends a field of type `ty` whose body (after the 8-byte header) is
    /// `body`, zero-padded to a multiple of 8 bytes, and updates `u64s`.
    pub fn add_field(&mut self, ty: FieldType, body: &[u8]) -> Result<(), AllocError> {
        let bytes = (8 + body.len()).next_multiple_of(8);
        let u64s = u32::try_from(bytes / 8).map_err(|_| AllocError)?;
        let start = self.b.len();
        self.b.resize(start + bytes, 0)?;
        self.put(start, &u64s.to_le_bytes());
        self.put(start + 4, &(ty as u32).to_le_bytes());
        self.put(start + 8, body);
        let total = u32::try_from((self.b.len() - SB_FIXED_BYTES) / 8).map_err(|_| AllocError)?;
        self.put(off::U64S, &total.to_le_bytes());
        Ok(())
    }

    /// Removes every field of type `ty` (`bch2_sb_field_delete()`) and
    /// updates `u64s`.  Fields that run past the end stop the walk; what
    /// follows them is kept as it is.
    ///
    /// Errors: [`AllocError`].
    pub fn remove_field(&mut self, ty: FieldType) -> Result<(), AllocError> {
        let mut out: Vec<u8> = Vec::with_capacity(self.b.len())?;
        out.extend_from_slice(&self.b[..SB_FIXED_BYTES.min(self.b.len())])?;
        let mut at = SB_FIXED_BYTES;
        while at + 8 <= self.b.len() {
            let h = &self.b[at..at + 8];
            let u64s = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let t = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let end = at.saturating_add(u64s.saturating_mul(8));
            if u64s == 0 || end > self.b.len() {
                out.extend_from_slice(&self.b[at..])?;
                break;
            }
            if t != ty as u32 {
                out.extend_from_slice(&self.b[at..end])?;
            }
            at = end;
        }
        self.b = out;
        let total = u32::try_from((self.b.len() - SB_FIXED_BYTES) / 8).map_err(|_| AllocError)?;
        self.put(off::U64S, &total.to_le_bytes());
        Ok(())
    }

    /// Replaces the field of type `ty` with one whose body is `body`
    /// (`bch2_sb_field_resize()` then a copy).
    ///
    /// Errors: [`AllocError`].
    pub fn set_field(&mut self, ty: FieldType, body: &[u8]) -> Result<(), AllocError> {
        self.remove_field(ty)?;
        self.add_field(ty, body)
    }

    /// Writes every copy of the superblock its layout lists
    /// (`bch2_write_super()`, one device): `seq` incremented, `offset`
    /// set and the checksum computed per copy, each zero-padded to whole
    /// blocks and written with `PREFLUSH|FUA` so that it lands after
    /// everything written before it.
    ///
    /// Errors: `EINVAL` for an unusable layout or checksum type; the
    /// device's write errors; `ENOMEM`.
    pub fn write_super<D: crate::platform::BlockDev + ?Sized>(&mut self, dev: &D) -> Result<(), crate::errcode::Errno> {
        use crate::errcode::Errno;
        let (offsets, seq, block) = {
            let sb = Sb::parse(&self.b).map_err(|_| Errno::EINVAL)?;
            let l = sb.layout();
            let mut o: Vec<u64> = Vec::new();
            o.extend_from_slice(l.offsets())?;
            (o, sb.seq(), usize::from(sb.block_size()).max(1) * SECTOR_SIZE)
        };
        if offsets.is_empty() {
            return Err(Errno::EINVAL);
        }
        self.set_seq(seq.wrapping_add(1));
        // One cache flush before the first copy makes what the superblock
        // describes durable first; each copy is then durable on its own
        // (FUA).
        for (i, &o) in offsets.iter().enumerate() {
            self.set_offset(o);
            self.update_csum().map_err(|_| Errno::EINVAL)?;
            let mut buf: Vec<u8> = Vec::new();
            buf.extend_from_slice(&self.b)?;
            let len = buf.len().next_multiple_of(block);
            buf.resize(len, 0)?;
            dev.write_sectors(o, &buf, crate::platform::WriteFlags { preflush: i == 0, fua: true })?;
        }
        Ok(())
    }

    /// Recomputes and stores the checksum, of the type in
    /// `BCH_SB_CSUM_TYPE` (`csum_vstruct()`).
    ///
    /// Errors: [`SbError::UnknownCsumType`], [`SbError::CsumNeedsKey`].
    pub fn update_csum(&mut self) -> Result<(), SbError> {
        let ty = checksum::CsumType::from_u8(self.flags_csum_type())
            .ok_or(SbError::UnknownCsumType(u64::from(self.flags_csum_type())))?;
        let c = checksum::checksum(ty, &self.b[off::VERSION..]).map_err(|_| SbError::CsumNeedsKey(ty))?;
        self.put(off::CSUM, &c.to_bytes());
        Ok(())
    }

    fn flags_csum_type(&self) -> u8 {
        SbFlag::CsumType.get(&self.flags()) as u8
    }
}

/// Default size of each superblock slot, in sectors (1 MiB,
/// `SUPERBLOCK_SIZE_DEFAULT` in bcachefs-tools).
pub const SUPERBLOCK_SIZE_DEFAULT: u32 = 2048;

/// `SB_OPTS.len()`.
pub const SB_OPTS_NR: usize = SB_OPTS.len();

/// What to format.
#[derive(Clone, Debug)]
pub struct FormatOpts<'a> {
    /// Option values by position in [`SB_OPTS`]; `None` takes the default.
    /// `block_size` and `btree_node_size` are here too.
    pub opts: [Option<u64>; SB_OPTS_NR],
    /// Bucket size in bytes; `None` picks one from the device size.
    pub bucket_size: Option<u64>,
    /// Label (at most 31 bytes).
    pub label: &'a [u8],
    /// External uuid (`user_uuid`), as shown to the user.
    pub user_uuid: [u8; 16],
    /// Internal uuid (`uuid`).
    pub uuid: [u8; 16],
    /// The member device's uuid.
    pub dev_uuid: [u8; 16],
    /// Creation time, nanoseconds since the epoch.
    pub now_ns: u64,
    /// Size of each superblock slot in sectors, a power of two.
    pub superblock_size: u32,
}

impl<'a> FormatOpts<'a> {
    /// Defaults for everything but the identity: the uuids and time.
    pub fn new(user_uuid: [u8; 16], uuid: [u8; 16], dev_uuid: [u8; 16], now_ns: u64) -> Self {
        FormatOpts {
            opts: [None; SB_OPTS_NR],
            bucket_size: None,
            label: &[],
            user_uuid,
            uuid,
            dev_uuid,
            now_ns,
            superblock_size: SUPERBLOCK_SIZE_DEFAULT,
        }
    }

    /// Sets option `name` to `v` (option units), checking it.
    pub fn set(&mut self, name: &str, v: u64) -> Result<(), FormatError> {
        let i = SB_OPTS.iter().position(|o| o.name == name).ok_or(FormatError::UnknownOption)?;
        let o = &SB_OPTS[i];
        o.validate(v).map_err(|err| FormatError::Opt { opt: o.name, err })?;
        self.opts[i] = Some(v);
        Ok(())
    }

    /// Sets option `name` from its command-line spelling ([`SbOpt::parse`]).
    pub fn set_str(&mut self, name: &str, s: &str) -> Result<(), FormatError> {
        let o = sb_opt(name).ok_or(FormatError::UnknownOption)?;
        let v = o.parse(s).map_err(|err| FormatError::Opt { opt: o.name, err })?;
        self.set(name, v)
    }

    fn get(&self, name: &str) -> Option<u64> {
        let i = SB_OPTS.iter().position(|o| o.name == name)?;
        self.opts[i]
    }

    fn get_or_default(&self, name: &str) -> u64 {
        let i = SB_OPTS.iter().position(|o| o.name == name).unwrap_or(0);
        self.opts[i].unwrap_or(SB_OPTS[i].default)
    }
}

/// Why a filesystem could not be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// No superblock option has that name.
    UnknownOption,
    /// An option value is invalid.
    Opt {
        /// The option.
        opt: &'static str,
        /// What is wrong.
        err: OptError,
    },
    /// The block size is larger than a page.
    BlockSizeAbovePage(u64),
    /// The bucket size is not a multiple of 512 or does not fit in 16 bits
    /// of sectors.
    BadBucketSize(u64),
    /// The bucket is smaller than a block.
    BucketBelowBlock {
        /// Bucket size, bytes.
        bucket: u64,
        /// Block size, bytes.
        block: u64,
    },
    /// The bucket is smaller than a btree node.
    BucketBelowBtreeNode {
        /// Bucket size, bytes.
        bucket: u64,
        /// Btree node size, bytes.
        btree_node: u64,
    },
    /// The device is too small.
    DeviceTooSmall {
        /// Device size, bytes.
        bytes: u64,
        /// Smallest size that would do, bytes.
        min: u64,
    },
    /// The device has more buckets than a member may have.
    TooManyBuckets(u64),
    /// The label is longer than 31 bytes.
    LabelTooLong(usize),
    /// The superblock slots do not fit on the device.
    NoSpaceForSuperblocks {
        /// Sector the slots would end at.
        end: u64,
        /// Device size, sectors.
        sectors: u64,
    },
    /// The superblock slot size is not a power of two from 8 sectors
    /// (4 KiB) to 32 MiB.
    BadSuperblockSize(u32),
    /// The superblock we built fails validation (a bug, or parameters the
    /// checks above missed).
    Invalid(SbError),
    /// Out of memory.
    NoMem,
}

impl From<AllocError> for FormatError {
    fn from(_: AllocError) -> FormatError {
        FormatError::NoMem
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FormatError::UnknownOption => f.write_str("unknown option"),
            FormatError::Opt { opt, err } => write!(f, "invalid {opt}: {err}"),
            FormatError::BlockSizeAbovePage(b) => write!(
                f,
                "block size {b} larger than a page ({})",
                u32::from(PAGE_SECTORS) * SECTOR_SIZE as u32
            ),
            FormatError::BadBucketSize(b) => write!(
                f,
                "bucket size {b}: must be a multiple of 512 bytes and at most 65535 sectors"
            ),
            FormatError::BucketBelowBlock { bucket, block } => {
                write!(f, "bucket size ({bucket}) cannot be smaller than block size ({block})")
            }
            FormatError::BucketBelowBtreeNode { bucket, btree_node } => write!(
                f,
                "bucket size ({bucket}) cannot be smaller than btree node size ({btree_node})"
            ),
            FormatError::DeviceTooSmall { bytes, min } => {
                write!(f, "device too small ({bytes} bytes, min {min})")
            }
            FormatError::TooManyBuckets(n) => {
                write!(f, "too many buckets ({n}, max {MEMBER_NBUCKETS_MAX}): use bigger buckets")
            }
            FormatError::LabelTooLong(n) => {
                write!(f, "label too long ({n} bytes, max {})", LABEL_BYTES - 1)
            }
            FormatError::NoSpaceForSuperblocks { end, sectors } => write!(
                f,
                "insufficient space for superblocks: they end at sector {end}, device has {sectors}"
            ),
            FormatError::BadSuperblockSize(s) => write!(f, "bad superblock size {s} sectors"),
            FormatError::Invalid(e) => write!(f, "built an invalid superblock: {e}"),
            FormatError::NoMem => f.write_str("out of memory"),
        }
    }
}

/// A laid-out filesystem: the superblock (without offset and checksum,
/// which differ per copy) and what to write where.
#[derive(Debug)]
pub struct Formatted {
    sb: SbBuf,
    /// The layout, also inside the superblock.
    pub layout: Layout,
    /// Block size, bytes.
    pub block_size: u64,
    /// Bucket size, bytes.
    pub bucket_size: u64,
    /// Number of buckets.
    pub nbuckets: u64,
    /// Btree node size, bytes.
    pub btree_node_size: u64,
}

impl Formatted {
    /// The superblock as written at copy `idx` of the layout: `offset`
    /// set, checksummed, zero-padded to whole blocks (bcachefs-tools'
    /// `bch2_super_write()`).
    pub fn copy(&self, idx: usize) -> Result<Vec<u8>, FormatError> {
        let mut sb = self.sb.try_clone()?;
        sb.set_offset(self.layout.offsets()[idx]);
        sb.update_csum().map_err(FormatError::Invalid)?;
        let len = sb.b.len().next_multiple_of(self.block_size as usize);
        sb.b.resize(len, 0)?;
        Ok(sb.b)
    }

    /// The first 4 KiB of the device: zeroes, with the layout in sector 7
    /// (`BCH_SB_LAYOUT_SECTOR`), as bcachefs-tools writes them.
    pub fn head(&self) -> Result<Vec<u8>, FormatError> {
        let mut h = Vec::with_capacity(SB_SECTOR as usize * SECTOR_SIZE)?;
        h.resize(SB_SECTOR as usize * SECTOR_SIZE, 0)?;
        let at = (SB_SECTOR as usize - 1) * SECTOR_SIZE;
        h[at..at + LAYOUT_BYTES].copy_from_slice(&self.layout.encode());
        Ok(h)
    }

    /// Everything to write, as `(sector, bytes)`: [`Formatted::head`] at
    /// sector 0, then each superblock copy at its offset.
    pub fn writes(&self) -> Result<Vec<(u64, Vec<u8>)>, FormatError> {
        let mut w = Vec::with_capacity(1 + self.layout.offsets().len())?;
        w.push((0, self.head()?))?;
        for (i, &o) in self.layout.offsets().iter().enumerate() {
            w.push((o, self.copy(i)?))?;
        }
        Ok(w)
    }

    /// The superblock before offset and checksum are filled in.
    pub fn sb(&self) -> &SbBuf {
        &self.sb
    }
}

const fn rounddown_pow2(v: u64) -> u64 {
    if v == 0 {
        0
    } else {
        1 << (63 - v.leading_zeros())
    }
}

/// Bucket size for a single device of `dev_bytes`: bcachefs-tools'
/// `bch2_pick_bucket_size()` followed by `dev_bucket_size_clamp()`.
///
/// At least a block, a btree node (if given) and 4 × `encoded_extent_max`;
/// up to 2 MiB for large devices (1 byte per MiB of device), rounded up to
/// a power of two; then no more than a 256th of the device, and grown
/// towards 64k while that leaves 64 buckets.  bcachefs-tools also raises it
/// so that fsck's bucket array fits in an eighth of the formatting host's
/// RAM; that depends on the host, so it is left out.
pub fn pick_bucket_size(
    dev_bytes: u64,
    block: u64,
    btree_node: Option<u64>,
    encoded_extent_max: u64,
) -> Result<u64, FormatError> {
    let mut b = block.max(btree_node.unwrap_or(0));
    let min = MIN_NR_NBUCKETS * b;
    if dev_bytes < min {
        return Err(FormatError::DeviceTooSmall { bytes: dev_bytes, min });
    }
    b = b.max(encoded_extent_max.saturating_mul(4));
    b = b.max((2u64 << 20).min(dev_bytes >> 20));
    b = b.checked_next_power_of_two().unwrap_or(b);

    let mut max = rounddown_pow2(dev_bytes / (MIN_NR_NBUCKETS * 4));
    if let Some(n) = btree_node {
        max = max.max(n);
    }
    if max.saturating_mul(MIN_NR_NBUCKETS) > dev_bytes {
        return Err(FormatError::DeviceTooSmall { bytes: dev_bytes, min: max * MIN_NR_NBUCKETS });
    }
    let mut d = max.min(b);
    while d < 64 << 10 && dev_bytes / (d * 2) >= MIN_NR_NBUCKETS {
        d *= 2;
    }
    Ok(d)
}

/// `bch2_sb_layout_init()` in bcachefs-tools, for a superblock at the
/// default sector 8: two slots of `sb_size` sectors from sector 8 (the
/// second rounded up to a block), then a backup in the last slot of the
/// device, rounded down to a bucket.
pub fn layout_init(
    block_sectors: u64,
    bucket_sectors: u64,
    sb_size: u32,
    dev_sectors: u64,
) -> Result<Layout, FormatError> {
    if !sb_size.is_power_of_two() || !(8..=1 << 16).contains(&sb_size) {
        return Err(FormatError::BadSuperblockSize(sb_size));
    }
    let mut l = Layout {
        magic: BCHFS_MAGIC,
        layout_type: 0,
        sb_max_size_bits: sb_size.trailing_zeros() as u8,
        nr_superblocks: 2,
        sb_offset: [0; LAYOUT_MAX_SUPERBLOCKS],
    };
    let mut pos = SB_SECTOR;
    for i in 0..2 {
        if pos != SB_SECTOR {
            pos = pos.next_multiple_of(block_sectors);
        }
        l.sb_offset[i] = pos;
        pos += u64::from(sb_size);
    }
    if pos > dev_sectors {
        return Err(FormatError::NoSpaceForSuperblocks { end: pos, sectors: dev_sectors });
    }
    let backup = dev_sectors - u64::from(sb_size);
    l.sb_offset[2] = backup - backup % bucket_sectors;
    l.nr_superblocks = 3;
    if l.sb_offset[2] < pos {
        return Err(FormatError::NoSpaceForSuperblocks {
            end: pos + u64::from(sb_size),
            sectors: dev_sectors,
        });
    }
    Ok(l)
}

/// Lays out a fresh single-device filesystem on a device of `dev_bytes`
/// bytes, as bcachefs-tools' `bch2_format()` would; see the module
/// documentation for every field and the C function that wants it.  The
/// result has been through [`Sb::validate`] in write mode and
/// [`Sb::verify_csum`] for every copy.
pub fn format(dev_bytes: u64, o: &FormatOpts<'_>) -> Result<Formatted, FormatError> {
    let sector = SECTOR_SIZE as u64;

    if o.label.len() >= LABEL_BYTES {
        return Err(FormatError::LabelTooLong(o.label.len()));
    }

    let block = o.get_or_default("block_size");
    if block > u64::from(PAGE_SECTORS) * sector {
        return Err(FormatError::BlockSizeAbovePage(block));
    }
    let btree_node_given = o.get("btree_node_size");
    let encoded_extent_max = o.get_or_default("encoded_extent_max");

    let bucket = match o.bucket_size {
        Some(b) => b,
        None => pick_bucket_size(dev_bytes, block, btree_node_given, encoded_extent_max)?,
    };
    if bucket == 0 || bucket % sector != 0 || bucket / sector > u64::from(u16::MAX) {
        return Err(FormatError::BadBucketSize(bucket));
    }
    // bch2_check_bucket_size()
    if bucket < block {
        return Err(FormatError::BucketBelowBlock { bucket, block });
    }
    if let Some(n) = btree_node_given {
        if bucket < n {
            return Err(FormatError::BucketBelowBtreeNode { bucket, btree_node: n });
        }
    }
    let nbuckets = dev_bytes / bucket;
    if nbuckets < MIN_NR_NBUCKETS {
        return Err(FormatError::DeviceTooSmall { bytes: dev_bytes, min: MIN_NR_NBUCKETS * bucket });
    }
    if nbuckets > MEMBER_NBUCKETS_MAX {
        return Err(FormatError::TooManyBuckets(nbuckets));
    }

    // bcachefs-tools: the default btree node size, clamped to the bucket.
    let default_node = sb_opt("btree_node_size").map_or(256 << 10, |n| n.default);
    let btree_node = btree_node_given.unwrap_or(default_node.min(bucket));

    let mut sb = SbBuf::new()?;
    sb.set_version(VERSION_CURRENT);
    sb.set_version_min(VERSION_CURRENT);
    sb.set_magic(&BCHFS_MAGIC);
    sb.set_user_uuid(&o.user_uuid);
    sb.set_uuid(&o.uuid);
    sb.set_nr_devices(1);
    sb.set_dev_idx(0);
    sb.set_seq(0);
    sb.set_features([FEATURES_ALL, 0]);
    sb.set_label(o.label).map_err(FormatError::LabelTooLong)?;

    // bch2_opt_set_sb_all(): every superblock option, given or default.
    for (i, opt) in SB_OPTS.iter().enumerate() {
        let v = match opt.name {
            "block_size" => block,
            "btree_node_size" => btree_node,
            _ => o.opts[i].unwrap_or(opt.default),
        };
        opt.validate(v).map_err(|err| FormatError::Opt { opt: opt.name, err })?;
        sb.set_opt(opt, v);
    }
    let meta_csum = csum_opt_to_type(o.get_or_default("metadata_checksum"), false)
        .ok_or(FormatError::Opt { opt: "metadata_checksum", err: OptError::BadValue })?;
    sb.set_flag(SbFlag::CsumType, meta_csum as u64);
    sb.set_flag(SbFlag::VersionUpgradeComplete, u64::from(VERSION_CURRENT));

    sb.set_time(o.now_ns, 0, 1);
    sb.set_write_time(o.now_ns / 1_000_000_000);

    // Fields: ext, members_v2, members_v1.
    sb.add_field(FieldType::Ext, &[0u8; FIELD_EXT_BYTES - 8])?;

    let mut m = Member {
        uuid: o.dev_uuid,
        nbuckets,
        first_bucket: 0,
        bucket_size: (bucket / sector) as u16,
        ..Member::default()
    };
    m.set_flag(MemberFlag::Discard, 1);
    m.set_flag(MemberFlag::Durability, 1 + 1);
    m.set_flag(
        MemberFlag::DataAllowed,
        1 << DATA_JOURNAL | 1 << DATA_BTREE | 1 << DATA_USER,
    );
    let mut v2 = [0u8; MEMBERS_V2_HEADER - 8 + MEMBER_BYTES];
    v2[..2].copy_from_slice(&(MEMBER_BYTES as u16).to_le_bytes());
    v2[MEMBERS_V2_HEADER - 8..].copy_from_slice(&m.encode());
    sb.add_field(FieldType::MembersV2, &v2)?;
    let mut v1 = [0u8; MEMBER_V1_BYTES];
    v1.copy_from_slice(&m.encode()[..MEMBER_V1_BYTES]);
    debug_assert_eq!(MEMBERS_V1_HEADER, 8);
    sb.add_field(FieldType::MembersV1, &v1)?;

    let dev_sectors = dev_bytes / sector;
    let layout = layout_init(block / sector, bucket / sector, o.superblock_size, dev_sectors)?;
    sb.set_layout(&layout);

    let f = Formatted { sb, layout, block_size: block, bucket_size: bucket, nbuckets, btree_node_size: btree_node };

    // Check every copy the way the kernel will read it.
    for i in 0..f.layout.offsets().len() {
        let c = f.copy(i)?;
        let s = Sb::parse_verified(&c).map_err(FormatError::Invalid)?;
        s.validate(ValidateMode::Write).map_err(FormatError::Invalid)?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::CsumType;
    use crate::format::sb::{SB_LAYOUT_SECTOR, LAYOUT_BYTES};
    use crate::format::sb_opts::SbFlag;
    use std::string::ToString;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn opts() -> FormatOpts<'static> {
        FormatOpts::new([0x11; 16], [0x22; 16], [0x33; 16], 1_700_000_000_123_456_789)
    }

    #[test]
    fn round_trip_1gib() {
        let mut o = opts();
        o.label = b"test-label";
        let f = format(GIB, &o).unwrap();
        assert_eq!(f.block_size, 4096);
        assert_eq!(f.bucket_size, 256 << 10);
        assert_eq!(f.nbuckets, 4096);
        assert_eq!(f.btree_node_size, 256 << 10);
        assert_eq!(f.layout.offsets(), &[8, 2056, (GIB / 512) - 2048]);
        assert_eq!(f.layout.sb_max_size_bits, 11);

        let writes = f.writes().unwrap();
        assert_eq!(writes.len(), 4);
        let (sector, head) = &writes[0];
        assert_eq!(*sector, 0);
        assert_eq!(head.len(), 4096);
        assert!(head[..3584].iter().all(|&b| b == 0));
        let mut l = [0u8; LAYOUT_BYTES];
        l.copy_from_slice(&head[SB_LAYOUT_SECTOR as usize * 512..]);
        let l = Layout::decode(&l);
        assert_eq!(l, f.layout);
        assert_eq!(l.validate(), Ok(()));

        for (i, (sector, bytes)) in writes[1..].iter().enumerate() {
            assert_eq!(*sector, f.layout.sb_offset[i]);
            assert_eq!(bytes.len() % 4096, 0);
            let sb = Sb::parse_verified(bytes).unwrap();
            sb.validate(ValidateMode::Read).unwrap();
            sb.validate(ValidateMode::Write).unwrap();
            assert_eq!(sb.offset(), *sector);
            assert_eq!(sb.version().0, VERSION_CURRENT);
            assert_eq!(sb.version_min().0, VERSION_CURRENT);
            assert_eq!(sb.label_bytes(), b"test-label");
            assert_eq!(sb.user_uuid(), [0x11; 16]);
            assert_eq!(sb.uuid(), [0x22; 16]);
            assert_eq!(sb.block_size(), 8);
            assert_eq!(sb.nr_devices(), 1);
            assert_eq!(sb.dev_idx(), 0);
            assert_eq!(sb.seq(), 0);
            assert_eq!(sb.time_base_lo(), 1_700_000_000_123_456_789);
            assert_eq!(sb.time_precision(), 1);
            assert_eq!(sb.write_time(), 1_700_000_000);
            assert_eq!(sb.features(), [FEATURES_ALL, 0]);
            assert_eq!(sb.compat(), [0, 0]);
            assert_eq!(sb.flag(SbFlag::Initialized), 0);
            assert_eq!(sb.flag(SbFlag::CsumType), CsumType::Crc32cNonzero as u64);
            assert_eq!(sb.flag(SbFlag::BtreeNodeSize), 512);
            assert_eq!(sb.flag(SbFlag::MetaReplicasWant), 1);
            assert_eq!(sb.flag(SbFlag::DataReplicasReq), 1);
            assert_eq!(sb.flag(SbFlag::StrHashType), 2);
            assert_eq!(sb.flag(SbFlag::EncodedExtentMaxBits), 7);
            assert_eq!(sb.flag(SbFlag::GcReserve), 8);
            assert_eq!(sb.flag(SbFlag::JournalFlushDelay), 1000);
            assert_eq!(sb.flag(SbFlag::JournalReclaimDelay), 100);
            assert_eq!(sb.flag(SbFlag::VersionUpgradeComplete), u64::from(VERSION_CURRENT));
            for opt in SB_OPTS {
                assert_eq!(opt.validate(sb.opt(opt)), Ok(()), "{}", opt.name);
            }
            let m = sb.member(0).unwrap();
            assert_eq!(m.uuid, [0x33; 16]);
            assert_eq!(m.nbuckets, 4096);
            assert_eq!(m.first_bucket, 0);
            assert_eq!(m.bucket_size, 512);
            assert_eq!(m.flag(MemberFlag::State), 0);
            assert_eq!(m.flag(MemberFlag::Discard), 1);
            assert_eq!(m.durability(), 1);
            assert_eq!(m.flag(MemberFlag::DataAllowed), 0b11100);
            assert_eq!(sb.members_v1().unwrap().get(0).unwrap().nbuckets, 4096);
            assert!(sb.field(FieldType::Ext).is_some());
            // Every bucket lies on the device.
            assert!(m.sectors() <= GIB / 512);
            // The end-of-disk copy lies inside the last buckets.
            assert!(f.layout.sb_offset[2] + 2048 <= GIB / 512);
        }
        // The copies differ only in offset and checksum.
        assert_ne!(writes[1].1[..16], writes[2].1[..16]);
        assert_eq!(writes[1].1[120..], writes[2].1[120..]);
    }

    #[test]
    fn each_checksum_and_compression() {
        for (csum, ty) in [
            ("none", CsumType::None),
            ("crc32c", CsumType::Crc32cNonzero),
            ("crc64", CsumType::Crc64Nonzero),
            ("xxhash", CsumType::Xxhash),
        ] {
            let mut o = opts();
            o.set_str("metadata_checksum", csum).unwrap();
            o.set_str("data_checksum", csum).unwrap();
            o.set_str("compression", "zstd:3").unwrap();
            o.set_str("background_compression", "lz4").unwrap();
            let f = format(GIB, &o).unwrap();
            let c = f.copy(0).unwrap();
            let sb = Sb::parse_verified(&c).unwrap();
            assert_eq!(sb.csum_type(), Ok(ty));
            assert_eq!(sb.opt(sb_opt("compression").unwrap()), 0x33);
            assert_eq!(sb.flag(SbFlag::CompressionTypeLo), 3);
            assert_eq!(sb.flag(SbFlag::CompressionTypeHi), 3);
            assert_eq!(sb.opt(sb_opt("background_compression").unwrap()), 1);
            assert_eq!(sb.opt(sb_opt("data_checksum").unwrap()), sb.opt(sb_opt("metadata_checksum").unwrap()));
            sb.validate(ValidateMode::Write).unwrap();
        }
    }

    #[test]
    fn bucket_sizes() {
        // (device, bucket, btree node)
        for (dev, bucket, node) in [
            (4 * MIB, 64 << 10, 64 << 10),
            (16 * MIB, 64 << 10, 64 << 10),
            (256 * MIB, 256 << 10, 256 << 10),
            (GIB, 256 << 10, 256 << 10),
            (512 * GIB, 512 << 10, 256 << 10),
            (4 << 40, 2 * MIB, 256 << 10),
        ] {
            let f = format(dev, &opts()).unwrap();
            assert_eq!((f.bucket_size, f.btree_node_size), (bucket, node), "{dev}");
            assert!(f.nbuckets >= 64);
            assert_eq!(f.layout.validate(), Ok(()));
        }
        let mut o = opts();
        o.bucket_size = Some(MIB);
        o.set_str("block_size", "512").unwrap();
        o.set_str("btree_node_size", "128k").unwrap();
        let f = format(GIB, &o).unwrap();
        assert_eq!((f.bucket_size, f.nbuckets, f.btree_node_size, f.block_size), (MIB, 1024, 128 << 10, 512));
        let sb = f.copy(0).unwrap();
        assert_eq!(Sb::parse(&sb).unwrap().block_size(), 1);
        // Unaligned device sizes: the tail past the last bucket is unused.
        let f = format(GIB + 12345, &opts()).unwrap();
        assert_eq!(f.nbuckets, 4096);
        assert_eq!(f.layout.sb_offset[2], (GIB + 12345) / 512 - 2048 - ((GIB + 12345) / 512 - 2048) % 512);
    }

    #[test]
    fn format_errors() {
        let mut o = opts();
        o.label = &[b'x'; 32];
        assert_eq!(format(GIB, &o).unwrap_err(), FormatError::LabelTooLong(32));
        o.label = &[b'x'; 31];
        assert!(format(GIB, &o).is_ok());

        let mut o = opts();
        assert!(matches!(o.set_str("block_size", "3k"), Err(FormatError::Opt { opt: "block_size", err: OptError::NotPow2 })));
        o.set_str("block_size", "8k").unwrap();
        assert_eq!(format(GIB, &o).unwrap_err(), FormatError::BlockSizeAbovePage(8192));

        let mut o = opts();
        o.bucket_size = Some(1000);
        assert_eq!(format(GIB, &o).unwrap_err(), FormatError::BadBucketSize(1000));
        o.bucket_size = Some(64 << 20);
        assert_eq!(format(GIB, &o).unwrap_err(), FormatError::BadBucketSize(64 << 20));
        o.bucket_size = Some(2048);
        assert_eq!(format(GIB, &o).unwrap_err(), FormatError::BucketBelowBlock { bucket: 2048, block: 4096 });
        o.bucket_size = Some(64 << 10);
        o.set("btree_node_size", 128 << 10).unwrap();
        assert_eq!(
            format(GIB, &o).unwrap_err(),
            FormatError::BucketBelowBtreeNode { bucket: 64 << 10, btree_node: 128 << 10 }
        );
        let mut o = opts();
        o.bucket_size = Some(4096);
        assert!(matches!(format(200 << 10, &o), Err(FormatError::DeviceTooSmall { .. })));
        assert!(matches!(format(100 << 10, &opts()), Err(FormatError::DeviceTooSmall { .. })));
        o.bucket_size = Some(512);
        o.set("block_size", 512).unwrap();
        o.set("btree_node_size", 512).unwrap();
        assert_eq!(format(1 << 41, &o).unwrap_err(), FormatError::TooManyBuckets(1 << 32));
        // Enough buckets but no room for the superblocks.
        let mut o = opts();
        o.bucket_size = Some(16 << 10);
        o.set("btree_node_size", 16 << 10).unwrap();
        assert!(matches!(format(MIB, &o), Err(FormatError::NoSpaceForSuperblocks { .. })));
        let mut o = opts();
        o.superblock_size = 3;
        assert_eq!(format(GIB, &o).unwrap_err(), FormatError::BadSuperblockSize(3));
        let mut o = opts();
        assert_eq!(o.set("no_such_option", 1), Err(FormatError::UnknownOption));
        assert_eq!(
            o.set("metadata_replicas", 0),
            Err(FormatError::Opt { opt: "metadata_replicas", err: OptError::TooSmall { min: 1 } })
        );
        // Identity is the caller's job: zero uuids fail validation.
        let o = FormatOpts::new([0; 16], [2; 16], [3; 16], 1);
        assert_eq!(format(GIB, &o).unwrap_err(), FormatError::Invalid(SbError::ZeroUserUuid));
        assert!(FormatError::Invalid(SbError::ZeroUserUuid).to_string().contains("zeroes"));
    }

    #[test]
    fn layout_init_matches_tools() {
        let l = layout_init(1, 8, 2048, 1 << 21).unwrap();
        assert_eq!(l.offsets(), &[8, 2056, (1 << 21) - 2048]);
        // The second slot is rounded up to a block, the last down to a bucket.
        let l = layout_init(8, 512, 2044 + 4, 100_000).unwrap();
        assert_eq!(l.offsets(), &[8, 2056, 97_792]);
        let l = layout_init(8, 512, 1024, 100_000).unwrap();
        assert_eq!(l.offsets(), &[8, 1032, 98_816]);
        assert!(layout_init(8, 512, 2048, 4000).is_err());
    }

    #[test]
    fn sbbuf_setters() {
        let mut s = SbBuf::new().unwrap();
        assert_eq!(s.set_label(&[1; 33]), Err(33));
        s.set_label(b"abc").unwrap();
        s.add_field(FieldType::Counters, &[1, 2, 3]).unwrap();
        assert_eq!(s.bytes().len(), SB_FIXED_BYTES + 16);
        assert_eq!(&s.bytes()[off::U64S..off::U64S + 4], &2u32.to_le_bytes());
        assert_eq!(&s.bytes()[SB_FIXED_BYTES..SB_FIXED_BYTES + 4], &2u32.to_le_bytes());
        // Not a superblock until it has a magic and versions.
        assert!(s.sb().is_err());
        s.set_magic(&BCHFS_MAGIC);
        s.set_version(VERSION_CURRENT);
        s.set_version_min(VERSION_CURRENT);
        s.set_layout(&Layout { sb_max_size_bits: 4, ..layout_init(1, 1, 8, 1000).unwrap() });
        let sb = s.sb().unwrap();
        assert_eq!(sb.label_bytes(), b"abc");
        let f = sb.fields().next().unwrap().unwrap();
        assert_eq!((f.ty, f.body()), (10, &[1u8, 2, 3, 0, 0, 0, 0, 0][..]));
        assert_eq!(SbBuf::from_sb(&sb).unwrap().bytes(), s.bytes());
    }
}
