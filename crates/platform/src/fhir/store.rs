//! The FHIR store port and the rules for where a resource lives.
//!
//! Storage is partitioned by patient compartment (one Durable Object per patient holds the
//! Patient and the resources about them), plus a directory partition that lists patients for
//! requests without patient context (the patient picker). This first cut stores Patient and
//! Encounter resources, enough for the authorization pages; the FHIR API extends the same port.

use crate::ports::StoreError;
use async_trait::async_trait;
use serde_json::Value;

/// Name of the partition that lists every patient.
pub const DIRECTORY: &str = "directory";

#[async_trait(?Send)]
pub trait FhirStore {
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError>;
    /// Patients, in name order, at most `limit`.
    async fn list_patients(&self, limit: usize) -> Result<Vec<Value>, StoreError>;
    /// A patient's encounters, newest first, at most `limit`.
    async fn patient_encounters(&self, patient_id: &str, limit: usize) -> Result<Vec<Value>, StoreError>;
    async fn upsert(&self, resource: &Value) -> Result<(), StoreError>;
}

/// The partitions a resource is written to: its patient compartment, and the directory for
/// Patients. `None` for resources this store does not hold yet.
pub fn partitions_for(resource: &Value) -> Option<Vec<String>> {
    let id = resource.get("id").and_then(Value::as_str)?;
    match resource.get("resourceType").and_then(Value::as_str)? {
        "Patient" => Some(vec![patient_partition(id), DIRECTORY.to_owned()]),
        "Encounter" => {
            let subject = resource.pointer("/subject/reference").and_then(Value::as_str)?;
            Some(vec![patient_partition(subject.strip_prefix("Patient/")?)])
        }
        _ => None,
    }
}

/// The key a partition orders a type by: patients by name, encounters by start.
pub fn sort_key(resource: &Value) -> String {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some("Patient") => patient_name(resource).to_lowercase(),
        Some("Encounter") => resource.pointer("/period/start").and_then(Value::as_str).unwrap_or("").to_owned(),
        _ => String::new(),
    }
}

pub fn patient_partition(patient_id: &str) -> String {
    format!("patient/{patient_id}")
}

/// "Given Family" from a Patient's first official (or first) name.
pub fn patient_name(patient: &Value) -> String {
    let names = patient.get("name").and_then(Value::as_array);
    let name = names.and_then(|n| {
        n.iter().find(|n| n.get("use").and_then(Value::as_str) == Some("official")).or_else(|| n.first())
    });
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
    fn patients_go_to_their_partition_and_the_directory_encounters_to_their_patient() {
        assert_eq!(partitions_for(&json!({"resourceType": "Patient", "id": "p1"})), Some(vec!["patient/p1".into(), "directory".into()]));
        assert_eq!(
            partitions_for(&json!({"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p1"}})),
            Some(vec!["patient/p1".into()])
        );
        assert_eq!(partitions_for(&json!({"resourceType": "Encounter", "id": "e1"})), None);
        assert_eq!(partitions_for(&json!({"resourceType": "Observation", "id": "o1"})), None);
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
