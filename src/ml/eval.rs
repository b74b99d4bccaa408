//! Evaluation of a trained bundle on the held-out patients of a dataset folder, in image space:
//! the lung network's probability map is resampled onto each image (as the viewer shows it),
//! thresholded at ½ and compared with the full-resolution mask (ignore pixels excluded).

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};

use super::bundle::{BundleInfo, LoadedModel, load_bundle};
use super::data::read_labels;
use super::error::MlError;
use super::explain::ModelMap;
use super::metrics::dice;
use super::preprocess::{model_input, to_image_space};
use super::tensor_to_vec;
use super::train::SplitSpec;

/// Dice of a lung bundle on held-out images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LungEvaluation {
    pub images: usize,
    /// Mean Dice at image resolution (prediction resampled onto the image).
    pub dice_image: f64,
    /// Median and 5th percentile, to show the spread.
    pub dice_image_median: f64,
    pub dice_image_p05: f64,
    /// Each held-out image's id and Dice, worst first (to find the images a site should look at).
    pub per_image: Vec<(String, f64)>,
}

/// Evaluate `bundle` (a lung network) on the held-out images `spec` names in `data_root`.
pub fn evaluate_lung(
    bundle: &BundleInfo,
    data_root: &Path,
    spec: &SplitSpec,
    device: &Device,
    clean: bool,
) -> Result<LungEvaluation, MlError> {
    let LoadedModel::Lung(model, config) = load_bundle(bundle, device)? else {
        return Err(MlError::Config(format!(
            "{} is not a lung network",
            bundle.title()
        )));
    };
    let model = model.valid();
    let inner = device.clone().inner();
    let (records, _) = read_labels(data_root)?;
    let validation = spec.indices(&records);
    let mut dices = Vec::new();
    for &i in &validation {
        let r = &records[i];
        let Some(mask_path) = &r.mask else { continue };
        let loaded = crate::io::load_image(&r.image)
            .map_err(|e| MlError::Dataset(format!("{}: {e}", r.id)))?;
        let img = &loaded.image;
        let x = model_input(
            img,
            loaded.info.photometric_inverted,
            loaded.stats.p01,
            loaded.stats.p99,
            config.input_size,
        )
        .to_tensor(&inner);
        let p = tensor_to_vec(sigmoid(model.forward(x).mask_logits))?;
        let mut map = ModelMap {
            width: config.input_size,
            height: config.input_size,
            values: p,
        };
        if clean {
            // As the viewer shows it: the two largest regions, holes filled.
            super::preprocess::clean_lung_map(&mut map);
        }
        let prob = to_image_space(&map, img.width, img.height);
        let mask = crate::dataset::read_mask(mask_path)
            .map_err(|e| MlError::Dataset(format!("{}: {e}", r.id)))?;
        if (mask.width, mask.height) != (img.width, img.height) {
            return Err(MlError::Dataset(format!(
                "{}: mask and image sizes differ",
                r.id
            )));
        }
        use crate::dataset::MaskLevels;
        let target: Vec<bool> = mask
            .levels
            .iter()
            .map(|&l| MaskLevels::is_lung(l))
            .collect();
        let weight: Vec<f32> = mask
            .levels
            .iter()
            .map(|&l| if MaskLevels::is_ignored(l) { 0.0 } else { 1.0 })
            .collect();
        let pred: Vec<bool> = prob.values.iter().map(|v| *v >= 0.5).collect();
        dices.push((r.id.clone(), dice(&pred, &target, &weight)));
    }
    if dices.is_empty() {
        return Err(MlError::Dataset("no held-out image has a mask".into()));
    }
    dices.sort_by(|a, b| a.1.total_cmp(&b.1));
    let sorted: Vec<f64> = dices.iter().map(|(_, d)| *d).collect();
    let Some(summary) = DiceSummary::of_sorted(&sorted) else {
        return Err(MlError::Dataset("no held-out image has a mask".into()));
    };
    Ok(LungEvaluation {
        images: dices.len(),
        dice_image: summary.mean,
        dice_image_median: summary.median,
        dice_image_p05: summary.p05,
        per_image: dices,
    })
}

/// Mean, median (upper) and 5th percentile (nearest rank below) of Dice values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiceSummary {
    pub mean: f64,
    pub median: f64,
    pub p05: f64,
}

impl DiceSummary {
    /// Of values sorted ascending; `None` when empty.
    pub fn of_sorted(sorted: &[f64]) -> Option<Self> {
        if sorted.is_empty() {
            return None;
        }
        Some(Self {
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            median: sorted[sorted.len() / 2],
            p05: sorted[(sorted.len() as f64 * 0.05) as usize],
        })
    }
}
