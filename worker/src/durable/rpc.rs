//! Calls from the Worker to a Durable Object: a command (a path such as `/token`) with a JSON
//! body in, an [`Answer`] out, over JS RPC.
//!
//! Each class implements [`Commands`]; [`rpc_methods!`](crate::rpc_methods) exports its
//! `call(path, body)` method, which `worker/entry.mjs` forwards from the class workerd binds
//! (a `DurableObject` subclass, so that stubs can call it). A call is one string each way:
//! no `Request`, `Response`, `Headers` or URL per call, as a `fetch` to the object needed
//! (≈0.25 ms of CPU per call less, BENCHMARKS.md). `fetch` still reaches the same commands
//! (tests read diagnostics such as `/peek` that way).
//!
//! workerd refuses an RPC message over 32 MiB once serialized, and a string with one character
//! above U+00FF is serialized two bytes per character: a body or an answer over
//! [`STREAM_ABOVE`] travels as a `ReadableStream` instead (a page of large resources, a
//! backup page, an export file), which RPC carries without that limit.

use crate::http::AppError;
use serde::{de::DeserializeOwned, Serialize};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, Request, Response, Stub};

#[wasm_bindgen]
extern "C" {
    /// A Durable Object stub, seen as the RPC target of its class's `call` method.
    type RpcStub;
    #[wasm_bindgen(method, js_name = call)]
    fn call(this: &RpcStub, path: &str, body: &JsValue) -> js_sys::Promise;
}

/// Text longer than this (UTF-8 bytes) is sent as a stream, not as one string.
pub const STREAM_ABOVE: usize = 1024 * 1024;

/// `text` as what a call carries: the string itself, or a stream of its bytes when long.
fn carried(text: String) -> Result<JsValue, JsValue> {
    if text.len() <= STREAM_ABOVE {
        return Ok(JsValue::from(text));
    }
    let response = web_sys::Response::new_with_opt_str(Some(&text))?;
    response.body().map(JsValue::from).ok_or_else(|| JsValue::from_str("a response without a body"))
}

/// The text a call carried (see [`carried`]).
pub async fn received(value: JsValue) -> Result<String, JsValue> {
    if let Some(text) = value.as_string() {
        return Ok(text);
    }
    let stream: web_sys::ReadableStream = value.dyn_into()?;
    let response = web_sys::Response::new_with_opt_readable_stream(Some(&stream))?;
    let text = wasm_bindgen_futures::JsFuture::from(response.text()?).await?;
    text.as_string().ok_or_else(|| JsValue::from_str("a streamed text that is not text"))
}

/// A Durable Object the Worker calls.
pub struct Object(RpcStub);

impl From<Stub> for Object {
    fn from(stub: Stub) -> Self {
        Self(stub.into_rpc())
    }
}

/// The object `name` in namespace `binding`.
pub fn by_name(env: &Env, binding: &str, name: &str) -> Result<Object, AppError> {
    Ok(env.durable_object(binding)?.id_from_name(name)?.get_stub()?.into())
}

/// What an object's command answers.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Done: the JSON (for an export file, the NDJSON text) the caller decodes.
    Done(String),
    /// Refused for a reason of the domain (a JSON error the caller acts on).
    Refused(String),
}

impl Answer {
    pub fn json<T: Serialize + ?Sized>(value: &T) -> worker::Result<Self> {
        Ok(Self::Done(to_json(value)?))
    }

    pub fn refused<E: Serialize + ?Sized>(error: &E) -> worker::Result<Self> {
        Ok(Self::Refused(to_json(error)?))
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> worker::Result<String> {
    serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))
}

/// Inside an object: a command's JSON body.
pub fn parse<T: DeserializeOwned>(body: &str) -> worker::Result<T> {
    serde_json::from_str(body).map_err(|e| worker::Error::RustError(format!("a command's body: {e}")))
}

/// An object's commands, whichever way they arrive.
pub trait Commands {
    async fn command(&self, path: &str, body: String) -> worker::Result<Answer>;
}

/// What a `call` resolves to: a tag (`o` done, `d` refused, `e` failed) and the text, as one
/// string or, when long, a stream.
pub fn encode(answer: worker::Result<Answer>) -> Result<JsValue, JsValue> {
    let (tag, text) = match answer {
        Ok(Answer::Done(text)) => ('o', text),
        Ok(Answer::Refused(text)) => ('d', text),
        Err(e) => ('e', e.to_string()),
    };
    let mut out = String::with_capacity(text.len() + 1);
    out.push(tag);
    out.push_str(&text);
    carried(out)
}

/// Inside an object: a command that arrived as a `fetch` (its path and body), answered 200,
/// 409 for a refusal, 500 for a failure.
pub async fn serve_fetch<C: Commands>(object: &C, mut req: Request) -> worker::Result<Response> {
    let path = req.path();
    let body = req.text().await?;
    match object.command(&path, body).await {
        Ok(Answer::Done(text)) => Ok(Response::ok(text)?.with_headers(json_headers())),
        Ok(Answer::Refused(text)) => Ok(Response::ok(text)?.with_status(409).with_headers(json_headers())),
        Err(e) => Response::error(e.to_string(), 500),
    }
}

fn json_headers() -> worker::Headers {
    let headers = worker::Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    headers
}

/// Exports a [`Commands`] class's `call(path, body)` for JS RPC.
#[macro_export]
macro_rules! rpc_methods {
    ($class:ty) => {
        #[wasm_bindgen::prelude::wasm_bindgen]
        impl $class {
            /// The object's commands over JS RPC (see `durable::rpc`).
            #[wasm_bindgen::prelude::wasm_bindgen(js_name = call)]
            pub async fn call(&self, path: String, body: wasm_bindgen::JsValue) -> Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
                let body = $crate::durable::rpc::received(body).await?;
                $crate::durable::rpc::encode(<$class as $crate::durable::rpc::Commands>::command(self, &path, body).await)
            }
        }
    };
}

/// The object's answer to `path` with `body`: its tag and text (see [`encode`]); a failure is
/// an error.
async fn call_text<B: Serialize + ?Sized>(object: &Object, path: &str, body: &B) -> Result<(char, String), AppError> {
    let json = serde_json::to_string(body).map_err(AppError::internal)?;
    let failed = |e: JsValue| AppError::internal(format!("{path}: {e:?}"));
    let body = carried(json).map_err(failed)?;
    let answer = wasm_bindgen_futures::JsFuture::from(object.0.call(path, &body)).await.map_err(failed)?;
    let text = received(answer).await.map_err(failed)?;
    match text.chars().next() {
        Some(tag @ ('o' | 'd')) => Ok((tag, text)),
        _ => Err(AppError::internal(format!("{path}: {}", text.get(1..).unwrap_or_default()))),
    }
}

/// Calls `path` with `body` and decodes the answer; a refusal is returned as `Ok(Err(error))`
/// so callers can act on domain errors.
pub async fn call<B: Serialize + ?Sized, R: DeserializeOwned, E: DeserializeOwned>(object: &Object, path: &str, body: &B) -> Result<Result<R, E>, AppError> {
    let (tag, text) = call_text(object, path, body).await?;
    let json = &text[1..];
    let decoded = if tag == 'o' { serde_json::from_str(json).map(Ok) } else { serde_json::from_str(json).map(Err) };
    decoded.map_err(|e| AppError::internal(format!("{path}: {e}: {json}")))
}

/// Calls `path` for text that is not JSON (an export file's NDJSON).
pub async fn call_for_text<B: Serialize + ?Sized>(object: &Object, path: &str, body: &B) -> Result<String, AppError> {
    match call_text(object, path, body).await? {
        ('o', mut text) => Ok(text.split_off(1)),
        (_, text) => Err(AppError::internal(format!("{path} refused: {}", &text[1..]))),
    }
}
