//! Pure image-space math: VOI/windowing, colormaps and overlay compositing, view transforms and
//! calibrated measurement. Nothing here depends on egui, wgpu or the file formats; the GUI, the CLI,
//! the shaders' CPU twin and the tests all use the same functions.

pub mod colormap;
pub mod composite;
pub mod image;
pub mod measure;
pub mod resample;
pub mod view;
pub mod voi;

pub use image::{RgbImage, ScalarImage, ValueStats};
pub use voi::{DisplayParams, VoiFunction, VoiLut, Window};
