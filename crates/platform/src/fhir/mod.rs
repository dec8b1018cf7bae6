//! FHIR R4 resource-server pieces. So far: the CapabilityStatement and OperationOutcome.

pub mod capability;
pub mod outcome;

/// The media type of FHIR JSON (R4 §3.1.0.4.1).
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
