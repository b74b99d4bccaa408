//! Starting an analysis, and showing analysis and gaze results as viewer layers.

use super::*;
use crate::render::{HEATMAP_LAYER, LayerDefaults, MASK_LAYER, SALIENCY_LAYER};

impl CxrApp {
    pub(super) fn start_analysis(&mut self) {
        let (Some(v), Some(worker)) = (&self.viewer, &mut self.workers.inference) else {
            return;
        };
        let request = AnalysisRequest::of(&v.loaded, self.analysis.method, self.analysis.target);
        match worker.analyze(request) {
            Ok(generation) => {
                self.analysis.running = Some((generation, 0.0, "queued".into()));
                self.analysis_image = Some(v.handle.id);
            }
            Err(e) => self.notices.error(e),
        }
    }

    pub(super) fn show_analysis_result(
        &mut self,
        result: AnalysisResult,
        mut summary: crate::export::summary::AnalysisSummary,
    ) {
        let Some(v) = &mut self.viewer else { return };
        if self.analysis_image != Some(v.handle.id) {
            return;
        }
        summary.source = v.loaded.display_name.clone();
        summary.frame = v.loaded.frame;
        let old = v.analysis.take();
        // A new layer keeps the user's opacity, threshold and colormap from the previous analysis.
        let layer = |old: Option<&LayerState>,
                     map: crate::imaging::ScalarImage,
                     defaults: LayerDefaults,
                     label: String| {
            let (params, colormap) = old.map_or((defaults.params(), defaults.colormap), |l| {
                (l.params, l.colormap)
            });
            LayerState {
                handle: ImageHandle::new(Arc::new(map)),
                params,
                colormap,
                label,
            }
        };
        let lung_title = result
            .predictions
            .first()
            .map(|p| p.model_title.clone())
            .unwrap_or_default();
        let classifier_title = result
            .ood
            .classifier
            .as_ref()
            .map(|g| g.model.clone())
            .or_else(|| result.predictions.last().map(|p| p.model_title.clone()))
            .unwrap_or_default();
        let explained_title = result
            .explained
            .as_ref()
            .map(|e| e.0.clone())
            .unwrap_or_default();
        let mask = result.lung_probability.map(|m| {
            layer(
                old.as_ref().and_then(|o| o.mask.as_ref()),
                m,
                MASK_LAYER,
                format!("Lung mask ({lung_title})"),
            )
        });
        let heatmap = result.heatmap.map(|h| {
            layer(
                old.as_ref().and_then(|o| o.heatmap.as_ref()),
                h,
                HEATMAP_LAYER,
                result.method.label().to_string(),
            )
        });
        let saliency = result.saliency.map(|(m, title)| {
            layer(
                old.as_ref().and_then(|o| o.saliency.as_ref()),
                m,
                SALIENCY_LAYER,
                format!("Predicted gaze ({title})"),
            )
        });
        // The gate decides what is drawn: a flagged model's layers wait until the user asks.
        let ood = result.ood;
        let split = |layer: Option<LayerState>, model: &str| {
            if ood.shows(model) {
                (layer, None)
            } else {
                (None, layer)
            }
        };
        let (mask, withheld_mask) = split(mask, &lung_title);
        let (heatmap, withheld_heatmap) = split(heatmap, &explained_title);
        let (saliency, withheld_saliency) = split(saliency, &classifier_title);
        let mut view = AnalysisView {
            mask,
            heatmap,
            saliency,
            predictions: result.predictions,
            explained: result.explained,
            target_layer: result.target_layer,
            method: result.method,
            seconds: result.seconds,
            ood,
            withheld: Withheld {
                mask: withheld_mask,
                heatmap: withheld_heatmap,
                saliency: withheld_saliency,
            },
            revealed: false,
            summary,
        };
        // A re-analysis of an image whose results the user already chose to see keeps them shown.
        if old.as_ref().is_some_and(|o| o.revealed) {
            view.reveal();
        }
        v.analysis = Some(view);
        self.schedule_gaze_compare();
    }

    /// Rebuilds the gaze heatmap, difference and metrics for the current recording, maps and region.
    pub(super) fn schedule_gaze_compare(&mut self) {
        let Some(v) = &mut self.viewer else { return };
        let Some(g) = &mut v.gaze else { return };
        let a = v.analysis.as_ref();
        let mut maps = Vec::new();
        if let Some(h) = a.and_then(|a| a.heatmap.as_ref()) {
            let name = a
                .and_then(|a| a.explained.as_ref())
                .map_or(h.label.clone(), |(m, c)| format!("{} ({m}, {c})", h.label));
            maps.push((name, h.handle.image.clone()));
        }
        if let Some(s) = a.and_then(|a| a.saliency.as_ref()) {
            maps.push((s.label.clone(), s.handle.image.clone()));
        }
        let region = match v.region {
            RegionChoice::LungMask => a.and_then(|a| a.mask.as_ref()).map(|m| {
                (
                    "predicted lung mask".to_string(),
                    crate::gaze::compare::Region::Mask(m.handle.image.clone()),
                )
            }),
            RegionChoice::DrawnBox => v.region_box.map(|b| {
                (
                    format!("box {:.0},{:.0}–{:.0},{:.0}", b[0], b[1], b[2], b[3]),
                    crate::gaze::compare::Region::Box(b),
                )
            }),
        };
        let job = crate::gaze::compare::CompareJob {
            recording: g.recording.clone(),
            recipe: g.recipe,
            width: v.handle.image.width,
            height: v.handle.image.height,
            maps,
            region,
        };
        g.computing = true;
        if let Err(e) = self.workers.compare_gaze(job, v.handle.id) {
            g.computing = false;
            self.notices.error(e);
        }
    }

    pub(super) fn show_gaze_import(&mut self, import: crate::gaze::GazeImport) {
        let Some(v) = &mut self.viewer else { return };
        let count = import.problems.len();
        self.gaze_panel.problems = import.problems.iter().map(|p| p.to_string()).collect();
        if import.calibration_rows > 0 {
            self.gaze_panel.problems.insert(
                0,
                format!(
                    "{} calibration-image rows skipped (DICOM_IDs not in master_sheet.csv)",
                    import.calibration_rows
                ),
            );
        }
        let Some(recording) = import.recordings.into_iter().next() else {
            let first = import
                .problems
                .first()
                .map_or_else(|| "no fixations".to_string(), |p| p.to_string());
            self.notices.error(format!(
                "no gaze recording for this image: {first}{}",
                if count > 1 {
                    format!(" (+{} more problems in the Eye gaze panel)", count - 1)
                } else {
                    String::new()
                }
            ));
            return;
        };
        if count > 0 {
            self.notices.error(format!(
                "gaze loaded with {count} problem{} (listed in the Eye gaze panel)",
                if count == 1 { "" } else { "s" }
            ));
        }
        let recipe = crate::gaze::heatmap::Recipe::published(recording.format);
        let old = v.gaze.take();
        v.gaze = Some(GazeView {
            recording,
            recipe,
            layer: None,
            model_only: None,
            gaze_only: None,
            rows: Vec::new(),
            show_scanpath: old.as_ref().is_none_or(|g| g.show_scanpath),
            computing: false,
            heatmap_seconds: 0.0,
            seconds: 0.0,
        });
        if !v.compare.enabled {
            v.compare.enabled = true;
            v.view.fit_mode = true;
        }
        self.schedule_gaze_compare();
    }

    /// The heatmap arrives ahead of the metrics, so the σ slider shows its effect at once.
    pub(super) fn show_gaze_heatmap(&mut self, map: crate::imaging::ScalarImage, seconds: f64) {
        let Some(g) = self.viewer.as_mut().and_then(|v| v.gaze.as_mut()) else {
            return;
        };
        g.heatmap_seconds = seconds;
        let name = crate::gaze::compare::gaze_name(&g.recording);
        let (params, colormap) = g.layer.as_ref().map_or(
            (
                OverlayParams {
                    visible: true,
                    opacity: 0.5,
                    threshold: 0.2,
                    contour: false,
                },
                Colormap::Inferno,
            ),
            |l| (l.params, l.colormap),
        );
        g.layer = Some(LayerState {
            handle: ImageHandle::new(Arc::new(map)),
            params,
            colormap,
            label: name,
        });
    }

    pub(super) fn show_gaze_compare(&mut self, output: crate::gaze::compare::CompareOutput) {
        let Some(v) = &mut self.viewer else { return };
        let Some(g) = &mut v.gaze else { return };
        g.computing = false;
        g.rows = output.rows;
        g.seconds = output.seconds;
        g.heatmap_seconds = output.heatmap_seconds;
        let layer = |old: Option<&LayerState>,
                     map: crate::imaging::ScalarImage,
                     label: String,
                     params: OverlayParams,
                     colormap: Colormap| {
            let (params, colormap) = old.map_or((params, colormap), |l| (l.params, l.colormap));
            LayerState {
                handle: ImageHandle::new(Arc::new(map)),
                params,
                colormap,
                label,
            }
        };
        // The heatmap came ahead (`show_gaze_heatmap`); keep its texture.
        if g.layer.is_none() {
            g.layer = Some(layer(
                None,
                output.gaze,
                output.gaze_name,
                OverlayParams {
                    visible: true,
                    opacity: 0.5,
                    threshold: 0.2,
                    contour: false,
                },
                Colormap::Inferno,
            ));
        }
        let diff = OverlayParams {
            visible: true,
            opacity: 0.6,
            threshold: 0.1,
            contour: false,
        };
        g.model_only = output.model_only.map(|m| {
            layer(
                g.model_only.as_ref(),
                m,
                "Model heat without gaze".into(),
                diff,
                Colormap::Reds,
            )
        });
        g.gaze_only = output.gaze_only.map(|m| {
            layer(
                g.gaze_only.as_ref(),
                m,
                "Gaze without model heat".into(),
                diff,
                Colormap::Blues,
            )
        });
    }
}
