//! The app's image-reading code, compiled on its own for fuzzing (see Cargo.toml).
#![allow(dead_code, unused_imports)]

#[path = "../../src/imaging/mod.rs"]
pub mod imaging;
#[path = "../../src/io/mod.rs"]
pub mod io;
