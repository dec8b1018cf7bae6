//! The client registry: what an app registered (RFC 7591 field names where they exist), how
//! it is validated, and how it is stored in KV (`client:{client_id}`, secrets only as
//! SHA-256 hashes).

use crate::ports::{KvStore, StoreError};
use crate::scope_policy::{self, Holder};
use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smart_protocol::jose::Jwks;
use smart_protocol::scopes::ScopeSet;
use subtle::ConstantTimeEq;
use url::Url;

pub const KEY_PREFIX: &str = "client:";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientType {
    /// A browser or native app without a secret (PKCE only).
    Public,
    /// Authenticates with a client secret (`client_secret_basic` / `client_secret_post`).
    ConfidentialSymmetric,
    /// Authenticates with `private_key_jwt`.
    ConfidentialAsymmetric,
    /// SMART Backend Services: `client_credentials` with `private_key_jwt`, no user.
    Backend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentPolicy {
    /// Ask every time.
    #[default]
    Ask,
    /// Ask once per user; remember what was approved.
    Remember,
    /// Trusted by the organisation: never ask.
    PreApproved,
}

fn default_access_lifetime() -> u32 {
    3600
}

fn default_refresh_lifetime() -> u32 {
    90 * 24 * 3600
}

/// A registration as an administrator sends it. Secrets arrive in clear and are hashed
/// before anything is stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistration {
    pub client_id: String,
    pub client_name: String,
    pub client_type: ClientType,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The scopes the client may be granted (space-separated).
    pub scope: String,
    #[serde(default)]
    pub launch_uri: Option<String>,
    #[serde(default)]
    pub jwks: Option<Jwks>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub client_secrets: Vec<Secret>,
    #[serde(default = "default_access_lifetime")]
    pub access_token_lifetime: u32,
    #[serde(default = "default_refresh_lifetime")]
    pub refresh_token_lifetime: u32,
    #[serde(default)]
    pub consent: ConsentPolicy,
    /// A resource server (e.g. another FHIR API trusting this server's tokens): it may
    /// introspect the tokens of every client. Other clients introspect only their own.
    #[serde(default)]
    pub resource_server: bool,
}

/// A stored client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub client_name: String,
    pub client_type: ClientType,
    pub redirect_uris: Vec<String>,
    pub scope: String,
    pub launch_uri: Option<String>,
    pub jwks: Option<Jwks>,
    pub jwks_uri: Option<String>,
    /// `sha256:<base64url>` of each accepted secret (several during a rotation).
    pub secret_hashes: Vec<String>,
    pub access_token_lifetime: u32,
    pub refresh_token_lifetime: u32,
    pub consent: ConsentPolicy,
    #[serde(default)]
    pub resource_server: bool,
}

/// What the admin API shows of a client: everything but the secret hashes.
#[derive(Debug, Clone, Serialize)]
pub struct ClientView<'a> {
    #[serde(flatten)]
    pub client: ClientPublic<'a>,
    pub secret_count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientPublic<'a> {
    pub client_id: &'a str,
    pub client_name: &'a str,
    pub client_type: ClientType,
    pub redirect_uris: &'a [String],
    pub scope: &'a str,
    pub launch_uri: Option<&'a str>,
    pub jwks: Option<&'a Jwks>,
    pub jwks_uri: Option<&'a str>,
    pub access_token_lifetime: u32,
    pub refresh_token_lifetime: u32,
    pub consent: ConsentPolicy,
    pub resource_server: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("not a valid client registration: {0}")]
    Invalid(String),
    #[error("client_id must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -")]
    BadId,
    #[error("client_name must be 1 to 200 characters")]
    BadName,
    #[error("redirect URI {0:?} must be an absolute https URL (http only on loopback) without fragment")]
    BadRedirectUri(String),
    #[error("{0}")]
    Inconsistent(&'static str),
    #[error("scope is not valid: {0}")]
    BadScope(String),
    #[error("{0} must be an absolute https URL (http only on loopback)")]
    BadUrl(&'static str),
    #[error("client secrets must be 32 to 512 characters")]
    WeakSecret,
    #[error("token lifetimes out of range (access 60..=86400 s, refresh 0..=31536000 s)")]
    BadLifetime,
}

/// https, or http on a loopback host (RFC 8252 §7.3).
fn is_acceptable_url(value: &str) -> Option<Url> {
    let url = Url::parse(value).ok()?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let ok = url.fragment().is_none() && (url.scheme() == "https" || (url.scheme() == "http" && loopback));
    ok.then_some(url)
}

/// SHA-256 of a client secret, as stored. Client secrets are long random strings, so a fast
/// hash is enough (unlike passwords, which get PBKDF2).
pub fn hash_secret(secret: &str) -> String {
    format!("sha256:{}", B64URL.encode(Sha256::digest(secret.as_bytes())))
}

impl ClientRegistration {
    pub fn parse(body: &str) -> Result<Self, ClientError> {
        serde_json::from_str(body).map_err(|e| ClientError::Invalid(e.to_string()))
    }

    /// Checks the registration and turns it into a stored client.
    pub fn into_client(self) -> Result<Client, ClientError> {
        let id_ok = (1..=128).contains(&self.client_id.len()) && self.client_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
        if !id_ok {
            return Err(ClientError::BadId);
        }
        if !(1..=200).contains(&self.client_name.chars().count()) || self.client_name.chars().any(char::is_control) {
            return Err(ClientError::BadName);
        }
        for uri in &self.redirect_uris {
            if is_acceptable_url(uri).is_none() {
                return Err(ClientError::BadRedirectUri(uri.clone()));
            }
        }
        let scopes = ScopeSet::parse(&self.scope).map_err(|e| ClientError::BadScope(e.to_string()))?;
        if let Some(uri) = &self.launch_uri {
            is_acceptable_url(uri).ok_or(ClientError::BadUrl("launch_uri"))?;
        }
        if let Some(uri) = &self.jwks_uri {
            is_acceptable_url(uri).ok_or(ClientError::BadUrl("jwks_uri"))?;
        }
        if let Some(jwks) = &self.jwks {
            for key in &jwks.keys {
                key.validate_public().map_err(|e| ClientError::Invalid(format!("jwks: {e}")))?;
                if key.is_private() {
                    return Err(ClientError::Inconsistent("jwks must hold public keys only"));
                }
            }
        }
        if self.client_secrets.iter().any(|s| !(32..=512).contains(&s.expose().len())) {
            return Err(ClientError::WeakSecret);
        }
        if !(60..=86_400).contains(&self.access_token_lifetime) || self.refresh_token_lifetime > 31_536_000 {
            return Err(ClientError::BadLifetime);
        }
        let has_keys = self.jwks.is_some() || self.jwks_uri.is_some();
        let has_secret = !self.client_secrets.is_empty();
        match self.client_type {
            ClientType::Public if has_secret || has_keys => return Err(ClientError::Inconsistent("a public client has no secret and no keys")),
            ClientType::ConfidentialSymmetric if !has_secret => return Err(ClientError::Inconsistent("a confidential-symmetric client needs client_secrets")),
            ClientType::ConfidentialAsymmetric | ClientType::Backend if !has_keys || has_secret => {
                return Err(ClientError::Inconsistent("an asymmetric or backend client needs jwks or jwks_uri and no secret"))
            }
            _ => {}
        }
        if self.jwks.is_some() && self.jwks_uri.is_some() {
            return Err(ClientError::Inconsistent("give jwks or jwks_uri, not both"));
        }
        scope_policy::check_registration(&scopes, holder(self.client_type)).map_err(ClientError::BadScope)?;
        if self.client_type != ClientType::Backend && self.redirect_uris.is_empty() {
            return Err(ClientError::Inconsistent("an interactive client needs at least one redirect URI"));
        }
        Ok(Client {
            client_id: self.client_id,
            client_name: self.client_name,
            client_type: self.client_type,
            redirect_uris: self.redirect_uris,
            scope: scopes.to_string(),
            launch_uri: self.launch_uri,
            jwks: self.jwks,
            jwks_uri: self.jwks_uri,
            secret_hashes: self.client_secrets.iter().map(|s| hash_secret(s.expose())).collect(),
            access_token_lifetime: self.access_token_lifetime,
            refresh_token_lifetime: self.refresh_token_lifetime,
            consent: self.consent,
            resource_server: self.resource_server,
        })
    }
}

/// Which scopes a client of this type may hold (see [`scope_policy`]).
pub fn holder(client_type: ClientType) -> Holder {
    match client_type {
        ClientType::Backend => Holder::Backend,
        _ => Holder::Interactive,
    }
}

impl Client {
    /// The scopes this client may be granted.
    pub fn allowed_scopes(&self) -> ScopeSet {
        // Validated at registration; an unreadable stored value grants nothing, and a stored
        // scope a newer rule refuses is dropped.
        scope_policy::holdable_only(&ScopeSet::parse(&self.scope).unwrap_or_default(), holder(self.client_type))
    }

    /// Exact string comparison (RFC 6749 §3.1.2.3 as tightened by RFC 9700 §4.1.3).
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// Constant-time check of a presented secret against every stored hash.
    pub fn secret_matches(&self, presented: &str) -> bool {
        let presented = hash_secret(presented);
        self.secret_hashes.iter().fold(false, |found, stored| found | bool::from(stored.as_bytes().ct_eq(presented.as_bytes())))
    }

    pub fn view(&self) -> ClientView<'_> {
        ClientView {
            client: ClientPublic {
                client_id: &self.client_id,
                client_name: &self.client_name,
                client_type: self.client_type,
                redirect_uris: &self.redirect_uris,
                scope: &self.scope,
                launch_uri: self.launch_uri.as_deref(),
                jwks: self.jwks.as_ref(),
                jwks_uri: self.jwks_uri.as_deref(),
                access_token_lifetime: self.access_token_lifetime,
                refresh_token_lifetime: self.refresh_token_lifetime,
                consent: self.consent,
                resource_server: self.resource_server,
            },
            secret_count: self.secret_hashes.len(),
        }
    }
}

pub async fn load(kv: &dyn KvStore, client_id: &str) -> Result<Option<Client>, StoreError> {
    crate::ports::load_json(kv, &format!("{KEY_PREFIX}{client_id}")).await
}

pub async fn save(kv: &dyn KvStore, client: &Client) -> Result<(), StoreError> {
    crate::ports::save_json(kv, &format!("{KEY_PREFIX}{}", client.client_id), client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_never_prints_its_secrets() {
        let json = serde_json::json!({"client_id": "w", "client_name": "W", "client_type": "confidential-symmetric",
            "redirect_uris": ["https://w.example/cb"], "scope": "openid", "client_secrets": ["q".repeat(40)]});
        let registration = ClientRegistration::parse(&json.to_string()).unwrap();
        assert!(!format!("{registration:?}").contains(&"q".repeat(40)));
        assert!(registration.into_client().unwrap().secret_matches(&"q".repeat(40)));
    }

    fn registration(json: serde_json::Value) -> Result<Client, ClientError> {
        ClientRegistration::parse(&json.to_string())?.into_client()
    }

    fn public_app() -> serde_json::Value {
        serde_json::json!({
            "client_id": "lab-viewer", "client_name": "Lab Viewer", "client_type": "public",
            "redirect_uris": ["https://app.example/callback", "http://127.0.0.1:8787/lab-viewer/"],
            "scope": "launch openid fhirUser patient/*.rs"
        })
    }

    #[test]
    fn a_public_client_registers_with_defaults() {
        let client = registration(public_app()).unwrap();
        assert_eq!(client.access_token_lifetime, 3600);
        assert_eq!(client.consent, ConsentPolicy::Ask);
        assert!(client.has_redirect_uri("https://app.example/callback"));
        assert!(!client.has_redirect_uri("https://app.example/callback/"));
        assert!(!client.has_redirect_uri("https://APP.example/callback"));
    }

    #[test]
    fn secrets_are_stored_hashed_and_compared() {
        let mut json = public_app();
        json["client_type"] = "confidential-symmetric".into();
        json["client_secrets"] = serde_json::json!(["s".repeat(40), "t".repeat(40)]);
        let client = registration(json).unwrap();
        let stored = serde_json::to_string(&client).unwrap();
        assert!(!stored.contains(&"s".repeat(40)));
        assert!(client.secret_matches(&"s".repeat(40)));
        assert!(client.secret_matches(&"t".repeat(40)));
        assert!(!client.secret_matches(&"u".repeat(40)));
        let view = serde_json::to_value(client.view()).unwrap();
        assert_eq!(view["secret_count"], 2);
        assert!(view.get("secret_hashes").is_none());
    }

    #[test]
    fn refuses_inconsistent_registrations() {
        type Expect = fn(&ClientError) -> bool;
        let cases: Vec<(serde_json::Value, Expect)> = vec![
            (serde_json::json!({"client_id": "bad id"}), |e| matches!(e, ClientError::BadId)),
            (serde_json::json!({"redirect_uris": ["http://app.example/cb"]}), |e| matches!(e, ClientError::BadRedirectUri(_))),
            (serde_json::json!({"redirect_uris": ["https://app.example/cb#frag"]}), |e| matches!(e, ClientError::BadRedirectUri(_))),
            (serde_json::json!({"redirect_uris": []}), |e| matches!(e, ClientError::Inconsistent(_))),
            (serde_json::json!({"client_secrets": ["x".repeat(40)]}), |e| matches!(e, ClientError::Inconsistent(_))),
            (serde_json::json!({"client_type": "confidential-symmetric"}), |e| matches!(e, ClientError::Inconsistent(_))),
            (serde_json::json!({"client_type": "confidential-symmetric", "client_secrets": ["short"]}), |e| matches!(e, ClientError::WeakSecret)),
            (serde_json::json!({"client_type": "backend", "jwks_uri": "https://app.example/jwks"}), |e| matches!(e, ClientError::BadScope(_))),
            (serde_json::json!({"scope": "patient/Observation.sr"}), |e| matches!(e, ClientError::BadScope(_))),
            (serde_json::json!({"scope": "patient/Observation.rs?category=laboratory&foo=bar"}), |e| matches!(e, ClientError::BadScope(_))),
            (serde_json::json!({"scope": "openid system/*.rs"}), |e| matches!(e, ClientError::BadScope(_))),
            (serde_json::json!({"access_token_lifetime": 10}), |e| matches!(e, ClientError::BadLifetime)),
            (serde_json::json!({"surprise": 1}), |e| matches!(e, ClientError::Invalid(_))),
        ];
        for (patch, expected) in cases {
            let mut json = public_app();
            for (k, v) in patch.as_object().unwrap() {
                json[k] = v.clone();
            }
            let err = registration(json.clone()).unwrap_err();
            assert!(expected(&err), "{patch} gave {err:?}");
        }
    }

    #[test]
    fn a_backend_client_holds_system_scopes_and_keys() {
        let json = serde_json::json!({
            "client_id": "bulk-export", "client_name": "Bulk", "client_type": "backend",
            "scope": "system/*.rs", "jwks_uri": "https://backend.example/jwks.json"
        });
        assert!(registration(json).is_ok());
    }

    #[test]
    fn stored_scopes_a_newer_rule_refuses_are_not_allowed() {
        let mut client = registration(public_app()).unwrap();
        client.scope = "openid system/*.rs patient/Observation.rs?foo=bar patient/Observation.rs?category=laboratory".into();
        assert_eq!(client.allowed_scopes().to_string(), "openid patient/Observation.rs?category=laboratory");
        assert!(!client.resource_server, "off unless registered");
    }
}
