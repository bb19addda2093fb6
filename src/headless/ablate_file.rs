//! Ablation files (`assets/ablations/*.toml`, `msbreg ablate --file`): the flags of one
//! ablation written down, so that anyone can run it again.

use serde::Deserialize;

use super::ablate::Axis;

/// An ablation file (`assets/ablations/*.toml`, `msbreg ablate --file`): the flags of one
/// ablation written down, so anyone can run it again.
///
/// ```toml
/// title = "Claim (b): the singular value loss prevents dimensional collapse"
/// sandbox = true              # or data = "fashion-mnist" (as --data)
/// preset = "msbreg"
/// seeds = 3
/// [set]                       # as --set, dotted keys or tables
/// steps = 600
/// [grid]                      # as --grid: a key and its values
/// "dynamics.singular_value.on" = [true, false]
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct AblateFile {
    pub title: String,
    pub sandbox: bool,
    pub data: Option<String>,
    pub preset: Option<String>,
    pub seeds: Option<u64>,
    pub sets: Vec<(String, String)>,
    pub grid: Vec<Axis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AblateFileText {
    title: String,
    #[serde(default)]
    sandbox: bool,
    data: Option<String>,
    preset: Option<String>,
    seeds: Option<u64>,
    #[serde(default)]
    set: toml::Table,
    grid: toml::Table,
}

/// `table`'s values under dotted keys (`prefix.key`), tables flattened.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            other => out.push((key, other.clone())),
        }
    }
}

impl AblateFile {
    /// Parses an ablation file; `name` names it in errors.
    ///
    /// # Errors
    /// TOML that does not parse, an unknown key, a grid entry that is not a list of values.
    pub fn parse(text: &str, name: &str) -> Result<Self, String> {
        let file: AblateFileText = toml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        let mut sets = Vec::new();
        flatten("", &file.set, &mut sets);
        let mut grid = Vec::new();
        flatten("", &file.grid, &mut grid);
        let grid = grid
            .into_iter()
            .map(|(key, value)| match value {
                toml::Value::Array(values) if !values.is_empty() => Ok(Axis {
                    key,
                    values: values.iter().map(ToString::to_string).collect(),
                }),
                _ => Err(format!(
                    "{name}: [grid] {key}: give a list of values, e.g. {key} = [0.1, 1.0]"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if grid.is_empty() {
            return Err(format!(
                "{name}: [grid] is empty: give at least one key and its values"
            ));
        }
        Ok(Self {
            title: file.title,
            sandbox: file.sandbox,
            data: file.data,
            preset: file.preset,
            seeds: file.seeds,
            sets: sets
                .into_iter()
                .map(|(key, value)| (key, value.to_string()))
                .collect(),
            grid,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Workload;
    use crate::headless::ablate::AblateSpec;

    fn spec(file: &AblateFile) -> AblateSpec {
        let mut sets = file.sets.clone();
        if let Some(data) = &file.data {
            sets.insert(0, ("data.kind".to_owned(), format!("\"{data}\"")));
        }
        AblateSpec {
            sandbox: file.sandbox,
            preset: file.preset.clone().unwrap_or_else(|| "msbreg".to_owned()),
            config: String::new(),
            config_source: "(none)".to_owned(),
            sets,
            grid: file.grid.clone(),
            seeds: file.seeds.unwrap_or(3),
            max_train: 100,
            probe_epochs: 2,
        }
    }

    #[test]
    fn an_ablation_file_gives_the_flags_it_writes_down() {
        let text = "title = \"t\"\nsandbox = true\nseeds = 3\npreset = \"byol\"\n[set]\nsteps = 50\n\"data.classes\" = 4\n[set.dynamics]\ntau = 0.9\n[grid]\npreset = [\"byol\", \"byol-reg\"]\n\"dynamics.brownian.weight\" = [0, 0.5]\n";
        let file = AblateFile::parse(text, "f.toml").expect("parses");
        assert!(file.sandbox);
        assert_eq!(file.seeds, Some(3));
        assert_eq!(file.preset.as_deref(), Some("byol"));
        assert!(file.sets.contains(&("steps".to_owned(), "50".to_owned())));
        assert!(
            file.sets
                .contains(&("dynamics.tau".to_owned(), "0.9".to_owned()))
        );
        assert_eq!(file.grid.len(), 2);
        let plan = spec(&file).plan().expect("plans");
        assert_eq!(plan.points.len(), 1 + 4);
        let Workload::Sandbox(config) = &plan.jobs.last().expect("jobs").workload else {
            panic!("sandbox");
        };
        assert_eq!(config.dynamics.brownian.weight, 0.5);
        assert!(config.dynamics.singular_value.on, "byol-reg's");
        assert_eq!(config.dynamics.tau, 0.9);
        assert_eq!(config.data.classes, 4);
        for (bad, word) in [
            ("title = \"t\"\n[grid]\nviews = 3\n", "give a list"),
            ("title = \"t\"\n[grid]\n", "empty"),
            (
                "title = \"t\"\nseed = 1\n[grid]\nx = [1]\n",
                "unknown field",
            ),
        ] {
            let err = AblateFile::parse(bad, "bad.toml").expect_err(bad);
            assert!(err.contains("bad.toml") && err.contains(word), "{err}");
        }
    }

    /// The ablation files shipped in assets/ablations parse and make valid configs.
    #[test]
    fn every_shipped_ablation_file_plans() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/ablations");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("assets/ablations") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("reads");
            let file = AblateFile::parse(&text, &path.display().to_string())
                .unwrap_or_else(|e| panic!("{e}"));
            let plan = spec(&file)
                .plan()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(plan.points.len() >= 3, "{}", path.display());
            assert!(
                file.seeds.unwrap_or(0) >= 3,
                "at least 3 seeds: {}",
                path.display()
            );
            count += 1;
        }
        assert!(count >= 10, "{count}");
    }
}
