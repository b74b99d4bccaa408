//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/data` beside the checkout (override with CXRLENS_SHARED_DATA). Tests that need it fail
/// loudly when it is missing rather than passing vacuously.
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("CXRLENS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    assert!(
        dir.is_dir(),
        "shared data not found at {} (set CXRLENS_SHARED_DATA)",
        dir.display()
    );
    dir
}

pub fn dicom(name: &str) -> PathBuf {
    let p = shared_data().join("dicom").join(name);
    assert!(p.is_file(), "missing shared file {}", p.display());
    p
}

pub const RSNA: &str = "rsna-pneumonia_c64d5667-a776-4f95-9e21-bfabafb07740.dcm";
pub const SIIM: &str = "siim-acr_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm";
pub const FAKE_MONO1: &str = "torchxrayvision_Fake_MONOHR1.dcm";
