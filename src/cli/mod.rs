//! Command-line interface: open the GUI on a path, or work headless — `inspect` a file, `analyze`
//! it with the bundled models, `train` a model, `bench-backends`, `gaze` (simulate, compare, bench). Every subcommand exits non-zero
//! with a message for input it cannot use.

pub mod gaze;
pub mod ml;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use crate::imaging::voi::VoiMode;

#[derive(Debug, Parser)]
#[command(
    name = "cxrlens",
    version,
    about = "Chest X-ray viewer with explainable AI"
)]
pub struct Cli {
    /// DICOM/PNG/JPEG file, folder or DICOMDIR to open.
    pub path: Option<PathBuf>,
    /// Renderer: wgpu (default when an adapter exists) or glow (OpenGL, CPU windowing).
    #[arg(long, value_enum, default_value_t = RendererChoice::Auto)]
    pub renderer: RendererChoice,
    /// Compute backend for the networks: auto (wgpu on a real GPU, else the flex CPU backend),
    /// flex, wgpu or ndarray (a slower CPU reference). Also settable with CXRLENS_BACKEND.
    #[arg(long, global = true)]
    pub backend: Option<String>,
    /// Run Analyze on the opened image as soon as the models are loaded.
    #[arg(long)]
    pub analyze: bool,
    /// Show this frame (1-based) of a multi-frame image once it is open.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub frame: Option<u32>,
    /// Load this gaze recording (EGD-CXR or REFLACX fixations.csv) for the opened image.
    #[arg(long)]
    pub gaze: Option<PathBuf>,
    /// Show a simulated gaze reading of the opened image (demo; labelled simulated).
    #[arg(long)]
    pub simulate_gaze: bool,
    /// Open the Trainer tab on this dataset folder (scanned at start).
    #[arg(long)]
    pub trainer: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

#[derive(Debug, Subcommand)]
pub enum OodCommand {
    /// Fit the Mahalanobis gate of a bundle: mean and shrunk covariance of its pooled features
    /// on the training split, threshold at a percentile of the validation split; measured on the
    /// held-out split and on --other folders; written into the bundle and its card.
    Fit(ml::OodFitArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RendererChoice {
    Auto,
    Wgpu,
    Glow,
}

/// Parsed once at start-up, so the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Decode a file without the GUI and print what the viewer would use (no patient identifiers).
    Inspect {
        file: PathBuf,
        /// Decode this many times and report the median time.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Which frame (1-based) of a multi-frame image.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        frame: u32,
    },
    /// Run the bundled models on a file: lung mask, class probabilities, an explanation.
    Analyze(ml::AnalyzeArgs),
    /// Train a model on a local dataset folder (labels.csv, images/, masks/).
    Train(ml::TrainArgs),
    /// Evaluate a bundle on held-out patients (its test or validation split) or on every image of an
    /// external folder (--all): AUC with CI, confusion, operating point, Dice at image resolution.
    Eval(ml::EvalArgs),
    /// Time forward, forward+backward and (--train-step) a training step of a network on each
    /// available backend (scripts/reference/bench_train.py compares them with PyTorch).
    BenchBackends(ml::BenchArgs),
    /// Time a whole analysis (lung mask, class probabilities, explanation, out-of-distribution
    /// gate) of a large radiograph with the shipped models, per step.
    BenchAnalysis(ml::BenchAnalysisArgs),
    /// Check the wgpu backend (or, with --candidate ndarray, burn's other CPU backend) against the
    /// flex CPU backend (outputs, input and weight gradients, Grad-CAM), and with wgpu the viewer
    /// shader against its CPU twin on the device burn created.
    CheckBackends(ml::CheckArgs),
    /// Out-of-distribution gate: fit a bundle's gate on its training data (`ood fit`).
    Ood {
        #[command(subcommand)]
        command: OodCommand,
    },
    /// Eye gaze: simulate a reading, compare a recording with the models' maps, time the heatmaps.
    Gaze {
        #[command(subcommand)]
        command: gaze::GazeCommand,
    },
}

/// Runs `inspect`; returns the report or a message for the user.
pub fn inspect(file: &std::path::Path, repeat: usize, frame: u32) -> Result<String, String> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let loaded = crate::io::load_image_frame(file, frame.saturating_sub(1))
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        last = Some(loaded);
    }
    let Some(loaded) = last else {
        return Err("nothing decoded".into());
    };
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let info = &loaded.info;
    let mut out = String::new();
    out += &format!("format:        {}\n", info.format.label());
    out += &format!(
        "size:          {} x {}\n",
        loaded.image.width, loaded.image.height
    );
    out += &format!("photometric:   {}\n", info.photometric);
    out += &format!(
        "frame:         {} of {}\n",
        loaded.frame + 1,
        info.number_of_frames
    );
    out += &format!(
        "bits:          {} stored / {} allocated{}\n",
        info.bits_stored,
        info.bits_allocated,
        if info.signed { ", signed" } else { "" }
    );
    out += &format!(
        "rescale:       slope {} intercept {}\n",
        info.rescale_slope, info.rescale_intercept
    );
    out += &format!(
        "values:        min {} max {}\n",
        loaded.stats.min, loaded.stats.max
    );
    for (w, e) in &info.windows {
        out += &format!(
            "window:        C {} W {} {} {}\n",
            w.center,
            w.width,
            w.function.label(),
            e.as_deref().unwrap_or("")
        );
    }
    out += &format!("VOI LUTs:      {}\n", info.voi_luts.len());
    out += &format!("calibration:   {}\n", info.calibration.source_label());
    for line in &info.unusable_attributes {
        out += &format!("ignored:       {line}\n");
    }
    let presets = loaded.presets();
    if let Some(VoiMode::Window(w)) = presets.first().map(|p| p.voi) {
        out += &format!("default VOI:   C {} W {}\n", w.center, w.width);
    }
    out += &format!(
        "decode time:   {median:.1} ms (median of {})\n",
        times.len()
    );
    Ok(out)
}
