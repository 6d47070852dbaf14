// SPDX-License-Identifier: GPL-2.0
//! A test oracle for the btree read side: the simplest reader of a btree
//! that works, written independently of `src/btree/` (no node cache, no
//! iterator, no `JournalKeys`), from the on-disk primitives of
//! `format::btree_node` and `format::jset` only.  `tests/btree_read.rs`
//! checks that what `Fs` iterates equals what this finds.
//!
//! It is the walk `bcachefs list` used before the tool moved onto the
//! core's iterator (`format/list.rs` until the write-side reshape), kept
//! here so that the iterator is still checked against a second
//! implementation: every node below the root is read whole and its keys
//! collected; then the journal's keys for the btree and level are applied
//! in journal order (a key replaces the one at its position, a `deleted`
//! key removes it; in the accounting btree keys are deltas added to the
//! stored counters unless the btree already holds a newer version).
//! Journal keys of interior levels are not applied on the way down.

use bcachefs_rs::bcachefs::FsInfo;
use bcachefs_rs::format::bkey::{Bkey, BkeyFormat, BtreeId, KeyType};
use bcachefs_rs::format::btree_node::{bset_magic, BtreeNode, NodeExpect, NodeReadOpts};
use bcachefs_rs::format::jset::{jset_magic, EntryType, Jset};
use bcachefs_rs::format::val::extent::{BtreePtrV2, ExtentEntries, ExtentEntry};
use bcachefs_rs::journal::{find_root, Journal};
use bcachefs_rs::platform::{BlockDev, SECTOR_SIZE};

/// A key and its value.
pub type Key = (Bkey, Vec<u8>);

fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap()))
}

/// Collects the keys at `want` below the pointer (`key`, `val`) to a node
/// at `level`.  Panics (a test failure) on anything unreadable.
#[allow(clippy::too_many_arguments)]
fn walk<D: BlockDev + ?Sized>(dev: &D, fs: &FsInfo, btree: u32, level: u8, key: &Bkey, val: &[u8], want: u8, out: &mut Vec<Key>) {
    let (ptr_v2, ptrs) = match KeyType::from_u8(key.key_type) {
        Some(KeyType::BtreePtrV2) => (BtreePtrV2::decode(val), val.get(40..).unwrap_or(&[])),
        Some(KeyType::BtreePtr) => (None, val),
        t => panic!("not a btree pointer: {t:?}"),
    };
    let p = ExtentEntries::new(ptrs)
        .find_map(|e| match e {
            Ok(ExtentEntry::Ptr(p)) => Some(p),
            _ => None,
        })
        .expect("btree pointer without a device pointer");
    let written = ptr_v2.map_or(0, |b| b.sectors_written as usize);
    let bytes = if written != 0 { written * SECTOR_SIZE } else { fs.node_bytes as usize };
    let mut buf = vec![0u8; bytes.div_ceil(SECTOR_SIZE) * SECTOR_SIZE];
    dev.read_sectors(p.offset, &mut buf).expect("node read");
    let opts = NodeReadOpts {
        bset_magic: bset_magic(&fs.uuid),
        block_bytes: fs.block_bytes,
        node_bytes: fs.node_bytes,
        expect: Some(NodeExpect { btree_id: btree, level, max_key: key.p, ptr_v2 }),
        journal_blacklist: &fs.blacklist,
        verify_csum: true,
    };
    let node = BtreeNode::read(&buf, &opts).unwrap_or_else(|e| panic!("node at {}: {e}", p.offset));
    let sorted = node.sorted().unwrap();
    let f = *node.format();
    if level == want {
        for k in sorted.iter(&node) {
            out.push((k.unpack(&f), k.val(&f).to_vec()));
        }
    } else if level > 0 {
        for k in sorted.iter(&node) {
            walk(dev, fs, btree, level - 1, &k.unpack(&f), k.val(&f), want, out);
        }
    }
}

/// The keys of `btree` at `level` (0: leaves) with the journal's keys for
/// that level applied, in key order, `deleted` keys dropped (whiteouts
/// kept).  A btree without a root has no keys.
pub fn collect<D: BlockDev + ?Sized>(dev: &D, fs: &FsInfo, journal: &Journal, btree: BtreeId, level: u8) -> Vec<Key> {
    let btree = btree as u32;
    let mut keys = Vec::new();
    if let Some(r) = find_root(fs, journal, btree).unwrap() {
        if level <= r.level {
            let vlen = r.key.val_bytes().min(r.val.len());
            walk(dev, fs, btree, r.level, &r.key, &r.val[..vlen], level, &mut keys);
        }
    }
    // Journal keys for this btree and level, in journal order.
    let magic = jset_magic(&fs.uuid);
    let mut jkeys: Vec<Key> = Vec::new();
    for j in journal.jsets.iter() {
        let js = Jset::parse(j, magic).unwrap();
        for e in js.entries() {
            let e = e.unwrap();
            let keyed = matches!(EntryType::from_u8(e.ty), Some(EntryType::BtreeKeys | EntryType::WriteBufferKeys));
            if keyed && u32::from(e.btree_id) == btree && e.level == level {
                for k in e.keys() {
                    let k = k.unwrap();
                    jkeys.push((k.unpack(&BkeyFormat::CURRENT), k.val(&BkeyFormat::CURRENT).to_vec()));
                }
            }
        }
    }
    // Apply them: a map from position to the current key.
    let accounting = btree == BtreeId::Accounting as u32;
    let mut map: std::collections::BTreeMap<_, Key> = keys.into_iter().map(|k| (k.0.p, k)).collect();
    for (jk, jv) in jkeys {
        if !accounting {
            map.insert(jk.p, (jk, jv));
            continue;
        }
        let cur = map.get(&jk.p);
        if cur.is_some_and(|(ok, _)| ok.version >= jk.version) {
            continue;
        }
        let mut sum = jv.clone();
        if let Some((_, ov)) = cur.filter(|(ok, _)| ok.key_type == KeyType::Accounting as u8) {
            for (i, o) in sum.chunks_exact_mut(8).enumerate() {
                o.copy_from_slice(&le64(&jv, 8 * i).wrapping_add(le64(ov, 8 * i)).to_le_bytes());
            }
        }
        map.insert(jk.p, (jk, sum));
    }
    map.into_values().filter(|(k, _)| !k.is_deleted()).collect()
}
