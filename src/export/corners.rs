//! The corner text of a view — acquisition facts top-left, encoding top-right, W/L and zoom
//! bottom-left — as lines, without patient identifiers. The viewer paints these lines with egui; an
//! export burns the same lines into its pixels.

use crate::imaging::DisplayParams;
use crate::imaging::voi::VoiMode;
use crate::io::ImageInfo;

/// Lines of text for each corner of a view, top to bottom.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CornerText {
    pub top_left: Vec<String>,
    pub top_right: Vec<String>,
    pub bottom_left: Vec<String>,
    pub bottom_right: Vec<String>,
}

/// What the view shows besides the file: window, preset and zoom.
#[derive(Clone, Debug)]
pub struct ViewFacts<'a> {
    pub width: u32,
    pub height: u32,
    pub display: &'a DisplayParams,
    pub preset: Option<&'a str>,
    /// Screen pixels per image pixel; `None` for an export at image resolution (no zoom line).
    pub zoom: Option<(f32, bool)>,
}

pub fn corner_text(info: &ImageInfo, view: &ViewFacts) -> CornerText {
    let mut top_left = Vec::new();
    let acquisition: Vec<&str> = [
        info.modality.as_deref(),
        info.body_part.as_deref(),
        info.view_position.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !acquisition.is_empty() {
        top_left.push(acquisition.join(" · "));
    }
    top_left.push(format!("{} × {} px", view.width, view.height));
    top_left.push(format!(
        "{} · {} of {} bits",
        info.photometric, info.bits_stored, info.bits_allocated
    ));
    if info.rescale_slope != 1.0 || info.rescale_intercept != 0.0 {
        top_left.push(format!(
            "Rescale ×{} + {}",
            info.rescale_slope, info.rescale_intercept
        ));
    }
    if info.is_color {
        top_left.push("colour (models see luminance)".into());
    }
    for line in &info.unusable_attributes {
        top_left.push(format!("file value ignored: {line}"));
    }
    let top_right = vec![
        info.format.label(),
        info.calibration.source_label().to_string(),
    ];
    let mut bottom_left = vec![match view.display.voi {
        VoiMode::Window(w) => format!(
            "W {:.0}  C {:.0}  {}",
            w.width,
            w.center,
            w.function.label()
        ),
        VoiMode::Lut(i) => format!("VOI LUT {}", i + 1),
    }];
    if let Some(p) = view.preset {
        bottom_left.push(format!("Preset: {p}"));
    }
    if let Some((zoom, fit)) = view.zoom {
        bottom_left.push(format!(
            "Zoom {:.0} %{}",
            zoom * 100.0,
            if fit { " (fit)" } else { "" }
        ));
    }
    if view.display.user_inverted {
        bottom_left.push("INVERTED".into());
    }
    CornerText {
        top_left,
        top_right,
        bottom_left,
        bottom_right: Vec::new(),
    }
}
