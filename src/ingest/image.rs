//! Images: decoded with the `image` crate under explicit limits, EXIF
//! orientation applied, recorded as documents with their upright pixel
//! size and what Llama 4's tiling of them costs.
//!
//! The header is read first: an image bomb (a few KB claiming 100,000 x
//! 100,000 pixels) is recognised from its claimed size and never decoded.
//! Pixels are decoded only when OCR needs them.

use std::borrow::Cow;
use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::{ImageInfo, SkipReason};
use crate::limits::{MAX_IMAGE_ALLOC_BYTES, MAX_IMAGE_SIDE};

/// Extensions treated as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "webp", "tif", "tiff", "bmp"];

/// Reads the pixel size from the image header (as stored, before any
/// orientation).
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, (SkipReason, String)> {
    let size =
        imagesize::blob_size(bytes).map_err(|e| (SkipReason::ImageError, format!("unreadable image header: {e}")))?;
    Ok(ImageInfo {
        width: size.width as u32,
        height: size.height as u32,
    })
}

/// An image whose header and metadata were read, pixels not yet decoded.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    /// Upright size: width and height swap when EXIF says the image is
    /// stored turned a quarter.
    pub info: ImageInfo,
    pub format: ImageFormat,
    pub orientation: Orientation,
}

impl Opened {
    #[must_use]
    pub fn pixels(&self) -> u64 {
        u64::from(self.info.width) * u64::from(self.info.height)
    }
}

/// Why an image was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFailure {
    /// Larger than the limits allow: kept, never decoded.
    TooLarge(String),
    /// Not an image this build can read.
    Unreadable(String),
}

impl std::fmt::Display for ImageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge(why) => write!(f, "too large to decode: {why}"),
            Self::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_IMAGE_SIDE);
    l.max_image_height = Some(MAX_IMAGE_SIDE);
    l.max_alloc = Some(MAX_IMAGE_ALLOC_BYTES);
    l
}

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, ImageFailure> {
    let mut r = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageFailure::Unreadable(e.to_string()))?;
    if r.format().is_none() {
        return Err(ImageFailure::Unreadable(
            "not a PNG, JPEG, TIFF, WebP, GIF or BMP image".into(),
        ));
    }
    r.limits(limits());
    Ok(r)
}

fn failure(e: &image::ImageError) -> ImageFailure {
    match e {
        image::ImageError::Limits(_) => ImageFailure::TooLarge(e.to_string()),
        _ => ImageFailure::Unreadable(e.to_string()),
    }
}

/// Reads an image's header and orientation, refusing what is larger than
/// `max_pixels` or the side and memory limits.
pub fn open(bytes: &[u8], max_pixels: u64) -> Result<Opened, ImageFailure> {
    let r = reader(bytes)?;
    let format = r.format().expect("checked in reader");
    let mut decoder = r.into_decoder().map_err(|e| failure(&e))?;
    let (w, h) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let quarter_turn = matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    );
    let (width, height) = if quarter_turn { (h, w) } else { (w, h) };
    let opened = Opened {
        info: ImageInfo { width, height },
        format,
        orientation,
    };
    if opened.pixels() > max_pixels {
        return Err(ImageFailure::TooLarge(format!(
            "{width} x {height} pixels, more than the {max_pixels} allowed"
        )));
    }
    Ok(opened)
}

/// Decodes the pixels (a GIF's first frame), upright.
pub fn decode(bytes: &[u8], opened: &Opened) -> Result<DynamicImage, ImageFailure> {
    let decoder = reader(bytes)?.into_decoder().map_err(|e| failure(&e))?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| failure(&e))?;
    img.apply_orientation(opened.orientation);
    Ok(img)
}

/// The image as tesseract should read it: the file itself when it is
/// upright and in a format tesseract reads everywhere, else the decoded,
/// upright pixels as PNG.
pub fn for_ocr<'a>(bytes: &'a [u8], opened: &Opened) -> Result<Cow<'a, [u8]>, ImageFailure> {
    let plain = matches!(
        opened.format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff | ImageFormat::Bmp
    );
    if plain && opened.orientation == Orientation::NoTransforms {
        return Ok(Cow::Borrowed(bytes));
    }
    let img = decode(bytes, opened)?;
    let mut png = Vec::new();
    // 16-bit and float images become 8-bit: all OCR needs.
    DynamicImage::ImageRgb8(img.to_rgb8())
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|e| ImageFailure::Unreadable(e.to_string()))?;
    Ok(Cow::Owned(png))
}

/// The MIME type of an image file's bytes, by content.
#[must_use]
pub fn mime_type(bytes: &[u8]) -> &'static str {
    image::guess_format(bytes).map_or("application/octet-stream", |f| f.to_mime_type())
}

/// The image no larger than the canvas Llama 4 tiles it onto: a larger one
/// is scaled down to fit (what the model's processor does anyway) and
/// re-encoded (a JPEG as JPEG, anything else as PNG), so fewer bytes go
/// over the wire; one that fits, or one that cannot be decoded, comes
/// back as it is.
#[must_use]
pub fn fitted_for_llama4(bytes: &[u8], width: u32, height: u32) -> Cow<'_, [u8]> {
    let tiling = crate::model::vision::llama4_tiling(width, height);
    let tile = crate::model::vision::LLAMA4_TILE_PX;
    let (canvas_w, canvas_h) = (tiling.cols * tile, tiling.rows * tile);
    if width <= canvas_w && height <= canvas_h {
        return Cow::Borrowed(bytes);
    }
    let Ok(opened) = open(bytes, crate::limits::MAX_SCAN_PIXELS) else {
        return Cow::Borrowed(bytes);
    };
    let Ok(img) = decode(bytes, &opened) else {
        return Cow::Borrowed(bytes);
    };
    let small = img.resize(canvas_w, canvas_h, image::imageops::FilterType::Triangle);
    let mut out = Vec::new();
    let written = if opened.format == ImageFormat::Jpeg {
        small
            .to_rgb8()
            .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90))
    } else {
        small.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
    };
    if written.is_ok() {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(bytes)
    }
}

/// Which images OCR passes over as decorative: a code repository's logos,
/// icons, badges and screenshots hold no text worth reading, and each costs
/// a tesseract run (a tenth to half a second). Such an image is still a
/// document (shown to engines that read images), recorded without text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decorative {
    /// Words that mark an image by its file name (case ignored, anywhere
    /// in the name: `favicon-32x32.png` holds `icon`).
    pub words: Vec<String>,
    /// Images whose longer side is shorter than this many pixels (icons:
    /// too small for a line of text).
    pub min_side: u32,
}

/// The words [`Decorative`] passes over by default.
pub const DECORATIVE_WORDS: &[&str] = &[
    "logo",
    "icon",
    "badge",
    "banner",
    "avatar",
    "emoji",
    "sprite",
    "screenshot",
];

/// The longer side below which an image is passed over by default.
pub const DECORATIVE_MIN_SIDE: u32 = 48;

impl Default for Decorative {
    fn default() -> Self {
        Decorative {
            words: DECORATIVE_WORDS.iter().map(|&w| w.to_owned()).collect(),
            min_side: DECORATIVE_MIN_SIDE,
        }
    }
}

impl Decorative {
    /// Whether the image at `path` (of pixel size `info`) is decorative.
    #[must_use]
    pub fn matches(&self, path: &str, info: &ImageInfo) -> bool {
        let name = path.rsplit(['/', '\\']).next().unwrap_or(path).to_lowercase();
        info.width.max(info.height) < self.min_side
            || self
                .words
                .iter()
                .any(|w| !w.is_empty() && name.contains(&w.to_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logos_icons_and_tiny_images_are_decorative() {
        let rule = Decorative::default();
        let big = ImageInfo {
            width: 800,
            height: 600,
        };
        assert!(rule.matches("playground/public/favicon-32x32.png", &big));
        assert!(rule.matches("docs/Screenshot 2024-01-02.PNG", &big));
        assert!(rule.matches("assets/Company-Logo.jpg", &big));
        assert!(!rule.matches("scans/receipt-001.png", &big));
        assert!(
            !rule.matches("logos/receipt-001.png", &big),
            "only the file name counts, not its folders"
        );
        let tiny = ImageInfo { width: 40, height: 12 };
        assert!(rule.matches("scans/receipt-001.png", &tiny));
        let none = Decorative {
            words: Vec::new(),
            min_side: 0,
        };
        assert!(!none.matches("favicon.png", &tiny));
    }

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

    /// A 6 x 4 test card in `format`, encoded by the `image` crate.
    fn encoded(format: ImageFormat) -> Vec<u8> {
        let img = image::RgbImage::from_fn(6, 4, |x, y| image::Rgb([(x * 40) as u8, (y * 60) as u8, 128]));
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), format)
            .unwrap();
        out
    }

    #[test]
    fn every_supported_format_opens_and_decodes() {
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Tiff,
            ImageFormat::WebP,
            ImageFormat::Gif,
            ImageFormat::Bmp,
        ] {
            let bytes = encoded(format);
            let opened = open(&bytes, 1_000).unwrap_or_else(|e| panic!("{format:?}: {e:?}"));
            assert_eq!((opened.info.width, opened.info.height, opened.format), (6, 4, format));
            let img = decode(&bytes, &opened).unwrap();
            assert_eq!((img.width(), img.height()), (6, 4));
            let ocr = for_ocr(&bytes, &opened).unwrap();
            // WebP and GIF go to tesseract as PNG; the others as they are.
            let converted = matches!(format, ImageFormat::WebP | ImageFormat::Gif);
            assert_eq!(matches!(ocr, Cow::Owned(_)), converted, "{format:?}");
            assert_eq!(
                image::guess_format(&ocr).unwrap(),
                if converted { ImageFormat::Png } else { format }
            );
        }
    }

    #[test]
    fn limits_and_garbage_are_typed_failures() {
        let png = encoded(ImageFormat::Png);
        assert!(matches!(open(&png, 23), Err(ImageFailure::TooLarge(_))));
        assert!(matches!(
            open(b"\x89PNG\r\n\x1a\n but no chunks", 1_000),
            Err(ImageFailure::Unreadable(_))
        ));
        assert!(matches!(open(b"plain text", 1_000), Err(ImageFailure::Unreadable(_))));
        // A valid header over a truncated body: opens, then fails to decode.
        let cut = &png[..png.len() - 20];
        let opened = open(cut, 1_000).unwrap();
        assert!(matches!(decode(cut, &opened), Err(ImageFailure::Unreadable(_))));
        // Wider than any image decoded, whatever the pixel budget.
        let mut wide = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        wide.extend_from_slice(&(MAX_IMAGE_SIDE + 1).to_be_bytes());
        wide.extend_from_slice(&1u32.to_be_bytes());
        wide.extend_from_slice(b"\x08\x02\0\0\0");
        let mut crc = flate2::Crc::new();
        crc.update(&wide[12..]);
        wide.extend_from_slice(&crc.sum().to_be_bytes());
        assert!(
            matches!(open(&wide, u64::MAX), Err(ImageFailure::TooLarge(_))),
            "{:?}",
            open(&wide, u64::MAX)
        );
    }

    #[test]
    fn an_image_larger_than_its_llama4_canvas_is_scaled_to_fit() {
        // Larger than its canvas (3 x 4 tiles: 1344 x 1008): scaled down to
        // fit it; one that fits goes as it is.
        let mut big = Vec::new();
        DynamicImage::ImageRgb8(image::RgbImage::new(4000, 3000))
            .write_to(&mut Cursor::new(&mut big), ImageFormat::Jpeg)
            .unwrap();
        let fitted = fitted_for_llama4(&big, 4000, 3000);
        let small = image::load_from_memory(&fitted).unwrap();
        assert_eq!((small.width(), small.height()), (1344, 1008));
        assert_eq!(image::guess_format(&fitted).unwrap(), ImageFormat::Jpeg);
        assert!(fitted.len() < big.len());
        let card = encoded(ImageFormat::Png);
        assert!(matches!(fitted_for_llama4(&card, 6, 4), Cow::Borrowed(_)));
    }
}
