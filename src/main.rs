//! The `cxrlens` binary: logging, options, renderer choice, then the app from the library.

use std::process::ExitCode;

use clap::Parser;
use cxrlens::cli::{Cli, CliCommand, OodCommand, RendererChoice, gaze, inspect, ml};
use cxrlens::ml::device::{BackendChoice, probe_adapter, select};
use cxrlens::{AppOptions, CxrApp};

fn main() -> ExitCode {
    // Before any thread allocates: tensor buffers are reused between steps, not remapped.
    cxrlens::ml::memory::keep_freed_buffers();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        let backend = cli.backend.as_deref();
        let result = match command {
            CliCommand::Inspect {
                file,
                repeat,
                frame,
            } => inspect(file, *repeat, *frame),
            CliCommand::Analyze(args) => match ml::run_analyze(args, backend) {
                // Exit status 3: analysed, but outside the models' training data (results hidden).
                Ok(outcome) => {
                    print!("{}", outcome.text);
                    return if outcome.interrupted {
                        ExitCode::from(130)
                    } else if outcome.flagged {
                        ExitCode::from(3)
                    } else {
                        ExitCode::SUCCESS
                    };
                }
                Err(e) => Err(e),
            },
            CliCommand::Train(args) => ml::run_train(args, backend),
            CliCommand::BenchBackends(args) => ml::run_bench(args),
            CliCommand::BenchAnalysis(args) => ml::run_bench_analysis(args, backend),
            CliCommand::CheckBackends(args) => ml::run_check(args),
            CliCommand::Eval(args) => ml::run_eval(args),
            CliCommand::Ood {
                command: OodCommand::Fit(args),
            } => ml::run_ood_fit(args),
            CliCommand::Gaze { command } => gaze::run(command, backend),
        };
        return match result {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cxrlens: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(path) = &cli.path
        && !path.exists()
    {
        eprintln!("cxrlens: no such file or folder: {}", path.display());
        return ExitCode::FAILURE;
    }

    // The compute device first: on a real GPU burn creates the wgpu device and the window
    // renderer reuses it (eframe's own device lacks features burn's kernels need).
    // Flag, then CXRLENS_BACKEND, then the setting saved from View > Compute backend, then Auto.
    let settings_path = cxrlens::ml::device::settings_path();
    let mut startup_notes = Vec::new();
    let saved = match settings_path
        .as_deref()
        .map(cxrlens::ml::device::load_settings)
    {
        Some(Ok(s)) => s.map(|s| s.backend),
        Some(Err(e)) => {
            startup_notes.push(format!("{e}; the saved compute setting is ignored"));
            None
        }
        None => None,
    };
    let env = std::env::var("CXRLENS_BACKEND").ok();
    let choice = match cxrlens::ml::device::effective_choice(
        cli.backend.as_deref(),
        env.as_deref(),
        saved,
    ) {
        Ok((c, _)) => c,
        Err(e) => {
            eprintln!("cxrlens: {e}");
            return ExitCode::FAILURE;
        }
    };
    let adapter = if matches!(choice, BackendChoice::Flex | BackendChoice::NdArray) {
        None
    } else {
        probe_adapter()
    };
    let (compute, shared_wgpu) = match select(choice, adapter.as_ref()) {
        Ok((c, s)) => (Some(c), s),
        Err(e) => {
            eprintln!("cxrlens: {e}");
            return ExitCode::FAILURE;
        }
    };

    // Probe for a wgpu adapter first: winit's event loop cannot be created twice in one process, so a
    // failed wgpu start could not fall back to glow afterwards.
    let (renderer, note) = match cli.renderer {
        RendererChoice::Wgpu => (eframe::Renderer::Wgpu, None),
        RendererChoice::Glow => (
            eframe::Renderer::Glow,
            Some("Renderer: OpenGL (glow), windowing on the CPU.".to_string()),
        ),
        RendererChoice::Auto => match cxrlens::render::probe::wgpu_adapter() {
            Some(_) => (eframe::Renderer::Wgpu, None),
            None => (
                eframe::Renderer::Glow,
                Some(
                    "No wgpu adapter found: using OpenGL (glow) with windowing on the CPU."
                        .to_string(),
                ),
            ),
        },
    };
    let mut wgpu_options = egui_wgpu::WgpuConfiguration::default();
    if let (Some(setup), eframe::Renderer::Wgpu) = (shared_wgpu, renderer) {
        wgpu_options.wgpu_setup = egui_wgpu::WgpuSetup::Existing(egui_wgpu::WgpuSetupExisting {
            instance: setup.instance,
            adapter: setup.adapter,
            device: setup.device,
            queue: setup.queue,
        });
    }
    let options = eframe::NativeOptions {
        renderer,
        wgpu_options,
        viewport: egui::ViewportBuilder::default()
            .with_title("cxrlens")
            .with_app_id("cxrlens")
            .with_inner_size([1280.0, 860.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    let app_options = AppOptions {
        open: cli.path.clone(),
        renderer_note: note,
        startup_notes,
        settings_path,
        compute,
        backend: choice,
        analyze_on_open: cli.analyze,
        frame_on_open: cli.frame.map(|f| f - 1),
        gaze_on_open: cli.gaze.clone(),
        simulate_gaze: cli.simulate_gaze,
        trainer_data: cli.trainer.clone(),
    };
    match eframe::run_native(
        "cxrlens",
        options,
        Box::new(move |cc| Ok(Box::new(CxrApp::new(cc, app_options)))),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cxrlens: cannot start the window: {e}");
            eprintln!("Try `--renderer glow`, or check that a display (X11/Wayland) is available.");
            ExitCode::FAILURE
        }
    }
}
