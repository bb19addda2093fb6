//! An image folder: one subfolder per class (`root/cat/*.png`, `root/dog/*.jpg`), or images
//! directly in the root for an unlabeled set. PNG and JPEG, read with the `image` crate,
//! converted to RGB and resized to `side x side` (bilinear) so that every image has one shape.
//! Class order is the sorted subfolder names; file order is sorted too, so a load is
//! reproducible.
//!
//! Memory stays bounded ([`LoadLimits`]): the side may be at most `max_side`, the resized
//! pixels of the whole folder at most `max_split_bytes` (checked before any image is
//! decoded), and the decoder may take at most `max_decode_bytes` for one image (a PNG whose
//! header claims 100000x100000 is refused, not allocated). Images are decoded
//! [`DECODE_BATCH`] at a time in parallel, so decoding holds at most that many such buffers.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rayon::prelude::*;

use super::images::{
    DataError, ImageSet, ImageShape, LoadLimits, Splits, buffer_for, checked_product,
};

/// How many images are decoded at once.
pub const DECODE_BATCH: usize = 8;

pub(super) fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn sorted_entries(folder: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|err| DataError::io(folder, err))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    Ok(entries)
}

fn load_image(path: &Path, side: u32, max_decode_bytes: u64) -> Result<Vec<u8>, DataError> {
    let mut reader = image::ImageReader::open(path).map_err(|err| DataError::io(path, err))?;
    let mut decode_limits = image::Limits::default();
    decode_limits.max_alloc = Some(max_decode_bytes);
    reader.limits(decode_limits);
    let image = reader
        .decode()
        .map_err(|err| DataError::format(path, format!("unreadable image ({err})")))?;
    Ok(image
        .resize_exact(side, side, FilterType::Triangle)
        .to_rgb8()
        .into_raw())
}

/// Loads `root`, resizing to `side x side` RGB, within [`LoadLimits::DEFAULT`].
pub fn load(root: &Path, side: usize) -> Result<Splits, DataError> {
    load_with(root, side, &LoadLimits::DEFAULT)
}

/// [`load`] within `limits`.
pub fn load_with(root: &Path, side: usize, limits: &LoadLimits) -> Result<Splits, DataError> {
    if !root.is_dir() {
        return Err(DataError::NotFound {
            what: format!("the image folder {}", root.display()),
            hint: "give a folder with one subfolder of images per class, or images directly \
                   in it for an unlabeled set"
                .to_owned(),
        });
    }
    let entries = sorted_entries(root)?;
    let class_dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let mut files: Vec<(PathBuf, Option<u32>)> = Vec::new();
    let mut class_names = Vec::new();
    if class_dirs.is_empty() {
        files.extend(
            entries
                .iter()
                .filter(|p| is_image(p))
                .map(|p| (p.clone(), None)),
        );
    } else {
        for dir in class_dirs {
            let label = class_names.len() as u32;
            let images: Vec<PathBuf> = sorted_entries(dir)?
                .into_iter()
                .filter(|p| is_image(p))
                .collect();
            if images.is_empty() {
                return Err(DataError::format(
                    dir,
                    "class folder holds no .png or .jpg images",
                ));
            }
            class_names.push(
                dir.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            );
            files.extend(images.into_iter().map(|p| (p, Some(label))));
        }
    }
    if files.is_empty() {
        return Err(DataError::format(
            root,
            "holds no .png or .jpg images and no class subfolders",
        ));
    }
    if side == 0 || side > limits.max_side {
        return Err(DataError::format(
            root,
            format!(
                "cannot resize its images to {side}x{side}: the side must be 1 to {}",
                limits.max_side
            ),
        ));
    }
    let total = checked_product(
        root,
        &[files.len() as u64, side as u64, side as u64, 3],
        "images x side x side x 3",
    )?;
    let what = format!("{} images of {side}x{side}x3", files.len());
    let mut pixels = buffer_for(root, limits.split_bytes(root, total, &what)?)?;
    let side_u32 = u32::try_from(side).unwrap_or(u32::MAX);
    for batch in files.chunks(DECODE_BATCH) {
        let decoded: Vec<Vec<u8>> = batch
            .par_iter()
            .map(|(path, _)| load_image(path, side_u32, limits.max_decode_bytes))
            .collect::<Result<_, _>>()?;
        for image in decoded {
            pixels.extend_from_slice(&image);
        }
    }
    let labels = if class_names.is_empty() {
        None
    } else {
        Some(files.iter().map(|(_, l)| l.unwrap_or(0)).collect())
    };
    let name = root
        .file_name()
        .map_or_else(|| "images".to_owned(), |n| n.to_string_lossy().into_owned());
    Ok(Splits {
        name,
        train: ImageSet::new(
            ImageShape::new(side, side, 3),
            pixels,
            labels,
            class_names,
            root,
        )?,
        test: None,
        unlabeled: None,
    })
}
