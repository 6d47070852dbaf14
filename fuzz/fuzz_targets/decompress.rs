// SPDX-License-Identifier: GPL-2.0
//! Decompressors of data extents.  Input: byte 0 is the compression type
//! (low 4 bits) and a mode bit (0x10), bytes 1..4 the uncompressed size
//! (24-bit little-endian, at most 256 KiB), the rest the extent.
//!
//! Every input must give `Ok` or a typed error, never a panic; with the
//! mode bit set, the rest is instead taken as plain data, compressed by
//! the host crates into the layout bcachefs stores (zstd length prefix,
//! sector padding) and must decompress back to itself.
#![no_main]

use std::io::Write;

use bcachefs_rs::compress::decompress;
use libfuzzer_sys::fuzz_target;

fn pad(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(v.len().div_ceil(512).max(1) * 512, 0);
    v
}

fn round_trip(ty: u8, data: &[u8]) {
    let src = match ty {
        1 | 3 => lz4_flex::block::compress(data),
        2 => {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        4 => {
            let z = zstd::bulk::compress(data, 1).unwrap();
            let mut v = (z.len() as u32).to_le_bytes().to_vec();
            v.extend(z);
            v
        }
        _ => return,
    };
    let mut dst = vec![0u8; data.len()];
    if data.is_empty() && (ty == 1 || ty == 3) {
        // An empty LZ4 block is the single byte 0, which padding spoils.
        decompress(ty, &src, &mut dst).unwrap();
        return;
    }
    decompress(ty, &pad(src), &mut dst).unwrap();
    assert!(dst == data);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let ty = data[0] & 15;
    let n = (usize::from(data[1]) | usize::from(data[2]) << 8 | usize::from(data[3]) << 16).min(256 << 10);
    let rest = &data[4..];
    if data[0] & 0x10 != 0 {
        round_trip(ty, rest);
        return;
    }
    let mut dst = vec![0u8; n];
    if let Err(e) = decompress(ty, rest, &mut dst) {
        let _ = e.errno();
        let _ = e.to_string();
    }
});
