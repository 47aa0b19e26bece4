//! The shared token on the client side: a tonic interceptor that adds it to every call.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::proto::AUTH_METADATA_KEY;

/// Adds `authorization: Bearer <token>` to every request (nothing when there is no token).
#[derive(Clone, Default)]
pub struct ClientAuth {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ClientAuth")
            .field("token", &self.header.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientAuth {
    /// An interceptor for `token`; a token that is not printable ASCII is an error.
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        let header = match token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| "the token must be printable ASCII".to_string())?,
            ),
            None => None,
        };
        Ok(ClientAuth { header })
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            request.metadata_mut().insert(AUTH_METADATA_KEY, h.clone());
        }
        Ok(request)
    }
}
