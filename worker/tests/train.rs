//! The training engine on real data (a Fashion-MNIST subset from Debian's package):
//! resume equivalence, data-parallel gradients, reproducibility, schedules, corrupt
//! checkpoints, and a loss that falls.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ablate_common::metrics::EpochRecord;
use ablate_common::spec::{DeviceList, RunSpec};
use ablate_worker::train::{self, checkpoint, Outcome, Silent, TrainError, TrainOptions};

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The test recipe; `extra` lines (`key = value`) replace the base's keys of the same name.
fn spec(extra: &str) -> RunSpec {
    let base = [
        "model = \"lenet\"",
        "image_size = 28",
        "channels = 1",
        "classes = 10",
        "batch_size = 32",
        "optimizer = \"adam\"",
        "lr = 0.003",
        "seed = 7",
    ];
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    let overridden: Vec<String> = extra.lines().map(key).collect();
    let mut lines: Vec<String> = base
        .iter()
        .filter(|l| !overridden.contains(&key(l)))
        .map(|l| l.to_string())
        .collect();
    lines.extend(extra.lines().map(str::to_string));
    let text = format!(
        r#"{}
[dataset]
format = "idx"
root = "{FASHION_MNIST}"
train = {{ images = "train-images-idx3-ubyte.gz", labels = "train-labels-idx1-ubyte.gz", limit = 512 }}
eval = {{ images = "t10k-images-idx3-ubyte.gz", labels = "t10k-labels-idx1-ubyte.gz", limit = 256 }}
loader_threads = 1
"#,
        lines.join("\n")
    );
    RunSpec::from_toml(&text, "test.toml").expect("test spec parses")
}

fn run_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ablate-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(spec: RunSpec, dir: &Path, devices: DeviceList, resume: bool) -> TrainOptions {
    let arch = spec.architecture().expect("model builds");
    TrainOptions {
        spec,
        arch,
        devices,
        run_dir: dir.to_path_buf(),
        resume,
        threads_per_replica: 1,
        stop: Arc::new(AtomicBool::new(false)),
    }
}

fn train_to_end(opts: &TrainOptions) -> Vec<EpochRecord> {
    let data = ablate_worker::data::open(
        opts.spec.dataset.as_ref().unwrap(),
        opts.spec.channels,
        opts.spec.image_size,
        opts.spec.classes,
    )
    .expect("Fashion-MNIST subset opens");
    match train::train(opts, &data, &mut Silent).expect("training succeeds") {
        Outcome::Completed { history, .. } => history,
        other => panic!("expected completion, got {other:?}"),
    }
}

fn weights(dir: &Path, hash: &str) -> Vec<(String, tch::Tensor)> {
    let mut w = checkpoint::load(dir, hash).unwrap().unwrap().weights;
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn same_metrics(a: &[EpochRecord], b: &[EpochRecord]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.epoch, y.epoch);
        assert_eq!(x.lr, y.lr);
        for (u, v) in [
            (x.train_loss, y.train_loss),
            (x.train_acc, y.train_acc),
            (x.eval_loss, y.eval_loss),
            (x.eval_acc, y.eval_acc),
        ] {
            assert!((u - v).abs() < 1e-9, "epoch {}: {u} != {v}", x.epoch);
        }
    }
}

#[test]
fn two_epochs_equal_one_plus_resume_plus_one() {
    let hash = spec("epochs = 2").training_hash();
    let straight = run_dir("straight");
    let full = train_to_end(&options(
        spec("epochs = 2"),
        &straight,
        DeviceList::Cpu(1),
        false,
    ));

    // The same run interrupted after epoch 1: train a 1-epoch prefix by stopping the
    // 2-epoch spec right after its first checkpoint, then resume.
    let split = run_dir("split");
    let opts = options(spec("epochs = 2"), &split, DeviceList::Cpu(1), false);
    let data = ablate_worker::data::open(opts.spec.dataset.as_ref().unwrap(), 1, 28, 10).unwrap();
    struct StopAfterFirstEpoch(Arc<AtomicBool>);
    impl train::Observer for StopAfterFirstEpoch {
        fn on_epoch(&mut self, _r: &EpochRecord, _p: Option<&Path>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let outcome = train::train(&opts, &data, &mut StopAfterFirstEpoch(opts.stop.clone())).unwrap();
    assert_eq!(
        outcome,
        Outcome::Stopped {
            completed_epochs: 1
        }
    );
    let resumed = train_to_end(&options(
        spec("epochs = 2"),
        &split,
        DeviceList::Cpu(1),
        true,
    ));

    same_metrics(&full, &resumed);
    for ((na, a), (nb, b)) in weights(&straight, &hash)
        .iter()
        .zip(weights(&split, &hash).iter())
    {
        assert_eq!(na, nb);
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{na} differs by {diff}");
    }
}

#[test]
fn same_seed_same_metrics_other_seed_other_metrics() {
    let a = train_to_end(&options(
        spec("epochs = 1"),
        &run_dir("seed-a"),
        DeviceList::Cpu(1),
        false,
    ));
    let b = train_to_end(&options(
        spec("epochs = 1"),
        &run_dir("seed-b"),
        DeviceList::Cpu(1),
        false,
    ));
    same_metrics(&a, &b);
    let c = train_to_end(&options(
        spec("epochs = 1\nseed = 8").clone(),
        &run_dir("seed-c"),
        DeviceList::Cpu(1),
        false,
    ));
    assert_ne!(a[0].train_loss, c[0].train_loss);
}

#[test]
fn loss_falls_on_real_data() {
    // Sigmoid LeNet starts slowly (the seed's point); four epochs of 512 images suffice.
    let history = train_to_end(&options(
        spec("epochs = 4"),
        &run_dir("falls"),
        DeviceList::Cpu(1),
        false,
    ));
    assert!(
        history[3].train_loss < 0.8 * history[0].train_loss,
        "{history:?}"
    );
    assert!(
        history[3].eval_acc > 0.5,
        "eval accuracy {} on Fashion-MNIST",
        history[3].eval_acc
    );
}

#[test]
fn piecewise_schedule_changes_lr_at_its_epochs() {
    let s = spec(
        "epochs = 3\nlr_schedule = { kind = \"piecewise\", boundaries = [1, 2], values = [0.003, 0.001, 0.0001] }",
    );
    let history = train_to_end(&options(
        s,
        &run_dir("piecewise"),
        DeviceList::Cpu(1),
        false,
    ));
    let lrs: Vec<f64> = history.iter().map(|r| r.lr).collect();
    assert_eq!(lrs, vec![0.003, 0.001, 0.0001]);
}

#[test]
fn corrupt_checkpoint_is_an_error_not_a_crash() {
    let dir = run_dir("corrupt");
    train_to_end(&options(
        spec("epochs = 1"),
        &dir,
        DeviceList::Cpu(1),
        false,
    ));
    let file = dir.join(checkpoint::CHECKPOINT_FILE);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 3]).unwrap();
    let opts = options(spec("epochs = 2"), &dir, DeviceList::Cpu(1), true);
    let data = ablate_worker::data::open(opts.spec.dataset.as_ref().unwrap(), 1, 28, 10).unwrap();
    let err = train::train(&opts, &data, &mut Silent).unwrap_err();
    assert!(matches!(err, TrainError::Checkpoint(_)), "{err}");
    assert!(err.to_string().contains("checkpoint.ot"), "{err}");
}

#[test]
fn checkpoint_of_another_spec_is_refused() {
    let dir = run_dir("other-spec");
    train_to_end(&options(
        spec("epochs = 1"),
        &dir,
        DeviceList::Cpu(1),
        false,
    ));
    let opts = options(
        spec("epochs = 2\nlr = 0.01"),
        &dir,
        DeviceList::Cpu(1),
        true,
    );
    let data = ablate_worker::data::open(opts.spec.dataset.as_ref().unwrap(), 1, 28, 10).unwrap();
    let err = train::train(&opts, &data, &mut Silent).unwrap_err();
    assert!(err.to_string().contains("another spec"), "{err}");
}

/// LeNet has no BN and no dropout: two replicas on halves of each batch must follow the
/// same trajectory as one replica on the whole batch.
#[test]
fn two_cpu_replicas_match_one() {
    let one = run_dir("dp1");
    let two = run_dir("dp2");
    let s = spec("epochs = 1\noptimizer = \"momentum\"\nlr = 0.01");
    let hash = s.training_hash();
    let h1 = train_to_end(&options(s.clone(), &one, DeviceList::Cpu(1), false));
    let h2 = train_to_end(&options(s, &two, DeviceList::Cpu(2), false));
    assert!(
        (h1[0].train_loss - h2[0].train_loss).abs() < 1e-5,
        "{} vs {}",
        h1[0].train_loss,
        h2[0].train_loss
    );
    assert!((h1[0].eval_acc - h2[0].eval_acc).abs() < 1e-9);
    for ((na, a), (_, b)) in weights(&one, &hash).iter().zip(weights(&two, &hash).iter()) {
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{na} differs by {diff}");
    }
}

/// Stops the run once its first epoch is checkpointed.
struct StopAfterFirstEpoch(Arc<AtomicBool>);
impl train::Observer for StopAfterFirstEpoch {
    fn on_epoch(&mut self, _r: &EpochRecord, _p: Option<&Path>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// CNN_DropOut's masks come from each replica's own generator, seeded by (seed, epoch,
/// rank), not from torch's process-wide one that both replica threads would reseed and
/// draw from in whatever order they run. A `cpu:2` run stopped after epoch 1 (an
/// independent run of that epoch) and resumed ends with exactly the straight run's metrics
/// and weights. (3×3 kernels and 96 images: the family is heavy on a CPU.)
#[test]
fn cpu2_dropout_masks_are_per_replica_reproducible_and_resume_exactly() {
    let mut s = spec(
        "model = \"cnn_dropout\"\nkernel = \"k3\"\ndropout_impl = \"torch\"\nimage_size = 32\n\
         epochs = 2\nbatch_size = 16\noptimizer = \"momentum\"\nlr = 0.01",
    );
    let dataset = s.dataset.as_mut().unwrap();
    dataset.train.limit = Some(64);
    dataset.eval.limit = Some(32);
    let hash = s.training_hash();
    let straight = run_dir("dropout-straight");
    let full = train_to_end(&options(s.clone(), &straight, DeviceList::Cpu(2), false));

    let split = run_dir("dropout-split");
    let opts = options(s.clone(), &split, DeviceList::Cpu(2), false);
    let data = ablate_worker::data::open(opts.spec.dataset.as_ref().unwrap(), 1, 32, 10).unwrap();
    let outcome = train::train(&opts, &data, &mut StopAfterFirstEpoch(opts.stop.clone())).unwrap();
    assert_eq!(
        outcome,
        Outcome::Stopped {
            completed_epochs: 1
        }
    );
    let resumed = train_to_end(&options(s, &split, DeviceList::Cpu(2), true));
    same_metrics(&full, &resumed);
    for ((name, a), (_, b)) in weights(&straight, &hash)
        .iter()
        .zip(weights(&split, &hash).iter())
    {
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff == 0.0, "{name} differs by {diff}");
    }
}
