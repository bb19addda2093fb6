//! The particle view: a toolbar (projection mode, point size, opacity, tethers), the legend,
//! the error banner, and the particles drawn by the wgpu renderer (`render`) through an
//! egui-wgpu paint callback. Drag orbits (3D) or pans (2D), scroll zooms, double-click
//! resets; hovering a particle shows its image (or input point), label and index.

use std::collections::HashMap;
use std::path::Path;

use eframe::egui;

use super::MsbregApp;
use super::timeline::timeline_ui;
use crate::data::images::Dataset;
use crate::render::{self, Camera, LineVertex, Particle};
use crate::trainer::{BranchRequest, Command, Frame, Preview, RunInfo};

/// Which projection of the embeddings is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ViewMode {
    /// The top-2 principal axes.
    Pca2d,
    /// The top-3 principal axes, orbit camera.
    #[default]
    Pca3d,
    /// The top-3 principal axes normalised onto the unit sphere, with a wireframe.
    Sphere,
}

impl ViewMode {
    const ALL: [Self; 3] = [Self::Pca2d, Self::Pca3d, Self::Sphere];

    fn label(self) -> &'static str {
        match self {
            Self::Pca2d => "2D PCA",
            Self::Pca3d => "3D PCA",
            Self::Sphere => "Sphere",
        }
    }

    pub(super) fn camera_mode(self) -> render::ViewMode {
        match self {
            Self::Pca2d => render::ViewMode::Flat2d,
            Self::Pca3d => render::ViewMode::Orbit3d,
            Self::Sphere => render::ViewMode::Sphere,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewSettings {
    pub mode: ViewMode,
    pub point_size_px: f32,
    pub opacity: f32,
    /// Draw each point's two views joined to their centroid.
    pub tethers: bool,
    /// Draw the forces on each point as arrows: attraction, global, local dispersion.
    pub arrows: [bool; 3],
}

impl Default for ViewSettings {
    fn default() -> Self {
        Self {
            mode: ViewMode::Pca3d,
            point_size_px: 7.0,
            opacity: 0.85,
            tethers: false,
            arrows: [false; 3],
        }
    }
}

/// Image thumbnails uploaded on first hover, per displayed point.
#[derive(Default)]
pub struct Thumbnails {
    textures: HashMap<usize, egui::TextureHandle>,
}

/// Ten well-separated class colours (Tableau 10), cycling beyond ten classes.
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

pub fn class_color(label: u32) -> [u8; 3] {
    PALETTE[label as usize % PALETTE.len()]
}

fn rgba(label: u32, alpha: f32) -> [f32; 4] {
    let [r, g, b] = class_color(label);
    [
        f32::from(r) / 255.0,
        f32::from(g) / 255.0,
        f32::from(b) / 255.0,
        alpha,
    ]
}

/// The particles and tether lines of `frame` in `mode`.
pub fn frame_geometry(
    frame: &Frame,
    labels: &[u32],
    settings: &ViewSettings,
) -> (Vec<Particle>, Vec<LineVertex>) {
    let (points, views, more) = match settings.mode {
        ViewMode::Sphere => (&frame.sphere, &frame.views_sphere, &frame.more_sphere),
        ViewMode::Pca2d | ViewMode::Pca3d => (&frame.points, &frame.views, &frame.more),
    };
    let flatten = |p: [f32; 3]| match settings.mode {
        ViewMode::Pca2d => [p[0], p[1], 0.0],
        ViewMode::Pca3d | ViewMode::Sphere => p,
    };
    // The core, then the points beyond it: particle `i` is displayed point `i`.
    let mut particles: Vec<Particle> = points
        .iter()
        .chain(more)
        .zip(labels)
        .map(|(&p, &label)| Particle::new(flatten(p), rgba(label, 1.0)))
        .collect();
    let mut lines = Vec::new();
    if settings.tethers {
        for (pair, &label) in views.iter().zip(labels) {
            let [a, b] = [flatten(pair[0]), flatten(pair[1])];
            let centre = [
                f32::midpoint(a[0], b[0]),
                f32::midpoint(a[1], b[1]),
                f32::midpoint(a[2], b[2]),
            ];
            for end in [a, b] {
                lines.push(LineVertex::new(centre, rgba(label, 0.5)));
                lines.push(LineVertex::new(end, rgba(label, 0.5)));
                particles.push(Particle::new(end, rgba(label, 0.45)).with_size_scale(0.6));
            }
        }
    }
    if settings.mode == ViewMode::Sphere {
        lines.extend(render::unit_sphere_wireframe([1.0, 1.0, 1.0, 0.12]));
    }
    (particles, lines)
}

pub(super) fn toolbar_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    // Two rows: on one, the sliders with their labels overflowed a narrow central panel, and
    // an overflowing widget widens the panel's whole layout (the view then ran under the plots).
    ui.horizontal_wrapped(|ui| {
        super::browser::browser_button(app, ui);
        ui.separator();
        for mode in ViewMode::ALL {
            if ui
                .selectable_label(app.view.mode == mode, mode.label())
                .clicked()
                && app.view.mode != mode
            {
                app.view.mode = mode;
                app.camera = Camera::new(mode.camera_mode());
            }
        }
        ui.separator();
        ui.checkbox(&mut app.view.tethers, "Tethers")
            .on_hover_text("Draw two views of each image joined to their centroid");
        ui.separator();
        pictures_ui(app, ui);
        ui.separator();
        ui.label("Arrows:");
        for (f, (name, help)) in [
            (
                "attract",
                "The attraction on each point, toward its image's centroid",
            ),
            (
                "global",
                "The global dispersion (singular value force) on each point",
            ),
            (
                "local",
                "The local dispersion (this step's Brownian kick) on each point",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let [r, g, b] = super::arrows::ARROW_COLORS[f];
            ui.checkbox(
                &mut app.view.arrows[f],
                egui::RichText::new(name).color(egui::Color32::from_rgb(r, g, b)),
            )
            .on_hover_text(help);
        }
    });
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().slider_width = 90.0;
        ui.add(egui::Slider::new(&mut app.view.point_size_px, 1.0..=24.0).text("Point size"));
        ui.add(egui::Slider::new(&mut app.view.opacity, 0.05..=1.0).text("Opacity"));
    });
}

/// "Save PNG" (the window) and "Save view PNG" (the particle view): into the run folder on
/// screen, else the working folder.
fn pictures_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    let window = ui
        .button("Save PNG")
        .on_hover_text("Save the window as a PNG (in the run's folder, shots/)");
    let view = ui
        .button("Save view PNG")
        .on_hover_text("Save the particle view alone as a PNG");
    let range = app.timeline.range();
    let clip = ui
        .add_enabled(range.is_some(), egui::Button::new("Save GIF"))
        .on_hover_text(
            "Save the recorded steps up to the timeline's cursor (or head) as an animated GIF",
        );
    if clip.clicked()
        && let (Some(dir), Some((first, last))) = (app.timeline.dir().map(Path::to_owned), range)
    {
        let to = app.timeline.cursor().unwrap_or(last);
        app.pictures.request_clip(ui.ctx(), &dir, first, to);
    }
    if !(window.clicked() || view.clicked()) {
        return;
    }
    let dir = app
        .opened()
        .map(|o| o.dir.clone())
        .or_else(|| app.latest().and_then(|s| s.folder.clone()))
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let step = app.shown_frame().map_or(0, |frame| frame.step);
    app.pictures
        .request(ui.ctx(), &dir, &format!("step-{step:06}"), view.clicked());
}

fn error_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    let Some(error) = app.error.clone() else {
        return;
    };
    egui::Frame::new()
        .fill(ui.visuals().error_fg_color.gamma_multiply(0.15))
        .inner_margin(6.0)
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.colored_label(ui.visuals().error_fg_color, format!("Error: {error}"));
                if ui.button("Dismiss").clicked() {
                    app.error = None;
                }
            });
        });
}

fn legend_ui(info: &RunInfo, ui: &mut egui::Ui) {
    ui.horizontal_wrapped(|ui| {
        let mut present: Vec<u32> = info.labels.clone();
        present.sort_unstable();
        present.dedup();
        for label in present {
            let [r, g, b] = class_color(label);
            let name = info
                .class_names
                .get(label as usize)
                .cloned()
                .unwrap_or_else(|| format!("class {label}"));
            let (dot, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
            ui.painter()
                .circle_filled(dot.center(), 4.5, egui::Color32::from_rgb(r, g, b));
            ui.label(name);
        }
    });
}

pub fn view_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    super::lesson::lesson_ui(app, ui);
    toolbar_ui(app, ui);
    error_ui(app, ui);
    opened_ui(app, ui);
    let Some(info) = app.shown_info() else {
        ui.centered_and_justified(|ui| ui.label("Starting the run..."));
        return;
    };
    legend_ui(&info, ui);
    ui.label(info.workload.settings().describe());
    let live_step = if app.opened().is_some() {
        None
    } else {
        app.latest().map(|s| s.step)
    };
    egui::Panel::bottom("timeline").show(ui, |ui| {
        timeline_ui(&mut app.timeline, live_step, ui);
        branch_ui(app, ui);
    });
    let frame = app.shown_frame();

    let (rect, response) =
        ui.allocate_exact_size(ui.available_size(), egui::Sense::click_and_drag());
    app.pictures.view_rect = Some(rect);
    app.camera.mode = app.view.mode.camera_mode();
    steer_camera(&mut app.camera, &response, ui);
    ui.painter()
        .rect_filled(rect, 0.0, egui::Color32::from_gray(18));

    let Some(frame) = &frame else {
        return;
    };
    let (mut particles, mut lines) = frame_geometry(frame, &info.labels, &app.view);
    let arrows = app
        .latest()
        .and_then(|s| s.arrows.clone())
        .filter(|_| app.timeline.is_live() && app.opened().is_none());
    if let Some(arrows) = arrows
        && app.view.arrows.contains(&true)
    {
        let (tips, arrow_lines) =
            super::arrows::arrow_geometry(frame, &arrows, app.view.arrows, app.view.mode);
        particles.extend(tips);
        lines.extend(arrow_lines);
    }
    let style = render::RenderStyle {
        point_size_px: app.view.point_size_px,
        opacity: app.view.opacity,
    };
    if app.gpu_view {
        ui.painter().add(render::callback(
            rect,
            render::FrameData {
                particles: particles.clone(),
                lines,
                camera: app.camera,
                style,
            },
        ));
    } else {
        paint_with_egui(ui, rect, &app.camera, &particles, style);
    }

    let viewport = [rect.width(), rect.height()];
    let shown = (frame.points.len() + frame.more.len())
        .min(info.labels.len())
        .min(particles.len());
    if let Some((class, text)) = app.lesson.as_ref().and_then(|l| l.pointer.clone()) {
        let targets: Vec<egui::Pos2> = particles[..shown]
            .iter()
            .zip(&info.labels)
            .filter(|(_, label)| class.is_none_or(|c| c == **label))
            .filter_map(|(p, _)| app.camera.project(p.position, viewport))
            .map(|[x, y]| rect.min + egui::vec2(x, y))
            .collect();
        super::lesson::pointer_ui(ui, rect, &targets, &text);
    }
    if let Some(pointer) = response.hover_pos() {
        let cursor = [pointer.x - rect.min.x, pointer.y - rect.min.y];
        if let Some(index) = app.camera.pick(&particles[..shown], cursor, viewport, 8.0) {
            hover_ui(app, &info, index, &response);
        }
    }
    ui.painter().text(
        rect.right_bottom() - egui::vec2(8.0, 8.0),
        egui::Align2::RIGHT_BOTTOM,
        if app.timeline.is_live() {
            format!("step {}", frame.step)
        } else {
            format!("replay: step {}", frame.step)
        },
        egui::FontId::monospace(12.0),
        egui::Color32::from_gray(160),
    );
}

/// "Branch from here": the run on screen as it was at the timeline's step (the newest
/// recorded one at Live), with the forces and learning rate the controls show now, continues
/// as a new run; the fork is shown on its timeline.
fn branch_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    let (Some(dir), Some((_, last))) =
        (app.timeline.dir().map(Path::to_owned), app.timeline.range())
    else {
        return;
    };
    let step = app.timeline.cursor().unwrap_or(last);
    ui.horizontal_wrapped(|ui| {
        if let Some(fork) = app.timeline.fork() {
            ui.label(egui::RichText::new(fork).italics());
            ui.separator();
        }
        let branch = ui.button("Branch").on_hover_text(format!(
            "Continue from step {step} with the forces set now, as a new run (this one is \
                 kept)"
        ));
        if branch.clicked() {
            app.send(Command::Branch(Box::new(BranchRequest {
                parent: dir.clone(),
                step,
                dynamics: app.dynamics,
                learning_rate: app.learning_rate,
            })));
            app.forces_taken();
            if app.opened().is_some() {
                app.close_folder();
            }
            app.timeline.go_live();
        }
        ui.label(format!("from step {step}"));
        if app.forces_held() {
            ui.label(
                egui::RichText::new(
                    "forces set here are held for Branch; the live run takes them when you \
                     go back to it",
                )
                .italics(),
            );
        }
    });
}

/// Which run folder is open (and whether another process is writing it), with the way back.
fn opened_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    let Some(opened) = app.opened() else {
        return;
    };
    let text = match &opened.writer {
        Some(holder) => format!(
            "Watching {} live: {} is writing it",
            opened.dir.display(),
            holder.describe()
        ),
        None => format!("Replaying {}", opened.dir.display()),
    };
    let mut back = false;
    ui.horizontal_wrapped(|ui| {
        ui.label(egui::RichText::new(text).strong());
        back = ui.button("Back to the app's run").clicked();
    });
    if back {
        app.close_folder();
    }
}

/// Drag orbits (3D) or pans (2D), scroll zooms, double-click resets: `camera` steered by the
/// pointer on a view's `response`.
pub(super) fn steer_camera(camera: &mut Camera, response: &egui::Response, ui: &egui::Ui) {
    if response.double_clicked() {
        camera.reset();
    }
    if response.dragged() {
        let delta = response.drag_delta();
        camera.drag(delta.x, delta.y, response.rect.height());
    }
    if response.hovered() {
        let scroll = ui.input(|input| input.smooth_scroll_delta.y);
        if scroll != 0.0 {
            camera.zoom(scroll);
        }
    }
}

/// egui's own painter, where the wgpu renderer is not installed (tests without a GPU).
pub(super) fn paint_with_egui(
    ui: &egui::Ui,
    rect: egui::Rect,
    camera: &Camera,
    particles: &[Particle],
    style: render::RenderStyle,
) {
    let painter = ui.painter_at(rect);
    let viewport = [rect.width(), rect.height()];
    for particle in particles {
        let Some([x, y]) = camera.project(particle.position, viewport) else {
            continue;
        };
        let [r, g, b, a] = particle.color;
        let color = egui::Color32::from_rgba_unmultiplied(
            (r * 255.0) as u8,
            (g * 255.0) as u8,
            (b * 255.0) as u8,
            (a * style.opacity * 255.0) as u8,
        );
        painter.circle_filled(
            rect.min + egui::vec2(x, y),
            style.point_size_px * 0.5 * particle.size_scale,
            color,
        );
    }
}

fn hover_ui(app: &mut MsbregApp, info: &RunInfo, index: usize, response: &egui::Response) {
    let label = info.labels.get(index).copied().unwrap_or(0);
    let name = info
        .class_names
        .get(label as usize)
        .cloned()
        .unwrap_or_else(|| format!("class {label}"));
    let texture = match &info.preview {
        Preview::Images(set) if index < set.len() => {
            let ctx = response.ctx.clone();
            Some(
                app.thumbnails
                    .textures
                    .entry(index)
                    .or_insert_with(|| {
                        let shape = set.shape;
                        let pixels = set.image(index);
                        let rgba: Vec<u8> = pixels
                            .chunks(shape.channels)
                            .flat_map(|px| match px {
                                [v] => [*v, *v, *v, 255],
                                [r, g, b, ..] => [*r, *g, *b, 255],
                                _ => [0, 0, 0, 255],
                            })
                            .collect();
                        let image = egui::ColorImage::from_rgba_unmultiplied(
                            [shape.width, shape.height],
                            &rgba,
                        );
                        ctx.load_texture(
                            format!("thumbnail-{}-{index}", info.run_id),
                            image,
                            egui::TextureOptions::NEAREST,
                        )
                    })
                    .clone(),
            )
        }
        _ => None,
    };
    let point = match &info.preview {
        Preview::Points { points, dim } if *dim > 0 => points
            .get(index * dim..(index + 1) * dim)
            .map(<[f32]>::to_vec),
        _ => None,
    };
    response.clone().on_hover_ui_at_pointer(|ui| {
        if let Some(texture) = &texture {
            ui.image((texture.id(), egui::vec2(96.0, 96.0)));
        }
        if let Some(point) = &point {
            let shown: Vec<String> = point.iter().take(4).map(|x| format!("{x:.2}")).collect();
            ui.label(format!(
                "input ({}{})",
                shown.join(", "),
                if point.len() > 4 { ", ..." } else { "" }
            ));
        }
        ui.label(format!("{name} (label {label})"));
        ui.label(format!("index {index}"));
    });
}
