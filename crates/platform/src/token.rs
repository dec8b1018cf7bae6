//! The token endpoint's rules (RFC 6749 §3.2, §4.1.3, §6; RFC 7636 §4.5; SMART App Launch 2.2
//! §2.0.8–2.0.9): parsing the request, authenticating the client, and the contents of the
//! access token (RFC 9068), the ID token (OpenID Connect Core §2) and the response.

use crate::clients::{Client, ClientType};
use crate::grants::AuthorizationGrant;
use crate::scope_policy::{self, Holder};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use crate::grant_handle::Redacted;
use serde_json::{json, Map, Value};
use std::fmt;
use smart_protocol::scopes::{Scope, ScopeSet};
use smart_protocol::{OAuthError, OAuthErrorCode, ServerUrls};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Lifetime of ID tokens.
pub const ID_TOKEN_LIFETIME_SECS: i64 = 3600;

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
            GrantRequest::AuthorizationCode { redirect_uri, .. } => f
                .debug_struct("AuthorizationCode")
                .field("code", &Redacted)
                .field("redirect_uri", redirect_uri)
                .field("code_verifier", &Redacted)
                .finish(),
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
    "grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "client_id",
    "client_secret", "client_assertion", "client_assertion_type", "token",
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
            let (id, secret) = decoded
                .as_deref()
                .and_then(|d| d.split_once(':'))
                .ok_or_else(|| err(OAuthErrorCode::InvalidClient, "the Basic credentials are malformed"))?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            let decode = |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}")).ok().and_then(|v| v.into_iter().next()).map(|(_, v)| v);
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
        Some("authorization_code") => GrantRequest::AuthorizationCode {
            code: required("code")?,
            redirect_uri: get("redirect_uri"),
            code_verifier: required("code_verifier")?,
        },
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

/// The scopes of a refreshed token: the grant's, or a subset the client asks for
/// (RFC 6749 §6), never one the server cannot enforce (see [`scope_policy`]).
pub fn refresh_scope(granted: &str, requested: Option<&str>) -> Result<ScopeSet, OAuthError> {
    let granted = scope_policy::holdable_only(&ScopeSet::parse(granted).unwrap_or_default(), Holder::Interactive);
    let Some(requested) = requested else { return Ok(granted) };
    let requested = ScopeSet::parse(requested).map_err(|e| err(OAuthErrorCode::InvalidScope, &e.to_string()))?;
    scope_policy::check_requested(&requested, Holder::Interactive)?;
    if !granted.covers_all(&requested) {
        return Err(err(OAuthErrorCode::InvalidScope, "scope may only narrow the original grant"));
    }
    Ok(requested)
}

/// Lifetime of a backend services access token (SMART: "should be short-lived").
pub const BACKEND_TOKEN_LIFETIME_SECS: i64 = 300;

/// The scopes of a `client_credentials` token: what the client asks for (everything it may
/// hold when it asks for nothing) narrowed by its registration; `system/` scopes only.
pub fn backend_scope(client: &Client, requested: Option<&str>) -> Result<ScopeSet, OAuthError> {
    let allowed = client.allowed_scopes();
    let requested = match requested {
        Some(r) => ScopeSet::parse(r).map_err(|e| err(OAuthErrorCode::InvalidScope, &e.to_string()))?,
        None => allowed.clone(),
    };
    scope_policy::check_requested(&requested, Holder::Backend)?;
    let granted = scope_policy::grantable(&requested, &allowed, Holder::Backend);
    if granted.is_empty() {
        return Err(err(OAuthErrorCode::InvalidScope, "none of the requested scopes is allowed for this client"));
    }
    Ok(granted)
}

/// The access token of a backend service: no user, no launch context; `grant_id` is the
/// grant revocation ends.
pub fn backend_access_claims(urls: &ServerUrls, client: &Client, scope: &ScopeSet, jti: &str, grant_id: &str, now: i64) -> Value {
    json!({
        "iss": urls.issuer(),
        "sub": client.client_id,
        "aud": urls.fhir_base(),
        "client_id": client.client_id,
        "scope": scope.to_string(),
        "iat": now,
        "exp": now + BACKEND_TOKEN_LIFETIME_SECS,
        "jti": jti,
        "gid": grant_id,
    })
}

/// Everything that goes into one token response.
pub struct Issue<'a> {
    pub urls: &'a ServerUrls,
    pub client: &'a Client,
    pub grant: &'a AuthorizationGrant,
    pub grant_id: &'a str,
    pub scope: &'a ScopeSet,
    pub jti: &'a str,
    pub now: i64,
}

impl Issue<'_> {
    pub fn expires_in(&self) -> i64 {
        i64::from(self.client.access_token_lifetime)
    }

    fn fhir_user_url(&self) -> String {
        format!("{}/{}", self.urls.fhir_base(), self.grant.user.fhir_user)
    }

    /// RFC 9068 access token claims, with the SMART context the resource server needs and the
    /// grant id it checks revocation against.
    pub fn access_token_claims(&self) -> Value {
        let mut claims = json!({
            "iss": self.urls.issuer(),
            "sub": self.grant.user.username,
            "aud": self.urls.fhir_base(),
            "client_id": self.client.client_id,
            "scope": self.scope.to_string(),
            "iat": self.now,
            "exp": self.now + self.expires_in(),
            "jti": self.jti,
            "auth_time": self.grant.user.auth_time,
            "gid": self.grant_id,
            "fhirUser": self.grant.user.fhir_user,
        });
        let map = claims.as_object_mut().expect("an object");
        if let Some(patient) = &self.grant.context.patient {
            map.insert("patient".into(), json!(patient));
        }
        if let Some(encounter) = &self.grant.context.encounter {
            map.insert("encounter".into(), json!(encounter));
        }
        claims
    }

    /// The ID token's claims when `openid` was granted (OpenID Connect Core §2, §5.1; SMART
    /// `fhirUser`).
    pub fn id_token_claims(&self, with_nonce: bool) -> Option<Value> {
        if !self.scope.contains(&Scope::OpenId) {
            return None;
        }
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.urls.issuer()));
        claims.insert("sub".into(), json!(self.grant.user.username));
        claims.insert("aud".into(), json!(self.client.client_id));
        claims.insert("iat".into(), json!(self.now));
        claims.insert("exp".into(), json!(self.now + ID_TOKEN_LIFETIME_SECS));
        claims.insert("auth_time".into(), json!(self.grant.user.auth_time));
        if let (true, Some(nonce)) = (with_nonce, &self.grant.nonce) {
            claims.insert("nonce".into(), json!(nonce));
        }
        if self.scope.contains(&Scope::FhirUser) {
            claims.insert("fhirUser".into(), json!(self.fhir_user_url()));
        }
        if self.scope.contains(&Scope::Profile) {
            claims.insert("name".into(), json!(self.grant.user.display_name));
        }
        Some(Value::Object(claims))
    }

    /// The JSON body of the token response (RFC 6749 §5.1 + SMART launch context).
    pub fn response(&self, access_token: &str, id_token: Option<&str>, refresh_token: Option<&str>) -> Value {
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in(),
            "scope": self.scope.to_string(),
        });
        let map = body.as_object_mut().expect("an object");
        if let Some(id_token) = id_token {
            map.insert("id_token".into(), json!(id_token));
        }
        if let Some(refresh_token) = refresh_token {
            map.insert("refresh_token".into(), json!(refresh_token));
        }
        if let Ok(Value::Object(context)) = serde_json::to_value(&self.grant.context) {
            map.extend(context);
        }
        body
    }
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

    #[test]
    fn backend_scopes_are_system_scopes_narrowed_by_the_registration() {
        let client = crate::clients::ClientRegistration::parse(
            r#"{"client_id":"b","client_name":"B","client_type":"backend","scope":"system/Patient.rs system/Observation.rs","jwks_uri":"https://b.example/jwks"}"#,
        )
        .unwrap()
        .into_client()
        .unwrap();
        assert_eq!(backend_scope(&client, None).unwrap().to_string(), "system/Patient.rs system/Observation.rs");
        assert_eq!(backend_scope(&client, Some("system/*.rs")).unwrap().to_string(), "system/Patient.rs system/Observation.rs");
        assert_eq!(backend_scope(&client, Some("system/Observation.r")).unwrap().to_string(), "system/Observation.r");
        assert_eq!(backend_scope(&client, Some("system/Condition.rs")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        assert_eq!(backend_scope(&client, Some("patient/*.rs")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        assert_eq!(backend_scope(&client, Some("openid")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        assert_eq!(backend_scope(&client, Some("system/Observation.rs?category=laboratory&foo=bar")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        assert_eq!(backend_scope(&client, Some("system/Observation.rs?category=laboratory")).unwrap().to_string(), "system/Observation.rs?category=laboratory");
    }

    #[test]
    fn refresh_scope_may_only_narrow() {
        assert_eq!(refresh_scope("openid patient/*.rs", None).unwrap().to_string(), "openid patient/*.rs");
        assert_eq!(refresh_scope("openid patient/*.rs", Some("patient/Observation.rs")).unwrap().to_string(), "patient/Observation.rs");
        assert_eq!(refresh_scope("openid patient/*.rs", Some("patient/*.cruds")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        assert_eq!(refresh_scope("openid", Some("bad\\\\scope")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        let lab = "openid patient/Observation.rs?category=laboratory";
        assert_eq!(refresh_scope(lab, Some("patient/Observation.rs?category=laboratory&foo=bar")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        // A grant stored before the rule keeps only what can be enforced.
        assert_eq!(refresh_scope("openid patient/Observation.rs?foo=bar system/*.rs", None).unwrap().to_string(), "openid");
    }
}
