//! What the SDK stores between page loads: the pending authorization (keyed by its random
//! `state`, shared by the tabs so a popup or a new tab can finish it) and the session (keyed by
//! FHIR server + client, so two apps or two servers in one origin never clobber each other).

use super::env::{Area, Environment};
use crate::json::{object, Json};

/// How long a pending authorization may wait for its redirect.
pub const PENDING_TTL_SECS: i64 = 600;

/// The endpoints found by discovery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    pub revoke: Option<String>,
    pub issuer: Option<String>,
    pub jwks_uri: Option<String>,
    /// The SMART capabilities the server advertises.
    pub capabilities: Vec<String>,
}

/// An authorization on its way: what `ready()` needs to finish it.
#[derive(Clone, PartialEq, Eq)]
pub struct Pending {
    pub server_url: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_verifier: String,
    pub nonce: String,
    pub endpoints: Endpoints,
    pub created: i64,
}

/// A signed-in session: the serialisable `client.state`. What the SDK only hands to the app
/// (the server's token response, the ID token's claims) is kept as the JSON the server sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub server_url: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub endpoints: Endpoints,
    /// The token response of the authorization (with its launch context), as sent.
    pub token_response: Json,
    /// The current tokens (a refresh replaces them; the launch context stays).
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds since the epoch when the access token expires, if the server said.
    pub expires_at: Option<i64>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// The verified ID token's claims, as sent.
    pub id_token_claims: Option<Json>,
    /// `fhirUser` from the verified ID token.
    pub fhir_user: Option<String>,
}

/// What the SDK stores, as JSON (camelCase names: the session is the app's `client.state`).
pub trait Stored: Sized {
    fn to_json(&self) -> Json;
    /// `None` when the JSON is not one the SDK wrote.
    fn from_json(json: &Json) -> Option<Self>;
}

impl Stored for Endpoints {
    fn to_json(&self) -> Json {
        object([
            ("authorize", self.authorize.as_str().into()),
            ("token", self.token.as_str().into()),
            ("revoke", self.revoke.clone().into()),
            ("issuer", self.issuer.clone().into()),
            ("jwksUri", self.jwks_uri.clone().into()),
            ("capabilities", self.capabilities.clone().into()),
        ])
    }
    fn from_json(j: &Json) -> Option<Self> {
        Some(Endpoints {
            authorize: j.string("authorize")?,
            token: j.string("token")?,
            revoke: j.string("revoke"),
            issuer: j.string("issuer"),
            jwks_uri: j.string("jwksUri"),
            capabilities: j.list("capabilities").iter().filter_map(|c| c.as_str().map(str::to_owned)).collect(),
        })
    }
}

impl Stored for Pending {
    fn to_json(&self) -> Json {
        object([
            ("serverUrl", self.server_url.as_str().into()),
            ("clientId", self.client_id.as_str().into()),
            ("redirectUri", self.redirect_uri.as_str().into()),
            ("scope", self.scope.as_str().into()),
            ("codeVerifier", self.code_verifier.as_str().into()),
            ("nonce", self.nonce.as_str().into()),
            ("endpoints", self.endpoints.to_json()),
            ("created", self.created.into()),
        ])
    }
    fn from_json(j: &Json) -> Option<Self> {
        Some(Pending {
            server_url: j.string("serverUrl")?,
            client_id: j.string("clientId")?,
            redirect_uri: j.string("redirectUri")?,
            scope: j.string("scope")?,
            code_verifier: j.string("codeVerifier")?,
            nonce: j.string("nonce")?,
            endpoints: Endpoints::from_json(j.get("endpoints")?)?,
            created: j.get("created")?.as_i64()?,
        })
    }
}

impl Stored for Session {
    fn to_json(&self) -> Json {
        object([
            ("serverUrl", self.server_url.as_str().into()),
            ("clientId", self.client_id.as_str().into()),
            ("redirectUri", self.redirect_uri.as_str().into()),
            ("scope", self.scope.as_str().into()),
            ("endpoints", self.endpoints.to_json()),
            ("tokenResponse", self.token_response.clone()),
            ("accessToken", self.access_token.as_str().into()),
            ("refreshToken", self.refresh_token.clone().into()),
            ("expiresAt", self.expires_at.into()),
            ("patient", self.patient.clone().into()),
            ("encounter", self.encounter.clone().into()),
            ("idTokenClaims", self.id_token_claims.clone().unwrap_or(Json::Null)),
            ("fhirUser", self.fhir_user.clone().into()),
        ])
    }
    fn from_json(j: &Json) -> Option<Self> {
        Some(Session {
            server_url: j.string("serverUrl")?,
            client_id: j.string("clientId")?,
            redirect_uri: j.string("redirectUri")?,
            scope: j.string("scope")?,
            endpoints: Endpoints::from_json(j.get("endpoints")?)?,
            token_response: j.get("tokenResponse").filter(|t| matches!(t, Json::Object(_)))?.clone(),
            access_token: j.string("accessToken")?,
            refresh_token: j.string("refreshToken"),
            expires_at: j.get("expiresAt").and_then(Json::as_i64),
            patient: j.string("patient"),
            encounter: j.string("encounter"),
            id_token_claims: j.get("idTokenClaims").filter(|c| matches!(c, Json::Object(_))).cloned(),
            fhir_user: j.string("fhirUser"),
        })
    }
}

/// The PKCE verifier prints as `[redacted]`.
impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("server_url", &self.server_url)
            .field("client_id", &self.client_id)
            .field("code_verifier", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// The tokens print as `[redacted]`.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("server_url", &self.server_url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("access_token", &"[redacted]")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("patient", &self.patient)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn key(&self) -> String {
        session_key(&self.server_url, &self.client_id)
    }
}

pub fn session_key(server_url: &str, client_id: &str) -> String {
    format!("smart-edge:session:{}|{client_id}", server_url.trim_end_matches('/'))
}

pub fn pending_key(state: &str) -> String {
    format!("smart-edge:auth:{state}")
}

/// The session this tab last used.
pub const CURRENT: &str = "smart-edge:current";

pub fn load<T: Stored>(env: &impl Environment, area: Area, key: &str) -> Option<T> {
    T::from_json(&Json::parse(&env.get(area, key)?).ok()?)
}

pub fn save<T: Stored>(env: &impl Environment, area: Area, key: &str, value: &T) {
    env.set(area, key, &value.to_json().to_string());
}
