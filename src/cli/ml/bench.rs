//! `cxrlens bench-backends` and `cxrlens bench-analysis`: timings per compute backend.

use super::*;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Input side in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Also time wgpu when the only adapter is a CPU one (slow: kernel compilation takes minutes).
    #[arg(long)]
    pub include_cpu_adapter: bool,
    /// lung (the U-Net), lung-efficientnet (the lung network on the EfficientNet-Lite0 encoder)
    /// or efficientnet (the EfficientNet-Lite0 classifier); random weights.
    #[arg(long, default_value = "lung")]
    pub network: String,
    /// efficientnet: stem and this many blocks frozen (as `train --frozen-blocks`).
    #[arg(long, default_value_t = 0)]
    pub frozen_blocks: usize,
}

/// The network a benchmark times.
pub(crate) enum BenchNet {
    Lung(Box<crate::ml::lung::LungNet>),
    EfficientNet(Box<crate::ml::efficientnet::EfficientNetLite>, usize),
}

impl BenchNet {
    pub(crate) fn new(args: &BenchArgs, device: &Device) -> Result<Self, String> {
        Ok(match args.network.as_str() {
            "lung" => Self::Lung(Box::new(
                LungNetConfig::new(vec!["a".into(), "b".into(), "c".into()])
                    .with_input_size(args.size)
                    .init(device)
                    .train(),
            )),
            "lung-efficientnet" => Self::Lung(Box::new(
                LungNetConfig::new(vec!["a".into(), "b".into(), "c".into()])
                    .with_input_size(args.size)
                    .with_encoder(Some(crate::ml::lung::EFFICIENTNET.into()))
                    .init(device)
                    .train(),
            )),
            "efficientnet" | "efficientnet-lite0" => Self::EfficientNet(
                Box::new(
                    crate::ml::efficientnet::EfficientNetLiteConfig::new(vec![
                        "a".into(),
                        "b".into(),
                    ])
                    .with_input_size(args.size)
                    .init(device)
                    .freeze_prefix(args.frozen_blocks)
                    .train(),
                ),
                args.frozen_blocks,
            ),
            other => {
                return Err(format!(
                    "--network {other}: expected lung, lung-efficientnet or efficientnet"
                ));
            }
        })
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Lung(m) => format!("lung network ({} parameters)", m.num_params()),
            Self::EfficientNet(m, 0) => {
                format!("EfficientNet-Lite0 ({} parameters)", m.num_params())
            }
            Self::EfficientNet(m, k) => format!(
                "EfficientNet-Lite0 ({} parameters), stem + {k} blocks frozen",
                m.num_params()
            ),
        }
    }

    /// Inference output reduced to a scalar.
    pub(crate) fn infer(&self, x: Tensor<4>) -> Tensor<1> {
        match self {
            Self::Lung(m) => m.valid().forward(x).mask_logits.sum(),
            Self::EfficientNet(m, _) => m.valid().forward(x).sum(),
        }
    }

    /// A training loss over every output.
    pub(crate) fn loss(&self, x: Tensor<4>) -> Tensor<1> {
        match self {
            Self::Lung(m) => {
                let out = m.forward(x);
                out.mask_logits.sum() + out.class_logits.sum()
            }
            Self::EfficientNet(m, _) => m.forward(x).sum(),
        }
    }
}

pub(crate) fn time_backend(compute: &ComputeDevice, args: &BenchArgs) -> Result<String, String> {
    let net = BenchNet::new(args, &compute.device)?;
    let x = Tensor::<4>::random(
        [args.batch, 1, args.size, args.size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &compute.device,
    );
    let inner = compute.device.clone().inner();
    let x_inner = x.clone().inner();
    let sync = |t: Tensor<1>| tensor_to_vec(t).map(|v| v[0]).map_err(|e| e.to_string());
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    let first = Instant::now();
    sync(net.infer(x_inner.clone().to_device(&inner)))?;
    let _ = net.loss(x.clone()).backward();
    let warmup = first.elapsed().as_secs_f64();
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        sync(net.infer(x_inner.clone()))?;
        inner.sync().map_err(|e| format!("{e:?}"))?;
        forward.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        // As in training, the input needs no gradient except to time the lung network as before
        // (its figures in the notes include the input gradient).
        let xg = match net {
            BenchNet::Lung(_) if args.network == "lung" => x.clone().require_grad(),
            _ => x.clone(),
        };
        let grads = net.loss(xg.clone()).backward();
        // Wait for the whole backward pass: read the input gradient (the last one computed) and
        // then wait for the device, so asynchronous backends are not timed at submission.
        if let Some(g) = xg.grad(&grads) {
            sync(g.sum())?;
        }
        compute.device.sync().map_err(|e| format!("{e:?}"))?;
        backward.push(t.elapsed().as_secs_f64());
    }
    forward.sort_by(f64::total_cmp);
    backward.sort_by(f64::total_cmp);
    let (f, b) = (forward[forward.len() / 2], backward[backward.len() / 2]);
    Ok(format!(
        "{:<40} {}: forward {:>8.1} ms ({:.1} img/s)   forward+backward {:>8.1} ms ({:.1} img/s)   (first call incl. compile {:.1} s)\n",
        compute.description,
        net.describe(),
        1000.0 * f,
        args.batch as f64 / f,
        1000.0 * b,
        args.batch as f64 / b,
        warmup
    ))
}

pub fn run_bench(args: &BenchArgs) -> Result<String, String> {
    check_size_and_batch(args.size, args.batch)?;
    let mut out = format!(
        "batch {} × 1 × {}², median of {}, {} threads\n",
        args.batch,
        args.size,
        args.repeat,
        rayon::current_num_threads()
    );
    out += &time_backend(
        &select(BackendChoice::Flex, None)
            .map_err(|e| e.to_string())?
            .0,
        args,
    )?;
    match probe_adapter() {
        Some(a) if !a.is_cpu || args.include_cpu_adapter => {
            let (d, _) = select(BackendChoice::Wgpu, Some(&a)).map_err(|e| e.to_string())?;
            out += &time_backend(&d, args)?;
        }
        Some(a) => {
            out += &format!(
                "wgpu on {} skipped: a CPU adapter (pass --include-cpu-adapter to time it)\n",
                a.name
            )
        }
        None => out += "wgpu: no adapter\n",
    }
    Ok(out)
}

#[derive(Debug, Args)]
pub struct BenchAnalysisArgs {
    /// Image to analyse (default: the bundled sample study), resampled to --size × --size.
    pub file: Option<PathBuf>,
    /// Side of the radiograph in pixels (3000: a 3k × 3k detector image).
    #[arg(long, default_value_t = 3000)]
    pub size: u32,
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// gradcam, gradcam++, guided-backprop, deconvnet, guided-gradcam, smoothgrad, lung-cam
    #[arg(long, default_value = "gradcam")]
    pub method: String,
}

/// `bench-analysis`: one warm-up, then `--repeat` analyses of the same image; median seconds per
/// step (decoding aside: the image is decoded once before timing).
pub fn run_bench_analysis(
    args: &BenchAnalysisArgs,
    backend: Option<&str>,
) -> Result<String, String> {
    if !(64..=12_000).contains(&args.size) {
        return Err(format!("--size {} is not between 64 and 12000", args.size));
    }
    let method = parse_method(&args.method)?;
    let path = args.file.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/sample_chest.dcm")
    });
    let loaded = crate::io::load_image(&path).map_err(|e| e.to_string())?;
    let s = args.size as usize;
    let values = crate::imaging::resample::resize_bilinear(
        &loaded.image.values,
        loaded.image.width as usize,
        loaded.image.height as usize,
        s,
        s,
    );
    let image = Arc::new(crate::imaging::ScalarImage {
        width: args.size,
        height: args.size,
        values,
    });
    let stats = image.stats();
    let compute = compute_device(backend)?;
    let (bundles, problems) = discover();
    let (models, load_problems) = Models::load(&bundles, &compute.device);
    if models.lung.is_none() || models.classifier.is_none() {
        return Err(format!(
            "the shipped lung network and classifier are needed: {}",
            problems
                .iter()
                .chain(&load_problems)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let request = AnalysisRequest::new(
        image,
        stats,
        loaded.info.photometric_inverted,
        method,
        ExplainTarget::Classifier,
    );
    analyze(&models, &request, &mut |_, _| true).map_err(|e| e.to_string())?;
    let mut runs = Vec::new();
    for _ in 0..args.repeat.max(1) {
        runs.push(analyze(&models, &request, &mut |_, _| true).map_err(|e| e.to_string())?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut out = format!(
        "analysis of a {0}×{0} radiograph on {1}, {2} threads, median of {3} after one warm-up\nlung: {4}; classifier: {5}; {6}\n",
        args.size,
        compute.description,
        rayon::current_num_threads(),
        runs.len(),
        models
            .lung
            .as_ref()
            .map_or(String::new(), |(_, i)| i.title()),
        models
            .classifier
            .as_ref()
            .map_or(String::new(), |(_, i)| i.title()),
        method.label()
    );
    for (k, (name, _)) in runs[0].step_seconds.iter().enumerate() {
        let t = median(
            runs.iter()
                .filter_map(|r| r.step_seconds.get(k).map(|s| s.1))
                .collect(),
        );
        out += &format!("  {name:<40} {:>8.1} ms\n", 1000.0 * t);
    }
    out += &format!(
        "  {:<40} {:>8.1} ms\n",
        "total",
        1000.0 * median(runs.iter().map(|r| r.seconds).collect())
    );
    Ok(out)
}
