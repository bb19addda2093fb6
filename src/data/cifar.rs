//! CIFAR-10 and CIFAR-100, binary versions, and STL-10, binary version.
//!
//! - CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` .. `data_batch_5.bin`,
//!   `test_batch.bin`; each record is 1 label byte then 3072 pixel bytes (the red plane 32x32,
//!   then green, then blue); class names in `batches.meta.txt`.
//! - CIFAR-100 (`cifar-100-binary/`): `train.bin`, `test.bin`; each record is a coarse label
//!   byte, a fine label byte, then 3072 pixel bytes; fine class names in `fine_label_names.txt`.
//! - STL-10 (`stl10_binary/`): `train_X.bin`, `train_y.bin`, `test_X.bin`, `test_y.bin`,
//!   `unlabeled_X.bin`; images are 3x96x96 bytes each, every plane stored column-major (the
//!   MATLAB layout), labels are bytes 1..=10; names in `class_names.txt`.
//!
//! Files are read record by record into the split's buffer, whose size is worked out from the
//! file lengths with checked arithmetic and refused beyond [`LoadLimits::max_split_bytes`]
//! before anything is allocated.

use std::io::BufReader;
use std::path::Path;

use super::images::{DataError, ImageSet, ImageShape, LoadLimits, Splits, buffer_for, open_file};

const CIFAR_SIDE: usize = 32;
const CIFAR_PIXELS: usize = 3 * CIFAR_SIDE * CIFAR_SIDE;
const STL_SIDE: usize = 96;
const STL_PIXELS: usize = 3 * STL_SIDE * STL_SIDE;

const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
const STL10_CLASSES: [&str; 10] = [
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
];

/// The most bytes a class-names file may hold.
const MAX_NAMES_BYTES: u64 = 1 << 20;

/// `path` opened with its length in bytes.
fn open_with_len(path: &Path) -> Result<(BufReader<std::fs::File>, u64), DataError> {
    let file = open_file(path)?;
    let len = file
        .metadata()
        .map_err(|err| DataError::io(path, err))?
        .len();
    Ok((BufReader::new(file), len))
}

/// Fills `buf` from `reader`; a file that ends early is named as truncated.
fn read_record(
    path: &Path,
    reader: &mut impl std::io::Read,
    buf: &mut [u8],
) -> Result<(), DataError> {
    reader.read_exact(buf).map_err(|err| {
        if err.kind() == std::io::ErrorKind::UnexpectedEof {
            DataError::format(path, "truncated while it was read")
        } else {
            DataError::io(path, err)
        }
    })
}

/// Class names from a text file, one per line, or `default` when the file is absent.
fn class_names(path: &Path, default: &[&str]) -> Result<Vec<String>, DataError> {
    if !path.is_file() {
        return Ok(default.iter().map(|s| (*s).to_owned()).collect());
    }
    let (_, len) = open_with_len(path)?;
    if len > MAX_NAMES_BYTES {
        return Err(DataError::format(
            path,
            format!(
                "{len} bytes is too long for a list of class names (at most {MAX_NAMES_BYTES})"
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|err| DataError::io(path, err))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Planar CHW pixels to interleaved HWC.
fn planar_to_hwc(planar: &[u8], side: usize, column_major: bool, out: &mut Vec<u8>) {
    let plane = side * side;
    for row in 0..side {
        for col in 0..side {
            let offset = if column_major {
                col * side + row
            } else {
                row * side + col
            };
            for channel in 0..3 {
                out.push(planar[channel * plane + offset]);
            }
        }
    }
}

/// Records of `label_bytes` label bytes (the label used is the last) and 3072 pixel bytes,
/// appended to `pixels` and `labels`; the pixels of the split may not pass `limits`.
fn parse_cifar_records(
    path: &Path,
    label_bytes: usize,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u32>,
    classes: usize,
    limits: &LoadLimits,
) -> Result<(), DataError> {
    let (mut reader, len) = open_with_len(path)?;
    let record = label_bytes + CIFAR_PIXELS;
    if len == 0 || len % record as u64 != 0 {
        return Err(DataError::format(
            path,
            format!(
                "{len} bytes is not a whole number of {record}-byte records (truncated or not a \
                 CIFAR binary file)"
            ),
        ));
    }
    let count = len / record as u64;
    let total = (count.checked_mul(CIFAR_PIXELS as u64))
        .and_then(|new| new.checked_add(pixels.len() as u64))
        .unwrap_or(u64::MAX);
    let total = limits.split_bytes(path, total, "the pixels of this split")?;
    pixels
        .try_reserve_exact(total.saturating_sub(pixels.len()))
        .map_err(|_| {
            DataError::format(path, format!("cannot allocate the {total} bytes it needs"))
        })?;
    labels.reserve(count as usize);
    let mut chunk = vec![0u8; record];
    for index in 0..count {
        read_record(path, &mut reader, &mut chunk)?;
        let label = u32::from(chunk[label_bytes - 1]);
        if label as usize >= classes {
            return Err(DataError::format(
                path,
                format!("record {index} has label {label}, but there are {classes} classes"),
            ));
        }
        labels.push(label);
        planar_to_hwc(&chunk[label_bytes..], CIFAR_SIDE, false, pixels);
    }
    Ok(())
}

fn cifar_split(
    folder: &Path,
    files: &[String],
    label_bytes: usize,
    names: &[String],
    limits: &LoadLimits,
) -> Result<ImageSet, DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for file in files {
        let path = folder.join(file);
        if !path.exists() {
            return Err(DataError::NotFound {
                what: path.display().to_string(),
                hint: "the binary version of CIFAR unpacks into cifar-10-batches-bin/ or \
                       cifar-100-binary/; point --data at that folder"
                    .to_owned(),
            });
        }
        parse_cifar_records(
            &path,
            label_bytes,
            &mut pixels,
            &mut labels,
            names.len(),
            limits,
        )?;
    }
    ImageSet::new(
        ImageShape::new(CIFAR_SIDE, CIFAR_SIDE, 3),
        pixels,
        Some(labels),
        names.to_vec(),
        folder,
    )
}

/// CIFAR-10 from the folder holding `data_batch_*.bin` and `test_batch.bin`, within
/// [`LoadLimits::DEFAULT`].
pub fn load_cifar10(folder: &Path) -> Result<Splits, DataError> {
    load_cifar10_with(folder, &LoadLimits::DEFAULT)
}

/// [`load_cifar10`] within `limits`.
pub fn load_cifar10_with(folder: &Path, limits: &LoadLimits) -> Result<Splits, DataError> {
    let names = class_names(&folder.join("batches.meta.txt"), &CIFAR10_CLASSES)?;
    let train_files: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).collect();
    let test_files = ["test_batch.bin".to_owned()];
    Ok(Splits {
        name: "cifar10".to_owned(),
        train: cifar_split(folder, &train_files, 1, &names, limits)?,
        test: Some(cifar_split(folder, &test_files, 1, &names, limits)?),
        unlabeled: None,
    })
}

/// CIFAR-100 (fine labels) from the folder holding `train.bin` and `test.bin`, within
/// [`LoadLimits::DEFAULT`].
pub fn load_cifar100(folder: &Path) -> Result<Splits, DataError> {
    load_cifar100_with(folder, &LoadLimits::DEFAULT)
}

/// [`load_cifar100`] within `limits`.
pub fn load_cifar100_with(folder: &Path, limits: &LoadLimits) -> Result<Splits, DataError> {
    let default: Vec<String> = (0..100).map(|i| format!("class {i}")).collect();
    let default: Vec<&str> = default.iter().map(String::as_str).collect();
    let names = class_names(&folder.join("fine_label_names.txt"), &default)?;
    Ok(Splits {
        name: "cifar100".to_owned(),
        train: cifar_split(folder, &["train.bin".to_owned()], 2, &names, limits)?,
        test: Some(cifar_split(
            folder,
            &["test.bin".to_owned()],
            2,
            &names,
            limits,
        )?),
        unlabeled: None,
    })
}

/// The images of an STL-10 `*_X.bin` file, HWC, within `limits`.
fn stl_images(path: &Path, limits: &LoadLimits) -> Result<Vec<u8>, DataError> {
    let (mut reader, len) = open_with_len(path)?;
    if len == 0 || len % STL_PIXELS as u64 != 0 {
        return Err(DataError::format(
            path,
            format!("{len} bytes is not a whole number of 3x96x96 images (truncated?)"),
        ));
    }
    // The HWC pixels take as many bytes as the file.
    let mut pixels = buffer_for(path, limits.split_bytes(path, len, "the images")?)?;
    let mut image = vec![0u8; STL_PIXELS];
    for _ in 0..len / STL_PIXELS as u64 {
        read_record(path, &mut reader, &mut image)?;
        planar_to_hwc(&image, STL_SIDE, true, &mut pixels);
    }
    Ok(pixels)
}

/// The labels of an STL-10 `*_y.bin` file, from 0, within `limits`.
fn stl_labels(path: &Path, classes: usize, limits: &LoadLimits) -> Result<Vec<u32>, DataError> {
    let (mut reader, len) = open_with_len(path)?;
    let count = limits.split_bytes(path, len, "the labels")?;
    let mut bytes = buffer_for(path, count)?;
    bytes.resize(count, 0);
    read_record(path, &mut reader, &mut bytes)?;
    bytes
        .into_iter()
        .enumerate()
        .map(|(index, byte)| {
            if byte == 0 || usize::from(byte) > classes {
                Err(DataError::format(
                    path,
                    format!("label {index} is {byte}; STL-10 labels run from 1 to {classes}"),
                ))
            } else {
                Ok(u32::from(byte) - 1)
            }
        })
        .collect()
}

fn stl_split(
    folder: &Path,
    split: &str,
    names: &[String],
    limits: &LoadLimits,
) -> Result<ImageSet, DataError> {
    let images_path = folder.join(format!("{split}_X.bin"));
    let labels_path = folder.join(format!("{split}_y.bin"));
    for path in [&images_path, &labels_path] {
        if !path.exists() {
            return Err(DataError::NotFound {
                what: path.display().to_string(),
                hint: "point --data at the stl10_binary/ folder of the binary version".to_owned(),
            });
        }
    }
    let pixels = stl_images(&images_path, limits)?;
    let labels = stl_labels(&labels_path, names.len(), limits)?;
    let count = pixels.len() / STL_PIXELS;
    if labels.len() != count {
        return Err(DataError::format(
            &labels_path,
            format!(
                "{} labels but {} holds {count} images",
                labels.len(),
                images_path.display()
            ),
        ));
    }
    ImageSet::new(
        ImageShape::new(STL_SIDE, STL_SIDE, 3),
        pixels,
        Some(labels),
        names.to_vec(),
        &labels_path,
    )
}

/// STL-10 from the `stl10_binary/` folder, with the unlabeled split when it is there, within
/// [`LoadLimits::DEFAULT`].
pub fn load_stl10(folder: &Path) -> Result<Splits, DataError> {
    load_stl10_with(folder, &LoadLimits::DEFAULT)
}

/// [`load_stl10`] within `limits` (each split, the unlabeled one too, within the bound).
pub fn load_stl10_with(folder: &Path, limits: &LoadLimits) -> Result<Splits, DataError> {
    let names = class_names(&folder.join("class_names.txt"), &STL10_CLASSES)?;
    let unlabeled_path = folder.join("unlabeled_X.bin");
    let unlabeled = if unlabeled_path.exists() {
        Some(ImageSet::new(
            ImageShape::new(STL_SIDE, STL_SIDE, 3),
            stl_images(&unlabeled_path, limits)?,
            None,
            names.clone(),
            &unlabeled_path,
        )?)
    } else {
        None
    };
    Ok(Splits {
        name: "stl10".to_owned(),
        train: stl_split(folder, "train", &names, limits)?,
        test: Some(stl_split(folder, "test", &names, limits)?),
        unlabeled,
    })
}
