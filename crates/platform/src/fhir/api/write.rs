//! create, conditional create, update and delete (R4 §3.1.0.4, §3.1.0.7, §3.1.0.8.1).
//! A create never overwrites (the server picks the id); a resource never changes partition;
//! every write passes the gate at the place it leaves and the place it lands, and the
//! granular filters apply to the content written or removed.

use super::find;
use super::read::directory;
use super::{usable, Fhir, FhirRequest, FhirResponse};
use crate::fhir::gate::{self, Place};
use crate::fhir::outcome::IssueType;
use crate::fhir::search;
use crate::fhir::store::{partition_for, patient_partition, ReadStatus, DIRECTORY};
use crate::fhir::validate;
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use serde_json::Value;
use smart_protocol::scopes::Permissions;

const NOT_HERE: &str = "the token's scopes do not allow this write here (the patient compartment, shared data, or a granular filter)";

fn fhir_content(request: &FhirRequest) -> bool {
    request.content_type.as_deref().is_some_and(|c| c.starts_with("application/fhir+json") || c.starts_with("application/json"))
}

/// The body as a resource of `resource_type` (for `id`'s update), or the answer refusing it.
fn body(request: &FhirRequest, resource_type: &str, id: Option<&str>) -> Result<Value, FhirResponse> {
    if !fhir_content(request) {
        return Err(FhirResponse::outcome(415, IssueType::NotSupported, "send application/fhir+json"));
    }
    validate::resource(&request.body, resource_type, id).map_err(|e| FhirResponse::json(e.status(), e.outcome().to_string()))
}

/// Whether the caller may `permission` at the partition with this content.
fn allowed(grant: &AccessGrant, resource_type: &str, permission: Permissions, partition: &str, content: &Value) -> bool {
    let filter = gate::decide(grant, resource_type, permission, Place::of_partition(partition)).ok().flatten();
    gate::admits(filter.as_ref(), content)
}

/// Stores `resource` in `partition` (and a Patient's copy in the directory), registers it,
/// and answers 201 or 200.
async fn store(fhir: &Fhir<'_>, partition: &str, resource: Value, if_match: Option<i64>, minimal: bool) -> Result<FhirResponse, StoreError> {
    let (resource_type, id) = {
        let (t, i) = super::type_and_id(&resource);
        (t.to_owned(), i.to_owned())
    };
    // The id is taken in the directory before anything is stored under it.
    fhir.store.register(vec![(resource_type.clone(), id.clone(), partition.to_owned())]).await?;
    let outcome = fhir.store.write(partition, vec![resource.clone()], if_match).await?;
    if outcome.conflict {
        let current = outcome.current.map_or("none".into(), |v| v.to_string());
        return Ok(FhirResponse::outcome(412, IssueType::Invalid, &format!("{resource_type}/{id} is at version {current}, not the one in If-Match")));
    }
    if resource_type == "Patient" {
        fhir.store.write(DIRECTORY, vec![resource], None).await?;
    }
    let written = outcome.written.first().cloned().ok_or_else(|| StoreError("nothing written".into()))?;
    let content = outcome.content.map(|c| c.get().to_owned()).unwrap_or_default();
    Ok(FhirResponse {
        version: Some(written.version),
        last_updated: Some(written.last_updated),
        location: Some(format!("{}/{resource_type}/{id}/_history/{}", fhir.base, written.version)),
        ..FhirResponse::resource(if written.created { 201 } else { 200 }, content, minimal)
    })
}

pub(super) async fn create(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, request: &FhirRequest) -> Result<FhirResponse, StoreError> {
    let usable = match usable(grant, resource_type, Permissions::CREATE) {
        Ok(u) => u,
        Err(refusal) => return Ok(refusal),
    };
    let mut resource = match body(request, resource_type, None) {
        Ok(r) => r,
        Err(refusal) => return Ok(refusal),
    };
    resource["id"] = Value::String((fhir.new_id)());
    let partition = match partition_for(&resource) {
        Ok(p) => p,
        Err(e) => return Ok(FhirResponse::outcome(422, IssueType::Invalid, &e.to_string())),
    };
    let filter = gate::at(&usable, grant, Permissions::CREATE, Place::of_partition(&partition));
    if !gate::admits(filter.as_ref(), &resource) {
        return Ok(FhirResponse::forbidden(NOT_HERE));
    }
    if let Some(condition) = &request.if_none_exist {
        if let Some(answer) = conditional(fhir, grant, resource_type, &partition, condition).await? {
            return Ok(answer);
        }
    }
    store(fhir, &partition, resource, None, request.minimal).await
}

/// If-None-Exist (R4 §3.1.0.8.1): a search, under the caller's own search rights, where the
/// resource would live (the directory for a Patient). One match is the answer (200), several
/// are 412; `None` lets the create go on.
async fn conditional(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, partition: &str, condition: &str) -> Result<Option<FhirResponse>, StoreError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(condition).unwrap_or_default();
    let mut query = match search::parse(resource_type, &pairs, true) {
        // A chain or `_has` would be left unresolved here and match too much: refused.
        Ok(q) if !q.clauses.is_empty() && !q.unresolved() => q,
        _ => return Ok(Some(FhirResponse::outcome(400, IssueType::Invalid, "If-None-Exist must be a search query on this type (no chains or _has)"))),
    };
    query.count = 2;
    let usable = match usable(grant, resource_type, Permissions::SEARCH) {
        Ok(u) => u,
        Err(_) => return Ok(Some(FhirResponse::forbidden("If-None-Exist needs search rights on the type"))),
    };
    // Where the caller could search: a Patient among the patients they reach (each scope with
    // its own filter, as a Patient search), anything else where it would live.
    let targets = if resource_type == "Patient" {
        find::targets_for_patients(&usable, grant, &gate::reach(&usable))
    } else {
        gate::at(&usable, grant, Permissions::SEARCH, Place::of_partition(partition)).map(|f| (partition.to_owned(), f)).into_iter().collect()
    };
    if targets.is_empty() {
        return Ok(Some(FhirResponse::forbidden("If-None-Exist needs search rights where the resource would live")));
    }
    if let Some(refusal) = find::too_complex_with_filters(&query, &targets) {
        return Ok(Some(refusal));
    }
    let (hits, _) = find::run(fhir, &query, &targets).await?;
    Ok(match hits.as_slice() {
        [] => None,
        [(_, existing)] => Some(FhirResponse::json(200, existing.get().to_owned())),
        _ => Some(FhirResponse::outcome(412, IssueType::Invalid, "If-None-Exist matches more than one resource")),
    })
}

/// What exists at `Type/id`: its partition and, if not deleted, its content.
pub(super) async fn existing(fhir: &Fhir<'_>, resource_type: &str, id: &str) -> Result<Option<(String, Option<Value>)>, StoreError> {
    let partition = match resource_type {
        "Patient" => Some(patient_partition(id)),
        _ => directory(fhir, resource_type, id).await?,
    };
    let Some(partition) = partition else { return Ok(None) };
    let read = fhir.store.read(&partition, resource_type, id, None).await?;
    Ok(match (read.status, read.content) {
        (ReadStatus::Found, Some(content)) => Some((partition, serde_json::from_str(content.get()).ok())),
        (ReadStatus::Gone, _) => Some((partition, None)),
        _ if resource_type == "Patient" => None,
        _ => Some((partition, None)),
    })
}

/// The answer refusing a write of `resource` over what exists, or `None` when it may go on.
/// For an existing resource: update rights where it is and over its content, the same
/// partition, update rights over the new content; otherwise create rights.
pub(super) fn judge_write(grant: &AccessGrant, resource: &Value, existing: &Option<(String, Option<Value>)>) -> Option<FhirResponse> {
    let (resource_type, _) = super::type_and_id(resource);
    let partition = match partition_for(resource) {
        Ok(p) => p,
        Err(e) => return Some(FhirResponse::outcome(422, IssueType::Invalid, &e.to_string())),
    };
    let moved = || FhirResponse::outcome(422, IssueType::Invalid, "a resource never moves to another patient's compartment or in or out of shared data");
    match existing {
        Some((at, Some(old))) => {
            if let Err(denied) = gate::usable(grant, resource_type, Permissions::UPDATE) {
                return Some(FhirResponse::denied(&denied));
            }
            if !allowed(grant, resource_type, Permissions::UPDATE, at, old) {
                return Some(FhirResponse::forbidden(NOT_HERE));
            }
            if *at != partition {
                return Some(moved());
            }
            // One scope must allow the whole change, before and after.
            let whole = gate::allows_change(grant, resource_type, Permissions::UPDATE, Place::of_partition(&partition), old, resource);
            (!whole).then(|| FhirResponse::forbidden(NOT_HERE))
        }
        _ => {
            if let Err(denied) = gate::usable(grant, resource_type, Permissions::CREATE) {
                return Some(FhirResponse::denied(&denied));
            }
            if existing.as_ref().is_some_and(|(at, _)| *at != partition) {
                return Some(moved());
            }
            (!allowed(grant, resource_type, Permissions::CREATE, &partition, resource)).then(|| FhirResponse::forbidden(NOT_HERE))
        }
    }
}

pub(super) async fn update(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, id: &str, request: &FhirRequest) -> Result<FhirResponse, StoreError> {
    // Update rights, or create rights for an update that creates; which one applies is known
    // once the current state is read (see `judge_write`).
    if let (Err(denied), Err(_)) = (gate::usable(grant, resource_type, Permissions::UPDATE), gate::usable(grant, resource_type, Permissions::CREATE)) {
        return Ok(FhirResponse::denied(&denied));
    }
    let resource = match body(request, resource_type, Some(id)) {
        Ok(r) => r,
        Err(refusal) => return Ok(refusal),
    };
    let if_match = match &request.if_match {
        Some(h) => match validate::if_match_version(h).and_then(|v| v.parse().ok()) {
            Some(v) => Some(v),
            None => return Ok(FhirResponse::outcome(400, IssueType::Invalid, "If-Match must be a version ETag such as W/\"3\"")),
        },
        None => None,
    };
    let existing = existing(fhir, resource_type, id).await?;
    if let Some(refusal) = judge_write(grant, &resource, &existing) {
        return Ok(refusal);
    }
    let Ok(partition) = partition_for(&resource) else { return Ok(FhirResponse::outcome(422, IssueType::Invalid, "unplaceable")) };
    store(fhir, &partition, resource, if_match, request.minimal).await
}

pub(super) async fn delete(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, id: &str) -> Result<FhirResponse, StoreError> {
    if let Err(refusal) = usable(grant, resource_type, Permissions::DELETE) {
        return Ok(refusal);
    }
    let done = || Ok(FhirResponse::json(204, String::new()));
    let Some((partition, Some(old))) = existing(fhir, resource_type, id).await? else { return done() };
    if !allowed(grant, resource_type, Permissions::DELETE, &partition, &old) {
        // Refused where the caller can see the resource; elsewhere answered as for a missing
        // one (nothing changes): a delete never reveals what a read hides.
        let visible = allowed(grant, resource_type, Permissions::READ, &partition, &old);
        return if visible { Ok(FhirResponse::forbidden(NOT_HERE)) } else { done() };
    }
    fhir.store.delete(&partition, resource_type, id).await?;
    if resource_type == "Patient" {
        // The directory's copy goes too: no longer found by Patient searches, pickers, fan-out.
        fhir.store.delete(DIRECTORY, resource_type, id).await?;
    }
    done()
}

/// The media type of a JSON Patch (RFC 6902 §6).
const JSON_PATCH: &str = "application/json-patch+json";

/// `PATCH [base]/{type}/{id}` with a JSON Patch (R4 §3.1.0.4.1 "patch"): the patch is applied
/// to the current version, and the result goes the way of an update — the same checks of the
/// body (type and id cannot be patched away), the same gate (update rights over the content
/// before and after, in the same partition), the same store write. The write is conditional on
/// the version patched: `If-Match` names it (412 when another), or else a concurrent change in
/// between is a 409, never a lost update.
/// Most operations in one JSON Patch.
pub const MAX_PATCH_OPERATIONS: usize = 100;

pub(super) async fn patch(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, id: &str, request: &FhirRequest) -> Result<FhirResponse, StoreError> {
    if let Err(denied) = gate::usable(grant, resource_type, Permissions::UPDATE) {
        return Ok(FhirResponse::denied(&denied));
    }
    if !request.content_type.as_deref().is_some_and(|c| c.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(JSON_PATCH)) {
        return Ok(FhirResponse::outcome(415, IssueType::NotSupported, "PATCH takes a JSON Patch (application/json-patch+json)"));
    }
    let operations: json_patch::Patch = match serde_json::from_slice(&request.body) {
        Ok(p) => p,
        Err(e) => return Ok(FhirResponse::outcome(400, IssueType::Invalid, &format!("the body is not a JSON Patch: {e}"))),
    };
    if operations.0.len() > MAX_PATCH_OPERATIONS {
        return Ok(FhirResponse::outcome(400, IssueType::TooCostly, &format!("a patch has at most {MAX_PATCH_OPERATIONS} operations")));
    }
    let expected = match &request.if_match {
        Some(h) => match validate::if_match_version(h).and_then(|v| v.parse::<i64>().ok()) {
            Some(v) => Some(v),
            None => return Ok(FhirResponse::outcome(400, IssueType::Invalid, "If-Match must be a version ETag such as W/\"3\"")),
        },
        None => None,
    };
    // The current version, where the caller may see it (otherwise as for a missing one).
    let partition = match resource_type {
        "Patient" => Some(patient_partition(id)),
        _ => directory(fhir, resource_type, id).await?,
    };
    let Some(partition) = partition else { return Ok(FhirResponse::not_found(resource_type, id)) };
    let current = fhir.store.read(&partition, resource_type, id, None).await?;
    let Some(old) = current.content.as_ref().and_then(|c| serde_json::from_str::<Value>(c.get()).ok()).filter(|_| current.status == ReadStatus::Found) else {
        return Ok(FhirResponse::not_found(resource_type, id));
    };
    // A patch answers (and `test` operations probe) the stored content: the caller must be
    // able to read it; the write itself is judged below like an update.
    if !allowed(grant, resource_type, Permissions::READ, &partition, &old) {
        return Ok(FhirResponse::not_found(resource_type, id));
    }
    if expected.is_some_and(|v| v != current.version) {
        return Ok(FhirResponse::outcome(412, IssueType::Invalid, &format!("{resource_type}/{id} is at version {}, not the one in If-Match", current.version)));
    }
    // One operation at a time, the size checked after each: `copy` can double a resource per
    // operation, so a short patch must not build a huge value before any check.
    let mut patched = old.clone();
    for operation in operations.0 {
        if let Err(e) = json_patch::patch(&mut patched, &[operation]) {
            return Ok(FhirResponse::outcome(422, IssueType::Invalid, &format!("the patch cannot be applied: {e}")));
        }
        if serde_json::to_vec(&patched).map_or(true, |b| b.len() > validate::MAX_RESOURCE_BYTES) {
            return Ok(FhirResponse::outcome(413, IssueType::TooCostly, &format!("the patched resource exceeds {} bytes", validate::MAX_RESOURCE_BYTES)));
        }
    }
    // The result must be a valid resource of the same type and id, checked as an update's body
    // is (the R4 structure included); a well-formed patch with an invalid result is a 422.
    let bytes = patched.to_string().into_bytes();
    let resource = match validate::resource(&bytes, resource_type, Some(id)) {
        Ok(r) => r,
        // One issue per problem, each with its FHIRPath, as for a create or update.
        Err(validate::Invalid::Structure(issues)) => {
            return Ok(FhirResponse::json(422, validate::outcome_of(&issues, "the patched resource is not valid: ").to_string()));
        }
        Err(e) => return Ok(FhirResponse::json(if e.status() == 413 { 413 } else { 422 }, e.outcome().to_string())),
    };
    if let Some(refusal) = judge_write(grant, &resource, &Some((partition.clone(), Some(old)))) {
        return Ok(refusal);
    }
    let answer = store(fhir, &partition, resource, Some(current.version), request.minimal).await?;
    if answer.status == 412 && expected.is_none() {
        return Ok(FhirResponse::outcome(409, IssueType::Conflict, &format!("{resource_type}/{id} changed while it was patched; read it and patch again")));
    }
    Ok(answer)
}
