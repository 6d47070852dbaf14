// SPDX-License-Identifier: GPL-2.0
//! `bcachefs list`: dumps a btree's keys, one per line, in bcachefs-tools'
//! format, reading the newest btree roots plus the journal keys newer than
//! the btree (see `bcachefs_rs::format::list`).  Read-only.

use std::io::Write;

use bcachefs_rs::format::bkey::{BtreeId, BTREE_IDS};
use bcachefs_rs::format::list::{list_btree, read_journal, FsInfo};
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
    let journal = read_journal(&dev, &fs).map_err(|e| format!("{device}: journal: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    for id in ids {
        let mut out = String::new();
        list_btree(&dev, &fs, &journal, id, a.level, &mut out)
            .map_err(|e| format!("{device}: btree {}: {e}", BTREE_IDS[id as usize].0))?;
        stdout.write_all(out.as_bytes()).map_err(|e| e.to_string())?;
    }
    Ok(())
}
