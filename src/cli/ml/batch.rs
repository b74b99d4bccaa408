//! `cxrlens analyze PATH… --out DIR`: every image of the files, folders and DICOMDIRs given, through
//! the models, with per image a JSON (model versions, probabilities, lung area, out-of-distribution
//! verdict, explanation, timings), the lung mask as PNG and the heatmap as 16-bit PNG at image
//! resolution, optionally the overlay PNG, a Secondary Capture and a report; then `summary.csv`.
//! The JSON is written last, so an image is done exactly when its JSON exists: a second run with the
//! same `--out` skips those. A bad file is a row with its error; Ctrl-C stops after the current
//! step and still writes `summary.csv`.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::*;
use crate::export::job::ExportKind;
use crate::export::summary::{AnalysisSummary, summarize};

/// One image's JSON: the summary, the files written beside it and the time of each stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRecord {
    pub path: PathBuf,
    pub summary: AnalysisSummary,
    /// File names (in the output folder) by role: mask, heatmap, overlay, secondary_capture, report.
    pub files: Vec<(String, String)>,
    pub load_seconds: f64,
    pub write_seconds: f64,
}

/// A row of `summary.csv`.
struct Row {
    path: PathBuf,
    status: &'static str,
    error: String,
    record: Option<ImageRecord>,
}

/// The images to analyse: files as given, folders scanned (DICOMDIR preferred), DICOMDIR files
/// read; problems found while scanning become error rows.
fn collect(paths: &[PathBuf], cancel: &Arc<AtomicBool>) -> (Vec<PathBuf>, Vec<Row>) {
    let mut images = Vec::new();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |p: PathBuf, images: &mut Vec<PathBuf>| {
        if seen.insert(p.clone()) {
            images.push(p);
        }
    };
    for path in paths {
        let error = |e: String| Row {
            path: path.clone(),
            status: "error",
            error: e,
            record: None,
        };
        let tree = if path.is_dir() {
            crate::io::study::scan_folder(path, cancel)
        } else if path
            .file_name()
            .is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR"))
        {
            match crate::io::study::read_dicomdir(path) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(error(e));
                    continue;
                }
            }
        } else if path.exists() {
            push(path.clone(), &mut images);
            continue;
        } else {
            problems.push(error("no such file or folder".into()));
            continue;
        };
        for entry in tree.all_images() {
            push(entry.path.clone(), &mut images);
        }
        for p in tree.problems {
            problems.push(error(p));
        }
    }
    (images, problems)
}

/// Output name stem of an image: its file stem (letters, digits, `-`, `_`, `.` kept) and a hash of
/// its full path, so equal names in different folders do not collide and a rerun finds them again.
pub fn output_key(path: &Path) -> String {
    let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    // FNV-1a, 32 bits: stable across runs and platforms.
    let hash = full
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0x811c_9dc5u32, |h, &b| {
            (h ^ b as u32).wrapping_mul(0x0100_0193)
        });
    let stem: String = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    format!("{stem}-{hash:08x}")
}

/// Runs the batch; returns what is printed at the end and whether Ctrl-C stopped it.
pub fn run_batch(
    args: &AnalyzeArgs,
    out: &Path,
    backend: Option<&str>,
) -> Result<(String, bool), String> {
    let method = parse_method(&args.method)?;
    let target = parse_target(&args.target)?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = Arc::clone(&cancel);
        // Only the first handler of a process can be set; a second batch in one process (tests)
        // keeps the first one, which is fine for a CLI.
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ncxrlens: stopping after the current step (Ctrl-C again to quit now)");
        });
    }
    let (images, mut rows) = collect(&args.paths, &cancel);
    let (compute, models, problems) = load_models(backend)?;
    let infos = models.infos();
    let progress = Progress::new(images.len() as u64);
    let started = Instant::now();
    let (mut done, mut skipped, mut failed) = (0usize, 0usize, 0usize);
    for path in &images {
        if cancel.load(Ordering::SeqCst) {
            break;
        }
        let key = output_key(path);
        let json = out.join(format!("{key}.json"));
        if let Some(record) = read_record(&json) {
            skipped += 1;
            rows.push(Row {
                path: path.clone(),
                status: "done earlier",
                error: String::new(),
                record: Some(record),
            });
            progress.step(path, "done earlier");
            continue;
        }
        let row = match analyse_one(
            path, &key, out, args, &models, &infos, method, target, &compute, &cancel,
        ) {
            Ok(record) => {
                done += 1;
                Row {
                    path: path.clone(),
                    status: "ok",
                    error: String::new(),
                    record: Some(record),
                }
            }
            // Stopped mid-image: nothing of it is recorded, the next run does it again.
            Err(_) if cancel.load(Ordering::SeqCst) => break,
            Err(e) => {
                failed += 1;
                Row {
                    path: path.clone(),
                    status: "error",
                    error: e,
                    record: None,
                }
            }
        };
        progress.step(path, row.status);
        rows.push(row);
    }
    progress.finish();
    let csv = summary_csv(&rows)?;
    crate::export::write_file(&out.join("summary.csv"), csv.as_bytes())?;
    let seconds = started.elapsed().as_secs_f64();
    let mut text = format!(
        "{done} analysed, {skipped} done earlier, {failed} failed, {} scan problems in {seconds:.1} s ({:.1} images/minute); device {}\n",
        rows.iter().filter(|r| r.status == "error").count() - failed,
        if seconds > 0.0 {
            60.0 * done as f64 / seconds
        } else {
            0.0
        },
        compute.description
    );
    if cancel.load(Ordering::SeqCst) {
        text += &format!(
            "stopped by Ctrl-C after {} of {} images; run the same command again to continue\n",
            done + skipped + failed,
            images.len()
        );
    }
    text += &format!("summary: {}\n", out.join("summary.csv").display());
    for p in problems {
        text += &format!("note: {p}\n");
    }
    Ok((text, cancel.load(Ordering::SeqCst)))
}

fn read_record(json: &Path) -> Option<ImageRecord> {
    serde_json::from_slice(&std::fs::read(json).ok()?).ok()
}

#[allow(clippy::too_many_arguments)]
fn analyse_one(
    path: &Path,
    key: &str,
    out: &Path,
    args: &AnalyzeArgs,
    models: &Models,
    infos: &[&crate::ml::bundle::BundleInfo],
    method: Method,
    target: ExplainTarget,
    compute: &ComputeDevice,
    cancel: &Arc<AtomicBool>,
) -> Result<ImageRecord, String> {
    let t0 = Instant::now();
    let loaded = crate::io::load_image(path).map_err(|e| e.to_string())?;
    let load_seconds = t0.elapsed().as_secs_f64();
    let request = AnalysisRequest::of(&loaded, method, target);
    let result = analyze(models, &request, &mut |_, _| !cancel.load(Ordering::SeqCst))
        .map_err(|e| e.to_string())?;
    let size = (loaded.image.width, loaded.image.height);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let summary = summarize(
        &result,
        infos,
        &name,
        loaded.frame,
        size,
        &compute.description,
    );
    let t1 = Instant::now();
    let mut files = Vec::new();
    let mut write = |role: &str, suffix: &str, bytes: Vec<u8>| -> Result<(), String> {
        let file = format!("{key}.{suffix}");
        crate::export::write_file(&out.join(&file), &bytes)?;
        files.push((role.to_string(), file));
        Ok(())
    };
    let show_mask = args.show_hidden || summary.lung_shown;
    let show_heat = args.show_hidden || summary.explanation.as_ref().is_some_and(|e| e.shown);
    let mask = result.lung_probability.filter(|_| show_mask);
    let heat = result.heatmap.filter(|_| show_heat);
    if let Some(m) = &mask {
        write("mask", "mask.png", crate::export::maps::mask_png(m, 0.5)?)?;
    }
    if let Some(h) = &heat {
        write(
            "heatmap",
            "heatmap.png",
            crate::export::maps::heatmap_png16(h)?,
        )?;
    }
    let exports: Vec<ExportKind> = [
        (args.overlay, ExportKind::Png),
        (args.sc, ExportKind::SecondaryCapture),
        (args.report, ExportKind::Report),
    ]
    .into_iter()
    .filter_map(|(on, k)| on.then_some(k))
    .collect();
    if !exports.is_empty() {
        let mut job = crate::export::job::image_export(&loaded, path, mask, heat, &summary);
        for kind in exports {
            let (role, suffix) = match kind {
                ExportKind::Png => ("overlay", "overlay.png"),
                ExportKind::SecondaryCapture => ("secondary_capture", "sc.dcm"),
                ExportKind::Report => ("report", "report.html"),
            };
            job.kind = kind;
            job.out = out.join(format!("{key}.{suffix}"));
            job.identifiers = args.identifiers;
            crate::export::job::run(&job)?;
            files.push((role.to_string(), format!("{key}.{suffix}")));
        }
    }
    let record = ImageRecord {
        path: path.to_path_buf(),
        summary,
        files,
        load_seconds,
        write_seconds: t1.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?;
    crate::export::write_file(&out.join(format!("{key}.json")), &json)?;
    Ok(record)
}

/// `summary.csv`: one row per image (errors included), a column per class probability.
fn summary_csv(rows: &[Row]) -> Result<String, String> {
    let mut class_columns: Vec<String> = Vec::new();
    for r in rows.iter().filter_map(|r| r.record.as_ref()) {
        for p in r.summary.predictions.iter().filter(|p| !p.uninformative) {
            for (c, _) in &p.classes {
                let col = format!("p[{}:{c}]", p.model);
                if !class_columns.contains(&col) {
                    class_columns.push(col);
                }
            }
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "file",
        "path",
        "status",
        "error",
        "verdict",
        "lung_area_fraction",
        "explanation",
    ]
    .map(String::from)
    .to_vec();
    header.extend(class_columns.iter().cloned());
    header.extend(["decisions", "ood_distances", "seconds"].map(String::from));
    w.write_record(&header).map_err(|e| e.to_string())?;
    for r in rows {
        let mut rec = vec![
            r.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            r.path.display().to_string(),
            r.status.to_string(),
            r.error.clone(),
        ];
        match &r.record {
            Some(record) => {
                let s = &record.summary;
                rec.push(
                    s.ood
                        .verdict
                        .clone()
                        .unwrap_or_else(|| "in distribution".into()),
                );
                rec.push(
                    s.lung_area_fraction
                        .filter(|_| s.lung_shown)
                        .map(|f| format!("{f:.4}"))
                        .unwrap_or_default(),
                );
                rec.push(
                    s.explanation
                        .as_ref()
                        .map(|e| format!("{} of {} ({})", e.method, e.model, e.class))
                        .unwrap_or_default(),
                );
                for col in &class_columns {
                    let v = s
                        .predictions
                        .iter()
                        .filter(|p| p.shown && !p.uninformative)
                        .find_map(|p| {
                            p.classes
                                .iter()
                                .find(|(c, _)| *col == format!("p[{}:{c}]", p.model))
                                .map(|(_, v)| format!("{v:.4}"))
                        });
                    rec.push(v.unwrap_or_default());
                }
                rec.push(
                    s.predictions
                        .iter()
                        .filter(|p| p.shown)
                        .filter_map(|p| p.decision.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                rec.push(
                    s.ood
                        .gates
                        .iter()
                        .map(|g| format!("{} {:.1}/{:.1}", g.model, g.distance, g.threshold))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                rec.push(format!(
                    "{:.3}",
                    record.load_seconds + s.seconds + record.write_seconds
                ));
            }
            None => rec.extend(std::iter::repeat_n(String::new(), header.len() - 4)),
        }
        w.write_record(&rec).map_err(|e| e.to_string())?;
    }
    String::from_utf8(w.into_inner().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

/// A progress bar with ETA on a terminal (indicatif), plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: std::cell::Cell<u64>,
    started: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} images  {elapsed_precise} elapsed, ETA {eta_precise}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            total,
            done: std::cell::Cell::new(0),
            started: Instant::now(),
        }
    }

    fn step(&self, path: &Path, status: &str) {
        let n = self.done.get() + 1;
        self.done.set(n);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match &self.bar {
            Some(bar) => {
                bar.set_message(format!("{name}: {status}"));
                bar.inc(1);
            }
            None => {
                let elapsed = self.started.elapsed().as_secs_f64();
                let eta = elapsed / n as f64 * (self.total - n) as f64;
                eprintln!(
                    "[{n}/{}] {name}: {status} ({elapsed:.0} s elapsed, ETA {eta:.0} s)",
                    self.total
                );
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
