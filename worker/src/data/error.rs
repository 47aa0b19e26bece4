//! What can go wrong with data: one enum for the whole pipeline, and the record of one bad
//! sample (kept as a report under `on_bad_sample = "skip"`, raised as the error under
//! `"fail"`). Every message names the file, and the list line or record when there is one.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a sample came from, as precisely as the format allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An image file found by scanning a directory.
    File(PathBuf),
    /// A line of a list file, and the image file it names when the line parsed.
    Line {
        /// The list file.
        list: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The image the line names (absent when the line does not parse).
        file: Option<PathBuf>,
    },
    /// A record of a binary file (IDX, CIFAR), 0-based.
    Record {
        /// The binary file.
        file: PathBuf,
        /// 0-based record index.
        index: usize,
    },
}

impl Location {
    /// The file at fault: the image, or the list / binary file.
    pub fn file(&self) -> &Path {
        match self {
            Location::File(path) => path,
            Location::Line { list, file, .. } => file.as_deref().unwrap_or(list),
            Location::Record { file, .. } => file,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Line {
                list,
                line,
                file: Some(file),
            } => {
                write!(f, "{}:{line}: {}", list.display(), file.display())
            }
            Location::Line {
                list,
                line,
                file: None,
            } => write!(f, "{}:{line}", list.display()),
            Location::Record { file, index } => write!(f, "{} (record {index})", file.display()),
        }
    }
}

/// What is wrong with one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The image file is missing or cannot be read.
    Unreadable(String),
    /// The bytes are not an image the decoder understands (corrupt, truncated, other format).
    Undecodable(String),
    /// A list line that does not parse as `relative/path label`.
    BadLine(String),
    /// A label outside `0..classes`.
    LabelOutOfRange {
        /// The label as written.
        label: i64,
        /// The model's class count.
        classes: usize,
    },
    /// A binary file that ends inside its records: `complete` of `expected` records are
    /// whole (the rest are lost).
    Truncated {
        /// Whole records present.
        complete: usize,
        /// Records the header (or the file's shape) promises.
        expected: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unreadable(why) => write!(f, "cannot read: {why}"),
            Problem::Undecodable(why) => write!(f, "cannot decode: {why}"),
            Problem::BadLine(why) => write!(f, "bad line: {why}"),
            Problem::LabelOutOfRange { label, classes } => {
                write!(f, "label {label} is outside 0..{classes}")
            }
            Problem::Truncated { complete, expected } => write!(
                f,
                "truncated: {complete} of {expected} records are whole, {} lost",
                expected - complete
            ),
        }
    }
}

/// One sample that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSample {
    /// The split it belongs to (`train`, `eval`, `test`).
    pub split: String,
    /// Where it came from.
    pub location: Location,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for BadSample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} [{} split]",
            self.location, self.problem, self.split
        )
    }
}

/// Errors of the data pipeline.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A bad sample under `on_bad_sample = "fail"`.
    #[error("{0}")]
    BadSample(Box<BadSample>),
    /// A file or directory the dataset needs cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file whose structure is wrong as a whole (bad IDX magic, image and label counts
    /// that disagree, a class directory unknown to the train split).
    #[error("{}: {message}", path.display())]
    Format {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The dataset's class count is not the model's.
    #[error("the dataset has {inferred} classes ({how}) but the model has {expected}")]
    ClassCount {
        /// Classes found in the data.
        inferred: usize,
        /// The run's `classes`.
        expected: usize,
        /// How the count was found (e.g. `labels 0..9`, `16 class directories`).
        how: String,
    },
    /// A split with no usable sample.
    #[error("the {split} split has no usable sample{detail}")]
    Empty {
        /// The split.
        split: String,
        /// Extra context (how many were skipped).
        detail: String,
    },
    /// A dataset spec that cannot be honoured with this run (channels, mean/std length).
    #[error("dataset spec: {0}")]
    Spec(String),
    /// Batch options that make no sense (rank ≥ world, batch smaller than world, …).
    #[error("batch options: {0}")]
    Options(String),
    /// A loader thread stopped without an answer (a bug, reported instead of hanging).
    #[error("loader: {0}")]
    Loader(String),
    /// libtorch refused to build a tensor.
    #[error("tensor: {0}")]
    Tensor(#[from] tch::TchError),
}

impl DataError {
    /// The error for a bad sample under the `fail` policy.
    pub(crate) fn bad(sample: BadSample) -> DataError {
        DataError::BadSample(Box::new(sample))
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> DataError {
        DataError::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
