//! Folder and DICOMDIR scanning into a study / series / image tree. Reads headers only (stops before
//! Pixel Data), can be cancelled between files, and records problems without stopping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::dicom::{int, open_header, string};
use super::{FileKind, LoadError, sniff};

/// Stop scanning a folder after this many files (a mistaken click on `/` must not run for hours).
pub const MAX_FILES: usize = 50_000;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StudyTree {
    pub studies: Vec<Study>,
    /// PNG/JPEG files found beside the DICOM files.
    pub other_images: Vec<InstanceEntry>,
    /// Files that could not be read, with the reason (file name only).
    pub problems: Vec<String>,
    /// Whether the tree came from a DICOMDIR.
    pub from_dicomdir: bool,
}

impl StudyTree {
    /// All images in display order (for next/previous navigation).
    pub fn all_images(&self) -> impl Iterator<Item = &InstanceEntry> {
        self.studies
            .iter()
            .flat_map(|s| s.series.iter().flat_map(|se| se.instances.iter()))
            .chain(self.other_images.iter())
    }

    pub fn image_count(&self) -> usize {
        self.all_images().count()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Study {
    pub uid: String,
    pub description: Option<String>,
    pub series: Vec<Series>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub uid: String,
    pub number: Option<i64>,
    pub modality: Option<String>,
    pub description: Option<String>,
    pub instances: Vec<InstanceEntry>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InstanceEntry {
    pub path: PathBuf,
    pub instance_number: Option<i64>,
    /// File name (no folder).
    pub file_name: String,
}

impl InstanceEntry {
    fn new(path: PathBuf, instance_number: Option<i64>) -> Self {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            path,
            instance_number,
            file_name,
        }
    }
}

#[derive(Default)]
struct Builder {
    studies: BTreeMap<String, (Option<String>, BTreeMap<String, Series>)>,
}

impl Builder {
    fn add(&mut self, obj: &InMemDicomObject, path: PathBuf) {
        let study_uid =
            string(obj, tags::STUDY_INSTANCE_UID).unwrap_or_else(|| "(no study UID)".into());
        let series_uid =
            string(obj, tags::SERIES_INSTANCE_UID).unwrap_or_else(|| "(no series UID)".into());
        let study = self
            .studies
            .entry(study_uid)
            .or_insert_with(|| (string(obj, tags::STUDY_DESCRIPTION), BTreeMap::new()));
        let series = study.1.entry(series_uid.clone()).or_insert_with(|| Series {
            uid: series_uid,
            number: int(obj, tags::SERIES_NUMBER),
            modality: string(obj, tags::MODALITY),
            description: string(obj, tags::SERIES_DESCRIPTION),
            instances: Vec::new(),
        });
        series
            .instances
            .push(InstanceEntry::new(path, int(obj, tags::INSTANCE_NUMBER)));
    }

    fn finish(self) -> Vec<Study> {
        self.studies
            .into_iter()
            .map(|(uid, (description, series))| {
                let mut series: Vec<Series> = series.into_values().collect();
                series.sort_by_key(|s| s.number.unwrap_or(i64::MAX));
                for s in &mut series {
                    s.instances.sort_by(|a, b| {
                        (a.instance_number.unwrap_or(i64::MAX), &a.file_name)
                            .cmp(&(b.instance_number.unwrap_or(i64::MAX), &b.file_name))
                    });
                }
                Study {
                    uid,
                    description,
                    series,
                }
            })
            .collect()
    }
}

/// Scans a folder (recursively), preferring its DICOMDIR when there is one.
pub fn scan_folder(root: &Path, cancel: &Arc<AtomicBool>) -> StudyTree {
    let dicomdir = root.join("DICOMDIR");
    if dicomdir.is_file() {
        match read_dicomdir(&dicomdir) {
            Ok(tree) if tree.image_count() > 0 => return tree,
            Ok(_) => {}
            Err(e) => {
                let mut tree = scan_files(root, cancel);
                tree.problems
                    .insert(0, format!("DICOMDIR: {e}; scanned the folder instead"));
                return tree;
            }
        }
    }
    scan_files(root, cancel)
}

fn scan_files(root: &Path, cancel: &Arc<AtomicBool>) -> StudyTree {
    let mut builder = Builder::default();
    let mut tree = StudyTree::default();
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let shown = |p: &Path| {
            p.strip_prefix(root)
                .ok()
                .filter(|r| !r.as_os_str().is_empty())
                .unwrap_or(p)
                .display()
                .to_string()
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                tree.problems.push(format!(
                    "{}: the folder could not be read: {e}",
                    shown(&dir)
                ));
                continue;
            }
        };
        let mut listed = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => listed.push(e.path()),
                Err(e) => tree
                    .problems
                    .push(format!("{}: an entry could not be read: {e}", shown(&dir))),
            }
        }
        let mut entries = listed;
        entries.sort();
        for path in entries {
            if cancel.load(Ordering::Relaxed) {
                tree.problems.push("scan cancelled".into());
                tree.studies = builder.finish();
                return tree;
            }
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            seen += 1;
            if seen > MAX_FILES {
                tree.problems
                    .push(format!("stopped after {MAX_FILES} files"));
                tree.studies = builder.finish();
                return tree;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name == "DICOMDIR" {
                continue;
            }
            match sniff(&path) {
                Ok(FileKind::Dicom(layout)) => match open_header(&path, layout) {
                    Ok(obj) => builder.add(&obj, path),
                    Err(e) => tree.problems.push(format!("{name}: {e}")),
                },
                Ok(FileKind::Png | FileKind::Jpeg) => {
                    tree.other_images.push(InstanceEntry::new(path, None))
                }
                // Not an image: text files, reports, etc. are simply not listed.
                Err(LoadError::NotRecognised | LoadError::Empty) => {}
                // Unreadable (permissions, a dangling link, an I/O error): said, not hidden.
                Err(e) => tree
                    .problems
                    .push(format!("{}: could not be read: {e}", shown(&path))),
            }
        }
    }
    tree.studies = builder.finish();
    tree
}

/// The path of a Referenced File ID (components separated by `\\`) inside `base`, or `None` when it
/// would leave `base`: an absolute path, a drive or root prefix, `..`, `.` or an empty component, or a
/// component holding a path separator of its own.
pub fn referenced_file(base: &Path, file_id: &str) -> Option<PathBuf> {
    use std::path::Component;
    let mut file = base.to_path_buf();
    let parts: Vec<&str> = file_id.split('\\').map(str::trim).collect();
    if parts.is_empty() || file_id.trim().is_empty() {
        return None;
    }
    for part in parts {
        if part.is_empty() || part.contains('/') || part.contains(':') {
            return None;
        }
        let mut components = Path::new(part).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(c)), None) => file.push(c),
            _ => return None,
        }
    }
    Some(file)
}

/// Reads a DICOMDIR's directory records (PATIENT → STUDY → SERIES → IMAGE, in file order).
pub fn read_dicomdir(path: &Path) -> Result<StudyTree, String> {
    let obj = dicom_object::open_file(path).map_err(|e| e.to_string())?;
    let base = path.parent().unwrap_or(Path::new("."));
    let records = obj
        .element(tags::DIRECTORY_RECORD_SEQUENCE)
        .map_err(|_| "no Directory Record Sequence".to_string())?;
    let items = records
        .items()
        .ok_or("Directory Record Sequence is not a sequence")?;
    let mut studies: Vec<Study> = Vec::new();
    let mut tree = StudyTree {
        from_dicomdir: true,
        ..Default::default()
    };
    for item in items {
        let kind = string(item, tags::DIRECTORY_RECORD_TYPE).unwrap_or_default();
        match kind.as_str() {
            "STUDY" => studies.push(Study {
                uid: string(item, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
                description: string(item, tags::STUDY_DESCRIPTION),
                series: Vec::new(),
            }),
            "SERIES" => {
                let series = Series {
                    uid: string(item, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
                    number: int(item, tags::SERIES_NUMBER),
                    modality: string(item, tags::MODALITY),
                    description: string(item, tags::SERIES_DESCRIPTION),
                    instances: Vec::new(),
                };
                match studies.last_mut() {
                    Some(study) => study.series.push(series),
                    None => tree
                        .problems
                        .push("DICOMDIR: a SERIES record outside any STUDY".into()),
                }
            }
            "IMAGE" => {
                let Some(file_id) = string(item, tags::REFERENCED_FILE_ID) else {
                    tree.problems
                        .push("DICOMDIR: an IMAGE record without Referenced File ID".into());
                    continue;
                };
                let Some(file) = referenced_file(base, &file_id) else {
                    tree.problems.push(
                        "DICOMDIR: a Referenced File ID that leaves the DICOMDIR's folder was refused"
                            .into(),
                    );
                    continue;
                };
                let entry = InstanceEntry::new(file, int(item, tags::INSTANCE_NUMBER));
                match studies.last_mut().and_then(|s| s.series.last_mut()) {
                    Some(series) => series.instances.push(entry),
                    None => tree
                        .problems
                        .push("DICOMDIR: an IMAGE record outside any SERIES".into()),
                }
            }
            _ => {}
        }
    }
    tree.studies = studies;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_files_are_reported_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
        // A dangling link: it cannot be opened (as a file without read permission cannot, for a
        // user other than root).
        std::os::unix::fs::symlink(dir.path().join("gone.dcm"), dir.path().join("link.dcm"))
            .unwrap();
        let tree = scan_folder(dir.path(), &Arc::new(AtomicBool::new(false)));
        assert_eq!(tree.problems.len(), 1, "{:?}", tree.problems);
        assert!(tree.problems[0].starts_with("link.dcm: could not be read"));
    }

    #[test]
    fn referenced_file_ids_stay_inside_the_folder() {
        let base = Path::new("/media/cd");
        assert_eq!(
            referenced_file(base, "DICOM\\ST000001\\IM000001"),
            Some(PathBuf::from("/media/cd/DICOM/ST000001/IM000001"))
        );
        for escaping in [
            "..\\..\\etc\\passwd",
            "DICOM\\..\\..\\secret",
            "\\etc\\passwd",
            "/etc/passwd",
            "DICOM/../../x",
            "C:\\Windows\\x",
            ".\\IM1",
            "DICOM\\\\IM1",
            "",
        ] {
            assert_eq!(referenced_file(base, escaping), None, "{escaping:?}");
        }
    }
}
