//! A clip of a recording as an animated GIF (`msbreg render`): each recorded frame in a span
//! drawn offscreen by the same particle renderer and geometry as the app's view (3D PCA,
//! the default camera), at the recorded pace.
//!
//! GIF because it plays everywhere (slides, issues, chats) and the `image` crate already
//! here writes it (its `gif` feature, the well-kept `gif` crate, pure Rust). MP4 would need an
//! H.264 encoder: the pure-Rust ones are young or a C library's binding, so not yet.

use std::path::Path;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, RgbaImage};

use super::{Camera, FrameData, HeadlessGpu, Offscreen, RenderStyle, ViewMode};
use crate::app::{ViewSettings, frame_geometry};
use crate::session::{RecordedFrame, Recording};

/// What to render.
#[derive(Clone, Debug)]
pub struct ClipOptions {
    /// The first and last recorded steps to include (`None`: from the start, to the end).
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// Width and height in pixels.
    pub size: u32,
    /// At most this many frames (evenly taken from the span when it has more).
    pub max_frames: usize,
    /// Playback speed against the recorded time.
    pub speed: f64,
}

impl Default for ClipOptions {
    fn default() -> Self {
        Self {
            from: None,
            to: None,
            size: 480,
            max_frames: 300,
            speed: 1.0,
        }
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipSummary {
    pub frames: usize,
    /// Recorded frames in the span (more than `frames` when they were thinned).
    pub recorded: usize,
    pub first_step: u64,
    pub last_step: u64,
    pub adapter: String,
}

/// Renders the frames of `recording` in the span of `options` into the GIF `out`.
pub fn render_clip(
    recording: &mut Recording,
    options: &ClipOptions,
    out: &Path,
) -> anyhow::Result<ClipSummary> {
    let all = recording.all_frames()?;
    let span: Vec<&RecordedFrame> = all
        .iter()
        .filter(|f| options.from.is_none_or(|from| f.frame.step >= from))
        .filter(|f| options.to.is_none_or(|to| f.frame.step <= to))
        .collect();
    let (Some(first), Some(last)) = (span.first(), span.last()) else {
        let range = recording.step_range().map_or_else(
            || "nothing".to_owned(),
            |(a, b)| format!("steps {a} to {b}"),
        );
        anyhow::bail!(
            "no recorded frame between --from {} and --to {}: {} holds {range}",
            options
                .from
                .map_or_else(|| "the start".to_owned(), |s| s.to_string()),
            options
                .to
                .map_or_else(|| "the end".to_owned(), |s| s.to_string()),
            recording.path().display()
        );
    };
    let (first_step, last_step) = (first.frame.step, last.frame.step);
    let keep = options.max_frames.max(1);
    let chosen: Vec<&RecordedFrame> = if span.len() > keep {
        (0..keep)
            .map(|k| span[k * (span.len() - 1) / (keep - 1).max(1)])
            .collect()
    } else {
        span.clone()
    };
    let gpu = HeadlessGpu::new()?;
    let size = options.size.clamp(64, 2048);
    let mut target = Offscreen::new(&gpu.device, size, size)?;
    let mut renderer = target.renderer(&gpu.device, gpu.rasteriser());
    let labels = &recording.header().labels;
    let settings = ViewSettings::default();
    let style = RenderStyle {
        point_size_px: settings.point_size_px * size as f32 / 480.0,
        opacity: settings.opacity,
    };
    let file = std::fs::File::create(out)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    let mut encoder = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
    encoder.set_repeat(Repeat::Infinite)?;
    for (k, recorded) in chosen.iter().enumerate() {
        let (particles, lines) = frame_geometry(&recorded.frame, labels, &settings);
        let pixels = target.render(
            &gpu.device,
            &gpu.queue,
            &mut renderer,
            &FrameData {
                particles,
                lines,
                camera: Camera::new(ViewMode::Orbit3d),
                style,
            },
        )?;
        let image = RgbaImage::from_raw(size, size, pixels)
            .ok_or_else(|| anyhow::anyhow!("the renderer read back a short image"))?;
        // Each frame shows until the next one's recorded time (scaled by the speed).
        let millis = chosen.get(k + 1).map_or(500, |next| {
            let dt = next.millis.saturating_sub(recorded.millis) as f64 / options.speed.max(1e-3);
            dt.clamp(20.0, 2000.0) as u32
        });
        encoder.encode_frame(image::Frame::from_parts(
            image,
            0,
            0,
            Delay::from_numer_denom_ms(millis, 1),
        ))?;
    }
    Ok(ClipSummary {
        frames: chosen.len(),
        recorded: span.len(),
        first_step,
        last_step,
        adapter: gpu.describe(),
    })
}
