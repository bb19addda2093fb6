//! `msbreg ablate` through the binary, on a tiny sandbox grid: the tables and the plot are
//! written and hold every point, an interrupted ablation resumes without redoing what it
//! finished, and a bad grid key is named before anything runs.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn msbreg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msbreg"))
        .args(["--backend", "cpu", "ablate", "--sandbox"])
        .args(args)
        .output()
        .expect("runs")
}

/// Two points (the singular value force on, off) x 2 seeds of 60 steps, evaluated cheaply.
fn tiny(out: &Path) -> Vec<String> {
    [
        "--set",
        "steps=60",
        "--set",
        "data.train_size=512",
        "--grid",
        "dynamics.singular_value.on=true,false",
        "--seeds",
        "2",
        "--max-train",
        "500",
        "--probe-epochs",
        "3",
        "--out",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(std::iter::once(out.display().to_string()))
    .collect()
}

fn results(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_tiny_grid_writes_its_tables_and_curves_and_resumes_after_an_interruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("abl");
    let args = tiny(&out);
    // Interrupted: killed once two runs have finished.
    let mut child = Command::new(env!("CARGO_BIN_EXE_msbreg"))
        .args(["--backend", "cpu", "ablate", "--sandbox"])
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let deadline = Instant::now() + Duration::from_mins(3);
    while results(&out).len() < 2 {
        assert!(Instant::now() < deadline, "no two runs finished");
        assert!(
            child.try_wait().expect("polls").is_none(),
            "ended before it was interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kills");
    let _ = child.wait();
    let before = results(&out);
    let first = before[0]["dir"].as_str().expect("a dir").to_owned();
    let metrics = out.join(&first).join("metrics.jsonl");
    let first_metrics = std::fs::read(&metrics).expect("its metrics");

    // Resumed: the finished runs are skipped, the rest are done.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = msbreg(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("resuming: "), "{stderr}");
    let all = results(&out);
    assert_eq!(
        all.len(),
        6,
        "3 points (random-init first) x 2 seeds, once each"
    );
    let mut dirs: Vec<&str> = all.iter().filter_map(|r| r["dir"].as_str()).collect();
    dirs.sort_unstable();
    dirs.dedup();
    assert_eq!(dirs.len(), 6, "no run twice");
    assert_eq!(
        std::fs::read(&metrics).expect("its metrics"),
        first_metrics,
        "a finished run is not trained again"
    );

    // The tables: a row per point, numbers where the runs are.
    let table = std::fs::read_to_string(out.join("table.md")).expect("table.md");
    for point in [
        "random-init",
        "p01-dynamics.singular_value.on=true",
        "p02-dynamics.singular_value.on=false",
    ] {
        assert!(table.contains(&format!("| {point} |")), "{table}");
    }
    assert!(
        stdout.contains("| random-init |"),
        "the table is printed too"
    );
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
    let bars = |line: &str| line.matches('|').count();
    assert_eq!(
        rows.len(),
        2 + 3,
        "header, separator, a row per point: {table}"
    );
    assert!(
        rows.iter().all(|row| bars(row) == bars(rows[0])),
        "every row as wide as the header: {table}"
    );
    let csv = std::fs::read_to_string(out.join("table.csv")).expect("table.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("point,dynamics.singular_value.on,seeds,knn_mean,knn_std"));
    for line in &lines[1..] {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[2], "2", "two seeds: {line}");
        let knn: f64 = cells[3].parse().expect("kNN mean");
        let probe: f64 = cells[5].parse().expect("probe mean");
        assert!(
            (0.0..=1.0).contains(&knn) && (0.0..=1.0).contains(&probe),
            "{line}"
        );
    }
    let knn_of = |line: &str| -> f64 { line.split(',').nth(3).expect("kNN").parse().expect("kNN") };
    let (random, trained) = (knn_of(lines[1]), knn_of(lines[2]));
    assert!(
        lines[1].starts_with("random-init") && trained > random,
        "60 sandbox steps beat the random encoder on kNN: {csv}"
    );
    let curves = image::open(out.join("curves.png")).expect("curves.png decodes");
    assert!(curves.width() >= 800 && curves.height() >= 400);

    // Each run is an ordinary run folder the app can open.
    assert!(out.join(&first).join("config.toml").exists());
}

#[test]
fn a_bad_grid_key_is_named_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("abl");
    let out_text = out.display().to_string();
    let output = msbreg(&[
        "--grid",
        "dynamics.brownain.weight=0,1",
        "--seeds",
        "1",
        "--out",
        &out_text,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--grid dynamics.brownain.weight=0,1") && stderr.contains("brownain"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing was created");
    let output = msbreg(&["--grid", "views.count", "--out", &out_text]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("KEY=V1,V2"), "{stderr}");
}
