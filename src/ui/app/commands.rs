//! Applying `Command`s (menus, toolbar, keys, tests) to the app, and the keyboard map.

use super::*;

impl CxrApp {
    pub(super) fn apply(&mut self, command: Command, pixels_per_point: f32) {
        match command {
            Command::Open(path) => self.open(path, false),
            Command::OpenInstance(path) => self.open(path, true),
            Command::OpenSample => self.open_sample(),
            Command::SaveBackend(choice) => self.save_backend(choice),
            Command::ShowFileDialog { folder } => {
                if let Err(e) = self.workers.open_dialog(folder) {
                    self.notices.error(e);
                }
            }
            Command::ShowPathEntry => self.path_entry = Some(String::new()),
            Command::SetTool(tool) => self.tool = tool,
            Command::ToggleTagBrowser => self.show_tags = !self.show_tags,
            Command::ShowFrame(n) => self.show_frame(n),
            Command::ToggleCine => {
                let frames = self
                    .viewer
                    .as_ref()
                    .map_or(1, |v| v.loaded.info.number_of_frames);
                self.cine = match self.cine {
                    None if frames > 1 => Some(std::time::Instant::now()),
                    _ => None,
                };
            }
            Command::ToggleStudyBrowser => self.show_study_browser = !self.show_study_browser,
            Command::DismissNotice(i) => self.notices.dismiss(i),
            Command::NextImage => self.step_image(true),
            Command::PreviousImage => self.step_image(false),
            Command::Analyze => self.start_analysis(),
            Command::RevealAnalysis => {
                if let Some(a) = self.viewer.as_mut().and_then(|v| v.analysis.as_mut()) {
                    a.reveal();
                }
                self.schedule_gaze_compare();
            }
            Command::CancelAnalysis => {
                if let Some(w) = &mut self.workers.inference {
                    w.cancel();
                }
                self.analysis.running = None;
                self.analysis_image = None;
            }
            Command::SetMethod(m) => self.analysis.method = m,
            Command::SetExplainTarget(t) => self.analysis.target = t,
            Command::ToggleAnalysisPanel => self.show_analysis = !self.show_analysis,
            Command::NudgeOpacity { index, delta } => {
                if let Some(layer) = self.viewer.as_mut().and_then(|v| v.layer_mut(index)) {
                    layer.params.opacity = (layer.params.opacity + delta).clamp(0.0, 1.0);
                    layer.params.visible = true;
                }
            }
            Command::SetLayer {
                index,
                params,
                colormap,
            } => {
                if let Some(layer) = self.viewer.as_mut().and_then(|v| v.layer_mut(index)) {
                    layer.params = params;
                    layer.colormap = colormap;
                }
            }
            Command::SelectModel(dir) => {
                if let ModelsStatus::Ready(r) = &self.analysis.models
                    && let Some(kind) = r.available.iter().find(|m| m.dir == dir).map(|m| m.kind)
                {
                    let same_kind: Vec<PathBuf> = r
                        .available
                        .iter()
                        .filter(|m| m.kind == kind)
                        .map(|m| m.dir.clone())
                        .collect();
                    self.preferred_models.retain(|p| !same_kind.contains(p));
                    self.preferred_models.insert(0, dir);
                    self.reload_models();
                }
            }
            Command::ShowTab(tab) => self.tab = tab,
            Command::LoadGaze(path) => {
                if let Some(v) = &self.viewer {
                    let key = crate::gaze::image_key(&v.path, &v.loaded);
                    self.gaze_panel.problems.clear();
                    if let Err(e) = self.workers.import_gaze(path, key, v.handle.id) {
                        self.notices.error(e);
                    }
                }
            }
            Command::SimulateGaze => {
                if let Some(v) = &self.viewer {
                    let lung = v
                        .layer(crate::ui::state::LAYER_MASK)
                        .map(|l| l.handle.image.clone());
                    let id = crate::gaze::image_key(&v.path, &v.loaded).ids[0].clone();
                    self.gaze_panel.problems.clear();
                    if let Err(e) = self.workers.simulate_gaze(
                        v.handle.image.width,
                        v.handle.image.height,
                        lung,
                        id,
                        v.handle.id,
                    ) {
                        self.notices.error(e);
                    }
                }
            }
            Command::ClearGaze => {
                if let Some(v) = &mut self.viewer {
                    v.gaze = None;
                }
                self.workers.gaze_compare.cancel();
            }
            Command::SetGazeRecipe(recipe) => {
                if let Some(g) = self.viewer.as_mut().and_then(|v| v.gaze.as_mut()) {
                    g.recipe = recipe;
                }
                self.schedule_gaze_compare();
            }
            Command::ToggleScanpath => {
                if let Some(g) = self.viewer.as_mut().and_then(|v| v.gaze.as_mut()) {
                    g.show_scanpath = !g.show_scanpath;
                }
            }
            Command::ToggleCompare => {
                if let Some(v) = &mut self.viewer {
                    v.compare.enabled = !v.compare.enabled;
                    v.view.fit_mode = true;
                }
            }
            Command::SetPaneCount(n) => {
                if let Some(v) = &mut self.viewer {
                    let n = n.clamp(2, 4);
                    let defaults = crate::ui::state::CompareState::default().panes;
                    v.compare.panes.resize(n, PaneContent::Image);
                    for (i, p) in v.compare.panes.iter_mut().enumerate() {
                        if *p == PaneContent::Image && i < defaults.len() {
                            *p = defaults[i];
                        }
                    }
                    v.compare.enabled = true;
                    v.view.fit_mode = true;
                }
            }
            Command::SetPaneContent { pane, content } => {
                if let Some(p) = self
                    .viewer
                    .as_mut()
                    .and_then(|v| v.compare.panes.get_mut(pane))
                {
                    *p = content;
                }
            }
            Command::SetRegion(region) => {
                if let Some(v) = &mut self.viewer {
                    v.region = region;
                    if region == RegionChoice::DrawnBox && v.region_box.is_none() {
                        self.tool = Tool::Region;
                        self.notices
                            .info("Draw the region: drag a box on the image (Region tool, key B)");
                    }
                }
                self.schedule_gaze_compare();
            }
            Command::Export(choice) => {
                if self.viewer.is_none() {
                    self.notices.error("no image is open");
                } else if choice.kind == crate::export::job::ExportKind::Report
                    && self.viewer.as_ref().is_some_and(|v| v.analysis.is_none())
                {
                    self.notices
                        .error("no analysis to report: run Analyze first");
                } else if let Err(e) = self.workers.save_dialog(self.export_name(choice), choice) {
                    self.notices.error(e);
                }
            }
            Command::ExportTo(choice, path) => {
                match self.export_job(choice, path, pixels_per_point) {
                    Ok(job) => {
                        if let Err(e) = self.workers.export(job) {
                            self.notices.error(e);
                        }
                    }
                    Err(e) => self
                        .notices
                        .error(format!("{} export failed: {e}", choice.kind.label())),
                }
            }
            Command::SetReportIdentifiers(on) => self.report_identifiers = on,
            Command::TogglePacs
            | Command::PacsSaveServers
            | Command::PacsSearch
            | Command::PacsRetrieve(_)
            | Command::PacsListSeries(_)
            | Command::PacsRetrieveSeries(..)
            | Command::PacsStore(_)
            | Command::PacsCancel => self.pacs_command(command),
            Command::ExportMetrics(path) => {
                let rows = self
                    .viewer
                    .as_ref()
                    .and_then(|v| v.gaze.as_ref())
                    .map(|g| g.rows.clone())
                    .unwrap_or_default();
                if rows.is_empty() {
                    self.notices.error("no metrics to export yet");
                } else {
                    let target = path.clone();
                    let job = move || {
                        crate::gaze::table::write_csv(&rows, &target).map_err(|e| e.to_string())
                    };
                    if let Err(e) = self.workers.write(WriteKind::Metrics(path), job) {
                        self.notices.error(e);
                    }
                }
            }
            Command::ApplyPreset(_)
            | Command::ToggleInvert
            | Command::Fit
            | Command::OneToOne
            | Command::Reset
            | Command::ClearMeasurements => {
                if let Some(v) = &mut self.viewer {
                    match command {
                        Command::ApplyPreset(i) => v.apply_preset(i),
                        Command::ToggleInvert => v.display.user_inverted = !v.display.user_inverted,
                        Command::Fit => v.view.fit_mode = true,
                        Command::OneToOne => v.view = v.view.one_to_one(pixels_per_point),
                        Command::Reset => v.reset(),
                        Command::ClearMeasurements => v.measurements.clear(),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Whether the open image is `image_id` (late results for another image are dropped).
    pub(super) fn shows(&self, image_id: u64) -> bool {
        self.viewer.as_ref().map(|v| v.handle.id) == Some(image_id)
    }

    pub(super) fn reload_models(&mut self) {
        if let Some(w) = &mut self.workers.inference {
            match w.reload(self.preferred_models.clone()) {
                Ok(()) => {
                    self.analysis.models = ModelsStatus::Loading;
                    self.analysis.running = None;
                }
                Err(e) => self.notices.error(e),
            }
        }
    }

    pub(super) fn keyboard_commands(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        use egui::Key;
        let keys = [
            Key::Num1,
            Key::Num2,
            Key::Num3,
            Key::Num4,
            Key::Num5,
            Key::Num6,
            Key::Num7,
            Key::Num8,
            Key::Num9,
        ];
        ctx.input(|i| {
            for (n, k) in keys.iter().enumerate() {
                if i.key_pressed(*k) {
                    self.commands.push(Command::ApplyPreset(n));
                }
            }
            let map = [
                (Key::I, Command::ToggleInvert),
                (Key::F, Command::Fit),
                (Key::O, Command::OneToOne),
                (Key::R, Command::Reset),
                (Key::W, Command::SetTool(Tool::WindowLevel)),
                (Key::P, Command::SetTool(Tool::Pan)),
                (Key::M, Command::SetTool(Tool::Measure)),
                (Key::T, Command::ToggleTagBrowser),
                (Key::PageDown, Command::NextImage),
                (Key::PageUp, Command::PreviousImage),
                (Key::Delete, Command::ClearMeasurements),
                (Key::A, Command::Analyze),
                (Key::L, Command::ToggleCine),
                (Key::C, Command::ToggleCompare),
                (Key::B, Command::SetTool(Tool::Region)),
                (Key::S, Command::ToggleScanpath),
                (
                    Key::OpenBracket,
                    Command::NudgeOpacity {
                        index: 1,
                        delta: -0.1,
                    },
                ),
                (
                    Key::CloseBracket,
                    Command::NudgeOpacity {
                        index: 1,
                        delta: 0.1,
                    },
                ),
            ];
            for (k, c) in map {
                if i.key_pressed(k) {
                    self.commands.push(c);
                }
            }
        });
    }
}
