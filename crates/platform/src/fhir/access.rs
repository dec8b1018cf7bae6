//! SMART access decisions for the FHIR API (SMART App Launch 2.2 §3, "Scopes for requesting
//! clinical data"): which scopes of the token allow an interaction, and how the results are
//! confined — to the launch patient's compartment under `patient/` scopes, to a patient user's
//! own compartment under `user/` scopes, not at all under `system/` scopes — and filtered by
//! granular query scopes (`patient/Observation.rs?category=laboratory`).

use super::search::{self, Clause};
use crate::guard::AccessGrant;
use smart_protocol::scopes::{Permissions, ResourceScope, ScopeContext};

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Only this patient's compartment may be touched.
    pub patient: Option<String>,
    /// Results must match one of these clause groups (granular scopes); empty = no filter.
    pub filters: Vec<Vec<Clause>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the token's scopes do not allow this on {0}")]
    InsufficientScope(String),
    #[error("patient/ scopes need a patient in the launch context")]
    NoPatientContext,
}

/// Where a read of `Type/id` must look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadTarget {
    /// This partition, without asking the directory (one round trip).
    Partition(String),
    /// Ask the directory which partition holds it.
    Directory,
}

fn is_patient_data(resource_type: &str) -> bool {
    resource_type == "Patient" || super::params::compartment_paths(resource_type).is_some()
}

/// Where to read `Type/id`: a confined caller only ever reads patient data from their
/// patient's partition (so a patient-scoped read touches one partition, and another patient's
/// resource is simply not there); a Patient is in its own partition; anything else is found
/// through the directory.
pub fn read_target(decision: &Decision, resource_type: &str, id: &str) -> ReadTarget {
    use super::store::patient_partition;
    match (&decision.patient, is_patient_data(resource_type)) {
        (Some(p), true) => ReadTarget::Partition(patient_partition(p)),
        _ if resource_type == "Patient" => ReadTarget::Partition(patient_partition(id)),
        _ => ReadTarget::Directory,
    }
}

/// Where an `_include`d `Type/id` may be read from, given the partition the search ran in:
/// patient data from that same partition; other types through the directory.
pub fn include_target(search_partition: &str, resource_type: &str) -> ReadTarget {
    if is_patient_data(resource_type) && search_partition.starts_with("patient/") {
        ReadTarget::Partition(search_partition.to_owned())
    } else {
        ReadTarget::Directory
    }
}

/// Whether a confined caller may see what lives in `partition` (their own compartment, or
/// any non-patient partition).
pub fn may_see_partition(decision: &Decision, partition: &str) -> bool {
    match &decision.patient {
        Some(p) => !partition.starts_with("patient/") || partition == super::store::patient_partition(p),
        None => true,
    }
}

/// A granular scope query the server cannot enforce on a type (SMART 2.2 §3.5: a server
/// that cannot enforce a constraint must not grant the scope as if it could).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the scope constraint {0} cannot be enforced on {1}")]
pub struct Unenforceable(pub String, pub String);

/// What a scope's query constraints mean for `resource_type`: `Ok(None)` without constraints,
/// `Ok(Some(clauses))` (all must match) with them. Every `name=value` must be a search
/// parameter of the type without a modifier or a control parameter (`_count`, `_sort`…):
/// anything else is [`Unenforceable`], and the scope grants nothing on that type.
pub fn scope_filter(scope: &ResourceScope, resource_type: &str) -> Result<Option<Vec<Clause>>, Unenforceable> {
    if scope.query.is_empty() {
        return Ok(None);
    }
    let refuse = || Unenforceable(scope.query.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&"), resource_type.to_owned());
    // The constraint is written URL-encoded inside the scope (`%7C` for `|`).
    let pairs: Vec<(String, String)> = scope
        .query
        .iter()
        .flat_map(|(n, v)| url::form_urlencoded::parse(format!("{n}={v}").as_bytes()).into_owned().collect::<Vec<_>>())
        .collect();
    if pairs.iter().any(|(n, _)| n.contains(':')) {
        return Err(refuse());
    }
    match search::parse(resource_type, &pairs, true) {
        // One clause per constraint: nothing was swallowed as a control parameter.
        Ok(q) if q.clauses.len() == pairs.len() && q.ignored.is_empty() => Ok(Some(q.clauses)),
        _ => Err(refuse()),
    }
}

/// Whether the server can enforce `scope` anywhere: on its type, or for `*` on at least one
/// served type. Authorization and token requests refuse other scopes with `invalid_scope`.
pub fn enforceable(scope: &ResourceScope) -> bool {
    match &scope.resource {
        Some(t) => super::params::is_served(t) && scope_filter(scope, t).is_ok(),
        None => scope.query.is_empty() || super::params::TYPES.iter().any(|(t, _)| scope_filter(scope, t).is_ok()),
    }
}

/// Decides whether `grant` may do `permission` on `resource_type`.
pub fn decide(grant: &AccessGrant, resource_type: &str, permission: Permissions) -> Result<Decision, Denied> {
    let matching: Vec<_> = grant.scope.resource_scopes().filter(|s| s.allows(resource_type, permission)).collect();
    if matching.is_empty() {
        return Err(Denied::InsufficientScope(resource_type.to_owned()));
    }
    // The broadest context among the matching scopes decides the confinement.
    let system = matching.iter().any(|s| s.context == ScopeContext::System);
    let user = matching.iter().any(|s| s.context == ScopeContext::User);
    let patient = if system {
        None
    } else if user {
        // A patient user sees only their own compartment whatever the app asked for.
        grant.fhir_user.as_deref().and_then(|u| u.strip_prefix("Patient/")).map(str::to_owned)
    } else {
        Some(grant.patient.clone().ok_or(Denied::NoPatientContext)?)
    };
    // Granular scopes: with any unconstrained matching scope there is no filter.
    let filters = if matching.iter().any(|s| s.query.is_empty()) {
        Vec::new()
    } else {
        matching
            .iter()
            .filter_map(|s| search::parse(resource_type, &s.query, true).ok().map(|q| q.clauses))
            .collect()
    };
    Ok(Decision { patient, filters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smart_protocol::scopes::ScopeSet;

    fn grant(scope: &str, patient: Option<&str>, fhir_user: Option<&str>) -> AccessGrant {
        AccessGrant {
            sub: "u".into(),
            client_id: "c".into(),
            scope: ScopeSet::parse(scope).unwrap(),
            patient: patient.map(str::to_owned),
            encounter: None,
            fhir_user: fhir_user.map(str::to_owned),
            grant_id: None,
            iat: 0,
            exp: 0,
            claims: Default::default(),
        }
    }

    #[test]
    fn patient_scopes_confine_to_the_launch_patient() {
        let d = decide(&grant("patient/*.rs", Some("p1"), Some("Practitioner/d")), "Observation", Permissions::SEARCH).unwrap();
        assert_eq!(d.patient.as_deref(), Some("p1"));
        assert_eq!(decide(&grant("patient/*.rs", None, None), "Observation", Permissions::READ), Err(Denied::NoPatientContext));
        assert!(matches!(decide(&grant("patient/*.rs", Some("p1"), None), "Observation", Permissions::UPDATE), Err(Denied::InsufficientScope(_))));
        assert!(matches!(decide(&grant("patient/Condition.rs", Some("p1"), None), "Observation", Permissions::READ), Err(Denied::InsufficientScope(_))));
    }

    #[test]
    fn user_scopes_follow_the_users_own_rights_and_system_scopes_are_unconfined() {
        assert_eq!(decide(&grant("user/*.rs", None, Some("Practitioner/d")), "Observation", Permissions::READ).unwrap().patient, None);
        assert_eq!(decide(&grant("user/*.rs", None, Some("Patient/p9")), "Observation", Permissions::READ).unwrap().patient.as_deref(), Some("p9"));
        assert_eq!(decide(&grant("system/*.rs", None, None), "Observation", Permissions::SEARCH).unwrap().patient, None);
    }

    #[test]
    fn reads_of_confined_callers_go_to_their_own_partition_only() {
        let confined = Decision { patient: Some("p1".into()), filters: Vec::new() };
        let free = Decision { patient: None, filters: Vec::new() };
        assert_eq!(read_target(&confined, "Observation", "o9"), ReadTarget::Partition("patient/p1".into()));
        assert_eq!(read_target(&confined, "Patient", "p2"), ReadTarget::Partition("patient/p1".into()), "another patient is not there");
        assert_eq!(read_target(&confined, "Practitioner", "d1"), ReadTarget::Directory);
        assert_eq!(read_target(&free, "Patient", "p2"), ReadTarget::Partition("patient/p2".into()));
        assert_eq!(read_target(&free, "Observation", "o9"), ReadTarget::Directory);
        assert_eq!(include_target("patient/p1", "Encounter"), ReadTarget::Partition("patient/p1".into()));
        assert_eq!(include_target("patient/p1", "Practitioner"), ReadTarget::Directory);
        assert!(may_see_partition(&confined, "shared/Organization"));
        assert!(may_see_partition(&confined, "patient/p1"));
        assert!(!may_see_partition(&confined, "patient/p2"));
        assert!(may_see_partition(&free, "patient/p2"));
    }

    #[test]
    fn granular_scopes_become_filters_unless_an_unconstrained_scope_also_matches() {
        let d = decide(&grant("patient/Observation.rs?category=laboratory", Some("p1"), None), "Observation", Permissions::SEARCH).unwrap();
        assert_eq!(d.filters.len(), 1);
        let d = decide(&grant("patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs", Some("p1"), None), "Observation", Permissions::SEARCH).unwrap();
        assert_eq!(d.filters.len(), 2);
        let d = decide(&grant("patient/Observation.rs?category=laboratory patient/*.rs", Some("p1"), None), "Observation", Permissions::SEARCH).unwrap();
        assert!(d.filters.is_empty());
    }

    #[test]
    fn scope_constraints_that_cannot_be_enforced_are_refused() {
        let scope = |s: &str| smart_protocol::scopes::Scope::parse(s).unwrap().as_resource().unwrap().clone();
        assert!(enforceable(&scope("patient/Observation.rs?category=laboratory")));
        assert!(enforceable(&scope("patient/Observation.rs?code=http://loinc.org%7C4548-4")));
        assert!(enforceable(&scope("patient/*.rs?category=laboratory")), "Observation and Condition have category");
        assert!(!enforceable(&scope("patient/Observation.rs?category=laboratory&foo=bar")));
        assert!(!enforceable(&scope("patient/Observation.rs?_count=5")));
        assert!(!enforceable(&scope("patient/Observation.rs?code:text=x")));
        assert!(!enforceable(&scope("patient/*.rs?foo=bar")));
        assert!(!enforceable(&scope("patient/Spaceship.rs")));
        let star = scope("patient/*.rs?category=laboratory");
        assert!(scope_filter(&star, "Observation").is_ok());
        assert!(scope_filter(&star, "Patient").is_err(), "Patient has no category: the scope grants nothing there");
        assert_eq!(scope_filter(&scope("patient/Observation.rs"), "Observation"), Ok(None));
    }
}
