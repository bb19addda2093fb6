//! The real window: `msbreg` (the default app) under Xvfb on Debian's software Vulkan, left
//! to train for a while, then photographed (`import -window root`, ImageMagick) and checked
//! for being alive and not blank. The screenshot is kept in `tmp/screenshots/app.png` of the
//! build folder
//! (or `$MSBREG_SCREENSHOT_DIR`) to be looked at.
//!
//! Needs `xvfb`, `xauth` and `imagemagick` (installed by `.ci/run`). Without Xvfb the test
//! fails and says so, unless `MSBREG_SKIP_WINDOW_TEST=1`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn found(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_window_trains_and_shows_particles_under_xvfb() {
    if !found("Xvfb") || !found("import") {
        assert!(
            std::env::var_os("MSBREG_SKIP_WINDOW_TEST").is_some(),
            "this test needs Xvfb and ImageMagick's import (apt-get install xvfb xauth \
             imagemagick; .ci/run does), or MSBREG_SKIP_WINDOW_TEST=1 to skip it"
        );
        eprintln!("skipped: no Xvfb or import");
        return;
    }
    let display = format!(":{}", 90 + std::process::id() % 9);
    let _xvfb = Killed(
        Command::new("Xvfb")
            .args([
                display.as_str(),
                "-screen",
                "0",
                "1400x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts"),
    );
    std::thread::sleep(Duration::from_secs(2));
    let runtime = tempfile::tempdir().expect("runtime dir");
    let log_path = runtime.path().join("app.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut app = Killed(
        Command::new(env!("CARGO_BIN_EXE_msbreg"))
            .args(["--backend", "cpu"])
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .env("XDG_RUNTIME_DIR", runtime.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("msbreg starts"),
    );
    // Let it open and train for a while.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(25) {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(status) = app.0.try_wait().expect("wait") {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the app exited early ({status}):\n{log}");
        }
    }
    let dir = std::env::var_os("MSBREG_SCREENSHOT_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let shot = dir.join("app.png");
    let status = Command::new("import")
        .args(["-display", &display, "-window", "root"])
        .arg(&shot)
        .status()
        .expect("import runs");
    assert!(status.success(), "import failed");
    assert!(
        app.0.try_wait().expect("wait").is_none(),
        "the app is still running"
    );
    eprintln!("screenshot: {}", shot.display());

    let image = image::open(&shot).expect("screenshot loads").to_rgb8();
    let mut colours = std::collections::HashSet::new();
    for pixel in image.pixels() {
        colours.insert(pixel.0);
    }
    assert!(
        colours.len() > 100,
        "the window looks blank: {} distinct colours in {}",
        colours.len(),
        shot.display()
    );
    // The particle view's class colours (Tableau 10) are on screen: particles were drawn.
    let palette_hits = image
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            // Saturated orange, green or blue of the palette (with antialiasing tolerance).
            (r > 200 && (100..160).contains(&g) && b < 60)
                || (r < 80 && g > 130 && b < 80)
                || (r < 60 && (100..140).contains(&g) && b > 160)
        })
        .count();
    assert!(
        palette_hits > 50,
        "no particles visible ({palette_hits} class-coloured pixels)"
    );
}
