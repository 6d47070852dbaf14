// SPDX-License-Identifier: GPL-2.0
//! `format --source=DIR`: copies a host directory tree into the new
//! filesystem through the `fs_common` operations (bcachefs-tools'
//! `copy_fs()` in `posix_to_bcachefs.c`): directories, regular files with
//! their holes (all-zero blocks are not written), symlinks, hard links,
//! device nodes, fifos and sockets, with modes, owners, times and
//! extended attributes (`user.`, `trusted.`, `security.`; others, such as
//! POSIX ACLs in `system.`, are skipped as bcachefs-tools skips what it
//! cannot set).

use std::collections::HashMap;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;

use bcachefs_rs::errcode::Errno;
use bcachefs_rs::fs_common::fs_ops::{create, inode_opt_set, link, setattr, symlink, NewInode, SetAttr};
use bcachefs_rs::fs_common::io_write::write_data;
use bcachefs_rs::fs_common::xattr::xattr_set;
use bcachefs_rs::fs_common::Subvol;
use bcachefs_rs::fs_initialize::{ROOT_INO, ROOT_SUBVOL};
use bcachefs_rs::fs_rw::{writepoint_hashed, BchFs, FsDataAlloc};
use bcachefs_rs::platform::BlockDev;

/// Bytes read from a host file at a time.
const CHUNK: usize = 1 << 20;

/// The kernel's internal `dev_t` (`MKDEV()`: major << 20 | minor) of a
/// glibc `st_rdev`.
pub fn host_rdev_to_kernel(rdev: u64) -> u32 {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (((major & 0xfff) << 20) | (minor & 0xf_ffff)) as u32
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

fn attrs(m: &fs::Metadata) -> SetAttr {
    SetAttr {
        mode: Some((m.mode() & 0o7777) as u16),
        uid: Some(m.uid()),
        gid: Some(m.gid()),
        size: None,
        atime_ns: Some(ns(m.atime(), m.atime_nsec())),
        mtime_ns: Some(ns(m.mtime(), m.mtime_nsec())),
        ctime_ns: Some(ns(m.ctime(), m.ctime_nsec())),
        otime_ns: None,
    }
}

fn err(p: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("{}: {what}: {e}", p.display())
}

/// An extended attribute: full name and value.
type Xattr = (Vec<u8>, Vec<u8>);

/// The xattr namespace of bcachefs' inode options (`bcachefs.compression`
/// and the like): a source tree on bcachefs lists the options set on each
/// inode itself (not the inherited ones, which are `bcachefs_effective.`).
const OPT_PREFIX: &[u8] = b"bcachefs.";

/// The extended attributes of host path `p` (not following symlinks):
/// (name, value) pairs of the `user.`, `trusted.` and `security.`
/// namespaces and the `bcachefs.` inode options.
fn host_xattrs(p: &Path) -> Result<Vec<Xattr>, String> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|e| err(p, "path", e))?;
    // SAFETY: `c` is a NUL-terminated path; the buffers are valid for the
    // lengths passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0u8; n as usize];
    // SAFETY: as above.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(err(p, "listxattr", std::io::Error::last_os_error()));
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !(name.starts_with(b"user.")
            || name.starts_with(b"trusted.")
            || name.starts_with(b"security.")
            || name.starts_with(OPT_PREFIX))
        {
            continue;
        }
        let cn = std::ffi::CString::new(name).map_err(|e| err(p, "xattr name", e))?;
        // SAFETY: as above.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            continue;
        }
        let mut v = vec![0u8; len as usize];
        // SAFETY: as above.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if len < 0 {
            return Err(err(p, "getxattr", std::io::Error::last_os_error()));
        }
        v.truncate(len as usize);
        out.push((name.to_vec(), v));
    }
    Ok(out)
}

/// The write point of this process's writes: C hashes the writing task
/// (`writepoint_hashed((unsigned long) current)`), so one `cp` fills one
/// write point.
fn writer() -> bcachefs_rs::alloc::foreground::WritePointSpec {
    writepoint_hashed(u64::from(std::process::id()))
}

/// Whether `b` holds only zero bytes (8 at a time, stopping at the first
/// that is not).
fn is_zero(b: &[u8]) -> bool {
    let words = b.chunks_exact(8);
    let tail = words.remainder();
    tail.iter().all(|&x| x == 0) && { words }.all(|w| u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) == 0)
}

/// Copies the data of host file `p` into `inum`, leaving all-zero blocks
/// as holes, and sets the size.  `buf` is the caller's [`CHUNK`]-byte
/// buffer, reused from file to file (a fresh zeroed megabyte per file was
/// the tool's largest cost on a tree of small files).
fn copy_data<D: BlockDev + Send + Sync>(
    fs: &BchFs<D>,
    sv: &Subvol,
    inum: u64,
    p: &Path,
    size: u64,
    buf: &mut [u8],
) -> Result<(), String> {
    let mut t = fs.trans();
    let mut a = FsDataAlloc::new(fs, writer());
    let block = fs.open.facts.block_bytes as usize;
    let mut f = fs::File::open(p).map_err(|e| err(p, "open", e))?;
    let mut off = 0u64;
    let mut written_end = 0u64;
    loop {
        let mut n = 0;
        while n < CHUNK {
            let r = f.read(&mut buf[n..]).map_err(|e| err(p, "read", e))?;
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            break;
        }
        // Runs of blocks holding anything but zeroes.
        let mut i = 0;
        while i < n {
            let end = (i + block).min(n);
            if is_zero(&buf[i..end]) {
                i = end;
                continue;
            }
            let start = i;
            while i < n && !is_zero(&buf[i..(i + block).min(n)]) {
                i = (i + block).min(n);
            }
            write_data(&mut t, &mut a, sv, inum, off + start as u64, &buf[start..i]).map_err(|e| err(p, "writing data", e))?;
            written_end = off + i as u64;
        }
        off += n as u64;
        if n < CHUNK {
            break;
        }
    }
    if size > written_end {
        setattr(&mut t, &mut a, sv, inum, &SetAttr { size: Some(size), ..SetAttr::default() })
            .map_err(|e| err(p, "setting the size", e))?;
    }
    Ok(())
}

/// Copies the tree under host directory `src` into the root directory of
/// `fs` (which must be initialized): every entry, then the root's own
/// mode, owner and times.
///
/// Errors: a message naming the host path and what failed.
pub fn copy_fs<D: BlockDev + Send + Sync>(fs: &BchFs<D>, src: &Path) -> Result<(), String> {
    let sv = Subvol { id: ROOT_SUBVOL, snapshot: u32::MAX, root_inum: ROOT_INO };
    let mut buf = vec![0u8; CHUNK];
    let mut hardlinks: HashMap<(u64, u64), u64> = HashMap::new();
    let mut dirs: Vec<(std::path::PathBuf, u64)> = vec![(src.to_path_buf(), ROOT_INO)];
    // Directory attributes are set last, after their entries changed them.
    let mut dir_attrs: Vec<(u64, SetAttr)> = Vec::new();
    while let Some((dir, dinum)) = dirs.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| err(&dir, "read_dir", e))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(&dir, "read_dir", e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let name = e.file_name();
            let name = name.as_encoded_bytes();
            // The new filesystem has its own lost+found (initialize made
            // it); a source that is a filesystem root has one too.
            if dinum == ROOT_INO && name == b"lost+found" {
                continue;
            }
            let m = fs::symlink_metadata(&p).map_err(|e| err(&p, "stat", e))?;
            let ft = m.file_type();
            let mut t = fs.trans();
            let mut a = FsDataAlloc::new(fs, writer());
            if !ft.is_dir() && m.nlink() > 1 {
                if let Some(&inum) = hardlinks.get(&(m.dev(), m.ino())) {
                    link(&mut t, &sv, dinum, inum, name).map_err(|e| err(&p, "link", e))?;
                    continue;
                }
            }
            let mode = (m.mode() & 0o177777) as u16;
            let inum = if ft.is_symlink() {
                let target = fs::read_link(&p).map_err(|e| err(&p, "readlink", e))?;
                symlink(&mut t, &mut a, &sv, dinum, name, target.as_os_str().as_encoded_bytes(), m.uid(), m.gid())
                    .map_err(|e| err(&p, "symlink", e))?
                    .inum
            } else {
                let rdev = if ft.is_block_device() || ft.is_char_device() { host_rdev_to_kernel(m.rdev()) } else { 0 };
                let u = create(&mut t, &sv, dinum, name, &NewInode { mode, uid: m.uid(), gid: m.gid(), rdev })
                    .map_err(|e| err(&p, "create", e))?;
                u.inum
            };
            let (opts, xattrs): (Vec<Xattr>, Vec<Xattr>) =
                host_xattrs(&p)?.into_iter().partition(|(n, _)| n.starts_with(OPT_PREFIX));
            // Options first: the data is written (compressed, checksummed)
            // as they say, and a directory's are inherited by what is
            // created in it.
            for (xn, xv) in opts {
                let name = String::from_utf8_lossy(&xn[OPT_PREFIX.len()..]).into_owned();
                let val = String::from_utf8_lossy(&xv).into_owned();
                inode_opt_set(&mut t, &sv, inum, &name, Some(val.trim_end_matches('\0')))
                    .map_err(|e| err(&p, &format!("setting option {name}={val}"), e))?;
            }
            if ft.is_file() {
                copy_data(fs, &sv, inum, &p, m.len(), &mut buf)?;
            }
            for (xn, xv) in xattrs {
                xattr_set(&mut t, &sv, inum, &xn, Some(&xv), 0).map_err(|e| err(&p, "setting an xattr", e))?;
            }
            if !ft.is_dir() && m.nlink() > 1 {
                hardlinks.insert((m.dev(), m.ino()), inum);
            }
            if ft.is_dir() {
                dirs.push((p.clone(), inum));
                dir_attrs.push((inum, attrs(&m)));
            } else if !ft.is_symlink() {
                setattr(&mut t, &mut a, &sv, inum, &attrs(&m)).map_err(|e| err(&p, "setattr", e))?;
            } else {
                let mut at = attrs(&m);
                at.mode = None;
                setattr(&mut t, &mut a, &sv, inum, &at).map_err(|e| err(&p, "setattr", e))?;
            }
        }
    }
    let m = fs::metadata(src).map_err(|e| err(src, "stat", e))?;
    dir_attrs.push((ROOT_INO, attrs(&m)));
    let mut t = fs.trans();
    let mut a = FsDataAlloc::new(fs, writer());
    for (inum, at) in dir_attrs.iter().rev() {
        setattr(&mut t, &mut a, &sv, *inum, at).map_err(|e: Errno| format!("inode {inum}: setattr: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcachefs_rs::bcachefs::{Fs, OpenOpts};
    use bcachefs_rs::btree::testing::MemDev;
    use bcachefs_rs::fs_common::{inode_get, lookup, read_data, readlink, root_subvol, ExtentCache};
    use bcachefs_rs::fs_rw::BchFsOpen;
    use bcachefs_rs::format::sb_write::{format, FormatOpts};
    use bcachefs_rs::platform::WriteFlags;
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;

    struct Dev(Arc<MemDev>);
    impl BlockDev for Dev {
        fn name(&self) -> &str {
            "mem"
        }
        fn nr_sectors(&self) -> u64 {
            self.0.nr_sectors()
        }
        fn read_sectors(&self, s: u64, b: &mut [u8]) -> Result<(), Errno> {
            self.0.read_sectors(s, b)
        }
        fn write_sectors(&self, s: u64, b: &[u8], f: WriteFlags) -> Result<(), Errno> {
            self.0.write_sectors(s, b, f)
        }
    }
    struct Img(Vec<u8>);
    impl BlockDev for Img {
        fn name(&self) -> &str {
            "img"
        }
        fn nr_sectors(&self) -> u64 {
            (self.0.len() / 512) as u64
        }
        fn read_sectors(&self, s: u64, b: &mut [u8]) -> Result<(), Errno> {
            let s = s as usize * 512;
            b.copy_from_slice(self.0.get(s..s + b.len()).ok_or(Errno::EIO)?);
            Ok(())
        }
    }

    /// `format` (with options `opts`) + initialize + `copy_fs(dir)` +
    /// shutdown on a memory device of `bytes`; returns the image and the
    /// number of splits (`BtreeStats::splits`).
    fn format_source(dir: &Path, bytes: usize, opts: &[(&str, u64)]) -> (Vec<u8>, u64) {
        let mut o = FormatOpts::new([1; 16], [2; 16], [3; 16], 1);
        for (name, v) in opts {
            o.set(name, *v).unwrap();
        }
        let f = format(bytes as u64, &o).unwrap();
        let mem = Arc::new(MemDev::new(bytes));
        for (s, d) in f.writes().unwrap().iter() {
            mem.write_sectors(*s, d, WriteFlags::default()).unwrap();
        }
        let open = BchFsOpen::open(Dev(mem.clone())).unwrap();
        let splits = open
            .mount(1_000_000_000, 7, |fs| {
                bcachefs_rs::fs_initialize::fs_initialize(fs)?;
                if let Err(e) = copy_fs(fs, dir) {
                    panic!("{e}");
                }
                let splits = fs.btree.stats.splits.load(std::sync::atomic::Ordering::Relaxed);
                fs.shutdown()?;
                Ok(splits)
            })
            .unwrap();
        drop(open);
        let img = mem.0.lock().unwrap().clone();
        (img, splits)
    }

    fn check_clean(fs: &Fs<Img>) {
        let m = bcachefs_rs::gc::check_fs(fs).unwrap();
        assert!(m.is_empty(), "{}", m.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("\n"));
    }

    /// Enough files (on small nodes) for the extents, inodes and dirents
    /// leaves to split several times and the roots to grow: every node
    /// must be in the alloc btree, backpointers and accounting, inside the
    /// member's btree bitmap, and every accounting replicas entry in the
    /// superblock.
    #[test]
    fn many_files_split_leaves_and_check_clean() {
        let dir = std::env::temp_dir().join(format!("bch-source-many-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for d in 0..4 {
            fs::create_dir_all(dir.join(format!("d{d}"))).unwrap();
        }
        for i in 0..1200u32 {
            fs::write(dir.join(format!("d{}/file-{i:05}", i % 4)), format!("contents of {i}\n")).unwrap();
        }
        // Data in extents (the small files are inline).
        fs::write(dir.join("d0/big"), vec![7u8; 64 << 10]).unwrap();
        let (img, splits) = format_source(&dir, 64 << 20, &[("btree_node_size", 8 << 10)]);
        let _ = fs::remove_dir_all(&dir);
        assert!(splits >= 8, "only {splits} splits");
        let fs = Fs::open(Img(img), &OpenOpts::default()).unwrap();
        check_clean(&fs);
        let sb = bcachefs_rs::format::sb::Sb::parse(fs.sb_bytes()).unwrap();
        let reps = bcachefs_rs::sb_marks::sb_replicas(&sb).unwrap();
        let types: Vec<u8> = reps.iter().map(|e| e.data_type).collect();
        // C's order (eytzinger): btree, journal, user.
        assert_eq!(types, [3, 2, 4]);
    }

    #[test]
    fn source_tree_reads_back() {
        let dir = std::env::temp_dir().join(format!("bch-source-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub/deep")).unwrap();
        fs::write(dir.join("small"), b"hello\n").unwrap();
        let mut big = vec![0u8; 300_000];
        big[..5000].fill(b'a');
        big[200_000..200_100].fill(b'z');
        fs::write(dir.join("sub/holes"), &big).unwrap();
        let mut sparse = fs::File::create(dir.join("tailhole")).unwrap();
        std::io::Write::write_all(&mut sparse, b"x").unwrap();
        sparse.set_len(1 << 20).unwrap();
        std::os::unix::fs::symlink("sub/holes", dir.join("link")).unwrap();
        fs::hard_link(dir.join("small"), dir.join("sub/deep/hard")).unwrap();
        fs::set_permissions(dir.join("small"), fs::Permissions::from_mode(0o640)).unwrap();
        let xattr_ok = {
            let c = std::ffi::CString::new(dir.join("sub/holes").to_str().unwrap()).unwrap();
            // SAFETY: valid NUL-terminated strings and buffer.
            unsafe { libc::setxattr(c.as_ptr(), c"user.color".as_ptr(), b"blue".as_ptr().cast(), 4, 0) == 0 }
        };

        let (img, _) = format_source(&dir, 128 << 20, &[]);
        let fs = Fs::open(Img(img), &OpenOpts::default()).unwrap();
        check_clean(&fs);
        let sv = root_subvol(&fs).unwrap();
        let get = |path: &str| {
            let mut a = inode_get(&fs, &sv, ROOT_INO).unwrap();
            for c in path.split('/') {
                let (inum, _) = lookup(&fs, &sv, &a, c.as_bytes()).unwrap().unwrap_or_else(|| panic!("{path}: {c} missing"));
                a = inode_get(&fs, &sv, inum).unwrap();
            }
            a
        };
        let read = |a: &bcachefs_rs::fs_common::InodeAttrs| {
            let mut buf = vec![0u8; (a.size as usize).div_ceil(4096) * 4096];
            read_data(&fs, &sv, a, 0, &mut buf, &mut ExtentCache::default()).unwrap();
            buf.truncate(a.size as usize);
            buf
        };
        let small = get("small");
        assert_eq!(read(&small), b"hello\n");
        assert_eq!(small.mode & 0o7777, 0o640);
        assert_eq!(small.nlink, 2);
        assert_eq!(get("sub/deep/hard").inum, small.inum);
        let holes = get("sub/holes");
        assert_eq!(holes.size, big.len() as u64);
        assert!(read(&holes) == big, "data of sub/holes differs");
        assert!(holes.sectors < 300_000 / 512, "holes stay holes: {} sectors", holes.sectors);
        let tail = get("tailhole");
        assert_eq!(tail.size, 1 << 20);
        let t = read(&tail);
        assert_eq!(t[0], b'x');
        assert!(t[1..].iter().all(|&b| b == 0));
        let l = get("link");
        let mut target = bcachefs_rs::platform::Vec::new();
        readlink(&fs, &sv, &l, &mut target).unwrap();
        assert_eq!(&target[..], b"sub/holes");
        let hm = fs::metadata(dir.join("sub/holes")).unwrap();
        assert_eq!(holes.mtime_ns, ns(hm.mtime(), hm.mtime_nsec()));
        if xattr_ok {
            let mut it = fs.iter(bcachefs_rs::format::bkey::BtreeId::Xattrs, bcachefs_rs::format::bpos::Bpos::new(holes.inum, 0, 0), false);
            let k = it.next().unwrap().expect("an xattr key");
            assert_eq!(k.k.p.inode, holes.inum);
            let v = &k.v[..];
            assert!(v.windows(5).any(|w| w == b"color") && v.windows(4).any(|w| w == b"blue"), "{v:?}");
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
