//! Errors from reading images. Messages are written for the user; they never contain patient data.

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("not a DICOM file, nor a PNG or JPEG image")]
    NotRecognised,
    #[error("invalid or truncated DICOM: {0}")]
    InvalidDicom(String),
    #[error(
        "the DICOM file has no pixel data (it may be a report, a DICOMDIR or a structured document)"
    )]
    NoPixelData,
    #[error("missing or invalid attribute {0}")]
    MissingAttribute(&'static str),
    #[error(
        "image of {columns}×{rows} pixels is too large (limit {limit} pixels); refused before decoding"
    )]
    TooLarge { rows: u64, columns: u64, limit: u64 },
    #[error(
        "the pixel data of {frames} frame(s) would exceed {limit} bytes; refused before decoding"
    )]
    TooLargeData { frames: u64, limit: u64 },
    #[error("the file is {bytes} bytes, more than the {limit} bytes this app reads")]
    TooLargeFile { bytes: u64, limit: u64 },
    #[error("unsupported image: {0}")]
    Unsupported(String),
    #[error("cannot decode the pixel data ({transfer_syntax}): {detail}")]
    Decode {
        transfer_syntax: String,
        detail: String,
    },
    #[error("cannot decode the image: {0}")]
    Raster(String),
}
