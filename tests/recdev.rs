// SPDX-License-Identifier: GPL-2.0
//! `platform::RecDev` with the read side on top: a volume written through
//! the recording device opens from its crash images as the cache model
//! says it must (whole after the flush, nothing before it), and torn
//! crash images of it open or fail cleanly, never panic.

use bcachefs_rs::bcachefs::{Fs, OpenError, OpenOpts};
use bcachefs_rs::format::bkey::BtreeId;
use bcachefs_rs::format::bpos::POS_MIN;
use bcachefs_rs::platform::{BlockDev, CrashPolicy, MemImage, RecDev, WriteFlags, SECTOR_SIZE};

#[allow(dead_code)]
mod common;

const UNCLEAN: &str = "c-unclean-crc64-lz4.bchimg";

/// Keys of the dirents btree, as positions.
fn dirents<D: BlockDev>(fs: &Fs<D>) -> Vec<u64> {
    let mut it = fs.iter(BtreeId::Dirents, POS_MIN, false);
    std::iter::from_fn(|| it.next().unwrap().map(|k| k.k.p.offset)).collect()
}

/// The fixture copied onto a zeroed `RecDev` with plain 64 KiB writes of
/// its nonzero parts, then one flush.
fn recorded() -> (RecDev, Vec<u8>) {
    let img = common::unpack_image(UNCLEAN);
    let dev = RecDev::zeroed("rec", (img.len() / SECTOR_SIZE) as u64);
    for (i, c) in img.chunks(64 << 10).enumerate() {
        if c.iter().any(|&b| b != 0) {
            dev.write_sectors((i * 128) as u64, c, WriteFlags::NONE).unwrap();
        }
    }
    dev.flush().unwrap();
    (dev, img)
}

#[test]
fn a_flushed_volume_survives_and_an_unflushed_one_does_not() {
    let (dev, img) = recorded();
    let last = dev.nr_ops() - 1;
    assert_eq!(dev.flush_points(), [last]);
    let want = dirents(&Fs::open(MemImage::from_bytes(&img), &OpenOpts::default()).unwrap());
    assert!(want.len() > 40);
    // After the flush, nothing is lost, whatever the policy.
    for policy in [CrashPolicy::DropAll, CrashPolicy::Random { seed: 1 }] {
        let c = dev.crash_image(last, policy);
        assert_eq!(c, dev.image());
        assert_eq!(dirents(&Fs::open(c, &OpenOpts::default()).unwrap()), want);
    }
    // Just before it, everything may be lost: not bcachefs at all.
    let e = Fs::open(dev.crash_image(last - 1, CrashPolicy::DropAll), &OpenOpts::default()).err().unwrap();
    assert!(matches!(e, OpenError::Sb(_)), "{e}");
    // Or all of it may have landed anyway.
    let c = dev.crash_image(last - 1, CrashPolicy::KeepAll);
    assert_eq!(c.to_vec(), img);
}

#[test]
fn torn_images_open_or_fail_cleanly() {
    let (dev, _) = recorded();
    let before_flush = dev.nr_ops() - 2;
    // About half of each write's sectors land, so most images are not a
    // filesystem any more; whatever opens must iterate without a panic.
    for seed in 0..24 {
        let c = dev.crash_image(before_flush, CrashPolicy::Random { seed });
        if let Ok(fs) = Fs::open(c, &OpenOpts::default()) {
            for b in [BtreeId::Extents, BtreeId::Inodes, BtreeId::Dirents] {
                let mut it = fs.iter(b, POS_MIN, true);
                while let Ok(Some(_)) = it.next() {}
            }
        }
    }
}
