// SPDX-License-Identifier: GPL-2.0
//! Kernel declarations: all of `kernel::bindings`, plus what the module's
//! own bindgen pass over `include/bcachefs_rs.h` generates (see `Kbuild` and
//! `include/bindgen_parameters`).  A generated item with the same name as
//! one of `kernel::bindings` (for example `fs_context`, opaque there)
//! shadows it here.
#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    missing_docs,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    unused_imports,
    improper_ctypes,
    unknown_lints,
    unnecessary_transmutes,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]

pub use kernel::bindings::*;

include!("../bindings/generated.rs");
