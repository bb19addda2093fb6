//! `bench_render`: frames per second of the renderer into a 1280 x 720 offscreen target with
//! the 3D orbit camera and the app's default style (7 px sprites, opacity 0.85), on its own
//! device (a hardware GPU if there is one), with the adapter's [`Rasteriser`]. Two cases per
//! particle count: `static` (the geometry uploaded once, only the view each frame, as when
//! orbiting a paused cloud) and `streaming` (uploaded every frame, as while training). Where
//! the particles are splatted, [`Rasteriser::GpuQuads`]' `static` is measured in the same run
//! as the reference. Each frame waits for the GPU, as a window does at its present.
//!
//! What limits lavapipe's pipeline (2 cores, llvmpipe 15, 100 k particles uniform in the
//! cube, frames/s, medians of 7 rounds side by side in one process, the machine shared):
//!
//! | Variant | frames/s |
//! |---|---|
//! | instanced quads, 4-vertex strip, 4 px (the `GpuQuads` path) | 14.8 |
//! | the same at 1 px (so shading is not it) | 16.2 |
//! | 6 vertices per quad instead of a strip | 14.7 |
//! | no `discard` / no blending / no smoothstep | 14.7 / 16.0 / 17.9 |
//! | every quad culled in the vertex shader (so vertex work is not it) | 97.9 |
//! | quads of 0.05 px, which cover no pixel | 20.4 |
//! | one triangle per particle, one varying, 2 px / 0.05 px | 27.0 / 33.1 |
//! | a 1 px point list | 39.4 |
//!
//! Every primitive costs about 0.3 µs of setup, binning and rasteriser dispatch however small,
//! so no design with a primitive per particle reaches 30 frames/s at the app's 7 px there;
//! [`Rasteriser::CpuSplat`] skips the pipeline: 55 frames/s at 7 px (the quads: 9.9).

use std::time::Instant;

use rand::RngExt;

use super::{
    Camera, FrameData, HeadlessGpu, Offscreen, Particle, ParticleRenderer, Rasteriser, RenderError,
    RenderStyle, Upload, ViewMode, unit_sphere_wireframe,
};

/// The particles are drawn from this seed, so every run renders the same cloud.
const BENCH_SEED: u64 = 0x5eed_f00d;
const BENCH_SIZE_PX: [u32; 2] = [1280, 720];

/// One particle count's result.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchLine {
    pub points: usize,
    pub frames: usize,
    /// "name (device type, backend)".
    pub adapter: String,
    /// What drew the particles ([`Rasteriser::GpuQuads`] or [`Rasteriser::CpuSplat`]): the
    /// adapter's [`Rasteriser::for_adapter`] settles it for this count.
    pub rasteriser: Rasteriser,
    /// Sprite diameter: [`RenderStyle::default`], the app's.
    pub point_size_px: f32,
    /// Geometry uploaded once, before timing.
    pub static_frames_per_sec: f64,
    /// Geometry uploaded every frame.
    pub streaming_frames_per_sec: f64,
    /// [`Rasteriser::GpuQuads`]' `static`, measured in the same run where the particles were
    /// splatted: the reference for the ratio.
    pub gpu_quads_static_frames_per_sec: Option<f64>,
}

/// `points` particles uniform in the cube [-1, 1]^3 with random opaque colours, and the
/// unit-sphere wireframe, seen by the default orbit camera.
fn bench_frame(points: usize) -> FrameData {
    let mut rng = crate::seed::rng(BENCH_SEED, crate::seed::Stream::Dataset);
    let particles = (0..points)
        .map(|_| {
            let position = [
                rng.random_range(-1.0..1.0),
                rng.random_range(-1.0..1.0),
                rng.random_range(-1.0..1.0),
            ];
            let color = [
                rng.random_range(0.2..1.0),
                rng.random_range(0.2..1.0),
                rng.random_range(0.2..1.0),
                1.0,
            ];
            Particle::new(position, color)
        })
        .collect();
    FrameData {
        particles,
        lines: unit_sphere_wireframe([0.6, 0.6, 0.6, 0.25]),
        camera: Camera::new(ViewMode::Orbit3d),
        style: RenderStyle::default(),
    }
}

/// Renders `frames` frames (at least 1) of each count in `points` after one warm-up frame;
/// pass 0 among the counts to see the fixed cost of a frame.
pub fn bench_render(points: &[usize], frames: usize) -> Result<Vec<BenchLine>, RenderError> {
    let gpu = HeadlessGpu::new()?;
    let (device, queue) = (&gpu.device, &gpu.queue);
    let [width, height] = BENCH_SIZE_PX;
    let mut target = Offscreen::new(device, width, height)?;
    let rasteriser = gpu.rasteriser();
    let mut renderer = target.renderer(device, rasteriser);
    let mut quads =
        (rasteriser != Rasteriser::GpuQuads).then(|| target.renderer(device, Rasteriser::GpuQuads));
    let frames = frames.max(1);

    let mut lines = Vec::with_capacity(points.len());
    for &count in points {
        let frame = bench_frame(count);
        // Frames/s of `frames` frames with `renderer`, after a warm-up frame (pipelines
        // compiled, buffers grown, geometry uploaded).
        let mut frames_per_sec =
            |renderer: &mut ParticleRenderer, upload: Upload| -> Result<f64, RenderError> {
                target.render_frames(device, queue, renderer, &frame, 1, Upload::Everything)?;
                let start = Instant::now();
                target.render_frames(device, queue, renderer, &frame, frames, upload)?;
                Ok(frames as f64 / start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE))
            };
        let static_frames_per_sec = frames_per_sec(&mut renderer, Upload::ViewOnly)?;
        let streaming_frames_per_sec = frames_per_sec(&mut renderer, Upload::Everything)?;

        let drawn_with = renderer.drawn_with();
        let gpu_quads_static_frames_per_sec = match quads.as_mut() {
            Some(quads) if drawn_with != Rasteriser::GpuQuads => {
                Some(frames_per_sec(quads, Upload::ViewOnly)?)
            }
            _ => None,
        };

        lines.push(BenchLine {
            points: count,
            frames,
            adapter: gpu.describe(),
            rasteriser: drawn_with,
            point_size_px: frame.style.point_size_px,
            static_frames_per_sec,
            streaming_frames_per_sec,
            gpu_quads_static_frames_per_sec,
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_frame_is_seeded() {
        let a = bench_frame(100);
        assert_eq!(a, bench_frame(100));
        assert_eq!(a.particles.len(), 100);
        assert!(
            a.particles
                .iter()
                .all(|p| p.position.iter().all(|x| (-1.0..1.0).contains(x)))
        );
    }
}
