//! Between image space and a model's square input grid.
//!
//! The same function prepares training images and images opened in the viewer, so a model sees at
//! inference exactly what it saw in training: modality values → robust [p1, p99] scaling →
//! MONOCHROME1 flipped to MONOCHROME2 polarity (air dark) → area-averaged to `S × S` → centred to
//! [-1, 1]. Outputs go back by bilinear resampling of the whole grid onto the whole image.

use burn::prelude::*;

use super::explain::ModelMap;
use crate::imaging::ScalarImage;
use crate::imaging::resample::{resize_area, resize_bilinear};

/// A model input on the `S × S` grid, values in [-1, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInput {
    pub size: usize,
    pub values: Vec<f32>,
}

/// Prepare `image` (modality values) for a model with input side `size`.
///
/// `inverted` is the photometric inversion (MONOCHROME1); `low`/`high` the robust range (1st and
/// 99th percentiles) used to scale values to [0, 1] before centring.
pub fn model_input(
    image: &ScalarImage,
    inverted: bool,
    low: f32,
    high: f32,
    size: usize,
) -> ModelInput {
    let small = resize_area(
        &image.values,
        image.width as usize,
        image.height as usize,
        size,
        size,
    );
    let span = if high > low { high - low } else { 1.0 };
    let values = small
        .into_iter()
        .map(|v| {
            let unit = ((v - low) / span).clamp(0.0, 1.0);
            let unit = if inverted { 1.0 - unit } else { unit };
            unit * 2.0 - 1.0
        })
        .collect();
    ModelInput { size, values }
}

impl ModelInput {
    /// `[1, 1, S, S]` tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::<1>::from_floats(self.values.as_slice(), device)
            .reshape([1, 1, self.size, self.size])
    }
}

/// Stack inputs of the same size into `[B, 1, S, S]`.
pub fn batch_tensor(inputs: &[&ModelInput], device: &Device) -> Tensor<4> {
    let size = inputs.first().map_or(1, |i| i.size);
    let mut values = Vec::with_capacity(inputs.len() * size * size);
    for input in inputs {
        values.extend_from_slice(&input.values);
    }
    Tensor::<1>::from_floats(values.as_slice(), device).reshape([inputs.len(), 1, size, size])
}

/// Resample a model-grid map onto an image of `width × height` (image space).
pub fn to_image_space(map: &ModelMap, width: u32, height: u32) -> ScalarImage {
    let values = resize_bilinear(
        &map.values,
        map.width,
        map.height,
        width as usize,
        height as usize,
    );
    ScalarImage {
        width,
        height,
        values,
    }
}
