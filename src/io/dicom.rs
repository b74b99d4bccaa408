//! DICOM decoding with dicom-rs. Produces modality-space f32 pixels (Rescale Slope/Intercept applied,
//! no VOI, no MONOCHROME1 inversion: those are display steps) plus the attributes that display needs.
//!
//! Size is checked from a header-only read before the pixel data is loaded or decoded.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::tags::{TagRow, tag_rows};
use super::{ImageInfo, LoadError, MAX_PIXELS, SourceFormat};
use crate::imaging::measure::Calibration;
use crate::imaging::{ScalarImage, VoiFunction, VoiLut, Window};

/// How the dataset is laid out in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// 128-byte preamble, "DICM", file meta group (PS3.10).
    Preamble,
    /// "DICM" and the meta group without the preamble.
    NoPreamble,
    /// A bare dataset in Implicit VR Little Endian, no meta group (old ACR-NEMA style files).
    RawImplicitLittleEndian,
}

/// Heuristic for a bare Implicit VR LE dataset: the first element is an even group commonly at the
/// start of an image dataset, with a plausible length.
pub fn looks_like_raw_dataset(head: &[u8]) -> bool {
    if head.len() < 8 {
        return false;
    }
    let group = u16::from_le_bytes([head[0], head[1]]);
    let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    matches!(group, 0x0008 | 0x0010 | 0x0018 | 0x0020 | 0x0028) && length < 1 << 20
}

/// Reads the whole object (meta synthesised for raw datasets).
pub fn open(path: &Path, layout: Layout) -> Result<(DefaultDicomObject, bool), LoadError> {
    let invalid = |e: &dyn std::fmt::Display| LoadError::InvalidDicom(e.to_string());
    match layout {
        Layout::Preamble => OpenFileOptions::new()
            .open_file(path)
            .map(|o| (o, true))
            .map_err(|e| invalid(&e)),
        Layout::NoPreamble => OpenFileOptions::new()
            .read_preamble(ReadPreamble::Never)
            .open_file(path)
            .map(|o| (o, true))
            .map_err(|e| invalid(&e)),
        Layout::RawImplicitLittleEndian => {
            let ts = TransferSyntaxRegistry
                .get(uids::IMPLICIT_VR_LITTLE_ENDIAN)
                .ok_or_else(|| {
                    LoadError::Unsupported("implicit VR little endian is not registered".into())
                })?;
            let reader = BufReader::new(File::open(path)?);
            let obj =
                InMemDicomObject::read_dataset_with_ts(reader, ts).map_err(|e| invalid(&e))?;
            let meta = FileMetaTableBuilder::new()
                .transfer_syntax(uids::IMPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("2.25.0");
            let file_obj = obj.with_meta(meta).map_err(|e| invalid(&e))?;
            Ok((file_obj, false))
        }
    }
}

/// Reads up to (not including) the pixel data: for size checks and folder scans.
pub fn open_header(path: &Path, layout: Layout) -> Result<DefaultDicomObject, LoadError> {
    let options = OpenFileOptions::new().read_until(tags::PIXEL_DATA);
    let result = match layout {
        Layout::Preamble => options.open_file(path),
        Layout::NoPreamble => options.read_preamble(ReadPreamble::Never).open_file(path),
        // A bare dataset has no way to stop early; the full read is bounded by the file size.
        Layout::RawImplicitLittleEndian => return open(path, layout).map(|(o, _)| o),
    };
    result.map_err(|e| LoadError::InvalidDicom(e.to_string()))
}

pub(crate) fn string(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    let s = obj
        .element_opt(tag)
        .ok()
        .flatten()?
        .to_str()
        .ok()?
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}

pub(crate) fn int(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<i64> {
    obj.element_opt(tag).ok().flatten()?.to_int::<i64>().ok()
}

fn floats(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag).ok().flatten()?.to_multi_float64().ok()
}

/// Refuses absurd sizes before anything large is allocated.
pub fn check_size(obj: &InMemDicomObject) -> Result<(u64, u64), LoadError> {
    let rows = int(obj, tags::ROWS).ok_or(LoadError::MissingAttribute("Rows (0028,0010)"))?;
    let columns =
        int(obj, tags::COLUMNS).ok_or(LoadError::MissingAttribute("Columns (0028,0011)"))?;
    if rows <= 0 || columns <= 0 {
        return Err(LoadError::MissingAttribute(
            "Rows/Columns (must be positive)",
        ));
    }
    let (rows, columns) = (rows as u64, columns as u64);
    if rows * columns > MAX_PIXELS {
        return Err(LoadError::TooLarge {
            rows,
            columns,
            limit: MAX_PIXELS,
        });
    }
    Ok((rows, columns))
}

/// Decodes the first frame and gathers display attributes.
pub fn load(
    path: &Path,
    layout: Layout,
) -> Result<(ScalarImage, ImageInfo, Vec<TagRow>), LoadError> {
    // Header-only pass first: a file claiming 60000×60000 pixels is refused here.
    let header = open_header(path, layout)?;
    if header
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .is_none()
    {
        // read_until stops before pixel data, so check the dimensions we need.
        if int(&header, tags::ROWS).is_none() {
            return Err(LoadError::NoPixelData);
        }
    }
    check_size(&header)?;
    drop(header);

    let (obj, has_file_meta) = open(path, layout)?;
    if obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
        return Err(LoadError::NoPixelData);
    }
    let ts_uid = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .trim()
        .to_string();
    let ts_name = TransferSyntaxRegistry
        .get(&ts_uid)
        .map_or_else(|| ts_uid.clone(), |ts| ts.name().to_string());
    let decode_error = |e: &dyn std::fmt::Display| LoadError::Decode {
        transfer_syntax: ts_name.clone(),
        detail: e.to_string(),
    };
    let decoded = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| decode_error(&e))?;

    let (rows, columns) = (decoded.rows(), decoded.columns());
    let samples = decoded.samples_per_pixel();
    let options = ConvertOptions::new()
        .with_modality_lut(ModalityLutOption::Default)
        .with_voi_lut(VoiLutOption::Identity);
    let raw: Vec<f32> = decoded
        .to_vec_with_options(&options)
        .map_err(|e| decode_error(&e))?;
    let pixels = rows as usize * columns as usize;
    let (values, converted_from_color) = match samples {
        1 => (raw, false),
        3 => {
            // Interleaved RGB after decoding; display luminance (Rec. 601 weights).
            let lum = raw
                .chunks_exact(3)
                .map(|c| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])
                .collect();
            (lum, true)
        }
        n => return Err(LoadError::Unsupported(format!("{n} samples per pixel"))),
    };
    if values.len() < pixels {
        return Err(decode_error(&format!(
            "decoded {} values, expected {pixels}",
            values.len()
        )));
    }
    let mut values = values;
    values.truncate(pixels);
    let image = ScalarImage::new(columns, rows, values)
        .ok_or_else(|| decode_error(&"pixel count does not match Rows×Columns"))?;

    let photometric = decoded.photometric_interpretation().as_str().to_string();
    let rescale = decoded.rescale().ok().and_then(|r| r.first().copied());
    let functions: Vec<VoiFunction> = decoded
        .voi_lut_function()
        .ok()
        .flatten()
        .map(|fs| fs.iter().map(|f| map_function(*f)).collect())
        .unwrap_or_default();
    let explanations: Vec<String> = string(&obj, tags::WINDOW_CENTER_WIDTH_EXPLANATION)
        .map(|s| s.split('\\').map(|p| p.trim().to_string()).collect())
        .unwrap_or_default();
    let windows = decoded
        .window()
        .ok()
        .flatten()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(_, w)| w.width > 0.0 && w.width.is_finite() && w.center.is_finite())
        .map(|(i, w)| {
            let function = functions
                .get(i)
                .or(functions.first())
                .copied()
                .unwrap_or_default();
            let window = Window {
                center: w.center as f32,
                width: w.width as f32,
                function,
            };
            (
                window,
                explanations.get(i).filter(|e| !e.is_empty()).cloned(),
            )
        })
        .collect();
    let voi_luts = decoded
        .voi_lut_sequence()
        .ok()
        .flatten()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| {
            VoiLut::from_raw(
                l.min_pixel_value,
                &l.data,
                l.bits_stored,
                l.explanation.clone(),
            )
        })
        .collect();
    let calibration = Calibration::choose(
        floats(&obj, tags::PIXEL_SPACING).as_deref(),
        floats(&obj, tags::IMAGER_PIXEL_SPACING).as_deref(),
    );
    let info = ImageInfo {
        format: SourceFormat::Dicom {
            transfer_syntax_uid: ts_uid.clone(),
            transfer_syntax_name: ts_name.clone(),
            has_file_meta,
        },
        photometric_inverted: photometric == "MONOCHROME1",
        photometric,
        bits_allocated: decoded.bits_allocated(),
        bits_stored: decoded.bits_stored(),
        signed: matches!(
            decoded.pixel_representation(),
            dicom_pixeldata::PixelRepresentation::Signed
        ),
        rescale_slope: rescale.map_or(1.0, |r| r.slope),
        rescale_intercept: rescale.map_or(0.0, |r| r.intercept),
        rescale_type: string(&obj, tags::RESCALE_TYPE),
        windows,
        voi_luts,
        calibration,
        modality: string(&obj, tags::MODALITY),
        body_part: string(&obj, tags::BODY_PART_EXAMINED),
        view_position: string(&obj, tags::VIEW_POSITION),
        number_of_frames: decoded.number_of_frames(),
        converted_from_color,
    };
    let tags = tag_rows(&obj);
    Ok((image, info, tags))
}

fn map_function(f: dicom_pixeldata::VoiLutFunction) -> VoiFunction {
    match f {
        dicom_pixeldata::VoiLutFunction::Linear => VoiFunction::Linear,
        dicom_pixeldata::VoiLutFunction::LinearExact => VoiFunction::LinearExact,
        dicom_pixeldata::VoiLutFunction::Sigmoid => VoiFunction::Sigmoid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_dataset_heuristic() {
        // (0008,0005) length 10
        assert!(looks_like_raw_dataset(&[
            0x08, 0x00, 0x05, 0x00, 10, 0, 0, 0
        ]));
        assert!(!looks_like_raw_dataset(b"hello world, not dicom"));
        assert!(!looks_like_raw_dataset(&[0x08, 0x00]));
    }
}
