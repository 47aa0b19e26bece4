//! A replica that panics (as a CUDA out-of-memory panics inside a tch op) aborts its
//! data-parallel group: the run fails within seconds with the panic's message, instead of
//! its peers waiting out the collective's 600 s timeout.
//!
//! The panic is injected through `ABLATE_TEST_PANIC_REPLICA`, a process-wide variable: this
//! file is its own test binary and holds one test.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ablate_common::spec::{DeviceList, RunSpec};
use ablate_worker::train::{self, Silent, TrainError, TrainOptions, PANIC_REPLICA_ENV};

fn options(dir: &std::path::Path) -> TrainOptions {
    let spec = RunSpec::from_toml(
        r#"model = "lenet"
image_size = 28
channels = 1
classes = 10
batch_size = 32
epochs = 1
seed = 3
[dataset]
format = "idx"
root = "/usr/share/datasets/fashion-mnist"
train = { images = "train-images-idx3-ubyte.gz", labels = "train-labels-idx1-ubyte.gz", limit = 256 }
eval = { images = "t10k-images-idx3-ubyte.gz", labels = "t10k-labels-idx1-ubyte.gz", limit = 64 }
loader_threads = 1
"#,
        "panic.toml",
    )
    .unwrap();
    TrainOptions {
        arch: spec.architecture().unwrap(),
        spec,
        devices: DeviceList::Cpu(2),
        run_dir: dir.to_path_buf(),
        resume: false,
        threads_per_replica: 1,
        stop: Arc::new(AtomicBool::new(false)),
    }
}

#[test]
fn a_panicking_replica_aborts_its_group_within_seconds() {
    // Rank 1 panics while rank 0 waits at the all-reduce, then the other way round.
    for (rank, step) in [(1, 2), (0, 3)] {
        let dir = std::env::temp_dir().join(format!("ablate-panic-{rank}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = options(&dir);
        let data = ablate_worker::data::open(opts.spec.dataset.as_ref().unwrap(), 1, 28, 10)
            .expect("Fashion-MNIST subset opens");
        std::env::set_var(PANIC_REPLICA_ENV, format!("{rank}:{step}"));
        let started = Instant::now();
        let err = train::train(&opts, &data, &mut Silent).unwrap_err();
        let elapsed = started.elapsed();
        std::env::remove_var(PANIC_REPLICA_ENV);
        match &err {
            TrainError::Panicked { rank: r, message } => {
                assert_eq!(*r, rank, "{err}");
                assert!(message.contains(&format!("at step {step}")), "{err}");
            }
            other => panic!("expected replica {rank}'s panic, got: {other}"),
        }
        assert!(
            elapsed < Duration::from_secs(60),
            "the group took {elapsed:?} to stop (the collective timeout is 600 s)"
        );
    }
}
