//! Transactions as feeds send them and conditional update/delete, natively over the in-memory
//! partitions (the wire twins are in `tests/transactions.test.mjs`).

use super::*;
use crate::fhir::memory::MemoryPartitions;
use serde_json::json;
use std::cell::Cell;

use super::test_support::{grant, match_ids, run, system};

const SYNTHEA: &str = "https://github.com/synthetichealth/synthea";
const NPI: &str = "http://hl7.org/fhir/sid/us-npi";

#[derive(Default)]
struct World {
    store: MemoryPartitions,
    ids: Cell<u32>,
}

impl World {
    fn call(&self, grant: &AccessGrant, interaction: Interaction, query: &str, body: Option<Value>) -> FhirResponse {
        let request = FhirRequest {
            interaction: Some(interaction),
            query: serde_urlencoded::from_str(query).unwrap(),
            content_type: body.as_ref().map(|_| "application/fhir+json".into()),
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            ..Default::default()
        };
        run(&self.store, &self.ids, grant, &request)
    }

    fn bundle(&self, grant: &AccessGrant, kind: &str, entries: Value) -> (u16, Value) {
        let r = self.call(grant, Interaction::Bundle, "", Some(json!({"resourceType": "Bundle", "type": kind, "entry": entries})));
        (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
    }

    /// The ids a system search finds, sorted.
    fn ids(&self, t: &str, query: &str) -> Vec<String> {
        match_ids(&self.call(&system(), Interaction::Search { resource_type: t.into() }, query, None))
    }

    fn read(&self, t: &str, id: &str) -> (u16, Value) {
        let r = self.call(&system(), Interaction::Read { resource_type: t.into(), id: id.into() }, "", None);
        (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
    }
}

/// A Synthea `hospitalInformation` / `practitionerInformation` entry: a conditional create on
/// the resource's identifier.
fn shared(t: &str, system: &str, value: &str, extra: Value) -> Value {
    let mut resource = json!({"resourceType": t, "identifier": [{"system": system, "value": value}]});
    resource.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    json!({"fullUrl": format!("urn:uuid:{t}-{value}"), "resource": resource,
        "request": {"method": "POST", "url": t, "ifNoneExist": format!("identifier={system}|{value}")}})
}

fn hospital() -> Value {
    json!([
        shared("Organization", SYNTHEA, "org-1", json!({"name": "General Hospital"})),
        shared("Location", SYNTHEA, "loc-1", json!({"name": "General Hospital", "managingOrganization": {"reference": "urn:uuid:Organization-org-1"}})),
        shared("Practitioner", NPI, "9999", json!({"name": [{"family": "House"}]})),
        shared(
            "Location",
            SYNTHEA,
            "loc-2",
            json!({"name": "Annex", "managingOrganization": {"reference": format!("Organization?identifier={SYNTHEA}|org-1")}})
        ),
        shared(
            "PractitionerRole",
            NPI,
            "9999",
            json!({"practitioner": {"reference": format!("Practitioner?identifier={NPI}|9999")}, "organization": {"reference": format!("Organization?identifier={SYNTHEA}|org-1")}})
        ),
    ])
}

/// A Synthea patient bundle: urn:uuid references inside, conditional references to the
/// hospital's shared resources.
fn patient_bundle(n: &str) -> Value {
    let patient = format!("urn:uuid:pat-{n}");
    json!([
        {"fullUrl": patient, "resource": {"resourceType": "Patient", "identifier": [{"system": SYNTHEA, "value": format!("pat-{n}")}], "name": [{"family": "Doe"}]},
            "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": format!("urn:uuid:enc-{n}"), "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": patient},
            "participant": [{"individual": {"reference": format!("Practitioner?identifier={NPI}|9999"), "display": "Dr. House"}}],
            "serviceProvider": {"reference": format!("Organization?identifier={SYNTHEA}|org-1")},
            "location": [{"location": {"reference": format!("Location?identifier={SYNTHEA}|loc-1")}}]},
            "request": {"method": "POST", "url": "Encounter"}},
        {"fullUrl": format!("urn:uuid:obs-{n}"), "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": patient},
            "encounter": {"reference": format!("urn:uuid:enc-{n}")}, "performer": [{"reference": format!("Practitioner?identifier={NPI}|9999")}]},
            "request": {"method": "POST", "url": "Observation"}}
    ])
}

#[test]
fn reloading_synthea_style_bundles_keeps_one_copy_of_each_conditional_resource() {
    let w = World::default();
    for round in 0..2 {
        let (status, body) = w.bundle(&system(), "transaction", hospital());
        assert_eq!(status, 200, "{body}");
        let statuses: Vec<&str> = body["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
        let expected = if round == 0 { "201 Created" } else { "200 OK" };
        assert_eq!(statuses, vec![expected; 5], "round {round}");
    }
    let org = w.ids("Organization", "");
    let doc = w.ids("Practitioner", "");
    assert_eq!((org.len(), doc.len(), w.ids("Location", "").len(), w.ids("PractitionerRole", "").len()), (1, 1, 2, 1));
    let (_, role) = w.read("PractitionerRole", &w.ids("PractitionerRole", "")[0]);
    assert_eq!(role["practitioner"]["reference"], format!("Practitioner/{}", doc[0]), "a conditional reference to an entry of the same bundle");
    assert_eq!(role["organization"]["reference"], format!("Organization/{}", org[0]));
    for location in w.ids("Location", "") {
        let (_, location) = w.read("Location", &location);
        assert_eq!(location["managingOrganization"]["reference"], format!("Organization/{}", org[0]), "urn:uuid: and conditional references alike");
    }

    let (status, body) = w.bundle(&system(), "transaction", patient_bundle("1"));
    assert_eq!(status, 200, "{body}");
    let encounter = body["entry"][1]["response"]["location"].as_str().unwrap().to_owned();
    let (_, enc) = w.read("Encounter", encounter.split('/').nth(1).unwrap());
    assert_eq!(enc["participant"][0]["individual"]["reference"], format!("Practitioner/{}", doc[0]));
    assert_eq!(enc["serviceProvider"]["reference"], format!("Organization/{}", org[0]));
    assert_eq!(enc["location"][0]["location"]["reference"], format!("Location/{}", w.ids("Location", "name=General")[0]));
    assert_eq!(enc["subject"]["reference"], "Patient/pat-1");
    assert_eq!(body["entry"][0]["response"]["etag"], "W/\"1\"");
    // The conditional resources stayed one copy each.
    assert_eq!((w.ids("Organization", ""), w.ids("Practitioner", "")), (org, doc));
}

#[test]
fn a_conditional_reference_that_matches_nothing_or_several_fails_the_whole_transaction() {
    let w = World::default();
    let (status, body) = w.bundle(&system(), "transaction", patient_bundle("1"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["issue"][0]["code"], "invalid");
    assert!(body["issue"][0]["diagnostics"].as_str().unwrap().contains("matches no resource"));
    assert!(w.ids("Patient", "").is_empty() && w.ids("Encounter", "patient=pat-1").is_empty(), "nothing written");
    assert_eq!(w.bundle(&system(), "transaction", hospital()).0, 200);
    // A second practitioner with the same NPI (no ifNoneExist): the reference is ambiguous.
    let twin = json!([{"resource": {"resourceType": "Practitioner", "identifier": [{"system": NPI, "value": "9999"}]}, "request": {"method": "POST", "url": "Practitioner"}}]);
    assert_eq!(w.bundle(&system(), "transaction", twin).0, 200);
    let (status, body) = w.bundle(&system(), "transaction", patient_bundle("1"));
    assert_eq!((status, body["issue"][0]["code"].as_str()), (412, Some("invalid")), "{body}");
    assert!(w.ids("Patient", "").is_empty(), "nothing written");
    // ifNoneExist with several matches: 412 too.
    let (status, _) = w.bundle(&system(), "transaction", json!([shared("Practitioner", NPI, "9999", json!({}))]));
    assert_eq!(status, 412);
    assert_eq!(w.ids("Practitioner", "").len(), 2);
}

fn seed(w: &World) -> (String, String) {
    assert_eq!(w.bundle(&system(), "transaction", hospital()).0, 200);
    assert_eq!(w.bundle(&system(), "transaction", patient_bundle("1")).0, 200);
    (w.ids("Practitioner", "")[0].clone(), w.ids("Observation", "patient=pat-1")[0].clone())
}

#[test]
fn get_delete_and_conditional_entries_answer_per_spec() {
    let w = World::default();
    let (doc, obs) = seed(&w);
    let entries = json!([
        {"request": {"method": "DELETE", "url": format!("Observation/{obs}")}},
        {"request": {"method": "DELETE", "url": "Observation/never-was"}},
        {"request": {"method": "DELETE", "url": format!("Encounter?patient=pat-1")}},
        {"resource": {"resourceType": "Patient", "identifier": [{"system": SYNTHEA, "value": "pat-1"}], "name": [{"family": "Roe"}]},
            "request": {"method": "PUT", "url": format!("Patient?identifier={SYNTHEA}|pat-1")}},
        {"fullUrl": "urn:uuid:p2", "resource": {"resourceType": "Patient", "identifier": [{"system": SYNTHEA, "value": "pat-2"}]},
            "request": {"method": "PUT", "url": format!("Patient?identifier={SYNTHEA}|pat-2")}},
        {"request": {"method": "GET", "url": format!("Practitioner/{doc}")}},
        {"request": {"method": "GET", "url": "Patient?family=Roe"}},
        {"request": {"method": "GET", "url": "Practitioner/nobody"}}
    ]);
    let (status, body) = w.bundle(&system(), "transaction", entries);
    assert_eq!(status, 200, "{body}");
    let e = body["entry"].as_array().unwrap();
    let statuses: Vec<&str> = e.iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["204 No Content", "204 No Content", "204 No Content", "200 OK", "201 Created", "200 OK", "200 OK", "404 Not Found"]);
    assert_eq!(e[3]["response"]["location"], "Patient/pat-1");
    assert_eq!(e[4]["response"]["location"], "Patient/p2");
    assert_eq!(e[5]["resource"]["id"], doc.as_str());
    assert_eq!(e[5]["response"]["etag"], "W/\"1\"");
    assert_eq!(e[6]["resource"]["total"], 1, "the GET runs after the writes");
    assert_eq!(e[7]["response"]["outcome"]["issue"][0]["code"], "not-found");
    assert_eq!(w.read("Observation", &obs).0, 410);
    assert!(w.ids("Encounter", "patient=pat-1").is_empty());
    assert_eq!(w.read("Patient", "pat-1").1["name"][0]["family"], "Roe");
    assert_eq!(w.ids("Patient", ""), ["p2", "pat-1"]);
    // ifMatch: the current version or nothing is written.
    let stale = json!([{"resource": {"resourceType": "Practitioner", "id": doc, "name": [{"family": "X"}]}, "request": {"method": "PUT", "url": format!("Practitioner/{doc}"), "ifMatch": "W/\"7\""}}]);
    assert_eq!(w.bundle(&system(), "transaction", stale).0, 412);
    let fresh = json!([{"resource": {"resourceType": "Practitioner", "id": doc, "name": [{"family": "X"}]}, "request": {"method": "PUT", "url": format!("Practitioner/{doc}"), "ifMatch": "W/\"1\""}}]);
    assert_eq!(w.bundle(&system(), "transaction", fresh).0, 200);
    assert_eq!(w.read("Practitioner", &doc).1["meta"]["versionId"], "2");
}

#[test]
fn a_transaction_that_fails_in_a_later_partition_leaves_nothing_behind() {
    let w = World::default();
    let (doc, _) = seed(&w);
    let (_, before) = w.read("Practitioner", &doc);
    let entries = json!([
        {"fullUrl": "urn:uuid:org-2", "resource": {"resourceType": "Organization", "name": "New Clinic"}, "request": {"method": "POST", "url": "Organization"}},
        {"resource": {"resourceType": "Practitioner", "id": doc, "name": [{"family": "Changed"}]}, "request": {"method": "PUT", "url": format!("Practitioner/{doc}")}},
        {"request": {"method": "DELETE", "url": format!("Organization?identifier={SYNTHEA}|org-1")}},
        {"fullUrl": "urn:uuid:p9", "resource": {"resourceType": "Patient", "name": [{"family": "Nine"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "y"}, "subject": {"reference": "urn:uuid:p9"},
            "performer": [{"reference": "urn:uuid:org-2"}]}, "request": {"method": "POST", "url": "Observation"}}
    ]);
    w.store.failing.borrow_mut().insert("patient/p9".into());
    let (status, body) = w.bundle(&system(), "transaction", entries.clone());
    assert_eq!((status, body["issue"][0]["code"].as_str()), (500, Some("exception")), "{body}");
    // Shared partitions and the directory had been written before the patient's failed: undone.
    assert_eq!(w.ids("Organization", ""), w.ids("Organization", &format!("identifier={SYNTHEA}|org-1")), "the new clinic is gone, the deleted one back");
    assert_eq!(w.ids("Organization", "").len(), 1);
    assert_eq!(w.read("Organization", "org-2").0, 404, "no tombstone either");
    assert_eq!(w.read("Practitioner", &doc).1, before, "the update is undone, version and all");
    assert!(w.ids("Patient", "family=Nine").is_empty());
    assert_eq!(w.read("Patient", "p9").0, 404);
    // The same transaction succeeds once the partition is back (the ids it had reserved stay
    // reserved: new ones are given).
    w.store.failing.borrow_mut().clear();
    let (status, body) = w.bundle(&system(), "transaction", entries);
    assert_eq!(status, 200, "{body}");
    assert_eq!(w.ids("Organization", "name=New").len(), 1);
    assert_eq!(w.ids("Organization", "").len(), 1, "org-1 deleted this time");
    assert_eq!(w.ids("Patient", "family=Nine").len(), 1);
    assert_eq!(w.read("Practitioner", &doc).1["meta"]["versionId"], "2");
}

#[test]
fn conditional_update_and_delete_follow_the_match_count() {
    let w = World::default();
    seed(&w);
    let put = |query: &str, body: Value| w.call(&system(), Interaction::ConditionalUpdate { resource_type: "Patient".into() }, query, Some(body));
    let patient = |family: &str| json!({"resourceType": "Patient", "identifier": [{"system": SYNTHEA, "value": "pat-1"}], "name": [{"family": family}]});
    // One match: that resource is updated (the body may leave the id out).
    let r = put(&format!("identifier={SYNTHEA}|pat-1"), patient("Roe"));
    assert_eq!((r.status, r.version), (200, Some(2)), "{}", r.body);
    assert_eq!(w.read("Patient", "pat-1").1["name"][0]["family"], "Roe");
    // A body id naming another resource: 400.
    let mut other = patient("Roe");
    other["id"] = json!("someone-else");
    assert_eq!(put(&format!("identifier={SYNTHEA}|pat-1"), other).status, 400);
    // No match: created with a new id.
    let r = put(&format!("identifier={SYNTHEA}|pat-7"), json!({"resourceType": "Patient", "identifier": [{"system": SYNTHEA, "value": "pat-7"}]}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(w.ids("Patient", &format!("identifier={SYNTHEA}|pat-7")), ["new1"]);
    // Several: 412; criteria that are no search: 400; no search rights: 403.
    assert_eq!(put(&format!("identifier={SYNTHEA}|pat-1,{SYNTHEA}|pat-7"), patient("X")).status, 412);
    let r = put("colour=blue", patient("X"));
    assert_eq!((r.status, serde_json::from_str::<Value>(&r.body).unwrap()["issue"][0]["code"].clone()), (400, json!("invalid")));
    assert_eq!(put("_count=1", patient("X")).status, 400, "no criteria at all");
    let writer = grant("system/*.cu", None, None);
    assert_eq!(w.call(&writer, Interaction::ConditionalUpdate { resource_type: "Patient".into() }, "family=Roe", Some(patient("X"))).status, 403);

    let delete = |query: &str| w.call(&system(), Interaction::ConditionalDelete { resource_type: "Observation".into() }, query, None);
    assert_eq!(delete("status=cancelled").status, 204);
    assert_eq!(w.ids("Observation", "").len(), 1);
    let r = delete("patient=pat-1");
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(w.ids("Observation", "").is_empty());
    w.bundle(&system(), "transaction", patient_bundle("2"));
    w.bundle(&system(), "transaction", patient_bundle("3"));
    assert_eq!(delete("status=final").status, 412);
    assert_eq!(w.ids("Observation", "").len(), 2, "nothing deleted");
    // Chained criteria resolve like a search's.
    assert_eq!(delete(&format!("subject:Patient.identifier={SYNTHEA}|pat-2")).status, 204);
    assert_eq!(w.ids("Observation", "").len(), 1);
    assert_eq!(w.ids("Observation", "patient=pat-3").len(), 1, "the other patient's stays");
}

#[test]
fn a_patient_token_resolves_conditions_but_never_writes_shared_data_through_them() {
    let w = World::default();
    seed(&w);
    let ned = grant("patient/*.cruds", Some("pat-1"), None);
    // Creating a shared resource, even conditionally, is refused whole.
    let (status, body) = w.bundle(&ned, "transaction", json!([shared("Organization", SYNTHEA, "org-9", json!({}))]));
    assert_eq!((status, body["issue"][0]["code"].as_str()), (403, Some("security")), "{body}");
    assert!(w.ids("Organization", &format!("identifier={SYNTHEA}|org-9")).is_empty());
    // A conditional reference to shared data (readable under any usable scope) resolves.
    let obs = json!([{"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "z"}, "subject": {"reference": "Patient/pat-1"},
        "performer": [{"reference": format!("Practitioner?identifier={NPI}|9999")}]}, "request": {"method": "POST", "url": "Observation"}}]);
    let (status, body) = w.bundle(&ned, "transaction", obs);
    assert_eq!(status, 200, "{body}");
    // Conditional deletes find only what the token reaches: another patient's data is no match.
    w.bundle(&system(), "transaction", patient_bundle("2"));
    let r = w.call(&ned, Interaction::ConditionalDelete { resource_type: "Encounter".into() }, "patient=pat-2", None);
    assert_eq!(r.status, 204);
    assert_eq!(w.ids("Encounter", "patient=pat-2").len(), 1, "not deleted");
}

#[test]
fn a_batch_answers_get_and_conditional_entries_one_by_one() {
    let w = World::default();
    seed(&w);
    let entries = json!([
        shared("Practitioner", NPI, "9999", json!({})),
        {"request": {"method": "GET", "url": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "b"}, "subject": {"reference": "Patient/pat-1"},
            "performer": [{"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|0000"}]}, "request": {"method": "POST", "url": "Observation"}}
    ]);
    let (status, body) = w.bundle(&system(), "batch", entries);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "batch-response");
    let e = body["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "200 OK");
    assert_eq!(e[1]["resource"]["total"], 1);
    assert_eq!(e[2]["response"]["status"], "400");
    assert_eq!(w.ids("Practitioner", "").len(), 1);
}
