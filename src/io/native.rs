//! Frames dicom-pixeldata 0.10 cannot convert, rewritten into one interleaved native frame (Explicit
//! VR Little Endian) that it can: JPEG frames decoded by libjpeg-turbo (`io::jpeg`), 1-bit and 32-bit
//! samples, planar configuration 1, YBR_FULL / YBR_FULL_422 and palette colour. The copy keeps every
//! other attribute, so modality LUT, windows and VOI LUTs are still read by dicom-pixeldata.

use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject};

use super::dicom::{Geometry, int, string};

/// True for native pixel data dicom-pixeldata 0.10 cannot convert itself.
pub(super) fn needs_normalising(
    obj: &DefaultDicomObject,
    geometry: Geometry,
    photometric: &str,
) -> bool {
    let planar = int(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0);
    matches!(geometry.bits_allocated, 1 | 32 | 64)
        || (geometry.samples == 3 && planar == 1)
        || photometric.starts_with("YBR_FULL")
        || photometric == "PALETTE COLOR"
}

/// The three palette colour LUTs (red, green, blue): first mapped value and 16-bit entries.
fn palette(obj: &DefaultDicomObject) -> Result<(i64, [Vec<u16>; 3]), String> {
    let descriptor = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.value().to_multi_int::<i64>().ok())
            .filter(|d| d.len() == 3)
            .ok_or("the palette colour LUT descriptor is missing")
    };
    let d = descriptor(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR)?;
    let (first, bits) = (d[1], d[2]);
    let data = |tag| -> Result<Vec<u16>, String> {
        let bytes = obj
            .element(tag)
            .map_err(
                |_| "the palette colour LUT data is missing (segmented palettes are not supported)",
            )?
            .value()
            .to_bytes()
            .map_err(|e| e.to_string())?;
        let words: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        if words.is_empty() {
            return Err("the palette colour LUT is empty".into());
        }
        // 8-bit entries are kept on their own scale (as pydicom does).
        Ok(if bits == 8 {
            words.iter().map(|w| w & 0xFF).collect()
        } else {
            words
        })
    };
    Ok((
        first,
        [
            data(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)?,
            data(tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA)?,
            data(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA)?,
        ],
    ))
}

/// Frame `frame` of native pixel data as one interleaved frame dicom-pixeldata converts: 1-bit
/// unpacked to 8 bits, planar configuration 1 interleaved, YBR_FULL / YBR_FULL_422 converted to RGB
/// (PS3.3 C.7.6.3.1.2, rounded and clipped as pydicom does). For 32-bit samples the values come back
/// separately (f32, before rescale) and the copy holds zeros, for its attributes only.
pub(super) fn normalise_native(
    obj: &DefaultDicomObject,
    frame: u32,
    geometry: Geometry,
    photometric: &str,
    ts_uid: &str,
) -> Result<(DefaultDicomObject, Option<Vec<f32>>), String> {
    let element = obj.element(tags::PIXEL_DATA).map_err(|e| e.to_string())?;
    let bytes = element.value().to_bytes().map_err(|e| e.to_string())?;
    let pixels = (geometry.rows * geometry.columns) as usize;
    let samples = geometry.samples as usize;
    let f = frame as usize;
    let big_endian = ts_uid == "1.2.840.10008.1.2.2";
    let signed = int(obj, tags::PIXEL_REPRESENTATION) == Some(1);
    let planar = int(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0) == 1;
    let short = || "the pixel data is shorter than its frames".to_string();
    match geometry.bits_allocated {
        1 => {
            // Frames follow each other bit by bit (no padding between frames), LSB first.
            let first_bit = f * pixels * samples;
            let mut out = Vec::with_capacity(pixels * samples);
            for i in first_bit..first_bit + pixels * samples {
                let byte = *bytes.get(i / 8).ok_or_else(short)?;
                out.push((byte >> (i % 8)) & 1);
            }
            let copy = native_copy(obj, 8, Some((8, 7)), None, out)?;
            Ok((copy, None))
        }
        32 | 64 => {
            if big_endian {
                return Err(format!(
                    "{}-bit samples in big endian are not supported",
                    geometry.bits_allocated
                ));
            }
            let width = geometry.bits_allocated as usize / 8;
            let start = f * pixels * samples * width;
            let frame_bytes = bytes
                .get(start..start + pixels * samples * width)
                .ok_or_else(short)?;
            let float = element.vr() == dicom_core::VR::OF || element.vr() == dicom_core::VR::OD;
            let values: Vec<f32> = frame_bytes
                .chunks_exact(width)
                .map(|c| match (width, float, signed) {
                    (4, true, _) => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    (4, false, true) => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32,
                    (4, false, false) => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32,
                    (_, _, _) => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32,
                })
                .collect();
            if samples != 1 {
                return Err("32/64-bit colour samples are not supported".into());
            }
            let zeros = vec![0u8; pixels * 2];
            let copy = native_copy(obj, 16, Some((16, 15)), None, zeros)?;
            Ok((copy, Some(values)))
        }
        8 | 16 => {
            let width = geometry.bits_allocated as usize / 8;
            let ybr422 = photometric.ends_with("_422");
            let per_frame = if ybr422 { pixels * 2 } else { pixels * samples } * width;
            let start = f * per_frame;
            let data = bytes.get(start..start + per_frame).ok_or_else(short)?;
            // Interleave (samples at [pixel][sample]) in units of `width` bytes.
            let mut out = vec![0u8; pixels * samples * width];
            if ybr422 {
                if width != 1 {
                    return Err("16-bit YBR_FULL_422 is not supported".into());
                }
                // Y1 Y2 Cb Cr for each pair of pixels along a row.
                let cols = geometry.columns as usize;
                let row_bytes = cols.div_ceil(2) * 4;
                for r in 0..geometry.rows as usize {
                    for c in 0..cols {
                        let base = r * row_bytes + (c / 2) * 4;
                        let y = data.get(base + c % 2).ok_or_else(short)?;
                        let cb = data.get(base + 2).ok_or_else(short)?;
                        let cr = data.get(base + 3).ok_or_else(short)?;
                        let o = (r * cols + c) * 3;
                        out[o..o + 3].copy_from_slice(&[*y, *cb, *cr]);
                    }
                }
            } else if planar && samples == 3 {
                for p in 0..pixels {
                    for s in 0..3 {
                        let from = (s * pixels + p) * width;
                        let to = (p * 3 + s) * width;
                        out[to..to + width].copy_from_slice(&data[from..from + width]);
                    }
                }
            } else {
                out.copy_from_slice(data);
            }
            let mut photometric_out = None;
            if photometric.starts_with("YBR_FULL") {
                if width != 1 {
                    return Err("16-bit YBR_FULL is not supported".into());
                }
                for px in out.chunks_exact_mut(3) {
                    let (y, cb, cr) = (px[0] as f32, px[1] as f32 - 128.0, px[2] as f32 - 128.0);
                    let rgb = [
                        y + 1.402 * cr,
                        y - 0.344_136 * cb - 0.714_136 * cr,
                        y + 1.772 * cb,
                    ];
                    for (o, v) in px.iter_mut().zip(rgb) {
                        *o = v.round().clamp(0.0, 255.0) as u8;
                    }
                }
                photometric_out = Some("RGB");
            }
            if photometric == "PALETTE COLOR" && samples == 1 {
                // Indices through the palette into 16-bit RGB.
                let (first, luts) = palette(obj)?;
                let mut rgb = Vec::with_capacity(pixels * 6);
                for px in out.chunks_exact(width) {
                    let index = if width == 1 {
                        px[0] as i64
                    } else {
                        u16::from_le_bytes([px[0], px[1]]) as i64
                    };
                    for lut in &luts {
                        let i = (index - first).clamp(0, lut.len() as i64 - 1) as usize;
                        rgb.extend(lut[i].to_le_bytes());
                    }
                }
                let copy = native_copy_rgb(obj, rgb)?;
                return Ok((copy, None));
            }
            let copy = native_copy(
                obj,
                geometry.bits_allocated as u16,
                None,
                photometric_out,
                out,
            )?;
            Ok((copy, None))
        }
        n => Err(format!("Bits Allocated {n} is not supported")),
    }
}

/// A 16-bit RGB copy (palette colour resolved).
fn native_copy_rgb(obj: &DefaultDicomObject, rgb: Vec<u8>) -> Result<DefaultDicomObject, String> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let mut copy = native_copy(obj, 16, Some((16, 15)), Some("RGB"), rgb)?;
    copy.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(3u16),
    ));
    copy.put(DataElement::new(
        tags::PLANAR_CONFIGURATION,
        VR::US,
        PrimitiveValue::from(0u16),
    ));
    copy.put(DataElement::new(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    ));
    Ok(copy)
}

/// A copy of `obj` without its file meta and pixel data, holding `bytes` as one interleaved native
/// frame (Explicit VR Little Endian). `stored` overrides Bits Stored / High Bit; `photometric` the
/// photometric interpretation (the planar configuration becomes 0).
fn native_copy(
    obj: &DefaultDicomObject,
    bits_allocated: u16,
    stored: Option<(u16, u16)>,
    photometric: Option<&str>,
    bytes: Vec<u8>,
) -> Result<DefaultDicomObject, String> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let mut native = InMemDicomObject::new_empty();
    for element in obj.iter() {
        let tag = element.header().tag;
        if tag != tags::PIXEL_DATA && tag.0 != 0x0002 {
            native.put(element.clone());
        }
    }
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    native.put(us(tags::BITS_ALLOCATED, bits_allocated));
    if let Some((bits, high)) = stored {
        native.put(us(tags::BITS_STORED, bits));
        native.put(us(tags::HIGH_BIT, high));
    }
    native.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("1"),
    ));
    if let Some(p) = photometric {
        native.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(p),
        ));
    }
    if int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) > 1 {
        native.put(us(tags::PLANAR_CONFIGURATION, 0));
    }
    let bytes = if bits_allocated == 16 && bytes.len() % 2 == 1 {
        return Err("odd byte count for 16-bit samples".into());
    } else {
        bytes
    };
    native.put(DataElement::new(
        tags::PIXEL_DATA,
        if bits_allocated <= 8 { VR::OB } else { VR::OW },
        PrimitiveValue::from(bytes),
    ));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
        .media_storage_sop_instance_uid("2.25.0");
    native.with_meta(meta).map_err(|e| e.to_string())
}

/// The fragments of encapsulated pixel data.
fn fragments_of(obj: &DefaultDicomObject) -> Result<&[Vec<u8>], String> {
    obj.element(tags::PIXEL_DATA)
        .map_err(|e| e.to_string())?
        .value()
        .fragments()
        .ok_or_else(|| "the pixel data is not encapsulated".to_string())
}

/// Decodes frame `frame` of a JPEG-encapsulated object with libjpeg-turbo and returns a copy of the
/// object holding that frame alone as native (Explicit VR Little Endian) pixel data. Colour comes out
/// of libjpeg-turbo as RGB, so the copy says RGB.
pub(super) fn jpeg_as_native(
    obj: &DefaultDicomObject,
    frame: u32,
    geometry: Geometry,
) -> Result<DefaultDicomObject, String> {
    let fragments = fragments_of(obj)?;
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
    let rgb = string(obj, tags::PHOTOMETRIC_INTERPRETATION).as_deref() == Some("RGB");
    let decoded =
        super::jpeg::decode(stream, (geometry.columns as u32, geometry.rows as u32), rgb)?;
    if decoded.components != geometry.samples as usize {
        return Err(format!(
            "the JPEG stream has {} components, Samples per Pixel is {}",
            decoded.components, geometry.samples
        ));
    }
    let (bits_allocated, bytes): (u16, Vec<u8>) = match decoded.samples {
        super::jpeg::Samples::U8(v) => (8, v),
        super::jpeg::Samples::U16(v) => (16, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    let photometric = (decoded.components == 3).then_some("RGB");
    native_copy(obj, bits_allocated, None, photometric, bytes)
}

/// RLE Lossless transfer syntax (PS3.5 Annex G).
pub(super) const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// True for RLE frames `rle_as_native` decodes: 8- or 16-bit samples, one or three of them,
/// monochrome or RGB (others — 32-bit, YBR — go through dicom-pixeldata's RLE adapter).
pub(super) fn rle_is_simple(geometry: Geometry, photometric: &str) -> bool {
    matches!(geometry.bits_allocated, 8 | 16)
        && match geometry.samples {
            1 => photometric.starts_with("MONOCHROME"),
            3 => photometric == "RGB",
            _ => false,
        }
}

/// Frame `frame` of an RLE Lossless file decoded here (its segments in parallel: PS3.5 G.2 stores
/// each byte of each sample as its own PackBits segment, most significant byte first) into a
/// native copy for dicom-pixeldata. One fragment per frame, as PS3.5 A.4.2 requires for RLE.
/// Short segments are an error (the check `io::codestream` does for dicom-rs's adapter, done here
/// while decoding instead of in a second pass).
pub(super) fn rle_as_native(
    obj: &DefaultDicomObject,
    frame: u32,
    geometry: Geometry,
) -> Result<DefaultDicomObject, String> {
    use rayon::prelude::*;
    let fragments = fragments_of(obj)?;
    if fragments.len() as u64 != geometry.frames {
        return Err(format!(
            "{} RLE fragments for {} frames (one fragment per frame is required)",
            fragments.len(),
            geometry.frames
        ));
    }
    let fragment = &fragments[frame as usize];
    let pixels = (geometry.rows * geometry.columns) as usize;
    let bytes_per_sample = (geometry.bits_allocated / 8) as usize;
    let samples = geometry.samples as usize;
    let segments = samples * bytes_per_sample;
    if fragment.len() < 64 {
        return Err("the RLE header is cut short".into());
    }
    let le32 = |at: usize| {
        u32::from_le_bytes([
            fragment[at],
            fragment[at + 1],
            fragment[at + 2],
            fragment[at + 3],
        ]) as usize
    };
    if le32(0) != segments {
        return Err(format!(
            "the RLE header lists {} segments; the image needs {segments}",
            le32(0)
        ));
    }
    let mut offsets: Vec<usize> = (0..segments).map(|i| le32(4 + 4 * i)).collect();
    offsets.push(fragment.len());
    if offsets.windows(2).any(|p| p[0] < 64 || p[0] > p[1]) {
        return Err("the RLE segment offsets are out of order or out of the fragment".into());
    }
    let planes: Vec<Vec<u8>> = offsets
        .par_windows(2)
        .map(|p| unpack_bits(&fragment[p[0]..p[1]], pixels))
        .collect::<Result<_, _>>()?;
    // Interleave into native little-endian samples: segment s·B + (B − 1 − k) holds byte k (LE).
    let stride = samples * bytes_per_sample;
    let mut bytes = vec![0u8; pixels * stride];
    const CHUNK: usize = 1 << 15;
    bytes
        .par_chunks_mut(CHUNK * stride)
        .enumerate()
        .for_each(|(c, out)| {
            let first = c * CHUNK;
            for (i, px) in out.chunks_exact_mut(stride).enumerate() {
                for s in 0..samples {
                    for k in 0..bytes_per_sample {
                        let segment = s * bytes_per_sample + (bytes_per_sample - 1 - k);
                        px[s * bytes_per_sample + k] = planes[segment][first + i];
                    }
                }
            }
        });
    native_copy(obj, geometry.bits_allocated as u16, None, None, bytes)
}

/// Decodes one PackBits segment (PS3.5 G.3.1) into exactly `n` bytes: runs beyond `n` are cut; a
/// segment that decodes to fewer bytes is an error.
fn unpack_bits(segment: &[u8], n: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(n);
    let mut at = 0;
    while at < segment.len() && out.len() < n {
        let header = segment[at] as i8;
        at += 1;
        if header >= 0 {
            let end = (at + header as usize + 1).min(segment.len());
            let take = (end - at).min(n - out.len());
            out.extend_from_slice(&segment[at..at + take]);
            at = end;
        } else if header != -128 {
            let Some(&value) = segment.get(at) else {
                break;
            };
            let run = ((1 - header as isize) as usize).min(n - out.len());
            out.resize(out.len() + run, value);
            at += 1;
        }
    }
    if out.len() < n {
        return Err(format!(
            "an RLE segment decodes to {} bytes, the image needs {n}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod rle_tests {
    use super::unpack_bits;

    #[test]
    fn packbits_by_hand() {
        // PS3.5 G.3.1: 2 → three literal bytes; −2 (0xFE) → the next byte three times; −128 is a
        // no-op.
        let segment = [2, 10, 11, 12, 0xFE, 7, 0x80, 0, 9];
        assert_eq!(
            unpack_bits(&segment, 7).unwrap(),
            vec![10, 11, 12, 7, 7, 7, 9]
        );
        // Cut at n; short segments (a run without its byte, too few bytes) are errors.
        assert_eq!(unpack_bits(&segment, 4).unwrap(), vec![10, 11, 12, 7]);
        assert!(unpack_bits(&[0xFF, 5], 4).is_err());
        assert!(unpack_bits(&[0xFE], 1).is_err());
    }
}
