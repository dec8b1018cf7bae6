//! read, vread, instance and type history (R4 §3.1.0.2, §3.1.0.3, §3.1.0.6).

use super::{usable, Fhir, FhirResponse};
use crate::fhir::gate::{self, Filter, Place, Reach};
use crate::fhir::outcome::IssueType;
use crate::fhir::params;
use crate::fhir::store::{patient_partition, shared_partition, ReadOutcome, ReadStatus, Version};
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use serde_json::{json, Value};
use smart_protocol::scopes::Permissions;

pub(super) fn is_patient_data(resource_type: &str) -> bool {
    params::in_patient_compartment(resource_type)
}

/// The one patient every usable scope is confined to, if so.
pub(super) fn single_patient_of(reach: &Reach) -> Option<&str> {
    match reach {
        Reach::Patients(set) if set.len() == 1 => set.iter().next().map(String::as_str),
        _ => None,
    }
}

/// Where to look for `Type/id` without asking the directory: a Patient is in its own
/// partition; a caller confined to one patient looks for patient data in that patient's
/// partition (one round trip for everything they may see).
pub(super) fn direct(reach: &Reach, resource_type: &str, id: &str) -> Option<String> {
    if resource_type == "Patient" {
        return Some(patient_partition(id));
    }
    single_patient_of(reach).filter(|_| is_patient_data(resource_type)).map(patient_partition)
}

/// The directory's partition for `Type/id`.
pub(super) async fn directory(fhir: &Fhir<'_>, resource_type: &str, id: &str) -> Result<Option<String>, StoreError> {
    Ok(fhir.store.locate(&[(resource_type.to_owned(), id.to_owned())]).await?.into_iter().next().flatten())
}

/// The partition `Type/id` lives in: the direct guess when it holds the resource, else the
/// directory's answer.
pub(super) async fn locate(fhir: &Fhir<'_>, reach: &Reach, resource_type: &str, id: &str) -> Result<Option<String>, StoreError> {
    if let Some(partition) = direct(reach, resource_type, id) {
        if resource_type == "Patient" || fhir.store.read(&partition, resource_type, id, None).await?.status != ReadStatus::Missing {
            return Ok(Some(partition));
        }
    }
    directory(fhir, resource_type, id).await
}

fn answer(read: ReadOutcome, filter: &Filter, resource_type: &str, id: &str) -> FhirResponse {
    match (read.status, read.content) {
        (ReadStatus::Found, Some(content)) => {
            let value: Value = serde_json::from_str(content.get()).unwrap_or_default();
            if !filter.admits(&value) {
                return FhirResponse::not_found(resource_type, id);
            }
            FhirResponse { version: Some(read.version), last_updated: Some(read.last_updated), ..FhirResponse::json(200, content.get().to_owned()) }
        }
        (ReadStatus::Gone, _) if *filter == Filter::All => FhirResponse::outcome(410, IssueType::NotFound, &format!("{resource_type}/{id} was deleted")),
        _ => FhirResponse::not_found(resource_type, id),
    }
}

pub(super) async fn read(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, id: &str, version: Option<i64>) -> Result<FhirResponse, StoreError> {
    let usable = match usable(grant, resource_type, Permissions::READ) {
        Ok(u) => u,
        Err(refusal) => return Ok(refusal),
    };
    let not_found = || Ok(FhirResponse::not_found(resource_type, id));
    if let Some(partition) = direct(&gate::reach(&usable), resource_type, id) {
        let filter = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&partition));
        match filter {
            Some(filter) => {
                let read = fhir.store.read(&partition, resource_type, id, version).await?;
                if read.status != ReadStatus::Missing || resource_type == "Patient" {
                    return Ok(answer(read, &filter, resource_type, id));
                }
            }
            None if resource_type == "Patient" => return not_found(),
            None => {}
        }
    }
    let Some(partition) = directory(fhir, resource_type, id).await? else { return not_found() };
    let Some(filter) = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&partition)) else { return not_found() };
    Ok(answer(fhir.store.read(&partition, resource_type, id, version).await?, &filter, resource_type, id))
}

/// One entry of a history Bundle (R4 §3.1.0.6).
fn history_entry(base: &str, resource_type: &str, id: &str, v: &Version) -> String {
    let url = format!("{base}/{resource_type}/{id}/_history/{}", v.version);
    let method = if v.deleted {
        "DELETE"
    } else if v.version == 1 {
        "POST"
    } else {
        "PUT"
    };
    let request = json!({ "method": method, "url": format!("{resource_type}/{id}") });
    let response = json!({ "status": if v.deleted { "204" } else { "200" }, "lastModified": v.last_updated, "etag": format!("W/\"{}\"", v.version) });
    let resource = if v.deleted { String::new() } else { format!(",\"resource\":{}", v.content.get()) };
    format!("{{\"fullUrl\":{}{resource},\"request\":{request},\"response\":{response}}}", json!(url))
}

fn history_bundle(entries: &[String]) -> String {
    format!("{{\"resourceType\":\"Bundle\",\"type\":\"history\",\"total\":{},\"entry\":[{}]}}", entries.len(), entries.join(","))
}

/// The versions the filter lets through: each version is judged on its own content (a
/// deletion on the content it removed).
fn visible<'v>(versions: &'v [Version], filter: &Filter) -> Vec<(&'v Version, Value)> {
    versions
        .iter()
        .filter_map(|v| {
            let value: Value = serde_json::from_str(v.content.get()).ok()?;
            filter.admits(&value).then_some((v, value))
        })
        .collect()
}

pub(super) async fn history(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, id: &str) -> Result<FhirResponse, StoreError> {
    let usable = match usable(grant, resource_type, Permissions::READ) {
        Ok(u) => u,
        Err(refusal) => return Ok(refusal),
    };
    let not_found = || Ok(FhirResponse::not_found(resource_type, id));
    let Some(partition) = locate(fhir, &gate::reach(&usable), resource_type, id).await? else { return not_found() };
    let Some(filter) = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&partition)) else { return not_found() };
    let versions = fhir.store.history(&partition, resource_type, Some(id)).await?;
    let shown = visible(&versions, &filter);
    if shown.is_empty() {
        return not_found();
    }
    let entries: Vec<String> = shown.iter().map(|(v, _)| history_entry(fhir.base, resource_type, id, v)).collect();
    Ok(FhirResponse::json(200, history_bundle(&entries)))
}

/// `GET [base]/{type}/_history`: the type's last 100 versions in the caller's one patient
/// compartment, or in the type's shared partition for non-patient types.
pub(super) async fn type_history(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str) -> Result<FhirResponse, StoreError> {
    let usable = match usable(grant, resource_type, Permissions::READ) {
        Ok(u) => u,
        Err(refusal) => return Ok(refusal),
    };
    let partition = if is_patient_data(resource_type) {
        match gate::reach(&usable) {
            Reach::Patients(set) if set.is_empty() => return Ok(FhirResponse::json(200, history_bundle(&[]))),
            reach => match single_patient_of(&reach) {
                Some(p) => patient_partition(p),
                None => {
                    return Ok(FhirResponse::outcome(
                        400,
                        IssueType::TooCostly,
                        "the history of a patient-data type needs one patient in context (a patient/ scope)",
                    ))
                }
            },
        }
    } else {
        shared_partition(resource_type)
    };
    let Some(filter) = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&partition)) else {
        return Ok(FhirResponse::json(200, history_bundle(&[])));
    };
    let versions = fhir.store.history(&partition, resource_type, None).await?;
    let entries: Vec<String> =
        visible(&versions, &filter).iter().map(|(v, value)| history_entry(fhir.base, resource_type, value["id"].as_str().unwrap_or_default(), v)).collect();
    Ok(FhirResponse::json(200, history_bundle(&entries)))
}
