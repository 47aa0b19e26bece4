//! Credentials on the client side: the bearer token of a role and, for workers, the
//! session secret that `Register` hands back. One [`ClientAuth`] interceptor attaches both.
//!
//! Two roles hold two different tokens: users (submit, watch, cancel, report, list) and
//! workers (register, acquire, progress, complete, fail, release, checkpoints). A token
//! never appears in logs: [`Token`]'s `Debug` is redacted and header values are marked
//! sensitive.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::proto::{AUTH_METADATA_KEY, SESSION_METADATA_KEY};

/// The longest token accepted (a header, not a document).
pub const MAX_TOKEN_BYTES: usize = 512;

/// Why a token is refused before any RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// An empty token.
    #[error("the token is empty")]
    Empty,
    /// A token with characters that cannot travel in a header.
    #[error("the token must be printable ASCII without spaces")]
    NotPrintable,
    /// A token longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is {0} bytes long; the limit is {MAX_TOKEN_BYTES}")]
    TooLong(usize),
    /// A token file that cannot be read.
    #[error("token file {path}: {cause}")]
    File {
        /// The file.
        path: String,
        /// Why (the error, or what is wrong with the token in it).
        cause: String,
    },
}

/// A bearer token (of the user or of the worker role).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from the user (flag, environment or file), surrounding whitespace trimmed.
    pub fn new(text: &str) -> Result<Token, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        if text.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong(text.len()));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable);
        }
        Ok(Token(text.into()))
    }

    /// The token in a file (`--user-token-file`, `--worker-token-file`): its whole text,
    /// trimmed. The file is read only up to a few kilobytes.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        use std::io::Read;
        let file_error = |cause: String| TokenError::File {
            path: path.display().to_string(),
            cause,
        };
        let file = std::fs::File::open(path).map_err(|e| file_error(e.to_string()))?;
        let mut text = String::new();
        file.take(4 * MAX_TOKEN_BYTES as u64)
            .read_to_string(&mut text)
            .map_err(|e| file_error(e.to_string()))?;
        Token::new(&text).map_err(|e| file_error(e.to_string()))
    }

    /// A random token (256 bits, hex), for single-node mode and tests.
    pub fn generate() -> Token {
        let bytes: [u8; 32] = rand::random();
        Token(hex(&bytes).into())
    }

    /// The secret itself, to hand to a child process's environment. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `authorization` header value, marked sensitive.
    pub fn header(&self) -> MetadataValue<Ascii> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", self.0)
            .parse()
            .expect("a printable ASCII token makes a valid header");
        value.set_sensitive(true);
        value
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Picks the first token given, in order of precedence: the flag/variable itself, then its
/// file, then the legacy shared `--token`/`ABLATE_TOKEN`.
pub fn resolve_token(
    direct: Option<&Token>,
    file: Option<&Path>,
    legacy: Option<&Token>,
) -> Result<Option<Token>, TokenError> {
    if let Some(t) = direct {
        return Ok(Some(t.clone()));
    }
    if let Some(path) = file {
        return Token::from_file(path).map(Some);
    }
    Ok(legacy.cloned())
}

/// A session secret that cannot travel in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session secret is not a valid header value")]
pub struct SessionError;

/// The client side: attaches the role's token, and the worker's session secret once
/// [`ClientAuth::set_session`] was called, to every call. Clones share the session.
#[derive(Clone, Default)]
pub struct ClientAuth {
    header: Option<MetadataValue<Ascii>>,
    session: Arc<RwLock<Option<MetadataValue<Ascii>>>>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("token", &self.header.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// An interceptor for a token given as text (trimmed and checked like [`Token::new`]);
    /// `None` sends nothing.
    pub fn new(token: Option<&str>) -> Result<ClientAuth, TokenError> {
        let token = token.map(Token::new).transpose()?;
        Ok(ClientAuth::with_token(token.as_ref()))
    }

    /// An interceptor for `token` (nothing when `None`).
    pub fn with_token(token: Option<&Token>) -> ClientAuth {
        ClientAuth {
            header: token.map(Token::header),
            session: Arc::default(),
        }
    }

    /// Sends `secret` (from `Register`'s answer) with every later call, in this interceptor
    /// and all its clones.
    pub fn set_session(&self, secret: &str) -> Result<(), SessionError> {
        let mut value: MetadataValue<Ascii> = secret.parse().map_err(|_| SessionError)?;
        value.set_sensitive(true);
        *self.session.write().unwrap_or_else(|e| e.into_inner()) = Some(value);
        Ok(())
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            request.metadata_mut().insert(AUTH_METADATA_KEY, h.clone());
        }
        let session = self.session.read().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = session.as_ref() {
            request
                .metadata_mut()
                .insert(SESSION_METADATA_KEY, s.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_checked() {
        assert_eq!(Token::new("  abc\n").unwrap().expose(), "abc");
        assert_eq!(Token::new("  "), Err(TokenError::Empty));
        assert_eq!(Token::new("a b"), Err(TokenError::NotPrintable));
        assert_eq!(Token::new(&"x".repeat(513)), Err(TokenError::TooLong(513)));
        assert_eq!(Token::generate().expose().len(), 64);
    }

    #[test]
    fn the_client_sends_token_and_session_and_never_prints_them() {
        let auth = ClientAuth::new(Some(" hunter2 \n")).unwrap();
        let clone = auth.clone();
        auth.set_session("s3ss10n").unwrap();
        let request = clone.clone().call(Request::new(())).unwrap();
        let md = request.metadata();
        assert_eq!(md.get(AUTH_METADATA_KEY).unwrap(), "Bearer hunter2");
        assert_eq!(md.get(SESSION_METADATA_KEY).unwrap(), "s3ss10n");
        let shown = format!("{auth:?} {:?}", Token::new("hunter2").unwrap());
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3ss"),
            "{shown}"
        );
    }

    #[test]
    fn token_files_are_read_and_named_in_errors() {
        let dir = std::env::temp_dir().join(format!("ablate-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "tok-1\n").unwrap();
        let legacy = Token::new("legacy").unwrap();
        let t = resolve_token(None, Some(&good), Some(&legacy)).unwrap();
        assert_eq!(t.unwrap().expose(), "tok-1");
        let missing = dir.join("missing");
        let err = resolve_token(None, Some(&missing), None).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let t = resolve_token(None, None, Some(&legacy)).unwrap();
        assert_eq!(t.unwrap().expose(), "legacy");
    }
}
