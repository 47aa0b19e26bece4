//! The Slurm engine: worker jobs submitted with `sbatch` (the batch script on standard
//! input, its options as `#SBATCH` lines), listed with `squeue`, cancelled with `scancel`.
//!
//! Every job of one coordinator carries the same job name (from its data directory), so
//! `squeue --me --name` finds them again after a restart, and a comment `ablate:gpus=N`
//! that says what it asked for. The worker a job becomes registers as `slurm-<job id>`.
//! The script holds no secret: the worker token is in a file only its owner can read,
//! named by `ABLATE_WORKER_TOKEN_FILE`.

use std::path::PathBuf;

use super::runner::CommandRunner;
use super::{Engine, EngineJob, EngineState};

/// How the jobs are asked for and what they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmConfig {
    /// The job name of this coordinator's jobs.
    pub job_name: String,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// `--time` (Slurm's format: `MM`, `HH:MM:SS`, `D-HH`, ...).
    pub time: Option<String>,
    /// CPUs of a CPU job.
    pub cpus_per_job: u32,
    /// Memory of a CPU job (`--mem`, e.g. `4G`).
    pub mem_per_job: String,
    /// CPUs per GPU of a GPU job.
    pub cpus_per_gpu: u32,
    /// Memory per GPU of a GPU job (`--mem-per-gpu`).
    pub mem_per_gpu: String,
    /// Seconds before the time limit at which Slurm sends the worker SIGTERM.
    pub signal_lead_s: u32,
    /// Extra `sbatch` arguments (on its command line: they override the script's lines).
    pub sbatch_args: Vec<String>,
    /// Where job output goes (`slurm-%j.out`).
    pub log_dir: PathBuf,
    /// What the job runs.
    pub worker: WorkerCommand,
}

/// The worker a job starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The `ablate-worker` binary (an absolute path the nodes see).
    pub binary: PathBuf,
    /// The coordinator URL workers dial.
    pub url: String,
    /// The worker token file (mode 0600), when the coordinator checks tokens.
    pub token_file: Option<PathBuf>,
    /// `--ca`, `--tls-cert`, `--tls-key`, `--tls-domain` of the worker.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub tls_cert: Option<PathBuf>,
    /// Its key.
    pub tls_key: Option<PathBuf>,
    /// The name the coordinator's certificate must carry.
    pub tls_domain: Option<String>,
    /// `--exit-when-idle`, as given (`2m`).
    pub exit_when_idle: String,
    /// Environment of the worker (the job starts with a clean one: `--export=NONE`).
    pub env: Vec<(String, String)>,
    /// More `ablate-worker` arguments.
    pub args: Vec<String>,
    /// Where each job's worker keeps its run directories (a directory `job-<id>` in it);
    /// `None`: `$TMPDIR/ablate-worker-<id>` on the node.
    pub work_root: Option<PathBuf>,
}

/// The Slurm engine over a command runner.
#[derive(Debug)]
pub struct SlurmEngine<R> {
    config: SlurmConfig,
    runner: R,
}

/// Quotes a word for `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn quote_path(path: &std::path::Path) -> String {
    quote(&path.to_string_lossy())
}

impl<R: CommandRunner> SlurmEngine<R> {
    /// An engine that runs Slurm's commands with `runner`.
    pub fn new(config: SlurmConfig, runner: R) -> SlurmEngine<R> {
        SlurmEngine { config, runner }
    }

    /// The batch script of a job with `gpus` GPUs (0: a CPU job).
    pub fn script(&self, gpus: u32) -> String {
        let c = &self.config;
        let w = &c.worker;
        let mut s = String::from("#!/bin/sh\n");
        s.push_str("# An ablate worker, written by `ablate serve --launcher slurm`.\n");
        let mut directive = |line: String| s.push_str(&format!("#SBATCH {line}\n"));
        directive(format!("--job-name={}", c.job_name));
        directive(format!("--comment=ablate:gpus={gpus}"));
        directive(format!(
            "--output={}",
            c.log_dir.join("slurm-%j.out").to_string_lossy()
        ));
        directive("--export=NONE".to_string());
        directive("--nodes=1".to_string());
        directive("--ntasks=1".to_string());
        // SIGTERM to the batch shell (the worker: `exec` below) this long before the time
        // limit, so that it stops at the next step and gives its run back with its
        // checkpoint.
        directive(format!("--signal=B:TERM@{}", c.signal_lead_s));
        let cpus = if gpus == 0 {
            directive(format!("--cpus-per-task={}", c.cpus_per_job));
            directive(format!("--mem={}", c.mem_per_job));
            c.cpus_per_job
        } else {
            let cpus = gpus * c.cpus_per_gpu;
            directive(format!("--gpus={gpus}"));
            directive(format!("--cpus-per-task={cpus}"));
            directive(format!("--mem-per-gpu={}", c.mem_per_gpu));
            cpus
        };
        for (flag, value) in [
            ("partition", &c.partition),
            ("account", &c.account),
            ("qos", &c.qos),
            ("time", &c.time),
        ] {
            if let Some(value) = value {
                directive(format!("--{flag}={value}"));
            }
        }
        s.push_str("# The worker token is read from a file only its owner can read.\n");
        if let Some(file) = &w.token_file {
            s.push_str(&format!(
                "export ABLATE_WORKER_TOKEN_FILE={}\n",
                quote_path(file)
            ));
        }
        for (name, value) in &w.env {
            s.push_str(&format!("export {name}={}\n", quote(value)));
        }
        // One line per option: the binary, then `--flag value`.
        let mut args = vec![
            quote_path(&w.binary),
            format!("--coordinator {}", quote(&w.url)),
            // Slurm hides the GPUs the job did not get; a CPU job offers the CPU only.
            format!("--devices {}", if gpus == 0 { "cpu" } else { "auto" }),
            format!("--exit-when-idle {}", quote(&w.exit_when_idle)),
            "--name \"slurm-$SLURM_JOB_ID\"".to_string(),
            format!("--threads {cpus}"),
            match &w.work_root {
                Some(root) => format!("--work-dir {}/\"job-$SLURM_JOB_ID\"", quote_path(root)),
                None => "--work-dir \"${TMPDIR:-/tmp}/ablate-worker-$SLURM_JOB_ID\"".to_string(),
            },
        ];
        for (flag, path) in [
            ("--ca", &w.ca),
            ("--tls-cert", &w.tls_cert),
            ("--tls-key", &w.tls_key),
        ] {
            if let Some(path) = path {
                args.push(format!("{flag} {}", quote_path(path)));
            }
        }
        if let Some(domain) = &w.tls_domain {
            args.push(format!("--tls-domain {}", quote(domain)));
        }
        if !w.args.is_empty() {
            args.push(
                w.args
                    .iter()
                    .map(|a| quote(a))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        s.push_str("exec ");
        s.push_str(&args.join(" \\\n  "));
        s.push('\n');
        s
    }
}

/// `squeue`'s state names, sorted into phases.
fn engine_state(state: &str) -> EngineState {
    match state {
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" => {
            EngineState::Pending
        }
        "CONFIGURING" | "RUNNING" | "RESIZING" | "SUSPENDED" | "STOPPED" | "SIGNALING" => {
            EngineState::Running
        }
        _ => EngineState::Ending,
    }
}

/// One `squeue` line (`%i|%T|%N|%r|%C|%k`), when it is a job of ours.
fn parse_squeue_line(line: &str) -> Option<EngineJob> {
    let mut fields = line.trim().splitn(6, '|');
    let id = fields.next()?.trim();
    let state = fields.next()?.trim();
    let node = fields.next()?.trim();
    let reason = fields.next()?.trim();
    let cpus: u32 = fields.next()?.trim().parse().ok()?;
    let gpus: u32 = fields
        .next()?
        .trim()
        .strip_prefix("ablate:gpus=")?
        .parse()
        .ok()?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    Some(EngineJob {
        id: id.to_string(),
        state: engine_state(state),
        state_name: state.to_string(),
        node: node.to_string(),
        reason: match reason {
            "None" | "(null)" => String::new(),
            r => r.to_string(),
        },
        gpus,
        cpus,
    })
}

impl<R: CommandRunner> Engine for SlurmEngine<R> {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn worker_name(&self, job_id: &str) -> String {
        format!("slurm-{job_id}")
    }

    fn log_of(&self, job_id: &str) -> String {
        self.config
            .log_dir
            .join(format!("slurm-{job_id}.out"))
            .to_string_lossy()
            .into_owned()
    }

    fn list(&self) -> Result<Vec<EngineJob>, String> {
        let args = vec![
            "--me".to_string(),
            "--noheader".into(),
            format!("--name={}", self.config.job_name),
            "--format=%i|%T|%N|%r|%C|%k".into(),
        ];
        let out = self.runner.run("squeue", &args, None)?;
        if !out.success {
            return Err(format!("squeue failed: {}", out.first_error_line()));
        }
        Ok(out.stdout.lines().filter_map(parse_squeue_line).collect())
    }

    fn submit(&self, gpus: u32) -> Result<String, String> {
        let mut args = vec!["--parsable".to_string()];
        args.extend(self.config.sbatch_args.iter().cloned());
        let out = self.runner.run("sbatch", &args, Some(&self.script(gpus)))?;
        if !out.success {
            return Err(format!("sbatch failed: {}", out.first_error_line()));
        }
        // `--parsable`: "ID" or "ID;CLUSTER".
        let id = out.stdout.trim().split(';').next().unwrap_or("").trim();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "sbatch printed no job id: `{}`",
                out.stdout.trim().chars().take(200).collect::<String>()
            ));
        }
        Ok(id.to_string())
    }

    fn cancel_pending(&self, ids: &[String]) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        // Only while still pending: a job that started meanwhile keeps running (its worker
        // leaves when idle).
        let mut args = vec!["--state=PENDING".to_string()];
        args.extend(ids.iter().cloned());
        let out = self.runner.run("scancel", &args, None)?;
        if !out.success {
            return Err(format!("scancel failed: {}", out.first_error_line()));
        }
        Ok(())
    }

    fn cancel_all_pending(&self) -> Result<(), String> {
        let args = vec![
            "--me".to_string(),
            "--state=PENDING".into(),
            format!("--name={}", self.config.job_name),
        ];
        let out = self.runner.run("scancel", &args, None)?;
        if !out.success {
            return Err(format!("scancel failed: {}", out.first_error_line()));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn config() -> SlurmConfig {
        SlurmConfig {
            job_name: "ablate-0123abcd".into(),
            partition: Some("gpu".into()),
            account: None,
            qos: Some("normal".into()),
            time: Some("4:00:00".into()),
            cpus_per_job: 2,
            mem_per_job: "4G".into(),
            cpus_per_gpu: 8,
            mem_per_gpu: "32G".into(),
            signal_lead_s: 120,
            sbatch_args: vec!["--constraint=a100".into()],
            log_dir: "/shared/ablate/slurm/logs".into(),
            worker: WorkerCommand {
                binary: "/opt/ablate/bin/ablate-worker".into(),
                url: "https://head:50051".into(),
                token_file: Some("/shared/ablate/slurm/worker.token".into()),
                ca: Some("/shared/ablate/ca.pem".into()),
                tls_cert: None,
                tls_key: None,
                tls_domain: None,
                exit_when_idle: "2m".into(),
                env: vec![("LD_LIBRARY_PATH".into(), "/opt/torch/lib:/it's".into())],
                args: vec!["--data-root".into(), "/shared/datasets".into()],
                work_root: None,
            },
        }
    }

    #[test]
    fn a_gpu_job_asks_for_its_gpus_and_cpus_and_memory_per_gpu() {
        let engine = SlurmEngine::new(config(), super::super::runner::SystemRunner);
        let script = engine.script(2);
        for line in [
            "#SBATCH --job-name=ablate-0123abcd\n",
            "#SBATCH --comment=ablate:gpus=2\n",
            "#SBATCH --export=NONE\n",
            "#SBATCH --signal=B:TERM@120\n",
            "#SBATCH --gpus=2\n",
            "#SBATCH --cpus-per-task=16\n",
            "#SBATCH --mem-per-gpu=32G\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --qos=normal\n",
            "#SBATCH --time=4:00:00\n",
            "export ABLATE_WORKER_TOKEN_FILE='/shared/ablate/slurm/worker.token'\n",
            "export LD_LIBRARY_PATH='/opt/torch/lib:/it'\\''s'\n",
            "exec '/opt/ablate/bin/ablate-worker' \\\n  --coordinator 'https://head:50051' \\\n",
            "  --devices auto \\\n",
            "  --name \"slurm-$SLURM_JOB_ID\" \\\n",
            "  --threads 16 \\\n",
            "  '--data-root' '/shared/datasets'\n",
        ] {
            assert!(script.contains(line), "no `{line}` in:\n{script}");
        }
        assert!(!script.contains("--account"), "{script}");
        let cpu = engine.script(0);
        assert!(
            cpu.contains("#SBATCH --cpus-per-task=2\n#SBATCH --mem=4G\n"),
            "{cpu}"
        );
        assert!(
            cpu.contains("--devices cpu") && !cpu.contains("--gpus"),
            "{cpu}"
        );
    }

    #[test]
    fn squeue_lines_of_other_jobs_are_skipped() {
        let job = parse_squeue_line("17|PENDING||Resources|8|ablate:gpus=1").unwrap();
        assert_eq!(
            (
                job.id.as_str(),
                job.state,
                job.reason.as_str(),
                job.gpus,
                job.cpus
            ),
            ("17", EngineState::Pending, "Resources", 1, 8)
        );
        let running = parse_squeue_line("18|RUNNING|node3|None|2|ablate:gpus=0").unwrap();
        assert_eq!(
            (
                running.state,
                running.node.as_str(),
                running.reason.as_str()
            ),
            (EngineState::Running, "node3", "")
        );
        assert_eq!(
            parse_squeue_line("19|COMPLETING|node3|None|2|ablate:gpus=0")
                .unwrap()
                .state,
            EngineState::Ending
        );
        assert!(parse_squeue_line("20|RUNNING|n|None|2|someone else's").is_none());
        assert!(parse_squeue_line("garbage").is_none());
    }
}
