//! Per-epoch checkpoints: weights, optimizer state, epoch, seed, metrics so far and the
//! run spec's hash, in one file written atomically (temp file, fsync, rename).

use std::path::{Path, PathBuf};

use ablate_common::metrics::EpochRecord;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// File name of the latest checkpoint in a run's directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.ot";
const META_KEY: &str = "meta";
const WEIGHT_PREFIX: &str = "w.";
const OPTIMIZER_PREFIX: &str = "opt.";
const FORMAT_VERSION: u32 = 1;

/// Errors reading or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be written or moved into place.
    #[error("cannot write checkpoint {path}: {message}")]
    Write {
        /// The checkpoint path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The file is not a readable checkpoint (truncated, corrupt, not ours).
    #[error("checkpoint {path} is corrupt or unreadable: {message}")]
    Corrupt {
        /// The checkpoint path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The checkpoint belongs to a run with another spec.
    #[error(
        "checkpoint {path} was written by a run with another spec (hash {found}, this run {expected}); \
         delete it or use the original spec"
    )]
    SpecMismatch {
        /// The checkpoint path.
        path: PathBuf,
        /// Hash in the checkpoint.
        found: String,
        /// Hash of the current spec.
        expected: String,
    },
}

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Format version of this file.
    pub version: u32,
    /// `RunSpec::training_hash` of the run that wrote it.
    pub spec_hash: String,
    /// Epochs completed (the next epoch to train is `epoch + 1`).
    pub epoch: u32,
    /// The run's seed (per-epoch RNG streams derive from it and the epoch).
    pub seed: u64,
    /// Metrics of the completed epochs.
    pub history: Vec<EpochRecord>,
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// Metadata.
    pub meta: CheckpointMeta,
    /// Model variables (parameters and buffers) by VarStore name.
    pub weights: Vec<(String, Tensor)>,
    /// Optimizer state by name.
    pub optimizer: Vec<(String, Tensor)>,
}

/// Writes a checkpoint to `dir/checkpoint.ot` atomically.
pub fn save(
    dir: &Path,
    meta: &CheckpointMeta,
    weights: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
) -> Result<PathBuf, CheckpointError> {
    let path = dir.join(CHECKPOINT_FILE);
    let fail = |message: String| CheckpointError::Write {
        path: path.clone(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let meta_json = serde_json::to_vec(meta).map_err(|e| fail(e.to_string()))?;
    let mut named: Vec<(String, Tensor)> = Vec::with_capacity(weights.len() + optimizer.len() + 1);
    named.push((META_KEY.into(), Tensor::from_slice(&meta_json)));
    for (name, t) in weights {
        named.push((
            format!("{WEIGHT_PREFIX}{name}"),
            t.to_device(tch::Device::Cpu),
        ));
    }
    for (name, t) in optimizer {
        named.push((
            format!("{OPTIMIZER_PREFIX}{name}"),
            t.to_device(tch::Device::Cpu),
        ));
    }
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    Tensor::save_multi(&named, &tmp).map_err(|e| fail(e.to_string()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail(e.to_string()))?;
    Ok(path)
}

/// Loads `dir/checkpoint.ot` if it exists, checking it was written for `spec_hash`.
pub fn load(dir: &Path, spec_hash: &str) -> Result<Option<Checkpoint>, CheckpointError> {
    let path = dir.join(CHECKPOINT_FILE);
    if !path.exists() {
        return Ok(None);
    }
    load_file(&path, spec_hash).map(Some)
}

/// Loads one checkpoint file, checking it was written for `spec_hash`.
pub fn load_file(path: &Path, spec_hash: &str) -> Result<Checkpoint, CheckpointError> {
    let corrupt = |message: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    super::archive_check::check_file(path).map_err(corrupt)?;
    let named = Tensor::load_multi(path).map_err(|e| corrupt(first_line(&e.to_string())))?;
    let mut meta = None;
    let mut weights = Vec::new();
    let mut optimizer = Vec::new();
    for (name, t) in named {
        if name == META_KEY {
            let bytes = Vec::<u8>::try_from(&t).map_err(|e| corrupt(e.to_string()))?;
            meta = Some(
                serde_json::from_slice::<CheckpointMeta>(&bytes)
                    .map_err(|e| corrupt(format!("metadata: {e}")))?,
            );
        } else if let Some(rest) = name.strip_prefix(WEIGHT_PREFIX) {
            weights.push((rest.to_string(), t));
        } else if let Some(rest) = name.strip_prefix(OPTIMIZER_PREFIX) {
            optimizer.push((rest.to_string(), t));
        } else {
            return Err(corrupt(format!("unexpected entry `{name}`")));
        }
    }
    let meta = meta.ok_or_else(|| corrupt("no metadata entry".into()))?;
    if meta.version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            meta.version
        )));
    }
    if meta.spec_hash != spec_hash {
        return Err(CheckpointError::SpecMismatch {
            path: path.to_path_buf(),
            found: meta.spec_hash,
            expected: spec_hash.to_string(),
        });
    }
    Ok(Checkpoint {
        meta,
        weights,
        optimizer,
    })
}

/// libtorch errors carry a C++ backtrace; the first line says what happened.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).to_string()
}

/// The metadata a new checkpoint gets.
pub fn meta(spec_hash: &str, epoch: u32, seed: u64, history: &[EpochRecord]) -> CheckpointMeta {
    CheckpointMeta {
        version: FORMAT_VERSION,
        spec_hash: spec_hash.to_string(),
        epoch,
        seed,
        history: history.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ablate-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trip_and_spec_check() {
        let dir = tmpdir("rt");
        let w = vec![("fc.weight".to_string(), Tensor::from_slice(&[1.0f32, 2.0]))];
        save(&dir, &meta("abc", 3, 7, &[]), &w, &[]).unwrap();
        let ck = load(&dir, "abc").unwrap().unwrap();
        assert_eq!(ck.meta.epoch, 3);
        assert_eq!(ck.weights[0].0, "fc.weight");
        let err = load(&dir, "other").unwrap_err();
        assert!(matches!(err, CheckpointError::SpecMismatch { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_crash() {
        let dir = tmpdir("corrupt");
        let w = vec![("a".to_string(), Tensor::from_slice(&[1.0f32; 64]))];
        let path = save(&dir, &meta("h", 1, 1, &[]), &w, &[]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load(&dir, "h").unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
        std::fs::write(&path, b"not a checkpoint at all").unwrap();
        assert!(load(&dir, "h").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A tensor name's length prefix in `data.pkl` set to 2 GiB: libtorch would allocate it
    /// before noticing the archive ends; the check refuses it first, naming the member.
    #[test]
    fn a_planted_pickle_length_is_refused_before_libtorch_reads_it() {
        let dir = tmpdir("planted");
        let w = vec![("fc.weight".to_string(), Tensor::from_slice(&[1.0f32; 4]))];
        let path = save(&dir, &meta("h", 1, 1, &[]), &w, &[]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let name = b"w|fc|weight"; // tch writes `.` in names as `|`
        let at = bytes
            .windows(name.len())
            .position(|window| window == name)
            .expect("the tensor name is in data.pkl");
        bytes[at - 4..at].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = load(&dir, "h").unwrap_err().to_string();
        assert!(err.contains("data.pkl"), "{err}");
        assert!(err.contains("claims 2147483647 bytes"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Mutated checkpoint files are refused with an error, never a crash.
    #[test]
    fn the_loader_survives_mutated_files() {
        let dir = tmpdir("fuzz");
        let w = vec![("fc.weight".to_string(), Tensor::from_slice(&[0.5f32; 16]))];
        let o = vec![("m.fc.weight".to_string(), Tensor::from_slice(&[0.1f32; 16]))];
        let path = save(&dir, &meta("h", 1, 1, &[]), &w, &o).unwrap();
        let good = std::fs::read(&path).unwrap();
        let target = dir.join("fuzzed.ot");
        let runs = ablate_common::fuzz::Mutator::new(9).run(
            &[&good],
            std::time::Duration::from_secs(2),
            2_000,
            |bytes| {
                std::fs::write(&target, bytes).unwrap();
                let _ = load_file(&target, "h");
            },
        );
        assert!(runs > 10, "{runs}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
