//! Dynamic client registration: the RFC 7591 §2 client metadata a client sends, and the
//! client information response of RFC 7591 §3.2.1 and RFC 7592 §3.

use crate::jose::Jwks;
use serde::{Deserialize, Serialize};
use std::fmt;

/// RFC 7591 §3.2.2 error codes (besides RFC 6750's `invalid_token` for a bad bearer token).
pub const INVALID_REDIRECT_URI: &str = "invalid_redirect_uri";
pub const INVALID_CLIENT_METADATA: &str = "invalid_client_metadata";
pub const INVALID_SOFTWARE_STATEMENT: &str = "invalid_software_statement";
pub const UNAPPROVED_SOFTWARE_STATEMENT: &str = "unapproved_software_statement";

/// The metadata of a registration request (RFC 7591 §2, plus SMART's `launch_uri`), or of an
/// RFC 7592 §2.2 update (which also carries `client_id` and may carry `client_secret`).
/// Members this server does not know are ignored (RFC 7591 §2).
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClientMetadataRequest {
    pub redirect_uris: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub scope: Option<String>,
    pub contacts: Option<Vec<String>>,
    pub tos_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub jwks_uri: Option<String>,
    pub jwks: Option<Jwks>,
    pub software_statement: Option<String>,
    /// SMART App Launch: where the EHR launches the app.
    pub launch_uri: Option<String>,
    /// RFC 7592 §2.2 only.
    pub client_id: Option<String>,
    /// RFC 7592 §2.2 only: must equal the current secret when sent.
    pub client_secret: Option<String>,
}

impl fmt::Debug for ClientMetadataRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientMetadataRequest")
            .field("client_id", &self.client_id)
            .field("client_name", &self.client_name)
            .field("token_endpoint_auth_method", &self.token_endpoint_auth_method)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// RFC 7591 §3.2.1 / RFC 7592 §3: the registered client, its credentials and where to manage
/// it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInformation {
    pub client_id: String,
    /// Only in the registration response (stored hashed, so never shown again).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_secret: Option<String>,
    pub client_id_issued_at: i64,
    /// `0`: the secret does not expire. Present whenever the client has a secret.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_secret_expires_at: Option<i64>,
    pub registration_access_token: String,
    pub registration_client_uri: String,
    pub client_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub response_types: Vec<String>,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jwks: Option<Jwks>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub launch_uri: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub contacts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tos_uri: Option<String>,
}

impl fmt::Debug for ClientInformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientInformation")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .field("registration_access_token", &"[redacted]")
            .field("registration_client_uri", &self.registration_client_uri)
            .field("token_endpoint_auth_method", &self.token_endpoint_auth_method)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_metadata_is_ignored_and_secrets_are_not_printed() {
        let request: ClientMetadataRequest =
            serde_json::from_value(serde_json::json!({"redirect_uris": ["https://a.example/cb"], "x_vendor": 1, "client_secret": "hunter2-hunter2"})).unwrap();
        assert_eq!(request.redirect_uris.as_deref(), Some(&["https://a.example/cb".to_owned()][..]));
        assert!(!format!("{request:?}").contains("hunter2"));
    }
}
