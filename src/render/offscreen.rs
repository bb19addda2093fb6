//! Rendering without a window, for tests and the benchmark: [`HeadlessGpu`] finds an adapter
//! (a hardware GPU first, else a software one such as lavapipe) and opens a device;
//! [`Offscreen`] is a colour texture (multisampled if asked, resolved into a single-sample
//! one) that the [`ParticleRenderer`] draws into and that reads back as tightly packed rows.

use std::sync::mpsc;

use eframe::wgpu;

use super::{FrameData, ParticleRenderer, Rasteriser, RenderError};

/// A device and queue of their own, on the best adapter there is.
pub struct HeadlessGpu {
    pub adapter_info: wgpu::AdapterInfo,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
}

impl HeadlessGpu {
    /// Backends from `WGPU_BACKEND` if set, else Vulkan, Metal and DX12. Adapters are ranked
    /// discrete, integrated, virtual GPU, then anything else (a CPU rasteriser last).
    pub fn new() -> Result<Self, RenderError> {
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let rank = |adapter: &wgpu::Adapter| match adapter.get_info().device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let Some(adapter) = adapters.into_iter().min_by_key(rank) else {
            return Err(RenderError::NoAdapter { backends });
        };
        let adapter_info = adapter.get_info();
        let request = adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("msbreg_render_headless"),
            // The adapter's own limits: larger buffers than the defaults where it has them.
            required_limits: adapter.limits(),
            ..wgpu::DeviceDescriptor::default()
        });
        let (device, queue) =
            pollster::block_on(request).map_err(|source| RenderError::RequestDevice {
                adapter: adapter_info.name.clone(),
                source,
            })?;
        Ok(Self {
            adapter_info,
            device,
            queue,
        })
    }

    /// How this adapter draws particles best: [`Rasteriser::for_adapter`].
    pub fn rasteriser(&self) -> Rasteriser {
        Rasteriser::for_adapter(&self.adapter_info)
    }

    /// "name (device type, backend)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.adapter_info.name, self.adapter_info.device_type, self.adapter_info.backend
        )
    }
}

/// An offscreen colour target of 4 bytes per pixel.
pub struct Offscreen {
    width: u32,
    height: u32,
    format: wgpu::TextureFormat,
    msaa_samples: u32,
    /// Single-sample: rendered into directly, or the MSAA resolve target; copied from.
    resolved: wgpu::Texture,
    resolved_view: wgpu::TextureView,
    multisampled_view: Option<wgpu::TextureView>,
    readback: wgpu::Buffer,
    padded_bytes_per_row: u32,
    /// What the target is cleared to before each frame, straight alpha, in the format's space
    /// (linear for an `*Srgb` format).
    pub clear_color: wgpu::Color,
}

impl Offscreen {
    /// `width` x `height` of `Rgba8Unorm` (a gamma-space target, as egui's), no MSAA, cleared
    /// to opaque black.
    pub fn new(device: &wgpu::Device, width: u32, height: u32) -> Result<Self, RenderError> {
        Self::with_format(device, width, height, wgpu::TextureFormat::Rgba8Unorm, 1)
    }

    /// Any 4-byte colour format (`Rgba8Unorm`, `Rgba8UnormSrgb`, `Bgra8Unorm`, ...), with 1 or
    /// 4 samples (the counts WebGPU guarantees; 0 means 1).
    pub fn with_format(
        device: &wgpu::Device,
        width: u32,
        height: u32,
        format: wgpu::TextureFormat,
        msaa_samples: u32,
    ) -> Result<Self, RenderError> {
        let msaa_samples = msaa_samples.max(1);
        if format.block_copy_size(None) != Some(4)
            || !format.has_color_aspect()
            || format.is_depth_stencil_format()
        {
            return Err(RenderError::UnsupportedFormat(format));
        }
        if msaa_samples != 1 && msaa_samples != 4 {
            return Err(RenderError::UnsupportedSampleCount(msaa_samples));
        }
        let (width, height) = (width.max(1), height.max(1));
        let size = wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        };
        let texture = |label: &str, sample_count: u32, usage: wgpu::TextureUsages| {
            device.create_texture(&wgpu::TextureDescriptor {
                label: Some(label),
                size,
                mip_level_count: 1,
                sample_count,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage: wgpu::TextureUsages::RENDER_ATTACHMENT | usage,
                view_formats: &[],
            })
        };
        let resolved = texture("msbreg_offscreen", 1, wgpu::TextureUsages::COPY_SRC);
        let resolved_view = resolved.create_view(&wgpu::TextureViewDescriptor::default());
        let multisampled_view = (msaa_samples > 1).then(|| {
            texture(
                "msbreg_offscreen_msaa",
                msaa_samples,
                wgpu::TextureUsages::empty(),
            )
            .create_view(&wgpu::TextureViewDescriptor::default())
        });
        let padded_bytes_per_row =
            wgpu::util::align_to(4 * width, wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("msbreg_offscreen_readback"),
            size: u64::from(padded_bytes_per_row) * u64::from(height),
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        Ok(Self {
            width,
            height,
            format,
            msaa_samples,
            resolved,
            resolved_view,
            multisampled_view,
            readback,
            padded_bytes_per_row,
            clear_color: wgpu::Color::BLACK,
        })
    }

    pub fn size(&self) -> [u32; 2] {
        [self.width, self.height]
    }

    pub fn format(&self) -> wgpu::TextureFormat {
        self.format
    }

    pub fn msaa_samples(&self) -> u32 {
        self.msaa_samples
    }

    /// A renderer whose pipelines match this target, drawing particles with `rasteriser`.
    pub fn renderer(&self, device: &wgpu::Device, rasteriser: Rasteriser) -> ParticleRenderer {
        ParticleRenderer::new(device, self.format, self.msaa_samples, rasteriser)
    }

    /// Prepares `frame` and encodes its render pass (clear, then draw).
    fn encode_frame(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        renderer: &mut ParticleRenderer,
        frame: &FrameData,
        upload: Upload,
    ) -> wgpu::CommandEncoder {
        match upload {
            Upload::Everything => {
                renderer.prepare(device, queue, frame, self.size());
            }
            Upload::ViewOnly => {
                renderer.prepare_view(device, queue, &frame.camera, &frame.style, self.size());
            }
        }
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("msbreg_offscreen_frame"),
        });
        let (view, resolve_target) = match &self.multisampled_view {
            Some(multisampled) => (multisampled, Some(&self.resolved_view)),
            None => (&self.resolved_view, None),
        };
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("msbreg_offscreen_pass"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view,
                    depth_slice: None,
                    resolve_target,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(self.clear_color),
                        // The multisampled texture is only needed until it is resolved.
                        store: if resolve_target.is_some() {
                            wgpu::StoreOp::Discard
                        } else {
                            wgpu::StoreOp::Store
                        },
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            renderer.paint(&mut pass);
        }
        encoder
    }

    /// Renders `frame` and reads it back: `height` rows of `width` pixels, 4 bytes each, in
    /// the format's channel order, top row first.
    pub fn render(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        renderer: &mut ParticleRenderer,
        frame: &FrameData,
    ) -> Result<Vec<u8>, RenderError> {
        let mut encoder = self.encode_frame(device, queue, renderer, frame, Upload::Everything);
        encoder.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo {
                texture: &self.resolved,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::TexelCopyBufferInfo {
                buffer: &self.readback,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(self.padded_bytes_per_row),
                    rows_per_image: None,
                },
            },
            wgpu::Extent3d {
                width: self.width,
                height: self.height,
                depth_or_array_layers: 1,
            },
        );
        queue.submit([encoder.finish()]);

        let (sender, receiver) = mpsc::channel();
        self.readback
            .map_async(wgpu::MapMode::Read, .., move |result| {
                // The receiver is alive until `recv` below returns.
                let _ = sender.send(result);
            });
        device.poll(wgpu::PollType::wait_indefinitely())?;
        let mapped = receiver
            .recv()
            .map_err(|_| RenderError::Readback("the map callback never ran".to_owned()))?;
        mapped.map_err(|error| RenderError::Readback(error.to_string()))?;

        let row_bytes = 4 * self.width as usize;
        let mut pixels = Vec::with_capacity(row_bytes * self.height as usize);
        {
            let view = self
                .readback
                .get_mapped_range(..)
                .map_err(|error| RenderError::Readback(error.to_string()))?;
            for padded_row in view.chunks_exact(self.padded_bytes_per_row as usize) {
                pixels.extend_from_slice(&padded_row[..row_bytes]);
            }
        }
        self.readback.unmap();
        Ok(pixels)
    }

    /// Renders `frame` `frames` times without reading back, waiting for the GPU after each
    /// frame (as a window does at each present); for the benchmark. `upload` says what each
    /// frame uploads.
    pub fn render_frames(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        renderer: &mut ParticleRenderer,
        frame: &FrameData,
        frames: usize,
        upload: Upload,
    ) -> Result<(), RenderError> {
        for _ in 0..frames {
            let encoder = self.encode_frame(device, queue, renderer, frame, upload);
            queue.submit([encoder.finish()]);
            device.poll(wgpu::PollType::wait_indefinitely())?;
        }
        Ok(())
    }
}

/// What [`Offscreen::render_frames`] uploads each frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upload {
    /// [`ParticleRenderer::prepare`]: particles, lines and the view (as while training).
    Everything,
    /// [`ParticleRenderer::prepare_view`]: only the camera and style, drawing the geometry of
    /// the last full prepare (as when orbiting a paused cloud).
    ViewOnly,
}
