//! FHIR Bulk Data Access 2.0.0 `$export` (<https://hl7.org/fhir/uv/bulkdata/STU2/export.html>),
//! the backend-services use case: the pure rules, natively tested.
//!
//! - [`kickoff`]: the kick-off request (`[base]/$export`, `[base]/Patient/$export`,
//!   `[base]/Group/{id}/$export`, GET or POST with a `Parameters` body), its validation and
//!   its authorization, into a [`Job`].
//! - [`run`]: one batch of the background work (the Worker runs one per Durable Object alarm):
//!   every search goes through the one gate ([`super::gate`]) for the partition it reads.
//! - [`status`]: the status answers (202 with `X-Progress` / `Retry-After`, 200 with the
//!   manifest, 5xx with an OperationOutcome) and the file names.
//!
//! Authorization (decided here, documented in the README): an export takes a backend-services
//! token, i.e. `system/` scopes with neither a launch patient nor a `fhirUser`; a user or
//! patient token gets 403 (fail closed: the spec's authorization model for bulk export is
//! SMART Backend Services). Each exported type needs read and search (`.rs`, v1 `.read`) through
//! [`super::gate::usable`], and each partition's results pass the gate's filter there, so
//! granular scopes (`system/Observation.rs?category=laboratory`) are honoured. A `_type` the
//! token cannot export is refused (403) unless `Prefer: handling=lenient`, where it is left
//! out and named in the manifest's `error` file.

pub mod kickoff;
pub mod run;
pub mod status;

#[cfg(test)]
mod tests;

use crate::guard::AccessGrant;
use serde::{Deserialize, Serialize};
use smart_protocol::scopes::{Permissions, ScopeSet};
use std::collections::VecDeque;

pub use kickoff::{kick_off, parameters, KickOff};
pub use run::run_batch;
pub use status::{accepted, errors_ndjson, manifest, status, Status};

/// What an export needs on each type: read and search (a bulk export discloses what a search
/// of every resource would).
pub const EXPORT_PERMISSION: Permissions = Permissions::V1_READ;
/// Resources per search page in the background work.
pub const PAGE: usize = 100;
/// Store calls per batch (one Durable Object alarm), so one alarm stays well inside the
/// Workers limits on subrequests and time.
pub const CALLS_PER_BATCH: usize = 50;
/// A file is closed at this many resources or bytes, whichever comes first (a file is served
/// from memory in one response).
pub const FILE_MAX_RESOURCES: usize = 10_000;
pub const FILE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Patients listed from the directory per store call.
pub const PATIENT_PAGE: usize = 500;
/// How long the files of a finished export are kept (then the job deletes itself).
pub const EXPIRES_AFTER_MS: i64 = 24 * 3600 * 1000;
/// A batch that failed this many times in a row fails the export.
pub const MAX_ATTEMPTS: u32 = 3;

/// The kick-off's level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    System,
    Patient,
    Group(String),
}

/// A path below the FHIR base that belongs to bulk export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkPath {
    KickOff(Level),
    /// `[base]/bulk/{job}`: the status URL (GET) and cancellation (DELETE).
    Status(String),
    /// `[base]/bulk/{job}/{file}`: an output file.
    File(String, String),
}

impl BulkPath {
    /// Parses `rest`, the path after the FHIR base.
    pub fn parse(rest: &str) -> Option<BulkPath> {
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let id = |s: &str| crate::users::is_fhir_id(s).then(|| s.to_owned());
        match segments.as_slice() {
            ["$export"] => Some(BulkPath::KickOff(Level::System)),
            ["Patient", "$export"] => Some(BulkPath::KickOff(Level::Patient)),
            ["Group", group, "$export"] => Some(BulkPath::KickOff(Level::Group((*group).to_owned()))),
            ["bulk", job] => Some(BulkPath::Status(id(job)?)),
            ["bulk", job, file] => Some(BulkPath::File(id(job)?, (*file).to_owned())),
            _ => None,
        }
    }
}

/// One exported type: its name and the `_typeFilter` queries (OR'd; none = every resource).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypePlan {
    pub resource_type: String,
    pub filters: Vec<Vec<(String, String)>>,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    pub resource_type: String,
    pub count: usize,
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobState {
    Running,
    Done,
    Failed(String),
}

/// Where the export is: the partitions still to read, and the position in the first one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The next page of the directory's patients to list, while some remain.
    pub directory_offset: Option<usize>,
    /// The last patient id listed (keyset paging by id).
    #[serde(default)]
    pub directory_after: Option<String>,
    pub partitions: VecDeque<String>,
    /// Index into the types that apply to the first partition.
    pub type_index: usize,
    /// The last id read of the current type (keyset paging by id).
    #[serde(default)]
    pub after: Option<String>,
    /// The types the first partition holds, once asked (`None`: the store cannot tell).
    #[serde(default)]
    pub present: Option<Vec<String>>,
    #[serde(default)]
    pub asked_types: bool,
    pub partitions_done: usize,
    /// Partitions known so far (the directory's patient total once it was listed).
    pub partitions_known: usize,
}

/// An export job: what was asked, by whom, and how far it got. Stored as JSON by the job's
/// Durable Object; the same value runs natively in the tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub client_id: String,
    /// The token's scopes at kick-off: the background work acts with them.
    pub scope: String,
    /// The kick-off URL (the manifest's `request`).
    pub request: String,
    /// The FHIR base the file URLs are under.
    pub base: String,
    pub transaction_time: String,
    pub level: Level,
    pub types: Vec<TypePlan>,
    pub since: Option<String>,
    pub state: JobState,
    pub cursor: Cursor,
    pub files: Vec<OutputFile>,
    /// Problems to report in the manifest's `error` file (one OperationOutcome each).
    pub errors: Vec<String>,
    #[serde(default)]
    pub attempts: u32,
}

impl Job {
    /// The grant the background work acts with: the kick-off token's client and scopes,
    /// without patient or user context (kick-off refused any other).
    pub fn grant(&self) -> AccessGrant {
        AccessGrant::service(&self.client_id, ScopeSet::parse(&self.scope).unwrap_or_default())
    }

    /// Whether `grant` may see this job (its status, files, cancellation): a backend-services
    /// token of the client that started it whose scopes cover the kick-off's (a narrower
    /// token of the same client, or a patient's, sees nothing: review finding 5).
    pub fn belongs_to(&self, grant: &AccessGrant) -> bool {
        grant.client_id == self.client_id && kickoff::is_backend(grant) && grant.scope.covers_all(&self.grant().scope)
    }

    /// The name of output file `n` (its URL is `{base}/bulk/{job}/{name}`).
    pub fn file_name(&self, n: usize) -> String {
        format!("{}-{n}.ndjson", self.files.get(n).map_or("file", |f| f.resource_type.as_str()))
    }

    /// The index of the file called `name`, if there is one.
    pub fn file_index(&self, name: &str) -> Option<usize> {
        (0..self.files.len()).find(|n| self.file_name(*n) == name)
    }

    /// The status URL (the kick-off's `Content-Location`).
    pub fn status_url(&self) -> String {
        format!("{}/bulk/{}", self.base, self.id)
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/bulk/{}/{name}", self.base, self.id)
    }
}

/// The name of the errors file (OperationOutcome NDJSON, built from [`Job::errors`]).
pub const ERRORS_FILE: &str = "errors.ndjson";

/// Resource types that belong to patients (the Patient and its compartment).
pub fn is_patient_data(resource_type: &str) -> bool {
    super::params::in_patient_compartment(resource_type)
}

/// Every resource type served.
pub fn served_types() -> Vec<&'static str> {
    super::params::RESOURCE_TYPES.iter().copied().filter(|t| super::params::is_served(t)).collect()
}
