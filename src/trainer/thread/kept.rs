//! The trainer's side of kept runs: the run folder of the run on screen (opened at its first
//! step, flushed on pause and when the run changes), its frames and metrics, its events, and
//! Branch.

use std::time::Instant;

use super::TrainerState;
use crate::config::validate_dynamics;
use crate::diagnostics;
use crate::session;
use crate::session::catalog::Origin;
use crate::session::{MetricsRecord, SessionError};
use crate::trainer::BranchRequest;
use crate::trainer::folder::AppFolder;
use crate::trainer::messages::{DisplayDiagnostics, Frame};

impl TrainerState<'_> {
    /// Writes what the open run folder has pending and lets it go (its lock with it).
    pub(super) fn close_folder(&mut self) {
        // The next run's recording starts within its budget, at full precision.
        self.framer.set_level(0);
        if let Some(mut folder) = self.folder.take()
            && let Err(err) = folder.flush()
        {
            self.error = Some(err.to_string());
        }
    }

    /// Opens the run folder of the run on screen (at its first step), recording the frame on
    /// screen first. On failure the run pauses with the reason.
    pub(super) fn open_folder(&mut self) -> bool {
        if self.folder.is_some() {
            return true;
        }
        let (Some(runs), Some(run)) = (&self.runs, &self.run) else {
            return true;
        };
        let (kind, text) = if self.origin.parent.is_some() {
            ("branch", self.origin_text.clone())
        } else {
            ("start", format!("started: {}", run.settings().describe()))
        };
        let opened =
            AppFolder::create(runs, &**run, &self.origin).and_then(|(mut folder, notes)| {
                if let (Some(frame), Some(rows)) = (&self.frame, &self.last_rows) {
                    folder.record(frame, rows, &**run)?;
                }
                folder.event(&**run, kind, text)?;
                folder.checkpoint(&**run)?;
                Ok((folder, notes))
            });
        match opened {
            Ok((folder, notes)) => {
                self.notes.extend(notes);
                self.folder = Some(folder);
                self.last_checkpoint = Some(Instant::now());
                true
            }
            Err(err) => {
                self.running = false;
                self.error = Some(format!(
                    "cannot keep this run on disk ({err}); it is paused: free some space or \
                     start the app with another --runs-dir, then press Run"
                ));
                false
            }
        }
    }

    /// Appends an event to the run folder (when it is open).
    pub(super) fn event(&mut self, kind: &str, text: String) {
        let (Some(folder), Some(run)) = (&mut self.folder, &self.run) else {
            return;
        };
        if let Err(err) = folder.event(&**run, kind, text) {
            self.error = Some(err.to_string());
        }
    }

    /// Branches (see [`super::BranchRequest`]): the parent's run replayed to the step, the
    /// new settings applied, kept in a new folder once it steps. On failure the run on screen
    /// stays, with the reason.
    pub(super) fn branch(&mut self, request: &BranchRequest) {
        // The parent may be the run on screen: what it has pending goes to disk first (its
        // folder stays open: on failure that run goes on in it).
        if let Some(folder) = &mut self.folder
            && let Err(err) = folder.flush()
        {
            self.error = Some(err.to_string());
        }
        let checked = validate_dynamics(&request.dynamics)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                if request.learning_rate.is_finite() && request.learning_rate > 0.0 {
                    Ok(())
                } else {
                    Err(format!(
                        "learning rate {} is not positive",
                        request.learning_rate
                    ))
                }
            });
        let replayed = checked.and_then(|()| {
            session::replay_to(&request.parent, request.step, &self.backend.device)
                .map_err(|e| e.to_string())
        });
        match replayed {
            Ok((mut run, replayed)) => {
                self.close_folder();
                let change = request.dynamics.describe_change(&run.settings().dynamics());
                run.settings_mut().set_dynamics(request.dynamics);
                run.settings_mut().set_learning_rate(request.learning_rate);
                let workload = run.workload();
                self.running = false;
                self.install(run, workload);
                self.origin = Origin {
                    made_by: "app".to_owned(),
                    parent: Some(request.parent.clone()),
                    parent_step: Some(request.step),
                };
                self.origin_text = format!(
                    "branched from {} at step {} ({replayed} steps replayed){}",
                    request.parent.display(),
                    request.step,
                    if change.is_empty() {
                        String::new()
                    } else {
                        format!(": {change}")
                    }
                );
                // The branch is kept from its first frame on, written at once (it starts
                // paused): its timeline shows the fork before it trains a step.
                if self.open_folder() {
                    if let Some(folder) = &mut self.folder
                        && let Err(err) = folder.flush()
                    {
                        self.error = Some(err.to_string());
                    }
                } else {
                    self.running = false;
                }
            }
            Err(err) => {
                self.error = Some(format!(
                    "cannot branch from {} at step {}: {err}",
                    request.parent.display(),
                    request.step
                ));
            }
        }
        self.post();
    }

    /// Writes `frame` (of the core's `rows`) and its metrics line into the run's folder, if
    /// it has one; a failed write pauses the run with the reason.
    pub(super) fn record(
        &mut self,
        frame: &Frame,
        rows: &[Vec<f32>; 3],
        diagnostics: &DisplayDiagnostics,
        knn_acc: Option<f64>,
    ) {
        let step = frame.step;
        let losses = self
            .pending
            .last()
            .filter(|point| point.step == step)
            .and_then(|point| point.losses);
        if let (Some(folder), Some(run)) = (&mut self.folder, &self.run) {
            let mut record = MetricsRecord::new(
                step,
                losses,
                &diagnostics::Diagnostics {
                    effective_rank: diagnostics.effective_rank,
                    uniformity: diagnostics.uniformity,
                    alignment: diagnostics.alignment,
                    collapse_level: diagnostics.collapse_level,
                    knn_acc: knn_acc.unwrap_or(f64::NAN),
                    singular_values: self.spectrum.clone(),
                },
                self.run_started.elapsed().as_secs_f64(),
            );
            record.lr = Some(run.settings().learning_rate());
            record.images_per_sec = Some(self.images_per_sec);
            record.evaluated = Some(knn_acc.is_some());
            let written = folder
                .record(frame, rows, &**run)
                .map_err(SessionError::from)
                .and_then(|()| folder.log(&record));
            self.framer.set_level(folder.precision_level());
            if let Err(err) = written {
                self.running = false;
                self.error = Some(format!(
                    "{err}; the run is paused: free some space, then press Run to go on \
                     recording"
                ));
            }
        }
    }
}
