//! The seed's CNN presets carry their factor values: a grid of `cnn_baseline`,
//! `cnn_leakyrelu`, `cnn_dropout`, … varies only `model`, yet each preset is the baseline
//! plus named tricks. Every family factor (activation, BN, kernel, ConcatConv stages, head,
//! dropout) whose value differs between the grid's family runs becomes one of their
//! `factors`, so the runs table, the factor effects and claim selectors see the seed's
//! one-at-a-time study. Run names do not change.

use super::grid::PlannedRun;
use crate::zoo;

/// Adds the differing family factor values to the family runs that do not set them.
pub(super) fn add_preset_factors(runs: &mut [PlannedRun]) {
    let values: Vec<Option<Vec<(&'static str, serde_json::Value)>>> = runs
        .iter()
        .map(|r| zoo::family_factor_values(&r.spec.model, &r.spec.factors))
        .collect();
    let Some(keys) = values
        .iter()
        .flatten()
        .next()
        .map(|v| v.iter().map(|(k, _)| *k).collect::<Vec<&'static str>>())
    else {
        return;
    };
    for (k, key) in keys.into_iter().enumerate() {
        let mut distinct: Vec<&serde_json::Value> = Vec::new();
        for v in values.iter().flatten() {
            if !distinct.contains(&&v[k].1) {
                distinct.push(&v[k].1);
            }
        }
        if distinct.len() < 2 {
            continue;
        }
        for (run, v) in runs.iter_mut().zip(&values) {
            if let Some(v) = v {
                run.factors
                    .entry(key.to_string())
                    .or_insert_with(|| v[k].1.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::grid::parse_grid;
    use serde_json::json;

    const BASE: &str = "name = \"t\"\n[base]\nimage_size = 32\nchannels = 1\nclasses = 10\n";

    #[test]
    fn each_preset_carries_the_factors_that_differ() {
        let g = parse_grid(
            &format!(
                "{BASE}[grid]\nmodel = [\"cnn_sigmoid\", \"cnn_baseline\", \"cnn_leakyrelu\", \
                 \"cnn_poolreplacefc\", \"cnn_dropout\", \"cnn_coresize3\", \"cnn_concatconv\", \
                 \"cnn_alltricks\", \"lenet\"]\n"
            ),
            "g.toml",
        )
        .unwrap();
        let f = |i: usize, key: &str| g.runs[i].factors.get(key).cloned();
        assert_eq!(g.runs[1].name, "cnn_baseline", "names do not change");
        // The baseline: sigmoid, BN, k5, no ConcatConv, fc head, no dropout.
        assert_eq!(f(1, "activation"), Some(json!("sigmoid")));
        assert_eq!(f(1, "batch_norm"), Some(json!(true)));
        assert_eq!(f(1, "kernel"), Some(json!("k5")));
        assert_eq!(f(1, "concat_stages"), Some(json!([])));
        assert_eq!(f(1, "head"), Some(json!("fc")));
        assert_eq!(f(1, "dropout"), Some(json!(0.0)));
        // Each trick differs from it where the seed says.
        assert_eq!(f(0, "batch_norm"), Some(json!(false)));
        assert_eq!(f(2, "activation"), Some(json!("leaky_relu")));
        assert_eq!(f(3, "head"), Some(json!("gap")));
        assert_eq!(f(4, "dropout"), Some(json!(0.5)));
        assert_eq!(f(5, "kernel"), Some(json!("two_k3")));
        assert_eq!(f(6, "concat_stages"), Some(json!([5])));
        assert_eq!(f(7, "concat_stages"), Some(json!([5, 6])));
        // LeNet is outside the family: no family factors.
        assert!(g.runs[8].factors.is_empty(), "{:?}", g.runs[8].factors);
    }

    #[test]
    fn grid_values_win_and_equal_values_are_left_out() {
        let g = parse_grid(
            &format!(
                "{BASE}[grid]\nmodel = [\"cnn\", \"cnn_dropout\"]\nactivation = [\"relu\", \"tanh\"]\n"
            ),
            "g.toml",
        )
        .unwrap();
        for run in &g.runs {
            assert!(
                !run.factors.contains_key("kernel"),
                "all k5: {:?}",
                run.factors
            );
        }
        assert_eq!(g.runs[0].factors["activation"], json!("relu"));
        assert_eq!(g.runs[0].factors["dropout"], json!(0.0));
        assert_eq!(g.runs[2].factors["dropout"], json!(0.5));
    }
}
