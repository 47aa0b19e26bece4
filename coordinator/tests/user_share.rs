//! Per-user fair share through the real coordinator state and SQLite store: the submitting
//! user is recorded with the experiment, placements share the GPUs between users first,
//! and a restarted coordinator still knows whose experiment is whose.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ablate_coordinator::state::{Coordinator, CoordinatorConfig, Registration};

const T0: u64 = 1_800_000_000_000;

fn open(dir: &std::path::Path, clock: Arc<AtomicU64>) -> Arc<Coordinator> {
    Coordinator::open_with_clock(
        &CoordinatorConfig {
            data_dir: dir.to_path_buf(),
            lease_ttl: Duration::from_secs(600),
            keep_checkpoints: 1,
        },
        Arc::new(move || clock.load(Ordering::SeqCst)),
    )
    .unwrap()
}

fn grid(name: &str) -> String {
    format!(
        "name = \"{name}\"\n\n[base]\nmodel = \"lenet\"\nimage_size = 32\nchannels = 1\n\
         classes = 10\nepochs = 1\ngpus = 1\n\n[grid]\nseed = [1, 2, 3, 4, 5, 6, 7, 8]\n"
    )
}

fn register(coord: &Coordinator, worker_id: Option<String>) -> String {
    coord
        .register(Registration {
            protocol_version: ablate_common::proto::PROTOCOL_VERSION,
            name: "gpu-box".into(),
            devices: (0..8).map(|i| format!("cuda:{i}")).collect(),
            threads: 8,
            worker_id,
            data_roots: Vec::new(),
        })
        .unwrap()
        .0
}

/// Asks with the worker's free GPUs until nothing more is placed; returns the runs placed
/// per experiment id.
fn fill(coord: &Coordinator, worker: &str, busy: &mut Vec<String>) -> BTreeMap<String, usize> {
    let mut by_exp = BTreeMap::new();
    loop {
        let free: Vec<String> = (0..8)
            .map(|i| format!("cuda:{i}"))
            .filter(|d| !busy.contains(d))
            .collect();
        let Some(a) = coord.acquire(worker, &free).unwrap() else {
            return by_exp;
        };
        busy.extend(a.devices.iter().cloned());
        *by_exp.entry(a.experiment_id).or_default() += 1;
    }
}

#[test]
fn users_share_the_gpus_before_their_experiments_and_keep_it_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(T0));
    let coord = open(dir.path(), clock.clone());
    let worker = register(&coord, None);
    let alice: Vec<String> = ["a1", "a2", "a3"]
        .iter()
        .map(|n| coord.submit_as(&grid(n), "g.toml", "alice").unwrap().id)
        .collect();
    let bob = coord.submit_as(&grid("b1"), "g.toml", "bob").unwrap().id;
    assert_eq!(coord.submitted_by(&bob).unwrap(), "bob");
    assert!(coord
        .submit_as(&grid("x"), "g.toml", "not a name")
        .unwrap_err()
        .to_string()
        .starts_with("user: the user name has ` `"));

    let mut busy = Vec::new();
    let placed = fill(&coord, &worker, &mut busy);
    // Half the GPUs to bob's one experiment, half to alice's three.
    assert_eq!(placed.get(&bob), Some(&4), "{placed:?}");
    assert_eq!(
        alice.iter().filter_map(|a| placed.get(a)).sum::<usize>(),
        4,
        "{placed:?}"
    );

    // Restart on the same store: the leases are kept, and so is whose experiment is
    // whose. Alice's four runs end; with bob's weight raised to 3 the four GPUs they free
    // are split 2:2, which brings the users to 2 and 6 (3:1). Had the restart forgotten
    // the users, alice's three experiments would take all four (per-experiment shares);
    // without the weight, alice would too (4 against bob's 4).
    drop(coord);
    clock.fetch_add(1_000, Ordering::SeqCst);
    let coord = open(dir.path(), clock.clone());
    coord.set_user_weight("bob", 3);
    let (worker, held) = coord
        .register(Registration {
            protocol_version: ablate_common::proto::PROTOCOL_VERSION,
            name: "gpu-box".into(),
            devices: (0..8).map(|i| format!("cuda:{i}")).collect(),
            threads: 8,
            worker_id: Some(worker.clone()),
            data_roots: Vec::new(),
        })
        .unwrap();
    assert_eq!(held.len(), 8, "the worker keeps its eight runs");
    for a in held.iter().filter(|a| a.experiment_id != bob) {
        coord
            .complete(
                &ablate_coordinator::state::AttemptRef {
                    worker_id: worker.clone(),
                    run_id: a.run_id.clone(),
                    attempt: a.attempt,
                },
                0,
            )
            .unwrap();
        for d in &a.devices {
            busy.retain(|b| b != d);
        }
    }
    let placed = fill(&coord, &worker, &mut busy);
    assert_eq!(placed.get(&bob), Some(&2), "{placed:?}");
    assert_eq!(
        alice.iter().filter_map(|a| placed.get(a)).sum::<usize>(),
        2,
        "{placed:?}"
    );
}
