//! One writer per run folder: two `train`s on one `--out` (one is refused, naming the other),
//! `train --resume` while the folder is being trained, a stale lock left by a dead process
//! (taken over, in one line), and readers (`eval`, `export`) that neither take the lock nor
//! write while a writer holds it.

mod common;

use common::{contents, msbreg, run as run_ok};

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use msbreg::session::{LOCK_FILE, LockHolder, RunFolder, RunWriter, SessionError, read_metrics};

/// `msbreg train` of `epochs` short epochs of the digits into `out`, with `extra` flags.
fn train(out: &Path, epochs: u32, extra: &[&str]) -> Command {
    let mut command = msbreg();
    command
        .args([
            "train",
            "--data",
            "digits",
            "--batch-size",
            "64",
            "--views",
            "2",
        ])
        .args(["--epochs", &epochs.to_string()])
        .args(extra)
        .arg("--out")
        .arg(out);
    command
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The steps of `metrics.jsonl`, which must rise strictly (one run's lines, in order).
fn assert_steps_rise(run: &Path) -> Vec<u64> {
    let steps: Vec<u64> = read_metrics(&run.join("metrics.jsonl"))
        .expect("metrics")
        .iter()
        .map(|record| record.step)
        .collect();
    assert!(!steps.is_empty());
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "interleaved or repeated steps: {steps:?}"
    );
    steps
}

#[test]
fn two_trains_on_one_folder_one_is_refused_and_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    let spawn = || {
        train(&run, 1, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts")
    };
    let first = spawn();
    let second = spawn();
    let pids = [first.id(), second.id()];
    let outputs = [
        first.wait_with_output().expect("ends"),
        second.wait_with_output().expect("ends"),
    ];
    let won: Vec<usize> = (0..2).filter(|&i| outputs[i].status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one writer: {}\n---\n{}",
        stderr(&outputs[0]),
        stderr(&outputs[1])
    );
    let (winner, loser) = (won[0], 1 - won[0]);
    let refused = stderr(&outputs[loser]);
    assert!(
        refused.contains(&run.display().to_string())
            && refused.contains(&format!("being written by process {}", pids[winner])),
        "{refused}"
    );
    assert_steps_rise(&run);
    assert!(!run.join(LOCK_FILE).exists(), "the winner released it");
}

#[test]
fn resume_is_refused_while_another_process_trains_the_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    // Long enough to be caught running (about 4,000 steps), checkpointing often.
    let mut trainer = train(
        &run,
        200,
        &["--set", "checkpoint.every_steps=2", "--set", "log_every=1"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("starts");
    let started = Instant::now();
    while RunFolder::open(&run)
        .and_then(|folder| folder.newest_checkpoint())
        .is_err()
        || !run.join("metrics.jsonl").exists()
    {
        assert!(
            started.elapsed() < Duration::from_mins(2),
            "no checkpoint yet"
        );
        assert!(trainer.try_wait().expect("polls").is_none(), "still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Bounded, should it be accepted.
    let (step, _) = RunFolder::open(&run)
        .and_then(|folder| folder.newest_checkpoint())
        .expect("a checkpoint");
    let resume = msbreg()
        .args(["train", "--resume"])
        .arg(&run)
        .args(["--stop-after", &(step + 2).to_string()])
        .output()
        .expect("runs");
    let still_running = trainer.try_wait().expect("polls").is_none();
    trainer.kill().expect("stops the trainer");
    trainer.wait().expect("reaped");
    assert!(still_running, "the trainer ran throughout");
    assert!(!resume.status.success(), "refused");
    let refused = stderr(&resume);
    assert!(
        refused.contains(&run.display().to_string())
            && refused.contains(&format!("being written by process {}", trainer.id())),
        "{refused}"
    );
    assert_steps_rise(&run);

    // The killed trainer left its lock file, not its lock: a resume takes it over.
    let (step, _) = RunFolder::open(&run)
        .expect("a run")
        .newest_checkpoint()
        .expect("a checkpoint");
    let resumed = run_ok(
        msbreg()
            .args(["train", "--resume"])
            .arg(&run)
            .args(["--stop-after", &(step + 2).to_string()]),
    );
    let said = stderr(&resumed);
    assert!(
        said.contains(&format!(
            "taking over the run folder {} from process {}",
            run.display(),
            trainer.id()
        )) && said.contains("which is no longer running"),
        "{said}"
    );
    let steps = assert_steps_rise(&run);
    assert_eq!(steps.last(), Some(&(step + 2)));
}

#[test]
fn a_stale_lock_of_a_dead_process_is_taken_over_in_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("folder");
    // Above Linux's largest pid (2^22): no such process can exist.
    let mut dead = LockHolder::this_process();
    dead.pid = 4_194_305;
    std::fs::write(
        run.join(LOCK_FILE),
        toml::to_string(&dead).expect("serialises"),
    )
    .expect("writes");
    let out = run_ok(&mut train(&run, 1, &[]));
    let said = stderr(&out);
    let lines: Vec<&str> = said
        .lines()
        .filter(|line| line.contains("taking over"))
        .collect();
    assert_eq!(lines.len(), 1, "{said}");
    assert!(
        lines[0].contains(&run.display().to_string())
            && lines[0].contains("process 4194305")
            && lines[0].ends_with("which is no longer running"),
        "{said}"
    );
    assert_steps_rise(&run);
    assert!(!run.join(LOCK_FILE).exists(), "released at the end");
}

#[test]
fn a_second_writer_in_the_same_process_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    // An empty lock file is neither a run nor a stale holder.
    std::fs::create_dir(&run).expect("folder");
    std::fs::write(run.join(LOCK_FILE), "").expect("writes");
    let writer = RunWriter::create(&run, false).expect("a fresh folder");
    assert!(writer.taken_over().is_none());
    std::fs::write(writer.metrics_path(), "{\"step\":0}\n").expect("writes");
    // All defaults: a run folder that a resume would open.
    std::fs::write(run.join("config.toml"), "").expect("writes");
    let before = contents(&run);
    let me = format!("being written by process {}", std::process::id());
    for (what, result) in [
        ("create", RunWriter::create(&run, false)),
        ("overwrite", RunWriter::create(&run, true)),
        ("resume", RunWriter::open_for_writing(&run)),
    ] {
        let err = result.expect_err(what);
        assert!(matches!(err, SessionError::Busy { .. }), "{what}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(&run.display().to_string()) && message.contains(&me),
            "{what}: {message}"
        );
    }
    assert_eq!(
        contents(&run),
        before,
        "the refused writers changed nothing"
    );
    drop(writer);
    assert!(!run.join(LOCK_FILE).exists(), "released");
    let again = RunWriter::create(&run, true).expect("free again");
    assert!(
        again.taken_over().is_none(),
        "a clean end leaves no stale lock"
    );
}

#[test]
fn eval_and_export_read_a_folder_while_a_writer_holds_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    run_ok(&mut train(&run, 1, &[]));
    let writer = RunWriter::open_for_writing(&run).expect("the lock");
    assert!(RunWriter::open_for_writing(&run).is_err(), "held");
    let before = contents(&run);
    let out = run_ok(
        msbreg()
            .args(["eval", "--probe-epochs", "2", "--max-train", "300", "--run"])
            .arg(&run),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("linear probe"),
        "{}",
        stderr(&out)
    );
    let exported = dir.path().join("exported");
    run_ok(
        msbreg()
            .args(["export", "--limit", "10", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(&exported),
    );
    assert!(exported.join("vectors.tsv").is_file());
    assert_eq!(contents(&run), before, "the readers wrote nothing");
    assert_eq!(
        std::fs::read(writer.lock_path()).expect("still there"),
        before[Path::new(LOCK_FILE)],
        "and left the lock to its holder"
    );
}
