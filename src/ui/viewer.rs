//! The image panes: draws the image (GPU callback or CPU texture) once, or in the compare view's
//! 2–4 synchronised panes (one view transform and W/L for all); handles W/L, pan, zoom, the
//! distance tool and the region box; draws the gaze scanpath, the corner overlay and measurements.
//! Geometry is converted between image and screen space only here, through `ViewTransform`.

use egui::{Color32, PointerButton, Pos2, Rect, Sense, Stroke, Vec2};

use super::command::Tool;
use super::overlay_text;
use super::state::{PaneSpec, RegionChoice, ViewerState};
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

/// Shows the image: one pane, or the compare view's 2–4 panes sharing zoom, pan and W/L.
pub fn viewer_ui(ui: &mut egui::Ui, state: &mut ViewerState, tool: Tool, path: DrawPath) {
    let rect = ui.available_rect_before_wrap();
    ui.allocate_rect(rect, Sense::hover());
    let panes = state.panes();
    let (cols, rows) = match panes.len() {
        0 | 1 => (1, 1),
        2 => (2, 1),
        3 => (3, 1),
        _ => (2, 2),
    };
    let gap = if panes.len() > 1 { 2.0 } else { 0.0 };
    let size = Vec2::new(
        (rect.width() - gap * (cols - 1) as f32) / cols as f32,
        (rect.height() - gap * (rows - 1) as f32) / rows as f32,
    );
    for (i, spec) in panes.iter().enumerate() {
        let (c, r) = (i % cols, i / cols);
        let min = rect.min + Vec2::new(c as f32 * (size.x + gap), r as f32 * (size.y + gap));
        pane_ui(ui, Rect::from_min_size(min, size), state, tool, path, spec);
    }
}

/// One pane: the image with the spec's overlays, measurements, region box, scanpath, corner
/// overlay and (in the compare view) its title.
fn pane_ui(
    ui: &mut egui::Ui,
    rect: Rect,
    state: &mut ViewerState,
    tool: Tool,
    path: DrawPath,
    spec: &PaneSpec,
) {
    let response = ui.interact(
        rect,
        egui::Id::unique(("cxrlens-pane", spec.id)),
        Sense::click_and_drag(),
    );
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
                pane_id: spec.id,
                image: state.handle.clone(),
                settings: state.settings_for(&spec.overlays),
                image_origin_points: [origin.x, origin.y],
                zoom: state.view.zoom,
                background: [bg[0], bg[1], bg[2]],
            };
            painter.add(egui_wgpu::Callback::new_paint_callback(rect, callback));
        }
        DrawPath::Cpu => {
            let texture = if spec.id == 0 {
                state.cpu_texture.as_ref()
            } else {
                state.pane_textures[(spec.id as usize - 1).min(3)].as_ref()
            };
            if let Some(tex) = texture {
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
    paint_region(&painter, state, panel);
    if spec.scanpath {
        paint_scanpath(&painter, state, panel);
    }
    // The corner overlay once: in the single view, or in the first compare pane below its title.
    if spec.id <= 1 {
        let mut text_rect = rect;
        if spec.content.is_some() {
            text_rect.min.y += 20.0;
        }
        overlay_text::paint(&painter, text_rect, state);
    }
    if spec.content.is_some() {
        let title_rect = Rect::from_min_size(rect.min, Vec2::new(rect.width(), 20.0));
        painter.rect_filled(title_rect, 0.0, Color32::from_black_alpha(170));
        painter.text(
            title_rect.center(),
            egui::Align2::CENTER_CENTER,
            &spec.title,
            egui::FontId::proportional(12.5),
            Color32::from_rgb(230, 230, 230),
        );
    }
    if let Some(note) = &spec.note {
        let galley = painter.layout(
            note.clone(),
            egui::FontId::proportional(13.0),
            Color32::from_rgb(240, 200, 120),
            (rect.width() - 40.0).max(80.0),
        );
        let at = rect.center() - galley.size() / 2.0;
        painter.rect_filled(
            Rect::from_min_size(at, galley.size()).expand(6.0),
            4.0,
            Color32::from_black_alpha(200),
        );
        painter.galley(at, galley, Color32::WHITE);
    }
}

const REGION_COLOR: Color32 = Color32::from_rgb(120, 255, 140);

fn paint_region(painter: &egui::Painter, state: &ViewerState, panel: PanelRect) {
    let shown = state
        .pending_box
        .or(if state.region == RegionChoice::DrawnBox {
            state.region_box
        } else {
            None
        });
    let Some([x0, y0, x1, y1]) = shown else {
        return;
    };
    let a = to_pos(state.view.screen_from_image(panel, Point::new(x0, y0)));
    let b = to_pos(state.view.screen_from_image(panel, Point::new(x1, y1)));
    painter.rect_stroke(
        Rect::from_two_pos(a, b),
        0.0,
        Stroke::new(1.5, REGION_COLOR),
        egui::StrokeKind::Middle,
    );
}

/// Fixations in reading order: numbered dots sized by duration, joined by the saccades.
fn paint_scanpath(painter: &egui::Painter, state: &ViewerState, panel: PanelRect) {
    let Some(g) = &state.gaze else { return };
    let points: Vec<(Pos2, f64)> = g
        .recording
        .fixations
        .iter()
        .map(|f| {
            (
                to_pos(
                    state
                        .view
                        .screen_from_image(panel, Point::new(f.x + 0.5, f.y + 0.5)),
                ),
                f.duration_s,
            )
        })
        .collect();
    let line = Stroke::new(1.0, Color32::from_rgba_unmultiplied(255, 255, 255, 120));
    for pair in points.windows(2) {
        painter.line_segment([pair[0].0, pair[1].0], line);
    }
    for (i, (p, d)) in points.iter().enumerate() {
        let r = 5.0 + 5.0 * ((*d / 0.3).sqrt() as f32).min(2.5);
        painter.circle(
            *p,
            r,
            Color32::from_rgba_unmultiplied(255, 170, 40, 150),
            Stroke::new(1.0, Color32::from_rgb(40, 20, 0)),
        );
        painter.text(
            *p,
            egui::Align2::CENTER_CENTER,
            (i + 1).to_string(),
            egui::FontId::proportional(10.0),
            Color32::BLACK,
        );
    }
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
            Tool::Region => {
                if let Some(pos) = response.interact_pointer_pos() {
                    let p = state.view.image_from_screen(panel, to_point(pos));
                    let start = state.pending_box.map_or([p.x, p.y], |b| [b[0], b[1]]);
                    state.pending_box = Some([start[0], start[1], p.x, p.y]);
                }
            }
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
        && let Some(b) = state.pending_box.take()
    {
        let size = state.image_size();
        let clamp = |v: f32, max: f32| v.clamp(0.0, max);
        let b = [
            clamp(b[0].min(b[2]), size.x),
            clamp(b[1].min(b[3]), size.y),
            clamp(b[0].max(b[2]), size.x),
            clamp(b[1].max(b[3]), size.y),
        ];
        if b[2] - b[0] >= 2.0 && b[3] - b[1] >= 2.0 {
            state.region_box = Some(b);
            state.region = RegionChoice::DrawnBox;
            state.region_changed = true;
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
