//! Factor keys: their short labels and `key=value` parsing into [`ModelFactors`].

use serde::de::DeserializeOwned;

use super::error::ZooError;
use crate::spec::ModelFactors;

/// Every factor key, in [`ModelFactors`] field order.
pub const FACTOR_KEYS: &[&str] = &[
    "activation",
    "leaky_slope",
    "batch_norm",
    "kernel",
    "concat_stages",
    "head",
    "dropout",
    "dropout_impl",
    "init",
];

/// Short label of a factor (or any grid key) for readable run names: `activation` → `act`,
/// `batch_norm` → `bn`, `dropout` → `drop`, `concat_stages` → `concat`, …; keys without a
/// shorter label (`kernel`, `head`, `init`, `lr`, `seed`) come back unchanged.
pub fn factor_label(key: &str) -> &str {
    match key {
        "activation" => "act",
        "leaky_slope" => "slope",
        "batch_norm" => "bn",
        "concat_stages" => "concat",
        "dropout" => "drop",
        "dropout_impl" => "drop_impl",
        other => other,
    }
}

/// Parses `value` into the factor `key` of `factors`, as `ablate models --set key=value`
/// and other command lines take it. Values use the TOML spelling: `activation=leaky_relu`,
/// `batch_norm=true`, `kernel=two_k3`, `concat_stages=5,6` (or `[5, 6]`; empty or `none`
/// for no stage), `head=gap`, `dropout=0.5`, `dropout_impl=torch`, `init=paddle`,
/// `leaky_slope=0.1`. Ranges are checked when the model is built.
///
/// # Errors
/// [`ZooError::UnknownFactor`] for a key that is no factor, [`ZooError::BadFactorValue`]
/// for a value that does not parse.
pub fn set_factor(factors: &mut ModelFactors, key: &str, value: &str) -> Result<(), ZooError> {
    let value = value.trim();
    match key.trim() {
        "activation" => {
            factors.activation = Some(parse_enum(
                "activation",
                value,
                "sigmoid, tanh, relu or leaky_relu",
            )?)
        }
        "leaky_slope" => factors.leaky_slope = Some(parse_float("leaky_slope", value)?),
        "batch_norm" => {
            factors.batch_norm = Some(value.parse().map_err(|_| ZooError::BadFactorValue {
                key: "batch_norm",
                value: value.to_owned(),
                expected: "true or false",
            })?)
        }
        "kernel" => factors.kernel = Some(parse_enum("kernel", value, "k5, k3 or two_k3")?),
        "concat_stages" => factors.concat_stages = Some(parse_stages(value)?),
        "head" => factors.head = Some(parse_enum("head", value, "fc or gap")?),
        "dropout" => factors.dropout = Some(parse_float("dropout", value)?),
        "dropout_impl" => {
            factors.dropout_impl = Some(parse_enum("dropout_impl", value, "paddle or torch")?)
        }
        "init" => factors.init = Some(parse_enum("init", value, "paddle or torch")?),
        other => {
            return Err(ZooError::UnknownFactor {
                key: other.to_owned(),
                known: FACTOR_KEYS.join(", "),
            })
        }
    }
    Ok(())
}

/// The keys of the factors that `factors` sets, in [`FACTOR_KEYS`] order.
pub(super) fn set_keys(factors: &ModelFactors) -> Vec<&'static str> {
    let ModelFactors {
        activation,
        leaky_slope,
        batch_norm,
        kernel,
        concat_stages,
        head,
        dropout,
        dropout_impl,
        init,
    } = factors;
    let set = [
        activation.is_some(),
        leaky_slope.is_some(),
        batch_norm.is_some(),
        kernel.is_some(),
        concat_stages.is_some(),
        head.is_some(),
        dropout.is_some(),
        dropout_impl.is_some(),
        init.is_some(),
    ];
    FACTOR_KEYS
        .iter()
        .zip(set)
        .filter_map(|(&key, set)| set.then_some(key))
        .collect()
}

/// A snake_case enum value through its serde spelling (the one TOML grids use).
fn parse_enum<T: DeserializeOwned>(
    key: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<T, ZooError> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|_| {
        ZooError::BadFactorValue {
            key,
            value: value.to_owned(),
            expected,
        }
    })
}

fn parse_float(key: &'static str, value: &str) -> Result<f64, ZooError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| ZooError::BadFactorValue {
            key,
            value: value.to_owned(),
            expected: "a finite number",
        })
}

/// `5,6`, `[5, 6]`, `5`, `` / `[]` / `none`.
fn parse_stages(value: &str) -> Result<Vec<u32>, ZooError> {
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value)
        .trim();
    if inner.is_empty() || inner == "none" {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|s| s.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| ZooError::BadFactorValue {
            key: "concat_stages",
            value: value.to_owned(),
            expected: "stage numbers separated by commas, e.g. 5,6",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{DropoutImpl, InitScheme};
    use crate::spec::{ActivationName, HeadKind, KernelKind};

    #[test]
    fn parses_every_factor() {
        let mut f = ModelFactors::default();
        for (k, v) in [
            ("activation", "leaky_relu"),
            ("leaky_slope", "0.1"),
            ("batch_norm", "false"),
            ("kernel", "two_k3"),
            ("concat_stages", "[5, 6]"),
            ("head", "gap"),
            ("dropout", "0.25"),
            ("dropout_impl", "torch"),
            ("init", " torch "),
        ] {
            set_factor(&mut f, k, v).unwrap();
        }
        assert_eq!(
            f,
            ModelFactors {
                activation: Some(ActivationName::LeakyRelu),
                leaky_slope: Some(0.1),
                batch_norm: Some(false),
                kernel: Some(KernelKind::TwoK3),
                concat_stages: Some(vec![5, 6]),
                head: Some(HeadKind::Gap),
                dropout: Some(0.25),
                dropout_impl: Some(DropoutImpl::Torch),
                init: Some(InitScheme::Torch),
            }
        );
        assert_eq!(set_keys(&f), FACTOR_KEYS);
        set_factor(&mut f, "concat_stages", "none").unwrap();
        assert_eq!(f.concat_stages, Some(vec![]));
        set_factor(&mut f, "concat_stages", "5").unwrap();
        assert_eq!(f.concat_stages, Some(vec![5]));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let mut f = ModelFactors::default();
        let err = set_factor(&mut f, "activaton", "relu").unwrap_err();
        assert!(matches!(err, ZooError::UnknownFactor { .. }));
        assert!(err.to_string().contains("activation"), "{err}");
        for (k, v) in [
            ("activation", "gelu"),
            ("batch_norm", "yes"),
            ("kernel", "k7"),
            ("head", "FC"),
            ("dropout", "half"),
            ("dropout", "NaN"),
            ("concat_stages", "5;6"),
            ("init", "xavier"),
        ] {
            let err = set_factor(&mut f, k, v).unwrap_err();
            assert!(
                matches!(err, ZooError::BadFactorValue { .. }),
                "{k}={v}: {err}"
            );
            assert!(err.to_string().contains(v.trim()), "{err}");
        }
        assert_eq!(f, ModelFactors::default());
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(factor_label("activation"), "act");
        assert_eq!(factor_label("batch_norm"), "bn");
        assert_eq!(factor_label("concat_stages"), "concat");
        assert_eq!(factor_label("dropout"), "drop");
        assert_eq!(factor_label("kernel"), "kernel");
        assert_eq!(factor_label("seed"), "seed");
    }
}
