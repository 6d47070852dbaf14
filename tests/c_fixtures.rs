// SPDX-License-Identifier: GPL-2.0
//! Reads the images C bcachefs wrote (tests/fixtures/, see its README)
//! through the superblock, journal and btree nodes, and checks what it
//! finds against the tree the fixture script created: every btree lists
//! without error, every dirent and xattr sits at the offset its name hashes
//! to, file sizes and extents agree, accounting counts the inodes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::format::bkey::{Bkey, BtreeId, KeyType, BTREE_ID_NR};
use bcachefs_rs::format::bpos::POS_MIN;
use bcachefs_rs::format::sb::{read_super, ValidateMode};
use bcachefs_rs::format::val::KeyDisplay;
use bcachefs_rs::format::str_hash::HashInfo;
use bcachefs_rs::format::val::dirent::{parse_dirent, parse_xattr};
use bcachefs_rs::format::val::extent::{ExtentEntries, ExtentEntry};
use bcachefs_rs::format::val::inode::{unpack, InodeUnpacked};
use bcachefs_rs::format::val::misc::AccountingPos;

mod common;
use common::{unpack_image, MemDev};

struct Checked {
    journal_keys: usize,
    compressed_extents: usize,
}

/// Every key of `btree`'s leaves (journal overlaid, whiteouts included),
/// as `bcachefs list` shows them.
fn btree_keys(fs: &Fs<MemDev>, btree: BtreeId) -> Vec<(Bkey, Vec<u8>)> {
    let mut it = fs.iter(btree, POS_MIN, true);
    let mut out = Vec::new();
    while let Some(k) = it.next().unwrap_or_else(|e| panic!("btree {}: {e}", btree.name())) {
        out.push((k.k, k.v.to_vec()));
    }
    out
}

fn check_fixture(name: &str) -> Checked {
    let dev = MemDev(unpack_image(name));
    let sbr = read_super(&dev).unwrap();
    sbr.sb().validate(ValidateMode::Read).unwrap();
    let fs = Fs::open(dev, &OpenOpts::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut s = String::new();
    fs.journal_debug_to_text(&mut s).unwrap();
    assert!(!s.contains("jsets:\t\t0\n"), "{name}: no jsets: {s}");

    // Every btree lists without error, one `list` line per key; count the
    // keys the journal has newer versions of.
    let c = fs.btree_ctx();
    let ctx = c.info.ctx();
    let mut journal_keys = 0;
    for b in (0..BTREE_ID_NR).filter_map(BtreeId::from_u32) {
        let keys = btree_keys(&fs, b);
        let mut out = String::new();
        for (k, v) in keys.iter() {
            writeln!(out, "{}", KeyDisplay { k, v, ctx: Some(&ctx) }).unwrap();
            let i = c.keys.lower_bound(b as u8, 0, k.p);
            journal_keys += usize::from(c.keys.get(i).is_some_and(|j| j.btree == b as u8 && j.level == 0 && j.pos == k.p));
        }
        assert_eq!(out.lines().filter(|l| l.starts_with("u64s ")).count(), keys.len(), "{name}: {}", b.name());
    }
    let keys = |b: BtreeId| btree_keys(&fs, b);

    let mut inodes: HashMap<u64, InodeUnpacked> = HashMap::new();
    for (k, v) in keys(BtreeId::Inodes).iter() {
        if k.key_type == KeyType::InodeV3 as u8 {
            inodes.insert(k.p.offset, unpack(k, v).unwrap());
        }
    }
    let hash = |dir: u64| {
        let i = &inodes[&dir];
        HashInfo::new(i.str_hash_type(), i.hash_seed).unwrap()
    };

    // Dirents: at their hash, and forming the expected tree.
    let mut children: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    let dirents = keys(BtreeId::Dirents);
    for (k, v) in dirents.iter() {
        let d = parse_dirent(v);
        assert_eq!(hash(k.p.inode).dirent_hash(d.name), k.p.offset, "{name}: dirent hash");
        let n = String::from_utf8(d.name.to_vec()).unwrap();
        children.entry(k.p.inode).or_default().push((n, d.inum));
    }
    let mut paths: BTreeMap<String, u64> = BTreeMap::new();
    let mut stack = vec![(String::new(), 4096u64)];
    while let Some((p, ino)) = stack.pop() {
        for (n, child) in children.get(&ino).cloned().unwrap_or_default() {
            let cp = if p.is_empty() { n } else { format!("{p}/{n}") };
            paths.insert(cp.clone(), child);
            stack.push((cp, child));
        }
    }
    let mut want: Vec<String> = ["empty", "one", "sparse", "link", "dir", "lost+found", "dir/f4095", "dir/f4096"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    want.extend(["dir/hardlink", "dir/sub", "dir/sub/f1m", "dir/sub/deep"].map(String::from));
    want.extend((0..40).filter(|&i| i != 3).map(|i| format!("dir/sub/deep/small{i}")));
    let mut got: Vec<String> = paths.keys().cloned().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{name}: tree");
    assert_eq!(paths["one"], paths["dir/hardlink"]);

    // Sizes, and the extents (or inline data) that hold them.
    let mut sizes: Vec<(&str, u64)> = vec![
        ("empty", 0),
        ("one", 1),
        ("dir/f4095", 4095),
        ("dir/f4096", 4096),
        ("dir/sub/f1m", 1 << 20),
        ("sparse", 409619),
        ("link", 9),
    ];
    let smalls: Vec<(String, u64)> = (0..40).filter(|&i| i != 3).map(|i| (format!("dir/sub/deep/small{i}"), i * 7)).collect();
    sizes.extend(smalls.iter().map(|(p, s)| (p.as_str(), *s)));
    let mut data_end: HashMap<u64, u64> = HashMap::new();
    let mut data_bytes: HashMap<u64, u64> = HashMap::new();
    let mut compressed = 0;
    for (k, v) in keys(BtreeId::Extents).iter() {
        let e = data_end.entry(k.p.inode).or_default();
        *e = (*e).max(k.p.offset * 512);
        *data_bytes.entry(k.p.inode).or_default() += u64::from(k.size) * 512;
        if k.key_type == KeyType::Extent as u8 {
            for en in ExtentEntries::new(v) {
                if let ExtentEntry::Crc(c) = en.unwrap() {
                    if c.compression_type == 3 {
                        compressed += 1;
                        assert!(c.compressed_size < c.uncompressed_size);
                    }
                }
            }
        }
    }
    for (p, size) in sizes {
        let ino = paths[p];
        let i = &inodes[&ino];
        assert_eq!(i.size, size, "{name}: size of {p}");
        let end = data_end.get(&ino).copied().unwrap_or(0);
        assert!(end >= size && end < size + 4096, "{name}: {p}: data ends at {end}, size {size}");
        if p != "sparse" {
            assert_eq!(data_bytes.get(&ino).copied().unwrap_or(0), end, "{name}: {p}: extents cover the file");
        }
    }

    // Xattrs: at their hash, on the right inodes.
    let mut xattrs = Vec::new();
    for (k, v) in keys(BtreeId::Xattrs).iter() {
        let x = parse_xattr(v).unwrap();
        assert_eq!(hash(k.p.inode).xattr_hash(x.x_type, x.name), k.p.offset, "{name}: xattr hash");
        xattrs.push((k.p.inode, String::from_utf8(x.name.to_vec()).unwrap(), x.value.to_vec()));
    }
    xattrs.sort();
    let mut want_x = vec![
        (paths["one"], "color".to_string(), b"blue".to_vec()),
        (paths["dir"], "a_longer_attribute_name".to_string(), b"some value".to_vec()),
        (paths["dir/f4095"], "eight888".to_string(), b"8".to_vec()),
        (paths["dir/f4095"], "eleven_char".to_string(), b"11".to_vec()),
    ];
    want_x.sort();
    assert_eq!(xattrs, want_x, "{name}: xattrs");

    // Accounting counts every live inode.
    let acct = keys(BtreeId::Accounting);
    let nr_inodes = acct
        .iter()
        .find(|(k, _)| AccountingPos::from_bpos(k.p).ty() == 0)
        .map(|(_, v)| i64::from_le_bytes(v[..8].try_into().unwrap()))
        .unwrap();
    assert_eq!(nr_inodes as usize, inodes.len(), "{name}: nr_inodes");

    Checked { journal_keys, compressed_extents: compressed }
}

#[test]
fn clean_fixture_reads_like_c_wrote_it() {
    let c = check_fixture("c-clean-siphash.bchimg");
    assert_eq!(c.journal_keys, 0);
    assert_eq!(c.compressed_extents, 0);
}

#[test]
fn unclean_fixture_needs_the_journal() {
    let c = check_fixture("c-unclean-crc64-lz4.bchimg");
    assert!(c.journal_keys > 50, "{}", c.journal_keys);
    assert!(c.compressed_extents > 0);
}
