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

#[test]
fn shader_matches_cpu_twin() {
    let Some((device, queue)) = device() else {
        if std::env::var_os("CXRLENS_ALLOW_NO_GPU").is_some() {
            eprintln!("no wgpu adapter; skipped because CXRLENS_ALLOW_NO_GPU is set");
            return;
        }
        panic!("no wgpu adapter (install mesa-vulkan-drivers, or set CXRLENS_ALLOW_NO_GPU=1)");
    };
    let cases = compare_with_cpu_twin(&device, &queue).unwrap();
    assert_eq!(cases.len(), 7);
    assert!(cases.iter().any(|(name, _)| name.starts_with("colour")));
    for (name, worst) in cases {
        eprintln!("{name}: up to {worst} levels apart");
        assert!(
            worst <= 1,
            "{name}: GPU and CPU differ by up to {worst} levels"
        );
    }
}
