//! Folder and DICOMDIR scanning.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cxrlens::io::study::scan_folder;
use cxrlens::io::write::{GreyscaleDicom, write_greyscale_dicom};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

fn write_instance(path: &std::path::Path, series: &str, number: i32) {
    let pixels = vec![100u16; 16];
    let img = GreyscaleDicom {
        width: 4,
        height: 4,
        bits_stored: 12,
        pixels: &pixels,
        monochrome1: false,
        window: None,
        pixel_spacing_mm: None,
        imager_pixel_spacing_mm: None,
        sop_instance_uid: &format!("2.25.{number}"),
        study_instance_uid: "2.25.99",
        series_instance_uid: series,
        instance_number: number,
        description: "study",
    };
    write_greyscale_dicom(path, &img).unwrap();
}

fn record(kind: &str, extra: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::DIRECTORY_RECORD_TYPE,
        VR::CS,
        PrimitiveValue::from(kind),
    ));
    for e in extra {
        item.put(e);
    }
    item
}

#[test]
fn folder_scan_groups_by_series_and_orders_by_instance_number() {
    let dir = tempfile::tempdir().unwrap();
    write_instance(&dir.path().join("c.dcm"), "2.25.7", 2);
    write_instance(&dir.path().join("a.dcm"), "2.25.7", 1);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write_instance(&dir.path().join("sub/b.dcm"), "2.25.8", 1);
    std::fs::write(dir.path().join("broken.dcm"), b"DICM-not-really").unwrap();
    let tree = scan_folder(dir.path(), &Arc::new(AtomicBool::new(false)));
    assert!(!tree.from_dicomdir);
    assert_eq!(tree.studies.len(), 1);
    assert_eq!(tree.studies[0].series.len(), 2);
    let first_series: Vec<&str> = tree.studies[0].series[0]
        .instances
        .iter()
        .map(|i| i.file_name.as_str())
        .collect();
    assert_eq!(first_series, ["a.dcm", "c.dcm"]);
    assert_eq!(tree.image_count(), 3);
}

#[test]
fn cancelled_scan_stops_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write_instance(&dir.path().join("a.dcm"), "2.25.7", 1);
    let tree = scan_folder(dir.path(), &Arc::new(AtomicBool::new(true)));
    assert_eq!(tree.image_count(), 0);
    assert!(tree.problems.iter().any(|p| p.contains("cancelled")));
}

#[test]
fn dicomdir_records_become_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("IMG")).unwrap();
    write_instance(&dir.path().join("IMG/A001"), "2.25.7", 1);
    write_instance(&dir.path().join("IMG/A002"), "2.25.7", 2);
    let file_id = |name: &str| {
        DataElement::new(
            tags::REFERENCED_FILE_ID,
            VR::CS,
            PrimitiveValue::Strs(["IMG".to_string(), name.to_string()].into_iter().collect()),
        )
    };
    let items = vec![
        record("PATIENT", vec![]),
        record(
            "STUDY",
            vec![
                DataElement::new(
                    tags::STUDY_INSTANCE_UID,
                    VR::UI,
                    PrimitiveValue::from("2.25.99"),
                ),
                DataElement::new(
                    tags::STUDY_DESCRIPTION,
                    VR::LO,
                    PrimitiveValue::from("CHEST PA"),
                ),
            ],
        ),
        record(
            "SERIES",
            vec![
                DataElement::new(
                    tags::SERIES_INSTANCE_UID,
                    VR::UI,
                    PrimitiveValue::from("2.25.7"),
                ),
                DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("CR")),
            ],
        ),
        record(
            "IMAGE",
            vec![
                file_id("A001"),
                DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from("1")),
            ],
        ),
        record(
            "IMAGE",
            vec![
                file_id("A002"),
                DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from("2")),
            ],
        ),
    ];
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::DIRECTORY_RECORD_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(items),
    ));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(
                    dicom_dictionary_std::uids::MEDIA_STORAGE_DIRECTORY_STORAGE,
                )
                .media_storage_sop_instance_uid("2.25.5"),
        )
        .unwrap();
    file.write_to_file(dir.path().join("DICOMDIR")).unwrap();
    // A stray file not in the DICOMDIR is not listed: the directory is authoritative.
    write_instance(&dir.path().join("stray.dcm"), "2.25.8", 1);

    let tree = scan_folder(dir.path(), &Arc::new(AtomicBool::new(false)));
    assert!(tree.from_dicomdir, "{:?}", tree.problems);
    assert_eq!(tree.studies.len(), 1);
    assert_eq!(tree.studies[0].description.as_deref(), Some("CHEST PA"));
    let paths: Vec<_> = tree.all_images().map(|i| i.path.clone()).collect();
    assert_eq!(
        paths,
        vec![dir.path().join("IMG/A001"), dir.path().join("IMG/A002")]
    );
    assert!(paths.iter().all(|p| cxrlens::io::load_image(p).is_ok()));
}
