//! A client's public keys: its inline JWKS, or its JWKS URL fetched and cached per isolate
//! for as long as the answer's `Cache-Control` allows (bounded, see
//! `platform::assertions::jwks_cache_secs`), fetched again when an assertion names a `kid`
//! the cached set lacks (at most every `platform::assertions::JWKS_REFETCH_MIN_SECS`).

use crate::keyring::now_secs;
use platform::assertions::{cached_jwks_usable, jwks_cache_secs};
use platform::clients::Client;
use smart_protocol::jose::Jwks;
use std::cell::RefCell;
use std::collections::HashMap;
use worker::{Fetch, Method, Request, RequestInit};

struct Cached {
    jwks: Jwks,
    fetched_at: i64,
    expires_at: i64,
}

thread_local! {
    static CACHE: RefCell<HashMap<String, Cached>> = RefCell::new(HashMap::new());
}

/// The client's keys; `need_kid`: the assertion's key is not in what we have, fetch again
/// if allowed.
pub async fn keys(client: &Client, refetch_for_unknown_kid: bool) -> Result<Jwks, String> {
    if let Some(jwks) = &client.jwks {
        return Ok(jwks.clone());
    }
    let Some(url) = &client.jwks_uri else { return Err("the client registered no keys".into()) };
    let now = now_secs();
    let cached = CACHE.with(|c| {
        let cache = c.borrow();
        let entry = cache.get(url)?;
        cached_jwks_usable(now, entry.fetched_at, entry.expires_at, refetch_for_unknown_kid).then(|| entry.jwks.clone())
    });
    if let Some(jwks) = cached {
        return Ok(jwks);
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get);
    let request = Request::new_with_init(url, &init).map_err(|e| e.to_string())?;
    let _ = request.headers().set("Accept", "application/json");
    let mut response = Fetch::Request(request).send().await.map_err(|e| format!("fetching {url}: {e}"))?;
    if response.status_code() != 200 {
        return Err(format!("{url} answered {}", response.status_code()));
    }
    let cache_control = response.headers().get("Cache-Control").ok().flatten();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if text.len() > 64 * 1024 {
        return Err(format!("{url} returned more than 64 KiB"));
    }
    let jwks: Jwks = serde_json::from_str(&text).map_err(|e| format!("{url} is not a JWKS: {e}"))?;
    let expires_at = now + jwks_cache_secs(cache_control.as_deref());
    CACHE.with(|c| c.borrow_mut().insert(url.clone(), Cached { jwks: jwks.clone(), fetched_at: now, expires_at }));
    Ok(jwks)
}

/// [`keys`] as the platform's port.
pub struct FetchedClientKeys;

#[async_trait::async_trait(?Send)]
impl platform::ports::ClientKeys for FetchedClientKeys {
    async fn keys(&self, client: &Client, refetch: bool) -> Result<Jwks, platform::ports::KeysUnavailable> {
        keys(client, refetch).await.map_err(platform::ports::KeysUnavailable)
    }
}
