// SPDX-License-Identifier: GPL-2.0
//! Round trips through the host crates' compressors, laid out on disk as C
//! bcachefs writes them (zstd length prefix, zero padding to the sector),
//! errors of malformed input, and the LZ4 decoder against `lz4_flex`.

use std::io::Write;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

const LINE: &[u8] = b"bcachefs fixture line\n";

fn text(n: usize) -> Vec<u8> {
    LINE.iter().copied().cycle().take(n).collect()
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Pads `v` with zeros to whole sectors, as `__bio_compress()` does.
fn pad(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(v.len().div_ceil(512).max(1) * 512, 0);
    v
}

fn lz4(data: &[u8]) -> Vec<u8> {
    pad(lz4_flex::block::compress(data))
}

fn zstd_extent(data: &[u8], level: i32) -> Vec<u8> {
    let z = zstd::bulk::compress(data, level).unwrap();
    let mut v = (z.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(&z);
    pad(v)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    pad(e.finish().unwrap())
}

fn encode(ty: CompressionType, data: &[u8]) -> Vec<u8> {
    match ty {
        CompressionType::Lz4 | CompressionType::Lz4Old => lz4(data),
        CompressionType::Gzip => gzip(data),
        CompressionType::Zstd => zstd_extent(data, 3),
        _ => unreachable!(),
    }
}

const ALGOS: [CompressionType; 4] =
    [CompressionType::Lz4Old, CompressionType::Gzip, CompressionType::Lz4, CompressionType::Zstd];

fn inputs() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for n in [512, 4096, 4096 * 3 + 512, 65536, 128 << 10] {
        v.push(text(n));
        v.push(vec![0; n]);
        v.push(noise(n, n as u64));
        let mut mixed = text(n);
        mixed[n / 3..n / 2].copy_from_slice(&noise(n / 2 - n / 3, 7));
        v.push(mixed);
    }
    v
}

#[test]
fn round_trips() {
    for ty in ALGOS {
        for data in inputs() {
            let src = encode(ty, &data);
            let mut dst = vec![0xa5; data.len()];
            decompress(ty as u8, &src, &mut dst).unwrap_or_else(|e| panic!("{}: {} bytes: {e}", ty.name(), data.len()));
            assert!(dst == data, "{}: {} bytes differ", ty.name(), data.len());
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Known answers from independent encoders (not the crates above): 512
/// bytes of the fixture text compressed by the `lz4` 1.9 command (its
/// frame's one block), Python's zlib (raw deflate, wbits -15) and the
/// `zstd` 1.5 command (level 19), each laid out as bcachefs stores it.
#[test]
fn known_answers() {
    let want = text(512);
    let lz4_block = unhex("ff0762636163686566732066697874757265206c696e650a1600ffd3506361636865");
    let deflate = unhex("4b4a4e4cce484d2b5648cbac28292d4a55c8c9cc4be54a1a151d21a200");
    let zstd_frame =
        unhex("28b52ffd640001ed0000b062636163686566732066697874757265206c696e650a0100ce539d4d79c7083a");
    let mut zstd_src = (zstd_frame.len() as u32).to_le_bytes().to_vec();
    zstd_src.extend(&zstd_frame);
    for (ty, src) in [(1, pad(lz4_block.clone())), (3, pad(lz4_block)), (2, pad(deflate)), (4, pad(zstd_src))] {
        let mut dst = vec![0; 512];
        decompress(ty, &src, &mut dst).unwrap_or_else(|e| panic!("type {ty}: {e}"));
        assert_eq!(dst, want, "type {ty}");
    }
}

#[test]
fn zstd_levels_and_two_frames() {
    let data = text(40 << 10);
    for level in [1, 3, 9, 19, 22] {
        let mut dst = vec![0; data.len()];
        decompress(4, &zstd_extent(&data, level), &mut dst).unwrap();
        assert_eq!(dst, data);
    }
    // ZSTD_decompressDCtx decodes concatenated frames, as the kernel's does.
    let (a, b) = data.split_at(1000);
    let mut z = zstd::bulk::compress(a, 3).unwrap();
    z.extend(zstd::bulk::compress(b, 3).unwrap());
    let mut src = (z.len() as u32).to_le_bytes().to_vec();
    src.extend(z);
    let mut dst = vec![0; data.len()];
    decompress(4, &pad(src), &mut dst).unwrap();
    assert_eq!(dst, data);
}

#[test]
fn output_size_must_match() {
    let data = text(8192);
    for ty in ALGOS {
        let src = encode(ty, &data);
        // More room than the data fills.
        let mut big = vec![0; data.len() + 512];
        let e = decompress(ty as u8, &src, &mut big).unwrap_err();
        assert_eq!(e.errno(), Errno::EIO, "{}", ty.name());
        if ty == CompressionType::Lz4 || ty == CompressionType::Lz4Old {
            assert_eq!(e, DecompressError::Lz4, "the padding is not a valid continuation");
        }
        // Less room: LZ4 stops when full (partial decoding), and that
        // is success, as in C; the others fail.
        let mut small = vec![0; data.len() - 512];
        let r = decompress(ty as u8, &src, &mut small);
        if ty == CompressionType::Lz4 || ty == CompressionType::Lz4Old {
            r.unwrap();
            assert_eq!(small[..], data[..small.len()]);
        } else {
            assert_eq!(r.unwrap_err().errno(), Errno::EIO, "{}", ty.name());
        }
    }
    // An LZ4 block that ends early is a size mismatch.
    let src = pad(lz4_flex::block::compress(&data[..4000]));
    let mut dst = vec![0; 4096];
    assert_eq!(decompress(3, &src[..], &mut dst), Err(DecompressError::Lz4));
    let exact = lz4_flex::block::compress(&data[..4000]);
    assert_eq!(
        decompress(3, &exact, &mut dst),
        Err(DecompressError::SizeMismatch { expected: 4096, got: 4000 })
    );
    // A short gzip stream: C takes it, we do not.
    let src = gzip(&data[..4000]);
    assert_eq!(decompress(2, &src, &mut dst), Err(DecompressError::SizeMismatch { expected: 4096, got: 4000 }));
}

#[test]
fn types_that_are_not_compression() {
    let mut dst = [0u8; 512];
    assert_eq!(decompress(0, &[0; 512], &mut dst), Err(DecompressError::NotCompressed(CompressionType::None)));
    assert_eq!(
        decompress(5, &[0; 512], &mut dst),
        Err(DecompressError::NotCompressed(CompressionType::Incompressible))
    );
    for t in 6..16 {
        assert_eq!(decompress(t, &[0; 512], &mut dst), Err(DecompressError::UnknownType(t)));
    }
    for (i, t) in COMPRESSION_TYPES.iter().enumerate() {
        assert_eq!(CompressionType::from_u8(i as u8), Some(*t));
        assert_eq!(*t as usize, i);
    }
    let names: Vec<&str> = COMPRESSION_TYPES.iter().map(|t| t.name()).collect();
    assert_eq!(names, crate::format::val::COMPRESSION_TYPE_NAMES);
}

#[test]
fn zstd_length_prefix() {
    let data = text(4096);
    let mut dst = vec![0; data.len()];
    assert_eq!(decompress(4, &[1, 0], &mut dst), Err(DecompressError::ZstdLength { stored: 0, available: 0 }));
    let mut src = zstd_extent(&data, 3);
    let avail = src.len() - 4;
    src[..4].copy_from_slice(&(avail as u32 + 1).to_le_bytes());
    assert_eq!(
        decompress(4, &src, &mut dst),
        Err(DecompressError::ZstdLength { stored: avail as u32 + 1, available: avail })
    );
    // The whole padded range is not a zstd frame: the length must be exact.
    src[..4].copy_from_slice(&(avail as u32).to_le_bytes());
    assert!(matches!(decompress(4, &src, &mut dst), Err(DecompressError::Zstd(_))));
}

#[test]
fn lz4_edge_cases() {
    let mut dst = [0u8; 0];
    assert_eq!(lz4::decompress_partial(&[0], &mut dst), Ok(0));
    assert_eq!(lz4::decompress_partial(&[1], &mut dst), Err(lz4::Lz4Error));
    let mut dst = [0u8; 16];
    assert_eq!(lz4::decompress_partial(&[], &mut dst), Err(lz4::Lz4Error));
    // Literal "ab", then a match at offset 0: not allowed.
    assert_eq!(lz4::decompress_partial(&[0x24, b'a', b'b', 0, 0, 0x50, 1, 2, 3, 4, 5], &mut dst), Err(lz4::Lz4Error));
    // A match reaching before the start of the output.
    assert_eq!(lz4::decompress_partial(&[0x24, b'a', b'b', 3, 0, 0x50, 1, 2, 3, 4, 5], &mut dst), Err(lz4::Lz4Error));
    // "ab" then an overlapping match of 8 at offset 2 and five literals.
    let mut dst = [0u8; 15];
    assert_eq!(lz4::decompress_partial(&[0x24, b'a', b'b', 2, 0, 0x50, b'1', b'2', b'3', b'4', b'5'], &mut dst), Ok(15));
    assert_eq!(&dst, b"ababababab12345");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(ty in 0u8..16, src in proptest::collection::vec(any::<u8>(), 0..2048), n in 0usize..8192) {
        let mut dst = vec![0; n];
        if let Err(e) = decompress(ty, &src, &mut dst) {
            let _ = e.errno();
            let _ = std::format!("{e}");
        }
    }

    #[test]
    fn mutated_extents_never_panic(ty in 1u8..5, data in proptest::collection::vec(0u8..4, 1..4096), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut src = encode(CompressionType::from_u8(ty).unwrap(), &data);
        for (at, x) in flips {
            let i = at % src.len();
            src[i] ^= x;
        }
        let mut dst = vec![0; data.len()];
        let _ = decompress(ty, &src, &mut dst);
    }

    /// Without padding and with the exact size, partial decoding accepts
    /// what a full LZ4 decoder does and gives the same bytes.
    #[test]
    fn lz4_agrees_with_lz4_flex(data in proptest::collection::vec(0u8..6, 0..5000)) {
        let c = lz4_flex::block::compress(&data);
        let mut dst = vec![0; data.len()];
        let n = lz4::decompress_partial(&c, &mut dst);
        if data.is_empty() {
            prop_assert_eq!(n, Ok(0));
        } else {
            prop_assert_eq!(n, Ok(data.len()));
            prop_assert_eq!(&dst, &data);
        }
    }

    /// On arbitrary blocks the two decoders may disagree only where the
    /// partial decoder stops early: whatever both accept decodes alike.
    #[test]
    fn lz4_arbitrary_blocks_match_lz4_flex(src in proptest::collection::vec(any::<u8>(), 1..300), n in 1usize..600) {
        let mut ours = vec![0; n];
        let mut theirs = vec![0; n];
        if let (Ok(a), Ok(b)) = (lz4::decompress_partial(&src, &mut ours), lz4_flex::block::decompress_into(&src, &mut theirs)) {
            if a == n && b == n {
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}
