//! Radiologists' eye gaze: import of EGD-CXR and REFLACX recordings, static heatmaps by each
//! dataset's published recipe, saliency metrics (KL, CC, HS, SIM, NSS, AUC-Judd) and heatmap-vs-region
//! checks (Diff_GradCAM, EHR-AUC), and a synthetic gaze generator for tests and demos.
//!
//! Everything is in image space: fixation coordinates are original-image pixels (x right, y down),
//! maps are `ScalarImage`s at image resolution. No egui here.

pub mod compare;
pub mod egd;
pub mod heatmap;
pub mod metrics;
pub mod reflacx;
pub mod synthetic;
pub mod table;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which dataset's conventions a recording follows (and so which heatmap recipe applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GazeFormat {
    EgdCxr,
    Reflacx,
}

impl GazeFormat {
    pub fn label(self) -> &'static str {
        match self {
            GazeFormat::EgdCxr => "EGD-CXR",
            GazeFormat::Reflacx => "REFLACX",
        }
    }
}

/// Image-pixel rectangle (inclusive min, inclusive max), e.g. the part of the image shown on screen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PixelRect {
    pub xmin: f32,
    pub ymin: f32,
    pub xmax: f32,
    pub ymax: f32,
}

/// One fixation, in original image pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fixation {
    pub x: f32,
    pub y: f32,
    /// Start time in seconds (the dataset's clock).
    pub start_s: f64,
    pub duration_s: f64,
    /// Image pixels per degree of visual angle (x, y), where the recording gives it (REFLACX).
    pub px_per_degree: Option<[f32; 2]>,
    /// The part of the image visible when the fixation was made (REFLACX: zoom and pan).
    pub shown: Option<PixelRect>,
}

/// The fixations of one reading of one image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GazeRecording {
    pub format: GazeFormat,
    /// The image this recording belongs to (EGD-CXR DICOM_ID, REFLACX dicom_id or case id).
    pub image_id: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// Fixations on the image, in reading order.
    pub fixations: Vec<Fixation>,
    /// Fixations that fell outside the image (EGD-CXR −1 coordinates, or outside its bounds).
    pub off_image: usize,
    /// True when the recording was made by `synthetic` (shown as "simulated" wherever it appears).
    pub simulated: bool,
}

impl GazeRecording {
    /// Total fixation time in seconds.
    pub fn dwell_seconds(&self) -> f64 {
        self.fixations.iter().map(|f| f.duration_s).sum()
    }

    pub fn title(&self) -> String {
        format!(
            "{}{} {} ({} fixations)",
            if self.simulated { "Simulated " } else { "" },
            self.format.label(),
            self.image_id,
            self.fixations.len()
        )
    }
}

/// A problem in a gaze file, located as precisely as the file allows.
#[derive(Clone, Debug, PartialEq)]
pub struct GazeProblem {
    pub file: PathBuf,
    /// 1-based line (the header is line 1).
    pub line: Option<u64>,
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for GazeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.file.file_name().map_or_else(
            || self.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        write!(f, "{name}")?;
        if let Some(l) = self.line {
            write!(f, " line {l}")?;
        }
        if let Some(c) = &self.column {
            write!(f, ", column {c}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What an import produced: the recordings that matched an image, and every problem met.
#[derive(Clone, Debug, Default)]
pub struct GazeImport {
    pub recordings: Vec<GazeRecording>,
    pub problems: Vec<GazeProblem>,
    /// Rows of calibration images (EGD-CXR DICOM_IDs not in the master sheet), skipped.
    pub calibration_rows: usize,
}

/// An image a recording can be matched to: its ids (file stem, SOP Instance UID, …) and size.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageKey {
    pub ids: Vec<String>,
    pub width: u32,
    pub height: u32,
}

impl ImageKey {
    /// Ids for an image file: its file stem, plus any extra ids (e.g. the SOP Instance UID).
    pub fn for_file(path: &Path, extra: &[String], width: u32, height: u32) -> Self {
        let mut ids: Vec<String> = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .into_iter()
            .collect();
        ids.extend(extra.iter().filter(|s| !s.is_empty()).cloned());
        Self { ids, width, height }
    }

    pub fn matches(&self, id: &str) -> bool {
        self.ids.iter().any(|i| i == id.trim())
    }
}

/// Reads a CSV's header and rows, keeping 1-based line numbers. Problems go to `problems`.
pub(crate) struct CsvTable {
    pub file: PathBuf,
    pub headers: Vec<String>,
    /// (line, fields)
    pub rows: Vec<(u64, Vec<String>)>,
}

impl CsvTable {
    pub fn read(path: &Path, problems: &mut Vec<GazeProblem>) -> Option<Self> {
        let mut reader = match csv::ReaderBuilder::new().flexible(true).from_path(path) {
            Ok(r) => r,
            Err(e) => {
                problems.push(GazeProblem {
                    file: path.to_path_buf(),
                    line: None,
                    column: None,
                    message: format!("cannot read: {e}"),
                });
                return None;
            }
        };
        let headers: Vec<String> = match reader.headers() {
            Ok(h) => h.iter().map(|s| s.trim().to_string()).collect(),
            Err(e) => {
                problems.push(GazeProblem {
                    file: path.to_path_buf(),
                    line: Some(1),
                    column: None,
                    message: format!("unreadable header: {e}"),
                });
                return None;
            }
        };
        let mut rows = Vec::new();
        for record in reader.records() {
            match record {
                Ok(r) => {
                    let line = r.position().map_or(0, |p| p.line());
                    rows.push((line, r.iter().map(str::to_string).collect()));
                }
                Err(e) => problems.push(GazeProblem {
                    file: path.to_path_buf(),
                    line: e.position().map(|p| p.line()),
                    column: None,
                    message: format!("unreadable row: {e}"),
                }),
            }
        }
        Some(Self {
            file: path.to_path_buf(),
            headers,
            rows,
        })
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    }

    /// The index of a required column, or a problem naming it.
    pub fn require(&self, name: &str, problems: &mut Vec<GazeProblem>) -> Option<usize> {
        let c = self.column(name);
        if c.is_none() {
            problems.push(GazeProblem {
                file: self.file.clone(),
                line: Some(1),
                column: Some(name.into()),
                message: "required column is missing from the header".into(),
            });
        }
        c
    }

    pub fn problem(&self, line: u64, column: &str, message: impl Into<String>) -> GazeProblem {
        GazeProblem {
            file: self.file.clone(),
            line: Some(line),
            column: Some(column.into()),
            message: message.into(),
        }
    }

    /// Parses field `index` of a row as a number; a problem (with line and column) if it is not one.
    pub fn number(&self, line: u64, fields: &[String], index: usize) -> Result<f64, GazeProblem> {
        let name = &self.headers[index];
        let text = fields.get(index).map(|s| s.trim()).unwrap_or("");
        if text.is_empty() {
            return Err(self.problem(line, name, "empty value"));
        }
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.problem(line, name, format!("'{text}' is not a number")))
    }
}

/// Ids for an opened image: its file stem and, for DICOM, the SOP Instance UID.
pub fn image_key(path: &Path, loaded: &crate::io::LoadedImage) -> ImageKey {
    let uid: Vec<String> = loaded
        .tags
        .iter()
        .filter(|t| t.depth == 0 && (t.group, t.element) == (0x0008, 0x0018))
        .map(|t| t.value.trim().trim_end_matches('\0').to_string())
        .collect();
    ImageKey::for_file(path, &uid, loaded.image.width, loaded.image.height)
}

/// Tells the format of a gaze file from its header.
pub fn detect_format(path: &Path) -> Result<GazeFormat, GazeProblem> {
    let problem = |message: String| GazeProblem {
        file: path.to_path_buf(),
        line: Some(1),
        column: None,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| problem(format!("cannot read: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| problem(format!("unreadable header: {e}")))?;
    let has = |name: &str| headers.iter().any(|h| h.trim().eq_ignore_ascii_case(name));
    if has("DICOM_ID") {
        Ok(GazeFormat::EgdCxr)
    } else if has("timestamp_start_fixation") {
        Ok(GazeFormat::Reflacx)
    } else {
        Err(problem(
            "neither an EGD-CXR file (no DICOM_ID column) nor a REFLACX fixations file \
             (no timestamp_start_fixation column)"
                .into(),
        ))
    }
}

/// Imports a gaze file of either format for `image`, finding the companion tables where the
/// datasets keep them: EGD-CXR `master_sheet.csv` in the same folder; REFLACX
/// `metadata_phase_*.csv` that lists the case, one folder up.
pub fn import_for_image(path: &Path, image: &ImageKey) -> GazeImport {
    let format = match detect_format(path) {
        Ok(f) => f,
        Err(p) => {
            return GazeImport {
                problems: vec![p],
                ..Default::default()
            };
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    match format {
        GazeFormat::EgdCxr => {
            let sheet = dir.join("master_sheet.csv");
            egd::import(
                path,
                sheet.is_file().then_some(sheet.as_path()),
                std::slice::from_ref(image),
            )
        }
        GazeFormat::Reflacx => {
            let case = dir
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let mut ignored = Vec::new();
            let metadata = dir.parent().and_then(|up| {
                let mut files: Vec<PathBuf> = std::fs::read_dir(up)
                    .ok()?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("metadata_phase_"))
                    })
                    .collect();
                files.sort();
                files
                    .into_iter()
                    .find(|f| reflacx::read_case(f, &case, &mut ignored).is_some())
            });
            reflacx::import(path, image, metadata.as_deref())
        }
    }
}
