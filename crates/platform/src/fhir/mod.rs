//! FHIR R4 resource-server pieces: the CapabilityStatement, OperationOutcome, the store port
//! and bundle ingestion.

pub mod access;
pub mod api;
pub mod bulk;
pub mod capability;
pub mod fhirpath;
pub mod gate;
pub mod ingest;
pub mod memory;
pub mod outcome;
pub mod params;
pub mod partition;
pub mod rest;
pub mod search;
pub mod store;
pub mod validate;

/// The media type of FHIR JSON (R4 §3.1.0.4.1).
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
