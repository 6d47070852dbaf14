// SPDX-License-Identifier: GPL-2.0
//! Namespace operations, write side: create (files, directories, device
//! nodes, fifos, sockets, symlinks), link, unlink, rename, setattr.
//!
//! Matches, in `fs/bcachefs`: `bch2_create_trans()`, `bch2_link_trans()`,
//! `bch2_unlink_trans()`, `bch2_rename_trans()` and
//! `bch2_reinherit_attrs()` in `fs-common.c`; `dirent_create_key()`,
//! `bch2_dirent_create()`, `bch2_dirent_rename()` and
//! `bch2_empty_dir_trans()` in `dirent.c`; and the checks the VFS makes
//! before calling into bcachefs (`vfs_rename()`, `vfs_link()`,
//! `may_delete()`), so that callers without a VFS (the tool) get the same
//! errors.
//!
//! The `*_trans` functions are transaction bodies: run them under
//! [`commit_do`].  The plain-named functions run the whole operation
//! (their own transactions included) and are what the tool and the tests
//! call.  Single subvolume: entries pointing to other subvolumes
//! (`DT_SUBVOL`) are read but never made.

use super::inode_write::{
    current_time, hash_info, inode_create, inode_init, inode_peek, inode_rm, inode_write, mode_to_type, nlink_dec,
    nlink_inc, INODE_OPTS, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
};
use super::acl::{acl_chmod, set_acl_trans, AclType, NewAcls};
use super::io_write::{truncate, write_data};
use super::str_hash_write::{hash_delete_at, hash_hole, hash_lookup, hash_needs_whiteout, hash_set, HashDesc, HashKey, HashSetFlags};
use super::trans::{commit_do, new_key, BtreeTransOps, DataAlloc};
use super::Subvol;
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{BkeyI, BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::str_hash::HashInfo;
use crate::format::val::dirent::{encode_dirent, parse_dirent, BCH_NAME_MAX, DT_SUBVOL};
use crate::format::val::inode::{InodeField, InodeUnpacked, INODE_UNLINKED};
use crate::platform::Vec;

/// `EPERM`: hard link to a directory.
pub const EPERM: Errno = Errno(1);
/// Longest symlink target, NUL included (`PATH_MAX`).
pub const PATH_MAX: usize = 4096;

/// `is_subdir_for_nlink()`: a directory that counts in its parent's
/// `bi_nlink` (not a subvolume root).
fn is_subdir_for_nlink(u: &InodeUnpacked) -> bool {
    u.is_dir() && u.get(InodeField::Subvol) == 0
}

/// Checks a name for a new directory entry as the VFS and
/// `dirent_create_key()` do.  Errors: `ENOENT` (empty), `ENAMETOOLONG`
/// (over [`BCH_NAME_MAX`] bytes), `EEXIST` (`.` and `..`, which always
/// exist), `EINVAL` (a `/` or NUL inside).
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() {
        return Err(Errno::ENOENT);
    }
    if name.len() > BCH_NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name == b"." || name == b".." {
        return Err(Errno::EEXIST);
    }
    if name.iter().any(|&c| c == b'/' || c == 0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// `dirent_create_key()`: a dirent value for `name` pointing at `target`
/// (an inode, or for `DT_SUBVOL` a subvolume made from `dir_subvol`), at
/// `dir:0:snapshot` (the offset is set when it is hashed in).
fn dirent_key(dir: u64, snapshot: u32, dir_subvol: u32, d_type: u8, name: &[u8], target: u64) -> Result<BkeyI, Errno> {
    if name.len() > BCH_NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let inum = if d_type == DT_SUBVOL { u64::from(dir_subvol) << 32 | (target & 0xffff_ffff) } else { target };
    let mut buf = [0u8; 9 + BCH_NAME_MAX + 8];
    let n = encode_dirent(&mut buf, inum, d_type, name).ok_or(Errno::ENAMETOOLONG)?;
    new_key(KeyType::Dirent, Bpos::new(dir, 0, snapshot), &buf[..n])
}

/// `bch2_dirent_create()`: hashes a new entry `name` → `target` of type
/// `d_type` into directory `dir`, failing if the name exists.  Returns
/// the entry's offset (for `bi_dir_offset`).  Errors: `EEXIST`,
/// `ENAMETOOLONG`, `ENOSPC`; restarts, `EIO`, `ENOMEM`.
pub fn dirent_create<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    dir: u64,
    info: &HashInfo,
    d_type: u8,
    name: &[u8],
    target: u64,
) -> Result<u64, BchError> {
    let k = dirent_key(dir, sv.snapshot, sv.id, d_type, name, target)?;
    let desc = HashDesc::Dirent { subvol: sv.id };
    hash_set(t, desc, info, &HashKey::Dirent(name), k, HashSetFlags { must_create: true, must_replace: false })
}

/// `bch2_empty_dir_trans()`: `ENOTEMPTY` when directory `dir` has a
/// visible entry.
pub fn empty_dir<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, dir: u64) -> Result<(), BchError> {
    let end = Bpos::new(dir, u64::MAX, u32::MAX);
    let mut from = Bpos::new(dir, 0, 0);
    while let Some(k) = t.peek_upto(BtreeId::Dirents, from, end, false)? {
        if k.k.p.snapshot == sv.snapshot && k.k.key_type == KeyType::Dirent as u8 {
            let d = parse_dirent(&k.v);
            if !(d.d_type == DT_SUBVOL && d.parent_subvol != sv.id) {
                return Err(Errno::ENOTEMPTY.into());
            }
        }
        match k.k.p.successor() {
            Some(n) if n <= end => from = n,
            _ => break,
        }
    }
    Ok(())
}

/// The directory inode `dir`, which must be a live directory.  Errors:
/// `ENOENT` (missing or unlinked), `ENOTDIR`.
fn dir_peek<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, dir: u64) -> Result<InodeUnpacked, BchError> {
    let u = inode_peek(t, sv.snapshot, dir)?;
    if !u.is_dir() {
        return Err(Errno::ENOTDIR.into());
    }
    if u.flags & INODE_UNLINKED != 0 {
        return Err(Errno::ENOENT.into());
    }
    Ok(u)
}

/// What a new inode is: its mode (type and permission bits), owner and
/// device number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewInode {
    /// `st_mode`: one of the seven file types and permission bits.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number (`bi_dev`) for character and block devices, in the
    /// kernel's internal `dev_t` encoding (`major << 20 | minor`); 0 for
    /// others.
    pub rdev: u32,
}

/// `bch2_create_trans()` without ACLs: [`create_trans_acl`] with none.
pub fn create_trans<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    dir: u64,
    name: &[u8],
    new: &InodeUnpacked,
    tmpfile: bool,
) -> Result<InodeUnpacked, BchError> {
    create_trans_acl(t, sv, dir, name, new, tmpfile, &NewAcls::default())
}

/// `bch2_create_trans()` without snapshots and subvolumes: a new
/// inode (`bch2_inode_init_late()` with the directory as parent, a number
/// from `bch2_inode_create()`), its ACLs (`acls`, what `posix_acl_create()`
/// made of the directory's default ACL: `bch2_set_acl_trans()` for the
/// default, then the access ACL), its entry `name` in directory `dir`,
/// and the directory's times and (for a subdirectory) link count.  With
/// `tmpfile`, no entry is made and the inode starts unlinked.  Returns the
/// new inode.  `new` is the result of [`inode_init_early`]: the part
/// (hash seed) chosen before the transaction.
///
/// Errors: `ENOENT`/`ENOTDIR` (the directory), `EEXIST`, `ENAMETOOLONG`,
/// `ENOSPC`, those of [`set_acl_trans`]; restarts, `EIO`, `ENOMEM`.
#[allow(clippy::too_many_arguments)]
pub fn create_trans_acl<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    dir: u64,
    name: &[u8],
    new: &InodeUnpacked,
    tmpfile: bool,
    acls: &NewAcls,
) -> Result<InodeUnpacked, BchError> {
    let now = current_time(t);
    let mut dir_u = dir_peek(t, sv, dir)?;
    let mut u = *new;
    let uid = u.get(InodeField::Uid) as u32;
    let gid = u.get(InodeField::Gid) as u32;
    let rdev = u.get(InodeField::Dev) as u32;
    let init = inode_init(t, now, uid, gid, u.mode, rdev, Some(&dir_u));
    // Keep the hash seed chosen outside the transaction.
    let seed = u.hash_seed;
    u = init;
    u.hash_seed = seed;
    if tmpfile {
        u.flags |= INODE_UNLINKED;
    }
    inode_create(t, &mut u, sv.snapshot)?;
    if let Some(d) = acls.default.as_deref() {
        set_acl_trans(t, sv, &u, Some(d), AclType::Default)?;
    }
    if let Some(a) = acls.access.as_deref() {
        set_acl_trans(t, sv, &u, Some(a), AclType::Access)?;
    }
    if !tmpfile {
        let info = hash_info(&dir_u)?;
        if is_subdir_for_nlink(&u) {
            let n = dir_u.get(InodeField::Nlink);
            dir_u.set(InodeField::Nlink, n + 1);
        }
        dir_u.set(InodeField::Mtime, now);
        dir_u.set(InodeField::Ctime, now);
        inode_write(t, &dir_u)?;
        let off = dirent_create(t, sv, dir, &info, mode_to_type(u.mode), name, u.inum)?;
        u.set(InodeField::Dir, dir);
        u.set(InodeField::DirOffset, off);
    }
    inode_write(t, &u)?;
    Ok(u)
}

/// `bch2_inode_init_early()`: what is chosen before the create
/// transaction (the hash seed), plus the caller's mode, owner and device.
pub fn inode_init_early<T: BtreeTransOps + ?Sized>(t: &mut T, n: &NewInode) -> InodeUnpacked {
    inode_init(t, 0, n.uid, n.gid, n.mode, n.rdev, None)
}

/// Whether `mode` is one of the seven file types.
fn valid_type(mode: u16) -> bool {
    matches!(mode & S_IFMT, 0o010000 | 0o020000 | 0o040000 | 0o060000 | 0o100000 | 0o120000 | 0o140000)
}

/// Creates `name` in directory `dir` (`bch2_mknod()`/`bch2_mkdir()`/
/// `bch2_create()`): a file, directory, device node, fifo or socket as
/// `n.mode` says.  Returns the new inode.
///
/// Errors: `EINVAL` (a mode that is no file type; a bad name, see
/// [`check_name`]), `ENOENT`, `ENOTDIR`, `EEXIST`, `ENAMETOOLONG`,
/// `ENOSPC`, `EIO`, `ENOMEM`.
pub fn create<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, dir: u64, name: &[u8], n: &NewInode) -> Result<InodeUnpacked, Errno> {
    create_acl(t, sv, dir, name, n, &NewAcls::default())
}

/// [`create`] with the ACLs `acls` (see [`create_trans_acl`]; the caller
/// made them and `n.mode` with `posix_acl_create()` or
/// [`super::acl::acl_create`]), written in the create's transaction.
/// Errors: those of [`create`] and [`set_acl_trans`].
pub fn create_acl<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    dir: u64,
    name: &[u8],
    n: &NewInode,
    acls: &NewAcls,
) -> Result<InodeUnpacked, Errno> {
    if !valid_type(n.mode) {
        return Err(Errno::EINVAL);
    }
    check_name(name)?;
    let new = inode_init_early(t, n);
    commit_do(t, |t| create_trans_acl(t, sv, dir, name, &new, false, acls))
}

/// Creates symlink `name` in `dir` pointing at `target`
/// (`bch2_symlink()`): an `S_IFLNK | 0777` inode whose data is the
/// target (`page_symlink()` is passed the length with the NUL but writes
/// one byte less: `i_size` = target length; the rest of the block reads
/// as zeroes).
/// As C, the inode is created as a tmpfile (unlinked, so a crash before
/// the link leaves no visible half-made symlink, only an unlinked inode),
/// its target written, then linked into `dir` ([`link_trans`]); an error
/// after the tmpfile removes it ([`inode_rm`], what `iput()` does in C).
/// Returns the new inode.
///
/// Errors: `ENOENT` (empty target), `ENAMETOOLONG` (target of
/// `PATH_MAX` bytes or more), those of [`create`], [`write_data`] and
/// [`link_trans`] (`EEXIST`).
#[allow(clippy::too_many_arguments)]
pub fn symlink<T: BtreeTransOps + ?Sized, A: DataAlloc + ?Sized>(
    t: &mut T,
    a: &mut A,
    sv: &Subvol,
    dir: u64,
    name: &[u8],
    target: &[u8],
    uid: u32,
    gid: u32,
) -> Result<InodeUnpacked, Errno> {
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    if target.len() >= PATH_MAX || target.contains(&0) {
        return Err(if target.contains(&0) { Errno::EINVAL } else { Errno::ENAMETOOLONG });
    }
    check_name(name)?;
    let new = inode_init_early(t, &NewInode { mode: S_IFLNK | 0o777, uid, gid, rdev: 0 });
    let u = commit_do(t, |t| create_trans(t, sv, dir, name, &new, true))?;
    let linked = (|| {
        let mut data = crate::platform::Vec::new();
        data.extend_from_slice(target)?;
        write_data(t, a, sv, u.inum, 0, &data)?;
        commit_do(t, |t| link_trans(t, sv, dir, u.inum, name))
    })();
    if linked.is_err() {
        // The tmpfile goes, as its last reference would in C.
        let _ = inode_rm(t, sv, u.inum);
    }
    linked
}

/// `bch2_reinherit_attrs()`: copies the directory's inode options that
/// `dst` did not set itself; whether any changed.
pub fn reinherit_attrs(dst: &mut InodeUnpacked, src: &InodeUnpacked) -> bool {
    let set = dst.get(InodeField::FieldsSet);
    let mut changed = false;
    for (id, f) in INODE_OPTS.iter().enumerate() {
        if set & (1 << id) != 0 {
            continue;
        }
        if dst.get(*f) != src.get(*f) {
            dst.set(*f, src.get(*f));
            changed = true;
        }
    }
    changed
}

/// `bch2_link_trans()`: a new entry `name` in `dir` for inode `inum`;
/// the inode's link count, ctime and `bi_dir` backpointer, the
/// directory's times.  Returns the inode.  Errors: `EXDEV` (the
/// directory's options differ from the inode's), `EMLINK`, `EEXIST`,
/// `ENOENT`, `ENOTDIR`; restarts, `EIO`, `ENOMEM`.
pub fn link_trans<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, dir: u64, inum: u64, name: &[u8]) -> Result<InodeUnpacked, BchError> {
    let now = current_time(t);
    let mut u = inode_peek(t, sv.snapshot, inum)?;
    u.set(InodeField::Ctime, now);
    nlink_inc(&mut u)?;
    let mut dir_u = dir_peek(t, sv, dir)?;
    if reinherit_attrs(&mut u, &dir_u) {
        return Err(Errno::EXDEV.into());
    }
    dir_u.set(InodeField::Mtime, now);
    dir_u.set(InodeField::Ctime, now);
    let info = hash_info(&dir_u)?;
    let off = dirent_create(t, sv, dir, &info, mode_to_type(u.mode), name, inum)?;
    u.set(InodeField::Dir, dir);
    u.set(InodeField::DirOffset, off);
    inode_write(t, &dir_u)?;
    inode_write(t, &u)?;
    Ok(u)
}

/// Makes `name` in `dir` a new link to inode `inum` (`bch2_link()` after
/// the VFS's checks).  Errors: `EPERM` (a directory), `ENOENT` (an
/// unlinked inode, or a missing one), those of [`link_trans`] and
/// [`check_name`].
pub fn link<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, dir: u64, inum: u64, name: &[u8]) -> Result<InodeUnpacked, Errno> {
    check_name(name)?;
    let u = commit_do(t, |t| inode_peek(t, sv.snapshot, inum))?;
    if u.is_dir() {
        return Err(EPERM);
    }
    if u.flags & INODE_UNLINKED != 0 {
        return Err(Errno::ENOENT);
    }
    commit_do(t, |t| link_trans(t, sv, dir, inum, name))
}

/// `bch2_unlink_trans()`: removes entry `name` from `dir` (a
/// `hash_whiteout` when the chain needs one), drops the inode's link
/// (setting `BCH_INODE_unlinked` on the last), clears its `bi_dir`
/// backpointer when it named this entry, and updates the directory's
/// times and link count.  Returns the inode as written.
///
/// Errors: `ENOENT`, `ENOTEMPTY` (a directory with entries), `EUCLEAN`;
/// restarts, `EIO`, `ENOMEM`.
pub fn unlink_trans<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, dir: u64, name: &[u8]) -> Result<InodeUnpacked, BchError> {
    let now = current_time(t);
    let mut dir_u = dir_peek(t, sv, dir)?;
    let info = hash_info(&dir_u)?;
    let desc = HashDesc::Dirent { subvol: sv.id };
    let d = hash_lookup(t, desc, &info, dir, sv.snapshot, &HashKey::Dirent(name))?;
    let de = parse_dirent(&d.v);
    if de.d_type == DT_SUBVOL {
        return Err(Errno::EOPNOTSUPP.into());
    }
    let mut u = inode_peek(t, sv.snapshot, de.inum)?;
    if u.is_dir() {
        empty_dir(t, sv, u.inum)?;
    }
    nlink_dec(&mut u)?;
    if u.get(InodeField::Dir) == dir && u.get(InodeField::DirOffset) == d.k.p.offset {
        u.set(InodeField::Dir, 0);
        u.set(InodeField::DirOffset, 0);
    }
    dir_u.set(InodeField::Mtime, now);
    dir_u.set(InodeField::Ctime, now);
    u.set(InodeField::Ctime, now);
    if is_subdir_for_nlink(&u) {
        let n = dir_u.get(InodeField::Nlink);
        dir_u.set(InodeField::Nlink, n.saturating_sub(1));
    }
    hash_delete_at(t, desc, &info, d.k.p)?;
    inode_write(t, &dir_u)?;
    inode_write(t, &u)?;
    Ok(u)
}

/// Removes `name` from `dir` (`unlink(2)`, or `rmdir(2)` when `rmdir`):
/// [`unlink_trans`], then, when that was the inode's last link,
/// [`inode_rm`] (which the VFS does when the last reference goes,
/// `bch2_evict_inode()`).
///
/// Errors: `ENOTDIR` (`rmdir` of a non-directory), `EISDIR` (`unlink` of
/// a directory), those of [`unlink_trans`] and [`inode_rm`].
pub fn unlink<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, dir: u64, name: &[u8], rmdir: bool) -> Result<(), Errno> {
    if name.len() > BCH_NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name == b"." || name == b".." {
        return Err(if rmdir { Errno::ENOTEMPTY } else { EPERM });
    }
    let u = commit_do(t, |t| {
        let dir_u = dir_peek(t, sv, dir)?;
        let info = hash_info(&dir_u)?;
        let d = hash_lookup(t, HashDesc::Dirent { subvol: sv.id }, &info, dir, sv.snapshot, &HashKey::Dirent(name))?;
        let de = parse_dirent(&d.v);
        let is_dir = de.d_type == mode_to_type(S_IFDIR) || de.d_type == DT_SUBVOL;
        if rmdir && !is_dir {
            return Err(Errno::ENOTDIR.into());
        }
        if !rmdir && is_dir {
            return Err(Errno::EISDIR.into());
        }
        unlink_trans(t, sv, dir, name)
    })?;
    if u.flags & INODE_UNLINKED != 0 {
        inode_rm(t, sv, u.inum)?;
    }
    Ok(())
}

/// `enum bch_rename_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    /// The destination does not exist (`BCH_RENAME`).
    Rename,
    /// The destination exists and is replaced (`BCH_RENAME_OVERWRITE`).
    Overwrite,
    /// Source and destination swap (`BCH_RENAME_EXCHANGE`).
    Exchange,
}

impl core::fmt::Display for RenameMode {
    /// C's names: `rename`, `rename_overwrite`, `rename_exchange`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RenameMode::Rename => "rename",
            RenameMode::Overwrite => "rename_overwrite",
            RenameMode::Exchange => "rename_exchange",
        })
    }
}

/// The result of [`rename_trans`]: the inodes as written.
#[derive(Clone, Copy, Debug)]
pub struct RenameResult {
    /// The inode that was at the source.
    pub src: InodeUnpacked,
    /// The inode that was at the destination, if any.
    pub dst: Option<InodeUnpacked>,
}

/// Offsets, entries and inode numbers of `bch2_dirent_rename()`.
struct DirentRename {
    src_inum: u64,
    dst_inum: u64,
    src_offset: u64,
    dst_offset: u64,
}

/// `bch2_dirent_rename()` within one subvolume: moves (or swaps) the
/// entries, keeping the hash chains intact.
#[allow(clippy::too_many_arguments)]
fn dirent_rename<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    src_dir: u64,
    src_hash: &HashInfo,
    dst_dir: u64,
    dst_hash: &HashInfo,
    src_name: &[u8],
    dst_name: &[u8],
    mode: RenameMode,
) -> Result<DirentRename, BchError> {
    let desc = HashDesc::Dirent { subvol: sv.id };
    let dst_hash_pos = Bpos::new(dst_dir, dst_hash.dirent_hash(dst_name), sv.snapshot);
    let old_src = hash_lookup(t, desc, src_hash, src_dir, sv.snapshot, &HashKey::Dirent(src_name))?;
    let src_d = parse_dirent(&old_src.v);
    if src_d.d_type == DT_SUBVOL {
        return Err(Errno::EOPNOTSUPP.into());
    }
    let (src_inum, src_type) = (src_d.inum, src_d.d_type);
    let (dst_pos, old_dst) = match mode {
        RenameMode::Rename => (hash_hole(t, desc, dst_hash, dst_dir, sv.snapshot, &HashKey::Dirent(dst_name))?, None),
        _ => {
            let k = hash_lookup(t, desc, dst_hash, dst_dir, sv.snapshot, &HashKey::Dirent(dst_name))?;
            let d = parse_dirent(&k.v);
            if d.d_type == DT_SUBVOL {
                return Err(Errno::EOPNOTSUPP.into());
            }
            (k.k.p, Some((d.inum, d.d_type)))
        }
    };
    let src_pos = old_src.k.p;
    let mut src_offset = dst_pos.offset;
    let mut new_dst = dirent_key(dst_dir, sv.snapshot, sv.id, src_type, dst_name, src_inum)?;
    new_dst.k.p = dst_pos;
    let dst_inum = old_dst.map_or(0, |d| d.0);
    if let (RenameMode::Exchange, Some((inum, ty))) = (mode, old_dst) {
        let mut new_src = dirent_key(src_dir, sv.snapshot, sv.id, ty, src_name, inum)?;
        new_src.k.p = src_pos;
        t.update(BtreeId::Dirents, new_dst)?;
        t.update(BtreeId::Dirents, new_src)?;
        src_offset = src_pos.offset;
    } else if dst_hash_pos <= src_pos && src_pos < dst_pos {
        // The entry being deleted sits between the new entry's hash and
        // the slot it would take.
        if mode == RenameMode::Rename {
            new_dst.k.p = src_pos;
            t.update(BtreeId::Dirents, new_dst)?;
            return Ok(DirentRename { src_inum, dst_inum, src_offset: src_pos.offset, dst_offset: src_pos.offset });
        }
        t.update(BtreeId::Dirents, new_dst)?;
        t.update(BtreeId::Dirents, super::trans::delete_key(src_pos, true))?;
    } else {
        let wh = hash_needs_whiteout(t, desc, src_hash, src_pos)?;
        t.update(BtreeId::Dirents, new_dst)?;
        t.update(BtreeId::Dirents, super::trans::delete_key(src_pos, wh))?;
    }
    Ok(DirentRename { src_inum, dst_inum, src_offset, dst_offset: dst_pos.offset })
}

/// `bch2_rename_trans()` within one subvolume: the entries (see
/// `bch2_dirent_rename()`), the inodes' `bi_dir` backpointers and ctimes,
/// the directories' times and link counts, the replaced inode's link.
///
/// Errors: `ENOENT` (a name is missing), `ENOTDIR` (overwriting a
/// directory with a non-directory or the reverse), `ENOTEMPTY`, `EXDEV`
/// (a directory whose inherited options would change), `EOPNOTSUPP`
/// (subvolume entries); restarts, `EIO`, `ENOMEM`.
#[allow(clippy::too_many_arguments)]
pub fn rename_trans<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    src_dir: u64,
    src_name: &[u8],
    dst_dir: u64,
    dst_name: &[u8],
    mode: RenameMode,
) -> Result<RenameResult, BchError> {
    let now = current_time(t);
    let mut src_dir_u = dir_peek(t, sv, src_dir)?;
    let src_hash = hash_info(&src_dir_u)?;
    let same_dir = src_dir == dst_dir;
    let mut dst_dir_u = if same_dir { src_dir_u } else { dir_peek(t, sv, dst_dir)? };
    let dst_hash = hash_info(&dst_dir_u)?;
    let r = dirent_rename(t, sv, src_dir, &src_hash, dst_dir, &dst_hash, src_name, dst_name, mode)?;
    let mut src_u = inode_peek(t, sv.snapshot, r.src_inum)?;
    let mut dst_u = if r.dst_inum != 0 { Some(inode_peek(t, sv.snapshot, r.dst_inum)?) } else { None };

    src_u.set(InodeField::Dir, dst_dir);
    src_u.set(InodeField::DirOffset, r.dst_offset);
    if let Some(d) = dst_u.as_mut() {
        if mode == RenameMode::Exchange {
            d.set(InodeField::Dir, src_dir);
            d.set(InodeField::DirOffset, r.src_offset);
        }
        if mode == RenameMode::Overwrite && d.get(InodeField::Dir) == dst_dir && d.get(InodeField::DirOffset) == r.src_offset {
            d.set(InodeField::Dir, 0);
            d.set(InodeField::DirOffset, 0);
        }
        if mode == RenameMode::Overwrite {
            if src_u.is_dir() != d.is_dir() {
                return Err(Errno::ENOTDIR.into());
            }
            if d.is_dir() {
                empty_dir(t, sv, d.inum)?;
            }
        }
    }
    // Both directory images must see each other's changes when they are
    // one directory: work on one copy then.
    {
        let dst_dir_img = if same_dir { &src_dir_u } else { &dst_dir_u };
        if reinherit_attrs(&mut src_u, dst_dir_img) && src_u.is_dir() {
            return Err(Errno::EXDEV.into());
        }
    }
    if let (RenameMode::Exchange, Some(d)) = (mode, dst_u.as_mut()) {
        if reinherit_attrs(d, &src_dir_u) && d.is_dir() {
            return Err(Errno::EXDEV.into());
        }
    }
    let nl = |u: &InodeUnpacked| u.get(InodeField::Nlink);
    if is_subdir_for_nlink(&src_u) {
        if same_dir {
            // -1 then +1 on the same directory.
        } else {
            src_dir_u.set(InodeField::Nlink, nl(&src_dir_u).saturating_sub(1));
            dst_dir_u.set(InodeField::Nlink, nl(&dst_dir_u) + 1);
        }
    }
    if let Some(d) = dst_u.as_ref() {
        if is_subdir_for_nlink(d) {
            let back = u64::from(mode == RenameMode::Exchange);
            if same_dir {
                src_dir_u.set(InodeField::Nlink, (nl(&src_dir_u) + back).saturating_sub(1));
            } else {
                dst_dir_u.set(InodeField::Nlink, nl(&dst_dir_u).saturating_sub(1));
                src_dir_u.set(InodeField::Nlink, nl(&src_dir_u) + back);
            }
        }
    }
    if mode == RenameMode::Overwrite {
        if let Some(d) = dst_u.as_mut() {
            nlink_dec(d)?;
        }
    }
    src_dir_u.set(InodeField::Mtime, now);
    src_dir_u.set(InodeField::Ctime, now);
    if !same_dir {
        dst_dir_u.set(InodeField::Mtime, now);
        dst_dir_u.set(InodeField::Ctime, now);
    }
    src_u.set(InodeField::Ctime, now);
    if let Some(d) = dst_u.as_mut() {
        d.set(InodeField::Ctime, now);
    }
    inode_write(t, &src_dir_u)?;
    if !same_dir {
        inode_write(t, &dst_dir_u)?;
    }
    inode_write(t, &src_u)?;
    if let Some(d) = dst_u.as_ref() {
        inode_write(t, d)?;
    }
    Ok(RenameResult { src: src_u, dst: dst_u })
}

/// `RENAME_NOREPLACE`.
pub const RENAME_NOREPLACE: u32 = 1;
/// `RENAME_EXCHANGE`.
pub const RENAME_EXCHANGE: u32 = 2;

/// Whether directory `anc` is `dir` or one of its ancestors (following
/// `bi_dir` backpointers up to the root).
fn is_ancestor<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, anc: u64, mut dir: u64) -> Result<bool, BchError> {
    // Bounded: a corrupt backpointer loop must not hang us.
    for _ in 0..4096 {
        if dir == anc {
            return Ok(true);
        }
        if dir == sv.root_inum || dir == 0 {
            return Ok(false);
        }
        let u = inode_peek(t, sv.snapshot, dir)?;
        dir = u.get(InodeField::Dir);
    }
    Err(Errno::EUCLEAN.into())
}

/// `rename(2)`/`renameat2(2)` with `flags` ([`RENAME_NOREPLACE`],
/// [`RENAME_EXCHANGE`]): the VFS's checks (`vfs_rename()`), then
/// [`rename_trans`] in the mode they select, then [`inode_rm`] of a
/// replaced inode that lost its last link.  Renaming a name onto another
/// link to the same inode does nothing, as in the VFS.
///
/// Errors: `EINVAL` (both flags, unknown flags, or moving a directory
/// under itself); `ENOENT` (no source; `RENAME_EXCHANGE` with no
/// destination); `EEXIST` (`RENAME_NOREPLACE` with a destination);
/// `ENOTDIR` (directory over a non-directory); `EISDIR` (non-directory
/// over a directory); `ENOTEMPTY`; those of [`rename_trans`] and
/// [`check_name`].
pub fn rename<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    src_dir: u64,
    src_name: &[u8],
    dst_dir: u64,
    dst_name: &[u8],
    flags: u32,
) -> Result<(), Errno> {
    if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0 || flags == RENAME_NOREPLACE | RENAME_EXCHANGE {
        return Err(Errno::EINVAL);
    }
    if src_name.len() > BCH_NAME_MAX || dst_name.len() > BCH_NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if src_name == b"." || src_name == b".." || dst_name == b"." || dst_name == b".." {
        return Err(Errno::EBUSY);
    }
    check_name(dst_name)?;
    let res = commit_do(t, |t| {
        let sd = dir_peek(t, sv, src_dir)?;
        let dd = dir_peek(t, sv, dst_dir)?;
        let desc = HashDesc::Dirent { subvol: sv.id };
        let src = hash_lookup(t, desc, &hash_info(&sd)?, src_dir, sv.snapshot, &HashKey::Dirent(src_name))?;
        let src_d = parse_dirent(&src.v);
        let dst = match hash_lookup(t, desc, &hash_info(&dd)?, dst_dir, sv.snapshot, &HashKey::Dirent(dst_name)) {
            Ok(k) => Some(parse_dirent(&k.v).inum),
            Err(BchError::Errno(Errno::ENOENT)) => None,
            Err(e) => return Err(e),
        };
        let src_u = inode_peek(t, sv.snapshot, src_d.inum)?;
        let mode = match (dst, flags) {
            (None, RENAME_EXCHANGE) => return Err(Errno::ENOENT.into()),
            (Some(_), RENAME_NOREPLACE) => return Err(Errno::EEXIST.into()),
            (Some(d), _) if d == src_d.inum => return Ok(None),
            (None, _) => RenameMode::Rename,
            (Some(_), RENAME_EXCHANGE) => RenameMode::Exchange,
            (Some(_), _) => RenameMode::Overwrite,
        };
        let dst_u = match dst {
            Some(d) => Some(inode_peek(t, sv.snapshot, d)?),
            None => None,
        };
        if mode == RenameMode::Overwrite {
            if let Some(d) = dst_u.as_ref() {
                if src_u.is_dir() && !d.is_dir() {
                    return Err(Errno::ENOTDIR.into());
                }
                if !src_u.is_dir() && d.is_dir() {
                    return Err(Errno::EISDIR.into());
                }
            }
        }
        if src_u.is_dir() && src_dir != dst_dir && is_ancestor(t, sv, src_u.inum, dst_dir)? {
            return Err(Errno::EINVAL.into());
        }
        // The target may not be an ancestor of the source (the VFS's
        // "trap" in do_renameat2()): EINVAL for an exchange, ENOTEMPTY
        // otherwise (the target holds the source's directory).
        if let Some(d) = dst_u.as_ref() {
            if d.is_dir() && src_dir != dst_dir && is_ancestor(t, sv, d.inum, src_dir)? {
                let e = if mode == RenameMode::Exchange { Errno::EINVAL } else { Errno::ENOTEMPTY };
                return Err(e.into());
            }
        }
        rename_trans(t, sv, src_dir, src_name, dst_dir, dst_name, mode).map(Some)
    })?;
    if let Some(RenameResult { dst: Some(d), .. }) = res {
        if d.flags & INODE_UNLINKED != 0 {
            inode_rm(t, sv, d.inum)?;
        }
    }
    Ok(())
}

/// What [`setattr`] changes (`struct iattr`); `None` leaves a field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (the file type part is ignored).
    pub mode: Option<u16>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size in bytes (regular files): truncates or extends.
    pub size: Option<u64>,
    /// Access time, ns since the epoch.
    pub atime_ns: Option<i64>,
    /// Modification time, ns.
    pub mtime_ns: Option<i64>,
    /// Change time, ns; `None` sets it to now when anything else changes
    /// (as `notify_change()` does).
    pub ctime_ns: Option<i64>,
    /// Birth time, ns (the tool copies it; the VFS never sets it).
    pub otime_ns: Option<i64>,
}

/// `bch2_setattr()`: size first (see [`truncate`]), then
/// `bch2_setattr_nonsize()`: owner, mode and times in one transaction; a
/// mode change also updates the access ACL (`bch2_acl_chmod()`,
/// [`acl_chmod`]).
/// Returns the inode as written.
///
/// Errors: `EISDIR` (size of a directory), `EINVAL` (size of another
/// non-regular file), `EFBIG`, `ENOENT`, `EIO`, `ENOMEM`.
pub fn setattr<T: BtreeTransOps + ?Sized, A: DataAlloc + ?Sized>(
    t: &mut T,
    a: &mut A,
    sv: &Subvol,
    inum: u64,
    attr: &SetAttr,
) -> Result<InodeUnpacked, Errno> {
    if let Some(size) = attr.size {
        let u = commit_do(t, |t| inode_peek(t, sv.snapshot, inum))?;
        if u.is_dir() {
            return Err(Errno::EISDIR);
        }
        if u.mode & S_IFMT != S_IFREG {
            return Err(Errno::EINVAL);
        }
        truncate(t, a, sv, inum, size)?;
    }
    commit_do(t, |t| {
        let facts = *t.facts();
        let now = current_time(t);
        let mut u = inode_peek(t, sv.snapshot, inum)?;
        if let Some(m) = attr.mode {
            u.mode = (u.mode & S_IFMT) | (m & !S_IFMT);
            // bch2_acl_chmod(): the access ACL follows, in this
            // transaction.
            let mut acl = Vec::new();
            acl_chmod(t, sv, &u, u.mode, &mut acl)?;
        }
        if let Some(v) = attr.uid {
            u.set(InodeField::Uid, u64::from(v));
        }
        if let Some(v) = attr.gid {
            u.set(InodeField::Gid, u64::from(v));
        }
        let tm = |ns: i64| super::inode_write::time_from_ns(&facts, ns);
        if let Some(v) = attr.atime_ns {
            u.set(InodeField::Atime, tm(v));
        }
        if let Some(v) = attr.mtime_ns {
            u.set(InodeField::Mtime, tm(v));
        }
        if let Some(v) = attr.otime_ns {
            u.set(InodeField::Otime, tm(v));
        }
        u.set(InodeField::Ctime, attr.ctime_ns.map_or(now, tm));
        inode_write(t, &u)?;
        Ok(u)
    })
}

/// The names of the inode options, in [`INODE_OPTS`] order (C's
/// `enum inode_opt_id`): the `bcachefs.<name>` xattrs.
pub const INODE_OPT_NAMES: [&str; 10] = [
    "data_checksum",
    "compression",
    "project",
    "background_compression",
    "data_replicas",
    "promote_target",
    "foreground_target",
    "background_target",
    "erasure_code",
    "nocow",
];

/// Sets (`Some(value)`, the option's text as `bcachefs.<name>` takes it,
/// e.g. `"lz4"` or `"zstd:3"`) or clears (`None`) inode option `name` of
/// `inum`: the value is stored as option + 1 and the option's bit in
/// `bi_fields_set` records that the inode set it itself, so that it is
/// no longer inherited (`bch2_xattr_bcachefs_set()` and
/// `inode_opt_set_fn()` in `xattr.c`).  Files and directories created in
/// a directory afterwards inherit its options.  Returns the inode.
///
/// Errors: `EINVAL` (not an inode option, or a value the option refuses;
/// `project` is set through the project ioctls instead), `ENOENT`, `EIO`,
/// `ENOMEM`.
pub fn inode_opt_set<T: BtreeTransOps + ?Sized>(
    t: &mut T,
    sv: &Subvol,
    inum: u64,
    name: &str,
    value: Option<&str>,
) -> Result<InodeUnpacked, Errno> {
    let id = INODE_OPT_NAMES.iter().position(|n| *n == name && *n != "project").ok_or(Errno::EINVAL)?;
    let v = match value {
        Some(s) => Some(crate::opts::opt_parse_named(name, s).map_err(|_| Errno::EINVAL)?.1),
        None => None,
    };
    commit_do(t, |t| {
        let mut u = inode_peek(t, sv.snapshot, inum)?;
        let set = u.get(InodeField::FieldsSet);
        match v {
            Some(v) => {
                u.set(InodeField::FieldsSet, set | 1 << id);
                u.set(INODE_OPTS[id], v + 1);
            }
            None => {
                u.set(InodeField::FieldsSet, set & !(1 << id));
                u.set(INODE_OPTS[id], 0);
            }
        }
        inode_write(t, &u)?;
        Ok(u)
    })
}

/// `FS_SYNC_FL`, `FS_IMMUTABLE_FL`, `FS_APPEND_FL`, `FS_NODUMP_FL`,
/// `FS_NOATIME_FL` (`include/uapi/linux/fs.h`) with the `BCH_INODE_*` bit
/// each stands for (`bch_flags_to_uflags[]` in `fs-ioctl.h`).
const UFLAGS: [(u32, u32); 5] = [(0x08, 0), (0x10, 1), (0x20, 2), (0x40, 3), (0x80, 4)];

/// `BCH_INODE_append | BCH_INODE_immutable`: changing them needs
/// `CAP_LINUX_IMMUTABLE`.
pub const INODE_FLAGS_NEED_CAP: u32 = (1 << 1) | (1 << 2);

/// The `FS_IOC_GETFLAGS` flags of an inode's `bi_flags`
/// (`map_flags(bch_flags_to_uflags, ...)`).
pub fn inode_flags_to_uflags(bi_flags: u32) -> u32 {
    UFLAGS.iter().filter(|&&(_, b)| bi_flags & (1 << b) != 0).fold(0, |a, &(u, _)| a | u)
}

/// `FS_IOC_SETFLAGS` (`bch2_ioc_setflags()` with
/// `bch2_inode_flags_set()`): sets the sync, immutable, append, nodump and
/// noatime flags of inode `inum` to those of `uflags` (the others are
/// kept), and ctime to now.  `capable_immutable` is whether the caller has
/// `CAP_LINUX_IMMUTABLE`.  Returns the inode as written.
///
/// Errors: `EOPNOTSUPP` (a flag bcachefs does not have), `EPERM`
/// (immutable or append changed without the capability), `EINVAL` (flags
/// other than nodump and noatime on a file that is neither regular nor a
/// directory), `ENOENT`, `EIO`, `ENOMEM`.
pub fn set_flags<T: BtreeTransOps + ?Sized>(t: &mut T, sv: &Subvol, inum: u64, uflags: u32, capable_immutable: bool) -> Result<InodeUnpacked, Errno> {
    let mut rest = uflags;
    let mut flags = 0u32;
    let mut mask = 0u32;
    for &(u, b) in UFLAGS.iter() {
        mask |= 1 << b;
        if rest & u != 0 {
            flags |= 1 << b;
            rest &= !u;
        }
    }
    if rest != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    commit_do(t, |t| {
        let now = current_time(t);
        let mut u = inode_peek(t, sv.snapshot, inum)?;
        if ((flags ^ (u.flags & mask)) & INODE_FLAGS_NEED_CAP) != 0 && !capable_immutable {
            return Err(Errno::EPERM.into());
        }
        let ty = u.mode & S_IFMT;
        let nodump_noatime = (1 << 3) | (1 << 4);
        if ty != S_IFREG && ty != S_IFDIR && flags & !nodump_noatime != 0 {
            return Err(Errno::EINVAL.into());
        }
        u.flags = (u.flags & !mask) | flags;
        u.set(InodeField::Ctime, now);
        inode_write(t, &u)?;
        Ok(u)
    })
}
