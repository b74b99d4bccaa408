//! VOI (value of interest) transforms from DICOM PS3.3 C.11.2: window centre/width with the LINEAR,
//! LINEAR_EXACT and SIGMOID functions, the VOI LUT Sequence, and the final inversion (MONOCHROME1 and
//! the user's invert toggle). This is the CPU reference that `shaders/viewer.wgsl` must match.
//!
//! Inputs are modality values (after the modality LUT). Outputs are display intensities in [0, 1],
//! where 0 is black and 1 is white.

use serde::{Deserialize, Serialize};

/// The VOI LUT Function attribute (0028,1056).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoiFunction {
    #[default]
    Linear,
    LinearExact,
    Sigmoid,
}

impl VoiFunction {
    pub const ALL: [VoiFunction; 3] = [
        VoiFunction::Linear,
        VoiFunction::LinearExact,
        VoiFunction::Sigmoid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            VoiFunction::Linear => "LINEAR",
            VoiFunction::LinearExact => "LINEAR_EXACT",
            VoiFunction::Sigmoid => "SIGMOID",
        }
    }

    /// The code used by the shader's uniform (3 means "VOI LUT").
    pub fn shader_code(self) -> u32 {
        match self {
            VoiFunction::Linear => 0,
            VoiFunction::LinearExact => 1,
            VoiFunction::Sigmoid => 2,
        }
    }
}

/// A window: centre and width in modality units, plus the function that maps it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub center: f32,
    pub width: f32,
    pub function: VoiFunction,
}

impl Window {
    /// Smallest width each function accepts (PS3.3: LINEAR needs width >= 1, the others > 0).
    pub fn min_width(function: VoiFunction) -> f32 {
        match function {
            VoiFunction::Linear => 1.0,
            VoiFunction::LinearExact | VoiFunction::Sigmoid => 1e-3,
        }
    }

    /// A window spanning `[low, high]` with the LINEAR function.
    pub fn from_range(low: f32, high: f32) -> Self {
        let width = (high - low).max(1.0);
        Self {
            center: low + (high - low) / 2.0,
            width,
            function: VoiFunction::Linear,
        }
    }

    /// Applies a W/L drag: `dx_points` right widens the window, `dy_points` down raises the centre
    /// (the image gets darker), as in OHIF/Weasis. `units_per_point` scales the gesture to the data.
    pub fn dragged(self, dx_points: f32, dy_points: f32, units_per_point: f32) -> Self {
        let width = (self.width + dx_points * units_per_point).max(Self::min_width(self.function));
        Self {
            center: self.center + dy_points * units_per_point,
            width,
            ..self
        }
    }

    /// Maps a modality value to [0, 1] with this window.
    pub fn apply(&self, x: f32) -> f32 {
        let (c, w) = (self.center, self.width.max(Self::min_width(self.function)));
        match self.function {
            VoiFunction::Linear => {
                // PS3.3 C.11.2.1.2.1
                let w1 = (w - 1.0).max(f32::MIN_POSITIVE);
                if x <= c - 0.5 - w1 / 2.0 {
                    0.0
                } else if x > c - 0.5 + w1 / 2.0 {
                    1.0
                } else {
                    ((x - (c - 0.5)) / w1 + 0.5).clamp(0.0, 1.0)
                }
            }
            VoiFunction::LinearExact => {
                // PS3.3 C.11.2.1.3.2
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    1.0
                } else {
                    ((x - c) / w + 0.5).clamp(0.0, 1.0)
                }
            }
            // PS3.3 C.11.2.1.3.1
            VoiFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
        }
    }
}

/// One item of the VOI LUT Sequence (0028,3010), outputs already normalised to [0, 1].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VoiLut {
    /// First input value mapped (LUT Descriptor, second value).
    pub first_input: i32,
    /// Entries divided by 2^bits - 1.
    pub outputs: Vec<f32>,
    pub explanation: Option<String>,
}

impl VoiLut {
    /// Builds a LUT from raw entries and the descriptor's bit depth.
    pub fn from_raw(
        first_input: i32,
        entries: &[u16],
        bits: u8,
        explanation: Option<String>,
    ) -> Option<Self> {
        if entries.is_empty() || bits == 0 || bits > 16 {
            return None;
        }
        let max = ((1u32 << bits) - 1) as f32;
        let outputs = entries
            .iter()
            .map(|&e| (e as f32 / max).clamp(0.0, 1.0))
            .collect();
        Some(Self {
            first_input,
            outputs,
            explanation,
        })
    }

    /// PS3.3 C.11.2.1.1: values below the first input map to the first entry, above the last to the last.
    pub fn apply(&self, x: f32) -> f32 {
        let last = self.outputs.len() as i64 - 1;
        let index = (x.floor() as i64 - self.first_input as i64).clamp(0, last.max(0));
        self.outputs.get(index as usize).copied().unwrap_or(0.0)
    }
}

/// Which VOI transform is active.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum VoiMode {
    Window(Window),
    /// Index into the image's VOI LUTs.
    Lut(usize),
}

/// Everything needed to turn a modality value into a display intensity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisplayParams {
    pub voi: VoiMode,
    /// MONOCHROME1: minimum value is white. Applied after VOI (PS3.3 C.7.6.3.1.2).
    pub photometric_inverted: bool,
    /// The user's invert toggle (`I`), combined with the photometric inversion.
    pub user_inverted: bool,
}

impl DisplayParams {
    /// Whether the final output is flipped (MONOCHROME1 XOR the user's invert).
    pub fn output_inverted(&self) -> bool {
        self.photometric_inverted ^ self.user_inverted
    }

    /// Display intensity in [0, 1] for a modality value. `luts` are the image's VOI LUTs.
    pub fn display_value(&self, x: f32, luts: &[VoiLut]) -> f32 {
        let y = match self.voi {
            VoiMode::Window(w) => w.apply(x),
            VoiMode::Lut(i) => luts.get(i).map_or(0.0, |lut| lut.apply(x)),
        };
        if self.output_inverted() { 1.0 - y } else { y }
    }
}

/// A named window preset offered on the number keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    pub name: String,
    pub voi: VoiMode,
}

/// Presets in key order: for a colour image first its values as stored (`color_max`: the largest
/// stored value, 255 for 8 bits; the window maps 0..=max onto the display range unchanged), then the
/// file's windows, its VOI LUTs, then full range and a robust 1–99 % window.
pub fn presets(
    file_windows: &[(Window, Option<String>)],
    luts: &[VoiLut],
    stats: super::ValueStats,
    color_max: Option<f32>,
) -> Vec<Preset> {
    let mut out = Vec::new();
    if let Some(max) = color_max.filter(|m| *m > 0.0 && m.is_finite()) {
        out.push(Preset {
            name: "Colour as stored".into(),
            voi: VoiMode::Window(Window {
                center: max / 2.0,
                width: max,
                function: VoiFunction::LinearExact,
            }),
        });
    }
    for (i, (w, explanation)) in file_windows.iter().enumerate() {
        let name = explanation
            .clone()
            .unwrap_or_else(|| format!("File window {}", i + 1));
        out.push(Preset {
            name,
            voi: VoiMode::Window(*w),
        });
    }
    for (i, lut) in luts.iter().enumerate() {
        let name = lut
            .explanation
            .clone()
            .unwrap_or_else(|| format!("VOI LUT {}", i + 1));
        out.push(Preset {
            name,
            voi: VoiMode::Lut(i),
        });
    }
    out.push(Preset {
        name: "Full range".into(),
        voi: VoiMode::Window(Window::from_range(stats.min, stats.max)),
    });
    out.push(Preset {
        name: "Auto (1–99 %)".into(),
        voi: VoiMode::Window(Window::from_range(stats.p01, stats.p99)),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(center: f32, width: f32, function: VoiFunction) -> Window {
        Window {
            center,
            width,
            function,
        }
    }

    #[test]
    fn linear_matches_the_standard_breakpoints() {
        // c = 100, w = 11: lower edge at x <= 100 - 0.5 - 5 = 94.5, upper edge at x > 104.5.
        let win = w(100.0, 11.0, VoiFunction::Linear);
        assert_eq!(win.apply(94.5), 0.0);
        assert_eq!(win.apply(104.6), 1.0);
        // Midpoint c - 0.5 maps to 0.5.
        assert!((win.apply(99.5) - 0.5).abs() < 1e-6);
        // x = 97 -> (97 - 99.5)/10 + 0.5 = 0.25
        assert!((win.apply(97.0) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn linear_exact_is_a_plain_ramp() {
        let win = w(0.0, 100.0, VoiFunction::LinearExact);
        assert_eq!(win.apply(-50.0), 0.0);
        assert!((win.apply(-25.0) - 0.25).abs() < 1e-6);
        assert!((win.apply(0.0) - 0.5).abs() < 1e-6);
        assert_eq!(win.apply(50.1), 1.0);
    }

    #[test]
    fn sigmoid_is_half_at_centre_and_follows_the_formula() {
        let win = w(1000.0, 400.0, VoiFunction::Sigmoid);
        assert!((win.apply(1000.0) - 0.5).abs() < 1e-6);
        // x = c + w/4 -> 1 / (1 + e^-1)
        let expected = 1.0 / (1.0 + (-1.0f32).exp());
        assert!((win.apply(1100.0) - expected).abs() < 1e-6);
        assert!(win.apply(0.0) < 1e-3 && win.apply(2000.0) > 0.999);
    }

    #[test]
    fn voi_lut_clamps_below_and_above() {
        let lut = VoiLut::from_raw(10, &[0, 100, 200, 255], 8, None).unwrap();
        assert_eq!(lut.apply(-5.0), 0.0);
        assert!((lut.apply(11.0) - 100.0 / 255.0).abs() < 1e-6);
        assert!((lut.apply(12.7) - 200.0 / 255.0).abs() < 1e-6);
        assert_eq!(lut.apply(1000.0), 1.0);
        assert!(VoiLut::from_raw(0, &[], 8, None).is_none());
    }

    #[test]
    fn inversion_combines_photometric_and_user_toggle() {
        let win = w(50.0, 100.0, VoiFunction::LinearExact);
        let mut p = DisplayParams {
            voi: VoiMode::Window(win),
            photometric_inverted: false,
            user_inverted: false,
        };
        assert!((p.display_value(25.0, &[]) - 0.25).abs() < 1e-6);
        p.photometric_inverted = true;
        assert!((p.display_value(25.0, &[]) - 0.75).abs() < 1e-6);
        p.user_inverted = true;
        assert!((p.display_value(25.0, &[]) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn drag_widens_right_raises_centre_down_and_keeps_width_valid() {
        let win = w(100.0, 50.0, VoiFunction::Linear);
        let d = win.dragged(10.0, 5.0, 2.0);
        assert_eq!((d.center, d.width), (110.0, 70.0));
        let narrow = win.dragged(-1000.0, 0.0, 2.0);
        assert_eq!(narrow.width, 1.0);
    }

    #[test]
    fn presets_list_file_windows_first() {
        let stats = crate::imaging::ValueStats {
            min: 0.0,
            max: 1000.0,
            p01: 10.0,
            p99: 990.0,
        };
        let p = presets(
            &[(w(500.0, 200.0, VoiFunction::Linear), Some("LUNG".into()))],
            &[],
            stats,
            None,
        );
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].name, "LUNG");
        assert_eq!(p[1].voi, VoiMode::Window(Window::from_range(0.0, 1000.0)));
        // The full-range window maps the minimum to black and the maximum to white.
        let full = Window::from_range(0.0, 1000.0);
        assert_eq!(full.apply(0.0), 0.0);
        assert_eq!(full.apply(1000.0), 1.0);
        assert!((full.apply(500.0) - 0.5).abs() < 1e-3);
        // A colour image starts with its stored values unchanged: v / 255 for 8 bits.
        let p = presets(&[], &[], stats, Some(255.0));
        assert_eq!(p[0].name, "Colour as stored");
        let VoiMode::Window(c) = p[0].voi else {
            panic!("a window")
        };
        for v in [0.0f32, 1.0, 77.0, 128.0, 254.0, 255.0] {
            assert!((c.apply(v) - v / 255.0).abs() < 1e-6, "{v}");
        }
    }
}
