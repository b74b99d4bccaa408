//! The trainer's workers: a headers-only dataset scan (`cxrlens-dataset-scan`) and one training run
//! at a time (`cxrlens-train`), which creates its own compute device, reports every batch and
//! epoch as events, and stops at the next batch when asked (the checkpoint of the last complete
//! epoch stays, so the run can be resumed).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::{WorkerEvent, Workers};
use crate::ml::data::{DatasetScan, scan_dataset};
use crate::ml::device::{BackendChoice, ComputeDevice};
use crate::ml::error::MlError;
use crate::ml::train::{TrainOptions, TrainProgress, TrainReport, train};

/// What the trainer's workers report.
pub enum TrainerEvent {
    Scanned(Result<DatasetScan, String>),
    Progress(TrainProgress),
    /// The device the run uses.
    Started {
        device: String,
    },
    /// `Err("stopped")` when the user stopped it.
    Finished(Box<Result<TrainReport, String>>),
}

impl Workers {
    /// Scan a dataset folder (headers only). `start_from`: the bundle training will start from, whose
    /// classes the labels are checked against (read on the worker; an unreadable bundle is an error).
    pub fn scan_dataset(
        &mut self,
        root: PathBuf,
        start_from: Option<PathBuf>,
    ) -> Result<(), String> {
        let (generation, cancel) = self.dataset_scan.start();
        self.spawn(
            "cxrlens-dataset-scan",
            super::Slot::DatasetScan,
            generation,
            move || {
                // The starting model's classes (its card is read here, not on the UI thread); a
                // bundle that cannot be read is the scan's error.
                let known = start_from
                    .map(|d| crate::ml::bundle::BundleInfo::open(&d, false))
                    .transpose()
                    .map(|b| b.map(|b| b.card.class_names));
                let result = known.map_err(|e| e.to_string()).and_then(|known| {
                    scan_dataset(&root, known.as_deref(), &cancel).map_err(|e| e.to_string())
                });
                (!cancel.load(Ordering::Relaxed)).then_some(WorkerEvent::Trainer {
                    generation,
                    event: TrainerEvent::Scanned(result),
                })
            },
        )
    }

    /// Start a training run. `compute`: the app's device when it has one (else chosen here).
    pub fn start_training(
        &mut self,
        data: PathBuf,
        options: TrainOptions,
        out_dir: PathBuf,
        compute: Option<ComputeDevice>,
        choice: BackendChoice,
    ) -> Result<u64, String> {
        let (generation, cancel) = self.training.start();
        let tx = self.tx.clone();
        let wake = self.wake.clone();
        let send = move |event: TrainerEvent| {
            let _ = tx.send(WorkerEvent::Trainer { generation, event });
            wake();
        };
        std::thread::Builder::new()
            .name("cxrlens-train".into())
            .spawn(move || {
                let compute = match crate::ml::device::resolve(compute, choice) {
                    Ok(c) => c,
                    Err(e) => {
                        send(TrainerEvent::Finished(Box::new(Err(e.to_string()))));
                        return;
                    }
                };
                send(TrainerEvent::Started {
                    device: compute.description.clone(),
                });
                // A panic in training becomes the run's error: the last committed checkpoint stays.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::ml::device::on_compute_threads(|| {
                        train(
                            &data,
                            &options,
                            &compute,
                            &out_dir,
                            &mut |p| send(TrainerEvent::Progress(p)),
                            &cancel,
                        )
                    })
                }));
                let result = match result {
                    Ok(Err(MlError::Cancelled)) => Err("stopped".to_string()),
                    Ok(other) => other.map_err(|e| e.to_string()),
                    Err(panic) => Err(format!(
                        "training stopped on an internal error ({}); the last checkpoint is kept",
                        crate::io::dicom::panic_message(panic.as_ref())
                    )),
                };
                send(TrainerEvent::Finished(Box::new(result)));
            })
            .map_err(|e| format!("cannot start the training thread: {e}"))?;
        Ok(generation)
    }
}
