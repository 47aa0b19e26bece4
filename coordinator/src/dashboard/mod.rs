//! The live dashboard: an HTTP server next to the gRPC one (`ablate serve --http ADDR`,
//! and `ablate run`), on the same tokio runtime and the same coordinator state.
//!
//! Three pages (experiments, one experiment, workers), self-contained (their CSS and
//! script are compiled in), are clients of a small JSON API documented in
//! `deploy/README.md`. The user token is entered once in a login form and kept as a
//! session cookie; the worker token cannot log in.
//!
//! # Layout
//! - [`listen`]: serving the router over plain TCP or TLS until the coordinator closes.
//! - [`login`]: sessions (cookie, CSRF token), login and logout, the check on every request.
//! - [`api`]: the JSON endpoints, cancel, and report downloads.
//! - [`model`]: the JSON documents, built from the coordinator state.
//! - [`live`]: long polls: an answer waits for the next change of the state.
//! - [`pages`]: the HTML pages and their embedded assets.

pub mod api;
pub mod listen;
pub mod live;
pub mod login;
pub mod model;
pub mod pages;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::rpc::auth::RoleTokens;
use crate::state::Coordinator;

pub use listen::{DashboardError, DashboardServer};

/// The largest request body the dashboard reads (a login form, a cancel request).
pub const MAX_BODY_BYTES: usize = 16 << 10;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct Dashboard {
    /// The coordinator state.
    pub coord: Arc<Coordinator>,
    /// Login sessions and the tokens.
    pub logins: Arc<login::Logins>,
}

/// The dashboard's routes over `coord`; `tokens` `None` serves without login
/// (`--no-auth`); `secure_cookie` marks the session cookie `Secure` (served over TLS).
pub fn router(coord: Arc<Coordinator>, tokens: Option<&RoleTokens>, secure_cookie: bool) -> Router {
    let state = Dashboard {
        coord,
        logins: Arc::new(login::Logins::new(tokens, secure_cookie)),
    };
    Router::new()
        .route("/", get(pages::experiments))
        .route("/experiments/{id}", get(pages::experiment))
        .route("/workers", get(pages::workers))
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/assets/{file}", get(pages::asset))
        .route("/api/experiments", get(api::experiments))
        .route("/api/experiments/{id}", get(api::experiment))
        .route("/api/experiments/{id}/report/{format}", get(api::report))
        .route("/api/workers", get(api::workers))
        .route("/api/cancel", post(api::cancel))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(pages::security_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
