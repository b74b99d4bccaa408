//! The checkpoint scheme both training loops (`ml::train`, `ml::saliency_train`) use: each epoch's
//! weights and optimizer state are written under new names (`checkpoint-NNN….bpk`), then
//! `checkpoint.json` — the commit record naming them — atomically, then the previous epoch's files
//! are removed. A kill at any moment leaves one complete checkpoint behind.
//!
//! `checkpoint.json` is read back from disk, so the file names in it are untrusted: a record naming
//! anything but a plain `checkpoint-….bpk` file in its own folder is refused (a tampered record
//! would otherwise make a later clean-up delete files elsewhere).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::MlError;
use crate::io::write::write_atomically;

/// The commit record's file name.
pub const CHECKPOINT: &str = "checkpoint.json";

/// A commit record: serialisable, and able to list the files it names.
pub trait Record: Serialize + DeserializeOwned {
    /// File names (in the output folder) this record's epoch consists of.
    fn files(&self) -> Vec<&str>;
}

/// The file name of part `part` (e.g. "optim.bpk", "classifier.bpk") of epoch `epoch`.
pub fn file_name(epoch: usize, part: &str) -> String {
    format!("checkpoint-{epoch:03}.{part}")
}

/// True for a name this module writes: a plain file name, `checkpoint-` … `.bpk`, no separators,
/// no parent references.
pub fn is_checkpoint_file(name: &str) -> bool {
    name.starts_with("checkpoint-")
        && name.ends_with(".bpk")
        && !name.contains(['/', '\\', ':', '\0'])
        && !name.contains("..")
        && name.len() < 128
}

/// The record in `out_dir`, if any. A record that cannot be parsed, or that names a file that is
/// not a checkpoint file of this folder, is an error.
pub fn read<T: Record>(out_dir: &Path) -> Result<Option<T>, MlError> {
    let path = out_dir.join(CHECKPOINT);
    let record: T = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MlError::ModelFile {
            message: format!("unreadable checkpoint: {e}"),
            path: path.clone(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if let Some(bad) = record.files().into_iter().find(|f| !is_checkpoint_file(f)) {
        return Err(MlError::ModelFile {
            message: format!(
                "the checkpoint names {bad:?}, which is not a checkpoint file of its folder"
            ),
            path,
        });
    }
    Ok(Some(record))
}

/// The record to resume from with `resume` set: `None` without one; an error when it was made with
/// other options or data (`matches` says), so a run never continues someone else's.
pub fn read_resumable<T: Record>(
    out_dir: &Path,
    resume: bool,
    matches: impl FnOnce(&T) -> bool,
) -> Result<Option<T>, MlError> {
    if !resume {
        return Ok(None);
    }
    match read::<T>(out_dir)? {
        Some(record) if !matches(&record) => Err(MlError::Config(format!(
            "the checkpoint in {} was made with different options or data; \
             use the same options, or remove checkpoint.json to start over",
            out_dir.display()
        ))),
        other => Ok(other),
    }
}

/// A file of a record read by `read` (its names are already checked).
pub fn path(out_dir: &Path, name: &str) -> PathBuf {
    out_dir.join(name)
}

/// Commits `record` (whose files are already written) and removes the previous epoch's files. When
/// the previous record cannot be read, every other checkpoint file in the folder is removed instead,
/// so an unreadable record leaves no orphans behind.
pub fn commit<T: Record>(
    out_dir: &Path,
    previous: Result<Option<T>, MlError>,
    record: &T,
) -> Result<(), MlError> {
    let json = serde_json::to_vec_pretty(record).map_err(|e| MlError::Config(e.to_string()))?;
    write_atomically(&out_dir.join(CHECKPOINT), &json)?;
    let keep = record.files();
    match previous {
        Ok(Some(p)) => {
            for f in p.files() {
                if !keep.contains(&f) {
                    let _ = std::fs::remove_file(out_dir.join(f));
                }
            }
        }
        Ok(None) => {}
        Err(_) => remove_other_files(out_dir, &keep)?,
    }
    Ok(())
}

/// After a finished run: the record and its files (or, if the record is unreadable, every
/// checkpoint file in the folder) are removed.
pub fn remove<T: Record>(out_dir: &Path) -> Result<(), MlError> {
    match read::<T>(out_dir) {
        Ok(Some(record)) => {
            for f in record.files() {
                let _ = std::fs::remove_file(out_dir.join(f));
            }
        }
        Ok(None) => return Ok(()),
        Err(_) => remove_other_files(out_dir, &[])?,
    }
    match std::fs::remove_file(out_dir.join(CHECKPOINT)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Removes the checkpoint files in `out_dir` (by name pattern, never following anything outside
/// it) except `keep`.
fn remove_other_files(out_dir: &Path, keep: &[&str]) -> Result<(), MlError> {
    for entry in std::fs::read_dir(out_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_checkpoint_file(name) && !keep.contains(&name) && entry.file_type()?.is_file() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Test {
        files: Vec<String>,
    }

    impl Record for Test {
        fn files(&self) -> Vec<&str> {
            self.files.iter().map(String::as_str).collect()
        }
    }

    #[test]
    fn a_tampered_record_cannot_name_files_outside_its_folder() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("run");
        std::fs::create_dir(&out).unwrap();
        let victim = root.path().join("precious.txt");
        std::fs::write(&victim, "the user's").unwrap();
        for bad in [
            "../precious.txt",
            "/etc/passwd",
            "checkpoint-001.bpk/../../x.bpk",
            "notes.txt",
        ] {
            let json = serde_json::json!({ "files": [bad] }).to_string();
            std::fs::write(out.join(CHECKPOINT), json).unwrap();
            assert!(read::<Test>(&out).is_err(), "{bad}");
            remove::<Test>(&out).unwrap();
            assert!(victim.exists(), "{bad} must not delete outside the folder");
        }
    }

    #[test]
    fn commit_removes_the_previous_epoch_and_an_unreadable_record_leaves_no_orphans() {
        let out = tempfile::tempdir().unwrap();
        let out = out.path();
        let write = |n: &str| std::fs::write(out.join(n), b"w").unwrap();
        write(&file_name(1, "bpk"));
        let one = Test {
            files: vec![file_name(1, "bpk")],
        };
        commit(out, read::<Test>(out), &one).unwrap();
        write(&file_name(2, "bpk"));
        let two = Test {
            files: vec![file_name(2, "bpk")],
        };
        commit(out, read::<Test>(out), &two).unwrap();
        assert!(!out.join(file_name(1, "bpk")).exists());
        assert!(out.join(file_name(2, "bpk")).exists());
        // The record is damaged; the next commit still cleans epoch 2's file up.
        std::fs::write(out.join(CHECKPOINT), "{ not json").unwrap();
        write(&file_name(3, "bpk"));
        let three = Test {
            files: vec![file_name(3, "bpk")],
        };
        commit(out, read::<Test>(out), &three).unwrap();
        assert!(!out.join(file_name(2, "bpk")).exists());
        assert!(out.join(file_name(3, "bpk")).exists());
        // A finished run removes everything of the checkpoint, nothing else.
        write("model.bpk");
        remove::<Test>(out).unwrap();
        assert!(!out.join(file_name(3, "bpk")).exists());
        assert!(!out.join(CHECKPOINT).exists());
        assert!(out.join("model.bpk").exists());
    }
}
