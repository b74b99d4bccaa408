//! The Trainer tab, driven as a user would in an egui UI test: scan a tiny slice of the shared
//! data, start a run, stop it, resume it, and see the held-out evaluation, the curves, the files
//! and the new model offered beside the shipped ones.
//! Runs in its own process (its own XDG_DATA_HOME / XDG_CONFIG_HOME, `common::isolate_user_dirs`).

mod common;

use std::time::{Duration, Instant};

use cxrlens::ml::device::BackendChoice;
use cxrlens::ui::Command;
use cxrlens::ui::analysis::ModelsStatus;
use cxrlens::ui::app::Tab;
use cxrlens::{AppOptions, CxrApp};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

fn step_until(h: &mut Harness<'_, CxrApp>, what: &str, done: impl Fn(&CxrApp) -> bool) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for {what}"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
}

#[test]
fn trainer_tab_scans_trains_stops_resumes_and_offers_the_model() {
    // XDG_DATA_HOME and XDG_CONFIG_HOME point into this process's own folder.
    let home = common::isolate_user_dirs().join("data");
    let data = common::tiny_dataset(&home);

    let mut h = Harness::builder()
        .with_size([1400.0, 900.0])
        .build_eframe(|cc| {
            CxrApp::new(
                cc,
                AppOptions {
                    backend: BackendChoice::Flex,
                    ..Default::default()
                },
            )
        });
    step_until(&mut h, "the models", |a| {
        !matches!(a.analysis_panel().models, ModelsStatus::Loading)
    });
    h.state_mut().push_command(Command::ShowTab(Tab::Trainer));
    h.run_steps(2);
    assert_eq!(h.state().tab(), Tab::Trainer);

    // Scan: typed path, Scan button.
    h.state_mut().trainer_mut().data_text = data.display().to_string();
    h.run_steps(1);
    h.get_by_role_and_label(Role::Button, "Scan").click();
    h.run_steps(2);
    step_until(&mut h, "the scan", |a| a.trainer().scan.is_some());
    let scan = h.state().trainer().scan.clone().unwrap().expect("scan ok");
    assert_eq!(scan.images, 12);
    assert_eq!(scan.masks, 8);
    assert_eq!(scan.labels.len(), 2);
    assert!(
        h.query_all_by_label_contains("12 images of")
            .next()
            .is_some()
    );

    // Small, fast options (what a user would set in the grid).
    {
        let t = h.state_mut().trainer_mut();
        t.options.epochs = 40;
        t.options.input_size = 32;
        t.options.base_channels = 4;
        t.options.batch_size = 4;
        t.options.validation_fraction = 0.3;
        t.options.patience = None;
        t.options.name = "lung-test".into();
        t.options.version = "0.0.1".into();
        // From scratch: the tiny slice has two classes, the shipped lung model three.
        t.start_from = None;
        t.start_from_chosen = true;
    }
    h.get_by_role_and_label(Role::Button, "Start").click();
    h.run_steps(2);
    step_until(&mut h, "two epochs", |a| {
        a.trainer()
            .run
            .as_ref()
            .is_some_and(|r| r.epoch_points.len() >= 2)
    });
    // Mid-run: progress, curves and log are live.
    {
        let run = h.state().trainer().run.as_ref().unwrap();
        assert!(run.running);
        assert!(run.fraction > 0.0 && run.fraction < 1.0);
        assert!(!run.batch_loss.is_empty());
        assert_eq!(run.epoch_points[0].2, "Dice");
    }
    assert!(
        h.query_all_by_label_contains("% of 40 epochs")
            .next()
            .is_some()
    );
    h.get_by_role_and_label(Role::Button, "Stop").click();
    h.run_steps(2);
    step_until(&mut h, "the stop", |a| {
        a.trainer().run.as_ref().is_some_and(|r| !r.running)
    });
    let out_dir = h.state().trainer().out_dir();
    assert!(out_dir.starts_with(&home));
    assert!(
        out_dir.join("checkpoint.json").is_file(),
        "the checkpoint survives Stop"
    );
    assert!(h.state().trainer().report.is_none());
    assert!(out_dir.join("training.log").is_file());

    // Resume finishes the remaining epochs.
    h.get_by_role_and_label(Role::Button, "Resume").click();
    h.run_steps(2);
    step_until(&mut h, "the resumed run", |a| a.trainer().report.is_some());
    let report = h.state().trainer().report.clone().unwrap();
    assert_eq!(report.epochs_run, 40);
    assert_eq!(report.history.len(), 40);
    assert!(report.final_evaluation.dice.is_some());
    assert_eq!(report.final_evaluation.confusion.len(), 2);
    assert!(
        h.state()
            .trainer()
            .run
            .as_ref()
            .unwrap()
            .log
            .iter()
            .any(|l| l.starts_with("resuming after epoch"))
    );
    for f in [
        "weights.bpk",
        "config.json",
        "card.json",
        "MODEL_CARD.md",
        "evaluation.json",
        "evaluation.csv",
    ] {
        assert!(out_dir.join(f).is_file(), "missing {f}");
    }
    assert!(
        h.query_all_by_label_contains("Held-out evaluation")
            .next()
            .is_some()
    );
    assert!(
        h.query_all_by_label_contains("Confusion matrix")
            .next()
            .is_some()
    );

    // The new model is offered (and loaded) beside the shipped ones.
    step_until(&mut h, "the model reload", |a| {
        matches!(&a.analysis_panel().models, ModelsStatus::Ready(r)
            if r.available.iter().any(|m| m.dir == out_dir && !m.shipped))
    });
    match &h.state().analysis_panel().models {
        ModelsStatus::Ready(r) => {
            assert!(r.loaded.contains(&out_dir), "{:?}", r.loaded);
            assert!(
                r.available
                    .iter()
                    .any(|m| m.shipped && m.title.starts_with("pneumonia-effnet"))
            );
        }
        _ => unreachable!(),
    }
}
