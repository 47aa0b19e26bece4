//! A scheduling simulation: the real coordinator state and SQLite store, driven in process
//! on simulated time by simulated GPU workers (no gRPC, no training). It measures what the
//! scheduler costs and how well it places a large mixed grid: submit time, placement
//! latency, GPU utilization while work is queued, waits of multi-GPU runs, coordinator CPU
//! and memory, store size. `sched-sim` prints it as a table; a small form runs as a test.
//!
//! Workers ask for work when they have free GPUs (right after a run ends, and on every
//! poll tick), renew their leases with heartbeats, and a few of them die: they stop
//! talking, their leases lapse and their runs go back to the queue. A run's duration is
//! drawn from a seeded distribution; a retried run trains its whole duration again.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::scheduling::scheduler::Millis;
use crate::state::{
    AttemptRef, CoordError, Coordinator, CoordinatorConfig, Progress, Registration,
};

/// Why a simulation could not run, or ran into what the real coordinator would not do.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The data directory cannot be created.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The coordinator state refused a call.
    #[error(transparent)]
    State(#[from] CoordError),
    /// The reference SQLite commits failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The grid did not become as many runs as asked for.
    #[error("the grid has {0} runs")]
    RunCount(u32),
    /// Simulated time ran far past the ideal makespan.
    #[error("the simulation did not finish: {done} of {runs} runs done")]
    Unfinished {
        /// Runs done.
        done: usize,
        /// Runs of the grid.
        runs: usize,
    },
    /// The store and the simulation disagree on the finished runs.
    #[error("the store has {in_store} finished runs, the simulation saw {seen}")]
    FinishedMismatch {
        /// Finished runs in the store.
        in_store: usize,
        /// Finished runs the simulation counted.
        seen: usize,
    },
}

/// The simulated cluster and grid.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Simulated workers.
    pub workers: usize,
    /// GPUs of each worker.
    pub gpus_per_worker: u32,
    /// Runs of the grid (a multiple of 4: sizes 1, 2, 4 and 8 GPUs, interleaved).
    pub runs: usize,
    /// Workers that die during the simulation.
    pub dying_workers: usize,
    /// Seed of the durations and of the deaths.
    pub seed: u64,
    /// Shortest and longest run, simulated minutes.
    pub minutes: (f64, f64),
    /// Lease time-to-live, simulated.
    pub lease_ttl: Duration,
    /// Heartbeat period of a running run, simulated.
    pub heartbeat: Duration,
    /// How often every worker with free GPUs asks for work, simulated.
    pub poll: Duration,
    /// The store and checkpoints go here.
    pub data_dir: PathBuf,
}

impl SimConfig {
    /// The scale: 500 workers of 8 GPUs, 10,000 runs, 5 workers dying.
    pub fn full(data_dir: PathBuf) -> SimConfig {
        SimConfig {
            workers: 500,
            gpus_per_worker: 8,
            runs: 10_000,
            dying_workers: 5,
            seed: 14,
            minutes: (5.0, 60.0),
            lease_ttl: Duration::from_secs(600),
            heartbeat: Duration::from_secs(300),
            poll: Duration::from_secs(5),
            data_dir,
        }
    }
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Calls measured.
    pub count: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest.
    pub max_us: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<f64>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            count: samples.len(),
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: *samples.last().expect("not empty"),
        }
    }

    /// `p50 µs / p99 µs (count calls)`, a row of the table.
    fn median_p99_calls(&self) -> String {
        format!(
            "{:.0} µs / {:.0} µs ({} calls)",
            self.p50_us, self.p99_us, self.count
        )
    }
}

/// Longest wait and most overtaking of the runs of one size.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SizeStats {
    /// Runs of this size.
    pub runs: usize,
    /// Longest time from queued to started (first attempts), simulated seconds.
    pub longest_wait_s: f64,
    /// The most runs of a higher index that started before one of these runs.
    pub max_overtaken: usize,
}

/// What the simulation measured.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// The configuration's numbers, for the table.
    pub workers: usize,
    /// GPUs in all.
    pub gpus: u64,
    /// Runs submitted.
    pub runs: usize,
    /// Wall time of the submit (parse, validate, store, queue).
    pub submit_s: f64,
    /// Wall time of acquire calls that placed a run.
    pub placement: Percentiles,
    /// CPU time of the calling thread in the same acquire calls: the wall time less any
    /// time spent waiting (for a core, for the disk).
    pub placement_cpu: Percentiles,
    /// Placements over the goal and why the thread lost the time.
    pub slow_placements: SlowPlacements,
    /// Wall time of every acquire call (also those that placed nothing).
    pub acquire_any: Percentiles,
    /// Wall time of heartbeats (progress with a lease renewal, one transaction each).
    pub heartbeat: Percentiles,
    /// Busy GPU-time over live GPU-time while runs were queued.
    pub utilization_queued: f64,
    /// Simulated time until the last run finished, seconds.
    pub makespan_s: f64,
    /// Total GPU-time of the runs' first attempts over the live GPUs: the shortest makespan
    /// any scheduler could reach, seconds.
    pub ideal_makespan_s: f64,
    /// Stats by GPUs per run (1, 2, 4, 8).
    pub by_size: Vec<(u32, SizeStats)>,
    /// Runs that finished.
    pub finished: usize,
    /// Runs that failed (too many lapsed leases).
    pub failed: usize,
    /// Attempts started again after their worker died.
    pub retried: usize,
    /// Workers that died.
    pub died: usize,
    /// CPU time spent inside coordinator calls (thread CPU clock), seconds.
    pub coordinator_cpu_s: f64,
    /// CPU time of the whole process (coordinator and simulation), seconds.
    pub process_cpu_s: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
    /// The SQLite store with its WAL, MiB.
    pub store_mib: f64,
    /// Wall time of the whole simulation, seconds.
    pub wall_s: f64,
    /// Reference measured in the same run on the same disk: a one-row commit to a scratch
    /// SQLite file (WAL) with `synchronous = FULL` (an fsync per commit, what a placement
    /// cost before) and with `NORMAL` (what the store does).
    pub commit_full: Percentiles,
    /// See [`SimReport::commit_full`].
    pub commit_normal: Percentiles,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A run's training ends on its worker.
    End {
        worker: usize,
        run: String,
        attempt: u32,
    },
    /// A running run's heartbeat.
    Beat {
        worker: usize,
        run: String,
        attempt: u32,
    },
    /// A worker stops for good.
    Die { worker: usize },
    /// Every worker with free GPUs asks; lapsed leases expire.
    Tick,
}

struct SimWorker {
    id: String,
    alive: bool,
    /// Which of its GPUs are busy, by run id.
    busy: HashMap<String, Vec<String>>,
}

impl SimWorker {
    fn free(&self, gpus: u32) -> Vec<String> {
        (0..gpus)
            .map(|i| format!("cuda:{i}"))
            .filter(|d| !self.busy.values().any(|b| b.contains(d)))
            .collect()
    }

    fn busy_gpus(&self) -> u64 {
        self.busy.values().map(|b| b.len() as u64).sum()
    }
}

/// The coordinator's CPU time, summed over the calls [`CpuMeter::time`] makes.
#[derive(Debug, Default)]
struct CpuMeter(Duration);

impl CpuMeter {
    /// Calls `f`, adding the CPU time it takes on this thread.
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = thread_cpu();
        let out = f();
        self.0 += thread_cpu().saturating_sub(start);
        out
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// (voluntary, involuntary) context switches of the calling thread so far.
fn thread_switches() -> (i64, i64) {
    // SAFETY: getrusage fills the struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut u);
        u
    };
    (usage.ru_nvcsw, usage.ru_nivcsw)
}

/// Placements over the latency goal, by what the thread did in them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SlowPlacements {
    /// Placements that took longer than [`SLOW_PLACEMENT_US`] of wall time.
    pub count: usize,
    /// Of those, how many the kernel preempted (an involuntary context switch).
    pub preempted: usize,
    /// Of those, how many blocked (a voluntary switch: a lock, a sleep, I/O).
    pub blocked: usize,
}

/// The placement latency goal, microseconds.
pub const SLOW_PLACEMENT_US: f64 = 5_000.0;

/// (user + system CPU seconds, peak RSS in MiB) of this process.
fn process_usage() -> (f64, f64) {
    // SAFETY: getrusage fills the struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(usage.ru_utime) + secs(usage.ru_stime),
        usage.ru_maxrss as f64 / 1024.0,
    )
}

/// The grid: `runs / 4` seeds × gpus 1, 2, 4, 8 (seed slowest: the sizes interleave).
pub fn grid_toml(runs: usize) -> String {
    let seeds: Vec<String> = (1..=runs.div_ceil(4)).map(|s| s.to_string()).collect();
    format!(
        "name = \"sched-sim\"\n\n[base]\nmodel = \"lenet\"\nimage_size = 32\nchannels = 1\n\
         classes = 10\nepochs = 1\n\n[grid]\nseed = [{}]\ngpus = [1, 2, 4, 8]\n",
        seeds.join(", ")
    )
}

/// The run index from a run id (`<experiment>-<index>`).
fn run_index(id: &str) -> usize {
    id.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Runs the simulation.
pub fn run(cfg: &SimConfig) -> Result<SimReport, SimError> {
    let wall = Instant::now();
    let t0: Millis = 1_800_000_000_000;
    let now = Arc::new(AtomicU64::new(t0));
    let clock_now = now.clone();
    std::fs::create_dir_all(&cfg.data_dir)?;
    let coord = Coordinator::open_with_clock(
        &CoordinatorConfig {
            data_dir: cfg.data_dir.clone(),
            lease_ttl: cfg.lease_ttl,
            keep_checkpoints: 1,
        },
        Arc::new(move || clock_now.load(Ordering::SeqCst)),
    )?;
    let mut coord_cpu = CpuMeter::default();

    let devices: Vec<String> = (0..cfg.gpus_per_worker)
        .map(|i| format!("cuda:{i}"))
        .collect();
    let mut workers = Vec::with_capacity(cfg.workers);
    for i in 0..cfg.workers {
        let (id, _) = coord_cpu.time(|| {
            coord.register(Registration {
                protocol_version: ablate_common::proto::PROTOCOL_VERSION,
                name: format!("sim-{i:03}"),
                devices: devices.clone(),
                threads: 8,
                worker_id: None,
                data_roots: Vec::new(),
            })
        })?;
        workers.push(SimWorker {
            id,
            alive: true,
            busy: HashMap::new(),
        });
    }

    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (lo, hi) = cfg.minutes;
    let durations: Vec<Millis> = (0..cfg.runs)
        .map(|_| {
            let u: f64 = rng.random();
            ((lo + (hi - lo) * u * u) * 60_000.0) as Millis
        })
        .collect();
    let gpus_of = |index: usize| [1u32, 2, 4, 8][index % 4];
    let total_gpus = cfg.workers as u64 * u64::from(cfg.gpus_per_worker);
    let work: f64 = (0..cfg.runs)
        .map(|i| durations[i] as f64 * f64::from(gpus_of(i)))
        .sum();
    let ideal_makespan_s = work / total_gpus as f64 / 1000.0;

    let text = grid_toml(cfg.runs);
    let submit_start = Instant::now();
    let submitted = coord_cpu.time(|| coord.submit(&text, "sched-sim.toml"))?;
    let submit_s = submit_start.elapsed().as_secs_f64();
    if submitted.runs as usize != cfg.runs {
        return Err(SimError::RunCount(submitted.runs));
    }

    let mut events: BinaryHeap<Reverse<(Millis, u64, Event)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push =
        |events: &mut BinaryHeap<Reverse<(Millis, u64, Event)>>, at: Millis, e: Event| {
            seq += 1;
            events.push(Reverse((at, seq, e)));
        };
    push(&mut events, t0, Event::Tick);
    // Deaths in the first half of the ideal makespan, when the cluster is full.
    for _ in 0..cfg.dying_workers.min(cfg.workers) {
        let worker = rng.random_range(0..cfg.workers);
        let at = t0 + (rng.random_range(0.1..0.5) * ideal_makespan_s * 1000.0) as Millis;
        push(&mut events, at, Event::Die { worker });
    }

    let mut placement = Vec::new();
    let mut placement_cpu = Vec::new();
    let mut slow = SlowPlacements::default();
    let mut acquire_any = Vec::new();
    let mut beats = Vec::new();
    let mut started_at: Vec<Option<Millis>> = vec![None; cfg.runs];
    let mut first_start_order: Vec<usize> = Vec::with_capacity(cfg.runs);
    let mut retried = 0usize;
    let mut done = 0usize;
    let mut finished = 0usize;
    let mut died = 0usize;
    let (mut busy_queued, mut capacity_queued) = (0f64, 0f64);
    let mut busy_gpus: u64 = 0;
    let mut live_gpus: u64 = total_gpus;
    let mut last_t = t0;
    let mut queued = cfg.runs;
    let ttl_ms = cfg.lease_ttl.as_millis() as Millis;
    let limit = t0 + (ideal_makespan_s * 20.0 * 1000.0) as Millis + 100 * ttl_ms;

    while let Some(Reverse((t, _, event))) = events.pop() {
        if t > limit {
            return Err(SimError::Unfinished {
                done,
                runs: cfg.runs,
            });
        }
        if queued > 0 {
            let dt = (t - last_t) as f64;
            busy_queued += busy_gpus as f64 * dt;
            capacity_queued += live_gpus as f64 * dt;
        }
        last_t = t;
        now.store(t, Ordering::SeqCst);
        let mut asks: Vec<usize> = Vec::new();
        match event {
            Event::Tick => {
                coord_cpu.time(|| coord.expire())?;
                asks.extend((0..workers.len()).filter(|&w| {
                    workers[w].alive && workers[w].busy_gpus() < u64::from(cfg.gpus_per_worker)
                }));
                push(&mut events, t + cfg.poll.as_millis() as Millis, Event::Tick);
            }
            Event::Die { worker } => {
                let w = &mut workers[worker];
                if w.alive {
                    w.alive = false;
                    died += 1;
                    busy_gpus -= w.busy_gpus();
                    live_gpus -= u64::from(cfg.gpus_per_worker);
                    w.busy.clear();
                }
            }
            Event::Beat {
                worker,
                run,
                attempt,
            } => {
                if workers[worker].alive && workers[worker].busy.contains_key(&run) {
                    let p = Progress {
                        attempt: AttemptRef {
                            worker_id: workers[worker].id.clone(),
                            run_id: run.clone(),
                            attempt,
                        },
                        steps: Vec::new(),
                        epoch: None,
                        current_epoch: 1,
                        current_step: 0,
                        steps_per_epoch: 0,
                    };
                    let start = Instant::now();
                    let r = coord_cpu.time(|| coord.progress(p));
                    beats.push(start.elapsed().as_secs_f64() * 1e6);
                    if r.is_ok() {
                        push(
                            &mut events,
                            t + cfg.heartbeat.as_millis() as Millis,
                            Event::Beat {
                                worker,
                                run,
                                attempt,
                            },
                        );
                    } else if let Some(b) = workers[worker].busy.remove(&run) {
                        busy_gpus -= b.len() as u64;
                        asks.push(worker);
                    }
                }
            }
            Event::End {
                worker,
                run,
                attempt,
            } => {
                if workers[worker].alive {
                    if let Some(b) = workers[worker].busy.remove(&run) {
                        busy_gpus -= b.len() as u64;
                        let a = AttemptRef {
                            worker_id: workers[worker].id.clone(),
                            run_id: run.clone(),
                            attempt,
                        };
                        if coord_cpu.time(|| coord.complete(&a, 0)).is_ok() {
                            finished += 1;
                            done += 1;
                        }
                        asks.push(worker);
                    }
                }
            }
        }
        // Each asking worker takes runs until nothing more fits.
        for w in asks {
            loop {
                let free = workers[w].free(cfg.gpus_per_worker);
                if free.is_empty() {
                    break;
                }
                let start = Instant::now();
                let cpu_start = thread_cpu();
                let switches_start = thread_switches();
                let r = coord_cpu.time(|| coord.acquire(&workers[w].id, &free));
                let us = start.elapsed().as_secs_f64() * 1e6;
                let cpu_us = thread_cpu().saturating_sub(cpu_start).as_secs_f64() * 1e6;
                let switches = thread_switches();
                acquire_any.push(us);
                let Some(a) = r? else { break };
                placement.push(us);
                placement_cpu.push(cpu_us);
                if us > SLOW_PLACEMENT_US {
                    slow.count += 1;
                    slow.preempted += usize::from(switches.1 > switches_start.1);
                    slow.blocked += usize::from(switches.0 > switches_start.0);
                }
                let index = run_index(&a.run_id);
                if a.attempt > 1 {
                    retried += 1;
                }
                if started_at[index].is_none() {
                    started_at[index] = Some(t);
                    first_start_order.push(index);
                }
                busy_gpus += a.devices.len() as u64;
                workers[w].busy.insert(a.run_id.clone(), a.devices.clone());
                push(
                    &mut events,
                    t + durations[index],
                    Event::End {
                        worker: w,
                        run: a.run_id.clone(),
                        attempt: a.attempt,
                    },
                );
                push(
                    &mut events,
                    t + cfg.heartbeat.as_millis() as Millis,
                    Event::Beat {
                        worker: w,
                        run: a.run_id,
                        attempt: a.attempt,
                    },
                );
            }
        }
        queued = coord_cpu.time(|| coord.queued_count());
        // Done when nothing is queued, no live worker trains, and no lease of a dead
        // worker is left to lapse.
        if queued == 0 && busy_gpus == 0 && coord.active_count() == 0 {
            break;
        }
    }

    let status = coord.status(&submitted.id)?;
    let failed = status
        .runs
        .iter()
        .filter(|r| r.state == crate::scheduling::scheduler::RunState::Failed)
        .count();
    let finished_in_store = status
        .runs
        .iter()
        .filter(|r| r.state == crate::scheduling::scheduler::RunState::Finished)
        .count();
    if finished_in_store != finished {
        return Err(SimError::FinishedMismatch {
            in_store: finished_in_store,
            seen: finished,
        });
    }

    // Overtaking: for each run, the runs of a higher index that started before it.
    let mut tree = vec![0usize; cfg.runs + 1];
    let mut overtaken = vec![0usize; cfg.runs];
    for (started, &index) in first_start_order.iter().enumerate() {
        // Started before with an index <= this one's.
        let mut i = index + 1;
        let mut lower = 0;
        while i > 0 {
            lower += tree[i];
            i -= i & i.wrapping_neg();
        }
        overtaken[index] = started - lower;
        let mut i = index + 1;
        while i <= cfg.runs {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    }
    let by_size = [1u32, 2, 4, 8]
        .iter()
        .map(|&g| {
            let mut s = SizeStats::default();
            for i in (0..cfg.runs).filter(|&i| gpus_of(i) == g) {
                s.runs += 1;
                if let Some(at) = started_at[i] {
                    s.longest_wait_s = s.longest_wait_s.max((at - t0) as f64 / 1000.0);
                }
                s.max_overtaken = s.max_overtaken.max(overtaken[i]);
            }
            (g, s)
        })
        .collect();

    let store = ["ablate.sqlite", "ablate.sqlite-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(cfg.data_dir.join(f)).ok())
        .map(|m| m.len())
        .sum::<u64>();
    let (process_cpu_s, peak_rss_mib) = process_usage();
    let wall_s = wall.elapsed().as_secs_f64();
    drop(coord);
    let commit_full = commit_reference(&cfg.data_dir, "FULL", REFERENCE_COMMITS)?;
    let commit_normal = commit_reference(&cfg.data_dir, "NORMAL", REFERENCE_COMMITS)?;
    Ok(SimReport {
        workers: cfg.workers,
        gpus: total_gpus,
        runs: cfg.runs,
        submit_s,
        placement: Percentiles::of(placement),
        placement_cpu: Percentiles::of(placement_cpu),
        slow_placements: slow,
        acquire_any: Percentiles::of(acquire_any),
        heartbeat: Percentiles::of(beats),
        utilization_queued: if capacity_queued > 0.0 {
            busy_queued / capacity_queued
        } else {
            0.0
        },
        makespan_s: (last_t - t0) as f64 / 1000.0,
        ideal_makespan_s,
        by_size,
        finished,
        failed,
        retried,
        died,
        coordinator_cpu_s: coord_cpu.0.as_secs_f64(),
        process_cpu_s,
        peak_rss_mib,
        store_mib: store as f64 / (1024.0 * 1024.0),
        wall_s,
        commit_full,
        commit_normal,
    })
}

/// Commits timed for the reference rows.
const REFERENCE_COMMITS: usize = 1_000;

/// Latency of `n` one-row commits to a scratch WAL-mode SQLite file in `dir` with the
/// given `synchronous` setting.
fn commit_reference(
    dir: &std::path::Path,
    synchronous: &str,
    n: usize,
) -> Result<Percentiles, SimError> {
    let path = dir.join(format!("reference-{}.sqlite", synchronous.to_lowercase()));
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")?;
    conn.execute("INSERT INTO t (id, v) VALUES (1, 0)", [])?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        conn.execute("UPDATE t SET v = ?1 WHERE id = 1", [i as i64])?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(Percentiles::of(samples))
}

/// The report as a Markdown table.
pub fn table(r: &SimReport, goals: bool) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("| {k} | {v} |\n"));
    row(
        "cluster",
        format!(
            "{} workers × {} GPUs, {} died",
            r.workers,
            r.gpus / r.workers.max(1) as u64,
            r.died
        ),
    );
    row(
        "grid",
        format!("{} runs (1, 2, 4, 8 GPUs interleaved)", r.runs),
    );
    row(
        "submit (parse, store, queue)",
        format!("{:.2} s", r.submit_s),
    );
    row(
        "placement latency p50 / p99 / max",
        format!(
            "{:.0} µs / {:.0} µs / {:.0} µs ({} placements){}",
            r.placement.p50_us,
            r.placement.p99_us,
            r.placement.max_us,
            r.placement.count,
            if goals { " — goal p99 < 5 ms" } else { "" }
        ),
    );
    row(
        "placement CPU time (this thread) p50 / p99 / max",
        format!(
            "{:.0} µs / {:.0} µs / {:.0} µs",
            r.placement_cpu.p50_us, r.placement_cpu.p99_us, r.placement_cpu.max_us
        ),
    );
    row(
        "placements over 5 ms: preempted / blocked",
        format!(
            "{}: {} / {}",
            r.slow_placements.count, r.slow_placements.preempted, r.slow_placements.blocked
        ),
    );
    row("any acquire p50 / p99", r.acquire_any.median_p99_calls());
    row(
        "heartbeat (progress) p50 / p99",
        r.heartbeat.median_p99_calls(),
    );
    row(
        "GPU utilization while runs are queued",
        format!(
            "{:.1} %{}",
            r.utilization_queued * 100.0,
            if goals { " — goal > 95 %" } else { "" }
        ),
    );
    row(
        "makespan (simulated) / ideal",
        format!(
            "{:.0} min / {:.0} min",
            r.makespan_s / 60.0,
            r.ideal_makespan_s / 60.0
        ),
    );
    for (g, s) in &r.by_size {
        row(
            &format!("{g}-GPU runs: longest wait, most overtaken by"),
            format!(
                "{:.0} min, {} later runs ({} runs)",
                s.longest_wait_s / 60.0,
                s.max_overtaken,
                s.runs
            ),
        );
    }
    row(
        "finished / failed / attempts retried",
        format!("{} / {} / {}", r.finished, r.failed, r.retried),
    );
    row(
        "coordinator CPU (in its calls) / whole process",
        format!("{:.1} s / {:.1} s", r.coordinator_cpu_s, r.process_cpu_s),
    );
    row("peak RSS (process)", format!("{:.0} MiB", r.peak_rss_mib));
    row(
        "store size (SQLite + WAL)",
        format!("{:.1} MiB", r.store_mib),
    );
    row("wall time of the simulation", format!("{:.1} s", r.wall_s));
    for (setting, p) in [("FULL", &r.commit_full), ("NORMAL", &r.commit_normal)] {
        row(
            &format!("reference: one-row commit, WAL, synchronous = {setting}, p50 / p99"),
            format!(
                "{:.0} µs / {:.0} µs ({} commits, same disk, same run)",
                p.p50_us, p.p99_us, p.count
            ),
        );
    }
    format!("| measure | value |\n|---|---|\n{out}")
}
