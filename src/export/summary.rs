//! What an analysis found, as plain data: the batch run's per-image JSON and the report's tables
//! are both made from this. Results the out-of-distribution gate withholds are marked `shown:
//! false` (their numbers are kept for researchers, as `analyze --show-hidden` prints them).

use serde::{Deserialize, Serialize};

use crate::ml::analysis::AnalysisResult;
use crate::ml::bundle::BundleInfo;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalysisSummary {
    /// The analysed file's name (no folder) and frame.
    pub source: String,
    pub frame: u32,
    pub width: u32,
    pub height: u32,
    /// Local time of the analysis, RFC 3339.
    pub created: String,
    pub software: String,
    pub device: String,
    pub models: Vec<ModelSummary>,
    pub ood: OodSummary,
    pub predictions: Vec<PredictionSummary>,
    /// Pixels with lung probability ≥ 0.5, as a fraction of the image.
    pub lung_area_fraction: Option<f64>,
    pub lung_shown: bool,
    pub explanation: Option<ExplanationSummary>,
    pub step_seconds: Vec<(String, f64)>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub version: String,
    pub kind: String,
    /// The card's headline held-out figure, in words (e.g. "test AUC pneumonia 0.999 (95 % CI
    /// 0.999–1.000), 820 images").
    pub headline: Option<String>,
    pub data: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OodSummary {
    /// `None` when every model recognised the image and the anatomy is plausible.
    pub verdict: Option<String>,
    /// The verdict's title ("Outside the training data", "Not a frontal chest radiograph").
    #[serde(default)]
    pub verdict_title: Option<String>,
    pub gates: Vec<GateSummary>,
    pub anatomy: Option<AnatomySummary>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GateSummary {
    pub model: String,
    pub distance: f64,
    pub threshold: f64,
    pub passed: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnatomySummary {
    pub regions: usize,
    pub lung_fraction: f64,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PredictionSummary {
    pub model: String,
    /// False when the gate withholds this model's results.
    pub shown: bool,
    pub calibrated: bool,
    pub uninformative: bool,
    pub classes: Vec<(String, f32)>,
    /// In words: "p(pneumonia) 0.912 ≥ 0.430 → pneumonia (sensitivity 0.97, specificity 0.95 on
    /// the validation split)".
    pub decision: Option<String>,
    pub positive: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExplanationSummary {
    pub method: String,
    pub model: String,
    pub class: String,
    pub layer: String,
    pub shown: bool,
    pub mean: f64,
}

/// The card's held-out figure: Dice for lung networks, per-class test AUC with its CI otherwise.
pub fn headline(info: &BundleInfo) -> Option<String> {
    let m = &info.card.metrics;
    if let Some(d) = m.get("dice_image_resolution").or_else(|| m.get("dice")) {
        return Some(format!("held-out Dice {d:.3} (image resolution)"));
    }
    let n = m
        .get("test_images")
        .map(|n| format!(", {n:.0} test images"))
        .unwrap_or_default();
    let (prefix, split) = if m.keys().any(|k| k.starts_with("test_auc_")) {
        ("test_auc_", "test")
    } else {
        ("auc_", "validation")
    };
    let parts: Vec<String> = info
        .card
        .class_names
        .iter()
        .skip(usize::from(info.card.class_names.len() == 2))
        .filter_map(|c| {
            let auc = m.get(&format!("{prefix}{c}"))?;
            let ci = match (
                m.get(&format!("{prefix}{c}_ci_low")),
                m.get(&format!("{prefix}{c}_ci_high")),
            ) {
                (Some(lo), Some(hi)) => format!(" (95 % CI {lo:.3}–{hi:.3})"),
                _ => String::new(),
            };
            Some(format!("{c} {auc:.3}{ci}"))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("{split} AUC {}{n}", parts.join(", ")))
}

/// Summarises one analysis. `models` are the bundles that took part (lung, classifier, saliency).
pub fn summarize(
    result: &AnalysisResult,
    models: &[&BundleInfo],
    source: &str,
    frame: u32,
    size: (u32, u32),
    device: &str,
) -> AnalysisSummary {
    let ood = &result.ood;
    let lung_title = models
        .iter()
        .find(|b| b.card.kind == crate::ml::bundle::ModelKind::Lung)
        .map(|b| b.title());
    AnalysisSummary {
        source: source.to_string(),
        frame,
        width: size.0,
        height: size.1,
        created: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        software: format!("cxrlens {}", env!("CARGO_PKG_VERSION")),
        device: device.to_string(),
        models: models
            .iter()
            .map(|b| ModelSummary {
                name: b.card.name.clone(),
                version: b.card.version.clone(),
                kind: format!("{:?}", b.card.kind).to_lowercase(),
                headline: headline(b),
                data: b.card.data.clone(),
            })
            .collect(),
        ood: OodSummary {
            verdict: ood.message(),
            verdict_title: ood.title().map(str::to_string),
            gates: ood
                .lung
                .iter()
                .chain(ood.classifier.iter())
                .map(|g| GateSummary {
                    model: g.model.clone(),
                    distance: g.distance,
                    threshold: g.threshold,
                    passed: g.passed,
                })
                .collect(),
            anatomy: ood.anatomy.as_ref().map(|a| AnatomySummary {
                regions: a.regions,
                lung_fraction: a.lung_fraction,
                problems: a.problems.clone(),
            }),
        },
        predictions: result
            .predictions
            .iter()
            .map(|p| PredictionSummary {
                model: p.model_title.clone(),
                shown: ood.shows(&p.model_title),
                calibrated: p.calibrated,
                uninformative: p.uninformative,
                classes: p.classes.clone(),
                decision: p.decision.as_ref().map(|d| {
                    let p_class = p
                        .classes
                        .iter()
                        .find(|(c, _)| *c == d.class)
                        .map(|(_, v)| *v)
                        .unwrap_or(f32::NAN);
                    format!(
                        "p({}) {p_class:.3} {} {:.3} → {} (sensitivity {:.3}, specificity {:.3} on the {} split)",
                        d.class,
                        if d.positive { "≥" } else { "<" },
                        d.threshold,
                        if d.positive {
                            d.class.clone()
                        } else {
                            format!("not {}", d.class)
                        },
                        d.sensitivity,
                        d.specificity,
                        d.measured_on
                    )
                }),
                positive: p.decision.as_ref().map(|d| d.positive),
            })
            .collect(),
        lung_area_fraction: result.lung_probability.as_ref().map(|m| {
            m.values.iter().filter(|&&v| v >= 0.5).count() as f64 / m.values.len().max(1) as f64
        }),
        lung_shown: lung_title.is_some_and(|t| ood.shows(&t)),
        explanation: match (&result.heatmap, &result.explained) {
            (Some(map), Some((model, class))) => Some(ExplanationSummary {
                method: result.method.label().to_string(),
                model: model.clone(),
                class: class.clone(),
                layer: result.target_layer.clone(),
                shown: ood.shows(model),
                mean: map.values.iter().map(|&v| v as f64).sum::<f64>()
                    / map.values.len().max(1) as f64,
            }),
            _ => None,
        },
        step_seconds: result.step_seconds.clone(),
        seconds: result.seconds,
    }
}
