//! The image pane: draws the image (GPU callback or CPU texture), handles W/L, pan, zoom and the
//! distance tool, and paints the corner overlay and measurements. Geometry is converted between
//! image and screen space only here, through `ViewTransform`.

use egui::{Color32, PointerButton, Pos2, Rect, Sense, Stroke, Vec2};

use super::command::Tool;
use super::overlay_text;
use super::state::ViewerState;
use crate::imaging::measure::DistanceLine;
use crate::imaging::view::{PanelRect, Point, ViewTransform};
use crate::render::gpu::ViewerCallback;

/// How the pane is drawn this frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrawPath {
    Gpu,
    Cpu,
}

pub const BACKGROUND: Color32 = Color32::from_rgb(8, 8, 10);
const MEASURE_COLOR: Color32 = Color32::from_rgb(255, 210, 60);

fn to_point(p: Pos2) -> Point {
    Point::new(p.x, p.y)
}

fn to_pos(p: Point) -> Pos2 {
    Pos2::new(p.x, p.y)
}

pub fn panel_of(rect: Rect) -> PanelRect {
    PanelRect {
        min: to_point(rect.min),
        size: Point::new(rect.width(), rect.height()),
    }
}

/// Shows the pane: the image, its measurements and the corner overlay.
pub fn viewer_ui(ui: &mut egui::Ui, state: &mut ViewerState, tool: Tool, path: DrawPath) {
    let rect = ui.available_rect_before_wrap();
    let response = ui.allocate_rect(rect, Sense::click_and_drag());
    let panel = panel_of(rect);
    state.last_panel = Some(panel);
    if state.view.fit_mode {
        state.view = ViewTransform::fit(state.image_size(), panel);
    }

    handle_input(ui, &response, state, tool, panel);

    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 0.0, BACKGROUND);
    let origin = state.view.screen_from_image(panel, Point::new(0.0, 0.0));
    match path {
        DrawPath::Gpu => {
            let bg = BACKGROUND.to_normalized_gamma_f32();
            let callback = ViewerCallback {
                pane_id: 0,
                image: state.handle.clone(),
                settings: state.render_settings(),
                image_origin_points: [origin.x, origin.y],
                zoom: state.view.zoom,
                background: [bg[0], bg[1], bg[2]],
            };
            painter.add(egui_wgpu::Callback::new_paint_callback(rect, callback));
        }
        DrawPath::Cpu => {
            if let Some(tex) = &state.cpu_texture {
                let size = state.image_size();
                let end = state.view.screen_from_image(panel, size);
                let image_rect = Rect::from_min_max(to_pos(origin), to_pos(end));
                painter.image(
                    tex.texture.id(),
                    image_rect,
                    Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
                    Color32::WHITE,
                );
            }
        }
    }

    paint_measurements(&painter, state, panel);
    overlay_text::paint(&painter, rect, state);
}

fn handle_input(
    ui: &egui::Ui,
    response: &egui::Response,
    state: &mut ViewerState,
    tool: Tool,
    panel: PanelRect,
) {
    let (shift, scroll, zoom_delta) =
        ui.input(|i| (i.modifiers.shift, i.smooth_scroll_delta.y, i.zoom_delta()));
    let delta = response.drag_delta();

    // Pan: middle drag, shift + left drag, or the Pan tool.
    let panning = response.dragged_by(PointerButton::Middle)
        || (response.dragged_by(PointerButton::Primary) && (shift || tool == Tool::Pan));
    if panning && delta != Vec2::ZERO {
        state.view = state.view.panned(Point::new(delta.x, delta.y));
    } else if response.dragged_by(PointerButton::Secondary) && delta.y != 0.0 {
        // Right drag up zooms in, about the panel centre.
        state.view = state
            .view
            .zoomed_about(panel, panel.center(), (-delta.y * 0.01).exp());
    } else if response.dragged_by(PointerButton::Primary) {
        match tool {
            Tool::WindowLevel if delta != Vec2::ZERO => state.drag_window(delta.x, delta.y),
            Tool::Measure => {
                if let Some(pos) = response.interact_pointer_pos() {
                    let p = state.view.image_from_screen(panel, to_point(pos));
                    let start = state.pending_measurement.map_or(p, |m| m.start_in_image);
                    state.pending_measurement = Some(DistanceLine {
                        start_in_image: start,
                        end_in_image: p,
                    });
                }
            }
            _ => {}
        }
    }
    if response.drag_stopped()
        && let Some(line) = state.pending_measurement.take()
    {
        let (dx, dy) = (
            line.end_in_image.x - line.start_in_image.x,
            line.end_in_image.y - line.start_in_image.y,
        );
        if dx.hypot(dy) > 0.5 {
            state.measurements.push(line);
        }
    }

    if let Some(pos) = response.hover_pos() {
        let factor = (scroll / 200.0).exp() * zoom_delta;
        if (factor - 1.0).abs() > 1e-4 {
            state.view = state.view.zoomed_about(panel, to_point(pos), factor);
        }
        let p = state.view.image_from_screen(panel, to_point(pos));
        state.hover = state
            .handle
            .image
            .get(p.x.floor() as i64, p.y.floor() as i64)
            .map(|v| (p, v));
    } else {
        state.hover = None;
    }
}

fn paint_measurements(painter: &egui::Painter, state: &ViewerState, panel: PanelRect) {
    let calibration = state.loaded.info.calibration;
    for line in state
        .measurements
        .iter()
        .chain(state.pending_measurement.iter())
    {
        let a = to_pos(state.view.screen_from_image(panel, line.start_in_image));
        let b = to_pos(state.view.screen_from_image(panel, line.end_in_image));
        painter.line_segment([a, b], Stroke::new(1.5, MEASURE_COLOR));
        painter.circle_filled(a, 3.0, MEASURE_COLOR);
        painter.circle_filled(b, 3.0, MEASURE_COLOR);
        let label = calibration.format_distance(line.start_in_image, line.end_in_image);
        let at = b + Vec2::new(6.0, -6.0);
        overlay_text::shadowed(
            painter,
            at,
            egui::Align2::LEFT_BOTTOM,
            &label,
            MEASURE_COLOR,
        );
    }
}
