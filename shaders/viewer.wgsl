// Windowing (VOI) and overlay compositing for the image viewer.
// CPU twin: src/imaging/voi.rs (VOI, inversion) and src/imaging/composite.rs (overlay).
// Input texture: modality values as R32Float (no 8-bit pre-quantisation); colour images also bind
// their R, G, B modality values as Rgba32Float, each channel windowed like a grey value.

struct Params {
    // xy: screen position (framebuffer pixels) of image point (0,0); z: framebuffer pixels per image
    // pixel; w: 1 when the render target is sRGB (output must be pre-linearised).
    view: vec4<f32>,
    // xy: image size in pixels; z: 1 for bilinear, 0 for nearest; w: 1 = draw color_tex (colour image).
    image: vec4<f32>,
    // x: centre, y: width, z: function (0 LINEAR, 1 LINEAR_EXACT, 2 SIGMOID, 3 VOI LUT), w: 1 = invert output.
    voi: vec4<f32>,
    // x: first input value of the VOI LUT, y: number of entries, zw: unused.
    lut: vec4<f32>,
    // Overlay layers, drawn in order (0: lung mask, 1: heatmap).
    // x: 1 = visible, y: opacity, z: threshold, w: 1 = contour only (boundary of heat >= threshold).
    overlay0: vec4<f32>,
    overlay1: vec4<f32>,
    // Background colour outside the image (display values, not linear).
    background: vec4<f32>,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var image_tex: texture_2d<f32>;
@group(0) @binding(2) var lut_tex: texture_2d<f32>;
@group(0) @binding(3) var overlay0_tex: texture_2d<f32>;
@group(0) @binding(4) var overlay1_tex: texture_2d<f32>;
// 256 x 2 RGBA: row i is the colormap of overlay layer i.
@group(0) @binding(5) var colormap_tex: texture_2d<f32>;
// Colour images: R, G, B modality values (a 1x1 dummy for grey images).
@group(0) @binding(6) var color_tex: texture_2d<f32>;

const LUT_ROW: i32 = 256;

struct VertexOut {
    @builtin(position) position: vec4<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> VertexOut {
    // One triangle covering the viewport (egui-wgpu sets viewport and scissor to the callback rect).
    let uv = vec2<f32>(f32((index << 1u) & 2u), f32(index & 2u));
    var out: VertexOut;
    out.position = vec4<f32>(uv * vec2<f32>(2.0, -2.0) + vec2<f32>(-1.0, 1.0), 0.0, 1.0);
    return out;
}

fn load_value(tex: texture_2d<f32>, p: vec2<i32>) -> f32 {
    let size = vec2<i32>(textureDimensions(tex));
    return textureLoad(tex, clamp(p, vec2<i32>(0), size - vec2<i32>(1)), 0).r;
}

// Sample at continuous image coordinates (pixel i covers [i, i+1)).
fn sample(tex: texture_2d<f32>, p: vec2<f32>, bilinear: bool) -> f32 {
    if (!bilinear) {
        return load_value(tex, vec2<i32>(floor(p)));
    }
    let q = p - vec2<f32>(0.5);
    let base = floor(q);
    let f = q - base;
    let i = vec2<i32>(base);
    let a = load_value(tex, i);
    let b = load_value(tex, i + vec2<i32>(1, 0));
    let c = load_value(tex, i + vec2<i32>(0, 1));
    let d = load_value(tex, i + vec2<i32>(1, 1));
    return mix(mix(a, b, f.x), mix(c, d, f.x), f.y);
}

fn load_rgb(tex: texture_2d<f32>, p: vec2<i32>) -> vec3<f32> {
    let size = vec2<i32>(textureDimensions(tex));
    return textureLoad(tex, clamp(p, vec2<i32>(0), size - vec2<i32>(1)), 0).rgb;
}

// `sample` for the colour texture.
fn sample_rgb(tex: texture_2d<f32>, p: vec2<f32>, bilinear: bool) -> vec3<f32> {
    if (!bilinear) {
        return load_rgb(tex, vec2<i32>(floor(p)));
    }
    let q = p - vec2<f32>(0.5);
    let base = floor(q);
    let f = q - base;
    let i = vec2<i32>(base);
    let a = load_rgb(tex, i);
    let b = load_rgb(tex, i + vec2<i32>(1, 0));
    let c = load_rgb(tex, i + vec2<i32>(0, 1));
    let d = load_rgb(tex, i + vec2<i32>(1, 1));
    return mix(mix(a, b, f.x), mix(c, d, f.x), f.y);
}

// PS3.3 C.11.2.1.2: same breakpoints as imaging::voi::Window::apply.
fn apply_voi(x: f32) -> f32 {
    let c = params.voi.x;
    let function = u32(params.voi.z + 0.5);
    if (function == 0u) {
        let w = max(params.voi.y, 1.0);
        let w1 = max(w - 1.0, 1.17549435e-38);
        if (x <= c - 0.5 - w1 / 2.0) { return 0.0; }
        if (x > c - 0.5 + w1 / 2.0) { return 1.0; }
        return clamp((x - (c - 0.5)) / w1 + 0.5, 0.0, 1.0);
    }
    if (function == 1u) {
        let w = max(params.voi.y, 1e-3);
        if (x <= c - w / 2.0) { return 0.0; }
        if (x > c + w / 2.0) { return 1.0; }
        return clamp((x - c) / w + 0.5, 0.0, 1.0);
    }
    if (function == 2u) {
        let w = max(params.voi.y, 1e-3);
        return 1.0 / (1.0 + exp(-4.0 * (x - c) / w));
    }
    // VOI LUT: clamp the index into [0, n-1].
    let n = i32(params.lut.y + 0.5);
    let index = clamp(i32(floor(x)) - i32(params.lut.x), 0, max(n - 1, 0));
    return textureLoad(lut_tex, vec2<i32>(index % LUT_ROW, index / LUT_ROW), 0).r;
}

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let low = c / 12.92;
    let high = pow((c + vec3<f32>(0.055)) / 1.055, vec3<f32>(2.4));
    return select(high, low, c <= vec3<f32>(0.04045));
}

fn output(c: vec3<f32>) -> vec4<f32> {
    if (params.view.w > 0.5) {
        return vec4<f32>(srgb_to_linear(c), 1.0);
    }
    return vec4<f32>(c, 1.0);
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let p = (in.position.xy - params.view.xy) / params.view.z;
    let size = params.image.xy;
    if (p.x < 0.0 || p.y < 0.0 || p.x >= size.x || p.y >= size.y) {
        return output(params.background.rgb);
    }
    let bilinear = params.image.z > 0.5;
    var rgb: vec3<f32>;
    if (params.image.w > 0.5) {
        let c = sample_rgb(color_tex, p, bilinear);
        rgb = vec3<f32>(apply_voi(c.r), apply_voi(c.g), apply_voi(c.b));
    } else {
        rgb = vec3<f32>(apply_voi(sample(image_tex, p, bilinear)));
    }
    if (params.voi.w > 0.5) {
        rgb = vec3<f32>(1.0) - rgb;
    }
    // Layer 1 (heatmap) first, then layer 0 (mask) on top, so a lung contour stays visible over
    // an opaque heatmap.
    rgb = blend_layer(rgb, overlay1_tex, params.overlay1, 1, p, bilinear);
    rgb = blend_layer(rgb, overlay0_tex, params.overlay0, 0, p, bilinear);
    return output(rgb);
}

// Same rule as imaging::composite::composite_layer.
fn blend_layer(rgb: vec3<f32>, tex: texture_2d<f32>, layer: vec4<f32>, row: i32, p: vec2<f32>, bilinear: bool) -> vec3<f32> {
    if (layer.x < 0.5) {
        return rgb;
    }
    var heat = sample(tex, p, bilinear);
    if (layer.w > 0.5) {
        // Contour: inside pixels with a 4-neighbour outside, the neighbours `d` image pixels away
        // so the line stays about 1.5 screen pixels wide at any zoom.
        let d = i32(max(1.0, ceil(1.5 / params.view.z)));
        let i = vec2<i32>(floor(p));
        let inside = load_value(tex, i) >= layer.z;
        let edge = load_value(tex, i + vec2<i32>(d, 0)) < layer.z
            || load_value(tex, i - vec2<i32>(d, 0)) < layer.z
            || load_value(tex, i + vec2<i32>(0, d)) < layer.z
            || load_value(tex, i - vec2<i32>(0, d)) < layer.z;
        if (!(inside && edge)) {
            return rgb;
        }
        heat = 1.0;
    }
    if (heat > 0.0 && heat >= layer.z) {
        let index = i32(round(clamp(heat, 0.0, 1.0) * 255.0));
        let color = textureLoad(colormap_tex, vec2<i32>(index, row), 0).rgb;
        let a = clamp(layer.y, 0.0, 1.0);
        return rgb * (1.0 - a) + color * a;
    }
    return rgb;
}
