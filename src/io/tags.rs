//! The flat list of elements shown by the tag browser, with identifying attributes marked so the UI
//! can hide them until the user reveals them (PS3.15 Annex E, Basic Application Level Confidentiality
//! Profile, simplified: the patient group, people, institutions, dates/times and instance UIDs).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::value::Value;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

/// One row of the tag browser.
#[derive(Clone, Debug, PartialEq)]
pub struct TagRow {
    pub group: u16,
    pub element: u16,
    /// Nesting depth (0 = top level, items of a sequence are one deeper).
    pub depth: u8,
    pub name: String,
    pub vr: String,
    pub value: String,
    /// Identifies the patient or the people/places involved; hidden until revealed.
    pub identifying: bool,
}

impl TagRow {
    pub fn tag_label(&self) -> String {
        format!("({:04X},{:04X})", self.group, self.element)
    }
}

const MAX_VALUE_CHARS: usize = 160;
const MAX_DEPTH: u8 = 4;

/// Whether an attribute identifies the patient, staff, institution, or the study in time.
pub fn is_identifying(tag: Tag, vr: VR) -> bool {
    if tag.group() == 0x0010 {
        return true; // the whole Patient module
    }
    if matches!(vr, VR::PN | VR::DA | VR::DT | VR::TM) {
        return true; // every person name, date and time
    }
    const LISTED: &[(u16, u16)] = &[
        (0x0002, 0x0003), // Media Storage SOP Instance UID
        (0x0008, 0x0018), // SOP Instance UID
        (0x0008, 0x0050), // Accession Number
        (0x0008, 0x0080), // Institution Name
        (0x0008, 0x0081), // Institution Address
        (0x0008, 0x0092), // Referring Physician's Address
        (0x0008, 0x0094), // Referring Physician's Telephone Numbers
        (0x0008, 0x1010), // Station Name
        (0x0008, 0x1040), // Institutional Department Name
        (0x0018, 0x1000), // Device Serial Number
        (0x0020, 0x000D), // Study Instance UID
        (0x0020, 0x000E), // Series Instance UID
        (0x0020, 0x0010), // Study ID
        (0x0020, 0x0052), // Frame of Reference UID
        (0x0020, 0x4000), // Image Comments
        (0x0032, 0x1032), // Requesting Physician
        (0x0038, 0x0010), // Admission ID
        (0x0040, 0x0253), // Performed Procedure Step ID
        (0x0040, 0xA124), // UID
    ];
    LISTED.contains(&(tag.group(), tag.element()))
}

/// All elements of the file (meta group first), sequences expanded up to a few levels.
pub fn tag_rows(obj: &DefaultDicomObject) -> Vec<TagRow> {
    let mut rows = Vec::new();
    let meta = obj.meta();
    for (element, vr, value) in [
        (0x0002u16, VR::UI, meta.media_storage_sop_class_uid()),
        (0x0003, VR::UI, meta.media_storage_sop_instance_uid()),
        (0x0010, VR::UI, meta.transfer_syntax()),
        (0x0012, VR::UI, meta.implementation_class_uid()),
    ] {
        let tag = Tag(0x0002, element);
        rows.push(TagRow {
            group: 0x0002,
            element,
            depth: 0,
            name: tag_name(tag),
            vr: vr.to_string().into(),
            value: value.trim_end_matches('\0').to_string(),
            identifying: is_identifying(tag, vr),
        });
    }
    push_dataset(&mut rows, obj, 0);
    rows
}

fn tag_name(tag: Tag) -> String {
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.alias().to_string())
        .unwrap_or_else(|| {
            if tag.group() % 2 == 1 {
                "Private".into()
            } else {
                "Unknown".into()
            }
        })
}

fn push_dataset(rows: &mut Vec<TagRow>, obj: &InMemDicomObject, depth: u8) {
    for elem in obj.iter() {
        let tag = elem.tag();
        let vr = elem.vr();
        let identifying = is_identifying(tag, vr);
        let value = match elem.value() {
            Value::Sequence(seq) => format!("sequence of {} item(s)", seq.items().len()),
            Value::PixelSequence(seq) => format!(
                "encapsulated pixel data, {} fragment(s)",
                seq.fragments().len()
            ),
            Value::Primitive(p) => {
                if matches!(
                    vr,
                    VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN
                ) {
                    format!("<{} bytes>", p.calculate_byte_len())
                } else {
                    let s = p.to_str();
                    let s = s.trim_end_matches(['\0', ' ']);
                    if s.chars().count() > MAX_VALUE_CHARS {
                        format!("{}…", s.chars().take(MAX_VALUE_CHARS).collect::<String>())
                    } else {
                        s.to_string()
                    }
                }
            }
        };
        rows.push(TagRow {
            group: tag.group(),
            element: tag.element(),
            depth,
            name: tag_name(tag),
            vr: vr.to_string().into(),
            value,
            identifying,
        });
        if let Value::Sequence(seq) = elem.value()
            && depth < MAX_DEPTH
        {
            for item in seq.items() {
                push_dataset(rows, item, depth + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_group_people_and_dates_are_identifying() {
        assert!(is_identifying(Tag(0x0010, 0x0010), VR::PN));
        assert!(is_identifying(Tag(0x0010, 0x0020), VR::LO));
        assert!(is_identifying(Tag(0x0008, 0x0090), VR::PN));
        assert!(is_identifying(Tag(0x0008, 0x0020), VR::DA));
        assert!(is_identifying(Tag(0x0008, 0x0050), VR::SH));
        assert!(!is_identifying(Tag(0x0028, 0x0010), VR::US));
        assert!(!is_identifying(Tag(0x0008, 0x0060), VR::CS));
    }
}
