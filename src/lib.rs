//! msbreg: watch and steer the embedding dynamics of self-supervised learning.
//!
//! The library holds everything the `msbreg` binary (and, later, the app) drives. Data flows
//! one way (see `ARCHITECTURE.md`):
//!
//! `config` (what to run) -> `data` (inputs and views) -> `model` (embedders) ->
//! `method` (the three forces, EMA target, one training step) -> `diagnostics` (collapse
//! measures) -> `run` (the loop, metrics and outputs), with `backend` choosing the device once
//! at start-up.

pub mod app;
pub mod backend;
pub mod bench;
pub mod config;
pub mod data;
pub mod diagnostics;
pub mod method;
pub mod model;
pub mod projection;
pub mod render;
pub mod run;
