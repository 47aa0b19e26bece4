//! MNIST-style IDX files (<http://yann.lecun.com/exdb/mnist/>): a magic of two zero bytes,
//! a type code (0x08: unsigned bytes), the number of dimensions, each dimension as a
//! big-endian u32, then the data. Images are `[n, h, w]` (or `[n, h, w, c]`), labels `[n]`.
//! Gzipped files are recognised by their magic and inflated in memory.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{read_maybe_gzipped, stamp, Items, ListContext, Listing, RawImages};
use crate::data::error::{DataError, Location, Problem};

/// A parsed IDX file: its dimensions and its data (possibly shorter than they promise).
#[derive(Debug)]
pub(crate) struct Idx {
    pub(crate) dims: Vec<usize>,
    pub(crate) data: Vec<u8>,
}

impl Idx {
    /// Reads and checks the header; the data may be truncated (see [`Idx::complete`]).
    pub(crate) fn read(path: &Path) -> Result<Idx, DataError> {
        let mut bytes = read_maybe_gzipped(path)?;
        if bytes.len() < 4 {
            return Err(DataError::format(
                path,
                format!("{} bytes: too short for an IDX header", bytes.len()),
            ));
        }
        if bytes[0] != 0 || bytes[1] != 0 {
            return Err(DataError::format(
                path,
                format!(
                    "not an IDX file (magic {:02x} {:02x} {:02x} {:02x})",
                    bytes[0], bytes[1], bytes[2], bytes[3]
                ),
            ));
        }
        if bytes[2] != 0x08 {
            return Err(DataError::format(
                path,
                format!(
                    "IDX type code 0x{:02x}: only unsigned bytes (0x08) are supported",
                    bytes[2]
                ),
            ));
        }
        let ndims = bytes[3] as usize;
        let header = 4 + 4 * ndims;
        if ndims == 0 || bytes.len() < header {
            return Err(DataError::format(
                path,
                format!(
                    "IDX header of {ndims} dimensions does not fit in {} bytes",
                    bytes.len()
                ),
            ));
        }
        let dims: Vec<usize> = (0..ndims)
            .map(|d| {
                let at = 4 + 4 * d;
                u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                    as usize
            })
            .collect();
        bytes.drain(..header);
        let idx = Idx { dims, data: bytes };
        let expected = idx.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match expected {
            Some(expected) if idx.data.len() > expected => Err(DataError::format(
                path,
                format!(
                    "{} bytes after the data that the header {:?} describes",
                    idx.data.len() - expected,
                    idx.dims
                ),
            )),
            None => Err(DataError::format(
                path,
                format!("IDX dimensions {:?} overflow", idx.dims),
            )),
            Some(_) => Ok(idx),
        }
    }

    /// Records the header promises.
    pub(crate) fn count(&self) -> usize {
        self.dims[0]
    }

    /// Bytes of one record.
    pub(crate) fn record(&self) -> usize {
        self.dims[1..].iter().product()
    }

    /// Whole records present.
    pub(crate) fn complete(&self) -> usize {
        match self.record() {
            0 => self.count(),
            r => (self.data.len() / r).min(self.count()),
        }
    }
}

pub(super) fn list(
    ctx: &ListContext<'_>,
    images: &str,
    labels: &str,
    limit: Option<usize>,
) -> Result<Listing, DataError> {
    let images_path = ctx.root.join(images);
    let labels_path = ctx.root.join(labels);
    let images = Idx::read(&images_path)?;
    let labels = Idx::read(&labels_path)?;
    let (height, width, channels) = match images.dims[..] {
        [_, h, w] => (h, w, 1),
        [_, h, w, c] if c == 1 || c == 3 => (h, w, c),
        _ => {
            return Err(DataError::format(
                &images_path,
                format!(
                    "IDX images have dimensions {:?}; expected [n, h, w] or [n, h, w, c]",
                    images.dims
                ),
            ))
        }
    };
    if height == 0 || width == 0 {
        return Err(DataError::format(
            &images_path,
            format!("empty images ({height}×{width})"),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(DataError::format(
            &labels_path,
            format!("IDX labels have dimensions {:?}; expected [n]", labels.dims),
        ));
    }
    if images.count() != labels.count() {
        return Err(DataError::format(
            &images_path,
            format!(
                "{} images but {} labels in {}",
                images.count(),
                labels.count(),
                labels_path.display()
            ),
        ));
    }
    let wanted = limit.map_or(images.count(), |l| l.min(images.count()));
    let mut bad = Vec::new();
    for (path, file) in [(&images_path, &images), (&labels_path, &labels)] {
        if file.complete() < wanted {
            bad.push(ctx.bad(
                Location::Record {
                    file: path.clone(),
                    index: file.complete(),
                },
                Problem::Truncated {
                    complete: file.complete(),
                    expected: file.count(),
                },
            ));
        }
    }
    let count = wanted.min(images.complete()).min(labels.complete());
    let mut keep = vec![true; count];
    let mut label_values = Vec::with_capacity(count);
    for (index, &label) in labels.data[..count].iter().enumerate() {
        if let Some(problem) = ctx.check_label(label as i64) {
            keep[index] = false;
            bad.push(ctx.bad(
                Location::Record {
                    file: labels_path.clone(),
                    index,
                },
                problem,
            ));
        }
        label_values.push(label as u32);
    }
    let mut pixels = images.data;
    pixels.truncate(count * height * width * channels);
    let mut raw = RawImages {
        width,
        height,
        channels,
        pixels,
        labels: label_values,
    };
    if keep.iter().any(|k| !k) {
        raw.retain(&keep);
    }
    let mut hasher = Sha256::new();
    for path in [&images_path, &labels_path] {
        let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
        stamp(&mut hasher, path, &meta);
    }
    hasher.update((count as u64).to_le_bytes());
    Ok(Listing::new(Items::Memory(raw), bad, hasher))
}
