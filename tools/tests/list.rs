// SPDX-License-Identifier: GPL-2.0
//! `bcachefs list` on the images C bcachefs wrote (tests/fixtures/): the
//! output is byte for byte what the tool printed before it moved onto the
//! core's `Fs` and iterator (FNV-1a hashes of that output, recorded with
//! the previous tool), plus the properties the kselftests rely on
//! (20-c-writes-we-list, 31-ro-unclean-journal, 32-ro-damage).

use std::path::PathBuf;
use std::process::{Command, Output};

#[allow(dead_code)]
#[path = "../../tests/common/mod.rs"]
mod common;

const CLEAN: &str = "c-clean-siphash.bchimg";
const UNCLEAN: &str = "c-unclean-crc64-lz4.bchimg";

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3))
}

/// The fixture unpacked into a file of its own (tests run in parallel).
fn image(name: &str, tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("bch-tool-list-{}-{tag}-{name}.img", std::process::id()));
    std::fs::write(&p, common::unpack_image(name)).unwrap();
    p
}

fn tool(args: &[&str], img: &PathBuf) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bcachefs")).args(args).arg(img).output().unwrap()
}

/// Runs the tool, which must succeed without a word on stderr.
fn ok(args: &[&str], img: &PathBuf) -> String {
    let o = tool(args, img);
    assert!(o.status.success() && o.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn output_is_what_the_previous_tool_printed() {
    for (name, hashes, lines) in [
        (CLEAN, [0x2a63_87e9_34ac_4dd1u64, 0xc79f_a4c7_8a4c_b643, 0xe8e9_0159_23a0_a655, 0xcdd1_c1a9_e6ec_03ef], [2411, 13, 10]),
        (UNCLEAN, [0x9a0b_fea4_e0bf_96a7, 0x04dd_26ed_3b46_97c0, 0xec8b_0522_8cf2_e303, 0x5134_321d_6983_5b73], [2333, 12, 6]),
    ] {
        let img = image(name, "golden");
        let keys = ok(&["list"], &img);
        let source = ok(&["list", "--source"], &img);
        let nodes = ok(&["list", "--nodes"], &img);
        let jsets = ok(&["list", "--jsets"], &img);
        assert_eq!([keys.lines().count(), nodes.lines().count(), jsets.lines().count()], lines, "{name}");
        let got = [&keys, &source, &nodes, &jsets].map(|s| fnv1a(s.as_bytes()));
        assert_eq!(got, hashes, "{name}: list, --source, --nodes, --jsets");
        // The fixtures' btrees are one leaf each: nothing above level 0.
        assert_eq!(ok(&["list", "-l", "1"], &img), "");
        std::fs::remove_file(img).unwrap();
    }
}

#[test]
fn source_marks_the_journal_keys_of_an_unclean_volume() {
    let img = image(UNCLEAN, "source");
    let out = ok(&["list", "--source", "-b", "inodes,dirents,extents"], &img);
    let nj = out.lines().filter(|l| l.starts_with("journal ")).count();
    let nb = out.lines().filter(|l| l.starts_with("btree ")).count();
    assert!(nj > 50 && nb > 0, "{nj} journal, {nb} btree");
    // The accounting btree's journal keys are deltas: some are newer than
    // the btree's keys, some are not.
    let acct = ok(&["list", "--source", "-b", "accounting"], &img);
    let heads: Vec<&str> = acct.lines().filter(|l| l.contains(" type accounting ")).map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(heads.iter().filter(|&&h| h == "journal").count(), 14, "{acct}");
    assert_eq!(heads.len(), 26);
    std::fs::remove_file(img).unwrap();
}

#[test]
fn errors_and_fresh_volumes() {
    let dir = std::env::temp_dir();
    // A file of zeroes is not bcachefs: an error naming the device.
    let zero = dir.join(format!("bch-tool-list-{}-zero.img", std::process::id()));
    std::fs::write(&zero, vec![0u8; 1 << 20]).unwrap();
    let o = tool(&["list"], &zero);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.starts_with("bcachefs: ") && err.contains("superblock"), "{err}");
    // A format left to be initialized by its first mount (written with
    // FileDev's writes and flush) has no keys yet: nothing to list, and no
    // error.
    let fresh = dir.join(format!("bch-tool-list-{}-fresh.img", std::process::id()));
    std::fs::write(&fresh, vec![0u8; 64 << 20]).unwrap();
    ok(&["format", "--force", "--no_initialize"], &fresh);
    assert_eq!(ok(&["list"], &fresh), "");
    assert_eq!(ok(&["list", "--jsets"], &fresh), "");
    // An initialized one (the default) lists lost+found in the root.
    let init = dir.join(format!("bch-tool-list-{}-init.img", std::process::id()));
    std::fs::write(&init, vec![0u8; 64 << 20]).unwrap();
    ok(&["format", "--force"], &init);
    let d = ok(&["list", "-b", "dirents"], &init);
    assert!(d.starts_with("u64s ") && d.contains("lost+found -> 4097 type dir"), "{d}");
    std::fs::remove_file(init).unwrap();
    // An unknown btree.
    let o = tool(&["list", "-b", "nosuch"], &fresh);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("unknown btree 'nosuch'"));
    std::fs::remove_file(zero).unwrap();
    std::fs::remove_file(fresh).unwrap();
}
