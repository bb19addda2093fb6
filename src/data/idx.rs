//! The MNIST layout: a folder with `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each optionally gzipped. MNIST,
//! Fashion-MNIST and KMNIST all come this way.
//!
//! An IDX file is a big-endian header (two zero bytes, a type byte, the number of dimensions,
//! then each dimension as a u32) followed by the data; these sets use unsigned bytes (0x08).
//!
//! The header is read and checked before any of the data: the byte count it claims is worked
//! out with checked arithmetic and must fit [`LoadLimits`] (and, for an uncompressed file, the
//! file's length), so a small `.gz` that claims gigabytes is refused without being inflated.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::images::{
    DataError, ImageSet, ImageShape, LoadLimits, Splits, buffer_for, checked_product, open_maybe_gz,
};

const UNSIGNED_BYTE: u8 = 0x08;

/// Reads into `buf` until it is full or the data ends; the number of bytes read.
fn read_up_to(path: &Path, reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize, DataError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(stream_err(path, err)),
        }
    }
    Ok(filled)
}

/// A read error: for a `.gz` file almost always broken compression, so said so.
fn stream_err(path: &Path, err: std::io::Error) -> DataError {
    if path.extension().is_some_and(|ext| ext == "gz") {
        DataError::format(path, format!("not a valid gzip file ({err})"))
    } else {
        DataError::io(path, err)
    }
}

/// The dimensions and the data of the IDX file of unsigned bytes at `path`, with
/// `expected_dims` dimensions. For images (three dimensions) the height and width must be at
/// least 1 and at most `limits.max_side`; the data must fit `limits.max_split_bytes`.
pub fn read_idx(
    path: &Path,
    expected_dims: usize,
    limits: &LoadLimits,
) -> Result<(Vec<u64>, Vec<u8>), DataError> {
    let err = |problem: String| DataError::format(path, problem);
    let (mut reader, file_len) = open_maybe_gz(path)?;
    let mut magic = [0u8; 4];
    let got = read_up_to(path, &mut reader, &mut magic)?;
    if got < magic.len() {
        return Err(err(format!("{got} bytes is too short for an IDX header")));
    }
    if magic[0] != 0 || magic[1] != 0 || magic[2] != UNSIGNED_BYTE {
        return Err(err(format!(
            "wrong magic number {:02x}{:02x}{:02x}{:02x}: not an IDX file of unsigned bytes \
             (expected 0000080{expected_dims})",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    let dims = usize::from(magic[3]);
    if dims != expected_dims {
        return Err(err(format!(
            "{dims} dimensions where {expected_dims} were expected (magic 0000080{dims})"
        )));
    }
    let mut header = vec![0u8; 4 * dims];
    if read_up_to(path, &mut reader, &mut header)? < header.len() {
        return Err(err("truncated header".to_owned()));
    }
    let shape: Vec<u64> = header
        .chunks_exact(4)
        .map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    if let [_, height, width] = shape[..] {
        if height == 0 || width == 0 {
            return Err(err(format!(
                "the header says its images are {height}x{width}: an image needs at least one \
                 row and one column"
            )));
        }
        limits.check_side(path, height, width)?;
    }
    let expected = checked_product(path, &shape, "the header's dimensions")?;
    let what = format!("the data the header claims ({shape:?})");
    let expected_usize = limits.split_bytes(path, expected, &what)?;
    let header_len = 4 + 4 * dims as u64;
    if let Some(file_len) = file_len {
        let data_len = file_len.saturating_sub(header_len);
        if data_len != expected {
            return Err(err(format!(
                "truncated or padded: the header says {shape:?} ({expected} bytes of data), \
                 the file has {data_len}"
            )));
        }
    }
    let mut data = buffer_for(path, expected_usize)?;
    (&mut reader)
        .take(expected)
        .read_to_end(&mut data)
        .map_err(|e| stream_err(path, e))?;
    if data.len() < expected_usize {
        return Err(err(format!(
            "truncated: the header says {shape:?} ({expected} bytes of data), the file holds \
             only {}",
            data.len()
        )));
    }
    if read_up_to(path, &mut reader, &mut [0u8; 1])? > 0 {
        return Err(err(format!(
            "padded: more data than the header's {shape:?} ({expected} bytes)"
        )));
    }
    Ok((shape, data))
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
    limits: &LoadLimits,
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
    let (image_dims, pixels) = read_idx(&images_path, 3, limits)?;
    let (label_dims, labels) = read_idx(&labels_path, 1, limits)?;
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
    // Both within `limits.max_side`, checked by `read_idx`.
    let shape = ImageShape::new(image_dims[1] as usize, image_dims[2] as usize, 1);
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
/// garments for Fashion-MNIST). Within [`LoadLimits::DEFAULT`].
pub fn load(folder: &Path, name: &str, class_names: &[String]) -> Result<Splits, DataError> {
    load_with(folder, name, class_names, &LoadLimits::DEFAULT)
}

/// [`load`] within `limits`.
pub fn load_with(
    folder: &Path,
    name: &str,
    class_names: &[String],
    limits: &LoadLimits,
) -> Result<Splits, DataError> {
    if !folder.is_dir() {
        return Err(DataError::NotFound {
            what: format!("the folder {}", folder.display()),
            hint: "give a folder holding train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]".to_owned(),
        });
    }
    let train =
        load_split(folder, "train", class_names, limits)?.ok_or_else(|| DataError::NotFound {
            what: format!("train-images-idx3-ubyte[.gz] in {}", folder.display()),
            hint: "an MNIST-layout folder holds train-images-idx3-ubyte[.gz], \
               train-labels-idx1-ubyte[.gz] and the t10k-* test files"
                .to_owned(),
        })?;
    let test = load_split(folder, "t10k", class_names, limits)?;
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
