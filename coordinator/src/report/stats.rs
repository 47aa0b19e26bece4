//! Student's t distribution for integer degrees of freedom, in closed form (Abramowitz &
//! Stegun 26.7.3–4), and the one- and two-sample t statistics the claim verdicts use.
//! Pure functions on numbers; no state.

use std::f64::consts::PI;

/// P(|T| ≤ t) for Student's t with `df` ≥ 1 degrees of freedom, `t` ≥ 0.
fn central_mass(t: f64, df: u32) -> f64 {
    if t.is_infinite() {
        return 1.0;
    }
    let theta = (t / f64::from(df).sqrt()).atan();
    let (sin, cos) = theta.sin_cos();
    let cos2 = cos * cos;
    if df.is_multiple_of(2) {
        // sinθ · [1 + (1/2)cos²θ + (1·3)/(2·4)cos⁴θ + … up to cos^(df−2)θ]
        let mut term = 1.0;
        let mut sum = 1.0;
        for k in 1..df / 2 {
            term *= f64::from(2 * k - 1) / f64::from(2 * k) * cos2;
            sum += term;
        }
        (sin * sum).clamp(0.0, 1.0)
    } else if df == 1 {
        2.0 * theta / PI
    } else {
        // (2/π) · {θ + sinθ · [cosθ + (2/3)cos³θ + … up to cos^(df−2)θ]}
        let mut term = cos;
        let mut sum = cos;
        for k in 1..(df - 1) / 2 {
            term *= f64::from(2 * k) / f64::from(2 * k + 1) * cos2;
            sum += term;
        }
        (2.0 / PI * (theta + sin * sum)).clamp(0.0, 1.0)
    }
}

/// P(T ≥ t) for Student's t with `df` ≥ 1 degrees of freedom (the upper tail).
pub fn t_upper_tail(t: f64, df: u32) -> f64 {
    assert!(df >= 1, "Student's t needs at least one degree of freedom");
    if t.is_nan() {
        return f64::NAN;
    }
    let half_outside = (1.0 - central_mass(t.abs(), df)) / 2.0;
    if t >= 0.0 {
        half_outside
    } else {
        1.0 - half_outside
    }
}

/// The `q` quantile (0.5 ≤ q < 1) of Student's t with `df` degrees of freedom, by
/// bisection on [`t_upper_tail`] (accurate to ~1e-9).
pub fn t_quantile(q: f64, df: u32) -> f64 {
    assert!((0.5..1.0).contains(&q), "quantile {q} outside [0.5, 1)");
    let target = 1.0 - q;
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while t_upper_tail(hi, df) > target {
        hi *= 2.0;
        if hi > 1e12 {
            return hi;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_upper_tail(mid, df) > target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 * hi.max(1.0) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// A one-sample t test of the mean of `values` against 0, one-sided in both directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TTest {
    /// How many values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1).
    pub std: f64,
    /// The t statistic; infinite when every value is the same non-zero number, `NaN`
    /// when every value is 0.
    pub t: f64,
    /// Degrees of freedom (n − 1).
    pub df: u32,
    /// P(mean this large or larger | true mean ≤ 0).
    pub p_above: f64,
    /// P(mean this small or smaller | true mean ≥ 0).
    pub p_below: f64,
}

impl TTest {
    /// The test of `values` (at least two, all finite) against a true mean of 0. Values
    /// that are all equal give p = 0 on their side and 1 on the other (0 and 0: 1 and 1).
    pub fn of(values: &[f64]) -> Option<TTest> {
        let n = values.len();
        if n < 2 || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
        let std = var.sqrt();
        let df = (n - 1) as u32;
        // A spread below rounding noise of the mean is no spread.
        let no_spread = std <= 1e-12 * mean.abs().max(1e-300) || std == 0.0;
        let (t, p_above, p_below) = if no_spread {
            if mean > 0.0 {
                (f64::INFINITY, 0.0, 1.0)
            } else if mean < 0.0 {
                (f64::NEG_INFINITY, 1.0, 0.0)
            } else {
                (f64::NAN, 1.0, 1.0)
            }
        } else {
            let t = mean / (std / (n as f64).sqrt());
            (t, t_upper_tail(t, df), t_upper_tail(-t, df))
        };
        Some(TTest {
            n,
            mean,
            std,
            t,
            df,
            p_above,
            p_below,
        })
    }

    /// The two-sided confidence interval of the mean at `level` (e.g. 0.90).
    pub fn interval(&self, level: f64) -> (f64, f64) {
        let q = t_quantile(0.5 + level / 2.0, self.df);
        let half = q * self.std / (self.n as f64).sqrt();
        (self.mean - half, self.mean + half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn tails_match_tabulated_critical_values() {
        // Two-sided 95 % critical values from any t table.
        for (df, crit) in [
            (1, 12.706),
            (2, 4.303),
            (3, 3.182),
            (4, 2.776),
            (5, 2.571),
            (10, 2.228),
            (30, 2.042),
        ] {
            let p = t_upper_tail(crit, df);
            assert!(close(p, 0.025, 5e-5), "df {df}: {p}");
            assert!(close(t_quantile(0.975, df), crit, 1e-3), "df {df}");
        }
        // One-sided 95 %: df 2 → 2.920, df 9 → 1.833.
        assert!(close(t_quantile(0.95, 2), 2.920, 1e-3));
        assert!(close(t_quantile(0.95, 9), 1.833, 1e-3));
    }

    #[test]
    fn tails_are_symmetric_and_half_at_zero() {
        for df in 1..8 {
            assert!(close(t_upper_tail(0.0, df), 0.5, 1e-12));
            let t = 1.7;
            assert!(close(
                t_upper_tail(t, df) + t_upper_tail(-t, df),
                1.0,
                1e-12
            ));
            assert_eq!(t_upper_tail(f64::INFINITY, df), 0.0);
        }
    }

    #[test]
    fn a_t_test_on_known_numbers() {
        // Differences 1, 2, 3: mean 2, std 1, t = 2 / (1 / √3) = 3.4641, df 2.
        let test = TTest::of(&[1.0, 2.0, 3.0]).unwrap();
        assert!(close(test.t, 3.464_101_6, 1e-6));
        assert_eq!(test.df, 2);
        // P(T₂ ≥ 3.4641) = (1 − t/√(2 + t²)) / 2.
        let want = (1.0 - 3.464_101_6 / (2.0_f64 + 12.0).sqrt()) / 2.0;
        assert!(close(test.p_above, want, 1e-7), "{}", test.p_above);
        assert!(close(test.p_above + test.p_below, 1.0, 1e-12));
        let (lo, hi) = test.interval(0.95);
        assert!(close(lo, 2.0 - 4.303 / 3f64.sqrt(), 1e-3));
        assert!(close(hi, 2.0 + 4.303 / 3f64.sqrt(), 1e-3));
    }

    #[test]
    fn constant_values_and_too_few_values() {
        let up = TTest::of(&[0.5, 0.5, 0.5]).unwrap();
        assert_eq!((up.p_above, up.p_below), (0.0, 1.0));
        assert_eq!(up.interval(0.9), (0.5, 0.5));
        let down = TTest::of(&[-0.1, -0.1]).unwrap();
        assert_eq!((down.p_above, down.p_below), (1.0, 0.0));
        let tie = TTest::of(&[0.0, 0.0, 0.0]).unwrap();
        assert_eq!((tie.p_above, tie.p_below), (1.0, 1.0));
        assert!(TTest::of(&[1.0]).is_none());
        assert!(TTest::of(&[1.0, f64::NAN]).is_none());
    }
}
