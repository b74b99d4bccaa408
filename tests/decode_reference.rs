//! Every file of `../shared/data/dicom` and `dicom-zoo` against pydicom 3 + pylibjpeg
//! (`scripts/reference/dicom_reference.py` → `tests/fixtures/dicom_reference.json`): size, frame
//! count, statistics and an 8×8 grid of modality values (colour as Rec. 601 luminance, what the models
//! see, and as R, G, B, what the viewer shows) of the first and last frame. Files pydicom cannot decode, or that hold no pixels, must give a clear error here.

mod common;

use std::path::PathBuf;

use cxrlens::io::{LoadError, load_image_frame};
use serde_json::Value;

fn shared(rel: &str) -> PathBuf {
    common::shared_data().join(rel)
}

/// Tolerance on a grid value, relative to the image's value range: lossless codecs must agree to
/// float rounding; lossy ones decode with a different implementation here (libjpeg-turbo, OpenJPEG's
/// Rust port, CharLS) than in pylibjpeg, so their IDCT/wavelet rounding may differ slightly.
fn tolerance(transfer_syntax: &str, photometric: &str) -> f64 {
    let lossy = matches!(
        transfer_syntax,
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.91"
    );
    if lossy {
        0.02
    } else if photometric.starts_with("YBR") {
        // YBR → RGB conversion: pydicom and dicom-rs round differently (±1 level of 255).
        0.006
    } else {
        1e-5
    }
}

fn compare(name: &str, which: &str, frame: u32, reference: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let loaded = match load_image_frame(&shared(name), frame) {
        Ok(l) => l,
        Err(e) => return vec![format!("{name} frame {frame}: {e}")],
    };
    let r = &reference[which];
    let (min, max) = (r["min"].as_f64().unwrap(), r["max"].as_f64().unwrap());
    let range = (max - min).max(1.0);
    let tol = tolerance(
        reference["transfer_syntax"].as_str().unwrap_or(""),
        reference["photometric"].as_str().unwrap_or(""),
    ) * range;
    let rows = reference["rows"].as_u64().unwrap() as u32;
    let columns = reference["columns"].as_u64().unwrap() as u32;
    if (loaded.image.width, loaded.image.height) != (columns, rows) {
        problems.push(format!(
            "{name}: size {}×{} vs pydicom {columns}×{rows}",
            loaded.image.width, loaded.image.height
        ));
        return problems;
    }
    let frames = reference["frames"].as_u64().unwrap() as u32;
    if loaded.info.number_of_frames != frames {
        problems.push(format!(
            "{name}: {} frames vs pydicom {frames}",
            loaded.info.number_of_frames
        ));
    }
    // Every window the file stores with a usable width is a preset, in the file's order.
    let want: Vec<(f64, f64)> = reference["windows"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| (w[0].as_f64().unwrap(), w[1].as_f64().unwrap()))
                .filter(|(_, w)| *w > 0.0)
                .collect()
        })
        .unwrap_or_default();
    let got: Vec<(f64, f64)> = loaded
        .info
        .windows
        .iter()
        .map(|(w, _)| (w.center as f64, w.width as f64))
        .collect();
    if got.len() != want.len()
        || got
            .iter()
            .zip(&want)
            .any(|(g, w)| (g.0 - w.0).abs() > 1e-3 || (g.1 - w.1).abs() > 1e-3)
    {
        problems.push(format!("{name}: windows {got:?} vs pydicom {want:?}"));
    }
    let values = &loaded.image.values;
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    if (mean - r["mean"].as_f64().unwrap()).abs() > tol.max(1e-3 * range) {
        problems.push(format!(
            "{name} {which}: mean {mean} vs pydicom {}",
            r["mean"]
        ));
    }
    for cell in r["grid"].as_array().unwrap() {
        let (row, col) = (cell[0].as_u64().unwrap(), cell[1].as_u64().unwrap());
        let want = cell[2].as_f64().unwrap();
        let got = values[(row * columns as u64 + col) as usize] as f64;
        if (got - want).abs() > tol.max(want.abs() * 1e-6) {
            problems.push(format!(
                "{name} {which}: ({row},{col}) = {got} vs pydicom {want} (tolerance {tol})"
            ));
            break;
        }
    }
    // Colour: the viewer's colour pixels against pydicom's RGB (a colour file whose pixels are all
    // grey is shown as grey).
    let colour_reference = r.get("rgb_grid").and_then(Value::as_array);
    let reference_is_grey = r["rgb_is_grey"].as_bool().unwrap_or(true);
    match (colour_reference, &loaded.color) {
        (Some(cells), Some(rgb)) => {
            for cell in cells {
                let (row, col) = (cell[0].as_u64().unwrap(), cell[1].as_u64().unwrap());
                let got = rgb.get(col as i64, row as i64).unwrap();
                for (k, g) in got.iter().enumerate() {
                    let want = cell[2 + k].as_f64().unwrap();
                    if (*g as f64 - want).abs() > tol.max(want.abs() * 1e-6) {
                        problems.push(format!(
                            "{name} {which}: ({row},{col}) channel {k} = {g} vs pydicom {want}"
                        ));
                    }
                }
            }
            if !loaded.info.is_color {
                problems.push(format!(
                    "{name} {which}: colour pixels but not marked colour"
                ));
            }
        }
        (Some(_), None) if !reference_is_grey => problems.push(format!(
            "{name} {which}: pydicom decodes colour, cxrlens grey"
        )),
        (None, Some(_)) => problems.push(format!("{name} {which}: grey in pydicom, colour here")),
        _ => {}
    }
    problems
}

fn has_dicm_marker(name: &str) -> bool {
    let bytes = std::fs::read(shared(name)).unwrap();
    bytes.get(128..132) == Some(b"DICM".as_slice())
}

#[test]
fn every_shared_dicom_decodes_like_pydicom_or_fails_clearly() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dicom_reference.json"),
    )
    .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let files = fixture["files"].as_object().unwrap();
    assert!(files.len() >= 40, "the fixture lists every shared file");
    let mut problems = Vec::new();
    let mut decoded = 0;
    for (name, reference) in files {
        match reference["pydicom"].as_str().unwrap() {
            "decoded" => {
                decoded += 1;
                problems.extend(compare(name, "first", 0, reference));
                if reference.get("last").is_some() {
                    let last = reference["frames"].as_u64().unwrap() as u32 - 1;
                    problems.extend(compare(name, "last", last, reference));
                }
            }
            "no pixel data" => match load_image_frame(&shared(name), 0) {
                Err(LoadError::NoPixelData) => {}
                // no_meta.dcm starts with a stray byte: pydicom (force=True) reads one garbage
                // element from it; "not a DICOM file" is the clearer answer.
                Err(LoadError::NotRecognised) if !has_dicm_marker(name) => {}
                other => problems.push(format!(
                    "{name}: expected 'no pixel data', got {:?}",
                    other.map(|l| l.info.photometric)
                )),
            },
            _ => {
                // pydicom fails on it (truncated pixel data, a non-numeric Number of Frames): a
                // clear error, not a picture made of whatever bytes were there.
                if let Ok(l) = load_image_frame(&shared(name), 0) {
                    problems.push(format!(
                        "{name}: pydicom refuses it, cxrlens decoded {}×{}",
                        l.image.width, l.image.height
                    ));
                }
            }
        }
    }
    assert!(decoded >= 35);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
