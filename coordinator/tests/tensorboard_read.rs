//! Our event files, read back by TensorBoard's own Python reader: the strict record reader
//! (CRC checks, the `brain.Event:2` file version) and the `EventAccumulator` that
//! `tensorboard --logdir` uses, with the right tags, steps and values, after every epoch.
//!
//! Needs Python with the `tensorboard` package: `$ABLATE_PYTHON`, else the torch venv
//! (`/root/.cache/ablate/torch-2.11.0/bin/python`, where `deploy/setup.sh` installs it), else
//! `python3`. Where none has it, the test prints why and passes without checking.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ablate_common::metrics::EpochRecord;
use ablate_coordinator::state::tensorboard::{
    run_log_dir, EventWriter, TensorBoardLogs, EPOCH_TAGS,
};
use serde_json::Value;

const READER: &str = r#"
import glob, json, os, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

out = {}
for run_dir in sys.argv[1:]:
    files = sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))
    raw = []
    for path in files:
        reader = pywrap_tensorflow.PyRecordReader_New(path)
        while True:
            try:
                reader.GetNext()  # raises DataLossError on a bad CRC
            except Exception as e:
                if type(e).__name__ == "OutOfRangeError":
                    break
                raise
            event = event_pb2.Event.FromString(reader.record())
            raw.append({
                "file_version": event.file_version,
                "step": event.step,
                "wall_time": event.wall_time,
                "values": [[v.tag, v.simple_value] for v in event.summary.value],
            })
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    scalars = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    out[run_dir] = {"files": [os.path.basename(f) for f in files], "raw": raw, "scalars": scalars}
print(json.dumps(out))
"#;

fn python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("ABLATE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from("/root/.cache/ablate/torch-2.11.0/bin/python"),
            PathBuf::from("python3"),
        ])
        .collect();
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args([
                "-c",
                "import tensorboard.backend.event_processing.event_accumulator",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn read_back(python: &Path, dirs: &[&Path]) -> BTreeMap<String, Value> {
    let out = Command::new(python)
        .arg("-c")
        .arg(READER)
        .args(dirs)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "TensorBoard's reader failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the reader prints JSON")
}

fn epoch(n: u32) -> EpochRecord {
    // Values with an exact f32 form except the lr, to check rounding is only f32's.
    EpochRecord {
        epoch: n,
        train_loss: 2.5 / f64::from(n),
        train_acc: 0.25 * f64::from(n),
        eval_loss: 3.0 - 0.5 * f64::from(n),
        eval_acc: 0.125 * f64::from(n),
        lr: if n < 3 { 0.001 } else { 0.0001 },
        seconds: 10.0,
        images_per_sec: 1000.0 + f64::from(n),
    }
}

fn check_scalars(scalars: &Value, epochs: &[EpochRecord]) {
    let tags: Vec<&str> = EPOCH_TAGS.iter().map(|(t, _)| *t).collect();
    let mut got: Vec<&str> = scalars
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    got.sort_unstable();
    let mut want = tags.clone();
    want.sort_unstable();
    assert_eq!(got, want, "the scalar tags");
    for (tag, value) in EPOCH_TAGS {
        let series = scalars[tag].as_array().unwrap();
        assert_eq!(series.len(), epochs.len(), "{tag}: a point an epoch");
        for (point, e) in series.iter().zip(epochs) {
            assert_eq!(
                point[0].as_i64().unwrap(),
                i64::from(e.epoch),
                "{tag}: step = epoch"
            );
            let v = point[1].as_f64().unwrap();
            assert_eq!(v, f64::from(value(e) as f32), "{tag} at epoch {}", e.epoch);
        }
    }
}

#[test]
fn tensorboard_reads_our_event_files_live() {
    let Some(python) = python() else {
        println!(
            "SKIPPED tensorboard_reads_our_event_files_live: no Python with the `tensorboard` \
             package (set ABLATE_PYTHON, or run deploy/setup.sh to create the torch venv)"
        );
        return;
    };
    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tensorboard-read-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut logs = TensorBoardLogs::new(&data_dir);
    let run_a = "cnn act=relu seed=1";
    let run_b = "cnn act=sigmoid seed=1";
    let dir_a = run_log_dir(&data_dir, "factorial", run_a);
    let dir_b = run_log_dir(&data_dir, "factorial", run_b);
    assert_eq!(
        dir_a,
        data_dir.join("tensorboard/factorial/cnn_act=relu_seed=1")
    );

    // After each epoch, TensorBoard already sees it (the writer flushes per epoch).
    let epochs: Vec<EpochRecord> = (1..=4).map(epoch).collect();
    for n in 1..=epochs.len() {
        logs.epoch("factorial", run_a, &epochs[n - 1]).unwrap();
        if n <= 2 {
            logs.epoch("factorial", run_b, &epochs[n - 1]).unwrap();
        }
        if n == 1 || n == 4 {
            let read = read_back(&python, &[&dir_a, &dir_b]);
            let a = &read[dir_a.to_str().unwrap()];
            check_scalars(&a["scalars"], &epochs[..n]);
            let b = &read[dir_b.to_str().unwrap()];
            check_scalars(&b["scalars"], &epochs[..n.min(2)]);
        }
    }

    let read = read_back(&python, &[&dir_a]);
    let a = &read[dir_a.to_str().unwrap()];
    let files = a["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "one event file a run");
    let name = files[0].as_str().unwrap();
    assert!(
        name.starts_with("events.out.tfevents.") && name.ends_with(".ablate"),
        "{name}"
    );
    let raw = a["raw"].as_array().unwrap();
    assert_eq!(raw[0]["file_version"], "brain.Event:2", "the first event");
    assert_eq!(raw.len(), 1 + 4 * EPOCH_TAGS.len(), "one event a scalar");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for event in raw {
        let wall = event["wall_time"].as_f64().unwrap();
        assert!((now - wall).abs() < 600.0, "wall_time is now: {wall}");
    }
    assert_eq!(raw[1]["values"][0][0], "train/loss");
    assert_eq!(raw[1]["step"], 1);

    // A second writer in the same directory (a restarted coordinator) never overwrites:
    // TensorBoard reads both files.
    logs.close_run("factorial", run_b).unwrap();
    let mut again = EventWriter::create(&dir_b).unwrap();
    again.scalar("eval/acc", 3, 0.375).unwrap();
    again.flush().unwrap();
    let read = read_back(&python, &[&dir_b]);
    let b = &read[dir_b.to_str().unwrap()];
    assert_eq!(b["files"].as_array().unwrap().len(), 2);
    let acc = b["scalars"]["eval/acc"].as_array().unwrap();
    let steps: Vec<i64> = acc.iter().map(|p| p[0].as_i64().unwrap()).collect();
    assert_eq!(steps, vec![1, 2, 3]);
    assert_eq!(acc[2][1].as_f64().unwrap(), 0.375);
    let _ = std::fs::remove_dir_all(&data_dir);
}
