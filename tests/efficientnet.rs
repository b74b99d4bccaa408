//! EfficientNet-Lite0: the ImageNet weights imported through burn's PyTorch store give the outputs
//! of an independent PyTorch implementation of the network (`tests/fixtures/
//! efficientnet_lite0_reference.json`, written by `scripts/reference/efficientnet_lite0.py`, which
//! also checks that network on two natural photographs); its explanations follow the ReLU6 rules.

mod common;

use std::path::PathBuf;

use burn::module::Module;
use burn::prelude::*;
use common::shared_data;
use cxrlens::ml::blocks::ReluRule;
use cxrlens::ml::efficientnet::{EfficientNetLiteConfig, import_imagenet};
use cxrlens::ml::explain::{Method, explain, input_gradient, rule_gradient};
use cxrlens::ml::tensor_to_vec;

fn weights() -> PathBuf {
    let p = shared_data().join("../pretrained/efficientnet-lite0/efficientnet-lite0-57934424.pth");
    assert!(p.is_file(), "missing {}", p.display());
    p
}

/// The fixture's grey input: ((i − s/2)² + 3 (j − s/3)²) mod 251 / 125 − 1, exact in f32.
fn fixed_input(size: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(size * size);
    for i in 0..size as i64 {
        for j in 0..size as i64 {
            let (ci, cj) = ((size / 2) as i64, (size / 3) as i64);
            let r = ((i - ci).pow(2) + 3 * (j - cj).pow(2)).rem_euclid(251);
            v.push((r as f64 / 125.0 - 1.0) as f32);
        }
    }
    v
}

#[derive(serde::Deserialize)]
struct Case {
    size: usize,
    logits: Vec<f32>,
    pooled: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/efficientnet_lite0_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// ‖a − b‖ / ‖b‖.
fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn imagenet_config(size: usize, channels: usize) -> EfficientNetLiteConfig {
    EfficientNetLiteConfig::new((0..1000).map(|i| i.to_string()).collect())
        .with_input_size(size)
        .with_input_channels(channels)
}

fn top5(v: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(5);
    idx
}

#[test]
fn imported_imagenet_network_matches_pytorch() {
    let device = Device::flex();
    for case in fixture().cases {
        let s = case.size;
        let model = import_imagenet(&weights(), &imagenet_config(s, 1), &device).unwrap();
        let x = Tensor::<1>::from_floats(fixed_input(s).as_slice(), &device).reshape([1, 1, s, s]);
        let logits = tensor_to_vec(model.forward(x.clone())).unwrap();
        let pooled = tensor_to_vec(model.pooled(x)).unwrap();
        let e_logits = relative_l2(&logits, &case.logits);
        let e_pooled = relative_l2(&pooled, &case.pooled);
        println!("{s}²: logits rel L2 {e_logits:.2e}, pooled features {e_pooled:.2e}");
        assert!(
            e_logits < 1e-4,
            "{s}²: logits differ from PyTorch, rel L2 {e_logits}"
        );
        assert!(
            e_pooled < 1e-4,
            "{s}²: pooled features differ, rel L2 {e_pooled}"
        );
        assert_eq!(top5(&logits), top5(&case.logits), "{s}²: top-5 classes");
    }
}

#[test]
fn three_channel_import_gives_the_same_network_as_the_summed_grey_stem() {
    let device = Device::flex();
    let s = 64;
    let grey = import_imagenet(&weights(), &imagenet_config(s, 1), &device).unwrap();
    let rgb = import_imagenet(&weights(), &imagenet_config(s, 3), &device).unwrap();
    let x1 = Tensor::<1>::from_floats(fixed_input(s).as_slice(), &device).reshape([1, 1, s, s]);
    let x3 = x1.clone().repeat_dim(1, 3);
    let a = tensor_to_vec(grey.forward(x1)).unwrap();
    let b = tensor_to_vec(rgb.forward(x3)).unwrap();
    assert!(relative_l2(&a, &b) < 1e-5, "{}", relative_l2(&a, &b));
}

#[test]
fn a_new_head_has_the_dataset_classes_and_bad_files_are_errors() {
    let device = Device::flex();
    let config = EfficientNetLiteConfig::new(vec!["normal".into(), "pneumonia".into()]);
    let model = import_imagenet(&weights(), &config, &device).unwrap();
    let x = Tensor::<4>::zeros([2, 1, 224, 224], &device);
    assert_eq!(model.forward(x).dims(), [2, 2]);

    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("not-weights.pth");
    std::fs::write(&text, b"hello").unwrap();
    assert!(import_imagenet(&text, &config, &device).is_err());
    assert!(import_imagenet(&dir.path().join("missing.pth"), &config, &device).is_err());
    // A PyTorch file of another network: parameters missing.
    let lung = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/lung-unet/weights.bpk");
    assert!(import_imagenet(&lung, &config, &device).is_err());
}

#[test]
fn relu6_rule_backprop_reproduces_the_autodiff_input_gradient() {
    let device = Device::flex().autodiff();
    // ImageNet weights and head: activations do reach the ReLU6 clip, so its closed mask is
    // exercised, and the top class has positive evidence for Grad-CAM to show.
    let model = import_imagenet(&weights(), &imagenet_config(64, 1), &device)
        .unwrap()
        .freeze();
    let x = Tensor::<1>::from_floats(fixed_input(64).as_slice(), &device).reshape([1, 1, 64, 64]);
    let logits = tensor_to_vec(model.valid().forward(x.clone().inner())).unwrap();
    let top = top5(&logits)[0];
    for class in [top, 7] {
        let reference = input_gradient(&model, x.clone(), class).unwrap();
        let rule = rule_gradient(&model, x.clone(), class, ReluRule::Plain).unwrap();
        assert!(reference.values.iter().any(|v| *v != 0.0));
        let e = relative_l2(&rule.values, &reference.values);
        assert!(e < 1e-4, "class {class}: rel L2 {e}");
        // Guided backprop differs from the plain gradient (it drops negative signals).
        let guided = rule_gradient(&model, x.clone(), class, ReluRule::Guided).unwrap();
        assert!(relative_l2(&guided.values, &reference.values) > 1e-3);
    }
    for method in Method::ALL {
        if method == Method::LungCroppedCam {
            continue;
        }
        let map = explain(&model, x.clone(), top, method, None).unwrap();
        assert_eq!((map.width, map.height), (64, 64));
        assert!(
            map.values
                .iter()
                .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
        );
        assert!(
            map.values.iter().any(|&v| v > 0.0),
            "{}: all zero",
            method.label()
        );
    }
}

#[test]
fn lung_network_on_the_pretrained_encoder_gives_both_outputs_and_its_explanations() {
    use cxrlens::ml::lung::{EFFICIENTNET, LungNetConfig};
    let device = Device::flex().autodiff();
    let config = LungNetConfig::new(vec!["a".into(), "b".into(), "c".into()])
        .with_input_size(64)
        .with_encoder(Some(EFFICIENTNET.into()));
    let backbone = import_imagenet(
        &weights(),
        &EfficientNetLiteConfig::new(vec!["unused".into()]).with_input_size(64),
        &device,
    )
    .unwrap();
    let model = config.init(&device).with_backbone(backbone).freeze();
    let x = Tensor::<1>::from_floats(fixed_input(64).as_slice(), &device).reshape([1, 1, 64, 64]);
    let out = model.valid().forward(x.clone().inner());
    assert_eq!(out.mask_logits.dims(), [1, 1, 64, 64]);
    assert_eq!(out.class_logits.dims(), [1, 3]);
    assert_eq!(out.pooled.dims(), [1, 320]);
    // The gate reads block 11's output (112 channels at 4×4 for a 64² input) pooled to 2×2.
    assert_eq!(out.gate.dims(), [1, 448]);
    // The plain-rule backprop through the encoder reproduces the autodiff input gradient.
    for class in 0..3 {
        let reference = input_gradient(&model, x.clone(), class).unwrap();
        let rule = rule_gradient(&model, x.clone(), class, ReluRule::Plain).unwrap();
        assert!(reference.values.iter().any(|v| *v != 0.0));
        let e = relative_l2(&rule.values, &reference.values);
        assert!(e < 1e-4, "class {class}: rel L2 {e}");
    }
    // Its weights go through a bundle file and back.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.bpk");
    cxrlens::ml::bundle::save_module(model.clone(), &path).unwrap();
    let back = cxrlens::ml::bundle::load_into(config.init(&device), &path).unwrap();
    let a = tensor_to_vec(model.valid().forward(x.clone().inner()).mask_logits).unwrap();
    let b = tensor_to_vec(back.valid().forward(x.inner()).mask_logits).unwrap();
    assert!(relative_l2(&b, &a) < 1e-6);
}
