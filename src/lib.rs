//! cxrlens: a chest X-ray viewer with explainable AI.
//!
//! Compute modules (`gaze`, `imaging`, `io`, `ml`, `render`, `worker`) never import egui widgets; the GUI (`ui`)
//! and the command line (`cli`) are thin layers over them. See ARCHITECTURE.md.

pub mod cli;
pub mod dataset;
pub mod export;
pub mod gaze;
pub mod imaging;
pub mod io;
pub mod ml;
pub mod pacs;
pub mod render;
pub mod rng;
pub mod ui;
pub mod worker;

pub use ui::{AppOptions, CxrApp};
