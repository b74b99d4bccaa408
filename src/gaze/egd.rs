//! EGD-CXR (Karargyris et al. 2021): `fixations.csv` / `eye_gaze.csv` (same columns) and
//! `master_sheet.csv`. See `../shared/data/gaze-formats/EYE_GAZE_FORMATS.md` §A.
//!
//! Image coordinates come from `X_ORIGINAL`/`Y_ORIGINAL` when the file has them (−1 = gaze off the
//! image); otherwise `FPOGX`/`FPOGY` (fractions of the 1920×1080 screen) are mapped with the image
//! pads of the master sheet, exactly as `map_eye_gaze_from_screen_to_image_coordinates.py` does.
//! DICOM_IDs absent from the master sheet are calibration images and are skipped.

use std::collections::HashMap;
use std::path::Path;

use super::{CsvTable, Fixation, GazeFormat, GazeImport, GazeProblem, GazeRecording, ImageKey};

/// The screen the images were shown on.
pub const SCREEN_WIDTH: f64 = 1920.0;
pub const SCREEN_HEIGHT: f64 = 1080.0;

/// Black bars around the image on screen, in screen pixels (master sheet `image_*_pad`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pads {
    pub top: f64,
    pub bottom: f64,
    pub left: f64,
    pub right: f64,
}

/// dicom_id → pads, from `master_sheet.csv`.
pub fn read_master_sheet(path: &Path, problems: &mut Vec<GazeProblem>) -> HashMap<String, Pads> {
    let mut out = HashMap::new();
    let Some(table) = CsvTable::read(path, problems) else {
        return out;
    };
    let Some(id) = table.require("dicom_id", problems) else {
        return out;
    };
    let cols: Vec<Option<usize>> = [
        "image_top_pad",
        "image_bottom_pad",
        "image_left_pad",
        "image_right_pad",
    ]
    .iter()
    .map(|c| table.require(c, problems))
    .collect();
    if cols.iter().any(Option::is_none) {
        return out;
    }
    let cols: Vec<usize> = cols.into_iter().flatten().collect();
    for (line, fields) in &table.rows {
        let key = fields
            .get(id)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if key.is_empty() {
            problems.push(table.problem(*line, "dicom_id", "empty dicom_id"));
            continue;
        }
        let mut v = [0.0; 4];
        let mut ok = true;
        for (k, &c) in cols.iter().enumerate() {
            match table.number(*line, fields, c) {
                Ok(n) => v[k] = n,
                Err(p) => {
                    problems.push(p);
                    ok = false;
                }
            }
        }
        if ok {
            out.insert(
                key,
                Pads {
                    top: v[0],
                    bottom: v[1],
                    left: v[2],
                    right: v[3],
                },
            );
        }
    }
    out
}

/// Screen fractions → original image pixels (A.3), or `None` when the gaze is off the image.
/// Truncates like the published script's `int(...)`.
pub fn screen_to_image(
    fpogx: f64,
    fpogy: f64,
    pads: Pads,
    width: u32,
    height: u32,
) -> Option<(f32, f32)> {
    let (ex, ey) = (fpogx * SCREEN_WIDTH, fpogy * SCREEN_HEIGHT);
    let inside = pads.left < ex
        && ex < SCREEN_WIDTH - pads.right
        && pads.top < ey
        && ey < SCREEN_HEIGHT - pads.bottom;
    if !inside {
        return None;
    }
    let x = (width as f64 / (SCREEN_WIDTH - pads.left - pads.right) * (ex - pads.left)).trunc();
    let y = (height as f64 / (SCREEN_HEIGHT - pads.top - pads.bottom) * (ey - pads.top)).trunc();
    Some((x as f32, y as f32))
}

/// Reads an EGD-CXR fixation (or raw gaze) file and keeps the rows of the given images.
pub fn import(fixations: &Path, master_sheet: Option<&Path>, images: &[ImageKey]) -> GazeImport {
    let mut out = GazeImport::default();
    let master = master_sheet.map(|p| read_master_sheet(p, &mut out.problems));
    let Some(table) = CsvTable::read(fixations, &mut out.problems) else {
        return out;
    };
    let Some(id_col) = table.require("DICOM_ID", &mut out.problems) else {
        return out;
    };
    let original = table.column("X_ORIGINAL").zip(table.column("Y_ORIGINAL"));
    let screen = table.column("FPOGX").zip(table.column("FPOGY"));
    if original.is_none() && screen.is_none() {
        out.problems.push(GazeProblem {
            file: fixations.to_path_buf(),
            line: Some(1),
            column: Some("X_ORIGINAL/Y_ORIGINAL or FPOGX/FPOGY".into()),
            message: "no gaze coordinate columns".into(),
        });
        return out;
    }
    if original.is_none() && master.is_none() {
        out.problems.push(GazeProblem {
            file: fixations.to_path_buf(),
            line: Some(1),
            column: Some("X_ORIGINAL".into()),
            message: "the file has only screen coordinates (FPOGX/FPOGY); give master_sheet.csv \
                      so they can be mapped with the image pads"
                .into(),
        });
        return out;
    }
    let start_col = table
        .column("FPOGS")
        .or_else(|| table.column("Time (in secs)"));
    let duration_col = table.column("FPOGD");

    // image index → recording, in order of first appearance
    let mut by_image: Vec<(usize, GazeRecording)> = Vec::new();
    // unmatched id → (first line, rows)
    let mut unmatched: Vec<(String, u64, usize)> = Vec::new();
    let mut beyond_reported = vec![false; images.len()];
    for (line, fields) in &table.rows {
        let line = *line;
        let id = fields.get(id_col).map(|s| s.trim()).unwrap_or("");
        if id.is_empty() {
            out.problems
                .push(table.problem(line, "DICOM_ID", "empty DICOM_ID"));
            continue;
        }
        let pads = match &master {
            Some(m) => match m.get(id) {
                Some(p) => Some(*p),
                None => {
                    out.calibration_rows += 1;
                    continue;
                }
            },
            None => None,
        };
        let Some(image) = images.iter().position(|k| k.matches(id)) else {
            match unmatched.iter_mut().find(|u| u.0 == id) {
                Some(u) => u.2 += 1,
                None => unmatched.push((id.to_string(), line, 1)),
            }
            continue;
        };
        let key = &images[image];
        let slot = match by_image.iter().position(|(i, _)| *i == image) {
            Some(s) => s,
            None => {
                by_image.push((
                    image,
                    GazeRecording {
                        format: GazeFormat::EgdCxr,
                        image_id: id.to_string(),
                        file: fixations.to_path_buf(),
                        fixations: Vec::new(),
                        off_image: 0,
                        simulated: false,
                    },
                ));
                by_image.len() - 1
            }
        };
        let number = |c: usize, problems: &mut Vec<GazeProblem>| match table.number(line, fields, c)
        {
            Ok(v) => Some(v),
            Err(p) => {
                problems.push(p);
                None
            }
        };
        let position = if let Some((xc, yc)) = original {
            let (Some(x), Some(y)) = (number(xc, &mut out.problems), number(yc, &mut out.problems))
            else {
                continue;
            };
            (x >= 0.0 && y >= 0.0).then_some((x as f32, y as f32))
        } else {
            let (xc, yc) = screen.expect("checked above");
            let (Some(fx), Some(fy)) =
                (number(xc, &mut out.problems), number(yc, &mut out.problems))
            else {
                continue;
            };
            screen_to_image(fx, fy, pads.unwrap_or_default(), key.width, key.height)
        };
        let rec = &mut by_image[slot].1;
        let Some((x, y)) = position else {
            rec.off_image += 1;
            continue;
        };
        if x >= key.width as f32 || y >= key.height as f32 {
            rec.off_image += 1;
            if !beyond_reported[image] {
                beyond_reported[image] = true;
                out.problems.push(table.problem(
                    line,
                    if original.is_some() { "X_ORIGINAL" } else { "FPOGX" },
                    format!(
                        "({x}, {y}) lies outside the {}×{} image matched by DICOM_ID {id}; is it the right image?",
                        key.width, key.height
                    ),
                ));
            }
            continue;
        }
        let start_s = start_col
            .and_then(|c| number(c, &mut out.problems))
            .unwrap_or(0.0);
        let duration_s = duration_col
            .and_then(|c| number(c, &mut out.problems))
            .unwrap_or(0.0)
            .max(0.0);
        rec.fixations.push(Fixation {
            x,
            y,
            start_s,
            duration_s,
            px_per_degree: None,
            shown: None,
        });
    }
    for (id, line, rows) in unmatched {
        out.problems.push(GazeProblem {
            file: fixations.to_path_buf(),
            line: Some(line),
            column: Some("DICOM_ID".into()),
            message: format!(
                "{id} ({rows} row{}) matches no open image{}",
                if rows == 1 { "" } else { "s" },
                if master.is_none() {
                    " (without master_sheet.csv, calibration rows cannot be told apart)"
                } else {
                    ""
                }
            ),
        });
    }
    let simulated = super::synthetic::is_simulated(fixations);
    out.recordings = by_image
        .into_iter()
        .map(|(_, mut r)| {
            r.simulated = simulated;
            r
        })
        .collect();
    out
}
