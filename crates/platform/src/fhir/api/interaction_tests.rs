//! The interactions of R4 http.html beyond the basic ones, natively over the in-memory
//! partitions: PATCH, conditional read, history paging, `Prefer: return=OperationOutcome`,
//! `Patient/$everything` (the wire twins are in `tests/fhir-interactions.test.mjs`).

use super::*;
use crate::fhir::memory::MemoryPartitions;
use serde_json::json;
use std::cell::Cell;

use super::test_support::system;

fn grant(scope: &str, patient: Option<&str>) -> AccessGrant {
    super::test_support::grant(scope, patient, None)
}

fn obs(id: &str, patient: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final", "subject": {"reference": format!("Patient/{patient}")},
        "category": [{"coding": [{"code": category}]}], "code": {"text": "x"}})
}

struct World {
    store: MemoryPartitions,
    ids: Cell<u32>,
}

#[derive(Default)]
struct Call<'a> {
    query: &'a str,
    body: Option<Value>,
    content_type: Option<&'a str>,
    if_match: Option<&'a str>,
    if_none_match: Option<&'a str>,
    if_modified_since: Option<&'a str>,
    outcome: bool,
}

impl World {
    fn new() -> World {
        let world = World { store: MemoryPartitions::default(), ids: Cell::new(0) };
        for r in [
            json!({"resourceType": "Patient", "id": "a"}),
            json!({"resourceType": "Patient", "id": "b"}),
            json!({"resourceType": "Practitioner", "id": "d1"}),
            obs("a-lab", "a", "laboratory"),
            obs("a-vital", "a", "vital-signs"),
            json!({"resourceType": "Condition", "id": "a-cond", "subject": {"reference": "Patient/a"}}),
            obs("b-lab", "b", "laboratory"),
        ] {
            world.put(r);
        }
        world
    }

    fn put(&self, r: Value) {
        super::test_support::put(&self.store, r);
    }

    fn call(&self, grant: &AccessGrant, interaction: Interaction, call: Call) -> FhirResponse {
        let request = FhirRequest {
            interaction: Some(interaction),
            query: serde_urlencoded::from_str(call.query).unwrap(),
            content_type: call.content_type.map(str::to_owned).or_else(|| call.body.as_ref().map(|_| "application/fhir+json".into())),
            body: call.body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            if_match: call.if_match.map(str::to_owned),
            if_none_match: call.if_none_match.map(str::to_owned),
            if_modified_since: call.if_modified_since.map(str::to_owned),
            outcome: call.outcome,
            ..Default::default()
        };
        super::test_support::run(&self.store, &self.ids, grant, &request)
    }

    fn read(&self, t: &str, id: &str) -> Value {
        let r = self.call(&system(), Interaction::Read { resource_type: t.into(), id: id.into() }, Call::default());
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    }

    fn patch(&self, grant: &AccessGrant, t: &str, id: &str, ops: Value, if_match: Option<&str>) -> FhirResponse {
        let call = Call { body: Some(ops), content_type: Some("application/json-patch+json"), if_match, ..Default::default() };
        self.call(grant, Interaction::Patch { resource_type: t.into(), id: id.into() }, call)
    }

    fn everything(&self, grant: &AccessGrant, patient: &str, query: &str) -> FhirResponse {
        self.call(grant, Interaction::Everything { patient: patient.into() }, Call { query, ..Default::default() })
    }
}

fn body(r: &FhirResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

fn issue_code(r: &FhirResponse) -> String {
    body(r)["issue"][0]["code"].as_str().unwrap().to_owned()
}

/// `(type/id)` of each entry, in order.
fn refs(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap()))
        .collect()
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == relation).map(|l| l["url"].as_str().unwrap().to_owned())
}

fn query_of(url: &str) -> String {
    url.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default()
}

#[test]
fn patch_applies_a_json_patch_through_the_update_path() {
    let w = World::new();
    let ned = grant("patient/*.cruds", Some("a"));
    let ops = json!([{"op": "test", "path": "/status", "value": "final"}, {"op": "replace", "path": "/status", "value": "amended"}, {"op": "add", "path": "/valueString", "value": "v"}]);
    let r = w.patch(&ned, "Observation", "a-lab", ops, Some("W/\"1\""));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.version, Some(2));
    assert_eq!(r.location.as_deref(), Some("https://x/fhir/Observation/a-lab/_history/2"));
    let patched = body(&r);
    assert_eq!((patched["status"].as_str(), patched["valueString"].as_str(), patched["meta"]["versionId"].as_str()), (Some("amended"), Some("v"), Some("2")));
    assert_eq!(w.read("Observation", "a-lab"), patched);

    let replace = |path: &str, value: Value| json!([{"op": "replace", "path": path, "value": value}]);
    let stale = w.patch(&ned, "Observation", "a-lab", replace("/status", json!("final")), Some("W/\"1\""));
    assert_eq!((stale.status, issue_code(&stale)), (412, "invalid".into()));
    let bad_etag = w.patch(&ned, "Observation", "a-lab", replace("/status", json!("final")), Some("soon"));
    assert_eq!(bad_etag.status, 400);
    let failed_test = w.patch(&ned, "Observation", "a-lab", json!([{"op": "test", "path": "/status", "value": "final"}]), None);
    assert_eq!((failed_test.status, issue_code(&failed_test)), (422, "invalid".into()));
    for (what, ops) in [
        ("the id patched away", replace("/id", json!("other"))),
        ("the id removed", json!([{"op": "remove", "path": "/id"}])),
        ("the type patched away", replace("/resourceType", json!("Condition"))),
        ("moved to another compartment", replace("/subject/reference", json!("Patient/b"))),
        ("not an object", replace("", json!([1]))),
    ] {
        let r = w.patch(&ned, "Observation", "a-lab", ops, None);
        assert_eq!(r.status, 422, "{what}: {}", r.body);
    }
    let invalid = w.patch(
        &ned,
        "Observation",
        "a-lab",
        json!([{"op": "add", "path": "/spaceship", "value": 1}, {"op": "replace", "path": "/status", "value": ["final"]}]),
        None,
    );
    assert_eq!(invalid.status, 422, "the patched result is checked against R4: {}", invalid.body);
    let issues = body(&invalid)["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["code"].as_str().unwrap().to_owned(), i["expression"][0].as_str().unwrap().to_owned()))
        .collect::<Vec<_>>();
    assert!(issues.contains(&("structure".into(), "Observation.spaceship".into())), "{issues:?}");
    assert!(issues.contains(&("structure".into(), "Observation.status".into())), "{issues:?}");
    let not_patch = w.call(
        &ned,
        Interaction::Patch { resource_type: "Observation".into(), id: "a-lab".into() },
        Call { body: Some(json!({"resourceType": "Parameters"})), ..Default::default() },
    );
    assert_eq!((not_patch.status, issue_code(&not_patch)), (415, "not-supported".into()));
    let not_json = w.patch(&ned, "Observation", "a-lab", json!({"op": "replace"}), None);
    assert_eq!(not_json.status, 400, "a patch is an array of operations");
    assert_eq!(w.patch(&ned, "Observation", "nothing", replace("/status", json!("final")), None).status, 404);
    assert_eq!(w.read("Observation", "a-lab")["meta"]["versionId"], "2", "no refused patch wrote anything");
}

#[test]
fn patch_goes_through_the_gate_with_update_rights() {
    let w = World::new();
    let replace = |path: &str, value: &str| json!([{"op": "replace", "path": path, "value": value}]);
    let reader = grant("patient/*.rs", Some("a"));
    let r = w.patch(&reader, "Observation", "a-lab", replace("/status", "amended"), None);
    assert_eq!((r.status, issue_code(&r)), (403, "security".into()));
    assert!(r.insufficient_scope.is_some());
    let ned = grant("patient/*.cruds", Some("a"));
    assert_eq!(w.patch(&ned, "Observation", "b-lab", replace("/status", "amended"), None).status, 404, "another patient's: as if missing");
    let lab = grant("patient/Observation.rus?category=laboratory", Some("a"));
    assert_eq!(w.patch(&lab, "Observation", "a-vital", replace("/status", "amended"), None).status, 404, "hidden by the filter");
    let r = w.patch(&lab, "Observation", "a-lab", replace("/category/0/coding/0/code", "vital-signs"), None);
    assert_eq!(r.status, 403, "out of the filter: {}", r.body);
    assert_eq!(w.patch(&lab, "Observation", "a-lab", replace("/status", "amended"), None).status, 200);
    assert_eq!(w.read("Observation", "b-lab")["status"], "final");
    assert_eq!(w.read("Observation", "a-vital")["status"], "final");
}

#[test]
fn conditional_read_answers_304_without_a_body() {
    let w = World::new();
    let ned = grant("patient/*.rs", Some("a"));
    let read = |call: Call| w.call(&ned, Interaction::Read { resource_type: "Observation".into(), id: "a-lab".into() }, call);
    let held = read(Call { if_none_match: Some("W/\"1\""), ..Default::default() });
    assert_eq!((held.status, held.body.as_str(), held.version), (304, "", Some(1)));
    assert!(held.last_updated.is_some(), "Last-Modified is still sent");
    assert_eq!(read(Call { if_none_match: Some("W/\"0\", W/\"1\""), ..Default::default() }).status, 304);
    assert_eq!(read(Call { if_none_match: Some("*"), ..Default::default() }).status, 304);
    assert_eq!(read(Call { if_none_match: Some("W/\"2\""), ..Default::default() }).status, 200);
    // The memory store's clock is 2026-01-01T00:00:00.00nZ.
    assert_eq!(read(Call { if_modified_since: Some("Thu, 01 Jan 2026 00:00:00 GMT"), ..Default::default() }).status, 304);
    assert_eq!(read(Call { if_modified_since: Some("Wed, 31 Dec 2025 23:59:59 GMT"), ..Default::default() }).status, 200);
    assert_eq!(read(Call { if_modified_since: Some("not a date"), ..Default::default() }).status, 200);
    let both = read(Call { if_none_match: Some("W/\"2\""), if_modified_since: Some("Thu, 01 Jan 2026 00:00:00 GMT"), ..Default::default() });
    assert_eq!(both.status, 200, "If-Modified-Since is ignored with If-None-Match");
    let vread = w.call(
        &ned,
        Interaction::Vread { resource_type: "Observation".into(), id: "a-lab".into(), version: "1".into() },
        Call { if_none_match: Some("W/\"1\""), ..Default::default() },
    );
    assert_eq!(vread.status, 304);
    let hidden =
        w.call(&ned, Interaction::Read { resource_type: "Observation".into(), id: "b-lab".into() }, Call { if_none_match: Some("*"), ..Default::default() });
    assert_eq!(hidden.status, 404, "a 304 never confirms what a read hides");
}

#[test]
fn history_is_paged_with_count_offset_and_since() {
    let w = World::new();
    let ned = grant("patient/*.cruds", Some("a"));
    for status in ["amended", "corrected", "final", "amended"] {
        let r = w.patch(&ned, "Observation", "a-lab", json!([{"op": "replace", "path": "/status", "value": status}]), None);
        assert_eq!(r.status, 200);
    }
    let history = |query: &str| {
        let r = w.call(&ned, Interaction::History { resource_type: "Observation".into(), id: "a-lab".into() }, Call { query, ..Default::default() });
        assert_eq!(r.status, 200, "{}", r.body);
        body(&r)
    };
    let versions =
        |b: &Value| b["entry"].as_array().unwrap().iter().map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let first = history("_count=2");
    assert_eq!((first["total"].as_i64(), versions(&first)), (Some(5), vec!["5".to_owned(), "4".to_owned()]));
    let next = link(&first, "next").expect("a next link");
    assert_eq!(next, "https://x/fhir/Observation/a-lab/_history?_count=2&_offset=2");
    assert_eq!(link(&first, "previous"), None);
    let second = history(&query_of(&next));
    assert_eq!(versions(&second), ["3", "2"]);
    assert_eq!(link(&second, "previous").as_deref(), Some("https://x/fhir/Observation/a-lab/_history?_count=2&_offset=0"));
    let last = history(&query_of(&link(&second, "next").unwrap()));
    assert_eq!(versions(&last), ["1"]);
    assert_eq!(link(&last, "next"), None);
    // The memory clock ticks a millisecond a write: the seeds are 1-9, the patches 10-13.
    let since = history("_since=2026-01-01T00:00:00.012Z");
    assert_eq!((since["total"].as_i64(), versions(&since)), (Some(2), vec!["5".to_owned(), "4".to_owned()]));
    let r = w.call(
        &ned,
        Interaction::History { resource_type: "Observation".into(), id: "a-lab".into() },
        Call { query: "_since=yesterday", ..Default::default() },
    );
    assert_eq!(r.status, 400);
    let r = w.call(&ned, Interaction::History { resource_type: "Observation".into(), id: "a-lab".into() }, Call { query: "_count=501", ..Default::default() });
    assert_eq!(r.status, 400);

    let type_history = |g: &AccessGrant, query: &str| {
        let r = w.call(g, Interaction::TypeHistory { resource_type: "Observation".into() }, Call { query, ..Default::default() });
        assert_eq!(r.status, 200, "{}", r.body);
        body(&r)
    };
    let page = type_history(&ned, "_count=3");
    assert_eq!(page["total"], 6, "a-lab's five versions and a-vital's one");
    assert_eq!(page["entry"].as_array().unwrap().len(), 3);
    assert_eq!(link(&page, "next").as_deref(), Some("https://x/fhir/Observation/_history?_count=3&_offset=3"));
    // Through a filter: pages are filled from the filtered versions; no total unless all read.
    let vital = grant("patient/Observation.rs?category=vital-signs", Some("a"));
    let filtered = type_history(&vital, "_count=5");
    assert_eq!(refs(&filtered), ["Observation/a-vital"]);
    assert_eq!(filtered["total"], 1);
    let lab = grant("patient/Observation.rs?category=laboratory", Some("a"));
    let first = type_history(&lab, "_count=2");
    assert_eq!(first.get("total"), None, "not known without reading everything");
    assert_eq!(versions(&first), ["5", "4"]);
    let rest = type_history(&lab, &query_of(&link(&first, "next").unwrap()));
    assert_eq!(versions(&rest), ["3", "2"]);
    let relative = AccessGrant::for_tests("user/*.rs", None, Some("RelatedPerson/r"));
    let none = type_history(&relative, "");
    assert_eq!((none["total"].as_i64(), none.get("link")), (Some(0), None), "no compartment reached: empty, and no empty arrays but entry");
}

#[test]
fn prefer_return_operation_outcome_answers_writes_with_an_outcome() {
    let w = World::new();
    let ned = grant("patient/*.cruds", Some("a"));
    let prefer = |body: Option<Value>| Call { body, outcome: true, ..Default::default() };
    let created = w.call(&ned, Interaction::Create { resource_type: "Observation".into() }, prefer(Some(obs("x", "a", "laboratory"))));
    assert_eq!((created.status, created.version), (201, Some(1)));
    assert_eq!(created.location.as_deref(), Some("https://x/fhir/Observation/new1/_history/1"));
    let outcome = body(&created);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["severity"], "information");
    assert_eq!(outcome["issue"][0]["code"], "informational");
    assert_eq!(outcome["issue"][0]["diagnostics"], "Observation/new1/_history/1 created");
    let updated = w.call(&ned, Interaction::Update { resource_type: "Observation".into(), id: "new1".into() }, prefer(Some(obs("new1", "a", "survey"))));
    assert_eq!((updated.status, body(&updated)["issue"][0]["diagnostics"].as_str()), (200, Some("Observation/new1/_history/2 updated")));
    let patch = Call { body: Some(json!([])), content_type: Some("application/json-patch+json"), outcome: true, ..Default::default() };
    let patched = w.call(&ned, Interaction::Patch { resource_type: "Observation".into(), id: "new1".into() }, patch);
    assert_eq!((patched.status, body(&patched)["issue"][0]["diagnostics"].as_str()), (200, Some("Observation/new1/_history/3 patched")));
    let deleted = w.call(&ned, Interaction::Delete { resource_type: "Observation".into(), id: "new1".into() }, prefer(None));
    assert_eq!((deleted.status, body(&deleted)["issue"][0]["diagnostics"].as_str()), (200, Some("Observation/new1 deleted")));
    let refused = w.call(&ned, Interaction::Update { resource_type: "Observation".into(), id: "b-lab".into() }, prefer(Some(obs("b-lab", "b", "x"))));
    assert_eq!((refused.status, body(&refused)["issue"][0]["severity"].as_str()), (403, Some("error")));
}

#[test]
fn everything_is_the_compartment_within_the_scopes() {
    let w = World::new();
    let ids = |r: &FhirResponse| {
        assert_eq!(r.status, 200, "{}", r.body);
        refs(&body(r))
    };
    let ned = grant("patient/*.rs", Some("a"));
    let all = w.everything(&ned, "a", "");
    assert_eq!(ids(&all), ["Patient/a", "Condition/a-cond", "Observation/a-lab", "Observation/a-vital"]);
    let b = body(&all);
    assert_eq!((b["type"].as_str(), b["total"].as_i64()), (Some("searchset"), Some(4)));
    assert_eq!(b["entry"][1]["fullUrl"], "https://x/fhir/Condition/a-cond");
    assert_eq!(b["entry"][1]["search"]["mode"], "match");
    assert_eq!(w.everything(&ned, "b", "").status, 404, "not the launch patient");
    let only_obs = grant("patient/Observation.rs", Some("a"));
    assert_eq!(ids(&w.everything(&only_obs, "a", "")), ["Observation/a-lab", "Observation/a-vital"], "no Patient read scope: no Patient");
    let lab = grant("patient/Observation.rs?category=laboratory patient/Patient.r", Some("a"));
    assert_eq!(ids(&w.everything(&lab, "a", "")), ["Patient/a", "Observation/a-lab"]);
    let practitioner_only = grant("patient/Practitioner.rs", Some("a"));
    let r = w.everything(&practitioner_only, "a", "");
    assert_eq!((r.status, issue_code(&r)), (403, "security".into()));
    assert_eq!(w.everything(&grant("patient/*.rs", None), "a", "").status, 403, "patient/ scopes need a launch patient");
    assert_eq!(w.everything(&system(), "nobody", "").status, 404);
    assert_eq!(ids(&w.everything(&system(), "b", "")), ["Patient/b", "Observation/b-lab"]);
    assert_eq!(ids(&w.everything(&ned, "a", "_type=Patient,Condition")), ["Patient/a", "Condition/a-cond"]);
    assert_eq!(w.everything(&ned, "a", "_type=Spaceship").status, 400);
    // The memory clock: a-vital was stored at 7 ms, a-cond at 8 ms.
    assert_eq!(ids(&w.everything(&ned, "a", "_since=2026-01-01T00:00:00.007Z")), ["Condition/a-cond", "Observation/a-vital"]);
    assert_eq!(w.everything(&ned, "a", "_since=2026").status, 400);
}

#[test]
fn everything_is_paged_and_reads_one_partition() {
    let w = World::new();
    let ned = grant("patient/*.rs", Some("a"));
    w.store.calls.borrow_mut().clear();
    let first = w.everything(&ned, "a", "_count=3");
    assert_eq!(*w.store.calls.borrow(), [("patient/a".to_owned(), 2)].into_iter().collect(), "the Patient's existence and one page");
    let first = body(&first);
    assert_eq!(refs(&first), ["Patient/a", "Condition/a-cond", "Observation/a-lab"]);
    let next = link(&first, "next").unwrap();
    assert_eq!(next, "https://x/fhir/Patient/a/$everything?_count=3&_offset=3");
    let second = body(&w.everything(&ned, "a", &query_of(&next)));
    assert_eq!(refs(&second), ["Observation/a-vital"]);
    assert_eq!(link(&second, "next"), None);
    // A filtered type: the page is filled past what the filter hides.
    let lab = grant("patient/Observation.rs?category=laboratory patient/Condition.rs", Some("a"));
    let page = body(&w.everything(&lab, "a", "_count=1&_offset=1"));
    assert_eq!(refs(&page), ["Observation/a-lab"]);
    let next = link(&page, "next").unwrap();
    assert_eq!(refs(&body(&w.everything(&lab, "a", &query_of(&next)))), Vec::<String>::new());
    // POST with a Parameters body.
    let parameters =
        json!({"resourceType": "Parameters", "parameter": [{"name": "_count", "valueInteger": 1}, {"name": "_type", "valueString": "Observation"}]});
    let posted = w.call(&ned, Interaction::Everything { patient: "a".into() }, Call { body: Some(parameters), ..Default::default() });
    assert_eq!(refs(&body(&posted)), ["Observation/a-lab"]);
    let bad = w.call(&ned, Interaction::Everything { patient: "a".into() }, Call { body: Some(json!({"resourceType": "Patient"})), ..Default::default() });
    assert_eq!(bad.status, 400);
}
