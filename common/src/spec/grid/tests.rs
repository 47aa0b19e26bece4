//! The grid parser's tests: expansion, names, and located errors.
use super::*;

const BASE: &str = r#"name = "t"

[base]
image_size = 32
channels = 1
classes = 10
epochs = 2
"#;

fn grid(extra: &str) -> Result<Grid, GridError> {
    parse_grid(&format!("{BASE}{extra}"), "g.toml")
}

fn err(extra: &str) -> String {
    grid(extra).unwrap_err().to_string()
}

#[test]
fn cartesian_product_first_key_slowest() {
    let g = grid("\n[grid]\nmodel = [\"cnn\", \"lenet\"]\nseed = [1, 2, 3]\n").unwrap();
    let names: Vec<&str> = g.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cnn seed=1",
            "cnn seed=2",
            "cnn seed=3",
            "lenet seed=1",
            "lenet seed=2",
            "lenet seed=3"
        ]
    );
    assert_eq!(g.runs[4].spec.model, "lenet");
    assert_eq!(g.runs[4].spec.seed, 2);
    assert_eq!(g.runs[4].spec.epochs, 2);
    assert_eq!(g.runs[4].factors.get("seed"), Some(&Json::from(2)));
    assert!(g.runs.iter().all(|r| r.params > 0 && r.flops > 0));
}

#[test]
fn factorial_names_use_short_labels_and_seed_last() {
    let g = grid(
        "\n[grid]\nseed = [1, 2]\nmodel = [\"cnn\"]\nactivation = [\"relu\", \"sigmoid\"]\n\
             batch_norm = [false, true]\nhead = [\"fc\", \"gap\"]\n",
    )
    .unwrap();
    assert_eq!(g.runs.len(), 16);
    let first = &g.runs[0];
    assert_eq!(first.name, "cnn act=relu bn=false head=fc seed=1");
    let keys: Vec<&str> = first.factors.keys().map(String::as_str).collect();
    assert_eq!(keys, ["activation", "batch_norm", "head", "seed"]);
    assert_eq!(first.factors["batch_norm"], Json::Bool(false));
}

#[test]
fn single_value_dimensions_do_not_vary() {
    let g = grid("\n[grid]\nmodel = [\"cnn\", \"lenet\"]\nseed = [7]\n").unwrap();
    assert_eq!(g.runs[0].name, "cnn");
    assert_eq!(g.runs[0].spec.seed, 7);
    assert!(g.runs[0].factors.is_empty());
}

#[test]
fn explicit_runs_merge_over_base() {
    let g = grid(
        "\n[grid]\nmodel = [\"cnn\"]\nseed = [1, 2]\n\n[[runs]]\nmodel = \"lenet\"\nepochs = 5\n\n\
             [[runs]]\nmodel = \"lenet\"\nname = \"lenet long\"\nepochs = 9\n",
    )
    .unwrap();
    assert_eq!(g.runs.len(), 4);
    assert_eq!(g.runs[2].name, "lenet epochs=5");
    assert_eq!(g.runs[2].spec.epochs, 5);
    assert_eq!(g.runs[2].spec.image_size, 32);
    assert_eq!(g.runs[3].name, "lenet long");
    assert_eq!(g.runs[0].name, "cnn epochs=2 seed=1");
}

#[test]
fn base_alone_is_one_run() {
    let g = parse_grid(
        "name = \"one\"\n[base]\nmodel = \"lenet\"\nimage_size = 32\nchannels = 1\n",
        "g.toml",
    )
    .unwrap();
    assert_eq!(g.runs.len(), 1);
    assert_eq!(g.runs[0].name, "lenet");
}

#[test]
fn nested_grid_keys_set_nested_fields() {
    let g = grid(
        "[base.dataset]\nformat = \"idx\"\nroot = \"/d\"\n\
             train = { images = \"a\", labels = \"b\", limit = 100 }\n\
             eval = { images = \"c\", labels = \"d\", limit = 50 }\n\n\
             [grid]\nmodel = [\"lenet\"]\ndataset.fit = [\"pad\", \"resize\"]\n",
    )
    .unwrap();
    assert_eq!(g.runs.len(), 2);
    assert_eq!(g.runs[0].name, "lenet dataset.fit=pad");
    let fit = g.runs[1].spec.dataset.as_ref().unwrap().fit;
    assert_eq!(fit, crate::spec::Fit::Resize);
    assert_eq!(
        g.runs[1].factors["dataset.fit"],
        Json::String("resize".into())
    );
    let flops = g.runs[0].train_flops().unwrap();
    assert_eq!(flops, (3.0 * 100.0 + 50.0) * g.runs[0].flops as f64 * 2.0);
}

#[test]
fn syntax_error_is_located() {
    let e = parse_grid("name = \"x\"\n[base\n", "g.toml").unwrap_err();
    assert_eq!(e.file, "g.toml");
    assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");
}

#[test]
fn unknown_top_level_key_is_located() {
    assert_eq!(
            err("[gird]\nmodel = [\"cnn\"]\n"),
            "g.toml:8:2: unknown key `gird` (a grid has: name, description, priority, base, grid, runs, \
             early_stopping, claims; run fields go in [base])"
        );
}

#[test]
fn missing_name() {
    let e = parse_grid("[base]\nmodel = \"cnn\"\n", "g.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "g.toml:1:1: missing `name = \"...\"` (the experiment's name)"
    );
}

#[test]
fn unknown_base_key_is_located() {
    let e = parse_grid(
        "name = \"x\"\n[base]\nmodel = \"cnn\"\nepochz = 3\n",
        "g.toml",
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "g.toml:4:1: run `cnn`: unknown key `epochz`");
}

#[test]
fn unknown_grid_key_points_at_its_element() {
    let e = err("\n[grid]\nmodel = [\"cnn\"]\nactivaton = [\"relu\", \"tanh\"]\n");
    assert!(
        e.starts_with("g.toml:11:14: run `cnn activaton=relu`: unknown key `activaton`"),
        "{e}"
    );
}

#[test]
fn wrong_type_in_base_is_located() {
    let e = parse_grid(
        "name = \"x\"\n[base]\nmodel = \"cnn\"\nepochs = \"three\"\n",
        "g.toml",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("g.toml:4:1: run `cnn`: invalid type"),
        "{e}"
    );
}

#[test]
fn wrong_type_in_grid_points_at_the_element() {
    let e = err("\n[grid]\nmodel = [\"cnn\"]\nlr = [0.1, \"fast\"]\n");
    assert!(
        e.starts_with("g.toml:11:12: run `cnn lr=fast`: invalid type"),
        "{e}"
    );
}

#[test]
fn wrong_factor_value_points_at_the_element() {
    // Factors are flattened into the run spec: serde gives no position for them.
    let e = err("\n[grid]\nmodel = [\"cnn\"]\nactivation = [\"relu\", \"swish\"]\n");
    assert!(
        e.starts_with("g.toml:11:23: run `cnn act=swish`: unknown variant"),
        "{e}"
    );
}

#[test]
fn nested_unknown_key_in_base_is_located() {
    let e = grid(
            "model = \"lenet\"\n[base.dataset]\nformat = \"idx\"\nroot = \"/d\"\nformt = 1\n\
             train = { images = \"a\", labels = \"b\" }\neval = { images = \"c\", labels = \"d\" }\n",
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("g.toml:12:1: run `lenet`: unknown field `formt`"),
        "{e}"
    );
}

#[test]
fn invalid_value_in_runs_entry_is_located() {
    let e = err("\n[[runs]]\nmodel = \"lenet\"\nepochs = 0\n");
    assert_eq!(
        e,
        "g.toml:11:1: run `lenet`: field `epochs`: must be at least 1"
    );
}

#[test]
fn unknown_model_points_at_the_grid_element() {
    let e = err("\n[grid]\nmodel = [\"cnn\", \"resnet99\"]\n");
    assert!(
        e.starts_with("g.toml:10:17: run `resnet99`: unknown model `resnet99`"),
        "{e}"
    );
}

#[test]
fn impossible_size_points_at_the_model() {
    let e = parse_grid(
        "name = \"x\"\n[base]\nimage_size = 4\nchannels = 1\n[grid]\nmodel = [\"lenet\"]\n",
        "g.toml",
    )
    .unwrap_err();
    assert_eq!(e.position, Some((6, 10)), "{e}");
    assert!(e.message.starts_with("run `lenet`: "), "{e}");
}

#[test]
fn unsupported_factor_points_at_the_factor() {
    let e = err("\n[grid]\nmodel = [\"lenet\"]\nbatch_norm = [true, false]\n");
    assert!(
        e.starts_with("g.toml:11:15: run `lenet bn=true`: model `lenet` has no factor"),
        "{e}"
    );
}

#[test]
fn empty_dimension_is_an_error() {
    assert_eq!(
        err("\n[grid]\nmodel = [\"cnn\"]\nseed = []\n"),
        "g.toml:11:1: `grid.seed` is empty: the grid would have no runs"
    );
}

#[test]
fn scalar_in_grid_is_an_error() {
    let e = err("\n[grid]\nmodel = [\"cnn\"]\nlr = 0.1\n");
    assert!(
        e.starts_with("g.toml:11:1: `grid.lr` must be an array"),
        "{e}"
    );
}

#[test]
fn expansion_over_the_limit_is_an_error() {
    let e = err("\n[grid]\nmodel = [\"cnn\"]\nseed = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n\
                     lr = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]\n\
                     epochs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nbatch_size = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n\
                     momentum = [0.1, 0.2]\n");
    assert_eq!(
        e,
        "g.toml:9:2: the grid expands to 20000 runs; the limit is 10000"
    );
}

#[test]
fn long_strings_and_big_expansions_are_refused_before_expanding() {
    let long = format!("[base.dataset]\nroot = \"{}\"\n", "x".repeat(5_000));
    let e = err(&format!("{long}[grid]\nmodel = [\"cnn\"]\n"));
    assert!(
        e.ends_with("`base.dataset.root` is a string of 5000 bytes; the limit is 4096"),
        "{e}"
    );
    assert!(e.starts_with("g.toml:9:1"), "{e}");
    // 30 strings of 4 kB in [base] × 10,000 seeds: 1.2 GB once expanded.
    let mut wide = String::from("[base.dataset]\n");
    for i in 0..30 {
        wide.push_str(&format!("k{i} = \"{}\"\n", "y".repeat(4_000)));
    }
    let seeds: Vec<String> = (0..10_000).map(|s| s.to_string()).collect();
    wide.push_str(&format!("[grid]\nseed = [{}]\n", seeds.join(",")));
    let started = std::time::Instant::now();
    let e = err(&wide);
    assert!(e.contains("the expanded runs would hold"), "{e}");
    assert!(e.contains("10000 runs"), "{e}");
    assert!(e.contains("the limit is 67108864"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let huge = format!("name = \"t\"\n#{}\n", "z".repeat(MAX_GRID_FILE_BYTES));
    let e = parse_grid(&huge, "g.toml").unwrap_err().to_string();
    assert!(e.contains("the limit is 1048576"), "{e}");
}

#[test]
fn non_finite_and_out_of_range_numbers_are_refused_by_name() {
    for (extra, field) in [
        ("weight_decay = nan", "weight_decay"),
        ("weight_decay = inf", "weight_decay"),
        ("lr = nan", "lr"),
        ("momentum = nan", "momentum"),
        ("warmup_epochs = 4294967295", "warmup_epochs"),
        ("batch_size = 99999999999", "batch_size"),
        (
            "lr_schedule = { kind = \"cosine\", min_lr = nan }",
            "min_lr",
        ),
    ] {
        let e = err(&format!("{extra}\n[grid]\nmodel = [\"cnn\"]\n"));
        assert!(e.contains(field), "{extra}: {e}");
    }
}

#[test]
fn duplicate_names_are_an_error() {
    let e = err("\n[grid]\nmodel = [\"lenet\"]\n\n[[runs]]\nmodel = \"lenet\"\n");
    assert_eq!(
        e,
        "g.toml:12:1: two runs are both named `lenet` (runs 1 and 2); vary a key, or give \
             the [[runs]] entry a `name`"
    );
}

#[test]
fn missing_model_is_located_at_base() {
    let e = err("");
    assert_eq!(e, "g.toml:3:2: run `?`: missing field `model`");
}

#[test]
fn a_list_value_in_the_grid_gets_a_hint() {
    let e = err("\n[grid]\nmodel = [\"cnn\"]\nconcat_stages = [5, 6]\n");
    assert!(e.starts_with("g.toml:11:18: run `cnn concat=5`: "), "{e}");
    assert!(e.contains("write a list value as [[5, 6]]"), "{e}");
    let g = grid("\n[grid]\nmodel = [\"cnn\"]\nconcat_stages = [[5, 6], [6]]\n").unwrap();
    assert_eq!(g.runs[0].name, "cnn concat=[5,6]");
    assert_eq!(g.runs[0].spec.factors.concat_stages, Some(vec![5, 6]));
}

#[test]
fn the_quick_grid_is_valid() {
    let text = include_str!("../../../../grids/quick.toml");
    let g = parse_grid(text, "grids/quick.toml").unwrap();
    assert_eq!(g.name, "quick");
    let names: Vec<&str> = g.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cnn_sigmoid",
            "cnn_baseline",
            "cnn_leakyrelu",
            "cnn_poolreplacefc",
            "cnn_dropout",
            "cnn_coresize3",
            "cnn_concatconv",
            "cnn_alltricks",
            "lenet"
        ]
    );
    for run in &g.runs {
        let dataset = run.spec.dataset.as_ref().unwrap();
        assert_eq!(dataset.fit, crate::spec::Fit::Pad);
        assert_eq!(
            (run.spec.image_size, run.spec.channels, run.spec.classes),
            (32, 1, 10)
        );
        assert_eq!(run.spec.gpus, 0);
        assert!(run.train_flops().is_some());
    }
}

#[test]
fn spec_round_trips_through_json() {
    let g = grid("\n[grid]\nmodel = [\"cnn\"]\nactivation = [\"leaky_relu\", \"tanh\"]\n").unwrap();
    let json = serde_json::to_string(&g.runs[0].spec).unwrap();
    let back: RunSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, g.runs[0].spec);
}

#[test]
fn priority_is_a_bounded_integer_defaulting_to_one() {
    let runs = "\n[grid]\nmodel = [\"cnn\"]\n";
    assert_eq!(grid(runs).unwrap().priority, 1);
    let with = |p: &str| parse_grid(&format!("priority = {p}\n{BASE}{runs}"), "g.toml");
    assert_eq!(with("3").unwrap().priority, 3);
    assert_eq!(stored_priority(&format!("priority = 3\n{BASE}")), 3);
    assert_eq!(stored_priority(BASE), 1);
    for bad in ["0", "101", "\"high\""] {
        let e = with(bad).unwrap_err().to_string();
        assert!(
            e.starts_with("g.toml:1:1: `priority` must be an integer from 1 to 100"),
            "{e}"
        );
    }
}

#[test]
fn early_stopping_is_parsed_and_its_errors_are_located() {
    let runs = "\n[grid]\nmodel = [\"lenet\"]\nlr = [0.1, 0.01, 0.001, 1e-6]\nseed = [1, 2]\n";
    let with = |section: &str| grid(&format!("{runs}\n[early_stopping]\n{section}"));
    let g = with("rule = \"median\"\ngrace_epochs = 1\n").unwrap();
    let s = g.early_stopping.unwrap();
    assert_eq!((s.rule.as_str(), s.grace_epochs), ("median", 1));
    assert!(grid(runs).unwrap().early_stopping.is_none());
    // The section starts on line 14; its keys follow.
    assert_eq!(
        with("rule = \"median\"\ngrace = 1\n")
            .unwrap_err()
            .to_string(),
        "g.toml:16:1: early_stopping.grace: unknown key (the section has: rule, metric, \
             mode, grace_epochs, min_runs, eta, max_rungs, group_seeds)"
    );
    assert_eq!(
        with("rule = \"asha\"\neta = 0\n").unwrap_err().to_string(),
        "g.toml:16:1: early_stopping.eta: must be an integer from 2 to 100, not 0"
    );
    // Epochs = 2 in [base]: grace 2 leaves no epoch to judge.
    let e = with("rule = \"median\"\ngrace_epochs = 2\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("g.toml:16:1: early_stopping.grace_epochs = 2: "),
        "{e}"
    );
    // 4 variants (seeds judged together): min_runs 4 can never be met.
    let e = with("rule = \"median\"\nmin_runs = 4\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("g.toml:16:1: early_stopping.min_runs = 4: the grid has 4 variants"),
        "{e}"
    );
    // Judged one by one there are 8.
    assert!(with("rule = \"median\"\nmin_runs = 4\ngroup_seeds = false\n").is_ok());
    let e = with("rule = 3\n").unwrap_err().to_string();
    assert!(
        e.starts_with("g.toml:15:1: early_stopping.rule: must be a string"),
        "{e}"
    );
    let e = parse_grid(&format!("early_stopping = 1\n{BASE}{runs}"), "g.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`early_stopping` must be a table"), "{e}");
}
