//! The Trainer tab: fine-tune the lung network or the classifier on a local dataset folder, offline.
//! Scan (headers only, on a worker), options, Start / Stop / Resume, a progress bar with ETA, live
//! loss and validation curves (egui_plot), the run's log, and the held-out evaluation (per-class
//! AUC with bootstrap 95 % CI, macro AUC, accuracy, confusion matrix, Dice). Training runs on the
//! `cxrlens-train` thread; the finished model is saved into the user's model folder and offered in
//! the Analysis panel.

use std::path::PathBuf;
use std::time::Instant;

use egui::{Color32, RichText};
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use crate::ml::augment::AugmentConfig;
use crate::ml::bundle::{ModelKind, user_model_dir};
use crate::ml::data::DatasetScan;
use crate::ml::train::{Evaluation, TrainOptions, TrainReport};
use crate::worker::inference::AvailableModel;

/// What the trainer asks the app to do.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainerCommand {
    Scan,
    Start { resume: bool },
    Stop,
}

/// A run in progress (or the last one), as the curves and the progress bar need it.
#[derive(Clone, Debug, Default)]
pub struct RunView {
    pub generation: u64,
    pub device: String,
    pub epochs: usize,
    /// (fractional epoch, loss) per batch.
    pub batch_loss: Vec<[f64; 2]>,
    /// (epoch, train loss, validation metric name, value).
    pub epoch_points: Vec<(usize, f64, &'static str, f64)>,
    pub fraction: f64,
    /// Fraction done when this process started the run (resumes start part-way).
    pub start_fraction: Option<f64>,
    pub started: Option<Instant>,
    pub log: Vec<String>,
    pub running: bool,
    pub out_dir: PathBuf,
}

impl RunView {
    /// Seconds left, from this process's own rate.
    pub fn eta_seconds(&self) -> Option<f64> {
        let (start, t0) = (self.start_fraction?, self.started?);
        let done = self.fraction - start;
        (done > 1e-3).then(|| t0.elapsed().as_secs_f64() * (1.0 - self.fraction) / done)
    }
}

/// The tab's state (outlives images).
#[derive(Clone, Debug)]
pub struct TrainerState {
    pub data_text: String,
    pub scan: Option<Result<DatasetScan, String>>,
    pub scanning: bool,
    pub kind: ModelKind,
    /// Bundle to start from; `None` = random initialisation.
    pub start_from: Option<PathBuf>,
    /// The user picked `start_from` (else it follows the shipped model of the chosen kind).
    pub start_from_chosen: bool,
    /// Classifier: start a new EfficientNet-Lite0 from the ImageNet weights at `imagenet_weights`.
    pub start_imagenet: bool,
    pub imagenet_weights: String,
    pub options: TrainOptions,
    pub augment: bool,
    pub augment_config: AugmentConfig,
    pub run: Option<RunView>,
    pub report: Option<TrainReport>,
    pub error: Option<String>,
}

impl Default for TrainerState {
    fn default() -> Self {
        let mut options = TrainOptions::new(ModelKind::Lung);
        options.epochs = 5;
        options.learning_rate = 5e-4;
        options.patience = Some(5);
        options.keep_best = true;
        options.name = "lung-unet-finetuned".into();
        Self {
            data_text: String::new(),
            scan: None,
            scanning: false,
            kind: ModelKind::Lung,
            start_from: None,
            start_from_chosen: false,
            start_imagenet: false,
            imagenet_weights: crate::ml::efficientnet::default_imagenet_weights()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            options,
            augment: true,
            augment_config: AugmentConfig::default(),
            run: None,
            report: None,
            error: None,
        }
    }
}

impl TrainerState {
    /// The folder the model is written to: the user's model folder, `<name>-<version>`.
    pub fn out_dir(&self) -> PathBuf {
        user_model_dir()
            .unwrap_or_else(|| PathBuf::from("models"))
            .join(format!("{}-{}", self.options.name, self.options.version))
    }

    /// The options as they will run.
    pub fn run_options(&self) -> TrainOptions {
        let mut o = self.options.clone();
        o.kind = self.kind;
        o.init_from = self.start_from.clone();
        if matches!(self.kind, ModelKind::Classifier | ModelKind::Lung) && self.start_imagenet {
            o.init_from = None;
            o.architecture = crate::ml::classifier::Architecture::EfficientNetLite0;
            o.pretrained = Some(PathBuf::from(self.imagenet_weights.trim()));
            o.input_size = o.input_size.div_ceil(32).max(1) * 32;
            if self.kind == ModelKind::Lung {
                o.frozen_blocks = 0;
            }
        } else {
            o.architecture = crate::ml::classifier::Architecture::ResNet;
            o.pretrained = None;
            o.frozen_blocks = 0;
        }
        o.augment = self.augment.then_some(self.augment_config);
        o.command = "cxrlens trainer tab".into();
        o
    }

    pub fn resumable(&self) -> bool {
        self.out_dir().join("checkpoint.json").is_file()
    }
}

fn seconds_text(s: f64) -> String {
    if s >= 3600.0 {
        format!(
            "{:.0} h {:02.0} min",
            (s / 3600.0).floor(),
            (s % 3600.0) / 60.0
        )
    } else if s >= 60.0 {
        format!("{:.0} min {:02.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// The whole tab. `models`: the bundles the inference worker found (to start from).
pub fn trainer_ui(
    ui: &mut egui::Ui,
    state: &mut TrainerState,
    models: &[AvailableModel],
    commands: &mut Vec<TrainerCommand>,
) {
    let running = state.run.as_ref().is_some_and(|r| r.running);
    egui::Panel::left("trainer-options")
        .default_size(380.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                ui.add_enabled_ui(!running, |ui| options_ui(ui, state, models, commands));
                ui.separator();
                ui.horizontal(|ui| {
                    let scanned_ok = matches!(state.scan, Some(Ok(ref s)) if s.images > 0);
                    if ui
                        .add_enabled(!running && scanned_ok, egui::Button::new("Start"))
                        .on_disabled_hover_text("Scan a dataset folder first")
                        .clicked()
                    {
                        commands.push(TrainerCommand::Start { resume: false });
                    }
                    if ui
                        .add_enabled(
                            !running && scanned_ok && state.resumable(),
                            egui::Button::new("Resume"),
                        )
                        .on_hover_text("Continue from the last complete epoch's checkpoint")
                        .clicked()
                    {
                        commands.push(TrainerCommand::Start { resume: true });
                    }
                    if ui.add_enabled(running, egui::Button::new("Stop")).clicked() {
                        commands.push(TrainerCommand::Stop);
                    }
                });
                ui.label(
                    RichText::new(format!("Output: {}", state.out_dir().display()))
                        .small()
                        .weak(),
                );
            });
        });
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| run_ui(ui, state));
    });
}

fn options_ui(
    ui: &mut egui::Ui,
    state: &mut TrainerState,
    models: &[AvailableModel],
    commands: &mut Vec<TrainerCommand>,
) {
    ui.heading("Dataset");
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(&mut state.data_text)
                .hint_text("folder with labels.csv, images/, masks/")
                .desired_width(250.0),
        );
        if ui
            .add_enabled(
                !state.data_text.trim().is_empty(),
                egui::Button::new("Scan"),
            )
            .clicked()
        {
            commands.push(TrainerCommand::Scan);
        }
    });
    if state.scanning {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Reading headers…");
        });
    }
    match &state.scan {
        Some(Ok(scan)) => {
            ui.label(format!(
                "{} images of {} patients, {} with lung masks{}",
                scan.images,
                scan.patients,
                scan.masks,
                if scan.gaze_files > 0 {
                    format!(", {} gaze files", scan.gaze_files)
                } else {
                    String::new()
                }
            ));
            ui.label(
                RichText::new(
                    scan.labels
                        .iter()
                        .map(|(l, n)| format!("{l}: {n}"))
                        .collect::<Vec<_>>()
                        .join(" · "),
                )
                .small(),
            );
            if !scan.problems.is_empty() {
                egui::CollapsingHeader::new(
                    RichText::new(format!(
                        "{} problem{}",
                        scan.problems.len(),
                        if scan.problems.len() == 1 { "" } else { "s" }
                    ))
                    .color(Color32::LIGHT_RED),
                )
                .id_salt("scan-problems")
                .show(ui, |ui| {
                    for p in scan.problems.iter().take(300) {
                        ui.label(RichText::new(p).small());
                    }
                    if scan.problems.len() > 300 {
                        ui.label(format!("… and {} more", scan.problems.len() - 300));
                    }
                });
            }
        }
        Some(Err(e)) => {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        None => {}
    }
    ui.separator();
    ui.heading("Model");
    let previous_kind = state.kind;
    ui.horizontal(|ui| {
        ui.radio_value(
            &mut state.kind,
            ModelKind::Lung,
            "Lung network (mask + class)",
        );
        ui.radio_value(&mut state.kind, ModelKind::Classifier, "Classifier");
    });
    ui.add_enabled(
        false,
        egui::RadioButton::new(false, "Saliency network (staged recipe)"),
    )
    .on_disabled_hover_text(
        "Training the saliency network needs gaze recordings and the staged recipe; \
             not available in this version",
    );
    if state.kind != previous_kind {
        state.start_from = None;
        state.start_from_chosen = false;
        state.start_imagenet = false;
        state.options.name = state.kind.default_name().to_string() + "-finetuned";
    }
    // The saliency recipe starts from a classifier (its stage-1 encoder).
    let start_kind = if state.kind == ModelKind::Saliency {
        ModelKind::Classifier
    } else {
        state.kind
    };
    let of_kind: Vec<&AvailableModel> = models.iter().filter(|m| m.kind == start_kind).collect();
    // Fine-tuning is the point of the tab: start from the shipped model unless the user chose.
    if !state.start_from_chosen && state.start_from.is_none() {
        state.start_from = of_kind.iter().find(|m| m.shipped).map(|m| m.dir.clone());
    }
    let before = (state.start_from.clone(), state.start_imagenet);
    let imagenet = if state.kind == ModelKind::Lung {
        "ImageNet weights (new U-Net on an EfficientNet-Lite0 encoder)"
    } else {
        "ImageNet weights (new EfficientNet-Lite0)"
    };
    egui::ComboBox::from_label("Start from")
        .selected_text(if state.start_imagenet {
            imagenet.to_string()
        } else {
            state
                .start_from
                .as_ref()
                .and_then(|d| of_kind.iter().find(|m| &m.dir == d))
                .map_or("random initialisation".to_string(), |m| m.title.clone())
        })
        .show_ui(ui, |ui| {
            if ui
                .selectable_label(
                    state.start_from.is_none() && !state.start_imagenet,
                    "random initialisation",
                )
                .clicked()
            {
                state.start_from = None;
                state.start_imagenet = false;
            }
            for m in &of_kind {
                if ui
                    .selectable_label(
                        !state.start_imagenet && state.start_from.as_ref() == Some(&m.dir),
                        &m.title,
                    )
                    .clicked()
                {
                    state.start_from = Some(m.dir.clone());
                    state.start_imagenet = false;
                }
            }
            if matches!(state.kind, ModelKind::Classifier | ModelKind::Lung)
                && ui
                    .selectable_label(state.start_imagenet, imagenet)
                    .clicked()
            {
                state.start_from = None;
                state.start_imagenet = true;
                state.options.input_size = if state.kind == ModelKind::Lung {
                    256
                } else {
                    224
                };
            }
        });
    if (state.start_from.clone(), state.start_imagenet) != before {
        state.start_from_chosen = true;
    }
    if state.start_imagenet {
        ui.horizontal(|ui| {
            ui.label("Weights file");
            ui.text_edit_singleline(&mut state.imagenet_weights)
                .on_hover_text(
                    "EfficientNet-Lite0 ImageNet state dict (PyTorch .pth), read offline",
                );
        });
        if state.kind == ModelKind::Classifier {
            ui.add(
                egui::Slider::new(&mut state.options.frozen_blocks, 0..=crate::ml::efficientnet::BLOCKS)
                    .text("frozen blocks (of 16, after the stem)"),
            )
            .on_hover_text("Early blocks keep their ImageNet features: fewer parameters to fit, and faster on a CPU");
        }
    }
    let o = &mut state.options;
    egui::Grid::new("train-options")
        .num_columns(2)
        .show(ui, |ui| {
            ui.label("Epochs");
            ui.add(egui::DragValue::new(&mut o.epochs).range(1..=500));
            ui.end_row();
            ui.label("Batch size");
            ui.add(egui::DragValue::new(&mut o.batch_size).range(1..=64));
            ui.end_row();
            ui.label("Learning rate");
            ui.add(
                egui::DragValue::new(&mut o.learning_rate)
                    .range(1e-6..=1e-1)
                    .speed(1e-5)
                    .custom_formatter(|v, _| format!("{v:.1e}")),
            );
            ui.end_row();
            ui.label("Schedule")
                .on_hover_text("Cosine decay from the learning rate to this fraction of it");
            ui.add(
                egui::Slider::new(&mut o.final_lr_fraction, 0.0..=1.0)
                    .text("final fraction (cosine)"),
            );
            ui.end_row();
            ui.label("Input size");
            ui.add_enabled(
                state.start_from.is_none(),
                egui::DragValue::new(&mut o.input_size).range(32..=512).speed(if state.start_imagenet { 32.0 } else { 1.0 }),
            )
            .on_disabled_hover_text("Fine-tuning keeps the starting model's size");
            ui.end_row();
            ui.label("Validation");
            ui.add(egui::Slider::new(&mut o.validation_fraction, 0.05..=0.5).text("of patients"));
            ui.end_row();
            ui.label("Test")
                .on_hover_text("Patients held out from training, model selection and calibration; reported in the card");
            ui.add(egui::Slider::new(&mut o.test_fraction, 0.0..=0.4).text("of patients"));
            ui.end_row();
            ui.label("Seed");
            ui.add(egui::DragValue::new(&mut o.seed));
            ui.end_row();
            ui.label("Early stop");
            let mut early = o.patience.is_some();
            ui.horizontal(|ui| {
                ui.checkbox(&mut early, "after");
                let mut p = o.patience.unwrap_or(5);
                ui.add_enabled(early, egui::DragValue::new(&mut p).range(1..=100));
                ui.label("epochs without gain");
                o.patience = early.then_some(p);
            });
            ui.end_row();
            ui.label("Keep");
        ui.checkbox(&mut o.keep_best, "best epoch (by validation)")
            .on_hover_text("Keep the weights of the best validation epoch instead of the last; the card notes the selection");
        ui.end_row();
        ui.label("Frozen");
            ui.checkbox(&mut o.freeze_encoder, "feature extractor (encoder)")
                .on_hover_text(
                    "Lung: encoder and bottleneck; classifier: stem and residual stages",
                );
            ui.end_row();
            ui.label("Name");
            ui.text_edit_singleline(&mut o.name);
            ui.end_row();
            ui.label("Version");
            ui.text_edit_singleline(&mut o.version);
            ui.end_row();
        });
    ui.checkbox(&mut state.augment, "Augmentation");
    ui.add_enabled_ui(state.augment, |ui| {
        let a = &mut state.augment_config;
        ui.add(egui::Slider::new(&mut a.max_rotation_deg, 0.0..=10.0).text("rotation ± °"));
        ui.add(egui::Slider::new(&mut a.max_scale, 0.0..=0.2).text("scale ±"));
        ui.add(egui::Slider::new(&mut a.max_shift_fraction, 0.0..=0.15).text("shift ±"));
        ui.add(egui::Slider::new(&mut a.max_contrast, 0.0..=0.5).text("contrast ±"));
        ui.add(egui::Slider::new(&mut a.max_brightness, 0.0..=0.3).text("brightness ±"));
        ui.add(egui::Slider::new(&mut a.noise_std, 0.0..=0.1).text("noise σ"));
        ui.add_enabled(false, egui::Checkbox::new(&mut false, "Horizontal flips"))
            .on_disabled_hover_text(
                "Not anatomically valid for chest radiographs: the heart and the R/L marker \
                 are lateralised",
            );
    });
}

fn run_ui(ui: &mut egui::Ui, state: &TrainerState) {
    ui.heading("Training");
    if let Some(e) = &state.error {
        ui.colored_label(Color32::LIGHT_RED, e);
    }
    let Some(run) = &state.run else {
        ui.label(
            RichText::new(
                "Scan a dataset, choose a model and press Start. Nothing leaves this machine.",
            )
            .weak(),
        );
        return;
    };
    ui.label(RichText::new(format!("Device: {}", run.device)).small());
    let eta = run.eta_seconds().map_or(String::new(), |s| {
        format!(" — about {} left", seconds_text(s))
    });
    ui.add(
        egui::ProgressBar::new(run.fraction as f32)
            .text(format!(
                "{:.0} % of {} epochs{}{}",
                run.fraction * 100.0,
                run.epochs,
                eta,
                match (run.running, state.report.is_some()) {
                    (true, _) => "",
                    (false, true) => " — done",
                    (false, false) => " — not running",
                }
            ))
            .animate(run.running),
    );
    let metric_name = run.epoch_points.first().map_or("validation", |p| p.2);
    ui.columns(2, |cols| {
        Plot::new("loss-plot")
            .height(220.0)
            .legend(Legend::default())
            .x_axis_label("epoch")
            .y_axis_label("loss")
            .show(&mut cols[0], |plot| {
                plot.line(Line::new(
                    "batch loss",
                    PlotPoints::from(run.batch_loss.clone()),
                ));
                let epoch_loss: Vec<[f64; 2]> =
                    run.epoch_points.iter().map(|p| [p.0 as f64, p.1]).collect();
                plot.points(Points::new("epoch mean", PlotPoints::from(epoch_loss)).radius(3.0));
            });
        Plot::new("metric-plot")
            .height(220.0)
            .legend(Legend::default())
            .x_axis_label("epoch")
            .y_axis_label(format!("validation {metric_name}"))
            .show(&mut cols[1], |plot| {
                let v: Vec<[f64; 2]> = run.epoch_points.iter().map(|p| [p.0 as f64, p.3]).collect();
                plot.line(Line::new(
                    format!("validation {metric_name}"),
                    PlotPoints::from(v.clone()),
                ));
                plot.points(Points::new("", PlotPoints::from(v)).radius(3.0));
            });
    });
    egui::CollapsingHeader::new(format!(
        "Log ({} lines; also in training.log)",
        run.log.len()
    ))
    .id_salt("train-log")
    .default_open(true)
    .show(ui, |ui| {
        egui::ScrollArea::vertical()
            .max_height(140.0)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                for line in &run.log {
                    ui.monospace(line);
                }
            });
    });
    if let Some(report) = &state.report {
        ui.separator();
        ui.heading("Held-out evaluation");
        ui.label(
            RichText::new(format!(
                "{} validation images of {} patients; written to {}",
                report.validation_images,
                report.validation_patients,
                run.out_dir.join("evaluation.json").display()
            ))
            .small(),
        );
        evaluation_ui(ui, &report.final_evaluation, &report.class_names);
    }
}

/// Per-class AUC with CI, macro AUC, accuracy, Dice and the confusion matrix.
pub fn evaluation_ui(ui: &mut egui::Ui, e: &Evaluation, classes: &[String]) {
    egui::Grid::new("evaluation").striped(true).show(ui, |ui| {
        if let Some(s) = e.saliency {
            for (name, v) in [("KL (gaze ‖ predicted)", s.kl), ("CC", s.cc), ("HS", s.hs)] {
                ui.label(name);
                ui.monospace(format!("{v:.4}"));
                ui.end_row();
            }
            if let Some(g) = s.generator_kl {
                ui.label("KL (gaze ‖ guided backprop)");
                ui.monospace(format!("{g:.4}"));
                ui.end_row();
            }
        }
        if let Some(d) = e.dice {
            ui.label("Dice (lung mask)");
            ui.monospace(format!("{d:.4}"));
            ui.end_row();
        }
        ui.label("Accuracy");
        ui.monospace(format!("{:.3}", e.accuracy));
        ui.end_row();
        if let Some(m) = e.macro_auc {
            ui.label("Macro AUC");
            ui.monospace(format!("{m:.3}"));
            ui.end_row();
        }
        for (name, a) in &e.per_class_auc {
            ui.label(format!("AUC {name}"));
            ui.monospace(format!(
                "{:.3}  (95 % CI {:.3}–{:.3})",
                a.auc, a.ci_low, a.ci_high
            ));
            ui.end_row();
        }
    });
    if !e.confusion.is_empty() {
        ui.label(RichText::new("Confusion matrix (rows: true, columns: predicted)").small());
        egui::Grid::new("confusion").striped(true).show(ui, |ui| {
            ui.label("");
            for c in classes {
                ui.label(RichText::new(c).small().strong());
            }
            ui.end_row();
            for (i, row) in e.confusion.iter().enumerate() {
                ui.label(
                    RichText::new(classes.get(i).map_or("?", |s| s.as_str()))
                        .small()
                        .strong(),
                );
                for n in row {
                    ui.monospace(n.to_string());
                }
                ui.end_row();
            }
        });
    }
}
