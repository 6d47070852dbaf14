// SPDX-License-Identifier: GPL-2.0
//! The allocation information kept beside each bucket's `alloc_v4` key,
//! and the alloc trigger that keeps it in step (`alloc_background.c`,
//! `alloc_background.h`, `lru.h`):
//!
//! - `freespace` (an extents btree): a `set` key of size 1 covering
//!   `dev:(bucket | genbits)` for every free bucket, where genbits
//!   ([`alloc_freespace_genbits`]) put `(gen - oldest_gen) >> 4` in bits
//!   56-63 of the offset;
//! - `need_discard`: a `set` key at `dev:bucket` for every bucket waiting
//!   for a discard;
//! - `lru`: `set` keys at `((lru_id << 48) | time):dev_bucket`, the read
//!   LRU (`lru_id` = device, time = `io_time[READ]`) for cached buckets and
//!   the fragmentation LRU (`lru_id` = `0xffff`) for partly used movable
//!   buckets; `dev_bucket` is `dev << 48 | bucket` ([`bucket_to_u64`]);
//! - `bucket_gens`: one key per 256 buckets at `dev:(bucket >> 8)` holding
//!   each bucket's generation;
//! - the `dev_data_type` accounting counters (buckets, sectors, fragmented
//!   sectors per device and data type).

use core::fmt;

use super::DerivedUpdates;
use crate::accounting::DiskAccountingPos;
use crate::errcode::Errno;
use crate::format::bkey::BtreeId;
use crate::format::bpos::Bpos;
use crate::format::val::alloc::{data_type, AllocV4, BUCKET_GC_GEN_MAX, LRU_TIME_BITS, LRU_TIME_MAX};

/// `KEY_TYPE_BUCKET_GENS_BITS`: buckets per `bucket_gens` key, log2.
pub const BUCKET_GENS_BITS: u32 = 8;
/// Buckets per `bucket_gens` key (`KEY_TYPE_BUCKET_GENS_NR`).
pub const BUCKET_GENS_NR: usize = 1 << BUCKET_GENS_BITS;
/// `KEY_TYPE_BUCKET_GENS_MASK`.
pub const BUCKET_GENS_MASK: u64 = BUCKET_GENS_NR as u64 - 1;
/// `BCH_LRU_FRAGMENTATION_START`: the lru id of the fragmentation LRU.
pub const LRU_FRAGMENTATION_START: u16 = u16::MAX;
/// `BCH_ALLOC_V4_U64s`, bytes.
const ALLOC_V4_CUR_BYTES: u32 = 64;

/// `bucket_to_u64()`: `dev << 48 | bucket`.
pub fn bucket_to_u64(bucket: Bpos) -> u64 {
    (bucket.inode << 48) | bucket.offset
}

/// `u64_to_bucket()`.
pub fn u64_to_bucket(b: u64) -> Bpos {
    Bpos::pos(b >> 48, b & ((1 << 48) - 1))
}

/// `data_type_is_empty()`: free, need_gc_gens or need_discard.
pub fn data_type_is_empty(t: u8) -> bool {
    matches!(t, data_type::FREE | data_type::NEED_GC_GENS | data_type::NEED_DISCARD)
}

/// `bucket_data_type()`: cached and stripe buckets hold user data.
pub fn bucket_data_type(t: u8) -> u8 {
    match t {
        data_type::CACHED | data_type::STRIPE => data_type::USER,
        t => t,
    }
}

/// `bucket_data_type_mismatch()`.
pub fn bucket_data_type_mismatch(bucket: u8, ptr: u8) -> bool {
    !data_type_is_empty(bucket) && bucket_data_type(bucket) != bucket_data_type(ptr)
}

/// `bch2_bucket_sectors_total()`, sectors.
pub fn bucket_sectors_total(a: &AllocV4) -> i64 {
    i64::from(a.stripe_sectors) + i64::from(a.dirty_sectors) + i64::from(a.cached_sectors)
}

/// `bch2_bucket_sectors()`: cached sectors for a cached bucket, else the
/// dirty and stripe sectors.
pub fn bucket_sectors(a: &AllocV4) -> i64 {
    if a.data_type == data_type::CACHED {
        i64::from(a.cached_sectors)
    } else {
        i64::from(a.stripe_sectors) + i64::from(a.dirty_sectors)
    }
}

/// `bch2_bucket_sectors_fragmented()` for buckets of `bucket_size`
/// sectors: the unused sectors of a bucket that holds some.
pub fn bucket_sectors_fragmented(a: &AllocV4, bucket_size: u32) -> i64 {
    // C computes this in an int: sector counts are below 2^31.
    let d = bucket_sectors(a);
    if d != 0 {
        (i64::from(bucket_size) - d).max(0)
    } else {
        0
    }
}

/// `bch2_bucket_sectors_unstriped()`.
pub fn bucket_sectors_unstriped(a: &AllocV4) -> i64 {
    if a.data_type == data_type::STRIPE {
        i64::from(a.dirty_sectors)
    } else {
        0
    }
}

/// `alloc_data_type_set()`.
pub fn alloc_data_type_set(a: &mut AllocV4, t: u8) {
    a.data_type = a.implied_data_type(t);
}

/// `alloc_lru_idx_read()`: the read LRU time of a cached bucket, else 0.
pub fn alloc_lru_idx_read(a: &AllocV4) -> u64 {
    if a.data_type == data_type::CACHED {
        a.io_time[0] & LRU_TIME_MAX
    } else {
        0
    }
}

/// `alloc_lru_idx_fragmentation()`.
pub fn alloc_lru_idx_fragmentation(a: &AllocV4, bucket_size: u32) -> u64 {
    a.fragmentation(bucket_size)
}

/// `alloc_freespace_genbits()`.
pub fn alloc_freespace_genbits(a: &AllocV4) -> u64 {
    (u64::from(a.gen.wrapping_sub(a.oldest_gen)) >> 4) << 56
}

/// `alloc_freespace_pos()`: where `bucket`'s freespace key starts.
pub fn alloc_freespace_pos(bucket: Bpos, a: &AllocV4) -> Bpos {
    Bpos::pos(bucket.inode, bucket.offset | alloc_freespace_genbits(a))
}

/// `lru_pos()`: the position of an lru entry.
pub fn lru_pos(lru_id: u16, dev_bucket: u64, time: u64) -> Bpos {
    Bpos::pos((u64::from(lru_id) << LRU_TIME_BITS) | (time & LRU_TIME_MAX), dev_bucket)
}

/// `alloc_gens_pos()`: the `bucket_gens` key holding `bucket`'s gen and
/// the index in it.
pub fn alloc_gens_pos(bucket: Bpos) -> (Bpos, usize) {
    (Bpos::pos(bucket.inode, bucket.offset >> BUCKET_GENS_BITS), (bucket.offset & BUCKET_GENS_MASK) as usize)
}

/// `bucket_gens_pos_to_alloc()`.
pub fn bucket_gens_pos_to_alloc(p: Bpos, offset: usize) -> Bpos {
    Bpos::pos(p.inode, (p.offset << BUCKET_GENS_BITS) + offset as u64)
}

/// A `bucket_gens` value (`struct bch_bucket_gens`): 256 generations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketGens {
    /// Generation of each bucket of the key's range.
    pub gens: [u8; BUCKET_GENS_NR],
}

impl Default for BucketGens {
    fn default() -> Self {
        BucketGens { gens: [0; BUCKET_GENS_NR] }
    }
}

impl BucketGens {
    /// Bytes of the value (32 u64s).
    pub const BYTES: usize = BUCKET_GENS_NR;

    /// Decodes a value; bytes past the end read as 0.
    pub fn decode(v: &[u8]) -> BucketGens {
        let mut g = BucketGens::default();
        let n = v.len().min(BUCKET_GENS_NR);
        g.gens[..n].copy_from_slice(&v[..n]);
        g
    }

    /// Encodes the value.
    pub fn encode(&self) -> [u8; BUCKET_GENS_NR] {
        self.gens
    }
}

/// `alloc_v4` as C 6.12 writes it: `bch2_alloc_to_v4_mut()` normalises
/// `backpointers_start` to `BCH_ALLOC_V4_U64s` (8) and drops the inline
/// backpointers (`nr_backpointers` 0), so every value is 64 bytes.
pub fn alloc_v4_encode_c(a: &AllocV4) -> [u8; 64] {
    let mut n = *a;
    n.flags = (n.flags & !0x3ffc) | ((ALLOC_V4_CUR_BYTES / 8) << 2);
    n.encode()
}

/// Sets `BCH_ALLOC_V4_NEED_DISCARD`.
pub fn set_need_discard(a: &mut AllocV4, v: bool) {
    a.flags = (a.flags & !1) | u32::from(v);
}

/// Sets `BCH_ALLOC_V4_NEED_INC_GEN`.
pub fn set_need_inc_gen(a: &mut AllocV4, v: bool) {
    a.flags = (a.flags & !2) | (u32::from(v) << 1);
}

/// What the transactional alloc trigger needs beyond the two keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocTriggerCtx {
    /// The device's bucket size, sectors.
    pub bucket_size: u32,
    /// The IO clocks now (`bch2_current_io_time()`), read and write.
    pub io_time_now: [u64; 2],
    /// The bucket is open (being written): its gen is not bumped yet
    /// (`bch2_bucket_is_open_safe()`).
    pub bucket_is_open: bool,
    /// `BTREE_TRIGGER_bucket_invalidate`: the bucket's cached data is
    /// being dropped; its cached sectors leave the cached replicas
    /// counter.
    pub invalidate: bool,
}

/// `bch2_bucket_do_index()`: sets or clears `a`'s freespace or
/// need_discard entry.
fn bucket_do_index(bucket: Bpos, a: &AllocV4, set: bool, out: &mut DerivedUpdates) -> Result<(), Errno> {
    match a.data_type {
        data_type::FREE => out.bit(BtreeId::Freespace, alloc_freespace_pos(bucket, a), set),
        data_type::NEED_DISCARD => out.bit(BtreeId::NeedDiscard, bucket, set),
        _ => Ok(()),
    }
}

/// `bch2_lru_change()`: moves an lru entry; time 0 means none.
fn lru_change(lru_id: u16, dev_bucket: u64, old: u64, new: u64, out: &mut DerivedUpdates) -> Result<(), Errno> {
    if old == new {
        return Ok(());
    }
    if old != 0 {
        out.bit(BtreeId::Lru, lru_pos(lru_id, dev_bucket, old), false)?;
    }
    if new != 0 {
        out.bit(BtreeId::Lru, lru_pos(lru_id, dev_bucket, new), true)?;
    }
    Ok(())
}

fn dev_data_type_mod(dev: u8, t: u8, d: [i64; 3], out: &mut DerivedUpdates) -> Result<(), Errno> {
    out.accounting.add(&DiskAccountingPos::DevDataType { dev, data_type: t }, &d)
}

/// `bch2_alloc_key_to_dev_counters()`: the `dev_data_type` deltas of a
/// bucket going from `old` to `new`.  `old` `None`: the bucket was not
/// counted at all yet (a from-scratch recount), so only `new` is added.
pub fn alloc_key_to_dev_counters(
    dev: u8,
    bucket_size: u32,
    old: Option<&AllocV4>,
    new: &AllocV4,
    out: &mut DerivedUpdates,
) -> Result<(), Errno> {
    let new_sectors = bucket_sectors(new);
    let new_frag = bucket_sectors_fragmented(new, bucket_size);
    let new_unstriped = bucket_sectors_unstriped(new);
    let Some(old) = old else {
        dev_data_type_mod(dev, new.data_type, [1, new_sectors, new_frag], out)?;
        if new_unstriped != 0 {
            dev_data_type_mod(dev, data_type::UNSTRIPED, [1, new_unstriped, 0], out)?;
        }
        return Ok(());
    };
    let old_sectors = bucket_sectors(old);
    let old_frag = bucket_sectors_fragmented(old, bucket_size);
    if old.data_type != new.data_type {
        dev_data_type_mod(dev, new.data_type, [1, new_sectors, new_frag], out)?;
        dev_data_type_mod(dev, old.data_type, [-1, -old_sectors, -old_frag], out)?;
    } else if old_sectors != new_sectors {
        dev_data_type_mod(dev, new.data_type, [0, new_sectors - old_sectors, new_frag - old_frag], out)?;
    }
    let old_unstriped = bucket_sectors_unstriped(old);
    if old_unstriped != new_unstriped {
        let nb = i64::from(new_unstriped != 0) - i64::from(old_unstriped != 0);
        dev_data_type_mod(dev, data_type::UNSTRIPED, [nb, new_unstriped - old_unstriped, 0], out)?;
    }
    Ok(())
}

/// The derived updates of an alloc key going from `old` to `new` at
/// `bucket` (the index part of `bch2_trigger_alloc()`, transactional):
/// freespace/need_discard entries, the read and fragmentation LRUs, the
/// `bucket_gens` entry and the `dev_data_type` counters.
///
/// `old` `None` recomputes from scratch (GC/fsck): nothing is cleared and
/// the bucket is counted once in its data type; a gen of 0 is written as
/// any other, since a missing `bucket_gens` entry reads as 0.
///
/// Errors: `EINVAL` for a device index above 255; `ENOMEM`.
pub fn alloc_index_updates(
    bucket: Bpos,
    bucket_size: u32,
    old: Option<&AllocV4>,
    new: &AllocV4,
    out: &mut DerivedUpdates,
) -> Result<(), Errno> {
    let dev = u8::try_from(bucket.inode).map_err(|_| Errno::EINVAL)?;
    alloc_index_updates_no_counters(bucket, bucket_size, old, new, out)?;
    alloc_key_to_dev_counters(dev, bucket_size, old, new, out)
}

fn alloc_index_updates_no_counters(
    bucket: Bpos,
    bucket_size: u32,
    old: Option<&AllocV4>,
    new: &AllocV4,
    out: &mut DerivedUpdates,
) -> Result<(), Errno> {
    let zero = AllocV4::default();
    let o = old.unwrap_or(&zero);
    let index_changed = old.is_none()
        || o.data_type != new.data_type
        || (new.data_type == data_type::FREE && alloc_freespace_genbits(o) != alloc_freespace_genbits(new));
    if index_changed {
        if old.is_some() {
            bucket_do_index(bucket, o, false, out)?;
        }
        bucket_do_index(bucket, new, true, out)?;
    }
    let dev_bucket = bucket_to_u64(bucket);
    lru_change(bucket.inode as u16, dev_bucket, alloc_lru_idx_read(o), alloc_lru_idx_read(new), out)?;
    lru_change(
        LRU_FRAGMENTATION_START,
        dev_bucket,
        alloc_lru_idx_fragmentation(o, bucket_size),
        alloc_lru_idx_fragmentation(new, bucket_size),
        out,
    )?;
    if old.is_none() || o.gen != new.gen {
        out.bucket_gens.push((bucket, new.gen))?;
    }
    Ok(())
}

/// `bch2_trigger_alloc()` with `BTREE_TRIGGER_transactional`: updates
/// `new` as C does before it is written (data type from the counters;
/// a bucket gaining sectors gets fresh IO times and `need_inc_gen` and
/// `need_discard` set; an empty bucket with `need_inc_gen` that is not
/// open gets its gen bumped; a cached bucket without a read time gets one)
/// and adds the derived updates ([`alloc_index_updates`]).
///
/// `old` is the bucket's previous value (all zero for a bucket without an
/// alloc key: `bch2_alloc_to_v4()` of a deleted key).
///
/// Errors: `EINVAL` for a device index above 255; `ENOMEM`.
pub fn trigger_alloc(
    bucket: Bpos,
    old: &AllocV4,
    new: &mut AllocV4,
    ctx: &AllocTriggerCtx,
    out: &mut DerivedUpdates,
) -> Result<(), Errno> {
    let t = new.data_type;
    alloc_data_type_set(new, t);
    if bucket_sectors_total(new) > bucket_sectors_total(old) {
        new.io_time = ctx.io_time_now;
        set_need_inc_gen(new, true);
        set_need_discard(new, true);
    }
    if data_type_is_empty(new.data_type) && new.need_inc_gen() != 0 && !ctx.bucket_is_open {
        new.gen = new.gen.wrapping_add(1);
        set_need_inc_gen(new, false);
        let t = new.data_type;
    alloc_data_type_set(new, t);
    }
    if new.data_type == data_type::CACHED && new.io_time[0] == 0 {
        new.io_time[0] = ctx.io_time_now[0];
    }
    // The order of C's updates: index, lrus, gen, invalidate, counters.
    let dev = u8::try_from(bucket.inode).map_err(|_| Errno::EINVAL)?;
    alloc_index_updates_no_counters(bucket, ctx.bucket_size, Some(old), new, out)?;
    if ctx.invalidate && old.cached_sectors != 0 {
        out.accounting.add(
            &DiskAccountingPos::Replicas(crate::accounting::ReplicasEntry::cached(dev)),
            &[-i64::from(old.cached_sectors)],
        )?;
    }
    alloc_key_to_dev_counters(dev, ctx.bucket_size, Some(old), new, out)
}

/// `gen_after()`: `a` is newer than `b` (8-bit wrapping).
pub fn gen_after(a: u8, b: u8) -> bool {
    (a.wrapping_sub(b) as i8) > 0
}

/// `gen_cmp()`.
pub fn gen_cmp(a: u8, b: u8) -> i32 {
    i32::from(a.wrapping_sub(b) as i8)
}

/// Whether a pointer of gen `ptr_gen` into a bucket of gen `b_gen` is too
/// stale to mark (`gen_cmp(b_gen, ptr_gen) > BUCKET_GC_GEN_MAX`).
pub fn ptr_too_stale(b_gen: u8, ptr_gen: u8) -> bool {
    gen_cmp(b_gen, ptr_gen) > i32::from(BUCKET_GC_GEN_MAX)
}

/// A bucket's state as text, for mismatch reports: `gen data_type
/// dirty/cached/stripe sectors, stripe`.
pub struct AllocBrief<'a>(pub &'a AllocV4);

impl fmt::Display for AllocBrief<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(f, "gen {} ", a.gen)?;
        crate::format::val::fmt_data_type(f, a.data_type)?;
        write!(
            f,
            " dirty {} cached {} stripe_sectors {} stripe {} need_discard {} need_inc_gen {}",
            a.dirty_sectors,
            a.cached_sectors,
            a.stripe_sectors,
            a.stripe,
            a.need_discard(),
            a.need_inc_gen()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(out: &DerivedUpdates) -> std::vec::Vec<(BtreeId, Bpos, bool)> {
        out.bits.iter().map(|b| (b.btree, b.pos, b.set)).collect()
    }

    #[test]
    fn free_to_user_and_back() {
        let bucket = Bpos::pos(0, 100);
        let ctx = AllocTriggerCtx { bucket_size: 512, io_time_now: [7, 9], bucket_is_open: true, invalidate: false };
        let old = AllocV4 { gen: 3, ..Default::default() };
        let mut new = AllocV4 { gen: 3, dirty_sectors: 128, data_type: data_type::USER, ..Default::default() };
        let mut out = DerivedUpdates::new();
        trigger_alloc(bucket, &old, &mut new, &ctx, &mut out).unwrap();
        assert_eq!(new.io_time, [7, 9]);
        assert_eq!((new.need_discard(), new.need_inc_gen()), (1, 1));
        let frag = (128u64 << 31) / 512;
        assert_eq!(
            bits(&out),
            [
                (BtreeId::Freespace, Bpos::pos(0, 100), false),
                (BtreeId::Lru, lru_pos(LRU_FRAGMENTATION_START, 100, frag), true),
            ]
        );
        out.accounting.normalize();
        assert_eq!(out.accounting.get(&DiskAccountingPos::DevDataType { dev: 0, data_type: data_type::USER }), [1, 128, 384]);
        assert_eq!(out.accounting.get(&DiskAccountingPos::DevDataType { dev: 0, data_type: data_type::FREE }), [-1, 0, 0]);

        // Emptied while not open: gen bumped, then need_discard.
        let old2 = new;
        let mut empty = AllocV4 { dirty_sectors: 0, ..new };
        let ctx2 = AllocTriggerCtx { bucket_is_open: false, ..ctx };
        let mut out = DerivedUpdates::new();
        trigger_alloc(bucket, &old2, &mut empty, &ctx2, &mut out).unwrap();
        assert_eq!((empty.gen, empty.need_inc_gen(), empty.data_type), (4, 0, data_type::NEED_DISCARD));
        assert_eq!(
            bits(&out),
            [(BtreeId::NeedDiscard, bucket, true), (BtreeId::Lru, lru_pos(LRU_FRAGMENTATION_START, 100, frag), false)]
        );
        assert_eq!(out.bucket_gens[..], [(bucket, 4)]);
    }

    #[test]
    fn cached_bucket_read_lru_and_invalidate() {
        let bucket = Bpos::pos(0, 7);
        let ctx = AllocTriggerCtx { bucket_size: 512, io_time_now: [50, 60], bucket_is_open: false, invalidate: false };
        let old = AllocV4 { gen: 1, ..Default::default() };
        let mut new = AllocV4 { gen: 1, cached_sectors: 16, ..Default::default() };
        let mut out = DerivedUpdates::new();
        trigger_alloc(bucket, &old, &mut new, &ctx, &mut out).unwrap();
        assert_eq!((new.data_type, new.io_time[0]), (data_type::CACHED, 50));
        assert_eq!(
            bits(&out),
            [(BtreeId::Freespace, Bpos::pos(0, 7), false), (BtreeId::Lru, lru_pos(0, 7, 50), true)]
        );
        // Invalidated: cached sectors dropped, gen bumped, the read LRU
        // entry goes and the cached replicas counter falls.
        let before = new;
        let mut inv = AllocV4 { cached_sectors: 0, ..new };
        let ctx = AllocTriggerCtx { invalidate: true, ..ctx };
        let mut out = DerivedUpdates::new();
        trigger_alloc(bucket, &before, &mut inv, &ctx, &mut out).unwrap();
        assert_eq!((inv.gen, inv.data_type), (2, data_type::NEED_DISCARD));
        assert!(bits(&out).contains(&(BtreeId::Lru, lru_pos(0, 7, 50), false)));
        out.accounting.normalize();
        let cached = crate::accounting::ReplicasEntry::cached(0);
        assert_eq!(out.accounting.get(&DiskAccountingPos::Replicas(cached))[0], -16);
        assert_eq!(out.accounting.get(&DiskAccountingPos::DevDataType { dev: 0, data_type: data_type::CACHED }), [-1, -16, -496]);
    }

    #[test]
    fn freespace_genbits_and_gens_pos() {
        let a = AllocV4 { gen: 40, oldest_gen: 0, ..Default::default() };
        assert_eq!(alloc_freespace_pos(Bpos::pos(1, 5), &a), Bpos::pos(1, 5 | (2 << 56)));
        assert_eq!(alloc_gens_pos(Bpos::pos(0, 0x1234)), (Bpos::pos(0, 0x12), 0x34));
        assert_eq!(bucket_gens_pos_to_alloc(Bpos::pos(0, 0x12), 0x34), Bpos::pos(0, 0x1234));
        assert_eq!(u64_to_bucket(bucket_to_u64(Bpos::pos(3, 77))), Bpos::pos(3, 77));
        assert!(gen_after(1, 255) && !gen_after(255, 1));
        assert!(ptr_too_stale(200, 100) && !ptr_too_stale(196, 100));
    }
}
