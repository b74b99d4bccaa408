//! The staged saliency recipe (multi-stage cooperative learning):
//!
//! 1. **Classifier encoder** — an existing classifier bundle (`TrainOptions::init_from`), e.g. the
//!    shipped one or one fine-tuned in the trainer; it is frozen from here on.
//! 2. **Saliency decoder** — the RSE U-Net (`ml::saliency`) learns to predict the gaze heatmap
//!    with a KL loss, `KL(gaze ‖ predicted)` over the pixels of the model grid, while the
//!    classifier encoder supplies its (frozen) features at the bottleneck.
//! 3. **Fusion classifier** — with both encoders frozen, a linear head on the pooled fused
//!    bottleneck learns the classes (cross-entropy), for `fusion_epochs` epochs.
//!
//! Gaze targets are built from the recordings in `<data>/gaze/` — EGD-CXR (`fixations.csv` with
//! its `master_sheet.csv`; DICOM_ID = the labels.csv id or the image file name) and/or REFLACX
//! (`main_data/<case>/fixations.csv` with `main_data/metadata_phase_*.csv`) — by each dataset's
//! published recipe evaluated on the model grid and summed to 1.
//! Recordings marked simulated (`gaze::synthetic`) make the card say so.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::adam::CpuAdamConfig;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};

use super::bundle::{BundleInfo, LoadedModel, ModelCard, ModelKind, load_bundle, save_module};
use super::checkpoint;
use super::data::{prepare, read_labels, split_by_patient};
use super::device::ComputeDevice;
use super::error::MlError;
use super::metrics::SplitMix64;
use super::saliency::{SaliencyNet, SaliencyNetConfig};
use super::tensor_to_vec;
use super::train::{
    Evaluation, SaliencyScores, TrainOptions, TrainProgress, TrainReport,
    classification_evaluation, log_line,
};
use crate::gaze::{GazeRecording, ImageKey};
use crate::io::write::write_atomically;

mod data;
mod finish;
mod resume;
mod validation;

pub use data::grid_target;
use data::{GazeData, Sample, batch, load_gaze_data};
use finish::{Finished, write_bundles};
use resume::{Checkpoint, read_optimizer, write_checkpoint};
use validation::{Validation, validate};

pub fn train_saliency(
    data_root: &Path,
    options: &TrainOptions,
    compute: &ComputeDevice,
    out_dir: &Path,
    progress: &mut dyn FnMut(TrainProgress),
    cancel: &AtomicBool,
) -> Result<TrainReport, MlError> {
    let started = Instant::now();
    let device = &compute.device;
    device.seed(options.seed);
    // Stage 1: the classifier encoder.
    let classifier_dir = options.init_from.as_ref().ok_or_else(|| {
        MlError::Config(
            "the saliency recipe starts from a classifier (stage 1): give its bundle with --init"
                .into(),
        )
    })?;
    let cinfo = BundleInfo::open(classifier_dir, false)?;
    let generator = options.heatmap_generator_weight > 0.0;
    if generator && compute.kind == super::device::BackendKind::Wgpu {
        // `cxrlens check-backends` verified single-loss graphs on wgpu, and found one two-loss
        // graph (the lung network's heads) wrong there; this recipe's joint loss is not covered.
        progress(TrainProgress::Message(
            "warning: the heatmap-generator loss on wgpu is not checked against the CPU; \
             compare with a short --backend flex run before relying on it"
                .into(),
        ));
    }
    let (mut classifier, classifier_config) = match load_bundle(&cinfo, device)? {
        // The heatmap-generator recipe trains the classifier (weights only: batch-norm statistics
        // stay as loaded); otherwise it is the frozen stage-1 encoder.
        LoadedModel::Classifier(m, c) if generator => (m.valid().train(), c),
        LoadedModel::Classifier(m, c) => (m.freeze(), c),
        _ => {
            return Err(MlError::Config(format!(
                "{} holds a {}, not a classifier (stage 1 of the saliency recipe)",
                classifier_dir.display(),
                cinfo.card.kind.noun()
            )));
        }
    };
    if generator && classifier_config.architecture() != super::classifier::Architecture::ResNet {
        return Err(MlError::Config(format!(
            "the heatmap-generator loss needs a ResNet classifier; {} is {}",
            cinfo.title(),
            classifier_config.architecture().label()
        )));
    }
    let size = cinfo.card.input_size;
    let class_names = cinfo.card.class_names.clone();
    if class_names.is_empty() {
        return Err(MlError::Config(format!(
            "{} has no classes to train the fusion head on",
            cinfo.title()
        )));
    }

    let GazeData {
        train_set,
        val_set,
        simulated,
        problems,
        with_gaze,
        train_idx,
        val_idx,
    } = load_gaze_data(
        data_root,
        options,
        &class_names,
        size,
        &cinfo.title(),
        progress,
    )?;
    std::fs::create_dir_all(out_dir)?;
    log_line(
        out_dir,
        &format!(
            "run: saliency recipe on {} ({} train / {} validation images with gaze{}), classifier {}",
            data_root.display(),
            train_set.len(),
            val_set.len(),
            if simulated { ", SIMULATED" } else { "" },
            cinfo.title()
        ),
    );

    let batch_of =
        |set: &[Sample], chunk: &[usize], device: &Device| batch(set, chunk, size, device);
    let features_channels = {
        let (x, _) = batch_of(&train_set, &[0], device);
        classifier.features(x).dims()[1]
    };
    let config = SaliencyNetConfig::new(features_channels)
        .with_input_size(size)
        .with_base_channels(options.base_channels)
        .with_class_names(class_names.clone())
        .with_classifier_title(cinfo.title());
    let mut net: SaliencyNet = config.init(device).train();

    let evaluate = |net: &SaliencyNet, classifier: &super::classifier::Classifier| {
        validate(
            net,
            classifier,
            &val_set,
            &class_names,
            Validation {
                size,
                generator,
                seed: options.seed,
            },
            device,
        )
    };

    let mut rng = SplitMix64::new(options.seed ^ 0x5A11);
    let mut history = Vec::new();
    let fingerprint = serde_json::json!({
        "options": super::train::comparable(options),
        "train_images": train_set.len(),
        "validation_images": val_set.len(),
    });
    let mut resumed: Option<Checkpoint> = None;
    let mut seconds_before = 0.0;
    if let Some(c) = checkpoint::read_resumable::<Checkpoint>(out_dir, options.resume, |c| {
        c.fingerprint == fingerprint
    })? {
        net = super::bundle::load_into(net, &out_dir.join(&c.weights))?;
        if let Some(w) = &c.classifier_weights {
            classifier = classifier.load(&out_dir.join(w))?;
        }
        rng = SplitMix64::new(c.rng);
        history = c.history.clone();
        seconds_before = c.seconds;
        let m = format!(
            "resuming after epoch {} of {} (checkpoint in {})",
            c.epochs_done,
            options.epochs + options.fusion_epochs,
            out_dir.display()
        );
        log_line(out_dir, &m);
        progress(TrainProgress::Message(m));
        resumed = Some(c);
    }
    let total_epochs = options.epochs + options.fusion_epochs;
    let batches = train_set.len().div_ceil(options.batch_size.max(1));
    let labelled: Vec<usize> = (0..train_set.len())
        .filter(|&i| train_set[i].class.is_some())
        .collect();
    // Stage 2, then stage 3.
    for stage in [2, 3] {
        let epochs = if stage == 2 {
            options.epochs
        } else {
            options.fusion_epochs
        };
        if epochs == 0 {
            continue;
        }
        if stage == 3 {
            if labelled.is_empty() {
                let m = "stage 3 skipped: no training image has one of the classifier's labels"
                    .to_string();
                log_line(out_dir, &m);
                progress(TrainProgress::Message(m));
                break;
            }
            net = net.freeze_all_but_fusion_head();
        }
        let mut optimizer = CpuAdamConfig::new().init();
        let mut classifier_optimizer = CpuAdamConfig::new().init();
        let stage_start = if stage == 2 { 0 } else { options.epochs };
        if let Some(c) = &resumed
            && c.epochs_done > stage_start
            && c.epochs_done < stage_start + epochs
        {
            optimizer = optimizer.load_record(read_optimizer(&out_dir.join(&c.optimizer))?);
            if let Some(o) = &c.classifier_optimizer {
                classifier_optimizer =
                    classifier_optimizer.load_record(read_optimizer(&out_dir.join(o))?);
            }
        }
        let pool: Vec<usize> = if stage == 2 {
            (0..train_set.len()).collect()
        } else {
            labelled.clone()
        };
        for e in 0..epochs {
            if stage_start + e < history.len() {
                continue; // done before the interruption
            }
            let epoch_started = Instant::now();
            let lr = options.learning_rate
                * (options.final_lr_fraction
                    + (1.0 - options.final_lr_fraction)
                        * 0.5
                        * (1.0 + (std::f64::consts::PI * e as f64 / epochs as f64).cos()));
            let mut order = pool.clone();
            rng.shuffle(&mut order);
            let mut loss_sum = 0.0;
            let n_batches = order.chunks(options.batch_size.max(1)).len();
            for (b, chunk) in order.chunks(options.batch_size.max(1)).enumerate() {
                if cancel.load(Ordering::Relaxed) {
                    return Err(MlError::Cancelled);
                }
                let (x, q) = batch_of(&train_set, chunk, device);
                let features = classifier.features(x.clone()).detach();
                let n = chunk.len();
                let mut generator_loss = None;
                let loss = if stage == 2 {
                    // KL(q ‖ p) = Σ q (ln q − ln p); the entropy of q is constant, so the
                    // gradient is that of the cross-entropy −Σ q ln p.
                    let logits = net
                        .forward_logits(x.clone(), features)
                        .reshape([n, size * size]);
                    let log_p = log_softmax(logits, 1);
                    let q_log_q: f32 = tensor_to_vec(q.clone())?
                        .iter()
                        .filter(|v| **v > 0.0)
                        .map(|v| v * v.ln())
                        .sum();
                    let decoder = (q.clone() * log_p)
                        .sum()
                        .neg()
                        .add_scalar(q_log_q)
                        .div_scalar(n as f32);
                    if generator {
                        // Heatmap generator: the classifier's guided-backprop map for the true
                        // class (|map| summed to 1) should match the gaze map, plus its class loss.
                        let classes: Vec<usize> = chunk
                            .iter()
                            .map(|&i| train_set[i].class.unwrap_or(0))
                            .collect();
                        let gb = classifier
                            .guided_backprop_map(x.clone(), &classes)?
                            .abs()
                            .reshape([n, size * size])
                            .add_scalar(1e-12);
                        let gb = gb.clone() / gb.sum_dim(1);
                        let gb_kl = (q.clone() * (q.clone().add_scalar(1e-12).log() - gb.log()))
                            .sum()
                            .div_scalar(n as f32);
                        let k = class_names.len();
                        let mut one_hot = vec![0.0_f32; n * k];
                        let mut labelled_in_batch = 0.0_f32;
                        for (j, &i) in chunk.iter().enumerate() {
                            if let Some(c) = train_set[i].class {
                                one_hot[j * k + c] = 1.0;
                                labelled_in_batch += 1.0;
                            }
                        }
                        let t =
                            Tensor::<1>::from_floats(one_hot.as_slice(), device).reshape([n, k]);
                        let ce = (log_softmax(classifier.forward(x), 1) * t)
                            .sum()
                            .neg()
                            .div_scalar(labelled_in_batch.max(1.0));
                        generator_loss =
                            Some(ce + gb_kl.mul_scalar(options.heatmap_generator_weight));
                    }
                    decoder
                } else {
                    let logits = net.classify(x, features);
                    let k = class_names.len();
                    let mut one_hot = vec![0.0_f32; n * k];
                    for (j, &i) in chunk.iter().enumerate() {
                        one_hot[j * k + train_set[i].class.unwrap_or(0)] = 1.0;
                    }
                    let t = Tensor::<1>::from_floats(one_hot.as_slice(), device).reshape([n, k]);
                    (log_softmax(logits, 1) * t)
                        .sum()
                        .neg()
                        .div_scalar(n as f32)
                };
                let loss = match generator_loss {
                    Some(g) => loss + g,
                    None => loss,
                };
                let value = tensor_to_vec(loss.clone().detach())?[0] as f64;
                if !value.is_finite() {
                    return Err(MlError::Data(format!(
                        "loss became {value} in stage {stage}"
                    )));
                }
                loss_sum += value;
                let mut grads = loss.backward();
                let net_grads = GradientsParams::from_module(&mut grads, &net);
                net = optimizer.step(lr, net, net_grads);
                if generator && stage == 2 {
                    let c_grads = classifier.gradients_from(&mut grads);
                    classifier = classifier.step(&mut classifier_optimizer, lr, c_grads);
                }
                progress(TrainProgress::Batch {
                    epoch: history.len() + 1,
                    batch: b + 1,
                    batches: n_batches.max(batches.min(n_batches)),
                    loss: value,
                });
            }
            let evaluation = evaluate(&net, &classifier)?;
            let train_loss = loss_sum / n_batches.max(1) as f64;
            history.push((history.len() + 1, train_loss, evaluation.clone()));
            let s = evaluation.saliency.unwrap_or_default();
            log_line(
                out_dir,
                &format!(
                    "stage {stage} epoch {}/{epochs}: loss {train_loss:.4}, validation KL {:.4}, CC {:.4}, HS {:.4}{} ({:.0} s)",
                    e + 1,
                    s.kl,
                    s.cc,
                    s.hs,
                    if stage == 3 {
                        format!(", fusion accuracy {:.3}", evaluation.accuracy)
                    } else {
                        String::new()
                    },
                    epoch_started.elapsed().as_secs_f64()
                ),
            );
            write_checkpoint(
                out_dir,
                &net,
                generator.then_some(&classifier),
                &optimizer,
                generator.then_some(&classifier_optimizer),
                Checkpoint {
                    fingerprint: fingerprint.clone(),
                    epochs_done: history.len(),
                    weights: String::new(),
                    classifier_weights: None,
                    optimizer: String::new(),
                    classifier_optimizer: None,
                    rng: rng.state(),
                    history: history.clone(),
                    seconds: seconds_before + started.elapsed().as_secs_f64(),
                },
            )?;
            progress(TrainProgress::Epoch {
                epoch: history.len(),
                epochs: total_epochs,
                train_loss,
                evaluation: Box::new(evaluation),
                seconds: epoch_started.elapsed().as_secs_f64(),
            });
        }
    }
    let final_evaluation = match history.last() {
        Some(h) => h.2.clone(),
        None => evaluate(&net, &classifier)?,
    };
    let patients = |idx: &[usize]| {
        idx.iter()
            .map(|&i| with_gaze[i].patient_id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let report = TrainReport {
        options: options.clone(),
        class_names: class_names.clone(),
        train_images: train_set.len(),
        validation_images: val_set.len(),
        train_patients: patients(&train_idx),
        validation_patients: patients(&val_idx),
        epochs_run: history.len(),
        seconds: seconds_before + started.elapsed().as_secs_f64(),
        device: compute.description.clone(),
        history,
        final_evaluation,
        data_problems: problems,
        selected_epoch: None,
        test_images: 0,
        test_patients: 0,
        test_evaluation: None,
        calibration: None,
    };
    write_bundles(
        out_dir,
        Finished {
            net: &net,
            config,
            classifier: generator.then_some((&classifier, classifier_config)),
            classifier_info: &cinfo,
            class_names: &class_names,
            options,
            data_root,
            simulated,
            report: &report,
        },
    )?;
    log_line(
        out_dir,
        &format!(
            "finished: {} epochs, {:.0} s",
            report.epochs_run, report.seconds
        ),
    );
    if let Err(e) = checkpoint::remove::<Checkpoint>(out_dir) {
        super::train::log_line(
            out_dir,
            &format!("the checkpoint could not be removed: {e}"),
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gaze::{Fixation, GazeFormat, PixelRect};

    fn recording(format: GazeFormat, fixations: Vec<Fixation>) -> GazeRecording {
        GazeRecording {
            format,
            image_id: "t".into(),
            file: "t.csv".into(),
            fixations,
            off_image: 0,
            simulated: false,
        }
    }

    fn fixation(x: f32, y: f32, shown: Option<PixelRect>) -> Fixation {
        Fixation {
            x,
            y,
            start_s: 0.0,
            duration_s: 0.5,
            px_per_degree: Some([40.0, 40.0]),
            shown,
        }
    }

    /// REFLACX: a fixation made while only the left half of the image was shown puts no weight on
    /// the right half (the published recipe evaluates the Gaussian inside the shown area only).
    #[test]
    fn reflacx_target_stays_inside_the_shown_area() {
        let left_half = PixelRect {
            xmin: 0.0,
            ymin: 0.0,
            xmax: 199.0,
            ymax: 399.0,
        };
        let rec = recording(
            GazeFormat::Reflacx,
            vec![fixation(190.0, 200.0, Some(left_half))],
        );
        let t = grid_target(&rec, 400, 400, 16);
        let right: f32 = (0..16)
            .flat_map(|y| (8..16).map(move |x| (x, y)))
            .map(|(x, y)| t[y * 16 + x])
            .sum();
        assert!(right < 1e-6, "mass right of the shown area: {right}");
        assert!((t.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }

    /// EGD-CXR: scipy's `reflect` border folds the tail of a fixation at the edge back inside, so
    /// the grid cell at the edge is larger than its neighbour inwards at the same distance from
    /// the fixation on the other side (a plain Gaussian would make them equal).
    #[test]
    fn egd_target_reflects_at_the_border() {
        let rec = recording(GazeFormat::EgdCxr, vec![fixation(10.0, 500.0, None)]);
        // 1000×1000 image, 10 grid cells of 100 px; σ = 150 px.
        let t = grid_target(&rec, 1000, 1000, 10);
        let row = &t[50..60];
        // Cell 0 holds x = 0..99 around the fixation at 10; with reflection, the mass of x < 0
        // folds into it, making cell 0 exceed cell 1 by more than a Gaussian alone would.
        let gauss = |a: f64, b: f64| {
            let phi = |v: f64| 0.5 * (1.0 + erf((v - 10.5) / (150.0 * 2f64.sqrt())));
            phi(b) - phi(a)
        };
        let plain_ratio = gauss(0.0, 100.0) / gauss(100.0, 200.0);
        // Reflection about the edge folds pixels −100…−1 into cell 0 and −200…−101 into cell 1.
        let reflected_ratio = (gauss(0.0, 100.0) + gauss(-100.0, 0.0))
            / (gauss(100.0, 200.0) + gauss(-200.0, -100.0));
        let ratio = (row[0] / row[1]) as f64;
        assert!(
            (ratio - reflected_ratio).abs() < 0.02 * reflected_ratio
                && (ratio - plain_ratio).abs() > 0.05,
            "ratio {ratio}, reflected {reflected_ratio}, plain {plain_ratio}"
        );
    }

    /// Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7), enough for the ratios above.
    fn erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let y = 1.0
            - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736)
                * t
                + 0.254_829_592)
                * t
                * (-x * x).exp();
        if x >= 0.0 { y } else { -y }
    }
}
