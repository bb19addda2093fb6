//! Hostile data files: headers that claim gigabytes, sizes that overflow, images too large,
//! folders where files belong, and random or mutated bytes for every loader. Each loader must
//! return an error naming the file, never panic, and never allocate past its bound
//! (`LoadLimits`; the property tests pass small bounds). Fixtures are written here, small.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use msbreg::data::images::{DataError, LoadLimits};
use msbreg::data::{cifar, folder, idx};
use proptest::prelude::*;

fn ten_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

fn message<T>(result: Result<T, DataError>) -> String {
    match result {
        Ok(_) => panic!("expected an error, the load succeeded"),
        Err(err) => err.to_string(),
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// The most memory this test process has held so far (Linux), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Nothing in this file needs more; a loader that inflates or allocates what a header claims
/// goes past it.
const PEAK_RSS_BOUND: u64 = 384 << 20;

fn assert_memory_bounded() {
    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < PEAK_RSS_BOUND, "peak RSS {peak} bytes");
    }
}

/// Small bounds for the property tests.
const SMALL: LoadLimits = LoadLimits {
    max_side: 16,
    max_split_bytes: 16 << 10,
    max_decode_bytes: 64 << 10,
};

/// No bound on the side, to reach the overflow checks behind the side check.
const WIDE: LoadLimits = LoadLimits {
    max_side: usize::MAX,
    max_split_bytes: 16 << 10,
    max_decode_bytes: 64 << 10,
};

fn write_labels(dir: &Path, count: u32) {
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx::encode_idx(&[count], &labels),
    )
    .expect("write");
}

#[test]
fn a_small_gz_claiming_gigabytes_is_refused_before_it_is_inflated() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The header claims 2^31 images of 512x512, and 512 MiB of zeros follow: a file of
    // about 0.5 MB that the old loader inflated whole before it looked at the header.
    let path = dir.path().join("train-images-idx3-ubyte.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).expect("create"),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(&idx::encode_idx(&[1 << 31, 512, 512], &[]))
        .expect("gzip");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        encoder.write_all(&zeros).expect("gzip");
    }
    encoder.finish().expect("gzip");
    drop(zeros);
    write_labels(dir.path(), 2);
    let err = message(idx::load(dir.path(), "mnist", &ten_names()));
    assert!(
        err.contains("train-images-idx3-ubyte.gz") && err.contains("bound"),
        "{err}"
    );
    assert_memory_bounded();
}

#[test]
fn a_gz_body_shorter_than_its_header_is_truncated_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = idx::encode_idx(&[3, 4, 4], &[7; 40]);
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), gz(&body)).expect("write");
    write_labels(dir.path(), 3);
    let err = message(idx::load(dir.path(), "mnist", &ten_names()));
    assert!(
        err.contains("train-images-idx3-ubyte.gz") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn images_larger_than_the_bound_are_refused_with_their_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let side = 600u32;
    let pixels = vec![0u8; 2 * (side * side) as usize];
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx::encode_idx(&[2, side, side], &pixels),
    )
    .expect("write");
    write_labels(dir.path(), 2);
    let err = message(idx::load(dir.path(), "mnist", &ten_names()));
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("600x600") && err.contains("512"),
        "{err}"
    );
}

#[test]
fn header_sizes_that_overflow_are_refused_not_wrapped() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_labels(dir.path(), 2);
    let images = dir.path().join("train-images-idx3-ubyte");
    for dims in [[1 << 31, 1 << 31, 4], [u32::MAX; 3]] {
        std::fs::write(&images, idx::encode_idx(&dims, &[])).expect("write");
        // Past the side check, the byte count itself overflows.
        let err = message(idx::load_with(dir.path(), "mnist", &ten_names(), &WIDE));
        assert!(
            err.contains("train-images-idx3-ubyte") && err.contains("2^64"),
            "{dims:?}: {err}"
        );
        let wrapped = dims
            .iter()
            .fold(1u64, |acc, &d| acc.wrapping_mul(u64::from(d)));
        assert!(!err.contains(&format!("({wrapped} bytes")), "{err}");
        let err = message(idx::load(dir.path(), "mnist", &ten_names()));
        assert!(
            err.contains("train-images-idx3-ubyte") && err.contains("bound"),
            "{err}"
        );
    }
}

#[test]
fn images_of_0x0_are_blamed_on_the_images_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx::encode_idx(&[5, 0, 0], &[]),
    )
    .expect("write");
    write_labels(dir.path(), 5);
    let err = message(idx::load(dir.path(), "mnist", &ten_names()));
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("0x0"),
        "{err}"
    );
    assert!(!err.contains("labels"), "{err}");
}

#[test]
fn a_batch_that_is_a_directory_is_called_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("data_batch_1.bin")).expect("mkdir");
    let err = message(cifar::load_cifar10(dir.path()));
    assert!(
        err.contains("data_batch_1.bin") && err.contains("directory") && !err.contains("not found"),
        "{err}"
    );
    std::fs::create_dir(dir.path().join("train_X.bin")).expect("mkdir");
    std::fs::write(dir.path().join("train_y.bin"), [1u8]).expect("write");
    let err = message(cifar::load_stl10(dir.path()));
    assert!(
        err.contains("train_X.bin") && err.contains("directory"),
        "{err}"
    );
}

#[test]
fn a_folder_side_past_the_bound_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("a.png"), b"not read").expect("write");
    let err = message(folder::load(dir.path(), 4096));
    assert!(err.contains("4096") && err.contains("512"), "{err}");
}

#[test]
fn a_view_side_past_the_bound_is_refused_by_the_config() {
    let mut config = msbreg::config::TrainConfig {
        image_side: 3000,
        ..Default::default()
    };
    let err = config
        .validate()
        .expect_err("3000 is past the bound")
        .to_string();
    assert!(err.contains("image_side") && err.contains("512"), "{err}");
    config.image_side = 512;
    assert!(config.validate().is_ok());
}

/// A PNG whose header claims `side x side` RGB with no image data after it.
fn png_claiming(side: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut crc = flate2::Crc::new();
    crc.update(&ihdr);
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

#[test]
fn a_png_claiming_a_huge_image_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.png");
    std::fs::write(&path, png_claiming(12_000)).expect("write");
    let err = message(folder::load(dir.path(), 32));
    assert!(err.contains("huge.png"), "{err}");
    assert_memory_bounded();
}

/// `msbreg` run with `args`; its stderr.
fn stderr_of(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_msbreg"))
        .args(["--backend", "cpu"])
        .args(args)
        .output()
        .expect("runs msbreg");
    assert!(!output.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_output_folder_that_cannot_be_made_is_named_with_its_reason_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    let run_str = run.to_str().expect("utf-8 path");
    let made = Command::new(env!("CARGO_BIN_EXE_msbreg"))
        .args([
            "--backend",
            "cpu",
            "simulate",
            "--steps",
            "2",
            "--out",
            run_str,
        ])
        .output()
        .expect("runs msbreg");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let cases: [&[&str]; 3] = [
        &["simulate", "--out", "/proc/run"],
        &["train", "--data", "digits", "--out", "/proc/run"],
        &["export", "--run", run_str, "--out", "/proc/run"],
    ];
    for args in cases {
        let err = stderr_of(args);
        assert_eq!(err.matches("/proc/run").count(), 1, "{args:?}: {err}");
        assert_eq!(err.matches("os error").count(), 1, "{args:?}: {err}");
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// `good` with the bytes at `edits` replaced (positions taken modulo its length), cut to
/// `cut` bytes when `cut` is shorter, then `tail` appended.
fn mutate(good: &[u8], edits: &[(usize, u8)], cut: usize, tail: &[u8]) -> Vec<u8> {
    let mut bytes = good.to_vec();
    for &(at, value) in edits {
        let len = bytes.len();
        if len > 0 {
            bytes[at % len] = value;
        }
    }
    bytes.truncate(cut);
    bytes.extend_from_slice(tail);
    bytes
}

/// Ok, or an error that names `dir` (every fixture file lies in it).
fn ok_or_named<T>(result: Result<T, DataError>, dir: &Path) {
    if let Err(err) = result {
        let text = err.to_string();
        let dir = dir.to_string_lossy();
        assert!(text.contains(&*dir), "{text}");
    }
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((0..64usize, any::<u8>()), 0..6)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn idx_loads_or_names_the_file(
        edits in edits(),
        cut in 0..200usize,
        tail in prop::collection::vec(any::<u8>(), 0..8),
        gzip in any::<bool>(),
        on_labels in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let images = idx::encode_idx(&[3, 4, 5], &[9; 60]);
        let labels = idx::encode_idx(&[3], &[0, 1, 2]);
        let (hit, kept) = if on_labels { (&labels, &images) } else { (&images, &labels) };
        let hit = mutate(hit, &edits, cut, &tail);
        let (hit, kept) = if gzip { (gz(&hit), gz(kept)) } else { (hit, kept.clone()) };
        let suffix = if gzip { ".gz" } else { "" };
        let (hit_name, kept_name) = if on_labels {
            ("train-labels-idx1-ubyte", "train-images-idx3-ubyte")
        } else {
            ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
        };
        std::fs::write(dir.path().join(format!("{hit_name}{suffix}")), hit).expect("write");
        std::fs::write(dir.path().join(format!("{kept_name}{suffix}")), kept).expect("write");
        ok_or_named(idx::load_with(dir.path(), "mnist", &ten_names(), &SMALL), dir.path());
        assert_memory_bounded();
    }

    #[test]
    fn idx_headers_of_random_bytes_are_refused_by_name(
        header in prop::collection::vec(any::<u8>(), 0..24),
        gzip in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bytes = vec![0, 0, 8, 3];
        bytes.extend_from_slice(&header);
        let (bytes, name) = if gzip {
            (gz(&bytes), "train-images-idx3-ubyte.gz")
        } else {
            (bytes, "train-images-idx3-ubyte")
        };
        std::fs::write(dir.path().join(name), bytes).expect("write");
        write_labels(dir.path(), 2);
        ok_or_named(idx::load_with(dir.path(), "mnist", &ten_names(), &WIDE), dir.path());
        ok_or_named(idx::load_with(dir.path(), "mnist", &ten_names(), &SMALL), dir.path());
        assert_memory_bounded();
    }

    #[test]
    fn cifar_and_stl_load_or_name_the_file(
        edits in edits(),
        cut in 0..8000usize,
        tail in prop::collection::vec(any::<u8>(), 0..8),
        which in 0..6usize,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut record = vec![3u8];
        record.extend(std::iter::repeat_n(5u8, 3072));
        for i in 1..=5 {
            std::fs::write(dir.path().join(format!("data_batch_{i}.bin")), &record)
                .expect("write");
        }
        std::fs::write(dir.path().join("test_batch.bin"), &record).expect("write");
        let stl = vec![4u8; 3 * 96 * 96];
        for split in ["train", "test"] {
            std::fs::write(dir.path().join(format!("{split}_X.bin")), &stl).expect("write");
            std::fs::write(dir.path().join(format!("{split}_y.bin")), [2u8]).expect("write");
        }
        let (name, good) = match which {
            0 => ("data_batch_3.bin".to_owned(), record.clone()),
            1 => ("test_batch.bin".to_owned(), record.clone()),
            2 => ("train_X.bin".to_owned(), stl.clone()),
            3 => ("train_y.bin".to_owned(), vec![2u8]),
            _ => ("batches.meta.txt".to_owned(), b"a\nb\n".to_vec()),
        };
        let cut = if which == 2 { cut * 4 } else { cut };
        std::fs::write(dir.path().join(name), mutate(&good, &edits, cut, &tail)).expect("write");
        let limits = LoadLimits { max_split_bytes: 64 << 10, ..SMALL };
        ok_or_named(cifar::load_cifar10_with(dir.path(), &limits), dir.path());
        ok_or_named(cifar::load_stl10_with(dir.path(), &limits), dir.path());
        assert_memory_bounded();
    }

    #[test]
    fn image_folders_of_random_bytes_load_or_name_the_file(
        random in prop::collection::vec(any::<u8>(), 0..512),
        edits in prop::collection::vec((0..128usize, any::<u8>()), 0..4),
        side in prop::sample::select(vec![8u32, 300, 12_000, 70_000]),
        mutated in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let bytes = if mutated {
            let mut good = png_claiming(side);
            if side == 8 {
                // A whole valid 8x8 image to mutate.
                good.clear();
                image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
                    .write_to(&mut std::io::Cursor::new(&mut good), image::ImageFormat::Png)
                    .expect("png");
            }
            mutate(&good, &edits, usize::MAX, &[])
        } else {
            random
        };
        std::fs::write(dir.path().join("x.png"), bytes).expect("write");
        ok_or_named(folder::load_with(dir.path(), 8, &SMALL), &dir.path().join("x.png"));
        assert_memory_bounded();
    }
}
