// SPDX-License-Identifier: GPL-2.0
//! Backpointers: for every dirty pointer into a bucket, a key in the
//! backpointers btree naming the key that points there
//! (`backpointers.c`, `backpointers.h`).
//!
//! A backpointer's position is `dev:((bucket * bucket_size) << 10) +
//! bucket_offset`, where `bucket_offset` is the pointer's offset in the
//! bucket in sectors shifted left by [`MAX_EXTENT_COMPRESS_RATIO_SHIFT`]
//! (10), plus the checksum entry's offset into the uncompressed data, so
//! that several compressed extents starting at the same sector get
//! distinct positions (`bucket_pos_to_bp()`).

use crate::format::bpos::Bpos;
use crate::format::val::alloc::{Backpointer, MAX_EXTENT_COMPRESS_RATIO_SHIFT};

/// `bucket_pos_to_bp()`: the backpointer position for `bucket` (dev:bucket)
/// on a device with `bucket_size` sectors per bucket and `bucket_offset`
/// as stored in the backpointer (sectors << 10 + crc offset).
pub fn bucket_pos_to_bp(bucket: Bpos, bucket_size: u32, bucket_offset: u64) -> Bpos {
    let sector = bucket.offset.wrapping_mul(u64::from(bucket_size));
    Bpos::pos(bucket.inode, (sector << MAX_EXTENT_COMPRESS_RATIO_SHIFT).wrapping_add(bucket_offset))
}

/// `bp_pos_to_bucket()`: the bucket (dev:bucket) a backpointer position is
/// in; `None` for a bucket size of 0.
pub fn bp_pos_to_bucket(bp_pos: Bpos, bucket_size: u32) -> Option<Bpos> {
    let bs = u64::from(bucket_size);
    if bs == 0 {
        return None;
    }
    Some(Bpos::pos(bp_pos.inode, (bp_pos.offset >> MAX_EXTENT_COMPRESS_RATIO_SHIFT) / bs))
}

/// `__bch2_extent_ptr_to_bp()`: the bucket a pointer at device sector
/// `ptr_offset` on `dev` is in, and the backpointer for it.
///
/// `btree_id`, `level`: where the pointing key lives (for a btree node
/// pointer, the level of the node holding the pointer: the root's pointer
/// has the root's level + 1); `data_type`: `bch2_bkey_ptr_data_type()`;
/// `crc_offset`: the checksum entry's `offset`; `sectors`: the pointer's
/// disk sectors (`ptr_disk_sectors()`); `pos`: the pointing key's position.
#[allow(clippy::too_many_arguments)]
pub fn extent_ptr_to_bp(
    dev: u8,
    ptr_offset: u64,
    bucket_size: u32,
    btree_id: u8,
    level: u8,
    data_type: u8,
    crc_offset: u32,
    sectors: u64,
    pos: Bpos,
) -> Option<(Bpos, Backpointer)> {
    let bs = u64::from(bucket_size);
    if bs == 0 {
        return None;
    }
    let bucket = Bpos::pos(u64::from(dev), ptr_offset / bs);
    let in_bucket = ptr_offset % bs;
    let bp = Backpointer {
        btree_id,
        level,
        data_type,
        bucket_offset: (in_bucket << MAX_EXTENT_COMPRESS_RATIO_SHIFT) + u64::from(crc_offset),
        // `bucket_len` is a u32 in C: the assignment truncates.
        bucket_len: sectors as u32,
        pos,
    };
    Some((bucket, bp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_as_c_shifts_them() {
        let (bucket, bp) = extent_ptr_to_bp(0, 1024 * 3 + 5, 1024, 0, 0, 4, 7, 8, Bpos::new(4096, 16, u32::MAX)).unwrap();
        assert_eq!(bucket, Bpos::pos(0, 3));
        assert_eq!(bp.bucket_offset, (5 << 10) + 7);
        let p = bucket_pos_to_bp(bucket, 1024, bp.bucket_offset);
        assert_eq!(p, Bpos::pos(0, ((3 * 1024) << 10) + (5 << 10) + 7));
        assert_eq!(bp_pos_to_bucket(p, 1024), Some(bucket));
    }
}
