//! The ML core: burn networks (Module + Config pairs), their explanations, preprocessing between
//! image space and model grids, metrics, training and the compute-device choice.
//!
//! Nothing here imports egui; the GUI reaches this module only through the inference worker
//! (`worker::inference`), the CLI and the tests call it directly.

pub mod adam;
pub mod analysis;
pub mod augment;
pub mod backend_check;
pub mod blocks;
pub mod bundle;
pub mod calibration;
pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod device;
pub mod efficientnet;
pub mod error;
pub mod eval;
pub mod explain;
pub mod lung;
pub mod memory;
pub mod metrics;
pub mod near_identical;
pub mod ood;
pub mod ood_fit;
pub mod preprocess;
pub mod resnet;
pub mod saliency;
pub mod saliency_train;
pub mod train;

pub use error::MlError;

use burn::prelude::*;

/// Copy a tensor's values to the host as `f32`, row-major.
pub fn tensor_to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, MlError> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| MlError::Data(format!("{e:?}")))
}
