// SPDX-License-Identifier: GPL-2.0
//! Little-endian integers read out of on-disk bytes (`le16_to_cpu()` and
//! friends on a field of a byte buffer).
//!
//! A field that runs past the end of the slice reads as zero: the parsers
//! check lengths first wherever a short buffer is an error, so this only
//! decides what an out-of-range read gives instead of a panic.

/// The `u16` at byte `at`.
pub fn le16(b: &[u8], at: usize) -> u16 {
    let mut w = [0u8; 2];
    if let Some(s) = at.checked_add(2).and_then(|end| b.get(at..end)) {
        w.copy_from_slice(s);
    }
    u16::from_le_bytes(w)
}

/// The `u32` at byte `at`.
pub fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = at.checked_add(4).and_then(|end| b.get(at..end)) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

/// The `u64` at byte `at`.
pub fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = at.checked_add(8).and_then(|end| b.get(at..end)) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_zero_past_the_end() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le16(&b, 1), 0x0302);
        assert_eq!(le32(&b, 0), 0x04030201);
        assert_eq!(le64(&b, 1), 0x0908070605040302);
        assert_eq!(le64(&b, 2), 0);
        assert_eq!(le32(&b, usize::MAX), 0);
    }
}
