//! What a client sends to the token endpoint (RFC 6749 §3.2, §4.1.3, §6; RFC 7523 §2.2; SMART
//! App Launch 2.2 §2.0.8–2.0.9), read once: the grant type and its parameters, and the
//! client's credentials — HTTP Basic, a secret in the form, or a signed assertion — with the
//! rules that match them to the registration. Secrets print as `[redacted]` in `Debug`.

use crate::clients::{Client, ClientType};
use crate::secret::Redacted;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use smart_protocol::{OAuthError, OAuthErrorCode};
use std::fmt;

/// `client_assertion_type` of a `private_key_jwt` assertion (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Clone, PartialEq, Eq)]
pub enum GrantRequest {
    AuthorizationCode { code: String, redirect_uri: Option<String>, code_verifier: String },
    RefreshToken { refresh_token: String, scope: Option<String> },
    ClientCredentials { scope: Option<String> },
}

/// How the client presented itself.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// A public client, naming itself with `client_id` (or not at all, on refresh).
    None { client_id: Option<String> },
    /// `client_secret_basic`.
    Basic { client_id: String, secret: String },
    /// `client_secret_post`.
    Post { client_id: String, secret: String },
    /// `private_key_jwt` (RFC 7523 §2.2).
    Assertion { client_id: Option<String>, assertion: String },
}

impl ClientAuth {
    /// The client id the request names, if any.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            ClientAuth::None { client_id } | ClientAuth::Assertion { client_id, .. } => client_id.as_deref(),
            ClientAuth::Basic { client_id, .. } | ClientAuth::Post { client_id, .. } => Some(client_id),
        }
    }

    pub fn used_basic(&self) -> bool {
        matches!(self, ClientAuth::Basic { .. })
    }
}

/// Codes, verifiers and refresh tokens print as `[redacted]`.
impl fmt::Debug for GrantRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantRequest::AuthorizationCode { redirect_uri, .. } => {
                f.debug_struct("AuthorizationCode").field("code", &Redacted).field("redirect_uri", redirect_uri).field("code_verifier", &Redacted).finish()
            }
            GrantRequest::RefreshToken { scope, .. } => f.debug_struct("RefreshToken").field("refresh_token", &Redacted).field("scope", scope).finish(),
            GrantRequest::ClientCredentials { scope } => f.debug_struct("ClientCredentials").field("scope", scope).finish(),
        }
    }
}

/// Secrets and assertions print as `[redacted]`.
impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::None { client_id } => f.debug_struct("None").field("client_id", client_id).finish(),
            ClientAuth::Basic { client_id, .. } => f.debug_struct("Basic").field("client_id", client_id).field("secret", &Redacted).finish(),
            ClientAuth::Post { client_id, .. } => f.debug_struct("Post").field("client_id", client_id).field("secret", &Redacted).finish(),
            ClientAuth::Assertion { client_id, .. } => f.debug_struct("Assertion").field("client_id", client_id).field("assertion", &Redacted).finish(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant: GrantRequest,
    pub auth: ClientAuth,
}

fn err(code: OAuthErrorCode, description: &str) -> OAuthError {
    OAuthError::new(code, description)
}

/// The parameters a client may send once at most (RFC 6749 §3.2).
const SINGLE: [&str; 11] = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "token",
];

/// Checks a request's parameters for duplicates and over-long values.
pub fn check_pairs(pairs: &[(String, String)]) -> Result<(), OAuthError> {
    if let Some(name) = SINGLE.iter().find(|n| pairs.iter().filter(|(k, _)| k == *n).count() > 1) {
        return Err(err(OAuthErrorCode::InvalidRequest, &format!("{name} is given more than once")));
    }
    if let Some((name, _)) = pairs.iter().find(|(_, v)| v.len() > 8192) {
        return Err(err(OAuthErrorCode::InvalidRequest, &format!("{name} is too long")));
    }
    Ok(())
}

/// Reads the client's credentials from the `Authorization` header and the body.
pub fn parse_client_auth(pairs: &[(String, String)], authorization: Option<&str>) -> Result<ClientAuth, OAuthError> {
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let body_id = get("client_id");
    let basic = match authorization {
        Some(header) => {
            let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(err(OAuthErrorCode::InvalidClient, "only HTTP Basic client authentication is accepted in the Authorization header"));
            }
            let decoded = B64.decode(value.trim()).ok().and_then(|b| String::from_utf8(b).ok());
            let (id, secret) =
                decoded.as_deref().and_then(|d| d.split_once(':')).ok_or_else(|| err(OAuthErrorCode::InvalidClient, "the Basic credentials are malformed"))?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            let decode =
                |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}")).ok().and_then(|v| v.into_iter().next()).map(|(_, v)| v);
            let (Some(id), Some(secret)) = (decode(id), decode(secret)) else {
                return Err(err(OAuthErrorCode::InvalidClient, "the Basic credentials are malformed"));
            };
            Some((id, secret))
        }
        None => None,
    };
    let secret = get("client_secret");
    let assertion = get("client_assertion");
    let assertion_type = get("client_assertion_type");
    let methods = [basic.is_some(), secret.is_some(), assertion.is_some() || assertion_type.is_some()].iter().filter(|m| **m).count();
    if methods > 1 {
        return Err(err(OAuthErrorCode::InvalidRequest, "use exactly one client authentication method"));
    }
    if let Some((id, secret)) = basic {
        if body_id.as_ref().is_some_and(|b| *b != id) {
            return Err(err(OAuthErrorCode::InvalidRequest, "client_id differs from the Basic credentials"));
        }
        return Ok(ClientAuth::Basic { client_id: id, secret });
    }
    if let Some(secret) = secret {
        let client_id = body_id.ok_or_else(|| err(OAuthErrorCode::InvalidRequest, "client_secret needs client_id"))?;
        return Ok(ClientAuth::Post { client_id, secret });
    }
    if assertion.is_some() || assertion_type.is_some() {
        if assertion_type.as_deref() != Some(JWT_BEARER) {
            return Err(err(OAuthErrorCode::InvalidClient, "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
        }
        let assertion = assertion.ok_or_else(|| err(OAuthErrorCode::InvalidClient, "client_assertion is missing"))?;
        return Ok(ClientAuth::Assertion { client_id: body_id, assertion });
    }
    Ok(ClientAuth::None { client_id: body_id })
}

/// Parses a token request (after [`check_pairs`]).
pub fn parse(pairs: &[(String, String)], authorization: Option<&str>) -> Result<TokenRequest, OAuthError> {
    check_pairs(pairs)?;
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let required = |name: &str| get(name).ok_or_else(|| err(OAuthErrorCode::InvalidRequest, &format!("{name} is required")));
    let grant = match get("grant_type").as_deref() {
        None => return Err(err(OAuthErrorCode::InvalidRequest, "grant_type is required")),
        Some("authorization_code") => {
            GrantRequest::AuthorizationCode { code: required("code")?, redirect_uri: get("redirect_uri"), code_verifier: required("code_verifier")? }
        }
        Some("refresh_token") => GrantRequest::RefreshToken { refresh_token: required("refresh_token")?, scope: get("scope") },
        Some("client_credentials") => GrantRequest::ClientCredentials { scope: get("scope") },
        Some(other) => return Err(err(OAuthErrorCode::UnsupportedGrantType, &format!("grant_type {other} is not supported"))),
    };
    Ok(TokenRequest { grant, auth: parse_client_auth(pairs, authorization)? })
}

/// Checks the credentials a client presented; a signed assertion is only matched to the client
/// type here, its signature and claims are checked separately. `client` is the registration
/// `auth` names, if any.
pub fn authenticate(client: Option<&Client>, auth: &ClientAuth) -> Result<(), OAuthError> {
    let invalid = |d: &str| err(OAuthErrorCode::InvalidClient, d);
    let Some(client) = client else { return Err(invalid("unknown client")) };
    match (auth, client.client_type) {
        (ClientAuth::None { .. }, ClientType::Public) => Ok(()),
        (ClientAuth::None { .. }, _) => Err(invalid("this client must authenticate")),
        (ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. }, ClientType::ConfidentialSymmetric) => {
            if client.secret_matches(secret) {
                Ok(())
            } else {
                Err(invalid("client authentication failed"))
            }
        }
        (ClientAuth::Basic { .. } | ClientAuth::Post { .. }, _) => Err(invalid("this client does not authenticate with a secret")),
        (ClientAuth::Assertion { .. }, ClientType::ConfidentialAsymmetric | ClientType::Backend) => Ok(()),
        (ClientAuth::Assertion { .. }, _) => Err(invalid("this client does not authenticate with private_key_jwt")),
    }
}

/// Whether `grant_type` is allowed for the client type (RFC 6749 `unauthorized_client`).
pub fn grant_allowed(client: &Client, client_credentials: bool) -> Result<(), OAuthError> {
    let backend = client.client_type == ClientType::Backend;
    if backend != client_credentials {
        return Err(err(OAuthErrorCode::UnauthorizedClient, "this client may not use this grant_type"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_each_grant_and_refuses_unknown_missing_or_duplicated_parameters() {
        let code = parse(&pairs(&[("grant_type", "authorization_code"), ("code", "c"), ("code_verifier", "v"), ("client_id", "app")]), None).unwrap();
        assert!(matches!(code.grant, GrantRequest::AuthorizationCode { .. }));
        assert_eq!(code.auth, ClientAuth::None { client_id: Some("app".into()) });
        let bad = |list: &[(&str, &str)]| parse(&pairs(list), None).unwrap_err().error;
        assert_eq!(bad(&[]), OAuthErrorCode::InvalidRequest);
        assert_eq!(bad(&[("grant_type", "password")]), OAuthErrorCode::UnsupportedGrantType);
        assert_eq!(bad(&[("grant_type", "authorization_code"), ("code", "c")]), OAuthErrorCode::InvalidRequest);
        assert_eq!(bad(&[("grant_type", "refresh_token")]), OAuthErrorCode::InvalidRequest);
        assert_eq!(bad(&[("grant_type", "refresh_token"), ("refresh_token", "a"), ("refresh_token", "b")]), OAuthErrorCode::InvalidRequest);
        assert_eq!(bad(&[("grant_type", "client_credentials"), ("client_assertion_type", "x"), ("client_assertion", "y")]), OAuthErrorCode::InvalidClient);
    }

    #[test]
    fn reads_basic_post_and_assertion_credentials() {
        let basic = format!("Basic {}", B64.encode("my%20app:s%3Acret"));
        let auth = parse_client_auth(&[], Some(&basic)).unwrap();
        assert_eq!(auth, ClientAuth::Basic { client_id: "my app".into(), secret: "s:cret".into() });
        assert!(auth.used_basic());
        assert_eq!(parse_client_auth(&[], Some("Basic !!!")).unwrap_err().error, OAuthErrorCode::InvalidClient);
        assert_eq!(parse_client_auth(&[], Some("Bearer x")).unwrap_err().error, OAuthErrorCode::InvalidClient);
        let post = parse_client_auth(&pairs(&[("client_id", "a"), ("client_secret", "s")]), None).unwrap();
        assert_eq!(post, ClientAuth::Post { client_id: "a".into(), secret: "s".into() });
        let both = parse_client_auth(&pairs(&[("client_id", "a"), ("client_secret", "s")]), Some(&basic)).unwrap_err();
        assert_eq!(both.error, OAuthErrorCode::InvalidRequest);
        let jwt = parse_client_auth(&pairs(&[("client_assertion_type", JWT_BEARER), ("client_assertion", "x.y.z")]), None).unwrap();
        assert!(matches!(jwt, ClientAuth::Assertion { client_id: None, .. }));
    }

    #[test]
    fn debug_never_shows_secrets_codes_or_assertions() {
        let request = parse(
            &pairs(&[("grant_type", "authorization_code"), ("code", "c0de"), ("code_verifier", "v3rifier"), ("client_id", "a"), ("client_secret", "s3cret")]),
            None,
        )
        .unwrap();
        let assertion = ClientAuth::Assertion { client_id: None, assertion: "h.p.s1gnature".into() };
        let refresh = GrantRequest::RefreshToken { refresh_token: "r3fresh".into(), scope: None };
        let text = format!("{request:?} {assertion:?} {refresh:?}");
        for secret in ["c0de", "v3rifier", "s3cret", "s1gnature", "r3fresh"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("[redacted]") && text.contains("client_id: \"a\""), "{text}");
    }
}
