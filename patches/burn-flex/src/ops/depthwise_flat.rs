//! Depthwise convolution of one f32 plane as whole-plane vector runs (cxrlens patch, see
//! `PATCH.md`).
//!
//! `conv_plane_accumulate` walks each output row once per kernel tap. On the small planes of a
//! mobile network's later stages (7, 14 and 28 wide) most of every row falls in the scalar
//! remainder of the vector loop, and a stride-2 tap reads every other input element, which
//! does not vectorise at all; EfficientNet-Lite0's forward pass spent about 40 % of its time
//! there. Here the input plane is first copied, with its zero padding, into `stride²` phase
//! planes (for stride 2: even rows × even columns, even × odd, …), each `wq` wide. Tap
//! `(kh, kw)` then reads phase `(kh mod s, kw mod s)` shifted by `(kh / s) · wq + kw / s`, so the
//! whole output plane, laid out `wq` wide, is one contiguous run per tap: `acc[i] += w · p[i +
//! shift]`. The `wq − out_w` extra columns of each row are computed and dropped.
//!
//! The taps are added in the same order as `conv_plane_accumulate` adds them (`kh`, then `kw`),
//! starting from zero, so each output has the same bits. The padding is real zeros here, so a
//! non-finite weight over padding gives NaN (`inf · 0`), which `conv_plane_accumulate` produces
//! with `propagate_non_finite_padding`.

use std::cell::RefCell;

/// Accumulator elements per pass over the taps (16 KiB: the band stays in L1 while every tap
/// adds into it).
const BAND: usize = 4096;

multiversion! {
    /// `acc[i] = src[i] · w + acc[i]` (no fused multiply-add, as the scalar path).
    #[inline(never)]
    fn accumulate(acc: &mut [f32], src: &[f32], w: f32) {
        for (a, &s) in acc.iter_mut().zip(src) {
            *a = s * w + *a;
        }
    }
}

multiversion! {
    /// `Σ a[i] · b[i]`, in sixteen lane-wise partial sums.
    #[inline(never)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
        let mut tail = 0.0f32;
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            tail += x * y;
        }
        let mut acc = [0.0f32; 16];
        for (x, y) in ca.zip(cb) {
            for l in 0..16 {
                acc[l] += x[l] * y[l];
            }
        }
        acc.iter().sum::<f32>() + tail
    }
}

multiversion! {
    /// Whether every value is finite: sixteen lane-wise sums of `v · 0`, NaN if any `v` is
    /// infinite or NaN.
    #[inline(never)]
    pub(crate) fn all_finite(values: &[f32]) -> bool {
        let chunks = values.chunks_exact(16);
        let mut tail = 0.0f32;
        for &v in chunks.remainder() {
            tail += v * 0.0;
        }
        let mut acc = [0.0f32; 16];
        for x in chunks {
            for l in 0..16 {
                acc[l] += x[l] * 0.0;
            }
        }
        acc.iter().sum::<f32>() + tail == 0.0
    }
}

thread_local! {
    /// Phase planes and accumulator, reused by the tasks of one thread.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The geometry shared by every plane of one depthwise convolution.
pub(crate) struct Plan {
    stride: usize,
    pad_h: usize,
    pad_w: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    /// Rows and columns of each phase plane.
    hq: usize,
    wq: usize,
    /// Per tap, in `(kh, kw)` order: the phase plane's start in the scratch buffer plus the shift.
    taps: Vec<usize>,
}

impl Plan {
    /// `None` unless stride is 1 or 2 in both directions and dilation is 1 (the other cases keep
    /// the row-wise path).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        input: [usize; 2],
        output: [usize; 2],
    ) -> Option<Self> {
        let s = stride[0];
        if stride[1] != s || !(1..=2).contains(&s) || dilation != [1, 1] {
            return None;
        }
        let [out_h, out_w] = output;
        if out_h == 0 || out_w == 0 {
            return None;
        }
        let hq = out_h + (kernel[0] - 1) / s;
        let wq = out_w + (kernel[1] - 1) / s;
        // One extra zero row: the last output row's dropped columns read past row `hq − 1`.
        let phase_len = (hq + 1) * wq;
        let mut taps = Vec::with_capacity(kernel[0] * kernel[1]);
        for kh in 0..kernel[0] {
            for kw in 0..kernel[1] {
                let phase = (kh % s) * s + kw % s;
                taps.push(phase * phase_len + (kh / s) * wq + kw / s);
            }
        }
        Some(Self {
            stride: s,
            pad_h: padding[0],
            pad_w: padding[1],
            in_h: input[0],
            in_w: input[1],
            out_h,
            out_w,
            hq,
            wq,
            taps,
        })
    }

    fn phase_len(&self) -> usize {
        (self.hq + 1) * self.wq
    }

    /// `out_plane = depthwise_conv(in_plane, w_plane)`, no bias; `out_plane` is written in full.
    pub(crate) fn run(&self, out_plane: &mut [f32], in_plane: &[f32], w_plane: &[f32]) {
        debug_assert_eq!(out_plane.len(), self.out_h * self.out_w);
        debug_assert_eq!(in_plane.len(), self.in_h * self.in_w);
        debug_assert_eq!(w_plane.len(), self.taps.len());
        SCRATCH.with(|scratch| {
            let (phases, acc) = &mut *scratch.borrow_mut();
            self.fill_phases(phases, in_plane);
            let len = self.wide_len();
            acc.resize(len, 0.0);
            let mut i0 = 0;
            while i0 < len {
                let i1 = (i0 + BAND).min(len);
                let band = &mut acc[i0..i1];
                band.fill(0.0);
                for (&tap, &w) in self.taps.iter().zip(w_plane) {
                    accumulate(band, &phases[tap + i0..tap + i1], w);
                }
                i0 = i1;
            }
            for (oh, row) in out_plane.chunks_exact_mut(self.out_w).enumerate() {
                row.copy_from_slice(&acc[oh * self.wq..oh * self.wq + self.out_w]);
            }
        });
    }

    /// Positions of the `wq`-wide layout that hold outputs: up to the last row's `out_w`.
    fn wide_len(&self) -> usize {
        (self.out_h - 1) * self.wq + self.out_w
    }

    /// `grad` (an output plane) in the `wq`-wide layout, zero in the dropped columns.
    fn widen(&self, wide: &mut Vec<f32>, grad: &[f32]) {
        wide.clear();
        wide.resize(self.wide_len(), 0.0);
        for (oh, row) in grad.chunks_exact(self.out_w).enumerate() {
            wide[oh * self.wq..oh * self.wq + self.out_w].copy_from_slice(row);
        }
    }

    /// Weight gradient of one image's plane: `taps[t] += Σ grad · x` over the positions tap `t`
    /// reads, as one dot product over the whole plane per tap. The caller checks that `x_plane`
    /// and `grad` are finite (a dropped column or padding contributes `0 · x` or `g · 0`).
    pub(crate) fn weight_grad(&self, taps: &mut [f32], x_plane: &[f32], grad: &[f32]) {
        SCRATCH.with(|scratch| {
            let (phases, wide) = &mut *scratch.borrow_mut();
            self.fill_phases(phases, x_plane);
            self.widen(wide, grad);
            let len = wide.len();
            for (tap, &start) in taps.iter_mut().zip(&self.taps) {
                *tap += dot(wide, &phases[start..start + len]);
            }
        });
    }

    /// Input gradient of one plane: every tap scatters `w · grad` back onto the phase planes as
    /// one run, in `(kh, kw)` order, as the row-wise path adds them (so the same bits); then the
    /// phases are read back in input order. The caller checks that `w_plane` is finite (the
    /// dropped columns scatter `w · 0`).
    pub(crate) fn input_grad(&self, dx_plane: &mut [f32], grad: &[f32], w_plane: &[f32]) {
        SCRATCH.with(|scratch| {
            let (phases, wide) = &mut *scratch.borrow_mut();
            let s = self.stride;
            phases.clear();
            phases.resize(s * s * self.phase_len(), 0.0);
            self.widen(wide, grad);
            let len = wide.len();
            for (&start, &w) in self.taps.iter().zip(w_plane) {
                accumulate(&mut phases[start..start + len], wide, w);
            }
            for (iy, row) in dx_plane.chunks_exact_mut(self.in_w).enumerate() {
                let y = iy + self.pad_h;
                let (a, r) = (y % s, y / s);
                if r >= self.hq {
                    row.fill(0.0);
                    continue;
                }
                for (ix, d) in row.iter_mut().enumerate() {
                    let x = ix + self.pad_w;
                    let (b, c) = (x % s, x / s);
                    *d = if c < self.wq {
                        phases[(a * s + b) * self.phase_len() + r * self.wq + c]
                    } else {
                        0.0
                    };
                }
            }
        });
    }

    /// Every phase plane of `in_plane`.
    fn fill_phases(&self, phases: &mut Vec<f32>, in_plane: &[f32]) {
        let s = self.stride;
        phases.resize(s * s * self.phase_len(), 0.0);
        for a in 0..s {
            for b in 0..s {
                let start = (a * s + b) * self.phase_len();
                self.fill_phase(&mut phases[start..start + self.phase_len()], in_plane, a, b);
            }
        }
    }

    /// Phase `(a, b)`: `p[r][c] = x[s·r + a − pad_h][s·c + b − pad_w]`, zero outside the input,
    /// for `r < hq + 1`, `c < wq`.
    fn fill_phase(&self, phase: &mut [f32], in_plane: &[f32], a: usize, b: usize) {
        let s = self.stride;
        // Columns whose input column `s·c + b − pad_w` lies in `[0, in_w)`.
        let c_lo = self.pad_w.saturating_sub(b).div_ceil(s).min(self.wq);
        let c_hi = (self.in_w + self.pad_w)
            .saturating_sub(b)
            .div_ceil(s)
            .clamp(c_lo, self.wq);
        for (r, row) in phase.chunks_exact_mut(self.wq).enumerate() {
            let ih = (s * r + a).wrapping_sub(self.pad_h);
            if r >= self.hq || ih >= self.in_h {
                row.fill(0.0);
                continue;
            }
            let input = &in_plane[ih * self.in_w..(ih + 1) * self.in_w];
            row[..c_lo].fill(0.0);
            row[c_hi..].fill(0.0);
            if c_hi == c_lo {
                continue;
            }
            let first = s * c_lo + b - self.pad_w;
            if s == 1 {
                row[c_lo..c_hi].copy_from_slice(&input[first..first + (c_hi - c_lo)]);
            } else {
                for (value, &x) in row[c_lo..c_hi]
                    .iter_mut()
                    .zip(input[first..].iter().step_by(s))
                {
                    *value = x;
                }
            }
        }
    }
}
