//! Batches on the device, the losses, and the wgpu step with the heads in separate passes.

use super::*;

pub(crate) struct Batch {
    pub(crate) x: Tensor<4>,
    pub(crate) classes: Vec<usize>,
    pub(crate) mask: Option<(Tensor<4>, Tensor<4>)>,
}

pub(crate) fn make_batch(
    set: &[PreparedSample],
    chunk: &[usize],
    options: &TrainOptions,
    rng: &mut SplitMix64,
    device: &Device,
) -> Batch {
    let size = options.input_size;
    let n = chunk.len();
    let mut xs = Vec::with_capacity(n * size * size);
    let mut targets = Vec::with_capacity(n * size * size);
    let mut weights = Vec::with_capacity(n * size * size);
    let mut classes = Vec::with_capacity(n);
    let mut any_mask = false;
    for &i in chunk {
        let s = &set[i];
        let (x, m) = match &options.augment {
            Some(cfg) => augment(&s.input.values, s.mask.as_ref(), size, cfg, rng),
            None => (s.input.values.clone(), s.mask.clone()),
        };
        xs.extend_from_slice(&x);
        match m {
            Some(m) => {
                any_mask = true;
                targets.extend_from_slice(&m.target);
                weights.extend_from_slice(&m.weight);
            }
            None => {
                // No mask: this image contributes nothing to the segmentation loss.
                targets.extend(std::iter::repeat_n(0.0, size * size));
                weights.extend(std::iter::repeat_n(0.0, size * size));
            }
        }
        classes.push(s.class);
    }
    let shape = [n, 1, size, size];
    let tensor = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), device).reshape(shape);
    let mask = any_mask.then(|| (tensor(targets), tensor(weights)));
    Batch {
        x: tensor(xs),
        classes,
        mask,
    }
}

/// Class-weighted cross-entropy, mean over the batch.
pub(crate) fn weighted_cross_entropy(
    logits: Tensor<2>,
    classes: &[usize],
    class_weights: &[f32],
    device: &Device,
) -> Tensor<1> {
    let [n, k] = logits.dims();
    let mut one_hot = vec![0.0_f32; n * k];
    for (i, &c) in classes.iter().enumerate() {
        one_hot[i * k + c] = class_weights[c];
    }
    let target = Tensor::<1>::from_floats(one_hot.as_slice(), device).reshape([n, k]);
    let total_weight: f32 = classes.iter().map(|&c| class_weights[c]).sum();
    (log_softmax(logits, 1) * target)
        .sum()
        .neg()
        .div_scalar(total_weight.max(1e-6))
}

/// Weighted binary cross-entropy + soft Dice over pixels whose weight is non-zero ("ignore"
/// pixels and images without masks have weight 0).
pub(crate) fn segmentation_loss(
    logits: Tensor<4>,
    target: Tensor<4>,
    weight: Tensor<4>,
) -> Tensor<1> {
    let weight_sum = weight.clone().sum().add_scalar(1e-6);
    let bce = logits.clone().clamp_min(0.0) - logits.clone() * target.clone()
        + logits.clone().abs().neg().exp().add_scalar(1.0).log();
    let bce = (bce * weight.clone()).sum() / weight_sum;
    let p = sigmoid(logits) * weight.clone();
    let t = target * weight;
    let intersection = (p.clone() * t.clone()).sum();
    let soft_dice =
        intersection.mul_scalar(2.0).add_scalar(1.0) / (p.sum() + t.sum()).add_scalar(1.0);
    bce + soft_dice.neg().add_scalar(1.0)
}

pub(crate) fn scalar(loss: &Tensor<1>) -> Result<f64, MlError> {
    Ok(tensor_to_vec(loss.clone().detach())?
        .first()
        .copied()
        .unwrap_or(f32::NAN) as f64)
}

/// One lung-network step with the class and mask losses back-propagated in separate passes and
/// their parameter gradients summed: the same gradient as one pass of their sum (tested on flex),
/// and the form that burn-wgpu 0.22.1 computes correctly. Returns the total loss and gradients.
pub(crate) fn split_head_step(
    net: &Net,
    batch: Batch,
    class_weights: &[f32],
    options: &TrainOptions,
    device: &Device,
) -> Result<(f64, GradientsParams), MlError> {
    let Net::Lung(model) = net else {
        return Err(MlError::Data(
            "split-head steps are for the lung network".into(),
        ));
    };
    let Some((target, weight)) = batch.mask else {
        return Err(MlError::Data("split-head steps need masks".into()));
    };
    let mut accumulator = burn::optim::GradientsAccumulator::<crate::ml::lung::LungNet>::new();
    let out = model.forward(batch.x.clone());
    let class_loss =
        weighted_cross_entropy(out.class_logits, &batch.classes, class_weights, device)
            .mul_scalar(options.classification_weight);
    let mut value = scalar(&class_loss)?;
    accumulator.accumulate(
        model,
        GradientsParams::from_grads(class_loss.backward(), model),
    );
    let out = model.forward(batch.x);
    let mask_loss = segmentation_loss(out.mask_logits, target, weight);
    value += scalar(&mask_loss)?;
    accumulator.accumulate(
        model,
        GradientsParams::from_grads(mask_loss.backward(), model),
    );
    Ok((value, accumulator.grads()))
}
