//! Headless ML subcommands, one file each: `analyze` (and its batch run), `train`, `eval` and `ood fit`, `bench-backends` and
//! `bench-analysis`, `check-backends`; the compute device and method parsing they share are here.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use clap::Args;

use crate::ml::analysis::{AnalysisRequest, ExplainTarget, Models, analyze};
use crate::ml::bundle::{ModelKind, discover};
use crate::ml::device::{BackendChoice, ComputeDevice, probe_adapter, select};
use crate::ml::explain::Method;
use crate::ml::lung::LungNetConfig;
use crate::ml::tensor_to_vec;
use crate::ml::train::{TrainOptions, TrainProgress, default_out_dir, train};

mod analyze;
mod batch;
mod bench;
mod check;
mod evaluate;
mod train_command;

pub use analyze::{AnalyzeArgs, AnalyzeOutcome, parse_target, run_analyze};
pub use batch::{ImageRecord, output_key};
pub use bench::{BenchAnalysisArgs, BenchArgs, run_bench, run_bench_analysis};
pub use check::{CheckArgs, run_check};
pub use evaluate::{EvalArgs, OodFitArgs, run_eval, run_ood_fit};
pub use train_command::{TrainArgs, run_train};

/// The compute device for a headless command: `--backend`, then `CXRLENS_BACKEND`, then the
/// setting saved from the viewer, then Auto.
pub fn compute_device(backend: Option<&str>) -> Result<ComputeDevice, String> {
    use crate::ml::device::{effective_choice, load_settings, settings_path};
    let env = std::env::var("CXRLENS_BACKEND").ok();
    // The saved setting matters (and an unreadable one is an error) only without flag or variable.
    let saved = match settings_path() {
        Some(p) if backend.is_none() && env.is_none() => {
            load_settings(&p).map_err(|e| e.to_string())?
        }
        _ => None,
    };
    let (choice, _) = effective_choice(backend, env.as_deref(), saved.map(|s| s.backend))
        .map_err(|e| e.to_string())?;
    crate::ml::device::resolve(None, choice).map_err(|e| e.to_string())
}

/// The compute device and the shipped and user models for `analyze` (single and batch), with the
/// problems met; an error when neither the lung network nor a classifier loads.
fn load_models(backend: Option<&str>) -> Result<(ComputeDevice, Models, Vec<String>), String> {
    let compute = compute_device(backend)?;
    let (bundles, mut problems) = discover();
    let (models, load_problems) = Models::load(&bundles, &compute.device);
    problems.extend(load_problems);
    if models.lung.is_none() && models.classifier.is_none() {
        return Err(format!("no model could be loaded: {}", problems.join("; ")));
    }
    Ok((compute, models, problems))
}

pub fn parse_method(text: &str) -> Result<Method, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "gradcam" | "grad-cam" => Method::GradCam,
        "gradcam++" | "grad-cam++" | "gradcampp" => Method::GradCamPlusPlus,
        "guided-backprop" | "guided" => Method::GuidedBackprop,
        "deconvnet" | "deconv" => Method::Deconvnet,
        "guided-gradcam" | "guided-grad-cam" => Method::GuidedGradCam,
        "smoothgrad" => Method::SmoothGrad,
        "lung-cam" | "lung-cropped-cam" => Method::LungCroppedCam,
        other => return Err(format!("unknown method {other:?}")),
    })
}

/// The lung network downsamples 4 times and the checks allocate `batch` images: refuse what
/// would fail inside burn.
fn check_size_and_batch(size: usize, batch: usize) -> Result<(), String> {
    if !(16..=1024).contains(&size) || !size.is_multiple_of(16) {
        return Err(format!(
            "size {size} is not a multiple of 16 between 16 and 1024 (the networks downsample 4 times)"
        ));
    }
    if !(1..=64).contains(&batch) {
        return Err(format!("batch {batch} is not between 1 and 64"));
    }
    Ok(())
}
