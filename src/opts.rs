// SPDX-License-Identifier: GPL-2.0
//! Mount options (`fs/bcachefs/opts.c` and `opts.h`): the options of
//! `BCH_OPTS()` that carry `OPT_FS` or `OPT_MOUNT`, parsed one
//! `name[=value]` item at a time as `bch2_parse_one_mount_opt()` and
//! `bch2_opt_parse()` do, printed as `bch2_opt_to_text()` and
//! `bch2_opts_to_text()` print them (for `/proc/mounts` and sysfs).
//!
//! Options stored in the superblock take their kind, range and default from
//! [`crate::format::sb_opts::SB_OPTS`]; the others are listed here.  Unlike
//! C, which ignores an unknown option, an unknown name is an error: a typo
//! in a read-only mount should not pass silently.
//!
//! Shared core: host and kernel, `no_std`, no allocation.

use core::fmt::{self, Write as _};

use crate::bcachefs::OpenOpts;
use crate::errcode::Errno;
use crate::format::sb::Sb;
use crate::format::sb_opts::{self, OptKind, SbOpt, COMPRESSION_OPTS};

/// `OPT_FS`: a filesystem option (has a file in sysfs `options/`).
pub const OPT_FS: u8 = 1 << 0;
/// `OPT_MOUNT`: may be given at mount time.
pub const OPT_MOUNT: u8 = 1 << 1;
/// `OPT_RUNTIME`: may be changed on a mounted filesystem (sysfs mode 0644
/// in C; read-only here).
pub const OPT_RUNTIME: u8 = 1 << 2;
/// `OPT_HIDDEN`: never shown in `/proc/mounts`.
pub const OPT_HIDDEN: u8 = 1 << 3;

const FM: u8 = OPT_FS | OPT_MOUNT;
const FMR: u8 = OPT_FS | OPT_MOUNT | OPT_RUNTIME;

/// `bch2_fsck_fix_opts[]` (`fix_errors=`).
pub const FSCK_FIX_OPTS: &[&str] = &["exit", "yes", "no", "ask"];

/// The values an option takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Stored in the superblock: kind, range and default from this entry of
    /// [`sb_opts::SB_OPTS`].
    Sb(&'static SbOpt),
    /// `OPT_BOOL()`.
    Bool,
    /// `OPT_UINT(min, max)`; `human`: `OPT_HUMAN_READABLE`.
    Uint {
        /// Smallest valid value.
        min: u64,
        /// First invalid value.
        max: u64,
        /// Parsed with unit suffixes and printed as `string_get_size()`.
        human: bool,
    },
    /// `OPT_FN(bch2_opt_fix_errors)`: one of [`FSCK_FIX_OPTS`]; no value
    /// means `yes`.
    FixErrors,
    /// Recovery pass selection (`OPT_BITFIELD` of `bch2_recovery_passes`:
    /// `recovery_passes`, `recovery_passes_exclude`): accepted by C,
    /// refused here because this implementation has no such passes to
    /// select.  Always 0, printed as C prints an empty bit set (nothing).
    RecoveryPasses,
    /// `recovery_pass_last` (`OPT_STR_NOLIMIT(bch2_recovery_passes)`):
    /// refused as [`Kind::RecoveryPasses`]; always 0, printed as the first
    /// pass's name.
    RecoveryPassLast,
}

/// One option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptDesc {
    /// Name, as mount options and sysfs spell it.
    pub name: &'static str,
    /// `OPT_*` flags.
    pub flags: u8,
    /// Its values.
    pub kind: Kind,
    /// `bch2_opts_default` (for [`Kind::Sb`], the table's default).
    pub default: u64,
}

const fn sbo(name: &'static str, flags: u8) -> OptDesc {
    // The superblock table is searched at compile time; a name missing from
    // it fails the build.
    let mut i = 0;
    while i < sb_opts::SB_OPTS.len() {
        let o = &sb_opts::SB_OPTS[i];
        if str_eq(o.name, name) {
            return OptDesc { name, flags, kind: Kind::Sb(o), default: o.default };
        }
        i += 1;
    }
    panic!("option missing from SB_OPTS")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn boolean(name: &'static str, flags: u8, default: bool) -> OptDesc {
    OptDesc { name, flags, kind: Kind::Bool, default: default as u64 }
}

const fn uint(name: &'static str, flags: u8, min: u64, max: u64, human: bool, default: u64) -> OptDesc {
    OptDesc { name, flags, kind: Kind::Uint { min, max, human }, default }
}

/// Every option of `BCH_OPTS()` with `OPT_FS` or `OPT_MOUNT`, in that
/// order (which is the order `/proc/mounts` and sysfs show them in).
pub const OPTS: &[OptDesc] = &[
    sbo("block_size", OPT_FS),
    sbo("btree_node_size", OPT_FS),
    sbo("errors", FMR),
    sbo("metadata_replicas", FMR),
    sbo("data_replicas", FMR),
    sbo("metadata_replicas_required", FM),
    sbo("data_replicas_required", FM),
    sbo("encoded_extent_max", OPT_FS),
    sbo("metadata_checksum", FMR),
    sbo("data_checksum", FMR),
    sbo("compression", FMR),
    sbo("background_compression", FMR),
    sbo("str_hash", FMR),
    sbo("metadata_target", FMR),
    sbo("foreground_target", FMR),
    sbo("background_target", FMR),
    sbo("promote_target", FMR),
    sbo("erasure_code", FMR),
    sbo("inodes_32bit", FMR),
    sbo("shard_inode_numbers", FMR),
    sbo("inodes_use_key_cache", FM),
    boolean("btree_node_mem_ptr_optimization", FMR, true),
    sbo("gc_reserve_percent", FMR),
    sbo("gc_reserve_bytes", FMR),
    sbo("root_reserve_percent", FM),
    sbo("wide_macs", FMR),
    boolean("inline_data", FMR, true),
    sbo("promote_whole_extents", FMR),
    sbo("acl", FM),
    sbo("usrquota", FM),
    sbo("grpquota", FM),
    sbo("prjquota", FM),
    boolean("degraded", FM, false),
    boolean("very_degraded", FM, false),
    boolean("no_splitbrain_check", FM, false),
    boolean("discard", FM, true),
    boolean("verbose", FMR, false),
    sbo("journal_flush_delay", FMR),
    sbo("journal_flush_disabled", FMR),
    sbo("journal_reclaim_delay", FMR),
    uint("move_bytes_in_flight", FMR, 1024, u32::MAX as u64, true, 1 << 20),
    uint("move_ios_in_flight", FMR, 1, 1024, false, 32),
    boolean("fsck", FM, false),
    uint("fsck_memory_usage_percent", FM, 20, 70, false, 50),
    OptDesc { name: "fix_errors", flags: FM, kind: Kind::FixErrors, default: 0 },
    boolean("ratelimit_errors", FM, true),
    boolean("nochanges", FM, false),
    boolean("norecovery", FM, false),
    OptDesc { name: "recovery_passes", flags: FM, kind: Kind::RecoveryPasses, default: 0 },
    OptDesc { name: "recovery_passes_exclude", flags: FM, kind: Kind::RecoveryPasses, default: 0 },
    OptDesc { name: "recovery_pass_last", flags: FM, kind: Kind::RecoveryPassLast, default: 0 },
    sbo("journal_transaction_names", FMR),
    sbo("allocator_stuck_timeout", FMR),
    boolean("noexcl", FM, false),
    boolean("direct_io", FM, true),
    uint("sb", OPT_MOUNT, 0, i64::MAX as u64, false, crate::format::sb::SB_SECTOR),
    boolean("read_only", FM | OPT_HIDDEN, false),
    boolean("reconstruct_alloc", FM, false),
    sbo("version_upgrade", FM),
    sbo("nocow", FMR),
    boolean("nocow_enabled", FM, true),
    boolean("no_data_io", OPT_MOUNT, false),
    boolean("btree_node_prefetch", FMR, true),
];

/// Number of options in [`OPTS`].
pub const NR_OPTS: usize = OPTS.len();

/// Index of option `name` in [`OPTS`] (`bch2_opt_lookup()`).
pub fn opt_lookup(name: &str) -> Option<usize> {
    OPTS.iter().position(|o| o.name == name)
}

/// `bch2_mount_opt_lookup()`: [`opt_lookup`] after the synonym `quota`
/// → `usrquota`.
fn mount_opt_lookup(name: &str) -> Option<usize> {
    opt_lookup(if name == "quota" { "usrquota" } else { name })
}

fn id(name: &str) -> usize {
    // Only called with names from the table above.
    opt_lookup(name).unwrap_or(0)
}

/// Longest option name kept in an [`OptParseError`]; longer ones are cut.
const ERR_NAME_MAX: usize = 48;

/// The option name an error is about (a copy: the input is not kept).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OptName {
    buf: [u8; ERR_NAME_MAX],
    len: u8,
}

impl OptName {
    fn new(s: &str) -> Self {
        let mut n = OptName { buf: [0; ERR_NAME_MAX], len: 0 };
        // Cut at a character boundary so the copy stays valid UTF-8.
        let mut end = s.len().min(ERR_NAME_MAX);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        n.buf[..end].copy_from_slice(&s.as_bytes()[..end]);
        n.len = end as u8;
        n
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Debug for OptName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for OptName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a value was refused (the part of C's message after the name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadValue {
    /// A boolean option given something other than 0 or 1.
    NotBool,
    /// A number was expected.
    NotNumber,
    /// The option needs a value and got none.
    Required,
    /// Not one of the option's choices.
    InvalidSelection,
    /// Out of range, not a power of two, ... (`bch2_opt_validate()`).
    Invalid(sb_opts::OptError),
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::NotBool => f.write_str("must be bool"),
            BadValue::NotNumber => f.write_str("must be a number"),
            BadValue::Required => f.write_str("required value"),
            BadValue::InvalidSelection => f.write_str("invalid selection"),
            BadValue::Invalid(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// A mount option that cannot be accepted.  Every variant names the option;
/// the mount fails with [`OptParseError::errno`] (`EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptParseError {
    /// No option of that name.
    Unknown(OptName),
    /// An option that exists but cannot be given at mount time (C: "Bad
    /// mount option").
    NotMountOption(OptName),
    /// The value is not valid for the option.
    BadValue(OptName, BadValue),
    /// A valid option this implementation cannot honour.
    Unsupported(OptName),
}

impl OptParseError {
    /// The errno a mount fails with: `EINVAL`.
    pub fn errno(&self) -> Errno {
        Errno::EINVAL
    }
}

impl fmt::Display for OptParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptParseError::Unknown(n) => write!(f, "unknown mount option {n}"),
            OptParseError::NotMountOption(n) => write!(f, "bad mount option {n}: not settable at mount time"),
            OptParseError::BadValue(n, why) => write!(f, "invalid mount option {n}: {why}"),
            OptParseError::Unsupported(n) => {
                write!(f, "mount option {n} is not supported by bcachefs_rs (read-only mount)")
            }
        }
    }
}

/// Parses an unsigned decimal as `kstrtou64(s, 10)` does: digits, an
/// optional leading `+`, an optional trailing newline.
fn kstrtou64(s: &str) -> Option<u64> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a number the way `bch2_strtou64_h()` does for human-readable
/// options: an integer with an optional `k`/`M`/`G`/`T` suffix (powers of
/// 1024).
pub fn strtou64_h(s: &str) -> Option<u64> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    sb_opts::parse_size(s)
}

/// Parses `val` for option `o` (`bch2_opt_parse()`); `None` is an option
/// given without `=`.
fn opt_parse(o: &OptDesc, val: Option<&str>) -> Result<u64, BadValue> {
    let (kind, validate): (OptKind, Option<&SbOpt>) = match o.kind {
        Kind::Sb(s) => (s.kind, Some(s)),
        Kind::Bool => (OptKind::Bool, None),
        Kind::Uint { min, max, .. } => (OptKind::Uint { min, max }, None),
        Kind::FixErrors => {
            return match val {
                None => Ok(1),
                Some(v) => FSCK_FIX_OPTS.iter().position(|c| *c == v).map(|i| i as u64).ok_or(BadValue::InvalidSelection),
            };
        }
        Kind::RecoveryPasses | Kind::RecoveryPassLast => return Err(BadValue::InvalidSelection),
    };
    let human = match o.kind {
        Kind::Sb(s) => s.human,
        Kind::Uint { human, .. } => human,
        _ => false,
    };
    let v = match kind {
        OptKind::Bool => match val {
            None => 1,
            Some(v) => match kstrtou64(v) {
                Some(b @ (0 | 1)) => b,
                _ => return Err(BadValue::NotBool),
            },
        },
        OptKind::Uint { .. } => {
            let v = val.ok_or(BadValue::Required)?;
            let n = if human { strtou64_h(v) } else { kstrtou64(v) };
            n.ok_or(BadValue::NotNumber)?
        }
        OptKind::Str(choices) => {
            let v = val.ok_or(BadValue::Required)?;
            choices.iter().position(|c| *c == v).ok_or(BadValue::InvalidSelection)? as u64
        }
        OptKind::Compression => {
            let v = val.ok_or(BadValue::Required)?;
            let (ty, level) = match v.split_once(':') {
                Some((t, l)) => (t, Some(l)),
                None => (v, None),
            };
            let ty = COMPRESSION_OPTS.iter().position(|c| *c == ty).ok_or(BadValue::InvalidSelection)? as u64;
            let level = match level {
                Some(l) => kstrtou64(l).ok_or(BadValue::NotNumber)?,
                None => 0,
            };
            if level > 15 || (ty == 0 && level != 0) {
                return Err(BadValue::Invalid(sb_opts::OptError::BadValue));
            }
            ty | level << 4
        }
        // A target names a device or a disk label, resolved by C once the
        // filesystem is open.  Targets steer writes only; of the names we
        // keep "none" and refuse the rest, which a read-only mount cannot
        // use.
        OptKind::Target => match val {
            Some("none") | Some("") | None => 0,
            Some(_) => return Err(BadValue::InvalidSelection),
        },
    };
    match validate {
        Some(s) => s.validate(v).map_err(BadValue::Invalid)?,
        None => {
            let (min, max) = match kind {
                OptKind::Bool => (0, 2),
                OptKind::Uint { min, max } => (min, max),
                _ => (0, 0),
            };
            if v < min {
                return Err(BadValue::Invalid(sb_opts::OptError::TooSmall { min }));
            }
            if max != 0 && v >= max {
                return Err(BadValue::Invalid(sb_opts::OptError::TooBig { max }));
            }
        }
    }
    Ok(v)
}

/// Parses option `name`'s value `val` (`bch2_opt_lookup()` +
/// `bch2_opt_parse()`, as the `bcachefs.` xattr handler and the mount
/// parser do): the option's index in [`OPTS`] and its value in option
/// units (a compression option as `type | level << 4`, a string choice as
/// its index).
///
/// Errors: [`OptParseError::Unknown`] for a name not in [`OPTS`],
/// [`OptParseError::BadValue`] for a value the option refuses.
pub fn opt_parse_named(name: &str, val: &str) -> Result<(usize, u64), OptParseError> {
    let id = opt_lookup(name).ok_or_else(|| OptParseError::Unknown(OptName::new(name)))?;
    let o = &OPTS[id];
    let v = opt_parse(o, Some(val)).map_err(|e| OptParseError::BadValue(OptName::new(o.name), e))?;
    Ok((id, v))
}

/// The options given at mount: each is unset (`opt_defined()` false) or a
/// value in option units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountOpts {
    /// Bit `i`: option `i` was given.
    set: u64,
    vals: [u64; NR_OPTS],
}

// `MountOpts::set` has a bit per option.
const _: () = assert!(NR_OPTS <= 64);

impl Default for MountOpts {
    fn default() -> Self {
        Self::new()
    }
}

impl MountOpts {
    /// No options set.
    pub const fn new() -> Self {
        MountOpts { set: 0, vals: [0; NR_OPTS] }
    }

    /// Parses one `name[=value]` item (`bch2_parse_one_mount_opt()`):
    /// `quota` means `usrquota`, `noNAME` without a value means `NAME=0`.
    pub fn parse_one(&mut self, name: &str, val: Option<&str>) -> Result<(), OptParseError> {
        let mut val = val;
        let mut id = mount_opt_lookup(name);
        if id.is_none() && val.is_none() {
            if let Some(rest) = name.strip_prefix("no") {
                id = mount_opt_lookup(rest);
                val = Some("0");
            }
        }
        let Some(id) = id else {
            return Err(OptParseError::Unknown(OptName::new(name)));
        };
        let o = &OPTS[id];
        if o.flags & OPT_MOUNT == 0 {
            return Err(OptParseError::NotMountOption(OptName::new(name)));
        }
        if matches!(o.kind, Kind::RecoveryPasses | Kind::RecoveryPassLast) {
            return Err(OptParseError::Unsupported(OptName::new(o.name)));
        }
        let v = opt_parse(o, val).map_err(|e| OptParseError::BadValue(OptName::new(o.name), e))?;
        // Only the primary superblock is read.
        if o.name == "sb" && v != o.default {
            return Err(OptParseError::Unsupported(OptName::new(o.name)));
        }
        self.vals[id] = v;
        self.set |= 1 << id;
        Ok(())
    }

    /// Parses a comma-separated option string (`bch2_parse_mount_opts()`):
    /// empty items are skipped; the first bad item stops the parse.
    pub fn parse(&mut self, opts: &str) -> Result<(), OptParseError> {
        for item in opts.split(',').filter(|s| !s.is_empty()) {
            let (name, val) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (item, None),
            };
            self.parse_one(name, val)?;
        }
        Ok(())
    }

    /// Sets option `id` to `v` (as parsed), as if given at mount.
    pub fn set(&mut self, id: usize, v: u64) {
        if let Some(x) = self.vals.get_mut(id) {
            *x = v;
            self.set |= 1 << id;
        }
    }

    /// The value given at mount for option `id`, if any.
    pub fn get(&self, id: usize) -> Option<u64> {
        if id < NR_OPTS && self.set & (1 << id) != 0 {
            Some(self.vals[id])
        } else {
            None
        }
    }

    /// The value in force (`c->opts`): the mount option if given, else the
    /// superblock's for options stored there, else the default.
    pub fn value(&self, id: usize, sb: Option<&Sb<'_>>) -> u64 {
        if let Some(v) = self.get(id) {
            return v;
        }
        let o = &OPTS[id];
        match (o.kind, sb) {
            (Kind::Sb(s), Some(sb)) => sb.opt(s),
            _ => o.default,
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.get(id(name)).unwrap_or(OPTS[id(name)].default) != 0
    }

    /// `norecovery`.
    pub fn norecovery(&self) -> bool {
        self.flag("norecovery")
    }

    /// `nochanges`: nothing may be written (the kernel mounts read-only).
    pub fn nochanges(&self) -> bool {
        self.flag("nochanges")
    }

    /// `verbose`.
    pub fn verbose(&self) -> bool {
        self.flag("verbose")
    }

    /// `degraded` or `very_degraded`.
    pub fn degraded(&self) -> bool {
        self.flag("degraded") || self.flag("very_degraded")
    }

    /// `acl` in force (`c->opts.acl`): POSIX ACLs on; the mount option,
    /// else the superblock's `BCH_SB_POSIX_ACL`.
    pub fn acl(&self, sb: Option<&Sb<'_>>) -> bool {
        self.value(id("acl"), sb) != 0
    }

    /// `fsck`: asked for, not implemented (the mount logs that it is
    /// ignored).
    pub fn fsck(&self) -> bool {
        self.flag("fsck")
    }

    /// What [`crate::bcachefs::Fs::open`] acts on.
    pub fn open_opts(&self) -> OpenOpts {
        OpenOpts {
            norecovery: self.norecovery(),
            verbose: self.verbose(),
            degraded: self.degraded(),
            ..OpenOpts::default()
        }
    }

    /// `show_options`: `,name[=value]` for every `OPT_MOUNT` option that is
    /// not `OPT_HIDDEN` and whose value in force differs from the default,
    /// in the style of `bch2_opts_to_text(.., OPT_SHOW_MOUNT_STYLE)` (a
    /// boolean prints as `name` or `noname`).
    pub fn show_options(&self, sb: Option<&Sb<'_>>, f: &mut dyn fmt::Write) -> fmt::Result {
        for (i, o) in OPTS.iter().enumerate() {
            if o.flags & OPT_MOUNT == 0 || o.flags & OPT_HIDDEN != 0 {
                continue;
            }
            let v = self.value(i, sb);
            if v == o.default {
                continue;
            }
            f.write_char(',')?;
            if is_bool(o) {
                write!(f, "{}{}", if v != 0 { "" } else { "no" }, o.name)?;
            } else {
                write!(f, "{}=", o.name)?;
                opt_to_text(f, i, v, false)?;
            }
        }
        Ok(())
    }
}

fn is_bool(o: &OptDesc) -> bool {
    matches!(o.kind, Kind::Bool) || matches!(o.kind, Kind::Sb(s) if s.kind == OptKind::Bool)
}

/// Prints value `v` of option `id` as `bch2_opt_to_text()` does; with
/// `full_list` (sysfs, `OPT_SHOW_FULL_LIST`) a string option lists every
/// choice with the selected one in brackets.
pub fn opt_to_text(f: &mut dyn fmt::Write, id: usize, v: u64, full_list: bool) -> fmt::Result {
    let Some(o) = OPTS.get(id) else {
        return Ok(());
    };
    let (kind, human) = match o.kind {
        Kind::Sb(s) => (s.kind, s.human),
        Kind::Bool => (OptKind::Bool, false),
        Kind::Uint { min, max, human } => (OptKind::Uint { min, max }, human),
        Kind::FixErrors => (OptKind::Str(FSCK_FIX_OPTS), false),
        Kind::RecoveryPasses if v == 0 => return Ok(()),
        Kind::RecoveryPasses => return write!(f, "{v:#x}"),
        Kind::RecoveryPassLast if v == 0 => return f.write_str("recovery_pass_empty"),
        Kind::RecoveryPassLast => return write!(f, "{v}"),
    };
    match kind {
        OptKind::Bool | OptKind::Uint { .. } => {
            if human {
                write!(f, "{}", HumanReadable(v))
            } else {
                write!(f, "{}", v as i64)
            }
        }
        OptKind::Str(choices) => match choices.get(v as usize) {
            None => write!(f, "(invalid option {})", v as i64),
            Some(c) if !full_list => f.write_str(c),
            Some(_) => {
                for (i, c) in choices.iter().enumerate() {
                    if i as u64 == v {
                        write!(f, "[{c}] ")?;
                    } else {
                        write!(f, "{c} ")?;
                    }
                }
                Ok(())
            }
        },
        OptKind::Compression => {
            let (ty, level) = (v & 15, (v >> 4) & 15);
            match COMPRESSION_OPTS.get(ty as usize) {
                Some(c) => f.write_str(c)?,
                None => write!(f, "(unknown compression opt {ty})")?,
            }
            if level != 0 {
                write!(f, ":{level}")?;
            }
            Ok(())
        }
        // `target_decode()`: 0 none, 1.. a device, 257.. a disk group.
        OptKind::Target => match v {
            0 => f.write_str("none"),
            1..=256 => write!(f, "device {}", v - 1),
            _ => write!(f, "group {}", v - 257),
        },
    }
}

/// A byte count printed as `string_get_size(v, 1, STRING_UNITS_2, ..)`
/// prints it (what `prt_human_readable_u64()` shows): three significant
/// digits and a binary unit, e.g. `1.00 MiB`, `512 B`, `4.00 KiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanReadable(pub u64);

impl fmt::Display for HumanReadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 9] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"];
        const ROUNDING: [u32; 3] = [500, 50, 5];
        let mut size = self.0;
        if size == 0 {
            return f.write_str("0 B");
        }
        let mut i = 0usize;
        let mut remainder: u32 = 0;
        while size >> 32 != 0 {
            size /= 1024;
            i += 1;
        }
        while size >= 1024 {
            remainder = (size % 1024) as u32;
            size /= 1024;
            i += 1;
        }
        let mut sf_cap = size as u32;
        let mut j = 0usize;
        while sf_cap * 10 < 1000 {
            sf_cap *= 10;
            j += 1;
        }
        remainder = (remainder * 1000) >> 10;
        remainder += ROUNDING[j];
        if remainder >= 1000 {
            remainder -= 1000;
            size += 1;
        }
        write!(f, "{}", size as u32)?;
        if j != 0 {
            // ".%03u" cut to j digits.
            let digits = [b'0' + (remainder / 100 % 10) as u8, b'0' + (remainder / 10 % 10) as u8, b'0' + (remainder % 10) as u8];
            f.write_char('.')?;
            for d in &digits[..j] {
                f.write_char(*d as char)?;
            }
        }
        let unit = UNITS.get(i).copied().unwrap_or("UNK");
        write!(f, " {unit}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};

    fn parse(s: &str) -> Result<MountOpts, OptParseError> {
        let mut o = MountOpts::new();
        o.parse(s).map(|()| o)
    }

    fn shown(o: &MountOpts) -> String {
        let mut s = String::new();
        o.show_options(None, &mut s).unwrap();
        s
    }

    #[test]
    fn table_names_unique_and_known() {
        for (i, o) in OPTS.iter().enumerate() {
            assert_eq!(opt_lookup(o.name), Some(i), "{}", o.name);
        }
    }

    #[test]
    fn read_side_flags() {
        let o = parse("norecovery,verbose,degraded").unwrap();
        let oo = o.open_opts();
        assert!(oo.norecovery && oo.verbose && oo.degraded);
        assert_eq!(oo.btree_cache_max_bytes, OpenOpts::default().btree_cache_max_bytes);
        let o = parse("very_degraded").unwrap();
        assert!(o.open_opts().degraded && !o.open_opts().norecovery);
        assert_eq!(parse("").unwrap().open_opts(), OpenOpts::default());
        // Empty items and a leading comma are skipped, as sys_fsconfig gives.
        assert!(parse(",,norecovery,").unwrap().open_opts().norecovery);
    }

    #[test]
    fn acl_from_the_mount_else_the_superblock_else_on() {
        assert!(!parse("noacl").unwrap().acl(None));
        assert!(parse("acl").unwrap().acl(None));
        // C's default (`BCH_SB_POSIX_ACL`, true) without a superblock.
        assert!(parse("").unwrap().acl(None));
    }

    #[test]
    fn booleans() {
        assert!(parse("verbose=1").unwrap().verbose());
        assert!(!parse("verbose=0").unwrap().verbose());
        assert!(!parse("verbose,noverbose").unwrap().verbose());
        let e = parse("verbose=yes").unwrap_err();
        assert_eq!(e.to_string(), "invalid mount option verbose: must be bool");
        assert_eq!(parse("verbose=2").unwrap_err().to_string(), "invalid mount option verbose: must be bool");
        // "nocow" is an option itself, not the negation of "cow".
        let o = parse("nocow").unwrap();
        assert_eq!(o.get(opt_lookup("nocow").unwrap()), Some(1));
        // noNAME=value is not a negation.
        assert!(matches!(parse("noverbose=1"), Err(OptParseError::Unknown(_))));
    }

    #[test]
    fn unknown_and_not_mount() {
        let e = parse("norecovery,frobnicate=3").unwrap_err();
        assert_eq!(e, OptParseError::Unknown(OptName::new("frobnicate")));
        assert_eq!(e.to_string(), "unknown mount option frobnicate");
        assert_eq!(e.errno(), Errno::EINVAL);
        let e = parse("block_size=4096").unwrap_err();
        assert_eq!(e.to_string(), "bad mount option block_size: not settable at mount time");
        let long = "x".repeat(100);
        let e = parse(&long).unwrap_err();
        assert_eq!(e.to_string(), std::format!("unknown mount option {}", "x".repeat(ERR_NAME_MAX)));
    }

    #[test]
    fn values() {
        let o = parse("metadata_checksum=xxhash,compression=zstd:3,errors=ro,fix_errors").unwrap();
        assert_eq!(o.get(opt_lookup("metadata_checksum").unwrap()), Some(3));
        assert_eq!(o.get(opt_lookup("compression").unwrap()), Some(3 | 3 << 4));
        assert_eq!(o.get(opt_lookup("errors").unwrap()), Some(3));
        assert_eq!(o.get(opt_lookup("fix_errors").unwrap()), Some(1));
        assert_eq!(parse("fix_errors=ask").unwrap().get(opt_lookup("fix_errors").unwrap()), Some(3));
        assert_eq!(
            parse("data_checksum=md5").unwrap_err().to_string(),
            "invalid mount option data_checksum: invalid selection"
        );
        assert_eq!(parse("data_checksum").unwrap_err().to_string(), "invalid mount option data_checksum: required value");
        assert_eq!(
            parse("gc_reserve_percent=50").unwrap_err().to_string(),
            "invalid mount option gc_reserve_percent: too big (max 21)"
        );
        assert_eq!(
            parse("journal_flush_delay=abc").unwrap_err().to_string(),
            "invalid mount option journal_flush_delay: must be a number"
        );
        assert_eq!(parse("compression=none:3").unwrap_err().errno(), Errno::EINVAL);
        assert!(parse("move_bytes_in_flight=2M").is_ok());
        assert!(parse("quota").unwrap().get(opt_lookup("usrquota").unwrap()) == Some(1));
        assert!(parse("foreground_target=none").is_ok());
        assert!(parse("foreground_target=/dev/sda").is_err());
    }

    #[test]
    fn unsupported() {
        assert!(parse("sb=8").is_ok());
        let e = parse("sb=1024").unwrap_err();
        assert_eq!(e, OptParseError::Unsupported(OptName::new("sb")));
        assert!(e.to_string().contains("sb"));
        assert!(matches!(parse("recovery_pass_last=journal_replay"), Err(OptParseError::Unsupported(_))));
    }

    #[test]
    fn show() {
        assert_eq!(shown(&parse("").unwrap()), "");
        assert_eq!(shown(&parse("norecovery,verbose=0,nodiscard").unwrap()), ",nodiscard,norecovery");
        assert_eq!(shown(&parse("compression=lz4:2,errors=continue").unwrap()), ",errors=continue,compression=lz4:2");
        // The hidden read_only never shows.
        assert_eq!(shown(&parse("read_only").unwrap()), "");
        assert_eq!(shown(&parse("move_bytes_in_flight=2M").unwrap()), ",move_bytes_in_flight=2.00 MiB");
    }

    #[test]
    fn to_text_full_list() {
        let mut s = String::new();
        opt_to_text(&mut s, opt_lookup("data_checksum").unwrap(), 1, true).unwrap();
        assert_eq!(s, "none [crc32c] crc64 xxhash ");
        let mut s = String::new();
        opt_to_text(&mut s, opt_lookup("metadata_target").unwrap(), 0, true).unwrap();
        assert_eq!(s, "none");
        let mut s = String::new();
        opt_to_text(&mut s, opt_lookup("gc_reserve_percent").unwrap(), 8, true).unwrap();
        assert_eq!(s, "8");
        let mut s = String::new();
        opt_to_text(&mut s, opt_lookup("recovery_passes").unwrap(), 0, true).unwrap();
        assert_eq!(s, "");
        let mut s = String::new();
        opt_to_text(&mut s, opt_lookup("recovery_pass_last").unwrap(), 0, true).unwrap();
        assert_eq!(s, "recovery_pass_empty");
    }

    #[test]
    fn human_readable_as_string_get_size() {
        let h = |v| HumanReadable(v).to_string();
        assert_eq!(h(0), "0 B");
        assert_eq!(h(512), "512 B");
        assert_eq!(h(1000), "1000 B");
        assert_eq!(h(4096), "4.00 KiB");
        assert_eq!(h(1 << 20), "1.00 MiB");
        assert_eq!(h(1536), "1.50 KiB");
        assert_eq!(h(256 << 10), "256 KiB");
        assert_eq!(h(12 << 20), "12.0 MiB");
        assert_eq!(h(1023 * 1024 + 1023), "1024 KiB");
        assert_eq!(h(u64::MAX), "16.0 EiB");
    }
}
