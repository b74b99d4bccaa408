//! Validation and held-out evaluation: predictions, AUC/Dice, temperature calibration, the operating point, `evaluate_bundle`.

use super::*;

/// Network outputs on a prepared set.
pub(crate) struct Predictions {
    /// Class logits per image.
    pub(crate) logits: Vec<Vec<f32>>,
    pub(crate) actual: Vec<usize>,
    /// Dice per image with a mask (lung network).
    pub(crate) dices: Vec<f64>,
}

pub(crate) fn predict(
    net: &Net,
    set: &[PreparedSample],
    device: &Device,
) -> Result<Predictions, MlError> {
    let mut out = Predictions {
        logits: Vec::with_capacity(set.len()),
        actual: Vec::with_capacity(set.len()),
        dices: Vec::new(),
    };
    let device = device.clone().inner();
    for chunk in set.chunks(16) {
        let inputs: Vec<&crate::ml::preprocess::ModelInput> =
            chunk.iter().map(|s| &s.input).collect();
        let x = crate::ml::preprocess::batch_tensor(&inputs, &device);
        let (class_logits, mask_logits) = net.forward(x);
        let [_, k] = class_logits.dims();
        let z = tensor_to_vec(class_logits)?;
        for (i, s) in chunk.iter().enumerate() {
            out.logits.push(z[i * k..(i + 1) * k].to_vec());
            out.actual.push(s.class);
        }
        if let Some(mask_logits) = mask_logits {
            let m = tensor_to_vec(mask_logits)?;
            let plane = chunk[0].input.size * chunk[0].input.size;
            for (i, s) in chunk.iter().enumerate() {
                if let Some(mask) = &s.mask {
                    let pred: Vec<bool> = m[i * plane..(i + 1) * plane]
                        .iter()
                        .map(|&z| z > 0.0)
                        .collect();
                    let target: Vec<bool> = mask.target.iter().map(|&t| t > 0.5).collect();
                    out.dices.push(dice(&pred, &target, &mask.weight));
                }
            }
        }
    }
    Ok(out)
}

impl Predictions {
    /// Class probabilities at `temperature` (1 = the network's own softmax).
    pub(crate) fn probabilities(&self, temperature: f64) -> Vec<Vec<f32>> {
        self.logits
            .iter()
            .map(|z| {
                crate::ml::calibration::softmax_t(z, temperature)
                    .into_iter()
                    .map(|p| p as f32)
                    .collect()
            })
            .collect()
    }

    pub(crate) fn evaluation(
        &self,
        class_names: &[String],
        seed: u64,
        temperature: f64,
    ) -> Evaluation {
        let dice = (!self.dices.is_empty())
            .then(|| self.dices.iter().sum::<f64>() / self.dices.len() as f64);
        classification_evaluation(
            &self.probabilities(temperature),
            &self.actual,
            class_names,
            seed,
            dice,
        )
    }
}

pub(crate) fn evaluate(
    net: &Net,
    set: &[PreparedSample],
    class_names: &[String],
    device: &Device,
    seed: u64,
) -> Result<Evaluation, MlError> {
    Ok(predict(net, set, device)?.evaluation(class_names, seed, 1.0))
}

/// Temperature scaling and the operating point of a two-class classifier, fitted on `validation`
/// and measured on `reported` (the test split when there is one).
pub(crate) fn calibrate(
    validation: &Predictions,
    reported: &Predictions,
    reported_split: &str,
    class_names: &[String],
) -> Option<crate::ml::calibration::Calibration> {
    use crate::ml::calibration::{
        expected_calibration_error, fit_temperature, sensitivity_specificity, youden_threshold,
    };
    if class_names.len() != 2 {
        return None;
    }
    // The class that is not "normal" (class names put "normal" first when present).
    let positive = 1;
    let temperature = fit_temperature(&validation.logits, &validation.actual);
    let scores = |p: &Predictions| -> Vec<f64> {
        p.probabilities(temperature)
            .iter()
            .map(|v| v[positive] as f64)
            .collect()
    };
    let is_positive =
        |p: &Predictions| -> Vec<bool> { p.actual.iter().map(|&a| a == positive).collect() };
    let threshold = youden_threshold(&scores(validation), &is_positive(validation))?;
    let (sensitivity, specificity) =
        sensitivity_specificity(&scores(reported), &is_positive(reported), threshold)?;
    let as_f64 = |probs: Vec<Vec<f32>>| -> Vec<Vec<f64>> {
        probs
            .into_iter()
            .map(|v| v.into_iter().map(f64::from).collect())
            .collect()
    };
    Some(crate::ml::calibration::Calibration {
        temperature,
        positive_class: class_names[positive].clone(),
        threshold,
        ece_before: expected_calibration_error(
            &as_f64(reported.probabilities(1.0)),
            &reported.actual,
            15,
        ),
        ece_after: expected_calibration_error(
            &as_f64(reported.probabilities(temperature)),
            &reported.actual,
            15,
        ),
        sensitivity,
        specificity,
        measured_on: reported_split.into(),
    })
}

/// Which images of a dataset folder an evaluation uses.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldOut {
    /// The validation patients of the training split.
    Validation,
    /// The test patients of the training split (`TrainOptions::test_fraction`).
    Test,
    /// Every image (an external folder the model never saw).
    All,
    /// The training patients themselves: how closely the model fits the data it learnt from (a
    /// diagnostic — e.g. of label consistency —, never a held-out figure).
    Training,
}

/// A held-out set: which part of which patient split.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    pub held_out: HeldOut,
    pub validation_fraction: f64,
    pub test_fraction: f64,
    pub seed: u64,
}

impl SplitSpec {
    /// The split a bundle was trained with (from its `training-report.json`), held out as the
    /// test split when it had one, else validation; the defaults when there is no report.
    pub fn of_bundle(info: &crate::ml::bundle::BundleInfo) -> Self {
        let options = std::fs::read(info.dir.join("training-report.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<TrainReport>(&b).ok())
            .map(|r| r.options);
        let (validation_fraction, test_fraction, seed) = options.map_or((0.2, 0.0, 42), |o| {
            (o.validation_fraction, o.test_fraction, o.seed)
        });
        Self {
            held_out: if test_fraction > 0.0 {
                HeldOut::Test
            } else {
                HeldOut::Validation
            },
            validation_fraction,
            test_fraction,
            seed,
        }
    }

    pub fn indices(&self, records: &[crate::ml::data::Record]) -> Vec<usize> {
        match self.held_out {
            HeldOut::All => (0..records.len()).collect(),
            HeldOut::Validation | HeldOut::Test | HeldOut::Training => {
                let split = split_by_patient3(
                    records,
                    self.validation_fraction,
                    self.test_fraction,
                    self.seed,
                );
                match self.held_out {
                    HeldOut::Test => split.test,
                    HeldOut::Training => split.train,
                    _ => split.validation,
                }
            }
        }
    }
}

/// Evaluates a bundle on a held-out set of a dataset folder: per-class AUC with bootstrap CI,
/// macro AUC, accuracy, confusion matrix, (lung network) Dice on the model grid, and for a
/// calibrated classifier the card's operating point and the calibration error. Rows whose label
/// the model does not know are left out and counted in the returned notes.
pub fn evaluate_bundle(
    data_root: &Path,
    info: &crate::ml::bundle::BundleInfo,
    spec: &SplitSpec,
    device: &Device,
) -> Result<(Evaluation, Vec<String>), MlError> {
    let (records, row_problems) = read_labels(data_root)?;
    let mut notes: Vec<String> = row_problems
        .iter()
        .map(|p| format!("labels.csv line {}: {}", p.line, p.message))
        .collect();
    let held_idx = spec.indices(&records);
    let names = &info.card.class_names;
    let held: Vec<_> = held_idx
        .iter()
        .map(|&i| records[i].clone())
        .filter(|r| names.contains(&r.label))
        .collect();
    if held.len() < held_idx.len() {
        notes.push(format!(
            "{} held-out images have labels the model does not predict ({names:?}) and were left out",
            held_idx.len() - held.len()
        ));
    }
    let with_masks = info.card.kind == ModelKind::Lung;
    let (set, problems) = prepare(&held, names, info.card.input_size, with_masks);
    notes.extend(problems);
    if set.is_empty() {
        return Err(MlError::Dataset("no usable held-out images".into()));
    }
    let net = match crate::ml::bundle::load_bundle(info, device)? {
        crate::ml::bundle::LoadedModel::Lung(m, _) => Net::Lung(m),
        crate::ml::bundle::LoadedModel::Classifier(m, _) => Net::Classifier(m),
        crate::ml::bundle::LoadedModel::Saliency(..) => {
            return Err(MlError::Config(
                "saliency bundles are evaluated against gaze maps (cxrlens gaze compare)".into(),
            ));
        }
    };
    let predictions = predict(&net.valid(), &set, device)?;
    let mut evaluation = predictions.evaluation(names, spec.seed, 1.0);
    if let Some(c) = &info.card.calibration {
        evaluation.operating_point = operating_point(&predictions, c, names);
    }
    Ok((evaluation, notes))
}

/// The card's operating point and calibration measured on `predictions`.
pub(crate) fn operating_point(
    predictions: &Predictions,
    c: &crate::ml::calibration::Calibration,
    names: &[String],
) -> Option<OperatingPoint> {
    use crate::ml::calibration::{expected_calibration_error, sensitivity_specificity};
    let k = names.iter().position(|n| *n == c.positive_class)?;
    let as_f64 = |probs: Vec<Vec<f32>>| -> Vec<Vec<f64>> {
        probs
            .into_iter()
            .map(|v| v.into_iter().map(f64::from).collect())
            .collect()
    };
    let calibrated = as_f64(predictions.probabilities(c.temperature));
    let scores: Vec<f64> = calibrated.iter().map(|p| p[k]).collect();
    let positive: Vec<bool> = predictions.actual.iter().map(|&a| a == k).collect();
    let (sensitivity, specificity) = sensitivity_specificity(&scores, &positive, c.threshold)?;
    Some(OperatingPoint {
        class: c.positive_class.clone(),
        threshold: c.threshold,
        sensitivity,
        specificity,
        ece_uncalibrated: expected_calibration_error(
            &as_f64(predictions.probabilities(1.0)),
            &predictions.actual,
            15,
        ),
        ece_calibrated: expected_calibration_error(&calibrated, &predictions.actual, 15),
    })
}

/// Accuracy, per-class one-vs-rest AUC with bootstrap CI, macro AUC and the confusion matrix from
/// class probabilities.
pub(crate) fn classification_evaluation(
    probs: &[Vec<f32>],
    actual: &[usize],
    class_names: &[String],
    seed: u64,
    dice: Option<f64>,
) -> Evaluation {
    let predicted: Vec<usize> = probs
        .iter()
        .map(|p| {
            p.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        })
        .collect();
    let mut per_class_auc = Vec::new();
    for (c, name) in class_names.iter().enumerate() {
        let scores: Vec<f64> = probs.iter().map(|p| p[c] as f64).collect();
        let positive: Vec<bool> = actual.iter().map(|&a| a == c).collect();
        if let Some(auc) = auc_bootstrap(&scores, &positive, 1000, seed) {
            per_class_auc.push((name.clone(), auc));
        }
    }
    let macro_auc = (!per_class_auc.is_empty()).then(|| {
        per_class_auc.iter().map(|(_, a)| a.auc).sum::<f64>() / per_class_auc.len() as f64
    });
    let mut confusion = vec![vec![0usize; class_names.len()]; class_names.len()];
    for (&a, &p) in actual.iter().zip(&predicted) {
        if a < confusion.len() && p < confusion.len() {
            confusion[a][p] += 1;
        }
    }
    Evaluation {
        saliency: None,
        operating_point: None,
        confusion,
        dice,
        accuracy: accuracy(&predicted, actual),
        per_class_auc,
        macro_auc,
        images: probs.len(),
    }
}

/// The held-out figures of the model as shipped: the test split's evaluation (when there is one)
/// and, for a classifier, the temperature and operating point fitted on validation and reported on
/// the test split (or on validation without one). The test split is touched here only.
pub(crate) fn held_out(
    net: &Net,
    val_set: &[PreparedSample],
    test_set: &[PreparedSample],
    options: &TrainOptions,
    class_names: &[String],
    device: &Device,
) -> Result<
    (
        Option<Evaluation>,
        Option<crate::ml::calibration::Calibration>,
    ),
    MlError,
> {
    let frozen = net.valid();
    let validation = predict(&frozen, val_set, device)?;
    let test = (!test_set.is_empty())
        .then(|| predict(&frozen, test_set, device))
        .transpose()?;
    let calibration = match (options.kind, &test) {
        (ModelKind::Classifier, Some(t)) => calibrate(&validation, t, "test", class_names),
        (ModelKind::Classifier, None) => {
            calibrate(&validation, &validation, "validation", class_names)
        }
        _ => None,
    };
    Ok((
        test.map(|t| t.evaluation(class_names, options.seed, 1.0)),
        calibration,
    ))
}
