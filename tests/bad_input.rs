//! Bad and unusual input: clear errors, never a panic; absurd sizes refused from the header.

mod common;

use std::io::Write;

use common::dicom;
use cxrlens::io::write::{GreyscaleDicom, greyscale_dataset, write_greyscale_dicom};
use cxrlens::io::{LoadError, load_image};
use dicom_dictionary_std::tags;

fn small_image(pixels: &[u16]) -> GreyscaleDicom<'_> {
    GreyscaleDicom {
        width: 4,
        height: 3,
        bits_stored: 12,
        pixels,
        monochrome1: false,
        window: Some((2048.0, 4096.0)),
        pixel_spacing_mm: Some((0.2, 0.1)),
        imager_pixel_spacing_mm: None,
        sop_instance_uid: "2.25.1",
        study_instance_uid: "2.25.2",
        series_instance_uid: "2.25.3",
        instance_number: 1,
        description: "test",
    }
}

/// Writes a dataset with an Explicit VR Little Endian file meta header.
fn write_file(obj: dicom_object::InMemDicomObject, path: &std::path::Path) {
    let meta = dicom_object::FileMetaTableBuilder::new()
        .transfer_syntax(dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN);
    obj.with_meta(meta).unwrap().write_to_file(path).unwrap();
}

#[test]
fn truncated_dicom_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dicom("RG1_UNCR.dcm")).unwrap();
    let p = dir.path().join("truncated.dcm");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_image(&p).expect_err("truncated file must not load");
    assert!(
        matches!(err, LoadError::InvalidDicom(_) | LoadError::Decode { .. }),
        "{err:?}"
    );
}

#[test]
fn corrupt_compressed_stream_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(dicom("RG1_J2KR.dcm")).unwrap();
    // Overwrite the middle of the code stream with garbage, keeping the DICOM structure.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 4096] {
        *b = 0xFF;
    }
    let p = dir.path().join("corrupt.dcm");
    std::fs::write(&p, &bytes).unwrap();
    // Either the decoder notices, or it returns an image; it must not panic.
    if let Err(e) = load_image(&p) {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn non_dicom_and_empty_files_are_recognised_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.dcm");
    std::fs::write(
        &text,
        "this is a radiology report, not an image\n".repeat(10),
    )
    .unwrap();
    assert!(matches!(load_image(&text), Err(LoadError::NotRecognised)));
    let empty = dir.path().join("empty.dcm");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(load_image(&empty), Err(LoadError::Empty)));
    assert!(matches!(
        load_image(&dir.path().join("missing.dcm")),
        Err(LoadError::Io(_))
    ));
}

#[test]
fn absurd_dimensions_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let pixels = vec![0u16; 12];
    let mut obj = greyscale_dataset(&small_image(&pixels));
    // Claim 60000 × 60000 pixels (3.6 G) with 24 bytes of pixel data.
    obj.put(dicom_core::DataElement::new(
        tags::ROWS,
        dicom_core::VR::US,
        dicom_core::PrimitiveValue::from(60000u16),
    ));
    obj.put(dicom_core::DataElement::new(
        tags::COLUMNS,
        dicom_core::VR::US,
        dicom_core::PrimitiveValue::from(60000u16),
    ));
    let p = dir.path().join("huge.dcm");
    write_file(obj, &p);
    match load_image(&p) {
        Err(LoadError::TooLarge { rows, columns, .. }) => {
            assert_eq!((rows, columns), (60000, 60000))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn dicom_without_pixel_data_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let pixels = vec![0u16; 12];
    let mut obj = greyscale_dataset(&small_image(&pixels));
    obj.remove_element(tags::PIXEL_DATA);
    let p = dir.path().join("nopixels.dcm");
    write_file(obj, &p);
    assert!(
        matches!(load_image(&p), Err(LoadError::NoPixelData)),
        "{:?}",
        load_image(&p).err()
    );
}

#[test]
fn raw_implicit_dataset_without_file_meta_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u16> = (0..12).map(|i| i * 300).collect();
    let obj = greyscale_dataset(&small_image(&pixels));
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut bytes = Vec::new();
    obj.write_dataset_with_ts(&mut bytes, &ts).unwrap();
    let p = dir.path().join("raw.dcm");
    std::fs::File::create(&p)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let loaded = load_image(&p).unwrap();
    let expected: Vec<f32> = pixels.iter().map(|&v| v as f32).collect();
    assert_eq!(loaded.image.values, expected);
    assert_eq!((loaded.image.width, loaded.image.height), (4, 3));
    match &loaded.info.format {
        cxrlens::io::SourceFormat::Dicom { has_file_meta, .. } => assert!(!has_file_meta),
        f => panic!("{f:?}"),
    }
    assert_eq!(loaded.info.windows.len(), 1);
}

#[test]
fn written_dicom_round_trips_with_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u16> = (0..12).map(|i| 4095 - i * 10).collect();
    let p = dir.path().join("rt.dcm");
    write_greyscale_dicom(&p, &small_image(&pixels)).unwrap();
    let loaded = load_image(&p).unwrap();
    assert_eq!(
        loaded.image.values,
        pixels.iter().map(|&v| v as f32).collect::<Vec<_>>()
    );
    assert_eq!(
        loaded.info.calibration,
        cxrlens::imaging::measure::Calibration::PixelSpacing {
            row_mm: 0.2,
            col_mm: 0.1
        }
    );
    // Patient name is present in the file but flagged identifying in the tag list.
    let name = loaded
        .tags
        .iter()
        .find(|t| (t.group, t.element) == (0x0010, 0x0010))
        .unwrap();
    assert!(name.identifying);
}

#[test]
fn png_16_bit_keeps_its_bits() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g16.png");
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(5, 2, |x, y| {
        image::Luma([(x * 10000 + y) as u16])
    });
    img.save(&p).unwrap();
    let loaded = load_image(&p).unwrap();
    assert_eq!(loaded.info.bits_stored, 16);
    assert_eq!(loaded.image.get(4, 1), Some(40001.0));
}
