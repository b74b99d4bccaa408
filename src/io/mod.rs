//! Reading images from disk: DICOM (every transfer syntax dicom-rs decodes here, with or without a
//! file-meta header), PNG and JPEG; folder and DICOMDIR scanning into a study/series/image tree; the
//! tag list for the tag browser. No UI here; all functions are blocking and meant for worker threads.

pub mod codestream;
pub mod dicom;
pub mod error;
pub mod guard;
pub mod header;
mod ignored;
pub mod jpeg;
mod modality;
mod native;
pub mod raster;
pub mod study;
pub mod tags;
pub mod write;

use std::path::Path;
use std::sync::Arc;

pub use error::LoadError;

use crate::imaging::measure::Calibration;
use crate::imaging::{RgbImage, ScalarImage, ValueStats, VoiLut, Window};
use tags::TagRow;

/// Largest image accepted (pixels of one frame). 100 Mpx of f32 is 400 MB; chest radiographs are
/// under 25 Mpx. Checked from the header before any pixel buffer is allocated.
pub const MAX_PIXELS: u64 = 100_000_000;

/// Largest pixel data accepted, all frames, samples and bytes per sample together (1 GiB), checked
/// from the header before decoding. Only the displayed frame is converted to f32.
pub const MAX_PIXEL_DATA_BYTES: u64 = 1 << 30;

/// Largest file read into memory (2 GiB): nothing bigger is read from disk.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

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
    /// A colour image: shown in colour (`LoadedImage::color`); the models and measurements use its
    /// Rec. 601 luminance (`LoadedImage::image`).
    pub is_color: bool,
    /// Display attributes the file holds but that could not be used, each with what was done
    /// instead (shown in the viewer and by `inspect`).
    pub unusable_attributes: Vec<String>,
}

/// A decoded image ready for display.
#[derive(Clone, Debug)]
pub struct LoadedImage {
    /// File name without its folder (paths stay out of the UI overlay and logs).
    pub display_name: String,
    /// Modality values; for a colour image its luminance (what the models see).
    pub image: Arc<ScalarImage>,
    /// The colour pixels of a colour image (what the viewer shows); `None` for grey images.
    pub color: Option<Arc<RgbImage>>,
    /// Statistics of `image`.
    pub stats: ValueStats,
    pub info: ImageInfo,
    /// Every element of a DICOM file, for the tag browser (empty for PNG/JPEG).
    pub tags: Vec<TagRow>,
    /// Which frame this is (0-based); `info.number_of_frames` says how many there are.
    pub frame: u32,
}

impl LoadedImage {
    /// The window presets of this image (`imaging::voi::presets`); a colour image starts with its
    /// values as stored (0 ..= 2^Bits Stored − 1, or 2^n − 1 for the n bits the values need if that is more).
    pub fn presets(&self) -> Vec<crate::imaging::voi::Preset> {
        let color_max = self.color.as_ref().map(|rgb| {
            let largest = rgb
                .values
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0f32, f32::max);
            // Bits Stored, or the bits the values need (a palette's LUT entries are 16-bit).
            let mut bits = self.info.bits_stored.clamp(1, 24) as i32;
            while bits < 32 && largest > 2f32.powi(bits) - 1.0 {
                bits += 1;
            }
            2f32.powi(bits) - 1.0
        });
        crate::imaging::voi::presets(
            &self.info.windows,
            &self.info.voi_luts,
            self.stats,
            color_max,
        )
    }
}

/// What a decoder returns for one frame.
pub struct Decoded {
    pub image: ScalarImage,
    /// Statistics of `image` when the decoder counted them on the way (else computed from it).
    pub stats: Option<ValueStats>,
    pub color: Option<RgbImage>,
    pub info: ImageInfo,
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

/// Opens any supported file: DICOM (detected by content, not extension), PNG or JPEG; the first
/// frame of a multi-frame file.
pub fn load_image(path: &Path) -> Result<LoadedImage, LoadError> {
    load_image_frame(path, 0)
}

/// Opens frame `frame` (0-based) of a file. The file is read whole (at most `MAX_FILE_BYTES`) and
/// decoded from memory by `load_image_bytes`.
pub fn load_image_frame(path: &Path, frame: u32) -> Result<LoadedImage, LoadError> {
    let bytes = read_bounded(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    load_image_bytes(&bytes, &name, frame)
}

/// Reads a whole file, refusing one larger than `MAX_FILE_BYTES` before reading it.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_FILE_BYTES {
        return Err(LoadError::TooLargeFile {
            bytes: len,
            limit: MAX_FILE_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::TooLargeFile {
            bytes: bytes.len() as u64,
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes an image held in memory: the app's one entry point from bytes to pixels (the fuzz target
/// and the malformed-file tests call it). Never panics: codec panics are caught at the DICOM decode
/// boundary and come back as `LoadError::Decode`.
pub fn load_image_bytes(bytes: &[u8], name: &str, frame: u32) -> Result<LoadedImage, LoadError> {
    let kind = sniff_bytes(bytes)?;
    let decoded = match kind {
        FileKind::Dicom(layout) => {
            let data = match layout {
                dicom::Layout::Preamble => &bytes[128..],
                _ => bytes,
            };
            dicom::load_bytes(data, layout, frame)?
        }
        FileKind::Png | FileKind::Jpeg => {
            if frame > 0 {
                return Err(LoadError::Unsupported(format!(
                    "frame {} of a single-frame image",
                    frame + 1
                )));
            }
            raster::load_bytes(bytes)?
        }
    };
    let stats = decoded.stats.unwrap_or_else(|| decoded.image.stats());
    Ok(LoadedImage {
        display_name: name.to_string(),
        image: Arc::new(decoded.image),
        color: decoded.color.map(Arc::new),
        stats,
        info: decoded.info,
        tags: decoded.tags,
        frame,
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
    sniff_bytes(&head)
}

/// Recognises a file from its first bytes (136 are enough).
pub fn sniff_bytes(head: &[u8]) -> Result<FileKind, LoadError> {
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
    if dicom::looks_like_raw_dataset(head) {
        return Ok(FileKind::Dicom(dicom::Layout::RawImplicitLittleEndian));
    }
    if head.is_empty() {
        return Err(LoadError::Empty);
    }
    Err(LoadError::NotRecognised)
}
