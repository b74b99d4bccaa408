//! Simulated radiologist gaze, for tests and demos only (no real gaze recording is available to
//! this project). Everything made here is marked simulated: the recordings carry `simulated =
//! true`, and the files are written next to a `SIMULATED.txt` that the importers recognise.
//!
//! The model of a reading, loosely after the search patterns described for chest radiographs:
//! a first fixation near the image centre, then a systematic sweep — right lung upper, middle and
//! lower zones, the same on the left, the heart and mediastinum, both costophrenic angles — with
//! 1–4 fixations per zone jittered around the zone's centre and a few revisits at the end.
//! Zones come from the lung mask when one is given (its two largest columns of mass), otherwise
//! from a fixed anatomical prior in image fractions. Durations are log-normal (median ≈ 0.25 s),
//! saccades take 40 ms. The result is plausible, not real: never train a model on it and call it
//! gaze-supervised without saying "simulated".

use std::path::{Path, PathBuf};

use super::{Fixation, GazeFormat, GazeRecording, PixelRect};
use crate::imaging::ScalarImage;
use crate::io::write::write_atomically;
use crate::rng::SplitMix64;

/// The marker file written beside simulated recordings.
pub const MARKER: &str = "SIMULATED.txt";

#[derive(Clone, Debug)]
pub struct SyntheticOptions {
    pub seed: u64,
    /// Jitter of fixations about a zone centre, as a fraction of the image width.
    pub jitter: f32,
    /// Revisits after the sweep.
    pub revisits: usize,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        Self {
            seed: 7,
            jitter: 0.035,
            revisits: 4,
        }
    }
}

/// Whether a gaze file lies in a folder marked simulated (checks three levels up).
pub fn is_simulated(file: &Path) -> bool {
    file.ancestors()
        .skip(1)
        .take(3)
        .any(|d| d.join(MARKER).is_file())
}

fn normal(rng: &mut SplitMix64) -> f32 {
    rng.normal() as f32
}

/// Zone centres (image fractions) in reading order.
fn zones(width: u32, height: u32, lung_mask: Option<&ScalarImage>) -> Vec<(f32, f32)> {
    // Prior: patient's right lung on the image's left.
    let mut right = (0.30_f32, 0.18_f32, 0.70_f32); // x, top, bottom
    let mut left = (0.70_f32, 0.18_f32, 0.70_f32);
    let mut centre = (0.5_f32, 0.45_f32);
    if let Some(mask) = lung_mask.filter(|m| m.width == width && m.height == height) {
        let (w, h) = (width as usize, height as usize);
        // The two lungs are the mask's two halves either side of its own centre (not the image's:
        // a patient off-centre, or a collimated image, puts both lungs on one side of it).
        let (mut sum_x, mut count) = (0.0_f64, 0.0_f64);
        for (i, v) in mask.values.iter().enumerate() {
            if *v >= 0.5 {
                sum_x += (i % w) as f64;
                count += 1.0;
            }
        }
        let half = if count > 0.0 {
            ((sum_x / count).round() as usize).clamp(1, w.saturating_sub(1).max(1))
        } else {
            w / 2
        };
        let stats = |x0: usize, x1: usize| {
            let (mut sx, mut n, mut top, mut bottom) = (0.0_f64, 0.0_f64, h, 0);
            for y in 0..h {
                for x in x0..x1 {
                    if mask.values[y * w + x] >= 0.5 {
                        sx += x as f64;
                        n += 1.0;
                        top = top.min(y);
                        bottom = bottom.max(y);
                    }
                }
            }
            (n > (w * h) as f64 * 0.01).then(|| {
                (
                    (sx / n) as f32 / w as f32,
                    top as f32 / h as f32,
                    bottom as f32 / h as f32,
                )
            })
        };
        if let (Some(r), Some(l)) = (stats(0, half), stats(half, w)) {
            right = r;
            left = l;
            centre = ((r.0 + l.0) / 2.0, (r.1.min(l.1) + r.2.max(l.2)) / 2.0);
        }
    }
    let zone = |(x, top, bottom): (f32, f32, f32), k: f32| (x, top + (bottom - top) * k);
    let heart = (
        (right.0 + left.0) / 2.0 + 0.05,
        right.1 + (right.2 - right.1) * 0.75,
    );
    vec![
        centre,
        zone(right, 0.15),
        zone(right, 0.5),
        zone(right, 0.85),
        zone(left, 0.15),
        zone(left, 0.5),
        zone(left, 0.85),
        heart,
        ((right.0 + left.0) / 2.0, right.1 + 0.1),
        (right.0 - 0.08, right.2),
        (left.0 + 0.08, left.2),
    ]
}

/// A simulated reading of a `width`×`height` image (an empty image is treated as 1 × 1).
pub fn generate(
    width: u32,
    height: u32,
    lung_mask: Option<&ScalarImage>,
    image_id: &str,
    options: &SyntheticOptions,
) -> GazeRecording {
    let (width, height) = (width.max(1), height.max(1));
    let mut rng = SplitMix64::new(options.seed);
    let zones = zones(width, height, lung_mask);
    let mut order: Vec<usize> = (0..zones.len()).collect();
    for _ in 0..options.revisits {
        order.push(1 + rng.below(zones.len() - 1));
    }
    let mut t = 0.0_f64;
    let mut fixations = Vec::new();
    let (w, h) = (width as f32, height as f32);
    for z in order {
        let n = 1 + (rng.unit() * 4.0) as usize;
        for _ in 0..n {
            let x = (zones[z].0 * w + normal(&mut rng) * options.jitter * w).clamp(0.0, w - 1.0);
            let y = (zones[z].1 * h + normal(&mut rng) * options.jitter * w).clamp(0.0, h - 1.0);
            let duration = (0.25 * (0.45 * normal(&mut rng) as f64).exp()).clamp(0.08, 1.5);
            fixations.push(Fixation {
                x: x.round(),
                y: y.round(),
                start_s: (t * 1000.0).round() / 1000.0,
                duration_s: (duration * 1000.0).round() / 1000.0,
                // A 1080-pixel-high display at ≈ 45 screen pixels per degree.
                px_per_degree: Some([45.0 * h.max(w * 1080.0 / 1920.0) / 1080.0; 2]),
                shown: Some(PixelRect {
                    xmin: 0.0,
                    ymin: 0.0,
                    xmax: w - 1.0,
                    ymax: h - 1.0,
                }),
            });
            t += duration + 0.04;
        }
    }
    GazeRecording {
        format: GazeFormat::EgdCxr,
        image_id: image_id.to_string(),
        file: PathBuf::new(),
        fixations,
        off_image: 0,
        simulated: true,
    }
}

const EGD_FIXATION_HEADER: &str = "SESSION_ID,MEDIA_ID,DICOM_ID,CNT,Time (in secs),TIMETICK(f=10000000),FPOGX,FPOGY,FPOGS,FPOGD,FPOGID,FPOGV,BPOGX,BPOGY,BPOGV,LPCX,LPCY,LPD,LPS,LPV,RPCX,RPCY,RPD,RPS,RPV,BKID,BKDUR,BKPMIN,LPMM,LPMMV,RPMM,RPMMV,SACCADE_MAG,SACCADE_DIR,VID_FRAME,X_ORIGINAL,Y_ORIGINAL";
const EGD_MASTER_HEADER: &str = "dicom_id,path,study_id,patient_id,stay_id,gender,anchor_age,image_top_pad,image_bottom_pad,image_left_pad,image_right_pad,dx1,dx1_icd,dx2,dx2_icd,dx3,dx3_icd,dx4,dx4_icd,dx5,dx5_icd,dx6,dx6_icd,dx7,dx7_icd,dx8,dx8_icd,dx9,dx9_icd,normal_reports,Normal,CHF,pneumonia,consolidation,enlarged_cardiac_silhouette,linear__patchy_atelectasis,lobar__segmental_collapse,not_otherwise_specified_opacity___pleural__parenchymal_opacity__,pleural_effusion_or_thickening,pulmonary_edema__hazy_opacity,normal_anatomically,elevated_hemidiaphragm,hyperaeration,vascular_redistribution,atelectasis__chx,cardiomegaly__chx,consolidation__chx,edema__chx,enlarged_cardiomediastinum__chx,fracture__chx,lung_lesion__chx,lung_opacity__chx,no_finding__chx,pleural_effusion__chx,pleural_other__chx,pneumonia__chx,pneumothorax__chx,support_devices__chx,cxr_exam_indication";
/// REFLACX fixation columns.
pub const REFLACX_HEADER: &str = "timestamp_start_fixation,timestamp_end_fixation,x_position,y_position,pupil_area_normalized,angular_resolution_x_pixels_per_degree,angular_resolution_y_pixels_per_degree,window_width,window_level,xmin_shown_from_image,ymin_shown_from_image,xmax_shown_from_image,ymax_shown_from_image,xmin_in_screen_coordinates,ymin_in_screen_coordinates,xmax_in_screen_coordinates,ymax_in_screen_coordinates";

/// Screen pads (top, bottom, left, right) that fit a `width`×`height` image on the 1920×1080 screen.
pub fn egd_pads(width: u32, height: u32) -> super::egd::Pads {
    let scale = (1920.0 / width as f64).min(1080.0 / height as f64);
    let (dw, dh) = (width as f64 * scale, height as f64 * scale);
    let lr = ((1920.0 - dw) / 2.0).floor();
    let tb = ((1080.0 - dh) / 2.0).floor();
    super::egd::Pads {
        top: tb,
        bottom: tb,
        left: lr,
        right: lr,
    }
}

fn marker_text(what: &str) -> String {
    format!(
        "SIMULATED GAZE. The {what} in this folder were generated by cxrlens (gaze::synthetic) \
         for tests and demonstrations. They are not recordings of any person's eye movements.\n"
    )
}

/// Writes EGD-CXR `fixations.csv` and `master_sheet.csv` (plus `SIMULATED.txt`) into `dir`:
/// one session, the given recordings (each with its image size), and a calibration image shown
/// first (a DICOM_ID absent from the master sheet) so readers exercise the calibration skip.
pub fn write_egd(dir: &Path, recordings: &[(&GazeRecording, u32, u32)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomically(&dir.join(MARKER), marker_text("EGD-CXR files").as_bytes())?;
    let mut fix = String::from(EGD_FIXATION_HEADER);
    fix.push('\n');
    let mut master = String::from(EGD_MASTER_HEADER);
    master.push('\n');
    let master_columns = EGD_MASTER_HEADER.split(',').count();
    let mut cnt = 0;
    let mut row = |fix: &mut String,
                   id: &str,
                   t: f64,
                   fx: f64,
                   fy: f64,
                   d: f64,
                   fid: usize,
                   xo: i64,
                   yo: i64| {
        cnt += 1;
        let mut cols: Vec<String> = vec![
            "1".into(),
            "0".into(),
            id.into(),
            cnt.to_string(),
            format!("{:.5}", t + d),
            format!("{:.1}", 696216388878.0 + (t + d) * 1e7),
            format!("{fx}"),
            format!("{fy}"),
            format!("{t:.5}"),
            format!("{d:.5}"),
            fid.to_string(),
            "1".into(),
        ];
        cols.resize(35, "0".into());
        cols.push(xo.to_string());
        cols.push(yo.to_string());
        fix.push_str(&cols.join(","));
        fix.push('\n');
    };
    // Calibration image: a dot at the screen centre.
    for k in 0..3 {
        row(
            &mut fix,
            "calibration-0000",
            k as f64 * 0.3,
            0.5,
            0.5,
            0.28,
            k + 1,
            -1,
            -1,
        );
    }
    let mut fid = 3;
    for (rec, w, h) in recordings {
        let pads = egd_pads(*w, *h);
        let (sw, sh) = (
            1920.0 - pads.left - pads.right,
            1080.0 - pads.top - pads.bottom,
        );
        for f in &rec.fixations {
            fid += 1;
            let fx = (pads.left + (f.x as f64 + 0.5) * sw / *w as f64) / 1920.0;
            let fy = (pads.top + (f.y as f64 + 0.5) * sh / *h as f64) / 1080.0;
            row(
                &mut fix,
                &rec.image_id,
                f.start_s,
                fx,
                fy,
                f.duration_s,
                fid,
                f.x as i64,
                f.y as i64,
            );
        }
        let mut cols = vec![String::new(); master_columns];
        cols[0] = rec.image_id.clone();
        cols[1] = format!("files/simulated/{}.dcm", rec.image_id);
        cols[7] = format!("{}", pads.top);
        cols[8] = format!("{}", pads.bottom);
        cols[9] = format!("{}", pads.left);
        cols[10] = format!("{}", pads.right);
        master.push_str(&cols.join(","));
        master.push('\n');
    }
    write_atomically(&dir.join("fixations.csv"), fix.as_bytes())?;
    write_atomically(&dir.join("master_sheet.csv"), master.as_bytes())?;
    Ok(())
}

/// Writes a REFLACX case `dir/main_data/<case_id>/fixations.csv` and `dir/main_data/metadata_phase_3.csv`
/// (plus `SIMULATED.txt`). Returns the fixation file's path.
pub fn write_reflacx(
    dir: &Path,
    case_id: &str,
    recording: &GazeRecording,
    width: u32,
    height: u32,
) -> std::io::Result<PathBuf> {
    let case_dir = dir.join("main_data").join(case_id);
    std::fs::create_dir_all(&case_dir)?;
    write_atomically(&dir.join(MARKER), marker_text("REFLACX files").as_bytes())?;
    let mut out = String::from(REFLACX_HEADER);
    out.push('\n');
    let scale = (1920.0 / width as f64).min(1080.0 / height as f64);
    let (sx0, sy0) = (
        (1920.0 - width as f64 * scale) / 2.0,
        (1080.0 - height as f64 * scale) / 2.0,
    );
    for f in &recording.fixations {
        let ppd = f.px_per_degree.unwrap_or([45.0 / scale as f32; 2]);
        let cols = [
            format!("{:.3}", f.start_s),
            format!("{:.3}", f.start_s + f.duration_s),
            format!("{}", f.x.round()),
            format!("{}", f.y.round()),
            "1.0".into(),
            format!("{}", ppd[0]),
            format!("{}", ppd[1]),
            "4096".into(),
            "2048".into(),
            "0".into(),
            "0".into(),
            format!("{}", width - 1),
            format!("{}", height - 1),
            format!("{sx0:.0}"),
            format!("{sy0:.0}"),
            format!("{:.0}", 1920.0 - sx0),
            format!("{:.0}", 1080.0 - sy0),
        ];
        out.push_str(&cols.join(","));
        out.push('\n');
    }
    let path = case_dir.join("fixations.csv");
    write_atomically(&path, out.as_bytes())?;
    // One metadata row per case; other cases already written are kept.
    let meta_path = dir.join("main_data").join("metadata_phase_3.csv");
    let header =
        "id,split,eye_tracking_data_discarded,image,dicom_id,subject_id,image_size_x,image_size_y";
    let mut rows: Vec<String> = std::fs::read_to_string(&meta_path)
        .map(|t| {
            t.lines()
                .skip(1)
                .filter(|l| !l.starts_with(&format!("{case_id},")))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    rows.push(format!(
        "{case_id},test,False,files/simulated/{id}.dcm,{id},0,{width},{height}",
        id = recording.image_id
    ));
    let meta = format!("{header}\n{}\n", rows.join("\n"));
    write_atomically(&meta_path, meta.as_bytes())?;
    Ok(path)
}

/// Simulated readings of every image of a training dataset folder (labels.csv), written as one
/// EGD-CXR session into `out` with DICOM_ID = the labels.csv id; a lung mask PNG, where the row has
/// one, guides the zones. Returns how many images got a reading.
pub fn simulate_dataset(data: &Path, out: &Path, seed: u64) -> Result<usize, String> {
    let (records, _) = crate::dataset::read_labels(data)?;
    let mut recordings = Vec::new();
    for (k, r) in records.iter().enumerate() {
        let Ok((w, h)) = crate::io::image_dimensions(&r.image) else {
            continue;
        };
        // Through the app's size-checked reader; an unreadable mask leaves the default zones.
        let mask = r.mask.as_ref().and_then(|m| {
            let mask = crate::dataset::read_mask(m).ok()?;
            ((mask.width, mask.height) == (w, h)).then(|| ScalarImage {
                width: w,
                height: h,
                values: mask
                    .levels
                    .iter()
                    .map(|&l| {
                        if crate::dataset::MaskLevels::is_lung(l) {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect(),
            })
        });
        let rec = generate(
            w,
            h,
            mask.as_ref(),
            &r.id,
            &SyntheticOptions {
                seed: seed.wrapping_add(k as u64),
                ..Default::default()
            },
        );
        recordings.push((rec, w, h));
    }
    let refs: Vec<(&GazeRecording, u32, u32)> =
        recordings.iter().map(|(r, w, h)| (r, *w, *h)).collect();
    write_egd(out, &refs).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(recordings.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_image_gives_a_reading_not_a_panic() {
        // `clamp(0, w − 1)` with w = 0 used to panic (min > max).
        for (w, h) in [(0, 0), (0, 10), (1, 1)] {
            let rec = generate(w, h, None, "empty", &SyntheticOptions::default());
            assert!(!rec.fixations.is_empty());
            assert!(
                rec.fixations
                    .iter()
                    .all(|f| f.x.is_finite() && f.y.is_finite())
            );
        }
    }
}
