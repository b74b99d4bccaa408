//! Model maps as image files at image resolution: the lung mask as an 8-bit PNG (0 background, 255
//! lung, at probability ≥ 0.5) and a heatmap as a 16-bit greyscale PNG (value × 65535, rounded).

use image::{GrayImage, ImageBuffer, Luma};

use crate::imaging::ScalarImage;

/// Lung probability ≥ `threshold` → 255, else 0.
pub fn mask_png(probability: &ScalarImage, threshold: f32) -> Result<Vec<u8>, String> {
    let pixels = probability
        .values
        .iter()
        .map(|&v| if v >= threshold { 255 } else { 0 })
        .collect();
    let img = GrayImage::from_raw(probability.width, probability.height, pixels)
        .ok_or("mask size does not match its values")?;
    encode(&img)
}

/// A [0, 1] map as 16-bit PNG; values outside [0, 1] (or NaN) are clamped (NaN → 0).
pub fn heatmap_png16(map: &ScalarImage) -> Result<Vec<u8>, String> {
    let pixels: Vec<u16> = map
        .values
        .iter()
        .map(|&v| {
            let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
            (v * 65535.0).round() as u16
        })
        .collect();
    let img: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_raw(map.width, map.height, pixels)
            .ok_or("heatmap size does not match its values")?;
    encode(&img)
}

fn encode<P: image::PixelWithColorType>(
    img: &ImageBuffer<P, Vec<P::Subpixel>>,
) -> Result<Vec<u8>, String>
where
    [P::Subpixel]: image::EncodableLayout,
{
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok(out.into_inner())
}
