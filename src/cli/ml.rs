//! Headless ML subcommands: `analyze`, `train`, `bench-backends`.

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

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    pub file: PathBuf,
    /// gradcam, gradcam++, guided-backprop, deconvnet, guided-gradcam, smoothgrad, lung-cam
    #[arg(long, default_value = "gradcam")]
    pub method: String,
    /// Explain the classifier (default) or the lung network's head.
    #[arg(long, default_value = "classifier")]
    pub target: String,
    /// Print the results the out-of-distribution gate hides (they are still marked).
    #[arg(long)]
    pub show_hidden: bool,
}

/// What `cxrlens analyze` prints, and whether the gate flagged the image (exit status 3).
pub struct AnalyzeOutcome {
    pub text: String,
    pub flagged: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// lung, classifier or saliency (the staged recipe: --init CLASSIFIER_BUNDLE, --epochs for the
    /// KL stage, --fusion-epochs for the fusion classifier)
    #[arg(long)]
    pub model: String,
    /// Dataset folder with labels.csv, images/ and optional masks/.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (default models/<name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Input side in pixels (default 128, 224 for efficientnet-lite0; fine-tuning keeps the
    /// starting bundle's unless this is given, which the lung network allows).
    #[arg(long)]
    pub size: Option<usize>,
    #[arg(long, default_value_t = 16)]
    pub base_channels: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 0.2)]
    pub validation_fraction: f64,
    /// Use at most this many images.
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Turn augmentation off.
    #[arg(long)]
    pub no_augment: bool,
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
    /// Model name written into the card (default: the kind's usual name).
    #[arg(long)]
    pub name: Option<String>,
    /// Fine-tune: start from this model bundle's weights (its input size and width are used).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue an interrupted run from the checkpoint in the output folder.
    #[arg(long)]
    pub resume: bool,
    /// Freeze the feature extractor (lung: encoder + bottleneck; classifier: stem + stages).
    #[arg(long)]
    pub freeze_encoder: bool,
    /// Stop when the validation metric has not improved for this many epochs.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Saliency recipe: epochs of stage 3, the fusion classifier (stage 2 runs --epochs).
    #[arg(long, default_value_t = 0)]
    pub fusion_epochs: usize,
    /// Saliency recipe: folder with EGD-CXR fixations.csv + master_sheet.csv (default DATA/gaze).
    #[arg(long)]
    pub gaze: Option<PathBuf>,
    /// Saliency recipe: weight of the heatmap-generator loss (classifier's guided-backprop map vs
    /// gaze); above 0 the classifier is trained too and saved in OUT/classifier.
    #[arg(long, default_value_t = 0.0)]
    pub heatmap_generator_weight: f32,
    /// Keep the weights of the best validation epoch instead of the last.
    #[arg(long)]
    pub keep_best: bool,
    /// Final learning rate of the cosine schedule, as a fraction of --lr.
    #[arg(long, default_value_t = 0.05)]
    pub final_lr_fraction: f64,
    /// Classifier architecture of a new model: resnet or efficientnet-lite0.
    #[arg(long, default_value = "resnet")]
    pub arch: String,
    /// efficientnet-lite0: start from these ImageNet weights (PyTorch state dict), e.g.
    /// ../shared/pretrained/efficientnet-lite0/efficientnet-lite0-57934424.pth
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// efficientnet-lite0: keep the stem and this many of its 16 blocks frozen.
    #[arg(long, default_value_t = 0)]
    pub frozen_blocks: usize,
    /// Hold out this fraction of patients as a test split (reported in the card, used for nothing else).
    #[arg(long, default_value_t = 0.0)]
    pub test_fraction: f64,
    /// A caveat particular to this dataset, written into the card (repeatable).
    #[arg(long)]
    pub limitation: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Bundle folder (e.g. models/lung-unet).
    #[arg(long)]
    pub bundle: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    /// Every image of DATA (an external folder the model never saw), no split.
    #[arg(long, conflicts_with = "split")]
    pub all: bool,
    /// Which held-out images: test, validation (of the patient split the bundle was trained
    /// with) or all. Default: test when the bundle was trained with a test split, else validation.
    #[arg(long)]
    pub split: Option<String>,
    /// Patient split (default: the bundle's own, from its training-report.json).
    #[arg(long)]
    pub validation_fraction: Option<f64>,
    #[arg(long)]
    pub test_fraction: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Record the figures in the bundle's card (card.json and MODEL_CARD.md).
    #[arg(long)]
    pub update_card: bool,
    /// Evaluate the raw network output, without the lung-mask clean-up the viewer applies.
    #[arg(long)]
    pub raw: bool,
    /// Write evaluation.json and evaluation.csv into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run_eval(args: &EvalArgs) -> Result<String, String> {
    use crate::ml::train::{HeldOut, SplitSpec};
    let info =
        crate::ml::bundle::BundleInfo::open(&args.bundle, false).map_err(|e| e.to_string())?;
    let device = Device::flex();
    let mut spec = SplitSpec::of_bundle(&info);
    spec.held_out = match (args.all, args.split.as_deref()) {
        (true, _) | (_, Some("all")) => HeldOut::All,
        (_, Some("test")) => HeldOut::Test,
        (_, Some("validation")) => HeldOut::Validation,
        (_, None) => spec.held_out,
        (_, Some(other)) => {
            return Err(format!("--split {other}: expected test, validation or all"));
        }
    };
    spec.validation_fraction = args.validation_fraction.unwrap_or(spec.validation_fraction);
    spec.test_fraction = args.test_fraction.unwrap_or(spec.test_fraction);
    spec.seed = args.seed.unwrap_or(spec.seed);
    if spec.held_out == HeldOut::Test && spec.test_fraction <= 0.0 {
        return Err("--split test: the bundle was trained without a test split (give --test-fraction, or use --split validation)".into());
    }
    let (evaluation, notes) = crate::ml::train::evaluate_bundle(&args.data, &info, &spec, &device)
        .map_err(|e| e.to_string())?;
    let which = match spec.held_out {
        HeldOut::All => "all images (no split)".to_string(),
        HeldOut::Test => format!(
            "test split ({} of patients, seed {})",
            spec.test_fraction, spec.seed
        ),
        HeldOut::Validation => format!(
            "validation split ({} of patients, seed {})",
            spec.validation_fraction, spec.seed
        ),
    };
    let mut out = format!(
        "{}: {} held-out images, {which}\n",
        info.title(),
        evaluation.images
    );
    out += &evaluation.to_csv(&info.card.class_names);
    let mut json = serde_json::json!({
        "model": info.title(),
        "data": args.data.display().to_string(),
        "split": spec,
        "class_names": info.card.class_names,
        "evaluation": evaluation,
    });
    if info.card.kind == crate::ml::bundle::ModelKind::Lung {
        let e = crate::ml::eval::evaluate_lung(&info, &args.data, &spec, &device, !args.raw)
            .map_err(|e| e.to_string())?;
        out += &format!(
            "{} held-out masks: Dice at image resolution mean {:.4}, median {:.4}, 5th percentile {:.4}\n",
            e.images, e.dice_image, e.dice_image_median, e.dice_image_p05
        );
        json["dice_image_resolution"] = serde_json::json!({
            "mean": e.dice_image, "median": e.dice_image_median, "p05": e.dice_image_p05, "images": e.images
        });
        if args.update_card {
            let mut card = info.card.clone();
            card.metrics
                .insert("dice_image_resolution".into(), e.dice_image);
            card.metrics
                .insert("dice_image_resolution_median".into(), e.dice_image_median);
            card.metrics
                .insert("dice_image_resolution_p05".into(), e.dice_image_p05);
            card.write(&args.bundle).map_err(|e| e.to_string())?;
        }
    }
    for n in notes.iter().take(10) {
        out += &format!("note: {n}\n");
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: String| {
            crate::io::write::write_atomically(&dir.join(name), text.as_bytes())
                .map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        write(
            "evaluation.json",
            serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
        )?;
        write("evaluation.csv", evaluation.to_csv(&info.card.class_names))?;
        out += &format!("wrote {}\n", dir.join("evaluation.json").display());
    }
    Ok(out)
}

#[derive(Debug, Args)]
pub struct OodFitArgs {
    /// Bundle folder whose gate is fitted (ood.json + ood-stats.bin are written into it).
    #[arg(long)]
    pub bundle: PathBuf,
    /// The dataset the bundle was trained on (its own patient split is used).
    #[arg(long)]
    pub data: PathBuf,
    /// Threshold at this percentile of the validation images' distances.
    #[arg(long, default_value_t = 99.0)]
    pub percentile: f64,
    /// The training domain in words, shown in the warning (e.g. "adult frontal chest radiographs").
    #[arg(long)]
    pub domain: String,
    /// Folders of other images to measure the gate on (flag rate, AUROC); repeatable.
    #[arg(long)]
    pub other: Vec<PathBuf>,
}

/// `cxrlens ood fit`: fit a bundle's out-of-distribution gate and record it in its card.
pub fn run_ood_fit(args: &OodFitArgs) -> Result<String, String> {
    if !(50.0..=100.0).contains(&args.percentile) {
        return Err(format!(
            "--percentile {} is not in [50, 100]",
            args.percentile
        ));
    }
    let info =
        crate::ml::bundle::BundleInfo::open(&args.bundle, false).map_err(|e| e.to_string())?;
    let fit = crate::ml::ood_fit::fit_gate(
        &info,
        &args.data,
        args.percentile,
        &args.domain,
        &args.other,
        &Device::flex(),
    )
    .map_err(|e| e.to_string())?;
    fit.gate.save(&args.bundle).map_err(|e| e.to_string())?;
    let mut card = info.card.clone();
    card.ood = Some(fit.gate.info.clone());
    card.write(&args.bundle).map_err(|e| e.to_string())?;
    Ok(format!(
        "{}wrote {}\n",
        fit.report,
        args.bundle.join("ood.json").display()
    ))
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Input side in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Also time wgpu when the only adapter is a CPU one (slow: kernel compilation takes minutes).
    #[arg(long)]
    pub include_cpu_adapter: bool,
    /// lung (the U-Net), lung-efficientnet (the lung network on the EfficientNet-Lite0 encoder)
    /// or efficientnet (the EfficientNet-Lite0 classifier); random weights.
    #[arg(long, default_value = "lung")]
    pub network: String,
    /// efficientnet: stem and this many blocks frozen (as `train --frozen-blocks`).
    #[arg(long, default_value_t = 0)]
    pub frozen_blocks: usize,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Input sides to check, comma-separated (lavapipe gave wrong weight gradients at 256).
    #[arg(long, value_delimiter = ',', default_value = "128,256")]
    pub sizes: Vec<usize>,
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Seeded random weights instead of the shipped bundles' weights.
    #[arg(long)]
    pub random_weights: bool,
    /// Also check when the only adapter is a CPU one (lavapipe: minutes of kernel compilation).
    #[arg(long)]
    pub include_cpu_adapter: bool,
    /// Only the elementary operations, not the networks.
    #[arg(long)]
    pub ops_only: bool,
}

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

pub fn run_analyze(args: &AnalyzeArgs, backend: Option<&str>) -> Result<AnalyzeOutcome, String> {
    let method = parse_method(&args.method)?;
    let target = match args.target.as_str() {
        "classifier" => ExplainTarget::Classifier,
        "lung" => ExplainTarget::LungHead,
        other => return Err(format!("unknown target {other:?} (classifier or lung)")),
    };
    let loaded = crate::io::load_image(&args.file).map_err(|e| e.to_string())?;
    let compute = compute_device(backend)?;
    let (bundles, mut problems) = discover();
    let (models, load_problems) = Models::load(&bundles, &compute.device);
    problems.extend(load_problems);
    if models.lung.is_none() && models.classifier.is_none() {
        return Err(format!("no model could be loaded: {}", problems.join("; ")));
    }
    let request = AnalysisRequest::of(&loaded, method, target);
    let result = analyze(&models, &request, &mut |_, _| true).map_err(|e| e.to_string())?;
    let ood = &result.ood;
    let mut out = format!(
        "device:        {} ({})\n",
        compute.description, compute.reason
    );
    for g in ood.lung.iter().chain(ood.classifier.iter()) {
        out += &format!(
            "gate:          {}: Mahalanobis distance {:.1} (limit {:.1}) {}\n",
            g.model,
            g.distance,
            g.threshold,
            if g.passed {
                "within its training data"
            } else {
                "OUTSIDE its training data"
            }
        );
    }
    if let Some(a) = &ood.anatomy {
        out += &format!(
            "anatomy:       {} lung regions, {:.1} % of the image{}\n",
            a.regions,
            100.0 * a.lung_fraction,
            if a.passed() {
                String::new()
            } else {
                format!(" — {}", a.problems.join("; "))
            }
        );
    }
    if let Some(message) = ood.message() {
        out += &format!("VERDICT:       {message}\n");
    }
    let shown = |model: &str| args.show_hidden || ood.shows(model);
    let hidden_mark = |model: &str| {
        if ood.shows(model) {
            ""
        } else {
            " [hidden: out of distribution]"
        }
    };
    for p in &result.predictions {
        if !shown(&p.model_title) {
            out += &format!("{}: hidden (--show-hidden prints it)\n", p.model_title);
            continue;
        }
        let note = if p.uninformative {
            " [class head not better than chance on held-out data: not a result]"
        } else if p.calibrated {
            " (calibrated)"
        } else {
            ""
        };
        out += &format!("{}{note}{}:\n", p.model_title, hidden_mark(&p.model_title));
        for (name, prob) in &p.classes {
            out += &format!("  {name:<18} {prob:.3}\n");
        }
        if let Some(d) = &p.decision {
            out += &format!(
                "  operating point: p({}) >= {:.3} -> {} (sensitivity {:.3}, specificity {:.3} on the {} split)\n",
                d.class,
                d.threshold,
                if d.positive {
                    d.class.clone()
                } else {
                    format!("not {}", d.class)
                },
                d.sensitivity,
                d.specificity,
                d.measured_on
            );
        }
    }
    let lung_model = models
        .lung
        .as_ref()
        .map(|(_, i)| i.title())
        .unwrap_or_default();
    if let Some(mask) = &result.lung_probability
        && shown(&lung_model)
    {
        let lung = mask.values.iter().filter(|&&v| v >= 0.5).count();
        out += &format!(
            "lung area:     {:.1} % of the image{}\n",
            100.0 * lung as f64 / mask.values.len() as f64,
            hidden_mark(&lung_model)
        );
    }
    if let (Some(map), Some((model, class))) = (&result.heatmap, &result.explained)
        && shown(model)
    {
        let mean = map.values.iter().sum::<f32>() / map.values.len() as f32;
        out += &format!(
            "{}:      {model}, class {class}, layer {}, {}×{}, mean {mean:.3}{}\n",
            method.label(),
            result.target_layer,
            map.width,
            map.height,
            hidden_mark(model)
        );
    }
    for (name, secs) in &result.step_seconds {
        out += &format!("  step {name}: {:.3} s\n", secs);
    }
    out += &format!("time:          {:.2} s\n", result.seconds);
    for p in problems {
        out += &format!("note:          {p}\n");
    }
    Ok(AnalyzeOutcome {
        text: out,
        flagged: ood.message().is_some(),
    })
}

pub fn run_train(args: &TrainArgs, backend: Option<&str>) -> Result<String, String> {
    let kind = ModelKind::parse(&args.model).map_err(|e| e.to_string())?;
    let compute = compute_device(backend)?;
    let mut options = TrainOptions::new(kind);
    options.epochs = args.epochs;
    options.batch_size = args.batch_size;
    options.learning_rate = args.lr;
    options.input_size = args.size.unwrap_or(if args.arch == "efficientnet-lite0" {
        224
    } else {
        128
    });
    options.override_input_size = args.size.is_some() && args.init.is_some();
    options.base_channels = args.base_channels;
    options.seed = args.seed;
    options.validation_fraction = args.validation_fraction;
    options.max_images = args.max_images;
    options.version = args.version.clone();
    if let Some(name) = &args.name {
        options.name = name.clone();
    }
    options.init_from = args.init.clone();
    options.resume = args.resume;
    options.freeze_encoder = args.freeze_encoder;
    options.patience = args.patience;
    options.keep_best = args.keep_best;
    options.fusion_epochs = args.fusion_epochs;
    options.gaze_dir = args.gaze.clone();
    options.heatmap_generator_weight = args.heatmap_generator_weight;
    options.final_lr_fraction = args.final_lr_fraction;
    options.architecture =
        crate::ml::classifier::Architecture::parse(&args.arch).map_err(|e| e.to_string())?;
    options.pretrained = args.pretrained.clone();
    options.frozen_blocks = args.frozen_blocks;
    options.test_fraction = args.test_fraction;
    options.limitations = args.limitation.clone();
    // Quoted where needed, so that the card's command can be pasted into a shell.
    options.command = std::iter::once("cxrlens".to_string())
        .chain(std::env::args().skip(1).map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        }))
        .collect::<Vec<_>>()
        .join(" ");
    if args.no_augment {
        options.augment = None;
    }
    let out = args.out.clone().unwrap_or_else(|| default_out_dir(kind));
    eprintln!("device: {} ({})", compute.description, compute.reason);
    let cancel = AtomicBool::new(false);
    let epoch_clock = std::cell::Cell::new(Instant::now());
    let report = train(&args.data, &options, &compute, &out, &mut |p| match p {
        TrainProgress::Message(m) => {
            epoch_clock.set(Instant::now());
            eprintln!("{m}")
        }
        // About ten lines per epoch, so a long run on a CPU shows that it moves.
        TrainProgress::Batch { epoch, batch, batches, loss } => {
            if batch % batches.div_ceil(10).max(1) == 0 || batch == batches {
                eprintln!(
                    "  epoch {epoch}: batch {batch}/{batches}, loss {loss:.4}, {:.1} images/s",
                    (batch * options.batch_size) as f64 / epoch_clock.get().elapsed().as_secs_f64().max(1e-9)
                );
            }
        }
        TrainProgress::Epoch { epoch, epochs, train_loss, evaluation, seconds } => {
            epoch_clock.set(Instant::now());
            match evaluation.saliency {
                Some(s) => eprintln!(
                    "epoch {epoch}/{epochs}: loss {train_loss:.4}, val KL {:.4}, CC {:.4}, HS {:.4} ({seconds:.0} s)",
                    s.kl, s.cc, s.hs
                ),
                None => eprintln!(
                    "epoch {epoch}/{epochs}: loss {train_loss:.4}, val dice {}, acc {:.3}, macro AUC {} ({seconds:.0} s)",
                    evaluation.dice.map_or("-".into(), |d| format!("{d:.4}")),
                    evaluation.accuracy,
                    evaluation.macro_auc.map_or("-".into(), |a| format!("{a:.3}")),
                ),
            }
        }
    }, &cancel)
    .map_err(|e| e.to_string())?;
    let mut text = format!(
        "trained {} epochs in {:.0} s on {}; wrote {}\n",
        report.epochs_run,
        report.seconds,
        report.device,
        out.display()
    );
    text += &report.final_evaluation.to_csv(&report.class_names);
    if let Some(t) = &report.test_evaluation {
        text += &format!("test split ({} images):\n", t.images);
        text += &t.to_csv(&report.class_names);
    }
    if let Some(c) = &report.calibration {
        text += &format!(
            "calibration: temperature {:.3}; p({}) >= {:.3}: sensitivity {:.3}, specificity {:.3} ({}); ECE {:.4} -> {:.4}\n",
            c.temperature,
            c.positive_class,
            c.threshold,
            c.sensitivity,
            c.specificity,
            c.measured_on,
            c.ece_before,
            c.ece_after
        );
    }
    Ok(text)
}

/// The network a benchmark times.
enum BenchNet {
    Lung(Box<crate::ml::lung::LungNet>),
    EfficientNet(Box<crate::ml::efficientnet::EfficientNetLite>, usize),
}

impl BenchNet {
    fn new(args: &BenchArgs, device: &Device) -> Result<Self, String> {
        Ok(match args.network.as_str() {
            "lung" => Self::Lung(Box::new(
                LungNetConfig::new(vec!["a".into(), "b".into(), "c".into()])
                    .with_input_size(args.size)
                    .init(device)
                    .train(),
            )),
            "lung-efficientnet" => Self::Lung(Box::new(
                LungNetConfig::new(vec!["a".into(), "b".into(), "c".into()])
                    .with_input_size(args.size)
                    .with_encoder(Some(crate::ml::lung::EFFICIENTNET.into()))
                    .init(device)
                    .train(),
            )),
            "efficientnet" | "efficientnet-lite0" => Self::EfficientNet(
                Box::new(
                    crate::ml::efficientnet::EfficientNetLiteConfig::new(vec![
                        "a".into(),
                        "b".into(),
                    ])
                    .with_input_size(args.size)
                    .init(device)
                    .freeze_prefix(args.frozen_blocks)
                    .train(),
                ),
                args.frozen_blocks,
            ),
            other => {
                return Err(format!(
                    "--network {other}: expected lung, lung-efficientnet or efficientnet"
                ));
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            Self::Lung(m) => format!("lung network ({} parameters)", m.num_params()),
            Self::EfficientNet(m, 0) => {
                format!("EfficientNet-Lite0 ({} parameters)", m.num_params())
            }
            Self::EfficientNet(m, k) => format!(
                "EfficientNet-Lite0 ({} parameters), stem + {k} blocks frozen",
                m.num_params()
            ),
        }
    }

    /// Inference output reduced to a scalar.
    fn infer(&self, x: Tensor<4>) -> Tensor<1> {
        match self {
            Self::Lung(m) => m.valid().forward(x).mask_logits.sum(),
            Self::EfficientNet(m, _) => m.valid().forward(x).sum(),
        }
    }

    /// A training loss over every output.
    fn loss(&self, x: Tensor<4>) -> Tensor<1> {
        match self {
            Self::Lung(m) => {
                let out = m.forward(x);
                out.mask_logits.sum() + out.class_logits.sum()
            }
            Self::EfficientNet(m, _) => m.forward(x).sum(),
        }
    }
}

fn time_backend(compute: &ComputeDevice, args: &BenchArgs) -> Result<String, String> {
    let net = BenchNet::new(args, &compute.device)?;
    let x = Tensor::<4>::random(
        [args.batch, 1, args.size, args.size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &compute.device,
    );
    let inner = compute.device.clone().inner();
    let x_inner = x.clone().inner();
    let sync = |t: Tensor<1>| tensor_to_vec(t).map(|v| v[0]).map_err(|e| e.to_string());
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    let first = Instant::now();
    sync(net.infer(x_inner.clone().to_device(&inner)))?;
    let _ = net.loss(x.clone()).backward();
    let warmup = first.elapsed().as_secs_f64();
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        sync(net.infer(x_inner.clone()))?;
        inner.sync().map_err(|e| format!("{e:?}"))?;
        forward.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        // As in training, the input needs no gradient except to time the lung network as before
        // (its figures in the notes include the input gradient).
        let xg = match net {
            BenchNet::Lung(_) if args.network == "lung" => x.clone().require_grad(),
            _ => x.clone(),
        };
        let grads = net.loss(xg.clone()).backward();
        // Wait for the whole backward pass: read the input gradient (the last one computed) and
        // then wait for the device, so asynchronous backends are not timed at submission.
        if let Some(g) = xg.grad(&grads) {
            sync(g.sum())?;
        }
        compute.device.sync().map_err(|e| format!("{e:?}"))?;
        backward.push(t.elapsed().as_secs_f64());
    }
    forward.sort_by(f64::total_cmp);
    backward.sort_by(f64::total_cmp);
    let (f, b) = (forward[forward.len() / 2], backward[backward.len() / 2]);
    Ok(format!(
        "{:<40} {}: forward {:>8.1} ms ({:.1} img/s)   forward+backward {:>8.1} ms ({:.1} img/s)   (first call incl. compile {:.1} s)\n",
        compute.description,
        net.describe(),
        1000.0 * f,
        args.batch as f64 / f,
        1000.0 * b,
        args.batch as f64 / b,
        warmup
    ))
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

/// `check-backends`: wgpu against flex on the shipped networks, and the viewer shader on burn's device.
pub fn run_check(args: &CheckArgs) -> Result<String, String> {
    use crate::ml::backend_check::{Network, compare};
    use crate::ml::classifier::ClassifierConfig;

    for &size in &args.sizes {
        check_size_and_batch(size, args.batch)?;
    }
    let adapter = probe_adapter().ok_or("no wgpu adapter: nothing to check against flex")?;
    if adapter.is_cpu && !args.include_cpu_adapter {
        return Err(format!(
            "the only adapter is a CPU one ({}); pass --include-cpu-adapter to check it anyway",
            adapter.name
        ));
    }
    let (candidate, setup) =
        select(BackendChoice::Wgpu, Some(&adapter)).map_err(|e| e.to_string())?;
    let setup = setup.ok_or("burn created no wgpu device")?;
    let reference = Device::flex().autodiff();
    let mut out = format!(
        "reference: flex (CPU); candidate: {}\n\nviewer shader on the device burn created (the one eframe reuses):\n",
        candidate.description
    );
    let mut ok = true;
    for (case, worst) in crate::render::gpu::compare_with_cpu_twin(&setup.device, &setup.queue)? {
        ok &= worst <= 1;
        out += &format!(
            "  {case:<34} max difference {worst} level(s) {}\n",
            if worst <= 1 { "ok" } else { "DISAGREES" }
        );
    }
    for &size in &args.sizes {
        out += &format!("\nelementary operations at {size}², batch 2:\n");
        for row in crate::ml::backend_check::compare_ops(&reference, &candidate.device, size)
            .map_err(|e| e.to_string())?
        {
            ok &= row.agrees();
            out += &format!(
                "  {:<58} rel L2 {:>9.2e} {}\n",
                row.what,
                row.relative_l2,
                if row.agrees() { "ok" } else { "DISAGREES" }
            );
        }
    }
    if args.ops_only {
        return if ok {
            Ok(out)
        } else {
            Err(format!("{out}\nthe backends DISAGREE (see above)"))
        };
    }
    let (bundles, _) = discover();
    let shipped = |kind: ModelKind| {
        bundles
            .iter()
            .find(|b| b.shipped && b.card.kind == kind)
            .filter(|_| !args.random_weights)
    };
    let read = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("config.json")).map_err(|e| e.to_string())
    };
    for &size in &args.sizes {
        let mut networks = Vec::new();
        match shipped(ModelKind::Lung) {
            Some(b) => {
                let c: LungNetConfig =
                    serde_json::from_str(&read(&b.dir)?).map_err(|e| e.to_string())?;
                networks.push((
                    Network::Lung(c.with_input_size(size)),
                    Some(b.dir.join("weights.bpk")),
                    b.title(),
                ));
            }
            None => networks.push((
                Network::Lung(
                    LungNetConfig::new(vec!["a".into(), "b".into(), "c".into()])
                        .with_input_size(size),
                ),
                None,
                "lung network, random weights".into(),
            )),
        }
        match shipped(ModelKind::Classifier) {
            Some(b) => {
                let c: ClassifierConfig =
                    serde_json::from_str(&read(&b.dir)?).map_err(|e| e.to_string())?;
                networks.push((
                    Network::Classifier(c.with_input_size(size)),
                    Some(b.dir.join("weights.bpk")),
                    b.title(),
                ));
            }
            None => networks.push((
                Network::Classifier(ClassifierConfig::ResNet(
                    crate::ml::resnet::ResNetConfig::new(vec!["a".into(), "b".into()])
                        .with_input_size(size),
                )),
                None,
                "classifier, random weights".into(),
            )),
        }
        // No saliency weights are shipped (there is no real gaze data here): random weights,
        // fed the shipped classifier's feature width.
        let classifier_channels = match networks.last() {
            Some((Network::Classifier(c), _, _)) => c.feature_channels(),
            _ => 64,
        };
        networks.push((
            Network::Saliency(
                crate::ml::saliency::SaliencyNetConfig::new(classifier_channels)
                    .with_input_size(size)
                    .with_class_names(vec!["a".into(), "b".into()]),
            ),
            None,
            "saliency network, random weights".into(),
        ));
        for (network, weights, title) in networks {
            let t = Instant::now();
            let report = compare(
                &network,
                weights.as_deref(),
                &reference,
                &candidate.device,
                args.batch,
                17,
            )
            .map_err(|e| e.to_string())?;
            ok &= report.agrees();
            out += &format!(
                "\n{title} — {:.1} s\n{}",
                t.elapsed().as_secs_f64(),
                report.text()
            );
        }
    }
    if ok {
        out += &format!(
            "\nwgpu agrees with flex (relative L2 ≤ {:.0e}) and the shader with its CPU twin\n",
            crate::ml::backend_check::TOLERANCE
        );
        Ok(out)
    } else {
        Err(format!("{out}\nthe backends DISAGREE (see above)"))
    }
}

pub fn run_bench(args: &BenchArgs) -> Result<String, String> {
    check_size_and_batch(args.size, args.batch)?;
    let mut out = format!(
        "batch {} × 1 × {}², median of {}, {} threads\n",
        args.batch,
        args.size,
        args.repeat,
        rayon::current_num_threads()
    );
    out += &time_backend(
        &select(BackendChoice::Flex, None)
            .map_err(|e| e.to_string())?
            .0,
        args,
    )?;
    match probe_adapter() {
        Some(a) if !a.is_cpu || args.include_cpu_adapter => {
            let (d, _) = select(BackendChoice::Wgpu, Some(&a)).map_err(|e| e.to_string())?;
            out += &time_backend(&d, args)?;
        }
        Some(a) => {
            out += &format!(
                "wgpu on {} skipped: a CPU adapter (pass --include-cpu-adapter to time it)\n",
                a.name
            )
        }
        None => out += "wgpu: no adapter\n",
    }
    Ok(out)
}

#[derive(Debug, Args)]
pub struct BenchAnalysisArgs {
    /// Image to analyse (default: the bundled sample study), resampled to --size × --size.
    pub file: Option<PathBuf>,
    /// Side of the radiograph in pixels (3000: a 3k × 3k detector image).
    #[arg(long, default_value_t = 3000)]
    pub size: u32,
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// gradcam, gradcam++, guided-backprop, deconvnet, guided-gradcam, smoothgrad, lung-cam
    #[arg(long, default_value = "gradcam")]
    pub method: String,
}

/// `bench-analysis`: one warm-up, then `--repeat` analyses of the same image; median seconds per
/// step (decoding aside: the image is decoded once before timing).
pub fn run_bench_analysis(
    args: &BenchAnalysisArgs,
    backend: Option<&str>,
) -> Result<String, String> {
    if !(64..=12_000).contains(&args.size) {
        return Err(format!("--size {} is not between 64 and 12000", args.size));
    }
    let method = parse_method(&args.method)?;
    let path = args.file.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/sample_chest.dcm")
    });
    let loaded = crate::io::load_image(&path).map_err(|e| e.to_string())?;
    let s = args.size as usize;
    let values = crate::imaging::resample::resize_bilinear(
        &loaded.image.values,
        loaded.image.width as usize,
        loaded.image.height as usize,
        s,
        s,
    );
    let image = Arc::new(crate::imaging::ScalarImage {
        width: args.size,
        height: args.size,
        values,
    });
    let stats = image.stats();
    let compute = compute_device(backend)?;
    let (bundles, problems) = discover();
    let (models, load_problems) = Models::load(&bundles, &compute.device);
    if models.lung.is_none() || models.classifier.is_none() {
        return Err(format!(
            "the shipped lung network and classifier are needed: {}",
            problems
                .iter()
                .chain(&load_problems)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let request = AnalysisRequest::new(
        image,
        stats,
        loaded.info.photometric_inverted,
        method,
        ExplainTarget::Classifier,
    );
    analyze(&models, &request, &mut |_, _| true).map_err(|e| e.to_string())?;
    let mut runs = Vec::new();
    for _ in 0..args.repeat.max(1) {
        runs.push(analyze(&models, &request, &mut |_, _| true).map_err(|e| e.to_string())?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut out = format!(
        "analysis of a {0}×{0} radiograph on {1}, {2} threads, median of {3} after one warm-up\nlung: {4}; classifier: {5}; {6}\n",
        args.size,
        compute.description,
        rayon::current_num_threads(),
        runs.len(),
        models
            .lung
            .as_ref()
            .map_or(String::new(), |(_, i)| i.title()),
        models
            .classifier
            .as_ref()
            .map_or(String::new(), |(_, i)| i.title()),
        method.label()
    );
    for (k, (name, _)) in runs[0].step_seconds.iter().enumerate() {
        let t = median(
            runs.iter()
                .filter_map(|r| r.step_seconds.get(k).map(|s| s.1))
                .collect(),
        );
        out += &format!("  {name:<40} {:>8.1} ms\n", 1000.0 * t);
    }
    out += &format!(
        "  {:<40} {:>8.1} ms\n",
        "total",
        1000.0 * median(runs.iter().map(|r| r.seconds).collect())
    );
    Ok(out)
}
