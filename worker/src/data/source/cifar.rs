//! CIFAR-10/100 binary batches (<https://www.cs.toronto.edu/~kriz/cifar.html>): records of
//! a label byte (CIFAR-100: coarse then fine label bytes) and 3,072 pixel bytes, the red,
//! green and blue 32×32 planes in turn. CIFAR-100 uses the fine labels (100 classes), or
//! the coarse ones (20) when the model has 20 classes.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{stamp, Items, ListContext, Listing, RawImages};
use crate::data::error::{DataError, Location, Problem};

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Cifar10,
    Cifar100,
}

impl Variant {
    fn record(self) -> usize {
        match self {
            Variant::Cifar10 => 1 + PIXELS,
            Variant::Cifar100 => 2 + PIXELS,
        }
    }
}

/// Which CIFAR a file is: by its size when only one record size divides it, else by the
/// distribution's file names (`data_batch_N.bin`, `test_batch.bin` for CIFAR-10;
/// `train.bin`, `test.bin` for CIFAR-100).
fn variant_of(path: &Path, len: usize) -> Option<Variant> {
    let by10 = len.is_multiple_of(Variant::Cifar10.record());
    let by100 = len.is_multiple_of(Variant::Cifar100.record());
    match (by10, by100) {
        (true, false) => Some(Variant::Cifar10),
        (false, true) => Some(Variant::Cifar100),
        _ => {
            let name = path.file_name()?.to_string_lossy().to_lowercase();
            if name.starts_with("data_batch") || name.starts_with("test_batch") {
                Some(Variant::Cifar10)
            } else if name == "train.bin" || name == "test.bin" {
                Some(Variant::Cifar100)
            } else {
                None
            }
        }
    }
}

pub(super) fn list(
    ctx: &ListContext<'_>,
    files: &[String],
    limit: Option<usize>,
) -> Result<Listing, DataError> {
    let mut contents = Vec::new();
    for file in files {
        let path = ctx.root.join(file);
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        let meta = std::fs::metadata(&path).map_err(|e| DataError::io(&path, e))?;
        contents.push((path, bytes, meta));
    }
    // One variant for the split: the first file that tells decides, the others must agree.
    let mut variant = None;
    for (path, bytes, _) in &contents {
        if let Some(v) = variant_of(path, bytes.len()) {
            if variant.is_some_and(|known| known != v) {
                return Err(DataError::format(
                    path,
                    "mixes CIFAR-10 and CIFAR-100 batch files",
                ));
            }
            variant = variant.or(Some(v));
        }
    }
    let Some(variant) = variant else {
        return Err(DataError::format(
            &contents[0].0,
            "cannot tell CIFAR-10 (3,073-byte records) from CIFAR-100 (3,074-byte records)",
        ));
    };
    let coarse = variant == Variant::Cifar100 && ctx.classes == Some(20);
    let record = variant.record();
    let wanted = limit.unwrap_or(usize::MAX);
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut keep = Vec::new();
    let mut bad = Vec::new();
    let mut hasher = Sha256::new();
    for (path, bytes, meta) in &contents {
        if labels.len() >= wanted {
            break;
        }
        if bytes.is_empty() {
            return Err(DataError::format(path, "empty CIFAR batch file"));
        }
        stamp(&mut hasher, path, meta);
        let complete = bytes.len() / record;
        let take = complete.min(wanted - labels.len());
        if bytes.len() % record != 0 && take == complete {
            bad.push(ctx.bad(
                Location::Record {
                    file: path.clone(),
                    index: complete,
                },
                Problem::Truncated {
                    complete,
                    expected: complete + 1,
                },
            ));
        }
        pixels.reserve(take * PIXELS);
        for (index, rec) in bytes.chunks_exact(record).take(take).enumerate() {
            let (label, planes) = match variant {
                Variant::Cifar10 => (rec[0], &rec[1..]),
                Variant::Cifar100 if coarse => (rec[0], &rec[2..]),
                Variant::Cifar100 => (rec[1], &rec[2..]),
            };
            let problem = ctx.check_label(label as i64);
            keep.push(problem.is_none());
            if let Some(problem) = problem {
                bad.push(ctx.bad(
                    Location::Record {
                        file: path.clone(),
                        index,
                    },
                    problem,
                ));
            }
            // Planar RGB → interleaved (HWC).
            let (r, rest) = planes.split_at(SIDE * SIDE);
            let (g, b) = rest.split_at(SIDE * SIDE);
            for p in 0..SIDE * SIDE {
                pixels.extend_from_slice(&[r[p], g[p], b[p]]);
            }
            labels.push(label as u32);
        }
    }
    hasher.update([coarse as u8]);
    let mut raw = RawImages {
        width: SIDE,
        height: SIDE,
        channels: 3,
        pixels,
        labels,
    };
    if keep.iter().any(|k| !k) {
        raw.retain(&keep);
    }
    Ok(Listing::new(Items::Memory(raw), bad, hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_told_by_size_then_name() {
        let p = Path::new;
        assert_eq!(variant_of(p("x.bin"), 3073 * 10), Some(Variant::Cifar10));
        assert_eq!(variant_of(p("x.bin"), 3074 * 10), Some(Variant::Cifar100));
        assert_eq!(
            variant_of(p("data_batch_1.bin"), 3073 * 10 + 5),
            Some(Variant::Cifar10)
        );
        assert_eq!(variant_of(p("train.bin"), 7), Some(Variant::Cifar100));
        assert_eq!(variant_of(p("x.bin"), 7), None);
    }
}
