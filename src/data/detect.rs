//! Telling a data folder's format from the names of the files in it, for `--data DIR`.
//!
//! Each file-backed format is known by one file its loader needs, looked for in this order:
//! `train-images-idx3-ubyte[.gz]` (the MNIST layout, see [`super::idx`]), `data_batch_1.bin`
//! (CIFAR-10), `train.bin` (CIFAR-100), `train_X.bin` (STL-10, see [`super::cifar`]). A folder
//! with none of them is an image folder ([`super::folder`]) when PNG or JPEG files sit in it
//! or in its subfolders. Only names are read: the loader checks the contents and names any
//! file that is wrong.

use std::path::{Path, PathBuf};

use super::folder::is_image;
use super::images::DataError;
use super::source::SourceKind;

/// The marker file of each binary format, in the order they are tried.
const MARKERS: [(SourceKind, &str, &str); 4] = [
    (
        SourceKind::Mnist,
        "train-images-idx3-ubyte",
        "MNIST-layout IDX files",
    ),
    (SourceKind::Cifar10, "data_batch_1.bin", "CIFAR-10 binaries"),
    (SourceKind::Cifar100, "train.bin", "CIFAR-100 binaries"),
    (SourceKind::Stl10, "train_X.bin", "STL-10 binaries"),
];

/// A format found in a folder, and what gave it away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    pub kind: SourceKind,
    pub path: PathBuf,
    /// What was found, e.g. `CIFAR-10 binaries (data_batch_1.bin)`.
    pub evidence: String,
}

impl Detection {
    /// One line for the user: `detected cifar10 (CIFAR-10 binaries, data_batch_1.bin) in DIR`.
    pub fn describe(&self) -> String {
        let note = match self.kind {
            SourceKind::Mnist => {
                "; its classes are named 0-9, write fashion-mnist:DIR for Fashion-MNIST's names"
            }
            SourceKind::FashionMnist => {
                "; the folder's name says Fashion-MNIST, write mnist:DIR for classes named 0-9"
            }
            _ => "",
        };
        format!(
            "detected {} ({}) in {}{note}",
            self.kind.name(),
            self.evidence,
            self.path.display()
        )
    }
}

/// `name`, else `name.gz`, in `folder`: the file name found.
fn marker_file(folder: &Path, name: &str) -> Option<String> {
    [name.to_owned(), format!("{name}.gz")]
        .into_iter()
        .find(|n| folder.join(n).is_file())
}

/// The binary format `folder` holds, if any.
fn detect_binary(folder: &Path) -> Option<Detection> {
    MARKERS.iter().find_map(|&(kind, marker, what)| {
        // Only the MNIST layout comes gzipped.
        let file = if kind == SourceKind::Mnist {
            marker_file(folder, marker)?
        } else {
            folder.join(marker).is_file().then(|| marker.to_owned())?
        };
        // Fashion-MNIST has MNIST's file names; only the folder's name tells them apart.
        let fashion = kind == SourceKind::Mnist
            && folder
                .to_string_lossy()
                .to_ascii_lowercase()
                .contains("fashion");
        Some(Detection {
            kind: if fashion {
                SourceKind::FashionMnist
            } else {
                kind
            },
            path: folder.to_owned(),
            evidence: format!("{what}, {file}"),
        })
    })
}

/// Entries of `folder` (unsorted), or the error naming it.
fn entries(folder: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(std::fs::read_dir(folder)
        .map_err(|err| DataError::io(folder, err))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect())
}

/// An image folder: images in class subfolders, or directly in `folder`.
fn detect_images(folder: &Path, entries: &[PathBuf]) -> Option<Detection> {
    let classes = entries
        .iter()
        .filter(|path| path.is_dir())
        .filter(|dir| {
            std::fs::read_dir(dir).is_ok_and(|mut inside| {
                inside.any(|entry| entry.is_ok_and(|e| is_image(&e.path())))
            })
        })
        .count();
    let evidence = if classes > 0 {
        format!("PNG/JPEG images in {classes} class subfolders")
    } else if entries.iter().any(|path| is_image(path)) {
        "PNG/JPEG images, no class subfolders: unlabeled".to_owned()
    } else {
        return None;
    };
    Some(Detection {
        kind: SourceKind::Folder,
        path: folder.to_owned(),
        evidence,
    })
}

/// The format of the data in `folder`.
///
/// # Errors
/// When `folder` does not exist, is not a folder, or holds none of the formats; the message
/// says what was looked for, and names a subfolder that does hold one (the folder above a set).
pub fn detect(folder: &Path) -> Result<Detection, DataError> {
    if !folder.exists() {
        return Err(DataError::NotFound {
            what: format!("the folder {}", folder.display()),
            hint: format!("--data takes {}", forms()),
        });
    }
    if !folder.is_dir() {
        return Err(DataError::format(
            folder,
            format!(
                "is a file; --data takes the folder that holds it{}",
                folder
                    .parent()
                    .map(|parent| format!(" ({})", parent.display()))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(found) = detect_binary(folder) {
        return Ok(found);
    }
    let listing = entries(folder)?;
    if let Some(found) = detect_images(folder, &listing) {
        return Ok(found);
    }
    // Unreadable subfolders only go unsuggested.
    let mut inside: Vec<Detection> = listing
        .iter()
        .filter(|path| path.is_dir())
        .filter_map(|dir| {
            detect_binary(dir).or_else(|| detect_images(dir, &entries(dir).unwrap_or_default()))
        })
        .collect();
    inside.sort_by(|a, b| a.path.cmp(&b.path));
    let suggestion = match inside.first() {
        Some(found) => format!(
            "; {} holds {} ({}): point --data there",
            found.path.display(),
            found.kind.name(),
            found.evidence
        ),
        None => String::new(),
    };
    let looked_for = MARKERS
        .iter()
        .map(|(_, marker, what)| format!("{what} ({marker})"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(DataError::NotFound {
        what: format!("a known data format in {}", folder.display()),
        hint: format!(
            "looked for {looked_for} (the IDX files optionally .gz), and PNG/JPEG images in \
             it or in class subfolders{suggestion}. To name the format yourself, write {}",
            named_forms()
        ),
    })
}

/// The `NAME:DIR` forms of the file-backed sources.
fn named_forms() -> String {
    [SourceKind::FashionMnist]
        .into_iter()
        .chain(SourceKind::ALL.into_iter().filter(|k| k.needs_path()))
        .map(|kind| format!("{}:DIR", kind.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything `--data` takes, for error messages.
pub fn forms() -> String {
    format!(
        "a built-in set ({}), NAME:DIR ({}), or a folder whose format is detected",
        SourceKind::ALL
            .into_iter()
            .filter(|kind| !kind.needs_path())
            .map(SourceKind::name)
            .collect::<Vec<_>>()
            .join(", "),
        named_forms()
    )
}
