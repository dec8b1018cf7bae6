//! The admin API's authentication: a bearer token compared with the `ADMIN_TOKEN` secret.
//!
//! Both sides are hashed before a constant-time comparison, so neither the content nor the
//! length of the secret leaks through timing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAuth {
    Granted,
    /// No `ADMIN_TOKEN` is configured: the admin API is off.
    Disabled,
    /// No bearer token in the request.
    Missing,
    /// A bearer token that is not the admin token.
    Invalid,
}

/// Checks an `Authorization` header value against the configured admin token.
pub fn check(authorization: Option<&str>, configured: Option<&str>) -> AdminAuth {
    let Some(configured) = configured.filter(|c| !c.is_empty()) else {
        return AdminAuth::Disabled;
    };
    let Some(presented) = authorization.and_then(bearer_token) else {
        return AdminAuth::Missing;
    };
    let equal = Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(configured.as_bytes()));
    if bool::from(equal) {
        AdminAuth::Granted
    } else {
        AdminAuth::Invalid
    }
}

/// The token of an RFC 6750 §2.1 `Authorization: Bearer <token>` header (scheme
/// case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_only_the_exact_token() {
        assert_eq!(check(Some("Bearer s3cret"), Some("s3cret")), AdminAuth::Granted);
        assert_eq!(check(Some("bearer s3cret"), Some("s3cret")), AdminAuth::Granted);
        assert_eq!(check(Some("Bearer s3cre"), Some("s3cret")), AdminAuth::Invalid);
        assert_eq!(check(Some("Bearer s3cret2"), Some("s3cret")), AdminAuth::Invalid);
        assert_eq!(check(Some("Basic s3cret"), Some("s3cret")), AdminAuth::Missing);
        assert_eq!(check(None, Some("s3cret")), AdminAuth::Missing);
        assert_eq!(check(Some("Bearer "), Some("s3cret")), AdminAuth::Missing);
        assert_eq!(check(Some("Bearer x"), None), AdminAuth::Disabled);
        assert_eq!(check(Some("Bearer "), Some("")), AdminAuth::Disabled);
    }
}
