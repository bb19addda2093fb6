//! Checkpoints: `checkpoints/step-NNNNNNNN/` in a run folder, written whole or not at all.
//!
//! A run writes its parts into `checkpoints/.tmp-step-NNNNNNNN/`, which is then renamed into
//! place, so a crash never leaves a half checkpoint under a real name; the newest `keep` are
//! kept. The learner's parts are the same for every run: `online.bpk` (the online network with
//! its batch-norm statistics), `target.bpk` (the EMA target, when EMA has been on),
//! `optimizer.bpk` (burn's optimiser record, keyed by parameter ids) and `state.json` (the
//! step, and whatever else a run needs to continue exactly, such as the sandbox's random
//! stream positions).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::OptimizerRecord;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use super::{Parts, SessionError, read_err, write_err};
use crate::method::{Learner, OptimizerConfig};
use crate::model::Embedder;

/// `state.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Steps done.
    pub step: u64,
    pub total_steps: u64,
    /// Positions of the sandbox's sequential random streams (batches, Brownian kicks), in
    /// 32-bit words; absent for image runs, whose draws are indexed by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_words: Option<[u128; 2]>,
}

impl CheckpointState {
    pub fn write(&self, dir: &Path) -> Result<(), SessionError> {
        let path = dir.join("state.json");
        let text = serde_json::to_string(self).map_err(|e| write_err(&path, e))?;
        std::fs::write(&path, text).map_err(|e| write_err(&path, e))
    }

    pub fn read(dir: &Path) -> Result<Self, SessionError> {
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
        serde_json::from_str(&text).map_err(|e| read_err(&path, e))
    }
}

/// Writes the learner's parts into `dir`.
pub(super) fn save_learner<E: Embedder>(
    learner: &Learner<E>,
    dir: &Path,
) -> Result<(), SessionError> {
    let online_path = dir.join("online.bpk");
    learner
        .online()
        .clone()
        .save_file(&online_path)
        .map_err(|e| write_err(&online_path, format!("{e:?}")))?;
    if let Some(target) = learner.target() {
        let path = dir.join("target.bpk");
        target
            .clone()
            .save_file(&path)
            .map_err(|e| write_err(&path, format!("{e:?}")))?;
    }
    let optimizer_path = dir.join("optimizer.bpk");
    learner
        .optimizer()
        .to_record()
        .save(&optimizer_path)
        .map_err(|e| write_err(&optimizer_path, format!("{e:?}")))
}

/// Why a record does not load into the network: most often a config.toml edited after the
/// run (another width or depth).
fn mismatch(path: &Path, err: impl std::fmt::Debug) -> SessionError {
    read_err(
        path,
        format!(
            "does not fit the network that config.toml describes (was config.toml edited after \
             the run? the model keys must stay as the checkpoint was written): {err:?}"
        ),
    )
}

/// The learner restored from the parts in `dir`, shaped like `learner`; with
/// [`Parts::Weights`] the optimiser state stays `learner`'s own.
pub(super) fn load_learner<E: Embedder>(
    learner: &Learner<E>,
    optimizer: &OptimizerConfig,
    dir: &Path,
    parts: Parts,
) -> Result<Learner<E>, SessionError> {
    let online_path = dir.join("online.bpk");
    let record =
        ModuleRecord::load(&online_path).map_err(|e| read_err(&online_path, format!("{e:?}")))?;
    let online = learner
        .online()
        .clone()
        .try_load_record(record)
        .map_err(|e| mismatch(&online_path, e))?;
    let target_path = dir.join("target.bpk");
    let target = if target_path.is_file() {
        let record = ModuleRecord::load(&target_path)
            .map_err(|e| read_err(&target_path, format!("{e:?}")))?;
        Some(
            online
                .embedder
                .clone()
                .try_load_record(record)
                .map_err(|e| mismatch(&target_path, e))?
                .no_grad(),
        )
    } else {
        None
    };
    let optimizer = match parts {
        Parts::Weights => optimizer.build(&online),
        Parts::All => {
            let optimizer_path = dir.join("optimizer.bpk");
            let record = OptimizerRecord::load(&optimizer_path)
                .map_err(|e| read_err(&optimizer_path, format!("{e:?}")))?;
            optimizer.build(&online).load_record(record)
        }
    };
    Ok(Learner::from_parts(online, target, optimizer))
}

/// The folder of the checkpoint at `step`.
pub fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step:08}"))
}

/// Writes a checkpoint at `step` with `save` (which fills the folder it is given), atomically,
/// then removes all but the newest `keep`.
pub(super) fn write_checkpoint(
    out: &Path,
    step: u64,
    keep: usize,
    save: impl FnOnce(&Path) -> Result<(), SessionError>,
) -> Result<PathBuf, SessionError> {
    let root = out.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(|e| write_err(&root, e))?;
    let final_dir = checkpoint_dir(out, step);
    let tmp = root.join(format!(".tmp-step-{step:08}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| write_err(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| write_err(&tmp, e))?;
    if let Err(err) = save(&tmp) {
        // A disk that filled up keeps no half-written checkpoint (the ones before stay).
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(err);
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| write_err(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| write_err(&final_dir, e))?;
    for (_, old) in list_checkpoints(out)?.into_iter().rev().skip(keep.max(1)) {
        std::fs::remove_dir_all(&old).map_err(|e| write_err(&old, e))?;
    }
    Ok(final_dir)
}

/// The checkpoints of a run, oldest first: (step, folder).
pub fn list_checkpoints(out: &Path) -> Result<Vec<(u64, PathBuf)>, SessionError> {
    let root = out.join("checkpoints");
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(&root)
        .map_err(|e| read_err(&root, e))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, entry.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}
