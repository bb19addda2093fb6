//! What `msbreg ablate` writes over its results: `table.md` and `table.csv` (mean and standard
//! deviation over seeds per grid point, the random-init baseline first) and `curves.png`
//! (held-out kNN and effective rank against steps per point: the mean over seeds, a band from
//! the lowest to the highest seed), drawn with plotters into a buffer that `image` encodes, its
//! text in egui's own Ubuntu font, so nothing depends on the fonts a machine has.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::ablate::{AblateError, AblateSpec, BASELINE, Plan, RunResult};
use crate::session::read_metrics;

/// Mean and sample standard deviation (0 for one value); `None` for none.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((mean, var.sqrt()))
}

/// One row of the table: a point's results over its seeds.
struct Row<'a> {
    name: &'a str,
    values: Vec<String>,
    seeds: usize,
    knn: Option<(f64, f64)>,
    probe: Option<(f64, f64)>,
    rank: Option<(f64, f64)>,
    collapse: Option<(f64, f64)>,
    steps: u64,
    secs: Option<(f64, f64)>,
}

fn rows<'a>(spec: &AblateSpec, plan: &'a Plan, results: &[RunResult]) -> Vec<Row<'a>> {
    plan.points
        .iter()
        .map(|point| {
            let mine: Vec<&RunResult> = results.iter().filter(|r| r.point == point.name).collect();
            let of = |f: &dyn Fn(&RunResult) -> Option<f64>| {
                mean_std(&mine.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            let values = spec
                .grid
                .iter()
                .map(|axis| {
                    point
                        .assignments
                        .iter()
                        .find(|(key, _)| *key == axis.key)
                        .map_or_else(
                            || "(base)".to_owned(),
                            |(_, value)| super::ablate::shown(value).to_owned(),
                        )
                })
                .collect();
            Row {
                name: &point.name,
                values,
                seeds: mine.len(),
                knn: of(&|r| Some(r.knn_acc)),
                probe: of(&|r| Some(r.linear_probe_acc)),
                rank: of(&|r| r.effective_rank),
                collapse: of(&|r| r.collapse_level),
                steps: mine.iter().map(|r| r.steps).max().unwrap_or(0),
                secs: of(&|r| Some(r.secs)),
            }
        })
        .collect()
}

fn pm(value: Option<(f64, f64)>, digits: usize) -> String {
    value.map_or_else(
        || "-".to_owned(),
        |(mean, std)| format!("{mean:.digits$} ± {std:.digits$}"),
    )
}

/// `values` as table cells, each followed by its bar.
fn cells(values: &[impl AsRef<str>]) -> String {
    values.iter().fold(String::new(), |mut out, v| {
        let _ = write!(out, "{} | ", v.as_ref());
        out
    })
}

/// `table.md`: a Markdown table, one row per point.
pub fn markdown(spec: &AblateSpec, plan: &Plan, results: &[RunResult]) -> String {
    let mut out = String::new();
    let keys: Vec<&str> = spec.grid.iter().map(|a| a.key.as_str()).collect();
    let _ = writeln!(
        out,
        "# Ablation: {} preset, {} seed{}{}\n",
        spec.preset,
        spec.seeds,
        if spec.seeds == 1 { "" } else { "s" },
        if spec.sandbox { ", sandbox" } else { "" }
    );
    let _ = writeln!(
        out,
        "kNN and linear probe on the held-out split (mean ± standard deviation over seeds); \
         effective rank at the last evaluation; `random-init` is the base config's encoder \
         untrained.\n"
    );
    let _ = writeln!(
        out,
        "| point | {}seeds | kNN | linear probe | effective rank | collapse level | steps | \
         seconds per run |",
        cells(&keys)
    );
    let _ = writeln!(
        out,
        "|---|{}---|---|---|---|---|---|---|",
        "---|".repeat(keys.len())
    );
    for row in rows(spec, plan, results) {
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {} | {} | {} | {} | {} |",
            row.name,
            cells(&row.values),
            row.seeds,
            pm(row.knn, 3),
            pm(row.probe, 3),
            pm(row.rank, 1),
            pm(row.collapse, 2),
            row.steps,
            pm(row.secs, 0)
        );
    }
    out
}

/// `table.csv`: the same with means and deviations in columns of their own.
pub fn csv(spec: &AblateSpec, plan: &Plan, results: &[RunResult]) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = String::from("point");
    for axis in &spec.grid {
        out.push(',');
        out.push_str(&quote(&axis.key));
    }
    out.push_str(
        ",seeds,knn_mean,knn_std,probe_mean,probe_std,rank_mean,rank_std,collapse_mean,\
         collapse_std,steps,secs_mean\n",
    );
    let num = |v: Option<(f64, f64)>, second: bool| {
        v.map_or_else(String::new, |(m, s)| {
            format!("{}", if second { s } else { m })
        })
    };
    for row in rows(spec, plan, results) {
        out.push_str(&quote(row.name));
        for value in &row.values {
            out.push(',');
            out.push_str(&quote(value));
        }
        let _ = writeln!(
            out,
            ",{},{},{},{},{},{},{},{},{},{},{}",
            row.seeds,
            num(row.knn, false),
            num(row.knn, true),
            num(row.probe, false),
            num(row.probe, true),
            num(row.rank, false),
            num(row.rank, true),
            num(row.collapse, false),
            num(row.collapse, true),
            row.steps,
            num(row.secs, false)
        );
    }
    out
}

/// A point's curve of one metric: per step logged by every seed, the mean, lowest and highest.
type Curve = Vec<(f64, f64, f64, f64)>;

/// The kNN and effective-rank curves of every point that has results.
fn curves(out: &Path, plan: &Plan, results: &[RunResult]) -> Vec<(String, Curve, Curve)> {
    let mut all = Vec::new();
    for point in &plan.points {
        if point.name == BASELINE {
            continue;
        }
        let runs: Vec<_> = results
            .iter()
            .filter(|r| r.point == point.name)
            .filter_map(|r| read_metrics(&out.join(&r.dir).join("metrics.jsonl")).ok())
            .collect();
        if runs.is_empty() {
            continue;
        }
        let curve = |metric: fn(&crate::session::MetricsRecord) -> f64| -> Curve {
            let mut by_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for run in &runs {
                for record in run.iter().filter(|r| metric(r).is_finite()) {
                    by_step.entry(record.step).or_default().push(metric(record));
                }
            }
            by_step
                .into_iter()
                .filter(|(_, values)| values.len() == runs.len())
                .map(|(step, values)| {
                    let mean = values.iter().sum::<f64>() / values.len() as f64;
                    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
                    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (step as f64, mean, low, high)
                })
                .collect()
        };
        all.push((
            point.name.clone(),
            curve(|r| r.knn_acc),
            curve(|r| r.effective_rank),
        ));
    }
    all
}

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 560;

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// Draws `curves.png`: kNN (left) and effective rank (right) against steps.
fn draw(path: &Path, curves: &[(String, Curve, Curve)]) -> Result<(), String> {
    register_font();
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, 2));
        for (panel, (title, pick)) in panels.iter().zip([
            ("held-out kNN accuracy", 0usize),
            ("effective rank", 1usize),
        ]) {
            let series: Vec<(&str, &Curve)> = curves
                .iter()
                .map(|(name, knn, rank)| (name.as_str(), if pick == 0 { knn } else { rank }))
                .collect();
            let points = series.iter().flat_map(|(_, c)| c.iter());
            let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
            for &(x, _, low, high) in points {
                x_max = x_max.max(x);
                y_min = y_min.min(low);
                y_max = y_max.max(high);
            }
            if !y_min.is_finite() {
                (y_min, y_max) = (0.0, 1.0);
            }
            let pad = ((y_max - y_min) * 0.05).max(1e-3);
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("step")
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, (name, curve)) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let band: Vec<(f64, f64)> = curve
                    .iter()
                    .map(|&(x, _, low, _)| (x, low))
                    .chain(curve.iter().rev().map(|&(x, _, _, high)| (x, high)))
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        band,
                        color.mix(0.18).filled(),
                    )))
                    .map_err(|e| e.to_string())?;
                chart
                    .draw_series(LineSeries::new(
                        curve.iter().map(|&(x, mean, _, _)| (x, mean)),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            if !series.is_empty() {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.3))
                    .label_font(("sans-serif", 13))
                    .position(SeriesLabelPosition::LowerRight)
                    .draw()
                    .map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    image::RgbImage::from_raw(WIDTH, HEIGHT, buffer)
        .ok_or_else(|| "the plot's buffer has the wrong size".to_owned())?
        .save(path)
        .map_err(|e| e.to_string())
}

/// Writes `table.md`, `table.csv` and `curves.png` into `out`; returns their paths.
///
/// # Errors
/// A file that cannot be written.
pub fn write_outputs(
    out: &Path,
    spec: &AblateSpec,
    plan: &Plan,
    results: &[RunResult],
) -> Result<Vec<PathBuf>, AblateError> {
    let err = |path: &Path, reason: String| AblateError::Folder {
        path: path.to_owned(),
        reason,
    };
    let md = out.join("table.md");
    crate::session::write_atomic(&md, markdown(spec, plan, results).as_bytes())
        .map_err(|e| err(&md, e.to_string()))?;
    let table = out.join("table.csv");
    crate::session::write_atomic(&table, csv(spec, plan, results).as_bytes())
        .map_err(|e| err(&table, e.to_string()))?;
    let png = out.join("curves.png");
    draw(&png, &curves(out, plan, results)).map_err(|reason| err(&png, reason))?;
    Ok(vec![md, table, png])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_deviation() {
        assert_eq!(mean_std(&[]), None);
        assert_eq!(mean_std(&[0.5]), Some((0.5, 0.0)));
        let (mean, std) = mean_std(&[1.0, 2.0, 3.0, 4.0]).expect("values");
        assert!((mean - 2.5).abs() < 1e-12);
        assert!((std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
