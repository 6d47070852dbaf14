// SPDX-License-Identifier: GPL-2.0
//! Shared by the integration tests that read the images C bcachefs wrote
//! (`tests/fixtures/`): unpacking `pack.py`'s format and an in-memory
//! block device over the result.

use std::fs;

use bcachefs_rs::errcode::Errno;
use bcachefs_rs::platform::{BlockDev, SECTOR_SIZE};

/// Decoder of pack.py's token stream: literal runs (tag 0) and
/// back-references (tag 1, length then distance), LEB128 numbers.
fn unpack_tokens(b: &[u8]) -> Vec<u8> {
    fn leb(b: &[u8], i: &mut usize) -> usize {
        let (mut v, mut shift) = (0usize, 0);
        loop {
            let c = b[*i];
            *i += 1;
            v |= ((c & 0x7f) as usize) << shift;
            shift += 7;
            if c & 0x80 == 0 {
                return v;
            }
        }
    }
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        let tag = b[i];
        i += 1;
        let n = leb(b, &mut i);
        if tag == 0 {
            out.extend_from_slice(&b[i..i + n]);
            i += n;
        } else {
            let d = leb(b, &mut i);
            for _ in 0..n {
                out.push(out[out.len() - d]);
            }
        }
    }
    out
}

/// The whole image `tests/fixtures/<name>`: `BCHIMG1\0`, image size (u64),
/// block size and number of stored blocks (u32 each), their indices, then
/// the blocks; every other block is zero.
pub fn unpack_image(name: &str) -> Vec<u8> {
    // The workspace root's tests/fixtures, from the root crate or from a
    // member (tools/) that includes this file.
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = [format!("{root}/tests/fixtures"), format!("{root}/../tests/fixtures")]
        .into_iter()
        .find(|d| std::path::Path::new(d).is_dir())
        .expect("tests/fixtures not found");
    let p = unpack_tokens(&fs::read(format!("{dir}/{name}")).unwrap());
    assert_eq!(&p[..8], b"BCHIMG1\0");
    let le32 = |at: usize| u32::from_le_bytes(p[at..at + 4].try_into().unwrap()) as usize;
    let size = u64::from_le_bytes(p[8..16].try_into().unwrap()) as usize;
    let (block, nr) = (le32(16), le32(20));
    let mut img = vec![0u8; size];
    let mut at = 24 + 4 * nr;
    for j in 0..nr {
        let i = le32(24 + 4 * j);
        img[i * block..(i + 1) * block].copy_from_slice(&p[at..at + block]);
        at += block;
    }
    img
}

/// An image in memory as a [`BlockDev`].
pub struct MemDev(pub Vec<u8>);

impl BlockDev for MemDev {
    fn name(&self) -> &str {
        "fixture"
    }

    fn nr_sectors(&self) -> u64 {
        (self.0.len() / SECTOR_SIZE) as u64
    }

    fn read_sectors(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let s = sector as usize * SECTOR_SIZE;
        buf.copy_from_slice(self.0.get(s..s + buf.len()).ok_or(Errno::EIO)?);
        Ok(())
    }
}
