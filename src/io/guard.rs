//! Structural check of a DICOM byte stream before dicom-rs parses it.
//!
//! dicom-rs allocates an element's declared length before reading it, so a 200-byte file that
//! declares a 4 GB value makes it allocate 4 GB (found by fuzzing). This walk reads only element
//! headers: every defined length must fit in what remains of its container (the file, a sequence, an
//! item), nesting is bounded (deeply nested sequences would exhaust the parser's stack), and the image
//! attributes the size guard needs (Rows, Columns, Samples per Pixel, Bits Allocated, Number of
//! Frames) are picked up on the way. Deflated datasets are inflated here with a cap on the inflated
//! size. It is not a parser: values are not interpreted, dicom-rs does that afterwards.

use dicom_core::dictionary::DataDictionary;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use super::LoadError;

/// Deepest sequence nesting accepted (real files rarely exceed 5).
pub const MAX_DEPTH: usize = 32;

/// What the walk found: the transfer syntax and the image attributes of the top-level dataset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub transfer_syntax: Option<String>,
    pub rows: Option<u64>,
    pub columns: Option<u64>,
    pub samples_per_pixel: Option<u64>,
    pub bits_allocated: Option<u64>,
    pub bits_stored: Option<u64>,
    /// `None` when absent; `Some(Err)` text when present but not a number.
    pub number_of_frames: Option<String>,
    pub has_pixel_data: bool,
    /// The transfer syntax says explicit VR but the dataset is written in implicit VR (found in
    /// the wild; pydicom reads such files too).
    pub implicit_despite_transfer_syntax: bool,
    /// A deflated dataset, inflated (and checked) here, so it is inflated only once.
    pub inflated: Option<Inflated>,
    /// Where the top-level Pixel Data element's header starts (offset in the checked bytes; in the
    /// inflated bytes for a deflated dataset).
    pub pixel_data_at: Option<usize>,
}

/// The inflated bytes of a deflated dataset (Debug shows their length only).
#[derive(Clone, Default, PartialEq)]
pub struct Inflated(pub std::sync::Arc<Vec<u8>>);

impl std::fmt::Debug for Inflated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inflated({} bytes)", self.0.len())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    ExplicitLe,
    ImplicitLe,
    ExplicitBe,
}

const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQ_END: Tag = Tag(0xFFFE, 0xE0DD);
const UNDEFINED: u32 = 0xFFFF_FFFF;
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// Size of one value of a binary VR (None for text, bytes and sequences).
fn binary_size(vr: VR) -> Option<usize> {
    match vr {
        VR::US | VR::SS | VR::OW => Some(2),
        VR::UL | VR::SL | VR::FL | VR::AT | VR::OF | VR::OL => Some(4),
        VR::FD | VR::OD | VR::SV | VR::UV | VR::OV => Some(8),
        _ => None,
    }
}

fn bad(detail: impl Into<String>) -> LoadError {
    LoadError::InvalidDicom(detail.into())
}

struct Walker<'a> {
    data: &'a [u8],
    pos: usize,
    enc: Encoding,
    summary: Summary,
    /// Header mode: the walk ends at the top-level Pixel Data element (its value is not checked).
    stop_at_pixel_data: bool,
}

impl<'a> Walker<'a> {
    fn u16_at(&self, at: usize) -> Option<u16> {
        let b = self.data.get(at..at + 2)?;
        Some(match self.enc {
            Encoding::ExplicitBe => u16::from_be_bytes([b[0], b[1]]),
            _ => u16::from_le_bytes([b[0], b[1]]),
        })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b = self.data.get(at..at + 4)?;
        Some(match self.enc {
            Encoding::ExplicitBe => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        })
    }

    /// Reads one element header at `self.pos`: (tag, vr if known, length); advances past it.
    fn header(&mut self, end: usize) -> Result<(Tag, Option<VR>, u32), LoadError> {
        let truncated = || bad("the file ends inside an element header");
        let at = self.pos;
        if at + 8 > end {
            return Err(truncated());
        }
        let tag = Tag(
            self.u16_at(at).ok_or_else(truncated)?,
            self.u16_at(at + 2).ok_or_else(truncated)?,
        );
        if tag.0 == 0xFFFE || self.enc == Encoding::ImplicitLe {
            let len = self.u32_at(at + 4).ok_or_else(truncated)?;
            self.pos = at + 8;
            let vr = (tag.0 != 0xFFFE)
                .then(|| StandardDataDictionary.by_tag(tag).map(|e| e.vr.relaxed()))
                .flatten();
            return Ok((tag, vr, len));
        }
        let vr_bytes = [self.data[at + 4], self.data[at + 5]];
        // An unknown VR is read as UN (4-byte length), as dicom-rs's explicit-VR decoder does.
        let vr = Some(VR::from_binary(vr_bytes).unwrap_or(VR::UN));
        let long = matches!(
            vr,
            Some(
                VR::OB
                    | VR::OD
                    | VR::OF
                    | VR::OL
                    | VR::OV
                    | VR::OW
                    | VR::SQ
                    | VR::UC
                    | VR::UN
                    | VR::UR
                    | VR::UT
                    | VR::SV
                    | VR::UV
            )
        );
        if long {
            if at + 12 > end {
                return Err(truncated());
            }
            let len = self.u32_at(at + 8).ok_or_else(truncated)?;
            self.pos = at + 12;
            Ok((tag, vr, len))
        } else {
            let len = u32::from(self.u16_at(at + 6).ok_or_else(truncated)?);
            self.pos = at + 8;
            Ok((tag, vr, len))
        }
    }

    /// Walks elements until `end` (defined-length container) or a delimiter (undefined length).
    /// Returns when the container is exhausted or its delimiter was consumed.
    fn elements(&mut self, end: usize, depth: usize, top: bool) -> Result<(), LoadError> {
        if depth > MAX_DEPTH {
            return Err(bad(format!(
                "sequences nested deeper than {MAX_DEPTH} levels"
            )));
        }
        while self.pos < end {
            let element_at = self.pos;
            let (tag, vr, len) = self.header(end)?;
            if (tag == ITEM_END || tag == SEQ_END) && depth == 0 {
                // Found by fuzzing: dicom-rs does not stop at a stray top-level delimiter, so the
                // walk must not either; such a file is refused.
                return Err(bad("a sequence delimiter outside any sequence"));
            }
            if tag == ITEM_END || tag == SEQ_END {
                // The end of an undefined-length item/sequence (callers check which).
                self.pos -= 8;
                return Ok(());
            }
            if tag == ITEM {
                return Err(bad("an item outside a sequence"));
            }
            let is_pixel_data = tag == Tag(0x7FE0, 0x0010) && depth == 0;
            if is_pixel_data {
                self.summary.pixel_data_at = Some(element_at);
                if self.stop_at_pixel_data {
                    self.summary.has_pixel_data = true;
                    self.pos = self.data.len();
                    return Ok(());
                }
            }
            if len == UNDEFINED {
                if is_pixel_data {
                    self.summary.has_pixel_data = true;
                    self.fragments(end)?;
                } else if matches!(vr, Some(VR::SQ) | Some(VR::UN) | None) {
                    // An undefined-length UN is an implicit-VR sequence (PS3.5 6.2.2).
                    let saved = self.enc;
                    if vr == Some(VR::UN) {
                        self.enc = Encoding::ImplicitLe;
                    }
                    self.sequence(end, usize::MAX, depth + 1)?;
                    self.enc = saved;
                } else {
                    return Err(bad(format!(
                        "element ({:04X},{:04X}) has an undefined length but is not a sequence",
                        tag.0, tag.1
                    )));
                }
                continue;
            }
            let len = len as usize;
            let value_end = self
                .pos
                .checked_add(len)
                .filter(|&e| e <= end)
                .ok_or_else(|| {
                    bad(format!(
                        "element ({:04X},{:04X}) declares {len} bytes, more than the file holds",
                        tag.0, tag.1
                    ))
                })?;
            if vr == Some(VR::SQ) {
                self.sequence(value_end, value_end, depth + 1)?;
                if self.pos != value_end {
                    return Err(bad("a sequence's items do not fill its length"));
                }
            } else {
                // dicom-rs reads len / size values of a binary VR but counts len bytes: a length
                // that is not a multiple would leave it misaligned, reading later lengths out of
                // values (found by fuzzing: a UL of 2 bytes, then a 2.4 GB "length" from pixels).
                if let Some(size) = vr.and_then(binary_size)
                    && !len.is_multiple_of(size)
                    && !is_pixel_data
                {
                    return Err(bad(format!(
                        "element ({:04X},{:04X}) has {len} bytes, not a multiple of its {size}-byte \
                         values",
                        tag.0, tag.1
                    )));
                }
                if top {
                    self.pick(tag, self.pos, len);
                }
                if is_pixel_data {
                    self.summary.has_pixel_data = true;
                }
            }
            self.pos = value_end;
        }
        Ok(())
    }

    /// Items of a sequence: until `defined_end` (defined length) or the sequence delimiter.
    fn sequence(
        &mut self,
        limit: usize,
        defined_end: usize,
        depth: usize,
    ) -> Result<(), LoadError> {
        let undefined = defined_end == usize::MAX;
        loop {
            if !undefined && self.pos >= defined_end {
                return Ok(());
            }
            let (tag, _, len) = self.header(limit)?;
            match tag {
                SEQ_END if undefined => return Ok(()),
                ITEM if len == UNDEFINED => {
                    self.elements(limit, depth, false)?;
                    let (end_tag, _, _) = self.header(limit)?;
                    if end_tag != ITEM_END {
                        return Err(bad("an item without its delimiter"));
                    }
                }
                ITEM => {
                    let item_end = self
                        .pos
                        .checked_add(len as usize)
                        .filter(|&e| e <= limit)
                        .ok_or_else(|| bad("an item declares more bytes than the file holds"))?;
                    self.elements(item_end, depth, false)?;
                    if self.pos != item_end {
                        return Err(bad("an item's elements do not fill its length"));
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "unexpected ({:04X},{:04X}) inside a sequence",
                        tag.0, tag.1
                    )));
                }
            }
        }
    }

    /// Encapsulated pixel data: items (offset table, fragments) until the sequence delimiter.
    fn fragments(&mut self, limit: usize) -> Result<(), LoadError> {
        loop {
            let (tag, _, len) = self.header(limit)?;
            match tag {
                SEQ_END => return Ok(()),
                ITEM if len != UNDEFINED => {
                    self.pos = self
                        .pos
                        .checked_add(len as usize)
                        .filter(|&e| e <= limit)
                        .ok_or_else(|| {
                            bad("a pixel data fragment declares more bytes than the file holds")
                        })?;
                }
                _ => return Err(bad("malformed encapsulated pixel data")),
            }
        }
    }

    fn pick(&mut self, tag: Tag, at: usize, len: usize) {
        let us = |w: &Self| (len >= 2).then(|| w.u16_at(at).map(u64::from)).flatten();
        match (tag.0, tag.1) {
            (0x0028, 0x0010) => self.summary.rows = us(self),
            (0x0028, 0x0011) => self.summary.columns = us(self),
            (0x0028, 0x0002) => self.summary.samples_per_pixel = us(self),
            (0x0028, 0x0100) => self.summary.bits_allocated = us(self),
            (0x0028, 0x0101) => self.summary.bits_stored = us(self),
            (0x0028, 0x0008) => {
                let text = String::from_utf8_lossy(&self.data[at..at + len]);
                self.summary.number_of_frames = Some(
                    text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                        .into(),
                );
            }
            (0x0002, 0x0010) => {
                let text = String::from_utf8_lossy(&self.data[at..at + len]);
                self.summary.transfer_syntax = Some(
                    text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                        .into(),
                );
            }
            _ => {}
        }
    }
}

/// Checks `data` (the bytes after the preamble and "DICM" when `meta` is true, or a bare Implicit VR
/// Little Endian dataset) and returns what it found. `max_inflated` caps a deflated dataset.
pub fn check(data: &[u8], meta: bool, max_inflated: usize) -> Result<Summary, LoadError> {
    walk(data, meta, max_inflated, false)
}

/// `check` of the header only: the walk ends at the top-level Pixel Data element, so `data` may be
/// a prefix of the file that reaches it (folder scans read no pixels). A deflated dataset is not
/// inflated here: its summary holds the meta group only (`transfer_syntax` says it is deflated).
pub fn check_header(data: &[u8], meta: bool) -> Result<Summary, LoadError> {
    walk(data, meta, 0, true)
}

/// Whether `transfer_syntax` is Deflated Explicit VR Little Endian.
pub fn is_deflated(transfer_syntax: &str) -> bool {
    transfer_syntax.trim_end_matches('\0') == DEFLATED
}

fn walk(
    data: &[u8],
    meta: bool,
    max_inflated: usize,
    stop_at_pixel_data: bool,
) -> Result<Summary, LoadError> {
    let mut w = Walker {
        data,
        pos: 0,
        enc: if meta {
            Encoding::ExplicitLe
        } else {
            Encoding::ImplicitLe
        },
        summary: Summary::default(),
        stop_at_pixel_data,
    };
    if meta {
        // File meta group, explicit VR little endian, read as dicom-rs reads it: (0002,0000) first,
        // then elements until its group length is used up, whatever their group.
        let (tag, _, len) = w.header(data.len())?;
        if tag != Tag(0x0002, 0x0000) || len != 4 {
            return Err(bad(
                "the file meta group does not start with its group length",
            ));
        }
        let group_length = w
            .u32_at(w.pos)
            .ok_or_else(|| bad("the file meta group is cut short"))?;
        w.pos += 4;
        let meta_start = w.pos;
        while w.pos - meta_start < group_length as usize {
            let (tag, _, len) = w.header(data.len())?;
            let end = w
                .pos
                .checked_add(len as usize)
                .filter(|&e| e <= data.len() && len != UNDEFINED)
                .ok_or_else(|| {
                    bad("a file meta element declares more bytes than the file holds")
                })?;
            w.pick(tag, w.pos, len as usize);
            w.pos = end;
        }
    }
    let ts = w.summary.transfer_syntax.clone().unwrap_or_default();
    let summary_meta = w.summary.clone();
    let start = w.pos;
    match ts.as_str() {
        "1.2.840.10008.1.2" => w.enc = Encoding::ImplicitLe,
        "1.2.840.10008.1.2.2" => w.enc = Encoding::ExplicitBe,
        _ if !meta => w.enc = Encoding::ImplicitLe,
        _ => w.enc = Encoding::ExplicitLe,
    }
    if is_deflated(&ts) && stop_at_pixel_data {
        return Ok(summary_meta);
    }
    if is_deflated(&ts) {
        let inflated = inflate(&data[start..], max_inflated)?;
        let mut inner = Walker {
            data: &inflated,
            pos: 0,
            enc: Encoding::ExplicitLe,
            summary: summary_meta,
            stop_at_pixel_data,
        };
        inner.elements(inflated.len(), 0, true)?;
        let mut summary = inner.summary;
        summary.inflated = Some(Inflated(std::sync::Arc::new(inflated)));
        return Ok(summary);
    }
    if meta && w.enc != Encoding::ImplicitLe && start + 6 <= data.len() {
        let vr = [data[start + 4], data[start + 5]];
        if !vr.iter().all(u8::is_ascii_uppercase) {
            w.enc = Encoding::ImplicitLe;
            w.summary.implicit_despite_transfer_syntax = true;
        }
    }
    // A stray delimiter at the top level ends the walk early: dicom-rs stops there too.
    w.elements(data.len(), 0, true)?;
    Ok(w.summary)
}

fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, LoadError> {
    // Room for a typical ratio up front (radiographs deflate to 50–90 %), so the buffer is rarely
    // grown and copied; never more than the cap.
    // One raw-deflate stream decompressed straight into the vector (no reader adapters).
    let mut out = Vec::with_capacity(data.len().saturating_mul(2).min(max) + 1);
    let mut z = flate2::Decompress::new(false);
    loop {
        let before = z.total_in();
        let status = z
            .decompress_vec(
                &data[z.total_in() as usize..],
                &mut out,
                flate2::FlushDecompress::None,
            )
            .map_err(|e| bad(format!("the deflated dataset does not inflate: {e}")))?;
        if out.len() > max {
            return Err(LoadError::TooLargeFile {
                bytes: out.len() as u64,
                limit: max as u64,
            });
        }
        match status {
            flate2::Status::StreamEnd => break,
            _ if z.total_in() as usize >= data.len() => break,
            _ if out.len() == out.capacity() => {
                out.reserve((out.len() / 2).max(1 << 16).min(max + 1 - out.len()));
            }
            _ if z.total_in() == before => {
                return Err(bad("the deflated dataset does not inflate: no progress"));
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Explicit VR LE element with a short length.
    fn short(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(group.to_le_bytes());
        v.extend(elem.to_le_bytes());
        v.extend(vr);
        v.extend((value.len() as u16).to_le_bytes());
        v.extend(value);
        v
    }

    fn long(group: u16, elem: u16, vr: &[u8; 2], len: u32, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(group.to_le_bytes());
        v.extend(elem.to_le_bytes());
        v.extend(vr);
        v.extend([0, 0]);
        v.extend(len.to_le_bytes());
        v.extend(value);
        v
    }

    fn meta() -> Vec<u8> {
        let ts = short(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
        let mut m = short(0x0002, 0x0000, b"UL", &(ts.len() as u32).to_le_bytes());
        m.extend(ts);
        m
    }

    #[test]
    fn picks_the_image_attributes() {
        let mut d = meta();
        d.extend(short(0x0028, 0x0002, b"US", &1u16.to_le_bytes()));
        d.extend(short(0x0028, 0x0008, b"IS", b"12"));
        d.extend(short(0x0028, 0x0010, b"US", &300u16.to_le_bytes()));
        d.extend(short(0x0028, 0x0011, b"US", &200u16.to_le_bytes()));
        d.extend(short(0x0028, 0x0100, b"US", &16u16.to_le_bytes()));
        d.extend(long(0x7FE0, 0x0010, b"OW", 4, &[1, 2, 3, 4]));
        let s = check(&d, true, 1 << 20).unwrap();
        assert_eq!(s.transfer_syntax.as_deref(), Some("1.2.840.10008.1.2.1"));
        assert_eq!(
            (s.rows, s.columns, s.samples_per_pixel, s.bits_allocated),
            (Some(300), Some(200), Some(1), Some(16))
        );
        assert_eq!(s.number_of_frames.as_deref(), Some("12"));
        assert!(s.has_pixel_data);
    }

    #[test]
    fn refuses_a_length_beyond_the_end() {
        let mut d = meta();
        d.extend(long(0x7FE0, 0x0010, b"OW", 0xFFFF_FFF0, &[1, 2, 3, 4]));
        let e = check(&d, true, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("more than the file holds"), "{e}");
    }

    #[test]
    fn refuses_deep_nesting_and_accepts_shallow() {
        // n nested undefined-length sequences, each with one undefined-length item.
        let nested = |n: usize| {
            let mut d = meta();
            for _ in 0..n {
                d.extend(long(0x0008, 0x1140, b"SQ", UNDEFINED, &[]));
                d.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
            }
            for _ in 0..n {
                d.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
                d.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
            }
            d
        };
        assert!(check(&nested(3), true, 1 << 20).is_ok());
        let e = check(&nested(MAX_DEPTH + 5), true, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nested deeper"), "{e}");
    }

    #[test]
    fn refuses_a_stray_top_level_delimiter_and_a_meta_group_without_length() {
        let mut d = meta();
        d.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        d.extend(long(0x7FE0, 0x0010, b"OB", 0xC000_0000, &[]));
        assert!(check(&d, true, 1 << 20).is_err());
        let no_length = short(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
        assert!(check(&no_length, true, 1 << 20).is_err());
    }

    #[test]
    fn refuses_a_truncated_header() {
        let mut d = meta();
        d.extend([0x28, 0x00, 0x10]);
        assert!(check(&d, true, 1 << 20).is_err());
    }
}
