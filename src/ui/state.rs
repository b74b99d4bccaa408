//! The state of the open image: display parameters, presets, view transform, measurements, and the
//! CPU-rendered texture when the GPU path is not in use. All geometry is in image space.

use std::path::PathBuf;
use std::sync::Arc;

use crate::imaging::colormap::Colormap;
use crate::imaging::composite::OverlayParams;
use crate::imaging::measure::DistanceLine;
use crate::imaging::view::{PanelRect, Point, ViewTransform};
use crate::imaging::voi::{Preset, VoiMode, presets};
use crate::imaging::{DisplayParams, VoiFunction, Window};
use crate::io::LoadedImage;
use crate::ml::analysis::Prediction;
use crate::ml::explain::Method;
use crate::render::{ImageHandle, OverlayLayer, RenderSettings};

/// One overlay layer of the open image (image space, values in [0, 1]).
#[derive(Clone, Debug)]
pub struct LayerState {
    pub handle: ImageHandle,
    pub params: OverlayParams,
    pub colormap: Colormap,
    pub label: String,
}

/// The result of the last analysis of the open image.
#[derive(Clone, Debug)]
pub struct AnalysisView {
    pub mask: Option<LayerState>,
    pub heatmap: Option<LayerState>,
    pub predictions: Vec<Prediction>,
    /// (model title, class name) the heatmap explains.
    pub explained: Option<(String, String)>,
    pub method: Method,
    pub seconds: f64,
}

/// CPU-rendered texture for the current settings (glow renderer, tests without a GPU, huge images).
pub struct CpuTexture {
    pub texture: egui::TextureHandle,
    /// Settings it was rendered with.
    pub rendered: Option<RenderSettingsKey>,
}

/// The parts of `RenderSettings` that change the CPU output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenderSettingsKey {
    pub image_id: u64,
    pub display: DisplayParams,
    pub overlays: [Option<(u64, OverlayParams, Colormap)>; 2],
}

pub struct ViewerState {
    pub path: PathBuf,
    pub loaded: LoadedImage,
    pub handle: ImageHandle,
    pub display: DisplayParams,
    pub presets: Vec<Preset>,
    /// The file's VOI LUTs, shared with render requests without copying.
    pub luts: Arc<Vec<crate::imaging::VoiLut>>,
    /// The preset last applied, if the window has not been dragged since.
    pub active_preset: Option<usize>,
    pub view: ViewTransform,
    pub measurements: Vec<DistanceLine>,
    /// A measurement being drawn.
    pub pending_measurement: Option<DistanceLine>,
    /// Image-space pointer position and the modality value under it.
    pub hover: Option<(Point, f32)>,
    pub cpu_texture: Option<CpuTexture>,
    /// CPU render in flight (its key), so it is not requested twice.
    pub cpu_requested: Option<RenderSettingsKey>,
    /// Last panel rectangle, for commands that need it (fit, 1:1).
    pub last_panel: Option<PanelRect>,
    /// Overlays from the last analysis (none until the user asks: overlays default off).
    pub analysis: Option<AnalysisView>,
}

impl ViewerState {
    pub fn new(path: PathBuf, loaded: LoadedImage) -> Self {
        let presets = presets(&loaded.info.windows, &loaded.info.voi_luts, loaded.stats);
        let display = DisplayParams {
            voi: presets
                .first()
                .map_or(VoiMode::Window(Window::from_range(0.0, 1.0)), |p| p.voi),
            photometric_inverted: loaded.info.photometric_inverted,
            user_inverted: false,
        };
        let handle = ImageHandle::new(loaded.image.clone());
        let luts = Arc::new(loaded.info.voi_luts.clone());
        Self {
            luts,
            path,
            loaded,
            handle,
            display,
            presets,
            active_preset: Some(0),
            view: ViewTransform::default(),
            measurements: Vec::new(),
            pending_measurement: None,
            hover: None,
            cpu_texture: None,
            cpu_requested: None,
            last_panel: None,
            analysis: None,
        }
    }

    pub fn image_size(&self) -> Point {
        Point::new(
            self.handle.image.width as f32,
            self.handle.image.height as f32,
        )
    }

    pub fn apply_preset(&mut self, index: usize) {
        if let Some(p) = self.presets.get(index) {
            self.display.voi = p.voi;
            self.active_preset = Some(index);
        }
    }

    /// The current window; a VOI LUT is approximated by the full range when the user starts a drag.
    pub fn current_window(&self) -> Window {
        match self.display.voi {
            VoiMode::Window(w) => w,
            VoiMode::Lut(_) => Window::from_range(self.loaded.stats.min, self.loaded.stats.max),
        }
    }

    /// W/L drag in screen points; sensitivity scales with the image's value range.
    pub fn drag_window(&mut self, dx_points: f32, dy_points: f32) {
        let range = (self.loaded.stats.max - self.loaded.stats.min).max(1.0);
        let units_per_point = range / 600.0;
        self.display.voi = VoiMode::Window(self.current_window().dragged(
            dx_points,
            dy_points,
            units_per_point,
        ));
        self.active_preset = None;
    }

    pub fn set_function(&mut self, function: VoiFunction) {
        let mut w = self.current_window();
        w.function = function;
        w.width = w.width.max(Window::min_width(function));
        self.display.voi = VoiMode::Window(w);
        self.active_preset = None;
    }

    pub fn reset(&mut self) {
        self.apply_preset(0);
        self.display.user_inverted = false;
        self.view.fit_mode = true;
        self.measurements.clear();
        self.pending_measurement = None;
    }

    pub fn render_settings(&self) -> RenderSettings {
        RenderSettings {
            display: self.display,
            luts: self.luts.clone(),
            overlays: self.layers().map(|l| {
                l.map(|l| OverlayLayer {
                    heat: l.handle.clone(),
                    params: l.params,
                    colormap: l.colormap,
                })
            }),
            bilinear: true,
        }
    }

    /// The overlay layers in drawing order (mask, heatmap).
    pub fn layers(&self) -> [Option<&LayerState>; 2] {
        match &self.analysis {
            Some(a) => [a.mask.as_ref(), a.heatmap.as_ref()],
            None => [None, None],
        }
    }

    pub fn layer_mut(&mut self, index: usize) -> Option<&mut LayerState> {
        let a = self.analysis.as_mut()?;
        match index {
            0 => a.mask.as_mut(),
            1 => a.heatmap.as_mut(),
            _ => None,
        }
    }

    pub fn settings_key(&self) -> RenderSettingsKey {
        RenderSettingsKey {
            image_id: self.handle.id,
            display: self.display,
            overlays: self
                .layers()
                .map(|l| l.map(|l| (l.handle.id, l.params, l.colormap))),
        }
    }
}
