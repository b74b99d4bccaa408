//! Fitting a bundle's out-of-distribution gate (`cxrlens ood fit`): pooled features of the
//! training split give the mean and shrunk covariance, the validation split the threshold, and
//! the test split (or validation, when there is none) the pass rate that the card reports, with
//! the flag rate and AUROC against folders of other images (e.g. `dicom-zoo`, adult radiographs
//! for a paediatric model).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;

use super::bundle::{BundleInfo, LoadedModel, load_bundle};
use super::classifier::Classifier;
use super::data::{read_labels, split_by_patient3};
use super::error::MlError;
use super::lung::LungNet;
use super::metrics::roc_auc;
use super::ood::FeatureGate;
use super::preprocess::{ModelInput, batch_tensor, model_input};
use super::tensor_to_vec;
use super::train::SplitSpec;

/// A loaded network reduced to what the gate reads.
pub enum GateNet {
    Lung(Box<LungNet>),
    Classifier(Box<Classifier>),
}

impl GateNet {
    pub fn load(info: &BundleInfo, device: &Device) -> Result<Self, MlError> {
        Ok(match load_bundle(info, device)? {
            LoadedModel::Lung(m, _) => Self::Lung(Box::new(m.valid())),
            LoadedModel::Classifier(m, _) => Self::Classifier(Box::new(m.valid())),
            LoadedModel::Saliency(..) => {
                return Err(MlError::Config(
                    "saliency networks have no out-of-distribution gate".into(),
                ));
            }
        })
    }

    /// What the gate measures, in words.
    pub fn describe(&self) -> String {
        match self {
            Self::Lung(m) => m.gate_features().into(),
            Self::Classifier(m) => m.gate_features().into(),
        }
    }

    /// Pooled features, one row per input.
    pub fn features(
        &self,
        inputs: &[&ModelInput],
        device: &Device,
    ) -> Result<Vec<Vec<f32>>, MlError> {
        let mut rows = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(16) {
            let x = batch_tensor(chunk, device);
            let pooled = match self {
                Self::Lung(m) => m.forward(x).gate,
                Self::Classifier(m) => m.features_and_gate(x).1,
            };
            let [_, d] = pooled.dims();
            let v = tensor_to_vec(pooled)?;
            rows.extend(v.chunks(d).map(<[f32]>::to_vec));
        }
        Ok(rows)
    }
}

/// Model inputs of image files (labels.csv rows or every file of a folder), with the files that
/// could not be decoded.
pub fn inputs_of_files(files: &[PathBuf], size: usize) -> (Vec<ModelInput>, Vec<String>) {
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        match crate::io::load_image(f) {
            Ok(loaded) => inputs.push(model_input(
                &loaded.image,
                loaded.info.photometric_inverted,
                loaded.stats.p01,
                loaded.stats.p99,
                size,
            )),
            Err(e) => problems.push(format!(
                "{}: {e}",
                f.file_name().unwrap_or_default().to_string_lossy()
            )),
        }
    }
    (inputs, problems)
}

/// Every regular file in `dir` (sorted), or the images of its `labels.csv` when it has one.
pub fn files_of_folder(dir: &Path) -> Result<Vec<PathBuf>, MlError> {
    if dir.join("labels.csv").is_file() {
        let (records, _) = read_labels(dir)?;
        return Ok(records.into_iter().map(|r| r.image).collect());
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_file()
            && !name.ends_with(".csv")
            && !name.ends_with(".md")
            && !name.starts_with('.')
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The outcome of a fit.
pub struct GateFit {
    pub gate: FeatureGate,
    pub report: String,
}

/// Fit `info`'s gate on its own patient split of `data_root`, threshold at `percentile` of the
/// validation distances, and measure it on the held-out split and on each of `others`.
pub fn fit_gate(
    info: &BundleInfo,
    data_root: &Path,
    percentile: f64,
    domain: &str,
    others: &[PathBuf],
    device: &Device,
) -> Result<GateFit, MlError> {
    let net = GateNet::load(info, device)?;
    let size = info.card.input_size;
    let spec = SplitSpec::of_bundle(info);
    let (records, _) = read_labels(data_root)?;
    let split = split_by_patient3(
        &records,
        spec.validation_fraction,
        spec.test_fraction,
        spec.seed,
    );
    let files =
        |idx: &[usize]| -> Vec<PathBuf> { idx.iter().map(|&i| records[i].image.clone()).collect() };
    let features_of = |idx: &[usize]| -> Result<(Vec<Vec<f32>>, Vec<String>), MlError> {
        let (inputs, problems) = inputs_of_files(&files(idx), size);
        let refs: Vec<&ModelInput> = inputs.iter().collect();
        Ok((net.features(&refs, device)?, problems))
    };
    let (train, _) = features_of(&split.train)?;
    let (validation, _) = features_of(&split.validation)?;
    let mut gate = FeatureGate::fit(&train, &validation, percentile, &net.describe(), domain)?;
    let distances_of =
        |rows: &[Vec<f32>]| -> Vec<f64> { rows.iter().map(|f| gate.distance(f)).collect() };
    let validation_distances = distances_of(&validation);
    let (held_name, held_distances, pass) = if split.test.is_empty() {
        // No test split: the threshold comes from validation, so its pass rate there says
        // nothing. Two-fold instead: threshold on one half of the validation patients, pass
        // rate on the other, both ways.
        let half: Vec<bool> = split
            .validation
            .iter()
            .map(|&i| patient_half(&records[i].patient_id))
            .collect();
        let mut passed = 0usize;
        for side in [false, true] {
            let mut calib: Vec<f64> = validation_distances
                .iter()
                .zip(&half)
                .filter(|(_, h)| **h == side)
                .map(|(d, _)| *d)
                .collect();
            calib.sort_by(f64::total_cmp);
            let t = super::ood::percentile_of_sorted(&calib, percentile).unwrap_or(f64::INFINITY);
            passed += validation_distances
                .iter()
                .zip(&half)
                .filter(|(d, h)| **h != side && **d <= t)
                .count();
        }
        let rate = passed as f64 / validation_distances.len().max(1) as f64;
        ("validation (two-fold)", validation_distances.clone(), rate)
    } else {
        let d = distances_of(&features_of(&split.test)?.0);
        let rate =
            d.iter().filter(|&&v| v <= gate.info.threshold).count() as f64 / d.len().max(1) as f64;
        ("test", d, rate)
    };
    let mut report = format!(
        "{}: fitted on {} training images ({} dimensions, Ledoit–Wolf shrinkage {:.3}); threshold {:.2} = {}th percentile of {} validation images\n{held_name} split: {:.1} % of {} in-distribution images pass\n",
        info.title(),
        gate.info.fitted_on,
        gate.info.dimensions,
        gate.info.shrinkage,
        gate.info.threshold,
        percentile,
        gate.info.calibrated_on,
        100.0 * pass,
        held_distances.len(),
    );
    let key = held_name.split(' ').next().unwrap_or(held_name);
    gate.info.measured.insert(format!("{key}_pass_rate"), pass);
    gate.info
        .measured
        .insert(format!("{key}_images"), held_distances.len() as f64);
    for other in others {
        let name = other
            .file_name()
            .map_or_else(|| "other".into(), |n| n.to_string_lossy().into_owned());
        let (inputs, problems) = inputs_of_files(&files_of_folder(other)?, size);
        let refs: Vec<&ModelInput> = inputs.iter().collect();
        let distances: Vec<f64> = net
            .features(&refs, device)?
            .iter()
            .map(|f| gate.distance(f))
            .collect();
        let flagged = distances
            .iter()
            .filter(|&&d| d > gate.info.threshold)
            .count();
        // AUROC of the distance separating the other images (positive) from the held-out ones.
        let scores: Vec<f64> = distances
            .iter()
            .chain(&held_distances)
            .map(|d| d.min(1e300))
            .collect();
        let positive: Vec<bool> = (0..scores.len()).map(|i| i < distances.len()).collect();
        let auroc = roc_auc(&scores, &positive);
        report += &format!(
            "{name}: {flagged} of {} decodable images flagged ({} not decodable){}\n",
            distances.len(),
            problems.len(),
            auroc.map_or(String::new(), |a| format!(
                "; AUROC vs the {held_name} split {a:.3}"
            ))
        );
        gate.info.measured.insert(
            format!("{name}_flag_rate"),
            flagged as f64 / distances.len().max(1) as f64,
        );
        if let Some(a) = auroc {
            gate.info.measured.insert(format!("{name}_auroc"), a);
        }
    }
    Ok(GateFit { gate, report })
}

/// Which half of the validation patients a patient falls in (a stable hash of the id).
fn patient_half(id: &str) -> bool {
    let seed = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    super::metrics::SplitMix64::new(seed).next_u64() & 1 == 1
}
