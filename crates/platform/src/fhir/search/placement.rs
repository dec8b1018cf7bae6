//! Which partition a search runs in.

use super::super::params;
use super::super::partition::{patient_partition, shared_partition, DIRECTORY};
use super::query::{Clause, Search};

/// The patient a search is about, from its `patient` / `subject` parameter (one value).
pub fn patient_of(search: &Search) -> Option<String> {
    search.clauses.iter().find_map(|c| match c {
        Clause::Reference { name, any_of } if (name == "patient" || name == "subject") && any_of.len() == 1 => {
            any_of[0].strip_prefix("Patient/").map(str::to_owned)
        }
        _ => None,
    })
}

/// Where a search runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Partition(String),
    /// The search asks for another patient than the one the token is confined to.
    Empty,
    /// A search of patient data across every patient, which this server does not run.
    NeedsPatient,
}

/// The partition a search runs in, given the patient the caller is confined to (if any): a
/// patient-scoped search touches exactly one partition.
pub fn target(search: &Search, confined_to: Option<&str>) -> Target {
    let asked = patient_of(search);
    let t = search.resource_type.as_str();
    if t == "Patient" {
        return match confined_to {
            Some(p) => Target::Partition(patient_partition(p)),
            None => Target::Partition(DIRECTORY.to_owned()),
        };
    }
    if params::compartment_params(t).is_none() {
        return Target::Partition(shared_partition(t));
    }
    match (confined_to, asked) {
        (Some(p), Some(a)) if a != p => Target::Empty,
        (Some(p), _) => Target::Partition(patient_partition(p)),
        (None, Some(a)) => Target::Partition(patient_partition(&a)),
        (None, None) => Target::NeedsPatient,
    }
}

/// Most partitions a search without patient context fans out to.
pub const MAX_FANOUT: usize = 200;
