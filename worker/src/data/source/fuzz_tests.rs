//! Bounded fuzzing of the dataset readers: IDX (plain and gzipped), CIFAR batches and list
//! files take mutated bytes without panicking. Inputs are small, so memory stays bounded;
//! each reader gets a couple of seconds.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use ablate_common::fuzz::Mutator;

use super::{cifar, idx, listfile, read_maybe_gzipped, ListContext};

const BUDGET: Duration = Duration::from_secs(2);

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn idx_images(n: u32, side: u32) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3];
    for d in [n, side, side] {
        out.extend(d.to_be_bytes());
    }
    out.extend((0..n * side * side).map(|i| i as u8));
    out
}

fn idx_labels(n: u32) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 1];
    out.extend(n.to_be_bytes());
    out.extend((0..n).map(|i| (i % 10) as u8));
    out
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ablate-fuzz-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ctx(root: &Path) -> ListContext<'_> {
    ListContext {
        root,
        split: "train",
        classes: Some(10),
        class_names: None,
    }
}

#[test]
fn idx_and_gzip_readers_survive_mutated_files() {
    let dir = scratch("idx");
    let images = idx_images(6, 5);
    let labels = idx_labels(6);
    let seeds: Vec<Vec<u8>> = vec![images.clone(), labels.clone(), gzip(&images), gzip(&labels)];
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    std::fs::write(dir.join("labels"), &labels).unwrap();
    let runs = Mutator::new(11).run(&seeds, BUDGET, 20_000, |bytes| {
        std::fs::write(dir.join("images"), bytes).unwrap();
        let _ = read_maybe_gzipped(&dir.join("images"));
        let _ = idx::Idx::read(&dir.join("images"));
        let _ = idx::list(&ctx(&dir), "images", "labels", Some(4));
        let _ = idx::list(&ctx(&dir), "labels", "images", None);
    });
    assert!(runs > 50, "{runs}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cifar_reader_survives_mutated_batches() {
    let dir = scratch("cifar");
    let mut batch = Vec::new();
    for r in 0..2u8 {
        batch.push(r);
        batch.extend(std::iter::repeat_n(r, 3 * 32 * 32));
    }
    let runs = Mutator::new(12).run(&[&batch], BUDGET, 5_000, |bytes| {
        std::fs::write(dir.join("data_batch_1.bin"), bytes).unwrap();
        let _ = cifar::list(&ctx(&dir), &["data_batch_1.bin".to_string()], None);
    });
    assert!(runs > 20, "{runs}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn list_files_survive_mutated_lines() {
    let dir = scratch("list");
    std::fs::write(dir.join("a.png"), b"not really a png").unwrap();
    let seed = b"# comment\na.png 3\nmy dir/b c.jpg\t12\n../x.png 1\n/etc/passwd 0\nz.png -4\n";
    let runs = Mutator::new(13).run(&[seed], BUDGET, 20_000, |bytes| {
        std::fs::write(dir.join("list.txt"), bytes).unwrap();
        if let Ok(listing) = listfile::list(&ctx(&dir), "list.txt", Some(50)) {
            for bad in &listing.bad {
                // No error quotes more than a short excerpt of a line.
                assert!(bad.to_string().len() < 400, "{bad}");
            }
        }
        let _ = listfile::parse_line(&String::from_utf8_lossy(bytes));
    });
    assert!(runs > 50, "{runs}");
    let _ = std::fs::remove_dir_all(&dir);
}
