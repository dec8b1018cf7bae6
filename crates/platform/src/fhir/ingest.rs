//! Transaction and batch Bundles (R4 §3.1.0.11, <https://hl7.org/fhir/R4/http.html#transaction>):
//! the entries parsed into requests (`POST`, `PUT`, `DELETE`, `GET`, and the conditional forms
//! of §3.1.0.8: `ifNoneExist`, `PUT`/`DELETE [type]?search`, conditional references
//! `Type?search`), then planned once the caller has resolved every condition: ids assigned to
//! creates, `urn:uuid:` and conditional references rewritten to `Type/id`, writes grouped by
//! partition. The caller (`api::bundle`) resolves the conditions through the gate, judges the
//! plan and applies it (with compensation when a partition fails, see there).

use super::params;
use super::search;
use super::store::{partition_for, DIRECTORY};
use super::validate::{self, if_match_version, Issue};
use crate::users::is_fhir_id;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("not a Bundle of type transaction or batch")]
    NotABundle,
    #[error("entry {0} has no resource of a type this server serves")]
    BadEntry(usize),
    #[error("entry {0}: the request must be POST [type], PUT [type]/[id], PUT [type]?[search], DELETE [type]/[id], DELETE [type]?[search] or GET, matching the resource")]
    BadRequest(usize),
    #[error("the reference {0} points to no entry of the bundle")]
    Dangling(String),
    #[error("the bundle has more than {MAX_ENTRIES} entries")]
    TooLarge,
    #[error("{0}")]
    Unplaceable(String),
    #[error("entry {0} repeats the fullUrl or the resource of an earlier entry")]
    Duplicate(usize),
    #[error("entry {0}: ifNoneMatch and ifModifiedSince are not supported in bundles")]
    Conditional(usize),
    #[error("entry {0}: the search criteria match more than one resource")]
    Multiple(usize),
    #[error("the conditional reference {0} matches no resource")]
    Unresolved(String),
    #[error("the conditional reference {0} matches more than one resource")]
    Ambiguous(String),
    #[error("the search criteria {0} are not a valid search: {1}")]
    BadCondition(String, String),
    #[error("entry {0}: the resource id does not match the one resource the search criteria match")]
    WrongId(usize),
    /// The entry's resource fails its R4 definition; each issue's expression is rooted at the
    /// resource (`Observation.status`).
    #[error("entry {}: the resource does not conform to its R4 definition: {}", .0, validate::summary(.1))]
    Invalid(usize, Vec<Issue>),
}

impl IngestError {
    /// 412 for criteria that match several resources (R4 §3.1.0.8), 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            IngestError::Multiple(_) | IngestError::Ambiguous(_) => 412,
            _ => 400,
        }
    }

    /// The OperationOutcome refusing the bundle: one issue per problem for `Invalid`.
    pub fn outcome(&self) -> Value {
        match self {
            IngestError::Invalid(i, issues) => validate::outcome_of(issues, &format!("entry {i}: ")),
            other => super::outcome::error(super::outcome::IssueType::Invalid, &other.to_string()),
        }
    }
}

pub const MAX_ENTRIES: usize = 5000;

/// What an entry's request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// `POST [type]`.
    Create,
    /// `PUT [type]/[id]`.
    Update(String),
    /// `PUT [type]?[search]`.
    ConditionalUpdate(String),
    /// `DELETE [type]/[id]`.
    Delete(String),
    /// `DELETE [type]?[search]`.
    ConditionalDelete(String),
    /// `GET [url]`: a read or search, answered after the writes.
    Read(String),
}

/// One entry of a bundle, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub resource_type: String,
    pub full_url: Option<String>,
    pub resource: Option<Value>,
    pub method: Method,
    pub if_none_exist: Option<String>,
    /// `ifMatch` of a `PUT [type]/[id]` or `DELETE [type]/[id]`: the version it must be at.
    pub if_match: Option<i64>,
}

/// A search to run before planning: `(Type, query)`.
pub type Condition = (String, String);

/// The ids of `Type` each condition matches in the store (under the caller's search rights).
pub type Resolved = HashMap<Condition, Vec<String>>;

/// One resource to write, with how it was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub resource: Value,
    pub created: bool,
    /// The version `ifMatch` asked for.
    pub if_match: Option<i64>,
}

/// What each entry did, in bundle order.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `Type/id` written; `created` says 201 or 200.
    Written { reference: String, created: bool },
    /// A conditional create whose criteria matched this existing resource: nothing written.
    Existing(String),
    /// A delete (of a resource, or of nothing).
    Deleted,
    /// A `GET` entry, answered later.
    Read(String),
}

/// The writes of a bundle, by partition, and its deletions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub partitions: BTreeMap<String, Vec<Write>>,
    /// `(Type, id)` to delete, with the `ifMatch` version asked for.
    pub deletes: Vec<(String, String, Option<i64>)>,
    pub answers: Vec<Answer>,
}

impl Plan {
    /// The partitions in write order: shared ones first, then the directory, then patients.
    pub fn write_order(&self) -> Vec<&String> {
        let mut names: Vec<&String> = self.partitions.keys().collect();
        names.sort_by_key(|n| (!n.starts_with("shared/"), n.as_str()));
        names
    }

    /// `(Type, id, partition)` for the directory (a Patient's directory copy is not an entry:
    /// the Patient lives in its own partition).
    pub fn directory_entries(&self) -> Vec<(String, String, String)> {
        self.partitions
            .iter()
            .filter(|(partition, _)| partition.as_str() != DIRECTORY)
            .flat_map(|(partition, writes)| {
                writes.iter().map(move |w| {
                    let t = w.resource["resourceType"].as_str().unwrap_or_default().to_owned();
                    let id = w.resource["id"].as_str().unwrap_or_default().to_owned();
                    (t, id, partition.clone())
                })
            })
            .collect()
    }

    /// The `response` of each entry but the `GET` ones (`None`), R4 §3.1.0.11.4.
    pub fn responses(&self) -> Vec<Option<Value>> {
        self.answers
            .iter()
            .map(|answer| match answer {
                Answer::Written { reference, created } => Some(json!({ "status": if *created { "201 Created" } else { "200 OK" }, "location": reference })),
                Answer::Existing(reference) => Some(json!({ "status": "200 OK", "location": reference })),
                Answer::Deleted => Some(json!({ "status": "204 No Content" })),
                Answer::Read(_) => None,
            })
            .collect()
    }
}

fn text<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Parses the entries of a transaction or batch bundle.
pub fn entries(bundle: &Value) -> Result<Vec<Entry>, IngestError> {
    let is_bundle = bundle.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && matches!(bundle.get("type").and_then(Value::as_str), Some("transaction" | "batch"));
    if !is_bundle {
        return Err(IngestError::NotABundle);
    }
    let raw = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if raw.len() > MAX_ENTRIES {
        return Err(IngestError::TooLarge);
    }
    raw.iter().enumerate().map(|(i, e)| entry(i, e)).collect()
}

fn entry(i: usize, entry: &Value) -> Result<Entry, IngestError> {
    // Ignoring a condition would do what the client asked not to: refuse instead.
    if text(entry, "/request/ifNoneMatch").is_some() || text(entry, "/request/ifModifiedSince").is_some() {
        return Err(IngestError::Conditional(i));
    }
    let resource = entry.get("resource").filter(|r| r.is_object()).cloned();
    let body_type = resource.as_ref().and_then(|r| r.get("resourceType")).and_then(Value::as_str).map(str::to_owned);
    let method = text(entry, "/request/method").unwrap_or("POST");
    let full_url = entry.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
    let bad = || IngestError::BadRequest(i);
    if method == "GET" {
        let url = text(entry, "/request/url").filter(|u| !u.is_empty()).ok_or_else(bad)?;
        let resource_type = url.split(['/', '?']).next().unwrap_or_default().to_owned();
        return Ok(Entry { resource_type, full_url, resource: None, method: Method::Read(url.to_owned()), if_none_exist: None, if_match: None });
    }
    let served = |t: &str| params::is_served(t);
    let url = text(entry, "/request/url").map(str::to_owned).or_else(|| body_type.clone()).ok_or(IngestError::BadEntry(i))?;
    let (path, query) = match url.split_once('?') {
        Some((p, q)) if !q.is_empty() => (p, Some(q.to_owned())),
        Some(_) => return Err(bad()),
        None => (url.as_str(), None),
    };
    let (url_type, url_id) = match path.split_once('/') {
        Some((t, id)) => (t, Some(id)),
        None => (path, None),
    };
    if url_id.is_some_and(|id| !is_fhir_id(id)) || (url_id.is_some() && query.is_some()) {
        return Err(bad());
    }
    let if_match = match text(entry, "/request/ifMatch") {
        Some(v) => Some(if_match_version(v).and_then(|v| v.parse().ok()).ok_or_else(bad)?),
        None => None,
    };
    let if_none_exist = text(entry, "/request/ifNoneExist").map(str::to_owned);
    if if_none_exist.as_deref() == Some("") {
        return Err(bad());
    }
    let method = match (method, url_id, query) {
        ("DELETE", _, _) if !served(url_type) => return Err(IngestError::BadEntry(i)),
        ("DELETE", Some(id), None) => Method::Delete(id.to_owned()),
        ("DELETE", None, Some(q)) if if_match.is_none() => Method::ConditionalDelete(q),
        ("POST" | "PUT", _, _) if body_type.as_deref().is_none_or(|t| !served(t)) => return Err(IngestError::BadEntry(i)),
        (_, _, _) if body_type.as_deref() != Some(url_type) => return Err(bad()),
        ("POST", None, None) if if_match.is_none() => Method::Create,
        ("PUT", Some(id), None) => {
            if resource.as_ref().and_then(|r| r.get("id")).and_then(Value::as_str).is_some_and(|b| b != id) {
                return Err(bad());
            }
            Method::Update(id.to_owned())
        }
        ("PUT", None, Some(q)) if if_match.is_none() => Method::ConditionalUpdate(q),
        _ => return Err(bad()),
    };
    if if_none_exist.is_some() && !matches!(method, Method::Create | Method::Update(_)) {
        return Err(bad());
    }
    if let (Method::Create | Method::Update(_) | Method::ConditionalUpdate(_), Some(r)) = (&method, &resource) {
        validate::structure(r).map_err(|issues| IngestError::Invalid(i, issues))?;
    }
    Ok(Entry { resource_type: url_type.to_owned(), full_url, resource, method, if_none_exist, if_match })
}

/// The `Type?query` conditional references in `value` (served types only).
fn conditional_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(obj) => {
            for (key, v) in obj {
                match (key.as_str(), v.as_str()) {
                    ("reference", Some(r)) if as_condition(r).is_some() => out.push(r.to_owned()),
                    _ => conditional_references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| conditional_references(v, out)),
        _ => {}
    }
}

/// `Type?query` as a condition, when `Type` is served and the query is not empty.
fn as_condition(reference: &str) -> Option<Condition> {
    let (t, q) = reference.split_once('?')?;
    (params::is_served(t) && !q.is_empty()).then(|| (t.to_owned(), q.to_owned()))
}

/// Every search the plan needs, each once: `ifNoneExist`, conditional update and delete
/// criteria, conditional references.
pub fn conditions(entries: &[Entry]) -> Vec<Condition> {
    let mut out: Vec<Condition> = Vec::new();
    let mut references = Vec::new();
    for e in entries {
        let own = match &e.method {
            Method::ConditionalUpdate(q) | Method::ConditionalDelete(q) => Some(q.clone()),
            _ => e.if_none_exist.clone(),
        };
        out.extend(own.map(|q| (e.resource_type.clone(), q)));
        if !matches!(e.method, Method::Delete(_) | Method::ConditionalDelete(_) | Method::Read(_)) {
            if let Some(r) = &e.resource {
                conditional_references(r, &mut references);
            }
        }
    }
    out.extend(references.iter().filter_map(|r| as_condition(r)));
    let mut seen = HashSet::new();
    out.retain(|c| seen.insert(c.clone()));
    out
}

/// The `(Type, id)` creates ask for through their `fullUrl: urn:uuid:{id}`, in order.
pub fn wished_ids(entries: &[Entry]) -> Vec<(String, String)> {
    entries
        .iter()
        .filter(|e| matches!(e.method, Method::Create | Method::ConditionalUpdate(_)))
        .filter_map(|e| Some((e.resource_type.clone(), wished(e)?.to_owned())))
        .collect()
}

fn wished(e: &Entry) -> Option<&str> {
    e.full_url.as_deref()?.strip_prefix("urn:uuid:").filter(|id| is_fhir_id(id))
}

/// Plans the writes once every condition is `resolved`. A create keeps the id of its
/// `fullUrl: urn:uuid:{id}` when that id is free (`taken` says it is not), else gets one from
/// `new_id`: a create never overwrites.
pub fn plan(entries: &[Entry], resolved: &Resolved, new_id: &mut dyn FnMut() -> String, taken: &dyn Fn(&str, &str) -> bool) -> Result<Plan, IngestError> {
    let matched = |t: &str, q: &str| resolved.get(&(t.to_owned(), q.to_owned())).map(Vec::as_slice).unwrap_or_default();
    let mut plan = Plan::default();
    let mut writes: Vec<(Value, bool, Option<i64>)> = Vec::new();
    let mut urn_map: HashMap<String, String> = HashMap::new();
    let mut seen = HashSet::new();
    let mut deleted = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let t = e.resource_type.as_str();
        let mut create = |e: &Entry| wished(e).filter(|id| !taken(t, id)).map(str::to_owned).unwrap_or_else(&mut *new_id);
        let existing = match e.if_none_exist.as_deref().map(|q| matched(t, q)) {
            Some([one]) => Some(one.clone()),
            Some([]) | None => None,
            Some(_) => return Err(IngestError::Multiple(i)),
        };
        let (id, created) = match (&e.method, existing) {
            (Method::Read(url), _) => {
                plan.answers.push(Answer::Read(url.clone()));
                continue;
            }
            (Method::Delete(id), _) => (Some(id.clone()), None),
            (Method::ConditionalDelete(q), _) => match matched(t, q) {
                [] => (None, None),
                [one] => (Some(one.clone()), None),
                _ => return Err(IngestError::Multiple(i)),
            },
            (_, Some(one)) => {
                // ifNoneExist matched: the existing resource stands for the entry.
                let reference = format!("{t}/{one}");
                if let Some(url) = &e.full_url {
                    urn_map.insert(url.clone(), reference.clone());
                }
                plan.answers.push(Answer::Existing(reference));
                continue;
            }
            (Method::Create, None) => (Some(create(e)), Some(true)),
            (Method::Update(id), None) => (Some(id.clone()), Some(false)),
            (Method::ConditionalUpdate(q), None) => match matched(t, q) {
                [] => (Some(create(e)), Some(true)),
                [one] => {
                    if e.resource.as_ref().and_then(|r| r.get("id")).and_then(Value::as_str).is_some_and(|b| b != one) {
                        return Err(IngestError::WrongId(i));
                    }
                    (Some(one.clone()), Some(false))
                }
                _ => return Err(IngestError::Multiple(i)),
            },
        };
        let Some(id) = id else {
            plan.answers.push(Answer::Deleted);
            continue;
        };
        // One entry per resource and per fullUrl: two entries for one id would land in two
        // partitions, overwrite each other, or write what another deletes.
        if !seen.insert(format!("{t}/{id}")) || e.full_url.as_ref().is_some_and(|u| urn_map.contains_key(u)) {
            return Err(IngestError::Duplicate(i));
        }
        if let Some(url) = &e.full_url {
            urn_map.insert(url.clone(), format!("{t}/{id}"));
        }
        match (created, &e.resource) {
            (Some(created), Some(resource)) => {
                let mut resource = resource.clone();
                resource["id"] = Value::String(id.clone());
                writes.push((resource, created, e.if_match));
                plan.answers.push(Answer::Written { reference: format!("{t}/{id}"), created });
            }
            _ => {
                deleted.insert(format!("{t}/{id}"));
                plan.deletes.push((t.to_owned(), id, e.if_match));
                plan.answers.push(Answer::Deleted);
            }
        }
    }
    resolve_references(entries, resolved, &writes, &deleted, &mut urn_map)?;
    for (mut resource, created, if_match) in writes {
        rewrite_references(&mut resource, &urn_map)?;
        let partition = partition_for(&resource).map_err(|e| IngestError::Unplaceable(e.to_string()))?;
        if resource["resourceType"] == "Patient" {
            // Patients are also listed in the directory (picker, patient search).
            plan.partitions.entry(DIRECTORY.to_owned()).or_default().push(Write { resource: resource.clone(), created, if_match: None });
        }
        plan.partitions.entry(partition).or_default().push(Write { resource, created, if_match });
    }
    Ok(plan)
}

/// Maps each conditional reference to the one resource it matches: in the store (`resolved`,
/// less what the bundle deletes) or among the bundle's own writes (R4 §3.1.0.11.2, "Conditional
/// references": no match or several fail the transaction).
fn resolve_references(
    entries: &[Entry],
    resolved: &Resolved,
    writes: &[(Value, bool, Option<i64>)],
    deleted: &HashSet<String>,
    urn_map: &mut HashMap<String, String>,
) -> Result<(), IngestError> {
    let mut references = Vec::new();
    for e in entries.iter().filter(|e| matches!(e.method, Method::Create | Method::Update(_) | Method::ConditionalUpdate(_))) {
        if let Some(r) = &e.resource {
            conditional_references(r, &mut references);
        }
    }
    for reference in references {
        let Some((t, q)) = as_condition(&reference) else { continue };
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&q).map_err(|e| IngestError::BadCondition(reference.clone(), e.to_string()))?;
        let query = search::parse(&t, &pairs, true).map_err(|e| IngestError::BadCondition(reference.clone(), e.to_string()))?;
        // The bundle's own writes are matched by the query's clauses alone: a chain or `_has`
        // would be dropped there and match any resource of the type (security review).
        if query.unresolved() {
            return Err(IngestError::BadCondition(reference, "chained parameters and _has are not supported in conditional references".into()));
        }
        let mut found: Vec<String> = resolved.get(&(t.clone(), q.clone())).into_iter().flatten().map(|id| format!("{t}/{id}")).collect();
        for (resource, _, _) in writes.iter().filter(|(r, _, _)| r["resourceType"] == t.as_str()) {
            if search::matches(&search::index(resource), &query.clauses) {
                found.push(format!("{t}/{}", resource["id"].as_str().unwrap_or_default()));
            }
        }
        found.retain(|r| !deleted.contains(r));
        found.sort();
        found.dedup();
        match found.as_slice() {
            [one] => {
                urn_map.insert(reference, one.clone());
            }
            [] => return Err(IngestError::Unresolved(reference)),
            _ => return Err(IngestError::Ambiguous(reference)),
        }
    }
    Ok(())
}

fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) -> Result<(), IngestError> {
    match value {
        Value::Object(obj) => {
            for (key, v) in obj.iter_mut() {
                match (key.as_str(), v.as_str()) {
                    ("reference", Some(r)) if r.starts_with("urn:uuid:") => {
                        let target = map.get(r).ok_or_else(|| IngestError::Dangling(r.to_owned()))?;
                        *v = Value::String(target.clone());
                    }
                    ("reference", Some(r)) if map.contains_key(r) => *v = Value::String(map[r].clone()),
                    _ => rewrite_references(v, map)?,
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite_references(v, map)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
