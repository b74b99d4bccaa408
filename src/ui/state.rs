//! The state of the open image: display parameters, presets, view transform, measurements, and the
//! CPU-rendered texture when the GPU path is not in use. All geometry is in image space.

use std::path::PathBuf;
use std::sync::Arc;

use crate::gaze::GazeRecording;
use crate::gaze::heatmap::Recipe;
use crate::gaze::table::MetricRow;
use crate::imaging::colormap::Colormap;
use crate::imaging::composite::OverlayParams;
use crate::imaging::measure::DistanceLine;
use crate::imaging::view::{PanelRect, Point, ViewTransform};
use crate::imaging::voi::{Preset, VoiMode};
use crate::imaging::{DisplayParams, VoiFunction, Window};
use crate::io::LoadedImage;
use crate::ml::analysis::Prediction;
use crate::ml::explain::Method;
use crate::ml::ood::OodReport;
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
    /// Predicted gaze from a saliency network, when one is installed.
    pub saliency: Option<LayerState>,
    pub predictions: Vec<Prediction>,
    /// (model title, class name) the heatmap explains.
    pub explained: Option<(String, String)>,
    /// The explained layer, in words.
    pub target_layer: String,
    pub method: Method,
    pub seconds: f64,
    /// What the out-of-distribution gates said; shown before the results.
    pub ood: OodReport,
    /// Layers of the models the gate flagged, kept out of every view until the user asks.
    pub withheld: Withheld,
    /// The user asked to see the withheld results.
    pub revealed: bool,
    /// The analysis as plain data, for reports.
    pub summary: crate::export::summary::AnalysisSummary,
}

/// Layers withheld by the out-of-distribution gate.
#[derive(Clone, Debug, Default)]
pub struct Withheld {
    pub mask: Option<LayerState>,
    pub heatmap: Option<LayerState>,
    pub saliency: Option<LayerState>,
}

impl AnalysisView {
    /// Whether `model`'s results are on screen: the gate let them through or the user asked.
    pub fn shows(&self, model: &str) -> bool {
        self.revealed || self.ood.shows(model)
    }

    /// Move the withheld layers into view.
    pub fn reveal(&mut self) {
        let w = std::mem::take(&mut self.withheld);
        self.mask = self.mask.take().or(w.mask);
        self.heatmap = self.heatmap.take().or(w.heatmap);
        self.saliency = self.saliency.take().or(w.saliency);
        self.revealed = true;
    }
}

/// A gaze recording on the open image, its heatmap and what the compare view derived from it.
#[derive(Clone, Debug)]
pub struct GazeView {
    pub recording: GazeRecording,
    pub recipe: Recipe,
    /// The gaze heatmap ([0, 1] by its maximum); `None` until the worker has built it.
    pub layer: Option<LayerState>,
    /// Difference view halves: explanation heat without gaze, gaze without explanation heat.
    pub model_only: Option<LayerState>,
    pub gaze_only: Option<LayerState>,
    pub rows: Vec<MetricRow>,
    pub show_scanpath: bool,
    /// A heatmap/metrics job is running.
    pub computing: bool,
    /// Heatmap time and whole-job time of the last result.
    pub heatmap_seconds: f64,
    pub seconds: f64,
}

/// What a compare pane shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaneContent {
    Gaze,
    Explanation,
    Saliency,
    Difference,
    Image,
}

impl PaneContent {
    pub const ALL: [PaneContent; 5] = [
        PaneContent::Gaze,
        PaneContent::Explanation,
        PaneContent::Saliency,
        PaneContent::Difference,
        PaneContent::Image,
    ];
    pub fn label(self) -> &'static str {
        match self {
            PaneContent::Gaze => "Gaze heatmap",
            PaneContent::Explanation => "Explanation",
            PaneContent::Saliency => "Predicted gaze",
            PaneContent::Difference => "Difference",
            PaneContent::Image => "Image only",
        }
    }
}

/// The side-by-side view: 2–4 panes sharing zoom, pan and W/L.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareState {
    pub enabled: bool,
    /// Contents of the panes in use (2 to 4).
    pub panes: Vec<PaneContent>,
}

impl Default for CompareState {
    fn default() -> Self {
        Self {
            enabled: false,
            panes: vec![
                PaneContent::Gaze,
                PaneContent::Explanation,
                PaneContent::Saliency,
                PaneContent::Difference,
            ],
        }
    }
}

/// The region Diff_GradCAM and EHR-AUC are measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionChoice {
    LungMask,
    /// The box drawn with the Region tool.
    DrawnBox,
}

/// One pane to draw: its id (0 = the single view; compare panes 1…4), what it shows and why not.
#[derive(Clone, Debug)]
pub struct PaneSpec {
    pub id: u64,
    pub content: Option<PaneContent>,
    pub title: String,
    pub overlays: [Option<LayerState>; 2],
    /// Shown in the pane when its content is not available.
    pub note: Option<String>,
    pub scanpath: bool,
}

/// Overlay layer indices used by `Command::SetLayer`.
pub const LAYER_MASK: usize = 0;
pub const LAYER_HEATMAP: usize = 1;
pub const LAYER_SALIENCY: usize = 2;
pub const LAYER_GAZE: usize = 3;
pub const LAYER_MODEL_ONLY: usize = 4;
pub const LAYER_GAZE_ONLY: usize = 5;

/// CPU-rendered texture for the current settings (glow renderer, tests without a GPU, huge images).
pub struct CpuTexture {
    pub texture: egui::TextureHandle,
    /// Settings it was rendered with.
    pub rendered: Option<RenderSettingsKey>,
}

/// The parts of `RenderSettings` that change the CPU output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenderSettingsKey {
    /// The pane it is for (0 = single view).
    pub pane: u64,
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
    pub gaze: Option<GazeView>,
    pub compare: CompareState,
    pub region: RegionChoice,
    /// Box drawn with the Region tool (image pixels x0, y0, x1, y1).
    pub region_box: Option<[f32; 4]>,
    pub pending_box: Option<[f32; 4]>,
    /// Set when the region changed in the pane, so the app recomputes the metrics.
    pub region_changed: bool,
    /// CPU textures of compare panes 1…4.
    pub pane_textures: [Option<CpuTexture>; 4],
}

impl ViewerState {
    pub fn new(path: PathBuf, loaded: LoadedImage) -> Self {
        let presets = loaded.presets();
        let display = DisplayParams {
            voi: presets
                .first()
                .map_or(VoiMode::Window(Window::from_range(0.0, 1.0)), |p| p.voi),
            photometric_inverted: loaded.info.photometric_inverted,
            user_inverted: false,
        };
        let handle = ImageHandle::with_color(loaded.image.clone(), loaded.color.clone());
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
            gaze: None,
            compare: CompareState::default(),
            region: RegionChoice::LungMask,
            region_box: None,
            pending_box: None,
            region_changed: false,
            pane_textures: [None, None, None, None],
        }
    }

    /// Shows another frame of the same file: the view, window, inversion and measurements stay; the
    /// overlays of an analysis belonged to the old frame and are dropped.
    pub fn replace_frame(&mut self, loaded: LoadedImage) {
        self.handle = ImageHandle::with_color(loaded.image.clone(), loaded.color.clone());
        self.loaded = loaded;
        self.cpu_texture = None;
        self.cpu_requested = None;
        self.analysis = None;
        self.gaze = None;
        self.pane_textures = [None, None, None, None];
        self.hover = None;
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
        self.settings_for(&self.layers().map(|l| l.cloned()))
    }

    /// Render settings with the given overlays (the display parameters are shared by every pane).
    pub fn settings_for(&self, overlays: &[Option<LayerState>; 2]) -> RenderSettings {
        RenderSettings {
            display: self.display,
            luts: self.luts.clone(),
            overlays: overlays.clone().map(|l| {
                l.map(|l| OverlayLayer {
                    heat: l.handle,
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

    pub fn layer(&self, index: usize) -> Option<&LayerState> {
        let a = self.analysis.as_ref();
        let g = self.gaze.as_ref();
        match index {
            LAYER_MASK => a?.mask.as_ref(),
            LAYER_HEATMAP => a?.heatmap.as_ref(),
            LAYER_SALIENCY => a?.saliency.as_ref(),
            LAYER_GAZE => g?.layer.as_ref(),
            LAYER_MODEL_ONLY => g?.model_only.as_ref(),
            LAYER_GAZE_ONLY => g?.gaze_only.as_ref(),
            _ => None,
        }
    }

    pub fn layer_mut(&mut self, index: usize) -> Option<&mut LayerState> {
        match index {
            LAYER_MASK => self.analysis.as_mut()?.mask.as_mut(),
            LAYER_HEATMAP => self.analysis.as_mut()?.heatmap.as_mut(),
            LAYER_SALIENCY => self.analysis.as_mut()?.saliency.as_mut(),
            LAYER_GAZE => self.gaze.as_mut()?.layer.as_mut(),
            LAYER_MODEL_ONLY => self.gaze.as_mut()?.model_only.as_mut(),
            LAYER_GAZE_ONLY => self.gaze.as_mut()?.gaze_only.as_mut(),
            _ => None,
        }
    }

    pub fn settings_key(&self) -> RenderSettingsKey {
        self.key_for(0, &self.layers().map(|l| l.cloned()))
    }

    pub fn key_for(&self, pane: u64, overlays: &[Option<LayerState>; 2]) -> RenderSettingsKey {
        RenderSettingsKey {
            pane,
            image_id: self.handle.id,
            display: self.display,
            overlays: overlays
                .clone()
                .map(|l| l.map(|l| (l.handle.id, l.params, l.colormap))),
        }
    }

    /// The panes to draw: the single view, or the compare panes.
    pub fn panes(&self) -> Vec<PaneSpec> {
        let scanpath = self.gaze.as_ref().is_some_and(|g| g.show_scanpath);
        if !self.compare.enabled {
            return vec![PaneSpec {
                id: 0,
                content: None,
                title: String::new(),
                overlays: self.layers().map(|l| l.cloned()),
                note: None,
                scanpath,
            }];
        }
        self.compare
            .panes
            .iter()
            .enumerate()
            .map(|(i, c)| self.pane_spec(i as u64 + 1, *c, scanpath))
            .collect()
    }

    fn pane_spec(&self, id: u64, content: PaneContent, scanpath: bool) -> PaneSpec {
        let mask = self.layer(LAYER_MASK).cloned();
        let a = self.analysis.as_ref();
        let g = self.gaze.as_ref();
        let (title, overlays, note) = match content {
            PaneContent::Gaze => (
                g.map_or("Gaze".into(), |g| {
                    format!(
                        "{} — {}",
                        crate::gaze::compare::gaze_name(&g.recording),
                        g.recipe.describe()
                    )
                }),
                [mask, g.and_then(|g| g.layer.clone())],
                match g {
                    None => Some(
                        "No gaze recording: load one or simulate one in the Eye gaze panel".into(),
                    ),
                    Some(g) if g.layer.is_none() => Some("Building the gaze heatmap…".into()),
                    _ => None,
                },
            ),
            PaneContent::Explanation => (
                a.and_then(|a| {
                    a.explained
                        .as_ref()
                        .map(|(m, c)| format!("{} — {m}, “{c}”", a.method.label()))
                })
                .unwrap_or_else(|| "Explanation".into()),
                [mask, a.and_then(|a| a.heatmap.clone())],
                a.is_none()
                    .then(|| "Not analysed yet: press Analyze (A)".into()),
            ),
            PaneContent::Saliency => (
                a.and_then(|a| a.saliency.as_ref())
                    .map_or("Predicted gaze (saliency network)".into(), |l| {
                        l.label.clone()
                    }),
                [mask, a.and_then(|a| a.saliency.clone())],
                match a {
                    None => Some("Not analysed yet: press Analyze (A)".into()),
                    Some(a) if a.saliency.is_none() => Some(
                        "No saliency model installed — train one in the trainer to predict gaze"
                            .into(),
                    ),
                    _ => None,
                },
            ),
            PaneContent::Difference => (
                "Difference — red: model heat without gaze · blue: gaze without model heat".into(),
                [
                    g.and_then(|g| g.model_only.clone()),
                    g.and_then(|g| g.gaze_only.clone()),
                ],
                match (a.and_then(|a| a.heatmap.as_ref()), g) {
                    (None, _) => Some("Needs an explanation: press Analyze (A)".into()),
                    (_, None) => Some("Needs a gaze recording".into()),
                    (Some(_), Some(g)) if g.model_only.is_none() => Some("Computing…".into()),
                    _ => None,
                },
            ),
            PaneContent::Image => ("Image".into(), [None, None], None),
        };
        PaneSpec {
            id,
            content: Some(content),
            title,
            overlays,
            note,
            scanpath: scanpath && content == PaneContent::Gaze,
        }
    }
}
