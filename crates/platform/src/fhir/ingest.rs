//! Loading Synthea-style transaction Bundles: entries use `urn:uuid:` fullUrls and `POST`
//! requests. This first cut keeps the resources the store holds so far (Patient, Encounter)
//! and rewrites `urn:uuid:` references to `Type/id`; the FHIR transaction endpoint replaces it.

use crate::users::is_fhir_id;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("not a Bundle of type transaction or batch")]
    NotABundle,
    #[error("entry {0} has no resource with a resourceType")]
    BadEntry(usize),
    #[error("entry {0} has no usable id (FHIR id, or a urn:uuid fullUrl)")]
    NoId(usize),
}

/// The resource types [`extract`] keeps.
pub const KEPT: [&str; 2] = ["Patient", "Encounter"];

/// The kept resources of `bundle`, with ids assigned and references resolved.
pub fn extract(bundle: &Value) -> Result<Vec<Value>, IngestError> {
    let is_bundle = bundle.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && matches!(bundle.get("type").and_then(Value::as_str), Some("transaction" | "batch"));
    if !is_bundle {
        return Err(IngestError::NotABundle);
    }
    let entries = bundle.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut resources = Vec::new();
    let mut urn_map = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let resource = entry.get("resource").filter(|r| r.get("resourceType").and_then(Value::as_str).is_some()).ok_or(IngestError::BadEntry(i))?;
        let resource_type = resource["resourceType"].as_str().unwrap_or_default().to_owned();
        let full_url = entry.get("fullUrl").and_then(Value::as_str);
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| full_url.and_then(|u| u.strip_prefix("urn:uuid:")).map(str::to_owned))
            .filter(|id| is_fhir_id(id))
            .ok_or(IngestError::NoId(i))?;
        if let Some(url) = full_url {
            urn_map.insert(url.to_owned(), format!("{resource_type}/{id}"));
        }
        let mut resource = resource.clone();
        resource["id"] = Value::String(id);
        resources.push(resource);
    }
    let mut kept: Vec<Value> = resources
        .into_iter()
        .filter(|r| KEPT.contains(&r["resourceType"].as_str().unwrap_or_default()))
        .collect();
    for resource in &mut kept {
        rewrite_references(resource, &urn_map);
    }
    Ok(kept)
}

fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (key, v) in obj.iter_mut() {
                if key == "reference" {
                    if let Some(target) = v.as_str().and_then(|r| map.get(r)) {
                        *v = Value::String(target.clone());
                    }
                } else {
                    rewrite_references(v, map);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_references(v, map)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_patients_and_encounters_with_resolved_references() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p-1", "resource": {"resourceType": "Patient", "id": "p-1"}, "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:e-1", "resource": {"resourceType": "Encounter", "subject": {"reference": "urn:uuid:p-1"}}, "request": {"method": "POST", "url": "Encounter"}},
            {"fullUrl": "urn:uuid:o-1", "resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:p-1"}}}
        ]});
        let kept = extract(&bundle).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1]["id"], "e-1");
        assert_eq!(kept[1]["subject"]["reference"], "Patient/p-1");
    }

    #[test]
    fn refuses_what_is_not_a_transaction_bundle() {
        assert_eq!(extract(&json!({"resourceType": "Patient"})), Err(IngestError::NotABundle));
        assert_eq!(extract(&json!({"resourceType": "Bundle", "type": "transaction", "entry": [{}]})), Err(IngestError::BadEntry(0)));
        assert_eq!(
            extract(&json!({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {"resourceType": "Patient"}}]})),
            Err(IngestError::NoId(0))
        );
    }
}
