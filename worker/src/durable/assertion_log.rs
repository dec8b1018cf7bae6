//! One Durable Object per client that authenticates with `private_key_jwt`: the `jti`s it has
//! used while their assertions are valid, so a replayed assertion is refused everywhere, and
//! the grants of its backend tokens (`client_credentials`: one short-lived grant per token, so
//! that a token can be revoked), each the same `platform::grants` record a `Grant` object
//! keeps, one row per grant. Keeping them here rather than in an object per token saves the
//! creation of a Durable Object per token (≈2.7 ms of CPU each, BENCHMARKS.md).
//! One indexed row per `jti` and per grant (not one document), so both stay O(log n) under load;
//! rows are deleted once nothing in them can matter, by a sweep at most once a minute (a
//! grant row past its `deletable_at` is treated as gone until then).

use super::rpc::{self, Answer};
use crate::keyring::now_secs;
use platform::assertions::forget_before;
use platform::grants::{self, Command, GrantError, GrantRecord, Reply};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

#[derive(Serialize, Deserialize)]
pub struct RecordRequest {
    pub jti: String,
    pub exp: i64,
}

/// A `jti` to record and a backend grant to start, in one call.
#[derive(Serialize, Deserialize)]
pub struct TokenRequest {
    pub assertion: RecordRequest,
    pub grant: GrantCall,
}

/// A command for one of the client's backend grants.
#[derive(Serialize, Deserialize)]
pub struct GrantCall {
    pub id: String,
    pub command: Command,
}

#[durable_object]
pub struct AssertionLog {
    state: State,
    /// Whether this instance has made its tables.
    ready: std::cell::Cell<bool>,
    /// When this instance last deleted the rows that no longer matter.
    swept_at: std::cell::Cell<i64>,
}

/// Seconds between two sweeps of an object's dead rows: two `DELETE`s per token cost more
/// than the rows they keep away (bench/profile-tokens.mjs).
const SWEEP_EVERY_SECS: i64 = 60;

impl DurableObject for AssertionLog {
    fn new(state: State, _env: Env) -> Self {
        Self { state, ready: std::cell::Cell::new(false), swept_at: std::cell::Cell::new(i64::MIN) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        rpc::serve_fetch(self, req).await
    }
}

impl rpc::Commands for AssertionLog {
    async fn command(&self, path: &str, body: String) -> Result<Answer> {
        match path {
            "/record" => Answer::json(&self.insert_jti(rpc::parse(&body)?)?),
            "/grant" => self.grant(rpc::parse(&body)?),
            "/token" => self.token(rpc::parse(&body)?),
            _ => Err(worker::Error::RustError(format!("unknown assertion log operation {path}"))),
        }
    }
}

crate::rpc_methods!(AssertionLog);

impl AssertionLog {
    fn grant(&self, call: GrantCall) -> Result<Answer> {
        match self.apply_grant(call)? {
            Ok(reply) => Answer::json(&reply),
            Err(error) => Answer::refused(&error),
        }
    }

    /// A backend token's two writes in one call: the `jti`, then, when it is new, the start of
    /// the token's grant. `null` for a replay (nothing started).
    fn token(&self, request: TokenRequest) -> Result<Answer> {
        if !self.insert_jti(request.assertion)? {
            return Answer::json(&Option::<Reply>::None);
        }
        match self.apply_grant(request.grant)? {
            Ok(reply) => Answer::json(&Some(reply)),
            Err(error) => Answer::refused(&error),
        }
    }

    /// Whether `jti` was new (and is now recorded until its assertion expires).
    fn insert_jti(&self, request: RecordRequest) -> Result<bool> {
        // An assertion this object already counts as dead is never recorded as new (its row
        // could be replaced below; the Worker's clock may lag this one's).
        if request.exp <= forget_before(now_secs()) {
            return Ok(false);
        }
        let sql = self.tables()?;
        self.sweep(&sql)?;
        // RETURNING yields the row only when it was written: new, or replacing a row that is
        // dead but not yet swept (the cursor is lazy, so its counters would not be final
        // before it is read).
        let upsert = "INSERT INTO jti (jti, exp) VALUES (?1, ?2) ON CONFLICT (jti) DO UPDATE SET exp = excluded.exp WHERE jti.exp <= ?3 RETURNING jti";
        let inserted: Vec<serde_json::Value> = sql.exec(upsert, vec![request.jti.into(), request.exp.into(), forget_before(now_secs()).into()])?.to_array()?;
        Ok(inserted.len() == 1)
    }

    /// The object's database, migrated on this instance's first call (not on every call: two
    /// reads per token).
    fn tables(&self) -> Result<worker::SqlStorage> {
        let sql = self.state.storage().sql();
        if !self.ready.get() {
            // `platform::schema::ASSERTION_LOG`: the jti and grants tables.
            super::schema::migrate(&self.state.storage(), &platform::schema::ASSERTION_LOG)?;
            self.ready.set(true);
        }
        Ok(sql)
    }

    /// Deletes the `jti`s and grants that can no longer matter, at most once a minute.
    fn sweep(&self, sql: &worker::SqlStorage) -> Result<()> {
        let now = now_secs();
        if now < self.swept_at.get().saturating_add(SWEEP_EVERY_SECS) {
            return Ok(());
        }
        sql.exec("DELETE FROM jti WHERE exp <= ?", vec![forget_before(now).into()])?;
        sql.exec("DELETE FROM grants WHERE deletable_at <= ?", vec![now.into()])?;
        self.swept_at.set(now);
        Ok(())
    }

    /// Load, apply, store with no await between, as the `Grant` object does.
    fn apply_grant(&self, call: GrantCall) -> Result<std::result::Result<Reply, GrantError>> {
        let sql = self.tables()?;
        let now = now_secs();
        self.sweep(&sql)?;
        #[derive(Deserialize)]
        struct Row {
            record: String,
        }
        let rows: Vec<Row> = sql.exec("SELECT record FROM grants WHERE id = ? AND deletable_at > ?", vec![call.id.clone().into(), now.into()])?.to_array()?;
        let record: Option<GrantRecord> = match rows.first() {
            Some(row) => Some(serde_json::from_str(&row.record).map_err(|e| worker::Error::RustError(e.to_string()))?),
            None => None,
        };
        Ok(match grants::apply(record, call.command, now) {
            Ok((record, reply)) => {
                let text = serde_json::to_string(&record).map_err(|e| worker::Error::RustError(e.to_string()))?;
                let upsert = "INSERT INTO grants (id, record, deletable_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET record = excluded.record, deletable_at = excluded.deletable_at";
                sql.exec(upsert, vec![call.id.into(), text.into(), record.deletable_at().into()])?;
                Ok(reply)
            }
            Err(error) => Err(error),
        })
    }
}
