//! Which device burn runs on, chosen at run time and overridable.
//!
//! Rule (backed by `cxrlens bench-backends`, figures in models/README.md): wgpu when a real GPU
//! adapter exists; the flex CPU backend when the only adapter is a CPU one (Mesa lavapipe/llvmpipe,
//! where burn-wgpu measured ~3× slower than flex and gave wrong conv weight gradients at 256²) or
//! when there is none. `--backend` or `CXRLENS_BACKEND=flex|wgpu|ndarray` forces a choice (ndarray:
//! burn's other CPU backend, 20–30× slower than the patched flex; a reference, never chosen by Auto). On a real GPU
//! `cxrlens check-backends` (ml::backend_check) verifies wgpu against flex; on an H100 it found one
//! wrong case (the lung network's two heads back-propagated in one pass), which `ml::train` avoids.
//!
//! When burn runs on wgpu it creates the wgpu device itself (eframe's device lacks SHADER_INT64);
//! the returned [`SharedWgpu`] lets the window renderer reuse that device.

use burn::prelude::*;
use burn::tensor::wgpu::{WgpuBackend, wgpu};
use serde::{Deserialize, Serialize};

use super::error::MlError;

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendChoice {
    #[default]
    Auto,
    Flex,
    Wgpu,
    /// burn-ndarray: slower than flex; an independent CPU reference for `check-backends`.
    NdArray,
}

impl BackendChoice {
    pub fn parse(text: &str) -> Result<Self, MlError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "flex" | "cpu" => Ok(Self::Flex),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            "ndarray" => Ok(Self::NdArray),
            other => Err(MlError::Device(format!(
                "unknown backend {other:?} (expected auto, flex, wgpu or ndarray)"
            ))),
        }
    }

    /// `CXRLENS_BACKEND`, if set.
    pub fn from_env() -> Result<Option<Self>, MlError> {
        match std::env::var("CXRLENS_BACKEND") {
            Ok(v) => Self::parse(&v).map(Some),
            Err(_) => Ok(None),
        }
    }
}

/// The backend actually in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendKind {
    Flex,
    Wgpu,
    NdArray,
}

impl BackendKind {
    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
            Self::NdArray => "ndarray",
        }
    }
}

/// The wgpu handles burn created, for the renderer to share.
pub type SharedWgpu = burn::tensor::wgpu::WgpuSetup;

/// A burn device with autodiff, and what it is, for the status bar.
#[derive(Clone, Debug)]
pub struct ComputeDevice {
    pub device: Device,
    pub kind: BackendKind,
    /// e.g. "wgpu · NVIDIA H100 (Vulkan)" or "flex (CPU, 2 threads)".
    pub description: String,
    /// Why this backend was chosen.
    pub reason: String,
}

/// A wgpu adapter seen by a probe that never touches GL/EGL.
#[derive(Clone, Debug)]
pub struct AdapterSeen {
    pub name: String,
    pub is_cpu: bool,
    pub backend: String,
}

/// Look for a wgpu adapter on the primary backends (Vulkan, Metal, DX12).
pub fn probe_adapter() -> Option<AdapterSeen> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .ok()?;
    let info = adapter.get_info();
    Some(AdapterSeen {
        name: info.name.clone(),
        is_cpu: info.device_type == wgpu::DeviceType::Cpu,
        backend: format!("{:?}", info.backend),
    })
}

fn flex(reason: String) -> ComputeDevice {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    ComputeDevice {
        device: Device::flex().autodiff(),
        kind: BackendKind::Flex,
        description: format!("flex (CPU, {threads} threads)"),
        reason,
    }
}

// burn 0.22 marks burn-ndarray deprecated in favour of flex; it stays here as the independent CPU
// reference for `check-backends --candidate ndarray` (its convolution and batch-norm gradients are
// burn's generic ones, not the patched flex kernels) and as a row of `bench-backends`.
#[allow(deprecated)]
fn ndarray(reason: String) -> ComputeDevice {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    ComputeDevice {
        device: Device::ndarray().autodiff(),
        kind: BackendKind::NdArray,
        description: format!("ndarray (CPU, {threads} threads)"),
        reason,
    }
}

fn wgpu_device(
    adapter: &AdapterSeen,
    reason: String,
) -> Result<(ComputeDevice, SharedWgpu), MlError> {
    let api = match adapter.backend.as_str() {
        "Vulkan" => WgpuBackend::Vulkan,
        "Metal" => WgpuBackend::Metal,
        _ => WgpuBackend::Auto,
    };
    let (device, setup) = Device::wgpu_options()
        .graphics_api(api)
        .init_with_setup()
        .map_err(|e| MlError::Device(format!("wgpu initialisation failed: {e}")))?;
    let info = setup.adapter.get_info();
    Ok((
        ComputeDevice {
            device: device.autodiff(),
            kind: BackendKind::Wgpu,
            description: format!("wgpu · {} ({:?})", info.name, info.backend),
            reason,
        },
        setup,
    ))
}

/// Choose and initialise the compute device. `adapter` is the result of [`probe_adapter`].
///
/// Returns the wgpu handles when burn created a wgpu device, so the renderer can share it.
pub fn select(
    choice: BackendChoice,
    adapter: Option<&AdapterSeen>,
) -> Result<(ComputeDevice, Option<SharedWgpu>), MlError> {
    match (choice, adapter) {
        (BackendChoice::Flex, _) => Ok((
            flex("forced to flex (--backend, CXRLENS_BACKEND or the saved setting)".into()),
            None,
        )),
        (BackendChoice::NdArray, _) => Ok((
            ndarray("forced to ndarray (--backend, CXRLENS_BACKEND or the saved setting)".into()),
            None,
        )),
        (BackendChoice::Wgpu, None) => Err(MlError::Device(
            "--backend wgpu was asked for, but no wgpu adapter exists".into(),
        )),
        (BackendChoice::Wgpu, Some(a)) => {
            let (d, s) = wgpu_device(
                a,
                "forced to wgpu (--backend, CXRLENS_BACKEND or the saved setting)".into(),
            )?;
            Ok((d, Some(s)))
        }
        (BackendChoice::Auto, None) => Ok((flex("no GPU adapter".into()), None)),
        (BackendChoice::Auto, Some(a)) if a.is_cpu => Ok((
            flex(format!(
                "only a CPU adapter ({}); flex is faster there",
                a.name
            )),
            None,
        )),
        (BackendChoice::Auto, Some(a)) => match wgpu_device(a, format!("GPU adapter {}", a.name)) {
            Ok((d, s)) => Ok((d, Some(s))),
            Err(e) => Ok((
                flex(format!("wgpu failed ({e}); fell back to the CPU")),
                None,
            )),
        },
    }
}

/// Runs `work` (a training run, a benchmark) on a thread of cxrlens's compute pool, so that the
/// thread driving the networks is one of the threads the CPU backend's parallel kernels run on:
/// between two operations it goes on with the next one instead of sleeping until the pool's threads
/// have finished and waking again, and it takes its own share of each operation's work (as
/// PyTorch's caller thread does in its OpenMP team). Measured on the lung U-Net, flex, 2 threads
/// (AMD EPYC Zen 5, alternated runs, one glibc arena in both, `ml::memory`): a one-image 128²
/// training step 25.6 → 21.7 ms, 256² batch 4 279 → 268 ms, the trainer's 128² batch 8 143 → 142
/// ms. The pool (`cxrlens-compute-N`) has as many threads as rayon's global pool
/// (`RAYON_NUM_THREADS` or the cores) and is its own, so the viewer's work on the global pool never
/// queues behind a training run. If it cannot be built, `work` runs on the calling thread.
pub fn on_compute_threads<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("cxrlens-compute-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// The device to use: `compute` when one was chosen already (e.g. before the window opened),
/// otherwise a fresh choice by `choice` (probing for an adapter unless flex is forced).
pub fn resolve(
    compute: Option<ComputeDevice>,
    choice: BackendChoice,
) -> Result<ComputeDevice, MlError> {
    if let Some(c) = compute {
        return Ok(c);
    }
    let adapter = if matches!(choice, BackendChoice::Flex | BackendChoice::NdArray) {
        None
    } else {
        probe_adapter()
    };
    select(choice, adapter.as_ref()).map(|(d, _)| d)
}

/// The persistent compute preference (`settings.json` in the user's config folder), written by the
/// viewer's View ▸ Compute backend menu and read at start-up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceSettings {
    pub backend: BackendChoice,
}

/// `$XDG_CONFIG_HOME/cxrlens/settings.json` (or `~/.config/cxrlens/settings.json`).
pub fn settings_path() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("cxrlens/settings.json"))
}

/// The saved preference; `Ok(None)` when nothing was saved, an error for an unreadable file.
pub fn load_settings(path: &std::path::Path) -> Result<Option<DeviceSettings>, MlError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            MlError::Settings(format!(
                "{}: not a cxrlens settings file ({e})",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MlError::Settings(format!("{}: {e}", path.display()))),
    }
}

/// Save the preference atomically (folder created as needed).
pub fn save_settings(path: &std::path::Path, settings: &DeviceSettings) -> Result<(), MlError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| MlError::Settings(format!("{}: {e}", dir.display())))?;
    }
    let json = serde_json::to_string_pretty(settings)
        .map_err(|e| MlError::Settings(format!("settings: {e}")))?;
    crate::io::write::write_atomically(path, json.as_bytes())
        .map_err(|e| MlError::Settings(format!("{}: {e}", path.display())))
}

/// Which choice wins: the command-line flag, then `CXRLENS_BACKEND`, then the saved setting, then
/// Auto. Returns the choice and where it came from.
pub fn effective_choice(
    flag: Option<&str>,
    env: Option<&str>,
    saved: Option<BackendChoice>,
) -> Result<(BackendChoice, &'static str), MlError> {
    if let Some(f) = flag {
        return Ok((BackendChoice::parse(f)?, "--backend"));
    }
    if let Some(e) = env {
        return Ok((BackendChoice::parse(e)?, "CXRLENS_BACKEND"));
    }
    Ok(match saved {
        Some(s) => (s, "saved setting"),
        None => (BackendChoice::Auto, "default"),
    })
}

impl BackendChoice {
    pub const ALL: [BackendChoice; 4] = [
        BackendChoice::Auto,
        BackendChoice::Flex,
        BackendChoice::Wgpu,
        BackendChoice::NdArray,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BackendChoice::Auto => "Auto (wgpu on a GPU, flex otherwise)",
            BackendChoice::Flex => "flex (CPU)",
            BackendChoice::Wgpu => "wgpu (GPU)",
            BackendChoice::NdArray => "ndarray (CPU, slower; a reference)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_work_runs_on_a_thread_of_the_compute_pool() {
        // The point of `on_compute_threads`: the driving thread is one of the pool's, so a
        // parallel kernel called from it runs on that pool (and is joined without waking it).
        let (name, index, threads) = on_compute_threads(|| {
            (
                std::thread::current().name().map(str::to_string),
                rayon::current_thread_index(),
                rayon::current_num_threads(),
            )
        });
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("cxrlens-compute-")),
            "ran on {name:?}"
        );
        assert!(index.is_some());
        assert_eq!(threads, rayon::current_num_threads());
        // Parallel work inside runs on the same pool: every piece sees a compute thread.
        let names: Vec<String> = on_compute_threads(|| {
            use rayon::prelude::*;
            (0..64)
                .into_par_iter()
                .map(|_| std::thread::current().name().unwrap_or("").to_string())
                .collect()
        });
        assert!(
            names.iter().all(|n| n.starts_with("cxrlens-compute-")),
            "{names:?}"
        );
    }

    #[test]
    fn flag_beats_environment_beats_saved_setting() {
        let saved = Some(BackendChoice::Wgpu);
        assert_eq!(
            effective_choice(Some("flex"), Some("wgpu"), saved).unwrap(),
            (BackendChoice::Flex, "--backend")
        );
        assert_eq!(
            effective_choice(None, Some("flex"), saved).unwrap(),
            (BackendChoice::Flex, "CXRLENS_BACKEND")
        );
        assert_eq!(
            effective_choice(None, None, saved).unwrap(),
            (BackendChoice::Wgpu, "saved setting")
        );
        assert_eq!(
            effective_choice(None, None, None).unwrap(),
            (BackendChoice::Auto, "default")
        );
        assert!(effective_choice(Some("cuda"), None, None).is_err());
    }

    #[test]
    fn settings_round_trip_and_bad_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("cxrlens-settings-{}", std::process::id()));
        let path = dir.join("nested/settings.json");
        assert_eq!(load_settings(&path).unwrap(), None);
        let s = DeviceSettings {
            backend: BackendChoice::Flex,
        };
        save_settings(&path, &s).unwrap();
        assert_eq!(load_settings(&path).unwrap(), Some(s));
        std::fs::write(&path, "{ not json").unwrap();
        let err = load_settings(&path).unwrap_err().to_string();
        assert!(err.contains("not a cxrlens settings file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
