//! Colormaps for heatmap overlays, as 256-entry RGBA8 tables. The same table is uploaded to the GPU
//! (a 256×1 texture) and used by the CPU twin, so both index it identically: `round(v * 255)`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Colormap {
    #[default]
    Inferno,
    Viridis,
    Turbo,
    /// Dark to bright red (the difference view's "model heat without gaze").
    Reds,
    /// Dark to bright cyan-blue (the difference view's "gaze without model heat").
    Blues,
    /// A single colour (used for masks).
    Solid([u8; 3]),
}

impl Colormap {
    pub fn label(self) -> &'static str {
        match self {
            Colormap::Inferno => "Inferno",
            Colormap::Viridis => "Viridis",
            Colormap::Turbo => "Turbo",
            Colormap::Reds => "Reds",
            Colormap::Blues => "Blues",
            Colormap::Solid(_) => "Solid",
        }
    }

    /// The 256-entry RGBA table.
    pub fn table(self) -> Vec<[u8; 4]> {
        (0..256)
            .map(|i| {
                let t = i as f32 / 255.0;
                let rgb = match self {
                    Colormap::Inferno => poly6(t, &INFERNO),
                    Colormap::Viridis => poly6(t, &VIRIDIS),
                    Colormap::Turbo => turbo(t),
                    Colormap::Reds => [0.35 + 0.65 * t, 0.05 + 0.45 * t * t, 0.05 + 0.3 * t * t],
                    Colormap::Blues => [0.05 + 0.3 * t * t, 0.25 + 0.6 * t, 0.45 + 0.55 * t],
                    Colormap::Solid(c) => [
                        c[0] as f32 / 255.0,
                        c[1] as f32 / 255.0,
                        c[2] as f32 / 255.0,
                    ],
                };
                let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                [q(rgb[0]), q(rgb[1]), q(rgb[2]), 255]
            })
            .collect()
    }
}

/// Index into a 256-entry table for a value in [0, 1]; the shader uses the same rule.
pub fn table_index(v: f32) -> usize {
    (v.clamp(0.0, 1.0) * 255.0).round() as usize
}

// Degree-6 polynomial fits of matplotlib's maps (Matt Zucker, CC0).
const VIRIDIS: [[f32; 3]; 7] = [
    [0.277_727_33, 0.005_407_344_5, 0.334_099_8],
    [0.105_093_04, 1.404_613_5, 1.384_590_2],
    [-0.330_861_83, 0.214_847_56, 0.095_095_16],
    [-4.634_230_6, -5.799_101, -19.332_441],
    [6.228_27, 14.179_933, 56.690_55],
    [4.776_385, -13.745_145, -65.353_035],
    [-5.435_456, 4.645_852_6, 26.312_435],
];
const INFERNO: [[f32; 3]; 7] = [
    [0.000_218_940_37, 0.001_651_004_6, -0.019_480_898],
    [0.106_513_42, 0.563_956_45, 3.932_712_4],
    [11.602_493, -3.972_854, -15.942_394],
    [-41.703_995, 17.436_398, 44.354_145],
    [77.162_94, -33.402_36, -81.807_31],
    [-71.319_43, 32.626_064, 73.209_52],
    [25.131_126, -12.242_669, -23.070_325],
];

fn poly6(t: f32, c: &[[f32; 3]; 7]) -> [f32; 3] {
    let mut out = [0.0; 3];
    for (ch, o) in out.iter_mut().enumerate() {
        *o = c.iter().rev().fold(0.0, |acc, row| acc * t + row[ch]);
    }
    out
}

// Google's polynomial approximation of Turbo (Apache-2.0).
fn turbo(x: f32) -> [f32; 3] {
    let p = [1.0, x, x * x, x * x * x, x.powi(4), x.powi(5)];
    let dot = |k: [f32; 6]| k.iter().zip(p).map(|(a, b)| a * b).sum::<f32>();
    [
        dot([
            0.135_721_38,
            4.615_392_6,
            -42.660_324,
            132.131_08,
            -152.942_4,
            59.286_38,
        ]),
        dot([
            0.091_402_61,
            2.194_188_4,
            4.842_966_6,
            -14.185_033,
            4.277_298_5,
            2.829_566,
        ]),
        dot([
            0.106_673_3,
            12.641_946,
            -60.582_05,
            110.362_77,
            -89.903_11,
            27.348_25,
        ]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_known_endpoints() {
        // matplotlib inferno(0) = #000004, inferno(1) = #fcffa4; viridis(0) = #440154, viridis(1) = #fde725.
        let close = |a: [u8; 4], b: [u8; 3]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (*x as i32 - y as i32).abs() <= 6)
        };
        let inferno = Colormap::Inferno.table();
        assert!(close(inferno[0], [0x00, 0x00, 0x04]), "{:?}", inferno[0]);
        assert!(
            close(inferno[255], [0xfc, 0xff, 0xa4]),
            "{:?}",
            inferno[255]
        );
        let viridis = Colormap::Viridis.table();
        assert!(close(viridis[0], [0x44, 0x01, 0x54]), "{:?}", viridis[0]);
        assert!(
            close(viridis[255], [0xfd, 0xe7, 0x25]),
            "{:?}",
            viridis[255]
        );
        assert_eq!(Colormap::Solid([1, 2, 3]).table()[17], [1, 2, 3, 255]);
    }

    #[test]
    fn index_rounds_and_clamps() {
        assert_eq!(table_index(-1.0), 0);
        assert_eq!(table_index(0.5), 128);
        assert_eq!(table_index(2.0), 255);
    }
}
