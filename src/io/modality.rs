//! Modality values (Rescale Slope / Intercept) of a decoded monochrome frame, computed as
//! dicom-pixeldata 0.10 defines them — a table over every stored value (2^Bits Stored entries for
//! 16-bit samples, 256 for 8-bit ones; the sample masked to Bits Stored, sign-extended when Pixel
//! Representation is 1, rescaled in f64) — but applied in parallel chunks of the raw bytes. Its
//! per-sample parallel iterator spent 16–20 ms on a 1955 × 1841 radiograph; this takes 2–3 ms.
//! The same pass counts how often each table entry occurs, so the viewer's statistics come from the
//! table (`ValueStats::from_counts`) instead of a second pass over the pixels. Anything else (colour,
//! other depths, one rescale per frame) returns `None` and goes through dicom-pixeldata.

use dicom_pixeldata::{DecodedPixelData, PixelRepresentation};
use rayon::prelude::*;

use crate::imaging::ValueStats;

/// Values per parallel chunk.
const CHUNK: usize = 1 << 16;

/// The frame's modality values and their statistics, or `None` when this fast path does not cover
/// the frame.
pub(super) fn modality_values(decoded: &DecodedPixelData<'_>) -> Option<(Vec<f32>, ValueStats)> {
    if decoded.samples_per_pixel() != 1
        || !decoded.photometric_interpretation().is_monochrome()
        || decoded.number_of_frames() != 1
    {
        return None;
    }
    let rescale = match decoded.rescale().ok()? {
        [one] => *one,
        _ => return None,
    };
    let signed = decoded.pixel_representation() == PixelRepresentation::Signed;
    let pixels = decoded.rows() as usize * decoded.columns() as usize;
    let data = decoded.frame_data(0).ok()?;
    // dicom-pixeldata's table size: Bits Stored for 16-bit samples, always 8 bits for 8-bit ones.
    let (table_bits, bytes_per_sample) = match decoded.bits_allocated() {
        8 => (8u32, 1usize),
        16 => (u32::from(decoded.bits_stored()), 2usize),
        _ => return None,
    };
    if !(1..=16).contains(&table_bits) || data.len() < pixels * bytes_per_sample {
        return None;
    }
    let table = table(table_bits, signed, |x| {
        x * rescale.slope + rescale.intercept
    });
    let mask = table.len() - 1;
    let mut out = vec![0f32; pixels];
    let data = &data[..pixels * bytes_per_sample];
    let counts = out
        .par_chunks_mut(CHUNK)
        .zip(data.par_chunks(CHUNK * bytes_per_sample))
        .fold(
            || vec![0u32; table.len()],
            |mut counts, (out, raw)| {
                if bytes_per_sample == 1 {
                    for (o, &b) in out.iter_mut().zip(raw) {
                        let i = b as usize & mask;
                        counts[i] += 1;
                        *o = table[i];
                    }
                } else {
                    for (o, b) in out.iter_mut().zip(raw.chunks_exact(2)) {
                        // dicom-pixeldata reads the decoded buffer in native byte order.
                        let i = u16::from_ne_bytes([b[0], b[1]]) as usize & mask;
                        counts[i] += 1;
                        *o = table[i];
                    }
                }
                counts
            },
        )
        .map(|c| c.into_iter().map(u64::from).collect::<Vec<u64>>())
        .reduce(
            || vec![0u64; table.len()],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let pairs: Vec<(f32, u64)> = table.iter().copied().zip(counts).collect();
    Some((out, ValueStats::from_counts(&pairs)))
}

/// `f` over every stored value of `bits` bits (two's complement when `signed`), as f32.
fn table(bits: u32, signed: bool, f: impl Fn(f64) -> f64) -> Vec<f32> {
    let size = 1usize << bits;
    (0..size)
        .map(|i| {
            let x = if signed && i >= size / 2 {
                i as f64 - size as f64
            } else {
                i as f64
            };
            f(x) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};

    use super::*;

    /// A 7 × 5 native frame with values covering the sign bit and bits above Bits Stored.
    fn object(
        bits_allocated: u16,
        bits_stored: u16,
        signed: bool,
        slope: &str,
        intercept: &str,
    ) -> dicom_object::DefaultDicomObject {
        let (w, h) = (7u16, 5u16);
        let n = w as usize * h as usize;
        let mut obj = InMemDicomObject::new_empty();
        let us = |v: u16| PrimitiveValue::from(v);
        obj.put(DataElement::new(tags::ROWS, VR::US, us(h)));
        obj.put(DataElement::new(tags::COLUMNS, VR::US, us(w)));
        obj.put(DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, us(1)));
        obj.put(DataElement::new(
            tags::BITS_ALLOCATED,
            VR::US,
            us(bits_allocated),
        ));
        obj.put(DataElement::new(tags::BITS_STORED, VR::US, us(bits_stored)));
        obj.put(DataElement::new(
            tags::HIGH_BIT,
            VR::US,
            us(bits_stored - 1),
        ));
        obj.put(DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            us(signed as u16),
        ));
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("MONOCHROME2"),
        ));
        obj.put(DataElement::new(
            tags::RESCALE_SLOPE,
            VR::DS,
            PrimitiveValue::from(slope),
        ));
        obj.put(DataElement::new(
            tags::RESCALE_INTERCEPT,
            VR::DS,
            PrimitiveValue::from(intercept),
        ));
        let pixel_data = if bits_allocated == 8 {
            let v: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(v))
        } else {
            let v: Vec<u16> = (0..n).map(|i| (i * 7919 % 65536) as u16).collect();
            DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(v.into()))
        };
        obj.put(pixel_data);
        obj.with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("2.25.1"),
        )
        .unwrap()
    }

    #[test]
    fn agrees_with_dicom_pixeldata_for_every_depth_sign_and_rescale() {
        let options = ConvertOptions::new()
            .with_modality_lut(ModalityLutOption::Default)
            .with_voi_lut(VoiLutOption::Identity);
        let mut checked = 0;
        for (allocated, stored) in [(8, 8), (8, 7), (16, 16), (16, 12), (16, 15)] {
            for signed in [false, true] {
                for (slope, intercept) in [("1", "0"), ("0.5", "-1024"), ("-2.25", "17.5")] {
                    let obj = object(allocated, stored, signed, slope, intercept);
                    let decoded = obj.decode_pixel_data_frame(0).unwrap();
                    let want: Vec<f32> = decoded.to_vec_with_options(&options).unwrap();
                    let (got, stats) = modality_values(&decoded).expect("covered by the fast path");
                    let image = crate::imaging::ScalarImage::new(7, 5, want.clone()).unwrap();
                    assert_eq!(stats, image.stats(), "statistics from the table's counts");
                    assert_eq!(
                        got, want,
                        "{allocated}/{stored} bits, signed {signed}, ×{slope} + {intercept}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 30);
    }

    #[test]
    fn colour_is_left_to_dicom_pixeldata() {
        let mut obj = object(8, 8, false, "1", "0");
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("RGB"),
        ));
        let decoded = obj.decode_pixel_data_frame(0).unwrap();
        assert!(modality_values(&decoded).is_none());
    }
}
