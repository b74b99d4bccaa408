//! Display attributes a DICOM file holds but that cannot be used: dicom-pixeldata silently falls back
//! to defaults for an unparsable Rescale Slope / Intercept and drops unusable windows and VOI LUTs,
//! so the viewer would show the image with values the file never meant without a word. This finds
//! each such attribute and says what was done instead; the viewer shows the lines, `inspect` prints
//! them.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// One line per unusable attribute. `windows_kept` / `luts_kept`: how many of the file's windows
/// and VOI LUTs survived decoding.
pub(super) fn unusable_display_attributes(
    obj: &InMemDicomObject,
    windows_kept: usize,
    luts_kept: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let present = |tag: Tag| obj.element_opt(tag).ok().flatten();
    let raw = |tag: Tag| {
        present(tag)
            .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
            .unwrap_or_default()
    };
    for (tag, name, instead) in [
        (tags::RESCALE_SLOPE, "Rescale Slope", "1"),
        (tags::RESCALE_INTERCEPT, "Rescale Intercept", "0"),
    ] {
        if let Some(e) = present(tag)
            && e.to_finite_float64().is_err()
        {
            out.push(format!(
                "{name} {:?} is not a number: {instead} used instead",
                raw(tag)
            ));
        }
    }
    let stored_windows = match (present(tags::WINDOW_CENTER), present(tags::WINDOW_WIDTH)) {
        (Some(c), Some(w)) => {
            let (c, w) = (c.to_multi_float64(), w.to_multi_float64());
            match (c, w) {
                (Ok(c), Ok(w)) => c.len().min(w.len()),
                _ => {
                    out.push(format!(
                        "Window Center {:?} / Width {:?} unreadable: the window comes from the \
                         pixel values instead",
                        raw(tags::WINDOW_CENTER),
                        raw(tags::WINDOW_WIDTH)
                    ));
                    0
                }
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            out.push(
                "only one of Window Center / Window Width is present: the window comes from the \
                 pixel values instead"
                    .into(),
            );
            0
        }
        (None, None) => 0,
    };
    if stored_windows > windows_kept {
        out.push(format!(
            "{} of the file's {stored_windows} windows have no usable width: left out",
            stored_windows - windows_kept
        ));
    }
    let stored_luts = present(tags::VOILUT_SEQUENCE)
        .and_then(|e| e.items().map(|items| items.len()))
        .unwrap_or(0);
    if stored_luts > luts_kept {
        out.push(format!(
            "{} of the file's {stored_luts} VOI LUTs are unreadable: left out",
            stored_luts - luts_kept
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use dicom_core::{DataElement, PrimitiveValue, VR};

    use super::*;

    fn obj(elements: &[(Tag, VR, &str)]) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        for (tag, vr, v) in elements {
            // Multiple values as a parsed file holds them (one string each).
            let values: Vec<String> = v.split('\\').map(String::from).collect();
            o.put(DataElement::new(
                *tag,
                *vr,
                PrimitiveValue::Strs(values.into_iter().collect()),
            ));
        }
        o
    }

    #[test]
    fn unparsable_rescale_and_windows_are_named() {
        let good = obj(&[
            (tags::RESCALE_SLOPE, VR::DS, "1.5"),
            (tags::RESCALE_INTERCEPT, VR::DS, "-1024"),
            (tags::WINDOW_CENTER, VR::DS, "40\\400"),
            (tags::WINDOW_WIDTH, VR::DS, "400\\1500"),
        ]);
        assert!(unusable_display_attributes(&good, 2, 0).is_empty());
        let bad = obj(&[
            (tags::RESCALE_SLOPE, VR::DS, "one"),
            (tags::RESCALE_INTERCEPT, VR::DS, "-1024"),
            (tags::WINDOW_CENTER, VR::DS, "40"),
        ]);
        let lines = unusable_display_attributes(&bad, 0, 0);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("Rescale Slope \"one\""));
        assert!(lines[1].contains("only one of Window Center"));
        // A window dropped for its width.
        let zero_width = obj(&[
            (tags::WINDOW_CENTER, VR::DS, "40"),
            (tags::WINDOW_WIDTH, VR::DS, "0"),
        ]);
        let lines = unusable_display_attributes(&zero_width, 0, 0);
        assert_eq!(
            lines,
            vec!["1 of the file's 1 windows have no usable width: left out"]
        );
    }
}
