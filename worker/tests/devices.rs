//! Device lists are checked before anything starts: the real `ablate-worker` binary refuses
//! a device listed twice and a GPU this machine does not have, in `train` (before the data
//! is opened) and in agent mode (before it contacts the coordinator).

use std::path::PathBuf;
use std::process::{Command, Output};

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ablate-worker"))
        .args(args)
        .env_remove("ABLATE_COORDINATOR")
        .output()
        .expect("ablate-worker starts")
}

/// A spec whose dataset does not exist: a device error must come first.
fn spec_with_devices(devices: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ablate-devices-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("run-{}.toml", devices.replace([':', ','], "_")));
    std::fs::write(
        &path,
        format!(
            r#"model = "lenet"
image_size = 28
channels = 1
classes = 10
devices = "{devices}"
[dataset]
format = "idx"
root = "/nonexistent/ablate-devices-test"
train = {{ images = "a.gz", labels = "b.gz" }}
eval = {{ images = "c.gz", labels = "d.gz" }}
"#
        ),
    )
    .unwrap();
    path
}

fn refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "a panic, not an error: {stderr}"
    );
}

#[test]
fn train_refuses_a_gpu_listed_twice() {
    let spec = spec_with_devices("cuda:0,0");
    let out = worker(&["train", "--spec", spec.to_str().unwrap()]);
    refused(&out, "cuda:0 is listed twice");
}

#[test]
fn train_refuses_a_gpu_past_the_device_count_before_opening_data() {
    let past = ablate_worker::devices::cuda_device_count();
    let spec = spec_with_devices(&format!("cuda:{past}"));
    let out = worker(&["train", "--spec", spec.to_str().unwrap()]);
    refused(
        &out,
        &format!("devices: `cuda:{past}`: cuda:{past} requested"),
    );
}

#[test]
fn the_agent_refuses_bad_devices_before_contacting_the_coordinator() {
    // Nothing listens on port 9: the agent must fail on its flags, not on the connection.
    let url = "http://127.0.0.1:9";
    let out = worker(&["--coordinator", url, "--devices", "cuda:1,1"]);
    refused(&out, "--devices `cuda:1,1`: cuda:1 is listed twice");
    let past = ablate_worker::devices::cuda_device_count();
    let devices = format!("cuda:{past}");
    let out = worker(&["--coordinator", url, "--devices", &devices]);
    refused(&out, &format!("cuda:{past} requested"));
}
