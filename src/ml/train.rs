//! Training of the lung network (joint segmentation + classification loss) and the classifier,
//! on a local dataset folder (see `ml::data`), on whatever device `ml::device` chose.
//!
//! Every epoch writes a checkpoint (weights, Adam state, RNG state, history) atomically, committed
//! by `checkpoint.json` written last, so a run killed at any moment — even by SIGKILL — resumes
//! from the last complete epoch (`TrainOptions::resume`). The finished model is written as `config.json`,
//! `weights.bpk`, `card.json` and `MODEL_CARD.md` into the output folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::adam::CpuAdamConfig;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, sigmoid};
use serde::{Deserialize, Serialize};

use super::augment::{AugmentConfig, augment};
use super::bundle::{ModelCard, ModelKind, save_module};
use super::checkpoint;
use super::classifier::{Architecture, ClassifierConfig};
use super::data::{PreparedSample, prepare, read_labels, split_by_patient3};
use super::device::ComputeDevice;
use super::error::MlError;
use super::lung::LungNetConfig;
use super::metrics::{SplitMix64, accuracy, auc_bootstrap, dice};
use super::tensor_to_vec;
use crate::io::write::write_atomically;

mod batch;
mod evaluation;
mod finish;
mod net;
mod options;
mod report;
mod resume;

use batch::*;
pub(crate) use evaluation::*;
pub use evaluation::{HeldOut, SplitSpec, evaluate_bundle};
use finish::write_bundle;
use net::*;
pub use options::TrainOptions;
pub use report::{Evaluation, OperatingPoint, SaliencyScores, TrainProgress, TrainReport};
pub(crate) use resume::comparable;
use resume::*;

/// Train a model from scratch on the dataset at `data_root`, writing it to `out_dir`.
pub fn train(
    data_root: &Path,
    options: &TrainOptions,
    compute: &ComputeDevice,
    out_dir: &Path,
    progress: &mut dyn FnMut(TrainProgress),
    cancel: &AtomicBool,
) -> Result<TrainReport, MlError> {
    options.validate()?;
    if options.kind == ModelKind::Saliency {
        return super::saliency_train::train_saliency(
            data_root, options, compute, out_dir, progress, cancel,
        );
    }
    let started = Instant::now();
    let device = &compute.device;
    // The seed fixes the initial weights too (the backend's generator), not only split and order.
    device.seed(options.seed);
    let (mut records, row_problems) = read_labels(data_root)?;
    let mut data_problems: Vec<String> = row_problems
        .iter()
        .map(|p| format!("labels.csv line {}: {}", p.line, p.message))
        .collect();
    if options.kind == ModelKind::Lung {
        // Segmentation needs masks; images without one still train the classification head.
        records.sort_by_key(|r| r.mask.is_none());
    }
    if let Some(max) = options.max_images {
        records.truncate(max);
    }
    let class_names: Vec<String> = {
        let mut names: Vec<String> = records
            .iter()
            .map(|r| r.label.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Put "normal" first when present, for readable cards.
        names.sort_by_key(|n| n != "normal");
        names
    };
    if class_names.len() < 2 {
        return Err(MlError::Dataset(format!(
            "need at least two labels, found {class_names:?}"
        )));
    }
    let split = split_by_patient3(
        &records,
        options.validation_fraction,
        options.test_fraction,
        options.seed,
    );
    let (train_idx, val_idx, test_idx) = (split.train, split.validation, split.test);
    let patients = |idx: &[usize]| {
        idx.iter()
            .map(|&i| records[i].patient_id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let (train_patients, validation_patients) = (patients(&train_idx), patients(&val_idx));
    let test_patients = patients(&test_idx);
    progress(TrainProgress::Message(format!(
        "{} images ({} train / {} validation / {} test; {} / {} / {test_patients} patients), classes {:?}",
        records.len(),
        train_idx.len(),
        val_idx.len(),
        test_idx.len(),
        train_patients,
        validation_patients,
        class_names
    )));
    let (mut net, options) = initial_net(options, &class_names, device)?;
    let options = &options;

    let with_masks = options.kind == ModelKind::Lung;
    let pick = |idx: &[usize]| idx.iter().map(|&i| records[i].clone()).collect::<Vec<_>>();
    let (train_set, p1) = prepare(
        &pick(&train_idx),
        &class_names,
        options.input_size,
        with_masks,
    );
    let (val_set, p2) = prepare(
        &pick(&val_idx),
        &class_names,
        options.input_size,
        with_masks,
    );
    let (test_set, p3) = prepare(
        &pick(&test_idx),
        &class_names,
        options.input_size,
        with_masks,
    );
    data_problems.extend(p1);
    data_problems.extend(p2);
    data_problems.extend(p3);
    // A radiograph listed twice under two patient ids defeats the patient-wise split; say so
    // (decode problems were reported by `prepare` already).
    let held: Vec<usize> = val_idx.iter().chain(&test_idx).copied().collect();
    for p in super::near_identical::leaks(&records, &held, &train_idx).0 {
        let (h, t) = (&records[p.a], &records[p.b]);
        data_problems.push(format!(
            "{} (held out, patient {}) is the same radiograph as {} (training, patient {}; r = {:.4}): its held-out figures are not independent",
            h.id, h.patient_id, t.id, t.patient_id, p.r
        ));
    }
    if train_set.is_empty() || val_set.is_empty() {
        return Err(MlError::Dataset(
            "no usable images in the training or validation split".into(),
        ));
    }

    // Inverse-frequency class weights, normalised to mean 1.
    let mut counts = vec![0usize; class_names.len()];
    for s in &train_set {
        counts[s.class] += 1;
    }
    let raw: Vec<f32> = counts.iter().map(|&c| 1.0 / (c.max(1) as f32)).collect();
    let mean = raw.iter().sum::<f32>() / raw.len() as f32;
    let class_weights: Vec<f32> = raw.iter().map(|w| w / mean).collect();

    let mut optimizer = CpuAdamConfig::new().init();
    let mut rng = SplitMix64::new(options.seed ^ 0xA5A5);
    let batches = train_set.len().div_ceil(options.batch_size.max(1));
    let mut history = Vec::new();
    let mut epochs_run = 0;
    let mut seconds_before = 0.0;
    std::fs::create_dir_all(out_dir)?;
    let fingerprint = Fingerprint {
        options: comparable(options),
        class_names: class_names.clone(),
        train_images: train_set.len(),
        validation_images: val_set.len(),
    };
    log_line(
        out_dir,
        &format!(
            "run: {} on {} ({} train / {} validation images), options {}",
            options.kind.noun(),
            data_root.display(),
            train_set.len(),
            val_set.len(),
            serde_json::to_string(&comparable(options)).unwrap_or_default()
        ),
    );
    if let Some(state) =
        checkpoint::read_resumable::<CheckpointState>(out_dir, options.resume, |s| {
            s.fingerprint == fingerprint
        })?
    {
        let weights = out_dir.join(&state.weights);
        net = match net {
            Net::Lung(m) => Net::Lung(super::bundle::load_into(m, &weights)?),
            Net::Classifier(m) => Net::Classifier(m.load(&weights)?),
        };
        let bytes = std::fs::read(out_dir.join(&state.optimizer))?;
        let record =
            burn::optim::OptimizerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
                .map_err(|e| MlError::Weights(format!("optimizer state: {e:?}")))?;
        optimizer = optimizer.load_record(record);
        rng = SplitMix64::new(state.rng);
        history = state.history;
        epochs_run = state.epochs_done;
        seconds_before = state.seconds;
        progress(TrainProgress::Message(format!(
            "resuming after epoch {} of {} (checkpoint in {})",
            epochs_run,
            options.epochs,
            out_dir.display()
        )));
    }
    if options.freeze_encoder {
        net = match net {
            Net::Lung(m) => Net::Lung(m.freeze_encoder()),
            Net::Classifier(m) => Net::Classifier(m.freeze_features()),
        };
    }
    if options.frozen_blocks > 0 {
        net = match net {
            Net::Classifier(super::classifier::Classifier::EfficientNet(m)) => Net::Classifier(
                super::classifier::Classifier::EfficientNet(m.freeze_prefix(options.frozen_blocks)),
            ),
            other => other,
        };
    }
    // burn-wgpu 0.22.1 gives wrong gradients when the lung network's two heads are
    // back-propagated in one pass (each head alone is right; `cxrlens check-backends` on an H100),
    // so on wgpu the two losses take separate passes and their gradients are summed.
    let split_heads = compute.kind == super::device::BackendKind::Wgpu;
    if split_heads && matches!(net, Net::Lung(_)) {
        progress(TrainProgress::Message(
            "wgpu: the mask and class losses are back-propagated separately and summed".into(),
        ));
    }
    let first_epoch = epochs_run;
    for epoch in first_epoch..options.epochs {
        let epoch_started = Instant::now();
        let progress_frac = epoch as f64 / options.epochs.max(1) as f64;
        let lr = options.learning_rate
            * (options.final_lr_fraction
                + (1.0 - options.final_lr_fraction)
                    * 0.5
                    * (1.0 + (std::f64::consts::PI * progress_frac).cos()));
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for (b, chunk) in order.chunks(options.batch_size.max(1)).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(MlError::Cancelled);
            }
            let batch = make_batch(&train_set, chunk, options, &mut rng, device);
            let (loss_value, grads) = if split_heads && batch.mask.is_some() {
                split_head_step(&net, batch, &class_weights, options, device)?
            } else {
                let (class_logits, mask_logits) = net.forward(batch.x);
                let mut loss =
                    weighted_cross_entropy(class_logits, &batch.classes, &class_weights, device);
                if let (Some(mask_logits), Some((target, weight))) = (mask_logits, batch.mask) {
                    loss = loss.mul_scalar(options.classification_weight)
                        + segmentation_loss(mask_logits, target, weight);
                }
                let value = scalar(&loss)?;
                (value, net_ref(&net).params(loss.backward()))
            };
            if !loss_value.is_finite() {
                return Err(MlError::Data(format!(
                    "loss became {loss_value} in epoch {}",
                    epoch + 1
                )));
            }
            loss_sum += loss_value;
            net = match net {
                Net::Lung(m) => Net::Lung(optimizer.step(lr, m, grads)),
                Net::Classifier(m) => Net::Classifier(m.step(&mut optimizer, lr, grads)),
            };
            progress(TrainProgress::Batch {
                epoch: epoch + 1,
                batch: b + 1,
                batches,
                loss: loss_value,
            });
        }
        let evaluation = evaluate(&net.valid(), &val_set, &class_names, device, options.seed)?;
        let train_loss = loss_sum / batches as f64;
        epochs_run = epoch + 1;
        history.push((epochs_run, train_loss, evaluation.clone()));
        write_checkpoint(
            out_dir,
            &net,
            &optimizer,
            &CheckpointState {
                fingerprint: fingerprint.clone(),
                epochs_done: epochs_run,
                weights: String::new(),
                optimizer: String::new(),
                rng: rng.state(),
                history: history.clone(),
                seconds: seconds_before + started.elapsed().as_secs_f64(),
            },
        )?;
        let (metric, value) = evaluation.headline();
        log_line(
            out_dir,
            &format!(
                "epoch {epochs_run}/{}: train loss {train_loss:.4}, validation {metric} {value:.4}, accuracy {:.3} ({:.0} s)",
                options.epochs,
                evaluation.accuracy,
                epoch_started.elapsed().as_secs_f64()
            ),
        );
        progress(TrainProgress::Epoch {
            epoch: epochs_run,
            epochs: options.epochs,
            train_loss,
            evaluation: Box::new(evaluation),
            seconds: epoch_started.elapsed().as_secs_f64(),
        });
        let best_index = |history: &[(usize, f64, Evaluation)]| {
            history
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.2.headline().1.total_cmp(&b.1.2.headline().1))
                .map_or(0, |(i, _)| i)
        };
        if options.keep_best && best_index(&history) == history.len() - 1 {
            match &net {
                Net::Lung(m) => save_module(m.clone(), &out_dir.join(BEST))?,
                Net::Classifier(m) => m.save(&out_dir.join(BEST))?,
            }
        }
        if let Some(patience) = options.patience {
            let best = best_index(&history);
            if history.len() - 1 - best >= patience.max(1) {
                let m = format!(
                    "early stop: validation {metric} has not improved for {patience} epochs (best at epoch {})",
                    best + 1
                );
                log_line(out_dir, &m);
                progress(TrainProgress::Message(m));
                break;
            }
        }
    }
    let mut final_evaluation = history.last().map(|h| h.2.clone()).unwrap_or_default();
    let mut selected_epoch = None;
    if options.keep_best && !history.is_empty() {
        let best = history
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.2.headline().1.total_cmp(&b.1.2.headline().1))
            .map_or(0, |(i, _)| i);
        let best_file = out_dir.join(BEST);
        if best + 1 != history.len() && best_file.is_file() {
            net = match net {
                Net::Lung(m) => Net::Lung(super::bundle::load_into(m, &best_file)?),
                Net::Classifier(m) => Net::Classifier(m.load(&best_file)?),
            };
            final_evaluation = history[best].2.clone();
            selected_epoch = Some(history[best].0);
            let m = format!(
                "kept the weights of epoch {} (best validation {} {:.4})",
                history[best].0,
                final_evaluation.headline().0,
                final_evaluation.headline().1
            );
            log_line(out_dir, &m);
            progress(TrainProgress::Message(m));
        }
    }
    // Held-out figures of the model as shipped: the test split is touched here only.
    let (test_evaluation, calibration) =
        held_out(&net, &val_set, &test_set, options, &class_names, device)?;
    if let Some(t) = &test_evaluation {
        let m = format!(
            "test split ({} images): {} {:.4}, accuracy {:.3}",
            t.images,
            t.headline().0,
            t.headline().1,
            t.accuracy
        );
        log_line(out_dir, &m);
        progress(TrainProgress::Message(m));
    }
    let report = TrainReport {
        options: options.clone(),
        class_names: class_names.clone(),
        train_images: train_set.len(),
        validation_images: val_set.len(),
        train_patients,
        validation_patients,
        epochs_run,
        seconds: seconds_before + started.elapsed().as_secs_f64(),
        device: compute.description.clone(),
        history,
        final_evaluation,
        data_problems,
        selected_epoch,
        test_images: test_set.len(),
        test_patients,
        test_evaluation,
        calibration,
    };
    write_bundle(out_dir, &net, options, &class_names, &report, data_root)?;
    log_line(
        out_dir,
        &format!(
            "finished: {} epochs, {:.0} s",
            report.epochs_run, report.seconds
        ),
    );
    if let Err(e) = remove_checkpoint(out_dir) {
        log_line(
            out_dir,
            &format!("the checkpoint could not be removed: {e}"),
        );
    }
    let _ = std::fs::remove_file(out_dir.join(BEST));
    Ok(report)
}

/// Appends a line to `training.log` beside the checkpoints (best effort: a log that cannot be
/// written never stops training).
pub(crate) fn log_line(out_dir: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out_dir.join("training.log"))
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Where `cxrlens train` writes by default.
pub fn default_out_dir(kind: ModelKind) -> PathBuf {
    PathBuf::from("models").join(kind.default_name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::backend_check::{Agreement, pattern};
    use crate::ml::lung::LungNetConfig;

    #[test]
    fn bad_options_are_refused_with_the_option_named() {
        let ok = TrainOptions::new(ModelKind::Lung);
        ok.validate().unwrap();
        type Change = fn(&mut TrainOptions);
        let cases: [(&str, Change); 6] = [
            ("input size 7", |o| o.input_size = 7),
            ("base channels 0", |o| o.base_channels = 0),
            ("batch size 0", |o| o.batch_size = 0),
            ("learning rate NaN", |o| o.learning_rate = f64::NAN),
            ("validation fraction 1", |o| o.validation_fraction = 1.0),
            ("classification weight -1", |o| {
                o.classification_weight = -1.0
            }),
        ];
        for (expected, change) in cases {
            let mut o = ok.clone();
            change(&mut o);
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains(expected), "{e} (expected {expected})");
        }
    }

    /// The split-head step (used on wgpu) gives the gradient of one pass over the summed loss.
    #[test]
    fn split_head_step_equals_one_pass_of_the_joint_loss() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = LungNetConfig::new(vec!["a".into(), "b".into()])
            .with_input_size(32)
            .with_base_channels(4)
            .with_depth(2)
            .init(&device)
            .train();
        let mut options = TrainOptions::new(ModelKind::Lung);
        options.classification_weight = 0.3;
        let (b, s) = (2, 32);
        let batch = || {
            let target: Vec<f32> = pattern(b * s * s, 9)
                .into_iter()
                .map(|v| if v > 0.0 { 1.0 } else { 0.0 })
                .collect();
            let weight: Vec<f32> = pattern(b * s * s, 10)
                .into_iter()
                .map(|v| if v > -0.8 { 1.0 } else { 0.0 })
                .collect();
            Batch {
                x: Tensor::<1>::from_floats(pattern(b * s * s, 8).as_slice(), &device)
                    .reshape([b, 1, s, s]),
                classes: vec![0, 1],
                mask: Some((
                    Tensor::<1>::from_floats(target.as_slice(), &device).reshape([b, 1, s, s]),
                    Tensor::<1>::from_floats(weight.as_slice(), &device).reshape([b, 1, s, s]),
                )),
            }
        };
        let class_weights = [1.0, 2.0];
        let net = Net::Lung(model.clone());
        let (split_loss, split) =
            split_head_step(&net, batch(), &class_weights, &options, &device).unwrap();

        let joint_batch = batch();
        let out = model.forward(joint_batch.x);
        let (target, weight) = joint_batch.mask.unwrap();
        let loss = weighted_cross_entropy(out.class_logits, &[0, 1], &class_weights, &device)
            .mul_scalar(options.classification_weight)
            + segmentation_loss(out.mask_logits, target, weight);
        let joint_loss = scalar(&loss).unwrap();
        let joint = GradientsParams::from_grads(loss.backward(), &model);

        assert!((split_loss - joint_loss).abs() < 1e-5 * joint_loss.abs().max(1.0));
        // Compare every parameter's gradient.
        struct Compare<'a> {
            split: &'a GradientsParams,
            joint: &'a GradientsParams,
            rows: Vec<Agreement>,
        }
        impl burn::module::ModuleVisitor for Compare<'_> {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let (Some(a), Some(b)) =
                    (self.joint.get::<D>(param.id), self.split.get::<D>(param.id))
                else {
                    return;
                };
                self.rows.push(Agreement::of(
                    format!("{:?}", param.id),
                    &tensor_to_vec(a).unwrap(),
                    &tensor_to_vec(b).unwrap(),
                ));
            }
        }
        let mut compare = Compare {
            split: &split,
            joint: &joint,
            rows: Vec::new(),
        };
        model.visit(&mut compare);
        assert!(compare.rows.len() >= 20, "{} gradients", compare.rows.len());
        for row in &compare.rows {
            assert!(row.reference_norm > 0.0 || row.max_abs == 0.0);
            assert!(row.relative_l2 < 1e-4, "{}: {}", row.what, row.relative_l2);
        }
    }
}
