//! The data pipeline end to end: every format read back from files the tests write (PNG,
//! JPEG, BMP, list files, IDX, CIFAR), bad lines, corrupt images and truncated binaries under
//! both policies, reproducible shuffling and augmentation, replica shards, and Fashion-MNIST
//! from Debian's `dataset-fashion-mnist`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ablate_common::spec::{Augment, BadSamplePolicy, DatasetFormat, DatasetSpec, Fit, SplitSpec};
use ablate_worker::data::inspect::{inspect, InspectOptions};
use ablate_worker::data::{open, BatchOptions, DataError, DataSource, Location, Problem, Split};
use image::{GrayImage, ImageFormat, RgbImage};

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ablate-data-{tag}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gray image whose every pixel is `value`.
fn gray(w: u32, h: u32, value: u8, format: ImageFormat) -> Vec<u8> {
    encode_gray(&GrayImage::from_pixel(w, h, image::Luma([value])), format)
}

fn encode_gray(img: &GrayImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn rgb(w: u32, h: u32, px: [u8; 3], format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    RgbImage::from_pixel(w, h, image::Rgb(px))
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

/// A spec with identity normalization (mean 0, std 1: values are pixel / 255).
fn spec(format: DatasetFormat, root: &Path, train: SplitSpec, eval: SplitSpec) -> DatasetSpec {
    DatasetSpec {
        format,
        root: root.to_path_buf(),
        train,
        eval,
        test: None,
        fit: Fit::Resize,
        mean: Some(vec![0.0]),
        std: Some(vec![1.0]),
        augment: Augment::default(),
        on_bad_sample: BadSamplePolicy::Fail,
        cache_mb: 64,
        loader_threads: 2,
    }
}

fn list_split(list: &str) -> SplitSpec {
    SplitSpec {
        list: Some(list.into()),
        ..SplitSpec::default()
    }
}

fn dir_split(dir: &str) -> SplitSpec {
    SplitSpec {
        dir: Some(dir.into()),
        ..SplitSpec::default()
    }
}

fn idx_split(images: &str, labels: &str) -> SplitSpec {
    SplitSpec {
        images: Some(images.into()),
        labels: Some(labels.into()),
        ..SplitSpec::default()
    }
}

/// All batches of a stream, images flattened, labels.
fn collect(split: &Split, opts: &BatchOptions) -> (Vec<Vec<f32>>, Vec<i64>) {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let stream = split.batches(opts);
    assert_eq!(stream.steps(), split.steps(opts));
    for batch in stream {
        let batch = batch.unwrap();
        let n = batch.images.size()[0];
        assert_eq!(batch.labels.size(), vec![n]);
        for i in 0..n {
            let img = batch.images.get(i).flatten(0, -1);
            images.push(Vec::<f32>::try_from(&img).unwrap());
        }
        labels.extend(Vec::<i64>::try_from(&batch.labels).unwrap());
    }
    (images, labels)
}

fn bad_of(err: DataError) -> (Location, Problem) {
    match err {
        DataError::BadSample(b) => (b.location, b.problem),
        other => panic!("expected a bad sample, got {other}"),
    }
}

/// A list-file dataset with one image of each format and every kind of bad line.
fn listfile_dataset() -> TempDir {
    let dir = TempDir::new("list");
    dir.write("img/a.png", &gray(4, 4, 10, ImageFormat::Png));
    dir.write("img/b.jpg", &rgb(6, 6, [200, 200, 200], ImageFormat::Jpeg));
    dir.write("img/c c.bmp", &gray(4, 4, 30, ImageFormat::Bmp));
    dir.write("img/corrupt.png", b"this is not a png at all");
    let png = gray(16, 16, 40, ImageFormat::Png);
    dir.write("img/truncated.png", &png[..png.len() / 2]);
    let jpeg = rgb(32, 32, [9, 99, 199], ImageFormat::Jpeg);
    dir.write("img/cut.jpg", &jpeg[..jpeg.len() * 2 / 3]);
    dir.write(
        "Train.txt",
        b"# the seed's list format\n\
          img/a.png 0\n\
          \n\
          img/b.jpg\t1\n\
          img/c c.bmp 2\n\
          img/missing.jpg 1\n\
          lonely_line_without_label\n\
          img/a.png two\n\
          img/a.png 7\n\
          img/corrupt.png 0\n\
          img/truncated.png 1\n\
          img/cut.jpg 2\n",
    );
    dir.write("Eval.txt", b"img/a.png 0\nimg/c c.bmp 2\n");
    dir
}

#[test]
fn listfile_skips_every_kind_of_bad_sample_and_names_file_and_line() {
    let dir = listfile_dataset();
    let mut s = spec(
        DatasetFormat::Listfile,
        dir.path(),
        list_split("Train.txt"),
        list_split("Eval.txt"),
    );
    s.on_bad_sample = BadSamplePolicy::Skip;
    let data = open(&s, 1, 4, 3).unwrap();
    assert_eq!((data.train.len(), data.eval.len(), data.classes), (3, 2, 3));
    let list = dir.path().join("Train.txt");
    let mut found: Vec<(usize, String)> = data
        .skipped
        .iter()
        .map(|b| match &b.location {
            Location::Line { list: l, line, .. } => {
                assert_eq!(l, &list);
                (*line, b.problem.to_string())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    found.sort();
    let lines: Vec<usize> = found.iter().map(|f| f.0).collect();
    assert_eq!(lines, vec![6, 7, 8, 9, 10, 11, 12], "{found:?}");
    assert!(found[0].1.starts_with("cannot read"), "{found:?}");
    assert!(
        found[1].1.contains("expected `relative/path label`"),
        "{found:?}"
    );
    assert!(found[2].1.contains("not an integer"), "{found:?}");
    assert!(found[3].1.contains("label 7 is outside 0..3"), "{found:?}");
    assert!(found[4].1.starts_with("cannot decode"), "{found:?}");
    assert!(found[5].1.starts_with("cannot decode"), "{found:?}");
    assert!(found[6].1.contains("truncated JPEG"), "{found:?}");
    let message = data
        .skipped
        .iter()
        .find(|b| b.problem.to_string().contains("label 7"))
        .unwrap()
        .to_string();
    assert!(
        message.contains("Train.txt:9: ") && message.contains("img/a.png"),
        "{message}"
    );

    // Gray PNG 10, RGB JPEG 200 (→ gray), BMP 30, at 4×4 (the JPEG is resized from 6×6).
    let (images, labels) = collect(&data.train, &BatchOptions::sequential(2));
    assert_eq!(labels, vec![0, 1, 2]);
    assert!(images[0].iter().all(|&v| v == 10.0 / 255.0));
    assert!(
        images[1].iter().all(|&v| (v * 255.0 - 200.0).abs() <= 2.0),
        "{:?}",
        images[1]
    );
    assert!(images[2].iter().all(|&v| v == 30.0 / 255.0));
}

#[test]
fn listfile_fails_on_the_first_bad_line_under_fail() {
    let dir = listfile_dataset();
    let s = spec(
        DatasetFormat::Listfile,
        dir.path(),
        list_split("Train.txt"),
        list_split("Eval.txt"),
    );
    let err = open(&s, 1, 4, 3).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Train.txt:6: ") && text.contains("missing.jpg"),
        "{text}"
    );
    let (location, problem) = bad_of(err);
    assert!(matches!(location, Location::Line { line: 6, .. }));
    assert!(matches!(problem, Problem::Unreadable(_)));

    // A corrupt image fails too, naming the image and its line.
    dir.write(
        "Train.txt",
        b"img/a.png 0\nimg/corrupt.png 1\nimg/c c.bmp 2\n",
    );
    let err = open(&s, 1, 4, 3).unwrap_err().to_string();
    assert!(
        err.contains("Train.txt:2: ")
            && err.contains("corrupt.png")
            && err.contains("cannot decode"),
        "{err}"
    );

    // A missing list file is an I/O error naming it.
    let s2 = spec(
        DatasetFormat::Listfile,
        dir.path(),
        list_split("Nope.txt"),
        list_split("Eval.txt"),
    );
    let err = open(&s2, 1, 4, 3).unwrap_err().to_string();
    assert!(err.contains("Nope.txt"), "{err}");
}

#[test]
fn uncached_files_report_bad_images_while_streaming() {
    let dir = listfile_dataset();
    dir.write(
        "Train.txt",
        b"img/a.png 0\nimg/corrupt.png 1\nimg/c c.bmp 2\n",
    );
    let mut s = spec(
        DatasetFormat::Listfile,
        dir.path(),
        list_split("Train.txt"),
        list_split("Eval.txt"),
    );
    s.cache_mb = 0;
    let data = open(&s, 1, 4, 3).unwrap();
    assert!(!data.train.is_cached());
    let err = data
        .train
        .batches(&BatchOptions::sequential(3))
        .find_map(Result::err)
        .unwrap();
    assert!(err.to_string().contains("Train.txt:2: "), "{err}");

    s.on_bad_sample = BadSamplePolicy::Skip;
    let data = open(&s, 1, 4, 3).unwrap();
    let (_, labels) = collect(&data.train, &BatchOptions::sequential(3));
    assert_eq!(labels, vec![0, 2]);
    let skipped = data.train.skipped();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].location.file().ends_with("img/corrupt.png"));
}

#[test]
fn folder_labels_sorted_class_names_and_converts_channels() {
    let dir = TempDir::new("folder");
    // Classes written out of order: labels follow the sorted names.
    dir.write("train/zebra/1.png", &gray(3, 3, 50, ImageFormat::Png));
    dir.write("train/zebra/2.png", &gray(3, 3, 51, ImageFormat::Png));
    dir.write(
        "train/ant/deep/1.jpg",
        &rgb(8, 8, [90, 90, 90], ImageFormat::Jpeg),
    );
    dir.write("train/ant/2.bmp", &rgb(3, 3, [255, 0, 0], ImageFormat::Bmp));
    dir.write("train/ant/notes.txt", b"ignored");
    dir.write("train/.hidden/x.png", &gray(3, 3, 1, ImageFormat::Png));
    dir.write("eval/zebra/1.png", &gray(3, 3, 52, ImageFormat::Png));
    let s = spec(
        DatasetFormat::Folder,
        dir.path(),
        dir_split("train"),
        dir_split("eval"),
    );
    let data = open(&s, 3, 3, 2).unwrap();
    assert_eq!(
        data.class_names.as_deref(),
        Some(&["ant".to_string(), "zebra".to_string()][..])
    );
    assert_eq!((data.train.len(), data.eval.len()), (4, 1));
    assert_eq!(data.eval.labels(), vec![1]);
    let (images, labels) = collect(&data.train, &BatchOptions::sequential(4));
    assert_eq!(images[0].len(), 3 * 3 * 3);
    // Class by class in turn: ant/2.bmp, zebra/1.png, ant/deep/1.jpg, zebra/2.png.
    assert_eq!(labels, vec![0, 1, 0, 1]);
    // The red BMP stays red in RGB (CHW: R plane, G plane, B plane); gray becomes 3 equal planes.
    assert!(images[0][..9].iter().all(|&v| v == 1.0) && images[0][9..].iter().all(|&v| v == 0.0));
    assert!(images[1].iter().all(|&v| v == 50.0 / 255.0));

    // The same red pixel in a 1-channel model: PIL's luma, 76.
    let gray_data = open(&s, 1, 3, 2).unwrap();
    let (images, _) = collect(&gray_data.train, &BatchOptions::sequential(1));
    assert!(
        images[0].iter().all(|&v| v == 76.0 / 255.0),
        "{:?}",
        images[0]
    );

    // A limit keeps classes balanced.
    let mut limited = s.clone();
    limited.train.limit = Some(2);
    assert_eq!(open(&limited, 3, 3, 2).unwrap().train.labels(), vec![0, 1]);

    // Class count and unknown eval classes are errors that say what they found.
    let err = open(&s, 3, 3, 5).unwrap_err().to_string();
    assert!(
        err.contains("2 classes") && err.contains("model has 5"),
        "{err}"
    );
    dir.write("eval/bee/1.png", &gray(3, 3, 52, ImageFormat::Png));
    let err = open(&s, 3, 3, 2).unwrap_err().to_string();
    assert!(
        err.contains("class `bee` is not a class of the train split"),
        "{err}"
    );
}

/// IDX bytes: magic 0x0000_08_0N, dims, data.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// `n` 2×2 images whose first pixel is the index, labels `index % 3`.
fn idx_dataset(n: usize) -> TempDir {
    let dir = TempDir::new("idx");
    let pixels: Vec<u8> = (0..n).flat_map(|i| [i as u8, 0, 0, 255]).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    dir.write("train-images.gz", &gz(&idx(&[n as u32, 2, 2], &pixels)));
    dir.write("train-labels", &idx(&[n as u32], &labels));
    dir.write("eval-images", &idx(&[3, 2, 2], &pixels[..12]));
    dir.write("eval-labels.gz", &gz(&idx(&[3], &labels[..3])));
    dir
}

fn idx_spec(dir: &TempDir) -> DatasetSpec {
    spec(
        DatasetFormat::Idx,
        dir.path(),
        idx_split("train-images.gz", "train-labels"),
        idx_split("eval-images", "eval-labels.gz"),
    )
}

/// Sample indices seen in a stream (the first pixel encodes the index, at image size 2).
fn indices(split: &Split, opts: &BatchOptions) -> Vec<usize> {
    let (images, _) = collect(split, opts);
    images
        .iter()
        .map(|img| (img[0] * 255.0).round() as usize)
        .collect()
}

#[test]
fn idx_gzipped_or_not_pads_and_keeps_labels() {
    let dir = idx_dataset(10);
    let mut s = idx_spec(&dir);
    s.fit = Fit::Pad;
    let data = open(&s, 1, 4, 3).unwrap();
    assert_eq!((data.train.len(), data.eval.len()), (10, 3));
    assert_eq!(
        data.train.labels(),
        (0..10).map(|i| i % 3).collect::<Vec<i64>>()
    );
    let (images, _) = collect(&data.train, &BatchOptions::sequential(4));
    // 2×2 centred in 4×4 with zeros: rows 1–2, columns 1–2.
    let expected: Vec<f32> = [0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 255, 0, 0, 0, 0, 0]
        .iter()
        .map(|&v| v as f32 / 255.0)
        .collect();
    assert_eq!(images[7], expected);
    // Three channels: three equal planes.
    let rgb = open(&s, 3, 4, 3).unwrap();
    let (images, _) = collect(&rgb.train, &BatchOptions::sequential(4));
    assert_eq!(images[7][..16], images[7][32..]);
}

#[test]
fn truncated_idx_is_reported_or_skipped() {
    let dir = idx_dataset(10);
    let pixels: Vec<u8> = (0..10).flat_map(|i| [i as u8, 0, 0, 255]).collect();
    // 10 images promised, 7½ present.
    dir.write("train-images.gz", &gz(&idx(&[10, 2, 2], &pixels[..30])));
    let mut s = idx_spec(&dir);
    let err = open(&s, 1, 2, 3).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("train-images.gz") && text.contains("truncated: 7 of 10"),
        "{text}"
    );
    s.on_bad_sample = BadSamplePolicy::Skip;
    let data = open(&s, 1, 2, 3).unwrap();
    assert_eq!(data.train.len(), 7);
    assert_eq!(data.skipped.len(), 1);
    // A cut gzip stream reads as truncated too.
    let full = gz(&idx(&[10, 2, 2], &pixels));
    dir.write("train-images.gz", &full[..full.len() - 12]);
    let data = open(&s, 1, 2, 3).unwrap();
    assert!(data.train.len() < 10 && matches!(data.skipped[0].problem, Problem::Truncated { .. }));
    // Not IDX at all, and counts that disagree, are format errors naming the file.
    dir.write("train-labels", b"\x01\x02\x03\x04garbage");
    let err = open(&s, 1, 2, 3).unwrap_err().to_string();
    assert!(
        err.contains("train-labels") && err.contains("not an IDX file"),
        "{err}"
    );
    dir.write("train-labels", &idx(&[9], &[0; 9]));
    dir.write("train-images.gz", &full);
    let err = open(&s, 1, 2, 3).unwrap_err().to_string();
    assert!(err.contains("10 images but 9 labels"), "{err}");
}

#[test]
fn idx_labels_out_of_range_and_class_count() {
    let dir = idx_dataset(6);
    let mut s = idx_spec(&dir);
    // Labels 0..=2: a model with 2 classes sees label 2 as out of range.
    let err = open(&s, 1, 2, 2).unwrap_err().to_string();
    assert!(
        err.contains("train-labels (record 2): label 2 is outside 0..2"),
        "{err}"
    );
    s.on_bad_sample = BadSamplePolicy::Skip;
    let data = open(&s, 1, 2, 2).unwrap();
    assert_eq!(data.train.len(), 4);
    // A model with more classes than the data: the error gives both counts.
    let err = open(&s, 1, 2, 10).unwrap_err().to_string();
    assert!(
        err.contains("3 classes") && err.contains("labels 0..=2") && err.contains("model has 10"),
        "{err}"
    );
}

/// A CIFAR-10 batch of `n` records: label `i % 10`, red plane `i`, green 100, blue 200.
fn cifar10(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push((i % 10) as u8);
        out.extend(std::iter::repeat_n(i as u8, 1024));
        out.extend(std::iter::repeat_n(100u8, 1024));
        out.extend(std::iter::repeat_n(200u8, 1024));
    }
    out
}

#[test]
fn cifar_batches_read_planar_rgb_and_report_truncation() {
    let dir = TempDir::new("cifar");
    dir.write("data_batch_1.bin", &cifar10(12));
    dir.write("data_batch_2.bin", &cifar10(8));
    dir.write("test_batch.bin", &cifar10(10));
    let files = |f: &[&str]| SplitSpec {
        files: Some(f.iter().map(|s| s.to_string()).collect()),
        ..SplitSpec::default()
    };
    let mut s = spec(
        DatasetFormat::Cifar,
        dir.path(),
        files(&["data_batch_1.bin", "data_batch_2.bin"]),
        files(&["test_batch.bin"]),
    );
    let data = open(&s, 3, 32, 10).unwrap();
    assert_eq!((data.train.len(), data.eval.len()), (20, 10));
    let (images, labels) = collect(&data.eval, &BatchOptions::sequential(10));
    assert_eq!(labels, (0..10).collect::<Vec<i64>>());
    let plane = 32 * 32;
    assert!(images[3][..plane].iter().all(|&v| v == 3.0 / 255.0));
    assert!(images[3][plane..2 * plane]
        .iter()
        .all(|&v| v == 100.0 / 255.0));
    assert!(images[3][2 * plane..].iter().all(|&v| v == 200.0 / 255.0));

    let cut = cifar10(8);
    dir.write("data_batch_2.bin", &cut[..cut.len() - 100]);
    let err = open(&s, 3, 32, 10).unwrap_err().to_string();
    assert!(
        err.contains("data_batch_2.bin (record 7): truncated"),
        "{err}"
    );
    s.on_bad_sample = BadSamplePolicy::Skip;
    assert_eq!(open(&s, 3, 32, 10).unwrap().train.len(), 19);
}

#[test]
fn shuffling_and_augmentation_are_reproducible_and_thread_independent() {
    let dir = idx_dataset(50);
    let mut s = idx_spec(&dir);
    s.fit = Fit::Pad;
    s.augment = Augment {
        crop_padding: 2,
        hflip: true,
    };
    let opts = BatchOptions {
        seed: 5,
        epoch: 1,
        shuffle: true,
        augment: true,
        ..BatchOptions::sequential(8)
    };
    let one = open(&s, 1, 6, 3).unwrap();
    s.loader_threads = 4;
    s.cache_mb = 0;
    let four = open(&s, 1, 6, 3).unwrap();
    let a = collect(&one.train, &opts);
    assert_eq!(a, collect(&one.train, &opts));
    assert_eq!(
        a,
        collect(&four.train, &opts),
        "threads and the cache change nothing"
    );
    let next_epoch = collect(&one.train, &BatchOptions { epoch: 2, ..opts });
    assert_ne!(a.1, next_epoch.1, "another epoch, another order");
    let plain = collect(
        &one.train,
        &BatchOptions {
            augment: false,
            ..opts
        },
    );
    assert_eq!(a.1, plain.1);
    assert_ne!(a.0, plain.0, "augmentation moved pixels");
    // Eval order: the split's own.
    assert_eq!(
        indices(
            &open(&idx_spec(&dir), 1, 2, 3).unwrap().train,
            &BatchOptions::sequential(7)
        ),
        (0..50).collect::<Vec<_>>()
    );
}

#[test]
fn replica_shards_cover_an_epoch_exactly_once() {
    let dir = idx_dataset(53);
    let data = open(&idx_spec(&dir), 1, 2, 3).unwrap();
    for world in [1, 2, 3, 4] {
        let mut seen = Vec::new();
        let mut steps = BTreeSet::new();
        for rank in 0..world {
            let opts = BatchOptions {
                seed: 9,
                epoch: 4,
                shuffle: true,
                rank,
                world,
                ..BatchOptions::sequential(8)
            };
            steps.insert(data.train.steps(&opts));
            seen.extend(indices(&data.train, &opts));
        }
        assert_eq!(
            steps.len(),
            1,
            "every replica takes the same number of steps"
        );
        seen.sort();
        assert_eq!(seen, (0..53).collect::<Vec<_>>(), "world {world}");
    }
    // A last global batch below `min_last_batch` is dropped for every replica.
    let opts = BatchOptions {
        min_last_batch: 8,
        world: 2,
        rank: 1,
        ..BatchOptions::sequential(8)
    };
    assert_eq!(data.train.steps(&opts), 6);
    assert_eq!(indices(&data.train, &opts).len(), 6 * 4);
}

#[test]
fn dropping_a_stream_mid_epoch_stops_its_threads() {
    let dir = idx_dataset(200);
    let data = open(&idx_spec(&dir), 1, 2, 3).unwrap();
    let mut stream = data.train.batches(&BatchOptions::sequential(2));
    assert!(stream.next().unwrap().is_ok());
    drop(stream); // joins the threads: a hang here would time the test out
    let bad = data.train.batches(&BatchOptions {
        world: 3,
        rank: 3,
        ..BatchOptions::sequential(6)
    });
    let errors: Vec<_> = bad.collect();
    assert!(matches!(errors.as_slice(), [Err(DataError::Options(_))]));
}

#[test]
fn computed_statistics_are_cached() {
    let dir = idx_dataset(4);
    let mut s = idx_spec(&dir);
    s.mean = None;
    s.std = None;
    let data = open(&s, 1, 2, 3).unwrap();
    // Pixels per image 2×2: (i, 0, 0, 255) for i in 0..4.
    let values: Vec<f64> = (0..4)
        .flat_map(|i| [i as f64, 0.0, 0.0, 255.0])
        .map(|v| v / 255.0)
        .collect();
    let mean = values.iter().sum::<f64>() / 16.0;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 16.0).sqrt();
    assert!((data.mean[0] - mean).abs() < 1e-9 && (data.std[0] - std).abs() < 1e-9);
    let file = data
        .stats_file
        .clone()
        .expect("a cache directory ($HOME or $ABLATE_CACHE_DIR)");
    let cached: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(cached["mean"][0].as_f64(), Some(data.mean[0]));
    let again = open(&s, 1, 2, 3).unwrap();
    assert_eq!(
        (again.mean.clone(), again.std.clone()),
        (data.mean.clone(), data.std.clone())
    );
    assert_eq!(again.stats_file.as_ref(), Some(&file));
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn inspect_counts_sizes_and_bad_samples() {
    let dir = TempDir::new("inspect");
    dir.write("tr/a/1.png", &gray(5, 4, 1, ImageFormat::Png));
    dir.write("tr/a/2.png", &gray(5, 4, 1, ImageFormat::Png));
    dir.write("tr/b/1.jpg", &rgb(7, 7, [1, 2, 3], ImageFormat::Jpeg));
    dir.write("tr/b/broken.jpg", b"\xff\xd8\xff not really");
    dir.write("tr/b/readme.md", b"x");
    dir.write("ev/a/1.png", &gray(5, 4, 1, ImageFormat::Png));
    let s = spec(
        DatasetFormat::Folder,
        dir.path(),
        dir_split("tr"),
        dir_split("ev"),
    );
    let report = inspect(
        &s,
        &InspectOptions {
            classes: Some(3),
            ..InspectOptions::default()
        },
    )
    .unwrap();
    assert_eq!(report.classes, 2);
    assert!(report
        .class_mismatch
        .as_deref()
        .unwrap()
        .contains("model has 3"));
    let train = &report.splits[0];
    assert_eq!(
        (train.usable, train.bad, train.per_class.clone()),
        (3, 1, vec![2, 1])
    );
    assert_eq!(
        (
            train.sizes[0].width,
            train.sizes[0].height,
            train.sizes[0].count
        ),
        (5, 4, 2)
    );
    assert!(
        train.first_bad[0].contains("broken.jpg"),
        "{:?}",
        train.first_bad
    );
    assert_eq!(train.ignored_files, 1);
    assert_eq!(report.splits[1].per_class, vec![1, 0]);
    let text = report.to_string();
    assert!(
        text.contains("train: 3 usable, 1 bad") && text.contains("a=2 b=1"),
        "{text}"
    );
}

/// Debian's `dataset-fashion-mnist` (deploy/setup.sh installs it).
fn fashion_mnist() -> DataSource {
    let root = PathBuf::from("/usr/share/datasets/fashion-mnist");
    assert!(
        root.join("train-images-idx3-ubyte.gz").exists(),
        "{} is missing: run deploy/setup.sh (apt-get install dataset-fashion-mnist)",
        root.display()
    );
    let mut s = spec(
        DatasetFormat::Idx,
        &root,
        idx_split("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        idx_split("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    );
    s.fit = Fit::Pad;
    s.mean = None;
    s.std = None;
    s.cache_mb = 2048; // the spec's default: 61 MB + 10 MB of 32×32 u8
    open(&s, 1, 32, 10).unwrap()
}

#[test]
fn fashion_mnist_loads_with_the_right_counts_and_labels() {
    let data = fashion_mnist();
    assert_eq!(
        (data.train.len(), data.eval.len(), data.classes),
        (60_000, 10_000, 10)
    );
    assert!(data.train.is_cached() && data.eval.is_cached());
    // numpy on the same files: labels[:10], bincount, and the padded 32×32 statistics.
    let train = data.train.labels();
    assert_eq!(train[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(data.eval.labels()[..5], [9, 2, 1, 1, 6]);
    for class in 0..10 {
        assert_eq!(train.iter().filter(|&&l| l == class).count(), 6000);
    }
    assert!(
        (data.mean[0] - 0.21900).abs() < 1e-4 && (data.std[0] - 0.33181).abs() < 1e-4,
        "{:?} {:?}",
        data.mean,
        data.std
    );
    // A shuffled, augmented epoch of the quick grid's size streams at [32, 1, 32, 32].
    let opts = BatchOptions {
        shuffle: true,
        augment: true,
        seed: 1,
        ..BatchOptions::sequential(32)
    };
    let mut n = 0;
    for batch in data.train.batches(&opts).take(100) {
        let batch = batch.unwrap();
        assert_eq!(batch.images.size(), vec![32, 1, 32, 32]);
        n += 32;
    }
    assert_eq!(n, 3200);
}
