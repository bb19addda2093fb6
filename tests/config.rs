//! Settings as a user writes them: partial tables merge over the preset everywhere, and flags
//! are checked as flags (their errors name the flag; a value cannot smuggle in keys).

mod common;

use common::msbreg;

use std::path::Path;
use std::process::Output;

fn train(args: &[&str], out: &Path) -> Output {
    msbreg()
        .args(["train", "--data", "digits", "--stop-after", "0"])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("runs")
}

fn config_of(dir: &Path) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(dir.join("config.toml")).expect("config.toml"))
        .expect("toml")
}

fn force(config: &toml::Table, name: &str) -> (bool, f64) {
    let force = &config["dynamics"][name];
    (
        force["on"].as_bool().expect("on"),
        force["weight"].as_float().expect("weight"),
    )
}

#[test]
fn one_key_of_a_force_merges_over_the_preset() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["centroid", "singular_value", "brownian"] {
        let out = dir.path().join(name);
        let result = train(&["--set", &format!("dynamics.{name}.weight=0.5")], &out);
        assert!(
            result.status.success(),
            "--set dynamics.{name}.weight: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert_eq!(force(&config_of(&out), name), (true, 0.5), "{name}");
    }
    // The same as a file with only that key, for train and simulate.
    let file = dir.path().join("partial.toml");
    std::fs::write(&file, "[dynamics.singular_value]\nweight = 0.5\n").expect("writes");
    let out = dir.path().join("from-file");
    let result = train(&["--config", file.to_str().expect("utf-8")], &out);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(force(&config_of(&out), "singular_value"), (true, 0.5));
    let sim = dir.path().join("sim");
    let result = msbreg()
        .args(["simulate", "--steps", "1", "--config"])
        .arg(&file)
        .arg("--out")
        .arg(&sim)
        .output()
        .expect("runs");
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(force(&config_of(&sim), "singular_value"), (true, 0.5));
    // `on` alone keeps the preset's weight.
    let off = dir.path().join("off");
    let result = train(&["--set", "dynamics.brownian.on=false"], &off);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(force(&config_of(&off), "brownian"), (false, 0.1));
}

#[test]
fn a_set_value_cannot_add_keys_and_errors_name_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let result = train(&["--set", "max_steps=3\nseed = 5"], &out);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("--set max_steps=3"), "{stderr}");
    assert!(!out.exists(), "nothing was created");

    let result = train(&["--lr", "nan"], &out);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("learning_rate") && !stderr.contains("TOML parse error"),
        "{stderr}"
    );

    let result = train(&["--set", "optimizer.kind=adamx"], &out);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("--set optimizer.kind=adamx") && stderr.contains("lars"),
        "{stderr}"
    );
    let result = train(&["--set", "a..b=1"], &out);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("not a config key"), "{stderr}");
}

#[test]
fn settings_that_cannot_fit_in_memory_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (set, key) in [
        ("image_side=100000", "image_side"),
        ("model.embed_dim=100000000", "model.embed_dim"),
    ] {
        let out = dir.path().join(key);
        let result = train(&["--set", set], &out);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "{set} was accepted");
        // image_side past 512 is refused by the config's own bound; a huge D by the estimate.
        assert!(stderr.contains(key), "{set}: {stderr}");
        if key == "model.embed_dim" {
            assert!(stderr.contains("GiB are available"), "{set}: {stderr}");
        }
        assert!(!stderr.contains("memory allocation of"), "{stderr}");
        assert!(!out.exists(), "no folder left behind for {set}");
    }
    let out = dir.path().join("sim");
    let result = msbreg()
        .args(["simulate", "--steps", "1", "--out"])
        .arg(&out)
        .output()
        .expect("runs");
    assert!(result.status.success(), "the default sandbox fits");
}

mod merge_properties {
    use std::path::Path;

    use msbreg::config::{Preset, SimConfig, TrainConfig};
    use proptest::prelude::*;

    /// Every line of a valid config, so that mutations stay near real files.
    fn valid_lines() -> Vec<String> {
        TrainConfig::default()
            .to_toml()
            .expect("serialises")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random bytes as a config file: never a panic; an error names the file.
        #[test]
        fn random_text_is_refused_by_name(text in "\\PC{0,200}") {
            let path = Path::new("random.toml");
            if let Err(err) = TrainConfig::from_preset_and_toml(Preset::Msbreg, &text, path) {
                let message = err.to_string();
                prop_assert!(message.contains("random.toml") || message.contains('`'), "{message}");
            }
        }

        /// A real config with lines dropped, duplicated or with a value replaced: never a
        /// panic, and whatever is accepted is valid and round-trips.
        #[test]
        fn mutated_configs_are_valid_or_refused(
            drop_line in 0usize..200,
            replace_line in 0usize..200,
            value in prop_oneof![
                Just("-1".to_owned()), Just("1e400".to_owned()), Just("nan".to_owned()),
                Just("\"x\"".to_owned()), Just("[1, 2]".to_owned()), Just("{ a = 1 }".to_owned()),
                Just("18446744073709551615".to_owned()), Just("0".to_owned()),
            ],
        ) {
            let mut lines = valid_lines();
            if drop_line < lines.len() {
                lines.remove(drop_line);
            }
            if replace_line < lines.len()
                && let Some((key, _)) = lines[replace_line].split_once(" = ")
            {
                lines[replace_line] = format!("{key} = {value}");
            }
            let text = lines.join("\n");
            let path = Path::new("mutated.toml");
            if let Ok(config) = TrainConfig::from_preset_and_toml(Preset::Msbreg, &text, path) {
                prop_assert!(config.validate().is_ok());
                let again = TrainConfig::from_preset_and_toml(
                    Preset::Msbreg,
                    &config.to_toml().expect("serialises"),
                    path,
                );
                // Compared as written (a NaN would never equal itself).
                let written = config.to_toml().expect("serialises");
                prop_assert_eq!(
                    again.ok().map(|c| c.to_toml().expect("serialises")),
                    Some(written)
                );
            }
            let _ = SimConfig::from_toml(&text, path);
        }

        /// The optimiser's and kNN's numbers are checked like every other key.
        #[test]
        fn non_finite_numbers_are_refused(key in prop_oneof![
            Just("[optimizer]\nlars_eta"), Just("[eval.knn]\ntemperature"),
            Just("[optimizer]\nmomentum"), Just("learning_rate"),
        ], value in prop_oneof![Just("nan"), Just("inf"), Just("-1.0")]) {
            let text = format!("{key} = {value}\n");
            let result = TrainConfig::from_preset_and_toml(Preset::Msbreg, &text, Path::new("x.toml"));
            prop_assert!(result.is_err(), "{text} was accepted");
        }
    }
}

/// The default run is a step budget (the CPU recipe), whatever the set's size; a config that
/// names `epochs` counts in epochs; a run folder's config from before `steps` existed too.
#[test]
fn a_config_that_names_epochs_counts_in_epochs() {
    use msbreg::config::{Preset, TrainConfig};
    let path = std::path::Path::new("x.toml");
    let parse = |text: &str| {
        TrainConfig::from_preset_and_toml(Preset::Msbreg, text, path).expect("valid config")
    };
    let default = parse("");
    assert!(default.steps > 0, "the default is a step budget");
    assert_eq!(default.schedule_steps(7), default.steps as u64);
    assert_eq!(default.schedule_steps(7000), default.steps as u64);

    let epochs = parse("epochs = 3\n");
    assert_eq!((epochs.epochs, epochs.steps), (3, 0));
    assert_eq!(epochs.schedule_steps(100), 300);

    let both = parse("epochs = 3\nsteps = 50\n");
    assert_eq!(both.schedule_steps(100), 50, "a named step count wins");

    // A run folder's config.toml as written before the key existed: every key but `steps`.
    let old = default
        .to_toml()
        .expect("serialises")
        .lines()
        .filter(|line| !line.starts_with("steps ="))
        .collect::<Vec<_>>()
        .join("\n");
    let old: TrainConfig = toml::from_str(&old).expect("an old config reads");
    assert_eq!(old.steps, 0, "an old run keeps its epochs");
    assert_eq!(old.schedule_steps(100), 100 * old.epochs as u64);
}
