//! The backend check (`cxrlens check-backends`): on two CPU devices it must find agreement with
//! real, non-zero gradients for every parameter, and it must flag a planted difference.

use burn::prelude::*;
use cxrlens::ml::backend_check::{Agreement, Network, compare};
use cxrlens::ml::classifier::ClassifierConfig;
use cxrlens::ml::lung::LungNetConfig;
use cxrlens::ml::resnet::ResNetConfig;
use cxrlens::ml::saliency::SaliencyNetConfig;

#[test]
fn flex_against_flex_agrees_on_every_gradient() {
    let reference = Device::flex().autodiff();
    let candidate = Device::flex().autodiff();
    for network in [
        Network::Lung(
            LungNetConfig::new(vec!["a".into(), "b".into()])
                .with_input_size(32)
                .with_base_channels(4)
                .with_depth(2),
        ),
        Network::Classifier(ClassifierConfig::ResNet(
            ResNetConfig::new(vec!["x".into(), "y".into()])
                .with_input_size(32)
                .with_base_channels(4),
        )),
        Network::Saliency(
            SaliencyNetConfig::new(8)
                .with_input_size(32)
                .with_base_channels(4)
                .with_depth(2)
                .with_class_names(vec!["x".into(), "y".into()]),
        ),
    ] {
        let report = compare(&network, None, &reference, &candidate, 2, 5).unwrap();
        assert!(report.parameters_compared >= 8, "{}", report.text());
        assert!(report.agrees(), "{}", report.text());
        for row in &report.rows {
            assert!(row.relative_l2 < 1e-5, "{}: {}", row.what, row.relative_l2);
        }
        // Real gradients reached the input and the weights.
        let input = report
            .rows
            .iter()
            .find(|r| r.what == "input gradient")
            .unwrap();
        assert!(input.reference_norm > 0.0);
        // Every trainable parameter: compared, and with a non-zero gradient — except the saliency
        // head's bias, whose true gradient is zero (a spatial softmax follows it: adding a
        // constant to every logit changes nothing), so it is rounding noise or exactly 0.
        let zero: Vec<&str> = report
            .rows
            .iter()
            .filter(|r| r.what.starts_with("grad ") && r.reference_norm == 0.0)
            .filter(|r| !(matches!(network, Network::Saliency(_)) && r.what == "grad head.bias"))
            .map(|r| r.what.as_str())
            .collect();
        assert!(zero.is_empty(), "zero gradients: {zero:?}");
        eprintln!(
            "{}: without gradient {:?}",
            report.network, report.parameters_without_gradient
        );
        if matches!(network, Network::Saliency(_)) {
            // The fixation-map loss does not reach the fusion classifier head; its parameters are
            // compared under the fusion class loss (a row above).
            assert!(
                report
                    .parameters_without_gradient
                    .iter()
                    .all(|p| p.contains("fusion") || p.contains("classif")),
                "{:?}",
                report.parameters_without_gradient
            );
        } else {
            assert!(
                report.parameters_without_gradient.is_empty(),
                "{:?}",
                report.parameters_without_gradient
            );
        }
        if !matches!(network, Network::Saliency(_)) {
            assert!(report.rows.iter().any(|r| r.what.starts_with("Grad-CAM")));
        } else {
            // The gradient into the classifier features is compared, and is not zero.
            let into = report
                .rows
                .iter()
                .find(|r| r.what == "gradient into the classifier features")
                .unwrap();
            assert!(into.reference_norm > 0.0);
        }
        if let Network::Lung(_) = network {
            // The trainer's wgpu step (heads in separate passes) is checked against one pass.
            assert!(
                report
                    .rows
                    .iter()
                    .any(|r| r.what.contains("separate passes summed"))
            );
        }
    }
}

#[test]
fn a_planted_difference_is_flagged() {
    let reference = [1.0f32, -2.0, 3.0, 0.5];
    let same = Agreement::of("same", &reference, &reference);
    assert_eq!(same.relative_l2, 0.0);
    assert!(same.agrees());
    // One value off by 0.1: ‖Δ‖ = 0.1, ‖ref‖ = √14.25.
    let off = Agreement::of("off", &reference, &[1.0, -2.0, 3.1, 0.5]);
    assert!((off.relative_l2 - 0.1 / 14.25f64.sqrt()).abs() < 1e-6);
    assert!(!off.agrees());
    assert!((off.max_abs - 0.1).abs() < 1e-6);
    // NaN and a length mismatch never agree.
    assert!(!Agreement::of("nan", &reference, &[1.0, f32::NAN, 3.0, 0.5]).agrees());
    assert!(!Agreement::of("short", &reference, &reference[..3]).agrees());
}

#[test]
fn elementary_operations_agree_between_two_cpu_devices() {
    let rows = cxrlens::ml::backend_check::compare_ops(
        &Device::flex().autodiff(),
        &Device::flex().autodiff(),
        16,
    )
    .unwrap();
    // 8 operations, each with a forward row and a row per input.
    assert!(rows.len() >= 20, "{} rows", rows.len());
    for row in rows {
        assert!(row.agrees(), "{}: {}", row.what, row.relative_l2);
        assert!(row.reference_norm > 0.0, "{}: all zero", row.what);
    }
}
