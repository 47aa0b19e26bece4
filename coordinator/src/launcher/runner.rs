//! Runs an engine's commands (`sbatch`, `squeue`, `scancel`) with a time limit and capped
//! output. Behind a trait so that the launcher's sizing and limits are unit-tested with a
//! recorded runner; the real test (deploy/test-slurm.sh) runs the real commands.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The most output kept of a command (stdout and stderr each).
pub const MAX_OUTPUT_BYTES: u64 = 1 << 20;

/// How long a command may take before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status 0.
    pub success: bool,
    /// Standard output (lossy UTF-8, capped).
    pub stdout: String,
    /// Standard error (lossy UTF-8, capped).
    pub stderr: String,
}

impl CommandOutput {
    /// The first line of stderr (or of stdout), for a one-line error.
    pub fn first_error_line(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let line = line.trim();
        if line.is_empty() {
            "no output".to_string()
        } else {
            line.chars().take(300).collect()
        }
    }
}

/// Runs a program with arguments and optional standard input.
pub trait CommandRunner: Send + Sync + 'static {
    /// Runs `program args…`, feeding `stdin`; an `Err` when it cannot be started or ran
    /// past its time limit.
    fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<CommandOutput, String>;
}

/// Runs commands on this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<CommandOutput, String> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| format!("{program}: cannot write its input: {e}"))?;
        }
        let out = child.stdout.take().map(read_capped);
        let err = child.stderr.take().map(read_capped);
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| format!("{program}: {e}"))? {
                break status;
            }
            if start.elapsed() > COMMAND_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {} s",
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let collect = |h: Option<std::thread::JoinHandle<String>>| {
            h.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        Ok(CommandOutput {
            success: status.success(),
            stdout: collect(out),
            stderr: collect(err),
        })
    }
}

/// Reads a pipe to its end on a thread of its own, keeping the first
/// [`MAX_OUTPUT_BYTES`].
fn read_capped(pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut pipe = pipe;
        let mut kept = Vec::new();
        let _ = (&mut pipe).take(MAX_OUTPUT_BYTES).read_to_end(&mut kept);
        // Drain the rest so that the command never blocks on a full pipe.
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        String::from_utf8_lossy(&kept).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_command_with_input_and_reports_failure() {
        let out = SystemRunner
            .run(
                "sh",
                &["-c".into(), "cat; echo oops >&2; exit 3".into()],
                Some("in\n"),
            )
            .unwrap();
        assert_eq!(
            (out.success, out.stdout.as_str(), out.first_error_line()),
            (false, "in\n", "oops".to_string())
        );
        let missing = SystemRunner
            .run("/nonexistent/sbatch", &[], None)
            .unwrap_err();
        assert!(
            missing.starts_with("cannot run /nonexistent/sbatch"),
            "{missing}"
        );
    }
}
