// SPDX-License-Identifier: GPL-2.0
//! Superblock parser: probe, parse, checksum and validation of arbitrary
//! bytes must return, never panic.
#![no_main]

use bcachefs_rs::format::list::FsInfo;
use bcachefs_rs::format::sb::{probe, Sb, ValidateMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = probe(data);
    if let Ok(sb) = Sb::parse(data) {
        let _ = sb.verify_csum();
        let _ = sb.validate(ValidateMode::Read);
        let _ = sb.validate(ValidateMode::Write);
        for f in sb.fields() {
            let _ = f;
        }
        let _ = sb.members().count();
        let _ = FsInfo::from_sb(&sb);
    }
});
