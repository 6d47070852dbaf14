// SPDX-License-Identifier: GPL-2.0
//! `bcachefs list`: dumps a btree's keys, one per line, in bcachefs-tools'
//! format, reading the newest btree roots plus the journal keys newer than
//! the btree (see `bcachefs_rs::format::list`).  Read-only.
//!
//! For the tests that damage a volume on purpose, `--nodes` prints where
//! each btree node lives on the device, `--jsets` where each journal entry
//! does, and `--source` marks each key with where its newest version came
//! from (the btree or the journal).

use std::io::Write;

use bcachefs_rs::format::bkey::{BtreeId, KeyType, BTREE_IDS};
use bcachefs_rs::format::bpos::Bpos;
use bcachefs_rs::format::jset::{jset_magic, scan_bucket};
use bcachefs_rs::format::list::{collect_btree, find_root, list_btree, read_journal, FsInfo, Journal};
use bcachefs_rs::format::val::extent::{BtreePtrV2, ExtentEntries, ExtentEntry};
use bcachefs_rs::format::val::KeyDisplay;
use bcachefs_rs::platform::{BlockDev, SECTOR_SIZE};
use bcachefs_rs::format::sb::{read_super, ValidateMode};
use bcachefs_rs::platform::FileDev;

/// Arguments of `bcachefs list`.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Btrees to list (names as C's BCH_BTREE_IDS: inodes, dirents,
    /// extents, alloc, ...); repeat or comma-separate.  Default: every btree.
    #[arg(short = 'b', long = "btree", value_delimiter = ',')]
    btrees: Vec<String>,
    /// Btree level to list: 0 for leaves (keys), 1 and up for interior
    /// nodes (btree pointers).
    #[arg(short = 'l', long = "level", default_value_t = 0)]
    level: u8,
    /// Instead of keys: one line per btree node (root and every node
    /// below it), `<btree> level <l> sector <s> sectors <n> min <pos> max
    /// <pos>`, sectors on the device, `sectors` the part written.
    #[arg(long, conflicts_with_all = ["jsets", "source"])]
    nodes: bool,
    /// Instead of keys: one line per journal entry found in the journal
    /// buckets, `jset seq <seq> sector <s> sectors <n> csum <good|bad>
    /// last_seq <seq> <flush|noflush>`, whether replayed or not.
    #[arg(long, conflicts_with = "source")]
    jsets: bool,
    /// Start each key line with `journal ` or `btree `: where the key's
    /// newest version came from.
    #[arg(long)]
    source: bool,
    /// Device or image file.
    device: String,
}

/// Runs `bcachefs list`.
pub fn list(a: &ListArgs) -> Result<(), String> {
    let device = &a.device;
    let ids: Vec<u32> = if a.btrees.is_empty() {
        (0..BTREE_IDS.len() as u32).collect()
    } else {
        a.btrees
            .iter()
            .map(|n| {
                BtreeId::from_name(n)
                    .map(|b| b as u32)
                    .ok_or_else(|| format!("unknown btree '{n}'"))
            })
            .collect::<Result<_, _>>()?
    };
    let dev = FileDev::open(device).map_err(|e| format!("{device}: {e}"))?;
    let sbr = read_super(&dev).map_err(|e| format!("{device}: {e}"))?;
    let sb = sbr.sb();
    sb.validate(ValidateMode::Read)
        .map_err(|e| format!("{device}: invalid superblock: {e}"))?;
    let fs = FsInfo::from_sb(&sb).map_err(|e| format!("{device}: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    if a.jsets {
        let out = jsets(&dev, &fs).map_err(|e| format!("{device}: journal: {e}"))?;
        return stdout.write_all(out.as_bytes()).map_err(|e| e.to_string());
    }
    let journal = read_journal(&dev, &fs).map_err(|e| format!("{device}: journal: {e}"))?;
    for id in ids {
        let name = BTREE_IDS[id as usize].0;
        let mut out = String::new();
        if a.nodes {
            nodes(&dev, &fs, &journal, id, &mut out)
        } else if a.source {
            keys_with_source(&dev, &fs, &journal, id, a.level, &mut out)
        } else {
            list_btree(&dev, &fs, &journal, id, a.level, &mut out).map(|_| ()).map_err(|e| e.to_string())
        }
        .map_err(|e| format!("{device}: btree {name}: {e}"))?;
        stdout.write_all(out.as_bytes()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn keys_with_source(
    dev: &FileDev,
    fs: &FsInfo,
    journal: &Journal,
    id: u32,
    level: u8,
    out: &mut String,
) -> Result<(), String> {
    use std::fmt::Write as _;
    let keys = collect_btree(dev, fs, journal, id, level).map_err(|e| e.to_string())?;
    let ctx = fs.ctx();
    for (i, (k, v)) in keys.iter().enumerate() {
        let src = if keys.from_journal(i) { "journal" } else { "btree" };
        let _ = writeln!(out, "{src} {}", KeyDisplay { k: &k, v, ctx: Some(&ctx) });
    }
    Ok(())
}

/// One `--nodes` line for the node the pointer `(key, val)` points to.
fn node_line(
    out: &mut String,
    fs: &FsInfo,
    name: &str,
    level: u8,
    key_type: u8,
    max: Bpos,
    val: &[u8],
) {
    use std::fmt::Write as _;
    let (v2, ptrs) = if key_type == KeyType::BtreePtrV2 as u8 {
        (BtreePtrV2::decode(val), val.get(40..).unwrap_or(&[]))
    } else {
        (None, val)
    };
    let min = v2.map(|b| b.min_key);
    let written = v2.map_or(0, |b| u32::from(b.sectors_written));
    let sectors = if written != 0 { written } else { fs.node_bytes / SECTOR_SIZE as u32 };
    for e in ExtentEntries::new(ptrs) {
        if let Ok(ExtentEntry::Ptr(p)) = e {
            let _ = write!(out, "{name} level {level} sector {} sectors {sectors} dev {} ", p.offset, p.dev);
            match min {
                Some(m) => {
                    let _ = write!(out, "min {m} ");
                }
                None => out.push_str("min ? "),
            }
            let _ = writeln!(out, "max {max}");
        }
    }
}

/// `--nodes`: the root, then every node below it, level by level.
fn nodes(dev: &FileDev, fs: &FsInfo, journal: &Journal, id: u32, out: &mut String) -> Result<(), String> {
    let name = BTREE_IDS[id as usize].0;
    let Some(r) = find_root(fs, journal, id).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let vlen = r.key.val_bytes().min(r.val.len());
    node_line(out, fs, name, r.level, r.key.key_type, r.key.p, &r.val[..vlen]);
    for level in (1..=r.level).rev() {
        let keys = collect_btree(dev, fs, journal, id, level).map_err(|e| e.to_string())?;
        for (k, v) in keys.iter() {
            node_line(out, fs, name, level - 1, k.key_type, k.p, v);
        }
    }
    Ok(())
}

/// `--jsets`: every jset in the journal buckets of the device.
fn jsets(dev: &FileDev, fs: &FsInfo) -> Result<String, String> {
    use std::fmt::Write as _;
    let d = fs.devs[fs.dev_idx as usize].ok_or("no member entry for this device")?;
    let bucket_bytes = d.bucket_size as usize * SECTOR_SIZE;
    let magic = jset_magic(&fs.uuid);
    let mut out = String::new();
    let mut buf = vec![0u8; bucket_bytes];
    for &b in fs.journal_buckets.iter() {
        let sector = b * u64::from(d.bucket_size);
        dev.read_sectors(sector, &mut buf).map_err(|e| format!("bucket {b}: {e}"))?;
        let found = scan_bucket(&buf, magic, fs.block_bytes as usize).map_err(|e| format!("bucket {b}: {e}"))?;
        for f in found.iter() {
            let _ = writeln!(
                out,
                "jset seq {} sector {} sectors {} csum {} last_seq {} {}",
                f.header.seq,
                sector + u64::from(f.offset_sectors),
                f.sectors,
                if f.csum_good { "good" } else { "bad" },
                f.header.last_seq,
                if f.header.no_flush() { "noflush" } else { "flush" }
            );
        }
    }
    Ok(out)
}
