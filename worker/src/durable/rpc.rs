//! Calls from the Worker to a Durable Object: JSON in, JSON out, over the object's fetch.

use crate::http::AppError;
use serde::{de::DeserializeOwned, Serialize};
use worker::{Env, Method, Request, RequestInit, Response, Stub};

/// The stub of the object `name` in namespace `binding`.
pub fn by_name(env: &Env, binding: &str, name: &str) -> Result<Stub, AppError> {
    Ok(env.durable_object(binding)?.id_from_name(name)?.get_stub()?)
}

/// POSTs `body` to `path` and decodes the answer; a non-2xx answer with a JSON body is
/// returned as `Err(Ok(body))` so callers can act on domain errors.
pub async fn call<B: Serialize, R: DeserializeOwned, E: DeserializeOwned>(stub: &Stub, path: &str, body: &B) -> Result<Result<R, E>, AppError> {
    let json = serde_json::to_string(body).map_err(AppError::internal)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(json.into()));
    let req = Request::new_with_init(&format!("https://do{path}"), &init)?;
    let resp = stub.fetch_with_request(req).await?;
    let status = resp.status_code();
    let text = body_text(resp).await?;
    if (200..300).contains(&status) {
        return serde_json::from_str(&text).map(Ok).map_err(|e| AppError::internal(format!("{path}: {e}: {text}")));
    }
    match serde_json::from_str::<E>(&text) {
        Ok(domain) if status == 409 => Ok(Err(domain)),
        _ => Err(AppError::internal(format!("{path} answered {status}: {text}"))),
    }
}

/// An object's answer as text, read in one call (`Response.text()`): the worker crate reads
/// a fetched body through a stream reader, ≈0.1 ms of CPU more per call in workerd
/// (bench/profile-tokens.mjs).
async fn body_text(resp: Response) -> Result<String, AppError> {
    let raw: web_sys::Response = resp.into();
    let js = |e: wasm_bindgen::JsValue| AppError::internal(format!("reading an object's answer: {e:?}"));
    let text = wasm_bindgen_futures::JsFuture::from(raw.text().map_err(js)?).await.map_err(js)?;
    text.as_string().ok_or_else(|| AppError::internal("an object's answer is not text"))
}

/// Inside an object: the request's JSON body.
pub async fn body<T: DeserializeOwned>(mut req: Request) -> worker::Result<T> {
    req.json().await
}

/// Inside an object: a domain error (409 + JSON) the caller decodes.
pub fn domain_error<E: Serialize>(error: &E) -> worker::Result<Response> {
    Ok(Response::from_json(error)?.with_status(409))
}

/// Inside an object: the request's JSON body read by serde_json from the text (not through a
/// JS object), for bodies that carry `RawValue`s (backup and restore keep stored JSON as is).
pub async fn raw_body<T: DeserializeOwned>(mut req: Request) -> worker::Result<T> {
    let text = req.text().await?;
    serde_json::from_str(&text).map_err(|e| worker::Error::RustError(e.to_string()))
}
