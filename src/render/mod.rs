//! The particle renderer: embeddings drawn as round, antialiased point sprites, plus line
//! segments (tethers from each view to its centroid, a faint unit-sphere wireframe), with wgpu.
//!
//! How it works, after egui's `custom3d_wgpu` example and rerun's point-cloud renderer:
//! - [`ParticleRenderer`] is long-lived: it owns the two pipelines (`shaders/particles.wgsl`,
//!   `shaders/lines.wgsl`), the uniform buffer and vertex buffers that grow on demand
//!   (capacity doubling). In the app it lives in egui-wgpu's `callback_resources`
//!   ([`install`]).
//! - Each frame the app hands over plain data, a [`FrameData`]: particles, lines, a [`Camera`]
//!   and a [`RenderStyle`]. [`ParticleRenderer::prepare`] uploads them;
//!   [`ParticleRenderer::paint`] draws into a render pass someone else began: egui's
//!   ([`callback`]), or an [`Offscreen`] texture for tests and [`bench_render`].
//! - No depth buffer (egui's pass has none): lines first, then particles in the order given,
//!   alpha-blended with premultiplied alpha.
//! - Two ways to draw the particles, the same look ([`Rasteriser`]): on a GPU, one instanced
//!   quad per particle; on a software adapter (lavapipe), whose pipeline costs about 0.3 µs per
//!   primitive, the CPU splats them into a layer that one triangle composites (`splat.rs`),
//!   from [`CPU_SPLAT_FROM_PARTICLES`] particles on.
//!
//! The `#[repr(C)]` structs here are mirrored in the WGSL files: keep them in sync (sizes are
//! asserted below and, for the uniform, against naga's layout in `tests/render.rs`).

mod bench;
mod callback;
mod camera;
pub mod clip;
mod offscreen;
mod splat;

use bytemuck::{Pod, Zeroable};
use eframe::wgpu;

pub use bench::{BenchLine, bench_render};
pub use callback::{ParticleCallback, callback, install, install_with, install_with_msaa};
pub use camera::{Camera, ViewMode};
pub use offscreen::{HeadlessGpu, Offscreen, Upload};

/// WGSL source of the particle pipeline.
pub const PARTICLES_WGSL: &str = include_str!("../../shaders/particles.wgsl");
/// WGSL source of the line pipeline.
pub const LINES_WGSL: &str = include_str!("../../shaders/lines.wgsl");
/// WGSL source of the pipeline compositing [`Rasteriser::CpuSplat`]'s layer.
pub const SPLAT_COMPOSITE_WGSL: &str = include_str!("../../shaders/splat_composite.wgsl");

/// Who turns particles into pixels. Both ways give the same image (tested: each channel
/// within the 8-bit roundings of the GPU's blending), and lines are drawn by the GPU either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rasteriser {
    /// The GPU's pipeline: one instanced quad (a 4-vertex triangle strip) per particle,
    /// shaded by `shaders/particles.wgsl`.
    GpuQuads,
    /// The CPU splats the particles into a layer (in parallel bands of rows) and the GPU
    /// composites it with one triangle (`shaders/splat_composite.wgsl`): for software
    /// adapters, whose pipeline costs about 0.3 µs per primitive however small (100 k
    /// particles: 30 ms before any pixel is shaded).
    CpuSplat,
    /// [`Rasteriser::GpuQuads`] below [`CPU_SPLAT_FROM_PARTICLES`] particles,
    /// [`Rasteriser::CpuSplat`] from there on: what a software adapter does best, as the
    /// splatter's cost per frame (storing, uploading and compositing a whole layer) is
    /// about 6 ms however few the particles.
    QuadsThenSplat,
}

/// From this many particles on, [`Rasteriser::QuadsThenSplat`] splats. On lavapipe (2 cores,
/// 1280 x 720, 7 px) both ways run at about 125 frames/s at 5000 particles; at 512 the quads
/// are 5 times faster, at 100 k the splatter.
pub const CPU_SPLAT_FROM_PARTICLES: usize = 5000;

impl Rasteriser {
    /// [`Rasteriser::QuadsThenSplat`] on a CPU adapter (lavapipe, llvmpipe, WARP,
    /// SwiftShader), [`Rasteriser::GpuQuads`] on anything else.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        if info.device_type == wgpu::DeviceType::Cpu {
            Self::QuadsThenSplat
        } else {
            Self::GpuQuads
        }
    }

    /// Whether `particles` particles are splatted.
    pub fn splats(self, particles: usize) -> bool {
        match self {
            Self::GpuQuads => false,
            Self::CpuSplat => true,
            Self::QuadsThenSplat => particles >= CPU_SPLAT_FROM_PARTICLES,
        }
    }
}

/// Errors of the renderer's own device, offscreen target and read-back (the app's device and
/// surface are eframe's).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "no wgpu adapter found (backends {backends:?}); install a Vulkan driver \
         (on Debian, mesa-vulkan-drivers gives the lavapipe software rasteriser)"
    )]
    NoAdapter { backends: wgpu::Backends },
    #[error("requesting a device from adapter {adapter} failed: {source}")]
    RequestDevice {
        adapter: String,
        #[source]
        source: wgpu::RequestDeviceError,
    },
    #[error("waiting for the GPU failed: {0}")]
    Poll(#[from] wgpu::PollError),
    #[error("reading back the rendered image failed: {0}")]
    Readback(String),
    #[error(
        "offscreen target format {0:?} is not supported: it must be a colour format of 4 bytes \
         per pixel that can be rendered to"
    )]
    UnsupportedFormat(wgpu::TextureFormat),
    #[error("offscreen MSAA sample count {0} is not supported: use 1 or 4")]
    UnsupportedSampleCount(u32),
}

/// One particle: an instance of `ParticleIn` in `shaders/particles.wgsl`. Keep in sync.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Particle {
    /// World position; the 2D view uses x and y.
    pub position: [f32; 3],
    /// Multiplies [`RenderStyle::point_size_px`] (1 normally; larger to highlight, 0 hides).
    pub size_scale: f32,
    /// Straight (not premultiplied) RGBA in gamma space, 0..1 (egui's `Color32` / 255).
    pub color: [f32; 4],
}
const _: () = assert!(std::mem::size_of::<Particle>() == 32);

impl Particle {
    pub const fn new(position: [f32; 3], color: [f32; 4]) -> Self {
        Self {
            position,
            size_scale: 1.0,
            color,
        }
    }

    #[must_use]
    pub const fn with_size_scale(mut self, size_scale: f32) -> Self {
        self.size_scale = size_scale;
        self
    }
}

/// One end of a line segment: `LineVertexIn` in `shaders/lines.wgsl`. Keep in sync.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct LineVertex {
    pub position: [f32; 3],
    /// Keeps `color` 16-byte aligned; not read by the shader.
    _pad: f32,
    /// Straight RGBA in gamma space, 0..1, as [`Particle::color`].
    pub color: [f32; 4],
}
const _: () = assert!(std::mem::size_of::<LineVertex>() == 32);

impl LineVertex {
    pub const fn new(position: [f32; 3], color: [f32; 4]) -> Self {
        Self {
            position,
            _pad: 0.0,
            color,
        }
    }

    /// The two vertices of a segment from `from` to `to` in one colour: extend
    /// [`FrameData::lines`] with them.
    pub const fn segment(from: [f32; 3], to: [f32; 3], color: [f32; 4]) -> [Self; 2] {
        [Self::new(from, color), Self::new(to, color)]
    }
}

/// The per-frame uniform: `FrameUniform` in both WGSL files. Keep in sync.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct FrameUniform {
    /// Column-major, as WGSL's `mat4x4<f32>`.
    pub world_to_clip: [[f32; 4]; 4],
    pub viewport_px: [f32; 2],
    pub point_size_px: f32,
    pub opacity: f32,
}
const _: () = assert!(std::mem::size_of::<FrameUniform>() == 80);

/// How particles look, for the whole frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenderStyle {
    /// Diameter of a particle in physical pixels (in egui, multiply a size in points by
    /// `ctx.pixels_per_point()`).
    pub point_size_px: f32,
    /// Multiplies every particle's alpha, 0..1.
    pub opacity: f32,
}

/// The app's defaults (`ViewSettings` in `src/app/view.rs`).
impl Default for RenderStyle {
    fn default() -> Self {
        Self {
            point_size_px: 7.0,
            opacity: 0.85,
        }
    }
}

/// Everything one frame needs, plain data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameData {
    /// Drawn in this order, over the lines.
    pub particles: Vec<Particle>,
    /// A line list: vertices 2k and 2k + 1 make segment k (an odd last vertex is ignored).
    pub lines: Vec<LineVertex>,
    pub camera: Camera,
    pub style: RenderStyle,
}

/// How much [`ParticleRenderer::prepare`] set up to draw. Fewer than given only beyond the
/// device's `max_buffer_size` (8 M particles at wgpu's default 256 MiB; [`Rasteriser::GpuQuads`]
/// particles and lines only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrawCounts {
    pub particles: u32,
    pub line_vertices: u32,
}

/// A wireframe of the unit sphere as a line list: 12 meridians and 11 parallels (every 15
/// degrees), circles of 64 segments.
pub fn unit_sphere_wireframe(color: [f32; 4]) -> Vec<LineVertex> {
    unit_sphere_wireframe_with(color, 12, 11, 64)
}

/// `segments_per_circle`-sided circles on the unit sphere: `parallels` circles of latitude
/// (between the poles) and `meridians` half-circles from pole to pole, as a line list.
pub fn unit_sphere_wireframe_with(
    color: [f32; 4],
    meridians: usize,
    parallels: usize,
    segments_per_circle: usize,
) -> Vec<LineVertex> {
    use std::f32::consts::{PI, TAU};
    let segments = segments_per_circle.max(3);
    let mut lines = Vec::with_capacity(2 * segments * (meridians + parallels));
    for i in 0..parallels {
        let latitude = PI * ((i + 1) as f32 / (parallels + 1) as f32 - 0.5);
        let (y, r) = latitude.sin_cos();
        let at = |k: usize| {
            let (sin, cos) = (TAU * k as f32 / segments as f32).sin_cos();
            [r * cos, y, r * sin]
        };
        for k in 0..segments {
            lines.extend(LineVertex::segment(at(k), at(k + 1), color));
        }
    }
    let half = segments.div_ceil(2);
    for j in 0..meridians {
        let (sin_lon, cos_lon) = (TAU * j as f32 / meridians as f32).sin_cos();
        let at = |k: usize| {
            let (y, r) = (PI * (k as f32 / half as f32 - 0.5)).sin_cos();
            [r * cos_lon, y, r * sin_lon]
        };
        for k in 0..half {
            lines.extend(LineVertex::segment(at(k), at(k + 1), color));
        }
    }
    lines
}

/// A vertex buffer that grows by doubling and never shrinks.
struct GrowableBuffer {
    label: &'static str,
    buffer: wgpu::Buffer,
    capacity: u64,
}

impl GrowableBuffer {
    const INITIAL_CAPACITY: u64 = 1024;
    const ELEMENT_BYTES: u64 = 32; // Particle and LineVertex

    fn new(device: &wgpu::Device, label: &'static str) -> Self {
        Self {
            label,
            buffer: Self::create(device, label, Self::INITIAL_CAPACITY),
            capacity: Self::INITIAL_CAPACITY,
        }
    }

    fn create(device: &wgpu::Device, label: &'static str, capacity: u64) -> wgpu::Buffer {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: capacity * Self::ELEMENT_BYTES,
            usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Uploads as many of `elements` as the device allows; returns how many.
    fn upload<T: Pod>(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        elements: &[T],
    ) -> u32 {
        debug_assert_eq!(std::mem::size_of::<T>() as u64, Self::ELEMENT_BYTES);
        let max_elements =
            (device.limits().max_buffer_size / Self::ELEMENT_BYTES).min(u64::from(u32::MAX));
        let wanted = (elements.len() as u64).min(max_elements);
        if wanted > self.capacity {
            self.capacity = wanted.next_power_of_two().min(max_elements);
            self.buffer = Self::create(device, self.label, self.capacity);
        }
        let count = wanted as usize;
        if count > 0 {
            queue.write_buffer(&self.buffer, 0, bytemuck::cast_slice(&elements[..count]));
        }
        count as u32
    }
}

/// Owns the pipelines and buffers; see the module header.
pub struct ParticleRenderer {
    particle_pipeline: wgpu::RenderPipeline,
    line_pipeline: wgpu::RenderPipeline,
    uniform_buffer: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    /// The quads' instances (unused while splatting).
    particles: GrowableBuffer,
    lines: GrowableBuffer,
    counts: DrawCounts,
    rasteriser: Rasteriser,
    /// `Some` unless the rasteriser is [`Rasteriser::GpuQuads`].
    splat: Option<splat::SplatLayer>,
    /// Whether the last prepare splatted.
    splatting: bool,
    target_format: wgpu::TextureFormat,
    msaa_samples: u32,
}

impl ParticleRenderer {
    /// Pipelines for a render pass with one colour target of `target_format`, `msaa_samples`
    /// samples (0 or 1: none) and no depth-stencil attachment, drawing particles with
    /// `rasteriser` (pick with [`Rasteriser::for_adapter`]).
    pub fn new(
        device: &wgpu::Device,
        target_format: wgpu::TextureFormat,
        msaa_samples: u32,
        rasteriser: Rasteriser,
    ) -> Self {
        let msaa_samples = msaa_samples.max(1);
        let uniform_size = std::mem::size_of::<FrameUniform>() as u64;
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("msbreg_render_frame_layout"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::VERTEX | wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: wgpu::BufferSize::new(uniform_size),
                },
                count: None,
            }],
        });
        let uniform_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("msbreg_render_frame_uniform"),
            size: uniform_size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("msbreg_render_frame"),
            layout: &bind_group_layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform_buffer.as_entire_binding(),
            }],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("msbreg_render_layout"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let pipeline = PipelineParts {
            device,
            layout: &layout,
            target_format,
            msaa_samples,
        };

        let particle_attributes =
            wgpu::vertex_attr_array![0 => Float32x3, 1 => Float32, 2 => Float32x4];
        let particle_pipeline = pipeline.create(
            "msbreg_particles",
            PARTICLES_WGSL,
            wgpu::VertexBufferLayout {
                array_stride: std::mem::size_of::<Particle>() as u64,
                step_mode: wgpu::VertexStepMode::Instance,
                attributes: &particle_attributes,
            },
            wgpu::PrimitiveTopology::TriangleStrip,
        );
        // Offset 16: `_pad` sits between position and colour.
        let line_attributes = wgpu::vertex_attr_array![0 => Float32x3, 1 => Float32x4];
        let line_attributes = [
            line_attributes[0],
            wgpu::VertexAttribute {
                offset: 16,
                ..line_attributes[1]
            },
        ];
        let line_pipeline = pipeline.create(
            "msbreg_lines",
            LINES_WGSL,
            wgpu::VertexBufferLayout {
                array_stride: std::mem::size_of::<LineVertex>() as u64,
                step_mode: wgpu::VertexStepMode::Vertex,
                attributes: &line_attributes,
            },
            wgpu::PrimitiveTopology::LineList,
        );

        Self {
            particle_pipeline,
            line_pipeline,
            uniform_buffer,
            bind_group,
            particles: GrowableBuffer::new(device, "msbreg_particles"),
            lines: GrowableBuffer::new(device, "msbreg_lines"),
            counts: DrawCounts::default(),
            rasteriser,
            splat: (rasteriser != Rasteriser::GpuQuads)
                .then(|| splat::SplatLayer::new(device, target_format, msaa_samples)),
            splatting: false,
            target_format,
            msaa_samples,
        }
    }

    /// As given to [`ParticleRenderer::new`].
    pub fn rasteriser(&self) -> Rasteriser {
        self.rasteriser
    }

    /// How the last [`ParticleRenderer::prepare`] drew the particles:
    /// [`Rasteriser::GpuQuads`] or [`Rasteriser::CpuSplat`].
    pub fn drawn_with(&self) -> Rasteriser {
        if self.splatting {
            Rasteriser::CpuSplat
        } else {
            Rasteriser::GpuQuads
        }
    }

    pub fn target_format(&self) -> wgpu::TextureFormat {
        self.target_format
    }

    pub fn msaa_samples(&self) -> u32 {
        self.msaa_samples
    }

    /// Uploads `frame` for a viewport of `viewport_px` = (width, height) physical pixels; it
    /// goes to the GPU with the next `queue.submit`. One view per frame: a second `prepare`
    /// before `paint` replaces the first. With [`Rasteriser::CpuSplat`] this is where the
    /// particles are drawn (into the layer that `paint` composites).
    pub fn prepare(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        frame: &FrameData,
        viewport_px: [u32; 2],
    ) -> DrawCounts {
        let line_vertices = &frame.lines[..frame.lines.len() & !1];
        self.splatting = self.rasteriser.splats(frame.particles.len());
        let particles = match &mut self.splat {
            Some(layer) if self.splatting => {
                layer.particles.clone_from(&frame.particles);
                u32::try_from(frame.particles.len()).unwrap_or(u32::MAX)
            }
            _ => self.particles.upload(device, queue, &frame.particles),
        };
        self.counts = DrawCounts {
            particles,
            line_vertices: self.lines.upload(device, queue, line_vertices) & !1,
        };
        self.prepare_view(device, queue, &frame.camera, &frame.style, viewport_px);
        self.counts
    }

    /// Uploads only the camera and style, keeping the particles and lines of the last
    /// [`ParticleRenderer::prepare`] (80 bytes instead of 32 per particle; the splatter
    /// draws its copy of them again).
    pub fn prepare_view(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        camera: &Camera,
        style: &RenderStyle,
        viewport_px: [u32; 2],
    ) {
        let width = viewport_px[0].max(1) as f32;
        let height = viewport_px[1].max(1) as f32;
        let uniform = FrameUniform {
            world_to_clip: camera.world_to_clip(width / height).into(),
            viewport_px: [width, height],
            point_size_px: style.point_size_px,
            opacity: style.opacity,
        };
        queue.write_buffer(&self.uniform_buffer, 0, bytemuck::bytes_of(&uniform));
        if let Some(layer) = self.splat.as_mut().filter(|_| self.splatting) {
            layer.prepare(device, queue, &uniform.world_to_clip, *style, viewport_px);
        }
    }

    /// Draws what the last [`ParticleRenderer::prepare`] uploaded: lines, then particles. The
    /// pass's viewport is the area drawn into.
    pub fn paint(&self, pass: &mut wgpu::RenderPass<'_>) {
        pass.set_bind_group(0, &self.bind_group, &[]);
        if self.counts.line_vertices > 0 {
            pass.set_pipeline(&self.line_pipeline);
            pass.set_vertex_buffer(0, self.lines.buffer.slice(..));
            pass.draw(0..self.counts.line_vertices, 0..1);
        }
        if let Some(layer) = self.splat.as_ref().filter(|_| self.splatting) {
            layer.paint(pass);
        } else if self.counts.particles > 0 {
            pass.set_pipeline(&self.particle_pipeline);
            pass.set_vertex_buffer(0, self.particles.buffer.slice(..));
            pass.draw(0..4, 0..self.counts.particles);
        }
    }
}

/// What the two pipelines share.
struct PipelineParts<'a> {
    device: &'a wgpu::Device,
    layout: &'a wgpu::PipelineLayout,
    target_format: wgpu::TextureFormat,
    msaa_samples: u32,
}

impl PipelineParts<'_> {
    fn create(
        &self,
        label: &str,
        wgsl: &str,
        vertex_buffer: wgpu::VertexBufferLayout<'_>,
        topology: wgpu::PrimitiveTopology,
    ) -> wgpu::RenderPipeline {
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
        // An `*Srgb` target encodes on write, so the shader must hand it linear colour.
        let fragment_entry = if self.target_format.is_srgb() {
            "fs_main_linear_framebuffer"
        } else {
            "fs_main"
        };
        self.device
            .create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(label),
                layout: Some(self.layout),
                vertex: wgpu::VertexState {
                    module: &module,
                    entry_point: Some("vs_main"),
                    compilation_options: wgpu::PipelineCompilationOptions::default(),
                    buffers: &[Some(vertex_buffer)],
                },
                primitive: wgpu::PrimitiveState {
                    topology,
                    cull_mode: None,
                    ..wgpu::PrimitiveState::default()
                },
                depth_stencil: None,
                multisample: wgpu::MultisampleState {
                    count: self.msaa_samples,
                    mask: !0,
                    alpha_to_coverage_enabled: false,
                },
                fragment: Some(wgpu::FragmentState {
                    module: &module,
                    entry_point: Some(fragment_entry),
                    compilation_options: wgpu::PipelineCompilationOptions::default(),
                    targets: &[Some(wgpu::ColorTargetState {
                        format: self.target_format,
                        blend: Some(wgpu::BlendState::PREMULTIPLIED_ALPHA_BLENDING),
                        write_mask: wgpu::ColorWrites::ALL,
                    })],
                }),
                multiview_mask: None,
                cache: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireframe_lies_on_the_unit_sphere() {
        let lines = unit_sphere_wireframe_with([1.0; 4], 6, 5, 32);
        assert_eq!(lines.len(), 2 * (5 * 32 + 6 * 16));
        for vertex in &lines {
            let [x, y, z] = vertex.position;
            assert!(((x * x + y * y + z * z).sqrt() - 1.0).abs() < 1e-5);
        }
        assert!(unit_sphere_wireframe_with([1.0; 4], 0, 0, 32).is_empty());
        assert_eq!(
            unit_sphere_wireframe([1.0; 4]).len(),
            2 * (11 * 64 + 12 * 32)
        );
    }
}
