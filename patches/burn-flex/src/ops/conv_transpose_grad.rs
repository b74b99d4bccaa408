//! Weight gradient of the 2D transposed convolution as one GEMM per group (cxrlens patch, see
//! `PATCH.md`).
//!
//! burn-backend's default computes it as a conv2d of the output gradient with the input as its
//! "kernel" (batch and channels swapped, the transposed convolution's stride as dilation): a
//! kernel as large as the whole input plane, producing a `kh × kw` output. flex runs that on
//! paths made for small kernels: with fewer than five batch items (the swapped input channels)
//! its generic conv3d, whose scalar im2col of `batch·H·W` rows ran on the thread driving autodiff
//! while the pool waited (about 3 % of a U-Net training step at batch 1, for 4 % of its
//! multiply-adds).
//!
//! A transposed convolution adds `X[b, ci, iy, ix] · W[ci, co, kh, kw]` into
//! `Y[b, g·cog + co, iy·s − p + kh·d, ix·s − p + kw·d]` (`g` the group of `ci`, `cog` the output
//! channels per group), so
//!   `dW[ci, co, kh, kw] = Σ_b,iy,ix X[b, ci, iy, ix] · dY[b, g·cog + co, iy·s − p + kh·d, ix·s − p + kw·d]`
//! with terms outside `dY` left out. The output gradient is gathered once per tap into
//! `G[(co, kh, kw), (b, iy, ix)]` (for the U-Net's 2×2 stride-2 up-sampling that is a permutation
//! of `dY`), the input is laid out as `X'ᵀ[(b, iy, ix), ci]` and `dW_g = X'_g · G_gᵀ` is one GEMM
//! with the whole batch's positions as its reduction, written as `dWᵀ` (so that gemm takes every
//! operand in place, column-major, and packs nothing on the calling thread) and transposed.

use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvTransposeOptions;
use burn_std::{Bytes, f16};

use super::conv2d_gemm::{Float, for_each_row, parallelism, uninit_vec};
use crate::{FlexTensor, Layout};

/// Shapes and options, in the names used below.
#[derive(Clone, Copy)]
struct Plan {
    batch: usize,
    channels_in: usize,
    /// Output channels per group (the weight's second dimension).
    cog: usize,
    groups: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Plan {
    fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Input positions `i` (along dimension `dim`) whose output `i·s − p + k·d` for tap offset
    /// `k` lies in `0..out`, and that output for `i = 0` (may be negative).
    fn valid(&self, dim: usize, k: usize) -> (core::ops::Range<usize>, isize) {
        let (n, out) = [(self.in_h, self.out_h), (self.in_w, self.out_w)][dim];
        let (s, offset) = (
            self.stride[dim],
            (k * self.dilation[dim]) as isize - self.padding[dim] as isize,
        );
        // Smallest i with i·s + offset ≥ 0, and smallest with i·s + offset ≥ out.
        let first = |bound: isize| ((bound - offset).max(0) as usize).div_ceil(s).min(n);
        (first(0)..first(out as isize), offset)
    }
}

/// `G[(co, t), (b, pos)]`: tap `t = kh·kw_n + kw` of output channel `co` read at every input
/// position `pos` of item `b`, zero where it falls outside `dy` (`[batch, co, out_h, out_w]`).
fn gather<T: Float>(dy: &[T], p: &Plan) -> Vec<T> {
    let (taps, plane) = (p.taps(), p.in_h * p.in_w);
    let channels_out = p.cog * p.groups;
    let mut g = uninit_vec::<T>(channels_out * taps * p.batch * plane);
    for_each_row(&mut g, p.batch * plane, |row, dst| {
        let (co, t) = (row / taps, row % taps);
        let (rows, dy_off) = p.valid(0, t / p.kernel[1]);
        let (cols, dx_off) = p.valid(1, t % p.kernel[1]);
        for (b, dst) in dst.chunks_exact_mut(plane).enumerate() {
            let src = &dy[(b * channels_out + co) * p.out_h * p.out_w..][..p.out_h * p.out_w];
            for (iy, line) in dst.chunks_exact_mut(p.in_w).enumerate() {
                if !rows.contains(&iy) {
                    line.fill(T::zero());
                    continue;
                }
                let oy = (iy * p.stride[0]) as isize + dy_off;
                let src = &src[oy as usize * p.out_w..][..p.out_w];
                line[..cols.start].fill(T::zero());
                line[cols.end..].fill(T::zero());
                let ox0 = (cols.start * p.stride[1]) as isize + dx_off;
                let step = p.stride[1];
                for (v, s) in line[cols.clone()]
                    .iter_mut()
                    .zip(src[ox0 as usize..].iter().step_by(step))
                {
                    *v = *s;
                }
            }
        }
    });
    g
}

/// dW (`[channels_in, cog, kh, kw]`) of `x` (`[batch, channels_in, in_h, in_w]`) and `dy`.
fn weight_grad<T: Float>(x: &[T], dy: &[T], p: &Plan) -> Vec<T> {
    let plane = p.in_h * p.in_w;
    let k = p.batch * plane;
    let c = p.channels_in;
    let g = gather(dy, p);
    // X' and dW stored as their transposes, `[(b, pos), ci]` and `[(co, kh, kw), ci]`: with
    // both operands column-major (channels contiguous; G's positions contiguous), gemm reads them
    // in place. With row-major ones (`x` itself for one item, dW in its own layout) it swapped
    // the product and packed G on the calling thread before its parallel part, while the pool
    // waited (about 0.7 ms of a U-Net backward pass at 128², batch 1). Both copies run in
    // parallel.
    let mut xt = uninit_vec::<T>(k * c);
    for_each_row(&mut xt, c, |row, dst| {
        let (b, pos) = (row / plane, row % plane);
        let src = &x[b * c * plane + pos..];
        for (ci, d) in dst.iter_mut().enumerate() {
            *d = src[ci * plane];
        }
    });
    let (cig, n) = (c / p.groups, p.cog * p.taps());
    let mut dwt = uninit_vec::<T>(n * c);
    for grp in 0..p.groups {
        let dst = &mut dwt[grp * cig..];
        let lhs = &xt[grp * cig..];
        let rhs = &g[grp * n * k..][..n * k];
        // SAFETY: `dst` is cig × n with column stride c (the group's channels of dWᵀ's rows;
        // its last element `(n − 1)·c + cig − 1` lies in the slice), `lhs` cig × k with column
        // stride c (likewise in `xt`), `rhs` k × n with column stride k (G's rows are dW's
        // columns); all in bounds as sliced above.
        unsafe {
            gemm::gemm(
                cig,
                n,
                k,
                dst.as_mut_ptr(),
                c as isize,
                1,
                false,
                lhs.as_ptr(),
                c as isize,
                1,
                rhs.as_ptr(),
                k as isize,
                1,
                T::zero(),
                T::one(),
                false,
                false,
                false,
                parallelism(cig, n, k, true),
            );
        }
    }
    let mut dw = uninit_vec::<T>(c * n);
    for_each_row(&mut dw, n, |ci, dst| {
        for (j, d) in dst.iter_mut().enumerate() {
            *d = dwt[j * c + ci];
        }
    });
    dw
}

/// The gradient of `conv_transpose2d(x, weight, …)` with respect to `weight`, for an output
/// gradient `output_grad`.
pub(crate) fn conv_transpose2d_weight_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvTransposeOptions<2>,
) -> FlexTensor {
    let (xs, ws, gs) = (
        x.layout().shape(),
        weight.layout().shape(),
        output_grad.layout().shape(),
    );
    let plan = Plan {
        batch: xs[0],
        channels_in: xs[1],
        cog: ws[1],
        groups: options.groups,
        in_h: xs[2],
        in_w: xs[3],
        out_h: gs[2],
        out_w: gs[3],
        kernel: [ws[2], ws[3]],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
    };
    assert_eq!(
        gs[1],
        plan.cog * plan.groups,
        "conv_transpose2d backward: output gradient channels"
    );
    let shape = ws.clone();
    let (x, dy) = (x.to_contiguous(), output_grad.to_contiguous());
    fn typed<T: Float>(x: &FlexTensor, dy: &FlexTensor, p: &Plan) -> Vec<T> {
        weight_grad(x.storage(), dy.storage(), p)
    }
    let (bytes, dtype) = match x.dtype() {
        DType::F32 => (Bytes::from_elems(typed::<f32>(&x, &dy, &plan)), DType::F32),
        DType::F64 => (Bytes::from_elems(typed::<f64>(&x, &dy, &plan)), DType::F64),
        DType::F16 => (Bytes::from_elems(typed::<f16>(&x, &dy, &plan)), DType::F16),
        DType::BF16 => {
            let x = super::conv_common::convert_bf16_to_f32(&x);
            let dy = super::conv_common::convert_bf16_to_f32(&dy);
            let dw = typed::<f32>(&x, &dy, &plan);
            let dw = FlexTensor::new(Bytes::from_elems(dw), Layout::contiguous(shape), DType::F32);
            return super::conv_common::convert_f32_to_bf16(&dw);
        }
        dtype => panic!("conv_transpose2d backward: unsupported dtype {dtype:?}"),
    };
    FlexTensor::new(bytes, Layout::contiguous(shape), dtype)
}
