//! Does a backend compute what the CPU reference computes? Same weights, same input, on two
//! devices: forward outputs, the input gradient, every parameter's gradient and an explanation map
//! are compared by relative L2 error. STACK-NOTES measured burn-wgpu on lavapipe giving wrong conv
//! weight gradients at 256² and different results for identical iterations; `cxrlens
//! check-backends` runs this on whatever adapter the machine has, so the GPU path is checked
//! against flex rather than trusted.

use std::path::{Path, PathBuf};

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Gradients;

use super::bundle::{load_into, save_module};
use super::classifier::{Classifier, ClassifierConfig};
use super::error::MlError;
use super::explain::{Explainable, Method, explain};
use super::lung::LungNetConfig;
use super::saliency::SaliencyNetConfig;
use super::tensor_to_vec;

mod ops;
mod report;

pub use ops::compare_ops;
pub use report::{Agreement, CheckReport};

/// Relative L2 error above which two backends are said to disagree (f32, different summation order).
pub const TOLERANCE: f64 = 1e-3;

/// Everything one network gives that the comparison looks at, as host vectors.
#[derive(Clone, Debug, Default)]
pub struct Evaluated {
    pub outputs: Vec<(String, Vec<f32>)>,
    pub input_gradient: Vec<f32>,
    /// Parameter gradients in visiting order, with their module paths.
    pub parameter_gradients: Vec<(String, Vec<f32>)>,
    /// Trainable parameters the main loss gave no gradient (module paths).
    pub parameters_without_gradient: Vec<String>,
    pub explanation: Option<Vec<f32>>,
    /// Further named quantities compared as they are (e.g. gradients under one head's loss only).
    pub extra: Vec<(String, Vec<f32>)>,
    /// Lung network: all parameter gradients from the two heads' losses back-propagated in
    /// separate passes and summed (how the trainer steps on wgpu).
    pub split_sum: Option<Vec<f32>>,
}

/// Which network to check.
#[derive(Clone, Debug)]
pub enum Network {
    Lung(LungNetConfig),
    Classifier(ClassifierConfig),
    /// The saliency network, fed fixed classifier features (a leaf, so their gradient — what the
    /// heatmap-generator recipe back-propagates into the classifier — is compared too).
    Saliency(SaliencyNetConfig),
}

impl Network {
    fn input_size(&self) -> usize {
        match self {
            Network::Lung(c) => c.input_size,
            Network::Classifier(c) => c.input_size(),
            Network::Saliency(c) => c.input_size,
        }
    }
}

impl Network {
    pub fn name(&self) -> &'static str {
        match self {
            Network::Lung(_) => "lung network",
            Network::Classifier(_) => "classifier",
            Network::Saliency(_) => "saliency network",
        }
    }
}

/// Collects `(path, gradient)` for every float parameter that has one.
struct GradientCollector<'a> {
    grads: &'a Gradients,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
    error: Option<MlError>,
    /// Record zeros for a parameter without a gradient (so partial losses line up).
    fill_missing: bool,
    /// Trainable parameters the loss gave no gradient (when not filled with zeros).
    missing: Vec<String>,
}

impl ModuleVisitor for GradientCollector<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match param.val().grad(self.grads) {
            Some(g) => match tensor_to_vec(g) {
                Ok(v) => self.out.push((self.path.join("."), v)),
                Err(e) => self.error = Some(e),
            },
            None if self.fill_missing && param.is_require_grad() => {
                let n = param.val().dims().iter().product::<usize>();
                self.out.push((self.path.join("."), vec![0.0; n]));
            }
            None if param.is_require_grad() => self.missing.push(self.path.join(".")),
            None => {}
        }
    }
}

fn collect_gradients<M: Module>(
    model: &M,
    grads: &Gradients,
    fill_missing: bool,
) -> Result<Vec<(String, Vec<f32>)>, MlError> {
    collect_gradients_and_missing(model, grads, fill_missing).map(|(g, _)| g)
}

/// Parameter gradients, and the trainable parameters that got none.
type CollectedGradients = (Vec<(String, Vec<f32>)>, Vec<String>);

fn collect_gradients_and_missing<M: Module>(
    model: &M,
    grads: &Gradients,
    fill_missing: bool,
) -> Result<CollectedGradients, MlError> {
    let mut collector = GradientCollector {
        grads,
        path: Vec::new(),
        out: Vec::new(),
        error: None,
        fill_missing,
        missing: Vec::new(),
    };
    model.visit(&mut collector);
    match collector.error {
        Some(e) => Err(e),
        None => Ok((collector.out, collector.missing)),
    }
}

/// Deterministic values in [-1, 1] (a smooth pattern plus hash noise), identical on every machine.
pub fn pattern(len: usize, seed: u64) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let mut z = (i as u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .wrapping_add(0x632B_E59B_D9B4_E019);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let noise = (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            let smooth = ((i as f32) * 0.013).sin();
            (0.6 * smooth + 0.4 * noise).clamp(-1.0, 1.0)
        })
        .collect()
}

/// The gradient reaching `x`, on the host (empty when none reached it).
fn input_gradient(x: &Tensor<4>, grads: &Gradients) -> Result<Vec<f32>, MlError> {
    Ok(x.grad(grads)
        .map(tensor_to_vec)
        .transpose()?
        .unwrap_or_default())
}

/// Grad-CAM of class 0 on the first image of `input`, as the viewer computes it.
fn first_image_grad_cam<M: Explainable>(
    model: &M,
    input: &[f32],
    size: usize,
    device: &Device,
) -> Result<Vec<f32>, MlError> {
    let x = Tensor::<1>::from_floats(&input[..size * size], device).reshape([1, 1, size, size]);
    Ok(explain(model, x, 0, Method::GradCam, None)?.values)
}

/// Run `network` with the weights in `weights` (or those written by `reference` init) on `device`:
/// forward, a fixed random projection of the outputs as the loss, its gradients, and Grad-CAM.
fn evaluate(
    network: &Network,
    weights: &Path,
    device: &Device,
    batch: usize,
    seed: u64,
) -> Result<Evaluated, MlError> {
    let size = network.input_size();
    let input = pattern(batch * size * size, seed);
    let x = Tensor::<1>::from_floats(input.as_slice(), device)
        .reshape([batch, 1, size, size])
        .require_grad();
    let mut evaluated = Evaluated::default();
    match network {
        Network::Lung(config) => {
            let model = load_into(config.init(device), weights)?.train();
            let out = model.forward(x.clone());
            let mask_n = out.mask_logits.dims().iter().product::<usize>();
            let class_n = out.class_logits.dims().iter().product::<usize>();
            let mask_w = Tensor::<1>::from_floats(pattern(mask_n, seed + 1).as_slice(), device)
                .reshape(out.mask_logits.dims());
            let class_w = Tensor::<1>::from_floats(pattern(class_n, seed + 2).as_slice(), device)
                .reshape(out.class_logits.dims());
            evaluated.outputs.push((
                "mask logits".into(),
                tensor_to_vec(out.mask_logits.clone().detach())?,
            ));
            evaluated.outputs.push((
                "class logits".into(),
                tensor_to_vec(out.class_logits.clone().detach())?,
            ));
            let loss = (out.mask_logits * mask_w.clone()).sum()
                + (out.class_logits * class_w.clone()).sum();
            let grads = loss.backward();
            evaluated.input_gradient = input_gradient(&x, &grads)?;
            (
                evaluated.parameter_gradients,
                evaluated.parameters_without_gradient,
            ) = collect_gradients_and_missing(&model, &grads, false)?;
            // Each head's loss alone, to tell a wrong branch from a wrong sum of branches.
            for head in ["mask", "class"] {
                let xh = Tensor::<1>::from_floats(input.as_slice(), device)
                    .reshape([batch, 1, size, size])
                    .require_grad();
                let out = model.forward(xh.clone());
                let loss = if head == "mask" {
                    (out.mask_logits * mask_w.clone()).sum()
                } else {
                    (out.class_logits * class_w.clone()).sum()
                };
                let grads = loss.backward();
                let input_grad = input_gradient(&xh, &grads)?;
                evaluated
                    .extra
                    .push((format!("input gradient, {head} loss only"), input_grad));
                let all: Vec<f32> = collect_gradients(&model, &grads, true)?
                    .into_iter()
                    .flat_map(|(_, v)| v)
                    .collect();
                evaluated
                    .extra
                    .push((format!("all parameter gradients, {head} loss only"), all));
            }
            if let [.., (_, mask_all), _, (_, class_all)] = evaluated.extra.as_slice() {
                evaluated.split_sum =
                    Some(mask_all.iter().zip(class_all).map(|(a, b)| a + b).collect());
            }
            // Grad-CAM of the lung head (the lung-cropped CAM's first factor), frozen weights.
            let explaining = load_into(config.init(device), weights)?.freeze();
            evaluated.explanation = Some(first_image_grad_cam(&explaining, &input, size, device)?);
        }
        Network::Saliency(config) => {
            let model = load_into(config.init(device), weights)?.train();
            let side = (size >> config.depth).max(1);
            let feats_n = batch * config.classifier_channels * side * side;
            let features = || {
                Tensor::<1>::from_floats(pattern(feats_n, seed + 4).as_slice(), device)
                    .reshape([batch, config.classifier_channels, side, side])
                    .require_grad()
            };
            // Stage 2: the predicted fixation map under a fixed projection (a KL-like loss).
            let f = features();
            let map = model.forward(x.clone(), f.clone());
            let n = map.dims().iter().product::<usize>();
            let w = Tensor::<1>::from_floats(pattern(n, seed + 5).as_slice(), device)
                .reshape(map.dims());
            evaluated
                .outputs
                .push(("fixation map".into(), tensor_to_vec(map.clone().detach())?));
            let grads = (map * w).sum().backward();
            evaluated.input_gradient = input_gradient(&x, &grads)?;
            (
                evaluated.parameter_gradients,
                evaluated.parameters_without_gradient,
            ) = collect_gradients_and_missing(&model, &grads, false)?;
            evaluated.extra.push((
                "gradient into the classifier features".into(),
                input_gradient(&f, &grads)?,
            ));
            // Stage 3: the fusion classifier head.
            let f = features();
            let xs = Tensor::<1>::from_floats(input.as_slice(), device)
                .reshape([batch, 1, size, size])
                .require_grad();
            let logits = model.classify(xs, f);
            let n = logits.dims().iter().product::<usize>();
            let w = Tensor::<1>::from_floats(pattern(n, seed + 6).as_slice(), device)
                .reshape(logits.dims());
            evaluated.outputs.push((
                "fusion class logits".into(),
                tensor_to_vec(logits.clone().detach())?,
            ));
            let grads = (logits * w).sum().backward();
            let all: Vec<f32> = collect_gradients(&model, &grads, true)?
                .into_iter()
                .flat_map(|(_, v)| v)
                .collect();
            evaluated
                .extra
                .push(("all parameter gradients, fusion class loss".into(), all));
        }
        Network::Classifier(config) => {
            // Dropout draws from each backend's own generator: off, so that both devices compute
            // the same function (and a backend can be checked for repeatability).
            let config = match config {
                ClassifierConfig::EfficientNetLite0(c) => {
                    let mut c = c.clone();
                    c.dropout = 0.0;
                    ClassifierConfig::EfficientNetLite0(c)
                }
                other => other.clone(),
            };
            let model = config.init(device).load(weights)?.train();
            let logits = model.forward(x.clone());
            let n = logits.dims().iter().product::<usize>();
            let w = Tensor::<1>::from_floats(pattern(n, seed + 3).as_slice(), device)
                .reshape(logits.dims());
            evaluated.outputs.push((
                "class logits".into(),
                tensor_to_vec(logits.clone().detach())?,
            ));
            let grads = (logits * w).sum().backward();
            evaluated.input_gradient = input_gradient(&x, &grads)?;
            (
                evaluated.parameter_gradients,
                evaluated.parameters_without_gradient,
            ) = match &model {
                Classifier::ResNet(m) => collect_gradients_and_missing(m, &grads, false)?,
                Classifier::EfficientNet(m) => collect_gradients_and_missing(m, &grads, false)?,
            };
            // Grad-CAM of class 0 on the first image, as the viewer computes it (frozen weights).
            let explaining = config.init(device).load(weights)?.freeze();
            evaluated.explanation = Some(first_image_grad_cam(&explaining, &input, size, device)?);
        }
    }
    Ok(evaluated)
}

fn flatten(e: &Evaluated) -> Vec<f32> {
    e.parameter_gradients
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .chain(e.input_gradient.iter().copied())
        .collect()
}

/// Compare `candidate` with `reference` on `network`. Weights: `weights` when given (a shipped
/// bundle's `weights.bpk`, whose architecture must match), else a seeded random initialisation made
/// on the reference device. Both devices must have autodiff.
pub fn compare(
    network: &Network,
    weights: Option<&Path>,
    reference: &Device,
    candidate: &Device,
    batch: usize,
    seed: u64,
) -> Result<CheckReport, MlError> {
    let mut temp = None;
    let weights: PathBuf = match weights {
        Some(w) => w.to_path_buf(),
        None => {
            reference.seed(seed);
            let path = std::env::temp_dir().join(format!(
                "cxrlens-check-{}-{}.bpk",
                std::process::id(),
                seed
            ));
            match network {
                Network::Lung(c) => save_module(c.init(reference), &path)?,
                Network::Classifier(c) => c.init(reference).save(&path)?,
                Network::Saliency(c) => save_module(c.init(reference), &path)?,
            }
            temp = Some(TempFile(path.clone()));
            path
        }
    };
    let a = evaluate(network, &weights, reference, batch, seed)?;
    let b = evaluate(network, &weights, candidate, batch, seed)?;
    let b2 = evaluate(network, &weights, candidate, batch, seed)?;
    let mut rows = Vec::new();
    for ((name, r), (_, c)) in a.outputs.iter().zip(&b.outputs) {
        rows.push(Agreement::of(format!("forward: {name}"), r, c));
    }
    rows.push(Agreement::of(
        "input gradient",
        &a.input_gradient,
        &b.input_gradient,
    ));
    for ((name, r), (_, c)) in a.extra.iter().zip(&b.extra) {
        rows.push(Agreement::of(name.clone(), r, c));
    }
    if let Some(split) = &b.split_sum {
        let joint: Vec<f32> = a
            .parameter_gradients
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        rows.push(Agreement::of(
            "all parameter gradients, heads in separate passes summed, vs one pass on the reference",
            &joint,
            split,
        ));
    }
    if let (Some(r), Some(c)) = (&a.explanation, &b.explanation) {
        rows.push(Agreement::of("Grad-CAM map (class 0)", r, c));
    }
    if a.parameter_gradients.len() != b.parameter_gradients.len() {
        return Err(MlError::Data(format!(
            "the reference gave {} parameter gradients, the candidate {}",
            a.parameter_gradients.len(),
            b.parameter_gradients.len()
        )));
    }
    for ((path, r), (_, c)) in a.parameter_gradients.iter().zip(&b.parameter_gradients) {
        rows.push(Agreement::of(format!("grad {path}"), r, c));
    }
    drop(temp);
    Ok(CheckReport {
        network: network.name().into(),
        size: network.input_size(),
        batch,
        parameters_compared: a.parameter_gradients.len(),
        parameters_without_gradient: a.parameters_without_gradient.clone(),
        rows,
        repeatability: Agreement::of("repeat", &flatten(&b), &flatten(&b2)),
    })
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
