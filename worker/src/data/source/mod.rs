//! Reading a split's index: which samples exist, their labels, and what is already wrong
//! with them. Image files are listed here and decoded later (see `decode`); IDX and CIFAR
//! files are small and are read whole into memory here.

mod cifar;
mod folder;
#[cfg(test)]
mod fuzz_tests;
mod idx;
mod listfile;

use std::path::{Path, PathBuf};

use ablate_common::spec::{DatasetFormat, DatasetSpec, SplitSpec};
use sha2::{Digest, Sha256};

use super::error::{BadSample, DataError, Location, Problem};

/// An image file and its label.
#[derive(Debug, Clone)]
pub(crate) struct FileSample {
    /// Where it was found; `location.file()` is the image.
    pub(crate) location: Location,
    /// Class index.
    pub(crate) label: u32,
}

/// Images already in memory at their native size, HWC u8, one after another.
#[derive(Debug, Clone)]
pub(crate) struct RawImages {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) channels: usize,
    pub(crate) pixels: Vec<u8>,
    pub(crate) labels: Vec<u32>,
}

impl RawImages {
    pub(crate) fn image(&self, index: usize) -> &[u8] {
        let size = self.width * self.height * self.channels;
        &self.pixels[index * size..(index + 1) * size]
    }

    /// Keeps the samples whose `keep` is true.
    fn retain(&mut self, keep: &[bool]) {
        let size = self.width * self.height * self.channels;
        let mut out = 0;
        for (i, &k) in keep.iter().enumerate() {
            if k {
                if out != i {
                    self.pixels
                        .copy_within(i * size..(i + 1) * size, out * size);
                    self.labels[out] = self.labels[i];
                }
                out += 1;
            }
        }
        self.pixels.truncate(out * size);
        self.labels.truncate(out);
    }
}

/// A split's samples.
#[derive(Debug, Clone)]
pub(crate) enum Items {
    /// Image files, decoded when needed.
    Files(Vec<FileSample>),
    /// Decoded at open (IDX, CIFAR).
    Memory(RawImages),
}

impl Items {
    pub(crate) fn len(&self) -> usize {
        match self {
            Items::Files(files) => files.len(),
            Items::Memory(raw) => raw.labels.len(),
        }
    }

    pub(crate) fn label(&self, index: usize) -> u32 {
        match self {
            Items::Files(files) => files[index].label,
            Items::Memory(raw) => raw.labels[index],
        }
    }

    /// Frees in-memory pixels once a prepared copy exists (labels stay).
    pub(crate) fn release_pixels(&mut self) {
        if let Items::Memory(raw) = self {
            raw.pixels = Vec::new();
        }
    }

    /// Keeps the samples whose `keep` is true.
    pub(crate) fn retain(&mut self, keep: &[bool]) {
        match self {
            Items::Files(files) => {
                let mut flags = keep.iter();
                files.retain(|_| *flags.next().unwrap_or(&true));
            }
            Items::Memory(raw) => raw.retain(keep),
        }
    }
}

/// A listed split: its samples, the bad ones found so far, and what identifies its content.
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) items: Items,
    /// Samples already known to be bad (not in `items`).
    pub(crate) bad: Vec<BadSample>,
    /// SHA-256 (hex) of the split's content identity: paths, labels, sizes, mtimes.
    pub(crate) fingerprint: String,
    /// Class names (`folder`), label order.
    pub(crate) class_names: Option<Vec<String>>,
    /// Files left out because their extension is not an image format we decode (`folder`).
    pub(crate) ignored: Vec<PathBuf>,
}

impl Listing {
    /// The listing of a source that has no class names and leaves no file out (all but
    /// `folder`), its fingerprint what `hasher` has seen.
    pub(crate) fn new(items: Items, bad: Vec<BadSample>, hasher: Sha256) -> Listing {
        Listing {
            items,
            bad,
            fingerprint: hex(&hasher.finalize()),
            class_names: None,
            ignored: Vec::new(),
        }
    }
}

/// What a source needs besides its split spec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListContext<'a> {
    pub(crate) root: &'a Path,
    pub(crate) split: &'a str,
    /// The model's class count; labels at or above it are bad samples. `None` (inspect
    /// without a run) checks only that labels are not negative.
    pub(crate) classes: Option<usize>,
    /// The train split's class names, for a `folder` eval/test split.
    pub(crate) class_names: Option<&'a [String]>,
}

impl ListContext<'_> {
    pub(crate) fn bad(&self, location: Location, problem: Problem) -> BadSample {
        BadSample {
            split: self.split.to_string(),
            location,
            problem,
        }
    }

    /// A label's problem, if any.
    pub(crate) fn check_label(&self, label: i64) -> Option<Problem> {
        let classes = self.classes.unwrap_or(usize::MAX);
        if label < 0 || label as u64 >= classes as u64 {
            Some(Problem::LabelOutOfRange {
                label,
                classes: self.classes.unwrap_or(0),
            })
        } else {
            None
        }
    }
}

/// Lists one split of a dataset.
pub(crate) fn list(
    spec: &DatasetSpec,
    split: &SplitSpec,
    ctx: ListContext<'_>,
) -> Result<Listing, DataError> {
    let need = |what: &str, value: &Option<String>| {
        value.clone().ok_or_else(|| {
            DataError::Spec(format!(
                "the {} split needs `{what}` for this format",
                ctx.split
            ))
        })
    };
    let mut listing = match spec.format {
        DatasetFormat::Listfile => listfile::list(&ctx, &need("list", &split.list)?, split.limit)?,
        DatasetFormat::Folder => folder::list(&ctx, &need("dir", &split.dir)?, split.limit)?,
        DatasetFormat::Idx => idx::list(
            &ctx,
            &need("images", &split.images)?,
            &need("labels", &split.labels)?,
            split.limit,
        )?,
        DatasetFormat::Cifar => {
            let files = split.files.clone().unwrap_or_default();
            if files.is_empty() {
                return Err(DataError::Spec(format!(
                    "the {} split needs `files`",
                    ctx.split
                )));
            }
            cifar::list(&ctx, &files, split.limit)?
        }
    };
    // The split's spec is part of its identity (a different limit is other data).
    let mut hasher = Sha256::new();
    hasher.update(listing.fingerprint.as_bytes());
    hasher.update(format!("{:?}|{split:?}", spec.format).as_bytes());
    listing.fingerprint = hex(&hasher.finalize());
    Ok(listing)
}

/// Adds a file's identity (path, size, modification time) to a fingerprint.
pub(crate) fn stamp(hasher: &mut Sha256, path: &Path, meta: &std::fs::Metadata) {
    hasher.update(path.as_os_str().as_encoded_bytes());
    hasher.update(meta.len().to_le_bytes());
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.update(mtime.to_le_bytes());
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The most bytes a gzipped dataset file may inflate to.
pub(crate) const MAX_INFLATED_BYTES: u64 = 16 << 30;

/// Reads a whole file, gunzipping it when it starts with the gzip magic.
pub(crate) fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(1 << 30));
        // A truncated gzip stream fails here; what was inflated before the cut is kept so
        // that the IDX reader can report the truncation by record. A stream that inflates
        // past the cap (a gzip bomb) is refused.
        let decoder = flate2::read::GzDecoder::new(&bytes[..]);
        if let Err(e) = decoder.take(MAX_INFLATED_BYTES + 1).read_to_end(&mut out) {
            if out.is_empty() {
                return Err(DataError::format(path, format!("bad gzip stream: {e}")));
            }
            tracing::warn!(path = %path.display(), error = %e, "gzip stream ends early");
        }
        if out.len() as u64 > MAX_INFLATED_BYTES {
            return Err(DataError::format(
                path,
                format!("inflates to more than {MAX_INFLATED_BYTES} bytes (the limit)"),
            ));
        }
        Ok(out)
    } else {
        Ok(bytes)
    }
}
