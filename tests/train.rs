//! Training end to end on a tiny slice of the shared data (CPU, seconds): the bundle it writes
//! loads and runs; a run killed with SIGKILL resumes from its last checkpoint; a bad starting
//! bundle is refused with a clear message.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cxrlens::ml::bundle::{BundleInfo, LoadedModel, ModelKind, load_bundle};
use cxrlens::ml::device::{BackendChoice, select};
use cxrlens::ml::train::{TrainOptions, TrainProgress, train};

const TINY: [&str; 10] = [
    "--size",
    "32",
    "--base-channels",
    "4",
    "--batch-size",
    "4",
    "--validation-fraction",
    "0.3",
    "--seed",
    "3",
];

fn tiny_options(epochs: usize) -> TrainOptions {
    let mut o = TrainOptions::new(ModelKind::Lung);
    o.epochs = epochs;
    o.input_size = 32;
    o.base_channels = 4;
    o.batch_size = 4;
    o.validation_fraction = 0.3;
    o.seed = 3;
    o
}

#[test]
fn a_tiny_lung_training_run_writes_a_bundle_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(dir.path());
    let out = dir.path().join("model");
    let (compute, _) = select(BackendChoice::Flex, None).unwrap();
    let mut epochs_seen = Vec::new();
    let report = train(
        &data,
        &tiny_options(2),
        &compute,
        &out,
        &mut |p| {
            if let TrainProgress::Epoch { epoch, .. } = p {
                epochs_seen.push(epoch);
            }
        },
        &AtomicBool::new(false),
    )
    .expect("training runs");
    assert_eq!(epochs_seen, vec![1, 2]);
    assert_eq!(report.epochs_run, 2);
    assert_eq!(report.class_names.len(), 2);
    assert!(report.validation_images >= 1 && report.train_images >= 6);
    let dice = report.final_evaluation.dice.expect("a validation Dice");
    assert!((0.0..=1.0).contains(&dice));
    for f in [
        "config.json",
        "weights.bpk",
        "card.json",
        "MODEL_CARD.md",
        "training-report.json",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    assert!(
        !out.join("checkpoint.json").exists(),
        "checkpoint left behind"
    );
    let info = BundleInfo::open(&out, false).unwrap();
    assert_eq!(info.card.epochs, 2);
    match load_bundle(&info, &compute.device).unwrap() {
        LoadedModel::Lung(_, config) => assert_eq!(config.input_size, 32),
        _ => panic!("not a lung bundle"),
    }
}

#[test]
fn a_run_killed_with_sigkill_resumes_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(dir.path());
    let out = dir.path().join("model");
    let epochs = 40;
    let run = |resume: bool| {
        common::isolate_user_dirs();
        let mut c = Command::new(env!("CARGO_BIN_EXE_cxrlens"));
        c.args(["--backend", "flex", "train", "--model", "lung", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(["--epochs", &epochs.to_string()])
            .args(TINY);
        if resume {
            c.arg("--resume");
        }
        c
    };
    let mut child = run(false).spawn().unwrap();
    // Kill it (SIGKILL) once at least two epochs are committed.
    let checkpoint = out.join("checkpoint.json");
    let start = Instant::now();
    let done_before_kill = loop {
        if let Ok(text) = std::fs::read_to_string(&checkpoint)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && v["epochs_done"].as_u64().unwrap_or(0) >= 2
        {
            child.kill().unwrap();
            child.wait().unwrap();
            break v["epochs_done"].as_u64().unwrap() as usize;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no checkpoint after 300 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(done_before_kill < epochs);
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();

    let output = run(true).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let resumed_at = before["epochs_done"].as_u64().unwrap();
    assert!(
        stderr.contains(&format!("resuming after epoch {resumed_at} of {epochs}")),
        "{stderr}"
    );
    // Only the remaining epochs ran in the second process.
    assert!(!stderr.contains("epoch 1/"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["epochs_run"].as_u64(), Some(epochs as u64));
    let history = report["history"].as_array().unwrap();
    assert_eq!(history.len(), epochs);
    // The epochs from before the kill are kept as they were.
    for (i, h) in before["history"].as_array().unwrap().iter().enumerate() {
        assert_eq!(&history[i], h);
    }
    assert!(!checkpoint.exists());

    // Different options do not silently resume someone else's run.
    let mut child = run(false).spawn().unwrap();
    let start = Instant::now();
    while !checkpoint.exists() {
        assert!(start.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let output = run(true).args(["--lr", "0.01"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("different options"));
}

#[test]
fn fine_tuning_refuses_a_bundle_of_another_kind() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(dir.path());
    let (compute, _) = select(BackendChoice::Flex, None).unwrap();
    let mut options = tiny_options(1);
    options.init_from =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/pneumonia-effnet"));
    let err = train(
        &data,
        &options,
        &compute,
        &dir.path().join("m"),
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("holds a classifier, not a lung network"),
        "{err}"
    );
}

#[test]
fn fine_tuning_improves_the_held_out_dice_of_its_starting_weights() {
    // Real images and masks: the first 40 masked images of cxr-ieee8023 plus 8 of other labels.
    let dir = tempfile::tempdir().unwrap();
    let root = common::shared_data().join("cxr-ieee8023");
    let text = std::fs::read_to_string(root.join("labels.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let (mut masked, mut others) = (Vec::new(), Vec::new());
    for r in reader.records() {
        let r = r.unwrap();
        let abs = |p: &str| {
            if p.is_empty() {
                String::new()
            } else {
                root.join(p).display().to_string()
            }
        };
        let row = format!(
            "{},{},{},{},{}",
            &r[0],
            abs(&r[1]),
            abs(&r[2]),
            &r[3],
            &r[6]
        );
        if !r[2].is_empty() && masked.len() < 40 {
            masked.push(row);
        } else if r[2].is_empty() && &r[3] != "covid19" && others.len() < 8 {
            others.push(row);
        }
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("labels.csv"),
        format!(
            "id,image,mask,label,patient_id\n{}\n",
            masked
                .iter()
                .chain(&others)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ),
    )
    .unwrap();
    let (compute, _) = select(BackendChoice::Flex, None).unwrap();
    let run = |options: &TrainOptions, out: &str| {
        train(
            &data,
            options,
            &compute,
            &dir.path().join(out),
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap()
    };
    // Starting weights: a short run from scratch.
    let mut start = tiny_options(3);
    start.learning_rate = 3e-3;
    let before = run(&start, "start");
    // Fine-tune them on the same training patients; judged on the same held-out patients.
    let mut tune = tiny_options(6);
    tune.learning_rate = 3e-3;
    tune.init_from = Some(dir.path().join("start"));
    let after = run(&tune, "tuned");
    assert_eq!(before.validation_images, after.validation_images);
    let (d0, d1) = (
        before.final_evaluation.dice.unwrap(),
        after.final_evaluation.dice.unwrap(),
    );
    // The same six epochs from scratch (same seed, so the very same run if --init were ignored).
    let mut scratch = tiny_options(6);
    scratch.learning_rate = 3e-3;
    let d_scratch = run(&scratch, "scratch").final_evaluation.dice.unwrap();
    eprintln!(
        "held-out Dice: starting weights {d0:.4}, fine-tuned {d1:.4}, six epochs from scratch {d_scratch:.4}"
    );
    assert!(
        d1 > d0 + 0.02,
        "held-out Dice {d0:.3} before fine-tuning, {d1:.3} after"
    );
    assert!(
        d1 > d_scratch,
        "fine-tuning ({d1:.4}) is no better than the same epochs from scratch ({d_scratch:.4}): was --init used?"
    );
    // The card says where it started from.
    let card = BundleInfo::open(&dir.path().join("tuned"), false)
        .unwrap()
        .card;
    assert!(card.data.contains("fine-tuned from"), "{}", card.data);
}

#[test]
fn keep_best_keeps_the_best_validation_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(dir.path());
    let (compute, _) = select(BackendChoice::Flex, None).unwrap();
    let mut options = tiny_options(6);
    options.keep_best = true;
    // A rate this high makes later epochs worse: with the seeded initialisation a non-last epoch
    // is selected (the assertion below requires it, so the selection path is exercised).
    options.learning_rate = 5e-1;
    let out = dir.path().join("m");
    let report = train(
        &data,
        &options,
        &compute,
        &out,
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    let best = report
        .history
        .iter()
        .map(|h| h.2.headline().1)
        .fold(f64::NEG_INFINITY, f64::max);
    // Re-evaluate the weights that were written, on the same held-out patients.
    let info = BundleInfo::open(&out, false).unwrap();
    let (saved, _) = cxrlens::ml::train::evaluate_bundle(
        &data,
        &info,
        &cxrlens::ml::train::SplitSpec::of_bundle(&info),
        &burn::prelude::Device::flex().autodiff(),
    )
    .unwrap();
    let last = report.history.last().unwrap().2.headline().1;
    eprintln!(
        "saved weights: {:.5}; best epoch {best:.5}; last epoch {last:.5}",
        saved.headline().1
    );
    assert!(
        (saved.headline().1 - best).abs() < 1e-6,
        "the saved weights score {} on validation, the best epoch {best}",
        saved.headline().1
    );
    assert!(
        (saved.headline().1 - last).abs() > 1e-6,
        "best and last epochs score alike"
    );
    eprintln!("selected epoch {:?}", report.selected_epoch);
    assert!(
        report.selected_epoch.is_some(),
        "the last epoch was the best; raise the rate"
    );
    match report.selected_epoch {
        Some(e) => {
            assert!(e < 6);
            assert_eq!(report.history[e - 1].2.headline().1, best);
            let card = BundleInfo::open(&out, false).unwrap().card;
            assert!(
                card.data.contains(&format!("weights of epoch {e} of 6")),
                "{}",
                card.data
            );
        }
        None => assert_eq!(report.history.last().unwrap().2.headline().1, best),
    }
    assert!(!out.join("best.bpk").exists());
}

#[test]
fn staged_saliency_recipe_learns_simulated_gaze_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(dir.path());
    let n = cxrlens::gaze::synthetic::simulate_dataset(&data, &data.join("gaze"), 5).unwrap();
    assert_eq!(n, 12);
    let (compute, _) = select(BackendChoice::Flex, None).unwrap();
    let quiet = &mut |_: TrainProgress| {};
    // Stage 1: a classifier encoder (tiny, on the same labels).
    let mut cls = tiny_options(2);
    cls.kind = ModelKind::Classifier;
    cls.name = "cxr-resnet".into();
    train(
        &data,
        &cls,
        &compute,
        &dir.path().join("cls"),
        quiet,
        &AtomicBool::new(false),
    )
    .unwrap();
    let saliency = |epochs: usize, fusion: usize, out: &str| {
        let mut o = tiny_options(epochs);
        o.kind = ModelKind::Saliency;
        o.init_from = Some(dir.path().join("cls"));
        o.fusion_epochs = fusion;
        o.learning_rate = 3e-3;
        o.augment = None;
        train(
            &data,
            &o,
            &compute,
            &dir.path().join(out),
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap()
    };
    let untrained = saliency(0, 0, "s0").final_evaluation.saliency.unwrap();
    // 8 epochs: on 12 images the decoder starts to overfit after that (validation KL rises again
    // from about epoch 10 with this seed), and the recipe has no keep-best.
    let report = saliency(8, 2, "s1");
    let trained = report.final_evaluation.saliency.unwrap();
    for h in &report.history {
        eprintln!(
            "epoch {} loss {:.4} KL {:.4}",
            h.0,
            h.1,
            h.2.saliency.unwrap().kl
        );
    }
    eprintln!(
        "validation KL {:.4} → {:.4}, CC {:.3} → {:.3}",
        untrained.kl, trained.kl, untrained.cc, trained.cc
    );
    assert!(
        trained.kl < untrained.kl,
        "KL {} → {}",
        untrained.kl,
        trained.kl
    );
    assert_eq!(report.epochs_run, 8 + 2);
    // The card and the bundle say the gaze was simulated.
    let out = dir.path().join("s1");
    let info = BundleInfo::open(&out, false).unwrap();
    assert_eq!(info.card.kind, ModelKind::Saliency);
    assert!(info.card.simulated_gaze);
    assert!(info.card.limitations[0].contains("SIMULATED"));
    assert!(
        std::fs::read_to_string(out.join("MODEL_CARD.md"))
            .unwrap()
            .contains("SIMULATED")
    );
    match load_bundle(&info, &compute.device).unwrap() {
        LoadedModel::Saliency(_, config) => {
            assert!(config.classifier_title.starts_with("cxr-resnet"));
            assert_eq!(config.class_names, report.class_names);
        }
        _ => panic!("not a saliency bundle"),
    }
    // In an analysis the predicted map comes with its model and the simulated label.
    let bundles = vec![
        BundleInfo::open(&dir.path().join("cls"), false).unwrap(),
        info,
    ];
    let (models, problems) = cxrlens::ml::analysis::Models::load(&bundles, &compute.device);
    assert!(problems.is_empty(), "{problems:?}");
    let loaded = cxrlens::io::load_image(&common::dicom(common::RSNA)).unwrap();
    let result = cxrlens::ml::analysis::analyze(
        &models,
        &cxrlens::ml::analysis::AnalysisRequest::of(
            &loaded,
            cxrlens::ml::explain::Method::GradCam,
            cxrlens::ml::analysis::ExplainTarget::Classifier,
        ),
        &mut |_, _| true,
    )
    .unwrap();
    let (map, title) = result.saliency.expect("a predicted gaze map");
    assert!(title.contains("SIMULATED"), "{title}");
    assert_eq!(
        (map.width, map.height),
        (loaded.image.width, loaded.image.height)
    );
}

#[test]
fn heatmap_generator_loss_pulls_guided_backprop_towards_the_gaze() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(dir.path());
    cxrlens::gaze::synthetic::simulate_dataset(&data, &data.join("gaze"), 5).unwrap();
    let (compute, _) = select(BackendChoice::Flex, None).unwrap();
    let mut cls = tiny_options(2);
    cls.kind = ModelKind::Classifier;
    cls.name = "cxr-resnet".into();
    train(
        &data,
        &cls,
        &compute,
        &dir.path().join("cls"),
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    let run = |epochs: usize, out: &str| {
        let mut o = tiny_options(epochs);
        o.kind = ModelKind::Saliency;
        o.init_from = Some(dir.path().join("cls"));
        o.heatmap_generator_weight = 1.0;
        o.learning_rate = 3e-3;
        o.augment = None;
        train(
            &data,
            &o,
            &compute,
            &dir.path().join(out),
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap()
    };
    let before = run(0, "g0").final_evaluation.saliency.unwrap();
    let after = run(12, "g1").final_evaluation.saliency.unwrap();
    let (k0, k1) = (before.generator_kl.unwrap(), after.generator_kl.unwrap());
    eprintln!("KL(gaze ‖ guided backprop): {k0:.4} → {k1:.4}");
    assert!(k1 < k0, "guided-backprop KL {k0} → {k1}");
    // The trained classifier is its own bundle, and the saliency network is tied to it.
    let out = dir.path().join("g1");
    let encoder = BundleInfo::open(&out.join("classifier"), false).unwrap();
    assert!(encoder.card.name.ends_with("heatmap-generator"));
    assert!(encoder.card.simulated_gaze);
    let saliency = BundleInfo::open(&out, false).unwrap();
    let (models, problems) =
        cxrlens::ml::analysis::Models::load(&[encoder, saliency], &compute.device);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(models.saliency.is_some() && models.classifier.is_some());
}

#[test]
fn saliency_recipe_reads_reflacx_cases_too() {
    use cxrlens::gaze::synthetic::{SyntheticOptions, generate, write_reflacx};
    let dir = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(dir.path());
    // One simulated REFLACX case per image, tied by dicom_id = the labels.csv id.
    let (records, _) = cxrlens::ml::data::read_labels(&data).unwrap();
    for (k, r) in records.iter().enumerate() {
        let (w, h) = cxrlens::io::image_dimensions(&r.image).unwrap();
        let rec = generate(
            w,
            h,
            None,
            &r.id,
            &SyntheticOptions {
                seed: k as u64,
                ..Default::default()
            },
        );
        write_reflacx(&data.join("gaze"), &format!("SIM{k:04}"), &rec, w, h).unwrap();
    }
    let (compute, _) = select(BackendChoice::Flex, None).unwrap();
    let mut cls = tiny_options(1);
    cls.kind = ModelKind::Classifier;
    train(
        &data,
        &cls,
        &compute,
        &dir.path().join("cls"),
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    let mut o = tiny_options(1);
    o.kind = ModelKind::Saliency;
    o.init_from = Some(dir.path().join("cls"));
    let report = train(
        &data,
        &o,
        &compute,
        &dir.path().join("s"),
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(report.train_images + report.validation_images, 12);
    assert!(
        report.data_problems.is_empty(),
        "{:?}",
        report.data_problems
    );
    assert!(
        BundleInfo::open(&dir.path().join("s"), false)
            .unwrap()
            .card
            .simulated_gaze
    );
}

#[test]
fn an_interrupted_saliency_run_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(dir.path());
    cxrlens::gaze::synthetic::simulate_dataset(&data, &data.join("gaze"), 5).unwrap();
    let (compute, _) = select(BackendChoice::Flex, None).unwrap();
    let mut cls = tiny_options(1);
    cls.kind = ModelKind::Classifier;
    train(
        &data,
        &cls,
        &compute,
        &dir.path().join("cls"),
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    let mut o = tiny_options(4);
    o.kind = ModelKind::Saliency;
    o.init_from = Some(dir.path().join("cls"));
    o.fusion_epochs = 2;
    o.heatmap_generator_weight = 0.5;
    let out = dir.path().join("s");
    // Stop after the third epoch (the run checks the flag at its next batch).
    let stop = AtomicBool::new(false);
    let err = train(
        &data,
        &o,
        &compute,
        &out,
        &mut |p| {
            if let TrainProgress::Epoch { epoch: 3, .. } = p {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        },
        &stop,
    )
    .unwrap_err();
    assert!(
        matches!(err, cxrlens::ml::error::MlError::Cancelled),
        "{err}"
    );
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(before["epochs_done"].as_u64(), Some(3));
    assert!(
        before["classifier_weights"].is_string(),
        "the trained classifier is checkpointed"
    );
    o.resume = true;
    let mut messages = Vec::new();
    let report = train(
        &data,
        &o,
        &compute,
        &out,
        &mut |p| {
            if let TrainProgress::Message(m) = p {
                messages.push(m);
            }
        },
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("resuming after epoch 3 of 6")),
        "{messages:?}"
    );
    assert_eq!(report.history.len(), 6);
    let kept: Vec<serde_json::Value> = serde_json::from_value(before["history"].clone()).unwrap();
    for (i, h) in kept.iter().enumerate() {
        assert_eq!(&serde_json::to_value(&report.history[i]).unwrap(), h);
    }
    assert!(!out.join("checkpoint.json").exists());
    assert!(out.join("classifier/weights.bpk").is_file());
}
