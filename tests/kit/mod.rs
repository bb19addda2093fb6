//! What the app's kittest files share: the app on the CPU backend and the particle sandbox in
//! a 1400x900 harness, and running frames until a condition holds.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;

use msbreg::app::{AppOptions, MsbregApp, WorkloadSettings};
use msbreg::backend::Backend;
use msbreg::data::sandbox::SandboxKind;
use msbreg::trainer::RunsDir;

/// How long a condition may take (the trainer and the file polls are asynchronous).
pub const WAIT: Duration = Duration::from_mins(1);

pub fn cpu() -> Backend {
    Backend::flex("tests")
}

/// The app on the Gaussian sandbox: runs kept in `runs` (in memory when `None`), the folder
/// `open` opened, training from the start when `running`.
pub fn sandbox_options(runs: Option<RunsDir>, open: Option<&Path>, running: bool) -> AppOptions {
    AppOptions {
        backend: cpu(),
        settings: WorkloadSettings::sandbox(SandboxKind::Gaussians),
        running,
        frame_stats: None,
        runs,
        open: open.map(Path::to_owned),
        compare: Vec::new(),
        lesson: None,
    }
}

/// The app made from `options`, without the wgpu renderer, in a 1400x900 harness.
pub fn harness(options: AppOptions) -> Harness<'static, MsbregApp> {
    let ctx = egui::Context::default();
    let app = MsbregApp::new(&ctx, None, options);
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut MsbregApp| app.ui(ui), app)
}

/// Runs frames until `done` holds; panics naming `what` after [`WAIT`].
pub fn run_until(
    harness: &mut Harness<'static, MsbregApp>,
    what: &str,
    done: impl Fn(&mut MsbregApp) -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        harness.run_steps(1);
        harness.state_mut().poll();
        if done(harness.state_mut()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}
