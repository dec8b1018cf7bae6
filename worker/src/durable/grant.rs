//! One Durable Object per authorization grant (see `platform::grants`). Its id starts the
//! interaction handle and the authorization code.

use super::rpc;
use super::JsonCell;
use crate::keyring::now_secs;
use platform::grants::{self, Command, GrantRecord};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

#[durable_object]
pub struct Grant {
    state: State,
}

impl DurableObject for Grant {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let cell = JsonCell::open(self.state.storage().sql())?;
        match req.path().as_str() {
            "/apply" => {}
            // Internal diagnostics (objects are not reachable from outside the Worker): the
            // record, which holds hashes of the code and handles, never the secrets.
            "/peek" => return Response::from_json(&cell.load::<GrantRecord>()?),
            _ => return Response::error("unknown grant operation", 404),
        }
        let command: Command = rpc::body(req).await?;
        // Load, apply, store: no await between, so commands on one grant never interleave.
        let record: Option<GrantRecord> = cell.load()?;
        match grants::apply(record, command, now_secs()) {
            Ok((record, reply)) => {
                cell.store(&record)?;
                if let Some(at) = record.next_cleanup() {
                    self.state.storage().set_alarm(std::time::Duration::from_secs((at - now_secs()).max(1) as u64)).await?;
                }
                Response::from_json(&reply)
            }
            Err(error) => rpc::domain_error(&error),
        }
    }

    /// Drops the clear-text grace copy of a rotated refresh token once its window is over.
    async fn alarm(&self) -> Result<Response> {
        let cell = JsonCell::open(self.state.storage().sql())?;
        if let Some(mut record) = cell.load::<GrantRecord>()? {
            record.cleanup(now_secs() + 1);
            cell.store(&record)?;
        }
        Response::ok("cleaned")
    }
}
