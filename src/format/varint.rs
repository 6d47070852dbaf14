// SPDX-License-Identifier: GPL-2.0
//! The variable-length integers of inode values: `bch2_varint_encode()`
//! and `bch2_varint_decode()` in `fs/bcachefs/varint.c`.
//!
//! A value is stored in 1 to 9 bytes.  The number of trailing one bits of
//! the first byte, plus one, is the length `n`:
//!
//! - `n < 9`: the `n` bytes, read as a little-endian integer, hold the value
//!   shifted left by `n` bits, below it `n - 1` one bits and a zero bit;
//!   so `n` bytes carry `7 * n` bits of value.
//! - `n == 9`: the first byte is `0xff` and the next eight bytes are the
//!   value, little-endian.
//!
//! The encoding is not canonical on input: a decoder accepts a longer form
//! than necessary, as C does.

/// Longest encoding, in bytes.
pub const VARINT_MAX_BYTES: usize = 9;

/// Why a varint could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The buffer ends before the varint does.
    Truncated {
        /// Bytes the varint needs.
        need: usize,
        /// Bytes left in the buffer.
        have: usize,
    },
}

impl core::fmt::Display for VarintError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            VarintError::Truncated { need, have } => {
                write!(f, "varint truncated: needs {need} bytes, {have} left")
            }
        }
    }
}

/// Bytes [`encode`] uses for `v`.
pub fn encoded_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    let bytes = bits.div_ceil(7);
    if bytes < 9 {
        bytes
    } else {
        9
    }
}

/// Encodes `v` into `out`, returning the number of bytes written (1..=9).
///
/// Returns `None` when `out` is shorter than [`encoded_len`] of `v`.
pub fn encode(out: &mut [u8], v: u64) -> Option<usize> {
    let n = encoded_len(v);
    let dst = out.get_mut(..n)?;
    if n < 9 {
        // n <= 8, so the shift is at most 8 and the value fits: n bytes
        // carry 7n bits and v has at most 7n significant bits.
        let w = (v << n) | ((1u64 << (n - 1)) - 1);
        dst.copy_from_slice(&w.to_le_bytes()[..n]);
    } else {
        dst[0] = 0xff;
        dst[1..].copy_from_slice(&v.to_le_bytes());
    }
    Some(n)
}

/// Decodes one varint from the start of `buf`, returning the value and the
/// number of bytes it took.
///
/// Errors: [`VarintError::Truncated`] when `buf` is empty or shorter than
/// the length the first byte announces.
pub fn decode(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let first = *buf.first().ok_or(VarintError::Truncated { need: 1, have: 0 })?;
    let n = first.trailing_ones() as usize + 1;
    let src = buf.get(..n).ok_or(VarintError::Truncated { need: n, have: buf.len() })?;
    let v = if n < 9 {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(src);
        u64::from_le_bytes(w) >> n
    } else {
        let mut w = [0u8; 8];
        w.copy_from_slice(&src[1..9]);
        u64::from_le_bytes(w)
    };
    Ok((v, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let mut b = [0u8; 9];
        assert_eq!(encode(&mut b, 0), Some(1));
        assert_eq!(b[0], 0);
        assert_eq!(encode(&mut b, 1), Some(1));
        assert_eq!(b[0], 2);
        assert_eq!(encode(&mut b, 127), Some(1));
        assert_eq!(b[0], 0xfe);
        assert_eq!(encode(&mut b, 128), Some(2));
        assert_eq!(&b[..2], &[0x01, 0x02]);
        assert_eq!(encode(&mut b, u64::MAX), Some(9));
        assert_eq!(b, [0xff; 9]);
        assert_eq!(encode(&mut b, 1 << 56), Some(9));
        assert_eq!(encoded_len((1 << 56) - 1), 8);
        assert_eq!(encode(&mut b[..1], 128), None);
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert_eq!(decode(&[]), Err(VarintError::Truncated { need: 1, have: 0 }));
        assert_eq!(decode(&[0x01]), Err(VarintError::Truncated { need: 2, have: 1 }));
        assert_eq!(decode(&[0xff; 8]), Err(VarintError::Truncated { need: 9, have: 8 }));
        // A non-canonical (longer) form still decodes.
        assert_eq!(decode(&[0x05, 0x00]), Ok((1, 2)));
    }

    proptest! {
        #[test]
        fn round_trip(v in any::<u64>()) {
            let mut b = [0u8; 9];
            let n = encode(&mut b, v).unwrap();
            prop_assert_eq!(n, encoded_len(v));
            prop_assert_eq!(decode(&b[..n]), Ok((v, n)));
            // Trailing bytes are not consumed.
            let mut long = [0xaau8; 12];
            long[..n].copy_from_slice(&b[..n]);
            prop_assert_eq!(decode(&long), Ok((v, n)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = decode(&b);
        }
    }
}
