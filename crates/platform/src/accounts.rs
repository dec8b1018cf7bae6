//! Per-user account state, kept in one Durable Object per username so every change is
//! strictly ordered: failed-login throttling, login sessions, remembered consents.
//!
//! Throttling: after [`FREE_FAILURES`] consecutive failures, each further failure locks the
//! username for 60 s, doubling up to 15 minutes; a success resets the count. Unknown
//! usernames are throttled the same way and cost the same PBKDF2 work, so the login page does
//! not reveal which usernames exist.

use crate::ports::{CryptoError, PasswordHasher, Random};
use crate::users::{self, User};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use smart_protocol::scopes::ScopeSet;
use subtle::ConstantTimeEq;

pub const FREE_FAILURES: u32 = 5;
pub const MAX_LOCK_SECS: i64 = 900;
pub const SESSION_LIFETIME_SECS: i64 = 12 * 3600;
pub const MAX_SESSIONS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub secret_hash: String,
    pub auth_time: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RememberedConsent {
    pub client_id: String,
    pub scope: String,
    pub granted_at: i64,
}

/// A grant the user gave, for the management page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEntry {
    pub grant_id: String,
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub granted_at: i64,
}

/// How many grants the management page remembers per user (oldest dropped first).
pub const MAX_GRANTS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AccountState {
    pub failures: u32,
    pub locked_until: i64,
    pub sessions: Vec<SessionRecord>,
    pub consents: Vec<RememberedConsent>,
    #[serde(default)]
    pub grants: Vec<GrantEntry>,
}

/// A session handle as the cookie carries it: `username~id~secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHandle {
    pub username: String,
    pub id: String,
    pub secret: String,
}

impl SessionHandle {
    pub fn parse(cookie: &str) -> Option<Self> {
        let mut parts = cookie.split('~');
        let (Some(username), Some(id), Some(secret), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        users::valid_username(username).then(|| Self { username: username.into(), id: id.into(), secret: secret.into() })
    }

    pub fn cookie_value(&self) -> String {
        format!("{}~{}~{}", self.username, self.id, self.secret)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum LoginOutcome {
    LoggedIn { session: String, auth_time: i64 },
    Rejected,
    Locked { retry_after: i64 },
}

fn hash(secret: &str) -> String {
    crate::tokens::opaque_hash(secret)
}

fn random_token(random: &dyn Random) -> Result<String, CryptoError> {
    let mut bytes = [0u8; 32];
    random.fill(&mut bytes)?;
    Ok(B64URL.encode(bytes))
}

impl AccountState {
    fn prune(&mut self, now: i64) {
        self.sessions.retain(|s| s.expires_at > now);
    }

    /// Checks a password attempt for `username` (`user` is `None` when no such user exists).
    pub async fn login(
        &mut self,
        username: &str,
        user: Option<&User>,
        password: &str,
        hasher: &dyn PasswordHasher,
        random: &dyn Random,
        now: i64,
    ) -> Result<LoginOutcome, CryptoError> {
        if now < self.locked_until {
            return Ok(LoginOutcome::Locked { retry_after: self.locked_until - now });
        }
        let ok = match user {
            Some(user) => users::verify_password(password, &user.password_hash, hasher).await?,
            None => {
                users::dummy_verify(password, hasher).await?;
                false
            }
        };
        if !ok {
            self.failures += 1;
            if self.failures >= FREE_FAILURES {
                let exponent = (self.failures - FREE_FAILURES).min(10);
                self.locked_until = now + (60i64 << exponent).min(MAX_LOCK_SECS);
            }
            return Ok(LoginOutcome::Rejected);
        }
        self.failures = 0;
        self.locked_until = 0;
        self.prune(now);
        let handle = SessionHandle { username: username.to_owned(), id: random_token(random)?[..16].to_owned(), secret: random_token(random)? };
        self.sessions.push(SessionRecord { id: handle.id.clone(), secret_hash: hash(&handle.secret), auth_time: now, expires_at: now + SESSION_LIFETIME_SECS });
        if self.sessions.len() > MAX_SESSIONS {
            self.sessions.remove(0);
        }
        Ok(LoginOutcome::LoggedIn { session: handle.cookie_value(), auth_time: now })
    }

    /// The session's `auth_time` when the handle is valid.
    pub fn check_session(&self, handle: &SessionHandle, now: i64) -> Option<i64> {
        let presented = hash(&handle.secret);
        self.sessions
            .iter()
            .find(|s| s.id == handle.id && s.expires_at > now && bool::from(s.secret_hash.as_bytes().ct_eq(presented.as_bytes())))
            .map(|s| s.auth_time)
    }

    /// Whether the session `id` still exists (for `online_access` refresh tokens, which the
    /// token endpoint checks without the cookie's secret).
    pub fn session_alive(&self, id: &str, now: i64) -> bool {
        self.sessions.iter().any(|s| s.id == id && s.expires_at > now)
    }

    pub fn end_session(&mut self, id: &str) {
        self.sessions.retain(|s| s.id != id);
    }

    pub fn add_grant(&mut self, entry: GrantEntry) {
        self.grants.retain(|g| g.grant_id != entry.grant_id);
        self.grants.push(entry);
        if self.grants.len() > MAX_GRANTS {
            self.grants.remove(0);
        }
    }

    /// Removes a grant from the list; `false` when it is not this user's.
    pub fn remove_grant(&mut self, grant_id: &str) -> bool {
        let before = self.grants.len();
        self.grants.retain(|g| g.grant_id != grant_id);
        before != self.grants.len()
    }

    /// A per-session anti-CSRF token for the management page's forms.
    pub fn csrf_for(handle: &SessionHandle) -> String {
        crate::tokens::opaque_hash(&format!("manage:{}:{}", handle.id, handle.secret))
    }

    pub fn remember_consent(&mut self, client_id: &str, scope: &str, now: i64) {
        self.consents.retain(|c| c.client_id != client_id);
        self.consents.push(RememberedConsent { client_id: client_id.into(), scope: scope.into(), granted_at: now });
    }

    /// Whether a remembered consent already covers every scope in `scope`.
    pub fn consent_covers(&self, client_id: &str, scope: &str) -> bool {
        let wanted = ScopeSet::parse(scope).unwrap_or_default();
        self.consents
            .iter()
            .any(|c| c.client_id == client_id && ScopeSet::parse(&c.scope).is_ok_and(|have| have.covers_all(&wanted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Pbkdf2Hasher, SeededRandom};
    use crate::users::UserRegistration;
    use futures::executor::block_on;

    fn user(random: &SeededRandom) -> User {
        let reg = UserRegistration::parse(r#"{"username":"dr","display_name":"Dr","fhir_user":"Practitioner/1","password":"right-password"}"#).unwrap();
        block_on(reg.into_user(&Pbkdf2Hasher, random)).unwrap()
    }

    #[test]
    fn a_good_password_opens_a_session_the_cookie_can_prove() {
        let random = SeededRandom::default();
        let user = user(&random);
        let mut state = AccountState::default();
        let LoginOutcome::LoggedIn { session, auth_time } = block_on(state.login("dr", Some(&user), "right-password", &Pbkdf2Hasher, &random, 100)).unwrap() else { panic!() };
        assert_eq!(auth_time, 100);
        let handle = SessionHandle::parse(&session).unwrap();
        assert_eq!(handle.username, "dr");
        assert_eq!(state.check_session(&handle, 101), Some(100));
        assert_eq!(state.check_session(&handle, 100 + SESSION_LIFETIME_SECS), None);
        let forged = SessionHandle { secret: "x".into(), ..handle.clone() };
        assert_eq!(state.check_session(&forged, 101), None);
        state.end_session(&handle.id);
        assert_eq!(state.check_session(&handle, 101), None);
        assert!(!serde_json::to_string(&state).unwrap().contains(&handle.secret), "only a hash is stored");
    }

    #[test]
    fn repeated_failures_lock_the_username_with_growing_delays() {
        let random = SeededRandom::default();
        let user = user(&random);
        let mut state = AccountState::default();
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(block_on(state.login("dr", Some(&user), "wrong", &Pbkdf2Hasher, &random, 0)).unwrap(), LoginOutcome::Rejected);
        }
        assert_eq!(state.locked_until, 0);
        block_on(state.login("dr", Some(&user), "wrong", &Pbkdf2Hasher, &random, 0)).unwrap();
        assert_eq!(state.locked_until, 60);
        // Even the right password is refused while locked.
        assert_eq!(block_on(state.login("dr", Some(&user), "right-password", &Pbkdf2Hasher, &random, 30)).unwrap(), LoginOutcome::Locked { retry_after: 30 });
        block_on(state.login("dr", Some(&user), "wrong", &Pbkdf2Hasher, &random, 60)).unwrap();
        assert_eq!(state.locked_until, 180);
        assert!(matches!(block_on(state.login("dr", Some(&user), "right-password", &Pbkdf2Hasher, &random, 180)).unwrap(), LoginOutcome::LoggedIn { .. }));
        assert_eq!(state.failures, 0);
    }

    #[test]
    fn unknown_users_are_rejected_and_throttled_too() {
        let random = SeededRandom::default();
        let mut state = AccountState::default();
        for _ in 0..FREE_FAILURES {
            assert_eq!(block_on(state.login("ghost", None, "x", &Pbkdf2Hasher, &random, 0)).unwrap(), LoginOutcome::Rejected);
        }
        assert!(matches!(block_on(state.login("ghost", None, "x", &Pbkdf2Hasher, &random, 1)).unwrap(), LoginOutcome::Locked { .. }));
    }

    #[test]
    fn remembered_consent_covers_the_same_or_fewer_scopes() {
        let mut state = AccountState::default();
        state.remember_consent("app", "openid patient/*.rs", 0);
        assert!(state.consent_covers("app", "openid patient/Observation.rs"));
        assert!(!state.consent_covers("app", "openid patient/*.cruds"));
        assert!(!state.consent_covers("other", "openid"));
    }

    #[test]
    fn grants_are_listed_once_and_removed_only_by_their_owner() {
        let mut state = AccountState::default();
        let entry = |id: &str| GrantEntry { grant_id: id.into(), client_id: "app".into(), client_name: "App".into(), scope: "openid".into(), granted_at: 0 };
        state.add_grant(entry("g1"));
        state.add_grant(entry("g1"));
        state.add_grant(entry("g2"));
        assert_eq!(state.grants.len(), 2);
        assert!(state.remove_grant("g1"));
        assert!(!state.remove_grant("someone-elses"));
        for i in 0..MAX_GRANTS + 5 {
            state.add_grant(entry(&format!("x{i}")));
        }
        assert_eq!(state.grants.len(), MAX_GRANTS);
        let a = SessionHandle { username: "u".into(), id: "i".into(), secret: "s".into() };
        let b = SessionHandle { secret: "t".into(), ..a.clone() };
        assert_ne!(AccountState::csrf_for(&a), AccountState::csrf_for(&b));
    }

    #[test]
    fn session_handles_parse_strictly() {
        assert!(SessionHandle::parse("a~b~c").is_some());
        for bad in ["a~b", "a~b~c~d", "bad user~b~c", ""] {
            assert!(SessionHandle::parse(bad).is_none(), "{bad}");
        }
    }
}
