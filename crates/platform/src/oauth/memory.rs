//! In-memory adapters of the token endpoint's ports, with the same contracts as the Worker's
//! (Durable Objects, KV, the JWKS cache), over one settable [`TestClock`]. Native flow tests
//! run the whole endpoint over them: [`MemoryAuthServer`] wires them up.

use super::OAuthPorts;
use crate::accounts::{unknown_user_shard, AccountState, GrantEntry, LoginOutcome, SessionHandle, SessionRecord, UnknownUsers, SESSION_LIFETIME_SECS};
use crate::assertions::{self, JtiLog};
use crate::clients::Client;
use crate::grant_handle::{is_backend_grant_id, is_grant_id};
use crate::grants::{self, Command, GrantError, GrantRecord, Reply};
use crate::guard::GrantStatus;
use crate::keys::KeyRing;
use crate::memory::{FakeKeyGenerator, FakeSigner, FakeVerifier, MemoryKeyStore, Pbkdf2Hasher, SeededRandom};
use crate::ports::{
    Accounts, AssertionLog, ClientKeys, ClientRegistry, Clock, GrantStore, KeysUnavailable, LoginAttempt, Settings, SigningKeys, StoreError, Users,
};
use crate::settings::ServerSettings;
use crate::signin::memory::MemoryPatients;
use crate::signin::SignInPorts;
use crate::users::User;
use async_trait::async_trait;
use smart_protocol::jose::Jwks;
use smart_protocol::ServerUrls;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// A clock the test sets and moves.
#[derive(Debug, Default)]
pub struct TestClock(Cell<i64>);

impl TestClock {
    pub fn at(now: i64) -> Rc<TestClock> {
        Rc::new(TestClock(Cell::new(now)))
    }

    pub fn advance(&self, secs: i64) {
        self.0.set(self.0.get() + secs);
    }
}

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.get()
    }
}

/// One record per grant id, changed by [`grants::apply`] as the `Grant` Durable Object does.
/// The object's alarm is played when a record is next touched: the grace copy of a refresh
/// token is dropped after its window, and a record is gone once nothing in it can matter
/// (never in the second it last changed: the alarm is at least a second away).
pub struct MemoryGrants {
    clock: Rc<TestClock>,
    records: RefCell<HashMap<String, (GrantRecord, i64)>>,
    issued: Cell<u64>,
}

impl MemoryGrants {
    pub fn new(clock: Rc<TestClock>) -> MemoryGrants {
        MemoryGrants { clock, records: RefCell::default(), issued: Cell::new(0) }
    }

    /// The stored record (after the alarms due by now), for tests.
    pub fn record(&self, id: &str) -> Option<GrantRecord> {
        self.load(id)
    }

    fn load(&self, id: &str) -> Option<GrantRecord> {
        let now = self.clock.now();
        let mut records = self.records.borrow_mut();
        let (record, changed_at) = records.get_mut(id)?;
        if now >= record.deletable_at() && now > *changed_at {
            records.remove(id);
            return None;
        }
        record.cleanup(now);
        Some(record.clone())
    }
}

#[async_trait(?Send)]
impl GrantStore for MemoryGrants {
    async fn apply(&self, id: &str, command: &Command) -> Result<Result<Reply, GrantError>, StoreError> {
        if !is_grant_id(id) && !is_backend_grant_id(id) {
            return Ok(Err(GrantError::NotFound));
        }
        let now = self.clock.now();
        Ok(grants::apply(self.load(id), command.clone(), now).map(|(record, reply)| {
            self.records.borrow_mut().insert(id.to_owned(), (record, now));
            reply
        }))
    }

    fn new_id(&self) -> Result<String, StoreError> {
        self.issued.set(self.issued.get() + 1);
        Ok(format!("{:064x}", 0xb000_0000_u64 + self.issued.get()))
    }

    fn new_backend_id(&self, client_id: &str) -> Result<String, StoreError> {
        self.issued.set(self.issued.get() + 1);
        let client = client_id.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Ok(format!("{client:064x}{:032x}", self.issued.get()))
    }
}

#[async_trait(?Send)]
impl GrantStatus for MemoryGrants {
    async fn is_active(&self, grant_id: &str) -> Result<bool, StoreError> {
        let reply = self.apply(grant_id, &Command::Status).await?;
        Ok(matches!(reply, Ok(Reply::Active { .. } | Reply::BackendActive { .. })))
    }
}

/// The client registry.
#[derive(Default)]
pub struct MemoryClients(RefCell<HashMap<String, Client>>);

impl MemoryClients {
    pub fn add(&self, client: Client) {
        self.0.borrow_mut().insert(client.client_id.clone(), client);
    }

    pub fn remove(&self, client_id: &str) {
        self.0.borrow_mut().remove(client_id);
    }
}

#[async_trait(?Send)]
impl ClientRegistry for MemoryClients {
    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        Ok(self.0.borrow().get(client_id).cloned())
    }

    async fn all(&self) -> Result<Vec<Client>, StoreError> {
        Ok(self.0.borrow().values().cloned().collect())
    }
}

#[async_trait(?Send)]
impl crate::ports::ClientStore for MemoryClients {
    async fn save(&self, client: &Client) -> Result<(), StoreError> {
        self.add(client.clone());
        Ok(())
    }

    async fn delete(&self, client_id: &str) -> Result<(), StoreError> {
        self.remove(client_id);
        Ok(())
    }
}

/// Client keys: an inline JWKS as registered; a JWKS URL answered from what the test
/// published there, cached as the Worker caches it (5 minutes without `Cache-Control`; an
/// unknown `kid` fetches again at most every [`assertions::JWKS_REFETCH_MIN_SECS`]).
pub struct MemoryClientKeys {
    clock: Rc<TestClock>,
    published: RefCell<HashMap<String, Jwks>>,
    /// URL → (keys, fetched at, fresh until).
    cached: RefCell<HashMap<String, (Jwks, i64, i64)>>,
    fetches: Cell<usize>,
}

impl MemoryClientKeys {
    pub fn new(clock: Rc<TestClock>) -> MemoryClientKeys {
        MemoryClientKeys { clock, published: RefCell::default(), cached: RefCell::default(), fetches: Cell::new(0) }
    }

    /// What `url` serves from now on.
    pub fn publish(&self, url: &str, jwks: Jwks) {
        self.published.borrow_mut().insert(url.to_owned(), jwks);
    }

    /// How many times a JWKS URL was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.get()
    }
}

#[async_trait(?Send)]
impl ClientKeys for MemoryClientKeys {
    async fn keys(&self, client: &Client, refetch: bool) -> Result<Jwks, KeysUnavailable> {
        if let Some(jwks) = &client.jwks {
            return Ok(jwks.clone());
        }
        let Some(url) = &client.jwks_uri else { return Err(KeysUnavailable("the client registered no keys".into())) };
        let now = self.clock.now();
        if let Some((jwks, _, _)) = self.cached.borrow().get(url).filter(|(_, at, until)| assertions::cached_jwks_usable(now, *at, *until, refetch)) {
            return Ok(jwks.clone());
        }
        self.fetches.set(self.fetches.get() + 1);
        let jwks = self.published.borrow().get(url).cloned().ok_or_else(|| KeysUnavailable(format!("{url} answered 404")))?;
        self.cached.borrow_mut().insert(url.clone(), (jwks.clone(), now, now + assertions::jwks_cache_secs(None)));
        Ok(jwks)
    }
}

/// The `jti` log of each client.
pub struct MemoryAssertionLog {
    clock: Rc<TestClock>,
    logs: RefCell<HashMap<String, JtiLog>>,
}

impl MemoryAssertionLog {
    pub fn new(clock: Rc<TestClock>) -> MemoryAssertionLog {
        MemoryAssertionLog { clock, logs: RefCell::default() }
    }
}

#[async_trait(?Send)]
impl AssertionLog for MemoryAssertionLog {
    async fn record(&self, client_id: &str, jti: &str, exp: i64) -> Result<bool, StoreError> {
        Ok(self.logs.borrow_mut().entry(client_id.to_owned()).or_default().record(jti, exp, self.clock.now()))
    }
}

/// Each user's account state, and the shared records of unknown usernames, as the `Account`
/// Durable Objects keep them (passwords checked with native PBKDF2).
pub struct MemoryAccounts {
    clock: Rc<TestClock>,
    accounts: RefCell<HashMap<String, AccountState>>,
    unknown: RefCell<HashMap<String, UnknownUsers>>,
    random: SeededRandom,
}

impl MemoryAccounts {
    pub fn new(clock: Rc<TestClock>) -> MemoryAccounts {
        MemoryAccounts { clock, accounts: RefCell::default(), unknown: RefCell::default(), random: SeededRandom::seeded(0xacc0_0000) }
    }

    /// A login session `id` for `username`, from now (the sign-in flow's result).
    pub fn open_session(&self, username: &str, id: &str) {
        let now = self.clock.now();
        let session = SessionRecord { id: id.into(), secret_hash: String::new(), auth_time: now, expires_at: now + SESSION_LIFETIME_SECS };
        self.accounts.borrow_mut().entry(username.to_owned()).or_default().sessions.push(session);
    }

    /// Logout.
    pub fn end_session(&self, username: &str, id: &str) {
        self.accounts.borrow_mut().entry(username.to_owned()).or_default().end_session(id);
    }

    /// The grants the management page lists.
    pub fn grants(&self, username: &str) -> Vec<GrantEntry> {
        self.accounts.borrow().get(username).map(|a| a.grants.clone()).unwrap_or_default()
    }

    /// The user's account record, for tests.
    pub fn state(&self, username: &str) -> AccountState {
        self.accounts.borrow().get(username).cloned().unwrap_or_default()
    }
}

#[async_trait(?Send)]
impl Accounts for MemoryAccounts {
    async fn login(&self, attempt: &LoginAttempt) -> Result<LoginOutcome, StoreError> {
        let now = self.clock.now();
        let (username, password, source) = (attempt.username.as_str(), attempt.password.expose(), &attempt.source);
        let crypto = |e: crate::ports::CryptoError| StoreError(e.to_string());
        // The record is copied out and stored back on success, as the object does (no borrow
        // is held across the password work).
        if attempt.user.is_none() {
            let shard = unknown_user_shard(username);
            let mut users = self.unknown.borrow().get(&shard).cloned().unwrap_or_default();
            let outcome = users.state(username, now).login(username, None, password, source, &Pbkdf2Hasher, &self.random, now).await.map_err(crypto)?;
            self.unknown.borrow_mut().insert(shard, users);
            return Ok(outcome);
        }
        let mut state = self.state(username);
        let outcome = state.login(username, attempt.user.as_ref(), password, source, &Pbkdf2Hasher, &self.random, now).await.map_err(crypto)?;
        self.accounts.borrow_mut().insert(username.to_owned(), state);
        Ok(outcome)
    }

    async fn check_session(&self, handle: &SessionHandle) -> Result<Option<i64>, StoreError> {
        Ok(self.accounts.borrow().get(&handle.username).and_then(|a| a.check_session(handle, self.clock.now())))
    }

    async fn end_session(&self, handle: &SessionHandle) -> Result<(), StoreError> {
        MemoryAccounts::end_session(self, &handle.username, &handle.id);
        Ok(())
    }

    async fn session_alive(&self, username: &str, session_id: &str) -> Result<bool, StoreError> {
        Ok(self.accounts.borrow().get(username).is_some_and(|a| a.session_alive(session_id, self.clock.now())))
    }

    async fn consent_covers(&self, username: &str, client_id: &str, scope: &str) -> Result<bool, StoreError> {
        Ok(self.accounts.borrow().get(username).is_some_and(|a| a.consent_covers(client_id, scope)))
    }

    async fn remember_consent(&self, username: &str, client_id: &str, scope: &str) -> Result<(), StoreError> {
        self.accounts.borrow_mut().entry(username.to_owned()).or_default().remember_consent(client_id, scope, self.clock.now());
        Ok(())
    }

    async fn add_grant(&self, username: &str, entry: &GrantEntry) -> Result<(), StoreError> {
        self.accounts.borrow_mut().entry(username.to_owned()).or_default().add_grant(entry.clone());
        Ok(())
    }

    async fn list_grants(&self, username: &str) -> Result<Vec<GrantEntry>, StoreError> {
        Ok(self.grants(username))
    }

    async fn remove_grant(&self, username: &str, grant_id: &str) -> Result<bool, StoreError> {
        Ok(self.accounts.borrow_mut().get_mut(username).is_some_and(|a| a.remove_grant(grant_id)))
    }
}

/// The users who sign in.
#[derive(Default)]
pub struct MemoryUsers(RefCell<HashMap<String, User>>);

impl MemoryUsers {
    pub fn add(&self, user: User) {
        self.0.borrow_mut().insert(user.username.clone(), user);
    }
}

#[async_trait(?Send)]
impl Users for MemoryUsers {
    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        Ok(self.0.borrow().get(username).cloned())
    }
}

/// A fixed key ring.
pub struct MemorySigningKeys(pub Rc<KeyRing>);

#[async_trait(?Send)]
impl SigningKeys for MemorySigningKeys {
    async fn key_ring(&self) -> Result<Rc<KeyRing>, StoreError> {
        Ok(self.0.clone())
    }
}

/// Settings an administrator could change.
#[derive(Default)]
pub struct MemorySettings(pub RefCell<ServerSettings>);

#[async_trait(?Send)]
impl Settings for MemorySettings {
    async fn settings(&self) -> Result<ServerSettings, StoreError> {
        Ok(self.0.borrow().clone())
    }
}

/// A whole authorization server in memory: every adapter over one clock, keys made by
/// [`FakeKeyGenerator`] and signed by [`FakeSigner`] (verified by [`FakeVerifier`]).
pub struct MemoryAuthServer {
    pub urls: ServerUrls,
    pub clock: Rc<TestClock>,
    pub grants: MemoryGrants,
    pub clients: MemoryClients,
    pub client_keys: MemoryClientKeys,
    pub assertions: MemoryAssertionLog,
    pub accounts: MemoryAccounts,
    pub users: MemoryUsers,
    pub keys: MemorySigningKeys,
    pub settings: MemorySettings,
    pub random: SeededRandom,
    /// The patients and encounters the sign-in's pickers offer.
    pub patients: MemoryPatients,
    /// The configuration store's `simulate:{client_id}` records ([`crate::simulate`]).
    pub simulations: crate::memory::MemoryKv,
}

impl MemoryAuthServer {
    /// A server at `base` (e.g. `https://ehr.example`, FHIR under `/fhir`) whose clock reads
    /// `now`.
    pub fn new(base: &str, now: i64) -> MemoryAuthServer {
        let clock = TestClock::at(now);
        let ring = futures::executor::block_on(crate::keys::ensure_keys(&MemoryKeyStore::default(), &FakeKeyGenerator::default(), now))
            .expect("fake keys make a key ring");
        MemoryAuthServer {
            urls: ServerUrls::new(base, "/fhir").expect("a valid base URL"),
            grants: MemoryGrants::new(clock.clone()),
            clients: MemoryClients::default(),
            client_keys: MemoryClientKeys::new(clock.clone()),
            assertions: MemoryAssertionLog::new(clock.clone()),
            accounts: MemoryAccounts::new(clock.clone()),
            users: MemoryUsers::default(),
            keys: MemorySigningKeys(Rc::new(ring)),
            settings: MemorySettings::default(),
            random: SeededRandom::default(),
            patients: MemoryPatients::default(),
            simulations: crate::memory::MemoryKv::default(),
            clock,
        }
    }

    /// The registration endpoints' ports; `admin_token` plays the `ADMIN_TOKEN` secret.
    pub fn registration_ports<'a>(&'a self, admin_token: Option<&'a str>) -> crate::registration::RegistrationPorts<'a> {
        crate::registration::RegistrationPorts {
            urls: &self.urls,
            clients: &self.clients,
            store: &self.clients,
            settings: &self.settings,
            random: &self.random,
            clock: self.clock.as_ref(),
            admin_token,
            client_limits: &crate::ports::NoClientLimits,
        }
    }

    pub fn ports(&self) -> OAuthPorts<'_> {
        OAuthPorts {
            urls: &self.urls,
            grants: &self.grants,
            grant_status: &self.grants,
            users: &self.users,
            clients: &self.clients,
            client_keys: &self.client_keys,
            assertions: &self.assertions,
            accounts: &self.accounts,
            keys: &self.keys,
            settings: &self.settings,
            signer: &FakeSigner,
            verifier: &FakeVerifier,
            random: &self.random,
            clock: self.clock.as_ref(),
            simulations: &self.simulations,
            client_limits: &crate::ports::NoClientLimits,
        }
    }

    /// The sign-in's ports over the same adapters.
    pub fn signin_ports(&self) -> SignInPorts<'_> {
        SignInPorts {
            urls: &self.urls,
            grants: &self.grants,
            clients: &self.clients,
            users: &self.users,
            accounts: &self.accounts,
            assertions: &self.assertions,
            keys: &self.keys,
            settings: &self.settings,
            patients: &self.patients,
            verifier: &FakeVerifier,
            random: &self.random,
            clock: self.clock.as_ref(),
            simulations: &self.simulations,
        }
    }
}
