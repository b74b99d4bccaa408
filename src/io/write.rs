//! Writing files safely: every write goes to a temporary file in the same folder and is renamed into
//! place, so a crash never leaves a half-written file where the user's file was. Also a minimal
//! greyscale DICOM writer (used to build the bundled sample and test fixtures).

use std::io::Write;
use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

/// Writes `bytes` to `path` atomically (temp file + fsync + rename + fsync of the folder).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, |f| f.write_all(bytes))
}

/// Runs `write` against a temporary file beside `path`, then renames it over `path`. The temporary
/// file has an unpredictable name and is created exclusively (`tempfile`: O_EXCL, never through an
/// existing file or link, mode 0600), so a link planted in a shared folder such as /tmp cannot
/// redirect the write; the folder is synced after the rename so the new name survives a crash. A
/// failed write removes the temporary file and leaves `path` as it was.
pub fn write_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    write_with_mode(path, None, write)
}

/// `write_with`, the file getting `mode` (e.g. 0o600 for a file holding passwords) instead of the
/// replaced file's mode or rw-r--r--.
pub fn write_with_mode(
    path: &Path,
    mode: Option<u32>,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    write(tmp.as_file_mut())?;
    // tempfile creates 0600; the file takes the mode of the one it replaces, else rw-r--r-- (an
    // export is for others to read).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = mode.unwrap_or_else(|| {
            std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o644)
        });
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable once the folder's entry is on disk (not possible on every platform).
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = mode;
    Ok(())
}

/// Attributes of a greyscale image to write.
#[derive(Clone, Debug)]
pub struct GreyscaleDicom<'a> {
    pub width: u16,
    pub height: u16,
    pub bits_stored: u16,
    pub pixels: &'a [u16],
    pub monochrome1: bool,
    pub window: Option<(f64, f64)>,
    pub pixel_spacing_mm: Option<(f64, f64)>,
    pub imager_pixel_spacing_mm: Option<(f64, f64)>,
    pub sop_instance_uid: &'a str,
    pub study_instance_uid: &'a str,
    pub series_instance_uid: &'a str,
    pub instance_number: i32,
    pub description: &'a str,
}

/// Builds the dataset (Computed Radiography, chest PA, no patient identifiers).
pub fn greyscale_dataset(img: &GreyscaleDicom<'_>) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    let put = |obj: &mut InMemDicomObject, tag, vr, value: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, value));
    };
    put(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE.into(),
    );
    put(
        &mut obj,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        img.sop_instance_uid.into(),
    );
    put(&mut obj, tags::MODALITY, VR::CS, "CR".into());
    put(
        &mut obj,
        tags::PATIENT_NAME,
        VR::PN,
        "ANONYMOUS^SAMPLE".into(),
    );
    put(&mut obj, tags::PATIENT_ID, VR::LO, "SAMPLE-0001".into());
    put(
        &mut obj,
        tags::STUDY_DESCRIPTION,
        VR::LO,
        img.description.into(),
    );
    put(&mut obj, tags::BODY_PART_EXAMINED, VR::CS, "CHEST".into());
    put(&mut obj, tags::VIEW_POSITION, VR::CS, "PA".into());
    put(
        &mut obj,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        img.study_instance_uid.into(),
    );
    put(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        img.series_instance_uid.into(),
    );
    put(&mut obj, tags::SERIES_NUMBER, VR::IS, "1".into());
    put(
        &mut obj,
        tags::INSTANCE_NUMBER,
        VR::IS,
        img.instance_number.to_string().into(),
    );
    put(
        &mut obj,
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    let photometric = if img.monochrome1 {
        "MONOCHROME1"
    } else {
        "MONOCHROME2"
    };
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        photometric.into(),
    );
    put(
        &mut obj,
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(img.height),
    );
    put(
        &mut obj,
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(img.width),
    );
    put(
        &mut obj,
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    );
    put(
        &mut obj,
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(img.bits_stored),
    );
    put(
        &mut obj,
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(img.bits_stored - 1),
    );
    put(
        &mut obj,
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    );
    if let Some((c, w)) = img.window {
        put(&mut obj, tags::WINDOW_CENTER, VR::DS, format!("{c}").into());
        put(&mut obj, tags::WINDOW_WIDTH, VR::DS, format!("{w}").into());
    }
    if let Some((r, c)) = img.pixel_spacing_mm {
        put(
            &mut obj,
            tags::PIXEL_SPACING,
            VR::DS,
            format!("{r}\\{c}").into(),
        );
    }
    if let Some((r, c)) = img.imager_pixel_spacing_mm {
        put(
            &mut obj,
            tags::IMAGER_PIXEL_SPACING,
            VR::DS,
            format!("{r}\\{c}").into(),
        );
    }
    put(
        &mut obj,
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(img.pixels.iter().copied().collect()),
    );
    obj
}

/// Writes the image as Explicit VR Little Endian with a file meta header, atomically.
pub fn write_greyscale_dicom(path: &Path, img: &GreyscaleDicom<'_>) -> Result<(), String> {
    let file = greyscale_dataset(img)
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .map_err(|e| e.to_string())?;
    write_with(path, |f| file.write_all(f).map_err(std::io::Error::other))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomically(&p, b"first version").unwrap();
        write_atomically(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_link_planted_at_a_guessable_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "the user's").unwrap();
        let p = dir.path().join("export.png");
        // The name the earlier scheme used (".{name}.{pid}.tmp").
        let guessed = dir
            .path()
            .join(format!(".export.png.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &guessed).unwrap();
        write_atomically(&p, b"new export").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"the user's");
        assert_eq!(std::fs::read(&p).unwrap(), b"new export");
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keep.bin");
        write_atomically(&p, b"precious").unwrap();
        let r = write_with(&p, |_| Err(std::io::Error::other("disk full")));
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
