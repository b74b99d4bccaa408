//! Named worker threads for slow work: decoding, folder scans, file dialogs, CPU rendering, and the
//! long-lived inference worker (`inference`) that owns the burn device and models.
//! Each kind of job has a slot; starting a new job cancels the previous one in that slot (its result
//! is dropped when it arrives). Results come back over one channel and wake the UI with a repaint.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};

mod exports;
pub mod inference;
pub mod training;

use crate::io::study::{StudyTree, scan_folder};
use crate::io::{LoadError, LoadedImage};
use crate::ml::analysis::AnalysisResult;
use crate::render::cpu::render_rgba;
use crate::render::{ImageHandle, RenderSettings};

/// Which job slot a worker thread belongs to (for releasing it after a panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Decode,
    Scan,
    Render,
    GazeImport,
    GazeCompare,
    DatasetScan,
    Dialog,
    /// DICOMweb search, retrieve, store (one at a time).
    Pacs,
    /// File writes (no job slot: each is independent and short).
    Write,
}

/// What a file write was for; the UI finishes the action when the write is done.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteKind {
    /// The bundled sample unpacked here, to be opened.
    Sample(PathBuf),
    /// The gaze metrics table exported as CSV.
    Metrics(PathBuf),
    /// The compute backend setting saved.
    Settings(crate::ml::device::BackendChoice),
    /// The PACS server list saved.
    PacsServers,
    /// An export (PNG, Secondary Capture, report) written.
    Export(crate::export::job::ExportKind, PathBuf),
}

/// Something a worker finished.
pub enum WorkerEvent {
    /// A worker thread panicked: its slot is released and the user told (the app keeps running).
    Panicked {
        slot: Slot,
        generation: u64,
        thread: String,
        message: String,
    },
    Decoded {
        generation: u64,
        path: PathBuf,
        result: Box<Result<LoadedImage, LoadError>>,
    },
    Scanned {
        generation: u64,
        root: PathBuf,
        tree: StudyTree,
    },
    DialogClosed {
        picked: Option<PathBuf>,
        detail: Option<String>,
    },
    /// The export dialog closed: where to write `export` (nothing when cancelled). `fallback`: no
    /// dialog could be shown and the path is in the default export folder.
    SaveChosen {
        picked: Option<PathBuf>,
        export: crate::export::job::ExportChoice,
        fallback: bool,
    },
    /// A PACS job reported (progress, or its end).
    Pacs {
        generation: u64,
        event: crate::pacs::PacsEvent,
    },
    /// A file write ended (`Workers::write`).
    Written {
        kind: WriteKind,
        result: Result<(), String>,
    },
    CpuRendered {
        generation: u64,
        pane: u64,
        image_id: u64,
        size: [usize; 2],
        rgba: Vec<u8>,
    },
    /// The inference worker chose its device and loaded the models (or could not).
    ModelsReady(Box<Result<inference::ModelsReady, String>>),
    AnalysisProgress {
        generation: u64,
        fraction: f32,
        step: String,
    },
    /// An analysis ended: its result and its summary (for reports; source name and frame are
    /// filled in by the viewer).
    Analyzed {
        generation: u64,
        result: Box<Result<(AnalysisResult, crate::export::summary::AnalysisSummary), String>>,
    },
    /// A gaze file was read (or a simulated reading made) for image `image_id`.
    GazeImported {
        generation: u64,
        image_id: u64,
        import: Box<crate::gaze::GazeImport>,
    },
    /// From the trainer's scan or training run.
    Trainer {
        generation: u64,
        event: training::TrainerEvent,
    },
    /// The gaze heatmap of a compare job, ahead of its difference and metrics.
    GazeHeatmap {
        generation: u64,
        image_id: u64,
        map: Box<crate::imaging::ScalarImage>,
        seconds: f64,
    },
    /// Gaze heatmap, difference maps and metrics for image `image_id`.
    GazeCompared {
        generation: u64,
        image_id: u64,
        output: Box<crate::gaze::compare::CompareOutput>,
    },
}

/// A job slot: one job at a time, newer jobs cancel older ones.
#[derive(Default)]
pub struct JobSlot {
    generation: u64,
    cancel: Arc<AtomicBool>,
    busy: bool,
}

impl JobSlot {
    /// Cancels the running job (if any) and returns the new job's generation and cancel flag.
    pub fn start(&mut self) -> (u64, Arc<AtomicBool>) {
        self.cancel.store(true, Ordering::Relaxed);
        self.cancel = Arc::new(AtomicBool::new(false));
        self.generation += 1;
        self.busy = true;
        (self.generation, self.cancel.clone())
    }

    /// True when `generation` is the current job (the slot stays busy).
    pub fn is_current(&self, generation: u64) -> bool {
        self.busy && generation == self.generation
    }

    /// True when `generation` is the current job; marks the slot idle.
    pub fn finish(&mut self, generation: u64) -> bool {
        let current = generation == self.generation;
        if current {
            self.busy = false;
        }
        current
    }

    /// Asks the running job to stop but keeps its generation, so its final report is still
    /// accepted (a stopped training run reports how far it got).
    pub fn stop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn cancel(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.generation += 1;
        self.busy = false;
    }

    pub fn is_busy(&self) -> bool {
        self.busy
    }
}

/// Spawns jobs on named threads and funnels their results to the UI.
pub struct Workers {
    tx: Sender<WorkerEvent>,
    rx: Receiver<WorkerEvent>,
    wake: Arc<dyn Fn() + Send + Sync>,
    pub decode: JobSlot,
    pub scan: JobSlot,
    pub render: JobSlot,
    pub gaze_import: JobSlot,
    pub gaze_compare: JobSlot,
    pub dataset_scan: JobSlot,
    pub training: JobSlot,
    pub pacs: JobSlot,
    dialog_open: bool,
    /// The newest decode asked for while one was running (started when that one ends).
    pending_decode: Option<(PathBuf, u32)>,
    pub inference: Option<inference::InferenceWorker>,
}

impl Workers {
    /// `wake` is called after each result is sent (the UI passes `ctx.request_repaint`).
    pub fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            tx,
            rx,
            wake,
            decode: JobSlot::default(),
            scan: JobSlot::default(),
            render: JobSlot::default(),
            gaze_import: JobSlot::default(),
            gaze_compare: JobSlot::default(),
            dataset_scan: JobSlot::default(),
            training: JobSlot::default(),
            pacs: JobSlot::default(),
            dialog_open: false,
            pending_decode: None,
            inference: None,
        }
    }

    /// Start the inference worker (once).
    pub fn start_inference(
        &mut self,
        compute: Option<crate::ml::device::ComputeDevice>,
        choice: crate::ml::device::BackendChoice,
    ) -> Result<(), String> {
        if self.inference.is_none() {
            self.inference = Some(inference::InferenceWorker::start(
                compute,
                choice,
                self.tx.clone(),
                self.wake.clone(),
            )?);
        }
        Ok(())
    }

    /// Runs `job` on a named thread. A panic inside it is caught and reported as
    /// `WorkerEvent::Panicked` for `slot`/`generation`, so the slot never stays busy.
    /// Starts `job` on a named thread. If the thread cannot start, the job's slot is released (or
    /// the dialog marked closed), so nothing waits forever for a job that never ran.
    fn spawn(
        &mut self,
        name: &str,
        slot: Slot,
        generation: u64,
        job: impl FnOnce() -> Option<WorkerEvent> + Send + 'static,
    ) -> Result<(), String> {
        let tx = self.tx.clone();
        let wake = self.wake.clone();
        let thread = name.to_string();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let event = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
                    Ok(event) => event,
                    Err(panic) => Some(WorkerEvent::Panicked {
                        slot,
                        generation,
                        thread,
                        message: crate::io::dicom::panic_message(panic.as_ref()),
                    }),
                };
                if let Some(event) = event {
                    // The UI may have quit; nothing to report to then.
                    let _ = tx.send(event);
                    wake();
                }
            })
            .map(|_| ())
            .map_err(|e| {
                match self.slot_mut(slot) {
                    Some(s) => s.cancel(),
                    None if slot == Slot::Dialog => self.dialog_open = false,
                    None => {}
                }
                format!("cannot start worker thread {name}: {e}")
            })
    }

    /// Decodes frame `frame` (0-based) of `path`.
    /// Decodes frame `frame` of `path`. At most one decode runs (a radiograph can take 400 MB):
    /// a request made while one runs waits, replacing any request already waiting (the newest
    /// wins), and starts when the running one ends (`start_pending_decode`).
    pub fn decode(&mut self, path: PathBuf, frame: u32) -> Result<(), String> {
        if self.decode.is_busy() {
            self.pending_decode = Some((path, frame));
            return Ok(());
        }
        let (generation, cancel) = self.decode.start();
        self.spawn("cxrlens-decode", Slot::Decode, generation, move || {
            let result = crate::io::load_image_frame(&path, frame);
            (!cancel.load(Ordering::Relaxed)).then_some(WorkerEvent::Decoded {
                generation,
                path,
                result: Box::new(result),
            })
        })
    }

    /// Writes a file off the UI thread (`job` does the writing, atomically); `WorkerEvent::Written`
    /// reports the outcome with `kind`, so the UI can finish what the write was for.
    pub fn write(
        &mut self,
        kind: WriteKind,
        job: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) -> Result<(), String> {
        self.spawn("cxrlens-write", Slot::Write, 0, move || {
            Some(WorkerEvent::Written {
                kind,
                result: job(),
            })
        })
    }

    /// Called when a decode ended (its slot finished): starts the request that waited, if any.
    /// Returns true when one was started — the result that just arrived is then out of date.
    pub fn start_pending_decode(&mut self) -> Result<bool, String> {
        match self.pending_decode.take() {
            Some((path, frame)) => self.decode(path, frame).map(|_| true),
            None => Ok(false),
        }
    }

    pub fn scan(&mut self, root: PathBuf) -> Result<(), String> {
        let (generation, cancel) = self.scan.start();
        self.spawn("cxrlens-scan", Slot::Scan, generation, move || {
            let tree = scan_folder(&root, &cancel);
            (!cancel.load(Ordering::Relaxed)).then_some(WorkerEvent::Scanned {
                generation,
                root,
                tree,
            })
        })
    }

    /// Renders with the CPU path; only the newest request's result is used.
    /// Reads a gaze file for the image (`image_id` is the open image's handle id).
    pub fn import_gaze(
        &mut self,
        path: PathBuf,
        key: crate::gaze::ImageKey,
        image_id: u64,
    ) -> Result<(), String> {
        let (generation, cancel) = self.gaze_import.start();
        self.spawn(
            "cxrlens-gaze-import",
            Slot::GazeImport,
            generation,
            move || {
                let import = crate::gaze::import_for_image(&path, &key);
                (!cancel.load(Ordering::Relaxed)).then_some(WorkerEvent::GazeImported {
                    generation,
                    image_id,
                    import: Box::new(import),
                })
            },
        )
    }

    /// Makes a simulated reading (biased to the lung mask when there is one).
    pub fn simulate_gaze(
        &mut self,
        width: u32,
        height: u32,
        lung: Option<Arc<crate::imaging::ScalarImage>>,
        id: String,
        image_id: u64,
    ) -> Result<(), String> {
        let (generation, cancel) = self.gaze_import.start();
        self.spawn(
            "cxrlens-gaze-import",
            Slot::GazeImport,
            generation,
            move || {
                let recording = crate::gaze::synthetic::generate(
                    width,
                    height,
                    lung.as_deref(),
                    &id,
                    &crate::gaze::synthetic::SyntheticOptions::default(),
                );
                (!cancel.load(Ordering::Relaxed)).then_some(WorkerEvent::GazeImported {
                    generation,
                    image_id,
                    import: Box::new(crate::gaze::GazeImport {
                        recordings: vec![recording],
                        ..Default::default()
                    }),
                })
            },
        )
    }

    /// Builds the gaze heatmap, the difference maps and the metrics table.
    pub fn compare_gaze(
        &mut self,
        job: crate::gaze::compare::CompareJob,
        image_id: u64,
    ) -> Result<(), String> {
        let (generation, cancel) = self.gaze_compare.start();
        let (tx, wake) = (self.tx.clone(), self.wake.clone());
        self.spawn("cxrlens-gaze", Slot::GazeCompare, generation, move || {
            let output = crate::gaze::compare::compute_reporting(&job, &mut |map, seconds| {
                if cancel.load(Ordering::Relaxed) {
                    return false;
                }
                let _ = tx.send(WorkerEvent::GazeHeatmap {
                    generation,
                    image_id,
                    map: Box::new(map.clone()),
                    seconds,
                });
                wake();
                true
            })?;
            (!cancel.load(Ordering::Relaxed)).then_some(WorkerEvent::GazeCompared {
                generation,
                image_id,
                output: Box::new(output),
            })
        })
    }

    pub fn render_cpu(
        &mut self,
        pane: u64,
        image: ImageHandle,
        settings: RenderSettings,
    ) -> Result<u64, String> {
        let (generation, cancel) = self.render.start();
        self.spawn("cxrlens-cpu-render", Slot::Render, generation, move || {
            let rgba = render_rgba(&image, &settings);
            let size = [image.image.width as usize, image.image.height as usize];
            (!cancel.load(Ordering::Relaxed)).then_some(WorkerEvent::CpuRendered {
                generation,
                pane,
                image_id: image.id,
                size,
                rgba,
            })
        })?;
        Ok(generation)
    }

    /// Shows the system file dialog (rfd) off the UI thread. Without an xdg portal or GTK it reports
    /// that no dialog is available, and the UI offers its own path entry instead.
    pub fn open_dialog(&mut self, folder: bool) -> Result<(), String> {
        if self.dialog_open {
            return Ok(());
        }
        self.dialog_open = true;
        self.spawn("cxrlens-file-dialog", Slot::Dialog, 0, move || {
            let dialog =
                rfd::FileDialog::new().set_title(if folder { "Open folder" } else { "Open image" });
            let picked = if folder {
                dialog.pick_folder()
            } else {
                dialog
                    .add_filter("Images", &["dcm", "dicom", "png", "jpg", "jpeg", "DCM"])
                    .add_filter("All files", &["*"])
                    .pick_file()
            };
            Some(WorkerEvent::DialogClosed {
                picked,
                detail: None,
            })
        })
    }

    pub fn dialog_closed(&mut self) {
        self.dialog_open = false;
    }

    /// The job slot `slot` (the dialog has none).
    pub fn slot_mut(&mut self, slot: Slot) -> Option<&mut JobSlot> {
        match slot {
            Slot::Decode => Some(&mut self.decode),
            Slot::Scan => Some(&mut self.scan),
            Slot::Render => Some(&mut self.render),
            Slot::GazeImport => Some(&mut self.gaze_import),
            Slot::GazeCompare => Some(&mut self.gaze_compare),
            Slot::DatasetScan => Some(&mut self.dataset_scan),
            Slot::Pacs => Some(&mut self.pacs),
            Slot::Dialog | Slot::Write => None,
        }
    }

    /// Results that arrived since the last call.
    pub fn drain(&self) -> Vec<WorkerEvent> {
        self.rx.try_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_job_cancels_older_and_stale_results_are_rejected() {
        let mut slot = JobSlot::default();
        let (g1, c1) = slot.start();
        let (g2, c2) = slot.start();
        assert!(c1.load(Ordering::Relaxed));
        assert!(!c2.load(Ordering::Relaxed));
        assert!(!slot.finish(g1));
        assert!(slot.is_busy());
        assert!(slot.finish(g2));
        assert!(!slot.is_busy());
    }

    #[test]
    fn a_panicking_job_is_reported_and_its_slot_can_be_released() {
        let mut workers = Workers::new(Arc::new(|| {}));
        let (generation, _) = workers.decode.start();
        workers
            .spawn("cxrlens-test", Slot::Decode, generation, || {
                panic!("a codec bug")
            })
            .unwrap();
        let start = std::time::Instant::now();
        let event = loop {
            if let Some(e) = workers.drain().into_iter().next() {
                break e;
            }
            assert!(start.elapsed().as_secs() < 10, "no event from the thread");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        match event {
            WorkerEvent::Panicked {
                slot,
                generation: g,
                thread,
                message,
            } => {
                assert_eq!((slot, g), (Slot::Decode, generation));
                assert_eq!(thread, "cxrlens-test");
                assert!(message.contains("a codec bug"), "{message}");
                assert!(workers.slot_mut(slot).unwrap().finish(g));
                assert!(!workers.decode.is_busy());
            }
            _ => panic!("expected WorkerEvent::Panicked"),
        }
    }

    fn next_event(workers: &Workers) -> WorkerEvent {
        let start = std::time::Instant::now();
        loop {
            if let Some(e) = workers.drain().into_iter().next() {
                return e;
            }
            assert!(start.elapsed().as_secs() < 10, "no event from the thread");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn decodes_asked_for_while_one_runs_wait_and_the_newest_wins() {
        let mut workers = Workers::new(Arc::new(|| {}));
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        workers.decode(a.clone(), 0).unwrap();
        workers.decode(b, 0).unwrap();
        workers.decode(c.clone(), 0).unwrap();
        // One thread ran: the first request's.
        let WorkerEvent::Decoded {
            generation, path, ..
        } = next_event(&workers)
        else {
            panic!("expected a decode result")
        };
        assert_eq!(path, a);
        assert!(workers.decode.finish(generation));
        assert!(
            workers.start_pending_decode().unwrap(),
            "the newest request starts"
        );
        let WorkerEvent::Decoded {
            path, generation, ..
        } = next_event(&workers)
        else {
            panic!("expected a decode result")
        };
        assert_eq!(path, c, "the request in between was replaced, never run");
        assert!(workers.decode.finish(generation));
        assert!(!workers.start_pending_decode().unwrap());
        assert!(workers.drain().is_empty());
    }
}
