//! Checks on incoming resources (R4 §3.1.0.1 "Resource Validation", simplified to what the
//! server must guarantee): a JSON object of a served type, matching the URL, a valid id, not
//! too large, and `meta.versionId` / `meta.lastUpdated` left to the server.

use super::params;
use crate::users::is_fhir_id;
use serde_json::Value;

/// Largest resource accepted (a Durable Object SQLite row holds at most 2 MB).
pub const MAX_RESOURCE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the resource is larger than 1 MiB")]
    TooLarge,
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not a JSON object with a resourceType")]
    NotAResource,
    #[error("resourceType {0} does not match the URL")]
    WrongType(String),
    #[error("the resource id {0:?} does not match the URL")]
    WrongId(Option<String>),
    #[error("{0} is not a valid FHIR id")]
    BadId(String),
}

impl Invalid {
    /// 400 for what is not a resource at all, 422 for a resource that cannot be processed
    /// (R4 §3.1.0.4 "update": 400 / 422).
    pub fn status(&self) -> u16 {
        match self {
            Invalid::TooLarge => 413,
            Invalid::NotJson(_) | Invalid::NotAResource | Invalid::WrongType(_) | Invalid::WrongId(_) => 400,
            Invalid::BadId(_) => 422,
        }
    }
}

/// Parses and checks a resource for `resource_type`; `id` is the URL's id (update) or `None`
/// (create, where any id in the body is ignored and replaced).
pub fn resource(body: &[u8], resource_type: &str, id: Option<&str>) -> Result<Value, Invalid> {
    if body.len() > MAX_RESOURCE_BYTES {
        return Err(Invalid::TooLarge);
    }
    let mut value: Value = serde_json::from_slice(body).map_err(|e| Invalid::NotJson(e.to_string()))?;
    let Some(given_type) = value.get("resourceType").and_then(Value::as_str).map(str::to_owned) else {
        return Err(Invalid::NotAResource);
    };
    if given_type != resource_type || !params::is_served(&given_type) {
        return Err(Invalid::WrongType(given_type));
    }
    match (id, value.get("id").and_then(Value::as_str)) {
        (Some(url_id), Some(body_id)) if url_id == body_id => {}
        (Some(_), other) => return Err(Invalid::WrongId(other.map(str::to_owned))),
        (None, Some(body_id)) if !is_fhir_id(body_id) => return Err(Invalid::BadId(body_id.to_owned())),
        (None, _) => {}
    }
    if let Some(meta) = value.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
    }
    Ok(value)
}

/// The version in an `If-Match` header (`W/"3"` or `"3"`).
pub fn if_match_version(header: &str) -> Option<String> {
    let v = header.trim().trim_start_matches("W/").trim_matches('"');
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_resource_matching_the_url_and_drops_server_managed_meta() {
        let v = resource(br#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"9","tag":[]}}"#, "Patient", Some("p1")).unwrap();
        assert!(v["meta"].get("versionId").is_none());
        assert!(v["meta"].get("tag").is_some());
        assert!(resource(br#"{"resourceType":"Observation","status":"final"}"#, "Observation", None).is_ok());
    }

    #[test]
    fn refuses_what_is_not_a_matching_resource() {
        assert!(matches!(resource(b"{not json", "Patient", None), Err(Invalid::NotJson(_))));
        assert_eq!(resource(b"[1,2]", "Patient", None), Err(Invalid::NotAResource));
        assert_eq!(resource(br#"{"resourceType":"Observation"}"#, "Patient", None), Err(Invalid::WrongType("Observation".into())));
        assert_eq!(resource(br#"{"resourceType":"Patient","id":"p2"}"#, "Patient", Some("p1")), Err(Invalid::WrongId(Some("p2".into()))));
        assert_eq!(resource(br#"{"resourceType":"Patient"}"#, "Patient", Some("p1")), Err(Invalid::WrongId(None)));
        assert_eq!(resource(br#"{"resourceType":"Patient","id":"bad id"}"#, "Patient", None), Err(Invalid::BadId("bad id".into())));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(resource(format!(r#"{{"resourceType":"Patient","x":{deep}}}"#).as_bytes(), "Patient", None), Err(Invalid::NotJson(_))));
        assert_eq!(resource(&vec![b' '; MAX_RESOURCE_BYTES + 1], "Patient", None), Err(Invalid::TooLarge));
    }

    #[test]
    fn reads_if_match() {
        assert_eq!(if_match_version("W/\"3\""), Some("3".into()));
        assert_eq!(if_match_version("\"12\""), Some("12".into()));
        assert_eq!(if_match_version("W/\"x\""), None);
    }
}
