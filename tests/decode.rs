//! Decoding every shared chest DICOM with dicom-rs, against the uncompressed reference pixels.

mod common;

use common::{FAKE_MONO1, RSNA, SIIM, dicom};
use cxrlens::imaging::voi::{DisplayParams, VoiMode};
use cxrlens::imaging::{VoiFunction, Window};
use cxrlens::io::{LoadedImage, SourceFormat, load_image};

fn load(name: &str) -> LoadedImage {
    load_image(&dicom(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn max_abs_diff(a: &LoadedImage, b: &LoadedImage) -> f32 {
    assert_eq!(
        (a.image.width, a.image.height),
        (b.image.width, b.image.height)
    );
    a.image
        .values
        .iter()
        .zip(&b.image.values)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn lossless_transcodes_match_the_uncompressed_reference_exactly() {
    let reference = load("RG1_UNCR.dcm");
    assert_eq!(
        (reference.image.width, reference.image.height),
        (1841, 1955)
    );
    assert_eq!(reference.info.photometric, "MONOCHROME1");
    assert_eq!(reference.info.bits_stored, 15);
    assert_eq!((reference.stats.min, reference.stats.max), (874.0, 26479.0));
    for name in [
        "RG1_Deflated_dcmtk.dcm",
        "RG1_ExplicitBigEndian_dcmtk.dcm",
        "RG1_ImplicitVRLittleEndian_dcmtk.dcm",
        "RG1_RLE_dcmtk.dcm",
        "RG1_JPLL-SV1_dcmtk.dcm",
        "RG1_JLSL_dcmtk.dcm",
        "RG1_J2KR.dcm",
    ] {
        let decoded = load(name);
        assert!(
            matches!(decoded.info.format, SourceFormat::Dicom { .. }),
            "{name}"
        );
        assert_eq!(
            decoded.image.values, reference.image.values,
            "{name} differs from RG1_UNCR"
        );
        assert!(decoded.info.photometric_inverted, "{name} is MONOCHROME1");
    }
}

/// NEAR from the JPEG-LS start-of-scan header in the first pixel data fragment (ITU-T T.87 C.2.3).
fn jpeg_ls_near(path: &std::path::Path) -> u8 {
    use dicom_core::value::Value;
    let obj = dicom_object::open_file(path).unwrap();
    let elem = obj.element(dicom_dictionary_std::tags::PIXEL_DATA).unwrap();
    let Value::PixelSequence(seq) = elem.value() else {
        panic!("not encapsulated")
    };
    let frag = &seq.fragments()[0];
    let sos = frag
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("no SOS marker");
    let components = frag[sos + 4] as usize;
    frag[sos + 5 + 2 * components]
}

#[test]
fn jpeg_ls_near_lossless_is_within_its_declared_near() {
    let reference = load("RG1_UNCR.dcm");
    let path = dicom("RG1_JLSN.dcm");
    let near = jpeg_ls_near(&path);
    assert!(near > 0, "RG1_JLSN should be near-lossless");
    let decoded = load_image(&path).unwrap();
    let diff = max_abs_diff(&decoded, &reference);
    eprintln!("RG1_JLSN: NEAR {near}, max |diff| vs UNCR {diff}");
    assert!(
        diff <= near as f32,
        "max |diff| {diff} exceeds declared NEAR {near}"
    );
    assert!(
        diff > 0.0,
        "a near-lossless file decoding exactly would suggest it was not decoded"
    );
}

#[test]
fn lossy_jpeg2000_matches_its_decompressed_reference_and_is_close_to_the_original() {
    let lossy = load("RG1_J2KI.dcm");
    // RG1_UNCI is the NEMA reference decompression of the lossy file.
    let unci = load("RG1_UNCI.dcm");
    let vs_unci = max_abs_diff(&lossy, &unci);
    assert!(
        vs_unci <= 1.0,
        "J2KI vs UNCI max |diff| {vs_unci} (stated tolerance 1)"
    );
    // Against the original: RMSE under 0.5 % of the 15-bit range (stated tolerance).
    let original = load("RG1_UNCR.dcm");
    let n = original.image.values.len() as f64;
    let mse: f64 = lossy
        .image
        .values
        .iter()
        .zip(&original.image.values)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / n;
    let rmse = mse.sqrt();
    eprintln!("RG1_J2KI: max |diff| vs UNCI {vs_unci}, RMSE vs UNCR {rmse:.2}");
    assert!(rmse < 0.005 * 32768.0, "J2KI RMSE {rmse}");
    assert!(rmse > 0.0, "lossy file decoded identical to the original");
}

#[test]
fn jpeg_baseline_files_decode_with_their_photometric() {
    let rsna = load(RSNA);
    assert_eq!((rsna.image.width, rsna.image.height), (1024, 1024));
    assert_eq!(rsna.info.photometric, "MONOCHROME2");
    assert_eq!(rsna.info.bits_stored, 8);
    assert!(rsna.stats.max <= 255.0 && rsna.stats.max > 200.0);

    let siim = load(SIIM);
    let fake = load(FAKE_MONO1);
    // Same pixels, only the photometric tag differs.
    assert_eq!(siim.image.values, fake.image.values);
    assert!(!siim.info.photometric_inverted && fake.info.photometric_inverted);
    let window = VoiMode::Window(Window {
        center: 127.5,
        width: 256.0,
        function: VoiFunction::Linear,
    });
    let mono2 = DisplayParams {
        voi: window,
        photometric_inverted: false,
        user_inverted: false,
    };
    let mono1 = DisplayParams {
        photometric_inverted: true,
        ..mono2
    };
    for &v in siim.image.values.iter().step_by(997) {
        let a = mono2.display_value(v, &[]);
        let b = mono1.display_value(v, &[]);
        assert!(
            (a + b - 1.0).abs() < 1e-6,
            "MONOCHROME1 must display inverted"
        );
    }
}

#[test]
fn rg1_spacing_is_uncalibrated_and_rsna_is_calibrated() {
    use cxrlens::imaging::measure::Calibration;
    assert_eq!(
        load("RG1_UNCR.dcm").info.calibration,
        Calibration::Uncalibrated
    );
    match load(RSNA).info.calibration {
        Calibration::PixelSpacing { row_mm, col_mm } => {
            assert!((row_mm - 0.168).abs() < 1e-3 && (col_mm - 0.168).abs() < 1e-3)
        }
        other => panic!("expected Pixel Spacing, got {other:?}"),
    }
}
