//! `TrainOptions`: what to train and how, its defaults per model kind, and its checks.

use super::*;

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

pub(crate) fn resnet() -> Architecture {
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
        if self.frozen_blocks > crate::ml::efficientnet::BLOCKS {
            return bad(format!(
                "frozen blocks {} is more than the network's {}",
                self.frozen_blocks,
                crate::ml::efficientnet::BLOCKS
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
