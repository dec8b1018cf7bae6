//! The SDK's one error type: what went wrong (`code`: an OAuth error code, a FHIR issue code,
//! or one of the SDK's own), the HTTP status when a server answered, and its
//! OperationOutcome when it sent one. The JavaScript side turns it into a `SmartError`.

use crate::json::{object, Json};
use std::fmt;

#[derive(Debug, Clone)]
pub struct SdkError {
    pub code: String,
    pub message: String,
    pub status: Option<u16>,
    /// The OperationOutcome, as the server sent it.
    pub outcome: Option<Json>,
}

impl SdkError {
    pub fn new(code: &str, message: impl Into<String>) -> SdkError {
        SdkError { code: code.to_owned(), message: message.into(), status: None, outcome: None }
    }

    /// An error answer of a server: an OAuth error body (RFC 6749 §5.2), an OperationOutcome
    /// (its first issue's code, and its diagnostics or details text), or just a status.
    pub fn from_response(status: u16, body: &str, what: &str) -> SdkError {
        let parsed = Json::parse(body).unwrap_or(Json::Null);
        let (code, message, outcome) = if let Some(code) = parsed.string("error") {
            (code, parsed.string("error_description"), None)
        } else if parsed.get("resourceType").and_then(Json::as_str) == Some("OperationOutcome") {
            let issue = parsed.list("issue").first().unwrap_or(&Json::Null);
            let text = issue.string("diagnostics").or_else(|| issue.get("details")?.string("text"));
            (issue.string("code").unwrap_or_else(|| "exception".into()), text, Some(parsed.clone()))
        } else {
            (format!("http_{status}"), None, None)
        };
        SdkError { code, message: message.unwrap_or_else(|| format!("{what} answered {status}")), status: Some(status), outcome }
    }

    /// `{code, message, status?, outcome?}`, as the JavaScript side builds its `SmartError`.
    pub fn to_json(&self) -> Json {
        object([
            ("code", self.code.as_str().into()),
            ("message", self.message.as_str().into()),
            ("status", self.status.map(i64::from).into()),
            ("outcome", self.outcome.clone().unwrap_or(Json::Null)),
        ])
    }
}

impl fmt::Display for SdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for SdkError {}
