//! `events.jsonl`: every change a user made to a run, with the step it took effect at (forces,
//! weights, learning rate, pause, run, branch), one JSON object per line, appended and flushed
//! as it happens. The timeline shows them as marks; a branch lists the parent's events up to
//! its step.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{SessionError, read_err, write_err};

/// The events file's name in a run folder.
pub const EVENTS_FILE: &str = "events.jsonl";

/// One change, as a line of `events.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The step the change acts from (the next step trained is `step + 1`).
    pub step: u64,
    /// Milliseconds since the run started.
    pub millis: u64,
    /// What kind of change: `forces`, `learning_rate`, `pause`, `run`, `branch`, `start`.
    pub kind: String,
    /// The change in words, as the timeline shows it.
    pub text: String,
    /// The forces and learning rate in force from this step on (what a branch replays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamics: Option<crate::method::Dynamics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
}

/// Appends events to a run folder's `events.jsonl`.
#[derive(Debug)]
pub struct EventsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventsWriter {
    pub fn append(dir: &Path) -> Result<Self, SessionError> {
        let path = dir.join(EVENTS_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| write_err(&path, e))?;
        Ok(Self {
            path,
            out: BufWriter::new(file),
        })
    }

    pub fn write(&mut self, event: &Event) -> Result<(), SessionError> {
        let line = serde_json::to_string(event).map_err(|e| write_err(&self.path, e))?;
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| write_err(&self.path, e))
    }
}

/// The events of the run folder `dir`, oldest first; none when it has no `events.jsonl`. A
/// line that does not parse (a torn last line after a crash) is skipped.
pub fn read_events(dir: &Path) -> Result<Vec<Event>, SessionError> {
    let path = dir.join(EVENTS_FILE);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}
