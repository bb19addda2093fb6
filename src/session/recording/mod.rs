//! The recording (`recording.msbrec` in a run folder): every frame of the display set the
//! run showed or would show, and at a lower rate the full D-dimensional display embeddings
//! (so that a replay can re-project), each with its step, time and the dynamics in force.
//!
//! # Format (version 2)
//! ```text
//! header: "MSBREC\0\x1a"  u32 version  u32 len  postcard(RecordingHeader)  u32 crc32
//! chunk:  "CHNK"  u32 len  u32 crc32  u64 first_step  u64 last_step  u32 frames
//!         u32 embeddings  zstd(postcard(ChunkBody))                        (repeated)
//! ```
//! Integers are little-endian; the crc32 is of the bytes it follows (header) or of the
//! compressed body (chunk). Each chunk decodes on its own: its first frame is stored whole,
//! the others as differences from the frame before, so a replay can seek to any chunk.
//!
//! The index is the chain of chunk headers: each says its length and its steps, so
//! [`Recording::open`] walks the file reading 36 bytes per chunk (a one-hour recording has a
//! few hundred) and seeks by step with a binary search over them. No separate index file can
//! disagree with the data.
//!
//! Appending while the run goes: [`RecordingWriter`] buffers frames and writes a chunk when it
//! holds [`CHUNK_FRAMES`] frames, when its first frame is [`CHUNK_SECS`] old, and whenever
//! the run pauses or ends ([`RecordingWriter::flush`]). A chunk is written with one `write`
//! call after the bytes before it, so a process killed at any moment (kill -9) leaves every
//! complete chunk readable and at most a torn last one, which the reader stops before (and
//! says so). A failed write (a full disk) is cut off again, so what was recorded stays
//! readable; the writer reports the error and the caller pauses. A reader following a live
//! writer calls [`Recording::refresh`] to pick up the chunks written since.
//!
//! Why zstd and postcard: zstd gives the best ratio at the speed a live run needs (level 3
//! compresses a chunk of 64 frames in a few milliseconds) and is the most widely used
//! compressor there is; postcard is serde's compact binary format (varints), so the stored
//! types are plain Rust structs with derives. The coordinates are the 16-bit grid indices of
//! [`Frame`] (see `projection::frame`), delta-coded and split into byte planes before zstd:
//! particles move little between two frames, so the high bytes are nearly all zero.
//!
//! Version 1 (stop 14 of issue 9) had no `view_step` in a frame's metadata: its views are
//! on the points' grid step. It is still read, and `train --resume` on a version-1 recording
//! rewrites it as version 2 first ([`RecordingWriter::resume`]).

mod reader;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use reader::Recording;
pub use writer::{BUDGET_BURST_SECS, Recorder, RecordingWriter, header_for};

use crate::method::Dynamics;
use crate::projection::Frame;

/// The recording's file name in a run folder.
pub const RECORDING_FILE: &str = "recording.msbrec";
/// The format version this build writes, and the newest it reads (it reads all before it).
pub const FORMAT_VERSION: u32 = 2;
/// A chunk is written once it holds this many frames...
pub const CHUNK_FRAMES: usize = 64;
/// ...or once its first frame is this many seconds old.
pub const CHUNK_SECS: f64 = 5.0;

pub(super) const MAGIC: [u8; 8] = *b"MSBREC\0\x1a";
pub(super) const CHUNK_MAGIC: [u8; 4] = *b"CHNK";
pub(super) const CHUNK_HEADER_LEN: usize = 36;
/// A chunk header claiming more than this is damage, not data.
pub(super) const MAX_CHUNK_BYTES: u32 = 512 << 20;
pub(super) const MAX_HEADER_BYTES: u32 = 64 << 20;
pub(super) const ZSTD_LEVEL: i32 = 3;

/// The zstd level (`MSBREG_RECORD_LEVEL` overrides it, to measure others with `msbreg bench
/// record`).
pub(super) fn zstd_level() -> i32 {
    std::env::var("MSBREG_RECORD_LEVEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ZSTD_LEVEL)
}

/// What goes wrong with a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error(
        "{} has no recording ({RECORDING_FILE}): the run was made before msbreg recorded runs, \
         or with recording off (record.every_steps = 0); its metrics and checkpoints still \
         open with `msbreg eval`",
        dir.display()
    )]
    Missing { dir: PathBuf },
    #[error("{} is not an msbreg recording (it does not start with the recording's magic bytes)", path.display())]
    NotARecording { path: PathBuf },
    #[error(
        "{} is a recording of format version {found}, newer than this msbreg reads (version \
         {FORMAT_VERSION}); update msbreg to replay it",
        path.display()
    )]
    NewerVersion { path: PathBuf, found: u32 },
    #[error("{}: the recording's header is damaged or cut short ({reason}); nothing in it can be replayed", path.display())]
    BadHeader { path: PathBuf, reason: String },
    #[error("{}: the chunk at byte {offset} is damaged ({reason})", path.display())]
    BadChunk {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error(
        "cannot write the recording {}: {reason}; what was recorded up to step {kept_through} \
         stays readable",
        path.display()
    )]
    Write {
        path: PathBuf,
        reason: String,
        kept_through: u64,
    },
    #[error("{}: {reason}", path.display())]
    Mismatch { path: PathBuf, reason: String },
}

/// What a recording says about itself, written once at its start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingHeader {
    /// Displayed points per frame.
    pub points: u32,
    /// Embedding dimension D of the stored embeddings.
    pub embed_dim: u32,
    /// The label of every displayed point.
    pub labels: Vec<u32>,
    pub class_names: Vec<String>,
    /// The run, in words (`RunSettings::describe`).
    pub describe: String,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

/// One recorded frame with what was in force when it was made.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedFrame {
    pub frame: Arc<Frame>,
    /// Milliseconds since the run started.
    pub millis: u64,
    pub dynamics: Dynamics,
    pub learning_rate: f64,
}

/// The full display embeddings of the points at one step, `[n, dim]` row-major, as f16
/// (what re-projecting needs; the views are not stored: they are two thirds of the bytes and
/// the recorded frames hold their projections).
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEmbeddings {
    pub step: u64,
    pub dim: usize,
    pub rows: Vec<f32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct FrameMeta {
    pub(super) step: u64,
    /// The frame's grid step (its points' indices are multiples of it).
    pub(super) grid_step: u16,
    /// Its views' offsets from their points are multiples of this.
    pub(super) view_step: u16,
    pub(super) millis: u64,
    pub(super) dynamics: Dynamics,
    pub(super) learning_rate: f64,
}

/// [`FrameMeta`] in format version 1 (the views on the points' step).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct FrameMetaV1 {
    pub(super) step: u64,
    pub(super) grid_step: u16,
    pub(super) millis: u64,
    pub(super) dynamics: Dynamics,
    pub(super) learning_rate: f64,
}

impl From<FrameMetaV1> for FrameMeta {
    fn from(v1: FrameMetaV1) -> Self {
        Self {
            step: v1.step,
            grid_step: v1.grid_step,
            view_step: v1.grid_step,
            millis: v1.millis,
            dynamics: v1.dynamics,
            learning_rate: v1.learning_rate,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StoredEmbeddings {
    pub(super) step: u64,
    pub(super) dim: u32,
    /// The points' values as f16, in 2 byte planes.
    pub(super) planes: Vec<u8>,
}

/// A chunk's contents; `M` is the frame metadata of the format version ([`FrameMeta`],
/// [`FrameMetaV1`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct ChunkBody<M = FrameMeta> {
    pub(super) metas: Vec<M>,
    /// Grid values per frame.
    pub(super) values: u32,
    /// The predictor of the residuals in `coords` (see `predict`).
    pub(super) linear: bool,
    /// Every frame's grid indices, each frame minus the one before (the first whole), zigzag
    /// coded, as two byte planes: all low bytes, then all high bytes.
    pub(super) coords: Vec<u8>,
    pub(super) embeddings: Vec<StoredEmbeddings>,
}

/// Where a chunk is and what it holds (one entry of the index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkEntry {
    pub offset: u64,
    /// Bytes of the compressed body.
    pub len: u32,
    pub(super) crc: u32,
    pub first_step: u64,
    pub last_step: u64,
    pub frames: u32,
    pub embeddings: u32,
}

impl ChunkEntry {
    pub(super) fn end(&self) -> u64 {
        self.offset + CHUNK_HEADER_LEN as u64 + u64::from(self.len)
    }
}

/// A chunk decoded.
#[derive(Clone, Debug, Default)]
pub struct DecodedChunk {
    pub frames: Vec<RecordedFrame>,
    pub embeddings: Vec<RecordedEmbeddings>,
}

pub(super) fn zigzag(x: i16) -> u16 {
    ((x << 1) ^ (x >> 15)) as u16
}

pub(super) fn unzigzag(u: u16) -> i16 {
    (u >> 1).cast_signed() ^ -(u & 1).cast_signed()
}

/// The tethered views of a frame's grid (`[points 3n][view a 3n][view b 3n]`) as offsets
/// from their point (small: a view lies near its point), or back (`undo`).
fn views_relative(frame: &mut [i16], undo: bool) {
    let n3 = frame.len() / 3;
    let (points, views) = frame.split_at_mut(n3);
    for (i, v) in views.iter_mut().enumerate() {
        let p = points[i % n3];
        *v = if undo {
            v.wrapping_add(p)
        } else {
            v.wrapping_sub(p)
        };
    }
}

/// What each frame's grid is predicted from: the frame before (`linear` false), or the two
/// before extrapolated (`2 q[t-1] - q[t-2]`: particles drifting at a steady pace cost
/// nothing). The first frame of a chunk is predicted from zero, the second from the first.
fn predict(history: &[Vec<i16>], i: usize, linear: bool) -> i16 {
    match history {
        [] => 0,
        [.., before, last] if linear => last[i].wrapping_mul(2).wrapping_sub(before[i]),
        [.., last] => last[i],
    }
}

/// The grid steps of a frame's points and of its views' offsets.
pub(super) type Steps = (u16, u16);

/// The step value `i` of a frame of `values` is divided by: the points' (the first third),
/// else the views'.
fn step_of(i: usize, values: usize, (points, views): Steps) -> i16 {
    if i < values / 3 { points } else { views }
        .max(1)
        .cast_signed()
}

/// The residuals of `frames` (views relative to their points, each value divided by its
/// frame's step in `steps`) against the prediction, divided the same way.
fn residuals(frames: &[Vec<i16>], steps: &[Steps], linear: bool) -> Vec<Vec<u16>> {
    let relative: Vec<Vec<i16>> = frames
        .iter()
        .map(|frame| {
            let mut frame = frame.clone();
            views_relative(&mut frame, false);
            frame
        })
        .collect();
    (0..relative.len())
        .map(|f| {
            let values = relative[f].len();
            relative[f]
                .iter()
                .enumerate()
                .map(|(i, &q)| {
                    let s = step_of(i, values, steps[f]);
                    let predicted = predict(&relative[..f], i, linear).div_euclid(s);
                    zigzag((q / s).wrapping_sub(predicted))
                })
                .collect()
        })
        .collect()
}

/// The frames' grids (each point a multiple of its frame's points' step in `steps`, each
/// view's offset from its point a multiple of the views' step) as residuals in two byte
/// planes (all low bytes, then all high bytes), with the predictor that made them smaller
/// (`true`: linear).
pub(super) fn encode_coords(frames: &[Vec<i16>], steps: &[Steps]) -> (Vec<u8>, bool) {
    let cost = |r: &[Vec<u16>]| -> u64 { r.iter().flatten().map(|&u| u64::from(u)).sum() };
    let previous = residuals(frames, steps, false);
    let linear = residuals(frames, steps, true);
    let (chosen, is_linear) = if cost(&linear) < cost(&previous) {
        (linear, true)
    } else {
        (previous, false)
    };
    let count: usize = chosen.iter().map(Vec::len).sum();
    let mut low = Vec::with_capacity(2 * count);
    let mut high = Vec::with_capacity(count);
    for u in chosen.iter().flatten() {
        let [lo, hi] = u.to_le_bytes();
        low.push(lo);
        high.push(hi);
    }
    low.extend(high);
    (low, is_linear)
}

pub(super) fn decode_coords(
    bytes: &[u8],
    values: usize,
    steps: &[Steps],
    linear: bool,
) -> Option<Vec<Vec<i16>>> {
    let frames = steps.len();
    let count = values.checked_mul(frames)?;
    if bytes.len() != 2 * count || !values.is_multiple_of(3) {
        return None;
    }
    let (low, high) = bytes.split_at(count);
    let mut relative: Vec<Vec<i16>> = Vec::with_capacity(frames);
    for (f, &step) in steps.iter().enumerate() {
        let frame: Vec<i16> = (0..values)
            .map(|i| {
                let s = step_of(i, values, step);
                let at = f * values + i;
                let residual = unzigzag(u16::from_le_bytes([low[at], high[at]]));
                let predicted = predict(&relative, i, linear).div_euclid(s);
                predicted.wrapping_add(residual).wrapping_mul(s)
            })
            .collect();
        relative.push(frame);
    }
    Some(
        relative
            .into_iter()
            .map(|mut frame| {
                views_relative(&mut frame, true);
                frame
            })
            .collect(),
    )
}

pub(super) fn shuffle_f16(rows: &[&[f32]]) -> Vec<u8> {
    let count: usize = rows.iter().map(|r| r.len()).sum();
    let mut planes = vec![0u8; 2 * count];
    for (i, x) in rows.iter().flat_map(|r| r.iter()).enumerate() {
        let [lo, hi] = half::f16::from_f32(*x).to_le_bytes();
        planes[i] = lo;
        planes[count + i] = hi;
    }
    planes
}

pub(super) fn unshuffle_f16(planes: &[u8]) -> Option<Vec<f32>> {
    if !planes.len().is_multiple_of(2) {
        return None;
    }
    let count = planes.len() / 2;
    Some(
        (0..count)
            .map(|i| half::f16::from_le_bytes([planes[i], planes[count + i]]).to_f32())
            .collect(),
    )
}

pub(super) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_and_planes_round_trip() {
        for x in [i16::MIN, -2, -1, 0, 1, 2, i16::MAX] {
            assert_eq!(unzigzag(zigzag(x)), x);
        }
        let frames = vec![
            vec![1i16, -4095, 300, 4, 4095, 299, 0, 0, -4095],
            vec![2, 4095, -300, -4095, 4095, 0, 7, 8, 9],
            vec![-5, 0, 0, 0, 0, 0, 4095, 4095, 4095],
        ];
        let (bytes, linear) = encode_coords(&frames, &[(1, 1); 3]);
        assert_eq!(
            decode_coords(&bytes, 9, &[(1, 1); 3], linear),
            Some(frames.clone())
        );
        assert_eq!(decode_coords(&bytes, 9, &[(1, 1); 2], linear), None);
        // A steady drift is all zeros after the first two frames under the linear predictor.
        let drift: Vec<Vec<i16>> = (0..5i16).map(|t| vec![t * 7; 9]).collect();
        let (bytes, linear) = encode_coords(&drift, &[(1, 1); 5]);
        assert!(linear);
        assert_eq!(decode_coords(&bytes, 9, &[(1, 1); 5], true), Some(drift));
        // Coarse frames (multiples of their step, views too) come back exactly.
        let coarse = vec![
            vec![64i16, -4032, 320, 0, 4032, 256, -64, 0, -4032],
            vec![8, 4088, -296, -4088, 4088, 0, 8, 16, 24],
        ];
        let (bytes, linear) = encode_coords(&coarse, &[(64, 64), (8, 8)]);
        assert_eq!(
            decode_coords(&bytes, 9, &[(64, 64), (8, 8)], linear),
            Some(coarse)
        );
        // Views whose offsets from their point are multiples of a coarser step than the
        // points' come back exactly, and cost fewer bytes than at the points' step.
        let views_coarse = vec![
            vec![
                64i16,
                -4032,
                320,
                64 + 256,
                -4032,
                320 - 512,
                64 - 1024,
                -4032 + 256,
                320,
            ],
            vec![
                8,
                4088,
                -296,
                8 - 32,
                4088 - 4096,
                -296 + 64,
                8,
                4088 - 32,
                -296 + 96,
            ],
        ];
        let steps = [(64, 256), (8, 32)];
        let (bytes, linear) = encode_coords(&views_coarse, &steps);
        assert_eq!(decode_coords(&bytes, 9, &steps, linear), Some(views_coarse));
        let rows = [1.5f32, -0.0, 0.333_333, -1.0];
        let planes = shuffle_f16(&[&rows]);
        let back = unshuffle_f16(&planes).expect("whole halves");
        for (a, b) in rows.iter().zip(&back) {
            assert!((a - b).abs() < 1e-3, "{a} {b}");
        }
    }

    /// A version-1 recording (views on the points' step, no `view_step`) of `frames`.
    fn write_v1(path: &std::path::Path, frames: &[Frame]) {
        let header = RecordingHeader {
            points: frames[0].points.len() as u32,
            embed_dim: 4,
            labels: vec![0; frames[0].points.len()],
            class_names: vec!["a".to_owned()],
            describe: "v1".to_owned(),
            started_unix_ms: 1,
        };
        let head = postcard::to_allocvec(&header).expect("header");
        let mut bytes = Vec::new();
        bytes.extend(MAGIC);
        bytes.extend(1u32.to_le_bytes());
        bytes.extend((head.len() as u32).to_le_bytes());
        bytes.extend(&head);
        bytes.extend(crc32fast::hash(&head).to_le_bytes());
        let grids: Vec<Vec<i16>> = frames.iter().map(Frame::grid).collect();
        let steps: Vec<Steps> = frames.iter().map(|f| (f.grid_step, f.grid_step)).collect();
        let (coords, linear) = encode_coords(&grids, &steps);
        let body = ChunkBody {
            metas: frames
                .iter()
                .map(|f| FrameMetaV1 {
                    step: f.step,
                    grid_step: f.grid_step,
                    millis: 10 * f.step,
                    dynamics: Dynamics::default(),
                    learning_rate: 0.5,
                })
                .collect(),
            values: grids[0].len() as u32,
            linear,
            coords,
            embeddings: Vec::new(),
        };
        let compressed =
            zstd::bulk::compress(&postcard::to_allocvec(&body).expect("body"), 3).expect("zstd");
        bytes.extend(CHUNK_MAGIC);
        bytes.extend((compressed.len() as u32).to_le_bytes());
        bytes.extend(crc32fast::hash(&compressed).to_le_bytes());
        bytes.extend(frames[0].step.to_le_bytes());
        bytes.extend(frames[frames.len() - 1].step.to_le_bytes());
        bytes.extend((frames.len() as u32).to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(&compressed);
        std::fs::write(path, bytes).expect("write");
    }

    #[test]
    fn a_version_1_recording_reads_and_resumes_as_version_2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(RECORDING_FILE);
        let frame = |t: u64, step: u16| {
            let x = 0.01 * t as f32;
            Frame::new(
                t,
                &[[x, -0.5, 0.25], [0.9, x, -x]],
                &[[x + 0.1, -0.4, 0.2], [0.8, x, 0.1]],
                &[[x - 0.1, -0.6, 0.3], [0.7, 0.2, -x]],
            )
            .coarsened(step, step)
        };
        let frames = vec![frame(1, 1), frame(2, 8), frame(3, 4)];
        write_v1(&path, &frames);
        let mut recording = Recording::open_file(&path).expect("a version-1 recording opens");
        assert_eq!(recording.version(), 1);
        let read: Vec<Frame> = recording
            .all_frames()
            .expect("frames")
            .iter()
            .map(|f| (*f.frame).clone())
            .collect();
        assert_eq!(
            read, frames,
            "bit for bit, view steps from the points' step"
        );
        // Resuming rewrites it in this version, frames unchanged, and appends after them.
        let mut writer = RecordingWriter::resume(&path, 3).expect("resumes");
        let next = frame(4, 2).coarsened(2, 8);
        writer
            .push(&next, 40, Dynamics::default(), 0.5)
            .expect("push");
        writer.flush().expect("flush");
        drop(writer);
        let mut recording = Recording::open_file(&path).expect("opens");
        assert_eq!(recording.version(), FORMAT_VERSION);
        let mut expected = frames;
        expected.push(next);
        let read: Vec<Frame> = recording
            .all_frames()
            .expect("frames")
            .iter()
            .map(|f| (*f.frame).clone())
            .collect();
        assert_eq!(read, expected);
        assert_eq!(read[3].view_step, 8);
        assert!(!dir.path().join("recording.msbrec.upgrading").exists());
    }
}
