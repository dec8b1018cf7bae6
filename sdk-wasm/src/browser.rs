//! The browser behind [`Environment`]: `location` and `history`, `sessionStorage` (this tab)
//! and `localStorage` (every tab of the origin), `fetch`, `crypto.getRandomValues`,
//! `crypto.subtle.verify`, and `navigator.locks` for one refresh at a time across tabs.
//!
//! `localStorage` is not coherent across renderer processes: a tab granted a Web Lock right
//! after another tab released it may still read the value the other tab replaced under the
//! lock (Chromium delivers storage changes and lock grants on different channels). So what a
//! locked section writes to the shared area is also committed to IndexedDB before the lock is
//! released, and the next holder reads those entries from IndexedDB (transactional, so it sees
//! every commit made before it asked) ahead of its own, possibly stale, `localStorage`.

use crate::engine::env::{Area, Environment, HttpRequest, HttpResponse, SignatureCheck, Target};
use crate::engine::error::SdkError;
use crate::json::Json;
use js_sys::{Array, Function, Object, Promise, Reflect, JSON};
use std::cell::RefCell;
use std::future::Future;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

pub struct BrowserEnv {
    window: web_sys::Window,
    /// While this environment holds a lock: the shared entries the previous holders committed.
    locked: RefCell<Option<Locked>>,
}

/// The shared area as seen inside a locked section.
#[derive(Default)]
struct Locked {
    /// From IndexedDB, then this section's own writes (`None`: removed); the last entry of a
    /// key counts (a handful of keys: a list is smaller in the wasm than a map).
    values: Vec<(String, Option<String>)>,
    /// The keys this section wrote, committed to IndexedDB before the lock is released.
    dirty: Vec<String>,
}

impl Locked {
    fn value(&self, key: &str) -> Option<Option<String>> {
        self.values.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}

/// The IndexedDB database and object store that carry shared writes from lock to lock.
const SYNC_DB: &str = "smart-edge-sync";
const SYNC_STORE: &str = "shared";
/// Set in `localStorage` before a locked section first commits: until then the sync database
/// holds nothing, and a write outside a lock has nothing there to supersede (no IndexedDB work
/// on a launch's pages).
const SYNC_USED: &str = "smart-edge:sync-used";

fn prop(target: &JsValue, name: &str) -> JsValue {
    Reflect::get(target, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

fn invoke(target: &JsValue, name: &str, args: &[JsValue]) -> Option<JsValue> {
    let f: Function = prop(target, name).dyn_into().ok()?;
    f.apply(target, &args.iter().collect::<Array>()).ok()
}

/// A promise settled by an IndexedDB request (`success`, with its result) or transaction
/// (`complete`), rejected on `error` or `abort`.
fn settled(target: &JsValue, done: &str) -> Promise {
    Promise::new(&mut |resolve, reject| {
        let source = target.clone();
        let on_done = Closure::wrap(Box::new(move |_e: JsValue| {
            let _ = resolve.call1(&JsValue::NULL, &prop(&source, "result"));
        }) as Box<dyn FnMut(JsValue)>)
        .into_js_value();
        let on_fail = Closure::wrap(Box::new(move |_e: JsValue| {
            let _ = reject.call1(&JsValue::NULL, &"indexedDB failed".into());
        }) as Box<dyn FnMut(JsValue)>)
        .into_js_value();
        let _ = Reflect::set(target, &format!("on{done}").into(), &on_done);
        let _ = Reflect::set(target, &"onerror".into(), &on_fail);
        let _ = Reflect::set(target, &"onabort".into(), &on_fail);
    })
}

/// The sync database (created on first use); `None` where IndexedDB is unavailable.
async fn sync_db(window: &web_sys::Window) -> Option<JsValue> {
    let factory = prop(window.as_ref(), "indexedDB");
    if factory.is_undefined() || factory.is_null() {
        return None;
    }
    let request = invoke(&factory, "open", &[SYNC_DB.into(), 1.into()])?;
    let opening = request.clone();
    let upgrade = Closure::wrap(Box::new(move |_e: JsValue| {
        let _ = invoke(&prop(&opening, "result"), "createObjectStore", &[SYNC_STORE.into()]);
    }) as Box<dyn FnMut(JsValue)>)
    .into_js_value();
    Reflect::set(&request, &"onupgradeneeded".into(), &upgrade).ok()?;
    JsFuture::from(settled(&request, "success")).await.ok()
}

/// A transaction on the sync store: `(transaction, store)`.
fn sync_store(db: &JsValue, mode: &str) -> Option<(JsValue, JsValue)> {
    let tx = invoke(db, "transaction", &[SYNC_STORE.into(), mode.into()])?;
    let store = invoke(&tx, "objectStore", &[SYNC_STORE.into()])?;
    Some((tx, store))
}

/// Every entry the lock holders committed.
async fn read_committed(db: &JsValue) -> Option<Vec<(String, Option<String>)>> {
    let (_tx, store) = sync_store(db, "readonly")?;
    let keys = settled(&invoke(&store, "getAllKeys", &[])?, "success");
    let values = settled(&invoke(&store, "getAll", &[])?, "success");
    let keys: Array = JsFuture::from(keys).await.ok()?.dyn_into().ok()?;
    let values: Array = JsFuture::from(values).await.ok()?.dyn_into().ok()?;
    Some(keys.iter().zip(values.iter()).filter_map(|(k, v)| Some((k.as_string()?, v.as_string()))).collect())
}

/// Commits `entries` (`None`: removed, kept as a tombstone so a stale `localStorage` cannot
/// bring the value back) and waits until the commit is durable.
async fn commit(db: &JsValue, entries: &[(String, Option<String>)]) -> Option<()> {
    let (tx, store) = sync_store(db, "readwrite")?;
    let done = settled(&tx, "complete");
    for (key, value) in entries {
        let value = value.as_deref().map_or(JsValue::NULL, JsValue::from_str);
        invoke(&store, "put", &[value, key.as_str().into()])?;
    }
    JsFuture::from(done).await.ok().map(drop)
}

/// A shared write made outside a lock supersedes what a locked section committed for the key.
async fn forget_committed(window: web_sys::Window, key: String) {
    if let Some(db) = sync_db(&window).await {
        if let Some((tx, store)) = sync_store(&db, "readwrite") {
            let done = settled(&tx, "complete");
            if invoke(&store, "delete", &[key.as_str().into()]).is_some() {
                let _ = JsFuture::from(done).await;
            }
        }
        let _ = invoke(&db, "close", &[]);
    }
}

fn js_error(code: &str, what: &str, e: JsValue) -> SdkError {
    let detail = e.as_string().or_else(|| Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string())).unwrap_or_default();
    SdkError::new(code, format!("{what}: {detail}"))
}

impl BrowserEnv {
    pub fn new() -> Result<BrowserEnv, SdkError> {
        let window = web_sys::window().ok_or_else(|| SdkError::new("no_window", "the SDK runs in a browser window"))?;
        Ok(BrowserEnv { window, locked: RefCell::new(None) })
    }

    fn storage(&self, area: Area) -> Option<web_sys::Storage> {
        match area {
            Area::Tab => self.window.session_storage().ok().flatten(),
            Area::Shared => self.window.local_storage().ok().flatten(),
        }
    }

    fn subtle(&self) -> Result<web_sys::SubtleCrypto, SdkError> {
        Ok(self.window.crypto().map_err(|e| js_error("no_crypto", "crypto", e))?.subtle())
    }
}

/// `{ name, hash }` / `{ name, namedCurve }` objects for WebCrypto.
fn object(pairs: &[(&str, &str)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &(*k).into(), &(*v).into());
    }
    o
}

/// The import and verify parameters of a JWS algorithm (RFC 7518 §3).
fn algorithm(alg: &str) -> Option<(Object, Object)> {
    let rsa = |hash| (object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", hash)]), object(&[("name", "RSASSA-PKCS1-v1_5")]));
    let ec = |curve, hash| (object(&[("name", "ECDSA"), ("namedCurve", curve)]), object(&[("name", "ECDSA"), ("hash", hash)]));
    match alg {
        "RS256" => Some(rsa("SHA-256")),
        "RS384" => Some(rsa("SHA-384")),
        "ES256" => Some(ec("P-256", "SHA-256")),
        "ES384" => Some(ec("P-384", "SHA-384")),
        _ => None,
    }
}

impl BrowserEnv {
    /// Inside a lock: remembered, to be committed before the release. Outside: the key's
    /// committed entry, if any, is dropped (this write is newer).
    fn shared_written(&self, key: &str, value: Option<&str>) {
        let mut locked = self.locked.borrow_mut();
        match locked.as_mut() {
            Some(l) => {
                l.values.push((key.to_owned(), value.map(str::to_owned)));
                l.dirty.push(key.to_owned());
            }
            None if self.storage(Area::Shared).and_then(|s| s.get_item(SYNC_USED).ok().flatten()).is_some() => {
                wasm_bindgen_futures::spawn_local(forget_committed(self.window.clone(), key.to_owned()))
            }
            None => {}
        }
    }
}

impl Environment for BrowserEnv {
    fn location(&self) -> String {
        self.window.location().href().unwrap_or_default()
    }

    fn replace_location(&self, url: &str) {
        if let Ok(history) = self.window.history() {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(url));
        }
    }

    fn navigate(&self, url: &str, target: &Target) -> Result<(), SdkError> {
        let failed = |e| js_error("navigation_failed", "opening the authorization page", e);
        match target {
            Target::Current => self.window.location().assign(url).map_err(failed),
            Target::Top => {
                let top = self.window.top().map_err(failed)?.unwrap_or_else(|| self.window.clone());
                top.location().assign(url).map_err(failed)
            }
            Target::Blank => self.window.open_with_url_and_target(url, "_blank").map(drop).map_err(failed),
            Target::Popup => self
                .window
                .open_with_url_and_target_and_features(url, "smart-edge-authorize", "width=720,height=720,menubar=no,toolbar=no")
                .map(drop)
                .map_err(failed),
            Target::Named(name) => self.window.open_with_url_and_target(url, name).map(drop).map_err(failed),
        }
    }

    fn get(&self, area: Area, key: &str) -> Option<String> {
        if area == Area::Shared {
            if let Some(value) = self.locked.borrow().as_ref().and_then(|l| l.value(key)) {
                return value;
            }
        }
        self.storage(area)?.get_item(key).ok().flatten()
    }

    fn set(&self, area: Area, key: &str, value: &str) {
        if let Some(s) = self.storage(area) {
            let _ = s.set_item(key, value);
        }
        if area == Area::Shared {
            self.shared_written(key, Some(value));
        }
    }

    fn remove(&self, area: Area, key: &str) {
        if let Some(s) = self.storage(area) {
            let _ = s.remove_item(key);
        }
        if area == Area::Shared {
            self.shared_written(key, None);
        }
    }

    async fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, SdkError> {
        let unreachable = |e| js_error("network_error", &format!("{} {}", request.method, request.url), e);
        let headers = web_sys::Headers::new().map_err(unreachable)?;
        for (k, v) in &request.headers {
            headers.append(k, v).map_err(unreachable)?;
        }
        let init = web_sys::RequestInit::new();
        init.set_method(request.method);
        init.set_headers(&headers);
        if let Some(body) = &request.body {
            init.set_body(&JsValue::from_str(body));
        }
        let response: web_sys::Response = JsFuture::from(self.window.fetch_with_str_and_init(&request.url, &init)).await.map_err(unreachable)?.unchecked_into();
        let body = JsFuture::from(response.text().map_err(unreachable)?).await.map_err(unreachable)?.as_string().unwrap_or_default();
        Ok(HttpResponse { status: response.status(), body, www_authenticate: response.headers().get("WWW-Authenticate").ok().flatten() })
    }

    fn random(&self, bytes: &mut [u8]) {
        if let Ok(crypto) = self.window.crypto() {
            let _ = crypto.get_random_values_with_u8_array(bytes);
        }
    }

    async fn sha256(&self, data: &[u8]) -> Result<Vec<u8>, SdkError> {
        let pending = self.subtle()?.digest_with_str_and_u8_array("SHA-256", data).map_err(|e| js_error("no_crypto", "crypto.subtle.digest", e))?;
        let digest = JsFuture::from(pending).await.map_err(|e| js_error("no_crypto", "crypto.subtle.digest", e))?;
        Ok(js_sys::Uint8Array::new(&digest).to_vec())
    }

    async fn verify(&self, check: SignatureCheck<'_>) -> Result<bool, SdkError> {
        let Some((import, verify)) = algorithm(check.alg) else { return Ok(false) };
        // Only the key material: a stray `alg` or `key_ops` in the JWK must not fail the import.
        let members = ["kty", "n", "e", "crv", "x", "y"].into_iter().filter_map(|k| Some((k.to_owned(), check.jwk.get(k)?.clone())));
        let jwk: Object = JSON::parse(&Json::Object(members.collect()).to_string()).map_err(|e| js_error("invalid_id_token", "the key", e))?.unchecked_into();
        let subtle = self.subtle()?;
        let usages = Array::of1(&"verify".into());
        let Ok(pending) = subtle.import_key_with_object("jwk", &jwk, &import, false, &usages) else { return Ok(false) };
        let Ok(key) = JsFuture::from(pending).await else { return Ok(false) };
        let Ok(pending) = subtle.verify_with_object_and_u8_array_and_u8_array(&verify, &key.unchecked_into(), check.signature, check.signed) else {
            return Ok(false);
        };
        Ok(JsFuture::from(pending).await.ok().and_then(|v| v.as_bool()).unwrap_or(false))
    }

    fn now(&self) -> i64 {
        (js_sys::Date::now() / 1000.0) as i64
    }

    async fn exclusive<T, F: Future<Output = T>>(&self, name: &str, task: F) -> T {
        // navigator.locks.request(name, () => promise): the lock is held until the promise
        // the callback returns settles. Without Web Locks (old browsers) the task runs as is.
        let locks = Reflect::get(&self.window.navigator(), &"locks".into()).ok().filter(|l| !l.is_undefined());
        let request = locks.as_ref().and_then(|l| Reflect::get(l, &"request".into()).ok()).and_then(|f| f.dyn_into::<Function>().ok());
        let (Some(locks), Some(request)) = (locks, request) else { return task.await };
        let mut release: Option<Function> = None;
        let held = Promise::new(&mut |resolve, _| release = Some(resolve));
        let mut granted: Option<Function> = None;
        let acquired = Promise::new(&mut |resolve, _| granted = Some(resolve));
        let (Some(release), Some(granted)) = (release, granted) else { return task.await };
        let callback = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
            let _ = granted.call0(&JsValue::NULL);
            held.into()
        });
        if request.call2(&locks, &name.into(), &callback).is_err() {
            return task.await;
        }
        let _ = JsFuture::from(acquired).await;
        // What the previous holders wrote, as committed (never a stale localStorage copy).
        let db = sync_db(&self.window).await;
        let committed = match &db {
            Some(db) => read_committed(db).await,
            None => None,
        };
        *self.locked.borrow_mut() = Some(Locked { values: committed.unwrap_or_default(), dirty: Vec::new() });
        let out = task.await;
        let mut locked = self.locked.borrow_mut().take().unwrap_or_default();
        if let Some(db) = &db {
            let mut entries: Vec<(String, Option<String>)> = Vec::new();
            for key in std::mem::take(&mut locked.dirty) {
                if !entries.iter().any(|(k, _)| *k == key) {
                    let value = locked.value(&key).flatten();
                    entries.push((key, value));
                }
            }
            if !entries.is_empty() {
                if let Some(s) = self.storage(Area::Shared) {
                    let _ = s.set_item(SYNC_USED, "1");
                }
                let _ = commit(db, &entries).await;
            }
            let _ = invoke(db, "close", &[]);
        }
        let _ = release.call0(&JsValue::NULL);
        out
    }
}
