// Composites the layer that the CPU splatter drew (src/render/splat.rs, for software adapters)
// over the render pass: one triangle covering the viewport, each pixel loading its texel of
// the layer, which holds premultiplied RGBA (an `*Srgb` layer for an `*Srgb` target, so what
// is loaded is linear), blended with premultiplied alpha as particles.wgsl blends each sprite.

@group(0) @binding(0)
var layer: texture_2d<f32>;

struct VertexOut {
    @builtin(position) clip_position: vec4<f32>,
    // Texel coordinates: the viewport's pixel centres interpolate to texel centres.
    @location(0) texel: vec2<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) vertex_index: u32) -> VertexOut {
    // (0, 0), (2, 0), (0, 2) in viewport units, top-left origin: covers [0, 1]^2.
    let uv = vec2<f32>(f32((vertex_index << 1u) & 2u), f32(vertex_index & 2u));
    var out: VertexOut;
    out.clip_position = vec4<f32>(2.0 * uv.x - 1.0, 1.0 - 2.0 * uv.y, 0.0, 1.0);
    out.texel = uv * vec2<f32>(textureDimensions(layer));
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let last = vec2<i32>(textureDimensions(layer)) - 1;
    let texel = clamp(vec2<i32>(floor(in.texel)), vec2<i32>(0), last);
    return textureLoad(layer, texel, 0);
}
