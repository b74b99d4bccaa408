//! PNG and JPEG images through the `image` crate. 16-bit PNGs keep their 16 bits; colour images keep
//! their colour for display beside a luminance copy for the models (a colour file whose pixels are all
//! grey is read as grey). Sizes are checked from the header before decoding.

use std::io::Cursor;

use image::{DynamicImage, ImageReader};

use super::{Decoded, ImageInfo, LoadError, MAX_PIXELS, SourceFormat};
use crate::imaging::measure::Calibration;
use crate::imaging::{RgbImage, ScalarImage};

/// A PNG or JPEG held in memory.
pub fn load_bytes(bytes: &[u8]) -> Result<Decoded, LoadError> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let format = match reader.format() {
        Some(image::ImageFormat::Png) => SourceFormat::Png,
        Some(image::ImageFormat::Jpeg) => SourceFormat::Jpeg,
        _ => return Err(LoadError::NotRecognised),
    };
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| LoadError::Raster(e.to_string()))?;
    if width as u64 * height as u64 > MAX_PIXELS {
        return Err(LoadError::TooLarge {
            rows: height as u64,
            columns: width as u64,
            limit: MAX_PIXELS,
        });
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| LoadError::Raster(e.to_string()))?;
    let (width, height) = (decoded.width(), decoded.height());
    let (values, bits, color) = to_luminance(&decoded);
    let color = color
        .and_then(|values| RgbImage::new(width, height, values))
        .filter(|rgb| !rgb.is_grey());
    let image = ScalarImage::new(width, height, values)
        .ok_or_else(|| LoadError::Raster("empty image".into()))?;
    let info = ImageInfo {
        format,
        photometric: "MONOCHROME2".into(),
        photometric_inverted: false,
        bits_allocated: bits,
        bits_stored: bits,
        signed: false,
        rescale_slope: 1.0,
        rescale_intercept: 0.0,
        rescale_type: None,
        windows: Vec::new(),
        voi_luts: Vec::new(),
        calibration: Calibration::Uncalibrated,
        modality: None,
        body_part: None,
        view_position: None,
        number_of_frames: 1,
        is_color: color.is_some(),
        unusable_attributes: Vec::new(),
    };
    Ok(Decoded {
        image,
        stats: None,
        color,
        info,
        tags: Vec::new(),
    })
}

/// Grey values at the file's bit depth (8 or 16), and for colour files the interleaved R, G, B
/// values (alpha dropped) at the same depth.
fn to_luminance(img: &DynamicImage) -> (Vec<f32>, u16, Option<Vec<f32>>) {
    let floats = |v: &[u8]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let floats16 = |v: &[u16]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    match img {
        DynamicImage::ImageLuma8(g) => (floats(g.as_raw()), 8, None),
        DynamicImage::ImageLumaA8(_) => (floats(img.to_luma8().as_raw()), 8, None),
        DynamicImage::ImageLuma16(g) => (floats16(g.as_raw()), 16, None),
        DynamicImage::ImageLumaA16(_) => (floats16(img.to_luma16().as_raw()), 16, None),
        DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgba16(_) => (
            floats16(img.to_luma16().as_raw()),
            16,
            Some(floats16(img.to_rgb16().as_raw())),
        ),
        _ => (
            floats(img.to_luma8().as_raw()),
            8,
            Some(floats(img.to_rgb8().as_raw())),
        ),
    }
}
