//! Per-user account state, kept in one Durable Object per username so every change is
//! strictly ordered: failed-login throttling, login sessions, remembered consents.
//!
//! Throttling, per *source* of attempts so that nobody can lock someone else out: after
//! [`FREE_FAILURES`] consecutive failures from one source, each further failure locks that
//! source for 60 s, doubling up to 15 minutes; a success clears it. A source is the client's
//! IP address, or — for a browser that has signed in as this user before (a *trusted*
//! browser, by its browser-binding cookie) — that browser. So an attacker locks only their
//! own IP, and even an attacker on the user's own network (same IP) cannot lock out the
//! user's usual browser. Against many IPs there is an account-wide counter
//! ([`ACCOUNT_FREE_FAILURES`] failures from untrusted sources without a success) that locks
//! untrusted sources only, the same way; trusted browsers keep working.
//! (The OWASP "device cookie" scheme, with the browser cookie this server already sets.)
//!
//! Unknown usernames are throttled the same way and cost the same PBKDF2 work, so the login
//! page does not reveal which usernames exist; their state lives in a few shared objects
//! ([`unknown_user_shard`]) instead of one object per name tried.

use crate::ports::{CryptoError, PasswordHasher, Random};
use crate::users::{self, User};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use smart_protocol::scopes::ScopeSet;
use subtle::ConstantTimeEq;

pub const FREE_FAILURES: u32 = 5;
pub const MAX_LOCK_SECS: i64 = 900;
/// Failures from untrusted sources, without a success, before they are all locked.
pub const ACCOUNT_FREE_FAILURES: u32 = 100;
/// Sources remembered per account (least recently failing dropped first).
pub const MAX_SOURCES: usize = 200;
/// Browsers remembered as trusted per account.
pub const MAX_TRUSTED: usize = 20;
/// Shared objects holding the throttling state of unknown usernames.
pub const UNKNOWN_USER_SHARDS: u64 = 8;

/// Where a login attempt comes from, as the Worker saw it (hashed before it is stored).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoginSource {
    /// The client's IP address (`CF-Connecting-IP`).
    pub ip: String,
    /// SHA-256 of the browser-binding cookie, if the browser sent one.
    pub browser_hash: Option<String>,
}

/// Failures of one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceThrottle {
    pub key: String,
    pub failures: u32,
    pub locked_until: i64,
    pub last_failure: i64,
}

/// The lock after `failures` consecutive failures above `free`, from `now`.
fn lock_after(failures: u32, free: u32, now: i64) -> i64 {
    if failures < free {
        return 0;
    }
    let exponent = (failures - free).min(10);
    now + (60i64 << exponent).min(MAX_LOCK_SECS)
}

/// The name of the shared account object that throttles `username` when no such user exists
/// (not a valid username, so it never collides with a real account's object).
pub fn unknown_user_shard(username: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(username.as_bytes());
    format!("~unknown-{}", u64::from(digest[0]) % UNKNOWN_USER_SHARDS)
}
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
    /// Account-wide: failures from untrusted sources since the last success, and their lock.
    pub failures: u32,
    pub locked_until: i64,
    #[serde(default)]
    pub sources: Vec<SourceThrottle>,
    /// Browsers (hashes of their binding cookie) that signed in as this user.
    #[serde(default)]
    pub trusted: Vec<String>,
    pub sessions: Vec<SessionRecord>,
    pub consents: Vec<RememberedConsent>,
    #[serde(default)]
    pub grants: Vec<GrantEntry>,
}

/// How many unknown usernames one shared object remembers (least recently tried dropped).
pub const MAX_UNKNOWN_USERS: usize = 500;

/// The throttling state of usernames that do not exist, kept in a shared object
/// ([`unknown_user_shard`]) so that trying names creates no object per name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UnknownUsers {
    /// (username, last attempt, state).
    pub users: Vec<(String, i64, AccountState)>,
}

impl UnknownUsers {
    /// The state of `username`, created (and the least recently tried dropped) if needed.
    pub fn state(&mut self, username: &str, now: i64) -> &mut AccountState {
        let index = match self.users.iter().position(|(u, _, _)| u == username) {
            Some(i) => i,
            None => {
                if self.users.len() >= MAX_UNKNOWN_USERS {
                    let oldest = self.users.iter().enumerate().min_by_key(|(_, (_, at, _))| *at).map(|(i, _)| i).unwrap_or(0);
                    self.users.remove(oldest);
                }
                self.users.push((username.to_owned(), now, AccountState::default()));
                self.users.len() - 1
            }
        };
        self.users[index].1 = now;
        &mut self.users[index].2
    }
}

/// A session handle as the cookie carries it: `username~id~secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionHandle {
    pub username: String,
    pub id: String,
    pub secret: String,
}

/// The secret prints as `[redacted]`.
impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle").field("username", &self.username).field("id", &self.id).field("secret", &crate::secret::Redacted).finish()
    }
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
    crate::secret::opaque_hash(secret)
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

    /// The throttling key of `source` for this account, and whether the source is trusted.
    fn source_key(&self, source: &LoginSource) -> (String, bool) {
        match &source.browser_hash {
            Some(b) if self.trusted.contains(b) => (format!("browser:{b}"), true),
            _ => (format!("ip:{}", hash(&source.ip)), false),
        }
    }

    /// When `source` may try again, if it is locked now.
    pub fn locked(&self, source: &LoginSource, now: i64) -> Option<i64> {
        let (key, trusted) = self.source_key(source);
        let own = self.sources.iter().find(|s| s.key == key).map_or(0, |s| s.locked_until);
        let account = if trusted { 0 } else { self.locked_until };
        let until = own.max(account);
        (now < until).then_some(until)
    }

    fn record_failure(&mut self, source: &LoginSource, now: i64) {
        let (key, trusted) = self.source_key(source);
        let entry = match self.sources.iter().position(|s| s.key == key) {
            Some(i) => &mut self.sources[i],
            None => {
                if self.sources.len() >= MAX_SOURCES {
                    let oldest = self.sources.iter().enumerate().min_by_key(|(_, s)| s.last_failure).map(|(i, _)| i).unwrap_or(0);
                    self.sources.remove(oldest);
                }
                self.sources.push(SourceThrottle { key, failures: 0, locked_until: 0, last_failure: now });
                self.sources.last_mut().expect("just pushed")
            }
        };
        entry.failures += 1;
        entry.last_failure = now;
        entry.locked_until = lock_after(entry.failures, FREE_FAILURES, now);
        if !trusted {
            self.failures += 1;
            self.locked_until = lock_after(self.failures, ACCOUNT_FREE_FAILURES, now);
        }
    }

    fn record_success(&mut self, source: &LoginSource) {
        let (key, _) = self.source_key(source);
        let ip_key = format!("ip:{}", hash(&source.ip));
        self.sources.retain(|s| s.key != key && s.key != ip_key);
        self.failures = 0;
        self.locked_until = 0;
        if let Some(b) = &source.browser_hash {
            self.trusted.retain(|t| t != b);
            self.trusted.push(b.clone());
            if self.trusted.len() > MAX_TRUSTED {
                self.trusted.remove(0);
            }
        }
    }

    /// Checks a password attempt for `username` (`user` is `None` when no such user exists)
    /// from `source`.
    #[allow(clippy::too_many_arguments)]
    pub async fn login(
        &mut self,
        username: &str,
        user: Option<&User>,
        password: &str,
        source: &LoginSource,
        hasher: &dyn PasswordHasher,
        random: &dyn Random,
        now: i64,
    ) -> Result<LoginOutcome, CryptoError> {
        if let Some(until) = self.locked(source, now) {
            return Ok(LoginOutcome::Locked { retry_after: until - now });
        }
        let ok = match user {
            Some(user) => users::verify_password(password, &user.password_hash, hasher).await?,
            None => {
                users::dummy_verify(password, hasher).await?;
                false
            }
        };
        if !ok {
            self.record_failure(source, now);
            return Ok(LoginOutcome::Rejected);
        }
        self.record_success(source);
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
        crate::secret::opaque_hash(&format!("manage:{}:{}", handle.id, handle.secret))
    }

    pub fn remember_consent(&mut self, client_id: &str, scope: &str, now: i64) {
        self.consents.retain(|c| c.client_id != client_id);
        self.consents.push(RememberedConsent { client_id: client_id.into(), scope: scope.into(), granted_at: now });
    }

    /// Whether a remembered consent already covers every scope in `scope`.
    pub fn consent_covers(&self, client_id: &str, scope: &str) -> bool {
        let wanted = ScopeSet::parse(scope).unwrap_or_default();
        self.consents.iter().any(|c| c.client_id == client_id && ScopeSet::parse(&c.scope).is_ok_and(|have| have.covers_all(&wanted)))
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
        let LoginOutcome::LoggedIn { session, auth_time } =
            block_on(state.login("dr", Some(&user), "right-password", &LoginSource::default(), &Pbkdf2Hasher, &random, 100)).unwrap()
        else {
            panic!()
        };
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

    fn from(ip: &str, browser: Option<&str>) -> LoginSource {
        LoginSource { ip: ip.into(), browser_hash: browser.map(str::to_owned) }
    }

    #[test]
    fn repeated_failures_lock_the_source_with_growing_delays() {
        let random = SeededRandom::default();
        let user = user(&random);
        let mut state = AccountState::default();
        let attacker = from("203.0.113.9", Some("attacker-browser"));
        let login = |state: &mut AccountState, password: &str, source: &LoginSource, now| {
            block_on(state.login("dr", Some(&user), password, source, &Pbkdf2Hasher, &random, now)).unwrap()
        };
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(login(&mut state, "wrong", &attacker, 0), LoginOutcome::Rejected);
        }
        assert_eq!(state.locked(&attacker, 0), None);
        login(&mut state, "wrong", &attacker, 0);
        assert_eq!(state.locked(&attacker, 0), Some(60));
        // Even the right password is refused from the locked source (another browser on the
        // same IP is the same source until it is trusted).
        assert_eq!(login(&mut state, "right-password", &from("203.0.113.9", None), 30), LoginOutcome::Locked { retry_after: 30 });
        login(&mut state, "wrong", &attacker, 60);
        assert_eq!(state.locked(&attacker, 60), Some(180));
        // ... but the user elsewhere is not locked out.
        assert!(matches!(login(&mut state, "right-password", &from("198.51.100.7", Some("users-browser")), 61), LoginOutcome::LoggedIn { .. }));
        assert!(matches!(login(&mut state, "right-password", &attacker, 180), LoginOutcome::LoggedIn { .. }));
        assert_eq!(state.failures, 0);
    }

    #[test]
    fn nobody_locks_out_a_browser_that_signed_in_before() {
        let random = SeededRandom::default();
        let user = user(&random);
        let mut state = AccountState::default();
        let login = |state: &mut AccountState, password: &str, source: &LoginSource, now| {
            block_on(state.login("dr", Some(&user), password, source, &Pbkdf2Hasher, &random, now)).unwrap()
        };
        let usual = from("192.0.2.1", Some("usual-browser"));
        assert!(matches!(login(&mut state, "right-password", &usual, 0), LoginOutcome::LoggedIn { .. }));
        // An attacker on the same network (same IP) and a botnet of many IPs fail again and again.
        for i in 0..FREE_FAILURES {
            login(&mut state, "wrong", &from("192.0.2.1", Some("attacker")), 1 + i64::from(i));
        }
        for i in 0..5 {
            login(&mut state, "wrong", &from(&format!("10.0.0.{i}"), None), 10);
        }
        assert_eq!(state.locked(&from("172.16.0.1", None), 10), None, "a few failures elsewhere lock nothing else");
        // (PBKDF2 is slow natively: jump to the last free failure of the account-wide budget.)
        state.failures = ACCOUNT_FREE_FAILURES - 1;
        login(&mut state, "wrong", &from("10.0.1.1", None), 10);
        assert!(state.locked(&from("192.0.2.1", Some("attacker")), 10).is_some());
        assert!(state.locked(&from("172.16.0.1", None), 10).is_some(), "untrusted sources are locked account-wide");
        assert!(state.sources.len() <= MAX_SOURCES);
        assert!(matches!(login(&mut state, "right-password", &usual, 11), LoginOutcome::LoggedIn { .. }), "the trusted browser still signs in");
        // A trusted browser that fails is throttled on its own.
        for _ in 0..FREE_FAILURES {
            login(&mut state, "wrong", &usual, 20);
        }
        assert!(state.locked(&usual, 20).is_some());
    }

    #[test]
    fn unknown_users_are_rejected_and_throttled_too_in_shared_objects() {
        let random = SeededRandom::default();
        let mut shard = UnknownUsers::default();
        let source = from("203.0.113.9", None);
        for _ in 0..FREE_FAILURES {
            let outcome = block_on(shard.state("ghost", 0).login("ghost", None, "x", &source, &Pbkdf2Hasher, &random, 0)).unwrap();
            assert_eq!(outcome, LoginOutcome::Rejected);
        }
        assert!(matches!(
            block_on(shard.state("ghost", 1).login("ghost", None, "x", &source, &Pbkdf2Hasher, &random, 1)).unwrap(),
            LoginOutcome::Locked { .. }
        ));
        for i in 0..MAX_UNKNOWN_USERS + 10 {
            shard.state(&format!("name{i}"), 2);
        }
        assert_eq!(shard.users.len(), MAX_UNKNOWN_USERS);
        let shards: std::collections::HashSet<String> = (0..1000).map(|i| unknown_user_shard(&format!("user{i}"))).collect();
        assert_eq!(shards.len() as u64, UNKNOWN_USER_SHARDS);
        assert!(shards.iter().all(|s| !crate::users::valid_username(s)), "never a real account's object");
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
        assert_eq!(format!("{a:?}"), "SessionHandle { username: \"u\", id: \"i\", secret: [redacted] }");
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
