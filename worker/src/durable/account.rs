//! One Durable Object per username (see `platform::accounts`): failed-login throttling,
//! sessions and remembered consents, strictly ordered.

use super::rpc;
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
        let path = req.path();
        let cell = JsonCell::open(&self.state.storage(), &platform::schema::ACCOUNT)?;
        let now = now_secs();
        match path.as_str() {
            "/login" => {
                let login: LoginRequest = rpc::body(req).await?;
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
                    Ok(outcome) => Response::from_json::<LoginOutcome>(&outcome),
                    Err(message) => Response::error(message, 500),
                }
            }
            "/session/check" => {
                let request: SessionRequest = rpc::body(req).await?;
                let state: AccountState = cell.load()?.unwrap_or_default();
                let handle = SessionHandle { username: String::new(), id: request.id, secret: request.secret };
                Response::from_json(&state.check_session(&handle, now))
            }
            "/session/alive" => {
                let request: SessionRequest = rpc::body(req).await?;
                let state: AccountState = cell.load()?.unwrap_or_default();
                Response::from_json(&state.session_alive(&request.id, now))
            }
            "/session/end" => {
                let request: SessionRequest = rpc::body(req).await?;
                let mut state: AccountState = cell.load()?.unwrap_or_default();
                state.end_session(&request.id);
                cell.store(&state)?;
                Response::from_json(&true)
            }
            "/grants/add" => {
                let entry: GrantEntry = rpc::body(req).await?;
                let mut state: AccountState = cell.load()?.unwrap_or_default();
                state.add_grant(entry);
                cell.store(&state)?;
                Response::from_json(&true)
            }
            "/grants/remove" => {
                let request: GrantRef = rpc::body(req).await?;
                let mut state: AccountState = cell.load()?.unwrap_or_default();
                let removed = state.remove_grant(&request.grant_id);
                cell.store(&state)?;
                Response::from_json(&removed)
            }
            "/grants/list" => {
                let state: AccountState = cell.load()?.unwrap_or_default();
                Response::from_json(&state.grants)
            }
            "/consent/remember" => {
                let request: ConsentRequest = rpc::body(req).await?;
                let mut state: AccountState = cell.load()?.unwrap_or_default();
                state.remember_consent(&request.client_id, &request.scope, now);
                cell.store(&state)?;
                Response::from_json(&true)
            }
            "/consent/check" => {
                let request: ConsentRequest = rpc::body(req).await?;
                let state: AccountState = cell.load()?.unwrap_or_default();
                Response::from_json(&state.consent_covers(&request.client_id, &request.scope))
            }
            // Backup and restore (`platform::backup`): the state exactly as stored.
            "/backup" => Response::from_json(&cell.load::<Box<serde_json::value::RawValue>>()?),
            "/restore" => {
                let request: RestoreAccount = rpc::raw_body(req).await?;
                cell.store(&request.state)?;
                Response::from_json(&true)
            }
            _ => Response::error("unknown account operation", 404),
        }
    }
}
