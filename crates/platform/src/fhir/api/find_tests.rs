//! Search that real apps send, natively over the in-memory partitions, from the caller's side
//! and the attacker's: chains and `_has` never reach past the grant, includes iterate one
//! level through the gate, `_total=none`, `_elements`.

use super::super::{handle, Fhir, FhirRequest, FhirResponse};
use crate::fhir::memory::MemoryPartitions;
use crate::fhir::rest::Interaction;
use crate::fhir::store::Partitions;
use crate::guard::AccessGrant;
use futures::executor::block_on;
use serde_json::{json, Value};

fn grant(scope: &str, patient: Option<&str>, fhir_user: Option<&str>) -> AccessGrant {
    AccessGrant::for_tests(scope, patient, fhir_user)
}

fn doctor() -> AccessGrant {
    grant("user/*.rs", None, Some("Practitioner/d1"))
}

fn obs(id: &str, patient: &str, category: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final", "subject": {"reference": format!("Patient/{patient}")},
        "encounter": {"reference": format!("Encounter/e-{patient}")}, "performer": [{"reference": "Practitioner/d1"}],
        "category": [{"coding": [{"code": category}]}], "code": {"coding": [{"system": "http://loinc.org", "code": code}]}})
}

fn world() -> MemoryPartitions {
    let store = MemoryPartitions::default();
    let put = |r: Value| super::super::test_support::put(&store, r);
    put(json!({"resourceType": "Patient", "id": "a", "name": [{"family": "Smith", "given": ["Ann"]}]}));
    put(json!({"resourceType": "Patient", "id": "b", "name": [{"family": "Jones", "given": ["Bob"]}]}));
    put(json!({"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Doe"}]}));
    for p in ["a", "b"] {
        put(json!({"resourceType": "Encounter", "id": format!("e-{p}"), "status": "finished", "subject": {"reference": format!("Patient/{p}")}}));
        put(obs(&format!("{p}-lab"), p, "laboratory", "1234-5"));
        put(obs(&format!("{p}-vital"), p, "vital-signs", "8302-2"));
    }
    store
}

fn search(store: &MemoryPartitions, grant: &AccessGrant, t: &str, query: &str) -> FhirResponse {
    let new_id = || "new".to_owned();
    let fhir = Fhir { store, base: "https://x/fhir", new_id: &new_id };
    let request = FhirRequest {
        interaction: Some(Interaction::Search { resource_type: t.into() }),
        query: serde_urlencoded::from_str(query).unwrap(),
        ..Default::default()
    };
    block_on(handle(&fhir, grant, &request)).unwrap()
}

fn body(r: &FhirResponse) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

use super::super::test_support::entries;

fn matches(store: &MemoryPartitions, grant: &AccessGrant, t: &str, query: &str) -> Vec<String> {
    entries(&search(store, grant, t, query), "match")
}

#[test]
fn chains_resolve_within_what_the_caller_may_search() {
    let w = world();
    assert_eq!(matches(&w, &doctor(), "Observation", "subject:Patient.name=smith"), ["Observation/a-lab", "Observation/a-vital"]);
    assert_eq!(matches(&w, &doctor(), "Observation", "patient.name=jones&category=laboratory"), ["Observation/b-lab"]);
    assert_eq!(matches(&w, &doctor(), "Observation", "subject:Patient.name=nobody"), Vec::<String>::new());
    assert_eq!(search(&w, &doctor(), "Observation", "subject:Patient.name.family=x").status, 400, "one level");
    let bad = search(&w, &doctor(), "Observation", "subject.name=x");
    assert_eq!(bad.status, 400, "subject can point to several types with a name: {}", bad.body);
    assert_eq!(matches(&w, &doctor(), "Observation", "performer:Practitioner.name=doe&patient=a"), ["Observation/a-lab", "Observation/a-vital"]);
    // Attackers: another patient's name through a chain finds nothing; without a Patient
    // scope the chain is refused; a granular filter still applies to the results.
    let ann = grant("patient/*.rs", Some("a"), None);
    assert_eq!(matches(&w, &ann, "Observation", "subject:Patient.name=jones"), Vec::<String>::new());
    assert_eq!(matches(&w, &ann, "Observation", "subject:Patient.name=smith"), ["Observation/a-lab", "Observation/a-vital"]);
    let lab_only = grant("patient/Observation.rs?category=laboratory", Some("a"), None);
    assert_eq!(search(&w, &lab_only, "Observation", "subject:Patient.name=smith").status, 403);
    let lab_and_patient = grant("patient/Observation.rs?category=laboratory patient/Patient.rs", Some("a"), None);
    assert_eq!(matches(&w, &lab_and_patient, "Observation", "subject:Patient.name=smith"), ["Observation/a-lab"]);
}

#[test]
fn has_resolves_within_what_the_caller_may_search() {
    let w = world();
    assert_eq!(matches(&w, &doctor(), "Patient", "_has:Observation:patient:code=1234-5"), ["Patient/a", "Patient/b"]);
    assert_eq!(matches(&w, &doctor(), "Patient", "_has:Observation:patient:code=1234-5&name=jones"), ["Patient/b"]);
    assert_eq!(matches(&w, &doctor(), "Patient", "_has:Observation:patient:code=0000-0"), Vec::<String>::new());
    assert_eq!(matches(&w, &doctor(), "Encounter", "_has:Observation:encounter:code=8302-2&patient=b"), ["Encounter/e-b"]);
    let ann = grant("patient/*.rs", Some("a"), None);
    assert_eq!(matches(&w, &ann, "Patient", "_has:Observation:patient:code=1234-5"), ["Patient/a"]);
    // Vital signs hidden by the grant never reveal which patients have them.
    let labs = grant("user/Patient.rs user/Observation.rs?category=laboratory", None, Some("Practitioner/d1"));
    assert_eq!(matches(&w, &labs, "Patient", "_has:Observation:patient:code=8302-2"), Vec::<String>::new());
    assert_eq!(matches(&w, &labs, "Patient", "_has:Observation:patient:code=1234-5"), ["Patient/a", "Patient/b"]);
    let no_obs = grant("user/Patient.rs", None, Some("Practitioner/d1"));
    assert_eq!(search(&w, &no_obs, "Patient", "_has:Observation:patient:code=1234-5").status, 403);
}

#[test]
fn include_iterate_goes_one_level_further_through_the_gate() {
    let w = world();
    let ann = grant("patient/*.rs", Some("a"), None);
    let r = search(&w, &ann, "Observation", "_id=a-lab&_include=Observation:encounter");
    assert_eq!(entries(&r, "include"), ["Encounter/e-a"]);
    let r = search(&w, &ann, "Observation", "_id=a-lab&_include=Observation:encounter&_include:iterate=Encounter:patient");
    assert_eq!(entries(&r, "include"), ["Encounter/e-a", "Patient/a"]);
    let r = search(&w, &ann, "Patient", "_revinclude=Encounter:patient&_revinclude:iterate=Observation:encounter");
    assert_eq!(entries(&r, "include"), ["Encounter/e-a", "Observation/a-lab", "Observation/a-vital"]);
    let encounters_only = grant("patient/Patient.rs patient/Encounter.rs patient/Observation.rs?category=laboratory", Some("a"), None);
    let r = search(&w, &encounters_only, "Patient", "_revinclude=Encounter:patient&_revinclude:iterate=Observation:encounter");
    assert_eq!(entries(&r, "include"), ["Encounter/e-a", "Observation/a-lab"], "the iterated round passes the gate too");
}

#[test]
fn total_none_leaves_out_the_total_and_still_pages() {
    let w = world();
    let r = search(&w, &doctor(), "Observation", "patient=a&_total=none&_count=1");
    let b = body(&r);
    assert!(b.get("total").is_none(), "{b}");
    assert_eq!(b["entry"].as_array().unwrap().len(), 1);
    assert!(b["link"].as_array().unwrap().iter().any(|l| l["relation"] == "next"));
    let last = body(&search(&w, &doctor(), "Observation", "patient=a&_total=none&_count=1&_offset=1"));
    assert!(!last["link"].as_array().unwrap().iter().any(|l| l["relation"] == "next"), "{last}");
    assert_eq!(body(&search(&w, &doctor(), "Observation", "patient=a&_total=accurate"))["total"], 2);
}

#[test]
fn elements_and_summary_return_marked_subsets() {
    let w = world();
    let r = body(&search(&w, &doctor(), "Observation", "_id=a-lab&patient=a&_elements=status,code"));
    let resource = &r["entry"][0]["resource"];
    let mut keys: Vec<&str> = resource.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["code", "id", "meta", "resourceType", "status"]);
    assert_eq!(resource["meta"]["tag"][0]["code"], "SUBSETTED");
    let data = body(&search(&w, &doctor(), "Observation", "_id=a-lab&patient=a&_summary=data"));
    assert!(data["entry"][0]["resource"].get("subject").is_some());
    let summary = body(&search(&w, &doctor(), "Observation", "_id=a-lab&patient=a&_summary=true"));
    let mut keys: Vec<&str> = summary["entry"][0]["resource"].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["code", "encounter", "id", "meta", "performer", "resourceType", "status", "subject"], "Observation's isSummary elements");
    let count = body(&search(&w, &doctor(), "Observation", "patient=a&_summary=count"));
    assert_eq!((count["total"].as_i64(), count["entry"].as_array().unwrap().len()), (Some(2), 0));
}

#[test]
fn an_unresolved_chain_matches_nothing_in_the_store_either() {
    // Other callers of search::parse (conditional writes, exports) never resolve chains: the
    // store answers nothing rather than ignore them.
    let w = world();
    let q = crate::fhir::search::parse("Observation", &[("patient.name".into(), "smith".into())], true).unwrap();
    assert!(q.unresolved() && q.clauses.is_empty());
    let found = block_on(w.search("patient/a", &q)).unwrap();
    assert_eq!((found.total, found.resources.len()), (0, 0));
}

#[test]
fn includes_never_reach_another_patients_compartment() {
    let w = world();
    let mut cross = obs("a-cross", "a", "laboratory", "1234-5");
    cross["encounter"] = json!({"reference": "Encounter/e-b"});
    cross["performer"] = json!([{"reference": "Practitioner/d1"}, {"reference": "Patient/b"}]);
    block_on(w.write("patient/a", vec![cross], None)).unwrap();
    let ann = grant("patient/*.rs", Some("a"), None);
    let query = "_id=a-cross&_include=Observation:encounter&_include=Observation:performer&_include:iterate=Encounter:patient&_revinclude:iterate=Observation:encounter";
    let r = search(&w, &ann, "Observation", query);
    assert_eq!(entries(&r, "match"), ["Observation/a-cross"]);
    assert_eq!(entries(&r, "include"), ["Practitioner/d1"], "Patient/b and Encounter/e-b (and what they would lead to) stay out");
}

/// A shared Medication and, for patients a and b, an administration of it in their encounter.
fn put_medications(w: &MemoryPartitions) {
    let put = |r: Value| super::super::test_support::put(w, r);
    put(json!({"resourceType": "Medication", "id": "m1", "code": {"text": "acetaminophen"}}));
    for p in ["a", "b"] {
        put(
            json!({"resourceType": "MedicationAdministration", "id": format!("ma-{p}"), "status": "completed", "subject": {"reference": format!("Patient/{p}")},
            "context": {"reference": format!("Encounter/e-{p}")}, "medicationReference": {"reference": "Medication/m1"}, "effectiveDateTime": "2021-03-04"}),
        );
    }
}

#[test]
fn includes_of_a_search_across_patients_come_from_each_matchs_own_partition() {
    // Without patient context (a practitioner's user/ scope) a search of patient data runs in
    // every compartment; its includes are found from each match's own partition.
    let w = world();
    put_medications(&w);
    let r = search(
        &w,
        &doctor(),
        "MedicationAdministration",
        "status=completed&_include=MedicationAdministration:medication&_include=MedicationAdministration:context",
    );
    assert_eq!(entries(&r, "match"), ["MedicationAdministration/ma-a", "MedicationAdministration/ma-b"]);
    assert_eq!(entries(&r, "include"), ["Encounter/e-a", "Encounter/e-b", "Medication/m1"], "the shared Medication once");
    let r = search(
        &w,
        &doctor(),
        "Observation",
        "code=1234-5&_include=Observation:encounter&_include=Observation:subject&_revinclude:iterate=Observation:encounter",
    );
    assert_eq!(entries(&r, "include"), ["Encounter/e-a", "Encounter/e-b", "Observation/a-vital", "Observation/b-vital", "Patient/a", "Patient/b"]);
    // Through the gate: no Encounter scope, no Encounter; a granular scope filters the iterated round.
    let labs = grant("user/Observation.rs?category=laboratory user/Patient.rs", None, Some("Practitioner/d1"));
    let r = search(&w, &labs, "Observation", "_include=Observation:encounter&_include=Observation:subject&_revinclude:iterate=Observation:encounter");
    assert_eq!(entries(&r, "match"), ["Observation/a-lab", "Observation/b-lab"]);
    assert_eq!(entries(&r, "include"), ["Patient/a", "Patient/b"]);
    // A patient user's scope reaches their own compartment only: one partition, as before.
    let r = search(&w, &grant("user/*.rs", None, Some("Patient/a")), "Observation", "_include=Observation:encounter");
    assert_eq!(entries(&r, "include"), ["Encounter/e-a"]);
}

#[test]
fn revincludes_of_patient_data_from_shared_resources_search_the_compartments_reached() {
    let w = world();
    put_medications(&w);
    let all = |g: &AccessGrant, t: &str, q: &str| {
        let r = search(&w, g, t, q);
        assert_eq!(r.status, 200, "{}", r.body);
        entries(&r, "include")
    };
    // Every patient for a practitioner; the patient's own compartment for a patient token.
    assert_eq!(
        all(&doctor(), "Medication", "_revinclude=MedicationAdministration:medication"),
        ["MedicationAdministration/ma-a", "MedicationAdministration/ma-b"]
    );
    let ann = grant("patient/*.rs", Some("a"), None);
    assert_eq!(all(&ann, "Medication", "_revinclude=MedicationAdministration:medication"), ["MedicationAdministration/ma-a"]);
    assert_eq!(all(&ann, "Practitioner", "_revinclude=Observation:performer"), ["Observation/a-lab", "Observation/a-vital"]);
    // Through the gate: a granular scope filters; no scope on the source, nothing.
    let labs = grant("user/Practitioner.rs user/Observation.rs?category=laboratory", None, Some("Practitioner/d1"));
    assert_eq!(all(&labs, "Practitioner", "_revinclude=Observation:performer"), ["Observation/a-lab", "Observation/b-lab"]);
    assert_eq!(
        all(&grant("user/Medication.rs", None, Some("Practitioner/d1")), "Medication", "_revinclude=MedicationAdministration:medication"),
        Vec::<String>::new()
    );
    // A Patient search still revincludes from each matched patient's compartment.
    assert_eq!(all(&doctor(), "Patient", "_id=b&_revinclude=MedicationAdministration:subject"), ["MedicationAdministration/ma-b"]);
}

#[test]
fn a_revinclude_of_patient_data_across_too_many_patients_is_refused() {
    let w = world();
    for i in 0..=crate::fhir::search::MAX_FANOUT {
        super::super::test_support::put(&w, json!({"resourceType": "Patient", "id": format!("p{i:03}")}));
    }
    let r = search(&w, &doctor(), "Practitioner", "_revinclude=Observation:performer");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(body(&r)["issue"][0]["code"], "too-costly");
    // Without the revinclude, or with patient context, it runs.
    assert_eq!(search(&w, &doctor(), "Practitioner", "_id=d1").status, 200);
    assert_eq!(
        entries(&search(&w, &grant("patient/*.rs", Some("a"), None), "Practitioner", "_revinclude=Observation:performer"), "include"),
        ["Observation/a-lab", "Observation/a-vital"]
    );
}

#[test]
fn patient_data_that_names_no_patient_is_found_by_a_search_across_patients() {
    // An Observation of a Location names no patient: it is kept in shared/Observation, which a
    // search without patient context reads too (it read the compartments only before).
    let w = world();
    let about_a_room = json!({"resourceType": "Observation", "id": "room", "status": "final", "subject": {"reference": "Location/l1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}});
    super::super::test_support::put(&w, about_a_room);
    assert_eq!(block_on(w.locate(&[("Observation".into(), "room".into())])).unwrap(), vec![Some("shared/Observation".to_owned())]);
    assert_eq!(matches(&w, &doctor(), "Observation", "code=8310-5"), ["Observation/room"]);
    assert_eq!(matches(&w, &doctor(), "Observation", "_sort=_id&_count=2"), ["Observation/a-lab", "Observation/a-vital"]);
    let all = matches(&w, &doctor(), "Observation", "_count=10");
    assert_eq!(all, ["Observation/a-lab", "Observation/a-vital", "Observation/b-lab", "Observation/b-vital", "Observation/room"]);
    // Not for scopes confined to patients, nor past a granular filter.
    assert!(matches(&w, &grant("patient/*.rs", Some("a"), None), "Observation", "code=8310-5").is_empty());
    assert!(matches(&w, &grant("user/*.rs", None, Some("Patient/a")), "Observation", "code=8310-5").is_empty());
    let labs = grant("user/Observation.rs?category=laboratory", None, Some("Practitioner/d1"));
    assert!(matches(&w, &labs, "Observation", "code=8310-5").is_empty());
}

#[test]
fn includes_that_need_more_storage_calls_than_the_budget_are_refused_never_answered_short() {
    // 200 patients (the fan-out limit): a practitioner's revinclude of patient data from a
    // shared Medication searches each compartment, one storage call each.
    let w = world();
    let put = |r: Value| super::super::test_support::put(&w, r);
    put(json!({"resourceType": "Medication", "id": "m1", "code": {"text": "acetaminophen"}}));
    for i in 2..crate::fhir::search::MAX_FANOUT {
        put(json!({"resourceType": "Patient", "id": format!("p{i:03}")}));
    }
    put(json!({"resourceType": "MedicationAdministration", "id": "ma-a", "status": "completed", "subject": {"reference": "Patient/a"},
        "medicationReference": {"reference": "Medication/m1"}, "effectiveDateTime": "2021-03-04"}));
    // One rule: 200 compartments, within the budget.
    let one = search(&w, &doctor(), "Medication", "_revinclude=MedicationAdministration:medication");
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(entries(&one, "include"), ["MedicationAdministration/ma-a"]);
    // Two rules: 400 calls, past the budget of 300: refused whole, not answered with some.
    let two = search(&w, &doctor(), "Medication", "_revinclude=MedicationAdministration:medication&_revinclude=MedicationRequest:medication");
    assert_eq!(two.status, 400, "{}", two.body);
    assert_eq!(body(&two)["issue"][0]["code"], "too-costly");
    assert!(body(&two)["issue"][0]["diagnostics"].as_str().unwrap().contains(&super::MAX_INCLUDE_CALLS.to_string()));
    // With patient context the same two rules search one compartment.
    let ann = grant("patient/*.rs", Some("a"), None);
    let r = search(&w, &ann, "Medication", "_revinclude=MedicationAdministration:medication&_revinclude=MedicationRequest:medication");
    assert_eq!(entries(&r, "include"), ["MedicationAdministration/ma-a"]);
}

/// A laboratory Observation of a Location (it names no patient: kept in shared/Observation)
/// and patient a's panel that has it as a member.
fn put_room_and_panel(w: &MemoryPartitions) {
    let put = |r: Value| super::super::test_support::put(w, r);
    put(json!({"resourceType": "Observation", "id": "room", "status": "final", "subject": {"reference": "Location/l1"},
        "category": [{"coding": [{"code": "laboratory"}]}], "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}}));
    put(json!({"resourceType": "Observation", "id": "a-panel", "status": "final", "subject": {"reference": "Patient/a"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "85353-1"}]}, "hasMember": [{"reference": "Observation/room"}]}));
}

#[test]
fn a_search_across_patients_revincludes_patient_data_about_a_match_kept_in_the_shared_partition() {
    // Review finding: a match kept in shared/Observation (it names no patient) got no
    // revincludes from the compartments, without a word.
    let w = world();
    put_room_and_panel(&w);
    let r = search(&w, &doctor(), "Observation", "code=8310-5&_revinclude=Observation:has-member");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(entries(&r, "match"), ["Observation/room"]);
    assert_eq!(entries(&r, "include"), ["Observation/a-panel"]);
    // Through the gate: a granular scope matches the room (laboratory) but not the panel.
    let labs = grant("user/Observation.rs?category=laboratory", None, Some("Practitioner/d1"));
    let r = search(&w, &labs, "Observation", "code=8310-5&_revinclude=Observation:has-member");
    assert_eq!(entries(&r, "match"), ["Observation/room"]);
    assert!(entries(&r, "include").is_empty());
}

#[test]
fn an_iterated_revinclude_follows_a_target_every_partition_of_a_search_across_patients_included() {
    // Review finding: with one `seen` for every partition's includes, Practitioner/d1 included
    // from patient a's encounter was skipped for patient b's, so b's round never searched b's
    // compartment for d1's Observations.
    let w = world();
    let put = |r: Value| super::super::test_support::put(&w, r);
    for p in ["a", "b"] {
        put(json!({"resourceType": "Encounter", "id": format!("e-{p}"), "status": "finished", "subject": {"reference": format!("Patient/{p}")},
            "participant": [{"individual": {"reference": "Practitioner/d1"}}]}));
    }
    let r = search(&w, &doctor(), "Encounter", "status=finished&_include=Encounter:practitioner&_revinclude:iterate=Observation:performer");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(entries(&r, "match"), ["Encounter/e-a", "Encounter/e-b"]);
    assert_eq!(
        entries(&r, "include"),
        ["Observation/a-lab", "Observation/a-vital", "Observation/b-lab", "Observation/b-vital", "Practitioner/d1"],
        "d1 once, and its Observations from both compartments"
    );
}

#[test]
fn an_include_from_a_compartment_finds_patient_data_kept_in_the_shared_partition() {
    // Review finding: a compartment's Observation pointing at an Observation of a Location
    // (kept in shared/Observation) was looked for in the compartment only, and left out.
    let w = world();
    put_room_and_panel(&w);
    let r = search(&w, &doctor(), "Observation", "code=85353-1&_include=Observation:has-member");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(entries(&r, "match"), ["Observation/a-panel"]);
    assert_eq!(entries(&r, "include"), ["Observation/room"]);
    // With patient context as a practitioner, the same.
    assert_eq!(entries(&search(&w, &doctor(), "Observation", "patient=a&code=85353-1&_include=Observation:has-member"), "include"), ["Observation/room"]);
    // A patient's scopes reach their compartment only: the room's Observation stays out.
    let ann = grant("patient/*.rs", Some("a"), None);
    let r = search(&w, &ann, "Observation", "code=85353-1&_include=Observation:has-member");
    assert_eq!(entries(&r, "match"), ["Observation/a-panel"]);
    assert!(entries(&r, "include").is_empty());
}
