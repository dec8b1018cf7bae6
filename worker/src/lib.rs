//! The smart-edge Cloudflare Worker: a thin shell that decodes requests, hands them to the
//! `platform` use cases and encodes the answers. Storage and crypto adapters live in
//! [`adapters`], Durable Object classes in [`durable`].
//!
//! Rule of thumb: no protocol `if` belongs here; it goes into `smart-protocol` or `platform`.

mod adapters;
mod context;
mod durable;
mod grant_status;
mod handlers;
mod http;
mod keyring;
mod ops;
mod registry;
mod settings;

pub use durable::{account::Account, assertion_log::AssertionLog, export_job::ExportJob, fhir_partition::FhirPartition, grant::Grant, key_vault::KeyVault};
use worker::{event, Context, Env, Request, Response, Result};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    Ok(handlers::dispatch(req, env).await)
}
