//! Where FHIR resources live, and the store port.
//!
//! Storage is partitioned by patient compartment: one Durable Object per patient holds the
//! Patient and every resource in that patient's compartment (R4 CompartmentDefinition
//! "patient", see [`super::params::COMPARTMENT`]); resources outside any compartment live in a
//! shared partition per type; a directory partition maps `Type/id` to its partition (for
//! requests without patient context) and keeps a copy of every Patient (for the patient
//! picker and patient search).

use super::params;
use super::search::Search;
use super::search::{references_at, values_keeping_untyped};
use crate::ports::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

pub use super::partition::{patient_partition, shared_partition, DIRECTORY};

#[async_trait(?Send)]
pub trait FhirStore {
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError>;
    /// Patients, in name order, at most `limit`.
    async fn list_patients(&self, limit: usize) -> Result<Vec<Value>, StoreError>;
    /// One page of a Patient search of the directory (`query` from `search::parse`, with its
    /// `_count` and `_offset`) and the number of matches.
    async fn patient_page(&self, query: &Search) -> Result<(Vec<Value>, i64), StoreError>;
    /// A patient's encounters, newest first, at most `limit`.
    async fn patient_encounters(&self, patient_id: &str, limit: usize) -> Result<Vec<Value>, StoreError>;
}

/// What a write stored for one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub reference: String,
    pub version: i64,
    pub created: bool,
    #[serde(default)]
    pub last_updated: String,
}

/// What a write did. (A plain struct: serde_json's `RawValue` cannot sit in a tagged enum.)
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// `If-Match` named another version than the current one: nothing was written.
    pub conflict: bool,
    pub current: Option<i64>,
    pub written: Vec<Written>,
    /// The stored resource, when one was written.
    pub content: Option<Box<RawValue>>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ReadStatus {
    Found,
    /// Deleted: 410 Gone.
    Gone,
    Missing,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReadOutcome {
    pub status: ReadStatus,
    pub content: Option<Box<RawValue>>,
    pub version: i64,
    pub last_updated: String,
}

/// One version of a resource, newest first in a history.
#[derive(Debug, Serialize, Deserialize)]
pub struct Version {
    pub version: i64,
    pub last_updated: String,
    pub deleted: bool,
    /// The content (for a deletion: the last content before it).
    pub content: Box<RawValue>,
}

/// Which rows of a history or a compartment to answer: at most `count` from position `offset`
/// (in the store's order), stored at or after `since` (an ISO 8601 UTC instant, compared as text
/// with `lastUpdated`, which the stores write in one format).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub since: Option<String>,
    pub offset: usize,
    pub count: usize,
}

/// A page of a history, newest first, and how many versions the whole history holds.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct HistoryPage {
    pub versions: Vec<Version>,
    pub total: i64,
}

/// A page of the current resources of a compartment (`$everything`): `(type, id, content)`,
/// the Patient first, then by type and id; and how many there are in all.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct CompartmentPage {
    pub resources: Vec<(String, String, Box<RawValue>)>,
    pub total: i64,
}

#[derive(Debug, Serialize, Deserialize, Default)]
pub struct SearchResult {
    /// `(id, resource)`: the id comes from the row, so callers need not parse the resource.
    pub resources: Vec<(String, Box<RawValue>)>,
    pub total: i64,
}

/// The partitions, as the FHIR use cases see them: one Durable Object each in the Worker, a
/// map in [`super::memory`]. A call touches one partition (the directory is one too).
#[async_trait(?Send)]
pub trait Partitions {
    /// Stores a new version of each resource (all or nothing); `if_match` applies to a single one.
    async fn write(&self, partition: &str, resources: Vec<Value>, if_match: Option<i64>) -> Result<WriteOutcome, StoreError>;
    async fn read(&self, partition: &str, resource_type: &str, id: &str, version: Option<i64>) -> Result<ReadOutcome, StoreError>;
    /// A page of an instance's versions (`id` given) or of the type's, newest first.
    async fn history(&self, partition: &str, resource_type: &str, id: Option<&str>, page: &Page) -> Result<HistoryPage, StoreError>;
    /// A page of the current (not deleted) resources of `types` in the partition.
    async fn compartment(&self, partition: &str, types: &[String], page: &Page) -> Result<CompartmentPage, StoreError>;
    /// Marks the resource deleted; its new version, or `None` when there was nothing to delete.
    async fn delete(&self, partition: &str, resource_type: &str, id: &str) -> Result<Option<i64>, StoreError>;
    async fn search(&self, partition: &str, query: &Search) -> Result<SearchResult, StoreError>;
    /// The directory: the partition of each `Type/id`, in the order asked.
    async fn locate(&self, keys: &[(String, String)]) -> Result<Vec<Option<String>>, StoreError>;
    /// Records `(Type, id, partition)` in the directory. An existing entry is never re-pointed.
    async fn register(&self, entries: Vec<(String, String, String)>) -> Result<(), StoreError>;
    /// Undoes versions written (or deleted) earlier: for each `Type/id` whose current version
    /// is still `version`, that version is removed and the one before it restored (the
    /// resource is forgotten when it had none). A resource written again since is left as it
    /// is. The compensation of a transaction that failed in a later partition.
    async fn revert(&self, partition: &str, written: Vec<Written>) -> Result<(), StoreError>;
    /// The resource types a partition holds (not deleted), sorted; `None` when the adapter
    /// cannot tell (the caller then asks type by type). Bulk export reads only these.
    async fn types_in(&self, _partition: &str) -> Result<Option<Vec<String>>, StoreError> {
        Ok(None)
    }
}

/// A reference that could tie a resource to a patient, in a form the server cannot resolve
/// (absolute, conditional, `urn:` outside a bundle): such a resource is refused (422) rather
/// than stored outside the patient's compartment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the reference {0:?} cannot place the resource: references that tie it to a patient must be relative (Patient/{{id}})")]
pub struct Unplaceable(pub String);

/// What a reference at a compartment path says: `Patient/x` (or `Patient/x/_history/n`) is
/// patient `x`; any other form that names a Patient (absolute, conditional, malformed) cannot
/// be placed; everything else (another type, a contained `#ref`, a `urn:`) is no patient.
fn patient_of_reference(reference: &str) -> Result<Option<String>, Unplaceable> {
    if !reference.contains("Patient") {
        return Ok(None);
    }
    let unplaceable = || Unplaceable(reference.to_owned());
    let mut parts = reference.split('/');
    let (Some(t), Some(id)) = (parts.next(), parts.next()) else { return Err(unplaceable()) };
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => {}
        (Some("_history"), Some(v), None) if crate::users::is_fhir_id(v) => {}
        _ => return Err(unplaceable()),
    }
    let is_type = t.starts_with(|c: char| c.is_ascii_uppercase()) && t.chars().all(|c| c.is_ascii_alphabetic());
    if !is_type || !crate::users::is_fhir_id(id) {
        return Err(unplaceable());
    }
    Ok((t == "Patient").then(|| id.to_owned()))
}

/// The patient whose compartment holds `resource`, if any (the first patient its compartment
/// references name).
pub fn compartment_patient(resource: &Value) -> Result<Option<String>, Unplaceable> {
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if resource_type == "Patient" {
        return Ok(resource.get("id").and_then(Value::as_str).map(str::to_owned));
    }
    let Some(names) = params::compartment_params(resource_type) else { return Ok(None) };
    let mut found = None;
    let compartment_params = names.iter().filter_map(|name| params::find(resource_type, name));
    // References whose type cannot be told are kept: `patient_of_reference` refuses any that
    // names a Patient in a form it cannot place, rather than store the resource outside.
    for reference in compartment_params.flat_map(|param| references_at(&values_keeping_untyped(resource, &param))) {
        if let Some(patient) = patient_of_reference(reference)? {
            found.get_or_insert(patient);
        }
    }
    Ok(found)
}

/// The partition `resource` is stored in.
pub fn partition_for(resource: &Value) -> Result<String, Unplaceable> {
    Ok(match compartment_patient(resource)? {
        Some(patient) => patient_partition(&patient),
        None => shared_partition(resource.get("resourceType").and_then(Value::as_str).unwrap_or("Unknown")),
    })
}

/// "Given Family" from a Patient's first official (or first) name.
pub fn patient_name(patient: &Value) -> String {
    let names = patient.get("name").and_then(Value::as_array);
    let name = names.and_then(|n| n.iter().find(|n| n.get("use").and_then(Value::as_str) == Some("official")).or_else(|| n.first()));
    let Some(name) = name else { return patient.get("id").and_then(Value::as_str).unwrap_or("").to_owned() };
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return text.to_owned();
    }
    let given: Vec<&str> = name.get("given").and_then(Value::as_array).map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let family = name.get("family").and_then(Value::as_str).unwrap_or("");
    [given.join(" "), family.to_owned()].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join(" ")
}

/// "born 1970-01-31 · female".
pub fn patient_detail(patient: &Value) -> String {
    let birth = patient.get("birthDate").and_then(Value::as_str).map(|b| format!("born {b}"));
    let gender = patient.get("gender").and_then(Value::as_str).map(str::to_owned);
    [birth, gender].into_iter().flatten().collect::<Vec<_>>().join(" · ")
}

/// The encounter's type text (or class) and its start date.
pub fn encounter_label(encounter: &Value) -> (String, String) {
    let kind = encounter
        .pointer("/type/0/text")
        .or_else(|| encounter.pointer("/type/0/coding/0/display"))
        .or_else(|| encounter.pointer("/class/code"))
        .and_then(Value::as_str)
        .unwrap_or("Encounter");
    let start = encounter.pointer("/period/start").and_then(Value::as_str).unwrap_or("");
    (kind.to_owned(), start.get(..10).unwrap_or(start).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_that_cannot_be_resolved_are_refused() {
        let obs = |r: &str| json!({"resourceType": "Observation", "id": "o", "subject": {"reference": r}});
        assert_eq!(partition_for(&obs("Patient/b/_history/1")), Ok("patient/b".into()));
        assert_eq!(partition_for(&obs("Group/g1")), Ok("shared/Observation".into()));
        assert_eq!(partition_for(&obs("urn:uuid:1234")), Ok("shared/Observation".into()), "patient data naming no patient: only unconfined callers see it");
        for bad in ["https://x/fhir/Patient/b", "Patient?identifier=mrn|B", "Patient/b/x", "Patient/", "RelatedPatient/b/c", "Patient/b c"] {
            assert_eq!(partition_for(&obs(bad)), Err(Unplaceable(bad.into())), "{bad}");
        }
    }

    #[test]
    fn resources_go_to_their_patients_compartment_or_a_shared_partition() {
        assert_eq!(partition_for(&json!({"resourceType": "Patient", "id": "p1"})), Ok("patient/p1".into()));
        assert_eq!(partition_for(&json!({"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p1"}})), Ok("patient/p1".into()));
        assert_eq!(
            partition_for(&json!({"resourceType": "Observation", "id": "o", "performer": [{"reference": "Practitioner/d"}, {"reference": "Patient/p2"}]})),
            Ok("patient/p2".into())
        );
        assert_eq!(
            partition_for(&json!({"resourceType": "Procedure", "id": "x", "performer": [{"actor": {"reference": "Patient/p3"}}]})),
            Ok("patient/p3".into())
        );
        assert_eq!(partition_for(&json!({"resourceType": "Observation", "id": "o"})), Ok("shared/Observation".into()));
        assert_eq!(partition_for(&json!({"resourceType": "Organization", "id": "org"})), Ok("shared/Organization".into()));
    }

    #[test]
    fn labels_for_the_pickers() {
        let p = json!({"resourceType": "Patient", "id": "p1", "name": [{"use": "nickname", "given": ["Jo"]}, {"use": "official", "given": ["Joanna", "M"], "family": "Doe"}], "birthDate": "1970-01-31", "gender": "female"});
        assert_eq!(patient_name(&p), "Joanna M Doe");
        assert_eq!(patient_detail(&p), "born 1970-01-31 · female");
        let e = json!({"resourceType": "Encounter", "type": [{"coding": [{"display": "Well child visit"}]}], "period": {"start": "2019-05-01T10:00:00-04:00"}});
        assert_eq!(encounter_label(&e), ("Well child visit".into(), "2019-05-01".into()));
    }
}
