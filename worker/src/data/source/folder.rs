//! `split_dir/class_name/…/image.ext`: one sub-directory a class, sorted names → labels
//! (as torchvision's `ImageFolder`), images found recursively below each class directory.
//! An eval or test split uses the train split's names, so labels agree across splits.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{hex, stamp, FileSample, Items, ListContext, Listing};
use crate::data::error::{DataError, Location};

/// Extensions we decode (case-insensitive); other files are listed as ignored.
pub(crate) const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Sorted class directory names of a split directory.
fn class_dirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // `metadata` follows symlinks: a linked class directory counts.
        let is_dir = std::fs::metadata(entry.path())
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_dir && !hidden(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Image files with their metadata, and the other files.
type Walked = (Vec<(PathBuf, std::fs::Metadata)>, Vec<PathBuf>);

/// Image files under a class directory (recursive, sorted), and the other files.
fn walk(dir: &Path) -> Result<Walked, DataError> {
    let mut images = Vec::new();
    let mut ignored = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).map_err(|e| DataError::io(&current, e))? {
            let entry = entry.map_err(|e| DataError::io(&current, e))?;
            let path = entry.path();
            if hidden(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let meta = std::fs::metadata(&path).map_err(|e| DataError::io(&path, e))?;
            if meta.is_dir() {
                stack.push(path);
            } else if is_image(&path) {
                images.push((path, meta));
            } else {
                ignored.push(path);
            }
        }
    }
    images.sort_by(|a, b| a.0.cmp(&b.0));
    ignored.sort();
    Ok((images, ignored))
}

pub(super) fn list(
    ctx: &ListContext<'_>,
    dir: &str,
    limit: Option<usize>,
) -> Result<Listing, DataError> {
    let split_dir = match dir {
        "" | "." => ctx.root.to_path_buf(),
        _ => ctx.root.join(dir),
    };
    let names = class_dirs(&split_dir)?;
    if names.is_empty() {
        return Err(DataError::format(&split_dir, "no class sub-directory"));
    }
    let class_names: Vec<String> = match ctx.class_names {
        Some(train) => {
            if let Some(unknown) = names.iter().find(|n| !train.contains(n)) {
                return Err(DataError::format(
                    &split_dir.join(unknown),
                    format!("class `{unknown}` is not a class of the train split"),
                ));
            }
            train.to_vec()
        }
        None => names.clone(),
    };
    let mut per_class = Vec::new();
    let mut ignored = Vec::new();
    for name in &names {
        let label = class_names.iter().position(|n| n == name).unwrap_or(0);
        let class_dir = split_dir.join(name);
        let (images, other) = walk(&class_dir)?;
        if images.is_empty() && ctx.class_names.is_none() {
            return Err(DataError::format(
                &class_dir,
                format!("class `{name}` has no image (.jpg, .jpeg, .png, .bmp)"),
            ));
        }
        ignored.extend(other);
        per_class.push((label, images));
    }
    // Class by class in turn, so that a `limit` keeps the classes balanced; the order of
    // an epoch is the loader's business.
    let longest = per_class.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let mut hasher = Sha256::new();
    let mut samples = Vec::new();
    'rounds: for round in 0..longest {
        for (label, images) in &per_class {
            if let Some((path, meta)) = images.get(round) {
                if limit.is_some_and(|l| samples.len() >= l) {
                    break 'rounds;
                }
                stamp(&mut hasher, path, meta);
                hasher.update((*label as u64).to_le_bytes());
                samples.push(FileSample {
                    location: Location::File(path.clone()),
                    label: *label as u32,
                });
            }
        }
    }
    Ok(Listing {
        items: Items::Files(samples),
        // Labels come from the class names: a class count that is not the model's is one
        // error reported by the caller, not a bad sample per image.
        bad: Vec::new(),
        fingerprint: hex(&hasher.finalize()),
        class_names: Some(class_names),
        ignored,
    })
}
