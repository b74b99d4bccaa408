//! Exports: the Secondary Capture read back by DCMTK (dcmdump, dcm2pnm) and by the app, the PNG's
//! burned-in mark and legend, the report's embedded picture and identifiers, and the batch run (bad
//! file row, resume, Ctrl-C). DCMTK is installed by scripts/setup.sh; these tests fail without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cxrlens::export::job::{ExportKind, image_export, run};
use cxrlens::export::summary::{AnalysisSummary, ExplanationSummary, PredictionSummary};
use cxrlens::imaging::ScalarImage;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/sample_chest.dcm")
}

/// A mask (an ellipse) and a heatmap that is 1 inside a box and 0 elsewhere.
fn layers(w: u32, h: u32, heat_box: [u32; 4]) -> (ScalarImage, ScalarImage) {
    let mut mask = vec![0.0; (w * h) as usize];
    let mut heat = vec![0.0; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 / w as f32 - 0.5, y as f32 / h as f32 - 0.5);
            if dx * dx / 0.09 + dy * dy / 0.12 < 1.0 {
                mask[(y * w + x) as usize] = 1.0;
            }
            if (heat_box[0]..heat_box[2]).contains(&x) && (heat_box[1]..heat_box[3]).contains(&y) {
                heat[(y * w + x) as usize] = 1.0;
            }
        }
    }
    (
        ScalarImage::new(w, h, mask).unwrap(),
        ScalarImage::new(w, h, heat).unwrap(),
    )
}

fn summary(shown: bool) -> AnalysisSummary {
    AnalysisSummary {
        source: "sample_chest.dcm".into(),
        width: 613,
        height: 651,
        predictions: vec![PredictionSummary {
            model: "pneumonia-effnet 1.0.0".into(),
            shown,
            classes: vec![("normal".into(), 0.25), ("pneumonia".into(), 0.75)],
            ..Default::default()
        }],
        explanation: Some(ExplanationSummary {
            method: "Grad-CAM".into(),
            model: "pneumonia-effnet 1.0.0".into(),
            class: "pneumonia".into(),
            shown,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The value of a top-level attribute in dcmdump's output, e.g. `(0010,0020) LO [SAMPLE-0001]`.
fn dump_value(dump: &str, tag: &str) -> Option<String> {
    dump.lines()
        .find(|l| l.starts_with(&format!("({tag})")))
        .and_then(|l| Some(l[l.find('[')? + 1..l.find(']')?].to_string()))
}

fn dcmdump(path: &Path) -> String {
    let out = Command::new("dcmdump")
        .arg(path)
        .output()
        .expect("dcmdump (DCMTK) runs: scripts/setup.sh installs dcmtk");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "dcmdump failed on {}: {stderr}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn secondary_capture_files_under_the_source_study_and_reads_back_in_dcmtk_and_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = cxrlens::io::load_image(&sample()).unwrap();
    let (w, h) = (loaded.image.width, loaded.image.height);
    let (mask, heat) = layers(w, h, [100, 100, 300, 250]);
    let mut job = image_export(&loaded, &sample(), Some(mask), Some(heat), &summary(true));
    job.kind = ExportKind::SecondaryCapture;
    job.out = dir.path().join("sc.dcm");
    run(&job).unwrap();

    let sc = dcmdump(&job.out);
    let source = dcmdump(&sample());
    // Patient and study copied, a new series, the source referenced.
    for tag in ["0010,0010", "0010,0020", "0020,000d"] {
        assert_eq!(dump_value(&sc, tag), dump_value(&source, tag), "{tag}");
        assert!(dump_value(&sc, tag).is_some(), "{tag} missing");
    }
    assert_ne!(
        dump_value(&sc, "0020,000e"),
        dump_value(&source, "0020,000e")
    );
    assert_ne!(
        dump_value(&sc, "0008,0018"),
        dump_value(&source, "0008,0018")
    );
    assert!(sc.contains("=SecondaryCaptureImageStorage"));
    let referenced: Vec<&str> = sc
        .lines()
        .filter(|l| l.trim_start().starts_with("(0008,1155)"))
        .collect();
    let source_uid = dump_value(&source, "0008,0018").unwrap();
    assert_eq!(referenced.len(), 2, "Referenced + Source Image Sequence");
    assert!(referenced.iter().all(|l| l.contains(&source_uid)));
    assert_eq!(dump_value(&sc, "0028,0301").as_deref(), Some("YES"));
    assert!(
        dump_value(&sc, "0008,103e")
            .unwrap()
            .contains("Grad-CAM of pneumonia-effnet 1.0.0")
    );

    // DCMTK renders it; its pixels are the picture (rows, columns and every byte).
    let png = dir.path().join("dcmtk.png");
    let status = Command::new("dcm2pnm")
        .args(["--write-png"])
        .arg(&job.out)
        .arg(&png)
        .status()
        .unwrap();
    assert!(status.success());
    let dcmtk = image::open(&png).unwrap().to_rgb8();
    let k = cxrlens::export::figure::enlargement(w, h);
    assert_eq!(dcmtk.dimensions(), (w * k, h * k));
    let app = cxrlens::io::load_image(&job.out).unwrap();
    let color = app.color.expect("the SC is read as colour");
    assert_eq!((color.width, color.height), dcmtk.dimensions());
    let differing = dcmtk
        .as_raw()
        .iter()
        .zip(color.values.iter())
        .filter(|(a, b)| **a as f32 != **b)
        .count();
    assert_eq!(differing, 0, "DCMTK and the app read different pixels");
    // The overlays are burned in: inferno heat inside the box (not grey), none far from it.
    let px = |x: u32, y: u32| dcmtk.get_pixel(x * k, y * k).0;
    let inside = px(200, 175);
    assert!(inside[0] != inside[2], "no heat drawn: {inside:?}");
}

/// Pixels not grey (R, G, B not all equal).
fn coloured(img: &image::RgbImage) -> Vec<(u32, u32)> {
    img.enumerate_pixels()
        .filter(|(_, _, p)| !(p.0[0] == p.0[1] && p.0[1] == p.0[2]))
        .map(|(x, y, _)| (x, y))
        .collect()
}

#[test]
fn png_export_has_the_research_mark_and_a_legend_only_with_a_heatmap() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = cxrlens::io::load_image(&sample()).unwrap();
    let (w, h) = (loaded.image.width, loaded.image.height);
    let k = cxrlens::export::figure::enlargement(w, h);
    let heat_box = [100, 100, 300, 250];
    let (_, heat) = layers(w, h, heat_box);
    let export = |heat: Option<ScalarImage>, name: &str| {
        let mut job = image_export(&loaded, &sample(), None, heat, &summary(true));
        job.kind = ExportKind::Png;
        job.out = dir.path().join(name);
        run(&job).unwrap();
        image::open(&job.out).unwrap().to_rgb8()
    };
    let plain = export(None, "plain.png");
    let with_heat = export(Some(heat), "heat.png");
    assert_eq!(plain.dimensions(), (w * k, h * k));
    // The mark: yellow text in a band at the bottom, in both.
    for img in [&plain, &with_heat] {
        let band_top = img.height() * 9 / 10;
        let yellow = img
            .enumerate_pixels()
            .filter(|(_, y, p)| *y >= band_top && p.0[0] > 200 && p.0[1] > 150 && p.0[2] < 60)
            .count();
        assert!(
            yellow > 100,
            "research mark not found ({yellow} yellow pixels)"
        );
    }
    // Without a heatmap (greyscale image, no mask) the only colour is the mark's band.
    let band = (plain.height() as f32 * 0.93) as u32;
    assert!(coloured(&plain).iter().all(|&(_, y)| y >= band));
    // With one: colour inside the heat box, in the legend at the right edge, nowhere else.
    let right_strip = with_heat.width() * 8 / 10;
    let mut legend = 0;
    for (x, y) in coloured(&with_heat) {
        // Bilinear magnification spreads the box's edge by up to one image pixel.
        let in_box = (heat_box[0] * k - k..heat_box[2] * k + k).contains(&x)
            && (heat_box[1] * k - k..heat_box[3] * k + k).contains(&y);
        if x >= right_strip && !in_box && y < band {
            legend += 1;
        }
        assert!(
            in_box || x >= right_strip || y >= band,
            "stray colour at ({x}, {y})"
        );
    }
    assert!(
        legend > 200,
        "no legend ({legend} coloured pixels at the right edge)"
    );
}

#[test]
fn report_embeds_the_picture_and_names_the_patient_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = cxrlens::io::load_image(&sample()).unwrap();
    let (w, h) = (loaded.image.width, loaded.image.height);
    let report = |identifiers: bool, shown: bool| {
        let mut job = image_export(&loaded, &sample(), None, None, &summary(shown));
        job.kind = ExportKind::Report;
        job.identifiers = identifiers;
        job.out = dir.path().join(format!("r-{identifiers}-{shown}.html"));
        run(&job).unwrap();
        std::fs::read_to_string(&job.out).unwrap()
    };
    let anonymous = report(false, true);
    assert!(anonymous.contains(cxrlens::export::RESEARCH_MARK));
    assert!(!anonymous.contains("SAMPLE-0001") && !anonymous.contains("ANONYMOUS"));
    assert!(anonymous.contains("0.750"), "probability missing");
    let named = report(true, true);
    assert!(named.contains("SAMPLE-0001") && named.contains("ANONYMOUS^SAMPLE"));
    // A withheld model's probabilities are not in the report.
    let withheld = report(false, false);
    assert!(!withheld.contains("0.750") && withheld.contains("Withheld"));
    // The embedded picture is a PNG of the export's size.
    let start = anonymous.find("data:image/png;base64,").unwrap() + 22;
    let end = start + anonymous[start..].find('"').unwrap();
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(&anonymous[start..end])
        .unwrap();
    let k = cxrlens::export::figure::enlargement(w, h);
    assert_eq!(
        image::load_from_memory(&png)
            .unwrap()
            .to_rgb8()
            .dimensions(),
        (w * k, h * k)
    );
}

#[test]
fn a_failed_export_leaves_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = cxrlens::io::load_image(&sample()).unwrap();
    let mut job = image_export(&loaded, &sample(), None, None, &summary(true));
    job.out = dir.path().join("missing-folder/out.png");
    let e = run(&job).unwrap_err();
    assert!(e.contains("missing-folder"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // A report needs an analysis.
    job.kind = ExportKind::Report;
    job.summary = None;
    job.out = dir.path().join("r.html");
    assert!(run(&job).unwrap_err().contains("Analyze"));
    assert!(!job.out.exists());
}

fn batch(input: &Path, out: &Path, extra: &[&str]) -> Command {
    common::isolate_user_dirs();
    let mut c = Command::new(env!("CARGO_BIN_EXE_cxrlens"));
    c.args(["--backend", "flex", "analyze"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

fn rows(out: &Path) -> Vec<csv::StringRecord> {
    csv::Reader::from_path(out.join("summary.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn batch_run_writes_maps_and_a_row_per_file_and_skips_what_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    let kermany = common::kermany_test_image();
    std::fs::copy(&kermany, input.join("child.jpeg")).unwrap();
    std::fs::copy(sample(), input.join("sub/adult.dcm")).unwrap();
    let bytes = std::fs::read(sample()).unwrap();
    std::fs::write(input.join("truncated.dcm"), &bytes[..3000]).unwrap();
    let out = dir.path().join("out");
    let o = batch(&input, &out, &["--overlay"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = rows(&out);
    assert_eq!(rows.len(), 3);
    let by_file = |name: &str| rows.iter().find(|r| &r[0] == name).unwrap().clone();
    let bad = by_file("truncated.dcm");
    assert_eq!(&bad[2], "error");
    assert!(bad[3].contains("file holds"), "{:?}", &bad[3]);
    for (name, file) in [("child.jpeg", &kermany), ("adult.dcm", &sample())] {
        assert_eq!(&by_file(name)[2], "ok");
        let key = cxrlens::cli::ml::output_key(&input.join(if name == "adult.dcm" {
            "sub/adult.dcm"
        } else {
            name
        }));
        let record: cxrlens::cli::ml::ImageRecord =
            serde_json::from_slice(&std::fs::read(out.join(format!("{key}.json"))).unwrap())
                .unwrap();
        let (w, h) = image::image_dimensions(file).unwrap_or_else(|_| {
            let l = cxrlens::io::load_image(file).unwrap();
            (l.image.width, l.image.height)
        });
        assert_eq!((record.summary.width, record.summary.height), (w, h));
        let mask = image::open(out.join(format!("{key}.mask.png"))).unwrap();
        assert_eq!((mask.width(), mask.height()), (w, h));
        assert!(matches!(mask, image::DynamicImage::ImageLuma8(_)));
        assert!(out.join(format!("{key}.overlay.png")).is_file());
    }
    // The child's radiograph is the classifier's own domain: its heatmap is written, 16-bit.
    let child_key = cxrlens::cli::ml::output_key(&input.join("child.jpeg"));
    let heat = image::open(out.join(format!("{child_key}.heatmap.png"))).unwrap();
    assert!(matches!(heat, image::DynamicImage::ImageLuma16(_)));
    let child = by_file("child.jpeg");
    let header = csv::Reader::from_path(out.join("summary.csv"))
        .unwrap()
        .headers()
        .unwrap()
        .clone();
    let p_col = header
        .iter()
        .position(|c| c.contains("pneumonia-effnet") && c.ends_with(":pneumonia]"))
        .unwrap();
    let p: f64 = child[p_col].parse().unwrap();
    assert!((0.0..=1.0).contains(&p));

    // Again: nothing analysed anew, the JSON untouched.
    let json = out.join(format!("{child_key}.json"));
    let before = std::fs::metadata(&json).unwrap().modified().unwrap();
    let o = batch(&input, &out, &[]).output().unwrap();
    assert!(o.status.success());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.starts_with("0 analysed, 2 done earlier, 1 failed"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::metadata(&json).unwrap().modified().unwrap(),
        before
    );
}

#[test]
fn ctrl_c_stops_a_batch_cleanly_and_the_next_run_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let images: Vec<PathBuf> =
        std::fs::read_dir(common::shared_data().join("kermany-pneumonia/images"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .take(12)
            .collect();
    for (i, p) in images.iter().enumerate() {
        std::fs::copy(p, input.join(format!("img{i:02}.jpeg"))).unwrap();
    }
    let out = dir.path().join("out");
    let mut child = batch(&input, &out, &[]).spawn().unwrap();
    let started = Instant::now();
    loop {
        let done = std::fs::read_dir(&out)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "json")
                })
                .count()
            })
            .unwrap_or(0);
        if done >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no image finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let first = rows(&out);
    if status.code() == Some(130) {
        assert!(
            first.len() < images.len(),
            "stopped, yet every image was done"
        );
    } else {
        // The signal came after the last image: nothing to resume, but it must have finished.
        assert!(status.success());
    }
    assert!(first.iter().all(|r| &r[2] == "ok"));
    let o = batch(&input, &out, &[]).output().unwrap();
    assert!(o.status.success());
    let second = rows(&out);
    assert_eq!(second.len(), images.len());
    let earlier = second.iter().filter(|r| &r[2] == "done earlier").count();
    assert_eq!(earlier, first.len());
    assert!(
        second
            .iter()
            .all(|r| &r[2] == "ok" || &r[2] == "done earlier")
    );
}
