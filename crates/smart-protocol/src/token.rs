//! The token response (RFC 6749 §5.1) with the SMART App Launch 2.2 launch context
//! (<https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#launch-context-arrives-with-your-access_token>)
//! and the OpenID Connect `id_token`: one type for the server that writes it and the SDK that
//! reads it. Unknown fields are ignored (a client that needs them keeps the raw response).

use serde::{Deserialize, Serialize};

pub use crate::datatypes::Identifier;
pub use crate::launch::{FhirContextItem, LaunchContext};

/// What the token endpoint answers for every grant type (authorization code, refresh token,
/// client credentials), and what the SDK reads.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TokenResponse {
    pub access_token: String,
    /// `Bearer` (compared case-insensitively, RFC 6749 §7.1).
    pub token_type: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires_in: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id_token: Option<String>,
    /// The launch context, its members at the top level of the response.
    #[serde(flatten)]
    pub context: LaunchContext,
}

/// The claims of this server's access tokens: RFC 9068 §2.2 (`iss`, `sub`, `aud`, `client_id`,
/// `scope`, `iat`, `exp`, `jti`, `auth_time`) with the SMART launch context the resource server
/// enforces (`patient`, `encounter`, `fhirUser`) and `gid`, the grant whose revocation ends the
/// token. One type for the token endpoint that signs them and the guard that reads them; a
/// member missing when read is empty (the guard's checks refuse what must not be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AccessTokenClaims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    pub aud: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub iat: i64,
    #[serde(default)]
    pub exp: i64,
    #[serde(default)]
    pub jti: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auth_time: Option<i64>,
    /// The grant the token belongs to (a private claim).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gid: Option<String>,
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none", default)]
    pub fhir_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encounter: Option<String>,
}

/// Every claim an ID token of this server may carry ([`IdTokenClaims`]): the OpenID
/// configuration's `claims_supported` (OpenID Connect Discovery 1.0 §3).
pub const ID_TOKEN_CLAIMS: [&str; 9] = ["iss", "sub", "aud", "iat", "exp", "auth_time", "nonce", "fhirUser", "name"];

/// The claims of this server's ID tokens (OpenID Connect Core §2, with SMART's `fhirUser`, the
/// user's FHIR resource as an absolute URL, and `name` with `profile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nonce: Option<String>,
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none", default)]
    pub fhir_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
}

/// The UserInfo response (OpenID Connect Core §5.3.2): `sub` always, `fhirUser` and `name` as
/// the ID token gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserInfo {
    pub sub: String,
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none", default)]
    pub fhir_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
}

/// The tokens print as `[redacted]`; the launch context as it is.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |t: &Option<String>| t.as_ref().map(|_| "[redacted]");
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("refresh_token", &redacted(&self.refresh_token))
            .field("id_token", &redacted(&self.id_token))
            .field("context", &self.context)
            .finish()
    }
}

impl TokenResponse {
    /// Whether `token_type` is `Bearer`, the only type SMART uses.
    pub fn is_bearer(&self) -> bool {
        self.token_type.eq_ignore_ascii_case("bearer")
    }
}

/// Seconds of clock difference a client tolerates in an ID token's `exp` and `iat`.
pub const ID_TOKEN_LEEWAY_SECS: i64 = 60;

/// What a client expects of the ID token it asked for.
#[derive(Debug, Clone, Copy)]
pub struct IdTokenExpected<'a> {
    /// The issuer discovery named, when it named one (`iss` must equal it, trailing `/` aside).
    pub issuer: Option<&'a str>,
    pub client_id: &'a str,
    /// The `nonce` the authorization request sent.
    pub nonce: &'a str,
    pub now: i64,
}

/// Why a client refuses an ID token's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenRefusal {
    NoIssuer,
    OtherIssuer,
    OtherAudience,
    Expired,
    IssuedInFuture,
    OtherNonce,
}

impl IdTokenRefusal {
    pub fn message(self) -> &'static str {
        match self {
            Self::NoIssuer => "the ID token names no issuer (iss)",
            Self::OtherIssuer => "the ID token was issued by another server than the one discovered",
            Self::OtherAudience => "the ID token is for another client",
            Self::Expired => "the ID token has expired",
            Self::IssuedInFuture => "the ID token was issued in the future",
            Self::OtherNonce => "the ID token's nonce is not the one this app sent",
        }
    }
}

impl std::fmt::Display for IdTokenRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for IdTokenRefusal {}

/// The claim checks of OpenID Connect Core §3.1.3.7 (items 2, 3, 9, 10, 11) a client makes
/// before it checks the signature: `iss` (the discovered issuer), `aud` (contains the client),
/// `exp` (not past, with [`ID_TOKEN_LEEWAY_SECS`]), `iat` (not ahead), `nonce` (the one sent).
/// Answers the issuer, whose key set then verifies the signature.
pub fn check_id_token_claims(claims: &dyn crate::fields::Object, expected: &IdTokenExpected) -> Result<String, IdTokenRefusal> {
    let issuer = claims.text("iss").ok_or(IdTokenRefusal::NoIssuer)?;
    if let Some(wanted) = expected.issuer {
        if wanted.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(IdTokenRefusal::OtherIssuer);
        }
    }
    let for_us = claims.text("aud") == Some(expected.client_id) || claims.texts("aud").iter().any(|a| a == expected.client_id);
    if !for_us {
        return Err(IdTokenRefusal::OtherAudience);
    }
    if claims.integer("exp").is_none_or(|exp| exp + ID_TOKEN_LEEWAY_SECS < expected.now) {
        return Err(IdTokenRefusal::Expired);
    }
    if claims.integer("iat").is_some_and(|iat| iat > expected.now + ID_TOKEN_LEEWAY_SECS) {
        return Err(IdTokenRefusal::IssuedInFuture);
    }
    if claims.text("nonce") != Some(expected.nonce) {
        return Err(IdTokenRefusal::OtherNonce);
    }
    Ok(issuer.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_supported_names_exactly_what_an_id_token_can_carry() {
        let full = IdTokenClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: "a".into(),
            iat: 1,
            exp: 2,
            auth_time: Some(0),
            nonce: Some("n".into()),
            fhir_user: Some("f".into()),
            name: Some("m".into()),
        };
        let json = serde_json::to_value(full).unwrap();
        let mut written: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut listed = ID_TOKEN_CLAIMS.to_vec();
        written.sort_unstable();
        listed.sort_unstable();
        assert_eq!(written, listed);
    }

    #[test]
    fn reads_a_smart_token_response_and_ignores_unknown_fields() {
        let body = json!({"access_token": "a", "token_type": "bearer", "expires_in": 3600, "scope": "launch/patient patient/*.rs",
            "patient": "p1", "need_patient_banner": true, "smart_style_url": "https://s/style.json",
            "fhirContext": [{"reference": "Encounter/e1"}, {"canonical": "http://q|1", "type": "Questionnaire"},
                {"identifier": {"system": "urn:s", "value": "v", "period": {}}, "type": "Encounter"}], "x-vendor": 1});
        let t: TokenResponse = serde_json::from_value(body).unwrap();
        assert!(t.is_bearer());
        assert_eq!(t.context.patient.as_deref(), Some("p1"));
        assert_eq!(t.context.fhir_context[1].resource_type.as_deref(), Some("Questionnaire"));
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(back["fhirContext"][0]["reference"], "Encounter/e1");
        assert_eq!(back["fhirContext"][2]["identifier"], json!({"period": {}, "system": "urn:s", "value": "v"}));
        assert!(back.get("refresh_token").is_none());
        let shown = format!("{:?}", TokenResponse { refresh_token: Some("r-secret".into()), id_token: Some("i-secret".into()), ..t });
        assert!(!shown.contains("secret") && !shown.contains("\"a\"") && shown.contains("[redacted]"), "{shown}");
    }
    #[test]
    fn id_token_claims_are_checked_in_the_specification_order() {
        let expected = IdTokenExpected { issuer: Some("https://ehr.example/"), client_id: "app", nonce: "n-1", now: 1000 };
        let good = json!({"iss": "https://ehr.example", "aud": "app", "exp": 1100, "iat": 990, "nonce": "n-1", "sub": "u"});
        let check = |patch: serde_json::Value| {
            let mut claims = good.clone();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            check_id_token_claims(claims.as_object().unwrap(), &expected)
        };
        assert_eq!(check(json!({})), Ok("https://ehr.example".to_owned()));
        assert_eq!(check(json!({"aud": ["other", "app"]})), Ok("https://ehr.example".to_owned()), "aud may be a list");
        assert_eq!(check(json!({"exp": 1000 - ID_TOKEN_LEEWAY_SECS})), Ok("https://ehr.example".to_owned()), "within the leeway");
        assert_eq!(check(json!({"iss": null})), Err(IdTokenRefusal::NoIssuer));
        assert_eq!(check(json!({"iss": "https://evil.example"})), Err(IdTokenRefusal::OtherIssuer));
        assert_eq!(check(json!({"aud": "other"})), Err(IdTokenRefusal::OtherAudience));
        assert_eq!(check(json!({"aud": ["other"]})), Err(IdTokenRefusal::OtherAudience));
        assert_eq!(check(json!({"aud": null})), Err(IdTokenRefusal::OtherAudience));
        assert_eq!(check(json!({"exp": 1000 - ID_TOKEN_LEEWAY_SECS - 1})), Err(IdTokenRefusal::Expired));
        assert_eq!(check(json!({"exp": null})), Err(IdTokenRefusal::Expired), "an ID token without exp never counts as fresh");
        assert_eq!(check(json!({"iat": 1000 + ID_TOKEN_LEEWAY_SECS + 1})), Err(IdTokenRefusal::IssuedInFuture));
        assert_eq!(check(json!({"nonce": "n-2"})), Err(IdTokenRefusal::OtherNonce));
        assert_eq!(check(json!({"nonce": null})), Err(IdTokenRefusal::OtherNonce));
        let anywhere = IdTokenExpected { issuer: None, ..expected };
        let elsewhere = json!({"iss": "https://other.example", "aud": "app", "exp": 1100, "nonce": "n-1"});
        assert!(check_id_token_claims(elsewhere.as_object().unwrap(), &anywhere).is_ok(), "no discovered issuer to compare with");
    }
}
