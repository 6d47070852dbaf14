// SPDX-License-Identifier: GPL-2.0
//! The write path on damaged volumes: the input picks one of four small
//! valid volumes (clean/unclean, with/without metadata checksums) and
//! patches their superblock, journal buckets and btree nodes (format in
//! `tests/common/write_fuzz.rs`); the result is opened read-write
//! (journal replay), written, fsync'd, shut down, opened read-only and
//! checked with `gc::check_fs`.  Errors are fine; a panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/write_fuzz.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let _ = harness::exercise(harness::corrupt(data));
});
