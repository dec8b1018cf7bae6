//! `{grant id}.{secret}`: the one shape of every opaque value that leads to a grant's Durable
//! Object — the authorization code and the refresh token. The grant id (64 hex digits, the
//! object's id) says *where* the grant lives; the secret proves the holder may act on it (the
//! object keeps only its hash, see [`crate::secret::opaque_hash`]). Knowing the id alone
//! proves nothing.
//!
//! One parser and one formatter, so that no caller splits or joins the string by hand.

use crate::secret::Redacted;
use std::fmt;

/// An authorization code or refresh token as the client holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantHandle {
    grant_id: String,
    secret: String,
}

/// Whether `id` can name a grant object (a Durable Object id: 64 hex digits).
pub fn is_grant_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `id` names a backend service's token grant: 96 hex digits, the id of the object
/// that keeps the client's assertion log (64) and 128 random bits (32). A backend token's grant
/// lives with its client's other backend grants rather than in an object of its own: creating
/// a Durable Object per token cost ≈2.7 ms of CPU and three quarters of the throughput
/// (BENCHMARKS.md, "client_credentials").
pub fn is_backend_grant_id(id: &str) -> bool {
    id.len() == 96 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl GrantHandle {
    pub fn new(grant_id: impl Into<String>, secret: impl Into<String>) -> GrantHandle {
        GrantHandle { grant_id: grant_id.into(), secret: secret.into() }
    }

    /// Reads a presented code or refresh token; `None` when it is not of our shape.
    pub fn parse(value: &str) -> Option<GrantHandle> {
        let (id, secret) = value.split_once('.')?;
        (is_grant_id(id) && !secret.is_empty()).then(|| GrantHandle::new(id, secret))
    }

    pub fn grant_id(&self) -> &str {
        &self.grant_id
    }

    /// The secret half, in clear: only for hashing or for the response that hands it out.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The hash the grant object compares with what it stored.
    pub fn secret_hash(&self) -> String {
        crate::secret::opaque_hash(&self.secret)
    }

    /// The string the client receives and presents back.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.grant_id, self.secret)
    }
}

impl fmt::Debug for GrantHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantHandle").field("grant_id", &self.grant_id).field("secret", &Redacted).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF";

    #[test]
    fn parses_what_it_formats_and_nothing_else() {
        let handle = GrantHandle::parse(&format!("{ID}.s3cret")).unwrap();
        assert_eq!((handle.grant_id(), handle.secret()), (ID, "s3cret"));
        assert_eq!(GrantHandle::parse(&handle.encode()), Some(handle.clone()));
        // The secret may itself hold dots; the id may not be short, long or non-hex.
        assert_eq!(GrantHandle::parse(&format!("{ID}.a.b")).unwrap().secret(), "a.b");
        for bad in [format!("{ID}."), ID.to_string(), format!("{}.s", &ID[1..]), format!("{ID}0.s"), format!("{}g.s", &ID[1..]), ".s".into(), String::new()] {
            assert_eq!(GrantHandle::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let text = format!("{:?}", GrantHandle::new(ID, "s3cret"));
        assert!(text.contains(ID) && text.contains("[redacted]") && !text.contains("s3cret"), "{text}");
    }
}
