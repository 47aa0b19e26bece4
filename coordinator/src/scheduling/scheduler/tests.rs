//! Unit tests of the scheduler: placement, leases, attempts and fencing.

use std::collections::BTreeMap;

use super::*;

const TTL: Millis = 15_000;

fn worker(s: &mut Scheduler, id: &str, devices: &[&str]) {
    s.insert_worker(WorkerInfo {
        id: id.into(),
        name: format!("host-{id}"),
        devices: devices.iter().map(|d| d.to_string()).collect(),
        threads: 2,
        data_roots: Vec::new(),
    });
    s.touch(id, 0);
}

fn gpu_worker(s: &mut Scheduler, id: &str, n: usize) {
    let devices = gpus(n);
    worker(
        s,
        id,
        &devices.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

/// A run already running on `worker`'s `devices` (placed before the test starts).
fn running(s: &mut Scheduler, id: &str, exp: u64, index: u32, w: &str, devices: &[&str]) {
    let gpus = devices.iter().filter(|d| d.starts_with("cuda:")).count() as u32;
    let mut r = RunSched::queued(
        id,
        &format!("e{exp}"),
        (exp, index),
        Demand::from_gpus(gpus),
        3,
    );
    r.state = RunState::Running;
    r.attempt = 1;
    r.lease = Some(Lease {
        worker_id: w.into(),
        devices: names(devices),
        deadline_ms: TTL,
    });
    s.insert_run(r);
}

/// The GPUs of `free` not used by `taken`.
fn minus(free: &[String], taken: &[String]) -> Vec<String> {
    free.iter()
        .filter(|d| !taken.contains(d))
        .cloned()
        .collect()
}

fn run(s: &mut Scheduler, id: &str, exp: u64, index: u32, gpus: u32) {
    s.insert_run(RunSched::queued(
        id,
        &format!("e{exp}"),
        (exp, index),
        Demand::from_gpus(gpus),
        3,
    ));
}

fn names(devices: &[&str]) -> Vec<String> {
    devices.iter().map(|d| d.to_string()).collect()
}

fn gpus(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("cuda:{i}")).collect()
}

/// Acquires and commits; returns (run id, devices).
fn take(s: &mut Scheduler, w: &str, free: &[String], now: Millis) -> Option<(String, Vec<String>)> {
    let change = s.acquire(w, free, now).unwrap()?;
    let out = (
        change.after.id.clone(),
        change.after.lease.clone().unwrap().devices,
    );
    s.commit([change]);
    Some(out)
}

#[test]
fn queue_is_submit_order_across_experiments() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu"]);
    run(&mut s, "b0", 2, 0, 0);
    run(&mut s, "a1", 1, 1, 0);
    run(&mut s, "a0", 1, 0, 0);
    let mut order = Vec::new();
    while let Some((id, _)) = take(&mut s, "w", &names(&["cpu"]), 0) {
        order.push(id.clone());
        let c = s.complete("w", &id, 1).unwrap();
        s.commit([c]);
    }
    assert_eq!(order, ["a0", "a1", "b0"]);
}

#[test]
fn eight_gpus_hold_eight_one_gpu_runs() {
    let mut s = Scheduler::new(TTL);
    worker(
        &mut s,
        "w",
        &gpus(8).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for i in 0..10 {
        run(&mut s, &format!("r{i}"), 1, i, 1);
    }
    let mut free = gpus(8);
    let mut used = Vec::new();
    while let Some((_, devices)) = take(&mut s, "w", &free, 0) {
        assert_eq!(devices.len(), 1);
        free.retain(|d| d != &devices[0]);
        used.extend(devices);
    }
    used.sort();
    assert_eq!(used, {
        let mut g = gpus(8);
        g.sort();
        g
    });
    assert_eq!(s.queued().count(), 2);
}

#[test]
fn eight_gpus_hold_one_eight_gpu_run() {
    let mut s = Scheduler::new(TTL);
    worker(
        &mut s,
        "w",
        &gpus(8).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    run(&mut s, "big", 1, 0, 8);
    run(&mut s, "big2", 1, 1, 8);
    let (id, devices) = take(&mut s, "w", &gpus(8), 0).unwrap();
    assert_eq!(id, "big");
    assert_eq!(devices, gpus(8));
    // The worker wrongly reports everything free: the coordinator still counts the lease.
    assert_eq!(s.acquire("w", &gpus(8), 0).unwrap(), None);
}

#[test]
fn an_eight_gpu_run_does_not_fit_seven_free_gpus_and_holds_them() {
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "w", 8);
    run(&mut s, "big", 1, 0, 8);
    run(&mut s, "small", 1, 1, 1);
    // Seven free GPUs: not enough for `big`, and held for it (not given to `small`).
    assert_eq!(s.acquire("w", &gpus(7), 0).unwrap(), None);
    let (id, devices) = take(&mut s, "w", &gpus(8), 0).unwrap();
    assert_eq!((id.as_str(), devices), ("big", gpus(8)));
}

#[test]
fn cpu_workers_take_cpu_runs_only() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "c", &["cpu"]);
    worker(&mut s, "g", &["cuda:0"]);
    run(&mut s, "gpu-run", 1, 0, 1);
    run(&mut s, "cpu-run", 1, 1, 0);
    let (id, devices) = take(&mut s, "c", &names(&["cpu"]), 0).unwrap();
    assert_eq!((id.as_str(), devices), ("cpu-run", names(&["cpu"])));
    assert_eq!(
        s.acquire("c", &names(&["cpu"]), 0).unwrap(),
        None,
        "cpu is held"
    );
    let (id, _) = take(&mut s, "g", &names(&["cuda:0"]), 0).unwrap();
    assert_eq!(id, "gpu-run");
}

#[test]
fn unknown_worker_and_device_are_refused() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu"]);
    assert_eq!(
        s.acquire("x", &[], 0),
        Err(SchedError::UnknownWorker("x".into()))
    );
    assert!(matches!(
        s.acquire("w", &names(&["cuda:3"]), 0),
        Err(SchedError::UnknownDevice { .. })
    ));
}

#[test]
fn fencing_refuses_stale_attempts_and_other_workers() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w1", &["cpu"]);
    worker(&mut s, "w2", &["cpu"]);
    run(&mut s, "r", 1, 0, 0);
    take(&mut s, "w1", &names(&["cpu"]), 0).unwrap();
    assert!(s.renew("w1", "r", 1, 1_000).is_ok());
    assert_eq!(
        s.renew("w1", "r", 0, 1_000).unwrap_err(),
        SchedError::Stale {
            run: "r".into(),
            attempt: 0,
            current: 1
        }
    );
    assert!(matches!(
        s.renew("w2", "r", 1, 1_000),
        Err(SchedError::NotHolder { .. })
    ));
    // Lease lapses: re-queued; the old holder's messages are refused.
    let expired = s.expire(TTL + 1);
    assert_eq!(expired.len(), 1);
    s.commit(expired);
    assert!(matches!(
        s.renew("w1", "r", 1, TTL + 2),
        Err(SchedError::NotHolder { .. })
    ));
    assert!(matches!(
        s.complete("w1", "r", 1),
        Err(SchedError::NotHolder { .. })
    ));
    // The next attempt is number 2; attempt 1 is now stale.
    take(&mut s, "w2", &names(&["cpu"]), TTL + 3).unwrap();
    assert_eq!(s.run("r").unwrap().attempt, 2);
    assert!(matches!(
        s.complete("w1", "r", 1),
        Err(SchedError::Stale { current: 2, .. })
    ));
    assert!(s.complete("w2", "r", 2).is_ok());
    assert_eq!(
        s.fence("w2", "nope", 1).unwrap_err(),
        SchedError::UnknownRun("nope".into())
    );
}

#[test]
fn renewal_keeps_the_lease_alive() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu"]);
    run(&mut s, "r", 1, 0, 0);
    take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
    for t in (5_000..60_000).step_by(5_000) {
        let c = s.renew("w", "r", 1, t).unwrap();
        assert_eq!(c.after.lease.as_ref().unwrap().deadline_ms, t + TTL);
        s.commit([c]);
        assert!(s.expire(t + 1).is_empty());
    }
    assert_eq!(s.expire(55_000 + TTL).len(), 1);
}

#[test]
fn expiry_retries_then_fails_after_max_attempts() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu"]);
    run(&mut s, "r", 1, 0, 0);
    let mut now = 0;
    for attempt in 1..=3 {
        take(&mut s, "w", &names(&["cpu"]), now).unwrap();
        assert_eq!(s.run("r").unwrap().attempt, attempt);
        now += TTL;
        let changes = s.expire(now);
        assert_eq!(changes.len(), 1);
        let expected = if attempt < 3 {
            EventKind::Expired
        } else {
            EventKind::Failed
        };
        assert_eq!(changes[0].kind, expected);
        assert!(changes[0].attempt_ended());
        s.commit(changes);
    }
    let r = s.run("r").unwrap();
    assert_eq!(r.state, RunState::Failed);
    assert_eq!(r.failures, 3);
    assert!(
        r.error.as_ref().unwrap().contains("lease expired"),
        "{:?}",
        r.error
    );
    assert_eq!(s.acquire("w", &names(&["cpu"]), now).unwrap(), None);
}

#[test]
fn fail_retries_and_permanent_fails_at_once() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu"]);
    run(&mut s, "r", 1, 0, 0);
    run(&mut s, "p", 1, 1, 0);
    take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
    let c = s.fail("w", "r", 1, "NaN loss", false).unwrap();
    assert_eq!(
        (c.kind, c.after.state),
        (EventKind::Retry, RunState::Queued)
    );
    s.commit([c]);
    let (id, _) = take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
    assert_eq!(id, "r", "a retried run keeps its place in the queue");
    let c = s.fail("w", "r", 2, "missing data", true).unwrap();
    assert_eq!(c.after.state, RunState::Failed);
    assert_eq!(c.after.error.as_deref(), Some("missing data"));
    s.commit([c]);
    let (id, _) = take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
    assert_eq!(id, "p");
}

#[test]
fn release_requeues_without_counting_a_failure() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu"]);
    run(&mut s, "r", 1, 0, 0);
    for attempt in 1..=5 {
        take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
        let c = s.release("w", "r", attempt, "SIGTERM").unwrap();
        assert_eq!(c.after.state, RunState::Queued);
        s.commit([c]);
    }
    assert_eq!(s.run("r").unwrap().failures, 0);
    assert_eq!(s.run("r").unwrap().attempt, 5);
}

#[test]
fn cancel_stops_running_runs_and_frees_devices_on_release() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cuda:0", "cuda:1"]);
    run(&mut s, "a", 1, 0, 2);
    run(&mut s, "b", 1, 1, 2);
    run(&mut s, "c", 2, 0, 2);
    take(&mut s, "w", &gpus(2), 0).unwrap();
    let changes = s.cancel(&names(&["a", "b"]));
    assert_eq!(changes.len(), 2);
    s.commit(changes);
    assert_eq!(s.run("b").unwrap().state, RunState::Cancelled);
    let renewal = s.renew("w", "a", 1, 1_000).unwrap();
    assert!(
        renewal.after.cancel_requested(),
        "the worker is told to stop"
    );
    s.commit([renewal]);
    // Still held until the worker releases.
    assert_eq!(s.acquire("w", &gpus(2), 1_000).unwrap(), None);
    let c = s.release("w", "a", 1, "cancelled").unwrap();
    assert_eq!(
        (c.kind, c.after.state),
        (EventKind::Freed, RunState::Cancelled)
    );
    s.commit([c]);
    let (id, _) = take(&mut s, "w", &gpus(2), 1_000).unwrap();
    assert_eq!(
        id, "c",
        "b was cancelled while queued; c gets the freed GPUs"
    );
    assert!(s.cancel(&names(&["a"])).is_empty(), "terminal runs stay");
}

#[test]
fn a_cancelled_runs_lease_lapse_frees_devices_without_failing() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu"]);
    run(&mut s, "a", 1, 0, 0);
    take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
    let c = s.cancel(&names(&["a"]));
    s.commit(c);
    let expired = s.expire(TTL);
    assert_eq!(expired[0].kind, EventKind::Freed);
    s.commit(expired);
    let r = s.run("a").unwrap();
    assert_eq!(
        (r.state, r.failures, r.lease.is_none()),
        (RunState::Cancelled, 0, true)
    );
}

#[test]
fn a_worker_leaves_only_once_it_holds_nothing() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu"]);
    s.touch("w", 0);
    run(&mut s, "a", 1, 0, 0);
    take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
    assert_eq!(s.leases_of("w"), names(&["a"]));
    let released = s.release("w", "a", 1, "leaving").unwrap();
    s.commit([released]);
    assert!(s.leases_of("w").is_empty());
    s.remove_worker("w");
    assert!(s.worker("w").is_none() && !s.is_connected("w", 0));
    assert_eq!(
        s.pending(0).reason(s.run("a").unwrap()).unwrap(),
        "no worker is connected"
    );
}

#[test]
fn restart_extends_leases_and_reregistration_returns_held_runs() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu", "cuda:0"]);
    run(&mut s, "a", 1, 0, 0);
    run(&mut s, "b", 1, 1, 1);
    take(&mut s, "w", &names(&["cpu", "cuda:0"]), 0).unwrap();
    take(&mut s, "w", &names(&["cuda:0"]), 0).unwrap();
    // The coordinator was down for a long time: the deadlines are in the past.
    let now = 10 * TTL;
    let extended = s.extend_leases(now);
    assert_eq!(extended.len(), 2);
    assert!(extended
        .iter()
        .all(|c| c.after.lease.as_ref().unwrap().deadline_ms == now + TTL));
    s.commit(extended);
    assert!(s.expire(now + 1).is_empty());
    let held: Vec<&str> = s.held_by("w").iter().map(|r| r.id.as_str()).collect();
    assert_eq!(held, ["a", "b"]);
    assert!(s.held_by("other").is_empty());
}

#[test]
fn changes_plan_without_mutating() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu"]);
    run(&mut s, "a", 1, 0, 0);
    let c = s.acquire("w", &names(&["cpu"]), 0).unwrap().unwrap();
    assert!(c.attempt_started());
    assert_eq!(
        s.run("a").unwrap().state,
        RunState::Queued,
        "not committed yet"
    );
    assert_eq!(s.queued().count(), 1);
}

#[test]
fn states_round_trip() {
    for state in RunState::ALL {
        assert_eq!(state.as_str().parse::<RunState>(), Ok(state));
    }
    assert!("done".parse::<RunState>().is_err());
}

// ---- placement policy -------------------------------------------------------------

#[test]
fn a_multi_gpu_head_reserves_a_worker_and_small_runs_backfill_elsewhere() {
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "w", 8);
    for i in 0..4 {
        run(&mut s, &format!("small{i}"), 1, i, 1);
    }
    run(&mut s, "big", 1, 4, 8);
    for i in 5..40 {
        run(&mut s, &format!("small{i}"), 1, i, 1);
    }
    // Four small runs hold four of w's GPUs when the big one reaches the head.
    for i in 0..4 {
        let (id, _) = take(&mut s, "w", &gpus(8)[i..], 0).unwrap();
        assert_eq!(id, format!("small{i}"));
    }
    gpu_worker(&mut s, "x", 1);
    // w is held for `big` (the small runs behind it would delay it there) ...
    let r = s.reservation(0).expect("a reservation");
    assert_eq!(
        (r.run_id.as_str(), r.worker_id.as_str(), r.free),
        ("big", "w", 4)
    );
    assert_eq!(s.acquire("w", &gpus(8)[4..], 0).unwrap(), None);
    let pending = s.pending(0);
    assert_eq!(
        pending.reason(s.run("big").unwrap()).unwrap(),
        "waiting for a reservation: worker host-w is held for it (4 of 8 GPUs free)"
    );
    // ... while x, which cannot delay it, backfills.
    let (id, _) = take(&mut s, "x", &gpus(1), 0).unwrap();
    assert_eq!(id, "small5");
    // The small runs end one by one: w's freed GPUs stay free until big fits.
    for i in 0..4u32 {
        let c = s.complete("w", &format!("small{i}"), 1).unwrap();
        s.commit([c]);
        let free = gpus(8)[..=i as usize]
            .iter()
            .chain(&gpus(8)[4..])
            .cloned()
            .collect::<Vec<_>>();
        if i < 3 {
            assert_eq!(
                s.acquire("w", &free, 1).unwrap(),
                None,
                "after {} ended",
                i + 1
            );
        } else {
            let (id, devices) = take(&mut s, "w", &free, 1).unwrap();
            assert_eq!((id.as_str(), devices.len()), ("big", 8));
        }
    }
    assert_eq!(s.reservation(1), None, "no multi-GPU run left");
}

#[test]
fn a_stream_of_one_gpu_runs_does_not_starve_an_eight_gpu_run() {
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "w", 8);
    run(&mut s, "big", 2, 0, 8);
    // Eight small runs of an older experiment hold the worker; more keep coming.
    let mut busy: Vec<(String, String)> = Vec::new();
    for i in 0..8u32 {
        running(&mut s, &format!("s{i}"), 1, i, "w", &[&format!("cuda:{i}")]);
        busy.push((format!("s{i}"), format!("cuda:{i}")));
    }
    for i in 8..200u32 {
        run(&mut s, &format!("s{i}"), 1, i, 1);
    }
    let mut now = 0;
    let mut started_big = None;
    for step in 0..8 {
        now += 1_000;
        // The oldest small run ends; its GPU is free; the worker asks.
        let (id, device) = busy.remove(0);
        let c = s.complete("w", &id, 1).unwrap();
        s.commit([c]);
        let used: Vec<String> = busy.iter().map(|(_, d)| d.clone()).collect();
        let free = minus(&gpus(8), &used);
        let _ = device;
        if let Some((id, devices)) = take(&mut s, "w", &free, now) {
            assert_eq!(id, "big", "a small run took a GPU held for the big one");
            started_big = Some((step, devices.len()));
            break;
        }
    }
    assert_eq!(
        started_big,
        Some((7, 8)),
        "big starts once all eight GPUs are free"
    );
}

#[test]
fn experiments_share_the_cluster_by_priority() {
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "w", 8);
    for i in 0..20 {
        run(&mut s, &format!("a{i}"), 1, i, 1);
        run(&mut s, &format!("b{i}"), 2, i, 1);
    }
    // Equal weights: runs of the two experiments interleave, although a came first.
    let mut free = gpus(8);
    let mut order = Vec::new();
    for _ in 0..4 {
        let (id, devices) = take(&mut s, "w", &free, 0).unwrap();
        free = minus(&free, &devices);
        order.push(id);
    }
    assert_eq!(order, ["a0", "b0", "a1", "b1"]);

    // A priority-3 experiment gets three times the share of a priority-1 one.
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "w", 8);
    for i in 0..20 {
        run(&mut s, &format!("a{i}"), 1, i, 1);
        run(&mut s, &format!("b{i}"), 2, i, 1);
    }
    s.set_weight("e2", 3);
    let mut free = gpus(8);
    let mut by_exp = (0, 0);
    while let Some((id, devices)) = take(&mut s, "w", &free, 0) {
        free = minus(&free, &devices);
        if id.starts_with('a') {
            by_exp.0 += 1;
        } else {
            by_exp.1 += 1;
        }
    }
    assert_eq!(by_exp, (2, 6));
}

#[test]
fn all_gpus_of_a_run_are_on_one_worker_and_an_unfittable_run_says_why() {
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "p", 2);
    gpu_worker(&mut s, "q", 2);
    run(&mut s, "four", 1, 0, 4);
    run(&mut s, "two", 1, 1, 2);
    // Four GPUs in the cluster, but not on one worker.
    let (id, devices) = take(&mut s, "p", &gpus(2), 0).unwrap();
    assert_eq!((id.as_str(), devices), ("two", gpus(2)));
    assert_eq!(s.acquire("q", &gpus(2), 0).unwrap(), None);
    assert_eq!(
        s.pending(0).reason(s.run("four").unwrap()).unwrap(),
        "needs 4 GPUs on one worker; the largest has 2"
    );
    let sizes: BTreeMap<u32, usize> = [(4, 1), (2, 1), (0, 3)].into_iter().collect();
    assert_eq!(
        s.unfittable(&sizes, 0),
        [
            "3 runs need a CPU worker; none of the 2 connected workers offers `cpu`",
            "1 run needs 4 GPUs on one worker; the largest connected worker has 2"
        ]
    );
    // A worker that stopped reporting long ago no longer counts.
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "old", 8);
    run(&mut s, "r", 1, 0, 1);
    let later = 10 * TTL;
    assert_eq!(
        s.pending(later).reason(s.run("r").unwrap()).unwrap(),
        "no worker is connected"
    );
}

#[test]
fn small_runs_pack_into_tight_holes_and_leave_large_ones_open() {
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "r", 8); // the reserved one: all eight free
    gpu_worker(&mut s, "w", 8); // six free
    gpu_worker(&mut s, "t", 2); // one free
    running(&mut s, "w-busy", 0, 0, "w", &["cuda:0", "cuda:1"]);
    running(&mut s, "t-busy", 0, 1, "t", &["cuda:0"]);
    run(&mut s, "big8", 1, 0, 8);
    run(&mut s, "small", 1, 1, 1);
    run(&mut s, "six", 1, 2, 6);
    assert_eq!(s.reservation(0).unwrap().worker_id, "r");
    // On w, `small` (first in index order) would break the 6-hole `six` needs, and t
    // fits it more tightly: w takes `six`.
    let (id, _) = take(&mut s, "w", &gpus(8)[2..], 0).unwrap();
    assert_eq!(id, "six");
    let (id, _) = take(&mut s, "t", &gpus(2)[1..], 0).unwrap();
    assert_eq!(id, "small");
    let (id, devices) = take(&mut s, "r", &gpus(8), 0).unwrap();
    assert_eq!((id.as_str(), devices.len()), ("big8", 8));
}

#[test]
fn cpu_runs_are_not_held_back_by_a_gpu_reservation() {
    let mut s = Scheduler::new(TTL);
    worker(&mut s, "w", &["cpu", "cuda:0", "cuda:1"]);
    running(&mut s, "g", 0, 0, "w", &["cuda:0"]);
    run(&mut s, "two", 1, 0, 2);
    run(&mut s, "one", 1, 1, 1);
    run(&mut s, "c", 1, 2, 0);
    let (id, _) = take(&mut s, "w", &names(&["cpu", "cuda:1"]), 0).unwrap();
    assert_eq!(id, "c", "the free GPU is held for `two`; the CPU is not");
    assert_eq!(s.acquire("w", &names(&["cuda:1"]), 0).unwrap(), None);
    assert!(s
        .pending(0)
        .reason(s.run("one").unwrap())
        .unwrap()
        .starts_with("waiting for 1 free GPU on one worker (the most free now: 0); worker host-w is held for run two"));
}

/// Fills `w`'s eight GPUs with 1-GPU runs; returns the runs placed per experiment id.
fn fill_eight(s: &mut Scheduler, now: Millis) -> BTreeMap<String, usize> {
    let mut free = gpus(8);
    let mut by_exp: BTreeMap<String, usize> = BTreeMap::new();
    while let Some((id, devices)) = take(s, "w", &free, now) {
        free = minus(&free, &devices);
        *by_exp
            .entry(s.run(&id).unwrap().experiment_id.clone())
            .or_default() += 1;
    }
    by_exp
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(e, n)| (e.to_string(), *n)).collect()
}

#[test]
fn users_share_the_cluster_before_their_experiments_do() {
    let now = 5_000;
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "w", 8);
    // alice has three experiments, bob one: without users bob would get 2 of 8.
    for exp in 1..=4 {
        for i in 0..10 {
            run(&mut s, &format!("e{exp}-{i}"), exp, i, 1);
        }
    }
    for exp in ["e1", "e2", "e3"] {
        s.set_user(exp, "alice");
    }
    s.set_user("e4", "bob");
    assert_eq!(
        fill_eight(&mut s, now),
        counts(&[("e1", 2), ("e2", 1), ("e3", 1), ("e4", 4)])
    );

    // When bob's runs end, alice's experiments take the freed GPUs (nothing idles).
    for i in 0..4 {
        let c = s.complete("w", &format!("e4-{i}"), 1).unwrap();
        s.commit([c]);
    }
    for i in 4..10 {
        let c = s.cancel(&[format!("e4-{i}")]);
        s.commit(c);
    }
    let after = fill_eight(&mut s, now + 1_000);
    assert_eq!(after.values().sum::<usize>(), 4);
    assert!(!after.contains_key("e4"));
}

/// Eight GPUs on one worker; ten one-GPU runs in each of alice's experiments e1 and e2
/// and bob's e3.
fn alice_twice_and_bob() -> Scheduler {
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "w", 8);
    for exp in 1..=3 {
        for i in 0..10 {
            run(&mut s, &format!("e{exp}-{i}"), exp, i, 1);
        }
    }
    s.set_user("e1", "alice");
    s.set_user("e2", "alice");
    s.set_user("e3", "bob");
    s
}

#[test]
fn a_user_weight_changes_the_users_share() {
    let mut s = alice_twice_and_bob();
    s.set_user_weight("bob", 3);
    // bob (weight 3) gets three times alice's devices, although she has two experiments.
    assert_eq!(
        fill_eight(&mut s, 0),
        counts(&[("e1", 1), ("e2", 1), ("e3", 6)])
    );
}

#[test]
fn priority_moves_devices_between_one_users_experiments_only() {
    let mut s = alice_twice_and_bob();
    s.set_weight("e1", 3);
    // alice's priority-3 experiment gets three of her four GPUs; bob keeps his half.
    assert_eq!(
        fill_eight(&mut s, 0),
        counts(&[("e1", 3), ("e2", 1), ("e3", 4)])
    );
}

#[test]
fn a_user_set_after_placement_carries_what_the_experiment_holds() {
    let mut s = Scheduler::new(TTL);
    gpu_worker(&mut s, "w", 8);
    // e0 already holds four GPUs when it is attributed to alice (a restart loads the
    // users before the runs, but the order must not matter).
    for i in 0..4u32 {
        running(
            &mut s,
            &format!("held{i}"),
            0,
            i,
            "w",
            &[&format!("cuda:{i}")],
        );
    }
    for exp in 1..=2 {
        for i in 0..10 {
            run(&mut s, &format!("e{exp}-{i}"), exp, i, 1);
        }
    }
    s.set_user("e0", "alice");
    s.set_user("e1", "alice");
    s.set_user("e2", "bob");
    let mut free = gpus(8)[4..].to_vec();
    let mut placed = Vec::new();
    while let Some((id, devices)) = take(&mut s, "w", &free, 0) {
        free = minus(&free, &devices);
        placed.push(id);
    }
    assert_eq!(placed, ["e2-0", "e2-1", "e2-2", "e2-3"]);
}
