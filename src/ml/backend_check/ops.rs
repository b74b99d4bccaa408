//! Elementary operations (convolutions, pooling, normalisation, activations…) forward and backward on two devices.

use super::*;

/// Builds a probe's outputs from its leaves.
pub(crate) type ProbeFn = Box<dyn Fn(&[Tensor<1>]) -> Vec<Tensor<4>>>;

/// One elementary operation whose gradients are compared: leaves are flat vectors (reshaped inside
/// `f`), the loss is a fixed random projection of the output.
pub(crate) struct OpProbe {
    name: String,
    leaves: Vec<usize>,
    /// Outputs; the loss sums a fixed random projection of each.
    f: ProbeFn,
}

pub(crate) fn run_probe(
    probe: &OpProbe,
    device: &Device,
    seed: u64,
) -> Result<(Vec<f32>, Vec<Vec<f32>>), MlError> {
    let leaves: Vec<Tensor<1>> = probe
        .leaves
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            Tensor::<1>::from_floats(pattern(n, seed + i as u64).as_slice(), device).require_grad()
        })
        .collect();
    let mut values = Vec::new();
    let mut loss: Option<Tensor<1>> = None;
    for (k, out) in (probe.f)(&leaves).into_iter().enumerate() {
        let n = out.dims().iter().product::<usize>();
        let w = Tensor::<1>::from_floats(pattern(n, seed + 100 + k as u64).as_slice(), device)
            .reshape(out.dims());
        values.extend(tensor_to_vec(out.clone().detach())?);
        let term = (out * w).sum();
        loss = Some(match loss {
            Some(l) => l + term,
            None => term,
        });
    }
    let grads = loss
        .ok_or_else(|| MlError::Data("a probe without outputs".into()))?
        .backward();
    let mut out_grads = Vec::new();
    for leaf in &leaves {
        out_grads.push(
            leaf.grad(&grads)
                .map(tensor_to_vec)
                .transpose()?
                .unwrap_or_default(),
        );
    }
    Ok((values, out_grads))
}

/// The building blocks of the networks one by one — identity, 3×3 and 1×1 convolution, transposed
/// convolution, max pooling, channel concatenation, batch statistics — at `size`², batch 2, so a
/// disagreement found by [`compare`] can be traced to an operation.
pub fn compare_ops(
    reference: &Device,
    candidate: &Device,
    size: usize,
) -> Result<Vec<Agreement>, MlError> {
    use burn::tensor::module::{conv_transpose2d, conv2d, max_pool2d};
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, MaxPoolOptions};
    let (b, c, s) = (2usize, 8usize, size);
    let img = move |t: &Tensor<1>, ch: usize, side: usize| t.clone().reshape([b, ch, side, side]);
    let probes = vec![
        OpProbe {
            name: "identity (mul by weights, sum)".into(),
            leaves: vec![b * s * s],
            f: Box::new(move |l| vec![img(&l[0], 1, s)]),
        },
        OpProbe {
            name: "conv 3×3, padding 1, bias".into(),
            leaves: vec![b * c * s * s, c * c * 9, c],
            f: Box::new(move |l| {
                vec![conv2d(
                    img(&l[0], c, s),
                    l[1].clone().reshape([c, c, 3, 3]),
                    Some(l[2].clone()),
                    ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
                )]
            }),
        },
        OpProbe {
            name: "conv 1×1 (8 → 1), bias".into(),
            leaves: vec![b * c * s * s, c, 1],
            f: Box::new(move |l| {
                vec![conv2d(
                    img(&l[0], c, s),
                    l[1].clone().reshape([1, c, 1, 1]),
                    Some(l[2].clone()),
                    ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
                )]
            }),
        },
        OpProbe {
            name: "transposed conv 2×2, stride 2, bias".into(),
            leaves: vec![b * 2 * c * (s / 2) * (s / 2), 2 * c * c * 4, c],
            f: Box::new(move |l| {
                vec![conv_transpose2d(
                    img(&l[0], 2 * c, s / 2),
                    l[1].clone().reshape([2 * c, c, 2, 2]),
                    Some(l[2].clone()),
                    ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1),
                )]
            }),
        },
        OpProbe {
            name: "max pool 2×2".into(),
            leaves: vec![b * c * s * s],
            f: Box::new(move |l| vec![max_pool2d(img(&l[0], c, s), MaxPoolOptions::new([2, 2]))]),
        },
        OpProbe {
            name: "concatenate channels".into(),
            leaves: vec![b * c * s * s, b * c * s * s],
            f: Box::new(move |l| vec![Tensor::cat(vec![img(&l[0], c, s), img(&l[1], c, s)], 1)]),
        },
        OpProbe {
            name: "batch statistics (x − mean) / std".into(),
            leaves: vec![b * c * s * s],
            f: Box::new(move |l| {
                let x = img(&l[0], c, s);
                let mean = x.clone().mean_dim(0).mean_dim(2).mean_dim(3);
                let centred = x - mean;
                let var = centred
                    .clone()
                    .powf_scalar(2.0)
                    .mean_dim(0)
                    .mean_dim(2)
                    .mean_dim(3);
                vec![centred / (var + 1e-5).sqrt()]
            }),
        },
        OpProbe {
            name: "one input, two heads (conv 1×1 and global mean)".into(),
            leaves: vec![b * c * s * s, c, 1],
            f: Box::new(move |l| {
                let x = img(&l[0], c, s);
                let pooled = x.clone().mean_dim(2).mean_dim(3);
                vec![
                    conv2d(
                        x,
                        l[1].clone().reshape([1, c, 1, 1]),
                        Some(l[2].clone()),
                        ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
                    ),
                    pooled,
                ]
            }),
        },
    ];
    let mut rows = Vec::new();
    for probe in &probes {
        let (ra, ga) = run_probe(probe, reference, 7)?;
        let (rb, gb) = run_probe(probe, candidate, 7)?;
        rows.push(Agreement::of(format!("{}: forward", probe.name), &ra, &rb));
        for (i, (a, g)) in ga.iter().zip(&gb).enumerate() {
            rows.push(Agreement::of(
                format!("{}: gradient of input {i}", probe.name),
                a,
                g,
            ));
        }
    }
    Ok(rows)
}
