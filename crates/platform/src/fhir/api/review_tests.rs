//! Security review of the FHIR-breadth paths (issue 12): each test is a finding of an
//! independent review, written as the behaviour the Security model promises; each failed on
//! the code as reviewed and passes since its fix.

use super::*;
use crate::fhir::memory::MemoryPartitions;
use futures::executor::block_on;
use serde_json::json;
use std::cell::Cell;

use super::test_support::{grant, put, run, system};

struct World {
    store: MemoryPartitions,
    ids: Cell<u32>,
}

impl World {
    fn new() -> World {
        let w = World { store: MemoryPartitions::default(), ids: Cell::new(0) };
        for p in ["a", "b"] {
            w.put(json!({"resourceType": "Patient", "id": p}));
        }
        w.put(json!({"resourceType": "Observation", "id": "a-vital", "status": "final", "subject": {"reference": "Patient/a"},
            "category": [{"coding": [{"code": "vital-signs"}]}], "code": {"text": "heart rate"}, "note": [{"text": "private note of a"}]}));
        w
    }

    fn put(&self, r: Value) {
        put(&self.store, r);
    }

    fn request(&self, grant: &AccessGrant, interaction: Interaction, request: FhirRequest) -> FhirResponse {
        run(&self.store, &self.ids, grant, &FhirRequest { interaction: Some(interaction), ..request })
    }

    fn read(&self, grant: &AccessGrant, t: &str, id: &str) -> FhirResponse {
        self.request(grant, Interaction::Read { resource_type: t.into(), id: id.into() }, FhirRequest::default())
    }

    fn search(&self, grant: &AccessGrant, t: &str, query: &str) -> FhirResponse {
        let query = serde_urlencoded::from_str(query).unwrap();
        self.request(grant, Interaction::Search { resource_type: t.into() }, FhirRequest { query, ..Default::default() })
    }

    fn patch(&self, grant: &AccessGrant, t: &str, id: &str, patch: Value) -> FhirResponse {
        let request = FhirRequest { content_type: Some("application/json-patch+json".into()), body: patch.to_string().into_bytes(), ..Default::default() };
        self.request(grant, Interaction::Patch { resource_type: t.into(), id: id.into() }, request)
    }

    fn create(&self, grant: &AccessGrant, resource: Value) -> FhirResponse {
        let t = resource["resourceType"].as_str().unwrap().to_owned();
        let request = FhirRequest { content_type: Some("application/fhir+json".into()), body: resource.to_string().into_bytes(), ..Default::default() };
        self.request(grant, Interaction::Create { resource_type: t }, request)
    }
}

fn match_ids(r: &FhirResponse) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.body);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap()))
        .collect()
}

/// Finding 1. The generated registry keeps Device (`Device.patient`), Group (`member.entity`),
/// Contract and GuidanceResponse (`subject` = a Patient) out of the Patient compartment, so a
/// Device that names patient b is "shared reference data": any `patient/` token of any other
/// patient reads and searches it (`GET Device?patient=b`, `GET Group?member=Patient/b`).
#[test]
fn review_a_patient_token_does_not_read_another_patients_device_or_group_membership() {
    let w = World::new();
    w.put(json!({"resourceType": "Device", "id": "dev-b", "status": "active", "patient": {"reference": "Patient/b"},
        "serialNumber": "PACEMAKER-SN-0042", "type": {"coding": [{"system": "http://snomed.info/sct", "code": "14106009"}]}}));
    w.put(json!({"resourceType": "Group", "id": "hiv-cohort", "type": "person", "actual": true, "name": "HIV clinic cohort",
        "member": [{"entity": {"reference": "Patient/b"}}]}));
    let ned = grant("patient/*.rs", Some("a"), None);
    assert_eq!(w.read(&system(), "Device", "dev-b").status, 200, "the Device is stored");
    let device = w.read(&ned, "Device", "dev-b");
    assert_eq!(device.status, 404, "patient a's token reads patient b's implant: {}", device.body);
    assert_eq!(match_ids(&w.search(&ned, "Device", "patient=Patient/b")), Vec::<String>::new(), "Device?patient=b by a's token");
    assert_eq!(match_ids(&w.search(&ned, "Group", "member=Patient/b")), Vec::<String>::new(), "Group?member=b by a's token");
}

/// Finding 2. PATCH answers the stored resource, and it checks only that the caller may read
/// *or update* the current version: a write-only token (`patient/Observation.u`, e.g. a device
/// uploader) reads any Observation of its patient with an empty patch `[]`.
#[test]
fn review_an_empty_patch_does_not_reveal_a_resource_to_a_token_without_read() {
    let w = World::new();
    let writer = grant("patient/Observation.u", Some("a"), None);
    assert_eq!(w.read(&writer, "Observation", "a-vital").status, 403, "no read scope");
    let r = w.patch(&writer, "Observation", "a-vital", json!([]));
    assert!(!r.body.contains("private note of a"), "PATCH [] by an update-only token answered {}: {}", r.status, r.body);
    // The same with a granular read scope that hides vital signs.
    let labs = grant("patient/Observation.rs?category=laboratory patient/Observation.u", Some("a"), None);
    assert_eq!(w.read(&labs, "Observation", "a-vital").status, 404);
    let r = w.patch(&labs, "Observation", "a-vital", json!([{"op": "test", "path": "/status", "value": "final"}]));
    assert!(!r.body.contains("private note of a"), "PATCH test-op by a lab-only reader answered {}: {}", r.status, r.body);
}

/// Finding 3. JSON Patch `copy` may copy a value into itself (`/note` → `/note/-`): each
/// operation doubles the resource. Applied whole and measured after, 40 such operations (a
/// 2 KB body) would need terabytes; applied one at a time with the size checked after each,
/// the patch stops at the resource limit (413). More than 100 operations are refused unread.
#[test]
fn review_a_patch_is_bounded_before_it_is_applied() {
    let w = World::new();
    let ops: Vec<Value> = (0..40).map(|_| json!({"op": "copy", "from": "/note", "path": "/note/-"})).collect();
    let r = w.patch(&system(), "Observation", "a-vital", Value::Array(ops));
    assert_eq!(r.status, 413, "{}", r.body);
    let ops: Vec<Value> = (0..101).map(|_| json!({"op": "test", "path": "/status", "value": "final"})).collect();
    assert_eq!(w.patch(&system(), "Observation", "a-vital", Value::Array(ops)).status, 400);
    let stored: Value = serde_json::from_str(&w.read(&system(), "Observation", "a-vital").body).unwrap();
    assert_eq!(stored["meta"]["versionId"], "1", "nothing written");
}

/// Finding 4. Placement now follows `Condition.subject.where(resolve() is Patient)`: a
/// conditional (or single-segment) reference to a Patient is no longer refused as unplaceable
/// (as `Observation.subject` still is) but stored in `shared/Condition`, outside the patient's
/// compartment, where the patient's own apps never see it.
#[test]
fn review_a_condition_with_an_unresolvable_patient_reference_is_refused() {
    let w = World::new();
    let cond = json!({"resourceType": "Condition", "subject": {"reference": "Patient?identifier=http://hospital/mrn|B"}, "code": {"text": "HIV"}});
    let r = w.create(&system(), cond);
    assert_eq!(r.status, 422, "stored outside every compartment: {:?} {}", r.location, r.body);
    let obs =
        json!({"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient?identifier=http://hospital/mrn|B"}, "code": {"text": "x"}});
    assert_eq!(w.create(&system(), obs).status, 422, "as Observation is");
}

/// Finding 5. An export's status, manifest and NDJSON files answer any token of the client
/// that started it (`Job::belongs_to` compares `client_id` only): a patient-launch token of the
/// same client (an app registered for both an EHR launch and backend services, or a token with
/// narrower scopes) downloads the whole system-level export.
#[test]
fn review_export_files_are_not_served_to_a_patient_token_of_the_same_client() {
    use crate::fhir::bulk::{self, KickOff, Level};
    let w = World::new();
    let new_id = || "job1".to_owned();
    let fhir = Fhir { store: &w.store, base: "https://x/fhir", new_id: &new_id };
    let request = KickOff {
        level: Some(Level::System),
        params: Vec::new(),
        accept: Some("application/fhir+json".into()),
        prefer: Some("respond-async".into()),
        request_url: "https://x/fhir/$export".into(),
    };
    let job = block_on(bulk::kick_off(&fhir, &grant("system/*.rs", None, None), &request, "2026-06-01T00:00:00.000Z")).unwrap();
    let patient_app = grant("patient/Observation.rs", Some("a"), None);
    assert_eq!(patient_app.client_id, job.client_id, "the same client");
    assert!(!job.belongs_to(&patient_app), "a patient/ token of the same client gets every patient's export files");
}

/// The Durable Object's SQLite: a statement binds at most [`crate::fhir::search::MAX_BOUND`]
/// values (see `search::query`), else the partition answers an error (a 500 on the wire).
struct BoundedStore(MemoryPartitions);

#[async_trait::async_trait(?Send)]
impl crate::fhir::store::Partitions for BoundedStore {
    async fn write(&self, p: &str, r: Vec<Value>, m: Option<i64>) -> Result<crate::fhir::store::WriteOutcome, StoreError> {
        self.0.write(p, r, m).await
    }
    async fn read(&self, p: &str, t: &str, id: &str, v: Option<i64>) -> Result<crate::fhir::store::ReadOutcome, StoreError> {
        self.0.read(p, t, id, v).await
    }
    async fn history(&self, p: &str, t: &str, id: Option<&str>, page: &crate::fhir::store::Page) -> Result<crate::fhir::store::HistoryPage, StoreError> {
        self.0.history(p, t, id, page).await
    }
    async fn compartment(&self, p: &str, types: &[String], page: &crate::fhir::store::Page) -> Result<crate::fhir::store::CompartmentPage, StoreError> {
        self.0.compartment(p, types, page).await
    }
    async fn revert(&self, p: &str, written: Vec<crate::fhir::store::Written>) -> Result<(), StoreError> {
        self.0.revert(p, written).await
    }
    async fn delete(&self, p: &str, t: &str, id: &str) -> Result<Option<i64>, StoreError> {
        self.0.delete(p, t, id).await
    }
    async fn search(&self, p: &str, q: &crate::fhir::search::Search) -> Result<crate::fhir::store::SearchResult, StoreError> {
        let bound = crate::fhir::search::to_sql(q).select_params.len();
        if bound > crate::fhir::search::MAX_BOUND {
            return Err(StoreError(format!("too many SQL variables ({bound})")));
        }
        self.0.search(p, q).await
    }
    async fn locate(&self, keys: &[(String, String)]) -> Result<Vec<Option<String>>, StoreError> {
        self.0.locate(keys).await
    }
    async fn register(&self, entries: Vec<(String, String, String)>) -> Result<(), StoreError> {
        self.0.register(entries).await
    }
}

/// Finding 6. A search is checked against the 100 bound values of one Durable Object
/// statement (`search::parse`, and again after chains in `find::resolve`) *before* the gate adds
/// the token's granular-scope clauses (`find::run` sets `filters`): a search at exactly 100
/// values by a `patient/Observation.rs?category=laboratory` token (the Lab Viewer's kind) makes
/// the partition's statement fail, a 500 instead of the 400 too-costly others get.
#[test]
fn review_a_search_at_the_bound_limit_under_a_granular_scope_is_no_server_error() {
    let w = World::new();
    let store = BoundedStore(w.store);
    let q = "value-quantity=ap1|http://unitsofmeasure.org|mg,ap2|http://unitsofmeasure.org|mg,ap3|http://unitsofmeasure.org|mg,ap4|http://unitsofmeasure.org|mg,ap5|http://unitsofmeasure.org|mg\
        &value-quantity=ap6|http://unitsofmeasure.org|mg,ap7|http://unitsofmeasure.org|mg,ap8|http://unitsofmeasure.org|mg,ap9|http://unitsofmeasure.org|mg,ap10|http://unitsofmeasure.org|mg\
        &value-quantity=ap11|http://unitsofmeasure.org|mg,ap12|http://unitsofmeasure.org|mg,ap13|http://unitsofmeasure.org|mg,ap14|http://unitsofmeasure.org|mg,ap15|http://unitsofmeasure.org|mg\
        &value-quantity=ap16|http://unitsofmeasure.org|mg,ap17|http://unitsofmeasure.org|mg,ap18|http://unitsofmeasure.org|mg,ap19|http://unitsofmeasure.org|mg,ap20|http://unitsofmeasure.org|mg\
        &code=http://loinc.org|1,http://loinc.org|2,http://loinc.org|3,http://loinc.org|4,http://loinc.org|5\
        &status=a,b,c,d,e&category=x,y";
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
    let parsed = crate::fhir::search::parse("Observation", &pairs, true).expect("a search within the limits");
    assert_eq!(crate::fhir::search::to_sql(&parsed).select_params.len(), crate::fhir::search::MAX_BOUND, "exactly at the limit");
    let new_id = || "x".to_owned();
    let fhir = Fhir { store: &store, base: "https://x/fhir", new_id: &new_id };
    let request = FhirRequest { interaction: Some(Interaction::Search { resource_type: "Observation".into() }), query: pairs, ..Default::default() };
    assert_eq!(block_on(handle(&fhir, &system(), &request)).map(|r| r.status), Ok(200), "without a granular scope");
    let labs = grant("patient/Observation.rs?category=laboratory", Some("a"), None);
    let answer = block_on(handle(&fhir, &labs, &request));
    assert!(answer.as_ref().is_ok_and(|r| r.status < 500), "a granular token's search fails in the partition: {:?}", answer.map(|r| r.status));
}
