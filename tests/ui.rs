//! egui UI tests: the real app, built by egui_kittest, opening a shared DICOM, dragging W/L,
//! toggling invert by its button and by key, applying presets, and reporting bad files.
//! No GPU is used here: the app takes its CPU rendering path, which is what these tests observe.

mod common;

use std::time::{Duration, Instant};

use common::dicom;
use cxrlens::imaging::voi::VoiMode;
use cxrlens::ml::device::BackendChoice;
use cxrlens::ui::Command;
use cxrlens::{AppOptions, CxrApp};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

fn harness(open: Option<std::path::PathBuf>) -> Harness<'static, CxrApp> {
    common::isolate_user_dirs();
    Harness::builder()
        .with_size([1200.0, 800.0])
        .build_eframe(move |cc| {
            CxrApp::new(
                cc,
                AppOptions {
                    open,
                    backend: BackendChoice::Flex,
                    ..Default::default()
                },
            )
        })
}

/// Steps the UI until `done` holds or the timeout passes (workers run on real threads).
fn step_until(h: &mut Harness<'_, CxrApp>, what: &str, done: impl Fn(&CxrApp) -> bool) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
}

fn window(app: &CxrApp) -> (f32, f32) {
    match app.viewer().unwrap().display.voi {
        VoiMode::Window(w) => (w.center, w.width),
        VoiMode::Lut(_) => panic!("expected a window"),
    }
}

#[test]
fn open_drag_window_level_and_invert() {
    let mut h = harness(Some(dicom("RG1_UNCR.dcm")));
    step_until(&mut h, "RG1 to decode", |a| a.viewer().is_some());
    step_until(&mut h, "the first CPU render", |a| {
        let v = a.viewer().unwrap();
        v.cpu_texture.as_ref().and_then(|t| t.rendered) == Some(v.settings_key())
    });
    let v = h.state().viewer().unwrap();
    assert!(v.display.photometric_inverted, "RG1 is MONOCHROME1");
    assert_eq!(
        window(h.state()),
        (15000.0, 30000.0),
        "the file's window is the default"
    );
    let panel = v.last_panel.expect("viewer drawn");

    // Left drag (W/L tool): 60 points right, 30 points down.
    let start = egui::pos2(panel.center().x, panel.center().y);
    h.event(egui::Event::PointerMoved(start));
    h.step();
    h.event(egui::Event::PointerButton {
        pos: start,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: Default::default(),
    });
    h.step();
    for i in 1..=6 {
        h.event(egui::Event::PointerMoved(
            start + egui::vec2(10.0 * i as f32, 5.0 * i as f32),
        ));
        h.step();
    }
    let end = start + egui::vec2(60.0, 30.0);
    h.event(egui::Event::PointerButton {
        pos: end,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: Default::default(),
    });
    h.step();
    let (center, width) = window(h.state());
    let range = 26479.0 - 874.0;
    let per_point = range / 600.0;
    assert!(
        width > 30000.0 && center > 15000.0,
        "drag right/down must widen and raise: C {center} W {width}"
    );
    // The drag may lose a few points to egui's drag threshold.
    assert!(
        (width - (30000.0 + 60.0 * per_point)).abs() < 8.0 * per_point,
        "W {width}"
    );
    assert!(
        (center - (15000.0 + 30.0 * per_point)).abs() < 8.0 * per_point,
        "C {center}"
    );
    assert_eq!(h.state().viewer().unwrap().active_preset, None);

    // Invert by the toolbar button; the CPU texture is re-rendered with it.
    h.get_by_role_and_label(Role::Button, "Invert").click();
    // The click queues a command, applied at the start of the next frame.
    h.run_steps(2);
    assert!(h.state().viewer().unwrap().display.user_inverted);
    step_until(&mut h, "the inverted render", |a| {
        let v = a.viewer().unwrap();
        v.cpu_texture.as_ref().and_then(|t| t.rendered) == Some(v.settings_key())
    });
    // And back with the I key.
    h.key_press(egui::Key::I);
    h.step();
    assert!(!h.state().viewer().unwrap().display.user_inverted);

    // Preset 1 restores the file window.
    h.key_press(egui::Key::Num1);
    h.step();
    assert_eq!(window(h.state()), (15000.0, 30000.0));
    assert_eq!(h.state().viewer().unwrap().active_preset, Some(0));
}

#[test]
fn bad_file_shows_a_clear_error_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("report.dcm");
    std::fs::write(&bad, "not an image at all ".repeat(20)).unwrap();
    let mut h = harness(Some(bad));
    step_until(&mut h, "the error", |a| !a.notices().items.is_empty());
    assert!(h.state().viewer().is_none());
    let text = &h.state().notices().items[0].text;
    assert!(text.contains("not a DICOM file"), "{text}");
    assert!(
        h.query_by_label_contains("not a DICOM file").is_some(),
        "error must be on screen"
    );
    // The app still opens a good file afterwards.
    h.state_mut()
        .push_command(Command::Open(dicom(common::RSNA)));
    step_until(&mut h, "RSNA to decode", |a| a.viewer().is_some());
}

#[test]
fn folder_becomes_a_study_browser() {
    let dir = tempfile::tempdir().unwrap();
    for name in [common::RSNA, common::SIIM] {
        std::fs::copy(dicom(name), dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("README.txt"), "not an image").unwrap();
    let mut h = harness(Some(dir.path().to_path_buf()));
    step_until(&mut h, "the scan and first image", |a| {
        a.study().is_some() && a.viewer().is_some()
    });
    let tree = h.state().study().unwrap();
    assert_eq!(tree.image_count(), 2);
    assert!(tree.problems.is_empty(), "{:?}", tree.problems);
    // The two files are different studies.
    assert_eq!(tree.studies.len(), 2);
    let first = h.state().viewer().unwrap().path.clone();
    h.key_press(egui::Key::PageDown);
    step_until(&mut h, "the next image", |a| {
        a.viewer().is_some_and(|v| v.path != first)
    });
}

#[test]
fn analyze_shows_probabilities_mask_and_heatmap_layers() {
    use cxrlens::ui::analysis::ModelsStatus;
    // A child's radiograph with bacterial pneumonia from the classifier's held-out test patients:
    // inside both models' training domains, so nothing is withheld.
    let mut h = harness(Some(common::kermany_test_image()));
    step_until(&mut h, "the image to decode", |a| a.viewer().is_some());
    step_until(&mut h, "the models to load", |a| {
        !matches!(a.analysis_panel().models, ModelsStatus::Loading)
    });
    match &h.state().analysis_panel().models {
        ModelsStatus::Ready(r) => assert!(r.models.len() >= 2, "{:?}", r.models),
        other => panic!("models not ready: {other:?}"),
    }
    // No overlay before the user asks for one.
    assert!(
        h.state()
            .viewer()
            .unwrap()
            .layers()
            .iter()
            .all(Option::is_none)
    );
    h.get_by_role_and_label(Role::Button, "Analyze (A)").click();
    h.run_steps(2);
    step_until(&mut h, "the analysis", |a| {
        a.viewer().unwrap().analysis.is_some()
    });
    let v = h.state().viewer().unwrap();
    let [mask, heat] = v.layers();
    let (mask, heat) = (mask.expect("a mask layer"), heat.expect("a heatmap layer"));
    assert!(mask.params.visible && heat.params.visible);
    assert_eq!(heat.handle.image.width, v.handle.image.width);
    assert_eq!(mask.handle.image.height, v.handle.image.height);
    // The probabilities are shown under each model's name and version.
    assert!(
        h.query_all_by_label_contains("lung-unet 1.")
            .next()
            .is_some()
    );
    assert!(
        h.query_all_by_label_contains("pneumonia-effnet 1.")
            .next()
            .is_some()
    );
    assert!(h.query_all_by_label_contains("pneumonia").next().is_some());
    // The operating point from the card, and the layer Grad-CAM explains.
    assert!(
        h.query_all_by_label_contains("at the operating point")
            .next()
            .is_some()
    );
    assert!(h.query_all_by_label_contains("conv_head").next().is_some());
    assert!(
        h.query_all_by_label_contains("Outside the training data")
            .next()
            .is_none()
    );
    // Opacity changes the layer (a uniform on the GPU path), not the heatmap pixels.
    let key_before = v.settings_key();
    let heat_id = heat.handle.id;
    let mut params = heat.params;
    params.opacity = 0.9;
    let colormap = heat.colormap;
    h.state_mut().push_command(Command::SetLayer {
        index: 1,
        params,
        colormap,
    });
    h.run_steps(2);
    let v = h.state().viewer().unwrap();
    let heat = v.layers()[1].unwrap();
    assert_eq!(heat.params.opacity, 0.9);
    assert_eq!(
        heat.handle.id, heat_id,
        "the heatmap was recomputed for an opacity change"
    );
    assert_ne!(v.settings_key(), key_before);
}

/// Opens `path`, waits for the models and runs Analyze.
fn analysed(path: std::path::PathBuf) -> Harness<'static, CxrApp> {
    use cxrlens::ui::analysis::ModelsStatus;
    let mut h = harness(Some(path));
    step_until(&mut h, "the image to decode", |a| a.viewer().is_some());
    step_until(&mut h, "the models to load", |a| {
        !matches!(a.analysis_panel().models, ModelsStatus::Loading)
    });
    h.get_by_role_and_label(Role::Button, "Analyze (A)").click();
    h.run_steps(2);
    step_until(&mut h, "the analysis", |a| {
        a.viewer().unwrap().analysis.is_some()
    });
    h
}

#[test]
fn an_adult_radiograph_keeps_the_lung_mask_and_withholds_the_paediatric_classifier() {
    let mut h = analysed(dicom(common::RSNA));
    let v = h.state().viewer().unwrap();
    let [mask, heat] = v.layers();
    assert!(
        mask.is_some(),
        "the lung network's gate passes an adult radiograph"
    );
    assert!(
        heat.is_none(),
        "the classifier's Grad-CAM is drawn before the user asked"
    );
    assert!(v.analysis.as_ref().unwrap().withheld.heatmap.is_some());
    assert!(
        h.query_all_by_label_contains("Outside the training data")
            .next()
            .is_some()
    );
    assert!(
        h.query_all_by_label_contains("hidden: outside its training data")
            .next()
            .is_some()
    );
    h.get_by_role_and_label(Role::Button, "Show results anyway")
        .click();
    h.run_steps(2);
    let v = h.state().viewer().unwrap();
    assert!(v.layers()[1].is_some(), "revealed Grad-CAM");
    assert!(
        h.query_all_by_label_contains("Results shown at your request")
            .next()
            .is_some()
    );
}

#[test]
fn a_ct_slice_is_refused_with_every_result_withheld() {
    let h = analysed(common::shared_data().join("dicom-zoo/CT_small.dcm"));
    let v = h.state().viewer().unwrap();
    assert!(
        v.layers().iter().all(Option::is_none),
        "a layer is drawn on a CT slice"
    );
    assert!(
        h.query_all_by_label_contains("Not a frontal chest radiograph")
            .next()
            .is_some()
    );
    assert!(
        h.query_all_by_label_contains("hidden: not a chest radiograph")
            .next()
            .is_some()
    );
}

#[test]
fn compare_view_with_simulated_gaze_shows_panes_metrics_and_exports_csv() {
    use cxrlens::ui::state::{PaneContent, RegionChoice};
    let mut h = analysed(dicom(common::RSNA));
    // An adult image: the (paediatric) classifier's map is withheld until the user asks.
    h.state_mut().push_command(Command::RevealAnalysis);
    h.run_steps(2);
    assert!(!h.state().viewer().unwrap().compare.enabled);
    h.get_by_role_and_label(Role::Button, "Simulate a reading")
        .click();
    h.run_steps(2);
    step_until(&mut h, "the gaze heatmap and metrics", |a| {
        a.viewer()
            .unwrap()
            .gaze
            .as_ref()
            .is_some_and(|g| !g.computing && !g.rows.is_empty())
    });
    let v = h.state().viewer().unwrap();
    let g = v.gaze.as_ref().unwrap();
    assert!(g.recording.simulated);
    // The simulated label is on screen, not only in the data.
    assert!(
        h.query_all_by_label_contains("SIMULATED gaze")
            .next()
            .is_some()
    );
    // Loading gaze opens the compare view: four panes, gaze / explanation / saliency / difference.
    assert!(v.compare.enabled);
    let panes = v.panes();
    assert_eq!(panes.len(), 4);
    assert_eq!(panes[0].content, Some(PaneContent::Gaze));
    let gaze_layer = panes[0].overlays[1]
        .as_ref()
        .expect("gaze heatmap in pane 1");
    assert_eq!(
        (
            gaze_layer.handle.image.width,
            gaze_layer.handle.image.height
        ),
        (v.handle.image.width, v.handle.image.height)
    );
    assert!(panes[1].overlays[1].is_some(), "explanation in pane 2");
    assert!(panes[2].note.as_deref().unwrap_or("").contains("saliency"));
    assert!(panes[3].overlays[0].is_some() && panes[3].overlays[1].is_some());
    // Every metric of the explanation against the gaze is there and finite (values are checked by
    // hand in tests/gaze.rs).
    for metric in ["KL", "CC", "HS", "SIM", "NSS", "AUC-Judd"] {
        let row = g
            .rows
            .iter()
            .find(|r| r.metric == metric && r.map.starts_with("Grad-CAM"))
            .unwrap_or_else(|| panic!("no {metric} row"));
        assert!(row.value.is_some_and(f64::is_finite), "{row:?}");
    }
    assert!(
        g.rows
            .iter()
            .any(|r| r.metric == "EHR-AUC" && r.reference == "predicted lung mask")
    );
    // Each pane gets its own CPU texture, rendered with its own overlays.
    step_until(&mut h, "all four pane textures", |a| {
        let v = a.viewer().unwrap();
        v.panes().iter().all(|p| {
            v.pane_textures[p.id as usize - 1]
                .as_ref()
                .and_then(|t| t.rendered)
                == Some(v.key_for(p.id, &p.overlays))
        })
    });
    // Zoom is shared: one view transform for every pane.
    let zoom = h.state().viewer().unwrap().view.zoom;
    h.state_mut().push_command(Command::OneToOne);
    h.run_steps(2);
    assert_ne!(h.state().viewer().unwrap().view.zoom, zoom);

    // Two panes; the drawn-box region switches to the Region tool until a box exists.
    h.state_mut().push_command(Command::SetPaneCount(2));
    h.state_mut()
        .push_command(Command::SetRegion(RegionChoice::DrawnBox));
    h.run_steps(2);
    assert_eq!(h.state().viewer().unwrap().panes().len(), 2);
    assert_eq!(h.state().tool(), cxrlens::ui::Tool::Region);

    // Export the table.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("metrics.csv");
    h.state_mut()
        .push_command(Command::ExportMetrics(out.clone()));
    // Written on the write worker; the panel remembers the file once it is on disk.
    step_until(&mut h, "the metrics export", |app| {
        app.gaze_panel().last_export.as_deref() == Some(out.as_path())
    });
    let text = std::fs::read_to_string(&out).expect("the CSV was written");
    assert!(
        text.starts_with("map,reference,metric,value,note\n"),
        "{text}"
    );
    assert!(text.contains(",KL,") && text.contains(",EHR-AUC,"));

    // File ▸ Export without the dialogs: the report (identifiers asked for) and the view as PNG.
    use cxrlens::export::job::{ExportChoice, ExportKind};
    let report = dir.path().join("report.html");
    let view_png = dir.path().join("view.png");
    h.state_mut()
        .push_command(Command::SetReportIdentifiers(true));
    h.state_mut().push_command(Command::ExportTo(
        ExportChoice {
            kind: ExportKind::Report,
            screen: false,
        },
        report.clone(),
    ));
    step_until(&mut h, "the report", |_| report.is_file());
    // The report's notice changes the layout: take the panel once it has settled.
    h.run_steps(4);
    let panel = h.state().viewer().unwrap().last_panel.unwrap();
    h.state_mut().push_command(Command::ExportTo(
        ExportChoice {
            kind: ExportKind::Png,
            screen: true,
        },
        view_png.clone(),
    ));
    step_until(&mut h, "the view PNG", |_| view_png.is_file());
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("SIMULATED reading"), "gaze section missing");
    assert!(html.contains("EHR-AUC") && html.contains("Research use"));
    // The identifiers the user asked for: the RSNA file's Patient ID, read with another reader.
    let patient_id = std::process::Command::new("dcmdump")
        .args(["+P", "0010,0020"])
        .arg(dicom(common::RSNA))
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&patient_id.stdout).into_owned();
    let id = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
    assert!(html.contains(id), "patient ID {id} not in the report");
    // The view PNG is the compare view's panel at screen resolution (not the image's size).
    let png = image::open(&view_png).unwrap();
    let ppp = h.ctx.pixels_per_point();
    assert_eq!(
        (png.width(), png.height()),
        (
            (panel.size.x * ppp).round() as u32,
            (panel.size.y * ppp).round() as u32
        )
    );
}

#[test]
fn a_gaze_file_for_another_image_is_reported_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let header = std::fs::read_to_string(
        common::shared_data().join("gaze-formats/egd-cxr_headers/fixations.csv.header"),
    )
    .unwrap();
    let n = header.trim().split(',').count();
    let mut row = vec!["0".to_string(); n];
    row[2] = "some-other-dicom".into();
    let file = dir.path().join("fixations.csv");
    std::fs::write(&file, format!("{}\n{}\n", header.trim(), row.join(","))).unwrap();
    let mut h = harness(Some(dicom(common::RSNA)));
    step_until(&mut h, "the RSNA image to decode", |a| a.viewer().is_some());
    h.state_mut().push_command(Command::LoadGaze(file));
    h.run_steps(2);
    step_until(&mut h, "the import", |a| !a.is_busy());
    assert!(h.state().viewer().unwrap().gaze.is_none());
    let notices: Vec<String> = h
        .state()
        .notices()
        .items
        .iter()
        .map(|n| n.text.clone())
        .collect();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("some-other-dicom") && n.contains("matches no open image")),
        "{notices:?}"
    );
    assert!(
        h.state().gaze_panel().problems[0].contains("fixations.csv line 2, column DICOM_ID"),
        "{:?}",
        h.state().gaze_panel().problems
    );
}

#[test]
fn compute_backend_menu_saves_the_setting_and_start_up_problems_are_shown() {
    common::isolate_user_dirs();
    let dir = std::env::temp_dir().join(format!("cxrlens-ui-settings-{}", std::process::id()));
    let path = dir.join("cxrlens/settings.json");
    let app_path = path.clone();
    let mut h = Harness::builder()
        .with_size([1200.0, 800.0])
        .build_eframe(move |cc| {
            CxrApp::new(
                cc,
                AppOptions {
                    backend: BackendChoice::Flex,
                    settings_path: Some(app_path.clone()),
                    startup_notes: vec!["settings.json: not a cxrlens settings file".into()],
                    ..Default::default()
                },
            )
        });
    h.step();
    assert!(
        h.query_by_label_contains("not a cxrlens settings file")
            .is_some(),
        "the start-up problem is not shown"
    );
    h.get_by_label("View").click();
    h.step();
    h.step();
    assert!(
        h.query_by_label("Fit (F)").is_some(),
        "View menu did not open"
    );
    h.get_by_label("Compute backend").hover();
    h.step();
    h.step();
    h.get_by_label("flex (CPU)").click();
    // The setting is written on the write worker: step until it is on disk.
    let start = Instant::now();
    let saved = loop {
        h.step();
        if let Some(s) = cxrlens::ml::device::load_settings(&path).unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the setting was not saved"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(saved.backend, BackendChoice::Flex);
    h.step();
    h.step();
    assert!(
        h.query_by_label_contains("takes effect when cxrlens next starts")
            .is_some()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
