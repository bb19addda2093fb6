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

pub mod app;
pub mod backend;
pub mod bench;
pub mod config;
pub mod data;
pub mod diagnostics;
pub mod headless;
pub mod method;
pub mod model;
pub mod projection;
pub mod render;
pub mod seed;
pub mod session;
pub mod trainer;
