// SPDX-License-Identifier: GPL-2.0
//! The filesystem, opened read-only (`struct bch_fs`; `bch2_fs_open()` in
//! `super.c` and the read half of `bch2_fs_recovery()` in `recovery.c`).
//!
//! Open: the superblock (a backup when the primary is bad), the journal
//! ([`crate::journal`]), the btree roots, the journal keys
//! ([`crate::recovery`]); then reads go through the node cache and
//! iterators of [`crate::btree`].  Read-only: nothing is ever written.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::btree::{BtreeCache, BtreeCtx, BtreeIter};
use crate::errcode::{AllocError, Errno};
use crate::format::bkey::BtreeId;
use crate::format::bpos::Bpos;
use crate::format::sb::{read_super, FieldType, Sb, SbError, SB_SECTOR};
use crate::format::sb_members::MemberFlag;
use crate::format::sb_opts::{sb_opt, SbFlag};
use crate::format::val::{DevInfo, FsCtx};
use crate::fs_common::{recalc_capacity, BtreeRead, FsFacts, OwnedKey};
use crate::journal::{self, JournalRead, JournalReadError, Root, MAX_JOURNAL_BUCKETS};
use crate::platform::{arc_new, log, Arc, BlockDev, Vec, SECTOR_SIZE};
use crate::recovery::JournalKeys;
use crate::util::le::le64;

/// Mount options the read side acts on (parsed by `crate::opts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOpts {
    /// `norecovery`: do not overlay the journal (read the btrees as the
    /// nodes have them).
    pub norecovery: bool,
    /// `verbose`: log each step of the mount.
    pub verbose: bool,
    /// `degraded`: accepted; meaningless on one device.
    pub degraded: bool,
    /// Upper bound of the btree node cache, bytes.
    pub btree_cache_max_bytes: usize,
}

impl Default for OpenOpts {
    fn default() -> Self {
        OpenOpts { norecovery: false, verbose: false, degraded: false, btree_cache_max_bytes: 64 << 20 }
    }
}

/// Why a mount failed.  `Display` names what is wrong (the caller prefixes
/// the device name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not written yet (kept for the skeleton's users; never returned).
    NotYet,
    /// No usable superblock: not bcachefs, or every copy is bad.
    Sb(SbError),
    /// The superblock's geometry is unusable (block, node or bucket size,
    /// journal buckets, member entry).
    Geometry(&'static str),
    /// More than one member device.
    MultiDevice(u8),
    /// The filesystem is encrypted.
    Encrypted,
    /// The filesystem was formatted but never mounted: its first mount
    /// initializes it (`bch2_fs_initialize()`), which writes.
    Uninitialized,
    /// The filesystem block size is smaller than the device's logical
    /// block size (bytes).
    BlockSize {
        /// Filesystem block size.
        fs: u32,
        /// Device logical block size.
        dev: u32,
    },
    /// The device is smaller than the member's buckets say
    /// (`device_size_too_small` in `__bch2_dev_attach_bdev()`): a truncated
    /// copy.  512-byte sectors.
    DeviceTooSmall {
        /// Sectors the device has.
        have: u64,
        /// Sectors `nbuckets * bucket_size` needs.
        need: u64,
    },
    /// The journal could not be read or is corrupt.
    Journal(JournalReadError),
    /// Out of memory.
    NoMem,
}

impl From<AllocError> for OpenError {
    fn from(_: AllocError) -> Self {
        OpenError::NoMem
    }
}

impl OpenError {
    /// The errno the mount returns: `EINVAL` (not bcachefs / bad
    /// superblock), `EOPNOTSUPP` (multi-device, encrypted, unsupported
    /// feature), `EIO` (read errors), `EUCLEAN` (corrupt metadata),
    /// `ENOMEM`.
    pub fn errno(&self) -> Errno {
        match self {
            OpenError::NotYet => Errno::EOPNOTSUPP,
            OpenError::Sb(e) => match e.errno() {
                Errno::EIO | Errno::ENOMEM => e.errno(),
                _ => Errno::EINVAL,
            },
            OpenError::Geometry(_) | OpenError::BlockSize { .. } | OpenError::DeviceTooSmall { .. } => Errno::EINVAL,
            OpenError::MultiDevice(_) | OpenError::Encrypted | OpenError::Uninitialized => Errno::EOPNOTSUPP,
            OpenError::Journal(JournalReadError::Io(_)) => Errno::EIO,
            OpenError::Journal(JournalReadError::NoMem) | OpenError::NoMem => Errno::ENOMEM,
            OpenError::Journal(e) => match e.errno() {
                Errno::EOPNOTSUPP => Errno::EOPNOTSUPP,
                _ => Errno::EUCLEAN,
            },
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotYet => f.write_str("not implemented yet"),
            OpenError::Sb(e) => write!(f, "superblock: {e}"),
            OpenError::Geometry(w) => write!(f, "superblock: {w}"),
            OpenError::MultiDevice(n) => {
                write!(f, "{n} member devices: multi-device filesystems are not supported yet")
            }
            OpenError::Encrypted => f.write_str("encrypted filesystems are not supported"),
            OpenError::Uninitialized => f.write_str(
                "filesystem never mounted: its first mount initializes it, and read-write mounts are not supported yet",
            ),
            OpenError::BlockSize { fs, dev } => write!(
                f,
                "filesystem block size {fs} is smaller than the device's logical block size {dev}"
            ),
            OpenError::DeviceTooSmall { have, need } => {
                write!(f, "device too small: {have} sectors, the superblock's buckets need {need} (truncated?)")
            }
            OpenError::Journal(e) => write!(f, "error reading the journal: {e}"),
            OpenError::NoMem => f.write_str("out of memory"),
        }
    }
}

/// What the read side needs to know about the filesystem from its
/// superblock: the parts of C's `struct bch_fs` (`c->sb`, the btree node
/// size) and `struct bch_dev` (`ca->mi`, the journal buckets, the
/// blacklist table) that the journal read, the node cache, the iterators
/// and the value checks use.  Built once per open by [`FsInfo::from_sb`].
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
    /// Collects what the read side needs from a (validated) superblock.
    ///
    /// Errors: [`OpenError::Geometry`] for a missing or unusable block or
    /// node size, or more than [`MAX_JOURNAL_BUCKETS`] journal buckets;
    /// [`OpenError::NoMem`].
    pub fn from_sb(sb: &Sb<'_>) -> Result<FsInfo, OpenError> {
        let opt = |n| sb_opt(n).map(|o| sb.opt(o));
        let block_bytes = u32::from(sb.block_size()) * SECTOR_SIZE as u32;
        let node_bytes = opt("btree_node_size").ok_or(OpenError::Geometry("no btree_node_size"))?;
        let node_bytes = u32::try_from(node_bytes).map_err(|_| OpenError::Geometry("block or btree node size"))?;
        if block_bytes == 0 || node_bytes < block_bytes {
            return Err(OpenError::Geometry("block or btree node size"));
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
        let too_many = OpenError::Geometry("more journal buckets than this reader takes");
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

    /// The member entry of the device read, if there is one.
    pub fn this_dev(&self) -> Option<&DevInfo> {
        self.devs.get(self.dev_idx as usize).and_then(|d| d.as_ref())
    }
}

/// What the filesystem operations need to know of the superblock
/// ([`FsFacts`]): block size in bytes, the time base and precision, the
/// capacity in 512-byte sectors as `bch2_recalc_capacity()` computes it,
/// and the bucket size of member `d`.  Shared by the read-only and the
/// read-write open.
pub fn fs_facts(sb: &Sb<'_>, info: &FsInfo, d: &DevInfo) -> FsFacts {
    FsFacts {
        block_bytes: u32::from(sb.block_size()) * SECTOR_SIZE as u32,
        // C keeps the base in time units: the superblock has it in ns.
        time_base_lo: sb.time_base_lo() / u64::from(sb.time_precision().max(1)),
        time_precision_ns: sb.time_precision(),
        capacity_sectors: recalc_capacity(
            d.nbuckets,
            d.first_bucket,
            d.bucket_size,
            info.node_bytes / SECTOR_SIZE as u32,
            sb_opt("gc_reserve_percent").map_or(8, |o| sb.opt(o)) as u8,
            sb_opt("gc_reserve_bytes").map_or(0, |o| sb.opt(o)),
        ),
        bucket_sectors: d.bucket_size,
    }
}

/// Per-device I/O counters (sysfs `dev-0/io_done`), in 512-byte sectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoDone {
    /// Superblock reads.
    pub sb: u64,
    /// Journal reads.
    pub journal: u64,
    /// Btree node reads.
    pub btree: u64,
    /// File data reads.
    pub user: u64,
}

/// The I/O counters, atomics.
#[derive(Default)]
struct IoCounters {
    sb: AtomicU64,
    journal: AtomicU64,
    user: AtomicU64,
}

/// An open, read-only filesystem on one device.
///
/// `Sync` when `D` is: shared state changes only through the node cache's
/// lock, the node six locks and atomics.
pub struct Fs<D: BlockDev> {
    dev: D,
    facts: FsFacts,
    sb: Vec<u8>,
    user_uuid: [u8; 16],
    /// Boxed (as the roots below): `FsInfo` holds every member slot, too
    /// big to move around kernel stacks.
    info: Arc<FsInfo>,
    roots: Vec<Option<Root>>,
    journal: JournalRead,
    keys: JournalKeys,
    cache: BtreeCache,
    io: IoCounters,
    opts: OpenOpts,
}

impl<D: BlockDev> Fs<D> {
    /// Reads and validates the superblock (falling back to a backup), the
    /// journal and the btree roots, and sorts the journal keys for the
    /// overlay (`bch2_fs_open()` + `bch2_fs_recovery()` up to replay).
    /// Nothing is written.
    ///
    /// Errors: [`OpenError`]: superblock unusable or not bcachefs,
    /// several devices, encryption, block size below the device's,
    /// journal unreadable, required btree roots missing, out of memory.
    pub fn open(dev: D, opts: &OpenOpts) -> Result<Fs<D>, OpenError> {
        let name = dev.name();
        let sbr = read_super(&dev).map_err(OpenError::Sb)?;
        let sb = sbr.sb();
        if sbr.sector != SB_SECTOR {
            log::warn!("{name}: primary superblock unusable, using the backup at sector {}", sbr.sector);
        }
        let io = IoCounters::default();
        io.sb.fetch_add(sb.bytes().len().div_ceil(SECTOR_SIZE) as u64, Relaxed);
        let nr_devs = sb.nr_devices().max(sb.nr_alive_devices().min(255) as u8);
        if nr_devs > 1 {
            return Err(OpenError::MultiDevice(nr_devs));
        }
        if sb.field(FieldType::Crypt).is_some() || sb.flag(SbFlag::EncryptionType) != 0 {
            return Err(OpenError::Encrypted);
        }
        let block_bytes = u32::from(sb.block_size()) * SECTOR_SIZE as u32;
        let lbs = dev.logical_block_size();
        if block_bytes < lbs {
            return Err(OpenError::BlockSize { fs: block_bytes, dev: lbs });
        }
        let info = arc_new(FsInfo::from_sb(&sb)?)?;
        let d = *info.this_dev().ok_or(OpenError::Geometry("no member entry for this device"))?;
        if d.bucket_size == 0 || d.nbuckets <= d.first_bucket {
            return Err(OpenError::Geometry("bucket size or number of buckets"));
        }
        let need = d.nbuckets.saturating_mul(u64::from(d.bucket_size));
        if dev.nr_sectors() < need {
            return Err(OpenError::DeviceTooSmall { have: dev.nr_sectors(), need });
        }
        if sb.flag(SbFlag::Initialized) == 0 {
            return Err(OpenError::Uninitialized);
        }
        let facts = fs_facts(&sb, &info, &d);
        if opts.verbose {
            log::info!("{name}: superblock read at sector {}, block size {block_bytes}", sbr.sector);
        }

        let mut journal = journal::read(&dev, &info).map_err(OpenError::Journal)?;
        io.journal.fetch_add(journal.sectors_read, Relaxed);
        // A btree without a root is empty, as C's read_btree_roots() makes
        // it (bch2_btree_root_alloc_fake()): a volume whose extents btree
        // never got a key has no extents root.  The iterators read such a
        // btree as its journal keys alone.
        let roots = journal::btree_roots(&info, &journal.journal).map_err(OpenError::Journal)?;
        if opts.verbose {
            let missing = roots.iter().filter(|r| r.is_none()).count();
            log::info!("{name}: {missing} btrees have no root (empty)");
        }
        let keys = if opts.norecovery {
            JournalKeys::empty()
        } else {
            JournalKeys::build(&info, &journal.journal).map_err(OpenError::Journal)?
        };
        if opts.verbose {
            log::info!(
                "{name}: journal seq {}-{}, last_seq {}, {} journal keys ({} read){}",
                journal.seq_first,
                journal.seq_last,
                journal.journal.last_seq,
                keys.len(),
                keys.nr_read,
                if opts.norecovery { ", norecovery: not overlaid" } else { "" }
            );
        }
        // The jsets themselves are not needed any more.
        journal.nr_jsets = journal.journal.jsets.len();
        journal.journal.jsets = Vec::new();

        let mut sb_copy: Vec<u8> = Vec::new();
        sb_copy.extend_from_slice(sb.bytes())?;
        let user_uuid = sb.user_uuid();
        Ok(Fs {
            facts,
            sb: sb_copy,
            user_uuid,
            info,
            roots,
            journal,
            keys,
            cache: BtreeCache::new(opts.btree_cache_max_bytes)?,
            io,
            opts: *opts,
            dev,
        })
    }

    /// The device.
    pub fn dev(&self) -> &D {
        &self.dev
    }

    /// External (user-visible) uuid: the sysfs directory name.
    pub fn user_uuid(&self) -> [u8; 16] {
        self.user_uuid
    }

    /// The superblock bytes (parse with `format::sb::Sb::parse`).
    pub fn sb_bytes(&self) -> &[u8] {
        &self.sb
    }

    /// The options the filesystem was opened with.
    pub fn opts(&self) -> &OpenOpts {
        &self.opts
    }

    /// Number of journal keys overlaid (0 with `norecovery`).
    pub fn nr_journal_keys(&self) -> usize {
        self.keys.len()
    }

    /// The level of `btree`'s root, `None` when it has none.
    pub fn root_level(&self, btree: BtreeId) -> Option<u8> {
        self.roots.get(btree as usize).copied().flatten().map(|r| r.level)
    }

    /// What an iterator reads from.
    pub fn btree_ctx(&self) -> BtreeCtx<'_, D> {
        BtreeCtx { dev: &self.dev, info: &self.info, cache: &self.cache, roots: &self.roots, keys: &self.keys }
    }

    /// An iterator over the leaves of `btree` (journal overlaid) from
    /// `pos`; `whiteouts`: also return whiteout keys.
    pub fn iter(&self, btree: BtreeId, pos: Bpos, whiteouts: bool) -> BtreeIter<'_, D> {
        BtreeIter::new(self.btree_ctx(), btree, pos, whiteouts)
    }

    /// Bytes held by the btree node cache.
    pub fn btree_cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Nodes in the btree node cache that [`Fs::btree_cache_shrink`] could free.
    pub fn btree_cache_count(&self) -> usize {
        self.cache.count()
    }

    /// Frees up to `nr` unlocked, least recently used nodes; returns how
    /// many were freed.
    pub fn btree_cache_shrink(&self, nr: usize) -> usize {
        self.cache.shrink(nr)
    }

    /// I/O done on the device so far.
    pub fn io_done(&self) -> IoDone {
        IoDone {
            sb: self.io.sb.load(Relaxed),
            journal: self.io.journal.load(Relaxed),
            btree: self.cache.sectors_read.load(Relaxed),
            user: self.io.user.load(Relaxed),
        }
    }

    /// sysfs `journal_debug`: seq range read, last_seq, blacklist, buckets.
    pub fn journal_debug_to_text(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        self.journal.to_text(f, self.keys.len())
    }
}

impl<D: BlockDev> BtreeRead for Fs<D> {
    fn peek_upto(&self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<OwnedKey>, Errno> {
        if from > to {
            return Ok(None);
        }
        let mut it = self.iter(btree, from, whiteouts);
        it.peek_max(to)
    }

    fn read_data(&self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if dev != self.info.dev_idx {
            return Err(Errno::EOPNOTSUPP);
        }
        self.dev.read_sectors(sector, buf)?;
        self.io.user.fetch_add((buf.len() / SECTOR_SIZE) as u64, Relaxed);
        Ok(())
    }

    /// All of `reads` in flight at once ([`BlockDev::read_sectors_many`]);
    /// sectors counted as [`Self::read_data`] does, for the reads that
    /// succeed.
    fn read_data_many(&self, reads: &mut [crate::platform::DevRead<'_>]) {
        if reads.iter().any(|r| r.dev != self.info.dev_idx) {
            for r in reads.iter_mut() {
                r.result = self.read_data(r.dev, r.sector, r.buf);
            }
            return;
        }
        self.dev.read_sectors_many(reads);
        let done: u64 = reads.iter().filter(|r| r.result.is_ok()).map(|r| (r.buf.len() / SECTOR_SIZE) as u64).sum();
        self.io.user.fetch_add(done, Relaxed);
    }

    fn dev_name(&self) -> &str {
        self.dev.name()
    }

    fn facts(&self) -> &FsFacts {
        &self.facts
    }
}

/// `Fs` is shared between kernel threads: it must be `Send` and `Sync`
/// whenever its device is.
#[allow(dead_code)]
fn fs_is_send_and_sync<D: BlockDev + Send + Sync>() {
    fn check<T: Send + Sync>() {}
    check::<Fs<D>>();
}
