//! Labelled (or unlabeled) image sets in memory: `u8` pixels, height x width x channels,
//! row-major, channels last. Every loader (built-in sets, IDX, CIFAR, STL-10, image folders)
//! produces [`ImageSet`]s; the rest of the code sees them through the [`Dataset`] trait.

use std::path::{Path, PathBuf};

/// Height, width and channels of every image of a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageShape {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl ImageShape {
    pub const fn new(height: usize, width: usize, channels: usize) -> Self {
        Self {
            height,
            width,
            channels,
        }
    }

    /// Bytes per image.
    pub const fn len(self) -> usize {
        self.height * self.width * self.channels
    }

    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.height, self.width, self.channels)
    }
}

/// What a pretraining run reads images through.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn shape(&self) -> ImageShape;
    /// The pixels of image `index`, `shape().len()` bytes, HWC.
    fn image(&self, index: usize) -> &[u8];
    /// The label of image `index`, when the set is labelled.
    fn label(&self, index: usize) -> Option<u32>;
    /// Class names, in label order; empty for an unlabeled set.
    fn class_names(&self) -> &[String];
}

/// Images in one contiguous buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub shape: ImageShape,
    pub pixels: Vec<u8>,
    pub labels: Option<Vec<u32>>,
    pub class_names: Vec<String>,
}

impl ImageSet {
    /// A set checked for consistency: whole images, one label per image, labels in range.
    pub fn new(
        shape: ImageShape,
        pixels: Vec<u8>,
        labels: Option<Vec<u32>>,
        class_names: Vec<String>,
        source: &Path,
    ) -> Result<Self, DataError> {
        let format = |problem: String| DataError::Format {
            path: source.to_owned(),
            problem,
        };
        if shape.is_empty() || !pixels.len().is_multiple_of(shape.len()) {
            return Err(format(format!(
                "{} bytes of pixels is not a whole number of {shape} images",
                pixels.len()
            )));
        }
        let count = pixels.len() / shape.len();
        if let Some(labels) = &labels {
            if labels.len() != count {
                return Err(format(format!(
                    "{} labels for {count} images",
                    labels.len()
                )));
            }
            if let Some(&bad) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
                return Err(format(format!(
                    "label {bad} is out of range for {} classes",
                    class_names.len()
                )));
            }
        }
        Ok(Self {
            shape,
            pixels,
            labels,
            class_names,
        })
    }

    /// The images at `indices`, in that order.
    #[must_use]
    pub fn subset(&self, indices: &[usize]) -> Self {
        let size = self.shape.len();
        let mut pixels = Vec::with_capacity(indices.len() * size);
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * size..(i + 1) * size]);
        }
        Self {
            shape: self.shape,
            pixels,
            labels: self
                .labels
                .as_ref()
                .map(|labels| indices.iter().map(|&i| labels[i]).collect()),
            class_names: self.class_names.clone(),
        }
    }
}

impl Dataset for ImageSet {
    fn len(&self) -> usize {
        self.pixels.len() / self.shape.len().max(1)
    }

    fn shape(&self) -> ImageShape {
        self.shape
    }

    fn image(&self, index: usize) -> &[u8] {
        let size = self.shape.len();
        &self.pixels[index * size..(index + 1) * size]
    }

    fn label(&self, index: usize) -> Option<u32> {
        self.labels.as_ref().map(|labels| labels[index])
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }
}

/// The splits a source provides: always a training set; a labelled test set where the format
/// has one; extra unlabeled images (STL-10).
#[derive(Clone, Debug)]
pub struct Splits {
    pub name: String,
    pub train: ImageSet,
    pub test: Option<ImageSet>,
    pub unlabeled: Option<ImageSet>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Format { path: PathBuf, problem: String },
    #[error("{what} not found: {hint}")]
    NotFound { what: String, hint: String },
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub fn format(path: &Path, problem: impl Into<String>) -> Self {
        Self::Format {
            path: path.to_owned(),
            problem: problem.into(),
        }
    }
}

/// How much a loader may take in: what keeps a small or hostile file from making msbreg
/// allocate gigabytes. Images are never resized to fit; a file over a bound is refused with
/// an error that names it, the size found and the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadLimits {
    /// The largest height or width of an image kept at its own size (IDX), and the largest
    /// side an image folder may be resized to.
    pub max_side: usize,
    /// The most bytes of pixels (or of labels) one split may hold once decoded.
    pub max_split_bytes: u64,
    /// The most bytes the decoder may allocate for one image of an image folder.
    pub max_decode_bytes: u64,
}

impl LoadLimits {
    /// 512 x 512 images, 4 GiB of pixels a split, 256 MiB to decode one PNG or JPEG.
    pub const DEFAULT: Self = Self {
        max_side: 512,
        max_split_bytes: 4 << 30,
        max_decode_bytes: 256 << 20,
    };

    /// `bytes` as a `usize` when it is within [`Self::max_split_bytes`]; `what` says what
    /// they are (`"images of 28x28"`).
    pub fn split_bytes(&self, path: &Path, bytes: u64, what: &str) -> Result<usize, DataError> {
        if bytes > self.max_split_bytes {
            return Err(DataError::format(
                path,
                format!(
                    "{what} would take {bytes} bytes, more than the bound of {} bytes ({})",
                    self.max_split_bytes,
                    gib(self.max_split_bytes)
                ),
            ));
        }
        usize::try_from(bytes).map_err(|_| {
            DataError::format(
                path,
                format!("{bytes} bytes do not fit in this machine's memory"),
            )
        })
    }

    /// An error unless `height` and `width` are at most [`Self::max_side`].
    pub fn check_side(&self, path: &Path, height: u64, width: u64) -> Result<(), DataError> {
        if height > self.max_side as u64 || width > self.max_side as u64 {
            return Err(DataError::format(
                path,
                format!(
                    "images of {height}x{width} are larger than the bound of {0}x{0}; \
                     resize them to at most {0} pixels a side",
                    self.max_side
                ),
            ));
        }
        Ok(())
    }
}

impl Default for LoadLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// An empty buffer with room for `bytes` bytes, or an error naming `path` when the memory
/// cannot be had (rather than an abort).
pub fn buffer_for(path: &Path, bytes: usize) -> Result<Vec<u8>, DataError> {
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(bytes).map_err(|_| {
        DataError::format(path, format!("cannot allocate the {bytes} bytes it needs"))
    })?;
    Ok(buffer)
}

/// `bytes` in GiB, for messages.
fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// The product of `factors`, or an error naming `path` when it overflows a `u64`.
pub fn checked_product(path: &Path, factors: &[u64], what: &str) -> Result<u64, DataError> {
    factors
        .iter()
        .try_fold(1u64, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| {
            DataError::format(
                path,
                format!("{what} {factors:?} multiply to more than 2^64 bytes: not a real file"),
            )
        })
}

/// A file opened for reading, gunzipped as it is read when its name ends in `.gz`; with its
/// length on disk when it is not compressed (so that a header can be checked against it).
pub fn open_maybe_gz(path: &Path) -> Result<(Box<dyn std::io::Read>, Option<u64>), DataError> {
    let file = open_file(path)?;
    let len = file
        .metadata()
        .map_err(|err| DataError::io(path, err))?
        .len();
    let reader = std::io::BufReader::new(file);
    if path.extension().is_some_and(|ext| ext == "gz") {
        Ok((Box::new(flate2::bufread::GzDecoder::new(reader)), None))
    } else {
        Ok((Box::new(reader), Some(len)))
    }
}

/// A data file opened for reading; a folder in its place is named as such.
pub fn open_file(path: &Path) -> Result<std::fs::File, DataError> {
    if path.is_dir() {
        return Err(DataError::format(
            path,
            "is a directory where a data file was expected",
        ));
    }
    std::fs::File::open(path).map_err(|err| DataError::io(path, err))
}
