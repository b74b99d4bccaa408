//! Eye gaze: metrics against values worked out by hand, heatmap recipes against closed forms,
//! both importers (including precise error locations), and the synthetic generator's round trip
//! through both file formats on a shared image.

mod common;

use std::path::Path;

use cxrlens::gaze::heatmap::{Recipe, heatmap};
use cxrlens::gaze::metrics::{
    self, MetricError, auc_judd, cc, diff_gradcam, ehr_auc, fixated_pixels, hs, kl, nss, sim,
};
use cxrlens::gaze::synthetic::{self, SyntheticOptions};
use cxrlens::gaze::{Fixation, GazeFormat, GazeRecording, ImageKey, PixelRect, egd, reflacx};

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs {b}");
}

// ---------------------------------------------------------------- metrics, by hand

#[test]
fn kl_by_hand() {
    // P = [1,1] → [0.5,0.5]; Q = [3,1] → [0.75,0.25]
    // KL = 0.75 ln(0.75/0.5) + 0.25 ln(0.25/0.5) = 0.304099 − 0.173287 = 0.130812
    close(kl(&[1.0, 1.0], &[3.0, 1.0]).unwrap(), 0.130_812, 1e-5);
    close(kl(&[2.0, 5.0, 1.0], &[2.0, 5.0, 1.0]).unwrap(), 0.0, 1e-12);
    // Asymmetric: swapping gives 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25) = −0.202733 + 0.346574 = 0.143841
    close(kl(&[3.0, 1.0], &[1.0, 1.0]).unwrap(), 0.143_841, 1e-5);
    assert_eq!(kl(&[0.0, 0.0], &[1.0, 1.0]), Err(MetricError::EmptyMap));
    assert_eq!(
        kl(&[1.0], &[1.0, 1.0]),
        Err(MetricError::SizeMismatch(1, 2))
    );
}

#[test]
fn cc_by_hand() {
    close(
        cc(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 8.0]).unwrap(),
        1.0,
        1e-12,
    );
    close(
        cc(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]).unwrap(),
        -1.0,
        1e-12,
    );
    // dx = (−1,0,1), dy = (−1,1,0): Σdxdy = 1, Σdx² = Σdy² = 2 → 0.5
    close(cc(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).unwrap(), 0.5, 1e-12);
    assert_eq!(cc(&[1.0, 1.0], &[1.0, 2.0]), Err(MetricError::ConstantMap));
}

#[test]
fn hs_and_sim_by_hand() {
    // [0.5,0.5] vs [0.75,0.25]: min = 0.5 + 0.25
    close(hs(&[1.0, 1.0], &[3.0, 1.0]).unwrap(), 0.75, 1e-12);
    close(hs(&[1.0, 2.0], &[2.0, 4.0]).unwrap(), 1.0, 1e-12);
    // SIM: [0,1,3] → min–max [0,1/3,1] → sum-1 [0,0.25,0.75]; [2,2,4] → [0,0,1]; Σmin = 0.75
    close(sim(&[0.0, 1.0, 3.0], &[2.0, 2.0, 4.0]).unwrap(), 0.75, 1e-6);
    // HS of the same pair differs (no min–max): [0,0.25,0.75] vs [0.25,0.25,0.5] → 0+0.25+0.5
    close(hs(&[0.0, 1.0, 3.0], &[2.0, 2.0, 4.0]).unwrap(), 0.75, 1e-12);
    close(hs(&[0.0, 1.0, 3.0], &[1.0, 1.0, 2.0]).unwrap(), 0.75, 1e-12);
    // SIM ignores an offset (min–max first); HS does not.
    close(sim(&[0.0, 1.0, 3.0], &[1.0, 2.0, 4.0]).unwrap(), 1.0, 1e-6);
    assert!(hs(&[0.0, 1.0, 3.0], &[1.0, 2.0, 4.0]).unwrap() < 0.99);
}

#[test]
fn nss_by_hand() {
    // mean 1, sample variance (1+1+1+9)/3 = 4 → sd 2
    let map = [0.0, 0.0, 0.0, 4.0];
    close(nss(&map, &[3]).unwrap(), 1.5, 1e-12);
    close(nss(&map, &[0, 3]).unwrap(), 0.5, 1e-12);
    assert_eq!(nss(&map, &[]), Err(MetricError::NoFixations));
    // The fixation map is binary: fixating a pixel twice counts once.
    assert_eq!(
        fixated_pixels(&[(3.2, 0.0), (3.9, 0.7), (0.0, 0.0)], 4, 1),
        vec![0, 3]
    );
}

#[test]
fn auc_judd_by_hand() {
    let map = [0.1, 0.4, 0.35, 0.8];
    // Fixations on the two highest pixels: ROC (0,0),(0,.5),(0,1),(1,1) → 1
    close(auc_judd(&map, &[1, 3]).unwrap(), 1.0, 1e-12);
    // On the highest and the lowest: thresholds 1 and 0 → (0,0),(0,.5),(1,1),(1,1) → 0.75
    close(auc_judd(&map, &[0, 3]).unwrap(), 0.75, 1e-12);
    // On the lowest only: threshold 0 → (0,0),(1,1),(1,1) → 0.5
    close(auc_judd(&map, &[0]).unwrap(), 0.5, 1e-12);
}

#[test]
fn diff_gradcam_and_ehr_auc_by_hand() {
    // scaled [0,.5,1,.5]; inside {1,2} mean .75, outside {0,3} mean .25
    let region = [false, true, true, false];
    close(
        diff_gradcam(&[0.0, 2.0, 4.0, 2.0], &region).unwrap(),
        0.5,
        1e-12,
    );
    assert_eq!(
        diff_gradcam(&[1.0, 2.0], &[true, true]),
        Err(MetricError::DegenerateRegion)
    );
    // heat [1, .5], region {0}: t < .5 (50 thresholds): 1/1.5; t ≥ .5 (50): 1 → (50·2/3 + 50)/100
    close(
        ehr_auc(&[1.0, 0.5], &[true, false]).unwrap(),
        (50.0 * 2.0 / 3.0 + 50.0) / 100.0,
        1e-12,
    );
    // All heat inside the region → 1 at every threshold.
    close(
        ehr_auc(&[0.2, 1.0, 0.0], &[true, true, false]).unwrap(),
        1.0,
        1e-12,
    );
    assert_eq!(metrics::EHR_STEPS, 100);
}

// ---------------------------------------------------------------- heatmaps

fn recording(fixations: Vec<Fixation>, format: GazeFormat) -> GazeRecording {
    GazeRecording {
        format,
        image_id: "test".into(),
        file: Default::default(),
        fixations,
        off_image: 0,
        simulated: false,
    }
}

fn fixation(x: f32, y: f32, duration_s: f64) -> Fixation {
    Fixation {
        x,
        y,
        start_s: 0.0,
        duration_s,
        px_per_degree: None,
        shown: None,
    }
}

#[test]
fn egd_heatmap_is_scipy_gaussian_filter_of_counts() {
    let sigma = 10.0_f64;
    let rec = recording(vec![fixation(50.0, 50.0, 0.2)], GazeFormat::EgdCxr);
    let map = heatmap(&rec, 101, 101, Recipe::EgdCxr { sigma_px: 10.0 });
    // scipy kernel: exp(−k²/2σ²) for |k| ≤ 40, normalised; far from the borders the map is w0·w0 etc.
    let norm: f64 = (-40..=40)
        .map(|k: i32| (-(k * k) as f64 / (2.0 * sigma * sigma)).exp())
        .sum();
    let w = |k: i32| (-(k * k) as f64 / (2.0 * sigma * sigma)).exp() / norm;
    close(map.values[50 * 101 + 50] as f64, w(0) * w(0), 1e-7);
    close(map.values[50 * 101 + 60] as f64, w(0) * w(10), 1e-7);
    close(map.values[57 * 101 + 44] as f64, w(7) * w(6), 1e-7);
    // Mass is kept by the reflect borders: the sum is the number of fixations.
    let total: f64 = map.values.iter().map(|v| *v as f64).sum();
    close(total, 1.0, 1e-4);
    // Counts, not durations: a second fixation on the same pixel doubles the map, whatever it lasts.
    let twice = recording(
        vec![fixation(50.0, 50.0, 0.2), fixation(50.4, 50.9, 3.0)],
        GazeFormat::EgdCxr,
    );
    let map2 = heatmap(&twice, 101, 101, Recipe::EgdCxr { sigma_px: 10.0 });
    for (a, b) in map.values.iter().zip(&map2.values) {
        close(*b as f64, 2.0 * *a as f64, 1e-7);
    }
    // Near a border the reflected tail adds in: x = 0 gets w(0) + w(1) along x (mirror at −1).
    let edge = recording(vec![fixation(0.0, 50.0, 0.2)], GazeFormat::EgdCxr);
    let m = heatmap(&edge, 101, 101, Recipe::EgdCxr { sigma_px: 10.0 });
    close(m.values[50 * 101] as f64, (w(0) + w(1)) * w(0), 1e-7);
}

#[test]
fn reflacx_heatmap_weights_by_duration_and_respects_the_shown_area() {
    let mut a = fixation(20.0, 20.0, 1.0);
    let mut b = fixation(80.0, 70.0, 3.0);
    a.px_per_degree = Some([4.0, 4.0]);
    b.px_per_degree = Some([4.0, 4.0]);
    let rec = recording(vec![a, b], GazeFormat::Reflacx);
    let map = heatmap(&rec, 100, 100, Recipe::published(GazeFormat::Reflacx));
    let at = |x: usize, y: usize| map.values[y * 100 + x] as f64;
    close(map.values.iter().map(|v| *v as f64).sum(), 1.0, 1e-5);
    // Peaks in the ratio of the durations (the Gaussians do not overlap at 4 px σ).
    close(at(80, 70) / at(20, 20), 3.0, 1e-4);
    // σ = 1° = 4 px: one σ away the value falls to exp(−½).
    close(at(24, 20) / at(20, 20), (-0.5_f64).exp(), 1e-4);
    // Two degrees gives σ = 8 px.
    let wide = heatmap(
        &rec,
        100,
        100,
        Recipe::Reflacx {
            sigma_degrees: 2.0,
            fallback_sigma_px: 1.0,
        },
    );
    close(
        wide.values[20 * 100 + 28] as f64 / wide.values[20 * 100 + 20] as f64,
        (-0.5_f64).exp(),
        1e-4,
    );
    // Evaluated only inside the part of the image shown at the time.
    let mut c = fixation(50.0, 50.0, 1.0);
    c.px_per_degree = Some([10.0, 10.0]);
    c.shown = Some(PixelRect {
        xmin: 40.0,
        ymin: 30.0,
        xmax: 60.0,
        ymax: 55.0,
    });
    let m = heatmap(
        &recording(vec![c], GazeFormat::Reflacx),
        100,
        100,
        Recipe::published(GazeFormat::Reflacx),
    );
    assert_eq!(m.values[50 * 100 + 39], 0.0);
    assert_eq!(m.values[56 * 100 + 50], 0.0);
    assert!(m.values[55 * 100 + 60] > 0.0);
}

// ---------------------------------------------------------------- importers

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// A header file of `../shared/data/gaze-formats`, read at run time (the test crate compiles
/// without the shared data; only running it needs them).
fn header(rel: &str) -> String {
    let path = common::shared_data().join("gaze-formats").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn egd_header() -> String {
    header("egd-cxr_headers/fixations.csv.header")
}

fn master_header() -> String {
    header("egd-cxr_headers/master_sheet.csv.header")
}

/// An EGD-CXR row: only the columns the importer reads are filled.
fn egd_row(
    id: &str,
    fpogs: &str,
    fpogx: &str,
    fpogy: &str,
    fpogd: &str,
    xo: &str,
    yo: &str,
) -> String {
    let text = egd_header();
    let header: Vec<&str> = text.trim().split(',').collect();
    let mut cols = vec!["0".to_string(); header.len()];
    let set = |cols: &mut Vec<String>, name: &str, v: &str| {
        let i = header.iter().position(|h| *h == name).unwrap();
        cols[i] = v.to_string();
    };
    set(&mut cols, "DICOM_ID", id);
    set(&mut cols, "FPOGS", fpogs);
    set(&mut cols, "FPOGX", fpogx);
    set(&mut cols, "FPOGY", fpogy);
    set(&mut cols, "FPOGD", fpogd);
    set(&mut cols, "X_ORIGINAL", xo);
    set(&mut cols, "Y_ORIGINAL", yo);
    cols.join(",")
}

fn master(ids: &[(&str, [u32; 4])]) -> String {
    let n = master_header().trim().split(',').count();
    let mut out = master_header().trim().to_string() + "\n";
    for (id, pads) in ids {
        let mut cols = vec![String::new(); n];
        cols[0] = id.to_string();
        for k in 0..4 {
            cols[7 + k] = pads[k].to_string();
        }
        out += &(cols.join(",") + "\n");
    }
    out
}

#[test]
fn egd_import_uses_original_coordinates_skips_calibration_and_locates_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        egd_row("calib", "0.1", "0.5", "0.5", "0.3", "-1", "-1"), // line 2: calibration
        egd_row("img-a", "1.0", "0.5", "0.5", "0.25", "998", "1035"), // line 3
        egd_row("img-a", "1.4", "0.1", "0.1", "0.30", "-1", "-1"), // line 4: off the image
        egd_row("img-a", "1.8", "0.5", "0.5", "0.35", "95x2", "884"), // line 5: bad number
        egd_row("img-a", "2.2", "0.5", "0.5", "0.40", "642", "860"), // line 6
        egd_row("img-b", "0.5", "0.5", "0.5", "0.2", "10", "10"), // line 7: no open image
        egd_row("img-b", "0.9", "0.5", "0.5", "0.2", "11", "10"), // line 8
    ];
    let fix = write(
        dir.path(),
        "fixations.csv",
        &format!("{}\n{}\n", egd_header().trim(), rows.join("\n")),
    );
    let sheet = write(
        dir.path(),
        "master_sheet.csv",
        &master(&[("img-a", [0, 0, 534, 534]), ("img-b", [0, 0, 534, 534])]),
    );
    let image = ImageKey::for_file(Path::new("/x/img-a.dcm"), &[], 2544, 3056);
    let import = egd::import(&fix, Some(&sheet), &[image]);
    assert_eq!(import.calibration_rows, 1);
    assert_eq!(import.recordings.len(), 1);
    let rec = &import.recordings[0];
    assert_eq!(rec.image_id, "img-a");
    assert!(!rec.simulated);
    assert_eq!(rec.off_image, 1);
    let xy: Vec<(f32, f32)> = rec.fixations.iter().map(|f| (f.x, f.y)).collect();
    assert_eq!(xy, vec![(998.0, 1035.0), (642.0, 860.0)]);
    close(rec.fixations[1].duration_s, 0.40, 1e-12);
    close(rec.fixations[1].start_s, 2.2, 1e-12);
    let texts: Vec<String> = import.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(import.problems.len(), 2, "{texts:?}");
    assert_eq!(import.problems[0].line, Some(5));
    assert_eq!(import.problems[0].column.as_deref(), Some("X_ORIGINAL"));
    assert!(texts[0].contains("'95x2' is not a number"), "{}", texts[0]);
    assert_eq!(import.problems[1].line, Some(7));
    assert!(
        texts[1].contains("img-b (2 rows) matches no open image"),
        "{}",
        texts[1]
    );
}

#[test]
fn egd_screen_coordinates_are_mapped_with_the_master_sheet_pads() {
    let dir = tempfile::tempdir().unwrap();
    // A file without X_ORIGINAL/Y_ORIGINAL: FPOG fractions of the 1920×1080 screen.
    let text = egd_header();
    let header: Vec<&str> = text
        .trim()
        .split(',')
        .filter(|h| !h.ends_with("_ORIGINAL"))
        .collect();
    let row = |x: &str, y: &str| {
        let mut cols = vec!["0".to_string(); header.len()];
        cols[header.iter().position(|h| *h == "DICOM_ID").unwrap()] = "img-a".into();
        cols[header.iter().position(|h| *h == "FPOGX").unwrap()] = x.into();
        cols[header.iter().position(|h| *h == "FPOGY").unwrap()] = y.into();
        cols.join(",")
    };
    let fix = write(
        dir.path(),
        "fixations.csv",
        &format!(
            "{}\n{}\n{}\n",
            header.join(","),
            row("0.5", "0.25"),
            row("0.1", "0.5")
        ),
    );
    let sheet = write(
        dir.path(),
        "master_sheet.csv",
        &master(&[("img-a", [0, 0, 534, 534])]),
    );
    let image = ImageKey::for_file(Path::new("img-a.dcm"), &[], 2544, 3056);
    let import = egd::import(&fix, Some(&sheet), std::slice::from_ref(&image));
    assert!(import.problems.is_empty(), "{:?}", import.problems);
    let rec = &import.recordings[0];
    // x: 0.5·1920 = 960 − 534 = 426 → int(2544/852 · 426) = 1272; y: 0.25·1080 = 270 → int(3056/1080 · 270) = 764
    assert_eq!((rec.fixations[0].x, rec.fixations[0].y), (1272.0, 764.0));
    // 0.1·1920 = 192 < 534: on the black pad, off the image.
    assert_eq!(rec.off_image, 1);
    // Without the master sheet the screen coordinates cannot be mapped: one clear problem.
    let import = egd::import(&fix, None, &[image]);
    assert!(import.recordings.is_empty());
    assert_eq!(import.problems.len(), 1);
    assert!(import.problems[0].message.contains("master_sheet.csv"));
}

#[test]
fn egd_missing_column_is_reported_on_the_header_line() {
    let dir = tempfile::tempdir().unwrap();
    let fix = write(
        dir.path(),
        "fixations.csv",
        "SESSION_ID,FPOGX,FPOGY\n1,0.5,0.5\n",
    );
    let import = egd::import(&fix, None, &[]);
    assert!(import.recordings.is_empty());
    assert_eq!(import.problems[0].line, Some(1));
    assert_eq!(import.problems[0].column.as_deref(), Some("DICOM_ID"));
    assert_eq!(
        import.problems[0].to_string(),
        "fixations.csv line 1, column DICOM_ID: required column is missing from the header"
    );
}

fn reflacx_header() -> String {
    header("reflacx_headers/main_data_ID_fixations.csv.header")
}

#[test]
fn reflacx_import_reads_times_resolution_and_shown_area_and_reports_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        "1.000,1.250,100,200,1.0,30.5,31.0,4096,2048,0,0,499,399,10,20,900,800", // line 2
        "1.300,1.700,150,x,1.0,30.5,31.0,4096,2048,0,0,499,399,10,20,900,800",   // line 3: bad y
        "1.800,1.750,150,150,1.0,30.5,31.0,4096,2048,0,0,499,399,10,20,900,800", // line 4: ends early
        "2.000,2.600,600,150,1.0,30.5,31.0,4096,2048,0,0,499,399,10,20,900,800", // line 5: off image
        "3.000,3.500,300,250,1.0,30.5,31.0,4096,2048,100,50,400,300,10,20,900,800", // line 6
    ];
    let fix = write(
        dir.path(),
        "main_data/P102R108387/fixations.csv",
        &format!("{}\n{}\n", reflacx_header().trim(), rows.join("\n")),
    );
    let image = ImageKey::for_file(Path::new("dicom-xyz.dcm"), &[], 500, 400);
    let import = reflacx::import(&fix, &image, None);
    let rec = &import.recordings[0];
    assert_eq!(rec.format, GazeFormat::Reflacx);
    assert_eq!(rec.image_id, "P102R108387");
    assert_eq!(rec.fixations.len(), 2);
    assert_eq!(rec.off_image, 1);
    close(rec.fixations[0].duration_s, 0.25, 1e-9);
    assert_eq!(rec.fixations[0].px_per_degree, Some([30.5, 31.0]));
    assert_eq!(
        rec.fixations[1].shown,
        Some(PixelRect {
            xmin: 100.0,
            ymin: 50.0,
            xmax: 400.0,
            ymax: 300.0
        })
    );
    let lines: Vec<(Option<u64>, Option<&str>)> = import
        .problems
        .iter()
        .map(|p| (p.line, p.column.as_deref()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (Some(3), Some("y_position")),
            (Some(4), Some("timestamp_end_fixation"))
        ]
    );

    // The metadata ties the case to a dicom_id and size: a different image is refused.
    let meta = write(
        dir.path(),
        "main_data/metadata_phase_3.csv",
        "id,split,eye_tracking_data_discarded,image,dicom_id,subject_id,image_size_x,image_size_y\n\
         P102R108387,test,False,x.dcm,dicom-xyz,1,500,400\n",
    );
    let ok = reflacx::import(&fix, &image, Some(&meta));
    assert_eq!(ok.recordings[0].image_id, "dicom-xyz");
    let other = ImageKey::for_file(Path::new("other.dcm"), &[], 500, 400);
    let refused = reflacx::import(&fix, &other, Some(&meta));
    assert!(refused.recordings.is_empty());
    assert!(
        refused.problems[0]
            .message
            .contains("matches no open image")
    );
    let resized = ImageKey::for_file(Path::new("dicom-xyz.dcm"), &[], 250, 200);
    let refused = reflacx::import(&fix, &resized, Some(&meta));
    assert!(
        refused.problems[0].message.contains("500×400"),
        "{}",
        refused.problems[0]
    );
}

// ---------------------------------------------------------------- synthetic gaze

#[test]
fn synthetic_gaze_round_trips_through_both_formats_on_a_shared_image() {
    let path = common::dicom(common::RSNA);
    let loaded = cxrlens::io::load_image(&path).expect("decode RSNA");
    let (w, h) = (loaded.image.width, loaded.image.height);
    let key = ImageKey::for_file(&path, &[], w, h);
    let id = key.ids[0].clone();
    let rec = synthetic::generate(w, h, None, &id, &SyntheticOptions::default());
    assert!(rec.simulated);
    assert!(
        rec.fixations.len() >= 15,
        "{} fixations",
        rec.fixations.len()
    );
    // Plausible: inside the image, durations 80 ms – 1.5 s, times increasing.
    for pair in rec.fixations.windows(2) {
        assert!(pair[1].start_s > pair[0].start_s);
    }
    assert!(
        rec.fixations
            .iter()
            .all(|f| (0.08..=1.5).contains(&f.duration_s))
    );

    let dir = tempfile::tempdir().unwrap();
    synthetic::write_egd(&dir.path().join("egd"), &[(&rec, w, h)]).unwrap();
    let egd = egd::import(
        &dir.path().join("egd/fixations.csv"),
        Some(&dir.path().join("egd/master_sheet.csv")),
        std::slice::from_ref(&key),
    );
    assert!(egd.problems.is_empty(), "{:?}", egd.problems);
    assert_eq!(egd.calibration_rows, 3);
    let back = &egd.recordings[0];
    assert!(back.simulated, "the SIMULATED marker must be recognised");
    let xy = |r: &GazeRecording| r.fixations.iter().map(|f| (f.x, f.y)).collect::<Vec<_>>();
    assert_eq!(xy(back), xy(&rec));

    let file =
        synthetic::write_reflacx(&dir.path().join("reflacx"), "SIM0001", &rec, w, h).unwrap();
    let meta = dir.path().join("reflacx/main_data/metadata_phase_3.csv");
    let refl = reflacx::import(&file, &key, Some(&meta));
    assert!(refl.problems.is_empty(), "{:?}", refl.problems);
    let back = &refl.recordings[0];
    assert!(back.simulated);
    assert_eq!(xy(back), xy(&rec));
    for (a, b) in back.fixations.iter().zip(&rec.fixations) {
        close(a.duration_s, b.duration_s, 2e-3);
    }

    // Both recipes give a map on the image grid that peaks where the fixations are.
    let fixated = fixated_pixels(
        &rec.fixations.iter().map(|f| (f.x, f.y)).collect::<Vec<_>>(),
        w,
        h,
    );
    for recipe in [
        Recipe::published(GazeFormat::EgdCxr),
        Recipe::published(GazeFormat::Reflacx),
    ] {
        let map = heatmap(back, w, h, recipe);
        assert_eq!((map.width, map.height), (w, h));
        let score = nss(&map.values, &fixated).unwrap();
        assert!(
            score > 1.0,
            "{recipe:?}: NSS of the gaze map at its own fixations is {score}"
        );
        let auc = auc_judd(&map.values, &fixated).unwrap();
        assert!(auc > 0.8, "{recipe:?}: AUC-Judd {auc}");
    }
}

#[test]
fn synthetic_gaze_follows_the_lung_mask() {
    // Two "lungs" in the lower right of a 400×400 image, where the built-in zones (used without a
    // mask) put little gaze: the reading must follow this mask, not the default anatomy.
    let (w, h) = (400u32, 400u32);
    let mut values = vec![0.0f32; (w * h) as usize];
    for y in 230..390 {
        for x in (230..300).chain(320..390) {
            values[y * w as usize + x] = 1.0;
        }
    }
    let mask = cxrlens::imaging::ScalarImage::new(w, h, values.clone()).unwrap();
    let on_mask = |rec: &cxrlens::gaze::GazeRecording| {
        let inside = rec
            .fixations
            .iter()
            .filter(|f| values[f.y as usize * w as usize + f.x as usize] > 0.5)
            .count();
        inside as f64 / rec.fixations.len() as f64
    };
    let without = synthetic::generate(w, h, None, "x", &SyntheticOptions::default());
    assert!(
        on_mask(&without) < 0.3,
        "the built-in zones already cover this mask ({:.2})",
        on_mask(&without)
    );
    for seed in 0..5 {
        let rec = synthetic::generate(
            w,
            h,
            Some(&mask),
            "x",
            &SyntheticOptions {
                seed,
                ..Default::default()
            },
        );
        let frac = on_mask(&rec);
        assert!(
            frac >= 0.5,
            "seed {seed}: only {frac:.2} of fixations on the lungs"
        );
    }
}
