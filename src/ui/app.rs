//! `CxrApp`: the eframe application. Owns the worker pool, the open study and image, and the UI
//! state; applies `Command`s once per frame in `logic`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::analysis::{AnalysisPanel, ModelsStatus, analysis_ui};
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
use crate::worker::{WorkerEvent, Workers, WriteKind};

/// The sample study shipped in `assets/` (public NEMA WG-04 data, no identifiers; see assets/README.md).
pub const SAMPLE_DICOM: &[u8] = include_bytes!("../../assets/sample_chest.dcm");

// `CxrApp`'s methods by concern, one `impl CxrApp` block per file; start-up, opening files and the
// frame loop (`eframe::App`) stay here.
mod commands;
mod events;
mod export;
mod menus;
mod pacs;
mod results;
mod trainer_glue;

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
    /// File ▸ Export ▸ "Patient identifiers in reports" (off by default).
    report_identifiers: bool,
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
    pacs_panel: super::pacs_panel::PacsPanel,
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
            report_identifiers: false,
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
            pacs_panel: Default::default(),
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
        app.load_pacs_servers();
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

    /// The PACS window (tests configure a server through it).
    pub fn pacs_panel_mut(&mut self) -> &mut super::pacs_panel::PacsPanel {
        &mut self.pacs_panel
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

    /// Unpacks the bundled sample (on the write worker) and opens it when it is written.
    fn open_sample(&mut self) {
        let target = std::env::temp_dir().join("cxrlens-sample_chest.dcm");
        let path = target.clone();
        let job = move || {
            crate::io::write::write_atomically(&path, SAMPLE_DICOM).map_err(|e| e.to_string())
        };
        if let Err(e) = self.workers.write(WriteKind::Sample(target), job) {
            self.notices.error(e);
        }
    }

    /// A file write ended: finish what it was for, or say why it failed.
    fn written(&mut self, kind: WriteKind, result: Result<(), String>) {
        match (kind, result) {
            (WriteKind::Sample(path), Ok(())) => self.open(path, false),
            (WriteKind::Sample(_), Err(e)) => self
                .notices
                .error(format!("cannot unpack the sample study: {e}")),
            (WriteKind::Metrics(path), Ok(())) => {
                self.notices
                    .info(format!("metrics written to {}", path.display()));
                self.gaze_panel.last_export = Some(path);
            }
            (WriteKind::Metrics(path), Err(e)) => self
                .notices
                .error(format!("cannot write {}: {e}", path.display())),
            (WriteKind::Settings(choice), Ok(())) => {
                self.saved_backend = Some(choice);
                self.notices.info(format!(
                    "Compute backend set to {}; it takes effect when cxrlens next starts \
                     (--backend and CXRLENS_BACKEND still override it).",
                    choice.label()
                ));
            }
            (WriteKind::Settings(_), Err(e)) => self
                .notices
                .error(format!("Could not save the setting: {e}")),
            (WriteKind::Export(kind, path), Ok(())) => {
                self.notices
                    .info(format!("{} exported to {}", kind.label(), path.display()));
                if kind == crate::export::job::ExportKind::SecondaryCapture {
                    self.pacs_panel.last_sc = Some(path);
                }
            }
            (WriteKind::PacsServers, Ok(())) => {
                self.pacs_panel.dirty = false;
                self.notices.info("PACS servers saved.");
            }
            (WriteKind::PacsServers, Err(e)) => {
                self.notices.error(format!("PACS servers not saved: {e}"))
            }
            (WriteKind::Export(kind, _), Err(e)) => self
                .notices
                .error(format!("{} export failed: {e}", kind.label())),
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
        if self.pacs_panel.open {
            let ctx = ui.ctx().clone();
            self.pacs_panel.ui(&ctx, &mut self.commands);
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
