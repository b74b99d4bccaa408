//! Calibrated distance measurement. Pixel Spacing (0028,0030) is the spacing in the patient; Imager
//! Pixel Spacing (0018,1164) is at the detector plane (includes geometric magnification). Values that
//! are missing, zero, negative or not finite are invalid: RG1's Pixel Spacing is 0\0.

use super::view::Point;

/// Where a distance's scale comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// Row spacing (vertical) and column spacing (horizontal), in mm.
    PixelSpacing {
        row_mm: f64,
        col_mm: f64,
    },
    /// As above, at the detector plane.
    ImagerPixelSpacing {
        row_mm: f64,
        col_mm: f64,
    },
    Uncalibrated,
}

impl Calibration {
    /// Chooses Pixel Spacing when valid, else Imager Pixel Spacing when valid, else uncalibrated.
    /// Each slice is the attribute's values in file order: row spacing, then column spacing.
    pub fn choose(pixel_spacing: Option<&[f64]>, imager_pixel_spacing: Option<&[f64]>) -> Self {
        let valid = |s: Option<&[f64]>| match s {
            Some([row, col, ..])
                if row.is_finite() && col.is_finite() && *row > 0.0 && *col > 0.0 =>
            {
                Some((*row, *col))
            }
            _ => None,
        };
        if let Some((row_mm, col_mm)) = valid(pixel_spacing) {
            Calibration::PixelSpacing { row_mm, col_mm }
        } else if let Some((row_mm, col_mm)) = valid(imager_pixel_spacing) {
            Calibration::ImagerPixelSpacing { row_mm, col_mm }
        } else {
            Calibration::Uncalibrated
        }
    }

    /// Human-readable source, shown next to every measurement.
    pub fn source_label(&self) -> &'static str {
        match self {
            Calibration::PixelSpacing { .. } => "Pixel Spacing",
            Calibration::ImagerPixelSpacing { .. } => "Imager Pixel Spacing (at detector)",
            Calibration::Uncalibrated => "uncalibrated",
        }
    }

    /// Distance between two image-space points, with its unit.
    pub fn distance(&self, a: Point, b: Point) -> (f64, &'static str) {
        let (dx, dy) = ((b.x - a.x) as f64, (b.y - a.y) as f64);
        match *self {
            Calibration::PixelSpacing { row_mm, col_mm }
            | Calibration::ImagerPixelSpacing { row_mm, col_mm } => {
                (((dx * col_mm).powi(2) + (dy * row_mm).powi(2)).sqrt(), "mm")
            }
            Calibration::Uncalibrated => ((dx * dx + dy * dy).sqrt(), "px"),
        }
    }

    /// "123.4 mm (Pixel Spacing)" or "250.0 px (uncalibrated)".
    pub fn format_distance(&self, a: Point, b: Point) -> String {
        let (d, unit) = self.distance(a, b);
        format!("{d:.1} {unit} ({})", self.source_label())
    }
}

/// A distance line in image space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistanceLine {
    pub start_in_image: Point,
    pub end_in_image: Point,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_spacing_is_uncalibrated_and_falls_back_in_order() {
        assert_eq!(
            Calibration::choose(Some(&[0.0, 0.0]), None),
            Calibration::Uncalibrated
        );
        assert_eq!(
            Calibration::choose(Some(&[0.0, 0.0]), Some(&[0.2, 0.1])),
            Calibration::ImagerPixelSpacing {
                row_mm: 0.2,
                col_mm: 0.1
            }
        );
        assert_eq!(
            Calibration::choose(Some(&[0.3, 0.4]), Some(&[0.2, 0.1])),
            Calibration::PixelSpacing {
                row_mm: 0.3,
                col_mm: 0.4
            }
        );
        assert_eq!(
            Calibration::choose(Some(&[f64::NAN, 1.0]), Some(&[1.0])),
            Calibration::Uncalibrated
        );
    }

    #[test]
    fn anisotropic_spacing_uses_columns_for_x_and_rows_for_y() {
        let c = Calibration::PixelSpacing {
            row_mm: 0.5,
            col_mm: 0.25,
        };
        let (d, unit) = c.distance(Point::new(0.0, 0.0), Point::new(12.0, 0.0));
        assert_eq!((d, unit), (3.0, "mm"));
        let (d, _) = c.distance(Point::new(0.0, 0.0), Point::new(0.0, 8.0));
        assert_eq!(d, 4.0);
        let (d, unit) =
            Calibration::Uncalibrated.distance(Point::new(0.0, 0.0), Point::new(3.0, 4.0));
        assert_eq!((d, unit), (5.0, "px"));
        assert_eq!(
            c.format_distance(Point::new(0.0, 0.0), Point::new(12.0, 0.0)),
            "3.0 mm (Pixel Spacing)"
        );
    }
}
