//! [`Recording`]: a recording opened to read, its index, seeking by step.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    CHUNK_HEADER_LEN, CHUNK_MAGIC, ChunkBody, ChunkEntry, DecodedChunk, FORMAT_VERSION, FrameMeta,
    FrameMetaV1, MAGIC, MAX_CHUNK_BYTES, MAX_HEADER_BYTES, RECORDING_FILE, RecordedEmbeddings,
    RecordedFrame, RecordingError, RecordingHeader, decode_coords, unshuffle_f16,
};
use crate::projection::Frame;

/// A recording opened to read: its header and the index of its complete chunks.
#[derive(Debug)]
pub struct Recording {
    path: PathBuf,
    pub(super) header: RecordingHeader,
    /// The format version it was written in.
    pub(super) version: u32,
    pub(super) chunks: Vec<ChunkEntry>,
    /// The end of the last complete chunk.
    pub(super) end: u64,
    /// Why the bytes after `end` (if any) were not read.
    tail: Option<String>,
    cache: Option<(usize, Arc<DecodedChunk>)>,
}

impl Recording {
    /// The recording of the run folder `dir`.
    pub fn open(dir: &Path) -> Result<Self, RecordingError> {
        let path = dir.join(RECORDING_FILE);
        if !path.is_file() {
            return Err(RecordingError::Missing {
                dir: dir.to_owned(),
            });
        }
        Self::open_file(&path)
    }

    /// The recording in the file `path`.
    pub fn open_file(path: &Path) -> Result<Self, RecordingError> {
        let read_err = |e: std::io::Error| RecordingError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut file = File::open(path).map_err(read_err)?;
        let bad = |reason: &str| RecordingError::BadHeader {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let mut start = [0u8; 16];
        let got = read_up_to(&mut file, &mut start).map_err(read_err)?;
        if got < 8 || start[..8] != MAGIC {
            if got < 8 && MAGIC.starts_with(&start[..got]) {
                return Err(bad("the file ends inside its first 8 bytes"));
            }
            return Err(RecordingError::NotARecording {
                path: path.to_owned(),
            });
        }
        if got < 16 {
            return Err(bad("the file ends inside the header"));
        }
        let version = u32::from_le_bytes([start[8], start[9], start[10], start[11]]);
        if version > FORMAT_VERSION {
            return Err(RecordingError::NewerVersion {
                path: path.to_owned(),
                found: version,
            });
        }
        if version == 0 {
            return Err(bad("format version 0 does not exist"));
        }
        let len = u32::from_le_bytes([start[12], start[13], start[14], start[15]]);
        if len > MAX_HEADER_BYTES {
            return Err(bad("it claims an impossibly long header"));
        }
        let mut body = vec![0u8; len as usize + 4];
        if read_up_to(&mut file, &mut body).map_err(read_err)? < body.len() {
            return Err(bad("the file ends inside the header"));
        }
        let (body, crc) = body.split_at(len as usize);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(bad("its checksum does not match"));
        }
        let header: RecordingHeader =
            postcard::from_bytes(body).map_err(|e| bad(&e.to_string()))?;
        let mut recording = Self {
            path: path.to_owned(),
            header,
            version,
            chunks: Vec::new(),
            end: 16 + u64::from(len) + 4,
            tail: None,
            cache: None,
        };
        recording.refresh()?;
        Ok(recording)
    }

    /// Reads the chunk headers written since the last look (a writer may still be
    /// appending); returns how many complete chunks were added. Stops before a chunk that is
    /// not complete yet (or torn: see [`Recording::tail`]).
    pub fn refresh(&mut self) -> Result<usize, RecordingError> {
        let read_err = |e: std::io::Error| RecordingError::Read {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let mut file = File::open(&self.path).map_err(read_err)?;
        let size = file.metadata().map_err(read_err)?.len();
        let before = self.chunks.len();
        self.tail = None;
        let mut at = self.end;
        while at < size {
            let mut head = [0u8; CHUNK_HEADER_LEN];
            file.seek(SeekFrom::Start(at)).map_err(read_err)?;
            let got = read_up_to(&mut file, &mut head).map_err(read_err)?;
            let remaining = size - at;
            if got < CHUNK_HEADER_LEN {
                self.tail = Some(format!(
                    "{remaining} bytes of an unfinished chunk header at byte {at}"
                ));
                break;
            }
            let u32_at =
                |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
            let u64_at = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&head[i..i + 8]);
                u64::from_le_bytes(b)
            };
            let entry = ChunkEntry {
                offset: at,
                len: u32_at(4),
                crc: u32_at(8),
                first_step: u64_at(12),
                last_step: u64_at(20),
                frames: u32_at(28),
                embeddings: u32_at(32),
            };
            if head[..4] != CHUNK_MAGIC || entry.len > MAX_CHUNK_BYTES {
                self.tail = Some(format!(
                    "{remaining} bytes at byte {at} that are not a chunk (damaged)"
                ));
                break;
            }
            if entry.end() > size {
                self.tail = Some(format!(
                    "an unfinished chunk at byte {at} ({remaining} of its {} bytes)",
                    entry.end() - at
                ));
                break;
            }
            self.chunks.push(entry);
            at = entry.end();
            self.end = at;
        }
        Ok(self.chunks.len() - before)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version it was written in.
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// The index: every complete chunk, in order.
    pub fn chunks(&self) -> &[ChunkEntry] {
        &self.chunks
    }

    /// Bytes up to the end of the last complete chunk.
    pub fn bytes(&self) -> u64 {
        self.end
    }

    /// Why the file's last bytes were not read: a writer killed mid-chunk (or one still
    /// writing it, when the run is live). `None` when the file ends on a chunk.
    pub fn tail(&self) -> Option<&str> {
        self.tail.as_deref()
    }

    /// Frames in the complete chunks.
    pub fn frame_count(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.frames)).sum()
    }

    /// The step of the first and of the last recorded frame (or embeddings).
    pub fn step_range(&self) -> Option<(u64, u64)> {
        Some((
            self.chunks.first()?.first_step,
            self.chunks.last()?.last_step,
        ))
    }

    /// Chunk `index`, decoded (the last one decoded is kept).
    pub fn chunk(&mut self, index: usize) -> Result<Arc<DecodedChunk>, RecordingError> {
        if let Some((cached, chunk)) = &self.cache
            && *cached == index
        {
            return Ok(Arc::clone(chunk));
        }
        let entry = *self.chunks.get(index).ok_or_else(|| RecordingError::Read {
            path: self.path.clone(),
            reason: format!("no chunk {index}"),
        })?;
        let decoded = Arc::new(self.decode(&entry)?);
        self.cache = Some((index, Arc::clone(&decoded)));
        Ok(decoded)
    }

    fn decode(&self, entry: &ChunkEntry) -> Result<DecodedChunk, RecordingError> {
        let bad = |reason: String| RecordingError::BadChunk {
            path: self.path.clone(),
            offset: entry.offset,
            reason,
        };
        let mut file = File::open(&self.path).map_err(|e| RecordingError::Read {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let mut compressed = vec![0u8; entry.len as usize];
        file.seek(SeekFrom::Start(entry.offset + CHUNK_HEADER_LEN as u64))
            .and_then(|_| file.read_exact(&mut compressed))
            .map_err(|e| bad(e.to_string()))?;
        if crc32fast::hash(&compressed) != entry.crc {
            return Err(bad("its checksum does not match".to_owned()));
        }
        let raw =
            zstd::stream::decode_all(compressed.as_slice()).map_err(|e| bad(e.to_string()))?;
        let body: ChunkBody = if self.version == 1 {
            let v1: ChunkBody<FrameMetaV1> =
                postcard::from_bytes(&raw).map_err(|e| bad(e.to_string()))?;
            ChunkBody {
                metas: v1.metas.into_iter().map(FrameMeta::from).collect(),
                values: v1.values,
                linear: v1.linear,
                coords: v1.coords,
                embeddings: v1.embeddings,
            }
        } else {
            postcard::from_bytes(&raw).map_err(|e| bad(e.to_string()))?
        };
        let grids = decode_coords(
            &body.coords,
            body.values as usize,
            &body
                .metas
                .iter()
                .map(|m| (m.grid_step, m.view_step))
                .collect::<Vec<_>>(),
            body.linear,
        )
        .ok_or_else(|| bad("its coordinates do not add up".to_owned()))?;
        let frames = body
            .metas
            .iter()
            .zip(grids)
            .map(|(meta, grid)| {
                let mut frame = Frame::from_grid_indices(meta.step, &grid)
                    .ok_or_else(|| bad("a frame's coordinates are not 9 per point".to_owned()))?;
                frame.grid_step = meta.grid_step;
                frame.view_step = meta.view_step;
                Ok(RecordedFrame {
                    frame: Arc::new(frame),
                    millis: meta.millis,
                    dynamics: meta.dynamics,
                    learning_rate: meta.learning_rate,
                })
            })
            .collect::<Result<Vec<_>, RecordingError>>()?;
        let embeddings = body
            .embeddings
            .iter()
            .map(|stored| {
                let values = unshuffle_f16(&stored.planes)
                    .ok_or_else(|| bad("embeddings of a partial number of values".to_owned()))?;
                let dim = stored.dim as usize;
                if dim == 0 || !values.len().is_multiple_of(dim) {
                    return Err(bad("embeddings that are not whole rows".to_owned()));
                }
                Ok(RecordedEmbeddings {
                    step: stored.step,
                    dim,
                    rows: values,
                })
            })
            .collect::<Result<Vec<_>, RecordingError>>()?;
        Ok(DecodedChunk { frames, embeddings })
    }

    /// The index of the last chunk whose first step is at or before `step`.
    fn chunk_for(&self, step: u64) -> Option<usize> {
        let after = self.chunks.partition_point(|c| c.first_step <= step);
        after.checked_sub(1)
    }

    /// The newest frame at or before `step` (the first frame when `step` is before it).
    pub fn frame_at(&mut self, step: u64) -> Result<Option<RecordedFrame>, RecordingError> {
        let Some(index) = self
            .chunk_for(step)
            .or_else(|| (!self.chunks.is_empty()).then_some(0))
        else {
            return Ok(None);
        };
        let chunk = self.chunk(index)?;
        let at = chunk.frames.partition_point(|f| f.frame.step <= step);
        Ok(chunk
            .frames
            .get(at.saturating_sub(1))
            .or_else(|| chunk.frames.first())
            .cloned())
    }

    /// The step of the frame after (`forward`) or before the one at `step`, if any.
    pub fn neighbour_step(
        &mut self,
        step: u64,
        forward: bool,
    ) -> Result<Option<u64>, RecordingError> {
        let Some(index) = self.chunk_for(step) else {
            return Ok(if forward {
                self.chunks.first().map(|c| c.first_step)
            } else {
                None
            });
        };
        let chunk = self.chunk(index)?;
        let found = if forward {
            chunk
                .frames
                .iter()
                .map(|f| f.frame.step)
                .find(|&s| s > step)
        } else {
            chunk
                .frames
                .iter()
                .rev()
                .map(|f| f.frame.step)
                .find(|&s| s < step)
        };
        if found.is_some() {
            return Ok(found);
        }
        Ok(if forward {
            self.chunks.get(index + 1).map(|c| c.first_step)
        } else {
            match index.checked_sub(1) {
                Some(previous) => self.chunk(previous)?.frames.last().map(|f| f.frame.step),
                None => None,
            }
        })
    }

    /// Every frame, in order (decodes the whole recording).
    pub fn all_frames(&mut self) -> Result<Vec<RecordedFrame>, RecordingError> {
        let mut out = Vec::new();
        for index in 0..self.chunks.len() {
            out.extend(self.chunk(index)?.frames.iter().cloned());
        }
        Ok(out)
    }

    /// Every set of stored embeddings, in order.
    pub fn all_embeddings(&mut self) -> Result<Vec<RecordedEmbeddings>, RecordingError> {
        let mut out = Vec::new();
        for index in 0..self.chunks.len() {
            out.extend(self.chunk(index)?.embeddings.iter().cloned());
        }
        Ok(out)
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
