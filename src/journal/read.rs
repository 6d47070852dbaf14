// SPDX-License-Identifier: GPL-2.0
//! The journal, read side: find every jset in the journal buckets the
//! superblock names, keep the replay range (`last_seq` to the newest flush
//! write, blacklisted sequence numbers dropped), and take the btree roots
//! from it (or from the superblock's `clean` section).
//!
//! Matches, in `fs/bcachefs`: `journal_io.c` (`bch2_journal_read()`,
//! `journal_read_bucket()`, `jset_validate()`) and the root handling of
//! `recovery.c` (`journal_replay_entry_early()`, `read_btree_roots()`).
//! The bucket scan, the per-jset checks and the sequence rules themselves
//! are on-disk format ([`crate::format::jset`]); this module applies them
//! to a device.
//!
//! This code used to live in `format/list.rs`, beside a second btree
//! reader used only by the tool; `format::list` re-exports it under the old
//! names.

use core::fmt;

use crate::bcachefs::FsInfo;
use crate::errcode::{AllocError, Errno};
use crate::format::bkey::{Bkey, BkeyFormat, KeyError, BTREE_ID_NR};
use crate::format::jset::{
    iter_entries, jset_magic, replay_range, scan_bucket, EntryType, Jset, JsetError, JsetHeaderInfo, JSET_BYTES,
};
use crate::platform::{BlockDev, Vec, SECTOR_SIZE};

/// Number of btrees of 6.12 (`BTREE_ID_NR`), as an array length.
pub const NR_BTREES: usize = BTREE_ID_NR as usize;

/// Most journal buckets [`FsInfo::from_sb`] accepts (C allows at most
/// `UINT_MAX`, but real journals have thousands).
pub const MAX_JOURNAL_BUCKETS: u64 = 1 << 20;

/// Why the journal (or the roots in it) could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalReadError {
    /// A journal bucket could not be read.
    Io(Errno),
    /// A jset is unusable, or the sequence numbers break the replay rules.
    Jset(JsetError),
    /// A key of a `btree_root` entry is unusable.
    Key(KeyError),
    /// Superblock fields the journal read needs are missing or odd.
    BadGeometry(&'static str),
    /// Out of memory.
    NoMem,
}

impl From<AllocError> for JournalReadError {
    fn from(_: AllocError) -> JournalReadError {
        JournalReadError::NoMem
    }
}

impl JournalReadError {
    /// The error number: the read's or the jset's, `EUCLEAN` for bad
    /// geometry, `ENOMEM`.
    pub fn errno(&self) -> Errno {
        match self {
            JournalReadError::Io(e) => *e,
            JournalReadError::Jset(e) => e.errno(),
            JournalReadError::Key(e) => e.errno(),
            JournalReadError::BadGeometry(_) => Errno::EUCLEAN,
            JournalReadError::NoMem => Errno::ENOMEM,
        }
    }
}

impl fmt::Display for JournalReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            JournalReadError::Io(e) => write!(f, "read error: {e}"),
            JournalReadError::Jset(e) => write!(f, "journal: {e}"),
            JournalReadError::Key(e) => write!(f, "key: {e}"),
            JournalReadError::BadGeometry(w) => write!(f, "superblock: {w}"),
            JournalReadError::NoMem => f.write_str("out of memory"),
        }
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

fn read_bytes<D: BlockDev + ?Sized>(dev: &D, sector: u64, bytes: usize) -> Result<Vec<u8>, JournalReadError> {
    let mut buf: Vec<u8> = Vec::new();
    buf.resize(bytes.div_ceil(SECTOR_SIZE) * SECTOR_SIZE, 0)?;
    dev.read_sectors(sector, &mut buf).map_err(JournalReadError::Io)?;
    Ok(buf)
}

/// Reads every journal bucket of the device, keeps one copy of each
/// sequence number (one with a good checksum if any), applies the replay
/// rules and checks each jset to be replayed (`jset_validate()`).
///
/// Errors: [`JournalReadError::Io`] when a bucket cannot be read,
/// [`JournalReadError::Jset`] when a jset of the replay range is corrupt
/// or the sequence numbers break the rules, `BadGeometry` without a member
/// entry for the device, `NoMem`.
pub fn read_journal<D: BlockDev + ?Sized>(dev: &D, fs: &FsInfo) -> Result<Journal, JournalReadError> {
    let d = *fs.this_dev().ok_or(JournalReadError::BadGeometry("no member entry for this device"))?;
    let bucket_bytes = d.bucket_size as usize * SECTOR_SIZE;
    let magic = jset_magic(&fs.uuid);
    let mut jsets: Vec<Vec<u8>> = Vec::new();
    let mut info: Vec<JsetHeaderInfo> = Vec::new();
    for &b in fs.journal_buckets.iter() {
        let sector = b
            .checked_mul(u64::from(d.bucket_size))
            .ok_or(JournalReadError::BadGeometry("journal bucket"))?;
        let buf = read_bytes(dev, sector, bucket_bytes)?;
        let found = scan_bucket(&buf, magic, fs.block_bytes as usize).map_err(JournalReadError::Jset)?;
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
    let Some(r) = replay_range(&info, &fs.blacklist).map_err(JournalReadError::Jset)? else {
        return Ok(Journal { jsets: Vec::new(), last_seq: 0, blacklist_seq: 0 });
    };
    let mut out: Vec<Vec<u8>> = Vec::new();
    let ctx = fs.ctx();
    for &i in r.replay.iter() {
        let j = core::mem::take(&mut jsets[i]);
        {
            let js = Jset::parse(&j, magic).map_err(JournalReadError::Jset)?;
            js.verify_csum().map_err(JournalReadError::Jset)?;
            js.validate(&ctx).map_err(JournalReadError::Jset)?;
        }
        out.push(j)?;
    }
    Ok(Journal { jsets: out, last_seq: r.last_seq, blacklist_seq: r.blacklist_seq })
}

/// A btree root: the pointer to the root node and the node's level
/// (C's `struct btree_root` as `read_btree_roots()` fills it).
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
///
/// Errors: [`JournalReadError::Jset`], [`JournalReadError::Key`] for a
/// malformed entry.
pub fn find_root(fs: &FsInfo, journal: &Journal, btree_id: u32) -> Result<Option<Root>, JournalReadError> {
    fn scan(data: &[u8], btree_id: u32, root: &mut Option<Root>) -> Result<(), JournalReadError> {
        for e in iter_entries(data, 0) {
            let e = e.map_err(JournalReadError::Jset)?;
            if e.ty != EntryType::BtreeRoot as u8 || u32::from(e.btree_id) != btree_id {
                continue;
            }
            if let Some(k) = e.keys().next() {
                let k = k.map_err(JournalReadError::Key)?;
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
        let js = Jset::parse(j, magic).map_err(JournalReadError::Jset)?;
        scan(&js.bytes()[JSET_BYTES..], btree_id, &mut root)?;
    }
    if root.is_none() {
        scan(&fs.clean, btree_id, &mut root)?;
    }
    Ok(root)
}

/// The newest root of every btree, indexed by btree id
/// (`read_btree_roots()`): see [`find_root`].  `None` for a btree without
/// one.  On the heap: kernel stacks are small.
///
/// Errors: as [`find_root`]; [`JournalReadError::NoMem`].
pub fn btree_roots(fs: &FsInfo, j: &Journal) -> Result<Vec<Option<Root>>, JournalReadError> {
    let mut roots: Vec<Option<Root>> = Vec::with_capacity(NR_BTREES)?;
    for i in 0..NR_BTREES {
        roots.push(find_root(fs, j, i as u32)?)?;
    }
    Ok(roots)
}

/// The journal as read at mount.
pub struct JournalRead {
    /// The jsets of the replay range, in sequence order.
    pub journal: Journal,
    /// Sequence number of the oldest jset kept (0 when empty).
    pub seq_first: u64,
    /// Sequence number of the newest jset kept (0 when empty).
    pub seq_last: u64,
    /// Journal buckets scanned.
    pub buckets: usize,
    /// 512-byte sectors read while scanning.
    pub sectors_read: u64,
    /// Blacklisted sequence ranges from the superblock, `[start, end)`.
    pub blacklist: Vec<(u64, u64)>,
    /// Jsets in the replay range (kept when `journal.jsets` is dropped).
    pub nr_jsets: usize,
}

/// Reads the journal of the device (`bch2_journal_read()`): every bucket
/// listed in the superblock, each jset checked (magic, checksum, version,
/// entries), the replay range chosen; see [`read_journal`].
///
/// Errors: as [`read_journal`].
pub fn read<D: BlockDev + ?Sized>(dev: &D, fs: &FsInfo) -> Result<JournalRead, JournalReadError> {
    let journal = read_journal(dev, fs)?;
    let magic = jset_magic(&fs.uuid);
    let (mut seq_first, mut seq_last) = (0u64, 0u64);
    for j in journal.jsets.iter() {
        let js = Jset::parse(j, magic).map_err(JournalReadError::Jset)?;
        let s = js.header.seq;
        if seq_first == 0 || s < seq_first {
            seq_first = s;
        }
        seq_last = seq_last.max(s);
    }
    let bucket_sectors = fs.this_dev().map_or(0, |d| u64::from(d.bucket_size));
    let mut blacklist: Vec<(u64, u64)> = Vec::new();
    blacklist.extend_from_slice(&fs.blacklist)?;
    Ok(JournalRead {
        seq_first,
        seq_last,
        buckets: fs.journal_buckets.len(),
        sectors_read: bucket_sectors.saturating_mul(fs.journal_buckets.len() as u64),
        blacklist,
        nr_jsets: journal.jsets.len(),
        journal,
    })
}

impl JournalRead {
    /// Prints what sysfs `journal_debug` shows: the sequence range read,
    /// `last_seq`, the blacklist and the buckets.
    pub fn to_text(&self, f: &mut dyn fmt::Write, nr_keys: usize) -> fmt::Result {
        writeln!(f, "seq range:\t{}-{}", self.seq_first, self.seq_last)?;
        writeln!(f, "last_seq:\t{}", self.journal.last_seq)?;
        writeln!(f, "blacklist_seq:\t{}", self.journal.blacklist_seq)?;
        writeln!(f, "jsets:\t\t{}", self.nr_jsets)?;
        writeln!(f, "journal keys:\t{nr_keys}")?;
        writeln!(f, "buckets:\t{}", self.buckets)?;
        f.write_str("blacklist:")?;
        if self.blacklist.is_empty() {
            f.write_str("\t(none)")?;
        }
        for &(s, e) in self.blacklist.iter() {
            write!(f, " {s}-{e}")?;
        }
        writeln!(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::CsumType;
    use crate::format::bkey::KeyType;
    use crate::format::bpos::{POS_MIN, SPOS_MAX};
    use crate::format::jset::{JsetBuilder, JsetHeader};
    use crate::format::val::extent::{BtreePtrV2, ExtentEntries, ExtentEntry, ExtentPtr};
    use crate::format::val::DevInfo;
    use crate::format::version::VERSION_CURRENT;
    use crate::platform::{MemImage, WriteFlags};
    use std::string::{String, ToString};
    use std::vec::Vec as StdVec;

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

    fn dev() -> crate::platform::RecDev {
        crate::platform::RecDev::new("mem", MemImage::zeroed(64 * u64::from(BUCKET)))
    }

    /// A root pointer to a node at `sector`, tagged by `seq`.
    fn root_ptr(seq: u64, sector: u64) -> (Bkey, StdVec<u8>) {
        let mut v = [0u8; 48];
        BtreePtrV2 { mem_ptr: 0, seq, sectors_written: 8, flags: 0, min_key: POS_MIN }.encode(&mut v).unwrap();
        v[40..].copy_from_slice(&ExtentPtr { offset: sector, ..Default::default() }.encode().to_le_bytes());
        (Bkey::new(KeyType::BtreePtrV2, SPOS_MAX, 6), v.to_vec())
    }

    fn jset(seq: u64, last_seq: u64, roots: &[(u8, u8, u64)]) -> StdVec<u8> {
        let mut j = JsetBuilder::new(seq, last_seq, VERSION_CURRENT, jset_magic(&UUID)).unwrap();
        for &(btree, level, sector) in roots {
            let (k, v) = root_ptr(seq, sector);
            j.add_keys(EntryType::BtreeRoot, btree, level, &[(k, &v[..])]).unwrap();
        }
        j.finish(CsumType::Crc32c, 4096).unwrap().to_vec()
    }

    fn put(d: &crate::platform::RecDev, sector: u64, data: &[u8]) {
        d.write_sectors(sector, data, WriteFlags::NONE).unwrap();
    }

    fn root_sector(r: &Root) -> u64 {
        match ExtentEntries::new(&r.val[40..48]).next() {
            Some(Ok(ExtentEntry::Ptr(p))) => p.offset,
            e => panic!("not a pointer: {e:?}"),
        }
    }

    #[test]
    fn reads_the_replay_range_and_the_newest_roots() {
        let d = dev();
        let fs = fs();
        let b2 = 2 * u64::from(BUCKET);
        // Bucket 2: seqs 1 and 2; bucket 3: seq 3.  Dirents' root moves.
        put(&d, b2, &jset(1, 1, &[(2, 0, 1000), (1, 1, 2000)]));
        put(&d, b2 + 8, &jset(2, 1, &[(2, 0, 1100)]));
        put(&d, b2 + u64::from(BUCKET), &jset(3, 2, &[]));
        let j = read_journal(&d, &fs).unwrap();
        assert_eq!((j.jsets.len(), j.last_seq, j.blacklist_seq), (2, 2, 4));
        // Seq 1 is older than last_seq: not replayed, its roots not seen.
        let r = find_root(&fs, &j, 2).unwrap().unwrap();
        assert_eq!((r.btree_id, r.level, root_sector(&r)), (2, 0, 1100));
        assert_eq!(find_root(&fs, &j, 1).unwrap(), None);
        let roots = btree_roots(&fs, &j).unwrap();
        assert_eq!(roots.len(), NR_BTREES);
        assert_eq!(roots.iter().filter(|r| r.is_some()).count(), 1);

        let jr = read(&d, &fs).unwrap();
        assert_eq!((jr.seq_first, jr.seq_last, jr.nr_jsets, jr.buckets), (2, 3, 2, 2));
        assert_eq!(jr.sectors_read, 2 * u64::from(BUCKET));
        let mut s = String::new();
        jr.to_text(&mut s, 5).unwrap();
        assert_eq!(
            s,
            "seq range:\t2-3\nlast_seq:\t2\nblacklist_seq:\t4\njsets:\t\t2\njournal keys:\t5\nbuckets:\t2\nblacklist:\t(none)\n"
        );
    }

    #[test]
    fn roots_fall_back_to_the_clean_section() {
        let d = dev();
        let mut fs = fs();
        let j = jset(9, 9, &[(4, 2, 3000)]);
        let h = JsetHeader::decode(&j).unwrap();
        fs.clean.extend_from_slice(&j[JSET_BYTES..h.bytes()]).unwrap();
        // An empty journal.
        let journal = read_journal(&d, &fs).unwrap();
        assert_eq!((journal.jsets.len(), journal.last_seq), (0, 0));
        let r = find_root(&fs, &journal, 4).unwrap().unwrap();
        assert_eq!((r.level, root_sector(&r)), (2, 3000));
        // The journal's root wins over the clean section's.
        put(&d, 2 * u64::from(BUCKET), &jset(10, 10, &[(4, 1, 3100)]));
        let journal = read_journal(&d, &fs).unwrap();
        assert_eq!(root_sector(&find_root(&fs, &journal, 4).unwrap().unwrap()), 3100);
    }

    #[test]
    fn a_bad_copy_is_replaced_by_a_good_one() {
        let d = dev();
        let fs = fs();
        let (b2, b3) = (2 * u64::from(BUCKET), 3 * u64::from(BUCKET));
        let good = jset(5, 5, &[(2, 0, 2560)]);
        let mut bad = good.clone();
        bad[100] ^= 0xff;
        put(&d, b2, &bad);
        put(&d, b3, &good);
        let j = read_journal(&d, &fs).unwrap();
        assert_eq!(j.jsets.len(), 1);
        let n = JsetHeader::decode(&good).unwrap().bytes();
        assert!(j.jsets[0][..] == good[..n], "the good copy is kept");
        // With only the bad copy, the newest flush is torn: nothing to replay.
        put(&d, b3, &[0; 4096]);
        let e = read_journal(&d, &fs).err().unwrap();
        assert!(matches!(e, JournalReadError::Jset(JsetError::NoFlushEntries)), "{e}");
        assert_eq!(e.errno(), JsetError::NoFlushEntries.errno());
    }

    #[test]
    fn errors_name_what_failed() {
        // A device too small for the journal buckets.
        let d = crate::platform::RecDev::zeroed("tiny", 2 * u64::from(BUCKET));
        let e = read_journal(&d, &fs()).err().unwrap();
        assert_eq!(e, JournalReadError::Io(Errno::EIO));
        assert_eq!(e.to_string(), "read error: EIO");
        // No member entry for the device.
        let mut f = fs();
        f.dev_idx = 3;
        let e = read_journal(&dev(), &f).err().unwrap();
        assert_eq!(e.to_string(), "superblock: no member entry for this device");
        assert_eq!(e.errno(), Errno::EUCLEAN);
        assert_eq!(JournalReadError::from(AllocError).errno(), Errno::ENOMEM);
    }
}
