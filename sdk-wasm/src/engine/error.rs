//! The SDK's one error type: what went wrong (`code`: an OAuth error code, a FHIR issue code,
//! or one of the SDK's own), the HTTP status when a server answered, and its
//! OperationOutcome when it sent one. The JavaScript side turns it into a `SmartError`.

use serde::Serialize;
use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SdkError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Value>,
}

impl SdkError {
    pub fn new(code: &str, message: impl Into<String>) -> SdkError {
        SdkError { code: code.to_owned(), message: message.into(), status: None, outcome: None }
    }

    /// An error answer of a server: an OAuth error body, an OperationOutcome, or just a status.
    pub fn from_response(status: u16, body: &str, what: &str) -> SdkError {
        let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(code) = text(&value, "error") {
            let message = text(&value, "error_description").unwrap_or_else(|| format!("{what} answered {status} {code}"));
            return SdkError { code, message, status: Some(status), outcome: None };
        }
        if value.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome") {
            let issue = value.pointer("/issue/0").cloned().unwrap_or(Value::Null);
            let code = text(&issue, "code").unwrap_or_else(|| "exception".into());
            let message = text(&issue, "diagnostics").or_else(|| issue.pointer("/details/text").and_then(Value::as_str).map(str::to_owned)).unwrap_or_else(|| format!("{what} answered {status}"));
            return SdkError { code, message, status: Some(status), outcome: Some(value) };
        }
        SdkError { code: format!("http_{status}"), message: format!("{what} answered {status}"), status: Some(status), outcome: None }
    }
}

impl fmt::Display for SdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for SdkError {}
