//! What patches/burn-flex changes in element-wise work, against independent references
//! (convolutions and batch norm: `flex_patch.rs`): element-wise maps and scalar arithmetic (the
//! patch: parallel chunks, a vectorisable clamp) against `std`; 2×2 max pooling and its gradient
//! (the patch: a path without range divisions, vectorised rows), ReLU's gradient (parallel
//! chunks) and concatenation (parallel copies) against their definitions.

use burn::prelude::*;
use burn::tensor::TensorData;

mod common;
use common::uniform_values as values;

/// Clamp (ReLU6), clamp_min/clamp_max, ReLU and exp, element-wise, against the scalar
/// definitions in `std` (`f32::clamp`, comparisons, `f32::exp`): on tensors below and above the
/// size at which the patch maps in parallel chunks, owned (mapped in place) and shared (copied),
/// with NaN, ±0 and values at the bounds. The comparison is bit for bit except for NaN, which
/// must stay NaN.
#[test]
fn element_wise_maps_match_std_in_place_and_in_parallel() {
    let device = Device::flex();
    for n in [1000, 300_000, 1_000_003] {
        let mut v: Vec<f32> = values(n, 11 + n as u64).iter().map(|x| 8.0 * x).collect();
        for (i, special) in [
            f32::NAN,
            -0.0,
            0.0,
            6.0,
            -6.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]
        .into_iter()
        .enumerate()
        {
            v[i * (n / 7)] = special;
        }
        let same = |got: Vec<f32>, want: &dyn Fn(f32) -> f32, what: &str| {
            assert_eq!(got.len(), n, "{what} n={n}");
            for (i, (&g, &x)) in got.iter().zip(&v).enumerate() {
                let w = want(x);
                assert!(
                    (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits(),
                    "{what} n={n} at {i}: f({x}) = {g}, want {w}"
                );
            }
        };
        let tensor = || Tensor::<1>::from_data(TensorData::new(v.clone(), [n]), &device);
        let read = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
        // Owned: the in-place path.
        same(
            read(tensor().clamp(0.0, 6.0)),
            &|x| x.clamp(0.0, 6.0),
            "clamp",
        );
        same(
            read(tensor().clamp_min(-1.5)),
            &|x| if x.is_nan() { x } else { x.max(-1.5) },
            "clamp_min",
        );
        same(
            read(tensor().clamp_max(2.5)),
            &|x| if x.is_nan() { x } else { x.min(2.5) },
            "clamp_max",
        );
        same(
            read(burn::tensor::activation::relu(tensor())),
            &|x| if x.is_nan() || x > 0.0 { x } else { 0.0 },
            "relu",
        );
        same(read(tensor().exp()), &f32::exp, "exp");
        // Scalar arithmetic (the patch: f32 from 64 Ki elements in parallel chunks), owned, and
        // on a view that starts inside its storage (elements 1..), which is copied.
        same(read(tensor() * 1.7), &|x| x * 1.7, "mul_scalar");
        same(read(tensor() + 0.3), &|x| x + 0.3, "add_scalar");
        same(read(tensor() / 3.0), &|x| x / 3.0, "div_scalar");
        let shifted = read(tensor().narrow(0, 1, n - 1) - 0.5);
        assert_eq!(shifted.len(), n - 1);
        for (i, (&g, &x)) in shifted.iter().zip(&v[1..]).enumerate() {
            let w = x - 0.5;
            assert!(
                (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits(),
                "sub_scalar on a view n={n} at {i}: {g} vs {w}"
            );
        }
        // Binary maps and comparisons (flex's SIMD kernels, parallel from 256 Ki elements with
        // the patch): against the other operand `w`, element by element.
        let w: Vec<f32> = values(n, 99 + n as u64);
        let other = || Tensor::<1>::from_data(TensorData::new(w.clone(), [n]), &device);
        let pairs = |got: Vec<f32>, f: &dyn Fn(f32, f32) -> f32, what: &str| {
            let want: Vec<f32> = v.iter().zip(&w).map(|(&a, &b)| f(a, b)).collect();
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g.is_nan() && e.is_nan()) || g.to_bits() == e.to_bits(),
                    "{what} n={n} at {i}: {g} vs {e}"
                );
            }
        };
        pairs(read(tensor() + other()), &|a, b| a + b, "add");
        pairs(read(tensor() * other()), &|a, b| a * b, "mul");
        let gt: Vec<bool> = tensor()
            .greater_elem(0.5)
            .into_data()
            .try_to_vec::<bool>()
            .unwrap();
        assert!(
            gt.iter().zip(&v).all(|(&g, &x)| g == (x > 0.5)),
            "greater_elem n={n}"
        );
        // Shared with a second handle: the copying path, which must leave the input alone.
        let t = tensor();
        let kept = t.clone();
        same(
            read(t.clamp(-2.0, 3.0)),
            &|x| x.clamp(-2.0, 3.0),
            "clamp (shared)",
        );
        same(read(kept), &|x| x, "input of a shared clamp");
    }
}

#[test]
fn clamp_with_a_nan_bound_gives_nan() {
    let device = Device::flex();
    let t = Tensor::<1>::from_data(TensorData::new(vec![-1.0f32, 0.5, 7.0], [3]), &device);
    let got = t
        .clamp(f32::NAN, 6.0)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(got.iter().all(|x| x.is_nan()), "{got:?}");
}

/// 2×2 stride-2 max pooling (the patch: a path without per-window range divisions) against the
/// definition: per window, in row-major order, the first maximum wins and NaN beats everything
/// (the last NaN's index), as in PyTorch. Odd sizes (a row and a column left over), ties and
/// NaN; the indices, which the backward pass uses, are checked as well as the values.
#[test]
fn max_pool_2x2_matches_the_definition() {
    use burn::tensor::module::max_pool2d_with_indices;
    use burn::tensor::ops::MaxPoolOptions;
    let device = Device::flex();
    for (batch, channels, h, w) in [(2, 3, 8, 8), (1, 5, 7, 9), (3, 2, 33, 64)] {
        let n = batch * channels * h * w;
        // Rounded to quarters so that windows hold ties; a few NaNs.
        let mut v: Vec<f32> = values(n, 5 + n as u64)
            .iter()
            .map(|x| (x * 4.0).round() / 4.0)
            .collect();
        for i in (0..n).step_by(37) {
            v[i] = f32::NAN;
        }
        let x =
            Tensor::<4>::from_data(TensorData::new(v.clone(), [batch, channels, h, w]), &device);
        let (y, idx) = max_pool2d_with_indices(x, MaxPoolOptions::new([2, 2]));
        let y = y.into_data().try_to_vec::<f32>().unwrap();
        let idx: Vec<i64> = idx
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        let (oh_n, ow_n) = (h / 2, w / 2);
        assert_eq!(y.len(), batch * channels * oh_n * ow_n);
        for bc in 0..batch * channels {
            let plane = &v[bc * h * w..][..h * w];
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let mut best: Option<(f32, usize)> = None;
                    for ky in 0..2 {
                        for kx in 0..2 {
                            let i = (2 * oh + ky) * w + 2 * ow + kx;
                            let val = plane[i];
                            best = match best {
                                None => Some((val, i)),
                                Some((m, _)) if val.is_nan() || val > m => Some((val, i)),
                                keep => keep,
                            };
                        }
                    }
                    let (want, want_i) = best.unwrap();
                    let o = bc * oh_n * ow_n + oh * ow_n + ow;
                    assert!(
                        (y[o].is_nan() && want.is_nan()) || y[o] == want,
                        "[{batch},{channels},{h},{w}] plane {bc} ({oh},{ow}): {} vs {want}",
                        y[o]
                    );
                    assert_eq!(idx[o], want_i as i64, "index at plane {bc} ({oh},{ow})");
                }
            }
        }
    }
}

/// ReLU's gradient (the patch: parallel chunks for large f32 tensors) through burn's autodiff on
/// flex, against its definition: for loss = Σ relu(x) ⊙ G, ∂loss/∂x = G where relu(x) is positive
/// or NaN, 0 elsewhere (at x = ±0 too). Below and above the parallel threshold (256 Ki elements).
#[test]
fn relu_gradient_matches_the_definition() {
    let device = Device::flex().autodiff();
    for n in [1000, 300_000, 1_000_003] {
        let mut v: Vec<f32> = values(n, 5 + n as u64);
        for (i, special) in [f32::NAN, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY]
            .into_iter()
            .enumerate()
        {
            v[i * (n / 5) + 1] = special;
        }
        let g: Vec<f32> = values(n, 17 + n as u64);
        let x = Tensor::<1>::from_data(TensorData::new(v.clone(), [n]), &device).require_grad();
        let weights = || Tensor::<1>::from_data(TensorData::new(g.clone(), [n]), &device);
        let relu = || burn::tensor::activation::relu(x.clone());
        // ∂loss/∂x must be k·G where relu(x) is positive or NaN, 0 elsewhere (k·G is exact for
        // k = 1, 2).
        let check = |loss: Tensor<1>, k: f32, what: &str| {
            let grads = loss.sum().backward();
            let got = common::grad_values(x.grad(&grads));
            assert_eq!(got.len(), n);
            for (i, ((&d, &x), &g)) in got.iter().zip(&v).zip(&g).enumerate() {
                let want = if x.is_nan() || x > 0.0 { k * g } else { 0.0 };
                assert!(
                    d.to_bits() == want.to_bits() || (d == 0.0 && want == 0.0),
                    "{what}, n={n} at {i}: x = {x}, G = {g}: got {d}, want {want}"
                );
            }
        };
        check(relu() * weights(), 1.0, "one ReLU");
        // Two ReLUs of x summed: the addition hands both the same gradient tensor, so the first
        // ReLU's backward pass finds it shared (the copying branch) and must leave it intact for
        // the second.
        check((relu() + relu()) * weights(), 2.0, "two ReLUs");
    }
}

/// Concatenation along the channels and along the rows (the patch: large outputs copied in
/// parallel pieces) against indexing by hand, output element by output element: inputs below
/// and above the size at which the copies go parallel, one of them a view that starts inside
/// its storage (items 1.. of a larger batch).
#[test]
fn cat_matches_the_definition() {
    let device = Device::flex();
    for (batch, h, w) in [(2, 5, 7), (2, 150, 170)] {
        for dim in [1, 2] {
            // The inputs' shapes differ along `dim` only.
            let shape = |n: usize| {
                let mut s = [batch, 3, h, w];
                s[dim] = n;
                s
            };
            let shapes = [shape(3), shape(5), shape(2)];
            let logical: Vec<Vec<f32>> = shapes
                .iter()
                .enumerate()
                .map(|(k, s)| values(s.iter().product(), 40 + k as u64))
                .collect();
            let mut inputs: Vec<Tensor<4>> = shapes[..2]
                .iter()
                .zip(&logical)
                .map(|(s, d)| Tensor::<4>::from_data(TensorData::new(d.clone(), *s), &device))
                .collect();
            // The third: a batch of one more item whose items 1.. hold `logical[2]`.
            let item: usize = shapes[2][1..].iter().product();
            let mut padded = values(item, 9);
            padded.extend_from_slice(&logical[2]);
            let [_, c2, h2, w2] = shapes[2];
            inputs.push(
                Tensor::<4>::from_data(TensorData::new(padded, [batch + 1, c2, h2, w2]), &device)
                    .narrow(0, 1, batch),
            );
            let got = Tensor::cat(inputs, dim);
            let dims = got.dims();
            let got = got.into_data().try_to_vec::<f32>().unwrap();
            let mut want_dims = shapes[0];
            want_dims[dim] = 10;
            assert_eq!(dims, want_dims, "dim {dim}");
            let mut i = 0;
            for b in 0..dims[0] {
                for c in 0..dims[1] {
                    for y in 0..dims[2] {
                        for x in 0..dims[3] {
                            let mut at = [b, c, y, x];
                            let (k, start) = match at[dim] {
                                0..3 => (0, 0),
                                3..8 => (1, 3),
                                _ => (2, 8),
                            };
                            at[dim] -= start;
                            let s = shapes[k];
                            let want =
                                logical[k][((at[0] * s[1] + at[1]) * s[2] + at[2]) * s[3] + at[3]];
                            assert_eq!(got[i].to_bits(), want.to_bits(), "dim {dim} at {at:?}");
                            i += 1;
                        }
                    }
                }
            }
        }
    }
}

/// 2×2 max pooling's gradient (the patch: each input plane zeroed by the task that scatters into
/// it): for loss = Σ maxpool(x) ⊙ G, ∂loss/∂x is G at each window's maximum (the first, in
/// row-major order) and 0 elsewhere, including the row and column left over at odd sizes. Below
/// and above the size at which planes are handled in parallel.
#[test]
fn max_pool_2x2_gradient_goes_to_each_window_maximum() {
    use burn::tensor::module::max_pool2d;
    use burn::tensor::ops::MaxPoolOptions;
    let device = Device::flex().autodiff();
    for (batch, channels, h, w) in [(1, 3, 7, 9), (2, 8, 129, 130)] {
        let n = batch * channels * h * w;
        // Quarters, so that windows hold ties.
        let v: Vec<f32> = values(n, 21 + n as u64)
            .iter()
            .map(|x| (x * 4.0).round() / 4.0)
            .collect();
        let (oh_n, ow_n) = (h / 2, w / 2);
        let g = values(batch * channels * oh_n * ow_n, 3);
        let x =
            Tensor::<4>::from_data(TensorData::new(v.clone(), [batch, channels, h, w]), &device)
                .require_grad();
        let weights = Tensor::<4>::from_data(
            TensorData::new(g.clone(), [batch, channels, oh_n, ow_n]),
            &device,
        );
        let grads = (max_pool2d(x.clone(), MaxPoolOptions::new([2, 2])) * weights)
            .sum()
            .backward();
        let got = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mut want = vec![0.0f32; n];
        for bc in 0..batch * channels {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let mut best = (f32::NEG_INFINITY, usize::MAX);
                    for ky in 0..2 {
                        for kx in 0..2 {
                            let i = bc * h * w + (2 * oh + ky) * w + 2 * ow + kx;
                            if best.1 == usize::MAX || v[i] > best.0 {
                                best = (v[i], i);
                            }
                        }
                    }
                    want[best.1] = g[(bc * oh_n + oh) * ow_n + ow];
                }
            }
        }
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "[{batch},{channels},{h},{w}] at {i}"
            );
        }
    }
}
