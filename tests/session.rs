//! Runs and their folders through the one `Run` interface: a sandbox run stopped and restored
//! from its checkpoint continues bit for bit, the NaN rollback restores the optimiser state
//! too, and `--resume` rewrites the metrics atomically.

use burn::tensor::Device;

use msbreg::config::{Preset, SimConfig};
use msbreg::headless::{DriveOptions, drive};
use msbreg::method::forces::{brownian_directions, tensor_2d};
use msbreg::method::{Dynamics, Learner, OptimizerConfig, OptimizerKind, StepError};
use msbreg::model::{SandboxNetConfig, seeded_init};
use msbreg::seed::{Stream, rng};
use msbreg::session::{MetricsRecord, Parts, Run as _, RunWriter, SandboxRun, read_metrics};

fn short_config() -> SimConfig {
    let mut config = Preset::Msbreg.config();
    config.seed = 9;
    config.steps = 20;
    config.log_every = 5;
    config.batch_size = 64;
    config.data.train_size = 256;
    config.data.eval_size = 64;
    config
}

/// The metrics without the wall-clock keys.
fn comparable(mut records: Vec<MetricsRecord>) -> Vec<MetricsRecord> {
    for record in &mut records {
        record.elapsed_secs = 0.0;
        record.images_per_sec = None;
    }
    records
}

#[test]
fn a_sandbox_run_restored_from_its_checkpoint_continues_bit_for_bit() {
    let device = Device::flex();
    let whole = tempfile::tempdir().expect("temp dir");
    let folder = RunWriter::create(whole.path(), false).expect("folder");
    let mut run = SandboxRun::new(short_config(), &device);
    drive(&mut run, &folder, DriveOptions::default(), |_| {}).expect("runs");
    let expected = comparable(read_metrics(&folder.metrics_path()).expect("metrics"));

    let split = tempfile::tempdir().expect("temp dir");
    let folder = RunWriter::create(split.path(), false).expect("folder");
    let mut run = SandboxRun::new(short_config(), &device);
    let options = DriveOptions {
        stop_after: Some(12),
    };
    drive(&mut run, &folder, options, |_| {}).expect("runs to step 12");
    drop(run);
    let (mut restored, notes) = folder
        .reopen(&device, Parts::All)
        .expect("reopens at its checkpoint");
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(restored.steps_done(), 12);
    assert_eq!(
        folder.keep_metrics_through(12).expect("rewrites"),
        3,
        "steps 0, 5, 10"
    );
    drive(restored.as_mut(), &folder, DriveOptions::default(), |_| {}).expect("resumes");
    let resumed = comparable(read_metrics(&folder.metrics_path()).expect("metrics"));
    assert_eq!(resumed, expected);
}

#[test]
fn resuming_drops_later_lines_atomically() {
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = RunWriter::create(dir.path(), false).expect("folder");
    std::fs::write(
        folder.metrics_path(),
        "{\"step\":0}\n{\"step\":10}\n{\"step\":20}\n",
    )
    .expect("writes");
    assert_eq!(folder.keep_metrics_through(10).expect("rewrites"), 2);
    let text = std::fs::read_to_string(folder.metrics_path()).expect("reads");
    assert_eq!(text, "{\"step\":0}\n{\"step\":10}\n");
    // The writer's lock file goes with the writer.
    drop(folder);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["metrics.jsonl".to_owned()],
        "no temporary file left"
    );
}

/// A learner on a small MLP and fixed inputs: views `[n * m, 10]` and kicks `[n, d]`.
struct Bench {
    device: Device,
    views: Vec<Vec<f32>>,
    kicks: Vec<f32>,
}

const N: usize = 32;
const M: usize = 2;
const D: usize = 16;

impl Bench {
    fn new() -> Self {
        use rand::RngExt as _;
        let mut r = rng(4, Stream::Dataset);
        let views = (0..4)
            .map(|_| (0..N * M * 10).map(|_| r.random::<f32>() - 0.5).collect())
            .collect();
        let kicks = brownian_directions(&mut rng(4, Stream::Brownian), N, D);
        Self {
            device: Device::flex().autodiff(),
            views,
            kicks,
        }
    }

    fn learner(&self) -> Learner<msbreg::model::SandboxNet> {
        let config = SandboxNetConfig {
            embed_dim: D,
            ..SandboxNetConfig::default()
        };
        let online = seeded_init(config.init(10, &self.device), &mut rng(4, Stream::Weights));
        let optimizer = OptimizerConfig {
            kind: OptimizerKind::Adamw,
            ..OptimizerConfig::default()
        };
        Learner::new(online, &optimizer)
    }

    fn step(
        &self,
        learner: &mut Learner<msbreg::model::SandboxNet>,
        batch: usize,
        learning_rate: f64,
    ) -> Result<f32, StepError> {
        let views = tensor_2d(self.views[batch].clone(), N * M, 10, &self.device);
        let kicks = tensor_2d(self.kicks.clone(), N, D, &self.device);
        learner
            .step(&views, N, M, kicks, &Dynamics::default(), learning_rate)
            .map(|report| report.loss)
    }
}

#[test]
fn the_nan_rollback_restores_the_optimiser_state_too() {
    let bench = Bench::new();
    let lr = 1e-3;
    // A: three good steps on batches 0, 1, 2.
    let mut a = bench.learner();
    bench.step(&mut a, 0, lr).expect("finite");
    let a1 = bench.step(&mut a, 1, lr).expect("finite");
    let a2 = bench.step(&mut a, 2, lr).expect("finite");
    // B: the same first step, then a step at an infinite rate (its losses are finite, its
    // update is not), which the next step detects and undoes, then A's steps 1 and 2.
    let mut b = bench.learner();
    bench.step(&mut b, 0, lr).expect("finite");
    bench
        .step(&mut b, 3, f64::INFINITY)
        .expect("finite before the update");
    let err = bench
        .step(&mut b, 1, lr)
        .expect_err("the infinite update gives NaN");
    assert!(matches!(err, StepError::NonFinite { .. }), "{err}");
    let b1 = bench
        .step(&mut b, 1, lr)
        .expect("finite after the rollback");
    let b2 = bench.step(&mut b, 2, lr).expect("finite");
    assert_eq!(a1.to_bits(), b1.to_bits(), "the weights are back");
    assert_eq!(
        a2.to_bits(),
        b2.to_bits(),
        "the optimiser's moments are back too: the bad step's gradient left no trace"
    );
}

#[test]
fn knn_embeds_the_bank_and_the_queries_once_each() {
    let config = short_config();
    let run = SandboxRun::new(config.clone(), &Device::flex());
    let before = run.rows_embedded();
    run.knn_acc().expect("measures").expect("labelled");
    assert_eq!(
        run.rows_embedded() - before,
        (config.data.train_size + config.data.eval_size) as u64,
        "kNN alone embeds the bank and the queries, nothing else"
    );
    let before = run.rows_embedded();
    run.display_embeddings().expect("embeds");
    assert_eq!(
        run.rows_embedded() - before,
        3 * config.data.eval_size as u64,
        "the display: the points and two views of each"
    );
}

#[test]
fn overwrite_removes_only_what_msbreg_wrote() {
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = RunWriter::create(dir.path(), false).expect("folder");
    let mut run = SandboxRun::new(short_config(), &Device::flex());
    drive(&mut run, &folder, DriveOptions::default(), |_| {}).expect("runs");
    let notes = dir.path().join("checkpoints").join("my-notes.txt");
    std::fs::write(&notes, "mine").expect("writes");
    std::fs::write(dir.path().join("README.txt"), "mine too").expect("writes");
    drop(folder); // the first writer ends: its lock goes with it
    RunWriter::create(dir.path(), true).expect("overwrites");
    assert!(notes.is_file(), "the user's file inside checkpoints/ stays");
    assert!(dir.path().join("README.txt").is_file());
    assert!(!dir.path().join("metrics.jsonl").exists());
    assert!(
        !dir.path()
            .join("checkpoints")
            .join("step-00000020")
            .exists()
    );
}

#[test]
fn step_counts_are_bounded() {
    let mut config = short_config();
    config.steps = usize::MAX;
    let err = config.validate().expect_err("absurd");
    assert!(err.to_string().contains("steps"), "{err}");
}
