//! The live dashboard in a real browser: `ablate serve --http` with a worker training a
//! small grid on loopback, and headless Chromium using the pages as a person would.
//!
//! The moments the assertions look at are made by construction: the worker runs with the
//! test hold (`ABLATE_TEST_HOLD_DIR`), so each run waits after each epoch until the test
//! lets it on. The page is never reloaded between the states it must show; a marker set
//! in the page's JavaScript world proves it (a reload would clear it).
//!
//! Without Chromium (`apt-get install -y chromium`, or `$ABLATE_CHROMIUM`) the test prints
//! why and passes without checking.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use ablate_common::proto::RunState;
use ablate_tests::browser::{find_chromium, Browser};
use ablate_tests::{free_port, lenet_grid, Cluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

/// One HTTP/1.1 request to the dashboard; the status line's code, the headers and the body.
fn http(port: u16, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the dashboard answers");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

fn post(port: u16, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The requests a browser never makes: a cancel without the CSRF header, a bearer
/// header with the worker token, an oversized body.
fn check_raw_requests(port: u16, cluster: &Cluster, run: &str) {
    let get = |path: &str, extra: &str| {
        http(
            port,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{extra}\r\n"
            ),
        )
    };
    let (code, head, _) = get("/experiments/x", "");
    assert_eq!(code, 303, "{head}");
    assert!(
        head.contains("location: /login?next=/experiments/x"),
        "{head}"
    );
    assert_eq!(get("/api/experiments", "").0, 401);
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(
        get("/api/experiments", &bearer(&cluster.worker_token)).0,
        401
    );
    let (code, _, body) = get("/api/experiments", &bearer(&cluster.token));
    assert_eq!(code, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["experiments"][0]["name"], "dash", "{doc}");

    // A session from the login form, then a cancel that lacks its CSRF token.
    let form = format!("token={}&next=%2F", cluster.token);
    let (code, head, _) = post(
        port,
        "/login",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        &form,
    );
    assert_eq!(code, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap();
    let json = "Content-Type: application/json\r\n";
    let cancel = format!("{{\"target\": \"{run}\"}}");
    let (code, _, body) = post(
        port,
        "/api/cancel",
        &format!("{json}Cookie: {session}\r\n"),
        &cancel,
    );
    assert_eq!(code, 403, "a cancel without the CSRF header: {body}");
    let (code, _, _) = post(
        port,
        "/api/cancel",
        &format!("{json}Cookie: {session}\r\nx-csrf-token: guessed\r\n"),
        &cancel,
    );
    assert_eq!(code, 403, "a cancel with a wrong CSRF token");
    let huge = format!("{{\"target\": \"{}\"}}", "x".repeat(64 << 10));
    let (code, _, _) = post(
        port,
        "/api/cancel",
        &format!("{json}{}", bearer(&cluster.token)),
        &huge,
    );
    assert_eq!(code, 413, "a body over the cap");
}

/// `document.querySelectorAll(selector).length` as JavaScript.
fn count(selector: &str) -> String {
    format!("document.querySelectorAll({selector:?}).length")
}

#[test]
fn the_dashboard_follows_a_grid_live_in_headless_chromium() {
    let Some(chromium) = find_chromium() else {
        println!(
            "SKIPPED the_dashboard_follows_a_grid_live_in_headless_chromium: no `chromium` on \
             the PATH (apt-get install -y chromium, or set ABLATE_CHROMIUM)"
        );
        return;
    };
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();

    let mut cluster = Cluster::new(15);
    let port = free_port();
    cluster.coordinator_args = vec!["--http".into(), format!("127.0.0.1:{port}")];
    cluster.start_coordinator();
    let hold = tempfile::tempdir().unwrap();
    std::fs::write(hold.path().join("hold"), b"").unwrap();
    cluster.start_worker_with_env(&[("ABLATE_TEST_HOLD_DIR", hold.path().to_str().unwrap())]);
    let grid = cluster.write("grid.toml", &lenet_grid("dash", 2, 256, &[1, 2]));
    let out = cluster.cli(&["submit", grid.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The first run is held after its first epoch.
    let status = cluster.wait_for("dash", WAIT, "epoch 1 of the first run", |s| {
        s.runs
            .iter()
            .any(|r| r.state() == RunState::Running && r.best_eval_acc.is_some())
    });
    let experiment = status.experiment.as_ref().unwrap().id.clone();
    let first = status
        .runs
        .iter()
        .find(|r| r.state() == RunState::Running)
        .unwrap()
        .id
        .clone();
    let second = status
        .runs
        .iter()
        .find(|r| r.id != first)
        .unwrap()
        .id
        .clone();
    check_raw_requests(port, &cluster, &second);

    let base = format!("http://127.0.0.1:{port}");
    let mut browser = Browser::launch(&chromium, 1280, 800);

    // Without the cookie, the page sends the browser to the login form.
    browser.navigate(&format!("{base}/experiments/{experiment}"));
    browser.wait_for(
        "the login form",
        "location.pathname === '/login' && !!document.querySelector('#token')",
        WAIT,
    );
    let login = |browser: &mut Browser, token: &str| {
        browser
            .eval(&format!(
                "document.querySelector('#token').value = {token:?}; \
                 document.querySelector('#login-form').submit(); true"
            ))
            .unwrap();
    };
    // A wrong token, then the worker's, are refused.
    login(&mut browser, "not-the-token");
    browser.wait_for(
        "the wrong token refused",
        "(document.querySelector('#login-error') || {}).textContent === 'Wrong token.'",
        WAIT,
    );
    login(&mut browser, &cluster.worker_token);
    browser.wait_for(
        "the worker token refused",
        "((document.querySelector('#login-error') || {}).textContent || '').includes('worker token')",
        WAIT,
    );
    assert_eq!(browser.eval("location.pathname").unwrap(), "/login");

    // The user token opens the page asked for first.
    login(&mut browser, &cluster.token);
    let path = format!("/experiments/{experiment}");
    browser.wait_for(
        "the experiment page after login",
        &format!("location.pathname === {path:?} && !!document.querySelector('#runs')"),
        WAIT,
    );
    assert_eq!(
        browser.eval("document.cookie").unwrap(),
        "",
        "the session cookie is HttpOnly"
    );
    browser.eval("window.ablateTestMark = 'no reload'").unwrap();

    // Epoch 1 of the first run: half way, one point per curve.
    let row = |run: &str| format!("#runs tr[data-run={run:?}]");
    let points = |metric: &str, run: &str| {
        count(&format!(
            "svg[data-metric={metric:?}] g[data-run={run:?}] circle"
        ))
    };
    let progress = |run: &str| {
        format!(
            "Number(document.querySelector('{} .progress').dataset.progress)",
            row(run)
        )
    };
    browser.wait_for(
        "the first run at epoch 1",
        &format!(
            "{} === 1 && {} === 1 && {} === 1 && {} === 1 && {} === 1",
            points("eval_acc", &first),
            points("eval_loss", &first),
            points("train_loss", &first),
            points("lr", &first),
            count(&format!("{} .state.running", row(&first))),
        ),
        WAIT,
    );
    let half = browser.eval(&progress(&first)).unwrap().as_f64().unwrap();
    assert!((0.45..=0.55).contains(&half), "after 1 of 2 epochs: {half}");

    // Let the first run on: it finishes; the second starts and is held after its epoch 1.
    std::fs::write(hold.path().join(&first), b"").unwrap();
    browser.wait_for(
        "the first run finished, with a second point per curve",
        &format!(
            "{} === 2 && {} === 2 && {} === 2 && {} === 2 && {} === 1 && {} === 1",
            points("eval_acc", &first),
            points("eval_loss", &first),
            points("train_loss", &first),
            points("lr", &first),
            count(&format!("{} .state.finished", row(&first))),
            points("eval_acc", &second),
        ),
        WAIT,
    );
    assert_eq!(browser.eval(&progress(&first)).unwrap().as_f64(), Some(1.0));
    assert_eq!(
        browser.eval("window.ablateTestMark").unwrap(),
        "no reload",
        "the page was reloaded"
    );
    browser.wait_for(
        "the second run running",
        &count(&format!("{} .state.running", row(&second))),
        WAIT,
    );

    let shot = browser.screenshot(&shots.join("experiment-1280x800.png"), false);
    assert_eq!(shot.dimensions(), (1280, 800));
    browser.screenshot(&shots.join("experiment-1280-full.png"), true);
    println!(
        "screenshots: {}",
        shots.join("experiment-1280x800.png").display()
    );

    // Cancel the second run from the page, through the confirmation.
    browser
        .eval(&format!(
            "document.querySelector('{} button.cancel-run').click(); true",
            row(&second)
        ))
        .unwrap();
    browser.wait_for(
        "the confirmation",
        "!document.querySelector('#confirm').hidden",
        WAIT,
    );
    browser
        .eval("document.querySelector('#confirm-yes').click(); true")
        .unwrap();
    browser.wait_for(
        "the second run cancelled on the page",
        &count(&format!("{} .state.cancelled", row(&second))),
        WAIT,
    );
    let status = cluster.wait_for("dash", WAIT, "the second run stopped", |s| {
        s.runs
            .iter()
            .any(|r| r.id == second && r.state() == RunState::Cancelled && r.worker.is_empty())
    });
    let states: Vec<RunState> = status.runs.iter().map(|r| r.state()).collect();
    assert!(
        states.contains(&RunState::Finished) && states.contains(&RunState::Cancelled),
        "{states:?}"
    );

    // The workers page: the worker is idle again.
    browser.navigate(&format!("{base}/workers"));
    browser.wait_for(
        "the idle worker",
        "(document.querySelector('#workers tbody tr') || {}).textContent?.includes('idle') \
         && document.querySelector('#workers tbody tr').textContent.includes('0/1')",
        WAIT,
    );
    browser.screenshot(&shots.join("workers-1280x800.png"), false);

    // The experiments list, then the experiment at a phone's width.
    browser.navigate(&format!("{base}/"));
    browser.wait_for(
        "the experiments list",
        &format!(
            "{} === 1",
            count(&format!(
                "tr[data-experiment={experiment:?}] td.exp-state .state.cancelled"
            ))
        ),
        WAIT,
    );
    browser.screenshot(&shots.join("experiments-1280x800.png"), false);
    browser.set_viewport(390, 844, true);
    browser.navigate(&format!("{base}{path}"));
    browser.wait_for(
        "the experiment page on a phone",
        &count(&format!("{} .state.finished", row(&first))),
        WAIT,
    );
    let overflow = browser
        .eval("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .unwrap();
    assert_eq!(overflow.as_i64(), Some(0), "the page is wider than a phone");
    browser.screenshot(&shots.join("experiment-390-full.png"), true);
}

#[test]
fn over_tls_the_dashboard_serves_https_and_a_secure_cookie() {
    let Some(chromium) = find_chromium() else {
        println!(
            "SKIPPED over_tls_the_dashboard_serves_https_and_a_secure_cookie: no `chromium` on \
             the PATH (apt-get install -y chromium, or set ABLATE_CHROMIUM)"
        );
        return;
    };
    let mut cluster = Cluster::new(15).with_tls(false);
    let port = free_port();
    cluster.coordinator_args = vec!["--http".into(), format!("127.0.0.1:{port}")];
    cluster.start_coordinator();
    // Plain HTTP to the TLS port is no page.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("<form"),
        "the login page over plain HTTP"
    );

    // The certificate is the test CA's: the browser is told to accept it.
    let mut browser = Browser::launch_with(&chromium, 1280, 800, &["--ignore-certificate-errors"]);
    browser.navigate(&format!("https://localhost:{port}/workers"));
    browser.wait_for(
        "the login form over TLS",
        "location.protocol === 'https:' && location.pathname === '/login' && !!document.querySelector('#token')",
        WAIT,
    );
    browser
        .eval(&format!(
            "document.querySelector('#token').value = {:?}; \
             document.querySelector('#login-form').submit(); true",
            cluster.token
        ))
        .unwrap();
    browser.wait_for(
        "the workers page",
        "location.pathname === '/workers' && !!document.querySelector('#workers')",
        WAIT,
    );
    let cookies = browser
        .call("Network.getCookies", serde_json::json!({}))
        .unwrap();
    let session = cookies["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ablate_session")
        .unwrap_or_else(|| panic!("no session cookie: {cookies}"));
    assert_eq!(session["secure"], true, "{session}");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
}
