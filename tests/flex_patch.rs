//! What patches/burn-flex changes in convolutions and batch norm, against independent references
//! (element-wise maps, pooling, concatenation: `flex_patch_maps.rs`).
//!
//! conv2d and its gradients (the patch: im2col + GEMM in NCHW, direct depthwise gradients) against
//! the definition, summed by hand in f64: y = conv2d(x, w) + bias and, for loss = Σ y ⊙ G,
//!   ∂loss/∂w[co, ci, kh, kw] = Σ_b,oy,ox G[b, co, oy, ox] · x[b, g·cpg + ci, oy·s + kh·d − p, ox·s + kw·d − p]
//!   ∂loss/∂x[b, c, iy, ix]   = the same products, gathered by input position instead.
//! Shapes cover what the shipped networks use (3×3 same convolutions, also on the patch's direct
//! path without im2col, 2×2 stride-2, 1×1,
//! depthwise 3×3/5×5 with stride 2 and asymmetric "same" padding) and what they do not (groups 2,
//! dilation, odd sizes, batch 1, a feature map large enough to be processed in several chunks).
//!
//! Batch norm in training mode (the patch: per-channel passes in place) against its definition in
//! f64, and its gradients against central differences of that definition.

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::module::{conv_transpose2d, conv2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

mod common;
use common::uniform_values as values;

struct Case {
    batch: usize,
    cin: usize,
    cout: usize,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    /// (begin, end) per dimension.
    padding: [(usize, usize); 2],
    dilation: [usize; 2],
    groups: usize,
}

/// (output, grad w, grad x) by the definition, in f64.
fn reference(
    c: &Case,
    x: &[f32],
    w: &[f32],
    g: &[f32],
    out: [usize; 2],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (cpg, opg) = (c.cin / c.groups, c.cout / c.groups);
    let [h, wd] = c.hw;
    let [kh_n, kw_n] = c.kernel;
    let mut dw = vec![0.0f64; c.cout * cpg * kh_n * kw_n];
    let mut dx = vec![0.0f64; c.batch * c.cin * h * wd];
    let mut y = vec![0.0f64; g.len()];
    for b in 0..c.batch {
        for co in 0..c.cout {
            let grp = co / opg;
            for oy in 0..out[0] {
                for ox in 0..out[1] {
                    let yi = ((b * c.cout + co) * out[0] + oy) * out[1] + ox;
                    let gv = g[yi] as f64;
                    for ci in 0..cpg {
                        let cx = grp * cpg + ci;
                        for kh in 0..kh_n {
                            let iy = (oy * c.stride[0] + kh * c.dilation[0]) as isize
                                - c.padding[0].0 as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kw in 0..kw_n {
                                let ix = (ox * c.stride[1] + kw * c.dilation[1]) as isize
                                    - c.padding[1].0 as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let xi = ((b * c.cin + cx) * h + iy as usize) * wd + ix as usize;
                                let wi = ((co * cpg + ci) * kh_n + kh) * kw_n + kw;
                                y[yi] += x[xi] as f64 * w[wi] as f64;
                                dw[wi] += gv * x[xi] as f64;
                                dx[xi] += gv * w[wi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (y, dw, dx)
}

fn relative_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    assert!(
        den > 0.0,
        "reference gradient is zero: the case tests nothing"
    );
    (num / den).sqrt()
}

fn check(c: &Case) {
    let device = Device::flex().autodiff();
    let cpg = c.cin / c.groups;
    let x_shape = [c.batch, c.cin, c.hw[0], c.hw[1]];
    let w_shape = [c.cout, cpg, c.kernel[0], c.kernel[1]];
    let xv = values(x_shape.iter().product(), 1);
    let wv = values(w_shape.iter().product(), 2);
    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), x_shape), &device).require_grad();
    let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), w_shape), &device).require_grad();
    let bv = values(c.cout, 4);
    let bias =
        Tensor::<1>::from_data(TensorData::new(bv.clone(), [c.cout]), &device).require_grad();
    let options = ConvOptions::new_with_padding(c.stride, c.padding, c.dilation, c.groups);
    let y = conv2d(x.clone(), w.clone(), Some(bias.clone()), options);
    let [_, _, oh, ow] = y.dims();
    let gv = values(c.batch * c.cout * oh * ow, 3);
    let g = Tensor::<4>::from_data(
        TensorData::new(gv.clone(), [c.batch, c.cout, oh, ow]),
        &device,
    );
    let to_vec = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let got_y = to_vec(y.clone());
    let grads = (y * g).sum().backward();
    let got_w = to_vec(w.grad(&grads).expect("weight gradient"));
    let got_x = to_vec(x.grad(&grads).expect("input gradient"));
    let (mut want_y, want_w, want_x) = reference(c, &xv, &wv, &gv, [oh, ow]);
    // The bias: added to every position of its channel; its gradient is G summed per channel.
    let mut want_b = vec![0.0f64; c.cout];
    for (i, (yv, gv)) in want_y.iter_mut().zip(&gv).enumerate() {
        let co = (i / (oh * ow)) % c.cout;
        *yv += bv[co] as f64;
        want_b[co] += *gv as f64;
    }
    let got_b = bias
        .grad(&grads)
        .expect("bias gradient")
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let eb = relative_l2(&got_b, &want_b);
    assert!(eb < 1e-5, "bias gradient: relative L2 error {eb:.2e}");
    let what = format!(
        "batch {} {}→{} {:?} kernel {:?} stride {:?} padding {:?} dilation {:?} groups {}",
        c.batch, c.cin, c.cout, c.hw, c.kernel, c.stride, c.padding, c.dilation, c.groups
    );
    assert_matches(&what, [&got_y, &got_w, &got_x], [&want_y, &want_w, &want_x]);
}

/// Output, weight gradient and input gradient within 1e-5 relative L2 of the definition.
fn assert_matches(what: &str, got: [&[f32]; 3], want: [&[f64]; 3]) {
    let [ey, ew, ex] = [0, 1, 2].map(|i| relative_l2(got[i], want[i]));
    assert!(
        ey < 1e-5 && ew < 1e-5 && ex < 1e-5,
        "{what}: relative L2 error output {ey:.2e}, weight gradient {ew:.2e}, input gradient \
         {ex:.2e}"
    );
}

fn case(batch: usize, cin: usize, cout: usize, hw: [usize; 2], kernel: [usize; 2]) -> Case {
    Case {
        batch,
        cin,
        cout,
        hw,
        kernel,
        stride: [1, 1],
        padding: [
            (kernel[0] / 2, kernel[0] / 2),
            (kernel[1] / 2, kernel[1] / 2),
        ],
        dilation: [1, 1],
        groups: 1,
    }
}

#[test]
fn dense_convolutions_match_the_definition() {
    // The U-Net's 3×3 same convolutions, batch 4 (the size that took flex's small-channel path
    // for the weight gradient); 3 input channels: flex's own forward, 16: the patch's.
    check(&case(4, 3, 16, [12, 10], [3, 3]));
    check(&case(4, 16, 8, [9, 9], [3, 3]));
    // 1×1 heads, batch 1.
    check(&case(1, 5, 2, [7, 6], [1, 1]));
    // Stride 2 with asymmetric "same" padding, as the EfficientNet stem (TensorFlow style).
    check(&Case {
        stride: [2, 2],
        padding: [(0, 1), (0, 1)],
        ..case(3, 1, 8, [16, 15], [3, 3])
    });
    // Non-square kernel, dilation 2, stride (2, 1).
    check(&Case {
        stride: [2, 1],
        padding: [(2, 2), (1, 3)],
        dilation: [2, 2],
        ..case(2, 3, 4, [11, 13], [3, 2])
    });
    // Two groups.
    check(&Case {
        groups: 2,
        ..case(2, 4, 6, [8, 9], [3, 3])
    });
    // Stride 1 with a non-square kernel and unequal padding per dimension, and a 2×2 kernel with
    // none ("valid"): the patch computes their dX as a convolution of dY with the flipped kernel.
    check(&Case {
        padding: [(0, 0), (2, 2)],
        ..case(2, 6, 5, [10, 11], [3, 5])
    });
    check(&Case {
        padding: [(0, 0), (0, 0)],
        ..case(3, 8, 7, [9, 8], [2, 2])
    });
    // Stride 1, output as wide as the input: im2col copies each tap as one shifted plane. With
    // dilation 2, and with a 5×5 kernel taller and wider than a 2×3 image (taps whose rows all
    // fall on the padding).
    check(&Case {
        padding: [(2, 2), (2, 2)],
        dilation: [2, 2],
        ..case(2, 5, 4, [9, 10], [3, 3])
    });
    check(&case(1, 6, 3, [2, 3], [5, 5]));
    // One image with fewer items than threads: its output rows are split into bands, one task
    // each (13 rows: unequal bands).
    check(&case(1, 8, 5, [13, 11], [3, 3]));
    // Weights of at least 32 Ki elements (64 × 64 × 3 × 3): their rearrangements for dW and dX
    // run in parallel rows.
    check(&case(2, 64, 64, [6, 5], [3, 3]));
    // flex's own small-channel forward with an output of at least 256 Ki elements: each plane
    // zeroed by its task, the bias added one plane per task.
    check(&case(2, 3, 16, [96, 96], [3, 3]));
}

#[test]
fn depthwise_convolutions_match_the_definition() {
    for (kernel, stride, padding) in [
        (3, 1, (1, 1)),
        (3, 2, (0, 1)),
        (5, 1, (2, 2)),
        (5, 2, (1, 2)),
    ] {
        check(&Case {
            stride: [stride, stride],
            padding: [padding, padding],
            groups: 6,
            ..case(3, 6, 6, [14, 13], [kernel, kernel])
        });
    }
    // A channel multiplier of 2 (groups = input channels, two outputs each): not "depthwise"
    // in the patch's sense, so the grouped GEMM path.
    check(&Case {
        groups: 3,
        ..case(2, 3, 6, [7, 7], [3, 3])
    });
}

/// Depthwise forward (no bias) and input gradient for loss = Σ y ⊙ G, summed in f32 in the
/// order the patch documents: taps in (kh, kw) order, from zero. The output adds `x · w` over
/// the zero-padded input (padding included: `inf · 0` is NaN); the input gradient adds `g · w`
/// at the input positions only.
#[allow(clippy::too_many_arguments)]
fn depthwise_in_order(
    x: &[f32],
    g: &[f32],
    w: &[f32],
    dims: [usize; 4],
    k: usize,
    s: usize,
    p: usize,
) -> (Vec<f32>, Vec<f32>) {
    let [n, c, h, wd] = dims;
    let (oh_n, ow_n) = ((h + 2 * p - k) / s + 1, (wd + 2 * p - k) / s + 1);
    let mut y = vec![0.0f32; n * c * oh_n * ow_n];
    let mut dx = vec![0.0f32; n * c * h * wd];
    for b in 0..n {
        for ch in 0..c {
            for kh in 0..k {
                for kw in 0..k {
                    let tap = w[(ch * k + kh) * k + kw];
                    for oh in 0..oh_n {
                        for ow in 0..ow_n {
                            let o = ((b * c + ch) * oh_n + oh) * ow_n + ow;
                            let (iy, ix) = (oh * s + kh, ow * s + kw);
                            if iy < p || ix < p || iy - p >= h || ix - p >= wd {
                                y[o] += 0.0 * tap;
                                continue;
                            }
                            let i = ((b * c + ch) * h + iy - p) * wd + ix - p;
                            y[o] += x[i] * tap;
                            dx[i] += g[o] * tap;
                        }
                    }
                }
            }
        }
    }
    (y, dx)
}

/// How many values differ (equal, or both NaN, counts as the same).
fn count_differing(got: &[f32], want: &[f32]) -> usize {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .filter(|(a, b)| !(a == b || (a.is_nan() && b.is_nan())))
        .count()
}

#[test]
fn depthwise_forward_and_input_gradient_add_the_taps_in_order_bit_for_bit() {
    // The patch computes f32 depthwise planes with stride 1 or 2 (forward and input gradient) as
    // whole-plane runs over padded phase planes; it claims the same bits as adding the taps one
    // by one. (Its weight gradient sums in another order: checked against f64 above.) Sizes: the
    // 7- and 14-wide planes of EfficientNet's late stages, odd sizes, and a 70×70 plane (more
    // than one 4096-element band). One weight is infinite: where its tap falls on the padding
    // the output is NaN (inf · 0), as with materialised zeros.
    let device = Device::flex().autodiff();
    for (hw, k, s) in [
        (7, 5, 1),
        (14, 3, 1),
        (14, 3, 2),
        (13, 5, 2),
        (15, 3, 2),
        (70, 3, 1),
        (70, 5, 2),
    ] {
        let (n, c, p) = (2, 3, k / 2);
        let dims = [n, c, hw, hw];
        let xv = values(n * c * hw * hw, 5);
        let mut wv = values(c * k * k, 6);
        wv[k * k] = f32::INFINITY; // channel 1, tap (0, 0)
        let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), dims), &device).require_grad();
        let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), [c, 1, k, k]), &device);
        let y = conv2d(
            x.clone(),
            w,
            None,
            ConvOptions::new([s, s], [p, p], [1, 1], c),
        );
        let got = y.clone().into_data().try_to_vec::<f32>().unwrap();
        let gv = values(got.len(), 7);
        let (want, want_dx) = depthwise_in_order(&xv, &gv, &wv, dims, k, s, p);
        let nans = want.iter().filter(|v| v.is_nan()).count();
        assert!(
            nans > 0,
            "{hw}² k{k} s{s}: the infinite weight never meets the padding"
        );
        let differ = count_differing(&got, &want);
        assert_eq!(
            differ,
            0,
            "{hw}² k{k} s{s}: {differ} of {} outputs differ",
            want.len()
        );
        // The input gradient: the patch scatters each tap over the whole plane, in tap order
        // (channel 1, with the infinite weight, takes the row-wise path).
        let g = Tensor::<4>::from_data(TensorData::new(gv, y.dims()), &device);
        let grads = (y * g).sum().backward();
        let got = common::grad_values(x.grad(&grads));
        let differ = count_differing(&got, &want_dx);
        assert_eq!(
            differ,
            0,
            "{hw}² k{k} s{s}: {differ} of {} input-gradient values differ",
            want_dx.len()
        );
    }
}

#[test]
fn direct_3x3_convolutions_match_the_definition() {
    // The patch runs 3×3 stride-1 convolutions with "same" padding (in + 2p = out + 2), at most 64
    // output channels and planes at least 16 wide without im2col: the forward pass, and the input
    // gradient (itself such a convolution); with at most 16 output channels the weight gradient
    // too (on CPUs with AVX-512F, as this one; elsewhere these cases check the im2col path).
    // One input channel (the U-Net's first layer): flex's small-channel forward, the patch's
    // direct weight gradient and a one-channel input gradient (an 8-channel tile, 7 of them zero).
    check(&case(2, 1, 16, [20, 17], [3, 3]));
    // 13 output channels: the last 8-channel tile partly filled; its weight gradient in blocks of
    // three channels and one left over.
    check(&case(3, 5, 13, [18, 16], [3, 3]));
    // One image: its rows split into bands; 40 output channels (five tiles), weight gradient by
    // im2col; the input gradient (7 output channels) direct.
    check(&case(1, 7, 40, [33, 21], [3, 3]));
    // "Valid" (no padding): out = in − 2; its input gradient is a convolution padded by 2.
    check(&Case {
        padding: [(0, 0), (0, 0)],
        ..case(2, 6, 9, [20, 19], [3, 3])
    });
    // 8×8 planes, batch 8: the weight gradient as one GEMM over the whole batch's positions.
    check(&case(8, 24, 20, [8, 8], [3, 3]));
}

#[test]
fn a_non_finite_input_on_the_image_edge_gives_the_definitions_weight_gradient() {
    // The direct weight gradient multiplies the zero columns past each gradient row by the start
    // of the next input row: an infinite input in column 0 would give 0 · ∞ = NaN there, so such
    // a result goes to the im2col path. The definition: ±∞ for the taps that reach the value
    // from inside the output (kw = 0, 1), finite for kw = 2.
    let device = Device::flex().autodiff();
    let c = case(2, 3, 8, [20, 18], [3, 3]);
    let x_shape = [c.batch, c.cin, c.hw[0], c.hw[1]];
    let w_shape = [c.cout, c.cin, 3, 3];
    let mut xv = values(x_shape.iter().product(), 8);
    xv[((c.cin + 2) * c.hw[0] + 5) * c.hw[1]] = f32::INFINITY; // item 1, channel 2, row 5, column 0
    let wv = values(w_shape.iter().product(), 9);
    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), x_shape), &device);
    let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), w_shape), &device).require_grad();
    let y = conv2d(
        x,
        w.clone(),
        None,
        ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
    );
    let gv = values(c.batch * c.cout * c.hw[0] * c.hw[1], 10);
    let g = Tensor::<4>::from_data(TensorData::new(gv.clone(), y.dims()), &device);
    let grads = (y * g).sum().backward();
    let got = common::grad_values(w.grad(&grads));
    let (_, want, _) = reference(&c, &xv, &wv, &gv, c.hw);
    let infinite = want.iter().filter(|v| v.is_infinite()).count();
    assert_eq!(
        infinite,
        2 * 3 * c.cout,
        "the case does not test what it claims"
    );
    let mut finite = (Vec::new(), Vec::new());
    for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
        if b.is_finite() {
            finite.0.push(a);
            finite.1.push(b);
        } else {
            assert_eq!(
                a as f64, b,
                "weight-gradient entry {i}: {a} where the definition has {b}"
            );
        }
    }
    let e = relative_l2(&finite.0, &finite.1);
    assert!(e < 1e-5, "finite entries: relative L2 error {e:.2e}");
}

#[test]
fn a_feature_map_larger_than_one_column_chunk_matches_the_definition() {
    // 16 channels × 3×3 × 160 columns = 23,040 column elements per output row: the patch's
    // 2^20-element buffer takes 45 rows at a time, so 130 rows are accumulated in three chunks.
    // The direct 3×3 forward pass (on AVX-512F CPUs) also goes by chunks of rows here: 24 padded
    // planes of 162 columns, 49 rows per 768 KiB (the input gradient: 20 planes, 60 rows).
    check(&case(2, 16, 4, [130, 160], [3, 3]));
}

/// conv_transpose2d's weight gradient (the patch: one GEMM over the gathered output gradient,
/// instead of burn's default conv2d with the input as kernel), its output and input gradient,
/// against the definition in f64: the transposed convolution adds
/// `x[b, ci, iy, ix] · w[ci, co, kh, kw]` into `y[b, g·cog + co, iy·s − p + kh·d, ix·s − p + kw·d]`
/// (left out where that falls outside `y`), so for loss = Σ y ⊙ G each product's gradient is `G`
/// at that position times the other factor.
fn check_transposed(batch: usize, [cin, cog]: [usize; 2], hw: [usize; 2], opt: [usize; 6]) {
    let [k, stride, padding, padding_out, dilation, groups] = opt;
    let device = Device::flex().autodiff();
    let cout = cog * groups;
    let x_shape = [batch, cin, hw[0], hw[1]];
    let w_shape = [cin, cog, k, k];
    let (xv, wv) = (
        values(x_shape.iter().product(), 5),
        values(w_shape.iter().product(), 6),
    );
    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), x_shape), &device).require_grad();
    let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), w_shape), &device).require_grad();
    let options = ConvTransposeOptions::new(
        [stride; 2],
        [padding; 2],
        [padding_out; 2],
        [dilation; 2],
        groups,
    );
    let y = conv_transpose2d(x.clone(), w.clone(), None, options);
    let [_, _, oh, ow] = y.dims();
    let gv = values(batch * cout * oh * ow, 7);
    let g = Tensor::<4>::from_data(TensorData::new(gv.clone(), [batch, cout, oh, ow]), &device);
    let got_y = y
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let grads = (y * g).sum().backward();
    let got_w = common::grad_values(w.grad(&grads));
    let got_x = common::grad_values(x.grad(&grads));
    let cig = cin / groups;
    let (mut want_y, mut want_w, mut want_x) = (
        vec![0.0f64; got_y.len()],
        vec![0.0f64; wv.len()],
        vec![0.0f64; xv.len()],
    );
    for b in 0..batch {
        for ci in 0..cin {
            for iy in 0..hw[0] {
                for ix in 0..hw[1] {
                    let xi = ((b * cin + ci) * hw[0] + iy) * hw[1] + ix;
                    for co in 0..cog {
                        let c = ci / cig * cog + co;
                        for kh in 0..k {
                            for kw in 0..k {
                                let oy = (iy * stride + kh * dilation) as isize - padding as isize;
                                let ox = (ix * stride + kw * dilation) as isize - padding as isize;
                                if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                    continue;
                                }
                                let yi = ((b * cout + c) * oh + oy as usize) * ow + ox as usize;
                                let wi = ((ci * cog + co) * k + kh) * k + kw;
                                want_y[yi] += xv[xi] as f64 * wv[wi] as f64;
                                want_w[wi] += xv[xi] as f64 * gv[yi] as f64;
                                want_x[xi] += wv[wi] as f64 * gv[yi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    let what = format!("batch {batch} {cin}→{cout} {hw:?} [k, s, p, out-p, d, groups] {opt:?}");
    assert_matches(&what, [&got_y, &got_w, &got_x], [&want_y, &want_w, &want_x]);
}

#[test]
fn transposed_convolutions_match_the_definition() {
    // The U-Net's 2×2 stride-2 up-sampling: one item (the input used as it is), and eight (more
    // than the default's small-channel threshold of four swapped input channels).
    check_transposed(1, [24, 12], [5, 6], [2, 2, 0, 0, 1, 1]);
    check_transposed(8, [16, 8], [4, 4], [2, 2, 0, 0, 1, 1]);
    // Overlapping taps, padding, output padding, dilation and groups: taps that fall outside
    // the output on every side.
    check_transposed(3, [4, 3], [5, 4], [3, 2, 1, 1, 2, 2]);
    check_transposed(2, [6, 5], [3, 7], [3, 1, 2, 0, 1, 1]);
}

/// Batch norm with the batch's statistics, in f64: Σ G ⊙ BN(x; γ, β).
fn bn_loss(x: &[f64], gamma: &[f64], beta: &[f64], g: &[f64], shape: [usize; 4], eps: f64) -> f64 {
    let [b, c, h, w] = shape;
    let s = h * w;
    let mut loss = 0.0;
    for ch in 0..c {
        let idx = |k: usize, i: usize| (k * c + ch) * s + i;
        let n = (b * s) as f64;
        let mean = (0..b)
            .flat_map(|k| (0..s).map(move |i| (k, i)))
            .map(|(k, i)| x[idx(k, i)])
            .sum::<f64>()
            / n;
        let var = (0..b)
            .flat_map(|k| (0..s).map(move |i| (k, i)))
            .map(|(k, i)| (x[idx(k, i)] - mean).powi(2))
            .sum::<f64>()
            / n;
        for k in 0..b {
            for i in 0..s {
                let y = (x[idx(k, i)] - mean) / (var + eps).sqrt() * gamma[ch] + beta[ch];
                loss += g[idx(k, i)] * y;
            }
        }
    }
    loss
}

#[test]
fn batch_norm_training_matches_central_differences() {
    let device = Device::flex().autodiff();
    let shape = [3, 4, 5, 6];
    let n: usize = shape.iter().product();
    let eps = 1e-5;
    // Channels with different means and spreads, as after a convolution.
    let xv: Vec<f32> = values(n, 5)
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1.0 + (i / 30 % 4) as f32) + (i / 30 % 4) as f32 - 1.5)
        .collect();
    let gamma_v = values(4, 6).iter().map(|v| v + 1.5).collect::<Vec<f32>>();
    let beta_v = values(4, 7);
    let gv = values(n, 8);
    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), shape), &device).require_grad();
    let gamma =
        Tensor::<1>::from_data(TensorData::new(gamma_v.clone(), [4]), &device).require_grad();
    let beta = Tensor::<1>::from_data(TensorData::new(beta_v.clone(), [4]), &device).require_grad();
    let out = burn::tensor::module::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), eps);
    let g = Tensor::<4>::from_data(TensorData::new(gv.clone(), shape), &device);
    let y = out.output.clone();
    let got_y: Vec<f32> = y.clone().into_data().convert::<f32>().try_to_vec().unwrap();
    let got_mean: Vec<f32> = out.mean.into_data().convert::<f32>().try_to_vec().unwrap();
    let got_var: Vec<f32> = out
        .variance
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .unwrap();
    let grads = (y * g).sum().backward();
    let vec1 = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let got_dx = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let got_dgamma = vec1(gamma.grad(&grads).unwrap());
    let got_dbeta = vec1(beta.grad(&grads).unwrap());

    let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let (x64, gm64, bt64, g64) = (f64s(&xv), f64s(&gamma_v), f64s(&beta_v), f64s(&gv));
    // Forward and statistics by the definition.
    let s = 30;
    let mut want_mean = vec![0.0; 4];
    let mut want_var = vec![0.0; 4];
    for ch in 0..4 {
        let vals: Vec<f64> = (0..3)
            .flat_map(|k| (0..s).map(move |i| (k * 4 + ch) * s + i))
            .map(|i| x64[i])
            .collect();
        want_mean[ch] = vals.iter().sum::<f64>() / 90.0;
        want_var[ch] = vals
            .iter()
            .map(|v| (v - want_mean[ch]).powi(2))
            .sum::<f64>()
            / 90.0;
    }
    let want_y: Vec<f64> = (0..n)
        .map(|i| {
            let ch = (i / s) % 4;
            (x64[i] - want_mean[ch]) / (want_var[ch] + eps).sqrt() * gm64[ch] + bt64[ch]
        })
        .collect();
    assert!(relative_l2(&got_y, &want_y) < 1e-5);
    assert!(relative_l2(&got_mean, &want_mean) < 1e-5);
    assert!(relative_l2(&got_var, &want_var) < 1e-5);
    // Gradients by central differences of the f64 loss.
    let h = 1e-4;
    let diff = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
    let want_dx: Vec<f64> = (0..n)
        .map(|i| {
            diff(&|d| {
                let mut xs = x64.clone();
                xs[i] += d;
                bn_loss(&xs, &gm64, &bt64, &g64, shape, eps)
            })
        })
        .collect();
    let want_dgamma: Vec<f64> = (0..4)
        .map(|c| {
            diff(&|d| {
                let mut gs = gm64.clone();
                gs[c] += d;
                bn_loss(&x64, &gs, &bt64, &g64, shape, eps)
            })
        })
        .collect();
    let want_dbeta: Vec<f64> = (0..4)
        .map(|c| {
            diff(&|d| {
                let mut bs = bt64.clone();
                bs[c] += d;
                bn_loss(&x64, &gm64, &bs, &g64, shape, eps)
            })
        })
        .collect();
    let (ex, eg, eb) = (
        relative_l2(&got_dx, &want_dx),
        relative_l2(&got_dgamma, &want_dgamma),
        relative_l2(&got_dbeta, &want_dbeta),
    );
    assert!(
        ex < 1e-4 && eg < 1e-4 && eb < 1e-4,
        "batch norm gradients: input {ex:.2e}, gamma {eg:.2e}, beta {eb:.2e}"
    );
}
