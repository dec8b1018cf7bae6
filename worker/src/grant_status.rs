//! The grant-status port over the GRANTS Durable Objects, with a short per-isolate cache of
//! *active* answers: a revoked grant stops working within [`ACTIVE_CACHE_SECS`] in an isolate
//! that saw it active, and at once everywhere else (a revocation in this isolate drops its
//! cache entry immediately).

use crate::durable::assertion_log::GrantCall;
use crate::durable::rpc;
use crate::http::AppError;
use crate::keyring::now_secs;
use async_trait::async_trait;
use platform::grants::{Command, GrantError, Reply};
use platform::guard::GrantStatus;
use platform::ports::StoreError;
use std::cell::RefCell;
use std::collections::HashMap;
use worker::Env;

pub const ACTIVE_CACHE_SECS: i64 = 30;

thread_local! {
    static ACTIVE: RefCell<HashMap<String, i64>> = RefCell::new(HashMap::new());
}

pub struct DoGrantStatus<'a>(pub &'a Env);

/// The grant object behind a token's id (64 hex digits).
pub fn stub(env: &Env, id: &str) -> Option<rpc::Object> {
    if !platform::grant_handle::is_grant_id(id) {
        return None;
    }
    let namespace = env.durable_object("GRANTS").ok()?;
    // A grant restored from a backup of another deployment has an id of that deployment's
    // namespace, which this one refuses (`idFromString` checks it): such a grant lives in the
    // object named after its id (`backup` restores it there).
    let id = namespace.id_from_string(id).or_else(|_| namespace.id_from_name(&restored_name(id))).ok()?;
    id.get_stub().ok().map(rpc::Object::from)
}

/// The name of the object that keeps a restored grant whose id this namespace refuses.
pub fn restored_name(id: &str) -> String {
    format!("restored-grant/{id}")
}

/// The object that keeps a backend token's grant: its client's assertion log, whose id the
/// grant id starts with (`platform::grant_handle::is_backend_grant_id`).
fn backend_stub(env: &Env, id: &str) -> Option<rpc::Object> {
    if !platform::grant_handle::is_backend_grant_id(id) {
        return None;
    }
    env.durable_object("ASSERTIONS").ok()?.id_from_string(&id[..64]).ok()?.get_stub().ok().map(rpc::Object::from)
}

pub async fn apply(env: &Env, id: &str, command: &Command) -> Result<Result<Reply, GrantError>, AppError> {
    let reply = if let Some(stub) = stub(env, id) {
        rpc::call(&stub, "/apply", command).await?
    } else if let Some(stub) = backend_stub(env, id) {
        rpc::call(&stub, "/grant", &GrantCall { id: id.to_owned(), command: command.clone() }).await?
    } else {
        return Ok(Err(GrantError::NotFound));
    };
    if matches!(reply, Ok(Reply::Revoked)) {
        forget(id);
    }
    Ok(reply)
}

pub fn forget(id: &str) {
    ACTIVE.with(|a| a.borrow_mut().remove(id));
}

#[async_trait(?Send)]
impl GrantStatus for DoGrantStatus<'_> {
    async fn is_active(&self, grant_id: &str) -> Result<bool, StoreError> {
        let now = now_secs();
        if ACTIVE.with(|a| a.borrow().get(grant_id).is_some_and(|at| now - at < ACTIVE_CACHE_SECS)) {
            return Ok(true);
        }
        let reply = apply(self.0, grant_id, &Command::Status).await.map_err(|e| StoreError(format!("{e:?}")))?;
        let active = matches!(reply, Ok(Reply::Active { .. } | Reply::BackendActive { .. }));
        ACTIVE.with(|a| {
            let mut map = a.borrow_mut();
            if map.len() > 10_000 {
                map.clear();
            }
            if active {
                map.insert(grant_id.to_owned(), now);
            } else {
                map.remove(grant_id);
            }
        });
        Ok(active)
    }
}
