//! The right panel: egui_plot charts of the history (per-term losses, effective rank and
//! collapse level, uniformity and alignment, kNN accuracy) and the singular value spectrum
//! now and at step 0.

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::History;
use crate::trainer::Snapshot;

const PLOT_HEIGHT: f32 = 150.0;

fn plot(id: &str) -> Plot<'static> {
    Plot::new(id.to_owned())
        .height(PLOT_HEIGHT)
        .legend(Legend::default())
        .allow_scroll(false)
}

fn series(points: impl Iterator<Item = (u64, f64)>) -> PlotPoints<'static> {
    PlotPoints::from(points.map(|(x, y)| [x as f64, y]).collect::<Vec<_>>())
}

pub fn plots_ui(history: &History, latest: Option<&Snapshot>, ui: &mut egui::Ui) {
    ui.label(egui::RichText::new("Losses").strong());
    plot("losses").show(ui, |plot_ui| {
        let losses = &history.losses;
        let term = |f: fn(&crate::method::StepReport) -> f32| {
            series(
                losses
                    .iter()
                    .map(move |(step, report)| (*step, f64::from(f(report)))),
            )
        };
        plot_ui.line(Line::new("total", term(|r| r.loss)));
        plot_ui.line(Line::new("centroid", term(|r| r.loss_centroid)));
        plot_ui.line(Line::new("singular value", term(|r| r.loss_sv)));
        plot_ui.line(Line::new("Brownian", term(|r| r.loss_brownian)));
    });

    ui.label(egui::RichText::new("Effective rank and collapse level").strong());
    plot("rank").show(ui, |plot_ui| {
        let d = &history.diagnostics;
        plot_ui.line(Line::new(
            "effective rank / D",
            series(d.iter().map(|r| (r.0, r.1 / latest_dim(latest)))),
        ));
        plot_ui.line(Line::new(
            "collapse level",
            series(d.iter().map(|r| (r.0, r.2))),
        ));
    });

    ui.label(egui::RichText::new("Uniformity and alignment").strong());
    plot("uniformity").show(ui, |plot_ui| {
        let d = &history.diagnostics;
        plot_ui.line(Line::new(
            "uniformity",
            series(d.iter().map(|r| (r.0, r.3))),
        ));
        plot_ui.line(Line::new("alignment", series(d.iter().map(|r| (r.0, r.4)))));
    });

    ui.label(egui::RichText::new("kNN accuracy (held out)").strong());
    plot("knn")
        .include_y(0.0)
        .include_y(1.0)
        .show(ui, |plot_ui| {
            plot_ui.line(Line::new(
                "kNN accuracy",
                series(history.knn.iter().copied()),
            ));
        });

    ui.label(egui::RichText::new("Singular value spectrum (log10)").strong());
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
}

fn latest_dim(latest: Option<&Snapshot>) -> f64 {
    latest.map_or(1.0, |s| s.info.embed_dim.max(1) as f64)
}
