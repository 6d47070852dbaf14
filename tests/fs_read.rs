// SPDX-License-Identifier: GPL-2.0
//! End to end on the host: the images C bcachefs wrote (tests/fixtures, see
//! its README) opened with `Fs` and read through the VFS-independent
//! operations (`fs_common`) exactly as the kernel module reads them.  The
//! tree the fixture script created is known byte for byte, so every name,
//! type, size, link count and every byte of every file is checked.  The
//! unclean fixture's keys are only in the journal: it reads correctly only
//! through the journal overlay.

use std::collections::BTreeMap;

use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::fs_common::{self, BtreeRead, ExtentCache, InodeAttrs, Subvol};

mod common;
use common::{unpack_image, MemDev};

const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;
const S_IFREG: u16 = 0o100000;
const S_IFLNK: u16 = 0o120000;

/// The fixture script's file contents: a repeated text line, cut at `n`.
fn fixture_data(n: usize) -> Vec<u8> {
    b"bcachefs fixture line\n".iter().copied().cycle().take(n).collect()
}

/// What a path holds.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir(BTreeMap<Vec<u8>, (u64, u8)>),
    File(Vec<u8>),
    Link(Vec<u8>),
}

struct Reader {
    fs: Fs<MemDev>,
    sv: Subvol,
}

impl Reader {
    fn open(name: &str, opts: &OpenOpts) -> Reader {
        let fs = Fs::open(MemDev(unpack_image(&format!("{name}.bchimg"))), opts).unwrap_or_else(|e| panic!("{name}: open: {e}"));
        let sv = fs_common::root_subvol(&fs).unwrap();
        Reader { fs, sv }
    }

    fn inode(&self, inum: u64) -> InodeAttrs {
        fs_common::inode_get(&self.fs, &self.sv, inum).unwrap()
    }

    fn walk(&self, path: &str) -> InodeAttrs {
        let mut ino = self.inode(self.sv.root_inum);
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let (inum, _) = fs_common::lookup(&self.fs, &self.sv, &ino, part.as_bytes())
                .unwrap()
                .unwrap_or_else(|| panic!("{path}: no {part}"));
            ino = self.inode(inum);
        }
        ino
    }

    fn read(&self, ino: &InodeAttrs) -> Node {
        match ino.mode & S_IFMT {
            S_IFDIR => {
                let mut entries = BTreeMap::new();
                fs_common::readdir(&self.fs, &self.sv, ino, 0, &mut |d| {
                    assert!(entries.insert(d.name.to_vec(), (d.inum, d.d_type)).is_none(), "entry listed twice");
                    true
                })
                .unwrap();
                Node::Dir(entries)
            }
            S_IFLNK => {
                let mut out = bcachefs_rs::platform::Vec::new();
                fs_common::readlink(&self.fs, &self.sv, ino, &mut out).unwrap();
                Node::Link(out.to_vec())
            }
            S_IFREG => {
                // Odd-sized chunks so reads start and end inside extents.
                let size = ino.size as usize;
                let mut data = vec![0u8; size.next_multiple_of(512)];
                let mut cache = ExtentCache::default();
                let mut off = 0;
                while off < data.len() {
                    let n = (7 * 512).min(data.len() - off);
                    fs_common::read_data(&self.fs, &self.sv, ino, off as u64, &mut data[off..off + n], &mut cache)
                        .unwrap();
                    off += n;
                }
                data.truncate(size);
                Node::File(data)
            }
            m => panic!("inode {}: unexpected mode {m:o}", ino.inum),
        }
    }

    fn file(&self, path: &str) -> Vec<u8> {
        match self.read(&self.walk(path)) {
            Node::File(d) => d,
            n => panic!("{path}: not a file: {n:?}"),
        }
    }

    fn names(&self, path: &str) -> Vec<String> {
        match self.read(&self.walk(path)) {
            Node::Dir(d) => d.keys().map(|k| String::from_utf8(k.clone()).unwrap()).collect(),
            n => panic!("{path}: not a dir: {n:?}"),
        }
    }
}

fn check_tree(name: &str, opts: &OpenOpts) {
    let r = Reader::open(name, opts);
    assert_eq!(r.sv.root_inum, 4096);
    assert_eq!(r.names("/"), ["dir", "empty", "link", "lost+found", "one", "sparse"]);
    assert_eq!(r.names("/dir"), ["f4095", "f4096", "hardlink", "sub"]);
    assert_eq!(r.names("/dir/sub"), ["deep", "f1m"]);
    let mut small: Vec<String> = (0..40).filter(|&i| i != 3).map(|i| format!("small{i}")).collect();
    small.sort();
    assert_eq!(r.names("/dir/sub/deep"), small);

    assert_eq!(r.file("/empty"), b"");
    assert_eq!(r.file("/one"), b"x");
    assert_eq!(r.file("/dir/hardlink"), b"x");
    assert_eq!(r.walk("/one").inum, r.walk("/dir/hardlink").inum);
    assert_eq!(r.walk("/one").nlink, 2);
    assert_eq!(r.file("/dir/f4095"), fixture_data(4095));
    assert_eq!(r.file("/dir/f4096"), fixture_data(4096));
    assert_eq!(r.file("/dir/sub/f1m"), fixture_data(1 << 20));
    for i in (0..40).filter(|&i| i != 3) {
        assert_eq!(r.file(&format!("/dir/sub/deep/small{i}")), fixture_data(i * 7), "small{i}");
    }
    let mut sparse = vec![0u8; 409600];
    sparse.extend_from_slice(b"end of sparse file\n");
    assert_eq!(r.file("/sparse"), sparse);
    assert_eq!(r.read(&r.walk("/link")), Node::Link(b"dir/f4096".to_vec()));

    let root = r.walk("/");
    assert_eq!(root.mode & S_IFMT, S_IFDIR);
    let f = r.walk("/dir/sub/f1m");
    assert_eq!((f.mode & S_IFMT, f.size, f.nlink), (S_IFREG, 1 << 20, 1));
    assert!(f.sectors >= 2048, "f1m allocates {} sectors", f.sectors);
    assert!(f.mtime_ns > 1_600_000_000_000_000_000, "mtime {}", f.mtime_ns);
    assert_eq!(r.walk("/link").mode & S_IFMT, S_IFLNK);
    assert!(fs_common::lookup(&r.fs, &r.sv, &r.walk("/dir/sub/deep"), b"small3").unwrap().is_none());
    assert!(fs_common::lookup(&r.fs, &r.sv, &root, &[b'a'; 255]).unwrap().is_none());

    let facts = *r.fs.facts();
    let st = fs_common::statfs(&r.fs, &facts).unwrap();
    assert!(st.blocks > 0 && st.bfree <= st.blocks && st.bavail <= st.bfree, "{st:?}");
    assert!(st.files >= 50, "{st:?}");
}

#[test]
fn clean_fixture_reads_byte_identical() {
    check_tree("c-clean-siphash", &OpenOpts::default());
}

#[test]
fn unclean_fixture_reads_through_the_journal() {
    check_tree("c-unclean-crc64-lz4", &OpenOpts::default());
}

#[test]
fn unclean_fixture_without_recovery_misses_the_journal_keys() {
    let opts = OpenOpts { norecovery: true, ..OpenOpts::default() };
    // The mount itself works: only the overlay is missing.
    Fs::open(MemDev(unpack_image("c-unclean-crc64-lz4.bchimg")), &opts).unwrap();
    let missing = std::panic::catch_unwind(|| check_tree("c-unclean-crc64-lz4", &opts));
    assert!(missing.is_err(), "norecovery should not see keys that are only in the journal");
}

#[test]
fn a_tiny_node_cache_still_reads_everything() {
    let opts = OpenOpts { btree_cache_max_bytes: 1, ..OpenOpts::default() };
    check_tree("c-clean-siphash", &opts);
}

/// A fresh volume (our format, one C mount and unmount, nothing written):
/// btrees that never got a key, extents among them, have no root on disk.
/// As in C, a btree without a root is empty, so the volume opens and its
/// root directory holds lost+found alone.
#[test]
fn fresh_volume_opens_with_empty_btrees() {
    use bcachefs_rs::format::bkey::BtreeId;
    let r = Reader::open("c-fresh", &OpenOpts::default());
    assert_eq!(r.fs.root_level(BtreeId::Extents), None, "the fixture should have no extents root");
    assert!(r.fs.root_level(BtreeId::Inodes).is_some());
    assert_eq!(r.names("/"), ["lost+found"]);
    assert_eq!(r.names("/lost+found"), Vec::<String>::new());
    let mut it = r.fs.iter(BtreeId::Extents, bcachefs_rs::format::bpos::POS_MIN, true);
    assert!(it.peek().unwrap().is_none(), "an empty btree has no keys");
    let facts = *r.fs.facts();
    let st = fs_common::statfs(&r.fs, &facts).unwrap();
    assert!(st.blocks > 0 && st.bfree > st.blocks / 2, "{st:?}");
}
