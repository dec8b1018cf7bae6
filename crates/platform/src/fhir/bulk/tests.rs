//! `$export` natively, over the in-memory partitions: kick-off checks, the background batches
//! to the end, the manifest and the files' exact contents (the wire twins are in
//! `tests/bulk-export.test.mjs`).

use super::*;
use crate::fhir::api::{Fhir, FhirResponse};
use crate::fhir::memory::MemoryPartitions;
use crate::fhir::store::{partition_for, Partitions, DIRECTORY};
use futures::executor::block_on;
use serde_json::{json, Value};

const NOW: &str = "2026-06-01T00:00:00.000Z";

fn grant(scope: &str, patient: Option<&str>, fhir_user: Option<&str>) -> AccessGrant {
    AccessGrant::for_tests(scope, patient, fhir_user)
}

fn obs(id: &str, patient: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final", "subject": {"reference": format!("Patient/{patient}")},
        "category": [{"coding": [{"code": category}]}], "code": {"text": "x"}})
}

fn world() -> MemoryPartitions {
    let store = MemoryPartitions::default();
    let put = |r: Value| {
        let partition = partition_for(&r).unwrap();
        let t = r["resourceType"].as_str().unwrap().to_owned();
        let id = r["id"].as_str().unwrap().to_owned();
        block_on(store.write(&partition, vec![r.clone()], None)).unwrap();
        if t == "Patient" {
            block_on(store.write(DIRECTORY, vec![r.clone()], None)).unwrap();
        }
        block_on(store.register(vec![(t, id, partition)])).unwrap();
    };
    for p in ["a", "b"] {
        put(json!({"resourceType": "Patient", "id": p}));
    }
    put(json!({"resourceType": "Practitioner", "id": "d1"}));
    put(json!({"resourceType": "Organization", "id": "org1"}));
    put(obs("a-lab", "a", "laboratory"));
    put(obs("a-vital", "a", "vital-signs"));
    put(obs("b-lab", "b", "laboratory"));
    put(json!({"resourceType": "Condition", "id": "b-cond", "subject": {"reference": "Patient/b"}}));
    world_store_check(&store);
    store
}

fn world_store_check(store: &MemoryPartitions) {
    assert!(block_on(store.locate(&[("Observation".into(), "a-lab".into())])).unwrap()[0].is_some());
}

fn kick(store: &MemoryPartitions, g: &AccessGrant, level: Level, params: &[(&str, &str)], prefer: &str) -> Result<Job, FhirResponse> {
    let new_id = || "job1".to_owned();
    let fhir = Fhir { store, base: "https://x/fhir", new_id: &new_id };
    let request = KickOff {
        level: Some(level),
        params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        accept: Some("application/fhir+json".into()),
        prefer: Some(prefer.into()),
        request_url: "https://x/fhir/$export".into(),
    };
    block_on(kick_off(&fhir, g, &request, NOW))
}

/// Runs the job to its end: each file's lines.
fn run_all(store: &MemoryPartitions, job: &mut Job) -> Vec<String> {
    let mut files: Vec<String> = Vec::new();
    for _ in 0..100 {
        if job.state != JobState::Running {
            break;
        }
        for piece in block_on(run_batch(store, job)).unwrap() {
            if files.len() <= piece.file {
                files.resize(piece.file + 1, String::new());
            }
            files[piece.file].push_str(&piece.ndjson);
        }
    }
    assert_eq!(job.state, JobState::Done);
    files
}

/// `Type/id` of every exported resource, sorted, and each file's count checked against the manifest.
fn exported(job: &Job, files: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    assert_eq!(files.len(), job.files.len());
    for (n, text) in files.iter().enumerate() {
        assert!(text.ends_with('\n'));
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), job.files[n].count);
        for r in lines {
            assert_eq!(r["resourceType"], json!(job.files[n].resource_type), "one type per file");
            ids.push(format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap()));
        }
    }
    ids.sort();
    ids
}

fn refused(result: Result<Job, FhirResponse>, status: u16, code: &str) {
    let answer = result.expect_err("refused");
    assert_eq!(answer.status, status, "{}", answer.body);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["issue"][0]["code"], json!(code), "{}", answer.body);
}

const ASYNC: &str = "respond-async";

#[test]
fn a_system_export_writes_every_type_the_token_reads() {
    let store = world();
    let mut job = kick(&store, &grant("system/*.rs", None, None), Level::System, &[], ASYNC).unwrap();
    assert!(matches!(status(&job), Status::InProgress { .. }));
    let files = run_all(&store, &mut job);
    assert_eq!(
        exported(&job, &files),
        ["Condition/b-cond", "Observation/a-lab", "Observation/a-vital", "Observation/b-lab", "Organization/org1", "Patient/a", "Patient/b", "Practitioner/d1"]
    );
    let Status::Complete(manifest) = status(&job) else { panic!("done") };
    assert_eq!(manifest["transactionTime"], json!(NOW));
    assert_eq!(manifest["request"], json!("https://x/fhir/$export"));
    assert_eq!(manifest["requiresAccessToken"], json!(true));
    assert_eq!(manifest["error"], json!([]));
    let observations = manifest["output"].as_array().unwrap().iter().find(|o| o["type"] == "Observation").unwrap();
    assert_eq!(observations["count"], json!(3));
    assert_eq!(observations["url"], json!(format!("https://x/fhir/bulk/job1/{}", job.file_name(job.file_index_of("Observation")))));
}

impl Job {
    fn file_index_of(&self, t: &str) -> usize {
        self.files.iter().position(|f| f.resource_type == t).unwrap()
    }
}

#[test]
fn scopes_decide_the_types_and_granular_scopes_filter_them() {
    let store = world();
    let mut job = kick(&store, &grant("system/Observation.rs?category=laboratory", None, None), Level::System, &[], ASYNC).unwrap();
    let files = run_all(&store, &mut job);
    assert_eq!(exported(&job, &files), ["Observation/a-lab", "Observation/b-lab"]);
    // A type the token cannot read: 403, or left out and reported under handling=lenient.
    let g = grant("system/Observation.rs", None, None);
    refused(kick(&store, &g, Level::System, &[("_type", "Patient")], ASYNC), 403, "security");
    refused(kick(&store, &g, Level::System, &[("_type", "Patient")], "respond-async, handling=lenient"), 403, "security");
    let mut lenient = kick(&store, &g, Level::System, &[("_type", "Patient,Observation")], "respond-async, handling=lenient").unwrap();
    let files = run_all(&store, &mut lenient);
    assert_eq!(exported(&lenient, &files), ["Observation/a-lab", "Observation/a-vital", "Observation/b-lab"]);
    let Status::Complete(manifest) = status(&lenient) else { panic!() };
    assert_eq!(manifest["error"][0]["url"], json!("https://x/fhir/bulk/job1/errors.ndjson"));
    let errors: Value = serde_json::from_str(errors_ndjson(&lenient).trim_end()).unwrap();
    assert_eq!(errors["resourceType"], json!("OperationOutcome"));
    assert!(errors["issue"][0]["diagnostics"].as_str().unwrap().contains("Patient"));
    // v2 read without search is not enough to export.
    refused(kick(&store, &grant("system/Observation.r", None, None), Level::System, &[], ASYNC), 403, "security");
}

#[test]
fn only_backend_tokens_export() {
    let store = world();
    for g in [grant("patient/*.rs", Some("a"), None), grant("user/*.rs", None, Some("Practitioner/d1")), grant("system/*.rs", Some("a"), None)] {
        refused(kick(&store, &g, Level::System, &[], ASYNC), 403, "security");
    }
}

#[test]
fn kick_off_parameters_are_checked() {
    let store = world();
    let g = grant("system/*.rs", None, None);
    refused(kick(&store, &g, Level::System, &[], ""), 400, "invalid");
    refused(kick(&store, &g, Level::System, &[("_outputFormat", "text/csv")], ASYNC), 400, "not-supported");
    refused(kick(&store, &g, Level::System, &[("_type", "Spaceship")], ASYNC), 400, "not-supported");
    refused(kick(&store, &g, Level::System, &[("_since", "yesterday")], ASYNC), 400, "invalid");
    refused(kick(&store, &g, Level::System, &[("_elements", "id")], ASYNC), 400, "not-supported");
    refused(kick(&store, &g, Level::Patient, &[("_type", "Practitioner")], ASYNC), 400, "invalid");
    refused(kick(&store, &g, Level::System, &[("_type", "Patient"), ("_typeFilter", "Observation?category=laboratory")], ASYNC), 400, "invalid");
    refused(kick(&store, &g, Level::System, &[("_typeFilter", "Observation?nonsense=1")], ASYNC), 400, "invalid");
    refused(kick(&store, &g, Level::System, &[("_typeFilter", "Observation?_count=1")], ASYNC), 400, "invalid");
    // A chain would be dropped by the export and widen it (review finding 7).
    refused(kick(&store, &g, Level::System, &[("_typeFilter", "Observation?subject:Patient.gender=female")], ASYNC), 400, "invalid");
    refused(kick(&store, &g, Level::System, &[("_typeFilter", "Patient?_has:Observation:patient:code=x")], ASYNC), 400, "invalid");
    refused(kick(&store, &g, Level::Group("g1".into()), &[], ASYNC), 404, "not-found");
    for format in ["application/fhir+ndjson", "application/ndjson", "ndjson"] {
        assert!(kick(&store, &g, Level::System, &[("_outputFormat", format)], ASYNC).is_ok(), "{format}");
    }
    let job = kick(&store, &g, Level::System, &[("_elements", "id")], "respond-async; handling=lenient").unwrap();
    assert_eq!(job.errors.len(), 1);
}

#[test]
fn type_filters_since_and_the_patient_level() {
    let store = world();
    let g = grant("system/*.rs", None, None);
    let mut job = kick(&store, &g, Level::System, &[("_type", "Observation,Condition"), ("_typeFilter", "Observation?category=vital-signs")], ASYNC).unwrap();
    let files = run_all(&store, &mut job);
    assert_eq!(exported(&job, &files), ["Condition/b-cond", "Observation/a-vital"]);
    // Several filters for one type: any of them.
    let filters = [("_type", "Observation"), ("_typeFilter", "Observation?category=vital-signs,Observation?_id=b-lab")];
    let mut job = kick(&store, &g, Level::System, &filters, ASYNC).unwrap();
    let files = run_all(&store, &mut job);
    assert_eq!(exported(&job, &files), ["Observation/a-vital", "Observation/b-lab"]);
    // _since: the memory store's clock is in 2026-01-01T00:00:00.
    let mut later = kick(&store, &g, Level::System, &[("_since", "2026-01-01T00:00:01Z")], ASYNC).unwrap();
    assert_eq!(exported(&later.clone(), &run_all(&store, &mut later)), Vec::<String>::new());
    let mut earlier = kick(&store, &g, Level::System, &[("_since", "2025-12-31T23:59:59Z"), ("_type", "Patient")], ASYNC).unwrap();
    let files = run_all(&store, &mut earlier);
    assert_eq!(exported(&earlier, &files), ["Patient/a", "Patient/b"]);
    // Nothing changed after the transaction time is exported (the next export's _since gets it).
    let mut before = kick(&store, &g, Level::System, &[], ASYNC).unwrap();
    before.transaction_time = "2025-12-31T23:59:59Z".into();
    assert_eq!(exported(&before.clone(), &run_all(&store, &mut before)), Vec::<String>::new());
    // Patient level: the compartments only (no Practitioner, no Organization).
    let mut patients = kick(&store, &g, Level::Patient, &[], ASYNC).unwrap();
    let searches_before = store.calls.borrow().get("patient/a").copied().unwrap_or_default();
    let files = run_all(&store, &mut patients);
    // Patient a's partition: one question for its types, then one search for each it holds
    // (Observation, Patient), not one per compartment type.
    assert_eq!(store.calls.borrow()["patient/a"] - searches_before, 3);
    assert_eq!(exported(&patients, &files), ["Condition/b-cond", "Observation/a-lab", "Observation/a-vital", "Observation/b-lab", "Patient/a", "Patient/b"]);
}

#[test]
fn a_type_filter_never_widens_a_granular_scope() {
    let store = world();
    let lab = grant("system/Observation.rs?category=laboratory", None, None);
    // The filter asks for what the scope excludes: nothing.
    let mut job = kick(&store, &lab, Level::System, &[("_typeFilter", "Observation?category=vital-signs")], ASYNC).unwrap();
    let files = run_all(&store, &mut job);
    assert_eq!(exported(&job, &files), Vec::<String>::new());
    // Several filters: each still within the scope (a-vital matches the first, not the scope).
    let mut job = kick(&store, &lab, Level::System, &[("_typeFilter", "Observation?_id=a-vital,Observation?_id=b-lab")], ASYNC).unwrap();
    let files = run_all(&store, &mut job);
    assert_eq!(exported(&job, &files), ["Observation/b-lab"]);
    // And the patient level the same.
    let mut job = kick(&store, &lab, Level::Patient, &[("_typeFilter", "Observation?_id=a-vital,Observation?_id=a-lab")], ASYNC).unwrap();
    let files = run_all(&store, &mut job);
    assert_eq!(exported(&job, &files), ["Observation/a-lab"]);
    // A filter on a type the token cannot read adds no type: 400 (not exported), 403 when asked for.
    refused(kick(&store, &lab, Level::System, &[("_typeFilter", "Patient?_id=a")], ASYNC), 400, "invalid");
    refused(kick(&store, &lab, Level::System, &[("_type", "Patient"), ("_typeFilter", "Patient?_id=a")], ASYNC), 403, "security");
}

#[test]
fn files_split_and_the_job_is_its_clients() {
    let store = MemoryPartitions::default();
    let patients: Vec<Value> = (0..(PAGE * 2 + 5)).map(|i| json!({"resourceType": "Patient", "id": format!("p{i:04}")})).collect();
    for p in &patients {
        block_on(store.write(&partition_for(p).unwrap(), vec![p.clone()], None)).unwrap();
    }
    block_on(store.write(DIRECTORY, patients.clone(), None)).unwrap();
    let g = grant("system/Patient.rs", None, None);
    let mut job = kick(&store, &g, Level::Patient, &[], ASYNC).unwrap();
    let mut batches = 0;
    let mut count = 0;
    while job.state == JobState::Running {
        count += block_on(run_batch(&store, &mut job)).unwrap().iter().map(|p| p.count).sum::<usize>();
        batches += 1;
        if let Status::InProgress { progress, .. } = status(&job) {
            assert!(progress.contains("partitions"), "{progress}");
        }
    }
    assert_eq!(count, patients.len());
    assert!(batches >= 5, "at most {CALLS_PER_BATCH} calls per batch: {batches}");
    assert_eq!(job.files.iter().map(|f| f.count).sum::<usize>(), patients.len());
    assert!(job.belongs_to(&g));
    assert!(!job.belongs_to(&AccessGrant { client_id: "other".into(), ..g.clone() }));
    // Review finding 5: a patient token, or a narrower token, of the same client sees nothing.
    let patient_token = AccessGrant { patient: Some("p0001".into()), scope: ScopeSet::parse("patient/*.rs").unwrap(), ..g.clone() };
    assert!(!job.belongs_to(&patient_token));
    let other_scope = AccessGrant { scope: ScopeSet::parse("system/Observation.rs").unwrap(), ..g.clone() };
    assert!(!job.belongs_to(&other_scope), "a token of the client without the export's scopes");
    let wider = AccessGrant { scope: ScopeSet::parse("system/*.rs").unwrap(), ..g.clone() };
    assert!(job.belongs_to(&wider));
    assert_eq!(job.file_index(&job.file_name(0)), Some(0));
    assert_eq!(job.file_index("Patient-9.ndjson"), None);
    let failed = Job { state: JobState::Failed("partition patient/p0001 unavailable".into()), ..job };
    let Status::Failed(outcome) = status(&failed) else { panic!("failed") };
    assert_eq!(outcome["issue"][0]["code"], json!("exception"));
}

#[test]
fn bulk_paths_and_parameters() {
    assert_eq!(BulkPath::parse("/$export"), Some(BulkPath::KickOff(Level::System)));
    assert_eq!(BulkPath::parse("/Patient/$export"), Some(BulkPath::KickOff(Level::Patient)));
    assert_eq!(BulkPath::parse("/Group/g-1/$export"), Some(BulkPath::KickOff(Level::Group("g-1".into()))));
    assert_eq!(BulkPath::parse("/bulk/j1"), Some(BulkPath::Status("j1".into())));
    assert_eq!(BulkPath::parse("/bulk/j1/Patient-0.ndjson"), Some(BulkPath::File("j1".into(), "Patient-0.ndjson".into())));
    assert_eq!(BulkPath::parse("/bulk/bad id"), None);
    assert_eq!(BulkPath::parse("/Patient/1"), None);
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient"}, {"name": "_since", "valueInstant": "2026-01-01T00:00:00Z"},
        {"name": "patient", "valueReference": {"reference": "Patient/a"}}]});
    assert_eq!(
        parameters(body.to_string().as_bytes()).unwrap(),
        [("_type".to_owned(), "Patient".to_owned()), ("_since".into(), "2026-01-01T00:00:00Z".into()), ("patient".into(), String::new())]
    );
    assert_eq!(parameters(b"{\"resourceType\":\"Patient\"}").unwrap_err().status, 400);
    assert_eq!(parameters(b"not json").unwrap_err().status, 400);
}

/// The memory partitions, with a change made between two searches of a partition (as a
/// client would while an export runs).
struct Meddling {
    inner: MemoryPartitions,
    searches: std::cell::Cell<usize>,
}

#[async_trait::async_trait(?Send)]
impl Partitions for Meddling {
    async fn write(&self, p: &str, r: Vec<Value>, m: Option<i64>) -> Result<crate::fhir::store::WriteOutcome, crate::ports::StoreError> {
        self.inner.write(p, r, m).await
    }
    async fn read(&self, p: &str, t: &str, id: &str, v: Option<i64>) -> Result<crate::fhir::store::ReadOutcome, crate::ports::StoreError> {
        self.inner.read(p, t, id, v).await
    }
    async fn history(
        &self,
        p: &str,
        t: &str,
        id: Option<&str>,
        page: &crate::fhir::store::Page,
    ) -> Result<crate::fhir::store::HistoryPage, crate::ports::StoreError> {
        self.inner.history(p, t, id, page).await
    }
    async fn compartment(
        &self,
        p: &str,
        types: &[String],
        page: &crate::fhir::store::Page,
    ) -> Result<crate::fhir::store::CompartmentPage, crate::ports::StoreError> {
        self.inner.compartment(p, types, page).await
    }
    async fn revert(&self, p: &str, written: Vec<crate::fhir::store::Written>) -> Result<(), crate::ports::StoreError> {
        self.inner.revert(p, written).await
    }
    async fn delete(&self, p: &str, t: &str, id: &str) -> Result<Option<i64>, crate::ports::StoreError> {
        self.inner.delete(p, t, id).await
    }
    async fn search(&self, p: &str, q: &crate::fhir::search::Search) -> Result<crate::fhir::store::SearchResult, crate::ports::StoreError> {
        let found = self.inner.search(p, q).await?;
        if p == "shared/Organization" && self.searches.replace(self.searches.get() + 1) == 0 {
            // After the first page: the first organization is deleted.
            self.inner.delete(p, "Organization", "o0000").await?;
        }
        Ok(found)
    }
    async fn locate(&self, keys: &[(String, String)]) -> Result<Vec<Option<String>>, crate::ports::StoreError> {
        self.inner.locate(keys).await
    }
    async fn register(&self, entries: Vec<(String, String, String)>) -> Result<(), crate::ports::StoreError> {
        self.inner.register(entries).await
    }
    async fn types_in(&self, p: &str) -> Result<Option<Vec<String>>, crate::ports::StoreError> {
        self.inner.types_in(p).await
    }
}

#[test]
fn a_deletion_during_the_export_skips_no_other_resource() {
    let store = Meddling { inner: MemoryPartitions::default(), searches: std::cell::Cell::new(0) };
    let organizations: Vec<Value> = (0..(PAGE * 2 + 5)).map(|i| json!({"resourceType": "Organization", "id": format!("o{i:04}")})).collect();
    block_on(store.write("shared/Organization", organizations.clone(), None)).unwrap();
    let g = grant("system/Organization.rs", None, None);
    let new_id = || "job1".to_owned();
    let fhir = Fhir { store: &store, base: "https://x/fhir", new_id: &new_id };
    let request = KickOff { level: Some(Level::System), prefer: Some(ASYNC.into()), ..Default::default() };
    let mut job = block_on(kick_off(&fhir, &g, &request, NOW)).unwrap();
    let mut ids = Vec::new();
    while job.state == JobState::Running {
        for piece in block_on(run_batch(&store, &mut job)).unwrap() {
            ids.extend(piece.ndjson.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned()));
        }
    }
    assert!(store.searches.get() >= 3, "three pages");
    let expected: Vec<String> = organizations.iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, expected, "every organization once (o0000 was read before it was deleted), none skipped by the shift");
}
