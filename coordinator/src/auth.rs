//! The shared token: checked on every RPC of both services (server side) and attached to
//! every call (client side), as `authorization: Bearer <token>`.
//!
//! The token never appears in logs: [`Token`]'s `Debug` is redacted, the metadata value is
//! marked sensitive, and errors do not echo what the client sent.

use std::fmt;
use std::sync::Arc;

use ablate_common::proto::AUTH_METADATA_KEY;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Why a token is refused before any RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// An empty token.
    #[error("the token is empty")]
    Empty,
    /// A token with characters that cannot travel in a header.
    #[error("the token must be printable ASCII without spaces")]
    NotPrintable,
}

/// The shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from the user (`--token`, `ABLATE_TOKEN`).
    pub fn new(text: &str) -> Result<Token, AuthError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AuthError::Empty);
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::NotPrintable);
        }
        Ok(Token(text.into()))
    }

    /// A random token (256 bits, hex), for single-node mode.
    pub fn generate() -> Token {
        let bytes: [u8; 32] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Token(hex.into())
    }

    /// The secret itself, to hand to a child process's environment. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `authorization` header value, marked sensitive.
    fn header(&self) -> MetadataValue<Ascii> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", self.0)
            .parse()
            .expect("a printable ASCII token makes a valid header");
        value.set_sensitive(true);
        value
    }
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server-side check: every request must carry the token (unless auth is off).
#[derive(Clone)]
pub struct ServerAuth {
    expected: Option<Arc<[u8]>>,
}

impl fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAuth")
            .field("enabled", &self.expected.is_some())
            .finish()
    }
}

impl ServerAuth {
    /// Checks for `token`; `None` turns authentication off (`--no-auth`).
    pub fn new(token: Option<&Token>) -> ServerAuth {
        ServerAuth {
            expected: token.map(|t| Arc::from(t.header().as_bytes())),
        }
    }

    /// Whether requests are checked.
    pub fn enabled(&self) -> bool {
        self.expected.is_some()
    }
}

impl Interceptor for ServerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        match request.metadata().get(AUTH_METADATA_KEY) {
            Some(given) if constant_time_eq(given.as_bytes(), expected) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong token")),
            None => Err(Status::unauthenticated(
                "missing token: pass --token or set ABLATE_TOKEN",
            )),
        }
    }
}

/// The client side: attaches the token to every call.
#[derive(Clone)]
pub struct ClientAuth {
    header: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("token", &self.header.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientAuth {
    /// Sends `token` (nothing when `None`).
    pub fn new(token: Option<&Token>) -> ClientAuth {
        ClientAuth {
            header: token.map(Token::header),
        }
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert(AUTH_METADATA_KEY, header.clone());
        }
        Ok(request)
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

    #[test]
    fn the_right_token_passes_and_others_do_not() {
        let token = Token::new("s3cret").unwrap();
        let mut auth = ServerAuth::new(Some(&token));
        assert!(auth.call(with_header(Some("Bearer s3cret"))).is_ok());
        for bad in [
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            None,
        ] {
            let err = auth.call(with_header(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
            assert!(!err.message().contains("s3cret"));
        }
    }

    #[test]
    fn no_auth_lets_everything_through() {
        let mut auth = ServerAuth::new(None);
        assert!(!auth.enabled());
        assert!(auth.call(with_header(None)).is_ok());
    }

    #[test]
    fn the_client_attaches_what_the_server_expects() {
        let token = Token::generate();
        assert_eq!(token.expose().len(), 64);
        let request = ClientAuth::new(Some(&token))
            .call(Request::new(()))
            .unwrap();
        assert!(ServerAuth::new(Some(&token)).call(request).is_ok());
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = Token::new("hunter2").unwrap();
        let shown = format!(
            "{token:?} {:?} {:?}",
            ServerAuth::new(Some(&token)),
            ClientAuth::new(Some(&token))
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn bad_tokens_are_refused() {
        assert_eq!(Token::new("  "), Err(AuthError::Empty));
        assert_eq!(Token::new("a b"), Err(AuthError::NotPrintable));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
