//! How clients (the CLI and workers) reach the coordinator: `https://` with the CA that
//! signed its certificate (and optionally a client certificate), or plain `http://` only to
//! a loopback address unless the user explicitly allows clear text.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// The largest certificate or key file read (PEM).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// TLS settings of a client.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM file of the CA that signed the coordinator's certificate (`--ca`).
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for a coordinator that checks workers' certificates.
    pub cert: Option<PathBuf>,
    /// PEM key of `cert`.
    pub key: Option<PathBuf>,
    /// The name the coordinator's certificate is checked against (default: the URL's host).
    pub domain: Option<String>,
    /// Allow `http://` to a host that is not loopback (the token then crosses the network
    /// in clear text).
    pub insecure_plaintext: bool,
}

/// Why a client cannot reach the coordinator the way it was told to, or a PEM file is
/// refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read.
    #[error("{what} {}: {source}", path.display())]
    Read {
        /// The flag that named it.
        what: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file over the size limit.
    #[error("{what} {}: more than {MAX_PEM_BYTES} bytes", path.display())]
    TooLarge {
        /// The flag that named it.
        what: String,
        /// The file.
        path: PathBuf,
    },
    /// A file that is not PEM.
    #[error("{what} {}: not a PEM file", path.display())]
    NotPem {
        /// The flag that named it.
        what: String,
        /// The file.
        path: PathBuf,
    },
    /// A URL that does not parse, or with another scheme than http or https.
    #[error("coordinator URL `{url}`: {detail}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// `https://` without the CA.
    #[error("{0}: give the CA that signed the coordinator's certificate (--ca or ABLATE_CA)")]
    NoCa(String),
    /// A client certificate without its key, or the reverse.
    #[error("a client certificate needs both --tls-cert and --tls-key")]
    HalfIdentity,
    /// tonic refused the TLS settings.
    #[error("TLS settings for {url}: {source}")]
    Settings {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// `http://` to a host that is not loopback, without `insecure_plaintext`.
    #[error(
        "{0}: plain http to a host that is not loopback would send the token in clear text; \
         use https:// with --ca (or --insecure-plaintext on a network you trust)"
    )]
    ClearText(String),
    /// TLS files with an `http://` URL.
    #[error("{0}: TLS files were given for a plain http:// URL; use https://")]
    FilesWithoutTls(String),
}

/// Reads a PEM file, capped.
pub fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut data))
        .map_err(|source| TlsError::Read {
            what: what.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
    if data.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            what: what.to_string(),
            path: path.to_path_buf(),
        });
    }
    if !data.starts_with(b"-----BEGIN") && !String::from_utf8_lossy(&data).contains("-----BEGIN") {
        return Err(TlsError::NotPem {
            what: what.to_string(),
            path: path.to_path_buf(),
        });
    }
    Ok(data)
}

/// Whether `host` (as written in a URL) names this machine's loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// An endpoint for `url` with TLS applied (`https://`), or refused when it would send
/// credentials in clear text over a network (`http://` to a non-loopback host without
/// `insecure_plaintext`).
pub fn endpoint(url: &str, tls: &ClientTls) -> Result<Endpoint, TlsError> {
    let bad_url = |detail: String| TlsError::Url {
        url: url.to_string(),
        detail,
    };
    let uri: tonic::codegen::http::Uri = url
        .parse()
        .map_err(|e: tonic::codegen::http::uri::InvalidUri| bad_url(e.to_string()))?;
    let host = uri.host().unwrap_or_default().to_string();
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| bad_url(e.to_string()))?
        .connect_timeout(Duration::from_secs(10));
    match uri.scheme_str() {
        Some("https") => {
            let mut config = ClientTlsConfig::new().domain_name(
                tls.domain
                    .clone()
                    .unwrap_or_else(|| host.trim_start_matches('[').trim_end_matches(']').into()),
            );
            match &tls.ca {
                Some(ca) => {
                    config = config.ca_certificate(Certificate::from_pem(read_pem(ca, "--ca")?))
                }
                None => return Err(TlsError::NoCa(url.to_string())),
            }
            match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => {
                    config = config.identity(Identity::from_pem(
                        read_pem(cert, "--tls-cert")?,
                        read_pem(key, "--tls-key")?,
                    ));
                }
                (None, None) => {}
                _ => return Err(TlsError::HalfIdentity),
            }
            endpoint
                .tls_config(config)
                .map_err(|source| TlsError::Settings {
                    url: url.to_string(),
                    source,
                })
        }
        Some("http") => {
            if !is_loopback_host(&host) && !tls.insecure_plaintext {
                return Err(TlsError::ClearText(url.to_string()));
            }
            if tls.ca.is_some() || tls.cert.is_some() {
                return Err(TlsError::FilesWithoutTls(url.to_string()));
            }
            if !is_loopback_host(&host) {
                tracing::warn!("talking to {url} in clear text (--insecure-plaintext): the token can be read on the network");
            }
            Ok(endpoint)
        }
        _ => Err(bad_url(
            "expected http://HOST:PORT or https://HOST:PORT".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "localhost", "[::1]", "127.3.4.5"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["10.0.0.1", "coordinator", "example.com", "[2001:db8::1]"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn clear_text_off_loopback_needs_the_flag() {
        let tls = ClientTls::default();
        assert!(endpoint("http://127.0.0.1:1", &tls).is_ok());
        let err = endpoint("http://10.1.2.3:50051", &tls).unwrap_err();
        assert!(err.to_string().contains("clear text"), "{err}");
        let allowed = ClientTls {
            insecure_plaintext: true,
            ..ClientTls::default()
        };
        assert!(endpoint("http://10.1.2.3:50051", &allowed).is_ok());
        let err = endpoint("https://10.1.2.3:50051", &tls).unwrap_err();
        assert!(err.to_string().contains("--ca"), "{err}");
        assert!(endpoint("ftp://x", &tls).is_err());
    }
}
