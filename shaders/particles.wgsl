// Particles as instanced point sprites: one screen-aligned quad per particle (a 4-vertex
// triangle strip, no vertex buffer), round, with an antialiased edge, alpha-blended with
// premultiplied alpha. The size is in pixels whatever the depth.
//
// Colours are straight (not premultiplied) RGBA in gamma space (sRGB, as egui's `Color32`);
// `fs_main_linear_framebuffer` decodes them for an `*Srgb` target, which encodes them back.
//
// On software adapters many particles are drawn on the CPU instead (src/render/splat.rs:
// `Sprite::project` mirrors `vs_main`, `coverage` and `blend_sprite` mirror `shade`): keep the
// two in sync; tests/render.rs checks that both draw the same image.

// Mirrored in src/render/mod.rs as `FrameUniform`: keep in sync (the size is checked by
// tests/render.rs).
struct FrameUniform {
    world_to_clip: mat4x4<f32>,
    viewport_px: vec2<f32>,
    point_size_px: f32,
    opacity: f32,
};

@group(0) @binding(0)
var<uniform> frame: FrameUniform;

// One instance. Mirrored in src/render/mod.rs as `Particle` (32 bytes): keep in sync.
struct ParticleIn {
    @location(0) position: vec3<f32>,
    @location(1) size_scale: f32,
    @location(2) color: vec4<f32>,
};

struct VertexOut {
    @builtin(position) clip_position: vec4<f32>,
    // From the sprite's centre, in pixels.
    @location(0) offset_px: vec2<f32>,
    @location(1) radius_px: f32,
    @location(2) color: vec4<f32>,
};

// The quad reaches this far beyond the radius, so the antialiased edge (which ends half a
// pixel out, see `shade`) is not cut off.
const EDGE_MARGIN_PX: f32 = 0.5;

@vertex
fn vs_main(@builtin(vertex_index) vertex_index: u32, particle: ParticleIn) -> VertexOut {
    var out: VertexOut;
    let radius_px = 0.5 * frame.point_size_px * particle.size_scale;
    let centre = frame.world_to_clip * vec4<f32>(particle.position, 1.0);
    if centre.w <= 0.0 || !(radius_px > 0.0) {
        // Behind the eye, or invisible: all four corners outside the clip volume.
        out.clip_position = vec4<f32>(2.0, 2.0, 2.0, 1.0);
        out.offset_px = vec2<f32>(0.0);
        out.radius_px = 0.0;
        out.color = vec4<f32>(0.0);
        return out;
    }
    // Strip corners 0..3: (-1, -1), (1, -1), (-1, 1), (1, 1).
    let corner = vec2<f32>(f32(vertex_index & 1u), f32(vertex_index >> 1u)) * 2.0 - 1.0;
    let offset_px = corner * (radius_px + EDGE_MARGIN_PX);
    // A pixel is 2 / viewport_px in NDC; times w so the division by w leaves it a pixel.
    let offset_clip = offset_px * 2.0 / frame.viewport_px * centre.w;
    out.clip_position = centre + vec4<f32>(offset_clip, 0.0, 0.0);
    out.offset_px = offset_px;
    out.radius_px = radius_px;
    out.color = particle.color;
    return out;
}

// Straight colour, opacity and edge coverage -> premultiplied output.
fn shade(in: VertexOut, rgb: vec3<f32>) -> vec4<f32> {
    let distance_px = length(in.offset_px);
    let coverage = 1.0 - smoothstep(in.radius_px - 0.5, in.radius_px + 0.5, distance_px);
    let alpha = clamp(in.color.a * frame.opacity, 0.0, 1.0) * coverage;
    if alpha <= 0.0 {
        discard;
    }
    return vec4<f32>(rgb * alpha, alpha);
}

// sRGB electro-optical transfer function: gamma-space colour -> linear.
fn linear_from_srgb(srgb: vec3<f32>) -> vec3<f32> {
    let cutoff = srgb < vec3<f32>(0.04045);
    let lower = srgb / vec3<f32>(12.92);
    let higher = pow((srgb + vec3<f32>(0.055)) / vec3<f32>(1.055), vec3<f32>(2.4));
    return select(higher, lower, cutoff);
}

// For a gamma-space target (`Rgba8Unorm`, `Bgra8Unorm`: what egui prefers).
@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    return shade(in, in.color.rgb);
}

// For an `*Srgb` target, which encodes linear values on write.
@fragment
fn fs_main_linear_framebuffer(in: VertexOut) -> @location(0) vec4<f32> {
    return shade(in, linear_from_srgb(in.color.rgb));
}
