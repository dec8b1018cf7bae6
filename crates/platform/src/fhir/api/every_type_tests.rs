//! Every R4 resource type served (issue 12: "stored, read, versioned, searched and deleted,
//! each in the right partition"), natively over the in-memory partitions: a small valid
//! instance of each, made from its R4 StructureDefinition (`validate::minimal`), goes through
//! create, read, update, vread, history, search and delete; a type of the Patient compartment
//! whose compartment parameters name the patient lands in that patient's partition and a
//! patient token finds it there; every other type is kept in its shared partition.

use super::test_support::{grant, match_ids, put, run, system};
use super::{FhirRequest, FhirResponse};
use crate::fhir::memory::MemoryPartitions;
use crate::fhir::params::{self, TYPES};
use crate::fhir::rest::Interaction;
use crate::fhir::store::{partition_for, Partitions};
use crate::fhir::validate;
use futures::executor::block_on;
use serde_json::{json, Value};
use std::cell::Cell;

fn call(store: &MemoryPartitions, ids: &Cell<u32>, g: &crate::guard::AccessGrant, interaction: Interaction, body: Option<&Value>, query: &str) -> FhirResponse {
    let request = FhirRequest {
        interaction: Some(interaction),
        query: serde_urlencoded::from_str(query).unwrap(),
        content_type: body.map(|_| "application/fhir+json".into()),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        ..Default::default()
    };
    run(store, ids, g, &request)
}

/// `resource` with a top-level element of one of its compartment parameters naming
/// `Patient/p1` (in the form its definition takes: one Reference or a list), when there is one.
fn to_the_patient(t: &str, resource: Value) -> Value {
    for name in params::compartment_params(t).unwrap_or_default() {
        let Some(param) = params::find(t, name) else { continue };
        let path = param.expression.split(" | ").next().unwrap_or_default().trim_start_matches('(');
        let Some(rest) = path.strip_prefix(&format!("{t}.")) else { continue };
        let steps: Vec<&str> = rest.split(' ').next().unwrap_or_default().split('.').filter(|s| !s.starts_with("where(")).collect();
        let reference = json!({"reference": "Patient/p1"});
        let mut candidates = Vec::new();
        match steps.as_slice() {
            [element] => {
                for value in [reference.clone(), json!([reference.clone()])] {
                    let mut candidate = resource.clone();
                    candidate[*element] = value;
                    candidates.push(candidate);
                }
            }
            // One level down (`Appointment.participant.actor`): in the first item there is, or a new one.
            [outer, inner] => {
                for value in [reference.clone(), json!([reference.clone()])] {
                    let mut candidate = resource.clone();
                    match candidate.get_mut(*outer) {
                        Some(Value::Array(items)) => items[0][*inner] = value.clone(),
                        Some(object) => object[*inner] = value.clone(),
                        None => candidate[*outer] = json!([{ *inner: value.clone() }]),
                    }
                    candidates.push(candidate);
                }
            }
            _ => {}
        }
        for candidate in candidates {
            if validate::structure(&candidate).is_ok() && partition_for(&candidate).ok().as_deref() == Some("patient/p1") {
                return candidate;
            }
        }
    }
    resource
}

#[test]
fn every_served_type_is_created_read_versioned_searched_and_deleted_in_its_partition() {
    let store = MemoryPartitions::default();
    let ids = Cell::new(0);
    put(&store, json!({"resourceType": "Patient", "id": "p1"}));
    let sys = system();
    let ann = grant("patient/*.rs", Some("p1"), None);
    let (mut in_compartment, mut shared) = (0, 0);
    for (t, _) in TYPES {
        let t = *t;
        let id = format!("x-{}", t.to_lowercase());
        let mut resource = validate::minimal(t, "Patient/p1");
        resource["id"] = json!(id);
        if t == "Patient" {
            resource["gender"] = json!("other");
        }
        assert_eq!(validate::structure(&resource), Ok(()), "{t}: {resource}");
        if t != "Patient" && params::in_patient_compartment(t) && partition_for(&resource).unwrap() != "patient/p1" {
            resource = to_the_patient(t, resource);
        }
        let at = |i: Interaction, body: Option<&Value>, query: &str| call(&store, &ids, &sys, i, body, query);
        let r = at(Interaction::Update { resource_type: t.into(), id: id.clone() }, Some(&resource), "");
        assert_eq!(r.status, 201, "{t}: {} {resource}", r.body);
        // Its partition: the one the placement rule names, recorded in the directory.
        let partition = partition_for(&resource).unwrap();
        assert_eq!(block_on(store.locate(&[(t.into(), id.clone())])).unwrap(), vec![Some(partition.clone())], "{t}");
        if params::is_patient_data(t) && partition == "patient/x-patient" {
            // A Patient is its own compartment.
        } else if partition == "patient/p1" {
            assert!(params::in_patient_compartment(t) || params::is_patient_data(t), "{t} in a compartment");
            in_compartment += 1;
            let found = call(&store, &ids, &ann, Interaction::Search { resource_type: t.into() }, None, &format!("_id={id}"));
            assert_eq!(match_ids(&found), std::slice::from_ref(&id), "{t}: the patient finds it in their compartment");
        } else {
            assert_eq!(partition, format!("shared/{t}"), "{t}");
            shared += 1;
        }
        assert_eq!(at(Interaction::Read { resource_type: t.into(), id: id.clone() }, None, "").status, 200, "{t}");
        // A second version (a new element where the type has `text`, every domain resource).
        let mut changed = resource.clone();
        changed["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">v2</div>"});
        if !matches!(t, "Binary" | "Bundle" | "Parameters") {
            let r = at(Interaction::Update { resource_type: t.into(), id: id.clone() }, Some(&changed), "");
            assert_eq!((r.status, r.version), (200, Some(2)), "{t}: {}", r.body);
            let v1 = at(Interaction::Vread { resource_type: t.into(), id: id.clone(), version: "1".into() }, None, "");
            assert_eq!(v1.status, 200, "{t}");
            assert!(serde_json::from_str::<Value>(&v1.body).unwrap().get("text").is_none(), "{t}: version 1 as it was");
            let history: Value = serde_json::from_str(&at(Interaction::History { resource_type: t.into(), id: id.clone() }, None, "").body).unwrap();
            assert_eq!(history["total"], json!(2), "{t}: {history}");
        }
        assert_eq!(match_ids(&at(Interaction::Search { resource_type: t.into() }, None, &format!("_id={id}"))), std::slice::from_ref(&id), "{t}");
        let deleted = at(Interaction::Delete { resource_type: t.into(), id: id.clone() }, None, "");
        assert!(matches!(deleted.status, 200 | 204), "{t}: {}", deleted.body);
        assert_eq!(at(Interaction::Read { resource_type: t.into(), id: id.clone() }, None, "").status, 410, "{t}");
        assert!(match_ids(&at(Interaction::Search { resource_type: t.into() }, None, &format!("_id={id}"))).is_empty(), "{t}");
    }
    assert_eq!(TYPES.len(), 145);
    let compartment_types = TYPES.iter().filter(|(t, _)| *t != "Patient" && params::in_patient_compartment(t)).count();
    assert_eq!((in_compartment, shared), (compartment_types, TYPES.len() - 1 - compartment_types), "every compartment type placed with its patient");
}
