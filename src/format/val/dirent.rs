// SPDX-License-Identifier: GPL-2.0
//! Directory entries and xattrs: `struct bch_dirent`
//! (`fs/bcachefs/dirent_format.h`) and `struct bch_xattr`
//! (`xattr_format.h`), checked and printed as `dirent.c` and `xattr.c` do.
//!
//! A dirent value: `d_inum` (u64; for `DT_SUBVOL` entries
//! `d_child_subvol` u32 then `d_parent_subvol` u32), `d_type` (u8), then
//! the name, NUL-padded to a whole u64.  The key is
//! `dir_inum:hash(name):snapshot` ([`HashInfo::dirent_hash`](crate::format::str_hash::HashInfo::dirent_hash)).
//!
//! An xattr value: `x_type` (u8), `x_name_len` (u8), `x_val_len` (u16),
//! then the name and the value.  The key is
//! `inum:hash(type, name):snapshot`.

use core::fmt;

use super::ValError;
use crate::format::bkey::Bkey;

/// Offset of the name in a dirent value (`offsetof(struct bch_dirent, d_name)`).
pub const DIRENT_NAME_OFFSET: usize = 9;
/// `d_type` of an entry naming a subvolume (`DT_SUBVOL`).
pub const DT_SUBVOL: u8 = 16;
/// Longest name a new dirent may have (`BCH_NAME_MAX`).
pub const BCH_NAME_MAX: usize = 512;
/// Names of `d_type`s (`bch2_d_types[]`), `None` where C has none.
pub const D_TYPE_NAMES: [Option<&str>; 17] = [
    Some("unknown"),
    Some("fifo"),
    Some("chr"),
    None,
    Some("dir"),
    None,
    Some("blk"),
    None,
    Some("reg"),
    None,
    Some("lnk"),
    None,
    Some("sock"),
    None,
    Some("whiteout"),
    None,
    Some("subvol"),
];
/// Offset of the name in an xattr value.
pub const XATTR_NAME_OFFSET: usize = 4;
/// Prefixes of the xattr types C has handlers for (`bch_xattr_handler_map`);
/// `Some("")` for the POSIX ACL types, whose handlers have no prefix.
pub const XATTR_PREFIXES: [Option<&str>; 5] =
    [Some("user."), Some(""), Some(""), Some("trusted."), Some("security.")];

/// A dirent value, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dirent<'a> {
    /// Target inode (meaningless for `DT_SUBVOL`).
    pub inum: u64,
    /// For `DT_SUBVOL`: the subvolume the entry points to.
    pub child_subvol: u32,
    /// For `DT_SUBVOL`: the subvolume the entry lives in.
    pub parent_subvol: u32,
    /// File type: the high bits of the target's mode, or `DT_SUBVOL`.
    pub d_type: u8,
    /// The name, without the NUL padding.
    pub name: &'a [u8],
}

/// `bch2_dirent_get_name()` and the fixed fields.  The name length is the
/// value length minus the header minus the trailing NULs of the last u64,
/// as C computes it.
pub fn parse_dirent(v: &[u8]) -> Dirent<'_> {
    let inum = v.get(..8).map_or(0, |s| {
        let mut b = [0u8; 8];
        b.copy_from_slice(s);
        u64::from_le_bytes(b)
    });
    let name = if v.len() < DIRENT_NAME_OFFSET || v.len() % 8 != 0 {
        &[][..]
    } else {
        let mut last = [0u8; 8];
        last.copy_from_slice(&v[v.len() - 8..]);
        let last = u64::from_le_bytes(last);
        let trailing_nuls = if last == 0 { 8 } else { (last.leading_zeros() / 8) as usize };
        let len = (v.len() - DIRENT_NAME_OFFSET).saturating_sub(trailing_nuls);
        &v[DIRENT_NAME_OFFSET..DIRENT_NAME_OFFSET + len]
    };
    Dirent {
        inum,
        child_subvol: inum as u32,
        parent_subvol: (inum >> 32) as u32,
        d_type: v.get(8).copied().unwrap_or(0),
        name,
    }
}

/// Value size in u64s of a dirent with a name of `len` bytes
/// (`dirent_val_u64s()`).
pub fn dirent_val_u64s(len: usize) -> usize {
    (DIRENT_NAME_OFFSET + len).div_ceil(8)
}

/// Encodes a dirent value into `out`; returns its length (a multiple of
/// 8), or `None` when `out` is too small.
pub fn encode_dirent(out: &mut [u8], inum: u64, d_type: u8, name: &[u8]) -> Option<usize> {
    let n = dirent_val_u64s(name.len()) * 8;
    let o = out.get_mut(..n)?;
    o.iter_mut().for_each(|b| *b = 0);
    o[..8].copy_from_slice(&inum.to_le_bytes());
    o[8] = d_type;
    o[DIRENT_NAME_OFFSET..DIRENT_NAME_OFFSET + name.len()].copy_from_slice(name);
    Some(n)
}

/// `bch2_dirent_validate()`.  `commit` adds the name length limit C checks
/// for new keys.
pub fn validate_dirent(k: &Bkey, v: &[u8], commit: bool) -> Result<(), ValError> {
    let d = parse_dirent(v);
    if d.name.is_empty() {
        return Err(ValError::DirentEmptyName);
    }
    let max = dirent_val_u64s(d.name.len());
    if k.val_u64s() > max {
        return Err(ValError::DirentValTooBig { u64s: k.val_u64s(), max });
    }
    if commit && d.name.len() > BCH_NAME_MAX {
        return Err(ValError::DirentNameTooLong(d.name.len()));
    }
    if d.name.contains(&0) {
        return Err(ValError::DirentEmbeddedNul);
    }
    if d.name == b"." || d.name == b".." {
        return Err(ValError::DirentDotOrDotdot);
    }
    if d.name.contains(&b'/') {
        return Err(ValError::DirentSlash);
    }
    if d.d_type != DT_SUBVOL && d.inum == k.p.inode {
        return Err(ValError::DirentToItself);
    }
    Ok(())
}

/// Writes bytes as `%.*s` would: up to the first NUL; other bytes as
/// they are when they form UTF-8, `\xNN` otherwise.
pub fn fmt_bytes(f: &mut dyn fmt::Write, b: &[u8]) -> fmt::Result {
    let b = match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    };
    let mut rest = b;
    while !rest.is_empty() {
        match core::str::from_utf8(rest) {
            Ok(s) => return f.write_str(s),
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // The prefix was just checked to be UTF-8.
                f.write_str(core::str::from_utf8(good).unwrap_or(""))?;
                let n = e.error_len().unwrap_or(bad.len()).max(1).min(bad.len());
                for c in &bad[..n] {
                    write!(f, "\\x{c:02x}")?;
                }
                rest = &bad[n..];
            }
        }
    }
    Ok(())
}

/// `bch2_d_type_str()`.
pub fn d_type_name(t: u8) -> &'static str {
    D_TYPE_NAMES.get(t as usize).copied().flatten().unwrap_or("(bad d_type)")
}

/// `bch2_dirent_to_text()`: `name -> inum type T` or
/// `name -> parent -> child type subvol`.
pub fn fmt_dirent(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    let d = parse_dirent(v);
    fmt_bytes(f, d.name)?;
    f.write_str(" -> ")?;
    if d.d_type != DT_SUBVOL {
        write!(f, "{}", d.inum)?;
    } else {
        write!(f, "{} -> {}", d.parent_subvol, d.child_subvol)?;
    }
    write!(f, " type {}", d_type_name(d.d_type))
}

/// An xattr value, decoded.  `name` and `value` are cut to what the value
/// holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Xattr<'a> {
    /// `KEY_TYPE_XATTR_INDEX_*`.
    pub x_type: u8,
    /// `x_name_len`.
    pub name_len: u8,
    /// `x_val_len`.
    pub val_len: u16,
    /// The name.
    pub name: &'a [u8],
    /// The value.
    pub value: &'a [u8],
}

/// Decodes an xattr value; `None` when it is shorter than its 4-byte
/// header.
pub fn parse_xattr(v: &[u8]) -> Option<Xattr<'_>> {
    let h = v.get(..XATTR_NAME_OFFSET)?;
    let name_len = h[1];
    let val_len = u16::from_le_bytes([h[2], h[3]]);
    let rest = &v[XATTR_NAME_OFFSET..];
    let nl = (name_len as usize).min(rest.len());
    let name = &rest[..nl];
    let vrest = &rest[nl..];
    let value = &vrest[..(val_len as usize).min(vrest.len())];
    Some(Xattr { x_type: h[0], name_len, val_len, name, value })
}

/// Value size in u64s of an xattr (`xattr_val_u64s()`).
pub fn xattr_val_u64s(name_len: usize, val_len: usize) -> usize {
    (XATTR_NAME_OFFSET + name_len + val_len).div_ceil(8)
}

/// Encodes an xattr value into `out`; returns its length (a multiple of
/// 8), or `None` when `out` is too small or a length does not fit.
pub fn encode_xattr(out: &mut [u8], ty: u8, name: &[u8], value: &[u8]) -> Option<usize> {
    let nl = u8::try_from(name.len()).ok()?;
    let vl = u16::try_from(value.len()).ok()?;
    let n = xattr_val_u64s(name.len(), value.len()) * 8;
    let o = out.get_mut(..n)?;
    o.iter_mut().for_each(|b| *b = 0);
    o[0] = ty;
    o[1] = nl;
    o[2..4].copy_from_slice(&vl.to_le_bytes());
    o[4..4 + name.len()].copy_from_slice(name);
    o[4 + name.len()..4 + name.len() + value.len()].copy_from_slice(value);
    Some(n)
}

/// `bch2_xattr_validate()`.
pub fn validate_xattr(k: &Bkey, v: &[u8]) -> Result<(), ValError> {
    let x = parse_xattr(v).ok_or(ValError::XattrValTooSmall { u64s: k.val_u64s(), min: 1 })?;
    let min = xattr_val_u64s(x.name_len as usize, x.val_len as usize);
    if k.val_u64s() < min {
        return Err(ValError::XattrValTooSmall { u64s: k.val_u64s(), min });
    }
    let max = xattr_val_u64s(x.name_len as usize, x.val_len as usize + 4);
    if k.val_u64s() > max {
        return Err(ValError::XattrValTooBig { u64s: k.val_u64s(), max });
    }
    if XATTR_PREFIXES.get(x.x_type as usize).copied().flatten().is_none() {
        return Err(ValError::XattrInvalidType(x.x_type));
    }
    if x.name.contains(&0) {
        return Err(ValError::XattrNameNul);
    }
    Ok(())
}

/// `bch2_xattr_to_text()`: `prefix` `name:value`, and for a POSIX ACL
/// (types 1 and 2) a space and the ACL decoded ([`fmt_acl`]).
pub fn fmt_xattr(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    let Some(x) = parse_xattr(v) else {
        return f.write_str("(value too small)");
    };
    match XATTR_PREFIXES.get(x.x_type as usize).copied().flatten() {
        Some("") => write!(f, "(type {})", x.x_type)?,
        Some(p) => f.write_str(p)?,
        None => write!(f, "(unknown type {})", x.x_type)?,
    }
    fmt_bytes(f, x.name)?;
    f.write_char(':')?;
    fmt_bytes(f, x.value)?;
    if x.x_type == 1 || x.x_type == 2 {
        f.write_char(' ')?;
        fmt_acl(f, x.value)?;
    }
    Ok(())
}

/// `ACL_USER_OBJ`: the owner's permissions.
pub const ACL_USER_OBJ: u16 = 0x01;
/// `ACL_USER`: a named user's (entry has an id).
pub const ACL_USER: u16 = 0x02;
/// `ACL_GROUP_OBJ`: the owning group's.
pub const ACL_GROUP_OBJ: u16 = 0x04;
/// `ACL_GROUP`: a named group's (entry has an id).
pub const ACL_GROUP: u16 = 0x08;
/// `ACL_MASK`: the most the group class may have.
pub const ACL_MASK: u16 = 0x10;
/// `ACL_OTHER`: everyone else's.
pub const ACL_OTHER: u16 = 0x20;
/// `ACL_UNDEFINED_ID`: the id of entries that have none.
pub const ACL_UNDEFINED_ID: u32 = u32::MAX;
/// `BCH_ACL_VERSION`: the on-disk header's `a_version`.
pub const BCH_ACL_VERSION: u32 = 0x0001;
/// `sizeof(bch_acl_header)`, bytes.
pub const ACL_HEADER_BYTES: usize = 4;
/// `sizeof(bch_acl_entry_short)`, bytes.
pub const ACL_ENTRY_SHORT_BYTES: usize = 4;
/// `sizeof(bch_acl_entry)`, bytes.
pub const ACL_ENTRY_BYTES: usize = 8;

/// Whether entries of `tag` are stored long (`bch_acl_entry`, with an id:
/// named users and groups) or short (`bch_acl_entry_short`); `None` for
/// an unknown tag.
pub fn acl_tag_is_long(tag: u16) -> Option<bool> {
    match tag {
        ACL_USER_OBJ | ACL_GROUP_OBJ | ACL_MASK | ACL_OTHER => Some(false),
        ACL_USER | ACL_GROUP => Some(true),
        _ => None,
    }
}

/// The entries of an on-disk ACL value (`bch_acl_header` then short and
/// long entries), as `bch2_acl_from_disk()` and `bch2_acl_to_text()` walk
/// them; `None` when the value is not a version 1 ACL.
pub fn acl_disk_entries(v: &[u8]) -> Option<AclDiskEntries<'_>> {
    let hdr = v.get(..ACL_HEADER_BYTES)?;
    if u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) != BCH_ACL_VERSION {
        return None;
    }
    Some(AclDiskEntries { rest: &v[ACL_HEADER_BYTES..] })
}

/// Iterator of [`acl_disk_entries`]: `Ok((tag, perm, id))` per entry (id
/// [`ACL_UNDEFINED_ID`] for short ones); one `Err(())` for an unknown tag
/// or an entry cut short, which ends the walk.
pub struct AclDiskEntries<'a> {
    rest: &'a [u8],
}

impl Iterator for AclDiskEntries<'_> {
    type Item = Result<(u16, u16, u32), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let p = core::mem::take(&mut self.rest);
        let Some(s) = p.get(..ACL_ENTRY_SHORT_BYTES) else { return Some(Err(())) };
        let tag = u16::from_le_bytes([s[0], s[1]]);
        let perm = u16::from_le_bytes([s[2], s[3]]);
        match acl_tag_is_long(tag) {
            Some(false) => {
                self.rest = &p[ACL_ENTRY_SHORT_BYTES..];
                Some(Ok((tag, perm, ACL_UNDEFINED_ID)))
            }
            Some(true) => match p.get(..ACL_ENTRY_BYTES) {
                Some(l) => {
                    self.rest = &p[ACL_ENTRY_BYTES..];
                    Some(Ok((tag, perm, u32::from_le_bytes([l[4], l[5], l[6], l[7]]))))
                }
                None => Some(Err(())),
            },
            None => Some(Err(())),
        }
    }
}

/// `bch2_acl_to_text()` (`acl.c`): the entries of an on-disk ACL value
/// ([`acl_disk_entries`]) as `user_obj 6 user uid 1000 4 ...`,
/// permissions in octal; nothing for a value that is not a version 1 ACL.
/// Stops at an unknown tag or a cut entry (C would read past them).
pub fn fmt_acl(f: &mut dyn fmt::Write, v: &[u8]) -> fmt::Result {
    let Some(entries) = acl_disk_entries(v) else { return Ok(()) };
    let mut entries = entries.peekable();
    while let Some(Ok((tag, perm, id))) = entries.next() {
        match tag {
            ACL_USER_OBJ => f.write_str("user_obj")?,
            ACL_GROUP_OBJ => f.write_str("group_obj")?,
            ACL_MASK => f.write_str("mask")?,
            ACL_OTHER => f.write_str("other")?,
            ACL_USER => write!(f, "user uid {id}")?,
            _ => write!(f, "group gid {id}")?,
        }
        write!(f, " {perm:o}")?;
        if entries.peek().is_some() {
            f.write_char(' ')?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bkey::KeyType;
    use crate::format::bpos::Bpos;
    use proptest::prelude::*;
    use std::string::String;

    fn dirent_key(n: usize) -> Bkey {
        Bkey::new(KeyType::Dirent, Bpos::new(4096, 12345, u32::MAX), n / 8)
    }

    #[test]
    fn dirent_round_trip_and_text() {
        let mut buf = [0u8; 64];
        let n = encode_dirent(&mut buf, 4097, 8, b"hello").unwrap();
        assert_eq!(n, 16);
        let d = parse_dirent(&buf[..n]);
        assert_eq!((d.inum, d.d_type, d.name), (4097, 8, &b"hello"[..]));
        validate_dirent(&dirent_key(n), &buf[..n], true).unwrap();
        let mut s = String::new();
        fmt_dirent(&mut s, &buf[..n]).unwrap();
        assert_eq!(s, "hello -> 4097 type reg");
        // A 7-byte name fills the first u64 exactly: 9 + 7 = 16.
        let n = encode_dirent(&mut buf, 4097, 4, b"seven77").unwrap();
        assert_eq!(parse_dirent(&buf[..n]).name, b"seven77");
        let n = encode_dirent(&mut buf, 0, DT_SUBVOL, b"sub").unwrap();
        buf[..8].copy_from_slice(&((1u64 << 32) | 2).to_le_bytes());
        let mut s = String::new();
        fmt_dirent(&mut s, &buf[..n]).unwrap();
        assert_eq!(s, "sub -> 1 -> 2 type subvol");
    }

    #[test]
    fn bad_dirents() {
        let mut buf = [0u8; 64];
        let n = encode_dirent(&mut buf, 1, 8, b".").unwrap();
        assert_eq!(validate_dirent(&dirent_key(n), &buf[..n], false), Err(ValError::DirentDotOrDotdot));
        let n = encode_dirent(&mut buf, 1, 8, b"a/b").unwrap();
        assert_eq!(validate_dirent(&dirent_key(n), &buf[..n], false), Err(ValError::DirentSlash));
        let n = encode_dirent(&mut buf, 4096, 8, b"self").unwrap();
        assert_eq!(validate_dirent(&dirent_key(n), &buf[..n], false), Err(ValError::DirentToItself));
        let n = encode_dirent(&mut buf, 1, 8, b"a\0b").unwrap();
        assert_eq!(validate_dirent(&dirent_key(n), &buf[..n], false), Err(ValError::DirentEmbeddedNul));
        assert_eq!(validate_dirent(&dirent_key(16), &[0u8; 16], false), Err(ValError::DirentEmptyName));
        let n = encode_dirent(&mut buf, 1, 8, b"x").unwrap();
        // An extra zero u64: C counts only the last u64's NULs, so the name
        // grows by 7 NULs and the value is too big for it.
        assert_eq!(
            validate_dirent(&dirent_key(n + 8), &buf[..n + 8], false),
            Err(ValError::DirentValTooBig { u64s: 3, max: 2 })
        );
    }

    #[test]
    fn xattr_round_trip_and_text() {
        let mut buf = [0u8; 64];
        let n = encode_xattr(&mut buf, 0, b"foo", b"bar").unwrap();
        let k = Bkey::new(KeyType::Xattr, Bpos::new(4096, 1, 1), n / 8);
        validate_xattr(&k, &buf[..n]).unwrap();
        let mut s = String::new();
        fmt_xattr(&mut s, &buf[..n]).unwrap();
        assert_eq!(s, "user.foo:bar");
        let n = encode_xattr(&mut buf, 9, b"foo", b"").unwrap();
        let k = Bkey::new(KeyType::Xattr, Bpos::new(4096, 1, 1), n / 8);
        assert_eq!(validate_xattr(&k, &buf[..n]), Err(ValError::XattrInvalidType(9)));
        let mut s = String::new();
        fmt_xattr(&mut s, &buf[..n]).unwrap();
        assert_eq!(s, "(unknown type 9)foo:");
        // An ACL: C's bch2_acl_to_text() after the raw value.
        let acl = [1, 0, 0, 0, 1, 0, 6, 0, 2, 0, 4, 0, 0xe8, 3, 0, 0, 4, 0, 5, 0, 0x10, 0, 7, 0, 0x20, 0, 0, 0];
        let n = encode_xattr(&mut buf, 1, b"", &acl).unwrap();
        let mut s = String::new();
        fmt_acl(&mut s, &acl).unwrap();
        assert_eq!(s, "user_obj 6 user uid 1000 4 group_obj 5 mask 7 other 0");
        let mut t = String::new();
        fmt_xattr(&mut t, &buf[..n]).unwrap();
        assert!(t.starts_with("(type 1):") && t.ends_with(&s), "{t}");
        let k = Bkey::new(KeyType::Xattr, Bpos::new(4096, 1, 1), 1);
        let mut short = [0u8; 8];
        short[1] = 200;
        assert!(matches!(validate_xattr(&k, &short), Err(ValError::XattrValTooSmall { .. })));
    }

    proptest! {
        #[test]
        fn arbitrary_values_never_panic(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let k = dirent_key(v.len());
            let _ = validate_dirent(&k, &v, true);
            let mut s = String::new();
            let _ = fmt_dirent(&mut s, &v);
            let _ = validate_xattr(&k, &v);
            let _ = fmt_xattr(&mut s, &v);
        }

        #[test]
        fn dirent_names_round_trip(name in proptest::collection::vec(1u8..=255, 1..100)) {
            let mut buf = [0u8; 128];
            let n = encode_dirent(&mut buf, 1, 8, &name).unwrap();
            prop_assert_eq!(parse_dirent(&buf[..n]).name, &name[..]);
        }
    }
}
