//! Pictures: "Save PNG" writes the window, "Save view PNG" the particle view alone, as egui
//! draws them (a `ViewportCommand::Screenshot`, answered after the frame is painted). They
//! go to the run folder on screen (`shots/`), or to the working folder for a run that is not
//! kept; the status line says where.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use eframe::egui;

/// Screenshots asked for and not yet saved, and the answers.
pub struct Pictures {
    sender: Sender<Result<PathBuf, String>>,
    receiver: Receiver<Result<PathBuf, String>>,
    /// The particle view's rectangle in the last frame (points).
    pub view_rect: Option<egui::Rect>,
    taken: usize,
}

impl Default for Pictures {
    fn default() -> Self {
        let (sender, receiver) = channel();
        Self {
            sender,
            receiver,
            view_rect: None,
            taken: 0,
        }
    }
}

impl Pictures {
    /// Asks egui for a screenshot of the window (or of the particle view when `view`), to be
    /// saved as `dir/shots/<stem>-N.png`.
    pub fn request(&mut self, ctx: &egui::Context, dir: &Path, stem: &str, view: bool) {
        self.taken += 1;
        let path = dir.join("shots").join(format!(
            "{stem}-{}{}.png",
            self.taken,
            if view { "-view" } else { "" }
        ));
        let crop = if view { self.view_rect } else { None };
        let sender = self.sender.clone();
        let repaint = ctx.clone();
        let pixels_per_point = ctx.pixels_per_point();
        ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(
            egui::ScreenshotCallback::new(move |image| {
                let _ = sender.send(save(&image, crop, pixels_per_point, &path));
                repaint.request_repaint();
            }),
        ));
    }

    /// Renders the recorded steps `from..=to` of the run folder `dir` as an animated GIF
    /// (`dir/shots/steps-FROM-TO.gif`) on a thread of its own: the view goes on meanwhile.
    pub fn request_clip(&mut self, ctx: &egui::Context, dir: &Path, from: u64, to: u64) {
        let dir = dir.to_owned();
        let sender = self.sender.clone();
        let repaint = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("msbreg-clip".to_owned())
            .spawn(move || {
                let path = dir.join("shots").join(format!("steps-{from}-{to}.gif"));
                let made = (|| -> anyhow::Result<PathBuf> {
                    std::fs::create_dir_all(dir.join("shots"))?;
                    let mut recording = crate::session::Recording::open(&dir)?;
                    let options = crate::render::clip::ClipOptions {
                        from: Some(from),
                        to: Some(to),
                        ..crate::render::clip::ClipOptions::default()
                    };
                    crate::render::clip::render_clip(&mut recording, &options, &path)?;
                    Ok(path.clone())
                })();
                let _ = sender.send(made.map_err(|e| e.to_string()));
                repaint.request_repaint();
            });
        if let Err(err) = spawned {
            let _ = self
                .sender
                .send(Err(format!("cannot start the clip's thread: {err}")));
        }
    }

    /// What was saved (or failed) since the last call, as status messages.
    pub fn answers(&self) -> Vec<String> {
        self.receiver
            .try_iter()
            .map(|answer| match answer {
                Ok(path) => format!("saved {}", path.display()),
                Err(err) => format!("the picture was not saved: {err}"),
            })
            .collect()
    }
}

/// Writes `image` (cropped to `crop`, in points) as a PNG at `path`.
fn save(
    image: &Arc<egui::ColorImage>,
    crop: Option<egui::Rect>,
    pixels_per_point: f32,
    path: &Path,
) -> Result<PathBuf, String> {
    let image = match crop {
        Some(rect) => image.region(&rect, Some(pixels_per_point)),
        None => (**image).clone(),
    };
    let [width, height] = image.size;
    let bytes: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(egui::Color32::to_srgba_unmultiplied)
        .collect();
    let buffer = image::RgbaImage::from_raw(width as u32, height as u32, bytes)
        .ok_or_else(|| "the screenshot's size and pixels disagree".to_owned())?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    buffer
        .save(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.to_owned())
}
