// SPDX-License-Identifier: GPL-2.0
//! `bcachefs list`: dumps a btree's keys, one per line, in bcachefs-tools'
//! format.  Read-only.
//!
//! The filesystem is opened as a mount opens it ([`Fs::open`]: superblock,
//! journal, btree roots, journal keys) and read through the core: the
//! leaves with its iterator ([`bcachefs_rs::btree::BtreeIter`], journal
//! keys overlaid, `deleted` keys dropped, whiteouts shown), the nodes from
//! its node cache.  The tool keeps no reader of its own.
//!
//! The core's iterator walks leaves only.  For `--level` 1 and up and for
//! `--nodes`, [`level_keys`] visits the nodes down to the level asked for
//! through the node cache and overlays that level's journal keys with the
//! same [`JournalKeys`] the iterator uses; it goes once the core has an
//! iterator over interior nodes (C's `bch2_trans_node_iter_init()`).
//!
//! For the tests that damage a volume on purpose, `--nodes` prints where
//! each btree node lives on the device, `--jsets` where each journal entry
//! does, and `--source` marks each key with where its newest version came
//! from (the btree or the journal).

use std::fmt::Write as _;
use std::io::Write;

use bcachefs_rs::bcachefs::{Fs, FsInfo, OpenError, OpenOpts};
use bcachefs_rs::btree::{BtreeCtx, NodePtr};
use bcachefs_rs::format::bkey::{Bkey, BtreeId, KeyType, BTREE_IDS};
use bcachefs_rs::format::bpos::{Bpos, POS_MIN};
use bcachefs_rs::format::jset::{jset_magic, scan_bucket};
use bcachefs_rs::format::sb::read_super;
use bcachefs_rs::format::val::extent::{BtreePtrV2, ExtentEntries, ExtentEntry};
use bcachefs_rs::format::val::{FsCtx, KeyDisplay};
use bcachefs_rs::fs_common::OwnedKey;
use bcachefs_rs::platform::{BlockDev, FileDev, SECTOR_SIZE};
use bcachefs_rs::recovery::journal_keys::{owned, JournalKeys};

/// Arguments of `bcachefs list`.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Btrees to list (names as C's BCH_BTREE_IDS: inodes, dirents,
    /// extents, alloc, ...); repeat or comma-separate.  Default: every btree.
    #[arg(short = 'b', long = "btree", value_delimiter = ',')]
    btrees: Vec<String>,
    /// Btree level to list: 0 for leaves (keys), 1 and up for interior
    /// nodes (btree pointers).
    #[arg(short = 'l', long = "level", default_value_t = 0)]
    level: u8,
    /// Instead of keys: one line per btree node (root and every node
    /// below it), `<btree> level <l> sector <s> sectors <n> min <pos> max
    /// <pos>`, sectors on the device, `sectors` the part written.
    #[arg(long, conflicts_with_all = ["jsets", "source"])]
    nodes: bool,
    /// Instead of keys: one line per journal entry found in the journal
    /// buckets, `jset seq <seq> sector <s> sectors <n> csum <good|bad>
    /// last_seq <seq> <flush|noflush>`, whether replayed or not.
    #[arg(long, conflicts_with = "source")]
    jsets: bool,
    /// Start each key line with `journal ` or `btree `: where the key's
    /// newest version came from.
    #[arg(long)]
    source: bool,
    /// Device or image file.
    device: String,
}

/// Runs `bcachefs list`.
pub fn list(a: &ListArgs) -> Result<(), String> {
    let device = &a.device;
    let ids: Vec<BtreeId> = if a.btrees.is_empty() {
        (0..BTREE_IDS.len() as u32).filter_map(BtreeId::from_u32).collect()
    } else {
        a.btrees
            .iter()
            .map(|n| BtreeId::from_name(n).ok_or_else(|| format!("unknown btree '{n}'")))
            .collect::<Result<_, _>>()?
    };
    let mut stdout = std::io::stdout().lock();
    if a.jsets {
        // Only the superblock is needed: this works on volumes the
        // filesystem would not open.
        let dev = FileDev::open(device).map_err(|e| format!("{device}: {e}"))?;
        let sbr = read_super(&dev).map_err(|e| format!("{device}: {e}"))?;
        let info = FsInfo::from_sb(&sbr.sb()).map_err(|e| format!("{device}: {e}"))?;
        let out = jsets(&dev, &info).map_err(|e| format!("{device}: journal: {e}"))?;
        return stdout.write_all(out.as_bytes()).map_err(|e| e.to_string());
    }
    let dev = FileDev::open(device).map_err(|e| format!("{device}: {e}"))?;
    let fs = match Fs::open(dev, &OpenOpts::default()) {
        Ok(fs) => fs,
        // Formatted, never mounted: no btree has a key yet.
        Err(OpenError::Uninitialized) => return Ok(()),
        Err(e) => return Err(format!("{device}: {e}")),
    };
    // The btrees without the journal, to tell which accounting keys the
    // journal changed (see `leaves`).
    let btree_only = if a.source && a.level == 0 && ids.contains(&BtreeId::Accounting) {
        Some(open_norecovery(device)?)
    } else {
        None
    };
    for id in ids {
        let mut out = String::new();
        let c = fs.btree_ctx();
        let r = if a.nodes {
            nodes(c, id, &mut out)
        } else if a.level > 0 {
            interior(c, id, a.level, a.source, &mut out)
        } else {
            leaves(&fs, btree_only.as_ref(), id, a.source, &mut out)
        };
        r.map_err(|e| format!("{device}: btree {}: {e}", id.name()))?;
        stdout.write_all(out.as_bytes()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Opens `device` read-only as a `norecovery` mount would: the btrees
/// without the journal keys.
fn open_norecovery(device: &str) -> Result<Fs<FileDev>, String> {
    let dev = FileDev::open(device).map_err(|e| format!("{device}: {e}"))?;
    let opts = OpenOpts { norecovery: true, ..OpenOpts::default() };
    Fs::open(dev, &opts).map_err(|e| format!("{device}: {e}"))
}

/// Whether the journal has keys at `pos` of (`btree`, `level`).
fn in_journal(keys: &JournalKeys, btree: BtreeId, level: u8, pos: Bpos) -> bool {
    let i = keys.lower_bound(btree as u8, level, pos);
    keys.get(i).is_some_and(|k| k.btree == btree as u8 && k.level == level && k.pos == pos)
}

fn key_line(out: &mut String, source: Option<bool>, k: &OwnedKey, ctx: &FsCtx<'_>) {
    if let Some(from_journal) = source {
        out.push_str(if from_journal { "journal " } else { "btree " });
    }
    let _ = writeln!(out, "{}", KeyDisplay { k: &k.k, v: &k.v, ctx: Some(ctx) });
}

/// The leaves of `id` through the core's iterator.  With `source`, a key
/// came from the journal if the journal has keys at its position, except
/// in the accounting btree, whose journal keys are deltas that only count
/// when newer than the btree's key: there the key came from the journal if
/// `btree_only` (the filesystem opened `norecovery`) has another version
/// at that position, or nothing.
fn leaves(fs: &Fs<FileDev>, btree_only: Option<&Fs<FileDev>>, id: BtreeId, source: bool, out: &mut String) -> Result<(), String> {
    let c = fs.btree_ctx();
    let ctx = c.info.ctx();
    let mut it = fs.iter(id, POS_MIN, true);
    while let Some(k) = it.next().map_err(|e| e.to_string())? {
        let from_journal = source.then(|| -> Result<bool, String> {
            if !in_journal(c.keys, id, 0, k.k.p) {
                return Ok(false);
            }
            let Some(b) = btree_only.filter(|_| id == BtreeId::Accounting) else { return Ok(true) };
            let mut bi = b.iter(id, k.k.p, true);
            let bk = bi.peek_slot().map_err(|e| e.to_string())?;
            Ok(bk.k.is_deleted() || bk.k.version != k.k.version)
        });
        key_line(out, from_journal.transpose()?, &k, &ctx);
    }
    Ok(())
}

/// `--level` 1 and up: the pointers in the nodes at that level.
fn interior<D: BlockDev + ?Sized>(c: BtreeCtx<'_, D>, id: BtreeId, level: u8, source: bool, out: &mut String) -> Result<(), String> {
    let ctx = c.info.ctx();
    for (k, from_journal) in level_keys(c, id, level)? {
        key_line(out, source.then_some(from_journal), &k, &ctx);
    }
    Ok(())
}

/// The keys of `id`'s nodes at `level`, in order: each node's keys with
/// the journal keys of that level inside the node's range overlaid (the
/// newest wins, `deleted` hides), each with whether it came from the
/// journal.  Nodes are reached from the root through the node cache, with
/// the journal keys of each level above overlaid on the way down, as the
/// core's iterator does.  Empty when the btree has no root or its root is
/// below `level`.
///
/// Errors: a node that cannot be read (also logged by the node cache, with
/// its location), a journal key that cannot be combined, out of memory.
pub(crate) fn level_keys<D: BlockDev + ?Sized>(c: BtreeCtx<'_, D>, id: BtreeId, level: u8) -> Result<Vec<(OwnedKey, bool)>, String> {
    let mut out = Vec::new();
    let Some(root) = c.roots.get(id as usize).copied().flatten() else { return Ok(out) };
    if level > root.level {
        return Ok(out);
    }
    let vlen = root.key.val_bytes().min(root.val.len());
    visit(c, id, root.level, &root.key, &root.val[..vlen], level, &mut out)?;
    Ok(out)
}

/// [`level_keys`] below the pointer (`key`, `val`) to a node at `node_level`.
fn visit<D: BlockDev + ?Sized>(
    c: BtreeCtx<'_, D>,
    id: BtreeId,
    node_level: u8,
    key: &Bkey,
    val: &[u8],
    want: u8,
    out: &mut Vec<(OwnedKey, bool)>,
) -> Result<(), String> {
    let ptr = NodePtr { btree: id as u8, level: node_level, key, val };
    let node = c
        .cache
        .get(c.dev, c.info, ptr, key.p)
        .map_err(|e| format!("level {node_level} node at sector {}: {e}", ptr.sector().unwrap_or(0)))?;
    let mut keys: Vec<(OwnedKey, bool)> = Vec::new();
    let (mut i, mut j) = (0, c.keys.lower_bound(id as u8, node_level, node.min_key));
    loop {
        let bpos = node.key(i).map(|(k, _)| k.p);
        let jpos = c
            .keys
            .get(j)
            .filter(|k| k.btree == id as u8 && k.level == node_level && k.pos <= node.max_key)
            .map(|k| k.pos);
        let p = match (bpos, jpos) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let bkey = node.key(i).filter(|(k, _)| k.p == p);
        if bkey.is_some() {
            i += 1;
        }
        let k = if jpos == Some(p) {
            let end = c.keys.slot_end(j);
            let k = c.keys.resolve(j, end, bkey).map_err(|e| e.to_string())?;
            j = end;
            k.map(|k| (k, true))
        } else {
            bkey.map(|(k, v)| owned(&k, v).map(|k| (k, false))).transpose().map_err(|e| e.to_string())?
        };
        if let Some(k) = k.filter(|(k, _)| !k.k.is_deleted()) {
            keys.push(k);
        }
    }
    if node_level == want {
        out.extend(keys);
        return Ok(());
    }
    drop(node);
    for (k, _) in keys {
        visit(c, id, node_level - 1, &k.k, &k.v, want, out)?;
    }
    Ok(())
}

/// One `--nodes` line for the node the pointer `(key, val)` points to.
fn node_line(out: &mut String, node_bytes: u32, name: &str, level: u8, key: &Bkey, val: &[u8]) {
    let (v2, ptrs) = if key.key_type == KeyType::BtreePtrV2 as u8 {
        (BtreePtrV2::decode(val), val.get(40..).unwrap_or(&[]))
    } else {
        (None, val)
    };
    let written = v2.map_or(0, |b| u32::from(b.sectors_written));
    let sectors = if written != 0 { written } else { node_bytes / SECTOR_SIZE as u32 };
    for e in ExtentEntries::new(ptrs) {
        if let Ok(ExtentEntry::Ptr(p)) = e {
            let _ = write!(out, "{name} level {level} sector {} sectors {sectors} dev {} ", p.offset, p.dev);
            match v2 {
                Some(b) => {
                    let _ = write!(out, "min {} ", b.min_key);
                }
                None => out.push_str("min ? "),
            }
            let _ = writeln!(out, "max {}", key.p);
        }
    }
}

/// `--nodes`: the root, then every node below it, level by level.
fn nodes<D: BlockDev + ?Sized>(c: BtreeCtx<'_, D>, id: BtreeId, out: &mut String) -> Result<(), String> {
    let Some(r) = c.roots.get(id as usize).copied().flatten() else { return Ok(()) };
    let vlen = r.key.val_bytes().min(r.val.len());
    node_line(out, c.info.node_bytes, id.name(), r.level, &r.key, &r.val[..vlen]);
    for level in (1..=r.level).rev() {
        for (k, _) in level_keys(c, id, level)? {
            node_line(out, c.info.node_bytes, id.name(), level - 1, &k.k, &k.v);
        }
    }
    Ok(())
}

/// `--jsets`: every jset in the journal buckets of the device.
fn jsets(dev: &FileDev, fs: &FsInfo) -> Result<String, String> {
    let d = fs.this_dev().ok_or("no member entry for this device")?;
    let bucket_bytes = d.bucket_size as usize * SECTOR_SIZE;
    let magic = jset_magic(&fs.uuid);
    let mut out = String::new();
    let mut buf = vec![0u8; bucket_bytes];
    for &b in fs.journal_buckets.iter() {
        let sector = b * u64::from(d.bucket_size);
        dev.read_sectors(sector, &mut buf).map_err(|e| format!("bucket {b}: {e}"))?;
        let found = scan_bucket(&buf, magic, fs.block_bytes as usize).map_err(|e| format!("bucket {b}: {e}"))?;
        for f in found.iter() {
            let _ = writeln!(
                out,
                "jset seq {} sector {} sectors {} csum {} last_seq {} {}",
                f.header.seq,
                sector + u64::from(f.offset_sectors),
                f.sectors,
                if f.csum_good { "good" } else { "bad" },
                f.header.last_seq,
                if f.header.no_flush() { "noflush" } else { "flush" }
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! A two-level dirents btree in memory, with journal keys at both
    //! levels: a pointer to a leaf rewritten after its parent, a new key,
    //! a deleted one.
    use super::*;
    use bcachefs_rs::btree::{BtreeCache, BtreeIter};
    use bcachefs_rs::checksum::CsumType;
    use bcachefs_rs::format::bpos::SPOS_MAX;
    use bcachefs_rs::format::btree_node::{bset_magic, write_node, NodeWriteOpts};
    use bcachefs_rs::format::jset::{EntryType, JsetBuilder};
    use bcachefs_rs::format::val::dirent::encode_dirent;
    use bcachefs_rs::format::val::extent::ExtentPtr;
    use bcachefs_rs::format::val::DevInfo;
    use bcachefs_rs::format::version::VERSION_CURRENT;
    use bcachefs_rs::journal::{Journal, Root, NR_BTREES};
    use bcachefs_rs::platform::{MemImage, Vec as PVec};

    const UUID: [u8; 16] = [3; 16];
    const BUCKET: u64 = 256;
    const DIR: u64 = 4096;

    struct Tree {
        img: MemImage,
        info: FsInfo,
        roots: Vec<Option<Root>>,
        keys: JournalKeys,
        cache: BtreeCache,
    }

    impl Tree {
        fn ctx(&self) -> BtreeCtx<'_, MemImage> {
            BtreeCtx { dev: &self.img, info: &self.info, cache: &self.cache, roots: &self.roots, keys: &self.keys }
        }
    }

    fn dirent(off: u64, name: &str) -> (Bkey, Vec<u8>) {
        let mut v = [0u8; 64];
        let n = encode_dirent(&mut v, 5000 + off, 8, name.as_bytes()).unwrap();
        (Bkey::new(KeyType::Dirent, Bpos::new(DIR, off, u32::MAX), n / 8), v[..n].to_vec())
    }

    fn write(img: &mut MemImage, level: u8, seq: u64, min: Bpos, max: Bpos, keys: &[(Bkey, Vec<u8>)], sector: u64) -> (Bkey, Vec<u8>) {
        let o = NodeWriteOpts {
            btree_id: BtreeId::Dirents as u32,
            level,
            seq,
            node_seq: 0,
            min_key: min,
            max_key: max,
            format: None,
            csum_type: CsumType::Crc32c,
            version: VERSION_CURRENT,
            journal_seq: 1,
            block_bytes: 4096,
            node_bytes: 64 << 10,
            bset_magic: bset_magic(&UUID),
        };
        let kr: Vec<(Bkey, &[u8])> = keys.iter().map(|(k, v)| (*k, &v[..])).collect();
        let n = write_node(&o, &kr).unwrap();
        img.write(sector, &n).unwrap();
        let mut v = [0u8; 48];
        BtreePtrV2 { mem_ptr: 0, seq, sectors_written: (n.len() / 512) as u16, flags: 0, min_key: min }.encode(&mut v).unwrap();
        v[40..].copy_from_slice(&ExtentPtr { offset: sector, ..Default::default() }.encode().to_le_bytes());
        (Bkey::new(KeyType::BtreePtrV2, max, 6), v.to_vec())
    }

    /// Leaves at sectors 10, 11, 12 buckets; the root at 20; leaf 2
    /// rewritten to 13 with its pointer only in the journal.
    fn tree() -> Tree {
        let mut img = MemImage::zeroed(64 * BUCKET);
        let bounds = [
            (POS_MIN, Bpos::new(DIR, 150, u32::MAX)),
            (Bpos::new(DIR, 151, 0), Bpos::new(DIR, 250, u32::MAX)),
            (Bpos::new(DIR, 251, 0), SPOS_MAX),
        ];
        let mut ptrs = Vec::new();
        for (li, (min, max)) in bounds.iter().enumerate() {
            let keys: Vec<_> = (0..5).map(|i| dirent(100 * (li as u64 + 1) + i, &format!("n{li}{i}"))).collect();
            ptrs.push(write(&mut img, 0, 20 + li as u64, *min, *max, &keys, (10 + li as u64) * BUCKET));
        }
        let (rk, rv) = write(&mut img, 1, 30, POS_MIN, SPOS_MAX, &ptrs, 20 * BUCKET);
        let mut val = [0u8; 72];
        val[..rv.len()].copy_from_slice(&rv);
        let mut roots = vec![None; NR_BTREES];
        roots[BtreeId::Dirents as usize] = Some(Root { btree_id: BtreeId::Dirents as u32, level: 1, key: rk, val });
        // Leaf 2 rewritten: two keys of its range.
        let (min, max) = bounds[1];
        let re: Vec<_> = (0..2).map(|i| dirent(220 + i, &format!("re{i}"))).collect();
        let (pk, pv) = write(&mut img, 0, 40, min, max, &re, 13 * BUCKET);
        let mut j = JsetBuilder::new(1, 1, VERSION_CURRENT, jset_magic(&UUID)).unwrap();
        let d = BtreeId::Dirents as u8;
        j.add_keys(EntryType::BtreeKeys, d, 1, &[(pk, &pv[..])]).unwrap();
        let (nk, nv) = dirent(260, "new");
        let del = Bkey { key_type: KeyType::Deleted as u8, ..dirent(100, "n00").0 };
        j.add_keys(EntryType::BtreeKeys, d, 0, &[(del, &[][..]), (nk, &nv[..])]).unwrap();
        let j = j.finish(CsumType::Crc32c, 4096).unwrap();
        let mut devs = PVec::new();
        devs.push(Some(DevInfo { bucket_size: BUCKET as u32, first_bucket: 1, nbuckets: 64, durability: 1, failed: false })).unwrap();
        let info = FsInfo {
            uuid: UUID,
            block_bytes: 4096,
            node_bytes: 64 << 10,
            dev_idx: 0,
            devs,
            journal_buckets: PVec::new(),
            blacklist: PVec::new(),
            clean: PVec::new(),
        };
        let mut jsets = PVec::new();
        let mut jv = PVec::new();
        jv.extend_from_slice(&j).unwrap();
        jsets.push(jv).unwrap();
        let keys = JournalKeys::build(&info, &Journal { jsets, last_seq: 1, blacklist_seq: 2 }).unwrap();
        Tree { img, info, roots, keys, cache: BtreeCache::new(1 << 20).unwrap() }
    }

    #[test]
    fn interior_levels_overlay_their_journal_keys() {
        let t = tree();
        let c = t.ctx();
        let ptrs = level_keys(c, BtreeId::Dirents, 1).unwrap();
        let got: Vec<(u64, bool)> = ptrs.iter().map(|(k, j)| (k.k.p.offset, *j)).collect();
        assert_eq!(got, [(150, false), (250, true), (u64::MAX, false)]);
        let mut out = String::new();
        interior(c, BtreeId::Dirents, 1, true, &mut out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("journal u64s 11 type btree_ptr_v2 4096:250:U32_MAX"), "{out}");
        assert!(lines[0].starts_with("btree ") && lines[2].starts_with("btree "), "{out}");
        // Above the root, and a btree without one: nothing.
        assert!(level_keys(c, BtreeId::Dirents, 2).unwrap().is_empty());
        assert!(level_keys(c, BtreeId::Xattrs, 1).unwrap().is_empty());
    }

    #[test]
    fn the_walk_to_the_leaves_agrees_with_the_core_iterator() {
        let t = tree();
        let c = t.ctx();
        let walked = level_keys(c, BtreeId::Dirents, 0).unwrap();
        let mut it = BtreeIter::new(c, BtreeId::Dirents, POS_MIN, true);
        let mut iterated = Vec::new();
        while let Some(k) = it.next().unwrap() {
            iterated.push(k);
        }
        let w: Vec<_> = walked.iter().map(|(k, _)| (k.k, k.v.to_vec())).collect();
        let i: Vec<_> = iterated.iter().map(|k| (k.k, k.v.to_vec())).collect();
        assert_eq!(w, i);
        // n00 deleted, the rewritten leaf's two keys, "new".
        let offs: Vec<u64> = w.iter().map(|(k, _)| k.p.offset).collect();
        assert_eq!(offs, [101, 102, 103, 104, 220, 221, 260, 300, 301, 302, 303, 304]);
        // Only "new" came from the journal at level 0.
        let from_journal: Vec<u64> = walked.iter().filter(|(_, j)| *j).map(|(k, _)| k.k.p.offset).collect();
        assert_eq!(from_journal, [260]);
        for (k, j) in &walked {
            assert_eq!(in_journal(c.keys, BtreeId::Dirents, 0, k.k.p), *j);
        }
    }

    #[test]
    fn nodes_lists_the_root_and_every_node_below() {
        let t = tree();
        let mut out = String::new();
        nodes(t.ctx(), BtreeId::Dirents, &mut out).unwrap();
        let sectors: Vec<(&str, &str)> = out
            .lines()
            .map(|l| {
                let w: Vec<&str> = l.split(' ').collect();
                (w[2], w[4])
            })
            .collect();
        let b = |n: u64| (n * BUCKET).to_string();
        assert_eq!(sectors, [("1", &b(20)[..]), ("0", &b(10)[..]), ("0", &b(13)[..]), ("0", &b(12)[..])], "{out}");
        assert!(out.starts_with("dirents level 1 sector 5120 sectors 8 dev 0 min POS_MIN max SPOS_MAX\n"), "{out}");
    }

    #[test]
    fn a_bad_node_is_named() {
        let mut t = tree();
        let mut s = [0u8; 512];
        t.img.read(12 * BUCKET, &mut s).unwrap();
        s[200] ^= 1;
        t.img.write(12 * BUCKET, &s).unwrap();
        let e = level_keys(t.ctx(), BtreeId::Dirents, 0).unwrap_err();
        assert!(e.starts_with(&format!("level 0 node at sector {}: ", 12 * BUCKET)), "{e}");
    }
}
