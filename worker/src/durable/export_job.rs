//! One Bulk Data `$export` job (`platform::fhir::bulk`): a SQLite-backed Durable Object per
//! job, named by the job id. Its alarm runs the export in batches (one
//! `platform::fhir::bulk::run_batch` per alarm, then the next alarm at once), so the kick-off
//! and every status request answer immediately while the work goes on in the background.
//!
//! Where the output lives: in this object's own SQLite storage (`chunk` rows of at most
//! ~1 MiB, well under the 2 MB row limit), not in R2. Why: nothing to provision or bind
//! beyond the class's migration (the same deploy as every other object; R2 needs a bucket
//! created per account and a binding), the files go with the job (one `deleteAll()` at
//! cancellation or expiry removes both atomically), and the Worker serves them behind the
//! token that started the export without signed URLs. The cost: a Durable Object holds at most
//! 10 GB (SQLite-backed, paid plan), and rows written/read are billed per row (a row holds
//! up to a page of resources, so ~1 row per 100 resources). An export larger than that should
//! go to R2; the platform code does not change (only this adapter would).
//!
//! Tables: `cell` (the [`Job`] as JSON, see [`super::JsonCell`]) and `chunk` (file, seq, body).

use super::rpc::{self, Answer};
use super::JsonCell;
use crate::adapters::fhir_store::Partitions;
use platform::fhir::bulk::{self, Job, JobState};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State, Storage};

/// The largest chunk row (bytes).
const CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Serialize, Deserialize)]
pub struct FileRequest {
    pub file: usize,
}

#[derive(Deserialize)]
struct BodyRow {
    body: String,
}

/// Migrates the object (`platform::schema::EXPORT_JOB`: `cell` and `chunk`) and opens its cell.
fn open(storage: &Storage) -> Result<JsonCell> {
    JsonCell::open(storage, &platform::schema::EXPORT_JOB)
}

#[derive(Deserialize)]
struct CountRow {
    n: i64,
}

/// Whether this object holds a job (its tables exist).
fn exists(sql: &SqlStorage) -> Result<bool> {
    let rows: Vec<CountRow> = sql.exec("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'cell'", None)?.to_array()?;
    Ok(rows.first().is_some_and(|r| r.n > 0))
}

/// Appends `ndjson` (whole lines) to `file`, in rows of at most [`CHUNK_BYTES`] (a longer
/// single line gets a row of its own: a resource is at most 1 MiB).
fn append(sql: &SqlStorage, file: usize, ndjson: &str) -> Result<()> {
    let mut start = 0;
    while start < ndjson.len() {
        let mut end = start;
        for line in ndjson[start..].split_inclusive('\n') {
            if end > start && end - start + line.len() > CHUNK_BYTES {
                break;
            }
            end += line.len();
        }
        sql.exec("INSERT INTO chunk (file, body) VALUES (?, ?)", vec![(file as i64).into(), ndjson[start..end].into()])?;
        start = end;
    }
    Ok(())
}

#[durable_object]
pub struct ExportJob {
    state: State,
    env: Env,
}

impl ExportJob {
    async fn erase(&self) -> Result<()> {
        let storage = self.state.storage();
        storage.delete_alarm().await?;
        storage.delete_all().await
    }
}

impl DurableObject for ExportJob {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        rpc::serve_fetch(self, req).await
    }

    async fn alarm(&self) -> Result<Response> {
        let sql = self.state.storage().sql();
        let cell = open(&self.state.storage())?;
        let Some(mut job) = cell.load::<Job>()? else { return Response::ok("") };
        if job.state != JobState::Running {
            // A finished export's files have expired.
            self.erase().await?;
            return Response::ok("");
        }
        let result = bulk::run_batch(&Partitions(&self.env), &mut job).await;
        // Cancelled while the batch read the partitions: drop what it read.
        if cell.load::<Job>()?.is_none() {
            return Response::ok("");
        }
        let next = match result {
            Ok(pieces) => {
                for piece in pieces {
                    append(&sql, piece.file, &piece.ndjson)?;
                }
                if job.state == JobState::Running {
                    0
                } else {
                    bulk::EXPIRES_AFTER_MS
                }
            }
            Err(e) => {
                job.attempts += 1;
                if job.attempts >= bulk::MAX_ATTEMPTS {
                    job.state = JobState::Failed(e.0);
                    bulk::EXPIRES_AFTER_MS
                } else {
                    1000 * i64::from(job.attempts)
                }
            }
        };
        cell.store(&job)?;
        self.state.storage().set_alarm(next).await?;
        Response::ok("")
    }
}

impl rpc::Commands for ExportJob {
    async fn command(&self, path: &str, body: String) -> Result<Answer> {
        let sql = self.state.storage().sql();
        if path != "/start" && !exists(&sql)? {
            // No job by this id: answer without creating storage for it.
            return Answer::json(&None::<Job>);
        }
        let cell = open(&self.state.storage())?;
        match path {
            "/start" => {
                let job: Job = rpc::parse(&body)?;
                if cell.load::<Job>()?.is_some() {
                    return Answer::refused("a job with this id exists");
                }
                cell.store(&job)?;
                self.state.storage().set_alarm(0).await?;
                Answer::json(&true)
            }
            "/job" => Answer::json(&cell.load::<Job>()?),
            "/cancel" => {
                self.erase().await?;
                Answer::json(&true)
            }
            // The file's NDJSON as it is (not JSON).
            "/file" => {
                let request: FileRequest = rpc::parse(&body)?;
                let rows: Vec<BodyRow> = sql.exec("SELECT body FROM chunk WHERE file = ? ORDER BY seq", vec![(request.file as i64).into()])?.to_array()?;
                let mut text = String::with_capacity(rows.iter().map(|r| r.body.len()).sum());
                for row in rows {
                    text.push_str(&row.body);
                }
                Ok(Answer::Done(text))
            }
            _ => Err(worker::Error::RustError(format!("unknown export operation {path}"))),
        }
    }
}

crate::rpc_methods!(ExportJob);
