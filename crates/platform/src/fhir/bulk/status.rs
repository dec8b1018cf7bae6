//! The status request and the manifest (Bulk Data 2.0.0 §"Bulk Data Status Request",
//! <https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request>).

use super::{Job, JobState, ERRORS_FILE};
use crate::fhir::outcome::{self, IssueType};
use serde_json::{json, Value};

/// What the status URL answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// 202, with `X-Progress` and `Retry-After` (seconds).
    InProgress { progress: String, retry_after: u32 },
    /// 200, the manifest JSON.
    Complete(Value),
    /// 500, an OperationOutcome.
    Failed(Value),
}

/// The status of `job`.
pub fn status(job: &Job) -> Status {
    match &job.state {
        JobState::Running => {
            let c = &job.cursor;
            let known = c.partitions_known.max(c.partitions_done);
            let percent = (c.partitions_done * 100).checked_div(known).unwrap_or(0);
            let resources: usize = job.files.iter().map(|f| f.count).sum();
            Status::InProgress { progress: format!("{percent}% ({} of {known} partitions, {resources} resources)", c.partitions_done), retry_after: 1 }
        }
        JobState::Done => Status::Complete(manifest(job)),
        JobState::Failed(why) => Status::Failed(outcome::error(IssueType::Exception, &format!("the export failed: {why}"))),
    }
}

/// The manifest of a finished export: one `output` entry per file (`count` = its resources),
/// and the `error` file when something was left out.
pub fn manifest(job: &Job) -> Value {
    let output: Vec<Value> =
        job.files.iter().enumerate().map(|(n, f)| json!({"type": f.resource_type, "url": job.url(&job.file_name(n)), "count": f.count})).collect();
    let error: Vec<Value> =
        if job.errors.is_empty() { Vec::new() } else { vec![json!({"type": "OperationOutcome", "url": job.url(ERRORS_FILE), "count": job.errors.len()})] };
    json!({
        "transactionTime": job.transaction_time,
        "request": job.request,
        "requiresAccessToken": true,
        "output": output,
        "deleted": [],
        "error": error,
    })
}

/// The errors file: one OperationOutcome per problem, as NDJSON.
pub fn errors_ndjson(job: &Job) -> String {
    job.errors
        .iter()
        .map(|message| {
            let outcome = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "not-supported", "diagnostics": message}]});
            format!("{outcome}\n")
        })
        .collect()
}
