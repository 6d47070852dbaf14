// SPDX-License-Identifier: GPL-2.0
//! `bcachefs format --source=DIR --verbose`: the mounted filesystem's
//! state is printed before the clean shutdown, under the names of C's
//! sysfs/debugfs files (`journal_debug`, `journal_pins`, `alloc_debug`,
//! `dev-0/alloc_debug`, `open_buckets`, `write_points`, `btree_updates`).

use std::process::Command;

#[test]
fn verbose_format_prints_the_mounted_state() {
    let base = std::env::temp_dir().join(format!("bch-tool-format-{}", std::process::id()));
    let src = base.join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("f{i}")), vec![i as u8 + 1; 3000 + 5000 * i]).unwrap();
    }
    std::fs::write(src.join("dir/g"), b"hello\n").unwrap();
    let img = base.join("img");
    std::fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bcachefs"))
        .arg("format")
        .arg(format!("--source={}", src.display()))
        .arg("--verbose")
        .arg(&img)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}\n{out}", String::from_utf8_lossy(&o.stderr));
    let mut at = 0;
    for h in ["journal_debug:", "journal_pins:", "alloc_debug:", "dev-0/alloc_debug:", "open_buckets:", "write_points:", "btree_updates:"] {
        let i = out[at..].find(&format!("{h}\n")).unwrap_or_else(|| panic!("no heading {h}:\n{out}"));
        at += i + h.len();
    }
    for line in [
        "open buckets total      1024",
        "freespace initialized   1",
        "Btree write point",
        "flushed_seq_ondisk:",
        "reserves:               reserved  free",
        "dirty nodes: ",
    ] {
        assert!(out.contains(line), "no {line:?}:\n{out}");
    }
    // The user data went through a hashed write point: its bytes are
    // counted there, and the user buckets in the device's table.
    let user = out.lines().find(|l| l.starts_with("user ")).unwrap_or_else(|| panic!("no user line:\n{out}"));
    let n: u64 = user.split_whitespace().last().unwrap().parse().unwrap();
    assert!(n > 0, "{user}");
    // And the superblock follows, as without --verbose.
    assert!(out.contains("External UUID:"), "{out}");
    std::fs::remove_dir_all(&base).unwrap();
}
