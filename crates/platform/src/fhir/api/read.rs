//! read, vread, instance and type history (R4 §3.1.0.2, §3.1.0.3, §3.1.0.6).

use super::{usable, Fhir, FhirRequest, FhirResponse};
use crate::fhir::gate::{self, Filter, Place, Reach};
use crate::fhir::outcome::IssueType;
use crate::fhir::params;
use crate::fhir::search;
use crate::fhir::store::{patient_partition, shared_partition, Page, ReadOutcome, ReadStatus, Version};
use crate::fhir::validate;
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use smart_protocol::scopes::Permissions;

pub(super) fn is_patient_data(resource_type: &str) -> bool {
    params::in_patient_compartment(resource_type)
}

/// The one patient every usable scope is confined to, if so.
pub(super) fn single_patient_of(reach: &Reach) -> Option<&str> {
    match reach {
        Reach::Patients(set) if set.len() == 1 => set.iter().next().map(String::as_str),
        _ => None,
    }
}

/// Where to look for `Type/id` without asking the directory: a Patient is in its own
/// partition; a caller confined to one patient looks for patient data in that patient's
/// partition (one round trip for everything they may see).
pub(super) fn direct(reach: &Reach, resource_type: &str, id: &str) -> Option<String> {
    if resource_type == "Patient" {
        return Some(patient_partition(id));
    }
    single_patient_of(reach).filter(|_| is_patient_data(resource_type)).map(patient_partition)
}

/// The directory's partition for `Type/id`.
pub(super) async fn directory(fhir: &Fhir<'_>, resource_type: &str, id: &str) -> Result<Option<String>, StoreError> {
    Ok(fhir.store.locate(&[(resource_type.to_owned(), id.to_owned())]).await?.into_iter().next().flatten())
}

/// The partition `Type/id` lives in: the direct guess when it holds the resource, else the
/// directory's answer.
pub(super) async fn locate(fhir: &Fhir<'_>, reach: &Reach, resource_type: &str, id: &str) -> Result<Option<String>, StoreError> {
    if let Some(partition) = direct(reach, resource_type, id) {
        if resource_type == "Patient" || fhir.store.read(&partition, resource_type, id, None).await?.status != ReadStatus::Missing {
            return Ok(Some(partition));
        }
    }
    directory(fhir, resource_type, id).await
}

fn answer(read: ReadOutcome, filter: &Filter, resource_type: &str, id: &str) -> FhirResponse {
    match (read.status, read.content) {
        (ReadStatus::Found, Some(content)) => {
            let value: Value = serde_json::from_str(content.get()).unwrap_or_default();
            if !filter.admits(&value) {
                return FhirResponse::not_found(resource_type, id);
            }
            FhirResponse { version: Some(read.version), last_updated: Some(read.last_updated), ..FhirResponse::json(200, content.get().to_owned()) }
        }
        (ReadStatus::Gone, _) if *filter == Filter::All => FhirResponse::outcome(410, IssueType::NotFound, &format!("{resource_type}/{id} was deleted")),
        _ => FhirResponse::not_found(resource_type, id),
    }
}

pub(super) async fn read(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, id: &str, version: Option<i64>) -> Result<FhirResponse, StoreError> {
    let usable = match usable(grant, resource_type, Permissions::READ) {
        Ok(u) => u,
        Err(refusal) => return Ok(refusal),
    };
    let not_found = || Ok(FhirResponse::not_found(resource_type, id));
    if let Some(partition) = direct(&gate::reach(&usable), resource_type, id) {
        let filter = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&partition));
        match filter {
            Some(filter) => {
                let read = fhir.store.read(&partition, resource_type, id, version).await?;
                if read.status != ReadStatus::Missing || resource_type == "Patient" {
                    return Ok(answer(read, &filter, resource_type, id));
                }
            }
            None if resource_type == "Patient" => return not_found(),
            None => {}
        }
    }
    let Some(partition) = directory(fhir, resource_type, id).await? else { return not_found() };
    let Some(filter) = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&partition)) else { return not_found() };
    Ok(answer(fhir.store.read(&partition, resource_type, id, version).await?, &filter, resource_type, id))
}

/// `If-None-Match` / `If-Modified-Since` on a read (R4 §3.1.0.2.1; RFC 7232 §3.2, §3.3): a
/// 200 whose version the client holds becomes a 304 without a body, keeping `ETag` and
/// `Last-Modified`. `If-Modified-Since` counts only without `If-None-Match`.
pub(super) fn conditional_read(answer: FhirResponse, request: &FhirRequest) -> FhirResponse {
    if answer.status != 200 {
        return answer;
    }
    let held = match (&request.if_none_match, &request.if_modified_since, answer.version, &answer.last_updated) {
        (Some(tags), _, Some(version), _) => tags.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || validate::if_match_version(tag).and_then(|v| v.parse::<i64>().ok()) == Some(version)
        }),
        (None, Some(since), _, Some(updated)) => match (DateTime::parse_from_rfc2822(since.trim()), DateTime::parse_from_rfc3339(updated)) {
            // HTTP dates have whole seconds.
            (Ok(since), Ok(updated)) => updated.timestamp() <= since.timestamp(),
            _ => false,
        },
        _ => false,
    };
    if held {
        FhirResponse { status: 304, body: String::new(), ..answer }
    } else {
        answer
    }
}

/// `_count`, `_offset` and `_since` of a history or `$everything` (R4 §3.1.0.6, Patient
/// `$everything`): a page of the store's order, and versions or resources changed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Paging {
    pub count: usize,
    pub offset: usize,
    pub since: Option<String>,
}

/// The paging parameters of `query`; other parameters are left to the caller.
pub(super) fn paging(query: &[(String, String)]) -> Result<Paging, FhirResponse> {
    let bad = |name: &str, what: &str| FhirResponse::outcome(400, IssueType::Invalid, &format!("{name} must be {what}"));
    let mut paging = Paging { count: search::DEFAULT_COUNT, offset: 0, since: None };
    for (name, value) in query {
        match name.as_str() {
            "_count" => {
                paging.count = value.parse().ok().filter(|c| *c <= search::MAX_COUNT).ok_or_else(|| bad(name, &format!("0 to {}", search::MAX_COUNT)))?
            }
            "_offset" => {
                paging.offset = value.parse().ok().filter(|o| *o <= search::MAX_OFFSET).ok_or_else(|| bad(name, &format!("0 to {}", search::MAX_OFFSET)))?
            }
            "_since" => {
                // An instant: with seconds and a time zone; compared with lastUpdated in UTC.
                let instant = DateTime::parse_from_rfc3339(value).map_err(|_| bad(name, "an instant such as 2026-01-01T00:00:00Z"))?;
                paging.since = Some(instant.with_timezone(&Utc).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            }
            _ => {}
        }
    }
    Ok(paging)
}

/// Rows read through a filter: the page, where the next one starts (in the store's order), and
/// the total when it is known (everything visible, or the whole list read).
pub(super) struct Filled<T> {
    pub rows: Vec<T>,
    pub next: Option<usize>,
    pub total: Option<i64>,
}

/// Store reads of one request, at most: a filtered page may come back short, with a next link.
const MAX_SCANS: usize = 8;
/// Rows read at a time through a filter.
const SCAN: usize = 100;

/// Fills a page of `paging.count` rows that `keep` admits, reading the store from
/// `paging.offset` (`all_visible`: `keep` admits everything, so one read is exact).
pub(super) async fn fill<T>(
    paging: &Paging,
    all_visible: bool,
    fetch: impl AsyncFn(Page) -> Result<(Vec<T>, i64), StoreError>,
    keep: impl Fn(&T) -> bool,
) -> Result<Filled<T>, StoreError> {
    let (mut rows, mut offset, mut scans) = (Vec::new(), paging.offset, 0);
    let mut store_total;
    let mut exhausted = false;
    loop {
        let want = paging.count - rows.len();
        let ask = if all_visible { want } else { want.max(SCAN) };
        let (batch, total) = fetch(Page { since: paging.since.clone(), offset, count: ask }).await?;
        store_total = total;
        scans += 1;
        let got = batch.len();
        let mut consumed = 0;
        for row in batch {
            if rows.len() == paging.count {
                break;
            }
            consumed += 1;
            if keep(&row) {
                rows.push(row);
            }
        }
        offset += consumed;
        if consumed == got && got < ask {
            exhausted = true;
            break;
        }
        if rows.len() == paging.count || scans == MAX_SCANS {
            break;
        }
    }
    let exhausted = exhausted || offset as i64 >= store_total;
    let total = if all_visible { Some(store_total) } else { (paging.offset == 0 && exhausted).then_some(rows.len() as i64) };
    Ok(Filled { next: (!exhausted && paging.count > 0).then_some(offset), total, rows })
}

/// A Bundle's `self`, `next` and (when positions are exact) `previous` links: `url` with the
/// request's own parameters and `_count`/`_offset` set.
pub(super) fn links(url: &str, query: &[(String, String)], paging: &Paging, next: Option<usize>, exact: bool) -> Vec<Value> {
    let page = |offset: usize| {
        let mut pairs: Vec<(String, String)> = query.iter().filter(|(k, _)| k != "_count" && k != "_offset").cloned().collect();
        pairs.push(("_count".into(), paging.count.to_string()));
        pairs.push(("_offset".into(), offset.to_string()));
        format!("{url}?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default())
    };
    let mut links = vec![json!({"relation": "self", "url": page(paging.offset)})];
    if let Some(next) = next {
        links.push(json!({"relation": "next", "url": page(next)}));
    }
    if exact && paging.offset > 0 {
        links.push(json!({"relation": "previous", "url": page(paging.offset.saturating_sub(paging.count))}));
    }
    links
}

/// One entry of a history Bundle (R4 §3.1.0.6).
fn history_entry(base: &str, resource_type: &str, id: &str, v: &Version) -> String {
    let url = format!("{base}/{resource_type}/{id}/_history/{}", v.version);
    let method = if v.deleted {
        "DELETE"
    } else if v.version == 1 {
        "POST"
    } else {
        "PUT"
    };
    let request = json!({ "method": method, "url": format!("{resource_type}/{id}") });
    let response = json!({ "status": if v.deleted { "204" } else { "200" }, "lastModified": v.last_updated, "etag": format!("W/\"{}\"", v.version) });
    let resource = if v.deleted { String::new() } else { format!(",\"resource\":{}", v.content.get()) };
    format!("{{\"fullUrl\":{}{resource},\"request\":{request},\"response\":{response}}}", json!(url))
}

fn history_bundle(entries: &[String], total: Option<i64>, links: &[Value]) -> String {
    let total = total.map(|t| format!(",\"total\":{t}")).unwrap_or_default();
    // No empty array (FHIR JSON has none): an answer without paging has no links.
    let links = if links.is_empty() { String::new() } else { format!(",\"link\":{}", Value::from(links.to_vec())) };
    format!("{{\"resourceType\":\"Bundle\",\"type\":\"history\"{total}{links},\"entry\":[{}]}}", entries.join(","))
}

/// The partition whose history a request reads, or the answer: an instance's own partition;
/// for a type, the caller's one patient compartment (patient data) or the type's shared one.
async fn history_partition(
    fhir: &Fhir<'_>,
    usable: &[gate::Usable<'_>],
    resource_type: &str,
    id: Option<&str>,
) -> Result<Result<String, FhirResponse>, StoreError> {
    if let Some(id) = id {
        return Ok(locate(fhir, &gate::reach(usable), resource_type, id).await?.ok_or_else(|| FhirResponse::not_found(resource_type, id)));
    }
    if !is_patient_data(resource_type) {
        return Ok(Ok(shared_partition(resource_type)));
    }
    Ok(match gate::reach(usable) {
        Reach::Patients(set) if set.is_empty() => Err(FhirResponse::json(200, history_bundle(&[], Some(0), &[]))),
        reach => single_patient_of(&reach).map(patient_partition).ok_or_else(|| {
            FhirResponse::outcome(400, IssueType::TooCostly, "the history of a patient-data type needs one patient in context (a patient/ scope)")
        }),
    })
}

/// `GET [base]/{type}/{id}/_history` (`id` given) and `GET [base]/{type}/_history`, paged with
/// `_count` and `_offset`, from `_since`. Each version is judged by the filter on its own
/// content (a deletion on the content it removed).
pub(super) async fn history(
    fhir: &Fhir<'_>,
    grant: &AccessGrant,
    resource_type: &str,
    id: Option<&str>,
    request: &FhirRequest,
) -> Result<FhirResponse, StoreError> {
    let usable = match usable(grant, resource_type, Permissions::READ) {
        Ok(u) => u,
        Err(refusal) => return Ok(refusal),
    };
    let paging = match paging(&request.query) {
        Ok(p) => p,
        Err(refusal) => return Ok(refusal),
    };
    let partition = match history_partition(fhir, &usable, resource_type, id).await? {
        Ok(p) => p,
        Err(answer) => return Ok(answer),
    };
    let Some(filter) = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&partition)) else {
        return Ok(match id {
            Some(id) => FhirResponse::not_found(resource_type, id),
            None => FhirResponse::json(200, history_bundle(&[], Some(0), &[])),
        });
    };
    let fetch = async |page: Page| {
        let found = fhir.store.history(&partition, resource_type, id, &page).await?;
        Ok((found.versions, found.total))
    };
    let admitted = |v: &Version| serde_json::from_str::<Value>(v.content.get()).is_ok_and(|value| filter.admits(&value));
    let filled = fill(&paging, filter == Filter::All, fetch, admitted).await?;
    if let Some(id) = id {
        if filled.rows.is_empty() && paging.offset == 0 && filled.next.is_none() && paging.count > 0 {
            // Nothing of it visible: as for a resource that does not exist.
            return Ok(FhirResponse::not_found(resource_type, id));
        }
    }
    let entries: Vec<String> = filled
        .rows
        .iter()
        .map(|v| {
            let value: Value = serde_json::from_str(v.content.get()).unwrap_or_default();
            history_entry(fhir.base, resource_type, value["id"].as_str().unwrap_or_default(), v)
        })
        .collect();
    let url = match id {
        Some(id) => format!("{}/{resource_type}/{id}/_history", fhir.base),
        None => format!("{}/{resource_type}/_history", fhir.base),
    };
    let links = links(&url, &request.query, &paging, filled.next, filter == Filter::All);
    Ok(FhirResponse::json(200, history_bundle(&entries, filled.total, &links)))
}
