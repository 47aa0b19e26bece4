//! Number and time formats shared by the commands.

/// `1.2k`, `3.4M`, `5.6G`, `7.8T`, `9.0P` (SI, one decimal).
pub(super) fn si(value: f64) -> String {
    let units = [("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)];
    for (suffix, scale) in units {
        if value.abs() >= scale {
            return format!("{:.1}{suffix}", value / scale);
        }
    }
    format!("{value:.0}")
}

/// `73.5 TFLOP`: [`si`] with a space and a unit.
pub(super) fn si_unit(value: f64, unit: &str) -> String {
    let s = si(value);
    match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => format!("{} {c}{unit}", &s[..i]),
        _ => format!("{s} {unit}"),
    }
}

/// `42s`, `3m05s`, `1h02m`.
pub(super) fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".to_string();
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `3m05s ago`: the time from `unix_ms` to `now` (both in Unix milliseconds).
pub(super) fn ago(now: u64, unix_ms: u64) -> String {
    format!(
        "{} ago",
        duration(now.saturating_sub(unix_ms) as f64 / 1000.0)
    )
}

/// An accuracy fraction as a percentage; `-` when there is none yet.
pub(super) fn percent(fraction: Option<f64>) -> String {
    match fraction {
        Some(f) if f.is_finite() => format!("{:.1}%", f * 100.0),
        _ => "-".to_string(),
    }
}

/// A loss; `-` when there is none yet.
pub(super) fn loss(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        _ => "-".to_string(),
    }
}

/// Left-aligned columns: each row's cells padded to the widest of their column.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(si(1_234_567.0), "1.2M");
        assert_eq!(si(999.0), "999");
        assert_eq!(si(3.2e15), "3.2P");
        assert_eq!(si_unit(7.35e13, "FLOP"), "73.5 TFLOP");
        assert_eq!(si_unit(12.0, "FLOP"), "12 FLOP");
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(percent(Some(0.8734)), "87.3%");
        assert_eq!(percent(None), "-");
        assert_eq!(loss(Some(0.5)), "0.5000");
        assert_eq!(loss(None), "-");
        assert_eq!(
            table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]),
            "a    bb\nxxx  y\n"
        );
    }
}
