//! Transaction and batch Bundles (R4 §3.1.0.11, <https://hl7.org/fhir/R4/http.html#transaction>):
//! every entry through the same gate as the single interaction it stands for. A transaction
//! is refused whole when one entry is; a batch answers each entry on its own.
//!
//! A transaction runs in five steps: its conditions (`ifNoneExist`, `PUT`/`DELETE [type]?…`,
//! conditional references) are searched under the caller's own search rights; the plan
//! ([`ingest::plan`]) assigns ids and rewrites references; every write and delete is judged by
//! the gate; the changes are applied, partition by partition; the `GET` entries are answered.
//!
//! **All or nothing across partitions, by compensation.** Each partition (one Durable Object)
//! commits its own writes atomically, but no transaction spans two of them. So the changes are
//! applied in a fixed order (deletions, shared partitions, the directory's Patient copies,
//! patient partitions) and every version written is journaled; when a later partition fails,
//! the journal is undone in reverse ([`Partitions::revert`](crate::fhir::store::Partitions::revert):
//! each version this transaction wrote is removed and the one before restored) and the
//! transaction answers 500 with nothing left behind. Limits, stated: a version another request
//! wrote on top of ours in between is kept (its writer saw ours; undoing under it would lose
//! its change), and the directory keeps the ids the transaction reserved (they point nowhere
//! and are free to be created again in the same partition).

use super::write::{existing, judge_write};
use super::{find, may_write, read, Fhir, FhirRequest, FhirResponse};
use crate::fhir::gate::{self, Place};
use crate::fhir::ingest::{self, Answer, Entry, IngestError, Plan, Resolved};
use crate::fhir::outcome::{self, IssueType};
use crate::fhir::rest::Interaction;
use crate::fhir::store::{Written, DIRECTORY};
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use serde_json::{json, Value};
use smart_protocol::scopes::Permissions;
use std::collections::{HashMap, HashSet};

pub(super) async fn bundle(fhir: &Fhir<'_>, grant: &AccessGrant, request: &FhirRequest) -> Result<FhirResponse, StoreError> {
    if !may_write(grant) {
        return Ok(FhirResponse::forbidden("the token's scopes allow no create or update"));
    }
    let bundle: Value = match serde_json::from_slice(&request.body) {
        Ok(v) => v,
        Err(e) => return Ok(FhirResponse::outcome(400, IssueType::Invalid, &format!("the body is not JSON: {e}"))),
    };
    let bundle_type = bundle.get("type").and_then(Value::as_str).unwrap_or("transaction").to_owned();
    if bundle_type == "batch" {
        return batch(fhir, grant, &bundle).await;
    }
    let entries = match ingest::entries(&bundle) {
        Ok(entries) => entries,
        Err(e) => return Ok(refuse(&e)),
    };
    match transaction(fhir, grant, &entries).await? {
        Ok(responses) => Ok(FhirResponse::json(200, json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": responses }).to_string())),
        Err(refusal) => Ok(refusal),
    }
}

fn refuse(e: &IngestError) -> FhirResponse {
    FhirResponse::json(e.status(), e.outcome().to_string())
}

/// A refusal of one entry (or condition) as the refusal of the whole transaction.
fn whole(what: &str, refusal: FhirResponse) -> FhirResponse {
    let why = serde_json::from_str::<Value>(&refusal.body)
        .ok()
        .and_then(|o| o.pointer("/issue/0/diagnostics").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let code = match refusal.status {
        403 => IssueType::Security,
        404 => IssueType::NotFound,
        _ => IssueType::Invalid,
    };
    let message = format!("{what} is refused, so nothing was written: {why}");
    FhirResponse { body: outcome::error(code, &message).to_string(), ..refusal }
}

/// The transaction's entries' responses, or the answer refusing it (nothing written).
async fn transaction(fhir: &Fhir<'_>, grant: &AccessGrant, entries: &[Entry]) -> Result<Result<Vec<Value>, FhirResponse>, StoreError> {
    let mut resolved = Resolved::new();
    for (t, q) in ingest::conditions(entries) {
        match super::conditional::matches(fhir, grant, &t, &q).await? {
            Ok(ids) => {
                resolved.insert((t, q), ids);
            }
            Err(refusal) => return Ok(Err(whole(&format!("the search {t}?{q}"), refusal))),
        }
    }
    let wished = ingest::wished_ids(entries);
    let located = if wished.is_empty() { Vec::new() } else { fhir.store.locate(&wished).await? };
    let taken: HashSet<(String, String)> = wished.into_iter().zip(located).filter(|(_, at)| at.is_some()).map(|(k, _)| k).collect();
    let mut plan = match ingest::plan(entries, &resolved, &mut || (fhir.new_id)(), &|t, id| taken.contains(&(t.to_owned(), id.to_owned()))) {
        Ok(plan) => plan,
        Err(e) => return Ok(Err(refuse(&e))),
    };
    let created = match judge_writes(fhir, grant, &plan).await? {
        Ok(created) => created,
        Err(refusal) => return Ok(Err(refusal)),
    };
    for answer in plan.answers.iter_mut() {
        if let Answer::Written { reference, created: c } = answer {
            *c = created.contains(reference.as_str());
        }
    }
    let deletions = match judge_deletes(fhir, grant, &plan).await? {
        Ok(d) => d,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let written = match apply(fhir, &plan, &deletions).await? {
        Ok(written) => written,
        Err(failure) => {
            let message = format!("storage failed ({failure}); every change this transaction had made was undone, so nothing was written");
            return Ok(Err(FhirResponse::outcome(500, IssueType::Exception, &message)));
        }
    };
    let mut responses = Vec::new();
    for (answer, response) in plan.answers.iter().zip(plan.responses()) {
        responses.push(match (answer, response) {
            (Answer::Read(url), _) => get(fhir, grant, url).await?,
            (Answer::Written { reference, .. }, Some(mut response)) => {
                if let Some(w) = written.get(reference) {
                    response["etag"] = json!(format!("W/\"{}\"", w.version));
                    response["lastModified"] = json!(w.last_updated);
                }
                json!({ "fullUrl": format!("{}/{reference}", fhir.base), "response": response })
            }
            (_, response) => json!({ "response": response }),
        });
    }
    Ok(Ok(responses))
}

/// The version a stored resource is at (its `meta.versionId`).
fn version_of(resource: &Value) -> Option<i64> {
    resource.pointer("/meta/versionId").and_then(Value::as_str).and_then(|v| v.parse().ok())
}

/// Every write through the gate (and its `ifMatch`); the `Type/id`s that are creates.
async fn judge_writes(fhir: &Fhir<'_>, grant: &AccessGrant, plan: &Plan) -> Result<Result<HashSet<String>, FhirResponse>, StoreError> {
    let mut created = HashSet::new();
    for (partition, writes) in &plan.partitions {
        if partition == DIRECTORY {
            continue;
        }
        for w in writes {
            let (t, id) = super::type_and_id(&w.resource);
            let reference = format!("{t}/{id}");
            let now = if w.created { None } else { existing(fhir, t, id).await? };
            if let Some(refusal) = judge_write(grant, &w.resource, &now) {
                return Ok(Err(whole(&format!("the entry for {reference}"), refusal)));
            }
            let current = now.as_ref().and_then(|(_, content)| content.as_ref()).and_then(version_of);
            if w.if_match.is_some_and(|v| current != Some(v)) {
                let at = current.map_or("none".into(), |v| v.to_string());
                return Ok(Err(FhirResponse::outcome(
                    412,
                    IssueType::Invalid,
                    &format!("{reference} is at version {at}, not the one in ifMatch; nothing was written"),
                )));
            }
            if current.is_none() {
                created.insert(reference);
            }
        }
    }
    Ok(Ok(created))
}

/// Every delete through the gate, as `DELETE [type]/[id]` would judge it: `(partition, Type, id)`
/// of what is to be deleted. What does not exist, or what the caller cannot see, is deleted
/// as nothing (a delete never reveals what a read hides).
async fn judge_deletes(fhir: &Fhir<'_>, grant: &AccessGrant, plan: &Plan) -> Result<Result<Vec<(String, String, String)>, FhirResponse>, StoreError> {
    let mut out = Vec::new();
    for (t, id, if_match) in &plan.deletes {
        let reference = format!("{t}/{id}");
        if let Err(denied) = gate::usable(grant, t, Permissions::DELETE) {
            return Ok(Err(whole(&format!("the delete of {reference}"), FhirResponse::denied(&denied))));
        }
        let allowed = |permission, partition: &str, content: &Value| {
            let filter = gate::decide(grant, t, permission, Place::of_partition(partition)).ok().flatten();
            gate::admits(filter.as_ref(), content)
        };
        let current = match existing(fhir, t, id).await? {
            Some((partition, Some(old))) if allowed(Permissions::READ, &partition, &old) || allowed(Permissions::DELETE, &partition, &old) => {
                if !allowed(Permissions::DELETE, &partition, &old) {
                    let refusal = FhirResponse::forbidden("the token's scopes do not allow this delete here");
                    return Ok(Err(whole(&format!("the delete of {reference}"), refusal)));
                }
                Some((partition, version_of(&old)))
            }
            _ => None,
        };
        if let Some(v) = if_match.filter(|v| current.as_ref().and_then(|c| c.1) != Some(*v)) {
            return Ok(Err(FhirResponse::outcome(412, IssueType::Invalid, &format!("{reference} is not at version {v} (ifMatch); nothing was written"))));
        }
        if let Some((partition, _)) = current {
            out.push((partition, t.clone(), id.clone()));
        }
    }
    Ok(Ok(out))
}

/// Applies a judged plan: the directory entries first (an id is taken before anything is
/// stored under it), the deletions, then each partition in [`Plan::write_order`], each in one
/// atomic write. On a failure, what was applied is undone (see the module's doc) and the
/// failure is the `Err` of the answer; `Type/id` → what was written otherwise.
async fn apply(fhir: &Fhir<'_>, plan: &Plan, deletions: &[(String, String, String)]) -> Result<Result<HashMap<String, Written>, String>, StoreError> {
    let mut journal: Vec<(String, Vec<Written>)> = Vec::new();
    let mut written = HashMap::new();
    let failure = match apply_steps(fhir, plan, deletions, &mut journal, &mut written).await {
        Ok(()) => return Ok(Ok(written)),
        Err(e) => e,
    };
    for (partition, versions) in journal.into_iter().rev() {
        if let Err(e) = fhir.store.revert(&partition, versions).await {
            return Err(StoreError(format!("{}; undoing the transaction's earlier writes in {partition} failed too: {}", failure.0, e.0)));
        }
    }
    Ok(Err(failure.0))
}

async fn apply_steps(
    fhir: &Fhir<'_>,
    plan: &Plan,
    deletions: &[(String, String, String)],
    journal: &mut Vec<(String, Vec<Written>)>,
    written: &mut HashMap<String, Written>,
) -> Result<(), StoreError> {
    let directory = plan.directory_entries();
    if !directory.is_empty() {
        fhir.store.register(directory).await?;
    }
    for (partition, t, id) in deletions {
        let copies = if t == "Patient" { vec![partition.as_str(), DIRECTORY] } else { vec![partition.as_str()] };
        for at in copies {
            if let Some(version) = fhir.store.delete(at, t, id).await? {
                journal.push((at.to_owned(), vec![Written { reference: format!("{t}/{id}"), version, created: false, last_updated: String::new() }]));
            }
        }
    }
    for partition in plan.write_order() {
        let resources: Vec<Value> = plan.partitions[partition].iter().map(|w| w.resource.clone()).collect();
        let outcome = fhir.store.write(partition, resources, None).await?;
        if partition != DIRECTORY {
            written.extend(outcome.written.iter().map(|w| (w.reference.clone(), w.clone())));
        }
        journal.push((partition.clone(), outcome.written));
    }
    Ok(())
}

/// The reason phrase of the statuses a `GET` entry can answer.
fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        _ => "",
    };
    format!("{status} {reason}").trim_end().to_owned()
}

/// A `GET` entry (R4 §3.1.0.11.2: reads run after the writes), answered as the same request
/// alone would be, through the same gate. Its failure is its own response and changes nothing.
async fn get(fhir: &Fhir<'_>, grant: &AccessGrant, url: &str) -> Result<Value, StoreError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let request = FhirRequest { query: pairs, ..Default::default() };
    let answer = match Interaction::parse("GET", &format!("/{path}")) {
        Ok(Interaction::Read { resource_type, id }) => read::read(fhir, grant, &resource_type, &id, None).await?,
        Ok(Interaction::Vread { resource_type, id, version }) => match version.parse() {
            Ok(v) => read::read(fhir, grant, &resource_type, &id, Some(v)).await?,
            Err(_) => FhirResponse::not_found(&resource_type, &id),
        },
        Ok(Interaction::History { resource_type, id }) => read::history(fhir, grant, &resource_type, Some(&id), &request).await?,
        Ok(Interaction::TypeHistory { resource_type }) => read::history(fhir, grant, &resource_type, None, &request).await?,
        Ok(Interaction::Search { resource_type }) => find::search(fhir, grant, &resource_type, &request).await?,
        Ok(_) => FhirResponse::outcome(400, IssueType::NotSupported, "a GET entry must be a read, vread, history or search"),
        Err(e) => FhirResponse::outcome(404, IssueType::NotFound, &e.to_string()),
    };
    let body: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    let mut response = json!({ "status": status_line(answer.status) });
    if let Some(v) = answer.version {
        response["etag"] = json!(format!("W/\"{v}\""));
    }
    if let Some(t) = &answer.last_updated {
        response["lastModified"] = json!(t);
    }
    if answer.status >= 300 {
        response["outcome"] = body;
        return Ok(json!({ "response": response }));
    }
    Ok(json!({ "resource": body, "response": response }))
}

/// A batch (R4 §3.1.0.11.1): every entry on its own; one entry's failure is its own
/// `response.outcome` and does not stop the others.
async fn batch(fhir: &Fhir<'_>, grant: &AccessGrant, bundle: &Value) -> Result<FhirResponse, StoreError> {
    let raw = bundle.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
    if raw.len() > ingest::MAX_ENTRIES {
        return Ok(FhirResponse::outcome(400, IssueType::Invalid, "the batch has too many entries"));
    }
    let mut responses = Vec::new();
    for entry in raw {
        let single = json!({ "resourceType": "Bundle", "type": "batch", "entry": [entry] });
        let result = match ingest::entries(&single) {
            Ok(entries) => transaction(fhir, grant, &entries).await?,
            Err(e) => Err(refuse(&e)),
        };
        responses.push(match result {
            Ok(mut answered) => answered.pop().unwrap_or_default(),
            Err(refusal) => {
                let outcome: Value = serde_json::from_str(&refusal.body).unwrap_or_default();
                json!({ "response": { "status": refusal.status.to_string(), "outcome": outcome } })
            }
        });
    }
    Ok(FhirResponse::json(200, json!({ "resourceType": "Bundle", "type": "batch-response", "entry": responses }).to_string()))
}
