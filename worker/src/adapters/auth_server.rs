//! The OAuth endpoints' ports over the Worker's storage: the `Grant`, `Account` and
//! `AssertionLog` Durable Objects, the client registry and settings in KV (cached per
//! isolate), the client JWKS cache, the isolate's key ring, WebCrypto and `Date.now()`.

use super::client_keys::FetchedClientKeys;
use super::fhir_store::Partitions;
use super::webcrypto::{WebCryptoRandom, WebCryptoSigner, WebCryptoVerifier};
use crate::context::AppContext;
use crate::durable::account::{ConsentRequest, GrantRef, LoginRequest, SessionRequest};
use crate::durable::assertion_log::{GrantCall, RecordRequest, TokenRequest};
use crate::durable::rpc;
use crate::grant_status::{self, DoGrantStatus};
use crate::http::AppError;
use crate::keyring::{self, now_secs};
use crate::{registry, settings};
use async_trait::async_trait;
use platform::accounts::{unknown_user_shard, GrantEntry, LoginOutcome, SessionHandle};
use platform::clients::Client;
use platform::grants::{Command, GrantError, Reply};
use platform::keys::KeyRing;
use platform::oauth::OAuthPorts;
use platform::ports::{Accounts, AssertionLog, ClientRegistry, ClientStore, Clock, GrantStore, LoginAttempt, Settings, SigningKeys, StoreError, Users};
use platform::settings::ServerSettings;
use platform::signin::SignInPorts;
use platform::users::User;
use std::rc::Rc;

fn store_error(e: AppError) -> StoreError {
    StoreError(format!("{e:?}"))
}

/// The `Grant` Durable Objects (through `grant_status`, which keeps the isolate's cache of
/// active grants honest on revocation).
pub struct DoGrants<'a>(pub &'a AppContext);

#[async_trait(?Send)]
impl GrantStore for DoGrants<'_> {
    async fn apply(&self, id: &str, command: &Command) -> Result<Result<Reply, GrantError>, StoreError> {
        grant_status::apply(&self.0.env, id, command).await.map_err(store_error)
    }

    fn new_id(&self) -> Result<String, StoreError> {
        let namespace = self.0.env.durable_object("GRANTS").map_err(|e| StoreError(e.to_string()))?;
        Ok(namespace.unique_id().map_err(|e| StoreError(e.to_string()))?.to_string())
    }

    /// The client's `AssertionLog` object id (64 hex digits) and 128 random bits.
    fn new_backend_id(&self, client_id: &str) -> Result<String, StoreError> {
        let namespace = self.0.env.durable_object("ASSERTIONS").map_err(|e| StoreError(e.to_string()))?;
        let object = namespace.id_from_name(client_id).map_err(|e| StoreError(e.to_string()))?.to_string();
        Ok(format!("{object}{}", crate::adapters::webcrypto::new_id()))
    }
}

/// Users from KV (`registry`, not cached).
pub struct KvUsers<'a>(pub &'a AppContext);

#[async_trait(?Send)]
impl Users for KvUsers<'_> {
    async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        registry::user(self.0, username).await.map_err(store_error)
    }
}

/// Clients from KV, cached per isolate (`registry`).
pub struct KvClients<'a>(pub &'a AppContext);

#[async_trait(?Send)]
impl ClientRegistry for KvClients<'_> {
    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        registry::client(self.0, client_id).await.map_err(store_error)
    }

    async fn all(&self) -> Result<Vec<Client>, StoreError> {
        registry::all_clients(self.0).await.map_err(store_error)
    }
}

#[async_trait(?Send)]
impl ClientStore for KvClients<'_> {
    async fn save(&self, client: &Client) -> Result<(), StoreError> {
        registry::save_client(self.0, client).await.map_err(store_error)
    }

    async fn delete(&self, client_id: &str) -> Result<(), StoreError> {
        registry::delete_client(self.0, client_id).await.map_err(store_error)
    }
}

/// One `AssertionLog` object per client.
pub struct DoAssertionLog<'a>(pub &'a AppContext);

#[async_trait(?Send)]
impl AssertionLog for DoAssertionLog<'_> {
    async fn record(&self, client_id: &str, jti: &str, exp: i64) -> Result<bool, StoreError> {
        let stub = rpc::by_name(&self.0.env, "ASSERTIONS", client_id).map_err(store_error)?;
        let request = RecordRequest { jti: jti.to_owned(), exp };
        let fresh: Result<bool, serde_json::Value> = rpc::call(&stub, "/record", &request).await.map_err(store_error)?;
        Ok(fresh.unwrap_or(false))
    }

    /// One round trip: the client's object keeps both the `jti`s and its backend grants.
    async fn record_and_start(
        &self,
        _grants: &dyn GrantStore,
        client_id: &str,
        jti: &str,
        exp: i64,
        grant_id: &str,
        start: &Command,
    ) -> Result<Option<Result<Reply, GrantError>>, StoreError> {
        let stub = rpc::by_name(&self.0.env, "ASSERTIONS", client_id).map_err(store_error)?;
        let request =
            TokenRequest { assertion: RecordRequest { jti: jti.to_owned(), exp }, grant: GrantCall { id: grant_id.to_owned(), command: start.clone() } };
        let answer: Result<Option<Reply>, GrantError> = rpc::call(&stub, "/token", &request).await.map_err(store_error)?;
        Ok(match answer {
            Ok(None) => None,
            Ok(Some(reply)) => Some(Ok(reply)),
            Err(error) => Some(Err(error)),
        })
    }
}

/// One `Account` object per username.
pub struct DoAccounts<'a>(pub &'a AppContext);

impl DoAccounts<'_> {
    fn object(&self, name: &str) -> Result<rpc::Object, StoreError> {
        rpc::by_name(&self.0.env, "ACCOUNTS", name).map_err(store_error)
    }
}

#[async_trait(?Send)]
impl Accounts for DoAccounts<'_> {
    /// An unknown username goes to a shared object, so trying names creates no object per name.
    async fn login(&self, attempt: &LoginAttempt) -> Result<LoginOutcome, StoreError> {
        let unknown = attempt.user.is_none();
        let name = if unknown { unknown_user_shard(&attempt.username) } else { attempt.username.clone() };
        let request = LoginRequest {
            username: attempt.username.clone(),
            user: attempt.user.clone(),
            password: attempt.password.expose().to_owned(),
            source: attempt.source.clone(),
            unknown,
        };
        let outcome: Result<LoginOutcome, serde_json::Value> = rpc::call(&self.object(&name)?, "/login", &request).await.map_err(store_error)?;
        outcome.map_err(|e| StoreError(format!("login: {e}")))
    }

    async fn check_session(&self, handle: &SessionHandle) -> Result<Option<i64>, StoreError> {
        let request = SessionRequest { id: handle.id.clone(), secret: handle.secret.clone() };
        let checked: Result<Option<i64>, serde_json::Value> =
            rpc::call(&self.object(&handle.username)?, "/session/check", &request).await.map_err(store_error)?;
        Ok(checked.unwrap_or(None))
    }

    async fn end_session(&self, handle: &SessionHandle) -> Result<(), StoreError> {
        let request = SessionRequest { id: handle.id.clone(), secret: handle.secret.clone() };
        let _: Result<bool, serde_json::Value> = rpc::call(&self.object(&handle.username)?, "/session/end", &request).await.map_err(store_error)?;
        Ok(())
    }

    async fn session_alive(&self, username: &str, session_id: &str) -> Result<bool, StoreError> {
        let request = SessionRequest { id: session_id.to_owned(), secret: String::new() };
        let alive: Result<bool, serde_json::Value> = rpc::call(&self.object(username)?, "/session/alive", &request).await.map_err(store_error)?;
        Ok(alive.unwrap_or(false))
    }

    async fn consent_covers(&self, username: &str, client_id: &str, scope: &str) -> Result<bool, StoreError> {
        let request = ConsentRequest { client_id: client_id.to_owned(), scope: scope.to_owned() };
        let covered: Result<bool, serde_json::Value> = rpc::call(&self.object(username)?, "/consent/check", &request).await.map_err(store_error)?;
        Ok(covered.unwrap_or(false))
    }

    async fn remember_consent(&self, username: &str, client_id: &str, scope: &str) -> Result<(), StoreError> {
        let request = ConsentRequest { client_id: client_id.to_owned(), scope: scope.to_owned() };
        let _: Result<bool, serde_json::Value> = rpc::call(&self.object(username)?, "/consent/remember", &request).await.map_err(store_error)?;
        Ok(())
    }

    async fn add_grant(&self, username: &str, entry: &GrantEntry) -> Result<(), StoreError> {
        let _: Result<bool, serde_json::Value> = rpc::call(&self.object(username)?, "/grants/add", entry).await.map_err(store_error)?;
        Ok(())
    }

    async fn list_grants(&self, username: &str) -> Result<Vec<GrantEntry>, StoreError> {
        let listed: Result<Vec<GrantEntry>, serde_json::Value> =
            rpc::call(&self.object(username)?, "/grants/list", &serde_json::json!({})).await.map_err(store_error)?;
        listed.map_err(|e| StoreError(format!("grants/list: {e}")))
    }

    async fn remove_grant(&self, username: &str, grant_id: &str) -> Result<bool, StoreError> {
        let request = GrantRef { grant_id: grant_id.to_owned() };
        let removed: Result<bool, serde_json::Value> = rpc::call(&self.object(username)?, "/grants/remove", &request).await.map_err(store_error)?;
        Ok(removed.unwrap_or(false))
    }
}

/// The isolate's key ring (`keyring`).
pub struct IsolateKeyRing<'a>(pub &'a AppContext);

#[async_trait(?Send)]
impl SigningKeys for IsolateKeyRing<'_> {
    async fn key_ring(&self) -> Result<Rc<KeyRing>, StoreError> {
        keyring::load(self.0).await.map_err(store_error)
    }
}

/// The isolate's copy of the settings (`settings`).
pub struct IsolateSettings<'a>(pub &'a AppContext);

#[async_trait(?Send)]
impl Settings for IsolateSettings<'_> {
    async fn settings(&self) -> Result<ServerSettings, StoreError> {
        settings::load(self.0).await.map_err(store_error)
    }
}

/// `Date.now()`, in seconds.
pub struct WorkerClock;

impl Clock for WorkerClock {
    fn now(&self) -> i64 {
        now_secs()
    }
}

/// Every adapter the OAuth endpoints need, for one request.
pub struct AuthServer<'a> {
    ctx: &'a AppContext,
    grants: DoGrants<'a>,
    grant_status: DoGrantStatus<'a>,
    users: KvUsers<'a>,
    clients: KvClients<'a>,
    assertions: DoAssertionLog<'a>,
    accounts: DoAccounts<'a>,
    keys: IsolateKeyRing<'a>,
    settings: IsolateSettings<'a>,
    patients: Partitions<'a>,
    simulations: super::simulations::KvSimulations<'a>,
    client_limits: EdgeClientLimits<'a>,
    registration_limits: EdgeClientLimits<'a>,
}

/// An endpoint's per-client limit through the edge's rate-limiting binding (`crate::ops`); the
/// platform asks only once the client has authenticated (the token endpoint) or presented its
/// registration access token (client configuration).
pub struct EdgeClientLimits<'a>(pub &'a AppContext, pub platform::ops::Limited);

#[async_trait(?Send)]
impl platform::ports::ClientLimits for EdgeClientLimits<'_> {
    async fn over_limit(&self, client_id: &str) -> Result<Option<u32>, StoreError> {
        Ok(crate::ops::check_client(self.0, self.1, client_id).await)
    }
}

impl<'a> AuthServer<'a> {
    pub fn new(ctx: &'a AppContext) -> AuthServer<'a> {
        AuthServer {
            ctx,
            grants: DoGrants(ctx),
            grant_status: DoGrantStatus(&ctx.env),
            users: KvUsers(ctx),
            clients: KvClients(ctx),
            assertions: DoAssertionLog(ctx),
            accounts: DoAccounts(ctx),
            keys: IsolateKeyRing(ctx),
            settings: IsolateSettings(ctx),
            patients: Partitions(&ctx.env),
            simulations: super::simulations::KvSimulations(ctx),
            client_limits: EdgeClientLimits(ctx, platform::ops::Limited::Token),
            registration_limits: EdgeClientLimits(ctx, platform::ops::Limited::Registration),
        }
    }

    pub fn ports(&self) -> OAuthPorts<'_> {
        OAuthPorts {
            urls: &self.ctx.urls,
            grants: &self.grants,
            grant_status: &self.grant_status,
            users: &self.users,
            clients: &self.clients,
            client_keys: &FetchedClientKeys,
            assertions: &self.assertions,
            accounts: &self.accounts,
            keys: &self.keys,
            settings: &self.settings,
            signer: &WebCryptoSigner,
            verifier: &WebCryptoVerifier,
            random: &WebCryptoRandom,
            clock: &WorkerClock,
            simulations: &self.simulations,
            client_limits: &self.client_limits,
        }
    }

    /// The registration endpoints' ports (RFC 7591, RFC 7592); `admin_token` is the
    /// `ADMIN_TOKEN` secret, an initial access token.
    pub fn registration_ports<'b>(&'b self, admin_token: Option<&'b str>) -> platform::registration::RegistrationPorts<'b> {
        platform::registration::RegistrationPorts {
            urls: &self.ctx.urls,
            clients: &self.clients,
            store: &self.clients,
            settings: &self.settings,
            random: &WebCryptoRandom,
            clock: &WorkerClock,
            admin_token,
            client_limits: &self.registration_limits,
        }
    }

    /// The sign-in's ports (the pickers read the FHIR partitions).
    pub fn signin_ports(&self) -> SignInPorts<'_> {
        SignInPorts {
            urls: &self.ctx.urls,
            grants: &self.grants,
            clients: &self.clients,
            users: &self.users,
            accounts: &self.accounts,
            assertions: &self.assertions,
            keys: &self.keys,
            settings: &self.settings,
            patients: &self.patients,
            verifier: &WebCryptoVerifier,
            random: &WebCryptoRandom,
            clock: &WorkerClock,
            simulations: &self.simulations,
        }
    }
}
