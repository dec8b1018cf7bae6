//! One Durable Object per client that authenticates with `private_key_jwt`: the `jti`s it has
//! used while their assertions are valid, so a replayed assertion is refused everywhere.
//! One indexed row per `jti` (not one document), so recording stays O(log n) under load.

use super::rpc;
use crate::keyring::now_secs;
use platform::assertions::forget_before;
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
        let sql = self.state.storage().sql();
        sql.exec("CREATE TABLE IF NOT EXISTS jti (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL)", None)?;
        sql.exec("CREATE INDEX IF NOT EXISTS jti_by_exp ON jti (exp)", None)?;
        sql.exec("DELETE FROM jti WHERE exp <= ?", vec![forget_before(now_secs()).into()])?;
        // RETURNING yields the row only when it was inserted (the cursor is lazy, so its
        // counters would not be final before it is read).
        let inserted: Vec<serde_json::Value> = sql
            .exec("INSERT INTO jti (jti, exp) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING RETURNING jti", vec![request.jti.into(), request.exp.into()])?
            .to_array()?;
        Response::from_json(&(inserted.len() == 1))
    }
}
