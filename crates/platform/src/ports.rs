//! The ports the use cases need. Each has a Workers adapter in `worker/src/adapters` and an
//! in-memory one in [`crate::memory`].

use async_trait::async_trait;
use smart_protocol::jose::{Jwk, Jwks, JwsAlgorithm};

/// A storage backend failed or held something unreadable. The detail is for the log only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage failure: {0}")]
pub struct StoreError(pub String);

/// A cryptographic operation failed (key import, generation or signature).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("crypto failure: {0}")]
pub struct CryptoError(pub String);

/// Read-mostly configuration (Workers KV in production): eventually consistent, so never used
/// for anything that must be atomic or single-use.
#[async_trait(?Send)]
pub trait KvStore {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn put(&self, key: &str, value: &str) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// The version of the JSON records in KV (settings, clients, users, simulations): each record
/// carries it as a top-level `record_version` field. Version 0 is the form before versioning
/// (no field, the same shape otherwise). Raise it with a change of a record's shape, and add
/// the conversion to [`upgrade_record`].
pub const RECORD_VERSION: u64 = 1;
pub const RECORD_VERSION_FIELD: &str = "record_version";

/// `value` as the JSON stored in KV: its fields plus `record_version`.
pub fn encode_record<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    let mut json = serde_json::to_value(value).map_err(|e| StoreError(e.to_string()))?;
    let Some(fields) = json.as_object_mut() else { return Err(StoreError("a KV record must be a JSON object".into())) };
    fields.insert(RECORD_VERSION_FIELD.into(), RECORD_VERSION.into());
    serde_json::to_string(&json).map_err(|e| StoreError(e.to_string()))
}

/// Brings the fields of a record written at `from` to [`RECORD_VERSION`]'s shape.
fn upgrade_record(fields: serde_json::Map<String, serde_json::Value>, from: u64) -> serde_json::Map<String, serde_json::Value> {
    // 0 → 1 added only the version field itself.
    let _ = from;
    fields
}

/// Decodes a KV record (`key` names it in errors): the value, and the record's JSON in the
/// current form when it was stored in an older one (to write back). A record of a newer
/// version is refused rather than misread.
pub fn decode_record<T: serde::de::DeserializeOwned + serde::Serialize>(key: &str, json: &str) -> Result<(T, Option<String>), StoreError> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| StoreError(format!("{key}: {e}")))?;
    let serde_json::Value::Object(mut fields) = value else { return Err(StoreError(format!("{key}: not a JSON object"))) };
    let version = match fields.remove(RECORD_VERSION_FIELD) {
        None => 0,
        Some(v) => v.as_u64().ok_or_else(|| StoreError(format!("{key}: {RECORD_VERSION_FIELD} is not a number")))?,
    };
    if version > RECORD_VERSION {
        return Err(StoreError(format!("{key}: record version {version} was written by a newer release (this one reads up to {RECORD_VERSION})")));
    }
    let fields = upgrade_record(fields, version);
    let record: T = serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| StoreError(format!("{key}: {e}")))?;
    let rewrite = if version < RECORD_VERSION { Some(encode_record(&record)?) } else { None };
    Ok((record, rewrite))
}

/// Reads a JSON record stored under `key` (`None` when absent; unreadable JSON is a store
/// error). A record in an older form is upgraded, and written back in the current form (best
/// effort: a failed write-back leaves the old form, read the same way next time).
pub async fn load_json<T: serde::de::DeserializeOwned + serde::Serialize>(kv: &dyn KvStore, key: &str) -> Result<Option<T>, StoreError> {
    match kv.get(key).await? {
        None => Ok(None),
        Some(json) => {
            let (record, rewrite) = decode_record::<T>(key, &json)?;
            if let Some(current) = rewrite {
                let _ = kv.put(key, &current).await;
            }
            Ok(Some(record))
        }
    }
}

/// Stores `value` under `key`, as [`encode_record`] writes it.
pub async fn save_json<T: serde::Serialize>(kv: &dyn KvStore, key: &str, value: &T) -> Result<(), StoreError> {
    kv.put(key, &encode_record(value)?).await
}

/// One signing key as the key vault stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    /// The private JWK, with `kid` and `alg` set.
    pub jwk: Jwk,
    /// Unix seconds when the key was made.
    pub created_at: i64,
    /// Unix seconds from which the key may sign; before that it is only published, so every
    /// cached JWKS knows it before the first token signed with it arrives.
    pub activates_at: i64,
}

/// Where signing keys live (a SQLite-backed Durable Object in production, so that exactly one
/// set is ever generated).
#[async_trait(?Send)]
pub trait KeyStore {
    async fn load(&self) -> Result<Vec<KeyRecord>, StoreError>;
    async fn add(&self, record: &KeyRecord) -> Result<(), StoreError>;
}

/// Makes a new private key (WebCrypto `generateKey` in production).
#[async_trait(?Send)]
pub trait KeyGenerator {
    async fn generate(&self, alg: JwsAlgorithm) -> Result<Jwk, CryptoError>;
}

/// Signs bytes with one of the key ring's private keys (WebCrypto `sign` in production, keys
/// imported once per isolate).
#[async_trait(?Send)]
pub trait Signer {
    async fn sign(&self, key: &Jwk, data: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// PBKDF2-HMAC-SHA256 (WebCrypto `deriveBits` in production).
#[async_trait(?Send)]
pub trait PasswordHasher {
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; 32], CryptoError>;
}

/// Cryptographically secure randomness (`crypto.getRandomValues` in production).
pub trait Random {
    fn fill(&self, bytes: &mut [u8]) -> Result<(), CryptoError>;
}

/// Verifies a signature with a public key (WebCrypto `verify` in production).
#[async_trait(?Send)]
pub trait Verifier {
    async fn verify(&self, key: &Jwk, data: &[u8], signature: &[u8]) -> Result<bool, CryptoError>;
}

/// The time, in Unix seconds (`Date.now()` in the Worker; a settable clock in tests).
pub trait Clock {
    fn now(&self) -> i64;
}

/// The authorization grants: one strictly ordered record per grant id, changed only by
/// [`crate::grants::apply`] (a `Grant` Durable Object per id in production). The inner
/// `Result` is the state machine's refusal; the outer one a storage failure.
#[async_trait(?Send)]
pub trait GrantStore {
    /// Applies `command` to grant `id` atomically (a malformed id answers `NotFound`).
    async fn apply(&self, id: &str, command: &crate::grants::Command) -> Result<Result<crate::grants::Reply, crate::grants::GrantError>, StoreError>;
    /// A fresh grant id no grant has yet (64 hex digits).
    fn new_id(&self) -> Result<String, StoreError>;
    /// A fresh id for a backend service token's grant, stored with `client_id`'s other backend
    /// grants ([`crate::grant_handle::is_backend_grant_id`]).
    fn new_backend_id(&self, client_id: &str) -> Result<String, StoreError>;
}

/// The registered clients (KV, cached per isolate, in production).
#[async_trait(?Send)]
pub trait ClientRegistry {
    async fn client(&self, client_id: &str) -> Result<Option<crate::clients::Client>, StoreError>;
    /// Every registered client (the EHR portal's apps).
    async fn all(&self) -> Result<Vec<crate::clients::Client>, StoreError>;
}

/// Writes to the client registry (the registration endpoint's; KV in production, with the
/// isolate's cache kept in step).
#[async_trait(?Send)]
pub trait ClientStore {
    async fn save(&self, client: &crate::clients::Client) -> Result<(), StoreError>;
    async fn delete(&self, client_id: &str) -> Result<(), StoreError>;
}

/// A client's keys could not be had (its JWKS URL failed, or it registered none). The text
/// is part of the `invalid_client` description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeysUnavailable(pub String);

/// A `private_key_jwt` client's public keys: its inline JWKS, or its JWKS URL (fetched and
/// cached per isolate in production).
#[async_trait(?Send)]
pub trait ClientKeys {
    /// `refetch`: an assertion names a `kid` the keys at hand lack; fetch the URL again if
    /// the cache allows it (the client may have rotated).
    async fn keys(&self, client: &crate::clients::Client, refetch: bool) -> Result<Jwks, KeysUnavailable>;
}

/// The `jti`s of `private_key_jwt` assertions, per client, while their assertions live (an
/// `AssertionLog` Durable Object per client in production: replay is seen everywhere).
#[async_trait(?Send)]
pub trait AssertionLog {
    /// Records `jti` until `exp`; `false` when it was already used (a replay).
    async fn record(&self, client_id: &str, jti: &str, exp: i64) -> Result<bool, StoreError>;

    /// A backend token's two writes as one step: records `jti` and, when it is new, applies
    /// `start` to the client's backend grant `grant_id`. `None` for a replay (nothing started).
    /// By default two calls; the Worker's adapter makes it one round trip to the client's
    /// object, which keeps both the `jti`s and the backend grants.
    async fn record_and_start(
        &self,
        grants: &dyn GrantStore,
        client_id: &str,
        jti: &str,
        exp: i64,
        grant_id: &str,
        start: &crate::grants::Command,
    ) -> Result<Option<Result<crate::grants::Reply, crate::grants::GrantError>>, StoreError> {
        if !self.record(client_id, jti, exp).await? {
            return Ok(None);
        }
        Ok(Some(grants.apply(grant_id, start).await?))
    }
}

/// A password attempt as an account's record judges it (throttling included).
#[derive(Clone)]
pub struct LoginAttempt {
    pub username: String,
    /// `None` when no such user exists: the same work and throttling, in a record shared by
    /// unknown names ([`crate::accounts::unknown_user_shard`]), so that trying names creates
    /// no record per name.
    pub user: Option<crate::users::User>,
    pub password: crate::secret::Secret,
    pub source: crate::accounts::LoginSource,
}

impl std::fmt::Debug for LoginAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAttempt").field("username", &self.username).field("password", &self.password).field("source", &self.source).finish()
    }
}

/// Per-user state, strictly ordered (an `Account` Durable Object per username in production):
/// failed-login throttling and login sessions ([`crate::accounts::AccountState`]), remembered
/// consents, and the list of grants the management page shows.
#[async_trait(?Send)]
pub trait Accounts {
    /// Checks a password attempt; on success a new session is open.
    async fn login(&self, attempt: &LoginAttempt) -> Result<crate::accounts::LoginOutcome, StoreError>;
    /// The session's `auth_time` when the handle (the cookie, secret included) is valid.
    async fn check_session(&self, handle: &crate::accounts::SessionHandle) -> Result<Option<i64>, StoreError>;
    /// Ends the session the handle names.
    async fn end_session(&self, handle: &crate::accounts::SessionHandle) -> Result<(), StoreError>;
    /// Whether the user's login session `session_id` still exists.
    async fn session_alive(&self, username: &str, session_id: &str) -> Result<bool, StoreError>;
    /// Whether a consent the user remembered for `client_id` covers every scope in `scope`.
    async fn consent_covers(&self, username: &str, client_id: &str, scope: &str) -> Result<bool, StoreError>;
    /// Remembers the user's consent to `scope` for `client_id` (replacing an earlier one).
    async fn remember_consent(&self, username: &str, client_id: &str, scope: &str) -> Result<(), StoreError>;
    /// Adds a grant to the user's list.
    async fn add_grant(&self, username: &str, entry: &crate::accounts::GrantEntry) -> Result<(), StoreError>;
    /// The user's grants, oldest first.
    async fn list_grants(&self, username: &str) -> Result<Vec<crate::accounts::GrantEntry>, StoreError>;
    /// Removes a grant from the user's list; `false` when it was not on it.
    async fn remove_grant(&self, username: &str, grant_id: &str) -> Result<bool, StoreError>;
}

/// The server's signing keys (from a secret or the key vault, cached per isolate, in
/// production).
#[async_trait(?Send)]
pub trait SigningKeys {
    async fn key_ring(&self) -> Result<std::rc::Rc<crate::keys::KeyRing>, StoreError>;
}

/// The server settings an administrator set (KV, cached per isolate, in production).
#[async_trait(?Send)]
pub trait Settings {
    async fn settings(&self) -> Result<crate::settings::ServerSettings, StoreError>;
}

/// The users who sign in (KV in production; read at login and for userinfo, not cached).
#[async_trait(?Send)]
pub trait Users {
    async fn user(&self, username: &str) -> Result<Option<crate::users::User>, StoreError>;
}

/// The token endpoint's rate limit per client (the edge's rate-limiting binding in the Worker).
#[async_trait(?Send)]
pub trait ClientLimits {
    /// `Some(retry_after_secs)` when `client_id` is over its limit (this call counts).
    async fn over_limit(&self, client_id: &str) -> Result<Option<u32>, StoreError>;
}

/// No limit (native tests, and a Worker without the binding).
pub struct NoClientLimits;

#[async_trait(?Send)]
impl ClientLimits for NoClientLimits {
    async fn over_limit(&self, _client_id: &str) -> Result<Option<u32>, StoreError> {
        Ok(None)
    }
}
