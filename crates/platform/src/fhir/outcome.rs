//! OperationOutcome (<https://hl7.org/fhir/R4/operationoutcome.html>), the FHIR error body.

use serde_json::{json, Value};

/// `issue.code` values used so far (<https://hl7.org/fhir/R4/valueset-issue-type.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    NotFound,
    NotSupported,
    Invalid,
    Security,
    Exception,
    TooCostly,
    /// A structural issue: an element the definition does not know, a list where one value
    /// goes (or the reverse), the wrong JSON shape.
    Structure,
    /// A required element is missing.
    Required,
    /// An element's value is invalid for its type.
    Value,
    /// A version conflict (409).
    Conflict,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::NotFound => "not-found",
            IssueType::NotSupported => "not-supported",
            IssueType::Invalid => "invalid",
            IssueType::Security => "security",
            IssueType::Exception => "exception",
            IssueType::TooCostly => "too-costly",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Conflict => "conflict",
        }
    }
}

/// An OperationOutcome with one error issue.
pub fn error(code: IssueType, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": code.code(), "diagnostics": diagnostics }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_issue_with_severity_code_and_diagnostics() {
        let outcome = error(IssueType::NotFound, "no such route");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["severity"], "error");
        assert_eq!(outcome["issue"][0]["code"], "not-found");
    }
}
