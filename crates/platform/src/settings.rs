//! Server settings kept in Workers KV (read-mostly, edited by an administrator), with the
//! defaults a fresh deployment runs on.

use crate::ports::{KvStore, StoreError};
use serde::{Deserialize, Serialize};
use smart_protocol::discovery::AssociatedEndpoint;
use url::Url;

/// The KV key the settings live under.
pub const SETTINGS_KEY: &str = "config:server";

/// Largest settings document accepted, in bytes.
pub const MAX_SETTINGS_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Shown in the CapabilityStatement and, later, on the login and consent pages.
    pub server_name: String,
    /// Origins of EHRs allowed to embed the authorization pages (CSP `frame-ancestors`).
    pub ehr_origins: Vec<String>,
    /// How introspection answers for an inactive token: `rfc7662` (200 `{"active": false}`)
    /// or `smile-cdr` (404 with every field empty, for clients written against Smile CDR).
    pub introspection_style: IntrospectionStyle,
    /// How long a rotated-out refresh token still works (0 to 300 s; see
    /// `grants::Command::Refresh`).
    pub refresh_grace_secs: i64,
    /// RFC 7591: whether anyone may register a public client (authorization code + PKCE, no
    /// secret) without an initial access token. Confidential and backend clients always need
    /// one (see [`crate::registration`]).
    pub open_registration: bool,
    /// `sha256:<base64url>` of an initial access token for the registration endpoint (RFC
    /// 7591 §3), besides the admin token; `null` for none.
    pub registration_token_hash: Option<String>,
    /// SMART App Launch 2.2 `associated_endpoints`, published as given.
    pub associated_endpoints: Vec<AssociatedEndpoint>,
    /// The one User-access Brand (SMART App Launch 2.2) this server publishes, if any.
    pub user_access_brand: Option<UserAccessBrand>,
}

/// What the User-access Brands Bundle says of this server besides its `server_name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAccessBrand {
    /// The brand's primary web presence (`https://example.org`): its identifier (system
    /// `urn:ietf:rfc:3986`) and website.
    pub website: String,
    /// The brand's logo (`brandLogo`).
    pub logo_uri: String,
    /// Where users log in to the patient portal (`portalUrl`).
    pub portal_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IntrospectionStyle {
    #[default]
    Rfc7662,
    SmileCdr,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            server_name: "smart-edge".to_owned(),
            ehr_origins: Vec::new(),
            introspection_style: IntrospectionStyle::Rfc7662,
            refresh_grace_secs: crate::grants::REFRESH_GRACE_SECS,
            open_registration: false,
            registration_token_hash: None,
            associated_endpoints: Vec::new(),
            user_access_brand: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("the settings document is larger than {MAX_SETTINGS_BYTES} bytes")]
    TooLarge,
    #[error("the settings document is not valid: {0}")]
    Invalid(String),
    #[error("server_name must be 1 to 100 characters without control characters")]
    BadName,
    #[error("ehr_origins must hold origins like https://ehr.example.org (no path): {0}")]
    BadOrigin(String),
    #[error("refresh_grace_secs must be 0 to 300")]
    BadGrace,
    #[error("registration_token_hash must be \"sha256:\" and the base64url SHA-256 of the token (43 characters)")]
    BadTokenHash,
    #[error("{0} must be an absolute https URL")]
    BadUrl(String),
    #[error("associated_endpoints: each needs an https url and at least one capability")]
    BadAssociatedEndpoint,
}

impl ServerSettings {
    /// Parses and checks a settings document sent by an administrator.
    pub fn parse(body: &str) -> Result<Self, SettingsError> {
        if body.len() > MAX_SETTINGS_BYTES {
            return Err(SettingsError::TooLarge);
        }
        let invalid = |e: serde_json::Error| SettingsError::Invalid(e.to_string());
        let value: serde_json::Value = serde_json::from_str(body).map_err(invalid)?;
        if !value.is_object() {
            return Err(SettingsError::Invalid("expected a JSON object".into()));
        }
        let settings: Self = serde_json::from_value(value).map_err(invalid)?;
        let name_len = settings.server_name.chars().count();
        if !(1..=100).contains(&name_len) || settings.server_name.chars().any(char::is_control) {
            return Err(SettingsError::BadName);
        }
        if !(0..=300).contains(&settings.refresh_grace_secs) {
            return Err(SettingsError::BadGrace);
        }
        for origin in &settings.ehr_origins {
            if !is_origin(origin) {
                return Err(SettingsError::BadOrigin(origin.clone()));
            }
        }
        if let Some(hash) = &settings.registration_token_hash {
            let digest = hash.strip_prefix("sha256:").unwrap_or_default();
            if digest.len() != 43 || !digest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(SettingsError::BadTokenHash);
            }
        }
        for endpoint in &settings.associated_endpoints {
            let capabilities_ok = !endpoint.capabilities.is_empty() && endpoint.capabilities.iter().all(|c| !c.is_empty() && !c.contains(char::is_whitespace));
            if !is_https(&endpoint.url) || !capabilities_ok {
                return Err(SettingsError::BadAssociatedEndpoint);
            }
        }
        if let Some(brand) = &settings.user_access_brand {
            for (name, url) in [
                ("user_access_brand.website", &brand.website),
                ("user_access_brand.logo_uri", &brand.logo_uri),
                ("user_access_brand.portal_url", &brand.portal_url),
            ] {
                if !is_https(url) {
                    return Err(SettingsError::BadUrl(name.to_owned()));
                }
            }
        }
        Ok(settings)
    }
}

/// `scheme://host[:port]` exactly, as a browser serialises an origin.
fn is_origin(value: &str) -> bool {
    Url::parse(value).is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.origin().ascii_serialization() == value)
}

fn is_https(value: &str) -> bool {
    Url::parse(value).is_ok_and(|url| url.scheme() == "https" && url.host_str().is_some() && url.fragment().is_none())
}

/// The stored settings, or the defaults when none were saved.
pub async fn load(kv: &dyn KvStore) -> Result<ServerSettings, StoreError> {
    Ok(crate::ports::load_json(kv, SETTINGS_KEY).await?.unwrap_or_default())
}

pub async fn save(kv: &dyn KvStore, settings: &ServerSettings) -> Result<(), StoreError> {
    crate::ports::save_json(kv, SETTINGS_KEY, settings).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryKv;
    use futures::executor::block_on;

    #[test]
    fn defaults_until_saved_then_the_saved_value() {
        let kv = MemoryKv::default();
        assert_eq!(block_on(load(&kv)).unwrap(), ServerSettings::default());
        let settings = ServerSettings::parse(r#"{"server_name":"Demo EHR","ehr_origins":["http://127.0.0.1:8787"]}"#).unwrap();
        block_on(save(&kv, &settings)).unwrap();
        assert_eq!(block_on(load(&kv)).unwrap(), settings);
    }

    #[test]
    fn missing_fields_take_their_defaults() {
        let settings = ServerSettings::parse(r#"{"ehr_origins":[]}"#).unwrap();
        assert_eq!(settings.server_name, "smart-edge");
    }

    #[test]
    fn refuses_bad_documents() {
        assert!(matches!(ServerSettings::parse("[]"), Err(SettingsError::Invalid(_))));
        assert!(matches!(ServerSettings::parse(r#"{"unknown":1}"#), Err(SettingsError::Invalid(_))));
        assert_eq!(ServerSettings::parse(r#"{"server_name":""}"#), Err(SettingsError::BadName));
        assert_eq!(ServerSettings::parse(r#"{"server_name":"a\nb"}"#), Err(SettingsError::BadName));
        for origin in ["https://ehr.example.org/", "https://ehr.example.org/path", "javascript:alert(1)", "ehr"] {
            let body = serde_json::json!({ "ehr_origins": [origin] }).to_string();
            assert_eq!(ServerSettings::parse(&body), Err(SettingsError::BadOrigin(origin.into())), "{origin}");
        }
        let bad_hash = serde_json::json!({ "registration_token_hash": "sha256:short" }).to_string();
        assert_eq!(ServerSettings::parse(&bad_hash), Err(SettingsError::BadTokenHash));
        let good_hash = serde_json::json!({ "registration_token_hash": crate::clients::hash_secret("t") }).to_string();
        assert!(ServerSettings::parse(&good_hash).is_ok());
        let endpoint = serde_json::json!({ "associated_endpoints": [{"url": "http://other.example/fhir", "capabilities": ["launch-ehr"]}] }).to_string();
        assert_eq!(ServerSettings::parse(&endpoint), Err(SettingsError::BadAssociatedEndpoint));
        let endpoint = serde_json::json!({ "associated_endpoints": [{"url": "https://other.example/fhir", "capabilities": []}] }).to_string();
        assert_eq!(ServerSettings::parse(&endpoint), Err(SettingsError::BadAssociatedEndpoint));
        let brand =
            serde_json::json!({ "user_access_brand": {"website": "https://ehr.example", "logo_uri": "javascript:x", "portal_url": "https://portal.example"} });
        assert_eq!(ServerSettings::parse(&brand.to_string()), Err(SettingsError::BadUrl("user_access_brand.logo_uri".into())));
        let huge = format!(r#"{{"server_name":"{}"}}"#, "a".repeat(MAX_SETTINGS_BYTES));
        assert_eq!(ServerSettings::parse(&huge), Err(SettingsError::TooLarge));
    }
}
