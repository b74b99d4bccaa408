//! Resampling between image space and a model's square input grid.
//!
//! Downsampling averages the source pixels each target pixel covers (area/box filter, no aliasing);
//! upsampling is bilinear with pixel centres aligned (the convention of `align_corners = false`).
//! Both map the whole source rectangle onto the whole target rectangle, so a model output resized
//! back lands exactly on the pixels it was computed from.

/// Bilinear resize of a row-major `width × height` grid to `out_width × out_height`.
pub fn resize_bilinear(
    values: &[f32],
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
) -> Vec<f32> {
    let mut out = vec![0.0_f32; out_width * out_height];
    if width == 0 || height == 0 || values.len() < width * height {
        return out;
    }
    let sx = width as f32 / out_width as f32;
    let sy = height as f32 / out_height as f32;
    let xs: Vec<(usize, usize, f32)> = (0..out_width)
        .map(|x| {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (width - 1) as f32);
            let x0 = fx.floor() as usize;
            (x0, (x0 + 1).min(width - 1), fx - x0 as f32)
        })
        .collect();
    for y in 0..out_height {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (height - 1) as f32);
        let y0 = fy.floor() as usize;
        let y1 = (y0 + 1).min(height - 1);
        let ty = fy - y0 as f32;
        let row0 = &values[y0 * width..(y0 + 1) * width];
        let row1 = &values[y1 * width..(y1 + 1) * width];
        for (o, &(x0, x1, tx)) in out[y * out_width..(y + 1) * out_width].iter_mut().zip(&xs) {
            let top = row0[x0] + (row0[x1] - row0[x0]) * tx;
            let bottom = row1[x0] + (row1[x1] - row1[x0]) * tx;
            *o = top + (bottom - top) * ty;
        }
    }
    out
}

/// Area-average resize (for shrinking); falls back to bilinear where the target is larger.
pub fn resize_area(
    values: &[f32],
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
) -> Vec<f32> {
    if out_width > width || out_height > height || values.len() < width * height {
        return resize_bilinear(values, width, height, out_width, out_height);
    }
    let sx = width as f64 / out_width as f64;
    let sy = height as f64 / out_height as f64;
    // Horizontal pass then vertical pass, each with fractional coverage at the edges.
    let spans = |n_out: usize, scale: f64, n_in: usize| -> Vec<Vec<(usize, f32)>> {
        (0..n_out)
            .map(|o| {
                let start = o as f64 * scale;
                let end = ((o + 1) as f64 * scale).min(n_in as f64);
                let mut taps = Vec::new();
                let mut i = start.floor() as usize;
                while (i as f64) < end && i < n_in {
                    let lo = start.max(i as f64);
                    let hi = end.min((i + 1) as f64);
                    if hi > lo {
                        taps.push((i, ((hi - lo) / (end - start)) as f32));
                    }
                    i += 1;
                }
                taps
            })
            .collect()
    };
    let xspans = spans(out_width, sx, width);
    let yspans = spans(out_height, sy, height);
    let mut horizontal = vec![0.0_f32; out_width * height];
    for y in 0..height {
        let row = &values[y * width..(y + 1) * width];
        for (x, taps) in xspans.iter().enumerate() {
            horizontal[y * out_width + x] = taps.iter().map(|&(i, w)| row[i] * w).sum();
        }
    }
    let mut out = vec![0.0_f32; out_width * out_height];
    for (y, taps) in yspans.iter().enumerate() {
        for x in 0..out_width {
            out[y * out_width + x] = taps
                .iter()
                .map(|&(i, w)| horizontal[i * out_width + x] * w)
                .sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_average_of_blocks_is_the_block_mean() {
        // 4×2 → 2×1: each output is the mean of a 2×2 block.
        let v = [1.0, 3.0, 10.0, 20.0, 5.0, 7.0, 30.0, 40.0];
        let out = resize_area(&v, 4, 2, 2, 1);
        assert_eq!(out, vec![4.0, 25.0]);
    }

    #[test]
    fn area_handles_fractional_coverage() {
        // 3 → 2: output 0 covers pixel 0 fully and half of pixel 1.
        let out = resize_area(&[0.0, 3.0, 6.0], 3, 1, 2, 1);
        assert!((out[0] - 1.0).abs() < 1e-6, "{out:?}");
        assert!((out[1] - 5.0).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn bilinear_preserves_constants_and_interpolates_ramps() {
        let out = resize_bilinear(&[2.0; 4], 2, 2, 5, 3);
        assert!(out.iter().all(|&v| (v - 2.0).abs() < 1e-6));
        // 2 → 4 on [0, 1]: centres at 0.25-pixel steps → 0, 0.25, 0.75, 1.
        let out = resize_bilinear(&[0.0, 1.0], 2, 1, 4, 1);
        let expected = [0.0, 0.25, 0.75, 1.0];
        for (o, e) in out.iter().zip(expected) {
            assert!((o - e).abs() < 1e-6, "{out:?}");
        }
    }
}
