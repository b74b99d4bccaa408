//! The typed command channel: every discrete UI intent, applied once per frame in `CxrApp::logic`.

use std::path::PathBuf;

use crate::imaging::colormap::Colormap;
use crate::imaging::composite::OverlayParams;
use crate::ml::analysis::ExplainTarget;
use crate::ml::explain::Method;

/// What a left-drag on the image does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tool {
    #[default]
    WindowLevel,
    Pan,
    Measure,
}

impl Tool {
    pub fn label(self) -> &'static str {
        match self {
            Tool::WindowLevel => "W/L",
            Tool::Pan => "Pan",
            Tool::Measure => "Measure",
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
    ToggleStudyBrowser,
    NextImage,
    PreviousImage,
    DismissNotice(usize),
    /// Run lung mask + classification + the chosen explanation on the open image.
    Analyze,
    CancelAnalysis,
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
}
