//! More displayed points than the core: the display set grows past its core without changing
//! the core (what recordings keep), the points beyond it embed as the core's own rows do, and
//! the trainer shows them all, a chunk at a time while it trains, at once when paused.

use std::time::{Duration, Instant};

use burn::tensor::Device;

use msbreg::backend::Backend;
use msbreg::config::{DISPLAY_POINTS, Workload, WorkloadSettings};
use msbreg::session::{self, Run};
use msbreg::trainer::{Command, Snapshot, Trainer};

const WAIT: Duration = Duration::from_secs(20);

fn open(workload: &Workload) -> Box<dyn Run> {
    session::open(workload, &Device::flex()).expect("opens")
}

/// A small shapes run showing `points` held-out images (of 600).
fn shapes(points: usize) -> Workload {
    let settings = WorkloadSettings {
        batch_size: 16,
        views: 2,
        seed: 4,
        display_points: points,
        ..WorkloadSettings::default()
    };
    let Workload::Images(mut config) = settings.workload() else {
        panic!("an image run");
    };
    config.data.shapes_train = 256;
    config.data.shapes_test = 600;
    config.eval.bank_size = 64;
    Workload::Images(config)
}

fn sandbox(points: usize) -> Workload {
    WorkloadSettings {
        display_points: points,
        ..WorkloadSettings::app_default()
    }
    .workload()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The core is what it was without more points (labels, embeddings), the display set has
/// every point asked for (as many as the data has), and the rows beyond the core are the
/// plain embeddings of those points: unit rows, the core's first rows the same as
/// `display_embeddings` gives.
#[test]
fn the_display_set_grows_past_its_core_and_keeps_it() {
    for (name, alone, more, expected) in [
        ("sandbox", sandbox(0), sandbox(3000), 3000),
        ("shapes", shapes(0), shapes(5000), 600),
    ] {
        let (alone, more) = (open(&alone), open(&more));
        let core = alone.display().labels.len();
        assert_eq!(core, more.display().core, "{name}");
        assert_eq!(more.display().labels.len(), expected, "{name}");
        assert_eq!(
            alone.display().labels[..],
            more.display().labels[..core],
            "{name}: the core's points are the same"
        );
        let [points, _, _] = more.display_embeddings().expect("embeds");
        let d = more.settings().embed_dim();
        assert_eq!(points.len(), core * d, "{name}: the core alone has views");
        let [points_alone, _, _] = alone.display_embeddings().expect("embeds");
        assert_eq!(points, points_alone, "{name}: the same core embeddings");
        let rows = more.display_rows(0..core).expect("rows");
        assert!(
            max_abs_diff(&rows, &points) < 1e-5,
            "{name}: the core's rows as display_embeddings gives them"
        );
        let beyond = more.display_rows(core..expected).expect("rows");
        assert_eq!(beyond.len(), (expected - core) * d, "{name}");
        for row in beyond.chunks(d) {
            let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{name}: unit rows, {norm}");
        }
        let chunk = more.display_rows(core + 10..core + 20).expect("rows");
        assert!(
            max_abs_diff(&chunk, &beyond[10 * d..20 * d]) < 1e-5,
            "{name}: a chunk is the same rows"
        );
        assert!(
            more.display_rows(expected..expected + 5)
                .expect("past the end")
                .is_empty()
        );
    }
    // Different points beyond the core, not copies of it.
    let run = open(&sandbox(2 * DISPLAY_POINTS));
    let preview = match &run.display().preview {
        msbreg::session::Preview::Points { points, dim } => (points.clone(), *dim),
        other @ msbreg::session::Preview::Images(_) => panic!("{other:?}"),
    };
    let (points, dim) = preview;
    assert_eq!(points.len(), 2 * DISPLAY_POINTS * dim);
    assert_ne!(
        points[..DISPLAY_POINTS * dim],
        points[DISPLAY_POINTS * dim..]
    );
}

fn wait_for(trainer: &Trainer, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(snapshot) = trainer.wait_snapshot(Duration::from_millis(100)) {
            assert!(snapshot.error.is_none(), "{:?}", snapshot.error);
            let finished = done(&snapshot);
            last = Some(snapshot);
            if finished {
                return last.expect("just set");
            }
        }
    }
    panic!(
        "not reached in {WAIT:?}; last step {:?}, failure {:?}",
        last.map(|s| s.step),
        trainer.failure()
    );
}

/// The trainer shows every point: all at once on opening (paused), then while it trains the
/// frames keep them all (older embeddings for some), and the display's share of its time is
/// measured and within its bound (plus one refresh's worth).
#[test]
fn the_trainer_shows_every_point_and_keeps_the_display_within_its_share() {
    let total = 6000;
    let mut trainer = Trainer::spawn(
        &Backend::flex("tests"),
        sandbox(total),
        false,
        Box::new(|| {}),
    )
    .expect("spawns");
    let first = wait_for(&trainer, |s| s.frame.is_some());
    let frame = first.frame.as_ref().expect("a frame");
    assert_eq!(first.info.labels.len(), total);
    assert_eq!(frame.points.len(), DISPLAY_POINTS);
    assert_eq!(frame.views.len(), DISPLAY_POINTS, "views for the core only");
    assert_eq!(
        frame.more.len(),
        total - DISPLAY_POINTS,
        "all at once when paused"
    );
    assert_eq!(frame.more_sphere.len(), frame.more.len());
    assert!(
        frame.more.iter().flatten().all(|x| x.abs() <= 1.0),
        "in the unit ball"
    );
    assert!(trainer.send(Command::Run));
    let running = wait_for(&trainer, |s| {
        s.step >= 200 && s.display_round_secs.is_some()
    });
    let frame = running.frame.as_ref().expect("a frame");
    assert_eq!(frame.more.len(), total - DISPLAY_POINTS);
    assert!(running.display_share > 0.0);
    // One refresh may run past the budget before it is known to be dear; a few percent
    // beyond the share would mean it is not kept.
    assert!(
        running.display_share < msbreg::trainer::DISPLAY_SHARE + 0.05,
        "{}",
        running.display_share
    );
    assert!(trainer.send(Command::Pause));
    // The pause's one snapshot: the frame of the step it stopped at, every point in it.
    let paused = wait_for(&trainer, |s| {
        !s.running
            && s.frame
                .as_ref()
                .is_some_and(|f| f.step == s.step && f.more.len() == total - DISPLAY_POINTS)
    });
    // Against the opening frame: the pause may come at the step the last frame was made at,
    // whose points are then the same.
    assert_ne!(
        paused.frame.as_ref().expect("a frame").more,
        first.frame.as_ref().expect("a frame").more,
        "the points beyond the core moved with training"
    );
    trainer.shutdown(WAIT).expect("stops");
}
