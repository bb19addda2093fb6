//! Image data end to end: every loader on format-exact files written here (and the corrupt
//! cases), the built-in sets, augmentation and the loader thread, and the `train` command's
//! checkpoints, exact resume, `eval` and `export`.

mod common;

use common::{msbreg, run_ok};

use std::io::Write as _;
use std::path::Path;

use msbreg::data::augment::{AugmentConfig, augment_view};
use msbreg::data::builtin;
use msbreg::data::images::{DataError, Dataset, ImageShape};
use msbreg::data::source::DataSource;
use msbreg::data::{cifar, folder, idx};
use msbreg::seed::view_rng;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn ten_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

fn message(result: Result<impl std::fmt::Debug, DataError>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(err) => err.to_string(),
    }
}

/// Five 4x3 images whose pixel k of image i is 10 i + k, and labels 0..5.
fn write_mnist(dir: &Path, gzip: bool) {
    let pixels: Vec<u8> = (0..5)
        .flat_map(|i| (0..12).map(move |k| (10 * i + k) as u8))
        .collect();
    let images = idx::encode_idx(&[5, 4, 3], &pixels);
    let labels = idx::encode_idx(&[5], &[0, 1, 2, 3, 4]);
    let suffix = if gzip { ".gz" } else { "" };
    let write = |name: &str, bytes: &[u8]| {
        let bytes = if gzip { gz(bytes) } else { bytes.to_vec() };
        std::fs::write(dir.join(format!("{name}{suffix}")), bytes).expect("write");
    };
    write("train-images-idx3-ubyte", &images);
    write("train-labels-idx1-ubyte", &labels);
    write("t10k-images-idx3-ubyte", &images);
    write("t10k-labels-idx1-ubyte", &labels);
}

#[test]
fn mnist_layout_plain_and_gzipped() {
    for gzip in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        write_mnist(dir.path(), gzip);
        let splits = idx::load(dir.path(), "mnist", &ten_names()).expect("loads");
        assert_eq!(splits.train.shape, ImageShape::new(4, 3, 1));
        assert_eq!(splits.train.len(), 5);
        assert_eq!(splits.train.image(2)[5], 25);
        assert_eq!(splits.train.label(3), Some(3));
        assert_eq!(splits.test.as_ref().map(Dataset::len), Some(5));
    }
}

#[test]
fn mnist_corrupt_files_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_mnist(dir.path(), false);
    let images = dir.path().join("train-images-idx3-ubyte");
    let good = std::fs::read(&images).expect("read");

    let mut wrong_magic = good.clone();
    wrong_magic[2] = 0x0d;
    std::fs::write(&images, &wrong_magic).expect("write");
    let err = message(idx::load(dir.path(), "mnist", &ten_names()));
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("magic"),
        "{err}"
    );

    std::fs::write(&images, &good[..good.len() - 7]).expect("write");
    let err = message(idx::load(dir.path(), "mnist", &ten_names()));
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("truncated"),
        "{err}"
    );

    std::fs::write(&images, &good).expect("write");
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        idx::encode_idx(&[4], &[0, 1, 2, 3]),
    )
    .expect("write");
    let err = message(idx::load(dir.path(), "mnist", &ten_names()));
    assert!(
        err.contains("4 labels") && err.contains("5 images"),
        "{err}"
    );

    std::fs::remove_file(dir.path().join("train-labels-idx1-ubyte")).expect("remove");
    let err = message(idx::load(dir.path(), "mnist", &ten_names()));
    assert!(err.contains("train-labels-idx1-ubyte"), "{err}");

    std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), b"not gzip").expect("write");
    let err = message(idx::load(dir.path(), "mnist", &ten_names()));
    assert!(
        err.contains("train-labels-idx1-ubyte.gz") && err.contains("gzip"),
        "{err}"
    );
}

/// A CIFAR record: `label_bytes` labels, then the red, green and blue planes of a 32x32
/// image whose pixel (row, col) is (row, col, row + col) in the three channels.
fn cifar_record(labels: &[u8]) -> Vec<u8> {
    let mut out = labels.to_vec();
    for channel in 0..3 {
        for row in 0..32u8 {
            for col in 0..32u8 {
                out.push([row, col, row + col][channel]);
            }
        }
    }
    out
}

#[test]
fn cifar10_binary_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 1..=5 {
        let records: Vec<u8> = [cifar_record(&[i]), cifar_record(&[9])].concat();
        std::fs::write(dir.path().join(format!("data_batch_{i}.bin")), records).expect("write");
    }
    std::fs::write(dir.path().join("test_batch.bin"), cifar_record(&[3])).expect("write");
    let splits = cifar::load_cifar10(dir.path()).expect("loads");
    assert_eq!(splits.train.len(), 10);
    assert_eq!(splits.train.shape, ImageShape::new(32, 32, 3));
    assert_eq!(splits.train.label(0), Some(1));
    assert_eq!(splits.train.label(1), Some(9));
    assert_eq!(splits.train.class_names[9], "truck");
    // Pixel (row 2, col 5) interleaved: (2, 5, 7).
    let offset = (2 * 32 + 5) * 3;
    assert_eq!(&splits.train.image(0)[offset..offset + 3], &[2, 5, 7]);
    assert_eq!(splits.test.as_ref().and_then(|t| t.label(0)), Some(3));

    let truncated = dir.path().join("data_batch_3.bin");
    let bytes = std::fs::read(&truncated).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).expect("write");
    let err = message(cifar::load_cifar10(dir.path()));
    assert!(
        err.contains("data_batch_3.bin") && err.contains("3073"),
        "{err}"
    );

    std::fs::write(&truncated, cifar_record(&[12])).expect("write");
    let err = message(cifar::load_cifar10(dir.path()));
    assert!(
        err.contains("data_batch_3.bin") && err.contains("label 12"),
        "{err}"
    );

    std::fs::remove_file(dir.path().join("test_batch.bin")).expect("remove");
    std::fs::write(&truncated, cifar_record(&[1])).expect("write");
    let err = message(cifar::load_cifar10(dir.path()));
    assert!(err.contains("test_batch.bin"), "{err}");
}

#[test]
fn cifar100_uses_fine_labels() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("train.bin"),
        [cifar_record(&[3, 77]), cifar_record(&[19, 99])].concat(),
    )
    .expect("write");
    std::fs::write(dir.path().join("test.bin"), cifar_record(&[0, 5])).expect("write");
    let splits = cifar::load_cifar100(dir.path()).expect("loads");
    assert_eq!(splits.train.labels, Some(vec![77, 99]));
    assert_eq!(splits.train.class_names.len(), 100);
    assert_eq!(splits.test.as_ref().and_then(|t| t.label(0)), Some(5));
}

/// An STL-10 image: 3 planes of 96x96, column-major; pixel (row, col) of channel c is
/// (row + 2 col + c) mod 256.
fn stl_image() -> Vec<u8> {
    let mut out = Vec::new();
    for c in 0..3usize {
        for col in 0..96usize {
            for row in 0..96usize {
                out.push(((row + 2 * col + c) % 256) as u8);
            }
        }
    }
    out
}

#[test]
fn stl10_binary_format_with_unlabeled_split() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("train_X.bin"),
        [stl_image(), stl_image()].concat(),
    )
    .expect("write");
    std::fs::write(dir.path().join("train_y.bin"), [1u8, 10]).expect("write");
    std::fs::write(dir.path().join("test_X.bin"), stl_image()).expect("write");
    std::fs::write(dir.path().join("test_y.bin"), [4u8]).expect("write");
    std::fs::write(
        dir.path().join("unlabeled_X.bin"),
        [stl_image(), stl_image(), stl_image()].concat(),
    )
    .expect("write");
    let splits = cifar::load_stl10(dir.path()).expect("loads");
    assert_eq!(splits.train.labels, Some(vec![0, 9]));
    assert_eq!(splits.train.shape, ImageShape::new(96, 96, 3));
    // (row 3, col 7): 3 + 14 + c.
    let offset = (3 * 96 + 7) * 3;
    assert_eq!(&splits.train.image(1)[offset..offset + 3], &[17, 18, 19]);
    assert_eq!(splits.unlabeled.as_ref().map(Dataset::len), Some(3));

    std::fs::write(dir.path().join("train_y.bin"), [0u8, 3]).expect("write");
    let err = message(cifar::load_stl10(dir.path()));
    assert!(
        err.contains("train_y.bin") && err.contains("from 1 to 10"),
        "{err}"
    );
    std::fs::write(dir.path().join("train_y.bin"), [1u8]).expect("write");
    let err = message(cifar::load_stl10(dir.path()));
    assert!(
        err.contains("1 labels") && err.contains("2 images"),
        "{err}"
    );
}

fn write_png(path: &Path, rgb: [u8; 3], side: u32) {
    let image = image::RgbImage::from_pixel(side, side, image::Rgb(rgb));
    image.save(path).expect("png");
}

#[test]
fn image_folders_labelled_flat_and_broken() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("pets");
    for (class, colour) in [("dog", [200, 10, 10]), ("cat", [10, 200, 10])] {
        std::fs::create_dir_all(root.join(class)).expect("mkdir");
        for i in 0..3 {
            write_png(&root.join(class).join(format!("{i}.png")), colour, 20 + i);
        }
    }
    let splits = folder::load(&root, 16).expect("loads");
    assert_eq!(
        splits.train.class_names,
        vec!["cat", "dog"],
        "sorted class folders"
    );
    assert_eq!(splits.train.len(), 6);
    assert_eq!(splits.train.shape, ImageShape::new(16, 16, 3));
    assert_eq!(splits.train.label(0), Some(0));
    assert_eq!(&splits.train.image(0)[..3], &[10, 200, 10], "cat is green");
    assert_eq!(splits.train.label(5), Some(1));

    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).expect("mkdir");
    write_png(&flat.join("a.png"), [1, 2, 3], 8);
    let splits = folder::load(&flat, 8).expect("loads");
    assert_eq!((splits.train.len(), splits.train.labels.clone()), (1, None));

    std::fs::write(root.join("dog").join("broken.png"), b"not a png").expect("write");
    let err = message(folder::load(&root, 16));
    assert!(
        err.contains("broken.png") && err.contains("unreadable"),
        "{err}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = message(folder::load(&empty, 16));
    assert!(err.contains("empty") && err.contains("no .png"), "{err}");
}

#[test]
fn builtin_sets() {
    let digits = builtin::digits().expect("embedded digits");
    assert_eq!(
        digits.train.len() + digits.test.as_ref().map_or(0, Dataset::len),
        1797
    );
    assert_eq!(digits.train.shape, ImageShape::new(8, 8, 1));
    assert!(
        digits
            .train
            .labels
            .as_ref()
            .is_some_and(|l| l.iter().all(|&x| x < 10))
    );

    let a = builtin::shapes(7, 40, 10);
    let b = builtin::shapes(7, 20, 10);
    assert_eq!(a.train.shape, ImageShape::new(32, 32, 3));
    assert_eq!(
        a.train.image(13),
        b.train.image(13),
        "image i does not depend on the set's size"
    );
    assert_eq!(a.test, b.test);
    let c = builtin::shapes(8, 20, 10);
    assert_ne!(
        a.train.image(3),
        c.train.image(3),
        "another seed, other images"
    );
    for class in 0..10 {
        assert_eq!(
            a.train
                .labels
                .as_ref()
                .map(|l| l.iter().filter(|&&x| x == class).count()),
            Some(4)
        );
    }
}

#[test]
fn data_sources_parse_and_explain() {
    assert_eq!(
        DataSource::parse("cifar10:/x")
            .expect("parses")
            .path
            .as_deref(),
        Some(Path::new("/x"))
    );
    let err = DataSource::parse("imagenet")
        .expect_err("unknown")
        .to_string();
    assert!(err.contains("imagenet") && err.contains("cifar10"), "{err}");
    let err = DataSource::parse("cifar10")
        .expect("parses")
        .load(0)
        .expect_err("no path")
        .to_string();
    assert!(err.contains("cifar10:DIR"), "{err}");
    let err = DataSource::parse("fashion-mnist:/no/such/folder")
        .expect("parses")
        .load(0)
        .expect_err("missing")
        .to_string();
    assert!(
        err.contains("apt-get install dataset-fashion-mnist"),
        "{err}"
    );
}

#[test]
fn augmentation_is_seeded_per_view() {
    let set = builtin::shapes(0, 4, 1).train;
    let (mean, std) = (vec![0.5; 3], vec![0.25; 3]);
    let config = AugmentConfig {
        blur_prob: vec![1.0, 0.0],
        ..AugmentConfig::default()
    };
    let run = |step: u64, view: usize| {
        let mut out = vec![0.0f32; 3 * 24 * 24];
        augment_view(
            set.image(1),
            set.shape,
            24,
            view,
            &config,
            &mean,
            &std,
            &mut view_rng(9, step, 1, view),
            &mut out,
        );
        out
    };
    assert_eq!(run(3, 0), run(3, 0));
    assert_ne!(run(3, 0), run(4, 0));
    assert_ne!(run(3, 0), run(3, 1));
    assert!(run(3, 0).iter().all(|v| v.is_finite()));
}

#[test]
fn the_loader_thread_hands_over_the_plan_in_order() {
    use msbreg::data::loader::{BatchPlan, Loader};
    use std::sync::Arc;
    let set = builtin::shapes(1, 50, 1).train;
    let plan = Arc::new(BatchPlan {
        seed: 2,
        images: Arc::new(set),
        batch_size: 8,
        views: 2,
        side: 16,
        augment: AugmentConfig::default(),
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
    });
    assert_eq!(plan.steps_per_epoch(), 6);
    let mut loader = Loader::spawn(Arc::clone(&plan), 4, 9, 2).expect("thread");
    for step in 4..9 {
        let batch = loader.next_batch().expect("a batch");
        assert_eq!(batch.step, step);
        assert_eq!(batch.data, plan.batch_at(step).data);
        assert_eq!(batch.data.len(), 8 * 2 * 3 * 16 * 16);
        assert_eq!(batch.epoch, step / 6);
    }
    assert!(loader.next_batch().is_none());
    // Epochs draw different orders; every image of an epoch appears once.
    let (e0, e1) = (plan.permutation(0), plan.permutation(1));
    assert_ne!(e0, e1);
    let mut sorted = e0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
}

/// The lines of a run's metrics without the wall-clock fields.
fn curve(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
            v.as_object_mut().map(|o| {
                o.remove("elapsed_secs");
                o.remove("images_per_sec")
            });
            v
        })
        .collect()
}

const SMALL_RUN: [&str; 12] = [
    "train",
    "--data",
    "digits",
    "--epochs",
    "2",
    "--batch-size",
    "128",
    "--set",
    "eval.every_steps=4",
    "--set",
    "checkpoint.every_steps=5",
    "--views=2",
];

#[test]
fn train_checkpoints_resume_eval_and_export() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = dir.path().join("whole");
    let parts = dir.path().join("parts");
    run_ok(msbreg().args(SMALL_RUN).arg("--out").arg(&whole));
    run_ok(
        msbreg()
            .args(SMALL_RUN)
            .arg("--out")
            .arg(&parts)
            .args(["--stop-after", "7"]),
    );
    let checkpoints: Vec<String> = std::fs::read_dir(parts.join("checkpoints"))
        .expect("checkpoints")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        checkpoints.contains(&"step-00000007".to_owned()),
        "{checkpoints:?}"
    );
    assert!(
        !checkpoints.iter().any(|c| c.starts_with(".tmp")),
        "no temporary folder left"
    );
    run_ok(msbreg().arg("train").arg("--resume").arg(&parts));
    assert_eq!(
        curve(&whole),
        curve(&parts),
        "a resumed run draws the same curve"
    );
    let kept: Vec<_> = std::fs::read_dir(whole.join("checkpoints"))
        .expect("checkpoints")
        .collect();
    assert_eq!(kept.len(), 3, "the newest 3 checkpoints are kept");

    let out = run_ok(
        msbreg()
            .args(["eval", "--probe-epochs", "5", "--run"])
            .arg(&whole),
    );
    let json: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).expect("json line");
    for key in ["knn_acc", "linear_probe_acc"] {
        let value = json[key].as_f64().unwrap_or(-1.0);
        assert!(
            (0.3..=1.0).contains(&value),
            "{key} = {value}: digits are easy"
        );
    }

    run_ok(
        msbreg()
            .args(["export", "--limit", "50", "--run"])
            .arg(&whole),
    );
    let vectors = std::fs::read_to_string(whole.join("vectors.tsv")).expect("vectors");
    let metadata = std::fs::read_to_string(whole.join("metadata.tsv")).expect("metadata");
    assert_eq!(vectors.lines().count(), 50);
    assert_eq!(metadata.lines().count(), 51, "a header and 50 rows");
    assert!(metadata.starts_with("label\tclass\n"));
    assert_eq!(
        vectors.lines().next().map(|l| l.split('\t').count()),
        Some(128),
        "CNN features"
    );
}

/// `--stop-after 0` keeps the initial weights, so `eval` measures the random-init baseline,
/// and a resumed run from there draws the same curve as the whole run.
#[test]
fn stop_after_zero_saves_the_initial_weights() {
    let dir = tempfile::tempdir().expect("temp dir");
    let init = dir.path().join("init");
    run_ok(
        msbreg()
            .args(SMALL_RUN)
            .arg("--out")
            .arg(&init)
            .args(["--stop-after", "0"]),
    );
    assert!(init.join("checkpoints/step-00000000").is_dir());
    let out = run_ok(
        msbreg()
            .args(["eval", "--probe-epochs", "1", "--run"])
            .arg(&init),
    );
    let json: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).expect("json line");
    assert_eq!(json["step"], 0, "{out}");
    let whole = dir.path().join("whole");
    run_ok(msbreg().args(SMALL_RUN).arg("--out").arg(&whole));
    run_ok(msbreg().arg("train").arg("--resume").arg(&init));
    let steps = |dir: &Path| -> Vec<u64> {
        curve(dir)
            .iter()
            .filter_map(|v| v["step"].as_u64())
            .collect()
    };
    assert_eq!(steps(&whole), steps(&init), "the same logged steps");
    assert!(
        curve(&whole) == curve(&init),
        "resumed from step 0: the same curve"
    );
}

#[test]
fn train_rejects_bad_settings_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fail = |args: &[&str]| {
        let out = msbreg()
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fail(&[
        "train",
        "--data",
        "digits",
        "--set",
        "optimiser.kind=lars",
        "--out",
        "r",
    ]);
    assert!(err.contains("optimiser"), "{err}");
    let err = fail(&["train", "--data", "digits", "--views", "1", "--out", "r"]);
    assert!(err.contains("views") && err.contains("2 to 8"), "{err}");
    let err = fail(&["train", "--data", "cifar10:/no/such/dir", "--out", "r"]);
    assert!(err.contains("/no/such/dir"), "{err}");
    let err = fail(&["train", "--data", "digits", "--set", "tau", "--out", "r"]);
    assert!(err.contains("KEY=VALUE"), "{err}");
    let err = fail(&["train", "--resume", "nowhere"]);
    assert!(err.contains("nowhere"), "{err}");
}

/// The real Fashion-MNIST files of Debian's `dataset-fashion-mnist` (installed by `.ci/run`).
#[test]
fn fashion_mnist_from_the_debian_package() {
    let source = DataSource::parse("fashion-mnist").expect("parses");
    let splits = source.load(0).unwrap_or_else(|err| {
        panic!("{err} (this test needs Debian's dataset-fashion-mnist, which .ci/run installs)")
    });
    assert_eq!(splits.train.shape, ImageShape::new(28, 28, 1));
    assert_eq!(splits.train.len(), 60_000);
    assert_eq!(splits.test.as_ref().map(Dataset::len), Some(10_000));
    assert_eq!(splits.train.class_names[9], "Ankle boot");
    for class in 0..10 {
        let count = splits
            .train
            .labels
            .as_ref()
            .map(|l| l.iter().filter(|&&x| x == class).count());
        assert_eq!(count, Some(6000), "class {class}");
    }
}
