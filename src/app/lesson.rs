//! A lesson played in the app (`config::lesson`): the stage text above the view with Back /
//! Next, each stage's actions sent as the user's own clicks would be (so the trainer, the
//! events and the recording see them the same way), the ones with a step when the run
//! reaches it. Back shows the earlier text without doing its actions again.

use eframe::egui;

use super::MsbregApp;
use crate::config::lesson::{Action, Lesson};
use crate::trainer::Command;

/// A lesson and where it is.
pub struct LessonPlayer {
    pub lesson: Lesson,
    pub stage: usize,
    /// The timed actions of the stage entered last that are still to come: (step, action).
    waiting: Vec<(u64, Action)>,
    /// The plot this stage points out (`do = "plot"`).
    pub plot: Option<super::plots::Mark>,
    /// The callout this stage shows in the view (`do = "point"`): the class pointed at (the
    /// whole cloud when `None`) and the text.
    pub pointer: Option<(Option<u32>, String)>,
}

impl LessonPlayer {
    pub fn new(lesson: Lesson) -> Self {
        Self {
            lesson,
            stage: 0,
            waiting: Vec::new(),
            plot: None,
            pointer: None,
        }
    }
}

impl MsbregApp {
    /// Opens `lesson`'s set-up (its forces and learning rate go to the paused trainer before
    /// its first step) and enters its first stage.
    pub(super) fn start_lesson(&mut self, lesson: Lesson) {
        let rate = lesson.learning_rate.unwrap_or(self.learning_rate);
        self.change_forces(lesson.dynamics, rate);
        self.lesson = Some(LessonPlayer::new(lesson));
        self.enter_stage(0);
    }

    /// Shows stage `index` and does its actions (the timed ones when their step comes).
    fn enter_stage(&mut self, index: usize) {
        let Some(player) = &mut self.lesson else {
            return;
        };
        let Some(stage) = player.lesson.stages.get(index).cloned() else {
            return;
        };
        player.stage = index;
        player.plot = None;
        player.pointer = None;
        player.waiting = stage
            .actions
            .iter()
            .filter_map(|t| t.step.map(|s| (s, t.action.clone())))
            .collect();
        for timed in stage.actions.iter().filter(|t| t.step.is_none()) {
            self.act(&timed.action);
        }
    }

    /// Does the stage's timed actions whose step the run has reached.
    pub(super) fn lesson_tick(&mut self) {
        let Some(step) = self.latest().map(|s| s.step) else {
            return;
        };
        let Some(player) = &mut self.lesson else {
            return;
        };
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut player.waiting)
            .into_iter()
            .partition(|(s, _)| *s <= step);
        player.waiting = waiting;
        for (_, action) in due {
            self.act(&action);
        }
    }

    /// One action, as the controls would do it.
    fn act(&mut self, action: &Action) {
        match action {
            Action::Run => self.send(Command::Run),
            Action::Pause => self.send(Command::Pause),
            Action::Switch { force, on } => {
                let mut dynamics = self.dynamics;
                force.of(&mut dynamics).on = *on;
                self.change_forces(dynamics, self.learning_rate);
            }
            Action::Weight { force, weight } => {
                let mut dynamics = self.dynamics;
                force.of(&mut dynamics).weight = *weight;
                self.change_forces(dynamics, self.learning_rate);
            }
            Action::Arrows { force, on } => self.view.arrows[force.index()] = *on,
            Action::Preset(preset) => self.change_forces(preset.dynamics(), self.learning_rate),
            Action::Plot(name) => {
                if let Some(player) = &mut self.lesson {
                    player.plot = Some(super::plots::Mark {
                        name: name.clone(),
                        scroll: true,
                    });
                }
            }
            Action::Point { class, text } => {
                if let Some(player) = &mut self.lesson {
                    player.pointer = Some((*class, text.clone()));
                }
            }
        }
    }
}

/// The lesson's title, stage text, and Back / Next.
pub fn lesson_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    let Some(player) = &app.lesson else {
        return;
    };
    let (stage, count) = (player.stage, player.lesson.stages.len());
    let title = player.lesson.title.clone();
    let text = player.lesson.stages[stage].text.clone();
    let mut go = None;
    egui::Frame::new()
        .fill(ui.visuals().faint_bg_color)
        .inner_margin(6.0)
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(egui::RichText::new(title).strong());
                ui.label(format!("stage {} of {count}", stage + 1));
                if ui
                    .add_enabled(stage > 0, egui::Button::new("Back"))
                    .on_hover_text("The stage before (its actions are not done again)")
                    .clicked()
                {
                    go = Some((stage - 1, false));
                }
                if ui
                    .add_enabled(stage + 1 < count, egui::Button::new("Next"))
                    .clicked()
                {
                    go = Some((stage + 1, true));
                }
            });
            ui.label(text);
        });
    match go {
        Some((index, true)) => app.enter_stage(index),
        Some((index, false)) => {
            if let Some(player) = &mut app.lesson {
                player.stage = index;
                player.waiting.clear();
                player.plot = None;
                player.pointer = None;
            }
        }
        None => {}
    }
}

/// A lesson's callout: `text` in a box, an arrow from it to the centre of `targets` (screen
/// positions inside `rect`) and a ring there; the box alone, saying so, when none is on screen.
pub(super) fn pointer_ui(ui: &egui::Ui, rect: egui::Rect, targets: &[egui::Pos2], text: &str) {
    let color = egui::Color32::from_rgb(240, 180, 60);
    let painter = ui.painter_at(rect);
    let font = egui::FontId::proportional(14.0);
    let wrap = (rect.width() * 0.4).max(120.0);
    let n = targets.len() as f32;
    let target = (n > 0.0).then(|| {
        let sum = targets
            .iter()
            .fold(egui::Vec2::ZERO, |acc, p| acc + p.to_vec2());
        (sum / n).to_pos2()
    });
    let label = if target.is_some() {
        text.to_owned()
    } else {
        format!("{text} (not on screen)")
    };
    let galley = painter.layout(label, font, egui::Color32::WHITE, wrap);
    let size = galley.size() + egui::vec2(12.0, 8.0);
    // The box sits away from the view's centre, past the target, inside the view.
    let centre = match target {
        Some(t) => {
            let away = (t - rect.center()).normalized();
            let away = if away.length() > 0.5 {
                away
            } else {
                egui::vec2(-0.7, -0.7)
            };
            t + away * (60.0 + 0.5 * size.length())
        }
        None => rect.left_top() + size * 0.5 + egui::vec2(10.0, 10.0),
    };
    let min = rect.min + egui::vec2(6.0, 6.0);
    let max = (rect.max - size - egui::vec2(6.0, 6.0)).max(min);
    let corner = (centre - size * 0.5).clamp(min, max);
    let boxed = egui::Rect::from_min_size(corner, size);
    if let Some(t) = target {
        let from = boxed.center();
        let to = t - (t - from).normalized() * 20.0;
        painter.arrow(from, to - from, egui::Stroke::new(2.5, color));
        painter.circle_stroke(t, 16.0, egui::Stroke::new(2.0, color));
    }
    painter.rect_filled(boxed, 4.0, egui::Color32::from_black_alpha(210));
    painter.rect_stroke(
        boxed,
        4.0,
        egui::Stroke::new(1.5, color),
        egui::StrokeKind::Inside,
    );
    painter.galley(corner + egui::vec2(6.0, 4.0), galley, egui::Color32::WHITE);
}
