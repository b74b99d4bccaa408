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
    /// Backends to time, comma-separated (default: every one this build offers on this machine:
    /// flex, ndarray, and wgpu when a GPU adapter exists).
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Also time a whole training step: forward, backward and one Adam update.
    #[arg(long)]
    pub train_step: bool,
    /// One JSON object per backend (seconds), for scripts/reference/bench_train.py.
    #[arg(long)]
    pub json: bool,
    /// Time inference only, no backward pass (to profile the forward alone, e.g. under `perf`).
    #[arg(long, conflicts_with = "train_step")]
    pub forward_only: bool,
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

    pub(crate) fn parameters(&self) -> usize {
        match self {
            Self::Lung(m) => m.num_params(),
            Self::EfficientNet(m, _) => m.num_params(),
        }
    }

    /// Forward, backward and one optimizer update.
    pub(crate) fn step(self, optimizer: &mut burn::optim::ModuleOptimizer, x: Tensor<4>) -> Self {
        use burn::optim::GradientsParams;
        let loss = self.loss(x);
        match self {
            Self::Lung(m) => {
                let grads = GradientsParams::from_grads(loss.backward(), &*m);
                Self::Lung(Box::new(optimizer.step(1e-4, *m, grads)))
            }
            Self::EfficientNet(m, k) => {
                let grads = GradientsParams::from_grads(loss.backward(), &*m);
                Self::EfficientNet(Box::new(optimizer.step(1e-4, *m, grads)), k)
            }
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

/// Median seconds of forward, forward+backward and a whole training step on one backend.
pub(crate) struct Timing {
    pub(crate) forward: f64,
    /// None with `--forward-only`.
    pub(crate) forward_backward: Option<f64>,
    pub(crate) step: Option<f64>,
    pub(crate) first_call: f64,
    pub(crate) parameters: usize,
    pub(crate) network: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn time_backend(compute: &ComputeDevice, args: &BenchArgs) -> Result<Timing, String> {
    let mut net = BenchNet::new(args, &compute.device)?;
    let x = Tensor::<4>::random(
        [args.batch, 1, args.size, args.size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &compute.device,
    );
    let inner = compute.device.clone().inner();
    let x_inner = x.clone().inner();
    let sync = |t: Tensor<1>| tensor_to_vec(t).map(|v| v[0]).map_err(|e| e.to_string());
    // As in training, the input needs no gradient; `sync` of the device waits for the whole
    // backward pass, so asynchronous backends are not timed at submission.
    let wait = || compute.device.sync().map_err(|e| format!("{e:?}"));
    let first = Instant::now();
    sync(net.infer(x_inner.clone().to_device(&inner)))?;
    if !args.forward_only {
        let _ = net.loss(x.clone()).backward();
        wait()?;
    }
    let first_call = first.elapsed().as_secs_f64();
    let repeat = args.repeat.max(1);
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        sync(net.infer(x_inner.clone()))?;
        inner.sync().map_err(|e| format!("{e:?}"))?;
        forward.push(t.elapsed().as_secs_f64());
        if args.forward_only {
            continue;
        }
        let t = Instant::now();
        let grads = net.loss(x.clone()).backward();
        wait()?;
        backward.push(t.elapsed().as_secs_f64());
        drop(grads);
    }
    let step = if args.train_step {
        // Forward, backward and one Adam step, as the trainer does per batch (one untimed first).
        let mut optimizer = crate::ml::adam::CpuAdamConfig::new().init();
        let mut steps = Vec::new();
        for k in 0..=repeat {
            let t = Instant::now();
            net = net.step(&mut optimizer, x.clone());
            wait()?;
            if k > 0 {
                steps.push(t.elapsed().as_secs_f64());
            }
        }
        Some(median(steps))
    } else {
        None
    };
    Ok(Timing {
        forward: median(forward),
        forward_backward: (!backward.is_empty()).then(|| median(backward)),
        step,
        first_call,
        parameters: net.parameters(),
        network: net.describe(),
    })
}

/// The backends this build can time on this machine (flex and ndarray always; wgpu on a GPU
/// adapter, or on a CPU adapter when asked), and the line said about each one skipped.
fn bench_devices(args: &BenchArgs) -> Result<(Vec<ComputeDevice>, Vec<String>), String> {
    let wanted: Vec<BackendChoice> = if args.backends.is_empty() {
        vec![
            BackendChoice::Flex,
            BackendChoice::NdArray,
            BackendChoice::Wgpu,
        ]
    } else {
        args.backends
            .iter()
            .map(|b| BackendChoice::parse(b).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?
    };
    let mut devices = Vec::new();
    let mut skipped = Vec::new();
    for choice in wanted {
        match choice {
            BackendChoice::Flex | BackendChoice::NdArray => {
                devices.push(select(choice, None).map_err(|e| e.to_string())?.0)
            }
            BackendChoice::Wgpu => match probe_adapter() {
                Some(a) if !a.is_cpu || args.include_cpu_adapter => devices.push(
                    select(BackendChoice::Wgpu, Some(&a))
                        .map_err(|e| e.to_string())?
                        .0,
                ),
                Some(a) => skipped.push(format!(
                    "wgpu on {} skipped: a CPU adapter (pass --include-cpu-adapter to time it)",
                    a.name
                )),
                None => skipped.push("wgpu: no adapter".into()),
            },
            BackendChoice::Auto => return Err("--backends: name them (flex, ndarray, wgpu)".into()),
        }
    }
    Ok((devices, skipped))
}

pub fn run_bench(args: &BenchArgs) -> Result<String, String> {
    check_size_and_batch(args.size, args.batch)?;
    let (devices, skipped) = bench_devices(args)?;
    let threads = rayon::current_num_threads();
    let mut out = String::new();
    if !args.json {
        out = format!(
            "batch {} × 1 × {}², median of {}, {} threads\n",
            args.batch, args.size, args.repeat, threads
        );
    }
    for compute in &devices {
        // Where the trainers run their networks (`ml::device::on_compute_threads`).
        let t = crate::ml::device::on_compute_threads(|| time_backend(compute, args))?;
        let per_s = |s: f64| args.batch as f64 / s;
        if args.json {
            let row = serde_json::json!({
                "backend": compute.kind.name(),
                "device": compute.description,
                "network": args.network,
                "parameters": t.parameters,
                "size": args.size,
                "batch": args.batch,
                "frozen_blocks": args.frozen_blocks,
                "threads": threads,
                "forward": t.forward,
                "forward_backward": t.forward_backward,
                "step": t.step,
                "first_call": t.first_call,
            });
            out += &format!("{row}\n");
            continue;
        }
        out += &format!(
            "{:<40} {}: forward {:>8.1} ms ({:.1} img/s)",
            compute.description,
            t.network,
            1000.0 * t.forward,
            per_s(t.forward),
        );
        if let Some(s) = t.forward_backward {
            out += &format!(
                "   forward+backward {:>8.1} ms ({:.1} img/s)",
                1000.0 * s,
                per_s(s)
            );
        }
        if let Some(s) = t.step {
            out += &format!(
                "   train step (+ Adam) {:>8.1} ms ({:.1} img/s)",
                1000.0 * s,
                per_s(s)
            );
        }
        out += &format!("   (first call incl. compile {:.1} s)\n", t.first_call);
    }
    if !args.json {
        for line in skipped {
            out += &line;
            out.push('\n');
        }
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
