//! `cxrlens analyze`: one image through the models, printed; with `--out`, every image of the paths
//! given, written to a folder (`batch`).

use super::*;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// An image file; with --out also folders and DICOMDIRs, any number.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// gradcam, gradcam++, guided-backprop, deconvnet, guided-gradcam, smoothgrad, lung-cam
    #[arg(long, default_value = "gradcam")]
    pub method: String,
    /// Explain the classifier (default) or the lung network's head.
    #[arg(long, default_value = "classifier")]
    pub target: String,
    /// Print the results the out-of-distribution gate hides (they are still marked).
    #[arg(long)]
    pub show_hidden: bool,
    /// Write each image's results into DIR (JSON, lung mask PNG, 16-bit heatmap PNG) and a
    /// summary.csv; images already done there are skipped.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With --out: also the image with its overlays as PNG (corner text, legend, research mark).
    #[arg(long, requires = "out")]
    pub overlay: bool,
    /// With --out: also a DICOM Secondary Capture of it, in the source's study.
    #[arg(long, requires = "out")]
    pub sc: bool,
    /// With --out: also an HTML report per image.
    #[arg(long, requires = "out")]
    pub report: bool,
    /// Put the patient's identifiers in the reports.
    #[arg(long, requires = "report")]
    pub identifiers: bool,
}

pub fn parse_target(text: &str) -> Result<ExplainTarget, String> {
    match text {
        "classifier" => Ok(ExplainTarget::Classifier),
        "lung" => Ok(ExplainTarget::LungHead),
        other => Err(format!("unknown target {other:?} (classifier or lung)")),
    }
}

/// What `cxrlens analyze` prints, and whether the gate flagged the image (exit status 3).
pub struct AnalyzeOutcome {
    pub text: String,
    pub flagged: bool,
    /// A batch run stopped by Ctrl-C (exit status 130; `summary.csv` is written).
    pub interrupted: bool,
}

pub fn run_analyze(args: &AnalyzeArgs, backend: Option<&str>) -> Result<AnalyzeOutcome, String> {
    if let Some(out) = &args.out {
        let (text, interrupted) = super::batch::run_batch(args, out, backend)?;
        return Ok(AnalyzeOutcome {
            text,
            flagged: false,
            interrupted,
        });
    }
    let [file] = args.paths.as_slice() else {
        return Err("several paths need --out DIR (the batch run writes its results there)".into());
    };
    let method = parse_method(&args.method)?;
    let target = parse_target(&args.target)?;
    let loaded = crate::io::load_image(file).map_err(|e| e.to_string())?;
    let (compute, models, problems) = load_models(backend)?;
    let request = AnalysisRequest::of(&loaded, method, target);
    let result = analyze(&models, &request, &mut |_, _| true).map_err(|e| e.to_string())?;
    let ood = &result.ood;
    let mut out = format!(
        "device:        {} ({})\n",
        compute.description, compute.reason
    );
    for info in models.infos() {
        let dir = std::fs::canonicalize(&info.dir).unwrap_or_else(|_| info.dir.clone());
        out += &format!("model:         {} from {}\n", info.title(), dir.display());
    }
    for g in ood.lung.iter().chain(ood.classifier.iter()) {
        out += &format!(
            "gate:          {}: Mahalanobis distance {:.1} (limit {:.1}) {}\n",
            g.model,
            g.distance,
            g.threshold,
            if g.passed {
                "within its training data"
            } else {
                "OUTSIDE its training data"
            }
        );
    }
    if let Some(a) = &ood.anatomy {
        out += &format!(
            "anatomy:       {} lung regions, {:.1} % of the image{}\n",
            a.regions,
            100.0 * a.lung_fraction,
            if a.passed() {
                String::new()
            } else {
                format!(" — {}", a.problems.join("; "))
            }
        );
    }
    if let Some(message) = ood.message() {
        out += &format!("VERDICT:       {message}\n");
    }
    let shown = |model: &str| args.show_hidden || ood.shows(model);
    let hidden_mark = |model: &str| {
        if ood.shows(model) {
            ""
        } else {
            " [hidden: out of distribution]"
        }
    };
    for p in &result.predictions {
        if !shown(&p.model_title) {
            out += &format!("{}: hidden (--show-hidden prints it)\n", p.model_title);
            continue;
        }
        let note = if p.uninformative {
            " [class head not better than chance on held-out data: not a result]"
        } else if p.calibrated {
            " (calibrated)"
        } else {
            ""
        };
        out += &format!("{}{note}{}:\n", p.model_title, hidden_mark(&p.model_title));
        for (name, prob) in &p.classes {
            out += &format!("  {name:<18} {prob:.3}\n");
        }
        if let Some(d) = &p.decision {
            out += &format!(
                "  operating point: p({}) >= {:.3} -> {} (sensitivity {:.3}, specificity {:.3} on the {} split)\n",
                d.class,
                d.threshold,
                if d.positive {
                    d.class.clone()
                } else {
                    format!("not {}", d.class)
                },
                d.sensitivity,
                d.specificity,
                d.measured_on
            );
        }
    }
    let lung_model = models
        .lung
        .as_ref()
        .map(|(_, i)| i.title())
        .unwrap_or_default();
    if let Some(mask) = &result.lung_probability
        && shown(&lung_model)
    {
        let lung = mask.values.iter().filter(|&&v| v >= 0.5).count();
        out += &format!(
            "lung area:     {:.1} % of the image{}\n",
            100.0 * lung as f64 / mask.values.len() as f64,
            hidden_mark(&lung_model)
        );
    }
    if let (Some(map), Some((model, class))) = (&result.heatmap, &result.explained)
        && shown(model)
    {
        let mean = map.values.iter().sum::<f32>() / map.values.len() as f32;
        out += &format!(
            "{}:      {model}, class {class}, layer {}, {}×{}, mean {mean:.3}{}\n",
            method.label(),
            result.target_layer,
            map.width,
            map.height,
            hidden_mark(model)
        );
    }
    for (name, secs) in &result.step_seconds {
        out += &format!("  step {name}: {:.3} s\n", secs);
    }
    out += &format!("time:          {:.2} s\n", result.seconds);
    for p in problems {
        out += &format!("note:          {p}\n");
    }
    Ok(AnalyzeOutcome {
        text: out,
        flagged: ood.message().is_some(),
        interrupted: false,
    })
}
