//! [`FhirStore`] over the `FHIR` Durable Object namespace, one object per partition.

use crate::durable::fhir_partition::{GetRequest, ListRequest, PutRequest};
use crate::durable::rpc;
use async_trait::async_trait;
use platform::fhir::store::{self, FhirStore, DIRECTORY};
use platform::ports::StoreError;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use worker::Env;

pub struct DoFhirStore<'a>(pub &'a Env);

impl DoFhirStore<'_> {
    async fn call<B: Serialize, R: DeserializeOwned>(&self, partition: &str, path: &str, body: &B) -> Result<R, StoreError> {
        let err = |e: crate::http::AppError| StoreError(format!("{e:?}"));
        let stub = rpc::by_name(self.0, "FHIR", partition).map_err(err)?;
        match rpc::call::<B, R, Value>(&stub, path, body).await.map_err(err)? {
            Ok(value) => Ok(value),
            Err(other) => Err(StoreError(format!("partition {partition}: {other}"))),
        }
    }
}

#[async_trait(?Send)]
impl FhirStore for DoFhirStore<'_> {
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let partition = match resource_type {
            "Patient" => store::patient_partition(id),
            _ => return Ok(None),
        };
        self.call(&partition, "/get", &GetRequest { resource_type: resource_type.into(), id: id.into() }).await
    }

    async fn list_patients(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        let request = ListRequest { resource_type: "Patient".into(), limit: limit as u32, descending: false };
        self.call(DIRECTORY, "/list", &request).await
    }

    async fn patient_encounters(&self, patient_id: &str, limit: usize) -> Result<Vec<Value>, StoreError> {
        let request = ListRequest { resource_type: "Encounter".into(), limit: limit as u32, descending: true };
        self.call(&store::patient_partition(patient_id), "/list", &request).await
    }

    async fn upsert(&self, resource: &Value) -> Result<(), StoreError> {
        let partitions = store::partitions_for(resource).ok_or_else(|| StoreError("resource has no partition yet".into()))?;
        let last_updated: String = js_sys::Date::new_0().to_iso_string().into();
        for partition in partitions {
            let put = PutRequest { resource: resource.clone(), sort_key: store::sort_key(resource), last_updated: last_updated.clone() };
            let _version: i64 = self.call(&partition, "/put", &put).await?;
        }
        Ok(())
    }
}
