//! Bounded fuzzing of what users send: the grid parser and run specs take arbitrary and
//! mutated text without panicking, within a few seconds and small inputs.

use std::time::Duration;

use ablate_common::fuzz::Mutator;
use ablate_common::spec::grid::parse_grid;
use ablate_common::spec::RunSpec;

const BUDGET: Duration = Duration::from_secs(3);

fn grids() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../grids");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect();
    out.push(
        br#"name = "t"
description = "d"
[base]
model = "cnn"
image_size = 32
channels = 3
classes = 10
epochs = 2
warmup_epochs = 1
weight_decay = 0.0005
lr_schedule = { kind = "piecewise", boundaries = [1], values = [0.1, 0.01] }
[base.dataset]
format = "idx"
root = "/x"
train = { images = "a", labels = "b", limit = 10 }
eval = { images = "c", labels = "d" }
[grid]
seed = [1, 2]
dataset.fit = ["pad", "resize"]
[[runs]]
model = "lenet"
name = "extra"
"#
        .to_vec(),
    );
    out
}

#[test]
fn the_grid_parser_survives_mutated_grids() {
    let seeds = grids();
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    let runs = Mutator::new(1).run(&seeds, BUDGET, 50_000, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Err(e) = parse_grid(&text, "fuzz.toml") {
            // Errors stay short whatever the input (no echo of a whole file).
            assert!(e.to_string().len() < 2_000, "{e}");
        }
    });
    assert!(runs > 100, "{runs}");
}

#[test]
fn run_specs_from_json_and_toml_survive_mutations() {
    let spec = RunSpec::from_toml(
        "model = \"lenet\"\nimage_size = 28\nchannels = 1\nclasses = 10\nwarmup_epochs = 2\n",
        "spec.toml",
    )
    .unwrap();
    let json = serde_json::to_vec(&spec).unwrap();
    let toml = b"model = \"lenet\"\nimage_size = 28\nepochs = 3\nlr = 0.1\n".to_vec();
    let runs = Mutator::new(2).run(&[&json, &toml], BUDGET, 50_000, |bytes| {
        if let Ok(spec) = serde_json::from_slice::<RunSpec>(bytes) {
            if spec.check().is_ok() {
                // A spec that passes its check can be used without overflow.
                let _ = spec.lr_at_epoch(spec.epochs);
                let _ = spec.architecture();
            }
        }
        let _ = RunSpec::from_toml(&String::from_utf8_lossy(bytes), "spec.toml");
    });
    assert!(runs > 100, "{runs}");
}
