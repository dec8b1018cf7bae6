//! Users of the login page: stored in KV (`user:{username}`), passwords as
//! PBKDF2-HMAC-SHA256 with a per-user salt.
//!
//! Iterations: [`PBKDF2_ITERATIONS`] = 100,000, the most WebCrypto in workerd accepts (it
//! refuses more). Its CPU cost per login is recorded in BENCHMARKS.md.

use crate::ports::{CryptoError, KvStore, PasswordHasher, Random, StoreError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

pub const KEY_PREFIX: &str = "user:";
pub const PBKDF2_ITERATIONS: u32 = 100_000;

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub display_name: String,
    /// `Practitioner/…`, `Patient/…`, `RelatedPerson/…` or `Person/…`, relative to the FHIR base.
    pub fhir_user: String,
    /// `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64url).
    pub password_hash: String,
}

/// A user as an administrator sends it (password in clear, hashed before storage; `Debug`
/// prints it as `[redacted]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRegistration {
    pub username: String,
    pub display_name: String,
    pub fhir_user: String,
    pub password: String,
}

impl std::fmt::Debug for UserRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRegistration")
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .field("fhir_user", &self.fhir_user)
            .field("password", &crate::secret::Redacted)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("not a valid user: {0}")]
    Invalid(String),
    #[error("username must be 1 to 64 characters of a-z A-Z 0-9 . _ @ -")]
    BadUsername,
    #[error("display_name must be 1 to 200 characters")]
    BadName,
    #[error("fhir_user must be Practitioner/<id>, Patient/<id>, RelatedPerson/<id> or Person/<id>")]
    BadFhirUser,
    #[error("password must be 8 to 1024 characters")]
    BadPassword,
}

/// The kinds of FHIR resource a user can be (SMART `fhirUser`).
const FHIR_USER_TYPES: [&str; 4] = ["Practitioner", "Patient", "RelatedPerson", "Person"];

/// A FHIR id (R4 §2.1.28.0.1 `[A-Za-z0-9\-\.]{1,64}`).
pub fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

pub fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

impl UserRegistration {
    pub fn parse(body: &str) -> Result<Self, UserError> {
        serde_json::from_str(body).map_err(|e| UserError::Invalid(e.to_string()))
    }

    pub async fn into_user(self, hasher: &dyn PasswordHasher, random: &dyn Random) -> Result<User, RegistrationError> {
        if !valid_username(&self.username) {
            return Err(UserError::BadUsername.into());
        }
        if !(1..=200).contains(&self.display_name.chars().count()) || self.display_name.chars().any(char::is_control) {
            return Err(UserError::BadName.into());
        }
        let fhir_user_ok = self.fhir_user.split_once('/').is_some_and(|(t, id)| FHIR_USER_TYPES.contains(&t) && is_fhir_id(id));
        if !fhir_user_ok {
            return Err(UserError::BadFhirUser.into());
        }
        if !(8..=1024).contains(&self.password.chars().count()) {
            return Err(UserError::BadPassword.into());
        }
        let password_hash = hash_password(&self.password, hasher, random).await?;
        Ok(User { username: self.username, display_name: self.display_name, fhir_user: self.fhir_user, password_hash })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(transparent)]
    Invalid(#[from] UserError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

pub async fn hash_password(password: &str, hasher: &dyn PasswordHasher, random: &dyn Random) -> Result<String, CryptoError> {
    let mut salt = [0u8; 16];
    random.fill(&mut salt)?;
    let hash = hasher.pbkdf2_sha256(password.as_bytes(), &salt, PBKDF2_ITERATIONS).await?;
    Ok(format!("pbkdf2-sha256${PBKDF2_ITERATIONS}${}${}", B64URL.encode(salt), B64URL.encode(hash)))
}

/// Checks a password against a stored hash in constant time. An unreadable stored hash never
/// matches.
pub async fn verify_password(password: &str, stored: &str, hasher: &dyn PasswordHasher) -> Result<bool, CryptoError> {
    let parts: Vec<&str> = stored.split('$').collect();
    let [scheme, iterations, salt, hash] = parts.as_slice() else { return Ok(false) };
    let (Ok(iterations), Ok(salt), Ok(expected)) = (iterations.parse::<u32>(), B64URL.decode(salt), B64URL.decode(hash)) else {
        return Ok(false);
    };
    if *scheme != "pbkdf2-sha256" || iterations == 0 || iterations > PBKDF2_ITERATIONS {
        return Ok(false);
    }
    let actual = hasher.pbkdf2_sha256(password.as_bytes(), &salt, iterations).await?;
    Ok(bool::from(actual.as_slice().ct_eq(expected.as_slice())))
}

/// Burns the same work as a real check, so an unknown username answers as slowly as a wrong
/// password.
pub async fn dummy_verify(password: &str, hasher: &dyn PasswordHasher) -> Result<(), CryptoError> {
    hasher.pbkdf2_sha256(password.as_bytes(), b"smart-edge-dummy", PBKDF2_ITERATIONS).await.map(|_| ())
}

pub async fn load(kv: &dyn KvStore, username: &str) -> Result<Option<User>, StoreError> {
    if !valid_username(username) {
        return Ok(None);
    }
    crate::ports::load_json(kv, &format!("{KEY_PREFIX}{username}")).await
}

pub async fn save(kv: &dyn KvStore, user: &User) -> Result<(), StoreError> {
    crate::ports::save_json(kv, &format!("{KEY_PREFIX}{}", user.username), user).await
}

impl User {
    /// `Practitioner`, `Patient`, … and the id.
    pub fn fhir_user_parts(&self) -> (&str, &str) {
        self.fhir_user.split_once('/').unwrap_or(("", ""))
    }

    /// The patient id when the user is a patient.
    pub fn patient_id(&self) -> Option<&str> {
        match self.fhir_user_parts() {
            ("Patient", id) => Some(id),
            _ => None,
        }
    }

    /// What the admin API shows: no password hash.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({ "username": self.username, "display_name": self.display_name, "fhir_user": self.fhir_user })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Pbkdf2Hasher, SeededRandom};
    use futures::executor::block_on;

    thread_local! {
        static RANDOM: SeededRandom = SeededRandom::default();
    }

    #[test]
    fn a_registration_never_prints_its_password() {
        let json = serde_json::json!({"username": "u", "display_name": "U", "fhir_user": "Patient/p", "password": "hunter2-hunter2"});
        let text = format!("{:?}", UserRegistration::parse(&json.to_string()).unwrap());
        assert!(text.contains("[redacted]") && !text.contains("hunter2"), "{text}");
    }

    fn register(json: serde_json::Value) -> Result<User, RegistrationError> {
        let registration = UserRegistration::parse(&json.to_string())?;
        RANDOM.with(|random| block_on(registration.into_user(&Pbkdf2Hasher, random)))
    }

    #[test]
    fn stores_a_salted_pbkdf2_hash_that_verifies_only_the_password() {
        let user =
            register(serde_json::json!({"username": "dr.smith", "display_name": "Dr Smith", "fhir_user": "Practitioner/p1", "password": "correct horse"}))
                .unwrap();
        assert!(user.password_hash.starts_with("pbkdf2-sha256$100000$"));
        assert!(!user.password_hash.contains("correct horse"));
        assert!(block_on(verify_password("correct horse", &user.password_hash, &Pbkdf2Hasher)).unwrap());
        assert!(!block_on(verify_password("correct horsE", &user.password_hash, &Pbkdf2Hasher)).unwrap());
        assert!(!block_on(verify_password("x", "garbage", &Pbkdf2Hasher)).unwrap());
        let other = register(serde_json::json!({"username": "b", "display_name": "B", "fhir_user": "Patient/1", "password": "correct horse"})).unwrap();
        assert_ne!(user.password_hash, other.password_hash, "salts differ");
        assert_eq!(other.patient_id(), Some("1"));
        assert_eq!(user.patient_id(), None);
    }

    /// RFC 7914 §11's PBKDF2-HMAC-SHA256 vector (c = 1), through the same hasher port.
    #[test]
    fn hasher_matches_the_rfc_7914_vector() {
        let out = block_on(Pbkdf2Hasher.pbkdf2_sha256(b"passwd", b"salt", 1)).unwrap();
        assert_eq!(out[..8], [0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
    }

    #[test]
    fn refuses_bad_users() {
        let base = serde_json::json!({"username": "a", "display_name": "A", "fhir_user": "Practitioner/p1", "password": "12345678"});
        for (key, value) in [
            ("username", "has space"),
            ("display_name", ""),
            ("fhir_user", "Observation/1"),
            ("fhir_user", "Practitioner/"),
            ("fhir_user", "Practitioner/bad id"),
            ("password", "short"),
        ] {
            let mut json = base.clone();
            json[key] = value.into();
            assert!(matches!(register(json), Err(RegistrationError::Invalid(_))), "{key}={value}");
        }
    }
}
