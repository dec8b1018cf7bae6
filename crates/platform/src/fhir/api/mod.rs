//! The FHIR R4 RESTful API's use cases (<https://hl7.org/fhir/R4/http.html>), each checked by
//! the one gate ([`super::gate`]) against the token's grant, over the [`Partitions`] port.
//!
//! The Worker decodes an HTTP request into a [`FhirRequest`] once, calls [`handle`], and
//! encodes the [`FhirResponse`]; the same code runs natively over
//! [`super::memory::MemoryPartitions`] in the tests.

mod bundle;
mod conditional;
mod everything;
mod find;
mod format;
mod read;
mod write;

pub use format::refuse_format;

use super::gate::{self, Denied};
use super::outcome::{self, IssueType};
use super::rest::Interaction;
use super::store::Partitions;
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use serde_json::Value;
use smart_protocol::scopes::Permissions;

/// One FHIR request, decoded at the edge.
#[derive(Debug, Clone, Default)]
pub struct FhirRequest {
    pub interaction: Option<Interaction>,
    /// The query string's pairs, and for `POST _search` the form's.
    pub query: Vec<(String, String)>,
    /// `Prefer: handling=strict`.
    pub strict: bool,
    /// `Prefer: return=minimal`.
    pub minimal: bool,
    /// `Prefer: return=OperationOutcome`: a write answers an OperationOutcome instead of the
    /// resource (R4 §3.1.0.5.5 "Managing Return Content").
    pub outcome: bool,
    pub if_match: Option<String>,
    /// `If-None-Match` and `If-Modified-Since` of a read or vread (R4 §3.1.0.2.1 "conditional read").
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub if_none_exist: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What to answer, for the edge to encode.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FhirResponse {
    pub status: u16,
    /// FHIR JSON, or empty (204, `return=minimal`).
    pub body: String,
    pub version: Option<i64>,
    /// `meta.lastUpdated` of the version answered (ISO 8601).
    pub last_updated: Option<String>,
    pub location: Option<String>,
    /// A 403 for want of scope: the `insufficient_scope` challenge's description.
    pub insufficient_scope: Option<String>,
}

impl FhirResponse {
    pub fn json(status: u16, body: String) -> FhirResponse {
        FhirResponse { status, body, ..Default::default() }
    }

    pub fn outcome(status: u16, code: IssueType, message: &str) -> FhirResponse {
        FhirResponse::json(status, outcome::error(code, message).to_string())
    }

    pub fn not_found(resource_type: &str, id: &str) -> FhirResponse {
        FhirResponse::outcome(404, IssueType::NotFound, &format!("{resource_type}/{id} is not known"))
    }

    pub fn denied(denied: &Denied) -> FhirResponse {
        FhirResponse { insufficient_scope: Some(denied.to_string()), ..FhirResponse::outcome(403, IssueType::Security, &denied.to_string()) }
    }

    pub fn forbidden(message: &str) -> FhirResponse {
        FhirResponse::outcome(403, IssueType::Security, message)
    }

    /// The resource JSON (`body`), unless `Prefer: return=minimal`.
    fn resource(status: u16, body: String, minimal: bool) -> FhirResponse {
        FhirResponse::json(status, if minimal { String::new() } else { body })
    }
}

/// What a use case needs besides the request: the store, the FHIR base URL, and new ids.
pub struct Fhir<'a> {
    pub store: &'a dyn Partitions,
    /// `https://host/fhir`, for `fullUrl`s, links and `Location`.
    pub base: &'a str,
    pub new_id: &'a dyn Fn() -> String,
}

/// Whether `grant` could write anything at all: a bundle is not read or parsed for a caller
/// who could not write any of it.
pub fn may_write(grant: &AccessGrant) -> bool {
    grant.scope.resource_scopes().any(|s| !s.permissions.intersection(Permissions::CREATE.union(Permissions::UPDATE)).is_empty())
}

/// The answer to give before the request body is even read, if there is one: a bundle from a
/// caller who could write none of it (its body may be large; it is not read or parsed).
pub fn refuse_unread(grant: &AccessGrant, interaction: &Interaction) -> Option<FhirResponse> {
    (*interaction == Interaction::Bundle && !may_write(grant)).then(|| FhirResponse::forbidden("the token's scopes allow no create or update"))
}

/// Runs one interaction for `grant`.
pub async fn handle(fhir: &Fhir<'_>, grant: &AccessGrant, request: &FhirRequest) -> Result<FhirResponse, StoreError> {
    let Some(interaction) = &request.interaction else {
        return Ok(FhirResponse::outcome(404, IssueType::NotFound, "no FHIR interaction at this path"));
    };
    let answer = match interaction {
        Interaction::Capabilities => Ok(FhirResponse::outcome(500, IssueType::Exception, "the CapabilityStatement is served by the edge")),
        Interaction::Read { resource_type, id } => read::read(fhir, grant, resource_type, id, None).await,
        Interaction::Vread { resource_type, id, version } => match version.parse() {
            Ok(v) => read::read(fhir, grant, resource_type, id, Some(v)).await,
            Err(_) => Ok(FhirResponse::not_found(resource_type, &format!("{id}/_history/{version}"))),
        },
        Interaction::History { resource_type, id } => read::history(fhir, grant, resource_type, Some(id), request).await,
        Interaction::TypeHistory { resource_type } => read::history(fhir, grant, resource_type, None, request).await,
        Interaction::Search { resource_type } => find::search(fhir, grant, resource_type, request).await,
        Interaction::Create { resource_type } => write::create(fhir, grant, resource_type, request).await,
        Interaction::Update { resource_type, id } => write::update(fhir, grant, resource_type, id, request).await,
        Interaction::Patch { resource_type, id } => write::patch(fhir, grant, resource_type, id, request).await,
        Interaction::Delete { resource_type, id } => write::delete(fhir, grant, resource_type, id).await,
        Interaction::ConditionalUpdate { resource_type } => conditional::update(fhir, grant, resource_type, request).await,
        Interaction::ConditionalDelete { resource_type } => conditional::delete(fhir, grant, resource_type, request).await,
        Interaction::Everything { patient } => everything::everything(fhir, grant, patient, request).await,
        Interaction::Bundle => bundle::bundle(fhir, grant, request).await,
    }?;
    Ok(match interaction {
        Interaction::Read { .. } | Interaction::Vread { .. } => read::conditional_read(answer, request),
        Interaction::Create { .. } | Interaction::Update { .. } | Interaction::Patch { .. } | Interaction::Delete { .. } if request.outcome => {
            outcome_instead(answer, interaction)
        }
        _ => answer,
    })
}

/// `Prefer: return=OperationOutcome`: a successful write's body becomes an informational
/// OperationOutcome (a deletion's 204 a 200 with it); headers stay; refusals are already one.
fn outcome_instead(answer: FhirResponse, interaction: &Interaction) -> FhirResponse {
    if !(200..300).contains(&answer.status) {
        return answer;
    }
    let what = match (interaction, answer.status) {
        (Interaction::Delete { .. }, _) => "deleted",
        (_, 201) => "created",
        (Interaction::Create { .. }, _) => "already exists (If-None-Exist)",
        (Interaction::Patch { .. }, _) => "patched",
        _ => "updated",
    };
    let target = match (&answer.location, interaction) {
        (Some(location), _) => location.strip_prefix(fhir_base_of(location)).unwrap_or(location).to_owned(),
        (None, Interaction::Delete { resource_type, id }) => format!("{resource_type}/{id}"),
        _ => interaction.resource_type().unwrap_or_default().to_owned(),
    };
    let body = serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "information", "code": "informational", "diagnostics": format!("{target} {what}") }]
    });
    FhirResponse { status: if answer.status == 204 { 200 } else { answer.status }, body: body.to_string(), ..answer }
}

/// The `https://host/fhir/` part of a `Location` (everything before the type).
fn fhir_base_of(location: &str) -> &str {
    let tail = location.rsplitn(5, '/').last().unwrap_or_default();
    &location[..(tail.len() + 1).min(location.len())]
}

/// `resourceType` and `id` of a resource.
fn type_and_id(resource: &Value) -> (&str, &str) {
    let text = |k: &str| resource.get(k).and_then(Value::as_str).unwrap_or_default();
    (text("resourceType"), text("id"))
}

/// The usable scopes for an interaction, or the 403 answer.
fn usable<'g>(grant: &'g AccessGrant, resource_type: &str, permission: Permissions) -> Result<Vec<gate::Usable<'g>>, FhirResponse> {
    gate::usable(grant, resource_type, permission).map_err(|d| FhirResponse::denied(&d))
}

#[cfg(test)]
mod every_type_tests;
#[cfg(test)]
mod interaction_tests;
#[cfg(test)]
mod review_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transaction_tests;
