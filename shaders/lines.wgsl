// Line segments (a line list: vertices 2k and 2k + 1 make segment k), one pixel wide, with
// per-vertex colour, alpha-blended with premultiplied alpha: the tethers from each view to its
// centroid and the faint unit-sphere wireframe. Drawn before the particles, so under them.
//
// Colours are straight RGBA in gamma space (sRGB), as in particles.wgsl.

// Mirrored in src/render/mod.rs as `FrameUniform` (and in particles.wgsl): keep in sync.
// Lines use only `world_to_clip`.
struct FrameUniform {
    world_to_clip: mat4x4<f32>,
    viewport_px: vec2<f32>,
    point_size_px: f32,
    opacity: f32,
};

@group(0) @binding(0)
var<uniform> frame: FrameUniform;

// One vertex. Mirrored in src/render/mod.rs as `LineVertex` (32 bytes, 4 of them padding
// after the position): keep in sync.
struct LineVertexIn {
    @location(0) position: vec3<f32>,
    @location(1) color: vec4<f32>,
};

struct VertexOut {
    @builtin(position) clip_position: vec4<f32>,
    @location(0) color: vec4<f32>,
};

@vertex
fn vs_main(vertex: LineVertexIn) -> VertexOut {
    var out: VertexOut;
    out.clip_position = frame.world_to_clip * vec4<f32>(vertex.position, 1.0);
    out.color = vertex.color;
    return out;
}

fn premultiplied(rgb: vec3<f32>, alpha: f32) -> vec4<f32> {
    let a = clamp(alpha, 0.0, 1.0);
    if a <= 0.0 {
        discard;
    }
    return vec4<f32>(rgb * a, a);
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
    return premultiplied(in.color.rgb, in.color.a);
}

// For an `*Srgb` target, which encodes linear values on write.
@fragment
fn fs_main_linear_framebuffer(in: VertexOut) -> @location(0) vec4<f32> {
    return premultiplied(linear_from_srgb(in.color.rgb), in.color.a);
}
