//! The MNIST layout: a folder with `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each optionally gzipped. MNIST,
//! Fashion-MNIST and KMNIST all come this way.
//!
//! An IDX file is a big-endian header (two zero bytes, a type byte, the number of dimensions,
//! then each dimension as a u32) followed by the data; these sets use unsigned bytes (0x08).

use std::path::{Path, PathBuf};

use super::images::{DataError, ImageSet, ImageShape, Splits, read_maybe_gz};

const UNSIGNED_BYTE: u8 = 0x08;

/// The dimensions and the data of an IDX file of unsigned bytes.
fn parse_idx(
    path: &Path,
    bytes: &[u8],
    expected_dims: usize,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let err = |problem: String| DataError::format(path, problem);
    if bytes.len() < 4 {
        return Err(err(format!(
            "{} bytes is too short for an IDX header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != UNSIGNED_BYTE {
        return Err(err(format!(
            "wrong magic number {:02x}{:02x}{:02x}{:02x}: not an IDX file of unsigned bytes \
             (expected 0000080{expected_dims})",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    let dims = usize::from(bytes[3]);
    if dims != expected_dims {
        return Err(err(format!(
            "{dims} dimensions where {expected_dims} were expected (magic 0000080{dims})"
        )));
    }
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(err("truncated header".to_owned()));
    }
    let shape: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected: usize = shape.iter().product();
    let data = &bytes[header..];
    if data.len() != expected {
        return Err(err(format!(
            "truncated or padded: the header says {shape:?} ({expected} bytes of data), the file has {}",
            data.len()
        )));
    }
    Ok((shape, data.to_vec()))
}

/// `name` or `name.gz` in `folder`.
fn find(folder: &Path, name: &str) -> Option<PathBuf> {
    [name.to_owned(), format!("{name}.gz")]
        .into_iter()
        .map(|n| folder.join(n))
        .find(|p| p.is_file())
}

fn load_split(
    folder: &Path,
    prefix: &str,
    class_names: &[String],
) -> Result<Option<ImageSet>, DataError> {
    let images_name = format!("{prefix}-images-idx3-ubyte");
    let labels_name = format!("{prefix}-labels-idx1-ubyte");
    let (images_path, labels_path) = match (find(folder, &images_name), find(folder, &labels_name))
    {
        (Some(i), Some(l)) => (i, l),
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(DataError::format(
                folder,
                format!("has {images_name} but not {labels_name}[.gz]"),
            ));
        }
        (None, Some(_)) => {
            return Err(DataError::format(
                folder,
                format!("has {labels_name} but not {images_name}[.gz]"),
            ));
        }
    };
    let (image_dims, pixels) = parse_idx(&images_path, &read_maybe_gz(&images_path)?, 3)?;
    let (label_dims, labels) = parse_idx(&labels_path, &read_maybe_gz(&labels_path)?, 1)?;
    if label_dims[0] != image_dims[0] {
        return Err(DataError::format(
            &labels_path,
            format!(
                "{} labels but {} holds {} images",
                label_dims[0],
                images_path.display(),
                image_dims[0]
            ),
        ));
    }
    let labels: Vec<u32> = labels.into_iter().map(u32::from).collect();
    let shape = ImageShape::new(image_dims[1], image_dims[2], 1);
    ImageSet::new(
        shape,
        pixels,
        Some(labels),
        class_names.to_vec(),
        &labels_path,
    )
    .map(Some)
}

/// Loads an MNIST-layout folder. `class_names` names the ten labels (digits for MNIST,
/// garments for Fashion-MNIST).
pub fn load(folder: &Path, name: &str, class_names: &[String]) -> Result<Splits, DataError> {
    if !folder.is_dir() {
        return Err(DataError::NotFound {
            what: format!("the folder {}", folder.display()),
            hint: "give a folder holding train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]".to_owned(),
        });
    }
    let train = load_split(folder, "train", class_names)?.ok_or_else(|| DataError::NotFound {
        what: format!("train-images-idx3-ubyte[.gz] in {}", folder.display()),
        hint: "an MNIST-layout folder holds train-images-idx3-ubyte[.gz], \
               train-labels-idx1-ubyte[.gz] and the t10k-* test files"
            .to_owned(),
    })?;
    let test = load_split(folder, "t10k", class_names)?;
    Ok(Splits {
        name: name.to_owned(),
        train,
        test,
        unlabeled: None,
    })
}

/// Writes an IDX file of unsigned bytes (tests, and tools that make small format-exact files).
pub fn encode_idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, UNSIGNED_BYTE, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
