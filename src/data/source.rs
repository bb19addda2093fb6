//! Where a run's images come from: a [`DataSource`] names a built-in set or a format and a
//! path, and [`DataSource::load`] turns it into [`Splits`].
//!
//! On the command line a source is written `NAME` or `NAME:PATH`: `shapes`, `digits`,
//! `fashion-mnist` (Debian's `dataset-fashion-mnist` when no path is given), `mnist:DIR`,
//! `cifar10:DIR`, `cifar100:DIR`, `stl10:DIR`, `folder:DIR`; or a bare `DIR`, whose format
//! [`detect`] tells from the files in it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::detect::{self, Detection};
use super::images::{DataError, Splits};
use super::{builtin, cifar, folder, idx};

/// Debian's `dataset-fashion-mnist` package installs here.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Procedural coloured shapes, generated from the seed (the default).
    #[default]
    Shapes,
    /// The UCI handwritten digits, embedded.
    Digits,
    /// Fashion-MNIST in the MNIST layout.
    FashionMnist,
    /// Any MNIST-layout folder (MNIST, KMNIST, ...).
    Mnist,
    Cifar10,
    Cifar100,
    Stl10,
    /// A folder of PNG/JPEG images, one subfolder per class or flat.
    Folder,
}

impl SourceKind {
    pub const ALL: [Self; 8] = [
        Self::Shapes,
        Self::Digits,
        Self::FashionMnist,
        Self::Mnist,
        Self::Cifar10,
        Self::Cifar100,
        Self::Stl10,
        Self::Folder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Shapes => "shapes",
            Self::Digits => "digits",
            Self::FashionMnist => "fashion-mnist",
            Self::Mnist => "mnist",
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::Stl10 => "stl10",
            Self::Folder => "folder",
        }
    }

    /// The kind written `name` on the command line.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether the images come from files the user points at.
    pub fn needs_path(self) -> bool {
        matches!(
            self,
            Self::Mnist | Self::Cifar10 | Self::Cifar100 | Self::Stl10 | Self::Folder
        )
    }
}

/// A data source and its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSource {
    pub kind: SourceKind,
    /// The folder, for sources read from files (`fashion-mnist` defaults to Debian's path).
    pub path: Option<PathBuf>,
    /// `shapes`: images in the training split.
    pub shapes_train: usize,
    /// `shapes`: images in the test split.
    pub shapes_test: usize,
    /// `folder`: the side every image is resized to.
    pub image_side: usize,
}

impl Default for DataSource {
    fn default() -> Self {
        Self {
            kind: SourceKind::Shapes,
            path: None,
            shapes_train: 10_000,
            shapes_test: 2_000,
            image_side: 32,
        }
    }
}

impl DataSource {
    /// Parses `NAME`, `NAME:PATH` or a bare folder (see [`Self::parse_detected`]).
    pub fn parse(spec: &str) -> Result<Self, DataError> {
        Self::parse_detected(spec).map(|(source, _)| source)
    }

    /// Parses `NAME`, `NAME:PATH`, or a bare folder whose format is then detected from its
    /// files ([`detect`]); for a folder, also what was detected, to tell the user. A path
    /// starting with `~/` is taken in `$HOME`.
    pub fn parse_detected(spec: &str) -> Result<(Self, Option<Detection>), DataError> {
        let source = |kind, path| Self {
            kind,
            path,
            ..Self::default()
        };
        let (name, path) = match spec.split_once(':') {
            Some((name, path)) => (name, Some(path)),
            None => (spec, None),
        };
        if let Some(kind) = SourceKind::from_name(name) {
            return Ok((source(kind, path.map(expand_home)), None));
        }
        let folder = expand_home(spec);
        // A name is a folder when it exists, or is written like a path (`./x`, `~/x`, `/x`).
        if folder.exists() || name.contains('/') || name.starts_with(['.', '~']) {
            let found = detect::detect(&folder)?;
            return Ok((source(found.kind, Some(found.path.clone())), Some(found)));
        }
        Err(DataError::NotFound {
            what: format!("the data source `{name}`"),
            hint: format!("--data takes {}", detect::forms()),
        })
    }

    /// One line for logs: `cifar10:/data/cifar-10-batches-bin`.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!("{}:{}", self.kind.name(), path.display()),
            None => self.kind.name().to_owned(),
        }
    }

    fn require_path(&self) -> Result<&Path, DataError> {
        self.path.as_deref().ok_or_else(|| DataError::NotFound {
            what: format!("a folder for `{}`", self.kind.name()),
            hint: format!("write the source as {}:DIR", self.kind.name()),
        })
    }

    /// Loads the splits. `seed` draws the procedural sets.
    pub fn load(&self, seed: u64) -> Result<Splits, DataError> {
        match self.kind {
            SourceKind::Shapes => Ok(builtin::shapes(seed, self.shapes_train, self.shapes_test)),
            SourceKind::Digits => builtin::digits(),
            SourceKind::FashionMnist => {
                let folder = self
                    .path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEBIAN_FASHION_MNIST));
                if !folder.is_dir() {
                    return Err(DataError::NotFound {
                        what: format!("Fashion-MNIST at {}", folder.display()),
                        hint: "on Debian or Ubuntu: `sudo apt-get install dataset-fashion-mnist`; \
                               otherwise download the four *-ubyte.gz files from \
                               github.com/zalandoresearch/fashion-mnist into a folder and use \
                               fashion-mnist:DIR"
                            .to_owned(),
                    });
                }
                let names: Vec<String> = FASHION_CLASSES.iter().map(|s| (*s).to_owned()).collect();
                idx::load(&folder, "fashion-mnist", &names)
            }
            SourceKind::Mnist => {
                let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
                idx::load(self.require_path()?, "mnist", &names)
            }
            SourceKind::Cifar10 => cifar::load_cifar10(self.require_path()?),
            SourceKind::Cifar100 => cifar::load_cifar100(self.require_path()?),
            SourceKind::Stl10 => cifar::load_stl10(self.require_path()?),
            SourceKind::Folder => folder::load(self.require_path()?, self.image_side),
        }
    }
}

/// `path` with a leading `~/` (or a lone `~`) replaced by `$HOME`; as written otherwise.
fn expand_home(path: &str) -> PathBuf {
    let rest = match path.strip_prefix('~') {
        Some("") => "",
        Some(rest) if rest.starts_with('/') => rest.trim_start_matches('/'),
        _ => return PathBuf::from(path),
    };
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(rest),
        None => PathBuf::from(path),
    }
}
