//! Judging what a run learned: kNN (k = 20, T = 0.07) and linear-probe top-1 accuracy of the
//! encoder's features, and the export of features for the TensorBoard Embedding Projector.
//!
//! Both open the run folder read-only ([`RunFolder::reopen`]): its newest checkpoint is
//! loaded into memory and nothing in the folder changes, except the export files written
//! where the user asked.

use std::fmt::Write as _;
use std::path::Path;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;

use super::HeadlessError;
use crate::diagnostics::knn_accuracy;
use crate::model::seeded_init;
use crate::seed::{Stream, rng};
use crate::session::{Parts, RunFolder, write_atomic};

/// Mini-batch size of the linear probe.
const PROBE_BATCH: usize = 256;

/// Top-1 accuracy of a linear classifier trained on frozen, standardised features.
///
/// AdamW (lr 1e-3, no weight decay), mini-batches of 256, `epochs` passes, seeded.
///
/// # Errors
/// Empty or misshapen inputs, or predictions that cannot be read back from the device.
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
) -> Result<f64, HeadlessError> {
    let fail = |reason: String| HeadlessError::Evaluate {
        what: "the linear probe".to_owned(),
        reason,
    };
    let n = train_labels.len();
    if dim == 0 || n == 0 || test_labels.is_empty() {
        return Err(fail(format!(
            "nothing to fit or test: {n} training rows, {} test rows, {dim} features",
            test_labels.len()
        )));
    }
    if train.len() != n * dim || test.len() != test_labels.len() * dim {
        return Err(fail(format!(
            "features and labels disagree: {} training values for {n} labels x {dim}, {} test \
             values for {} labels",
            train.len(),
            test.len(),
            test_labels.len()
        )));
    }
    let device = Device::flex().autodiff();
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
        .map_err(|err| fail(format!("could not read the predictions back: {err:?}")))?;
    let correct = predicted
        .iter()
        .zip(test_labels)
        .filter(|(p, l)| **p == i64::from(**l))
        .count();
    Ok(correct as f64 / test_labels.len() as f64)
}

/// The accuracies `msbreg eval` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    pub step: u64,
    pub bank: usize,
    pub queries: usize,
    pub knn_k: usize,
    pub knn_temperature: f64,
    pub knn_acc: f64,
    pub linear_probe_acc: f64,
    /// What the user should know (an older checkpoint taken, a held-out test split).
    pub notes: Vec<String>,
}

/// kNN and linear probe of the encoder at the newest checkpoint of the run in `dir`: the
/// labelled training split (at most `max_train` items) is the bank and the probe's training
/// set, the test split is queried. Reads only.
pub fn evaluate_folder(
    dir: &Path,
    device: &Device,
    max_train: usize,
    probe_epochs: usize,
) -> Result<EvalReport, HeadlessError> {
    let folder = RunFolder::open(dir)?;
    let (run, mut notes) = folder.reopen(device, Parts::Weights)?;
    notes.extend(run.notes().iter().cloned());
    let features = run.labelled_features(max_train)?;
    let knn = run.knn();
    let knn_acc = knn_accuracy(
        &features.bank,
        &features.bank_labels,
        &features.queries,
        &features.query_labels,
        features.dim,
        knn.k,
        knn.temperature,
    );
    let linear_probe_acc = linear_probe(
        &features.bank,
        &features.bank_labels,
        &features.queries,
        &features.query_labels,
        features.dim,
        features.class_names.len().max(1),
        probe_epochs,
        run.settings().seed(),
    )?;
    Ok(EvalReport {
        step: run.steps_done(),
        bank: features.bank_labels.len(),
        queries: features.query_labels.len(),
        knn_k: knn.k,
        knn_temperature: knn.temperature,
        knn_acc,
        linear_probe_acc,
        notes,
    })
}

/// Writes `vectors.tsv` (encoder features of at most `limit` held-out items, one row each) and
/// `metadata.tsv` (a header, then label and class name) into `out`, for the TensorBoard
/// Embedding Projector. Reads the run in `dir` only. Returns the rows written and notes.
pub fn export_folder(
    dir: &Path,
    device: &Device,
    limit: usize,
    out: &Path,
) -> Result<(usize, Vec<String>), HeadlessError> {
    let folder = RunFolder::open(dir)?;
    let (run, mut notes) = folder.reopen(device, Parts::Weights)?;
    notes.extend(run.notes().iter().cloned());
    let features = run.labelled_features(0)?;
    let rows = features.query_labels.len().min(limit);
    let dim = features.dim.max(1);
    let mut vectors = String::new();
    for row in features.queries.chunks(dim).take(rows) {
        let line: Vec<String> = row.iter().map(|x| format!("{x:.6}")).collect();
        vectors.push_str(&line.join("\t"));
        vectors.push('\n');
    }
    let mut metadata = String::from("label\tclass\n");
    for &label in features.query_labels.iter().take(rows) {
        let name = features
            .class_names
            .get(label as usize)
            .map_or("", String::as_str);
        let _ = writeln!(metadata, "{label}\t{name}");
    }
    write_atomic(&out.join("vectors.tsv"), vectors.as_bytes())?;
    write_atomic(&out.join("metadata.tsv"), metadata.as_bytes())?;
    Ok((rows, notes))
}
