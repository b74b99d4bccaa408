//! The 2D convolution in NCHW by im2col + GEMM, and its backward passes (cxrlens patch, see
//! `PATCH.md` at the crate root).
//!
//! Forward (dense convolutions with more than a few input channels and a kernel larger than 1×1):
//! per batch item and chunk of output rows, im2col straight from NCHW into
//! `[channels·kh·kw, positions]` and one GEMM `Y[co, positions] = W[co, :] · col` written in place
//! into the NCHW output, instead of flex's NHWC copy of the input, per-tile im2col and scatter of
//! the tile's result.
//!
//! burn-backend's default `conv2d_weight_backward` computes the weight gradient as a second
//! convolution whose "kernel" is the output gradient (kernel = the whole feature map, batch and
//! channels swapped). On flex that convolution falls on paths made for small kernels: with a
//! batch of at most 4 the small-channel direct kernel (one 128×128 "kernel" per 3×3 output), with
//! more an NHWC copy plus an im2col of `batch·H·W` columns per output position. For depthwise
//! convolutions the default loops over the groups, one convolution per channel.
//!
//! Here both gradients are the textbook im2col/GEMM formulation:
//!   weight: dW_g[co, (ci,kh,kw)] += dY_b,g[co, pos] · col_b,g[(ci,kh,kw), pos]ᵀ   (summed over b)
//!   input:  col = W_gᵀ · dY_b,g, then col2im adds each column back into dX
//! with the spatial positions processed in chunks so the column buffer stays small, and direct
//! loops for depthwise convolutions (one channel per group), which have no reduction over
//! channels to give a GEMM.

use super::depthwise_flat::all_finite;
use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape, f16};

use crate::{FlexTensor, Layout};

/// Upper bound on the elements of one column buffer (the chunk of output rows adapts to it).
/// 2^18 f32 (1 MiB) stays in a core's L2 cache while gemm packs it: against 2^20 the lung U-Net's
/// forward at 128² and 256² is 17–20 % faster and its training step 5–8 % (2 threads, alternated
/// runs, PATCH.md); 2^16 and below are slower again (more, smaller GEMM calls).
const COLUMN_ELEMENTS: usize = 1 << 18;

/// Elements that gemm splits over threads (as the forward convolution does).
#[cfg(feature = "rayon")]
const GEMM_PARALLEL_WORK: usize = 96 * 96 * 96;

/// A buffer of `len` elements left unwritten, for outputs and scratch that are written in full
/// before anything reads them (the im2col columns, GEMM results with `read_dst = false`, batch
/// norm's outputs). Zeroing them cost a full extra pass each, and on freshly mapped pages the
/// kernel zeroes them again.
#[inline]
pub(crate) fn uninit_vec<T: bytemuck::Pod>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: T is plain old data (any bit pattern is a value); callers write every element
    // before reading it.
    #[allow(clippy::uninit_vec)]
    unsafe {
        v.set_len(len);
    }
    v
}

pub(super) trait Float:
    num_traits::Float + bytemuck::Pod + burn_backend::Element + Send + Sync + 'static
{
}
impl Float for f32 {}
impl Float for f64 {}
impl Float for f16 {}

/// Shapes and options of one conv2d, in the names used below.
#[derive(Clone, Copy)]
struct Geometry {
    batch: usize,
    channels_in: usize,
    in_h: usize,
    in_w: usize,
    channels_out: usize,
    groups: usize,
    /// Input channels per group.
    cpg: usize,
    /// Output channels per group.
    opg: usize,
    kernel_h: usize,
    kernel_w: usize,
    out_h: usize,
    out_w: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    fn new(x: &[usize], weight: &[usize], grad: &[usize], options: &ConvOptions<2>) -> Self {
        Self {
            batch: x[0],
            channels_in: x[1],
            in_h: x[2],
            in_w: x[3],
            channels_out: weight[0],
            groups: options.groups,
            cpg: weight[1],
            opg: weight[0] / options.groups,
            kernel_h: weight[2],
            kernel_w: weight[3],
            out_h: grad[2],
            out_w: grad[3],
            stride: options.stride,
            padding: options.padding_begin(),
            dilation: options.dilation,
        }
    }

    fn is_depthwise(&self) -> bool {
        self.groups == self.channels_in && self.cpg == 1 && self.opg == 1
    }

    /// The whole-plane depthwise plan for these shapes, if they suit it (`depthwise_flat`).
    fn flat_plan(&self) -> Option<super::depthwise_flat::Plan> {
        super::depthwise_flat::Plan::new(
            [self.kernel_h, self.kernel_w],
            self.stride,
            self.padding,
            self.dilation,
            [self.in_h, self.in_w],
            [self.out_h, self.out_w],
        )
    }

    /// These shapes for `conv3x3_direct`, if they suit it: groups 1, a 3×3 kernel, stride and
    /// dilation 1, the same padding at both ends.
    fn shape_3x3(&self) -> Option<super::conv3x3_direct::Shape3x3> {
        let same = |input: usize, out: usize, p: usize| p < 3 && input + 2 * p == out + 2;
        (self.groups == 1
            && [self.kernel_h, self.kernel_w] == [3, 3]
            && self.stride == [1, 1]
            && self.dilation == [1, 1]
            && same(self.in_h, self.out_h, self.padding[0])
            && same(self.in_w, self.out_w, self.padding[1]))
        .then_some(super::conv3x3_direct::Shape3x3 {
            batch: self.batch,
            channels_in: self.channels_in,
            channels_out: self.channels_out,
            in_h: self.in_h,
            in_w: self.in_w,
            out_h: self.out_h,
            out_w: self.out_w,
            pad_h: self.padding[0],
            pad_w: self.padding[1],
        })
    }

    fn kernel_len(&self) -> usize {
        self.kernel_h * self.kernel_w
    }

    /// How many row bands each batch item's output is split into for `threads` threads: about
    /// `threads / batch`, so that fewer items than threads still give every thread a task (one
    /// band per item otherwise), never more bands than rows.
    fn bands(&self, threads: usize) -> usize {
        threads
            .div_ceil(self.batch.max(1))
            .clamp(1, self.out_h.max(1))
    }

    /// Output rows `[start, end)` of band `band` of [`Self::bands`]`(…) = bands`: the rows split as
    /// evenly as integers allow, none empty.
    fn band_rows(&self, band: usize, bands: usize) -> core::ops::Range<usize> {
        band * self.out_h / bands..(band + 1) * self.out_h / bands
    }

    /// Output rows per column chunk.
    fn chunk_rows(&self) -> usize {
        let per_row = (self.cpg * self.kernel_len() * self.out_w).max(1);
        (COLUMN_ELEMENTS / per_row).clamp(1, self.out_h.max(1))
    }

    /// Input row of output row `oy` at kernel row `kh`, if inside the image.
    fn in_row(&self, oy: usize, kh: usize) -> Option<usize> {
        let i = (oy * self.stride[0] + kh * self.dilation[0]) as isize - self.padding[0] as isize;
        (i >= 0 && (i as usize) < self.in_h).then_some(i as usize)
    }

    /// Output columns `[lo, hi)` whose input column at kernel column `kw` is inside the image,
    /// and the input column of `lo`.
    fn col_range(&self, kw: usize) -> (usize, usize, usize) {
        let (s, off, p) = (self.stride[1], kw * self.dilation[1], self.padding[1]);
        let lo = if p > off { (p - off).div_ceil(s) } else { 0 };
        let hi = if self.in_w + p > off {
            (self.in_w + p - off).div_ceil(s)
        } else {
            0
        };
        let (lo, hi) = (lo.min(self.out_w), hi.min(self.out_w));
        if lo >= hi {
            return (0, 0, 0);
        }
        (lo, hi, lo * s + off - p)
    }
}

/// Whether the general input gradient ([`input_grad_gemm`]) splits over batch items, one thread
/// each, rather than inside each item (gemm's rayon mode, col2im over channels): with at least
/// as many items as threads this avoids a fork-join per row chunk (on 2 cores the threads spent
/// a quarter of a batch-8 U-Net step going to sleep and waking up); also with one thread, where
/// the inside-item path measured twice as slow. The forward convolution and the weight gradient
/// split fewer items than threads into row bands instead (see [`forward_gemm`]).
fn batch_parallel(batch: usize) -> bool {
    #[cfg(feature = "rayon")]
    {
        let threads = rayon::current_num_threads();
        batch >= threads
    }
    #[cfg(not(feature = "rayon"))]
    {
        let _ = batch;
        false
    }
}

/// Runs `f(index, chunk)` over `data.chunks_mut(len)`, on rayon's pool when it is enabled and
/// `par` (false inside a task that already has its thread).
fn for_each_chunk<T: Send>(
    data: &mut [T],
    len: usize,
    par: bool,
    f: impl Fn(usize, &mut [T]) + Send + Sync,
) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        if par && data.len() >= 2 * len {
            data.par_chunks_mut(len)
                .enumerate()
                .for_each(|(i, c)| f(i, c));
            return;
        }
    }
    data.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
}

pub(super) fn parallelism(m: usize, n: usize, k: usize, par: bool) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    if par && m.saturating_mul(n).saturating_mul(k) >= GEMM_PARALLEL_WORK {
        return gemm::Parallelism::Rayon(0);
    }
    let _ = (m, n, k, par);
    gemm::Parallelism::None
}

/// Σ a[i]·b[i] over equal-length slices, in eight partial sums so it vectorises.
#[inline]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] = acc[l] + x[l] * y[l];
        }
    }
    let mut sum = T::zero();
    for (x, y) in ra.iter().zip(rb) {
        sum = sum + *x * *y;
    }
    acc.iter().fold(sum, |s, &v| s + v)
}

/// Fills `col` ([len(cis)·kh·kw, rows·out_w], rows `ld` apart) with the input patches of output
/// rows `oy0..oy0 + rows`, batch `b`, group `g`, the group's input channels `cis`; zero where the
/// kernel falls on the padding.
#[allow(clippy::too_many_arguments)]
fn im2col<T: Float>(
    col: &mut [T],
    ld: usize,
    x: &[T],
    geo: &Geometry,
    b: usize,
    g: usize,
    cis: core::ops::Range<usize>,
    oy0: usize,
    rows: usize,
) {
    let kc = rows * geo.out_w;
    let plane = geo.in_h * geo.in_w;
    if geo.stride == [1, 1] && geo.in_w == geo.out_w {
        // Each tap's shifted-plane geometry is the same for every channel: worked out once per
        // call, not once per (channel, tap) row of the buffer (its divisions and row scans were
        // a third of im2col's time at 8–16 columns).
        let taps: Vec<Option<ShiftedPlane>> = (0..geo.kernel_len())
            .map(|t| ShiftedPlane::new(geo, oy0, rows, t / geo.kernel_w, t % geo.kernel_w))
            .collect();
        for (c, ci) in cis.enumerate() {
            let src = &x[(b * geo.channels_in + g * geo.cpg + ci) * plane..][..plane];
            for (t, tap) in taps.iter().enumerate() {
                let dst = &mut col[(c * taps.len() + t) * ld..][..kc];
                match tap {
                    Some(tap) => tap.fill(dst, src, geo.out_w),
                    None => dst.fill(T::zero()),
                }
            }
        }
        return;
    }
    for n in 0..cis.len() * geo.kernel_len() {
        let dst = &mut col[n * ld..][..kc];
        let ci = cis.start + n / geo.kernel_len();
        let (kh, kw) = ((n % geo.kernel_len()) / geo.kernel_w, n % geo.kernel_w);
        let src = &x[(b * geo.channels_in + g * geo.cpg + ci) * plane..][..plane];
        let (lo, hi, ix0) = geo.col_range(kw);
        for (r, row) in dst.chunks_mut(geo.out_w).enumerate() {
            let Some(iy) = geo.in_row(oy0 + r, kh) else {
                row.fill(T::zero());
                continue;
            };
            row[..lo].fill(T::zero());
            row[hi..].fill(T::zero());
            let line = &src[iy * geo.in_w..][..geo.in_w];
            if geo.stride[1] == 1 {
                row[lo..hi].copy_from_slice(&line[ix0..ix0 + (hi - lo)]);
            } else {
                for (k, v) in row[lo..hi].iter_mut().enumerate() {
                    *v = line[ix0 + k * geo.stride[1]];
                }
            }
        }
    }
}

/// One im2col row (kernel tap `kh`, `kw`) of a stride-1 convolution whose output is as wide as
/// its input, for output rows `oy0..oy0 + rows`: the valid part is the input plane shifted by a
/// constant offset, so it is one copy across rows (not one per row: at 8×8 those were 8-element
/// `memcpy` calls), then the wrapped-around edge columns and the rows that fall on the padding
/// are zeroed. `None`: the tap lies wholly on the padding.
struct ShiftedPlane {
    /// Output rows `r_lo..=r_hi` read the image; columns `lo..hi` of them.
    r_lo: usize,
    r_hi: usize,
    lo: usize,
    hi: usize,
    /// Copy `len` elements from input offset `from` to row-buffer offset `start`.
    start: usize,
    len: usize,
    from: usize,
}

impl ShiftedPlane {
    fn new(geo: &Geometry, oy0: usize, rows: usize, kh: usize, kw: usize) -> Option<Self> {
        let (lo, hi, ix0) = geo.col_range(kw);
        let valid = (0..rows).filter(|&r| geo.in_row(oy0 + r, kh).is_some());
        let (r_lo, r_hi) = (valid.clone().next()?, valid.last()?);
        if lo >= hi {
            return None;
        }
        let w = geo.out_w;
        let iy_lo = geo.in_row(oy0 + r_lo, kh)?;
        Some(Self {
            r_lo,
            r_hi,
            lo,
            hi,
            start: r_lo * w + lo,
            len: (r_hi - r_lo) * w + hi - lo,
            from: iy_lo * geo.in_w + ix0,
        })
    }

    fn fill<T: Float>(&self, dst: &mut [T], src: &[T], w: usize) {
        dst[self.start..self.start + self.len]
            .copy_from_slice(&src[self.from..self.from + self.len]);
        dst[..self.r_lo * w].fill(T::zero());
        dst[(self.r_hi + 1) * w..].fill(T::zero());
        for row in dst[self.r_lo * w..(self.r_hi + 1) * w].chunks_exact_mut(w) {
            row[..self.lo].fill(T::zero());
            row[self.hi..].fill(T::zero());
        }
    }
}

/// Adds batch item `b`'s share of dW to `acc` (column-major per group, see
/// [`weight_grad_gemm`]); `first[g]`: the group's accumulator holds nothing yet.
fn weight_grad_item<T: Float>(
    acc: &mut [T],
    first: &mut [bool],
    col: &mut [T],
    x: &[T],
    dy: &[T],
    geo: &Geometry,
    b: usize,
    rows: core::ops::Range<usize>,
) {
    let n = geo.cpg * geo.kernel_len();
    let out_plane = geo.out_h * geo.out_w;
    let chunk = geo.chunk_rows();
    for g in 0..geo.groups {
        let mut oy0 = rows.start;
        while oy0 < rows.end {
            let r = chunk.min(rows.end - oy0);
            let kc = r * geo.out_w;
            let col = &mut col[..n * kc];
            im2col(col, kc, x, geo, b, g, 0..geo.cpg, oy0, r);
            let lhs = &dy[(b * geo.channels_out + g * geo.opg) * out_plane + oy0 * geo.out_w..];
            let dst = &mut acc[g * geo.opg * n..][..geo.opg * n];
            // SAFETY: dst is opg × n column-major (column stride opg); lhs rows are opg
            // output channels of kc positions each (row stride out_plane, within dy); rhs is
            // col as kc × n, column-major (column stride kc).
            unsafe {
                gemm::gemm(
                    geo.opg,
                    n,
                    kc,
                    dst.as_mut_ptr(),
                    geo.opg as isize,
                    1,
                    !first[g],
                    lhs.as_ptr(),
                    1,
                    out_plane as isize,
                    col.as_ptr(),
                    kc as isize,
                    1,
                    T::one(),
                    T::one(),
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            first[g] = false;
            oy0 += r;
        }
    }
}

/// dW of a convolution whose planes are small (the whole batch's im2col fits
/// [`BATCH_COLUMN_ELEMENTS`]), groups 1: the im2col of every item side by side (`n` rows of
/// `batch · out_plane`, filled in parallel by input channel) and one GEMM over all positions,
/// split by gemm over the threads. Per item, the GEMM's reduction was only the plane's positions
/// (64 at 8×8), each call read and wrote the whole `co × n` accumulator for little work, and each
/// thread's accumulator was summed at the end (2.4 MB each for the U-Net's 256-channel layer).
fn weight_grad_batch<T: Float>(x: &[T], dy: &[T], geo: &Geometry) -> Vec<T> {
    let kk = geo.kernel_len();
    let n = geo.cpg * kk;
    let out_plane = geo.out_h * geo.out_w;
    let ld = geo.batch * out_plane;
    let mut col = uninit_vec::<T>(n * ld);
    for_each_chunk(&mut col, kk * ld, true, |ci, rows| {
        for b in 0..geo.batch {
            im2col(
                &mut rows[b * out_plane..],
                ld,
                x,
                geo,
                b,
                0,
                ci..ci + 1,
                0,
                geo.out_h,
            );
        }
    });
    let mut grad = uninit_vec::<T>(geo.channels_out * ld);
    for_each_chunk(&mut grad, ld, true, |m, row| {
        for (b, dst) in row.chunks_exact_mut(out_plane).enumerate() {
            dst.copy_from_slice(&dy[(b * geo.channels_out + m) * out_plane..][..out_plane]);
        }
    });
    let mut dw = uninit_vec::<T>(geo.channels_out * n);
    // dWᵀ = col · gradᵀ, written as dW row-major (dWᵀ column-major, column stride n), in full
    // (read_dst false). SAFETY: col is n × ld row-major; grad is co × ld row-major, read as
    // ld × co column-major (column stride ld).
    unsafe {
        gemm::gemm(
            n,
            geo.channels_out,
            ld,
            dw.as_mut_ptr(),
            n as isize,
            1,
            false,
            col.as_ptr(),
            1,
            ld as isize,
            grad.as_ptr(),
            ld as isize,
            1,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            parallelism(geo.channels_out, n, ld, true),
        );
    }
    dw
}

/// Elements of the column buffer of [`weight_grad_batch`].
const BATCH_COLUMN_ELEMENTS: usize = 1 << 21;

/// Output positions per plane up to which [`weight_grad_batch`] is taken: at 8×8 it cut the
/// U-Net's bottleneck dW (256 → 256 channels, batch 8) from 4.1 to 2.7–3.3 ms; at 16×16 (64 →
/// 128) the per-item path was faster (0.8–1.4 ms against 2.1–2.4).
const BATCH_MAX_PLANE: usize = 128;

/// dW for any grouping, by im2col + GEMM.
fn weight_grad_gemm<T: Float>(x: &[T], dy: &[T], geo: &Geometry) -> Vec<T> {
    let n = geo.cpg * geo.kernel_len();
    let out_plane = geo.out_h * geo.out_w;
    if geo.groups == 1
        && geo.batch > 1
        && out_plane <= BATCH_MAX_PLANE
        && n * geo.batch * out_plane <= BATCH_COLUMN_ELEMENTS
    {
        return weight_grad_batch(x, dy, geo);
    }
    let col_len = n * geo.chunk_rows() * geo.out_w;
    // Accumulated column-major (dW_gᵀ row-major, [n][opg]): both operands are contiguous along
    // the positions summed over, and with a column-major destination gemm packs dY (opg rows)
    // rather than the im2col buffer (n = cpg·kh·kw rows, several times more).
    let len = geo.channels_out * n;
    // With fewer batch items than threads, each item's output rows are split into bands (as in
    // `forward_gemm`), so that the tasks are (item, band) pairs rather than rayon inside
    // every im2col chunk and GEMM.
    #[cfg(feature = "rayon")]
    let bands = geo.bands(rayon::current_num_threads());
    #[cfg(not(feature = "rayon"))]
    let bands = 1;
    let acc = if cfg!(feature = "rayon") && geo.batch * bands > 1 {
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            // One accumulator per rayon task (about one per thread), summed at the end.
            (0..geo.batch * bands)
                .into_par_iter()
                .fold(
                    || {
                        (
                            vec![T::zero(); len],
                            vec![true; geo.groups],
                            uninit_vec::<T>(col_len),
                        )
                    },
                    |(mut acc, mut first, mut col), task| {
                        let (b, rows) = (task / bands, geo.band_rows(task % bands, bands));
                        weight_grad_item(&mut acc, &mut first, &mut col, x, dy, geo, b, rows);
                        (acc, first, col)
                    },
                )
                .map(|(acc, _, _)| acc)
                .reduce_with(|mut a, b| {
                    for (u, v) in a.iter_mut().zip(&b) {
                        *u = *u + *v;
                    }
                    a
                })
                .unwrap_or_else(|| vec![T::zero(); len])
        }
        #[cfg(not(feature = "rayon"))]
        unreachable!()
    } else {
        let (mut acc, mut first, mut col) = (
            vec![T::zero(); len],
            vec![true; geo.groups],
            uninit_vec::<T>(col_len),
        );
        for b in 0..geo.batch {
            weight_grad_item(&mut acc, &mut first, &mut col, x, dy, geo, b, 0..geo.out_h);
        }
        acc
    };
    transpose_groups(acc, geo)
}

/// dW (`[co, cpg·kh·kw]` row-major) from the accumulators of [`weight_grad_gemm`] (column-major
/// per group).
fn transpose_groups<T: Float>(acc: Vec<T>, geo: &Geometry) -> Vec<T> {
    let n = geo.cpg * geo.kernel_len();
    let len = geo.channels_out * n;
    // dW row r (output channel m of group g) gathers column m of the group's accumulator.
    let mut dw = uninit_vec::<T>(len);
    for_each_row(&mut dw, n, |r, row| {
        let (g, m) = (r / geo.opg, r % geo.opg);
        let src = &acc[g * geo.opg * n..][..geo.opg * n];
        for (k, d) in row.iter_mut().enumerate() {
            *d = src[k * geo.opg + m];
        }
    });
    dw
}

/// As [`weight_grad_gemm`]; dense 3×3 stride-1 convolutions without im2col when the CPU has the
/// kernel's instructions and the result is finite (cxrlens patch, PATCH.md: `conv3x3_direct`).
///
/// Only for at most 16 output channels (where the GEMM's destination has a single vector row) and
/// planes at least 16 wide: with more channels or narrower planes the im2col GEMM measured as fast
/// or faster.
fn weight_grad_gemm_f32(x: &[f32], dy: &[f32], geo: &Geometry) -> Vec<f32> {
    if let Some(shape) = geo
        .shape_3x3()
        .filter(|_| geo.channels_out <= 16 && geo.out_w >= 16)
    {
        #[cfg(feature = "rayon")]
        let bands = geo.bands(rayon::current_num_threads());
        #[cfg(not(feature = "rayon"))]
        let bands = 1;
        if let Some(dw) = super::conv3x3_direct::weight_grad(x, dy, &shape, bands) {
            return dw;
        }
    }
    weight_grad_gemm(x, dy, geo)
}

/// `f(r, row)` over the rows of `data` (`len` elements each), in parallel when rayon is enabled
/// and `data` is large (cxrlens patch, PATCH.md): the weight rearrangements around the
/// convolutions' GEMMs ran on the thread driving autodiff while the pool waited (about 6 ms of
/// a U-Net backward pass).
pub(super) fn for_each_row<T: Send>(
    data: &mut [T],
    len: usize,
    f: impl Fn(usize, &mut [T]) + Send + Sync,
) {
    let len = len.max(1);
    #[cfg(feature = "rayon")]
    if data.len() >= 1 << 15 {
        use rayon::prelude::*;
        data.par_chunks_mut(len)
            .enumerate()
            .for_each(|(r, row)| f(r, row));
        return;
    }
    data.chunks_mut(len)
        .enumerate()
        .for_each(|(r, row)| f(r, row));
}

/// dW of a depthwise convolution: one dot product per (channel, kernel tap, output row).
fn weight_grad_depthwise<T: Float>(x: &[T], dy: &[T], geo: &Geometry) -> Vec<T> {
    weight_grad_depthwise_with(x, dy, geo, |taps, src, grad| {
        weight_grad_depthwise_plane(taps, src, grad, geo)
    })
}

/// As [`weight_grad_depthwise`]; f32 planes with stride 1 or 2 as one dot product per tap over
/// the whole plane (cxrlens patch, PATCH.md: `depthwise_flat`), when the plane and its gradient
/// are finite.
fn weight_grad_depthwise_f32(x: &[f32], dy: &[f32], geo: &Geometry) -> Vec<f32> {
    let plan = geo.flat_plan();
    weight_grad_depthwise_with(x, dy, geo, |taps, src, grad| match &plan {
        Some(plan) if all_finite(src) && all_finite(grad) => plan.weight_grad(taps, src, grad),
        _ => weight_grad_depthwise_plane(taps, src, grad, geo),
    })
}

/// The depthwise dW loop: channels in parallel, `plane(taps, x plane, dy plane)` adds each
/// image's contribution to the channel's taps.
fn weight_grad_depthwise_with<T: Float>(
    x: &[T],
    dy: &[T],
    geo: &Geometry,
    plane_fn: impl Fn(&mut [T], &[T], &[T]) + Send + Sync,
) -> Vec<T> {
    let kk = geo.kernel_len();
    let (plane, out_plane) = (geo.in_h * geo.in_w, geo.out_h * geo.out_w);
    let mut dw = vec![T::zero(); geo.channels_out * kk];
    for_each_chunk(&mut dw, kk, true, |c, taps| {
        for b in 0..geo.batch {
            let src = &x[(b * geo.channels_in + c) * plane..][..plane];
            let grad = &dy[(b * geo.channels_out + c) * out_plane..][..out_plane];
            plane_fn(taps, src, grad);
        }
    });
    dw
}

/// One image's contribution to one channel's depthwise dW, row by row.
fn weight_grad_depthwise_plane<T: Float>(taps: &mut [T], src: &[T], grad: &[T], geo: &Geometry) {
    for (t, tap) in taps.iter_mut().enumerate() {
        let (kh, kw) = (t / geo.kernel_w, t % geo.kernel_w);
        let (lo, hi, ix0) = geo.col_range(kw);
        if lo >= hi {
            continue;
        }
        let mut sum = T::zero();
        for oy in 0..geo.out_h {
            let Some(iy) = geo.in_row(oy, kh) else {
                continue;
            };
            let g_row = &grad[oy * geo.out_w + lo..oy * geo.out_w + hi];
            let line = &src[iy * geo.in_w..][..geo.in_w];
            if geo.stride[1] == 1 {
                sum = sum + dot(g_row, &line[ix0..ix0 + (hi - lo)]);
            } else {
                for (k, &gv) in g_row.iter().enumerate() {
                    sum = sum + gv * line[ix0 + k * geo.stride[1]];
                }
            }
        }
        *tap = *tap + sum;
    }
}

/// dX for any grouping: col = W_gᵀ · dY, then col2im.
fn input_grad_item<T: Float>(
    dx: &mut [T],
    col: &mut [T],
    w: &[T],
    dy: &[T],
    geo: &Geometry,
    b: usize,
    par: bool,
) {
    let n = geo.cpg * geo.kernel_len();
    let (plane, out_plane) = (geo.in_h * geo.in_w, geo.out_h * geo.out_w);
    let rows = geo.chunk_rows();
    {
        for g in 0..geo.groups {
            let mut oy0 = 0;
            while oy0 < geo.out_h {
                let r = rows.min(geo.out_h - oy0);
                let kc = r * geo.out_w;
                let col = &mut col[..n * kc];
                let w_g = &w[g * geo.opg * n..][..geo.opg * n];
                let rhs = &dy[(b * geo.channels_out + g * geo.opg) * out_plane + oy0 * geo.out_w..];
                // SAFETY: col is n × kc; lhs is W_gᵀ (n × opg: column stride n); rhs is opg
                // output channels × kc positions (row stride out_plane, within dy).
                unsafe {
                    gemm::gemm(
                        n,
                        kc,
                        geo.opg,
                        col.as_mut_ptr(),
                        1,
                        kc as isize,
                        false,
                        w_g.as_ptr(),
                        n as isize,
                        1,
                        rhs.as_ptr(),
                        1,
                        out_plane as isize,
                        T::zero(),
                        T::one(),
                        false,
                        false,
                        false,
                        parallelism(n, kc, geo.opg, par),
                    );
                }
                let col = &*col;
                let dx_g = &mut dx[g * geo.cpg * plane..][..geo.cpg * plane];
                for_each_chunk(dx_g, plane, par, |ci, dst| {
                    for t in 0..geo.kernel_len() {
                        let (kh, kw) = (t / geo.kernel_w, t % geo.kernel_w);
                        let (lo, hi, ix0) = geo.col_range(kw);
                        if lo >= hi {
                            continue;
                        }
                        let src = &col[(ci * geo.kernel_len() + t) * kc..][..kc];
                        for rr in 0..r {
                            let Some(iy) = geo.in_row(oy0 + rr, kh) else {
                                continue;
                            };
                            add_row(
                                &mut dst[iy * geo.in_w..][..geo.in_w],
                                &src[rr * geo.out_w + lo..rr * geo.out_w + hi],
                                ix0,
                                geo.stride[1],
                                T::one(),
                            );
                        }
                    }
                });
                oy0 += r;
            }
        }
    }
}

/// Whether dX of this convolution is itself a forward convolution that [`forward_gemm`] can run
/// (see [`input_grad_as_conv`]): groups 1, stride 1, dilation 1, a kernel larger than 1×1, and
/// the same padding at both ends (`in = out + k − 1 − 2p`).
fn x_grad_is_conv(geo: &Geometry) -> bool {
    let same = |input: usize, out: usize, k: usize, p: usize| p < k && input + 2 * p == out + k - 1;
    geo.groups == 1
        && geo.stride == [1, 1]
        && geo.dilation == [1, 1]
        && geo.kernel_len() > 1
        && same(geo.in_h, geo.out_h, geo.kernel_h, geo.padding[0])
        && same(geo.in_w, geo.out_w, geo.kernel_w, geo.padding[1])
}

/// dX of a stride-1 convolution as the forward convolution of dY with the kernel transposed
/// (input ↔ output channels) and flipped, padded by `k − 1 − p`: im2col of dY and one GEMM
/// written straight into dX, instead of a GEMM into an im2col-sized buffer and col2im's
/// nine-fold scatter-add.
fn input_grad_as_conv<T: Float>(w: &[T], dy: &[T], geo: &Geometry) -> Vec<T> {
    let (co, ci, kk) = (geo.channels_out, geo.cpg, geo.kernel_len());
    // wt[i][o] is w[o][i] flipped, written row by row (input channel i).
    let mut wt = uninit_vec::<T>(w.len());
    for_each_row(&mut wt, co * kk, |i, row| {
        for (o, dst) in row.chunks_exact_mut(kk).enumerate() {
            let src = &w[(o * ci + i) * kk..][..kk];
            for (d, &v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = v;
            }
        }
    });
    let conv = Geometry {
        batch: geo.batch,
        channels_in: co,
        in_h: geo.out_h,
        in_w: geo.out_w,
        channels_out: ci,
        groups: 1,
        cpg: co,
        opg: ci,
        kernel_h: geo.kernel_h,
        kernel_w: geo.kernel_w,
        out_h: geo.in_h,
        out_w: geo.in_w,
        stride: [1, 1],
        padding: [
            geo.kernel_h - 1 - geo.padding[0],
            geo.kernel_w - 1 - geo.padding[1],
        ],
        dilation: [1, 1],
    };
    forward_gemm(dy, &wt, &conv)
}

/// dX for any grouping: col = W_gᵀ · dY, then col2im.
fn input_grad_gemm<T: Float>(w: &[T], dy: &[T], geo: &Geometry) -> Vec<T> {
    let plane = geo.in_h * geo.in_w;
    let item = geo.channels_in * plane;
    let col_len = geo.cpg * geo.kernel_len() * geo.chunk_rows() * geo.out_w;
    let mut dx = vec![T::zero(); geo.batch * item];
    if batch_parallel(geo.batch) {
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            dx.par_chunks_mut(item).enumerate().for_each_init(
                || uninit_vec::<T>(col_len),
                |col, (b, dx_b)| input_grad_item(dx_b, col, w, dy, geo, b, false),
            );
        }
    } else {
        let mut col = uninit_vec::<T>(col_len);
        for (b, dx_b) in dx.chunks_mut(item.max(1)).enumerate() {
            input_grad_item(dx_b, &mut col, w, dy, geo, b, true);
        }
    }
    dx
}

/// line[ix0 + k·stride] += scale · values[k].
#[inline]
fn add_row<T: Float>(line: &mut [T], values: &[T], ix0: usize, stride: usize, scale: T) {
    if stride == 1 {
        for (d, &v) in line[ix0..ix0 + values.len()].iter_mut().zip(values) {
            *d = *d + scale * v;
        }
    } else {
        for (k, &v) in values.iter().enumerate() {
            let d = &mut line[ix0 + k * stride];
            *d = *d + scale * v;
        }
    }
}

/// dX of a depthwise convolution: each output-gradient row scaled by its kernel tap and added
/// back where it came from.
fn input_grad_depthwise<T: Float>(w: &[T], dy: &[T], geo: &Geometry) -> Vec<T> {
    input_grad_depthwise_with(w, dy, geo, |dst, grad, taps| {
        input_grad_depthwise_plane(dst, grad, taps, geo)
    })
}

/// As [`input_grad_depthwise`]; f32 planes with stride 1 or 2 as one run per tap over the
/// whole plane (cxrlens patch, PATCH.md: `depthwise_flat`), when the channel's taps are finite.
fn input_grad_depthwise_f32(w: &[f32], dy: &[f32], geo: &Geometry) -> Vec<f32> {
    let plan = geo.flat_plan();
    input_grad_depthwise_with(w, dy, geo, |dst, grad, taps| match &plan {
        Some(plan) if all_finite(taps) => plan.input_grad(dst, grad, taps),
        _ => input_grad_depthwise_plane(dst, grad, taps, geo),
    })
}

/// The depthwise dX loop: (image, channel) planes in parallel, `plane(dx plane, dy plane, the
/// channel's taps)` writes each (into zeros).
fn input_grad_depthwise_with<T: Float>(
    w: &[T],
    dy: &[T],
    geo: &Geometry,
    plane_fn: impl Fn(&mut [T], &[T], &[T]) + Send + Sync,
) -> Vec<T> {
    let kk = geo.kernel_len();
    let (plane, out_plane) = (geo.in_h * geo.in_w, geo.out_h * geo.out_w);
    let mut dx = vec![T::zero(); geo.batch * geo.channels_in * plane];
    for_each_chunk(&mut dx, plane, true, |bc, dst| {
        let c = bc % geo.channels_in;
        plane_fn(dst, &dy[bc * out_plane..][..out_plane], &w[c * kk..][..kk]);
    });
    dx
}

/// One plane of depthwise dX, row by row, into `dst` (zeros).
fn input_grad_depthwise_plane<T: Float>(dst: &mut [T], grad: &[T], taps: &[T], geo: &Geometry) {
    for (t, &tap) in taps.iter().enumerate() {
        let (kh, kw) = (t / geo.kernel_w, t % geo.kernel_w);
        let (lo, hi, ix0) = geo.col_range(kw);
        if lo >= hi {
            continue;
        }
        for oy in 0..geo.out_h {
            let Some(iy) = geo.in_row(oy, kh) else {
                continue;
            };
            add_row(
                &mut dst[iy * geo.in_w..][..geo.in_w],
                &grad[oy * geo.out_w + lo..oy * geo.out_w + hi],
                ix0,
                geo.stride[1],
                tap,
            );
        }
    }
}

fn typed<T: Float>(
    a: &FlexTensor,
    b: &FlexTensor,
    geo: &Geometry,
    f: fn(&[T], &[T], &Geometry) -> Vec<T>,
    shape: Shape,
    dtype: DType,
) -> FlexTensor {
    let out = f(a.storage(), b.storage(), geo);
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), dtype)
}

fn dispatch(
    a: FlexTensor,
    b: FlexTensor,
    geo: &Geometry,
    shape: Shape,
    kernels: (
        fn(&[f32], &[f32], &Geometry) -> Vec<f32>,
        fn(&[f64], &[f64], &Geometry) -> Vec<f64>,
        fn(&[f16], &[f16], &Geometry) -> Vec<f16>,
    ),
) -> FlexTensor {
    let (a, b) = (a.to_contiguous(), b.to_contiguous());
    match a.dtype() {
        DType::F32 => typed(&a, &b, geo, kernels.0, shape, DType::F32),
        DType::F64 => typed(&a, &b, geo, kernels.1, shape, DType::F64),
        DType::F16 => typed(&a, &b, geo, kernels.2, shape, DType::F16),
        DType::BF16 => {
            let a = super::conv_common::convert_bf16_to_f32(&a);
            let b = super::conv_common::convert_bf16_to_f32(&b);
            let out = typed(&a, &b, geo, kernels.0, shape, DType::F32);
            super::conv_common::convert_f32_to_bf16(&out)
        }
        dtype => panic!("conv2d backward: unsupported dtype {dtype:?}"),
    }
}

/// A raw output pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SharedOut<T>(*mut T);
// SAFETY: only used by tasks whose writes do not overlap (distinct output rows), and the buffer
// outlives them (they are joined before it is returned).
unsafe impl<T: Send> Send for SharedOut<T> {}
unsafe impl<T: Send> Sync for SharedOut<T> {}

/// Output rows `rows` of batch item `b` (`y_b`: the start of its channels_out planes), groups = 1.
///
/// # Safety
/// `y_b` points to `channels_out · out_h · out_w` writable elements; no one else writes
/// these rows meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn forward_rows<T: Float>(
    y_b: *mut T,
    col: &mut [T],
    x: &[T],
    w: &[T],
    geo: &Geometry,
    b: usize,
    rows: core::ops::Range<usize>,
) {
    let n = geo.cpg * geo.kernel_len();
    let out_plane = geo.out_h * geo.out_w;
    let chunk = geo.chunk_rows();
    let mut oy0 = rows.start;
    while oy0 < rows.end {
        let r = chunk.min(rows.end - oy0);
        let kc = r * geo.out_w;
        let col = &mut col[..n * kc];
        im2col(col, kc, x, geo, b, 0, 0..geo.cpg, oy0, r);
        // SAFETY: dst holds channels_out rows of kc positions (row stride out_plane) from row
        // oy0 of plane 0, inside y_b's item; lhs is W as channels_out × n; rhs is col as n × kc.
        unsafe {
            gemm::gemm(
                geo.channels_out,
                kc,
                n,
                y_b.add(oy0 * geo.out_w),
                1,
                out_plane as isize,
                false,
                w.as_ptr(),
                1,
                n as isize,
                col.as_ptr(),
                1,
                kc as isize,
                T::zero(),
                T::one(),
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        oy0 += r;
    }
}

/// Y for groups = 1: im2col + GEMM straight into the NCHW output. With at least as many batch
/// items as threads, one task per item; with fewer (the viewer's single image), each item's
/// output rows are split into about `threads / batch` bands, one task each, rather than forking
/// inside every im2col chunk and GEMM (batch 1 at 2 threads took as long as at 1 thread, 20 ms
/// for the U-Net, against 8.5 ms per image at batch 8).
fn forward_gemm<T: Float>(x: &[T], w: &[T], geo: &Geometry) -> Vec<T> {
    // f32 3×3 convolutions with few output channels: without im2col (cxrlens patch, PATCH.md:
    // `conv3x3_direct`). Also reached from the input gradient, which runs as a convolution.
    if core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>()
        && geo.channels_out <= FORWARD_DIRECT_CHANNELS
        && geo.out_w >= 16
    {
        if let Some(shape) = geo.shape_3x3() {
            #[cfg(feature = "rayon")]
            let bands = geo.bands(rayon::current_num_threads());
            #[cfg(not(feature = "rayon"))]
            let bands = 1;
            let (xf, wf): (&[f32], &[f32]) = (bytemuck::cast_slice(x), bytemuck::cast_slice(w));
            if let Some(y) = super::conv3x3_direct::forward(xf, wf, &shape, bands) {
                let y: alloc::boxed::Box<dyn core::any::Any> = alloc::boxed::Box::new(y);
                if let Ok(y) = y.downcast::<Vec<T>>() {
                    return *y;
                }
            }
        }
    }
    forward_gemm_im2col(x, w, geo)
}

/// Output channels up to which [`forward_gemm`] takes `conv3x3_direct` (when the CPU has
/// AVX-512F): with few output channels each im2col element feeds few multiply-adds, and the
/// copies dominated (about 100 GMAC/s at 16 channels against 170 at 128, 2 threads).
const FORWARD_DIRECT_CHANNELS: usize = 64;

/// [`forward_gemm`] by im2col + GEMM.
fn forward_gemm_im2col<T: Float>(x: &[T], w: &[T], geo: &Geometry) -> Vec<T> {
    let item = geo.channels_out * geo.out_h * geo.out_w;
    let col_len = geo.cpg * geo.kernel_len() * geo.chunk_rows() * geo.out_w;
    // Every element is written by one GEMM (read_dst = false).
    let mut y = uninit_vec::<T>(geo.batch * item);
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        let threads = rayon::current_num_threads();
        if threads > 1 {
            let bands = geo.bands(threads);
            let out = SharedOut(y.as_mut_ptr());
            (0..geo.batch * bands).into_par_iter().for_each_init(
                || uninit_vec::<T>(col_len),
                |col, task| {
                    let (b, rows) = (task / bands, geo.band_rows(task % bands, bands));
                    let out = out;
                    // SAFETY: item b's planes lie inside y; tasks write distinct (item, rows).
                    unsafe { forward_rows(out.0.add(b * item), col, x, w, geo, b, rows) };
                },
            );
            return y;
        }
    }
    let mut col = uninit_vec::<T>(col_len);
    for (b, y_b) in y.chunks_mut(item.max(1)).enumerate() {
        // SAFETY: y_b is item b's planes, written by this call only.
        unsafe { forward_rows(y_b.as_mut_ptr(), &mut col, x, w, geo, b, 0..geo.out_h) };
    }
    y
}

/// Whether [`conv2d`] takes this convolution (flex's own kernels the rest: 1×1, depthwise,
/// grouped, and the small-channel direct path for ≤ 4 input channels).
pub(crate) fn takes_forward(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> bool {
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    matches!(x.dtype(), DType::F32 | DType::F64 | DType::F16)
        && x.dtype() == weight.dtype()
        && options.groups == 1
        && !options.is_asymmetric()
        && xs[1] > 4
        && ws[2] * ws[3] > 1
}

/// conv2d for the cases [`takes_forward`] accepts.
pub(crate) fn conv2d(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    let out = |i: usize, k: usize| {
        burn_backend::ops::conv::calculate_conv_output_size(
            k,
            options.stride[i],
            options.padding_begin()[i],
            options.dilation[i],
            xs[2 + i],
        )
    };
    let grad_shape = [xs[0], ws[0], out(0, ws[2]), out(1, ws[3])];
    let geo = Geometry::new(xs, ws, &grad_shape, options);
    let shape = Shape::from(grad_shape.to_vec());
    let y = dispatch(
        x,
        weight,
        &geo,
        shape,
        (
            forward_gemm::<f32>,
            forward_gemm::<f64>,
            forward_gemm::<f16>,
        ),
    );
    let Some(bias) = bias else {
        return y;
    };
    let mut y = y;
    let bias = bias.to_contiguous();
    match y.dtype() {
        DType::F32 => add_bias::<f32>(&mut y, &bias, &geo),
        DType::F64 => add_bias::<f64>(&mut y, &bias, &geo),
        _ => add_bias::<f16>(&mut y, &bias, &geo),
    }
    y
}

fn add_bias<T: Float>(y: &mut FlexTensor, bias: &FlexTensor, geo: &Geometry) {
    let bias: &[T] = bias.storage();
    let out: &mut [T] = y.storage_mut();
    for_each_chunk(out, geo.out_h * geo.out_w, true, |i, plane| {
        let v = bias[i % geo.channels_out];
        for e in plane {
            *e = *e + v;
        }
    });
}

/// Gradient of conv2d with respect to its weight (shape of `weight`).
pub(crate) fn conv2d_weight_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let geo = Geometry::new(
        x.layout().shape(),
        weight.layout().shape(),
        output_grad.layout().shape(),
        options,
    );
    let shape = weight.layout().shape().clone();
    let output_grad = output_grad.to_contiguous();
    if geo.is_depthwise() {
        dispatch(
            x,
            output_grad,
            &geo,
            shape,
            (
                weight_grad_depthwise_f32,
                weight_grad_depthwise::<f64>,
                weight_grad_depthwise::<f16>,
            ),
        )
    } else {
        dispatch(
            x,
            output_grad,
            &geo,
            shape,
            (
                weight_grad_gemm_f32,
                weight_grad_gemm::<f64>,
                weight_grad_gemm::<f16>,
            ),
        )
    }
}

/// Gradient of conv2d with respect to its input (shape of `x`).
pub(crate) fn conv2d_x_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let geo = Geometry::new(
        x.layout().shape(),
        weight.layout().shape(),
        output_grad.layout().shape(),
        options,
    );
    let shape = x.layout().shape().clone();
    if geo.is_depthwise() {
        dispatch(
            weight,
            output_grad,
            &geo,
            shape,
            (
                input_grad_depthwise_f32,
                input_grad_depthwise::<f64>,
                input_grad_depthwise::<f16>,
            ),
        )
    } else if x_grad_is_conv(&geo) {
        dispatch(
            weight,
            output_grad,
            &geo,
            shape,
            (
                input_grad_as_conv::<f32>,
                input_grad_as_conv::<f64>,
                input_grad_as_conv::<f16>,
            ),
        )
    } else {
        dispatch(
            weight,
            output_grad,
            &geo,
            shape,
            (
                input_grad_gemm::<f32>,
                input_grad_gemm::<f64>,
                input_grad_gemm::<f16>,
            ),
        )
    }
}
