//! The isolate's key ring: from the `SIGNING_KEYS` secret when it is set, otherwise from the
//! key vault Durable Object. Loaded once and kept for [`KEY_CACHE_SECS`].

use crate::context::{vars, AppContext};
use crate::durable::key_vault;
use crate::http::AppError;
use platform::keys::{KeyRing, KEY_CACHE_SECS};
use platform::ports::KeyRecord;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    static CACHE: RefCell<Option<(Rc<KeyRing>, i64)>> = const { RefCell::new(None) };
}

pub fn now_secs() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}

/// The key ring, from the isolate's cache when fresh.
pub async fn load(ctx: &AppContext) -> Result<Rc<KeyRing>, AppError> {
    let now = now_secs();
    if let Some(ring) = CACHE.with(|c| c.borrow().as_ref().filter(|(_, at)| now - at < KEY_CACHE_SECS).map(|(r, _)| r.clone())) {
        return Ok(ring);
    }
    let ring = match ctx.secret(vars::SIGNING_KEYS) {
        Some(secret) => KeyRing::from_secret(&secret).map_err(AppError::internal)?,
        None => KeyRing::new(vault_call(ctx, "/keys").await?).map_err(AppError::internal)?,
    };
    let ring = Rc::new(ring);
    CACHE.with(|c| *c.borrow_mut() = Some((ring.clone(), now)));
    Ok(ring)
}

/// Adds new keys in the vault (see `platform::keys::rotate_keys`) and drops this isolate's
/// cache. Other isolates see the new keys within [`KEY_CACHE_SECS`], before they sign.
pub async fn rotate(ctx: &AppContext) -> Result<Rc<KeyRing>, AppError> {
    let ring = Rc::new(KeyRing::new(vault_call(ctx, "/rotate").await?).map_err(AppError::internal)?);
    CACHE.with(|c| *c.borrow_mut() = Some((ring.clone(), now_secs())));
    Ok(ring)
}

async fn vault_call(ctx: &AppContext, op: &str) -> Result<Vec<KeyRecord>, AppError> {
    let vault = crate::durable::rpc::by_name(&ctx.env, "KEY_VAULT", key_vault::INSTANCE)?;
    match crate::durable::rpc::call::<_, _, serde_json::Value>(&vault, op, &()).await? {
        Ok(records) => Ok(records),
        Err(refused) => Err(AppError::internal(format!("key vault refused {op}: {refused}"))),
    }
}

/// Drops this isolate's key ring (a restore replaced the vault's keys).
pub fn forget() {
    CACHE.with(|c| *c.borrow_mut() = None);
}
