//! The FHIR partitions (the `FHIR` Durable Object namespace) seen from the Worker: typed calls,
//! the [`FhirStore`] port the authorization pages use, and bundle ingestion.

use crate::durable::fhir_partition::{DirEntries, Key, ReadOutcome, SearchResult, WriteOutcome, WriteRequest};
use crate::durable::rpc;
use crate::http::AppError;
use async_trait::async_trait;
use platform::fhir::ingest::Plan;
use platform::fhir::search::{self, SqlQuery};
use platform::fhir::store::{self, FhirStore, DIRECTORY};
use platform::ports::StoreError;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use worker::Env;

pub struct Partitions<'a>(pub &'a Env);

impl Partitions<'_> {
    async fn call<B: Serialize, R: DeserializeOwned>(&self, partition: &str, path: &str, body: &B) -> Result<R, AppError> {
        let stub = rpc::by_name(self.0, "FHIR", partition)?;
        match rpc::call::<B, R, Value>(&stub, path, body).await? {
            Ok(value) => Ok(value),
            Err(other) => Err(AppError::internal(format!("partition {partition}{path}: {other}"))),
        }
    }

    pub async fn write(&self, partition: &str, resources: Vec<Value>, if_match: Option<String>) -> Result<WriteOutcome, AppError> {
        let last_updated: String = js_sys::Date::new_0().to_iso_string().into();
        self.call(partition, "/write", &WriteRequest { resources, last_updated, if_match }).await
    }

    pub async fn read_in(&self, partition: &str, resource_type: &str, id: &str, version: Option<i64>) -> Result<ReadOutcome, AppError> {
        let key = Key { resource_type: resource_type.into(), id: id.into(), version };
        self.call(partition, if version.is_some() { "/vread" } else { "/read" }, &key).await
    }

    pub async fn history(&self, partition: &str, resource_type: &str, id: &str) -> Result<Vec<(i64, String, bool, Box<serde_json::value::RawValue>)>, AppError> {
        self.call(partition, "/history", &Key { resource_type: resource_type.into(), id: id.into(), version: None }).await
    }

    pub async fn delete(&self, partition: &str, resource_type: &str, id: &str) -> Result<Option<i64>, AppError> {
        self.call(partition, "/delete", &Key { resource_type: resource_type.into(), id: id.into(), version: None }).await
    }

    pub async fn search(&self, partition: &str, query: &SqlQuery) -> Result<SearchResult, AppError> {
        self.call(partition, "/search", query).await
    }

    /// The partition of `Type/id` according to the directory.
    pub async fn locate(&self, resource_type: &str, id: &str) -> Result<Option<String>, AppError> {
        self.call(DIRECTORY, "/dir/get", &Key { resource_type: resource_type.into(), id: id.into(), version: None }).await
    }

    pub async fn register(&self, entries: Vec<(String, String, String)>) -> Result<(), AppError> {
        let _: bool = self.call(DIRECTORY, "/dir/put", &DirEntries { entries }).await?;
        Ok(())
    }

    /// Writes a planned bundle: shared partitions, then each patient partition in one
    /// atomic write, then the directory. Returns the number of resources written.
    pub async fn ingest(&self, plan: &Plan) -> Result<usize, AppError> {
        let mut count = 0;
        for partition in plan.write_order() {
            let resources: Vec<Value> = plan.partitions[partition].iter().map(|w| w.resource.clone()).collect();
            if partition.as_str() != DIRECTORY {
                count += resources.len();
            }
            self.write(partition, resources, None).await?;
        }
        self.register(plan.directory_entries()).await?;
        Ok(count)
    }
}

fn store_err(e: AppError) -> StoreError {
    StoreError(format!("{e:?}"))
}

fn parse_all(result: SearchResult) -> Result<Vec<Value>, StoreError> {
    result.resources.iter().map(|(_, r)| serde_json::from_str(r.get()).map_err(|e| StoreError(e.to_string()))).collect()
}

#[async_trait(?Send)]
impl FhirStore for Partitions<'_> {
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let partition = match resource_type {
            "Patient" => store::patient_partition(id),
            _ => match self.locate(resource_type, id).await.map_err(store_err)? {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        match self.read_in(&partition, resource_type, id, None).await.map_err(store_err)?.content {
            Some(content) => serde_json::from_str(content.get()).map(Some).map_err(|e| StoreError(e.to_string())),
            None => Ok(None),
        }
    }

    async fn list_patients(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        let mut query = search::parse("Patient", &[], false).map_err(|e| StoreError(e.to_string()))?;
        query.count = limit;
        let mut patients = parse_all(self.search(DIRECTORY, &search::to_sql(&query)).await.map_err(store_err)?)?;
        patients.sort_by_key(|p| store::patient_name(p).to_lowercase());
        Ok(patients)
    }

    async fn patient_encounters(&self, patient_id: &str, limit: usize) -> Result<Vec<Value>, StoreError> {
        let pairs = [("patient".to_owned(), patient_id.to_owned()), ("_sort".to_owned(), "-date".to_owned())];
        let mut query = search::parse("Encounter", &pairs, false).map_err(|e| StoreError(e.to_string()))?;
        query.count = limit;
        parse_all(self.search(&store::patient_partition(patient_id), &search::to_sql(&query)).await.map_err(store_err)?)
    }
}
