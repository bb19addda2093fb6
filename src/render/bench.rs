//! `bench_render`: frames per second of the renderer into a 1280 x 720 offscreen target with
//! the 3D orbit camera, on its own device (a hardware GPU if there is one). Two cases per
//! particle count, so each line carries its own reference: `static` (the geometry uploaded
//! once, only the view each frame, as when orbiting a paused cloud) and `streaming` (uploaded
//! every frame, as while training). Each frame waits for the GPU, as a window does at its
//! present.

use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{
    Camera, FrameData, HeadlessGpu, Offscreen, Particle, RenderError, RenderStyle, Upload,
    ViewMode, unit_sphere_wireframe,
};

/// The particles are drawn from this seed, so every run renders the same cloud.
const BENCH_SEED: u64 = 0x5eed_0f_9a_57;
const BENCH_SIZE_PX: [u32; 2] = [1280, 720];

/// One particle count's result.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchLine {
    pub points: usize,
    pub frames: usize,
    /// "name (device type, backend)".
    pub adapter: String,
    /// Geometry uploaded once, before timing.
    pub static_frames_per_sec: f64,
    /// Geometry uploaded every frame.
    pub streaming_frames_per_sec: f64,
}

/// `points` particles uniform in the cube [-1, 1]^3 with random opaque colours, and the
/// unit-sphere wireframe, seen by the default orbit camera.
fn bench_frame(points: usize) -> FrameData {
    let mut rng = ChaCha8Rng::seed_from_u64(BENCH_SEED);
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
        style: RenderStyle {
            point_size_px: 4.0,
            opacity: 0.8,
        },
    }
}

/// Renders `frames` frames (at least 1) of each count in `points` after one warm-up frame;
/// pass 0 among the counts to see the fixed cost of a frame.
pub fn bench_render(points: &[usize], frames: usize) -> Result<Vec<BenchLine>, RenderError> {
    let gpu = HeadlessGpu::new()?;
    let (device, queue) = (&gpu.device, &gpu.queue);
    let [width, height] = BENCH_SIZE_PX;
    let mut target = Offscreen::new(device, width, height)?;
    let mut renderer = target.renderer(device);
    let frames = frames.max(1);

    let mut lines = Vec::with_capacity(points.len());
    for &count in points {
        let frame = bench_frame(count);
        // Warm-up: pipelines compiled, buffers grown, geometry uploaded.
        target.render_frames(device, queue, &mut renderer, &frame, 1, Upload::Everything)?;

        let start = Instant::now();
        target.render_frames(
            device,
            queue,
            &mut renderer,
            &frame,
            frames,
            Upload::ViewOnly,
        )?;
        let static_secs = start.elapsed().as_secs_f64();

        let start = Instant::now();
        target.render_frames(
            device,
            queue,
            &mut renderer,
            &frame,
            frames,
            Upload::Everything,
        )?;
        let streaming_secs = start.elapsed().as_secs_f64();

        lines.push(BenchLine {
            points: count,
            frames,
            adapter: gpu.describe(),
            static_frames_per_sec: frames as f64 / static_secs.max(f64::MIN_POSITIVE),
            streaming_frames_per_sec: frames as f64 / streaming_secs.max(f64::MIN_POSITIVE),
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
