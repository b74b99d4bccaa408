//! Exports and the PACS from the UI's point of view: the save dialog (with a fallback folder when
//! no dialog can be shown), the `cxrlens-export` thread, the `cxrlens-pacs` thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::{Slot, WorkerEvent, Workers, WriteKind};

impl Workers {
    /// Asks where to save an export (system dialog on its own thread).
    pub fn save_dialog(
        &mut self,
        suggested: String,
        export: crate::export::job::ExportChoice,
    ) -> Result<(), String> {
        if self.dialog_open {
            return Ok(());
        }
        self.dialog_open = true;
        self.spawn("cxrlens-file-dialog", Slot::Dialog, 0, move || {
            if !save_dialog_available() {
                // No desktop portal and no zenity: rfd would return "cancelled" at once and the
                // user would see nothing happen. Export to a known folder instead, and say so.
                let picked = fallback_export_path(&suggested);
                return Some(WorkerEvent::SaveChosen {
                    fallback: picked.is_some(),
                    picked,
                    export,
                });
            }
            let ext = export.kind.extension();
            let picked = rfd::FileDialog::new()
                .set_title(format!("Export {}", export.kind.label()))
                .set_file_name(suggested)
                .add_filter(export.kind.label(), &[ext])
                .save_file();
            Some(WorkerEvent::SaveChosen {
                picked,
                export,
                fallback: false,
            })
        })
    }

    /// Runs a PACS job on `cxrlens-pacs`: `job(progress, cancel)` may report progress (sent at
    /// once) and returns the final event. A new job cancels the previous one.
    pub fn pacs(
        &mut self,
        job: impl FnOnce(&dyn Fn(usize), &AtomicBool) -> crate::pacs::PacsEvent + Send + 'static,
    ) -> Result<(), String> {
        let (generation, cancel) = self.pacs.start();
        let tx = self.tx.clone();
        let wake = self.wake.clone();
        self.spawn("cxrlens-pacs", Slot::Pacs, generation, move || {
            let progress = |n: usize| {
                let _ = tx.send(WorkerEvent::Pacs {
                    generation,
                    event: crate::pacs::PacsEvent::Progress(n),
                });
                wake();
            };
            let event = job(&progress, &cancel);
            Some(WorkerEvent::Pacs { generation, event })
        })
    }

    /// Runs an export on the `cxrlens-export` thread; `WorkerEvent::Written` reports it.
    pub fn export(&mut self, job: crate::export::job::ExportJob) -> Result<(), String> {
        let kind = WriteKind::Export(job.kind, job.out.clone());
        self.spawn("cxrlens-export", Slot::Write, 0, move || {
            Some(WorkerEvent::Written {
                kind,
                result: crate::export::job::run(&job).map(|_| ()),
            })
        })
    }
}

/// Whether a save dialog can be shown: on Linux rfd needs a desktop portal on the session bus or
/// `zenity`; elsewhere the system dialog always exists.
fn save_dialog_available() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty());
    let zenity = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("zenity").is_file()));
    bus || zenity
}

/// `~/cxrlens-exports/NAME` (created), with `-2`, `-3`, … before the extension when taken.
fn fallback_export_path(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("HOME")?).join("cxrlens-exports");
    std::fs::create_dir_all(&dir).ok()?;
    let path = Path::new(name);
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (1..1000)
        .map(|i| {
            if i == 1 {
                dir.join(name)
            } else {
                dir.join(format!("{stem}-{i}{ext}"))
            }
        })
        .find(|p| !p.exists())
}
