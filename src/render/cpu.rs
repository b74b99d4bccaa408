//! CPU rendering of the windowed image (and overlays) into RGBA8 — at image resolution
//! (`render_rgba`, the display path when no wgpu renderer is available) or as a zoomed, panned view
//! (`render_view`) — by the shader's own rules: the reference the shader is tested against.

use rayon::prelude::*;

use super::{ImageHandle, RenderSettings};
use crate::imaging::ScalarImage;
use crate::imaging::composite::{blend_layer, contour_step, on_contour, to_byte};

/// Renders every image pixel (sampled at its centre, so no interpolation is involved): `render_view`
/// at zoom 1 with the image at the origin. A colour image (`image.color`) has each channel mapped
/// through the same VOI transform.
pub fn render_rgba(handle: &ImageHandle, settings: &RenderSettings) -> Vec<u8> {
    let view = View {
        size: [handle.image.width, handle.image.height],
        origin: [0.0, 0.0],
        zoom: 1.0,
        background: [0.0; 3],
    };
    render_view(handle, settings, &view)
}

/// A screen-sized view of an image: what the shader draws into a viewport.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    /// Output size in pixels.
    pub size: [u32; 2],
    /// Output position of image point (0, 0), in output pixels.
    pub origin: [f32; 2],
    /// Output pixels per image pixel.
    pub zoom: f32,
    /// Outside the image (display values).
    pub background: [f32; 3],
}

/// The shader's rule per output pixel (the CPU twin of `shaders/viewer.wgsl` at any zoom and pan):
/// the pixel's centre maps to image point p = (centre − origin) / zoom; outside the image it is the
/// background; inside, the image (and each overlay) is sampled at p — nearest, or bilinear with
/// clamped edges — windowed, then the heatmap and the mask are blended over it; contours are tested
/// at `contour_step(zoom)`.
pub fn render_view(handle: &ImageHandle, settings: &RenderSettings, view: &View) -> Vec<u8> {
    let image: &ScalarImage = &handle.image;
    let color = handle.color.as_deref();
    let layers: Vec<_> = settings
        .overlays
        .iter()
        .flatten()
        .filter(|o| {
            o.params.visible
                && o.heat.image.width == image.width
                && o.heat.image.height == image.height
        })
        .map(|o| (o, o.colormap.table()))
        .collect();
    let step = contour_step(view.zoom);
    // At zoom 1 with the image on the pixel grid every sample falls on a pixel centre: bilinear and
    // nearest agree, and nearest is cheaper (the CPU display path of very large images).
    let on_grid =
        view.zoom == 1.0 && view.origin[0].fract() == 0.0 && view.origin[1].fract() == 0.0;
    let bilinear = settings.bilinear && !on_grid;
    let (w, h) = (image.width as f32, image.height as f32);
    let mut out = vec![0u8; view.size[0] as usize * view.size[1] as usize * 4];
    out.par_chunks_mut(4 * view.size[0] as usize)
        .enumerate()
        .for_each(|(sy, row)| {
            for (sx, px) in row.chunks_exact_mut(4).enumerate() {
                let p = [
                    (sx as f32 + 0.5 - view.origin[0]) / view.zoom,
                    (sy as f32 + 0.5 - view.origin[1]) / view.zoom,
                ];
                let rgb = if p[0] < 0.0 || p[1] < 0.0 || p[0] >= w || p[1] >= h {
                    view.background
                } else {
                    let display = |v: f32| settings.display.display_value(v, &settings.luts);
                    let mut rgb = match color {
                        Some(c) => {
                            let channel = |k: usize| {
                                sample(p, bilinear, c.width, c.height, |i| c.values[3 * i + k])
                            };
                            [
                                display(channel(0)),
                                display(channel(1)),
                                display(channel(2)),
                            ]
                        }
                        None => {
                            let v =
                                sample(p, bilinear, image.width, image.height, |i| image.values[i]);
                            [display(v); 3]
                        }
                    };
                    // Heatmap first, mask on top (as the shader).
                    for (o, table) in layers.iter().rev() {
                        let heat_image = &o.heat.image;
                        let heat = if o.params.contour {
                            let (ix, iy) = (p[0].floor() as i64, p[1].floor() as i64);
                            on_contour(heat_image, ix, iy, o.params.threshold, step).then_some(1.0)
                        } else {
                            Some(sample(
                                p,
                                bilinear,
                                heat_image.width,
                                heat_image.height,
                                |i| heat_image.values[i],
                            ))
                        };
                        rgb = blend_layer(rgb, heat, o.params, table);
                    }
                    rgb
                };
                px.copy_from_slice(&[to_byte(rgb[0]), to_byte(rgb[1]), to_byte(rgb[2]), 255]);
            }
        });
    out
}

/// The shader's `sample`: the value at continuous image point `p` (pixel i covers [i, i + 1)) of a
/// `width` × `height` grid read by `at(index)`; bilinear between the four nearest centres with
/// edge pixels repeated, or the pixel containing p.
fn sample(p: [f32; 2], bilinear: bool, width: u32, height: u32, at: impl Fn(usize) -> f32) -> f32 {
    let load = |x: i64, y: i64| {
        let x = x.clamp(0, width as i64 - 1) as usize;
        let y = y.clamp(0, height as i64 - 1) as usize;
        at(y * width as usize + x)
    };
    if !bilinear {
        return load(p[0].floor() as i64, p[1].floor() as i64);
    }
    let q = [p[0] - 0.5, p[1] - 0.5];
    let base = [q[0].floor(), q[1].floor()];
    let f = [q[0] - base[0], q[1] - base[1]];
    let (ix, iy) = (base[0] as i64, base[1] as i64);
    let mix = |a: f32, b: f32, t: f32| a * (1.0 - t) + b * t;
    let top = mix(load(ix, iy), load(ix + 1, iy), f[0]);
    let bottom = mix(load(ix, iy + 1), load(ix + 1, iy + 1), f[0]);
    mix(top, bottom, f[1])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::imaging::voi::VoiMode;
    use crate::imaging::{DisplayParams, RgbImage, VoiFunction, Window};

    #[test]
    fn renders_window_and_inversion_per_pixel() {
        let img = ScalarImage::new(2, 1, vec![0.0, 100.0]).unwrap();
        let mut settings = RenderSettings {
            display: DisplayParams {
                voi: VoiMode::Window(Window {
                    center: 50.0,
                    width: 100.0,
                    function: VoiFunction::LinearExact,
                }),
                photometric_inverted: false,
                user_inverted: false,
            },
            luts: Arc::new(vec![]),
            overlays: [None, None],
            bilinear: true,
        };
        let img = ImageHandle::new(Arc::new(img));
        let rgba = render_rgba(&img, &settings);
        assert_eq!(rgba, vec![0, 0, 0, 255, 255, 255, 255, 255]);
        settings.display.photometric_inverted = true;
        let rgba = render_rgba(&img, &settings);
        assert_eq!(rgba, vec![255, 255, 255, 255, 0, 0, 0, 255]);
    }

    #[test]
    fn colour_channels_each_go_through_the_window() {
        // Window [0, 255] LINEAR_EXACT is the identity on 8-bit values: x / 255.
        let grey = ScalarImage::new(2, 1, vec![0.0, 0.0]).unwrap();
        let rgb = RgbImage::new(2, 1, vec![255.0, 128.0, 0.0, 10.0, 20.0, 30.0]).unwrap();
        let handle = ImageHandle::with_color(Arc::new(grey), Some(Arc::new(rgb)));
        let mut settings = RenderSettings {
            display: DisplayParams {
                voi: VoiMode::Window(Window {
                    center: 127.5,
                    width: 255.0,
                    function: VoiFunction::LinearExact,
                }),
                photometric_inverted: false,
                user_inverted: false,
            },
            luts: Arc::new(vec![]),
            overlays: [None, None],
            bilinear: false,
        };
        assert_eq!(
            render_rgba(&handle, &settings),
            vec![255, 128, 0, 255, 10, 20, 30, 255]
        );
        settings.display.user_inverted = true;
        assert_eq!(
            render_rgba(&handle, &settings),
            vec![0, 127, 255, 255, 245, 235, 225, 255]
        );
    }
}
