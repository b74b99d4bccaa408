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
use super::{ImageInfo, LoadError, MAX_PIXEL_DATA_BYTES, MAX_PIXELS, SourceFormat, guard};
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
pub fn load_bytes(
    data: &[u8],
    layout: Layout,
    frame: u32,
) -> Result<(ScalarImage, ImageInfo, Vec<TagRow>), LoadError> {
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
    match std::panic::catch_unwind(|| load_checked(data, layout, frame, geometry)) {
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

fn parse(data: &[u8], layout: Layout) -> Result<(DefaultDicomObject, bool), LoadError> {
    let invalid = |e: &dyn std::fmt::Display| LoadError::InvalidDicom(e.to_string());
    match layout {
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
) -> Result<(ScalarImage, ImageInfo, Vec<TagRow>), LoadError> {
    let body = match layout {
        Layout::Preamble | Layout::NoPreamble => &data[4..],
        Layout::RawImplicitLittleEndian => data,
    };
    let (obj, has_file_meta) = parse(body, layout)?;
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
    if NATIVE.contains(&ts_uid.as_str()) {
        // The pixel data must hold every frame it claims, before anything is converted.
        let needed =
            (geometry.rows * geometry.columns * geometry.samples * geometry.bits_allocated)
                .div_ceil(8)
                * geometry.frames;
        let have = pixel_element.value().to_bytes().map_or(0, |b| b.len()) as u64;
        if have < needed {
            return Err(LoadError::InvalidDicom(format!(
                "the pixel data holds {have} bytes, the header needs {needed} (truncated file?)"
            )));
        }
    }

    // JPEG frames are decoded by libjpeg-turbo and handed to dicom-pixeldata as one native frame,
    // so modality LUT, windows and VOI LUTs are read the same way for every transfer syntax.
    let native;
    let (source, source_frame) = if TURBO_JPEG.contains(&ts_uid.as_str()) {
        native = jpeg_as_native(&obj, frame, geometry).map_err(|e| decode_error(&e))?;
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
        number_of_frames: geometry.frames as u32,
        converted_from_color,
    };
    let tags = tag_rows(&obj);
    Ok((image, info, tags))
}

/// Decodes frame `frame` of a JPEG-encapsulated object with libjpeg-turbo and returns a copy of the
/// object holding that frame alone as native (Explicit VR Little Endian) pixel data. Colour comes out
/// of libjpeg-turbo as RGB, so the copy says RGB.
fn jpeg_as_native(
    obj: &DefaultDicomObject,
    frame: u32,
    geometry: Geometry,
) -> Result<DefaultDicomObject, String> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let fragments = obj
        .element(tags::PIXEL_DATA)
        .map_err(|e| e.to_string())?
        .value()
        .fragments()
        .ok_or("the pixel data is not encapsulated")?;
    let frames = super::jpeg::frames_of(fragments, geometry.frames as usize);
    let parts = frames
        .get(frame as usize)
        .ok_or_else(|| format!("frame {} has no JPEG data", frame + 1))?;
    let joined;
    let stream: &[u8] = if parts.len() == 1 {
        parts[0]
    } else {
        joined = parts.concat();
        &joined
    };
    let decoded = super::jpeg::decode(stream, (geometry.columns as u32, geometry.rows as u32))?;
    if decoded.components != geometry.samples as usize {
        return Err(format!(
            "the JPEG stream has {} components, Samples per Pixel is {}",
            decoded.components, geometry.samples
        ));
    }
    let mut native = InMemDicomObject::new_empty();
    for element in obj.iter() {
        let tag = element.header().tag;
        if tag != tags::PIXEL_DATA && tag.0 != 0x0002 {
            native.put(element.clone());
        }
    }
    let (bits_allocated, bytes): (u16, Vec<u8>) = match decoded.samples {
        super::jpeg::Samples::U8(v) => (8, v),
        super::jpeg::Samples::U16(v) => (16, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    native.put(us(tags::BITS_ALLOCATED, bits_allocated));
    native.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("1"),
    ));
    if decoded.components == 3 {
        native.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("RGB"),
        ));
        native.put(us(tags::PLANAR_CONFIGURATION, 0));
    }
    native.put(DataElement::new(
        tags::PIXEL_DATA,
        if bits_allocated == 8 { VR::OB } else { VR::OW },
        PrimitiveValue::from(bytes),
    ));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
        .media_storage_sop_instance_uid("2.25.0");
    native.with_meta(meta).map_err(|e| e.to_string())
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
