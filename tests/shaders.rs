//! Every WGSL file parses and validates with naga, and the viewer shader produces the same bytes as
//! its CPU twin (`render::cpu`) on a real wgpu adapter (lavapipe in CI).

use std::sync::Arc;

use cxrlens::imaging::colormap::Colormap;
use cxrlens::imaging::composite::OverlayParams;
use cxrlens::imaging::voi::{DisplayParams, VoiMode};
use cxrlens::imaging::{ScalarImage, VoiFunction, VoiLut, Window};
use cxrlens::render::gpu::{ViewerCallback, render_offscreen};
use cxrlens::render::{ImageHandle, OverlayLayer, RenderSettings, cpu};
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

fn test_image() -> ScalarImage {
    // 15-bit ramp with structure, 37×23 (odd sizes catch row-padding mistakes).
    let (w, h) = (37u32, 23u32);
    let values = (0..w * h).map(|i| ((i * 977) % 32768) as f32).collect();
    ScalarImage::new(w, h, values).unwrap()
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
    let image = test_image();
    let (w, h) = (image.width, image.height);
    let heat =
        ScalarImage::new(w, h, (0..w * h).map(|i| (i % 50) as f32 / 49.0).collect()).unwrap();
    // A blob for the mask layer (fill and contour cases).
    let mask = ScalarImage::new(
        w,
        h,
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 - 18.0, (i / w) as f32 - 11.0);
                if x * x / 150.0 + y * y / 50.0 < 1.0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect(),
    )
    .unwrap();
    let lut = VoiLut::from_raw(
        1000,
        &(0..30000u32)
            .map(|i| ((i * 7) % 65536) as u16)
            .collect::<Vec<_>>(),
        16,
        None,
    )
    .unwrap();
    let window = |function| {
        VoiMode::Window(Window {
            center: 15000.0,
            width: 20000.0,
            function,
        })
    };
    let cases = [
        (window(VoiFunction::Linear), false, false, None),
        (window(VoiFunction::LinearExact), true, false, None),
        (window(VoiFunction::Sigmoid), true, true, None),
        (VoiMode::Lut(0), false, false, None),
        (
            window(VoiFunction::Linear),
            true,
            false,
            Some(OverlayParams {
                visible: true,
                opacity: 0.35,
                threshold: 0.2,
                contour: false,
            }),
        ),
        (
            window(VoiFunction::Linear),
            false,
            false,
            Some(OverlayParams {
                visible: true,
                opacity: 0.8,
                threshold: 0.5,
                contour: true,
            }),
        ),
    ];
    for (i, (voi, photometric_inverted, user_inverted, overlay)) in cases.into_iter().enumerate() {
        let settings = RenderSettings {
            display: DisplayParams {
                voi,
                photometric_inverted,
                user_inverted,
            },
            luts: Arc::new(vec![lut.clone()]),
            // Layer 0 (mask-like, solid colour) under layer 1 (heatmap), both from `params`.
            overlays: [
                overlay.map(|params| OverlayLayer {
                    heat: ImageHandle::new(Arc::new(mask.clone())),
                    params,
                    colormap: Colormap::Solid([0, 200, 255]),
                }),
                overlay.map(|params| OverlayLayer {
                    heat: ImageHandle::new(Arc::new(heat.clone())),
                    params: OverlayParams {
                        contour: false,
                        ..params
                    },
                    colormap: Colormap::Inferno,
                }),
            ],
            bilinear: true,
        };
        let expected = cpu::render_rgba(&image, &settings);
        let callback = ViewerCallback {
            pane_id: 0,
            image: ImageHandle::new(Arc::new(image.clone())),
            settings,
            image_origin_points: [0.0, 0.0],
            zoom: 1.0,
            background: [0.0, 0.0, 0.0],
        };
        let got = render_offscreen(&device, &queue, &callback, [w, h]).unwrap();
        assert_eq!(got.len(), expected.len());
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        assert!(
            worst <= 1,
            "case {i}: GPU and CPU differ by up to {worst} levels"
        );
    }
}
