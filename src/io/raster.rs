//! PNG and JPEG images through the `image` crate. 16-bit PNGs keep their 16 bits; colour images are
//! converted to luminance. Sizes are checked from the header before decoding.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageReader};

use super::tags::TagRow;
use super::{ImageInfo, LoadError, MAX_PIXELS, SourceFormat};
use crate::imaging::ScalarImage;
use crate::imaging::measure::Calibration;

pub fn load(path: &Path) -> Result<(ScalarImage, ImageInfo, Vec<TagRow>), LoadError> {
    load_bytes(&super::read_bounded(path)?)
}

/// A PNG or JPEG held in memory.
pub fn load_bytes(bytes: &[u8]) -> Result<(ScalarImage, ImageInfo, Vec<TagRow>), LoadError> {
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
    let (values, bits, converted_from_color) = to_luminance(&decoded);
    let image = ScalarImage::new(decoded.width(), decoded.height(), values)
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
        converted_from_color,
    };
    Ok((image, info, Vec::new()))
}

/// Grey values at the file's bit depth (8 or 16) and whether colour was converted.
fn to_luminance(img: &DynamicImage) -> (Vec<f32>, u16, bool) {
    match img {
        DynamicImage::ImageLuma8(g) => (g.as_raw().iter().map(|&v| v as f32).collect(), 8, false),
        DynamicImage::ImageLumaA8(_) => (
            img.to_luma8().as_raw().iter().map(|&v| v as f32).collect(),
            8,
            false,
        ),
        DynamicImage::ImageLuma16(g) => (g.as_raw().iter().map(|&v| v as f32).collect(), 16, false),
        DynamicImage::ImageLumaA16(_) => (
            img.to_luma16().as_raw().iter().map(|&v| v as f32).collect(),
            16,
            false,
        ),
        DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgba16(_) => (
            img.to_luma16().as_raw().iter().map(|&v| v as f32).collect(),
            16,
            true,
        ),
        _ => (
            img.to_luma8().as_raw().iter().map(|&v| v as f32).collect(),
            8,
            true,
        ),
    }
}
