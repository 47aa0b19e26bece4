//! The scheduling simulation's small form: the real coordinator state and store on
//! simulated time, 24 workers of 8 GPUs, a 480-run grid of 1/2/4/8-GPU runs, 2 workers
//! dying. Checks what must hold at any scale (every run finished exactly once, the dead
//! workers' runs retried elsewhere, no size class starved); speed is the benchmark's job
//! (`cargo run --release -p ablate-coordinator --bin sched-sim`).

use std::time::Duration;

use ablate_coordinator::scheduling::sim::{self, SimConfig};

#[test]
fn a_small_cluster_runs_a_mixed_grid_to_the_end_without_starving_large_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        workers: 24,
        gpus_per_worker: 8,
        runs: 480,
        dying_workers: 2,
        seed: 7,
        minutes: (5.0, 60.0),
        lease_ttl: Duration::from_secs(300),
        heartbeat: Duration::from_secs(120),
        poll: Duration::from_secs(5),
        data_dir: dir.path().to_path_buf(),
    };
    let r = sim::run(&cfg).unwrap();
    let table = sim::table(&r, false);
    assert_eq!(r.died, 2, "{table}");
    assert_eq!((r.finished, r.failed), (480, 0), "{table}");
    assert!(r.retried >= 1, "the dead workers' runs ran again: {table}");
    // Every size class gets through: the longest wait of an 8-GPU run stays within the
    // makespan's range of the small runs' longest wait (no starvation).
    let wait = |g: u32| {
        r.by_size
            .iter()
            .find(|(s, _)| *s == g)
            .unwrap()
            .1
            .longest_wait_s
    };
    assert!(wait(8) <= wait(1) * 1.5 + 3600.0, "{table}");
    assert!(r.makespan_s < r.ideal_makespan_s * 1.5, "{table}");
    assert!(r.utilization_queued > 0.8, "{table}");
}
