//! Menu bar, toolbar, the path entry and the shortcuts window.

use super::*;

impl CxrApp {
    /// The compute device in use, as the Analysis panel shows it.
    pub(super) fn compute_label(&self) -> String {
        match &self.analysis.models {
            ModelsStatus::Ready(r) => r.device.clone(),
            ModelsStatus::Loading => "starting…".into(),
            ModelsStatus::Failed(_) => "none (models unavailable)".into(),
        }
    }

    pub(super) fn save_backend(&mut self, choice: BackendChoice) {
        let Some(path) = self.settings_path.clone() else {
            self.notices
                .error("No settings folder (neither XDG_CONFIG_HOME nor HOME is set).");
            return;
        };
        let settings = crate::ml::device::DeviceSettings { backend: choice };
        let job =
            move || crate::ml::device::save_settings(&path, &settings).map_err(|e| e.to_string());
        if let Err(e) = self.workers.write(WriteKind::Settings(choice), job) {
            self.notices.error(e);
        }
    }

    fn export_menu(&mut self, ui: &mut egui::Ui) {
        use crate::export::job::{ExportChoice, ExportKind};
        let analysed = self.viewer.as_ref().is_some_and(|v| v.analysis.is_some());
        for (label, kind, screen, hover) in [
            (
                "View as PNG (as on screen)…",
                ExportKind::Png,
                true,
                "The view at screen resolution: zoom, pan, window and the visible overlays,                  corner text, legend, research-use mark",
            ),
            (
                "Image as PNG (image resolution)…",
                ExportKind::Png,
                false,
                "The whole image with the visible overlays, corner text, legend and research-use                  mark (small images enlarged to at least 640 pixels)",
            ),
            (
                "DICOM Secondary Capture…",
                ExportKind::SecondaryCapture,
                false,
                "The image with the overlays burned in, as a new series in the source's study",
            ),
        ] {
            if ui.button(label).on_hover_text(hover).clicked() {
                self.commands
                    .push(Command::Export(ExportChoice { kind, screen }));
            }
        }
        let report = ui.add_enabled(analysed, egui::Button::new("Report (HTML)…"));
        if report
            .on_hover_text(
                "Image, probabilities, model cards, out-of-distribution verdict, gaze metrics",
            )
            .on_disabled_hover_text("Run Analyze first")
            .clicked()
        {
            self.commands.push(Command::Export(ExportChoice {
                kind: ExportKind::Report,
                screen: false,
            }));
        }
        let mut identifiers = self.report_identifiers;
        if ui
            .checkbox(&mut identifiers, "Patient identifiers in reports")
            .changed()
        {
            self.commands
                .push(Command::SetReportIdentifiers(identifiers));
        }
        ui.weak("Every export is marked: research use, not for diagnostic use.");
    }

    pub(super) fn menu_ui(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open file…").clicked() {
                    self.commands
                        .push(Command::ShowFileDialog { folder: false });
                }
                if ui.button("Open folder…").clicked() {
                    self.commands.push(Command::ShowFileDialog { folder: true });
                }
                if ui.button("Open path…").clicked() {
                    self.commands.push(Command::ShowPathEntry);
                }
                if ui.button("Open sample study").clicked() {
                    self.commands.push(Command::OpenSample);
                }
                ui.menu_button("Recent", |ui| {
                    if self.recent.is_empty() {
                        ui.weak("none yet");
                    }
                    for p in &self.recent {
                        let label = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        if ui
                            .button(label)
                            .on_hover_text(p.display().to_string())
                            .clicked()
                        {
                            self.commands.push(Command::Open(p.clone()));
                        }
                    }
                });
                ui.add_enabled_ui(self.viewer.is_some(), |ui| {
                    ui.menu_button("Export", |ui| self.export_menu(ui));
                });
                if ui.button("PACS (DICOMweb)…").clicked() {
                    self.commands.push(Command::TogglePacs);
                }
                ui.separator();
                if ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("View", |ui| {
                for (label, c) in [
                    ("Fit (F)", Command::Fit),
                    ("1:1 (O)", Command::OneToOne),
                    ("Reset (R)", Command::Reset),
                    ("Invert (I)", Command::ToggleInvert),
                    ("Tag browser (T)", Command::ToggleTagBrowser),
                    ("Study browser", Command::ToggleStudyBrowser),
                    ("Analysis panel", Command::ToggleAnalysisPanel),
                ] {
                    if ui.button(label).clicked() {
                        self.commands.push(c);
                    }
                }
                ui.separator();
                ui.menu_button("Compute backend", |ui| {
                    ui.weak(format!("In use: {}", self.compute_label()));
                    ui.weak("A change takes effect when cxrlens next starts.");
                    let current = self.saved_backend.unwrap_or_default();
                    for choice in BackendChoice::ALL {
                        if ui.radio(current == choice, choice.label()).clicked() {
                            self.commands.push(Command::SaveBackend(choice));
                        }
                    }
                });
            });
            ui.menu_button("Help", |ui| {
                if ui.button("Keyboard and mouse").clicked() {
                    self.show_shortcuts = true;
                }
            });
        });
    }

    pub(super) fn toolbar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            for (tab, label) in [(Tab::Viewer, "Viewer"), (Tab::Trainer, "Trainer")] {
                if ui
                    .selectable_label(self.tab == tab, egui::RichText::new(label).strong())
                    .clicked()
                {
                    self.commands.push(Command::ShowTab(tab));
                }
            }
            ui.separator();
            if self.tab == Tab::Trainer {
                ui.weak("Fine-tune the models on local data; nothing leaves this machine.");
                return;
            }
            for tool in [Tool::WindowLevel, Tool::Pan, Tool::Measure] {
                if ui
                    .selectable_label(self.tool == tool, tool.label())
                    .clicked()
                {
                    self.commands.push(Command::SetTool(tool));
                }
            }
            ui.separator();
            let Some(v) = &mut self.viewer else {
                ui.weak(
                    "No image open — File > Open, drop a file here, or File > Open sample study",
                );
                return;
            };
            let current = v
                .active_preset
                .and_then(|i| v.presets.get(i))
                .map_or("Custom".to_string(), |p| p.name.clone());
            egui::ComboBox::from_id_salt("preset")
                .selected_text(current)
                .width(150.0)
                .show_ui(ui, |ui| {
                    for (i, p) in v.presets.iter().enumerate() {
                        let key = if i < 9 {
                            format!("{}  ", i + 1)
                        } else {
                            String::new()
                        };
                        if ui
                            .selectable_label(
                                v.active_preset == Some(i),
                                format!("{key}{}", p.name),
                            )
                            .clicked()
                        {
                            self.commands.push(Command::ApplyPreset(i));
                        }
                    }
                });
            if let VoiMode::Window(w) = v.display.voi {
                egui::ComboBox::from_id_salt("voi-function")
                    .selected_text(w.function.label())
                    .show_ui(ui, |ui| {
                        for f in VoiFunction::ALL {
                            if ui.selectable_label(w.function == f, f.label()).clicked() {
                                v.set_function(f);
                            }
                        }
                    });
            }
            let mut inverted = v.display.user_inverted;
            if ui.toggle_value(&mut inverted, "Invert").clicked() {
                self.commands.push(Command::ToggleInvert);
            }
            ui.separator();
            for (label, c) in [
                ("Fit", Command::Fit),
                ("1:1", Command::OneToOne),
                ("Reset", Command::Reset),
            ] {
                if ui.button(label).clicked() {
                    self.commands.push(c);
                }
            }
            if !v.measurements.is_empty() && ui.button("Clear measurements").clicked() {
                self.commands.push(Command::ClearMeasurements);
            }
            ui.separator();
            let mut tags = self.show_tags;
            if ui.toggle_value(&mut tags, "Tags").clicked() {
                self.commands.push(Command::ToggleTagBrowser);
            }
            let frames = v.loaded.info.number_of_frames;
            if frames > 1 {
                ui.separator();
                let mut shown = v.loaded.frame + 1;
                let slider = ui.add(
                    egui::Slider::new(&mut shown, 1..=frames)
                        .text(format!("of {frames} frames"))
                        .clamping(egui::SliderClamping::Always),
                );
                if slider.changed() {
                    self.commands.push(Command::ShowFrame(shown - 1));
                }
                let playing = self.cine.is_some();
                if ui
                    .button(if playing { "Pause" } else { "Play" })
                    .on_hover_text("Cine: loop through the frames (L)")
                    .clicked()
                {
                    self.commands.push(Command::ToggleCine);
                }
            }
        });
    }

    pub(super) fn path_entry_ui(&mut self, ctx: &egui::Context) {
        let Some(text) = &mut self.path_entry else {
            return;
        };
        let mut open = true;
        let mut submit = false;
        egui::Window::new("Open path")
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui| {
                ui.label("File, folder or DICOMDIR:");
                let r = ui.text_edit_singleline(text);
                submit = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                submit |= ui.button("Open").clicked();
            });
        if submit && !text.trim().is_empty() {
            self.commands
                .push(Command::Open(PathBuf::from(text.trim())));
            open = false;
        }
        if !open {
            self.path_entry = None;
        }
    }

    pub(super) fn shortcuts_ui(&mut self, ctx: &egui::Context) {
        egui::Window::new("Keyboard and mouse")
            .open(&mut self.show_shortcuts)
            .show(ctx, |ui| {
                egui::Grid::new("shortcuts").striped(true).show(ui, |ui| {
                    for (k, what) in [
                        (
                            "Left drag (W/L tool)",
                            "horizontal: window width, vertical: centre",
                        ),
                        ("Left drag (Measure tool)", "distance line"),
                        ("Middle drag, Shift+left drag", "pan"),
                        ("Right drag, wheel", "zoom"),
                        ("1 … 9", "window presets (file windows first)"),
                        ("I", "invert"),
                        ("F / O / R", "fit / 1:1 / reset"),
                        ("W / P / M", "W/L, pan, measure tools"),
                        ("T", "tag browser"),
                        ("Page Up / Down", "previous / next image in the study"),
                        ("L", "cine: play / pause the frames of a multi-frame image"),
                        ("Delete", "clear measurements"),
                        ("A", "analyze: lung mask, classification, explanation"),
                        ("[ / ]", "heatmap opacity − / +"),
                        ("C", "compare view: 2–4 synchronised panes"),
                        ("S", "gaze scanpath on / off"),
                        ("B", "Region tool: drag a box for Diff_GradCAM / EHR-AUC"),
                    ] {
                        ui.monospace(k);
                        ui.label(what);
                        ui.end_row();
                    }
                });
            });
    }
}
