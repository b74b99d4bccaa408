//! The out-of-distribution gate of the shipped models: images that are not chest radiographs
//! (every decodable file of `dicom-zoo`) are flagged before any result; held-out images of each
//! model's own training domain pass at the rate its card reports; an adult radiograph passes the
//! (adult-trained) lung network's gate and is flagged by the (child-trained) classifier's.

mod common;

use burn::prelude::*;
use common::{RSNA, dicom, shared_data};
use cxrlens::ml::analysis::{AnalysisRequest, ExplainTarget, Models, analyze};
use cxrlens::ml::bundle::{BundleInfo, ModelKind, discover};
use cxrlens::ml::data::{read_labels, split_by_patient3};
use cxrlens::ml::explain::Method;
use cxrlens::ml::ood::{FeatureGate, Verdict};
use cxrlens::ml::ood_fit::{GateNet, inputs_of_files};
use cxrlens::ml::preprocess::ModelInput;
use cxrlens::ml::train::SplitSpec;

fn cpu() -> Device {
    Device::flex().autodiff()
}

fn shipped(kind: ModelKind) -> BundleInfo {
    common::isolate_user_dirs();
    let (bundles, problems) = discover();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        bundles.iter().all(|b| b.shipped),
        "a user's own models leaked into the test"
    );
    bundles
        .into_iter()
        .find(|b| b.shipped && b.card.kind == kind)
        .unwrap_or_else(|| panic!("no shipped {}", kind.noun()))
}

fn models() -> Models {
    let bundles = vec![shipped(ModelKind::Lung), shipped(ModelKind::Classifier)];
    let (models, problems) = Models::load(&bundles, &cpu());
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        models.lung_gate.is_some(),
        "the shipped lung network has no gate"
    );
    assert!(
        models.classifier_gate.is_some(),
        "the shipped classifier has no gate"
    );
    models
}

fn analyse(
    models: &Models,
    loaded: &cxrlens::io::LoadedImage,
) -> cxrlens::ml::analysis::AnalysisResult {
    let request = AnalysisRequest::of(loaded, Method::GradCam, ExplainTarget::Classifier);
    analyze(models, &request, &mut |_, _| true).unwrap()
}

#[test]
fn every_decodable_image_of_the_zoo_is_refused_as_not_a_chest_radiograph() {
    let models = models();
    let mut files: Vec<_> = std::fs::read_dir(shared_data().join("dicom-zoo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    let mut analysed = 0;
    for f in &files {
        // Files that do not decode never reach a model (the decoder's error is the answer).
        let Ok(loaded) = cxrlens::io::load_image(f) else {
            continue;
        };
        analysed += 1;
        let result = analyse(&models, &loaded);
        let name = f.file_name().unwrap().to_string_lossy();
        println!(
            "{name}: {:?} — {}",
            result.ood.verdict,
            result.ood.message().unwrap_or_default()
        );
        assert_eq!(
            result.ood.verdict,
            Verdict::NotChestRadiograph,
            "{name} was not refused: {:?}",
            result.ood
        );
        assert!(!result.ood.shows(&result.predictions[0].model_title));
    }
    assert!(analysed >= 10, "only {analysed} zoo files decoded");
}

/// Pooled features of the images `idx` of a dataset, through a bundle's network.
fn distances(
    info: &BundleInfo,
    data: &std::path::Path,
    pick: impl Fn(&cxrlens::ml::data::Split) -> Vec<usize>,
) -> Vec<f64> {
    let gate = FeatureGate::load(&info.dir).unwrap().unwrap();
    let (records, _) = read_labels(data).unwrap();
    let spec = SplitSpec::of_bundle(info);
    let split = split_by_patient3(
        &records,
        spec.validation_fraction,
        spec.test_fraction,
        spec.seed,
    );
    let files: Vec<_> = pick(&split)
        .iter()
        .map(|&i| records[i].image.clone())
        .collect();
    let (inputs, problems) = inputs_of_files(&files, info.card.input_size);
    assert!(problems.is_empty(), "{problems:?}");
    let refs: Vec<&ModelInput> = inputs.iter().collect();
    let net = GateNet::load(info, &Device::flex()).unwrap();
    net.features(&refs, &Device::flex())
        .unwrap()
        .iter()
        .map(|f| gate.distance(f))
        .collect()
}

#[test]
fn held_out_images_of_the_classifier_domain_pass_at_the_promised_rate() {
    let info = shipped(ModelKind::Classifier);
    let gate = FeatureGate::load(&info.dir).unwrap().unwrap();
    let d = distances(&info, &shared_data().join("kermany-pneumonia"), |s| {
        s.test.clone()
    });
    let rate = d.iter().filter(|&&v| v <= gate.info.threshold).count() as f64 / d.len() as f64;
    let promised = gate.info.percentile / 100.0;
    // Binomial slack: three standard errors of a rate of `promised` on this many images.
    let slack = 3.0 * (promised * (1.0 - promised) / d.len() as f64).sqrt();
    println!(
        "{} test images pass at {rate:.4} (threshold at the {}th percentile)",
        d.len(),
        gate.info.percentile
    );
    assert!(
        rate >= promised - slack,
        "pass rate {rate:.4}, promised {promised}"
    );
    // The card reports this very figure.
    let card = info.card.ood.as_ref().expect("card has the gate");
    assert!((card.measured["test_pass_rate"] - rate).abs() < 1e-9);
}

#[test]
fn an_adult_radiograph_passes_the_lung_gate_and_is_flagged_by_the_classifier() {
    let models = models();
    let loaded = cxrlens::io::load_image(&dicom(RSNA)).unwrap();
    let result = analyse(&models, &loaded);
    let lung = result.ood.lung.as_ref().unwrap();
    let classifier = result.ood.classifier.as_ref().unwrap();
    println!(
        "{:?}\n{}",
        result.ood,
        result.ood.message().unwrap_or_default()
    );
    assert!(lung.passed, "lung gate: {lung:?}");
    assert!(!classifier.passed, "classifier gate: {classifier:?}");
    assert_eq!(
        result.ood.verdict,
        Verdict::OutsideTrainingData {
            models: vec![classifier.model.clone()]
        }
    );
    assert!(result.ood.shows(&lung.model));
    assert!(!result.ood.shows(&classifier.model));
    let message = result.ood.message().unwrap();
    assert!(
        message.contains(&classifier.model) && message.contains("children"),
        "{message}"
    );

    // The held-out adults of the lung network's dataset: the classifier's gate flags most.
    let info = shipped(ModelKind::Classifier);
    let lung_info = shipped(ModelKind::Lung);
    let spec = SplitSpec::of_bundle(&lung_info);
    let adults = shared_data().join("cxr-ieee8023");
    let (records, _) = read_labels(&adults).unwrap();
    let split = split_by_patient3(
        &records,
        spec.validation_fraction,
        spec.test_fraction,
        spec.seed,
    );
    let files: Vec<_> = split
        .validation
        .iter()
        .map(|&i| records[i].image.clone())
        .collect();
    let (inputs, _) = inputs_of_files(&files, info.card.input_size);
    let refs: Vec<&ModelInput> = inputs.iter().collect();
    let gate = FeatureGate::load(&info.dir).unwrap().unwrap();
    let flagged = GateNet::load(&info, &Device::flex())
        .unwrap()
        .features(&refs, &Device::flex())
        .unwrap()
        .iter()
        .filter(|f| !gate.passes(f))
        .count() as f64
        / refs.len() as f64;
    println!(
        "classifier gate flags {flagged:.3} of {} adult radiographs",
        refs.len()
    );
    assert!(
        flagged >= 0.9,
        "only {flagged:.3} of adult radiographs flagged"
    );
}
