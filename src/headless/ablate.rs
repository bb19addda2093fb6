//! `msbreg ablate`: every point of a grid of config values, for every seed, as an ordinary run
//! folder (so the app can open and compare them), each evaluated (kNN and the linear probe),
//! with the random-init encoder of the base config beside them; then `table.md`, `table.csv`
//! (mean and standard deviation over seeds per point) and `curves.png` (`curves.rs`).
//!
//! The ablation folder holds `ablate.json` (what was asked: an ablation is resumed only with
//! the same one, though with more or fewer seeds), `results.jsonl` (a line per finished and evaluated run, appended as each
//! ends: what a resumed ablation skips), `random-init/seed-S/` and `pNN-KEY=VALUE,.../seed-S/`.
//! A run interrupted midway continues from its newest checkpoint. An ablation can be written
//! down as a file (`ablate_file.rs`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{DriveOptions, Progress, drive, evaluate_folder};
use crate::config::{Preset, SimConfig, TrainConfig, Workload, merge_tables, set_key};
use crate::session::{self, Parts, RunWriter, read_metrics};

/// What goes wrong with an ablation as a whole (a run that fails is a result, not this).
#[derive(Debug, thiserror::Error)]
pub enum AblateError {
    #[error("--grid {spec}: {reason}")]
    Grid { spec: String, reason: String },
    #[error("the base config: {0}")]
    Base(String),
    #[error("{}: {reason}", path.display())]
    Folder { path: PathBuf, reason: String },
}

/// One `--grid KEY=V1,V2,...`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

impl Axis {
    /// Parses `KEY=V1,V2,...`; commas inside brackets, braces or quotes belong to a value.
    ///
    /// # Errors
    /// No `=`, an empty key or value, a repeated value.
    pub fn parse(spec: &str) -> Result<Self, AblateError> {
        let err = |reason: &str| AblateError::Grid {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (key, values) = spec.split_once('=').ok_or_else(|| {
            err("write it as KEY=V1,V2,..., e.g. dynamics.brownian.weight=0,0.1,1")
        })?;
        let key = key.trim().to_owned();
        if key.is_empty() {
            return Err(err("the key is empty"));
        }
        if key == "seed" {
            return Err(err(
                "seeds come from --seeds N (0 to N-1 added to the config's seed)",
            ));
        }
        let values = split_values(values);
        if values.iter().any(String::is_empty) {
            return Err(err("an empty value (two commas in a row?)"));
        }
        for (i, value) in values.iter().enumerate() {
            if values[..i].contains(value) {
                return Err(err(&format!("the value {value} is given twice")));
            }
        }
        Ok(Self { key, values })
    }
}

/// A grid value as tables and folder names show it: a TOML string without its quotes.
pub fn shown(value: &str) -> &str {
    let trimmed = value.trim();
    trimmed
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(trimmed)
}

/// `text` split at the commas outside brackets, braces and quotes, each part trimmed.
fn split_values(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut current) = (0i32, None::<char>, String::new());
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current.trim().to_owned());
    parts
}

/// Everything an ablation is made of; kept in `ablate.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AblateSpec {
    /// Sandbox runs (`simulate`'s) instead of image runs (`train`'s).
    pub sandbox: bool,
    /// The base preset (a grid may vary it with the key `preset`).
    pub preset: String,
    /// The base config file's text (empty: the preset alone), and where it came from.
    pub config: String,
    pub config_source: String,
    /// `--set KEY=VALUE`, laid over the file.
    pub sets: Vec<(String, String)>,
    pub grid: Vec<Axis>,
    /// Seeds 0 to `seeds - 1`, each added to the config's seed.
    pub seeds: u64,
    /// Evaluation: labelled training items for the kNN bank and the probe, probe epochs.
    pub max_train: usize,
    pub probe_epochs: usize,
}

/// One grid point: its values, in the order of the axes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    /// `pNN-key=value,...` (the folder's name), or `random-init`.
    pub name: String,
    pub assignments: Vec<(String, String)>,
}

/// The name of the random-init baseline's point.
pub const BASELINE: &str = "random-init";

/// One run of the ablation.
#[derive(Clone, Debug)]
pub struct Job {
    /// Index into [`Plan::points`].
    pub point: usize,
    pub seed: u64,
    /// Relative to the ablation's folder.
    pub dir: PathBuf,
    pub workload: Workload,
    /// The baseline: its encoder saved at step 0, untrained.
    pub untrained: bool,
}

/// The points (the baseline first) and the runs, in the order they run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub points: Vec<Point>,
    pub jobs: Vec<Job>,
}

/// What one finished run measured (a line of `results.jsonl`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub point: String,
    pub seed: u64,
    pub dir: PathBuf,
    pub steps: u64,
    /// Seconds of this process's training and evaluation (a resumed run: the part after it).
    pub secs: f64,
    pub knn_acc: f64,
    pub linear_probe_acc: f64,
    /// The effective rank and the collapse level at the last evaluated step (`None`: never
    /// evaluated).
    pub effective_rank: Option<f64>,
    #[serde(default)]
    pub collapse_level: Option<f64>,
}

/// What the ablation tells its caller as it goes (the progress line).
#[derive(Clone, Debug)]
pub enum Event {
    /// Run `job` of `jobs` starts (or continues) at `step` of `total` steps.
    Started {
        job: usize,
        jobs: usize,
        point: String,
        seed: u64,
        step: u64,
        total: u64,
    },
    Step {
        job: usize,
        step: u64,
    },
    /// Run `job` ended with its result, or the reason it failed.
    Finished {
        job: usize,
        outcome: Result<RunResult, String>,
    },
    /// Runs done already (resumed): skipped.
    Skipped {
        runs: usize,
    },
}

impl AblateSpec {
    /// The config of a run: the preset (the point's own when it sets `preset`), the file, the
    /// sets, the point's values, and the seed added to the config's.
    fn workload(&self, assignments: &[(String, String)], seed: u64) -> Result<Workload, String> {
        let preset_name = assignments
            .iter()
            .find(|(key, _)| key == "preset")
            .map_or(self.preset.as_str(), |(_, value)| value.trim_matches('"'));
        let preset = Preset::from_name(preset_name).map_err(|e| e.to_string())?;
        let base = if self.sandbox {
            preset.config().to_toml()
        } else {
            TrainConfig::from_preset(preset).to_toml()
        }
        .map_err(|e| e.to_string())?;
        let base: toml::Table = toml::from_str(&base).map_err(|e| e.to_string())?;
        let mut file: toml::Table = toml::from_str(&self.config)
            .map_err(|e| format!("{}: {}", self.config_source, e.message()))?;
        let mut over = toml::Table::new();
        for (key, value) in self
            .sets
            .iter()
            .chain(assignments.iter().filter(|(key, _)| key != "preset"))
        {
            set_key(&mut over, key, value)?;
        }
        if !self.sandbox {
            crate::config::measure_in_epochs(&mut file);
            crate::config::measure_in_epochs(&mut over);
        }
        let merged = toml::Value::Table(merge_tables(merge_tables(base, file), over));
        let mut workload = if self.sandbox {
            Workload::Sandbox(
                merged
                    .try_into::<SimConfig>()
                    .map_err(|e| e.message().to_owned())?,
            )
        } else {
            Workload::Images(
                merged
                    .try_into::<TrainConfig>()
                    .map_err(|e| e.message().to_owned())?,
            )
        };
        let base_seed = workload.settings().seed();
        match &mut workload {
            Workload::Sandbox(config) => {
                config.seed = base_seed + seed;
                config.validate().map_err(|e| e.to_string())?;
            }
            Workload::Images(config) => {
                config.seed = base_seed + seed;
                config.validate().map_err(|e| e.to_string())?;
            }
        }
        Ok(workload)
    }

    /// Every run, each config checked first: a bad grid key or value is an error naming its
    /// `--grid` before anything runs.
    ///
    /// # Errors
    /// The base config or a grid value that does not make a valid config.
    pub fn plan(&self) -> Result<Plan, AblateError> {
        self.workload(&[], 0).map_err(AblateError::Base)?;
        for axis in &self.grid {
            for value in &axis.values {
                self.workload(&[(axis.key.clone(), value.clone())], 0)
                    .map_err(|reason| AblateError::Grid {
                        spec: format!("{}={}", axis.key, axis.values.join(",")),
                        reason: format!("{}={value}: {reason}", axis.key),
                    })?;
            }
        }
        let mut points = vec![Point {
            name: BASELINE.to_owned(),
            assignments: Vec::new(),
        }];
        let mut product: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for axis in &self.grid {
            product = product
                .into_iter()
                .flat_map(|prefix| {
                    axis.values.iter().map(move |value| {
                        let mut point = prefix.clone();
                        point.push((axis.key.clone(), value.clone()));
                        point
                    })
                })
                .collect();
        }
        if self.grid.is_empty() {
            product.clear();
        }
        for (i, assignments) in product.into_iter().enumerate() {
            let described: Vec<String> = assignments
                .iter()
                .map(|(key, value)| format!("{key}={}", shown(value)))
                .collect();
            let name: String = format!("p{:02}-{}", i + 1, described.join(","))
                .chars()
                .filter(|c| !c.is_whitespace() && !"{}[]\"'".contains(*c))
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._=-,".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            points.push(Point { name, assignments });
        }
        let mut jobs = Vec::new();
        for (index, point) in points.iter().enumerate() {
            for seed in 0..self.seeds {
                let workload = self.workload(&point.assignments, seed).map_err(|reason| {
                    AblateError::Grid {
                        spec: point.name.clone(),
                        reason,
                    }
                })?;
                jobs.push(Job {
                    point: index,
                    seed,
                    dir: Path::new(&point.name).join(format!("seed-{seed}")),
                    workload,
                    untrained: index == 0,
                });
            }
        }
        Ok(Plan { points, jobs })
    }
}

fn folder_err(path: &Path, reason: impl std::fmt::Display) -> AblateError {
    AblateError::Folder {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Creates `out` with `spec` in `ablate.json`, or checks that the one there is the same.
fn claim(out: &Path, spec: &AblateSpec) -> Result<(), AblateError> {
    std::fs::create_dir_all(out).map_err(|e| folder_err(out, e))?;
    let path = out.join("ablate.json");
    let text = serde_json::to_string_pretty(spec).map_err(|e| folder_err(&path, e))?;
    match std::fs::read_to_string(&path) {
        Ok(existing) => {
            // The same ablation, perhaps with more or fewer seeds: the runs there still are.
            let same = serde_json::from_str::<AblateSpec>(&existing).is_ok_and(|old| {
                AblateSpec {
                    seeds: spec.seeds,
                    ..old
                } == *spec
            });
            if !same {
                return Err(folder_err(
                    &path,
                    "this folder holds a different ablation (another grid, preset, config, \
                     --set or evaluation); give another --out, or remove the folder to start \
                     afresh",
                ));
            }
            session::write_atomic(&path, text.as_bytes()).map_err(|e| folder_err(&path, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            session::write_atomic(&path, text.as_bytes()).map_err(|e| folder_err(&path, e))
        }
        Err(e) => Err(folder_err(&path, e)),
    }
}

/// The results in `results.jsonl` (a torn last line, from an interruption, is dropped).
pub fn read_results(out: &Path) -> Vec<RunResult> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn append_result(out: &Path, result: &RunResult) -> Result<(), AblateError> {
    use std::io::Write as _;
    let path = out.join("results.jsonl");
    let line = serde_json::to_string(result).map_err(|e| folder_err(&path, e))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| folder_err(&path, e))?;
    file.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| folder_err(&path, e))
}

/// Trains (or continues) one run into `out/job.dir` and evaluates it.
fn run_job(
    out: &Path,
    job: &Job,
    point: &str,
    spec: &AblateSpec,
    device: &Device,
    on_step: &dyn Fn(u64, u64),
) -> Result<RunResult, String> {
    let start = Instant::now();
    let dir = out.join(&job.dir);
    let text = |e: &dyn std::fmt::Display| e.to_string();
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| text(&e))?;
    }
    let resumed = if dir.exists() {
        RunWriter::open_for_writing(&dir).ok().and_then(|folder| {
            let (run, _) = folder.reopen(device, Parts::All).ok()?;
            folder.keep_metrics_through(run.steps_done()).ok()?;
            Some((run, folder))
        })
    } else {
        None
    };
    let (mut run, folder) = if let Some(resumed) = resumed {
        resumed
    } else {
        let folder = RunWriter::create(&dir, true).map_err(|e| text(&e))?;
        let run = session::open(&job.workload, device).map_err(|e| text(&e))?;
        (run, folder)
    };
    let options = DriveOptions {
        stop_after: job.untrained.then_some(0),
    };
    let total = if job.untrained { 0 } else { run.total_steps() };
    on_step(run.steps_done(), total);
    let fresh = run.steps_done() == 0 && !dir.join("checkpoints").exists();
    if run.steps_done() < total || job.untrained && fresh {
        drive(run.as_mut(), &folder, options, |p: &Progress| {
            on_step(p.step, total);
        })
        .map_err(|e| text(&e))?;
    }
    let steps = run.steps_done();
    drop(run);
    drop(folder);
    let report = evaluate_folder(&dir, device, spec.max_train, spec.probe_epochs)
        .map_err(|e| format!("evaluating {}: {e}", dir.display()))?;
    let last = read_metrics(&dir.join("metrics.jsonl"))
        .ok()
        .and_then(|records| {
            records
                .into_iter()
                .rev()
                .find(|r| r.effective_rank.is_finite())
        });
    Ok(RunResult {
        point: point.to_owned(),
        seed: job.seed,
        dir: job.dir.clone(),
        steps,
        secs: start.elapsed().as_secs_f64(),
        knn_acc: report.knn_acc,
        linear_probe_acc: report.linear_probe_acc,
        effective_rank: last.as_ref().map(|r| r.effective_rank),
        collapse_level: last
            .as_ref()
            .map(|r| r.collapse_level)
            .filter(|c| c.is_finite()),
    })
}

/// What an ablation left: every result (earlier ones included) and the runs that failed.
#[derive(Clone, Debug)]
pub struct Summary {
    pub plan: Plan,
    pub results: Vec<RunResult>,
    pub failed: Vec<(PathBuf, String)>,
    pub files: Vec<PathBuf>,
}

/// Runs every run of `spec` not finished in `out` yet, `jobs` at a time, then writes the
/// tables and the curves over all of them. A run that fails (a NaN loss, say) is reported in
/// [`Summary::failed`] and tried again by the next call.
///
/// # Errors
/// A bad grid or base config (before anything runs), an `out` that holds another ablation,
/// a results or table file that cannot be written.
pub fn run_ablation(
    spec: &AblateSpec,
    out: &Path,
    device: &Device,
    jobs: usize,
    on_event: &(dyn Fn(&Event) + Sync),
) -> Result<Summary, AblateError> {
    let plan = spec.plan()?;
    claim(out, spec)?;
    let done = read_results(out);
    let pending: Vec<usize> = (0..plan.jobs.len())
        .filter(|&i| !done.iter().any(|r| r.dir == plan.jobs[i].dir))
        .collect();
    if pending.len() < plan.jobs.len() {
        on_event(&Event::Skipped {
            runs: plan.jobs.len() - pending.len(),
        });
    }
    let results = Mutex::new(done);
    let failed = Mutex::new(Vec::new());
    let written = Mutex::new(Ok(()));
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, pending.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let Some(&index) = pending.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let job = &plan.jobs[index];
                    let point = &plan.points[job.point].name;
                    let started = std::cell::Cell::new(false);
                    let outcome = run_job(out, job, point, spec, device, &|step, total| {
                        if started.get() {
                            on_event(&Event::Step { job: index, step });
                        } else {
                            started.set(true);
                            on_event(&Event::Started {
                                job: index,
                                jobs: plan.jobs.len(),
                                point: point.clone(),
                                seed: job.seed,
                                step,
                                total,
                            });
                        }
                    });
                    if let Ok(result) = &outcome {
                        let mut all = results
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if let Err(err) = append_result(out, result) {
                            *written
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) = Err(err);
                        }
                        all.push(result.clone());
                    } else if let Err(reason) = &outcome {
                        failed
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((job.dir.clone(), reason.clone()));
                    }
                    on_event(&Event::Finished {
                        job: index,
                        outcome,
                    });
                }
            });
        }
    });
    written
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)?;
    // The plan's runs only (an ablation asked again with fewer seeds has more results).
    let results: Vec<RunResult> = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .filter(|r| plan.jobs.iter().any(|job| job.dir == r.dir))
        .collect();
    let files = super::ablate_table::write_outputs(out, spec, &plan, &results)?;
    Ok(Summary {
        plan,
        results,
        failed: failed
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(grid: &[&str]) -> AblateSpec {
        AblateSpec {
            sandbox: true,
            preset: "msbreg".to_owned(),
            config: String::new(),
            config_source: "(none)".to_owned(),
            sets: vec![("steps".to_owned(), "10".to_owned())],
            grid: grid
                .iter()
                .map(|g| Axis::parse(g).expect("parses"))
                .collect(),
            seeds: 2,
            max_train: 100,
            probe_epochs: 2,
        }
    }

    #[test]
    fn a_grid_spec_splits_at_top_level_commas_only() {
        let axis = Axis::parse("dynamics.brownian = [1, 2], {on = true, weight = 0.5} ,'a,b'")
            .expect("parses");
        assert_eq!(axis.key, "dynamics.brownian");
        assert_eq!(
            axis.values,
            vec!["[1, 2]", "{on = true, weight = 0.5}", "'a,b'"]
        );
        for bad in ["nokey", "=1,2", "x=1,,2", "x=1,1", "seed=1,2"] {
            assert!(Axis::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_plan_is_the_product_of_the_axes_times_the_seeds_with_the_baseline_first() {
        let plan = spec(&["dynamics.brownian.weight=0,0.5", "views.count=2,4,8"])
            .plan()
            .expect("plans");
        assert_eq!(plan.points.len(), 1 + 6);
        assert_eq!(plan.jobs.len(), 7 * 2);
        assert_eq!(plan.points[0].name, BASELINE);
        assert_eq!(
            plan.points[1].name,
            "p01-dynamics.brownian.weight=0,views.count=2"
        );
        assert_eq!(
            plan.points[6].name,
            "p06-dynamics.brownian.weight=0.5,views.count=8"
        );
        let Workload::Sandbox(config) = &plan.jobs[13].workload else {
            panic!("sandbox");
        };
        assert_eq!(config.views.count, 8);
        assert_eq!(config.dynamics.brownian.weight, 0.5);
        assert_eq!(config.seed, 1, "seed 1 added to the config's 0");
        assert_eq!(config.steps, 10, "the --set stays");
        assert!(plan.jobs[0].untrained && !plan.jobs[2].untrained);
        // The preset as a grid key.
        let plan = spec(&["preset=byol,simsiam"]).plan().expect("plans");
        let Workload::Sandbox(config) = &plan.jobs[2].workload else {
            panic!("sandbox");
        };
        assert!(config.dynamics.ema && config.views.count == 2, "byol's");
    }

    #[test]
    fn bad_grid_keys_and_values_are_named() {
        for (grid, words) in [
            (
                "dynamics.brownain.weight=0,1",
                &["dynamics.brownain.weight", "brownain"][..],
            ),
            ("views.count=2,99", &["views.count=99", "2 to 8"][..]),
            ("preset=msbreg,vicreg-x", &["preset=vicreg-x"][..]),
        ] {
            let err = spec(&[grid]).plan().expect_err(grid).to_string();
            for word in words {
                assert!(err.contains(word), "{grid}: {err}");
            }
            assert!(err.starts_with("--grid "), "{err}");
        }
    }
}
