//! Conditional update and delete (R4 §3.1.0.4.3 and §3.1.0.7.1,
//! <https://hl7.org/fhir/R4/http.html#cond-update>): `PUT [base]/[type]?[search]` and
//! `DELETE [base]/[type]?[search]`, and the search every conditional request runs (also
//! for a bundle's `ifNoneExist`, conditional entries and conditional references).
//!
//! The criteria are an ordinary search, run by [`find::search`] under the caller's own
//! search rights (the gate decides where it looks; what the caller cannot see cannot match),
//! strictly (an unknown parameter is a 400, never ignored into "match everything").
//! Then: update — no match creates, one match updates it (a body id naming another resource
//! is a 400), several are 412; delete — no match deletes nothing (204), one match is deleted,
//! several are 412 (this server deletes one resource at a time: `conditionalDelete: single`).

use super::{find, write, Fhir, FhirRequest, FhirResponse};
use crate::fhir::outcome::IssueType;
use crate::fhir::search;
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use serde_json::Value;

/// At most this many matches are read: two already mean "several".
const ENOUGH: &str = "2";

/// The ids of `resource_type` the search `query` matches (at most two), or the answer refusing
/// the search (400 for criteria that are no search, 403 without search rights).
pub(super) async fn matches(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, query: &str) -> Result<Result<Vec<String>, FhirResponse>, StoreError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    matches_pairs(fhir, grant, resource_type, pairs).await
}

async fn matches_pairs(
    fhir: &Fhir<'_>,
    grant: &AccessGrant,
    resource_type: &str,
    mut pairs: Vec<(String, String)>,
) -> Result<Result<Vec<String>, FhirResponse>, StoreError> {
    // Paging, sorting and shaping say nothing about which resources match.
    const RESULT_PARAMETERS: [&str; 11] =
        ["_count", "_offset", "_sort", "_summary", "_include", "_revinclude", "_total", "_elements", "_format", "_pretty", "_contained"];
    pairs.retain(|(k, _)| !RESULT_PARAMETERS.contains(&k.split(':').next().unwrap_or_default()));
    let criteria = search::parse(resource_type, &pairs, true);
    // Criteria that name nothing would match everything: refused.
    if !criteria.as_ref().is_ok_and(|q| !q.clauses.is_empty() || !q.more.chains.is_empty() || !q.more.has.is_empty()) {
        let why = criteria.err().map_or("no search parameters".to_owned(), |e| e.to_string());
        return Ok(Err(FhirResponse::outcome(400, IssueType::Invalid, &format!("the conditional criteria must be a search on {resource_type}: {why}"))));
    }
    pairs.push(("_count".into(), ENOUGH.into()));
    let request = FhirRequest { query: pairs, strict: true, ..Default::default() };
    let answer = find::search(fhir, grant, resource_type, &request).await?;
    if answer.status != 200 {
        return Ok(Err(answer));
    }
    let bundle: Value = serde_json::from_str(&answer.body).map_err(|e| StoreError(e.to_string()))?;
    let ids = bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.pointer("/search/mode").and_then(Value::as_str) == Some("match"))
        .filter_map(|e| e.pointer("/resource/id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    Ok(Ok(ids))
}

fn several(what: &str) -> FhirResponse {
    FhirResponse::outcome(412, IssueType::Invalid, &format!("the {what}'s search criteria match more than one resource"))
}

/// `PUT [base]/[type]?[search]`.
pub(super) async fn update(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, request: &FhirRequest) -> Result<FhirResponse, StoreError> {
    let found = match matches_pairs(fhir, grant, resource_type, request.query.clone()).await? {
        Ok(ids) => ids,
        Err(refusal) => return Ok(refusal),
    };
    let mut body: Option<Value> = serde_json::from_slice(&request.body).ok();
    let body_id = body.as_ref().and_then(|b| b.get("id")).and_then(Value::as_str).map(str::to_owned);
    match found.as_slice() {
        [] => write::create(fhir, grant, resource_type, &FhirRequest { if_none_exist: None, ..request.clone() }).await,
        [id] => {
            if body_id.as_ref().is_some_and(|b| b != id) {
                return Ok(FhirResponse::outcome(
                    400,
                    IssueType::Invalid,
                    &format!("the resource id does not match {resource_type}/{id}, the one resource the criteria match"),
                ));
            }
            // An update names its resource: the one matched (the body may leave the id out).
            let mut request = request.clone();
            if let Some(Value::Object(b)) = body.as_mut() {
                b.insert("id".into(), Value::String(id.clone()));
                request.body = Value::Object(b.clone()).to_string().into_bytes();
            }
            write::update(fhir, grant, resource_type, id, &request).await
        }
        _ => Ok(several("update")),
    }
}

/// `DELETE [base]/[type]?[search]`.
pub(super) async fn delete(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, request: &FhirRequest) -> Result<FhirResponse, StoreError> {
    let found = match matches_pairs(fhir, grant, resource_type, request.query.clone()).await? {
        Ok(ids) => ids,
        Err(refusal) => return Ok(refusal),
    };
    match found.as_slice() {
        [] => Ok(FhirResponse::json(204, String::new())),
        [id] => write::delete(fhir, grant, resource_type, id).await,
        _ => Ok(several("delete")),
    }
}
