//! The headless commands as a user runs them: `eval` and `export` never change the run they
//! read, a config that cannot be written is an error (not an empty file), and the
//! linear probe reports what it cannot do instead of an accuracy of 0.

mod common;

use common::{contents, msbreg, run_ok};

use std::path::PathBuf;

use msbreg::config::TrainConfig;
use msbreg::headless::{HeadlessError, linear_probe};
use msbreg::session::RunWriter;

#[test]
fn eval_and_export_leave_the_run_folder_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    run_ok(
        msbreg()
            .args([
                "train",
                "--data",
                "digits",
                "--epochs",
                "1",
                "--max-steps",
                "6",
                "--batch-size",
                "128",
                "--views",
                "2",
                "--set",
                "checkpoint.every_steps=5",
                "--set",
                "log_every=1",
                "--stop-after",
                "5",
                "--out",
            ])
            .arg(&run),
    );
    // A line logged after the last checkpoint, as a run killed between two checkpoints
    // leaves: a reader must not drop it.
    let metrics = run.join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).expect("metrics");
    text.push_str(
        &text
            .lines()
            .last()
            .expect("a line")
            .replace("\"step\":5", "\"step\":6"),
    );
    text.push('\n');
    std::fs::write(&metrics, text).expect("writes");
    let before = contents(&run);

    let out = run_ok(
        msbreg()
            .args(["eval", "--probe-epochs", "2", "--max-train", "500", "--run"])
            .arg(&run),
    );
    assert!(out.contains("linear probe"), "{out}");
    let exported = dir.path().join("exported");
    run_ok(
        msbreg()
            .args(["export", "--limit", "20", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(&exported),
    );
    assert_eq!(
        std::fs::read_to_string(exported.join("vectors.tsv"))
            .expect("vectors")
            .lines()
            .count(),
        20
    );
    let after = contents(&run);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "no file appeared or vanished"
    );
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{} changed", path.display());
    }
}

#[test]
fn a_config_that_cannot_be_written_is_an_error_not_an_empty_file() {
    use std::os::unix::ffi::OsStringExt as _;
    // A data path that is not UTF-8 cannot be written as TOML.
    let mut config = TrainConfig::default();
    config.data.path = Some(PathBuf::from(std::ffi::OsString::from_vec(vec![
        b'/', 0xff, 0xfe, b'x',
    ])));
    let err = config.to_toml().expect_err("not UTF-8");
    assert!(err.to_string().contains("TOML"), "{err}");
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = RunWriter::create(&dir.path().join("run"), false).expect("folder");
    folder
        .write_config(&config)
        .expect_err("refused, not written empty");
    assert!(
        !folder.path().join("config.toml").exists(),
        "no empty config.toml left behind"
    );
}

#[test]
fn the_linear_probe_reports_what_it_cannot_do() {
    let err = linear_probe(&[], &[], &[], &[], 4, 2, 1, 0).expect_err("no data");
    assert!(matches!(err, HeadlessError::Evaluate { .. }), "{err}");
    let train = [0.0, 1.0, 1.0, 0.0];
    let err = linear_probe(&train, &[0, 1], &[0.5], &[0], 2, 2, 1, 0).expect_err("misshapen");
    assert!(err.to_string().contains("disagree"), "{err}");
    // And on separable data it learns.
    let train: Vec<f32> = (0..64)
        .flat_map(|i| if i % 2 == 0 { [1.0, 0.1] } else { [-1.0, -0.1] })
        .collect();
    let labels: Vec<u32> = (0..64).map(|i| i % 2).collect();
    let accuracy = linear_probe(&train, &labels, &train, &labels, 2, 2, 300, 0).expect("separable");
    assert!(accuracy > 0.95, "{accuracy}");
}

#[test]
fn eval_of_a_run_without_checkpoints_says_what_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("folder");
    std::fs::write(run.join("config.toml"), "").expect("an empty config is all defaults");
    let out = msbreg()
        .args(["eval", "--run"])
        .arg(&run)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no checkpoint") && stderr.contains(&run.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("Kept in"), "{stderr}");
}

#[test]
fn a_diverged_run_keeps_its_record_up_to_the_last_good_step_and_says_what_was_kept() {
    use burn::tensor::Device;
    use msbreg::config::Preset;
    use msbreg::headless::simulate;
    use msbreg::session::read_metrics;

    let mut config = Preset::Msbreg.config();
    config.batch_size = 64;
    config.data.train_size = 256;
    config.data.eval_size = 64;
    config.steps = 200;
    config.log_every = 50;
    // Plain SGD at an absurd rate: non-finite within a few steps, long before step 50.
    config.optimizer.kind = msbreg::method::OptimizerKind::Sgd;
    config.optimizer.momentum = 0.0;
    config.learning_rate = 1e30;
    let dir = tempfile::tempdir().expect("temp dir");
    let err = simulate(&config, &Device::flex(), dir.path(), |_| {}).expect_err("diverges");
    let HeadlessError::Stopped { step, ref kept, .. } = err else {
        panic!("expected a stop, got {err}");
    };
    assert!(step < 50, "diverged at step {step}");
    let records = read_metrics(&dir.path().join("metrics.jsonl")).expect("metrics");
    let steps: Vec<u64> = records.iter().map(|r| r.step).collect();
    if step > 1 {
        assert_eq!(steps, vec![0, step - 1], "step 0 and the last good step");
        assert!(records[1].loss.is_some_and(f32::is_finite));
    } else {
        assert_eq!(steps, vec![0]);
    }
    assert!(kept.contains("no checkpoint yet"), "{kept}");
    assert!(!kept.contains("written so far"), "{kept}");
}

#[test]
fn a_data_set_without_a_test_split_holds_one_out_and_says_so_once() {
    use msbreg::data::idx::encode_idx;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("mnist-no-test");
    std::fs::create_dir(&data).expect("folder");
    let count = 60usize;
    let pixels: Vec<u8> = (0..count * 64).map(|i| ((i * 37) % 251) as u8).collect();
    let labels: Vec<u8> = (0..count).map(|i| (i % 3) as u8).collect();
    std::fs::write(
        data.join("train-images-idx3-ubyte"),
        encode_idx(&[count as u32, 8, 8], &pixels),
    )
    .expect("writes");
    std::fs::write(
        data.join("train-labels-idx1-ubyte"),
        encode_idx(&[count as u32], &labels),
    )
    .expect("writes");
    let run = dir.path().join("run");
    let out = msbreg()
        .args(["train", "--data"])
        .arg(format!("mnist:{}", data.display()))
        .args([
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--views",
            "2",
            "--out",
        ])
        .arg(&run)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("held out").count(), 1, "said once: {stderr}");
    assert!(stderr.contains("6 of its 60"), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("last evaluation"))
        .unwrap_or_else(|| panic!("an evaluation line: {stdout}"));
    assert!(!line.contains("NaN"), "{line}");
    let out = run_ok(
        msbreg()
            .args(["eval", "--probe-epochs", "2", "--run"])
            .arg(&run),
    );
    assert!(out.contains("test 6 images"), "{out}");
}

/// `msbreg bench teach` on the app's default ends with the JSON line other tools read, and
/// says what it measured (no time is asserted: it is a benchmark).
#[test]
fn bench_teach_ends_with_its_json_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_msbreg"))
        .args(["--backend", "cpu", "bench", "teach", "--max-seconds", "20"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("learning (msbreg preset)"), "{stdout}");
    assert!(stdout.contains("collapse (collapse preset)"), "{stdout}");
    let last = stdout.lines().last().expect("a last line");
    let json: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    for key in [
        "learn_secs",
        "collapse_secs",
        "learn_steps",
        "collapse_steps",
        "knn_start",
        "knn_end",
    ] {
        assert!(json.get(key).is_some(), "{key} missing: {last}");
    }
    let knn_start = json["knn_start"].as_f64().expect("a number");
    assert!((0.0..=1.0).contains(&knn_start), "{knn_start}");
    // Where a target was reached, its steps and seconds come together.
    for target in ["learn", "collapse"] {
        let (secs, steps) = (
            &json[format!("{target}_secs")],
            &json[format!("{target}_steps")],
        );
        assert_eq!(secs.is_null(), steps.is_null(), "{last}");
    }
}

/// `msbreg bench train --against OTHER` runs both builds alternately (here the same binary
/// twice), prints one line per run and a table, and ends with a JSON line holding every run's
/// figure and the median ratio; a missing binary is named in the error.
#[test]
fn bench_train_against_another_build_alternates_and_reports_the_ratio() {
    let exe = env!("CARGO_BIN_EXE_msbreg");
    let stdout = run_ok(
        msbreg()
            .args(["bench", "train", "--model", "mlp"])
            .args([
                "--batch",
                "16",
                "--steps",
                "1",
                "--threads",
                "1",
                "--runs",
                "2",
            ])
            .args(["--against", exe]),
    );
    assert!(
        stdout.contains("threads 1, run 2/2: this build"),
        "{stdout}"
    );
    let last = stdout.lines().last().expect("a last line");
    let json: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(json["bench"], "train-against");
    let result = &json["results"][0];
    assert_eq!(result["threads"], 1);
    for side in ["this", "other"] {
        let runs = result[side].as_array().expect("a list of runs");
        assert_eq!(runs.len(), 2, "{last}");
        assert!(
            runs.iter().all(|v| v.as_f64().is_some_and(|v| v > 0.0)),
            "{last}"
        );
    }
    let ratio = result["median_ratio"].as_f64().expect("a ratio");
    assert!(ratio.is_finite() && ratio > 0.0, "{ratio}");

    let missing = msbreg()
        .args(["bench", "train", "--against", "/no/such/msbreg"])
        .output()
        .expect("runs");
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("--against /no/such/msbreg: no such file"),
        "{stderr}"
    );
}
