//! Near-identical radiographs in a dataset: the same image listed twice (re-encoded, rescaled,
//! under another id and sometimes another patient id). A patient-wise split cannot keep such a
//! pair apart when the two copies carry different patient ids, so a "held-out" image may have been
//! trained on; and when both copies carry masks, their agreement is what two annotations of one
//! image agree on (`cxr-ieee8023` lists five radiographs twice, with masks drawn independently).
//!
//! The fingerprint is the image averaged onto a 32 × 32 grid (area average, MONOCHROME1 inverted),
//! standardised; two images are near-identical when the Pearson correlation of their fingerprints
//! is at least [`NEAR_IDENTICAL_R`]. On the bundled datasets copies of one radiograph reach
//! r ≥ 0.9999, while distinct radiographs stay below 0.99 (cxr-ieee8023: the highest distinct pair
//! 0.947) and 0.98 (kermany-pneumonia, 5,216 paediatric images very alike at 32²).

use rayon::prelude::*;

use super::data::Record;
use crate::imaging::resample::resize_area;

/// Side of the fingerprint grid.
pub const FINGERPRINT_SIDE: usize = 32;
/// Correlation from which two fingerprints are the same radiograph.
pub const NEAR_IDENTICAL_R: f64 = 0.995;

/// A standardised 32 × 32 thumbnail (mean 0, unit norm), or `None` for a flat image.
pub fn fingerprint(
    values: &[f32],
    width: usize,
    height: usize,
    inverted: bool,
) -> Option<Vec<f32>> {
    if width == 0 || height == 0 || values.len() < width * height {
        return None;
    }
    let mut v = resize_area(values, width, height, FINGERPRINT_SIDE, FINGERPRINT_SIDE);
    if inverted {
        v.iter_mut().for_each(|x| *x = -*x);
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let norm = v
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        .sqrt();
    if norm.is_nan() || norm <= 1e-9 * n {
        return None;
    }
    Some(
        v.iter()
            .map(|&x| ((x as f64 - mean) / norm) as f32)
            .collect(),
    )
}

/// Pearson correlation of two fingerprints.
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Fingerprints of `records[i]` for each `i` in `indices` (decoding each image); images that do
/// not decode or are flat get `None` and a line in the returned problems.
pub fn fingerprints(records: &[Record], indices: &[usize]) -> (Vec<Option<Vec<f32>>>, Vec<String>) {
    let results: Vec<Result<Option<Vec<f32>>, String>> = indices
        .par_iter()
        .map(|&i| {
            let r = &records[i];
            let loaded = crate::io::load_image(&r.image).map_err(|e| format!("{}: {e}", r.id))?;
            let img = &loaded.image;
            Ok(fingerprint(
                &img.values,
                img.width as usize,
                img.height as usize,
                loaded.info.photometric_inverted,
            ))
        })
        .collect();
    let mut problems = Vec::new();
    let prints = results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|e| {
                problems.push(e);
                None
            })
        })
        .collect();
    (prints, problems)
}

/// Two records that hold the same radiograph.
#[derive(Clone, Debug, PartialEq)]
pub struct NearIdentical {
    /// Indices into the records.
    pub a: usize,
    pub b: usize,
    pub r: f64,
}

/// Every pair of `records` (all of them) that is near-identical, `a < b`, sorted by index.
pub fn near_identical_pairs(records: &[Record]) -> (Vec<NearIdentical>, Vec<String>) {
    let all: Vec<usize> = (0..records.len()).collect();
    let (prints, problems) = fingerprints(records, &all);
    let pairs = (0..records.len())
        .into_par_iter()
        .flat_map_iter(|a| {
            let prints = &prints;
            (a + 1..records.len()).filter_map(move |b| {
                let (Some(pa), Some(pb)) = (&prints[a], &prints[b]) else {
                    return None;
                };
                let r = correlation(pa, pb);
                (r >= NEAR_IDENTICAL_R).then_some(NearIdentical { a, b, r })
            })
        })
        .collect();
    (pairs, problems)
}

/// For each of `held_out` (record indices), the records of `training` near-identical to it:
/// `(held-out index, training index, r)`. Only these pairs are compared (|held_out| × |training|).
pub fn leaks(
    records: &[Record],
    held_out: &[usize],
    training: &[usize],
) -> (Vec<NearIdentical>, Vec<String>) {
    let (held_prints, mut problems) = fingerprints(records, held_out);
    let (train_prints, more) = fingerprints(records, training);
    problems.extend(more);
    let found = held_out
        .par_iter()
        .zip(&held_prints)
        .flat_map_iter(|(&h, ph)| {
            let train_prints = &train_prints;
            training
                .iter()
                .zip(train_prints)
                .filter_map(move |(&t, pt)| {
                    let r = correlation(ph.as_ref()?, pt.as_ref()?);
                    (r >= NEAR_IDENTICAL_R).then_some(NearIdentical { a: h, b: t, r })
                })
        })
        .collect();
    (found, problems)
}

/// Dice between the human lung masks of two copies of one radiograph (pixels either marks
/// "ignore" left out); `None` unless both have a readable mask of the same size.
pub fn mask_agreement(a: &Record, b: &Record) -> Option<f64> {
    use crate::dataset::{MaskLevels, read_mask};
    let (ma, mb) = (
        read_mask(a.mask.as_ref()?).ok()?,
        read_mask(b.mask.as_ref()?).ok()?,
    );
    if (ma.width, ma.height) != (mb.width, mb.height) {
        return None;
    }
    let weight: Vec<f32> = ma
        .levels
        .iter()
        .zip(&mb.levels)
        .map(|(&x, &y)| {
            if MaskLevels::is_ignored(x) || MaskLevels::is_ignored(y) {
                0.0
            } else {
                1.0
            }
        })
        .collect();
    let lung = |m: &MaskLevels| {
        m.levels
            .iter()
            .map(|&l| MaskLevels::is_lung(l))
            .collect::<Vec<_>>()
    };
    Some(super::metrics::dice(&lung(&ma), &lung(&mb), &weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth test image with structure at several scales.
    fn scene(w: usize, h: usize, phase: f32) -> Vec<f32> {
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
                (6.0 * x + phase).sin() * 100.0 + (9.0 * y).cos() * 80.0 + 300.0 * x * y
            })
            .collect()
    }

    #[test]
    fn a_rescaled_copy_with_a_new_window_is_near_identical_and_another_image_is_not() {
        let a = scene(400, 300, 0.0);
        // The same picture at half the size (2 × 2 means) in other units, as a re-export gives.
        let half: Vec<f32> = (0..200 * 150)
            .map(|i| {
                let (x, y) = (i % 200, i / 200);
                let s = a[2 * y * 400 + 2 * x]
                    + a[2 * y * 400 + 2 * x + 1]
                    + a[(2 * y + 1) * 400 + 2 * x]
                    + a[(2 * y + 1) * 400 + 2 * x + 1];
                0.5 * s + 1000.0
            })
            .collect();
        let other = scene(400, 300, 1.5);
        let fa = fingerprint(&a, 400, 300, false).unwrap();
        let fh = fingerprint(&half, 200, 150, false).unwrap();
        let fo = fingerprint(&other, 400, 300, false).unwrap();
        assert!(
            correlation(&fa, &fh) >= NEAR_IDENTICAL_R,
            "{}",
            correlation(&fa, &fh)
        );
        assert!(
            correlation(&fa, &fo) < NEAR_IDENTICAL_R,
            "{}",
            correlation(&fa, &fo)
        );
        // Self-correlation is 1 (unit norm); an inverted copy flagged MONOCHROME1 matches too.
        assert!((correlation(&fa, &fa) - 1.0).abs() < 1e-5);
        let negated: Vec<f32> = a.iter().map(|v| 4095.0 - v).collect();
        let fn_ = fingerprint(&negated, 400, 300, true).unwrap();
        assert!(correlation(&fa, &fn_) > 0.9999);
        assert!(fingerprint(&vec![7.0; 100], 10, 10, false).is_none());
    }
}
