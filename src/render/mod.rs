//! Drawing the image: the wgpu path (`gpu`, a paint callback running `shaders/viewer.wgsl` on an
//! R32Float texture, or an Rgba32Float one for colour images) and the CPU path (`cpu`, the same math into an RGBA8 buffer) used with the glow
//! renderer, in UI tests without a GPU, and for images beyond the GPU's texture limit.
//! Neither path imports egui widgets; `gpu` depends on egui-wgpu's callback trait only.

pub mod cpu;
pub mod gpu;
pub mod probe;
pub mod twin_check;

use std::sync::Arc;

use crate::imaging::colormap::Colormap;
use crate::imaging::composite::OverlayParams;
use crate::imaging::{DisplayParams, RgbImage, ScalarImage, VoiLut};

/// An image plus a process-unique id, so GPU textures can be cached per image.
#[derive(Clone, Debug)]
pub struct ImageHandle {
    pub id: u64,
    pub image: Arc<ScalarImage>,
    /// The colour pixels of a colour image (same size as `image`): drawn instead of `image`, each
    /// channel through the same VOI transform.
    pub color: Option<Arc<RgbImage>>,
}

impl ImageHandle {
    pub fn new(image: Arc<ScalarImage>) -> Self {
        Self::with_color(image, None)
    }

    /// A handle that draws `color` when it is given and matches `image`'s size.
    pub fn with_color(image: Arc<ScalarImage>, color: Option<Arc<RgbImage>>) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let color = color.filter(|c| c.width == image.width && c.height == image.height);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            image,
            color,
        }
    }
}

/// A heatmap/mask layer in image space, values in [0, 1], same size as the image.
#[derive(Clone, Debug)]
pub struct OverlayLayer {
    pub heat: ImageHandle,
    pub params: OverlayParams,
    pub colormap: Colormap,
}

/// What to draw, independent of where it is drawn.
#[derive(Clone, Debug)]
pub struct RenderSettings {
    pub display: DisplayParams,
    pub luts: Arc<Vec<VoiLut>>,
    /// Overlay layers in drawing order: `[0]` the lung mask, `[1]` the heatmap.
    pub overlays: [Option<OverlayLayer>; 2],
    /// Bilinear interpolation of modality values when magnifying; nearest otherwise.
    pub bilinear: bool,
}

/// How an analysis layer is first drawn (the viewer and every export): opacity, threshold, contour
/// and colormap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerDefaults {
    pub opacity: f32,
    pub threshold: f32,
    pub contour: bool,
    pub colormap: Colormap,
}

impl LayerDefaults {
    pub fn params(self) -> OverlayParams {
        OverlayParams {
            visible: true,
            opacity: self.opacity,
            threshold: self.threshold,
            contour: self.contour,
        }
    }

    /// A visible layer of `map` drawn with these defaults.
    pub fn layer(self, map: Arc<ScalarImage>) -> OverlayLayer {
        OverlayLayer {
            heat: ImageHandle::new(map),
            params: self.params(),
            colormap: self.colormap,
        }
    }
}

/// The lung mask's colour (cyan: distinct from every heatmap colormap).
pub const MASK_COLOR: [u8; 3] = [0, 210, 255];
/// Lung mask: cyan contour at probability 0.5.
pub const MASK_LAYER: LayerDefaults = LayerDefaults {
    opacity: 0.8,
    threshold: 0.5,
    contour: true,
    colormap: Colormap::Solid(MASK_COLOR),
};
/// Explanation heatmap: inferno, heat below 0.15 transparent.
pub const HEATMAP_LAYER: LayerDefaults = LayerDefaults {
    opacity: 0.45,
    threshold: 0.15,
    contour: false,
    colormap: Colormap::Inferno,
};
/// Predicted gaze (saliency network): viridis.
pub const SALIENCY_LAYER: LayerDefaults = LayerDefaults {
    opacity: 0.5,
    threshold: 0.1,
    contour: false,
    colormap: Colormap::Viridis,
};
