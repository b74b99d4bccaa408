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

/// A bacterial pneumonia of the shipped classifier's test patients (Kermany, a child's radiograph).
pub fn kermany_test_image() -> PathBuf {
    let p =
        shared_data().join("kermany-pneumonia/images/kermany-train-person1004_bacteria_2935.jpeg");
    assert!(p.is_file(), "missing shared file {}", p.display());
    p
}

pub const RSNA: &str = "rsna-pneumonia_c64d5667-a776-4f95-9e21-bfabafb07740.dcm";
pub const SIIM: &str = "siim-acr_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm";
pub const FAKE_MONO1: &str = "torchxrayvision_Fake_MONOHR1.dcm";

/// labels.csv with absolute paths: 8 masked images (covid19) and 4 without masks (other labels),
/// so the lung network has both a segmentation target and two classes.
pub fn tiny_dataset(dir: &std::path::Path) -> PathBuf {
    let root = shared_data().join("cxr-ieee8023");
    let text = std::fs::read_to_string(root.join("labels.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut masked = Vec::new();
    let mut others = Vec::new();
    for r in reader.records() {
        let r = r.unwrap();
        let (id, image, mask, label, patient) = (&r[0], &r[1], &r[2], &r[3], &r[6]);
        let abs = |p: &str| {
            if p.is_empty() {
                String::new()
            } else {
                root.join(p).display().to_string()
            }
        };
        let row = format!("{id},{},{},{label},{patient}", abs(image), abs(mask));
        if !mask.is_empty() && masked.len() < 8 {
            masked.push(row);
        } else if mask.is_empty() && label != "covid19" && others.len() < 4 {
            others.push(row);
        }
    }
    let out = dir.join("data");
    std::fs::create_dir_all(&out).unwrap();
    let mut csv = String::from("id,image,mask,label,patient_id\n");
    for row in masked.iter().chain(&others) {
        csv += row;
        csv.push('\n');
    }
    std::fs::write(out.join("labels.csv"), csv).unwrap();
    out
}

/// Points XDG_DATA_HOME and XDG_CONFIG_HOME at a folder of this test process (once per process),
/// so no test reads the user's own models (`~/.local/share/cxrlens/models`) or writes their
/// settings. Every test that builds the app, discovers models or runs the binary calls it first;
/// child processes inherit it. Returns the folder.
pub fn isolate_user_dirs() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cxrlens-test-home-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("config")).unwrap();
        // SAFETY: done once, before this test reads anything from the environment; the other
        // tests of the process block on the OnceLock until it is done.
        unsafe {
            std::env::set_var("XDG_DATA_HOME", dir.join("data"));
            std::env::set_var("XDG_CONFIG_HOME", dir.join("config"));
        }
        dir
    })
}

/// `n` pseudo-random values in [−1, 1) from `seed` (xorshift64; the same sequence on every run).
pub fn uniform_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// A gradient from `Tensor::grad` as f32 values, row-major (panics when there is none).
pub fn grad_values<const D: usize>(grad: Option<burn::prelude::Tensor<D>>) -> Vec<f32> {
    grad.expect("a gradient")
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 values")
}
