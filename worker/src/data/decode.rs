//! Decoding image files (JPEG, PNG, BMP through the `image` crate) into 8-bit gray or RGB,
//! with buffers that a loader thread reuses from one image to the next.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{ColorType, DynamicImage, ImageDecoder, ImageReader};

use super::error::Problem;

/// A decoded (or in-memory) image: HWC, u8, 1 or 3 channels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) channels: usize,
    pub(crate) data: &'a [u8],
}

/// An image's header: size and colour type as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) width: usize,
    pub(crate) height: usize,
    /// Channels as stored (alpha included).
    pub(crate) channels: usize,
}

/// Reusable decode buffers (one per loader thread).
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    file: Vec<u8>,
    raw: Vec<u8>,
    pixels: Vec<u8>,
    /// Channels of the last decoded image as stored (alpha included).
    stored_channels: usize,
}

/// Whether a JPEG's last scan is followed by its end-of-image marker. The decoder behind
/// `image` (zune-jpeg, lenient mode) turns a cut file into an image with a grey bottom
/// instead of an error; PIL refuses such a file ("image file is truncated"), and so do we.
/// Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so the
/// last `FF DA` (start of scan) is the main image's last scan even when an EXIF thumbnail
/// precedes it.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        Some(at) => bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

fn undecodable(e: impl std::fmt::Display) -> Problem {
    Problem::Undecodable(e.to_string())
}

impl Decoder {
    /// Reads a file into the reused buffer.
    fn read(&mut self, path: &Path) -> Result<(), Problem> {
        self.file.clear();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut self.file))
            .map_err(|e| Problem::Unreadable(e.to_string()))?;
        if self.file.is_empty() {
            return Err(Problem::Undecodable("empty file".into()));
        }
        Ok(())
    }

    /// The header of an image file (reads the file, decodes no pixel).
    pub(crate) fn header(&mut self, path: &Path) -> Result<Header, Problem> {
        self.read(path)?;
        let decoder = ImageReader::new(Cursor::new(&self.file[..]))
            .with_guessed_format()
            .map_err(undecodable)?
            .into_decoder()
            .map_err(undecodable)?;
        let (width, height) = decoder.dimensions();
        Ok(Header {
            width: width as usize,
            height: height as usize,
            channels: decoder.color_type().channel_count() as usize,
        })
    }

    /// Channels of the last decoded image as stored (alpha included).
    pub(crate) fn stored_channels(&self) -> usize {
        self.stored_channels
    }

    /// Decodes an image file to 8-bit gray (1 channel) or RGB (3); alpha is dropped and
    /// 16-bit or float images are brought to 8 bits.
    pub(crate) fn decode(&mut self, path: &Path) -> Result<View<'_>, Problem> {
        self.read(path)?;
        if self.file.starts_with(&[0xFF, 0xD8]) && !jpeg_is_complete(&self.file) {
            return Err(Problem::Undecodable(
                "truncated JPEG (no end-of-image marker after the last scan)".into(),
            ));
        }
        let decoder = ImageReader::new(Cursor::new(&self.file[..]))
            .with_guessed_format()
            .map_err(undecodable)?
            .into_decoder()
            .map_err(undecodable)?;
        let (w, h) = decoder.dimensions();
        let (width, height) = (w as usize, h as usize);
        if width == 0 || height == 0 {
            return Err(Problem::Undecodable(format!(
                "empty image ({width}×{height})"
            )));
        }
        let color = decoder.color_type();
        self.stored_channels = color.channel_count() as usize;
        let total = usize::try_from(decoder.total_bytes()).map_err(undecodable)?;
        let channels = match color {
            ColorType::L8 | ColorType::Rgb8 => {
                self.pixels.resize(total, 0);
                decoder.read_image(&mut self.pixels).map_err(undecodable)?;
                color.channel_count() as usize
            }
            ColorType::La8 | ColorType::Rgba8 => {
                self.raw.resize(total, 0);
                decoder.read_image(&mut self.raw).map_err(undecodable)?;
                let stride = color.channel_count() as usize;
                let keep = stride - 1;
                self.pixels.clear();
                self.pixels.reserve(width * height * keep);
                for px in self.raw.chunks_exact(stride) {
                    self.pixels.extend_from_slice(&px[..keep]);
                }
                keep
            }
            _ => {
                // 16-bit and float images are rare in datasets: the generic path.
                let gray = matches!(color, ColorType::L16 | ColorType::La16);
                let image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
                self.pixels.clear();
                if gray {
                    self.pixels.extend_from_slice(image.to_luma8().as_raw());
                    1
                } else {
                    self.pixels.extend_from_slice(image.to_rgb8().as_raw());
                    3
                }
            }
        };
        Ok(View {
            width,
            height,
            channels,
            data: &self.pixels[..width * height * channels],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_jpegs_are_refused() {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 7]))
            .write_to(&mut bytes, image::ImageFormat::Jpeg)
            .unwrap();
        let bytes = bytes.into_inner();
        assert!(jpeg_is_complete(&bytes));
        assert!(!jpeg_is_complete(&bytes[..bytes.len() - 2]));
        assert!(!jpeg_is_complete(&bytes[..bytes.len() / 2]));
        // Trailing bytes after the end-of-image marker are tolerated.
        let mut padded = bytes.clone();
        padded.extend_from_slice(b"trailing");
        assert!(jpeg_is_complete(&padded));
    }
}
