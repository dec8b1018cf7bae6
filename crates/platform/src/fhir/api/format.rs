//! Content negotiation (R4 §3.1.0.1.10 "Content Types and encodings"): this server speaks
//! FHIR JSON only. A `_format` (which overrides `Accept`) or an `Accept` that admits no JSON is
//! answered 406; a body in another format (XML, Turtle) 415; both with an OperationOutcome.

use super::FhirResponse;
use crate::fhir::outcome::IssueType;

/// The `_format` values and media types answered with FHIR JSON.
const JSON: &[&str] = &["json", "application/json", "application/fhir+json", "application/json+fhir", "text/json"];

/// The media type of a header value or `_format`, lower-cased, without parameters.
fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Whether an `Accept` header admits FHIR JSON: some range with `q` above 0 is JSON or a
/// wildcard that covers `application/fhir+json`.
fn accepts_json(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let refused = parts.any(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0));
        !refused && (media == "*/*" || media == "application/*" || JSON.contains(&media.as_str()))
    })
}

/// The 406 or 415 for a request in or for a format other than JSON, if so. `content_type`
/// counts only when the request has a body.
pub fn refuse_format(query: &[(String, String)], accept: Option<&str>, content_type: Option<&str>) -> Option<FhirResponse> {
    if let Some(given) = content_type.map(media_type).filter(|m| m.contains("xml") || m.contains("turtle")) {
        return Some(FhirResponse::outcome(415, IssueType::NotSupported, &format!("this server reads FHIR JSON only, not {given}")));
    }
    let format = query.iter().rev().find(|(k, _)| k == "_format").map(|(_, v)| media_type(v));
    let acceptable = match (&format, accept) {
        (Some(f), _) => JSON.contains(&f.as_str()),
        (None, Some(a)) if !a.trim().is_empty() => accepts_json(a),
        (None, _) => true,
    };
    (!acceptable).then(|| {
        let asked = format.unwrap_or_else(|| accept.unwrap_or_default().to_owned());
        FhirResponse::outcome(406, IssueType::NotSupported, &format!("this server answers FHIR JSON (application/fhir+json) only, not {asked}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(format: &str) -> Vec<(String, String)> {
        vec![("_format".into(), format.into())]
    }

    #[test]
    fn json_is_served_and_anything_else_is_406_or_415() {
        for ok in ["json", "application/fhir+json", "application/json", "application/fhir+json;fhirVersion=4.0"] {
            assert_eq!(refuse_format(&q(ok), None, None), None, "{ok}");
        }
        for no in ["xml", "text/xml", "application/fhir+xml", "ttl", "html"] {
            assert_eq!(refuse_format(&q(no), None, None).map(|r| r.status), Some(406), "{no}");
        }
        for ok in ["application/fhir+json", "*/*", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/*", ""] {
            assert_eq!(refuse_format(&[], Some(ok), None), None, "{ok}");
        }
        for no in ["application/fhir+xml", "application/xml, text/xml", "application/fhir+json;q=0, application/fhir+xml"] {
            assert_eq!(refuse_format(&[], Some(no), None).map(|r| r.status), Some(406), "{no}");
        }
        assert_eq!(refuse_format(&q("json"), Some("application/fhir+xml"), None), None, "_format overrides Accept");
        assert_eq!(refuse_format(&q("xml"), Some("application/fhir+json"), None).map(|r| r.status), Some(406));
        let xml_body = refuse_format(&[], None, Some("application/fhir+xml; charset=utf-8")).unwrap();
        assert_eq!(xml_body.status, 415);
        assert!(xml_body.body.contains("\"not-supported\""), "{}", xml_body.body);
        assert_eq!(refuse_format(&[], None, Some("application/json-patch+json")), None);
    }
}
