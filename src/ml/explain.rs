//! Explanations of a classification: Grad-CAM, Grad-CAM++, guided backpropagation, deconvnet,
//! guided Grad-CAM, SmoothGrad, and the lung-cropped CAM.
//!
//! Every function takes one normalised input `[1, 1, S, S]` on an autodiff device and returns a
//! [`ModelMap`] at the model's input resolution, normalised to [0, 1]; `ml::preprocess` maps it to
//! image space. Models must be frozen (`Module::freeze`) so batch norm uses its running statistics.

use burn::prelude::*;
use burn::tensor::Distribution;
use serde::{Deserialize, Serialize};

use super::blocks::ReluRule;
use super::error::MlError;
use super::tensor_to_vec;
use crate::imaging::resample::resize_bilinear;

/// A network whose last conv layer can be explained.
pub trait Explainable {
    /// Post-ReLU activations of the target (last conv) layer, `[B, K, h, w]`.
    fn target_features(&self, x: Tensor<4>) -> Tensor<4>;
    /// Class logits `[B, classes]` from the target activations.
    fn head(&self, features: Tensor<4>) -> Tensor<2>;
    /// Push `upstream` (a gradient at the target activations) back to the input, applying `rule`
    /// at every ReLU including the one that produced the target activations. `[B, 1, S, S]`.
    fn backprop_features(&self, x: Tensor<4>, upstream: Tensor<4>, rule: ReluRule) -> Tensor<4>;
}

/// The explanation methods offered in the viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    GradCam,
    GradCamPlusPlus,
    GuidedBackprop,
    Deconvnet,
    GuidedGradCam,
    SmoothGrad,
    /// Grad-CAM of the lung network's head multiplied by its predicted lung mask.
    LungCroppedCam,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::GradCam,
        Method::GradCamPlusPlus,
        Method::GuidedBackprop,
        Method::Deconvnet,
        Method::GuidedGradCam,
        Method::SmoothGrad,
        Method::LungCroppedCam,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Method::GradCam => "Grad-CAM",
            Method::GradCamPlusPlus => "Grad-CAM++",
            Method::GuidedBackprop => "Guided backprop",
            Method::Deconvnet => "Deconvnet",
            Method::GuidedGradCam => "Guided Grad-CAM",
            Method::SmoothGrad => "SmoothGrad",
            Method::LungCroppedCam => "Lung-cropped CAM",
        }
    }
}

/// A map at the model's input resolution (row-major, `width × height`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelMap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

impl ModelMap {
    /// Scale to [0, 1] by the maximum (maps that are all ≤ 0 become all zero).
    pub fn normalised_by_max(mut self) -> Self {
        let max = self.values.iter().copied().fold(0.0_f32, f32::max);
        for v in &mut self.values {
            *v = if max > 0.0 { (*v / max).max(0.0) } else { 0.0 };
        }
        self
    }

    /// Scale |v| to [0, 1] by a high percentile (gradient maps are spiky), clamping above it.
    pub fn normalised_abs_percentile(mut self, percentile: f32) -> Self {
        let mut sorted: Vec<f32> = self.values.iter().map(|v| v.abs()).collect();
        sorted.sort_by(f32::total_cmp);
        let index = ((sorted.len().saturating_sub(1)) as f32 * percentile).round() as usize;
        let scale = sorted.get(index).copied().unwrap_or(0.0);
        for v in &mut self.values {
            *v = if scale > 0.0 {
                (v.abs() / scale).min(1.0)
            } else {
                0.0
            };
        }
        self
    }
}

/// Activations and gradients of the class score at the target layer.
pub struct TargetGradients {
    /// `[K, h, w]` activations, row-major per channel.
    pub activations: Vec<f32>,
    /// `[K, h, w]` ∂score/∂activations.
    pub gradients: Vec<f32>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// The same gradients as a tensor (for rule backpropagation).
    pub gradient_tensor: Tensor<4>,
}

/// ∂ logit[class] / ∂ target activations, by cutting the graph at the target layer.
pub fn target_gradients<M: Explainable>(
    model: &M,
    x: Tensor<4>,
    class: usize,
) -> Result<TargetGradients, MlError> {
    check_autodiff(&x)?;
    let features = model.target_features(x.detach()).detach().require_grad();
    let logits = model.head(features.clone());
    let [_, classes] = logits.dims();
    if class >= classes {
        return Err(MlError::Input(format!(
            "class {class} out of range (model has {classes})"
        )));
    }
    let score = logits.slice([0..1, class..class + 1]).sum();
    let grads = score.backward();
    let gradient = features.grad(&grads).ok_or_else(|| {
        MlError::Input("the class score does not depend on the target layer".into())
    })?;
    let [_, k, h, w] = features.dims();
    Ok(TargetGradients {
        activations: tensor_to_vec(features.detach())?,
        gradients: tensor_to_vec(gradient.clone())?,
        channels: k,
        height: h,
        width: w,
        gradient_tensor: gradient.autodiff(),
    })
}

/// `ReLU(Σ_k w_k A_k)` at feature resolution, with `w_k = weight(g_k, A_k)` per channel.
fn weighted_activation_map(
    t: &TargetGradients,
    weight: impl Fn(&[f32], &[f32]) -> f32,
) -> ModelMap {
    let plane = t.height * t.width;
    let mut cam = vec![0.0_f32; plane];
    for k in 0..t.channels {
        let g = &t.gradients[k * plane..(k + 1) * plane];
        let a = &t.activations[k * plane..(k + 1) * plane];
        let w = weight(g, a);
        for (c, &av) in cam.iter_mut().zip(a) {
            *c += w * av;
        }
    }
    for c in &mut cam {
        *c = c.max(0.0);
    }
    ModelMap {
        width: t.width,
        height: t.height,
        values: cam,
    }
}

/// Grad-CAM (Selvaraju et al.): ReLU(Σ_k α_k A_k), α_k = mean of ∂y/∂A_k. At feature resolution,
/// not normalised.
pub fn grad_cam_raw(t: &TargetGradients) -> ModelMap {
    weighted_activation_map(t, |g, _| g.iter().sum::<f32>() / g.len() as f32)
}

/// Grad-CAM++ (Chattopadhyay et al.), with the exponential-score closed form used by the reference
/// implementations: α = g² / (2g² + Σ_ab A · g³), w_k = Σ α · ReLU(g). At feature resolution.
pub fn grad_cam_plus_plus_raw(t: &TargetGradients) -> ModelMap {
    weighted_activation_map(t, |g, a| {
        let sum_a: f32 = a.iter().sum();
        g.iter()
            .map(|&gv| {
                let g2 = gv * gv;
                let denom = 2.0 * g2 + sum_a * g2 * gv;
                let alpha = if gv != 0.0 && denom != 0.0 {
                    g2 / denom
                } else {
                    0.0
                };
                alpha * gv.max(0.0)
            })
            .sum()
    })
}

/// Upsample a feature-resolution map to `size × size` (bilinear, pixel centres aligned).
pub fn upsample(map: &ModelMap, size: usize) -> ModelMap {
    ModelMap {
        width: size,
        height: size,
        values: resize_bilinear(&map.values, map.width, map.height, size, size),
    }
}

/// Gradient of the class score at the input with `rule` at every ReLU. `[S × S]`, signed.
pub fn rule_gradient<M: Explainable>(
    model: &M,
    x: Tensor<4>,
    class: usize,
    rule: ReluRule,
) -> Result<ModelMap, MlError> {
    let t = target_gradients(model, x.clone(), class)?;
    let [_, _, h, w] = x.dims();
    let g = model.backprop_features(x, t.gradient_tensor, rule);
    Ok(ModelMap {
        width: w,
        height: h,
        values: tensor_to_vec(g)?,
    })
}

/// Plain input gradient through the whole network by autodiff (the reference for
/// [`ReluRule::Plain`]). `[S × S]`, signed.
pub fn input_gradient<M: Explainable>(
    model: &M,
    x: Tensor<4>,
    class: usize,
) -> Result<ModelMap, MlError> {
    check_autodiff(&x)?;
    let [_, _, h, w] = x.dims();
    let leaf = x.detach().require_grad();
    let logits = model.head(model.target_features(leaf.clone()));
    let grads = logits.slice([0..1, class..class + 1]).sum().backward();
    let g = leaf
        .grad(&grads)
        .ok_or_else(|| MlError::Input("no gradient at the input".into()))?;
    Ok(ModelMap {
        width: w,
        height: h,
        values: tensor_to_vec(g)?,
    })
}

/// SmoothGrad (Smilkov et al.): mean |∂y/∂x| over `samples` copies of `x` with Gaussian noise of
/// standard deviation `noise_fraction × (max − min)` of the input.
pub fn smooth_grad<M: Explainable>(
    model: &M,
    x: Tensor<4>,
    class: usize,
    samples: usize,
    noise_fraction: f32,
) -> Result<ModelMap, MlError> {
    let values = tensor_to_vec(x.clone().detach())?;
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let sigma = (noise_fraction * (hi - lo).max(1e-6)) as f64;
    let [_, _, h, w] = x.dims();
    let mut sum = vec![0.0_f32; h * w];
    let samples = samples.max(1);
    for _ in 0..samples {
        let noise = Tensor::<4>::random(x.dims(), Distribution::Normal(0.0, sigma), &x.device());
        let g = input_gradient(model, x.clone().detach() + noise, class)?;
        for (s, v) in sum.iter_mut().zip(g.values) {
            *s += v.abs();
        }
    }
    for s in &mut sum {
        *s /= samples as f32;
    }
    Ok(ModelMap {
        width: w,
        height: h,
        values: sum,
    })
}

/// Compute `method` for `class` at input resolution, normalised to [0, 1]. `lung_probability` (the
/// predicted mask at input resolution) is needed only for [`Method::LungCroppedCam`].
pub fn explain<M: Explainable>(
    model: &M,
    x: Tensor<4>,
    class: usize,
    method: Method,
    lung_probability: Option<&ModelMap>,
) -> Result<ModelMap, MlError> {
    let [_, _, size, _] = x.dims();
    let map = match method {
        Method::GradCam => {
            upsample(&grad_cam_raw(&target_gradients(model, x, class)?), size).normalised_by_max()
        }
        Method::GradCamPlusPlus => upsample(
            &grad_cam_plus_plus_raw(&target_gradients(model, x, class)?),
            size,
        )
        .normalised_by_max(),
        Method::GuidedBackprop => {
            rule_gradient(model, x, class, ReluRule::Guided)?.normalised_abs_percentile(0.995)
        }
        Method::Deconvnet => {
            rule_gradient(model, x, class, ReluRule::Deconv)?.normalised_abs_percentile(0.995)
        }
        Method::GuidedGradCam => {
            let cam = upsample(
                &grad_cam_raw(&target_gradients(model, x.clone(), class)?),
                size,
            )
            .normalised_by_max();
            let gb = rule_gradient(model, x, class, ReluRule::Guided)?;
            let values = gb
                .values
                .iter()
                .zip(&cam.values)
                .map(|(g, c)| g.max(0.0) * c)
                .collect();
            ModelMap {
                width: gb.width,
                height: gb.height,
                values,
            }
            .normalised_abs_percentile(0.995)
        }
        Method::SmoothGrad => {
            smooth_grad(model, x, class, 16, 0.15)?.normalised_abs_percentile(0.995)
        }
        Method::LungCroppedCam => {
            let lungs = lung_probability.ok_or_else(|| {
                MlError::Input("the lung-cropped CAM needs a predicted lung mask".into())
            })?;
            let cam = upsample(&grad_cam_raw(&target_gradients(model, x, class)?), size)
                .normalised_by_max();
            if lungs.values.len() != cam.values.len() {
                return Err(MlError::Input("lung mask and CAM sizes differ".into()));
            }
            let values = cam
                .values
                .iter()
                .zip(&lungs.values)
                .map(|(c, &p)| if p >= 0.5 { *c } else { 0.0 })
                .collect();
            ModelMap {
                width: cam.width,
                height: cam.height,
                values,
            }
            .normalised_by_max()
        }
    };
    Ok(map)
}

fn check_autodiff(x: &Tensor<4>) -> Result<(), MlError> {
    if x.device().is_autodiff() {
        Ok(())
    } else {
        Err(MlError::Input(
            "explanations need an autodiff device".into(),
        ))
    }
}
