//! [`Rasteriser::CpuSplat`](super::Rasteriser::CpuSplat): the particles drawn on the CPU, for
//! software adapters (lavapipe). Such an adapter is the CPU already, and its general pipeline
//! pays about 0.3 µs of triangle setup, binning and rasteriser dispatch per primitive however
//! small, so 100 k sprites cost 30 ms or more before a pixel is shaded (measured: `bench_render`
//! and the module header of `bench.rs`). Splatting them here costs a few ns per covered pixel.
//!
//! How it works, each frame:
//! 1. Project every particle with the frame's `world_to_clip` to a [`Sprite`] (centre and
//!    radius in pixels, premultiplied colour), culling as the GPU path's clipper does, and
//!    copy it into the list of each band of [`BAND_ROWS`] rows it reaches. In parallel over
//!    chunks of consecutive particles, each with lists of its own, so the order is kept.
//! 2. Draw the bands in parallel (rayon, on a pool of our own): each blends its sprites in
//!    order into an `f32` premultiplied band, with the same coverage as `shaders/particles.wgsl`
//!    (`1 - smoothstep(r - 0.5, r + 0.5, d)` at each pixel centre), then stores it as RGBA8 (the
//!    rgb encoded to sRGB for an `*Srgb` target, whose layer texture decodes it back). Reading
//!    the sprites in sequence matters: through indices, cache misses took half the time.
//! 3. [`SplatLayer`] uploads the pixels into a texture the size of the viewport, and
//!    `shaders/splat_composite.wgsl` blends it over the target with one triangle covering the
//!    viewport.
//!
//! Premultiplied "over" is associative, so the layer composited over the lines equals the
//! particles blended one by one over them, up to rounding: the GPU rounds its 8-bit target after
//! every particle, the splatter once (`tests/render.rs` compares both paths pixel by pixel).
//! Keep `Sprite::project`, `coverage` and `blend_sprite` in sync with `shaders/particles.wgsl`.

use eframe::wgpu;
use rayon::prelude::*;

use super::{Particle, RenderStyle, SPLAT_COMPOSITE_WGSL};

/// Rows per band: the unit of binning and of parallel work.
const BAND_ROWS: usize = 16;

/// A particle as projected for splatting.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sprite {
    /// Centre in viewport pixels, origin at the top-left corner, y down.
    centre_px: [f32; 2],
    radius_px: f32,
    /// Premultiplied RGBA at full coverage, rgb linear for an `*Srgb` target.
    premultiplied: [f32; 4],
}

impl Sprite {
    /// As `vs_main` and `shade` in `shaders/particles.wgsl` see `particle` in a viewport of
    /// `size_px`, with the rows `[first, end)` it may cover; `None` where nothing would be
    /// drawn (behind the eye, outside the depth range or the viewport, size or alpha 0).
    fn project(
        particle: &Particle,
        world_to_clip: &[[f32; 4]; 4],
        style: RenderStyle,
        size_px: [u32; 2],
        linear_rgb: bool,
    ) -> Option<(Self, [u32; 2])> {
        let [x, y, z] = particle.position;
        let m = world_to_clip;
        let clip = |row: usize| m[0][row] * x + m[1][row] * y + m[2][row] * z + m[3][row];
        let [clip_x, clip_y, clip_z, clip_w] = [clip(0), clip(1), clip(2), clip(3)];
        let radius_px = 0.5 * style.point_size_px * particle.size_scale;
        let alpha = (particle.color[3] * style.opacity).clamp(0.0, 1.0);
        // The quad keeps the centre's depth: the clipper drops it outside 0 <= z <= w.
        let visible = clip_w > 0.0
            && radius_px > 0.0
            && radius_px.is_finite()
            && alpha > 0.0
            && (0.0..=clip_w).contains(&clip_z);
        if !visible {
            return None;
        }
        let centre_px = [
            (clip_x / clip_w + 1.0) * 0.5 * size_px[0] as f32,
            (1.0 - clip_y / clip_w) * 0.5 * size_px[1] as f32,
        ];
        // Coverage is 0 from radius + 0.5 on; `span` drops NaN centres.
        let reach = radius_px + 0.5;
        span(centre_px[0], reach, size_px[0])?;
        let rows = span(centre_px[1], reach, size_px[1])?;
        let [r, g, b, _] = particle.color;
        let rgb = [r, g, b].map(|c| if linear_rgb { linear_from_srgb(c) } else { c });
        // The GPU clamps each fragment's output (a unorm target); the same for colours in 0..1.
        let [r, g, b] = rgb.map(|c| (c * alpha).clamp(0.0, 1.0));
        let sprite = Self {
            centre_px,
            radius_px,
            premultiplied: [r, g, b, alpha],
        };
        Some((sprite, rows))
    }
}

/// The pixels `[first, end)` of `0..limit` whose centres may lie within `reach` of `centre`
/// (one more on each side is harmless: they get coverage 0); `None` if there are none.
fn span(centre: f32, reach: f32, limit: u32) -> Option<[u32; 2]> {
    let limit_f = limit as f32;
    // Clamped first, so the casts truncate non-negative values (floor) and the range holds.
    let first = (centre - reach).clamp(0.0, limit_f) as u32;
    let end = ceil_non_negative((centre + reach).clamp(0.0, limit_f)).min(limit);
    (first < end).then_some([first, end])
}

/// `ceil` of a value known to be >= 0 and small enough for u32 (the casts, unlike `f32::ceil`,
/// need no libm call on baseline x86-64).
fn ceil_non_negative(value: f32) -> u32 {
    let truncated = value as u32;
    truncated + u32::from((truncated as f32) < value)
}

/// sRGB electro-optical transfer function, as `linear_from_srgb` in the WGSL.
fn linear_from_srgb(srgb: f32) -> f32 {
    if srgb < 0.04045 {
        srgb / 12.92
    } else {
        ((srgb + 0.055) / 1.055).powf(2.4)
    }
}

/// The inverse, for storing into an `*Srgb` layer.
fn srgb_from_linear(linear: f32) -> f32 {
    if linear <= 0.003_130_8 {
        linear * 12.92
    } else {
        1.055 * linear.powf(1.0 / 2.4) - 0.055
    }
}

/// `1 - smoothstep(low, high, distance)` as `shade` in `shaders/particles.wgsl` computes it,
/// with `1 / (high - low)` given: WGSL divides by `high - low`, which is 1 up to rounding.
fn coverage(distance: f32, low: f32, inverse_width: f32) -> f32 {
    let t = ((distance - low) * inverse_width).clamp(0.0, 1.0);
    1.0 - t * t * (3.0 - 2.0 * t)
}

/// Blends `sprite` over the premultiplied RGBA `band` (rows `first_row..` of a viewport
/// `width_px` wide), only within the band. Per row, only the pixels within reach are visited,
/// and those inside radius - 0.5, where the coverage is exactly 1, skip the edge formula
/// (a 4-lane version computing every pixel's coverage was 30 % slower).
fn blend_sprite(sprite: &Sprite, band: &mut [f32], first_row: usize, width_px: usize) {
    let band_end = first_row + band.len() / (4 * width_px);
    let [centre_x, centre_y] = sprite.centre_px;
    let (low, high) = (sprite.radius_px - 0.5, sprite.radius_px + 0.5);
    let inverse_width = 1.0 / (high - low);
    let outside_from = high * high;
    let [src_r, src_g, src_b, src_a] = sprite.premultiplied;
    let Some([rows_start, rows_end]) = span(centre_y, high, band_end as u32) else {
        return;
    };
    let rows_start = (rows_start as usize).max(first_row);
    let blend = |pixel: &mut [f32], covered: f32| {
        let keep = 1.0 - src_a * covered;
        pixel[0] = src_r * covered + pixel[0] * keep;
        pixel[1] = src_g * covered + pixel[1] * keep;
        pixel[2] = src_b * covered + pixel[2] * keep;
        pixel[3] = src_a * covered + pixel[3] * keep;
    };
    for y in rows_start..rows_end as usize {
        let dy = y as f32 + 0.5 - centre_y;
        let dy_squared = dy * dy;
        if dy_squared >= outside_from {
            continue;
        }
        let row = &mut band[4 * (y - first_row) * width_px..4 * (y - first_row + 1) * width_px];
        // Pixel x is at dx = x + 0.5 - centre_x.
        let half_chord = (outside_from - dy_squared).sqrt();
        let Some([start, end]) = span(centre_x - 0.5, half_chord, width_px as u32) else {
            continue;
        };
        let (start, end) = (start as usize, end as usize);
        // Where d <= radius - 0.5 (up to rounding, which moves d by far less than an 8-bit
        // step of coverage): coverage 1.
        let (inner_start, inner_end) = if low > 0.0 && dy_squared < low * low {
            let inner_chord = (low * low - dy_squared).sqrt();
            // Pixels x with |x + 0.5 - centre_x| <= inner_chord, within [start, end).
            let (lowest, highest) = (centre_x - 0.5 - inner_chord, centre_x - 0.5 + inner_chord);
            let from = ceil_non_negative(lowest.max(start as f32)) as usize;
            let to = if highest >= start as f32 {
                (highest as usize + 1).min(end)
            } else {
                start
            };
            (from.min(to), to)
        } else {
            (start, start)
        };
        let edge = |x: usize, row: &mut [f32]| {
            let dx = x as f32 + 0.5 - centre_x;
            let squared = dx * dx + dy_squared;
            if squared < outside_from {
                let covered = coverage(squared.sqrt(), low, inverse_width);
                if covered > 0.0 {
                    blend(&mut row[4 * x..4 * x + 4], covered);
                }
            }
        };
        for x in start..inner_start {
            edge(x, row);
        }
        for x in inner_end..end {
            edge(x, row);
        }
        let keep = 1.0 - src_a;
        for pixel in row[4 * inner_start..4 * inner_end].chunks_exact_mut(4) {
            pixel[0] = src_r + pixel[0] * keep;
            pixel[1] = src_g + pixel[1] * keep;
            pixel[2] = src_b + pixel[2] * keep;
            pixel[3] = src_a + pixel[3] * keep;
        }
    }
}

/// Stores a premultiplied `f32` band as RGBA8, encoding rgb to sRGB if `srgb_encode`.
fn store_band(band: &[f32], pixels: &mut [u8], srgb_encode: bool) {
    // `as u8` saturates (and maps NaN to 0).
    let to_u8 = |value: f32| (value * 255.0 + 0.5) as u8;
    for (out, pixel) in pixels.chunks_exact_mut(4).zip(band.chunks_exact(4)) {
        if pixel[3] <= 0.0 {
            out.fill(0);
        } else if srgb_encode {
            for c in 0..3 {
                out[c] = to_u8(srgb_from_linear(pixel[c]));
            }
            out[3] = to_u8(pixel[3]);
        } else {
            for c in 0..4 {
                out[c] = to_u8(pixel[c]);
            }
        }
    }
}

/// The CPU half: bins and pixels, kept between frames to reuse their memory.
pub(super) struct Splatter {
    /// Per chunk of consecutive particles, per band of rows: the sprites reaching that band,
    /// in order. Band b draws chunk 0's list for b, then chunk 1's, and so on: in order.
    chunk_bands: Vec<Vec<Vec<Sprite>>>,
    /// RGBA8 premultiplied, rows of `size_px[0]` pixels, top row first.
    pixels: Vec<u8>,
    size_px: [usize; 2],
    /// `None` if its threads could not be started: then rayon's global pool.
    pool: Option<rayon::ThreadPool>,
}

impl Splatter {
    pub(super) fn new() -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(std::thread::available_parallelism().map_or(1, usize::from))
            .thread_name(|i| format!("msbreg-splat-{i}"))
            .build()
            .ok();
        Self {
            chunk_bands: Vec::new(),
            pixels: Vec::new(),
            size_px: [0, 0],
            pool,
        }
    }

    /// Draws `particles` in order into [`Splatter::pixels`], a `size_px` = (width, height)
    /// premultiplied RGBA8 image, linear rgb encoded to sRGB if `srgb` (for an `*Srgb`
    /// target). Returns whether any sprite is visible (if not, the pixels are stale).
    pub(super) fn splat(
        &mut self,
        particles: &[Particle],
        world_to_clip: &[[f32; 4]; 4],
        style: RenderStyle,
        size_px: [u32; 2],
        srgb: bool,
    ) -> bool {
        if particles.is_empty() {
            return false;
        }
        match self.pool.take() {
            Some(pool) => {
                let visible = pool
                    .install(|| self.splat_here(particles, world_to_clip, style, size_px, srgb));
                self.pool = Some(pool);
                visible
            }
            None => self.splat_here(particles, world_to_clip, style, size_px, srgb),
        }
    }

    fn splat_here(
        &mut self,
        particles: &[Particle],
        world_to_clip: &[[f32; 4]; 4],
        style: RenderStyle,
        size_px: [u32; 2],
        srgb: bool,
    ) -> bool {
        let size_px = size_px.map(|n| n.max(1));
        let [width, height] = size_px.map(|n| n as usize);
        let bands = height.div_ceil(BAND_ROWS);

        // 1. Project and bin by band, in parallel over chunks of consecutive particles. The
        // sprites are copied into the bands' lists, so that drawing reads them in sequence.
        let chunk_len = particles
            .len()
            .div_ceil(rayon::current_num_threads())
            .max(1);
        let chunks = particles.len().div_ceil(chunk_len);
        self.chunk_bands.resize_with(chunks, Vec::new);
        let visible = self.chunk_bands[..chunks]
            .par_iter_mut()
            .zip(particles.par_chunks(chunk_len))
            .map(|(band_lists, chunk)| {
                band_lists.resize_with(bands, Vec::new);
                band_lists.iter_mut().for_each(Vec::clear);
                let mut visible = false;
                for particle in chunk {
                    let Some((sprite, [first, end])) =
                        Sprite::project(particle, world_to_clip, style, size_px, srgb)
                    else {
                        continue;
                    };
                    let (first, last) =
                        (first as usize / BAND_ROWS, (end as usize - 1) / BAND_ROWS);
                    for list in &mut band_lists[first..=last] {
                        list.push(sprite);
                    }
                    visible = true;
                }
                visible
            })
            .reduce(|| false, |a, b| a || b);
        if !visible {
            return false;
        }

        // 2. Draw the bands in parallel, each in particle order.
        self.size_px = [width, height];
        self.pixels.resize(4 * width * height, 0);
        let chunk_bands = &self.chunk_bands[..chunks];
        self.pixels
            .par_chunks_mut(4 * width * BAND_ROWS)
            .enumerate()
            .for_each_init(Vec::new, |band_pixels: &mut Vec<f32>, (band, out)| {
                if chunk_bands.iter().all(|lists| lists[band].is_empty()) {
                    out.fill(0);
                    return;
                }
                band_pixels.clear();
                band_pixels.resize(out.len(), 0.0);
                for sprite in chunk_bands.iter().flat_map(|lists| &lists[band]) {
                    blend_sprite(sprite, band_pixels, band * BAND_ROWS, width);
                }
                store_band(band_pixels, out, srgb);
            });
        true
    }

    /// The last [`Splatter::splat`]'s image: `size_px()` rows of premultiplied RGBA8.
    pub(super) fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    pub(super) fn size_px(&self) -> [usize; 2] {
        self.size_px
    }
}

/// The GPU half: the layer texture and the pipeline that composites it.
pub(super) struct SplatLayer {
    pipeline: wgpu::RenderPipeline,
    bind_group_layout: wgpu::BindGroupLayout,
    /// Created (and re-created on resize) by the first upload.
    texture: Option<LayerTexture>,
    /// An `*Srgb` target gets an `Rgba8UnormSrgb` layer, in which the splatter stores sRGB.
    srgb: bool,
    splatter: Splatter,
    /// The particles of the last full prepare, splatted again for a view-only one.
    pub(super) particles: Vec<Particle>,
    /// Whether the last splat drew anything (if not, `paint` skips the layer).
    visible: bool,
}

struct LayerTexture {
    texture: wgpu::Texture,
    bind_group: wgpu::BindGroup,
    size_px: [u32; 2],
}

impl SplatLayer {
    pub(super) fn new(
        device: &wgpu::Device,
        target_format: wgpu::TextureFormat,
        msaa_samples: u32,
    ) -> Self {
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("msbreg_splat_layout"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
                ty: wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                count: None,
            }],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("msbreg_splat_pipeline_layout"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("msbreg_splat_composite"),
            source: wgpu::ShaderSource::Wgsl(SPLAT_COMPOSITE_WGSL.into()),
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("msbreg_splat_composite"),
            layout: Some(&layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                buffers: &[],
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState {
                count: msaa_samples,
                mask: !0,
                alpha_to_coverage_enabled: false,
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target_format,
                    blend: Some(wgpu::BlendState::PREMULTIPLIED_ALPHA_BLENDING),
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });
        Self {
            pipeline,
            bind_group_layout,
            texture: None,
            srgb: target_format.is_srgb(),
            splatter: Splatter::new(),
            particles: Vec::new(),
            visible: false,
        }
    }

    /// Splats [`SplatLayer::particles`] for a viewport of `viewport_px` and uploads them.
    pub(super) fn prepare(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        world_to_clip: &[[f32; 4]; 4],
        style: RenderStyle,
        viewport_px: [u32; 2],
    ) {
        let max = device.limits().max_texture_dimension_2d;
        let size_px = viewport_px.map(|n| n.clamp(1, max));
        self.visible =
            self.splatter
                .splat(&self.particles, world_to_clip, style, size_px, self.srgb);
        if !self.visible {
            return;
        }
        let texture = match &self.texture {
            Some(texture) if texture.size_px == size_px => texture,
            _ => self.texture.insert(self.create_texture(device, size_px)),
        };
        debug_assert_eq!(self.splatter.size_px(), size_px.map(|n| n as usize));
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &texture.texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            self.splatter.pixels(),
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(4 * size_px[0]),
                rows_per_image: None,
            },
            wgpu::Extent3d {
                width: size_px[0],
                height: size_px[1],
                depth_or_array_layers: 1,
            },
        );
    }

    fn create_texture(&self, device: &wgpu::Device, size_px: [u32; 2]) -> LayerTexture {
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("msbreg_splat_layer"),
            size: wgpu::Extent3d {
                width: size_px[0],
                height: size_px[1],
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: if self.srgb {
                wgpu::TextureFormat::Rgba8UnormSrgb
            } else {
                wgpu::TextureFormat::Rgba8Unorm
            },
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("msbreg_splat_layer"),
            layout: &self.bind_group_layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::TextureView(&view),
            }],
        });
        LayerTexture {
            texture,
            bind_group,
            size_px,
        }
    }

    /// Composites the layer over what the pass holds, if the last splat drew anything.
    pub(super) fn paint(&self, pass: &mut wgpu::RenderPass<'_>) {
        let Some(texture) = self.texture.as_ref().filter(|_| self.visible) else {
            return;
        };
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &texture.bind_group, &[]);
        pass.draw(0..3, 0..1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clip space = viewport pixels: x in [0, 8) -> [-1, 1), y flipped, z = 0.5, w = 1.
    fn pixel_space(width: f32, height: f32) -> [[f32; 4]; 4] {
        [
            [2.0 / width, 0.0, 0.0, 0.0],
            [0.0, -2.0 / height, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [-1.0, 1.0, 0.5, 1.0],
        ]
    }

    fn style(point_size_px: f32) -> RenderStyle {
        RenderStyle {
            point_size_px,
            opacity: 1.0,
        }
    }

    fn splat(particles: &[Particle], size: [u32; 2], point_size_px: f32) -> (bool, Vec<u8>) {
        let mut splatter = Splatter::new();
        let matrix = pixel_space(size[0] as f32, size[1] as f32);
        let visible = splatter.splat(particles, &matrix, style(point_size_px), size, false);
        (visible, splatter.pixels().to_vec())
    }

    fn at(pixels: &[u8], width: usize, x: usize, y: usize) -> [u8; 4] {
        let i = 4 * (y * width + x);
        pixels[i..i + 4].try_into().expect("4 bytes")
    }

    #[test]
    fn coverage_follows_the_smoothstep_edge() {
        // Radius 3.2 px centred at (10, 20.5): along row 20 (centres y = 20.5) the distance
        // to pixel x is |x + 0.5 - 10|, so coverage = 1 - smoothstep(2.7, 3.7, |x - 9.5|).
        let white = Particle::new([10.0, 20.5, 0.0], [1.0; 4]);
        let (visible, pixels) = splat(&[white], [24, 40], 6.4);
        assert!(visible);
        for x in 0..24 {
            let d = (x as f32 - 9.5).abs();
            let t = (d - 2.7).clamp(0.0, 1.0);
            let expected = (255.0 * (1.0 - t * t * (3.0 - 2.0 * t)) + 0.5) as u8;
            assert_eq!(at(&pixels, 24, x, 20), [expected; 4], "x = {x}");
        }
        // x = 6: d = 3.5, t = 0.8, coverage 1 - 0.896 = 0.104 -> 26.5 -> 27.
        assert_eq!(at(&pixels, 24, 6, 20)[3], 27);
        assert_eq!(at(&pixels, 24, 9, 20), [255; 4]);
    }

    /// The row spans and the inner fast path visit exactly the pixels the plain formula
    /// covers, with its coverage: random discs, tiny to large, across band boundaries and the
    /// viewport's edges, against coverage computed at every pixel.
    #[test]
    fn row_spans_match_the_formula_at_every_pixel() {
        let (width, height) = (40, 50);
        let mut seed = 0x853c_49e6_748f_ea9b_u64;
        let mut random = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        for _ in 0..300 {
            let centre = [random() * 44.0 - 2.0, random() * 54.0 - 2.0];
            let radius = 0.05 + random() * random() * 14.0;
            let particle = Particle::new([centre[0], centre[1], 0.0], [1.0; 4]);
            let (_, pixels) = splat(&[particle], [width, height], 2.0 * radius);
            // The centre as projected (within 1e-5 of the given one), so that rounding is the
            // same as the splatter's.
            let matrix = pixel_space(width as f32, height as f32);
            let projected = Sprite::project(
                &particle,
                &matrix,
                style(2.0 * radius),
                [width, height],
                false,
            );
            let centre = projected.map_or(centre, |(sprite, _)| sprite.centre_px);
            for y in 0..height as usize {
                for x in 0..width as usize {
                    let (dx, dy) = (x as f32 + 0.5 - centre[0], y as f32 + 0.5 - centre[1]);
                    let d = (dx * dx + dy * dy).sqrt();
                    let (low, high) = (radius - 0.5, radius + 0.5);
                    // WGSL's smoothstep, (d - low) / (high - low), agrees with the product.
                    let t = ((d - low) / (high - low)).clamp(0.0, 1.0);
                    let covered = coverage(d, low, 1.0 / (high - low));
                    assert!((covered - (1.0 - t * t * (3.0 - 2.0 * t))).abs() < 1e-6);
                    let expected = (255.0 * covered + 0.5) as u8;
                    let got = if pixels.is_empty() {
                        0
                    } else {
                        at(&pixels, width as usize, x, y)[3]
                    };
                    assert_eq!(got, expected, "({x}, {y}), centre {centre:?}, r {radius}");
                }
            }
        }
    }

    #[test]
    fn later_particles_blend_over_earlier_ones_across_bands() {
        // Two discs on a band boundary (row 16): red, then half-transparent green on top.
        let red = Particle::new([8.0, 16.0, 0.0], [1.0, 0.0, 0.0, 1.0]);
        let green = Particle::new([8.0, 16.0, 0.0], [0.0, 1.0, 0.0, 0.5]);
        let (_, pixels) = splat(&[red, green], [16, 32], 8.0);
        // Over red: g = 0.5, r = 1 * (1 - 0.5) = 0.5 -> 128 each, alpha 1.
        for y in [14, 15, 16, 17] {
            assert_eq!(at(&pixels, 16, 8, y), [128, 128, 0, 255], "y = {y}");
        }
        let (_, reversed) = splat(&[green, red], [16, 32], 8.0);
        assert_eq!(at(&reversed, 16, 8, 15), [255, 0, 0, 255]);
        // Symmetric about the boundary: rows 15 and 16 are mirror images.
        for x in 0..16 {
            assert_eq!(at(&pixels, 16, x, 15), at(&pixels, 16, x, 16), "x = {x}");
            assert_eq!(at(&pixels, 16, x, 12), at(&pixels, 16, x, 19), "x = {x}");
        }
    }

    #[test]
    fn hidden_and_offscreen_particles_draw_nothing() {
        let size = [16, 16];
        let hidden = Particle::new([8.0, 8.0, 0.0], [1.0; 4]).with_size_scale(0.0);
        let transparent = Particle::new([8.0, 8.0, 0.0], [1.0, 1.0, 1.0, 0.0]);
        let far_off = Particle::new([100.0, 8.0, 0.0], [1.0; 4]);
        let nan = Particle::new([f32::NAN, 8.0, 0.0], [1.0; 4]);
        assert!(!splat(&[hidden, transparent, far_off, nan], size, 4.0).0);
        assert!(!splat(&[], size, 4.0).0);
        // Behind the eye: w < 0.
        let mut matrix = pixel_space(16.0, 16.0);
        matrix[3][3] = -1.0;
        let mut splatter = Splatter::new();
        let visible = splatter.splat(
            &[Particle::new([8.0, 8.0, 0.0], [1.0; 4])],
            &matrix,
            style(4.0),
            size,
            false,
        );
        assert!(!visible);
    }

    #[test]
    fn a_disc_at_the_corner_is_clipped_not_lost() {
        let (visible, pixels) = splat(&[Particle::new([0.0; 3], [1.0; 4])], [8, 8], 4.0);
        assert!(visible);
        assert_eq!(at(&pixels, 8, 0, 0), [255; 4]);
        assert_eq!(at(&pixels, 8, 7, 7), [0; 4]);
    }

    #[test]
    fn srgb_layers_store_encoded_linear_colour() {
        assert!((srgb_from_linear(linear_from_srgb(0.5)) - 0.5).abs() < 1e-6);
        assert_eq!(linear_from_srgb(0.0), 0.0);
        assert!((linear_from_srgb(1.0) - 1.0).abs() < 1e-6);
        let grey = Particle::new([4.0, 4.0, 0.0], [0.6, 0.6, 0.6, 1.0]);
        let mut splatter = Splatter::new();
        let matrix = pixel_space(8.0, 8.0);
        splatter.splat(&[grey], &matrix, style(6.0), [8, 8], true);
        // Linear 0.319, stored sRGB-encoded: 0.6 -> 153.
        assert_eq!(at(splatter.pixels(), 8, 4, 4), [153, 153, 153, 255]);
    }
}
