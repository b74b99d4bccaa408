//! What the compare view needs from one gaze recording and the model's maps, computed together on
//! a worker: the gaze heatmap for display, the signed difference against the explanation split into
//! its two halves (model heat without gaze, gaze without model heat), and the metrics table.

use std::sync::Arc;
use std::time::Instant;

use super::GazeRecording;
use super::heatmap::{Recipe, heatmap, normalised_for_display};
use super::table::{MetricRow, metrics_table, rect_mask, region_mask};
use crate::imaging::ScalarImage;

/// The region for Diff_GradCAM and EHR-AUC.
#[derive(Clone, Debug)]
pub enum Region {
    /// A probability map (e.g. the predicted lung mask), inside where ≥ 0.5.
    Mask(Arc<ScalarImage>),
    /// A rectangle in image pixels (x0, y0, x1, y1).
    Box([f32; 4]),
}

#[derive(Clone, Debug)]
pub struct CompareJob {
    pub recording: GazeRecording,
    pub recipe: Recipe,
    pub width: u32,
    pub height: u32,
    /// Model maps to judge (name, map in [0, 1]); the first is the explanation used for the
    /// difference view.
    pub maps: Vec<(String, Arc<ScalarImage>)>,
    pub region: Option<(String, Region)>,
}

#[derive(Clone, Debug)]
pub struct CompareOutput {
    /// The gaze heatmap scaled to [0, 1] by its maximum.
    pub gaze: ScalarImage,
    /// max(explanation − gaze, 0): heat the model puts where the reader did not look.
    pub model_only: Option<ScalarImage>,
    /// max(gaze − explanation, 0): where the reader looked and the model did not.
    pub gaze_only: Option<ScalarImage>,
    pub rows: Vec<MetricRow>,
    /// Name used for the gaze map in the table.
    pub gaze_name: String,
    /// Time to build the gaze heatmap, and the whole job (heatmap, difference, metrics).
    pub heatmap_seconds: f64,
    pub seconds: f64,
}

/// Name of a recording's map in tables and legends ("Simulated gaze (EGD-CXR)").
pub fn gaze_name(recording: &GazeRecording) -> String {
    format!(
        "{} ({})",
        if recording.simulated {
            "Simulated gaze"
        } else {
            "Gaze"
        },
        recording.format.label()
    )
}

/// The gaze heatmap alone, scaled to [0, 1] (the first thing the σ slider needs).
pub fn gaze_map(job: &CompareJob) -> ScalarImage {
    normalised_for_display(heatmap(&job.recording, job.width, job.height, job.recipe))
}

pub fn compute(job: &CompareJob) -> CompareOutput {
    compute_reporting(job, &mut |_, _| true).expect("not cancelled")
}

/// Like [`compute`], handing the heatmap to `on_heatmap(map, seconds)` as soon as it exists;
/// `on_heatmap` returning `false` stops before the difference and metrics (`None`).
pub fn compute_reporting(
    job: &CompareJob,
    on_heatmap: &mut dyn FnMut(&ScalarImage, f64) -> bool,
) -> Option<CompareOutput> {
    let started = Instant::now();
    let gaze = gaze_map(job);
    let heatmap_seconds = started.elapsed().as_secs_f64();
    if !on_heatmap(&gaze, heatmap_seconds) {
        return None;
    }
    let same = |m: &ScalarImage| m.width == job.width && m.height == job.height;
    let (model_only, gaze_only) = match job.maps.first().filter(|(_, m)| same(m)) {
        Some((_, e)) => {
            let mut over = Vec::with_capacity(gaze.values.len());
            let mut under = Vec::with_capacity(gaze.values.len());
            for (m, g) in e.values.iter().zip(&gaze.values) {
                let d = m - g;
                over.push(d.max(0.0));
                under.push((-d).max(0.0));
            }
            (
                ScalarImage::new(job.width, job.height, over),
                ScalarImage::new(job.width, job.height, under),
            )
        }
        None => (None, None),
    };
    let points: Vec<(f32, f32)> = job.recording.fixations.iter().map(|f| (f.x, f.y)).collect();
    let region = job.region.as_ref().map(|(name, r)| {
        (
            name.clone(),
            match r {
                Region::Mask(m) => region_mask(m),
                Region::Box(b) => rect_mask(job.width, job.height, *b),
            },
        )
    });
    let name = gaze_name(&job.recording);
    let maps: Vec<(String, &ScalarImage)> = job
        .maps
        .iter()
        .map(|(n, m)| (n.clone(), m.as_ref()))
        .collect();
    let rows = metrics_table(
        Some((&name, &gaze, &points)),
        &maps,
        region.as_ref().map(|(n, m)| (n.as_str(), m.as_slice())),
    );
    Some(CompareOutput {
        gaze,
        model_only,
        gaze_only,
        rows,
        gaze_name: name,
        heatmap_seconds,
        seconds: started.elapsed().as_secs_f64(),
    })
}
