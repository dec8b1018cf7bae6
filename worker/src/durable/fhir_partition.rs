//! A FHIR storage partition: one SQLite-backed Durable Object per patient compartment, one per
//! shared type, and the directory (see `platform::fhir::store`). Tables:
//! - `res`: the current version of each resource (a deleted one is kept as a tombstone);
//! - `hist`: every version, for vread and history;
//! - `idx`: the search index rows of current versions (`platform::fhir::search::index`);
//! - `dir` (directory only): `Type/id` → partition.
//!
//! One request's writes run without an await in between, so they commit together; when one of
//! them fails (a value over SQLite's 2 MB, say), the request's earlier ones are reverted before
//! the error is answered: a transaction's entries for one partition are all stored or none. `/revert` undoes versions
//! a transaction wrote here when a later partition of it failed (see `platform::fhir::api`'s
//! bundle module).

use super::rpc::{self, Answer};
use super::schema;
use crate::keyring::now_secs;
use platform::fhir::search::{self, SqlQuery, SqlValue};
use platform::fhir::store::DIRECTORY;
use platform::fhir::store::{CompartmentPage, HistoryPage, Page, ReadOutcome, ReadStatus, SearchResult, Version, WriteOutcome, Written};
use platform::schema::{index_version, ReindexJob, JOB_PARTITIONS_PER_STEP, REINDEX_BATCH};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue, State, Storage};

#[derive(Serialize, Deserialize)]
pub struct WriteRequest {
    pub resources: Vec<Value>,
    pub last_updated: String,
    /// `If-Match`: the version the single resource must currently have.
    #[serde(default)]
    pub if_match: Option<i64>,
}

#[derive(Serialize, Deserialize)]
pub struct RevertRequest {
    pub written: Vec<Written>,
}

#[derive(Serialize, Deserialize)]
pub struct Key {
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Empty for a type's history.
    pub id: String,
    #[serde(default)]
    pub version: Option<i64>,
}

/// A page of a history (`id` empty: the type's).
#[derive(Serialize, Deserialize)]
pub struct HistoryRequest {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub id: String,
    pub page: Page,
}

/// A page of the current resources of some types (`$everything`).
#[derive(Serialize, Deserialize)]
pub struct CompartmentRequest {
    pub types: Vec<String>,
    pub page: Page,
}

#[derive(Deserialize)]
struct TypedContentRow {
    #[serde(rename = "type")]
    resource_type: String,
    id: String,
    content: String,
}

#[derive(Serialize, Deserialize)]
pub struct LocateRequest {
    pub keys: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct IdContentRow {
    id: String,
    content: String,
}

#[derive(Serialize, Deserialize)]
pub struct DirEntries {
    pub entries: Vec<(String, String, String)>,
}

#[derive(Deserialize)]
struct VersionRow {
    version: i64,
    deleted: i64,
}

#[derive(Deserialize)]
struct ContentRow {
    content: String,
    version: i64,
    last_updated: String,
    deleted: i64,
}

#[derive(Deserialize)]
struct PartitionRow {
    partition: String,
}

#[derive(Deserialize)]
struct TypeRow {
    r#type: String,
}

#[derive(Deserialize)]
struct CountRow {
    n: i64,
}

/// Migrates the partition (`platform::schema::FHIR_PARTITION`); the tables are then there.
fn open(storage: &Storage) -> Result<()> {
    schema::migrate(storage, &platform::schema::FHIR_PARTITION)
}

/// `meta` keys: the index version the `idx` rows were built with, the re-index cursor
/// (`{target version} {last res rowid done}`), and the re-index job (directory only).
const INDEX_VERSION: &str = "index_version";
const REINDEX_CURSOR: &str = "reindex_cursor";
const REINDEX_JOB: &str = "reindex_job";

#[derive(Deserialize)]
struct MetaRow {
    v: String,
}

fn meta_get(sql: &SqlStorage, k: &str) -> Result<Option<String>> {
    let rows: Vec<MetaRow> = sql.exec("SELECT v FROM meta WHERE k = ?", vec![k.into()])?.to_array()?;
    Ok(rows.into_iter().next().map(|r| r.v))
}

fn meta_put(sql: &SqlStorage, k: &str, v: &str) -> Result<()> {
    sql.exec("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", vec![k.into(), v.into()])?;
    Ok(())
}

#[derive(Deserialize)]
struct ReindexRow {
    r: i64,
    #[serde(rename = "type")]
    resource_type: String,
    id: String,
    deleted: i64,
    content: String,
}

/// Whether the partition's index rows are those of this release's [`index_version`].
fn index_current(sql: &SqlStorage) -> Result<bool> {
    Ok(meta_get(sql, INDEX_VERSION)?.as_deref() == Some(index_version().as_str()))
}

/// One step of re-indexing: the index rows of the next [`REINDEX_BATCH`] resources (in
/// `res` rowid order, after the cursor), and the cursor, in one transaction; when no resource
/// is left the index version is recorded. Returns whether the index is current.
fn reindex_step(storage: &Storage) -> Result<bool> {
    let sql = storage.sql();
    if index_current(&sql)? {
        return Ok(true);
    }
    schema::transaction(storage, move || {
        let target = index_version();
        // A cursor left by a re-index to another version does not count.
        let after = meta_get(&sql, REINDEX_CURSOR)?.and_then(|c| c.strip_prefix(&format!("{target} ")).and_then(|n| n.parse::<i64>().ok())).unwrap_or(0);
        let rows: Vec<ReindexRow> = sql
            .exec(
                "SELECT rowid AS r, type, id, deleted, content FROM res WHERE rowid > ? ORDER BY rowid LIMIT ?",
                vec![after.into(), (REINDEX_BATCH as i64).into()],
            )?
            .to_array()?;
        for row in &rows {
            let resource: Option<Value> = if row.deleted == 0 { Some(serde_json::from_str(&row.content)?) } else { None };
            reindex(&sql, &row.resource_type, &row.id, resource.as_ref())?;
        }
        match rows.last() {
            Some(last) if rows.len() == REINDEX_BATCH => {
                meta_put(&sql, REINDEX_CURSOR, &format!("{target} {}", last.r))?;
                Ok(false)
            }
            _ => {
                sql.exec("DELETE FROM meta WHERE k = ?", vec![REINDEX_CURSOR.into()])?;
                meta_put(&sql, INDEX_VERSION, &target)?;
                Ok(true)
            }
        }
    })
}

/// Brings the index to the current version: all of it (`complete`, before a search, whose
/// answer depends on it), or one bounded step (any other request: the re-index advances
/// lazily, and the background job finishes it).
fn ensure_index(storage: &Storage, complete: bool) -> Result<()> {
    while !reindex_step(storage)? && complete {}
    Ok(())
}

/// The directory's answer to `/reindex/status`.
#[derive(Serialize, Deserialize)]
pub struct ReindexStatus {
    pub index_version: String,
    pub job: Option<ReindexJob>,
}

fn load_job(sql: &SqlStorage) -> Result<Option<ReindexJob>> {
    meta_get(sql, REINDEX_JOB)?.map(|j| serde_json::from_str(&j).map_err(|e| worker::Error::RustError(e.to_string()))).transpose()
}

fn store_job(sql: &SqlStorage, job: &ReindexJob) -> Result<()> {
    meta_put(sql, REINDEX_JOB, &serde_json::to_string(job)?)
}

/// The partitions the job visits, in name order after `after`: the directory itself and every
/// partition the directory records.
const PARTITIONS_AFTER: &str = "SELECT p FROM (SELECT ?1 AS p UNION SELECT DISTINCT partition FROM dir) WHERE p > ?2 ORDER BY p LIMIT ?3";

#[derive(Deserialize)]
struct NameRow {
    p: String,
}

fn text(v: &Option<String>) -> SqlStorageValue {
    v.clone().map_or(SqlStorageValue::Null, SqlStorageValue::String)
}

fn bind(values: &[SqlValue]) -> Vec<SqlStorageValue> {
    values
        .iter()
        .map(|v| match v {
            SqlValue::Text(s) => SqlStorageValue::String(s.clone()),
            SqlValue::Real(f) => SqlStorageValue::Float(*f),
            SqlValue::Int(i) => SqlStorageValue::Integer(*i),
        })
        .collect()
}

fn raw(content: String) -> Result<Box<RawValue>> {
    RawValue::from_string(content).map_err(|e| worker::Error::RustError(e.to_string()))
}

/// Writes one resource (a new version of it), with its history row and index rows.
fn write_one(sql: &SqlStorage, mut resource: Value, last_updated: &str, deleted: bool) -> Result<(Written, String)> {
    let resource_type = resource["resourceType"].as_str().unwrap_or_default().to_owned();
    let id = resource["id"].as_str().unwrap_or_default().to_owned();
    let current: Vec<VersionRow> =
        sql.exec("SELECT version, deleted FROM res WHERE type = ? AND id = ?", vec![resource_type.clone().into(), id.clone().into()])?.to_array()?;
    let version = current.first().map_or(1, |r| r.version + 1);
    let created = current.first().is_none_or(|r| r.deleted == 1);
    resource["meta"] = match resource.get("meta").cloned() {
        Some(Value::Object(mut meta)) => {
            meta.insert("versionId".into(), Value::String(version.to_string()));
            meta.insert("lastUpdated".into(), Value::String(last_updated.to_owned()));
            Value::Object(meta)
        }
        _ => serde_json::json!({ "versionId": version.to_string(), "lastUpdated": last_updated }),
    };
    let content = serde_json::to_string(&resource)?;
    let deleted_flag = i64::from(deleted);
    sql.exec(
        "INSERT INTO res (type, id, version, last_updated, deleted, content) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated, deleted = excluded.deleted, content = excluded.content",
        vec![resource_type.clone().into(), id.clone().into(), version.into(), last_updated.into(), deleted_flag.into(), content.clone().into()],
    )?;
    sql.exec(
        "INSERT INTO hist (type, id, version, last_updated, deleted, content) VALUES (?, ?, ?, ?, ?, ?)",
        vec![resource_type.clone().into(), id.clone().into(), version.into(), last_updated.into(), deleted_flag.into(), content.clone().into()],
    )?;
    reindex(sql, &resource_type, &id, (!deleted).then_some(&resource))?;
    Ok((Written { reference: format!("{resource_type}/{id}"), version, created, last_updated: last_updated.to_owned() }, content))
}

/// Replaces the index rows of `Type/id` with those of `resource` (none for a deleted one).
fn reindex(sql: &SqlStorage, resource_type: &str, id: &str, resource: Option<&Value>) -> Result<()> {
    sql.exec("DELETE FROM idx WHERE type = ? AND id = ?", vec![resource_type.into(), id.into()])?;
    if let Some(resource) = resource {
        for row in search::index(resource) {
            sql.exec(
                "INSERT INTO idx (type, id, name, sys, code, text, date_lo, date_hi, num, reference) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    resource_type.into(),
                    id.into(),
                    row.name.into(),
                    text(&row.sys),
                    text(&row.code),
                    text(&row.text),
                    text(&row.date_lo),
                    text(&row.date_hi),
                    row.num.map_or(SqlStorageValue::Null, SqlStorageValue::Float),
                    text(&row.reference),
                ],
            )?;
        }
    }
    Ok(())
}

/// Undoes one version written here: when `Type/id` is still at `version`, that version goes
/// and the one before becomes current again (or the resource is forgotten).
fn revert_one(sql: &SqlStorage, written: &Written) -> Result<()> {
    let Some((resource_type, id)) = written.reference.split_once('/') else { return Ok(()) };
    let key = || vec![SqlStorageValue::from(resource_type), SqlStorageValue::from(id)];
    let current: Vec<VersionRow> = sql.exec("SELECT version, deleted FROM res WHERE type = ? AND id = ?", key())?.to_array()?;
    if current.first().map(|r| r.version) != Some(written.version) {
        return Ok(());
    }
    sql.exec("DELETE FROM hist WHERE type = ? AND id = ? AND version = ?", [key(), vec![written.version.into()]].concat())?;
    let previous: Vec<ContentRow> =
        sql.exec("SELECT content, version, last_updated, deleted FROM hist WHERE type = ? AND id = ? ORDER BY version DESC LIMIT 1", key())?.to_array()?;
    match previous.into_iter().next() {
        Some(row) => {
            sql.exec(
                "UPDATE res SET version = ?, last_updated = ?, deleted = ?, content = ? WHERE type = ? AND id = ?",
                [vec![row.version.into(), row.last_updated.clone().into(), row.deleted.into(), row.content.clone().into()], key()].concat(),
            )?;
            let resource: Value = serde_json::from_str(&row.content)?;
            reindex(sql, resource_type, id, (row.deleted == 0).then_some(&resource))
        }
        None => {
            sql.exec("DELETE FROM res WHERE type = ? AND id = ?", key())?;
            reindex(sql, resource_type, id, None)
        }
    }
}

/// Backup and restore (`platform::backup`): pages of the stored versions and of the directory,
/// read without creating tables in a partition never written; a restore writes versions as
/// they were stored and rebuilds `res` and `idx` from them.
pub mod backup {
    use super::{reindex, rpc, Answer, CountRow};
    use platform::backup::StoredVersion;
    use serde::{Deserialize, Serialize};
    use serde_json::Value;
    use std::collections::BTreeSet;
    use worker::{Result, SqlStorage};

    #[derive(Serialize, Deserialize)]
    pub struct VersionsPage {
        pub after: Option<(String, String, i64)>,
        pub limit: usize,
    }

    #[derive(Serialize, Deserialize)]
    pub struct DirPage {
        pub after: Option<(String, String)>,
        pub limit: usize,
    }

    #[derive(Serialize, Deserialize)]
    pub struct NextPartition {
        pub after: String,
    }

    #[derive(Serialize, Deserialize)]
    pub struct RestoreVersions {
        pub versions: Vec<StoredVersion>,
    }

    #[derive(Deserialize)]
    struct HistRow {
        #[serde(rename = "type")]
        resource_type: String,
        id: String,
        version: i64,
        last_updated: String,
        deleted: i64,
        content: String,
    }

    #[derive(Deserialize)]
    struct DirRow {
        #[serde(rename = "type")]
        resource_type: String,
        id: String,
        partition: String,
    }

    fn has_table(sql: &SqlStorage, name: &str) -> Result<bool> {
        let rows: Vec<CountRow> = sql.exec("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?", vec![name.into()])?.to_array()?;
        Ok(rows.first().is_some_and(|r| r.n > 0))
    }

    fn count(sql: &SqlStorage, table: &str) -> Result<i64> {
        if !has_table(sql, table)? {
            return Ok(0);
        }
        let rows: Vec<CountRow> = sql.exec(&format!("SELECT COUNT(*) AS n FROM {table}"), None)?.to_array()?;
        Ok(rows.first().map_or(0, |r| r.n))
    }

    pub fn read(sql: &SqlStorage, path: &str, body: &str) -> Result<Answer> {
        match path {
            // Every stored version, in (type, id, version) order, after the cursor.
            "versions" => {
                let page: VersionsPage = rpc::parse(body)?;
                if !has_table(sql, "hist")? {
                    return Answer::json(&Vec::<StoredVersion>::new());
                }
                let (t, id, v) = page.after.unwrap_or_default();
                let rows: Vec<HistRow> = sql
                    .exec(
                        "SELECT type, id, version, last_updated, deleted, content FROM hist WHERE (type, id, version) > (?, ?, ?) ORDER BY type, id, version LIMIT ?",
                        vec![t.into(), id.into(), v.into(), (page.limit as i64).into()],
                    )?
                    .to_array()?;
                let versions = rows
                    .into_iter()
                    .map(|r| {
                        Ok(StoredVersion {
                            resource_type: r.resource_type,
                            id: r.id,
                            version: r.version,
                            last_updated: r.last_updated,
                            deleted: r.deleted == 1,
                            content: super::raw(r.content)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Answer::json(&versions)
            }
            // Directory entries in (type, id) order, after the cursor.
            "dir" => {
                let page: DirPage = rpc::parse(body)?;
                if !has_table(sql, "dir")? {
                    return Answer::json(&Vec::<(String, String, String)>::new());
                }
                let (t, id) = page.after.unwrap_or_default();
                let rows: Vec<DirRow> = sql
                    .exec(
                        "SELECT type, id, partition FROM dir WHERE (type, id) > (?, ?) ORDER BY type, id LIMIT ?",
                        vec![t.into(), id.into(), (page.limit as i64).into()],
                    )?
                    .to_array()?;
                Answer::json(&rows.into_iter().map(|r| (r.resource_type, r.id, r.partition)).collect::<Vec<_>>())
            }
            // The first partition named in the directory after `after`.
            "next-partition" => {
                let request: NextPartition = rpc::parse(body)?;
                if !has_table(sql, "dir")? {
                    return Answer::json(&None::<String>);
                }
                #[derive(Deserialize)]
                struct Row {
                    partition: String,
                }
                // `dir_partition` (schema v3) makes each step O(log n), not a scan.
                let rows: Vec<Row> = sql
                    .exec("SELECT partition FROM dir WHERE partition > ? AND partition <> 'directory' ORDER BY partition LIMIT 1", vec![request.after.into()])?
                    .to_array()?;
                Answer::json(&rows.into_iter().next().map(|r| r.partition))
            }
            // Whether this partition holds nothing (no resource, no directory entry).
            "empty" => Answer::json(&(count(sql, "res")? == 0 && count(sql, "dir")? == 0)),
            _ => Err(worker::Error::RustError(format!("unknown partition backup operation {path}"))),
        }
    }

    /// Stores each version as it was (same `versionId`, `lastUpdated`, content), then makes
    /// the newest stored version of each touched resource its current one and re-indexes it.
    /// Idempotent: a retried page writes the same rows again.
    pub fn restore_versions(sql: &SqlStorage, versions: Vec<StoredVersion>) -> Result<usize> {
        let mut touched = BTreeSet::new();
        let stored = versions.len();
        for v in versions {
            sql.exec(
                "INSERT INTO hist (type, id, version, last_updated, deleted, content) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (type, id, version) DO UPDATE SET last_updated = excluded.last_updated, deleted = excluded.deleted, content = excluded.content",
                vec![
                    v.resource_type.clone().into(),
                    v.id.clone().into(),
                    v.version.into(),
                    v.last_updated.into(),
                    i64::from(v.deleted).into(),
                    v.content.get().to_owned().into(),
                ],
            )?;
            touched.insert((v.resource_type, v.id));
        }
        for (t, id) in touched {
            let rows: Vec<HistRow> = sql
                .exec(
                    "SELECT type, id, version, last_updated, deleted, content FROM hist WHERE type = ? AND id = ? ORDER BY version DESC LIMIT 1",
                    vec![t.clone().into(), id.clone().into()],
                )?
                .to_array()?;
            let Some(row) = rows.into_iter().next() else { continue };
            sql.exec(
                "INSERT INTO res (type, id, version, last_updated, deleted, content) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated, deleted = excluded.deleted, content = excluded.content",
                vec![t.clone().into(), id.clone().into(), row.version.into(), row.last_updated.into(), row.deleted.into(), row.content.clone().into()],
            )?;
            let resource: Value = serde_json::from_str(&row.content)?;
            reindex(sql, &t, &id, (row.deleted == 0).then_some(&resource))?;
        }
        Ok(stored)
    }
}

#[durable_object]
pub struct FhirPartition {
    state: State,
    env: Env,
    /// Requests served since this instance started (read by the tests through `/stats` to
    /// prove that a patient-scoped request touches exactly one partition).
    served: std::cell::Cell<u64>,
    /// Whether this instance has migrated its storage and found its index current: both are
    /// then skipped (three reads per request otherwise).
    ready: std::cell::Cell<bool>,
}

impl DurableObject for FhirPartition {
    fn new(state: State, env: Env) -> Self {
        Self { state, env, served: std::cell::Cell::new(0), ready: std::cell::Cell::new(false) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        rpc::serve_fetch(self, req).await
    }

    /// The re-index job's steps (the directory runs it): the next few partitions, each asked
    /// to finish its re-index (the directory does its own here), then the next alarm at once.
    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        open(&storage)?;
        let sql = storage.sql();
        let Some(mut job) = load_job(&sql)? else { return Response::ok("") };
        if !job.running() {
            return Response::ok("");
        }
        let names: Vec<NameRow> =
            sql.exec(PARTITIONS_AFTER, vec![DIRECTORY.into(), job.after.clone().into(), (JOB_PARTITIONS_PER_STEP as i64).into()])?.to_array()?;
        let mut visited = Vec::with_capacity(names.len());
        let mut failure = None;
        for NameRow { p } in &names {
            let done = if p == DIRECTORY {
                ensure_index(&storage, true).map_err(|e| e.to_string())
            } else {
                match rpc::by_name(&self.env, "FHIR", p) {
                    Ok(stub) => match rpc::call::<(), String, Value>(&stub, "/reindex", &()).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(format!("{e:?}")),
                    },
                    Err(e) => Err(format!("{e:?}")),
                }
            };
            match done {
                Ok(()) => visited.push(p.clone()),
                Err(e) => {
                    failure = Some(format!("partition {p}: {e}"));
                    break;
                }
            }
        }
        // The job as stored now (a restart meanwhile replaced it: leave that one alone).
        if load_job(&sql)?.is_none_or(|stored| stored.started_at != job.started_at || stored.after != job.after) {
            return Response::ok("");
        }
        job.advance(&visited, failure.is_none() && names.len() < JOB_PARTITIONS_PER_STEP, now_secs());
        let next = match failure {
            None if job.running() => Some(0),
            None => None,
            Some(error) => job.fail(error).map(|ms| ms as i64),
        };
        store_job(&sql, &job)?;
        if let Some(ms) = next {
            storage.set_alarm(std::time::Duration::from_millis(ms as u64)).await?;
        }
        Response::ok("")
    }
}

impl rpc::Commands for FhirPartition {
    async fn command(&self, path: &str, body: String) -> Result<Answer> {
        if path == "/stats" {
            return Answer::json(&serde_json::json!({ "served": self.served.get() }));
        }
        self.served.set(self.served.get() + 1);
        let sql = self.state.storage().sql();
        if path == "/types" {
            // Bulk export asks every partition it may read: one never written stays without
            // storage (no tables are created to answer "nothing").
            let tables: Vec<CountRow> = sql.exec("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'res'", None)?.to_array()?;
            if tables.first().is_none_or(|t| t.n == 0) {
                return Answer::json(&Vec::<String>::new());
            }
            let rows: Vec<TypeRow> = sql.exec("SELECT DISTINCT type FROM res WHERE deleted = 0 ORDER BY type", None)?.to_array()?;
            return Answer::json(&rows.into_iter().map(|r| r.r#type).collect::<Vec<_>>());
        }
        if let Some(op) = path.strip_prefix("/backup/") {
            return backup::read(&sql, op, &body);
        }
        let storage = self.state.storage();
        if !self.ready.get() {
            open(&storage)?;
            ensure_index(&storage, matches!(path, "/search" | "/reindex"))?;
            self.ready.set(index_current(&sql)?);
        }
        match path {
            "/restore/versions" => {
                let request: backup::RestoreVersions = rpc::parse(&body)?;
                Answer::json(&backup::restore_versions(&sql, request.versions)?)
            }
            "/reindex" => Answer::json(&index_version()),
            "/reindex/start" => {
                // Directory only: (re)starts the job unless one is running.
                let job = match load_job(&sql)? {
                    Some(job) if job.running() => job,
                    _ => {
                        let counted: Vec<CountRow> = sql
                            .exec("SELECT COUNT(*) AS n FROM (SELECT ?1 AS p UNION SELECT DISTINCT partition FROM dir)", vec![DIRECTORY.into()])?
                            .to_array()?;
                        let job = ReindexJob::start(counted.first().map_or(1, |c| c.n as u64), now_secs());
                        store_job(&sql, &job)?;
                        storage.set_alarm(0).await?;
                        job
                    }
                };
                Answer::json(&job)
            }
            "/reindex/status" => Answer::json(&ReindexStatus { index_version: index_version(), job: load_job(&sql)? }),
            "/write" => {
                let request: WriteRequest = rpc::parse(&body)?;
                if let (Some(expected), [single]) = (&request.if_match, request.resources.as_slice()) {
                    let rows: Vec<VersionRow> = sql
                        .exec(
                            "SELECT version, deleted FROM res WHERE type = ? AND id = ?",
                            vec![single["resourceType"].as_str().unwrap_or_default().into(), single["id"].as_str().unwrap_or_default().into()],
                        )?
                        .to_array()?;
                    let current = rows.first().filter(|r| r.deleted == 0).map(|r| r.version);
                    if current != Some(*expected) {
                        return Answer::json(&WriteOutcome { conflict: true, current, written: Vec::new(), content: None });
                    }
                }
                let mut written = Vec::new();
                let mut last = None;
                for resource in request.resources {
                    match write_one(&sql, resource, &request.last_updated, false) {
                        Ok((w, content)) => {
                            written.push(w);
                            last = Some(content);
                        }
                        Err(e) => {
                            // All or nothing here too: a failed statement does not roll back
                            // the request's earlier ones, so they are undone before answering.
                            for w in written.iter().rev() {
                                revert_one(&sql, w)?;
                            }
                            return Err(e);
                        }
                    }
                }
                let content = if written.len() == 1 { last.map(raw).transpose()? } else { None };
                Answer::json(&WriteOutcome { conflict: false, current: None, written, content })
            }
            "/delete" => {
                let key: Key = rpc::parse(&body)?;
                let rows: Vec<ContentRow> = sql
                    .exec(
                        "SELECT content, version, last_updated, deleted FROM res WHERE type = ? AND id = ?",
                        vec![key.resource_type.clone().into(), key.id.clone().into()],
                    )?
                    .to_array()?;
                match rows.first() {
                    Some(row) if row.deleted == 0 => {
                        let resource: Value = serde_json::from_str(&row.content)?;
                        let now: String = js_sys::Date::new_0().to_iso_string().into();
                        let (written, _) = write_one(&sql, resource, &now, true)?;
                        Answer::json(&Some(written.version))
                    }
                    _ => Answer::json(&None::<i64>),
                }
            }
            "/read" | "/vread" => {
                let key: Key = rpc::parse(&body)?;
                let rows: Vec<ContentRow> = match key.version {
                    Some(v) => sql.exec(
                        "SELECT content, version, last_updated, deleted FROM hist WHERE type = ? AND id = ? AND version = ?",
                        vec![key.resource_type.into(), key.id.into(), v.into()],
                    )?,
                    None => sql.exec(
                        "SELECT content, version, last_updated, deleted FROM res WHERE type = ? AND id = ?",
                        vec![key.resource_type.into(), key.id.into()],
                    )?,
                }
                .to_array()?;
                let outcome = match rows.into_iter().next() {
                    None => ReadOutcome { status: ReadStatus::Missing, content: None, version: 0, last_updated: String::new() },
                    Some(row) if row.deleted == 1 => {
                        ReadOutcome { status: ReadStatus::Gone, content: None, version: row.version, last_updated: row.last_updated }
                    }
                    Some(row) => {
                        ReadOutcome { status: ReadStatus::Found, content: Some(raw(row.content)?), version: row.version, last_updated: row.last_updated }
                    }
                };
                Answer::json(&outcome)
            }
            "/history" => {
                let request: HistoryRequest = rpc::parse(&body)?;
                // An empty id asks for the type's history (newest first). `?3 IS NULL OR`:
                // one statement with or without `_since`.
                let (filter, order) = if request.id.is_empty() {
                    ("type = ?1 AND (?2 = '' OR id = ?2) AND (?3 IS NULL OR last_updated >= ?3)", "last_updated DESC, id, version DESC")
                } else {
                    ("type = ?1 AND id = ?2 AND (?3 IS NULL OR last_updated >= ?3)", "version DESC")
                };
                let since = text(&request.page.since);
                let params = || vec![request.resource_type.clone().into(), request.id.clone().into(), since.clone()];
                let mut page_params = params();
                page_params.extend([(request.page.count as i64).into(), (request.page.offset as i64).into()]);
                let rows: Vec<ContentRow> = sql
                    .exec(&format!("SELECT content, version, last_updated, deleted FROM hist WHERE {filter} ORDER BY {order} LIMIT ?4 OFFSET ?5"), page_params)?
                    .to_array()?;
                let counted: Vec<CountRow> = sql.exec(&format!("SELECT COUNT(*) AS n FROM hist WHERE {filter}"), params())?.to_array()?;
                let versions: Vec<Version> = rows
                    .into_iter()
                    .map(|r| Ok(Version { version: r.version, last_updated: r.last_updated, deleted: r.deleted == 1, content: raw(r.content)? }))
                    .collect::<Result<_>>()?;
                Answer::json(&HistoryPage { versions, total: counted.first().map_or(0, |c| c.n) })
            }
            "/compartment" => {
                let request: CompartmentRequest = rpc::parse(&body)?;
                // The types as one JSON parameter (a statement binds at most 100 values).
                const FILTER: &str = "deleted = 0 AND type IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR last_updated >= ?2)";
                let types = serde_json::to_string(&request.types)?;
                let since = text(&request.page.since);
                let rows: Vec<TypedContentRow> = sql
                    .exec(
                        &format!("SELECT type, id, content FROM res WHERE {FILTER} ORDER BY type <> 'Patient', type, id LIMIT ?3 OFFSET ?4"),
                        vec![types.clone().into(), since.clone(), (request.page.count as i64).into(), (request.page.offset as i64).into()],
                    )?
                    .to_array()?;
                let counted: Vec<CountRow> = sql.exec(&format!("SELECT COUNT(*) AS n FROM res WHERE {FILTER}"), vec![types.into(), since])?.to_array()?;
                let resources = rows.into_iter().map(|r| Ok((r.resource_type, r.id, raw(r.content)?))).collect::<Result<Vec<_>>>()?;
                Answer::json(&CompartmentPage { resources, total: counted.first().map_or(0, |c| c.n) })
            }
            "/search" => {
                let query: SqlQuery = rpc::parse(&body)?;
                let rows: Vec<IdContentRow> = sql.exec(&query.select, bind(&query.select_params))?.to_array()?;
                // A page shorter than asked for is the last one: the total is known.
                let total = if rows.len() < query.page_size && (!rows.is_empty() || query.offset == 0) {
                    (query.offset + rows.len()) as i64
                } else {
                    let counted: Vec<CountRow> = sql.exec(&query.count, bind(&query.count_params))?.to_array()?;
                    counted.first().map_or(0, |c| c.n)
                };
                let resources = rows.into_iter().map(|r| Ok((r.id, raw(r.content)?))).collect::<Result<Vec<_>>>()?;
                Answer::json(&SearchResult { resources, total })
            }
            "/revert" => {
                let request: RevertRequest = rpc::parse(&body)?;
                for written in request.written.iter().rev() {
                    revert_one(&sql, written)?;
                }
                Answer::json(&true)
            }
            "/dir/put" => {
                let entries: DirEntries = rpc::parse(&body)?;
                for (t, id, partition) in entries.entries {
                    sql.exec(
                        // A resource never changes partition: an existing entry is kept.
                        "INSERT INTO dir (type, id, partition) VALUES (?, ?, ?) ON CONFLICT (type, id) DO NOTHING",
                        vec![t.into(), id.into(), partition.into()],
                    )?;
                }
                Answer::json(&true)
            }
            "/dir/locate" => {
                let request: LocateRequest = rpc::parse(&body)?;
                let mut found = Vec::with_capacity(request.keys.len());
                for (t, id) in request.keys {
                    let rows: Vec<PartitionRow> = sql.exec("SELECT partition FROM dir WHERE type = ? AND id = ?", vec![t.into(), id.into()])?.to_array()?;
                    found.push(rows.into_iter().next().map(|r| r.partition));
                }
                Answer::json(&found)
            }
            _ => Err(worker::Error::RustError(format!("unknown partition operation {path}"))),
        }
    }
}

crate::rpc_methods!(FhirPartition);
