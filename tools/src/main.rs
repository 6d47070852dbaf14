// SPDX-License-Identifier: GPL-2.0
//! `bcachefs`: the userspace tool, built on the same core as the module.
//! Subcommands and options are named as bcachefs-tools names them.

use std::fmt::Write as _;
use std::io::Read as _;
use std::process::ExitCode;

mod list;
mod source;
use std::time::{SystemTime, UNIX_EPOCH};

use bcachefs_rs::format::sb::{self, FieldType, Sb, SbError, ValidateMode};
use bcachefs_rs::format::sb_members::{MemberFlag, Member};
use bcachefs_rs::format::sb_opts::{
    self, OptKind, SbFlag, SbOpt, COMPAT_NAMES, COMPRESSION_OPTS, DATA_TYPE_NAMES, FEATURE_NAMES,
    MEMBER_STATE_NAMES, SB_OPTS,
};
use bcachefs_rs::format::sb_write::{self, FormatOpts};
use bcachefs_rs::format::version::Version;
use bcachefs_rs::platform::{BlockDev, FileDev, WriteFlags, SECTOR_SIZE};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bcachefs", version, about = "bcachefs userspace tool (Rust)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check whether a device holds a bcachefs superblock a 6.12 kernel
    /// would accept, and print what the probe read.
    Probe {
        /// Device or image file.
        device: String,
    },
    /// Format a device (or image file) as a new single-device bcachefs
    /// filesystem, to be initialised by its first mount.
    Format(Box<FormatArgs>),
    /// Print the superblock of a device.
    #[command(name = "show-super")]
    ShowSuper {
        /// Device or image file.
        device: String,
        /// Also print the superblock layout.
        #[arg(short = 'l', long)]
        layout: bool,
    },
    /// List a btree's keys, one per line, from the newest btree roots plus
    /// the journal keys newer than the btree.
    List(list::ListArgs),
    /// Run one of the kernel's btree performance tests (C's `perf_test`
    /// sysfs file: `rand_insert`, `seq_lookup`, ...) on an image through
    /// the read-write core, print the result as the kernel prints it, and
    /// shut down cleanly.
    #[command(name = "perf-test")]
    PerfTest {
        /// Device or image file (formatted and initialized).
        device: String,
        /// Test name, as C names it.
        test: String,
        /// Operations over all threads.
        nr: u64,
        /// Threads.
        #[arg(default_value_t = 1)]
        threads: u32,
    },
}

#[derive(clap::Args)]
struct FormatArgs {
    /// Block size (512 to 4k, a power of two; default 4k).
    #[arg(long = "block_size", value_name = "size")]
    block_size: Option<String>,
    /// Bucket size (default: picked from the device size).
    #[arg(long = "bucket_size", visible_alias = "bucket", value_name = "size")]
    bucket_size: Option<String>,
    /// Btree node size (default 256k, or the bucket size if smaller).
    #[arg(long = "btree_node_size", value_name = "size")]
    btree_node_size: Option<String>,
    /// Checksum type for metadata: none, crc32c, crc64, xxhash.
    #[arg(long = "metadata_checksum", value_name = "type")]
    metadata_checksum: Option<String>,
    /// Checksum type for data: none, crc32c, crc64, xxhash.
    #[arg(long = "data_checksum", value_name = "type")]
    data_checksum: Option<String>,
    /// Compression: none, lz4, gzip, zstd, optionally with `:level`.
    #[arg(long, value_name = "type")]
    compression: Option<String>,
    /// Background compression, as --compression.
    #[arg(long = "background_compression", value_name = "type")]
    background_compression: Option<String>,
    /// Hash function for directory entries and xattrs: crc32c, crc64, siphash.
    #[arg(long = "str_hash", value_name = "type")]
    str_hash: Option<String>,
    /// Action on filesystem errors: continue, fix_safe, panic, ro.
    #[arg(long, value_name = "action")]
    errors: Option<String>,
    /// Filesystem label.
    #[arg(short = 'L', long, value_name = "label")]
    label: Option<String>,
    /// External uuid of the filesystem (default: random).
    #[arg(short = 'U', long, value_name = "uuid")]
    uuid: Option<String>,
    /// Format even if the device already holds a filesystem.
    #[arg(short, long)]
    force: bool,
    /// Only write the superblock: leave the filesystem to be initialized
    /// by its first mount (the behaviour before initialization existed).
    #[arg(long = "no_initialize")]
    no_initialize: bool,
    /// Copy this host directory into the new filesystem.
    #[arg(long, value_name = "dir")]
    source: Option<String>,
    /// Before the clean shutdown, print the mounted filesystem's state
    /// (journal, pins, allocator, open buckets, write points, btree
    /// updates), each under the name of the sysfs/debugfs file C prints
    /// it in.
    #[arg(short, long)]
    verbose: bool,
    /// Device or image file.
    device: String,
}

fn read_sb(dev: &FileDev) -> Result<Vec<u8>, String> {
    let name = dev.name().to_string();
    let have = dev.nr_sectors();
    let mut len = sb::SB_PROBE_BYTES;
    loop {
        let sectors = (len / SECTOR_SIZE) as u64;
        if sb::SB_SECTOR + sectors > have {
            return Err(format!("{name}: device too small for a superblock ({have} sectors)"));
        }
        let mut buf = vec![0u8; len];
        dev.read_sectors(sb::SB_SECTOR, &mut buf)
            .map_err(|e| format!("{name}: reading the superblock: {e}"))?;
        match Sb::parse(&buf) {
            Err(SbError::Incomplete { need, .. }) if (need as usize) > len => {
                len = (need as usize).next_multiple_of(SECTOR_SIZE);
            }
            Err(e) => return Err(format!("{name}: {e}")),
            Ok(_) => return Ok(buf),
        }
    }
}

fn probe(device: &str) -> Result<(), String> {
    let dev = FileDev::open(device).map_err(|e| format!("{device}: {e}"))?;
    let mut buf = vec![0u8; sb::SB_PROBE_BYTES];
    dev.read_sectors(sb::SB_SECTOR, &mut buf)
        .map_err(|e| format!("{device}: reading the superblock: {e}"))?;
    let p = sb::probe(&buf).map_err(|e| format!("{device}: {e}"))?;
    let label = String::from_utf8_lossy(&p.label);
    println!("Device:            {device}");
    println!("Internal UUID:     {}", uuid_str(&p.uuid));
    println!("Label:             {}", label.trim_end_matches('\0'));
    println!("Version:           {}", p.version);
    println!("Oldest version:    {}", p.version_min);
    println!("Superblock size:   {} bytes", p.bytes);
    Ok(())
}

fn uuid_str(u: &[u8; 16]) -> String {
    let mut s = String::new();
    sb::fmt_uuid(&mut s, u).unwrap();
    s
}

fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || s.len() != 36 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("invalid uuid {s}"));
    }
    let mut u = [0u8; 16];
    for (i, b) in u.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(u)
}

/// A random (version 4) uuid from /dev/urandom.
fn random_uuid() -> Result<[u8; 16], String> {
    let mut u = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut u))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    Ok(u)
}

/// What filesystem, if any, `dev` already holds: bcachefs magic at sector
/// 8, or the ext2/3/4 magic 0xEF53 at byte 1080.
fn existing_fs(dev: &FileDev) -> Result<Option<&'static str>, String> {
    let mut buf = vec![0u8; 8192];
    if dev.nr_sectors() < (buf.len() / SECTOR_SIZE) as u64 {
        buf.truncate((dev.nr_sectors() as usize) * SECTOR_SIZE);
    }
    if buf.is_empty() {
        return Ok(None);
    }
    dev.read_sectors(0, &mut buf).map_err(|e| format!("{}: {e}", dev.name()))?;
    let at = sb::SB_SECTOR as usize * SECTOR_SIZE + sb::off::MAGIC;
    if let Some(m) = buf.get(at..at + 16) {
        if m == sb::BCHFS_MAGIC || m == sb::BCACHE_MAGIC {
            return Ok(Some("bcachefs"));
        }
    }
    if buf.get(1080..1082) == Some(&[0x53, 0xef][..]) {
        return Ok(Some("ext2/ext3/ext4"));
    }
    Ok(None)
}

fn format_cmd(a: &FormatArgs) -> Result<(), String> {
    let device = &a.device;
    let dev = FileDev::open_rw(device).map_err(|e| format!("{device}: {e}"))?;
    if !a.force {
        if let Some(fs) = existing_fs(&dev)? {
            return Err(format!(
                "{device} already holds a {fs} filesystem; use --force to overwrite it"
            ));
        }
    }

    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
    let user_uuid = match &a.uuid {
        Some(s) => parse_uuid(s)?,
        None => random_uuid()?,
    };
    let mut o = FormatOpts::new(user_uuid, random_uuid()?, random_uuid()?, now.as_nanos() as u64);
    if let Some(l) = &a.label {
        o.label = l.as_bytes();
    }
    for (name, v) in [
        ("block_size", &a.block_size),
        ("btree_node_size", &a.btree_node_size),
        ("metadata_checksum", &a.metadata_checksum),
        ("data_checksum", &a.data_checksum),
        ("compression", &a.compression),
        ("background_compression", &a.background_compression),
        ("str_hash", &a.str_hash),
        ("errors", &a.errors),
    ] {
        if let Some(v) = v {
            o.set_str(name, v).map_err(|e| format!("--{name}={v}: {e}"))?;
        }
    }
    if let Some(b) = &a.bucket_size {
        o.bucket_size =
            Some(sb_opts::parse_size(b).ok_or_else(|| format!("--bucket_size={b}: invalid size"))?);
    }

    let bytes = dev.nr_sectors() * SECTOR_SIZE as u64;
    let f = sb_write::format(bytes, &o).map_err(|e| format!("{device}: {e}"))?;
    for (sector, data) in f.writes().map_err(|e| e.to_string())?.iter() {
        dev.write_sectors(*sector, data, WriteFlags::NONE)
            .map_err(|e| format!("{device}: writing sector {sector}: {e}"))?;
    }
    dev.flush().map_err(|e| format!("{device}: flush: {e}"))?;

    if a.no_initialize && a.source.is_some() {
        return Err("--source needs the filesystem initialized: drop --no_initialize".into());
    }
    if !a.no_initialize {
        // bch2_fs_initialize() as C's first mount runs it, then a clean
        // shutdown (bcachefs-tools' format opens and stops the filesystem).
        let mut seed = [0u8; 16];
        seed.copy_from_slice(&random_uuid()?);
        let seed = u64::from_le_bytes(seed[..8].try_into().map_err(|_| "seed".to_string())?);
        let now_ns = i64::try_from(now.as_nanos()).map_err(|e| e.to_string())?;
        let open = bcachefs_rs::fs_rw::BchFsOpen::open(dev).map_err(|e| format!("{device}: opening: {e}"))?;
        let mut copy_err = None;
        open.mount(now_ns, seed, |fs| {
            bcachefs_rs::fs_initialize::fs_initialize(fs)?;
            if let Some(src) = &a.source {
                if let Err(e) = source::copy_fs(fs, std::path::Path::new(src)) {
                    copy_err = Some(e);
                }
            }
            if a.verbose {
                let mut text = String::new();
                // Writing into a String cannot fail.
                let _ = fs.to_text(&mut text);
                println!("{text}");
            }
            fs.shutdown()
        })
        .map_err(|e| format!("{device}: initializing: {e}"))?;
        if let Some(e) = copy_err {
            return Err(format!("--source: {e}"));
        }
        open.dev.flush().map_err(|e| format!("{device}: sync: {e}"))?;
        let sb = open.sb.lock();
        let s = Sb::parse_verified(sb.bytes()).map_err(|e| e.to_string())?;
        print!("{}", sb_to_text(&s, false));
        return Ok(());
    }

    let c = f.copy(0).map_err(|e| e.to_string())?;
    let s = Sb::parse_verified(&c).map_err(|e| e.to_string())?;
    print!("{}", sb_to_text(&s, false));
    Ok(())
}

/// A size the way the kernel's `string_get_size()` prints it: three
/// significant digits and a binary unit.
fn human(v: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if v < 1024 {
        return format!("{v} B");
    }
    let mut f = v as f64;
    let mut u = 0;
    while f >= 1024.0 && u < UNITS.len() - 1 {
        f /= 1024.0;
        u += 1;
    }
    let s = if f >= 100.0 {
        format!("{f:.0}")
    } else if f >= 10.0 {
        format!("{f:.1}")
    } else {
        format!("{f:.2}")
    };
    format!("{s} {}", UNITS[u])
}

/// Seconds since the epoch as `ctime()` prints them, in UTC.
fn datetime(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {} UTC",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

/// Names of the set bits of `v` from `names`, comma-separated
/// (`prt_bitflags()`).
fn bitflags(names: &[&str], v: u64) -> String {
    let mut out = Vec::new();
    for bit in 0..64 {
        if v & (1 << bit) != 0 {
            match names.get(bit) {
                Some(n) => out.push((*n).to_string()),
                None => break,
            }
        }
    }
    out.join(",")
}

fn opt_to_text(o: &SbOpt, v: u64) -> String {
    match o.kind {
        OptKind::Bool | OptKind::Uint { .. } if o.human => human(v),
        OptKind::Bool | OptKind::Uint { .. } => v.to_string(),
        OptKind::Str(choices) => match choices.get(v as usize) {
            Some(_) => choices
                .iter()
                .enumerate()
                .map(|(i, c)| if i as u64 == v { format!("[{c}] ") } else { format!("{c} ") })
                .collect(),
            None => format!("(invalid option {v})"),
        },
        OptKind::Compression => {
            let (ty, level) = (v & 15, v >> 4);
            let mut s = match COMPRESSION_OPTS.get(ty as usize) {
                Some(n) => (*n).to_string(),
                None => format!("(unknown compression opt {ty})"),
            };
            if level != 0 {
                let _ = write!(s, ":{level}");
            }
            s
        }
        OptKind::Target if v == 0 => "none".to_string(),
        OptKind::Target => format!("(target {v})"),
    }
}

fn member_to_text(out: &mut String, i: u8, m: &Member) {
    const W: usize = 42;
    let bucket = u64::from(m.bucket_size);
    let _ = writeln!(out, "{:<44}{i}", "Device:");
    let line = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "  {k:<W$}{v}");
    };
    let group = m.flag(MemberFlag::Group);
    line(out, "Label:", if group == 0 { "(none)".into() } else { format!("(group {})", group - 1) });
    line(out, "UUID:", uuid_str(&m.uuid));
    line(out, "Size:", human(m.nbuckets.saturating_mul(bucket) << 9));
    for (n, e) in ["read", "write", "checksum"].iter().zip(m.errors) {
        line(out, &format!("{n} errors:"), e.to_string());
    }
    for (n, x) in ["seqread", "seqwrite", "randread", "randwrite"].iter().zip(m.iops) {
        line(out, &format!("{n} iops:"), x.to_string());
    }
    line(out, "Bucket size:", human(bucket << 9));
    line(out, "First bucket:", m.first_bucket.to_string());
    line(out, "Buckets:", m.nbuckets.to_string());
    line(
        out,
        "Last mount:",
        if m.last_mount == 0 { "(never)".into() } else { datetime(m.last_mount) },
    );
    line(out, "Last superblock write:", m.seq.to_string());
    let state = m.flag(MemberFlag::State) as usize;
    line(out, "State:", MEMBER_STATE_NAMES.get(state).unwrap_or(&"unknown").to_string());
    let allowed = m.flag(MemberFlag::DataAllowed);
    line(
        out,
        "Data allowed:",
        if allowed == 0 { "(none)".into() } else { bitflags(DATA_TYPE_NAMES, allowed) },
    );
    line(
        out,
        "Btree allocated bitmap blocksize:",
        if m.btree_bitmap_shift < 64 {
            human(1 << m.btree_bitmap_shift)
        } else {
            format!("(invalid shift {})", m.btree_bitmap_shift)
        },
    );
    line(out, "Btree allocated bitmap:", format!("{:064b}", m.btree_allocated_bitmap));
    line(out, "Durability:", m.durability().to_string());
    line(out, "Discard:", m.flag(MemberFlag::Discard).to_string());
    line(out, "Freespace initialized:", m.flag(MemberFlag::FreespaceInitialized).to_string());
}

/// The superblock in the form of `bch2_sb_to_text()`.
fn sb_to_text(s: &Sb<'_>, print_layout: bool) -> String {
    let mut out = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<44}{v}");
    };
    kv("External UUID:", uuid_str(&s.user_uuid()));
    kv("Internal UUID:", uuid_str(&s.uuid()));
    kv("Magic number:", uuid_str(&s.magic()));
    kv("Device index:", s.dev_idx().to_string());
    let label = String::from_utf8_lossy(s.label_bytes()).into_owned();
    kv("Label:", if label.is_empty() { "(none)".into() } else { label });
    kv("Version:", s.version().to_string());
    kv(
        "Version upgrade complete:",
        Version(s.flag(SbFlag::VersionUpgradeComplete) as u16).to_string(),
    );
    kv("Oldest version on disk:", s.version_min().to_string());
    kv(
        "Created:",
        if s.time_base_lo() == 0 {
            "(not set)".into()
        } else {
            datetime(s.time_base_lo() / 1_000_000_000)
        },
    );
    kv("Sequence number:", s.seq().to_string());
    kv("Time of last write:", datetime(s.write_time()));
    kv(
        "Superblock size:",
        format!("{}/{}", human(s.bytes().len() as u64), human(512 << s.layout().sb_max_size_bits)),
    );
    kv("Clean:", s.flag(SbFlag::Clean).to_string());
    kv("Devices:", s.nr_alive_devices().to_string());
    let sections: Vec<&str> = s
        .fields()
        .map_while(Result::ok)
        .filter_map(|f| f.name())
        .collect();
    kv("Sections:", sections.join(","));
    kv("Features:", bitflags(FEATURE_NAMES, s.features()[0]));
    kv("Compat features:", bitflags(COMPAT_NAMES, s.compat()[0]));
    let csum = match s.csum_type() {
        Ok(t) => t.name().to_string(),
        Err(e) => e.to_string(),
    };
    kv("Superblock checksum:", csum);
    out.push('\n');
    out.push_str("Options:\n");
    for o in SB_OPTS {
        let _ = writeln!(out, "  {:<42}{}", format!("{}:", o.name), opt_to_text(o, s.opt(o)));
    }
    if print_layout {
        let l = s.layout();
        out.push_str("\nlayout:\n");
        let _ = writeln!(out, "  {:<24}{}", "Type:", l.layout_type);
        let _ = writeln!(out, "  {:<24}{}", "Superblock max size:", human(512 << l.sb_max_size_bits));
        let _ = writeln!(out, "  {:<24}{}", "Nr superblocks:", l.nr_superblocks);
        let offs: Vec<String> = l.offsets().iter().map(u64::to_string).collect();
        let _ = writeln!(out, "  {:<24}{}", "Offsets:", offs.join(", "));
    }
    if let Some(f) = s.field(FieldType::MembersV2).or_else(|| s.field(FieldType::MembersV1)) {
        let _ = writeln!(out, "\n{} (size {}):", f.name().unwrap_or("members"), f.bytes.len());
        for (i, m) in s.members() {
            if m.alive() {
                member_to_text(&mut out, i, &m);
            }
        }
    }
    out
}

fn show_super(device: &str, layout: bool) -> Result<(), String> {
    let dev = FileDev::open(device).map_err(|e| format!("{device}: {e}"))?;
    let buf = read_sb(&dev)?;
    let s = Sb::parse(&buf).map_err(|e| format!("{device}: {e}"))?;
    print!("{}", sb_to_text(&s, layout));
    s.verify_csum()
        .and_then(|()| s.validate(ValidateMode::Read))
        .map_err(|e| format!("{device}: invalid superblock: {e}"))
}

/// `perf-test`: C's `bch2_btree_perf_test()` on a mount of `device`.
fn perf_test(device: &str, test: &str, nr: u64, threads: u32) -> Result<(), String> {
    use bcachefs_rs::perf_test::{perf_test_run, PerfTest, PerfTestResult};
    let t = PerfTest::from_name(test).ok_or_else(|| format!("unknown test {test}"))?;
    if nr == 0 || threads == 0 {
        return Err("nr of iterations or threads is not allowed to be 0".into());
    }
    let dev = FileDev::open_rw(device).map_err(|e| format!("{device}: {e}"))?;
    let open = bcachefs_rs::fs_rw::BchFsOpen::open(dev).map_err(|e| format!("{device}: opening: {e}"))?;
    if open.fresh {
        return Err(format!("{device}: not initialized (format it without --no_initialize)"));
    }
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_nanos() as i64;
    let fs = bcachefs_rs::fs_rw::BchFs::start(open, now_ns, now_ns as u64).map_err(|e| format!("{device}: mounting: {e}"))?;
    let start = std::time::Instant::now();
    let r: Result<(), bcachefs_rs::errcode::Errno> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|i| {
            let fs = &fs;
            s.spawn(move || perf_test_run(fs, t, nr / u64::from(threads), now_ns as u64 ^ u64::from(i) << 48))
        }).collect();
        hs.into_iter().try_for_each(|h| h.join().unwrap_or(Err(bcachefs_rs::errcode::Errno::EIO)))
    });
    let ns = start.elapsed().as_nanos() as u64;
    r.map_err(|e| format!("{test}: error {e}"))?;
    println!("{}", PerfTestResult { test: t, nr, threads, ns });
    fs.shutdown().map_err(|e| format!("{device}: shutdown: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Probe { device } => probe(&device),
        Cmd::Format(a) => format_cmd(&a),
        Cmd::ShowSuper { device, layout } => show_super(&device, layout),
        Cmd::List(a) => list::list(&a),
        Cmd::PerfTest { device, test, nr, threads } => perf_test(&device, &test, nr, threads),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bcachefs: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_like_the_kernel() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(4096), "4.00 KiB");
        assert_eq!(human(65536), "64.0 KiB");
        assert_eq!(human(256 << 10), "256 KiB");
        assert_eq!(human(1 << 30), "1.00 GiB");
    }

    #[test]
    fn dates() {
        assert_eq!(datetime(0), "Thu Jan  1 00:00:00 1970 UTC");
        assert_eq!(datetime(1_700_000_000), "Tue Nov 14 22:13:20 2023 UTC");
        assert_eq!(datetime(951_782_400), "Tue Feb 29 00:00:00 2000 UTC");
    }

    #[test]
    fn uuids() {
        let u = parse_uuid("01234567-89ab-cdef-0123-456789abcdef").unwrap();
        assert_eq!(uuid_str(&u), "01234567-89ab-cdef-0123-456789abcdef");
        assert!(parse_uuid("0123456789abcdef0123456789abcdef").is_err());
        assert!(parse_uuid("01234567-89ab-cdef-0123-456789abcdeg").is_err());
        let r = random_uuid().unwrap();
        assert_eq!(r[6] >> 4, 4);
        assert_eq!(r[8] >> 6, 2);
    }

    #[test]
    fn option_text() {
        let errors = sb_opts::sb_opt("errors").unwrap();
        assert_eq!(opt_to_text(errors, 1), "continue [fix_safe] panic ro ");
        assert_eq!(opt_to_text(errors, 9), "(invalid option 9)");
        let c = sb_opts::sb_opt("compression").unwrap();
        assert_eq!(opt_to_text(c, 0x33), "zstd:3");
        assert_eq!(opt_to_text(sb_opts::sb_opt("block_size").unwrap(), 4096), "4.00 KiB");
        assert_eq!(bitflags(DATA_TYPE_NAMES, 0x1c), "journal,btree,user");
    }
}
