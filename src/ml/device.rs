//! Which device burn runs on, chosen at run time and overridable.
//!
//! Rule (backed by `cxrlens bench-backends`, figures in models/README.md): wgpu when a real GPU
//! adapter exists; the flex CPU backend when the only adapter is a CPU one (Mesa lavapipe/llvmpipe,
//! where burn-wgpu measured ~3× slower than flex and gave wrong conv weight gradients at 256²) or
//! when there is none. `--backend` or `CXRLENS_BACKEND=flex|wgpu` forces a choice. On a real GPU
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
}

impl BackendChoice {
    pub fn parse(text: &str) -> Result<Self, MlError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "flex" | "cpu" => Ok(Self::Flex),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            other => Err(MlError::Device(format!(
                "unknown backend {other:?} (expected auto, flex or wgpu)"
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
        (BackendChoice::Flex, _) => Ok((flex("forced (--backend flex)".into()), None)),
        (BackendChoice::Wgpu, None) => Err(MlError::Device(
            "--backend wgpu was asked for, but no wgpu adapter exists".into(),
        )),
        (BackendChoice::Wgpu, Some(a)) => {
            let (d, s) = wgpu_device(a, "forced (--backend wgpu)".into())?;
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

/// The device to use: `compute` when one was chosen already (e.g. before the window opened),
/// otherwise a fresh choice by `choice` (probing for an adapter unless flex is forced).
pub fn resolve(
    compute: Option<ComputeDevice>,
    choice: BackendChoice,
) -> Result<ComputeDevice, MlError> {
    if let Some(c) = compute {
        return Ok(c);
    }
    let adapter = if choice == BackendChoice::Flex {
        None
    } else {
        probe_adapter()
    };
    select(choice, adapter.as_ref()).map(|(d, _)| d)
}
