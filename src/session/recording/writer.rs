//! [`RecordingWriter`]: appends chunks; [`Recorder`]: what a driver pushes frames through.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{
    CHUNK_FRAMES, CHUNK_HEADER_LEN, CHUNK_MAGIC, CHUNK_SECS, ChunkBody, FORMAT_VERSION, FrameMeta,
    MAGIC, Recording, RecordingError, RecordingHeader, StoredEmbeddings, encode_coords,
    now_unix_ms, shuffle_f16, zstd_level,
};
use crate::method::Dynamics;
use crate::projection::{Frame, MAX_PRECISION_LEVEL};

/// Appends frames to a recording. See the module docs for when chunks are written.
pub struct RecordingWriter {
    path: PathBuf,
    file: File,
    header: RecordingHeader,
    /// Where the next chunk goes (the end of the last complete one).
    end: u64,
    pending: Vec<(FrameMeta, Vec<i16>)>,
    pending_embeddings: Vec<StoredEmbeddings>,
    chunk_started: Option<Instant>,
    frames_written: u64,
    last_step_written: Option<u64>,
    /// Seconds spent encoding and writing (what `msbreg bench record` reports).
    busy_secs: f64,
}

impl std::fmt::Debug for RecordingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingWriter")
            .field("path", &self.path)
            .field("end", &self.end)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl RecordingWriter {
    /// A new recording at `path` (which must not exist), with `header` written.
    pub fn create(path: &Path, mut header: RecordingHeader) -> Result<Self, RecordingError> {
        if header.started_unix_ms == 0 {
            header.started_unix_ms = now_unix_ms();
        }
        let write_err = |e: std::io::Error| RecordingError::Write {
            path: path.to_owned(),
            reason: e.to_string(),
            kept_through: 0,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(write_err)?;
        let body = postcard::to_allocvec(&header).map_err(|e| RecordingError::Write {
            path: path.to_owned(),
            reason: e.to_string(),
            kept_through: 0,
        })?;
        let mut bytes = Vec::with_capacity(body.len() + 20);
        bytes.extend(MAGIC);
        bytes.extend(FORMAT_VERSION.to_le_bytes());
        bytes.extend((body.len() as u32).to_le_bytes());
        bytes.extend(&body);
        bytes.extend(crc32fast::hash(&body).to_le_bytes());
        file.write_all(&bytes).map_err(write_err)?;
        Ok(Self::with_file(path, file, header, bytes.len() as u64))
    }

    /// Continues the recording at `path` from a run resumed at step `step`: chunks after a
    /// torn end (a killed writer) are cut off, and so are the frames after `step` (the resumed
    /// run records them again). The frames of a chunk that straddles `step` are kept, pending.
    /// A recording of an older format version is rewritten in this one first (frames and
    /// embeddings as they were, through a temporary file renamed over it).
    pub fn resume(path: &Path, step: u64) -> Result<Self, RecordingError> {
        let mut recording = Recording::open_file(path)?;
        if recording.version() < FORMAT_VERSION {
            Self::upgrade(path, &mut recording)?;
            recording = Recording::open_file(path)?;
        }
        let keep = recording
            .chunks
            .iter()
            .take_while(|c| c.last_step <= step)
            .count();
        let straddling =
            if keep < recording.chunks.len() && recording.chunks[keep].first_step <= step {
                Some(recording.chunk(keep)?)
            } else {
                None
            };
        let end = recording
            .chunks
            .get(keep)
            .map_or(recording.end, |c| c.offset);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| RecordingError::Write {
                path: path.to_owned(),
                reason: e.to_string(),
                kept_through: 0,
            })?;
        file.set_len(end).map_err(|e| RecordingError::Write {
            path: path.to_owned(),
            reason: e.to_string(),
            kept_through: 0,
        })?;
        let mut writer = Self::with_file(path, file, recording.header.clone(), end);
        writer.frames_written = recording.chunks[..keep]
            .iter()
            .map(|c| u64::from(c.frames))
            .sum();
        writer.last_step_written = recording.chunks[..keep].last().map(|c| c.last_step);
        if let Some(chunk) = straddling {
            for recorded in chunk.frames.iter().filter(|f| f.frame.step <= step) {
                writer.push(
                    &recorded.frame,
                    recorded.millis,
                    recorded.dynamics,
                    recorded.learning_rate,
                )?;
            }
            for e in chunk.embeddings.iter().filter(|e| e.step <= step) {
                writer.push_embeddings(e.step, e.dim, &e.rows);
            }
        }
        Ok(writer)
    }

    /// Rewrites `recording` (at `path`) in this format version, chunk for chunk.
    fn upgrade(path: &Path, recording: &mut Recording) -> Result<(), RecordingError> {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(".upgrading");
        let temporary = path.with_file_name(name);
        let _ = std::fs::remove_file(&temporary);
        let mut writer = Self::create(&temporary, recording.header().clone())?;
        for index in 0..recording.chunks().len() {
            let chunk = recording.chunk(index)?;
            for e in &chunk.embeddings {
                writer.push_embeddings(e.step, e.dim, &e.rows);
            }
            for recorded in &chunk.frames {
                writer.pending.push((
                    FrameMeta {
                        step: recorded.frame.step,
                        grid_step: recorded.frame.grid_step.max(1),
                        view_step: recorded.frame.view_step.max(1),
                        millis: recorded.millis,
                        dynamics: recorded.dynamics,
                        learning_rate: recorded.learning_rate,
                    },
                    recorded.frame.grid(),
                ));
            }
            writer.flush()?;
        }
        drop(writer);
        std::fs::rename(&temporary, path).map_err(|e| RecordingError::Write {
            path: path.to_owned(),
            reason: format!("rewriting it in format version {FORMAT_VERSION}: {e}"),
            kept_through: 0,
        })
    }

    fn with_file(path: &Path, file: File, header: RecordingHeader, end: u64) -> Self {
        Self {
            path: path.to_owned(),
            file,
            header,
            end,
            pending: Vec::new(),
            pending_embeddings: Vec::new(),
            chunk_started: None,
            frames_written: 0,
            last_step_written: None,
            busy_secs: 0.0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// Frames in complete chunks on disk.
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// Frames waiting for the next chunk.
    pub fn frames_pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.end
    }

    /// Seconds spent encoding and writing so far.
    pub fn busy_secs(&self) -> f64 {
        self.busy_secs
    }

    /// Adds a frame; writes a chunk when one is due.
    ///
    /// # Errors
    /// [`RecordingError::Write`] when the chunk could not be written (what was on disk
    /// before stays readable; the frames of the failed chunk are dropped);
    /// [`RecordingError::Mismatch`] for a frame with another number of points.
    pub fn push(
        &mut self,
        frame: &Frame,
        millis: u64,
        dynamics: Dynamics,
        learning_rate: f64,
    ) -> Result<(), RecordingError> {
        if frame.points.len() != self.header.points as usize {
            return Err(RecordingError::Mismatch {
                path: self.path.clone(),
                reason: format!(
                    "a frame of {} points in a recording of {}",
                    frame.points.len(),
                    self.header.points
                ),
            });
        }
        let start = Instant::now();
        let meta = FrameMeta {
            step: frame.step,
            grid_step: frame.grid_step.max(1),
            view_step: frame.view_step.max(1),
            millis,
            dynamics,
            learning_rate,
        };
        self.pending.push((meta, frame.grid()));
        let started = *self.chunk_started.get_or_insert(start);
        self.busy_secs += start.elapsed().as_secs_f64();
        if self.pending.len() >= CHUNK_FRAMES || started.elapsed().as_secs_f64() >= CHUNK_SECS {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds full display embeddings (written with the next chunk).
    pub fn push_embeddings(&mut self, step: u64, dim: usize, rows: &[f32]) {
        let start = Instant::now();
        self.pending_embeddings.push(StoredEmbeddings {
            step,
            dim: dim as u32,
            planes: shuffle_f16(&[rows]),
        });
        self.busy_secs += start.elapsed().as_secs_f64();
    }

    /// Writes what is pending as one chunk (nothing when nothing is).
    pub fn flush(&mut self) -> Result<(), RecordingError> {
        if self.pending.is_empty() && self.pending_embeddings.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        let embeddings = std::mem::take(&mut self.pending_embeddings);
        self.chunk_started = None;
        let (metas, grids): (Vec<FrameMeta>, Vec<Vec<i16>>) = pending.into_iter().unzip();
        let steps = metas
            .iter()
            .map(|m| m.step)
            .chain(embeddings.iter().map(|e| e.step));
        let first_step = steps.clone().min().unwrap_or(0);
        let last_step = steps.max().unwrap_or(0);
        let steps: Vec<(u16, u16)> = metas.iter().map(|m| (m.grid_step, m.view_step)).collect();
        let (coords, linear) = encode_coords(&grids, &steps);
        let body = ChunkBody {
            values: grids.first().map_or(0, |g| g.len() as u32),
            coords,
            linear,
            embeddings,
            metas,
        };
        let result = self.write_chunk(&body, first_step, last_step);
        self.busy_secs += start.elapsed().as_secs_f64();
        result
    }

    fn write_chunk(
        &mut self,
        body: &ChunkBody,
        first_step: u64,
        last_step: u64,
    ) -> Result<(), RecordingError> {
        let fail = |reason: String, kept_through: Option<u64>| RecordingError::Write {
            path: self.path.clone(),
            reason,
            kept_through: kept_through.unwrap_or(0),
        };
        let raw =
            postcard::to_allocvec(body).map_err(|e| fail(e.to_string(), self.last_step_written))?;
        let compressed = zstd::bulk::compress(&raw, zstd_level())
            .map_err(|e| fail(e.to_string(), self.last_step_written))?;
        let mut bytes = Vec::with_capacity(CHUNK_HEADER_LEN + compressed.len());
        bytes.extend(CHUNK_MAGIC);
        bytes.extend((compressed.len() as u32).to_le_bytes());
        bytes.extend(crc32fast::hash(&compressed).to_le_bytes());
        bytes.extend(first_step.to_le_bytes());
        bytes.extend(last_step.to_le_bytes());
        bytes.extend((body.metas.len() as u32).to_le_bytes());
        bytes.extend((body.embeddings.len() as u32).to_le_bytes());
        bytes.extend(&compressed);
        let written = self
            .file
            .seek(SeekFrom::Start(self.end))
            .and_then(|_| self.file.write_all(&bytes))
            .and_then(|()| self.file.flush());
        if let Err(err) = written {
            // Cut a partly written chunk off again, so that later chunks stay reachable.
            let _ = self.file.set_len(self.end);
            return Err(fail(err.to_string(), self.last_step_written));
        }
        self.end += bytes.len() as u64;
        self.frames_written += body.metas.len() as u64;
        self.last_step_written = Some(last_step);
        Ok(())
    }
}

impl Drop for RecordingWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// What a driver (the app's trainer thread, a headless run) pushes its frames through: the
/// writer, plus the time since the run started and when the embeddings are due.
#[derive(Debug)]
pub struct Recorder {
    writer: RecordingWriter,
    embeddings_every: u64,
    frames: u64,
    start: Instant,
    /// Milliseconds the run had run before this recorder started (a resumed run).
    base_millis: u64,
    budget: Option<ByteBudget>,
}

/// Keeps a recording under a byte rate: a leaky bucket that fills at [`BUDGET_AIM`] of the
/// rate (up to [`BUDGET_BURST_SECS`] of it) and empties by every chunk written, so that any
/// hour holds at most the aim plus one burst (45.4 MB of a 50 MB budget), whatever the
/// levels do in between. While it runs low, the precision
/// level of the frames goes up a step per chunk that drained it further (coarser: see
/// `projection::Coarsener`), and back down while it is more than three quarters full. The frames are snapped before they
/// are shown, so a replay still shows what the live view showed.
#[derive(Debug)]
struct ByteBudget {
    bytes_per_sec: f64,
    capacity: f64,
    allowance: f64,
    level: u8,
    /// When the allowance was last brought up to date, and the bytes on disk then.
    updated: Instant,
    counted: u64,
}

/// The share of a budget's rate a recording aims at (the rest is the margin for the burst).
pub const BUDGET_AIM: f64 = 0.9;

/// Seconds of a budget's rate its bucket holds: a recording's first this many seconds may
/// run over the rate (an hour then holds at most this much more than the rate allows).
pub const BUDGET_BURST_SECS: f64 = 30.0;

impl ByteBudget {
    fn new(bytes_per_hour: f64, bytes_on_disk: u64) -> Self {
        let bytes_per_sec = BUDGET_AIM * bytes_per_hour / 3600.0;
        let capacity = bytes_per_sec * BUDGET_BURST_SECS;
        Self {
            bytes_per_sec,
            capacity,
            allowance: capacity,
            level: 0,
            updated: Instant::now(),
            counted: bytes_on_disk,
        }
    }

    /// Accounts for the bytes on disk now; adjusts the level after each chunk.
    fn update(&mut self, bytes_on_disk: u64) {
        if bytes_on_disk == self.counted {
            return;
        }
        let secs = self.updated.elapsed().as_secs_f64();
        self.updated = Instant::now();
        self.account(bytes_on_disk, secs);
    }

    /// [`ByteBudget::update`] with `secs` since the last one.
    fn account(&mut self, bytes_on_disk: u64, secs: f64) {
        let written = bytes_on_disk.saturating_sub(self.counted) as f64;
        self.counted = bytes_on_disk;
        let refill = secs * self.bytes_per_sec;
        self.allowance = (self.allowance + refill).min(self.capacity) - written;
        // Coarser only while still draining: the level that holds the rate is as far as it goes.
        if self.allowance < self.capacity / 4.0 && written > refill {
            self.level = (self.level + 1).min(MAX_PRECISION_LEVEL);
        } else if self.allowance > self.capacity * 0.75 {
            self.level = self.level.saturating_sub(1);
        }
    }
}

impl Recorder {
    /// A new recording of `run` at `path`, embeddings with every `embeddings_every`-th frame.
    pub fn create(
        path: &Path,
        run: &dyn crate::session::Run,
        embeddings_every: u64,
    ) -> Result<Self, RecordingError> {
        let writer = RecordingWriter::create(path, header_for(run))?;
        Ok(Self::new(writer, embeddings_every, 0))
    }

    /// Continues the recording at `path` for a run resumed at `step` (see
    /// [`RecordingWriter::resume`]); a missing file starts a new one.
    pub fn resume(
        path: &Path,
        run: &dyn crate::session::Run,
        step: u64,
        embeddings_every: u64,
    ) -> Result<Self, RecordingError> {
        if !path.exists() {
            return Self::create(path, run, embeddings_every);
        }
        let recording = Recording::open_file(path)?;
        if recording.header.points as usize != run.display().core_labels().len() {
            return Err(RecordingError::Mismatch {
                path: path.to_owned(),
                reason: format!(
                    "it records {} points but the run displays {}; move it away to record \
                     afresh",
                    recording.header.points,
                    run.display().core_labels().len()
                ),
            });
        }
        let mut reading = recording;
        let base_millis = reading.frame_at(step)?.map_or(0, |last| last.millis);
        let writer = RecordingWriter::resume(path, step)?;
        let frames = writer.frames_written() + writer.frames_pending() as u64;
        let mut recorder = Self::new(writer, embeddings_every, base_millis);
        recorder.frames = frames;
        Ok(recorder)
    }

    fn new(writer: RecordingWriter, embeddings_every: u64, base_millis: u64) -> Self {
        Self {
            writer,
            embeddings_every,
            frames: 0,
            start: Instant::now(),
            base_millis,
            budget: None,
        }
    }

    /// Keeps the recording under `bytes_per_hour` from now on (see `ByteBudget`), by the
    /// precision level it asks the frames for ([`Recorder::precision_level`]).
    #[must_use]
    pub fn with_budget(mut self, bytes_per_hour: f64) -> Self {
        self.budget = Some(ByteBudget::new(bytes_per_hour, self.writer.bytes()));
        self
    }

    /// The precision level the next frames should be made at (`Framer::set_level`): 0
    /// without a budget or while within it.
    pub fn precision_level(&self) -> u8 {
        self.budget.as_ref().map_or(0, |b| b.level)
    }

    /// Records `frame`, and with it the points' embeddings `rows[0]` (of `[points, view_a,
    /// view_b]`, `dim` each) when they are due.
    pub fn push(
        &mut self,
        frame: &Frame,
        rows: &[Vec<f32>; 3],
        dim: usize,
        dynamics: Dynamics,
        learning_rate: f64,
    ) -> Result<(), RecordingError> {
        let millis = self.base_millis + self.start.elapsed().as_millis() as u64;
        if self.embeddings_every > 0 && self.frames.is_multiple_of(self.embeddings_every) {
            self.writer.push_embeddings(frame.step, dim, &rows[0]);
        }
        self.frames += 1;
        let pushed = self.writer.push(frame, millis, dynamics, learning_rate);
        self.account();
        pushed
    }

    /// Writes the pending frames as a chunk (on pause and at the end).
    pub fn flush(&mut self) -> Result<(), RecordingError> {
        let flushed = self.writer.flush();
        self.account();
        flushed
    }

    fn account(&mut self) {
        let bytes = self.writer.bytes();
        if let Some(budget) = &mut self.budget {
            budget.update(bytes);
        }
    }

    pub fn writer(&self) -> &RecordingWriter {
        &self.writer
    }
}

/// The header of a recording of `run`'s display set.
pub fn header_for(run: &dyn crate::session::Run) -> RecordingHeader {
    let display = run.display();
    RecordingHeader {
        points: display.core_labels().len() as u32,
        embed_dim: run.settings().embed_dim() as u32,
        labels: display.core_labels().to_vec(),
        class_names: display.class_names.clone(),
        describe: run.settings().describe(),
        started_unix_ms: now_unix_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recording whose chunks (one per 5 s) take `per_level[level]` times the aimed rate:
    /// the bytes of an hour, and the frames' levels.
    fn an_hour(per_level: [f64; 5]) -> (f64, Vec<u8>) {
        let budget_per_hour = 50e6;
        let mut budget = ByteBudget::new(budget_per_hour, 0);
        let mut bytes = 0.0;
        let mut levels = Vec::new();
        for _ in 0..720 {
            levels.push(budget.level);
            bytes += per_level[usize::from(budget.level)] * budget.bytes_per_sec * 5.0;
            budget.account(bytes as u64, 5.0);
        }
        (bytes, levels)
    }

    #[test]
    fn the_budget_holds_an_hour_under_it_and_costs_nothing_within_it() {
        // Level 0 alone runs 2.5x over; the coarser levels 2.0, 1.4, 1.1, 0.7x.
        let (bytes, levels) = an_hour([2.5, 2.0, 1.4, 1.1, 0.7]);
        assert!(bytes <= 50e6, "{bytes} bytes in an hour");
        assert!(levels.contains(&4), "it had to go to the coarsest level");
        assert_eq!(levels[0], 0, "a recording starts at full precision");
        // Within the budget at full precision: level 0 throughout.
        let (bytes, levels) = an_hour([0.8, 0.6, 0.5, 0.4, 0.3]);
        assert!(bytes <= 0.8 * 45e6 + 1.0, "{bytes}");
        assert!(levels.iter().all(|&l| l == 0), "{levels:?}");
        // Over at full precision: never coarser than the first level that holds the rate.
        let (bytes, levels) = an_hour([1.2, 0.9, 0.8, 0.7, 0.6]);
        assert!(bytes <= 50e6, "{bytes}");
        assert!(levels.iter().all(|&l| l <= 1), "{levels:?}");
        // The full bucket lets it start at full precision for a while.
        assert!(
            levels.iter().take_while(|&&l| l == 0).count() > 10,
            "{levels:?}"
        );
        let (bytes, levels) = an_hour([2.5, 2.0, 0.95, 0.7, 0.6]);
        assert!(bytes <= 50e6, "{bytes}");
        assert!(levels.iter().all(|&l| l <= 2), "{levels:?}");
    }
}
