//! Who may use the dashboard: the user token, entered once in the login form, becomes a
//! random session id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS); the
//! token itself never travels in a URL and is compared in constant time. Scripts may send
//! `Authorization: Bearer <user token>` instead of the cookie. The worker token cannot log
//! in. A state-changing request (cancel, logout) made with the cookie must also carry the
//! session's CSRF token in the `x-csrf-token` header (the pages hold it; another site's
//! page cannot read it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ablate_common::auth::hex;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::{pages, Dashboard};
use crate::rpc::auth::{constant_time_eq, RoleTokens};

/// The session cookie's name.
pub const COOKIE: &str = "ablate_session";

/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at once; a new login beyond this ends the one closest to expiry.
const MAX_SESSIONS: usize = 1024;

/// A refused login answers after this, so that guesses come slowly.
const REFUSED_LOGIN_DELAY: Duration = Duration::from_millis(300);

/// The longest `next` path a login redirects to.
const MAX_NEXT_BYTES: usize = 512;

struct Session {
    csrf: String,
    expires: Instant,
}

/// The tokens and the live sessions.
pub struct Logins {
    /// `(user, worker)` token bytes; `None`: no login (`--no-auth`).
    tokens: Option<(Vec<u8>, Vec<u8>)>,
    secure_cookie: bool,
    /// Without login, pages still need a CSRF token against other sites' forms.
    open_csrf: String,
    /// Keyed by the SHA-256 of the session id, so that a lookup's timing says nothing
    /// about the ids.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins")
            .field("enabled", &self.tokens.is_some())
            .field("secure_cookie", &self.secure_cookie)
            .finish_non_exhaustive()
    }
}

/// A request that may use the dashboard.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The CSRF token its state-changing requests must carry; `None` when it
    /// authenticated with the bearer header (no cookie, nothing to forge).
    pub csrf: Option<String>,
}

fn random_hex() -> String {
    hex(&rand::random::<[u8; 32]>())
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The values of cookie `name` in the request's `Cookie` headers.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

impl Logins {
    /// Logins against the user token of `tokens` (`None`: everyone is let in).
    pub fn new(tokens: Option<&RoleTokens>, secure_cookie: bool) -> Logins {
        Logins {
            tokens: tokens.map(|t| {
                (
                    t.user.expose().as_bytes().to_vec(),
                    t.worker.expose().as_bytes().to_vec(),
                )
            }),
            secure_cookie,
            open_csrf: random_hex(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a login is needed.
    pub fn enabled(&self) -> bool {
        self.tokens.is_some()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who is calling: a live session cookie, or the user token as a bearer header;
    /// `None` when neither (everyone without login).
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let Some((user, _)) = &self.tokens else {
            return Some(Caller {
                csrf: Some(self.open_csrf.clone()),
            });
        };
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return constant_time_eq(bearer.trim().as_bytes(), user)
                .then_some(Caller { csrf: None });
        }
        let now = Instant::now();
        let mut sessions = self.sessions();
        for id in cookies(headers, COOKIE) {
            let key = digest(id);
            match sessions.get(&key) {
                Some(s) if s.expires > now => {
                    return Some(Caller {
                        csrf: Some(s.csrf.clone()),
                    })
                }
                Some(_) => {
                    sessions.remove(&key);
                }
                None => {}
            }
        }
        None
    }

    /// Whether a state-changing request of `caller` carries its CSRF token (and, when
    /// the browser names its origin, comes from this host).
    pub fn csrf_ok(&self, caller: &Caller, headers: &HeaderMap) -> bool {
        let Some(expected) = &caller.csrf else {
            return true;
        };
        if !same_origin(headers) {
            return false;
        }
        headers
            .get(CSRF_HEADER)
            .is_some_and(|v| constant_time_eq(v.as_bytes(), expected.as_bytes()))
    }

    /// A new session: its id (the cookie's value).
    fn open(&self) -> String {
        let id = random_hex();
        let now = Instant::now();
        let mut sessions = self.sessions();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            digest(&id),
            Session {
                csrf: random_hex(),
                expires: now + SESSION_TTL,
            },
        );
        id
    }

    fn close(&self, headers: &HeaderMap) {
        let mut sessions = self.sessions();
        for id in cookies(headers, COOKIE) {
            sessions.remove(&digest(id));
        }
    }

    fn cookie(&self, value: &str, max_age: Duration) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            max_age.as_secs()
        ))
        .expect("hex and fixed text make a header value")
    }
}

/// Whether the request's `Origin` (when the browser sent one) names the host it was sent
/// to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

/// `next` if it is a path on this site, else `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= MAX_NEXT_BYTES
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// The login page's query.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("token", &"<redacted>")
            .field("next", &self.next)
            .finish()
    }
}

/// `GET /login`: the form (or on to the page when already logged in).
pub async fn login_page(
    State(state): State<Dashboard>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if state.logins.caller(&headers).is_some() {
        return Redirect::to(&next).into_response();
    }
    pages::login(&next, None, StatusCode::OK)
}

/// `POST /login`: the user token opens a session; anything else is refused.
pub async fn login(
    State(state): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let logins = &state.logins;
    let Some((user, worker)) = &logins.tokens else {
        return Redirect::to(&next).into_response();
    };
    if !same_origin(&headers) {
        return pages::login(
            &next,
            Some("Refused: the form came from another site."),
            StatusCode::FORBIDDEN,
        );
    }
    let given = form.token.trim().as_bytes();
    if constant_time_eq(given, user) {
        let id = logins.open();
        info!("dashboard: a user logged in");
        let mut response = Redirect::to(&next).into_response();
        response
            .headers_mut()
            .insert(header::SET_COOKIE, logins.cookie(&id, SESSION_TTL));
        return response;
    }
    tokio::time::sleep(REFUSED_LOGIN_DELAY).await;
    if constant_time_eq(given, worker) {
        warn!("dashboard: refused a login with the worker token");
        return pages::login(
            &next,
            Some("That is the worker token: the dashboard takes the user token."),
            StatusCode::FORBIDDEN,
        );
    }
    warn!("dashboard: refused a login with a wrong token");
    pages::login(&next, Some("Wrong token."), StatusCode::UNAUTHORIZED)
}

/// `POST /logout` (with the CSRF header): ends the session and clears the cookie.
pub async fn logout(State(state): State<Dashboard>, headers: HeaderMap) -> Response {
    let Some(caller) = state.logins.caller(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if !state.logins.csrf_ok(&caller, &headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    state.logins.close(&headers);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.logins.cookie("", Duration::ZERO));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logins() -> Logins {
        let tokens = RoleTokens::new(
            crate::rpc::auth::Token::new("user-secret").unwrap(),
            crate::rpc::auth::Token::new("worker-secret").unwrap(),
        )
        .unwrap();
        Logins::new(Some(&tokens), true)
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn a_session_cookie_lets_in_and_its_csrf_token_is_required() {
        let l = logins();
        assert!(l.caller(&HeaderMap::new()).is_none());
        assert!(l.caller(&with("cookie", "ablate_session=nope")).is_none());
        let id = l.open();
        let headers = with("cookie", &format!("other=1; ablate_session={id}"));
        let caller = l.caller(&headers).expect("the session lets in");
        assert!(!l.csrf_ok(&caller, &headers), "no CSRF header");
        let mut good = headers.clone();
        good.insert(
            CSRF_HEADER,
            HeaderValue::from_str(caller.csrf.as_deref().unwrap()).unwrap(),
        );
        assert!(l.csrf_ok(&caller, &good));
        let mut forged = headers.clone();
        forged.insert(CSRF_HEADER, HeaderValue::from_static("guess"));
        assert!(!l.csrf_ok(&caller, &forged));
        // From another site's page, even with the token.
        good.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        good.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!l.csrf_ok(&caller, &good));
        good.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(l.csrf_ok(&caller, &good));
        l.close(&headers);
        assert!(l.caller(&headers).is_none(), "logged out");
    }

    #[test]
    fn the_bearer_header_takes_the_user_token_only() {
        let l = logins();
        let caller = l
            .caller(&with("authorization", "Bearer user-secret"))
            .expect("user token");
        assert!(caller.csrf.is_none());
        assert!(l
            .caller(&with("authorization", "Bearer worker-secret"))
            .is_none());
        assert!(l
            .caller(&with("authorization", "Bearer user-secre"))
            .is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let cookie = logins().cookie("abc", SESSION_TTL);
        let text = cookie.to_str().unwrap();
        for part in [
            "ablate_session=abc",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
        ] {
            assert!(text.contains(part), "{text}");
        }
        let plain = Logins::new(None, false).cookie("abc", SESSION_TTL);
        assert!(!plain.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn login_redirects_stay_on_this_site() {
        assert_eq!(safe_next(Some("/experiments/x-1")), "/experiments/x-1");
        for bad in [
            "//evil.example",
            "/\\evil",
            "https://evil.example",
            "",
            "/a b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
