//! Transaction and batch Bundles (R4 §3.1.0.11): every entry through the same gate as a
//! single create or update. A transaction is refused whole when one entry is; a batch answers
//! each entry on its own.

use super::write::{existing, judge_write};
use super::{may_write, Fhir, FhirRequest, FhirResponse};
use crate::fhir::ingest::{self, Plan};
use crate::fhir::outcome::{self, IssueType};
use crate::fhir::store::DIRECTORY;
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use serde_json::{json, Value};
use std::collections::HashSet;

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
    match transaction(fhir, grant, &bundle).await? {
        Ok(plan) => Ok(FhirResponse::json(200, plan.response(&bundle_type).to_string())),
        Err(refusal) => Ok(refusal),
    }
}

/// Plans, judges and writes a transaction: nothing is written unless every entry may be.
async fn transaction(fhir: &Fhir<'_>, grant: &AccessGrant, bundle: &Value) -> Result<Result<Plan, FhirResponse>, StoreError> {
    let wished = ingest::wished_ids(bundle);
    let located = if wished.is_empty() { Vec::new() } else { fhir.store.locate(&wished).await? };
    let taken: HashSet<(String, String)> = wished.into_iter().zip(located).filter(|(_, at)| at.is_some()).map(|(k, _)| k).collect();
    let mut plan = match ingest::plan(bundle, &mut || (fhir.new_id)(), &|t, id| taken.contains(&(t.to_owned(), id.to_owned()))) {
        Ok(plan) => plan,
        Err(e) => return Ok(Err(FhirResponse::json(400, e.outcome().to_string()))),
    };
    let mut created = HashSet::new();
    for (partition, writes) in &plan.partitions {
        if partition == DIRECTORY {
            continue;
        }
        for w in writes {
            let (t, id) = super::type_and_id(&w.resource);
            let now = if w.created { None } else { existing(fhir, t, id).await? };
            if let Some(refusal) = judge_write(grant, &w.resource, &now) {
                let reference = format!("{t}/{id}");
                let why = serde_json::from_str::<Value>(&refusal.body)
                    .ok()
                    .and_then(|o| o.pointer("/issue/0/diagnostics").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                let message = format!("the entry for {reference} is refused, so nothing was written: {why}");
                return Ok(Err(FhirResponse { body: outcome::error(code_of(refusal.status), &message).to_string(), ..refusal }));
            }
            if !matches!(now, Some((_, Some(_)))) {
                created.insert(format!("{t}/{id}"));
            }
        }
    }
    for (reference, was_created) in plan.order.iter_mut() {
        *was_created = created.contains(reference.as_str());
    }
    ingest(fhir, &plan).await?;
    Ok(Ok(plan))
}

fn code_of(status: u16) -> IssueType {
    match status {
        403 => IssueType::Security,
        _ => IssueType::Invalid,
    }
}

/// Writes a judged plan: the directory entries first (so an id is taken before anything is
/// stored under it, and a failure half-way leaves no resource a later create could
/// overwrite), then the shared partitions (idempotent upserts), then each patient partition in
/// one atomic write.
async fn ingest(fhir: &Fhir<'_>, plan: &Plan) -> Result<(), StoreError> {
    fhir.store.register(plan.directory_entries()).await?;
    for partition in plan.write_order() {
        let resources: Vec<Value> = plan.partitions[partition].iter().map(|w| w.resource.clone()).collect();
        fhir.store.write(partition, resources, None).await?;
    }
    Ok(())
}

/// A batch (R4 §3.1.0.11.2): every entry on its own; one entry's failure is its own
/// `response.outcome` and does not stop the others.
async fn batch(fhir: &Fhir<'_>, grant: &AccessGrant, bundle: &Value) -> Result<FhirResponse, StoreError> {
    let entries = bundle.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
    if entries.len() > ingest::MAX_ENTRIES {
        return Ok(FhirResponse::outcome(400, IssueType::Invalid, "the batch has too many entries"));
    }
    let mut responses = Vec::new();
    for entry in entries {
        let single = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [entry] });
        responses.push(match transaction(fhir, grant, &single).await? {
            Ok(plan) => json!({ "response": plan.response("transaction")["entry"][0]["response"].clone() }),
            Err(refusal) => {
                let outcome: Value = serde_json::from_str(&refusal.body).unwrap_or_default();
                json!({ "response": { "status": refusal.status.to_string(), "outcome": outcome } })
            }
        });
    }
    Ok(FhirResponse::json(200, json!({ "resourceType": "Bundle", "type": "batch-response", "entry": responses }).to_string()))
}
