//! What the SDK stores between page loads: the pending authorization (keyed by its random
//! `state`, shared by the tabs so a popup or a new tab can finish it) and the session (keyed by
//! FHIR server + client, so two apps or two servers in one origin never clobber each other).

use super::env::{Area, Environment};
use serde::{Deserialize, Serialize};
use smart_protocol::token::TokenResponse;

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

/// A signed-in session: the serialisable `client.state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub server_url: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub endpoints: Endpoints,
    pub token_response: TokenResponse,
    /// Seconds since the epoch when the access token expires, if the server said.
    pub expires_at: Option<i64>,
    /// The verified ID token's claims.
    #[serde(default)]
    pub id_token_claims: Option<serde_json::Map<String, serde_json::Value>>,
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
    env.get(area, key).and_then(|text| serde_json::from_str(&text).ok())
}

pub fn save<T: Serialize>(env: &impl Environment, area: Area, key: &str, value: &T) {
    if let Ok(text) = serde_json::to_string(value) {
        env.set(area, key, &text);
    }
}
