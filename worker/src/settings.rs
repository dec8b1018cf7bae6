//! The isolate's copy of the server settings (KV), refreshed every [`SETTINGS_CACHE_SECS`].

use crate::adapters::kv::WorkersKv;
use crate::context::AppContext;
use crate::http::AppError;
use crate::keyring::now_secs;
use platform::settings::{self, ServerSettings};
use std::cell::RefCell;

/// KV itself propagates between locations in about 60 s; caching as long adds no new
/// staleness and saves a KV read per request.
const SETTINGS_CACHE_SECS: i64 = 60;

thread_local! {
    static CACHE: RefCell<Option<(ServerSettings, i64)>> = const { RefCell::new(None) };
}

pub fn kv(ctx: &AppContext) -> Result<WorkersKv, AppError> {
    Ok(WorkersKv(ctx.env.kv("CONFIG")?))
}

pub async fn load(ctx: &AppContext) -> Result<ServerSettings, AppError> {
    let now = now_secs();
    if let Some(cached) = CACHE.with(|c| c.borrow().as_ref().filter(|(_, at)| now - at < SETTINGS_CACHE_SECS).map(|(s, _)| s.clone())) {
        return Ok(cached);
    }
    let loaded = settings::load(&kv(ctx)?).await.map_err(AppError::internal)?;
    CACHE.with(|c| *c.borrow_mut() = Some((loaded.clone(), now)));
    Ok(loaded)
}

pub async fn save(ctx: &AppContext, new: &ServerSettings) -> Result<(), AppError> {
    settings::save(&kv(ctx)?, new).await.map_err(AppError::internal)?;
    CACHE.with(|c| *c.borrow_mut() = Some((new.clone(), now_secs())));
    Ok(())
}

/// Drops this isolate's cached settings (a restore wrote KV directly).
pub fn forget() {
    CACHE.with(|c| *c.borrow_mut() = None);
}
