//! The corner overlay radiologists expect: acquisition facts top-left, renderer and encoding top-right,
//! W/L and zoom bottom-left, pointer position and value bottom-right. No patient identifiers.

use egui::{Align2, Color32, FontId, Pos2, Rect, Vec2};

use super::state::ViewerState;
use crate::imaging::voi::VoiMode;

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
    let info = &state.loaded.info;
    let margin = 8.0;

    let mut top_left = Vec::new();
    let acquisition: Vec<&str> = [
        info.modality.as_deref(),
        info.body_part.as_deref(),
        info.view_position.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !acquisition.is_empty() {
        top_left.push(acquisition.join(" · "));
    }
    top_left.push(format!(
        "{} × {} px",
        state.handle.image.width, state.handle.image.height
    ));
    top_left.push(format!(
        "{} · {} of {} bits",
        info.photometric, info.bits_stored, info.bits_allocated
    ));
    if info.rescale_slope != 1.0 || info.rescale_intercept != 0.0 {
        top_left.push(format!(
            "Rescale ×{} + {}",
            info.rescale_slope, info.rescale_intercept
        ));
    }
    if info.is_color {
        top_left.push("colour (models see luminance)".into());
    }
    for line in &info.unusable_attributes {
        top_left.push(format!("file value ignored: {line}"));
    }
    paint_lines(
        painter,
        rect.left_top() + Vec2::splat(margin),
        Align2::LEFT_TOP,
        &top_left,
    );

    let top_right = vec![
        info.format.label(),
        state.loaded.info.calibration.source_label().to_string(),
    ];
    paint_lines(
        painter,
        rect.right_top() + Vec2::new(-margin, margin),
        Align2::RIGHT_TOP,
        &top_right,
    );

    let voi = match state.display.voi {
        VoiMode::Window(w) => format!(
            "W {:.0}  C {:.0}  {}",
            w.width,
            w.center,
            w.function.label()
        ),
        VoiMode::Lut(i) => format!("VOI LUT {}", i + 1),
    };
    let mut bottom_left = vec![voi];
    if let Some(p) = state.active_preset.and_then(|i| state.presets.get(i)) {
        bottom_left.push(format!("Preset: {}", p.name));
    }
    bottom_left.push(format!(
        "Zoom {:.0} %{}",
        state.view.zoom * 100.0,
        if state.view.fit_mode { " (fit)" } else { "" }
    ));
    if state.display.user_inverted {
        bottom_left.push("INVERTED".into());
    }
    paint_lines(
        painter,
        rect.left_bottom() + Vec2::new(margin, -margin),
        Align2::LEFT_BOTTOM,
        &bottom_left,
    );

    if let Some((p, v)) = state.hover {
        let units = info.rescale_type.as_deref().unwrap_or("");
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
