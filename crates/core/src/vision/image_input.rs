//! Image inputs of a vision request (spec §7.12 `ImageInput.source`) → RGB pixels.
//!
//! A source is a file path, raw bytes (a Node `Buffer`), a `data:image/…;base64,` URI, bare
//! base64, or an http(s) URL. Bytes are bounded before anything is decoded (10 MiB for
//! in-request data, [`ImageLimits::max_fetch_bytes`] for files and downloads), downloads have a
//! whole-request timeout, and the picture's dimensions are read from its header and checked
//! before the pixels are decoded, so a 30000×30000 image is refused without allocating it.
//! Only PNG, JPEG and WebP are accepted. EXIF orientation is applied and the result is 8-bit
//! RGB (alpha dropped, gray replicated), as the reference processor sees images.
//!
//! Everything here is plain CPU work that runs off the engine thread.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{EngineError, EngineResult};

/// Spec §7.12: in-request image data (Buffer, data URI, bare base64) is at most 10 MiB decoded.
pub const MAX_INLINE_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ImageLimits {
    /// Largest file or download accepted.
    pub max_fetch_bytes: u64,
    /// Whole-request timeout of an http(s) download.
    pub fetch_timeout: Duration,
    /// Largest width × height accepted (checked from the header, before decoding).
    pub max_pixels: u64,
    /// Largest width or height accepted.
    pub max_side: u32,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_fetch_bytes: 32 * 1024 * 1024,
            fetch_timeout: Duration::from_secs(30),
            // 8192 × 8192: far above any model's max_pixels; larger pictures are refused rather
            // than decoded into gigabytes of RGB.
            max_pixels: 8192 * 8192,
            max_side: 16384,
        }
    }
}

/// Where an image comes from, after classifying the caller's string or bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
    Url(String),
}

fn bad(message: impl Into<String>) -> EngineError {
    EngineError::generation(message)
}

impl ImageSource {
    /// Classifies a string source: data URI, http(s) URL, an existing file, else bare base64.
    pub fn parse(s: &str) -> EngineResult<Self> {
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("Image source is empty"));
        }
        if let Some(rest) = t.strip_prefix("data:") {
            let (meta, data) = rest.split_once(',').ok_or_else(|| bad("Invalid data URI: missing ',' separator"))?;
            if !meta.ends_with(";base64") {
                return Err(bad("Invalid data URI: only base64-encoded image data URIs are supported"));
            }
            return Ok(ImageSource::Bytes(decode_base64(data)?));
        }
        let lower = t.get(..8).unwrap_or(t).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(ImageSource::Url(t.to_string()));
        }
        let path = PathBuf::from(t);
        if path.is_file() {
            return Ok(ImageSource::Path(path));
        }
        if looks_like_base64(t) {
            return Ok(ImageSource::Bytes(decode_base64(t)?));
        }
        Err(bad(format!("Image file not found: {t}")))
    }

    /// The encoded bytes, within the limits.
    pub fn read(&self, limits: &ImageLimits) -> EngineResult<Vec<u8>> {
        match self {
            ImageSource::Bytes(b) => {
                if b.len() > MAX_INLINE_BYTES {
                    return Err(bad(format!("Image data is {} bytes; the limit is {MAX_INLINE_BYTES}", b.len())));
                }
                Ok(b.clone())
            }
            ImageSource::Path(p) => {
                let len = std::fs::metadata(p).map_err(|e| bad(format!("Cannot read image file {}: {e}", p.display())))?.len();
                if len > limits.max_fetch_bytes {
                    return Err(bad(format!("Image file {} is {len} bytes; the limit is {}", p.display(), limits.max_fetch_bytes)));
                }
                std::fs::read(p).map_err(|e| bad(format!("Cannot read image file {}: {e}", p.display())))
            }
            ImageSource::Url(u) => fetch(u, limits),
        }
    }
}

fn looks_like_base64(s: &str) -> bool {
    let body: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    body.len() >= 16
        && body.len() % 4 == 0
        && body.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

fn decode_base64(data: &str) -> EngineResult<Vec<u8>> {
    let clean: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    // 4 base64 characters carry 3 bytes: refuse oversize payloads before decoding them.
    if clean.len() / 4 * 3 > MAX_INLINE_BYTES + 3 {
        return Err(bad(format!("Image data exceeds the {MAX_INLINE_BYTES}-byte limit")));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| bad(format!("Invalid base64 image data: {e}")))?;
    if bytes.len() > MAX_INLINE_BYTES {
        return Err(bad(format!("Image data exceeds the {MAX_INLINE_BYTES}-byte limit")));
    }
    Ok(bytes)
}

/// GET `url` with a whole-request timeout and a body size limit (non-2xx statuses are errors).
fn fetch(url: &str, limits: &ImageLimits) -> EngineResult<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(limits.fetch_timeout))
        .max_redirects(5)
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| bad(format!("Cannot fetch image {url}: {e}")))?;
    resp.body_mut()
        .with_config()
        .limit(limits.max_fetch_bytes)
        .read_to_vec()
        .map_err(|e| bad(format!("Cannot fetch image {url}: {e}")))
}

/// The format of `bytes` from its magic number, if it is one we accept.
fn accepted_format(bytes: &[u8]) -> EngineResult<ImageFormat> {
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => Ok(f),
        Ok(f) => Err(bad(format!("Unsupported image format {f:?} (supported: png, jpg, jpeg, webp)"))),
        Err(_) => Err(bad("Data is not a supported image (supported: png, jpg, jpeg, webp)")),
    }
}

/// Decodes PNG/JPEG/WebP bytes to RGB8 after checking the header's dimensions.
pub fn decode_rgb(bytes: &[u8], limits: &ImageLimits) -> EngineResult<RgbImage> {
    let format = accepted_format(bytes)?;
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| bad(format!("Cannot read the image header: {e}")))?;
    if w == 0 || h == 0 {
        return Err(bad("Image has zero width or height"));
    }
    if w > limits.max_side || h > limits.max_side || (w as u64) * (h as u64) > limits.max_pixels {
        return Err(bad(format!(
            "Image is {w}x{h} pixels; the limit is {} pixels and {} per side",
            limits.max_pixels, limits.max_side
        ))
        .with_detail("width", w)
        .with_detail("height", h));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(limits.max_side);
    lim.max_image_height = Some(limits.max_side);
    reader.limits(lim);
    let decode_err = |e: image::ImageError| bad(format!("Cannot decode the image: {e}"));
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}

/// Reads and decodes one image source.
pub fn load_rgb(src: &ImageSource, limits: &ImageLimits) -> EngineResult<RgbImage> {
    decode_rgb(&src.read(limits)?, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn classifies_sources() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(png(3, 2));
        assert!(matches!(ImageSource::parse(&format!("data:image/png;base64,{b64}")).unwrap(), ImageSource::Bytes(_)));
        assert!(matches!(ImageSource::parse(&b64).unwrap(), ImageSource::Bytes(_)));
        assert!(matches!(ImageSource::parse("https://example.invalid/a.png").unwrap(), ImageSource::Url(_)));
        let e = ImageSource::parse("/no/such/file.png").unwrap_err();
        assert!(e.message.contains("not found"), "{}", e.message);
        assert!(ImageSource::parse("data:image/png,rawdata").is_err());
        assert!(ImageSource::parse("").is_err());
    }

    #[test]
    fn decodes_png_to_rgb() {
        let img = decode_rgb(&png(5, 4), &ImageLimits::default()).unwrap();
        assert_eq!(img.dimensions(), (5, 4));
        assert_eq!(img.get_pixel(3, 2).0, [3, 2, 7]);
    }

    #[test]
    fn rejects_truncated_and_non_images() {
        let data = png(40, 40);
        let e = decode_rgb(&data[..data.len() / 2], &ImageLimits::default()).unwrap_err();
        assert!(e.message.contains("decode") || e.message.contains("header"), "{}", e.message);
        let e = decode_rgb(b"GIF89a not supported", &ImageLimits::default()).unwrap_err();
        assert!(e.message.contains("Unsupported") || e.message.contains("not a supported"), "{}", e.message);
        assert!(decode_rgb(b"hello world", &ImageLimits::default()).is_err());
    }

    #[test]
    fn rejects_huge_dimensions_from_the_header() {
        // A valid PNG header claiming 30000x30000 followed by nothing: refused by size, not by
        // a failed decode.
        let mut data = png(1, 1);
        data[16..20].copy_from_slice(&30000u32.to_be_bytes());
        data[20..24].copy_from_slice(&30000u32.to_be_bytes());
        // fix the IHDR CRC so the header itself is valid
        let crc = crc32(&data[12..29]);
        data[29..33].copy_from_slice(&crc.to_be_bytes());
        let e = decode_rgb(&data, &ImageLimits::default()).unwrap_err();
        assert!(e.message.contains("30000x30000"), "{}", e.message);
    }

    #[test]
    fn inline_size_limit() {
        let e = ImageSource::Bytes(vec![0; MAX_INLINE_BYTES + 1]).read(&ImageLimits::default()).unwrap_err();
        assert!(e.message.contains("limit"), "{}", e.message);
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
}
