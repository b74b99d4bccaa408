//! The compare view's metrics table, also written by `cxrlens gaze compare`: each model map
//! against the gaze map (KL, CC, HS, SIM) and the fixations (NSS, AUC-Judd), and every map
//! (gaze included) against a region (Diff_GradCAM, EHR-AUC). CSV in long form.

use std::path::Path;

use super::metrics::{self, MetricError};
use crate::imaging::ScalarImage;
use crate::io::write::write_atomically;

/// One value of the table. `value` is `None` when the metric is undefined; `note` says why.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    /// The map being judged (e.g. "Grad-CAM (pneumonia-effnet 1.0.0, pneumonia)").
    pub map: String,
    /// What it is judged against: the gaze map, the fixations or the region.
    pub reference: String,
    pub metric: &'static str,
    pub value: Option<f64>,
    pub note: String,
}

/// Metric names in table order, with whether larger is better.
pub const MAP_METRICS: [(&str, bool); 6] = [
    ("KL", false),
    ("CC", true),
    ("HS", true),
    ("SIM", true),
    ("NSS", true),
    ("AUC-Judd", true),
];
pub const REGION_METRICS: [(&str, bool); 2] = [("Diff_GradCAM", true), ("EHR-AUC", true)];

fn row(map: &str, reference: &str, metric: &'static str, r: Result<f64, MetricError>) -> MetricRow {
    let (value, note) = match r {
        Ok(v) => (Some(v), String::new()),
        Err(e) => (None, e.to_string()),
    };
    MetricRow {
        map: map.to_string(),
        reference: reference.to_string(),
        metric,
        value,
        note,
    }
}

/// The region as a mask: pixels ≥ 0.5.
pub fn region_mask(region: &ScalarImage) -> Vec<bool> {
    region.values.iter().map(|v| *v >= 0.5).collect()
}

/// A rectangle (image pixels, inclusive min, exclusive max) as a region mask.
pub fn rect_mask(width: u32, height: u32, rect: [f32; 4]) -> Vec<bool> {
    let [x0, y0, x1, y1] = rect;
    let (x0, x1) = (x0.min(x1), x0.max(x1));
    let (y0, y1) = (y0.min(y1), y0.max(y1));
    (0..height as usize * width as usize)
        .map(|i| {
            let (x, y) = (
                (i % width as usize) as f32 + 0.5,
                (i / width as usize) as f32 + 0.5,
            );
            x >= x0 && x < x1 && y >= y0 && y < y1
        })
        .collect()
}

/// The gaze side of the table: its name, its map and the fixation points (image pixels).
pub type GazeInput<'a> = (&'a str, &'a ScalarImage, &'a [(f32, f32)]);

/// Builds the table. `gaze` = (name, map, fixation points); `maps` = the model maps to judge;
/// `region` = (name, mask) for the region metrics.
pub fn metrics_table(
    gaze: Option<GazeInput<'_>>,
    maps: &[(String, &ScalarImage)],
    region: Option<(&str, &[bool])>,
) -> Vec<MetricRow> {
    let mut rows = Vec::new();
    if let Some((gaze_name, gaze_map, points)) = gaze {
        let fixated = metrics::fixated_pixels(points, gaze_map.width, gaze_map.height);
        let fixations = format!("fixations of {gaze_name}");
        for (name, map) in maps {
            let (p, q) = (&map.values, &gaze_map.values);
            rows.push(row(name, gaze_name, "KL", metrics::kl(p, q)));
            rows.push(row(name, gaze_name, "CC", metrics::cc(p, q)));
            rows.push(row(name, gaze_name, "HS", metrics::hs(p, q)));
            rows.push(row(name, gaze_name, "SIM", metrics::sim(p, q)));
            let fix = if map.values.len() == gaze_map.values.len() {
                fixated.clone()
            } else {
                Vec::new()
            };
            rows.push(row(name, &fixations, "NSS", metrics::nss(p, &fix)));
            rows.push(row(
                name,
                &fixations,
                "AUC-Judd",
                metrics::auc_judd(p, &fix),
            ));
        }
    }
    if let Some((region_name, mask)) = region {
        let all = gaze
            .map(|(n, m, _)| (n.to_string(), m))
            .into_iter()
            .chain(maps.iter().map(|(n, m)| (n.clone(), *m)));
        for (name, map) in all {
            rows.push(row(
                &name,
                region_name,
                "Diff_GradCAM",
                metrics::diff_gradcam(&map.values, mask),
            ));
            rows.push(row(
                &name,
                region_name,
                "EHR-AUC",
                metrics::ehr_auc(&map.values, mask),
            ));
        }
    }
    rows
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The table as CSV: `map,reference,metric,value,note` (empty value when undefined).
pub fn to_csv(rows: &[MetricRow]) -> String {
    let mut out = String::from("map,reference,metric,value,note\n");
    for r in rows {
        out += &format!(
            "{},{},{},{},{}\n",
            csv_field(&r.map),
            csv_field(&r.reference),
            r.metric,
            r.value.map_or(String::new(), |v| format!("{v:.6}")),
            csv_field(&r.note)
        );
    }
    out
}

/// Writes the CSV atomically.
pub fn write_csv(rows: &[MetricRow], path: &Path) -> std::io::Result<()> {
    write_atomically(path, to_csv(rows).as_bytes())
}
