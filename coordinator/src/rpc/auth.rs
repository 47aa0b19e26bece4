//! The server side of authentication: two roles with two tokens, checked on every RPC.
//!
//! The `Experiments` service takes the user token, the `Workers` service the worker token.
//! A token of the other role is `PermissionDenied` naming the role needed; anything else is
//! `Unauthenticated`. Errors never echo what the client sent. The client side (one
//! [`ClientAuth`] for the CLI and the worker) lives in `ablate_common::auth`.

use std::fmt;
use std::sync::Arc;

pub use ablate_common::auth::{ClientAuth, Token, TokenError};
use ablate_common::proto::AUTH_METADATA_KEY;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Who may call a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// People and scripts: submit, list, get, watch, cancel, report.
    User,
    /// Worker agents: register, acquire, progress, complete, fail, release, checkpoints.
    Worker,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Worker => "worker",
        }
    }

    fn other(self) -> Role {
        match self {
            Role::User => Role::Worker,
            Role::Worker => Role::User,
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Role::User => "--user-token or ABLATE_USER_TOKEN",
            Role::Worker => "--worker-token or ABLATE_WORKER_TOKEN",
        }
    }
}

/// The two tokens a coordinator checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleTokens {
    /// Users' token.
    pub user: Token,
    /// Workers' token.
    pub worker: Token,
}

/// Why a pair of tokens cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleTokensError {
    /// Both roles would hold the same credential.
    #[error("the user token and the worker token must differ: with one token, every user could act as a worker (take over runs, upload checkpoints)")]
    Same,
}

impl RoleTokens {
    /// Two distinct tokens.
    pub fn new(user: Token, worker: Token) -> Result<RoleTokens, RoleTokensError> {
        if user == worker {
            return Err(RoleTokensError::Same);
        }
        Ok(RoleTokens { user, worker })
    }

    /// Two random tokens (single-node mode, tests).
    pub fn generate() -> RoleTokens {
        RoleTokens {
            user: Token::generate(),
            worker: Token::generate(),
        }
    }

    fn of(&self, role: Role) -> &Token {
        match role {
            Role::User => &self.user,
            Role::Worker => &self.worker,
        }
    }
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server-side check of one service: every request must carry its role's token
/// (unless auth is off).
#[derive(Clone)]
pub struct ServerAuth {
    role: Role,
    client_cert: bool,
    /// (expected header, the other role's header).
    headers: Option<Arc<(Vec<u8>, Vec<u8>)>>,
}

impl fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAuth")
            .field("role", &self.role)
            .field("enabled", &self.headers.is_some())
            .finish()
    }
}

impl ServerAuth {
    /// Checks for `role`'s token; `None` turns authentication off (`--no-auth`).
    pub fn new(role: Role, tokens: Option<&RoleTokens>) -> ServerAuth {
        ServerAuth {
            role,
            client_cert: false,
            headers: tokens.map(|t| {
                Arc::new((
                    t.of(role).header().as_bytes().to_vec(),
                    t.of(role.other()).header().as_bytes().to_vec(),
                ))
            }),
        }
    }

    /// Also require a verified TLS client certificate (workers, when the server has a
    /// client CA; rustls has already checked the certificate against it).
    pub fn require_client_cert(mut self, required: bool) -> ServerAuth {
        self.client_cert = required;
        self
    }

    /// Whether requests are checked.
    pub fn enabled(&self) -> bool {
        self.headers.is_some()
    }
}

impl Interceptor for ServerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.client_cert && request.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::unauthenticated(format!(
                "this call needs a {} client certificate signed by the coordinator's client CA",
                self.role.name()
            )));
        }
        let Some(headers) = &self.headers else {
            return Ok(request);
        };
        let (expected, other) = &**headers;
        match request.metadata().get(AUTH_METADATA_KEY) {
            Some(given) if constant_time_eq(given.as_bytes(), expected) => Ok(request),
            Some(given) if constant_time_eq(given.as_bytes(), other) => {
                Err(Status::permission_denied(format!(
                    "this call needs the {} token; the {} token was sent",
                    self.role.name(),
                    self.role.other().name()
                )))
            }
            Some(_) => Err(Status::unauthenticated(format!(
                "wrong token: this call needs the {} token",
                self.role.name()
            ))),
            None => Err(Status::unauthenticated(format!(
                "missing token: this call needs the {} token ({})",
                self.role.name(),
                self.role.flag()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(v) = value {
            request
                .metadata_mut()
                .insert(AUTH_METADATA_KEY, v.parse().unwrap());
        }
        request
    }

    fn tokens() -> RoleTokens {
        RoleTokens::new(Token::new("u53r").unwrap(), Token::new("w0rk").unwrap()).unwrap()
    }

    #[test]
    fn each_service_takes_its_role_token_only() {
        let tokens = tokens();
        let mut users = ServerAuth::new(Role::User, Some(&tokens));
        let mut workers = ServerAuth::new(Role::Worker, Some(&tokens));
        assert!(users.call(with_header(Some("Bearer u53r"))).is_ok());
        assert!(workers.call(with_header(Some("Bearer w0rk"))).is_ok());
        let err = workers.call(with_header(Some("Bearer u53r"))).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("needs the worker token"), "{err}");
        let err = users.call(with_header(Some("Bearer w0rk"))).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("needs the user token"), "{err}");
        for bad in [Some("Bearer u53"), Some("Bearer u53r2"), Some("u53r"), None] {
            let err = users.call(with_header(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
            assert!(!err.message().contains("u53r") && !err.message().contains("w0rk"));
        }
    }

    #[test]
    fn one_token_for_both_roles_is_refused() {
        let t = Token::new("same").unwrap();
        assert_eq!(RoleTokens::new(t.clone(), t), Err(RoleTokensError::Same));
    }

    #[test]
    fn no_auth_lets_everything_through() {
        let mut auth = ServerAuth::new(Role::User, None);
        assert!(!auth.enabled());
        assert!(auth.call(with_header(None)).is_ok());
    }

    #[test]
    fn the_client_attaches_what_the_server_expects() {
        let tokens = RoleTokens::generate();
        let request = ClientAuth::with_token(Some(&tokens.worker))
            .call(Request::new(()))
            .unwrap();
        assert!(ServerAuth::new(Role::Worker, Some(&tokens))
            .call(request)
            .is_ok());
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let tokens = tokens();
        let shown = format!(
            "{tokens:?} {:?}",
            ServerAuth::new(Role::User, Some(&tokens)),
        );
        assert!(
            !shown.contains("u53r") && !shown.contains("w0rk"),
            "{shown}"
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
