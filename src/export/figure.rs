//! An exported picture of the view: the image windowed and blended with its overlays by the CPU twin
//! of the viewer's shader (`render::cpu`, so the pixels are those the screen shows), the corner text,
//! the heatmap's colormap legend and a burned-in research-use mark.

use image::RgbImage;

use super::RESEARCH_MARK;
use super::corners::CornerText;
use super::text::{self, Canvas};
use crate::imaging::colormap::Colormap;
use crate::render::cpu::{View, render_rgba, render_view};
use crate::render::{ImageHandle, RenderSettings};

/// The heatmap's legend: its colormap from 0 (bottom) to 1 (top) and a title (method, model).
#[derive(Clone, Debug)]
pub struct Legend {
    pub colormap: Colormap,
    pub title: String,
}

/// What to export.
#[derive(Clone, Debug)]
pub struct Figure<'a> {
    pub handle: &'a ImageHandle,
    pub settings: &'a RenderSettings,
    /// The screen's view (size, pan, zoom); `None` exports at image resolution (small images
    /// enlarged by a whole factor, see `MIN_SIDE`).
    pub view: Option<View>,
    pub corners: CornerText,
    pub legend: Option<Legend>,
}

/// Text size in pixels per em: the viewer's 13 px on a screen-sized export; at image resolution
/// about 1/60 of the shorter side, so it reads the same when the picture is shown fitted.
pub fn text_px(width: u32, height: u32, screen: bool) -> f32 {
    if screen {
        13.0
    } else {
        (width.min(height) as f32 / 60.0).clamp(13.0, 96.0)
    }
}

/// An export "at image resolution" of an image whose shorter side is below this is enlarged by the
/// smallest whole factor that reaches it (each image pixel becomes k × k pixels, interpolated as
/// the viewer does), so that the text and legend do not cover a 224-pixel thumbnail.
pub const MIN_SIDE: u32 = 640;

/// The whole-number enlargement of an image-resolution export.
pub fn enlargement(width: u32, height: u32) -> u32 {
    MIN_SIDE.div_ceil(width.min(height).max(1)).max(1)
}

/// Renders the figure into an opaque RGB image.
pub fn render_figure(figure: &Figure) -> RgbImage {
    let (iw, ih) = (figure.handle.image.width, figure.handle.image.height);
    let k = enlargement(iw, ih);
    let (w, h, mut rgba) = match &figure.view {
        Some(view) => (
            view.size[0],
            view.size[1],
            render_view(figure.handle, figure.settings, view),
        ),
        None if k == 1 => (iw, ih, render_rgba(figure.handle, figure.settings)),
        None => {
            let view = View {
                size: [iw * k, ih * k],
                origin: [0.0, 0.0],
                zoom: k as f32,
                background: [0.0; 3],
            };
            (
                iw * k,
                ih * k,
                render_view(figure.handle, figure.settings, &view),
            )
        }
    };
    let px = text_px(w, h, figure.view.is_some());
    let mut canvas = Canvas {
        width: w,
        height: h,
        rgba: &mut rgba,
    };
    annotate(&mut canvas, &figure.corners, figure.legend.as_ref(), px);
    let rgb = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    // Sizes come from the render above, so the buffer always matches.
    RgbImage::from_raw(w, h, rgb).expect("buffer of width × height × 3 bytes")
}

/// Corner text, legend and the research-use mark over an already rendered view.
pub fn annotate(canvas: &mut Canvas, corners: &CornerText, legend: Option<&Legend>, px: f32) {
    const TEXT: [u8; 3] = [235, 235, 235];
    let margin = (px * 0.6).round();
    let line = (px * 1.25).round();
    let (w, h) = (canvas.width as f32, canvas.height as f32);
    for (i, l) in corners.top_left.iter().enumerate() {
        text::draw(canvas, l, margin, margin + i as f32 * line, px, TEXT, true);
    }
    // Right-aligned lines never start left of the margin (a long line is cut at the right edge).
    let right = |l: &str| (w - margin - text::measure(l, px).0).max(margin);
    for (i, l) in corners.top_right.iter().enumerate() {
        text::draw(
            canvas,
            l,
            right(l),
            margin + i as f32 * line,
            px,
            TEXT,
            true,
        );
    }
    // Bottom corners stop above the research mark's band.
    let band = line + margin;
    let bottom = |n: usize, i: usize| h - band - margin - (n - i) as f32 * line;
    let n = corners.bottom_left.len();
    for (i, l) in corners.bottom_left.iter().enumerate() {
        text::draw(canvas, l, margin, bottom(n, i), px, TEXT, true);
    }
    let n = corners.bottom_right.len();
    for (i, l) in corners.bottom_right.iter().enumerate() {
        text::draw(canvas, l, right(l), bottom(n, i), px, TEXT, true);
    }
    if let Some(legend) = legend {
        draw_legend(canvas, legend, px, margin);
    }
    // The mark: a dark band across the bottom with yellow text, centred.
    let (tw, th) = text::measure(RESEARCH_MARK, px);
    let y0 = h - band;
    canvas.fill_rect(0, y0 as i64, w as i64, h as i64, [0, 0, 0], 0.75);
    let x = ((w - tw) / 2.0).max(margin);
    text::draw(
        canvas,
        RESEARCH_MARK,
        x,
        y0 + (band - th) / 2.0,
        px,
        [255, 214, 0],
        false,
    );
}

/// A vertical colour bar at the right edge, 1 at the top and 0 at the bottom, with its title above.
fn draw_legend(canvas: &mut Canvas, legend: &Legend, px: f32, margin: f32) {
    let table = legend.colormap.table();
    let (w, h) = (canvas.width as f32, canvas.height as f32);
    let bar_w = (px * 0.9).round().max(6.0);
    let bar_h = (h * 0.35).round().max(32.0);
    let (tick_w, _) = text::measure("1.0", px);
    let x1 = w - margin - tick_w - px * 0.4;
    let x0 = x1 - bar_w;
    let y0 = ((h - bar_h) / 2.0).round();
    let y1 = y0 + bar_h;
    // Outline, then the ramp.
    canvas.fill_rect(
        x0 as i64 - 1,
        y0 as i64 - 1,
        x1 as i64 + 1,
        y1 as i64 + 1,
        [255, 255, 255],
        1.0,
    );
    for y in y0 as i64..y1 as i64 {
        let v = 1.0 - (y as f32 + 0.5 - y0) / bar_h;
        let c = table[crate::imaging::colormap::table_index(v)];
        canvas.fill_rect(x0 as i64, y, x1 as i64, y + 1, [c[0], c[1], c[2]], 1.0);
    }
    const TEXT: [u8; 3] = [235, 235, 235];
    let (_, th) = text::measure("0", px);
    text::draw(canvas, "1.0", x1 + px * 0.3, y0 - th / 2.0, px, TEXT, true);
    text::draw(canvas, "0.0", x1 + px * 0.3, y1 - th / 2.0, px, TEXT, true);
    let (title_w, _) = text::measure(&legend.title, px);
    let tx = (x1 - title_w).max(margin).min(w - margin - title_w);
    text::draw(canvas, &legend.title, tx, y0 - th * 1.8, px, TEXT, true);
}
