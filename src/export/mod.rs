//! Everything the app writes for others to read: the current view or the whole image with its
//! overlays as PNG (`figure`), a DICOM Secondary Capture of it (`sc`), an HTML report (`report`),
//! and the batch run's per-image files (`summary`, `maps`). Compute only: the viewer and the CLI
//! both call these; every file is written atomically (`io::write`).

pub mod corners;
pub mod figure;
pub mod job;
pub mod maps;
pub mod report;
pub mod sc;
pub mod summary;
pub mod text;

/// Burned into every exported picture and printed on every report.
pub const RESEARCH_MARK: &str = "Research use — not for diagnostic use";
/// The same in ASCII, for DICOM text attributes written without a Specific Character Set.
pub const RESEARCH_MARK_ASCII: &str = "Research use - not for diagnostic use";

/// Encodes an RGB picture as PNG.
pub fn png_bytes(picture: &image::RgbImage) -> Result<Vec<u8>, String> {
    let mut out = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok(out.into_inner())
}

/// Writes bytes atomically, with the path in the error.
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    crate::io::write::write_atomically(path, bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
