//! The Analysis panel: run lung mask + classification + an explanation on the inference worker,
//! show class probabilities with the model's name and version, and the layer list (lung mask fill
//! or contour, heatmap) with visibility, opacity, colormap with legend, and threshold.
//!
//! Layer edits go through `Command::SetLayer`; on the GPU path they only change a uniform.

use egui::{Color32, RichText};

use super::command::Command;
use super::state::{AnalysisView, LayerState};
use crate::imaging::colormap::Colormap;
use crate::ml::analysis::ExplainTarget;
use crate::ml::explain::Method;
use crate::worker::inference::ModelsReady;

/// Whether the inference worker is ready.
#[derive(Clone, Debug, Default)]
pub enum ModelsStatus {
    #[default]
    Loading,
    Ready(ModelsReady),
    Failed(String),
}

/// Panel state that outlives one image.
#[derive(Clone, Debug)]
pub struct AnalysisPanel {
    pub method: Method,
    pub target: ExplainTarget,
    pub models: ModelsStatus,
    /// Generation, fraction done and current step of the analysis in flight.
    pub running: Option<(u64, f32, String)>,
}

impl Default for AnalysisPanel {
    fn default() -> Self {
        Self {
            method: Method::GradCam,
            target: ExplainTarget::Classifier,
            models: ModelsStatus::Loading,
            running: None,
        }
    }
}

pub const HEATMAP_COLORMAPS: [Colormap; 3] =
    [Colormap::Inferno, Colormap::Viridis, Colormap::Turbo];

/// The panel. `view` is the open image's analysis, if any.
pub fn analysis_ui(
    ui: &mut egui::Ui,
    panel: &AnalysisPanel,
    view: Option<&AnalysisView>,
    has_image: bool,
    commands: &mut Vec<Command>,
) {
    ui.heading("Analysis");
    match &panel.models {
        ModelsStatus::Loading => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Loading models…");
            });
        }
        ModelsStatus::Failed(e) => {
            ui.colored_label(Color32::LIGHT_RED, format!("Models unavailable: {e}"));
        }
        ModelsStatus::Ready(r) => {
            ui.label(RichText::new(format!("Compute: {}", r.device)).small())
                .on_hover_text(&r.reason);
            if r.models.is_empty() {
                ui.colored_label(Color32::LIGHT_RED, "No model bundles found.");
            }
            model_choice_ui(ui, r, commands);
            for p in &r.problems {
                ui.colored_label(Color32::LIGHT_RED, RichText::new(p).small());
            }
        }
    }
    ui.add_space(4.0);
    egui::Grid::new("analysis-options")
        .num_columns(2)
        .show(ui, |ui| {
            ui.label("Explain");
            let mut target = panel.target;
            egui::ComboBox::from_id_salt("explain-target")
                .selected_text(target_label(target))
                .show_ui(ui, |ui| {
                    for t in [ExplainTarget::Classifier, ExplainTarget::LungHead] {
                        ui.selectable_value(&mut target, t, target_label(t));
                    }
                });
            if target != panel.target {
                commands.push(Command::SetExplainTarget(target));
            }
            ui.end_row();
            ui.label("Method");
            let mut method = panel.method;
            egui::ComboBox::from_id_salt("explain-method")
                .selected_text(method.label())
                .show_ui(ui, |ui| {
                    for m in Method::ALL {
                        ui.selectable_value(&mut method, m, m.label());
                    }
                });
            if method != panel.method {
                commands.push(Command::SetMethod(method));
            }
            ui.end_row();
        });
    let ready = matches!(panel.models, ModelsStatus::Ready(ref r) if !r.models.is_empty());
    match &panel.running {
        Some((_, fraction, step)) => {
            ui.add(
                egui::ProgressBar::new(*fraction)
                    .text(format!("{step}…"))
                    .animate(true),
            );
            if ui.button("Cancel").clicked() {
                commands.push(Command::CancelAnalysis);
            }
        }
        None => {
            if ui
                .add_enabled(ready && has_image, egui::Button::new("Analyze (A)"))
                .clicked()
            {
                commands.push(Command::Analyze);
            }
        }
    }
    ui.label(
        RichText::new("Research use only — not a diagnostic device.")
            .small()
            .weak(),
    );
    let Some(view) = view else { return };
    ui.separator();
    ood_warning_ui(ui, view, commands);
    let hidden_because = match view.ood.verdict {
        crate::ml::ood::Verdict::NotChestRadiograph => "hidden: not a chest radiograph",
        _ => "hidden: outside its training data",
    };
    for (m, p) in view.predictions.iter().enumerate() {
        prediction_ui(
            ui,
            m,
            p,
            view.shows(&p.model_title)
                .then_some(())
                .ok_or(hidden_because),
        );
    }
    if let Some((model, class)) = &view.explained
        && view.shows(model)
    {
        ui.label(
            RichText::new(format!(
                "{} of {model}, class “{class}”; layer: {} ({:.1} s)",
                view.method.label(),
                view.target_layer,
                view.seconds
            ))
            .small(),
        );
    }
    ui.separator();
    ui.label(RichText::new("Layers").strong());
    if let Some(mask) = &view.mask {
        layer_ui(ui, 0, mask, true, commands);
    }
    if let Some(heat) = &view.heatmap {
        layer_ui(ui, 1, heat, false, commands);
    }
}

/// The out-of-distribution verdict, above every result: what the gates found and a button to see
/// the withheld results anyway.
fn ood_warning_ui(ui: &mut egui::Ui, view: &AnalysisView, commands: &mut Vec<Command>) {
    use crate::ml::ood::Verdict;
    let (Some(title), Some(details)) = (view.ood.title(), view.ood.details()) else {
        return;
    };
    let colour = match view.ood.verdict {
        Verdict::NotChestRadiograph => Color32::from_rgb(255, 110, 90),
        _ => Color32::from_rgb(255, 190, 70),
    };
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.5, colour))
        .show(ui, |ui| {
            ui.label(RichText::new(title).color(colour).strong());
            ui.label(RichText::new(details).small());
            if view.revealed {
                ui.label(
                    RichText::new("Results shown at your request — do not rely on them.")
                        .small()
                        .color(colour),
                );
            } else if ui
                .button("Show results anyway")
                .on_hover_text("The models were not trained on images like this one: their output may be meaningless.")
                .clicked()
            {
                commands.push(Command::RevealAnalysis);
            }
        });
}

/// One model's class probabilities (calibrated when its card says so) and its operating point;
/// `shown` is `Err(why)` when the gate hides them.
fn prediction_ui(
    ui: &mut egui::Ui,
    index: usize,
    p: &crate::ml::analysis::Prediction,
    shown: Result<(), &str>,
) {
    ui.label(RichText::new(&p.model_title).strong());
    if let Err(why) = shown {
        ui.label(RichText::new(why).small().weak());
        return;
    }
    if p.uninformative {
        ui.label(
            RichText::new("class head not better than chance on held-out data: not shown")
                .small()
                .weak(),
        )
        .on_hover_text(
            "The model card gives its held-out AUCs; their 95 % confidence intervals reach 0.5.",
        );
        return;
    }
    let best = p.classes.iter().map(|c| c.1).fold(0.0_f32, f32::max);
    egui::Grid::new(("probabilities", index))
        .num_columns(2)
        .show(ui, |ui| {
            for (name, prob) in &p.classes {
                let text = RichText::new(name);
                ui.label(if *prob == best { text.strong() } else { text });
                ui.add(
                    egui::ProgressBar::new(*prob)
                        .desired_width(110.0)
                        .text(format!("{:.1} %", prob * 100.0)),
                );
                ui.end_row();
            }
        });
    if let Some(d) = &p.decision {
        ui.label(
            RichText::new(format!(
                "{} at the operating point p ≥ {:.2} (sensitivity {:.0} %, specificity {:.0} % on the {} split){}",
                if d.positive { d.class.clone() } else { format!("not {}", d.class) },
                d.threshold,
                100.0 * d.sensitivity,
                100.0 * d.specificity,
                d.measured_on,
                if p.calibrated { "; probabilities calibrated" } else { "" }
            ))
            .small(),
        );
    }
}

/// One combo per model kind with more than one bundle: shipped and user-trained, side by side.
fn model_choice_ui(ui: &mut egui::Ui, r: &ModelsReady, commands: &mut Vec<Command>) {
    use crate::ml::bundle::ModelKind;
    for (kind, label) in [
        (ModelKind::Lung, "Lung model"),
        (ModelKind::Classifier, "Classifier"),
        (ModelKind::Saliency, "Saliency"),
    ] {
        let of_kind: Vec<_> = r.available.iter().filter(|m| m.kind == kind).collect();
        if of_kind.len() < 2 {
            continue;
        }
        let current = of_kind.iter().find(|m| r.loaded.contains(&m.dir));
        let name = |m: &crate::worker::inference::AvailableModel| {
            format!("{}{}", m.title, if m.shipped { "" } else { " (yours)" })
        };
        let mut picked = None;
        ui.horizontal(|ui| {
            ui.label(label);
            egui::ComboBox::from_id_salt(("model-choice", label))
                .selected_text(current.map_or("—".to_string(), |m| name(m)))
                .show_ui(ui, |ui| {
                    for m in &of_kind {
                        if ui
                            .selectable_label(current.is_some_and(|c| c.dir == m.dir), name(m))
                            .clicked()
                        {
                            picked = Some(m.dir.clone());
                        }
                    }
                });
        });
        if let Some(dir) = picked
            && current.is_none_or(|c| c.dir != dir)
        {
            commands.push(Command::SelectModel(dir));
        }
    }
}

fn target_label(t: ExplainTarget) -> &'static str {
    match t {
        ExplainTarget::Classifier => "Classifier",
        ExplainTarget::LungHead => "Lung network head",
    }
}

pub(super) fn layer_ui(
    ui: &mut egui::Ui,
    index: usize,
    layer: &LayerState,
    is_mask: bool,
    commands: &mut Vec<Command>,
) {
    let mut params = layer.params;
    let mut colormap = layer.colormap;
    ui.push_id(index, |ui| {
        ui.checkbox(&mut params.visible, &layer.label);
        ui.indent("layer", |ui| {
            ui.add(egui::Slider::new(&mut params.opacity, 0.0..=1.0).text("Opacity"));
            ui.add(egui::Slider::new(&mut params.threshold, 0.0..=1.0).text("Threshold"));
            if is_mask {
                ui.horizontal(|ui| {
                    ui.radio_value(&mut params.contour, false, "Fill");
                    ui.radio_value(&mut params.contour, true, "Contour");
                });
            } else {
                egui::ComboBox::from_id_salt("colormap")
                    .selected_text(colormap.label())
                    .show_ui(ui, |ui| {
                        for c in HEATMAP_COLORMAPS {
                            ui.selectable_value(&mut colormap, c, c.label());
                        }
                    });
                legend_ui(ui, colormap, params.threshold);
            }
        });
    });
    if params != layer.params || colormap != layer.colormap {
        commands.push(Command::SetLayer {
            index,
            params,
            colormap,
        });
    }
}

/// A colour bar 0 … 1 with the threshold marked.
fn legend_ui(ui: &mut egui::Ui, colormap: Colormap, threshold: f32) {
    let table = colormap.table();
    let (rect, _) = ui.allocate_exact_size(egui::vec2(180.0, 12.0), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    let n = 64;
    for i in 0..n {
        let t0 = i as f32 / n as f32;
        let c = table[crate::imaging::colormap::table_index(t0 + 0.5 / n as f32)];
        let x0 = rect.left() + rect.width() * t0;
        let x1 = rect.left() + rect.width() * (i + 1) as f32 / n as f32;
        painter.rect_filled(
            egui::Rect::from_min_max(
                egui::pos2(x0, rect.top()),
                egui::pos2(x1 + 0.5, rect.bottom()),
            ),
            0.0,
            Color32::from_rgb(c[0], c[1], c[2]),
        );
    }
    if threshold > 0.0 {
        let x = rect.left() + rect.width() * threshold;
        painter.line_segment(
            [
                egui::pos2(x, rect.top() - 2.0),
                egui::pos2(x, rect.bottom() + 2.0),
            ],
            egui::Stroke::new(2.0, Color32::WHITE),
        );
    }
    ui.horizontal(|ui| {
        ui.label(RichText::new("0 (low)").small());
        ui.add_space(100.0);
        ui.label(RichText::new("1 (high)").small());
    });
}
