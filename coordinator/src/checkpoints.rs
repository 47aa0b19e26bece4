//! Checkpoints streamed in by workers, kept under `DATA_DIR/checkpoints/<run>/`.
//!
//! An upload is written to a temporary file in the run's directory, synced, then renamed to
//! `epoch-NNNNN.ckpt`; only then does the store point at it (and older files go). A crash at
//! any point leaves the store pointing at a complete file.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

/// Size of the chunks a checkpoint is streamed back in.
pub const CHUNK_BYTES: usize = 1 << 20;

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
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// The checkpoint directory tree.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    root: PathBuf,
}

/// An upload being written: a temporary file that becomes the checkpoint on
/// [`Checkpoints::install`]; dropped without install, the file is removed.
#[derive(Debug)]
pub struct Upload {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    /// Bytes written so far.
    pub bytes: u64,
}

impl Upload {
    /// Appends a chunk.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), CheckpointError> {
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(data).await.map_err(io_err(&self.path))?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Flushes and syncs the data to disk.
    pub async fn finish(&mut self) -> Result<(), CheckpointError> {
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(io_err(&self.path))?;
            file.sync_all().await.map_err(io_err(&self.path))?;
        }
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
    /// Checkpoints under `root` (`DATA_DIR/checkpoints`).
    pub fn new(root: PathBuf) -> Checkpoints {
        Checkpoints { root }
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

    /// Starts writing an upload for (run, attempt, epoch).
    pub async fn begin(
        &self,
        run_id: &str,
        attempt: u32,
        epoch: u32,
    ) -> Result<Upload, CheckpointError> {
        let dir = self.run_dir(run_id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_err(&dir))?;
        let nonce: u32 = rand::random();
        let path = dir.join(format!(".upload-a{attempt}-e{epoch}-{nonce:08x}.tmp"));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(io_err(&path))?;
        Ok(Upload {
            path,
            file: Some(file),
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
        std::fs::rename(&upload.path, &target).map_err(io_err(&target))?;
        // The rename survives a crash only once the directory entry is synced.
        if let Ok(dir) = std::fs::File::open(self.run_dir(run_id)) {
            let _ = dir.sync_all();
        }
        Ok(name)
    }

    /// Removes a run's checkpoint files other than `keep` (after the store points at it).
    pub fn prune(&self, run_id: &str, keep: &str) {
        let Ok(entries) = std::fs::read_dir(self.run_dir(run_id)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".ckpt") && name != keep {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_become_files_only_when_installed() {
        let root = std::env::temp_dir().join(format!(
            "ablate-ckpt-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let cps = Checkpoints::new(root.clone());
        let mut up = cps.begin("r1", 1, 1).await.unwrap();
        up.write(b"hello ").await.unwrap();
        up.write(b"world").await.unwrap();
        up.finish().await.unwrap();
        let name = cps.install(up, "r1", 1).unwrap();
        assert_eq!(
            std::fs::read(cps.file("r1", &name)).unwrap(),
            b"hello world"
        );

        let mut abandoned = cps.begin("r1", 1, 2).await.unwrap();
        abandoned.write(b"partial").await.unwrap();
        drop(abandoned);
        let mut second = cps.begin("r1", 1, 2).await.unwrap();
        second.write(b"two").await.unwrap();
        second.finish().await.unwrap();
        let name2 = cps.install(second, "r1", 2).unwrap();
        cps.prune("r1", &name2);
        let mut left: Vec<String> = std::fs::read_dir(cps.run_dir("r1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["epoch-00002.ckpt"]);
        std::fs::remove_dir_all(root).unwrap();
    }
}
