//! Display compositing: grey value from the VOI transform, then up to two overlay layers (lung
//! mask, heatmap), each blended through its colormap with an opacity and threshold, either filled or
//! as a contour; the heatmap is blended first and the mask on top. CPU twin of `shaders/viewer.wgsl`; the GPU path
//! must produce the same bytes (see `tests/shader_twin.rs`).

use super::colormap::table_index;

/// Overlay blending parameters (one layer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverlayParams {
    pub visible: bool,
    /// 0..=1
    pub opacity: f32,
    /// Heat values below this are transparent (0..=1).
    pub threshold: f32,
    /// Draw only the boundary of the region `heat >= threshold` (in the colormap's top colour).
    pub contour: bool,
}

impl Default for OverlayParams {
    fn default() -> Self {
        Self {
            visible: false,
            opacity: 0.5,
            threshold: 0.0,
            contour: false,
        }
    }
}

/// Quantises a display intensity in [0, 1] to a byte as the render target does (round to nearest).
pub fn to_byte(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Composites one pixel: `grey` in [0, 1], `heat` in [0, 1] (ignored when the overlay is off).
pub fn composite(
    grey: f32,
    heat: Option<f32>,
    overlay: OverlayParams,
    colormap: &[[u8; 4]],
) -> [f32; 3] {
    blend_layer([grey, grey, grey], heat, overlay, colormap)
}

/// Side of the contour test, in image pixels: at least 1.5 screen pixels at `zoom` (screen pixels
/// per image pixel), so the line has no gaps when the image is shown reduced. Same formula as the
/// shader.
pub fn contour_step(zoom: f32) -> i64 {
    (1.5 / zoom).ceil().max(1.0) as i64
}

/// True when pixel (x, y) is inside `heat >= threshold` and a 4-neighbour `step` pixels away is
/// outside; neighbours beyond the edge read the edge pixel (as the shader's clamped loads do).
pub fn on_contour(heat: &super::ScalarImage, x: i64, y: i64, threshold: f32, step: i64) -> bool {
    let (w, h) = (heat.width as i64, heat.height as i64);
    let at = |x: i64, y: i64| heat.values[(y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) as usize];
    at(x, y) >= threshold
        && (at(x + step, y) < threshold
            || at(x - step, y) < threshold
            || at(x, y + step) < threshold
            || at(x, y - step) < threshold)
}

/// Blends one layer over `base` (fill rule; for contours pass `Some(1.0)` on the contour, `None`
/// elsewhere).
pub fn blend_layer(
    base: [f32; 3],
    heat: Option<f32>,
    overlay: OverlayParams,
    colormap: &[[u8; 4]],
) -> [f32; 3] {
    let Some(heat) =
        heat.filter(|h| overlay.visible && h.is_finite() && *h > 0.0 && *h >= overlay.threshold)
    else {
        return base;
    };
    let c = colormap
        .get(table_index(heat))
        .copied()
        .unwrap_or([0, 0, 0, 255]);
    let a = overlay.opacity.clamp(0.0, 1.0);
    let mut out = [0.0; 3];
    for i in 0..3 {
        out[i] = base[i] * (1.0 - a) + (c[i] as f32 / 255.0) * a;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_or_below_threshold_overlay_leaves_grey() {
        let table = vec![[255, 0, 0, 255]; 256];
        let off = OverlayParams {
            visible: false,
            opacity: 1.0,
            threshold: 0.0,
            contour: false,
        };
        assert_eq!(composite(0.3, Some(0.9), off, &table), [0.3; 3]);
        let thresholded = OverlayParams {
            visible: true,
            opacity: 1.0,
            threshold: 0.5,
            contour: false,
        };
        assert_eq!(composite(0.3, Some(0.4), thresholded, &table), [0.3; 3]);
    }

    #[test]
    fn opacity_blends_linearly() {
        let table = vec![[255, 0, 0, 255]; 256];
        let p = OverlayParams {
            visible: true,
            opacity: 0.25,
            threshold: 0.0,
            contour: false,
        };
        let out = composite(0.4, Some(0.8), p, &table);
        assert!((out[0] - (0.4 * 0.75 + 0.25)).abs() < 1e-6);
        assert!((out[1] - 0.3).abs() < 1e-6);
        assert_eq!(to_byte(1.2), 255);
        assert_eq!(to_byte(0.5), 128);
    }

    #[test]
    fn contour_is_the_inner_boundary() {
        // 5×5 with a 3×3 block of 1s in the middle: the ring of the block is contour, its centre
        // is not, and outside pixels never are.
        let mut values = vec![0.0; 25];
        for y in 1..4 {
            for x in 1..4 {
                values[y * 5 + x] = 1.0;
            }
        }
        let img = crate::imaging::ScalarImage::new(5, 5, values).unwrap();
        assert!(on_contour(&img, 1, 1, 0.5, 1));
        assert!(on_contour(&img, 2, 1, 0.5, 1));
        assert!(!on_contour(&img, 2, 2, 0.5, 1));
        assert!(!on_contour(&img, 0, 0, 0.5, 1));
        assert_eq!(contour_step(1.0), 2);
        assert_eq!(contour_step(0.77), 2);
        assert_eq!(contour_step(0.25), 6);
        assert_eq!(contour_step(4.0), 1);
    }
}
