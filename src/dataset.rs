//! A local training dataset folder's `labels.csv` (id, image, label, optional mask, patient_id, …):
//! read by the trainer (`ml::data`) and by the gaze simulator (`gaze::synthetic`), so it lives
//! below both.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One row of `labels.csv`.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub image: PathBuf,
    pub mask: Option<PathBuf>,
    pub label: String,
    pub patient_id: String,
}

/// A problem with one row, reported without stopping the scan.
#[derive(Clone, Debug, PartialEq)]
pub struct RowProblem {
    /// 1-based line in `labels.csv` (the header is line 1).
    pub line: usize,
    pub message: String,
}

/// Read `labels.csv` under `root`. Rows missing required columns are reported, not fatal.
pub fn read_labels(root: &Path) -> Result<(Vec<Record>, Vec<RowProblem>), String> {
    let path = root.join("labels.csv");
    let mut reader = csv::Reader::from_path(&path)
        .map_err(|e| format!("cannot open labels.csv: {e} ({})", path.display()))?;
    let headers = reader
        .headers()
        .map_err(|e| format!("labels.csv header: {e}"))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(c_id), Some(c_image), Some(c_label)) =
        (column("id"), column("image"), column("label"))
    else {
        return Err("labels.csv needs the columns id, image and label".into());
    };
    let (c_mask, c_patient) = (column("mask"), column("patient_id"));
    let mut records = Vec::new();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, row) in reader.records().enumerate() {
        let line = index + 2;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                problems.push(RowProblem {
                    line,
                    message: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let field = |c: usize| row.get(c).map(str::trim).unwrap_or("");
        let id = field(c_id).to_string();
        if id.is_empty() || field(c_image).is_empty() || field(c_label).is_empty() {
            problems.push(RowProblem {
                line,
                message: "empty id, image or label".into(),
            });
            continue;
        }
        if !seen.insert(id.clone()) {
            problems.push(RowProblem {
                line,
                message: format!("duplicate id {id}"),
            });
            continue;
        }
        let image = root.join(field(c_image));
        if !image.is_file() {
            problems.push(RowProblem {
                line,
                message: format!("missing image file ({})", image.display()),
            });
            continue;
        }
        let mask = c_mask
            .map(field)
            .filter(|m| !m.is_empty())
            .map(|m| root.join(m));
        if let Some(m) = &mask
            && !m.is_file()
        {
            problems.push(RowProblem {
                line,
                message: format!("missing mask file ({})", m.display()),
            });
        }
        let patient_id = c_patient
            .map(field)
            .filter(|p| !p.is_empty())
            .unwrap_or(&id)
            .to_string();
        records.push(Record {
            id,
            image,
            mask: mask.filter(|m| m.is_file()),
            label: field(c_label).to_string(),
            patient_id,
        });
    }
    Ok((records, problems))
}

/// A lung mask file (0 background, 255 lung, 127 ignore) as 8-bit levels, one per pixel, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskLevels {
    pub width: u32,
    pub height: u32,
    pub levels: Vec<u8>,
}

impl MaskLevels {
    /// Lung: level ≥ 192.
    pub fn is_lung(level: u8) -> bool {
        level >= 192
    }

    /// Ignored by losses and Dice: 64 ≤ level < 192 (the datasets' 127).
    pub fn is_ignored(level: u8) -> bool {
        (64..192).contains(&level)
    }
}

/// Reads a mask through the app's image reader (the header's size is checked before any pixel is
/// decoded); a 16-bit file is put on the 8-bit scale (65535 → 255).
pub fn read_mask(path: &Path) -> Result<MaskLevels, String> {
    let loaded = crate::io::load_image(path).map_err(|e| e.to_string())?;
    let top = 2f32.powi(loaded.info.bits_stored.clamp(1, 16) as i32) - 1.0;
    let img = &loaded.image;
    Ok(MaskLevels {
        width: img.width,
        height: img.height,
        levels: img
            .values
            .iter()
            .map(|&v| (v / top * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect(),
    })
}
