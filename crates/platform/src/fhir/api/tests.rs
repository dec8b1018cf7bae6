//! The FHIR use cases natively, over the in-memory partitions: the issue-8 bypasses as
//! scenarios (the wire twins are in `tests/boundary.test.mjs`; the generated cases in
//! `tests/access_model.rs`).

use super::*;
use crate::fhir::memory::MemoryPartitions;
use crate::fhir::store::{partition_for, DIRECTORY};
use futures::executor::block_on;
use serde_json::json;
use std::cell::Cell;

fn grant(scope: &str, patient: Option<&str>, fhir_user: Option<&str>) -> AccessGrant {
    AccessGrant::for_tests(scope, patient, fhir_user)
}

fn obs(id: &str, patient: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final", "subject": {"reference": format!("Patient/{patient}")},
        "category": [{"coding": [{"code": category}]}], "code": {"text": "x"}})
}

struct World {
    store: MemoryPartitions,
    ids: Cell<u32>,
}

impl World {
    fn new() -> World {
        let world = World { store: MemoryPartitions::default(), ids: Cell::new(0) };
        let put = |r: Value| {
            let partition = partition_for(&r).unwrap();
            let (t, id) = type_and_id(&r);
            let key = (t.to_owned(), id.to_owned(), partition.clone());
            block_on(world.store.write(&partition, vec![r.clone()], None)).unwrap();
            if t == "Patient" {
                block_on(world.store.write(DIRECTORY, vec![r.clone()], None)).unwrap();
            }
            block_on(world.store.register(vec![key])).unwrap();
        };
        for p in ["a", "b"] {
            put(json!({"resourceType": "Patient", "id": p}));
        }
        put(json!({"resourceType": "Practitioner", "id": "d1"}));
        put(obs("a-lab", "a", "laboratory"));
        put(obs("a-vital", "a", "vital-signs"));
        put(obs("b-lab", "b", "laboratory"));
        put(obs("b-vital", "b", "vital-signs"));
        world
    }

    fn call(&self, grant: &AccessGrant, interaction: Interaction, body: Option<Value>, headers: &[(&str, &str)]) -> FhirResponse {
        let new_id = || {
            self.ids.set(self.ids.get() + 1);
            format!("new{}", self.ids.get())
        };
        let fhir = Fhir { store: &self.store, base: "https://x/fhir", new_id: &new_id };
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string());
        let request = FhirRequest {
            interaction: Some(interaction),
            query: header("query").map(|q| serde_urlencoded::from_str(&q).unwrap()).unwrap_or_default(),
            if_none_exist: header("If-None-Exist"),
            content_type: body.as_ref().map(|_| "application/fhir+json".into()),
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            ..Default::default()
        };
        block_on(handle(&fhir, grant, &request)).unwrap()
    }

    fn read(&self, grant: &AccessGrant, t: &str, id: &str) -> FhirResponse {
        self.call(grant, Interaction::Read { resource_type: t.into(), id: id.into() }, None, &[])
    }

    fn search(&self, grant: &AccessGrant, t: &str, query: &str) -> Vec<String> {
        let r = self.call(grant, Interaction::Search { resource_type: t.into() }, None, &[("query", query)]);
        assert_eq!(r.status, 200, "{}", r.body);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        let mut ids: Vec<String> = body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "match")
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    fn bundle(&self, grant: &AccessGrant, kind: &str, entries: Value) -> FhirResponse {
        self.call(grant, Interaction::Bundle, Some(json!({"resourceType": "Bundle", "type": kind, "entry": entries})), &[])
    }
}

fn system() -> AccessGrant {
    grant("system/*.cruds", None, None)
}

#[test]
fn a_patient_token_writes_no_shared_resource_and_deletes_none() {
    let w = World::new();
    let ned = grant("patient/*.cruds", Some("a"), Some("Practitioner/d1"));
    let r = w.bundle(
        &ned,
        "transaction",
        json!([{"resource": {"resourceType": "Practitioner", "id": "x"}, "request": {"method": "PUT", "url": "Practitioner/x"}}]),
    );
    assert_eq!(r.status, 403);
    assert_eq!(w.read(&system(), "Practitioner", "x").status, 404);
    assert_eq!(w.call(&ned, Interaction::Delete { resource_type: "Practitioner".into(), id: "d1".into() }, None, &[]).status, 403);
    assert_eq!(w.read(&system(), "Practitioner", "d1").status, 200);
}

#[test]
fn bundles_never_take_over_another_compartments_id() {
    let w = World::new();
    let ned = grant("patient/*.cruds", Some("a"), None);
    let forged = obs("ignored", "a", "laboratory");
    let post = w.bundle(&ned, "transaction", json!([{"fullUrl": "urn:uuid:b-lab", "resource": forged, "request": {"method": "POST", "url": "Observation"}}]));
    assert_eq!(post.status, 200);
    assert!(post.body.contains("Observation/new1"), "{}", post.body);
    let put = w.bundle(&ned, "transaction", json!([{"resource": obs("b-lab", "a", "laboratory"), "request": {"method": "PUT", "url": "Observation/b-lab"}}]));
    assert_eq!(put.status, 403);
    let theirs: Value = serde_json::from_str(&w.read(&system(), "Observation", "b-lab").body).unwrap();
    assert_eq!(theirs["subject"]["reference"], "Patient/b");
    assert_eq!(theirs["meta"]["versionId"], "1");
}

#[test]
fn contexts_do_not_pool() {
    let w = World::new();
    let mixed = grant("patient/Observation.rs user/Observation.rs?category=vital-signs", Some("a"), Some("Practitioner/d1"));
    assert_eq!(w.search(&mixed, "Observation", "patient=b"), vec!["b-vital"]);
    assert_eq!(w.search(&mixed, "Observation", "patient=a"), vec!["a-lab", "a-vital"]);
    assert_eq!(w.search(&mixed, "Observation", ""), vec!["a-lab", "a-vital", "b-vital"], "across patients, each partition with its own filter");
    assert_eq!(w.read(&mixed, "Observation", "b-lab").status, 404);
}

#[test]
fn a_patient_scoped_read_and_search_touch_one_partition() {
    let w = World::new();
    let ned = grant("patient/*.rs", Some("a"), None);
    w.store.calls.borrow_mut().clear();
    assert_eq!(w.read(&ned, "Observation", "a-lab").status, 200);
    assert_eq!(w.search(&ned, "Observation", "category=laboratory"), vec!["a-lab"]);
    assert_eq!(w.read(&ned, "Patient", "a").status, 200);
    assert_eq!(*w.store.calls.borrow(), [("patient/a".to_owned(), 3)].into_iter().collect());
}

#[test]
fn history_if_none_exist_and_deleted_patients_respect_the_rules() {
    let w = World::new();
    let lab = grant("patient/Observation.cruds?category=laboratory", Some("a"), None);
    let ned = grant("patient/*.cruds", Some("a"), None);
    let delete = |g: &AccessGrant, t: &str, id: &str| w.call(g, Interaction::Delete { resource_type: t.into(), id: id.into() }, None, &[]).status;
    assert_eq!(delete(&ned, "Observation", "a-vital"), 204);
    let history = w.call(&lab, Interaction::History { resource_type: "Observation".into(), id: "a-vital".into() }, None, &[]);
    assert_eq!(history.status, 404, "the deletion of a hidden resource shows nothing: {}", history.body);

    let mut probe = obs("x", "a", "laboratory");
    probe["identifier"] = json!([{"value": "i1"}]);
    let mut hidden = obs("a-hidden", "a", "vital-signs");
    hidden["identifier"] = json!([{"value": "i1"}]);
    assert_eq!(w.call(&ned, Interaction::Update { resource_type: "Observation".into(), id: "a-hidden".into() }, Some(hidden), &[]).status, 201);
    let created = w.call(&lab, Interaction::Create { resource_type: "Observation".into() }, Some(probe), &[("If-None-Exist", "identifier=i1")]);
    assert_eq!(created.status, 201, "the hidden match is not handed back");
    assert!(!created.body.contains("a-hidden"));

    let doctor = grant("user/*.cruds", None, Some("Practitioner/d1"));
    assert_eq!(w.search(&doctor, "Patient", ""), vec!["a", "b"]);
    assert_eq!(delete(&doctor, "Patient", "b"), 204);
    assert_eq!(w.search(&doctor, "Patient", ""), vec!["a"]);
    assert_eq!(w.read(&doctor, "Patient", "b").status, 410);
}

#[test]
fn writes_and_bundles_obey_granular_filters_and_unwritable_bundles_are_refused_unread() {
    let w = World::new();
    let lab = grant("patient/Observation.cruds?category=laboratory", Some("a"), None);
    let create = |r: Value| w.call(&lab, Interaction::Create { resource_type: "Observation".into() }, Some(r), &[]).status;
    assert_eq!(create(obs("x", "a", "vital-signs")), 403);
    assert_eq!(create(obs("x", "a", "laboratory")), 201);
    assert_eq!(
        w.call(&lab, Interaction::Update { resource_type: "Observation".into(), id: "a-lab".into() }, Some(obs("a-lab", "a", "survey")), &[]).status,
        403
    );
    let hidden = w.call(&lab, Interaction::Delete { resource_type: "Observation".into(), id: "a-vital".into() }, None, &[]);
    assert_eq!(hidden.status, 204, "a resource the filter hides is answered as missing");
    assert_eq!(w.read(&system(), "Observation", "a-vital").status, 200, "and is not deleted");
    let reader = grant("patient/Observation.rs patient/Observation.d?category=laboratory", Some("a"), None);
    assert_eq!(
        w.call(&reader, Interaction::Delete { resource_type: "Observation".into(), id: "a-vital".into() }, None, &[]).status,
        403,
        "visible but not deletable"
    );
    let reader = grant("patient/*.rs", Some("a"), None);
    let unread = w.call(&reader, Interaction::Bundle, None, &[]);
    assert_eq!(unread.status, 403, "no create or update scope: the body is not even parsed");
    assert_eq!(super::refuse_unread(&reader, &Interaction::Bundle).map(|r| r.status), Some(403), "refused before the body is read");
    assert!(super::refuse_unread(&grant("patient/*.cruds", Some("a"), None), &Interaction::Bundle).is_none());
    assert!(super::refuse_unread(&reader, &Interaction::Search { resource_type: "Observation".into() }).is_none());
}
