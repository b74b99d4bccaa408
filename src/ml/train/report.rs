//! What a run reports: per-epoch evaluations, progress events, the final report.

use super::*;

/// Validation metrics after an epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean Dice over validation images with masks (lung network only).
    pub dice: Option<f64>,
    pub accuracy: f64,
    /// One-vs-rest AUC with bootstrap 95 % CI per class (classes absent from validation omitted).
    pub per_class_auc: Vec<(String, crate::ml::metrics::AucWithCi)>,
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
    pub calibration: Option<crate::ml::calibration::Calibration>,
}

// One value for the whole run: boxing would buy nothing.
