//! Text burned into exported pixels: glyph outlines from a bundled font (Hack, the monospace face egui
//! ships, read with `skrifa`) filled by `vello_cpu`'s rasteriser into a coverage mask, then blended
//! into an RGBA8 buffer. No UI toolkit is involved, so exports made headless and from the viewer are
//! the same pixels.

use skrifa::instance::{LocationRef, Size};
use skrifa::outline::{DrawSettings, OutlinePen};
use skrifa::{FontRef, MetadataProvider};
use vello_cpu::kurbo::{Affine, BezPath};

/// The bundled face (Hack Regular, MIT/Bitstream Vera licence, shipped with egui's default fonts).
fn font() -> FontRef<'static> {
    // The bytes are a valid TrueType font compiled into the binary; a failure here is a build defect.
    FontRef::new(epaint_default_fonts::HACK_REGULAR).expect("bundled Hack font parses")
}

/// An RGBA8 canvas (row-major, straight alpha, opaque in practice).
pub struct Canvas<'a> {
    pub width: u32,
    pub height: u32,
    pub rgba: &'a mut [u8],
}

impl Canvas<'_> {
    /// Blends `color` with coverage `alpha` (0..=1) over pixel (x, y); outside the canvas nothing.
    pub fn blend(&mut self, x: i64, y: i64, color: [u8; 3], alpha: f32) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 || alpha <= 0.0 {
            return;
        }
        let i = 4 * (y as usize * self.width as usize + x as usize);
        let a = alpha.min(1.0);
        for (channel, &c) in self.rgba[i..i + 3].iter_mut().zip(color.iter()) {
            let base = *channel as f32;
            *channel = (base + (c as f32 - base) * a).round() as u8;
        }
        self.rgba[i + 3] = 255;
    }

    /// Fills a rectangle (clipped to the canvas) with `color` at opacity `alpha`.
    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3], alpha: f32) {
        for y in y0.max(0)..y1.min(self.height as i64) {
            for x in x0.max(0)..x1.min(self.width as i64) {
                self.blend(x, y, color, alpha);
            }
        }
    }
}

/// Size of a line of text at `px` pixels per em: (width, height) in pixels, height = ascent + descent.
pub fn measure(text: &str, px: f32) -> (f32, f32) {
    let font = font();
    let size = Size::new(px);
    let advances = font.glyph_metrics(size, LocationRef::default());
    let charmap = font.charmap();
    let width = text
        .chars()
        .map(|c| {
            let gid = charmap.map(c).unwrap_or_default();
            advances.advance_width(gid).unwrap_or(0.0)
        })
        .sum();
    let m = font.metrics(size, LocationRef::default());
    (width, m.ascent - m.descent)
}

/// Draws one line of `text` with its top-left corner at (x, y), `px` pixels per em, in `color`;
/// `shadow` adds a 1-pixel dark offset copy first (legible on bright and dark image regions, as the
/// viewer's corner text). Characters the font lacks are drawn as its missing-glyph box.
pub fn draw(
    canvas: &mut Canvas,
    text: &str,
    x: f32,
    y: f32,
    px: f32,
    color: [u8; 3],
    shadow: bool,
) {
    let Some(mask) = coverage(text, px) else {
        return;
    };
    let offset = (px / 14.0).round().max(1.0) as i64;
    let (x0, y0) = (x.floor() as i64, y.floor() as i64);
    if shadow {
        mask.blend_into(canvas, x0 + offset, y0 + offset, [0, 0, 0]);
    }
    mask.blend_into(canvas, x0, y0, color);
}

/// A rasterised line: coverage 0..=255 per pixel.
struct Coverage {
    width: usize,
    height: usize,
    alpha: Vec<u8>,
}

impl Coverage {
    fn blend_into(&self, canvas: &mut Canvas, x0: i64, y0: i64, color: [u8; 3]) {
        for y in 0..self.height {
            for x in 0..self.width {
                let a = self.alpha[y * self.width + x];
                if a > 0 {
                    canvas.blend(x0 + x as i64, y0 + y as i64, color, a as f32 / 255.0);
                }
            }
        }
    }
}

fn coverage(text: &str, px: f32) -> Option<Coverage> {
    if !(px.is_finite() && px >= 1.0) || text.is_empty() {
        return None;
    }
    let font = font();
    let size = Size::new(px);
    let location = LocationRef::default();
    let metrics = font.metrics(size, location);
    let advances = font.glyph_metrics(size, location);
    let charmap = font.charmap();
    let outlines = font.outline_glyphs();
    let mut path = BezPath::new();
    let mut pen_x = 0.0f32;
    for c in text.chars() {
        let gid = charmap.map(c).unwrap_or_default();
        if let Some(glyph) = outlines.get(gid) {
            let mut pen = PathPen {
                path: &mut path,
                dx: pen_x as f64,
                baseline: metrics.ascent as f64,
            };
            // A glyph that fails to draw is left out; the rest of the line still renders.
            let _ = glyph.draw(DrawSettings::unhinted(size, location), &mut pen);
        }
        pen_x += advances.advance_width(gid).unwrap_or(0.0);
    }
    let width = (pen_x.ceil() as usize + 2).min(u16::MAX as usize);
    let height = ((metrics.ascent - metrics.descent).ceil() as usize + 2).min(u16::MAX as usize);
    let mut ctx = vello_cpu::RenderContext::new(width as u16, height as u16);
    ctx.set_transform(Affine::IDENTITY);
    ctx.set_paint(vello_cpu::color::OpaqueColor::<vello_cpu::color::Srgb>::WHITE);
    ctx.fill_path(&path);
    let mut pixmap = vello_cpu::Pixmap::new(width as u16, height as u16);
    let mut resources = vello_cpu::Resources::new();
    ctx.render(&mut pixmap, &mut resources);
    // White premultiplied: every channel equals the coverage; alpha is it.
    let alpha = pixmap
        .data_as_u8_slice()
        .chunks_exact(4)
        .map(|p| p[3])
        .collect();
    Some(Coverage {
        width,
        height,
        alpha,
    })
}

/// skrifa's outline callbacks into a kurbo path: font units are y-up, pixels y-down.
struct PathPen<'a> {
    path: &'a mut BezPath,
    dx: f64,
    baseline: f64,
}

impl PathPen<'_> {
    fn p(&self, x: f32, y: f32) -> (f64, f64) {
        (x as f64 + self.dx, self.baseline - y as f64)
    }
}

impl OutlinePen for PathPen<'_> {
    fn move_to(&mut self, x: f32, y: f32) {
        let p = self.p(x, y);
        self.path.move_to(p);
    }
    fn line_to(&mut self, x: f32, y: f32) {
        let p = self.p(x, y);
        self.path.line_to(p);
    }
    fn quad_to(&mut self, cx0: f32, cy0: f32, x: f32, y: f32) {
        let (c, p) = (self.p(cx0, cy0), self.p(x, y));
        self.path.quad_to(c, p);
    }
    fn curve_to(&mut self, cx0: f32, cy0: f32, cx1: f32, cy1: f32, x: f32, y: f32) {
        let (c0, c1, p) = (self.p(cx0, cy0), self.p(cx1, cy1), self.p(x, y));
        self.path.curve_to(c0, c1, p);
    }
    fn close(&mut self) {
        self.path.close_path();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(w: u32, h: u32) -> Vec<u8> {
        [0u8, 0, 0, 255].repeat((w * h) as usize)
    }

    #[test]
    fn text_marks_pixels_inside_its_box_only() {
        let (w, h) = (200u32, 60u32);
        let mut rgba = blank(w, h);
        let mut canvas = Canvas {
            width: w,
            height: h,
            rgba: &mut rgba,
        };
        draw(
            &mut canvas,
            "Research",
            10.0,
            10.0,
            20.0,
            [255, 255, 0],
            false,
        );
        let (tw, th) = measure("Research", 20.0);
        let lit: Vec<(u32, u32)> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| rgba[4 * (y * w + x) as usize] > 0)
            .collect();
        assert!(lit.len() > 100, "only {} pixels drawn", lit.len());
        for (x, y) in lit {
            assert!(
                (10..=10 + tw.ceil() as u32 + 2).contains(&x)
                    && (10..=10 + th.ceil() as u32 + 2).contains(&y),
                "pixel ({x}, {y}) outside the text box"
            );
        }
        // Yellow: red and green set, blue untouched.
        assert!(rgba.chunks_exact(4).all(|p| p[2] == 0));
    }

    #[test]
    fn monospace_width_grows_with_length_and_size() {
        let (one, h) = measure("M", 20.0);
        let (ten, _) = measure("MMMMMMMMMM", 20.0);
        assert!((ten - 10.0 * one).abs() < 1e-3);
        let (big, hb) = measure("M", 40.0);
        assert!((big - 2.0 * one).abs() < 1e-3 && (hb - 2.0 * h).abs() < 1e-3);
    }
}
