// SPDX-License-Identifier: GPL-2.0
//! The in-kernel six lock stress test: the workload of `stress.rs` on
//! kernel threads, under lockdep when the kernel has it.
//!
//! Triggered by writing a number of seconds (1 to 600; empty means 10) to
//! `/sys/module/bcachefs_rs/six_lock_test`.  The write returns when the
//! run is over: the byte count if every check passed, `-EIO` if one
//! failed, `-EINVAL` for a bad number.  The result is printed to the
//! kernel log as KTAP, each line prefixed with `six_lock_test: `.
//! `tests/selftests/1x-six-lock-stress.sh` drives it.

use kernel::ffi::{c_char, c_int, c_uint, c_void};
use core::ptr;

use kernel::alloc::{flags::GFP_KERNEL, KBox};
use kernel::prelude::*;

use super::stress::{Stats, Stress, NR_LOCKS};
use crate::bindings;

/// Worker threads.
const THREADS: usize = 4;
const DEFAULT_SECS: u32 = 10;
const MAX_SECS: u32 = 600;

/// The sysfs attribute: a `module_attribute` in a static.
struct Attr(bindings::module_attribute);

// SAFETY: sysfs only reads the attribute; we never write it.
unsafe impl Sync for Attr {}

static ATTR: Attr = Attr({
    // SAFETY: all zeroes is a valid `module_attribute`: null pointers,
    // no callbacks, lockdep fields as in a C static.
    let mut a: bindings::module_attribute = unsafe { core::mem::zeroed() };
    a.attr.name = c"six_lock_test".as_ptr().cast();
    a.attr.mode = 0o200;
    a.store = Some(store);
    a
});

/// `/sys/module/bcachefs_rs/six_lock_test`; removed on drop.
///
/// # Invariants
///
/// `kobj` is the module's kobject, on which [`ATTR`] was created; the
/// module (and so the kobject) outlives this value, which is part of it.
pub(crate) struct Trigger {
    kobj: *mut bindings::kobject,
}

// SAFETY: only used to remove the file, once, from `Drop`.
unsafe impl Send for Trigger {}
// SAFETY: no `&self` methods.
unsafe impl Sync for Trigger {}

impl Trigger {
    /// Creates the file on `module`'s kobject.
    pub(crate) fn register(module: &'static ThisModule) -> Result<Self> {
        let m = module.as_ptr();
        // SAFETY: `m` is this module, alive while its code runs; its
        // kobject (`/sys/module/bcachefs_rs`) exists by the time `init`
        // runs.
        let kobj = unsafe { ptr::addr_of_mut!((*m).mkobj.kobj) };
        // SAFETY: `kobj` is valid (above); `ATTR` is static.
        let r = unsafe { bindings::sysfs_create_file_ns(kobj, &ATTR.0.attr, ptr::null()) };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        // INVARIANT: created on the module's kobject just above.
        Ok(Trigger { kobj })
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        // SAFETY: created in `register` on this kobject (type invariant).
        // Removal waits for a running `store` to return.
        unsafe { bindings::sysfs_remove_file_ns(self.kobj, &ATTR.0.attr, ptr::null()) };
    }
}

fn parse_secs(buf: &[u8]) -> Option<u32> {
    let s = core::str::from_utf8(buf).ok()?.trim();
    if s.is_empty() {
        return Some(DEFAULT_SECS);
    }
    let n: u32 = s.parse().ok()?;
    (1..=MAX_SECS).contains(&n).then_some(n)
}

/// sysfs `store` of [`ATTR`].
///
/// # Safety
///
/// Called by sysfs with `buf` valid for `count` bytes.
unsafe extern "C" fn store(
    _attr: *mut bindings::module_attribute,
    _mk: *mut bindings::module_kobject,
    buf: *const c_char,
    count: usize,
) -> isize {
    // SAFETY: `buf` is valid for `count` bytes (function safety contract).
    let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
    let Some(secs) = parse_secs(input) else {
        return EINVAL.to_errno() as isize;
    };
    match run(secs) {
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// What one kernel thread works with.
struct Worker {
    stress: *const Stress,
    idx: usize,
    seed: u64,
    stats: Stats,
}

/// Thread function of a worker.
///
/// # Safety
///
/// `data` points to a [`Worker`] that outlives the thread (the caller
/// stops the thread before freeing it) and that nothing else touches until
/// then.
unsafe extern "C" fn worker_fn(data: *mut c_void) -> c_int {
    // SAFETY: function safety contract.
    let w = unsafe { &mut *data.cast::<Worker>() };
    // SAFETY: `stress` outlives the thread, like `w`.
    let s = unsafe { &*w.stress };
    // SAFETY: called from a kthread.
    w.stats = s.worker(w.idx, w.seed, &|| unsafe { bindings::kthread_should_stop() });
    0
}

/// Stops and releases the threads in `tasks`.
fn stop_all(tasks: &[*mut bindings::task_struct]) {
    for &t in tasks {
        // SAFETY: each task was created by `kthread_create_on_node()` and
        // has the extra reference taken in `run`, which
        // `kthread_stop_put()` drops; stopping a thread that already
        // returned is fine while we hold it.
        unsafe { bindings::kthread_stop_put(t) };
    }
}

fn run(secs: u32) -> Result {
    let stress = KBox::new(Stress::new(), GFP_KERNEL)?;
    // SAFETY: no preconditions.
    let seed = unsafe { bindings::get_random_u64() };
    let mut workers = KBox::new(
        core::array::from_fn::<_, THREADS, _>(|idx| Worker {
            stress: &*stress,
            idx,
            seed: seed.rotate_left(idx as u32 * 13) ^ idx as u64,
            stats: Stats::default(),
        }),
        GFP_KERNEL,
    )?;
    let wp = workers.as_mut_ptr();

    let mut tasks = [ptr::null_mut::<bindings::task_struct>(); THREADS];
    for i in 0..THREADS {
        // SAFETY: `wp.add(i)` is a `Worker` that outlives the thread: we
        // stop every thread before `workers` is dropped.  The format is a
        // static C string taking one unsigned int.
        let t = unsafe {
            bindings::kthread_create_on_node(
                Some(worker_fn),
                wp.add(i).cast(),
                bindings::NUMA_NO_NODE,
                c"six_stress/%u".as_ptr().cast(),
                i as c_uint,
            )
        };
        // SAFETY: `t` is a pointer or an error pointer.
        if unsafe { bindings::IS_ERR(t.cast()) } {
            stress.stop();
            stop_all(&tasks[..i]);
            // SAFETY: `t` is an error pointer.
            let e = unsafe { bindings::PTR_ERR(t.cast()) };
            return Err(Error::from_errno(e as c_int));
        }
        // SAFETY: `t` is a new, not yet running kthread: keep a reference
        // so it can be stopped even after it returned, then start it.
        unsafe {
            bindings::get_task_struct(t);
            bindings::wake_up_process(t);
        }
        tasks[i] = t;
    }

    let mut waited = 0;
    while waited < secs * 10 && !stress.stopped() {
        // SAFETY: process context.
        unsafe { bindings::msleep(100) };
        waited += 1;
    }
    stress.stop();
    stop_all(&tasks);

    // The threads are gone: their `Worker`s are ours again.
    let mut total = Stats::default();
    for w in workers.iter() {
        total.add(&w.stats);
    }
    report(&stress, &total, secs)
}

macro_rules! ktap {
    ($($arg:tt)*) => { pr_info!("six_lock_test: {}\n", format_args!($($arg)*)) };
}

fn report(stress: &Stress, total: &Stats, secs: u32) -> Result {
    let fail = stress.check_final().err();
    let everything = [
        total.read,
        total.intent,
        total.write,
        total.try_fail,
        total.relock_ok,
        total.relock_fail,
        total.upgrade_ok,
        total.upgrade_fail,
        total.aborts,
        total.gc_reads,
        total.gc_writes,
    ]
    .iter()
    .all(|&n| n > 0);

    let results = ["exclusion_and_sequence_numbers", "gc_pos_seqcount", "final_state"]
        .map(|group| (group, fail.filter(|(f, _)| f.ktap_group() == group)));

    ktap!("KTAP version 1");
    ktap!("1..{}", results.len() + 1);
    ktap!("# {} threads, {} s, {} locks: {}", THREADS, secs, NR_LOCKS, total);
    let mut ok = true;
    for (n, (name, f)) in results.iter().enumerate() {
        match f {
            None => ktap!("ok {} {}", n + 1, name),
            Some((f, lock)) => {
                ok = false;
                ktap!("# lock {}: {}", lock, f.describe());
                ktap!("not ok {} {}", n + 1, name);
            }
        }
    }
    if everything {
        ktap!("ok {} every_operation_exercised", results.len() + 1);
    } else {
        ok = false;
        ktap!("not ok {} every_operation_exercised", results.len() + 1);
    }
    ktap!("# {}", if ok { "pass" } else { "fail" });
    if ok {
        Ok(())
    } else {
        Err(EIO)
    }
}
