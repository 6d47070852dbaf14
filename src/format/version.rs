// SPDX-License-Identifier: GPL-2.0
//! Metadata versions: `BCH_METADATA_VERSIONS()` in
//! `fs/bcachefs/bcachefs_format.h`.  A version is `major << 10 | minor`.

use core::fmt;

/// Builds a version number from its major and minor parts
/// (`BCH_VERSION()` in C).
pub const fn bch_version(major: u16, minor: u16) -> u16 {
    (major << 10) | minor
}

/// The metadata version table: one row per version, name as C spells it.
pub const METADATA_VERSIONS: &[(&str, u16)] = &[
    ("bkey_renumber", bch_version(0, 10)),
    ("inode_btree_change", bch_version(0, 11)),
    ("snapshot", bch_version(0, 12)),
    ("inode_backpointers", bch_version(0, 13)),
    ("btree_ptr_sectors_written", bch_version(0, 14)),
    ("snapshot_2", bch_version(0, 15)),
    ("reflink_p_fix", bch_version(0, 16)),
    ("subvol_dirent", bch_version(0, 17)),
    ("inode_v2", bch_version(0, 18)),
    ("freespace", bch_version(0, 19)),
    ("alloc_v4", bch_version(0, 20)),
    ("new_data_types", bch_version(0, 21)),
    ("backpointers", bch_version(0, 22)),
    ("inode_v3", bch_version(0, 23)),
    ("unwritten_extents", bch_version(0, 24)),
    ("bucket_gens", bch_version(0, 25)),
    ("lru_v2", bch_version(0, 26)),
    ("fragmentation_lru", bch_version(0, 27)),
    ("no_bps_in_alloc_keys", bch_version(0, 28)),
    ("snapshot_trees", bch_version(0, 29)),
    ("major_minor", bch_version(1, 0)),
    ("snapshot_skiplists", bch_version(1, 1)),
    ("deleted_inodes", bch_version(1, 2)),
    ("rebalance_work", bch_version(1, 3)),
    ("member_seq", bch_version(1, 4)),
    ("subvolume_fs_parent", bch_version(1, 5)),
    ("btree_subvolume_children", bch_version(1, 6)),
    ("mi_btree_bitmap", bch_version(1, 7)),
    ("bucket_stripe_sectors", bch_version(1, 8)),
    ("disk_accounting_v2", bch_version(1, 9)),
    ("disk_accounting_v3", bch_version(1, 10)),
    ("disk_accounting_inum", bch_version(1, 11)),
    ("rebalance_work_acct_fix", bch_version(1, 12)),
    ("inode_has_child_snapshots", bch_version(1, 13)),
];

/// Oldest version Linux 6.12 reads (`bcachefs_metadata_version_min`).
pub const VERSION_MIN: u16 = 9;
/// The version we write: 1.13, `inode_has_child_snapshots`.
pub const VERSION_CURRENT: u16 = bch_version(1, 13);

/// A metadata version, printed as C prints it: `1.13: inode_has_child_snapshots`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Version(pub u16);

impl Version {
    /// Major part (`BCH_VERSION_MAJOR`).
    pub fn major(self) -> u16 {
        self.0 >> 10
    }

    /// Minor part (`BCH_VERSION_MINOR`).
    pub fn minor(self) -> u16 {
        self.0 & ((1 << 10) - 1)
    }

    /// The version's name, if it is one we know.
    pub fn name(self) -> Option<&'static str> {
        METADATA_VERSIONS
            .iter()
            .find(|&&(_, v)| v == self.0)
            .map(|&(n, _)| n)
    }

    /// Whether a 6.12 kernel can read metadata of this version
    /// (`bch2_version_compatible()` in `fs/bcachefs/super-io.c`): at least
    /// the minimum and no newer major version than ours.
    pub fn is_compatible(self) -> bool {
        self.0 >= VERSION_MIN && self.major() <= Version(VERSION_CURRENT).major()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}: {}", self.major(), self.minor(), self.name().unwrap_or("(unknown version)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn table_is_sorted_and_ends_at_current() {
        assert!(METADATA_VERSIONS.windows(2).all(|w| w[0].1 < w[1].1));
        assert_eq!(METADATA_VERSIONS.last().unwrap().1, VERSION_CURRENT);
        assert_eq!(VERSION_CURRENT, 1037);
    }

    #[test]
    fn prints_like_c() {
        assert_eq!(Version(VERSION_CURRENT).to_string(), "1.13: inode_has_child_snapshots");
        assert_eq!(Version(bch_version(1, 99)).to_string(), "1.99: (unknown version)");
    }

    #[test]
    fn compatibility() {
        assert!(Version(VERSION_CURRENT).is_compatible());
        assert!(Version(bch_version(1, 20)).is_compatible());
        assert!(!Version(bch_version(2, 0)).is_compatible());
        assert!(!Version(8).is_compatible());
    }
}
