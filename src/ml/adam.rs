//! Adam with one fused pass per parameter tensor on CPU backends.
//!
//! burn-optim's `Adam` updates a parameter with about thirteen tensor operations (two moments, bias
//! corrections, square root, division, learning rate), each a pass over memory and an allocation.
//! The lung U-Net has 66 parameter tensors, so on flex that was 11–14 ms of every training step,
//! against PyTorch's 4–12 ms (models/README.md, "CPU training speed"). [`CpuAdam`] does the same
//! update in one pass over parameter, gradient and both moments, in place when the buffers are
//! not shared (flex hands them over without copying), split across rayon's pool for large tensors.
//!
//! It is burn's Adam, not a variant: the same defaults, the same f32 arithmetic in the same order
//! (so the same bits; `tests/adam.rs` checks against burn's `Adam` step by step) and the same
//! state type ([`AdamState`]), so optimizer checkpoints written before and after are interchangeable.
//! On a GPU backend, or for a non-f32 parameter, it delegates to burn's `Adam`, whose tensor
//! operations run there without a round trip to the host.

use burn::backend::DispatchDevice;
use burn::config::Config;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

/// Adam's hyper-parameters; the defaults are burn's `AdamConfig` defaults.
#[derive(Config, Debug)]
pub struct CpuAdamConfig {
    #[config(default = 0.9)]
    pub beta_1: f32,
    #[config(default = 0.999)]
    pub beta_2: f32,
    #[config(default = 1e-5)]
    pub epsilon: f32,
}

impl CpuAdamConfig {
    /// The optimizer for a whole module, as burn's `AdamConfig::init` gives.
    pub fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(CpuAdam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            fallback: AdamConfig::new()
                .with_beta_1(self.beta_1)
                .with_beta_2(self.beta_2)
                .with_epsilon(self.epsilon)
                .build(),
        })
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct CpuAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    /// burn's Adam with the same settings, for devices where a host pass would mean a copy.
    fallback: Adam,
}

/// Elements per parallel task; below two tasks' worth the pass runs on the calling thread.
const CHUNK: usize = 16 * 1024;

/// Whether [`CpuAdam`] updates tensors on `device` in its fused host pass: the CPU backends,
/// whose `into_data` hands the buffer over without a device copy. Elsewhere it runs burn's Adam.
pub fn runs_fused(device: &Device) -> bool {
    match device.as_dispatch() {
        DispatchDevice::Flex(_) | DispatchDevice::NdArray(_) => true,
        DispatchDevice::Autodiff(d) => runs_fused(&Device::new(d.clone().inner())),
        _ => false,
    }
}

/// The tensor's values as a mutable f32 buffer (its own buffer when not shared).
fn host_f32<const D: usize>(tensor: Tensor<D>) -> TensorData {
    let mut data = tensor.into_data();
    if data.as_mut_slice::<f32>().is_err() {
        // A byte buffer that is not aligned for f32: copy once into one that is.
        let shape = data.shape().clone();
        data = TensorData::new(data.iter::<f32>().collect::<Vec<f32>>(), shape);
    }
    data
}

/// The per-element arithmetic of one step, exactly as burn-optim 0.22's `AdaptiveMomentum` and
/// `Adam::step` compose it from tensor operations (each line is one of its operations, in f32).
#[derive(Clone, Copy)]
struct Step {
    beta_1: f32,
    beta_2: f32,
    /// `1 - beta_1`, `1 - beta_2`.
    factor_1: f32,
    factor_2: f32,
    /// `sqrt(1 - beta_2^t) / (1 - beta_1^t)`.
    combined: f32,
    /// `epsilon * sqrt(1 - beta_2^t)`.
    epsilon: f32,
    lr: f32,
    /// No earlier moments: `m = g (1 - beta_1)`, `v = g² (1 - beta_2)`.
    first: bool,
}

impl Step {
    #[inline(always)]
    fn apply(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            if self.first {
                *m = g * self.factor_1;
                *v = (g * g) * self.factor_2;
            } else {
                *m = *m * self.beta_1 + g * self.factor_1;
                *v = *v * self.beta_2 + (g * g) * self.factor_2;
            }
            let delta = (*m * self.combined) / (v.sqrt() + self.epsilon);
            *p -= delta * self.lr;
        }
    }
}

impl Optimizer for CpuAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let f32_everywhere = tensor.dtype() == DType::F32
            && grad.dtype() == DType::F32
            && state.as_ref().is_none_or(|s| {
                s.momentum.moment_1.dtype() == DType::F32
                    && s.momentum.moment_2.dtype() == DType::F32
                    && s.momentum.max_moment_2.is_none()
            });
        if !runs_fused(&device) || !f32_everywhere {
            return self.fallback.step(lr, tensor, grad, state);
        }
        let shape = tensor.shape();
        let mut param = host_f32(tensor);
        let grad = host_f32(grad);
        let (time, mut moment_1, mut moment_2) = match state {
            Some(s) => (
                s.momentum.time + 1,
                host_f32(s.momentum.moment_1),
                host_f32(s.momentum.moment_2),
            ),
            None => {
                let zeros = || TensorData::new(vec![0f32; shape.num_elements()], shape.clone());
                (1, zeros(), zeros())
            }
        };
        let t = time as i32;
        let bias_correction2_sqrt = (1.0 - self.beta_2.powi(t)).sqrt();
        let step = Step {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            factor_1: 1.0 - self.beta_1,
            factor_2: 1.0 - self.beta_2,
            combined: bias_correction2_sqrt / (1.0 - self.beta_1.powi(t)),
            epsilon: self.epsilon * bias_correction2_sqrt,
            lr: lr as f32,
            first: time == 1,
        };
        {
            // host_f32 made each of these f32-aligned; the shapes are the parameter's.
            let p = param.as_mut_slice::<f32>().expect("f32 parameter");
            let g = grad.as_slice::<f32>().expect("f32 gradient");
            let m = moment_1.as_mut_slice::<f32>().expect("f32 first moment");
            let v = moment_2.as_mut_slice::<f32>().expect("f32 second moment");
            if p.len() >= 2 * CHUNK {
                p.par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK))
                    .zip(m.par_chunks_mut(CHUNK))
                    .zip(v.par_chunks_mut(CHUNK))
                    .for_each(|(((p, g), m), v)| step.apply(p, g, m, v));
            } else {
                step.apply(p, g, m, v);
            }
        }
        let momentum = AdaptiveMomentumState::new(
            time,
            Tensor::from_data(moment_1, &device),
            Tensor::from_data(moment_2, &device),
        );
        (
            Tensor::from_data(param, &device),
            Some(AdamState::new(momentum)),
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}
