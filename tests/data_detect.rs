//! `--data DIR`: a bare folder's format told from its files (`data::detect`), the `NAME` and
//! `NAME:PATH` forms beside it, `~/` taken in `$HOME`, the errors for a folder that is missing
//! or holds no known format, and the line the `train` command prints about what it detected.
//! The format files are written here, format-exact, as in `tests/images.rs`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use msbreg::data::images::Dataset;
use msbreg::data::source::{DataSource, SourceKind};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn spec(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

fn error(spec: &str) -> String {
    match DataSource::parse(spec) {
        Ok(source) => panic!("expected an error for {spec}, got {source:?}"),
        Err(err) => err.to_string(),
    }
}

/// Five 4x3 images and labels 0..5, in both splits of the MNIST layout.
fn write_mnist(dir: &Path, gzip: bool) {
    let pixels: Vec<u8> = (0..60).map(|k| k as u8).collect();
    let images = msbreg::data::idx::encode_idx(&[5, 4, 3], &pixels);
    let labels = msbreg::data::idx::encode_idx(&[5], &[0, 1, 2, 3, 4]);
    let suffix = if gzip { ".gz" } else { "" };
    for (name, bytes) in [
        ("train-images-idx3-ubyte", &images),
        ("train-labels-idx1-ubyte", &labels),
        ("t10k-images-idx3-ubyte", &images),
        ("t10k-labels-idx1-ubyte", &labels),
    ] {
        let bytes = if gzip { gz(bytes) } else { bytes.clone() };
        std::fs::write(dir.join(format!("{name}{suffix}")), bytes).expect("write");
    }
}

/// A CIFAR record: `labels` then three 32x32 planes.
fn cifar_record(labels: &[u8]) -> Vec<u8> {
    let mut out = labels.to_vec();
    out.extend((0..3 * 32 * 32).map(|k| (k % 251) as u8));
    out
}

fn write_cifar10(dir: &Path) {
    for i in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{i}.bin")), cifar_record(&[i])).expect("write");
    }
    std::fs::write(dir.join("test_batch.bin"), cifar_record(&[3])).expect("write");
}

fn write_cifar100(dir: &Path) {
    std::fs::write(
        dir.join("train.bin"),
        [cifar_record(&[3, 77]), cifar_record(&[19, 99])].concat(),
    )
    .expect("write");
    std::fs::write(dir.join("test.bin"), cifar_record(&[0, 5])).expect("write");
}

fn write_stl10(dir: &Path) {
    let image: Vec<u8> = (0..3 * 96 * 96).map(|k| (k % 253) as u8).collect();
    std::fs::write(dir.join("train_X.bin"), [&image[..], &image[..]].concat()).expect("write");
    std::fs::write(dir.join("train_y.bin"), [1u8, 10]).expect("write");
    std::fs::write(dir.join("test_X.bin"), &image).expect("write");
    std::fs::write(dir.join("test_y.bin"), [4u8]).expect("write");
}

fn write_png(path: &Path, rgb: [u8; 3], side: u32) {
    image::RgbImage::from_pixel(side, side, image::Rgb(rgb))
        .save(path)
        .expect("png");
}

/// `per_class` images in each of the subfolders `cat` and `dog`.
fn write_class_folders(root: &Path, per_class: u32) {
    for (class, colour) in [("dog", [200, 10, 10]), ("cat", [10, 200, 10])] {
        std::fs::create_dir_all(root.join(class)).expect("mkdir");
        for i in 0..per_class {
            write_png(&root.join(class).join(format!("{i}.png")), colour, 8 + i);
        }
    }
}

/// A fresh folder `name` in `parent`.
fn folder(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn bare_folders_are_detected_and_load() {
    let temp = tempfile::tempdir().expect("temp dir");
    let root = temp.path();
    let mnist = folder(root, "mnist-plain");
    write_mnist(&mnist, false);
    let mnist_gz = folder(root, "mnist-gz");
    write_mnist(&mnist_gz, true);
    let cifar10 = folder(root, "cifar-10-batches-bin");
    write_cifar10(&cifar10);
    let cifar100 = folder(root, "cifar-100-binary");
    write_cifar100(&cifar100);
    let stl10 = folder(root, "stl10_binary");
    write_stl10(&stl10);
    let pets = folder(root, "pets");
    write_class_folders(&pets, 2);
    let flat = folder(root, "flat");
    write_png(&flat.join("a.png"), [1, 2, 3], 8);
    write_png(&flat.join("b.png"), [4, 5, 6], 9);

    // (folder, kind, training images, labelled)
    let cases = [
        (&mnist, SourceKind::Mnist, 5, true),
        (&mnist_gz, SourceKind::Mnist, 5, true),
        (&cifar10, SourceKind::Cifar10, 5, true),
        (&cifar100, SourceKind::Cifar100, 2, true),
        (&stl10, SourceKind::Stl10, 2, true),
        (&pets, SourceKind::Folder, 4, true),
        (&flat, SourceKind::Folder, 2, false),
    ];
    for (dir, kind, count, labelled) in cases {
        let source =
            DataSource::parse(spec(dir)).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        assert_eq!(source.kind, kind, "{}", dir.display());
        assert_eq!(source.path.as_deref(), Some(dir.as_path()));
        let splits = source
            .load(0)
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        assert_eq!(splits.train.len(), count, "{}", dir.display());
        assert_eq!(splits.train.labels.is_some(), labelled, "{}", dir.display());
    }

    // A relative path, written without `./`, is a folder when it exists (tests run in the
    // package's folder; the temp folder there is removed on drop).
    let here = tempfile::Builder::new()
        .prefix("msbreg-detect-test-")
        .tempdir_in(".")
        .expect("a temp dir in the working folder");
    write_class_folders(here.path(), 1);
    let relative = here.path().file_name().expect("a name").to_string_lossy();
    let source = DataSource::parse(&relative).expect("detected");
    assert_eq!(source.kind, SourceKind::Folder);
    assert_eq!(source.load(0).expect("loads").train.len(), 2);
}

#[test]
fn fashion_mnist_is_told_by_the_folder_name() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = folder(temp.path(), "fashion-mnist");
    write_mnist(&dir, true);
    let source = DataSource::parse(spec(&dir)).expect("detected");
    assert_eq!(source.kind, SourceKind::FashionMnist);
    let splits = source.load(0).expect("loads");
    assert_eq!(splits.train.class_names()[0], "T-shirt/top");
}

#[test]
fn named_forms_still_parse_and_home_expands() {
    let parsed = DataSource::parse("cifar10:/x").expect("parses");
    assert_eq!(
        (parsed.kind, parsed.path.as_deref()),
        (SourceKind::Cifar10, Some(Path::new("/x")))
    );
    let parsed = DataSource::parse("digits").expect("parses");
    assert_eq!((parsed.kind, parsed.path), (SourceKind::Digits, None));
    let err = error("imagenet");
    assert!(
        err.contains("`imagenet`") && err.contains("cifar10"),
        "{err}"
    );

    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        eprintln!("HOME is not set: skipping the ~/ cases");
        return;
    };
    let parsed = DataSource::parse("cifar10:~/c10").expect("parses");
    assert_eq!(parsed.path, Some(home.join("c10")));

    let temp = tempfile::Builder::new()
        .prefix(".msbreg-detect-test-")
        .tempdir_in(&home)
        .expect("a temp dir in $HOME");
    write_cifar10(temp.path());
    let name = temp.path().file_name().expect("a name").to_string_lossy();
    let parsed = DataSource::parse(&format!("~/{name}")).expect("detected");
    assert_eq!(
        (parsed.kind, parsed.path),
        (SourceKind::Cifar10, Some(home.join(&*name)))
    );
}

#[test]
fn missing_and_unrecognised_folders_are_explained() {
    let err = error("/no/such/folder");
    assert!(err.contains("/no/such/folder"), "{err}");
    assert!(err.contains("cifar10:DIR"), "{err}");
    let err = error("./no-such-folder");
    assert!(err.contains("./no-such-folder"), "{err}");

    let temp = tempfile::tempdir().expect("temp dir");
    let other = folder(temp.path(), "notes");
    std::fs::write(other.join("readme.txt"), "not data").expect("write");
    let err = error(spec(&other));
    for needle in [
        spec(&other),
        "train-images-idx3-ubyte",
        "data_batch_1.bin",
        "train.bin",
        "train_X.bin",
        "PNG",
        "mnist:DIR",
        "cifar10:DIR",
        "cifar100:DIR",
        "stl10:DIR",
        "folder:DIR",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }

    // The folder above a data set: the message points at the set.
    let parent = folder(temp.path(), "downloads");
    write_cifar10(&folder(&parent, "cifar-10-batches-bin"));
    let err = error(spec(&parent));
    assert!(
        err.contains(spec(&parent.join("cifar-10-batches-bin"))) && err.contains("cifar10"),
        "{err}"
    );

    let above_pets = folder(temp.path(), "photos");
    write_class_folders(&folder(&above_pets, "pets"), 1);
    let err = error(spec(&above_pets));
    assert!(err.contains(spec(&above_pets.join("pets"))), "{err}");

    // A file of a set rather than its folder.
    let err = error(spec(
        &parent.join("cifar-10-batches-bin").join("test_batch.bin"),
    ));
    assert!(err.contains("is a file"), "{err}");
}

#[test]
fn train_says_what_it_detected() {
    let temp = tempfile::tempdir().expect("temp dir");
    let pets = folder(temp.path(), "pets");
    write_class_folders(&pets, 8);
    let out = Command::new(env!("CARGO_BIN_EXE_msbreg"))
        .args([
            "--backend",
            "cpu",
            "train",
            "--batch-size",
            "8",
            "--stop-after",
            "0",
        ])
        .arg("--data")
        .arg(&pets)
        .arg("--out")
        .arg(temp.path().join("run"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let detected: Vec<&str> = stderr.lines().filter(|l| l.contains("detected")).collect();
    assert_eq!(detected.len(), 1, "{stderr}");
    assert!(
        detected[0].contains("folder") && detected[0].contains(spec(&pets)),
        "{stderr}"
    );
}
