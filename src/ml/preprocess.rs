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

/// Anatomical clean-up of a lung probability map on the model grid: of the regions `p ≥ ½`
/// (4-connected) keep the two largest (two lungs; a region under 10 % of the largest is dropped),
/// and fill holes (regions `p < ½` not connected to the border). Removed pixels get 0, filled ones ½.
pub fn clean_lung_map(map: &mut ModelMap) {
    let (w, h) = (map.width, map.height);
    if w == 0 || h == 0 || map.values.len() != w * h {
        return;
    }
    let label = |inside: &dyn Fn(usize) -> bool| -> (Vec<usize>, Vec<(usize, bool)>) {
        // Component id per pixel (usize::MAX = not in the set) and (size, touches border) per id.
        let mut ids = vec![usize::MAX; w * h];
        let mut comps = Vec::new();
        let mut stack = Vec::new();
        for start in 0..w * h {
            if ids[start] != usize::MAX || !inside(start) {
                continue;
            }
            let id = comps.len();
            let (mut size, mut border) = (0usize, false);
            ids[start] = id;
            stack.push(start);
            while let Some(i) = stack.pop() {
                size += 1;
                let (x, y) = (i % w, i / w);
                border |= x == 0 || y == 0 || x == w - 1 || y == h - 1;
                for j in crate::imaging::image::neighbours4(i, w, h) {
                    if ids[j] == usize::MAX && inside(j) {
                        ids[j] = id;
                        stack.push(j);
                    }
                }
            }
            comps.push((size, border));
        }
        (ids, comps)
    };
    let values = map.values.clone();
    let (ids, comps) = label(&|i| values[i] >= 0.5);
    let mut order: Vec<usize> = (0..comps.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(comps[c].0));
    let largest = order.first().map_or(0, |&c| comps[c].0);
    let kept: Vec<usize> = order
        .into_iter()
        .take(2)
        .filter(|&c| comps[c].0 * 10 >= largest)
        .collect();
    for (v, &id) in map.values.iter_mut().zip(&ids) {
        if id != usize::MAX && !kept.contains(&id) {
            *v = 0.0;
        }
    }
    let values = map.values.clone();
    let (holes, hole_comps) = label(&|i| values[i] < 0.5);
    for (v, &id) in map.values.iter_mut().zip(&holes) {
        if id != usize::MAX && !hole_comps[id].1 {
            *v = v.max(0.5);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_keeps_two_largest_regions_and_fills_holes() {
        // 12×6 grid: two 4×4 "lungs" (one with a hole) and a 1-pixel island.
        let (w, h) = (12, 6);
        let mut values = vec![0.0_f32; w * h];
        for y in 1..5 {
            for x in 1..5 {
                values[y * w + x] = 0.9;
            }
            for x in 6..10 {
                values[y * w + x] = 0.8;
            }
        }
        values[2 * w + 2] = 0.1; // hole
        values[w + 11] = 0.7; // island
        let mut map = ModelMap {
            width: w,
            height: h,
            values,
        };
        clean_lung_map(&mut map);
        assert_eq!(map.values[w + 11], 0.0, "island kept");
        assert_eq!(map.values[2 * w + 2], 0.5, "hole not filled");
        assert_eq!(map.values[3 * w + 7], 0.8, "lung changed");
        assert_eq!(map.values[0], 0.0);
    }
}
