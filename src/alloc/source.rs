// SPDX-License-Identifier: GPL-2.0
//! What the foreground allocator reads from the btrees, behind a small
//! trait ([`FreespaceSource`]): the read-side [`Fs`] provides it (tests on
//! C's volumes) and so does the write side's [`BtreeFs`] (the read-write
//! mount, `crate::fs_rw`), through read-only transactions.
//!
//! C reads the same keys inside `bch2_bucket_alloc_freelist()` (the
//! `freespace` btree), `bch2_bucket_alloc_trans()`'s callers (`alloc`) and
//! `bch2_do_discards_work()` (`need_discard`).

use crate::bcachefs::Fs;
use crate::btree::{lockrestart_do, BtreeFs};
use crate::errcode::Errno;
use crate::format::bkey::{Bkey, BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::format::val::alloc::AllocV4;
use crate::platform::BlockDev;

/// Mask of the bucket number in a freespace position; bits 56-63 are the
/// genbits (`alloc_freespace_genbits()`).
pub const FREESPACE_BUCKET_MASK: u64 = (1 << 56) - 1;

/// What [`FreespaceSource::for_each_alloc_key`] calls: (key, value).
pub type AllocKeyFn<'a> = dyn FnMut(&Bkey, &[u8]) -> Result<(), Errno> + 'a;

/// What the allocator reads of the alloc, freespace and need_discard
/// btrees of one volume.  Positions are `dev:offset`.
pub trait FreespaceSource {
    /// The first freespace entry of device `dev` at or after `from`, as the
    /// offset of the bucket's position in the `freespace` btree: the bucket
    /// number in bits 0-55, its genbits in bits 56-63.  The btree's keys
    /// are extents covering `[start, end)` (C merges neighbours), so an
    /// entry inside a key is returned as the position itself.
    ///
    /// Errors: `EIO` (unreadable node), `ENOMEM`.
    fn next_free(&self, dev: u8, from: u64) -> Result<Option<u64>, Errno>;

    /// The first bucket of `dev` at or after `from` set in `need_discard`.
    ///
    /// Errors: as [`next_free`](Self::next_free).
    fn next_need_discard(&self, dev: u8, from: u64) -> Result<Option<u64>, Errno>;

    /// Calls `f(key, value)` for every live key of the `alloc` btree of
    /// device `dev`, in order.  Stops at the first error `f` returns.
    ///
    /// Errors: `f`'s, `EIO`, `ENOMEM`.
    fn for_each_alloc_key(&self, dev: u8, f: &mut AllocKeyFn<'_>) -> Result<(), Errno>;

    /// The `alloc_v4` value of `dev:bucket` (a bucket without a key is
    /// free at gen 0: `None`).
    ///
    /// Errors: `EUCLEAN` for a key that is not `alloc_v4`, `EIO`, `ENOMEM`.
    fn alloc_key(&self, dev: u8, bucket: u64) -> Result<Option<AllocV4>, Errno>;
}

impl<D: BlockDev> FreespaceSource for Fs<D> {
    fn next_free(&self, dev: u8, from: u64) -> Result<Option<u64>, Errno> {
        let mut it = self.iter(BtreeId::Freespace, Bpos::pos(u64::from(dev), from), false);
        while let Some(k) = it.next()? {
            if k.k.p.inode != u64::from(dev) {
                return Ok(None);
            }
            // An extent key ends at `p.offset` (exclusive): one ending at
            // `from` does not cover it; a size-0 or non-`set` key covers
            // nothing.
            if k.k.key_type != KeyType::Set as u8 || k.k.p.offset <= from || k.k.size == 0 {
                continue;
            }
            return Ok(Some(k.k.start_offset().max(from)));
        }
        Ok(None)
    }

    fn next_need_discard(&self, dev: u8, from: u64) -> Result<Option<u64>, Errno> {
        let mut it = self.iter(BtreeId::NeedDiscard, Bpos::pos(u64::from(dev), from), false);
        while let Some(k) = it.next()? {
            if k.k.p.inode != u64::from(dev) {
                return Ok(None);
            }
            if k.k.key_type == KeyType::Set as u8 {
                return Ok(Some(k.k.p.offset));
            }
        }
        Ok(None)
    }

    fn for_each_alloc_key(&self, dev: u8, f: &mut AllocKeyFn<'_>) -> Result<(), Errno> {
        let mut it = self.iter(BtreeId::Alloc, Bpos::pos(u64::from(dev), 0), false);
        while let Some(k) = it.next()? {
            if k.k.p.inode != u64::from(dev) {
                break;
            }
            let n = k.k.val_bytes().min(k.v.len());
            f(&k.k, &k.v[..n])?;
        }
        Ok(())
    }

    fn alloc_key(&self, dev: u8, bucket: u64) -> Result<Option<AllocV4>, Errno> {
        let p = Bpos::pos(u64::from(dev), bucket);
        let mut it = self.iter(BtreeId::Alloc, p, false);
        match it.next()? {
            Some(k) if k.k.p.inode == p.inode && k.k.p.offset == p.offset => {
                if k.k.key_type != KeyType::AllocV4 as u8 {
                    return Err(Errno::EUCLEAN);
                }
                Ok(Some(AllocV4::decode(&k.v)))
            }
            _ => Ok(None),
        }
    }
}

/// The write side: each call runs a read-only transaction of its own
/// (`lockrestart_do()`), as C's `bch2_bucket_alloc_freelist()` walks the
/// freespace btree with an iterator of the allocating transaction.  The
/// caller may hold intent locks (an interior update allocating nodes):
/// reads are compatible with them.
impl FreespaceSource for BtreeFs<'_> {
    fn next_free(&self, dev: u8, from: u64) -> Result<Option<u64>, Errno> {
        lockrestart_do(self, |t| {
            // An extent key ends at `p.offset` (exclusive): the first that
            // can cover `from` ends after it.
            let it = t.iter(BtreeId::Freespace, Bpos::new(u64::from(dev), from.saturating_add(1), 0), false)?;
            let mut k = t.iter_peek(it)?;
            while let Some(x) = k {
                if x.k.p.inode != u64::from(dev) {
                    return Ok(None);
                }
                if x.k.key_type == KeyType::Set as u8 && x.k.p.offset > from && x.k.size != 0 {
                    return Ok(Some(x.k.start_offset().max(from)));
                }
                k = t.iter_next(it)?;
            }
            Ok(None)
        })
    }

    fn next_need_discard(&self, dev: u8, from: u64) -> Result<Option<u64>, Errno> {
        lockrestart_do(self, |t| {
            let it = t.iter(BtreeId::NeedDiscard, Bpos::new(u64::from(dev), from, 0), false)?;
            let mut k = t.iter_peek(it)?;
            while let Some(x) = k {
                if x.k.p.inode != u64::from(dev) {
                    return Ok(None);
                }
                if x.k.key_type == KeyType::Set as u8 && x.k.p.offset >= from {
                    return Ok(Some(x.k.p.offset));
                }
                k = t.iter_next(it)?;
            }
            Ok(None)
        })
    }

    fn for_each_alloc_key(&self, dev: u8, f: &mut AllocKeyFn<'_>) -> Result<(), Errno> {
        let mut keys: crate::platform::Vec<crate::format::bkey::BkeyI> = crate::platform::Vec::new();
        lockrestart_do(self, |t| {
            keys.clear();
            let it = t.iter(BtreeId::Alloc, Bpos::new(u64::from(dev), 0, 0), false)?;
            let mut k = t.iter_peek(it)?;
            while let Some(x) = k {
                if x.k.p.inode != u64::from(dev) {
                    break;
                }
                keys.push(x)?;
                k = t.iter_next(it)?;
            }
            Ok(())
        })?;
        for k in keys.iter() {
            let n = k.k.val_bytes().min(k.v.len());
            f(&k.k, &k.v[..n])?;
        }
        Ok(())
    }

    fn alloc_key(&self, dev: u8, bucket: u64) -> Result<Option<AllocV4>, Errno> {
        let p = Bpos::new(u64::from(dev), bucket, 0);
        let k = lockrestart_do(self, |t| t.get(BtreeId::Alloc, p))?;
        match k {
            Some(k) if !k.k.is_deleted() => {
                if k.k.key_type != KeyType::AllocV4 as u8 {
                    return Err(Errno::EUCLEAN);
                }
                Ok(Some(AllocV4::decode(&k.v)))
            }
            _ => Ok(None),
        }
    }
}
