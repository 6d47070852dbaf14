// SPDX-License-Identifier: GPL-2.0
//! Key parsers: a key format from the first 56 bytes, then keys and their
//! values; unpack, common and per-type checks, and `list` text must never
//! panic, and a key that unpacks must pack back to the same key.
#![no_main]

use bcachefs_rs::format::bkey::{BkeyFormat, KeyIter, NodeType, BKEY_FORMAT_BYTES};
use bcachefs_rs::format::val::{validate_val, FsCtx, KeyDisplay, ValidateFlags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < BKEY_FORMAT_BYTES + 1 {
        return;
    }
    let mut fb = [0u8; BKEY_FORMAT_BYTES];
    fb.copy_from_slice(&data[..BKEY_FORMAT_BYTES]);
    let mut f = BkeyFormat::from_bytes(&fb);
    if f.validate().is_err() {
        f = BkeyFormat::CURRENT;
    }
    let node = NodeType::new(data[BKEY_FORMAT_BYTES] & 1, u32::from(data[BKEY_FORMAT_BYTES] >> 1) % 24);
    for k in KeyIter::new(&data[BKEY_FORMAT_BYTES + 1..], f).flatten() {
        let u = k.unpack(&f);
        let v = k.val(&f);
        let _ = u.validate(node, true);
        let _ = validate_val(&u, v, &FsCtx::default(), ValidateFlags { write: true, commit: true });
        let _ = KeyDisplay { k: &u, v, ctx: None }.to_string();
        if k.is_packed() {
            let mut out = [0u8; 64];
            let n = f.pack_key(&u, &mut out).expect("an unpacked key packs");
            assert_eq!(f.unpack_key(&out[..n]).unwrap(), u);
        }
    }
});
