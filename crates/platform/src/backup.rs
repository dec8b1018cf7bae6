//! Backup and restore: the NDJSON record format (one JSON object per line, each with a `kind`),
//! its validation, the opaque cursor of the export's pages and the rule that decides whether a
//! restore page may be written.
//!
//! A backup is a sequence of pages (`GET /admin/backup`, then each `Link: rel="next"`); the
//! whole file is their concatenation: a `header` line first, an `end` line last. Values are
//! carried exactly as stored (JSON kept as raw text, not re-serialised), so a restore writes
//! back the same bytes and a backup of the restored deployment has the same lines.
//!
//! A restore page (`POST /admin/restore`) is a slice of the file whose first line is the
//! file's `header`. Every line of a page is parsed and checked before anything of it is
//! written: a bad line refuses the whole page (400, naming the line).

use crate::accounts::AccountState;
use crate::clients::Client;
use crate::fhir::store::DIRECTORY;
use crate::grant_handle::is_grant_id;
use crate::grants::GrantRecord;
use crate::ports::KeyRecord;
use crate::settings::{ServerSettings, SETTINGS_KEY};
use crate::users::User;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// The `format` of the header line.
pub const FORMAT: &str = "smart-edge-backup";
/// The version of the record format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The most lines a restore page holds after its header: each may be one write (a KV put,
/// an object call), and a Worker request makes at most 1,000 subrequests.
pub const MAX_PAGE_LINES: usize = 500;
/// KV keys under this prefix are never backed up (none are written today; reserved).
pub const RESERVED_KV_PREFIX: &str = "backup:";

/// The first line of a backup, repeated as the first line of every restore page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub kind: String,
    pub format: String,
    pub version: u32,
    /// Names this backup (random); a restore under way accepts pages of this backup only.
    pub backup_id: String,
    /// Unix seconds when the export started.
    pub created_at: i64,
}

impl Header {
    pub fn new(backup_id: &str, created_at: i64) -> Header {
        Header { kind: "header".into(), format: FORMAT.into(), version: FORMAT_VERSION, backup_id: backup_id.into(), created_at }
    }
}

/// One stored version of a resource, as a partition keeps it (`hist` row).
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredVersion {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: String,
    pub deleted: bool,
    /// The stored JSON (for a deletion: the content before it, with the deletion's meta).
    pub content: Box<RawValue>,
}

/// A `resource-version` line: a [`StoredVersion`] and its partition.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionLine {
    pub kind: String,
    pub partition: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: String,
    pub deleted: bool,
    pub content: Box<RawValue>,
}

impl VersionLine {
    pub fn new(partition: &str, v: StoredVersion) -> VersionLine {
        VersionLine {
            kind: "resource-version".into(),
            partition: partition.into(),
            resource_type: v.resource_type,
            id: v.id,
            version: v.version,
            last_updated: v.last_updated,
            deleted: v.deleted,
            content: v.content,
        }
    }

    pub fn into_stored(self) -> (String, StoredVersion) {
        let VersionLine { partition, resource_type, id, version, last_updated, deleted, content, .. } = self;
        (partition, StoredVersion { resource_type, id, version, last_updated, deleted, content })
    }
}

/// A KV value with its key: `settings`, `client`, `user` (typed, checked) or `kv` (any other
/// key, carried as text).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvLine {
    pub kind: String,
    pub key: String,
    /// For `kv`: the stored text; for the typed kinds: the stored JSON.
    pub value: Box<RawValue>,
}

/// A signing key of the key vault (private JWK included).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLine {
    pub kind: String,
    pub record: Box<RawValue>,
}

/// A user's account object (`accounts::AccountState`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountLine {
    pub kind: String,
    pub username: String,
    pub state: Box<RawValue>,
}

/// An authorization grant object (`grants::GrantRecord`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantLine {
    pub kind: String,
    pub id: String,
    pub record: Box<RawValue>,
}

/// A directory entry: `Type/id` lives in `partition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryLine {
    pub kind: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub id: String,
    pub partition: String,
}

/// The last line of a complete backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndLine {
    pub kind: String,
}

/// One line of a backup.
#[derive(Debug)]
pub enum Record {
    Header(Header),
    Kv(KvLine),
    Key(KeyLine),
    Account(AccountLine),
    Grant(GrantLine),
    Directory(DirectoryLine),
    Version(VersionLine),
    End,
}

fn line<T: Serialize>(value: &T) -> String {
    // Every field is a string, a number or JSON that was stored compact: one line.
    serde_json::to_string(value).unwrap_or_default()
}

impl Record {
    /// The KV entry `key` = `value` as its line (`settings`, `client`, `user` or `kv`).
    pub fn kv(key: &str, value: &str) -> Record {
        let typed = kv_kind(key) != "kv";
        let stored = if typed { RawValue::from_string(compact(value)).ok() } else { None };
        match stored {
            Some(value) => Record::Kv(KvLine { kind: kv_kind(key).into(), key: key.into(), value }),
            // Not JSON (or not a typed key): carried as a JSON string.
            None => Record::Kv(KvLine { kind: "kv".into(), key: key.into(), value: RawValue::from_string(line(&value)).expect("a JSON string") }),
        }
    }

    pub fn key(record: Box<RawValue>) -> Record {
        Record::Key(KeyLine { kind: "key".into(), record })
    }

    pub fn account(username: &str, state: Box<RawValue>) -> Record {
        Record::Account(AccountLine { kind: "account".into(), username: username.into(), state })
    }

    pub fn grant(id: &str, record: Box<RawValue>) -> Record {
        Record::Grant(GrantLine { kind: "grant".into(), id: id.into(), record })
    }

    pub fn directory(resource_type: &str, id: &str, partition: &str) -> Record {
        Record::Directory(DirectoryLine { kind: "directory".into(), resource_type: resource_type.into(), id: id.into(), partition: partition.into() })
    }

    /// The line, without its newline.
    pub fn to_line(&self) -> String {
        match self {
            Record::Header(h) => line(h),
            Record::Kv(r) => line(r),
            Record::Key(r) => line(r),
            Record::Account(r) => line(r),
            Record::Grant(r) => line(r),
            Record::Directory(r) => line(r),
            Record::Version(r) => line(r),
            Record::End => line(&EndLine { kind: "end".into() }),
        }
    }

    /// Reads and checks one line.
    pub fn parse(text: &str) -> Result<Record, String> {
        #[derive(Deserialize)]
        struct Probe {
            kind: String,
        }
        let probe: Probe = serde_json::from_str(text).map_err(|e| format!("not a JSON object with a \"kind\": {e}"))?;
        let record = match probe.kind.as_str() {
            "header" => Record::Header(typed(text)?),
            "settings" | "client" | "user" | "kv" => Record::Kv(typed(text)?),
            "key" => Record::Key(typed(text)?),
            "account" => Record::Account(typed(text)?),
            "grant" => Record::Grant(typed(text)?),
            "directory" => Record::Directory(typed(text)?),
            "resource-version" => Record::Version(typed(text)?),
            "end" => {
                let _: EndLine = typed(text)?;
                Record::End
            }
            other => return Err(format!("unknown kind \"{other}\"")),
        };
        record.check()?;
        Ok(record)
    }

    fn check(&self) -> Result<(), String> {
        match self {
            Record::Header(h) => check_header(h),
            Record::Kv(r) => check_kv(r),
            Record::Key(r) => {
                let key: KeyRecord = inner(&r.record, "key record")?;
                key.jwk.kid.filter(|k| !k.is_empty()).map(|_| ()).ok_or_else(|| "the key has no kid".to_owned())
            }
            Record::Account(r) => {
                nonempty(&r.username, "username")?;
                inner::<AccountState>(&r.state, "account state").map(|_| ())
            }
            Record::Grant(r) => {
                if !is_grant_id(&r.id) {
                    return Err("the grant id is not 64 hex digits".into());
                }
                inner::<GrantRecord>(&r.record, "grant record").map(|_| ())
            }
            Record::Directory(r) => {
                nonempty(&r.resource_type, "type")?;
                nonempty(&r.id, "id")?;
                check_partition(&r.partition)
            }
            Record::Version(v) => check_version(v),
            Record::End => Ok(()),
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn inner<T: serde::de::DeserializeOwned>(raw: &RawValue, what: &str) -> Result<T, String> {
    serde_json::from_str(raw.get()).map_err(|e| format!("not a valid {what}: {e}"))
}

fn nonempty(value: &str, what: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(())
}

/// The JSON text without insignificant whitespace (stored values are compact already; a
/// pretty-printed one would otherwise break the one-line rule).
fn compact(text: &str) -> String {
    if !text.contains(['\n', '\r']) {
        return text.to_owned();
    }
    serde_json::from_str::<Value>(text).map(|v| v.to_string()).unwrap_or_else(|_| text.to_owned())
}

/// Which kind a KV key's line has.
pub fn kv_kind(key: &str) -> &'static str {
    if key == SETTINGS_KEY {
        "settings"
    } else if key.starts_with(crate::clients::KEY_PREFIX) {
        "client"
    } else if key.starts_with(crate::users::KEY_PREFIX) {
        "user"
    } else {
        "kv"
    }
}

/// The text a KV line stores under its key.
pub fn kv_value(line: &KvLine) -> String {
    if line.kind == "kv" {
        serde_json::from_str::<String>(line.value.get()).unwrap_or_default()
    } else {
        line.value.get().to_owned()
    }
}

fn check_header(h: &Header) -> Result<(), String> {
    if h.format != FORMAT {
        return Err(format!("not a smart-edge backup (format \"{}\")", h.format));
    }
    if h.version != FORMAT_VERSION {
        return Err(format!("backup format version {} is not supported (this server reads version {FORMAT_VERSION})", h.version));
    }
    let id_ok = (1..=64).contains(&h.backup_id.len()) && h.backup_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return Err("backup_id must be 1 to 64 letters, digits, '-' or '_'".into());
    }
    Ok(())
}

fn check_kv(r: &KvLine) -> Result<(), String> {
    nonempty(&r.key, "key")?;
    if r.key.starts_with(RESERVED_KV_PREFIX) {
        return Err(format!("KV keys under \"{RESERVED_KV_PREFIX}\" are not restored"));
    }
    let expected = kv_kind(&r.key);
    if r.kind == "kv" {
        // Any other key: its value is text (a JSON string in the line). A settings, client or
        // user key is never carried untyped (its record would escape the checks below).
        if expected != "kv" {
            return Err(format!("the key \"{}\" is a {expected} key, not a plain kv one", r.key));
        }
        return inner::<String>(&r.value, "kv value (a JSON string)").map(|_| ());
    }
    if r.kind != expected {
        return Err(format!("the key \"{}\" is not a {} key", r.key, r.kind));
    }
    // The record as the release that wrote it stored it (`crate::ports::decode_record`: any
    // record version this release reads), checked in its current form.
    let (fields, _) =
        crate::ports::decode_record::<serde_json::Value>(&r.key, r.value.get()).map_err(|e| format!("not a readable {expected} record: {}", e.0))?;
    let current = RawValue::from_string(fields.to_string()).map_err(|e| e.to_string())?;
    match expected {
        "settings" => ServerSettings::parse(current.get()).map(|_| ()).map_err(|e| format!("not valid settings: {e}")),
        "client" => {
            let client: Client = inner(&current, "client")?;
            let id = r.key.strip_prefix(crate::clients::KEY_PREFIX).unwrap_or_default();
            (client.client_id == id).then_some(()).ok_or_else(|| "the client_id differs from the key".to_owned())
        }
        _ => {
            let user: User = inner(&current, "user")?;
            let name = r.key.strip_prefix(crate::users::KEY_PREFIX).unwrap_or_default();
            (user.username == name).then_some(()).ok_or_else(|| "the username differs from the key".to_owned())
        }
    }
}

/// Whether `name` is a partition name (`directory`, `patient/{id}`, `shared/{Type}`).
pub fn check_partition(name: &str) -> Result<(), String> {
    let one_segment = |rest: &str| !rest.is_empty() && !rest.contains('/') && rest.len() <= 128;
    let ok = name == DIRECTORY
        || name.strip_prefix("patient/").is_some_and(one_segment)
        || name.strip_prefix("shared/").is_some_and(|t| one_segment(t) && t.bytes().all(|b| b.is_ascii_alphanumeric()));
    ok.then_some(()).ok_or_else(|| format!("\"{name}\" is not a partition name"))
}

fn check_version(v: &VersionLine) -> Result<(), String> {
    check_partition(&v.partition)?;
    nonempty(&v.resource_type, "type")?;
    nonempty(&v.id, "id")?;
    if v.version < 1 {
        return Err("version must be at least 1".into());
    }
    let content: Value = inner(&v.content, "resource")?;
    let field = |pointer: &str| content.pointer(pointer).and_then(Value::as_str);
    if field("/resourceType") != Some(v.resource_type.as_str()) || field("/id") != Some(v.id.as_str()) {
        return Err(format!("the content is not {}/{}", v.resource_type, v.id));
    }
    if field("/meta/versionId") != Some(v.version.to_string().as_str()) || field("/meta/lastUpdated") != Some(v.last_updated.as_str()) {
        return Err("the content's meta.versionId and meta.lastUpdated differ from the line's version and last_updated".into());
    }
    // The partition is where the server itself would put this content (a patient's data in
    // that patient's compartment; a Patient also in the directory): a line cannot plant a
    // resource in another patient's compartment, which is what tokens are bounded by.
    let placed = crate::fhir::store::partition_for(&content).map_err(|_| "the content cannot be placed in a partition".to_owned())?;
    let directory_copy = v.partition == DIRECTORY && v.resource_type == "Patient";
    if v.partition != placed && !directory_copy {
        return Err(format!("{}/{} belongs in partition {placed}, not {}", v.resource_type, v.id, v.partition));
    }
    Ok(())
}

/// A bad line of a restore page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based, within the page.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A checked restore page.
#[derive(Debug)]
pub struct Page {
    pub header: Header,
    /// The lines after the header, `end` excluded.
    pub records: Vec<Record>,
    /// The page ends the backup (its last line is `end`).
    pub end: bool,
}

/// Parses and checks a whole restore page: the header first, `end` only last, every line
/// valid. Empty lines are skipped (a trailing newline).
pub fn parse_page(body: &str) -> Result<Page, LineError> {
    let mut header = None;
    let mut records = Vec::new();
    let mut end = false;
    let err = |line: usize, message: String| LineError { line, message };
    for (index, text) in body.split('\n').enumerate() {
        let number = index + 1;
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.trim().is_empty() {
            continue;
        }
        if end {
            return Err(err(number, "nothing may follow the \"end\" line".into()));
        }
        if header.is_some() && records.len() + usize::from(end) >= MAX_PAGE_LINES {
            return Err(err(number, format!("a restore page holds at most {MAX_PAGE_LINES} lines after its header: send smaller pages")));
        }
        let record = Record::parse(text).map_err(|m| err(number, m))?;
        match (record, header.is_some()) {
            (Record::Header(h), false) => header = Some(h),
            (Record::Header(_), true) => return Err(err(number, "a second header".into())),
            (_, false) => return Err(err(number, "a restore page starts with the backup's header line".into())),
            (Record::End, true) => end = true,
            (record, true) => records.push(record),
        }
    }
    let header = header.ok_or_else(|| err(1, "the page is empty: it starts with the backup's header line".into()))?;
    Ok(Page { header, records, end })
}

/// Where an export page resumes: the opaque `cursor` of `Link: rel="next"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Cursor {
    /// KV entries, after KV's own list cursor.
    Kv {
        list: Option<String>,
    },
    Keys,
    /// Accounts and their grants, users listed after KV's cursor.
    Accounts {
        list: Option<String>,
    },
    /// Directory entries after `Type/id`.
    Directory {
        after: Option<(String, String)>,
    },
    /// The stored versions of `partition` after `(type, id, version)`.
    Versions {
        partition: String,
        after: Option<(String, String, i64)>,
    },
}

impl Cursor {
    pub fn start() -> Cursor {
        Cursor::Kv { list: None }
    }

    pub fn encode(&self) -> String {
        B64URL.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = B64URL.decode(text).ok()?;
        let cursor: Cursor = serde_json::from_slice(&bytes).ok()?;
        match &cursor {
            Cursor::Versions { partition, .. } if check_partition(partition).is_err() => None,
            _ => Some(cursor),
        }
    }
}

/// A restore under way or done, kept by the deployment (in the key vault object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreMarker {
    pub backup_id: String,
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: Option<i64>,
}

/// What a restore page may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The first page into an empty deployment: the restore starts.
    Start,
    /// A later (or retried) page of the restore under way.
    Continue,
}

/// Why a restore page is refused (409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotEmpty,
    Finished { backup_id: String },
    Other { backup_id: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotEmpty => {
                write!(f, "the deployment is not empty (it has clients, users, settings or FHIR data): a backup is restored into an empty deployment only")
            }
            Refusal::Finished { backup_id } => write!(f, "backup {backup_id} was already restored here; restore into another, empty deployment"),
            Refusal::Other { backup_id } => write!(f, "the restore of backup {backup_id} is under way here; finish it with that backup's file"),
        }
    }
}

/// Whether a page of backup `backup_id` may be written, given the deployment's marker and
/// whether the deployment holds anything (looked at only when there is no marker).
pub fn gate(marker: Option<&RestoreMarker>, backup_id: &str, empty: bool) -> Result<Gate, Refusal> {
    match marker {
        None if empty => Ok(Gate::Start),
        None => Err(Refusal::NotEmpty),
        Some(m) if m.finished_at.is_some() => Err(Refusal::Finished { backup_id: m.backup_id.clone() }),
        Some(m) if m.backup_id == backup_id => Ok(Gate::Continue),
        Some(m) => Err(Refusal::Other { backup_id: m.backup_id.clone() }),
    }
}

#[cfg(test)]
mod tests;
