//! Builds `assets/sample_chest.dcm` from the public NEMA WG-04 RG1 chest radiograph (via
//! pydicom-data, MIT): 3×3 box-averaged to 652×614, MONOCHROME1, 15 bits stored, its window kept,
//! fresh UIDs and no patient data. Run: `cargo run --example make_sample -- ../shared/data/dicom/RG1_UNCR.dcm assets/sample_chest.dcm`

use std::path::PathBuf;

use cxrlens::io::load_image;
use cxrlens::io::write::{GreyscaleDicom, write_greyscale_dicom};

fn main() -> Result<(), String> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: make_sample RG1_UNCR.dcm OUTPUT.dcm".into());
    };
    let loaded = load_image(input).map_err(|e| e.to_string())?;
    let (w, h) = (loaded.image.width as usize, loaded.image.height as usize);
    let f = 3;
    let (ow, oh) = (w / f, h / f);
    let mut pixels = Vec::with_capacity(ow * oh);
    for y in 0..oh {
        for x in 0..ow {
            let mut sum = 0.0f64;
            for dy in 0..f {
                for dx in 0..f {
                    sum += loaded.image.values[(y * f + dy) * w + x * f + dx] as f64;
                }
            }
            pixels.push((sum / (f * f) as f64).round().clamp(0.0, 32767.0) as u16);
        }
    }
    let window = loaded
        .info
        .windows
        .first()
        .map(|(w, _)| (w.center as f64, w.width as f64));
    let img = GreyscaleDicom {
        width: ow as u16,
        height: oh as u16,
        bits_stored: loaded.info.bits_stored,
        pixels: &pixels,
        monochrome1: loaded.info.photometric_inverted,
        window,
        pixel_spacing_mm: None,
        imager_pixel_spacing_mm: None,
        sop_instance_uid: "2.25.311045318393372148206125617353853402817",
        study_instance_uid: "2.25.206478343838893017853003616911513829604",
        series_instance_uid: "2.25.149170442262066049386858325302416939541",
        instance_number: 1,
        description: "Sample chest PA (NEMA WG-04 RG1, downsampled)",
    };
    write_greyscale_dicom(output, &img)?;
    println!("wrote {} ({}×{})", output.display(), ow, oh);
    Ok(())
}
