//! The long-lived inference worker: one named thread (`cxrlens-inference`) that owns the burn
//! device and the loaded models for the life of the app. Requests are queued; a newer request
//! cancels an older one (between analysis steps), and only the newest result is reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};

use super::WorkerEvent;
use crate::ml::analysis::{AnalysisRequest, Models, analyze};
use std::path::PathBuf;

use crate::ml::bundle::{BundleInfo, ModelKind, discover};
use crate::ml::device::{BackendChoice, ComputeDevice};
use crate::ml::error::MlError;

/// A bundle the user can pick in the Analysis panel.
#[derive(Clone, Debug, PartialEq)]
pub struct AvailableModel {
    pub kind: ModelKind,
    pub title: String,
    pub dir: PathBuf,
    /// Shipped with the app (else trained by the user).
    pub shipped: bool,
}

/// What the worker found at start-up or after a reload.
#[derive(Clone, Debug)]
pub struct ModelsReady {
    pub device: String,
    pub reason: String,
    /// "name version" of each loaded model.
    pub models: Vec<String>,
    /// Folders of the loaded bundles.
    pub loaded: Vec<PathBuf>,
    /// Every bundle found (shipped and the user's), loaded or not.
    pub available: Vec<AvailableModel>,
    pub problems: Vec<String>,
}

enum Job {
    Analyze {
        generation: u64,
        request: Box<AnalysisRequest>,
    },
    /// Discover the bundles again and load them, preferring these folders for their kind.
    Reload { preferred: Vec<PathBuf> },
}

/// Handle to the inference thread. Dropping it ends the thread after its current job.
pub struct InferenceWorker {
    jobs: Sender<Job>,
    latest: Arc<AtomicU64>,
}

impl InferenceWorker {
    /// Start the thread. With `compute` = `None` it chooses the device itself (`BackendChoice`).
    pub fn start(
        compute: Option<ComputeDevice>,
        choice: BackendChoice,
        events: Sender<WorkerEvent>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Self, String> {
        let (jobs, rx) = mpsc::channel();
        let latest = Arc::new(AtomicU64::new(0));
        let latest_in_thread = latest.clone();
        std::thread::Builder::new()
            .name("cxrlens-inference".into())
            .spawn(move || run(compute, choice, rx, events, wake, latest_in_thread))
            .map_err(|e| format!("cannot start the inference thread: {e}"))?;
        Ok(Self { jobs, latest })
    }

    /// Queue an analysis; returns its generation. Older analyses stop at their next step.
    pub fn analyze(&mut self, request: AnalysisRequest) -> Result<u64, String> {
        let generation = self.latest.fetch_add(1, Ordering::SeqCst) + 1;
        self.jobs
            .send(Job::Analyze {
                generation,
                request: Box::new(request),
            })
            .map_err(|_| "the inference worker has stopped".to_string())?;
        Ok(generation)
    }

    /// Re-discover the bundles (e.g. after training) and load the preferred ones for their kind.
    pub fn reload(&mut self, preferred: Vec<PathBuf>) -> Result<(), String> {
        self.latest.fetch_add(1, Ordering::SeqCst);
        self.jobs
            .send(Job::Reload { preferred })
            .map_err(|_| "the inference worker has stopped".to_string())
    }

    /// Cancel whatever is running or queued.
    pub fn cancel(&mut self) {
        self.latest.fetch_add(1, Ordering::SeqCst);
    }
}

fn run(
    compute: Option<ComputeDevice>,
    choice: BackendChoice,
    rx: Receiver<Job>,
    events: Sender<WorkerEvent>,
    wake: Arc<dyn Fn() + Send + Sync>,
    latest: Arc<AtomicU64>,
) {
    let send = |event: WorkerEvent| {
        let _ = events.send(event);
        wake();
    };
    let compute = match crate::ml::device::resolve(compute, choice) {
        Ok(c) => c,
        Err(e) => {
            send(WorkerEvent::ModelsReady(Box::new(Err(e.to_string()))));
            return;
        }
    };
    let mut models = load_models(&compute, &[], &send);
    while let Ok(job) = rx.recv() {
        let job = match job {
            Job::Reload { preferred } => {
                models = load_models(&compute, &preferred, &send);
                continue;
            }
            job => job,
        };
        // Skip to the newest queued analysis (a queued reload is done first).
        let mut job = job;
        while let Ok(newer) = rx.try_recv() {
            match newer {
                Job::Reload { preferred } => models = load_models(&compute, &preferred, &send),
                analysis => job = analysis,
            }
        }
        let Job::Analyze {
            generation,
            request,
        } = job
        else {
            continue;
        };
        if latest.load(Ordering::SeqCst) != generation {
            continue;
        }
        let mut last_fraction = -1.0_f32;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            analyze(&models, &request, &mut |fraction, step| {
                if latest.load(Ordering::SeqCst) != generation {
                    return false;
                }
                if fraction - last_fraction >= 0.05 {
                    last_fraction = fraction;
                    send(WorkerEvent::AnalysisProgress {
                        generation,
                        fraction,
                        step: step.to_string(),
                    });
                }
                true
            })
        }))
        .unwrap_or_else(|panic| {
            Err(MlError::Internal(format!(
                "the analysis stopped on an internal error ({})",
                crate::io::dicom::panic_message(panic.as_ref())
            )))
        });
        match result {
            Err(MlError::Cancelled) => {}
            other => send(WorkerEvent::Analyzed {
                generation,
                result: Box::new(other.map_err(|e| e.to_string()).map(|r| {
                    let size = (request.image.width, request.image.height);
                    let summary = crate::export::summary::summarize(
                        &r,
                        &models.infos(),
                        "",
                        0,
                        size,
                        &compute.description,
                    );
                    (r, summary)
                })),
            }),
        }
    }
}

/// Finds the bundles, puts the preferred folders first (so `Models::load` takes them for their
/// kind), loads them and reports what is loaded and what is available.
fn load_models(
    compute: &ComputeDevice,
    preferred: &[PathBuf],
    send: &dyn Fn(WorkerEvent),
) -> Models {
    let (mut bundles, mut problems) = discover();
    bundles.sort_by_key(|b: &BundleInfo| !preferred.contains(&b.dir));
    let (models, load_problems) = Models::load(&bundles, &compute.device);
    problems.extend(load_problems);
    let loaded: Vec<(String, PathBuf)> = models
        .lung
        .iter()
        .map(|(_, i)| (i.title(), i.dir.clone()))
        .chain(
            models
                .classifier
                .iter()
                .map(|(_, i)| (i.title(), i.dir.clone())),
        )
        .chain(
            models
                .saliency
                .iter()
                .map(|(_, i)| (i.title(), i.dir.clone())),
        )
        .collect();
    let mut available: Vec<AvailableModel> = bundles
        .iter()
        .map(|b| AvailableModel {
            kind: b.card.kind,
            title: b.title(),
            dir: b.dir.clone(),
            shipped: b.shipped,
        })
        .collect();
    available.sort_by(|a, b| a.dir.cmp(&b.dir));
    send(WorkerEvent::ModelsReady(Box::new(Ok(ModelsReady {
        device: compute.description.clone(),
        reason: compute.reason.clone(),
        models: loaded.iter().map(|(t, _)| t.clone()).collect(),
        loaded: loaded.into_iter().map(|(_, d)| d).collect(),
        available,
        problems,
    }))));
    models
}
