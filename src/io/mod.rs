//! Reading images from disk: DICOM (every transfer syntax dicom-rs decodes here, with or without a
//! file-meta header), PNG and JPEG; folder and DICOMDIR scanning into a study/series/image tree; the
//! tag list for the tag browser. No UI here; all functions are blocking and meant for worker threads.

pub mod dicom;
pub mod error;
pub mod raster;
pub mod study;
pub mod tags;
pub mod write;

use std::path::Path;
use std::sync::Arc;

pub use error::LoadError;

use crate::imaging::measure::Calibration;
use crate::imaging::{ScalarImage, ValueStats, VoiLut, Window};
use tags::TagRow;

/// Largest image accepted (pixels of one frame). 100 Mpx of f32 is 400 MB; chest radiographs are
/// under 25 Mpx. Checked from the header before any pixel buffer is allocated.
pub const MAX_PIXELS: u64 = 100_000_000;

/// What kind of file an image came from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceFormat {
    Dicom {
        transfer_syntax_uid: String,
        transfer_syntax_name: String,
        has_file_meta: bool,
    },
    Png,
    Jpeg,
}

impl SourceFormat {
    pub fn label(&self) -> String {
        match self {
            SourceFormat::Dicom {
                transfer_syntax_name,
                has_file_meta: true,
                ..
            } => transfer_syntax_name.clone(),
            SourceFormat::Dicom {
                transfer_syntax_name,
                has_file_meta: false,
                ..
            } => {
                format!("{transfer_syntax_name} (no file meta)")
            }
            SourceFormat::Png => "PNG".into(),
            SourceFormat::Jpeg => "JPEG".into(),
        }
    }
}

/// Everything the viewer needs to display an image correctly, none of it identifying.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageInfo {
    pub format: SourceFormat,
    /// e.g. "MONOCHROME1".
    pub photometric: String,
    /// MONOCHROME1: invert after VOI.
    pub photometric_inverted: bool,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub rescale_type: Option<String>,
    /// Windows stored in the file, with their explanations.
    pub windows: Vec<(Window, Option<String>)>,
    pub voi_luts: Vec<VoiLut>,
    pub calibration: Calibration,
    pub modality: Option<String>,
    pub body_part: Option<String>,
    pub view_position: Option<String>,
    pub number_of_frames: u32,
    /// A colour image was converted to luminance for display.
    pub converted_from_color: bool,
}

/// A decoded image ready for display.
#[derive(Clone, Debug)]
pub struct LoadedImage {
    /// File name without its folder (paths stay out of the UI overlay and logs).
    pub display_name: String,
    pub image: Arc<ScalarImage>,
    pub stats: ValueStats,
    pub info: ImageInfo,
    /// Every element of a DICOM file, for the tag browser (empty for PNG/JPEG).
    pub tags: Vec<TagRow>,
}

/// Width and height from the file's header only (no pixel decoding): DICOM Columns/Rows, or the
/// PNG/JPEG header.
pub fn image_dimensions(path: &Path) -> Result<(u32, u32), LoadError> {
    match sniff(path)? {
        FileKind::Dicom(layout) => {
            let obj = dicom::open_header(path, layout)?;
            let cols = dicom::int(&obj, dicom_dictionary_std::tags::COLUMNS);
            let rows = dicom::int(&obj, dicom_dictionary_std::tags::ROWS);
            match (cols, rows) {
                (Some(c), Some(r)) if c > 0 && r > 0 => Ok((c as u32, r as u32)),
                _ => Err(LoadError::InvalidDicom("no Rows/Columns".into())),
            }
        }
        _ => image::image_dimensions(path).map_err(|e| LoadError::InvalidDicom(e.to_string())),
    }
}

/// Opens any supported file: DICOM (detected by content, not extension), PNG or JPEG.
pub fn load_image(path: &Path) -> Result<LoadedImage, LoadError> {
    let kind = sniff(path)?;
    let (image, info, tags) = match kind {
        FileKind::Dicom(layout) => dicom::load(path, layout)?,
        FileKind::Png | FileKind::Jpeg => raster::load(path)?,
    };
    let stats = image.stats();
    let display_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(LoadedImage {
        display_name,
        image: Arc::new(image),
        stats,
        info,
        tags,
    })
}

/// File kinds recognised from their first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Dicom(dicom::Layout),
    Png,
    Jpeg,
}

/// Recognises a file from its content.
pub fn sniff(path: &Path) -> Result<FileKind, LoadError> {
    use std::io::Read;
    let mut head = Vec::with_capacity(136);
    std::fs::File::open(path)?
        .take(136)
        .read_to_end(&mut head)?;
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        return Ok(FileKind::Dicom(dicom::Layout::Preamble));
    }
    if head.starts_with(b"DICM") {
        return Ok(FileKind::Dicom(dicom::Layout::NoPreamble));
    }
    if head.starts_with(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]) {
        return Ok(FileKind::Png);
    }
    if head.starts_with(&[0xff, 0xd8, 0xff]) {
        return Ok(FileKind::Jpeg);
    }
    if dicom::looks_like_raw_dataset(&head) {
        return Ok(FileKind::Dicom(dicom::Layout::RawImplicitLittleEndian));
    }
    if head.is_empty() {
        return Err(LoadError::Empty);
    }
    Err(LoadError::NotRecognised)
}
