//! One loop for every headless run: step, log, evaluate, checkpoint, into a run folder.
//!
//! The run says how often ([`crate::session::Cadence`]); the loop writes `config.toml`
//! first, a step-0 line for a fresh run, a metrics line every `log_every` steps (with the
//! diagnostics every `eval_every` steps and at the end), checkpoints every
//! `checkpoint_every` steps and where it stops, and the run's own outputs at the end. A step
//! that fails stops the loop with an error naming the step and what was kept.

use std::time::Instant;

use super::HeadlessError;
use crate::method::StepReport;
use crate::projection::Framer;
use crate::session::{
    MetricsRecord, RECORDING_FILE, Recorder, Run, RunWriter, SessionError, list_checkpoints,
    nan_diagnostics,
};

/// A headless run's recording: the display set projected every `record_every` steps.
struct FrameRecorder {
    recorder: Recorder,
    framer: Framer,
}

impl FrameRecorder {
    /// The recording of the run in `folder`: a new one for a fresh run, the old one cut back
    /// to `run`'s step for a resumed run (or a new one when it has none).
    fn open(run: &dyn Run, folder: &RunWriter, fresh: bool) -> Result<Option<Self>, SessionError> {
        let cadence = run.cadence();
        if cadence.record_every == 0 {
            return Ok(None);
        }
        let path = folder.path().join(RECORDING_FILE);
        let recorder = if fresh {
            // Left by a run that stopped before it logged anything: this run replaces it.
            if path.is_file() {
                std::fs::remove_file(&path).map_err(|e| crate::session::write_err(&path, e))?;
            }
            Recorder::create(&path, run, cadence.embeddings_every)?
        } else {
            Recorder::resume(&path, run, run.steps_done(), cadence.embeddings_every)?
        };
        Ok(Some(Self {
            recorder,
            framer: Framer::default(),
        }))
    }

    fn record(&mut self, run: &dyn Run) -> Result<(), SessionError> {
        let rows = run.display_embeddings()?;
        let d = run.settings().embed_dim();
        let (frame, _) = self.framer.frame(run.steps_done(), &rows, d);
        let settings = run.settings();
        self.recorder.push(
            &frame,
            &rows,
            d,
            settings.dynamics(),
            settings.learning_rate(),
        )?;
        Ok(())
    }
}

/// How far one call of [`drive`] goes.
#[derive(Clone, Copy, Debug, Default)]
pub struct DriveOptions {
    /// Stop (as if interrupted, with a checkpoint) once this many steps are done; the run can
    /// be resumed.
    pub stop_after: Option<u64>,
}

/// Progress for a progress bar, after every step.
#[derive(Clone, Debug)]
pub struct Progress {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: Option<u64>,
    pub loss: f32,
    pub images_per_sec: f64,
    /// The newest kNN accuracy measured.
    pub knn_acc: Option<f64>,
    /// The line logged at this step, if one was.
    pub record: Option<MetricsRecord>,
}

/// What a finished (or stopped) call of [`drive`] reports.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub steps_done: u64,
    /// The last line logged, and the last with diagnostics.
    pub last: Option<MetricsRecord>,
    pub last_evaluated: Option<MetricsRecord>,
    /// Images (views counted) per second over this call, and steps per second of training
    /// time alone.
    pub images_per_sec: f64,
    pub steps_per_sec: f64,
    pub input_wait_secs: f64,
    pub elapsed_secs: f64,
    /// Files the run wrote at the end (besides config, metrics and checkpoints).
    pub outputs: Vec<String>,
    /// Frames in the recording, and its bytes (0 without one).
    pub frames_recorded: u64,
    pub recording_bytes: u64,
}

/// Trains `run` from its current step into `folder` until its last step (or
/// `options.stop_after`).
#[allow(clippy::too_many_lines)] // the training loop, read top to bottom
pub fn drive(
    run: &mut dyn Run,
    folder: &RunWriter,
    options: DriveOptions,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Outcome, HeadlessError> {
    folder.write_config(run.settings())?;
    let mut metrics = folder.metrics_writer()?;
    let total = run.total_steps();
    let end = options.stop_after.map_or(total, |s| s.min(total));
    let cadence = run.cadence();
    let start_step = run.steps_done();
    let images_per_step = run.images_per_step() as f64;
    let start = Instant::now();
    let mut window_start = Instant::now();
    let mut window_steps = 0u64;
    let mut images_per_sec = 0.0;
    let mut train_secs = 0.0;
    let mut last = None;
    let mut last_evaluated = None;
    let mut knn_acc = None;
    let stopped = |run: &dyn Run, step: u64, reason: SessionError, lines: usize| {
        // What the last good weights would have written, then the error.
        let outputs = run.write_outputs(folder.path()).unwrap_or_default();
        let checkpoints: Vec<String> = list_checkpoints(folder.path())
            .unwrap_or_default()
            .iter()
            .map(|(step, _)| step.to_string())
            .collect();
        let checkpoints = match checkpoints.as_slice() {
            [] => "no checkpoint yet".to_owned(),
            [one] => format!("the checkpoint at step {one}"),
            many => format!("the checkpoints at steps {}", many.join(", ")),
        };
        let mut kept =
            format!("config.toml, metrics.jsonl ({lines} lines from this run), {checkpoints}");
        for name in outputs {
            kept.push_str(", ");
            kept.push_str(&name);
        }
        HeadlessError::Stopped {
            step,
            reason: Box::new(reason),
            out: folder.path().to_owned(),
            kept,
        }
    };
    let record = |run: &dyn Run,
                  step: u64,
                  report: Option<StepReport>,
                  diagnostics: Option<crate::diagnostics::Diagnostics>,
                  images_per_sec: f64,
                  elapsed_secs: f64| {
        // The schedules of the step that brought the run here.
        let schedule = run.schedule(step.saturating_sub(1));
        let evaluated = diagnostics.is_some();
        let mut record = MetricsRecord::new(
            step,
            report,
            &diagnostics.unwrap_or_else(nan_diagnostics),
            elapsed_secs,
        );
        record.epoch = schedule.epoch;
        record.lr = Some(schedule.learning_rate);
        record.tau = Some(schedule.tau);
        record.images_per_sec = Some(images_per_sec);
        record.evaluated = Some(evaluated);
        record
    };

    let fresh = start_step == 0 && !folder.has_metrics();
    let mut recorder = FrameRecorder::open(&*run, folder, fresh)?;
    if let (true, Some(recorder)) = (fresh, recorder.as_mut()) {
        recorder
            .record(&*run)
            .map_err(|reason| stopped(&*run, 0, reason, 0))?;
    }
    // The step-0 line, unless a run resumed from its step-0 checkpoint has it already.
    if fresh {
        let diagnostics = run
            .evaluate()
            .map_err(|reason| stopped(&*run, 0, reason, 0))?;
        let line = record(&*run, 0, None, diagnostics, 0.0, 0.0);
        metrics.write(&line)?;
        knn_acc = line.evaluated.unwrap_or(false).then_some(line.knn_acc);
        if line.evaluated == Some(true) {
            last_evaluated = Some(line.clone());
        }
        last = Some(line);
        if end == 0 {
            // `--stop-after 0`: the initial weights, as a baseline for `msbreg eval`.
            folder.write_checkpoint(&*run, cadence.keep)?;
        }
    }

    // The newest step not logged yet, logged after all if the next step fails: the record
    // goes up to the last good step.
    let mut unlogged: Option<(u64, StepReport)> = None;
    while run.steps_done() < end {
        let step_start = Instant::now();
        let report = match run.step() {
            Ok(report) => report,
            Err(SessionError::Finished { .. }) => break,
            Err(reason) => {
                if let Some((step, report)) = unlogged.take() {
                    let elapsed_secs = start.elapsed().as_secs_f64();
                    let line = record(
                        &*run,
                        step,
                        Some(report),
                        None,
                        images_per_sec,
                        elapsed_secs,
                    );
                    metrics.write(&line)?;
                }
                let step = run.steps_done() + 1;
                return Err(stopped(&*run, step, reason, metrics.lines()));
            }
        };
        train_secs += step_start.elapsed().as_secs_f64();
        let step = run.steps_done();
        window_steps += 1;
        let window_secs = window_start.elapsed().as_secs_f64();
        if window_secs >= 2.0 || step == end {
            images_per_sec = window_steps as f64 * images_per_step / window_secs.max(1e-9);
            window_start = Instant::now();
            window_steps = 0;
        }
        let evaluate_now =
            (cadence.eval_every > 0 && step.is_multiple_of(cadence.eval_every)) || step == total;
        let log_now = evaluate_now || step.is_multiple_of(cadence.log_every.max(1));
        let mut logged = None;
        if log_now {
            let diagnostics = if evaluate_now {
                run.evaluate()
                    .map_err(|reason| stopped(&*run, step, reason, metrics.lines()))?
            } else {
                None
            };
            let line = record(
                &*run,
                step,
                Some(report),
                diagnostics,
                images_per_sec,
                start.elapsed().as_secs_f64(),
            );
            metrics.write(&line)?;
            if line.evaluated == Some(true) {
                knn_acc = Some(line.knn_acc);
                last_evaluated = Some(line.clone());
            }
            last = Some(line.clone());
            logged = Some(line);
            unlogged = None;
        } else {
            unlogged = Some((step, report));
        }
        if let Some(recorder) = recorder.as_mut()
            && (step.is_multiple_of(cadence.record_every) || step == end)
        {
            recorder
                .record(&*run)
                .map_err(|reason| stopped(&*run, step, reason, metrics.lines()))?;
        }
        let checkpoint_every = cadence.checkpoint_every;
        if (checkpoint_every > 0 && step.is_multiple_of(checkpoint_every)) || step == end {
            folder.write_checkpoint(&*run, cadence.keep)?;
        }
        on_progress(&Progress {
            step,
            total_steps: total,
            epoch: run.schedule(step - 1).epoch,
            loss: report.loss,
            images_per_sec,
            knn_acc,
            record: logged,
        });
    }
    let (frames_recorded, recording_bytes) = match recorder.as_mut() {
        Some(recorder) => {
            recorder.recorder.flush().map_err(SessionError::from)?;
            let writer = recorder.recorder.writer();
            (writer.frames_written(), writer.bytes())
        }
        None => (0, 0),
    };
    let outputs = if run.steps_done() >= end {
        run.write_outputs(folder.path())?
    } else {
        Vec::new()
    };
    let elapsed_secs = start.elapsed().as_secs_f64();
    let steps = run.steps_done() - start_step;
    Ok(Outcome {
        steps_done: run.steps_done(),
        last,
        last_evaluated,
        images_per_sec: steps as f64 * images_per_step / elapsed_secs.max(1e-9),
        steps_per_sec: steps as f64 / train_secs.max(1e-9),
        input_wait_secs: run.input_wait_secs(),
        elapsed_secs,
        outputs,
        frames_recorded,
        recording_bytes,
    })
}

/// A fresh sandbox run of `config` on `device`, driven to its last step into the run folder
/// `out` (created; it must not hold a run yet).
pub fn simulate(
    config: &crate::config::SimConfig,
    device: &burn::tensor::Device,
    out: &std::path::Path,
    on_progress: impl FnMut(&Progress),
) -> Result<Outcome, HeadlessError> {
    config.validate().map_err(SessionError::from)?;
    let folder = RunWriter::create(out, false)?;
    let mut run = crate::session::SandboxRun::try_new(config.clone(), device)?;
    drive(&mut run, &folder, DriveOptions::default(), on_progress)
}
