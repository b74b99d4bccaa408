//! `cxrlens gaze …`: simulated recordings, the compare table headless, and the heatmap benchmark.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};

use crate::gaze::heatmap::{Recipe, heatmap, normalised_for_display};
use crate::gaze::synthetic::{self, SyntheticOptions};
use crate::gaze::table::{metrics_table, rect_mask, region_mask, to_csv, write_csv};
use crate::gaze::{self, GazeFormat};
use crate::ml::analysis::{AnalysisRequest, Models, analyze};
use crate::ml::bundle::discover;

#[derive(Debug, Subcommand)]
pub enum GazeCommand {
    /// Write a SIMULATED reading of an image as EGD-CXR and REFLACX files (for tests and demos).
    Simulate {
        image: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Write SIMULATED EGD-CXR gaze for every image of a dataset folder (default DATA/gaze), guided
    /// by its lung masks where present: data for trying the saliency recipe, labelled simulated.
    SimulateDataset {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Compare a gaze recording with the models' maps: prints the metrics table, optionally as CSV.
    Compare(CompareArgs),
    /// Time building the heatmap of a synthetic reading on a size×size image (both recipes).
    Bench {
        /// Image side in pixels (16–10000).
        #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u32).range(16..=10_000))]
        size: u32,
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
        repeat: u64,
    },
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    pub image: PathBuf,
    /// fixations.csv (EGD-CXR, with master_sheet.csv beside it) or a REFLACX case's fixations.csv.
    #[arg(long)]
    pub gaze: PathBuf,
    /// EGD-CXR blur σ in image pixels (default 150); REFLACX σ in degrees (default 1).
    #[arg(long)]
    pub sigma: Option<f32>,
    /// Explanation method (grad-cam, grad-cam++, guided-backprop, deconvnet, guided-grad-cam,
    /// smoothgrad, lung-cropped-cam).
    #[arg(long, default_value = "grad-cam")]
    pub method: String,
    /// Region for Diff_GradCAM and EHR-AUC: "lung" (predicted mask) or "x0,y0,x1,y1" in image pixels.
    #[arg(long, default_value = "lung")]
    pub region: String,
    /// Write the table here as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

pub fn run(command: &GazeCommand, backend: Option<&str>) -> Result<String, String> {
    match command {
        GazeCommand::Simulate { image, out, seed } => {
            let loaded = crate::io::load_image(image).map_err(|e| e.to_string())?;
            let key = gaze::image_key(image, &loaded);
            let (w, h) = (loaded.image.width, loaded.image.height);
            let rec = synthetic::generate(
                w,
                h,
                None,
                &key.ids[0],
                &SyntheticOptions {
                    seed: *seed,
                    ..Default::default()
                },
            );
            let egd_dir = out.join("egd-cxr");
            synthetic::write_egd(&egd_dir, &[(&rec, w, h)]).map_err(|e| e.to_string())?;
            let case = format!("SIM{seed:04}");
            let reflacx = synthetic::write_reflacx(&out.join("reflacx"), &case, &rec, w, h)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "SIMULATED gaze, {} fixations over {:.1} s on {}:\n  {}\n  {}\n",
                rec.fixations.len(),
                rec.dwell_seconds(),
                key.ids[0],
                egd_dir.join("fixations.csv").display(),
                reflacx.display()
            ))
        }
        GazeCommand::Compare(args) => compare(args, backend),
        GazeCommand::SimulateDataset { data, out, seed } => {
            let out = out.clone().unwrap_or_else(|| data.join("gaze"));
            let n = synthetic::simulate_dataset(data, &out, *seed).map_err(|e| e.to_string())?;
            Ok(format!(
                "SIMULATED gaze for {n} images written to {} (fixations.csv, master_sheet.csv, SIMULATED.txt)\n",
                out.display()
            ))
        }
        GazeCommand::Bench { size, repeat } => bench(*size, *repeat as usize),
    }
}

fn compare(args: &CompareArgs, backend: Option<&str>) -> Result<String, String> {
    let loaded = crate::io::load_image(&args.image).map_err(|e| e.to_string())?;
    let key = gaze::image_key(&args.image, &loaded);
    let import = gaze::import_for_image(&args.gaze, &key);
    let mut out = String::new();
    for p in &import.problems {
        out += &format!("problem: {p}\n");
    }
    let Some(rec) = import.recordings.first() else {
        return Err(format!(
            "{}no recording in {} matches {}",
            out,
            args.gaze.display(),
            key.ids.join(" / ")
        ));
    };
    let (w, h) = (loaded.image.width, loaded.image.height);
    let recipe = match (rec.format, args.sigma) {
        (GazeFormat::EgdCxr, Some(s)) => Recipe::EgdCxr { sigma_px: s },
        (GazeFormat::Reflacx, Some(s)) => Recipe::Reflacx {
            sigma_degrees: s,
            fallback_sigma_px: 50.0,
        },
        (f, None) => Recipe::published(f),
    };
    recipe.check().map_err(|e| format!("--sigma: {e}"))?;
    let t = Instant::now();
    let gaze_map = heatmap(rec, w, h, recipe);
    let gaze_ms = t.elapsed().as_secs_f64() * 1000.0;
    let method = super::ml::parse_method(&args.method)?;
    let compute = super::ml::compute_device(backend)?;
    let (bundles, _) = discover();
    let (models, problems) = Models::load(&bundles, &compute.device);
    for p in problems {
        out += &format!("note: {p}\n");
    }
    let result = analyze(
        &models,
        &AnalysisRequest::of(
            &loaded,
            method,
            crate::ml::analysis::ExplainTarget::Classifier,
        ),
        &mut |_, _| true,
    )
    .map_err(|e| e.to_string())?;
    let mut maps = Vec::new();
    if let (Some(m), Some((model, class))) = (&result.heatmap, &result.explained) {
        maps.push((format!("{} ({model}, {class})", method.label()), m));
    }
    if let Some((m, title)) = &result.saliency {
        maps.push((format!("Predicted gaze ({title})"), m));
    }
    let region = if args.region == "lung" {
        result
            .lung_probability
            .as_ref()
            .map(|m| ("predicted lung mask".to_string(), region_mask(m)))
    } else {
        let v: Vec<f32> = args
            .region
            .split(',')
            .map(|s| s.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("--region {:?}: expected lung or x0,y0,x1,y1", args.region))?;
        if v.len() != 4 {
            return Err(format!("--region {:?}: expected four numbers", args.region));
        }
        Some((
            format!("box {},{}–{},{}", v[0], v[1], v[2], v[3]),
            rect_mask(w, h, [v[0], v[1], v[2], v[3]]),
        ))
    };
    let display_gaze = normalised_for_display(gaze_map);
    let points: Vec<(f32, f32)> = rec.fixations.iter().map(|f| (f.x, f.y)).collect();
    let gaze_name = crate::gaze::compare::gaze_name(rec);
    let rows = metrics_table(
        Some((&gaze_name, &display_gaze, &points)),
        &maps,
        region.as_ref().map(|(n, m)| (n.as_str(), m.as_slice())),
    );
    out += &format!(
        "gaze:   {} — {} ({:.0} ms at {w}×{h})\n",
        rec.title(),
        recipe.describe(),
        gaze_ms
    );
    if rec.simulated {
        out += "        SIMULATED gaze: not a recording of a person\n";
    }
    if result.saliency.is_none() {
        out += "note:   no saliency model installed (train one with the trainer); predicted gaze skipped\n";
    }
    out += &to_csv(&rows);
    if let Some(path) = &args.csv {
        write_csv(&rows, path).map_err(|e| format!("{}: {e}", path.display()))?;
        out += &format!("wrote {}\n", path.display());
    }
    Ok(out)
}

fn bench(size: u32, repeat: usize) -> Result<String, String> {
    let rec = synthetic::generate(size, size, None, "bench", &SyntheticOptions::default());
    let mut out = format!(
        "{} fixations on a {size}×{size} image, {} threads\n",
        rec.fixations.len(),
        rayon::current_num_threads()
    );
    for (label, recipe) in [
        ("EGD-CXR σ=150 px", Recipe::EgdCxr { sigma_px: 150.0 }),
        ("EGD-CXR σ=50 px", Recipe::EgdCxr { sigma_px: 50.0 }),
        ("REFLACX σ=1°", Recipe::published(GazeFormat::Reflacx)),
    ] {
        let mut times = Vec::new();
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            let map = heatmap(&rec, size, size, recipe);
            std::hint::black_box(&map);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        out += &format!(
            "{label:<18} median {:.1} ms (min {:.1}, max {:.1}, {} runs)\n",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            times.len()
        );
    }
    // The whole compare job the σ slider triggers: heatmap, difference, full metrics table
    // against one model map and a region.
    let model = std::sync::Arc::new(normalised_for_display(heatmap(
        &rec,
        size,
        size,
        Recipe::EgdCxr { sigma_px: 400.0 },
    )));
    let job = crate::gaze::compare::CompareJob {
        recording: rec.clone(),
        recipe: Recipe::EgdCxr { sigma_px: 150.0 },
        width: size,
        height: size,
        maps: vec![("model".into(), model)],
        region: Some((
            "box".into(),
            crate::gaze::compare::Region::Box([
                size as f32 * 0.2,
                size as f32 * 0.2,
                size as f32 * 0.8,
                size as f32 * 0.8,
            ]),
        )),
    };
    let mut times = Vec::new();
    for _ in 0..repeat.max(1) {
        times.push(crate::gaze::compare::compute(&job).seconds * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    out += &format!(
        "{:<18} median {:.1} ms (heatmap, difference, KL/CC/HS/SIM/NSS/AUC-Judd, Diff_GradCAM/EHR-AUC of 2 maps)\n",
        "compare job",
        times[times.len() / 2]
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::Cli;

    #[test]
    fn bench_sizes_outside_their_range_are_refused_by_the_parser() {
        for size in ["0", "15", "10001"] {
            let parsed = Cli::try_parse_from(["cxrlens", "gaze", "bench", "--size", size]);
            assert!(parsed.is_err(), "--size {size}");
        }
        assert!(Cli::try_parse_from(["cxrlens", "gaze", "bench", "--size", "64"]).is_ok());
        assert!(Cli::try_parse_from(["cxrlens", "gaze", "bench", "--repeat", "0"]).is_err());
    }
}
