//! What the FHIR use-case tests share: grants, loading resources straight into the in-memory
//! partitions (as an admin load would, without the gate), and running one request.

use super::{handle, type_and_id, Fhir, FhirRequest, FhirResponse};
use crate::fhir::memory::MemoryPartitions;
use crate::fhir::store::{partition_for, Partitions, DIRECTORY};
use crate::guard::AccessGrant;
use futures::executor::block_on;
use serde_json::Value;
use std::cell::Cell;

pub(super) fn grant(scope: &str, patient: Option<&str>, fhir_user: Option<&str>) -> AccessGrant {
    AccessGrant::for_tests(scope, patient, fhir_user)
}

/// A backend service that may do anything.
pub(super) fn system() -> AccessGrant {
    grant("system/*.cruds", None, None)
}

/// Stores `resource` in its partition (and a Patient in the directory too) and registers it.
pub(super) fn put(store: &MemoryPartitions, resource: Value) {
    let partition = partition_for(&resource).unwrap();
    let (t, id) = type_and_id(&resource);
    let key = (t.to_owned(), id.to_owned(), partition.clone());
    block_on(store.write(&partition, vec![resource.clone()], None)).unwrap();
    if t == "Patient" {
        block_on(store.write(DIRECTORY, vec![resource.clone()], None)).unwrap();
    }
    block_on(store.register(vec![key])).unwrap();
}

/// Runs one request for `grant`; creates take the ids `new1`, `new2`, … counted in `ids`.
pub(super) fn run(store: &MemoryPartitions, ids: &Cell<u32>, grant: &AccessGrant, request: &FhirRequest) -> FhirResponse {
    let new_id = || {
        ids.set(ids.get() + 1);
        format!("new{}", ids.get())
    };
    let fhir = Fhir { store, base: "https://x/fhir", new_id: &new_id };
    block_on(handle(&fhir, grant, request)).unwrap()
}

/// `Type/id` of a searchset's entries in `mode` (`match`, `include`), sorted.
pub(super) fn entries(r: &FhirResponse, mode: &str) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.body);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    let mut found: Vec<String> = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap()))
        .collect();
    found.sort();
    found
}

/// The ids of a searchset's matches, sorted.
pub(super) fn match_ids(r: &FhirResponse) -> Vec<String> {
    entries(r, "match").into_iter().map(|r| r.split_once('/').map_or(r.clone(), |(_, id)| id.to_owned())).collect()
}
