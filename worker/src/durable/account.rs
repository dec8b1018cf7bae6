//! One Durable Object per username (see `platform::accounts`): failed-login throttling,
//! sessions and remembered consents, strictly ordered.

use super::rpc::{self, Answer};
use super::JsonCell;
use crate::adapters::webcrypto::{WebCryptoPasswordHasher, WebCryptoRandom};
use crate::keyring::now_secs;
use platform::accounts::{AccountState, GrantEntry, LoginOutcome, LoginSource, SessionHandle, UnknownUsers};
use platform::users::User;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

#[derive(Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub user: Option<User>,
    pub password: String,
    #[serde(default)]
    pub source: LoginSource,
    /// This object is a shared one for unknown usernames (`accounts::unknown_user_shard`).
    #[serde(default)]
    pub unknown: bool,
}

#[derive(Serialize, Deserialize)]
pub struct SessionRequest {
    pub id: String,
    pub secret: String,
}

#[derive(Serialize, Deserialize)]
pub struct GrantRef {
    pub grant_id: String,
}

#[derive(Serialize, Deserialize)]
pub struct ConsentRequest {
    pub client_id: String,
    pub scope: String,
}

/// An account's state as a backup holds it.
#[derive(Serialize, Deserialize)]
pub struct RestoreAccount {
    pub state: Box<serde_json::value::RawValue>,
}

#[durable_object]
pub struct Account {
    state: State,
}

impl DurableObject for Account {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        rpc::serve_fetch(self, req).await
    }
}

impl rpc::Commands for Account {
    async fn command(&self, path: &str, body: String) -> Result<Answer> {
        let cell = JsonCell::open(&self.state.storage(), &platform::schema::ACCOUNT)?;
        let now = now_secs();
        match path {
            "/login" => {
                let login: LoginRequest = rpc::parse(&body)?;
                let storage = self.state.storage();
                // PBKDF2 awaits WebCrypto; block other events meanwhile so two attempts never
                // read the same failure count.
                let outcome = self
                    .state
                    .block_concurrency_while(async move {
                        let cell = JsonCell::open(&storage, &platform::schema::ACCOUNT)?;
                        if login.unknown {
                            // No such user: the same work and throttling, in a shared object.
                            let mut shard: UnknownUsers = cell.load()?.unwrap_or_default();
                            let outcome = shard
                                .state(&login.username, now)
                                .login(&login.username, None, &login.password, &login.source, &WebCryptoPasswordHasher, &WebCryptoRandom, now)
                                .await;
                            if outcome.is_ok() {
                                cell.store(&shard)?;
                            }
                            return Ok(outcome.map_err(|e| e.to_string()));
                        }
                        let mut state: AccountState = cell.load()?.unwrap_or_default();
                        let outcome = state
                            .login(&login.username, login.user.as_ref(), &login.password, &login.source, &WebCryptoPasswordHasher, &WebCryptoRandom, now)
                            .await;
                        if outcome.is_ok() {
                            cell.store(&state)?;
                        }
                        Ok(outcome.map_err(|e| e.to_string()))
                    })
                    .await?;
                match outcome {
                    Ok(outcome) => Answer::json::<LoginOutcome>(&outcome),
                    Err(message) => Err(worker::Error::RustError(message)),
                }
            }
            "/session/check" => {
                let request: SessionRequest = rpc::parse(&body)?;
                let state: AccountState = cell.load()?.unwrap_or_default();
                let handle = SessionHandle { username: String::new(), id: request.id, secret: request.secret };
                Answer::json(&state.check_session(&handle, now))
            }
            "/session/alive" => {
                let request: SessionRequest = rpc::parse(&body)?;
                let state: AccountState = cell.load()?.unwrap_or_default();
                Answer::json(&state.session_alive(&request.id, now))
            }
            "/session/end" => {
                let request: SessionRequest = rpc::parse(&body)?;
                let mut state: AccountState = cell.load()?.unwrap_or_default();
                state.end_session(&request.id);
                cell.store(&state)?;
                Answer::json(&true)
            }
            "/grants/add" => {
                let entry: GrantEntry = rpc::parse(&body)?;
                let mut state: AccountState = cell.load()?.unwrap_or_default();
                state.add_grant(entry);
                cell.store(&state)?;
                Answer::json(&true)
            }
            "/grants/remove" => {
                let request: GrantRef = rpc::parse(&body)?;
                let mut state: AccountState = cell.load()?.unwrap_or_default();
                let removed = state.remove_grant(&request.grant_id);
                cell.store(&state)?;
                Answer::json(&removed)
            }
            "/grants/list" => {
                let state: AccountState = cell.load()?.unwrap_or_default();
                Answer::json(&state.grants)
            }
            "/consent/remember" => {
                let request: ConsentRequest = rpc::parse(&body)?;
                let mut state: AccountState = cell.load()?.unwrap_or_default();
                state.remember_consent(&request.client_id, &request.scope, now);
                cell.store(&state)?;
                Answer::json(&true)
            }
            "/consent/check" => {
                let request: ConsentRequest = rpc::parse(&body)?;
                let state: AccountState = cell.load()?.unwrap_or_default();
                Answer::json(&state.consent_covers(&request.client_id, &request.scope))
            }
            // Backup and restore (`platform::backup`): the state exactly as stored.
            "/backup" => Answer::json(&cell.load::<Box<serde_json::value::RawValue>>()?),
            "/restore" => {
                let request: RestoreAccount = rpc::parse(&body)?;
                cell.store(&request.state)?;
                Answer::json(&true)
            }
            _ => Err(worker::Error::RustError(format!("unknown account operation {path}"))),
        }
    }
}

crate::rpc_methods!(Account);
