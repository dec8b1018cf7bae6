//! The kick-off request (Bulk Data 2.0.0 §"Bulk Data Kick-off Request",
//! <https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-kick-off-request>): headers,
//! parameters (query string, or a `Parameters` resource for POST), the level's rules and the
//! token's scopes, checked once into a [`Job`] or refused with an OperationOutcome.

use super::{is_patient_data, served_types, Cursor, Job, JobState, Level, TypePlan, EXPORT_PERMISSION};
use crate::fhir::api::{Fhir, FhirResponse};
use crate::fhir::gate::{self, Place};
use crate::fhir::outcome::IssueType;
use crate::fhir::params;
use crate::fhir::search::{self, MAX_BOUND};
use crate::fhir::store::{patient_partition, shared_partition, ReadStatus};
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use serde_json::Value;
use smart_protocol::scopes::ScopeContext;
use std::collections::VecDeque;

/// A kick-off request, decoded at the edge.
#[derive(Debug, Clone, Default)]
pub struct KickOff {
    pub level: Option<Level>,
    /// The query string's pairs, or those of a POSTed `Parameters` resource.
    pub params: Vec<(String, String)>,
    pub accept: Option<String>,
    pub prefer: Option<String>,
    /// The full kick-off URL (the manifest's `request`).
    pub request_url: String,
}

/// `_outputFormat` values that mean NDJSON (the spec's three spellings).
const NDJSON_FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

fn invalid(message: &str) -> FhirResponse {
    FhirResponse::outcome(400, IssueType::Invalid, message)
}

fn not_supported(message: &str) -> FhirResponse {
    FhirResponse::outcome(400, IssueType::NotSupported, message)
}

/// The parameters of a POSTed `Parameters` resource, as name/value pairs (the same as a GET's
/// query string). Values are the `value[x]` primitives the operation defines (`valueString`,
/// `valueInstant`, `valueCode`…); anything else is refused.
pub fn parameters(body: &[u8]) -> Result<Vec<(String, String)>, FhirResponse> {
    let value: Value = serde_json::from_slice(body).map_err(|_| invalid("the kick-off body must be a FHIR Parameters resource in JSON"))?;
    if value.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(invalid("the kick-off body must be a FHIR Parameters resource"));
    }
    let mut pairs = Vec::new();
    for parameter in value.get("parameter").and_then(Value::as_array).into_iter().flatten() {
        let name = parameter.get("name").and_then(Value::as_str).ok_or_else(|| invalid("each parameter needs a name"))?;
        let primitive = parameter
            .as_object()
            .and_then(|o| o.iter().find(|(k, v)| k.starts_with("value") && v.is_string()).and_then(|(_, v)| v.as_str()).map(str::to_owned));
        let Some(value) = primitive else {
            // A parameter this server does not take (`patient` is a valueReference): reported
            // like any other unsupported parameter.
            pairs.push((name.to_owned(), String::new()));
            continue;
        };
        pairs.push((name.to_owned(), value));
    }
    Ok(pairs)
}

/// Whether the `Accept` header allows the FHIR JSON OperationOutcome the kick-off may answer.
fn accepts_fhir_json(accept: Option<&str>) -> bool {
    accept.is_none_or(|a| {
        a.split(',').map(|m| m.split(';').next().unwrap_or_default().trim()).any(|m| matches!(m, "application/fhir+json" | "application/json" | "*/*" | ""))
    })
}

/// Whether the grant is a backend-services one: `system/` scopes, no patient, no user.
fn is_backend(grant: &AccessGrant) -> bool {
    grant.patient.is_none() && grant.fhir_user.is_none() && grant.scope.resource_scopes().any(|s| s.context == ScopeContext::System)
}

/// The kick-off, checked: the job to start, or the answer (4xx OperationOutcome).
pub async fn kick_off(fhir: &Fhir<'_>, grant: &AccessGrant, request: &KickOff, now: &str) -> Result<Job, FhirResponse> {
    let Some(level) = request.level.clone() else { return Err(FhirResponse::outcome(404, IssueType::NotFound, "no bulk export at this path")) };
    let prefer = request.prefer.as_deref().unwrap_or_default();
    if !prefer.split([',', ';']).any(|p| p.trim() == "respond-async") {
        return Err(invalid("a bulk export kick-off needs the header Prefer: respond-async"));
    }
    let lenient = prefer.split([',', ';']).any(|p| p.trim() == "handling=lenient");
    if !accepts_fhir_json(request.accept.as_deref()) {
        return Err(FhirResponse::outcome(406, IssueType::NotSupported, "the kick-off answers in application/fhir+json only"));
    }
    if !is_backend(grant) {
        return Err(FhirResponse::forbidden("bulk export takes a backend-services token (system/ scopes, no patient or user context)"));
    }
    let mut errors = Vec::new();
    let mut asked: Vec<String> = Vec::new();
    let mut since = None;
    let mut type_filters: Vec<(String, String)> = Vec::new();
    for (name, value) in &request.params {
        match name.as_str() {
            "_outputFormat" => {
                if !NDJSON_FORMATS.contains(&value.as_str()) {
                    return Err(not_supported("_outputFormat: only application/fhir+ndjson (also application/ndjson, ndjson) is produced"));
                }
            }
            "_type" => asked.extend(value.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())),
            "_since" => {
                if since.is_some() {
                    return Err(invalid("_since is given more than once"));
                }
                if search::date_range(value).is_none() {
                    return Err(invalid("_since must be a FHIR instant such as 2026-01-01T00:00:00Z"));
                }
                since = Some(value.clone());
            }
            "_typeFilter" => {
                for filter in value.split(',').filter(|f| !f.is_empty()) {
                    let Some((t, query)) = filter.split_once('?') else { return Err(invalid("_typeFilter takes Type?query")) };
                    type_filters.push((t.to_owned(), query.to_owned()));
                }
            }
            other if lenient => errors.push(format!("the kick-off parameter {other} is not supported and was ignored")),
            other => return Err(not_supported(&format!("the kick-off parameter {other} is not supported (send Prefer: handling=lenient to ignore it)"))),
        }
    }
    let at_level = |t: &str| level == Level::System || is_patient_data(t);
    let allowed = |t: &str| gate::usable(grant, t, EXPORT_PERMISSION).is_ok();
    let mut types: Vec<String> = Vec::new();
    if asked.is_empty() {
        types = served_types().into_iter().filter(|t| at_level(t) && allowed(t)).map(str::to_owned).collect();
        if types.is_empty() {
            return Err(FhirResponse::forbidden("the token's scopes allow exporting no resource type"));
        }
    } else {
        for t in asked {
            let refusal = if !params::is_served(&t) {
                Some((400, IssueType::NotSupported, format!("{t} is not a resource type this server serves")))
            } else if !at_level(&t) {
                Some((400, IssueType::Invalid, format!("{t} is not in the patient compartment, so a patient-level export has none")))
            } else if !allowed(&t) {
                Some((403, IssueType::Security, format!("the token's scopes do not allow exporting {t}")))
            } else {
                None
            };
            match refusal {
                None if !types.contains(&t) => types.push(t),
                None => {}
                Some((_, _, message)) if lenient => errors.push(format!("{message}; it was left out")),
                Some((status, code, message)) => return Err(FhirResponse::outcome(status, code, &message)),
            }
        }
        if types.is_empty() {
            return Err(FhirResponse::forbidden("the token's scopes allow exporting none of the types asked for"));
        }
    }
    let mut plans: Vec<TypePlan> = types.iter().map(|t| TypePlan { resource_type: t.clone(), filters: Vec::new() }).collect();
    for (t, query) in type_filters {
        let Some(plan) = plans.iter_mut().find(|p| p.resource_type == t) else {
            return Err(invalid(&format!("_typeFilter names {t}, which this export does not include")));
        };
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&query).map_err(|_| invalid("_typeFilter: the query is not URL-encoded"))?;
        for (key, _) in &pairs {
            let name = key.split(':').next().unwrap_or_default();
            if params::find(&t, name).is_none() {
                return Err(invalid(&format!("_typeFilter: {key} is not a search parameter of {t}")));
            }
        }
        search::parse(&t, &pairs, true).map_err(|e| invalid(&format!("_typeFilter {t}: {e}")))?;
        plan.filters.push(pairs);
    }
    let job_id = (fhir.new_id)();
    let mut job = Job {
        id: job_id,
        client_id: grant.client_id.clone(),
        scope: grant.scope.to_string(),
        request: request.request_url.clone(),
        base: fhir.base.to_owned(),
        transaction_time: now.to_owned(),
        level: level.clone(),
        types: plans,
        since,
        state: JobState::Running,
        cursor: Cursor::default(),
        files: Vec::new(),
        errors,
        attempts: 0,
    };
    // Each type's search must fit one statement with the grant's filters (checked once here,
    // where the caller can still be told).
    for plan in &job.types {
        let place = if is_patient_data(&plan.resource_type) { Place::Compartment("-") } else { Place::Shared };
        let Some(filter) = gate::decide(grant, &plan.resource_type, EXPORT_PERMISSION, place).ok().flatten() else { continue };
        match super::run::search_for(&job, plan, &filter) {
            Ok(Some(query)) if search::to_sql(&query).select_params.len() <= MAX_BOUND => {}
            Ok(None) => {}
            Ok(Some(_)) => return Err(FhirResponse::outcome(400, IssueType::TooCostly, &format!("the filters on {} are too complex", plan.resource_type))),
            Err(e) => return Err(invalid(&e.to_string())),
        }
    }
    let patient_types = job.types.iter().any(|p| is_patient_data(&p.resource_type));
    let cursor = &mut job.cursor;
    match &level {
        Level::System => {
            // Patients live only in their own partitions; every other type may also have
            // resources outside every compartment.
            cursor.partitions = job.types.iter().filter(|p| p.resource_type != "Patient").map(|p| shared_partition(&p.resource_type)).collect();
            cursor.directory_offset = patient_types.then_some(0);
        }
        Level::Patient => cursor.directory_offset = Some(0),
        Level::Group(id) => cursor.partitions = group_members(fhir, grant, id).await?.iter().map(|p| patient_partition(p)).collect(),
    }
    cursor.partitions_known = cursor.partitions.len();
    Ok(job)
}

/// The patients of `Group/{id}` (`member.entity` references to Patients, inactive members
/// left out), after the gate allows reading the Group; 404 when it is unknown or not visible.
async fn group_members(fhir: &Fhir<'_>, grant: &AccessGrant, id: &str) -> Result<VecDeque<String>, FhirResponse> {
    let missing = || FhirResponse::not_found("Group", id);
    let internal = |e: StoreError| FhirResponse::outcome(500, IssueType::Exception, &e.to_string());
    if !params::is_served("Group") || !crate::users::is_fhir_id(id) {
        return Err(missing());
    }
    let usable = gate::usable(grant, "Group", smart_protocol::scopes::Permissions::READ).map_err(|d| FhirResponse::denied(&d))?;
    let Some(partition) = fhir.store.locate(&[("Group".to_owned(), id.to_owned())]).await.map_err(internal)?.into_iter().next().flatten() else {
        return Err(missing());
    };
    let read = fhir.store.read(&partition, "Group", id, None).await.map_err(internal)?;
    let Some(content) = read.content.filter(|_| read.status == ReadStatus::Found) else { return Err(missing()) };
    let group: Value = serde_json::from_str(content.get()).map_err(|e| internal(StoreError(e.to_string())))?;
    let visible = gate::at(&usable, grant, smart_protocol::scopes::Permissions::READ, Place::of_partition(&partition)).is_some_and(|f| f.admits(&group));
    if !visible {
        return Err(missing());
    }
    let mut members = VecDeque::new();
    for member in group.get("member").and_then(Value::as_array).into_iter().flatten() {
        if member.get("inactive").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let reference = member.pointer("/entity/reference").and_then(Value::as_str).unwrap_or_default();
        if let Some(patient) = reference.strip_prefix("Patient/").filter(|p| crate::users::is_fhir_id(p)) {
            if !members.iter().any(|m| m == patient) {
                members.push_back(patient.to_owned());
            }
        }
    }
    Ok(members)
}
