//! Batch normalisation in one pass per statistic (cxrlens patch, see `PATCH.md`).
//!
//! burn-backend's defaults build batch norm out of tensor operations: for the statistics two
//! `swap_dims(0, 1)` copies and five element-wise passes, for the backward pass two more copies
//! and about ten passes, each allocating a full-size tensor. Here the input `[batch, channels,
//! rest…]` is read in place, per channel: the statistics in two reads (mean, then the centred
//! variance: no cancellation), the output in one pass, the backward pass in two (the two sums per
//! channel, then the input gradient). f32 and f64 natively; f16 and bf16 through f32, so their sums
//! do not overflow.

use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape, bf16, f16};

use crate::{FlexTensor, Layout};

trait Float: num_traits::Float + bytemuck::Pod + burn_backend::Element + Send + Sync + 'static {}
impl Float for f32 {}
impl Float for f64 {}

multiversion! {
    /// Σ f(v), in eight partial sums (vectorises; less rounding error than one running sum).
    #[inline]
    fn sum<T: Float>(v: &[T], f: impl Fn(T) -> T) -> T {
        let mut acc = [T::zero(); 8];
        let chunks = v.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for l in 0..8 {
                acc[l] = acc[l] + f(c[l]);
            }
        }
        let tail = rest.iter().fold(T::zero(), |s, &x| s + f(x));
        acc.iter().fold(tail, |s, &x| s + x)
    }
}

multiversion! {
    /// Σ f(a, b) over two equal-length slices, in eight partial sums.
    #[inline]
    fn sum2<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
        let mut acc = [T::zero(); 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for l in 0..8 {
                acc[l] = acc[l] + f(x[l], y[l]);
            }
        }
        let tail = ra.iter().zip(rb).fold(T::zero(), |s, (&x, &y)| s + f(x, y));
        acc.iter().fold(tail, |s, &x| s + x)
    }
}

multiversion! {
    /// dst = src·s + t.
    #[inline]
    fn affine_plane<T: Float>(dst: &mut [T], src: &[T], s: T, t: T) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v * s + t;
        }
    }
}

multiversion! {
    /// One plane of batch norm's input gradient: k·(dy − mean_dy − (x − m)·s·mean_dy_xhat).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn input_grad_plane<T: Float>(
        dst: &mut [T],
        dy: &[T],
        x: &[T],
        k: T,
        mean_dy: T,
        m: T,
        s: T,
        mean_dy_xhat: T,
    ) {
        for ((d, &t), &u) in dst.iter_mut().zip(dy).zip(x) {
            *d = k * (t - mean_dy - (u - m) * s * mean_dy_xhat);
        }
    }
}

/// `[batch, channels, spatial]` of a `[batch, channels, …]` shape.
fn dims(shape: &Shape) -> (usize, usize, usize) {
    let batch = shape[0];
    let channels = if shape.num_dims() > 1 { shape[1] } else { 1 };
    let spatial = shape.num_elements() / (batch * channels).max(1);
    (batch, channels, spatial)
}

/// `f(c)` for every channel, in parallel when rayon is enabled.
fn per_channel<R: Send>(channels: usize, f: impl Fn(usize) -> R + Send + Sync) -> Vec<R> {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..channels).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "rayon"))]
    {
        (0..channels).map(f).collect()
    }
}

/// `f(plane index, plane)` over the `[spatial]` planes of `out`, in parallel when enabled.
fn per_plane<T: Send>(out: &mut [T], spatial: usize, f: impl Fn(usize, &mut [T]) + Send + Sync) {
    let spatial = spatial.max(1);
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        // Planes of at least 4096 elements per task.
        let planes = (4096 / spatial).max(1);
        out.par_chunks_mut(spatial * planes)
            .enumerate()
            .for_each(|(i, block)| {
                for (j, plane) in block.chunks_mut(spatial).enumerate() {
                    f(i * planes + j, plane);
                }
            });
    }
    #[cfg(not(feature = "rayon"))]
    out.chunks_mut(spatial)
        .enumerate()
        .for_each(|(i, p)| f(i, p));
}

fn plane<T>(data: &[T], b: usize, c: usize, channels: usize, spatial: usize) -> &[T] {
    &data[(b * channels + c) * spatial..][..spatial]
}

fn tensor<T: Float>(data: Vec<T>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape),
        T::dtype(),
    )
}

fn statistics<T: Float>(x: &[T], shape: &Shape) -> (Vec<T>, Vec<T>) {
    let (batch, channels, spatial) = dims(shape);
    let n = T::from(batch * spatial).unwrap();
    let stats = per_channel(channels, |c| {
        let mean = (0..batch).fold(T::zero(), |s, b| {
            s + sum(plane(x, b, c, channels, spatial), |v| v)
        }) / n;
        let var = (0..batch).fold(T::zero(), |s, b| {
            s + sum(plane(x, b, c, channels, spatial), |v| {
                (v - mean) * (v - mean)
            })
        }) / n;
        (mean, var)
    });
    stats.into_iter().unzip()
}

/// y = x·scale[c] + shift[c].
fn affine<T: Float>(x: &[T], shape: &Shape, scale: &[T], shift: &[T]) -> Vec<T> {
    let (_, channels, spatial) = dims(shape);
    let mut out = super::conv2d_gemm::uninit_vec::<T>(x.len());
    per_plane(&mut out, spatial, |i, dst| {
        let (s, t) = (scale[i % channels], shift[i % channels]);
        affine_plane(dst, &x[i * spatial..][..spatial], s, t);
    });
    out
}

fn scale_shift<T: Float>(
    gamma: &[T],
    beta: &[T],
    mean: &[T],
    var: &[T],
    eps: f64,
) -> (Vec<T>, Vec<T>) {
    let eps = T::from(eps).unwrap();
    let scale: Vec<T> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| g / (v + eps).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| b - m * s)
        .collect();
    (scale, shift)
}

fn contiguous_as<T: Float>(t: &FlexTensor) -> FlexTensor {
    let t = t.to_contiguous();
    if t.dtype() == T::dtype() {
        return t;
    }
    match t.dtype() {
        DType::F16 => super::module::cast_to_f32::<f16>(t, f16::to_f32),
        DType::BF16 => super::module::cast_to_f32::<bf16>(t, bf16::to_f32),
        d => panic!("batch norm: unsupported dtype {d:?}"),
    }
}

fn back_to(t: FlexTensor, dtype: DType) -> FlexTensor {
    match dtype {
        DType::F16 => super::module::cast_from_f32::<f16>(t, f16::from_f32),
        DType::BF16 => super::module::cast_from_f32::<bf16>(t, bf16::from_f32),
        _ => t,
    }
}

/// Runs `f` on f64 for f64 tensors and on f32 for the others.
macro_rules! by_dtype {
    ($dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            DType::F64 => $f::<f64>($($arg),*),
            DType::F32 | DType::F16 | DType::BF16 => $f::<f32>($($arg),*),
            d => panic!("batch norm: unsupported dtype {d:?}"),
        }
    };
}

fn batch_norm_typed<T: Float>(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    let dtype = x.dtype();
    let [x, gamma, beta, mean, variance] =
        [&x, &gamma, &beta, &mean, &variance].map(contiguous_as::<T>);
    let (scale, shift) = scale_shift::<T>(
        gamma.storage(),
        beta.storage(),
        mean.storage(),
        variance.storage(),
        epsilon,
    );
    let shape = x.layout().shape().clone();
    let out = affine(x.storage::<T>(), &shape, &scale, &shift);
    back_to(tensor(out, shape), dtype)
}

/// Batch norm with given statistics (inference, or after [`batch_norm_train`]).
pub(crate) fn batch_norm(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    by_dtype!(
        x.dtype(),
        batch_norm_typed(x, gamma, beta, mean, variance, epsilon)
    )
}

fn batch_norm_train_typed<T: Float>(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let dtype = x.dtype();
    let [x, gamma, beta] = [&x, &gamma, &beta].map(contiguous_as::<T>);
    let shape = x.layout().shape().clone();
    let (mean, var) = statistics::<T>(x.storage(), &shape);
    let (scale, shift) = scale_shift(gamma.storage(), beta.storage(), &mean, &var, epsilon);
    let out = affine(x.storage::<T>(), &shape, &scale, &shift);
    let channels = Shape::from(alloc::vec![mean.len()]);
    (
        back_to(tensor(out, shape), dtype),
        back_to(tensor(mean, channels.clone()), dtype),
        back_to(tensor(var, channels), dtype),
    )
}

/// Batch norm with the batch's own statistics: (output, mean, biased variance).
pub(crate) fn batch_norm_train(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    by_dtype!(x.dtype(), batch_norm_train_typed(x, gamma, beta, epsilon))
}

fn batch_norm_train_backward_typed<T: Float>(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
    output_grad: FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let dtype = x.dtype();
    let [x, gamma, mean, variance, dy] =
        [&x, &gamma, &mean, &variance, &output_grad].map(contiguous_as::<T>);
    let shape = x.layout().shape().clone();
    let (batch, channels, spatial) = dims(&shape);
    let (xs, dys) = (x.storage::<T>(), dy.storage::<T>());
    let (gamma, mean, variance) = (
        gamma.storage::<T>(),
        mean.storage::<T>(),
        variance.storage::<T>(),
    );
    let eps = T::from(epsilon).unwrap();
    let inv_std: Vec<T> = variance
        .iter()
        .map(|&v| T::one() / (v + eps).sqrt())
        .collect();
    // Per channel: Σ dy (beta's gradient) and Σ dy·x̂ (gamma's), x̂ = (x − mean)·inv_std.
    let sums = per_channel(channels, |c| {
        let (m, s) = (mean[c], inv_std[c]);
        (0..batch).fold((T::zero(), T::zero()), |(a, b), k| {
            let g = plane(dys, k, c, channels, spatial);
            let v = plane(xs, k, c, channels, spatial);
            (a + sum(g, |t| t), b + sum2(g, v, |t, u| t * (u - m) * s))
        })
    });
    let n = T::from(batch * spatial).unwrap();
    let mut dx = super::conv2d_gemm::uninit_vec::<T>(xs.len());
    per_plane(&mut dx, spatial, |i, dst| {
        let c = i % channels;
        let (m, s) = (mean[c], inv_std[c]);
        let (sum_dy, sum_dy_xhat) = sums[c];
        let (mean_dy, mean_dy_xhat) = (sum_dy / n, sum_dy_xhat / n);
        let k = gamma[c] * s;
        let (g, v) = (
            &dys[i * spatial..][..spatial],
            &xs[i * spatial..][..spatial],
        );
        input_grad_plane(dst, g, v, k, mean_dy, m, s, mean_dy_xhat);
    });
    let (beta_grad, gamma_grad): (Vec<T>, Vec<T>) = sums.into_iter().unzip();
    let per = Shape::from(alloc::vec![channels]);
    (
        back_to(tensor(dx, shape), dtype),
        back_to(tensor(gamma_grad, per.clone()), dtype),
        back_to(tensor(beta_grad, per), dtype),
    )
}

/// (input, gamma, beta) gradients of [`batch_norm_train`].
pub(crate) fn batch_norm_train_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
    output_grad: FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    by_dtype!(
        x.dtype(),
        batch_norm_train_backward_typed(x, gamma, mean, variance, epsilon, output_grad)
    )
}
