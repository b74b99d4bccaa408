//! `cxrlens train`: a training run from the command line, with progress lines.

use super::*;

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
    let report = crate::ml::device::on_compute_threads(|| {
        let epoch_clock = std::cell::Cell::new(Instant::now());
        train(&args.data, &options, &compute, &out, &mut |p| match p {
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
    })
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
