// SPDX-License-Identifier: GPL-2.0
//! sysfs: the `/sys/fs/bcachefs/` kset (`bcachefs_kset` in
//! `fs/bcachefs/super.c`) and, for each mounted filesystem, its
//! `<user uuid>/` directory (`bch2_fs_sysfs_add`, `bch2_dev_sysfs_online`
//! and the `SHOW()` functions of `fs/bcachefs/sysfs.c`), read-only:
//!
//! ```text
//! <uuid>/btree_cache_size        bytes, human-readable
//! <uuid>/internal/journal_debug
//! <uuid>/internal/internal_uuid
//! <uuid>/options/<option>        one file per filesystem option
//! <uuid>/dev-<idx>/uuid bucket_size first_bucket nbuckets durability io_done
//! <uuid>/time_stats/<stat>       read-write mounts: one per recorded stat
//! ```
//!
//! Files are laid out and printed as C's are; see
//! `Documentation/ABI/testing/sysfs-fs-bcachefs-rs`.

use core::fmt::{self, Write as _};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::alloc::{flags, KBox};
use kernel::ffi::c_char;

use crate::bindings;
use crate::errcode::Errno;
use crate::format::sb::Sb;
use crate::format::sb_opts::DATA_TYPE_NAMES;
use crate::fs_rw::RECORDED_TIME_STATS;
use crate::fs::{FsInfo, UuidFmt, UuidStr};
use crate::opts::{self, HumanReadable, NR_OPTS, OPTS, OPT_FS, OPT_RUNTIME};

const PAGE_SIZE: usize = 4096;

/// The kset, while the module is loaded, for [`FsDir::create`].
static KSET: AtomicPtr<bindings::kset> = AtomicPtr::new(ptr::null_mut());

/// The `/sys/fs/bcachefs` directory; removed on drop.
///
/// # Invariants
///
/// `0` is a kset returned by `kset_create_and_add()`, owned by this value.
pub(crate) struct BcachefsKset(NonNull<bindings::kset>);

// SAFETY: a kset is refcounted and internally locked; we only unregister
// it, once, from `Drop`.
unsafe impl Send for BcachefsKset {}
// SAFETY: as above, there are no `&self` methods that mutate.
unsafe impl Sync for BcachefsKset {}

impl BcachefsKset {
    /// Creates `/sys/fs/bcachefs`.
    ///
    /// Errors: `ENOMEM`, or `EBUSY` if it already exists (the C bcachefs
    /// module is loaded).
    pub(crate) fn create() -> Result<Self, Errno> {
        // SAFETY: the name is a static C string; `fs_kobj` is the kernel's
        // `/sys/fs` kobject, which lives as long as the kernel.
        let k = unsafe {
            bindings::kset_create_and_add(
                c"bcachefs".as_ptr().cast(),
                core::ptr::null(),
                bindings::fs_kobj,
            )
        };
        // INVARIANT: non-null means created and owned by us.
        let k = NonNull::new(k).map(BcachefsKset).ok_or(Errno::EBUSY)?;
        KSET.store(k.0.as_ptr(), Ordering::Release);
        Ok(k)
    }
}

impl Drop for BcachefsKset {
    fn drop(&mut self) {
        KSET.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: owned by the type invariant; unregistered once.  No
        // filesystem directory is left: the module is unloading, so
        // nothing is mounted.
        unsafe { bindings::kset_unregister(self.0.as_ptr()) };
    }
}

// Indices of the fixed files in `FsKobj::attrs`; the options follow.
const A_BTREE_CACHE_SIZE: usize = 0;
const A_JOURNAL_DEBUG: usize = 1;
const A_INTERNAL_UUID: usize = 2;
const A_DEV_UUID: usize = 3;
const A_BUCKET_SIZE: usize = 4;
const A_FIRST_BUCKET: usize = 5;
const A_NBUCKETS: usize = 6;
const A_DURABILITY: usize = 7;
const A_IO_DONE: usize = 8;
const A_BTREE_WRITE_STATS: usize = 9;
const A_PERF_TEST: usize = 10;
const A_ALLOC_DEBUG: usize = 11;
const A_OPEN_BUCKETS: usize = 12;
const A_WRITE_POINTS: usize = 13;
const A_BTREE_UPDATES: usize = 14;
const A_DIRTY_BTREE_NODES: usize = 15;
const A_TRIGGER_JOURNAL_FLUSH: usize = 16;
const A_TRIGGER_JOURNAL_WRITES: usize = 17;
const A_TRIGGER_BTREE_CACHE_SHRINK: usize = 18;
const A_DEV_ALLOC_DEBUG: usize = 19;
const A_DEV_IO_ERRORS: usize = 20;
const NR_FIXED: usize = 21;
const FIXED_NAMES: [&core::ffi::CStr; NR_FIXED] = [
    c"btree_cache_size",
    c"journal_debug",
    c"internal_uuid",
    c"uuid",
    c"bucket_size",
    c"first_bucket",
    c"nbuckets",
    c"durability",
    c"io_done",
    c"btree_write_stats",
    c"perf_test",
    c"alloc_debug",
    c"open_buckets",
    c"write_points",
    c"btree_updates",
    c"dirty_btree_nodes",
    c"trigger_journal_flush",
    c"trigger_journal_writes",
    c"trigger_btree_cache_shrink",
    c"alloc_debug",
    c"io_errors",
];
/// The write-only files (C's `write_attribute()`).
const WRITE_ONLY: [usize; 4] = [A_PERF_TEST, A_TRIGGER_JOURNAL_FLUSH, A_TRIGGER_JOURNAL_WRITES, A_TRIGGER_BTREE_CACHE_SHRINK];
const NAME_MAX: usize = 48;
/// The `time_stats/` files: [`RECORDED_TIME_STATS`], after the options
/// in `FsKobj::attrs`.
const NR_TS: usize = RECORDED_TIME_STATS.len();
const A_TIME_STATS: usize = NR_FIXED + NR_OPTS;

/// The kobject of one filesystem's directory and every attribute under
/// it, in one allocation freed by the kobject's release.
///
/// # Invariants
///
/// Allocated zeroed by [`FsDir::create`]; `kobj` is first (so a kobject
/// pointer is a pointer to the whole); `info` outlives every `show` call
/// (the owning [`FsDir`] is dropped, removing the files and waiting for
/// readers, before the `FsInfo` goes).
#[repr(C)]
struct FsKobj {
    kobj: bindings::kobject,
    info: *const FsInfo,
    attrs: [bindings::attribute; NR_FIXED + NR_OPTS + NR_TS],
    opt_names: [[u8; NAME_MAX]; NR_OPTS],
    ts_names: [[u8; NAME_MAX]; NR_TS],
    dev_name: [u8; 16],
    top: [*mut bindings::attribute; 4],
    internal: [*mut bindings::attribute; 11],
    dev: [*mut bindings::attribute; 9],
    options: [*mut bindings::attribute; NR_OPTS + 1],
    time_stats: [*mut bindings::attribute; NR_TS + 1],
    group_store: [bindings::attribute_group; 5],
    groups: [*const bindings::attribute_group; 6],
}

static FS_SYSFS_OPS: bindings::sysfs_ops = bindings::sysfs_ops { show: Some(fs_show), store: Some(fs_store) };

/// `kobj_type` wrapper: the kernel's struct holds raw pointers.
struct KType(bindings::kobj_type);
// SAFETY: immutable after compilation; the kernel only reads it.
unsafe impl Sync for KType {}

static FS_KTYPE: KType = KType(bindings::kobj_type {
    release: Some(fs_release),
    sysfs_ops: &FS_SYSFS_OPS,
    default_groups: ptr::null_mut(),
    child_ns_type: None,
    namespace: None,
    get_ownership: None,
});

/// `release`: frees the allocation.
///
/// # Safety
///
/// Called by the kobject core once, when the last reference goes.
unsafe extern "C" fn fs_release(kobj: *mut bindings::kobject) {
    // SAFETY: every kobject of `FS_KTYPE` is the first field of a leaked
    // `KBox<FsKobj>` (invariant); this is its only release.
    drop(unsafe { KBox::from_raw(kobj.cast::<FsKobj>()) });
}

/// One filesystem's `/sys/fs/bcachefs/<uuid>/`; removed on drop.
///
/// # Invariants
///
/// `0` is an added kobject of `FS_KTYPE` holding one reference.
pub(crate) struct FsDir(NonNull<FsKobj>);

// SAFETY: kobjects are refcounted and may be removed from any thread.
unsafe impl Send for FsDir {}
// SAFETY: no `&self` methods.
unsafe impl Sync for FsDir {}

impl FsDir {
    /// Creates the directory of `info`'s filesystem, named by its user
    /// uuid.  `info` must outlive the returned value.
    ///
    /// Errors: `EBUSY` when a filesystem with that uuid already has one,
    /// `ENOMEM`, or what `kobject_add()` returns.
    pub(crate) fn create(info: &FsInfo, uuid: &[u8; 16]) -> Result<Self, Errno> {
        let kset = KSET.load(Ordering::Acquire);
        if kset.is_null() {
            return Err(Errno::EOPNOTSUPP);
        }
        let name = UuidStr::new(uuid);
        // SAFETY: `kset` is alive while the module is; the name is a
        // NUL-terminated string.  A found object is referenced; we drop it.
        let dup = unsafe { bindings::kset_find_obj(kset, name.as_ptr()) };
        if !dup.is_null() {
            // SAFETY: the reference `kset_find_obj` took.
            unsafe { bindings::kobject_put(dup) };
            return Err(Errno::EBUSY);
        }
        let b = KBox::<FsKobj>::new_uninit(flags::GFP_KERNEL | flags::__GFP_ZERO).map_err(|_| Errno::ENOMEM)?;
        // SAFETY: zeroed memory is a valid `FsKobj`: integers, null
        // pointers, `None` callbacks, zeroed lock keys and kobject.
        let b: KBox<FsKobj> = unsafe { b.assume_init() };
        let p = KBox::into_raw(b);
        let dev_idx = info.with_sb_bytes(|b| Sb::parse(b).map(|s| s.dev_idx()).unwrap_or(0));
        // SAFETY: `p` is ours alone until `kobject_init_and_add`; every
        // pointer stored points into the same allocation, which lives
        // until the release.  Each attribute gets its lockdep key before
        // sysfs sees it.
        unsafe {
            let k = &mut *p;
            k.info = info;
            for (i, n) in FIXED_NAMES.iter().enumerate() {
                k.attrs[i].name = n.as_ptr().cast();
                k.attrs[i].mode = if WRITE_ONLY.contains(&i) { 0o200 } else { 0o444 };
            }
            let mut nopts = 0;
            for (i, o) in OPTS.iter().enumerate() {
                let len = o.name.len().min(NAME_MAX - 1);
                k.opt_names[i][..len].copy_from_slice(&o.name.as_bytes()[..len]);
                let a = &mut k.attrs[NR_FIXED + i];
                a.name = k.opt_names[i].as_ptr().cast();
                // C's options are all 0644; a write to one that cannot
                // change at runtime fails.  Ours: writable where the
                // option is `OPT_RUNTIME` and the mount read-write.
                a.mode = if o.flags & OPT_RUNTIME != 0 && info.is_rw() { 0o644 } else { 0o444 };
                if o.flags & OPT_FS != 0 {
                    k.options[nopts] = a;
                    nopts += 1;
                }
            }
            // time_stats/: read, or written to reset (C's 0644).
            for (i, id) in RECORDED_TIME_STATS.iter().enumerate() {
                let n = id.name().as_bytes();
                let len = n.len().min(NAME_MAX - 1);
                k.ts_names[i][..len].copy_from_slice(&n[..len]);
                let a = &mut k.attrs[A_TIME_STATS + i];
                a.name = k.ts_names[i].as_ptr().cast();
                a.mode = 0o644;
            }
            for a in k.attrs.iter_mut() {
                bindings::bch_rs_sysfs_attr_init(a);
            }
            let attrs = k.attrs.as_mut_ptr();
            k.top = [attrs.add(A_BTREE_CACHE_SIZE), attrs.add(A_BTREE_WRITE_STATS), attrs.add(A_PERF_TEST), ptr::null_mut()];
            k.internal = [
                attrs.add(A_JOURNAL_DEBUG),
                attrs.add(A_INTERNAL_UUID),
                attrs.add(A_ALLOC_DEBUG),
                attrs.add(A_OPEN_BUCKETS),
                attrs.add(A_WRITE_POINTS),
                attrs.add(A_BTREE_UPDATES),
                attrs.add(A_DIRTY_BTREE_NODES),
                attrs.add(A_TRIGGER_JOURNAL_FLUSH),
                attrs.add(A_TRIGGER_JOURNAL_WRITES),
                attrs.add(A_TRIGGER_BTREE_CACHE_SHRINK),
                ptr::null_mut(),
            ];
            k.dev = [
                attrs.add(A_DEV_ALLOC_DEBUG),
                attrs.add(A_DEV_UUID),
                attrs.add(A_BUCKET_SIZE),
                attrs.add(A_FIRST_BUCKET),
                attrs.add(A_NBUCKETS),
                attrs.add(A_DURABILITY),
                attrs.add(A_IO_DONE),
                attrs.add(A_DEV_IO_ERRORS),
                ptr::null_mut(),
            ];
            let mut w = ByteWriter { buf: &mut k.dev_name[..15], len: 0 };
            let _ = write!(w, "dev-{dev_idx}");
            k.group_store[0].attrs = k.top.as_mut_ptr();
            k.group_store[1].name = c"internal".as_ptr().cast();
            k.group_store[1].attrs = k.internal.as_mut_ptr();
            k.group_store[2].name = c"options".as_ptr().cast();
            k.group_store[2].attrs = k.options.as_mut_ptr();
            k.group_store[3].name = k.dev_name.as_ptr().cast();
            k.group_store[3].attrs = k.dev.as_mut_ptr();
            for i in 0..NR_TS {
                k.time_stats[i] = attrs.add(A_TIME_STATS + i);
            }
            k.time_stats[NR_TS] = ptr::null_mut();
            k.group_store[4].name = c"time_stats".as_ptr().cast();
            k.group_store[4].attrs = k.time_stats.as_mut_ptr();
            for i in 0..4 {
                k.groups[i] = &k.group_store[i];
            }
            // Only a read-write mount records time stats.
            k.groups[4] = if info.is_rw() { &k.group_store[4] } else { ptr::null() };
            k.groups[5] = ptr::null();
        }
        // SAFETY: `p`'s kobject is zeroed (not initialised); from here the
        // kobject owns the allocation: on failure `kobject_put` releases
        // it.  The parent kset outlives every filesystem.
        let ret = unsafe {
            bindings::kobject_init_and_add(
                p.cast(),
                &FS_KTYPE.0,
                ptr::addr_of_mut!((*kset).kobj),
                c"%s".as_ptr().cast(),
                name.as_ptr(),
            )
        };
        if ret != 0 {
            // SAFETY: drops the initial reference; the release frees `p`.
            unsafe { bindings::kobject_put(p.cast()) };
            return Err(Errno(-ret));
        }
        // SAFETY: the kobject is added; the groups live inside it.
        let ret = unsafe { bindings::sysfs_create_groups(p.cast(), (*p).groups.as_mut_ptr()) };
        if ret != 0 {
            // SAFETY: removes the directory, then drops our reference.
            unsafe {
                bindings::kobject_del(p.cast());
                bindings::kobject_put(p.cast());
            }
            return Err(Errno(-ret));
        }
        // INVARIANT: added, one reference held.
        // SAFETY: `p` is non-null (it came from a box).
        Ok(FsDir(unsafe { NonNull::new_unchecked(p) }))
    }
}

impl Drop for FsDir {
    fn drop(&mut self) {
        // SAFETY: added by `create`; `kobject_del` removes the files and
        // waits for `show` calls in flight, so none runs after this and
        // `info` may go.  The put drops our reference (the release frees).
        unsafe {
            bindings::kobject_del(self.0.as_ptr().cast());
            bindings::kobject_put(self.0.as_ptr().cast());
        }
    }
}

/// Writes into a byte buffer, cutting what does not fit.
struct ByteWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// `sysfs_ops.show`: prints attribute `attr` of the filesystem into the
/// page `buf`, ending with a newline as C's `SHOW()` wrapper does.
///
/// # Safety
///
/// Called by sysfs with one of our kobjects, one of its attributes and a
/// `PAGE_SIZE` buffer.
unsafe extern "C" fn fs_show(kobj: *mut bindings::kobject, attr: *mut bindings::attribute, buf: *mut c_char) -> isize {
    // SAFETY: `kobj` is the first field of an `FsKobj` (invariant) whose
    // `info` is alive while its files exist; `buf` is a page.
    let (k, out) = unsafe { (&*kobj.cast::<FsKobj>(), core::slice::from_raw_parts_mut(buf.cast::<u8>(), PAGE_SIZE)) };
    // SAFETY: see the invariant of `FsKobj`.
    let info = unsafe { &*k.info };
    let idx = (attr as usize).wrapping_sub(k.attrs.as_ptr() as usize) / core::mem::size_of::<bindings::attribute>();
    let mut w = ByteWriter { buf: out, len: 0 };
    let _nofs = crate::fs::NofsScope::new();
    let _ = show(info, idx, &mut w);
    if w.len > 0 && w.buf[w.len - 1] != b'\n' {
        if w.len == w.buf.len() {
            w.len -= 1;
        }
        w.buf[w.len] = b'\n';
        w.len += 1;
    }
    w.len as isize
}

fn show(info: &FsInfo, idx: usize, w: &mut dyn fmt::Write) -> fmt::Result {
    info.with_sb_bytes(|b| show_sb(info, Sb::parse(b).ok(), idx, w))
}

fn show_sb(info: &FsInfo, sb: Option<Sb<'_>>, idx: usize, w: &mut dyn fmt::Write) -> fmt::Result {
    let member = sb.as_ref().and_then(|s| s.member(s.dev_idx()));
    match idx {
        A_BTREE_CACHE_SIZE => write!(w, "{}", HumanReadable(info.btree_cache_bytes() as u64)),
        A_JOURNAL_DEBUG => info.journal_debug_to_text(w),
        A_INTERNAL_UUID => match &sb {
            Some(s) => write!(w, "{}", UuidFmt(&s.uuid())),
            None => Ok(()),
        },
        A_DEV_UUID => match &member {
            Some(m) => write!(w, "{}", UuidFmt(&m.uuid)),
            None => Ok(()),
        },
        A_BUCKET_SIZE => match &member {
            Some(m) => write!(w, "{}", u32::from(m.bucket_size) << 9),
            None => Ok(()),
        },
        A_FIRST_BUCKET => match &member {
            Some(m) => write!(w, "{}", m.first_bucket),
            None => Ok(()),
        },
        A_NBUCKETS => match &member {
            Some(m) => write!(w, "{}", m.nbuckets),
            None => Ok(()),
        },
        A_DURABILITY => match &member {
            Some(m) => write!(w, "{}", m.durability()),
            None => Ok(()),
        },
        A_IO_DONE => io_done_to_text(info, w),
        A_DEV_IO_ERRORS => {
            // SAFETY: reads the clock.
            let now_secs = unsafe { bindings::ktime_get_real_seconds() } as u64;
            match &info.fs {
                crate::fs::Mounted::Rw(fs) => fs.io_errors_to_text(w, now_secs).map_err(|_| fmt::Error),
                // A read-only mount writes nothing: the member's counts.
                crate::fs::Mounted::Ro(_) => match &member {
                    Some(m) => crate::fs_rw::io_errors_text(w, &m.errors, m, now_secs),
                    None => Ok(()),
                },
            }
        }
        A_BTREE_WRITE_STATS | A_ALLOC_DEBUG | A_OPEN_BUCKETS | A_WRITE_POINTS | A_BTREE_UPDATES | A_DIRTY_BTREE_NODES | A_DEV_ALLOC_DEBUG => {
            let crate::fs::Mounted::Rw(fs) = &info.fs else {
                // A read-only mount has no write side: nothing to show.
                return Ok(());
            };
            let dev = sb.as_ref().map_or(0, |s| s.dev_idx());
            match idx {
                A_BTREE_WRITE_STATS => fs.btree_write_stats_to_text(w),
                A_ALLOC_DEBUG => fs.open.alloc.fs_alloc_debug_to_text(w),
                A_OPEN_BUCKETS => fs.open.alloc.open_buckets_to_text(w, None),
                A_WRITE_POINTS => fs.open.alloc.write_points_to_text(w),
                A_BTREE_UPDATES => match *fs.btree.last_update.lock() {
                    Some(u) => writeln!(w, "{u}"),
                    None => Ok(()),
                },
                A_DIRTY_BTREE_NODES => fs.dirty_btree_nodes_to_text(w),
                _ => fs.open.alloc.dev_alloc_debug_to_text(w, dev),
            }
        }
        i if (A_TIME_STATS..A_TIME_STATS + NR_TS).contains(&i) => match (&info.fs, RECORDED_TIME_STATS.get(i - A_TIME_STATS)) {
            (crate::fs::Mounted::Rw(fs), Some(&id)) => fs.time_stats_to_text(id, w),
            _ => Ok(()),
        },
        i if (NR_FIXED..NR_FIXED + NR_OPTS).contains(&i) => {
            let id = i - NR_FIXED;
            let v = info.sysfs_opts.lock().get(id).unwrap_or_else(|| info.opts.value(id, sb.as_ref()));
            opts::opt_to_text(w, id, v, true)
        }
        _ => Ok(()),
    }
}

/// `dev_io_done_to_text`: bytes read and written per data type (a
/// read-only mount writes nothing).
fn io_done_to_text(info: &FsInfo, w: &mut dyn fmt::Write) -> fmt::Result {
    let io = info.io_done();
    for (rw, name) in ["read", "write"].iter().enumerate() {
        writeln!(w, "{name}:")?;
        let d = io.get(rw).copied().unwrap_or_default();
        for (t, tname) in DATA_TYPE_NAMES.iter().enumerate().skip(1) {
            let sectors = match t {
                1 => d.sb,
                2 => d.journal,
                3 => d.btree,
                4 => d.user,
                _ => 0,
            };
            writeln!(w, "{tname:<12}:{:>12}", sectors << 9)?;
        }
    }
    Ok(())
}

/// `sysfs_ops.store` (C's `STORE(bch2_fs)`, `STORE(bch2_fs_internal)`
/// and `STORE(bch2_fs_opts_dir)`): an option set (at once, and in the
/// superblock), a trigger, or a perf test.  Returns `size` or a negative
/// errno.
///
/// # Safety
///
/// Called by sysfs with one of our kobjects, one of its attributes and
/// `size` bytes at `buf`.
unsafe extern "C" fn fs_store(kobj: *mut bindings::kobject, attr: *mut bindings::attribute, buf: *const c_char, size: usize) -> isize {
    // SAFETY: as `fs_show`; `buf` holds `size` bytes.
    let (k, input) = unsafe { (&*kobj.cast::<FsKobj>(), core::slice::from_raw_parts(buf.cast::<u8>(), size)) };
    // SAFETY: see the invariant of `FsKobj`.
    let info = unsafe { &*k.info };
    let idx = (attr as usize).wrapping_sub(k.attrs.as_ptr() as usize) / core::mem::size_of::<bindings::attribute>();
    let _nofs = crate::fs::NofsScope::new();
    let Ok(text) = core::str::from_utf8(input) else { return Errno::EINVAL.to_kernel() as isize };
    match store(info, idx, text.trim()) {
        Ok(()) => size as isize,
        Err(e) => e.to_kernel() as isize,
    }
}

fn store(info: &FsInfo, idx: usize, text: &str) -> Result<(), Errno> {
    match idx {
        A_PERF_TEST => perf_test(info, text),
        A_TRIGGER_JOURNAL_FLUSH => {
            // bch2_journal_flush_all_pins() and bch2_journal_meta().
            let op = info.op()?;
            op.fs.flush()?;
            op.fs.journal_flush()
        }
        A_TRIGGER_JOURNAL_WRITES => {
            let op = info.op()?;
            op.fs.open.journal.do_writes();
            Ok(())
        }
        A_TRIGGER_BTREE_CACHE_SHRINK => {
            let nr = text.parse::<usize>().map_err(|_| Errno::EINVAL)?;
            info.btree_cache_shrink(nr);
            Ok(())
        }
        i if (A_TIME_STATS..A_TIME_STATS + NR_TS).contains(&i) => {
            // Any write resets the stat (bch2_time_stats_reset()).
            if let (crate::fs::Mounted::Rw(fs), Some(&id)) = (&info.fs, RECORDED_TIME_STATS.get(i - A_TIME_STATS)) {
                if let Some(t) = fs.time_stats(id) {
                    t.reset();
                }
            }
            Ok(())
        }
        i if (NR_FIXED..NR_FIXED + NR_OPTS).contains(&i) => {
            let id = i - NR_FIXED;
            let o = OPTS.get(id).ok_or(Errno::EINVAL)?;
            let (_, v) = opts::opt_parse_named(o.name, text).map_err(|e| e.errno())?;
            let op = info.op()?;
            op.fs.opt_set(o.name, v, true)?;
            info.sysfs_opts.lock().set(id, v);
            Ok(())
        }
        _ => Err(Errno::EINVAL),
    }
}

/// Writing `"<test> <nr> <threads>"` to `perf_test`
/// (`bch2_btree_perf_test()`): runs C's btree test of that name on our
/// btree, `nr` operations over `threads` kernel threads, and logs the
/// result line as C does.  Returns when all threads are done.
fn perf_test(info: &FsInfo, text: &str) -> Result<(), Errno> {
    use crate::perf_test::{perf_test_run, PerfTest, PerfTestResult};
    let mut it = text.split_whitespace();
    let (Some(name), Some(nr), Some(threads)) = (it.next(), it.next(), it.next()) else { return Err(Errno::EINVAL) };
    let nr = opts::strtou64_h(nr).ok_or(Errno::EINVAL)?;
    let threads = threads.parse::<u32>().map_err(|_| Errno::EINVAL)?;
    if nr == 0 || threads == 0 {
        crate::bch_err!("nr of iterations or threads is not allowed to be 0");
        return Err(Errno::EINVAL);
    }
    let Some(test) = PerfTest::from_name(name) else {
        crate::bch_err!("unknown test {name}");
        return Err(Errno::EINVAL);
    };
    let crate::fs::Mounted::Rw(fs) = &info.fs else { return Err(Errno::EROFS) };
    if info.shut.load(Ordering::Acquire) {
        return Err(Errno::EROFS);
    }
    let fs: &crate::fs::RwFs = fs;
    let per = nr / u64::from(threads);
    // SAFETY: returns random bits.
    let seed = unsafe { bindings::get_random_u64() };
    let start = crate::sync::now_ns();
    let r = if threads == 1 {
        perf_test_run(fs, test, per, seed)
    } else {
        // The threads borrow `fs`: they are all joined (dropped) before
        // this returns, and sysfs keeps `info` alive while a store runs.
        let err = core::sync::atomic::AtomicI32::new(0);
        let shared = SendPtr((fs as *const crate::fs::RwFs, &err as *const core::sync::atomic::AtomicI32));
        let mut ts = crate::platform::Vec::new();
        for i in 0..threads {
            let p = shared;
            let t = crate::kthread::KThread::spawn(c"bcachefs perf test", move || {
                let p = p;
                // SAFETY: both outlive the thread (joined below).
                let (fs, err) = unsafe { (&*p.0 .0, &*p.0 .1) };
                if let Err(e) = perf_test_run(fs, test, per, seed ^ (u64::from(i) << 40)) {
                    err.store(e.0, Ordering::Relaxed);
                }
            });
            match t {
                Ok(t) => ts.push(t).map_err(|_| Errno::ENOMEM)?,
                Err(e) => {
                    err.store(e.0, Ordering::Relaxed);
                    break;
                }
            }
        }
        // Joined: each drop stops and waits.
        drop(ts);
        match err.load(Ordering::Relaxed) {
            0 => Ok(()),
            e => Err(Errno(e)),
        }
    };
    let ns = crate::sync::now_ns().saturating_sub(start);
    if let Err(e) = r {
        crate::bch_err!("{name}: error {e}");
        return Err(e);
    }
    crate::bch_info!("{}", PerfTestResult { test, nr, threads, ns });
    Ok(())
}

/// Pointers the perf test threads borrow.
#[derive(Clone, Copy)]
struct SendPtr((*const crate::fs::RwFs, *const core::sync::atomic::AtomicI32));
// SAFETY: what they point to is `Sync` and outlives every thread that
// gets a copy (the caller joins them all).
unsafe impl Send for SendPtr {}
