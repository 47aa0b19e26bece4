//! Where a run's images come from and how they are prepared.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::run::SpecError;

/// On-disk dataset layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// The seed's list files: each line `relative/path label`.
    Listfile,
    /// `split/class_name/image.ext`, classes sorted by name → labels.
    Folder,
    /// MNIST-style IDX image/label pairs, gzipped or not.
    Idx,
    /// CIFAR-10/100 binary batches.
    Cifar,
}

/// How images are brought to the run's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Resize (bilinear) to image_size × image_size.
    #[default]
    Resize,
    /// Zero-pad around the centre (e.g. Fashion-MNIST 28 → 32); larger images are
    /// centre-cropped.
    Pad,
}

/// What to do with a sample that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadSamplePolicy {
    /// Fail the run with an error naming the file (and line).
    #[default]
    Fail,
    /// Skip it, count it and report what was skipped.
    Skip,
}

/// Training-time augmentation (applied to the train split only).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Random crop after zero padding by this many pixels (0: off).
    #[serde(default)]
    pub crop_padding: usize,
    /// Random horizontal flip with probability 0.5.
    #[serde(default)]
    pub hflip: bool,
}

/// One split of a dataset. Which fields apply depends on the format:
/// `listfile` → `list`; `folder` → `dir`; `idx` → `images` + `labels`;
/// `cifar` → `files` (batch files). A bare string is the `list` / `dir`.
///
/// Written as a table (`train = { images = "…", labels = "…", limit = 3000 }`) or a bare
/// string (`train = "Train.txt"`); a misspelt key is an error that names it and lists the
/// keys a split knows.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SplitSpec {
    /// List file relative to the root (`listfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    /// Sub-directory relative to the root (`folder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// IDX images file (`idx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<String>,
    /// IDX labels file (`idx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// Binary batch files (`cifar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// Use only the first `limit` samples (for `folder`, the files are taken class by
    /// class in turn, so a limit keeps the classes balanced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// The table form of a split; serde's derive gives the precise unknown-key error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitTable {
    #[serde(default)]
    list: Option<String>,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    images: Option<String>,
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    files: Option<Vec<String>>,
    #[serde(default)]
    limit: Option<usize>,
}

// A hand-written visitor instead of `#[serde(untagged)]`: an untagged enum hides the real
// error ("data did not match any variant"), this one forwards the table's own error
// (`unknown field `imgaes`, expected one of `list`, `dir`, …`).
impl<'de> Deserialize<'de> for SplitSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SplitVisitor;

        impl<'de> serde::de::Visitor<'de> for SplitVisitor {
            type Value = SplitSpec;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a path (list file or directory) or a table with `list`, `dir`, `images`, \
                     `labels`, `files` or `limit`",
                )
            }

            fn visit_str<E: serde::de::Error>(self, path: &str) -> Result<SplitSpec, E> {
                Ok(SplitSpec {
                    list: Some(path.to_string()),
                    dir: Some(path.to_string()),
                    ..SplitSpec::default()
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SplitSpec, A::Error> {
                let t = SplitTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(SplitSpec {
                    list: t.list,
                    dir: t.dir,
                    images: t.images,
                    labels: t.labels,
                    files: t.files,
                    limit: t.limit,
                })
            }
        }

        deserializer.deserialize_any(SplitVisitor)
    }
}

/// A dataset: format, root, splits and preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// On-disk layout.
    pub format: DatasetFormat,
    /// Directory every split path is relative to.
    pub root: PathBuf,
    /// Training split.
    pub train: SplitSpec,
    /// Evaluation split (evaluated after every epoch).
    pub eval: SplitSpec,
    /// Optional held-out test split.
    #[serde(default)]
    pub test: Option<SplitSpec>,
    /// Resize or pad to the run's image size.
    #[serde(default)]
    pub fit: Fit,
    /// Per-channel mean (0–1 scale); computed once from the train split when absent.
    #[serde(default)]
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviation (0–1 scale); computed with `mean` when absent.
    #[serde(default)]
    pub std: Option<Vec<f64>>,
    /// Train-split augmentation.
    #[serde(default)]
    pub augment: Augment,
    /// Bad sample policy.
    #[serde(default)]
    pub on_bad_sample: BadSamplePolicy,
    /// Decoded splits up to this many MiB are cached in memory as u8.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: usize,
    /// Background threads that decode and assemble batches.
    #[serde(default = "default_loader_threads")]
    pub loader_threads: usize,
}

/// The largest `limit` of a split (samples).
pub const MAX_SPLIT_LIMIT: u64 = 1 << 32;
/// The largest `cache_mb`.
pub const MAX_CACHE_MB: u64 = 1 << 20;
/// The most `loader_threads`.
pub const MAX_LOADER_THREADS: u64 = 256;

fn default_cache_mb() -> usize {
    2048
}

fn default_loader_threads() -> usize {
    2
}

impl DatasetSpec {
    /// Checks that each split names what its format needs.
    pub fn check(&self) -> Result<(), SpecError> {
        let mut splits = vec![("train", &self.train), ("eval", &self.eval)];
        if let Some(test) = &self.test {
            splits.push(("test", test));
        }
        for (name, split) in splits {
            let missing = |what: &str| SpecError::Invalid {
                field: name.to_string(),
                message: format!("format `{:?}` needs `{what}`", self.format).to_lowercase(),
            };
            match self.format {
                DatasetFormat::Listfile if split.list.is_none() => return Err(missing("list")),
                DatasetFormat::Folder if split.dir.is_none() => return Err(missing("dir")),
                DatasetFormat::Idx if split.images.is_none() => return Err(missing("images")),
                DatasetFormat::Idx if split.labels.is_none() => return Err(missing("labels")),
                DatasetFormat::Cifar if split.files.is_none() => return Err(missing("files")),
                _ => {}
            }
            // Keys of another format are a mistake worth naming (a bare string fills both
            // `list` and `dir`, so those two are only checked for the binary formats).
            let foreign: &[(&str, bool)] = match self.format {
                DatasetFormat::Listfile | DatasetFormat::Folder => &[
                    ("images", split.images.is_some()),
                    ("labels", split.labels.is_some()),
                    ("files", split.files.is_some()),
                ],
                DatasetFormat::Idx => &[
                    ("list", split.list.is_some()),
                    ("dir", split.dir.is_some()),
                    ("files", split.files.is_some()),
                ],
                DatasetFormat::Cifar => &[
                    ("list", split.list.is_some()),
                    ("dir", split.dir.is_some()),
                    ("images", split.images.is_some()),
                    ("labels", split.labels.is_some()),
                ],
            };
            if let Some((key, _)) = foreign.iter().find(|(_, set)| *set) {
                return Err(SpecError::Invalid {
                    field: format!("{name}.{key}"),
                    message: format!("does not apply to format `{:?}`", self.format).to_lowercase(),
                });
            }
            if self.format == DatasetFormat::Cifar
                && split.files.as_ref().is_some_and(|f| f.is_empty())
            {
                return Err(SpecError::Invalid {
                    field: format!("{name}.files"),
                    message: "name at least one batch file".into(),
                });
            }
            if let Some(l) = split.limit.filter(|l| *l as u64 > MAX_SPLIT_LIMIT) {
                return Err(SpecError::Invalid {
                    field: format!("{name}.limit"),
                    message: format!("{l} (the limit is {MAX_SPLIT_LIMIT})"),
                });
            }
            if split.limit == Some(0) {
                return Err(SpecError::Invalid {
                    field: format!("{name}.limit"),
                    message: "must be at least 1".into(),
                });
            }
        }
        for (field, value, limit) in [
            ("cache_mb", self.cache_mb as u64, MAX_CACHE_MB),
            (
                "loader_threads",
                self.loader_threads as u64,
                MAX_LOADER_THREADS,
            ),
            (
                "augment.crop_padding",
                self.augment.crop_padding as u64,
                4_096,
            ),
        ] {
            if value > limit {
                return Err(SpecError::Invalid {
                    field: field.to_string(),
                    message: format!("{value} (the limit is {limit})"),
                });
            }
        }
        for (field, values) in [("mean", &self.mean), ("std", &self.std)] {
            if let Some(v) = values {
                if v.len() != 1 && v.len() != 3 {
                    return Err(SpecError::Invalid {
                        field: field.to_string(),
                        message: format!("{} values (expected 1 or 3)", v.len()),
                    });
                }
            }
        }
        if let Some(v) = &self.mean {
            if v.iter().any(|m| !m.is_finite()) {
                return Err(SpecError::Invalid {
                    field: "mean".into(),
                    message: "values must be finite".into(),
                });
            }
        }
        if let Some(v) = &self.std {
            if v.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(SpecError::Invalid {
                    field: "std".into(),
                    message: "values must be positive".into(),
                });
            }
        }
        if self.mean.is_some() != self.std.is_some() {
            return Err(SpecError::Invalid {
                field: "std".into(),
                message: "give both `mean` and `std`, or neither".into(),
            });
        }
        if self.loader_threads == 0 {
            return Err(SpecError::Invalid {
                field: "loader_threads".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DatasetSpec, String> {
        let spec: DatasetSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        spec.check().map_err(|e| e.to_string())?;
        Ok(spec)
    }

    #[test]
    fn split_tables_and_bare_strings_parse() {
        let spec = parse(
            "format = \"idx\"\nroot = \"/data\"\n\
             train = { images = \"a.gz\", labels = \"b.gz\", limit = 3 }\n\
             eval = { images = \"c\", labels = \"d\" }\n\
             augment = { crop_padding = 4, hflip = true }\non_bad_sample = \"skip\"\n",
        )
        .unwrap();
        assert_eq!(spec.train.images.as_deref(), Some("a.gz"));
        assert_eq!(spec.train.limit, Some(3));
        assert_eq!(spec.augment.crop_padding, 4);
        assert_eq!(spec.on_bad_sample, BadSamplePolicy::Skip);
        let folder =
            parse("format = \"folder\"\nroot = \"r\"\ntrain = \"tr\"\neval = \"ev\"\n").unwrap();
        assert_eq!(folder.train.dir.as_deref(), Some("tr"));
        assert_eq!((folder.cache_mb, folder.loader_threads), (2048, 2));
    }

    #[test]
    fn a_misspelt_split_key_is_named() {
        let err = parse(
            "format = \"idx\"\nroot = \"r\"\ntrain = { imgaes = \"a\", labels = \"b\" }\n\
             eval = { images = \"c\", labels = \"d\" }\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field `imgaes`"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn keys_of_another_format_are_refused() {
        let err = parse(
            "format = \"listfile\"\nroot = \"r\"\ntrain = { list = \"a\", images = \"x\" }\n\
             eval = \"b\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("train.images") && err.contains("listfile"),
            "{err}"
        );
    }

    #[test]
    fn std_must_be_positive_and_paired() {
        let base = "format = \"folder\"\nroot = \"r\"\ntrain = \"a\"\neval = \"b\"\n";
        assert!(parse(&format!("{base}mean = [0.5]\nstd = [0.0]\n")).is_err());
        assert!(parse(&format!("{base}mean = [0.5]\n")).is_err());
        assert!(parse(&format!("{base}mean = [0.5, 0.5, 0.5]\nstd = [0.2]\n")).is_ok());
    }

    #[test]
    fn a_split_round_trips_through_json() {
        let spec = parse(
            "format = \"listfile\"\nroot = \"r\"\ntrain = \"Train.txt\"\neval = \"Eval.txt\"\n",
        )
        .unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        let back: DatasetSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }
}
