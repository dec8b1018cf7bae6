//! One Durable Object per client that authenticates with `private_key_jwt`: the `jti`s it has
//! used while their assertions are valid, so a replayed assertion is refused everywhere.

use super::rpc;
use super::JsonCell;
use crate::keyring::now_secs;
use platform::assertions::JtiLog;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

#[derive(Serialize, Deserialize)]
pub struct RecordRequest {
    pub jti: String,
    pub exp: i64,
}

#[durable_object]
pub struct AssertionLog {
    state: State,
}

impl DurableObject for AssertionLog {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        if req.path() != "/record" {
            return Response::error("unknown assertion log operation", 404);
        }
        let request: RecordRequest = rpc::body(req).await?;
        let cell = JsonCell::open(self.state.storage().sql())?;
        let mut log: JtiLog = cell.load()?.unwrap_or_default();
        let fresh = log.record(&request.jti, request.exp, now_secs());
        cell.store(&log)?;
        Response::from_json(&fresh)
    }
}
