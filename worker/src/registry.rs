//! Clients and users, read from KV and cached per isolate for [`CACHE_SECS`]. An admin change
//! reaches the isolate that made it at once and the others within a minute (plus KV's own
//! propagation, about 60 s between locations).

use crate::context::AppContext;
use crate::http::AppError;
use crate::keyring::now_secs;
use crate::settings::kv;
use platform::clients::{self, Client};
use platform::users::{self, User};
use std::cell::RefCell;
use std::collections::HashMap;

const CACHE_SECS: i64 = 60;

thread_local! {
    static CLIENTS: RefCell<HashMap<String, (Option<Client>, i64)>> = RefCell::new(HashMap::new());
}

pub async fn client(ctx: &AppContext, client_id: &str) -> Result<Option<Client>, AppError> {
    let now = now_secs();
    let cached = CLIENTS.with(|c| c.borrow().get(client_id).filter(|(_, at)| now - at < CACHE_SECS).map(|(v, _)| v.clone()));
    if let Some(client) = cached {
        return Ok(client);
    }
    let loaded = clients::load(&kv(ctx)?, client_id).await.map_err(AppError::internal)?;
    CLIENTS.with(|c| {
        let mut map = c.borrow_mut();
        if map.len() > 1000 {
            map.clear(); // unknown ids are cached too; keep the map bounded
        }
        map.insert(client_id.to_owned(), (loaded.clone(), now));
    });
    Ok(loaded)
}

pub async fn save_client(ctx: &AppContext, client: &Client) -> Result<(), AppError> {
    clients::save(&kv(ctx)?, client).await.map_err(AppError::internal)?;
    CLIENTS.with(|c| c.borrow_mut().insert(client.client_id.clone(), (Some(client.clone()), now_secs())));
    CLIENT_IDS.with(|c| *c.borrow_mut() = None);
    Ok(())
}

pub async fn delete_client(ctx: &AppContext, client_id: &str) -> Result<(), AppError> {
    use platform::ports::KvStore;
    kv(ctx)?.delete(&format!("{}{client_id}", clients::KEY_PREFIX)).await.map_err(AppError::internal)?;
    CLIENTS.with(|c| c.borrow_mut().remove(client_id));
    CLIENT_IDS.with(|c| *c.borrow_mut() = None);
    Ok(())
}

/// Users are read at login only, so they are not cached.
pub async fn user(ctx: &AppContext, username: &str) -> Result<Option<User>, AppError> {
    users::load(&kv(ctx)?, username).await.map_err(AppError::internal)
}

pub async fn save_user(ctx: &AppContext, user: &User) -> Result<(), AppError> {
    users::save(&kv(ctx)?, user).await.map_err(AppError::internal)
}

thread_local! {
    static CLIENT_IDS: RefCell<Option<(Vec<String>, i64)>> = const { RefCell::new(None) };
}

/// Every registered client (the first 1000 keys of `client:*`; the portal lists them). The
/// key list is cached per isolate for [`CACHE_SECS`] (a KV list costs like a write), and each
/// client is read through the cache above.
pub async fn all_clients(ctx: &AppContext) -> Result<Vec<Client>, AppError> {
    let now = now_secs();
    let cached = CLIENT_IDS.with(|c| c.borrow().as_ref().filter(|(_, at)| now - at < CACHE_SECS).map(|(ids, _)| ids.clone()));
    let ids = match cached {
        Some(ids) => ids,
        None => {
            let listed =
                ctx.env.kv("CONFIG")?.list().prefix(clients::KEY_PREFIX.to_owned()).execute().await.map_err(|e| AppError::internal(format!("{e:?}")))?;
            let ids: Vec<String> = listed.keys.iter().filter_map(|k| k.name.strip_prefix(clients::KEY_PREFIX).map(str::to_owned)).collect();
            CLIENT_IDS.with(|c| *c.borrow_mut() = Some((ids.clone(), now)));
            ids
        }
    };
    let mut found = Vec::new();
    for id in ids {
        if let Some(client) = client(ctx, &id).await? {
            found.push(client);
        }
    }
    Ok(found)
}

/// Drops this isolate's cached clients and client list (a restore wrote KV directly).
pub fn forget_all() {
    CLIENTS.with(|c| c.borrow_mut().clear());
    CLIENT_IDS.with(|c| *c.borrow_mut() = None);
}
