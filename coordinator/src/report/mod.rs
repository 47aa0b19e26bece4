//! Reports rendered from the store: tables, curves, factor effects.
//!
//! [`render`] turns a [`ReportData`] into Markdown, self-contained HTML, CSV or
//! `report.json`, and the claims' verdicts as CSV. A report can be rendered at any time; while runs are still training it
//! is marked partial.
//!
//! # Layout
//! - [`data`]: the input, filled by the store.
//! - [`summary`]: numbers derived from a run's epochs; seed aggregation.
//! - [`effects`]: factor effects of factorial grids.
//! - [`claims`]: the grid's claims judged on its runs (the "Claims" section).
//! - [`view`]: everything derived, computed once, and shared number formats.
//! - [`json`], [`csv`], [`markdown`], [`html`]: the renderers; [`charts`]: SVG curves.
//! - [`stopping`]: early stopping: stopped runs, their reasons, the compute saved.
//! - [`verdict`]: verdicts on a grid's claims (pure); [`stats`]: the t distribution.

pub mod charts;
pub mod claims;
pub mod csv;
pub mod data;
pub mod effects;
pub mod html;
pub mod json;
pub mod markdown;
pub mod stats;
pub mod stopping;
pub mod summary;
pub mod verdict;
pub mod view;

use std::fmt;
use std::str::FromStr;

pub use data::{ExperimentInfo, ReportData, RunData};
pub use view::ReportView;

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Markdown (`md`).
    Markdown,
    /// One self-contained HTML file with SVG charts (`html`).
    Html,
    /// The runs table as CSV (`csv`).
    Csv,
    /// `report.json` (`json`).
    Json,
    /// The claims' verdicts as CSV (`claims-csv`; written as `report.claims.csv`).
    ClaimsCsv,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 5] = [
        Format::Markdown,
        Format::Html,
        Format::Csv,
        Format::Json,
        Format::ClaimsCsv,
    ];

    /// The file extension (`md`, `html`, `csv`, `json`).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::ClaimsCsv => "claims.csv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A format name that is none of `md`, `html`, `csv`, `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown report format `{0}` (expected md, html, csv, json or claims-csv)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Parses `md`/`markdown`, `html`/`htm`, `csv`, `json`, `claims-csv` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md" | "markdown" => Ok(Format::Markdown),
            "html" | "htm" => Ok(Format::Html),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "claims-csv" | "claims.csv" => Ok(Format::ClaimsCsv),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

/// Renders a report of `data` in `format`.
pub fn render(data: &ReportData, format: Format) -> String {
    let view = ReportView::new(data);
    match format {
        Format::Markdown => markdown::render(&view),
        Format::Html => html::render(&view),
        Format::Csv => csv::render(&view),
        Format::Json => json::render(&view),
        Format::ClaimsCsv => claims::render_csv(&view.claims),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_name_the_bad_value() {
        assert_eq!("md".parse::<Format>(), Ok(Format::Markdown));
        assert_eq!("HTML".parse::<Format>(), Ok(Format::Html));
        assert_eq!("csv".parse::<Format>(), Ok(Format::Csv));
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        let err = "pdf".parse::<Format>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown report format `pdf` (expected md, html, csv, json or claims-csv)"
        );
        for f in Format::ALL {
            assert_eq!(f.extension().parse::<Format>(), Ok(f));
        }
    }
}
