// SPDX-License-Identifier: GPL-2.0
//! Btree node reader: arbitrary bytes (with the magic the reader expects
//! patched in, so that inputs get past the first check) must give a node or
//! a typed error; a node that reads must sort, search and check values
//! without panicking.
#![no_main]

use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::btree_node::{BtreeNode, NodeReadOpts};
use bcachefs_rs::format::val::FsCtx;
use libfuzzer_sys::fuzz_target;

const MAGIC: u64 = 0x1234_5678_9abc_def0;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    if buf.len() >= 24 {
        buf[16..24].copy_from_slice(&MAGIC.to_le_bytes());
    }
    for (block, verify) in [(4096u32, false), (512, false), (4096, true)] {
        let opts = NodeReadOpts {
            bset_magic: MAGIC,
            block_bytes: block,
            node_bytes: 64 << 10,
            expect: None,
            journal_blacklist: &[(5, 10)],
            verify_csum: verify,
        };
        if let Ok(n) = BtreeNode::read(&buf, &opts) {
            if let Ok(s) = n.sorted() {
                let _ = n.check_values(&s, &FsCtx::default());
                let _ = s.lower_bound(&buf, Bpos::new(4096, 1, 1));
                for k in s.iter(&n) {
                    let _ = k.unpack(n.format());
                }
            }
        }
    }
});
