//! The HTML pages: one shell per page (the script fills it from the JSON API), the login
//! form, and the compiled-in stylesheet and script. Nothing is loaded from elsewhere, so
//! the dashboard works offline; the content security policy says so to the browser.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::Dashboard;
use crate::report::html::escape;

const SHELL: &str = include_str!("assets/page.html");
const LOGIN: &str = include_str!("assets/login.html");
const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

/// Only this site's own files; no inline script; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every answer; JSON and pages are never cached.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it, browsers send `Origin: null` on form posts.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `/login?next=PATH` for a page asked for without a session.
fn to_login(uri: &Uri) -> Response {
    let path = uri.path();
    let mut next = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            next.push(b as char);
        } else {
            next.push_str(&format!("%{b:02X}"));
        }
    }
    Redirect::to(&format!("/login?next={next}")).into_response()
}

fn shell(
    state: &Dashboard,
    headers: &HeaderMap,
    uri: &Uri,
    page: &str,
    title: &str,
    id: &str,
) -> Response {
    let Some(caller) = state.logins.caller(headers) else {
        return to_login(uri);
    };
    let html = SHELL
        .replace("{{TITLE}}", &escape(title))
        .replace("{{PAGE}}", page)
        .replace("{{ID}}", &escape(id))
        .replace("{{CSRF}}", &escape(caller.csrf.as_deref().unwrap_or("")))
        .replace(
            "{{AUTH}}",
            if state.logins.enabled() { "on" } else { "off" },
        );
    Html(html).into_response()
}

/// `GET /`: the experiments.
pub async fn experiments(State(state): State<Dashboard>, headers: HeaderMap, uri: Uri) -> Response {
    shell(&state, &headers, &uri, "experiments", "Experiments", "")
}

/// `GET /experiments/{id}`: one experiment.
pub async fn experiment(
    State(state): State<Dashboard>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    if id.len() > 256 {
        return not_found().await;
    }
    shell(&state, &headers, &uri, "experiment", &id, &id)
}

/// `GET /workers`: the workers.
pub async fn workers(State(state): State<Dashboard>, headers: HeaderMap, uri: Uri) -> Response {
    shell(&state, &headers, &uri, "workers", "Workers", "")
}

/// The login form, with `error` shown above it.
pub fn login(next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let error = match error {
        Some(e) => format!(
            "<p class=\"error\" id=\"login-error\" role=\"alert\">{}</p>",
            escape(e)
        ),
        None => String::new(),
    };
    let html = LOGIN
        .replace("{{NEXT}}", &escape(next))
        .replace("{{ERROR}}", &error);
    (status, Html(html)).into_response()
}

/// `GET /assets/{file}`: the stylesheet and the script.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "dashboard.css" => (CSS, "text/css; charset=utf-8"),
        "dashboard.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return not_found().await,
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Anything else.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!DOCTYPE html><title>Not found</title><p>Not found. <a href=\"/\">Experiments</a></p>"),
    )
        .into_response()
}
