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

use std::path::Path;

use super::images::{DataError, ImageSet, ImageShape, Splits};

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

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|err| DataError::io(path, err))
}

/// Class names from a text file, one per line, or `default` when the file is absent.
fn class_names(path: &Path, default: &[&str]) -> Result<Vec<String>, DataError> {
    if !path.is_file() {
        return Ok(default.iter().map(|s| (*s).to_owned()).collect());
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

/// Records of `label_bytes` label bytes (the label used is the last) and 3072 pixel bytes.
fn parse_cifar_records(
    path: &Path,
    label_bytes: usize,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u32>,
    classes: usize,
) -> Result<(), DataError> {
    let bytes = read(path)?;
    let record = label_bytes + CIFAR_PIXELS;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes is not a whole number of {record}-byte records (truncated or not a \
                 CIFAR binary file)",
                bytes.len()
            ),
        ));
    }
    for (index, chunk) in bytes.chunks_exact(record).enumerate() {
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
) -> Result<ImageSet, DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for file in files {
        let path = folder.join(file);
        if !path.is_file() {
            return Err(DataError::NotFound {
                what: path.display().to_string(),
                hint: "the binary version of CIFAR unpacks into cifar-10-batches-bin/ or \
                       cifar-100-binary/; point --data at that folder"
                    .to_owned(),
            });
        }
        parse_cifar_records(&path, label_bytes, &mut pixels, &mut labels, names.len())?;
    }
    ImageSet::new(
        ImageShape::new(CIFAR_SIDE, CIFAR_SIDE, 3),
        pixels,
        Some(labels),
        names.to_vec(),
        folder,
    )
}

/// CIFAR-10 from the folder holding `data_batch_*.bin` and `test_batch.bin`.
pub fn load_cifar10(folder: &Path) -> Result<Splits, DataError> {
    let names = class_names(&folder.join("batches.meta.txt"), &CIFAR10_CLASSES)?;
    let train_files: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).collect();
    Ok(Splits {
        name: "cifar10".to_owned(),
        train: cifar_split(folder, &train_files, 1, &names)?,
        test: Some(cifar_split(
            folder,
            &["test_batch.bin".to_owned()],
            1,
            &names,
        )?),
        unlabeled: None,
    })
}

/// CIFAR-100 (fine labels) from the folder holding `train.bin` and `test.bin`.
pub fn load_cifar100(folder: &Path) -> Result<Splits, DataError> {
    let default: Vec<String> = (0..100).map(|i| format!("class {i}")).collect();
    let default: Vec<&str> = default.iter().map(String::as_str).collect();
    let names = class_names(&folder.join("fine_label_names.txt"), &default)?;
    Ok(Splits {
        name: "cifar100".to_owned(),
        train: cifar_split(folder, &["train.bin".to_owned()], 2, &names)?,
        test: Some(cifar_split(folder, &["test.bin".to_owned()], 2, &names)?),
        unlabeled: None,
    })
}

fn stl_images(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read(path)?;
    if bytes.is_empty() || bytes.len() % STL_PIXELS != 0 {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes is not a whole number of 3x96x96 images (truncated?)",
                bytes.len()
            ),
        ));
    }
    let mut pixels = Vec::with_capacity(bytes.len());
    for image in bytes.chunks_exact(STL_PIXELS) {
        planar_to_hwc(image, STL_SIDE, true, &mut pixels);
    }
    Ok(pixels)
}

fn stl_labels(path: &Path, classes: usize) -> Result<Vec<u32>, DataError> {
    read(path)?
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

fn stl_split(folder: &Path, split: &str, names: &[String]) -> Result<ImageSet, DataError> {
    let images_path = folder.join(format!("{split}_X.bin"));
    let labels_path = folder.join(format!("{split}_y.bin"));
    for path in [&images_path, &labels_path] {
        if !path.is_file() {
            return Err(DataError::NotFound {
                what: path.display().to_string(),
                hint: "point --data at the stl10_binary/ folder of the binary version".to_owned(),
            });
        }
    }
    let pixels = stl_images(&images_path)?;
    let labels = stl_labels(&labels_path, names.len())?;
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

/// STL-10 from the `stl10_binary/` folder, with the unlabeled split when it is there.
pub fn load_stl10(folder: &Path) -> Result<Splits, DataError> {
    let names = class_names(&folder.join("class_names.txt"), &STL10_CLASSES)?;
    let unlabeled_path = folder.join("unlabeled_X.bin");
    let unlabeled = if unlabeled_path.is_file() {
        Some(ImageSet::new(
            ImageShape::new(STL_SIDE, STL_SIDE, 3),
            stl_images(&unlabeled_path)?,
            None,
            names.clone(),
            &unlabeled_path,
        )?)
    } else {
        None
    };
    Ok(Splits {
        name: "stl10".to_owned(),
        train: stl_split(folder, "train", &names)?,
        test: Some(stl_split(folder, "test", &names)?),
        unlabeled,
    })
}
