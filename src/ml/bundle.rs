//! Model bundles on disk: a folder with `config.json` (the burn Config), `weights.bpk` (burnpack),
//! `card.json` (machine-readable model card) and `MODEL_CARD.md`.
//!
//! Shipped bundles live in the repository's `models/` (installed beside the binary); models the
//! user trains go to the user's data directory and are listed the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use super::classifier::{Classifier, ClassifierConfig};
use super::error::MlError;
use super::lung::{LungNet, LungNetConfig};
use super::saliency::{SaliencyNet, SaliencyNetConfig};
use super::train::TrainReport;
use crate::io::write::write_atomically;

/// Which architecture a bundle holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Lung,
    Classifier,
    Saliency,
}

impl ModelKind {
    pub fn default_name(self) -> &'static str {
        match self {
            ModelKind::Lung => "lung-unet",
            ModelKind::Classifier => "cxr-classifier",
            ModelKind::Saliency => "gaze-saliency",
        }
    }
    /// What the bundle holds, in words.
    pub fn noun(self) -> &'static str {
        match self {
            ModelKind::Lung => "lung network",
            ModelKind::Classifier => "classifier",
            ModelKind::Saliency => "saliency network",
        }
    }
    pub fn parse(text: &str) -> Result<Self, MlError> {
        match text {
            "lung" => Ok(Self::Lung),
            "classifier" => Ok(Self::Classifier),
            "saliency" => Ok(Self::Saliency),
            other => Err(MlError::Config(format!(
                "unknown model kind {other:?} (lung, classifier, saliency)"
            ))),
        }
    }
}

/// The machine-readable model card (`card.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelCard {
    pub kind: ModelKind,
    pub name: String,
    pub version: String,
    pub class_names: Vec<String>,
    pub input_size: usize,
    pub parameters: usize,
    /// Free text: what it was trained on, how it was split.
    pub data: String,
    pub epochs: usize,
    pub device: String,
    pub training_seconds: f64,
    /// Validation metrics (name → value), e.g. "dice", "macro_auc", "auc_covid19", "auc_covid19_ci_low".
    pub metrics: BTreeMap<String, f64>,
    /// Caveats a user must read (label bias, simulated gaze, …).
    pub limitations: Vec<String>,
    /// True if any gaze used in training was simulated.
    pub simulated_gaze: bool,
    /// The command that reproduces the weights.
    pub command: String,
    /// Two-class classifiers: temperature scaling and the operating point (see `ml::calibration`).
    #[serde(default)]
    pub calibration: Option<super::calibration::Calibration>,
    /// The out-of-distribution gate (`ood.json` beside the weights), with its measured rates.
    #[serde(default)]
    pub ood: Option<super::ood::GateInfo>,
    /// The network in words: architecture, initialisation, frozen parts, Grad-CAM target layer.
    #[serde(default)]
    pub architecture: String,
}

impl ModelCard {
    pub fn from_report(report: &TrainReport, data_root: &Path) -> Self {
        let o = &report.options;
        let mut metrics = BTreeMap::new();
        let e = &report.final_evaluation;
        if let Some(d) = e.dice {
            metrics.insert("dice".into(), d);
        }
        metrics.insert("accuracy".into(), e.accuracy);
        if let Some(m) = e.macro_auc {
            metrics.insert("macro_auc".into(), m);
        }
        for (name, auc) in &e.per_class_auc {
            metrics.insert(format!("auc_{name}"), auc.auc);
            metrics.insert(format!("auc_{name}_ci_low"), auc.ci_low);
            metrics.insert(format!("auc_{name}_ci_high"), auc.ci_high);
        }
        if let Some(t) = &report.test_evaluation {
            metrics.insert("test_accuracy".into(), t.accuracy);
            metrics.insert("test_images".into(), t.images as f64);
            for (name, auc) in &t.per_class_auc {
                metrics.insert(format!("test_auc_{name}"), auc.auc);
                metrics.insert(format!("test_auc_{name}_ci_low"), auc.ci_low);
                metrics.insert(format!("test_auc_{name}_ci_high"), auc.ci_high);
            }
        }
        let folder = data_root
            .file_name()
            .map_or_else(|| "dataset".into(), |n| n.to_string_lossy().into_owned());
        let mut data = format!(
            "{folder}: {} training images ({} patients), {} validation images ({} patients); split by patient_id, seed {}",
            report.train_images,
            report.train_patients,
            report.validation_images,
            report.validation_patients,
            o.seed
        );
        if report.test_images > 0 {
            data += &format!(
                "; {} test images ({} patients) held out from training, model selection and calibration (metrics prefixed test_)",
                report.test_images, report.test_patients
            );
        }
        if let Some(p) = &o.pretrained {
            data += &format!(
                "; started from the ImageNet weights {}",
                p.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            );
        }
        if let Some(init) = &o.init_from {
            data += &format!("; fine-tuned from the weights in {}", init.display());
        }
        if let Some(e) = report.selected_epoch {
            data += &format!(
                "; weights of epoch {e} of {}, selected by the validation metric (so the validation figures are optimistic)",
                report.epochs_run
            );
        }
        Self {
            kind: o.kind,
            name: o.name.clone(),
            version: o.version.clone(),
            class_names: report.class_names.clone(),
            input_size: o.input_size,
            parameters: 0,
            data,
            epochs: report.epochs_run,
            device: report.device.clone(),
            training_seconds: report.seconds,
            metrics,
            limitations: Vec::new(),
            simulated_gaze: false,
            command: String::new(),
            calibration: report.calibration.clone(),
            ood: None,
            architecture: String::new(),
        }
    }
}

/// Caveats every card of this kind carries; what is particular to a dataset comes from the run's
/// `--limitation` options (`TrainOptions::limitations`).
pub fn default_limitations(kind: ModelKind, data_folder: &str, input_size: usize) -> Vec<String> {
    let mut l = vec![
        "Research and teaching tool; not a medical device and not validated for diagnosis."
            .to_string(),
        format!(
            "Trained and validated only on {data_folder} at {input_size}×{input_size} (whole image, aspect ratio not kept): figures on other populations, devices or sites are unknown; the out-of-distribution gate flags images unlike the training images, not every such image."
        ),
    ];
    match kind {
        ModelKind::Lung => l.push("Masks include lung behind the heart, as in the training annotations. The classification head is shown only when its held-out figures say it is better than chance (see the metrics).".into()),
        ModelKind::Classifier => l.push("The class probability is one model's opinion on the whole image; Grad-CAM shows where the evidence for it lies, not a lesion segmentation.".into()),
        ModelKind::Saliency => l.push(
            "Any saliency model trained here on simulated gaze says so in `simulated_gaze`.".into(),
        ),
    }
    l
}

impl ModelCard {
    /// Whether held-out figures show the class head better than chance: the lower end of the
    /// bootstrap 95 % CI of every class's AUC (test split when there is one) above 0.5. Cards
    /// without AUCs (e.g. saliency) count as informative.
    pub fn class_head_informative(&self) -> bool {
        let prefix = if self.metrics.keys().any(|k| k.starts_with("test_auc_")) {
            "test_auc_"
        } else {
            "auc_"
        };
        let lows: Vec<f64> = self
            .metrics
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && k.ends_with("_ci_low"))
            .map(|(_, v)| *v)
            .collect();
        lows.iter().all(|&l| l > 0.5)
    }

    /// The human-readable card.
    pub fn markdown(&self) -> String {
        let mut md = format!("# {} {}\n\n", self.name, self.version);
        let network = if self.architecture.is_empty() {
            format!("{:?} network", self.kind)
        } else {
            self.architecture.clone()
        };
        md += &format!(
            "- **Architecture:** {network} (see `config.json`), input {}×{}, {} parameters\n",
            self.input_size, self.input_size, self.parameters
        );
        md += &format!("- **Classes:** {}\n", self.class_names.join(", "));
        md += &format!("- **Data:** {}\n", self.data);
        md += &format!(
            "- **Training:** {} epochs on {}, {:.0} s\n",
            self.epochs, self.device, self.training_seconds
        );
        md += &format!(
            "- **Simulated gaze used:** {}\n",
            if self.simulated_gaze { "yes" } else { "no" }
        );
        md += &format!("- **Reproduce:** `{}`\n\n", self.command);
        md += "## Metrics (held-out patients: validation split, test split where prefixed test_)\n\n| metric | value |\n|---|---|\n";
        for (k, v) in &self.metrics {
            md += &format!("| {k} | {v:.4} |\n");
        }
        if let Some(c) = &self.calibration {
            md += &format!(
                "\n## Calibration and operating point\n\nTemperature {:.3} (fitted on validation). Operating point: calibrated p({}) ≥ {:.3} (Youden's J on validation); on the {} split sensitivity {:.3}, specificity {:.3}. Expected calibration error (15 bins) on the {} split: {:.4} before, {:.4} after temperature scaling.\n",
                c.temperature,
                c.positive_class,
                c.threshold,
                c.measured_on,
                c.sensitivity,
                c.specificity,
                c.measured_on,
                c.ece_before,
                c.ece_after
            );
        }
        if let Some(g) = &self.ood {
            md += &format!(
                "\n## Out-of-distribution gate\n\nMahalanobis distance of the {} ({} dimensions) from the training images (mean and Ledoit–Wolf-shrunk covariance of {} training images, shrinkage {:.3}); threshold {:.2} at the {}th percentile of {} validation images. An image above it is flagged as outside the training data ({}) and its results are hidden until the user asks.\n\n| measured | value |\n|---|---|\n",
                g.features,
                g.dimensions,
                g.fitted_on,
                g.shrinkage,
                g.threshold,
                g.percentile,
                g.calibrated_on,
                g.domain
            );
            for (k, v) in &g.measured {
                md += &format!("| {k} | {v:.4} |\n");
            }
        }
        if self.kind == ModelKind::Lung {
            md += if self.class_head_informative() {
                "\nThe classification head is shown in the viewer: every class's held-out AUC has a 95 % CI above 0.5.\n"
            } else {
                "\nThe classification head is **not shown** as a result in the viewer: its held-out AUC is not better than chance (a 95 % CI reaches 0.5).\n"
            };
        }
        md += "\n## Limitations\n\n";
        for l in &self.limitations {
            md += &format!("- {l}\n");
        }
        md
    }

    /// Write `card.json` and `MODEL_CARD.md` into `dir`, atomically.
    pub fn write(&self, dir: &Path) -> Result<(), MlError> {
        let json =
            serde_json::to_string_pretty(self).map_err(|e| MlError::Config(e.to_string()))?;
        write_atomically(&dir.join("card.json"), json.as_bytes())?;
        write_atomically(&dir.join("MODEL_CARD.md"), self.markdown().as_bytes())?;
        Ok(())
    }
}

/// Serialise a module's parameters to burnpack bytes and write them atomically.
pub fn save_module<M: Module>(module: M, path: &Path) -> Result<(), MlError> {
    let bytes = module
        .into_record()
        .into_bytes()
        .map_err(|e| MlError::Weights(format!("{e:?}")))?;
    write_atomically(path, &bytes)?;
    Ok(())
}

pub fn load_into<M: Module>(module: M, path: &Path) -> Result<M, MlError> {
    let bytes = std::fs::read(path).map_err(|e| MlError::ModelFile {
        message: e.to_string(),
        path: path.to_path_buf(),
    })?;
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| MlError::ModelFile {
            message: format!("not a burnpack file: {e:?}"),
            path: path.to_path_buf(),
        })?;
    module
        .try_load_record(record)
        .map_err(|e| MlError::Weights(format!("{e:?} ({})", path.display())))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, MlError> {
    let text = std::fs::read(path).map_err(|e| MlError::ModelFile {
        message: e.to_string(),
        path: path.to_path_buf(),
    })?;
    serde_json::from_slice(&text).map_err(|e| MlError::ModelFile {
        message: format!("invalid JSON: {e}"),
        path: path.to_path_buf(),
    })
}

/// A bundle found on disk (not yet loaded).
#[derive(Clone, Debug)]
pub struct BundleInfo {
    pub dir: PathBuf,
    pub card: ModelCard,
    /// Shipped with the application (vs. trained by the user).
    pub shipped: bool,
}

impl BundleInfo {
    pub fn open(dir: &Path, shipped: bool) -> Result<Self, MlError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            card: read_json(&dir.join("card.json"))?,
            shipped,
        })
    }
    pub fn title(&self) -> String {
        format!("{} {}", self.card.name, self.card.version)
    }
}

/// A loaded network with its configuration.
// One value per load, moved straight into its owner: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum LoadedModel {
    Lung(LungNet, LungNetConfig),
    Classifier(Classifier, ClassifierConfig),
    Saliency(SaliencyNet, SaliencyNetConfig),
}

/// Load a bundle's network onto `device`.
pub fn load_bundle(info: &BundleInfo, device: &Device) -> Result<LoadedModel, MlError> {
    let config_path = info.dir.join("config.json");
    let weights = info.dir.join("weights.bpk");
    Ok(match info.card.kind {
        ModelKind::Lung => {
            let config: LungNetConfig = read_json(&config_path)?;
            validate_sizes(config.input_size, config.downsamplings())?;
            validate_classes(&info.card.class_names, &config.class_names, false)?;
            LoadedModel::Lung(load_into(config.init(device), &weights)?, config)
        }
        ModelKind::Classifier => {
            let config: ClassifierConfig = read_json(&config_path)?;
            validate_sizes(config.input_size(), config.downsamplings())?;
            validate_classes(&info.card.class_names, config.class_names(), true)?;
            LoadedModel::Classifier(config.init(device).load(&weights)?, config)
        }
        ModelKind::Saliency => {
            let config: SaliencyNetConfig = read_json(&config_path)?;
            validate_sizes(config.input_size, config.depth)?;
            validate_classes(&info.card.class_names, &config.class_names, false)?;
            LoadedModel::Saliency(load_into(config.init(device), &weights)?, config)
        }
    })
}

/// The card's classes (what the UI labels the outputs with) must be the network's (what its head
/// computes): a bundle whose two disagree would index past the outputs in evaluation.
fn validate_classes(card: &[String], config: &[String], required: bool) -> Result<(), MlError> {
    if card != config {
        return Err(MlError::Config(format!(
            "the card lists {} classes ({}), the network has {} ({})",
            card.len(),
            card.join(", "),
            config.len(),
            config.join(", ")
        )));
    }
    if required && config.is_empty() {
        return Err(MlError::Config("the classifier has no classes".into()));
    }
    Ok(())
}

fn validate_sizes(input_size: usize, downsamplings: usize) -> Result<(), MlError> {
    if input_size == 0
        || input_size > 2048
        || downsamplings > 8
        || !input_size.is_multiple_of(1 << downsamplings)
    {
        return Err(MlError::Config(format!(
            "input size {input_size} does not suit {downsamplings} downsampling steps"
        )));
    }
    Ok(())
}

/// Folders searched for shipped bundles, in order: `$CXRLENS_MODELS`, `<exe>/../share/cxrlens/models`,
/// `<exe dir>/models`, and the source tree's `models/` (development and tests).
pub fn shipped_model_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("CXRLENS_MODELS") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin) = exe.parent()
    {
        dirs.push(bin.join("../share/cxrlens/models"));
        dirs.push(bin.join("models"));
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    dirs
}

/// Where models the user trains are written: `$XDG_DATA_HOME/cxrlens/models` (or `~/.local/share`).
pub fn user_model_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("cxrlens/models"))
}

/// Every bundle in the first shipped folder that has any, plus the user's; unreadable bundles are
/// returned as problems.
pub fn discover() -> (Vec<BundleInfo>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let mut scan = |root: &Path, shipped: bool, found: &mut Vec<BundleInfo>| -> bool {
        let Ok(entries) = std::fs::read_dir(root) else {
            return false;
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("card.json").is_file())
            .collect();
        dirs.sort();
        let any = !dirs.is_empty();
        for dir in dirs {
            match BundleInfo::open(&dir, shipped) {
                Ok(info) => found.push(info),
                Err(e) => problems.push(e.to_string()),
            }
        }
        any
    };
    for dir in shipped_model_dirs() {
        if scan(&dir, true, &mut found) {
            break;
        }
    }
    if let Some(user) = user_model_dir() {
        scan(&user, false, &mut found);
    }
    (found, problems)
}
