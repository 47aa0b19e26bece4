//! `ablate models`: the catalogue with parameter counts, forward FLOPs and the smallest
//! image size each model takes, for a given input and class count.

use std::fmt::Write as _;

use ablate_common::arch::analyse;
use ablate_common::spec::ModelFactors;
use ablate_common::zoo::{self, ZooError};
use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

/// Options of `ablate models`.
#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// Input height and width.
    #[arg(long, value_name = "N", default_value_t = 224)]
    pub image_size: usize,
    /// Number of classes.
    #[arg(long, value_name = "C", default_value_t = 16)]
    pub classes: usize,
    /// Input channels (1 for grayscale, 3 for RGB).
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub channels: usize,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show only this model.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// A factor override, e.g. `--set activation=relu --set concat_stages=5,6` (repeatable).
    /// Without `--model`, only the models that have every factor set are listed.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// One model's line, as `--json` prints it.
///
/// When the model cannot take the requested size, `params` and `flops` are 0 and `error`
/// says why (the counts at another size would be misleading); `error` is absent otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRow {
    /// Catalogue name.
    pub name: String,
    /// Trainable parameters at the requested size.
    pub params: u64,
    /// Forward FLOPs for one image at the requested size (2 per multiply-accumulate of the
    /// convolutions and linear layers).
    pub flops: u64,
    /// The smallest image size the model takes.
    pub min_image_size: usize,
    /// The requested image size.
    pub image_size: usize,
    /// One line about the model.
    pub description: String,
    /// Why the model cannot take the requested size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs `ablate models`: prints the table or the JSON array.
///
/// # Errors
/// An unknown model, a malformed `--set`, or a factor the model does not have.
pub fn run(args: &ModelsArgs) -> anyhow::Result<()> {
    let rows = rows(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(args, &rows));
    }
    Ok(())
}

/// The `--set` overrides as factors.
///
/// # Errors
/// A value without `=`, an unknown key or a value that does not parse.
pub fn parse_sets(sets: &[String]) -> anyhow::Result<ModelFactors> {
    let mut factors = ModelFactors::default();
    for set in sets {
        let Some((key, value)) = set.split_once('=') else {
            bail!("--set {set}: expected KEY=VALUE, e.g. --set activation=relu");
        };
        zoo::set_factor(&mut factors, key, value).with_context(|| format!("--set {set}"))?;
    }
    Ok(factors)
}

/// The rows `args` asks for, in catalogue order.
///
/// # Errors
/// As [`run`].
pub fn rows(args: &ModelsArgs) -> anyhow::Result<Vec<ModelRow>> {
    let factors = parse_sets(&args.set)?;
    let keys: Vec<&str> = args
        .set
        .iter()
        .filter_map(|s| s.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let names: Vec<&str> = match &args.model {
        Some(name) => vec![name.as_str()],
        None => zoo::names()
            .iter()
            .copied()
            .filter(|name| {
                zoo::accepted_factors(name).is_ok_and(|ok| keys.iter().all(|k| ok.contains(k)))
            })
            .collect(),
    };
    names
        .into_iter()
        .map(|name| row(name, &factors, args))
        .collect()
}

fn row(name: &str, factors: &ModelFactors, args: &ModelsArgs) -> anyhow::Result<ModelRow> {
    let min_image_size = zoo::min_image_size(name, factors, args.channels, args.classes)?;
    let mut row = ModelRow {
        name: name.to_owned(),
        params: 0,
        flops: 0,
        min_image_size,
        image_size: args.image_size,
        description: zoo::describe(name).unwrap_or_default().to_owned(),
        error: None,
    };
    match zoo::build(name, factors, args.channels, args.image_size, args.classes) {
        Ok(arch) => {
            let analysis = analyse(&arch).context("a catalogue model failed its analysis")?;
            row.params = analysis.params;
            row.flops = analysis.flops;
        }
        Err(
            e @ (ZooError::TooSmall { .. } | ZooError::Arch { .. } | ZooError::NoValidSize { .. }),
        ) => row.error = Some(e.to_string()),
        Err(e) => return Err(e.into()),
    }
    Ok(row)
}

/// The table: model, parameters, FLOPs, smallest size, and a note (the description, or why
/// the size does not fit).
pub fn table(args: &ModelsArgs, rows: &[ModelRow]) -> String {
    let size = args.image_size;
    let mut out = format!(
        "{} models at {}×{size}×{size}, {} classes{}\n",
        rows.len(),
        args.channels,
        args.classes,
        if args.set.is_empty() {
            String::new()
        } else {
            format!(", with {}", args.set.join(" "))
        },
    );
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| match &r.error {
            None => [
                r.name.clone(),
                human(r.params),
                human(r.flops),
                r.min_image_size.to_string(),
                r.description.clone(),
            ],
            Some(_) => [
                r.name.clone(),
                "-".into(),
                "-".into(),
                r.min_image_size.to_string(),
                format!(
                    "cannot take {size}×{size} images (smallest size {})",
                    r.min_image_size
                ),
            ],
        })
        .collect();
    let header = ["MODEL", "PARAMS", "FLOPS", "MIN SIZE", "NOTE"].map(String::from);
    let mut widths = [0usize; 5];
    for line in std::iter::once(&header).chain(&cells) {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in std::iter::once(&header).chain(&cells) {
        let [name, params, flops, min, note] = line;
        let _ = writeln!(
            out,
            "{name:<w0$}  {params:>w1$}  {flops:>w2$}  {min:>w3$}  {note}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    }
    out
}

/// `1234` → `1.23 K`, `301495488` → `301.50 M`, `2262451264` → `2.26 G`.
pub fn human(n: u64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")];
    let x = n as f64;
    UNITS
        .iter()
        .find(|(scale, _)| x >= *scale)
        .map(|(scale, unit)| format!("{:.2} {unit}", x / scale))
        .unwrap_or_else(|| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ModelsArgs {
        ModelsArgs {
            image_size: 224,
            classes: 16,
            channels: 3,
            json: false,
            model: None,
            set: Vec::new(),
        }
    }

    #[test]
    fn lists_the_whole_catalogue() {
        let rows = rows(&args()).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, zoo::names());
        let lenet = &rows[0];
        assert_eq!((lenet.params, lenet.min_image_size), (25_235_156, 28));
        assert!(rows.iter().all(|r| r.error.is_none() && r.flops > 0));
        let text = table(&args(), &rows);
        assert!(
            text.starts_with("19 models at 3×224×224, 16 classes\n"),
            "{text}"
        );
        assert!(text.contains("lenet"), "{text}");
        assert!(text.contains("25.24 M"), "{text}");
    }

    #[test]
    fn an_impossible_size_is_an_error_row() {
        let a = ModelsArgs {
            image_size: 30,
            ..args()
        };
        let rows = rows(&a).unwrap();
        let by = |n: &str| rows.iter().find(|r| r.name == n).unwrap().clone();
        let vgg = by("vgg13");
        assert_eq!((vgg.params, vgg.flops, vgg.min_image_size), (0, 0, 32));
        assert!(vgg.error.unwrap().contains("smallest size is 32"));
        assert!(by("lenet").error.is_none());
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(json[0]["name"], "lenet");
        assert!(json[0].get("error").is_none());
        assert_eq!(json[2]["params"], 0);
        assert!(json[2]["error"].is_string());
        assert!(table(&a, &rows).contains("cannot take 30×30 images (smallest size 32)"));
    }

    #[test]
    fn sets_apply_and_filter() {
        let a = ModelsArgs {
            set: vec!["head=gap".into(), "batch_norm=false".into()],
            ..args()
        };
        let rows = rows(&a).unwrap();
        assert!(rows.iter().all(|r| r.name.starts_with("cnn")), "{rows:?}");
        let cnn = rows.iter().find(|r| r.name == "cnn").unwrap();
        // cnn_sigmoid's convs with a 1024→16 fc: 43,630,208 + 16,400.
        assert_eq!(cnn.params, 43_630_208 + 16_400);
        let one = ModelsArgs {
            model: Some("lenet".into()),
            set: vec!["init=torch".into()],
            ..args()
        };
        assert_eq!(super::rows(&one).unwrap().len(), 1);
    }

    #[test]
    fn bad_sets_and_names_fail() {
        for set in ["activation", "colour=red", "dropout=lots"] {
            let a = ModelsArgs {
                set: vec![set.into()],
                ..args()
            };
            let err = format!("{:#}", rows(&a).unwrap_err());
            assert!(err.contains(set), "{err}");
        }
        let unsupported = ModelsArgs {
            model: Some("lenet".into()),
            set: vec!["batch_norm=true".into()],
            ..args()
        };
        let err = rows(&unsupported).unwrap_err().to_string();
        assert!(err.contains("has no factor `batch_norm`"), "{err}");
        let unknown = ModelsArgs {
            model: Some("resnet50".into()),
            ..args()
        };
        assert!(rows(&unknown)
            .unwrap_err()
            .to_string()
            .contains("unknown model"));
    }

    #[test]
    fn human_units() {
        assert_eq!(human(999), "999");
        assert_eq!(human(1_234), "1.23 K");
        assert_eq!(human(301_495_488), "301.50 M");
        assert_eq!(human(2_262_451_264), "2.26 G");
    }
}
