//! The shader's `Params` block: view, image size, VOI, LUT, overlays and background as vec4s.

use super::*;

/// The shader's `Params` struct, every field a vec4 so the layout needs no padding rules.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Uniforms {
    pub view: [f32; 4],
    pub image: [f32; 4],
    pub voi: [f32; 4],
    pub lut: [f32; 4],
    pub overlay0: [f32; 4],
    pub overlay1: [f32; 4],
    pub background: [f32; 4],
}

impl Uniforms {
    /// `origin_px`: framebuffer position of image point (0, 0); `px_per_image_px`: scale; `color`:
    /// draw the colour texture.
    pub fn new(
        settings: &RenderSettings,
        image_size: [u32; 2],
        origin_px: [f32; 2],
        px_per_image_px: f32,
        srgb_target: bool,
        background: [f32; 3],
        color: bool,
    ) -> Self {
        let (voi, lut) = match settings.display.voi {
            VoiMode::Window(w) => (
                [w.center, w.width, w.function.shader_code() as f32, 0.0],
                [0.0; 4],
            ),
            VoiMode::Lut(i) => {
                let (first, len) = settings.luts.get(i).map_or((0.0, 1.0), |l| {
                    (l.first_input as f32, l.outputs.len() as f32)
                });
                ([0.0, 1.0, 3.0, 0.0], [first, len, 0.0, 0.0])
            }
        };
        let inverted = if settings.display.output_inverted() {
            1.0
        } else {
            0.0
        };
        let layer = |o: &Option<crate::render::OverlayLayer>| match o {
            Some(o) if o.params.visible => [
                1.0,
                o.params.opacity,
                o.params.threshold,
                if o.params.contour { 1.0 } else { 0.0 },
            ],
            _ => [0.0; 4],
        };
        Self {
            view: [
                origin_px[0],
                origin_px[1],
                px_per_image_px,
                if srgb_target { 1.0 } else { 0.0 },
            ],
            image: [
                image_size[0] as f32,
                image_size[1] as f32,
                if settings.bilinear { 1.0 } else { 0.0 },
                if color { 1.0 } else { 0.0 },
            ],
            voi: [voi[0], voi[1], voi[2], inverted],
            lut,
            overlay0: layer(&settings.overlays[0]),
            overlay1: layer(&settings.overlays[1]),
            background: [background[0], background[1], background[2], 1.0],
        }
    }
}
