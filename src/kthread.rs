// SPDX-License-Identifier: GPL-2.0
//! Kernel threads owning what they run (`kthread_create_on_node()`,
//! `kthread_stop()`): [`KThread::spawn`] starts a thread running a closure
//! once (the perf test threads of `bch2_btree_perf_test()`).  Dropping a
//! [`KThread`] waits for it (`kthread_stop()`), then frees the closure.

use core::ffi::{c_int, c_void, CStr};
use core::ptr::NonNull;

use kernel::alloc::{flags::GFP_KERNEL, KBox};

use crate::bindings;
use crate::errcode::Errno;

/// A kernel thread owned by this value.
///
/// # Invariants
///
/// `task` is a thread made by `kthread_create_on_node()` with an extra
/// reference of ours (`get_task_struct()`), running a body of this module
/// on `job`; `job` (freed by `free`) lives until the thread has been
/// stopped and has returned (our `Drop`).
pub(crate) struct KThread {
    task: NonNull<bindings::task_struct>,
    job: *mut c_void,
    free: unsafe fn(*mut c_void),
}

// SAFETY: the task pointer is only used to stop the thread (from any
// thread), and the job is only touched by the thread until `Drop`, which
// waits for the thread first; the closures are `Send`.
unsafe impl Send for KThread {}
// SAFETY: `&KThread` offers no access to either pointer.
unsafe impl Sync for KThread {}

/// Frees a job made by [`KThread::start`].
///
/// # Safety
///
/// `p` came from `KBox::<T>::into_raw` and nobody uses it any more.
unsafe fn free_job<T>(p: *mut c_void) {
    // SAFETY: the contract.
    drop(unsafe { KBox::from_raw(p.cast::<T>()) });
}

/// Body of a one-shot thread: runs the closure once.
///
/// # Safety
///
/// `data` is the `Option<F>` job of a [`KThread`], alive until this
/// returns and `kthread_stop()` has seen it return.
unsafe extern "C" fn once_fn<F: FnOnce() + Send>(data: *mut c_void) -> c_int {
    // SAFETY: the contract: the job is ours alone while we run.
    let job = unsafe { &mut *data.cast::<Option<F>>() };
    if let Some(f) = job.take() {
        f();
    }
    0
}

impl KThread {
    /// Starts a thread named `name` running `body` on `job`.
    fn start<T>(name: &CStr, job: T, body: unsafe extern "C" fn(*mut c_void) -> c_int) -> Result<KThread, Errno> {
        let job = KBox::into_raw(KBox::new(job, GFP_KERNEL).map_err(|_| Errno::ENOMEM)?).cast::<c_void>();
        // SAFETY: `job` lives until `Drop` (or is freed below on failure);
        // the format "%s" takes the one string argument, valid for the
        // call (the name is copied).
        let t = unsafe {
            bindings::kthread_create_on_node(Some(body), job, bindings::NUMA_NO_NODE, c"%s".as_ptr().cast(), name.as_ptr())
        };
        // SAFETY: `t` is a task pointer or an error pointer.
        if unsafe { bindings::IS_ERR(t.cast()) } {
            // SAFETY: the thread was not made: the job is still ours.
            unsafe { free_job::<T>(job) };
            // SAFETY: `t` is an error pointer.
            let e = unsafe { bindings::PTR_ERR(t.cast()) };
            return Err(Errno(-(e as i32)));
        }
        let Some(task) = NonNull::new(t) else {
            // SAFETY: as above.
            unsafe { free_job::<T>(job) };
            return Err(Errno::ENOMEM);
        };
        // SAFETY: a new thread not yet running: keep a reference so it can
        // be stopped whenever it returns, then start it.
        unsafe {
            bindings::get_task_struct(t);
            bindings::wake_up_process(t);
        }
        Ok(KThread { task, job, free: free_job::<T> })
    }

    /// Starts thread `name` running `f` once.  Drop waits for it.
    ///
    /// Errors: `ENOMEM`, or what `kthread_create_on_node()` returns.
    pub(crate) fn spawn<F: FnOnce() + Send + 'static>(name: &CStr, f: F) -> Result<KThread, Errno> {
        Self::start(name, Some(f), once_fn::<F>)
    }
}

impl Drop for KThread {
    fn drop(&mut self) {
        // SAFETY: the invariant: our reference keeps the task; stopping
        // waits for the body to return (a one-shot thread that returned
        // already is fine), and `kthread_stop_put()` drops our reference.
        // After it the job is ours again.
        unsafe {
            bindings::kthread_stop_put(self.task.as_ptr());
            (self.free)(self.job);
        }
    }
}
