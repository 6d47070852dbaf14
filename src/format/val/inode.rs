// SPDX-License-Identifier: GPL-2.0
//! Inode values: `struct bch_inode`, `bch_inode_v2` and `bch_inode_v3`
//! (`fs/bcachefs/inode_format.h`), unpacked as `bch2_inode_unpack()` and
//! packed as `bch2_inode_pack()` in `inode.c` do.
//!
//! An `inode_v3` value (type 29) is 48 fixed bytes, then variable-length
//! fields:
//!
//! | offset | field |
//! |-------:|-------|
//! | 0 | `bi_journal_seq` (u64) |
//! | 8 | `bi_hash_seed` (u64) |
//! | 16 | `bi_flags` (u64): inode flags in bits 0-19, str hash type 20-23, nr_fields 24-30, fields_start 31-35 (u64s), mode 36-51 |
//! | 24 | `bi_sectors` (u64, 512-byte sectors) |
//! | 32 | `bi_size` (u64, bytes) |
//! | 40 | `bi_version` (u64) |
//! | 48 | fields: one [`varint`] each, two for the 96-bit times (the high part must be 0) |
//!
//! Fields past `nr_fields` are zero.  `inode_v2` (type 23) has a 26-byte
//! header (journal_seq, hash_seed, flags u64, mode u16) and `bi_size` and
//! `bi_sectors` among its varint fields; `inode` (type 8) a 14-byte header
//! (hash_seed, flags u32, mode u16) and, unless bit 31 of its flags is set,
//! the older big-endian field encoding of `inode_decode_field()`.

use core::fmt;

use super::ValError;
use crate::format::bkey::{Bkey, KeyType};
use crate::format::sb_opts::compression_opt_valid;
use crate::format::varint;
use crate::util::le::{le16, le32, le64};

/// Inodes below this number belong to block devices (`BLOCKDEV_INODE_MAX`).
pub const BLOCKDEV_INODE_MAX: u64 = 4096;
/// Inode number of the root directory (`BCACHEFS_ROOT_INO`).
pub const BCACHEFS_ROOT_INO: u64 = 4096;
/// Size of the fixed part of `bch_inode_v3`, bytes.
pub const INODE_V3_BYTES: usize = 48;
/// `INODEv3_FIELDS_START_INITIAL` and `_CUR`, in u64s.
pub const INODE_V3_FIELDS_START: u64 = 6;
/// Number of string hash types (`BCH_STR_HASH_NR`).
pub const STR_HASH_NR: u64 = 4;
/// Names of the string hash types (`BCH_STR_HASH_TYPES()`).
pub const STR_HASH_TYPE_NAMES: [&str; 4] = ["crc32c", "crc64", "siphash_old", "siphash"];
/// Names of the inode flag bits (`BCH_INODE_FLAGS()`).
pub const INODE_FLAG_NAMES: [&str; 10] = [
    "sync",
    "immutable",
    "append",
    "nodump",
    "noatime",
    "i_size_dirty",
    "i_sectors_dirty",
    "unlinked",
    "backptr_untrusted",
    "has_child_snapshot",
];
/// `BCH_INODE_unlinked`.
pub const INODE_UNLINKED: u32 = 1 << 7;

/// The variable-length fields of `inode_v3`, in order
/// (`BCH_INODE_FIELDS_v3()`): name and width in bits.
pub const INODE_FIELDS_V3: [(&str, u8); 24] = [
    ("bi_atime", 96),
    ("bi_ctime", 96),
    ("bi_mtime", 96),
    ("bi_otime", 96),
    ("bi_uid", 32),
    ("bi_gid", 32),
    ("bi_nlink", 32),
    ("bi_generation", 32),
    ("bi_dev", 32),
    ("bi_data_checksum", 8),
    ("bi_compression", 8),
    ("bi_project", 32),
    ("bi_background_compression", 8),
    ("bi_data_replicas", 8),
    ("bi_promote_target", 16),
    ("bi_foreground_target", 16),
    ("bi_background_target", 16),
    ("bi_erasure_code", 16),
    ("bi_fields_set", 16),
    ("bi_dir", 64),
    ("bi_dir_offset", 64),
    ("bi_subvol", 32),
    ("bi_parent_subvol", 32),
    ("bi_nocow", 8),
];

/// Index of a field in [`INODE_FIELDS_V3`] and [`InodeUnpacked::fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
#[allow(missing_docs)]
pub enum InodeField {
    Atime = 0,
    Ctime,
    Mtime,
    Otime,
    Uid,
    Gid,
    Nlink,
    Generation,
    Dev,
    DataChecksum,
    Compression,
    Project,
    BackgroundCompression,
    DataReplicas,
    PromoteTarget,
    ForegroundTarget,
    BackgroundTarget,
    ErasureCode,
    FieldsSet,
    Dir,
    DirOffset,
    Subvol,
    ParentSubvol,
    Nocow,
}

/// Where a field of the v1/v2 list (`BCH_INODE_FIELDS_v2()`) goes.
#[derive(Clone, Copy)]
enum V2Field {
    Size,
    Sectors,
    F(InodeField),
}

const V2_FIELDS: [(V2Field, u8); 25] = {
    use InodeField as I;
    use V2Field::*;
    [
        (F(I::Atime), 96),
        (F(I::Ctime), 96),
        (F(I::Mtime), 96),
        (F(I::Otime), 96),
        (Size, 64),
        (Sectors, 64),
        (F(I::Uid), 32),
        (F(I::Gid), 32),
        (F(I::Nlink), 32),
        (F(I::Generation), 32),
        (F(I::Dev), 32),
        (F(I::DataChecksum), 8),
        (F(I::Compression), 8),
        (F(I::Project), 32),
        (F(I::BackgroundCompression), 8),
        (F(I::DataReplicas), 8),
        (F(I::PromoteTarget), 16),
        (F(I::ForegroundTarget), 16),
        (F(I::BackgroundTarget), 16),
        (F(I::ErasureCode), 16),
        (F(I::FieldsSet), 16),
        (F(I::Dir), 64),
        (F(I::DirOffset), 64),
        (F(I::Subvol), 32),
        (F(I::ParentSubvol), 32),
    ]
};

/// An inode, unpacked (`struct bch_inode_unpacked`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeUnpacked {
    /// Inode number: the key's offset.
    pub inum: u64,
    /// Snapshot: the key's snapshot.
    pub snapshot: u32,
    /// Journal sequence number of the last update.
    pub journal_seq: u64,
    /// Seed of the directory entry and xattr hashes.
    pub hash_seed: u64,
    /// Size in bytes.
    pub size: u64,
    /// Allocated size in 512-byte sectors.
    pub sectors: u64,
    /// Version.
    pub version: u64,
    /// Flags: inode flags, hash type and, for v3, the low bits of the
    /// packing fields (C keeps 32 bits).
    pub flags: u32,
    /// `st_mode`.
    pub mode: u16,
    /// The variable-length fields, indexed by [`InodeField`].
    pub fields: [u64; 24],
}

impl InodeUnpacked {
    /// A field.
    pub fn get(&self, f: InodeField) -> u64 {
        self.fields[f as usize]
    }

    /// Sets a field (truncated to its width).
    pub fn set(&mut self, f: InodeField, v: u64) {
        self.fields[f as usize] = v & width_mask(INODE_FIELDS_V3[f as usize].1);
    }

    /// `INODE_STR_HASH()`: the string hash type.
    pub fn str_hash_type(&self) -> u8 {
        ((self.flags >> 20) & 0xf) as u8
    }

    /// Whether the mode is a directory (`S_ISDIR()`).
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// Mask of a field's in-memory width: `bits` capped at 64.
fn width_mask(bits: u8) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// One varint field (two for widths over 64 bits), checked to fit the
/// in-memory width as C checks it.
fn take_varint_field(buf: &[u8], at: &mut usize, bits: u8, field: u8) -> Result<u64, ValError> {
    let rest = buf.get(*at..).unwrap_or(&[]);
    let (v0, n) = varint::decode(rest).map_err(|_| ValError::InodeUnpack { field })?;
    *at += n;
    let v1 = if bits > 64 {
        let rest = buf.get(*at..).unwrap_or(&[]);
        let (v1, n) = varint::decode(rest).map_err(|_| ValError::InodeUnpack { field })?;
        *at += n;
        v1
    } else {
        0
    };
    if v1 != 0 || v0 & width_mask(bits) != v0 {
        return Err(ValError::InodeUnpack { field });
    }
    Ok(v0)
}

/// `inode_decode_field()`: one field of the original inode encoding.
/// Returns the low 64 bits, the significant bit count and bytes used.
fn decode_field_v1(buf: &[u8]) -> Option<(u64, u32, usize)> {
    const BYTE_TABLE: [usize; 8] = [1, 2, 3, 4, 6, 8, 10, 13];
    let first = *buf.first()?;
    if first == 0 {
        return None;
    }
    let shift = first.leading_zeros() + 1; // 8 - __fls(first), 1..=8
    let bytes = BYTE_TABLE[shift as usize - 1];
    let src = buf.get(..bytes)?;
    let mut be = [0u8; 16];
    be[16 - bytes..].copy_from_slice(src);
    be[16 - bytes] ^= (0x100u32 >> shift) as u8;
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&be[..8]);
    lo.copy_from_slice(&be[8..]);
    let (hi, lo) = (u64::from_be_bytes(hi), u64::from_be_bytes(lo));
    let fls = |v: u64| 64 - v.leading_zeros();
    let bits = if hi != 0 { 64 + fls(hi) } else { fls(lo) };
    Some((lo, bits, bytes))
}

/// Unpacks an inode value of key `k` (`bch2_inode_unpack()`), for key
/// types `inode`, `inode_v2` and `inode_v3`.
///
/// Errors: [`ValError::InodeUnpack`] naming the field that is truncated or
/// too wide; [`ValError::WrongType`] for other key types.
pub fn unpack(k: &Bkey, v: &[u8]) -> Result<InodeUnpacked, ValError> {
    let mut u = InodeUnpacked { inum: k.p.offset, snapshot: k.p.snapshot, ..InodeUnpacked::default() };
    match KeyType::from_u8(k.key_type) {
        Some(KeyType::InodeV3) => {
            u.journal_seq = le64(v, 0);
            u.hash_seed = le64(v, 8);
            let flags = le64(v, 16);
            u.flags = flags as u32;
            u.sectors = le64(v, 24);
            u.size = le64(v, 32);
            u.version = le64(v, 40);
            u.mode = ((flags >> 36) & 0xffff) as u16;
            let nr_fields = ((flags >> 24) & 0x7f) as usize;
            let mut at = INODE_V3_BYTES;
            for (i, &(_, bits)) in INODE_FIELDS_V3.iter().enumerate() {
                if i < nr_fields {
                    u.fields[i] = take_varint_field(v, &mut at, bits, i as u8)?;
                }
            }
            Ok(u)
        }
        Some(KeyType::InodeV2) => {
            u.journal_seq = le64(v, 0);
            u.hash_seed = le64(v, 8);
            let flags = le64(v, 16);
            u.flags = flags as u32;
            u.mode = le16(v, 24);
            let nr_fields = ((flags >> 24) & 0x7f) as usize;
            unpack_v2(&mut u, v, 26, nr_fields)?;
            Ok(u)
        }
        Some(KeyType::Inode) => {
            u.hash_seed = le64(v, 0);
            u.flags = le32(v, 8);
            u.mode = le16(v, 12);
            let nr_fields = ((u.flags >> 24) & 0x7f) as usize;
            if u.flags >> 31 != 0 {
                unpack_v2(&mut u, v, 14, nr_fields)?;
            } else {
                unpack_v1(&mut u, v, 14, nr_fields)?;
            }
            Ok(u)
        }
        _ => Err(ValError::WrongType),
    }
}

fn store_v2(u: &mut InodeUnpacked, dst: V2Field, val: u64) {
    match dst {
        V2Field::Size => u.size = val,
        V2Field::Sectors => u.sectors = val,
        V2Field::F(f) => u.fields[f as usize] = val,
    }
}

fn unpack_v2(u: &mut InodeUnpacked, v: &[u8], start: usize, nr_fields: usize) -> Result<(), ValError> {
    let mut at = start;
    for (i, &(dst, bits)) in V2_FIELDS.iter().enumerate() {
        if i < nr_fields {
            let val = take_varint_field(v, &mut at, bits, i as u8)?;
            store_v2(u, dst, val);
        }
    }
    Ok(())
}

fn unpack_v1(u: &mut InodeUnpacked, v: &[u8], start: usize, nr_fields: usize) -> Result<(), ValError> {
    let mut at = start;
    for (i, &(dst, bits)) in V2_FIELDS.iter().enumerate() {
        if i == nr_fields {
            return Ok(());
        }
        let rest = v.get(at..).unwrap_or(&[]);
        let (val, nbits, n) = decode_field_v1(rest).ok_or(ValError::InodeUnpack { field: i as u8 })?;
        if nbits > u32::from(bits.min(64)) {
            return Err(ValError::InodeUnpack { field: i as u8 });
        }
        store_v2(u, dst, val);
        at += n;
    }
    Ok(())
}

/// Packs `u` as an `inode_v3` value (`bch2_inode_pack()`): trailing zero
/// fields are dropped, the value is zero-padded to whole u64s.  Writes
/// into `out` and returns the value length in bytes (a multiple of 8).
///
/// Returns `None` when `out` is too small (272 bytes always suffice).
pub fn pack_v3(u: &InodeUnpacked, out: &mut [u8]) -> Option<usize> {
    let hdr = out.get_mut(..INODE_V3_BYTES)?;
    hdr[0..8].copy_from_slice(&u.journal_seq.to_le_bytes());
    hdr[8..16].copy_from_slice(&u.hash_seed.to_le_bytes());
    hdr[24..32].copy_from_slice(&u.sectors.to_le_bytes());
    hdr[32..40].copy_from_slice(&u.size.to_le_bytes());
    hdr[40..48].copy_from_slice(&u.version.to_le_bytes());
    let mut at = INODE_V3_BYTES;
    let mut last_nonzero_end = at;
    let mut last_nonzero_nr = 0u64;
    for (i, &(_, bits)) in INODE_FIELDS_V3.iter().enumerate() {
        let val = u.fields[i];
        at += varint::encode(out.get_mut(at..)?, val)?;
        if bits > 64 {
            *out.get_mut(at)? = 0;
            at += 1;
        }
        if val != 0 {
            last_nonzero_end = at;
            last_nonzero_nr = i as u64 + 1;
        }
    }
    let bytes = last_nonzero_end.div_ceil(8) * 8;
    out.get_mut(last_nonzero_end..bytes)?.iter_mut().for_each(|b| *b = 0);
    let mut flags = u64::from(u.flags);
    // nr_fields 24-30, fields_start 31-35, mode 36-51.
    flags &= !(0x7f << 24 | 0x1f << 31 | 0xffff << 36);
    flags |= last_nonzero_nr << 24 | INODE_V3_FIELDS_START << 31 | u64::from(u.mode) << 36;
    out.get_mut(16..24)?.copy_from_slice(&flags.to_le_bytes());
    Some(bytes)
}

/// `bch2_inode_v3_validate()` and the other inode validators:
/// position, packing, option values, unlinked/nlink and subvolume root
/// rules.
pub fn validate(k: &Bkey, v: &[u8]) -> Result<(), ValError> {
    if k.p.inode != 0 {
        return Err(ValError::InodePosInodeNonzero);
    }
    if k.p.offset < BLOCKDEV_INODE_MAX {
        return Err(ValError::InodeBlockdevRange);
    }
    let str_hash = match KeyType::from_u8(k.key_type) {
        Some(KeyType::InodeV3) => {
            let flags = le64(v, 16);
            let fs = (flags >> 31) & 0x1f;
            if fs < INODE_V3_FIELDS_START || fs > k.val_u64s() as u64 {
                return Err(ValError::InodeFieldsStart { got: fs, max: k.val_u64s() as u64 });
            }
            (flags >> 20) & 0xf
        }
        Some(KeyType::InodeV2) => (le64(v, 16) >> 20) & 0xf,
        _ => u64::from((le32(v, 8) >> 20) & 0xf),
    };
    if str_hash >= STR_HASH_NR {
        return Err(ValError::InodeStrHash(str_hash as u8));
    }
    let u = unpack(k, v)?;
    let csum = u.get(InodeField::DataChecksum);
    if csum >= 5 {
        return Err(ValError::InodeChecksumType(csum as u8));
    }
    let comp = u.get(InodeField::Compression);
    if comp != 0 && !compression_opt_valid(comp - 1) {
        return Err(ValError::InodeCompression(comp as u8 - 1));
    }
    if u.flags & INODE_UNLINKED != 0 && u.get(InodeField::Nlink) != 0 {
        return Err(ValError::InodeUnlinkedNlink);
    }
    if u.get(InodeField::Subvol) != 0 && !u.is_dir() {
        return Err(ValError::InodeSubvolNotDir);
    }
    Ok(())
}

/// Writes a string hash type name as `bch2_prt_str_hash_type()` does.
pub fn fmt_str_hash_type(f: &mut dyn fmt::Write, t: u8) -> fmt::Result {
    match STR_HASH_TYPE_NAMES.get(t as usize) {
        Some(n) => f.write_str(n),
        None => write!(f, "(unknown str_hash_type {t})"),
    }
}

/// `__bch2_inode_unpacked_to_text()` as it appears after `": "` in a key
/// line: a newline, then one `name=value` per line indented by two.
pub fn fmt_unpacked(f: &mut dyn fmt::Write, u: &InodeUnpacked) -> fmt::Result {
    write!(f, "\n  mode={:o}\n  flags=", u.mode)?;
    let mut flags = u.flags & ((1 << 20) - 1);
    let mut first = true;
    while flags != 0 {
        let bit = flags.trailing_zeros() as usize;
        let Some(name) = INODE_FLAG_NAMES.get(bit) else { break };
        if !first {
            f.write_char(',')?;
        }
        first = false;
        f.write_str(name)?;
        flags ^= 1 << bit;
    }
    write!(f, "({:x})\n  journal_seq={}\n  hash_seed={:x}\n  hash_type=", u.flags, u.journal_seq, u.hash_seed)?;
    fmt_str_hash_type(f, u.str_hash_type())?;
    write!(f, "\n  bi_size={}\n  bi_sectors={}\n  bi_version={}", u.size, u.sectors, u.version)?;
    for (i, (name, _)) in INODE_FIELDS_V3.iter().enumerate() {
        write!(f, "\n  {name}={}", u.fields[i])?;
    }
    Ok(())
}

/// `bch2_inode_to_text()`.
pub fn fmt_inode(f: &mut dyn fmt::Write, k: &Bkey, v: &[u8]) -> fmt::Result {
    match unpack(k, v) {
        Ok(u) => fmt_unpacked(f, &u),
        Err(_) => f.write_str("(unpack error)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bpos::Bpos;
    use proptest::prelude::*;
    use std::string::String;

    fn key(val_bytes: usize) -> Bkey {
        Bkey::new(KeyType::InodeV3, Bpos::new(0, 4096, u32::MAX), val_bytes / 8)
    }

    #[test]
    fn pack_unpack_known_inode() {
        let mut u = InodeUnpacked { inum: 4096, snapshot: u32::MAX, mode: 0o40755, hash_seed: 0x1234, ..Default::default() };
        u.flags = 3 << 20; // siphash
        u.set(InodeField::Nlink, 2);
        u.set(InodeField::Mtime, 1_700_000_000_000_000_000);
        let mut buf = [0u8; 272];
        let n = pack_v3(&u, &mut buf).unwrap();
        assert_eq!(n % 8, 0);
        let k = key(n);
        let mut back = unpack(&k, &buf[..n]).unwrap();
        // nr_fields and fields_start land in the low 32 bits of flags.
        assert_eq!(back.flags & 0xfffff, 0);
        assert_eq!((back.flags >> 24) & 0x7f, InodeField::Nlink as u32 + 1);
        back.flags = u.flags;
        assert_eq!(back, u);
        validate(&k, &buf[..n]).unwrap();
        let mut s = String::new();
        fmt_inode(&mut s, &k, &buf[..n]).unwrap();
        assert!(s.starts_with("\n  mode=40755\n  flags=(7300000)\n"), "{s}");
        assert!(s.contains("\n  hash_seed=1234\n  hash_type=siphash\n"));
        assert!(s.contains("\n  bi_nlink=2\n"));
        assert!(s.ends_with("\n  bi_nocow=0"));
    }

    #[test]
    fn bad_inodes_are_typed_errors() {
        let u = InodeUnpacked { mode: 0o100644, ..Default::default() };
        let mut buf = [0u8; 272];
        let n = pack_v3(&u, &mut buf).unwrap();
        assert_eq!(n, 48);
        let mut k = key(n);
        k.p.offset = 5;
        assert_eq!(validate(&k, &buf[..n]), Err(ValError::InodeBlockdevRange));
        k.p = Bpos::new(1, 4096, 1);
        assert_eq!(validate(&k, &buf[..n]), Err(ValError::InodePosInodeNonzero));
        // A varint field past the end of the value.
        let mut u2 = u;
        u2.set(InodeField::Nlink, 300);
        let n2 = pack_v3(&u2, &mut buf).unwrap();
        let k2 = key(n2);
        buf[n2 - 8..n2].iter_mut().for_each(|b| *b = 0xff);
        assert!(matches!(unpack(&k2, &buf[..n2]), Err(ValError::InodeUnpack { .. })));
        // fields_start below 6.
        let mut b3 = [0u8; 48];
        b3[16..24].copy_from_slice(&(5u64 << 31).to_le_bytes());
        assert!(matches!(validate(&key(48), &b3), Err(ValError::InodeFieldsStart { .. })));
        // Unlinked with links.
        let mut u4 = u;
        u4.flags = INODE_UNLINKED;
        u4.set(InodeField::Nlink, 1);
        let n4 = pack_v3(&u4, &mut buf).unwrap();
        assert_eq!(validate(&key(n4), &buf[..n4]), Err(ValError::InodeUnlinkedNlink));
    }

    #[test]
    fn v1_field_encoding() {
        // One byte, top bit set: 7 bits of value.
        assert_eq!(decode_field_v1(&[0x85]), Some((5, 3, 1)));
        // Two bytes: 0b01xxxxxx xxxxxxxx.
        assert_eq!(decode_field_v1(&[0x41, 0x00]), Some((256, 9, 2)));
        assert_eq!(decode_field_v1(&[0]), None);
        assert_eq!(decode_field_v1(&[0x41]), None);
    }

    proptest! {
        #[test]
        fn round_trip(fields in proptest::array::uniform24(any::<u64>()), mode in any::<u16>(),
                      flags in 0u32..(1 << 20), sizes in any::<(u64, u64, u64, u64, u64)>()) {
            let mut u = InodeUnpacked { inum: 4096, snapshot: 1, mode, flags, ..Default::default() };
            (u.journal_seq, u.hash_seed, u.size, u.sectors, u.version) = sizes;
            for (i, v) in fields.iter().enumerate() {
                u.fields[i] = v & width_mask(INODE_FIELDS_V3[i].1);
            }
            let mut buf = [0u8; 272];
            let n = pack_v3(&u, &mut buf).unwrap();
            let k = Bkey::new(KeyType::InodeV3, Bpos::new(0, 4096, 1), n / 8);
            let mut back = unpack(&k, &buf[..n]).unwrap();
            back.flags &= (1 << 20) - 1;
            prop_assert_eq!(back, u);
        }

        #[test]
        fn arbitrary_values_never_panic(v in proptest::collection::vec(any::<u8>(), 0..120), ty in 0u8..3) {
            let t = [KeyType::Inode, KeyType::InodeV2, KeyType::InodeV3][ty as usize];
            let k = Bkey::new(t, Bpos::new(0, 4096, 1), v.len() / 8);
            let _ = unpack(&k, &v);
            let _ = validate(&k, &v);
            let mut s = String::new();
            let _ = fmt_inode(&mut s, &k, &v);
        }
    }
}
