//! The `data-bench` and `data-inspect` subcommands of `ablate-worker`: argument structs and
//! their `run` functions (the binary only dispatches to them).

use std::path::PathBuf;

use ablate_common::spec::{DatasetFormat, DatasetSpec};
use clap::Args;
use serde::Deserialize;

use crate::data::inspect::{inspect, InspectOptions};
use crate::data::throughput::{bench, BenchOptions};
use crate::data::DataError;

/// `ablate-worker data-bench`: decode-to-normalized-batch throughput, images/s.
#[derive(Debug, Clone, Args)]
pub struct DataBenchArgs {
    /// Dataset layout: `folder` (ROOT holds class sub-directories) or `listfile`.
    #[arg(long, default_value = "folder", value_parser = ["folder", "listfile"])]
    pub format: String,
    /// Dataset root.
    #[arg(long)]
    pub root: PathBuf,
    /// List file relative to ROOT (`--format listfile`).
    #[arg(long)]
    pub list: Option<String>,
    /// Output height and width.
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Loader threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Passes over the data; the best is reported.
    #[arg(long, default_value_t = 2)]
    pub epochs: u32,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `data-bench` and prints its result.
pub fn run_data_bench(args: &DataBenchArgs) -> Result<(), DataError> {
    let format = if args.format == "listfile" {
        DatasetFormat::Listfile
    } else {
        DatasetFormat::Folder
    };
    let report = bench(&BenchOptions {
        format,
        root: args.root.clone(),
        list: args.list.clone(),
        image_size: args.image_size,
        batch: args.batch,
        threads: args.threads,
        epochs: args.epochs,
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        println!(
            "ablate: {} images, {} threads, {}px, batch {}: {:.0} images/s",
            report.images, report.threads, report.image_size, report.batch, report.images_per_sec
        );
    }
    Ok(())
}

/// `ablate-worker data-inspect`: samples per split and class, image sizes, first bad samples.
#[derive(Debug, Clone, Args)]
pub struct DataInspectArgs {
    /// A TOML file: a run spec (its `[dataset]`), a grid (its `[base.dataset]`) or a bare
    /// dataset spec (`format`, `root`, `train`, `eval`, …).
    #[arg(long)]
    pub dataset: PathBuf,
    /// The model's class count (default: the spec's `classes`, if it has one).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Bad samples listed per split.
    #[arg(long, default_value_t = 10)]
    pub max_bad: usize,
    /// Read image headers only (fast; does not find corrupt pixel data).
    #[arg(long)]
    pub headers_only: bool,
    /// Threads that read the images (default: the spec's `loader_threads`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `data-inspect` and prints its report.
pub fn run_data_inspect(args: &DataInspectArgs) -> Result<(), DataError> {
    let text = std::fs::read_to_string(&args.dataset).map_err(|e| DataError::Io {
        path: args.dataset.clone(),
        source: e,
    })?;
    let (spec, classes) = dataset_of(&text, &args.dataset.display().to_string())?;
    let report = inspect(
        &spec,
        &InspectOptions {
            classes: args.classes.or(classes),
            max_bad: args.max_bad,
            decode: !args.headers_only,
            threads: args.threads.unwrap_or(spec.loader_threads).max(1),
        },
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{report}");
    }
    Ok(())
}

/// The dataset spec in a TOML text (run spec, grid or bare dataset), and the class count
/// written beside it, if any. Errors carry the file name and, where TOML gives one, the line.
pub fn dataset_of(text: &str, file_name: &str) -> Result<(DatasetSpec, Option<usize>), DataError> {
    #[derive(Deserialize)]
    struct InRun {
        dataset: DatasetSpec,
        classes: Option<usize>,
    }
    #[derive(Deserialize)]
    struct Base {
        dataset: DatasetSpec,
        classes: Option<usize>,
    }
    #[derive(Deserialize)]
    struct InGrid {
        base: Base,
    }
    let located = |e: toml::de::Error| {
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!("{file_name}:{line}")
            })
            .unwrap_or_else(|| file_name.to_string());
        DataError::Spec(format!("{at}: {}", e.message()))
    };
    let table: toml::Table = toml::from_str(text).map_err(located)?;
    let base_has_dataset = table
        .get("base")
        .and_then(|b| b.as_table())
        .is_some_and(|b| b.contains_key("dataset"));
    // `toml::from_str` on a typed view (rather than `Table::try_into`) keeps the spans.
    let (spec, classes) = if table.contains_key("dataset") {
        let run: InRun = toml::from_str(text).map_err(located)?;
        (run.dataset, run.classes)
    } else if base_has_dataset {
        let grid: InGrid = toml::from_str(text).map_err(located)?;
        (grid.base.dataset, grid.base.classes)
    } else {
        (toml::from_str::<DatasetSpec>(text).map_err(located)?, None)
    };
    spec.check()
        .map_err(|e| DataError::Spec(format!("{file_name}: {e}")))?;
    Ok((spec, classes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_is_found_in_run_grid_or_bare_specs() {
        let ds = "format = \"idx\"\nroot = \"/r\"\ntrain = { images = \"a\", labels = \"b\" }\n\
                  eval = { images = \"c\", labels = \"d\" }\n";
        let (bare, classes) = dataset_of(ds, "d.toml").unwrap();
        assert_eq!((bare.format, classes), (DatasetFormat::Idx, None));
        let run = format!("model = \"lenet\"\nclasses = 10\n[dataset]\n{ds}");
        assert_eq!(dataset_of(&run, "r.toml").unwrap().1, Some(10));
        let grid =
            format!("name = \"q\"\n[base]\nclasses = 10\n[base.dataset]\n{ds}[grid]\nseed = [1]\n");
        assert_eq!(dataset_of(&grid, "g.toml").unwrap().0, bare);
        let typo = ds.replace("images = \"a\"", "imgs = \"a\"");
        let err = dataset_of(&typo, "t.toml").unwrap_err().to_string();
        assert!(err.contains("t.toml:3") && err.contains("imgs"), "{err}");
    }
}
