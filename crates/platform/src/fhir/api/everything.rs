//! `GET|POST [base]/Patient/{id}/$everything` (R4 Patient operation "everything",
//! <https://hl7.org/fhir/R4/patient-operation-everything.html>): the Patient and every current
//! resource in their compartment — one partition — paged with `_count` (and `_offset` in the
//! next links), narrowed by `_since` and `_type`.
//!
//! Within the caller's scopes: each type is included only where the gate lets the grant read
//! it in this patient's compartment, each resource only through that type's filter. A
//! `patient/` token reaches its launch patient only; a patient no type reaches is answered as
//! one that does not exist (404). Resources outside the compartment that these reference
//! (Practitioner, Organization, Medication…) are not added (the operation allows but does not
//! require them).

use super::read::{fill, links, paging};
use super::{Fhir, FhirRequest, FhirResponse};
use crate::fhir::gate::{self, Denied, Filter, Place};
use crate::fhir::outcome::IssueType;
use crate::fhir::params;
use crate::fhir::store::{patient_partition, Page, ReadStatus};
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use smart_protocol::scopes::Permissions;
use std::collections::BTreeMap;

/// Patient and every type of the R4 Patient compartment.
fn compartment_types() -> Vec<&'static str> {
    params::RESOURCE_TYPES.iter().copied().filter(|t| params::in_patient_compartment(t)).collect()
}

/// The operation's parameters from a `Parameters` body (POST), as query pairs: `_count`,
/// `_since`, `_type` (R4 §3.1.0.11 "Operations": POST parameters in a Parameters resource).
fn body_parameters(request: &FhirRequest) -> Result<Vec<(String, String)>, FhirResponse> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let bad = || FhirResponse::outcome(400, IssueType::Invalid, "POST $everything takes a Parameters resource (or no body)");
    let value: Value = serde_json::from_slice(&request.body).map_err(|_| bad())?;
    if value["resourceType"] != "Parameters" {
        return Err(bad());
    }
    let mut pairs = Vec::new();
    for parameter in value["parameter"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().ok_or_else(bad)?;
        let given = parameter.as_object().and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v.clone())).ok_or_else(bad)?;
        let text = match given {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => return Err(bad()),
        };
        pairs.push((name.to_owned(), text));
    }
    Ok(pairs)
}

pub(super) async fn everything(fhir: &Fhir<'_>, grant: &AccessGrant, patient: &str, request: &FhirRequest) -> Result<FhirResponse, StoreError> {
    let mut query = request.query.clone();
    match body_parameters(request) {
        Ok(pairs) => query.extend(pairs),
        Err(refusal) => return Ok(refusal),
    }
    let paging = match paging(&query) {
        Ok(p) => p,
        Err(refusal) => return Ok(refusal),
    };
    let types = compartment_types();
    let mut asked: Option<Vec<String>> = None;
    for (_, value) in query.iter().filter(|(k, _)| k == "_type") {
        for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !params::is_served(t) {
                return Ok(FhirResponse::outcome(400, IssueType::Invalid, &format!("_type: {t} is not a resource type this server serves")));
            }
            asked.get_or_insert_with(Vec::new).push(t.to_owned());
        }
    }
    // The gate, type by type: which types the grant reads here, each with its filter.
    let place = Place::Compartment(patient);
    let mut filters: BTreeMap<String, Filter> = BTreeMap::new();
    let mut any_usable = false;
    let mut missing_patient = false;
    for t in &types {
        match gate::usable(grant, t, Permissions::READ) {
            Ok(usable) => {
                any_usable = true;
                if let Some(filter) = gate::at(&usable, grant, Permissions::READ, place) {
                    filters.insert((*t).to_owned(), filter);
                }
            }
            Err(Denied::NoPatientContext) => missing_patient = true,
            Err(Denied::InsufficientScope(_)) => {}
        }
    }
    if !any_usable {
        let denied = if missing_patient { Denied::NoPatientContext } else { Denied::InsufficientScope("the Patient compartment".into()) };
        return Ok(FhirResponse::denied(&denied));
    }
    let partition = patient_partition(patient);
    if filters.is_empty() {
        return Ok(FhirResponse::not_found("Patient", patient));
    }
    match fhir.store.read(&partition, "Patient", patient, None).await?.status {
        ReadStatus::Found => {}
        ReadStatus::Gone if filters.get("Patient") == Some(&Filter::All) => {
            return Ok(FhirResponse::outcome(410, IssueType::NotFound, &format!("Patient/{patient} was deleted")))
        }
        _ => return Ok(FhirResponse::not_found("Patient", patient)),
    }
    if let Some(asked) = &asked {
        filters.retain(|t, _| asked.contains(t));
    }
    let readable: Vec<String> = filters.keys().cloned().collect();
    let all_visible = filters.values().all(|f| *f == Filter::All);
    let fetch = async |page: Page| {
        if readable.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let found = fhir.store.compartment(&partition, &readable, &page).await?;
        Ok((found.resources, found.total))
    };
    let admitted = |(t, _, content): &(String, String, Box<RawValue>)| match filters.get(t) {
        Some(Filter::All) => true,
        Some(filter) => serde_json::from_str::<Value>(content.get()).is_ok_and(|value| filter.admits(&value)),
        None => false,
    };
    let filled = fill(&paging, all_visible, fetch, admitted).await?;
    let entries: Vec<String> = filled
        .rows
        .iter()
        .map(|(t, id, content)| {
            format!("{{\"fullUrl\":{},\"resource\":{},\"search\":{{\"mode\":\"match\"}}}}", json!(format!("{}/{t}/{id}", fhir.base)), content.get())
        })
        .collect();
    let url = format!("{}/Patient/{patient}/$everything", fhir.base);
    let links = Value::from(links(&url, &query, &paging, filled.next, all_visible));
    let total = filled.total.map(|t| format!(",\"total\":{t}")).unwrap_or_default();
    Ok(FhirResponse::json(200, format!("{{\"resourceType\":\"Bundle\",\"type\":\"searchset\"{total},\"link\":{links},\"entry\":[{}]}}", entries.join(","))))
}
