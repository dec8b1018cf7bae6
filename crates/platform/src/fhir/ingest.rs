//! Transaction and batch Bundles (R4 §3.1.0.11, <https://hl7.org/fhir/R4/http.html#transaction>):
//! ids assigned to `POST` entries, `urn:uuid:` references rewritten to `Type/id`, entries
//! grouped by partition. The caller writes the shared partitions first (idempotent upserts),
//! then each patient partition in one atomic write, then the directory.

use super::params;
use super::store::{partition_for, DIRECTORY};
use super::validate::{self, Issue};
use crate::users::is_fhir_id;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("not a Bundle of type transaction or batch")]
    NotABundle,
    #[error("entry {0} has no resource of a type this server serves")]
    BadEntry(usize),
    #[error("entry {0}: the request must be POST [type] or PUT [type]/[id] matching the resource")]
    BadRequest(usize),
    #[error("entry {0} has no usable id")]
    NoId(usize),
    #[error("the reference {0} points to no entry of the bundle")]
    Dangling(String),
    #[error("the bundle has more than {MAX_ENTRIES} entries")]
    TooLarge,
    #[error("{0}")]
    Unplaceable(String),
    #[error("entry {0} repeats the fullUrl or the resource of an earlier entry")]
    Duplicate(usize),
    #[error("entry {0}: conditional requests (ifMatch, ifNoneExist, ifNoneMatch, ifModifiedSince) are not supported in bundles")]
    Conditional(usize),
    /// The entry's resource fails its R4 definition; each issue's expression is rooted at the
    /// resource (`Observation.status`).
    #[error("entry {}: the resource does not conform to its R4 definition: {}", .0, validate::summary(.1))]
    Invalid(usize, Vec<Issue>),
}

impl IngestError {
    /// The OperationOutcome refusing the bundle: one issue per problem for `Invalid`.
    pub fn outcome(&self) -> Value {
        match self {
            IngestError::Invalid(i, issues) => validate::outcome_of(issues, &format!("entry {i}: ")),
            other => super::outcome::error(super::outcome::IssueType::Invalid, &other.to_string()),
        }
    }
}

pub const MAX_ENTRIES: usize = 5000;

/// One resource to write, with how it was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub resource: Value,
    pub created: bool,
}

/// The writes of a bundle, by partition (shared partitions sort before patient ones).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub partitions: BTreeMap<String, Vec<Write>>,
    /// `Type/id` of each entry, in bundle order (for the response).
    pub order: Vec<(String, bool)>,
}

impl Plan {
    /// The partitions in write order: shared ones first, then patients.
    pub fn write_order(&self) -> Vec<&String> {
        let mut names: Vec<&String> = self.partitions.keys().collect();
        names.sort_by_key(|n| (!n.starts_with("shared/"), n.as_str()));
        names
    }

    /// `(Type, id, partition)` for the directory (a Patient's directory copy is not an entry:
    /// the Patient lives in its own partition).
    pub fn directory_entries(&self) -> Vec<(String, String, String)> {
        self.partitions
            .iter()
            .filter(|(partition, _)| partition.as_str() != DIRECTORY)
            .flat_map(|(partition, writes)| {
                writes.iter().map(move |w| {
                    let t = w.resource["resourceType"].as_str().unwrap_or_default().to_owned();
                    let id = w.resource["id"].as_str().unwrap_or_default().to_owned();
                    (t, id, partition.clone())
                })
            })
            .collect()
    }

    /// The transaction-response Bundle (R4 §3.1.0.11.4).
    pub fn response(&self, bundle_type: &str) -> Value {
        let entries: Vec<Value> = self
            .order
            .iter()
            .map(|(reference, created)| json!({ "response": { "status": if *created { "201 Created" } else { "200 OK" }, "location": reference } }))
            .collect();
        json!({ "resourceType": "Bundle", "type": format!("{bundle_type}-response"), "entry": entries })
    }
}

/// The `(Type, id)` a `POST` entry asks for through its `fullUrl: urn:uuid:{id}`, in order.
pub fn wished_ids(bundle: &Value) -> Vec<(String, String)> {
    let entries = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .filter(|e| e.pointer("/request/method").and_then(Value::as_str).unwrap_or("POST") == "POST")
        .filter_map(|e| {
            let t = e.pointer("/resource/resourceType").and_then(Value::as_str)?;
            let id = e.get("fullUrl").and_then(Value::as_str)?.strip_prefix("urn:uuid:").filter(|id| is_fhir_id(id))?;
            Some((t.to_owned(), id.to_owned()))
        })
        .collect()
}

/// Plans the writes of a transaction or batch bundle. A `POST` entry keeps the id of its
/// `fullUrl: urn:uuid:{id}` when that id is free (`taken` says it is not), else gets one from
/// `new_id`: a create never overwrites.
pub fn plan(bundle: &Value, new_id: &mut dyn FnMut() -> String, taken: &dyn Fn(&str, &str) -> bool) -> Result<Plan, IngestError> {
    let is_bundle = bundle.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && matches!(bundle.get("type").and_then(Value::as_str), Some("transaction" | "batch"));
    if !is_bundle {
        return Err(IngestError::NotABundle);
    }
    let entries = bundle.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
    if entries.len() > MAX_ENTRIES {
        return Err(IngestError::TooLarge);
    }
    let mut resources = Vec::new();
    let mut urn_map = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        // Ignoring a condition would write what the client asked not to: refuse instead.
        if ["ifMatch", "ifNoneExist", "ifNoneMatch", "ifModifiedSince"].iter().any(|k| entry.get("request").and_then(|r| r.get(*k)).is_some()) {
            return Err(IngestError::Conditional(i));
        }
        let resource = entry.get("resource").filter(|r| r.is_object()).ok_or(IngestError::BadEntry(i))?;
        let resource_type = resource.get("resourceType").and_then(Value::as_str).filter(|t| params::is_served(t)).ok_or(IngestError::BadEntry(i))?;
        validate::structure(resource).map_err(|issues| IngestError::Invalid(i, issues))?;
        let method = entry.pointer("/request/method").and_then(Value::as_str).unwrap_or("POST");
        let url = entry.pointer("/request/url").and_then(Value::as_str).unwrap_or(resource_type);
        let full_url = entry.get("fullUrl").and_then(Value::as_str);
        let (id, created) = match method {
            "POST" if url == resource_type => {
                let wished = full_url.and_then(|u| u.strip_prefix("urn:uuid:")).filter(|id| is_fhir_id(id) && !taken(resource_type, id));
                let id = wished.map(str::to_owned).unwrap_or_else(&mut *new_id);
                (id, true)
            }
            "PUT" => {
                let (t, id) = url.split_once('/').ok_or(IngestError::BadRequest(i))?;
                let body_id = resource.get("id").and_then(Value::as_str);
                if t != resource_type || !is_fhir_id(id) || body_id.is_some_and(|b| b != id) {
                    return Err(IngestError::BadRequest(i));
                }
                (id.to_owned(), false)
            }
            _ => return Err(IngestError::BadRequest(i)),
        };
        // One entry per resource and per fullUrl: two entries for one id would land in two
        // partitions or overwrite each other.
        if !seen.insert(format!("{resource_type}/{id}")) || full_url.is_some_and(|u| urn_map.contains_key(u)) {
            return Err(IngestError::Duplicate(i));
        }
        if let Some(url) = full_url {
            urn_map.insert(url.to_owned(), format!("{resource_type}/{id}"));
        }
        let mut resource = resource.clone();
        resource["id"] = Value::String(id);
        resources.push((resource, created));
    }
    let mut plan = Plan::default();
    for (mut resource, created) in resources {
        rewrite_references(&mut resource, &urn_map)?;
        let reference = format!("{}/{}", resource["resourceType"].as_str().unwrap_or_default(), resource["id"].as_str().unwrap_or_default());
        plan.order.push((reference, created));
        let partition = partition_for(&resource).map_err(|e| IngestError::Unplaceable(e.to_string()))?;
        if resource["resourceType"] == "Patient" {
            // Patients are also listed in the directory (picker, patient search).
            plan.partitions.entry(DIRECTORY.to_owned()).or_default().push(Write { resource: resource.clone(), created });
        }
        plan.partitions.entry(partition).or_default().push(Write { resource, created });
    }
    Ok(plan)
}

fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) -> Result<(), IngestError> {
    match value {
        Value::Object(obj) => {
            for (key, v) in obj.iter_mut() {
                match (key.as_str(), v.as_str()) {
                    ("reference", Some(r)) if r.starts_with("urn:uuid:") => {
                        let target = map.get(r).ok_or_else(|| IngestError::Dangling(r.to_owned()))?;
                        *v = Value::String(target.clone());
                    }
                    _ => rewrite_references(v, map)?,
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite_references(v, map)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("gen-{n}")
        }
    }

    #[test]
    fn plans_a_synthea_style_transaction() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p-1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:org-1", "resource": {"resourceType": "Organization"}, "request": {"method": "POST", "url": "Organization"}},
            {"fullUrl": "urn:uuid:e-1", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "urn:uuid:p-1"}, "serviceProvider": {"reference": "urn:uuid:org-1"}}, "request": {"method": "POST", "url": "Encounter"}},
            {"fullUrl": "urn:uuid:o-1", "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:p-1"}, "encounter": {"reference": "urn:uuid:e-1"}}, "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Practitioner", "id": "d1"}, "request": {"method": "PUT", "url": "Practitioner/d1"}}
        ]});
        let plan = plan(&bundle, &mut ids(), &|_, _| false).unwrap();
        assert_eq!(plan.write_order(), vec!["shared/Organization", "shared/Practitioner", "directory", "patient/p-1"]);
        let patient = &plan.partitions["patient/p-1"];
        assert_eq!(patient.len(), 3);
        assert_eq!(patient[1].resource["serviceProvider"]["reference"], "Organization/org-1");
        assert_eq!(patient[2].resource["encounter"]["reference"], "Encounter/e-1");
        assert_eq!(plan.order[4], ("Practitioner/d1".into(), false));
        assert_eq!(plan.response("transaction")["entry"][0]["response"]["status"], "201 Created");
        assert_eq!(plan.directory_entries().len(), 5, "the Patient's directory copy is no entry");
    }

    #[test]
    fn refuses_bad_bundles_before_writing_anything() {
        let b = |entries: Value| json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        assert_eq!(plan(&json!({"resourceType": "Patient"}), &mut ids(), &|_, _| false), Err(IngestError::NotABundle));
        assert_eq!(plan(&b(json!([{"resource": {"resourceType": "Spaceship"}}])), &mut ids(), &|_, _| false), Err(IngestError::BadEntry(0)));
        assert_eq!(
            plan(&b(json!([{"resource": {"resourceType": "Patient"}, "request": {"method": "DELETE", "url": "Patient/1"}}])), &mut ids(), &|_, _| false),
            Err(IngestError::BadRequest(0))
        );
        assert_eq!(
            plan(&b(json!([{"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/b"}}])), &mut ids(), &|_, _| {
                false
            }),
            Err(IngestError::BadRequest(0))
        );
        assert_eq!(
            plan(
                &b(
                    json!([{"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:nowhere"}}, "request": {"method": "POST", "url": "Observation"}}])
                ),
                &mut ids(),
                &|_, _| false
            ),
            Err(IngestError::Dangling("urn:uuid:nowhere".into()))
        );
        let twice = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/a"}});
        let post = |url: &str| json!({"fullUrl": url, "resource": twice, "request": {"method": "POST", "url": "Observation"}});
        assert_eq!(plan(&b(json!([post("urn:uuid:dup"), post("urn:uuid:dup")])), &mut ids(), &|_, _| false), Err(IngestError::Duplicate(1)));
        let put = json!({"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/a"}});
        assert_eq!(plan(&b(json!([put, put])), &mut ids(), &|_, _| false), Err(IngestError::Duplicate(1)));
        let conditional = json!({"resource": twice, "request": {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=x"}});
        assert_eq!(plan(&b(json!([conditional])), &mut ids(), &|_, _| false), Err(IngestError::Conditional(0)));
        let absolute = json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "https://x/fhir/Patient/a"}}, "request": {"method": "POST", "url": "Observation"}});
        assert!(matches!(plan(&b(json!([absolute])), &mut ids(), &|_, _| false), Err(IngestError::Unplaceable(_))));
        let generated =
            plan(&b(json!([{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}])), &mut ids(), &|_, _| false).unwrap();
        assert_eq!(generated.order[0].0, "Patient/gen-1");
    }

    #[test]
    fn refuses_a_bundle_with_an_entry_that_fails_its_r4_definition() {
        let entry = |resource: Value| json!({"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}});
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            entry(json!({"resourceType": "Patient", "name": [{"given": ["a"]}]})),
            entry(json!({"resourceType": "Observation", "code": {"text": "x"}, "valueQuantity": {"value": "high"}}))
        ]});
        let refused = plan(&bundle, &mut ids(), &|_, _| false).unwrap_err();
        let IngestError::Invalid(1, issues) = &refused else { panic!("{refused:?}") };
        let found: Vec<(&str, &str)> = issues.iter().map(|i| (i.code.code(), i.expression.as_str())).collect();
        assert_eq!(found, vec![("value", "Observation.value.value"), ("required", "Observation.status")]);
        let outcome = refused.outcome();
        assert_eq!(
            outcome["issue"][1],
            json!({"severity": "error", "code": "required", "diagnostics": "entry 1: Observation.status is required (1..1)", "expression": ["Observation.status"]})
        );
        assert_eq!(IngestError::NotABundle.outcome()["issue"][0]["code"], "invalid");
    }
}
