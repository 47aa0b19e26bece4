//! The checkpoint loader against hostile size fields: every byte offset of a real
//! checkpoint file, overwritten with sizes meant to make a reader allocate gigabytes (zip
//! entry sizes, zip64 fields, pickled tensor sizes all sit somewhere in the file), must load
//! as an error or a checkpoint — never a crash — and the process's peak resident memory
//! must stay within a small bound of what it was before.
//!
//! The bound is read from `VmHWM`, a process-wide peak: this file is its own test binary and
//! holds one test.

use ablate_worker::train::checkpoint::{load_file, meta, save};
use tch::Tensor;

/// Peak resident memory of this process so far, in kB (`VmHWM`).
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// How far the peak may grow over the whole sweep (the file itself is a few kB).
const BOUND_KB: u64 = 128 * 1024;

/// Sizes a hostile writer would plant, little-endian as the zip format stores them (4- and
/// 8-byte fields) and as the pickle stores integers.
const HOSTILE: &[&[u8]] = &[
    &[0xff; 4],
    &[0xff, 0xff, 0xff, 0x7f],
    &[0x00, 0x00, 0x00, 0x40],
    &[0xff; 8],
    &[0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00],
];

/// Before the loader checked the archive itself, a string length of up to 4 GiB planted
/// in `data.pkl` made libtorch's unpickler allocate and zero-fill that much before it
/// reported "Unexpected end of pickler archive" (peak RSS 0.36 -> 4.5 GB on a 3 KB file).
#[test]
fn hostile_size_fields_neither_crash_nor_balloon_memory() {
    let dir = std::env::temp_dir().join(format!("ablate-hostile-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let weights = vec![(
        "fc.weight".to_string(),
        Tensor::from_slice(&[0.5f32; 64]).reshape([8, 8]),
    )];
    let optimizer = vec![("m.fc.weight".to_string(), Tensor::from_slice(&[0.1f32; 64]))];
    let good_path = save(&dir, &meta("h", 1, 1, &[]), &weights, &optimizer).unwrap();
    let good = std::fs::read(&good_path).unwrap();
    let target = dir.join("hostile.ot");
    std::fs::write(&target, &good).unwrap();
    load_file(&target, "h").expect("the untouched file loads");
    let before = peak_rss_kb();

    let (mut refused, mut loaded) = (0usize, 0usize);
    let mut bytes = good.clone();
    for value in HOSTILE {
        for offset in 0..=good.len() - value.len() {
            bytes[offset..offset + value.len()].copy_from_slice(value);
            std::fs::write(&target, &bytes).unwrap();
            match load_file(&target, "h") {
                Ok(_) => loaded += 1,
                Err(_) => refused += 1,
            }
            bytes[offset..offset + value.len()]
                .copy_from_slice(&good[offset..offset + value.len()]);
        }
    }
    let after = peak_rss_kb();
    eprintln!(
        "{} bytes, {} hostile files: {refused} refused, {loaded} loaded; peak RSS {before} kB -> {after} kB",
        good.len(),
        refused + loaded
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        refused > 0,
        "no hostile file was refused: the sweep did not reach the loader"
    );
    assert!(
        after <= before + BOUND_KB,
        "peak RSS grew from {before} kB to {after} kB while loading hostile checkpoints"
    );
}
