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

/// Access token lifetime unless registered otherwise, in seconds.
pub const DEFAULT_ACCESS_LIFETIME: u32 = 3600;
/// Refresh token lifetime unless registered otherwise, in seconds.
pub const DEFAULT_REFRESH_LIFETIME: u32 = 90 * 24 * 3600;

fn default_access_lifetime() -> u32 {
    DEFAULT_ACCESS_LIFETIME
}

fn default_refresh_lifetime() -> u32 {
    DEFAULT_REFRESH_LIFETIME
}

/// The token endpoint authentication methods (RFC 7591 §2 `token_endpoint_auth_method`).
pub const AUTH_METHODS: [&str; 4] = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"];

/// The grant types a client may register (RFC 7591 §2 `grant_types`).
pub const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

/// RFC 7591 §2 metadata kept with a client: what it registered besides what this server acts
/// on (kept to be shown back; the registration's kind is [`ClientType`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grant_types: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_types: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
}

/// A registration as an administrator sends it (or as [`crate::registration`] builds it from
/// an RFC 7591 request). Secrets arrive in clear and are hashed before anything is stored.
///
/// The kind of client is `client_type`, or the RFC 7591 names `token_endpoint_auth_method`
/// and `grant_types` (both may be given when they agree).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistration {
    pub client_id: String,
    pub client_name: String,
    #[serde(default)]
    pub client_type: Option<ClientType>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The scopes the client may be granted (space-separated).
    pub scope: String,
    #[serde(default)]
    pub contacts: Vec<String>,
    #[serde(default)]
    pub logo_uri: Option<String>,
    #[serde(default)]
    pub client_uri: Option<String>,
    #[serde(default)]
    pub policy_uri: Option<String>,
    #[serde(default)]
    pub tos_uri: Option<String>,
    /// RFC 7591's single secret (the admin API's `client_secrets` holds several).
    #[serde(default)]
    pub client_secret: Option<Secret>,
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
    /// A test client: the admin API may make its next call fail on purpose
    /// ([`crate::simulate`]).
    #[serde(default)]
    pub test_client: bool,
}

/// A client registered through RFC 7591: the hash of its registration access token (RFC
/// 7592) and when its `client_id` was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicRegistration {
    /// [`crate::secret::opaque_hash`] of the registration access token.
    pub token_hash: String,
    pub issued_at: i64,
    /// Registered without an initial access token (open registration of a public client).
    #[serde(default)]
    pub open: bool,
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
    /// May have a simulated failure ([`crate::simulate`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test_client: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pub metadata: ClientMetadata,
    /// Present for a client registered through the registration endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<DynamicRegistration>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
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
    pub test_client: bool,
    #[serde(flatten)]
    pub metadata: &'a ClientMetadata,
    /// Registered through the registration endpoint (RFC 7591).
    pub dynamic: bool,
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
    #[error("{0}")]
    BadMetadata(String),
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

    /// The kind of client, from `client_type` or the RFC 7591 names (which must agree when
    /// both are given). RFC 7591 §2 defaults: `client_secret_basic`, `authorization_code`.
    pub fn resolve_type(&self) -> Result<ClientType, ClientError> {
        let bad = |why: String| Err(ClientError::BadMetadata(why));
        if self.token_endpoint_auth_method.is_none() && self.grant_types.is_none() {
            if let Some(client_type) = self.client_type {
                return Ok(client_type);
            }
        }
        let method = match (&self.token_endpoint_auth_method, self.client_type) {
            (Some(method), _) => method.as_str(),
            (None, Some(ClientType::Public)) => "none",
            (None, Some(ClientType::ConfidentialAsymmetric | ClientType::Backend)) => "private_key_jwt",
            (None, _) => "client_secret_basic",
        };
        if !AUTH_METHODS.contains(&method) {
            return bad(format!("token_endpoint_auth_method {method:?} is not supported (none, client_secret_basic, client_secret_post, private_key_jwt)"));
        }
        let grants: Vec<&str> = match (&self.grant_types, self.client_type) {
            (Some(grants), _) => grants.iter().map(String::as_str).collect(),
            (None, Some(ClientType::Backend)) => vec!["client_credentials"],
            (None, _) => vec!["authorization_code"],
        };
        if let Some(unknown) = grants.iter().find(|g| !GRANT_TYPES.contains(g)) {
            return bad(format!("grant type {unknown:?} is not supported (authorization_code, refresh_token, client_credentials)"));
        }
        let code = grants.contains(&"authorization_code");
        let credentials = grants.contains(&"client_credentials");
        let responses: Vec<&str> = match &self.response_types {
            Some(types) => types.iter().map(String::as_str).collect(),
            None if code => vec!["code"],
            None => Vec::new(),
        };
        if responses.iter().any(|r| *r != "code") {
            return bad("the only response type is \"code\"".into());
        }
        if code != responses.contains(&"code") {
            return bad("response_types [\"code\"] goes with the authorization_code grant type, and only with it (RFC 7591 §2.1)".into());
        }
        let client_type = match (code, credentials, method) {
            (true, true, _) => return bad("a client uses authorization_code or client_credentials, not both".into()),
            (false, false, _) => return bad("grant_types must hold authorization_code or client_credentials".into()),
            (false, true, "private_key_jwt") => {
                if grants.contains(&"refresh_token") {
                    return bad("a client_credentials client gets no refresh token".into());
                }
                ClientType::Backend
            }
            (false, true, _) => return bad("a client_credentials client (SMART Backend Services) authenticates with private_key_jwt".into()),
            (true, false, "none") => ClientType::Public,
            (true, false, "private_key_jwt") => ClientType::ConfidentialAsymmetric,
            (true, false, _) => ClientType::ConfidentialSymmetric,
        };
        match self.client_type {
            Some(given) if given != client_type => bad(format!("client_type {given:?} disagrees with token_endpoint_auth_method and grant_types")),
            _ => Ok(client_type),
        }
    }

    /// The metadata to keep: what was sent, with the kind's defaults filled in.
    fn metadata(&self, client_type: ClientType) -> ClientMetadata {
        let method = self.token_endpoint_auth_method.clone().unwrap_or_else(|| {
            match client_type {
                ClientType::Public => "none",
                ClientType::ConfidentialSymmetric => "client_secret_basic",
                ClientType::ConfidentialAsymmetric | ClientType::Backend => "private_key_jwt",
            }
            .to_owned()
        });
        let (grants, responses) = match client_type {
            ClientType::Backend => (vec!["client_credentials".to_owned()], Vec::new()),
            _ => (vec!["authorization_code".to_owned()], vec!["code".to_owned()]),
        };
        ClientMetadata {
            token_endpoint_auth_method: Some(method),
            grant_types: self.grant_types.clone().unwrap_or(grants),
            response_types: self.response_types.clone().unwrap_or(responses),
            contacts: self.contacts.clone(),
            logo_uri: self.logo_uri.clone(),
            client_uri: self.client_uri.clone(),
            policy_uri: self.policy_uri.clone(),
            tos_uri: self.tos_uri.clone(),
        }
    }

    /// Checks the registration and turns it into a stored client.
    pub fn into_client(mut self) -> Result<Client, ClientError> {
        let client_type = self.resolve_type()?;
        if let Some(secret) = self.client_secret.take() {
            self.client_secrets.push(secret);
        }
        for (name, uri) in [("logo_uri", &self.logo_uri), ("client_uri", &self.client_uri), ("policy_uri", &self.policy_uri), ("tos_uri", &self.tos_uri)] {
            if uri.as_deref().is_some_and(|u| is_acceptable_url(u).is_none()) {
                return Err(ClientError::BadMetadata(format!("{name} must be an absolute https URL (http only on loopback)")));
            }
        }
        if self.contacts.len() > 20 || self.contacts.iter().any(|c| !(1..=254).contains(&c.len()) || c.chars().any(char::is_control)) {
            return Err(ClientError::BadMetadata("contacts must be at most 20 addresses of 1 to 254 characters".into()));
        }
        let metadata = self.metadata(client_type);
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
        match client_type {
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
        scope_policy::check_registration(&scopes, holder(client_type)).map_err(ClientError::BadScope)?;
        if client_type != ClientType::Backend && self.redirect_uris.is_empty() {
            return Err(ClientError::Inconsistent("an interactive client needs at least one redirect URI"));
        }
        Ok(Client {
            client_id: self.client_id,
            client_name: self.client_name,
            client_type,
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
            test_client: self.test_client,
            metadata,
            registration: None,
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

    /// An administrator's replacement of `existing`: a client registered through RFC 7591
    /// keeps its registration access token and issue time.
    pub fn keeping_registration(mut self, existing: Option<&Client>) -> Client {
        self.registration = existing.and_then(|c| c.registration.clone());
        self
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
                test_client: self.test_client,
                metadata: &self.metadata,
                dynamic: self.registration.is_some(),
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
    fn the_rfc_7591_names_say_the_kind_of_client() {
        let cases = [
            (serde_json::json!({"token_endpoint_auth_method": "none"}), ClientType::Public),
            (serde_json::json!({"token_endpoint_auth_method": "client_secret_post", "client_secret": "s".repeat(40)}), ClientType::ConfidentialSymmetric),
            (
                serde_json::json!({"client_secrets": ["s".repeat(40)], "grant_types": ["authorization_code", "refresh_token"]}),
                ClientType::ConfidentialSymmetric,
            ),
            (serde_json::json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://app.example/jwks"}), ClientType::ConfidentialAsymmetric),
            (
                serde_json::json!({"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"], "jwks_uri": "https://app.example/jwks",
                    "scope": "system/*.rs", "redirect_uris": []}),
                ClientType::Backend,
            ),
        ];
        for (patch, expected) in cases {
            let mut json = public_app();
            json.as_object_mut().unwrap().remove("client_type");
            for (k, v) in patch.as_object().unwrap() {
                json[k] = v.clone();
            }
            let client = registration(json.clone()).unwrap_or_else(|e| panic!("{patch}: {e}"));
            assert_eq!(client.client_type, expected, "{patch}");
        }
        let refusals = [
            serde_json::json!({"client_type": "public", "token_endpoint_auth_method": "client_secret_basic"}),
            serde_json::json!({"token_endpoint_auth_method": "tls_client_auth"}),
            serde_json::json!({"token_endpoint_auth_method": "none", "grant_types": ["implicit"]}),
            serde_json::json!({"token_endpoint_auth_method": "none", "response_types": ["token"]}),
            serde_json::json!({"token_endpoint_auth_method": "none", "grant_types": ["refresh_token"]}),
            serde_json::json!({"token_endpoint_auth_method": "client_secret_basic", "grant_types": ["client_credentials"]}),
            serde_json::json!({"token_endpoint_auth_method": "none", "logo_uri": "http://app.example/logo.png"}),
        ];
        for patch in refusals {
            let mut json = public_app();
            for (k, v) in patch.as_object().unwrap() {
                json[k] = v.clone();
            }
            assert!(matches!(registration(json), Err(ClientError::BadMetadata(_))), "{patch}");
        }
    }

    #[test]
    fn an_admin_replacement_keeps_a_dynamic_registration() {
        let mut registered = registration(public_app()).unwrap();
        registered.registration = Some(DynamicRegistration { token_hash: "h".into(), issued_at: 1, open: true });
        let replaced = registration(public_app()).unwrap().keeping_registration(Some(&registered));
        assert_eq!(replaced.registration, registered.registration);
        assert_eq!(registration(public_app()).unwrap().keeping_registration(None).registration, None);
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
