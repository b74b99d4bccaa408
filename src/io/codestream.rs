//! Checks of encapsulated codestreams before dicom-rs's codec adapters see them.
//!
//! Fuzzing and the malformed corpus (tests/malformed.rs) showed the adapters of dicom-rs 0.10 trust
//! the codestream: a JPEG 2000 or JPEG-LS header that claims a larger image than Rows × Columns makes
//! the decoder allocate gigabytes or write past its buffer (a panic), and an RLE fragment whose header
//! or segments are short panics (`rle_lossless.rs`: slicing the header, indexing a short segment). So
//! each fragment's header is read here — only the size fields, and for RLE the PackBits run lengths —
//! and a mismatch is a clear error before any decoder runs.

/// What kind of codestream a transfer syntax holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Jpeg2000,
    JpegLs,
    Rle,
}

impl Kind {
    pub fn of(transfer_syntax: &str) -> Option<Kind> {
        match transfer_syntax {
            "1.2.840.10008.1.2.4.90"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.92"
            | "1.2.840.10008.1.2.4.93"
            | "1.2.840.10008.1.2.4.201"
            | "1.2.840.10008.1.2.4.202"
            | "1.2.840.10008.1.2.4.203" => Some(Kind::Jpeg2000),
            "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => Some(Kind::JpegLs),
            "1.2.840.10008.1.2.5" => Some(Kind::Rle),
            _ => None,
        }
    }
}

/// Checks every fragment of encapsulated pixel data against the DICOM image size.
pub fn check(
    kind: Kind,
    fragments: &[Vec<u8>],
    rows: u64,
    columns: u64,
    samples: u64,
    bits_allocated: u64,
) -> Result<(), String> {
    if fragments.is_empty() {
        return Err("the encapsulated pixel data has no fragments".into());
    }
    match kind {
        Kind::Jpeg2000 => {
            let mut seen = false;
            for f in fragments.iter().filter(|f| f.starts_with(&[0xFF, 0x4F])) {
                seen = true;
                let (w, h, c) = j2k_size(f)?;
                if (w, h) != (columns, rows) || c != samples {
                    return Err(format!(
                        "the JPEG 2000 codestream is {w}×{h} with {c} component(s); the DICOM header says {columns}×{rows} with {samples}"
                    ));
                }
            }
            if !seen && !fragments[0].starts_with(&[0, 0, 0, 0x0C, b'j', b'P']) {
                return Err("no JPEG 2000 codestream in the pixel data".into());
            }
            Ok(())
        }
        Kind::JpegLs => {
            for f in fragments.iter().filter(|f| f.starts_with(&[0xFF, 0xD8])) {
                let (w, h, c) = jpeg_ls_size(f)?;
                if (w, h) != (columns, rows) || c != samples {
                    return Err(format!(
                        "the JPEG-LS stream is {w}×{h} with {c} component(s); the DICOM header says {columns}×{rows} with {samples}"
                    ));
                }
            }
            Ok(())
        }
        Kind::Rle => {
            let segments = samples * bits_allocated.div_ceil(8);
            for f in fragments {
                rle_fragment(f, segments, rows * columns)?;
            }
            Ok(())
        }
    }
}

fn be16(b: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]) as u64)
}

fn be32(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]) as u64)
}

/// Width, height and components from the SIZ marker segment that follows SOC (ISO 15444-1 A.5.1).
fn j2k_size(f: &[u8]) -> Result<(u64, u64, u64), String> {
    let bad = || "the JPEG 2000 header (SIZ) is missing or cut short".to_string();
    if be16(f, 2) != Some(0xFF51) {
        return Err(bad());
    }
    let x = be32(f, 8).ok_or_else(bad)?;
    let y = be32(f, 12).ok_or_else(bad)?;
    let x0 = be32(f, 16).ok_or_else(bad)?;
    let y0 = be32(f, 20).ok_or_else(bad)?;
    let components = be16(f, 40).ok_or_else(bad)?;
    if x0 >= x || y0 >= y {
        return Err("the JPEG 2000 image area is empty".into());
    }
    Ok((x - x0, y - y0, components))
}

/// Width, height and components from the JPEG-LS start-of-frame (SOF55, FFF7) marker.
fn jpeg_ls_size(f: &[u8]) -> Result<(u64, u64, u64), String> {
    let mut at = 2;
    while at + 4 <= f.len() {
        if f[at] != 0xFF {
            return Err("the JPEG-LS header is malformed".into());
        }
        let marker = f[at + 1];
        let len = be16(f, at + 2).ok_or("the JPEG-LS header is cut short")? as usize;
        if marker == 0xF7 {
            let h = be16(f, at + 5).ok_or("the JPEG-LS frame header is cut short")?;
            let w = be16(f, at + 7).ok_or("the JPEG-LS frame header is cut short")?;
            let c = *f
                .get(at + 9)
                .ok_or("the JPEG-LS frame header is cut short")? as u64;
            return Ok((w, h, c));
        }
        if marker == 0xDA {
            break;
        }
        at += 2 + len;
    }
    Err("no JPEG-LS frame header before the scan".into())
}

/// An RLE fragment (PS3.5 G.3): a 64-byte header of segment count and offsets, then PackBits
/// segments, each of which must decode to at least one byte per pixel.
fn rle_fragment(f: &[u8], segments: u64, pixels: u64) -> Result<(), String> {
    if f.len() < 64 {
        return Err("the RLE header is cut short".into());
    }
    let le32 = |at: usize| u32::from_le_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]) as usize;
    let count = le32(0);
    if count as u64 != segments || count == 0 || count > 15 {
        return Err(format!(
            "the RLE header lists {count} segments; the image needs {segments}"
        ));
    }
    let mut offsets: Vec<usize> = (0..count).map(|i| le32(4 + 4 * i)).collect();
    offsets.push(f.len());
    for pair in offsets.windows(2) {
        if pair[0] < 64 || pair[0] > pair[1] || pair[1] > f.len() {
            return Err("the RLE segment offsets are out of order or out of the fragment".into());
        }
        let produced = packbits_length(&f[pair[0]..pair[1]], pixels);
        if produced < pixels {
            return Err(format!(
                "an RLE segment decodes to {produced} bytes, the image needs {pixels}"
            ));
        }
    }
    Ok(())
}

/// How many bytes a PackBits segment decodes to (counting stops at `enough`).
fn packbits_length(segment: &[u8], enough: u64) -> u64 {
    let (mut at, mut out) = (0usize, 0u64);
    while at < segment.len() && out < enough {
        let n = segment[at] as i8;
        at += 1;
        if n >= 0 {
            let literal = n as usize + 1;
            let available = literal.min(segment.len() - at);
            out += available as u64;
            at += literal;
        } else if n != -128 {
            if at < segment.len() {
                out += (1 - n as i64) as u64;
            }
            at += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_lengths_by_hand() {
        // Literal of 3, run of 4, no-op, run of 2 (PackBits as in Apple TN1023).
        let seg = [2, 10, 11, 12, 0xFD, 7, 0x80, 0xFF, 9];
        assert_eq!(packbits_length(&seg, 100), 3 + 4 + 2);
        // A literal that claims more bytes than remain counts only those present.
        assert_eq!(packbits_length(&[5, 1, 2], 100), 2);
    }

    #[test]
    fn rle_header_problems_are_errors() {
        let mut f = vec![0u8; 64];
        f[0] = 1; // one segment
        f[4] = 64; // at offset 64
        f.extend([0xFD, 7]); // run of 4
        assert!(rle_fragment(&f, 1, 4).is_ok());
        assert!(rle_fragment(&f, 1, 5).unwrap_err().contains("4 bytes"));
        assert!(rle_fragment(&f, 2, 4).is_err());
        assert!(rle_fragment(&f[..10], 1, 4).is_err());
        f[4] = 200;
        assert!(rle_fragment(&f, 1, 4).is_err());
        // Found by fuzzing: a middle offset beyond the fragment (it used to slice past the end).
        let mut two = vec![0u8; 64];
        two[0] = 2;
        two[4] = 64;
        two[8..12].copy_from_slice(&100_000u32.to_le_bytes());
        two.extend([0xFD, 7, 0xFD, 7]);
        assert!(rle_fragment(&two, 2, 4).is_err());
    }

    #[test]
    fn j2k_and_jpeg_ls_sizes_from_their_headers() {
        // SOC, SIZ with Xsiz 300, Ysiz 200, offsets 0, one component.
        let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [300u32, 200, 0, 0, 300, 200, 0, 0] {
            j2k.extend(v.to_be_bytes());
        }
        j2k.extend(1u16.to_be_bytes());
        assert_eq!(j2k_size(&j2k).unwrap(), (300, 200, 1));
        assert!(check(Kind::Jpeg2000, &[j2k.clone()], 200, 300, 1, 16).is_ok());
        assert!(check(Kind::Jpeg2000, &[j2k], 2000, 300, 1, 16).is_err());
        // SOI, SOF55: length 11, precision 12, height 50, width 10, 1 component.
        let jls = vec![
            0xFF, 0xD8, 0xFF, 0xF7, 0, 11, 12, 0, 50, 0, 10, 1, 1, 0x11, 0,
        ];
        assert_eq!(jpeg_ls_size(&jls).unwrap(), (10, 50, 1));
        assert!(check(Kind::JpegLs, &[jls], 51, 10, 1, 16).is_err());
    }
}
