//! The FHIR R4 RESTful API (`[base]/{type}…`), every interaction checked against the token's
//! SMART scopes. The decisions are `platform::fhir` (`rest`, `access`, `search`, `validate`,
//! `ingest`) and `platform::guard`; this module moves bytes between HTTP and the partitions.

use super::oauth::bearer_refusal;
use crate::adapters::fhir_store::Partitions;
use crate::adapters::webcrypto::{new_id, WebCryptoVerifier};
use crate::context::AppContext;
use crate::durable::fhir_partition::{ReadOutcome, ReadStatus};
use crate::grant_status::DoGrantStatus;
use crate::http::{self, AppError};
use crate::keyring::{self, now_secs};
use platform::fhir::access::{self, Decision, Denied, ReadTarget};
use platform::fhir::outcome::IssueType;
use platform::fhir::rest::{Interaction, RestError};
use platform::fhir::search::{self, Target};
use platform::fhir::store::{self, patient_partition, DIRECTORY};
use platform::fhir::{ingest, params, validate, FHIR_JSON};
use platform::guard::{self, AccessGrant};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use smart_protocol::error::bearer_challenge;
use smart_protocol::{OAuthError, OAuthErrorCode};
use worker::{Request, Response};

fn outcome(status: u16, code: IssueType, message: &str) -> Response {
    http::fhir_error(status, code, message)
}

fn fhir_body(status: u16, body: String) -> Response {
    http::text(status, &body, FHIR_JSON, "no-store")
}

fn with_version(response: Response, version: i64, last_updated: &str) -> Response {
    let headers = response.headers();
    let _ = headers.set("ETag", &format!("W/\"{version}\""));
    let millis = js_sys::Date::parse(last_updated);
    if millis.is_finite() {
        let utc: String = js_sys::Date::new(&millis.into()).to_utc_string().into();
        let _ = headers.set("Last-Modified", &utc);
    }
    response
}

/// `Prefer: return=minimal` (R4 §3.1.0.1.4).
fn minimal(req: &Request) -> bool {
    req.headers().get("Prefer").ok().flatten().is_some_and(|p| p.contains("return=minimal"))
}

pub async fn handle(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    let path = req.path();
    let rest = path.strip_prefix(ctx.urls.fhir_path()).unwrap_or_default().to_owned();
    let method = req.method().to_string();
    let interaction = match Interaction::parse(&method, &rest) {
        Ok(i) => i,
        Err(e @ (RestError::UnknownType(_) | RestError::NoSuchPath)) => return Ok(outcome(404, IssueType::NotFound, &e.to_string())),
        Err(e @ RestError::BadId(_)) => return Ok(outcome(400, IssueType::Invalid, &e.to_string())),
        Err(e @ RestError::Method(_)) => return Ok(outcome(405, IssueType::NotSupported, &e.to_string())),
    };
    if interaction == Interaction::Capabilities {
        return super::discovery::metadata(ctx).await;
    }
    // Authentication (RFC 6750), then the SMART decision.
    let header = req.headers().get("Authorization").ok().flatten();
    let ring = keyring::load(ctx).await?;
    let grant = match guard::authenticate(header.as_deref(), &ring, &WebCryptoVerifier, &DoGrantStatus(&ctx.env), &ctx.urls, now_secs()).await {
        Ok(grant) => grant,
        Err(e) => {
            let refusal = bearer_refusal(&e, "smart-edge")?;
            let body = platform::fhir::outcome::error(IssueType::Security, &e.to_string());
            let response = http::json(401, &body, FHIR_JSON);
            if let Some(challenge) = refusal.headers().get("WWW-Authenticate").ok().flatten() {
                let _ = response.headers().set("WWW-Authenticate", &challenge);
            }
            return Ok(response);
        }
    };
    if interaction == Interaction::Bundle {
        return bundle(&mut req, ctx, &grant).await;
    }
    let resource_type = interaction.resource_type().unwrap_or_default().to_owned();
    let decision = match access::decide(&grant, &resource_type, interaction.permission()) {
        Ok(d) => d,
        Err(denied) => return Ok(forbidden(&denied)),
    };
    let parts = Partitions(&ctx.env);
    match interaction {
        Interaction::Read { id, .. } => read(&parts, &decision, &resource_type, &id, None).await,
        Interaction::Vread { id, version, .. } => read(&parts, &decision, &resource_type, &id, version.parse().ok()).await,
        Interaction::History { id, .. } => history(ctx, &parts, &decision, &resource_type, &id).await,
        Interaction::TypeHistory { .. } => type_history(ctx, &parts, &decision, &resource_type).await,
        Interaction::Search { .. } => search(&mut req, ctx, &parts, &grant, &decision, &resource_type).await,
        Interaction::Create { .. } => write(&mut req, ctx, &parts, &decision, &resource_type, None).await,
        Interaction::Update { id, .. } => write(&mut req, ctx, &parts, &decision, &resource_type, Some(id)).await,
        Interaction::Delete { id, .. } => delete(&parts, &decision, &resource_type, &id).await,
        Interaction::Capabilities | Interaction::Bundle => Err(AppError::internal("handled above")),
    }
}

fn forbidden(denied: &Denied) -> Response {
    let response = http::json(403, &platform::fhir::outcome::error(IssueType::Security, &denied.to_string()), FHIR_JSON);
    let error = OAuthError::new(OAuthErrorCode::InsufficientScope, denied.to_string());
    let _ = response.headers().set("WWW-Authenticate", &bearer_challenge("smart-edge", Some(&error)));
    response
}

/// The partition `Type/id` is in, as far as the caller may see it: their patient's partition
/// when confined (a patient-scoped read touches one partition), else the directory's answer.
async fn locate(parts: &Partitions<'_>, decision: &Decision, resource_type: &str, id: &str) -> Result<Option<String>, AppError> {
    let found = match access::read_target(decision, resource_type, id) {
        ReadTarget::Partition(partition) => Some(partition),
        ReadTarget::Directory => parts.locate(resource_type, id).await?,
    };
    Ok(found.filter(|partition| access::may_see_partition(decision, partition)))
}

/// Whether a granular scope lets the caller see this resource.
fn visible(decision: &Decision, content: &RawValue) -> bool {
    if decision.filters.is_empty() {
        return true;
    }
    let Ok(resource) = serde_json::from_str::<Value>(content.get()) else { return false };
    let rows = search::index(&resource);
    decision.filters.iter().any(|group| search::matches(&rows, group))
}

async fn read(parts: &Partitions<'_>, decision: &Decision, resource_type: &str, id: &str, version: Option<i64>) -> Result<Response, AppError> {
    let not_found = || Ok(outcome(404, IssueType::NotFound, &format!("{resource_type}/{id} is not known")));
    let Some(partition) = locate(parts, decision, resource_type, id).await? else { return not_found() };
    let ReadOutcome { status, content, version, last_updated } = parts.read_in(&partition, resource_type, id, version).await?;
    match (status, content) {
        (ReadStatus::Found, Some(content)) if visible(decision, &content) => {
            Ok(with_version(fhir_body(200, content.get().to_owned()), version, &last_updated))
        }
        (ReadStatus::Gone, _) => Ok(outcome(410, IssueType::NotFound, &format!("{resource_type}/{id} was deleted"))),
        _ => not_found(),
    }
}

/// One entry of a history Bundle (R4 §3.1.0.6).
fn history_entry(base: &str, resource_type: &str, id: &str, version: i64, last_updated: &str, deleted: bool, content: &RawValue) -> String {
    let url = format!("{base}/{resource_type}/{id}/_history/{version}");
    let method = if deleted { "DELETE" } else if version == 1 { "POST" } else { "PUT" };
    let request = json!({ "method": method, "url": format!("{resource_type}/{id}") });
    let response = json!({ "status": if deleted { "204" } else { "200" }, "lastModified": last_updated, "etag": format!("W/\"{version}\"") });
    let resource = if deleted { String::new() } else { format!(",\"resource\":{}", content.get()) };
    format!("{{\"fullUrl\":{}{resource},\"request\":{request},\"response\":{response}}}", json!(url))
}

fn history_bundle(entries: &[String]) -> String {
    format!("{{\"resourceType\":\"Bundle\",\"type\":\"history\",\"total\":{},\"entry\":[{}]}}", entries.len(), entries.join(","))
}

async fn history(ctx: &AppContext, parts: &Partitions<'_>, decision: &Decision, resource_type: &str, id: &str) -> Result<Response, AppError> {
    let Some(partition) = locate(parts, decision, resource_type, id).await? else {
        return Ok(outcome(404, IssueType::NotFound, &format!("{resource_type}/{id} is not known")));
    };
    let versions = parts.history(&partition, resource_type, id).await?;
    if versions.is_empty() || versions.first().is_some_and(|(_, _, deleted, c)| !deleted && !visible(decision, c)) {
        return Ok(outcome(404, IssueType::NotFound, &format!("{resource_type}/{id} is not known")));
    }
    let base = ctx.urls.fhir_base();
    let entries: Vec<String> = versions
        .iter()
        .map(|(version, last_updated, deleted, content)| history_entry(&base, resource_type, id, *version, last_updated, *deleted, content))
        .collect();
    Ok(fhir_body(200, history_bundle(&entries)))
}

/// `GET [base]/{type}/_history`: the type's versions in the caller's patient compartment
/// (the last 100), or in the type's shared partition for non-patient types.
async fn type_history(ctx: &AppContext, parts: &Partitions<'_>, decision: &Decision, resource_type: &str) -> Result<Response, AppError> {
    let partition = match (&decision.patient, params::compartment_paths(resource_type).is_some() || resource_type == "Patient") {
        (Some(p), true) => patient_partition(p),
        (_, false) => store::shared_partition(resource_type),
        (None, true) => return Ok(outcome(400, IssueType::TooCostly, "the history of a patient-data type needs patient context (a patient/ scope)")),
    };
    let versions = parts.history(&partition, resource_type, "").await?;
    let base = ctx.urls.fhir_base();
    let entries: Vec<String> = versions
        .iter()
        .filter(|(_, _, deleted, content)| *deleted || visible(decision, content))
        .map(|(version, last_updated, deleted, content)| {
            let id = serde_json::from_str::<Value>(content.get()).ok().and_then(|v| v["id"].as_str().map(str::to_owned)).unwrap_or_default();
            history_entry(&base, resource_type, &id, *version, last_updated, *deleted, content)
        })
        .collect();
    Ok(fhir_body(200, history_bundle(&entries)))
}

async fn search(req: &mut Request, ctx: &AppContext, parts: &Partitions<'_>, grant: &AccessGrant, decision: &Decision, resource_type: &str) -> Result<Response, AppError> {
    let url = req.url()?;
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if req.method() == worker::Method::Post {
        // POST [type]/_search: the parameters come as a form (R4 §3.1.1.3).
        match http::form(req).await {
            Ok(form) => pairs.extend(form),
            Err(_) => return Ok(outcome(400, IssueType::Invalid, "POST _search takes an application/x-www-form-urlencoded body")),
        }
    }
    let strict = req.headers().get("Prefer").ok().flatten().is_some_and(|p| p.contains("handling=strict"));
    let mut query = match search::parse(resource_type, &pairs, strict) {
        Ok(q) => q,
        Err(e) => return Ok(outcome(400, IssueType::Invalid, &e.to_string())),
    };
    query.filters = decision.filters.clone();
    let base = format!("{}/{resource_type}", ctx.urls.fhir_base());
    let (resources, total, partition) = match search::target(&query, decision.patient.as_deref()) {
        Target::Empty => (Vec::new(), 0, None),
        Target::NeedsPatient => match fan_out(parts, &query).await? {
            Some((resources, total)) => (resources, total, None),
            None => {
                return Ok(outcome(400, IssueType::TooCostly, &format!("too many patients to search {resource_type} across all of them: give patient=…")))
            }
        },
        Target::Partition(partition) => {
            let result = parts.search(&partition, &search::to_sql(&query)).await?;
            (result.resources, result.total, Some(partition))
        }
    };
    let included = match &partition {
        Some(partition) if !query.summary_count => includes(parts, grant, &query, partition, &resources).await?,
        _ => Vec::new(),
    };
    let fhir_base = ctx.urls.fhir_base();
    let mut entries: Vec<String> = if query.summary_count {
        Vec::new()
    } else {
        resources
            .iter()
            .map(|(id, r)| format!("{{\"fullUrl\":{},\"resource\":{},\"search\":{{\"mode\":\"match\"}}}}", json!(format!("{fhir_base}/{resource_type}/{id}")), r.get()))
            .collect()
    };
    for r in &included {
        let resource: Value = serde_json::from_str(r.get()).unwrap_or_default();
        let url = format!("{fhir_base}/{}/{}", resource["resourceType"].as_str().unwrap_or_default(), resource["id"].as_str().unwrap_or_default());
        entries.push(format!("{{\"fullUrl\":{},\"resource\":{},\"search\":{{\"mode\":\"include\"}}}}", json!(url), r.get()));
    }
    if !query.ignored.is_empty() {
        let warning = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "not-supported",
            "diagnostics": format!("ignored unknown search parameters: {}", query.ignored.join(", "))}]});
        entries.push(format!("{{\"resource\":{warning},\"search\":{{\"mode\":\"outcome\"}}}}"));
    }
    let links: Vec<Value> = search::links(&base, &pairs, &query, total).into_iter().map(|(rel, url)| json!({"relation": rel, "url": url})).collect();
    let body = format!(
        "{{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":{total},\"link\":{},\"entry\":[{}]}}",
        Value::Array(links),
        entries.join(",")
    );
    Ok(fhir_body(200, body))
}

/// A search of patient data without patient context (a practitioner's `user/` scope, a
/// backend's `system/` scope): run in every patient partition (and the type's shared one) at
/// once, then merged in the requested order and paged. `None` when there are more than
/// `MAX_FANOUT` patients.
async fn fan_out(parts: &Partitions<'_>, query: &search::Search) -> Result<Option<(Vec<(String, Box<RawValue>)>, i64)>, AppError> {
    let mut list = search::parse("Patient", &[], false).map_err(AppError::internal)?;
    list.count = search::MAX_FANOUT + 1;
    let patients = parts.search(DIRECTORY, &search::to_sql(&list)).await?;
    if patients.resources.len() > search::MAX_FANOUT {
        return Ok(None);
    }
    let mut page = query.clone();
    page.count = query.offset + query.count;
    page.offset = 0;
    let sql = search::to_sql(&page);
    let mut partitions: Vec<String> = patients.resources.iter().map(|(id, _)| patient_partition(id)).collect();
    partitions.push(store::shared_partition(&query.resource_type));
    let results = futures::future::join_all(partitions.iter().map(|p| parts.search(p, &sql))).await;
    let mut total = 0;
    let mut all = Vec::new();
    for result in results {
        let result = result?;
        total += result.total;
        all.extend(result.resources);
    }
    let mut keyed: Vec<(String, (String, Box<RawValue>))> = all
        .into_iter()
        .map(|(id, r)| {
            let value: Value = serde_json::from_str(r.get()).unwrap_or_default();
            (search::sort_key(query, &id, &value), (id, r))
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| (a.1).0.cmp(&(b.1).0)));
    if search::descending(query) {
        keyed.reverse();
    }
    let page: Vec<_> = keyed.into_iter().skip(query.offset).take(query.count).map(|(_, r)| r).collect();
    Ok(Some((page, total)))
}

/// `_include` and `_revinclude` (non-iterative). Included resources obey the same rules as the
/// results: the caller must be allowed to read their type, a confined caller only sees their
/// patient's partition and shared (non-patient) types, and granular filters apply.
async fn includes(
    parts: &Partitions<'_>,
    grant: &AccessGrant,
    query: &search::Search,
    partition: &str,
    results: &[(String, Box<RawValue>)],
) -> Result<Vec<Box<RawValue>>, AppError> {
    if query.includes.is_empty() && query.revincludes.is_empty() {
        return Ok(Vec::new());
    }
    let parsed: Vec<Value> = results.iter().filter_map(|(_, r)| serde_json::from_str(r.get()).ok()).collect();
    let mut out: Vec<Box<RawValue>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &parsed {
        seen.insert(format!("{}/{}", r["resourceType"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default()));
    }
    let allowed = |t: &str| access::decide(grant, t, smart_protocol::scopes::Permissions::READ).ok();
    for (source, name) in &query.includes {
        let mut targets: Vec<String> = parsed.iter().flat_map(|r| search::references(r, source, name)).collect();
        targets.sort();
        targets.dedup();
        for target in targets.into_iter().take(100) {
            if !seen.insert(target.clone()) {
                continue;
            }
            let Some((t, id)) = target.split_once('/') else { continue };
            let Some(d) = allowed(t) else { continue };
            let where_ = match access::include_target(partition, t) {
                ReadTarget::Partition(p) => Some(p),
                ReadTarget::Directory => parts.locate(t, id).await?,
            };
            let Some(where_) = where_.filter(|w| access::may_see_partition(&d, w)) else { continue };
            if let ReadOutcome { status: ReadStatus::Found, content: Some(content), .. } = parts.read_in(&where_, t, id, None).await? {
                if visible(&d, &content) {
                    out.push(content);
                }
            }
        }
    }
    for (source, name) in &query.revincludes {
        let Some(d) = allowed(source) else { continue };
        let refs: Vec<String> = seen.iter().filter(|r| r.starts_with(&format!("{}/", query.resource_type))).cloned().collect();
        let target_partition = if params::compartment_paths(source).is_some() || source == "Patient" {
            if !partition.starts_with("patient/") {
                continue; // patient data referencing shared resources lives in every partition
            }
            partition.to_owned()
        } else {
            store::shared_partition(source)
        };
        for chunk in refs.chunks(search::MAX_BOUND / 2) {
            let mut rev = search::parse(source, &[], false).map_err(AppError::internal)?;
            rev.clauses.push(search::Clause::Reference { name: name.clone(), any_of: chunk.to_vec() });
            rev.filters = d.filters.clone();
            rev.count = 500;
            let found = parts.search(&target_partition, &search::to_sql(&rev)).await?;
            for (id, r) in found.resources {
                if seen.insert(format!("{source}/{id}")) {
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

async fn write(req: &mut Request, ctx: &AppContext, parts: &Partitions<'_>, decision: &Decision, resource_type: &str, id: Option<String>) -> Result<Response, AppError> {
    let body = match http::body_bytes_limit(req, validate::MAX_RESOURCE_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return Ok(outcome(413, IssueType::Invalid, "the resource is larger than 1 MiB")),
    };
    let content_type = req.headers().get("Content-Type").ok().flatten().unwrap_or_default();
    if !(content_type.starts_with("application/fhir+json") || content_type.starts_with("application/json")) {
        return Ok(outcome(415, IssueType::NotSupported, "send application/fhir+json"));
    }
    let mut resource = match validate::resource(&body, resource_type, id.as_deref()) {
        Ok(r) => r,
        Err(e) => return Ok(outcome(e.status(), IssueType::Invalid, &e.to_string())),
    };
    let creating = id.is_none();
    let id = id.unwrap_or_else(new_id);
    resource["id"] = Value::String(id.clone());
    let partition = store::partition_for(&resource);
    // Confined callers write only into their patient's compartment.
    if let Some(p) = &decision.patient {
        if store::compartment_patient(&resource).as_deref() != Some(p.as_str()) {
            return Ok(outcome(403, IssueType::Security, "the resource is not in the launch patient's compartment"));
        }
    }
    // Conditional create (R4 §3.1.0.8.1): If-None-Exist is a search in the partition the
    // resource would live in; one match is returned as is, several are an error.
    if let (true, Some(condition)) = (creating, req.headers().get("If-None-Exist").ok().flatten()) {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&condition).unwrap_or_default();
        let mut query = match search::parse(resource_type, &pairs, true) {
            Ok(q) if !q.clauses.is_empty() => q,
            _ => return Ok(outcome(400, IssueType::Invalid, "If-None-Exist must be a search query on this type")),
        };
        query.count = 2;
        let target = if resource_type == "Patient" { DIRECTORY.to_owned() } else { partition.clone() };
        let found = parts.search(&target, &search::to_sql(&query)).await?;
        match found.resources.as_slice() {
            [] => {}
            [(_, existing)] => return Ok(fhir_body(200, existing.get().to_owned())),
            _ => return Ok(outcome(412, IssueType::Invalid, "If-None-Exist matches more than one resource")),
        }
    }
    // A resource never moves between partitions (its subject changing patient).
    if let Some(existing) = parts.locate(resource_type, &id).await? {
        if existing != partition {
            return Ok(outcome(422, IssueType::Invalid, "an update may not move a resource to another patient's compartment"));
        }
    }
    let if_match = match req.headers().get("If-Match").ok().flatten() {
        Some(h) => match validate::if_match_version(&h) {
            Some(v) => Some(v),
            None => return Ok(outcome(400, IssueType::Invalid, "If-Match must be a version ETag such as W/\"3\"")),
        },
        None => None,
    };
    let outcome_ = parts.write(&partition, vec![resource.clone()], if_match).await?;
    if outcome_.conflict {
        return Ok(outcome(412, IssueType::Invalid, &format!("{resource_type}/{id} is at version {}, not the one in If-Match", outcome_.current.map_or("none".into(), |v| v.to_string()))));
    }
    if resource_type == "Patient" {
        parts.write(DIRECTORY, vec![resource.clone()], None).await?;
    }
    parts.register(vec![(resource_type.to_owned(), id.clone(), partition)]).await?;
    let written = outcome_.written.first().ok_or_else(|| AppError::internal("nothing written"))?;
    let status = if written.created { 201 } else { 200 };
    let content = outcome_.content.map(|c| c.get().to_owned()).unwrap_or_default();
    let response = if minimal(req) { http::text(status, "", FHIR_JSON, "no-store") } else { fhir_body(status, content) };
    let _ = response.headers().set("Location", &format!("{}/{resource_type}/{id}/_history/{}", ctx.urls.fhir_base(), written.version));
    let now: String = js_sys::Date::new_0().to_iso_string().into();
    Ok(with_version(response, written.version, &now))
}

async fn delete(parts: &Partitions<'_>, decision: &Decision, resource_type: &str, id: &str) -> Result<Response, AppError> {
    let Some(partition) = locate(parts, decision, resource_type, id).await? else {
        return Ok(http::text(204, "", FHIR_JSON, "no-store"));
    };
    if !decision.filters.is_empty() {
        return Ok(outcome(403, IssueType::Security, "a granular scope cannot delete"));
    }
    parts.delete(&partition, resource_type, id).await?;
    Ok(http::text(204, "", FHIR_JSON, "no-store"))
}

/// `POST [base]` with a transaction or batch Bundle: every entry needs `create`/`update`
/// permission on its type and, for a confined caller, must be in the patient's compartment.
async fn bundle(req: &mut Request, ctx: &AppContext, grant: &AccessGrant) -> Result<Response, AppError> {
    let body = match http::body_bytes_limit(req, 16 * 1024 * 1024).await {
        Ok(bytes) => bytes,
        Err(_) => return Ok(outcome(413, IssueType::Invalid, "the bundle is larger than 16 MiB")),
    };
    let bundle: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Ok(outcome(400, IssueType::Invalid, &format!("the body is not JSON: {e}"))),
    };
    let bundle_type = bundle.get("type").and_then(Value::as_str).unwrap_or("transaction").to_owned();
    if bundle_type == "batch" {
        return batch(ctx, grant, &bundle).await;
    }
    let plan = match ingest::plan(&bundle, &mut new_id) {
        Ok(plan) => plan,
        Err(e) => return Ok(outcome(400, IssueType::Invalid, &e.to_string())),
    };
    if let Err(refusal) = allowed(grant, &plan) {
        return Ok(refusal);
    }
    let parts = Partitions(&ctx.env);
    parts.ingest(&plan).await?;
    Ok(http::json(200, &plan.response(&bundle_type), FHIR_JSON))
}

/// Whether `grant` may make every write of `plan`; the refusal otherwise.
fn allowed(grant: &AccessGrant, plan: &ingest::Plan) -> Result<(), Response> {
    for (partition, writes) in &plan.partitions {
        for w in writes {
            let t = w.resource["resourceType"].as_str().unwrap_or_default();
            let permission = if w.created { smart_protocol::scopes::Permissions::CREATE } else { smart_protocol::scopes::Permissions::UPDATE };
            let decision = access::decide(grant, t, permission).map_err(|denied| forbidden(&denied))?;
            if let Some(p) = &decision.patient {
                let shared = partition.starts_with("shared/");
                if !shared && partition != DIRECTORY && *partition != patient_partition(p) {
                    return Err(outcome(403, IssueType::Security, "an entry is outside the launch patient's compartment"));
                }
            }
        }
    }
    Ok(())
}

/// A batch (R4 §3.1.0.11.2): every entry on its own; one entry's failure is its own
/// `response.outcome` and does not stop the others.
async fn batch(ctx: &AppContext, grant: &AccessGrant, bundle: &Value) -> Result<Response, AppError> {
    let parts = Partitions(&ctx.env);
    let entries = bundle.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
    if entries.len() > ingest::MAX_ENTRIES {
        return Ok(outcome(400, IssueType::Invalid, "the batch has too many entries"));
    }
    let mut responses = Vec::new();
    for entry in entries {
        let single = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [entry] });
        let result = match ingest::plan(&single, &mut new_id) {
            Err(e) => Err((400, e.to_string())),
            Ok(plan) => match allowed(grant, &plan) {
                Err(_) => Err((403, "the token's scopes do not allow this entry".to_owned())),
                Ok(()) => {
                    parts.ingest(&plan).await?;
                    Ok(plan.response("transaction")["entry"][0]["response"].clone())
                }
            },
        };
        responses.push(match result {
            Ok(response) => json!({ "response": response }),
            Err((status, message)) => json!({ "response": { "status": status.to_string(), "outcome": platform::fhir::outcome::error(IssueType::Invalid, &message) } }),
        });
    }
    Ok(http::json(200, &json!({ "resourceType": "Bundle", "type": "batch-response", "entry": responses }), FHIR_JSON))
}
