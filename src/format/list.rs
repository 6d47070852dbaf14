// SPDX-License-Identifier: GPL-2.0
//! Listing a btree from a device, as bcachefs-tools' `list` does: the
//! superblock gives the geometry and the journal buckets; the journal
//! ([`super::jset`]) gives the newest btree roots and the keys written
//! since the btree nodes were; the nodes ([`super::btree_node`]) give the
//! rest.  Every key is printed on one line (values such as inodes span
//! several) as `bch2_bkey_val_to_text()` prints it.
//!
//! Read-only: nothing is ever written.  Single-device filesystems only.
//!
//! The journal keys are applied over the btree keys in journal order: a
//! key replaces the one at its position (a `deleted` key removes it),
//! except in the accounting btree, where journal keys are deltas added to
//! the stored counters unless the btree already holds a newer version
//! (`bch2_journal_replay_accounting_key()`).

use core::fmt;

use super::bkey::{Bkey, BkeyFormat, BtreeIdName, KeyError, KeyType, UnpackedKeys};
use super::bpos::Bpos;
use super::btree_node::{bset_magic, BtreeNode, NodeError, NodeExpect, NodeReadOpts};
use super::jset::{
    iter_entries, jset_magic, replay_range, scan_bucket, EntryType, Jset, JsetError, JsetHeaderInfo,
};
use super::sb::{FieldType, Sb, SbError};
use super::sb_members::MemberFlag;
use super::sb_opts::sb_opt;
use super::val::extent::{BtreePtrV2, ExtentEntries, ExtentEntry, ExtentPtr};
use super::val::{DevInfo, FsCtx, KeyDisplay};
use crate::errcode::{AllocError, Errno};
use crate::platform::{BlockDev, Vec, SECTOR_SIZE};
use crate::util::le::le64;

/// Why listing failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListError {
    /// The superblock is unusable.
    Sb(SbError),
    /// A read failed.
    Io(Errno),
    /// The journal is unusable.
    Jset(JsetError),
    /// A btree node is unusable.
    Node {
        /// Btree.
        btree: u32,
        /// Level of the node.
        level: u8,
        /// Device sector of the node.
        sector: u64,
        /// What is wrong.
        err: NodeError,
    },
    /// A key in the journal or an interior node is unusable.
    Key(KeyError),
    /// A pointer to another device: only single-device filesystems are
    /// supported.
    MultiDevice(u8),
    /// A btree pointer without pointers.
    NoPtr,
    /// Superblock fields this reader needs are missing or odd.
    BadGeometry(&'static str),
    /// Output failed.
    Fmt,
    /// Out of memory.
    NoMem,
}

impl From<AllocError> for ListError {
    fn from(_: AllocError) -> ListError {
        ListError::NoMem
    }
}

impl From<fmt::Error> for ListError {
    fn from(_: fmt::Error) -> ListError {
        ListError::Fmt
    }
}

impl ListError {
    /// The error number.
    pub fn errno(&self) -> Errno {
        match self {
            ListError::Sb(e) => e.errno(),
            ListError::Io(e) => *e,
            ListError::Jset(e) => e.errno(),
            ListError::Node { err, .. } => err.errno(),
            ListError::Key(e) => e.errno(),
            ListError::MultiDevice(_) => Errno::EOPNOTSUPP,
            ListError::NoMem => Errno::ENOMEM,
            _ => Errno::EUCLEAN,
        }
    }
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ListError::Sb(e) => write!(f, "superblock: {e}"),
            ListError::Io(e) => write!(f, "read error: {e}"),
            ListError::Jset(e) => write!(f, "journal: {e}"),
            ListError::Node { btree, level, sector, err } => {
                write!(f, "btree {} level {level} node at sector {sector}: {err}", BtreeIdName(btree))
            }
            ListError::Key(e) => write!(f, "key: {e}"),
            ListError::MultiDevice(d) => {
                write!(f, "pointer to device {d}: multi-device filesystems are not supported")
            }
            ListError::NoPtr => f.write_str("btree pointer without a device pointer"),
            ListError::BadGeometry(w) => write!(f, "superblock: {w}"),
            ListError::Fmt => f.write_str("output error"),
            ListError::NoMem => f.write_str("out of memory"),
        }
    }
}

/// Most journal buckets [`FsInfo::from_sb`] accepts (C allows at most
/// `UINT_MAX`, but real journals have thousands).
pub const MAX_JOURNAL_BUCKETS: u64 = 1 << 20;

/// What listing needs to know about the filesystem.
pub struct FsInfo {
    /// Internal uuid (keys the bset and jset magics).
    pub uuid: [u8; 16],
    /// Block size, bytes.
    pub block_bytes: u32,
    /// Btree node size, bytes.
    pub node_bytes: u32,
    /// Index of the device read.
    pub dev_idx: u8,
    /// The members, by index (heap-allocated: the kernel stack is small).
    pub devs: Vec<Option<DevInfo>>,
    /// Journal buckets of the device, in superblock order.
    pub journal_buckets: Vec<u64>,
    /// Blacklisted journal sequence numbers, `[start, end)`.
    pub blacklist: Vec<(u64, u64)>,
    /// Entries of the superblock's `clean` section (btree roots after a
    /// clean unmount), if any.
    pub clean: Vec<u8>,
}

impl FsInfo {
    /// Collects what listing needs from a (validated) superblock.
    pub fn from_sb(sb: &Sb<'_>) -> Result<FsInfo, ListError> {
        let opt = |n| sb_opt(n).map(|o| sb.opt(o));
        let block_bytes = u32::from(sb.block_size()) * SECTOR_SIZE as u32;
        let node_bytes = opt("btree_node_size").ok_or(ListError::BadGeometry("no btree_node_size"))? as u32;
        if block_bytes == 0 || node_bytes < block_bytes {
            return Err(ListError::BadGeometry("block or btree node size"));
        }
        let mut devs: Vec<Option<DevInfo>> = Vec::new();
        for (i, m) in sb.members() {
            let i = i as usize;
            if m.alive() && i < 64 {
                if devs.len() <= i {
                    devs.resize(i + 1, None)?;
                }
                devs[i] = Some(DevInfo {
                    bucket_size: u32::from(m.bucket_size),
                    first_bucket: u64::from(m.first_bucket),
                    nbuckets: m.nbuckets,
                    durability: m.durability().min(255) as u8,
                    failed: m.flag(MemberFlag::State) == 2,
                });
            }
        }
        let mut journal_buckets: Vec<u64> = Vec::new();
        let too_many = ListError::BadGeometry("more journal buckets than this reader takes");
        if let Some(f) = sb.field(FieldType::JournalV2) {
            let b = f.body();
            for i in 0..b.len() / 16 {
                let (start, nr) = (le64(b, 16 * i), le64(b, 16 * i + 8));
                if nr > MAX_JOURNAL_BUCKETS || journal_buckets.len() as u64 + nr > MAX_JOURNAL_BUCKETS {
                    return Err(too_many);
                }
                for j in 0..nr {
                    journal_buckets.push(start.saturating_add(j))?;
                }
            }
        } else if let Some(f) = sb.field(FieldType::Journal) {
            let b = f.body();
            if (b.len() / 8) as u64 > MAX_JOURNAL_BUCKETS {
                return Err(too_many);
            }
            for i in 0..b.len() / 8 {
                journal_buckets.push(le64(b, 8 * i))?;
            }
        }
        let mut blacklist: Vec<(u64, u64)> = Vec::new();
        if let Some(f) = sb.field(FieldType::JournalSeqBlacklist) {
            let b = f.body();
            for i in 0..b.len() / 16 {
                blacklist.push((le64(b, 16 * i), le64(b, 16 * i + 8)))?;
            }
        }
        let mut clean: Vec<u8> = Vec::new();
        if let Some(f) = sb.field(FieldType::Clean) {
            // flags u32, read/write clocks u16, journal_seq u64, entries.
            clean.extend_from_slice(f.body().get(16..).unwrap_or(&[]))?;
        }
        Ok(FsInfo {
            uuid: sb.uuid(),
            block_bytes,
            node_bytes,
            dev_idx: sb.dev_idx(),
            devs,
            journal_buckets,
            blacklist,
            clean,
        })
    }

    /// The facts value printing and checks use.
    pub fn ctx(&self) -> FsCtx<'_> {
        FsCtx { devs: &self.devs, btree_node_sectors: self.node_bytes / SECTOR_SIZE as u32, ..FsCtx::default() }
    }

    fn this_dev(&self) -> Result<&DevInfo, ListError> {
        self.devs
            .get(self.dev_idx as usize)
            .and_then(|d| d.as_ref())
            .ok_or(ListError::BadGeometry("no member entry for this device"))
    }
}

/// The journal as replay would use it: the jsets from `last_seq` to the
/// newest flush write, in order.
pub struct Journal {
    /// The jsets' bytes, in sequence order.
    pub jsets: Vec<Vec<u8>>,
    /// `last_seq` of the replay range (0 when the journal is empty).
    pub last_seq: u64,
    /// One past the newest flush write.
    pub blacklist_seq: u64,
}

fn read_bytes<D: BlockDev + ?Sized>(dev: &D, sector: u64, bytes: usize) -> Result<Vec<u8>, ListError> {
    let mut buf: Vec<u8> = Vec::new();
    buf.resize(bytes.div_ceil(SECTOR_SIZE) * SECTOR_SIZE, 0)?;
    dev.read_sectors(sector, &mut buf).map_err(ListError::Io)?;
    Ok(buf)
}

/// Reads every journal bucket of the device, keeps one copy of each
/// sequence number (one with a good checksum if any), applies the replay
/// rules and checks each jset to be replayed (`jset_validate()`).
pub fn read_journal<D: BlockDev + ?Sized>(dev: &D, fs: &FsInfo) -> Result<Journal, ListError> {
    let d = *fs.this_dev()?;
    let bucket_bytes = d.bucket_size as usize * SECTOR_SIZE;
    let magic = jset_magic(&fs.uuid);
    let mut jsets: Vec<Vec<u8>> = Vec::new();
    let mut info: Vec<JsetHeaderInfo> = Vec::new();
    for &b in fs.journal_buckets.iter() {
        let sector = b.checked_mul(u64::from(d.bucket_size)).ok_or(ListError::BadGeometry("journal bucket"))?;
        let buf = read_bytes(dev, sector, bucket_bytes)?;
        let found = scan_bucket(&buf, magic, fs.block_bytes as usize).map_err(ListError::Jset)?;
        for f in found.iter() {
            let start = f.offset_sectors as usize * SECTOR_SIZE;
            let bytes = f.header.bytes();
            let i = JsetHeaderInfo::from(f);
            match info.iter().position(|x| x.seq == i.seq) {
                // Keep the first good copy.
                Some(p) if info[p].csum_good || !i.csum_good => continue,
                Some(p) => {
                    info[p] = i;
                    jsets[p].clear();
                    jsets[p].extend_from_slice(&buf[start..start + bytes])?;
                }
                None => {
                    let mut v: Vec<u8> = Vec::new();
                    v.extend_from_slice(&buf[start..start + bytes])?;
                    jsets.push(v)?;
                    info.push(i)?;
                }
            }
        }
    }
    let Some(r) = replay_range(&info, &fs.blacklist).map_err(ListError::Jset)? else {
        return Ok(Journal { jsets: Vec::new(), last_seq: 0, blacklist_seq: 0 });
    };
    let mut out: Vec<Vec<u8>> = Vec::new();
    let ctx = fs.ctx();
    for &i in r.replay.iter() {
        let j = core::mem::take(&mut jsets[i]);
        {
            let js = Jset::parse(&j, magic).map_err(ListError::Jset)?;
            js.verify_csum().map_err(ListError::Jset)?;
            js.validate(&ctx).map_err(ListError::Jset)?;
        }
        out.push(j)?;
    }
    Ok(Journal { jsets: out, last_seq: r.last_seq, blacklist_seq: r.blacklist_seq })
}

/// A btree root: the pointer to the root node and the node's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    /// Btree.
    pub btree_id: u32,
    /// Level of the root node.
    pub level: u8,
    /// The pointer key.
    pub key: Bkey,
    /// Its value (btree_ptr_v2 or btree_ptr), zero-padded.
    pub val: [u8; 72],
}

/// The newest root of `btree_id`: from the journal's `btree_root` entries
/// (the last one wins), else from the superblock's `clean` section.
pub fn find_root(fs: &FsInfo, journal: &Journal, btree_id: u32) -> Result<Option<Root>, ListError> {
    fn scan(data: &[u8], btree_id: u32, root: &mut Option<Root>) -> Result<(), ListError> {
        for e in iter_entries(data, 0) {
            let e = e.map_err(ListError::Jset)?;
            if e.ty != EntryType::BtreeRoot as u8 || u32::from(e.btree_id) != btree_id {
                continue;
            }
            if let Some(k) = e.keys().next() {
                let k = k.map_err(ListError::Key)?;
                let key = k.unpack(&BkeyFormat::CURRENT);
                let v = k.val(&BkeyFormat::CURRENT);
                let mut val = [0u8; 72];
                let n = v.len().min(72);
                val[..n].copy_from_slice(&v[..n]);
                *root = Some(Root { btree_id, level: e.level, key, val });
            }
        }
        Ok(())
    }
    let magic = jset_magic(&fs.uuid);
    let mut root = None;
    for j in journal.jsets.iter() {
        let js = Jset::parse(j, magic).map_err(ListError::Jset)?;
        scan(&js.bytes()[super::jset::JSET_BYTES..], btree_id, &mut root)?;
    }
    if root.is_none() {
        scan(&fs.clean, btree_id, &mut root)?;
    }
    Ok(root)
}

/// Keys, unpacked, with their values: 40 bytes of `struct bkey` then the
/// value, one after the other, in key order.
pub struct KeyList {
    data: UnpackedKeys,
    offs: Vec<u32>,
    journal: Vec<bool>,
}

impl KeyList {
    fn new() -> Self {
        KeyList { data: UnpackedKeys::new(), offs: Vec::new(), journal: Vec::new() }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.offs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.offs.is_empty()
    }

    /// Whether key `i`'s newest version came from the journal.
    pub fn from_journal(&self, i: usize) -> bool {
        self.journal.get(i).copied().unwrap_or(false)
    }

    /// The keys with their values.
    pub fn iter(&self) -> impl Iterator<Item = (Bkey, &[u8])> + '_ {
        (0..self.offs.len()).map(move |i| self.get(i))
    }

    fn push(&mut self, k: &Bkey, v: &[u8]) -> Result<(), ListError> {
        let off = self.data.push(k, v)?;
        self.offs.push(off)?;
        Ok(())
    }

    /// Key `i` and its value.  Panics if `i >= len()`, as indexing does.
    pub fn get(&self, i: usize) -> (Bkey, &[u8]) {
        self.data.get(self.offs[i]).expect("KeyList offsets come from push")
    }
}

fn first_ptr(val: &[u8]) -> Option<ExtentPtr> {
    ExtentEntries::new(val).find_map(|e| match e {
        Ok(ExtentEntry::Ptr(p)) => Some(p),
        _ => None,
    })
}

/// Reads the node a btree pointer points to and collects the keys at
/// `want_level` below it into `out`, in order.
#[allow(clippy::too_many_arguments)]
fn walk<D: BlockDev + ?Sized>(
    dev: &D,
    fs: &FsInfo,
    btree: u32,
    level: u8,
    key: &Bkey,
    val: &[u8],
    want_level: u8,
    out: &mut KeyList,
) -> Result<(), ListError> {
    let (ptr_v2, ptrs) = match KeyType::from_u8(key.key_type) {
        Some(KeyType::BtreePtrV2) => (BtreePtrV2::decode(val), val.get(40..).unwrap_or(&[])),
        Some(KeyType::BtreePtr) => (None, val),
        _ => return Err(ListError::Key(KeyError::InvalidTypeForBtree { ty: key.key_type, node: super::bkey::NodeType::Interior })),
    };
    let p = first_ptr(ptrs).ok_or(ListError::NoPtr)?;
    if p.dev != fs.dev_idx {
        return Err(ListError::MultiDevice(p.dev));
    }
    let written = ptr_v2.map_or(0, |b| b.sectors_written as usize);
    let bytes = if written != 0 { written * SECTOR_SIZE } else { fs.node_bytes as usize };
    let buf = read_bytes(dev, p.offset, bytes)?;
    let opts = NodeReadOpts {
        bset_magic: bset_magic(&fs.uuid),
        block_bytes: fs.block_bytes,
        node_bytes: fs.node_bytes,
        expect: Some(NodeExpect { btree_id: btree, level, max_key: key.p, ptr_v2 }),
        journal_blacklist: &fs.blacklist,
        verify_csum: true,
    };
    let nerr = |err| ListError::Node { btree, level, sector: p.offset, err };
    let node = BtreeNode::read(&buf, &opts).map_err(nerr)?;
    let sorted = node.sorted().map_err(nerr)?;
    let f = *node.format();
    if level == want_level {
        node.check_values(&sorted, &fs.ctx()).map_err(nerr)?;
        for k in sorted.iter(&node) {
            out.push(&k.unpack(&f), k.val(&f))?;
        }
        return Ok(());
    }
    if level == 0 {
        return Ok(());
    }
    for k in sorted.iter(&node) {
        let ck = k.unpack(&f);
        walk(dev, fs, btree, level - 1, &ck, k.val(&f), want_level, out)?;
    }
    Ok(())
}

/// Adds the counters of `delta` to those of `base` (same length; extra
/// counters of either are kept from `delta`).
fn accumulate(base: &[u8], delta: &[u8], out: &mut [u8]) {
    for (i, o) in out.chunks_exact_mut(8).enumerate() {
        let d = le64(delta, 8 * i);
        let b = le64(base, 8 * i);
        o.copy_from_slice(&d.wrapping_add(b).to_le_bytes());
    }
}

/// What [`list_btree`] printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListStats {
    /// Keys printed.
    pub keys: usize,
    /// Of those, keys whose newest version came from the journal.
    pub from_journal: usize,
}

/// Collects the keys of `btree` at `level` (0: the leaves), with the
/// journal's newer keys for that level applied (see the module notes), in
/// key order, `deleted` keys dropped.  A btree without a root has no keys.
///
/// Errors: [`ListError`] naming the node, jset or key at fault.
pub fn collect_btree<D: BlockDev + ?Sized>(
    dev: &D,
    fs: &FsInfo,
    journal: &Journal,
    btree: u32,
    level: u8,
) -> Result<KeyList, ListError> {
    let mut keys = KeyList::new();
    if let Some(r) = find_root(fs, journal, btree)? {
        if level <= r.level {
            let vlen = r.key.val_bytes().min(r.val.len());
            walk(dev, fs, btree, r.level, &r.key, &r.val[..vlen], level, &mut keys)?;
        }
    }
    // Journal keys for this btree and level (updates of interior nodes are
    // journaled with the node's level), in journal order.
    let mut jkeys = KeyList::new();
    {
        let magic = jset_magic(&fs.uuid);
        for j in journal.jsets.iter() {
            let js = Jset::parse(j, magic).map_err(ListError::Jset)?;
            for e in js.entries() {
                let e = e.map_err(ListError::Jset)?;
                let keyed = matches!(
                    EntryType::from_u8(e.ty),
                    Some(EntryType::BtreeKeys | EntryType::WriteBufferKeys)
                );
                if !keyed || u32::from(e.btree_id) != btree || e.level != level {
                    continue;
                }
                for k in e.keys() {
                    let k = k.map_err(ListError::Key)?;
                    jkeys.push(&k.unpack(&BkeyFormat::CURRENT), k.val(&BkeyFormat::CURRENT))?;
                }
            }
        }
    }
    // Journal keys sorted by position, then journal order.
    let mut order: Vec<(Bpos, u32)> = Vec::with_capacity(jkeys.offs.len())?;
    for i in 0..jkeys.offs.len() {
        order.push((jkeys.get(i).0.p, i as u32))?;
    }
    crate::util::sort::sort(&mut order);
    let accounting = btree == super::bkey::BtreeId::Accounting as u32;
    let mut out = KeyList::new();
    let mut scratch: Vec<u8> = Vec::new();
    let (mut bi, mut ji) = (0usize, 0usize);
    while bi < keys.offs.len() || ji < order.len() {
        let bpos = (bi < keys.offs.len()).then(|| keys.get(bi).0.p);
        let jpos = order.get(ji).map(|o| o.0);
        let pos = match (bpos, jpos) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        // The current key at `pos`: the btree's, then each journal key.
        let mut cur: Option<(Bkey, &[u8])> = None;
        let mut from_journal = false;
        if bpos == Some(pos) {
            cur = Some(keys.get(bi));
            bi += 1;
        }
        let mut owned: Option<(Bkey, usize)> = None;
        while order.get(ji).is_some_and(|o| o.0 == pos) {
            let (jk, jv) = jkeys.get(order[ji].1 as usize);
            ji += 1;
            if accounting {
                let (old_k, old_v) = match (&owned, cur) {
                    (Some((k, _)), _) => (Some(*k), &scratch[..]),
                    (None, Some((k, v))) => (Some(k), v),
                    (None, None) => (None, &[][..]),
                };
                if old_k.is_some_and(|ok| ok.version >= jk.version) {
                    continue;
                }
                let mut sum: Vec<u8> = Vec::new();
                sum.resize(jv.len(), 0)?;
                if old_k.is_some_and(|ok| ok.key_type == KeyType::Accounting as u8) {
                    accumulate(old_v, jv, &mut sum);
                } else {
                    sum.copy_from_slice(jv);
                }
                scratch = sum;
                owned = Some((jk, jv.len()));
            } else {
                cur = Some((jk, jv));
                owned = None;
            }
            from_journal = true;
        }
        let shown = match owned {
            Some((k, n)) => Some((k, &scratch[..n])),
            None => cur,
        };
        if let Some((k, v)) = shown {
            if !k.is_deleted() {
                out.push(&k, v)?;
                out.journal.push(from_journal)?;
            }
        }
    }
    Ok(out)
}

/// Lists the keys [`collect_btree`] collects, one per line in
/// bcachefs-tools' `list` format, printing values with the filesystem's
/// device facts.
///
/// Errors: as [`collect_btree`], and [`ListError::Fmt`].
pub fn list_btree<D: BlockDev + ?Sized>(
    dev: &D,
    fs: &FsInfo,
    journal: &Journal,
    btree: u32,
    level: u8,
    out: &mut dyn fmt::Write,
) -> Result<ListStats, ListError> {
    let keys = collect_btree(dev, fs, journal, btree, level)?;
    let ctx = fs.ctx();
    let mut stats = ListStats::default();
    for (i, (k, v)) in keys.iter().enumerate() {
        writeln!(out, "{}", KeyDisplay { k: &k, v, ctx: Some(&ctx) })?;
        stats.keys += 1;
        stats.from_journal += usize::from(keys.from_journal(i));
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::CsumType;
    use crate::format::btree_node::{write_node, NodeWriteOpts};
    use crate::format::jset::JsetBuilder;
    use crate::format::val::dirent::encode_dirent;
    use crate::format::version::VERSION_CURRENT;
    use std::cell::RefCell;
    use std::string::String;
    use std::vec::Vec as StdVec;

    /// A device in memory.
    struct MemDev(RefCell<StdVec<u8>>);

    impl BlockDev for MemDev {
        fn name(&self) -> &str {
            "mem"
        }
        fn nr_sectors(&self) -> u64 {
            (self.0.borrow().len() / SECTOR_SIZE) as u64
        }
        fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
            let d = self.0.borrow();
            let s = sector as usize * SECTOR_SIZE;
            let src = d.get(s..s + buf.len()).ok_or(Errno::EIO)?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    impl MemDev {
        fn write(&self, sector: u64, data: &[u8]) {
            self.write_at(sector as usize * SECTOR_SIZE, data);
        }

        fn write_at(&self, s: usize, data: &[u8]) {
            self.0.borrow_mut()[s..s + data.len()].copy_from_slice(data);
        }
    }

    const UUID: [u8; 16] = [7; 16];
    const BUCKET: u32 = 256; // sectors: 128 KiB

    fn fs() -> FsInfo {
        let mut devs = Vec::new();
        devs.push(Some(DevInfo { bucket_size: BUCKET, first_bucket: 1, nbuckets: 64, durability: 1, failed: false }))
            .unwrap();
        let mut jb: Vec<u64> = Vec::new();
        jb.push(2).unwrap();
        jb.push(3).unwrap();
        FsInfo {
            uuid: UUID,
            block_bytes: 4096,
            node_bytes: 64 * 1024,
            dev_idx: 0,
            devs,
            journal_buckets: jb,
            blacklist: Vec::new(),
            clean: Vec::new(),
        }
    }

    fn dirent(dir: u64, off: u64, name: &str, target: u64) -> (Bkey, StdVec<u8>) {
        let mut v = [0u8; 64];
        let n = encode_dirent(&mut v, target, 8, name.as_bytes()).unwrap();
        (Bkey::new(KeyType::Dirent, Bpos::new(dir, off, u32::MAX), n / 8), v[..n].to_vec())
    }

    fn node_opts(level: u8, seq: u64, min: Bpos, max: Bpos) -> NodeWriteOpts {
        NodeWriteOpts {
            btree_id: 2,
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
            node_bytes: 64 * 1024,
            bset_magic: bset_magic(&UUID),
        }
    }

    fn ptr_val(seq: u64, written: u16, min: Bpos, sector: u64) -> StdVec<u8> {
        let mut v = [0u8; 48];
        BtreePtrV2 { mem_ptr: 0, seq, sectors_written: written, flags: 0, min_key: min }.encode(&mut v).unwrap();
        v[40..].copy_from_slice(&ExtentPtr { offset: sector, ..Default::default() }.encode().to_le_bytes());
        v.to_vec()
    }

    #[test]
    fn lists_two_level_btree_with_journal_overlay() {
        let dev = MemDev(RefCell::new(std::vec![0u8; 64 * BUCKET as usize * SECTOR_SIZE]));
        let fs = fs();
        // Two leaves under one interior root.
        let split = Bpos::new(4096, 200, u32::MAX);
        let left: StdVec<_> = (0..5).map(|i| dirent(4096, 100 + i, &std::format!("a{i}"), 5000 + i)).collect();
        let right: StdVec<_> = (0..5).map(|i| dirent(4096, 300 + i, &std::format!("b{i}"), 6000 + i)).collect();
        let refs = |v: &StdVec<(Bkey, StdVec<u8>)>| v.iter().map(|(k, v)| (*k, v.clone())).collect::<StdVec<_>>();
        let l = refs(&left);
        let r = refs(&right);
        let lr: StdVec<(Bkey, &[u8])> = l.iter().map(|(k, v)| (*k, &v[..])).collect();
        let rr: StdVec<(Bkey, &[u8])> = r.iter().map(|(k, v)| (*k, &v[..])).collect();
        let lmin = Bpos::default();
        let rmin = split.successor().unwrap();
        let spos_max = Bpos::new(u64::MAX, u64::MAX, u32::MAX);
        let ln = write_node(&node_opts(0, 11, lmin, split), &lr).unwrap();
        let rn = write_node(&node_opts(0, 12, rmin, spos_max), &rr).unwrap();
        let (ls, rs) = (10 * BUCKET as u64, 11 * BUCKET as u64);
        dev.write(ls, &ln);
        dev.write(rs, &rn);
        let lp = ptr_val(11, (ln.len() / 512) as u16, lmin, ls);
        let rp = ptr_val(12, (rn.len() / 512) as u16, rmin, rs);
        let kl = Bkey::new(KeyType::BtreePtrV2, split, lp.len() / 8);
        let kr = Bkey::new(KeyType::BtreePtrV2, spos_max, rp.len() / 8);
        let root = write_node(&node_opts(1, 13, lmin, spos_max), &[(kl, &lp[..]), (kr, &rp[..])]).unwrap();
        let root_sector = 12 * BUCKET as u64;
        dev.write(root_sector, &root);
        let rootp = ptr_val(13, (root.len() / 512) as u16, lmin, root_sector);
        let rootk = Bkey::new(KeyType::BtreePtrV2, spos_max, rootp.len() / 8);
        // Journal: seq 1 has the root and a new dirent; seq 2 deletes a0.
        let magic = jset_magic(&UUID);
        let mut j1 = JsetBuilder::new(1, 1, VERSION_CURRENT, magic).unwrap();
        j1.add_keys(EntryType::BtreeRoot, 2, 1, &[(rootk, &rootp[..])]).unwrap();
        let (nk, nv) = dirent(4096, 250, "new", 7000);
        j1.add_keys(EntryType::BtreeKeys, 2, 0, &[(nk, &nv[..])]).unwrap();
        let j1 = j1.finish(CsumType::Crc32c, 4096).unwrap();
        let mut j2 = JsetBuilder::new(2, 1, VERSION_CURRENT, magic).unwrap();
        let del = Bkey { key_type: KeyType::Deleted as u8, ..left[0].0 };
        j2.add_keys(EntryType::BtreeKeys, 2, 0, &[(del, &[][..])]).unwrap();
        let j2 = j2.finish(CsumType::Crc32c, 4096).unwrap();
        dev.write(2 * BUCKET as u64, &j1);
        dev.write(2 * BUCKET as u64 + 8, &j2);
        let journal = read_journal(&dev, &fs).unwrap();
        assert_eq!(journal.jsets.len(), 2);
        assert_eq!((journal.last_seq, journal.blacklist_seq), (1, 3));
        let mut out = String::new();
        let st = list_btree(&dev, &fs, &journal, 2, 0, &mut out).unwrap();
        assert_eq!(st, ListStats { keys: 10, from_journal: 1 });
        let lines: StdVec<&str> = out.lines().collect();
        assert_eq!(lines[0], "u64s 7 type dirent 4096:101:U32_MAX len 0 ver 0: a1 -> 5001 type reg");
        assert!(lines.iter().any(|l| l.contains("new -> 7000")));
        assert!(!out.contains("a0 ->"));
        // Interior level: the two pointers.
        let mut out = String::new();
        let st = list_btree(&dev, &fs, &journal, 2, 1, &mut out).unwrap();
        assert_eq!(st.keys, 2);
        assert!(out.contains("type btree_ptr_v2 4096:200:U32_MAX"), "{out}");
        assert!(out.contains("durability: 1 ptr: 0:10:0 gen 0"), "{out}");
        // A btree with no root lists nothing.
        let mut out = String::new();
        assert_eq!(list_btree(&dev, &fs, &journal, 1, 0, &mut out).unwrap().keys, 0);
        // A corrupted leaf is reported with its location.
        dev.write_at(rs as usize * SECTOR_SIZE + 200, &[0xff; 16]);
        let mut out = String::new();
        let e = list_btree(&dev, &fs, &journal, 2, 0, &mut out).unwrap_err();
        assert!(matches!(e, ListError::Node { level: 0, sector, err: NodeError::BadCsum { .. }, .. } if sector == rs), "{e}");
    }

    #[test]
    fn accounting_journal_keys_are_deltas() {
        assert_eq!(
            {
                let mut o = [0u8; 16];
                accumulate(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0], &[5, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], &mut o);
                o
            },
            [6, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
