//! What the SDK stores between page loads: the pending authorization (keyed by its random
//! `state`, shared by the tabs so a popup or a new tab can finish it) and the session (keyed by
//! FHIR server + client, so two apps or two servers in one origin never clobber each other).

use super::env::{Area, Environment};
use serde::{Deserialize, Serialize};
use crate::json::{self, Raw};

/// How long a pending authorization may wait for its redirect.
pub const PENDING_TTL_SECS: i64 = 600;

/// The endpoints found by discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    #[serde(default)]
    pub revoke: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The SMART capabilities the server advertises.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// An authorization on its way: what `ready()` needs to finish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub server_url: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub endpoints: Endpoints,
    /// The token response of the authorization (with its launch context), as sent.
    pub token_response: Raw,
    /// The current tokens (a refresh replaces them; the launch context stays).
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Seconds since the epoch when the access token expires, if the server said.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub patient: Option<String>,
    #[serde(default)]
    pub encounter: Option<String>,
    /// The verified ID token's claims, as sent.
    #[serde(default)]
    pub id_token_claims: Option<Raw>,
    /// `fhirUser` from the verified ID token.
    #[serde(default)]
    pub fhir_user: Option<String>,
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

pub fn load<T: for<'de> Deserialize<'de>>(env: &impl Environment, area: Area, key: &str) -> Option<T> {
    env.get(area, key).and_then(|text| json::from_str(&text).ok())
}

pub fn save<T: Serialize>(env: &impl Environment, area: Area, key: &str, value: &T) {
    if let Ok(text) = json::to_string(value) {
        env.set(area, key, &text);
    }
}
