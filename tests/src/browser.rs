//! Headless Chromium driven over the DevTools protocol, for tests that use a page as a
//! person would: navigate, fill a form, click, read the DOM, take a screenshot.
//!
//! The protocol runs over a pipe (`--remote-debugging-pipe`): JSON messages ended by a
//! NUL byte, to the browser on its file descriptor 3 and from it on 4. No websocket, no
//! port to find. Chromium comes from `$ABLATE_CHROMIUM`, else `chromium`,
//! `chromium-browser` or `google-chrome` on the PATH.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The Chromium binary, if there is one.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ABLATE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser", "google-chrome"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A headless Chromium with one page; killed when dropped.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    to_browser: std::io::PipeWriter,
    from_browser: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` with a fresh profile and opens a blank page of `width`×`height`.
    pub fn launch(chromium: &Path, width: u32, height: u32) -> Browser {
        Browser::launch_with(chromium, width, height, &[])
    }

    /// [`Browser::launch`] with more command-line switches (`--ignore-certificate-errors`
    /// for a test CA's certificate).
    pub fn launch_with(chromium: &Path, width: u32, height: u32, switches: &[&str]) -> Browser {
        let profile = tempfile::tempdir().expect("a profile directory");
        let (browser_reads, to_browser) = std::io::pipe().expect("a pipe");
        let (from_browser, browser_writes) = std::io::pipe().expect("a pipe");
        let (r, w) = (browser_reads.as_raw_fd(), browser_writes.as_raw_fd());
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .args(switches)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The
        // pipe ends are first copied above 4 so that placing them on 3 and 4 cannot
        // overwrite one with the other; dup2 clears close-on-exec on the copies.
        unsafe {
            command.pre_exec(move || {
                let r = libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 10);
                let w = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        drop((browser_reads, browser_writes));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_browser);
            let mut message = Vec::new();
            loop {
                message.clear();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&message) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let mut browser = Browser {
            child,
            to_browser,
            from_browser: rx,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .expect("a page");
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .expect("attached to the page");
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser.set_viewport(width, height, false);
        browser
    }

    /// Sends one protocol command (to the page once attached) and waits for its answer.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .map_err(|e| format!("{method}: the browser is gone: {e}"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .from_browser
                .recv_timeout(left)
                .map_err(|e| format!("{method}: no answer: {e}"))?;
            if answer["id"] != json!(id) {
                continue; // an event
            }
            if let Some(error) = answer.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(answer["result"].clone());
        }
    }

    /// The page's viewport (`mobile`: a phone's, with touch and its meta viewport).
    pub fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .expect("a viewport");
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        let result = self
            .call("Page.navigate", json!({ "url": url }))
            .expect("navigation");
        if let Some(error) = result.get("errorText") {
            panic!("cannot open {url}: {error}");
        }
    }

    /// Evaluates `js` in the page (awaiting a promise); its value, or why it failed.
    pub fn eval(&mut self, js: &str) -> Result<Value, String> {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("{js}: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Evaluates `js` until it is truthy (a page loading in between counts as not yet);
    /// returns its value, or panics naming `what` and the last value after `timeout`.
    pub fn wait_for(&mut self, what: &str, js: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Err(String::from("never evaluated"));
        while Instant::now() < deadline {
            last = self.eval(js);
            if let Ok(v) = &last {
                let truthy = match v {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    Value::Number(n) => n.as_f64() != Some(0.0),
                    Value::String(s) => !s.is_empty(),
                    _ => true,
                };
                if truthy {
                    return v.clone();
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let page = self
            .eval("location.href + '\\n' + (document.body ? document.body.innerText.slice(0, 600) : '')")
            .unwrap_or_else(Value::String);
        panic!("timed out waiting for {what}: last {last:?}; the page: {page}");
    }

    /// A PNG of the page as it is shown (`full_page`: all of it, however long).
    pub fn screenshot(&mut self, path: &Path, full_page: bool) -> image::RgbImage {
        let mut params = json!({ "format": "png" });
        if full_page {
            params["captureBeyondViewport"] = json!(true);
            let metrics = self
                .call("Page.getLayoutMetrics", json!({}))
                .expect("layout metrics");
            let size = &metrics["cssContentSize"];
            params["clip"] = json!({
                "x": 0, "y": 0, "scale": 1,
                "width": size["width"], "height": size["height"],
            });
        }
        let shot = self
            .call("Page.captureScreenshot", params)
            .expect("a screenshot");
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("PNG data"))
            .expect("base64");
        std::fs::write(path, &png).expect("the screenshot written");
        image::load_from_memory(&png).expect("a PNG").to_rgb8()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
