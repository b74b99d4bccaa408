//! Every WGSL file parses and validates with naga, and the viewer shader produces the same bytes as
//! its CPU twin (`render::cpu`) on a real wgpu adapter (lavapipe in CI).

use cxrlens::render::twin_check::compare_with_cpu_twin;
use egui_wgpu::wgpu;

#[test]
fn every_wgsl_file_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let source = std::fs::read_to_string(&path).unwrap();
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            count += 1;
        }
    }
    assert!(count >= 1, "no shaders found");
}

fn device() -> Option<(wgpu::Device, wgpu::Queue)> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).ok()?;
    pollster::block_on(adapter.request_device(&Default::default())).ok()
}

/// Says on the terminal — not in the captured output, which a passing test hides — that a test
/// checked nothing.
fn skipped(test: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no wgpu adapter (CXRLENS_ALLOW_NO_GPU is set); nothing was compared"
    );
}

#[test]
fn shader_matches_cpu_twin() {
    let Some((device, queue)) = device() else {
        if std::env::var_os("CXRLENS_ALLOW_NO_GPU").is_some() {
            skipped("shader_matches_cpu_twin");
            return;
        }
        panic!("no wgpu adapter (install mesa-vulkan-drivers, or set CXRLENS_ALLOW_NO_GPU=1)");
    };
    let cases = compare_with_cpu_twin(&device, &queue).unwrap();
    assert_eq!(cases.len(), 12);
    assert!(cases.iter().any(|(name, _)| name.contains("zoom 0.4")));
    assert!(cases.iter().any(|(name, _)| name.starts_with("colour")));
    for (name, worst) in cases {
        eprintln!("{name}: up to {worst} levels apart");
        assert!(
            worst <= 1,
            "{name}: GPU and CPU differ by up to {worst} levels"
        );
    }
}

#[test]
fn textures_of_panes_no_longer_drawn_leave_the_gpu() {
    use std::sync::Arc;

    use cxrlens::imaging::voi::{DisplayParams, VoiMode};
    use cxrlens::imaging::{ScalarImage, Window};
    use cxrlens::render::gpu::{ViewerCallback, ViewerResources};
    use cxrlens::render::{ImageHandle, RenderSettings};

    let Some((device, queue)) = device() else {
        if std::env::var_os("CXRLENS_ALLOW_NO_GPU").is_some() {
            skipped("textures_of_panes_no_longer_drawn_leave_the_gpu");
            return;
        }
        panic!("no wgpu adapter (install mesa-vulkan-drivers, or set CXRLENS_ALLOW_NO_GPU=1)");
    };
    let pane = |id: u64, value: f32| ViewerCallback {
        pane_id: id,
        image: ImageHandle::new(Arc::new(ScalarImage::new(8, 8, vec![value; 64]).unwrap())),
        settings: RenderSettings {
            display: DisplayParams {
                voi: VoiMode::Window(Window::from_range(0.0, 100.0)),
                photometric_inverted: false,
                user_inverted: false,
            },
            luts: Arc::new(vec![]),
            overlays: [None, None],
            bilinear: false,
        },
        image_origin_points: [0.0, 0.0],
        zoom: 1.0,
        background: [0.0; 3],
    };
    let mut resources = ViewerResources::new(&device, wgpu::TextureFormat::Rgba8Unorm);
    let (main, compare) = (pane(0, 10.0), pane(1, 20.0));
    resources.prepare(&device, &queue, &main, 1.0);
    resources.prepare(&device, &queue, &compare, 1.0);
    resources.end_frame();
    let with_both = resources.texture_count();
    // The compare pane is closed: the next frame draws the main pane only.
    resources.prepare(&device, &queue, &main, 1.0);
    resources.end_frame();
    assert_eq!(
        resources.texture_count(),
        with_both - 1,
        "the closed pane's image texture is released"
    );
}
