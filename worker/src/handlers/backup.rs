//! `GET /admin/backup` and `POST /admin/restore` (admin token): the deployment as NDJSON pages
//! (`platform::backup` holds the format, its checks, the cursor and the restore gate; this
//! module only reads and writes the stores).
//!
//! What a backup holds, in this order: every KV entry (settings, clients, users, anything
//! else), the key vault's signing keys, each user's account object and the grants its
//! management list names, the FHIR directory's entries, then every stored version of every
//! partition (the directory's first). Index rows are not exported: a restore rebuilds them.

use super::admin::authorize_admin;
use crate::adapters::webcrypto::new_id;
use crate::context::AppContext;
use crate::durable::account::RestoreAccount;
use crate::durable::fhir_partition::backup::RestoreVersions;
use crate::durable::fhir_partition::DirEntries;
use crate::durable::grant::RestoreGrant;
use crate::durable::key_vault::restore::Keys;
use crate::durable::rpc;
use crate::http::{self, AppError};
use crate::keyring::{self, now_secs};
use crate::{grant_status, registry, settings};
use platform::accounts::AccountState;
use platform::backup::{self, Cursor, Header, Record, StoredVersion, VersionLine};
use platform::fhir::store::DIRECTORY;
use platform::ports::KvStore;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use smart_protocol::OAuthErrorCode;
use std::collections::BTreeMap;
use worker::{Request, Response};

/// A page stops growing past this many lines (fewer with `?lines=`) or bytes, or Durable Object / KV calls (a
/// request may make 1,000 subrequests).
const PAGE_LINES: usize = 1000;
const PAGE_BYTES: usize = 4 * 1024 * 1024;
const PAGE_CALLS: usize = 300;
/// Users (each an account call and one call per grant, at most 100) per step.
const USERS_PER_STEP: u64 = 2;
/// Rows per partition call.
const VERSIONS_PER_CALL: usize = 100;
const DIR_PER_CALL: usize = 500;
/// The largest restore page read.
const RESTORE_PAGE_BYTES: usize = 32 * 1024 * 1024;

async fn call<B: Serialize, R: DeserializeOwned>(stub: &rpc::Object, path: &str, body: &B) -> Result<R, AppError> {
    rpc::call::<B, R, serde_json::Value>(stub, path, body).await?.map_err(|e| AppError::internal(format!("{path}: {e}")))
}

fn key_vault(ctx: &AppContext) -> Result<rpc::Object, AppError> {
    rpc::by_name(&ctx.env, "KEY_VAULT", crate::durable::key_vault::INSTANCE)
}

fn grant_stub(ctx: &AppContext, id: &str) -> Result<rpc::Object, AppError> {
    grant_status::stub(&ctx.env, id).ok_or_else(|| AppError::internal("a grant id with no object"))
}

/// The lines of one export page.
struct Out {
    lines: Vec<String>,
    bytes: usize,
    calls: usize,
    /// At most this many lines (`?lines=`, 1 to [`PAGE_LINES`]).
    max_lines: usize,
}

impl Out {
    fn push(&mut self, record: Record) {
        let line = record.to_line();
        self.bytes += line.len() + 1;
        self.lines.push(line);
    }

    fn full(&self) -> bool {
        self.lines.len() >= self.max_lines || self.bytes >= PAGE_BYTES || self.calls >= PAGE_CALLS
    }
}

/// `GET /admin/backup[?cursor=…]`.
pub async fn export(req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    let url = req.url()?;
    let given = url.query_pairs().find(|(k, _)| k == "cursor").map(|(_, v)| v.into_owned());
    let max_lines = url.query_pairs().find(|(k, _)| k == "lines").and_then(|(_, v)| v.parse::<usize>().ok()).unwrap_or(PAGE_LINES).clamp(1, PAGE_LINES);
    let mut out = Out { lines: Vec::new(), bytes: 0, calls: 0, max_lines };
    let mut cursor = match given {
        None => {
            out.push(Record::Header(Header::new(&new_id(), now_secs())));
            Some(Cursor::start())
        }
        Some(text) => match Cursor::decode(&text) {
            Some(cursor) => Some(cursor),
            None => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the cursor is not one this server gave")),
        },
    };
    while let Some(at) = cursor.take() {
        if out.full() {
            cursor = Some(at);
            break;
        }
        cursor = step(ctx, at, &mut out).await?;
    }
    if cursor.is_none() {
        out.push(Record::End);
    }
    let mut body = out.lines.join("\n");
    body.push('\n');
    let response = http::text(200, &body, "application/x-ndjson", "no-store");
    if let Some(next) = cursor {
        let lines = if max_lines == PAGE_LINES { String::new() } else { format!("&lines={max_lines}") };
        let _ = response.headers().set("Link", &format!("</admin/backup?cursor={}{lines}>; rel=\"next\"", next.encode()));
    }
    Ok(response)
}

/// Adds the lines at `at` (one bounded batch) and answers where the next batch starts.
async fn step(ctx: &AppContext, at: Cursor, out: &mut Out) -> Result<Option<Cursor>, AppError> {
    let env = &ctx.env;
    Ok(match at {
        Cursor::Kv { list } => {
            let room = out.max_lines.saturating_sub(out.lines.len()).clamp(1, 100);
            let mut builder = env.kv("CONFIG")?.list().limit(room as u64);
            if let Some(list) = list {
                builder = builder.cursor(list);
            }
            let listed = builder.execute().await.map_err(|e| AppError::internal(format!("{e:?}")))?;
            out.calls += 1;
            let kv = settings::kv(ctx)?;
            for key in listed.keys.iter().filter(|k| !k.name.starts_with(backup::RESERVED_KV_PREFIX)) {
                out.calls += 1;
                if let Some(value) = kv.get(&key.name).await.map_err(AppError::internal)? {
                    out.push(Record::kv(&key.name, &value));
                }
            }
            match listed.cursor.filter(|_| !listed.list_complete) {
                Some(list) => Some(Cursor::Kv { list: Some(list) }),
                None => Some(Cursor::Keys),
            }
        }
        Cursor::Keys => {
            let keys: Vec<Box<RawValue>> = call(&key_vault(ctx)?, "/backup/keys", &()).await?;
            out.calls += 1;
            keys.into_iter().for_each(|k| out.push(Record::key(k)));
            Some(Cursor::Accounts { list: None })
        }
        Cursor::Accounts { list } => {
            let mut builder = env.kv("CONFIG")?.list().prefix(platform::users::KEY_PREFIX.to_owned()).limit(USERS_PER_STEP);
            if let Some(list) = list {
                builder = builder.cursor(list);
            }
            let listed = builder.execute().await.map_err(|e| AppError::internal(format!("{e:?}")))?;
            out.calls += 1;
            for key in &listed.keys {
                let username = key.name.strip_prefix(platform::users::KEY_PREFIX).unwrap_or_default();
                let state: Option<Box<RawValue>> = call(&rpc::by_name(env, "ACCOUNTS", username)?, "/backup", &()).await?;
                out.calls += 1;
                let Some(state) = state else { continue };
                let grants = serde_json::from_str::<AccountState>(state.get()).map(|s| s.grants).unwrap_or_default();
                out.push(Record::account(username, state));
                for entry in grants {
                    let record: Option<Box<RawValue>> = call(&grant_stub(ctx, &entry.grant_id)?, "/backup", &()).await?;
                    out.calls += 1;
                    if let Some(record) = record {
                        out.push(Record::grant(&entry.grant_id, record));
                    }
                }
            }
            match listed.cursor.filter(|_| !listed.list_complete) {
                Some(list) => Some(Cursor::Accounts { list: Some(list) }),
                None => Some(Cursor::Directory { after: None }),
            }
        }
        Cursor::Directory { after } => {
            let page = json!({ "after": after, "limit": DIR_PER_CALL });
            let rows: Vec<(String, String, String)> = call(&rpc::by_name(env, "FHIR", DIRECTORY)?, "/backup/dir", &page).await?;
            out.calls += 1;
            let last = rows.last().map(|(t, id, _)| (t.clone(), id.clone()));
            let full = rows.len() == DIR_PER_CALL;
            rows.into_iter().for_each(|(t, id, p)| out.push(Record::directory(&t, &id, &p)));
            match last.filter(|_| full) {
                Some(after) => Some(Cursor::Directory { after: Some(after) }),
                None => Some(Cursor::Versions { partition: DIRECTORY.to_owned(), after: None }),
            }
        }
        Cursor::Versions { partition, after } => {
            let limit = VERSIONS_PER_CALL.min(out.max_lines.saturating_sub(out.lines.len()).max(1));
            let page = json!({ "after": after, "limit": limit });
            let versions: Vec<StoredVersion> = call(&rpc::by_name(env, "FHIR", &partition)?, "/backup/versions", &page).await?;
            out.calls += 1;
            let last = versions.last().map(|v| (v.resource_type.clone(), v.id.clone(), v.version));
            let full = versions.len() == limit;
            versions.into_iter().for_each(|v| out.push(Record::Version(VersionLine::new(&partition, v))));
            if let Some(after) = last.filter(|_| full) {
                return Ok(Some(Cursor::Versions { partition, after: Some(after) }));
            }
            let from = if partition == DIRECTORY { String::new() } else { partition };
            let next: Option<String> = call(&rpc::by_name(env, "FHIR", DIRECTORY)?, "/backup/next-partition", &json!({ "after": from })).await?;
            out.calls += 1;
            next.map(|partition| Cursor::Versions { partition, after: None })
        }
    })
}

fn refused(status: u16, error: &str, description: &str) -> Response {
    http::no_store(http::json(status, &json!({ "error": error, "error_description": description }), "application/json"))
}

/// Whether the deployment holds nothing: no KV entry, no FHIR directory entry or resource.
async fn is_empty(ctx: &AppContext) -> Result<bool, AppError> {
    let listed = ctx.env.kv("CONFIG")?.list().limit(10).execute().await.map_err(|e| AppError::internal(format!("{e:?}")))?;
    if listed.keys.iter().any(|k| !k.name.starts_with(backup::RESERVED_KV_PREFIX)) {
        return Ok(false);
    }
    call(&rpc::by_name(&ctx.env, "FHIR", DIRECTORY)?, "/backup/empty", &()).await
}

/// `POST /admin/restore`: one page (its first line the backup's header).
pub async fn restore(mut req: Request, ctx: &AppContext) -> Result<Response, AppError> {
    if let Err(refusal) = authorize_admin(&req, ctx) {
        return Ok(refusal);
    }
    let bytes = match http::body_bytes_limit(&mut req, RESTORE_PAGE_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "a restore page is at most 32 MiB: send the backup in smaller pages")),
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(http::oauth(OAuthErrorCode::InvalidRequest, "the page is not UTF-8"));
    };
    // Every line is checked before anything is written.
    let page = match backup::parse_page(&text) {
        Ok(page) => page,
        Err(e) => return Ok(http::oauth(OAuthErrorCode::InvalidRequest, &e.to_string())),
    };
    let backup_id = page.header.backup_id.clone();
    let vault = key_vault(ctx)?;
    let begin = json!({ "backup_id": backup_id, "empty": is_empty(ctx).await? });
    if let Err(refusal) = rpc::call::<_, String, String>(&vault, "/restore/begin", &begin).await? {
        return Ok(refusal_response(&refusal));
    }
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut keys = Vec::new();
    let mut directory = Vec::new();
    let mut versions: BTreeMap<String, Vec<StoredVersion>> = BTreeMap::new();
    let kv = settings::kv(ctx)?;
    for record in page.records {
        let kind = match record {
            Record::Kv(line) => {
                kv.put(&line.key, &backup::kv_value(&line)).await.map_err(AppError::internal)?;
                "kv"
            }
            Record::Key(line) => {
                keys.push(line.record);
                "key"
            }
            Record::Account(line) => {
                let _: bool = call(&rpc::by_name(&ctx.env, "ACCOUNTS", &line.username)?, "/restore", &RestoreAccount { state: line.state }).await?;
                "account"
            }
            Record::Grant(line) => {
                let _: bool = call(&grant_stub(ctx, &line.id)?, "/restore", &RestoreGrant { record: line.record }).await?;
                grant_status::forget(&line.id);
                "grant"
            }
            Record::Directory(line) => {
                directory.push((line.resource_type, line.id, line.partition));
                "directory"
            }
            Record::Version(line) => {
                let (partition, stored) = line.into_stored();
                versions.entry(partition).or_default().push(stored);
                "resource-version"
            }
            Record::Header(_) | Record::End => continue,
        };
        *counts.entry(kind).or_default() += 1;
    }
    if !keys.is_empty() {
        let _: bool = call(&vault, "/restore/keys", &Keys { records: keys }).await?;
    }
    for chunk in directory.chunks(DIR_PER_CALL) {
        let _: bool = call(&rpc::by_name(&ctx.env, "FHIR", DIRECTORY)?, "/dir/put", &DirEntries { entries: chunk.to_vec() }).await?;
    }
    for (partition, mut stored) in versions {
        let stub = rpc::by_name(&ctx.env, "FHIR", &partition)?;
        while !stored.is_empty() {
            let rest = stored.split_off(stored.len().min(VERSIONS_PER_CALL));
            // Typed, not `json!`: the contents travel as the raw text they were stored as.
            let _: usize = call(&stub, "/restore/versions", &RestoreVersions { versions: stored }).await?;
            stored = rest;
        }
    }
    // This isolate's caches may hold what the empty deployment answered before.
    registry::forget_all();
    settings::forget();
    keyring::forget();
    if page.end {
        if let Err(refusal) = rpc::call::<_, bool, String>(&vault, "/restore/finish", &json!({ "backup_id": backup_id })).await? {
            return Ok(refusal_response(&refusal));
        }
    }
    Ok(http::no_store(http::ok_json(&json!({ "backup_id": backup_id, "restored": counts, "finished": page.end }))))
}

fn refusal_response(description: &str) -> Response {
    refused(409, "restore_refused", description)
}
