//! The typed command channel: every discrete UI intent, applied once per frame in `CxrApp::logic`.

use std::path::PathBuf;

use crate::gaze::heatmap::Recipe;
use crate::imaging::colormap::Colormap;
use crate::imaging::composite::OverlayParams;
use crate::ml::analysis::ExplainTarget;
use crate::ml::explain::Method;
use crate::ui::state::{PaneContent, RegionChoice};

/// What a left-drag on the image does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tool {
    #[default]
    WindowLevel,
    Pan,
    Measure,
    /// Draw the box that Diff_GradCAM and EHR-AUC are measured against.
    Region,
}

impl Tool {
    pub fn label(self) -> &'static str {
        match self {
            Tool::WindowLevel => "W/L",
            Tool::Pan => "Pan",
            Tool::Measure => "Measure",
            Tool::Region => "Region",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A file, a folder or a DICOMDIR.
    Open(PathBuf),
    /// Open an image from the study browser (keeps the browser).
    OpenInstance(PathBuf),
    OpenSample,
    /// Save the compute-backend preference (used from the next start).
    SaveBackend(crate::ml::device::BackendChoice),
    ShowFileDialog {
        folder: bool,
    },
    ShowPathEntry,
    ApplyPreset(usize),
    ToggleInvert,
    Fit,
    OneToOne,
    /// File window, fit, no inversion, no measurements.
    Reset,
    SetTool(Tool),
    ClearMeasurements,
    ToggleTagBrowser,
    /// Show frame `n` (0-based) of a multi-frame image, keeping the view, window and measurements.
    ShowFrame(u32),
    /// Play / pause the frames of a multi-frame image (cine).
    ToggleCine,
    ToggleStudyBrowser,
    NextImage,
    PreviousImage,
    DismissNotice(usize),
    /// Run lung mask + classification + the chosen explanation on the open image.
    Analyze,
    CancelAnalysis,
    /// Show the results the out-of-distribution gate withheld (the warning stays).
    RevealAnalysis,
    SetMethod(Method),
    SetExplainTarget(ExplainTarget),
    /// Change overlay layer `index` (0 lung mask, 1 heatmap).
    SetLayer {
        index: usize,
        params: OverlayParams,
        colormap: Colormap,
    },
    ToggleAnalysisPanel,
    /// Change the opacity of overlay layer `index` by `delta` (keys `[` and `]` for the heatmap).
    NudgeOpacity {
        index: usize,
        delta: f32,
    },
    /// Import a gaze file (EGD-CXR or REFLACX) for the open image.
    LoadGaze(PathBuf),
    /// Make a simulated reading of the open image (labelled simulated everywhere).
    SimulateGaze,
    ClearGaze,
    SetGazeRecipe(Recipe),
    ToggleScanpath,
    ToggleCompare,
    /// Number of compare panes (2–4).
    SetPaneCount(usize),
    SetPaneContent {
        pane: usize,
        content: PaneContent,
    },
    SetRegion(RegionChoice),
    /// Write the metrics table as CSV.
    ExportMetrics(PathBuf),
    /// Ask where to save an export (File ▸ Export), then write it.
    Export(crate::export::job::ExportChoice),
    /// Write an export to this path (no dialog).
    ExportTo(crate::export::job::ExportChoice, PathBuf),
    /// Open or close the PACS window.
    TogglePacs,
    /// Save the PACS panel's server list.
    PacsSaveServers,
    /// Search the selected server with the panel's query.
    PacsSearch,
    /// Retrieve this study (Study Instance UID) and open it.
    PacsRetrieve(String),
    /// List the series of this study.
    PacsListSeries(String),
    /// Retrieve one series (study UID, series UID) and open it.
    PacsRetrieveSeries(String, String),
    /// Send this file to the selected server (STOW-RS).
    PacsStore(PathBuf),
    /// Stop the running PACS job.
    PacsCancel,
    /// Include patient identifiers in reports (File ▸ Export ▸ checkbox).
    SetReportIdentifiers(bool),
    /// Use this model bundle for its kind (reloads the models on the inference worker).
    SelectModel(PathBuf),
    /// Show the viewer or the trainer.
    ShowTab(crate::ui::app::Tab),
}
