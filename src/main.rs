//! The `cxrlens` binary: logging, options, renderer choice, then the app from the library.

use std::process::ExitCode;

use clap::Parser;
use cxrlens::cli::{Cli, CliCommand, RendererChoice, inspect};
use cxrlens::{AppOptions, CxrApp};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Some(CliCommand::Inspect { file, repeat }) = &cli.command {
        return match inspect(file, *repeat) {
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
    let options = eframe::NativeOptions {
        renderer,
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
