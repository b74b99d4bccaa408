//! DICOM decoding with dicom-rs. Produces modality-space f32 pixels (Rescale Slope/Intercept applied,
//! no VOI, no MONOCHROME1 inversion: those are display steps) plus the attributes that display needs.
//!
//! The file is decoded from memory: the structural check (`io::guard`) and the size guard run before
//! dicom-rs parses it, and codec panics are caught here (`load_bytes`).

use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

pub use super::header::{open, open_header};
use super::tags::tag_rows;
use super::{
    Decoded, ImageInfo, LoadError, MAX_PIXEL_DATA_BYTES, MAX_PIXELS, SourceFormat, guard, native,
};
use crate::imaging::measure::Calibration;
use crate::imaging::{RgbImage, ScalarImage, VoiFunction, VoiLut, Window};

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

/// Transfer syntaxes whose frames go to libjpeg-turbo (`io::jpeg`) instead of dicom-rs's adapters:
/// baseline, extended (12-bit) and lossless JPEG.
const TURBO_JPEG: [&str; 4] = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
];

/// Native (not encapsulated) transfer syntaxes: the pixel data must hold every frame.
const NATIVE: [&str; 4] = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
];

/// Image geometry checked before any pixel buffer exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub rows: u64,
    pub columns: u64,
    pub frames: u64,
    pub samples: u64,
    pub bits_allocated: u64,
}

/// Refuses absurd sizes before anything large is allocated: one frame's pixels against
/// `MAX_PIXELS`, and frames × samples × rows × columns × bytes against `MAX_PIXEL_DATA_BYTES`, in
/// checked arithmetic.
pub fn check_geometry(s: &guard::Summary) -> Result<Geometry, LoadError> {
    let rows = s
        .rows
        .ok_or(LoadError::MissingAttribute("Rows (0028,0010)"))?;
    let columns = s
        .columns
        .ok_or(LoadError::MissingAttribute("Columns (0028,0011)"))?;
    if rows == 0 || columns == 0 {
        return Err(LoadError::MissingAttribute(
            "Rows/Columns (must be positive)",
        ));
    }
    let frames = match s.number_of_frames.as_deref() {
        None | Some("") => 1,
        Some(text) => match text.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(LoadError::MissingAttribute(
                    "Number of Frames (0028,0008) is not a positive whole number",
                ));
            }
        },
    };
    let samples = s.samples_per_pixel.unwrap_or(1);
    if !matches!(samples, 1 | 3) {
        return Err(LoadError::Unsupported(format!(
            "{samples} samples per pixel (1 or 3 are shown)"
        )));
    }
    let bits_allocated = s.bits_allocated.unwrap_or(16);
    if !matches!(bits_allocated, 1 | 8 | 16 | 32 | 64) {
        return Err(LoadError::Unsupported(format!(
            "Bits Allocated {bits_allocated}"
        )));
    }
    // Found by fuzzing: dicom-pixeldata asserts 1 ≤ Bits Stored ≤ 32 (a panic otherwise).
    if let Some(stored) = s.bits_stored
        && (stored == 0 || stored > bits_allocated.min(32))
    {
        return Err(LoadError::MissingAttribute(
            "Bits Stored (0028,0101) must be between 1 and Bits Allocated",
        ));
    }
    let frame_pixels = rows.checked_mul(columns);
    if frame_pixels.is_none_or(|p| p > MAX_PIXELS) {
        return Err(LoadError::TooLarge {
            rows,
            columns,
            limit: MAX_PIXELS,
        });
    }
    let total_bytes = frame_pixels
        .and_then(|p| p.checked_mul(frames))
        .and_then(|p| p.checked_mul(samples))
        .and_then(|p| p.checked_mul(bits_allocated.div_ceil(8)));
    match total_bytes {
        Some(b) if b <= MAX_PIXEL_DATA_BYTES => {}
        _ => {
            return Err(LoadError::TooLargeData {
                frames,
                limit: MAX_PIXEL_DATA_BYTES,
            });
        }
    }
    Ok(Geometry {
        rows,
        columns,
        frames,
        samples,
        bits_allocated,
    })
}

/// Decodes frame `frame` (0-based) of a DICOM file held in memory and gathers display attributes.
/// `data` starts after the preamble (at "DICM") for files with a meta group, or is the bare dataset.
///
/// Order of defences: the structural check (`io::guard`: no declared length beyond the end of the
/// file, bounded nesting), the geometry check, then parsing by dicom-rs and decoding, with any panic
/// from a codec caught here and returned as `LoadError::Decode`.
pub fn load_bytes(data: &[u8], layout: Layout, frame: u32) -> Result<Decoded, LoadError> {
    let (body, has_meta) = match layout {
        Layout::Preamble | Layout::NoPreamble => {
            let body = data
                .strip_prefix(b"DICM")
                .ok_or_else(|| LoadError::InvalidDicom("no DICM marker".into()))?;
            (body, true)
        }
        Layout::RawImplicitLittleEndian => (data, false),
    };
    let summary = guard::check(body, has_meta, MAX_PIXEL_DATA_BYTES as usize)?;
    if !summary.has_pixel_data {
        return Err(LoadError::NoPixelData);
    }
    let geometry = check_geometry(&summary)?;
    if frame as u64 >= geometry.frames {
        return Err(LoadError::Unsupported(format!(
            "frame {} of a file with {} frames",
            frame + 1,
            geometry.frames
        )));
    }
    let implicit = summary.implicit_despite_transfer_syntax;
    let inflated = summary.inflated.as_ref().map(|i| i.0.as_slice());
    match std::panic::catch_unwind(|| {
        load_checked(data, layout, frame, geometry, implicit, inflated)
    }) {
        Ok(result) => result,
        Err(panic) => Err(LoadError::Decode {
            transfer_syntax: summary.transfer_syntax.unwrap_or_default(),
            detail: format!(
                "the decoder failed on this file ({})",
                panic_message(panic.as_ref())
            ),
        }),
    }
}

/// The text of a caught panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "internal error".into())
}

/// Parses a file held in memory. `implicit`: the dataset is in implicit VR whatever the transfer
/// syntax says; `inflated`: the dataset of a deflated file, already inflated by `io::guard`.
pub(super) fn parse(
    data: &[u8],
    layout: Layout,
    implicit: bool,
    inflated: Option<&[u8]>,
) -> Result<(DefaultDicomObject, bool), LoadError> {
    let invalid = |e: &dyn std::fmt::Display| LoadError::InvalidDicom(e.to_string());
    match layout {
        Layout::Preamble | Layout::NoPreamble if inflated.is_some() => {
            // The meta group as written (it keeps the deflated transfer syntax: the pixel data is
            // native), then the inflated dataset in Explicit VR Little Endian.
            let mut reader = data;
            let meta = dicom_object::meta::FileMetaTable::from_reader(&mut reader)
                .map_err(|e| invalid(&e))?;
            let ts = TransferSyntaxRegistry
                .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .ok_or_else(|| {
                    LoadError::Unsupported("explicit VR little endian is not registered".into())
                })?;
            let obj = InMemDicomObject::read_dataset_with_ts(inflated.unwrap_or_default(), ts)
                .map_err(|e| invalid(&e))?;
            Ok((obj.with_exact_meta(meta), true))
        }
        Layout::Preamble | Layout::NoPreamble if implicit => {
            // The meta group as written, then the dataset in Implicit VR Little Endian.
            let mut reader = data;
            let meta = dicom_object::meta::FileMetaTable::from_reader(&mut reader)
                .map_err(|e| invalid(&e))?;
            let ts = TransferSyntaxRegistry
                .get(uids::IMPLICIT_VR_LITTLE_ENDIAN)
                .ok_or_else(|| {
                    LoadError::Unsupported("implicit VR little endian is not registered".into())
                })?;
            let obj =
                InMemDicomObject::read_dataset_with_ts(reader, ts).map_err(|e| invalid(&e))?;
            Ok((obj.with_exact_meta(meta), true))
        }
        Layout::Preamble | Layout::NoPreamble => OpenFileOptions::new()
            .read_preamble(ReadPreamble::Never)
            .from_reader(data)
            .map(|o| (o, true))
            .map_err(|e| invalid(&e)),
        Layout::RawImplicitLittleEndian => {
            let ts = TransferSyntaxRegistry
                .get(uids::IMPLICIT_VR_LITTLE_ENDIAN)
                .ok_or_else(|| {
                    LoadError::Unsupported("implicit VR little endian is not registered".into())
                })?;
            let obj = InMemDicomObject::read_dataset_with_ts(data, ts).map_err(|e| invalid(&e))?;
            let meta = FileMetaTableBuilder::new()
                .transfer_syntax(uids::IMPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("2.25.0");
            let file_obj = obj.with_meta(meta).map_err(|e| invalid(&e))?;
            Ok((file_obj, false))
        }
    }
}

fn load_checked(
    data: &[u8],
    layout: Layout,
    frame: u32,
    geometry: Geometry,
    implicit: bool,
    inflated: Option<&[u8]>,
) -> Result<Decoded, LoadError> {
    // dicom-rs reads the "DICM" magic itself, then the meta group.
    let (obj, has_file_meta) = parse(data, layout, implicit, inflated)?;
    let pixel_element = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or(LoadError::NoPixelData)?;
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
    let photometric_in_file = string(&obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    let is_native = NATIVE.contains(&ts_uid.as_str());
    if is_native {
        // The pixel data must hold every frame it claims, before anything is converted
        // (YBR_*_422 stores two samples per pixel: Y for each, Cb and Cr shared by a pair).
        let samples = if photometric_in_file.ends_with("_422") {
            2
        } else {
            geometry.samples
        };
        let needed = (geometry.rows * geometry.columns * samples * geometry.bits_allocated)
            .div_ceil(8)
            * geometry.frames;
        let have = match pixel_element.value() {
            dicom_core::DicomValue::Primitive(v) => v.calculate_byte_len() as u64,
            _ => 0,
        };
        if have < needed {
            return Err(LoadError::InvalidDicom(format!(
                "the pixel data holds {have} bytes, the header needs {needed} (truncated file?)"
            )));
        }
    }

    // JPEG frames are decoded by libjpeg-turbo and handed to dicom-pixeldata as one native frame,
    // so modality LUT, windows and VOI LUTs are read the same way for every transfer syntax.
    // Native layouts dicom-pixeldata 0.10 does not convert (1 and 32 bits, planar configuration 1,
    // YBR_FULL[_422]) are rewritten here into one interleaved 8/16-bit frame first; 32-bit values
    // are converted here and only the attributes are read through dicom-pixeldata.
    let own_rle =
        ts_uid == native::RLE_LOSSLESS && native::rle_is_simple(geometry, &photometric_in_file);
    if let Some(kind) = super::codestream::Kind::of(&ts_uid)
        && let Some(fragments) = pixel_element.value().fragments()
        && !own_rle
    {
        super::codestream::check(
            kind,
            fragments,
            geometry.rows,
            geometry.columns,
            geometry.samples,
            geometry.bits_allocated,
        )
        .map_err(|e| decode_error(&e))?;
    }
    let native;
    let mut values_32 = None;
    let (source, source_frame) = if TURBO_JPEG.contains(&ts_uid.as_str()) {
        native = native::jpeg_as_native(&obj, frame, geometry).map_err(|e| decode_error(&e))?;
        (&native, 0)
    } else if own_rle {
        native = native::rle_as_native(&obj, frame, geometry).map_err(|e| decode_error(&e))?;
        (&native, 0)
    } else if is_native && native::needs_normalising(&obj, geometry, &photometric_in_file) {
        let (copy, values) =
            native::normalise_native(&obj, frame, geometry, &photometric_in_file, &ts_uid)
                .map_err(|e| decode_error(&e))?;
        native = copy;
        values_32 = values;
        (&native, 0)
    } else {
        (&obj, frame)
    };
    let decoded = source
        .decode_pixel_data_frame(source_frame)
        .map_err(|e| decode_error(&e))?;

    let (rows, columns) = (decoded.rows(), decoded.columns());
    if (rows as u64, columns as u64) != (geometry.rows, geometry.columns) {
        return Err(decode_error(&"decoded size differs from Rows × Columns"));
    }
    let samples = decoded.samples_per_pixel();
    let options = ConvertOptions::new()
        .with_modality_lut(ModalityLutOption::Default)
        .with_voi_lut(VoiLutOption::Identity);
    let mut counted_stats = None;
    let raw: Vec<f32> = match values_32 {
        Some(mut values) => {
            let r = decoded.rescale().ok().and_then(|r| r.first().copied());
            if let Some(r) = r.filter(|r| r.slope != 1.0 || r.intercept != 0.0) {
                let (m, b) = (r.slope as f32, r.intercept as f32);
                values.iter_mut().for_each(|v| *v = *v * m + b);
            }
            values
        }
        None => match super::modality::modality_values(&decoded) {
            Some((values, stats)) => {
                counted_stats = Some(stats);
                values
            }
            None => decoded
                .to_vec_with_options(&options)
                .map_err(|e| decode_error(&e))?,
        },
    };
    let pixels = rows as usize * columns as usize;
    let (values, color) = match samples {
        1 => (raw, None),
        3 => {
            // Interleaved RGB after decoding: the viewer shows it, the models get its luminance.
            let mut raw = raw;
            if raw.len() < 3 * pixels {
                return Err(decode_error(&format!(
                    "decoded {} values, expected {}",
                    raw.len(),
                    3 * pixels
                )));
            }
            raw.truncate(3 * pixels);
            let rgb = RgbImage::new(columns, rows, raw)
                .ok_or_else(|| decode_error(&"pixel count does not match Rows×Columns"))?;
            let lum = rgb.luminance().values;
            (lum, (!rgb.is_grey()).then_some(rgb))
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

    // The file's own photometric interpretation (a JPEG or YBR frame was converted to RGB above).
    let photometric = if photometric_in_file.is_empty() {
        decoded.photometric_interpretation().as_str().to_string()
    } else {
        photometric_in_file.clone()
    };
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
    // Several Window Center / Width values are alternative windows (PS3.3 C.11.2.1.2), each a
    // preset; dicom-pixeldata reads them as one per frame and keeps only the first for a
    // single-frame image, so the top-level values are read here (functional groups through it).
    let stored_windows: Vec<(f64, f64)> = match (
        floats(&obj, tags::WINDOW_CENTER),
        floats(&obj, tags::WINDOW_WIDTH),
    ) {
        (Some(c), Some(w)) => c.into_iter().zip(w).collect(),
        _ => decoded
            .window()
            .ok()
            .flatten()
            .unwrap_or_default()
            .iter()
            .map(|w| (w.center, w.width))
            .collect(),
    };
    let windows: Vec<(Window, Option<String>)> = stored_windows
        .into_iter()
        .enumerate()
        .filter(|(_, (c, w))| *w > 0.0 && w.is_finite() && c.is_finite())
        .map(|(i, (center, width))| {
            let function = functions
                .get(i)
                .or(functions.first())
                .copied()
                .unwrap_or_default();
            let window = Window {
                center: center as f32,
                width: width as f32,
                function,
            };
            (
                window,
                explanations.get(i).filter(|e| !e.is_empty()).cloned(),
            )
        })
        .collect();
    let voi_luts: Vec<VoiLut> = decoded
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
    let unusable_attributes =
        super::ignored::unusable_display_attributes(&obj, windows.len(), voi_luts.len());
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
        bits_allocated: geometry.bits_allocated as u16,
        // The file's own depth (a JPEG, palette or 1-bit frame was widened above).
        bits_stored: int(&obj, tags::BITS_STORED)
            .and_then(|b| u16::try_from(b).ok())
            .unwrap_or_else(|| decoded.bits_stored()),
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
        number_of_frames: geometry.frames as u32,
        is_color: color.is_some(),
        unusable_attributes,
    };
    let tags = tag_rows(&obj);
    Ok(Decoded {
        image,
        stats: counted_stats,
        color,
        info,
        tags,
    })
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
