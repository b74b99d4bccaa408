//! REFLACX (Bigolin Lanfredi et al. 2022): `main_data/<case id>/fixations.csv`, coordinates already
//! in original image pixels, with start/end times, the angular resolution (image pixels per degree)
//! and the part of the image shown on screen. `metadata_phase_*.csv` links a case id to its
//! `dicom_id` and image size. See `EYE_GAZE_FORMATS.md` §B.

use std::path::Path;

use super::{
    CsvTable, Fixation, GazeFormat, GazeImport, GazeProblem, GazeRecording, ImageKey, PixelRect,
};

/// The columns a fixation file must have.
pub const REQUIRED: [&str; 4] = [
    "timestamp_start_fixation",
    "timestamp_end_fixation",
    "x_position",
    "y_position",
];

/// A case's row in a metadata file.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseMetadata {
    pub id: String,
    pub dicom_id: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Finds `case_id` in a `metadata_phase_*.csv`.
pub fn read_case(
    path: &Path,
    case_id: &str,
    problems: &mut Vec<GazeProblem>,
) -> Option<CaseMetadata> {
    let table = CsvTable::read(path, problems)?;
    let id = table.require("id", problems)?;
    let dicom = table.require("dicom_id", problems)?;
    let (sx, sy) = (table.column("image_size_x"), table.column("image_size_y"));
    let (line, fields) = table
        .rows
        .iter()
        .find(|(_, f)| f.get(id).is_some_and(|v| v.trim() == case_id))?;
    let size = |c: Option<usize>, problems: &mut Vec<GazeProblem>| {
        let c = c?;
        match table.number(*line, fields, c) {
            Ok(v) if v >= 1.0 => Some(v as u32),
            Ok(v) => {
                problems.push(table.problem(
                    *line,
                    &table.headers[c],
                    format!("size {v} is not positive"),
                ));
                None
            }
            Err(p) => {
                problems.push(p);
                None
            }
        }
    };
    Some(CaseMetadata {
        id: case_id.to_string(),
        dicom_id: fields
            .get(dicom)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        width: size(sx, problems),
        height: size(sy, problems),
    })
}

/// Reads one REFLACX case's fixations for `image`. With `metadata`, the case must belong to the
/// image (by dicom_id) and have its size; without it, the user's choice of image is trusted.
pub fn import(fixations: &Path, image: &ImageKey, metadata: Option<&Path>) -> GazeImport {
    let mut out = GazeImport::default();
    let case_id = fixations
        .parent()
        .and_then(|p| p.file_name())
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut image_id = case_id.clone();
    if let Some(meta_path) = metadata {
        match read_case(meta_path, &case_id, &mut out.problems) {
            None => {
                out.problems.push(GazeProblem {
                    file: meta_path.to_path_buf(),
                    line: None,
                    column: Some("id".into()),
                    message: format!("case {case_id} is not listed"),
                });
                return out;
            }
            Some(meta) => {
                if !image.matches(&meta.dicom_id) {
                    out.problems.push(GazeProblem {
                        file: meta_path.to_path_buf(),
                        line: None,
                        column: Some("dicom_id".into()),
                        message: format!(
                            "case {case_id} is dicom_id {}, which matches no open image",
                            meta.dicom_id
                        ),
                    });
                    return out;
                }
                if let (Some(w), Some(h)) = (meta.width, meta.height)
                    && (w, h) != (image.width, image.height)
                {
                    out.problems.push(GazeProblem {
                        file: meta_path.to_path_buf(),
                        line: None,
                        column: Some("image_size_x".into()),
                        message: format!(
                            "case {case_id} was recorded on a {w}×{h} image but the open image is {}×{}",
                            image.width, image.height
                        ),
                    });
                    return out;
                }
                image_id = meta.dicom_id;
            }
        }
    }
    let Some(table) = CsvTable::read(fixations, &mut out.problems) else {
        return out;
    };
    let cols: Vec<Option<usize>> = REQUIRED
        .iter()
        .map(|c| table.require(c, &mut out.problems))
        .collect();
    if cols.iter().any(Option::is_none) {
        return out;
    }
    let [start, end, xc, yc] = [
        cols[0].unwrap(),
        cols[1].unwrap(),
        cols[2].unwrap(),
        cols[3].unwrap(),
    ];
    let ppd = table
        .column("angular_resolution_x_pixels_per_degree")
        .zip(table.column("angular_resolution_y_pixels_per_degree"));
    if ppd.is_none() {
        out.problems.push(GazeProblem {
            file: fixations.to_path_buf(),
            line: Some(1),
            column: Some("angular_resolution_x_pixels_per_degree".into()),
            message: "missing: the heatmap will use the σ set in the gaze panel instead of 1°"
                .into(),
        });
    }
    let shown_cols: Option<Vec<usize>> = [
        "xmin_shown_from_image",
        "ymin_shown_from_image",
        "xmax_shown_from_image",
        "ymax_shown_from_image",
    ]
    .iter()
    .map(|c| table.column(c))
    .collect();
    let mut rec = GazeRecording {
        format: GazeFormat::Reflacx,
        image_id,
        file: fixations.to_path_buf(),
        fixations: Vec::new(),
        off_image: 0,
        simulated: super::synthetic::is_simulated(fixations),
    };
    'rows: for (line, fields) in &table.rows {
        let mut v = [0.0; 4];
        for (k, c) in [start, end, xc, yc].into_iter().enumerate() {
            match table.number(*line, fields, c) {
                Ok(n) => v[k] = n,
                Err(p) => {
                    out.problems.push(p);
                    continue 'rows;
                }
            }
        }
        let [s, e, x, y] = v;
        if e < s {
            out.problems.push(table.problem(
                *line,
                "timestamp_end_fixation",
                format!("ends ({e}) before it starts ({s})"),
            ));
            continue;
        }
        if x < 0.0 || y < 0.0 || x >= image.width as f64 || y >= image.height as f64 {
            rec.off_image += 1;
            continue;
        }
        let mut px_per_degree = None;
        if let Some((cx, cy)) = ppd {
            match (
                table.number(*line, fields, cx),
                table.number(*line, fields, cy),
            ) {
                (Ok(a), Ok(b)) if a > 0.0 && b > 0.0 => px_per_degree = Some([a as f32, b as f32]),
                (Ok(_), Ok(_)) => out.problems.push(table.problem(
                    *line,
                    "angular_resolution_x_pixels_per_degree",
                    "must be positive",
                )),
                (Err(p), _) | (_, Err(p)) => out.problems.push(p),
            }
        }
        let shown = shown_cols.as_ref().and_then(|cols| {
            let vals: Option<Vec<f64>> = cols
                .iter()
                .map(|&c| table.number(*line, fields, c).ok())
                .collect();
            vals.map(|v| PixelRect {
                xmin: v[0] as f32,
                ymin: v[1] as f32,
                xmax: v[2] as f32,
                ymax: v[3] as f32,
            })
        });
        rec.fixations.push(Fixation {
            x: x as f32,
            y: y as f32,
            start_s: s,
            duration_s: e - s,
            px_per_degree,
            shown,
        });
    }
    out.recordings.push(rec);
    out
}
