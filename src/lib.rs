//! msbreg: watch and steer the embedding dynamics of self-supervised learning.
//!
//! The library holds everything the `msbreg` binary drives. Data flows one way (see
//! `ARCHITECTURE.md`):
//!
//! `app` --Command--> `trainer` (thread) --> `session::Run::step` --> `method` (forces, EMA,
//! one step) on `model` and `data`; the run's embeddings --> `diagnostics` and `projection`
//! --> Snapshot --> `app` --> `render`. `headless` drives the same `session::Run` without a
//! window; `config` says what to run, `seed` gives every random stream, `backend` chooses the
//! device once at start-up.

/// mimalloc rather than the system allocator. flex, burn's CPU backend, gives every tensor
/// operation a fresh output buffer (the small CNN's im2col columns are 37 MB); glibc serves
/// buffers that large with `mmap` and unmaps them on free, so every step faulted its memory in
/// (and had the kernel zero it) again. mimalloc keeps freed memory for reuse: the
/// `bench train` step went from 259 ms to 138 ms with nothing else changed (2 cores, AVX2
/// kernels). Declared here rather than in `main.rs` so that the tests and benchmarks run on the
/// allocator the binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (`mi_option_purge_delay` in mimalloc.h; libmimalloc-sys
/// 0.1.49 names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps memory that flex freed for its next step: mimalloc hands freed pages back to the
/// kernel after `purge_delay` (10 ms), and a step of the small CNN frees its activations long
/// before the next step asks for them again, so every step faulted tens of megabytes in and
/// had the kernel zero them (`clear_page_erms`). A delay of a minute was tried first: mimalloc
/// 3 still purged 11-26 ranges of 4 MiB per step (`strace -e madvise`), 30% of one thread's
/// time in `clear_page_erms` under `perf`, about 400 page faults per step. Purging off (-1)
/// leaves none (`perf stat -e page-faults`: the same count after 4 steps and after 14) and the
/// step 10-25% faster; the process keeps its peak memory until it exits. Called when flex is
/// chosen (`Backend::flex`); idempotent.
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; any value is
        // valid for this option, and mimalloc reads it on each purge decision.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    });
}

pub mod app;
pub mod backend;
pub mod bench;
pub mod config;
pub mod data;
pub mod diagnostics;
pub mod headless;
pub mod method;
pub mod model;
pub mod profile;
pub mod projection;
pub mod render;
pub mod seed;
pub mod session;
pub mod simd;
pub mod trainer;
