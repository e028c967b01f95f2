//! Images: recorded as documents with their pixel size.
//!
//! Only the header is read (no pixel decode), so an image bomb costs
//! nothing here. The pixels themselves and OCR come with the ingest issue.

use super::{ImageInfo, SkipReason};

/// Extensions treated as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "webp", "tif", "tiff", "bmp"];

/// Reads the pixel size from the image header.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, (SkipReason, String)> {
    let size =
        imagesize::blob_size(bytes).map_err(|e| (SkipReason::ImageError, format!("unreadable image header: {e}")))?;
    Ok(ImageInfo {
        width: size.width as u32,
        height: size.height as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_png_size_from_header() {
        // A 1x1 PNG: signature, IHDR with width 3, height 2.
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&3u32.to_be_bytes());
        png.extend_from_slice(&2u32.to_be_bytes());
        png.extend_from_slice(b"\x08\x02\0\0\0\0\0\0\0");
        assert_eq!(probe(&png).unwrap(), ImageInfo { width: 3, height: 2 });
        assert_eq!(probe(b"not an image").unwrap_err().0, SkipReason::ImageError);
    }
}
