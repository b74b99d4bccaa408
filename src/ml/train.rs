//! Training of the lung network (joint segmentation + classification loss) and the classifier,
//! on a local dataset folder (see `ml::data`), on whatever device `ml::device` chose.
//!
//! Every epoch writes a checkpoint (weights, Adam state, RNG state, history) atomically, committed
//! by `checkpoint.json` written last, so a run killed at any moment — even by SIGKILL — resumes
//! from the last complete epoch (`TrainOptions::resume`). The finished model is written as `config.json`,
//! `weights.bpk`, `card.json` and `MODEL_CARD.md` into the output folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, sigmoid};
use serde::{Deserialize, Serialize};

use super::augment::{AugmentConfig, augment};
use super::bundle::{ModelCard, ModelKind, save_module};
use super::checkpoint;
use super::classifier::{Architecture, ClassifierConfig};
use super::data::{PreparedSample, prepare, read_labels, split_by_patient3};
use super::device::ComputeDevice;
use super::error::MlError;
use super::lung::LungNetConfig;
use super::metrics::{SplitMix64, accuracy, auc_bootstrap, dice};
use super::tensor_to_vec;
use crate::io::write::write_atomically;

/// What to train and how.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    pub kind: ModelKind,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Final learning rate as a fraction of the initial one (cosine schedule).
    pub final_lr_fraction: f64,
    pub seed: u64,
    pub validation_fraction: f64,
    pub input_size: usize,
    pub base_channels: usize,
    /// Weight of the classification loss in the lung network's joint loss.
    pub classification_weight: f32,
    pub augment: Option<AugmentConfig>,
    /// Use at most this many images (for quick runs and tests).
    pub max_images: Option<usize>,
    /// Model name and version written into the card.
    pub name: String,
    pub version: String,
    /// The command line that reproduces this run (recorded in the card).
    #[serde(default)]
    pub command: String,
    /// Start from this bundle's weights (fine-tuning) instead of a random initialisation. Its
    /// input size and width replace `input_size` and `base_channels`.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// Continue from `out_dir/checkpoint.json` when it exists and was made with the same options.
    #[serde(default)]
    pub resume: bool,
    /// Freeze the feature extractor (lung: encoder + bottleneck; classifier: stem + stages).
    #[serde(default)]
    pub freeze_encoder: bool,
    /// Stop when the validation metric (Dice, else macro AUC, else accuracy) has not improved for
    /// this many epochs.
    #[serde(default)]
    pub patience: Option<usize>,
    /// Keep the weights of the epoch with the best validation metric rather than the last one
    /// (the card then says which epoch was selected: its validation figure is optimistic).
    #[serde(default)]
    pub keep_best: bool,
    /// Saliency recipe, stage 3: epochs of the fusion classifier (both encoders frozen).
    #[serde(default)]
    pub fusion_epochs: usize,
    /// Saliency: folder with the gaze recordings (default `<data>/gaze`).
    #[serde(default)]
    pub gaze_dir: Option<PathBuf>,
    /// Saliency, heatmap-generator recipe: weight of the loss between the classifier's guided
    /// backpropagation map and the gaze map. Above 0 the classifier is trained too (its class
    /// loss plus this term) instead of being frozen, and is saved beside the saliency network.
    #[serde(default)]
    pub heatmap_generator_weight: f32,
    /// Classifier architecture of a new model (a starting bundle brings its own).
    #[serde(default = "resnet")]
    pub architecture: Architecture,
    /// EfficientNet-Lite0: start from these ImageNet weights (a PyTorch state dict, imported
    /// through burn's PyTorch store) with a new classification layer.
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    /// EfficientNet-Lite0: keep the stem and this many of the 16 blocks frozen (their ImageNet
    /// features and batch-norm statistics), training the rest.
    #[serde(default)]
    pub frozen_blocks: usize,
    /// Fraction of patients held out as a test split: used for nothing during training (not early
    /// stopping, keep-best, calibration or the operating point) and reported in the card.
    #[serde(default)]
    pub test_fraction: f64,
    /// Caveats particular to this dataset, written into the card after the standard ones.
    #[serde(default)]
    pub limitations: Vec<String>,
    /// Fine-tuning the (fully convolutional) lung network at `input_size` rather than at the
    /// starting bundle's size: how a 128² network is carried to 256².
    #[serde(default)]
    pub override_input_size: bool,
}

fn resnet() -> Architecture {
    Architecture::ResNet
}

impl TrainOptions {
    /// Refuse options that would fail inside burn or make no sense, with a message naming the
    /// option (the GUI and the CLI both show it).
    pub fn validate(&self) -> Result<(), MlError> {
        let bad = |m: String| Err(MlError::Options(m));
        let efficientnet = self.kind == ModelKind::Classifier
            && self.architecture == Architecture::EfficientNetLite0;
        let efficientnet_lung =
            self.kind == ModelKind::Lung && self.architecture == Architecture::EfficientNetLite0;
        let multiple = if efficientnet || efficientnet_lung {
            32
        } else {
            16
        };
        if (self.init_from.is_none() || self.override_input_size)
            && (!(multiple..=1024).contains(&self.input_size)
                || !self.input_size.is_multiple_of(multiple))
        {
            return bad(format!(
                "input size {} is not a multiple of {multiple} between {multiple} and 1024 (the network downsamples {} times)",
                self.input_size,
                multiple.trailing_zeros()
            ));
        }
        if self.pretrained.is_some()
            && (!(efficientnet || efficientnet_lung) || self.init_from.is_some())
        {
            return bad(
                "ImageNet weights (--pretrained) start a new EfficientNet-Lite0 network (classifier or lung encoder), not a bundle or another architecture".into(),
            );
        }
        if self.init_from.is_none() && !(1..=256).contains(&self.base_channels) {
            return bad(format!(
                "base channels {} is not between 1 and 256",
                self.base_channels
            ));
        }
        if !(1..=4096).contains(&self.batch_size) {
            return bad(format!(
                "batch size {} is not between 1 and 4096",
                self.batch_size
            ));
        }
        if self.epochs > 100_000 || self.fusion_epochs > 100_000 {
            return bad("more than 100,000 epochs".into());
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate < 10.0)
        {
            return bad(format!(
                "learning rate {} is not in (0, 10)",
                self.learning_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.final_lr_fraction) {
            return bad(format!(
                "final learning-rate fraction {} is not in [0, 1]",
                self.final_lr_fraction
            ));
        }
        if !(0.0..0.9).contains(&self.test_fraction)
            || self.validation_fraction + self.test_fraction >= 1.0
        {
            return bad(format!(
                "test fraction {} with validation fraction {} leaves no training patients",
                self.test_fraction, self.validation_fraction
            ));
        }
        if self.frozen_blocks > super::efficientnet::BLOCKS {
            return bad(format!(
                "frozen blocks {} is more than the network's {}",
                self.frozen_blocks,
                super::efficientnet::BLOCKS
            ));
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return bad(format!(
                "validation fraction {} is not in (0, 1)",
                self.validation_fraction
            ));
        }
        for (name, w) in [
            ("classification weight", self.classification_weight),
            ("heatmap-generator weight", self.heatmap_generator_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return bad(format!("{name} {w} must be finite and not negative"));
            }
        }
        Ok(())
    }

    pub fn new(kind: ModelKind) -> Self {
        Self {
            kind,
            epochs: 30,
            batch_size: 8,
            learning_rate: 2e-3,
            final_lr_fraction: 0.05,
            seed: 42,
            validation_fraction: 0.2,
            input_size: 128,
            base_channels: 16,
            classification_weight: 0.3,
            augment: Some(AugmentConfig::default()),
            max_images: None,
            name: kind.default_name().into(),
            version: "1.0.0".into(),
            command: String::new(),
            init_from: None,
            resume: false,
            freeze_encoder: false,
            patience: None,
            keep_best: false,
            fusion_epochs: 0,
            gaze_dir: None,
            heatmap_generator_weight: 0.0,
            architecture: Architecture::ResNet,
            pretrained: None,
            frozen_blocks: 0,
            test_fraction: 0.0,
            limitations: Vec::new(),
            override_input_size: false,
        }
    }
}

/// Validation metrics after an epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean Dice over validation images with masks (lung network only).
    pub dice: Option<f64>,
    pub accuracy: f64,
    /// One-vs-rest AUC with bootstrap 95 % CI per class (classes absent from validation omitted).
    pub per_class_auc: Vec<(String, super::metrics::AucWithCi)>,
    pub macro_auc: Option<f64>,
    pub images: usize,
    /// Confusion matrix: row = true class, column = predicted class.
    #[serde(default)]
    pub confusion: Vec<Vec<usize>>,
    /// Saliency network: mean KL, CC and HS of the predicted map against the gaze map.
    #[serde(default)]
    pub saliency: Option<SaliencyScores>,
    /// A calibrated two-class classifier: its card's operating point on these images.
    #[serde(default)]
    pub operating_point: Option<OperatingPoint>,
}

/// Sensitivity and specificity at the card's threshold, and the expected calibration error
/// (15 bins) without and with the card's temperature.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub class: String,
    pub threshold: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub ece_uncalibrated: f64,
    pub ece_calibrated: f64,
}

/// Mean saliency metrics over validation images (maps on the model grid, summed to 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SaliencyScores {
    pub kl: f64,
    pub cc: f64,
    pub hs: f64,
    pub images: usize,
    /// Heatmap-generator recipe: KL of the gaze map from the classifier's guided-backprop map.
    #[serde(default)]
    pub generator_kl: Option<f64>,
}

impl Evaluation {
    /// The metric early stopping and the trainer's curve follow: Dice when there are masks, else
    /// macro AUC, else accuracy.
    pub fn headline(&self) -> (&'static str, f64) {
        if let Some(s) = self.saliency {
            return ("CC", s.cc);
        }
        match (self.dice, self.macro_auc) {
            (Some(d), _) => ("Dice", d),
            (None, Some(a)) => ("macro AUC", a),
            (None, None) => ("accuracy", self.accuracy),
        }
    }

    /// The evaluation as CSV rows: metric, class, value, ci_low, ci_high.
    pub fn to_csv(&self, class_names: &[String]) -> String {
        let mut out = String::from("metric,class,value,ci_low,ci_high\n");
        if let Some(d) = self.dice {
            out += &format!("dice,,{d:.6},,\n");
        }
        if let Some(sal) = self.saliency {
            out += &format!(
                "kl,,{:.6},,\ncc,,{:.6},,\nhs,,{:.6},,\n",
                sal.kl, sal.cc, sal.hs
            );
        }
        out += &format!("accuracy,,{:.6},,\n", self.accuracy);
        if let Some(m) = self.macro_auc {
            out += &format!("macro_auc,,{m:.6},,\n");
        }
        for (name, a) in &self.per_class_auc {
            out += &format!("auc,{name},{:.6},{:.6},{:.6}\n", a.auc, a.ci_low, a.ci_high);
        }
        if let Some(o) = &self.operating_point {
            out += &format!(
                "threshold,{c},{:.6},,\nsensitivity,{c},{:.6},,\nspecificity,{c},{:.6},,\nece_uncalibrated,,{:.6},,\nece_calibrated,,{:.6},,\n",
                o.threshold,
                o.sensitivity,
                o.specificity,
                o.ece_uncalibrated,
                o.ece_calibrated,
                c = o.class
            );
        }
        for (i, row) in self.confusion.iter().enumerate() {
            for (j, n) in row.iter().enumerate() {
                let name = |k: usize| class_names.get(k).cloned().unwrap_or_else(|| k.to_string());
                out += &format!("confusion,{}→{},{n},,\n", name(i), name(j));
            }
        }
        out
    }
}

/// Progress reported once per batch and per epoch.
#[derive(Clone, Debug)]
pub enum TrainProgress {
    Batch {
        epoch: usize,
        batch: usize,
        batches: usize,
        loss: f64,
    },
    Epoch {
        epoch: usize,
        epochs: usize,
        train_loss: f64,
        evaluation: Box<Evaluation>,
        seconds: f64,
    },
    Message(String),
}

/// The outcome of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub options: TrainOptions,
    pub class_names: Vec<String>,
    pub train_images: usize,
    pub validation_images: usize,
    pub train_patients: usize,
    pub validation_patients: usize,
    pub epochs_run: usize,
    pub seconds: f64,
    pub device: String,
    pub history: Vec<(usize, f64, Evaluation)>,
    pub final_evaluation: Evaluation,
    pub data_problems: Vec<String>,
    /// The epoch whose weights were kept (with `keep_best`), when it is not the last one.
    #[serde(default)]
    pub selected_epoch: Option<usize>,
    /// The held-out test split (`TrainOptions::test_fraction`), evaluated once after training.
    #[serde(default)]
    pub test_images: usize,
    #[serde(default)]
    pub test_patients: usize,
    #[serde(default)]
    pub test_evaluation: Option<Evaluation>,
    /// Two-class classifiers: temperature and operating point fitted on validation, measured on
    /// the test split (or on validation when there is none).
    #[serde(default)]
    pub calibration: Option<super::calibration::Calibration>,
}

// One value for the whole run: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Net {
    Lung(super::lung::LungNet),
    Classifier(super::classifier::Classifier),
}

impl Net {
    /// (class logits, mask logits if any)
    fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Option<Tensor<4>>) {
        match self {
            Net::Lung(m) => {
                let out = m.forward(x);
                (out.class_logits, Some(out.mask_logits))
            }
            Net::Classifier(m) => (m.forward(x), None),
        }
    }
    fn valid(&self) -> Net {
        match self {
            Net::Lung(m) => Net::Lung(m.valid()),
            Net::Classifier(m) => Net::Classifier(m.valid()),
        }
    }
}

/// Train a model from scratch on the dataset at `data_root`, writing it to `out_dir`.
pub fn train(
    data_root: &Path,
    options: &TrainOptions,
    compute: &ComputeDevice,
    out_dir: &Path,
    progress: &mut dyn FnMut(TrainProgress),
    cancel: &AtomicBool,
) -> Result<TrainReport, MlError> {
    options.validate()?;
    if options.kind == ModelKind::Saliency {
        return super::saliency_train::train_saliency(
            data_root, options, compute, out_dir, progress, cancel,
        );
    }
    let started = Instant::now();
    let device = &compute.device;
    // The seed fixes the initial weights too (the backend's generator), not only split and order.
    device.seed(options.seed);
    let (mut records, row_problems) = read_labels(data_root)?;
    let mut data_problems: Vec<String> = row_problems
        .iter()
        .map(|p| format!("labels.csv line {}: {}", p.line, p.message))
        .collect();
    if options.kind == ModelKind::Lung {
        // Segmentation needs masks; images without one still train the classification head.
        records.sort_by_key(|r| r.mask.is_none());
    }
    if let Some(max) = options.max_images {
        records.truncate(max);
    }
    let class_names: Vec<String> = {
        let mut names: Vec<String> = records
            .iter()
            .map(|r| r.label.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Put "normal" first when present, for readable cards.
        names.sort_by_key(|n| n != "normal");
        names
    };
    if class_names.len() < 2 {
        return Err(MlError::Dataset(format!(
            "need at least two labels, found {class_names:?}"
        )));
    }
    let split = split_by_patient3(
        &records,
        options.validation_fraction,
        options.test_fraction,
        options.seed,
    );
    let (train_idx, val_idx, test_idx) = (split.train, split.validation, split.test);
    let patients = |idx: &[usize]| {
        idx.iter()
            .map(|&i| records[i].patient_id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let (train_patients, validation_patients) = (patients(&train_idx), patients(&val_idx));
    let test_patients = patients(&test_idx);
    progress(TrainProgress::Message(format!(
        "{} images ({} train / {} validation / {} test; {} / {} / {test_patients} patients), classes {:?}",
        records.len(),
        train_idx.len(),
        val_idx.len(),
        test_idx.len(),
        train_patients,
        validation_patients,
        class_names
    )));
    let (mut net, options) = initial_net(options, &class_names, device)?;
    let options = &options;

    let with_masks = options.kind == ModelKind::Lung;
    let pick = |idx: &[usize]| idx.iter().map(|&i| records[i].clone()).collect::<Vec<_>>();
    let (train_set, p1) = prepare(
        &pick(&train_idx),
        &class_names,
        options.input_size,
        with_masks,
    );
    let (val_set, p2) = prepare(
        &pick(&val_idx),
        &class_names,
        options.input_size,
        with_masks,
    );
    let (test_set, p3) = prepare(
        &pick(&test_idx),
        &class_names,
        options.input_size,
        with_masks,
    );
    data_problems.extend(p1);
    data_problems.extend(p2);
    data_problems.extend(p3);
    if train_set.is_empty() || val_set.is_empty() {
        return Err(MlError::Dataset(
            "no usable images in the training or validation split".into(),
        ));
    }

    // Inverse-frequency class weights, normalised to mean 1.
    let mut counts = vec![0usize; class_names.len()];
    for s in &train_set {
        counts[s.class] += 1;
    }
    let raw: Vec<f32> = counts.iter().map(|&c| 1.0 / (c.max(1) as f32)).collect();
    let mean = raw.iter().sum::<f32>() / raw.len() as f32;
    let class_weights: Vec<f32> = raw.iter().map(|w| w / mean).collect();

    let mut optimizer = AdamConfig::new().init();
    let mut rng = SplitMix64::new(options.seed ^ 0xA5A5);
    let batches = train_set.len().div_ceil(options.batch_size.max(1));
    let mut history = Vec::new();
    let mut epochs_run = 0;
    let mut seconds_before = 0.0;
    std::fs::create_dir_all(out_dir)?;
    let fingerprint = Fingerprint {
        options: comparable(options),
        class_names: class_names.clone(),
        train_images: train_set.len(),
        validation_images: val_set.len(),
    };
    log_line(
        out_dir,
        &format!(
            "run: {} on {} ({} train / {} validation images), options {}",
            options.kind.noun(),
            data_root.display(),
            train_set.len(),
            val_set.len(),
            serde_json::to_string(&comparable(options)).unwrap_or_default()
        ),
    );
    if options.resume
        && let Some(state) = read_checkpoint(out_dir)?
    {
        if state.fingerprint != fingerprint {
            return Err(MlError::Config(format!(
                "the checkpoint in {} was made with different options or data; \
                 use the same options, or remove checkpoint.json to start over",
                out_dir.display()
            )));
        }
        let weights = out_dir.join(&state.weights);
        net = match net {
            Net::Lung(m) => Net::Lung(super::bundle::load_into(m, &weights)?),
            Net::Classifier(m) => Net::Classifier(m.load(&weights)?),
        };
        let bytes = std::fs::read(out_dir.join(&state.optimizer))?;
        let record =
            burn::optim::OptimizerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
                .map_err(|e| MlError::Weights(format!("optimizer state: {e:?}")))?;
        optimizer = optimizer.load_record(record);
        rng = SplitMix64::new(state.rng);
        history = state.history;
        epochs_run = state.epochs_done;
        seconds_before = state.seconds;
        progress(TrainProgress::Message(format!(
            "resuming after epoch {} of {} (checkpoint in {})",
            epochs_run,
            options.epochs,
            out_dir.display()
        )));
    }
    if options.freeze_encoder {
        net = match net {
            Net::Lung(m) => Net::Lung(m.freeze_encoder()),
            Net::Classifier(m) => Net::Classifier(m.freeze_features()),
        };
    }
    if options.frozen_blocks > 0 {
        net = match net {
            Net::Classifier(super::classifier::Classifier::EfficientNet(m)) => Net::Classifier(
                super::classifier::Classifier::EfficientNet(m.freeze_prefix(options.frozen_blocks)),
            ),
            other => other,
        };
    }
    // burn-wgpu 0.22.1 gives wrong gradients when the lung network's two heads are
    // back-propagated in one pass (each head alone is right; `cxrlens check-backends` on an H100),
    // so on wgpu the two losses take separate passes and their gradients are summed.
    let split_heads = compute.kind == super::device::BackendKind::Wgpu;
    if split_heads && matches!(net, Net::Lung(_)) {
        progress(TrainProgress::Message(
            "wgpu: the mask and class losses are back-propagated separately and summed".into(),
        ));
    }
    let first_epoch = epochs_run;
    for epoch in first_epoch..options.epochs {
        let epoch_started = Instant::now();
        let progress_frac = epoch as f64 / options.epochs.max(1) as f64;
        let lr = options.learning_rate
            * (options.final_lr_fraction
                + (1.0 - options.final_lr_fraction)
                    * 0.5
                    * (1.0 + (std::f64::consts::PI * progress_frac).cos()));
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for (b, chunk) in order.chunks(options.batch_size.max(1)).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(MlError::Cancelled);
            }
            let batch = make_batch(&train_set, chunk, options, &mut rng, device);
            let (loss_value, grads) = if split_heads && batch.mask.is_some() {
                split_head_step(&net, batch, &class_weights, options, device)?
            } else {
                let (class_logits, mask_logits) = net.forward(batch.x);
                let mut loss =
                    weighted_cross_entropy(class_logits, &batch.classes, &class_weights, device);
                if let (Some(mask_logits), Some((target, weight))) = (mask_logits, batch.mask) {
                    loss = loss.mul_scalar(options.classification_weight)
                        + segmentation_loss(mask_logits, target, weight);
                }
                let value = scalar(&loss)?;
                (value, net_ref(&net).params(loss.backward()))
            };
            if !loss_value.is_finite() {
                return Err(MlError::Data(format!(
                    "loss became {loss_value} in epoch {}",
                    epoch + 1
                )));
            }
            loss_sum += loss_value;
            net = match net {
                Net::Lung(m) => Net::Lung(optimizer.step(lr, m, grads)),
                Net::Classifier(m) => Net::Classifier(m.step(&mut optimizer, lr, grads)),
            };
            progress(TrainProgress::Batch {
                epoch: epoch + 1,
                batch: b + 1,
                batches,
                loss: loss_value,
            });
        }
        let evaluation = evaluate(&net.valid(), &val_set, &class_names, device, options.seed)?;
        let train_loss = loss_sum / batches as f64;
        epochs_run = epoch + 1;
        history.push((epochs_run, train_loss, evaluation.clone()));
        write_checkpoint(
            out_dir,
            &net,
            &optimizer,
            &CheckpointState {
                fingerprint: fingerprint.clone(),
                epochs_done: epochs_run,
                weights: String::new(),
                optimizer: String::new(),
                rng: rng.state(),
                history: history.clone(),
                seconds: seconds_before + started.elapsed().as_secs_f64(),
            },
        )?;
        let (metric, value) = evaluation.headline();
        log_line(
            out_dir,
            &format!(
                "epoch {epochs_run}/{}: train loss {train_loss:.4}, validation {metric} {value:.4}, accuracy {:.3} ({:.0} s)",
                options.epochs,
                evaluation.accuracy,
                epoch_started.elapsed().as_secs_f64()
            ),
        );
        progress(TrainProgress::Epoch {
            epoch: epochs_run,
            epochs: options.epochs,
            train_loss,
            evaluation: Box::new(evaluation),
            seconds: epoch_started.elapsed().as_secs_f64(),
        });
        let best_index = |history: &[(usize, f64, Evaluation)]| {
            history
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.2.headline().1.total_cmp(&b.1.2.headline().1))
                .map_or(0, |(i, _)| i)
        };
        if options.keep_best && best_index(&history) == history.len() - 1 {
            match &net {
                Net::Lung(m) => save_module(m.clone(), &out_dir.join(BEST))?,
                Net::Classifier(m) => m.save(&out_dir.join(BEST))?,
            }
        }
        if let Some(patience) = options.patience {
            let best = best_index(&history);
            if history.len() - 1 - best >= patience.max(1) {
                let m = format!(
                    "early stop: validation {metric} has not improved for {patience} epochs (best at epoch {})",
                    best + 1
                );
                log_line(out_dir, &m);
                progress(TrainProgress::Message(m));
                break;
            }
        }
    }
    let mut final_evaluation = history.last().map(|h| h.2.clone()).unwrap_or_default();
    let mut selected_epoch = None;
    if options.keep_best && !history.is_empty() {
        let best = history
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.2.headline().1.total_cmp(&b.1.2.headline().1))
            .map_or(0, |(i, _)| i);
        let best_file = out_dir.join(BEST);
        if best + 1 != history.len() && best_file.is_file() {
            net = match net {
                Net::Lung(m) => Net::Lung(super::bundle::load_into(m, &best_file)?),
                Net::Classifier(m) => Net::Classifier(m.load(&best_file)?),
            };
            final_evaluation = history[best].2.clone();
            selected_epoch = Some(history[best].0);
            let m = format!(
                "kept the weights of epoch {} (best validation {} {:.4})",
                history[best].0,
                final_evaluation.headline().0,
                final_evaluation.headline().1
            );
            log_line(out_dir, &m);
            progress(TrainProgress::Message(m));
        }
    }
    // Held-out figures of the model as shipped: the test split is touched here only.
    let (test_evaluation, calibration) = {
        let frozen = net.valid();
        let validation = predict(&frozen, &val_set, device)?;
        let test = (!test_set.is_empty())
            .then(|| predict(&frozen, &test_set, device))
            .transpose()?;
        let calibration = match (options.kind, &test) {
            (ModelKind::Classifier, Some(t)) => calibrate(&validation, t, "test", &class_names),
            (ModelKind::Classifier, None) => {
                calibrate(&validation, &validation, "validation", &class_names)
            }
            _ => None,
        };
        (
            test.map(|t| t.evaluation(&class_names, options.seed, 1.0)),
            calibration,
        )
    };
    if let Some(t) = &test_evaluation {
        let m = format!(
            "test split ({} images): {} {:.4}, accuracy {:.3}",
            t.images,
            t.headline().0,
            t.headline().1,
            t.accuracy
        );
        log_line(out_dir, &m);
        progress(TrainProgress::Message(m));
    }
    let report = TrainReport {
        options: options.clone(),
        class_names: class_names.clone(),
        train_images: train_set.len(),
        validation_images: val_set.len(),
        train_patients,
        validation_patients,
        epochs_run,
        seconds: seconds_before + started.elapsed().as_secs_f64(),
        device: compute.description.clone(),
        history,
        final_evaluation,
        data_problems,
        selected_epoch,
        test_images: test_set.len(),
        test_patients,
        test_evaluation,
        calibration,
    };
    // The finished model: config, weights, card.
    let config_json = match &net {
        Net::Lung(m) => {
            save_module(m.clone(), &out_dir.join("weights.bpk"))?;
            serde_json::to_string_pretty(&lung_config(options, class_names.clone()))
        }
        Net::Classifier(m) => {
            m.save(&out_dir.join("weights.bpk"))?;
            serde_json::to_string_pretty(&classifier_config(options, class_names.clone()))
        }
    }
    .map_err(|e| MlError::Config(e.to_string()))?;
    write_atomically(&out_dir.join("config.json"), config_json.as_bytes())?;
    let mut card = ModelCard::from_report(&report, data_root);
    card.parameters = match &net {
        Net::Lung(m) => m.num_params(),
        Net::Classifier(m) => m.num_params(),
    };
    card.command = options.command.clone();
    card.architecture = describe_network(options, &net);
    card.limitations = super::bundle::default_limitations(
        options.kind,
        &data_root
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        options.input_size,
    );
    card.limitations.extend(options.limitations.iter().cloned());
    card.write(out_dir)?;
    write_atomically(
        &out_dir.join("training-report.json"),
        serde_json::to_string_pretty(&report)
            .map_err(|e| MlError::Config(e.to_string()))?
            .as_bytes(),
    )?;
    write_atomically(
        &out_dir.join("evaluation.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "class_names": report.class_names,
            "validation_images": report.validation_images,
            "validation_patients": report.validation_patients,
            "evaluation": report.final_evaluation,
        }))
        .map_err(|e| MlError::Config(e.to_string()))?
        .as_bytes(),
    )?;
    write_atomically(
        &out_dir.join("evaluation.csv"),
        report
            .final_evaluation
            .to_csv(&report.class_names)
            .as_bytes(),
    )?;
    log_line(
        out_dir,
        &format!(
            "finished: {} epochs, {:.0} s",
            report.epochs_run, report.seconds
        ),
    );
    if let Err(e) = remove_checkpoint(out_dir) {
        log_line(
            out_dir,
            &format!("the checkpoint could not be removed: {e}"),
        );
    }
    let _ = std::fs::remove_file(out_dir.join(BEST));
    Ok(report)
}

/// Appends a line to `training.log` beside the checkpoints (best effort: a log that cannot be
/// written never stops training).
pub(crate) fn log_line(out_dir: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out_dir.join("training.log"))
    {
        let _ = writeln!(f, "{line}");
    }
}

/// What a checkpoint must agree with to be resumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Fingerprint {
    options: serde_json::Value,
    class_names: Vec<String>,
    train_images: usize,
    validation_images: usize,
}

/// The options that change a run (not the command line, the resume flag or the run's name).
pub(crate) fn comparable(options: &TrainOptions) -> serde_json::Value {
    let mut o = options.clone();
    o.command.clear();
    o.resume = false;
    serde_json::to_value(&o).unwrap_or_default()
}

/// `checkpoint.json`: the commit record of the last complete epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointState {
    fingerprint: Fingerprint,
    epochs_done: usize,
    /// File names (in the output folder) of the weights and the optimizer state.
    weights: String,
    optimizer: String,
    rng: u64,
    history: Vec<(usize, f64, Evaluation)>,
    seconds: f64,
}

/// The best epoch's weights so far (with `keep_best`).
const BEST: &str = "best.bpk";

impl checkpoint::Record for CheckpointState {
    fn files(&self) -> Vec<&str> {
        vec![&self.weights, &self.optimizer]
    }
}

/// Writes this epoch's weights and optimizer state under new names, then commits them
/// (`ml::checkpoint`).
fn write_checkpoint(
    out_dir: &Path,
    net: &Net,
    optimizer: &burn::optim::ModuleOptimizer,
    state: &CheckpointState,
) -> Result<(), MlError> {
    let previous = read_checkpoint(out_dir);
    let mut state = state.clone();
    state.weights = checkpoint::file_name(state.epochs_done, "bpk");
    state.optimizer = checkpoint::file_name(state.epochs_done, "optim.bpk");
    match net {
        Net::Lung(m) => save_module(m.clone(), &out_dir.join(&state.weights))?,
        Net::Classifier(m) => m.save(&out_dir.join(&state.weights))?,
    }
    let bytes = optimizer
        .to_record()
        .into_bytes()
        .map_err(|e| MlError::Weights(format!("optimizer state: {e:?}")))?;
    write_atomically(&out_dir.join(&state.optimizer), &bytes)?;
    checkpoint::commit(out_dir, previous, &state)
}

fn read_checkpoint(out_dir: &Path) -> Result<Option<CheckpointState>, MlError> {
    checkpoint::read(out_dir)
}

/// After a finished run: the checkpoint files are no longer needed.
fn remove_checkpoint(out_dir: &Path) -> Result<(), MlError> {
    checkpoint::remove::<CheckpointState>(out_dir)
}

/// The network to start from: the bundle named by `init_from` (kind and classes must match the
/// run), or a fresh initialisation. Returns the options with the bundle's geometry filled in.
fn initial_net(
    options: &TrainOptions,
    class_names: &[String],
    device: &Device,
) -> Result<(Net, TrainOptions), MlError> {
    let mut options = options.clone();
    if let Some(dir) = &options.init_from {
        let info = super::bundle::BundleInfo::open(dir, false)?;
        if info.card.kind != options.kind {
            return Err(MlError::Config(format!(
                "{} holds a {}, not a {}",
                dir.display(),
                info.card.kind.noun(),
                options.kind.noun()
            )));
        }
        let (net, names, size, base) = match super::bundle::load_bundle(&info, device)? {
            super::bundle::LoadedModel::Lung(m, c) => {
                options.architecture = if c.encoder.as_deref() == Some(super::lung::EFFICIENTNET) {
                    Architecture::EfficientNetLite0
                } else {
                    Architecture::ResNet
                };
                (
                    Net::Lung(m.train()),
                    c.class_names,
                    c.input_size,
                    c.base_channels,
                )
            }
            super::bundle::LoadedModel::Classifier(m, c) => {
                options.architecture = c.architecture();
                let base = match &c {
                    ClassifierConfig::ResNet(r) => r.base_channels,
                    ClassifierConfig::EfficientNetLite0(_) => options.base_channels,
                };
                (
                    Net::Classifier(m.train()),
                    c.class_names().to_vec(),
                    c.input_size(),
                    base,
                )
            }
            super::bundle::LoadedModel::Saliency(..) => {
                return Err(MlError::Config(
                    "saliency models are trained with the staged saliency recipe".into(),
                ));
            }
        };
        if names != class_names {
            return Err(MlError::Dataset(format!(
                "the starting model {} predicts {names:?} but the dataset's labels are {class_names:?}",
                info.title()
            )));
        }
        if !(options.override_input_size && options.kind == ModelKind::Lung) {
            options.input_size = size;
        }
        options.base_channels = base;
        return Ok((net, options));
    }
    let names = class_names.to_vec();
    let net = match options.kind {
        ModelKind::Lung => {
            let config = lung_config(&options, names);
            let mut model = config.init(device);
            if let Some(weights) = &options.pretrained {
                let backbone =
                    super::efficientnet::EfficientNetLiteConfig::new(vec!["unused".into()])
                        .with_input_size(options.input_size);
                model = model.with_backbone(super::efficientnet::import_imagenet(
                    weights, &backbone, device,
                )?);
            }
            Net::Lung(model.train())
        }
        ModelKind::Classifier => {
            let config = classifier_config(&options, names);
            let model = match (&config, &options.pretrained) {
                (ClassifierConfig::EfficientNetLite0(c), Some(weights)) => {
                    super::classifier::Classifier::EfficientNet(
                        super::efficientnet::import_imagenet(weights, c, device)?,
                    )
                }
                _ => config.init(device),
            };
            Net::Classifier(model.train())
        }
        ModelKind::Saliency => {
            return Err(MlError::Config(
                "saliency models are trained with the staged saliency recipe".into(),
            ));
        }
    };
    Ok((net, options))
}

/// The trained network in words, for the card.
fn describe_network(options: &TrainOptions, net: &Net) -> String {
    let start = match (&options.pretrained, &options.init_from) {
        (Some(_), _) => "started from ImageNet weights",
        (None, Some(_)) => "fine-tuned from a bundle",
        (None, None) => "trained from a random initialisation",
    };
    match net {
        Net::Lung(_) => {
            let c = lung_config(options, Vec::new());
            let encoder = if c.encoder.as_deref() == Some(super::lung::EFFICIENTNET) {
                "U-Net on an EfficientNet-Lite0 encoder".to_string()
            } else {
                format!(
                    "U-Net, depth {}, {} base channels",
                    c.depth, c.base_channels
                )
            };
            format!(
                "multi-output lung network: {encoder} (lung mask) + linear class head on the pooled bottleneck, {start}; Grad-CAM target of the head: {}",
                c.target_layer()
            )
        }
        Net::Classifier(_) => {
            let c = classifier_config(options, Vec::new());
            let frozen = if options.frozen_blocks > 0 {
                format!("; stem and {} of 16 blocks frozen", options.frozen_blocks)
            } else {
                String::new()
            };
            format!(
                "{}, {start}{frozen}; Grad-CAM target: {}",
                c.architecture().label(),
                c.target_layer()
            )
        }
    }
}

/// The architecture and geometry of the lung network these options train (`architecture`
/// EfficientNet-Lite0 = the pretrained encoder).
fn lung_config(options: &TrainOptions, class_names: Vec<String>) -> LungNetConfig {
    let config = LungNetConfig::new(class_names)
        .with_input_size(options.input_size)
        .with_base_channels(options.base_channels);
    match options.architecture {
        Architecture::EfficientNetLite0 => {
            config.with_encoder(Some(super::lung::EFFICIENTNET.into()))
        }
        Architecture::ResNet => config,
    }
}

/// The architecture and geometry of the classifier these options train.
fn classifier_config(options: &TrainOptions, class_names: Vec<String>) -> ClassifierConfig {
    match options.architecture {
        Architecture::ResNet => ClassifierConfig::ResNet(
            super::resnet::ResNetConfig::new(class_names)
                .with_input_size(options.input_size)
                .with_base_channels(options.base_channels),
        ),
        Architecture::EfficientNetLite0 => ClassifierConfig::EfficientNetLite0(
            super::efficientnet::EfficientNetLiteConfig::new(class_names)
                .with_input_size(options.input_size),
        ),
    }
}

fn net_ref(net: &Net) -> NetRef<'_> {
    NetRef(net)
}

/// Lets `GradientsParams::from_grads` see whichever module is inside [`Net`].
struct NetRef<'a>(&'a Net);

impl NetRef<'_> {
    fn params(&self, grads: burn::tensor::Gradients) -> GradientsParams {
        match self.0 {
            Net::Lung(m) => GradientsParams::from_grads(grads, m),
            Net::Classifier(m) => m.gradients(grads),
        }
    }
}

struct Batch {
    x: Tensor<4>,
    classes: Vec<usize>,
    mask: Option<(Tensor<4>, Tensor<4>)>,
}

fn make_batch(
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
fn weighted_cross_entropy(
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
fn segmentation_loss(logits: Tensor<4>, target: Tensor<4>, weight: Tensor<4>) -> Tensor<1> {
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

/// Network outputs on a prepared set.
struct Predictions {
    /// Class logits per image.
    logits: Vec<Vec<f32>>,
    actual: Vec<usize>,
    /// Dice per image with a mask (lung network).
    dices: Vec<f64>,
}

fn predict(net: &Net, set: &[PreparedSample], device: &Device) -> Result<Predictions, MlError> {
    let mut out = Predictions {
        logits: Vec::with_capacity(set.len()),
        actual: Vec::with_capacity(set.len()),
        dices: Vec::new(),
    };
    let device = device.clone().inner();
    for chunk in set.chunks(16) {
        let inputs: Vec<&super::preprocess::ModelInput> = chunk.iter().map(|s| &s.input).collect();
        let x = super::preprocess::batch_tensor(&inputs, &device);
        let (class_logits, mask_logits) = net.forward(x);
        let [_, k] = class_logits.dims();
        let z = tensor_to_vec(class_logits)?;
        for (i, s) in chunk.iter().enumerate() {
            out.logits.push(z[i * k..(i + 1) * k].to_vec());
            out.actual.push(s.class);
        }
        if let Some(mask_logits) = mask_logits {
            let m = tensor_to_vec(mask_logits)?;
            let plane = chunk[0].input.size * chunk[0].input.size;
            for (i, s) in chunk.iter().enumerate() {
                if let Some(mask) = &s.mask {
                    let pred: Vec<bool> = m[i * plane..(i + 1) * plane]
                        .iter()
                        .map(|&z| z > 0.0)
                        .collect();
                    let target: Vec<bool> = mask.target.iter().map(|&t| t > 0.5).collect();
                    out.dices.push(dice(&pred, &target, &mask.weight));
                }
            }
        }
    }
    Ok(out)
}

impl Predictions {
    /// Class probabilities at `temperature` (1 = the network's own softmax).
    fn probabilities(&self, temperature: f64) -> Vec<Vec<f32>> {
        self.logits
            .iter()
            .map(|z| {
                super::calibration::softmax_t(z, temperature)
                    .into_iter()
                    .map(|p| p as f32)
                    .collect()
            })
            .collect()
    }

    fn evaluation(&self, class_names: &[String], seed: u64, temperature: f64) -> Evaluation {
        let dice = (!self.dices.is_empty())
            .then(|| self.dices.iter().sum::<f64>() / self.dices.len() as f64);
        classification_evaluation(
            &self.probabilities(temperature),
            &self.actual,
            class_names,
            seed,
            dice,
        )
    }
}

fn evaluate(
    net: &Net,
    set: &[PreparedSample],
    class_names: &[String],
    device: &Device,
    seed: u64,
) -> Result<Evaluation, MlError> {
    Ok(predict(net, set, device)?.evaluation(class_names, seed, 1.0))
}

/// Temperature scaling and the operating point of a two-class classifier, fitted on `validation`
/// and measured on `reported` (the test split when there is one).
fn calibrate(
    validation: &Predictions,
    reported: &Predictions,
    reported_split: &str,
    class_names: &[String],
) -> Option<super::calibration::Calibration> {
    use super::calibration::{
        expected_calibration_error, fit_temperature, sensitivity_specificity, youden_threshold,
    };
    if class_names.len() != 2 {
        return None;
    }
    // The class that is not "normal" (class names put "normal" first when present).
    let positive = 1;
    let temperature = fit_temperature(&validation.logits, &validation.actual);
    let scores = |p: &Predictions| -> Vec<f64> {
        p.probabilities(temperature)
            .iter()
            .map(|v| v[positive] as f64)
            .collect()
    };
    let is_positive =
        |p: &Predictions| -> Vec<bool> { p.actual.iter().map(|&a| a == positive).collect() };
    let threshold = youden_threshold(&scores(validation), &is_positive(validation))?;
    let (sensitivity, specificity) =
        sensitivity_specificity(&scores(reported), &is_positive(reported), threshold)?;
    let as_f64 = |probs: Vec<Vec<f32>>| -> Vec<Vec<f64>> {
        probs
            .into_iter()
            .map(|v| v.into_iter().map(f64::from).collect())
            .collect()
    };
    Some(super::calibration::Calibration {
        temperature,
        positive_class: class_names[positive].clone(),
        threshold,
        ece_before: expected_calibration_error(
            &as_f64(reported.probabilities(1.0)),
            &reported.actual,
            15,
        ),
        ece_after: expected_calibration_error(
            &as_f64(reported.probabilities(temperature)),
            &reported.actual,
            15,
        ),
        sensitivity,
        specificity,
        measured_on: reported_split.into(),
    })
}

/// Which images of a dataset folder an evaluation uses.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldOut {
    /// The validation patients of the training split.
    Validation,
    /// The test patients of the training split (`TrainOptions::test_fraction`).
    Test,
    /// Every image (an external folder the model never saw).
    All,
}

/// A held-out set: which part of which patient split.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    pub held_out: HeldOut,
    pub validation_fraction: f64,
    pub test_fraction: f64,
    pub seed: u64,
}

impl SplitSpec {
    /// The split a bundle was trained with (from its `training-report.json`), held out as the
    /// test split when it had one, else validation; the defaults when there is no report.
    pub fn of_bundle(info: &super::bundle::BundleInfo) -> Self {
        let options = std::fs::read(info.dir.join("training-report.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<TrainReport>(&b).ok())
            .map(|r| r.options);
        let (validation_fraction, test_fraction, seed) = options.map_or((0.2, 0.0, 42), |o| {
            (o.validation_fraction, o.test_fraction, o.seed)
        });
        Self {
            held_out: if test_fraction > 0.0 {
                HeldOut::Test
            } else {
                HeldOut::Validation
            },
            validation_fraction,
            test_fraction,
            seed,
        }
    }

    pub fn indices(&self, records: &[super::data::Record]) -> Vec<usize> {
        match self.held_out {
            HeldOut::All => (0..records.len()).collect(),
            HeldOut::Validation | HeldOut::Test => {
                let split = split_by_patient3(
                    records,
                    self.validation_fraction,
                    self.test_fraction,
                    self.seed,
                );
                if self.held_out == HeldOut::Test {
                    split.test
                } else {
                    split.validation
                }
            }
        }
    }
}

/// Evaluates a bundle on a held-out set of a dataset folder: per-class AUC with bootstrap CI,
/// macro AUC, accuracy, confusion matrix, (lung network) Dice on the model grid, and for a
/// calibrated classifier the card's operating point and the calibration error. Rows whose label
/// the model does not know are left out and counted in the returned notes.
pub fn evaluate_bundle(
    data_root: &Path,
    info: &super::bundle::BundleInfo,
    spec: &SplitSpec,
    device: &Device,
) -> Result<(Evaluation, Vec<String>), MlError> {
    let (records, row_problems) = read_labels(data_root)?;
    let mut notes: Vec<String> = row_problems
        .iter()
        .map(|p| format!("labels.csv line {}: {}", p.line, p.message))
        .collect();
    let held_idx = spec.indices(&records);
    let names = &info.card.class_names;
    let held: Vec<_> = held_idx
        .iter()
        .map(|&i| records[i].clone())
        .filter(|r| names.contains(&r.label))
        .collect();
    if held.len() < held_idx.len() {
        notes.push(format!(
            "{} held-out images have labels the model does not predict ({names:?}) and were left out",
            held_idx.len() - held.len()
        ));
    }
    let with_masks = info.card.kind == ModelKind::Lung;
    let (set, problems) = prepare(&held, names, info.card.input_size, with_masks);
    notes.extend(problems);
    if set.is_empty() {
        return Err(MlError::Dataset("no usable held-out images".into()));
    }
    let net = match super::bundle::load_bundle(info, device)? {
        super::bundle::LoadedModel::Lung(m, _) => Net::Lung(m),
        super::bundle::LoadedModel::Classifier(m, _) => Net::Classifier(m),
        super::bundle::LoadedModel::Saliency(..) => {
            return Err(MlError::Config(
                "saliency bundles are evaluated against gaze maps (cxrlens gaze compare)".into(),
            ));
        }
    };
    let predictions = predict(&net.valid(), &set, device)?;
    let mut evaluation = predictions.evaluation(names, spec.seed, 1.0);
    if let Some(c) = &info.card.calibration {
        evaluation.operating_point = operating_point(&predictions, c, names);
    }
    Ok((evaluation, notes))
}

/// The card's operating point and calibration measured on `predictions`.
fn operating_point(
    predictions: &Predictions,
    c: &super::calibration::Calibration,
    names: &[String],
) -> Option<OperatingPoint> {
    use super::calibration::{expected_calibration_error, sensitivity_specificity};
    let k = names.iter().position(|n| *n == c.positive_class)?;
    let as_f64 = |probs: Vec<Vec<f32>>| -> Vec<Vec<f64>> {
        probs
            .into_iter()
            .map(|v| v.into_iter().map(f64::from).collect())
            .collect()
    };
    let calibrated = as_f64(predictions.probabilities(c.temperature));
    let scores: Vec<f64> = calibrated.iter().map(|p| p[k]).collect();
    let positive: Vec<bool> = predictions.actual.iter().map(|&a| a == k).collect();
    let (sensitivity, specificity) = sensitivity_specificity(&scores, &positive, c.threshold)?;
    Some(OperatingPoint {
        class: c.positive_class.clone(),
        threshold: c.threshold,
        sensitivity,
        specificity,
        ece_uncalibrated: expected_calibration_error(
            &as_f64(predictions.probabilities(1.0)),
            &predictions.actual,
            15,
        ),
        ece_calibrated: expected_calibration_error(&calibrated, &predictions.actual, 15),
    })
}

/// Where `cxrlens train` writes by default.
pub fn default_out_dir(kind: ModelKind) -> PathBuf {
    PathBuf::from("models").join(kind.default_name())
}

/// Accuracy, per-class one-vs-rest AUC with bootstrap CI, macro AUC and the confusion matrix from
/// class probabilities.
pub(crate) fn classification_evaluation(
    probs: &[Vec<f32>],
    actual: &[usize],
    class_names: &[String],
    seed: u64,
    dice: Option<f64>,
) -> Evaluation {
    let predicted: Vec<usize> = probs
        .iter()
        .map(|p| {
            p.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        })
        .collect();
    let mut per_class_auc = Vec::new();
    for (c, name) in class_names.iter().enumerate() {
        let scores: Vec<f64> = probs.iter().map(|p| p[c] as f64).collect();
        let positive: Vec<bool> = actual.iter().map(|&a| a == c).collect();
        if let Some(auc) = auc_bootstrap(&scores, &positive, 1000, seed) {
            per_class_auc.push((name.clone(), auc));
        }
    }
    let macro_auc = (!per_class_auc.is_empty()).then(|| {
        per_class_auc.iter().map(|(_, a)| a.auc).sum::<f64>() / per_class_auc.len() as f64
    });
    let mut confusion = vec![vec![0usize; class_names.len()]; class_names.len()];
    for (&a, &p) in actual.iter().zip(&predicted) {
        if a < confusion.len() && p < confusion.len() {
            confusion[a][p] += 1;
        }
    }
    Evaluation {
        saliency: None,
        operating_point: None,
        confusion,
        dice,
        accuracy: accuracy(&predicted, actual),
        per_class_auc,
        macro_auc,
        images: probs.len(),
    }
}

fn scalar(loss: &Tensor<1>) -> Result<f64, MlError> {
    Ok(tensor_to_vec(loss.clone().detach())?
        .first()
        .copied()
        .unwrap_or(f32::NAN) as f64)
}

/// One lung-network step with the class and mask losses back-propagated in separate passes and
/// their parameter gradients summed: the same gradient as one pass of their sum (tested on flex),
/// and the form that burn-wgpu 0.22.1 computes correctly. Returns the total loss and gradients.
fn split_head_step(
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
    let mut accumulator = burn::optim::GradientsAccumulator::<super::lung::LungNet>::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::backend_check::{Agreement, pattern};
    use crate::ml::lung::LungNetConfig;

    #[test]
    fn bad_options_are_refused_with_the_option_named() {
        let ok = TrainOptions::new(ModelKind::Lung);
        ok.validate().unwrap();
        type Change = fn(&mut TrainOptions);
        let cases: [(&str, Change); 6] = [
            ("input size 7", |o| o.input_size = 7),
            ("base channels 0", |o| o.base_channels = 0),
            ("batch size 0", |o| o.batch_size = 0),
            ("learning rate NaN", |o| o.learning_rate = f64::NAN),
            ("validation fraction 1", |o| o.validation_fraction = 1.0),
            ("classification weight -1", |o| {
                o.classification_weight = -1.0
            }),
        ];
        for (expected, change) in cases {
            let mut o = ok.clone();
            change(&mut o);
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains(expected), "{e} (expected {expected})");
        }
    }

    /// The split-head step (used on wgpu) gives the gradient of one pass over the summed loss.
    #[test]
    fn split_head_step_equals_one_pass_of_the_joint_loss() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = LungNetConfig::new(vec!["a".into(), "b".into()])
            .with_input_size(32)
            .with_base_channels(4)
            .with_depth(2)
            .init(&device)
            .train();
        let mut options = TrainOptions::new(ModelKind::Lung);
        options.classification_weight = 0.3;
        let (b, s) = (2, 32);
        let batch = || {
            let target: Vec<f32> = pattern(b * s * s, 9)
                .into_iter()
                .map(|v| if v > 0.0 { 1.0 } else { 0.0 })
                .collect();
            let weight: Vec<f32> = pattern(b * s * s, 10)
                .into_iter()
                .map(|v| if v > -0.8 { 1.0 } else { 0.0 })
                .collect();
            Batch {
                x: Tensor::<1>::from_floats(pattern(b * s * s, 8).as_slice(), &device)
                    .reshape([b, 1, s, s]),
                classes: vec![0, 1],
                mask: Some((
                    Tensor::<1>::from_floats(target.as_slice(), &device).reshape([b, 1, s, s]),
                    Tensor::<1>::from_floats(weight.as_slice(), &device).reshape([b, 1, s, s]),
                )),
            }
        };
        let class_weights = [1.0, 2.0];
        let net = Net::Lung(model.clone());
        let (split_loss, split) =
            split_head_step(&net, batch(), &class_weights, &options, &device).unwrap();

        let joint_batch = batch();
        let out = model.forward(joint_batch.x);
        let (target, weight) = joint_batch.mask.unwrap();
        let loss = weighted_cross_entropy(out.class_logits, &[0, 1], &class_weights, &device)
            .mul_scalar(options.classification_weight)
            + segmentation_loss(out.mask_logits, target, weight);
        let joint_loss = scalar(&loss).unwrap();
        let joint = GradientsParams::from_grads(loss.backward(), &model);

        assert!((split_loss - joint_loss).abs() < 1e-5 * joint_loss.abs().max(1.0));
        // Compare every parameter's gradient.
        struct Compare<'a> {
            split: &'a GradientsParams,
            joint: &'a GradientsParams,
            rows: Vec<Agreement>,
        }
        impl burn::module::ModuleVisitor for Compare<'_> {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let (Some(a), Some(b)) =
                    (self.joint.get::<D>(param.id), self.split.get::<D>(param.id))
                else {
                    return;
                };
                self.rows.push(Agreement::of(
                    format!("{:?}", param.id),
                    &tensor_to_vec(a).unwrap(),
                    &tensor_to_vec(b).unwrap(),
                ));
            }
        }
        let mut compare = Compare {
            split: &split,
            joint: &joint,
            rows: Vec::new(),
        };
        model.visit(&mut compare);
        assert!(compare.rows.len() >= 20, "{} gradients", compare.rows.len());
        for row in &compare.rows {
            assert!(row.reference_norm > 0.0 || row.max_abs == 0.0);
            assert!(row.relative_l2 < 1e-4, "{}: {}", row.what, row.relative_l2);
        }
    }
}
