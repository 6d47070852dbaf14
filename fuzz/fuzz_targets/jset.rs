// SPDX-License-Identifier: GPL-2.0
//! Journal parsers: a jset (magic patched in), its entries, their checks
//! and text, and the bucket scanner must never panic.
#![no_main]

use bcachefs_rs::format::jset::{scan_bucket, Jset, JsetHeaderInfo, replay_range};
use bcachefs_rs::format::val::FsCtx;
use libfuzzer_sys::fuzz_target;

const MAGIC: u64 = 0xabcdef;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    if buf.len() >= 24 {
        buf[16..24].copy_from_slice(&MAGIC.to_le_bytes());
    }
    if let Ok(j) = Jset::parse(&buf, MAGIC) {
        let _ = j.verify_csum();
        let _ = j.validate(&FsCtx::default());
        for e in j.entries().flatten() {
            let mut s = String::new();
            let _ = e.fmt(&mut s, None);
            let _ = e.validate(&FsCtx::default(), true);
        }
    }
    if let Ok(found) = scan_bucket(&buf, MAGIC, 512) {
        let info: Vec<JsetHeaderInfo> = found.iter().map(JsetHeaderInfo::from).collect();
        let _ = replay_range(&info, &[(3, 4)]);
    }
});
