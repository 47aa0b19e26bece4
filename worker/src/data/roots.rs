//! The directories an agent may read datasets from (`ablate-worker --data-root`, repeatable).
//!
//! A run spec comes from the coordinator, that is from any user of it: without this check a
//! grid could make a worker read (and quote in errors) any file on its host. Roots and
//! dataset paths are canonicalized, so neither `..` nor a symlink leads out of a root.

use std::path::{Component, Path, PathBuf};

use ablate_common::spec::DatasetSpec;

/// Where datasets live when no `--data-root` is given (Debian's dataset packages).
pub const DEFAULT_DATA_ROOT: &str = "/usr/share/datasets";

/// A data root that does not exist, or a dataset path a worker may not read.
#[derive(Debug, thiserror::Error)]
pub enum DataRootError {
    /// A `--data-root` that cannot be resolved.
    #[error("--data-root {}: {source}", .path.display())]
    Root {
        /// The root as given.
        path: PathBuf,
        /// Why it cannot be resolved.
        #[source]
        source: std::io::Error,
    },
    /// A dataset path that cannot be resolved.
    #[error("{field} `{shown}`: {source} (datasets are read only under: {allowed})")]
    Unresolved {
        /// The spec's field.
        field: String,
        /// The path, shortened and printable.
        shown: String,
        /// The data roots, for the message.
        allowed: String,
        /// Why it cannot be resolved.
        #[source]
        source: std::io::Error,
    },
    /// A dataset path that resolves outside every data root.
    #[error(
        "{field} `{shown}` is outside the data roots of this worker ({allowed}); its admin can \
         add one with --data-root"
    )]
    Outside {
        /// The spec's field.
        field: String,
        /// The path, shortened and printable.
        shown: String,
        /// The data roots, for the message.
        allowed: String,
    },
    /// A split path that is absolute or steps up.
    #[error("{field} `{shown}`: must be a path relative to dataset.root, without `..`")]
    NotRelative {
        /// The spec's field.
        field: String,
        /// The path, shortened and printable.
        shown: String,
    },
}

/// The allowed roots, canonicalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoots {
    roots: Vec<PathBuf>,
    shown: Vec<PathBuf>,
}

/// A short, printable excerpt of untrusted text for an error message: at most `max`
/// characters, control characters replaced by `?`.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// Whether `path` is relative and never steps up (`..`) nor names a root or drive.
pub fn is_contained_relative(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

impl DataRoots {
    /// Roots as given on the command line; each must exist.
    pub fn new(paths: &[PathBuf]) -> Result<DataRoots, DataRootError> {
        let mut roots = Vec::new();
        for path in paths {
            let canonical = path.canonicalize().map_err(|source| DataRootError::Root {
                path: path.clone(),
                source,
            })?;
            roots.push(canonical);
        }
        Ok(DataRoots {
            roots,
            shown: paths.to_vec(),
        })
    }

    /// The default roots: [`DEFAULT_DATA_ROOT`] when it exists (none otherwise).
    pub fn default_roots() -> DataRoots {
        let default = PathBuf::from(DEFAULT_DATA_ROOT);
        DataRoots::new(std::slice::from_ref(&default)).unwrap_or(DataRoots {
            roots: Vec::new(),
            shown: vec![default],
        })
    }

    /// The roots as given (for registration and messages).
    pub fn shown(&self) -> Vec<String> {
        self.shown.iter().map(|p| p.display().to_string()).collect()
    }

    fn allowed_list(&self) -> String {
        if self.shown.is_empty() {
            "none (start the worker with --data-root DIR)".into()
        } else {
            self.shown()
                .iter()
                .map(|s| excerpt(s, 200))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// `Ok` when `path` exists and resolves (symlinks followed) inside a root.
    pub fn check_path(&self, field: &str, path: &Path) -> Result<(), DataRootError> {
        let shown = excerpt(&path.display().to_string(), 200);
        let canonical = match path.canonicalize() {
            Ok(canonical) => canonical,
            Err(source) => {
                return Err(DataRootError::Unresolved {
                    field: field.to_string(),
                    shown,
                    allowed: self.allowed_list(),
                    source,
                })
            }
        };
        if self.roots.iter().any(|root| canonical.starts_with(root)) {
            Ok(())
        } else {
            Err(DataRootError::Outside {
                field: field.to_string(),
                shown,
                allowed: self.allowed_list(),
            })
        }
    }

    /// Checks a dataset: its root inside a data root; every split path relative, without
    /// `..`, and (where it exists) resolving inside a data root.
    pub fn check_dataset(&self, spec: &DatasetSpec) -> Result<(), DataRootError> {
        self.check_path("dataset.root", &spec.root)?;
        let mut splits = vec![("train", &spec.train), ("eval", &spec.eval)];
        if let Some(test) = &spec.test {
            splits.push(("test", test));
        }
        for (name, split) in splits {
            let mut paths: Vec<(&str, &str)> = Vec::new();
            for (key, value) in [
                ("list", split.list.as_deref()),
                ("dir", split.dir.as_deref()),
                ("images", split.images.as_deref()),
                ("labels", split.labels.as_deref()),
            ] {
                if let Some(v) = value {
                    paths.push((key, v));
                }
            }
            for file in split.files.iter().flatten() {
                paths.push(("files", file.as_str()));
            }
            for (key, value) in paths {
                let field = format!("dataset.{name}.{key}");
                if !is_contained_relative(Path::new(value)) {
                    return Err(DataRootError::NotRelative {
                        field,
                        shown: excerpt(value, 200),
                    });
                }
                let full = spec.root.join(value);
                if full.exists() {
                    self.check_path(&field, &full)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_printable() {
        assert_eq!(excerpt("root:x:0:0\u{1b}[2J", 40), "root:x:0:0?[2J");
        assert_eq!(excerpt("abcdef", 3), "abc…");
    }

    #[test]
    fn relative_paths_stay_inside() {
        assert!(is_contained_relative(Path::new("a/b.gz")));
        assert!(is_contained_relative(Path::new("./a")));
        assert!(!is_contained_relative(Path::new("../a")));
        assert!(!is_contained_relative(Path::new("a/../../b")));
        assert!(!is_contained_relative(Path::new("/etc/passwd")));
    }

    #[test]
    fn paths_outside_and_symlinks_out_are_refused() {
        let base = std::env::temp_dir().join(format!("ablate-roots-{}", std::process::id()));
        let allowed = base.join("datasets");
        let outside = base.join("secret");
        std::fs::create_dir_all(allowed.join("mnist")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("key"), "x").unwrap();
        let _ = std::fs::remove_file(allowed.join("escape"));
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, allowed.join("escape")).unwrap();
        let roots = DataRoots::new(std::slice::from_ref(&allowed)).unwrap();
        assert!(roots.check_path("r", &allowed.join("mnist")).is_ok());
        let err = roots
            .check_path("dataset.root", &outside)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the data roots"), "{err}");
        assert!(err.contains(&allowed.display().to_string()), "{err}");
        #[cfg(unix)]
        assert!(roots.check_path("r", &allowed.join("escape/key")).is_err());
        assert!(roots
            .check_path("r", &allowed.join("mnist/../../secret"))
            .is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
