//! An image folder: one subfolder per class (`root/cat/*.png`, `root/dog/*.jpg`), or images
//! directly in the root for an unlabeled set. PNG and JPEG, read with the `image` crate,
//! converted to RGB and resized to `side x side` (bilinear) so that every image has one shape.
//! Class order is the sorted subfolder names; file order is sorted too, so a load is
//! reproducible.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rayon::prelude::*;

use super::images::{DataError, ImageSet, ImageShape, Splits};

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

fn load_image(path: &Path, side: u32) -> Result<Vec<u8>, DataError> {
    let image = image::open(path)
        .map_err(|err| DataError::format(path, format!("unreadable image ({err})")))?;
    Ok(image
        .resize_exact(side, side, FilterType::Triangle)
        .to_rgb8()
        .into_raw())
}

/// Loads `root`, resizing to `side x side` RGB.
pub fn load(root: &Path, side: usize) -> Result<Splits, DataError> {
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
    let side_u32 = u32::try_from(side).unwrap_or(u32::MAX);
    let decoded: Vec<Vec<u8>> = files
        .par_iter()
        .map(|(path, _)| load_image(path, side_u32))
        .collect::<Result<_, _>>()?;
    let pixels = decoded.concat();
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
