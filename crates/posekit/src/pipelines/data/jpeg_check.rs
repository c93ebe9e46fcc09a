//! Detects truncated JPEG files before decoding.
//!
//! Why: the `image` crate's JPEG decoder (zune-jpeg) does not fail on a file cut short; it
//! returns a full-size picture whose missing part is filled in. Trained on, such a sample
//! teaches the network grey people; the official pipeline (OpenCV) would at least have printed
//! "Premature end of JPEG file". So the marker structure is walked first: every segment must fit
//! in the file, and the file must reach its end-of-image marker. Corruption inside the
//! compressed data itself cannot be seen this way and is left to the decoder.

use std::path::Path;

use crate::pipelines::image_io::{read_rgb, ImageError, RgbImage};

/// Kept for callers written before [`crate::pipelines::image_io::read_rgb`] did this
/// check itself; the two are now the same.
pub fn read_rgb_checked(path: &Path) -> Result<RgbImage, ImageError> {
    read_rgb(path)
}

/// `Ok` for a JPEG whose segments are all complete up to the end-of-image marker, and for any
/// file that is not a JPEG (the decoder judges those). `Err` says where a JPEG is cut short.
pub fn check_jpeg_complete(bytes: &[u8]) -> Result<(), String> {
    const SOI: [u8; 2] = [0xFF, 0xD8];
    if bytes.len() < 2 || bytes[..2] != SOI {
        return Ok(());
    }
    let truncated = |at: usize| {
        Err(format!(
            "truncated JPEG: the file ends at byte {at} before its end-of-image marker"
        ))
    };
    let len = bytes.len();
    let mut i = 2;
    loop {
        // Decoders skip stray bytes between segments; so do we, up to the next marker.
        while i < len && bytes[i] != 0xFF {
            i += 1;
        }
        // 0xFF fill bytes may precede a marker.
        while i < len && bytes[i] == 0xFF {
            i += 1;
        }
        if i >= len {
            return truncated(len);
        }
        let marker = bytes[i];
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            // Markers without a length field: restart markers, TEM, a repeated SOI.
            0xD0..=0xD8 | 0x01 => continue,
            _ => {}
        }
        if i + 2 > len {
            return truncated(len);
        }
        let seg_len = u16::from_be_bytes([bytes[i], bytes[i + 1]]) as usize;
        if seg_len < 2 {
            return Err(format!(
                "corrupt JPEG: segment 0xFF{marker:02X} at byte {} has length {seg_len}",
                i - 2
            ));
        }
        let next = i + seg_len;
        if next > len {
            return truncated(len);
        }
        i = next;
        if marker == 0xDA {
            // Start of scan: entropy-coded data follows, where 0xFF is always followed by a
            // stuffed 0x00, a restart marker or more 0xFF fill; anything else ends the scan.
            loop {
                if i + 1 >= len {
                    return truncated(len);
                }
                if bytes[i] == 0xFF {
                    match bytes[i + 1] {
                        0x00 | 0xD0..=0xD7 => i += 2,
                        0xFF => i += 1,
                        _ => break,
                    }
                } else {
                    i += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small real JPEG encoded by the `image` crate.
    fn jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8])
        });
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        bytes
    }

    #[test]
    fn complete_jpegs_and_other_files_pass() {
        let bytes = jpeg();
        assert_eq!(check_jpeg_complete(&bytes), Ok(()));
        // Trailing bytes after the end-of-image marker are tolerated, as by every decoder.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0, 0, 0]);
        assert_eq!(check_jpeg_complete(&padded), Ok(()));
        assert_eq!(check_jpeg_complete(b"\x89PNG\r\n\x1a\n"), Ok(()));
        assert_eq!(check_jpeg_complete(b""), Ok(()));
    }

    #[test]
    fn every_truncation_is_found() {
        let bytes = jpeg();
        for cut in (2..bytes.len() - 1).step_by(7) {
            let err = check_jpeg_complete(&bytes[..cut]).unwrap_err();
            assert!(err.contains("truncated"), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn read_rgb_checked_names_the_file() {
        let dir = std::env::temp_dir().join(format!("posekit-jpeg-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("half.jpg");
        let bytes = jpeg();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_rgb_checked(&path).unwrap_err().to_string();
        assert!(
            err.contains("half.jpg") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_rgb_checked(&path).unwrap().shape(), &[30, 40, 3]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
