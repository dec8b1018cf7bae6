//! The SDK's one error type: what went wrong (`code`: an OAuth error code, a FHIR issue code,
//! or one of the SDK's own), the HTTP status when a server answered, and its
//! OperationOutcome when it sent one. The JavaScript side turns it into a `SmartError`.

use serde::{Deserialize, Serialize};
use crate::json::{self, Raw};
use std::fmt;

#[derive(Debug, Clone, Serialize)]
pub struct SdkError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The OperationOutcome, as the server sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Raw>,
}

/// What an error body may say: OAuth (RFC 6749 §5.2) or FHIR (an OperationOutcome).
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(rename = "resourceType", default)]
    resource_type: Option<String>,
    #[serde(default)]
    issue: Vec<Issue>,
}

#[derive(Deserialize)]
struct Issue {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    diagnostics: Option<String>,
    #[serde(default)]
    details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    text: Option<String>,
}

impl SdkError {
    pub fn new(code: &str, message: impl Into<String>) -> SdkError {
        SdkError { code: code.to_owned(), message: message.into(), status: None, outcome: None }
    }

    /// An error answer of a server: an OAuth error body, an OperationOutcome, or just a status.
    pub fn from_response(status: u16, body: &str, what: &str) -> SdkError {
        let fallback = || format!("{what} answered {status}");
        let Ok(parsed) = json::from_str::<ErrorBody>(body) else {
            return SdkError { code: format!("http_{status}"), message: fallback(), status: Some(status), outcome: None };
        };
        if let Some(code) = parsed.error {
            let message = parsed.error_description.unwrap_or_else(fallback);
            return SdkError { code, message, status: Some(status), outcome: None };
        }
        if parsed.resource_type.as_deref() == Some("OperationOutcome") {
            let issue = parsed.issue.into_iter().next();
            let code = issue.as_ref().and_then(|i| i.code.clone()).unwrap_or_else(|| "exception".into());
            let message = issue.and_then(|i| i.diagnostics.or(i.details.and_then(|d| d.text))).unwrap_or_else(fallback);
            let outcome = Raw::parse(body).ok();
            return SdkError { code, message, status: Some(status), outcome };
        }
        SdkError { code: format!("http_{status}"), message: fallback(), status: Some(status), outcome: None }
    }
}

impl fmt::Display for SdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for SdkError {}
