//! The pickers' store in memory: patients and their encounters, as the FHIR directory and
//! the patient partitions answer the sign-in pages. The rest of the sign-in's ports are
//! [`crate::oauth::memory`]'s ([`crate::oauth::memory::MemoryAuthServer::signin_ports`]).

use crate::fhir::search::Search;
use crate::fhir::store::{patient_name, FhirStore};
use crate::ports::StoreError;
use async_trait::async_trait;
use serde_json::Value;
use std::cell::RefCell;

/// Patients by id, and each patient's encounters (newest first).
#[derive(Debug, Default)]
pub struct MemoryPatients {
    patients: RefCell<Vec<Value>>,
    encounters: RefCell<Vec<(String, Value)>>,
}

impl MemoryPatients {
    /// A Patient resource (it must have an `id`).
    pub fn add_patient(&self, patient: Value) {
        self.patients.borrow_mut().push(patient);
    }

    /// An Encounter of `patient_id`; later ones are newer.
    pub fn add_encounter(&self, patient_id: &str, encounter: Value) {
        self.encounters.borrow_mut().insert(0, (patient_id.to_owned(), encounter));
    }
}

#[async_trait(?Send)]
impl FhirStore for MemoryPatients {
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let found = |r: &&Value| r["id"].as_str() == Some(id);
        Ok(match resource_type {
            "Patient" => self.patients.borrow().iter().find(found).cloned(),
            "Encounter" => self.encounters.borrow().iter().map(|(_, e)| e).find(found).cloned(),
            _ => None,
        })
    }

    async fn list_patients(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        let mut patients = self.patients.borrow().clone();
        patients.sort_by_key(patient_name);
        patients.truncate(limit);
        Ok(patients)
    }

    async fn patient_page(&self, _query: &Search) -> Result<(Vec<Value>, i64), StoreError> {
        let patients = self.list_patients(usize::MAX).await?;
        let total = patients.len() as i64;
        Ok((patients, total))
    }

    async fn patient_encounters(&self, patient_id: &str, limit: usize) -> Result<Vec<Value>, StoreError> {
        Ok(self.encounters.borrow().iter().filter(|(p, _)| p == patient_id).map(|(_, e)| e.clone()).take(limit).collect())
    }
}
