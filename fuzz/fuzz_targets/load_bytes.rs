//! Any bytes through `io::load_image_bytes`: an image or a `LoadError`, never a panic (the decode
//! boundary catches codec panics, so the target also fails when one was caught) and never a
//! multi-gigabyte allocation (`-malloc_limit_mb` / `-rss_limit_mb`).
#![no_main]

use cxrlens_fuzz::io::{LoadError, load_image_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(LoadError::Decode { detail, .. }) = load_image_bytes(data, "fuzz.dcm", 0)
        && detail.contains("decoder failed")
    {
        panic!("a codec panicked: {detail}");
    }
});
