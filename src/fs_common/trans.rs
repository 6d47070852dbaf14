// SPDX-License-Identifier: GPL-2.0
//! The transaction the write operations run on: what `fs-common.c`,
//! `inode.c`, `dirent.c`, `xattr.c` and `io_write.c` need from a
//! `struct btree_trans` and from `trans->c`.
//!
//! An operation is a closure over a [`BtreeTransOps`] that reads (seeing
//! the transaction's own pending updates, as `BTREE_ITER_with_updates`
//! does in C) and queues updates; [`commit_do`] runs it, commits, and runs
//! it again from the start whenever it or the commit returns a restart
//! (`commit_do()` in `btree_update.h`).  Operations are therefore written
//! to be restartable: nothing they do outside the transaction matters
//! (the only state they touch outside it is the inode number hint, which
//! is a hint, as in C).
//!
//! Updates have *non-extent* semantics: [`BtreeTransOps::update`] replaces
//! the key at exactly `k.k.p` (C's `bch2_btree_insert_nonextent()`); a key
//! of type `deleted` removes it.  Overwriting extents (cutting the front or
//! back of the keys a new extent overlaps) is done by the caller, as
//! `bch2_trans_update_extent()` does in C, in
//! [`super::io_write::extent_update`].  An implementation must therefore
//! not trim or split extents again.

use core::cell::{Cell, RefCell};

use super::{BtreeRead, FsFacts, OwnedKey};
use crate::checksum::CsumType;
use crate::errcode::{BchError, Errno, Restart};
use crate::format::bkey::{Bkey, BkeyI, BtreeId, KeyType, BKEY_VAL_U64S_MAX};
use crate::format::bpos::Bpos;
use crate::platform::Vec;

/// The options the write operations follow (`c->opts` and the superblock
/// options they come from, `opts.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOpts {
    /// String hash type of new inodes (`BCH_STR_HASH_*`, after
    /// `bch2_str_hash_opt_to_type()`: 3 = siphash with the
    /// `new_siphash` feature).
    pub str_hash: u8,
    /// `data_checksum` option: 0 none, 1 crc32c, 2 crc64, 3 xxhash
    /// (`BCH_CSUM_OPTS()`).
    pub data_checksum: u8,
    /// `compression` option (`type | level << 4`; type 0 none, 1 lz4,
    /// 2 gzip, 3 zstd).  lz4 is done in both homes, gzip and zstd on the
    /// host only (`EOPNOTSUPP` in the kernel for now).
    pub compression: u8,
    /// `background_compression` option (as `compression`; 0: none).  Data
    /// that rebalance must move gets a `rebalance` entry in C; not done
    /// yet, so nonzero is refused.
    pub background_compression: u8,
    /// `background_target` option (0: none).  Nonzero is refused, as
    /// `background_compression`.
    pub background_target: u16,
    /// `inline_data`: small writes at the end of a file become
    /// `inline_data` keys.
    pub inline_data: bool,
    /// `encoded_extent_max`, 512-byte sectors: the largest checksummed or
    /// compressed extent.
    pub encoded_extent_max_sectors: u32,
    /// `inodes_32bit`: inode numbers below 2^31.
    pub inodes_32bit: bool,
    /// `shard_inode_numbers`: each CPU takes inode numbers from its own
    /// range.
    pub shard_inode_numbers: bool,
    /// `c->inode_shard_bits`: log2 of the number of CPUs, rounded up.
    pub inode_shard_bits: u32,
}

impl Default for WriteOpts {
    /// The defaults of a filesystem `bcachefs format` made with no options.
    fn default() -> Self {
        WriteOpts {
            str_hash: 3,
            data_checksum: 1,
            compression: 0,
            background_compression: 0,
            background_target: 0,
            inline_data: true,
            encoded_extent_max_sectors: 128,
            inodes_32bit: false,
            shard_inode_numbers: true,
            inode_shard_bits: 0,
        }
    }
}

impl core::fmt::Display for WriteOpts {
    /// `name=value` pairs as the option names print (`str_hash` by type
    /// number, options by value).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let csum = data_csum_type(self.data_checksum).map_or("(invalid)", |c| c.name());
        write!(
            f,
            "str_hash={} data_checksum={} compression={} background_compression={} background_target={} \
             inline_data={} encoded_extent_max={} inodes_32bit={} shard_inode_numbers={} inode_shard_bits={}",
            self.str_hash,
            csum,
            self.compression,
            self.background_compression,
            self.background_target,
            u8::from(self.inline_data),
            u64::from(self.encoded_extent_max_sectors) * 512,
            u8::from(self.inodes_32bit),
            u8::from(self.shard_inode_numbers),
            self.inode_shard_bits
        )
    }
}

/// `bch2_csum_opt_to_type(opt, true)`: the checksum type of data written
/// with `data_checksum` option `opt`.  `None` for an option that does not
/// exist.
pub fn data_csum_type(opt: u8) -> Option<CsumType> {
    Some(match opt {
        0 => CsumType::None,
        1 => CsumType::Crc32c,
        2 => CsumType::Crc64,
        3 => CsumType::Xxhash,
        _ => return None,
    })
}

/// What the write operations need from a btree transaction and its
/// filesystem.
///
/// Reads see the transaction's pending updates.  Every method that touches
/// a btree may return [`BchError::Restart`]; the operation then returns it
/// unchanged and [`commit_do`] starts over.  Errors: `EIO`, `ENOMEM` from
/// the btree; what else is listed per method.
pub trait BtreeTransOps {
    /// The first key of `btree` with `from <= pos <= to` at leaf level,
    /// pending updates included, skipping `deleted` keys and, unless
    /// `whiteouts`, `whiteout` and `hash_whiteout` keys (as
    /// [`BtreeRead::peek_upto`]).
    fn peek_upto(&mut self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<BkeyI>, BchError>;

    /// The key at exactly `pos` (`bch2_btree_iter_peek_slot()`), whiteouts
    /// included; `None` for a hole or a `deleted` key.
    fn peek_slot(&mut self, btree: BtreeId, pos: Bpos) -> Result<Option<BkeyI>, BchError> {
        self.peek_upto(btree, pos, pos, true)
    }

    /// Queues `k` to replace whatever is at `k.k.p` when the transaction
    /// commits (`bch2_trans_update()` with non-extent semantics: see the
    /// module doc).  A key of type `deleted` deletes.  A later update at
    /// the same position in the same transaction replaces an earlier one
    /// (as C's `btree_insert_entry` merging does); later reads see it.
    fn update(&mut self, btree: BtreeId, k: BkeyI) -> Result<(), BchError>;

    /// Drops the pending updates and starts the transaction over
    /// (`bch2_trans_begin()`).
    fn begin(&mut self);

    /// Commits the pending updates atomically (`bch2_trans_commit()`).
    /// Errors: a restart (the caller runs the operation again), `ENOSPC`,
    /// `EIO`, `ENOMEM`.
    fn commit(&mut self) -> Result<(), BchError>;

    /// Reads `buf.len()` bytes (a multiple of 512) of member device `dev`
    /// from 512-byte sector `sector` (for read-modify-write of a partial
    /// block).  Errors as [`BtreeRead::read_data`].
    fn read_data(&mut self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// Name of the filesystem's device, for messages.
    fn dev_name(&self) -> &str;

    /// A data checksum error on member device `dev`, as
    /// [`BtreeRead::checksum_error`].  Nothing by default.
    fn checksum_error(&self, _dev: u8) {}

    /// A transaction found the filesystem inconsistent (it failed with
    /// `EUCLEAN`): what the `errors=` option says happens then
    /// (`bch2_trans_inconsistent()` → `bch2_inconsistent_error()`).
    /// Nothing by default.
    fn inconsistent(&self) {}

    /// Superblock facts (block size, time units).
    fn facts(&self) -> &FsFacts;

    /// The write options (`c->opts`).
    fn opts(&self) -> &WriteOpts;

    /// The time now, in nanoseconds since the epoch (the kernel's
    /// `ktime_get_coarse_real_ts64()`).
    fn now_ns(&self) -> i64;

    /// 64 random bits (`get_random_bytes()`), for `bi_hash_seed`.
    fn random_u64(&mut self) -> u64;

    /// The CPU this runs on (`raw_smp_processor_id()`), for the inode
    /// number shard.  Must be below `1 << opts().inode_shard_bits`.
    fn cpu(&self) -> u64 {
        0
    }

    /// `c->unused_inode_hints[cpu]`: where the next inode number search
    /// starts.
    fn unused_inode_hint(&self, cpu: u64) -> u64;

    /// Sets `c->unused_inode_hints[cpu]`.
    fn set_unused_inode_hint(&mut self, cpu: u64, v: u64);
}

/// Runs `f` as one transaction and commits it, starting over on restarts
/// (`commit_do()`): the transaction is begun afresh before each attempt,
/// and after an error its pending updates are dropped.  An `EUCLEAN`
/// (an inconsistency found) goes to [`BtreeTransOps::inconsistent`]
/// first, which acts on `errors=`.
///
/// Errors: what `f` or the commit returned, as an errno.
pub fn commit_do<T, R, F>(t: &mut T, mut f: F) -> Result<R, Errno>
where
    T: BtreeTransOps + ?Sized,
    F: FnMut(&mut T) -> Result<R, BchError>,
{
    loop {
        t.begin();
        let r = f(t).and_then(|r| t.commit().map(|()| r));
        match r {
            Ok(r) => return Ok(r),
            Err(BchError::Restart(_)) => continue,
            Err(BchError::Errno(e)) => {
                t.begin();
                if e == Errno::EUCLEAN {
                    t.inconsistent();
                }
                return Err(e);
            }
        }
    }
}

/// `bkey_init()` plus a value: an owned key of type `ty` at `p` holding
/// `val` zero-padded to whole u64s.
///
/// Errors: `ERANGE` when the value is longer than a key can hold
/// ([`BKEY_VAL_U64S_MAX`] u64s); `ENOMEM`.
pub fn new_key(ty: KeyType, p: Bpos, val: &[u8]) -> Result<BkeyI, Errno> {
    let u64s = val.len().div_ceil(8);
    if u64s > BKEY_VAL_U64S_MAX {
        return Err(Errno::ERANGE);
    }
    let mut v = Vec::new();
    v.extend_from_slice(val)?;
    v.resize(u64s * 8, 0)?;
    Ok(BkeyI { k: Bkey::new(ty, p, u64s), v })
}

/// A `deleted` key at `p` (`bkey_init()`), or a `hash_whiteout` when
/// `hash_whiteout`.
pub fn delete_key(p: Bpos, hash_whiteout: bool) -> BkeyI {
    let ty = if hash_whiteout { KeyType::HashWhiteout } else { KeyType::Deleted };
    BkeyI { k: Bkey::new(ty, p, 0), v: Vec::new() }
}

/// A copy of `k`.  Errors: `ENOMEM`.
pub fn clone_key(k: &BkeyI) -> Result<BkeyI, Errno> {
    let mut v = Vec::new();
    v.extend_from_slice(&k.v)?;
    Ok(BkeyI { k: k.k, v })
}

/// A [`BtreeRead`] view of a transaction, so the read operations
/// ([`super::read_data`], the lookups) can run inside one and see its
/// pending updates.  A restart met by a read is kept and handed back by
/// [`TransRead::finish`].
pub struct TransRead<'a, T: BtreeTransOps + ?Sized> {
    t: RefCell<&'a mut T>,
    facts: FsFacts,
    restart: Cell<Option<Restart>>,
}

impl<'a, T: BtreeTransOps + ?Sized> TransRead<'a, T> {
    /// Wraps `t`.
    pub fn new(t: &'a mut T) -> Self {
        let facts = *t.facts();
        TransRead { t: RefCell::new(t), facts, restart: Cell::new(None) }
    }

    /// The result of a read step: a restart seen by any read wins over
    /// whatever error it was turned into.
    pub fn finish<R>(&self, r: Result<R, Errno>) -> Result<R, BchError> {
        if let Some(rs) = self.restart.get() {
            return Err(BchError::Restart(rs));
        }
        r.map_err(BchError::Errno)
    }
}

impl<T: BtreeTransOps + ?Sized> BtreeRead for TransRead<'_, T> {
    fn peek_upto(&self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<OwnedKey>, Errno> {
        if self.restart.get().is_some() {
            return Err(Errno::EAGAIN);
        }
        let Ok(mut t) = self.t.try_borrow_mut() else { return Err(Errno::EBUSY) };
        match t.peek_upto(btree, from, to, whiteouts) {
            Ok(k) => Ok(k),
            Err(BchError::Errno(e)) => Err(e),
            Err(BchError::Restart(r)) => {
                self.restart.set(Some(r));
                Err(Errno::EAGAIN)
            }
        }
    }

    fn read_data(&self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let Ok(mut t) = self.t.try_borrow_mut() else { return Err(Errno::EBUSY) };
        t.read_data(dev, sector, buf)
    }

    fn checksum_error(&self, dev: u8) {
        if let Ok(t) = self.t.try_borrow() {
            t.checksum_error(dev);
        }
    }

    fn dev_name(&self) -> &str {
        // The name is only used in messages; a borrow cannot outlive the
        // RefCell guard, so reads through this view are reported as
        // coming from the transaction.
        "trans"
    }

    fn facts(&self) -> &FsFacts {
        &self.facts
    }
}

/// Runs read-only `f` over a [`TransRead`] view of `t` and maps a restart
/// a read met back to [`BchError::Restart`].
pub fn trans_read<T, R>(t: &mut T, f: impl FnOnce(&TransRead<'_, T>) -> Result<R, Errno>) -> Result<R, BchError>
where
    T: BtreeTransOps + ?Sized,
{
    let view = TransRead::new(t);
    let r = f(&view);
    view.finish(r)
}

/// Where the data of one new extent goes (`DataAlloc::alloc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataSpace {
    /// Member device.
    pub dev: u8,
    /// First 512-byte sector on the device.
    pub offset: u64,
    /// Generation of the bucket the sectors are in (`ptr.gen`).
    pub gen: u8,
    /// Sectors handed out, `1..=` the number asked for.
    pub sectors: u32,
}

impl core::fmt::Display for DataSpace {
    /// `dev:offset gen g (n sectors)`, as pointers print.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{} gen {} ({} sectors)", self.dev, self.offset, self.gen, self.sectors)
    }
}

/// Space for data and the write of data bytes (the foreground allocator's
/// `bch2_alloc_sectors_start()` and the data bio's submission in
/// `io_write.c`).  Tests use a bump allocator over a memory device; the
/// filesystem will use write points.
pub trait DataAlloc {
    /// Hands out up to `sectors` contiguous 512-byte sectors.  Errors:
    /// `ENOSPC`.
    fn alloc(&mut self, sectors: u32) -> Result<DataSpace, Errno>;

    /// How many contiguous sectors the next [`DataAlloc::alloc`] can hand
    /// out (`wp->sectors_free`); an `alloc` of at most this many gets them
    /// all.  Compressed writes size their output by it.
    fn sectors_free(&self) -> u32 {
        u32::MAX
    }

    /// Writes `data` (a multiple of 512 bytes) at `sector` of device `dev`
    /// and waits for it.  Errors: `EIO`.
    fn write(&mut self, dev: u8, sector: u64, data: &[u8]) -> Result<(), Errno>;

    /// Writes every one of `writes` as [`DataAlloc::write`] would, leaving
    /// each outcome in its `result`, and waits for all of them.  Devices
    /// that can have them in flight together do (the kernel's); the
    /// default writes them one after the other.
    fn write_many(&mut self, writes: &mut [crate::platform::DevWrite<'_>]) {
        for w in writes.iter_mut() {
            w.result = self.write(w.dev, w.sector, w.buf);
        }
    }
}
