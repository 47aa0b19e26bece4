//! Checkpoints streamed in by workers, kept under `DATA_DIR/checkpoints/<run>/`.
//!
//! An upload is written to a temporary file in the run's directory as its chunks arrive
//! (never whole in memory), hashed on the way, synced, checked against the size and SHA-256
//! its sender announced, then renamed to `epoch-NNNNN.ckpt` next to an
//! `epoch-NNNNN.ckpt.sha256` file; only then does the store point at it (and older files
//! go). A crash at any point leaves the store pointing at a complete file.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Size of the chunks a checkpoint is streamed back in.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Free space left on the coordinator's disk after an upload, besides the upload itself.
pub const DISK_RESERVE_BYTES: u64 = 256 << 20;

/// Upload cap of a run whose parameter count is unknown.
pub const UNKNOWN_SIZE_CAP_BYTES: u64 = 64 << 30;

/// The most bytes a checkpoint of a model with `params` parameters trained with
/// `optimizer` may have: weights plus optimizer slots (momentum 1, Adam 2) at 4 bytes a
/// value, 1.5× for buffers and the file format, plus 64 MiB for names and metadata.
pub fn upload_cap(params: u64, optimizer: ablate_common::spec::OptimizerKind) -> u64 {
    if params == 0 {
        return UNKNOWN_SIZE_CAP_BYTES;
    }
    let slots = match optimizer {
        ablate_common::spec::OptimizerKind::Momentum => 2,
        ablate_common::spec::OptimizerKind::Adam => 3,
    };
    params.saturating_mul(4 * slots).saturating_mul(3) / 2 + (64 << 20)
}

/// Suffix of the file holding a checkpoint's SHA-256.
const SHA_SUFFIX: &str = ".sha256";

/// Errors of checkpoint files.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file operation failed.
    #[error("checkpoint file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// The disk has no room for the checkpoint (checked before the upload, or hit while
    /// writing it).
    #[error(
        "the coordinator's disk is full: a checkpoint of {needed} bytes does not fit in {dir} \
         ({free} bytes free, {DISK_RESERVE_BYTES} kept in reserve); the run keeps training \
         and the next epoch's checkpoint is tried again"
    )]
    DiskFull {
        /// The checkpoint directory.
        dir: PathBuf,
        /// Bytes the upload needs.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// The bytes received are not what the sender announced.
    #[error("checkpoint upload corrupt: {0}")]
    Mismatch(String),
}

impl CheckpointError {
    /// Whether this is the disk being full (a condition, not a coordinator fault).
    pub fn is_disk_full(&self) -> bool {
        match self {
            CheckpointError::DiskFull { .. } => true,
            CheckpointError::Io { cause, .. } => cause.raw_os_error() == Some(libc::ENOSPC),
            CheckpointError::Mismatch(_) => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file, read in chunks (for checkpoints stored before SHA-256 files existed).
pub fn sha256_of_file(path: &Path) -> Result<String, CheckpointError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// The checkpoint directory tree.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    root: PathBuf,
    keep: usize,
}

/// An upload being written: a temporary file that becomes the checkpoint on
/// [`Checkpoints::install`]; dropped without install, the file is removed.
#[derive(Debug)]
pub struct Upload {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    hasher: Sha256,
    expected_bytes: u64,
    expected_sha256: String,
    sha256: String,
    /// Bytes written so far.
    pub bytes: u64,
}

impl Upload {
    /// Appends a chunk; more bytes than announced is an error.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), CheckpointError> {
        if self.bytes + data.len() as u64 > self.expected_bytes {
            return Err(CheckpointError::Mismatch(format!(
                "more than the announced {} bytes",
                self.expected_bytes
            )));
        }
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(data).await.map_err(io_err(&self.path))?;
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Flushes and syncs the data to disk, then checks size and SHA-256.
    pub async fn finish(&mut self) -> Result<(), CheckpointError> {
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(io_err(&self.path))?;
            file.sync_all().await.map_err(io_err(&self.path))?;
        }
        if self.bytes != self.expected_bytes {
            return Err(CheckpointError::Mismatch(format!(
                "{} bytes received, {} announced",
                self.bytes, self.expected_bytes
            )));
        }
        let sha256 = hex(&std::mem::take(&mut self.hasher).finalize());
        if sha256 != self.expected_sha256 {
            return Err(CheckpointError::Mismatch(format!(
                "sha256 of the bytes received is {sha256}, the sender announced {}",
                self.expected_sha256
            )));
        }
        self.sha256 = sha256;
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Installed uploads were renamed away; this only removes abandoned ones.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Checkpoints {
    /// Checkpoints under `root` (`DATA_DIR/checkpoints`), keeping the `keep` newest
    /// complete ones of each run (at least one).
    pub fn new(root: PathBuf, keep: usize) -> Checkpoints {
        Checkpoints {
            root,
            keep: keep.max(1),
        }
    }

    /// A run's directory. Run ids are the coordinator's own (checked to exist before any
    /// file is touched), so they are safe path components.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join(run_id)
    }

    /// The file of a stored checkpoint.
    pub fn file(&self, run_id: &str, name: &str) -> PathBuf {
        self.run_dir(run_id).join(name)
    }

    /// The SHA-256 recorded for a stored checkpoint.
    pub fn sha256(&self, run_id: &str, name: &str) -> Option<String> {
        let path = self.file(run_id, &format!("{name}{SHA_SUFFIX}"));
        let text = std::fs::read_to_string(path).ok()?;
        Some(text.trim().to_string())
    }

    /// Bytes free for unprivileged writers on the checkpoints' file system.
    pub fn free_bytes(&self) -> Result<u64, CheckpointError> {
        std::fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        free_bytes(&self.root).map_err(io_err(&self.root))
    }

    /// Starts writing an upload for (run, attempt, epoch) of `total_bytes` with the given
    /// SHA-256, after checking the disk has room for it.
    pub async fn begin(
        &self,
        run_id: &str,
        attempt: u32,
        epoch: u32,
        total_bytes: u64,
        sha256: &str,
    ) -> Result<Upload, CheckpointError> {
        let dir = self.run_dir(run_id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_err(&dir))?;
        let free = free_bytes(&dir).map_err(io_err(&dir))?;
        if free < total_bytes.saturating_add(DISK_RESERVE_BYTES) {
            return Err(CheckpointError::DiskFull {
                dir,
                needed: total_bytes,
                free,
            });
        }
        let nonce: u32 = rand::random();
        let path = dir.join(format!(".upload-a{attempt}-e{epoch}-{nonce:08x}.tmp"));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(io_err(&path))?;
        Ok(Upload {
            path,
            file: Some(file),
            hasher: Sha256::new(),
            expected_bytes: total_bytes,
            expected_sha256: sha256.to_ascii_lowercase(),
            sha256: String::new(),
            bytes: 0,
        })
    }

    /// Makes a finished upload the run's checkpoint for `epoch`; returns its file name.
    /// Synchronous (a rename), so it can run under the coordinator's lock.
    pub fn install(
        &self,
        upload: Upload,
        run_id: &str,
        epoch: u32,
    ) -> Result<String, CheckpointError> {
        let name = format!("epoch-{epoch:05}.ckpt");
        let target = self.file(run_id, &name);
        let sha_path = self.file(run_id, &format!("{name}{SHA_SUFFIX}"));
        std::fs::write(&sha_path, format!("{}\n", upload.sha256)).map_err(io_err(&sha_path))?;
        std::fs::rename(&upload.path, &target).map_err(io_err(&target))?;
        // The rename survives a crash only once the directory entry is synced.
        if let Ok(dir) = std::fs::File::open(self.run_dir(run_id)) {
            let _ = dir.sync_all();
        }
        Ok(name)
    }

    /// Removes a run's checkpoint files but `newest` and the ones just before it, so that
    /// `keep` remain (after the store points at `newest`).
    pub fn prune(&self, run_id: &str, newest: &str) {
        let Ok(entries) = std::fs::read_dir(self.run_dir(run_id)) else {
            return;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".ckpt") && n.as_str() <= newest)
            .collect();
        // Zero-padded epochs: the name order is the epoch order.
        names.sort();
        names.reverse();
        for name in names.into_iter().skip(self.keep) {
            let _ = std::fs::remove_file(self.file(run_id, &name));
            let _ = std::fs::remove_file(self.file(run_id, &format!("{name}{SHA_SUFFIX}")));
        }
        // Newer files than `newest` cannot exist: the store never points back in time.
    }
}

/// `statvfs`: bytes available to unprivileged writers.
fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `statvfs` is a plain C struct of integers, for which all zeroes is valid.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a writable statvfs.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    /// The names of the files in a run's checkpoint directory, sorted.
    fn files_of(cps: &Checkpoints, run_id: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(cps.run_dir(run_id))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn tmp_root() -> PathBuf {
        std::env::temp_dir().join(format!(
            "ablate-ckpt-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ))
    }

    #[tokio::test]
    async fn uploads_become_files_only_when_installed() {
        let root = tmp_root();
        let cps = Checkpoints::new(root.clone(), 1);
        let mut up = cps
            .begin("r1", 1, 1, 11, &sha(b"hello world"))
            .await
            .unwrap();
        up.write(b"hello ").await.unwrap();
        up.write(b"world").await.unwrap();
        up.finish().await.unwrap();
        let name = cps.install(up, "r1", 1).unwrap();
        assert_eq!(
            std::fs::read(cps.file("r1", &name)).unwrap(),
            b"hello world"
        );
        assert_eq!(cps.sha256("r1", &name).unwrap(), sha(b"hello world"));

        let mut abandoned = cps.begin("r1", 1, 2, 7, &sha(b"partial")).await.unwrap();
        abandoned.write(b"partial").await.unwrap();
        drop(abandoned);
        let mut second = cps.begin("r1", 1, 2, 3, &sha(b"two")).await.unwrap();
        second.write(b"two").await.unwrap();
        second.finish().await.unwrap();
        let name2 = cps.install(second, "r1", 2).unwrap();
        cps.prune("r1", &name2);
        assert_eq!(
            files_of(&cps, "r1"),
            ["epoch-00002.ckpt", "epoch-00002.ckpt.sha256"]
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn wrong_size_or_hash_is_refused_and_keep_keeps_more() {
        let root = tmp_root();
        let cps = Checkpoints::new(root.clone(), 2);
        let mut short = cps.begin("r", 1, 1, 10, &sha(b"0123456789")).await.unwrap();
        short.write(b"01234").await.unwrap();
        let err = short.finish().await.unwrap_err();
        assert!(
            err.to_string().contains("5 bytes received, 10 announced"),
            "{err}"
        );

        let mut long = cps.begin("r", 1, 1, 2, &sha(b"ab")).await.unwrap();
        let err = long.write(b"abc").await.unwrap_err();
        assert!(
            err.to_string().contains("more than the announced 2 bytes"),
            "{err}"
        );

        let mut flipped = cps.begin("r", 1, 1, 2, &sha(b"ab")).await.unwrap();
        flipped.write(b"aB").await.unwrap();
        let err = flipped.finish().await.unwrap_err();
        assert!(
            err.to_string().contains("sha256 of the bytes received"),
            "{err}"
        );

        for epoch in 1..=3u32 {
            let data = format!("epoch {epoch}");
            let mut up = cps
                .begin("r", 1, epoch, data.len() as u64, &sha(data.as_bytes()))
                .await
                .unwrap();
            up.write(data.as_bytes()).await.unwrap();
            up.finish().await.unwrap();
            let name = cps.install(up, "r", epoch).unwrap();
            cps.prune("r", &name);
        }
        let left: Vec<String> = files_of(&cps, "r")
            .into_iter()
            .filter(|n| n.ends_with(".ckpt"))
            .collect();
        assert_eq!(left, ["epoch-00002.ckpt", "epoch-00003.ckpt"]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn an_upload_larger_than_the_free_space_is_refused_before_a_byte_is_written() {
        let root = tmp_root();
        let cps = Checkpoints::new(root.clone(), 1);
        let free = cps.free_bytes().unwrap();
        let err = cps.begin("r", 1, 1, free, &sha(b"")).await.unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert!(err.to_string().contains("disk is full"), "{err}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
