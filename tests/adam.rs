//! `ml::adam::CpuAdam` against burn-optim's own `Adam`: the same parameters, bit for bit, after
//! several steps, with tensors large enough for the parallel pass and small ones (biases); and
//! optimizer checkpoints that either optimizer can continue from.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::prelude::*;
use cxrlens::ml::adam::{CpuAdamConfig, runs_fused};

#[derive(Module, Debug)]
struct Net {
    /// 256×256 weights: above the parallel size.
    wide: Linear,
    /// 256×3 weights and a 3-element bias: the serial pass.
    head: Linear,
}

fn net(device: &Device) -> Net {
    Net {
        wide: LinearConfig::new(256, 256).init(device),
        head: LinearConfig::new(256, 3).init(device),
    }
}

fn grads(model: &Net, x: &Tensor<2>) -> GradientsParams {
    let y = model.head.forward(burn::tensor::activation::relu(
        model.wide.forward(x.clone()),
    ));
    let loss = (y.clone() * y).mean();
    GradientsParams::from_grads(loss.backward(), model)
}

/// Every parameter value of the module, in visiting order.
fn values(model: &Net) -> Vec<f32> {
    let mut out = Vec::new();
    for t in [
        model.wide.weight.val().flatten::<1>(0, 1),
        model.wide.bias.as_ref().expect("bias").val(),
        model.head.weight.val().flatten::<1>(0, 1),
        model.head.bias.as_ref().expect("bias").val(),
    ] {
        out.extend(t.into_data().try_to_vec::<f32>().expect("f32"));
    }
    out
}

fn train(mut model: Net, optimizer: &mut ModuleOptimizer, x: &Tensor<2>, steps: usize) -> Net {
    for step in 0..steps {
        let g = grads(&model, x);
        // A learning rate that changes between steps, as the trainer's schedule does.
        model = optimizer.step(1e-3 / (1.0 + step as f64), model, g);
    }
    model
}

fn assert_same_bits(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    let differ = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "{what}: {differ} of {} values differ", a.len());
}

fn matches_burn_adam_on(device: Device) {
    let x = Tensor::<2>::random(
        [8, 256],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let start = net(&device);
    let before = values(&start);
    let reference = train(start.clone(), &mut AdamConfig::new().init(), &x, 5);
    let fused = train(start, &mut CpuAdamConfig::new().init(), &x, 5);
    let (reference, fused) = (values(&reference), values(&fused));
    // The parameters moved, so the comparison is not between two untouched copies.
    let moved = before
        .iter()
        .zip(&reference)
        .filter(|(a, b)| a != b)
        .count();
    assert!(moved > before.len() / 2, "only {moved} parameters moved");
    assert_same_bits(&fused, &reference, "parameters after 5 steps");
}

#[test]
fn matches_burn_adam_bit_for_bit_on_flex() {
    matches_burn_adam_on(Device::flex().autodiff());
}

#[test]
// burn-ndarray is deprecated upstream; it stays as cxrlens's reference CPU backend (ml::device).
#[allow(deprecated)]
fn matches_burn_adam_bit_for_bit_on_ndarray() {
    matches_burn_adam_on(Device::ndarray().autodiff());
}

#[test]
fn the_fused_pass_is_what_runs_on_cpu_backends() {
    // The comparisons above would also pass if CpuAdam always delegated to burn's Adam; this checks
    // that the optimizer sees a device on which it takes its own pass.
    assert!(runs_fused(&Device::flex()));
    assert!(runs_fused(&Device::flex().autodiff()));
    #[allow(deprecated)]
    let ndarray = Device::ndarray();
    assert!(runs_fused(&ndarray));
    // What the optimizer is handed: the parameter without its autodiff wrapper.
    let device = Device::flex().autodiff();
    let model = net(&device);
    assert!(runs_fused(&model.wide.weight.val().inner().device()));
}

fn reload(optimizer: &ModuleOptimizer, into: ModuleOptimizer) -> ModuleOptimizer {
    let bytes = optimizer.into_bytes().expect("optimizer record");
    into.load_record(
        OptimizerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
            .expect("read back"),
    )
}

#[test]
fn checkpoints_are_interchangeable_with_burn_adam() {
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::random(
        [8, 256],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    // Three steps with one optimizer, a checkpoint, three more with the other.
    let mut fused = CpuAdamConfig::new().init();
    let half = train(net(&device), &mut fused, &x, 3);
    let mut burn_after_fused = reload(&fused, AdamConfig::new().init());
    let mut fused_after_fused = reload(&fused, CpuAdamConfig::new().init());
    let a = values(&train(half.clone(), &mut burn_after_fused, &x, 3));
    let b = values(&train(half.clone(), &mut fused_after_fused, &x, 3));
    assert_same_bits(&b, &a, "continued from a CpuAdam checkpoint");

    let mut reference = AdamConfig::new().init();
    let half = train(net(&device), &mut reference, &x, 3);
    let mut fused_after_burn = reload(&reference, CpuAdamConfig::new().init());
    let a = values(&train(half.clone(), &mut reference, &x, 3));
    let b = values(&train(half, &mut fused_after_burn, &x, 3));
    assert_same_bits(&b, &a, "continued from a burn Adam checkpoint");
}
