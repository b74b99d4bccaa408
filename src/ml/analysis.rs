//! One analysis of one image: lung mask + classification from the lung network, class
//! probabilities from the classifier, and the chosen explanation — every map returned in image
//! space at image resolution. Used by the inference worker, the CLI and the tests.

use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use super::bundle::{BundleInfo, LoadedModel, ModelKind, load_bundle};
use super::classifier::Classifier;
use super::error::MlError;
use super::explain::{Explainable, Method, ModelMap, explain};
use super::lung::LungNet;
use super::ood::{FeatureGate, GateResult, OodReport, anatomy_check};
use super::preprocess::{model_input, to_image_space};
use super::saliency::SaliencyNet;
use super::tensor_to_vec;
use crate::imaging::ScalarImage;

/// The networks loaded on one device, frozen for inference and explanation.
pub struct Models {
    pub device: Device,
    pub lung: Option<(LungNet, BundleInfo)>,
    pub classifier: Option<(Classifier, BundleInfo)>,
    /// The classifier's and the lung head's Grad-CAM target layers, in words.
    pub classifier_target_layer: String,
    pub lung_target_layer: String,
    /// A saliency network (predicted gaze); it needs the classifier's features.
    pub saliency: Option<(SaliencyNet, BundleInfo)>,
    /// Out-of-distribution gates of the lung network and the classifier (from their bundles).
    pub lung_gate: Option<FeatureGate>,
    pub classifier_gate: Option<FeatureGate>,
}

impl Models {
    /// The loaded bundles: lung, classifier, saliency (those present).
    pub fn infos(&self) -> Vec<&BundleInfo> {
        self.lung
            .iter()
            .map(|(_, i)| i)
            .chain(self.classifier.iter().map(|(_, i)| i))
            .chain(self.saliency.iter().map(|(_, i)| i))
            .collect()
    }

    /// Load the first lung and classifier bundles among `bundles` (others are skipped) onto `device`.
    pub fn load(bundles: &[BundleInfo], device: &Device) -> (Self, Vec<String>) {
        let mut models = Self {
            device: device.clone(),
            lung: None,
            classifier: None,
            classifier_target_layer: String::new(),
            lung_target_layer: String::new(),
            saliency: None,
            lung_gate: None,
            classifier_gate: None,
        };
        let mut problems = Vec::new();
        let mut saliency_classifier = String::new();
        for info in bundles {
            let wanted = match info.card.kind {
                ModelKind::Lung => models.lung.is_none(),
                ModelKind::Classifier => models.classifier.is_none(),
                ModelKind::Saliency => models.saliency.is_none(),
            };
            if !wanted {
                continue;
            }
            let gate = match FeatureGate::load(&info.dir) {
                Ok(g) => g,
                Err(e) => {
                    problems.push(format!(
                        "{}: out-of-distribution gate unreadable, so every image will be flagged: {e}",
                        info.title()
                    ));
                    Some(FeatureGate::refusing_all())
                }
            };
            match load_bundle(info, device) {
                Ok(LoadedModel::Lung(m, c)) => {
                    models.lung = Some((m.freeze(), info.clone()));
                    models.lung_target_layer = c.target_layer();
                    models.lung_gate = gate;
                }
                Ok(LoadedModel::Classifier(m, c)) => {
                    models.classifier = Some((m.freeze(), info.clone()));
                    models.classifier_target_layer = c.target_layer();
                    models.classifier_gate = gate;
                }
                Ok(LoadedModel::Saliency(m, config)) => {
                    saliency_classifier = config.classifier_title.clone();
                    models.saliency = Some((m.freeze(), info.clone()))
                }
                Err(e) => problems.push(format!("{}: {e}", info.title())),
            }
        }
        // A saliency network reads its own classifier's features: with another one it is wrong.
        if let (Some((_, s)), Some((_, c))) = (&models.saliency, &models.classifier)
            && !saliency_classifier.is_empty()
            && saliency_classifier != c.title()
        {
            problems.push(format!(
                "{} was trained with the features of {saliency_classifier}, but {} is loaded; predicted gaze is off",
                s.title(),
                c.title()
            ));
            models.saliency = None;
        }
        (models, problems)
    }
}

/// Which network's decision to explain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExplainTarget {
    LungHead,
    Classifier,
}

/// What to analyse.
#[derive(Clone, Debug)]
pub struct AnalysisRequest {
    pub image: Arc<ScalarImage>,
    /// MONOCHROME1: flip to MONOCHROME2 polarity before the model.
    pub photometric_inverted: bool,
    /// Robust value range (1st, 99th percentile) of the image.
    pub low: f32,
    pub high: f32,
    pub method: Method,
    pub target: ExplainTarget,
    /// Class to explain; `None` = the predicted class.
    pub class: Option<usize>,
}

impl AnalysisRequest {
    /// The request for `image` (modality values; its statistics give the robust range), explaining
    /// the predicted class.
    pub fn new(
        image: Arc<ScalarImage>,
        stats: crate::imaging::ValueStats,
        photometric_inverted: bool,
        method: Method,
        target: ExplainTarget,
    ) -> Self {
        Self {
            image,
            photometric_inverted,
            low: stats.p01,
            high: stats.p99,
            method,
            target,
            class: None,
        }
    }

    /// The request for a decoded image (its luminance, polarity and statistics).
    pub fn of(loaded: &crate::io::LoadedImage, method: Method, target: ExplainTarget) -> Self {
        Self::new(
            Arc::clone(&loaded.image),
            loaded.stats,
            loaded.info.photometric_inverted,
            method,
            target,
        )
    }
}

/// Class probabilities from one model.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub model_title: String,
    pub classes: Vec<(String, f32)>,
    /// The probabilities are temperature-scaled (the card's calibration).
    pub calibrated: bool,
    /// The card's operating point and where this image falls.
    pub decision: Option<Decision>,
    /// The held-out figures do not show the head to be better than chance: its probabilities
    /// are computed but not shown as a result.
    pub uninformative: bool,
}

/// The operating point chosen on validation, applied to this image.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub class: String,
    pub threshold: f64,
    pub positive: bool,
    pub sensitivity: f64,
    pub specificity: f64,
    pub measured_on: String,
}

/// Everything an analysis produces. Maps are in image space, image resolution.
#[derive(Clone, Debug)]
pub struct AnalysisResult {
    /// Lung probability per pixel, [0, 1].
    pub lung_probability: Option<ScalarImage>,
    /// The explanation heatmap, [0, 1].
    pub heatmap: Option<ScalarImage>,
    /// Predicted gaze distribution (saliency network), scaled to [0, 1] by its maximum, and the
    /// title of the model that made it.
    pub saliency: Option<(ScalarImage, String)>,
    pub method: Method,
    pub explained: Option<(String, String)>,
    pub predictions: Vec<Prediction>,
    /// The explained layer, in words (e.g. "head convolution conv_head (1280 channels, 7×7)").
    pub target_layer: String,
    /// How far the image is from the models' training data; the viewer says this before the
    /// results and hides what it flags until asked.
    pub ood: OodReport,
    /// Seconds per step, in order.
    pub step_seconds: Vec<(String, f64)>,
    pub seconds: f64,
}

/// Run an analysis. `progress(fraction, step)` is called between steps; returning `false` cancels.
pub fn analyze(
    models: &Models,
    request: &AnalysisRequest,
    progress: &mut dyn FnMut(f32, &str) -> bool,
) -> Result<AnalysisResult, MlError> {
    let started = Instant::now();
    let mut clock = StepClock::default();
    let mut step = |fraction: f32, name: &str| {
        if progress(fraction, name) {
            Ok(())
        } else {
            Err(MlError::Cancelled)
        }
    };
    let image = &request.image;
    let (w, h) = (image.width, image.height);
    let mut predictions = Vec::new();
    let mut lung_grid: Option<ModelMap> = None;
    let mut lung_probability = None;
    let mut lung_gate = None;
    let mut classifier_gate = None;
    let mut anatomy = None;
    // The same preprocessing for every network, at its own input size, made once per size.
    let mut inputs: Vec<(usize, Tensor<4>)> = Vec::new();
    let mut input = |size: usize, clock: &mut StepClock| -> Tensor<4> {
        if let Some((_, t)) = inputs.iter().find(|(s, _)| *s == size) {
            return t.clone();
        }
        let t = model_input(
            image,
            request.photometric_inverted,
            request.low,
            request.high,
            size,
        )
        .to_tensor(&models.device);
        clock.mark(&format!("preprocess to {size}²"));
        inputs.push((size, t.clone()));
        t
    };
    step(0.05, "lung mask and classification")?;
    if let Some((lung, info)) = &models.lung {
        let size = info.card.input_size;
        let x = input(size, &mut clock);
        let out = lung.forward(x);
        let mut mask = ModelMap {
            width: size,
            height: size,
            values: tensor_to_vec(sigmoid(out.mask_logits))?,
        };
        super::preprocess::clean_lung_map(&mut mask);
        anatomy = Some(anatomy_check(&mask.values, size, size));
        if let Some(gate) = &models.lung_gate {
            lung_gate = Some(GateResult::of(
                gate,
                &info.title(),
                &tensor_to_vec(out.gate)?,
            ));
        }
        predictions.push(prediction(info, out.class_logits)?);
        clock.mark("lung network, anatomy check and gate");
        lung_probability = Some(to_image_space(&mask, w, h));
        lung_grid = Some(mask);
        clock.mark("lung mask to image space");
    }
    step(0.3, "classifier")?;
    if let Some((classifier, info)) = &models.classifier {
        let size = info.card.input_size;
        let x = input(size, &mut clock);
        let (features, gate_features) = classifier.features_and_gate(x);
        if let Some(gate) = &models.classifier_gate {
            let g = tensor_to_vec(gate_features)?;
            classifier_gate = Some(GateResult::of(gate, &info.title(), &g));
        }
        predictions.push(prediction(info, classifier.head(features))?);
        clock.mark("classifier and gate");
    }
    let ood = OodReport::decide(lung_gate, classifier_gate, anatomy);
    let mut saliency = None;
    if let (Some((net, info)), Some((classifier, cinfo))) = (&models.saliency, &models.classifier) {
        step(0.4, "predicted gaze")?;
        let features = classifier.features(input(cinfo.card.input_size, &mut clock));
        let out = net.forward(input(info.card.input_size, &mut clock), features);
        let size = info.card.input_size;
        let map = ModelMap {
            width: size,
            height: size,
            values: tensor_to_vec(out)?,
        }
        .normalised_by_max();
        let title = if info.card.simulated_gaze {
            format!("{}, trained on SIMULATED gaze", info.title())
        } else {
            info.title()
        };
        saliency = Some((to_image_space(&map, w, h), title));
        clock.mark("predicted gaze");
    }
    step(0.5, request.method.label())?;
    let pick_class = |p: Option<&Prediction>| -> usize {
        request.class.unwrap_or_else(|| {
            p.and_then(|p| {
                p.classes
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.1.total_cmp(&b.1.1))
                    .map(|(i, _)| i)
            })
            .unwrap_or(0)
        })
    };
    let lung_prediction = models.lung.as_ref().and_then(|_| predictions.first());
    let classifier_prediction = models.classifier.as_ref().and_then(|_| predictions.last());
    let explanation = request.method.label();
    let (map, explained, target_layer) = match (request.method, request.target) {
        // The lung-cropped CAM is defined on the lung network's own head.
        (Method::LungCroppedCam, _) | (_, ExplainTarget::LungHead) => match &models.lung {
            Some((lung, info)) => {
                let class = pick_class(lung_prediction);
                let size = info.card.input_size;
                let x = input(size, &mut clock);
                let map = explain(lung, x, class, request.method, lung_grid.as_ref())?;
                (
                    map,
                    (info.title(), class_name(&info.card.class_names, class)),
                    models.lung_target_layer.clone(),
                )
            }
            None => return Err(MlError::Input("no lung network is loaded".into())),
        },
        (_, ExplainTarget::Classifier) => match &models.classifier {
            Some((classifier, info)) => {
                let class = pick_class(classifier_prediction);
                let size = info.card.input_size;
                let x = input(size, &mut clock);
                let map = explain(classifier, x, class, request.method, None)?;
                (
                    map,
                    (info.title(), class_name(&info.card.class_names, class)),
                    models.classifier_target_layer.clone(),
                )
            }
            None => return Err(MlError::Input("no classifier is loaded".into())),
        },
    };
    clock.mark(explanation);
    let heatmap = to_image_space(&map, w, h);
    clock.mark("heatmap to image space");
    step(1.0, "done")?;
    Ok(AnalysisResult {
        lung_probability,
        heatmap: Some(heatmap),
        saliency,
        method: request.method,
        explained: Some(explained),
        predictions,
        target_layer,
        ood,
        step_seconds: clock.steps,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Wall time per step of an analysis, in order.
struct StepClock {
    steps: Vec<(String, f64)>,
    last: Instant,
}

impl Default for StepClock {
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            last: Instant::now(),
        }
    }
}

impl StepClock {
    /// Records the time since the previous mark under `name`.
    fn mark(&mut self, name: &str) {
        self.steps
            .push((name.to_string(), self.last.elapsed().as_secs_f64()));
        self.last = Instant::now();
    }
}

fn class_name(names: &[String], class: usize) -> String {
    names
        .get(class)
        .cloned()
        .unwrap_or_else(|| format!("class {class}"))
}

/// Class probabilities as the card says to read them: temperature-scaled when the card has a
/// calibration, with its operating point; flagged uninformative when the held-out figures do not
/// show the head better than chance.
fn prediction(info: &BundleInfo, logits: Tensor<2>) -> Result<Prediction, MlError> {
    let z = tensor_to_vec(logits)?;
    let calibration = info.card.calibration.as_ref();
    let temperature = calibration.map_or(1.0, |c| c.temperature);
    let p = super::calibration::softmax_t(&z, temperature);
    let classes: Vec<(String, f32)> = info
        .card
        .class_names
        .iter()
        .cloned()
        .zip(p.iter().map(|&v| v as f32))
        .collect();
    let decision = calibration.and_then(|c| {
        let k = info
            .card
            .class_names
            .iter()
            .position(|n| *n == c.positive_class)?;
        Some(Decision {
            class: c.positive_class.clone(),
            threshold: c.threshold,
            positive: p.get(k).copied()? >= c.threshold,
            sensitivity: c.sensitivity,
            specificity: c.specificity,
            measured_on: c.measured_on.clone(),
        })
    });
    Ok(Prediction {
        model_title: info.title(),
        classes,
        calibrated: calibration.is_some(),
        decision,
        uninformative: !info.card.class_head_informative(),
    })
}
