//! JPEG frames of DICOM files through libjpeg-turbo 3 (`turbojpeg-sys`, built from its bundled
//! sources with cmake and nasm): baseline 8-bit (1.2.840.10008.1.2.4.50), extended 12-bit (.4.51, the
//! process jpeg-decoder does not implement) and lossless up to 16 bits (.4.57, .4.70).
//!
//! libjpeg-turbo reports errors through its handle (never unwinds into Rust); the image size is
//! bounded with `TJPARAM_MAXPIXELS` before anything is allocated, and must match Rows × Columns.

use std::ffi::CStr;

use turbojpeg_sys as tj;

/// Decoded samples (interleaved when `components` is 3), as stored (no rescale).
#[derive(Debug)]
pub struct JpegFrame {
    pub width: u32,
    pub height: u32,
    pub components: usize,
    pub precision: u32,
    pub samples: Samples,
}

/// 8-bit samples for precision ≤ 8, 16-bit ones above.
#[derive(Debug)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

struct Handle(tj::tjhandle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

impl Handle {
    fn error(&self) -> String {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated static or per-handle string.
        unsafe {
            let s = tj::tj3GetErrorStr(self.0);
            if s.is_null() {
                "unknown libjpeg-turbo error".into()
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        }
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: valid handle; parameters are plain integers.
        unsafe { tj::tj3Get(self.0, param as i32) }
    }
}

/// Decodes one JPEG codestream. `expected` is (columns, rows) from the DICOM header: a stream of
/// another size is refused before its pixels are allocated. `rgb_without_transform`: the DICOM file
/// says RGB, i.e. its three components were compressed without the YCbCr transform (PS3.5 8.2.1),
/// so they are returned as they are even when the stream has no marker saying so.
pub fn decode(
    jpeg: &[u8],
    expected: (u32, u32),
    rgb_without_transform: bool,
) -> Result<JpegFrame, String> {
    if jpeg.len() < 4 {
        return Err("the JPEG stream is empty".into());
    }
    // SAFETY: plain FFI call; a null handle is checked.
    let raw = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
    if raw.is_null() {
        return Err("libjpeg-turbo could not start".into());
    }
    let h = Handle(raw);
    let max_pixels = (expected.0 as i64 * expected.1 as i64).clamp(1, i32::MAX as i64) as i32;
    // SAFETY: valid handle, in-bounds buffer pointer and length.
    unsafe {
        tj::tj3Set(h.0, tj::TJPARAM_TJPARAM_MAXPIXELS as i32, max_pixels);
        if tj::tj3DecompressHeader(h.0, jpeg.as_ptr(), jpeg.len() as _) != 0 {
            return Err(h.error());
        }
    }
    let width = h.get(tj::TJPARAM_TJPARAM_JPEGWIDTH);
    let height = h.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT);
    let precision = h.get(tj::TJPARAM_TJPARAM_PRECISION);
    let colorspace = h.get(tj::TJPARAM_TJPARAM_COLORSPACE);
    if width <= 0 || height <= 0 {
        return Err("the JPEG header has no size".into());
    }
    if (width as u32, height as u32) != expected {
        return Err(format!(
            "the JPEG stream is {width}×{height} but the DICOM header says {}×{}",
            expected.0, expected.1
        ));
    }
    let gray = colorspace == tj::TJCS_TJCS_GRAY as i32;
    let (components, format) = if gray {
        (1usize, tj::TJPF_TJPF_GRAY)
    } else {
        (3usize, tj::TJPF_TJPF_RGB)
    };
    let count = width as usize * height as usize * components;
    let pitch = width * components as i32;
    let subsampling = h.get(tj::TJPARAM_TJPARAM_SUBSAMP);
    if rgb_without_transform
        && components == 3
        && colorspace == tj::TJCS_TJCS_YCbCr as i32
        && subsampling == tj::TJSAMP_TJSAMP_444
        && (2..=8).contains(&precision)
    {
        // The component planes without colour conversion, interleaved.
        let plane = width as usize * height as usize;
        let mut planes = vec![vec![0u8; plane]; 3];
        let mut pointers: Vec<*mut u8> = planes.iter_mut().map(|p| p.as_mut_ptr()).collect();
        let mut strides = [width; 3];
        // SAFETY: three planes of width × height bytes with matching strides (4:4:4).
        let rc = unsafe {
            tj::tj3DecompressToYUVPlanes8(
                h.0,
                jpeg.as_ptr(),
                jpeg.len() as _,
                pointers.as_mut_ptr(),
                strides.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(h.error());
        }
        let mut out = Vec::with_capacity(count);
        for ((r, g), b) in planes[0].iter().zip(&planes[1]).zip(&planes[2]) {
            out.extend([*r, *g, *b]);
        }
        return Ok(JpegFrame {
            width: width as u32,
            height: height as u32,
            components,
            precision: precision as u32,
            samples: Samples::U8(out),
        });
    }
    // One decompress call per sample type: tj3Decompress8 / 12 / 16 differ only in the buffer type.
    macro_rules! decompress {
        ($function:ident, $zero:expr) => {{
            let mut buf = vec![$zero; count];
            // SAFETY: buf holds height × pitch samples of the requested pixel format.
            let rc = unsafe {
                tj::$function(
                    h.0,
                    jpeg.as_ptr(),
                    jpeg.len() as _,
                    buf.as_mut_ptr(),
                    pitch,
                    format,
                )
            };
            if rc != 0 {
                return Err(h.error());
            }
            buf
        }};
    }
    let samples = match precision {
        2..=8 => Samples::U8(decompress!(tj3Decompress8, 0u8)),
        // 12-bit samples are 0..4095 in libjpeg-turbo's signed 16-bit type.
        9..=12 => Samples::U16(
            decompress!(tj3Decompress12, 0i16)
                .into_iter()
                .map(|v| v.max(0) as u16)
                .collect(),
        ),
        13..=16 => Samples::U16(decompress!(tj3Decompress16, 0u16)),
        p => return Err(format!("JPEG sample precision {p} is not supported")),
    };
    Ok(JpegFrame {
        width: width as u32,
        height: height as u32,
        components,
        precision: precision as u32,
        samples,
    })
}

/// Splits encapsulated fragments into frames: one fragment per frame when the counts agree,
/// otherwise a new frame starts at each fragment that begins with a JPEG start-of-image marker.
pub fn frames_of(fragments: &[Vec<u8>], number_of_frames: usize) -> Vec<Vec<&[u8]>> {
    if fragments.len() == number_of_frames || number_of_frames == 0 {
        return fragments.iter().map(|f| vec![f.as_slice()]).collect();
    }
    if number_of_frames == 1 {
        return vec![fragments.iter().map(|f| f.as_slice()).collect()];
    }
    let mut frames: Vec<Vec<&[u8]>> = Vec::new();
    for f in fragments {
        if f.starts_with(&[0xFF, 0xD8]) || frames.is_empty() {
            frames.push(Vec::new());
        }
        if let Some(last) = frames.last_mut() {
            last.push(f.as_slice());
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        assert!(decode(&[0xFF, 0xD8, 0xFF, 0xC0, 0, 0], (4, 4), false).is_err());
        assert!(decode(b"not a jpeg at all", (4, 4), false).is_err());
        assert!(decode(&[], (4, 4), false).is_err());
    }

    #[test]
    fn a_size_mismatch_is_refused_before_decoding() {
        // An 8×8 greyscale JPEG made by the image crate (an independent encoder).
        let img = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y) as u8]));
        let mut bytes = Vec::new();
        image::DynamicImage::ImageLuma8(img)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let ok = decode(&bytes, (8, 8), false).unwrap();
        assert_eq!(
            (ok.width, ok.height, ok.components, ok.precision),
            (8, 8, 1, 8)
        );
        let e = decode(&bytes, (16, 8), false).unwrap_err();
        assert!(e.contains("8×8"), "{e}");
    }

    #[test]
    fn fragments_group_into_frames() {
        let a = vec![0xFF, 0xD8, 1];
        let b = vec![2, 3];
        let c = vec![0xFF, 0xD8, 4];
        let frags = vec![a, b, c];
        let frames = frames_of(&frags, 2);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].len(), 2);
        assert_eq!(frames_of(&frags, 1)[0].len(), 3);
        assert_eq!(frames_of(&frags, 3).len(), 3);
    }
}
