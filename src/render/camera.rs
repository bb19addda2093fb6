//! The camera: a plain-data orbit camera (3D) or a top-down orthographic one (2D), its
//! world-to-clip matrix, and the same projection on the CPU for hover picking.
//!
//! Spaces: world (the particles' positions), clip (wgpu: x and y in [-1, 1] with y up, depth in
//! [0, 1]), and viewport pixels (origin at the top-left corner, y down). [`Camera::project`]
//! and the GPU use the same matrix, so a particle drawn at a pixel is picked at that pixel
//! (tested).

use nalgebra::{Matrix4, Vector3, Vector4};

use super::Particle;

/// How the positions are looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ViewMode {
    /// Orthographic, looking down the z axis: x to the right, y up; z is ignored.
    Flat2d,
    /// Perspective, orbiting around `target`.
    #[default]
    Orbit3d,
    /// The same orbit as [`ViewMode::Orbit3d`], for positions on the unit sphere (the app adds
    /// the wireframe, see [`super::unit_sphere_wireframe`]).
    Sphere,
}

/// Radians of orbit per pixel dragged.
const ORBIT_RAD_PER_PX: f32 = 0.01;
/// Pitch stays this far from the poles, so the view never flips over.
const PITCH_LIMIT_RAD: f32 = std::f32::consts::FRAC_PI_2 - 0.01;
/// Zoom factor per point of scroll: one notch (about 50 points) zooms by about 10 %.
const ZOOM_PER_SCROLL_POINT: f32 = 0.002;
const MIN_DISTANCE: f32 = 0.05;
const MAX_DISTANCE: f32 = 1000.0;

/// An orbit camera, plain data: the app keeps one, mutates it from input and hands a copy to
/// the renderer each frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Camera {
    pub mode: ViewMode,
    /// Rotation about the world y axis; 0 looks from +z towards -z (as the 2D view does).
    pub yaw_rad: f32,
    /// Elevation of the eye above the x-z plane, within +-(pi/2 - 0.01).
    pub pitch_rad: f32,
    /// 3D: the eye's distance from `target`. 2D: sets the visible half-height, which is
    /// `distance * tan(fov_y / 2)`, so zooming feels the same in both modes.
    pub distance: f32,
    /// The point looked at (panning moves it); in 2D only x and y are used.
    pub target: [f32; 3],
    /// Vertical field of view of the perspective modes.
    pub fov_y_rad: f32,
}

impl Default for Camera {
    fn default() -> Self {
        Self::new(ViewMode::default())
    }
}

impl Camera {
    /// The default view of `mode`: the unit sphere fits with a margin.
    pub fn new(mode: ViewMode) -> Self {
        let (yaw_rad, pitch_rad) = match mode {
            ViewMode::Flat2d => (0.0, 0.0),
            ViewMode::Orbit3d | ViewMode::Sphere => (0.6, 0.4),
        };
        Self {
            mode,
            yaw_rad,
            pitch_rad,
            distance: 3.0,
            target: [0.0; 3],
            fov_y_rad: 45f32.to_radians(),
        }
    }

    /// Back to the default view, keeping the mode.
    pub fn reset(&mut self) {
        *self = Self::new(self.mode);
    }

    /// Rotates the view by a mouse drag of (`dx_px`, `dy_px`): dragging right turns the scene
    /// to the right, dragging down tilts it towards the viewer. Does nothing in 2D (use
    /// [`Camera::pan`], or [`Camera::drag`] which picks for you).
    pub fn orbit(&mut self, dx_px: f32, dy_px: f32) {
        if self.mode == ViewMode::Flat2d {
            return;
        }
        self.yaw_rad = (self.yaw_rad - dx_px * ORBIT_RAD_PER_PX) % std::f32::consts::TAU;
        self.pitch_rad =
            (self.pitch_rad + dy_px * ORBIT_RAD_PER_PX).clamp(-PITCH_LIMIT_RAD, PITCH_LIMIT_RAD);
    }

    /// Moves the target so that the scene follows a drag of (`dx_px`, `dy_px`) in a viewport
    /// `viewport_height_px` tall (exactly at the target's depth in 3D).
    pub fn pan(&mut self, dx_px: f32, dy_px: f32, viewport_height_px: f32) {
        let world_per_px = 2.0 * self.half_height() / viewport_height_px.max(1.0);
        let (right, up) = match self.mode {
            ViewMode::Flat2d => (Vector3::x(), Vector3::y()),
            ViewMode::Orbit3d | ViewMode::Sphere => {
                let (right, up, _) = self.eye_basis();
                (right, up)
            }
        };
        let target = Vector3::from(self.target) + (-dx_px * right + dy_px * up) * world_per_px;
        self.target = target.into();
    }

    /// A primary drag: orbits in 3D, pans in 2D.
    pub fn drag(&mut self, dx_px: f32, dy_px: f32, viewport_height_px: f32) {
        match self.mode {
            ViewMode::Flat2d => self.pan(dx_px, dy_px, viewport_height_px),
            ViewMode::Orbit3d | ViewMode::Sphere => self.orbit(dx_px, dy_px),
        }
    }

    /// Zooms by a scroll of `scroll_points` (egui's `smooth_scroll_delta.y`: positive when
    /// scrolling up, which zooms in).
    pub fn zoom(&mut self, scroll_points: f32) {
        if !scroll_points.is_finite() {
            return;
        }
        self.distance = (self.distance * (-scroll_points * ZOOM_PER_SCROLL_POINT).exp())
            .clamp(MIN_DISTANCE, MAX_DISTANCE);
    }

    /// Half the visible height at the target, in world units.
    fn half_height(&self) -> f32 {
        self.distance * (0.5 * self.fov_y_rad).tan()
    }

    /// Unit vectors (right, up, back) of the eye in world space; back points from the target
    /// to the eye.
    fn eye_basis(&self) -> (Vector3<f32>, Vector3<f32>, Vector3<f32>) {
        let (sin_yaw, cos_yaw) = self.yaw_rad.sin_cos();
        let (sin_pitch, cos_pitch) = self.pitch_rad.sin_cos();
        let back = Vector3::new(cos_pitch * sin_yaw, sin_pitch, cos_pitch * cos_yaw);
        // Pitch stays off the poles, so back is never parallel to y.
        let right = Vector3::y().cross(&back).normalize();
        let up = back.cross(&right);
        (right, up, back)
    }

    /// The matrix taking world positions (w = 1) to wgpu clip space for a viewport of width /
    /// height `aspect`.
    pub fn world_to_clip(&self, aspect: f32) -> Matrix4<f32> {
        let aspect = if aspect.is_finite() && aspect > 0.0 {
            aspect
        } else {
            1.0
        };
        let half_h = self.half_height();
        let [tx, ty, tz] = self.target;
        match self.mode {
            ViewMode::Flat2d => {
                let half_w = half_h * aspect;
                // z is dropped: every particle lands at depth 0.5, inside the clip volume.
                #[rustfmt::skip]
                let clip_from_world = Matrix4::new(
                    1.0 / half_w, 0.0, 0.0, -tx / half_w,
                    0.0, 1.0 / half_h, 0.0, -ty / half_h,
                    0.0, 0.0, 0.0, 0.5,
                    0.0, 0.0, 0.0, 1.0,
                );
                clip_from_world
            }
            ViewMode::Orbit3d | ViewMode::Sphere => {
                let (right, up, back) = self.eye_basis();
                let eye = Vector3::new(tx, ty, tz) + back * self.distance;
                #[rustfmt::skip]
                let view_from_world = Matrix4::new(
                    right.x, right.y, right.z, -right.dot(&eye),
                    up.x, up.y, up.z, -up.dot(&eye),
                    back.x, back.y, back.z, -back.dot(&eye),
                    0.0, 0.0, 0.0, 1.0,
                );
                // Right-handed perspective with depth in [0, 1] (wgpu), not OpenGL's [-1, 1].
                let near = self.distance * 1e-3;
                let far = self.distance * 1e3;
                let f = 1.0 / (0.5 * self.fov_y_rad).tan();
                #[rustfmt::skip]
                let clip_from_view = Matrix4::new(
                    f / aspect, 0.0, 0.0, 0.0,
                    0.0, f, 0.0, 0.0,
                    0.0, 0.0, far / (near - far), near * far / (near - far),
                    0.0, 0.0, -1.0, 0.0,
                );
                clip_from_view * view_from_world
            }
        }
    }

    /// Where `position` lands in a viewport of `viewport` = (width, height), measured from its
    /// top-left corner with y down, in the viewport's unit (pixels or egui points); `None` when
    /// it is behind the eye or outside the depth range.
    pub fn project(&self, position: [f32; 3], viewport: [f32; 2]) -> Option<[f32; 2]> {
        let [width, height] = viewport;
        let world_to_clip = self.world_to_clip(width / height);
        project_with(&world_to_clip, position, viewport)
    }

    /// The particle drawn nearest to `cursor` (viewport coordinates as in
    /// [`Camera::project`]), if one is within `max_distance`. Linear in the number of
    /// particles (about 5 ms per million on one core).
    pub fn pick(
        &self,
        particles: &[Particle],
        cursor: [f32; 2],
        viewport: [f32; 2],
        max_distance: f32,
    ) -> Option<usize> {
        let world_to_clip = self.world_to_clip(viewport[0] / viewport[1]);
        let mut best: Option<(usize, f32)> = None;
        for (index, particle) in particles.iter().enumerate() {
            let Some([x, y]) = project_with(&world_to_clip, particle.position, viewport) else {
                continue;
            };
            let distance_sq = (x - cursor[0]).powi(2) + (y - cursor[1]).powi(2);
            if distance_sq <= max_distance * max_distance
                && best.is_none_or(|(_, best_sq)| distance_sq < best_sq)
            {
                best = Some((index, distance_sq));
            }
        }
        best.map(|(index, _)| index)
    }
}

fn project_with(
    world_to_clip: &Matrix4<f32>,
    position: [f32; 3],
    viewport: [f32; 2],
) -> Option<[f32; 2]> {
    let [x, y, z] = position;
    let clip = world_to_clip * Vector4::new(x, y, z, 1.0);
    if clip.w <= 0.0 {
        return None;
    }
    let ndc = clip.xyz() / clip.w;
    if !(0.0..=1.0).contains(&ndc.z) {
        return None;
    }
    Some([
        0.5 * (ndc.x + 1.0) * viewport[0],
        0.5 * (1.0 - ndc.y) * viewport[1],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f32; 2], b: [f32; 2]) -> bool {
        (a[0] - b[0]).abs() < 1e-3 && (a[1] - b[1]).abs() < 1e-3
    }

    /// A 2D camera whose visible half-height is exactly 1 world unit.
    fn unit_flat() -> Camera {
        let mut camera = Camera::new(ViewMode::Flat2d);
        camera.distance = 1.0 / (0.5 * camera.fov_y_rad).tan();
        camera
    }

    #[test]
    fn flat_projection_by_hand() {
        let camera = unit_flat();
        // 200 x 100 viewport: half-height 1 -> 50 px per unit, half-width 2 units.
        let viewport = [200.0, 100.0];
        assert!(close(
            camera.project([0.0, 0.0, 0.0], viewport).expect("in view"),
            [100.0, 50.0]
        ));
        assert!(close(
            camera.project([1.0, 0.5, 7.0], viewport).expect("in view"),
            [150.0, 25.0]
        ));
        assert!(close(
            camera
                .project([-2.0, -1.0, -3.0], viewport)
                .expect("in view"),
            [0.0, 100.0]
        ));
    }

    #[test]
    fn orbit_projection_by_hand() {
        // Looking from +z at the origin: the target is the centre; a point at height h on the
        // target plane is at f * h / distance in NDC.
        let mut camera = Camera::new(ViewMode::Orbit3d);
        camera.yaw_rad = 0.0;
        camera.pitch_rad = 0.0;
        camera.distance = 4.0;
        let viewport = [100.0, 100.0];
        assert!(close(
            camera.project([0.0; 3], viewport).expect("in view"),
            [50.0, 50.0]
        ));
        let f = 1.0 / (0.5 * camera.fov_y_rad).tan();
        let ndc_y = f * 1.0 / 4.0;
        let expected = [50.0, 50.0 * (1.0 - ndc_y)];
        assert!(close(
            camera.project([0.0, 1.0, 0.0], viewport).expect("in view"),
            expected
        ));
        // Behind the eye.
        assert_eq!(camera.project([0.0, 0.0, 5.0], viewport), None);
    }

    #[test]
    fn yaw_quarter_turn_looks_along_x() {
        let mut camera = Camera::new(ViewMode::Orbit3d);
        camera.yaw_rad = std::f32::consts::FRAC_PI_2;
        camera.pitch_rad = 0.0;
        // Eye on +x looking at the origin: +z is to the left, so it lands left of centre.
        let [x, y] = camera
            .project([0.0, 0.0, 1.0], [100.0, 100.0])
            .expect("in view");
        assert!(x < 50.0 && (y - 50.0).abs() < 1e-3, "{x} {y}");
    }

    #[test]
    fn pan_follows_the_cursor() {
        let mut camera = unit_flat();
        let viewport = [200.0, 100.0];
        let before = camera.project([0.3, 0.2, 0.0], viewport).expect("in view");
        camera.pan(10.0, -20.0, viewport[1]);
        let after = camera.project([0.3, 0.2, 0.0], viewport).expect("in view");
        assert!(
            close(after, [before[0] + 10.0, before[1] - 20.0]),
            "{before:?} {after:?}"
        );

        let mut camera = Camera::new(ViewMode::Orbit3d);
        let target = camera.target;
        let before = camera.project(target, viewport).expect("in view");
        camera.pan(10.0, -20.0, viewport[1]);
        let after = camera.project(target, viewport).expect("in view");
        assert!(
            close(after, [before[0] + 10.0, before[1] - 20.0]),
            "{before:?} {after:?}"
        );
    }

    #[test]
    fn zoom_orbit_reset() {
        let mut camera = Camera::new(ViewMode::Sphere);
        camera.zoom(100.0);
        assert!(camera.distance < 3.0);
        camera.zoom(f32::NAN);
        assert!(camera.distance.is_finite());
        camera.zoom(1e9);
        assert_eq!(camera.distance, MIN_DISTANCE);
        camera.orbit(0.0, 1e6);
        assert_eq!(camera.pitch_rad, PITCH_LIMIT_RAD);
        camera.reset();
        assert_eq!(camera, Camera::new(ViewMode::Sphere));

        let mut flat = Camera::new(ViewMode::Flat2d);
        flat.orbit(50.0, 50.0);
        assert_eq!(flat, Camera::new(ViewMode::Flat2d));
    }

    #[test]
    fn degenerate_aspect_is_finite() {
        let camera = Camera::default();
        for aspect in [0.0, f32::NAN, f32::INFINITY, -1.0] {
            assert!(camera.world_to_clip(aspect).iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn pick_takes_the_nearest_within_reach() {
        let camera = unit_flat();
        let viewport = [100.0, 100.0];
        let color = [1.0; 4];
        let particles = [
            Particle::new([0.0, 0.0, 0.0], color),  // (50, 50)
            Particle::new([0.1, 0.0, 0.0], color),  // (55, 50)
            Particle::new([-0.5, 0.5, 0.0], color), // (25, 25)
        ];
        assert_eq!(
            camera.pick(&particles, [54.0, 50.0], viewport, 3.0),
            Some(1)
        );
        assert_eq!(
            camera.pick(&particles, [51.0, 51.0], viewport, 3.0),
            Some(0)
        );
        assert_eq!(camera.pick(&particles, [80.0, 80.0], viewport, 3.0), None);
        assert_eq!(camera.pick(&[], [50.0, 50.0], viewport, 3.0), None);
    }
}
