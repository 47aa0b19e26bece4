//! `ablate-worker data-inspect`: what a dataset holds before GPU hours are spent on it —
//! samples per split and class, the image sizes met, and the first bad samples, found by
//! decoding every image (or, faster, by reading only their headers).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use ablate_common::spec::DatasetSpec;
use serde::Serialize;

use super::decode::Decoder;
use super::error::{BadSample, DataError, Problem};
use super::source::{self, Items, ListContext, Listing};

/// What to inspect and how.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// The model's class count, when known: labels at or above it are bad, and the count
    /// found in the data is compared with it.
    pub classes: Option<usize>,
    /// Bad samples listed per split (all are counted).
    pub max_bad: usize,
    /// Decode every image (finds corrupt files); `false` reads headers only.
    pub decode: bool,
    /// Threads that read the images.
    pub threads: usize,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            classes: None,
            max_bad: 10,
            decode: true,
            threads: 2,
        }
    }
}

/// How many images have one size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeCount {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Channels as stored (alpha included).
    pub channels: usize,
    /// Images of this size.
    pub count: usize,
}

/// One split's report.
#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    /// `train`, `eval` or `test`.
    pub name: String,
    /// Samples that can be used.
    pub usable: usize,
    /// Bad samples (listing and decoding).
    pub bad: usize,
    /// Usable samples per label (index = label).
    pub per_class: Vec<usize>,
    /// Image sizes, most frequent first.
    pub sizes: Vec<SizeCount>,
    /// The first bad samples, as messages naming file and line.
    pub first_bad: Vec<String>,
    /// Files left out for their extension (`folder`).
    pub ignored_files: usize,
    /// The first of those files.
    pub first_ignored: Vec<PathBuf>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// `listfile`, `folder`, `idx` or `cifar`.
    pub format: String,
    /// The dataset root.
    pub root: PathBuf,
    /// Classes found in the data.
    pub classes: usize,
    /// Class names in label order (`folder`).
    pub class_names: Option<Vec<String>>,
    /// The class-count mismatch with the model, if any.
    pub class_mismatch: Option<String>,
    /// Per split.
    pub splits: Vec<SplitReport>,
}

/// Inspects a dataset: never stops at a bad sample, reports them all.
pub fn inspect(spec: &DatasetSpec, opts: &InspectOptions) -> Result<Inspection, DataError> {
    spec.check().map_err(|e| DataError::Spec(e.to_string()))?;
    let ctx = |split| ListContext {
        root: &spec.root,
        split,
        classes: opts.classes,
        class_names: None,
    };
    let train = source::list(spec, &spec.train, ctx("train"))?;
    let names = train.class_names.clone();
    let with_names = |split| ListContext {
        class_names: names.as_deref(),
        ..ctx(split)
    };
    let mut listings = vec![
        ("train", train),
        ("eval", source::list(spec, &spec.eval, with_names("eval"))?),
    ];
    if let Some(test) = &spec.test {
        listings.push(("test", source::list(spec, test, with_names("test"))?));
    }

    let mut splits = Vec::new();
    let mut max_label: Option<u32> = None;
    for (name, listing) in listings {
        let report = inspect_split(name, listing, opts)?;
        if let Some(last) = report.per_class.iter().rposition(|&c| c > 0) {
            max_label = max_label.max(Some(last as u32));
        }
        splits.push(report);
    }
    let classes = match &names {
        Some(names) => names.len(),
        None => max_label.map_or(0, |m| m as usize + 1),
    };
    let class_mismatch = match opts.classes {
        Some(expected) if expected != classes => Some(format!(
            "the dataset has {classes} classes but the model has {expected}"
        )),
        _ => None,
    };
    for split in &mut splits {
        split
            .per_class
            .resize(classes.max(split.per_class.len()), 0);
    }
    Ok(Inspection {
        format: format!("{:?}", spec.format).to_lowercase(),
        root: spec.root.clone(),
        classes,
        class_names: names,
        class_mismatch,
        splits,
    })
}

fn inspect_split(
    name: &str,
    listing: Listing,
    opts: &InspectOptions,
) -> Result<SplitReport, DataError> {
    let mut bad: Vec<BadSample> = listing.bad;
    let mut sizes: BTreeMap<(usize, usize, usize), usize> = BTreeMap::new();
    let mut usable = vec![true; listing.items.len()];
    match &listing.items {
        Items::Memory(raw) => {
            if !raw.labels.is_empty() {
                sizes.insert((raw.width, raw.height, raw.channels), raw.labels.len());
            }
        }
        Items::Files(files) => {
            let results = read_all(files, opts)?;
            for (index, result) in results.into_iter().enumerate() {
                match result {
                    Ok(key) => *sizes.entry(key).or_default() += 1,
                    Err(problem) => {
                        usable[index] = false;
                        bad.push(BadSample {
                            split: name.to_string(),
                            location: files[index].location.clone(),
                            problem,
                        });
                    }
                }
            }
        }
    }
    let mut per_class: Vec<usize> = Vec::new();
    for (index, ok) in usable.iter().enumerate() {
        if *ok {
            let label = listing.items.label(index) as usize;
            if per_class.len() <= label {
                per_class.resize(label + 1, 0);
            }
            per_class[label] += 1;
        }
    }
    let mut sizes: Vec<SizeCount> = sizes
        .into_iter()
        .map(|((width, height, channels), count)| SizeCount {
            width,
            height,
            channels,
            count,
        })
        .collect();
    sizes.sort_by_key(|s| std::cmp::Reverse(s.count));
    Ok(SplitReport {
        name: name.to_string(),
        usable: usable.iter().filter(|&&ok| ok).count(),
        bad: bad.len(),
        per_class,
        sizes,
        first_bad: bad
            .iter()
            .take(opts.max_bad)
            .map(|b| b.to_string())
            .collect(),
        ignored_files: listing.ignored.len(),
        first_ignored: listing.ignored.iter().take(opts.max_bad).cloned().collect(),
    })
}

type SizeKey = (usize, usize, usize);

/// Reads every file (decode or header) with `opts.threads` threads, in order.
fn read_all(
    files: &[source::FileSample],
    opts: &InspectOptions,
) -> Result<Vec<Result<SizeKey, Problem>>, DataError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let per_thread = files.len().div_ceil(opts.threads.max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut decoder = Decoder::default();
                    chunk
                        .iter()
                        .map(|f| {
                            let path = f.location.file();
                            if opts.decode {
                                let view = decoder.decode(path)?;
                                let (w, h) = (view.width, view.height);
                                Ok((w, h, decoder.stored_channels()))
                            } else {
                                decoder
                                    .header(path)
                                    .map(|h| (h.width, h.height, h.channels))
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(files.len());
        for handle in handles {
            all.extend(
                handle
                    .join()
                    .map_err(|_| DataError::Loader("an inspect thread panicked".into()))?,
            );
        }
        Ok(all)
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset: {} at {}", self.format, self.root.display())?;
        match &self.class_names {
            Some(names) => writeln!(f, "classes: {} ({})", self.classes, names.join(", "))?,
            None => writeln!(f, "classes: {}", self.classes)?,
        }
        if let Some(mismatch) = &self.class_mismatch {
            writeln!(f, "CLASS COUNT MISMATCH: {mismatch}")?;
        }
        for split in &self.splits {
            writeln!(f)?;
            writeln!(
                f,
                "{}: {} usable, {} bad",
                split.name, split.usable, split.bad
            )?;
            let counts: Vec<String> = split
                .per_class
                .iter()
                .enumerate()
                .map(|(label, n)| match &self.class_names {
                    Some(names) if label < names.len() => format!("{}={n}", names[label]),
                    _ => format!("{label}={n}"),
                })
                .collect();
            writeln!(f, "  per class: {}", counts.join(" "))?;
            let sizes: Vec<String> = split
                .sizes
                .iter()
                .take(8)
                .map(|s| format!("{}x{}x{}: {}", s.width, s.height, s.channels, s.count))
                .collect();
            let more = split.sizes.len().saturating_sub(8);
            let more = if more > 0 {
                format!(" (+{more} other sizes)")
            } else {
                String::new()
            };
            writeln!(f, "  sizes (w x h x channels): {}{more}", sizes.join(", "))?;
            if split.bad > 0 {
                writeln!(
                    f,
                    "  bad samples (first {} of {}):",
                    split.first_bad.len(),
                    split.bad
                )?;
                for b in &split.first_bad {
                    writeln!(f, "    {b}")?;
                }
            }
            if split.ignored_files > 0 {
                let plural = if split.ignored_files == 1 { "" } else { "s" };
                writeln!(
                    f,
                    "  ignored {} file{plural} (not .jpg/.jpeg/.png/.bmp), e.g.:",
                    split.ignored_files
                )?;
                for p in &split.first_ignored {
                    writeln!(f, "    {}", p.display())?;
                }
            }
        }
        Ok(())
    }
}
