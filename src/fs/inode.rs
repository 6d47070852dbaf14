// SPDX-License-Identifier: GPL-2.0
//! Inodes, directories, regular files and symlinks, read-only
//! (`fs/bcachefs/fs.c`: `bch2_alloc_inode`, `bch2_free_inode`,
//! `bch2_vfs_inode_get`, `bch2_vfs_inode_init`, `bch2_lookup`,
//! `bch2_getattr`; `fs/bcachefs/fs-io-pagecache.c` and `fs-io-buffered.c`:
//! `bch2_read_folio`, `bch2_readahead`; `bch2_readdir`).
//!
//! Each VFS inode is the `vfs` field of a [`BchInode`] allocated from our
//! own kmem_cache, which also holds the inode's attributes as read from
//! the inodes btree, the decoded-extent cache of its reader and, for a
//! symlink, its target.  Everything the VFS asks is answered through
//! [`crate::fs_common`].

use core::cell::UnsafeCell;
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use kernel::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

use super::{FsInfo, NofsScope, Reader};
use crate::bindings;
use crate::errcode::Errno;
use crate::fs_common::{self, ExtentCache, InodeAttrs};
use crate::platform::Vec;

pub(super) const PAGE_SIZE: usize = 4096;
pub(super) const NSEC_PER_SEC: i64 = 1_000_000_000;
pub(super) const S_IFMT: u16 = bindings::S_IFMT as u16;
pub(super) const S_IFREG: u16 = bindings::S_IFREG as u16;
pub(super) const S_IFDIR: u16 = bindings::S_IFDIR as u16;
pub(super) const S_IFLNK: u16 = bindings::S_IFLNK as u16;
pub(super) const S_IFCHR: u16 = bindings::S_IFCHR as u16;

/// Our inode: the VFS inode and what we keep beside it.
///
/// # Invariants
///
/// Allocated by [`bch_alloc_inode`] from [`INODE_CACHE`], which
/// initialises every field; `vfs` is first, so a pointer to it is a
/// pointer to the whole.  `link` is written only while the inode is
/// `I_NEW` (by [`iget`]); after that it is read-only.  `attrs` is written
/// while the inode is `I_NEW`, and after that only on a read-write mount
/// by a holder of the mount's operation lock; it is read through a
/// [`Reader`] (which holds that lock on a read-write mount).  `cache` is
/// accessed only by the holder of `cache_busy`.
#[repr(C)]
pub(crate) struct BchInode {
    vfs: bindings::inode,
    attrs: UnsafeCell<InodeAttrs>,
    cache_busy: AtomicBool,
    cache: UnsafeCell<ExtentCache>,
    /// A symlink's target, NUL-terminated (`i_link` points into it).
    link: Vec<u8>,
}

impl BchInode {
    /// The `BchInode` around `inode`.
    ///
    /// # Safety
    ///
    /// `inode` is an inode of one of our superblocks (allocated by
    /// [`bch_alloc_inode`]), alive for `'a`.
    pub(super) unsafe fn from_vfs<'a>(inode: *const bindings::inode) -> &'a BchInode {
        // SAFETY: `vfs` is the first field of a `repr(C)` struct, so the
        // pointers are the same; the caller guarantees the allocation.
        unsafe { &*inode.cast::<BchInode>() }
    }

    /// The inode's attributes as last read or written; `_r` proves the
    /// mount's operation lock is held on a read-write mount.
    pub(super) fn attrs(&self, _r: &Reader<'_>) -> InodeAttrs {
        // SAFETY: writers hold the operation lock (type invariant), which
        // the reader holds on a read-write mount; on a read-only one
        // nobody writes after `I_NEW`.
        unsafe { *self.attrs.get() }
    }

    /// Replaces the attributes after a write; `_op` proves the mount's
    /// operation lock is held.
    pub(super) fn set_attrs(&self, _op: &super::rw::Op<'_>, a: InodeAttrs) {
        // SAFETY: the operation lock is held (type invariant: writers and
        // readers of a read-write mount hold it).
        unsafe { *self.attrs.get() = a };
    }

    /// Runs `f` with this inode's extent cache, or with a fresh one when
    /// another reader holds it (parallel readers of one file then decode
    /// on their own rather than wait).
    fn with_cache<R>(&self, f: impl FnOnce(&mut ExtentCache) -> R) -> R {
        if self.cache_busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            // SAFETY: `cache_busy` is ours, so nobody else touches `cache`
            // until we release it below.
            let r = f(unsafe { &mut *self.cache.get() });
            self.cache_busy.store(false, Ordering::Release);
            r
        } else {
            f(&mut ExtentCache::default())
        }
    }
}

/// The kmem_cache every [`BchInode`] comes from; set while the module is
/// loaded ([`InodeCache`]).
static INODE_CACHE: AtomicPtr<bindings::kmem_cache> = AtomicPtr::new(ptr::null_mut());

/// Owns [`INODE_CACHE`]; destroys it on drop.
pub(crate) struct InodeCache(());

impl InodeCache {
    /// Creates the cache.  Errors: `ENOMEM`.
    pub(crate) fn create() -> Result<Self, Errno> {
        // SAFETY: the name is static; `inode_ctor` initialises the one
        // field that must be set up once per object.
        let c = unsafe {
            bindings::bch_rs_kmem_cache_create(
                c"bcachefs_rs_inode".as_ptr().cast(),
                size_of::<BchInode>() as c_uint,
                Some(inode_ctor),
            )
        };
        if c.is_null() {
            return Err(Errno::ENOMEM);
        }
        INODE_CACHE.store(c, Ordering::Release);
        Ok(InodeCache(()))
    }
}

impl Drop for InodeCache {
    fn drop(&mut self) {
        let c = INODE_CACHE.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: the filesystem type is unregistered and no superblock
        // is left, so the only inodes not yet freed are those waiting for
        // an RCU grace period (`free_inode` runs from RCU): `rcu_barrier`
        // waits for them, after which the cache is empty.
        unsafe {
            bindings::rcu_barrier();
            bindings::kmem_cache_destroy(c);
        }
    }
}

/// Slab constructor: `inode_init_once()` on the VFS part.
///
/// # Safety
///
/// Called by the slab allocator with a new object of our cache.
unsafe extern "C" fn inode_ctor(p: *mut c_void) {
    // SAFETY: `p` is an object of size `BchInode` whose first field is
    // the `struct inode`.
    unsafe { bindings::inode_init_once(p.cast()) };
}

/// `alloc_inode`: a [`BchInode`] with empty attributes and cache.
///
/// # Safety
///
/// Called by the VFS for one of our superblocks.
pub(super) unsafe extern "C" fn bch_alloc_inode(sb: *mut bindings::super_block) -> *mut bindings::inode {
    let cache = INODE_CACHE.load(Ordering::Acquire);
    // SAFETY: the cache exists while the filesystem type is registered.
    let p = unsafe { bindings::bch_rs_alloc_inode_sb(sb, cache) }.cast::<BchInode>();
    if p.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `p` is a fresh object of our cache: `vfs` was set up by the
    // constructor (the VFS does the rest), our fields are written here
    // without reading or dropping what was there.
    unsafe {
        ptr::addr_of_mut!((*p).attrs).write(UnsafeCell::new(InodeAttrs::default()));
        ptr::addr_of_mut!((*p).cache_busy).write(AtomicBool::new(false));
        ptr::addr_of_mut!((*p).cache).write(UnsafeCell::new(ExtentCache::default()));
        ptr::addr_of_mut!((*p).link).write(Vec::new());
        ptr::addr_of_mut!((*p).vfs)
    }
}

/// `free_inode` (after an RCU grace period): drops our fields and frees
/// the object.
///
/// # Safety
///
/// Called by the VFS once per inode from [`bch_alloc_inode`], when nobody
/// can reach it any more (RCU path walks included).
pub(super) unsafe extern "C" fn bch_free_inode(inode: *mut bindings::inode) {
    let p = inode.cast::<BchInode>();
    // SAFETY: initialised by `bch_alloc_inode`, dropped once here; then
    // the object goes back to its cache.
    unsafe {
        ptr::drop_in_place(ptr::addr_of_mut!((*p).cache));
        ptr::drop_in_place(ptr::addr_of_mut!((*p).link));
        bindings::kmem_cache_free(INODE_CACHE.load(Ordering::Acquire), p.cast());
    }
}

pub(super) fn timespec(ns: i64) -> bindings::timespec64 {
    bindings::timespec64 { tv_sec: ns.div_euclid(NSEC_PER_SEC), tv_nsec: ns.rem_euclid(NSEC_PER_SEC) as _ }
}

/// The inode `inum` of `sb`'s subvolume, read from the btree the first
/// time (`bch2_vfs_inode_get`).  Returns a reference the caller owns.
///
/// Errors: `ENOENT` (no such inode), `EUCLEAN`, `EIO`, `ENOMEM`.
///
/// # Safety
///
/// `sb` is one of our superblocks with `s_fs_info` set (mounted, or in
/// `fill_super` past that point).
pub(super) unsafe fn iget(sb: *mut bindings::super_block, inum: u64) -> Result<*mut bindings::inode, Errno> {
    // SAFETY: `sb` is valid.
    let inode = unsafe { bindings::iget_locked(sb, inum as c_ulong) };
    if inode.is_null() {
        return Err(Errno::ENOMEM);
    }
    // SAFETY: `iget_locked` returned a referenced inode.
    if unsafe { (*inode).i_state } & bindings::I_NEW == 0 {
        return Ok(inode);
    }
    // SAFETY: `sb` has its `FsInfo` (caller's contract); the new inode is
    // locked (`I_NEW`) and ours alone to set up.
    let r = unsafe { init_new(sb, inode, inum) };
    match r {
        Ok(()) => {
            // SAFETY: `inode` is `I_NEW` and fully set up.
            unsafe { bindings::unlock_new_inode(inode) };
            Ok(inode)
        }
        Err(e) => {
            // SAFETY: marks the half-built inode bad, unlocks and drops
            // our reference.
            unsafe { bindings::iget_failed(inode) };
            Err(e)
        }
    }
}

/// Fills a new inode from the btree (`bch2_vfs_inode_init`).
///
/// # Safety
///
/// `inode` is `I_NEW`, of superblock `sb` whose `s_fs_info` is set.
unsafe fn init_new(sb: *mut bindings::super_block, inode: *mut bindings::inode, inum: u64) -> Result<(), Errno> {
    // SAFETY: caller's contract.
    let info = unsafe { FsInfo::of(sb) };
    let r = info.read();
    let attrs = fs_common::inode_get(&*r, &info.sv, inum)?;
    let p = inode.cast::<BchInode>();
    let mode = attrs.mode;
    // SAFETY: the inode is `I_NEW`: nobody else reads or writes it until
    // `unlock_new_inode`.  The operation tables are static.
    unsafe {
        *(*p).attrs.get() = attrs;
        if mode & S_IFMT == S_IFLNK {
            let mut link = Vec::new();
            fs_common::readlink(&*r, &info.sv, &attrs, &mut link)?;
            // The target ends at its first NUL (C strings), which we add.
            link.push(0)?;
            (*p).link = link;
            (*inode).__bindgen_anon_4.i_link = (*p).link.as_ptr().cast_mut().cast::<c_char>();
        }
        set_vfs_attrs(inode, &attrs, true, ALL_TIMES);
        let rw = info.is_rw();
        match mode & S_IFMT {
            S_IFREG => {
                (*inode).i_op = if rw { &super::rw::FILE_IOPS } else { &FILE_IOPS };
                (*inode).__bindgen_anon_3.i_fop = if rw { &super::rw::FILE_FOPS.0 } else { &FILE_FOPS.0 };
                (*inode).i_data.a_ops = if rw { &super::rw::AOPS } else { &AOPS };
            }
            S_IFDIR => {
                (*inode).i_op = if rw { &super::rw::DIR_IOPS } else { &DIR_IOPS };
                (*inode).__bindgen_anon_3.i_fop = &DIR_FOPS.0;
            }
            S_IFLNK => {
                (*inode).i_op = if rw { &super::rw::SYMLINK_IOPS } else { &SYMLINK_IOPS };
            }
            _ => {
                (*inode).i_op = if rw { &super::rw::SPECIAL_IOPS } else { &SPECIAL_IOPS };
                bindings::init_special_inode(inode, mode, attrs.rdev);
            }
        }
    }
    Ok(())
}

/// Sets the VFS inode's fields from `attrs` (`bch2_inode_update_after_write()`
/// for the fields the VFS keeps): mode, owner, link count, blocks,
/// generation, the times `times` names (`ATTR_ATIME`, `ATTR_MTIME`,
/// `ATTR_CTIME`: those the operation wrote; the others may be newer in the
/// VFS inode than in the btree, from a `file_update_time()` that
/// `write_inode` has not written yet), and the size when `size` (a regular
/// file's size is led by the page cache on a read-write mount).
///
/// # Safety
///
/// `inode` is an inode of ours that is `I_NEW`, or whose VFS locks the
/// caller holds as the VFS requires for changing these fields.
pub(super) unsafe fn set_vfs_attrs(inode: *mut bindings::inode, attrs: &InodeAttrs, size: bool, times: c_uint) {
    // SAFETY: the caller's contract.
    unsafe {
        (*inode).i_mode = attrs.mode;
        bindings::i_uid_write(inode, attrs.uid);
        bindings::i_gid_write(inode, attrs.gid);
        bindings::set_nlink(inode, attrs.nlink);
        if size {
            (*inode).i_size = attrs.size as i64;
        }
        (*inode).i_blocks = attrs.sectors;
        (*inode).i_generation = attrs.generation;
        if times & bindings::ATTR_ATIME != 0 {
            bindings::inode_set_atime_to_ts(inode, timespec(attrs.atime_ns));
        }
        if times & bindings::ATTR_MTIME != 0 {
            bindings::inode_set_mtime_to_ts(inode, timespec(attrs.mtime_ns));
        }
        if times & bindings::ATTR_CTIME != 0 {
            bindings::inode_set_ctime_to_ts(inode, timespec(attrs.ctime_ns));
        }
        bindings::inode_set_flags(inode, vfs_flags(attrs.flags), VFS_FLAGS_MASK);
    }
}

/// `S_SYNC`, `S_NOATIME`, `S_APPEND`, `S_IMMUTABLE` (`include/linux/fs.h`).
/// Every time: for an inode read from the btree.
pub(super) const ALL_TIMES: c_uint = bindings::ATTR_ATIME | bindings::ATTR_MTIME | bindings::ATTR_CTIME;

const VFS_FLAGS_MASK: c_uint = 1 | 2 | 4 | 8;

/// `bch2_inode_flags_to_vfs()`: the VFS's `i_flags` for an inode's
/// `bi_flags` (`BCH_INODE_sync`, `immutable`, `append`, `noatime`).
fn vfs_flags(bi_flags: u32) -> c_uint {
    let mut f = 0;
    for (bch, vfs) in [(0, 1), (1, 8), (2, 4), (4, 2)] {
        if bi_flags & (1 << bch) != 0 {
            f |= vfs;
        }
    }
    f
}

static DIR_IOPS: bindings::inode_operations = bindings::inode_operations {
    lookup: Some(bch_lookup),
    getattr: Some(bch_getattr),
    listxattr: Some(super::xattr::bch_listxattr),
    get_inode_acl: Some(super::acl::bch_get_inode_acl),
    set_acl: Some(super::acl::bch_set_acl),
    // SAFETY: the other members are optional callbacks; `None` is zero.
    ..unsafe { core::mem::zeroed() }
};

static FILE_IOPS: bindings::inode_operations = bindings::inode_operations {
    getattr: Some(bch_getattr),
    listxattr: Some(super::xattr::bch_listxattr),
    get_inode_acl: Some(super::acl::bch_get_inode_acl),
    set_acl: Some(super::acl::bch_set_acl),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
};

static SYMLINK_IOPS: bindings::inode_operations = bindings::inode_operations {
    get_link: Some(bindings::simple_get_link),
    getattr: Some(bch_getattr),
    listxattr: Some(super::xattr::bch_listxattr),
    get_inode_acl: Some(super::acl::bch_get_inode_acl),
    set_acl: Some(super::acl::bch_set_acl),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
};

static SPECIAL_IOPS: bindings::inode_operations = bindings::inode_operations {
    getattr: Some(bch_getattr),
    listxattr: Some(super::xattr::bch_listxattr),
    get_inode_acl: Some(super::acl::bch_get_inode_acl),
    set_acl: Some(super::acl::bch_set_acl),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
};

/// `file_operations` holds the owner module pointer, which makes it
/// `!Sync` in Rust; ours is constant and only read by the kernel.
pub(super) struct Fops(pub(super) bindings::file_operations);
// SAFETY: never written after compilation; `owner` is null.
unsafe impl Sync for Fops {}

static DIR_FOPS: Fops = Fops(bindings::file_operations {
    llseek: Some(bindings::generic_file_llseek),
    read: Some(bindings::generic_read_dir),
    iterate_shared: Some(bch_readdir),
    unlocked_ioctl: Some(super::ioctl::bch_ioctl),
    // bch2_dir_file_operations: a directory's fsync flushes the journal
    // (nothing on a read-only mount).
    fsync: Some(super::rw::bch_fsync),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
});

static FILE_FOPS: Fops = Fops(bindings::file_operations {
    unlocked_ioctl: Some(super::ioctl::bch_ioctl),
    open: Some(bindings::generic_file_open),
    llseek: Some(bindings::generic_file_llseek),
    read_iter: Some(bindings::generic_file_read_iter),
    mmap: Some(bindings::generic_file_readonly_mmap),
    splice_read: Some(bindings::filemap_splice_read),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
});

static AOPS: bindings::address_space_operations = bindings::address_space_operations {
    read_folio: Some(bch_read_folio),
    readahead: Some(bch_readahead),
    // SAFETY: as above.
    ..unsafe { core::mem::zeroed() }
};

/// `lookup` (`bch2_lookup`): the directory entry `dentry` names, then its
/// inode.
///
/// # Safety
///
/// Called by the VFS with a directory inode of ours and a negative dentry
/// under it.
pub(super) unsafe extern "C" fn bch_lookup(dir: *mut bindings::inode, dentry: *mut bindings::dentry, _flags: c_uint) -> *mut bindings::dentry {
    let _nofs = NofsScope::new();
    // SAFETY: `dir` is ours and referenced by the caller; its superblock
    // is mounted.  `d_name` is stable while the caller holds the parent's
    // lock; `name` is valid for `len` bytes.
    let r = unsafe {
        let sb = (*dir).i_sb;
        let info = FsInfo::of(sb);
        let d = BchInode::from_vfs(dir);
        let q = &(*dentry).d_name;
        let name = core::slice::from_raw_parts(q.name, q.__bindgen_anon_1.__bindgen_anon_1.len as usize);
        let found = {
            let r = info.read();
            fs_common::lookup(&*r, &info.sv, &d.attrs(&r), name)
        };
        let r = match found {
            // A dirent naming no inode is an inconsistency
            // (`bch2_lookup_trans()`); the lookup still fails `ENOENT`.
            Ok(Some((inum, _))) => iget(sb, inum).map(Some).inspect_err(|&e| {
                if e == Errno::ENOENT {
                    info.inconsistent(format_args!("dirent to missing inode {inum}"));
                }
            }),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        info.inconsistent_on("lookup", r)
    };
    match r {
        // SAFETY: `d_splice_alias` takes our inode reference (or a null
        // inode for a negative entry) and the caller's dentry.
        Ok(inode) => unsafe { bindings::d_splice_alias(inode.unwrap_or(ptr::null_mut()), dentry) },
        // SAFETY: encodes an errno as a pointer.
        Err(e) => unsafe { bindings::ERR_PTR(e.to_kernel() as _).cast() },
    }
}

/// `getattr` (`bch2_getattr`): the generic attributes, the filesystem's
/// block size and the birth time.
///
/// # Safety
///
/// Called by the VFS with valid arguments for an inode of ours.
pub(super) unsafe extern "C" fn bch_getattr(
    idmap: *mut bindings::mnt_idmap,
    path: *const bindings::path,
    stat: *mut bindings::kstat,
    request_mask: u32,
    _flags: c_uint,
) -> c_int {
    // SAFETY: the path's dentry is positive and its inode ours; `stat` is
    // valid for writing.
    unsafe {
        let inode = (*(*path).dentry).d_inode;
        bindings::generic_fillattr(idmap, request_mask, inode, stat);
        let info = FsInfo::of((*inode).i_sb);
        (*stat).blksize = info.facts.block_bytes;
        if request_mask & bindings::STATX_BTIME != 0 {
            (*stat).result_mask |= bindings::STATX_BTIME;
            let otime = BchInode::from_vfs(inode).attrs(&info.read()).otime_ns;
            (*stat).btime = timespec(otime);
        }
    }
    0
}

/// `iterate_shared` (`bch2_readdir`): `.` and `..`, then the entries from
/// `ctx->pos` in hash order.  `ctx->pos` is each entry's position while it
/// is emitted and the next one's after, so a listing resumes where it
/// stopped.
///
/// # Safety
///
/// Called by the VFS with an open directory of ours and a valid context.
unsafe extern "C" fn bch_readdir(file: *mut bindings::file, ctx: *mut bindings::dir_context) -> c_int {
    // SAFETY: valid arguments (caller's contract).
    if !unsafe { bindings::dir_emit_dots(file, ctx) } {
        return 0;
    }
    let _nofs = NofsScope::new();
    // SAFETY: the file's inode is a directory of ours, referenced by the
    // open file; its superblock is mounted.
    let (info, d) = unsafe {
        let inode = (*file).f_inode;
        (FsInfo::of((*inode).i_sb), BchInode::from_vfs(inode))
    };
    // Entries are read a batch at a time and emitted with no lock held:
    // `dir_emit` copies to user memory, whose fault may read a page of a
    // file of ours.
    let mut names: Vec<u8> = Vec::new();
    let mut ents: Vec<(usize, usize, u64, u8, u64)> = Vec::new();
    loop {
        names.clear();
        ents.clear();
        // SAFETY: `ctx` is valid for the call.
        let pos = unsafe { (*ctx).pos } as u64;
        let mut oom = false;
        let r = {
            let rd = info.read();
            let attrs = d.attrs(&rd);
            fs_common::readdir(&*rd, &info.sv, &attrs, pos, &mut |e| {
                let start = names.len();
                if names.extend_from_slice(e.name).is_err() || ents.push((start, e.name.len(), e.inum, e.d_type, e.next_pos)).is_err() {
                    oom = true;
                    return false;
                }
                ents.len() < READDIR_BATCH
            })
        };
        if let Err(e) = info.inconsistent_on("readdir", r) {
            return e.to_kernel();
        }
        if oom && ents.is_empty() {
            return Errno::ENOMEM.to_kernel();
        }
        for &(start, len, inum, d_type, next_pos) in ents.iter() {
            let Some(name) = names.get(start..start + len) else { return Errno::EINVAL.to_kernel() };
            // SAFETY: `ctx` is valid; `name` is valid for its length.
            unsafe {
                (*ctx).pos = next_pos.saturating_sub(1) as i64;
                if !bindings::dir_emit(ctx, name.as_ptr().cast(), len as c_int, inum, c_uint::from(d_type)) {
                    return 0;
                }
                (*ctx).pos = next_pos as i64;
            }
        }
        if ents.len() < READDIR_BATCH && !oom {
            return 0;
        }
    }
}

/// Directory entries read per hold of the mount's lock in `readdir`.
const READDIR_BATCH: usize = 64;

/// Fills a locked, not uptodate folio of a regular file with its data
/// (zeros past the end of the file).
///
/// # Safety
///
/// `folio` is locked and belongs to the page cache of a file of ours.
pub(super) unsafe fn fill_folio(folio: *mut bindings::folio) -> Result<(), Errno> {
    // SAFETY: a locked page-cache folio has a stable mapping whose host
    // is the inode; the inode is referenced by whoever reads through it.
    let (info, bi, pos, size) = unsafe {
        let mapping = (*folio).__bindgen_anon_1.__bindgen_anon_1.mapping;
        let inode = (*mapping).host;
        (FsInfo::of((*inode).i_sb), BchInode::from_vfs(inode), bindings::folio_pos(folio) as u64, bindings::folio_size(folio))
    };
    let mut off = 0;
    while off < size {
        let len = PAGE_SIZE.min(size - off);
        // SAFETY: `off < folio_size`; the mapping is released below before
        // the next one.  The folio is locked and not uptodate, so nobody
        // else reads or writes its memory meanwhile.
        let r = unsafe {
            let p = bindings::kmap_local_folio(folio, off);
            let buf = core::slice::from_raw_parts_mut(p.cast::<u8>(), len);
            let r = {
                let rd = info.read();
                if info.is_rw() {
                    // The size on disk grows with every write back: read
                    // it fresh, and decode extents afresh (no cache).
                    // The inode is referenced (see above).
                    let inum = (*(*(*folio).__bindgen_anon_1.__bindgen_anon_1.mapping).host).i_ino as u64;
                    fs_common::inode_get(&*rd, &info.sv, inum)
                        .and_then(|attrs| fs_common::read_data(&*rd, &info.sv, &attrs, pos + off as u64, buf, &mut ExtentCache::default()))
                } else {
                    let attrs = bi.attrs(&rd);
                    bi.with_cache(|cache| fs_common::read_data(&*rd, &info.sv, &attrs, pos + off as u64, buf, cache))
                }
            };
            bindings::kunmap_local(p);
            r
        };
        r?;
        off += len;
    }
    // A reader that reached the end of the file needs the decoded extent
    // no more: free it rather than keep it for as long as the inode is
    // cached (thousands of inodes may be).
    if !info.is_rw() && pos + size as u64 >= bi.attrs(&info.read()).size {
        bi.with_cache(|cache| *cache = ExtentCache::default());
    }
    Ok(())
}

/// `read_folio`: reads one folio; on error the folio stays not uptodate
/// and the reader gets the errno (`EIO`), the mount stays up.
///
/// # Safety
///
/// Called by the page cache with a locked folio of a file of ours.
pub(super) unsafe extern "C" fn bch_read_folio(_file: *mut bindings::file, folio: *mut bindings::folio) -> c_int {
    let _nofs = NofsScope::new();
    // SAFETY: caller's contract.
    let r = unsafe { fill_folio(folio) };
    // SAFETY: the folio is locked: its mapping's host is ours, alive.
    let info = unsafe { FsInfo::of((*(*(*folio).__bindgen_anon_1.__bindgen_anon_1.mapping).host).i_sb) };
    let r = info.inconsistent_on("reading file data", r);
    // SAFETY: marks the folio uptodate on success and unlocks it.
    unsafe { bindings::folio_end_read(folio, r.is_ok()) };
    match r {
        Ok(()) => 0,
        Err(e) => e.to_kernel(),
    }
}

/// `readahead`: the request's folios in batches of consecutive ones of up
/// to [`RA_BATCH_BYTES`], each batch read by one `read_data_segs` call
/// straight into the folios: the extents under the batch are looked up,
/// all the device reads they need are in flight together, and once they
/// have completed the checksummed and compressed extents are verified and
/// decoded into place (each once per batch, as a read-write mount keeps no
/// extent cache).  On an error the batch's folios are read one by one as
/// `read_folio` does, so that only the folios that fail stay not uptodate.
///
/// # Safety
///
/// Called by the page cache with a valid readahead control of a file of
/// ours.
pub(super) unsafe extern "C" fn bch_readahead(rac: *mut bindings::readahead_control) {
    let _nofs = NofsScope::new();
    let mut batch: Vec<*mut bindings::folio> = Vec::new();
    let mut bytes = 0usize;
    loop {
        // SAFETY: `rac` is valid; each folio returned is locked and ours
        // to end.
        let folio = unsafe { bindings::readahead_folio(rac) };
        if folio.is_null() {
            break;
        }
        // SAFETY: as above.
        let size = unsafe { bindings::folio_size(folio) };
        if !batch.is_empty() && bytes + size > RA_BATCH_BYTES {
            // SAFETY: the batch's folios are locked, ours to end.
            unsafe { read_batch(&batch) };
            batch.clear();
            bytes = 0;
        }
        if batch.push(folio).is_err() {
            // SAFETY: as above.
            unsafe { read_one(folio) };
            continue;
        }
        bytes += size;
    }
    if !batch.is_empty() {
        // SAFETY: the batch's folios are locked, ours to end; consecutive.
        unsafe { extend_batch(&mut batch, bytes) };
        // SAFETY: as above.
        unsafe { read_batch(&batch) };
    }
}

/// Adds to `batch` (the last folios of a readahead request, `bytes` of
/// them) new folios past its end up to the end of the extent under its
/// last sector when that extent is checksummed or compressed, so that the
/// rest of the extent, read and verified whole for any part of it, lands
/// in the page cache with this read (`readpage_bio_extend()`).  Folios
/// already cached, or locked by someone else, end the extension; so do
/// the end of the file and [`RA_BATCH_BYTES`].
///
/// # Safety
///
/// `batch` holds consecutive locked folios of one file of ours, not
/// uptodate, ours to end.
unsafe fn extend_batch(batch: &mut Vec<*mut bindings::folio>, mut bytes: usize) {
    let Some(&last) = batch.last() else { return };
    // SAFETY: the caller's contract (see `fill_folio`).
    let (info, inum, mapping, mut next, isize) = unsafe {
        let mapping = (*last).__bindgen_anon_1.__bindgen_anon_1.mapping;
        let inode = (*mapping).host;
        let next = bindings::folio_pos(last) as u64 + bindings::folio_size(last) as u64;
        (FsInfo::of((*inode).i_sb), (*inode).i_ino as u64, mapping, next, bindings::i_size_read(inode).max(0) as u64)
    };
    let end = {
        let rd = info.read();
        match fs_common::expensive_extent_end(&*rd, &info.sv, inum, next / 512 - 1) {
            Ok(Some(end)) => end.saturating_mul(512).min(isize.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64),
            _ => return,
        }
    };
    while next < end && bytes + PAGE_SIZE <= RA_BATCH_BYTES {
        // SAFETY: `mapping` is the file's, referenced through the locked
        // folios of the batch.  `FGP_NOWAIT`: a folio locked by another
        // task is not waited for (we hold locks of lower folios).
        let folio = unsafe {
            bindings::__filemap_get_folio(
                mapping,
                (next / PAGE_SIZE as u64) as c_ulong,
                bindings::BCH_RS_FGP_RA_EXTEND,
                bindings::mapping_gfp_mask(mapping) | bindings::BCH_RS_GFP_RA_EXTRA,
            )
        };
        if folio.is_null() || super::rw::is_err(folio) {
            break;
        }
        // SAFETY: `folio` is locked and referenced by us.  A folio
        // already uptodate (or a large one) is not ours to read: it goes
        // back as it was.  Otherwise its page-cache reference keeps it
        // while it is locked (removal from the mapping needs the lock),
        // as for the folios `readahead_folio()` hands out, so ours is
        // dropped at once.
        let fresh = unsafe {
            let fresh = !bindings::folio_test_uptodate(folio) && bindings::folio_size(folio) == PAGE_SIZE;
            if !fresh {
                bindings::folio_unlock(folio);
            }
            bindings::folio_put(folio);
            fresh
        };
        if !fresh {
            break;
        }
        if batch.push(folio).is_err() {
            // SAFETY: locked, not uptodate, ours to end.
            unsafe { read_one(folio) };
            break;
        }
        bytes += PAGE_SIZE;
        next += PAGE_SIZE as u64;
    }
}

/// Bytes of folios [`bch_readahead`] reads with one `read_data_segs` call:
/// more than the default readahead window (128 KiB), so that a request is
/// one batch.
const RA_BATCH_BYTES: usize = 4 << 20;

/// The linear-map address of `folio`'s memory (`folio_address`; 64-bit
/// kernels have no highmem), which covers the whole folio and which a bio
/// can carry; `None` if it has none.
///
/// # Safety
///
/// `folio` is a valid folio the caller holds (locked or under writeback).
pub(super) unsafe fn folio_linear(folio: *mut bindings::folio) -> Option<*mut u8> {
    // SAFETY: the caller's contract; the checks only look at the address.
    unsafe {
        let p = bindings::folio_address(folio).cast::<u8>();
        (!p.is_null() && bindings::bch_rs_virt_addr_valid(p.cast())).then_some(p)
    }
}

/// Reads one locked folio and ends the read (`read_folio` without the
/// return value).
///
/// # Safety
///
/// `folio` is locked, not uptodate, of a file of ours; ours to end.
unsafe fn read_one(folio: *mut bindings::folio) {
    // SAFETY: the caller's contract.
    unsafe {
        let r = fill_folio(folio);
        bindings::folio_end_read(folio, r.is_ok());
    }
}

/// Reads `folios` (consecutive, locked, not uptodate, of one file of
/// ours) straight into their memory with one `read_data_segs` call, then
/// ends their reads; on an error (or without memory) falls back to
/// [`read_one`] for each.
///
/// # Safety
///
/// As [`read_one`], for each folio; readahead hands out consecutive
/// folios of one mapping.
unsafe fn read_batch(folios: &[*mut bindings::folio]) {
    let Some(&first) = folios.first() else { return };
    // SAFETY: the caller's contract (see `fill_folio`).
    let (info, bi, inum, pos) = unsafe {
        let mapping = (*first).__bindgen_anon_1.__bindgen_anon_1.mapping;
        let inode = (*mapping).host;
        (FsInfo::of((*inode).i_sb), BchInode::from_vfs(inode), (*inode).i_ino as u64, bindings::folio_pos(first) as u64)
    };
    let mut segs: Vec<&mut [u8]> = Vec::new();
    let mut bytes = 0u64;
    let mut r = segs.reserve(folios.len()).map_err(|_| Errno::ENOMEM);
    for &folio in folios {
        if r.is_err() {
            break;
        }
        // SAFETY: the folio is locked and not uptodate: nobody else reads
        // or writes its memory until its read is ended below, after the
        // last use of `segs`; its linear-map address covers all of it.
        let seg = unsafe {
            folio_linear(folio).map(|p| {
                let size = bindings::folio_size(folio);
                bytes += size as u64;
                core::slice::from_raw_parts_mut(p, size)
            })
        };
        r = match seg {
            Some(seg) => segs.push(seg).map_err(|_| Errno::ENOMEM),
            None => Err(Errno::EIO),
        };
    }
    let r = r.and_then(|()| {
        let rd = info.read();
        if info.is_rw() {
            // As `fill_folio`: the size on disk read fresh; one extent
            // cache for the batch.
            fs_common::inode_get(&*rd, &info.sv, inum)
                .and_then(|attrs| fs_common::read_data_segs(&*rd, &info.sv, &attrs, pos, &mut segs, &mut ExtentCache::default()))
        } else {
            let attrs = bi.attrs(&rd);
            bi.with_cache(|cache| {
                let r = fs_common::read_data_segs(&*rd, &info.sv, &attrs, pos, &mut segs, cache);
                // As `fill_folio`: the end reached, the decoded extent goes.
                if pos + bytes >= attrs.size {
                    *cache = ExtentCache::default();
                }
                r
            })
        }
    });
    drop(segs);
    for &folio in folios {
        // SAFETY: the caller's contract: ours to end, once.
        unsafe {
            match r {
                Ok(()) => bindings::folio_end_read(folio, true),
                Err(_) => read_one(folio),
            }
        }
    }
}
