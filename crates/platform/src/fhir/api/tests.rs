//! The FHIR use cases natively, over the in-memory partitions: the issue-8 bypasses as
//! scenarios (the wire twins are in `tests/boundary.test.mjs`; the generated cases in
//! `tests/access_model.rs`).

use super::*;
use crate::fhir::memory::MemoryPartitions;
use futures::executor::block_on;
use serde_json::json;
use std::cell::Cell;

use super::test_support::{entries, grant, match_ids, put, run, system};

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
        let put = |r: Value| put(&world.store, r);
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
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string());
        let request = FhirRequest {
            interaction: Some(interaction),
            query: header("query").map(|q| serde_urlencoded::from_str(&q).unwrap()).unwrap_or_default(),
            if_none_exist: header("If-None-Exist"),
            content_type: body.as_ref().map(|_| "application/fhir+json".into()),
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            ..Default::default()
        };
        run(&self.store, &self.ids, grant, &request)
    }

    fn read(&self, grant: &AccessGrant, t: &str, id: &str) -> FhirResponse {
        self.call(grant, Interaction::Read { resource_type: t.into(), id: id.into() }, None, &[])
    }

    fn search(&self, grant: &AccessGrant, t: &str, query: &str) -> Vec<String> {
        match_ids(&self.call(grant, Interaction::Search { resource_type: t.into() }, None, &[("query", query)]))
    }

    fn bundle(&self, grant: &AccessGrant, kind: &str, entries: Value) -> FhirResponse {
        self.call(grant, Interaction::Bundle, Some(json!({"resourceType": "Bundle", "type": kind, "entry": entries})), &[])
    }
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

/// Every id in a searchset, matches and includes, sorted.
fn all_ids(r: &FhirResponse) -> Vec<String> {
    let mut ids = entries(r, "match");
    ids.extend(entries(r, "include"));
    ids.sort();
    ids
}

#[test]
fn types_synthea_sends_are_stored_read_searched_by_their_r4_parameters_and_included() {
    let w = World::new();
    let sys = system();
    let put = |r: Value| {
        let (t, id) = type_and_id(&r);
        let status = w.call(&sys, Interaction::Update { resource_type: t.into(), id: id.into() }, Some(r.clone()), &[]).status;
        assert_eq!(status, 201, "{t}/{id}");
    };
    let a = json!({"reference": "Patient/a"});
    let coded = |system: &str, code: &str| json!({"coding": [{"system": system, "code": code}]});
    put(json!({"resourceType": "Medication", "id": "m1", "code": coded("http://www.nlm.nih.gov/research/umls/rxnorm", "313782")}));
    put(json!({"resourceType": "Device", "id": "dev1", "status": "active", "patient": a, "type": coded("http://snomed.info/sct", "72506001")}));
    put(json!({"resourceType": "CareTeam", "id": "ct1", "status": "active", "subject": a, "participant": [{"member": {"reference": "Practitioner/d1"}}]}));
    put(json!({"resourceType": "DocumentReference", "id": "doc1", "status": "current", "subject": a, "type": coded("http://loinc.org", "34117-2"),
        "date": "2021-03-04T05:06:07Z", "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]}));
    put(
        json!({"resourceType": "Provenance", "id": "prov1", "target": [a], "recorded": "2021-03-04T05:06:07Z", "agent": [{"who": {"reference": "Practitioner/d1"}}]}),
    );
    put(
        json!({"resourceType": "SupplyDelivery", "id": "sd1", "status": "completed", "patient": a, "type": coded("http://terminology.hl7.org/CodeSystem/supply-item-type", "device")}),
    );
    put(
        json!({"resourceType": "MedicationAdministration", "id": "ma1", "status": "completed", "subject": a, "medicationReference": {"reference": "Medication/m1"},
        "effectiveDateTime": "2021-03-04T05:06:07Z"}),
    );
    put(json!({"resourceType": "ImagingStudy", "id": "img1", "status": "available", "subject": a, "started": "2020-06-01T10:00:00Z"}));

    // Each in its place: the Patient compartment decides (Device by its one patient; Medication is shared).
    for (t, id, partition) in
        [("CareTeam", "ct1", "patient/a"), ("Provenance", "prov1", "patient/a"), ("Device", "dev1", "patient/a"), ("Medication", "m1", "shared/Medication")]
    {
        assert_eq!(block_on(w.store.locate(&[(t.into(), id.into())])).unwrap(), vec![Some(partition.to_owned())], "{t}/{id}");
        assert_eq!(w.read(&sys, t, id).status, 200);
    }
    let search = |t: &str, q: &str| all_ids(&w.call(&sys, Interaction::Search { resource_type: t.into() }, None, &[("query", q)]));
    assert_eq!(search("CareTeam", "patient=a&_include=CareTeam:participant"), ["CareTeam/ct1", "Practitioner/d1"]);
    assert_eq!(search("Device", "patient=a&type=http://snomed.info/sct|72506001"), ["Device/dev1"]);
    assert_eq!(search("DocumentReference", "patient=a&type=http://loinc.org|34117-2&date=ge2021-03"), ["DocumentReference/doc1"]);
    assert!(search("DocumentReference", "patient=a&date=lt2021").is_empty());
    assert_eq!(search("Provenance", "patient=a&agent=Practitioner/d1"), ["Provenance/prov1"]);
    assert_eq!(search("SupplyDelivery", "patient=a&status=completed"), ["SupplyDelivery/sd1"]);
    assert_eq!(search("Medication", "code=313782"), ["Medication/m1"]);
    assert_eq!(
        search("MedicationAdministration", "patient=a&effective-time=2021-03-04&_include=MedicationAdministration:medication"),
        ["Medication/m1", "MedicationAdministration/ma1"]
    );
    assert_eq!(search("ImagingStudy", "patient=a&started=ge2020-06"), ["ImagingStudy/img1"]);
    let ned = grant("patient/*.rs", Some("a"), None);
    let revinclude = w.call(&ned, Interaction::Search { resource_type: "Patient".into() }, None, &[("query", "_revinclude=CareTeam:subject")]);
    assert_eq!(all_ids(&revinclude), ["CareTeam/ct1", "Patient/a"]);
    // Without patient context the Patient search runs in the directory; each matched
    // patient's compartment is searched for what refers to them, through the gate.
    assert_eq!(search("Patient", "_revinclude=CareTeam:subject"), ["CareTeam/ct1", "Patient/a", "Patient/b"]);
    let no_care_teams = grant("user/Patient.rs", None, Some("Practitioner/d1"));
    let r = w.call(&no_care_teams, Interaction::Search { resource_type: "Patient".into() }, None, &[("query", "_revinclude=CareTeam:subject")]);
    assert_eq!(all_ids(&r), ["Patient/a", "Patient/b"], "no scope on CareTeam: nothing included");
}

/// Review finding: placement follows `Condition.subject.where(resolve() is Patient)`; a
/// reference to a Patient in a form the server cannot place (conditional, bare type) must be
/// refused, not stored in `shared/Condition` outside the patient's compartment.
#[test]
fn a_patient_reference_that_cannot_be_placed_is_refused_whatever_the_compartment_expression() {
    let w = World::new();
    for reference in ["Patient?identifier=http://hospital/mrn|B", "Patient", "https://elsewhere.example/fhir/Patient/b"] {
        for t in ["Condition", "Observation", "DocumentReference"] {
            let resource = json!({"resourceType": t, "status": "final", "subject": {"reference": reference}, "code": {"text": "x"}});
            let resource = if t == "DocumentReference" {
                json!({"resourceType": t, "status": "current", "subject": {"reference": reference}, "content": [{"attachment": {"url": "https://x/a"}}]})
            } else if t == "Condition" {
                json!({"resourceType": t, "subject": {"reference": reference}, "code": {"text": "x"}})
            } else {
                resource
            };
            let r = w.call(&system(), Interaction::Create { resource_type: t.into() }, Some(resource), &[]);
            assert_eq!(r.status, 422, "{t} with {reference}: {:?} {}", r.location, r.body);
        }
    }
    assert!(w.search(&system(), "Condition", "").is_empty() || w.search(&system(), "Condition", "").iter().all(|id| !id.starts_with("new")));
}

/// Review finding (high): patient data R4 keeps outside the compartment (a Device affixed to
/// one patient, a Group of patients) must not be readable by another patient's token through
/// the shared partition.
#[test]
fn a_patient_token_reads_no_other_patients_device_or_group() {
    let w = World::new();
    let sys = system();
    let put = |r: Value| {
        let (t, id) = type_and_id(&r);
        assert_eq!(w.call(&sys, Interaction::Update { resource_type: t.into(), id: id.into() }, Some(r.clone()), &[]).status, 201);
    };
    put(json!({"resourceType": "Device", "id": "dev-b", "status": "active", "patient": {"reference": "Patient/b"}, "serialNumber": "PACEMAKER-SN-0042"}));
    put(json!({"resourceType": "Device", "id": "dev-a", "status": "active", "patient": {"reference": "Patient/a"}}));
    put(json!({"resourceType": "Group", "id": "cohort", "type": "person", "actual": true, "member": [{"entity": {"reference": "Patient/b"}}]}));
    let ned = grant("patient/*.rs", Some("a"), None);
    assert_eq!(w.read(&ned, "Device", "dev-b").status, 404);
    assert_eq!(w.read(&ned, "Device", "dev-a").status, 200, "its own device, in its compartment");
    assert_eq!(w.search(&ned, "Device", ""), vec!["dev-a"]);
    assert!(w.search(&ned, "Device", "patient=Patient/b").is_empty());
    assert_eq!(w.read(&ned, "Group", "cohort").status, 404, "a group is patient data no patient token reaches");
    let groups = w.call(&ned, Interaction::Search { resource_type: "Group".into() }, None, &[("query", "member=Patient/b")]);
    assert!(groups.status == 403 || !groups.body.contains("cohort"), "{} {}", groups.status, groups.body);
    assert_eq!(w.read(&sys, "Group", "cohort").status, 200, "a backend service reads it");
    let doctor = grant("user/*.rs", None, Some("Practitioner/d1"));
    assert_eq!(w.read(&doctor, "Group", "cohort").status, 200, "so does a practitioner who reaches every compartment");
}
