//! The egui side: the renderer lives in egui-wgpu's `callback_resources` ([`install`], once at
//! start-up); each frame the UI adds a [`callback`] shape carrying a [`FrameData`], whose
//! `prepare` uploads and whose `paint` draws into egui's render pass (egui has already set the
//! pass's viewport to the callback's rectangle).

use eframe::egui;
use eframe::egui_wgpu::{self, CallbackResources, CallbackTrait, ScreenDescriptor};
use eframe::wgpu;

use super::{FrameData, ParticleRenderer, Rasteriser};

/// Creates the renderer for egui's render pass and stores it in `callback_resources`, for
/// eframe's defaults: `NativeOptions::multisampling` 0 (no MSAA) and `depth_buffer` 0 (the
/// pipelines have no depth state, so `depth_buffer` must stay 0 in any case). Particles are
/// drawn with the adapter's [`Rasteriser::for_adapter`].
pub fn install(render_state: &egui_wgpu::RenderState) {
    install_with_msaa(render_state, 1);
}

/// [`install`] for a window with MSAA: `msaa_samples` must be eframe's
/// `NativeOptions::multisampling` (egui-wgpu does not expose it).
pub fn install_with_msaa(render_state: &egui_wgpu::RenderState, msaa_samples: u32) {
    let rasteriser = Rasteriser::for_adapter(&render_state.adapter.get_info());
    install_with(render_state, msaa_samples, rasteriser);
}

/// [`install_with_msaa`] with a rasteriser of one's choosing.
pub fn install_with(
    render_state: &egui_wgpu::RenderState,
    msaa_samples: u32,
    rasteriser: Rasteriser,
) {
    let renderer = ParticleRenderer::new(
        &render_state.device,
        render_state.target_format,
        msaa_samples,
        rasteriser,
    );
    render_state
        .renderer
        .write()
        .callback_resources
        .insert(renderer);
}

/// A paint callback drawing `frame` into `rect` (points): add it with `ui.painter().add(..)`.
/// Does nothing if [`install`] was not called.
pub fn callback(rect: egui::Rect, frame: FrameData) -> egui::PaintCallback {
    egui_wgpu::Callback::new_paint_callback(rect, ParticleCallback { rect, frame })
}

/// The per-frame callback: plain data only; the GPU resources are in `callback_resources`.
pub struct ParticleCallback {
    rect: egui::Rect,
    frame: FrameData,
}

impl CallbackTrait for ParticleCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen_descriptor: &ScreenDescriptor,
        _egui_encoder: &mut wgpu::CommandEncoder,
        callback_resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(renderer) = callback_resources.get_mut::<ParticleRenderer>() else {
            return Vec::new();
        };
        // The same rounding and clamping egui uses for the viewport it sets before `paint`.
        let viewport = egui::epaint::ViewportInPixels::from_points(
            &self.rect,
            screen_descriptor.pixels_per_point,
            screen_descriptor.size_in_pixels,
        );
        let viewport_px = [
            u32::try_from(viewport.width_px).unwrap_or(0),
            u32::try_from(viewport.height_px).unwrap_or(0),
        ];
        renderer.prepare(device, queue, &self.frame, viewport_px);
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        callback_resources: &CallbackResources,
    ) {
        if let Some(renderer) = callback_resources.get::<ParticleRenderer>() {
            renderer.paint(render_pass);
        }
    }
}
