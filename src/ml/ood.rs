//! Out-of-distribution gate: how far an image is from what a model was trained on.
//!
//! Each model bundle may carry a [`FeatureGate`] (`ood.json` + `ood-stats.bin`): the mean and the
//! Ledoit–Wolf-shrunk covariance of the model's globally pooled features over its training images
//! (Lee et al. 2018, "A simple unified framework for detecting out-of-distribution samples"), and a
//! threshold on the Mahalanobis distance at a high percentile of held-out in-distribution images.
//! [`anatomy_check`] (`ml::ood::anatomy`) adds what the lung mask says: a frontal chest radiograph shows two lungs, one
//! on each side, of plausible size and height. `verdict` combines both into what the viewer and the
//! CLI say before any result.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::MlError;
use crate::io::write::write_atomically;

mod anatomy;

pub use anatomy::{AnatomyCheck, anatomy_check};

/// Summary of a gate (`ood.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateInfo {
    /// What the features are, e.g. "pooled conv_head activations (1280)".
    pub features: String,
    pub dimensions: usize,
    /// Images the mean and covariance were fitted on.
    pub fitted_on: usize,
    /// Ledoit–Wolf shrinkage intensity (0 = sample covariance, 1 = scaled identity).
    pub shrinkage: f64,
    /// Mahalanobis distance above which an image is out of distribution.
    pub threshold: f64,
    /// The percentile of held-out in-distribution distances the threshold sits at.
    pub percentile: f64,
    /// Held-out in-distribution images the threshold was taken from.
    pub calibrated_on: usize,
    /// The training domain in words, for the warning ("paediatric chest radiographs, age 1–5").
    pub domain: String,
    /// Measured rates (filled by `cxrlens ood fit`): name → value, e.g. "test_pass_rate",
    /// "auroc_vs_dicom_zoo".
    #[serde(default)]
    pub measured: std::collections::BTreeMap<String, f64>,
}

/// A fitted Mahalanobis gate.
#[derive(Clone, Debug)]
pub struct FeatureGate {
    pub info: GateInfo,
    mean: Vec<f64>,
    /// Inverse of the shrunk covariance, row-major `d × d`.
    precision: Vec<f64>,
}

/// Ledoit–Wolf shrinkage intensity for centred data `x` (`n × d`, row-major), as in
/// scikit-learn's `ledoit_wolf_shrinkage` (the estimator of Ledoit & Wolf 2004).
pub fn ledoit_wolf_shrinkage(x: &[f64], n: usize, d: usize) -> f64 {
    if n == 0 || d == 0 {
        return 1.0;
    }
    let col = |k: usize, j: usize| x[k * d + j];
    let emp_trace: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|k| col(k, j).powi(2)).sum::<f64>() / n as f64)
        .collect();
    let mu = emp_trace.iter().sum::<f64>() / d as f64;
    // beta_ = Σ_ij (X²ᵀ X²)_ij, delta_ = Σ_ij ((XᵀX)_ij)² / n².
    let mut beta_ = 0.0;
    let mut delta_ = 0.0;
    for i in 0..d {
        for j in 0..d {
            let (mut sq, mut xx) = (0.0, 0.0);
            for k in 0..n {
                let (a, b) = (col(k, i), col(k, j));
                sq += a * a * b * b;
                xx += a * b;
            }
            beta_ += sq;
            delta_ += xx * xx;
        }
    }
    delta_ /= (n * n) as f64;
    let beta = (beta_ / n as f64 - delta_) / (d * n) as f64;
    let delta = (delta_ - 2.0 * mu * emp_trace.iter().sum::<f64>() + d as f64 * mu * mu) / d as f64;
    let beta = beta.min(delta);
    if beta == 0.0 { 0.0 } else { beta / delta }
}

impl FeatureGate {
    /// Fit the mean and shrunk covariance on `features` (one row per training image, all of
    /// length `d`), then set the threshold at `percentile` of the distances of `held_out`
    /// in-distribution rows.
    pub fn fit(
        features: &[Vec<f32>],
        held_out: &[Vec<f32>],
        percentile: f64,
        describe: &str,
        domain: &str,
    ) -> Result<Self, MlError> {
        let n = features.len();
        let d = features.first().map_or(0, Vec::len);
        if n < 2 || d == 0 || features.iter().any(|f| f.len() != d) {
            return Err(MlError::Data(format!(
                "need at least two feature rows of one length to fit the gate (got {n})"
            )));
        }
        let mut mean = vec![0.0f64; d];
        for f in features {
            for (m, &v) in mean.iter_mut().zip(f) {
                *m += v as f64 / n as f64;
            }
        }
        let centred: Vec<f64> = features
            .iter()
            .flat_map(|f| f.iter().zip(&mean).map(|(&v, m)| v as f64 - m))
            .collect();
        let shrinkage = ledoit_wolf_shrinkage(&centred, n, d);
        let mut cov = nalgebra::DMatrix::<f64>::zeros(d, d);
        for k in 0..n {
            let row = nalgebra::DVector::from_column_slice(&centred[k * d..(k + 1) * d]);
            cov.ger(1.0 / n as f64, &row, &row, 1.0);
        }
        let mu = cov.trace() / d as f64;
        let shrunk = cov * (1.0 - shrinkage) + nalgebra::DMatrix::identity(d, d) * (shrinkage * mu);
        let precision = shrunk
            .cholesky()
            .ok_or_else(|| MlError::Data("shrunk covariance is not positive definite".into()))?
            .inverse();
        let mut gate = Self {
            info: GateInfo {
                features: describe.into(),
                dimensions: d,
                fitted_on: n,
                shrinkage,
                threshold: f64::INFINITY,
                percentile,
                calibrated_on: held_out.len(),
                domain: domain.into(),
                measured: Default::default(),
            },
            mean,
            // nalgebra stores column-major; the precision matrix is symmetric.
            precision: precision.as_slice().to_vec(),
        };
        let mut distances: Vec<f64> = held_out.iter().map(|f| gate.distance(f)).collect();
        distances.sort_by(f64::total_cmp);
        gate.info.threshold = percentile_of_sorted(&distances, percentile).unwrap_or(f64::INFINITY);
        Ok(gate)
    }

    /// Mahalanobis distance √((x − μ)ᵀ Σ⁻¹ (x − μ)); infinite for a vector of the wrong length or
    /// with non-finite values.
    pub fn distance(&self, x: &[f32]) -> f64 {
        let d = self.mean.len();
        if x.len() != d || x.iter().any(|v| !v.is_finite()) {
            return f64::INFINITY;
        }
        let c: Vec<f64> = x
            .iter()
            .zip(&self.mean)
            .map(|(&v, m)| v as f64 - m)
            .collect();
        let mut sum = 0.0;
        for i in 0..d {
            let row = &self.precision[i * d..(i + 1) * d];
            sum += c[i] * row.iter().zip(&c).map(|(p, v)| p * v).sum::<f64>();
        }
        sum.max(0.0).sqrt()
    }

    pub fn passes(&self, x: &[f32]) -> bool {
        self.distance(x) <= self.info.threshold
    }

    /// Write `ood.json` and `ood-stats.bin` (little-endian f32: mean, then precision) into a
    /// bundle folder, atomically. (f32 halves the file; the distance is summed in f64.)
    pub fn save(&self, dir: &Path) -> Result<(), MlError> {
        let json =
            serde_json::to_string_pretty(&self.info).map_err(|e| MlError::Config(e.to_string()))?;
        let mut bytes = Vec::with_capacity(4 * (self.mean.len() + self.precision.len()));
        for &v in self.mean.iter().chain(&self.precision) {
            bytes.extend_from_slice(&(v as f32).to_le_bytes());
        }
        write_atomically(&dir.join(STATS), &bytes)?;
        write_atomically(&dir.join(INFO), json.as_bytes())?;
        Ok(())
    }

    /// Read a bundle's gate; `Ok(None)` when it has none.
    pub fn load(dir: &Path) -> Result<Option<Self>, MlError> {
        let info_path = dir.join(INFO);
        let text = match std::fs::read(&info_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let bad = |message: String, path: &Path| MlError::ModelFile {
            message,
            path: path.to_path_buf(),
        };
        let info: GateInfo = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("invalid JSON: {e}"), &info_path))?;
        let d = info.dimensions;
        // The size is checked before the file is read into memory.
        let expected = d
            .checked_mul(d)
            .and_then(|dd| dd.checked_add(d))
            .and_then(|n| n.checked_mul(4))
            .filter(|&n| d > 0 && d <= 16_384 && n <= 1 << 31)
            .ok_or_else(|| bad(format!("{d} dimensions is out of range"), &info_path))?;
        let stats_path = dir.join(STATS);
        let len = std::fs::metadata(&stats_path)?.len();
        if len != expected as u64 {
            return Err(bad(
                format!("{len} bytes, expected {expected} for {d} dimensions"),
                &stats_path,
            ));
        }
        let bytes = std::fs::read(&stats_path)?;
        let values: Vec<f64> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64)
            .collect();
        if values.iter().any(|v| !v.is_finite()) || info.threshold.is_nan() || info.threshold <= 0.0
        {
            return Err(bad(
                "non-finite statistics or threshold".into(),
                &stats_path,
            ));
        }
        Ok(Some(Self {
            info,
            mean: values[..d].to_vec(),
            precision: values[d..].to_vec(),
        }))
    }
}

impl FeatureGate {
    /// A gate that refuses every image: what an unreadable gate file becomes, so that a broken
    /// bundle never passes images silently.
    pub fn refusing_all() -> Self {
        Self {
            info: GateInfo {
                features: "unreadable gate".into(),
                dimensions: 0,
                fitted_on: 0,
                shrinkage: 1.0,
                threshold: -1.0,
                percentile: 0.0,
                calibrated_on: 0,
                domain: "unknown (the gate file could not be read)".into(),
                measured: Default::default(),
            },
            mean: Vec::new(),
            precision: Vec::new(),
        }
    }
}

/// One model's gate applied to one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub model: String,
    pub distance: f64,
    pub threshold: f64,
    pub passed: bool,
    /// The model's training domain, in words.
    pub domain: String,
}

impl GateResult {
    pub fn of(gate: &FeatureGate, model: &str, features: &[f32]) -> Self {
        let distance = gate.distance(features);
        Self {
            model: model.into(),
            distance,
            threshold: gate.info.threshold,
            passed: distance <= gate.info.threshold,
            domain: gate.info.domain.clone(),
        }
    }
}

/// What the gates say about an image, before any result is shown.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// Every loaded model's gate passed (or no model has one) and the anatomy is plausible.
    #[default]
    InDistribution,
    /// A chest radiograph, but outside the training data of these models (their results hidden).
    OutsideTrainingData { models: Vec<String> },
    /// Not a frontal chest radiograph: every result hidden.
    NotChestRadiograph,
}

/// The gates of one analysis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OodReport {
    pub lung: Option<GateResult>,
    pub classifier: Option<GateResult>,
    pub anatomy: Option<AnatomyCheck>,
    pub verdict: Verdict,
}

impl OodReport {
    /// Combine the gates: the image is a chest radiograph when the lung mask is anatomically
    /// plausible and at least one model recognises it as like its training images (when no
    /// model has a gate, the anatomy alone decides); then every model whose gate failed is
    /// outside its training data.
    pub fn decide(
        lung: Option<GateResult>,
        classifier: Option<GateResult>,
        anatomy: Option<AnatomyCheck>,
    ) -> Self {
        let gates: Vec<&GateResult> = lung.iter().chain(classifier.iter()).collect();
        let recognised = gates.is_empty() || gates.iter().any(|g| g.passed);
        let plausible = anatomy.as_ref().is_none_or(AnatomyCheck::passed);
        let verdict = if !(recognised && plausible) {
            Verdict::NotChestRadiograph
        } else {
            let outside: Vec<String> = gates
                .iter()
                .filter(|g| !g.passed)
                .map(|g| g.model.clone())
                .collect();
            if outside.is_empty() {
                Verdict::InDistribution
            } else {
                Verdict::OutsideTrainingData { models: outside }
            }
        };
        Self {
            lung,
            classifier,
            anatomy,
            verdict,
        }
    }

    /// Whether `model`'s results may be shown without the user asking.
    pub fn shows(&self, model: &str) -> bool {
        match &self.verdict {
            Verdict::InDistribution => true,
            Verdict::NotChestRadiograph => false,
            Verdict::OutsideTrainingData { models } => !models.iter().any(|m| m == model),
        }
    }

    /// The warning's title, if any: "Not a frontal chest radiograph" or "Outside the training
    /// data".
    pub fn title(&self) -> Option<&'static str> {
        match &self.verdict {
            Verdict::InDistribution => None,
            Verdict::NotChestRadiograph => Some("Not a frontal chest radiograph"),
            Verdict::OutsideTrainingData { .. } => Some("Outside the training data"),
        }
    }

    /// What the gates found, in words (the warning's body).
    pub fn details(&self) -> Option<String> {
        let gates = || self.lung.iter().chain(self.classifier.iter());
        match &self.verdict {
            Verdict::InDistribution => None,
            Verdict::NotChestRadiograph => {
                let mut reasons = Vec::new();
                if let Some(a) = &self.anatomy {
                    reasons.extend(a.problems.iter().cloned());
                }
                for g in gates().filter(|g| !g.passed) {
                    reasons.push(format!(
                        "unlike the training images of {} (distance {:.0}, limit {:.0})",
                        g.model, g.distance, g.threshold
                    ));
                }
                Some(format!("{}. Every result is hidden.", reasons.join("; ")))
            }
            Verdict::OutsideTrainingData { models } => {
                let mut parts: Vec<String> = gates()
                    .filter(|g| models.contains(&g.model))
                    .map(|g| {
                        format!(
                            "unlike the images {} was trained on ({}; distance {:.0}, limit {:.0}): its results are hidden",
                            g.model, g.domain, g.distance, g.threshold
                        )
                    })
                    .collect();
                parts.extend(gates().filter(|g| g.passed).map(|g| {
                    format!(
                        "within the training data of {} ({}): its results are shown",
                        g.model, g.domain
                    )
                }));
                let text = parts.join("; ");
                let mut chars = text.chars();
                let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
                Some(format!("{}{}.", first.unwrap_or_default(), chars.as_str()))
            }
        }
    }

    /// Title and details in one line (CLI output), if the image is flagged.
    pub fn message(&self) -> Option<String> {
        Some(format!("{}: {}", self.title()?, self.details()?))
    }
}

const INFO: &str = "ood.json";
const STATS: &str = "ood-stats.bin";

/// The `p`-th percentile (0–100) of sorted values, by linear interpolation (numpy's default).
pub fn percentile_of_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = (p / 100.0).clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mahalanobis_of_a_diagonal_gaussian_by_hand() {
        // Features on two axes with variances 4 and 1 (no shrinkage needed for the check below:
        // compare with the distance the fitted precision gives, then with the hand value when the
        // shrinkage is removed by construction of symmetric data).
        let rows: Vec<Vec<f32>> = vec![
            vec![2.0, 1.0],
            vec![-2.0, 1.0],
            vec![2.0, -1.0],
            vec![-2.0, -1.0],
        ];
        let gate = FeatureGate::fit(&rows, &rows, 99.0, "test", "test").unwrap();
        // Sample covariance diag(4, 1), mean 0, trace/d = 2.5; Ledoit–Wolf on this data gives
        // shrinkage s, so Σ = diag(4(1−s) + 2.5s, (1−s) + 2.5s).
        let s = gate.info.shrinkage;
        let (v1, v2) = (4.0 * (1.0 - s) + 2.5 * s, (1.0 - s) + 2.5 * s);
        let expected = (9.0 / v1 + 4.0 / v2).sqrt();
        assert!((gate.distance(&[3.0, 2.0]) - expected).abs() < 1e-9);
        assert!((0.0..=1.0).contains(&s));
        assert!(gate.distance(&[1.0]).is_infinite());
        assert!(gate.distance(&[f32::NAN, 0.0]).is_infinite());
    }

    /// scikit-learn's LedoitWolf on the same rows (tests/fixtures/ledoit_wolf_reference.json, from
    /// scripts/reference/ledoit_wolf.py): the shrinkage and the Mahalanobis distances agree.
    #[test]
    fn shrinkage_and_distances_match_scikit_learn() {
        #[derive(Deserialize)]
        struct Fixture {
            n: usize,
            d: usize,
            shrinkage: f64,
            queries: Vec<Vec<f32>>,
            distances: Vec<f64>,
        }
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ledoit_wolf_reference.json");
        let f: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let rows: Vec<Vec<f32>> = (0..f.n)
            .map(|i| {
                let mut r: Vec<f64> = (0..f.d)
                    .map(|j| ((7 * i + 3 * j * j + i * j) % 17) as f64 / 4.0 - 2.0)
                    .collect();
                r[f.d - 1] = 0.5 * r[0] + 0.25 * r[1];
                r.into_iter().map(|v| v as f32).collect()
            })
            .collect();
        let gate = FeatureGate::fit(&rows, &rows, 99.0, "t", "t").unwrap();
        assert!(
            (gate.info.shrinkage - f.shrinkage).abs() < 1e-9,
            "{} vs {}",
            gate.info.shrinkage,
            f.shrinkage
        );
        for (q, &expected) in f.queries.iter().zip(&f.distances) {
            let d = gate.distance(q);
            assert!(
                (d - expected).abs() < 1e-7 * expected.max(1.0),
                "{d} vs {expected}"
            );
        }
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], 90) = 3.7
        assert!((percentile_of_sorted(&[1.0, 2.0, 3.0, 4.0], 90.0).unwrap() - 3.7).abs() < 1e-12);
        assert_eq!(percentile_of_sorted(&[], 50.0), None);
    }

    #[test]
    fn gate_round_trips_and_refuses_a_truncated_file() {
        let rows: Vec<Vec<f32>> = (0..20)
            .map(|i| vec![i as f32, (i * i % 7) as f32, (i % 3) as f32])
            .collect();
        let gate = FeatureGate::fit(&rows[..15], &rows[15..], 95.0, "f", "d").unwrap();
        let dir = tempfile::tempdir().unwrap();
        gate.save(dir.path()).unwrap();
        let back = FeatureGate::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.info, gate.info);
        let (a, b) = (
            back.distance(&[1.0, 2.0, 3.0]),
            gate.distance(&[1.0, 2.0, 3.0]),
        );
        assert!((a - b).abs() < 1e-4 * b, "{a} vs {b}");
        let stats = dir.path().join(STATS);
        let bytes = std::fs::read(&stats).unwrap();
        std::fs::write(&stats, &bytes[..bytes.len() - 4]).unwrap();
        assert!(FeatureGate::load(dir.path()).is_err());
        assert!(
            FeatureGate::load(&dir.path().join("none"))
                .unwrap()
                .is_none()
        );
    }

    fn ellipse_mask(w: usize, h: usize, centres: &[(f64, f64)], rx: f64, ry: f64) -> Vec<f32> {
        let mut m = vec![0.0; w * h];
        for y in 0..h {
            for x in 0..w {
                for &(cx, cy) in centres {
                    let dx = (x as f64 - cx * w as f64) / (rx * w as f64);
                    let dy = (y as f64 - cy * h as f64) / (ry * h as f64);
                    if dx * dx + dy * dy <= 1.0 {
                        m[y * w + x] = 1.0;
                    }
                }
            }
        }
        m
    }

    #[test]
    fn anatomy_of_two_lungs_passes_and_of_one_blob_fails() {
        let (w, h) = (64, 64);
        let lungs = ellipse_mask(w, h, &[(0.3, 0.45), (0.7, 0.45)], 0.12, 0.3);
        let check = anatomy_check(&lungs, w, h);
        assert!(check.passed(), "{:?}", check.problems);
        assert_eq!(check.regions, 2);
        let blob = ellipse_mask(w, h, &[(0.5, 0.5)], 0.3, 0.3);
        assert!(!anatomy_check(&blob, w, h).passed());
        let same_side = ellipse_mask(w, h, &[(0.2, 0.3), (0.35, 0.7)], 0.08, 0.15);
        let c = anatomy_check(&same_side, w, h);
        assert!(
            c.problems.iter().any(|p| p.contains("one side")),
            "{:?}",
            c.problems
        );
        assert!(!anatomy_check(&vec![0.0; w * h], w, h).passed());
    }
}
