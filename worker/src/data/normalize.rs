//! Per-channel normalization: `(v / 255 − mean) / std`, from the spec's values or from the
//! train split's statistics, computed once and cached on disk under
//! `$ABLATE_CACHE_DIR/stats/` (default `~/.cache/ablate/stats/`), keyed by the split's
//! content (paths, sizes, modification times, labels), the fit, the image size and the
//! channels. Statistics are over the prepared images (after fit and channel conversion,
//! before augmentation): what the model sees.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::DataError;

/// Per-channel mean and standard deviation on the 0–1 scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stats {
    pub(crate) mean: Vec<f64>,
    pub(crate) std: Vec<f64>,
}

/// Sums for [`Stats`] over u8 HWC images (exact integers).
#[derive(Debug, Clone, Default)]
pub(crate) struct Accumulator {
    sum: [u64; 3],
    squares: [u64; 3],
    pixels: u64,
}

impl Accumulator {
    pub(crate) fn add(&mut self, hwc: &[u8], channels: usize) {
        for px in hwc.chunks_exact(channels) {
            for (c, &v) in px.iter().enumerate() {
                self.sum[c] += v as u64;
                self.squares[c] += (v as u64) * (v as u64);
            }
        }
        self.pixels += (hwc.len() / channels) as u64;
    }

    pub(crate) fn merge(&mut self, other: &Accumulator) {
        for c in 0..3 {
            self.sum[c] += other.sum[c];
            self.squares[c] += other.squares[c];
        }
        self.pixels += other.pixels;
    }

    pub(crate) fn stats(&self, channels: usize) -> Stats {
        let n = self.pixels.max(1) as f64;
        let mut mean = Vec::new();
        let mut std = Vec::new();
        for c in 0..channels {
            let m = self.sum[c] as f64 / n;
            let var = (self.squares[c] as f64 / n - m * m).max(0.0);
            mean.push(m / 255.0);
            // A constant channel would divide by zero: fall back to 1 (no scaling).
            let s = var.sqrt() / 255.0;
            std.push(if s > 1e-6 { s } else { 1.0 });
        }
        Stats { mean, std }
    }
}

/// The lookup tables that turn a u8 value into its normalized f32, one per channel.
#[derive(Debug, Clone)]
pub(crate) struct Normalizer {
    pub(crate) stats: Stats,
    pub(crate) luts: Vec<[f32; 256]>,
}

impl Normalizer {
    /// From statistics with one value per channel.
    pub(crate) fn new(stats: Stats) -> Normalizer {
        let luts = stats
            .mean
            .iter()
            .zip(&stats.std)
            .map(|(&m, &s)| std::array::from_fn(|v| ((v as f64 / 255.0 - m) / s) as f32))
            .collect();
        Normalizer { stats, luts }
    }

    /// From the spec's `mean` and `std`: one value (used for every channel) or one per
    /// channel.
    pub(crate) fn from_spec(
        mean: &[f64],
        std: &[f64],
        channels: usize,
    ) -> Result<Normalizer, DataError> {
        let widen = |name: &str, v: &[f64]| match v.len() {
            1 => Ok(vec![v[0]; channels]),
            n if n == channels => Ok(v.to_vec()),
            n => Err(DataError::Spec(format!(
                "`{name}` has {n} values but the model has {channels} channel{}",
                if channels == 1 { "" } else { "s" }
            ))),
        };
        Ok(Normalizer::new(Stats {
            mean: widen("mean", mean)?,
            std: widen("std", std)?,
        }))
    }
}

/// The statistics cache directory: `$ABLATE_CACHE_DIR/stats`, else `~/.cache/ablate/stats`.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ABLATE_CACHE_DIR") {
        return Some(PathBuf::from(dir).join("stats"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/ablate/stats"))
}

/// The cache key of a train split's statistics.
pub(crate) fn cache_key(fingerprint: &str, fit: &str, size: usize, channels: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("ablate-stats-v1|{fingerprint}|{fit}|{size}|{channels}").as_bytes());
    super::source::hex(&hasher.finalize())
}

/// The file of a key's statistics in the cache directory.
pub(crate) fn stats_path(key: &str) -> Option<PathBuf> {
    cache_dir().map(|dir| dir.join(format!("{key}.json")))
}

/// Cached statistics, if any (a damaged entry is ignored).
pub(crate) fn load(path: &Path) -> Option<Stats> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Stores statistics (atomically: a temporary file, then a rename); failures only warn,
/// the run goes on with the computed values.
pub(crate) fn store(path: &Path, stats: &Stats) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| std::fs::write(&tmp, serde_json::to_vec(stats).unwrap_or_default()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e, "cannot cache dataset statistics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_known_pixels() {
        let mut acc = Accumulator::default();
        // Gray values 0 and 255, half each: mean 0.5, std 0.5.
        acc.add(&[0, 255, 0, 255], 1);
        let s = acc.stats(1);
        assert!(
            (s.mean[0] - 0.5).abs() < 1e-12 && (s.std[0] - 0.5).abs() < 1e-12,
            "{s:?}"
        );
        let n = Normalizer::new(s);
        assert_eq!((n.luts[0][0], n.luts[0][255]), (-1.0, 1.0));
    }

    #[test]
    fn spec_values_widen_or_refuse() {
        let n = Normalizer::from_spec(&[0.5], &[0.25], 3).unwrap();
        assert_eq!(n.luts.len(), 3);
        assert!(Normalizer::from_spec(&[0.1, 0.2, 0.3], &[1.0, 1.0, 1.0], 1).is_err());
    }
}
