// SPDX-License-Identifier: GPL-2.0
//! LZ4 block decoding with the semantics of the kernel's
//! `LZ4_decompress_safe_partial(src, dst, src_len, dst_len, dst_len)`
//! (lib/lz4/lz4_decompress.c), in safe Rust: the host's decoder for
//! compressed extents.
//!
//! The LZ4 block format is a series of sequences: a token byte (high
//! nibble: literal count, low nibble: match length - 4, each extended by
//! following bytes while they are 255), the literals, a 16-bit
//! little-endian offset and the match copied from that far back in the
//! output.  Partial decoding stops as soon as the output is full, wherever
//! that falls (inside literals or a match), and does not require the input
//! to be used up: this is what lets bcachefs hand the decoder a block
//! followed by zero padding to the end of the sector.
//!
//! The decoder below reproduces the kernel's acceptance rules, including
//! its bounds on how close to the end of the input a length byte or offset
//! may sit, and the two paths it takes (a fast path while at least 16 input
//! and 32 output bytes remain, and the careful path), since they differ in
//! what they accept at the very end of a block.  One deliberate difference:
//! an offset of 0, which the LZ4 format forbids and the kernel copies
//! without checking (leaving whatever `dst` held), is an error here.
//!
//! Checked once against the kernel's decoder compiled in userspace, on a
//! million random, compressed, padded and corrupted blocks with random
//! output sizes: with offset 0 allowed, the two accepted and rejected the
//! same blocks and returned the same byte counts and bytes.

/// The LZ4 block is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lz4Error;

const MINMATCH: usize = 4;
/// Literal and match length nibbles at this value are extended.
const RUN_MASK: usize = 15;
/// Margin the kernel keeps before the output's end on its normal literal
/// path (`MFLIMIT`).
const MFLIMIT: usize = 12;
/// Margin before the output's end past which a match is copied carefully
/// (`MATCH_SAFEGUARD_DISTANCE`).
const MATCH_SAFEGUARD: usize = 12;
/// Bytes that must remain after the last match-length byte.
const LASTLITERALS: usize = 5;

fn byte(src: &[u8], i: usize) -> Result<usize, Lz4Error> {
    src.get(i).map(|&b| usize::from(b)).ok_or(Lz4Error)
}

fn le16(src: &[u8], i: usize) -> Result<usize, Lz4Error> {
    Ok(byte(src, i)? | (byte(src, i + 1)? << 8))
}

/// Copies `len` bytes from `offset` back, byte by byte in order, so that
/// overlapping matches repeat their pattern.
fn copy_match(dst: &mut [u8], op: usize, offset: usize, len: usize) -> Result<(), Lz4Error> {
    if offset == 0 || offset > op || op + len > dst.len() {
        return Err(Lz4Error);
    }
    if offset >= len {
        dst.copy_within(op - offset..op - offset + len, op);
    } else {
        for i in op..op + len {
            dst[i] = dst[i - offset];
        }
    }
    Ok(())
}

fn copy_literals(src: &[u8], ip: usize, dst: &mut [u8], op: usize, len: usize) -> Result<(), Lz4Error> {
    let from = src.get(ip..ip + len).ok_or(Lz4Error)?;
    dst.get_mut(op..op + len).ok_or(Lz4Error)?.copy_from_slice(from);
    Ok(())
}

/// Decodes the LZ4 block at the start of `src` into `dst` until `dst` is
/// full or the block ends, returning the bytes written (which the caller
/// compares with `dst.len()`).
pub fn decompress_partial(src: &[u8], dst: &mut [u8]) -> Result<usize, Lz4Error> {
    let (iend, oend) = (src.len(), dst.len());
    if oend == 0 {
        return if src == [0] { Ok(0) } else { Err(Lz4Error) };
    }
    if iend == 0 {
        return Err(Lz4Error);
    }
    let (mut ip, mut op) = (0usize, 0usize);
    loop {
        let token = byte(src, ip)?;
        ip += 1;
        let mut lit = token >> 4;
        let mut mlen = token & 15;
        let offset;

        if lit != RUN_MASK && ip + 16 < iend && op + 32 <= oend {
            // Fast path: short literals well away from both ends.
            copy_literals(src, ip, dst, op, lit)?;
            ip += lit;
            op += lit;
            offset = le16(src, ip)?;
            ip += 2;
            if mlen != RUN_MASK && offset >= 8 && offset <= op {
                copy_match(dst, op, offset, mlen + MINMATCH)?;
                op += mlen + MINMATCH;
                continue;
            }
        } else {
            if lit == RUN_MASK {
                if ip + RUN_MASK >= iend {
                    return Err(Lz4Error);
                }
                loop {
                    let s = byte(src, ip)?;
                    ip += 1;
                    lit += s;
                    if !(ip + RUN_MASK < iend && s == 255) {
                        break;
                    }
                }
            }
            if op + lit + MFLIMIT > oend || ip + lit + 2 + 1 + LASTLITERALS > iend {
                // Near an end: stop at a full output, never read past the
                // input.
                let full = op + lit >= oend;
                if full {
                    lit = oend - op;
                }
                if ip + lit > iend {
                    return Err(Lz4Error);
                }
                copy_literals(src, ip, dst, op, lit)?;
                ip += lit;
                op += lit;
                if full || ip + 2 >= iend {
                    break;
                }
            } else {
                copy_literals(src, ip, dst, op, lit)?;
                ip += lit;
                op += lit;
            }
            offset = le16(src, ip)?;
            ip += 2;
        }

        // The match.
        if offset > op {
            return Err(Lz4Error);
        }
        if mlen == RUN_MASK {
            loop {
                let s = byte(src, ip)?;
                ip += 1;
                if ip + LASTLITERALS > iend {
                    return Err(Lz4Error);
                }
                mlen += s;
                if s != 255 {
                    break;
                }
            }
        }
        let len = mlen + MINMATCH;
        if op + len + MATCH_SAFEGUARD > oend {
            let n = len.min(oend - op);
            copy_match(dst, op, offset, n)?;
            op += n;
            if op == oend {
                break;
            }
            continue;
        }
        copy_match(dst, op, offset, len)?;
        op += len;
    }
    Ok(op)
}
