//! The HTML report rendered by a real browser: headless Chromium (Debian's `chromium`)
//! takes a screenshot of the report of a real (tiny) factorial experiment, and the PNG must
//! show a page — text, tables and coloured curves — not a blank one. A blank page is
//! screenshotted too, as the control that the check can fail.
//!
//! Chromium comes from `$ABLATE_CHROMIUM`, else `chromium`, `chromium-browser` or
//! `google-chrome` on the PATH (`apt-get install -y chromium`). Without it the test prints
//! why and passes without checking.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ablate_coordinator::report::charts::run_color;
use ablate_coordinator::report::{render, Format, ReportData};

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ABLATE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name))
        })
        .find(|p| p.is_file())
}

/// Screenshots `html` at 1280 px wide; returns the decoded image.
fn screenshot(chromium: &Path, dir: &Path, stem: &str, html: &str) -> image::RgbImage {
    std::fs::create_dir_all(dir).unwrap();
    let page = dir.join(format!("{stem}.html"));
    let png = dir.join(format!("{stem}.png"));
    std::fs::write(&page, html).unwrap();
    let _ = std::fs::remove_file(&png);
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1280,4200",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join(format!("{stem}-profile")).display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().ok();
            panic!(
                "chromium took over 2 minutes to screenshot {}",
                page.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut stderr).ok();
    }
    assert!(
        status.success() && png.is_file(),
        "chromium failed ({status}):\n{stderr}"
    );
    image::open(&png).expect("a PNG").to_rgb8()
}

/// Pixel statistics of a screenshot.
#[derive(Debug)]
struct Ink {
    /// Fraction of pixels that are not (near) white or the page background.
    non_blank: f64,
    /// Pixels with a clear hue (curves, swatches, badges).
    coloured: usize,
    /// Pixels close to each of the first runs' colours.
    run_colours_seen: usize,
}

fn ink(img: &image::RgbImage, run_colours: &[(u8, u8, u8)]) -> Ink {
    let background = *img.get_pixel(0, 0);
    let mut non_blank = 0usize;
    let mut coloured = 0usize;
    let mut seen = vec![0usize; run_colours.len()];
    for p in img.pixels() {
        let [r, g, b] = p.0;
        let near = |c: [u8; 3], tol: i32| {
            (i32::from(r) - i32::from(c[0])).abs() <= tol
                && (i32::from(g) - i32::from(c[1])).abs() <= tol
                && (i32::from(b) - i32::from(c[2])).abs() <= tol
        };
        if !near([255, 255, 255], 8) && !near(background.0, 4) {
            non_blank += 1;
        }
        if r.max(g).max(b) - r.min(g).min(b) > 80 {
            coloured += 1;
        }
        for (k, c) in run_colours.iter().enumerate() {
            if near([c.0, c.1, c.2], 12) {
                seen[k] += 1;
            }
        }
    }
    Ink {
        non_blank: non_blank as f64 / (img.width() * img.height()) as f64,
        coloured,
        run_colours_seen: seen.iter().filter(|&&n| n >= 50).count(),
    }
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        println!(
            "SKIPPED the_html_report_renders_in_headless_chromium: no `chromium` on the PATH \
             (apt-get install -y chromium, or set ABLATE_CHROMIUM)"
        );
        return;
    };
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/factorial-metrics.json");
    let data: ReportData =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-browser");
    let colours: Vec<(u8, u8, u8)> = (0..6).map(run_color).collect();

    // The control: a blank page must fail the check.
    let blank = screenshot(
        &chromium,
        &dir,
        "blank",
        "<!DOCTYPE html><html><body></body></html>",
    );
    let blank_ink = ink(&blank, &colours);
    assert!(
        blank_ink.non_blank < 0.001 && blank_ink.coloured == 0,
        "{blank_ink:?}"
    );

    let img = screenshot(&chromium, &dir, "report", &render(&data, Format::Html));
    let page = ink(&img, &colours);
    println!("screenshot {} : {page:?}", dir.join("report.png").display());
    assert!(
        page.non_blank > 0.03,
        "the page is (nearly) blank: {page:?}"
    );
    assert!(
        page.coloured > 5_000,
        "no coloured curves or swatches: {page:?}"
    );
    assert_eq!(
        page.run_colours_seen,
        colours.len(),
        "each run's colour shows: {page:?}"
    );

    // The charts are the lower part of the page: coloured ink must be there too.
    let (w, h) = img.dimensions();
    let lower = image::imageops::crop_imm(&img, 0, h / 2, w, h / 2).to_image();
    let lower_ink = ink(&lower, &colours);
    assert!(
        lower_ink.coloured > 2_000,
        "no curves in the lower half: {lower_ink:?}"
    );
}
