//! The viewer shader against its CPU twin on a real device: fixed cases rendered offscreen through
//! the same pipeline as on screen and compared byte by byte with `render::cpu`. Used by
//! `tests/shaders.rs` and at run time by `cxrlens check-backends` (on the device burn created), so it
//! is part of the binary, kept apart from the drawing code.

use egui_wgpu::wgpu;

use super::gpu::{ViewerCallback, render_offscreen};
use super::{ImageHandle, RenderSettings};
use crate::imaging::VoiLut;
use crate::imaging::colormap::Colormap;
use crate::imaging::voi::VoiMode;

/// The shader against its CPU twin on `device`: twelve cases on an odd-sized 15-bit image — at
/// image resolution LINEAR, a colour image with the user's inversion, LINEAR_EXACT with the file's
/// inversion, SIGMOID with both inversions, a VOI LUT, a 35 %-opacity fill over the heatmap, an 80 %
/// contour; then zoomed and panned views (bilinear and nearest, fill at 1.7×, contour at 0.4×,
/// colour at 3×) with the background showing. Returns `(case, largest difference in levels)`.
/// Used by `tests/shaders.rs` and by `cxrlens check-backends` on the device burn created.
pub fn compare_with_cpu_twin(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
) -> Result<Vec<(String, i32)>, String> {
    use std::sync::Arc;

    use super::{OverlayLayer, cpu};
    use crate::imaging::composite::OverlayParams;
    use crate::imaging::voi::DisplayParams;
    use crate::imaging::{ScalarImage, VoiFunction, Window};

    // 15-bit ramp with structure, 37×23 (odd sizes catch row-padding mistakes).
    let (w, h) = (37u32, 23u32);
    let image = ScalarImage::new(
        w,
        h,
        (0..w * h).map(|i| ((i * 977) % 32768) as f32).collect(),
    )
    .ok_or("test image")?;
    let heat = ScalarImage::new(w, h, (0..w * h).map(|i| (i % 50) as f32 / 49.0).collect())
        .ok_or("test image")?;
    // A blob for the mask layer (fill and contour cases).
    let mask = ScalarImage::new(
        w,
        h,
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 - 18.0, (i / w) as f32 - 11.0);
                if x * x / 150.0 + y * y / 50.0 < 1.0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect(),
    )
    .ok_or("test image")?;
    // Colour: three different 15-bit ramps.
    let rgb = crate::imaging::RgbImage::new(
        w,
        h,
        (0..w * h * 3)
            .map(|i| ((i * [977, 331, 53][(i % 3) as usize]) % 32768) as f32)
            .collect(),
    )
    .ok_or("test image")?;
    let lut = VoiLut::from_raw(
        1000,
        &(0..30000u32)
            .map(|i| ((i * 7) % 65536) as u16)
            .collect::<Vec<_>>(),
        16,
        None,
    )
    .ok_or("test image")?;
    let window = |function| {
        VoiMode::Window(Window {
            center: 15000.0,
            width: 20000.0,
            function,
        })
    };
    let overlay = |opacity, threshold, contour| {
        Some(OverlayParams {
            visible: true,
            opacity,
            threshold,
            contour,
        })
    };
    // (zoom, origin, bilinear, output size); `at_1`: the image on the output's pixel grid.
    let at_1 = (1.0f32, [0.0f32, 0.0], true, [w, h]);
    let cases = [
        (
            "LINEAR",
            window(VoiFunction::Linear),
            false,
            false,
            None,
            at_1,
        ),
        (
            "colour, user inversion",
            window(VoiFunction::LinearExact),
            false,
            true,
            None,
            at_1,
        ),
        (
            "LINEAR_EXACT, MONOCHROME1",
            window(VoiFunction::LinearExact),
            true,
            false,
            None,
            at_1,
        ),
        (
            "SIGMOID, both inversions",
            window(VoiFunction::Sigmoid),
            true,
            true,
            None,
            at_1,
        ),
        ("VOI LUT", VoiMode::Lut(0), false, false, None, at_1),
        (
            "mask fill 35 % over heatmap",
            window(VoiFunction::Linear),
            true,
            false,
            overlay(0.35, 0.2, false),
            at_1,
        ),
        (
            "mask contour 80 % over heatmap",
            window(VoiFunction::Linear),
            false,
            false,
            overlay(0.8, 0.5, true),
            at_1,
        ),
        // Zoomed and panned, part of the output outside the image (background).
        (
            "zoom 2.5, panned, bilinear",
            window(VoiFunction::Linear),
            false,
            false,
            None,
            (2.5, [-13.0, 6.5], true, [61, 47]),
        ),
        (
            "zoom 2.5, panned, nearest",
            window(VoiFunction::Linear),
            false,
            false,
            None,
            (2.5, [-13.0, 6.5], false, [61, 47]),
        ),
        (
            "zoom 1.7, heatmap and mask fill, bilinear",
            window(VoiFunction::LinearExact),
            false,
            false,
            overlay(0.35, 0.2, false),
            (1.7, [3.3, -2.2], true, [57, 41]),
        ),
        (
            "zoom 0.4, mask contour",
            window(VoiFunction::Linear),
            false,
            false,
            overlay(0.8, 0.5, true),
            (0.4, [2.0, 1.0], true, [19, 13]),
        ),
        (
            "colour, zoom 3, bilinear",
            window(VoiFunction::LinearExact),
            false,
            false,
            None,
            (3.0, [-20.0, -10.0], true, [53, 37]),
        ),
    ];
    let mut out = Vec::with_capacity(cases.len());
    for (name, voi, photometric_inverted, user_inverted, overlay, (zoom, origin, bilinear, size)) in
        cases
    {
        let settings = RenderSettings {
            display: DisplayParams {
                voi,
                photometric_inverted,
                user_inverted,
            },
            luts: Arc::new(vec![lut.clone()]),
            // Layer 0 (mask-like, solid colour) under layer 1 (heatmap), both from `overlay`.
            overlays: [
                overlay.map(|params| OverlayLayer {
                    heat: ImageHandle::new(Arc::new(mask.clone())),
                    params,
                    colormap: Colormap::Solid([0, 200, 255]),
                }),
                overlay.map(|params| OverlayLayer {
                    heat: ImageHandle::new(Arc::new(heat.clone())),
                    params: OverlayParams {
                        contour: false,
                        ..params
                    },
                    colormap: Colormap::Inferno,
                }),
            ],
            bilinear,
        };
        let color = name.starts_with("colour").then(|| Arc::new(rgb.clone()));
        let handle = ImageHandle::with_color(Arc::new(image.clone()), color);
        let view = cpu::View {
            size,
            origin,
            zoom,
            background: [0.1, 0.2, 0.3],
        };
        let expected = if (zoom, origin) == (1.0, [0.0, 0.0]) && size == [w, h] {
            // The image-resolution path the CPU display uses.
            cpu::render_rgba(&handle, &settings)
        } else {
            cpu::render_view(&handle, &settings, &view)
        };
        let callback = ViewerCallback {
            pane_id: 0,
            image: handle,
            settings,
            image_origin_points: origin,
            zoom,
            background: view.background,
        };
        let got = render_offscreen(device, queue, &callback, size)?;
        if got.len() != expected.len() {
            return Err(format!(
                "{name}: GPU gave {} bytes, CPU {}",
                got.len(),
                expected.len()
            ));
        }
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap_or(0);
        out.push((name.to_string(), worst));
    }
    Ok(out)
}
