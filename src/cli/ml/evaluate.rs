//! `cxrlens eval` (a bundle on held-out data) and `cxrlens ood fit` (a bundle's out-of-distribution gate).

use super::*;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Bundle folder (e.g. models/lung-unet).
    #[arg(long)]
    pub bundle: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    /// Every image of DATA (an external folder the model never saw), no split.
    #[arg(long, conflicts_with = "split")]
    pub all: bool,
    /// Which held-out images: test, validation (of the patient split the bundle was trained
    /// with) or all. Default: test when the bundle was trained with a test split, else validation.
    /// `training` evaluates the training patients themselves (how closely the model fits what it
    /// learnt from — a diagnostic, not a held-out figure; refused with --update-card).
    #[arg(long)]
    pub split: Option<String>,
    /// Patient split (default: the bundle's own, from its training-report.json).
    #[arg(long)]
    pub validation_fraction: Option<f64>,
    #[arg(long)]
    pub test_fraction: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Record the figures in the bundle's card (card.json and MODEL_CARD.md).
    #[arg(long)]
    pub update_card: bool,
    /// Evaluate the raw network output, without the lung-mask clean-up the viewer applies.
    #[arg(long)]
    pub raw: bool,
    /// Write evaluation.json and evaluation.csv (and, for a lung network, lung-dice.csv: each
    /// held-out image's Dice, worst first) into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run_eval(args: &EvalArgs) -> Result<String, String> {
    use crate::ml::train::{HeldOut, SplitSpec};
    let info =
        crate::ml::bundle::BundleInfo::open(&args.bundle, false).map_err(|e| e.to_string())?;
    let device = Device::flex();
    let mut spec = SplitSpec::of_bundle(&info);
    spec.held_out = match (args.all, args.split.as_deref()) {
        (true, _) | (_, Some("all")) => HeldOut::All,
        (_, Some("test")) => HeldOut::Test,
        (_, Some("validation")) => HeldOut::Validation,
        (_, Some("training")) => HeldOut::Training,
        (_, None) => spec.held_out,
        (_, Some(other)) => {
            return Err(format!(
                "--split {other}: expected test, validation, all or training"
            ));
        }
    };
    spec.validation_fraction = args.validation_fraction.unwrap_or(spec.validation_fraction);
    spec.test_fraction = args.test_fraction.unwrap_or(spec.test_fraction);
    spec.seed = args.seed.unwrap_or(spec.seed);
    if spec.held_out == HeldOut::Test && spec.test_fraction <= 0.0 {
        return Err("--split test: the bundle was trained without a test split (give --test-fraction, or use --split validation)".into());
    }
    if spec.held_out == HeldOut::Training && args.update_card {
        return Err(
            "--split training: figures on the training patients are not held-out figures; they do not go into the card"
                .into(),
        );
    }
    let (evaluation, notes) = crate::ml::train::evaluate_bundle(&args.data, &info, &spec, &device)
        .map_err(|e| e.to_string())?;
    let which = match spec.held_out {
        HeldOut::All => "all images (no split)".to_string(),
        HeldOut::Test => format!(
            "test split ({} of patients, seed {})",
            spec.test_fraction, spec.seed
        ),
        HeldOut::Validation => format!(
            "validation split ({} of patients, seed {})",
            spec.validation_fraction, spec.seed
        ),
        HeldOut::Training => format!(
            "TRAINING patients (not held out: how closely the model fits its training data; split seed {})",
            spec.seed
        ),
    };
    let kind = if spec.held_out == HeldOut::Training {
        "training"
    } else {
        "held-out"
    };
    let mut out = format!(
        "{}: {} {kind} images, {which}\n",
        info.title(),
        evaluation.images
    );
    out += &evaluation.to_csv(&info.card.class_names);
    let mut json = serde_json::json!({
        "model": info.title(),
        "data": args.data.display().to_string(),
        "split": spec,
        "class_names": info.card.class_names,
        "evaluation": evaluation,
    });
    // Held-out images that are the same radiograph as a training image (listed twice under two
    // patient ids): the patient split could not keep them apart.
    let leaked = if matches!(spec.held_out, HeldOut::Validation | HeldOut::Test) {
        let (records, _) = crate::ml::data::read_labels(&args.data).map_err(|e| e.to_string())?;
        let training = SplitSpec {
            held_out: HeldOut::Training,
            ..spec
        }
        .indices(&records);
        let pairs =
            crate::ml::near_identical::leaks(&records, &spec.indices(&records), &training).0;
        out += &near_identical_report(&records, &pairs);
        json["near_identical_to_training"] = pairs
            .iter()
            .map(|p| {
                serde_json::json!({"held_out": records[p.a].id, "training": records[p.b].id, "r": p.r})
            })
            .collect();
        pairs.iter().map(|p| records[p.a].id.clone()).collect()
    } else {
        std::collections::BTreeSet::new()
    };
    let mut lung_rows = None;
    if info.card.kind == crate::ml::bundle::ModelKind::Lung {
        let e = crate::ml::eval::evaluate_lung(&info, &args.data, &spec, &device, !args.raw)
            .map_err(|e| e.to_string())?;
        out += &format!(
            "{} {kind} masks: Dice at image resolution mean {:.4}, median {:.4}, 5th percentile {:.4}\n",
            e.images, e.dice_image, e.dice_image_median, e.dice_image_p05
        );
        json["dice_image_resolution"] = serde_json::json!({
            "mean": e.dice_image, "median": e.dice_image_median, "p05": e.dice_image_p05, "images": e.images
        });
        if !leaked.is_empty() {
            let kept: Vec<f64> = e
                .per_image
                .iter()
                .filter(|(id, _)| !leaked.contains(id))
                .map(|(_, d)| *d)
                .collect();
            if let Some(s) = crate::ml::eval::DiceSummary::of_sorted(&kept) {
                out += &format!(
                    "without those: {} masks, Dice mean {:.4}, median {:.4}, 5th percentile {:.4}\n",
                    kept.len(),
                    s.mean,
                    s.median,
                    s.p05
                );
                json["dice_image_resolution_independent"] = serde_json::json!({
                    "mean": s.mean, "median": s.median, "p05": s.p05, "images": kept.len()
                });
            }
        }
        lung_rows = Some(
            std::iter::once("id,dice\n".to_string())
                .chain(e.per_image.iter().map(|(id, d)| format!("{id},{d:.5}\n")))
                .collect::<String>(),
        );
        if args.update_card {
            let mut card = info.card.clone();
            card.metrics
                .insert("dice_image_resolution".into(), e.dice_image);
            card.metrics
                .insert("dice_image_resolution_median".into(), e.dice_image_median);
            card.metrics
                .insert("dice_image_resolution_p05".into(), e.dice_image_p05);
            card.write(&args.bundle).map_err(|e| e.to_string())?;
        }
    }
    for n in notes.iter().take(10) {
        out += &format!("note: {n}\n");
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: String| {
            crate::io::write::write_atomically(&dir.join(name), text.as_bytes())
                .map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        write(
            "evaluation.json",
            serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
        )?;
        write("evaluation.csv", evaluation.to_csv(&info.card.class_names))?;
        if let Some(rows) = lung_rows {
            write("lung-dice.csv", rows)?;
        }
        out += &format!("wrote {}\n", dir.join("evaluation.json").display());
    }
    Ok(out)
}

/// Lines naming each held-out image that is a training image too, with the agreement of the two
/// human masks where both copies have one.
fn near_identical_report(
    records: &[crate::ml::data::Record],
    pairs: &[crate::ml::near_identical::NearIdentical],
) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "warning: {} held-out image(s) are the same radiograph as a training image listed under another patient id (fingerprint r ≥ {}): their figures are not independent\n",
        pairs.len(),
        crate::ml::near_identical::NEAR_IDENTICAL_R
    );
    for p in pairs {
        let (h, t) = (&records[p.a], &records[p.b]);
        out += &format!(
            "  {} (patient {}) = {} (patient {}), r = {:.4}",
            h.id, h.patient_id, t.id, t.patient_id, p.r
        );
        if let Some(d) = crate::ml::near_identical::mask_agreement(h, t) {
            out += &format!("; its two human lung masks agree at Dice {d:.4}");
        }
        out += "\n";
    }
    out
}

#[derive(Debug, Args)]
pub struct OodFitArgs {
    /// Bundle folder whose gate is fitted (ood.json + ood-stats.bin are written into it).
    #[arg(long)]
    pub bundle: PathBuf,
    /// The dataset the bundle was trained on (its own patient split is used).
    #[arg(long)]
    pub data: PathBuf,
    /// Threshold at this percentile of the validation images' distances.
    #[arg(long, default_value_t = 99.0)]
    pub percentile: f64,
    /// The training domain in words, shown in the warning (e.g. "adult frontal chest radiographs").
    #[arg(long)]
    pub domain: String,
    /// Folders of other images to measure the gate on (flag rate, AUROC); repeatable.
    #[arg(long)]
    pub other: Vec<PathBuf>,
}

/// `cxrlens ood fit`: fit a bundle's out-of-distribution gate and record it in its card.
pub fn run_ood_fit(args: &OodFitArgs) -> Result<String, String> {
    if !(50.0..=100.0).contains(&args.percentile) {
        return Err(format!(
            "--percentile {} is not in [50, 100]",
            args.percentile
        ));
    }
    let info =
        crate::ml::bundle::BundleInfo::open(&args.bundle, false).map_err(|e| e.to_string())?;
    let fit = crate::ml::ood_fit::fit_gate(
        &info,
        &args.data,
        args.percentile,
        &args.domain,
        &args.other,
        &Device::flex(),
    )
    .map_err(|e| e.to_string())?;
    fit.gate.save(&args.bundle).map_err(|e| e.to_string())?;
    let mut card = info.card.clone();
    card.ood = Some(fit.gate.info.clone());
    card.write(&args.bundle).map_err(|e| e.to_string())?;
    Ok(format!(
        "{}wrote {}\n",
        fit.report,
        args.bundle.join("ood.json").display()
    ))
}
