//! Per-epoch curves as SVG, drawn with `plotters`: one chart a metric, every run overlaid
//! in its own colour, a legend under the plot (in table order, best run first).
//!
//! Each run with at least one finite value is exactly one `<polyline>` with one point an
//! epoch (non-finite values are skipped), followed by a dot an epoch when the runs are
//! short enough for dots to be legible. Axes and legend swatches are rectangles and grid
//! lines are `<line>`s, so the polylines of a chart are its series and nothing else.

use ablate_common::metrics::EpochRecord;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::view::ReportView;

/// A metric that gets a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Eval accuracy, percent.
    EvalAcc,
    /// Eval loss.
    EvalLoss,
    /// Train loss.
    TrainLoss,
    /// Learning rate (log axis when it spans more than a decade).
    Lr,
}

impl Metric {
    /// Every charted metric, in report order.
    pub const ALL: [Metric; 4] = [
        Metric::EvalAcc,
        Metric::EvalLoss,
        Metric::TrainLoss,
        Metric::Lr,
    ];

    /// The key the HTML tags a chart with (`data-metric`), as in report.json.
    pub fn key(self) -> &'static str {
        match self {
            Metric::EvalAcc => "eval_acc",
            Metric::EvalLoss => "eval_loss",
            Metric::TrainLoss => "train_loss",
            Metric::Lr => "lr",
        }
    }

    /// What the chart shows, in a sentence.
    pub fn description(self) -> &'static str {
        match self {
            Metric::EvalAcc => "Accuracy on the eval split after each epoch.",
            Metric::EvalLoss => "Cross-entropy on the eval split after each epoch.",
            Metric::TrainLoss => "Mean training cross-entropy over each epoch's batches.",
            Metric::Lr => "Learning rate used in each epoch.",
        }
    }

    /// Chart title.
    pub fn title(self) -> &'static str {
        match self {
            Metric::EvalAcc => "Eval accuracy",
            Metric::EvalLoss => "Eval loss",
            Metric::TrainLoss => "Train loss",
            Metric::Lr => "Learning rate",
        }
    }

    /// Y axis description.
    fn axis(self) -> &'static str {
        match self {
            Metric::EvalAcc => "accuracy (%)",
            Metric::EvalLoss | Metric::TrainLoss => "cross-entropy",
            Metric::Lr => "learning rate",
        }
    }

    /// The plotted value of an epoch (accuracy in percent).
    pub fn value(self, e: &EpochRecord) -> f64 {
        match self {
            Metric::EvalAcc => e.eval_acc * 100.0,
            Metric::EvalLoss => e.eval_loss,
            Metric::TrainLoss => e.train_loss,
            Metric::Lr => e.lr,
        }
    }
}

/// Tableau 10, then ten colours chosen to stay apart from them (navy, maroon, olive, teal,
/// magenta, gold, near-black, violet, light blue, salmon).
const PALETTE: [(u8, u8, u8); 20] = [
    (0x1f, 0x77, 0xb4),
    (0xff, 0x7f, 0x0e),
    (0x2c, 0xa0, 0x2c),
    (0xd6, 0x27, 0x28),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x7f, 0x7f, 0x7f),
    (0xbc, 0xbd, 0x22),
    (0x17, 0xbe, 0xcf),
    (0x00, 0x00, 0x75),
    (0x80, 0x00, 0x00),
    (0x80, 0x80, 0x00),
    (0x46, 0x99, 0x90),
    (0xf0, 0x32, 0xe6),
    (0xc9, 0xa1, 0x00),
    (0x22, 0x22, 0x22),
    (0x91, 0x1e, 0xb4),
    (0x7f, 0xb3, 0xe6),
    (0xfa, 0x80, 0x72),
];

/// The colour of the run at submission index `i` of `n` runs: the palette, then hues a
/// golden angle apart.
pub fn run_color(i: usize) -> (u8, u8, u8) {
    if i < PALETTE.len() {
        return PALETTE[i];
    }
    let k = i - PALETTE.len();
    let hue = (k as f64 * 137.508) % 360.0;
    let lightness = if k & 1 == 0 { 0.42 } else { 0.32 };
    hsl_to_rgb(hue, 0.70, lightness)
}

fn hsl_to_rgb(h: f64, s: f64, l: f64) -> (u8, u8, u8) {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = h / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let to = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    (to(r), to(g), to(b))
}

/// `#rrggbb` of a colour.
pub fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

const WIDTH: u32 = 1100;
const PLOT_HEIGHT: u32 = 420;
const LEGEND_ROW: u32 = 20;
const LEGEND_FONT: u32 = 15;
/// Naive width of a legend character at [`LEGEND_FONT`] (plotters writes SVG font sizes
/// divided by 1.24, so about 12 px; the browser lays the text out, this only sizes the
/// columns).
const CHAR_W: f64 = 7.0;
const INK: RGBColor = RGBColor(0x1f, 0x29, 0x37);
const MUTED: RGBColor = RGBColor(0x6b, 0x72, 0x80);

/// A tick label for small numbers: `0`, `0.008`, `0.0005`, `2.5e-5`.
fn short_number(v: f64) -> String {
    if v.abs() < 1e-12 {
        "0".to_string()
    } else if v.abs() >= 1e-4 {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// One run's curve.
struct Series {
    label: String,
    color: (u8, u8, u8),
    points: Vec<(f64, f64)>,
}

/// The y range of a metric over every run, and whether it is log10-scaled.
fn y_range(metric: Metric, values: &[f64]) -> (f64, f64, bool) {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return match metric {
            Metric::EvalAcc => (0.0, 100.0, false),
            _ => (0.0, 1.0, false),
        };
    }
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match metric {
        Metric::EvalAcc => {
            let lo = ((min / 10.0).floor() * 10.0).clamp(0.0, 90.0);
            let hi = ((max / 10.0).ceil() * 10.0).clamp(lo + 10.0, 100.0);
            (lo, hi, false)
        }
        Metric::Lr if min > 0.0 && max / min > 10.0 => {
            (min.log10().floor(), max.log10().ceil(), true)
        }
        _ => {
            // A diverged run must not flatten everyone else: values more than 20× the
            // median are left out of the range (their points sit on the top edge).
            let mut sorted = finite.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            let hi = if median > 0.0 && max > 20.0 * median {
                sorted
                    .iter()
                    .copied()
                    .filter(|v| *v <= 20.0 * median)
                    .fold(median, f64::max)
            } else {
                max
            };
            let lo = if metric == Metric::Lr {
                0.0
            } else {
                min.min(hi)
            };
            let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-3).max(1e-12);
            ((lo - pad).max(0.0), hi + pad, false)
        }
    }
}

/// The SVG chart of one metric for every run of the report.
pub fn chart_svg(view: &ReportView<'_>, metric: Metric) -> String {
    match draw(view, metric) {
        Ok(svg) => svg,
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"40\">\
             <text x=\"8\" y=\"24\">chart failed: {}</text></svg>",
            e.replace('&', "&amp;").replace('<', "&lt;")
        ),
    }
}

fn draw(view: &ReportView<'_>, metric: Metric) -> Result<String, String> {
    let runs = &view.data.runs;
    // Series in table order (the legend's order); drawn in reverse so the best is on top.
    let series: Vec<Series> = view
        .order
        .iter()
        .map(|&i| Series {
            label: runs[i].name.clone(),
            color: run_color(i),
            points: runs[i]
                .epochs
                .iter()
                .map(|e| (f64::from(e.epoch), metric.value(e)))
                .filter(|(_, v)| v.is_finite())
                .collect(),
        })
        .collect();
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    let (y0, y1, log) = y_range(metric, &all);
    let max_epoch = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let (x0, x1) = if max_epoch > 1.0 {
        (1.0, max_epoch)
    } else {
        (0.5, 1.5)
    };
    let longest = series
        .iter()
        .map(|s| s.label.chars().count())
        .max()
        .unwrap_or(0);
    let col_w = (longest as f64 * CHAR_W + 34.0).clamp(120.0, f64::from(WIDTH) - 40.0);
    let cols = ((f64::from(WIDTH) - 40.0) / col_w).floor().max(1.0) as usize;
    let rows = series.len().div_ceil(cols) as u32;
    let legend_h = if series.is_empty() {
        0
    } else {
        14 + rows * LEGEND_ROW
    };
    let height = PLOT_HEIGHT + legend_h;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| format!("{e:?}");
        root.fill(&WHITE).map_err(err)?;
        let (plot, legend) = root.split_vertically(PLOT_HEIGHT);
        let mut chart = ChartBuilder::on(&plot)
            .caption(metric.title(), ("sans-serif", 24).into_font().color(&INK))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(50)
            .y_label_area_size(78)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| format!("{e:?}"))?;
        let x_fmt = |x: &f64| {
            if (x - x.round()).abs() < 1e-9 {
                format!("{}", x.round() as i64)
            } else {
                String::new()
            }
        };
        let y_fmt = |y: &f64| {
            if log {
                format!("{:.0e}", 10f64.powf(*y))
            } else if metric == Metric::Lr {
                short_number(*y)
            } else if y1 - y0 < 0.1 {
                format!("{y:.3}")
            } else {
                format!("{y:.2}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            }
        };
        chart
            .configure_mesh()
            .x_labels(((x1 - x0) as usize + 1).min(12))
            .y_labels(if log { (y1 - y0) as usize + 1 } else { 8 })
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .x_desc("epoch")
            .y_desc(metric.axis())
            .axis_desc_style(("sans-serif", 16).into_font().color(&MUTED))
            .label_style(("sans-serif", 15).into_font().color(&INK))
            .bold_line_style(RGBColor(0xe5, 0xe7, 0xeb))
            .light_line_style(RGBColor(0xf5, 0xf6, 0xf8))
            .x_max_light_lines(if x1 - x0 <= 12.0 { 0 } else { 1 })
            .y_max_light_lines(1)
            // Axes are drawn below as rectangles: plotters would draw them (and the tick
            // marks) as polylines, and the polylines of a chart are its series only.
            .axis_style(TRANSPARENT)
            .draw()
            .map_err(|e| format!("{e:?}"))?;
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        let axis = RGBColor(0x9c, 0xa3, 0xaf).filled();
        plot.draw(&Rectangle::new(
            [(xs.start - 1, ys.start), (xs.start, ys.end)],
            axis,
        ))
        .map_err(err)?;
        plot.draw(&Rectangle::new(
            [(xs.start - 1, ys.end - 1), (xs.end, ys.end)],
            axis,
        ))
        .map_err(err)?;
        let longest_run = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
        let dot = if longest_run <= 30 { 3 } else { 0 };
        for s in series.iter().rev() {
            if s.points.is_empty() {
                continue;
            }
            let (r, g, b) = s.color;
            let style = RGBColor(r, g, b).stroke_width(2);
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|&(x, v)| {
                    let y = if log {
                        v.max(f64::MIN_POSITIVE).log10()
                    } else {
                        v
                    };
                    (x, y.clamp(y0, y1))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(points, style.filled()).point_size(dot))
                .map_err(|e| format!("{e:?}"))?;
        }
        if series.iter().all(|s| s.points.is_empty()) {
            let area = chart.plotting_area().strip_coord_spec();
            let (w, h) = area.dim_in_pixel();
            area.draw(&Text::new(
                "no epoch recorded yet",
                (w as i32 / 2, h as i32 / 2),
                ("sans-serif", 16)
                    .into_font()
                    .color(&MUTED)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(err)?;
        }
        let max_chars = ((col_w - 34.0) / CHAR_W).floor().max(8.0) as usize;
        for (k, s) in series.iter().enumerate() {
            let col = (k / rows as usize) as i32;
            let row = (k % rows as usize) as i32;
            let x = 40 + col * col_w as i32;
            let y = 6 + row * LEGEND_ROW as i32;
            let (r, g, b) = s.color;
            legend
                .draw(&Rectangle::new(
                    [(x, y + 6), (x + 18, y + 10)],
                    RGBColor(r, g, b).filled(),
                ))
                .map_err(err)?;
            let label = if s.label.chars().count() > max_chars {
                let cut: String = s.label.chars().take(max_chars - 1).collect();
                format!("{cut}…")
            } else {
                s.label.clone()
            };
            legend
                .draw(&Text::new(
                    label,
                    (x + 24, y + 8),
                    ("sans-serif", LEGEND_FONT)
                        .into_font()
                        .color(if s.points.is_empty() { &MUTED } else { &INK })
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_distinct() {
        let colours: Vec<_> = (0..96).map(run_color).collect();
        for (i, a) in colours.iter().enumerate() {
            for b in &colours[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(hex(run_color(0)), "#1f77b4");
    }

    #[test]
    fn tick_labels() {
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(0.008), "0.008");
        assert_eq!(short_number(0.0005), "0.0005");
        assert_eq!(short_number(2.5e-5), "2.5e-5");
    }

    #[test]
    fn ranges() {
        assert_eq!(y_range(Metric::EvalAcc, &[12.0, 61.0]), (10.0, 70.0, false));
        assert_eq!(y_range(Metric::Lr, &[1e-3, 1e-5]), (-5.0, -3.0, true));
        let (lo, hi, log) = y_range(Metric::EvalLoss, &[1.0, 1.1, 1.2, 1.3, 1e6]);
        assert!(
            !log && lo < 1.0 && hi < 10.0,
            "{lo} {hi}: the outlier is capped"
        );
    }
}
