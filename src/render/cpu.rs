//! CPU rendering of the windowed image (and overlay) into RGBA8 at image resolution: the reference
//! the shader is tested against, and the display path when no wgpu renderer is available.

use rayon::prelude::*;

use super::{ImageHandle, RenderSettings};
use crate::imaging::ScalarImage;
use crate::imaging::composite::{blend_layer, contour_step, on_contour, to_byte};

/// Renders every image pixel (sampled at its centre, so no interpolation is involved). A colour
/// image (`image.color`) has each channel mapped through the same VOI transform.
pub fn render_rgba(handle: &ImageHandle, settings: &RenderSettings) -> Vec<u8> {
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
    // Rendered at image resolution: one screen pixel per image pixel.
    let step = contour_step(1.0);
    let mut out = vec![0u8; image.values.len() * 4];
    out.par_chunks_mut(4 * image.width as usize)
        .enumerate()
        .for_each(|(y, row)| {
            let start = y * image.width as usize;
            for (x, px) in row.chunks_exact_mut(4).enumerate() {
                let mut rgb = match color {
                    Some(c) => {
                        let i = 3 * (start + x);
                        let d = |v: f32| settings.display.display_value(v, &settings.luts);
                        [d(c.values[i]), d(c.values[i + 1]), d(c.values[i + 2])]
                    }
                    None => {
                        [settings
                            .display
                            .display_value(image.values[start + x], &settings.luts);
                            3]
                    }
                };
                // Heatmap first, mask on top (as the shader).
                for (o, table) in layers.iter().rev() {
                    let heat = if o.params.contour {
                        on_contour(&o.heat.image, x as i64, y as i64, o.params.threshold, step)
                            .then_some(1.0)
                    } else {
                        Some(o.heat.image.values[start + x])
                    };
                    rgb = blend_layer(rgb, heat, o.params, table);
                }
                px.copy_from_slice(&[to_byte(rgb[0]), to_byte(rgb[1]), to_byte(rgb[2]), 255]);
            }
        });
    out
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
