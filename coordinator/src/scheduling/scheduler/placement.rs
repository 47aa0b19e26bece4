//! Placement: which queued run a worker's free devices take (fair share, the reservation
//! of a multi-GPU head, one node, packing), and why a queued run waits.

use std::collections::BTreeMap;

use super::*;

/// The head of the fair order that holds a worker for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The run.
    pub run_id: String,
    /// GPUs it needs.
    pub gpus: u32,
    /// The worker held for it.
    pub worker_id: String,
    /// GPUs free there now.
    pub free: u32,
}

/// What the connected workers offer, as the coordinator counts it.
#[derive(Debug, Clone, Default)]
struct ClusterView<'a> {
    /// (worker id, GPUs, GPUs not under a lease) of each connected worker, in no order
    /// (every use breaks ties by id).
    gpu_workers: Vec<(&'a str, u32, u32)>,
    /// Connected workers in all.
    connected: usize,
    /// Whether a connected worker offers `cpu`.
    any_cpu: bool,
    /// Whether a connected worker's `cpu` is free.
    cpu_free: bool,
    /// The most GPUs of one connected worker.
    max_gpus: u32,
}

/// Pending reasons of queued runs, computed against one view of the cluster.
#[derive(Debug)]
pub struct Pending<'a> {
    sched: &'a Scheduler,
    view: ClusterView<'a>,
    reservation: Option<Reservation>,
}

impl Pending<'_> {
    /// Why a queued run is not running; `None` for a run that is not queued.
    pub fn reason(&self, run: &RunSched) -> Option<String> {
        if run.state != RunState::Queued {
            return None;
        }
        let v = &self.view;
        if v.connected == 0 {
            return Some("no worker is connected".to_string());
        }
        Some(match run.demand {
            Demand::Cpu if !v.any_cpu => format!(
                "needs a CPU worker; none of the {} connected workers offers `cpu`",
                v.connected
            ),
            Demand::Cpu if v.cpu_free => "ready: waiting for a free CPU worker to ask".into(),
            Demand::Cpu => "waiting for a CPU worker to free up".into(),
            Demand::Gpus(n) if n > v.max_gpus => match v.max_gpus {
                0 => format!(
                    "needs {n} GPU{} on one worker; no connected worker has a GPU",
                    plural(n)
                ),
                m => format!("needs {n} GPUs on one worker; the largest has {m}"),
            },
            Demand::Gpus(n) => match &self.reservation {
                Some(r) if r.run_id == run.id => format!(
                    "waiting for a reservation: worker {} is held for it ({} of {n} GPUs free)",
                    self.sched.worker_name(&r.worker_id),
                    r.free
                ),
                reservation => {
                    let most_free = v
                        .gpu_workers
                        .iter()
                        .filter(|(w, ..)| reservation.as_ref().is_none_or(|r| r.worker_id != *w))
                        .map(|(_, _, free)| *free)
                        .max()
                        .unwrap_or(0);
                    if most_free >= n {
                        format!(
                            "ready: waiting for a worker with {n} free GPU{} to ask",
                            plural(n)
                        )
                    } else {
                        let held = reservation
                            .as_ref()
                            .map(|r| {
                                format!(
                                    "; worker {} is held for run {}",
                                    self.sched.worker_name(&r.worker_id),
                                    r.run_id
                                )
                            })
                            .unwrap_or_default();
                        format!(
                            "waiting for {n} free GPU{} on one worker (the most free now: {most_free}){held}",
                            plural(n)
                        )
                    }
                }
            },
        })
    }

    /// The reservation of this view.
    pub fn reservation(&self) -> Option<&Reservation> {
        self.reservation.as_ref()
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The number of `cuda:N` devices in a list.
pub fn gpu_count<S: AsRef<str>>(devices: impl IntoIterator<Item = S>) -> u32 {
    devices
        .into_iter()
        .filter(|d| Device::ordinal_of(d.as_ref()).is_some())
        .count() as u32
}

impl Scheduler {
    fn view(&self, now: Millis) -> ClusterView<'_> {
        let mut view = ClusterView::default();
        for w in self.workers.values() {
            if !self.is_connected(&w.id, now) {
                continue;
            }
            view.connected += 1;
            let busy = self.index.busy(&w.id);
            if w.devices.iter().any(|d| d == "cpu") {
                view.any_cpu = true;
                if !busy.is_some_and(|b| b.contains("cpu")) {
                    view.cpu_free = true;
                }
            }
            let total = gpu_count(&w.devices);
            if total > 0 {
                let used = busy.map_or(0, gpu_count);
                view.gpu_workers
                    .push((w.id.as_str(), total, total.saturating_sub(used)));
                view.max_gpus = view.max_gpus.max(total);
            }
        }
        view
    }

    /// The first experiment of the fair order whose head (its first queued run that a
    /// connected worker can ever hold) needs several GPUs, and the worker held for that run:
    /// the one with the most free GPUs (then the smallest, then by id).
    fn reservation_in(&self, view: &ClusterView<'_>) -> Option<Reservation> {
        for exp in self.index.fair_order() {
            let Some(head) = self.index.first_fitting(exp, |g| {
                if g == 0 {
                    view.any_cpu
                } else {
                    g <= view.max_gpus
                }
            }) else {
                continue;
            };
            if head.gpus < 2 {
                continue;
            }
            let (worker_id, _, free) = view
                .gpu_workers
                .iter()
                .filter(|(_, total, _)| *total >= head.gpus)
                .min_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(b.0)))?;
            return Some(Reservation {
                run_id: head.id.to_string(),
                gpus: head.gpus,
                worker_id: worker_id.to_string(),
                free: *free,
            });
        }
        None
    }

    /// The current reservation, if any.
    pub fn reservation(&self, now: Millis) -> Option<Reservation> {
        self.reservation_in(&self.view(now))
    }

    /// Pending reasons against the cluster as it is at `now`.
    pub fn pending(&self, now: Millis) -> Pending<'_> {
        let view = self.view(now);
        let reservation = self.reservation_in(&view);
        Pending {
            sched: self,
            view,
            reservation,
        }
    }

    /// Why runs of these sizes (GPUs; 0 is CPU) cannot run on any connected worker, one
    /// line a size; empty when every size fits a connected worker.
    pub fn unfittable(&self, sizes: &BTreeMap<u32, usize>, now: Millis) -> Vec<String> {
        let view = self.view(now);
        let mut out = Vec::new();
        for (&gpus, &count) in sizes {
            let (runs, need) = if count == 1 {
                ("1 run".to_string(), "needs")
            } else {
                (format!("{count} runs"), "need")
            };
            if view.connected == 0 {
                out.push(
                    "no worker is connected yet: the runs wait until one registers".to_string(),
                );
                break;
            }
            if gpus == 0 && !view.any_cpu {
                out.push(format!(
                    "{runs} {need} a CPU worker; none of the {} connected workers offers `cpu`",
                    view.connected
                ));
            } else if gpus > view.max_gpus {
                out.push(match view.max_gpus {
                    0 => format!("{runs} {need} {gpus} GPU{} on one worker; no connected worker has a GPU", plural(gpus)),
                    m => format!("{runs} {need} {gpus} GPUs on one worker; the largest connected worker has {m}"),
                });
            }
        }
        out
    }

    /// Plans the placement of a queued run on the worker's free devices (see the module
    /// docs for the policy). Devices the worker reports free but whose lease the coordinator
    /// still counts are not used (their run may still be running there).
    pub fn acquire(
        &self,
        worker_id: &str,
        free: &[String],
        now: Millis,
    ) -> Result<Option<Change>, SchedError> {
        let worker = self
            .workers
            .get(worker_id)
            .ok_or_else(|| SchedError::UnknownWorker(worker_id.to_string()))?;
        if let Some(device) = free.iter().find(|d| !worker.devices.contains(d)) {
            return Err(SchedError::UnknownDevice {
                worker: worker_id.to_string(),
                device: device.clone(),
            });
        }
        let held = self.index.busy(worker_id);
        let available: BTreeSet<&str> = free
            .iter()
            .map(String::as_str)
            .filter(|d| !held.is_some_and(|h| h.contains(*d)))
            .collect();
        let cpu_free = available.contains("cpu");
        let mut gpus: Vec<(usize, &str)> = available
            .iter()
            .filter_map(|d| Some((Device::ordinal_of(d)?, *d)))
            .collect();
        gpus.sort();
        let n_free = gpus.len() as u32;
        if !cpu_free && n_free == 0 {
            return Ok(None);
        }

        let mut view = self.view(now);
        if !view.gpu_workers.iter().any(|(w, ..)| *w == worker_id) && n_free > 0 {
            // Asking proves it is connected, even before its first `touch`.
            view.gpu_workers
                .push((worker.id.as_str(), gpu_count(&worker.devices), n_free));
            view.max_gpus = view.max_gpus.max(gpu_count(&worker.devices));
        }
        let reservation = self.reservation_in(&view);
        let reserved_here = reservation.as_ref().filter(|r| r.worker_id == worker_id);

        let chosen: Option<&RunSched> = if let Some(r) = reserved_here.filter(|r| r.gpus <= n_free)
        {
            self.runs.get(&r.run_id)
        } else {
            // Free-GPU counts of the other connected workers not held for a reservation:
            // where a small run would fit more tightly than here.
            let mut tighter: BTreeMap<u32, usize> = BTreeMap::new();
            for (w, _, f) in &view.gpu_workers {
                if *w != worker_id && reservation.as_ref().is_none_or(|r| r.worker_id != *w) {
                    *tighter.entry(*f).or_default() += 1;
                }
            }
            // The largest queued run that fits the hole here.
            let largest = self.index.largest_queued_gpus(|g| g <= n_free);
            let gpus_allowed = reserved_here.is_none();
            let fits = |g: u32| -> bool {
                if g == 0 {
                    return cpu_free;
                }
                if !gpus_allowed || g > n_free {
                    return false;
                }
                // Packing: a smaller run does not break the hole the largest fitting run
                // needs when a connected worker fits it more tightly.
                let breaks_hole = g < largest && n_free - g < largest;
                !(breaks_hole && tighter.range(g..n_free).next().is_some())
            };
            self.index
                .fair_order()
                .into_iter()
                .find_map(|exp| self.index.first_fitting(exp, fits))
                .and_then(|head| self.runs.get(head.id))
        };
        let Some(run) = chosen else {
            return Ok(None);
        };
        let devices: Vec<String> = match run.demand {
            Demand::Cpu => vec!["cpu".to_string()],
            Demand::Gpus(n) => gpus[..n as usize]
                .iter()
                .map(|(_, d)| d.to_string())
                .collect(),
        };
        let mut after = run.clone();
        after.state = RunState::Running;
        after.attempt += 1;
        after.lease = Some(Lease {
            worker_id: worker_id.to_string(),
            devices: devices.clone(),
            deadline_ms: now + self.lease_ttl_ms,
        });
        Ok(Some(Change {
            before: run.clone(),
            message: format!(
                "attempt {} on worker {} ({}) devices {}",
                after.attempt,
                worker.name,
                worker_id,
                devices.join(",")
            ),
            after,
            kind: EventKind::Started,
        }))
    }
}
