//! Branch from a recorded step, Compare and the run browser: a branch with unchanged settings
//! reproduces its parent exactly (flex), and the app's buttons do what they say, clicked by
//! label through egui_kittest.

mod kit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable as _;

use kit::{WAIT, cpu, harness, run_until, sandbox_options};
use msbreg::app::{Timeline, WorkloadSettings};
use msbreg::config::Workload;
use msbreg::data::sandbox::SandboxKind;
use msbreg::method::StepReport;
use msbreg::session::catalog::{Origin, PIN_FILE};
use msbreg::session::{list_checkpoints, read_events};
use msbreg::trainer::{BranchRequest, Command, RunsDir, Snapshot, Trainer};

fn runs_in(dir: &Path) -> RunsDir {
    RunsDir {
        dir: dir.join("runs"),
        cap_bytes: 1 << 40,
    }
}

/// Waits for snapshots, gathering every step's losses, until `done`.
fn gather(
    trainer: &Trainer,
    losses: &mut BTreeMap<u64, StepReport>,
    done: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if let Some(snapshot) = trainer.wait_snapshot(Duration::from_millis(100)) {
            for point in &snapshot.metrics {
                if let Some(report) = point.losses {
                    losses.insert(point.step, report);
                }
            }
            if done(&snapshot) {
                return snapshot;
            }
        }
    }
    panic!("timed out");
}

#[test]
fn a_branch_with_unchanged_settings_reproduces_its_parent_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The app's runs are open-ended: their config's steps are more than anyone trains.
    let workload = WorkloadSettings::sandbox(SandboxKind::Gaussians).workload();
    let Workload::Sandbox(config) = &workload else {
        panic!("a sandbox workload");
    };
    assert!(config.steps >= 1_000_000_000, "{}", config.steps);
    let mut trainer = Trainer::spawn_keeping(
        &cpu(),
        workload,
        true,
        Box::new(|| {}),
        Some(runs_in(dir.path())),
    )
    .expect("spawns");
    let mut parent = BTreeMap::new();
    let running = gather(&trainer, &mut parent, |s| {
        s.step >= 40 && s.folder.is_some()
    });
    let kept = running.folder.clone().expect("kept");
    // Training on until a checkpoint after the first (one every 2 s of training).
    gather(&trainer, &mut parent, |_| {
        list_checkpoints(&kept).is_ok_and(|c| c.iter().any(|(at, _)| *at > 0))
    });
    trainer.send(Command::Pause);
    let paused = gather(&trainer, &mut parent, |s| !s.running && s.folder.is_some());
    let end = paused.step;
    let parent_dir = paused.folder.clone().expect("kept");

    // A branch that cannot be made says why; the run on screen stays in its folder.
    trainer.send(Command::Branch(Box::new(BranchRequest {
        parent: parent_dir.clone(),
        step: 5,
        dynamics: paused.dynamics,
        learning_rate: -1.0,
    })));
    let refused = gather(&trainer, &mut BTreeMap::new(), |s| s.error.is_some());
    let error = refused.error.clone().unwrap_or_default();
    assert!(
        error.contains("cannot branch") && error.contains("learning rate"),
        "{error}"
    );
    assert_eq!(refused.folder.as_deref(), Some(parent_dir.as_path()));
    assert_eq!(refused.info.run_id, paused.info.run_id);

    let k = 15;
    trainer.send(Command::Branch(Box::new(BranchRequest {
        parent: parent_dir.clone(),
        step: k,
        dynamics: paused.dynamics,
        learning_rate: paused.learning_rate,
    })));
    let mut branch = BTreeMap::new();
    let first = gather(&trainer, &mut branch, |s| {
        s.info.run_id != paused.info.run_id && s.step == k
    });
    assert!(first.error.is_none(), "{:?}", first.error);
    for _ in k..end {
        trainer.send(Command::Step);
    }
    let last = gather(&trainer, &mut branch, |s| s.step == end);
    for step in k + 1..=end {
        let (a, b) = (parent[&step], branch[&step]);
        assert_eq!(
            [a.loss, a.loss_centroid, a.loss_sv, a.loss_brownian].map(f32::to_bits),
            [b.loss, b.loss_centroid, b.loss_sv, b.loss_brownian].map(f32::to_bits),
            "step {step}"
        );
    }
    let branch_dir = last.folder.clone().expect("the branch is kept");
    assert_ne!(branch_dir, parent_dir);
    let origin = Origin::read(&branch_dir).expect("origin.json");
    assert_eq!(origin.parent.as_deref(), Some(parent_dir.as_path()));
    assert_eq!(origin.parent_step, Some(k));
    let events = read_events(&branch_dir).expect("reads");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "branch" && e.text.contains("branched from")),
        "{events:?}"
    );

    // A branch with the Brownian force off acts with it off; from the paused step, it starts
    // from a later checkpoint than the first.
    let mut dynamics = paused.dynamics;
    dynamics.brownian.on = false;
    trainer.send(Command::Branch(Box::new(BranchRequest {
        parent: parent_dir,
        step: end,
        dynamics,
        learning_rate: paused.learning_rate,
    })));
    let changed = gather(&trainer, &mut BTreeMap::new(), |s| {
        s.info.run_id != last.info.run_id && (s.step == end || s.error.is_some())
    });
    assert!(changed.error.is_none(), "{:?}", changed.error);
    assert_eq!(changed.step, end);
    assert!(!changed.dynamics.brownian.on);
    trainer.shutdown(Duration::from_secs(30)).expect("stops");
}

#[test]
fn branch_compare_and_the_run_browser_by_their_buttons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = runs_in(dir.path());
    let mut harness = harness(sandbox_options(Some(runs.clone()), None, true));
    run_until(&mut harness, "20 steps", |app| {
        app.latest().is_some_and(|s| s.step >= 20)
    });
    harness.get_by_label("Pause").click();
    run_until(&mut harness, "the recording up to the pause", |app| {
        let paused = app.latest().filter(|s| !s.running).map(|s| s.step);
        paused.is_some() && app.timeline.range().map(|r| r.1) == paused
    });
    // The bar has just appeared: let the layout settle before clicking in it.
    harness.run_steps(3);
    let parent: PathBuf = harness.state().timeline.dir().expect("kept").to_owned();
    harness.get_by_label("<").click();
    harness.run_steps(2);
    let at = harness.state().timeline.cursor().expect("scrubbed back");

    // Branch from the scrubbed step.
    harness.get_by_label("Branch").click();
    run_until(&mut harness, "the branch", |app| {
        app.latest()
            .and_then(|s| s.folder.clone())
            .is_some_and(|f| f != parent)
    });
    let child = harness
        .state()
        .latest()
        .and_then(|s| s.folder.clone())
        .expect("kept");
    assert_eq!(harness.state().latest().map(|s| s.step), Some(at));
    let origin = Origin::read(&child).expect("origin.json");
    assert_eq!(origin.parent.as_deref(), Some(parent.as_path()));
    run_until(&mut harness, "the fork on the timeline", |app| {
        app.timeline
            .fork()
            .is_some_and(|f| f.contains("branched from"))
    });
    // The branch starts paused, its first frame already on its timeline.
    assert!(!harness.state().latest().is_some_and(|s| s.running));
    run_until(&mut harness, "the branch's first frame recorded", |app| {
        app.timeline.range() == Some((at, at))
    });
    // The parent's timeline has a mark where the branch forked.
    let mut parents_timeline = Timeline::default();
    parents_timeline.follow(Some(&parent));
    assert_eq!(parents_timeline.branches(), &[(child.clone(), at)]);

    // The browser lists both; tick both and compare.
    harness.get_by_label("Runs").click();
    run_until(&mut harness, "the listing", |app| {
        app.browser.runs().len() == 2
    });
    // A window's first frame only sizes it.
    harness.run_steps(3);
    for tick in harness.get_all_by_label("tick").collect::<Vec<_>>() {
        tick.click();
    }
    harness.run_steps(2);
    harness.get_by_label("Compare 2 ticked").click();
    harness.run_steps(3);
    let compare = harness.state().compare.as_ref().expect("comparing");
    assert_eq!(compare.runs.len(), 2);
    harness.get_by_label("Comparing 2 runs");
    harness.get_by_label("Close comparison").click();
    harness.run_steps(2);
    assert!(harness.state().compare.is_none());

    // Pin the parent, then delete it (it is not on screen).
    harness.get_by_label("Runs").click();
    harness.run_steps(4);
    let pins: Vec<_> = harness.get_all_by_label("Pin").collect();
    pins[0].click();
    harness.run_steps(2);
    assert!(
        parent.join(PIN_FILE).is_file(),
        "the oldest (the parent) is listed first"
    );
    let deletes: Vec<_> = harness.get_all_by_label("Delete").collect();
    deletes[0].click();
    harness.run_steps(2);
    assert!(!parent.exists(), "deleted");
    assert!(child.exists(), "the run on screen stays");
}

/// Set in the child process of the test below (its runs directory).
const FULL_DISK_CHILD: &str = "MSBREG_TEST_FULL_DISK_RUNS";

/// The app's trainer with its run kept, on a disk that fills up (a file-size limit, in a
/// child process: the limit is per process): the run pauses with the message, and what was
/// recorded stays readable.
#[test]
fn a_full_disk_pauses_the_apps_run_and_keeps_what_was_recorded() {
    if let Ok(runs) = std::env::var(FULL_DISK_CHILD) {
        full_disk_child(Path::new(&runs));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("the test binary");
    // SIGXFSZ ignored (inherited through exec), so a write past the limit fails instead.
    let script = format!(
        "trap '' XFSZ; ulimit -f 600; exec '{}' --exact \
         a_full_disk_pauses_the_apps_run_and_keeps_what_was_recorded --nocapture",
        exe.display()
    );
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env(FULL_DISK_CHILD, dir.path())
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("paused with:"),
        "the child got as far: {text}"
    );
}

fn full_disk_child(dir: &Path) {
    let workload = WorkloadSettings::sandbox(SandboxKind::Gaussians).workload();
    let trainer =
        Trainer::spawn_keeping(&cpu(), workload, true, Box::new(|| {}), Some(runs_in(dir)))
            .expect("spawns");
    let mut losses = BTreeMap::new();
    let paused = gather(&trainer, &mut losses, |s| !s.running && s.error.is_some());
    let error = paused.error.clone().unwrap_or_default();
    println!("paused with: {error}");
    assert!(error.contains("the run is paused"), "{error}");
    assert!(error.contains("free some space"), "{error}");
    // The limit is per file: the recording outgrows it first (the checkpoints' files are
    // smaller), unless a model grows; either way the message names the file.
    if error.contains("recording") {
        assert!(error.contains("stays readable"), "{error}");
    } else {
        assert!(error.contains("checkpoints"), "{error}");
    }
    let folder = paused.folder.clone().expect("the run's folder");
    drop(trainer);
    let leftovers: Vec<_> = std::fs::read_dir(folder.join("checkpoints"))
        .expect("checkpoints")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "a half-written checkpoint: {leftovers:?}"
    );
    let mut recording = msbreg::session::Recording::open(&folder).expect("what was recorded opens");
    assert!(recording.tail().is_none(), "{:?}", recording.tail());
    assert!(!recording.all_frames().expect("decodes").is_empty());
}
