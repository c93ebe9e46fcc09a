//! Reading and writing pictures. Images are `[H, W, 3]` RGB `u8` arrays, the layout every core
//! routine (warp, resize, drawing) takes.

use std::path::{Path, PathBuf};

use ndarray::Array3;

/// Errors of image files, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: cannot read image: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a readable JPEG or PNG image: {message}", path.display())]
    Decode { path: PathBuf, message: String },
    #[error("{}: cannot write image: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

/// An RGB image with its source, kept together so that errors downstream can name the file.
pub type RgbImage = Array3<u8>;

/// Decodes a JPEG or PNG file to RGB. Grey and alpha images are converted; a truncated or
/// corrupt file is an error, never a partly black picture.
pub fn read_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_rgb(&bytes, path)
}

/// Decodes image bytes; `path` is only for the error message.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage, ImageError> {
    let decode_err = |message: String| ImageError::Decode {
        path: path.to_path_buf(),
        message,
    };
    // The JPEG decoder fills a file cut short with grey instead of failing; catch that first.
    super::data::check_jpeg_complete(bytes).map_err(decode_err)?;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    if reader.format().is_none() {
        return Err(decode_err("unknown file format".into()));
    }
    let img = reader
        .decode()
        .map_err(|e| decode_err(e.to_string()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(decode_err("image has zero width or height".into()));
    }
    Array3::from_shape_vec((h, w, 3), img.into_raw()).map_err(|e| decode_err(e.to_string()))
}

/// Writes an RGB array as PNG or JPEG (chosen by the extension; JPEG at quality 92).
pub fn write_rgb(path: &Path, image: &RgbImage) -> Result<(), ImageError> {
    let write_err = |message: String| ImageError::Write {
        path: path.to_path_buf(),
        message,
    };
    let (h, w) = (image.shape()[0] as u32, image.shape()[1] as u32);
    let data: Vec<u8> = image.iter().copied().collect();
    let buffer = image::RgbImage::from_raw(w, h, data)
        .ok_or_else(|| write_err("image buffer has the wrong size".into()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let file = std::fs::File::create(path).map_err(|e| write_err(e.to_string()))?;
    let mut out = std::io::BufWriter::new(file);
    match ext.as_str() {
        "jpg" | "jpeg" => {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92);
            buffer
                .write_with_encoder(enc)
                .map_err(|e| write_err(e.to_string()))
        }
        _ => buffer
            .write_to(&mut out, image::ImageFormat::Png)
            .map_err(|e| write_err(e.to_string())),
    }
}

/// File extensions treated as images when a folder is given.
pub fn is_image_path(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("jpg" | "jpeg" | "png")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_png() -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
        bytes
    }

    #[test]
    fn decodes_png_to_hwc_rgb() {
        let img = decode_rgb(&tiny_png(), Path::new("t.png")).unwrap();
        assert_eq!(img.shape(), &[3, 4, 3]);
        assert_eq!(img[[2, 3, 0]], 30);
        assert_eq!(img[[2, 3, 1]], 40);
        assert_eq!(img[[2, 3, 2]], 7);
    }

    #[test]
    fn truncated_jpeg_is_an_error_not_a_grey_picture() {
        let img =
            image::RgbImage::from_fn(32, 24, |x, y| image::Rgb([x as u8 * 7, y as u8 * 9, 50]));
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        assert!(decode_rgb(&bytes, Path::new("whole.jpg")).is_ok());
        let err = decode_rgb(&bytes[..bytes.len() * 2 / 3], Path::new("cut.jpg")).unwrap_err();
        assert!(err.to_string().contains("cut.jpg"), "{err}");
    }

    #[test]
    fn truncated_and_garbage_files_are_errors_naming_the_file() {
        let bytes = tiny_png();
        let err = decode_rgb(&bytes[..bytes.len() / 2], Path::new("half.png")).unwrap_err();
        assert!(err.to_string().contains("half.png"), "{err}");
        let err = decode_rgb(b"not an image at all", Path::new("junk.jpg")).unwrap_err();
        assert!(err.to_string().contains("junk.jpg"), "{err}");
        let err = read_rgb(Path::new("/nonexistent/missing.jpg")).unwrap_err();
        assert!(err.to_string().contains("missing.jpg"), "{err}");
    }
}
