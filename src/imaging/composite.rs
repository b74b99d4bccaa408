//! Display compositing: grey value from the VOI transform, then an optional heatmap overlay blended
//! through a colormap with an opacity and threshold. CPU twin of `shaders/viewer.wgsl`; the GPU path
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
}

impl Default for OverlayParams {
    fn default() -> Self {
        Self {
            visible: false,
            opacity: 0.5,
            threshold: 0.0,
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
    let base = [grey, grey, grey];
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
        };
        assert_eq!(composite(0.3, Some(0.9), off, &table), [0.3; 3]);
        let thresholded = OverlayParams {
            visible: true,
            opacity: 1.0,
            threshold: 0.5,
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
        };
        let out = composite(0.4, Some(0.8), p, &table);
        assert!((out[0] - (0.4 * 0.75 + 0.25)).abs() < 1e-6);
        assert!((out[1] - 0.3).abs() < 1e-6);
        assert_eq!(to_byte(1.2), 255);
        assert_eq!(to_byte(0.5), 128);
    }
}
