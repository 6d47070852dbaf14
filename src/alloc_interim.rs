// SPDX-License-Identifier: GPL-2.0
//! An interim bucket allocator, to be replaced by the foreground allocator
//! (`alloc/foreground.rs`, open buckets and write points, being built on
//! its own branch).
//!
//! It takes the buckets the alloc btree says are free (`BCH_DATA_free`,
//! with their gen) once, at mount, and hands out space from them in two
//! streams: btree nodes ([`BtreeNodeAlloc`]) and user data
//! ([`InterimAlloc::alloc_data`]), never mixing data types in a bucket
//! (C's write points).  A bucket handed out is never handed out again in
//! this mount, and freed node space is not reused (C waits for the
//! journal sequence number of the free; this waits forever): no
//! reservations, watermarks or discards.

use crate::btree::cache::NodeSpace;
use crate::btree::{lockrestart_do, BtreeFs, BtreeNodeAlloc};
use crate::errcode::Errno;
use crate::format::bkey::{BtreeId, KeyType};
use crate::format::bpos::{Bpos, POS_MIN};
use crate::format::val::alloc::{data_type, AllocV4};
use crate::platform::{Mutex, Vec};

/// A bucket being filled: (dev, bucket, gen, sectors used).
#[derive(Clone, Copy, Debug, Default)]
struct Open {
    bucket: u64,
    gen: u8,
    used: u32,
}

struct State {
    /// Free buckets (bucket, gen), handed out from the front.
    free: Vec<(u64, u8)>,
    next: usize,
    btree: Option<Open>,
    user: Option<Open>,
}

/// The interim allocator (see the module documentation).
pub struct InterimAlloc {
    dev: u8,
    bucket_size: u32,
    state: Mutex<State>,
}

impl InterimAlloc {
    /// An allocator for device `dev` with buckets of `bucket_size`
    /// sectors, with no free bucket until [`load`](Self::load).
    ///
    /// Errors: `ENOMEM`.
    pub fn new(dev: u8, bucket_size: u32) -> Result<Self, Errno> {
        Ok(InterimAlloc {
            dev,
            bucket_size,
            state: Mutex::new(State { free: Vec::new(), next: 0, btree: None, user: None })?,
        })
    }

    /// Reads the alloc btree: every bucket from `first_bucket` to
    /// `nbuckets` whose key says free (or that has no key) becomes
    /// available, except those in `exclude` (superblock and journal
    /// buckets, before they are marked in the alloc btree).
    ///
    /// Errors: those of the reads, `ENOMEM`.
    pub fn load(&self, fs: &BtreeFs<'_>, first_bucket: u64, nbuckets: u64, exclude: &[u64]) -> Result<(), Errno> {
        let mut keyed: Vec<(u64, AllocV4)> = Vec::new();
        lockrestart_do(fs, |t| {
            keyed.clear();
            let it = t.iter(BtreeId::Alloc, POS_MIN, false)?;
            while let Some(k) = t.iter_next(it)? {
                if k.k.p.inode != u64::from(self.dev) || k.k.key_type != KeyType::AllocV4 as u8 {
                    continue;
                }
                keyed.push((k.k.p.offset, AllocV4::decode(&k.v)))?;
            }
            Ok(())
        })?;
        let mut s = self.state.lock();
        s.free.clear();
        s.next = 0;
        let mut j = 0;
        for b in first_bucket..nbuckets {
            while j < keyed.len() && keyed[j].0 < b {
                j += 1;
            }
            let a = keyed.get(j).filter(|e| e.0 == b).map(|e| e.1).unwrap_or_default();
            if a.data_type == data_type::FREE && a.dirty_sectors == 0 && a.cached_sectors == 0 && !exclude.contains(&b) {
                s.free.push((b, a.gen))?;
            }
        }
        Ok(())
    }

    /// Free buckets left.
    pub fn nr_free(&self) -> usize {
        let s = self.state.lock();
        s.free.len() - s.next
    }

    fn take(&self, user: bool, sectors: u32, whole: bool) -> Result<(u64, u8, u32, u32), Errno> {
        if sectors == 0 || sectors > self.bucket_size {
            return Err(Errno::EINVAL);
        }
        let mut s = self.state.lock();
        let cur = if user { s.user } else { s.btree };
        let room = |o: &Open| self.bucket_size - o.used;
        let o = match cur {
            Some(o) if room(&o) >= sectors || (!whole && room(&o) > 0) => o,
            _ => {
                let &(bucket, gen) = s.free.get(s.next).ok_or(Errno::ENOSPC)?;
                s.next += 1;
                Open { bucket, gen, used: 0 }
            }
        };
        let n = sectors.min(room(&o));
        let start = o.used;
        let o2 = Open { used: o.used + n, ..o };
        if user {
            s.user = Some(o2);
        } else {
            s.btree = Some(o2);
        }
        Ok((o.bucket, o.gen, start, n))
    }

    /// Up to `sectors` of contiguous space for user data, in a bucket used
    /// only for user data: (device sector, gen, sectors given, at least 1).
    ///
    /// Errors: `ENOSPC`; `EINVAL` for 0 or more than a bucket.
    pub fn alloc_data(&self, sectors: u32) -> Result<(u64, u8, u32), Errno> {
        let (b, gen, start, n) = self.take(true, sectors, false)?;
        Ok((b * u64::from(self.bucket_size) + u64::from(start), gen, n))
    }

    /// Prints the allocator's state: free buckets left and the buckets
    /// being filled (as `bch2_dev_alloc_debug_to_text()` prints open
    /// buckets).
    pub fn to_text(&self, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let s = self.state.lock();
        writeln!(f, "interim allocator dev {}: {} free buckets left of {}", self.dev, s.free.len() - s.next, s.free.len())?;
        for (what, o) in [("btree", s.btree), ("user", s.user)] {
            match o {
                Some(o) => writeln!(f, "  {what}: bucket {} gen {} {}/{} sectors used", o.bucket, o.gen, o.used, self.bucket_size)?,
                None => writeln!(f, "  {what}: none open")?,
            }
        }
        Ok(())
    }

    /// The bucket (dev:bucket) holding device sector `sector`.
    pub fn bucket_of(&self, sector: u64) -> Bpos {
        Bpos::pos(u64::from(self.dev), sector / u64::from(self.bucket_size.max(1)))
    }
}

impl BtreeNodeAlloc for InterimAlloc {
    fn alloc(&self, sectors: u32) -> Result<NodeSpace, Errno> {
        let (b, gen, start, _) = self.take(false, sectors, true)?;
        Ok(NodeSpace { dev: self.dev, offset: b * u64::from(self.bucket_size) + u64::from(start), gen })
    }

    fn free(&self, _space: NodeSpace, _journal_seq: u64) {}
}

impl crate::triggers::OpenBuckets for InterimAlloc {
    fn is_open(&self, bucket: Bpos) -> bool {
        if bucket.inode != u64::from(self.dev) {
            return false;
        }
        let s = self.state.lock();
        [s.btree, s.user].iter().flatten().any(|o| o.bucket == bucket.offset)
    }
}
