// SPDX-License-Identifier: GPL-2.0
//! Known answers for the decompressors: the lz4 extents C bcachefs wrote in
//! tests/fixtures/c-unclean-crc64-lz4.bchimg decompress, with
//! `bcachefs_rs::compress::decompress`, to the file contents the fixture
//! script wrote (see tests/fixtures/README.md and make.sh), and their
//! checksums match what C stored.
//!
//! With `BCH_DUMP_EXTENTS=<dir>` set, each extent is also written there in
//! the input format of the `decompress` fuzz target (fuzz/README.md).

use std::collections::HashMap;

use bcachefs_rs::checksum::{checksum, CsumType};
use bcachefs_rs::compress::{decompress, CompressionType};
use bcachefs_rs::bcachefs::{Fs, OpenOpts};
use bcachefs_rs::format::bkey::{Bkey, BtreeId, KeyType};
use bcachefs_rs::format::bpos::POS_MIN;
use bcachefs_rs::format::val::extent::{ExtentEntries, ExtentEntry};
use bcachefs_rs::format::val::inode::unpack;
use bcachefs_rs::platform::SECTOR_SIZE;

mod common;
use common::{unpack_image, MemDev};

/// Byte `x` of a file of `size` bytes as make.sh wrote it.
fn expected_byte(size: u64, x: u64) -> u8 {
    const LINE: &[u8] = b"bcachefs fixture line\n";
    const SPARSE: &[u8] = b"end of sparse file\n";
    if x >= size {
        return 0;
    }
    match size {
        1 => b'x',
        409619 => x.checked_sub(409600).map_or(0, |i| SPARSE[i as usize]),
        _ => LINE[(x % LINE.len() as u64) as usize],
    }
}

#[test]
fn c_lz4_extents_decompress_to_the_files() {
    let fs = Fs::open(MemDev(unpack_image("c-unclean-crc64-lz4.bchimg")), &OpenOpts::default()).unwrap();
    let dev = fs.dev();
    let keys = |b: BtreeId| -> Vec<(Bkey, Vec<u8>)> {
        let mut it = fs.iter(b, POS_MIN, true);
        std::iter::from_fn(|| it.next().unwrap().map(|k| (k.k, k.v.to_vec()))).collect()
    };

    let mut sizes: HashMap<u64, u64> = HashMap::new();
    for (k, v) in keys(BtreeId::Inodes).iter() {
        if k.key_type == KeyType::InodeV3 as u8 {
            sizes.insert(k.p.offset, unpack(k, v).unwrap().size);
        }
    }

    let (mut extents, mut bytes_checked) = (0, 0u64);
    let mut files = std::collections::BTreeSet::new();
    for (k, v) in keys(BtreeId::Extents).iter() {
        if k.key_type != KeyType::Extent as u8 {
            continue;
        }
        let mut crc = None;
        for en in ExtentEntries::new(v) {
            match en.unwrap() {
                ExtentEntry::Crc(c) => crc = Some(c),
                ExtentEntry::Ptr(p) if !p.cached => {
                    let Some(c) = crc else { continue };
                    if c.compression_type != CompressionType::Lz4 as u8 {
                        continue;
                    }
                    let start = p.offset as usize * SECTOR_SIZE;
                    let src = &dev.0[start..start + c.compressed_size as usize * SECTOR_SIZE];
                    // The data checksum covers the compressed bytes.
                    let ty = CsumType::from_u8(c.csum_type).unwrap();
                    assert_eq!(checksum(ty, src).unwrap(), c.csum, "checksum of the extent at {}", p.offset);
                    let mut dst = vec![0u8; c.uncompressed_size as usize * SECTOR_SIZE];
                    decompress(c.compression_type, src, &mut dst).unwrap();
                    if let Some(dir) = std::env::var_os("BCH_DUMP_EXTENTS") {
                        // Seeds for fuzz/fuzz_targets/decompress.rs.
                        let mut seed = vec![c.compression_type];
                        seed.extend_from_slice(&(dst.len() as u32).to_le_bytes()[..3]);
                        seed.extend_from_slice(src);
                        std::fs::write(std::path::Path::new(&dir).join(format!("c-lz4-{}", p.offset)), seed).unwrap();
                    }

                    let size = sizes[&k.p.inode];
                    let file_start = (k.p.offset - u64::from(k.size)) * SECTOR_SIZE as u64;
                    let live = &dst[c.offset as usize * SECTOR_SIZE..][..k.size as usize * SECTOR_SIZE];
                    for (i, &b) in live.iter().enumerate() {
                        let x = file_start + i as u64;
                        assert_eq!(b, expected_byte(size, x), "inode {} byte {x}", k.p.inode);
                    }
                    // A wrong size is an error, never a silent success.
                    let mut longer = vec![0u8; dst.len() + SECTOR_SIZE];
                    assert!(decompress(c.compression_type, src, &mut longer).is_err());

                    extents += 1;
                    bytes_checked += live.len() as u64;
                    files.insert(size);
                }
                _ => {}
            }
        }
    }
    eprintln!("{extents} lz4 extents, {bytes_checked} live bytes checked");
    assert!(extents > 0);
    // f1m alone is 1 MiB of compressible text.
    assert!(files.contains(&(1 << 20)), "{files:?}");
    assert!(bytes_checked >= 1 << 20, "{bytes_checked}");
}
