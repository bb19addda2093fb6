//! Lessons: a TOML file that sets up a run (data, model, seed, starting forces, which
//! controls show) and walks through it in stages, each a short text and actions (switch a
//! force, set a weight, run, pause, show a force's arrows, apply a preset), at once or when
//! the run reaches a step. The app plays one with Next / Back (`msbreg app --lesson`);
//! `msbreg lessons` lists the built-in ones (`assets/lessons/`).
//!
//! ```toml
//! title = "Attraction alone collapses"
//! data = "sandbox"            # as `--data`: sandbox, rings, shapes, digits, fashion-mnist
//! seed = 0
//! controls = ["forces"]       # the panels shown: data, forces, presets (default: all)
//! [dynamics]                  # as a config's [dynamics] (default: the msbreg preset's)
//! centroid = { on = true, weight = 1.0 }
//! [[stages]]
//! text = "..."
//! actions = [{ do = "run" }, { step = 150, do = "pause" }]
//! ```
//!
//! Actions: `run`, `pause`, `switch` (`force`, `on`), `weight` (`force`, `weight`), `arrows`
//! (`force`, `on`), `preset` (`name`), `plot` (`name`: one of [`PLOTS`], framed and scrolled
//! into sight), `point` (`text`, and `class` to point at that class's points, else at the
//! whole cloud); forces are `attraction`, `global`, `local`. A `plot` or `point` lasts until
//! the stage changes. A wrong key or an impossible action is an error naming the file and the
//! line.

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Preset, WorkloadSettings};
use crate::method::Dynamics;

/// The built-in lessons: name and file text.
pub const BUILT_IN: [(&str, &str); 5] = [
    (
        "attraction-collapses",
        include_str!("../../assets/lessons/attraction-collapses.toml"),
    ),
    (
        "predictor-ema",
        include_str!("../../assets/lessons/predictor-ema.toml"),
    ),
    (
        "homogenization",
        include_str!("../../assets/lessons/homogenization.toml"),
    ),
    (
        "brownian",
        include_str!("../../assets/lessons/brownian.toml"),
    ),
    (
        "more-views",
        include_str!("../../assets/lessons/more-views.toml"),
    ),
];

/// The panels a lesson can show or hide.
pub const PANELS: [&str; 3] = ["data", "forces", "presets"];

/// The plots a lesson can point out (`do = "plot"`), as the right panel shows them.
pub const PLOTS: [&str; 6] = ["losses", "shares", "rank", "uniformity", "knn", "spectrum"];

/// A lesson file as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LessonFile {
    title: String,
    #[serde(default = "default_data")]
    data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default)]
    seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    views: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    controls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    learning_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dynamics: Option<Dynamics>,
    #[serde(default)]
    stages: Vec<StageFile>,
}

fn default_data() -> String {
    "sandbox".to_owned()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    text: String,
    #[serde(default)]
    actions: Vec<Spanned<ActionFile>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ActionFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step: Option<u64>,
    #[serde(rename = "do")]
    what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    force: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// One of the three forces, by the name a lesson gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForceName {
    Attraction,
    Global,
    Local,
}

impl ForceName {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "attraction" => Some(Self::Attraction),
            "global" => Some(Self::Global),
            "local" => Some(Self::Local),
            _ => None,
        }
    }

    /// Its index in the arrows and the shares (attraction, global, local).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        ["attraction", "global", "local"][self.index()]
    }

    /// The force in `dynamics`.
    pub fn of(self, dynamics: &mut Dynamics) -> &mut crate::method::Force {
        match self {
            Self::Attraction => &mut dynamics.centroid,
            Self::Global => &mut dynamics.singular_value,
            Self::Local => &mut dynamics.brownian,
        }
    }
}

/// What a stage does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Run,
    Pause,
    Switch {
        force: ForceName,
        on: bool,
    },
    Weight {
        force: ForceName,
        weight: f32,
    },
    Arrows {
        force: ForceName,
        on: bool,
    },
    Preset(Preset),
    /// Frame the plot with this name (one of [`PLOTS`]) and scroll it into sight.
    Plot(String),
    /// A callout with `text` pointing at the points of `class` (the whole cloud when
    /// `None`).
    Point {
        class: Option<u32>,
        text: String,
    },
}

/// An action and when: on entering its stage (`step` `None`), or once the run is at `step`.
#[derive(Clone, Debug, PartialEq)]
pub struct Timed {
    pub step: Option<u64>,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub text: String,
    pub actions: Vec<Timed>,
}

/// A lesson, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Lesson {
    pub title: String,
    /// The workload it opens on (data, model, seed, views, batch).
    pub settings: WorkloadSettings,
    /// Its `data` name (as `--data`).
    pub data: String,
    pub dynamics: Dynamics,
    pub learning_rate: Option<f64>,
    /// Which of [`PANELS`] show.
    pub controls: Vec<String>,
    pub stages: Vec<Stage>,
}

/// What goes wrong with a lesson.
#[derive(Debug, thiserror::Error)]
pub enum LessonError {
    #[error("{source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error(
        "no lesson called {name}: give a file, or one of {} (msbreg lessons lists them)",
        BUILT_IN.map(|(n, _)| n).join(", ")
    )]
    Unknown { name: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Lesson {
    /// A built-in lesson by name, or a lesson file at `name_or_path`.
    pub fn load(name_or_path: &str) -> Result<Self, LessonError> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text, &format!("the built-in lesson {name}"));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(LessonError::Unknown {
                name: name_or_path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| LessonError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a lesson; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, LessonError> {
        let invalid = |message: String| LessonError::Invalid {
            source_name: source_name.to_owned(),
            message,
        };
        let file: LessonFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or_else(String::new, |span| {
                format!("line {}: ", line_of(text, span.start))
            });
            invalid(format!("{at}{}", e.message()))
        })?;
        let mut settings = WorkloadSettings::named(&file.data).ok_or_else(|| {
            invalid(format!(
                "data = {:?} is not a data set: use sandbox, rings, shapes, digits or \
                 fashion-mnist",
                file.data
            ))
        })?;
        settings.seed = file.seed;
        if let Some(model) = &file.model {
            settings.model = super::ModelChoice::named(model).ok_or_else(|| {
                invalid(format!(
                    "model = {model:?} is not an encoder: use cnn, mlp or resnet18"
                ))
            })?;
        }
        if let Some(views) = file.views {
            if !(2..=8).contains(&views) {
                return Err(invalid(format!("views = {views}: give 2 to 8")));
            }
            settings.views = views;
        }
        if let Some(batch) = file.batch {
            if batch < 2 {
                return Err(invalid(format!("batch = {batch}: give at least 2")));
            }
            settings.batch_size = batch;
        }
        if let Some(rate) = file.learning_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(invalid(format!(
                "learning_rate = {rate}: give a positive rate"
            )));
        }
        let controls = file
            .controls
            .unwrap_or_else(|| PANELS.map(str::to_owned).to_vec());
        if let Some(bad) = controls.iter().find(|c| !PANELS.contains(&c.as_str())) {
            return Err(invalid(format!(
                "controls: {bad:?} is not a panel: use {}",
                PANELS.join(", ")
            )));
        }
        let dynamics = file.dynamics.unwrap_or_else(|| Preset::Msbreg.dynamics());
        super::validate_dynamics(&dynamics).map_err(|e| invalid(format!("[dynamics]: {e}")))?;
        if file.stages.is_empty() {
            return Err(invalid(
                "no [[stages]]: a lesson needs at least one".to_owned(),
            ));
        }
        let stages = file
            .stages
            .iter()
            .map(|stage| {
                let actions = stage
                    .actions
                    .iter()
                    .map(|spanned| {
                        let line = line_of(text, spanned.span().start);
                        check_action(spanned.get_ref(), class_count(&settings))
                            .map_err(|message| invalid(format!("line {line}: {message}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Stage {
                    text: stage.text.trim().to_owned(),
                    actions,
                })
            })
            .collect::<Result<Vec<_>, LessonError>>()?;
        Ok(Self {
            title: file.title,
            settings,
            data: file.data,
            dynamics,
            learning_rate: file.learning_rate,
            controls,
            stages,
        })
    }

    /// Whether the panel `name` (one of [`PANELS`]) shows.
    pub fn shows(&self, name: &str) -> bool {
        self.controls.iter().any(|c| c == name)
    }

    /// A lesson file that opens this set-up as it is now (`settings`, `dynamics`,
    /// `learning_rate` at `step`): one stage that starts training.
    pub fn save_text(
        settings: &WorkloadSettings,
        dynamics: &Dynamics,
        learning_rate: f64,
        step: u64,
    ) -> Result<String, String> {
        let file = LessonFile {
            title: format!("Saved from the app at step {step}"),
            data: data_name(settings).to_owned(),
            model: (!settings.data.is_sandbox()).then(|| model_name(settings).to_owned()),
            seed: settings.seed,
            views: Some(settings.views),
            batch: Some(settings.batch_size),
            controls: None,
            learning_rate: Some(learning_rate),
            dynamics: Some(*dynamics),
            stages: vec![StageFile {
                text: "The set-up as it was saved: same data, seed and forces. Press Next to \
                       train."
                    .to_owned(),
                actions: Vec::new(),
            }],
        };
        let mut text = toml::to_string_pretty(&file).map_err(|e| e.to_string())?;
        text.push_str("\n[[stages]]\ntext = \"Training.\"\nactions = [{ do = \"run\" }]\n");
        Ok(text)
    }
}

/// The `--data` name of `settings`' data set.
pub fn data_name(settings: &WorkloadSettings) -> &'static str {
    use super::DataChoice;
    match settings.data {
        DataChoice::Shapes => "shapes",
        DataChoice::Digits => "digits",
        DataChoice::FashionMnist => "fashion-mnist",
        DataChoice::SandboxGaussians => "sandbox",
        DataChoice::SandboxRings => "rings",
    }
}

fn model_name(settings: &WorkloadSettings) -> &'static str {
    settings.model.name()
}

/// How many classes the data of `settings` has.
fn class_count(settings: &WorkloadSettings) -> usize {
    match settings.workload() {
        super::Workload::Sandbox(config) => config.data.classes,
        // shapes, digits, Fashion-MNIST: ten each.
        super::Workload::Images(_) => 10,
    }
}

fn check_action(file: &ActionFile, classes: usize) -> Result<Timed, String> {
    let force = || -> Result<ForceName, String> {
        let name = file.force.as_deref().ok_or_else(|| {
            format!(
                "do = {:?} needs force = \"attraction\", \"global\" or \"local\"",
                file.what
            )
        })?;
        ForceName::parse(name).ok_or_else(|| {
            format!("force = {name:?} is not a force: use attraction, global or local")
        })
    };
    let on = || {
        file.on
            .ok_or_else(|| format!("do = {:?} needs on = true or false", file.what))
    };
    let action = match file.what.as_str() {
        "run" => Action::Run,
        "pause" => Action::Pause,
        "switch" => Action::Switch {
            force: force()?,
            on: on()?,
        },
        "arrows" => Action::Arrows {
            force: force()?,
            on: on()?,
        },
        "weight" => {
            let weight = file
                .weight
                .ok_or_else(|| "do = \"weight\" needs weight = a number".to_owned())?;
            if !(weight.is_finite() && weight > 0.0) {
                return Err(format!("weight = {weight}: give a positive weight"));
            }
            Action::Weight {
                force: force()?,
                weight,
            }
        }
        "preset" => {
            let name = file
                .name
                .as_deref()
                .ok_or_else(|| "do = \"preset\" needs name = a preset".to_owned())?;
            Action::Preset(Preset::from_name(name).map_err(|e| e.to_string())?)
        }
        "plot" => {
            let name = file
                .name
                .as_deref()
                .ok_or_else(|| format!("do = \"plot\" needs name = one of {}", PLOTS.join(", ")))?;
            if !PLOTS.contains(&name) {
                return Err(format!(
                    "name = {name:?} is not a plot: use {}",
                    PLOTS.join(", ")
                ));
            }
            Action::Plot(name.to_owned())
        }
        "point" => {
            let text = file
                .text
                .as_deref()
                .ok_or_else(|| "do = \"point\" needs text = what to say".to_owned())?;
            if let Some(class) = file.class
                && class as usize >= classes
            {
                return Err(format!(
                    "class = {class}: the data has classes 0 to {}",
                    classes.saturating_sub(1)
                ));
            }
            Action::Point {
                class: file.class,
                text: text.trim().to_owned(),
            }
        }
        other => {
            return Err(format!(
                "do = {other:?} is not an action: use run, pause, switch, weight, arrows, \
                 preset, plot or point"
            ));
        }
    };
    Ok(Timed {
        step: file.step,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_lesson_parses() {
        for (name, _) in BUILT_IN {
            let lesson = Lesson::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!lesson.stages.is_empty(), "{name}");
            assert!(!lesson.title.is_empty());
        }
    }

    #[test]
    fn plots_and_pointers_are_checked() {
        let good = "title = \"x\"\n[[stages]]\ntext = \"a\"\nactions = [\n  { do = \"plot\", name = \"rank\" },\n  { do = \"point\", class = 3, text = \" here \" },\n  { step = 5, do = \"point\", text = \"the cloud\" },\n]\n";
        let lesson = Lesson::parse(good, "good.toml").expect("valid");
        let actions: Vec<Action> = lesson.stages[0]
            .actions
            .iter()
            .map(|t| t.action.clone())
            .collect();
        assert_eq!(
            actions,
            vec![
                Action::Plot("rank".to_owned()),
                Action::Point {
                    class: Some(3),
                    text: "here".to_owned()
                },
                Action::Point {
                    class: None,
                    text: "the cloud".to_owned()
                },
            ]
        );
        assert_eq!(lesson.stages[0].actions[2].step, Some(5));
        for (bad, words) in [
            ("{ do = \"plot\", name = \"loss\" }", ["\"loss\"", "losses"]),
            ("{ do = \"plot\" }", ["needs name", "spectrum"]),
            (
                "{ do = \"point\", class = 8, text = \"a\" }",
                ["class = 8", "0 to 7"],
            ),
            ("{ do = \"point\", class = 1 }", ["needs text", "point"]),
        ] {
            let text =
                format!("title = \"x\"\n[[stages]]\ntext = \"a\"\nactions = [\n  {bad},\n]\n");
            let err = Lesson::parse(&text, "bad.toml").expect_err(bad).to_string();
            assert!(err.contains("line 5"), "{err}");
            for word in words {
                assert!(err.contains(word), "{bad}: {err}");
            }
        }
    }

    #[test]
    fn a_wrong_key_or_an_impossible_action_names_its_line() {
        let wrong_key = "title = \"x\"\n\n[[stages]]\ntext = \"a\"\ntetx = \"b\"\n";
        let err = Lesson::parse(wrong_key, "my.toml")
            .expect_err("a wrong key")
            .to_string();
        assert!(err.contains("my.toml") && err.contains("line 5"), "{err}");
        assert!(err.contains("tetx"), "{err}");
        let bad_action = "title = \"x\"\n[[stages]]\ntext = \"a\"\nactions = [\n  { do = \"run\" },\n  { do = \"switch\", force = \"gravity\", on = true },\n]\n";
        let err = Lesson::parse(bad_action, "my.toml")
            .expect_err("no such force")
            .to_string();
        assert!(err.contains("line 6") && err.contains("gravity"), "{err}");
        let bad_weight = "title = \"x\"\n[[stages]]\ntext = \"a\"\nactions = [{ do = \"weight\", force = \"local\", weight = -1.0 }]\n";
        let err = Lesson::parse(bad_weight, "w.toml")
            .expect_err("negative")
            .to_string();
        assert!(err.contains("line 4") && err.contains("positive"), "{err}");
        let unknown = Lesson::load("no-such-lesson")
            .expect_err("unknown")
            .to_string();
        assert!(unknown.contains("attraction-collapses"), "{unknown}");
    }

    #[test]
    fn a_saved_set_up_reopens_to_the_same_settings() {
        let mut settings = WorkloadSettings::app_default();
        settings.seed = 7;
        settings.views = 6;
        let mut dynamics = Preset::Collapse.dynamics();
        dynamics.brownian.weight = 0.37;
        let text = Lesson::save_text(&settings, &dynamics, 0.004, 123).expect("writes");
        let lesson = Lesson::parse(&text, "saved").expect("reopens");
        assert_eq!(lesson.settings, settings);
        assert_eq!(lesson.dynamics, dynamics);
        assert_eq!(lesson.learning_rate, Some(0.004));
        assert_eq!(lesson.stages.len(), 2);
        assert_eq!(lesson.stages[1].actions[0].action, Action::Run);
    }
}
