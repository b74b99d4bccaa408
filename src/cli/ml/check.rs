//! `cxrlens check-backends`: flex against wgpu or ndarray, gradients included.

use super::*;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Input sides to check, comma-separated (lavapipe gave wrong weight gradients at 256).
    #[arg(long, value_delimiter = ',', default_value = "128,256")]
    pub sizes: Vec<usize>,
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Seeded random weights instead of the shipped bundles' weights.
    #[arg(long)]
    pub random_weights: bool,
    /// Also check when the only adapter is a CPU one (lavapipe: minutes of kernel compilation).
    #[arg(long)]
    pub include_cpu_adapter: bool,
    /// Only the elementary operations, not the networks.
    #[arg(long)]
    pub ops_only: bool,
    /// The backend checked against flex: wgpu (a GPU), or ndarray (burn's other CPU backend, whose
    /// convolution gradients are burn's generic ones: an independent check of flex itself).
    #[arg(long, default_value = "wgpu")]
    pub candidate: String,
}

/// `check-backends`: wgpu (with the viewer shader on burn's device) or ndarray against flex on
/// the shipped networks.
pub fn run_check(args: &CheckArgs) -> Result<String, String> {
    use crate::ml::backend_check::{Network, compare};
    use crate::ml::classifier::ClassifierConfig;

    for &size in &args.sizes {
        check_size_and_batch(size, args.batch)?;
    }
    let reference = Device::flex().autodiff();
    let mut ok = true;
    let (candidate, mut out) = match BackendChoice::parse(&args.candidate)
        .map_err(|e| e.to_string())?
    {
        BackendChoice::NdArray => {
            let (candidate, _) = select(BackendChoice::NdArray, None).map_err(|e| e.to_string())?;
            let out = format!(
                "reference: flex (CPU); candidate: {}\n",
                candidate.description
            );
            (candidate, out)
        }
        BackendChoice::Wgpu => {
            let adapter =
                probe_adapter().ok_or("no wgpu adapter: nothing to check against flex")?;
            if adapter.is_cpu && !args.include_cpu_adapter {
                return Err(format!(
                    "the only adapter is a CPU one ({}); pass --include-cpu-adapter to check it anyway",
                    adapter.name
                ));
            }
            let (candidate, setup) =
                select(BackendChoice::Wgpu, Some(&adapter)).map_err(|e| e.to_string())?;
            let setup = setup.ok_or("burn created no wgpu device")?;
            let mut out = format!(
                "reference: flex (CPU); candidate: {}\n\nviewer shader on the device burn created (the one eframe reuses):\n",
                candidate.description
            );
            for (case, worst) in
                crate::render::twin_check::compare_with_cpu_twin(&setup.device, &setup.queue)?
            {
                ok &= worst <= 1;
                out += &format!(
                    "  {case:<34} max difference {worst} level(s) {}\n",
                    if worst <= 1 { "ok" } else { "DISAGREES" }
                );
            }
            (candidate, out)
        }
        _ => return Err("--candidate: expected wgpu or ndarray".into()),
    };
    for &size in &args.sizes {
        out += &format!("\nelementary operations at {size}², batch 2:\n");
        for row in crate::ml::backend_check::compare_ops(&reference, &candidate.device, size)
            .map_err(|e| e.to_string())?
        {
            ok &= row.agrees();
            out += &format!(
                "  {:<58} rel L2 {:>9.2e} {}\n",
                row.what,
                row.relative_l2,
                if row.agrees() { "ok" } else { "DISAGREES" }
            );
        }
    }
    if args.ops_only {
        return if ok {
            Ok(out)
        } else {
            Err(format!("{out}\nthe backends DISAGREE (see above)"))
        };
    }
    let (bundles, _) = discover();
    let shipped = |kind: ModelKind| {
        bundles
            .iter()
            .find(|b| b.shipped && b.card.kind == kind)
            .filter(|_| !args.random_weights)
    };
    let read = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("config.json")).map_err(|e| e.to_string())
    };
    for &size in &args.sizes {
        let mut networks = Vec::new();
        match shipped(ModelKind::Lung) {
            Some(b) => {
                let c: LungNetConfig =
                    serde_json::from_str(&read(&b.dir)?).map_err(|e| e.to_string())?;
                networks.push((
                    Network::Lung(c.with_input_size(size)),
                    Some(b.dir.join("weights.bpk")),
                    b.title(),
                ));
            }
            None => networks.push((
                Network::Lung(
                    LungNetConfig::new(vec!["a".into(), "b".into(), "c".into()])
                        .with_input_size(size),
                ),
                None,
                "lung network, random weights".into(),
            )),
        }
        match shipped(ModelKind::Classifier) {
            Some(b) => {
                let c: ClassifierConfig =
                    serde_json::from_str(&read(&b.dir)?).map_err(|e| e.to_string())?;
                networks.push((
                    Network::Classifier(c.with_input_size(size)),
                    Some(b.dir.join("weights.bpk")),
                    b.title(),
                ));
            }
            None => networks.push((
                Network::Classifier(ClassifierConfig::ResNet(
                    crate::ml::resnet::ResNetConfig::new(vec!["a".into(), "b".into()])
                        .with_input_size(size),
                )),
                None,
                "classifier, random weights".into(),
            )),
        }
        // No saliency weights are shipped (there is no real gaze data here): random weights,
        // fed the shipped classifier's feature width.
        let classifier_channels = match networks.last() {
            Some((Network::Classifier(c), _, _)) => c.feature_channels(),
            _ => 64,
        };
        networks.push((
            Network::Saliency(
                crate::ml::saliency::SaliencyNetConfig::new(classifier_channels)
                    .with_input_size(size)
                    .with_class_names(vec!["a".into(), "b".into()]),
            ),
            None,
            "saliency network, random weights".into(),
        ));
        for (network, weights, title) in networks {
            let t = Instant::now();
            let run = || {
                compare(
                    &network,
                    weights.as_deref(),
                    &reference,
                    &candidate.device,
                    args.batch,
                    17,
                )
            };
            let report = match run_catching(run) {
                Ok(r) => r.map_err(|e| e.to_string())?,
                // burn-ndarray lacks some gradients (bilinear interpolation's) and panics there.
                Err(why) => {
                    out += &format!(
                        "\n{title}: not checked — {} cannot run it ({why})\n",
                        candidate.kind.name()
                    );
                    continue;
                }
            };
            ok &= report.agrees();
            out += &format!(
                "\n{title} — {:.1} s\n{}",
                t.elapsed().as_secs_f64(),
                report.text()
            );
        }
    }
    if ok {
        out += &format!(
            "\n{} agrees with flex (relative L2 ≤ {:.0e}){}\n",
            candidate.kind.name(),
            crate::ml::backend_check::TOLERANCE,
            if candidate.kind == crate::ml::device::BackendKind::Wgpu {
                " and the shader with its CPU twin"
            } else {
                ""
            }
        );
        Ok(out)
    } else {
        Err(format!("{out}\nthe backends DISAGREE (see above)"))
    }
}

/// Runs `f`, turning a panic inside the backend into its message (printed once, by the caller).
fn run_catching<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the backend panicked".into())
    })
}
