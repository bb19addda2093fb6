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

/// The whole file, gunzipped when its name ends in `.gz`.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read as _;
    let raw = std::fs::read(path).map_err(|err| DataError::io(path, err))?;
    if path.extension().is_some_and(|ext| ext == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|err| DataError::format(path, format!("not a valid gzip file ({err})")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}
