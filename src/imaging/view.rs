//! The view transform between image space (pixels, origin at the top-left corner of the first pixel)
//! and the viewer panel (egui points). Only the view applies `screen_from_image`; everything else is
//! stored in image space.

/// A 2-D point or vector; `x` right, `y` down.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
}

/// Smallest and largest zoom (screen points per image pixel).
pub const MIN_ZOOM: f32 = 0.01;
pub const MAX_ZOOM: f32 = 64.0;

/// Zoom and pan of one viewer pane.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewTransform {
    /// Screen points per image pixel.
    pub zoom: f32,
    /// The image point shown at the centre of the panel.
    pub center_in_image: Point,
    /// While true, the view refits whenever the panel or image size changes.
    pub fit_mode: bool,
}

impl Default for ViewTransform {
    fn default() -> Self {
        Self {
            zoom: 1.0,
            center_in_image: Point::default(),
            fit_mode: true,
        }
    }
}

/// The panel's rectangle in screen points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PanelRect {
    pub min: Point,
    pub size: Point,
}

impl PanelRect {
    pub fn center(&self) -> Point {
        Point::new(
            self.min.x + self.size.x / 2.0,
            self.min.y + self.size.y / 2.0,
        )
    }
}

impl ViewTransform {
    /// Whole image visible and centred.
    pub fn fit(image_size: Point, panel: PanelRect) -> Self {
        let zoom = if image_size.x > 0.0 && image_size.y > 0.0 {
            (panel.size.x / image_size.x).min(panel.size.y / image_size.y)
        } else {
            1.0
        };
        Self {
            zoom: zoom.clamp(MIN_ZOOM, MAX_ZOOM),
            center_in_image: Point::new(image_size.x / 2.0, image_size.y / 2.0),
            fit_mode: true,
        }
    }

    /// One image pixel per physical screen pixel, keeping the current centre.
    pub fn one_to_one(self, pixels_per_point: f32) -> Self {
        Self {
            zoom: 1.0 / pixels_per_point.max(1e-3),
            fit_mode: false,
            ..self
        }
    }

    pub fn screen_from_image(&self, panel: PanelRect, p: Point) -> Point {
        let c = panel.center();
        Point::new(
            c.x + (p.x - self.center_in_image.x) * self.zoom,
            c.y + (p.y - self.center_in_image.y) * self.zoom,
        )
    }

    pub fn image_from_screen(&self, panel: PanelRect, s: Point) -> Point {
        let c = panel.center();
        Point::new(
            self.center_in_image.x + (s.x - c.x) / self.zoom,
            self.center_in_image.y + (s.y - c.y) / self.zoom,
        )
    }

    /// Multiplies the zoom by `factor`, keeping the image point under `anchor` (screen) fixed.
    pub fn zoomed_about(self, panel: PanelRect, anchor: Point, factor: f32) -> Self {
        let under = self.image_from_screen(panel, anchor);
        let zoom = (self.zoom * factor).clamp(MIN_ZOOM, MAX_ZOOM);
        let c = panel.center();
        let center_in_image = Point::new(
            under.x - (anchor.x - c.x) / zoom,
            under.y - (anchor.y - c.y) / zoom,
        );
        Self {
            zoom,
            center_in_image,
            fit_mode: false,
        }
    }

    /// Moves the image with the pointer by `delta` screen points.
    pub fn panned(self, delta: Point) -> Self {
        let center_in_image = Point::new(
            self.center_in_image.x - delta.x / self.zoom,
            self.center_in_image.y - delta.y / self.zoom,
        );
        Self {
            center_in_image,
            fit_mode: false,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel() -> PanelRect {
        PanelRect {
            min: Point::new(10.0, 20.0),
            size: Point::new(400.0, 300.0),
        }
    }

    fn close(a: Point, b: Point) -> bool {
        (a.x - b.x).abs() < 1e-3 && (a.y - b.y).abs() < 1e-3
    }

    #[test]
    fn fit_centres_and_scales_the_limiting_side() {
        let v = ViewTransform::fit(Point::new(800.0, 300.0), panel());
        assert!((v.zoom - 0.5).abs() < 1e-6);
        // Image corners land inside the panel, left edge exactly on the panel's left edge.
        let tl = v.screen_from_image(panel(), Point::new(0.0, 0.0));
        let br = v.screen_from_image(panel(), Point::new(800.0, 300.0));
        assert!(close(tl, Point::new(10.0, 95.0)), "{tl:?}");
        assert!(close(br, Point::new(410.0, 245.0)), "{br:?}");
    }

    #[test]
    fn screen_and_image_are_inverse() {
        let v = ViewTransform {
            zoom: 2.5,
            center_in_image: Point::new(33.0, 44.0),
            fit_mode: false,
        };
        let p = Point::new(12.25, 99.5);
        assert!(close(
            v.image_from_screen(panel(), v.screen_from_image(panel(), p)),
            p
        ));
    }

    #[test]
    fn zoom_keeps_the_anchor_fixed_and_pan_follows_pointer() {
        let v = ViewTransform::fit(Point::new(1000.0, 1000.0), panel());
        let anchor = Point::new(100.0, 80.0);
        let before = v.image_from_screen(panel(), anchor);
        let z = v.zoomed_about(panel(), anchor, 3.0);
        assert!(close(z.image_from_screen(panel(), anchor), before));
        assert!(!z.fit_mode);
        let p = Point::new(500.0, 500.0);
        let s0 = z.screen_from_image(panel(), p);
        let moved = z.panned(Point::new(7.0, -3.0));
        let s1 = moved.screen_from_image(panel(), p);
        assert!(close(
            Point::new(s1.x - s0.x, s1.y - s0.y),
            Point::new(7.0, -3.0)
        ));
    }

    #[test]
    fn one_to_one_maps_a_pixel_to_a_physical_pixel() {
        let v = ViewTransform::fit(Point::new(1000.0, 1000.0), panel()).one_to_one(2.0);
        assert!((v.zoom - 0.5).abs() < 1e-6);
    }
}
