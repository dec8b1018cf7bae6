//! The FHIR partitions (the `FHIR` Durable Object namespace) behind platform's
//! [`Port`] (`platform::fhir::store::Partitions`), and the [`FhirStore`] port the authorization pages use.

use crate::durable::fhir_partition::{CompartmentRequest, HistoryRequest, Key, LocateRequest, RevertRequest, WriteRequest};
use crate::durable::rpc;
use crate::http::AppError;
use async_trait::async_trait;
use platform::fhir::search::{self, Search};
use platform::fhir::store::{
    self, CompartmentPage, FhirStore, HistoryPage, Page, Partitions as Port, ReadOutcome, SearchResult, WriteOutcome, Written, DIRECTORY,
};
use platform::ports::StoreError;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use worker::Env;

pub struct Partitions<'a>(pub &'a Env);

fn store_err(e: AppError) -> StoreError {
    StoreError(format!("{e:?}"))
}

impl Partitions<'_> {
    async fn call<B: Serialize, R: DeserializeOwned>(&self, partition: &str, path: &str, body: &B) -> Result<R, StoreError> {
        let stub = rpc::by_name(self.0, "FHIR", partition).map_err(store_err)?;
        match rpc::call::<B, R, Value>(&stub, path, body).await.map_err(store_err)? {
            Ok(value) => Ok(value),
            Err(other) => Err(StoreError(format!("partition {partition}{path}: {other}"))),
        }
    }
}

fn key(resource_type: &str, id: Option<&str>, version: Option<i64>) -> Key {
    Key { resource_type: resource_type.into(), id: id.unwrap_or_default().into(), version }
}

#[async_trait(?Send)]
impl Port for Partitions<'_> {
    async fn write(&self, partition: &str, resources: Vec<Value>, if_match: Option<i64>) -> Result<WriteOutcome, StoreError> {
        let last_updated: String = js_sys::Date::new_0().to_iso_string().into();
        self.call(partition, "/write", &WriteRequest { resources, last_updated, if_match }).await
    }

    async fn read(&self, partition: &str, resource_type: &str, id: &str, version: Option<i64>) -> Result<ReadOutcome, StoreError> {
        self.call(partition, if version.is_some() { "/vread" } else { "/read" }, &key(resource_type, Some(id), version)).await
    }

    async fn history(&self, partition: &str, resource_type: &str, id: Option<&str>, page: &Page) -> Result<HistoryPage, StoreError> {
        let request = HistoryRequest { resource_type: resource_type.into(), id: id.unwrap_or_default().into(), page: page.clone() };
        self.call(partition, "/history", &request).await
    }

    async fn compartment(&self, partition: &str, types: &[String], page: &Page) -> Result<CompartmentPage, StoreError> {
        self.call(partition, "/compartment", &CompartmentRequest { types: types.to_vec(), page: page.clone() }).await
    }

    async fn delete(&self, partition: &str, resource_type: &str, id: &str) -> Result<Option<i64>, StoreError> {
        self.call(partition, "/delete", &key(resource_type, Some(id), None)).await
    }

    async fn search(&self, partition: &str, query: &Search) -> Result<SearchResult, StoreError> {
        self.call(partition, "/search", &search::to_sql(query)).await
    }

    async fn locate(&self, keys: &[(String, String)]) -> Result<Vec<Option<String>>, StoreError> {
        self.call(DIRECTORY, "/dir/locate", &LocateRequest { keys: keys.to_vec() }).await
    }

    async fn revert(&self, partition: &str, written: Vec<Written>) -> Result<(), StoreError> {
        let _: bool = self.call(partition, "/revert", &RevertRequest { written }).await?;
        Ok(())
    }

    async fn register(&self, entries: Vec<(String, String, String)>) -> Result<(), StoreError> {
        let _: bool = self.call(DIRECTORY, "/dir/put", &crate::durable::fhir_partition::DirEntries { entries }).await?;
        Ok(())
    }

    async fn types_in(&self, partition: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.call(partition, "/types", &()).await.map(Some)
    }
}

fn parse_all(result: SearchResult) -> Result<Vec<Value>, StoreError> {
    result.resources.iter().map(|(_, r)| serde_json::from_str(r.get()).map_err(|e| StoreError(e.to_string()))).collect()
}

#[async_trait(?Send)]
impl FhirStore for Partitions<'_> {
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let partition = match resource_type {
            "Patient" => store::patient_partition(id),
            _ => match Port::locate(self, &[(resource_type.to_owned(), id.to_owned())]).await?.into_iter().next().flatten() {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        match Port::read(self, &partition, resource_type, id, None).await?.content {
            Some(content) => serde_json::from_str(content.get()).map(Some).map_err(|e| StoreError(e.to_string())),
            None => Ok(None),
        }
    }

    async fn list_patients(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        let mut query = search::parse("Patient", &[], false).map_err(|e| StoreError(e.to_string()))?;
        query.count = limit;
        let mut patients = parse_all(Port::search(self, DIRECTORY, &query).await?)?;
        patients.sort_by_key(|p| store::patient_name(p).to_lowercase());
        Ok(patients)
    }

    async fn patient_page(&self, query: &Search) -> Result<(Vec<Value>, i64), StoreError> {
        if query.resource_type != "Patient" {
            return Err(StoreError("patient_page searches Patients only".into()));
        }
        let result = Port::search(self, DIRECTORY, query).await?;
        let total = result.total;
        Ok((parse_all(result)?, total))
    }

    async fn patient_encounters(&self, patient_id: &str, limit: usize) -> Result<Vec<Value>, StoreError> {
        let pairs = [("patient".to_owned(), patient_id.to_owned()), ("_sort".to_owned(), "-date".to_owned())];
        let mut query = search::parse("Encounter", &pairs, false).map_err(|e| StoreError(e.to_string()))?;
        query.count = limit;
        parse_all(Port::search(self, &store::patient_partition(patient_id), &query).await?)
    }
}
