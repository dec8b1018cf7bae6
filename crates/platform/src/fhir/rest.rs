//! The FHIR RESTful API's request shape (R4 §3.1.0, <https://hl7.org/fhir/R4/http.html>):
//! which interaction a method and path under the FHIR base are.

use super::params;
use crate::users::is_fhir_id;
use smart_protocol::scopes::Permissions;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    Capabilities,
    Read {
        resource_type: String,
        id: String,
    },
    Vread {
        resource_type: String,
        id: String,
        version: String,
    },
    History {
        resource_type: String,
        id: String,
    },
    /// `GET [base]/{type}/_history`.
    TypeHistory {
        resource_type: String,
    },
    Search {
        resource_type: String,
    },
    Create {
        resource_type: String,
    },
    Update {
        resource_type: String,
        id: String,
    },
    Delete {
        resource_type: String,
        id: String,
    },
    /// `PUT [base]/{type}?search` (R4 §3.1.0.4.3).
    ConditionalUpdate {
        resource_type: String,
    },
    /// `DELETE [base]/{type}?search` (R4 §3.1.0.7.1).
    ConditionalDelete {
        resource_type: String,
    },
    /// `PATCH [base]/{type}/{id}` with a JSON Patch (RFC 6902).
    Patch {
        resource_type: String,
        id: String,
    },
    /// `GET|POST [base]/Patient/{id}/$everything` (R4 Patient operation `everything`).
    Everything {
        patient: String,
    },
    /// `POST [base]` with a transaction or batch Bundle.
    Bundle,
}

/// Why a request is not an interaction this server offers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    #[error("{0} is not a resource type this server serves")]
    UnknownType(String),
    #[error("{0} is not a valid FHIR id")]
    BadId(String),
    #[error("no FHIR interaction at this path")]
    NoSuchPath,
    #[error("{0} is not allowed on this path")]
    Method(String),
}

impl Interaction {
    /// Parses `rest` (the path after the FHIR base, starting with `/` or empty).
    pub fn parse(method: &str, rest: &str) -> Result<Interaction, RestError> {
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let typed = |t: &str| if params::is_served(t) { Ok(t.to_owned()) } else { Err(RestError::UnknownType(t.to_owned())) };
        let id = |i: &str| if is_fhir_id(i) { Ok(i.to_owned()) } else { Err(RestError::BadId(i.to_owned())) };
        let wrong = || Err(RestError::Method(method.to_owned()));
        match (method, segments.as_slice()) {
            ("GET", ["metadata"]) => Ok(Interaction::Capabilities),
            ("POST", []) => Ok(Interaction::Bundle),
            ("GET", [t]) => Ok(Interaction::Search { resource_type: typed(t)? }),
            ("GET", [t, "_history"]) => Ok(Interaction::TypeHistory { resource_type: typed(t)? }),
            ("POST", [t, "_search"]) => Ok(Interaction::Search { resource_type: typed(t)? }),
            ("POST", [t]) => Ok(Interaction::Create { resource_type: typed(t)? }),
            ("PUT", [t]) => Ok(Interaction::ConditionalUpdate { resource_type: typed(t)? }),
            ("DELETE", [t]) => Ok(Interaction::ConditionalDelete { resource_type: typed(t)? }),
            ("GET", [t, i]) => Ok(Interaction::Read { resource_type: typed(t)?, id: id(i)? }),
            ("PUT", [t, i]) => Ok(Interaction::Update { resource_type: typed(t)?, id: id(i)? }),
            ("DELETE", [t, i]) => Ok(Interaction::Delete { resource_type: typed(t)?, id: id(i)? }),
            ("PATCH", [t, i]) => Ok(Interaction::Patch { resource_type: typed(t)?, id: id(i)? }),
            ("GET" | "POST", ["Patient", i, "$everything" | "%24everything"]) => Ok(Interaction::Everything { patient: id(i)? }),
            (_, ["Patient", _, "$everything" | "%24everything"]) => wrong(),
            ("GET", [t, i, "_history"]) => Ok(Interaction::History { resource_type: typed(t)?, id: id(i)? }),
            ("GET", [t, i, "_history", v]) => Ok(Interaction::Vread { resource_type: typed(t)?, id: id(i)?, version: id(v)? }),
            (_, [] | [_] | [_, _] | [_, _, "_history"] | [_, _, "_history", _]) => wrong(),
            _ => Err(RestError::NoSuchPath),
        }
    }

    /// The SMART permission the interaction needs.
    pub fn permission(&self) -> Permissions {
        match self {
            Interaction::Read { .. } | Interaction::Vread { .. } | Interaction::History { .. } | Interaction::TypeHistory { .. } => Permissions::READ,
            Interaction::Search { .. } => Permissions::SEARCH,
            Interaction::Create { .. } => Permissions::CREATE,
            Interaction::Update { .. } | Interaction::Patch { .. } | Interaction::ConditionalUpdate { .. } => Permissions::UPDATE,
            Interaction::Delete { .. } | Interaction::ConditionalDelete { .. } => Permissions::DELETE,
            // Each type of the compartment is read under its own scopes.
            Interaction::Everything { .. } => Permissions::READ,
            Interaction::Capabilities | Interaction::Bundle => Permissions::default(),
        }
    }

    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Interaction::Read { resource_type, .. }
            | Interaction::Vread { resource_type, .. }
            | Interaction::History { resource_type, .. }
            | Interaction::TypeHistory { resource_type }
            | Interaction::Search { resource_type }
            | Interaction::Create { resource_type }
            | Interaction::Update { resource_type, .. }
            | Interaction::Delete { resource_type, .. }
            | Interaction::Patch { resource_type, .. }
            | Interaction::ConditionalUpdate { resource_type }
            | Interaction::ConditionalDelete { resource_type } => Some(resource_type),
            Interaction::Everything { .. } => Some("Patient"),
            Interaction::Capabilities | Interaction::Bundle => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_methods_and_paths_to_interactions() {
        assert_eq!(Interaction::parse("GET", "/metadata"), Ok(Interaction::Capabilities));
        assert_eq!(Interaction::parse("GET", "/Patient/p-1"), Ok(Interaction::Read { resource_type: "Patient".into(), id: "p-1".into() }));
        assert_eq!(Interaction::parse("GET", "/Observation"), Ok(Interaction::Search { resource_type: "Observation".into() }));
        assert_eq!(Interaction::parse("POST", "/Observation/_search"), Ok(Interaction::Search { resource_type: "Observation".into() }));
        assert_eq!(
            Interaction::parse("GET", "/Patient/1/_history/2"),
            Ok(Interaction::Vread { resource_type: "Patient".into(), id: "1".into(), version: "2".into() })
        );
        assert_eq!(Interaction::parse("POST", ""), Ok(Interaction::Bundle));
        assert_eq!(Interaction::parse("GET", "/Observation/_history"), Ok(Interaction::TypeHistory { resource_type: "Observation".into() }));
        assert_eq!(Interaction::parse("GET", "/Spaceship/1"), Err(RestError::UnknownType("Spaceship".into())));
        assert_eq!(Interaction::parse("GET", "/Patient/bad id"), Err(RestError::BadId("bad id".into())));
        assert_eq!(Interaction::parse("PATCH", "/Patient/1"), Ok(Interaction::Patch { resource_type: "Patient".into(), id: "1".into() }));
        assert_eq!(Interaction::parse("PATCH", "/Patient"), Err(RestError::Method("PATCH".into())));
        assert_eq!(Interaction::parse("GET", "/Patient/p-1/$everything"), Ok(Interaction::Everything { patient: "p-1".into() }));
        assert_eq!(Interaction::parse("POST", "/Patient/p-1/$everything"), Ok(Interaction::Everything { patient: "p-1".into() }));
        assert_eq!(Interaction::parse("DELETE", "/Patient/p-1/$everything"), Err(RestError::Method("DELETE".into())));
        assert_eq!(Interaction::parse("GET", "/Observation/o-1/$everything"), Err(RestError::NoSuchPath));
        assert_eq!(Interaction::parse("GET", "/Patient/bad id/$everything"), Err(RestError::BadId("bad id".into())));
        assert_eq!(Interaction::parse("PATCH", "/Observation/1").unwrap().permission(), Permissions::UPDATE);
        assert_eq!(Interaction::parse("GET", "/Patient/1/x/y/z"), Err(RestError::NoSuchPath));
        assert_eq!(Interaction::parse("GET", "/Patient/1").unwrap().permission(), Permissions::READ);
        assert_eq!(Interaction::parse("PUT", "/Patient"), Ok(Interaction::ConditionalUpdate { resource_type: "Patient".into() }));
        assert_eq!(Interaction::parse("DELETE", "/Observation"), Ok(Interaction::ConditionalDelete { resource_type: "Observation".into() }));
        assert_eq!(Interaction::parse("DELETE", "/Observation").unwrap().permission(), Permissions::DELETE);
        assert_eq!(Interaction::parse("PUT", "/Spaceship"), Err(RestError::UnknownType("Spaceship".into())));
    }
}
