// SPDX-License-Identifier: GPL-2.0
//! `bcachefs format --source=DIR`, the binary, on a generated tree: run
//! twice with the same options the two volumes list the same files (every
//! path's type, mode, owner, size, link count, mtime, contents, symlink
//! target and device number), and so does a run with other options (1 KiB
//! blocks, crc64 checksums and string hash, lz4 compression); each equals
//! the source tree, and on each `gc::check_fs` finds the derived state
//! exact.  (kselftest 40 checks the same with C's fsck in the VM.)

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::fs_common::{inode_get, read_data, readdir, readlink, root_subvol, ExtentCache, InodeAttrs, Subvol};

#[allow(dead_code)]
#[path = "../../tests/common/mod.rs"]
mod common;

use common::MemDev as Img;

/// FNV-1a, enough to tell file contents apart here.
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3))
}

/// What a listing says of one path.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    nlink: u32,
    mtime_ns: i64,
    /// Hash of a regular file's contents, of a symlink's target, or the
    /// device number of a device node.
    what: u64,
}

type Listing = BTreeMap<String, Entry>;

/// `MKDEV()` of the kernel (major << 20 | minor) from a glibc `st_rdev`.
fn kernel_rdev(rdev: u64) -> u64 {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    ((major & 0xfff) << 20) | (minor & 0xf_ffff)
}

/// The listing of host directory `root` (directories' sizes and link
/// counts left out: they depend on the filesystem).
fn host_listing(root: &Path) -> Listing {
    let mut out = Listing::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let path = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let m = fs::symlink_metadata(e.path()).unwrap();
            let ft = m.file_type();
            let what = if ft.is_file() {
                fnv1a(&fs::read(e.path()).unwrap())
            } else if ft.is_symlink() {
                fnv1a(fs::read_link(e.path()).unwrap().as_os_str().as_encoded_bytes())
            } else if ft.is_block_device() || ft.is_char_device() {
                kernel_rdev(m.rdev())
            } else {
                0
            };
            let dir = ft.is_dir();
            out.insert(
                path.clone(),
                Entry {
                    mode: m.mode(),
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if dir { 0 } else { m.len() },
                    nlink: if dir { 0 } else { m.nlink() as u32 },
                    mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    what,
                },
            );
            if dir {
                stack.push((e.path(), path));
            }
        }
    }
    out
}

/// The listing of a volume, read through the core's read side; `lost+found`
/// (which initialize makes) left out.
fn volume_listing(fs: &Fs<Img>) -> Listing {
    let sv: Subvol = root_subvol(fs).unwrap();
    let mut out = Listing::new();
    let root = inode_get(fs, &sv, sv.root_inum).unwrap();
    let mut stack: Vec<(InodeAttrs, String)> = vec![(root, String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut ents: Vec<(String, u64)> = Vec::new();
        readdir(fs, &sv, &dir, 0, &mut |e| {
            ents.push((String::from_utf8(e.name.to_vec()).unwrap(), e.inum));
            true
        })
        .unwrap();
        for (name, inum) in ents {
            if rel.is_empty() && name == "lost+found" {
                continue;
            }
            let path = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let a = inode_get(fs, &sv, inum).unwrap();
            let fmt = u32::from(a.mode) & 0o170000;
            let what = match fmt {
                0o100000 => {
                    let mut buf = vec![0u8; (a.size as usize).div_ceil(4096) * 4096];
                    read_data(fs, &sv, &a, 0, &mut buf, &mut ExtentCache::default()).unwrap();
                    buf.truncate(a.size as usize);
                    fnv1a(&buf)
                }
                0o120000 => {
                    let mut t = bcachefs_rs::platform::Vec::new();
                    readlink(fs, &sv, &a, &mut t).unwrap();
                    fnv1a(&t)
                }
                0o020000 | 0o060000 => u64::from(a.rdev),
                _ => 0,
            };
            let dir = fmt == 0o040000;
            out.insert(
                path.clone(),
                Entry {
                    mode: u32::from(a.mode),
                    uid: a.uid,
                    gid: a.gid,
                    size: if dir { 0 } else { a.size },
                    nlink: if dir { 0 } else { a.nlink },
                    mtime_ns: a.mtime_ns,
                    what,
                },
            );
            if dir {
                stack.push((a, path));
            }
        }
    }
    out
}

/// A tree with what `format --source` must carry: a few hundred files of
/// sizes from 0 to 1 MiB (compressible and not), holes, symlinks, hard
/// links, a fifo, odd modes and times.
fn make_tree(root: &Path) {
    let _ = fs::remove_dir_all(root);
    for d in 0..6 {
        fs::create_dir_all(root.join(format!("files/d{d}"))).unwrap();
    }
    let sizes = [0usize, 1, 100, 511, 4096, 4097, 12000, 65536, 300_000];
    for i in 0..600usize {
        let size = sizes[i % sizes.len()];
        let line = format!("file {i} of the source tree, line after line\n");
        let data: Vec<u8> = line.bytes().cycle().take(size).collect();
        fs::write(root.join(format!("files/d{}/f{i:04}", i % 6)), data).unwrap();
    }
    // Incompressible 1 MiB (xorshift), and a sparse file.
    let mut x = 0x1234_5678_9abc_def0u64;
    let big: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(root.join("big"), big).unwrap();
    let f = fs::File::create(root.join("sparse")).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"middle", 3 << 20).unwrap();
    f.set_len(5 << 20).unwrap();
    std::os::unix::fs::symlink("files/d0/f0000", root.join("link")).unwrap();
    std::os::unix::fs::symlink("x".repeat(2000), root.join("longlink")).unwrap();
    fs::hard_link(root.join("files/d1/f0001"), root.join("hard")).unwrap();
    let fifo = std::ffi::CString::new(root.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    fs::set_permissions(root.join("files/d2/f0002"), fs::Permissions::from_mode(0o4751)).unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_234_567_890, 123_456_789);
    fs::File::options().write(true).open(root.join("files/d3/f0003")).unwrap().set_modified(t).unwrap();
}

fn format_source(src: &Path, img: &Path, opts: &[&str]) -> Vec<u8> {
    let _ = fs::remove_file(img);
    fs::File::create(img).unwrap().set_len(256 << 20).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bcachefs"))
        .arg("format")
        .args(opts)
        .arg("--source")
        .arg(src)
        .arg(img)
        .output()
        .unwrap();
    assert!(o.status.success(), "format {opts:?}: {}", String::from_utf8_lossy(&o.stderr));
    let b = fs::read(img).unwrap();
    let _ = fs::remove_file(img);
    b
}

fn open_checked(img: Vec<u8>, what: &str) -> Fs<Img> {
    let fs = Fs::open(Img(img), &OpenOpts::default()).unwrap();
    let m = bcachefs_rs::gc::check_fs(&fs).unwrap();
    assert!(m.is_empty(), "{what}: {}", m.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("\n"));
    fs
}

fn first_difference(a: &Listing, b: &Listing) -> String {
    for (k, v) in a {
        match b.get(k) {
            None => return format!("{k} missing"),
            Some(w) if w != v => return format!("{k}: {v:?} vs {w:?}"),
            _ => {}
        }
    }
    b.keys().find(|k| !a.contains_key(*k)).map_or_else(String::new, |k| format!("{k} extra"))
}

#[test]
fn format_source_twice_and_with_other_options_lists_the_source() {
    let tmp: PathBuf = std::env::temp_dir().join(format!("bch-format-source-{}", std::process::id()));
    let src = tmp.join("src");
    make_tree(&src);
    let want = host_listing(&src);
    assert!(want.len() > 600);

    let one = open_checked(format_source(&src, &tmp.join("one.img"), &[]), "first format");
    let two = open_checked(format_source(&src, &tmp.join("two.img"), &[]), "second format");
    let other = open_checked(
        format_source(
            &src,
            &tmp.join("other.img"),
            &[
                "--block_size=1024",
                "--metadata_checksum=crc64",
                "--data_checksum=crc64",
                "--str_hash=crc64",
                "--compression=lz4",
            ],
        ),
        "format with 1k blocks, crc64, lz4",
    );
    let _ = fs::remove_dir_all(&tmp);
    let (l1, l2, l3) = (volume_listing(&one), volume_listing(&two), volume_listing(&other));
    assert!(l1 == want, "first format vs source: {}", first_difference(&want, &l1));
    assert!(l2 == l1, "second format vs first: {}", first_difference(&l1, &l2));
    assert!(l3 == l1, "1k/crc64/lz4 format vs first: {}", first_difference(&l1, &l3));
    // The options took: 1 KiB blocks.
    let sb = bcachefs_rs::format::sb::Sb::parse(other.sb_bytes()).unwrap();
    assert_eq!(sb.block_size(), 2, "block size in 512-byte sectors");
}
