//! The egui application. Widgets turn user intent into `Command`s, which `CxrApp::logic` applies
//! once per frame; slow work goes to `crate::worker`. Rendering math lives in `crate::render` and
//! `crate::imaging`, never here.

pub mod analysis;
pub mod app;
pub mod browser;
pub mod command;
pub mod gaze_panel;
pub mod notices;
pub mod overlay_text;
pub mod pacs_panel;
pub mod state;
pub mod tags_panel;
pub mod trainer;
pub mod viewer;

pub use app::{AppOptions, CxrApp};
pub use command::{Command, Tool};
