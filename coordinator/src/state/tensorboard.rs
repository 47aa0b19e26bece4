//! TensorBoard event files, written by hand: each run's scalars under
//! `DATA_DIR/tensorboard/<experiment>/<run>/`, flushed as epochs arrive, so that
//! `tensorboard --logdir DATA_DIR/tensorboard` shows the curves live.
//!
//! # Format
//! An event file is a sequence of TFRecords:
//! `u64 length (LE) · u32 masked CRC32C of the length bytes · data · u32 masked CRC32C of
//! the data`, where `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`. Each record is a
//! serialised `tensorflow.Event` protobuf; we write the few fields we need:
//!
//! ```text
//! Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//! Summary { repeated Value value = 1; }
//! Value   { string tag = 1; float simple_value = 2; }
//! ```
//!
//! The first event carries `file_version: "brain.Event:2"`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ablate_common::metrics::EpochRecord;

/// CRC-32C (Castagnoli, reflected polynomial `0x82F63B78`) lookup table.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's masked CRC-32C.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord frame around `data`.
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Minimal protobuf encoding of the `Event` fields above.
mod proto {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
        varint(out, (u64::from(field) << 3) | u64::from(wire_type));
    }

    fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
        key(out, field, 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }

    /// `Event { wall_time, step, file_version }`.
    pub(super) fn file_version_event(wall_time: f64, version: &str) -> Vec<u8> {
        let mut out = Vec::new();
        key(&mut out, 1, 1);
        out.extend_from_slice(&wall_time.to_le_bytes());
        bytes(&mut out, 3, version.as_bytes());
        out
    }

    /// `Event { wall_time, step, summary { value { tag, simple_value } } }`.
    pub(super) fn scalar_event(wall_time: f64, step: i64, tag: &str, value: f32) -> Vec<u8> {
        let mut value_msg = Vec::new();
        bytes(&mut value_msg, 1, tag.as_bytes());
        key(&mut value_msg, 2, 5);
        value_msg.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::new();
        bytes(&mut summary, 1, &value_msg);
        let mut out = Vec::new();
        key(&mut out, 1, 1);
        out.extend_from_slice(&wall_time.to_le_bytes());
        if step != 0 {
            key(&mut out, 2, 0);
            // int64 is encoded as the two's-complement u64 (ten bytes when negative).
            varint(&mut out, step as u64);
        }
        bytes(&mut out, 5, &summary);
        out
    }

    #[cfg(test)]
    pub(super) fn varint_bytes(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, v);
        out
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// This machine's host name (for the event file name), with anything but
/// `[A-Za-z0-9.-]` replaced.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string());
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// A directory-safe form of an experiment or run name: anything but
/// `[A-Za-z0-9._=,+-]` becomes `_` (`cnn act=relu seed=2` → `cnn_act=relu_seed=2`).
pub fn path_component(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=,+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_".to_string(),
        _ => s,
    }
}

/// `DATA_DIR/tensorboard/<experiment>/<run>/`, names made directory-safe.
pub fn run_log_dir(data_dir: &Path, experiment: &str, run: &str) -> PathBuf {
    data_dir
        .join("tensorboard")
        .join(path_component(experiment))
        .join(path_component(run))
}

/// Writes one TensorBoard event file.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir` (and parents) and a new event file
    /// `events.out.tfevents.<secs>.<host>.ablate` in it, starting with the file-version
    /// event. An existing file is never overwritten: on a name clash (two writers in the
    /// same second) a `.<n>` suffix is added.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let wall = now();
        let base = format!("events.out.tfevents.{}.{}.ablate", wall as u64, host_name());
        let mut n = 0;
        let (path, file) = loop {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        };
        let mut writer = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        writer
            .out
            .write_all(&tfrecord(&proto::file_version_event(wall, "brain.Event:2")))?;
        writer.flush()?;
        Ok(writer)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a scalar event (buffered; see [`EventWriter::flush`]).
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> io::Result<()> {
        self.out
            .write_all(&tfrecord(&proto::scalar_event(now(), step, tag, value)))
    }

    /// Writes buffered events to the file, so that a reader sees them.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads one scalar of an epoch record.
pub type EpochValue = fn(&EpochRecord) -> f64;

/// The tags [`write_epoch`] writes, with the value each takes from an epoch record
/// (accuracies as fractions).
pub const EPOCH_TAGS: [(&str, EpochValue); 6] = [
    ("train/loss", |e| e.train_loss),
    ("train/acc", |e| e.train_acc),
    ("eval/loss", |e| e.eval_loss),
    ("eval/acc", |e| e.eval_acc),
    ("lr", |e| e.lr),
    ("throughput/images_per_sec", |e| e.images_per_sec),
];

/// Writes an epoch's scalars ([`EPOCH_TAGS`]) at step = epoch, then flushes.
pub fn write_epoch(writer: &mut EventWriter, record: &EpochRecord) -> io::Result<()> {
    for (tag, value) in EPOCH_TAGS {
        writer.scalar(tag, i64::from(record.epoch), value(record) as f32)?;
    }
    writer.flush()
}

/// Event writers of every run that has reported so far, under `DATA_DIR/tensorboard`:
/// the coordinator hands it each epoch as it is stored.
#[derive(Debug)]
pub struct TensorBoardLogs {
    data_dir: PathBuf,
    writers: HashMap<(String, String), EventWriter>,
}

impl TensorBoardLogs {
    /// Logs under `data_dir/tensorboard/`; nothing is created until the first epoch.
    pub fn new(data_dir: &Path) -> Self {
        TensorBoardLogs {
            data_dir: data_dir.to_path_buf(),
            writers: HashMap::new(),
        }
    }

    /// The root to give `tensorboard --logdir`.
    pub fn root(&self) -> PathBuf {
        self.data_dir.join("tensorboard")
    }

    /// Writes (and flushes) one epoch of a run, opening the run's event file on first use.
    pub fn epoch(&mut self, experiment: &str, run: &str, record: &EpochRecord) -> io::Result<()> {
        let key = (experiment.to_string(), run.to_string());
        let writer = match self.writers.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let dir = run_log_dir(&self.data_dir, experiment, run);
                e.insert(EventWriter::create(&dir)?)
            }
        };
        write_epoch(writer, record)
    }

    /// Closes a run's event file (when the run is terminal); a later epoch opens a new one.
    pub fn close_run(&mut self, experiment: &str, run: &str) -> io::Result<()> {
        match self
            .writers
            .remove(&(experiment.to_string(), run.to_string()))
        {
            Some(mut w) => w.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_values() {
        // The CRC catalogue's check value for CRC-32C, and RFC 3720's test vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
    }

    #[test]
    fn varints() {
        assert_eq!(proto::varint_bytes(1), vec![1]);
        assert_eq!(proto::varint_bytes(300), vec![0xac, 0x02]);
        assert_eq!(proto::varint_bytes(u64::MAX).len(), 10);
    }

    #[test]
    fn scalar_event_bytes() {
        let e = proto::scalar_event(1.5, 3, "lr", 0.25);
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 3, 0x2a, 11, 0x0a, 9, 0x0a, 2, b'l', b'r', 0x15]);
        want.extend_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(e, want);
    }

    #[test]
    fn frames_are_self_consistent() {
        let data = b"hello";
        let f = tfrecord(data);
        assert_eq!(f.len(), 8 + 4 + 5 + 4);
        assert_eq!(u64::from_le_bytes(f[0..8].try_into().unwrap()), 5);
        assert_eq!(
            u32::from_le_bytes(f[8..12].try_into().unwrap()),
            masked_crc32c(&f[0..8])
        );
        assert_eq!(&f[12..17], data);
        assert_eq!(
            u32::from_le_bytes(f[17..21].try_into().unwrap()),
            masked_crc32c(data)
        );
    }

    #[test]
    fn names_are_directory_safe() {
        assert_eq!(path_component("cnn act=relu seed=2"), "cnn_act=relu_seed=2");
        assert_eq!(path_component("../x/y"), ".._x_y");
        assert_eq!(path_component(".."), "_");
        let dir = run_log_dir(Path::new("/d"), "exp 1", "a/b");
        assert_eq!(dir, PathBuf::from("/d/tensorboard/exp_1/a_b"));
    }
}
