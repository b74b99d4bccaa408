//! Explanations checked against what they cannot fake: a hand-built network whose Grad-CAM and
//! Grad-CAM++ are known in closed form, the autodiff input gradient (the segment-wise backprop with
//! the plain ReLU rule must reproduce it), finite differences, and the invariances of guided
//! backpropagation and deconvnet.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::relu;
use cxrlens::ml::blocks::{DoubleConv, ReluRule};
use cxrlens::ml::explain::{
    Explainable, Method, explain, grad_cam_plus_plus_raw, grad_cam_raw, input_gradient,
    rule_gradient, target_gradients,
};
use cxrlens::ml::lung::LungNetConfig;
use cxrlens::ml::resnet::ResNetConfig;
use cxrlens::ml::tensor_to_vec;

fn device() -> Device {
    Device::flex().autodiff()
}

fn tensor4(values: &[f32], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::<1>::from_floats(values, device).reshape(shape)
}

/// Target features A_k = ReLU(s_k · x) for K = 2 scales; head = GAP + linear with weights W.
struct TinyNet {
    scales: [f32; 2],
    weights: [[f32; 2]; 2],
}

impl Explainable for TinyNet {
    fn target_features(&self, x: Tensor<4>) -> Tensor<4> {
        let a = relu(x.clone().mul_scalar(self.scales[0]));
        let b = relu(x.mul_scalar(self.scales[1]));
        Tensor::cat(vec![a, b], 1)
    }
    fn head(&self, features: Tensor<4>) -> Tensor<2> {
        let [b, k, _, _] = features.dims();
        let pooled = features.mean_dim(3).mean_dim(2).reshape([b, k]);
        let w: Vec<f32> = self.weights.iter().flatten().copied().collect();
        // logits = pooled · Wᵀ  (W is [classes, K])
        let w = Tensor::<1>::from_floats(w.as_slice(), &pooled.device())
            .reshape([2, 2])
            .transpose();
        pooled.matmul(w)
    }
    fn backprop_features(&self, _x: Tensor<4>, _upstream: Tensor<4>, _rule: ReluRule) -> Tensor<4> {
        unreachable!("not used by the CAM tests")
    }
}

#[test]
fn grad_cam_of_a_linear_head_is_known_in_closed_form() {
    let device = device();
    let net = TinyNet {
        scales: [1.0, -2.0],
        weights: [[0.5, -1.0], [2.0, 3.0]],
    };
    // 2×2 input with mixed signs.
    let x_values = [1.0_f32, -0.5, 2.0, 0.25];
    let x = tensor4(&x_values, [1, 1, 2, 2], &device);
    for class in 0..2 {
        let t = target_gradients(&net, x.clone(), class).unwrap();
        // ∂y_c/∂A_k(i,j) = W[c][k] / (h·w), everywhere.
        for k in 0..2 {
            for v in &t.gradients[k * 4..(k + 1) * 4] {
                assert!(
                    (v - net.weights[class][k] / 4.0).abs() < 1e-6,
                    "class {class} k {k}: {v}"
                );
            }
        }
        let cam = grad_cam_raw(&t);
        for (i, &xv) in x_values.iter().enumerate() {
            let a0 = (net.scales[0] * xv).max(0.0);
            let a1 = (net.scales[1] * xv).max(0.0);
            let expected =
                (net.weights[class][0] / 4.0 * a0 + net.weights[class][1] / 4.0 * a1).max(0.0);
            assert!(
                (cam.values[i] - expected).abs() < 1e-6,
                "class {class} pixel {i}: {} vs {expected}",
                cam.values[i]
            );
        }
        // Grad-CAM++ with a constant gradient g_k per channel: α = g²/(2g² + S_k g³),
        // w_k = Σ_ij α·ReLU(g_k) = 4·α·ReLU(g_k); CAM = ReLU(Σ_k w_k A_k).
        let plus = grad_cam_plus_plus_raw(&t);
        let w: Vec<f32> = (0..2)
            .map(|k| {
                let g = net.weights[class][k] / 4.0;
                let s: f32 = x_values
                    .iter()
                    .map(|&xv| (net.scales[k] * xv).max(0.0))
                    .sum();
                let alpha = g * g / (2.0 * g * g + s * g * g * g);
                4.0 * alpha * g.max(0.0)
            })
            .collect();
        for (i, &xv) in x_values.iter().enumerate() {
            let expected = (w[0] * (net.scales[0] * xv).max(0.0)
                + w[1] * (net.scales[1] * xv).max(0.0))
            .max(0.0);
            assert!(
                (plus.values[i] - expected).abs() < 1e-5,
                "++ class {class} pixel {i}: {} vs {expected}",
                plus.values[i]
            );
        }
    }
}

fn random_input(size: usize, seed: u64, device: &Device) -> Tensor<4> {
    let mut s = seed;
    let values: Vec<f32> = (0..size * size)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    tensor4(&values, [1, 1, size, size], device)
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().map(|v| v.abs()).fold(0.0_f32, f32::max).max(1e-12);
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0_f32, f32::max);
    assert!(
        worst <= 1e-3 * scale,
        "{what}: max |diff| {worst} vs scale {scale}"
    );
}

#[test]
fn plain_rule_backprop_reproduces_the_autodiff_input_gradient() {
    let device = device();
    let classifier = ResNetConfig::new(vec!["a".into(), "b".into()])
        .with_input_size(32)
        .with_base_channels(4)
        .init(&device)
        .freeze();
    let lung = LungNetConfig::new(vec!["a".into(), "b".into(), "c".into()])
        .with_input_size(32)
        .with_base_channels(4)
        .with_depth(3)
        .init(&device)
        .freeze();
    let x = random_input(32, 1, &device);
    for class in 0..2 {
        let reference = input_gradient(&classifier, x.clone(), class).unwrap();
        let rule = rule_gradient(&classifier, x.clone(), class, ReluRule::Plain).unwrap();
        assert!(reference.values.iter().any(|v| *v != 0.0));
        assert_close(&rule.values, &reference.values, "classifier");
        let reference = input_gradient(&lung, x.clone(), class).unwrap();
        let rule = rule_gradient(&lung, x.clone(), class, ReluRule::Plain).unwrap();
        assert_close(&rule.values, &reference.values, "lung network");
    }
}

#[test]
fn input_gradient_matches_finite_differences() {
    let device = device();
    let model = ResNetConfig::new(vec!["a".into(), "b".into()])
        .with_input_size(16)
        .with_base_channels(4)
        .init(&device)
        .freeze();
    let x = random_input(16, 5, &device);
    let grad = input_gradient(&model, x.clone(), 1).unwrap();
    let base = tensor_to_vec(x.clone()).unwrap();
    let logit = |values: &[f32]| -> f64 {
        let t = tensor4(values, [1, 1, 16, 16], &device.clone().inner());
        let v = tensor_to_vec(model.valid().forward(t)).unwrap();
        v[1] as f64
    };
    // Central differences at the pixels with the largest gradients. The network is piecewise
    // linear (ReLU, max-pool); the weights are random per run, so a step can cross a kink. Where
    // the estimates at ε and ε/2 disagree a kink was crossed and the pixel is skipped; at least
    // three pixels must be smooth, and on those the analytic gradient must match. (ε, ε/2 and ε/4
    // must all agree: a kink crossed at two of the scales alike once made this test flaky.)
    let mut order: Vec<usize> = (0..base.len()).collect();
    order.sort_by(|&a, &b| grad.values[b].abs().total_cmp(&grad.values[a].abs()));
    let central = |i: usize, eps: f32| {
        let (mut up, mut down) = (base.clone(), base.clone());
        up[i] += eps;
        down[i] -= eps;
        (logit(&up) - logit(&down)) / (2.0 * eps as f64)
    };
    let mut checked = 0;
    for &i in order.iter().take(20) {
        let (coarse, mid, fine) = (central(i, 1e-2), central(i, 5e-3), central(i, 2.5e-3));
        let agree = |a: f64, b: f64| (a - b).abs() <= 0.01 * b.abs() + 1e-5;
        if !agree(coarse, mid) || !agree(mid, fine) {
            continue;
        }
        let analytic = grad.values[i] as f64;
        assert!(
            (fine - analytic).abs() <= 0.05 * analytic.abs() + 1e-4,
            "pixel {i}: numeric {fine} analytic {analytic}"
        );
        checked += 1;
        if checked == 5 {
            break;
        }
    }
    assert!(checked >= 3, "only {checked} pixels away from kinks");
}

#[test]
fn relu_rules_by_hand() {
    let device = device();
    let upstream = tensor4(&[1.0, -2.0, 3.0, -4.0], [1, 1, 2, 2], &device);
    let pre = tensor4(&[0.5, 0.5, -1.0, -1.0], [1, 1, 2, 2], &device);
    let v = |t| tensor_to_vec(t).unwrap();
    assert_eq!(
        v(ReluRule::Plain.apply(upstream.clone(), pre.clone())),
        vec![1.0, -2.0, 0.0, 0.0]
    );
    assert_eq!(
        v(ReluRule::Guided.apply(upstream.clone(), pre.clone())),
        vec![1.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        v(ReluRule::Deconv.apply(upstream, pre)),
        vec![1.0, 0.0, 3.0, 0.0]
    );
}

#[test]
fn guided_backprop_passes_only_positive_gradients_and_deconvnet_ignores_the_forward_sign() {
    let device = device();
    let block = DoubleConv::new(1, 3, &device).freeze();
    let x = random_input(8, 9, &device);
    let y = block.forward(x.clone());
    // An all-negative upstream gradient: guided backprop and deconvnet stop it at the last ReLU.
    let negative = y.clone().ones_like().neg();
    for rule in [ReluRule::Guided, ReluRule::Deconv] {
        let g = tensor_to_vec(block.backprop(x.clone(), negative.clone(), rule)).unwrap();
        assert!(
            g.iter().all(|v| *v == 0.0),
            "{rule:?} let a negative gradient through"
        );
    }
    // Plain backprop does let it through.
    let g = tensor_to_vec(block.backprop(x.clone(), negative, ReluRule::Plain)).unwrap();
    assert!(g.iter().any(|v| *v != 0.0));
    // Deconvnet's result depends on the upstream signal only, not on the forward input's sign
    // pattern (no pooling in the block); guided backprop's does.
    let upstream = y.clone().ones_like();
    let other_x = x.clone().neg();
    let d1 = tensor_to_vec(block.backprop(x.clone(), upstream.clone(), ReluRule::Deconv)).unwrap();
    let d2 =
        tensor_to_vec(block.backprop(other_x.clone(), upstream.clone(), ReluRule::Deconv)).unwrap();
    assert_close(&d1, &d2, "deconvnet");
    let g1 = tensor_to_vec(block.backprop(x, upstream.clone(), ReluRule::Guided)).unwrap();
    let g2 = tensor_to_vec(block.backprop(other_x, upstream, ReluRule::Guided)).unwrap();
    assert!(g1.iter().zip(&g2).any(|(a, b)| (a - b).abs() > 1e-6));
}

#[test]
fn every_method_returns_a_normalised_map_at_input_resolution() {
    let device = device();
    let lung = LungNetConfig::new(vec!["a".into(), "b".into()])
        .with_input_size(32)
        .with_base_channels(4)
        .with_depth(3)
        .init(&device)
        .freeze();
    let x = random_input(32, 3, &device);
    // Two "lungs": boxes over most of the image (an untrained network's own mask is noise that
    // may miss all of its CAM's heat).
    let lungs = cxrlens::ml::explain::ModelMap {
        width: 32,
        height: 32,
        values: (0..32 * 32)
            .map(|i| {
                let (x, y) = (i % 32, i / 32);
                let inside =
                    (3..29).contains(&y) && ((3..15).contains(&x) || (17..29).contains(&x));
                if inside { 1.0 } else { 0.0 }
            })
            .collect(),
    };
    for method in Method::ALL {
        let map = explain(&lung, x.clone(), 0, method, Some(&lungs)).unwrap();
        assert_eq!(
            (map.width, map.height, map.values.len()),
            (32, 32, 1024),
            "{method:?}"
        );
        assert!(
            map.values.iter().all(|v| (0.0..=1.0).contains(v)),
            "{method:?} out of [0, 1]"
        );
        if method == Method::LungCroppedCam {
            for (v, l) in map.values.iter().zip(&lungs.values) {
                assert!(
                    *l > 0.5 || *v == 0.0,
                    "lung-cropped CAM has heat outside the mask"
                );
            }
        }
        // Not an empty answer: finite, some heat, and another class gives another map (an all-zero
        // or class-blind map would pass the range check above).
        let other = explain(&lung, x.clone(), 1, method, Some(&lungs)).unwrap();
        for m in [&map, &other] {
            assert!(m.values.iter().all(|v| v.is_finite()), "{method:?}");
        }
        let peak =
            |m: &cxrlens::ml::explain::ModelMap| m.values.iter().copied().fold(0.0, f32::max);
        assert!(
            peak(&map) > 0.5 || peak(&other) > 0.5,
            "{method:?}: no heat for either class"
        );
        let differs = map
            .values
            .iter()
            .zip(&other.values)
            .any(|(a, b)| (a - b).abs() > 1e-3);
        assert!(differs, "{method:?}: the same map for both classes");
    }
    assert!(
        lungs.values.iter().any(|v| *v > 0.5),
        "the mask is not empty"
    );
    // Without autodiff there is no explanation, and the error says so.
    let err = explain(&lung, x.inner(), 0, Method::GradCam, None).unwrap_err();
    assert!(err.to_string().contains("autodiff"), "{err}");
}

#[test]
fn differentiable_guided_backprop_equals_the_explanation_and_reaches_the_weights() {
    let device = device();
    // Frozen BN statistics but trainable weights: the heatmap-generator loss needs both.
    let model = ResNetConfig::new(vec!["a".into(), "b".into()])
        .with_input_size(32)
        .with_base_channels(4)
        .init(&device)
        .valid()
        .train();
    let x = random_input(32, 9, &device);
    for class in 0..2 {
        let frozen = model.clone().freeze();
        let reference = rule_gradient(&frozen, x.clone(), class, ReluRule::Guided).unwrap();
        let map = model.guided_backprop_map(x.clone(), &[class]);
        let values = tensor_to_vec(map.clone().detach()).unwrap();
        assert!(reference.values.iter().any(|v| *v != 0.0));
        assert_close(&values, &reference.values, "guided backprop map");
        // A loss on the map has gradients for the weights (it did not stop at a detach).
        let grads = map.powf_scalar(2.0).sum().backward();
        let params = burn::optim::GradientsParams::from_grads(grads, &model);
        assert!(!params.is_empty(), "no weight received a gradient");
    }
}
