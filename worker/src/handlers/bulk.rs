//! Bulk Data `$export` over HTTP (<https://hl7.org/fhir/uv/bulkdata/STU2/export.html>):
//! decode the kick-off, status, cancellation and file requests, authenticate the bearer
//! token, and hand them to `platform::fhir::bulk` and the job's Durable Object
//! (`durable::export_job`). No rule lives here.

use super::fhir::{encode, unauthenticated};
use crate::adapters::fhir_store::Partitions;
use crate::adapters::webcrypto::{new_id, WebCryptoVerifier};
use crate::context::AppContext;
use crate::durable::export_job::FileRequest;
use crate::durable::rpc;
use crate::grant_status::DoGrantStatus;
use crate::http::{self, AppError};
use crate::keyring::{self, now_secs};
use platform::fhir::api::Fhir;
use platform::fhir::bulk::{self, BulkPath, Job, KickOff, Status};
use platform::fhir::outcome::IssueType;
use platform::fhir::FHIR_JSON;
use platform::guard::{self, AccessGrant};
use serde_json::Value;
use worker::{Method, Request, Response};

/// The Durable Object namespace of export jobs (wrangler.toml).
const BINDING: &str = "EXPORTS";
/// The largest kick-off `Parameters` body read.
const MAX_PARAMETERS_BYTES: usize = 64 * 1024;
const NDJSON: &str = "application/fhir+ndjson";

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn job_stub(ctx: &AppContext, id: &str) -> Result<rpc::Object, AppError> {
    rpc::by_name(&ctx.env, BINDING, id)
}

pub async fn handle(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let path = req.path();
    let rest = path.strip_prefix(ctx.urls.fhir_path()).unwrap_or_default().to_owned();
    let Some(target) = BulkPath::parse(&rest) else {
        return Ok(http::fhir_error(404, IssueType::NotFound, "no bulk export resource at this path"));
    };
    let ring = keyring::load(ctx).await?;
    let authorization = header(&req, "Authorization");
    let grant = match guard::authenticate(authorization.as_deref(), &ring, &WebCryptoVerifier, &DoGrantStatus(&ctx.env), &ctx.urls, now_secs()).await {
        Ok(grant) => grant,
        Err(e) => return unauthenticated(&e),
    };
    let method = req.method();
    match (target, method) {
        (BulkPath::KickOff(level), Method::Get | Method::Post) => kick_off(&mut req, ctx, &grant, level, &rest).await,
        (BulkPath::Status(id), Method::Get) => status(ctx, &grant, &id).await,
        (BulkPath::Status(id), Method::Delete) => cancel(ctx, &grant, &id).await,
        (BulkPath::File(id, name), Method::Get) => file(ctx, &grant, &id, &name).await,
        (_, method) => Ok(http::fhir_error(405, IssueType::NotSupported, &format!("{} is not allowed on this path", method.as_ref()))),
    }
}

async fn kick_off(req: &mut Request, ctx: &AppContext, grant: &AccessGrant, level: bulk::Level, rest: &str) -> Result<Response, AppError> {
    let url = req.url()?;
    let params = if req.method() == Method::Post {
        let Ok(body) = http::body_bytes_limit(req, MAX_PARAMETERS_BYTES).await else {
            return Ok(http::fhir_error(413, IssueType::Invalid, "the kick-off Parameters are larger than 64 KiB"));
        };
        match bulk::parameters(&body) {
            Ok(pairs) => pairs,
            Err(refusal) => return Ok(encode(refusal)),
        }
    } else {
        url.query_pairs().into_owned().collect()
    };
    let base = ctx.urls.fhir_base();
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    let request =
        KickOff { level: Some(level), params, accept: header(req, "Accept"), prefer: header(req, "Prefer"), request_url: format!("{base}{rest}{query}") };
    let store = Partitions(&ctx.env);
    let fhir = Fhir { store: &store, base: &base, new_id: &new_id };
    let now: String = js_sys::Date::new_0().to_iso_string().into();
    let job = match bulk::kick_off(&fhir, grant, &request, &now).await {
        Ok(job) => job,
        Err(refusal) => return Ok(encode(refusal)),
    };
    let stub = job_stub(ctx, &job.id)?;
    let started: Result<bool, Value> = rpc::call(&stub, "/start", &job).await?;
    if started.is_err() {
        return Err(AppError::internal("export job id collision"));
    }
    let response = http::no_store(http::json(202, &bulk::accepted("the export started: poll the Content-Location URL for its status"), FHIR_JSON));
    let _ = response.headers().set("Content-Location", &job.status_url());
    Ok(response)
}

/// The job, when it exists and belongs to the caller's client (anyone else: 404, as if it
/// did not exist).
async fn load(ctx: &AppContext, grant: &AccessGrant, id: &str) -> Result<Option<Job>, AppError> {
    let stub = job_stub(ctx, id)?;
    let job: Result<Option<Job>, Value> = rpc::call(&stub, "/job", &()).await?;
    Ok(job.map_err(|e| AppError::internal(format!("/job: {e}")))?.filter(|j| j.belongs_to(grant)))
}

fn unknown(id: &str) -> Response {
    http::fhir_error(404, IssueType::NotFound, &format!("no export {id} (finished exports expire; a cancelled one is gone)"))
}

async fn status(ctx: &AppContext, grant: &AccessGrant, id: &str) -> Result<Response, AppError> {
    let Some(job) = load(ctx, grant, id).await? else { return Ok(unknown(id)) };
    Ok(match bulk::status(&job) {
        Status::InProgress { progress, retry_after } => {
            let response = http::text(202, "", FHIR_JSON, "no-store");
            let _ = response.headers().set("X-Progress", &progress);
            let _ = response.headers().set("Retry-After", &retry_after.to_string());
            response
        }
        Status::Complete(manifest) => http::no_store(http::json(200, &manifest, "application/json")),
        Status::Failed(outcome) => http::no_store(http::json(500, &outcome, FHIR_JSON)),
    })
}

async fn cancel(ctx: &AppContext, grant: &AccessGrant, id: &str) -> Result<Response, AppError> {
    if load(ctx, grant, id).await?.is_none() {
        return Ok(unknown(id));
    }
    let _: Result<bool, Value> = rpc::call(&job_stub(ctx, id)?, "/cancel", &()).await?;
    Ok(http::no_store(http::json(202, &bulk::accepted("the export was cancelled and its files deleted"), FHIR_JSON)))
}

async fn file(ctx: &AppContext, grant: &AccessGrant, id: &str, name: &str) -> Result<Response, AppError> {
    let Some(job) = load(ctx, grant, id).await? else { return Ok(unknown(id)) };
    if job.state == bulk::JobState::Running {
        return Ok(http::fhir_error(404, IssueType::NotFound, "the export's files are served once it is complete"));
    }
    if name == bulk::ERRORS_FILE && !job.errors.is_empty() {
        return Ok(http::text(200, &bulk::errors_ndjson(&job), NDJSON, "no-store"));
    }
    let Some(n) = job.file_index(name) else { return Ok(http::fhir_error(404, IssueType::NotFound, &format!("the export has no file {name}"))) };
    let text = rpc::call_for_text(&job_stub(ctx, id)?, "/file", &FileRequest { file: n }).await?;
    Ok(http::text(200, &text, NDJSON, "no-store"))
}
