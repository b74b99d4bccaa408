//! The Eye gaze panel: load a recording (EGD-CXR or REFLACX) or simulate one, the heatmap recipe
//! and its σ, scanpath, the compare view's panes, the region, and the metrics table with CSV export.

use std::path::PathBuf;

use egui::{Color32, RichText};

use super::analysis::layer_ui;
use super::command::Command;
use super::state::{
    LAYER_GAZE, LAYER_GAZE_ONLY, LAYER_MODEL_ONLY, PaneContent, RegionChoice, ViewerState,
};
use crate::gaze::heatmap::Recipe;
use crate::gaze::table::{MAP_METRICS, MetricRow, REGION_METRICS};

/// Panel state that outlives one image.
#[derive(Clone, Debug, Default)]
pub struct GazePanel {
    pub path_text: String,
    pub export_text: String,
    /// Problems met by the last import, one line each (file, line, column: message).
    pub problems: Vec<String>,
    pub last_export: Option<PathBuf>,
}

const SIMULATED_COLOR: Color32 = Color32::from_rgb(255, 170, 60);

fn metric_help(metric: &str) -> &'static str {
    match metric {
        "KL" => {
            "Σ Q·ln(ε + Q/(P+ε)), Q = gaze, P = model map, both summed to 1. 0 = identical; lower is better."
        }
        "CC" => "Pearson correlation of the two maps. 1 = identical.",
        "HS" => "Histogram similarity Σ min(P, Q), maps summed to 1. 1 = identical.",
        "SIM" => "MIT SIM: maps min–max scaled, summed to 1, Σ min. 1 = identical.",
        "NSS" => {
            "Mean of the standardised model map at the fixated pixels. > 0: fixations fall on above-average heat."
        }
        "AUC-Judd" => {
            "ROC area of the model map separating fixated from other pixels. 0.5 = chance."
        }
        "Diff_GradCAM" => "Mean heat inside the region − mean heat outside (map scaled to [0, 1]).",
        "EHR-AUC" => {
            "Effective heat ratio (heat inside the region / all heat, above each threshold), averaged over thresholds 0…0.99."
        }
        _ => "",
    }
}

fn default_export(v: &ViewerState) -> String {
    let stem = v
        .path
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let dir = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    dir.join(format!("cxrlens-{stem}-gaze-metrics.csv"))
        .display()
        .to_string()
}

pub fn gaze_ui(
    ui: &mut egui::Ui,
    panel: &mut GazePanel,
    v: &ViewerState,
    commands: &mut Vec<Command>,
) {
    ui.heading("Eye gaze");
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(&mut panel.path_text)
                .hint_text("fixations.csv (EGD-CXR or REFLACX)")
                .desired_width(170.0),
        );
        if ui
            .add_enabled(
                !panel.path_text.trim().is_empty(),
                egui::Button::new("Load"),
            )
            .clicked()
        {
            commands.push(Command::LoadGaze(PathBuf::from(panel.path_text.trim())));
        }
    });
    if ui
        .button("Simulate a reading")
        .on_hover_text(
            "Generates a plausible but SIMULATED fixation sequence (lung fields, heart, angles) \
             for demonstration. It is not a recording of a person.",
        )
        .clicked()
    {
        commands.push(Command::SimulateGaze);
    }
    if !panel.problems.is_empty() {
        egui::CollapsingHeader::new(
            RichText::new(format!("{} import notes", panel.problems.len()))
                .color(Color32::LIGHT_RED),
        )
        .id_salt("gaze-problems")
        .show(ui, |ui| {
            for p in panel.problems.iter().take(200) {
                ui.label(RichText::new(p).small());
            }
        });
    }
    let Some(g) = &v.gaze else {
        ui.label(RichText::new("No recording for this image.").weak());
        return;
    };
    let rec = &g.recording;
    ui.label(RichText::new(rec.title()).strong());
    if rec.simulated {
        ui.label(
            RichText::new("SIMULATED gaze — not a real reading")
                .color(SIMULATED_COLOR)
                .strong(),
        );
    }
    ui.label(
        RichText::new(format!(
            "{} fixations, {:.1} s dwell, {} off the image",
            rec.fixations.len(),
            rec.dwell_seconds(),
            rec.off_image
        ))
        .small(),
    );
    let mut recipe = g.recipe;
    ui.horizontal(|ui| {
        match &mut recipe {
            Recipe::EgdCxr { sigma_px } => {
                ui.add(
                    egui::Slider::new(sigma_px, 10.0..=400.0)
                        .logarithmic(true)
                        .text("σ px"),
                );
            }
            Recipe::Reflacx { sigma_degrees, .. } => {
                ui.add(egui::Slider::new(sigma_degrees, 0.25..=3.0).text("σ °"));
            }
        }
        if ui
            .small_button("Published")
            .on_hover_text("The dataset's recipe: EGD-CXR σ = 150 px, REFLACX σ = 1°")
            .clicked()
        {
            recipe = Recipe::published(rec.format);
        }
    });
    if recipe != g.recipe {
        commands.push(Command::SetGazeRecipe(recipe));
    }
    ui.horizontal(|ui| {
        if g.computing {
            ui.spinner();
            ui.label(RichText::new("building heatmap…").small());
        } else {
            ui.label(
                RichText::new(format!(
                    "heatmap {:.0} ms; with difference and metrics {:.0} ms",
                    g.heatmap_seconds * 1000.0,
                    g.seconds * 1000.0
                ))
                .small(),
            );
        }
    });
    let mut scanpath = g.show_scanpath;
    if ui.checkbox(&mut scanpath, "Scanpath (S)").changed() {
        commands.push(Command::ToggleScanpath);
    }
    if let Some(layer) = &g.layer {
        layer_ui(ui, LAYER_GAZE, layer, false, commands);
    }
    if ui.small_button("Remove recording").clicked() {
        commands.push(Command::ClearGaze);
    }

    ui.separator();
    let mut compare = v.compare.enabled;
    if ui.checkbox(&mut compare, "Compare view (C)").changed() {
        commands.push(Command::ToggleCompare);
    }
    if v.compare.enabled {
        ui.horizontal(|ui| {
            ui.label("Panes");
            for n in 2..=4 {
                if ui
                    .selectable_label(v.compare.panes.len() == n, n.to_string())
                    .clicked()
                {
                    commands.push(Command::SetPaneCount(n));
                }
            }
        });
        for (i, content) in v.compare.panes.iter().enumerate() {
            let mut c = *content;
            egui::ComboBox::from_id_salt(("pane", i))
                .selected_text(format!("{}: {}", i + 1, c.label()))
                .show_ui(ui, |ui| {
                    for option in PaneContent::ALL {
                        ui.selectable_value(&mut c, option, option.label());
                    }
                });
            if c != *content {
                commands.push(Command::SetPaneContent {
                    pane: i,
                    content: c,
                });
            }
        }
        for (index, layer) in [
            (LAYER_MODEL_ONLY, &g.model_only),
            (LAYER_GAZE_ONLY, &g.gaze_only),
        ] {
            if let Some(l) = layer {
                layer_ui(ui, index, l, false, commands);
            }
        }
    }

    ui.separator();
    ui.label(RichText::new("Metrics").strong());
    ui.horizontal(|ui| {
        ui.label("Region");
        let mut region = v.region;
        ui.radio_value(&mut region, RegionChoice::LungMask, "Lung mask");
        ui.radio_value(&mut region, RegionChoice::DrawnBox, "Drawn box (B)");
        if region != v.region {
            commands.push(Command::SetRegion(region));
        }
    });
    metrics_grid(ui, &g.rows);
    if panel.export_text.is_empty() {
        panel.export_text = default_export(v);
    }
    ui.horizontal(|ui| {
        ui.add(egui::TextEdit::singleline(&mut panel.export_text).desired_width(170.0));
        if ui
            .add_enabled(!g.rows.is_empty(), egui::Button::new("Export CSV"))
            .clicked()
        {
            commands.push(Command::ExportMetrics(PathBuf::from(
                panel.export_text.trim(),
            )));
        }
    });
}

fn value_cell(ui: &mut egui::Ui, row: Option<&MetricRow>) {
    match row {
        Some(MetricRow { value: Some(v), .. }) => {
            ui.monospace(format!("{v:.3}"));
        }
        Some(r) => {
            ui.monospace("—").on_hover_text(&r.note);
        }
        None => {
            ui.monospace("");
        }
    }
}

/// Two grids: maps against the gaze map and fixations; every map against the region.
fn metrics_grid(ui: &mut egui::Ui, rows: &[MetricRow]) {
    let mut maps: Vec<&str> = Vec::new();
    for r in rows {
        if !maps.contains(&r.map.as_str()) {
            maps.push(&r.map);
        }
    }
    let find = |map: &str, metric: &str| rows.iter().find(|r| r.map == map && r.metric == metric);
    let vs_gaze: Vec<&str> = maps
        .iter()
        .copied()
        .filter(|m| find(m, "KL").is_some())
        .collect();
    if vs_gaze.is_empty() {
        ui.label(
            RichText::new("Map-vs-gaze metrics appear once an explanation (Analyze) exists.")
                .small()
                .weak(),
        );
    } else {
        egui::Grid::new("gaze-metrics")
            .striped(true)
            .show(ui, |ui| {
                ui.label(RichText::new("vs gaze").small().strong());
                for (m, higher) in MAP_METRICS {
                    ui.label(RichText::new(m).small().strong())
                        .on_hover_text(format!(
                            "{} ({} is better)",
                            metric_help(m),
                            if higher { "higher" } else { "lower" }
                        ));
                }
                ui.end_row();
                for map in &vs_gaze {
                    ui.label(RichText::new(short(map)).small())
                        .on_hover_text(*map);
                    for (m, _) in MAP_METRICS {
                        value_cell(ui, find(map, m));
                    }
                    ui.end_row();
                }
            });
    }
    let vs_region: Vec<&str> = maps
        .iter()
        .copied()
        .filter(|m| find(m, "Diff_GradCAM").is_some())
        .collect();
    if let Some(reference) = rows
        .iter()
        .find(|r| r.metric == "Diff_GradCAM")
        .map(|r| &r.reference)
    {
        ui.label(RichText::new(format!("vs {reference}")).small());
        egui::Grid::new("region-metrics")
            .striped(true)
            .show(ui, |ui| {
                ui.label("");
                for (m, _) in REGION_METRICS {
                    ui.label(RichText::new(m).small().strong())
                        .on_hover_text(metric_help(m));
                }
                ui.end_row();
                for map in &vs_region {
                    ui.label(RichText::new(short(map)).small())
                        .on_hover_text(*map);
                    for (m, _) in REGION_METRICS {
                        value_cell(ui, find(map, m));
                    }
                    ui.end_row();
                }
            });
    }
}

/// The part of a map name before its parenthesised details.
fn short(name: &str) -> &str {
    name.split(" (").next().unwrap_or(name)
}
