//! What the app shows: the trainer's run, a folder opened to watch, or a comparison, and the
//! frame, run facts and history the view and plots draw from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compare::Compare;
use super::opened::Opened;
use super::{History, MsbregApp};
use crate::projection::Frame;
use crate::trainer::{Command, RunInfo};

impl MsbregApp {
    /// Shows the run folder `dir` (its recording and metrics, followed while written)
    /// instead of the trainer's run; the trainer pauses.
    pub fn open_folder(&mut self, dir: &Path) {
        match Opened::open(dir, u64::MAX - self.notes.len() as u64) {
            Ok(opened) => {
                if self.latest.as_ref().is_some_and(|s| s.running) {
                    self.send(Command::Pause);
                }
                self.timeline.follow(Some(dir));
                self.camera.reset();
                self.opened = Some(opened);
            }
            Err(err) => self.error = Some(format!("cannot open {}: {err}", dir.display())),
        }
    }

    /// Compares the run folders `dirs` (2 to 4) side by side.
    pub fn compare_runs(&mut self, dirs: &[PathBuf]) {
        match Compare::open(dirs) {
            Ok(compare) => {
                self.camera.reset();
                self.compare = Some(compare);
            }
            Err(err) => self.error = Some(err),
        }
    }

    /// Back from an opened folder to the trainer's run.
    pub fn close_folder(&mut self) {
        self.opened = None;
        let folder = self.latest.as_ref().and_then(|s| s.folder.clone());
        self.timeline.follow(folder.as_deref());
        self.camera.reset();
    }

    /// The opened folder, if one is shown.
    pub fn opened(&self) -> Option<&Opened> {
        self.opened.as_ref()
    }

    /// What the view and the plots show: the opened folder's run, or the trainer's.
    pub fn shown_info(&self) -> Option<Arc<RunInfo>> {
        match &self.opened {
            Some(opened) => Some(Arc::clone(&opened.info)),
            None => self.info.clone(),
        }
    }

    /// The frame the view draws: the one under the timeline's cursor, else the newest (the
    /// trainer's live frame, or an opened recording's last).
    pub fn shown_frame(&mut self) -> Option<Arc<Frame>> {
        if let Some(recorded) = self.timeline.shown() {
            return Some(Arc::clone(&recorded.frame));
        }
        if self.opened.is_some() {
            return self.timeline.head_frame();
        }
        self.latest.as_ref().and_then(|s| s.frame.clone())
    }

    /// The history the plots show.
    pub fn shown_history(&self) -> &History {
        self.opened.as_ref().map_or(&self.history, |o| &o.history)
    }
}
