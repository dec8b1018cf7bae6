//! One Durable Object per authorization grant (see `platform::grants`). Its id is the grant id
//! of the sign-in URL and starts the authorization code and the refresh tokens.

use super::rpc::{self, Answer};
use super::JsonCell;
use crate::keyring::now_secs;
use platform::grants::{self, Command, GrantRecord};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

/// A grant record as a backup holds it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RestoreGrant {
    pub record: Box<serde_json::value::RawValue>,
}

#[durable_object]
pub struct Grant {
    state: State,
    /// Whether this instance has migrated its storage.
    migrated: std::cell::Cell<bool>,
}

impl DurableObject for Grant {
    fn new(state: State, _env: Env) -> Self {
        Self { state, migrated: std::cell::Cell::new(false) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        rpc::serve_fetch(self, req).await
    }

    /// Drops the clear-text grace copy of a rotated refresh token once its window is over,
    /// and deletes the whole record once nothing in it can matter (`GrantRecord::deletable_at`):
    /// abandoned authorizations, closed grants and expired backend tokens leave no storage.
    async fn alarm(&self) -> Result<Response> {
        let cell = JsonCell::open_once(&self.state.storage(), &platform::schema::GRANT, &self.migrated)?;
        let now = now_secs();
        if let Some(mut record) = cell.load::<GrantRecord>()? {
            if now >= record.deletable_at() {
                self.state.storage().delete_all().await?;
                // The tables went with it: a later call on this instance starts afresh.
                self.migrated.set(false);
                return Response::ok("deleted");
            }
            record.cleanup(now + 1);
            cell.store(&record)?;
            self.wake_at(record.next_alarm()).await?;
        }
        Response::ok("cleaned")
    }
}

impl rpc::Commands for Grant {
    async fn command(&self, path: &str, body: String) -> Result<Answer> {
        if path == "/apply" && !self.migrated.get() && super::schema::is_blank(&self.state.storage().sql())? {
            // No grant here: a command that needs one is refused without creating storage
            // (a made-up grant id must not leave an object behind).
            let command: Command = rpc::parse(&body)?;
            return match grants::apply(None, command.clone(), now_secs()) {
                Err(error) => Answer::refused(&error),
                Ok(_) => self.run(command).await,
            };
        }
        let cell = JsonCell::open_once(&self.state.storage(), &platform::schema::GRANT, &self.migrated)?;
        match path {
            "/apply" => self.run(rpc::parse(&body)?).await,
            // Internal diagnostics (objects are not reachable from outside the Worker): the
            // record, which holds hashes of the code and handles, never the secrets.
            "/peek" => Answer::json(&cell.load::<GrantRecord>()?),
            // Backup and restore (`platform::backup`): the record exactly as stored; a
            // restored record gets its cleanup alarm again.
            "/backup" => Answer::json(&cell.load::<Box<serde_json::value::RawValue>>()?),
            "/restore" => {
                let request: RestoreGrant = rpc::parse(&body)?;
                let record: GrantRecord = serde_json::from_str(request.record.get())?;
                cell.store(&request.record)?;
                self.wake_at(record.next_alarm()).await?;
                Answer::json(&true)
            }
            _ => Err(worker::Error::RustError(format!("unknown grant operation {path}"))),
        }
    }
}

crate::rpc_methods!(Grant);

impl Grant {
    /// Load, apply, store: no await between, so commands on one grant never interleave.
    async fn run(&self, command: Command) -> Result<Answer> {
        let cell = JsonCell::open_once(&self.state.storage(), &platform::schema::GRANT, &self.migrated)?;
        // A status check changes nothing worth a new alarm (it runs on every FHIR request).
        let changes = !matches!(command, Command::Status);
        let record: Option<GrantRecord> = cell.load()?;
        match grants::apply(record, command, now_secs()) {
            Ok((record, reply)) => {
                cell.store(&record)?;
                if changes {
                    self.wake_at(record.next_alarm()).await?;
                }
                Answer::json(&reply)
            }
            Err(error) => Answer::refused(&error),
        }
    }

    async fn wake_at(&self, at: i64) -> Result<()> {
        let secs = (at - now_secs()).max(1) as u64;
        self.state.storage().set_alarm(std::time::Duration::from_secs(secs)).await
    }
}
