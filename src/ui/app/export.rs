//! File ▸ Export: the open image with its overlays as PNG (as on screen, or the whole image at
//! image resolution), as a DICOM Secondary Capture, or in an HTML report. The job is assembled here
//! from the viewer's state (shared image buffers, no pixel work) and runs on `cxrlens-export`.

use super::*;
use crate::export::corners::{ViewFacts, corner_text};
use crate::export::figure::Legend;
use crate::export::job::{ExportChoice, ExportJob, ExportKind};
use crate::export::report::GazeSection;
use crate::imaging::view::Point;
use crate::render::cpu::View;

impl CxrApp {
    /// The suggested file name: the image's name, what is exported, the extension.
    pub(super) fn export_name(&self, choice: ExportChoice) -> String {
        let stem = self
            .viewer
            .as_ref()
            .and_then(|v| v.path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "image".into());
        let what = match (choice.kind, choice.screen) {
            (ExportKind::Png, true) => "view",
            (ExportKind::Png, false) => "overlay",
            (ExportKind::SecondaryCapture, _) => "sc",
            (ExportKind::Report, _) => "report",
        };
        format!("{stem}-{what}.{}", choice.kind.extension())
    }

    pub(super) fn export_job(
        &self,
        choice: ExportChoice,
        out: PathBuf,
        pixels_per_point: f32,
    ) -> Result<ExportJob, String> {
        let v = self.viewer.as_ref().ok_or("no image is open")?;
        let a = v.analysis.as_ref();
        if choice.kind == ExportKind::Report && a.is_none() {
            return Err("no analysis to report: run Analyze first".into());
        }
        let screen = choice.screen && choice.kind == ExportKind::Png;
        let view = if screen {
            let panel = v.last_panel.ok_or("the view has not been drawn yet")?;
            let ppp = pixels_per_point;
            let origin = v.view.screen_from_image(panel, Point::new(0.0, 0.0));
            let bg = super::super::viewer::BACKGROUND.to_normalized_gamma_f32();
            Some(View {
                size: [
                    (panel.size.x * ppp).round().max(1.0) as u32,
                    (panel.size.y * ppp).round().max(1.0) as u32,
                ],
                origin: [
                    (origin.x - panel.min.x) * ppp,
                    (origin.y - panel.min.y) * ppp,
                ],
                zoom: v.view.zoom * ppp,
                background: [bg[0], bg[1], bg[2]],
            })
        } else {
            None
        };
        let settings = v.render_settings();
        let preset = v
            .active_preset
            .and_then(|i| v.presets.get(i))
            .map(|p| p.name.as_str());
        let mut corners = corner_text(
            &v.loaded.info,
            &ViewFacts {
                width: v.handle.image.width,
                height: v.handle.image.height,
                display: &v.display,
                preset,
                zoom: screen.then_some((v.view.zoom, v.view.fit_mode)),
            },
        );
        let mut overlays = Vec::new();
        let mut legend = None;
        if let Some(a) = a {
            if let Some(m) = a.mask.as_ref().filter(|l| l.params.visible) {
                overlays.push(m.label.clone());
            }
            if let Some(h) = a.heatmap.as_ref().filter(|l| l.params.visible) {
                let what = match &a.explained {
                    Some((model, class)) => format!("{} of {model} for {class}", h.label),
                    None => h.label.clone(),
                };
                overlays.push(what);
                legend = Some(Legend {
                    colormap: h.colormap,
                    title: h.label.clone(),
                });
            }
            if let Some(title) = a.ood.title() {
                corners.bottom_right.push(if a.revealed {
                    format!("{title} (results shown on request)")
                } else {
                    title.to_string()
                });
            }
        }
        corners.top_right.extend(overlays.iter().cloned());
        let summary = a.map(|a| {
            let mut s = a.summary.clone();
            if a.revealed {
                // The user chose to see the withheld results; the report shows them, with the
                // verdict above them.
                for p in &mut s.predictions {
                    p.shown = true;
                }
                s.lung_shown = true;
                if let Some(e) = &mut s.explanation {
                    e.shown = true;
                }
            }
            s
        });
        let gaze = v
            .gaze
            .as_ref()
            .filter(|g| !g.rows.is_empty())
            .map(|g| GazeSection {
                recording: crate::gaze::compare::gaze_name(&g.recording),
                simulated: g.recording.simulated,
                rows: g.rows.clone(),
            });
        Ok(ExportJob {
            kind: choice.kind,
            out,
            handle: v.handle.clone(),
            settings,
            view,
            corners,
            legend,
            source: Some(v.path.clone()),
            overlays: if overlays.is_empty() {
                "no overlay".into()
            } else {
                overlays.join(" + ")
            },
            summary,
            gaze,
            identifiers: self.report_identifiers,
        })
    }
}
