//! `CxrApp`: the eframe application. Owns the worker pool, the open study and image, and the UI
//! state; applies `Command`s once per frame in `logic`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::analysis::{AnalysisPanel, MASK_COLOR, ModelsStatus, analysis_ui};
use super::browser::browser_ui;
use super::command::{Command, Tool};
use super::gaze_panel::{GazePanel, gaze_ui};
use super::notices::Notices;
use super::state::{
    AnalysisView, CpuTexture, GazeView, LayerState, PaneContent, RegionChoice, ViewerState,
    Withheld,
};
use super::tags_panel::TagBrowser;
use super::trainer::{RunView, TrainerCommand, TrainerState, trainer_ui};
use super::viewer::{DrawPath, viewer_ui};
use crate::imaging::VoiFunction;
use crate::imaging::colormap::Colormap;
use crate::imaging::composite::OverlayParams;
use crate::imaging::voi::VoiMode;
use crate::io::study::StudyTree;
use crate::ml::analysis::{AnalysisRequest, AnalysisResult};
use crate::ml::bundle::ModelKind;
use crate::ml::device::{BackendChoice, ComputeDevice};
use crate::ml::train::TrainProgress;
use crate::render::ImageHandle;
use crate::worker::training::TrainerEvent;
use crate::worker::{WorkerEvent, Workers};

/// The sample study shipped in `assets/` (public NEMA WG-04 data, no identifiers; see assets/README.md).
pub const SAMPLE_DICOM: &[u8] = include_bytes!("../../assets/sample_chest.dcm");
const RECENT_KEY: &str = "cxrlens.recent";
const MAX_RECENT: usize = 10;

/// The two halves of the app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tab {
    #[default]
    Viewer,
    Trainer,
}

/// Start-up options (from the command line).
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// File, folder or DICOMDIR to open at start.
    pub open: Option<PathBuf>,
    /// Why the app is not on wgpu, when it is not (shown once as a notice).
    pub renderer_note: Option<String>,
    /// Other start-up problems to show once (e.g. an unreadable settings file).
    pub startup_notes: Vec<String>,
    /// Where View ▸ Compute backend saves its choice (`None`: the menu cannot save).
    pub settings_path: Option<PathBuf>,
    /// The compute device chosen before the window opened (shared with the renderer on a GPU);
    /// `None` lets the inference worker choose with `backend`.
    pub compute: Option<ComputeDevice>,
    pub backend: BackendChoice,
    /// Run Analyze as soon as the first image and the models are ready.
    pub analyze_on_open: bool,
    /// Show this frame (0-based) of the first image once it is open (`--frame`).
    pub frame_on_open: Option<u32>,
    /// Load this gaze file (or, with `simulate_gaze`, simulate a reading) once the first image is
    /// open and any start-up analysis has finished.
    pub gaze_on_open: Option<PathBuf>,
    pub simulate_gaze: bool,
    /// Open the Trainer tab on this dataset folder and scan it.
    pub trainer_data: Option<PathBuf>,
}

/// Time between frames in cine playback (about 10 frames per second, as decoding allows).
const CINE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

pub struct CxrApp {
    workers: Workers,
    commands: Vec<Command>,
    notices: Notices,
    /// Largest texture side for the GPU path; `None` when drawing on the CPU.
    gpu_max_texture: Option<u32>,
    renderer_label: String,
    study: Option<(PathBuf, StudyTree)>,
    viewer: Option<ViewerState>,
    /// What is being loaded (file name), for the status bar.
    loading: Option<String>,
    /// A frame of the open multi-frame image is being decoded (replaces the frame in place).
    frame_request: Option<u32>,
    /// Cine playback of a multi-frame image: when the next frame is due.
    cine: Option<std::time::Instant>,
    /// `--frame`: the frame to show once the first image is open.
    frame_pending: Option<u32>,
    /// When the open image was requested: open-to-first-pixel is logged at its first frame.
    open_started: Option<std::time::Instant>,
    recent: Vec<PathBuf>,
    tool: Tool,
    tag_browser: TagBrowser,
    show_tags: bool,
    show_study_browser: bool,
    path_entry: Option<String>,
    show_shortcuts: bool,
    analysis: AnalysisPanel,
    show_analysis: bool,
    /// Image id the analysis in flight belongs to.
    analysis_image: Option<u64>,
    /// `--analyze`: analyse the first image once it and the models are ready.
    analyze_pending: bool,
    gaze_panel: GazePanel,
    gaze_pending: Option<Command>,
    tab: Tab,
    trainer: TrainerState,
    trainer_commands: Vec<TrainerCommand>,
    /// Bundles the user picked per kind (the inference worker loads these first).
    preferred_models: Vec<PathBuf>,
    /// The start-up compute device and backend choice, for training runs.
    compute: Option<ComputeDevice>,
    backend: BackendChoice,
    /// The start-up gaze waits for the start-up analysis (its lung mask guides a simulation).
    gaze_waits_for_analysis: bool,
    /// Where View ▸ Compute backend saves, and what it holds now.
    settings_path: Option<PathBuf>,
    saved_backend: Option<BackendChoice>,
}

impl CxrApp {
    pub fn new(cc: &eframe::CreationContext<'_>, options: AppOptions) -> Self {
        let ctx = cc.egui_ctx.clone();
        let mut workers = Workers::new(Arc::new(move || ctx.request_repaint()));
        let inference_error = workers
            .start_inference(options.compute.clone(), options.backend)
            .err();
        let (gpu_max_texture, renderer_label) = match &cc.wgpu_render_state {
            Some(rs) => {
                let max = crate::render::gpu::install(rs);
                let info = rs.adapter.get_info();
                (
                    Some(max),
                    format!("wgpu · {} ({:?})", info.name, info.backend),
                )
            }
            None => (None, "CPU rendering".to_string()),
        };
        let recent = cc
            .storage
            .and_then(|s| eframe::get_value::<Vec<PathBuf>>(s, RECENT_KEY))
            .unwrap_or_default();
        let mut app = Self {
            workers,
            commands: Vec::new(),
            notices: Notices::default(),
            gpu_max_texture,
            renderer_label,
            study: None,
            viewer: None,
            loading: None,
            frame_request: None,
            cine: None,
            frame_pending: options.frame_on_open,
            open_started: None,
            recent,
            tool: Tool::default(),
            tag_browser: TagBrowser::default(),
            show_tags: false,
            show_study_browser: true,
            path_entry: None,
            show_shortcuts: false,
            analysis: AnalysisPanel::default(),
            show_analysis: true,
            analysis_image: None,
            analyze_pending: options.analyze_on_open,
            gaze_panel: GazePanel::default(),
            gaze_waits_for_analysis: options.analyze_on_open,
            tab: Tab::Viewer,
            trainer: TrainerState::default(),
            trainer_commands: Vec::new(),
            preferred_models: Vec::new(),
            compute: options.compute.clone(),
            backend: options.backend,
            saved_backend: options
                .settings_path
                .as_deref()
                .and_then(|p| crate::ml::device::load_settings(p).ok().flatten())
                .map(|s| s.backend),
            settings_path: options.settings_path.clone(),
            gaze_pending: match (&options.gaze_on_open, options.simulate_gaze) {
                (Some(p), _) => Some(Command::LoadGaze(p.clone())),
                (None, true) => Some(Command::SimulateGaze),
                (None, false) => None,
            },
        };
        if let Some(e) = inference_error {
            app.analysis.models = ModelsStatus::Failed(e.clone());
            app.notices.error(e);
        }
        if let Some(note) = options.renderer_note {
            app.notices.info(note);
        }
        for note in options.startup_notes {
            app.notices.error(note);
        }
        if let Some(path) = options.open {
            app.commands.push(Command::Open(path));
        }
        if let Some(data) = options.trainer_data {
            app.tab = Tab::Trainer;
            app.trainer.data_text = data.display().to_string();
            app.trainer_commands.push(TrainerCommand::Scan);
        }
        app
    }

    /// Queues a command as a widget would (used by tests and the CLI).
    pub fn push_command(&mut self, command: Command) {
        self.commands.push(command);
    }

    pub fn viewer(&self) -> Option<&ViewerState> {
        self.viewer.as_ref()
    }

    pub fn study(&self) -> Option<&StudyTree> {
        self.study.as_ref().map(|(_, t)| t)
    }

    pub fn notices(&self) -> &Notices {
        &self.notices
    }

    pub fn is_busy(&self) -> bool {
        self.workers.decode.is_busy()
            || self.workers.scan.is_busy()
            || self.workers.render.is_busy()
            || self.analysis.running.is_some()
            || self.workers.gaze_import.is_busy()
            || self.workers.gaze_compare.is_busy()
            || self.workers.dataset_scan.is_busy()
            || self.trainer.run.as_ref().is_some_and(|r| r.running)
            || matches!(self.analysis.models, ModelsStatus::Loading)
    }

    pub fn trainer(&self) -> &TrainerState {
        &self.trainer
    }

    pub fn trainer_mut(&mut self) -> &mut TrainerState {
        &mut self.trainer
    }

    /// Queues a trainer action as its buttons do (tests).
    pub fn push_trainer_command(&mut self, command: TrainerCommand) {
        self.trainer_commands.push(command);
    }

    pub fn tab(&self) -> Tab {
        self.tab
    }

    pub fn gaze_panel(&self) -> &GazePanel {
        &self.gaze_panel
    }

    pub fn analysis_panel(&self) -> &AnalysisPanel {
        &self.analysis
    }

    pub fn tool(&self) -> Tool {
        self.tool
    }

    pub fn draw_path(&self) -> DrawPath {
        match (self.gpu_max_texture, &self.viewer) {
            (Some(max), Some(v)) if v.handle.image.width <= max && v.handle.image.height <= max => {
                DrawPath::Gpu
            }
            (Some(_), None) => DrawPath::Gpu,
            _ => DrawPath::Cpu,
        }
    }

    fn open(&mut self, path: PathBuf, keep_study: bool) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = if path.is_dir() || name == "DICOMDIR" {
            let root = if path.is_dir() {
                path.clone()
            } else {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            self.loading = Some(format!(
                "Scanning {}",
                root.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            self.workers.scan(root)
        } else {
            if !keep_study {
                self.study = None;
            }
            self.loading = Some(format!("Decoding {name}"));
            self.open_started = Some(std::time::Instant::now());
            self.workers.decode(path.clone(), 0)
        };
        match result {
            Ok(()) => self.remember(path),
            Err(e) => self.notices.error(e),
        }
    }

    /// Decodes frame `n` of the open image on the decode worker; the viewer keeps its view.
    fn show_frame(&mut self, n: u32) {
        let Some(v) = &self.viewer else { return };
        let frames = v.loaded.info.number_of_frames;
        if n >= frames || n == v.loaded.frame {
            return;
        }
        let path = v.path.clone();
        self.loading = Some(format!("Frame {} of {frames}", n + 1));
        self.frame_request = Some(n);
        if let Err(e) = self.workers.decode(path, n) {
            self.frame_request = None;
            self.cine = None;
            self.notices.error(e);
        }
    }

    fn remember(&mut self, path: PathBuf) {
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(MAX_RECENT);
    }

    fn open_sample(&mut self) {
        let target = std::env::temp_dir().join("cxrlens-sample_chest.dcm");
        match crate::io::write::write_atomically(&target, SAMPLE_DICOM) {
            Ok(()) => self.open(target, false),
            Err(e) => self
                .notices
                .error(format!("cannot unpack the sample study: {e}")),
        }
    }

    fn step_image(&mut self, forward: bool) {
        let (Some((_, tree)), Some(v)) = (&self.study, &self.viewer) else {
            return;
        };
        let paths: Vec<&PathBuf> = tree.all_images().map(|i| &i.path).collect();
        let Some(pos) = paths.iter().position(|p| **p == v.path) else {
            return;
        };
        let next = if forward {
            pos + 1
        } else {
            pos.wrapping_sub(1)
        };
        if let Some(p) = paths.get(next) {
            let p = (*p).clone();
            self.open(p, true);
        }
    }

    fn apply(&mut self, command: Command, pixels_per_point: f32) {
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
                        .layer(super::state::LAYER_MASK)
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
                    let defaults = super::state::CompareState::default().panes;
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
                    match crate::gaze::table::write_csv(&rows, &path) {
                        Ok(()) => {
                            self.notices
                                .info(format!("metrics written to {}", path.display()));
                            self.gaze_panel.last_export = Some(path);
                        }
                        Err(e) => self
                            .notices
                            .error(format!("cannot write {}: {e}", path.display())),
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
    fn shows(&self, image_id: u64) -> bool {
        self.viewer.as_ref().map(|v| v.handle.id) == Some(image_id)
    }

    fn reload_models(&mut self) {
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

    fn apply_trainer(&mut self, command: TrainerCommand) {
        match command {
            TrainerCommand::Scan => {
                let root = PathBuf::from(self.trainer.data_text.trim());
                let known = self.trainer.start_from.as_ref().and_then(|d| {
                    crate::ml::bundle::BundleInfo::open(d, false)
                        .ok()
                        .map(|b| b.card.class_names)
                });
                match self.workers.scan_dataset(root, known) {
                    Ok(()) => {
                        self.trainer.scanning = true;
                        self.trainer.scan = None;
                    }
                    Err(e) => self.notices.error(e),
                }
            }
            TrainerCommand::Start { resume } => {
                let mut options = self.trainer.run_options();
                options.resume = resume;
                let out_dir = self.trainer.out_dir();
                let data = PathBuf::from(self.trainer.data_text.trim());
                match self.workers.start_training(
                    data,
                    options.clone(),
                    out_dir.clone(),
                    self.compute.clone(),
                    self.backend,
                ) {
                    Ok(generation) => {
                        self.trainer.error = None;
                        self.trainer.report = None;
                        self.trainer.run = Some(RunView {
                            generation,
                            device: "starting…".into(),
                            epochs: options.epochs,
                            running: true,
                            out_dir,
                            ..Default::default()
                        });
                    }
                    Err(e) => self.notices.error(e),
                }
            }
            TrainerCommand::Stop => {
                // The run stops at its next batch; the last complete epoch's checkpoint stays.
                self.workers.training.stop();
            }
        }
    }

    fn handle_trainer_event(&mut self, generation: u64, event: TrainerEvent) {
        match event {
            TrainerEvent::Scanned(result) => {
                if !self.workers.dataset_scan.finish(generation) {
                    return;
                }
                self.trainer.scanning = false;
                match &result {
                    Err(e) => self.notices.error(format!("dataset scan: {e}")),
                    // Without masks only the classifier can learn from the folder.
                    Ok(scan) if scan.masks == 0 && self.trainer.kind == ModelKind::Lung => {
                        self.trainer.kind = ModelKind::Classifier;
                        self.trainer.start_from = None;
                        self.trainer.start_from_chosen = false;
                        self.trainer.options.name =
                            format!("{}-finetuned", ModelKind::Classifier.default_name());
                    }
                    Ok(_) => {}
                }
                self.trainer.scan = Some(result);
            }
            other => {
                let Some(run) = self
                    .trainer
                    .run
                    .as_mut()
                    .filter(|r| r.generation == generation)
                else {
                    return;
                };
                match other {
                    TrainerEvent::Scanned(_) => {}
                    TrainerEvent::Started { device } => run.device = device,
                    TrainerEvent::Progress(p) => match p {
                        TrainProgress::Batch {
                            epoch,
                            batch,
                            batches,
                            loss,
                        } => {
                            let x = (epoch - 1) as f64 + batch as f64 / batches.max(1) as f64;
                            run.batch_loss.push([x, loss]);
                            run.fraction = x / run.epochs.max(1) as f64;
                            if run.start_fraction.is_none() {
                                run.start_fraction =
                                    Some((epoch - 1) as f64 / run.epochs.max(1) as f64);
                                run.started = Some(std::time::Instant::now());
                            }
                        }
                        TrainProgress::Epoch {
                            epoch,
                            epochs,
                            train_loss,
                            evaluation,
                            seconds,
                        } => {
                            let (name, value) = evaluation.headline();
                            run.epoch_points.push((epoch, train_loss, name, value));
                            run.fraction = epoch as f64 / epochs.max(1) as f64;
                            run.log.push(format!(
                                "epoch {epoch}/{epochs}: loss {train_loss:.4}, validation {name} {value:.4} ({seconds:.0} s)"
                            ));
                        }
                        TrainProgress::Message(m) => run.log.push(m),
                    },
                    TrainerEvent::Finished(result) => {
                        run.running = false;
                        self.workers.training.finish(generation);
                        match *result {
                            Ok(report) => {
                                run.fraction = 1.0;
                                run.log.push(format!(
                                    "finished: {} epochs in {:.0} s",
                                    report.epochs_run, report.seconds
                                ));
                                let dir = run.out_dir.clone();
                                self.notices.info(format!(
                                    "model saved to {}; it is offered in the Analysis panel",
                                    dir.display()
                                ));
                                self.trainer.report = Some(report);
                                self.preferred_models.insert(0, dir);
                                self.reload_models();
                            }
                            Err(e) if e == "stopped" => {
                                run.log.push(
                                    "stopped; Resume continues from the last complete epoch".into(),
                                );
                            }
                            Err(e) => {
                                run.log.push(format!("failed: {e}"));
                                self.trainer.error = Some(e.clone());
                                self.notices.error(format!("training failed: {e}"));
                            }
                        }
                    }
                }
            }
        }
    }

    fn start_analysis(&mut self) {
        let (Some(v), Some(worker)) = (&self.viewer, &mut self.workers.inference) else {
            return;
        };
        let request = AnalysisRequest::of(&v.loaded, self.analysis.method, self.analysis.target);
        match worker.analyze(request) {
            Ok(generation) => {
                self.analysis.running = Some((generation, 0.0, "queued".into()));
                self.analysis_image = Some(v.handle.id);
            }
            Err(e) => self.notices.error(e),
        }
    }

    fn show_analysis_result(&mut self, result: AnalysisResult) {
        let Some(v) = &mut self.viewer else { return };
        if self.analysis_image != Some(v.handle.id) {
            return;
        }
        let old = v.analysis.take();
        let keep = |old: Option<&LayerState>, params: OverlayParams, colormap: Colormap| {
            old.map_or((params, colormap), |l| (l.params, l.colormap))
        };
        let lung_title = result
            .predictions
            .first()
            .map(|p| p.model_title.clone())
            .unwrap_or_default();
        let classifier_title = result
            .ood
            .classifier
            .as_ref()
            .map(|g| g.model.clone())
            .or_else(|| result.predictions.last().map(|p| p.model_title.clone()))
            .unwrap_or_default();
        let explained_title = result
            .explained
            .as_ref()
            .map(|e| e.0.clone())
            .unwrap_or_default();
        let mask = result.lung_probability.map(|m| {
            let (params, colormap) = keep(
                old.as_ref().and_then(|o| o.mask.as_ref()),
                OverlayParams {
                    visible: true,
                    opacity: 0.8,
                    threshold: 0.5,
                    contour: true,
                },
                Colormap::Solid(MASK_COLOR),
            );
            LayerState {
                handle: ImageHandle::new(Arc::new(m)),
                params,
                colormap,
                label: format!("Lung mask ({lung_title})"),
            }
        });
        let heatmap = result.heatmap.map(|h| {
            let (params, colormap) = keep(
                old.as_ref().and_then(|o| o.heatmap.as_ref()),
                OverlayParams {
                    visible: true,
                    opacity: 0.45,
                    threshold: 0.15,
                    contour: false,
                },
                Colormap::Inferno,
            );
            LayerState {
                handle: ImageHandle::new(Arc::new(h)),
                params,
                colormap,
                label: result.method.label().to_string(),
            }
        });
        let saliency = result.saliency.map(|(m, title)| {
            let (params, colormap) = keep(
                old.as_ref().and_then(|o| o.saliency.as_ref()),
                OverlayParams {
                    visible: true,
                    opacity: 0.5,
                    threshold: 0.1,
                    contour: false,
                },
                Colormap::Viridis,
            );
            LayerState {
                handle: ImageHandle::new(Arc::new(m)),
                params,
                colormap,
                label: format!("Predicted gaze ({title})"),
            }
        });
        // The gate decides what is drawn: a flagged model's layers wait until the user asks.
        let ood = result.ood;
        let split = |layer: Option<LayerState>, model: &str| {
            if ood.shows(model) {
                (layer, None)
            } else {
                (None, layer)
            }
        };
        let (mask, withheld_mask) = split(mask, &lung_title);
        let (heatmap, withheld_heatmap) = split(heatmap, &explained_title);
        let (saliency, withheld_saliency) = split(saliency, &classifier_title);
        let mut view = AnalysisView {
            mask,
            heatmap,
            saliency,
            predictions: result.predictions,
            explained: result.explained,
            target_layer: result.target_layer,
            method: result.method,
            seconds: result.seconds,
            ood,
            withheld: Withheld {
                mask: withheld_mask,
                heatmap: withheld_heatmap,
                saliency: withheld_saliency,
            },
            revealed: false,
        };
        // A re-analysis of an image whose results the user already chose to see keeps them shown.
        if old.as_ref().is_some_and(|o| o.revealed) {
            view.reveal();
        }
        v.analysis = Some(view);
        self.schedule_gaze_compare();
    }

    /// Rebuilds the gaze heatmap, difference and metrics for the current recording, maps and region.
    fn schedule_gaze_compare(&mut self) {
        let Some(v) = &mut self.viewer else { return };
        let Some(g) = &mut v.gaze else { return };
        let a = v.analysis.as_ref();
        let mut maps = Vec::new();
        if let Some(h) = a.and_then(|a| a.heatmap.as_ref()) {
            let name = a
                .and_then(|a| a.explained.as_ref())
                .map_or(h.label.clone(), |(m, c)| format!("{} ({m}, {c})", h.label));
            maps.push((name, h.handle.image.clone()));
        }
        if let Some(s) = a.and_then(|a| a.saliency.as_ref()) {
            maps.push((s.label.clone(), s.handle.image.clone()));
        }
        let region = match v.region {
            RegionChoice::LungMask => a.and_then(|a| a.mask.as_ref()).map(|m| {
                (
                    "predicted lung mask".to_string(),
                    crate::gaze::compare::Region::Mask(m.handle.image.clone()),
                )
            }),
            RegionChoice::DrawnBox => v.region_box.map(|b| {
                (
                    format!("box {:.0},{:.0}–{:.0},{:.0}", b[0], b[1], b[2], b[3]),
                    crate::gaze::compare::Region::Box(b),
                )
            }),
        };
        let job = crate::gaze::compare::CompareJob {
            recording: g.recording.clone(),
            recipe: g.recipe,
            width: v.handle.image.width,
            height: v.handle.image.height,
            maps,
            region,
        };
        g.computing = true;
        if let Err(e) = self.workers.compare_gaze(job, v.handle.id) {
            g.computing = false;
            self.notices.error(e);
        }
    }

    fn show_gaze_import(&mut self, import: crate::gaze::GazeImport) {
        let Some(v) = &mut self.viewer else { return };
        let count = import.problems.len();
        self.gaze_panel.problems = import.problems.iter().map(|p| p.to_string()).collect();
        if import.calibration_rows > 0 {
            self.gaze_panel.problems.insert(
                0,
                format!(
                    "{} calibration-image rows skipped (DICOM_IDs not in master_sheet.csv)",
                    import.calibration_rows
                ),
            );
        }
        let Some(recording) = import.recordings.into_iter().next() else {
            let first = import
                .problems
                .first()
                .map_or_else(|| "no fixations".to_string(), |p| p.to_string());
            self.notices.error(format!(
                "no gaze recording for this image: {first}{}",
                if count > 1 {
                    format!(" (+{} more problems in the Eye gaze panel)", count - 1)
                } else {
                    String::new()
                }
            ));
            return;
        };
        if count > 0 {
            self.notices.error(format!(
                "gaze loaded with {count} problem{} (listed in the Eye gaze panel)",
                if count == 1 { "" } else { "s" }
            ));
        }
        let recipe = crate::gaze::heatmap::Recipe::published(recording.format);
        let old = v.gaze.take();
        v.gaze = Some(GazeView {
            recording,
            recipe,
            layer: None,
            model_only: None,
            gaze_only: None,
            rows: Vec::new(),
            show_scanpath: old.as_ref().is_none_or(|g| g.show_scanpath),
            computing: false,
            heatmap_seconds: 0.0,
            seconds: 0.0,
        });
        if !v.compare.enabled {
            v.compare.enabled = true;
            v.view.fit_mode = true;
        }
        self.schedule_gaze_compare();
    }

    /// The heatmap arrives ahead of the metrics, so the σ slider shows its effect at once.
    fn show_gaze_heatmap(&mut self, map: crate::imaging::ScalarImage, seconds: f64) {
        let Some(g) = self.viewer.as_mut().and_then(|v| v.gaze.as_mut()) else {
            return;
        };
        g.heatmap_seconds = seconds;
        let name = crate::gaze::compare::gaze_name(&g.recording);
        let (params, colormap) = g.layer.as_ref().map_or(
            (
                OverlayParams {
                    visible: true,
                    opacity: 0.5,
                    threshold: 0.2,
                    contour: false,
                },
                Colormap::Inferno,
            ),
            |l| (l.params, l.colormap),
        );
        g.layer = Some(LayerState {
            handle: ImageHandle::new(Arc::new(map)),
            params,
            colormap,
            label: name,
        });
    }

    fn show_gaze_compare(&mut self, output: crate::gaze::compare::CompareOutput) {
        let Some(v) = &mut self.viewer else { return };
        let Some(g) = &mut v.gaze else { return };
        g.computing = false;
        g.rows = output.rows;
        g.seconds = output.seconds;
        g.heatmap_seconds = output.heatmap_seconds;
        let layer = |old: Option<&LayerState>,
                     map: crate::imaging::ScalarImage,
                     label: String,
                     params: OverlayParams,
                     colormap: Colormap| {
            let (params, colormap) = old.map_or((params, colormap), |l| (l.params, l.colormap));
            LayerState {
                handle: ImageHandle::new(Arc::new(map)),
                params,
                colormap,
                label,
            }
        };
        // The heatmap came ahead (`show_gaze_heatmap`); keep its texture.
        if g.layer.is_none() {
            g.layer = Some(layer(
                None,
                output.gaze,
                output.gaze_name,
                OverlayParams {
                    visible: true,
                    opacity: 0.5,
                    threshold: 0.2,
                    contour: false,
                },
                Colormap::Inferno,
            ));
        }
        let diff = OverlayParams {
            visible: true,
            opacity: 0.6,
            threshold: 0.1,
            contour: false,
        };
        g.model_only = output.model_only.map(|m| {
            layer(
                g.model_only.as_ref(),
                m,
                "Model heat without gaze".into(),
                diff,
                Colormap::Reds,
            )
        });
        g.gaze_only = output.gaze_only.map(|m| {
            layer(
                g.gaze_only.as_ref(),
                m,
                "Gaze without model heat".into(),
                diff,
                Colormap::Blues,
            )
        });
    }

    fn handle_event(&mut self, event: WorkerEvent, ctx: &egui::Context) {
        match event {
            WorkerEvent::Trainer { generation, event } => {
                self.handle_trainer_event(generation, event)
            }
            WorkerEvent::ModelsReady(ready) => {
                self.analysis.models = match *ready {
                    Ok(r) => ModelsStatus::Ready(r),
                    Err(e) => {
                        self.notices.error(format!("models unavailable: {e}"));
                        ModelsStatus::Failed(e)
                    }
                };
            }
            WorkerEvent::AnalysisProgress {
                generation,
                fraction,
                step,
            } => {
                if let Some(r) = &mut self.analysis.running
                    && r.0 == generation
                {
                    r.1 = fraction;
                    r.2 = step;
                }
            }
            WorkerEvent::Analyzed { generation, result } => {
                if self
                    .analysis
                    .running
                    .as_ref()
                    .is_none_or(|r| r.0 != generation)
                {
                    return;
                }
                self.analysis.running = None;
                match *result {
                    Ok(r) => self.show_analysis_result(r),
                    Err(e) => self.notices.error(format!("analysis failed: {e}")),
                }
                self.analysis_image = None;
            }
            WorkerEvent::GazeImported {
                generation,
                image_id,
                import,
            } => {
                if !self.workers.gaze_import.finish(generation) || !self.shows(image_id) {
                    return;
                }
                self.show_gaze_import(*import);
            }
            WorkerEvent::GazeHeatmap {
                generation,
                image_id,
                map,
                seconds,
            } => {
                if !self.workers.gaze_compare.is_current(generation) || !self.shows(image_id) {
                    return;
                }
                self.show_gaze_heatmap(*map, seconds);
            }
            WorkerEvent::GazeCompared {
                generation,
                image_id,
                output,
            } => {
                if !self.workers.gaze_compare.finish(generation) || !self.shows(image_id) {
                    return;
                }
                self.show_gaze_compare(*output);
            }
            WorkerEvent::Panicked {
                slot,
                generation,
                thread,
                message,
            } => {
                let current = match self.workers.slot_mut(slot) {
                    Some(job) => job.finish(generation),
                    None => {
                        self.workers.dialog_closed();
                        true
                    }
                };
                if slot == crate::worker::Slot::Decode && current {
                    self.loading = None;
                    if let Err(e) = self.workers.start_pending_decode() {
                        self.notices.error(e);
                    }
                }
                if current {
                    self.notices.error(format!(
                        "Internal error in {thread}: {message}. The job was stopped; the app keeps running."
                    ));
                }
            }
            WorkerEvent::Decoded {
                generation,
                path,
                result,
            } => {
                if !self.workers.decode.finish(generation) {
                    return;
                }
                match self.workers.start_pending_decode() {
                    // A newer request was waiting: this result is out of date.
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => self.notices.error(e),
                }
                self.loading = None;
                let frame_request = self.frame_request.take();
                match *result {
                    Ok(loaded)
                        if frame_request.is_some()
                            && self.viewer.as_ref().is_some_and(|v| v.path == path) =>
                    {
                        if let Some(v) = &mut self.viewer {
                            v.replace_frame(loaded);
                        }
                        if self.cine.is_some() {
                            self.cine = Some(std::time::Instant::now() + CINE_INTERVAL);
                        }
                    }
                    Ok(loaded) => {
                        self.cine = None;
                        let mut state = ViewerState::new(path, loaded);
                        if let Some(old) = &self.viewer {
                            // Keep the user's invert choice while stepping through a study.
                            state.display.user_inverted =
                                old.display.user_inverted && self.study.is_some();
                        }
                        self.viewer = Some(state);
                    }
                    Err(e) => {
                        let name = path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        self.notices.error(format!("{e} — {name}"));
                    }
                }
            }
            WorkerEvent::Scanned {
                generation,
                root,
                tree,
            } => {
                if !self.workers.scan.finish(generation) {
                    return;
                }
                self.loading = None;
                let first = tree.all_images().next().map(|i| i.path.clone());
                for p in tree.problems.iter().take(3) {
                    self.notices.error(p.clone());
                }
                if tree.problems.len() > 3 {
                    self.notices.error(format!(
                        "{} more problems, listed in the study browser",
                        tree.problems.len() - 3
                    ));
                }
                match first {
                    Some(p) => {
                        self.study = Some((root, tree));
                        self.show_study_browser = true;
                        self.open(p, true);
                    }
                    None => self
                        .notices
                        .error("no DICOM, PNG or JPEG images found in the folder"),
                }
            }
            WorkerEvent::DialogClosed { picked, detail } => {
                self.workers.dialog_closed();
                if let Some(p) = picked {
                    self.commands.push(Command::Open(p));
                } else if let Some(d) = detail {
                    self.notices.error(d);
                }
            }
            WorkerEvent::CpuRendered {
                generation,
                pane,
                image_id,
                size,
                rgba,
            } => {
                if !self.workers.render.finish(generation) {
                    return;
                }
                let Some(v) = &mut self.viewer else { return };
                if v.handle.id != image_id {
                    return;
                }
                let image = egui::ColorImage::from_rgba_unmultiplied(size, &rgba);
                let key = v.cpu_requested.take();
                let slot = if pane == 0 {
                    &mut v.cpu_texture
                } else {
                    &mut v.pane_textures[(pane as usize - 1).min(3)]
                };
                match slot {
                    Some(t) => {
                        t.texture.set(image, egui::TextureOptions::LINEAR);
                        t.rendered = key;
                    }
                    None => {
                        let texture = ctx.load_texture(
                            format!("cxrlens-image-{pane}"),
                            image,
                            egui::TextureOptions::LINEAR,
                        );
                        *slot = Some(CpuTexture {
                            texture,
                            rendered: key,
                        });
                    }
                }
            }
        }
    }

    fn keyboard_commands(&mut self, ctx: &egui::Context) {
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

    /// Keeps the CPU textures in step with the display settings: one render in flight at a time,
    /// for the first pane whose texture is stale. While one runs nothing new starts (a W/L drag
    /// changes the settings every frame); when it lands, the next call renders the settings of
    /// that moment — the newest wins.
    fn schedule_cpu_render(&mut self) {
        if self.draw_path() != DrawPath::Cpu || self.workers.render.is_busy() {
            return;
        }
        let Some(v) = &mut self.viewer else { return };
        for spec in v.panes() {
            let key = v.key_for(spec.id, &spec.overlays);
            let texture = if spec.id == 0 {
                v.cpu_texture.as_ref()
            } else {
                v.pane_textures[(spec.id as usize - 1).min(3)].as_ref()
            };
            if texture.and_then(|t| t.rendered) == Some(key) {
                continue;
            }
            if v.cpu_requested == Some(key) {
                return;
            }
            let (handle, settings) = (v.handle.clone(), v.settings_for(&spec.overlays));
            match self.workers.render_cpu(spec.id, handle, settings) {
                Ok(_) => v.cpu_requested = Some(key),
                Err(e) => self.notices.error(e),
            }
            return;
        }
    }

    /// The compute device in use, as the Analysis panel shows it.
    fn compute_label(&self) -> String {
        match &self.analysis.models {
            ModelsStatus::Ready(r) => r.device.clone(),
            ModelsStatus::Loading => "starting…".into(),
            ModelsStatus::Failed(_) => "none (models unavailable)".into(),
        }
    }

    fn save_backend(&mut self, choice: BackendChoice) {
        let Some(path) = self.settings_path.clone() else {
            self.notices
                .error("No settings folder (neither XDG_CONFIG_HOME nor HOME is set).");
            return;
        };
        let settings = crate::ml::device::DeviceSettings { backend: choice };
        match crate::ml::device::save_settings(&path, &settings) {
            Ok(()) => {
                self.saved_backend = Some(choice);
                self.notices.info(format!(
                    "Compute backend set to {}; it takes effect when cxrlens next starts \
                     (--backend and CXRLENS_BACKEND still override it).",
                    choice.label()
                ));
            }
            Err(e) => self
                .notices
                .error(format!("Could not save the setting: {e}")),
        }
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
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

    fn toolbar_ui(&mut self, ui: &mut egui::Ui) {
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

    fn path_entry_ui(&mut self, ctx: &egui::Context) {
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

    fn shortcuts_ui(&mut self, ctx: &egui::Context) {
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

impl eframe::App for CxrApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        for event in self.workers.drain() {
            self.handle_event(event, ctx);
        }
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if let Some(p) = dropped.into_iter().next() {
            self.commands.push(Command::Open(p));
        }
        self.keyboard_commands(ctx);
        if self.viewer.is_some()
            && self.loading.is_none()
            && let Some(n) = self.frame_pending.take()
        {
            self.commands.push(Command::ShowFrame(n));
        }
        if let (Some(due), Some(v)) = (self.cine, &self.viewer) {
            let now = std::time::Instant::now();
            if self.frame_request.is_none() && now >= due {
                let next = (v.loaded.frame + 1) % v.loaded.info.number_of_frames.max(1);
                self.commands.push(Command::ShowFrame(next));
            } else {
                ctx.request_repaint_after(due.saturating_duration_since(now));
            }
        }
        if self.analyze_pending
            && self.viewer.is_some()
            && matches!(self.analysis.models, ModelsStatus::Ready(_))
        {
            self.analyze_pending = false;
            self.commands.push(Command::Analyze);
        }
        if self.gaze_pending.is_some()
            && self.viewer.is_some()
            && !self.analyze_pending
            && self.analysis.running.is_none()
            && !matches!(self.analysis.models, ModelsStatus::Loading)
            && (!self.gaze_waits_for_analysis
                || self.viewer.as_ref().is_some_and(|v| v.analysis.is_some())
                || matches!(self.analysis.models, ModelsStatus::Failed(_)))
            && let Some(c) = self.gaze_pending.take()
        {
            self.commands.push(c);
        }
        for c in std::mem::take(&mut self.trainer_commands) {
            self.apply_trainer(c);
        }
        let pixels_per_point = ctx.pixels_per_point();
        for command in std::mem::take(&mut self.commands) {
            self.apply(command, pixels_per_point);
        }
        if let Some(v) = &mut self.viewer
            && std::mem::take(&mut v.region_changed)
        {
            self.schedule_gaze_compare();
        }
        self.schedule_cpu_render();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        if self.loading.is_none()
            && let (Some(v), Some(started)) = (&self.viewer, self.open_started)
        {
            // The first frame that draws the new image (its texture is uploaded in this frame's
            // paint callback).
            self.open_started = None;
            log::info!(
                "open to first frame: {:.0} ms for {}×{} px",
                started.elapsed().as_secs_f64() * 1000.0,
                v.loaded.image.width,
                v.loaded.image.height
            );
        }
        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                if let Some(what) = &self.loading {
                    ui.spinner();
                    ui.label(what);
                } else if let Some(v) = &self.viewer {
                    ui.label(&v.loaded.display_name);
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.weak(&self.renderer_label);
                });
            });
        });
        if !self.notices.items.is_empty() {
            egui::Panel::top("notices").show(ui, |ui| {
                if let Some(i) = self.notices.ui(ui) {
                    self.commands.push(Command::DismissNotice(i));
                }
            });
        }
        if self.tab == Tab::Trainer {
            let models = match &self.analysis.models {
                ModelsStatus::Ready(r) => r.available.clone(),
                _ => Vec::new(),
            };
            let mut trainer_commands = Vec::new();
            egui::CentralPanel::default().show(ui, |ui| {
                trainer_ui(ui, &mut self.trainer, &models, &mut trainer_commands)
            });
            self.trainer_commands.extend(trainer_commands);
            if self.trainer.run.as_ref().is_some_and(|r| r.running) {
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_millis(500));
            }
            let ctx = ui.ctx().clone();
            self.path_entry_ui(&ctx);
            self.shortcuts_ui(&ctx);
            return;
        }
        if self.show_study_browser
            && let Some((_, tree)) = &self.study
        {
            let current = self.viewer.as_ref().map(|v| v.path.as_path());
            egui::Panel::left("studies")
                .default_size(240.0)
                .show(ui, |ui| browser_ui(ui, tree, current, &mut self.commands));
        }
        if self.show_analysis && self.viewer.is_some() {
            egui::Panel::right("analysis")
                .default_size(300.0)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical().show(ui, |ui| {
                        analysis_ui(
                            ui,
                            &self.analysis,
                            self.viewer.as_ref().and_then(|v| v.analysis.as_ref()),
                            self.viewer.is_some(),
                            &mut self.commands,
                        );
                        if let Some(v) = &self.viewer {
                            ui.separator();
                            gaze_ui(ui, &mut self.gaze_panel, v, &mut self.commands);
                        }
                    });
                });
        }
        if self.show_tags
            && let Some(v) = &self.viewer
        {
            egui::Panel::right("tags")
                .default_size(460.0)
                .show(ui, |ui| {
                    ui.heading("DICOM attributes");
                    self.tag_browser.ui(ui, &v.loaded.tags);
                });
        }
        let path = self.draw_path();
        egui::CentralPanel::no_frame().show(ui, |ui| match &mut self.viewer {
            Some(v) => viewer_ui(ui, v, self.tool, path),
            None => {
                ui.centered_and_justified(|ui| {
                    ui.vertical_centered(|ui| {
                        ui.add_space(ui.available_height() / 3.0);
                        ui.heading("cxrlens");
                        ui.label(
                            "Drop a DICOM, PNG or JPEG file or a folder here, or use File > Open.",
                        );
                        if ui.button("Open sample study").clicked() {
                            self.commands.push(Command::OpenSample);
                        }
                    });
                });
            }
        });
        let ctx = ui.ctx().clone();
        self.path_entry_ui(&ctx);
        self.shortcuts_ui(&ctx);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, RECENT_KEY, &self.recent);
    }
}
