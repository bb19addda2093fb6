//! The right panel: egui_plot charts of the history (per-term losses, effective rank and
//! collapse level, uniformity and alignment, kNN accuracy) and the singular value spectrum
//! now and at step 0. The history's series are bounded and kept as plot points
//! (`history.rs`), so each frame borrows them as they are.

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints, PlotUi, VLine};

use super::{History, Series};
use crate::trainer::Snapshot;

const PLOT_HEIGHT: f32 = 150.0;

fn plot<'a>(id: &str) -> Plot<'a> {
    Plot::new(id.to_owned())
        .height(PLOT_HEIGHT)
        .legend(Legend::default())
        .allow_scroll(false)
}

/// A line over a history series, borrowing its points (no copy per frame).
fn line<'a>(name: &str, series: &'a Series) -> Line<'a> {
    Line::new(name, PlotPoints::Borrowed(series.points()))
}

/// The timeline's cursor as a vertical line (nothing at Live).
fn cursor_line(plot_ui: &mut PlotUi<'_>, cursor: Option<u64>) {
    if let Some(step) = cursor {
        plot_ui.vline(
            VLine::new("timeline", step as f64)
                .color(egui::Color32::from_rgb(240, 180, 60))
                .width(1.5),
        );
    }
}

/// A plot a lesson points out (`do = "plot"`): framed; scrolled into sight once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mark {
    /// One of `config::lesson::PLOTS`.
    pub name: String,
    /// Scroll it into sight at the next frame (then cleared).
    pub scroll: bool,
}

/// One plot's heading and body, framed when `mark` names it (`key`).
fn section(
    ui: &mut egui::Ui,
    key: &str,
    title: &str,
    mark: &mut Option<Mark>,
    body: impl FnOnce(&mut egui::Ui),
) {
    let Some(marked) = mark.as_mut().filter(|m| m.name == key) else {
        ui.label(egui::RichText::new(title).strong());
        body(ui);
        return;
    };
    let color = egui::Color32::from_rgb(240, 180, 60);
    let response = egui::Frame::new()
        .stroke(egui::Stroke::new(2.0, color))
        .inner_margin(4.0)
        .show(ui, |ui| {
            ui.label(
                egui::RichText::new(format!("{title}  <- look here"))
                    .strong()
                    .color(color),
            );
            body(ui);
        })
        .response;
    if std::mem::take(&mut marked.scroll) {
        response.scroll_to_me(Some(egui::Align::Center));
    }
}

pub fn plots_ui(
    history: &History,
    latest: Option<&Snapshot>,
    cursor: Option<u64>,
    mark: &mut Option<Mark>,
    ui: &mut egui::Ui,
) {
    section(ui, "losses", "Losses", mark, |ui| {
        plot("losses").show(ui, |plot_ui| {
            plot_ui.line(line("total", &history.loss));
            plot_ui.line(line("centroid", &history.loss_centroid));
            plot_ui.line(line("singular value", &history.loss_sv));
            plot_ui.line(line("Brownian", &history.loss_brownian));
            if !history.loss_variance.is_empty() {
                plot_ui.line(line("variance (VICReg)", &history.loss_variance));
            }
            if !history.loss_covariance.is_empty() {
                plot_ui.line(line("covariance (VICReg)", &history.loss_covariance));
            }
            cursor_line(plot_ui, cursor);
        });
    });

    section(ui, "shares", "Forces' shares", mark, |ui| {
        plot("force shares")
            .include_y(0.0)
            .include_y(1.0)
            .show(ui, |plot_ui| {
                for ((name, series), [r, g, b]) in crate::method::arrows::FORCE_NAMES
                    .iter()
                    .zip(&history.force_shares)
                    .zip(super::arrows::ARROW_COLORS)
                {
                    plot_ui.line(
                        line(&name.to_lowercase(), series).color(egui::Color32::from_rgb(r, g, b)),
                    );
                }
                cursor_line(plot_ui, cursor);
            })
            .response
            .on_hover_text(
                "Each force's part of the three forces' summed norms on the display set",
            );
    });

    section(
        ui,
        "rank",
        "Effective rank and collapse level",
        mark,
        |ui| {
            plot("rank").show(ui, |plot_ui| {
                plot_ui.line(line("effective rank / D", &history.effective_rank_per_dim));
                plot_ui.line(line("collapse level", &history.collapse_level));
                cursor_line(plot_ui, cursor);
            });
        },
    );

    section(ui, "uniformity", "Uniformity and alignment", mark, |ui| {
        plot("uniformity").show(ui, |plot_ui| {
            plot_ui.line(line("uniformity", &history.uniformity));
            plot_ui.line(line("alignment", &history.alignment));
            cursor_line(plot_ui, cursor);
        });
    });

    section(ui, "knn", "kNN accuracy (held out)", mark, |ui| {
        plot("knn")
            .include_y(0.0)
            .include_y(1.0)
            .show(ui, |plot_ui| {
                plot_ui.line(line("kNN accuracy", &history.knn_acc));
                cursor_line(plot_ui, cursor);
            });
    });

    section(
        ui,
        "spectrum",
        "Singular value spectrum (log10)",
        mark,
        |ui| {
            plot("spectrum").show(ui, |plot_ui| {
                if let Some(snapshot) = latest {
                    let log = |values: &[f64]| {
                        PlotPoints::from(
                            values
                                .iter()
                                .enumerate()
                                .map(|(k, &s)| [(k + 1) as f64, s.max(1e-12).log10()])
                                .collect::<Vec<_>>(),
                        )
                    };
                    plot_ui.line(Line::new("now", log(&snapshot.spectrum)));
                    plot_ui.line(Line::new("step 0", log(&snapshot.spectrum_initial)));
                }
            });
        },
    );
}
