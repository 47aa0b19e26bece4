//! Worker session secrets: `Register` answers with a secret bound to the worker id, and
//! every later worker call must send it back (metadata `ablate-session`). Without it a
//! holder of the worker token cannot act as, or re-register as, another worker.
//!
//! The secret is HMAC-SHA-256(key, worker id) under a random key kept in the data
//! directory (`session.key`, mode 0600), so that it survives a coordinator restart without
//! a table; deleting the key file revokes every secret (workers then register afresh).

use std::io::Write;
use std::path::Path;

use ablate_common::auth::hex;
use ablate_common::proto::SESSION_METADATA_KEY;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tonic::Status;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "session.key";

/// Issues and checks session secrets.
#[derive(Clone)]
pub struct Sessions {
    key: [u8; 32],
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(<key redacted>)")
    }
}

fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

impl Sessions {
    /// Sessions under a fixed key (tests).
    pub fn with_key(key: [u8; 32]) -> Sessions {
        Sessions { key }
    }

    /// Reads `session.key` from the data directory, creating it (0600) on first use.
    pub fn open(data_dir: &Path) -> std::io::Result<Sessions> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = parse_hex32(text.trim()).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{}: expected 64 hex digits (delete it to issue new worker sessions)",
                            path.display()
                        ),
                    )
                })?;
                Ok(Sessions { key: bytes })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(&path)?;
                file.write_all(hex(&key).as_bytes())?;
                file.sync_all()?;
                Ok(Sessions { key })
            }
            Err(e) => Err(e),
        }
    }

    /// The secret of `worker_id`.
    pub fn secret(&self, worker_id: &str) -> String {
        hex(&hmac_sha256(&self.key, worker_id.as_bytes()))
    }

    /// Whether the request's metadata carries `worker_id`'s secret.
    pub fn verify(&self, metadata: &MetadataMap, worker_id: &str) -> bool {
        let Some(given) = metadata.get(SESSION_METADATA_KEY) else {
            return false;
        };
        let expected = self.secret(worker_id);
        let given = given.as_bytes();
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// `Ok` when the metadata carries `worker_id`'s secret, else `PermissionDenied`.
    pub fn check(&self, metadata: &MetadataMap, worker_id: &str) -> Result<(), Status> {
        if self.verify(metadata, worker_id) {
            return Ok(());
        }
        let id: String = worker_id.chars().take(64).collect();
        Err(Status::permission_denied(format!(
            "worker `{id}`: this call needs the session secret that Register returned to that worker"
        )))
    }
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2_shape() {
        // RFC 4231 test case 1 uses a 20-byte key; pad it to our 32 bytes with zeros,
        // which HMAC does itself, so the published tag still applies.
        let mut key = [0u8; 32];
        key[..20].copy_from_slice(&[0x0b; 20]);
        assert_eq!(
            hex(&hmac_sha256(&key, b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn secrets_are_per_worker_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("ablate-sess-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = Sessions::open(&dir).unwrap();
        let b = Sessions::open(&dir).unwrap();
        assert_eq!(a.secret("w-1"), b.secret("w-1"));
        assert_ne!(a.secret("w-1"), a.secret("w-2"));
        let mut md = MetadataMap::new();
        md.insert(SESSION_METADATA_KEY, a.secret("w-1").parse().unwrap());
        assert!(a.verify(&md, "w-1"));
        assert!(!a.verify(&md, "w-2"));
        let err = a.check(&md, "w-2").unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(!a.verify(&MetadataMap::new(), "w-1"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
