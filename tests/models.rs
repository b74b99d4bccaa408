//! The shipped model bundles: each loads on the CPU device, the lung network keeps its validation
//! Dice on held-out patients, a shared DICOM is analysed end to end, and broken bundles are errors.

mod common;

use burn::module::Module;
use burn::prelude::*;
use common::{RSNA, dicom, shared_data};
use cxrlens::ml::analysis::{AnalysisRequest, ExplainTarget, Models, analyze};
use cxrlens::ml::bundle::{BundleInfo, LoadedModel, ModelKind, discover, load_bundle, save_module};
use cxrlens::ml::data::{prepare, read_labels, split_by_patient};
use cxrlens::ml::explain::Method;
use cxrlens::ml::metrics::dice;
use cxrlens::ml::preprocess::batch_tensor;
use cxrlens::ml::resnet::ResNetConfig;
use cxrlens::ml::saliency::SaliencyNetConfig;
use cxrlens::ml::tensor_to_vec;

fn cpu() -> Device {
    Device::flex().autodiff()
}

fn shipped() -> Vec<BundleInfo> {
    common::isolate_user_dirs();
    let (bundles, problems) = discover();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        bundles.iter().all(|b| b.shipped),
        "a user's own models leaked into the test"
    );
    bundles.into_iter().filter(|b| b.shipped).collect()
}

/// The shipped bundle of `kind`.
fn shipped_bundle(kind: ModelKind) -> BundleInfo {
    shipped()
        .into_iter()
        .find(|b| b.card.kind == kind)
        .unwrap_or_else(|| panic!("no shipped {kind:?} bundle"))
}

#[test]
fn every_shipped_bundle_loads_on_the_cpu_device() {
    let bundles = shipped();
    let kinds: Vec<ModelKind> = bundles.iter().map(|b| b.card.kind).collect();
    assert!(kinds.contains(&ModelKind::Lung), "{kinds:?}");
    assert!(kinds.contains(&ModelKind::Classifier), "{kinds:?}");
    for b in &bundles {
        assert!(
            b.dir.join("MODEL_CARD.md").is_file(),
            "{} has no MODEL_CARD.md",
            b.title()
        );
        let model = load_bundle(b, &cpu()).unwrap_or_else(|e| panic!("{}: {e}", b.title()));
        let size = b.card.input_size;
        let x = Tensor::<4>::zeros([1, 1, size, size], &Device::flex());
        match model {
            LoadedModel::Lung(m, c) => {
                assert_eq!(c.class_names, b.card.class_names);
                let out = m.valid().forward(x);
                assert_eq!(out.mask_logits.dims(), [1, 1, size, size]);
                assert_eq!(out.class_logits.dims(), [1, c.class_names.len()]);
            }
            LoadedModel::Classifier(m, c) => {
                assert_eq!(m.valid().forward(x).dims(), [1, c.class_names().len()]);
            }
            LoadedModel::Saliency(..) => {}
        }
    }
}

#[test]
fn lung_network_keeps_its_dice_on_held_out_patients() {
    let bundle = shipped_bundle(ModelKind::Lung);
    let Ok(LoadedModel::Lung(model, config)) = load_bundle(&bundle, &cpu()) else {
        panic!("lung bundle did not load")
    };
    let root = shared_data().join("cxr-ieee8023");
    let (records, _) = read_labels(&root).unwrap();
    // The same patient-wise split the card describes (fraction 0.2, seed 42).
    let (_, validation) = split_by_patient(&records, 0.2, 42);
    let held_out: Vec<_> = validation
        .iter()
        .map(|&i| records[i].clone())
        .filter(|r| r.mask.is_some())
        .collect();
    assert!(
        held_out.len() >= 30,
        "only {} held-out masks",
        held_out.len()
    );
    let (samples, problems) = prepare(&held_out, &config.class_names, config.input_size, true);
    assert!(problems.is_empty(), "{problems:?}");
    let model = model.valid();
    let mut dices = Vec::new();
    for chunk in samples.chunks(16) {
        let inputs: Vec<_> = chunk.iter().map(|s| &s.input).collect();
        let logits = tensor_to_vec(
            model
                .forward(batch_tensor(&inputs, &Device::flex()))
                .mask_logits,
        )
        .unwrap();
        let plane = config.input_size * config.input_size;
        for (i, s) in chunk.iter().enumerate() {
            let m = s.mask.as_ref().unwrap();
            let pred: Vec<bool> = logits[i * plane..(i + 1) * plane]
                .iter()
                .map(|z| *z > 0.0)
                .collect();
            let target: Vec<bool> = m.target.iter().map(|t| *t > 0.5).collect();
            dices.push(dice(&pred, &target, &m.weight));
        }
    }
    let mean = dices.iter().sum::<f64>() / dices.len() as f64;
    let card = bundle.card.metrics["dice"];
    assert!(
        (mean - card).abs() < 0.005,
        "held-out Dice {mean:.4} but the card says {card:.4}"
    );
    assert!(mean >= 0.9, "held-out Dice {mean:.4}");
}

#[test]
fn a_shared_dicom_is_analysed_end_to_end() {
    let loaded = cxrlens::io::load_image(&dicom(RSNA)).unwrap();
    let (models, problems) = Models::load(&shipped(), &cpu());
    assert!(problems.is_empty(), "{problems:?}");
    for (method, target) in [
        (Method::GradCam, ExplainTarget::Classifier),
        (Method::LungCroppedCam, ExplainTarget::LungHead),
    ] {
        let request = AnalysisRequest::of(&loaded, method, target);
        let mut steps = Vec::new();
        let result = analyze(&models, &request, &mut |f, s| {
            steps.push((f, s.to_string()));
            true
        })
        .unwrap();
        assert!(
            steps.windows(2).all(|w| w[0].0 <= w[1].0),
            "progress went backwards: {steps:?}"
        );
        let (w, h) = (loaded.image.width, loaded.image.height);
        let mask = result.lung_probability.expect("a lung mask");
        let heat = result.heatmap.expect("a heatmap");
        assert_eq!(
            (mask.width, mask.height, heat.width, heat.height),
            (w, h, w, h)
        );
        assert!(heat.values.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(
            heat.values.iter().any(|v| *v > 0.5),
            "{method:?}: heatmap is empty"
        );
        let lung_fraction =
            mask.values.iter().filter(|v| **v >= 0.5).count() as f64 / mask.values.len() as f64;
        assert!(
            (0.1..0.7).contains(&lung_fraction),
            "lung area {lung_fraction:.2} of a normal PA chest"
        );
        for p in &result.predictions {
            let sum: f32 = p.classes.iter().map(|c| c.1).sum();
            assert!(
                (sum - 1.0).abs() < 1e-4,
                "{}: probabilities sum to {sum}",
                p.model_title
            );
        }
        if method == Method::LungCroppedCam {
            // Both maps are bilinear resamplings of the same grid, where heat is zero wherever the
            // lung probability is below ½; so at any image pixel heat ≤ 2 × lung probability.
            for (hv, mv) in heat.values.iter().zip(&mask.values) {
                assert!(
                    *hv <= 2.0 * mv + 1e-5,
                    "heat {hv} outside the lungs (mask {mv})"
                );
            }
        }
    }
}

#[test]
fn broken_bundles_are_errors_not_panics() {
    let original = shipped_bundle(ModelKind::Classifier);
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "card.json", "weights.bpk"] {
        std::fs::copy(original.dir.join(f), dir.path().join(f)).unwrap();
    }
    let info = BundleInfo::open(dir.path(), false).unwrap();
    // Truncated weights.
    let bytes = std::fs::read(dir.path().join("weights.bpk")).unwrap();
    std::fs::write(dir.path().join("weights.bpk"), &bytes[..bytes.len() / 3]).unwrap();
    assert!(load_bundle(&info, &cpu()).is_err());
    // Weights of another architecture (the EfficientNet weights under a ResNet config).
    std::fs::write(dir.path().join("weights.bpk"), &bytes).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    config["architecture"] = serde_json::json!("resnet");
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let err = load_bundle(&info, &cpu())
        .err()
        .expect("a mismatched architecture must not load");
    assert!(!err.to_string().is_empty());
    // A card that names more classes than the network's head computes.
    std::fs::copy(
        original.dir.join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("weights.bpk"), &bytes).unwrap();
    assert!(
        load_bundle(&info, &cpu()).is_ok(),
        "the restored copy loads"
    );
    let mut card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("card.json")).unwrap()).unwrap();
    card["class_names"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!("extra"));
    std::fs::write(dir.path().join("card.json"), card.to_string()).unwrap();
    let inconsistent = BundleInfo::open(dir.path(), false).unwrap();
    let err = load_bundle(&inconsistent, &cpu())
        .err()
        .expect("card and network disagree on the classes");
    assert!(err.to_string().contains("classes"), "{err}");
    // Not JSON.
    std::fs::write(dir.path().join("config.json"), "not json").unwrap();
    assert!(load_bundle(&info, &cpu()).is_err());
}

#[test]
fn saliency_net_outputs_a_distribution_and_round_trips_through_a_bundle() {
    let device = cpu();
    let classifier = ResNetConfig::new(vec!["a".into(), "b".into()])
        .with_input_size(64)
        .with_base_channels(8)
        .init(&device)
        .valid();
    let config = SaliencyNetConfig::new(32)
        .with_input_size(64)
        .with_base_channels(8)
        .with_depth(3);
    let net = config.init(&device).valid();
    let x = Tensor::<4>::random(
        [2, 1, 64, 64],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &Device::flex(),
    );
    let features = classifier.features(x.clone());
    let out = net.forward(x.clone(), features.clone());
    assert_eq!(out.dims(), [2, 1, 64, 64]);
    let v = tensor_to_vec(out).unwrap();
    for image in v.chunks(64 * 64) {
        assert!(image.iter().all(|p| *p >= 0.0));
        assert!((image.iter().sum::<f32>() - 1.0).abs() < 1e-3);
    }
    // Save as a bundle and load it back: the same output.
    let dir = tempfile::tempdir().unwrap();
    save_module(net.clone(), &dir.path().join("weights.bpk")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let card = serde_json::json!({
        "kind": "saliency", "name": "test", "version": "0", "class_names": [], "input_size": 64,
        "parameters": 0, "data": "", "epochs": 0, "device": "", "training_seconds": 0.0,
        "metrics": {}, "limitations": [], "simulated_gaze": true, "command": ""
    });
    std::fs::write(dir.path().join("card.json"), card.to_string()).unwrap();
    let info = BundleInfo::open(dir.path(), false).unwrap();
    let Ok(LoadedModel::Saliency(loaded, _)) = load_bundle(&info, &device) else {
        panic!("saliency bundle did not load")
    };
    let again = tensor_to_vec(loaded.valid().forward(x, features)).unwrap();
    let worst = v
        .iter()
        .zip(&again)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0_f32, f32::max);
    assert!(worst < 1e-6, "{worst}");
}

#[test]
fn lung_network_keeps_its_image_resolution_dice_on_held_out_patients() {
    // What the card reports and the viewer shows: the cleaned-up mask resampled onto each image,
    // against the full-resolution human mask (ignore pixels excluded).
    let bundle = shipped_bundle(ModelKind::Lung);
    let e = cxrlens::ml::eval::evaluate_lung(
        &bundle,
        &shared_data().join("cxr-ieee8023"),
        &cxrlens::ml::train::SplitSpec::of_bundle(&bundle),
        &Device::flex(),
        true,
    )
    .unwrap();
    let card = &bundle.card.metrics;
    println!(
        "{} held-out masks: mean {:.4}, median {:.4}, 5th percentile {:.4}",
        e.images, e.dice_image, e.dice_image_median, e.dice_image_p05
    );
    for (name, value) in [
        ("dice_image_resolution", e.dice_image),
        ("dice_image_resolution_median", e.dice_image_median),
        ("dice_image_resolution_p05", e.dice_image_p05),
    ] {
        assert!(
            (value - card[name]).abs() < 2e-3,
            "{name}: {value:.4}, card {:.4}",
            card[name]
        );
    }
    // The per-image list (eval --out writes it as lung-dice.csv) is the same images, worst first.
    assert_eq!(e.per_image.len(), e.images);
    assert!(e.per_image.windows(2).all(|w| w[0].1 <= w[1].1));
    let mean = e.per_image.iter().map(|(_, d)| d).sum::<f64>() / e.images as f64;
    assert!((mean - e.dice_image).abs() < 1e-9);
    let ids: std::collections::HashSet<_> = e.per_image.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), e.images, "an image counted twice");
    // The card names the held-out images that are second copies of training radiographs and
    // says the figures without them are not lower: both re-derived here.
    use cxrlens::ml::train::{HeldOut, SplitSpec};
    let (records, _) = read_labels(&shared_data().join("cxr-ieee8023")).unwrap();
    let spec = SplitSpec::of_bundle(&bundle);
    let training = SplitSpec {
        held_out: HeldOut::Training,
        ..spec
    }
    .indices(&records);
    let (pairs, _) =
        cxrlens::ml::near_identical::leaks(&records, &spec.indices(&records), &training);
    let leaked: std::collections::HashSet<&str> =
        pairs.iter().map(|p| records[p.a].id.as_str()).collect();
    let limitations = bundle.card.limitations.join(" ");
    assert!(!leaked.is_empty());
    for id in &leaked {
        assert!(limitations.contains(id), "the card does not name {id}");
    }
    let kept: Vec<f64> = e
        .per_image
        .iter()
        .filter(|(id, _)| !leaked.contains(id.as_str()))
        .map(|(_, d)| *d)
        .collect();
    let without = cxrlens::ml::eval::DiceSummary::of_sorted(&kept).unwrap();
    let text = format!(
        "{} masks: mean {:.4}, median {:.4}, 5th percentile {:.4}",
        kept.len(),
        without.mean,
        without.median,
        without.p05
    );
    assert!(
        limitations.contains(&text),
        "the card does not say {text:?}"
    );
    assert!(without.mean >= e.dice_image && without.p05 >= e.dice_image_p05);
}

#[test]
fn training_split_is_the_rest_of_the_patients() {
    // `eval --split training` (the fit on the training patients): the images that are neither
    // validation nor test, and no patient on both sides.
    use cxrlens::ml::train::{HeldOut, SplitSpec};
    let bundle = shipped_bundle(ModelKind::Lung);
    let (records, _) = read_labels(&shared_data().join("cxr-ieee8023")).unwrap();
    let part = |held_out| {
        let spec = SplitSpec {
            held_out,
            ..SplitSpec::of_bundle(&bundle)
        };
        spec.indices(&records)
    };
    let (training, validation, test) = (
        part(HeldOut::Training),
        part(HeldOut::Validation),
        part(HeldOut::Test),
    );
    assert!(!training.is_empty() && !validation.is_empty());
    let mut all: Vec<usize> = [&training[..], &validation[..], &test[..]].concat();
    all.sort_unstable();
    assert_eq!(all, (0..records.len()).collect::<Vec<_>>());
    let patients = |ix: &[usize]| -> std::collections::HashSet<String> {
        ix.iter().map(|&i| records[i].patient_id.clone()).collect()
    };
    let (t, v) = (patients(&training), patients(&validation));
    assert!(t.is_disjoint(&v), "{:?}", t.intersection(&v).next());
}

#[test]
fn radiographs_listed_twice_are_found_as_the_independent_reference_finds_them() {
    // tests/fixtures/near_identical_ieee8023.json: Pillow's box resampling + numpy correlation
    // (scripts/reference/near_identical.py) over every image of cxr-ieee8023.
    use cxrlens::ml::near_identical::{NEAR_IDENTICAL_R, leaks, near_identical_pairs};
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/near_identical_ieee8023.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(fixture["threshold"].as_f64().unwrap(), NEAR_IDENTICAL_R);
    let (records, _) = read_labels(&shared_data().join("cxr-ieee8023")).unwrap();
    assert_eq!(records.len() as u64, fixture["images"].as_u64().unwrap());
    let (pairs, problems) = near_identical_pairs(&records);
    assert!(problems.is_empty(), "{problems:?}");
    let key = |a: &str, b: &str| {
        if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        }
    };
    let mut found: Vec<(String, String, f64)> = pairs
        .iter()
        .map(|p| {
            let (a, b) = key(&records[p.a].id, &records[p.b].id);
            (a, b, p.r)
        })
        .collect();
    found.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    let mut expected: Vec<(String, String, f64)> = fixture["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let (a, b) = key(p["a"].as_str().unwrap(), p["b"].as_str().unwrap());
            (a, b, p["r"].as_f64().unwrap())
        })
        .collect();
    expected.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    assert!(!expected.is_empty());
    assert_eq!(
        found.iter().map(|f| (&f.0, &f.1)).collect::<Vec<_>>(),
        expected.iter().map(|f| (&f.0, &f.1)).collect::<Vec<_>>()
    );
    for (f, e) in found.iter().zip(&expected) {
        assert!((f.2 - e.2).abs() < 1e-3, "{f:?} vs {e:?}");
    }
    // `leaks` (held-out × training only) finds the same pairs that straddle a split.
    let held: Vec<usize> = (0..records.len()).filter(|i| i % 2 == 0).collect();
    let train: Vec<usize> = (0..records.len()).filter(|i| i % 2 == 1).collect();
    let (crossing, _) = leaks(&records, &held, &train);
    let straddling: Vec<_> = pairs
        .iter()
        .filter(|p| p.a % 2 != p.b % 2)
        .map(|p| if p.a % 2 == 0 { (p.a, p.b) } else { (p.b, p.a) })
        .collect();
    let mut got: Vec<_> = crossing.iter().map(|p| (p.a, p.b)).collect();
    got.sort_unstable();
    let mut want = straddling;
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn classifier_keeps_its_test_split_figures() {
    let bundle = shipped_bundle(ModelKind::Classifier);
    let spec = cxrlens::ml::train::SplitSpec::of_bundle(&bundle);
    assert_eq!(
        spec.held_out,
        cxrlens::ml::train::HeldOut::Test,
        "the card's figures come from a test split"
    );
    let (e, _) = cxrlens::ml::train::evaluate_bundle(
        &shared_data().join("kermany-pneumonia"),
        &bundle,
        &spec,
        &Device::flex(),
    )
    .unwrap();
    let card = &bundle.card.metrics;
    let (name, auc) = &e.per_class_auc[1];
    println!(
        "test split: {} images, AUC({name}) {:.4} [{:.4}, {:.4}], accuracy {:.4}",
        e.images, auc.auc, auc.ci_low, auc.ci_high, e.accuracy
    );
    assert_eq!(e.images as f64, card["test_images"]);
    assert!((auc.auc - card[&format!("test_auc_{name}")]).abs() < 1e-3);
    assert!((e.accuracy - card["test_accuracy"]).abs() < 1e-3);
    // The operating point the card states, re-measured on the same images.
    let calibration = bundle
        .card
        .calibration
        .as_ref()
        .expect("a calibrated classifier");
    let op = e.operating_point.as_ref().expect("an operating point");
    assert!((op.sensitivity - calibration.sensitivity).abs() < 1e-3);
    assert!((op.specificity - calibration.specificity).abs() < 1e-3);
    assert!((op.ece_calibrated - calibration.ece_after).abs() < 1e-3);
}
