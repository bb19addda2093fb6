//! Judging what a run learned: kNN (k = 20, T = 0.07) and linear-probe top-1 accuracy of the
//! encoder's features, and the export of embeddings for the TensorBoard Embedding Projector.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;

use super::train::{ImageRun, TrainError};
use crate::data::images::{Dataset, ImageSet};
use crate::data::{Stream, rng};
use crate::diagnostics::knn_accuracy;
use crate::method::StepError;
use crate::model::seeded_init;

/// Features `[n, F]` of every image of `set` (plain views), row-major.
pub fn features(run: &ImageRun, set: &ImageSet) -> Result<(Vec<f32>, usize), StepError> {
    let rows = run.embed_features(set)?;
    let dim = rows.len() / set.len().max(1);
    Ok((rows, dim))
}

/// Mini-batch size of the linear probe.
const PROBE_BATCH: usize = 256;

/// Top-1 accuracy of a linear classifier trained on frozen, standardised features.
///
/// AdamW (lr 1e-3, no weight decay), mini-batches of 256, `epochs` passes, seeded.
#[allow(clippy::too_many_arguments)] // the two splits and the settings
pub fn linear_probe(
    train: &[f32],
    train_labels: &[u32],
    test: &[f32],
    test_labels: &[u32],
    dim: usize,
    classes: usize,
    epochs: usize,
    seed: u64,
) -> f64 {
    let device = Device::flex().autodiff();
    let n = train_labels.len();
    // Standardise with the training statistics.
    let mut mean = vec![0.0f32; dim];
    let mut var = vec![0.0f32; dim];
    for row in train.chunks(dim) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x / n as f32;
        }
    }
    for row in train.chunks(dim) {
        for ((v, x), m) in var.iter_mut().zip(row).zip(&mean) {
            *v += (x - m) * (x - m) / n as f32;
        }
    }
    let scale: Vec<f32> = var.iter().map(|v| 1.0 / v.sqrt().max(1e-6)).collect();
    let standardise = |rows: &[f32]| -> Vec<f32> {
        rows.chunks(dim)
            .flat_map(|row| {
                row.iter()
                    .zip(&mean)
                    .zip(&scale)
                    .map(|((x, m), s)| (x - m) * s)
            })
            .collect()
    };
    let train = standardise(train);
    let test = standardise(test);

    let mut model: Linear = seeded_init(
        LinearConfig::new(dim, classes).init(&device),
        &mut rng(seed, Stream::Weights),
    );
    let mut optimizer = AdamWConfig::new().with_weight_decay(0.0).build().into();
    let optimizer: &mut burn::optim::ModuleOptimizer = &mut optimizer;
    let mut order: Vec<usize> = (0..n).collect();
    let mut shuffle = rng(seed, Stream::Batches);
    for _ in 0..epochs {
        order.shuffle(&mut shuffle);
        for chunk in order.chunks(PROBE_BATCH) {
            let x: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| train[i * dim..(i + 1) * dim].iter().copied())
                .collect();
            let y: Vec<i64> = chunk.iter().map(|&i| i64::from(train_labels[i])).collect();
            let x = Tensor::<2>::from_data(TensorData::new(x, [chunk.len(), dim]), &device);
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [chunk.len()]), &device);
            let logits = model.forward(x);
            let loss = burn::nn::loss::CrossEntropyLossConfig::new()
                .init(&device)
                .forward(logits, y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-3, model.clone(), grads);
        }
    }
    let plain = Device::flex();
    let model = model.valid();
    let x = Tensor::<2>::from_data(TensorData::new(test, [test_labels.len(), dim]), &plain);
    let predicted = model
        .forward(x)
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap_or_default();
    let correct = predicted
        .iter()
        .zip(test_labels)
        .filter(|(p, l)| **p == i64::from(**l))
        .count();
    correct as f64 / test_labels.len().max(1) as f64
}

/// The accuracies `msbreg eval` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    pub step: u64,
    pub bank: usize,
    pub queries: usize,
    pub knn_acc: f64,
    pub linear_probe_acc: f64,
}

/// kNN and linear probe of the run's encoder: the labelled training split (at most
/// `max_train` images) is the bank and the probe's training set, the test split is queried.
pub fn evaluate_run(
    run: &ImageRun,
    max_train: usize,
    probe_epochs: usize,
) -> Result<Evaluation, TrainError> {
    let splits = run.config().data.load(run.config().seed)?;
    let setup = |reason: &str| TrainError::Setup {
        what: format!("evaluating on {}", run.config().data.describe()),
        reason: reason.to_owned(),
    };
    let train = if splits.train.labels.is_some() {
        &splits.train
    } else {
        return Err(setup("the training split has no labels"));
    };
    let Some(test) = splits.test.as_ref().filter(|t| t.labels.is_some()) else {
        return Err(setup("there is no labelled test split"));
    };
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rng(run.config().seed, Stream::EvalViews));
    order.truncate(max_train.min(train.len()));
    let train = train.subset(&order);
    let step_err = |reason| TrainError::Step {
        step: run.steps_done(),
        reason,
        out: std::path::PathBuf::new(),
    };
    let (bank, dim) = features(run, &train).map_err(step_err)?;
    let (queries, _) = features(run, test).map_err(step_err)?;
    let train_labels = train.labels.clone().unwrap_or_default();
    let test_labels = test.labels.clone().unwrap_or_default();
    let knn = run.config().eval.knn;
    let knn_acc = knn_accuracy(
        &bank,
        &train_labels,
        &queries,
        &test_labels,
        dim,
        knn.k,
        knn.temperature,
    );
    let classes = train.class_names.len().max(1);
    let linear_probe_acc = linear_probe(
        &bank,
        &train_labels,
        &queries,
        &test_labels,
        dim,
        classes,
        probe_epochs,
        run.config().seed,
    );
    Ok(Evaluation {
        step: run.steps_done(),
        bank: train_labels.len(),
        queries: test_labels.len(),
        knn_acc,
        linear_probe_acc,
    })
}

/// Writes `vectors.tsv` (encoder features, one row per image) and `metadata.tsv` (a header,
/// then label and class name) for the TensorBoard Embedding Projector.
pub fn export(run: &ImageRun, set: &ImageSet, out: &Path) -> Result<usize, TrainError> {
    use std::fmt::Write as _;
    let write_err = |path: &Path, e: std::io::Error| TrainError::Write {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let (rows, dim) = features(run, set).map_err(|reason| TrainError::Step {
        step: run.steps_done(),
        reason,
        out: out.to_owned(),
    })?;
    let mut vectors = String::new();
    for row in rows.chunks(dim.max(1)) {
        let line: Vec<String> = row.iter().map(|x| format!("{x:.6}")).collect();
        vectors.push_str(&line.join("\t"));
        vectors.push('\n');
    }
    let vectors_path = out.join("vectors.tsv");
    std::fs::write(&vectors_path, vectors).map_err(|e| write_err(&vectors_path, e))?;
    let mut metadata = String::from("label\tclass\n");
    for index in 0..set.len() {
        match set.label(index) {
            Some(label) => {
                let name = set
                    .class_names
                    .get(label as usize)
                    .map_or("", String::as_str);
                let _ = writeln!(metadata, "{label}\t{name}");
            }
            None => metadata.push_str("\t\n"),
        }
    }
    let metadata_path = out.join("metadata.tsv");
    std::fs::write(&metadata_path, metadata).map_err(|e| write_err(&metadata_path, e))?;
    Ok(set.len())
}
