//! The corner overlay radiologists expect: acquisition facts top-left, renderer and encoding top-right,
//! W/L and zoom bottom-left, pointer position and value bottom-right. No patient identifiers.

use egui::{Align2, Color32, FontId, Pos2, Rect, Vec2};

use super::state::ViewerState;
use crate::export::corners::{ViewFacts, corner_text};

const TEXT: Color32 = Color32::from_rgb(235, 235, 235);

/// Text with a dark shadow so it stays legible over bright and dark image regions.
pub fn shadowed(painter: &egui::Painter, pos: Pos2, align: Align2, text: &str, color: Color32) {
    let font = FontId::monospace(12.5);
    painter.text(
        pos + Vec2::new(1.0, 1.0),
        align,
        text,
        font.clone(),
        Color32::BLACK,
    );
    painter.text(pos, align, text, font, color);
}

pub fn paint(painter: &egui::Painter, rect: Rect, state: &ViewerState) {
    let margin = 8.0;
    let preset = state
        .active_preset
        .and_then(|i| state.presets.get(i))
        .map(|p| p.name.as_str());
    let corners = corner_text(
        &state.loaded.info,
        &ViewFacts {
            width: state.handle.image.width,
            height: state.handle.image.height,
            display: &state.display,
            preset,
            zoom: Some((state.view.zoom, state.view.fit_mode)),
        },
    );
    paint_lines(
        painter,
        rect.left_top() + Vec2::splat(margin),
        Align2::LEFT_TOP,
        &corners.top_left,
    );
    paint_lines(
        painter,
        rect.right_top() + Vec2::new(-margin, margin),
        Align2::RIGHT_TOP,
        &corners.top_right,
    );
    paint_lines(
        painter,
        rect.left_bottom() + Vec2::new(margin, -margin),
        Align2::LEFT_BOTTOM,
        &corners.bottom_left,
    );

    if let Some((p, v)) = state.hover {
        let units = state.loaded.info.rescale_type.as_deref().unwrap_or("");
        let rgb = state
            .handle
            .color
            .as_ref()
            .and_then(|c| c.get(p.x.floor() as i64, p.y.floor() as i64));
        let line = match rgb {
            Some([r, g, b]) => format!(
                "x {:.0}  y {:.0}  RGB {r} {g} {b}  luminance {v:.1}",
                p.x.floor(),
                p.y.floor()
            ),
            None => format!(
                "x {:.0}  y {:.0}  value {} {units}",
                p.x.floor(),
                p.y.floor(),
                v
            ),
        };
        paint_lines(
            painter,
            rect.right_bottom() + Vec2::new(-margin, -margin),
            Align2::RIGHT_BOTTOM,
            &[line],
        );
    }
}

fn paint_lines(painter: &egui::Painter, anchor: Pos2, align: Align2, lines: &[String]) {
    let line_height = 16.0;
    let n = lines.len() as f32;
    for (i, line) in lines.iter().enumerate() {
        let dy = if align.y() == egui::Align::Max {
            -(n - 1.0 - i as f32) * line_height
        } else {
            i as f32 * line_height
        };
        shadowed(painter, anchor + Vec2::new(0.0, dy), align, line, TEXT);
    }
}
