//! DICOM objects without their pixels: the whole object behind the structural check (`open`), and
//! the header only for folder scans and size checks (`open_header`: a prefix of the file, checked
//! by `guard::check_header`, parsed up to Pixel Data).

use std::path::Path;

use dicom_object::DefaultDicomObject;

use super::dicom::{Layout, parse};
use super::{LoadError, MAX_FILE_BYTES, MAX_PIXEL_DATA_BYTES, guard};

/// Reads the whole object (meta synthesised for raw datasets), behind the same length check as
/// `load_bytes`.
pub fn open(path: &Path, layout: Layout) -> Result<(DefaultDicomObject, bool), LoadError> {
    let bytes = super::read_bounded(path)?;
    let data = match layout {
        Layout::Preamble => bytes.get(128..).ok_or(LoadError::Empty)?,
        _ => &bytes[..],
    };
    let body = match layout {
        Layout::Preamble | Layout::NoPreamble => data
            .strip_prefix(b"DICM")
            .ok_or_else(|| LoadError::InvalidDicom("no DICM marker".into()))?,
        Layout::RawImplicitLittleEndian => data,
    };
    let summary = guard::check(
        body,
        layout != Layout::RawImplicitLittleEndian,
        MAX_PIXEL_DATA_BYTES as usize,
    )?;
    parse(
        data,
        layout,
        summary.implicit_despite_transfer_syntax,
        summary.inflated.as_ref().map(|i| i.0.as_slice()),
    )
}

/// Reads up to (not including) the pixel data: for size checks and folder scans. Reads a prefix of
/// the file (1 MiB first, eight times more while the header does not fit), checks it with
/// `guard::check_header` like any dataset, and parses only the bytes before the Pixel Data element;
/// bare datasets and deflated files are read whole (bounded by `MAX_FILE_BYTES`).
pub fn open_header(path: &Path, layout: Layout) -> Result<DefaultDicomObject, LoadError> {
    const FIRST_PREFIX: u64 = 1 << 20;
    if layout == Layout::RawImplicitLittleEndian {
        return open(path, layout).map(|(o, _)| o);
    }
    let file_len = std::fs::metadata(path)?.len();
    let mut limit = FIRST_PREFIX.min(file_len);
    loop {
        let bytes = read_prefix(path, limit)?;
        let whole = bytes.len() as u64 >= file_len;
        let data = match layout {
            Layout::Preamble => bytes.get(128..).ok_or(LoadError::Empty)?,
            _ => &bytes[..],
        };
        let body = data
            .strip_prefix(b"DICM")
            .ok_or_else(|| LoadError::InvalidDicom("no DICM marker".into()))?;
        match guard::check_header(body, true) {
            Ok(summary) if guard::is_deflated(summary.transfer_syntax.as_deref().unwrap_or("")) => {
                return open(path, layout).map(|(o, _)| o);
            }
            Ok(summary) if summary.pixel_data_at.is_some() || whole => {
                // "DICM" + the body up to the Pixel Data element's header.
                let end = summary.pixel_data_at.map_or(data.len(), |at| 4 + at);
                return parse(
                    &data[..end],
                    layout,
                    summary.implicit_despite_transfer_syntax,
                    None,
                )
                .map(|(o, _)| o);
            }
            Err(e) if whole => return Err(e),
            // The prefix ended inside the header: read more.
            _ if limit >= MAX_FILE_BYTES => {
                return Err(LoadError::TooLargeFile {
                    bytes: file_len,
                    limit: MAX_FILE_BYTES,
                });
            }
            _ => limit = limit.saturating_mul(8).min(file_len).min(MAX_FILE_BYTES),
        }
    }
}

/// The first `limit` bytes of a file (fewer if it is shorter).
fn read_prefix(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(limit as usize);
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use dicom_dictionary_std::tags;

    use super::*;
    use crate::io::dicom::int;

    /// Preamble, "DICM", a meta group (Explicit VR Little Endian), Rows = Columns = 4, one OB element
    /// declaring `ob_len` bytes (holding 4), then Pixel Data declaring 32 bytes (holding 4).
    fn file_with(ob_len: u32) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        let short = |b: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], v: &[u8]| {
            b.extend_from_slice(&g.to_le_bytes());
            b.extend_from_slice(&e.to_le_bytes());
            b.extend_from_slice(vr);
            b.extend_from_slice(&(v.len() as u16).to_le_bytes());
            b.extend_from_slice(v);
        };
        let long = |b: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], len: u32, v: &[u8]| {
            b.extend_from_slice(&g.to_le_bytes());
            b.extend_from_slice(&e.to_le_bytes());
            b.extend_from_slice(vr);
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(v);
        };
        let ts = b"1.2.840.10008.1.2.1\0";
        short(
            &mut b,
            0x0002,
            0x0000,
            b"UL",
            &(8 + ts.len() as u32).to_le_bytes(),
        );
        short(&mut b, 0x0002, 0x0010, b"UI", ts);
        short(&mut b, 0x0028, 0x0010, b"US", &4u16.to_le_bytes());
        short(&mut b, 0x0028, 0x0011, b"US", &4u16.to_le_bytes());
        long(&mut b, 0x0029, 0x1010, b"OB", ob_len, &[1, 2, 3, 4]);
        long(&mut b, 0x7FE0, 0x0010, b"OW", 32, &[0, 0, 0, 0]);
        b
    }

    #[test]
    fn headers_are_checked_before_parsing_and_pixels_are_not_read() {
        let dir = std::env::temp_dir().join(format!("cxrlens-header-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.dcm");
        // Truncated pixel data does not matter to a header read.
        std::fs::write(&path, file_with(4)).unwrap();
        let obj = open_header(&path, Layout::Preamble).unwrap();
        assert_eq!(int(&obj, tags::ROWS), Some(4));
        assert!(obj.element_opt(tags::PIXEL_DATA).unwrap().is_none());
        // An element declaring 2 GB in a 200-byte file is refused before dicom-rs sees it.
        std::fs::write(&path, file_with(0x7FFF_FFF0)).unwrap();
        match open_header(&path, Layout::Preamble) {
            Err(LoadError::InvalidDicom(m)) => {
                assert!(m.contains("more than the file holds"), "{m}")
            }
            other => panic!("expected a structural error, got {:?}", other.map(|_| ())),
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
