//! DICOM Secondary Capture of an exported picture (overlays burned in): a new Series in the source's
//! Study — Patient and General Study attributes copied from the source so an archive files it beside
//! the original, new Series and SOP Instance UIDs, a Referenced Image Sequence and a Source Image
//! Sequence pointing at the source image — written as Explicit VR Little Endian RGB.

use std::path::Path;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject};
use image::RgbImage;

/// Secondary Capture Image Storage.
pub const SC_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.7";

/// Attributes copied from the source (Patient, General Study, Patient Study modules).
const COPIED: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::PATIENT_AGE,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::STUDY_DESCRIPTION,
];

/// Type 2 attributes of those modules: written empty when the source has none.
const REQUIRED_EMPTY: &[(Tag, VR)] = &[
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
];

/// A new UID under the UUID-derived root 2.25 (PS3.5 B.2): the decimal value of a random UUID.
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// What the Secondary Capture says about itself.
#[derive(Clone, Debug)]
pub struct ScDescription {
    /// Series Description, e.g. "cxrlens: lung-unet 1.1.0 mask + Grad-CAM of pneumonia-effnet 1.0.0".
    pub series_description: String,
    /// Derivation Description: what was burned in.
    pub derivation: String,
    pub software_version: String,
}

/// Builds the Secondary Capture object. `source` is the analysed image's dataset (its header is
/// enough); without one (a PNG or JPEG source) the SC starts a new Study with empty patient
/// attributes.
pub fn secondary_capture(
    picture: &RgbImage,
    source: Option<&InMemDicomObject>,
    description: &ScDescription,
    now: chrono::DateTime<chrono::Local>,
) -> Result<FileDicomObject<InMemDicomObject>, String> {
    let (w, h) = picture.dimensions();
    if w == 0 || h == 0 || w > u16::MAX as u32 || h > u16::MAX as u32 {
        return Err(format!(
            "a {w} × {h} picture cannot be stored as DICOM (rows and columns are 1 … 65535)"
        ));
    }
    let mut obj = InMemDicomObject::new_empty();
    if let Some(src) = source {
        for &tag in COPIED {
            if let Ok(Some(e)) = src.element_opt(tag) {
                obj.put(e.clone());
            }
        }
    }
    for &(tag, vr) in REQUIRED_EMPTY {
        if obj.element_opt(tag).ok().flatten().is_none() {
            obj.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
        }
    }
    let text = |obj: &mut InMemDicomObject, tag, vr, value: &str| {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    };
    if obj
        .element_opt(tags::STUDY_INSTANCE_UID)
        .ok()
        .flatten()
        .is_none()
    {
        text(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, &new_uid());
    }
    // Our own strings are ASCII; copied names keep the source's character set (copied above).
    let sop_instance = new_uid();
    let date = now.format("%Y%m%d").to_string();
    let time = now.format("%H%M%S").to_string();
    text(&mut obj, tags::SOP_CLASS_UID, VR::UI, SC_SOP_CLASS);
    text(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &sop_instance);
    text(&mut obj, tags::MODALITY, VR::CS, "OT");
    text(&mut obj, tags::CONVERSION_TYPE, VR::CS, "WSD");
    text(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, &new_uid());
    text(&mut obj, tags::SERIES_NUMBER, VR::IS, "9001");
    text(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    text(
        &mut obj,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        &truncate(&description.series_description, 64),
    );
    text(&mut obj, tags::SERIES_DATE, VR::DA, &date);
    text(&mut obj, tags::SERIES_TIME, VR::TM, &time);
    text(&mut obj, tags::CONTENT_DATE, VR::DA, &date);
    text(&mut obj, tags::CONTENT_TIME, VR::TM, &time);
    text(&mut obj, tags::INSTANCE_CREATION_DATE, VR::DA, &date);
    text(&mut obj, tags::INSTANCE_CREATION_TIME, VR::TM, &time);
    obj.put(DataElement::new(
        tags::IMAGE_TYPE,
        VR::CS,
        PrimitiveValue::Strs(["DERIVED".to_string(), "SECONDARY".to_string()].into()),
    ));
    text(&mut obj, tags::PATIENT_ORIENTATION, VR::CS, "");
    text(&mut obj, tags::BURNED_IN_ANNOTATION, VR::CS, "YES");
    text(
        &mut obj,
        tags::DERIVATION_DESCRIPTION,
        VR::ST,
        &truncate(&description.derivation, 1024),
    );
    text(
        &mut obj,
        tags::SECONDARY_CAPTURE_DEVICE_MANUFACTURER,
        VR::LO,
        "cxrlens",
    );
    text(
        &mut obj,
        tags::SECONDARY_CAPTURE_DEVICE_SOFTWARE_VERSIONS,
        VR::LO,
        &description.software_version,
    );
    text(
        &mut obj,
        tags::IMAGE_COMMENTS,
        VR::LT,
        super::RESEARCH_MARK_ASCII,
    );
    if let Some(src) = source {
        let class = crate::io::dicom::string(src, tags::SOP_CLASS_UID);
        let instance = crate::io::dicom::string(src, tags::SOP_INSTANCE_UID);
        if let (Some(class), Some(instance)) = (class, instance) {
            for seq in [tags::REFERENCED_IMAGE_SEQUENCE, tags::SOURCE_IMAGE_SEQUENCE] {
                let mut item = InMemDicomObject::new_empty();
                text(&mut item, tags::REFERENCED_SOP_CLASS_UID, VR::UI, &class);
                text(
                    &mut item,
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &instance,
                );
                obj.put(DataElement::new(
                    seq,
                    VR::SQ,
                    DataSetSequence::from(vec![item]),
                ));
            }
        }
    }
    let us = |obj: &mut InMemDicomObject, tag, v: u16| {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    };
    us(&mut obj, tags::SAMPLES_PER_PIXEL, 3);
    text(&mut obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB");
    us(&mut obj, tags::PLANAR_CONFIGURATION, 0);
    us(&mut obj, tags::ROWS, h as u16);
    us(&mut obj, tags::COLUMNS, w as u16);
    us(&mut obj, tags::BITS_ALLOCATED, 8);
    us(&mut obj, tags::BITS_STORED, 8);
    us(&mut obj, tags::HIGH_BIT, 7);
    us(&mut obj, tags::PIXEL_REPRESENTATION, 0);
    let mut pixels = picture.as_raw().clone();
    // OB values have even length (PS3.5 7.1.1).
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(pixels.into()),
    ));
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .media_storage_sop_class_uid(SC_SOP_CLASS)
            .media_storage_sop_instance_uid(sop_instance)
            .implementation_version_name("CXRLENS"),
    )
    .map_err(|e| format!("cannot build the Secondary Capture's file meta: {e}"))
}

/// Writes the object atomically.
pub fn write(path: &Path, file: &FileDicomObject<InMemDicomObject>) -> Result<(), String> {
    crate::io::write::write_with(path, |f| file.write_all(f).map_err(std::io::Error::other))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Cuts a value to a VR's maximum length (in characters; our strings are ASCII).
fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
