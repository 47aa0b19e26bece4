//! The JSON endpoints (documented in `deploy/README.md`), cancel, and report downloads.
//! Every one needs a caller ([`super::login`]); reading the store and rendering run on
//! blocking threads, as in the gRPC services.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{error, info};

use super::live::{wait_for_change, Since};
use super::{model, Dashboard};
use crate::report::{self, Format};
use crate::state::{CoordError, Coordinator};

/// The longest experiment id, name or run id accepted.
const MAX_KEY_BYTES: usize = 256;

/// An error answer: `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<CoordError> for ApiError {
    fn from(e: CoordError) -> ApiError {
        let status = match &e {
            CoordError::NotFound { .. } => StatusCode::NOT_FOUND,
            CoordError::Grid(_) | CoordError::Invalid { .. } => StatusCode::BAD_REQUEST,
            CoordError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
            CoordError::Sched(_) | CoordError::Protocol { .. } => StatusCode::CONFLICT,
            _ => {
                error!("dashboard: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoordError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("dashboard task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

/// A long-polled document: built, on a blocking thread, once the state's version differs
/// from `since` (at once without it), from the coordinator and that version.
async fn live_document(
    state: &Dashboard,
    since: Option<u64>,
    build: impl FnOnce(&Coordinator, u64) -> Result<Value, CoordError> + Send + 'static,
) -> ApiResult {
    let version = wait_for_change(&state.coord, since).await;
    let coord = state.coord.clone();
    let doc = blocking(move || build(&coord, version)).await?;
    Ok(Json(doc).into_response())
}

fn require_caller(
    state: &Dashboard,
    headers: &HeaderMap,
) -> Result<super::login::Caller, ApiError> {
    state.logins.caller(headers).ok_or_else(|| {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "log in at /login, or send `Authorization: Bearer <user token>`".into(),
        )
    })
}

fn key(what: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_KEY_BYTES {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{what}: required, at most {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(value.to_string())
}

/// `GET /api/experiments[?since=VERSION]`.
pub async fn experiments(
    State(state): State<Dashboard>,
    headers: HeaderMap,
    Query(q): Query<Since>,
) -> ApiResult {
    require_caller(&state, &headers)?;
    live_document(&state, q.since, |coord, version| {
        let rows = coord.experiments()?;
        Ok(model::experiments(&rows, coord.now(), version))
    })
    .await
}

/// `GET /api/experiments/{id}[?since=VERSION]` (an id, or the newest experiment of a name).
pub async fn experiment(
    State(state): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> ApiResult {
    require_caller(&state, &headers)?;
    let id = key("experiment", &id)?;
    live_document(&state, q.since, move |coord, version| {
        let status = coord.status(&id)?;
        let data = coord.report_data(&status.experiment.id)?;
        let workers = coord.workers();
        Ok(model::experiment(&status, &data, &workers, version))
    })
    .await
}

/// `GET /api/workers[?since=VERSION]`.
pub async fn workers(
    State(state): State<Dashboard>,
    headers: HeaderMap,
    Query(q): Query<Since>,
) -> ApiResult {
    require_caller(&state, &headers)?;
    live_document(&state, q.since, |coord, version| {
        Ok(model::workers(&coord.workers(), coord.now(), version))
    })
    .await
}

/// `GET /api/experiments/{id}/report/{format}`: the report as a download (`md`, `html`,
/// `csv`, `json`, `claims-csv`).
pub async fn report(
    State(state): State<Dashboard>,
    headers: HeaderMap,
    Path((id, format)): Path<(String, String)>,
) -> ApiResult {
    require_caller(&state, &headers)?;
    let id = key("experiment", &id)?;
    let format: Format = format
        .parse()
        .map_err(|e: report::UnknownFormat| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
    let coord = state.coord.clone();
    let (name, content) = blocking(move || {
        let data = coord.report_data(&id)?;
        Ok((data.experiment.name.clone(), report::render(&data, format)))
    })
    .await?;
    let content_type = match format {
        Format::Markdown => "text/markdown; charset=utf-8",
        Format::Html => "text/html; charset=utf-8",
        Format::Csv | Format::ClaimsCsv => "text/csv; charset=utf-8",
        Format::Json => "application/json",
    };
    let file = format!(
        "{}-report.{}",
        crate::state::tensorboard::path_component(&name),
        format.extension()
    );
    let mut response = content.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// The body of `POST /api/cancel`.
#[derive(Debug, Deserialize)]
pub struct CancelRequest {
    /// An experiment id or name, or a run id.
    pub target: String,
}

/// `POST /api/cancel` with `{"target": ...}` (and, with the session cookie, the CSRF
/// header): cancels an experiment or one run.
pub async fn cancel(
    State(state): State<Dashboard>,
    headers: HeaderMap,
    Json(request): Json<CancelRequest>,
) -> ApiResult {
    let caller = require_caller(&state, &headers)?;
    if !state.logins.csrf_ok(&caller, &headers) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "missing or wrong x-csrf-token header (reload the page)".into(),
        ));
    }
    let target = key("target", &request.target)?;
    let coord = state.coord.clone();
    let logged = target.clone();
    let cancelled = blocking(move || coord.cancel(&target)).await?;
    info!(target = %logged, cancelled, "dashboard: cancelled");
    Ok(Json(json!({ "cancelled_runs": cancelled })).into_response())
}
