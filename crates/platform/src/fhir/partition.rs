//! The names of the partitions FHIR data lives in (one SQLite Durable Object each): a
//! patient's compartment, one per shared resource type, and the directory. Below both the
//! store and search, which each need them.

/// Name of the partition that maps `Type/id` to partitions and lists every patient.
pub const DIRECTORY: &str = "directory";

/// A patient's compartment.
pub fn patient_partition(patient_id: &str) -> String {
    format!("patient/{patient_id}")
}

/// Resources of `resource_type` that belong to no patient.
pub fn shared_partition(resource_type: &str) -> String {
    format!("shared/{resource_type}")
}
