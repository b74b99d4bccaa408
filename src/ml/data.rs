//! Local training datasets: a folder with `labels.csv` (id, image, label, optional mask,
//! patient_id, …), `images/` and optional `masks/` (PNG: 0 background, 255 lung, 127 ignore).
//!
//! Problems with single rows (missing file, unreadable image, size mismatch, unknown label,
//! duplicate id) are collected and reported; the rest still loads. Splits are by patient.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::error::MlError;
use super::metrics::SplitMix64;
use super::preprocess::{ModelInput, model_input};
use crate::imaging::resample::resize_area;

pub use crate::dataset::{Record, RowProblem};

/// Read `labels.csv` under `root` (`crate::dataset::read_labels`).
pub fn read_labels(root: &Path) -> Result<(Vec<Record>, Vec<RowProblem>), MlError> {
    crate::dataset::read_labels(root).map_err(MlError::Dataset)
}

/// Patient-wise split: patients are shuffled with `seed` and about `validation_fraction` of them
/// (and all their images) go to validation. Returns (train, validation) indices into `records`.
pub fn split_by_patient(
    records: &[Record],
    validation_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let split = split_by_patient3(records, validation_fraction, 0.0, seed);
    (split.train, split.validation)
}

/// Image indices of a three-way split by patient.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    /// Held out from training, early stopping, calibration and the choice of operating point.
    pub test: Vec<usize>,
}

/// Split by patient into train / validation / test. Patients are shuffled with `seed`; the first
/// `validation_fraction` of them are validation and the next `test_fraction` test, so the
/// validation patients are those of [`split_by_patient`] with the same seed and fraction.
pub fn split_by_patient3(
    records: &[Record],
    validation_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> Split {
    let mut patients: Vec<&str> = records
        .iter()
        .map(|r| r.patient_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    SplitMix64::new(seed).shuffle(&mut patients);
    let count = |f: f64| ((patients.len() as f64) * f.clamp(0.0, 1.0)).round() as usize;
    let n_val = count(validation_fraction);
    let n_test = count(test_fraction).min(patients.len().saturating_sub(n_val));
    let validation: BTreeSet<&str> = patients.iter().take(n_val).copied().collect();
    let test: BTreeSet<&str> = patients.iter().skip(n_val).take(n_test).copied().collect();
    let mut split = Split::default();
    for (i, r) in records.iter().enumerate() {
        let p = r.patient_id.as_str();
        if validation.contains(p) {
            split.validation.push(i)
        } else if test.contains(p) {
            split.test.push(i)
        } else {
            split.train.push(i)
        }
    }
    split
}

/// A lung mask on the model grid: target (lung fraction ≥ ½) and weight (0 where mostly "ignore").
#[derive(Clone, Debug)]
pub struct MaskOnGrid {
    pub target: Vec<f32>,
    pub weight: Vec<f32>,
}

/// A sample ready for training: model input, optional mask, class index.
#[derive(Clone, Debug)]
pub struct PreparedSample {
    pub id: String,
    pub input: ModelInput,
    pub mask: Option<MaskOnGrid>,
    pub class: usize,
}

/// Load a mask PNG (0 background, 255 lung, 127 ignore) onto the `size × size` grid; it must have
/// the image's size.
pub fn mask_on_grid(
    path: &Path,
    image_size: (u32, u32),
    size: usize,
) -> Result<MaskOnGrid, MlError> {
    // Through the app's image reader: the header's size is checked before any pixel is decoded.
    let mask = crate::dataset::read_mask(path)
        .map_err(|e| MlError::Dataset(format!("cannot read mask: {e} ({})", path.display())))?;
    let (mw, mh) = (mask.width, mask.height);
    if (mw, mh) != image_size {
        return Err(MlError::Dataset(format!(
            "mask is {mw}×{mh} but the image is {}×{} ({})",
            image_size.0,
            image_size.1,
            path.display()
        )));
    }
    let (w, h) = (mw as usize, mh as usize);
    let indicator = |f: fn(u8) -> bool| -> Vec<f32> {
        mask.levels
            .iter()
            .map(|&l| if f(l) { 1.0 } else { 0.0 })
            .collect()
    };
    let lung = indicator(crate::dataset::MaskLevels::is_lung);
    let ignore = indicator(crate::dataset::MaskLevels::is_ignored);
    let lung = resize_area(&lung, w, h, size, size);
    let ignore = resize_area(&ignore, w, h, size, size);
    Ok(MaskOnGrid {
        target: lung
            .iter()
            .map(|&l| if l >= 0.5 { 1.0 } else { 0.0 })
            .collect(),
        weight: ignore
            .iter()
            .map(|&i| if i >= 0.5 { 0.0 } else { 1.0 })
            .collect(),
    })
}

/// Decode and prepare `records` for a model with input side `size`; rows that fail are reported.
pub fn prepare(
    records: &[Record],
    class_names: &[String],
    size: usize,
    with_masks: bool,
) -> (Vec<PreparedSample>, Vec<String>) {
    let class_index: BTreeMap<&str, usize> = class_names
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let results: Vec<Result<PreparedSample, String>> = {
        use rayon::prelude::*;
        records
            .par_iter()
            .map(|r| {
                let class = *class_index
                    .get(r.label.as_str())
                    .ok_or_else(|| format!("{}: unknown label {:?}", r.id, r.label))?;
                let loaded =
                    crate::io::load_image(&r.image).map_err(|e| format!("{}: {e}", r.id))?;
                let img = &loaded.image;
                let input = model_input(
                    img,
                    loaded.info.photometric_inverted,
                    loaded.stats.p01,
                    loaded.stats.p99,
                    size,
                );
                let mask = match (&r.mask, with_masks) {
                    (Some(m), true) => Some(
                        mask_on_grid(m, (img.width, img.height), size)
                            .map_err(|e| format!("{}: {e}", r.id))?,
                    ),
                    _ => None,
                };
                Ok(PreparedSample {
                    id: r.id.clone(),
                    input,
                    mask,
                    class,
                })
            })
            .collect()
    };
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    for r in results {
        match r {
            Ok(s) => samples.push(s),
            Err(e) => problems.push(e),
        }
    }
    (samples, problems)
}

/// What a headers-only scan of a dataset folder found.
#[derive(Clone, Debug, Default)]
pub struct DatasetScan {
    pub root: PathBuf,
    /// Rows whose image exists and whose header reads.
    pub images: usize,
    pub labels: BTreeMap<String, usize>,
    pub masks: usize,
    pub patients: usize,
    /// Gaze files (`gaze/**/*.csv`) found beside the images.
    pub gaze_files: usize,
    /// Every problem, one line each ("labels.csv line N: …"); the scan never stops at one.
    pub problems: Vec<String>,
}

/// Scans a dataset folder reading headers only: labels.csv rows, image and mask existence, image
/// and mask sizes (they must match), labels unknown to `known_labels` (the starting model's
/// classes), duplicate ids. Cancellable between rows.
pub fn scan_dataset(
    root: &Path,
    known_labels: Option<&[String]>,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<DatasetScan, MlError> {
    let (records, row_problems) = read_labels(root)?;
    let mut scan = DatasetScan {
        root: root.to_path_buf(),
        ..Default::default()
    };
    scan.problems = row_problems
        .iter()
        .map(|p| format!("labels.csv line {}: {}", p.line, p.message))
        .collect();
    let mut patients = BTreeSet::new();
    for r in &records {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(MlError::Cancelled);
        }
        let size = match crate::io::image_dimensions(&r.image) {
            Ok(s) => s,
            Err(e) => {
                scan.problems
                    .push(format!("{}: unreadable image header: {e}", r.id));
                continue;
            }
        };
        if let Some(m) = &r.mask {
            match crate::io::image_dimensions(m) {
                Ok(ms) if ms == size => scan.masks += 1,
                Ok(ms) => scan.problems.push(format!(
                    "{}: mask is {}×{} but the image is {}×{}",
                    r.id, ms.0, ms.1, size.0, size.1
                )),
                Err(e) => scan
                    .problems
                    .push(format!("{}: unreadable mask: {e}", r.id)),
            }
        }
        if let Some(known) = known_labels
            && !known.contains(&r.label)
        {
            scan.problems.push(format!(
                "{}: label {:?} is not one of the starting model's classes {known:?}",
                r.id, r.label
            ));
        }
        *scan.labels.entry(r.label.clone()).or_default() += 1;
        patients.insert(r.patient_id.clone());
        scan.images += 1;
    }
    scan.patients = patients.len();
    let gaze = root.join("gaze");
    if gaze.is_dir() {
        let mut stack = vec![gaze];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    scan.problems
                        .push(format!("{}: cannot be listed: {e}", dir.display()));
                    continue;
                }
            };
            for e in entries {
                let e = match e {
                    Ok(e) => e,
                    Err(e) => {
                        scan.problems
                            .push(format!("{}: an entry cannot be read: {e}", dir.display()));
                        continue;
                    }
                };
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")) {
                    scan.gaze_files += 1;
                }
            }
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG chunk: length, type, data, CRC-32 (IEEE) over type + data, computed bit by bit.
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        let mut crc = 0xFFFF_FFFFu32;
        for &b in &body {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&(!crc).to_be_bytes());
        out
    }

    /// A PNG declaring `side × side` 8-bit grey with an empty IDAT: a header, no pixels.
    fn png_header(side: u32) -> Vec<u8> {
        let mut ihdr = side.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&side.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        out.extend(chunk(b"IHDR", &ihdr));
        out.extend(chunk(b"IDAT", &[]));
        out.extend(chunk(b"IEND", &[]));
        out
    }

    #[test]
    fn a_mask_whose_header_is_too_large_is_refused_from_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mask.png");
        std::fs::write(&path, png_header(200_000)).unwrap();
        let err = mask_on_grid(&path, (200_000, 200_000), 64).err().unwrap();
        assert!(err.to_string().contains("too large"), "{err}");
    }
}
