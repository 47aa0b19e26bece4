//! `ablate run`'s check, before anything trains, that its local workers can run every run
//! of the grid: a run needs all its GPUs on one worker, and a CPU run a worker that offers
//! the CPU. The refusal says which runs, why, and what to change.

use std::collections::BTreeMap;

use ablate_common::spec::grid::Grid;
use ablate_common::spec::DeviceList;

/// What one local worker offers, from its `--devices` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalOffer {
    /// `cpu` or `cpu:N`: the CPU, no GPU.
    Cpu,
    /// `cuda:…`: this many GPUs, no CPU device.
    Gpus(u32),
    /// `auto`: known only once the worker has looked (checked after it registers).
    Auto,
}

impl LocalOffer {
    /// From a worker's `--devices` value (as `split_devices` gives it).
    pub fn parse(devices: &str) -> LocalOffer {
        match DeviceList::parse(devices) {
            Ok(DeviceList::Cuda(ordinals)) => LocalOffer::Gpus(ordinals.len() as u32),
            Ok(DeviceList::Cpu(_)) => LocalOffer::Cpu,
            Err(_) => LocalOffer::Auto,
        }
    }
}

/// Runs of a grid by the GPUs they need (0: CPU), with the first run's name of each size.
pub fn sizes(grid: &Grid) -> BTreeMap<u32, (usize, String)> {
    let mut out: BTreeMap<u32, (usize, String)> = BTreeMap::new();
    for run in &grid.runs {
        out.entry(run.spec.gpus)
            .or_insert_with(|| (0, run.name.clone()))
            .0 += 1;
    }
    out
}

fn runs(count: usize, first: &str) -> String {
    if count == 1 {
        format!("run `{first}`")
    } else {
        format!("{count} runs (e.g. `{first}`)")
    }
}

/// Why the local workers cannot run some of the grid's runs, one line a size (empty: they
/// can, or some worker is `auto` and is checked once it registered).
pub fn refusal(grid: &Grid, offers: &[LocalOffer], devices_flag: &str) -> Vec<String> {
    if offers.contains(&LocalOffer::Auto) {
        return Vec::new();
    }
    let any_cpu = offers.contains(&LocalOffer::Cpu);
    let max_gpus = offers
        .iter()
        .map(|o| match o {
            LocalOffer::Gpus(n) => *n,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    for (gpus, (count, first)) in sizes(grid) {
        let what = runs(count, &first);
        if gpus == 0 && !any_cpu {
            out.push(format!(
                "{what} of `{}` train on the CPU (gpus = 0), but the local workers offer only \
                 GPUs (--devices {devices_flag}); set gpus = 1 or more in the grid, or run \
                 with --devices cpu",
                grid.name
            ));
        } else if gpus > max_gpus {
            let have = match max_gpus {
                0 => format!("the local workers have none (--devices {devices_flag})"),
                m => format!(
                    "the largest local worker has {m} (--devices {devices_flag} with {} workers)",
                    offers.len()
                ),
            };
            let change = if max_gpus == 0 {
                "run it where there is a GPU with --devices cuda:0,… (or auto), or set \
                 gpus = 0 in the grid to train on the CPU"
                    .to_string()
            } else {
                format!(
                    "give one worker {gpus} GPUs (fewer --workers, more devices), or lower gpus \
                     in the grid"
                )
            };
            out.push(format!(
                "{what} of `{}` need{} {gpus} GPU{} on one worker, but {have}; {change}",
                grid.name,
                if count == 1 { "s" } else { "" },
                if gpus == 1 { "" } else { "s" },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ablate_common::spec::grid::parse_grid;

    fn grid(gpus: &str) -> Grid {
        let text = format!(
            "name = \"g\"\n[base]\nmodel = \"lenet\"\nimage_size = 32\nchannels = 1\nclasses = 10\n\
             epochs = 1\n[grid]\ngpus = [{gpus}]\n"
        );
        parse_grid(&text, "g.toml").unwrap()
    }

    #[test]
    fn a_gpu_run_on_cpu_workers_is_refused_with_what_to_change() {
        let lines = refusal(&grid("1"), &[LocalOffer::Cpu], "cpu");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("run `lenet` of `g` needs 1 GPU on one worker, but the local workers have none (--devices cpu)"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("set gpus = 0"), "{}", lines[0]);
    }

    #[test]
    fn gpus_count_per_worker_not_in_total() {
        let offers = [LocalOffer::Gpus(2), LocalOffer::Gpus(2)];
        let lines = refusal(&grid("1, 4"), &offers, "cuda:0,1,2,3");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("needs 4 GPUs on one worker, but the largest local worker has 2"),
            "{}",
            lines[0]
        );
        assert!(refusal(&grid("1, 2"), &offers, "cuda:0,1,2,3").is_empty());
    }

    #[test]
    fn cpu_runs_need_a_cpu_worker_and_auto_is_checked_later() {
        let lines = refusal(&grid("0"), &[LocalOffer::Gpus(1)], "cuda:0");
        assert!(lines[0].contains("offer only GPUs"), "{lines:?}");
        assert!(refusal(&grid("0, 8"), &[LocalOffer::Auto], "auto").is_empty());
        assert_eq!(LocalOffer::parse("auto"), LocalOffer::Auto);
        assert_eq!(LocalOffer::parse("cuda:0,3"), LocalOffer::Gpus(2));
        assert_eq!(LocalOffer::parse("cpu:2"), LocalOffer::Cpu);
    }
}
